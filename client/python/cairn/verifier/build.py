"""A small reference prover ("fake node") that writes every proof format from
its own state and signs with its own key.

The verifier does not use this module. It exists so that tests (and the
black-box comparison with the Rust `cairn verify`) can make honest proofs of any
shape, then tamper with them field by field and re-sign, which the bytes of a
real node cannot offer.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .commit import ZERO_ID, encode_lists, graph_leaf_hash, lists_hash, time_leaf_hash
from .merkle import make_multiproof, tree_root
from .proofs import MODE_EXACT, MODE_GRAPH, RECALL_MAGIC, TIME_MAGIC
from .record import Record, encode_record, record_id
from .rice import encode_vector
from .root import EMPTY_ENTRY, encode_root_record, sign_root
from .search import distances, instrumented_search, score_of
from .wire import u16be, u32be, u64be


@dataclass
class Node:
    """One graph node of the fake node's state."""

    node: int
    id: bytes
    created_at: int
    alive: int
    level: int
    vector: bytes
    lists: list[list[int]]
    record: bytes = b""


@dataclass
class FakeNode:
    """An in-memory namespace with an HNSW-like graph, a timeline and a key."""

    namespace: str = "test/ns"
    dim: int = 8
    M: int = 4
    M0: int = 8
    seed: int = 1
    key: Ed25519PrivateKey = field(default_factory=lambda: Ed25519PrivateKey.from_private_bytes(b"\x07" * 32))
    nodes: list[Node] = field(default_factory=list)
    entry: int = EMPTY_ENTRY
    max_level: int = 0
    seq: int = 1
    model: bytes = b"\x44" * 32
    # Index version of the lexical index the root commits (1 or 2); None signs version-1 roots without one.
    tokenizer: int | None = None

    def __post_init__(self):
        self.rng = random.Random(self.seed)

    @property
    def node_id(self) -> bytes:
        """The public key, i.e. the id a verifier trusts."""
        return self.key.public_key().public_bytes_raw()

    # ------------------------------------------------------------ writes

    def random_vector(self) -> bytes:
        """A random int8 vector of small components (like a quantised unit vector)."""
        return bytes(self.rng.randint(-40, 40) & 0xFF for _ in range(self.dim))

    def add(self, text: str, created_at: int, vector: bytes | None = None, metadata=None,
            level: int | None = None) -> bytes:
        """Inserts a memory: a record, a graph node linked to its nearest
        neighbours on each of its layers, and returns its id."""
        rec = encode_record(Record(self.namespace, created_at, self.rng.randbytes(16), text, metadata or {}))
        id_ = record_id(rec)
        vec = vector if vector is not None else self.random_vector()
        if level is None:
            level = 0
            while self.rng.random() < 0.3 and level < 4:
                level += 1
        n = len(self.nodes)
        nd = Node(n, id_, created_at, 1, level, vec, [[] for _ in range(level + 1)], rec)
        for layer in range(level + 1):
            cap = self.M0 if layer == 0 else self.M
            peers = [o for o in self.nodes if o.level >= layer]
            if peers:
                ds = distances(vec, [o.vector for o in peers], self.dim)
                near = sorted(zip(ds, [o.node for o in peers]))[:cap]
                nd.lists[layer] = [p for _, p in near]
                for _, p in near:
                    o = self.nodes[p]
                    lst = o.lists[layer] + [n]
                    if len(lst) > cap:
                        dd = distances(o.vector, [self.vector_of(x, vec, n) for x in lst], self.dim)
                        lst = [x for _, x in sorted(zip(dd, lst))[:cap]]
                    o.lists[layer] = lst
        self.nodes.append(nd)
        if self.entry == EMPTY_ENTRY or level > self.max_level:
            self.entry, self.max_level = n, level
        self.seq += 1
        return id_

    def vector_of(self, x: int, new_vec: bytes, new_node: int) -> bytes:
        """The vector of node x, or of the node being inserted."""
        return new_vec if x == new_node else self.nodes[x].vector

    def forget(self, id_: bytes) -> None:
        """Tombstones the memory's node (it keeps only its number, level and lists)."""
        for nd in self.nodes:
            if nd.id == id_ and nd.alive:
                nd.alive, nd.id, nd.created_at, nd.vector, nd.record = 0, ZERO_ID, 0, bytes(self.dim), b""
                self.seq += 1
                return
        raise KeyError(id_)

    # ------------------------------------------------------------ commitments

    def graph_leaves(self) -> list[bytes]:
        """Graph-tree leaf hashes, in node order."""
        return [graph_leaf_hash(n.node, n.id, n.created_at, n.alive, n.level, n.vector, lists_hash(n.lists))
                for n in self.nodes]

    def timeline(self) -> list[Node]:
        """Live nodes in (created_at, id) order."""
        return sorted((n for n in self.nodes if n.alive), key=lambda n: (n.created_at, n.id))

    def time_leaves(self) -> list[bytes]:
        """Time-tree leaf hashes, in (created_at, id) order."""
        return [time_leaf_hash(n.created_at, n.id, n.node) for n in self.timeline()]

    def root_fields(self) -> dict:
        """The root record's fields over the current state."""
        g, t = self.graph_leaves(), self.time_leaves()
        return dict(namespace=self.namespace, seq=self.seq, prev=b"\x00" * 32 if self.seq == 1 else b"\x01" * 32,
                    graph_leaves=len(g), graph_root=tree_root(g), time_leaves=len(t), time_root=tree_root(t),
                    entry=self.entry, max_level=self.max_level, M=self.M, M0=self.M0, quantiser=1, distance=1,
                    dim=self.dim, model=self.model, created_at=1700000000000, node_id=self.node_id,
                    lexicon=self.lexicon())

    def signed_root(self, **over) -> bytes:
        """The signed root over the current state, with any field overridden."""
        f = self.root_fields()
        f.update(over)
        return sign_root(encode_root_record(**f), self.key)

    # ------------------------------------------------------------ time proofs

    def time_proof(self, positions: list[int], root_over=None, entries_over=None, lemmas=None) -> bytes:
        """A CPT1 proof of the timeline leaves at `positions`."""
        tl = self.timeline()
        leaves = self.time_leaves()
        ents = entries_over if entries_over is not None else [
            (p, tl[p].created_at, tl[p].id, tl[p].node) for p in positions]
        lem = lemmas if lemmas is not None else make_multiproof(leaves, positions) if positions else []
        out = [TIME_MAGIC, self.signed_root(**(root_over or {})), u32be(len(ents))]
        for p, ca, id_, nd in ents:
            out += [u64be(p), u64be(ca), id_, u32be(nd)]
        out += [u32be(len(lem))] + list(lem)
        return b"".join(out)

    def get(self, ids: list[bytes]):
        """An honest Get: (proof, returned) for the ids held, in the asked order."""
        tl = self.timeline()
        pos = {n.id: i for i, n in enumerate(tl)}
        found = [i for i in ids if i in pos]
        proof = self.time_proof(sorted(pos[i] for i in found))
        return proof, [(i, tl[pos[i]].record) for i in found]

    def list(self, since: int, until: int, after=None, limit: int = 100):
        """An honest List page: the boundary leaves and the in-range ones."""
        tl = self.timeline()
        n = len(tl)

        def below(x):
            return x.created_at < since or (after is not None and (x.created_at, x.id) <= tuple(after))

        start = 0
        while start < n and below(tl[start]):
            start += 1
        end = start
        while end < n and end - start < limit and tl[end].created_at < until:
            end += 1
        positions = list(range(start, end))
        if start > 0:
            positions.insert(0, start - 1)
        if end - start < limit and end < n:
            positions.append(end)
        return self.time_proof(positions), [(x.id, x.record) for x in tl[start:end]]

    # ------------------------------------------------------------ recall proofs

    def full_graph(self) -> dict:
        """{node: (vector, level, lists)} for the instrumented search."""
        return {n.node: (n.vector, n.level, n.lists) for n in self.nodes}

    def recall(self, query: bytes, k: int, ef: int, mode: int = MODE_GRAPH):
        """An honest recall: (proof parts, returned, scores). The parts dict can
        be tampered with and re-encoded with `encode_recall`."""
        if mode == MODE_EXACT:
            ds = distances(query, [n.vector for n in self.nodes], self.dim)
            ans = sorted((d, n.node) for d, n in zip(ds, self.nodes) if n.alive)[:k]
            touched, read = {n.node for n in self.nodes}, set()
        elif not self.nodes:
            ans, touched, read = [], set(), set()
        else:
            res, touched, read = instrumented_search(self.full_graph(), query, self.entry, self.max_level,
                                                     max(ef, k))
            ans = [p for p in res if self.nodes[p[1]].alive][:k]
        parts = dict(root=self.signed_root(), mode=mode, k=k, ef=ef, query=query,
                     nodes=[(n, n in read) for n in sorted(touched)], lemmas=None)
        returned = [(self.nodes[p].id, self.nodes[p].record) for _, p in ans]
        scores = [score_of(d) for d, _ in ans]
        return parts, returned, scores

    def encode_node(self, nd: Node, full: bool, vector: bytes | None = None) -> bytes:
        """One recall-proof node, with full lists or only their hash."""
        vec = nd.vector if vector is None else vector
        out = [u32be(nd.node), nd.id, u64be(nd.created_at), bytes([nd.alive, nd.level]), encode_vector(vec)]
        out += [b"\x01", encode_lists(nd.lists)] if full else [b"\x00", lists_hash(nd.lists)]
        return b"".join(out)

    def encode_recall(self, parts: dict) -> bytes:
        """CPR2 bytes from (possibly tampered) parts: root, mode, k, ef, query,
        nodes [(node number | Node, full lists?)], lemmas (None = honest)."""
        nodes = [(self.nodes[n] if isinstance(n, int) else n, full) for n, full in parts["nodes"]]
        lemmas = parts["lemmas"]
        if lemmas is None:
            idx = [nd.node for nd, _ in nodes]
            lemmas = make_multiproof(self.graph_leaves(), idx) if idx else []
        dim = parts.get("dim", len(parts["query"]))
        out = [RECALL_MAGIC, parts["root"], bytes([parts["mode"]]), u32be(parts["k"]), u32be(parts["ef"]),
               u16be(dim), parts["query"], u32be(len(nodes))]
        out += [self.encode_node(nd, full) for nd, full in nodes]
        out += [u32be(len(lemmas))] + list(lemmas)
        return b"".join(out)


