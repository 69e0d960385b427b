"""Verified reads (`verify=True`) against real nodes: accepted answers, tampered answers rejected, and the
freshness rule (rollback, equivocation, broken root chain) with roots that real nodes signed."""

from __future__ import annotations

import json

import pytest

import cairn
from cairn import CairnClient, ConfigError, NewMemory, PinStore, VerificationError
from cairn.v1 import cairn_pb2 as pb

FACTS = [
    "Alice prefers green tea to coffee.",
    "Bob drives a red bicycle to work.",
    "The server room is on the third floor.",
    "Carol's birthday is on the 3rd of May.",
    "The wifi password is written on the fridge.",
]


def copy(msg):
    out = type(msg)()
    out.CopyFrom(msg)
    return out


def raw_recall(c: CairnClient, ns: str, query: str, k: int = 10) -> pb.RecallResponse:
    return c.raw.Recall(pb.RecallRequest(namespace=ns, text=query, k=k, proof=True, mode=pb.RECALL_MODE_SEMANTIC), metadata=c.call_metadata)


def raw_get(c: CairnClient, ns: str, ids=(), keys=()) -> pb.GetResponse:
    return c.raw.Get(pb.GetRequest(namespace=ns, ids=list(ids), keys=list(keys), proof=True), metadata=c.call_metadata)


def raw_list(c: CairnClient, ns: str, limit: int = 0, page_token: str = "") -> pb.ListResponse:
    return c.raw.List(pb.ListRequest(namespace=ns, limit=limit, page_token=page_token, proof=True),
                      metadata=c.call_metadata)


@pytest.fixture
def filled(client, ns):
    ids = [r.id for r in client.remember(ns, [NewMemory(t, {"n": str(i)}, created_at=1_000 + i)
                                             for i, t in enumerate(FACTS)])]
    return ns, ids


def test_verified_reads_are_accepted(node, client, filled, tmp_path):
    ns, ids = filled
    root = client.root(ns)
    hits = client.recall(ns, "what does Alice drink?", k=3, verify=True)
    v = hits.verification
    assert hits[0].id == ids[0] and len(hits) == 3
    assert (v.namespace, v.seq, v.root_hash, v.node_id, v.witnesses) == (ns, root.seq, root.hash, node.node_id, 0)
    assert v.root.seq == root.seq and v.root.hash.hex() == root.hash
    assert all(h.record for h in hits)  # record bytes come with a proof

    got = client.get(ns, ids=[ids[1], ids[3], "0" * 64], verify=True)
    assert [m.id for m in got] == [ids[1], ids[3]] and got.missing == ["0" * 64]
    assert got.verification.seq == root.seq

    page = client.list(ns, limit=2, verify=True)
    assert [m.id for m in page] == ids[:2] and page.verification.seq == root.seq
    page2 = client.list(ns, limit=2, page_token=page.next_page_token, verify=True)
    assert [m.id for m in page2] == ids[2:4]
    ranged = client.list(ns, since=1_001, until=1_003, verify=True)
    assert [m.id for m in ranged] == ids[1:3]
    assert [m.id for m in client.iter_memories(ns, page_size=2, verify=True)] == ids
    assert client.recall(ns, "bicycle", k=1, exact=True, verify=True)[0].id == ids[1]
    assert client.recall(ns, "bicycle", k=2, ef=50, verify=True)[0].id == ids[1]
    assert client.recall(ns, vector=client.embed("floor of the server room").vectors[0], k=1,
                         verify=True)[0].id == ids[2]

    # The trusted node id was pinned on first use from NodeInfo.
    assert client.pins.node_id(client.url) == node.node_id
    assert client.trusted_node_id(ns) == node.node_id
    # An explicit node id works the same.
    with node.client(node_id=node.node_id) as c2:
        assert c2.recall(ns, "tea", k=1, verify=True).verification.node_id == node.node_id


