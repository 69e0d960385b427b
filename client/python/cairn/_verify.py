"""Client-side checks of Get / List / Recall answers asked for with `proof = true`, mirroring the Rust SDK's
`cairn_client::verify`: nothing the node says is taken on trust. Ids are recomputed from the record bytes,
the text, metadata, times, namespace and key shown must be the ones in those bytes, and the proof is then
checked by the independent verifier (`cairn.verifier`) against the trusted node id. The freshness rule and
witness counting are applied by the client afterwards (see `cairn.client`)."""

from __future__ import annotations

from collections.abc import Sequence

from . import verifier as V
from .errors import VerificationError
from .types import KEY_META
from .v1 import cairn_pb2 as pb

U64_MAX = 2**64 - 1


def parse_node_id(s: str) -> bytes:
    """A hex node id (64 hex characters) as 32 bytes."""
    try:
        b = bytes.fromhex(s.strip())
    except (ValueError, AttributeError):
        b = b""
    if len(b) != 32:
        raise VerificationError(f"node id {s!r} is not 64 hex characters")
    return b


def _parse_id(s: str) -> bytes:
    try:
        b = bytes.fromhex(s)
    except ValueError:
        b = b""
    if len(b) != 32 or s != b.hex():
        raise VerificationError(f"{s!r} is not a memory id (64 lowercase hex characters)")
    return b


def check_shown(id_hex: str, record: bytes, text: str, metadata, created_at: int, namespace: str,
                key: str | None) -> tuple[bytes, bytes]:
    """Checks that what the node shows for one memory is what its record bytes say and that its id is the
    BLAKE3 of those bytes. Returns (id, record) for the verifier."""
    id_ = _parse_id(id_hex)
    record = bytes(record)
    if not record:
        raise VerificationError(f"memory {id_hex} comes without its record bytes")
    try:
        rec = V.decode_record(record)
        rid = V.record_id(record)
    except V.VerifyError as e:
        raise VerificationError(f"memory {id_hex}: record does not decode: {e}") from None
    if rid != id_:
        raise VerificationError(f"memory {id_hex}: its id is not the hash of its record ({rid.hex()})")
    if rec.text != text or dict(rec.metadata) != dict(metadata) or rec.created_at != created_at:
        raise VerificationError(f"memory {id_hex}: shown text, metadata or time differ from the record")
    if namespace != rec.namespace:
        raise VerificationError(f"memory {id_hex}: shown namespace {namespace!r} differs from the record's "
                                f"{rec.namespace!r}")
    if (key or "") != rec.metadata.get(KEY_META, ""):
        raise VerificationError(f"memory {id_hex} is shown with key {key!r} but its record says "
                                f"{rec.metadata.get(KEY_META)!r}")
    return id_, record


def _run(f, *args):
    try:
        return f(*args)
    except V.VerifyError as e:
        raise VerificationError(f"verification failed: {e}") from None


_MODE_NAMES = {pb.RECALL_MODE_SEMANTIC: "semantic", pb.RECALL_MODE_LEXICAL: "lexical",
               pb.RECALL_MODE_HYBRID: "hybrid"}
_FMODE_NAMES = {1: "lexical", 2: "hybrid", 3: "semantic"}


def filter_of(f: pb.Filter | None) -> V.RecallFilter:
    """The filter of a Recall request as the filtered-proof verifier holds it (pairs sorted by key bytes), as
    the Rust SDK's `verify::filter_of`; no filter is the empty one."""
    if f is None:
        return V.RecallFilter()
    return V.RecallFilter.of(dict(f.metadata), f.since if f.HasField("since") else None,
                             f.until if f.HasField("until") else None)


def proven_mode(v: V.Verified) -> str:
    """The ranking a verified Recall proof proves: "semantic", "lexical" or "hybrid"."""
    if v.kind == "filtered":
        return _FMODE_NAMES[v.mode]
    return v.kind if v.kind in ("lexical", "hybrid") else "semantic"