def random_key() -> Ed25519PrivateKey:
    """A fresh signing key."""
    return Ed25519PrivateKey.from_private_bytes(os.urandom(32))


# ---------------------------------------------------------------- lexical index, CPX1 and CPF1 proofs
# (docs/PROOFS.md, "Lexical index", "Lexical and hybrid recall proof", "Filtered recall proof").


def _lex_index(f: FakeNode):
    """{term: [(node, tf, dl)]} over the live memories, and their total length."""
    from .lexical import DocTerms, facet_term
    from .record import decode_record

    index: dict[str, list] = {}
    total = 0
    for n in f.nodes:
        if not n.alive:
            continue
        rec = decode_record(n.record)
        d = DocTerms(rec.text)
        total += d.len
        for t, tf in d.terms:
            index.setdefault(t, []).append((n.node, tf, d.len))
        if f.tokenizer == 2:
            for ft in sorted({facet_term(k, v) for k, v in rec.metadata.items()}):
                index.setdefault(ft, []).append((n.node, 1, 1))
    terms = sorted(index, key=lambda t: t.encode("utf-8"))
    return terms, index, total


def _lexicon(self: FakeNode):
    if self.tokenizer is None:
        return None
    from .lexical import postings_hash, term_leaf_hash

    terms, index, total = _lex_index(self)
    leaves = [term_leaf_hash(t, len(index[t]), postings_hash(index[t])) for t in terms]
    return (self.tokenizer, len(leaves), tree_root(leaves), total)


