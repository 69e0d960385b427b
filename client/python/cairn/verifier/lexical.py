"""The committed lexical index of docs/PROOFS.md, "Lexical index": tokenizer 1, facet terms, posting lists
and term leaves, fixed-point BM25 and reciprocal-rank fusion. Integer arithmetic only (Python ints, with
the Rust side's u64 saturation made explicit), so rankings agree with the node's to the bit."""

from __future__ import annotations

import struct

import blake3

from .merkle import leaf_hash
from .stem import stem
from .unitab import is_alphanumeric, is_numeric, lower
from .wire import u16be, u32be

TOKENIZER_V1 = 1
TOKENIZER_V2 = 2  # tokenizer 1's text terms plus facet terms
MAX_TERM_BYTES = 64
MAX_QUERY_TERMS = 32
MAX_DF = 10_000
FRAC_BITS = 16
RRF_K = 10
U64_MAX = (1 << 64) - 1

STOPWORDS = frozenset(
    "a about above after again against ain all am an and any are aren as at be because been before being "
    "below between both but by can couldn d did didn do does doesn doing don down during each few for from "
    "further had hadn has hasn have haven having he her here hers herself him himself his how i if in into "
    "is isn it its itself just ll m ma me mightn more most mustn my myself needn no nor not now o of off on "
    "once only or other our ours ourselves out over own re s same shan she should shouldn so some such t "
    "than that the their theirs them themselves then there these they this those through to too under until "
    "up ve very was wasn we were weren what when where which while who whom why will with won wouldn y you "
    "your yours yourself yourselves".split())
assert len(STOPWORDS) == 153


def _runs(text: str) -> list[str]:
    """Maximal runs of alphanumeric characters (Rust's `split(|c| !c.is_alphanumeric())`, empties dropped)."""
    out, cur = [], []
    for ch in text:
        if is_alphanumeric(ch):
            cur.append(ch)
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


def tokenize(text: str) -> list[str]:
    """Tokenizer 1: the index terms of a text, in order, repeats kept."""
    out = []
    for t in _runs(lower(text)):
        if len(t) == 1:
            if not is_numeric(t):
                continue
        elif len(t.encode("utf-8")) > MAX_TERM_BYTES or t in STOPWORDS:
            continue
        out.append(stem(t))
    return out


class DocTerms:
    """A document's distinct terms with their frequencies, and its length in terms."""

    __slots__ = ("tf_of", "len")

    def __init__(self, text: str):
        toks = tokenize(text)
        self.len = min(len(toks), 0xFFFFFFFF)
        self.tf_of: dict[str, int] = {}
        for t in toks:
            self.tf_of[t] = min(self.tf_of.get(t, 0) + 1, 0xFFFFFFFF)

    @property
    def terms(self) -> list[tuple[str, int]]:
        """(term, tf) in increasing byte order of the terms."""
        return sorted(self.tf_of.items(), key=lambda x: x[0].encode("utf-8"))

    def tf(self, term: str) -> int:
        """How often `term` occurs (0 if absent)."""
        return self.tf_of.get(term, 0)


def query_terms(text: str) -> list[str]:
    """A query's terms: distinct, in order of first appearance, at most the first 32."""
    out: list[str] = []
    for t in tokenize(text):
        if len(out) == MAX_QUERY_TERMS:
            break
        if t not in out:
            out.append(t)
    return out


def facet_term(key: str, value: str) -> str:
    """The facet term of a metadata pair (index version 2): U+0000 then the lowercase hex of the first 16
    bytes of BLAKE3("CMF1" || u32be(len key) || key || value)."""
    kb = key.encode("utf-8")
    d = blake3.blake3(b"CMF1" + u32be(len(kb)) + kb + value.encode("utf-8")).digest()
    return "\x00" + d[:16].hex()


def postings_hash(postings) -> bytes:
    """BLAKE3(0x05 || (u32be(node) u32be(tf) u32be(dl)) x df); `postings` are (node, tf, dl) triples."""
    h = blake3.blake3(b"\x05")
    for node, tf, dl in postings:
        h.update(u32be(node) + u32be(tf) + u32be(dl))
    return h.digest()


