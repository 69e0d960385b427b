"""Lexical and hybrid recall proofs (CPX1) of docs/PROOFS.md, "Lexical and hybrid recall proof", with their
verifier. The shared parts (term leaves, their check against the term tree, the hit rule) are also used by
the filtered recall proof (filtered.py).

A lexical answer is the exact BM25 top-k over the complete posting lists of the query's terms, each
authenticated against the term tree a version-2 root commits; absent terms are proven absent by their
neighbours in the sorted tree. A hybrid answer fuses that lexical top-`depth` with the semantic top-`depth`
of an embedded CPR2 proof. The verifier re-derives both rankings and the fusion, and each hit's record must
show the term counts its postings claim."""

from __future__ import annotations

from dataclasses import dataclass

from .commit import ZERO_ID, graph_leaf_hash
from .errors import VerifyError
from .lexical import (
    MAX_DF,
    MAX_QUERY_TERMS,
    MAX_TERM_BYTES,
    TOKENIZER_V1,
    TOKENIZER_V2,
    DocTerms,
    bm25_top,
    fixed_score,
    fuse,
    postings_hash,
    query_terms,
    term_leaf_hash,
)
from .merkle import verify_multiproof
from .paged import read_pages, verify_chunked, verify_graph
from .proofs import (
    MAX_ITEMS,
    MAX_K,
    MODE_GRAPH,
    RecallNode,
    Verified,
    _check_returned,
    _check_size,
    _lemmas,
    _same_score,
    check_record,
    decode_recall_proof,
    read_recall_node,
    recall_answer,
)
from .record import Record
from .root import Root, read_signed_root
from .wire import Reader, u16be, u32be, u64be

HYBRID_MAGIC = b"CPX1"
MODE_LEXICAL = 1
MODE_HYBRID = 2
MAX_TERM_LEAVES = 2 * MAX_QUERY_TERMS + 2
MODE_NAMES = {MODE_LEXICAL: "lexical", MODE_HYBRID: "hybrid"}


@dataclass
class TermLeaf:
    """One leaf of the term tree as a proof carries it: `postings` is the full list of (node, tf, dl), or None
    when only `postings_h` (the list's hash) is carried."""

    position: int
    term: str
    df: int
    postings: list[tuple[int, int, int]] | None
    postings_h: bytes | None = None


@dataclass
class HybridProof:
    """A decoded CPX1 proof (root signature already checked). Lexical mode carries graph `nodes` and
    `lemmas`; hybrid mode carries `search`, the embedded CPR2 proof's bytes."""

    root: Root
    mode: int
    k: int
    depth: int
    terms: list[str]
    leaves: list[TermLeaf]
    lex_lemmas: list[bytes]
    nodes: list[RecallNode] | None = None
    lemmas: list[bytes] | None = None
    search: bytes | None = None
    # Version-3 roots: the term tree's (page count, descriptors) the term leaves touch.
    lex_pages: tuple | None = None


# ------------------------------------------------------------------ shared encodings


def read_term(r: Reader, field: str = "term") -> str:
    """u16be(len) term: 1..=64 bytes of UTF-8."""
    n = r.u16(f"{field} length")
    if n == 0 or n > MAX_TERM_BYTES:
        raise VerifyError(f"{r.what}: {field} length {n} is outside 1..={MAX_TERM_BYTES}")
    try:
        return r.take(n, field).decode("utf-8")
    except UnicodeDecodeError:
        raise VerifyError(f"{r.what}: {field} is not UTF-8") from None


def read_terms(r: Reader) -> list[str]:
    """u16be(t) term x t, t <= 32."""
    t = r.u16("term count")
    if t > MAX_QUERY_TERMS:
        raise VerifyError(f"{r.what}: {t} query terms exceed {MAX_QUERY_TERMS}")
    return [read_term(r) for _ in range(t)]