FakeNode.lexicon = _lexicon


def _term_leaves(f: FakeNode, want: list[str]):
    """The term leaves (hybrid.TermLeaf) and lemmas showing each wanted term in full (or by hash over the
    df cap) or proving it absent by its neighbours."""
    import bisect

    from .hybrid import TermLeaf
    from .lexical import MAX_DF, postings_hash, term_leaf_hash

    terms, index, _ = _lex_index(f)
    keys = [t.encode("utf-8") for t in terms]
    full: set[int] = set()
    shown: set[int] = set()
    for t in want:
        i = bisect.bisect_left(keys, t.encode("utf-8"))
        if i < len(keys) and keys[i] == t.encode("utf-8"):
            shown.add(i)
            if len(index[t]) <= MAX_DF:
                full.add(i)
        else:
            shown.update(j for j in (i - 1, i) if 0 <= j < len(keys))
    pos = sorted(shown)
    leaves = []
    for i in pos:
        ps = index[terms[i]]
        leaves.append(TermLeaf(i, terms[i], len(ps), list(ps) if i in full else None,
                               None if i in full else postings_hash(ps)))
    hashes = [term_leaf_hash(t, len(index[t]), postings_hash(index[t])) for t in terms]
    lemmas = make_multiproof(hashes, pos) if pos else []
    lists = {terms[i]: index[terms[i]] for i in full}
    return leaves, lemmas, lists


