"""The sync and asyncio clients against a real node: round trips, the new API bits (keys, Get by key, List
filtered by metadata, Recall across a prefix and without a query), errors and their classes, tokens, TLS."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest

import cairn
from cairn import (
    AsyncCairnClient,
    CairnClient,
    CairnError,
    ConfigError,
    InvalidArgument,
    NewMemory,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    TlsPinMismatch,
    Unauthenticated,
    Unavailable,
)

TEXTS = [
    "Alice prefers green tea to coffee.",
    "Bob drives a red bicycle to work every morning.",
    "The quarterly report is due on Friday.",
]


def test_sync_round_trip(client, ns):
    res = client.remember(ns, TEXTS, metadata={"src": "chat"})
    assert [r.deduplicated for r in res] == [False] * 3
    assert all(len(r.id) == 64 and r.replaced is None for r in res)

    again = client.remember(ns, TEXTS[0], metadata={"src": "chat"})
    assert again[0].deduplicated and again[0].id == res[0].id

    hits = client.recall(ns, "what does Alice like to drink?", k=2)
    assert len(hits) == 2 and hits.verification is None
    assert hits[0].id == res[0].id and hits[0].text == TEXTS[0]
    assert hits[0].namespace == ns and hits[0].metadata == {"src": "chat"} and hits[0].key is None
    assert hits[0].score >= hits[1].score > -1

    got = client.get(ns, ids=[res[1].id, "0" * 64])
    assert [m.text for m in got] == [TEXTS[1]] and got.missing == ["0" * 64] and got.unreturned == []
    assert got[0].record is None  # record bytes only come with a proof

    page = client.list(ns)
    assert sorted(m.id for m in page) == sorted(r.id for r in res) and page.next_page_token is None

    f = client.forget(ns, [res[2].id, "1" * 64])
    assert f.forgotten == [res[2].id] and f.missing == ["1" * 64]
    assert len(client.list(ns)) == 2

    # Modes: BM25 alone finds the memory with the words; verify=True checks every mode.
    lex = client.recall(ns, "bicycle morning", k=1, mode="lexical")
    assert [h.id for h in lex] == [res[1].id] and 0 < lex[0].score
    assert client.recall(ns, "Alice tea", k=1, mode="semantic")[0].id == res[0].id
    hyb = client.recall(ns, "tea", k=1, mode="hybrid", verify=True)
    assert [h.id for h in hyb] == [res[0].id] and hyb.verification.mode == "hybrid"
    with pytest.raises(ValueError):
        client.recall(ns, "tea", mode="fuzzy")
    # Lexical and hybrid take filters (ranked exactly over the memories the filter allows).
    assert [h.id for h in client.recall(ns, "tea", mode="lexical", where={"src": "chat"})] == [res[0].id]
    assert client.recall(ns, "tea", mode="lexical", where={"src": "mail"}) == []
    # A filtered Recall with verify=True is checked against its filtered (CPF1) proof.
    flt = client.recall(ns, "tea", k=1, where={"src": "chat"}, verify=True)
    assert [h.id for h in flt] == [res[0].id] and flt.verification.seq == 2
    assert client.recall(ns, "tea", where={"src": "mail"}, verify=True) == []

    info = {n.namespace: n for n in client.namespaces()}
    assert info[ns].memories == 2 and info[ns].owner is None and info[ns].seq == 2  # remember, forget (the deduplicated write commits nothing)
    st = client.stats(ns)
    assert st.total_memories == 2 and st.dim == 384 and st.namespaces[0].namespace == ns
    assert client.stats().total_memories >= 2

    e = client.embed(["A man is eating food.", "A man eats."])
    assert e.vectors.shape == (2, 384) and e.vectors.dtype == np.float32 and e.dim == 384
    assert abs(float(np.linalg.norm(e.vectors[0])) - 1.0) < 1e-3
    hits_v = client.recall(ns, vector=client.embed("Alice tea").vectors[0], k=1)
    assert hits_v[0].id == res[0].id

    ni = client.node_info()
    assert len(ni.node_id) == 64 and ni.model == st.model
    root = client.root(ns)
    assert root.namespace == ns and root.node_id == ni.node_id and root.seq == info[ns].seq + 0
    assert client.root(ns, seq=1).seq == 1


def test_remember_forms(client, ns):
    res = client.remember(ns, [
        "plain text",
        {"text": "a dict", "metadata": {"a": "1"}, "created_at": 1_700_000_000_000},
        NewMemory("a NewMemory", {"b": "2"}, created_at=1_700_000_000_001, key="k1"),
    ])
    assert len(res) == 3 and res[1].created_at == 1_700_000_000_000
    got = client.get(ns, ids=[r.id for r in res])
    assert [m.key for m in got] == [None, None, "k1"]
    assert got[2].metadata == {"b": "2", cairn.KEY_META: "k1"}
    with pytest.raises(ValueError):
        client.remember(ns, ["a", "b"], key="shared")
    with pytest.raises(ValueError):
        client.remember(ns, NewMemory("a"), key="k")
    with pytest.raises(TypeError):
        client.remember(ns, [42])


async def test_async_round_trip(node, ns):
    async with node.aclient() as c:
        res = await c.remember(ns, TEXTS)
        hits = await c.recall(ns, "bicycle commute", k=1)
        assert hits[0].id == res[1].id
        got = await c.get(ns, ids=[r.id for r in res])
        assert [m.text for m in got] == TEXTS
        seen = [m.id async for m in c.iter_memories(ns, page_size=2)]
        assert sorted(seen) == sorted(r.id for r in res)
        with pytest.raises(NotFound):
            await c.get(ns + "-nope", ids=["0" * 64])
        assert (await c.forget(ns, res[0].id)).forgotten == [res[0].id]
        assert (await c.stats(ns)).total_memories == 2
        assert len((await c.node_info()).node_id) == 64
        assert (await c.embed("x")).vectors.shape == (1, 384)
        hits = await c.recall(ns, "bicycle", k=1, verify=True)
        assert hits.verification is not None and hits.verification.namespace == ns


def test_list_pages_and_filters(client, ns):
    items = [NewMemory(f"note number {i}", {"parity": "even" if i % 2 == 0 else "odd"}, created_at=1_000 + i)
             for i in range(7)]
    ids = [r.id for r in client.remember(ns, items)]
    p1 = client.list(ns, limit=3)
    assert [m.id for m in p1] == ids[:3] and p1.next_page_token
    p2 = client.list(ns, limit=3, page_token=p1.next_page_token)
    assert [m.id for m in p2] == ids[3:6]
    assert [m.id for m in client.iter_memories(ns, page_size=2)] == ids
    assert [m.id for m in client.iter_memories(ns, since=1_002, until=1_005)] == ids[2:5]
    even = client.list(ns, where={"parity": "even"}, limit=2)
    assert [m.id for m in even] == [ids[0], ids[2]] and even.next_page_token
    assert [m.id for m in client.iter_memories(ns, where={"parity": "even"}, page_size=2)] == ids[0::2]


def test_recall_filters_prefix_and_no_query(client, ns):
    client.remember(f"{ns}/a", "Carol keeps bees on her roof.", metadata={"who": "carol"}, created_at=10)
    client.remember(f"{ns}/b", "Dave keeps chickens in his garden.", metadata={"who": "dave"}, created_at=20)
    client.remember(f"{ns}/b", "Dave's chickens lay brown eggs.", metadata={"who": "dave"}, created_at=30)
    client.remember(f"{ns}x", "Not under the prefix: bees and chickens.", created_at=40)

    hits = client.recall(ns, "who keeps bees?", k=10, prefix=True)
    assert {h.namespace for h in hits} == {f"{ns}/a", f"{ns}/b"}
    assert hits[0].namespace == f"{ns}/a" and len(hits) == 3

    newest = client.recall(f"{ns}/b", k=5)  # no query: newest first, score 0
    assert [h.created_at for h in newest] == [30, 20] and all(h.score == 0 for h in newest)
    newest_all = client.recall(ns, prefix=True, k=2)
    assert [h.created_at for h in newest_all] == [30, 20]

    dave = client.recall(ns, "animals", prefix=True, where={"who": "dave"})
    assert {h.metadata["who"] for h in dave} == {"dave"} and len(dave) == 2
    ranged = client.recall(f"{ns}/b", "eggs", since=25, until=31)
    assert [h.created_at for h in ranged] == [30]
    assert client.recall(ns + "/none", prefix=True) == []


def test_key_replace(client, ns):
    a = client.remember(ns, "Alice prefers tea.", key="alice/drink", metadata={"topic": "drinks"})[0]
    b = client.remember(ns, "Alice now prefers coffee.", key="alice/drink", metadata={"topic": "drinks"})[0]
    assert a.replaced is None and b.replaced == a.id and not b.deduplicated
    got = client.get(ns, keys=["alice/drink", "nobody"])
    assert [m.id for m in got] == [b.id] and got[0].key == "alice/drink" and got.missing == ["nobody"]
    assert client.get(ns, ids=[a.id]).missing == [a.id]
    assert [m.id for m in client.list(ns)] == [b.id]
    # same key and same content again: deduplicated, nothing replaced
    c = client.remember(ns, "Alice now prefers coffee.", key="alice/drink", metadata={"topic": "drinks"})[0]
    assert c.deduplicated and c.id == b.id
    # mixed ids and keys
    other = client.remember(ns, "Unrelated.")[0]
    both = client.get(ns, ids=[other.id], keys=["alice/drink"])
    assert {m.id for m in both} == {other.id, b.id}


def test_errors_map_to_classes(node, client, ns):
    with pytest.raises(InvalidArgument) as e:
        client.remember("bad namespace!", "x")
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "namespace" in e.value.details
    assert isinstance(e.value, CairnError) and isinstance(e.value, ValueError)
    assert str(e.value).startswith("invalid argument: namespace")

    with pytest.raises(NotFound) as e:
        client.get("t/does-not-exist-" + ns[-8:], ids=["0" * 64])
    assert e.value.code == grpc.StatusCode.NOT_FOUND

    with pytest.raises(InvalidArgument, match="k"):
        client.recall(ns, "q", k=5000)
    with pytest.raises(ResourceExhausted):
        client.remember(ns, "y" * 70_000)
    client.remember(ns, "z")
    with pytest.raises(NotFound):
        client.root(ns, seq=10_000)
    with pytest.raises(InvalidArgument):  # a proof needs a query
        client.recall(ns, verify=True)

    with pytest.raises(cairn.FailedPrecondition):  # Unfollow of a namespace this node owns
        client.unfollow(ns)
    with node.client(timeout=0.0001) as hasty, pytest.raises(cairn.DeadlineExceeded) as e:
        hasty.embed(["a sentence to embed"] * 200)
    assert isinstance(e.value, TimeoutError) and e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED

    with node.client(token=None) as anon, pytest.raises(Unauthenticated) as e:
        anon.stats()
    assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
    with node.client(token="not-a-token") as bad, pytest.raises(Unauthenticated):
        bad.stats()

    with CairnClient("http://127.0.0.1:1", timeout=5) as dead, pytest.raises(Unavailable):
        dead.stats()


def test_tokens(node, client, ns):
    client.remember(ns, "A memory only admins may write.")
    ro = client.mint_token([ns], ["read"], ttl=600)
    assert ro.expires_at and ro.expires_at > time.time() * 1000 and ro.revocation_ids
    with node.client(token=ro.token) as reader:
        assert len(reader.recall(ns, "memory")) == 1
        with pytest.raises(PermissionDenied) as e:
            reader.remember(ns, "not allowed")
        assert "write" in e.value.details and isinstance(e.value, PermissionError)
        with pytest.raises(PermissionDenied):
            reader.remember(ns + "-other", "outside the prefix")
        with pytest.raises(PermissionDenied):
            reader.mint_token([ns], ["read"])
        client.revoke_token(ro.revocation_ids[0])
        with pytest.raises(Unauthenticated, match="revoked"):
            reader.recall(ns, "memory")
    forever = client.mint_token([ns], ["read", "write"])
    assert forever.expires_at is None
    with node.client(token=forever.token) as rw:
        assert rw.remember(ns, "written with a minted token")[0].id


def test_shares(client):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    peer = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    with pytest.raises(InvalidArgument):
        client.share("t/shared", "ab" * 32)  # not an ed25519 point
    assert client.share("t/shared", peer) is True
    assert client.share("t/shared", peer) is False
    assert cairn.ShareGrant("t/shared", peer) in client.shares()
    assert client.unshare("t/shared", peer) is True
    assert cairn.ShareGrant("t/shared", peer) not in client.shares()
    assert isinstance(client.peers(), list) and client.alerts() == []


def test_config_errors(node, tls_node):
    with pytest.raises(ConfigError):
        CairnClient("ftp://127.0.0.1:1")
    with pytest.raises(ConfigError):
        CairnClient(node.url, tls_pin="00" * 32)  # a pin for a plaintext URL
    with pytest.raises(ConfigError, match="tls_pin"):
        CairnClient(tls_node.url, token=tls_node.token)  # https without a pin
    with pytest.raises(ConfigError):
        CairnClient(tls_node.url, tls_pin="zz")
    with pytest.raises(ConfigError, match="ASCII"):
        CairnClient(node.url, token="tök")
    with pytest.raises(cairn.VerificationError):
        CairnClient(node.url, node_id="nothex")


def test_tls_pin_good_and_bad(tls_node, ns, tmp_path):
    with tls_node.client() as c:
        assert c.tls_fingerprint == tls_node.tls_fingerprint
        c.remember(ns, "sent over TLS")
        assert c.recall(ns, "TLS", verify=True).verification.node_id == tls_node.node_id
    # colons and upper case are accepted in a pin
    fp = tls_node.tls_fingerprint.upper()
    with CairnClient(tls_node.url, token=tls_node.token, tls_pin=":".join(fp[i:i + 2] for i in range(0, 64, 2))) as c:
        assert c.stats(ns).total_memories == 1
    # the name in the URL need not be in the certificate's SAN... but it is for localhost and 127.0.0.1
    with CairnClient(tls_node.url.replace("127.0.0.1", "localhost"), token=tls_node.token,
                     tls_pin=tls_node.tls_fingerprint) as c:
        assert c.stats(ns).total_memories == 1
    bad = "%064x" % (int(tls_node.tls_fingerprint, 16) ^ 1)
    with pytest.raises(TlsPinMismatch) as e:
        CairnClient(tls_node.url, token=tls_node.token, tls_pin=bad)
    assert e.value.got == tls_node.tls_fingerprint and e.value.expected == bad
    assert "refusing" in str(e.value)


def test_tls_trust_on_first_use(tls_node, tmp_path):
    pins = tmp_path / "pins.json"
    with CairnClient(tls_node.url, token=tls_node.token, trust_on_first_use=True, pins_path=pins) as c:
        assert c.tls_fingerprint == tls_node.tls_fingerprint
        c.stats()
    assert cairn.PinStore(pins).tls_pin(tls_node.url) == tls_node.tls_fingerprint
    # From then on the pinned certificate is used, with no flag needed.
    with CairnClient(tls_node.url, token=tls_node.token, pins_path=pins) as c:
        c.stats()
    # A pinned certificate that no longer matches is refused, even with trust_on_first_use.
    store = cairn.PinStore(pins)
    store.pin_tls(tls_node.url, "11" * 32)
    with pytest.raises(TlsPinMismatch):
        CairnClient(tls_node.url, token=tls_node.token, pins_path=pins, trust_on_first_use=True)


def test_tls_handshake_is_bound_to_the_pinned_certificate(node_factory, tmp_path):
    """After the pin check the channel trusts exactly that certificate: another node (another self-signed
    certificate) answering on the same address later fails the TLS handshake."""
    a = node_factory(args=["--tls"])
    port = a.addr.rsplit(":", 1)[1]
    c = a.client()
    assert c.stats().total_memories == 0
    a.stop()
    b = node_factory(args=["--tls"], listen=f"127.0.0.1:{port}")
    assert b.tls_fingerprint != a.tls_fingerprint
    try:
        with pytest.raises(TlsPinMismatch):
            CairnClient(b.url, token=b.token, tls_pin=a.tls_fingerprint, timeout=5)  # refused at once
        with pytest.raises(Unavailable):
            c.stats()  # the old channel reconnects, and the handshake fails
    finally:
        c.close()
        b.stop()


async def test_async_tls(tls_node, ns):
    c = await AsyncCairnClient.connect(tls_node.url, token=tls_node.token, tls_pin=tls_node.tls_fingerprint)
    async with c:
        await c.remember(ns, "async over TLS")
        assert len(await c.recall(ns, "TLS")) == 1
    with pytest.raises(TlsPinMismatch):
        await AsyncCairnClient.connect(tls_node.url, token=tls_node.token, tls_pin="22" * 32)


def test_watch_roots(client, ns):
    client.remember(ns, "first")
    stream = client.watch_roots(ns)
    first = next(stream)
    assert first.namespace == ns and first.seq == 1 and first.signed
    client.remember(ns, "second")
    assert next(stream).seq == 2
    stream.close()


async def test_async_watch_roots(node, ns):
    async with node.aclient() as c:
        await c.remember(ns, "first")
        stream = c.watch_roots(ns)
        assert (await anext(stream)).seq == 1
        await c.remember(ns, "second")
        assert (await anext(stream)).seq == 2
        await stream.aclose()


def test_a_node_timeout_after_the_callers_deadline_is_deadline_exceeded():
    """The node also enforces a caller's deadline, answering CANCELLED "Timeout expired" when it notices first:
    once the call's own timeout has run out that is DeadlineExceeded; the node's own timeout stays Cancelled."""
    from cairn.errors import from_rpc_error

    class Err(grpc.RpcError):
        def __init__(self, code, details):
            self._code, self._details = code, details

        def code(self):
            return self._code

        def details(self):
            return self._details

    late = Err(grpc.StatusCode.CANCELLED, "Timeout expired")
    got = from_rpc_error(late, deadline_passed=True)
    assert isinstance(got, cairn.DeadlineExceeded) and got.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert isinstance(from_rpc_error(late), cairn.Cancelled)
    other = Err(grpc.StatusCode.CANCELLED, "the client went away")
    assert isinstance(from_rpc_error(other, deadline_passed=True), cairn.Cancelled)


def _vec(i: int, dim: int = 6) -> list[float]:
    """Point i's vector: well-spread pseudo-random components (a fixed generator, so the test is repeatable)."""
    rng = np.random.default_rng(1000 + i)
    return rng.uniform(-0.5, 0.5, dim).tolist()