def test_verified_get_by_key(client, ns):
    first = client.remember(ns, "Dave likes jazz.", key="dave/music")[0]
    second = client.remember(ns, "Dave now likes techno.", key="dave/music")[0]
    assert second.replaced == first.id
    got = client.get(ns, keys=["dave/music", "nobody"], verify=True)
    assert [m.id for m in got] == [second.id] and got[0].key == "dave/music" and got.missing == ["nobody"]
    assert got.verification.seq == 2  # the replace is one commit

    resp = raw_get(client, ns, keys=["dave/music"])
    bad = copy(resp)
    bad.memories[0].key = "someone/else"  # shown with another key than its record carries
    with pytest.raises(VerificationError, match="key"):
        client.verify_get_response(ns, bad, keys=["dave/music"])
    bad = copy(resp)
    del bad.memories[:]  # the asked key is neither returned nor reported missing (and the proof disagrees)
    with pytest.raises(VerificationError):
        client.verify_get_response(ns, bad, keys=["dave/music"])
    bad = copy(resp)
    bad.memories[0].metadata["cairn.key"] = "someone/else"
    bad.memories[0].key = "someone/else"
    with pytest.raises(VerificationError):
        client.verify_get_response(ns, bad, keys=["someone/else"])
    assert client.verify_get_response(ns, resp, keys=["dave/music"]).seq == 2


async def test_async_verified_reads(node, filled):
    ns, ids = filled
    async with node.aclient() as c:
        hits = await c.recall(ns, "birthday", k=2, verify=True)
        assert hits[0].id == ids[3] and hits.verification.node_id == node.node_id
        got = await c.get(ns, ids=ids[:2], verify=True)
        assert got.verification.seq == hits.verification.seq
        page = await c.list(ns, verify=True)
        assert [m.id for m in page] == ids
        resp = raw_recall(node.client(), ns, "birthday", k=2)
        bad = copy(resp)
        bad.hits[0].text = "Carol's birthday is in June."
        with pytest.raises(VerificationError):
            await c.verify_recall_response(ns, bad, k=2)