def read_leaves(r: Reader, cap: int) -> list[TermLeaf]:
    """u32be(n) then per leaf u64be(position) term u32be(df) and u8(1) (node tf dl) x df | u8(0) hash[32]."""
    n = r.u32("term leaf count")
    if n > cap:
        raise VerifyError(f"{r.what}: {n} term leaves exceed {cap}")
    leaves = []
    for _ in range(n):
        pos = r.u64("term position")
        term = read_term(r)
        df = r.u32("df")
        flag = r.u8("postings flag")
        if flag == 1:
            if df > MAX_DF or df * 12 > r.remaining():
                raise VerifyError(f"{r.what}: a full posting list of {df} (cap {MAX_DF}, or past the end)")
            b = r.take(12 * df, "postings")
            ps = [(int.from_bytes(b[i:i + 4], "big"), int.from_bytes(b[i + 4:i + 8], "big"),
                   int.from_bytes(b[i + 8:i + 12], "big")) for i in range(0, 12 * df, 12)]
            leaves.append(TermLeaf(pos, term, df, ps))
        elif flag == 0:
            leaves.append(TermLeaf(pos, term, df, None, r.take(32, "postings hash")))
        else:
            raise VerifyError(f"{r.what}: postings flag {flag}")
    return leaves


def encode_term(term: str) -> bytes:
    """u16be(len) term."""
    b = term.encode("utf-8")
    return u16be(len(b)) + b


def encode_leaves(leaves: list[TermLeaf]) -> bytes:
    """What `read_leaves` reads. For provers and tests."""
    out = [u32be(len(leaves))]
    for lf in leaves:
        out += [u64be(lf.position), encode_term(lf.term), u32be(lf.df)]
        if lf.postings is not None:
            out.append(b"\x01")
            out += [u32be(a) + u32be(b) + u32be(c) for a, b, c in lf.postings]
        else:
            out += [b"\x00", lf.postings_h]
    return b"".join(out)


def encode_lemmas(lemmas: list[bytes]) -> bytes:
    """u32be(count) hash x count."""
    return u32be(len(lemmas)) + b"".join(lemmas)