def test_external_vectors(client, ns):
    made = client.create_namespace(ns, model="acme-embed-v2", dim=6)
    assert made.created and made.model == "external:acme-embed-v2/6" and made.seq == 1
    assert not client.create_namespace(ns, model="acme-embed-v2", dim=6).created
    with pytest.raises(cairn.FailedPrecondition):
        client.create_namespace(ns, model="acme-embed-v2", dim=7)
    with pytest.raises(ValueError):
        client.create_namespace(ns, model="acme-embed-v2")

    texts = [f"entry {i} in the {['north', 'south'][i % 2]} ledger" for i in range(12)]
    res = client.remember(ns, [NewMemory(t, vector=_vec(i)) for i, t in enumerate(texts[:6])]
                          + [{"text": t, "vector": _vec(i + 6)} for i, t in enumerate(texts[6:])])
    assert len(res) == 12 and not any(r.deduplicated for r in res)
    with pytest.raises(InvalidArgument, match="vector"):
        client.remember(ns, "no vector here")
    with pytest.raises(InvalidArgument, match="vector"):
        client.remember(ns, [NewMemory("wrong size", vector=[0.1] * 5)])

    hits = client.recall(ns, vector=np.asarray(_vec(4)), k=3, verify=True)
    assert hits[0].id == res[4].id and hits.verification is not None
    assert hits.verification.mode == "semantic"
    lexical = client.recall(ns, "entry 9", k=1, verify=True)
    assert lexical[0].id == res[9].id and lexical.verification.mode == "lexical"
    with pytest.raises(InvalidArgument):
        client.recall(ns, "south ledger", mode="semantic")
    # The text with its vector: hybrid by default (BM25 over the text fused with the vector's ranking), proven.
    both = client.recall(ns, "entry 9", vector=_vec(9), k=3, verify=True)
    assert both[0].id == res[9].id and both.verification.mode == "hybrid"
    with pytest.raises(InvalidArgument):
        client.recall(ns, "entry 9", vector=[0.1] * 5)
    info = [n for n in client.namespaces() if n.namespace == ns]
    assert info and info[0].model == "external:acme-embed-v2/6" and info[0].memories == 12