def _tamper_cases_recall(resp: pb.RecallResponse):
    def text(r):
        r.hits[0].text = "Alice prefers coffee."

    def drop(r):
        del r.hits[1]

    def drop_last(r):
        del r.hits[-1]

    def swap(r):
        a, b = copy(r.hits[0]), copy(r.hits[1])
        r.hits[0].CopyFrom(b)
        r.hits[1].CopyFrom(a)

    def score(r):
        r.hits[0].score = r.hits[0].score + 0.01

    def metadata(r):
        r.hits[0].metadata["n"] = "99"

    def created_at(r):
        r.hits[0].created_at += 1

    def record(r):
        rec = bytearray(r.hits[0].record)
        rec[-1] ^= 1
        r.hits[0].record = bytes(rec)

    def record_and_id(r):  # a consistent (id, record) pair that the proof does not hold
        from cairn.verifier import decode_record, encode_record, record_id

        rec = decode_record(r.hits[0].record)
        rec.text = "Alice prefers coffee."
        raw = encode_record(rec)
        r.hits[0].record, r.hits[0].text, r.hits[0].id = raw, rec.text, record_id(raw).hex()

    def id_(r):
        r.hits[0].id = r.hits[1].id

    def namespace(r):
        r.hits[0].namespace = "t/elsewhere"

    def key(r):
        r.hits[0].key = "made-up"

    def proof_byte(r):
        p = bytearray(r.proof)
        p[len(p) // 2] ^= 0x40
        r.proof = bytes(p)

    def no_proof(r):
        r.proof = b""

    def duplicate(r):
        r.hits.append(copy(r.hits[0]))

    return [text, drop, drop_last, swap, score, metadata, created_at, record, record_and_id, id_, namespace, key,
            proof_byte, no_proof, duplicate]


def test_tampered_recall_rejected(client, filled):
    ns, _ = filled
    resp = raw_recall(client, ns, "what does Alice drink?", k=3)
    assert client.verify_recall_response(ns, resp, k=3).seq >= 1  # untouched: accepted
    for tamper in _tamper_cases_recall(resp):
        bad = copy(resp)
        tamper(bad)
        with pytest.raises(VerificationError):
            client.verify_recall_response(ns, bad, k=3)
            pytest.fail(f"tampered answer ({tamper.__name__}) accepted")
    # Asked for another k than the proof's, or for another namespace.
    with pytest.raises(VerificationError, match="k"):
        client.verify_recall_response(ns, resp, k=4)
    with pytest.raises(VerificationError):
        client.verify_recall_response(ns + "-other", resp, k=3)


def test_tampered_get_and_list_rejected(client, filled):
    ns, ids = filled
    g = raw_get(client, ns, ids=ids[:3])
    client.verify_get_response(ns, g, ids=ids[:3])
    cases = {
        "text": lambda r: setattr(r.memories[0], "text", "changed"),
        "drop": lambda r: r.memories.__delitem__(1),
        "drop into missing": lambda r: (r.memories.__delitem__(1), r.missing.append(ids[1])),
        "metadata": lambda r: r.memories[0].metadata.__setitem__("n", "7"),
        "namespace": lambda r: setattr(r.memories[0], "namespace", "t/other"),
        "created_at": lambda r: setattr(r.memories[0], "created_at", 5),
    }
    for name, tamper in cases.items():
        bad = copy(g)
        tamper(bad)
        with pytest.raises(VerificationError):
            client.verify_get_response(ns, bad, ids=ids[:3])
            pytest.fail(f"tampered Get ({name}) accepted")
    # A memory nobody asked for, slipped in with its genuine proof.
    with pytest.raises(VerificationError, match="not asked"):
        client.verify_get_response(ns, g, ids=ids[:2])

    page = raw_list(client, ns, limit=4)
    client.verify_list_response(ns, page, limit=4)
    for name, tamper in {
        "drop middle": lambda r: r.memories.__delitem__(1),
        "drop last": lambda r: r.memories.__delitem__(-1),
        "text": lambda r: setattr(r.memories[2], "text", "changed"),
        "reorder": lambda r: r.memories.reverse(),
    }.items():
        bad = copy(page)
        tamper(bad)
        with pytest.raises(VerificationError):
            client.verify_list_response(ns, bad, limit=4)
            pytest.fail(f"tampered List ({name}) accepted")
    # A page that is complete for limit 4 is not complete for limit 5 (the fifth memory was left out).
    with pytest.raises(VerificationError):
        client.verify_list_response(ns, page, limit=5)
    # Nor for another range.
    with pytest.raises(VerificationError):
        client.verify_list_response(ns, page, since=1_001, limit=4)


def test_wrong_trusted_node_rejected(node, filled):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    ns, ids = filled
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    with node.client(node_id=other) as c:
        with pytest.raises(VerificationError):
            c.recall(ns, "tea", verify=True)
        with pytest.raises(VerificationError):
            c.get(ns, ids=ids[:1], verify=True)
        with pytest.raises(VerificationError):
            c.list(ns, verify=True)
    # A node id pinned in the pins file (first use) is used from then on.
    pins = PinStore()
    pins.pin_node_id(node.url, other)
    with node.client(pins=pins) as c, pytest.raises(VerificationError):
        c.recall(ns, "tea", verify=True)


def test_witness_requirements(node, filled):
    ns, _ = filled
    with pytest.raises(ConfigError):
        node.client(min_witnesses=1)
    with node.client(witnesses=["ab" * 32], min_witnesses=1) as c, pytest.raises(VerificationError, match="witness"):
        c.recall(ns, "tea", verify=True)
    with node.client(witnesses=["ab" * 32]) as c:
        assert c.recall(ns, "tea", verify=True).verification.witnesses == 0


def test_rollback_of_a_saved_answer_rejected(node, client, filled, tmp_path):
    """An older answer, replayed after a newer root was accepted, is a rollback: rejected, also by another
    client reading the same pins file."""
    ns, _ = filled
    pins_path = tmp_path / "pins.json"
    with node.client(pins_path=pins_path) as c:
        old = raw_recall(c, ns, "tea", k=2)
        old_get = raw_get(c, ns, ids=[c.list(ns)[0].id])
        v_old = c.verify_recall_response(ns, old, k=2)
        c.remember(ns, "Erin collects stamps.")
        c.remember(ns, "Frank speaks four languages.")
        v_new = c.recall(ns, "stamps", k=2, verify=True).verification
        assert v_new.seq == v_old.seq + 2  # the root in between was fetched and the chain checked
        with pytest.raises(VerificationError, match="rollback"):
            c.verify_recall_response(ns, old, k=2)
        with pytest.raises(VerificationError, match="rollback"):
            c.verify_get_response(ns, old_get, ids=[m.id for m in old_get.memories])

    state = json.loads(pins_path.read_text())
    assert state["nodes"][node.url] == node.node_id
    assert state["roots"][f"{node.node_id}/{ns}"] == {"seq": v_new.seq, "hash": v_new.root_hash}
    with node.client(pins_path=pins_path) as c2, pytest.raises(VerificationError, match="rollback"):
        c2.verify_recall_response(ns, old, k=2)
    # The same answer is fine for a client that has not seen anything newer.
    with node.client() as fresh:
        assert fresh.verify_recall_response(ns, old, k=2).seq == v_old.seq


def test_pin_store_rules(tmp_path):
    node_id, ns = "cd" * 32, "t/pins"
    h1, h2 = b"\x01" * 32, b"\x02" * 32
    path = tmp_path / "sub" / "pins.json"
    s = PinStore(path)
    s.accept(node_id, ns, 5, h1)
    s.accept(node_id, ns, 5, h1)  # the same root again: fine
    with pytest.raises(VerificationError, match="equivocation"):
        s.accept(node_id, ns, 5, h2)
    with pytest.raises(VerificationError, match="rollback"):
        s.accept(node_id, ns, 4, h2)
    s.accept(node_id, "t/other", 1, h2)  # namespaces are separate
    s.accept("ef" * 32, ns, 1, h2)  # and so are nodes
    s.accept(node_id, ns, 6, h2)
    assert PinStore(path).last_seen(node_id, ns) == cairn.pins.SeenRoot(6, h2)
    with pytest.raises(VerificationError, match="rollback"):
        PinStore(path).check(node_id, ns, 5, h1)
    assert not list(path.parent.glob("*.tmp"))  # atomic writes leave no temp file
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="damaged"):
        PinStore(path)


