"""The three proofs of docs/PROOFS.md, "Proofs (wire formats)": the time proof
(CPT1, Get and List) and the recall proof (CPR2), with their verifiers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from . import rice
from .commit import (
    ZERO_ID,
    graph_leaf_hash,
    lists_hash_of_encoded,
    time_leaf_hash,
)
from .errors import VerifyError
from .merkle import verify_multiproof
from .paged import PageRef, read_pages, verify_chunked, verify_graph
from .record import Record, decode_record, record_id
from .root import Root, read_signed_root
from .search import distances, exact_answer, graph_search, score_of
from .wire import Reader

TIME_MAGIC = b"CPT1"
TIME_MAGIC_PAGED = b"CPT2"
RECALL_MAGIC = b"CPR2"
RECALL_MAGIC_V1 = b"CPR1"

MAX_PROOF = 64 * 1024 * 1024
NO_ENTRY = 0xFFFFFFFF  # a root's entry when the graph has no entry point
MAX_ITEMS = 200_000
MAX_K = 1000
MAX_EF = 10_000
MAX_DIM = 4096
MAX_LIST = 512
MAX_LEVEL = 16

MODE_GRAPH = 1
MODE_EXACT = 2


@dataclass
class Verified:
    """What a successful verification proves: the signed root, and the returned
    memories (id, decoded record) in answer order. For Recall, also the scores,
    the proof's mode, k, ef and query vector; for lexical, hybrid and filtered
    Recall (kinds "lexical", "hybrid", "filtered") also the depth and the query
    terms (`mode` is then the CPX1 or CPF1 mode number)."""

    root: Root
    kind: str
    items: list[tuple[bytes, Record]] = field(default_factory=list)
    scores: list[float] | None = None
    mode: int | None = None
    k: int | None = None
    ef: int | None = None
    query: bytes | None = None
    # Lexical, hybrid and filtered recall (CPX1, CPF1): the fusion depth and the proof's query terms.
    depth: int | None = None
    terms: list[str] | None = None

    @property
    def ids(self) -> list[bytes]:
        """The verified ids in answer order."""
        return [i for i, _ in self.items]


# ---------------------------------------------------------------- time proof


@dataclass
class TimeEntry:
    """One proven time-tree leaf: its position and its fields."""

    position: int
    created_at: int
    id: bytes
    node: int


@dataclass
class TimeProof:
    """A decoded CPT1 or CPT2 proof (root signature already checked). CPT2
    (version-3 roots) adds the time tree's page count and page descriptors."""

    root: Root
    entries: list[TimeEntry]
    lemmas: list[bytes]
    pages: tuple[int, list[PageRef]] | None = None


def _check_size(proof) -> bytes:
    if not isinstance(proof, (bytes, bytearray, memoryview)):
        raise VerifyError("proof must be bytes")
    if len(proof) > MAX_PROOF:
        raise VerifyError("proof exceeds 64 MiB")
    return bytes(proof)


def _lemmas(r: Reader) -> list[bytes]:
    n = r.count("lemma count", 32)
    b = r.take(32 * n, "lemmas")
    return [b[i:i + 32] for i in range(0, 32 * n, 32)]


def decode_time_proof(proof: bytes, trusted: bytes) -> TimeProof:
    """Parses a CPT1 proof and checks its root's signature against `trusted`."""
    r = Reader(_check_size(proof), "time proof")
    magic = r.take(4, "magic")
    if magic not in (TIME_MAGIC, TIME_MAGIC_PAGED):
        raise VerifyError("time proof: wrong magic")
    root = read_signed_root(r, trusted)
    n = r.count("entry count", 52, MAX_ITEMS)
    entries = []
    for _ in range(n):
        pos = r.u64()
        ca = r.u64()
        id_ = r.take(32)
        node = r.u32()
        entries.append(TimeEntry(pos, ca, id_, node))
    pages = None
    if magic == TIME_MAGIC_PAGED:
        pages = read_pages(r, len(entries))
    lemmas = _lemmas(r)
    r.expect_end()
    return TimeProof(root, entries, lemmas, pages)


def _check_time_proof(tp: TimeProof, namespace: str) -> None:
    root = tp.root
    if root.namespace != namespace:
        raise VerifyError(f"proof root is for namespace {root.namespace!r}, not {namespace!r}")
    if not tp.entries:
        return
    leaves = [(e.position, time_leaf_hash(e.created_at, e.id, e.node)) for e in tp.entries]
    if (tp.pages is not None) != (root.version >= 3):
        raise VerifyError("time proof format does not match the root's version")
    if tp.pages is not None:
        verify_chunked(root.time_leaves, tp.pages[0], root.time_root, tp.pages[1], leaves, tp.lemmas)
    else:
        verify_multiproof(root.time_leaves, root.time_root, leaves, tp.lemmas)