# The int8 copy of all-MiniLM-L6-v2 (scripts/provision-model --int8, which scripts/test runs).
INT8 = "e0948eea779adacfaaaf79d8b0f143d109fcfc43096a62056cd9e948ef44038b"


def test_installed_models_and_migrate(client, ns):
    """A namespace moves to the int8 model with progress reports, and answers verify under the model its root
    names; another namespace is created for the int8 model from its first root."""
    client.remember(ns, TEXTS)
    before = client.recall(ns, "green tea", k=1, verify=True)
    fp32 = before.verification.root.model.hex()
    assert fp32 != INT8
    seen = []
    done = client.migrate(ns, INT8, on_progress=seen.append)
    assert done.changed and done.memories == 3 and done.model_hash == INT8 and "int8" in done.model
    assert seen and seen[0].total == 3 and seen[-1].done == 3
    after = client.recall(ns, "green tea", k=1, verify=True)
    assert after[0].text == TEXTS[0]
    assert after.verification.root.model.hex() == INT8 and after.verification.seq == done.seq
    assert not client.migrate(ns, INT8).changed
    with pytest.raises(cairn.FailedPrecondition):
        client.migrate(ns, "ab" * 32)
    with pytest.raises(InvalidArgument):
        client.migrate(ns, "not a hash")

    other = f"{ns}-int8"
    made = client.create_namespace(other, installed_model=INT8)
    assert made.created and made.seq == 1 and "int8" in made.model
    client.remember(other, TEXTS)
    hits = client.recall(other, "red bicycle", k=1, verify=True)
    assert hits[0].text == TEXTS[1] and hits.verification.root.model.hex() == INT8


async def test_async_migrate(node, ns):
    async with node.aclient() as c:
        await c.remember(ns, TEXTS)
        done = await c.migrate(ns, INT8)
        assert done.changed and done.memories == 3
        made = await c.create_namespace(f"{ns}-int8", installed_model=INT8)
        assert made.created
