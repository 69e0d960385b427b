"""A LlamaIndex memory block backed by a Cairn node: `CairnMemoryBlock(BaseMemoryBlock[str])`.

    from llama_index.core.memory import Memory
    from cairn import CairnClient
    from cairn.llamaindex import CairnMemoryBlock

    block = CairnMemoryBlock(client=CairnClient(url, token=token), namespace="agents/alice")
    memory = Memory.from_defaults(session_id="chat-1", memory_blocks=[block])

- put (`aput`, e.g. messages flushed from the short-term memory): each message with text becomes one memory,
  its text the message's text, with metadata `role` (user, assistant, ...), `source` = `llamaindex` and, when
  the message carries one, `session_id`.
- get (`aget`): a Recall on the text of the latest user message (or the latest message when there is no user
  message), top `similarity_top_k`, limited to the session (`session_id`) when `session_scoped`; formatted one
  memory per line as `[role] text`. With `verify=True` the Recall asks for a proof and checks it, the session
  filter included (a filtered proof shows the hits are the top among exactly the session's memories).
- `embed_model` (a LlamaIndex embedding model), for a namespace created for an external model
  (`client.create_namespace(ns, model="...", dim=N)`): each stored message carries the model's embedding of its
  text, and each Recall sends the query's embedding with its text (hybrid by default: BM25 over the text fused with
  the vector's ranking; the node embeds nothing).
"""

from __future__ import annotations

import asyncio
from typing import Any, List, Optional

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock
from llama_index.core.bridge.pydantic import Field
from llama_index.core.memory.memory import BaseMemoryBlock

from .errors import NotFound
from .types import NewMemory


def _text(message: ChatMessage) -> str:
    parts = [b.text for b in message.blocks if isinstance(b, TextBlock) and b.text]
    return " ".join(parts).strip()


class CairnMemoryBlock(BaseMemoryBlock[str]):
    """Long-term memory in a Cairn namespace (see the module docstring)."""

    name: str = Field(default="CairnMemory", description="The name of the memory block.")
    client: Any = Field(default=None, description="A cairn.CairnClient (sync calls run in a thread).")
    aclient: Any = Field(default=None, description="A cairn.AsyncCairnClient (used when given).")
    namespace: str = Field(description="The Cairn namespace the memories go to.")
    similarity_top_k: int = Field(default=3, description="How many memories to recall.")
    session_scoped: bool = Field(default=True, description="Recall only memories of the current session.")
    verify: bool = Field(default=False, description="Verify each Recall's proof against the node's signed root.")
    template: str = Field(default="[{role}] {text}", description="How one recalled memory is shown.")
    source: str = Field(default="llamaindex", description="The `source` metadata entry of stored memories.")
    embed_model: Optional[BaseEmbedding] = Field(
        default=None, description="Your embedding model, for a namespace of an external model (see the module doc).")

    def model_post_init(self, __context: Any) -> None:
        if self.client is None and self.aclient is None:
            raise ValueError("CairnMemoryBlock needs client= (CairnClient) or aclient= (AsyncCairnClient)")

    async def _call(self, name: str, *args, **kw):
        if self.aclient is not None:
            return await getattr(self.aclient, name)(*args, **kw)
        return await asyncio.to_thread(getattr(self.client, name), *args, **kw)

    async def _aput(self, messages: List[ChatMessage]) -> None:
        items = []
        for m in messages:
            sid = m.additional_kwargs.pop("session_id", None)
            text = _text(m)
            if not text:
                continue
            role = m.role.value if isinstance(m.role, MessageRole) else str(m.role)
            meta = {"role": role, "source": self.source}
            if sid is not None:
                meta["session_id"] = str(sid)
            items.append(NewMemory(text, meta))
        if items and self.embed_model is not None:
            vectors = await self.embed_model.aget_text_embedding_batch([m.text for m in items])
            items = [NewMemory(m.text, m.metadata, vector=v) for m, v in zip(items, vectors)]
        if items:
            await self._call("remember", self.namespace, items)

    async def _aget(self, messages: Optional[List[ChatMessage]] = None, session_id: Optional[str] = None,
                    **block_kwargs: Any) -> str:
        if not messages:
            return ""
        users = [m for m in messages if m.role == MessageRole.USER and _text(m)]
        latest = users[-1] if users else next((m for m in reversed(messages) if _text(m)), None)
        if latest is None:
            return ""
        query = _text(latest)
        k = self.similarity_top_k
        scoped = self.session_scoped and session_id is not None
        try:
            where = {"session_id": str(session_id)} if scoped else None
            vector = None if self.embed_model is None else await self.embed_model.aget_query_embedding(query)
            hits = await self._call("recall", self.namespace, query, k=k, where=where, verify=self.verify,
                                    vector=vector)
        except NotFound:  # nothing was ever stored in the namespace
            return ""
        lines = [self.template.format(role=h.metadata.get("role", "memory"), text=h.text, score=h.score, id=h.id)
                 for h in list(hits)[:k]]
        return "\n".join(lines)