def test_cli_and_sdk_share_the_pins_file(node, client, filled, tmp_path):
    """The pins file has the CLI's roots.json shape: a root the CLI accepted makes the SDK reject an older one."""
    ns, _ = filled
    old = raw_recall(client, ns, "tea", k=1)
    client.remember(ns, "Gina plays the cello.")
    state = tmp_path / "roots.json"
    out = node.cli("recall", "--ns", ns, "--verify", "cello", json_out=True, env={"CAIRN_STATE": str(state)})
    seq = out["verified"]["seq"]
    saved = json.loads(state.read_text())
    assert saved["roots"][f"{node.node_id}/{ns}"]["seq"] == seq
    with node.client(pins_path=state) as c:
        assert c.pins.node_id(node.url) == node.node_id  # pinned by the CLI
        with pytest.raises(VerificationError, match="rollback"):
            c.verify_recall_response(ns, old, k=1)
        assert c.recall(ns, "cello", verify=True).verification.seq == seq


@pytest.fixture(scope="module")
def forked(node_factory, tmp_path_factory):
    """Two nodes with one identity: a data dir copied while stopped, each copy then writing on its own. Both
    sign different roots for the same seq of one namespace, as a node restored from a backup would."""
    ns = "t/forked"
    a = node_factory()
    with a.client() as c:
        c.remember(ns, "Written before the copy.")
    a.stop()
    b_dir = a.copy_data_dir(tmp_path_factory.mktemp("fork") / "data")
    a.start()
    b = node_factory(data_dir=b_dir)
    assert a.node_id == b.node_id
    with a.client() as ca, b.client() as cb:
        va = ca.remember(ns, "Written on A after the copy.")
        vb = cb.remember(ns, "Written on B after the copy.")
        ra, rb = ca.root(ns), cb.root(ns)
    assert va[0].id != vb[0].id and ra.seq == rb.seq == 2 and ra.hash != rb.hash
    return a, b, ns


