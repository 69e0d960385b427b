"""Filtered recall proofs (CPF1) of docs/PROOFS.md, "Filtered recall proof", with their verifier.

A filter is an AND of metadata equalities and an optional created_at range. With at least one metadata pair,
the memories that can pass are the intersection of the pairs' facet posting lists (index version 2), each
complete and authenticated against the term tree; without one, every graph node. The proof carries the graph
leaf of each of them, and the verifier ranks the passing ones itself: exactly (semantic), by BM25 with each
term's idf over its whole list (lexical), or by fusing both top-`depth` rankings (hybrid)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import VerifyError
from .hybrid import (
    ABSENT,
    FULL,
    MAX_TERM_LEAVES,
    OVER_CAP,
    _scores,
    check_distinct,
    check_hits,
    encode_leaves,
    encode_lemmas,
    encode_term,
    node_leaves,
    read_leaves,
    read_terms,
    resolve_terms,
    text_tokenizer_known,
)
from .lexical import TOKENIZER_V2, bm25_top, facet_term, fixed_score, fuse, query_terms
from .paged import read_pages, verify_graph
from .proofs import (
    MAX_ITEMS,
    MAX_K,
    RecallNode,
    Verified,
    _check_returned,
    _check_size,
    _lemmas,
    read_recall_node,
)
from .record import Record
from .root import Root, read_signed_root
from .search import distances, score_of
from .wire import Reader, u16be, u32be, u64be

FILTERED_MAGIC = b"CPF1"
FMODE_LEXICAL = 1
FMODE_HYBRID = 2
FMODE_SEMANTIC = 3
FMODE_NAMES = {FMODE_LEXICAL: "lexical", FMODE_HYBRID: "hybrid", FMODE_SEMANTIC: "semantic"}
MAX_FILTER_PAIRS = 16
MAX_FILTER_BYTES = 4096


@dataclass
class RecallFilter:
    """Metadata equalities (keys strictly increasing by bytes) and since <= created_at < until."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    since: int | None = None
    until: int | None = None

    def in_range(self, created_at: int) -> bool:
        """created_at is within [since, until)."""
        return (self.since is None or created_at >= self.since) and (self.until is None or created_at < self.until)

    def passes(self, rec: Record) -> bool:
        """A memory with this record passes the filter."""
        return self.in_range(rec.created_at) and all(rec.metadata.get(k) == v for k, v in self.pairs)

    def facets(self) -> list[str]:
        """The pairs' facet terms, in pair order."""
        return [facet_term(k, v) for k, v in self.pairs]

    def key(self) -> tuple:
        """A comparable form."""
        return ([(str(k), str(v)) for k, v in self.pairs], self.since, self.until)

    @classmethod
    def of(cls, where=None, since: int | None = None, until: int | None = None) -> "RecallFilter":
        """A filter from a {key: value} mapping (or pairs), sorted by key bytes as the node orders them."""
        items = list(where.items()) if hasattr(where, "items") else list(where or [])
        pairs = sorted(((str(k), str(v)) for k, v in items), key=lambda kv: kv[0].encode("utf-8"))
        return cls(pairs, since, until)


def read_filter(r: Reader, ordered: bool) -> RecallFilter:
    """u16be(p) (u16be(len) key u32be(len) value) x p, u8(flags) [u64be(since)] [u64be(until)]. The proof
    (`ordered`) caps keys at 4,096 bytes and requires them strictly increasing; a proof file does neither."""
    p = r.u16("pair count")
    if p > MAX_FILTER_PAIRS:
        raise VerifyError(f"{r.what}: {p} filter pairs exceed {MAX_FILTER_PAIRS}")
    pairs: list[tuple[str, str]] = []
    for _ in range(p):
        kl = r.u16("filter key length")
        if ordered and kl > MAX_FILTER_BYTES:
            raise VerifyError(f"{r.what}: a filter key of {kl} bytes exceeds {MAX_FILTER_BYTES}")
        kb = r.take(kl, "filter key")
        try:
            key = kb.decode("utf-8")
        except UnicodeDecodeError:
            raise VerifyError(f"{r.what}: a filter key is not UTF-8") from None
        vl = r.u32("filter value length")
        if vl > MAX_FILTER_BYTES:
            raise VerifyError(f"{r.what}: a filter value of {vl} bytes exceeds {MAX_FILTER_BYTES}")
        try:
            value = r.take(vl, "filter value").decode("utf-8")
        except UnicodeDecodeError:
            raise VerifyError(f"{r.what}: a filter value is not UTF-8") from None
        if ordered and pairs and pairs[-1][0].encode("utf-8") >= kb:
            raise VerifyError(f"{r.what}: filter keys are not strictly increasing")
        pairs.append((key, value))
    flags = r.u8("filter flags")
    if flags > 3:
        raise VerifyError(f"{r.what}: filter flags {flags}")
    since = r.u64("since") if flags & 1 else None
    until = r.u64("until") if flags & 2 else None
    return RecallFilter(pairs, since, until)


