#!/usr/bin/env python3
"""Long-term memory for a LlamaIndex agent on a Cairn node: a `CairnMemoryBlock` in a LlamaIndex `Memory`.
Messages flushed out of the short-term chat buffer are remembered in Cairn; each turn recalls the memories
closest to the user's latest message.

    pip install 'cairn-memory[llamaindex]'     # from client/python
    python sdk-examples/python/llamaindex_memory.py --node http://127.0.0.1:7420 --token "$CAIRN_TOKEN"

No LLM is involved: the example prints what the memory would insert into the agent's prompt.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from llama_index.core.llms import ChatMessage
from llama_index.core.memory import Memory

from cairn import CairnClient
from cairn.llamaindex import CairnMemoryBlock

CONVERSATION = [
    ("user", "Hi! I'm Alice. I only drink green tea, never coffee."),
    ("assistant", "Noted: green tea for you, Alice."),
    ("user", "I'm also allergic to peanuts."),
    ("assistant", "Understood, no peanuts."),
    ("user", "My favourite city is Lisbon."),
    ("assistant", "Lisbon is lovely."),
]


async def run(client: CairnClient, namespace: str = "demo/llamaindex", session: str = "chat-1", out=print) -> dict:
    block = CairnMemoryBlock(client=client, namespace=namespace, similarity_top_k=2)
    # A small token limit so that older messages are flushed to the long-term block quickly.
    memory = Memory.from_defaults(session_id=session, token_limit=60, token_flush_size=40,
                                  chat_history_token_ratio=0.5, memory_blocks=[block])
    for role, text in CONVERSATION:
        await memory.aput(ChatMessage(role=role, content=text))
    # Make sure everything is in the long-term block too (a real agent leaves this to the flush).
    await block.aput([ChatMessage(role=r, content=t) for r, t in CONVERSATION], session_id=session)

    question = ChatMessage(role="user", content="Can you order me something to drink?")
    recalled = await block.aget([question], session_id=session)
    out("recalled for the prompt:")
    out(recalled)
    other_session = await block.aget([question], session_id="another-chat")
    out(f"another session recalls: {other_session!r}")
    prompt = await memory.aget()
    out(f"memory.aget() gives {len(prompt)} messages to the LLM")
    return {"recalled": recalled, "other_session": other_session, "prompt": prompt}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--node", default=os.environ.get("CAIRN_NODE", "http://127.0.0.1:7420"))
    p.add_argument("--token", default=os.environ.get("CAIRN_TOKEN"))
    p.add_argument("--tls-pin", default=os.environ.get("CAIRN_TLS_PIN"))
    p.add_argument("--namespace", default="demo/llamaindex")
    a = p.parse_args(argv)
    with CairnClient(a.node, token=a.token, tls_pin=a.tls_pin) as client:
        asyncio.run(run(client, a.namespace))
    return 0


if __name__ == "__main__":
    sys.exit(main())