def test_equivocation_between_two_nodes_rejected(forked):
    a, b, ns = forked
    pins = PinStore()
    with a.client(pins=pins, node_id=a.node_id) as ca, b.client(pins=pins, node_id=a.node_id) as cb:
        va = ca.recall(ns, "written", k=2, verify=True).verification
        assert va.seq == 2
        # B's answer verifies on its own (a valid signature by the same key)...
        with b.client(node_id=a.node_id) as alone:
            assert alone.recall(ns, "written", k=2, verify=True).verification.seq == 2
        # ...but it is a second root for seq 2: equivocation.
        with pytest.raises(VerificationError, match="equivocation"):
            cb.recall(ns, "written", k=2, verify=True)
        with pytest.raises(VerificationError, match="equivocation"):
            cb.get(ns, ids=[m.id for m in cb.list(ns)], verify=True)
        with pytest.raises(VerificationError, match="equivocation"):
            cb.list(ns, verify=True)


def test_fork_caught_by_rollback_and_by_the_root_chain(forked):
    a, b, ns = forked
    with a.client() as ca:
        ca.remember(ns, f"Another write on A ({ca.root(ns).seq}).")
    with b.client() as cb:
        cb.remember(ns, f"Another write on B ({cb.root(ns).seq}).")
        cb.remember(ns, f"One more write on B ({cb.root(ns).seq}).")
    seq_a, seq_b = a.client().root(ns).seq, b.client().root(ns).seq
    assert seq_b == seq_a + 1

    # Seen B's newer root: A's older one is a rollback.
    pins = PinStore()
    with b.client(pins=pins, node_id=b.node_id) as cb, a.client(pins=pins, node_id=a.node_id) as ca:
        cb.recall(ns, "write", verify=True)
        with pytest.raises(VerificationError, match="rollback"):
            ca.recall(ns, "write", verify=True)

    # Seen A's root: B's next root does not link to it (its prev is B's own root for that seq).
    pins = PinStore()
    with a.client(pins=pins, node_id=a.node_id) as ca, b.client(pins=pins, node_id=a.node_id) as cb:
        assert ca.recall(ns, "write", verify=True).verification.seq == seq_a
        with pytest.raises(VerificationError, match="link"):
            cb.recall(ns, "write", verify=True)


# ------------------------------------------- lexical, hybrid and filtered Recall (CPX1, CPF1)

# Words of every fact, so that a lexical Recall has more than one hit.
MANY = "tea bicycle floor birthday fridge"


def raw_recall_as(c: CairnClient, ns: str, query: str, k: int = 10, mode: str | None = None, where=None,
                  since=None, until=None, depth: int = 0) -> pb.RecallResponse:
    req = cairn._proto.recall_request(ns, query, k, where, since, until, proof=True, mode=mode, depth=depth)
    return c.raw.Recall(req, metadata=c.call_metadata)


class Intercepted:
    """Puts `on_recall(req, send) -> response` between a sync client and its node for Recall: `send(req)` asks
    the real node (the request may be changed first), and the response may be changed before the client
    checks it, as a lying node would."""

    def __init__(self, c: CairnClient, on_recall):
        self.c, self.on_recall = c, on_recall

    def __enter__(self):
        orig = self.c._call

        def call(method, req):
            if method == "Recall":
                return self.on_recall(copy(req), lambda r: orig(method, r))
            return orig(method, req)

        self.c._call = call
        return self.c

    def __exit__(self, *exc):
        del self.c._call