def encode_filter(f: RecallFilter) -> bytes:
    """What `read_filter` reads."""
    out = [u16be(len(f.pairs))]
    for k, v in f.pairs:
        kb, vb = k.encode("utf-8"), v.encode("utf-8")
        out += [u16be(len(kb)), kb, u32be(len(vb)), vb]
    out.append(bytes([(1 if f.since is not None else 0) | (2 if f.until is not None else 0)]))
    out += [u64be(x) for x in (f.since, f.until) if x is not None]
    return b"".join(out)


@dataclass
class FilteredProof:
    """A decoded CPF1 proof (root signature already checked)."""

    root: Root
    mode: int
    k: int
    depth: int
    filter: RecallFilter
    terms: list[str]
    query: bytes
    leaves: list
    lex_lemmas: list[bytes]
    nodes: list[RecallNode]
    lemmas: list[bytes]
    # Version-3 roots: the term tree's (page count, descriptors) the term leaves touch.
    lex_pages: tuple | None = None


def decode_filtered_proof(proof: bytes, trusted: bytes) -> FilteredProof:
    """Parses a CPF1 proof (caps checked before any work) and checks its root's signature against `trusted`."""
    r = Reader(_check_size(proof), "filtered proof")
    if r.take(4, "magic") != FILTERED_MAGIC:
        raise VerifyError("filtered proof: wrong magic (not a CPF1 proof)")
    root = read_signed_root(r, trusted)
    mode = r.u8("mode")
    if mode not in FMODE_NAMES:
        raise VerifyError(f"filtered proof: unknown mode {mode}")
    k = r.u32("k")
    depth = r.u32("depth")
    if k < 1 or k > MAX_K:
        raise VerifyError(f"filtered proof: k {k} is outside 1..={MAX_K}")
    if depth < k or depth > MAX_K:
        raise VerifyError(f"filtered proof: depth {depth} is outside k..={MAX_K}")
    if mode != FMODE_HYBRID and depth != k:
        raise VerifyError("filtered proof: depth differs from k outside hybrid mode")
    flt = read_filter(r, ordered=True)
    terms = read_terms(r)
    dim = r.u16("query dim")
    query = r.take(dim, "query")
    leaves = read_leaves(r, MAX_TERM_LEAVES + 2 * MAX_FILTER_PAIRS)
    lex_lemmas = _lemmas(r)
    lex_pages = read_pages(r, len(leaves)) if root.version >= 3 else None
    count = r.u32("node count")
    if count > MAX_ITEMS or count * (root.dim // 2 + 48) > r.remaining():
        raise VerifyError(f"filtered proof: node count {count} exceeds the cap or the bytes left")
    nodes = [read_recall_node(r, root.dim) for _ in range(count)]
    lemmas = _lemmas(r)
    r.expect_end()
    return FilteredProof(root, mode, k, depth, flt, terms, query, leaves, lex_lemmas, nodes, lemmas, lex_pages)


def encode_filtered_proof(root_signed: bytes, mode: int, k: int, depth: int, flt: RecallFilter,
                          terms: list[str], query: bytes, leaves, lex_lemmas: list[bytes],
                          encoded_nodes: list[bytes], lemmas: list[bytes]) -> bytes:
    """CPF1 bytes. For provers and tests."""
    return b"".join([FILTERED_MAGIC, root_signed, bytes([mode]), u32be(k), u32be(depth), encode_filter(flt),
                     u16be(len(terms)), *[encode_term(t) for t in terms], u16be(len(query)), query,
                     encode_leaves(leaves), encode_lemmas(lex_lemmas), u32be(len(encoded_nodes)),
                     *encoded_nodes, encode_lemmas(lemmas)])


def intersect(lists: list[list[int]]) -> list[int]:
    """The candidate set: the nodes in every list, in the first list's order."""
    if not lists:
        return []
    out = list(lists[0])
    for lst in lists[1:]:
        keep = set(lst)
        out = [n for n in out if n in keep]
    return out


def filtered_answer(p: FilteredProof):
    """The answer a CPF1 proof implies: ([(score, RecallNode)] best first, the scored (term, postings), the
    number of candidates)."""
    root = p.root
    lex = root.lexicon
    if lex is None or not text_tokenizer_known(lex[0]) or (p.filter.pairs and lex[0] != TOKENIZER_V2):
        raise VerifyError("unsupported: the root has no lexical index of a version this filter needs")
    dim = root.dim
    if p.mode == FMODE_LEXICAL and p.query:
        raise VerifyError("a lexical proof carries no query vector")
    if p.mode == FMODE_SEMANTIC and p.terms:
        raise VerifyError("a semantic proof carries no query terms")
    if p.mode in (FMODE_HYBRID, FMODE_SEMANTIC) and len(p.query) != dim:
        raise VerifyError("query dimension differs from the root's")
    check_distinct(p.terms)
    facets = p.filter.facets()
    resolved = resolve_terms(root, list(p.terms) + facets, p.leaves, p.lex_lemmas, p.lex_pages)
    text, facet = resolved[:len(p.terms)], resolved[len(p.terms):]
    if not facet:
        if len(p.nodes) != root.graph_leaves:
            raise VerifyError(f"the proof must carry all {root.graph_leaves} memories of the namespace, "
                              f"it carries {len(p.nodes)}")
        candidates = list(range(len(p.nodes)))
    else:
        lists = []
        for how, ps in facet:
            if how == FULL:
                lists.append([x[0] for x in ps])
            elif how == ABSENT:
                lists.append([])
            else:
                assert how == OVER_CAP
                raise VerifyError("a filter pair is in more memories than a proof may list")
        candidates = intersect(lists)
    if len(p.nodes) != len(candidates) or any(nd.node != c for nd, c in zip(p.nodes, candidates)):
        raise VerifyError(f"the proof must carry the {len(candidates)} memories that can pass the filter, "
                          f"it carries {len(p.nodes)}")
    leaves = node_leaves(p.nodes, dim)
    if leaves:
        verify_graph(root, leaves, p.lemmas)
    passing = {nd.node: nd for nd in p.nodes if nd.alive == 1 and p.filter.in_range(nd.created_at)}
    lists = [(t, ps) for t, (how, ps) in zip(p.terms, text) if how == FULL]

    def semantic():
        ns = list(passing.values())
        ds = distances(p.query, [nd.vector for nd in ns], dim)
        return sorted(zip(ds, [nd.node for nd in ns]))[:p.depth]

    def lexical():
        return bm25_top([ps for _, ps in lists], root.time_leaves, lex[3], p.depth, keep=passing.__contains__)

    if p.mode == FMODE_SEMANTIC:
        ranked = [(score_of(d), n) for d, n in semantic()]
    elif p.mode == FMODE_LEXICAL:
        ranked = [(fixed_score(s), n) for s, n in lexical()]
    else:
        fused = fuse([[n for _, n in semantic()], [n for _, n in lexical()]], p.k)
        ranked = [(fixed_score(s), n) for s, n in fused]
    hits = [(s, passing[n]) for s, n in ranked[:p.k] if n in passing]
    return hits, lists, len(candidates)


def verify_filtered(proof: bytes, namespace: str, trusted: bytes, mode: int | None, k: int, min_depth: int,
                    flt: RecallFilter, query: str | None = None, returned=(), scores=()) -> Verified:
    """Verifies a filtered Recall answer (CPF1): the candidate set is exactly the memories the committed facet
    lists allow, every candidate's graph leaf is committed, the ranking over the live candidates in the time
    range is exactly the proof's, each score is exact, and each hit's record carries the filter's pairs, a
    created_at in range and the term counts its postings claim. `mode` is what was asked (1 lexical,
    2 hybrid, 3 semantic; None accepts the proof's), `flt` the filter asked and `query`, when given, the
    question whose terms the proof's must be (lexical and hybrid)."""
    returned = _check_returned(returned)
    scores = _scores(scores)
    try:
        k, min_depth = int(k), int(min_depth)
        mode = None if mode is None else int(mode)
        if query is not None and not isinstance(query, str):
            raise TypeError
        asked = RecallFilter(list(flt.pairs), flt.since, flt.until).key()
    except Exception:
        raise VerifyError("bad recall parameters") from None
    p = decode_filtered_proof(proof, trusted)
    if p.root.namespace != namespace:
        raise VerifyError(f"proof root is for namespace {p.root.namespace!r}, not {namespace!r}")
    if mode is not None and p.mode != mode:
        raise VerifyError(f"proof is for mode {FMODE_NAMES.get(p.mode)}, {FMODE_NAMES.get(mode, mode)} was asked")
    if p.k != k:
        raise VerifyError(f"proof is for k = {p.k}, not the k = {k} asked")
    if p.mode == FMODE_HYBRID and p.depth < min_depth:
        raise VerifyError(f"proof fused {p.depth} candidates, at least {min_depth} were asked")
    if p.filter.key() != asked:
        raise VerifyError("the proof is for another filter")
    if query is not None and p.mode != FMODE_SEMANTIC and query_terms(query) != p.terms:
        raise VerifyError("the proof's query terms are not those of the question asked")
    hits, lists, _ = filtered_answer(p)
    items = check_hits(namespace, hits, lists, returned, scores, passes=p.filter.passes)
    return Verified(p.root, "filtered", items, [s for s, _ in hits], p.mode, p.k, None,
                    p.query if p.query else None, p.depth, list(p.terms))
