"""What the sync and the asyncio clients share: set-up, and every call written once as a "flow", a generator
that yields (RPC name, request) and gets the response back, so that `CairnClient` drives it with blocking
calls and `AsyncCairnClient` with awaited ones. Verification (trusted node id, proof check, root chain,
freshness, witnesses) lives here too."""

from __future__ import annotations

import builtins
import logging
import os
import time
from collections.abc import Generator, Iterable
from typing import Any

from . import _conn, _proto, _verify
from . import verifier as V
import grpc

from .errors import CairnError, ConfigError, NotFound, PermissionDenied, VerificationError, from_rpc_error
from .pins import PinStore
from .types import (
    ForgetResult,
    GetResult,
    Hits,
    Page,
    Verification,
)
from .v1 import cairn_pb2 as pb

log = logging.getLogger("cairn")

Flow = Generator[tuple[str, Any], Any, Any]

# Past this many roots between the last root seen and a new one, the chain is not walked (only seq order and
# the freshness rule are checked), as in the CLI.
MAX_CHAIN = 1000


class _Base:
    """Shared set-up of CairnClient and AsyncCairnClient (see CairnClient for the arguments)."""

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
        _tls: _conn.TlsSetup | None = None,
    ):
        self.target = _conn.parse_url(url)
        self.url = self.target.url
        self._md = _conn.auth_metadata(token)
        self.timeout = timeout
        if pins is not None and pins_path is not None:
            raise ConfigError("give pins_path or pins, not both")
        self.pins = pins if pins is not None else PinStore(pins_path)
        self._node_id = None
        if node_id is not None:
            self._node_id = _verify.parse_node_id(node_id)
        self._witnesses = [_verify.parse_node_id(w) for w in witnesses]
        self.min_witnesses = int(min_witnesses)
        if self.min_witnesses > len(self._witnesses):
            raise ConfigError(f"min_witnesses={min_witnesses} but only {len(self._witnesses)} witness ids are pinned")
        self.max_chain = int(max_chain)
        self._trusted_cache: dict[str, bytes] = {}
        self.tls_fingerprint: str | None = None
        if self.target.tls:
            tls = _tls if _tls is not None else self._tls_setup(tls_pin, trust_on_first_use)
            self.tls_fingerprint = tls.fingerprint
            self._credentials, self._options = tls.credentials, tls.options
        else:
            if tls_pin is not None:
                raise ConfigError(f"tls_pin given but {url!r} is not an https:// URL")
            self._credentials, self._options = None, list(_conn.CHANNEL_OPTIONS)

    # ------------------------------------------------------------------ TLS

    @staticmethod
    def _tls_for(url: str, tls_pin: str | None, trust_on_first_use: bool, pins: PinStore | None,
                 pins_path, timeout: float | None) -> _conn.TlsSetup:
        """Blocking: fetches and checks the node's certificate (used before the channel exists)."""
        target = _conn.parse_url(url)
        store = pins if pins is not None else PinStore(pins_path)
        pin = tls_pin if tls_pin is not None else store.tls_pin(target.url)
        if pin is None and not trust_on_first_use:
            raise ConfigError(
                f"{url} is https: give tls_pin= (the SHA-256 the node prints as `cairn node TLS certificate "
                "sha256 <hex>`) or trust_on_first_use=True")
        tls = _conn.pinned_tls(target, pin, timeout or 10.0)
        if pin is None:
            log.warning("first contact with %s: trusting TLS certificate sha256 %s from now on", url, tls.fingerprint)
            store.pin_tls(target.url, tls.fingerprint)
        return tls

    def _tls_setup(self, tls_pin, trust_on_first_use) -> _conn.TlsSetup:
        return self._tls_for(self.url, tls_pin, trust_on_first_use, self.pins, None, self.timeout)

    def _rpc_error(self, e: grpc.RpcError, t0: float) -> CairnError:
        """The SDK error for a call started at `t0` (time.monotonic()) that failed with `e`: a node's CANCELLED
        after this client's own timeout ran out counts as DeadlineExceeded (sync and asyncio clients alike)."""
        timeout = self.timeout
        passed = timeout is not None and time.monotonic() - t0 >= timeout
        return from_rpc_error(e, deadline_passed=passed)

    # --------------------------------------------------------------- flows

    def _remember_flow(self, namespace, items, metadata=None, created_at=None, key=None) -> Flow:
        req = _proto.remember_request(namespace, items, metadata, created_at, key)
        resp = yield ("Remember", req)
        return [_proto.remember_result(r) for r in resp.results]

    def _recall_flow(self, namespace, query=None, k=10, where=None, since=None, until=None, ef=0, exact=False,
                     verify=False, prefix=False, vector=None, mode=None, depth=0) -> Flow:
        req = _proto.recall_request(namespace, query, k, where, since, until, ef, exact, verify, prefix, vector,
                                    mode, depth)
        resp = yield ("Recall", req)
        hits = Hits(_proto.hit(h) for h in resp.hits)
        if verify:
            hits.verification = yield from self._verify_recall_req_flow(namespace, req, resp)
        return hits

    def _get_flow(self, namespace, ids=None, keys=None, verify=False) -> Flow:
        req = _proto.get_request(namespace, ids, keys, verify)
        if not req.ids and not req.keys:
            raise ValueError("get needs ids or keys")
        resp = yield ("Get", req)
        out = GetResult([_proto.memory(m) for m in resp.memories], builtins.list(resp.missing),
                        builtins.list(resp.unreturned))
        if verify:
            out.verification = yield from self._verify_get_flow(namespace, resp, ids=req.ids, keys=req.keys)
        return out

    def _list_flow(self, namespace, since=None, until=None, limit=None, page_token=None, where=None,
                   verify=False) -> Flow:
        req = _proto.list_request(namespace, since, until, limit, page_token, where, verify)
        resp = yield ("List", req)
        page = Page([_proto.memory(m) for m in resp.memories], resp.next_page_token or None)
        if verify:
            page.verification = yield from self._verify_list_flow(
                namespace, resp, since=req.since if req.HasField("since") else None,
                until=req.until if req.HasField("until") else None, limit=req.limit, page_token=req.page_token)
        return page

    def _forget_flow(self, namespace, ids) -> Flow:
        resp = yield ("Forget", pb.ForgetRequest(namespace=namespace, ids=_proto._strs(ids, "ids")))
        return ForgetResult(builtins.list(resp.forgotten), builtins.list(resp.missing))

    def _simple_flow(self, method: str, req, convert) -> Flow:
        resp = yield (method, req)
        return convert(resp)

    # -------------------------------------------------------- verification

    def _trusted_flow(self, namespace: str) -> Flow:
        """The node id whose signature an answer for `namespace` must carry: `node_id=` if given; else the one
        pinned (per address and namespace for a replica namespace, whose roots its owner signs; else per
        address); else, on first use, the owner the node names for a replica namespace or the node's own id
        (pinned from then on, with a warning), as the CLI does."""
        if self._node_id is not None:
            return self._node_id
        if namespace in self._trusted_cache:
            return self._trusted_cache[namespace]
        pinned = self.pins.node_id(self.url, namespace)
        if pinned is None:
            owner = None
            try:
                resp = yield ("ListNamespaces", pb.ListNamespacesRequest())
                owner = next((n.owner for n in resp.namespaces if n.namespace == namespace and n.owner), None)
            except PermissionDenied:
                pass
            if owner is not None:
                log.warning("first contact with %s on %s, a replica: trusting its owner's node id %s from now on",
                            namespace, self.url, owner)
                self.pins.pin_node_id(self.url, owner, namespace)
                pinned = owner
        if pinned is None:
            pinned = self.pins.node_id(self.url)
        if pinned is None:
            info = yield ("NodeInfo", pb.NodeInfoRequest())
            pinned = info.node_id
            log.warning("first contact with %s: trusting node id %s from now on (pass node_id= to pin it yourself)",
                        self.url, pinned)
            self.pins.pin_node_id(self.url, pinned)
        trusted = _verify.parse_node_id(pinned)
        self._trusted_cache[namespace] = trusted
        return trusted

    def _accept_flow(self, namespace: str, v: V.Verified, cosigs, mode: str | None = None) -> Flow:
        """After a proof verified: the freshness rule against the newest root accepted for (node id,
        namespace), the prev-hash chain from it (fetching the roots in between, at most `max_chain`), the
        witness count, and then the root is recorded as seen."""
        root = v.root
        last = self.pins.last_seen(root.node_id, namespace)
        try:
            V.check_fresh(root, None if last is None else (last.seq, last.hash))
        except V.VerifyError as e:
            raise VerificationError(f"verification failed: {e}") from None
        if last is not None and root.seq > last.seq:
            gap = root.seq - last.seq
            between = []
            if 1 < gap <= self.max_chain:
                for s in range(last.seq + 1, root.seq):
                    try:
                        r = yield ("GetRoot", pb.GetRootRequest(namespace=namespace, seq=s))
                    except NotFound:
                        raise VerificationError(f"verification failed: the node has no root seq {s} of "
                                                f"{namespace!r} to link seq {last.seq} to seq {root.seq}") from None
                    try:
                        between.append(V.decode_signed_root(bytes(r.signed), root.node_id))
                    except V.VerifyError as e:
                        raise VerificationError(f"verification failed: root seq {s}: {e}") from None
            if gap <= self.max_chain:
                _verify.check_chain(last.seq, last.hash, between, root)
        n = V.count_witnesses(root, _proto.cosigs_for_verifier(cosigs), self._witnesses)
        if n < self.min_witnesses:
            raise VerificationError(f"verification failed: root seq {root.seq} has {n} valid witness "
                                    f"cosignature(s), {self.min_witnesses} required")
        self.pins.accept(root.node_id, namespace, root.seq, root.hash)
        return Verification(namespace=namespace, seq=root.seq, root_hash=root.hash.hex(),
                            node_id=root.node_id.hex(), witnesses=n, root=root, mode=mode)

    def _verify_recall_req_flow(self, namespace, req: pb.RecallRequest, resp) -> Flow:
        """Verifies `resp` against what `req` asked: its k, ef, depth, mode, filter and query text."""
        text = req.text if req.WhichOneof("query") == "text" else None
        return (yield from self._verify_recall_flow(
            namespace, resp, k=req.k, ef=req.ef, query=text, mode=req.mode, depth=req.depth,
            flt=_verify.filter_of(req.filter if req.HasField("filter") else None),
            vector=req.WhichOneof("query") == "vector"))

    def _verify_recall_flow(self, namespace, resp, k=10, ef=0, query=None, mode=None, depth=0, where=None,
                            since=None, until=None, *, flt=None, vector=False) -> Flow:
        """`mode` is a mode name or a RecallMode number (None: the node's default); the filter is `flt`, else
        the one `where`, `since` and `until` make."""
        if mode is None or isinstance(mode, str):
            mode = _proto.recall_mode(mode)
        if flt is None:
            flt = _verify.filter_of(_proto._filter(where, since, until))
        trusted = yield from self._trusted_flow(namespace)
        v = _verify.recall(namespace, resp, trusted, int(k or 10), int(ef or 0), query=query, mode=mode,
                           min_depth=int(depth or 0), flt=flt, vector=vector)
        return (yield from self._accept_flow(namespace, v, resp.cosignatures, mode=_verify.proven_mode(v)))

    def _verify_get_flow(self, namespace, resp, ids=(), keys=()) -> Flow:
        trusted = yield from self._trusted_flow(namespace)
        v = _verify.get(namespace, resp, trusted, builtins.list(ids), builtins.list(keys))
        return (yield from self._accept_flow(namespace, v, resp.cosignatures))

    def _verify_list_flow(self, namespace, resp, since=None, until=None, limit=None, page_token=None) -> Flow:
        trusted = yield from self._trusted_flow(namespace)
        v = _verify.list_page(namespace, resp, trusted, since, until, limit, page_token)
        return (yield from self._accept_flow(namespace, v, resp.cosignatures))


def drive(flow: Flow, call):
    """Runs a flow with a blocking `call(method, request) -> response`."""
    try:
        step = next(flow)
        while True:
            try:
                resp = call(*step)
            except CairnError as e:
                step = flow.throw(e)
                continue
            step = flow.send(resp)
    except StopIteration as stop:
        return stop.value


async def adrive(flow: Flow, call):
    """Runs a flow with an async `call(method, request) -> response`."""
    try:
        step = next(flow)
        while True:
            try:
                resp = await call(*step)
            except CairnError as e:
                step = flow.throw(e)
                continue
            step = flow.send(resp)
    except StopIteration as stop:
        return stop.value

