"""A LangGraph store backed by a Cairn node: `CairnStore(BaseStore)`.

    from cairn import CairnClient
    from cairn.langgraph import CairnStore

    store = CairnStore(CairnClient(url, token=token), index={"fields": ["text"]})
    store.put(("users", "alice"), "drink", {"text": "Alice prefers green tea.", "kind": "preference"})
    store.search(("users",), query="what does Alice drink?", filter={"kind": "preference"})

Mapping (documented, stable):

- Namespace: the LangGraph tuple joined with "/" (after the store's optional `namespace_prefix`), so
  `("users", "alice")` is the Cairn namespace `users/alice`. Labels must be non-empty and use only
  `[A-Za-z0-9_:-]` (Cairn's namespace characters without "/", and without ".", which LangGraph forbids);
  anything else raises `InvalidNamespaceError`. The joined name is at most 128 characters.
- Item key: the memory's Cairn key (`MemoryInput.key`): putting a key again replaces the memory in one commit.
  `put(..., value=None)` / `delete` forgets it.
- Value: the whole value, as JSON, in the metadata entry `lg.value` (split over `lg.value.0`, `lg.value.1`, ...
  with `lg.value.n` = the count when it is over Cairn's 4 KiB per metadata value). The memory's text, which the
  node embeds, is the text at the index fields (LangGraph's `index={"fields": [...]}` paths, e.g. `"text"`,
  `"a.b"`, `"items[*].name"`; per put with `index=[...]`), joined with newlines; by default the whole value as
  JSON. `index=False` on a put still stores the whole value as the text: Cairn embeds every memory.
- Each top-level scalar field (str, int, float, bool, None) is also stored as `lg.f.<field>` = its JSON (or, over
  256 bytes, `#` + a BLAKE3 prefix of it), so that search filters on equality run on the node (`where`).
- Search: `query` → Recall over the namespace prefix (`prefix=True`); no query → the newest memories first
  (Recall without a query, score None). `filter` equality on str / bool / None values runs on the node;
  numbers, nested values and the operators `$eq $ne $gt $gte $lt $lte` are checked here on up to 1,000
  candidates. Recall returns at most 1,000 hits, so `offset + limit` is at most 1,000.
- Items: `created_at` and `updated_at` are both the memory's created_at (the time of the latest put).
- Memories written by other tools (no `lg.value`) show up in search with the value `{"text": ..., "metadata":
  {...}}` and their Cairn key (or id) as the item key.

TTLs are not supported (`supports_ttl = False`).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Generator, Iterable
from datetime import datetime, timezone
from typing import Any

import blake3
from langgraph.store.base import (
    BaseStore,
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)
from langgraph.store.base.embed import get_text_at_path

from .errors import NotFound
from .types import KEY_META, NewMemory

VALUE = "lg.value"
FIELD = "lg.f."
MAX_META_VALUE = 4096
MAX_META_ENTRIES = 64
MAX_META_KEY = 128
MAX_NAMESPACE = 128
MAX_RECALL = 1000
_LABEL = re.compile(r"[A-Za-z0-9_:-]+\Z")
_OPS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"}


def field_value(v: Any) -> str:
    """How a top-level scalar field is stored in metadata (and how an equality filter on it is sent)."""
    s = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    if len(s.encode()) > 256:
        return "#" + blake3.blake3(s.encode()).hexdigest()[:32]
    return s


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, bool, int, float))


def _split_utf8(s: str, limit: int) -> list[str]:
    """Splits `s` into pieces of at most `limit` UTF-8 bytes, on character boundaries."""
    out, cur, size = [], [], 0
    for ch in s:
        n = len(ch.encode())
        if size + n > limit:
            out.append("".join(cur))
            cur, size = [], 0
        cur.append(ch)
        size += n
    out.append("".join(cur))
    return out


def encode_value(value: dict[str, Any]) -> dict[str, str]:
    """The metadata entries holding a value: `lg.value` (or its chunks) and `lg.f.<field>` per top-level scalar."""
    meta: dict[str, str] = {}
    raw = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if len(raw.encode()) <= MAX_META_VALUE:
        meta[VALUE] = raw
    else:
        chunks = _split_utf8(raw, MAX_META_VALUE)
        meta[f"{VALUE}.n"] = str(len(chunks))
        for i, c in enumerate(chunks):
            meta[f"{VALUE}.{i}"] = c
    for k, v in value.items():
        if _is_scalar(v):
            name = FIELD + k
            if len(name.encode()) > MAX_META_KEY or any(ord(c) < 0x20 for c in k):
                raise ValueError(f"field name {k!r} is too long for a Cairn metadata key (at most "
                                 f"{MAX_META_KEY - len(FIELD)} bytes, no control characters)")
            meta[name] = field_value(v)
    if len(meta) + 1 > MAX_META_ENTRIES:  # + cairn.key
        raise ValueError(f"the value needs {len(meta) + 1} Cairn metadata entries (its JSON in 4 KiB pieces and one "
                         f"per top-level scalar field); at most {MAX_META_ENTRIES} fit")
    return meta


def decode_value(metadata: dict[str, str], text: str) -> tuple[dict[str, Any], bool]:
    """The value stored in a memory's metadata; (value, True) for a memory this store wrote, else a stand-in."""
    raw = metadata.get(VALUE)
    if raw is None and f"{VALUE}.n" in metadata:
        try:
            raw = "".join(metadata[f"{VALUE}.{i}"] for i in range(int(metadata[f"{VALUE}.n"])))
        except (KeyError, ValueError):
            raw = None
    if raw is not None:
        try:
            v = json.loads(raw)
            if isinstance(v, dict):
                return v, True
        except ValueError:
            pass
    return {"text": text, "metadata": {k: v for k, v in metadata.items() if k != KEY_META}}, False


