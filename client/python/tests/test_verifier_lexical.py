"""Lexical and hybrid (CPX1) and filtered (CPF1) recall proofs: the published vectors of docs/PROOFS.md
("Lexical index"), real proof files written by the Rust node, and proofs of the reference prover, honest and
tampered."""

import glob
import os
import struct

import blake3
import pytest

from cairn.verifier import VerifyError, decode_proof_file, encode_proof_file, verify_proof_file
from cairn.verifier.build import FakeNode
from cairn.verifier.filtered import RecallFilter, decode_filtered_proof, verify_filtered
from cairn.verifier.hybrid import decode_hybrid_proof, verify_hybrid
from cairn.verifier.lexical import (
    DocTerms,
    bm25_top,
    f32_bits,
    facet_term,
    fixed_score,
    fuse,
    idf_fixed,
    log2_fixed,
    postings_hash,
    query_terms,
    term_leaf_bytes,
    term_leaf_hash,
    tf_fixed,
    tokenize,
    u64_to_f32,
)
from cairn.verifier.stem import stem
from cairn.verifier.unitab import is_alphanumeric, is_numeric, lower

DATA = os.path.join(os.path.dirname(__file__), "data", "lexical")
# The node that wrote the files in DATA (`cairn serve`, then `cairn import` of memories.jsonl, one forget, and
# `cairn recall --mode M [--where K=V] [--since/--until] --proof-out FILE`); `cairn verify` accepts each.
NODE = bytes.fromhex("6a02729b56e82d38f59b1a61197ca4fa9bd01addb11be77c927442db11b0a235")
FILES = sorted(glob.glob(os.path.join(DATA, "*.cpf")))


# ------------------------------------------------------------------ vectors (docs/PROOFS.md, index/tests)


def test_tokenizer_vectors():
    assert tokenize("Caroline's 2 trips to PARIS (May 7, 2023): don't stop!") == \
        ["carolin", "2", "trip", "pari", "may", "7", "2023", "stop"]
    assert tokenize("Caroline's trip to Paris, on 7 May 2023 — ÉTÉ naïve x3!") == \
        ["carolin", "trip", "pari", "7", "may", "2023", "été", "naïv", "x3"]
    assert tokenize("researching adoption agencies; she researched") == ["research", "adopt", "agenc", "research"]
    assert tokenize("fruitlessly generously dying skies news ugly") == \
        ["fruitless", "generous", "die", "sky", "news", "ugli"]
    assert tokenize("I am what I am.") == []
    assert query_terms("paris Paris PARIS london") == ["pari", "london"]
    d = DocTerms("Paris, paris and Lyon")
    assert (d.terms, d.len) == ([("lyon", 1), ("pari", 2)], 3)
    d = DocTerms("the cats saw the other cat")
    assert (d.terms, d.len, d.tf("cat"), d.tf("dog")) == ([("cat", 2), ("saw", 1)], 3, 2, 0)
    # Runs over 64 bytes are dropped; one-character runs stay only if numeric.
    assert tokenize("a" * 64 + " " + "b" * 65 + " s 7 ²") == ["a" * 64, "7", "²"]
    assert query_terms(" ".join(f"w{i}" for i in range(40))) == [f"w{i}" for i in range(32)]


def test_unicode_classes_are_rusts():
    # Alphabetic includes combining vowel signs (Python's isalnum does not), not the virama (U+094D).
    assert is_alphanumeric("\u093e") and not "\u093e".isalnum()
    assert tokenize("हिन्दी") == ["हिन", "दी"]
    assert tokenize("किताब") == ["किताब"]
    assert is_numeric("²") and is_numeric("Ⅻ") and not is_numeric("x")
    assert not is_alphanumeric("_") and not is_alphanumeric("'")
    assert lower("ΟΔΟΣ") == "οδος" and lower("\ua7cb") == "\u0264"


