"""Get / List / Recall verification on proofs from the reference prover
(cairn.verifier.build), honest and tampered. Each expected decision below was
also checked against the Rust `cairn verify` (see VERIFIER-NOTES.md)."""

import json
import struct

import numpy as np
import pytest

from cairn.verifier import (
    ProofFile,
    VerifyError,
    decode_proof_file,
    encode_proof_file,
    verify_get,
    verify_list,
    verify_proof_file,
    verify_recall,
)
from cairn.verifier.build import FakeNode
from cairn.verifier.crosscheck import run as crosscheck_run
from cairn.verifier.proofs import MODE_EXACT, MODE_GRAPH, recall_answer
from cairn.verifier.search import score_of

MAX = 2**64 - 1


@pytest.fixture(scope="module")
def timeline_node():
    f = FakeNode(seed=3)
    for i, c in enumerate([1000, 1010, 1010, 1020, 1030, 1030, 1040]):
        f.add(f"m{i}", c)
    return f


@pytest.fixture(scope="module")
def graph_node():
    f = FakeNode(seed=7, dim=8)
    for i in range(60):
        f.add(f"m{i}", 1000 + i)
    f.forget(f.nodes[5].id)
    f.forget(f.nodes[17].id)
    return f


def R(f, i):
    x = f.timeline()[i]
    return (x.id, x.record)


# ------------------------------------------------------------------ Get


def test_get_honest_any_order(timeline_node):
    f = timeline_node
    proof = f.time_proof([1, 4])
    v = verify_get(proof, f.namespace, f.node_id, [R(f, 4), R(f, 1)])
    assert v.ids == [R(f, 4)[0], R(f, 1)[0]]
    assert v.root.time_leaves == 7


@pytest.mark.parametrize("ret", [[1], [1, 4, 4], [1, 1], [4, 1, 2]])
def test_get_answer_must_match_entries(timeline_node, ret):
    # [1, 1] against entries {1, 4}: the Rust verifier accepts it (it compares
    # counts and membership only); the document says "and vice versa".
    f = timeline_node
    with pytest.raises(VerifyError):
        verify_get(f.time_proof([1, 4]), f.namespace, f.node_id, [R(f, i) for i in ret])


def test_get_wrong_namespace_and_key(timeline_node):
    f = timeline_node
    proof = f.time_proof([1])
    with pytest.raises(VerifyError):
        verify_get(proof, "other/ns", f.node_id, [R(f, 1)])
    with pytest.raises(VerifyError):
        verify_get(proof, f.namespace, b"\x01" * 32, [R(f, 1)])


def test_get_record_must_hash_to_id(timeline_node):
    f = timeline_node
    id_, rec = R(f, 1)
    with pytest.raises(VerifyError):
        verify_get(f.time_proof([1]), f.namespace, f.node_id, [(id_, rec + b"\x00")])


def test_get_empty_proof_proves_nothing(timeline_node):
    f = timeline_node
    v = verify_get(f.time_proof([]), f.namespace, f.node_id, [])
    assert v.items == []


def test_get_leaf_count_is_range_checked(timeline_node):
    f = timeline_node
    with pytest.raises(VerifyError):
        verify_get(f.time_proof([1], root_over=dict(time_leaves=12)), f.namespace, f.node_id, [R(f, 1)])


# ------------------------------------------------------------------ List


@pytest.mark.parametrize("since,until,after_i,limit", [
    (0, MAX, None, 100), (1005, 1031, None, 100), (0, MAX, None, 2), (1010, MAX, 2, 3),
    (2000, MAX, None, 5), (0, 500, None, 5), (1031, 1000, None, 5), (1015, 1016, None, 1),
])
def test_list_honest(timeline_node, since, until, after_i, limit):
    f = timeline_node
    tl = f.timeline()
    after = None if after_i is None else (tl[after_i].created_at, tl[after_i].id)
    proof, ret = f.list(since, until, after, limit)
    v = verify_list(proof, f.namespace, f.node_id, since, until, after, limit, ret)
    assert v.ids == [i for i, _ in ret]


@pytest.mark.parametrize("pos,since,until,limit,ret,ok", [
    ([0, 1], 1030, 1000, 100, [], True),        # first leaf at position 0 below, last at/after until
    ([6], 2000, MAX, 100, [], True),             # all below: the last leaf is the left edge
    ([0], 0, 500, 100, [], True),                # all above: the first leaf is the right edge
    ([5, 6], 2000, MAX, 100, [], False),         # two leaves below the range
    ([0], 2000, MAX, 100, [], False),            # no right boundary
    ([1, 2], 0, MAX, 0, [], False),              # no left boundary
    ([0, 1, 2], 0, MAX, 2, [0, 1], False),       # full page; an extra in-range leaf after it is not allowed...
    ([0, 1], 0, MAX, 2, [0, 1], True),           # ...but a full page needs no right edge
    ([0, 1, 2], 0, MAX, 3, [0, 1], False),       # a page that hides an in-range leaf
    ([0, 1, 2, 3], 0, 1020, 2, [0, 1, 2], False),  # more than the limit
    ([], 0, MAX, 10, [], False),                 # empty proof, non-empty timeline
])
def test_list_edges(timeline_node, pos, since, until, limit, ret, ok):
    f = timeline_node
    proof = f.time_proof(pos)
    args = (proof, f.namespace, f.node_id, since, until, None, limit, [R(f, i) for i in ret])
    if ok:
        verify_list(*args)
    else:
        with pytest.raises(VerifyError):
            verify_list(*args)