def _matches(value: dict[str, Any], flt: dict[str, Any]) -> bool:
    for k, cond in flt.items():
        have = value.get(k)
        if isinstance(cond, dict) and cond and all(isinstance(o, str) and o.startswith("$") for o in cond):
            for op, want in cond.items():
                if op not in _OPS:
                    raise ValueError(f"unsupported filter operator {op!r} (supported: {sorted(_OPS)})")
                try:
                    ok = {"$eq": lambda: have == want, "$ne": lambda: have != want,
                          "$gt": lambda: have is not None and have > want,
                          "$gte": lambda: have is not None and have >= want,
                          "$lt": lambda: have is not None and have < want,
                          "$lte": lambda: have is not None and have <= want}[op]()
                except TypeError:
                    ok = False
                if not ok:
                    return False
        elif have != cond or (isinstance(cond, bool) != isinstance(have, bool)):
            return False
    return True


def _pushdown(flt: dict[str, Any] | None) -> tuple[dict[str, str], bool]:
    """The equality conditions the node can check (`where`), and whether any condition is left for here."""
    where: dict[str, str] = {}
    rest = False
    for k, cond in (flt or {}).items():
        if isinstance(cond, dict) and set(cond) == {"$eq"}:
            cond = cond["$eq"]
        if (cond is None or isinstance(cond, (str, bool))) and len((FIELD + k).encode()) <= MAX_META_KEY:
            where[FIELD + k] = field_value(cond)
        else:
            rest = True
    return where, rest


def _ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


