"""The blocking client, `CairnClient`."""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import grpc

from . import _conn, _proto
from ._base import MAX_CHAIN, _Base, drive
from .errors import CairnError, from_rpc_error
from .pins import PinStore
from .types import (
    Alert,
    CreatedNamespace,
    Embeddings,
    ForgetResult,
    GetResult,
    Hits,
    Memory,
    MigrateProgress,
    Migrated,
    MintedToken,
    NamespaceInfo,
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
from .v1 import cairn_pb2 as pb
from .v1 import cairn_pb2_grpc as pb_grpc

Items = str | NewMemory | Mapping[str, Any] | Iterable[str | NewMemory | Mapping[str, Any]]


class CairnClient:
    """A blocking client of a Cairn node.

    Args:
        url: `http://host:port`, or `https://host:port` for a node started with `--tls` (default
            `http://127.0.0.1:7420`).
        token: capability token, sent as `authorization: Bearer <token>` with every call.
        tls_pin: for https, the SHA-256 fingerprint (hex) the node's certificate must have; the node prints it
            as `cairn node TLS certificate sha256 <hex>`. Checked before any call (`TlsPinMismatch`).
        trust_on_first_use: for https without a pin: accept the certificate the node presents, and pin it in
            the pins from then on (with a warning). Without a pin or this, https is refused.
        timeout: deadline of every call, seconds (None: none).
        pins_path: a JSON file keeping the pins across runs (pinned node ids and certificates, newest roots
            seen); same format as the CLI's `roots.json`. None keeps them in memory for this client.
        node_id: hex node id to trust for verified reads (`verify=True`). Default: pinned on first use from
            NodeInfo (or, for a replica namespace, the owner the node names), as the CLI does.
        pins: a `PinStore` to share between clients (instead of `pins_path`).
        witnesses: hex ids of witness nodes whose cosignatures count; `min_witnesses`: how many valid ones a
            verified answer's root must carry.
        max_chain: how many roots between the last root seen and a new one are fetched to check the prev-hash
            chain (beyond that, only seq order is checked).
    """

    def __init__(
        self,
        url: str = _conn.DEFAULT_NODE,
        token: str | None = None,
        tls_pin: str | None = None,
        trust_on_first_use: bool = False,
        timeout: float | None = None,
        pins_path: str | os.PathLike[str] | None = None,
        node_id: str | None = None,
        *,
        pins: PinStore | None = None,
        witnesses: Iterable[str] = (),
        min_witnesses: int = 0,
        max_chain: int = MAX_CHAIN,
    ):
        self._b = _Base(url, token, tls_pin, trust_on_first_use, timeout, pins_path, node_id, pins=pins,
                        witnesses=witnesses, min_witnesses=min_witnesses, max_chain=max_chain)
        b = self._b
        if b._credentials is not None:
            self._channel = grpc.secure_channel(b.target.authority, b._credentials, options=b._options)
        else:
            self._channel = grpc.insecure_channel(b.target.authority, options=b._options)
        self._stub = pb_grpc.CairnStub(self._channel)

    # ------------------------------------------------------------ plumbing

    @property
    def url(self) -> str:
        return self._b.url

    @property
    def pins(self) -> PinStore:
        """The pins this client checks and updates."""
        return self._b.pins

    @property
    def tls_fingerprint(self) -> str | None:
        """SHA-256 (hex) of the certificate the node presented (https only)."""
        return self._b.tls_fingerprint

    @property
    def raw(self) -> pb_grpc.CairnStub:
        """The generated gRPC stub; pass `metadata=client.call_metadata` to its calls."""
        return self._stub

    @property
    def call_metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata sent with every call (the authorization entry)."""
        return self._b._md

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> CairnClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, req):
        t0 = time.monotonic()
        try:
            return getattr(self._stub, method)(req, metadata=self._b._md, timeout=self._b.timeout)
        except grpc.RpcError as e:
            raise self._b._rpc_error(e, t0) from None

    def _run(self, flow):
        return drive(flow, self._call)

    # --------------------------------------------------------------- memory

    def remember(self, namespace: str, items: Items, metadata: Mapping[str, str] | None = None,
                 created_at: int | None = None, key: str | None = None) -> builtins.list[RememberResult]:
        """Stores memories: one text (`metadata`, `created_at` and `key` apply to it), or an iterable of texts,
        dicts (`text`, `metadata`, `created_at`, `key`) or `NewMemory`. Returns one result per item, in order.
        A key a live memory already holds replaces that memory in the same commit (`result.replaced`)."""
        return self._run(self._b._remember_flow(namespace, items, metadata, created_at, key))

    def recall(self, namespace: str, query: str | None = None, k: int = 10, where: Mapping[str, str] | None = None,
               since: int | None = None, until: int | None = None, ef: int = 0, exact: bool = False,
               verify: bool = False, prefix: bool = False, vector: Sequence[float] | None = None,
               mode: str | None = None, depth: int = 0) -> Hits:
        """The k memories closest in meaning to `query` (or `vector`), best first. With both, `vector` is the
        query text's vector (made with the namespace's model): the node ranks semantically with it and embeds
        nothing, which is how a namespace of an external model ranks a text in hybrid mode.

        Without a query (and vector): the newest k memories passing the filter, score 0. `where` filters on
        metadata equality, `since` (inclusive) / `until` (exclusive) on created_at. `prefix=True` searches
        every namespace under `namespace` (hits name their namespace). `mode` is "semantic", "lexical" (BM25)
        or "hybrid" (both fused); default: the node's for a text query. `depth` (lexical, hybrid): candidates
        each ranking contributes (default: the node's).

        `verify=True` asks for a proof and checks it (not with prefix or without a query), in any mode and with
        a filter: the node must have ranked with the mode asked (with none, the mode it names is the one
        checked), a lexical or hybrid proof's terms must be those of `query`, a hybrid proof's depth at least
        `depth` and k, and a filtered proof must be for exactly the `where` / `since` / `until` asked, every hit
        passing it. The result's `.verification` says against which root and which mode was proven."""
        return self._run(self._b._recall_flow(namespace, query, k, where, since, until, ef, exact, verify, prefix,
                                              vector, mode, depth))

    def get(self, namespace: str, ids: str | Sequence[str] | None = None, keys: str | Sequence[str] | None = None,
            verify: bool = False) -> GetResult:
        """Fetches memories by id and/or key. `missing` lists what was not found (not proven)."""
        return self._run(self._b._get_flow(namespace, ids, keys, verify))

    def list(self, namespace: str, since: int | None = None, until: int | None = None, limit: int | None = None,
             page_token: str | None = None, where: Mapping[str, str] | None = None, verify: bool = False) -> Page:
        """One page of memories in (created_at, id) order (default 100 per page); pass `page.next_page_token`
        on for the next. `where` filters on metadata (not with `verify`)."""
        return self._run(self._b._list_flow(namespace, since, until, limit, page_token, where, verify))

    def iter_memories(self, namespace: str, since: int | None = None, until: int | None = None,
                      where: Mapping[str, str] | None = None, page_size: int | None = None,
                      verify: bool = False) -> Iterator[Memory]:
        """Every memory in the range, page after page (each page verified with `verify=True`)."""
        token = None
        while True:
            page = self.list(namespace, since, until, page_size, token, where, verify)
            yield from page.memories
            token = page.next_page_token
            if not token:
                return

    def forget(self, namespace: str, ids: str | Sequence[str]) -> ForgetResult:
        """Forgets memories by id."""
        return self._run(self._b._forget_flow(namespace, ids))

    def embed(self, texts: str | Sequence[str]) -> Embeddings:
        """Embeds texts with the node's model (stores nothing)."""
        req = pb.EmbedRequest(texts=_proto._strs(texts, "texts"))
        return self._run(self._b._simple_flow("Embed", req, _proto.embeddings))

    # ------------------------------------------------------------- the node

    def namespaces(self) -> builtins.list[NamespaceInfo]:
        """Every namespace, in name order."""
        return self._run(self._b._simple_flow(
            "ListNamespaces", pb.ListNamespacesRequest(),
            lambda r: [_proto.namespace_info(n) for n in r.namespaces]))

    def stats(self, namespace: str | None = None) -> Stats:
        req = pb.StatsRequest() if namespace is None else pb.StatsRequest(namespace=namespace)
        return self._run(self._b._simple_flow("Stats", req, _proto.stats))

    def root(self, namespace: str, seq: int | None = None) -> Root:
        """A namespace's signed root (the latest, or the one with `seq`), as the node shows it (unverified)."""
        req = pb.GetRootRequest(namespace=namespace)
        if seq is not None:
            req.seq = seq
        return self._run(self._b._simple_flow("GetRoot", req, _proto.root))

    def watch_roots(self, namespace: str) -> Iterator[Root]:
        """Every new signed root of a namespace, starting with the current one (blocks between roots)."""
        stream = self._stub.WatchRoots(pb.WatchRootsRequest(namespace=namespace), metadata=self._b._md,
                                       timeout=self._b.timeout)
        try:
            for r in stream:
                yield _proto.root(r)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED and not stream.is_active():
                return
            raise from_rpc_error(e) from None
        finally:
            stream.cancel()

    def node_info(self) -> NodeInfo:
        return self._run(self._b._simple_flow("NodeInfo", pb.NodeInfoRequest(), _proto.node_info))

    def trusted_node_id(self, namespace: str) -> str:
        """The node id (hex) a verified answer for `namespace` must be signed by (pinning it on first use)."""
        return self._run(self._b._trusted_flow(namespace)).hex()

    # --------------------------------------------------------------- tokens

    def mint_token(self, prefixes: str | Sequence[str], rights: str | Sequence[str],
                   ttl: int | float | None = None) -> MintedToken:
        """Mints a token for namespace prefixes and rights (`read`, `write`, `forget`, `admin`); `ttl` in seconds
        (or a timedelta); None: no expiry. The caller's token needs admin on every prefix."""
        return self._run(self._b._simple_flow("MintToken", _proto.mint_request(prefixes, rights, ttl),
                                              _proto.minted))

    def revoke_token(self, revocation_id: str) -> None:
        """Revokes a token (and every token made from it) by a revocation id."""
        self._run(self._b._simple_flow("RevokeToken", pb.RevokeTokenRequest(id=revocation_id), lambda r: None))

    # ---------------------------------------------------------- replication

    def share(self, prefix: str, node_id: str) -> bool:
        """Lets peer `node_id` fetch the namespaces under `prefix`; False if already shared."""
        return self._run(self._b._simple_flow("Share", pb.ShareRequest(prefix=prefix, node_id=node_id),
                                              lambda r: r.changed))

    def unshare(self, prefix: str, node_id: str) -> bool:
        """Withdraws a grant; False if there was none."""
        return self._run(self._b._simple_flow("Unshare", pb.ShareRequest(prefix=prefix, node_id=node_id),
                                              lambda r: r.changed))

    def shares(self) -> builtins.list[ShareGrant]:
        return self._run(self._b._simple_flow("ListShares", pb.ListSharesRequest(), _proto.grants))

    def add_peer(self, ticket: str) -> str:
        """Adds a peer from its ticket; returns its node id."""
        return self._run(self._b._simple_flow("AddPeer", pb.AddPeerRequest(ticket=ticket), lambda r: r.node_id))

    def peers(self) -> builtins.list[Peer]:
        return self._run(self._b._simple_flow("ListPeers", pb.ListPeersRequest(), _proto.peers))

    def remove_peer(self, node_id: str) -> bool:
        return self._run(self._b._simple_flow("RemovePeer", pb.RemovePeerRequest(node_id=node_id),
                                              lambda r: r.removed))

    def follow(self, namespace: str, owner: str, model: str | None = None, dim: int | None = None) -> None:
        """Makes `namespace` here a read-only replica of the same namespace on node `owner`. For a namespace the
        owner created with an external model, name it (`model`, `dim`): the replica accepts only roots committing it."""
        req = pb.FollowRequest(namespace=namespace, owner=owner, external_model=_proto.external_model(model, dim))
        self._run(self._b._simple_flow("Follow", req, lambda r: None))

    def create_namespace(self, namespace: str, model: str | None = None,
                         dim: int | None = None, installed_model: str | None = None) -> CreatedNamespace:
        """Creates `namespace` before its first memory. With `model` and `dim`, one whose vectors you bring from
        that external model: every memory then needs `vector` (NewMemory(text, vector=...) or a dict's "vector"),
        semantic recall takes `vector=`, text queries rank lexically, and its roots commit the model. With
        `installed_model` (a model hash, hex, of a model installed on the node), one the node embeds with that model
        instead of its own. Idempotent for the same model; another model for an existing namespace is
        FailedPrecondition."""
        req = pb.CreateNamespaceRequest(namespace=namespace, external_model=_proto.external_model(model, dim),
                                        model=installed_model or "")
        return self._run(self._b._simple_flow("CreateNamespace", req, _proto.created_namespace))

    def migrate(self, namespace: str, model: str,
                on_progress: Callable[[MigrateProgress], None] | None = None) -> Migrated:
        """Moves `namespace` to another embedding model installed on the node (`model`: its hash, hex): every
        memory is embedded again and the next root names the new model. `on_progress` gets a report after every
        batch. Interrupted (this call cancelled, the node stopped), it keeps what it embedded: call again to
        resume. Needs admin on the namespace."""
        stream = self._stub.Migrate(pb.MigrateRequest(namespace=namespace, model=model), metadata=self._b._md)
        try:
            for p in stream:
                if p.HasField("result"):
                    return _proto.migrated(p)
                if on_progress is not None:
                    on_progress(_proto.migrate_progress(p))
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        finally:
            stream.cancel()
        raise CairnError("the node ended the migration without a result; call migrate again to resume")

    def unfollow(self, namespace: str) -> int:
        """Drops a replica namespace; returns how many memories were dropped."""
        return self._run(self._b._simple_flow("Unfollow", pb.UnfollowRequest(namespace=namespace),
                                              lambda r: r.dropped))

    def alerts(self) -> builtins.list[Alert]:
        return self._run(self._b._simple_flow("Alerts", pb.AlertsRequest(), _proto.alerts))

    # ------------------------------------------------ verifying raw answers

    def verify_recall_response(self, namespace: str, response: pb.RecallResponse, k: int = 10,
                               ef: int = 0, query: str | None = None, mode: str | None = None, depth: int = 0,
                               where: Mapping[str, str] | None = None, since: int | None = None,
                               until: int | None = None) -> Verification:
        """Verifies a raw RecallResponse asked with `proof=True` (for `k`, `ef`, `mode`, `depth` and the filter
        `where` / `since` / `until` as asked; a filtered question needs its `CPF1` proof), applies the freshness
        rule and records its root. Pass `query`, the text asked, to bind a lexical or hybrid proof's terms to it
        (`recall(verify=True)` always does). Raises VerificationError."""
        return self._run(self._b._verify_recall_flow(namespace, response, k=k, ef=ef, query=query, mode=mode,
                                                   depth=depth, where=where, since=since, until=until))

    def verify_get_response(self, namespace: str, response: pb.GetResponse, ids: Sequence[str] = (),
                            keys: Sequence[str] = ()) -> Verification:
        """Verifies a raw GetResponse asked with `proof=True` for `ids` and `keys`."""
        return self._run(self._b._verify_get_flow(namespace, response, ids=ids, keys=keys))

    def verify_list_response(self, namespace: str, response: pb.ListResponse, since: int | None = None,
                             until: int | None = None, limit: int | None = None,
                             page_token: str | None = None) -> Verification:
        """Verifies a raw ListResponse asked with `proof=True` for this range."""
        return self._run(self._b._verify_list_flow(namespace, response, since=since, until=until, limit=limit,
                                                   page_token=page_token))
