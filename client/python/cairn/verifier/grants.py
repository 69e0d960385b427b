"""Owner-signed grant sets (docs/PROOFS.md, "Grant sets", version 1)."""

from __future__ import annotations

from dataclasses import dataclass

from .ed25519 import verify_strict
from .errors import VerifyError
from .wire import Reader, u16be, u32be, u64be

GRANT_MAGIC = b"CAIRN-GRANTS-V1"
MAX_PEERS = 4096


@dataclass
class GrantSet:
    """The peers an owner allows to fetch one namespace, at a version."""

    owner: bytes
    namespace: str
    version: int
    peers: list[bytes]


def decode_grant_set(wire: bytes, owner: bytes, namespace: str) -> GrantSet:
    """Parses `grant_set signature[64]` and checks that it is signed by `owner`
    (strict Ed25519 over the grant_set bytes) and names (owner, namespace), with
    sorted, distinct peers, at most 4,096."""
    r = Reader(wire, "grant set")
    if r.take(len(GRANT_MAGIC), "magic") != GRANT_MAGIC:
        raise VerifyError("grant set: wrong magic")
    o = r.take(32, "owner")
    nlen = r.u16("namespace length")
    try:
        ns = r.take(nlen, "namespace").decode("utf-8")
    except UnicodeDecodeError:
        raise VerifyError("grant set: namespace is not UTF-8") from None
    version = r.u64("version")
    n = r.count("peer count", 32, MAX_PEERS)
    peers = [r.take(32, "peer") for _ in range(n)]
    signed_end = r.pos
    sig = r.take(64, "signature")
    r.expect_end()
    if any(b <= a for a, b in zip(peers, peers[1:])):
        raise VerifyError("grant set: peers not sorted and distinct")
    if o != bytes(owner) or ns != namespace:
        raise VerifyError("grant set: names another owner or namespace")
    if not verify_strict(o, r.buf[:signed_end], sig):
        raise VerifyError("grant set: signature does not verify")
    return GrantSet(o, ns, version, peers)


def encode_grant_set(owner: bytes, namespace: str, version: int, peers: list[bytes], private_key) -> bytes:
    """Signed grant set wire bytes. For tests."""
    ns = namespace.encode()
    peers = sorted(set(peers))
    body = GRANT_MAGIC + owner + u16be(len(ns)) + ns + u64be(version) + u32be(len(peers)) + b"".join(peers)
    return body + private_key.sign(body)