def _hybrid(self: FakeNode, text: str, k: int, depth: int | None = None, mode: int = 2,
            vector: bytes | None = None, ef: int = 16, sem_mode: int = MODE_GRAPH):
    """An honest lexical (mode 1) or hybrid (mode 2) recall: (proof parts, returned, scores). Encode the
    parts, possibly tampered, with `encode_hybrid`."""
    from .lexical import bm25_top, fixed_score, fuse, query_terms

    depth = k if depth is None or mode == 1 else depth
    terms = query_terms(text)
    leaves, lex_lemmas, lists = _term_leaves(self, terms)
    _, _, total = _lex_index(self)
    n_live = len(self.timeline())
    lexical = bm25_top([lists[t] for t in terms if t in lists], n_live, total, depth)
    parts = dict(root=self.signed_root(), mode=mode, k=k, depth=depth, terms=terms, leaves=leaves,
                 lex_lemmas=lex_lemmas, graph_lemmas=None)
    if mode == 1:
        ranked = lexical[:k]
        parts["nodes"] = [(n, False) for n in sorted({n for _, n in ranked})]
    else:
        q = vector if vector is not None else self.random_vector()
        sparts, sret, _ = self.recall(q, depth, ef, sem_mode)
        sem = [self.nodes[[nd.node for nd in self.nodes if nd.id == i][0]].node for i, _ in sret]
        have = {n for n, _ in sparts["nodes"]}
        extra = [(n, False) for _, n in lexical if n not in have]
        sparts["nodes"] = sorted(sparts["nodes"] + extra)
        parts["search"] = sparts
        ranked = fuse([sem, [n for _, n in lexical]], k)
    returned = [(self.nodes[n].id, self.nodes[n].record) for _, n in ranked]
    scores = [fixed_score(s) for s, _ in ranked]
    return parts, returned, scores