def test_list_full_page_with_extra_leaf(timeline_node):
    f = timeline_node
    # A full page (2 of limit 2) followed by a third in-range leaf: rejected.
    with pytest.raises(VerifyError):
        verify_list(f.time_proof([0, 1, 2]), f.namespace, f.node_id, 0, MAX, None, 2, [R(f, 0), R(f, 1)])


def test_list_empty_namespace():
    f = FakeNode(seed=5)
    verify_list(f.time_proof([]), f.namespace, f.node_id, 0, MAX, None, 10, [])
    with pytest.raises(VerifyError):
        verify_list(f.time_proof([]), f.namespace, f.node_id, 0, MAX, None, 10, [(b"\x00" * 32, b"")])


# ------------------------------------------------------------------ Recall


def file_of(f, kind, proof, ret, scores=None, **kw):
    items = [(i, r, None if scores is None else struct.unpack(">I", struct.pack(">f", s))[0])
             for (i, r), s in zip(ret, scores or [None] * len(ret))]
    return encode_proof_file(ProofFile(2, kind, f.namespace, items, proof, **kw))


@pytest.mark.parametrize("mode", [MODE_GRAPH, MODE_EXACT])
def test_recall_honest(graph_node, mode):
    f = graph_node
    q = bytes(range(1, 9))
    parts, ret, sc = f.recall(q, 5, 8, mode)
    v = verify_recall(f.encode_recall(parts), f.namespace, f.node_id, 5, 0, ret, sc)
    assert v.ids == [i for i, _ in ret] and v.scores == sc and v.mode == mode


def test_recall_tampers(graph_node):
    f = graph_node
    q = bytes(range(1, 9))
    parts, ret, sc = f.recall(q, 5, 8, MODE_GRAPH)
    proof = f.encode_recall(parts)

    def bad(*a):
        with pytest.raises(VerifyError):
            verify_recall(*a)

    bad(proof, f.namespace, f.node_id, 6, 0, ret, sc)                    # k differs
    bad(proof, f.namespace, f.node_id, 5, 9, ret, sc)                    # ef below the minimum
    bad(proof, f.namespace, f.node_id, 5, 0, [ret[1], ret[0]] + ret[2:], [sc[1], sc[0]] + sc[2:])
    bad(proof, f.namespace, f.node_id, 5, 0, ret[:-1], sc[:-1])
    up = float(np.nextafter(np.float32(sc[0]), np.float32(2)))
    bad(proof, f.namespace, f.node_id, 5, 0, ret, [up] + sc[1:])          # one ulp off
    read = [x for x, r in parts["nodes"] if r]
    bad(f.encode_recall(dict(parts, nodes=[(x, False if x == read[-1] else r) for x, r in parts["nodes"]])),
        f.namespace, f.node_id, 5, 0, ret, sc)                            # lists missing
    touched = [x for x, r in parts["nodes"] if not r]
    bad(f.encode_recall(dict(parts, nodes=[(x, r) for x, r in parts["nodes"] if x != touched[-1]])),
        f.namespace, f.node_id, 5, 0, ret, sc)                            # node missing
    for over in (dict(quantiser=2), dict(distance=2), dict(dim=9)):
        bad(f.encode_recall(dict(parts, root=f.signed_root(**over))), f.namespace, f.node_id, 5, 0, ret, sc)
    # Extra nodes (untouched, or with lists not read) are tolerated.
    extra = [n.node for n in f.nodes if n.node not in {x for x, _ in parts["nodes"]}][0]
    verify_recall(f.encode_recall(dict(parts, nodes=sorted(parts["nodes"] + [(extra, True)]))),
                  f.namespace, f.node_id, 5, 0, ret, sc)


def test_recall_min_ef_only_binds_graph_mode(graph_node):
    f = graph_node
    parts, ret, sc = f.recall(bytes(8), 3, 4, MODE_EXACT)
    verify_recall(f.encode_recall(parts), f.namespace, f.node_id, 3, 1000, ret, sc)


def test_recall_zero_distance_scores_are_negative_zero(graph_node):
    f = graph_node
    parts, ret, sc = f.recall(bytes(8), 4, 4, MODE_EXACT)
    assert all(struct.pack(">f", s) == b"\x80\x00\x00\x00" for s in sc)
    proof = f.encode_recall(parts)
    verify_recall(proof, f.namespace, f.node_id, 4, 0, ret, [-0.0] * 4)
    with pytest.raises(VerifyError):
        verify_recall(proof, f.namespace, f.node_id, 4, 0, ret, [0.0] * 4)


