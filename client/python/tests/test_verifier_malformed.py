"""Malformed input: the verifier raises VerifyError and nothing else, on any
bytes and any argument, and never allocates from a length field."""

import random
import struct
import time

import blake3
import pytest

from cairn.verifier import (
    ProofFile,
    VerifyError,
    check_fresh,
    count_witnesses,
    decode_proof_file,
    decode_record,
    decode_signed_root,
    encode_proof_file,
    verify_get,
    verify_list,
    verify_proof_file,
    verify_recall,
)
from cairn.verifier.build import FakeNode
from cairn.verifier.grants import decode_grant_set
from cairn.verifier.proofs import MODE_EXACT, MODE_GRAPH, decode_recall_proof, decode_time_proof
from cairn.verifier.snapshot import decode_record_page

MAX = 2**64 - 1


def _files():
    f = FakeNode(seed=21, dim=16)
    for i in range(30):
        f.add(f"m{i}", 1000 + 3 * i, metadata={"k": str(i)})
    f.forget(f.nodes[7].id)
    tl = f.timeline()
    q = f.random_vector()
    out = []

    def add(kind, proof, ret, scores=None, **kw):
        items = [(i, r, None if scores is None else struct.unpack(">I", struct.pack(">f", s))[0])
                 for (i, r), s in zip(ret, scores or [None] * len(ret))]
        out.append(encode_proof_file(ProofFile(2, kind, f.namespace, items, proof,
                                               cosigs=[(b"\x01" * 32, b"\x02" * 64)], **kw)))

    for mode in (MODE_GRAPH, MODE_EXACT):
        parts, ret, sc = f.recall(q, 4, 6, mode)
        add("recall", f.encode_recall(parts), ret, sc, k=4, min_ef=3)
    lp, lr = f.list(1010, 1050, (tl[4].created_at, tl[4].id), 5)
    add("list", lp, lr, since=1010, until=1050, after=(tl[4].created_at, tl[4].id), limit=5)
    gp, gr = f.get([tl[3].id, tl[9].id])
    add("get", gp, gr)
    return f, out


F, FILES = _files()


def _resum(body: bytes) -> bytes:
    return body + blake3.blake3(body).digest()


def _run(data: bytes):
    """verify_proof_file on data: True/False, never another exception."""
    try:
        verify_proof_file(data, F.node_id)
        return True
    except VerifyError:
        return False


def test_the_base_files_verify():
    assert all(_run(b) for b in FILES)


@pytest.mark.parametrize("idx", range(4))
def test_every_truncation_is_rejected(idx):
    body = FILES[idx][:-32]
    step = max(1, len(body) // 600)
    for cut in range(0, len(body), step):
        assert _run(_resum(body[:cut])) is False
        assert _run(body[:cut]) is False


def test_random_mutations_only_raise_verify_error():
    rng = random.Random(1234)
    t0 = time.time()
    for n in range(1500):
        body = bytearray(rng.choice(FILES)[:-32])
        for _ in range(rng.choice([1, 1, 2, 4])):
            i = rng.randrange(len(body))
            op = rng.random()
            if op < 0.5:
                body[i] ^= 1 << rng.randrange(8)
            elif op < 0.7:
                body[i:i + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff",
                                            b"\x00\x00\x00\x01", b"\x00\x01\x00\x00"])
            elif op < 0.8:
                del body[i]
            elif op < 0.9:
                body.insert(i, rng.randrange(256))
            else:
                del body[i:]
        _run(_resum(bytes(body)))
    assert time.time() - t0 < 120


def _length_offsets(data: bytes):
    """Every offset: overwrite 2 or 4 bytes with all-ones (a huge length field
    wherever one sits) and make sure it is rejected quickly."""
    for i in range(0, len(data) - 4):
        for w in (b"\xff\xff", b"\xff\xff\xff\xff"):
            yield data[:i] + w + data[i + len(w):]


def test_huge_length_fields_are_rejected_before_allocation():
    body = FILES[3][:-32]
    t0 = time.time()
    for m in _length_offsets(body):
        _run(_resum(m))
    assert time.time() - t0 < 60