def recall(namespace: str, resp: pb.RecallResponse, trusted: bytes, k: int, min_ef: int, *,
           query: str | None = None, mode: int = pb.RECALL_MODE_DEFAULT, min_depth: int = 0,
           flt: V.RecallFilter | None = None, vector: bool = False) -> V.Verified:
    """Verifies a Recall answer of any mode, as the Rust SDK's `verify::recall_filtered`: a filtered question
    (or a `CPF1` proof) against its `CPF1` proof, which must be for exactly `flt`, the filter asked (an
    unfiltered proof for a filtered question is refused); else a lexical or hybrid answer against its `CPX1`
    proof, a semantic one against its `CPR2` proof.

    `k` is the k asked after defaulting (0 means 10), `min_ef` the ef asked (0 if none), `min_depth` the depth
    asked (0 if none; at least k is required of a hybrid proof). `mode` is the RecallMode asked: when it names
    one, the node must have ranked with it; when it is DEFAULT, the mode the node says it used is the one
    proven. `query` is the text asked: a lexical or hybrid proof's terms must be its terms (None: not bound).
    `vector=True` says the question was a vector, which only a semantic proof can answer."""
    asked = int(mode or pb.RECALL_MODE_DEFAULT)
    used = resp.mode if resp.mode in _MODE_NAMES else pb.RECALL_MODE_SEMANTIC
    if asked != pb.RECALL_MODE_DEFAULT:
        if asked not in _MODE_NAMES:
            raise VerificationError(f"verification failed: {asked} is not a recall mode")
        if used != asked:
            raise VerificationError(f"verification failed: the node ranked with mode "
                                    f"{_MODE_NAMES[used]}, {_MODE_NAMES[asked]} was asked")
    if vector and used != pb.RECALL_MODE_SEMANTIC:
        raise VerificationError(f"verification failed: a {_MODE_NAMES[used]} answer to a vector question "
                                "(only a semantic ranking takes a vector)")
    flt = V.RecallFilter() if flt is None else flt
    returned = [check_shown(h.id, h.record, h.text, h.metadata, h.created_at, h.namespace, h.key) for h in resp.hits]
    scores = [h.score for h in resp.hits]
    proof = bytes(resp.proof)
    k = int(k or 10)
    depth = max(int(min_depth or 0), k)
    if proof[:4] == b"CPF1" or flt.key() != V.RecallFilter().key():
        fmode = {pb.RECALL_MODE_LEXICAL: 1, pb.RECALL_MODE_HYBRID: 2}.get(used, 3)
        return _run(V.verify_filtered, proof, namespace, trusted, fmode, k, depth, flt, query, returned, scores)
    if used in (pb.RECALL_MODE_LEXICAL, pb.RECALL_MODE_HYBRID):
        hmode = 1 if used == pb.RECALL_MODE_LEXICAL else 2
        return _run(V.verify_hybrid, proof, namespace, trusted, hmode, k, int(min_ef or 0), depth, query,
                    returned, scores)
    return _run(V.verify_recall, proof, namespace, trusted, k, int(min_ef or 0), returned, scores)


def _memories(resp) -> list[tuple[bytes, bytes]]:
    return [check_shown(m.id, m.record, m.text, m.metadata, m.created_at, m.namespace, m.key) for m in resp.memories]


def get(namespace: str, resp: pb.GetResponse, trusted: bytes, ids: Sequence[str] = (),
        keys: Sequence[str] = ()) -> V.Verified:
    """Verifies a Get answer: the proof covers exactly the memories returned (ids reported missing are not
    proven), every memory returned was asked for (by id, or by a key its record carries), and every asked key
    is returned or reported missing (unless some memories were left out at the node's byte cap)."""
    returned = _memories(resp)
    v = _run(V.verify_get, bytes(resp.proof), namespace, trusted, returned)
    asked_ids, asked_keys = set(ids), set(keys)
    held = set()
    for m in resp.memories:
        if m.id not in asked_ids and not (m.key and m.key in asked_keys):
            raise VerificationError(f"memory {m.id} was returned but not asked for")
        if m.key:
            held.add(m.key)
    missing = set(resp.missing)
    if not resp.unreturned:
        for k in keys:
            if k not in held and k not in missing:
                raise VerificationError(f"key {k!r} was asked for but is neither returned nor reported missing")
        for i in ids:
            if i not in missing and not any(m.id == i for m in resp.memories):
                raise VerificationError(f"id {i} was asked for but is neither returned nor reported missing")
    return v


def list_range(since: int | None, until: int | None, limit: int | None, page_token: str | None):
    """(since, until, after, limit) of a List request, as the verifier wants them (the page token is hex
    u64be(created_at) || id)."""
    after = None
    if page_token:
        try:
            raw = bytes.fromhex(page_token)
        except ValueError:
            raw = b""
        if len(raw) != 40:
            raise VerificationError("page token is not 40 bytes of hex")
        after = (int.from_bytes(raw[:8], "big"), raw[8:])
    return (0 if since is None else since, U64_MAX if until is None else until, after, limit or 100)


def list_page(namespace: str, resp: pb.ListResponse, trusted: bytes, since: int | None, until: int | None,
              limit: int | None, page_token: str | None) -> V.Verified:
    """Verifies a List page: exactly the committed memories in the range, in order, from the page token on."""
    s, u, after, lim = list_range(since, until, limit, page_token)
    returned = _memories(resp)
    return _run(V.verify_list, bytes(resp.proof), namespace, trusted, s, u, after, lim, returned)


def check_chain(last_seq: int, last_hash: bytes, roots: list, new_root) -> None:
    """Checks the prev-hash links from the last root seen through `roots` (decoded, consecutive, oldest first)
    to `new_root`."""
    prev_seq, prev_hash = last_seq, bytes(last_hash)
    for r in list(roots) + [new_root]:
        if r.seq != prev_seq + 1 or bytes(r.prev) != prev_hash:
            raise VerificationError(f"verification failed: root seq {r.seq} does not link to the root seq "
                                    f"{prev_seq} (seen before, or fetched in between)")
        prev_seq, prev_hash = r.seq, bytes(r.hash)
