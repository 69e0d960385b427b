"""Plain dataclasses for what the SDK sends and returns (the gRPC messages, decoded).

Times are milliseconds since the Unix epoch (ints), ids are 64 lowercase hex characters, and a memory's
`key` is None when it has none.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Sequence

if TYPE_CHECKING:
    import numpy as np

    from .verifier import Root as ProvenRoot

# The metadata entry a memory's key is stored in (MemoryInput.key in the proto).
KEY_META = "cairn.key"


@dataclass
class NewMemory:
    """One memory to store: its text, metadata (string to string), optional created_at (ms; default: the
    node's clock), optional key (unique in the namespace: remembering it again replaces the memory) and, in a
    namespace created for an external model (`create_namespace(ns, model=, dim=)`), the text's vector."""

    text: str
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: int | None = None
    key: str | None = None
    vector: Sequence[float] | None = None


@dataclass
class RememberResult:
    """The outcome for one remembered item, in request order."""

    id: str
    deduplicated: bool
    created_at: int
    # The id of the memory this one replaced (same key), forgotten in the same commit; None otherwise.
    replaced: str | None = None


@dataclass
class Verification:
    """What a verified answer was checked against: the signed root of `namespace` at `seq` (hash
    `root_hash`, hex) signed by `node_id` (hex), with `witnesses` valid cosignatures from pinned witnesses.
    For a Recall, `mode` is the ranking its proof proved ("semantic", "lexical" or "hybrid")."""

    namespace: str
    seq: int
    root_hash: str
    node_id: str
    witnesses: int = 0
    # The decoded signed root (cairn.verifier.Root).
    root: ProvenRoot | None = field(default=None, repr=False, compare=False)
    # Recall: the mode the proof proved; None for Get and List.
    mode: str | None = None


@dataclass
class Memory:
    """A stored memory. `record` holds its canonical record bytes when a proof was asked for."""

    id: str
    namespace: str
    text: str
    metadata: dict[str, str]
    created_at: int
    key: str | None = None
    record: bytes | None = field(default=None, repr=False)


@dataclass
class Hit:
    """One recalled memory, with its cosine similarity `score` (0 for a Recall without a query)."""

    id: str
    text: str
    metadata: dict[str, str]
    created_at: int
    score: float
    namespace: str
    key: str | None = None
    record: bytes | None = field(default=None, repr=False)


class Hits(builtins.list):
    """A Recall's hits, best first (a list of `Hit`). `verification` is set when asked with `verify=True`."""

    verification: Verification | None

    def __init__(self, hits=(), verification: Verification | None = None):
        super().__init__(hits)
        self.verification = verification

    def __repr__(self) -> str:
        return f"Hits({builtins.list.__repr__(self)}, verification={self.verification!r})"


@dataclass
class GetResult:
    """A Get answer: the memories found (request order), the ids or keys not found (`missing`, not proven),
    and the ids left out at the node's byte cap (`unreturned`: ask again). Iterating yields the memories."""

    memories: list[Memory]
    missing: list[str] = field(default_factory=list)
    unreturned: list[str] = field(default_factory=list)
    verification: Verification | None = None

    def __iter__(self) -> Iterator[Memory]:
        return iter(self.memories)

    def __len__(self) -> int:
        return len(self.memories)

    def __getitem__(self, i):
        return self.memories[i]


@dataclass
class Page:
    """One List page in (created_at, id) order; `next_page_token` is None on the last page. Iterating yields
    the memories."""

    memories: list[Memory]
    next_page_token: str | None = None
    verification: Verification | None = None

    def __iter__(self) -> Iterator[Memory]:
        return iter(self.memories)

    def __len__(self) -> int:
        return len(self.memories)

    def __getitem__(self, i):
        return self.memories[i]


@dataclass
class ForgetResult:
    """Forget's outcome: the ids forgotten by this call and those that were not present."""

    forgotten: list[str]
    missing: list[str]


@dataclass
class Embeddings:
    """Embed's output: the model id, the dimension, and one unit vector per text (a float32 array of shape
    (len(texts), dim))."""

    model: str
    dim: int
    vectors: np.ndarray


@dataclass
class NamespaceInfo:
    """One namespace: its live memories, its owner (hex node id; None when this node owns it, i.e. it is not
    a replica) and the seq of its latest signed root."""

    namespace: str
    memories: int
    owner: str | None
    seq: int
    # The model its vectors come from: the node's model id, or `external:NAME/DIM` for one the caller embeds with.
    model: str = ""


@dataclass
class CreatedNamespace:
    """What create_namespace did: `created` (False when it already existed with that model), the namespace's model
    (`external:NAME/DIM` for an external one) and the seq of its latest root (1 for a new external namespace,
    whose first root commits the model; 0 when none is signed yet)."""

    created: bool
    model: str
    seq: int


@dataclass
class MigrateProgress:
    """A migration's progress report: `done` of `total` live memories embedded with the new model, of which
    `resumed` by an earlier, interrupted run."""

    done: int
    total: int
    resumed: int


@dataclass
class Migrated:
    """What migrate did: `changed` (False when the namespace was on that model already), the model's id and hash,
    the live memories now embedded with it, how many an earlier run had embedded (`resumed`) and how many were
    written while it ran (`caught_up`), and the seq of the root that names the new model."""

    changed: bool
    model: str
    model_hash: str
    memories: int
    resumed: int
    caught_up: int
    seq: int


@dataclass
class NamespaceStats:
    namespace: str
    memories: int
    tombstones: int
    index_points: int
    newest_created_at: int


@dataclass
class Stats:
    namespaces: list[NamespaceStats]
    total_memories: int
    model: str
    dim: int
    version: str


@dataclass
class Cosignature:
    """A witness's cosignature of a root (hex witness id, 64-byte signature)."""

    witness: str
    signature: bytes = field(repr=False)


@dataclass
class Root:
    """A namespace's signed root as the node shows it (GetRoot). Unverified: `signed` holds the wire bytes a
    verifier checks (cairn.verifier.decode_signed_root)."""

    namespace: str
    seq: int
    prev: str
    graph_leaves: int
    graph_root: str
    time_leaves: int
    time_root: str
    entry: int
    max_level: int
    m: int
    m0: int
    dim: int
    model: str
    created_at: int
    node_id: str
    signature: str
    hash: str
    signed: bytes = field(repr=False, default=b"")
    cosignatures: list[Cosignature] = field(default_factory=list, repr=False)


@dataclass
class NodeInfo:
    """The node's id (the hex ed25519 key that signs its roots), model, version and iroh ticket."""

    node_id: str
    model: str
    version: str
    ticket: str


@dataclass
class MintedToken:
    """A minted capability token, its revocation ids (hex; revoking the first revokes it and every token made
    from it) and its expiry (ms; None: no expiry)."""

    token: str = field(repr=False)
    revocation_ids: list[str]
    expires_at: int | None


@dataclass
class ShareGrant:
    prefix: str
    node_id: str


@dataclass
class Peer:
    node_id: str
    addrs: list[str]


@dataclass
class Alert:
    """Evidence against an owner: two different signed roots for one (namespace, seq)."""

    kind: str
    owner: str
    namespace: str
    seq: int
    roots: list[Root]