@pytest.fixture
def teams(client, ns):
    """FACTS with metadata n (their index) and team (a for even, b for odd), created_at 1000 + n."""
    ids = [r.id for r in client.remember(ns, [NewMemory(t, {"n": str(i), "team": "ab"[i % 2]}, created_at=1_000 + i)
                                             for i, t in enumerate(FACTS)])]
    return ns, ids


def test_verified_lexical_and_hybrid_recall(node, client, filled):
    ns, ids = filled
    root = client.root(ns)
    for mode in ("hybrid", "lexical", "semantic"):
        hits = client.recall(ns, "what does Alice drink?", k=3, mode=mode, verify=True)
        v = hits.verification
        assert hits[0].id == ids[0] and v.mode == mode, mode
        assert (v.namespace, v.seq, v.root_hash, v.node_id) == (ns, root.seq, root.hash, node.node_id)
        assert [h.id for h in hits] == [h.id for h in client.recall(ns, "what does Alice drink?", k=3, mode=mode)]
    # Without a mode, the node's default (hybrid) is what gets proven.
    default = client.recall(ns, "what does Alice drink?", k=3, verify=True)
    assert default.verification.mode == "hybrid" and default[0].id == ids[0]
    lex = client.recall(ns, MANY, k=3, mode="lexical", verify=True)
    assert len(lex) == 3 and all(h.score > 0 for h in lex)
    # Depth, exact search and ef go with the proof.
    assert client.recall(ns, "bicycle", k=2, mode="hybrid", depth=4, verify=True)[0].id == ids[1]
    assert client.recall(ns, "bicycle", k=2, mode="hybrid", exact=True, verify=True)[0].id == ids[1]
    assert client.recall(ns, "bicycle", k=2, mode="hybrid", ef=40, verify=True)[0].id == ids[1]
    # A vector question is semantic, by default too.
    vec = client.recall(ns, vector=client.embed("floor of the server room").vectors[0], k=1, verify=True)
    assert vec[0].id == ids[2] and vec.verification.mode == "semantic"


def test_verified_filtered_recall(client, teams):
    ns, ids = teams
    team_a = [ids[0], ids[2], ids[4]]
    for mode in (None, "semantic", "hybrid", "lexical"):
        hits = client.recall(ns, MANY, k=10, mode=mode, where={"team": "a"}, verify=True)
        assert hits.verification.mode == (mode or "hybrid")
        assert all(h.metadata["team"] == "a" for h in hits)
        if mode == "lexical":  # BM25: the memories with a word of the query
            assert set(h.id for h in hits) <= set(team_a) and hits
        else:
            assert sorted(h.id for h in hits) == sorted(team_a), mode
        # The verified answer holds what the answer asked without a proof holds (with a proof, the order is
        # the proof search's, int8 distances).
        assert sorted(h.id for h in hits) == sorted(h.id for h in client.recall(ns, MANY, k=10, mode=mode,
                                                                                where={"team": "a"}))
    # A time range (since inclusive, until exclusive), alone and with a pair.
    ranged = client.recall(ns, "what does Alice drink?", k=10, since=1_001, until=1_004, verify=True)
    assert sorted(h.id for h in ranged) == sorted(ids[1:4]) and all(1_001 <= h.created_at < 1_004 for h in ranged)
    both = client.recall(ns, "what does Alice drink?", k=10, mode="semantic", where={"team": "b"}, since=1_002,
                         verify=True)
    assert [h.id for h in both] == [ids[3]]
    two = client.recall(ns, "birthday", k=10, mode="semantic", where={"team": "b", "n": "1"}, verify=True)
    assert [h.id for h in two] == [ids[1]]
    # Nothing passes: an empty answer, proven.
    none = client.recall(ns, "tea", where={"team": "c"}, verify=True)
    assert none == [] and none.verification.seq == client.root(ns).seq
    assert client.recall(ns, "tea", until=1_000, mode="lexical", verify=True) == []
    # The top k of the memories that pass, not of all of them.
    top = client.recall(ns, "what does Alice drink?", k=1, mode="semantic", where={"team": "b"}, verify=True)
    assert len(top) == 1 and top[0].id in (ids[1], ids[3])


