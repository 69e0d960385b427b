"""The LangGraph store and the LlamaIndex memory block against a real node, and the examples in
sdk-examples/python run as they are (their outputs asserted)."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path

import pytest

from cairn import NewMemory

pytest.importorskip("langgraph")
pytest.importorskip("llama_index.core")

from langgraph.store.base import GetOp, InvalidNamespaceError, ListNamespacesOp, PutOp, SearchOp  # noqa: E402
from llama_index.core.llms import ChatMessage  # noqa: E402

from cairn.langgraph import CairnStore, decode_value, encode_value  # noqa: E402
from cairn.llamaindex import CairnMemoryBlock  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[3] / "sdk-examples" / "python"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def prefix() -> str:
    return "lg-" + uuid.uuid4().hex[:8]


# ------------------------------------------------------------------ examples


def test_quickstart_example(node, ns, capsys):
    ex = load_example("quickstart")
    assert ex.main(["--node", node.url, "--token", node.token, "--namespace", ns]) == 0
    out = capsys.readouterr().out
    assert "Alice prefers green tea to coffee." in out and "verified against root seq 1" in out
    with node.client() as c:
        r = ex.run(c, ns, out=lambda *_: None)  # again: everything deduplicated, same root
        assert r["top"] == "Alice prefers green tea to coffee."
        assert r["verified_top"] == "Bob is allergic to peanuts."
        assert r["verification"].seq == 1 and r["verification"].node_id == node.node_id


def test_langgraph_example(node, prefix, capsys):
    ex = load_example("langgraph_memory")
    assert ex.main(["--node", node.url, "--token", node.token, "--prefix", prefix]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "put 3 preferences into ('users', 'alice', 'preferences')"
    assert lines[1].endswith("drink: Alice prefers green tea to coffee.")
    assert "filter category=work -> ['editor']" in lines
    assert "graph answer: Alice prefers green tea to coffee." in lines
    assert "updated drink -> Alice has switched to black coffee, no sugar." in lines
    assert "graph answer: Alice has switched to black coffee, no sugar." in lines
    assert "deleted music: True" in lines
    assert "remaining keys: ['drink', 'editor']" in lines
    assert "namespaces: [('users', 'alice', 'preferences')]" in lines

    # The same flow through run(), for another user, with its results checked one by one.
    with node.client() as c:
        store = CairnStore(c, index={"fields": ["text"]}, namespace_prefix=prefix)
        r = ex.run(store, user="bob", out=lambda *_: None)
        assert r["search"][0][:2] == ("drink", "Alice prefers green tea to coffee.")
        assert r["search"][0][2] >= r["search"][1][2]
        assert r["filter"] == ["editor"]
        assert r["answer_before"] == "Alice prefers green tea to coffee."
        assert r["updated"] == r["answer_after"] == "Alice has switched to black coffee, no sugar."
        assert r["deleted"] is True and r["remaining"] == ["drink", "editor"]
        assert r["namespaces"] == [("users", "alice", "preferences"), ("users", "bob", "preferences")]
        # Underneath: one Cairn memory per key, the update replaced the old one in place.
        got = c.get(f"{prefix}/users/bob/preferences", keys=["drink", "music", "editor"])
        assert sorted(m.key for m in got) == ["drink", "editor"] and got.missing == ["music"]
        drink = next(m for m in got if m.key == "drink")
        assert drink.text == "Alice has switched to black coffee, no sugar."  # the indexed field is the text
        assert drink.metadata["lg.f.category"] == '"food"'


def test_llamaindex_example(node, ns, capsys):
    ex = load_example("llamaindex_memory")
    assert ex.main(["--node", node.url, "--token", node.token, "--namespace", ns]) == 0
    out = capsys.readouterr().out
    assert "[user] Hi! I'm Alice. I only drink green tea, never coffee." in out
    assert "another session recalls: ''" in out
    with node.client() as c:
        import asyncio

        r = asyncio.run(ex.run(c, ns + "-2", out=lambda *_: None))
        assert r["recalled"].splitlines()[0] == "[user] Hi! I'm Alice. I only drink green tea, never coffee."
        assert r["other_session"] == ""
        assert isinstance(r["prompt"], list) and r["prompt"]
        stored = c.list(ns + "-2")
        assert {m.metadata["role"] for m in stored} == {"user", "assistant"}
        assert {m.metadata["session_id"] for m in stored} == {"chat-1"}
        assert {m.metadata["source"] for m in stored} == {"llamaindex"}


# ----------------------------------------------------------- LangGraph store


def test_langgraph_store_mapping(node, prefix):
    with node.client() as c:
        store = CairnStore(c, namespace_prefix=prefix)
        ns = ("team", "notes")
        store.put(ns, "a", {"text": "The deploy is on Monday.", "priority": 2, "done": False, "owner": "ann"})
        store.put(ns, "b", {"text": "Buy coffee beans.", "priority": 5, "done": True, "owner": "ben"})
        store.put(ns, "c", {"text": "Review the budget.", "priority": 3, "done": False, "owner": None})
        store.put(("team", "notes", "sub"), "d", {"text": "A nested note about coffee.", "priority": 1})

        item = store.get(ns, "a")
        assert item.value == {"text": "The deploy is on Monday.", "priority": 2, "done": False, "owner": "ann"}
        assert item.namespace == ns and item.key == "a" and item.created_at == item.updated_at
        assert store.get(ns, "zzz") is None and store.get(("nowhere",), "a") is None

        # search by meaning over the prefix (sub-namespaces included), with scores
        hits = store.search(("team",), query="coffee", limit=2)
        assert {h.key for h in hits} == {"b", "d"} and all(h.score is not None for h in hits)
        assert store.search(ns, query="coffee", limit=1)[0].namespace in (ns, ("team", "notes", "sub"))
        # filters: str / bool / None equality on the node, numbers and operators here
        assert [h.key for h in store.search(ns, filter={"owner": "ben"})] == ["b"]
        assert {h.key for h in store.search(ns, filter={"done": False})} == {"a", "c"}
        assert [h.key for h in store.search(ns, filter={"owner": None})] == ["c"]
        assert [h.key for h in store.search(ns, filter={"priority": 5})] == ["b"]
        assert {h.key for h in store.search(ns, filter={"priority": {"$gte": 3}})} == {"b", "c"}
        assert {h.key for h in store.search(ns, filter={"owner": {"$ne": "ann"}, "done": False})} == {"c"}
        assert store.search(ns, filter={"priority": "5"}) == []  # types count
        # no query: newest first, no score; offset and limit
        newest = store.search(ns, limit=10)  # ("team", "notes", "sub") is under the prefix too
        assert [h.key for h in newest] == ["d", "c", "b", "a"] and all(h.score is None for h in newest)
        assert [h.key for h in store.search(ns, limit=2, offset=1)] == ["c", "b"]
        with pytest.raises(ValueError):
            store.search(ns, limit=10, offset=995)

        # namespaces
        assert store.list_namespaces() == [("team", "notes"), ("team", "notes", "sub")]
        assert store.list_namespaces(max_depth=2) == [("team", "notes")]
        assert store.list_namespaces(suffix=("sub",)) == [("team", "notes", "sub")]
        assert store.list_namespaces(prefix=("team", "*", "sub")) == [("team", "notes", "sub")]
        assert store.list_namespaces(limit=1, offset=1) == [("team", "notes", "sub")]

        # update in place, delete
        store.put(ns, "a", {"text": "The deploy moved to Tuesday.", "priority": 2})
        assert store.get(ns, "a").value["text"] == "The deploy moved to Tuesday."
        assert len(c.list(f"{prefix}/team/notes")) == 3
        store.delete(ns, "a")
        store.delete(ns, "never-existed")
        assert store.get(ns, "a") is None and len(c.list(f"{prefix}/team/notes")) == 2

        # batch: results in order
        res = store.batch([PutOp(ns, "e", {"text": "e"}), GetOp(ns, "e"), SearchOp(ns, limit=1),
                           ListNamespacesOp(max_depth=1), PutOp(ns, "e", None), GetOp(ns, "e")])
        assert res[0] is None and res[1].value == {"text": "e"} and res[2][0].key == "e"
        assert res[3] == [("team",)] and res[4] is None and res[5] is None

        # a memory written by another tool under the prefix shows up too
        c.remember(f"{prefix}/team/notes", "Written with the plain client.", metadata={"src": "cli"})
        other = [h for h in store.search(ns, query="plain client", limit=1)][0]
        assert other.value == {"text": "Written with the plain client.", "metadata": {"src": "cli"}}


def test_langgraph_store_limits_and_options(node, prefix):
    with node.client() as c:
        store = CairnStore(c, namespace_prefix=prefix, index={"fields": ["title", "tags[*]"]})
        for bad in [("has space",), ("a/b",), ("ünï",), ("",)]:
            with pytest.raises(InvalidNamespaceError):
                store.put(bad, "k", {"x": 1})
        with pytest.raises(InvalidNamespaceError):
            store.put(("x" * 130,), "k", {"x": 1})
        with pytest.raises(ValueError):
            store.put(("ok",), "bad\nkey", {"x": 1})
        with pytest.raises(ValueError):
            CairnStore(c, index={"embed": lambda x: x, "dims": 3})
        with pytest.raises(ValueError):
            CairnStore()

        # index fields: the text embedded is the fields' text
        store.put(("docs",), "d1", {"title": "Quarterly budget", "tags": ["finance", "q3"], "body": "ignored"})
        m = c.get(f"{prefix}/docs", keys=["d1"])[0]
        assert m.text == "Quarterly budget\nfinance\nq3"
        store.put(("docs",), "d2", {"title": "unused", "body": "whole value"}, index=False)
        assert c.get(f"{prefix}/docs", keys=["d2"])[0].text == '{"body": "whole value", "title": "unused"}'

        # a value over 4 KiB is split over several metadata entries and comes back whole
        big = {"title": "big", "blob": "é" * 9000, "n": 1}
        store.put(("docs",), "big", big)
        assert store.get(("docs",), "big").value == big
        meta = encode_value(big)
        assert meta["lg.value.n"] == "5" and decode_value(meta, "")[0] == big
        with pytest.raises(ValueError, match="metadata entries"):
            store.put(("docs",), "wide", {f"f{i}": i for i in range(70)})


def test_langgraph_store_verified_search(node, prefix):
    with node.client() as c:
        store = CairnStore(c, namespace_prefix=prefix, verify=True)
        store.put(("v",), "tea", {"text": "Green tea is calming."})
        store.put(("v",), "run", {"text": "Running in the park every morning."})
        hits = store.search(("v",), query="a relaxing drink", limit=1)
        assert hits[0].key == "tea"
        # the store asked for a proof (seen in the pins: the root was accepted)
        assert c.pins.last_seen(node.node_id, f"{prefix}/v").seq == 2


async def test_langgraph_store_async(node, prefix):
    async with node.aclient() as ac:
        store = CairnStore(aclient=ac, namespace_prefix=prefix)
        await store.aput(("u", "amy"), "city", {"text": "Amy lives in Porto."})
        await store.aput(("u", "amy"), "pet", {"text": "Amy has a grey cat."})
        assert (await store.aget(("u", "amy"), "city")).value["text"] == "Amy lives in Porto."
        hits = await store.asearch(("u",), query="animal", limit=1)
        assert hits[0].key == "pet"
        assert await store.alist_namespaces() == [("u", "amy")]
        await store.adelete(("u", "amy"), "pet")
        assert await store.aget(("u", "amy"), "pet") is None
        with pytest.raises(RuntimeError):
            store.put(("u",), "k", {"a": 1})  # no sync client
    # a sync client alone also serves the async methods (in a thread)
    with node.client() as c:
        store = CairnStore(c, namespace_prefix=prefix)
        assert (await store.aget(("u", "amy"), "city")).value["text"] == "Amy lives in Porto."


# -------------------------------------------------------- LlamaIndex block


async def test_llamaindex_block(node, ns):
    with node.client() as c:
        block = CairnMemoryBlock(client=c, namespace=ns, similarity_top_k=2)
        assert await block.aget([ChatMessage(role="user", content="anything")]) == ""  # nothing stored yet
        await block.aput([ChatMessage(role="user", content="My dog is called Rex."),
                          ChatMessage(role="assistant", content="Rex is a great name."),
                          ChatMessage(role="user", content="")], session_id="s1")
        await block.aput([ChatMessage(role="user", content="I live in Oslo.")], session_id="s2")
        assert len(c.list(ns)) == 3  # the empty message is skipped

        q = [ChatMessage(role="user", content="What is my dog's name?"),
             ChatMessage(role="assistant", content="Let me check.")]
        got = await block.aget(q, session_id="s1")
        assert got.splitlines()[0] == "[user] My dog is called Rex." and "Oslo" not in got
        assert "Oslo" in await block.aget([ChatMessage(role="user", content="Where do I live?")], session_id="s2")
        unscoped = CairnMemoryBlock(client=c, namespace=ns, similarity_top_k=3, session_scoped=False)
        assert len((await unscoped.aget(q, session_id="s1")).splitlines()) == 3
        verified = CairnMemoryBlock(client=c, namespace=ns, similarity_top_k=1, verify=True,
                                    template="{text} ({score:.2f})")
        line = await verified.aget(q, session_id="s1")
        assert line.startswith("My dog is called Rex. (")
    async with node.aclient() as ac:
        block = CairnMemoryBlock(aclient=ac, namespace=ns)
        await block.aput([ChatMessage(role="user", content="I prefer window seats.")])
        assert "window seats" in await block.aget([ChatMessage(role="user", content="Book me a seat.")])
    with pytest.raises(ValueError):
        CairnMemoryBlock(namespace=ns)


async def test_llamaindex_block_with_your_embedding_model(node, ns):
    from llama_index.core.embeddings import MockEmbedding

    with node.client() as c:
        c.create_namespace(ns, model="mock-embed", dim=8)
        block = CairnMemoryBlock(client=c, namespace=ns, similarity_top_k=1, verify=True,
                                 embed_model=MockEmbedding(embed_dim=8))
        await block.aput([ChatMessage(role="user", content="My dog is called Rex."),
                          ChatMessage(role="user", content="I live in Oslo.")], session_id="s1")
        assert all(len(m.text) > 0 for m in c.list(ns))
        got = await block.aget([ChatMessage(role="user", content="Where do I live, Oslo?")], session_id="s1")
        assert got == "[user] I live in Oslo."
        # Without the model the same namespace still answers a text, lexically.
        plain = CairnMemoryBlock(client=c, namespace=ns, similarity_top_k=1)
        assert "Rex" in await plain.aget([ChatMessage(role="user", content="dog Rex")], session_id="s1")


def test_remember_helpers_are_reexported():
    # the adapters build on the public types
    assert NewMemory("x").metadata == {}