class CairnStore(BaseStore):
    """A LangGraph `BaseStore` on a Cairn node (see the module docstring for the mapping).

    Args:
        client: a `CairnClient` (for `batch` and the sync methods).
        aclient: an `AsyncCairnClient` (for `abatch` and the async methods); without one, `abatch` runs the
            sync client in a thread.
        index: `{"fields": [...]}`, the paths whose text is embedded (default: the whole value as JSON).
            `embed` and `dims` are not used: the node embeds with its own model.
        namespace_prefix: a Cairn namespace prefix all of this store's namespaces live under (e.g. `"lg"`).
        verify: verify search results (`verify=True` Recall) when the search has a query and one namespace (a
            filter pushed down to the node is proven too, up to the node's `--max-filter-candidates`); otherwise
            it is ignored.
    """

    supports_ttl = False
    __slots__ = ("client", "aclient", "index_fields", "namespace_prefix", "verify")

    def __init__(self, client=None, aclient=None, *, index: dict[str, Any] | None = None,
                 namespace_prefix: str = "", verify: bool = False):
        if client is None and aclient is None:
            raise ValueError("CairnStore needs a CairnClient (client=) or an AsyncCairnClient (aclient=)")
        self.client = client
        self.aclient = aclient
        fields = (index or {}).get("fields")
        if index and index.get("embed") is not None:
            raise ValueError("CairnStore: the node embeds with its own model; give index={'fields': [...]} only")
        self.index_fields: list[str] | None = list(fields) if fields else None
        self.namespace_prefix = namespace_prefix.strip("/")
        self.verify = verify

    # ----------------------------------------------------------- namespaces

    def to_cairn(self, namespace: tuple[str, ...]) -> str:
        """The Cairn namespace of a LangGraph namespace tuple (raises InvalidNamespaceError)."""
        for label in namespace:
            if not isinstance(label, str) or not _LABEL.match(label):
                raise InvalidNamespaceError(
                    f"namespace label {label!r} in {namespace}: Cairn namespaces allow only A-Z a-z 0-9 _ : - in a "
                    "label (non-empty; '/' joins the labels and '.' is not allowed)")
        parts = ([self.namespace_prefix] if self.namespace_prefix else []) + list(namespace)
        ns = "/".join(parts)
        if len(ns) > MAX_NAMESPACE:
            raise InvalidNamespaceError(f"namespace {namespace} is {len(ns)} characters as a Cairn namespace "
                                        f"({ns!r}); at most {MAX_NAMESPACE}")
        return ns

    def from_cairn(self, ns: str) -> tuple[str, ...] | None:
        """The LangGraph tuple of a Cairn namespace under this store's prefix (None if not under it)."""
        if self.namespace_prefix:
            if ns == self.namespace_prefix:
                return ()
            if not ns.startswith(self.namespace_prefix + "/"):
                return None
            ns = ns[len(self.namespace_prefix) + 1:]
        return tuple(ns.split("/"))

    # ---------------------------------------------------------------- items

    def _text_of(self, value: dict[str, Any], index) -> str:
        fields = self.index_fields if index is None else (None if index is False else list(index))
        if not fields:
            return get_text_at_path(value, "$")[0]
        texts: list[str] = []
        for f in fields:
            texts += [t for t in get_text_at_path(value, f) if t and t.strip()]
        return "\n".join(texts) if texts else get_text_at_path(value, "$")[0]

    def _item(self, m, cls=Item, score=None):
        value, _ = decode_value(m.metadata, m.text)
        ns = self.from_cairn(m.namespace) or ()
        key = m.key if m.key is not None else m.id
        when = _ms_to_dt(m.created_at)
        if cls is SearchItem:
            return SearchItem(namespace=ns, key=key, value=value, created_at=when, updated_at=when, score=score)
        return Item(value=value, key=key, namespace=ns, created_at=when, updated_at=when)

    # ---------------------------------------------------------------- flows
    # Each op is a generator yielding (client method name, args, kwargs) and receiving the result, so the same
    # code runs with CairnClient (batch) and AsyncCairnClient (abatch).

    def _get(self, op: GetOp) -> Generator:
        ns = self.to_cairn(op.namespace)
        try:
            got = yield ("get", (ns,), {"keys": [op.key]})
        except NotFound:
            return None
        return self._item(got.memories[0]) if got.memories else None

    def _put(self, op: PutOp) -> Generator:
        ns = self.to_cairn(op.namespace)
        if not isinstance(op.key, str) or not op.key or len(op.key.encode()) > 256 or any(
                ord(c) < 0x20 or ord(c) == 0x7F for c in op.key):
            raise ValueError(f"item key {op.key!r}: Cairn keys are 1..=256 bytes without control characters")
        if op.value is None:
            try:
                got = yield ("get", (ns,), {"keys": [op.key]})
            except NotFound:
                return None
            if got.memories:
                yield ("forget", (ns, [m.id for m in got.memories]), {})
            return None
        value = dict(op.value)
        meta = encode_value(value)
        yield ("remember", (ns, NewMemory(self._text_of(value, op.index), meta, key=op.key)), {})
        return None

    def _search(self, op: SearchOp) -> Generator:
        if op.limit < 0 or op.offset < 0:
            raise ValueError("limit and offset must not be negative")
        want = op.offset + op.limit
        if want > MAX_RECALL:
            raise ValueError(f"offset + limit is {want}; a Cairn search returns at most {MAX_RECALL} hits")
        if op.limit == 0:
            return []
        prefix = self.to_cairn(op.namespace_prefix) if op.namespace_prefix else self.namespace_prefix
        where, rest = _pushdown(op.filter)
        k = MAX_RECALL if rest else want
        kw: dict[str, Any] = {"k": k, "where": where or None, "prefix": True}
        if op.query:
            kw["query"] = op.query
            if self.verify and op.namespace_prefix:
                # A proof covers one namespace (with the pushed-down filter, if any): search exactly the one asked.
                kw.update(prefix=False, verify=True)
        try:
            hits = yield ("recall", (prefix,), kw)
        except NotFound:
            return []
        out = []
        for h in hits:
            item = self._item(h, SearchItem, score=h.score if op.query else None)
            if op.filter and not _matches(item.value, op.filter):
                continue
            if self.from_cairn(h.namespace) is None:
                continue
            out.append(item)
        return out[op.offset:op.offset + op.limit]

    def _list_namespaces(self, op: ListNamespacesOp) -> Generator:
        infos = yield ("namespaces", (), {})
        names = []
        for n in infos:
            if n.memories == 0:
                continue
            t = self.from_cairn(n.namespace)
            if t is None or t == ():
                continue
            names.append(t)

        def match(t, cond) -> bool:
            path = tuple(cond.path)
            if len(path) > len(t):
                return False
            part = t[:len(path)] if cond.match_type == "prefix" else t[len(t) - len(path):]
            return all(p == "*" or p == x for p, x in zip(path, part))

        names = [t for t in names if all(match(t, c) for c in (op.match_conditions or ()))]
        if op.max_depth is not None:
            names = [t[:op.max_depth] for t in names]
        names = sorted(set(names))
        return names[op.offset:op.offset + op.limit]

    def _flow(self, op: Op) -> Generator:
        if isinstance(op, GetOp):
            return self._get(op)
        if isinstance(op, PutOp):
            return self._put(op)
        if isinstance(op, SearchOp):
            return self._search(op)
        if isinstance(op, ListNamespacesOp):
            return self._list_namespaces(op)
        raise ValueError(f"unknown operation {type(op).__name__}")

    # ---------------------------------------------------------------- batch

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        if self.client is None:
            raise RuntimeError("CairnStore.batch needs a CairnClient (client=); use abatch with an AsyncCairnClient")
        results = []
        for op in ops:
            flow = self._flow(op)
            try:
                step = next(flow)
                while True:
                    name, args, kw = step
                    try:
                        res = getattr(self.client, name)(*args, **kw)
                    except NotFound as e:
                        step = flow.throw(e)
                        continue
                    step = flow.send(res)
            except StopIteration as stop:
                results.append(stop.value)
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        if self.aclient is None:
            ops = list(ops)
            return await asyncio.to_thread(self.batch, ops)
        results = []
        for op in ops:
            flow = self._flow(op)
            try:
                step = next(flow)
                while True:
                    name, args, kw = step
                    try:
                        res = await getattr(self.aclient, name)(*args, **kw)
                    except NotFound as e:
                        step = flow.throw(e)
                        continue
                    step = flow.send(res)
            except StopIteration as stop:
                results.append(stop.value)
        return results
