"""Memory record, version 1: canonical decoding, encoding, id and dedup key.

See docs/PROOFS.md, "Memory record, version 1". Exactly one byte string encodes a
record, so the id (BLAKE3 of the bytes) names the memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import blake3

from .errors import VerifyError
from .wire import Reader, u16be, u32be, u64be

MAGIC = b"CAIRNMEM"
VERSION = 1
MAX_NS = 128
MAX_TEXT = 16 * 1024 * 1024
MAX_ENTRIES = 1024
MAX_KEY = 1024
MAX_VALUE = 1024 * 1024

_NS_RE = re.compile(rb"[A-Za-z0-9._:/-]{1,128}\Z")

# Whether decode_record enforces the namespace alphabet and minimum length.
# docs/PROOFS.md gives the alphabet next to the field but not among the things
# "a decoder must reject", and the Rust verifier accepts records (and roots) with
# any UTF-8 namespace of 0..=128 bytes, so this is off. See VERIFIER-NOTES.md.
CHECK_NS_ALPHABET = False


def valid_namespace(ns: bytes) -> bool:
    """True if `ns` is 1..=128 bytes of [A-Za-z0-9._:/-], the namespace rule."""
    return bool(_NS_RE.match(ns))


@dataclass
class Record:
    """A decoded memory record (the canonical bytes' fields)."""

    namespace: str
    created_at: int
    salt: bytes
    text: str
    metadata: dict[str, str] = field(default_factory=dict)


def _utf8(b: bytes, what: str) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        raise VerifyError(f"record: {what} is not UTF-8") from None


def decode_record(b: bytes) -> Record:
    """Decodes canonical record bytes, rejecting every non-canonical form the
    document lists (wrong magic/version, truncation, non-UTF-8, unsorted or
    duplicate keys, trailing bytes, lengths beyond the format caps)."""
    r = Reader(b, "record")
    if r.take(8, "magic") != MAGIC:
        raise VerifyError("record: wrong magic")
    v = r.u8("version")
    if v != VERSION:
        raise VerifyError(f"record: unknown version {v}")
    nlen = r.u16("namespace length")
    if nlen > MAX_NS:
        raise VerifyError(f"record: namespace length {nlen} exceeds {MAX_NS}")
    nsb = r.take(nlen, "namespace")
    ns = _utf8(nsb, "namespace")
    if CHECK_NS_ALPHABET and not valid_namespace(nsb):
        raise VerifyError("record: invalid namespace")
    created_at = r.u64("created_at")
    salt = r.take(16, "salt")
    tlen = r.u32("text length")
    if tlen > MAX_TEXT:
        raise VerifyError(f"record: text length {tlen} exceeds {MAX_TEXT}")
    text = _utf8(r.take(tlen, "text"), "text")
    count = r.u16("metadata count")
    if count > MAX_ENTRIES:
        raise VerifyError(f"record: {count} metadata entries exceed {MAX_ENTRIES}")
    if count * 6 > r.remaining():
        raise VerifyError("record: truncated (metadata)")
    meta: dict[str, str] = {}
    prev: bytes | None = None
    for _ in range(count):
        klen = r.u16("key length")
        if klen > MAX_KEY:
            raise VerifyError(f"record: key length {klen} exceeds {MAX_KEY}")
        kb = r.take(klen, "key")
        vlen = r.u32("value length")
        if vlen > MAX_VALUE:
            raise VerifyError(f"record: value length {vlen} exceeds {MAX_VALUE}")
        vb = r.take(vlen, "value")
        if prev is not None and kb <= prev:
            raise VerifyError("record: metadata keys not strictly increasing")
        prev = kb
        meta[_utf8(kb, "metadata key")] = _utf8(vb, "metadata value")
    r.expect_end()
    return Record(ns, created_at, salt, text, meta)


def encode_record(rec: Record) -> bytes:
    """The canonical bytes of `rec` (entries sorted by key bytes). For tests and
    for SDK users who want to recompute an id."""
    ns = rec.namespace.encode()
    text = rec.text.encode()
    if len(rec.salt) != 16:
        raise ValueError("salt must be 16 bytes")
    items = sorted((k.encode(), v.encode()) for k, v in rec.metadata.items())
    out = [MAGIC, bytes([VERSION]), u16be(len(ns)), ns, u64be(rec.created_at), rec.salt,
           u32be(len(text)), text, u16be(len(items))]
    for k, v in items:
        out += [u16be(len(k)), k, u32be(len(v)), v]
    return b"".join(out)


def record_id(b: bytes) -> bytes:
    """A memory's id: BLAKE3 of its canonical record bytes (32 bytes)."""
    if not isinstance(b, (bytes, bytearray, memoryview)):
        raise VerifyError("record_id: expected bytes")
    return blake3.blake3(bytes(b)).digest()


DEDUP_CONTEXT = "cairn 2026 memory dedup key v1"


def dedup_key(text: str, metadata: dict[str, str]) -> bytes:
    """The node's per-namespace dedup key (not part of the record); depends only on
    the text and the metadata."""
    t = text.encode()
    items = sorted((k.encode(), v.encode()) for k, v in metadata.items())
    parts = [u64be(len(t)), t, u64be(len(items))]
    for k, v in items:
        parts += [u64be(len(k)), k, u64be(len(v)), v]
    return blake3.blake3(b"".join(parts), derive_key_context=DEDUP_CONTEXT).digest()