def test_score_rounds_distance_to_f32_first():
    d = -(2**24 + 1)  # not an f32: rounds to 2^24 before the division
    assert score_of(d) == float(np.float32(2**24) / np.float32(16129))
    assert score_of(0) == 0.0 and str(score_of(0)) == "-0.0"


def test_recall_tombstones():
    f = FakeNode(seed=13, dim=8)
    for i in range(20):
        f.add(f"m{i}", 1000 + i)
    f.forget(f.nodes[3].id)
    parts, ret, sc = f.recall(bytes(range(8)), 5, 5, MODE_EXACT)
    verify_recall(f.encode_recall(parts), f.namespace, f.node_id, 5, 0, ret, sc)
    for field, value in (("id", b"\x01" * 32), ("created_at", 5), ("vector", bytes([1] + [0] * 7)), ("alive", 2)):
        g = FakeNode(seed=13, dim=8)
        for i in range(20):
            g.add(f"m{i}", 1000 + i)
        g.forget(g.nodes[3].id)
        setattr(g.nodes[3], field, value)
        p, r, s = g.recall(bytes(range(8)), 5, 5, MODE_EXACT)
        with pytest.raises(VerifyError):
            verify_recall(g.encode_recall(p), g.namespace, g.node_id, 5, 0, r, s)


def test_recall_k_zero_and_caps(graph_node):
    f = graph_node
    for k in (0, 1001):
        parts, ret, sc = f.recall(bytes(8), k, 4, MODE_EXACT)
        with pytest.raises(VerifyError):
            verify_recall(f.encode_recall(parts), f.namespace, f.node_id, k, 0, ret, sc)


def test_recall_empty_graph():
    f = FakeNode(seed=16)
    for mode in (MODE_GRAPH, MODE_EXACT):
        parts, ret, sc = f.recall(bytes(8), 3, 4, mode)
        assert ret == []
        verify_recall(f.encode_recall(parts), f.namespace, f.node_id, 3, 0, ret, sc)


def test_recall_answer_matches_prover_on_many_graphs():
    import random
    rng = random.Random(9)
    for _ in range(25):
        f = FakeNode(seed=rng.randrange(10**6), dim=rng.choice([2, 5, 8]), M=3, M0=6)
        for i in range(rng.choice([1, 10, 40])):
            f.add(f"m{i}", 1000 + rng.randrange(20))
        k, ef = rng.randint(1, 6), rng.choice([0, 3, 12])
        parts, ret, sc = f.recall(f.random_vector(), k, ef, MODE_GRAPH)
        _, ans = recall_answer(f.encode_recall(parts), f.namespace, f.node_id, k, 0)
        assert [nd.id for _, nd, _ in ans] == [i for i, _ in ret]


# ------------------------------------------------------------------ files and the cross-check runner


def test_proof_file_versions(timeline_node):
    f = timeline_node
    proof, ret = f.get([R(f, 2)[0]])
    data = file_of(f, "get", proof, ret)
    assert data[:8] == b"CAIRNPF2"
    v = verify_proof_file(data, f.node_id)
    assert v.kind == "get"
    pf = decode_proof_file(data)
    pf.version = 1
    data1 = encode_proof_file(pf)
    assert data1[:8] == b"CAIRNPF1"
    assert decode_proof_file(data1).cosigs == []
    verify_proof_file(data1, f.node_id)
    with pytest.raises(VerifyError, match="checksum"):
        verify_proof_file(data[:-33] + bytes([data[-33] ^ 1]) + data[-32:], f.node_id)


def test_crosscheck_runner(tmp_path, timeline_node, capsys):
    f = timeline_node
    proof, ret = f.get([R(f, 2)[0]])
    good = file_of(f, "get", proof, ret)
    (tmp_path / "a.cpf").write_bytes(good)
    (tmp_path / "b.cpf").write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    manifest = {"version": 1, "node_ids": {"n": f.node_id.hex()}, "pinned_witnesses": [], "cases": [
        {"file": "a.cpf", "node": "n", "kind": "get", "honest": True, "tamper": "", "accept": True,
         "witnesses": 0, "error": ""},
        {"file": "b.cpf", "node": "n", "kind": "get", "honest": False, "tamper": "flip", "accept": False,
         "witnesses": None, "error": "checksum"},
    ]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert crosscheck_run(str(tmp_path), show_time=True) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("cross-check: 2 cases (1 honest, 1 tampered) compared, 0 disagreements")
    manifest["cases"][1]["accept"] = True
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert crosscheck_run(str(tmp_path)) == 1
    manifest["cases"] = []
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert crosscheck_run(str(tmp_path)) == 1