def _check_returned(returned) -> list[tuple[bytes, bytes]]:
    try:
        out = []
        for item in returned:
            id_, rec = item
            if not isinstance(id_, (bytes, bytearray)) or not isinstance(rec, (bytes, bytearray)):
                raise VerifyError("returned items must be (id bytes, record bytes)")
            out.append((bytes(id_), bytes(rec)))
        return out
    except VerifyError:
        raise
    except Exception:
        raise VerifyError("returned items must be (id bytes, record bytes)") from None


def check_record(id_: bytes, rec: bytes, namespace: str, created_at: int) -> Record:
    """A returned memory checks out: its record hashes to its id, decodes, names
    the asked namespace and carries the committed created_at."""
    if len(id_) != 32 or record_id(rec) != id_:
        raise VerifyError(f"record does not hash to its id {id_.hex()}")
    r = decode_record(rec)
    if r.namespace != namespace:
        raise VerifyError(f"record {id_.hex()} is in namespace {r.namespace!r}, not {namespace!r}")
    if r.created_at != created_at:
        raise VerifyError(f"record {id_.hex()} created_at {r.created_at} differs from the committed {created_at}")
    return r


def verify_get(proof: bytes, namespace: str, trusted: bytes, returned: list[tuple[bytes, bytes]]) -> Verified:
    """Verifies a Get answer: every returned memory is among the proven time
    leaves and vice versa, and each record checks out. (Ids the node reported
    missing are not proven absent.)"""
    returned = _check_returned(returned)
    tp = decode_time_proof(proof, trusted)
    _check_time_proof(tp, namespace)
    by_id: dict[bytes, TimeEntry] = {}
    for e in tp.entries:
        if e.id in by_id:
            raise VerifyError(f"id {e.id.hex()} appears twice among the proof's entries")
        by_id[e.id] = e
    if len(returned) != len(tp.entries):
        raise VerifyError(f"{len(returned)} memories returned but the proof has {len(tp.entries)} entries")
    seen: set[bytes] = set()
    items = []
    for id_, rec in returned:
        e = by_id.get(id_)
        if e is None:
            raise VerifyError(f"returned memory {id_.hex()} is not in the proof")
        if id_ in seen:
            raise VerifyError(f"memory {id_.hex()} returned twice")
        seen.add(id_)
        items.append((id_, check_record(id_, rec, namespace, e.created_at)))
    return Verified(tp.root, "get", items)


def verify_list(proof: bytes, namespace: str, trusted: bytes, since: int, until: int,
                after: tuple[int, bytes] | None, limit: int, returned: list[tuple[bytes, bytes]]) -> Verified:
    """Verifies a List page over [since, until), strictly after `after`, of at
    most `limit` memories: the returned memories are exactly the committed ones in
    that range, in (created_at, id) order, up to the page's end."""
    returned = _check_returned(returned)
    try:
        since, until, limit = int(since), int(until), int(limit)
        if after is not None:
            after = (int(after[0]), bytes(after[1]))
    except Exception:
        raise VerifyError("bad list parameters") from None
    tp = decode_time_proof(proof, trusted)
    _check_time_proof(tp, namespace)
    entries = tp.entries
    n = tp.root.time_leaves
    if not entries:
        if n != 0:
            raise VerifyError("list proof has no entries for a non-empty timeline")
        if returned:
            raise VerifyError("memories returned for an empty timeline")
        return Verified(tp.root, "list", [])
    for a, b in zip(entries, entries[1:]):
        if b.position != a.position + 1:
            raise VerifyError("list proof positions are not contiguous")
        if (b.created_at, b.id) <= (a.created_at, a.id):
            raise VerifyError("list proof keys do not strictly increase")

    def below(e: TimeEntry) -> bool:
        return e.created_at < since or (after is not None and (e.created_at, e.id) <= after)

    def above(e: TimeEntry) -> bool:
        return e.created_at >= until

    lo, hi = 0, len(entries)
    first, last = entries[0], entries[-1]
    if first.position > 0:
        if not below(first):
            raise VerifyError("list proof left edge: the first leaf is not below the range")
        lo = 1
    elif below(first):
        lo = 1
    if hi > lo and above(last):
        hi -= 1
    inside = entries[lo:hi]
    for e in inside:
        if below(e) or above(e):
            raise VerifyError("list proof: a leaf inside the page is out of range")
    if len(inside) > limit:
        raise VerifyError(f"list page has {len(inside)} memories, more than the limit {limit}")
    if len(inside) < limit and last.position != n - 1 and hi == len(entries):
        raise VerifyError("list proof right edge: the page ends early without a leaf at or after `until`")
    if len(returned) != len(inside):
        raise VerifyError(f"{len(returned)} memories returned but {len(inside)} are in range")
    items = []
    for (id_, rec), e in zip(returned, inside):
        if id_ != e.id:
            raise VerifyError(f"returned memory {id_.hex()} is not the committed {e.id.hex()}")
        items.append((id_, check_record(id_, rec, namespace, e.created_at)))
    return Verified(tp.root, "list", items)