def _encode_hybrid(self: FakeNode, parts: dict) -> bytes:
    """CPX1 bytes from (possibly tampered) parts."""
    from .hybrid import encode_hybrid_proof, encode_lemmas

    if parts["mode"] == 1 and "search" not in parts:
        nodes = [(self.nodes[n] if isinstance(n, int) else n, full) for n, full in parts["nodes"]]
        lemmas = parts.get("graph_lemmas")
        if lemmas is None:
            idx = [nd.node for nd, _ in nodes]
            lemmas = make_multiproof(self.graph_leaves(), idx) if idx else []
        graph = u32be(len(nodes)) + b"".join(self.encode_node(nd, full) for nd, full in nodes)
        graph += encode_lemmas(lemmas)
    else:
        graph = self.encode_recall(parts["search"])
    return encode_hybrid_proof(parts["root"], parts["mode"], parts["k"], parts["depth"], parts["terms"],
                               parts["leaves"], parts["lex_lemmas"], graph)


def _filtered(self: FakeNode, text: str, k: int, flt, depth: int | None = None, mode: int = 3,
              vector: bytes | None = None):
    """An honest filtered recall (mode 1 lexical, 2 hybrid, 3 semantic) under `flt` (filtered.RecallFilter):
    (proof parts, returned, scores). Encode with `encode_filtered`."""
    from .filtered import intersect
    from .lexical import bm25_top, fixed_score, fuse, query_terms

    depth = k if depth is None or mode != 2 else depth
    terms = [] if mode == 3 else query_terms(text)
    q = b"" if mode == 1 else (vector if vector is not None else self.random_vector())
    facets = flt.facets()
    leaves, lex_lemmas, lists = _term_leaves(self, terms + facets)
    if facets:
        cands = intersect([[x[0] for x in lists.get(ft, [])] for ft in facets])
    else:
        cands = [n.node for n in self.nodes]
    passing = {n for n in cands if self.nodes[n].alive and flt.in_range(self.nodes[n].created_at)}
    _, _, total = _lex_index(self)
    n_live = len(self.timeline())

    def semantic():
        ps = sorted(passing)
        ds = distances(q, [self.nodes[n].vector for n in ps], self.dim)
        return sorted(zip(ds, ps))[:depth]

    def lexical():
        return bm25_top([lists[t] for t in terms if t in lists], n_live, total, depth, keep=passing.__contains__)

    if mode == 3:
        ranked = [(score_of(d), n) for d, n in semantic()][:k]
    elif mode == 1:
        ranked = [(fixed_score(s), n) for s, n in lexical()][:k]
    else:
        ranked = [(fixed_score(s), n) for s, n in fuse([[n for _, n in semantic()], [n for _, n in lexical()]], k)]
    parts = dict(root=self.signed_root(), mode=mode, k=k, depth=depth, filter=flt, terms=terms, query=q,
                 leaves=leaves, lex_lemmas=lex_lemmas, nodes=[(n, False) for n in cands], lemmas=None)
    returned = [(self.nodes[n].id, self.nodes[n].record) for _, n in ranked]
    return parts, returned, [s for s, _ in ranked]


def _encode_filtered(self: FakeNode, parts: dict) -> bytes:
    """CPF1 bytes from (possibly tampered) parts."""
    from .filtered import encode_filtered_proof

    nodes = [(self.nodes[n] if isinstance(n, int) else n, full) for n, full in parts["nodes"]]
    lemmas = parts["lemmas"]
    if lemmas is None:
        idx = [nd.node for nd, _ in nodes]
        lemmas = make_multiproof(self.graph_leaves(), idx) if idx else []
    return encode_filtered_proof(parts["root"], parts["mode"], parts["k"], parts["depth"], parts["filter"],
                                 parts["terms"], parts["query"], parts["leaves"], parts["lex_lemmas"],
                                 [self.encode_node(nd, full) for nd, full in nodes], lemmas)


FakeNode.hybrid = _hybrid
FakeNode.encode_hybrid = _encode_hybrid
FakeNode.filtered = _filtered
FakeNode.encode_filtered = _encode_filtered
