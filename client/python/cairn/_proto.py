"""Requests built from Python arguments, and responses decoded into the dataclasses of `cairn.types`."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .types import (
    Alert,
    Cosignature,
    CreatedNamespace,
    Embeddings,
    Hit,
    Memory,
    MigrateProgress,
    Migrated,
    MintedToken,
    NamespaceInfo,
    NamespaceStats,
    NewMemory,
    NodeInfo,
    Peer,
    RememberResult,
    Root,
    ShareGrant,
    Stats,
)
from .v1 import cairn_pb2 as pb

# ------------------------------------------------------------------ requests


def _str_map(m: Mapping[str, Any] | None, what: str) -> dict[str, str]:
    if m is None:
        return {}
    if not isinstance(m, Mapping):
        raise TypeError(f"{what} must be a mapping of str to str, not {type(m).__name__}")
    out = {}
    for k, v in m.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"{what} must map str to str; got {k!r}: {v!r}")
        out[k] = v
    return out


def _ms(v: Any, what: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        # datetimes are accepted too
        ts = getattr(v, "timestamp", None)
        if ts is None:
            raise TypeError(f"{what} must be ms since the Unix epoch (int) or a datetime, not {type(v).__name__}")
        return int(round(ts() * 1000))
    if v < 0:
        raise ValueError(f"{what} must not be negative")
    return v


def _one_input(item: Any, metadata, created_at, key) -> pb.MemoryInput:
    if isinstance(item, str):
        item = NewMemory(item, dict(metadata or {}), created_at, key)
    elif isinstance(item, Mapping):
        extra = set(item) - {"text", "metadata", "created_at", "key", "vector"}
        if extra or "text" not in item:
            raise TypeError("a memory dict has `text` and optionally `metadata`, `created_at`, `key`, `vector`; "
                            f"got {sorted(item)}")
        item = NewMemory(item["text"], dict(item.get("metadata") or {}), item.get("created_at"), item.get("key"),
                         item.get("vector"))
    elif not isinstance(item, NewMemory):
        raise TypeError(f"a memory is a str, a dict or a NewMemory, not {type(item).__name__}")
    if not isinstance(item.text, str):
        raise TypeError("a memory's text must be a str")
    out = pb.MemoryInput(text=item.text, metadata=_str_map(item.metadata, "metadata"))
    ca = _ms(item.created_at, "created_at")
    if ca is not None:
        out.created_at = ca
    if item.key is not None:
        if not isinstance(item.key, str):
            raise TypeError("a memory's key must be a str")
        out.key = item.key
    if item.vector is not None:
        out.vector.values.extend(np.asarray(item.vector, dtype=np.float32).reshape(-1).tolist())
    return out


def remember_request(namespace: str, items, metadata=None, created_at=None, key=None) -> pb.RememberRequest:
    """`items` is one text (with `metadata`, `created_at`, `key` applying to it), or an iterable of texts,
    dicts or NewMemory (`metadata` and `created_at` then apply to plain texts; `key` is refused)."""
    if isinstance(items, (NewMemory, Mapping)) and (metadata is not None or created_at is not None or key is not None):
        raise ValueError("metadata=, created_at= and key= apply to a plain text; a NewMemory or dict carries its own")
    if isinstance(items, (str, NewMemory, Mapping)):
        inputs = [_one_input(items, metadata, created_at, key)]
    else:
        if key is not None:
            raise ValueError("key= applies to a single text; give each item its own key (NewMemory(text, key=...))")
        inputs = [_one_input(i, metadata, created_at, None) for i in items]
    return pb.RememberRequest(namespace=namespace, items=inputs)


RECALL_MODES = {"semantic": pb.RECALL_MODE_SEMANTIC, "lexical": pb.RECALL_MODE_LEXICAL,
                "hybrid": pb.RECALL_MODE_HYBRID}


def recall_mode(mode: str | None) -> int:
    """A mode name as the proto's RecallMode (None: the node's default)."""
    if mode is None:
        return pb.RECALL_MODE_DEFAULT
    if mode not in RECALL_MODES:
        raise ValueError(f"mode must be one of {sorted(RECALL_MODES)}, not {mode!r}")
    return RECALL_MODES[mode]


def recall_request(namespace: str, query=None, k: int = 10, where=None, since=None, until=None, ef: int = 0,
                   exact: bool = False, proof: bool = False, prefix: bool = False, vector=None,
                   mode: str | None = None, depth: int = 0) -> pb.RecallRequest:
    req = pb.RecallRequest(namespace=namespace, k=int(k or 0), ef=int(ef or 0), exact=bool(exact), proof=bool(proof),
                           prefix=bool(prefix), mode=recall_mode(mode), depth=int(depth or 0))
    if query is not None:
        if not isinstance(query, str):
            raise TypeError("query must be a str (use vector= for a vector)")
        req.text = query
        if vector is not None:
            # The text's own vector (namespace's model): the node ranks semantically with it, embeds nothing.
            req.text_vector.values.extend(np.asarray(vector, dtype=np.float32).reshape(-1).tolist())
    elif vector is not None:
        req.vector.values.extend(np.asarray(vector, dtype=np.float32).reshape(-1).tolist())
    f = _filter(where, since, until)
    if f is not None:
        req.filter.CopyFrom(f)
    return req


def _filter(where, since, until) -> pb.Filter | None:
    md = _str_map(where, "where")
    s, u = _ms(since, "since"), _ms(until, "until")
    if not md and s is None and u is None:
        return None
    f = pb.Filter(metadata=md)
    if s is not None:
        f.since = s
    if u is not None:
        f.until = u
    return f


def _strs(v, what: str) -> builtins.list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    out = builtins.list(v)
    if not all(isinstance(x, str) for x in out):
        raise TypeError(f"{what} must be strings")
    return out


def get_request(namespace: str, ids=None, keys=None, proof: bool = False) -> pb.GetRequest:
    return pb.GetRequest(namespace=namespace, ids=_strs(ids, "ids"), keys=_strs(keys, "keys"), proof=bool(proof))


def list_request(namespace: str, since=None, until=None, limit=None, page_token=None, where=None,
                 proof: bool = False) -> pb.ListRequest:
    req = pb.ListRequest(namespace=namespace, limit=int(limit or 0), page_token=page_token or "", proof=bool(proof),
                         metadata=_str_map(where, "where"))
    s, u = _ms(since, "since"), _ms(until, "until")
    if s is not None:
        req.since = s
    if u is not None:
        req.until = u
    return req


def mint_request(prefixes, rights, ttl=None) -> pb.MintTokenRequest:
    req = pb.MintTokenRequest(prefixes=_strs(prefixes, "prefixes"), rights=_strs(rights, "rights"))
    if ttl is not None:
        secs = ttl.total_seconds() if hasattr(ttl, "total_seconds") else ttl
        req.ttl_secs = int(secs)
    return req


# ----------------------------------------------------------------- responses


def _key(s: str) -> str | None:
    return s or None


def memory(m: pb.Memory) -> Memory:
    return Memory(id=m.id, namespace=m.namespace, text=m.text, metadata=dict(m.metadata), created_at=m.created_at,
                  key=_key(m.key), record=bytes(m.record) if m.record else None)


def hit(h: pb.Hit) -> Hit:
    return Hit(id=h.id, text=h.text, metadata=dict(h.metadata), created_at=h.created_at, score=h.score,
               namespace=h.namespace, key=_key(h.key), record=bytes(h.record) if h.record else None)


def remember_result(r: pb.RememberResult) -> RememberResult:
    return RememberResult(id=r.id, deduplicated=r.deduplicated, created_at=r.created_at, replaced=r.replaced or None)


def cosignature(c: pb.Cosignature) -> Cosignature:
    return Cosignature(witness=c.witness, signature=bytes(c.signature))


def root(r: pb.Root) -> Root:
    return Root(namespace=r.namespace, seq=r.seq, prev=r.prev, graph_leaves=r.graph_leaves, graph_root=r.graph_root,
                time_leaves=r.time_leaves, time_root=r.time_root, entry=r.entry, max_level=r.max_level, m=r.m,
                m0=r.m0, dim=r.dim, model=r.model, created_at=r.created_at, node_id=r.node_id,
                signature=r.signature, hash=r.hash, signed=bytes(r.signed),
                cosignatures=[cosignature(c) for c in r.cosignatures])


def namespace_info(n: pb.NamespaceInfo) -> NamespaceInfo:
    return NamespaceInfo(namespace=n.namespace, memories=n.memories, owner=n.owner or None, seq=n.seq,
                         model=n.model)


def external_model(model: str | None, dim: int | None) -> pb.ExternalModel | None:
    """The `external_model` field of CreateNamespace and Follow: both of `model` and `dim`, or neither."""
    if (model is None) != (dim is None):
        raise ValueError("give both model= and dim= (an external model), or neither")
    if model is None:
        return None
    return pb.ExternalModel(name=str(model), dim=int(dim))


def created_namespace(r: pb.CreateNamespaceResponse) -> CreatedNamespace:
    return CreatedNamespace(created=r.created, model=r.model, seq=r.root.seq if r.HasField("root") else 0)


def migrate_progress(p: pb.MigrateProgress) -> MigrateProgress:
    return MigrateProgress(done=p.done, total=p.total, resumed=p.resumed)


def migrated(p: pb.MigrateProgress) -> Migrated:
    r = p.result
    return Migrated(changed=r.changed, model=r.model, model_hash=r.root.model if r.HasField("root") else "",
                    memories=r.memories, resumed=p.resumed, caught_up=r.caught_up,
                    seq=r.root.seq if r.HasField("root") else 0)


def stats(s: pb.StatsResponse) -> Stats:
    return Stats(
        namespaces=[NamespaceStats(namespace=n.namespace, memories=n.memories, tombstones=n.tombstones,
                                   index_points=n.index_points, newest_created_at=n.newest_created_at)
                    for n in s.namespaces],
        total_memories=s.total_memories, model=s.model, dim=s.dim, version=s.version)


def node_info(n: pb.NodeInfoResponse) -> NodeInfo:
    return NodeInfo(node_id=n.node_id, model=n.model, version=n.version, ticket=n.ticket)


def embeddings(e: pb.EmbedResponse) -> Embeddings:
    dim = int(e.dim)
    vecs = np.array([builtins.list(v.values) for v in e.vectors], dtype=np.float32).reshape(len(e.vectors), dim)
    return Embeddings(model=e.model, dim=dim, vectors=vecs)


def minted(m: pb.MintTokenResponse) -> MintedToken:
    return MintedToken(token=m.token, revocation_ids=builtins.list(m.revocation_ids), expires_at=m.expires_at or None)


def grants(r: pb.ListSharesResponse) -> builtins.list[ShareGrant]:
    return [ShareGrant(prefix=g.prefix, node_id=g.node_id) for g in r.grants]


def peers(r: pb.ListPeersResponse) -> builtins.list[Peer]:
    return [Peer(node_id=p.node_id, addrs=builtins.list(p.addrs)) for p in r.peers]


def alerts(r: pb.AlertsResponse) -> builtins.list[Alert]:
    return [Alert(kind=a.kind, owner=a.owner, namespace=a.namespace, seq=a.seq, roots=[root(x) for x in a.roots])
            for a in r.alerts]


def cosigs_for_verifier(cs: Iterable[pb.Cosignature]) -> builtins.list[tuple[bytes, bytes]]:
    """Cosignatures as (witness id, signature) byte pairs; malformed entries are dropped."""
    out = []
    for c in cs:
        try:
            w = bytes.fromhex(c.witness)
        except ValueError:
            continue
        if len(w) == 32 and len(c.signature) == 64:
            out.append((w, bytes(c.signature)))
    return out
