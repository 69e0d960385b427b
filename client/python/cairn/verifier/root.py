"""Signed root records (docs/PROOFS.md, "Root record"): decoding, hashing,
signature check and the client freshness rule."""

from __future__ import annotations

from dataclasses import dataclass, field

import blake3

from .ed25519 import verify_strict
from .errors import VerifyError
from .wire import Reader, u16be, u32be, u64be

ROOT_MAGIC = b"CAIRNROOT"
ROOT_VERSION = 3          # version 2 adds the lexical index's commitment, version 3 pages the trees
ROOT_VERSIONS = (1, 2, 3)
SIG_DOMAIN = b"CAIRN-ROOT-SIG-V1"
EMPTY_ENTRY = 0xFFFFFFFF
MAX_ROOT_NS = 128  # the record format's namespace cap; the Rust verifier applies it to roots too


@dataclass
class Root:
    """A decoded root record whose signature was checked against `node_id`.

    `hash` is root_hash = BLAKE3(0x04 || raw), the value the freshness rule,
    the `prev` chain and witness cosignatures use. `raw` is the root record
    bytes (what is hashed); `signed` is the wire form u32be(len) root sig."""

    namespace: str
    seq: int
    prev: bytes
    graph_leaves: int
    graph_root: bytes
    time_leaves: int
    time_root: bytes
    entry: int
    max_level: int
    M: int
    M0: int
    quantiser: int
    distance: int
    dim: int
    model: bytes
    created_at: int
    node_id: bytes
    signature: bytes
    hash: bytes
    raw: bytes
    signed: bytes = field(default=b"", repr=False)
    # Versions 2 and 3 (None in version-1 roots): tokenizer, term count, term tree root, total length.
    lexicon: tuple | None = None
    # The record's format version: 3 means paged graph and time trees (paged.py), before whole CBMTs.
    version: int = 1

    @property
    def root_hash(self) -> bytes:
        """Alias of `hash`, the document's name."""
        return self.hash

    @property
    def m(self) -> int:
        """Alias of `M`."""
        return self.M

    @property
    def m0(self) -> int:
        """Alias of `M0`."""
        return self.M0


def root_hash(raw: bytes) -> bytes:
    """BLAKE3(0x04 || root record bytes)."""
    return blake3.blake3(b"\x04" + raw).digest()


def decode_root_record(raw: bytes, signature: bytes = b"") -> Root:
    """Parses root record bytes (no signature check). Rejects a wrong magic,
    version, truncation, a non-UTF-8 namespace and trailing bytes."""
    r = Reader(raw, "root record")
    if r.take(9, "magic") != ROOT_MAGIC:
        raise VerifyError("root record: wrong magic")
    v = r.u8("version")
    if v not in ROOT_VERSIONS:
        raise VerifyError(f"root record: unknown version {v}")
    nlen = r.u16("namespace length")
    if nlen > MAX_ROOT_NS:
        raise VerifyError(f"root record: namespace length {nlen} exceeds {MAX_ROOT_NS}")
    try:
        ns = r.take(nlen, "namespace").decode("utf-8")
    except UnicodeDecodeError:
        raise VerifyError("root record: namespace is not UTF-8") from None
    seq = r.u64("seq")
    prev = r.take(32, "prev")
    gl = r.u64("graph_leaves")
    gr = r.take(32, "graph_root")
    tl = r.u64("time_leaves")
    tr = r.take(32, "time_root")
    entry = r.u32("entry")
    max_level = r.u8("max_level")
    m = r.u16("M")
    m0 = r.u16("M0")
    quant = r.u8("quantiser")
    dist = r.u8("distance")
    dim = r.u16("dim")
    model = r.take(32, "model")
    created_at = r.u64("created_at")
    node_id = r.take(32, "node_id")
    lexicon = None
    if v >= 2:
        lexicon = (r.u8("tokenizer"), r.u64("lex_terms"), r.take(32, "lex_root"), r.u64("lex_total"))
    r.expect_end()
    return Root(ns, seq, prev, gl, gr, tl, tr, entry, max_level, m, m0, quant, dist, dim, model,
                created_at, node_id, signature, root_hash(raw), raw, lexicon=lexicon, version=v)