def test_inner_decoders_on_garbage():
    rng = random.Random(7)
    proofs = [decode_proof_file(b).proof for b in FILES]
    recs = [r for _, r, _ in decode_proof_file(FILES[3]).items]
    for _ in range(3000):
        src = bytearray(rng.choice(proofs + recs))
        for _ in range(rng.choice([1, 3])):
            i = rng.randrange(len(src))
            src[i] = rng.randrange(256)
        if rng.random() < 0.3:
            del src[rng.randrange(len(src)):]
        b = bytes(src)
        for fn in (lambda: decode_time_proof(b, F.node_id), lambda: decode_recall_proof(b, F.node_id),
                   lambda: decode_record(b), lambda: decode_signed_root(b, F.node_id),
                   lambda: decode_grant_set(b, F.node_id, F.namespace), lambda: decode_record_page(b)):
            try:
                fn()
            except VerifyError:
                pass


@pytest.mark.parametrize("bad", [None, "text", 5, [1, 2], b"", b"\x00" * 7, memoryview(b"CAIRNPF2")])
def test_non_bytes_and_tiny_inputs(bad):
    for fn in (lambda: verify_proof_file(bad, F.node_id), lambda: decode_proof_file(bad), lambda: decode_record(bad),
               lambda: verify_get(bad, "ns", F.node_id, []), lambda: verify_recall(bad, "ns", F.node_id, 1, 0, [], []),
               lambda: verify_list(bad, "ns", F.node_id, 0, 1, None, 1, [])):
        with pytest.raises(VerifyError):
            fn()


def test_bad_arguments_raise_verify_error():
    pf = decode_proof_file(FILES[0])
    ret, sc = pf.returned, pf.scores
    cases = [
        lambda: verify_recall(pf.proof, pf.namespace, b"short", 4, 3, ret, sc),
        lambda: verify_recall(pf.proof, pf.namespace, None, 4, 3, ret, sc),
        lambda: verify_recall(pf.proof, None, F.node_id, 4, 3, ret, sc),
        lambda: verify_recall(pf.proof, pf.namespace, F.node_id, "four", 3, ret, sc),
        lambda: verify_recall(pf.proof, pf.namespace, F.node_id, 4, 3, None, sc),
        lambda: verify_recall(pf.proof, pf.namespace, F.node_id, 4, 3, [(1, 2)] * 4, sc),
        lambda: verify_recall(pf.proof, pf.namespace, F.node_id, 4, 3, ret, [float("nan")] * 4),
        lambda: verify_recall(pf.proof, pf.namespace, F.node_id, 4, 3, ret, [float("inf")] * 4),
        lambda: verify_recall(pf.proof, pf.namespace, F.node_id, 4, 3, ret, ["x"] * 4),
        lambda: verify_recall(pf.proof, pf.namespace, F.node_id, 4, 3, ret, None),
        lambda: verify_recall(pf.proof, pf.namespace, F.node_id, 4, 3, ret, [1e300] * 4),
    ]
    lf = decode_proof_file(FILES[2])
    cases += [
        lambda: verify_list(lf.proof, lf.namespace, F.node_id, "a", lf.until, lf.after, lf.limit, lf.returned),
        lambda: verify_list(lf.proof, lf.namespace, F.node_id, lf.since, lf.until, (1,), lf.limit, lf.returned),
        lambda: verify_list(lf.proof, lf.namespace, F.node_id, lf.since, lf.until, lf.after, None, lf.returned),
        lambda: verify_list(lf.proof, lf.namespace, F.node_id, lf.since, lf.until, lf.after, lf.limit, 7),
    ]
    for c in cases:
        with pytest.raises(VerifyError):
            c()


def test_fresh_and_witness_helpers_on_garbage():
    v = verify_proof_file(FILES[3], F.node_id)
    for last in [(1,), "x", (None, None)]:
        try:
            check_fresh(v.root, last)
        except VerifyError:
            pass
    assert count_witnesses(v.root, [None, (1, 2), (b"", b""), ("a", "b"), (b"\x01" * 32, b"\x02" * 64)],
                           [b"\x01" * 32, "zz", None]) == 0
    assert count_witnesses(v.root, None, [b"\x01" * 32]) == 0
