"""Black-box comparison with the Rust verifier: proofs made by the reference
prover (cairn.verifier.build), honest and tampered, are checked by this package
and by `cairn verify --trust` (the built binary, run as a black box). Skipped when
the binary is not there (CAIRN_BIN, or ~/.cache/cairn/target/debug/cairn)."""

import os
import random
import struct
import subprocess
from pathlib import Path

import pytest

from cairn.verifier import ProofFile, VerifyError, encode_proof_file, verify_proof_file
from cairn.verifier.build import FakeNode
from cairn.verifier.proofs import MODE_EXACT, MODE_GRAPH, recall_answer

BIN = os.environ.get("CAIRN_BIN") or str(Path.home() / ".cache/cairn/target/debug/cairn")
pytestmark = pytest.mark.skipif(not os.access(BIN, os.X_OK), reason="no cairn binary")

MAX = 2**64 - 1

# Cases where this verifier follows docs/PROOFS.md and the Rust one does not
# (see VERIFIER-NOTES.md): labels of cases expected to disagree.
KNOWN: set[str] = set()  # cases where the two verifiers are known to disagree (none since the Get fix)


@pytest.fixture(scope="module")
def rust(tmp_path_factory):
    d = tmp_path_factory.mktemp("oracle")
    env = dict(os.environ, XDG_STATE_HOME=str(d / "state"), XDG_CONFIG_HOME=str(d / "config"),
               XDG_DATA_HOME=str(d / "data"), HOME=str(d / "home"))
    counter = [0]

    def run(data: bytes, trusted: bytes) -> tuple[bool, str]:
        counter[0] += 1
        p = d / f"c{counter[0] % 8}.cpf"
        p.write_bytes(data)
        r = subprocess.run([BIN, "verify", "--json", "--trust", trusted.hex(), str(p)], capture_output=True,
                           text=True, timeout=60, env=env)
        return r.returncode == 0, r.stderr.strip()

    return run


def _file(f, kind, proof, ret, scores=None, **kw):
    items = [(i, r, None if scores is None else struct.unpack(">I", struct.pack(">f", s))[0])
             for (i, r), s in zip(ret, scores or [None] * len(ret))]
    return encode_proof_file(ProofFile(2, kind, f.namespace, items, proof, **kw))


def _cases():
    rng = random.Random(77)
    t = FakeNode(seed=3)
    for i, c in enumerate([1000, 1010, 1010, 1020, 1030, 1030, 1040]):
        t.add(f"m{i}", c)
    tl = t.timeline()
    keys = [(x.created_at, x.id) for x in tl]

    def R(i):
        return (tl[i].id, tl[i].record)

    yield "get: honest", t, _file(t, "get", t.time_proof([1, 4]), [R(4), R(1)])
    yield "get: a returned memory duplicated in place of another", t, _file(t, "get", t.time_proof([1, 4]), [R(1), R(1)])
    yield "get: empty proof", t, _file(t, "get", t.time_proof([]), [])
    for n in range(60):
        s = rng.choice([0, 1000, 1005, 1010, 1011, 1030, 1041, 2000])
        u = rng.choice([0, 1000, 1010, 1011, 1030, 1040, 1041, MAX])
        a = rng.choice([None, keys[0], keys[3], (1010, b"\xff" * 32)])
        lim = rng.choice([0, 1, 2, 3, 100])
        wa = rng.randrange(7)
        wb = rng.randrange(wa + 1, 8)
        pos = list(range(wa, wb))
        inr = [i for i in pos if s <= tl[i].created_at < u and (a is None or keys[i] > a)]
        yield f"list {n}", t, _file(t, "list", t.time_proof(pos), [R(i) for i in inr], since=s, until=u, after=a,
                                    limit=lim)
    for n in range(50):
        dim = rng.choice([1, 3, 8])
        g = FakeNode(seed=rng.randrange(10**6), dim=dim, M=3, M0=rng.choice([2, 6]))
        for i in range(rng.choice([1, 5, 30, 80])):
            g.add(f"m{i}", 1000 + i)
        for nd in list(g.nodes):
            if rng.random() < 0.1:
                g.forget(nd.id)
        k, ef = rng.randint(1, 6), rng.choice([0, 2, 10])
        mode = rng.choice([MODE_GRAPH, MODE_GRAPH, MODE_EXACT])
        parts, ret, sc = g.recall(g.random_vector(), k, ef, mode)
        if rng.random() < 0.5:
            parts["query"] = g.random_vector()
        proof = g.encode_recall(parts)
        try:
            _, ans = recall_answer(proof, g.namespace, g.node_id, k, 0)
            ret = [(nd.id, g.nodes[nd.node].record) for _, nd, _ in ans]
            sc = [s for _, _, s in ans]
        except VerifyError:
            pass
        yield f"recall {n}", g, _file(g, "recall", proof, ret, sc, k=k, min_ef=rng.choice([0, ef, ef + 1]))


def test_same_decisions_as_rust(rust):
    disagreements = []
    n = 0
    for label, f, data in _cases():
        n += 1
        r_ok, r_err = rust(data, f.node_id)
        try:
            verify_proof_file(data, f.node_id)
            p_ok, p_err = True, ""
        except VerifyError as e:
            p_ok, p_err = False, str(e)
        if (r_ok != p_ok) != (label in KNOWN):
            disagreements.append(f"{label}: rust {r_ok} {r_err} / python {p_ok} {p_err}")
    assert n > 100
    assert not disagreements, "\n".join(disagreements)