# -------------------------------------------------------------- recall proof


@dataclass
class RecallNode:
    """One graph node carried by a recall proof. `lists` is None when only the
    lists hash is carried."""

    node: int
    id: bytes
    created_at: int
    alive: int
    level: int
    vector: bytes
    lists: list[list[int]] | None
    lists_hash: bytes


@dataclass
class RecallProof:
    """A decoded CPR2 proof (root signature already checked)."""

    root: Root
    mode: int
    k: int
    ef: int
    dim: int
    query: bytes
    nodes: list[RecallNode]
    lemmas: list[bytes]


def read_recall_node(r: Reader, dim: int) -> RecallNode:
    """One `node` of the recall-proof encoding (also used by catch-up replies)."""
    node = r.u32("node")
    id_ = r.take(32, "id")
    ca = r.u64("created_at")
    alive = r.u8("alive")
    level = r.u8("level")
    if level > MAX_LEVEL:
        raise VerifyError(f"recall proof: node level {level} exceeds {MAX_LEVEL}")
    vec, r.pos = rice.decode_vector(r.buf, r.pos, r.end, dim)
    flag = r.u8("lists flag")
    if flag == 1:
        start = r.pos
        lists = []
        for _ in range(level + 1):
            c = r.u16("list length")
            if c > MAX_LIST:
                raise VerifyError(f"recall proof: a list of {c} exceeds {MAX_LIST}")
            b = r.take(4 * c, "list")
            lists.append([int.from_bytes(b[i:i + 4], "big") for i in range(0, 4 * c, 4)])
        lh = lists_hash_of_encoded(r.buf[start:r.pos])
    elif flag == 0:
        lists = None
        lh = r.take(32, "lists hash")
    else:
        raise VerifyError(f"recall proof: unknown lists flag {flag}")
    return RecallNode(node, id_, ca, alive, level, vec, lists, lh)


def decode_recall_proof(proof: bytes, trusted: bytes) -> RecallProof:
    """Parses a CPR2 proof (caps checked before any work) and checks its root's
    signature against `trusted`."""
    r = Reader(_check_size(proof), "recall proof")
    magic = r.take(4, "magic")
    if magic != RECALL_MAGIC:
        raise VerifyError("recall proof: wrong magic" + (" (CPR1 is no longer accepted)" if magic == RECALL_MAGIC_V1 else ""))
    root = read_signed_root(r, trusted)
    mode = r.u8("mode")
    if mode not in (MODE_GRAPH, MODE_EXACT):
        raise VerifyError(f"recall proof: unknown mode {mode}")
    k = r.u32("k")
    if k < 1 or k > MAX_K:
        raise VerifyError(f"recall proof: k {k} is outside 1..={MAX_K}")
    ef = r.u32("ef")
    if ef > MAX_EF:
        raise VerifyError(f"recall proof: ef {ef} exceeds {MAX_EF}")
    dim = r.u16("dim")
    if dim > MAX_DIM:
        raise VerifyError(f"recall proof: dim {dim} exceeds {MAX_DIM}")
    query = r.take(dim, "query")
    min_node = 4 + 32 + 8 + 1 + 1 + (dim * 4 + 7) // 8 + 1
    n = r.count("node count", min_node, MAX_ITEMS)
    nodes = []
    prev = -1
    for _ in range(n):
        nd = read_recall_node(r, dim)
        if nd.node <= prev:
            raise VerifyError("recall proof: nodes not in strictly increasing order")
        prev = nd.node
        nodes.append(nd)
    lemmas = _lemmas(r)
    r.expect_end()
    return RecallProof(root, mode, k, ef, dim, query, nodes, lemmas)


def _same_score(got, want: float) -> bool:
    try:
        g = float(got)
    except Exception:
        return False
    return g == want and math.copysign(1.0, g) == math.copysign(1.0, want)