def test_stemmer_is_rust_stemmers_1_2():
    # Words where Snowball 3.x (Python's snowballstemmer 3.1.1) differs from rust-stemmers 1.2.0.
    for w, s in [("added", "ad"), ("apologists", "apologist"), ("ebbing", "eb"), ("emergency", "emerg"),
                 ("erred", "er"), ("generate", "generat"), ("communism", "communism"), ("skis", "ski"),
                 ("happily", "happili"), ("hopping", "hop"), ("agreed", "agre"), ("ab", "ab")]:
        assert stem(w) == s, w


def test_stemmer_on_the_crates_own_vocabulary():
    d = glob.glob(os.path.expanduser("~/.cargo/registry/src/*/rust-stemmers-1.2.0/test_data/"))
    if not d:
        pytest.skip("rust-stemmers 1.2.0 sources not in the cargo registry")
    voc = open(d[0] + "voc_en.txt", encoding="utf-8").read().split("\n")
    res = open(d[0] + "res_en.txt", encoding="utf-8").read().split("\n")
    bad = [(v, r, stem(v)) for v, r in zip(voc, res) if v and stem(v) != r]
    assert not bad, bad[:10]


def test_facet_postings_and_leaf_vectors():
    f = facet_term("speaker", "Caroline")
    assert len(f) == 33 and f[0] == "\x00" and f[1:] == "e1807ab5ae28536a6aae80888da64828"
    ph = postings_hash([(3, 2, 3), (9, 1, 12)])
    assert ph.hex() == "8e0ef4166f0b98227472be5a02f72a944c9bc03e56faab0cdab4c55b3d2b1097"
    assert term_leaf_bytes("paris", 2, ph).hex() == "434c5431000570617269730000000" + "2" + ph.hex()
    assert term_leaf_hash("paris", 2, ph).hex() == "e42c1496817c8099e9b99bab844329721651ebfb74481b0c429374c244fc72c9"


def test_bm25_and_fusion_vectors():
    assert (log2_fixed(0), log2_fixed(1), log2_fixed(2), log2_fixed(1024)) == (0, 0, 1 << 16, 10 << 16)
    assert log2_fixed(3) == 103_872 and log2_fixed(1000) == 653_117
    assert idf_fixed(100, 2) == 349_719 and idf_fixed(100, 1) == log2_fixed(202) - log2_fixed(3)
    assert tf_fixed(2, 3, 100, 1000) == 112_201 and tf_fixed(1, 12, 100, 1000) == 60_579
    assert tf_fixed(1, 10, 100, 1000) == ((22 * 1000) << 16) // (10 * 1000 + 3 * 1000 + 9 * 10 * 100)
    assert tf_fixed(1, 1, 0, 0) == 0
    top = bm25_top([[(3, 2, 3), (9, 1, 12)]], 100, 1000, 10)
    assert top == [(39_238_821_519, 3), (21_185_627_301, 9)]
    assert f32_bits(fixed_score(top[0][0])) == 0x41122D0E
    assert fuse([[5, 1, 2], [1, 5, 9]], 4) == [(748365513, 1), (748365513, 5), (330382099, 2), (330382099, 9)]
    top = bm25_top([[(3, 1, 5), (4, 2, 5)], [(3, 1, 5)]], 10, 50, 10)
    assert top[0][1] == 3 and len(top) == 2
    # Saturation at u64 and exact u64 -> f32 rounding (ties to even, no double rounding through f64).
    assert idf_fixed(2**64 - 1, 1) == log2_fixed(2**64 - 1) - log2_fixed(3)
    assert u64_to_f32(2**24 + 1) == 2**24 and u64_to_f32(2**24 + 3) == 2**24 + 4
    x = (1 << 60) + (1 << 36) + 1  # just above a tie: f64 rounding first would give the tie, then even
    assert u64_to_f32(x) == (1 << 60) + (1 << 37)


# ------------------------------------------------------------------ real files from the Rust node


