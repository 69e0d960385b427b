"""Cairn's Python SDK: a client of a Cairn node (gRPC), with client-side verification of its answers.

    from cairn import CairnClient

    with CairnClient("http://127.0.0.1:7420", token=TOKEN) as c:
        c.remember("agents/alice", "Alice prefers green tea to coffee.", metadata={"speaker": "alice"})
        hits = c.recall("agents/alice", "what does Alice drink?", k=3, verify=True)
        print(hits[0].text, hits.verification)

`AsyncCairnClient` (cairn.aio) has the same methods for asyncio. `cairn.verifier` is the independent,
pure-Python proof verifier the clients use for `verify=True`. Adapters: `cairn.langgraph` (a LangGraph
store) and `cairn.llamaindex` (a LlamaIndex memory block).

The names below are imported on first use, so `import cairn.verifier` alone does not load gRPC.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "CairnClient": "client",
    "AsyncCairnClient": "aio",
    "PinStore": "pins",
    "DEFAULT_NODE": "_conn",
    # types
    "NewMemory": "types",
    "RememberResult": "types",
    "Memory": "types",
    "Hit": "types",
    "Hits": "types",
    "GetResult": "types",
    "Page": "types",
    "ForgetResult": "types",
    "Verification": "types",
    "Embeddings": "types",
    "NamespaceInfo": "types",
    "CreatedNamespace": "types",
    "MigrateProgress": "types",
    "Migrated": "types",
    "NamespaceStats": "types",
    "Stats": "types",
    "Root": "types",
    "Cosignature": "types",
    "NodeInfo": "types",
    "MintedToken": "types",
    "ShareGrant": "types",
    "Peer": "types",
    "Alert": "types",
    "KEY_META": "types",
    # errors
    "CairnError": "errors",
    "RpcError": "errors",
    "Cancelled": "errors",
    "Unknown": "errors",
    "InvalidArgument": "errors",
    "DeadlineExceeded": "errors",
    "NotFound": "errors",
    "AlreadyExists": "errors",
    "PermissionDenied": "errors",
    "ResourceExhausted": "errors",
    "FailedPrecondition": "errors",
    "Aborted": "errors",
    "OutOfRange": "errors",
    "Unimplemented": "errors",
    "Internal": "errors",
    "Unavailable": "errors",
    "DataLoss": "errors",
    "Unauthenticated": "errors",
    "ConfigError": "errors",
    "TlsPinMismatch": "errors",
    "VerificationError": "errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'cairn' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover
    from ._conn import DEFAULT_NODE
    from .aio import AsyncCairnClient
    from .client import CairnClient
    from .errors import (
        Aborted,
        AlreadyExists,
        CairnError,
        Cancelled,
        ConfigError,
        DataLoss,
        DeadlineExceeded,
        FailedPrecondition,
        Internal,
        InvalidArgument,
        NotFound,
        OutOfRange,
        PermissionDenied,
        ResourceExhausted,
        RpcError,
        TlsPinMismatch,
        Unauthenticated,
        Unavailable,
        Unimplemented,
        Unknown,
        VerificationError,
    )
    from .pins import PinStore
    from .types import (
        KEY_META,
        Alert,
        Cosignature,
        CreatedNamespace,
        Embeddings,
        ForgetResult,
        GetResult,
        Hit,
        Hits,
        Memory,
        MintedToken,
        NamespaceInfo,
        NamespaceStats,
        NewMemory,
        NodeInfo,
        Page,
        Peer,
        RememberResult,
        Root,
        ShareGrant,
        Stats,
        Verification,
    )