def recall_answer(proof: bytes, namespace: str, trusted: bytes, k: int, min_ef: int
                  ) -> tuple[RecallProof, list[tuple[int, RecallNode, float]]]:
    """Checks a recall proof (steps 1-4 of the document: root, leaves, search,
    exact-mode completeness, k and ef) and returns it with the answer it implies:
    [(d, node, score)] in hit order. verify_recall compares a returned answer
    with this."""
    try:
        k, min_ef = int(k), int(min_ef)
    except Exception:
        raise VerifyError("bad recall parameters") from None
    rp = decode_recall_proof(proof, trusted)
    root = rp.root
    if root.namespace != namespace:
        raise VerifyError(f"proof root is for namespace {root.namespace!r}, not {namespace!r}")
    if root.quantiser != 1:
        raise VerifyError(f"unknown quantiser {root.quantiser}")
    if root.distance != 1:
        raise VerifyError(f"unknown distance {root.distance}")
    if rp.dim != root.dim:
        raise VerifyError(f"proof dim {rp.dim} differs from the root's {root.dim}")
    if rp.k != k:
        raise VerifyError(f"proof is for k = {rp.k}, not the k = {k} asked")
    # The minimum ef binds only a graph search: an exact answer is at least as
    # good as any ef (the Rust verifier skips the check in exact mode too).
    if rp.mode == MODE_GRAPH and rp.ef < min_ef:
        raise VerifyError(f"proof ef {rp.ef} is below the minimum {min_ef}")
    # Leaves: tombstones keep nothing of the memory.
    zero_vec = bytes(rp.dim)
    leaves = []
    for nd in rp.nodes:
        if nd.alive not in (0, 1):
            raise VerifyError(f"node {nd.node}: alive flag {nd.alive}")
        if nd.alive == 0 and (nd.id != ZERO_ID or nd.created_at != 0 or nd.vector != zero_vec):
            raise VerifyError(f"node {nd.node} is a tombstone that keeps an id, created_at or vector")
        leaves.append((nd.node, graph_leaf_hash(nd.node, nd.id, nd.created_at, nd.alive, nd.level,
                                                nd.vector, nd.lists_hash)))
    verify_graph(root, leaves, rp.lemmas)

    by_node = {nd.node: nd for nd in rp.nodes}
    dmap = dict(zip(by_node.keys(), distances(rp.query, [nd.vector for nd in rp.nodes], rp.dim)))
    if root.graph_leaves == 0 or root.entry == NO_ENTRY:
        # No entry point: only an empty graph, with no nodes, has an (empty) answer.
        if rp.nodes or root.graph_leaves != 0:
            raise VerifyError("graph without entry point")
        answer = []
    elif rp.mode == MODE_EXACT:
        if len(rp.nodes) != root.graph_leaves:
            raise VerifyError("exact recall proof does not carry every graph node")
        answer = exact_answer([(dmap[nd.node], nd.node) for nd in rp.nodes if nd.alive == 1], rp.k)
    else:
        def dist(n: int) -> int:
            d = dmap.get(n)
            if d is None:
                raise VerifyError(f"the search needs node {n}, which the proof lacks")
            return d

        def lists_at(n: int, layer: int) -> list[int]:
            nd = by_node[n]
            # The lists must be carried whenever the search reads them, even above the node's level.
            if nd.lists is None:
                raise VerifyError(f"the search needs the lists of node {n}, which the proof lacks")
            if layer > nd.level:
                return []
            return nd.lists[layer]

        res = graph_search(dist, lists_at, root.entry, root.max_level, max(rp.ef, rp.k))
        answer = [p for p in res if by_node[p[1]].alive == 1][:rp.k]
    return rp, [(d, by_node[n], score_of(d)) for d, n in answer]


def verify_recall(proof: bytes, namespace: str, trusted: bytes, k: int, min_ef: int,
                  returned: list[tuple[bytes, bytes]], scores: list[float]) -> Verified:
    """Verifies a Recall answer: the hits are exactly the top-k of the
    deterministic search (or, in exact mode, of every alive node) over the
    committed graph, in order, with bit-exact scores, and each record checks out."""
    returned = _check_returned(returned)
    try:
        scores = list(scores)
    except Exception:
        raise VerifyError("scores must be a list of floats") from None
    rp, answer = recall_answer(proof, namespace, trusted, k, min_ef)
    if len(returned) != len(answer):
        raise VerifyError(f"{len(returned)} hits returned but the search gives {len(answer)}")
    if len(scores) != len(answer):
        raise VerifyError(f"{len(scores)} scores for {len(answer)} hits")
    items = []
    out_scores = []
    for (id_, rec), s, (d, nd, want) in zip(returned, scores, answer):
        if id_ != nd.id:
            raise VerifyError(f"hit {id_.hex()} is not the search's {nd.id.hex()}")
        if not _same_score(s, want):
            raise VerifyError(f"hit {id_.hex()}: score {s!r} is not the exact {want!r}")
        items.append((id_, check_record(id_, rec, namespace, nd.created_at)))
        out_scores.append(want)
    return Verified(rp.root, "recall", items, out_scores, rp.mode, rp.k, rp.ef, rp.query)