async def test_async_verified_modes_and_filters(node, teams):
    ns, ids = teams
    async with node.aclient() as c:
        hyb = await c.recall(ns, "birthday", k=2, mode="hybrid", verify=True)
        assert hyb[0].id == ids[3] and hyb.verification.mode == "hybrid" and hyb.verification.node_id == node.node_id
        lex = await c.recall(ns, "birthday", k=2, mode="lexical", verify=True)
        assert [h.id for h in lex] == [ids[3]] and lex.verification.mode == "lexical"
        flt = await c.recall(ns, "birthday", k=10, where={"team": "b"}, since=1_001, until=1_003, verify=True)
        assert [h.id for h in flt] == [ids[1]] and flt.verification.seq == hyb.verification.seq
        resp = raw_recall_as(node.client(), ns, MANY, k=3, mode="lexical", where={"team": "a"})
        assert (await c.verify_recall_response(ns, resp, k=3, query=MANY, mode="lexical",
                                               where={"team": "a"})).mode == "lexical"
        bad = copy(resp)
        bad.hits[0].score += 0.01
        with pytest.raises(VerificationError):
            await c.verify_recall_response(ns, bad, k=3, query=MANY, mode="lexical", where={"team": "a"})
        with pytest.raises(VerificationError, match="filter"):  # the node's filter is not the one asked
            await c.verify_recall_response(ns, resp, k=3, query=MANY, mode="lexical", where={"team": "b"})


def root_byte(r):
    """Flips a byte of the proof's signed root."""
    p = bytearray(r.proof)
    p[12] ^= 0x01
    r.proof = bytes(p)


def test_tampered_lexical_hybrid_and_filtered_recall_rejected(client, teams):
    ns, _ = teams
    cases = [
        (MANY, "lexical", {}),
        ("what does Alice drink?", "hybrid", {}),
        (MANY, "lexical", {"where": {"team": "a"}}),
        ("what does Alice drink?", "hybrid", {"since": 1_001, "until": 1_004}),
        ("what does Alice drink?", "semantic", {"where": {"team": "a"}, "until": 1_004}),
    ]
    for query, mode, flt in cases:
        resp = raw_recall_as(client, ns, query, k=3, mode=mode, **flt)
        assert len(resp.hits) >= 2, (query, mode, flt)
        assert client.verify_recall_response(ns, resp, k=3, query=query, mode=mode, **flt).mode == mode
        for tamper in _tamper_cases_recall(resp) + [root_byte]:
            if tamper.__name__ == "proof_byte" and mode == "hybrid":
                # The proof's middle byte can fall in the quantised query vector, which nothing binds to the
                # question's text (CPX1 binds the terms, not the vector); a small change there can leave the
                # fused ranking, and so the answer, unchanged.
                continue
            bad = copy(resp)
            tamper(bad)
            with pytest.raises(VerificationError):
                client.verify_recall_response(ns, bad, k=3, query=query, mode=mode, **flt)
                pytest.fail(f"tampered {mode} answer {flt} ({tamper.__name__}) accepted")
        # Checked for another question than the one it answers: another k, mode, query text or filter.
        wrong = [dict(k=4), dict(mode="semantic" if mode != "semantic" else "hybrid"),
                 dict(where={"team": "b"}), dict(since=1_002)]
        if mode != "semantic":
            wrong.append(dict(query="where is the server room?"))
        if flt:
            wrong.append(dict(where=None, since=None, until=None))
        for w in wrong:
            args = dict(k=3, query=query, mode=mode, **flt)
            args.update(w)
            with pytest.raises(VerificationError):
                client.verify_recall_response(ns, resp, **args)
                pytest.fail(f"{mode} answer {flt} accepted for {w}")


