#!/usr/bin/env python3
"""Agent memory for LangGraph on a Cairn node: a `CairnStore` holds a user's preferences, and a small graph
recalls them to answer. Put, search (by meaning and by filter), update by key, delete.

    pip install 'cairn-memory[langgraph]'      # from client/python
    python sdk-examples/python/langgraph_memory.py --node http://127.0.0.1:7420 --token "$CAIRN_TOKEN"

No LLM is involved: the graph's one node answers with the best matching memory, which is what an agent would
put into its prompt.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from cairn import CairnClient
from cairn.langgraph import CairnStore

PREFERENCES = {
    "drink": {"text": "Alice prefers green tea to coffee.", "category": "food"},
    "music": {"text": "Alice listens to jazz while she works.", "category": "leisure"},
    "editor": {"text": "Alice writes code in Vim with a dark colour theme.", "category": "work"},
}


class State(TypedDict, total=False):
    user: str
    question: str
    answer: str


def recall_preference(state: State, runtime: Runtime) -> dict:
    """The graph's node: the user's memory closest to the question."""
    hits = runtime.store.search(("users", state["user"], "preferences"), query=state["question"], limit=1)
    return {"answer": hits[0].value["text"] if hits else "I don't know yet."}


def build_graph(store: CairnStore):
    g = StateGraph(State)
    g.add_node("recall_preference", recall_preference)
    g.add_edge(START, "recall_preference")
    g.add_edge("recall_preference", END)
    return g.compile(store=store)


def run(store: CairnStore, user: str = "alice", out=print) -> dict:
    """The whole flow; returns what it printed, for tests."""
    ns = ("users", user, "preferences")
    graph = build_graph(store)
    result: dict = {}

    for key, value in PREFERENCES.items():
        store.put(ns, key, value)
    out(f"put {len(PREFERENCES)} preferences into {ns}")

    hits = store.search(ns, query="What should I offer Alice to drink?", limit=2)
    result["search"] = [(h.key, h.value["text"], round(h.score, 3)) for h in hits]
    for key, text, score in result["search"]:
        out(f"search  {score:.3f}  {key}: {text}")

    work = store.search(ns, filter={"category": "work"})
    result["filter"] = [h.key for h in work]
    out(f"filter category=work -> {result['filter']}")

    result["answer_before"] = graph.invoke({"user": user, "question": "What does Alice like to drink?"})["answer"]
    out(f"graph answer: {result['answer_before']}")

    store.put(ns, "drink", {"text": "Alice has switched to black coffee, no sugar.", "category": "food"})
    item = store.get(ns, "drink")
    result["updated"] = item.value["text"]
    out(f"updated drink -> {item.value['text']}")
    result["answer_after"] = graph.invoke({"user": user, "question": "What does Alice like to drink?"})["answer"]
    out(f"graph answer: {result['answer_after']}")

    store.delete(ns, "music")
    result["deleted"] = store.get(ns, "music") is None
    out(f"deleted music: {result['deleted']}")
    result["remaining"] = sorted(h.key for h in store.search(ns, limit=10))
    out(f"remaining keys: {result['remaining']}")
    result["namespaces"] = store.list_namespaces(prefix=("users",))
    out(f"namespaces: {result['namespaces']}")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--node", default=os.environ.get("CAIRN_NODE", "http://127.0.0.1:7420"))
    p.add_argument("--token", default=os.environ.get("CAIRN_TOKEN"))
    p.add_argument("--tls-pin", default=os.environ.get("CAIRN_TLS_PIN"))
    p.add_argument("--user", default="alice")
    p.add_argument("--prefix", default="lg", help="Cairn namespace prefix for the store (default: lg)")
    a = p.parse_args(argv)
    with CairnClient(a.node, token=a.token, tls_pin=a.tls_pin) as client:
        run(CairnStore(client, index={"fields": ["text"]}, namespace_prefix=a.prefix), user=a.user)
    return 0


if __name__ == "__main__":
    sys.exit(main())