def read_signed_root(r: Reader, trusted: bytes) -> Root:
    """Reads `u32be(len) root signature[64]` from `r`, and checks that the root's
    node_id is `trusted` and that the signature verifies (strict Ed25519 over
    "CAIRN-ROOT-SIG-V1" || root_hash)."""
    start = r.pos
    n = r.u32("root length")
    if n > r.remaining():
        raise VerifyError("signed root: truncated")
    raw = r.take(n, "root")
    sig = r.take(64, "root signature")
    root = decode_root_record(raw, sig)
    root.signed = r.buf[start:r.pos]
    check_root_signature(root, trusted)
    return root


def decode_signed_root(b: bytes, trusted: bytes) -> Root:
    """Decodes and checks a whole signed root (wire form, nothing after it)."""
    r = Reader(b, "signed root")
    root = read_signed_root(r, trusted)
    r.expect_end()
    return root


def check_root_signature(root: Root, trusted: bytes) -> None:
    """The root must name the trusted node id and carry its valid strict signature."""
    if not isinstance(trusted, (bytes, bytearray)) or len(trusted) != 32:
        raise VerifyError("trusted node id must be 32 bytes")
    if root.node_id != bytes(trusted):
        raise VerifyError(f"root signed by {root.node_id.hex()}, not the trusted node {bytes(trusted).hex()}")
    if not verify_strict(root.node_id, SIG_DOMAIN + root.hash, root.signature):
        raise VerifyError("root signature does not verify")


def encode_root_record(namespace: str, seq: int, prev: bytes, graph_leaves: int, graph_root: bytes,
                       time_leaves: int, time_root: bytes, entry: int, max_level: int, M: int, M0: int,
                       quantiser: int, distance: int, dim: int, model: bytes, created_at: int,
                       node_id: bytes, lexicon: tuple | None = None, version: int | None = None) -> bytes:
    """Root record bytes from its fields (version 1, or version 2 with `lexicon` =
    (tokenizer, terms, root, total_len), or version 3 when asked: the same
    layout as 2, over paged trees). For tests and provers."""
    ns = namespace.encode()
    tail = b""
    if lexicon is not None:
        tok, terms, lroot, total = lexicon
        tail = bytes([tok]) + u64be(terms) + lroot + u64be(total)
    if version is None:
        version = 2 if lexicon is not None else 1
    return b"".join([ROOT_MAGIC, bytes([version]), u16be(len(ns)), ns, u64be(seq),
                     prev, u64be(graph_leaves), graph_root, u64be(time_leaves), time_root, u32be(entry),
                     bytes([max_level]), u16be(M), u16be(M0), bytes([quantiser]), bytes([distance]),
                     u16be(dim), model, u64be(created_at), node_id, tail])


def sign_root(raw: bytes, private_key) -> bytes:
    """Signed root wire bytes for `raw`, signed with a `cryptography` Ed25519
    private key. For tests and provers."""
    sig = private_key.sign(SIG_DOMAIN + root_hash(raw))
    return u32be(len(raw)) + raw + sig


def check_fresh(root: Root, last: tuple[int, bytes] | None) -> None:
    """The client freshness rule: given the (seq, root_hash) of the newest root
    accepted for this (node, namespace), reject a lower seq (rollback) and the
    same seq with another hash (equivocation)."""
    if last is None:
        return
    try:
        seq, h = last
        seq, h = int(seq), bytes(h)
    except Exception:
        raise VerifyError("check_fresh: last must be (seq, root_hash)") from None
    if root.seq < seq:
        raise VerifyError(f"rollback: root seq {root.seq} is older than the seq {seq} already seen")
    if root.seq == seq and root.hash != h:
        raise VerifyError(f"equivocation: a second, different root for seq {seq}")


def check_chain(roots: list[Root]) -> None:
    """Given consecutive roots oldest first, checks seq + 1 and prev = hash of the
    previous record between each pair (the "prev links")."""
    for a, b in zip(roots, roots[1:]):
        if b.seq != a.seq + 1 or b.prev != a.hash:
            raise VerifyError(f"root chain broken between seq {a.seq} and seq {b.seq}")