def test_lying_node_rejected_by_verified_recall(client, teams):
    """recall(verify=True) through a node that answers another question than the one asked, or changes its
    answer: each is rejected; the untouched path is accepted."""
    ns, ids = teams

    def forward(change_req=None, change_resp=None):
        def on_recall(req, send):
            if change_req:
                change_req(req)
            resp = copy(send(req))
            if change_resp:
                change_resp(resp)
            return resp
        return on_recall

    with Intercepted(client, forward()) as c:
        assert c.recall(ns, MANY, k=3, mode="lexical", where={"team": "a"}, verify=True).verification.mode == "lexical"

    def drop_filter(req):
        req.ClearField("filter")

    def other_pair(req):
        req.filter.metadata["team"] = "b"

    def wider_range(req):
        req.filter.since = 0

    def other_query(req):
        req.text = "where is the server room?"

    def to_hybrid(req):
        req.mode = pb.RECALL_MODE_HYBRID

    def to_semantic(req):
        req.mode = pb.RECALL_MODE_SEMANTIC

    def shallow(req):
        req.depth = req.k

    def drop_hit(resp):
        del resp.hits[-1]

    def score(resp):
        resp.hits[0].score += 0.01

    def claim_lexical(resp):
        resp.mode = pb.RECALL_MODE_LEXICAL

    def claim_semantic(resp):
        resp.mode = pb.RECALL_MODE_SEMANTIC

    cases = [
        # (what was asked, how the node lies, what the error says)
        (dict(mode="lexical", where={"team": "a"}), forward(drop_filter), None),
        (dict(mode="hybrid", where={"team": "a"}), forward(other_pair), "filter"),
        (dict(mode="semantic", since=1_002), forward(wider_range), "filter"),
        (dict(since=1_001), forward(drop_filter), None),
        (dict(mode="lexical"), forward(other_query), "terms"),
        (dict(mode="hybrid", where={"team": "a"}), forward(other_query), "terms"),
        (dict(mode="lexical"), forward(to_hybrid), "mode"),
        (dict(mode="hybrid"), forward(to_semantic), "mode"),
        (dict(mode="lexical", where={"team": "a"}), forward(to_hybrid), "mode"),
        (dict(mode="hybrid", depth=20), forward(shallow), "candidates"),
        (dict(mode="hybrid", depth=20, where={"team": "a"}), forward(shallow), "candidates"),
        (dict(mode="hybrid"), forward(change_resp=drop_hit), None),
        (dict(mode="lexical", where={"team": "a"}), forward(change_resp=drop_hit), None),
        (dict(where={"team": "a"}), forward(change_resp=score), "score"),
        (dict(), forward(change_resp=claim_lexical), None),
        (dict(), forward(change_resp=claim_semantic), None),
        (dict(mode="hybrid"), forward(change_resp=claim_lexical), "mode"),
    ]
    for asked, lie, match in cases:
        with Intercepted(client, lie) as c, pytest.raises(VerificationError, match=match):
            c.recall(ns, MANY, k=3, verify=True, **asked)
            pytest.fail(f"{asked}: lie {lie} accepted")

    # A vector question answered with a lexical ranking (of some text) is refused.
    def text_instead(req):
        req.text = MANY
        req.mode = pb.RECALL_MODE_LEXICAL

    vec = client.embed("birthday").vectors[0]
    with Intercepted(client, forward(text_instead)) as c, pytest.raises(VerificationError, match="vector"):
        c.recall(ns, vector=vec, k=2, verify=True)
    # A hit of a memory outside the filter, slipped into a filtered answer with its genuine record.
    other = raw_recall_as(client, ns, MANY, k=3, mode="lexical", where={"team": "b"})

    def slip(resp):
        resp.hits[-1].CopyFrom(other.hits[0])

    with Intercepted(client, forward(change_resp=slip)) as c, pytest.raises(VerificationError):
        c.recall(ns, MANY, k=3, mode="lexical", where={"team": "a"}, verify=True)
    assert client.recall(ns, MANY, k=3, mode="lexical", where={"team": "a"}, verify=True)