def _resum(body: bytes) -> bytes:
    return body + blake3.blake3(body).digest()


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(p) for p in FILES])
def test_real_files_verify_and_tampered_copies_do_not(path):
    data = open(path, "rb").read()
    pf = decode_proof_file(data)
    v = verify_proof_file(data, NODE)
    assert pf.kind in ("hybrid", "filtered") and v.kind in ("lexical", "hybrid", "filtered")
    assert v.ids == [i for i, _, _ in pf.items]
    assert encode_proof_file(pf) == data
    with pytest.raises(VerifyError):
        verify_proof_file(data, b"\x01" * 32)
    tampered = []
    if pf.items:
        q = decode_proof_file(data)
        i, r, s = q.items[0]
        q.items[0] = (i, r, s ^ 1)
        tampered.append(q)
        q = decode_proof_file(data)
        q.items = q.items[:-1]
        tampered.append(q)
    if v.terms:
        q = decode_proof_file(data)
        q.query = "qwertyuiop " + q.query
        tampered.append(q)
    q = decode_proof_file(data)
    q.k += 1
    tampered.append(q)
    if pf.filter is not None:
        q = decode_proof_file(data)
        q.filter = RecallFilter(q.filter.pairs, 1, q.filter.until)
        tampered.append(q)
        q = decode_proof_file(data)
        q.filter = RecallFilter(q.filter.pairs + [("zz", "1")], q.filter.since, q.filter.until)
        tampered.append(q)
    for q in tampered:
        with pytest.raises(VerifyError):
            verify_proof_file(encode_proof_file(q), NODE)
    # Byte flips in the proof, re-checksummed: only VerifyError, never another exception.
    body = data[:-32]
    start = body.rfind(pf.proof)
    for j in range(0, len(pf.proof), max(1, len(pf.proof) // 150)):
        m = bytearray(body)
        m[start + j] ^= 0x5A
        try:
            verify_proof_file(_resum(bytes(m)), NODE)
        except VerifyError:
            pass


def test_real_files_cover_every_mode():
    seen = set()
    for path in FILES:
        v = verify_proof_file(open(path, "rb").read(), NODE)
        seen.add((v.kind, v.mode))
    assert {("lexical", 1), ("hybrid", 2), ("filtered", 1), ("filtered", 2), ("filtered", 3)} <= seen


# ------------------------------------------------------------------ the reference prover

TEXTS = ["Caroline went to Paris in May", "Melanie paints sunsets near the lake", "Paris trip planning with Caroline",
         "coffee with Melanie about adoption agencies", "researching adoption agencies in Paris",
         "the cat sat on the mat", "running races and charity runs", "Caroline researched adoption",
         "lake house in summer", "painting lessons"]


def _node(tok=2, seed=3):
    f = FakeNode(seed=seed, dim=8, tokenizer=tok)
    for i, t in enumerate(TEXTS):
        f.add(t, 1000 + i, metadata={"speaker": "Caroline" if i % 2 == 0 else "Melanie", "i": str(i)})
    f.forget(f.nodes[2].id)
    return f


F = _node()


@pytest.mark.parametrize("mode", [1, 2])
@pytest.mark.parametrize("q", ["Caroline Paris adoption", "zebra", "lake", "", "aaa zzzz"])
def test_honest_cpx1(mode, q):
    parts, ret, sc = F.hybrid(q, 3, depth=5, mode=mode)
    proof = F.encode_hybrid(parts)
    v = verify_hybrid(proof, F.namespace, F.node_id, mode, 3, 0, 3, q, ret, sc)
    assert v.kind == ("lexical" if mode == 1 else "hybrid") and v.ids == [i for i, _ in ret]
    with pytest.raises(VerifyError):
        verify_hybrid(proof, F.namespace, F.node_id, 3 - mode, 3, 0, 3, q, ret, sc)
    with pytest.raises(VerifyError):
        verify_hybrid(proof, F.namespace, F.node_id, mode, 4, 0, 3, q, ret, sc)
    with pytest.raises(VerifyError):
        verify_hybrid(proof, "other", F.node_id, mode, 3, 0, 3, q, ret, sc)
    with pytest.raises(VerifyError):
        verify_hybrid(proof, F.namespace, F.node_id, mode, 3, 0, 3, q + " paint", ret, sc)
    if mode == 2:
        with pytest.raises(VerifyError):
            verify_hybrid(proof, F.namespace, F.node_id, mode, 3, 0, 6, q, ret, sc)
    if ret:
        with pytest.raises(VerifyError):
            verify_hybrid(proof, F.namespace, F.node_id, mode, 3, 0, 3, q, ret[::-1] if len(ret) > 1 else [],
                          sc[::-1] if len(ret) > 1 else [])
        bad = [struct.unpack(">f", struct.pack(">I", f32_bits(sc[0]) ^ 1))[0]] + sc[1:]
        with pytest.raises(VerifyError):
            verify_hybrid(proof, F.namespace, F.node_id, mode, 3, 0, 3, q, ret, bad)


def test_cpx1_tampered_postings_and_absence():
    parts, ret, sc = F.hybrid("Caroline Paris adoption", 3, mode=1)
    full = [lf for lf in parts["leaves"] if lf.postings]
    # A shortened list changes the leaf hash; a list shown by hash only is not enough for a query term.
    lf = full[0]
    for change in ("drop", "hash", "tf", "unsorted"):
        p2 = dict(parts, leaves=[type(x)(**vars(x)) for x in parts["leaves"]])
        t = next(x for x in p2["leaves"] if x.term == lf.term)
        if change == "drop":
            t.postings, t.df = t.postings[1:], t.df - 1
        elif change == "hash":
            t.postings_h, t.postings = postings_hash(t.postings), None
        elif change == "tf":
            t.postings = [(n, tf + 1, dl + 1) for n, tf, dl in t.postings]
        else:
            t.postings = t.postings[::-1]
        with pytest.raises(VerifyError):
            verify_hybrid(F.encode_hybrid(p2), F.namespace, F.node_id, 1, 3, 0, 0, None, ret, sc)
    # Hiding a query term's leaf: it is then neither shown nor proven absent.
    p2 = dict(parts, leaves=[x for x in parts["leaves"] if x.term != lf.term], lex_lemmas=[])
    with pytest.raises(VerifyError):
        verify_hybrid(F.encode_hybrid(p2), F.namespace, F.node_id, 1, 3, 0, 0, None, ret, sc)
    # A repeated query term.
    p2 = dict(parts, terms=parts["terms"] + parts["terms"][:1])
    with pytest.raises(VerifyError):
        verify_hybrid(F.encode_hybrid(p2), F.namespace, F.node_id, 1, 3, 0, 0, None, ret, sc)
    # A hit whose record does not contain the term its posting claims (record swapped for another memory's).
    other = next(n for n in F.nodes if n.alive and n.id not in {i for i, _ in ret})
    with pytest.raises(VerifyError):
        verify_hybrid(F.encode_hybrid(parts), F.namespace, F.node_id, 1, 3, 0, 0, None,
                      [(other.id, other.record)] + ret[1:], sc)


def test_cpx1_needs_a_version_2_root():
    f = _node(tok=None)
    f.tokenizer = 1
    parts, ret, sc = f.hybrid("Paris", 2, mode=1)
    f.tokenizer = None
    parts["root"] = f.signed_root()
    with pytest.raises(VerifyError, match="unsupported"):
        verify_hybrid(f.encode_hybrid(parts), f.namespace, f.node_id, 1, 2, 0, 0, None, ret, sc)


FILTERS = [RecallFilter([("speaker", "Caroline")]), RecallFilter([], 1002, 1008),
           RecallFilter([("i", "4"), ("speaker", "Caroline")], 1000, None), RecallFilter([("speaker", "Nobody")]),
           RecallFilter()]


@pytest.mark.parametrize("mode", [1, 2, 3])
@pytest.mark.parametrize("fi", range(len(FILTERS)))
def test_honest_cpf1(mode, fi):
    flt = FILTERS[fi]
    q = "adoption Paris"
    parts, ret, sc = F.filtered(q, 3, flt, depth=4, mode=mode)
    proof = F.encode_filtered(parts)
    v = verify_filtered(proof, F.namespace, F.node_id, mode, 3, 3, flt, q, ret, sc)
    assert v.kind == "filtered" and v.ids == [i for i, _ in ret]
    other = RecallFilter(flt.pairs, (flt.since or 0) + 1, flt.until)
    with pytest.raises(VerifyError):
        verify_filtered(proof, F.namespace, F.node_id, mode, 3, 3, other, q, ret, sc)
    with pytest.raises(VerifyError):
        verify_filtered(proof, F.namespace, F.node_id, mode % 3 + 1, 3, 3, flt, q, ret, sc)
    if mode != 3:
        with pytest.raises(VerifyError):
            verify_filtered(proof, F.namespace, F.node_id, mode, 3, 3, flt, "lake", ret, sc)
    # A candidate left out of the proof, or a memory outside the candidate set added.
    if parts["nodes"]:
        p2 = dict(parts, nodes=parts["nodes"][1:])
        with pytest.raises(VerifyError):
            verify_filtered(F.encode_filtered(p2), F.namespace, F.node_id, mode, 3, 3, flt, q, ret, sc)
    extra = [n.node for n in F.nodes if n.node not in {x for x, _ in parts["nodes"]}]
    if extra:
        p2 = dict(parts, nodes=sorted(parts["nodes"] + [(extra[0], False)]))
        with pytest.raises(VerifyError):
            verify_filtered(F.encode_filtered(p2), F.namespace, F.node_id, mode, 3, 3, flt, q, ret, sc)


def test_cpf1_pairs_need_index_version_2():
    f = _node(tok=1)
    flt = RecallFilter([], 1001, None)
    parts, ret, sc = f.filtered("Paris", 2, flt, mode=1)
    verify_filtered(f.encode_filtered(parts), f.namespace, f.node_id, 1, 2, 2, flt, "Paris", ret, sc)
    flt = RecallFilter([("speaker", "Caroline")])
    parts, ret, sc = f.filtered("Paris", 2, flt, mode=1)
    with pytest.raises(VerifyError, match="unsupported"):
        verify_filtered(f.encode_filtered(parts), f.namespace, f.node_id, 1, 2, 2, flt, "Paris", ret, sc)


def test_proof_files_of_kinds_4_and_5_round_trip():
    from cairn.verifier import ProofFile

    parts, ret, sc = F.hybrid("Caroline Paris", 3, depth=5, mode=2)
    items = [(i, r, f32_bits(s)) for (i, r), s in zip(ret, sc)]
    pf = ProofFile(2, "hybrid", F.namespace, items, F.encode_hybrid(parts), k=3, min_ef=0, min_depth=5,
                   query="Caroline Paris")
    b = encode_proof_file(pf)
    assert verify_proof_file(b, F.node_id).kind == "hybrid"
    pf.min_depth = 6
    with pytest.raises(VerifyError):
        verify_proof_file(encode_proof_file(pf), F.node_id)
    flt = RecallFilter([("speaker", "Caroline")], 1000, 2000)
    parts, ret, sc = F.filtered("Caroline Paris", 2, flt, mode=1)
    items = [(i, r, f32_bits(s)) for (i, r), s in zip(ret, sc)]
    pf = ProofFile(1, "filtered", F.namespace, items, F.encode_filtered(parts), k=2, min_ef=0, min_depth=0,
                   query="Caroline Paris", filter=flt)
    b = encode_proof_file(pf)
    d = decode_proof_file(b)
    assert (d.filter, d.query, d.min_depth, d.version) == (flt, "Caroline Paris", 0, 1)
    assert verify_proof_file(b, F.node_id).kind == "filtered"


# ------------------------------------------------------------------ malformed input


def _small_proofs():
    parts, ret, sc = F.hybrid("Caroline Paris adoption zebra", 2, depth=3, mode=2)
    h = F.encode_hybrid(parts)
    parts, ret2, sc2 = F.hybrid("Caroline Paris adoption zebra", 2, mode=1)
    lx = F.encode_hybrid(parts)
    flt = RecallFilter([("speaker", "Caroline")], 1000, None)
    parts, ret3, sc3 = F.filtered("adoption", 2, flt, depth=3, mode=2)
    fp = F.encode_filtered(parts)
    return [("cpx1-hybrid", h, ret, sc, None), ("cpx1-lexical", lx, ret2, sc2, None), ("cpf1", fp, ret3, sc3, flt)]


SMALL = _small_proofs()


def _run(name, proof, ret, sc, flt):
    if flt is None:
        return verify_hybrid(proof, F.namespace, F.node_id, None, 2, 0, 0, None, ret, sc)
    return verify_filtered(proof, F.namespace, F.node_id, None, 2, 0, flt, None, ret, sc)


@pytest.mark.parametrize("case", SMALL, ids=[c[0] for c in SMALL])
def test_truncations_and_flips_only_raise_verify_error(case):
    name, proof, ret, sc, flt = case
    _run(*case)
    for n in range(len(proof)):
        with pytest.raises(VerifyError):
            _run(name, proof[:n], ret, sc, flt)
    with pytest.raises(VerifyError):
        _run(name, proof + b"\x00", ret, sc, flt)
    import random
    rng = random.Random(7)
    for _ in range(400):
        m = bytearray(proof)
        for _ in range(rng.randint(1, 4)):
            m[rng.randrange(len(m))] = rng.randrange(256)
        try:
            _run(name, bytes(m), ret, sc, flt)
        except VerifyError:
            pass


@pytest.mark.parametrize("case", SMALL, ids=[c[0] for c in SMALL])
def test_huge_counts_are_rejected(case):
    name, proof, ret, sc, flt = case
    # Every 2- and 4-byte window set to all ones: a huge count, length, k, depth or df anywhere.
    for width in (2, 4):
        for i in range(0, len(proof) - width):
            m = proof[:i] + b"\xff" * width + proof[i + width:]
            try:
                _run(name, m, ret, sc, flt)
            except VerifyError:
                pass


def test_decoders_on_garbage():
    for b in [b"", b"CPX1", b"CPF1", b"CPX1" + b"\xff" * 40, b"CPF1" + b"\x00" * 300, b"CPR2" + b"\x00" * 10]:
        for dec in (decode_hybrid_proof, decode_filtered_proof):
            with pytest.raises(VerifyError):
                dec(b, F.node_id)
    for bad in (None, 3, "CPX1"):
        with pytest.raises(VerifyError):
            verify_hybrid(bad, F.namespace, F.node_id, 1, 1)
        with pytest.raises(VerifyError):
            verify_filtered(bad, F.namespace, F.node_id, 1, 1, 0, RecallFilter())
    proof = SMALL[0][1]
    for args in [("x", 1, 0, 0, None, [], []), (1, "k", 0, 0, None, [], []), (1, 2, 0, 0, 5, [], []),
                 (1, 2, 0, 0, None, [(1, 2)], []), (1, 2, 0, 0, None, [], None)]:
        with pytest.raises(VerifyError):
            verify_hybrid(proof, F.namespace, F.node_id, *args)
    with pytest.raises(VerifyError):
        verify_filtered(SMALL[2][1], F.namespace, F.node_id, 2, 2, 0, None)


def test_proof_file_kind_5_caps():
    from cairn.verifier import ProofFile

    base = ProofFile(2, "filtered", "ns", [], b"", k=1, min_ef=0, min_depth=0, query="q",
                     filter=RecallFilter([("k", "v")]))
    decode_proof_file(encode_proof_file(base))
    for f in [RecallFilter([(str(i), "v") for i in range(17)]), RecallFilter([("k", "v" * 4097)])]:
        base.filter = f
        with pytest.raises(VerifyError):
            decode_proof_file(encode_proof_file(base))
    body = encode_proof_file(ProofFile(2, "hybrid", "ns", [], b"", k=1, min_ef=0, min_depth=0, query="q"))[:-32]
    qpos = body.index(b"\x00\x00\x00\x01q")
    for bad in (body[:qpos] + b"\x00\x20\x00\x01" + body[qpos + 4:],            # query text over 1 MiB
                body[:qpos] + b"\x00\x00\x00\x01\xff" + body[qpos + 5:]):       # not UTF-8
        with pytest.raises(VerifyError):
            decode_proof_file(_resum(bad))
    for n in range(len(body)):
        with pytest.raises(VerifyError):
            decode_proof_file(_resum(body[:n]))