def read_nodes(r: Reader, dim: int) -> list[RecallNode]:
    """u32be(count) node x count (nodes as in CPR2, vectors of `dim` components)."""
    count = r.u32("node count")
    if count > MAX_ITEMS or count * (dim // 2 + 48) > r.remaining():
        raise VerifyError(f"{r.what}: node count {count} exceeds the cap or the bytes left")
    return [read_recall_node(r, dim) for _ in range(count)]


def node_leaves(nodes: list[RecallNode], dim: int) -> list[tuple[int, bytes]]:
    """(node, graph leaf hash) of proof nodes, which must be in strictly increasing node order, each alive
    flag 0 or 1, and each tombstone without id, created_at or vector."""
    zero = bytes(dim)
    out = []
    prev = -1
    for nd in nodes:
        if nd.node <= prev:
            raise VerifyError("graph nodes are not in strictly increasing order")
        prev = nd.node
        if nd.alive not in (0, 1):
            raise VerifyError(f"node {nd.node}: alive flag {nd.alive}")
        if nd.alive == 0 and (nd.id != ZERO_ID or nd.created_at != 0 or nd.vector != zero):
            raise VerifyError(f"node {nd.node} is a tombstone that keeps an id, created_at or vector")
        out.append((nd.node, graph_leaf_hash(nd.node, nd.id, nd.created_at, nd.alive, nd.level, nd.vector,
                                             nd.lists_hash)))
    return out


# ------------------------------------------------------------------ the term tree

FULL, OVER_CAP, ABSENT = "full", "over cap", "absent"


def resolve_terms(root: Root, want: list[str], leaves: list[TermLeaf], lemmas: list[bytes],
                  pages: tuple | None = None) -> list[tuple]:
    """Checks term leaves (order, df, postings, one multiproof against the root's term tree: paged, with
    `pages` = (page count, descriptors), for version-3 roots) and resolves each wanted term to (FULL,
    postings), (OVER_CAP, None) or (ABSENT, None). Anything else is rejected."""
    if root.lexicon is None:
        raise VerifyError("unsupported: the root (version 1) has no lexical index")
    _tok, lex_terms, lex_root, _total = root.lexicon
    for a, b in zip(leaves, leaves[1:]):
        if a.position >= b.position or a.term.encode("utf-8") >= b.term.encode("utf-8"):
            raise VerifyError("term leaves are not in increasing order")
    docs = root.time_leaves
    hashed = []
    for lf in leaves:
        if lf.df > docs:
            raise VerifyError(f"term {lf.term!r} is in more memories than the namespace holds")
        if lf.postings is not None:
            ps = lf.postings
            if len(ps) != lf.df:
                raise VerifyError("posting list length differs from df")
            for x, y in zip(ps, ps[1:]):
                if x[0] >= y[0]:
                    raise VerifyError("postings not in node order")
            if any(tf == 0 or dl < tf for _, tf, dl in ps):
                raise VerifyError("posting with tf 0 or tf above dl")
            ph = postings_hash(ps)
        else:
            ph = lf.postings_h
        hashed.append((lf.position, term_leaf_hash(lf.term, lf.df, ph)))
    if hashed:
        if root.version >= 3:
            if pages is None:
                raise VerifyError("term tree pages missing")
            verify_chunked(lex_terms, pages[0], lex_root, pages[1], hashed, lemmas)
        else:
            verify_multiproof(lex_terms, lex_root, hashed, lemmas)
    elif lex_terms != 0 and want:
        raise VerifyError("no term leaves for a query with terms")
    by_term = {lf.term: lf for lf in leaves}
    out = []
    for t in want:
        lf = by_term.get(t)
        if lf is not None:
            if lf.postings is not None:
                out.append((FULL, lf.postings))
            elif lf.df > MAX_DF:
                out.append((OVER_CAP, None))
            else:
                raise VerifyError(f"the postings of term {t!r} are missing")
            continue
        tb = t.encode("utf-8")
        below = next((lf for lf in reversed(leaves) if lf.term.encode("utf-8") < tb), None)
        above = next((lf for lf in leaves if lf.term.encode("utf-8") > tb), None)
        if below is not None and above is not None:
            ok = above.position == below.position + 1
        elif below is not None:
            ok = below.position + 1 == lex_terms
        elif above is not None:
            ok = above.position == 0
        else:
            ok = lex_terms == 0
        if not ok:
            raise VerifyError(f"term {t!r} is neither shown nor proven absent")
        out.append((ABSENT, None))
    return out


def text_tokenizer_known(t: int) -> bool:
    """Index versions whose text terms are tokenizer 1's."""
    return t in (TOKENIZER_V1, TOKENIZER_V2)


def check_distinct(terms: list[str]) -> None:
    """A proof's query terms must be distinct."""
    if len(set(terms)) != len(terms):
        raise VerifyError("a query term is repeated")


# ------------------------------------------------------------------ hits


def check_hit_terms(text: str, node: int, id_: bytes, lists) -> None:
    """A hit's record text must show, for every scored term, exactly the tf its posting claims (0 when the hit
    is not in that list) and, where it is in a list, that list's dl."""
    doc = DocTerms(text)
    for term, lst in lists:
        claimed = _find_posting(lst, node)
        tf = doc.tf(term)
        ok = (claimed[1] == tf and claimed[2] == doc.len) if claimed is not None else tf == 0
        if not ok:
            raise VerifyError(f"hit {id_.hex()} contains {term!r} {tf} times in {doc.len} terms, "
                              "its postings say otherwise")


def _find_posting(lst, node: int):
    lo, hi = 0, len(lst)
    while lo < hi:
        mid = (lo + hi) // 2
        if lst[mid][0] < node:
            lo = mid + 1
        else:
            hi = mid
    if lo < len(lst) and lst[lo][0] == node:
        return lst[lo]
    return None


def check_hits(namespace: str, implied, lists, returned, scores, passes=None) -> list[tuple[bytes, Record]]:
    """The returned hits must equal the implied ones [(score, RecallNode)] in number, order and ids, each score
    bit for bit; each record must check out as for Get, pass `passes` (a filter) and show the term counts of
    the scored posting lists. Returns the verified items."""
    if len(implied) != len(returned) or len(scores) != len(returned):
        raise VerifyError(f"the proof implies {len(implied)} hits, {len(returned)} returned "
                          f"({len(scores)} scores)")
    items = []
    for i, ((want, nd), (id_, rec), got) in enumerate(zip(implied, returned, scores)):
        if id_ != nd.id:
            raise VerifyError(f"hit {i} should be {nd.id.hex()}, got {id_.hex()}")
        if not _same_score(got, want):
            raise VerifyError(f"hit {i} has a wrong score ({got!r}, the proof gives {want!r})")
        r = check_record(id_, rec, namespace, nd.created_at)
        if passes is not None and not passes(r):
            raise VerifyError(f"hit {id_.hex()} does not pass the filter")
        check_hit_terms(r.text, nd.node, id_, lists)
        items.append((id_, r))
    return items


def _scores(scores) -> list:
    try:
        return list(scores)
    except Exception:
        raise VerifyError("scores must be a list of floats") from None


# ------------------------------------------------------------------ CPX1


def decode_hybrid_proof(proof: bytes, trusted: bytes) -> HybridProof:
    """Parses a CPX1 proof (caps checked before any work) and checks its root's signature against `trusted`
    (and, in hybrid mode, that the embedded CPR2 proof is against the same signed root)."""
    r = Reader(_check_size(proof), "lexical proof")
    if r.take(4, "magic") != HYBRID_MAGIC:
        raise VerifyError("lexical proof: wrong magic (not a CPX1 proof)")
    root = read_signed_root(r, trusted)
    mode = r.u8("mode")
    if mode not in (MODE_LEXICAL, MODE_HYBRID):
        raise VerifyError(f"lexical proof: unknown mode {mode}")
    k = r.u32("k")
    depth = r.u32("depth")
    if k < 1 or k > MAX_K:
        raise VerifyError(f"lexical proof: k {k} is outside 1..={MAX_K}")
    if depth < k or depth > MAX_K:
        raise VerifyError(f"lexical proof: depth {depth} is outside k..={MAX_K}")
    if mode == MODE_LEXICAL and depth != k:
        raise VerifyError("lexical proof: a lexical proof's depth is its k")
    terms = read_terms(r)
    leaves = read_leaves(r, MAX_TERM_LEAVES)
    lex_lemmas = _lemmas(r)
    lex_pages = read_pages(r, len(leaves)) if root.version >= 3 else None
    glen = r.u32("graph length")
    g = r.take(glen, "graph")
    r.expect_end()
    p = HybridProof(root, mode, k, depth, terms, leaves, lex_lemmas, lex_pages=lex_pages)
    if mode == MODE_HYBRID:
        rp = decode_recall_proof(g, trusted)
        if rp.root.signed != root.signed:
            raise VerifyError("lexical proof: the semantic proof is against another root")
        p.search = g
    else:
        gr = Reader(g, "lexical proof graph")
        p.nodes = read_nodes(gr, root.dim)
        p.lemmas = _lemmas(gr)
        gr.expect_end()
    return p


def encode_hybrid_proof(root_signed: bytes, mode: int, k: int, depth: int, terms: list[str],
                        leaves: list[TermLeaf], lex_lemmas: list[bytes], graph: bytes) -> bytes:
    """CPX1 bytes; `graph` is the encoded lexical graph part or the CPR2 proof. For provers and tests."""
    return b"".join([HYBRID_MAGIC, root_signed, bytes([mode]), u32be(k), u32be(depth), u16be(len(terms)),
                     *[encode_term(t) for t in terms], encode_leaves(leaves), encode_lemmas(lex_lemmas),
                     u32be(len(graph)), graph])


def hybrid_answer(p: HybridProof, namespace: str, trusted: bytes, min_ef: int = 0):
    """The answer a CPX1 proof implies: ([(score, RecallNode)] best first, the scored (term, postings)), plus
    the embedded recall proof's ef and query in hybrid mode (else None, None)."""
    root = p.root
    if root.lexicon is None or not text_tokenizer_known(root.lexicon[0]):
        raise VerifyError("unsupported: the root has no lexical index of a known version")
    check_distinct(p.terms)
    resolved = resolve_terms(root, p.terms, p.leaves, p.lex_lemmas, p.lex_pages)
    lists = [(t, ps) for t, (how, ps) in zip(p.terms, resolved) if how == FULL]
    lexical = bm25_top([ps for _, ps in lists], root.time_leaves, root.lexicon[3], p.depth)
    ef = query = None
    if p.mode == MODE_LEXICAL:
        leaves = node_leaves(p.nodes, root.dim)
        if leaves:
            verify_graph(root, leaves, p.lemmas)
        nodes = p.nodes
        ranked = lexical[:p.k]
    else:
        rp, sem = recall_answer(p.search, namespace, trusted, p.depth, min_ef)
        nodes, ef, query = rp.nodes, rp.ef, rp.query
        ranked = fuse([[nd.node for _, nd, _ in sem], [n for _, n in lexical]], p.k)
    by_node = {nd.node: nd for nd in nodes}
    hits = []
    for s, node in ranked:
        nd = by_node.get(node)
        if nd is None:
            raise VerifyError(f"the graph leaf of ranked node {node} is missing")
        if nd.alive != 1:
            raise VerifyError(f"ranked node {node} is a forgotten memory")
        hits.append((fixed_score(s), nd))
    return hits, lists, ef, query


def verify_hybrid(proof: bytes, namespace: str, trusted: bytes, mode: int | None, k: int, min_ef: int = 0,
                  min_depth: int = 0, query: str | None = None, returned=(), scores=()) -> Verified:
    """Verifies a lexical or hybrid Recall answer (CPX1): each hit is committed and live, the ranking is
    exactly the proof's (BM25 over complete, authenticated posting lists, fused in hybrid mode with the
    replayed semantic search), each score is exact, and each hit's record shows the term counts its postings
    claim. `mode` is what was asked (1 lexical, 2 hybrid; None accepts the proof's), `min_depth` the minimum
    fusion depth, `min_ef` the minimum ef of a graph-mode semantic search, and `query`, when given, the
    question whose terms the proof's must be."""
    returned = _check_returned(returned)
    scores = _scores(scores)
    try:
        k, min_ef, min_depth = int(k), int(min_ef), int(min_depth)
        mode = None if mode is None else int(mode)
        if query is not None and not isinstance(query, str):
            raise TypeError
    except Exception:
        raise VerifyError("bad recall parameters") from None
    p = decode_hybrid_proof(proof, trusted)
    if p.root.namespace != namespace:
        raise VerifyError(f"proof root is for namespace {p.root.namespace!r}, not {namespace!r}")
    if mode is not None and p.mode != mode:
        raise VerifyError(f"proof is for mode {MODE_NAMES.get(p.mode)}, {MODE_NAMES.get(mode, mode)} was asked")
    if p.k != k:
        raise VerifyError(f"proof is for k = {p.k}, not the k = {k} asked")
    if p.mode == MODE_HYBRID and p.depth < min_depth:
        raise VerifyError(f"proof fused {p.depth} candidates, at least {min_depth} were asked")
    if query is not None and query_terms(query) != p.terms:
        raise VerifyError("the proof's query terms are not those of the question asked")
    hits, lists, ef, qvec = hybrid_answer(p, namespace, trusted, min_ef)
    items = check_hits(namespace, hits, lists, returned, scores)
    return Verified(p.root, MODE_NAMES[p.mode], items, [s for s, _ in hits], p.mode, p.k, ef, qvec,
                    p.depth, list(p.terms))


__all__ = ["HybridProof", "TermLeaf", "decode_hybrid_proof", "encode_hybrid_proof", "hybrid_answer",
           "verify_hybrid", "resolve_terms", "check_hits", "MODE_LEXICAL", "MODE_HYBRID", "MODE_GRAPH"]