def term_leaf_bytes(term: str, df: int, postings_h: bytes) -> bytes:
    """"CLT1" || u16be(len) term || u32be(df) || postings_hash."""
    tb = term.encode("utf-8")
    return b"CLT1" + u16be(len(tb)) + tb + u32be(df) + postings_h


def term_leaf_hash(term: str, df: int, postings_h: bytes) -> bytes:
    """leaf_hash(term leaf bytes)."""
    return leaf_hash(term_leaf_bytes(term, df, postings_h))


def _sat(x: int) -> int:
    return x if x <= U64_MAX else U64_MAX


def log2_fixed(x: int) -> int:
    """log2(x) with 16 fractional bits, truncated; 0 for x = 0."""
    if x <= 0:
        return 0
    n = x.bit_length() - 1
    m = (x << 32) >> n
    out = n << FRAC_BITS
    for bit in range(FRAC_BITS - 1, -1, -1):
        m = (m * m) >> 32
        if m >= 1 << 33:
            m >>= 1
            out |= 1 << bit
    return out


def idf_fixed(n_docs: int, df: int) -> int:
    """log2_fixed(2N + 2) - log2_fixed(2 df + 1), both arguments and the difference saturating as u64."""
    return max(0, log2_fixed(_sat(_sat(n_docs * 2) + 2)) - log2_fixed(_sat(_sat(df * 2) + 1)))


def tf_fixed(tf: int, dl: int, n_docs: int, total_len: int) -> int:
    """(22 tf T << 16) / (10 tf T + 3 T + 9 dl N), 0 when the divisor is 0, capped at u64::MAX."""
    den = 10 * tf * total_len + 3 * total_len + 9 * dl * n_docs
    if den == 0:
        return 0
    return _sat(((22 * tf * total_len) << FRAC_BITS) // den)


def bm25_top(lists, n_docs: int, total_len: int, depth: int, keep=None) -> list[tuple[int, int]]:
    """The BM25 top-`depth` (score, node) over posting lists (each a list of (node, tf, dl), one per scored
    query term), score descending then node ascending, score > 0 only. With `keep`, only nodes it accepts
    are scored; each term's idf stays that of its whole list."""
    acc: dict[int, int] = {}
    for lst in lists:
        idf = idf_fixed(n_docs, len(lst))
        for node, tf, dl in lst:
            if keep is not None and not keep(node):
                continue
            s = _sat(idf * tf_fixed(tf, dl, n_docs, total_len))
            acc[node] = _sat(acc.get(node, 0) + s)
    scored = sorted(((s, n) for n, s in acc.items() if s > 0), key=lambda x: (-x[0], x[1]))
    return scored[:depth]


def fuse(lists, k: int) -> list[tuple[int, int]]:
    """Reciprocal-rank fusion: each node scores the sum of 2^32 // (10 + rank) over the rankings it is in
    (rank from 1); the top k (score, node), score descending then node ascending."""
    acc: dict[int, int] = {}
    for lst in lists:
        for i, n in enumerate(lst):
            acc[n] = _sat(acc.get(n, 0) + (1 << 32) // (RRF_K + i + 1))
    return sorted(((s, n) for n, s in acc.items()), key=lambda x: (-x[0], x[1]))[:k]


def u64_to_f32(s: int) -> float:
    """`s as f32` for a u64: round to nearest, ties to even, in one step (no double rounding through f64)."""
    if s < (1 << 24):
        return float(s)
    shift = s.bit_length() - 24
    m, rem = s >> shift, s & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    if rem > half or (rem == half and m & 1):
        m += 1
    return float(m << shift)


def fixed_score(s: int) -> float:
    """A hit's reported score: (s as f32) / 2^32, as the exact Python float of that f32."""
    return u64_to_f32(s) / 4294967296.0


def f32_bits(x: float) -> int:
    """The IEEE-754 single bits of a float that is an f32 value (raises OverflowError if out of range)."""
    return struct.unpack(">I", struct.pack(">f", x))[0]
