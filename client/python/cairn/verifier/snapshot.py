"""Snapshot pieces (docs/PROOFS.md, "Snapshots"): record pages and the HashSeq
hash that names a snapshot."""

from __future__ import annotations

import blake3

from .wire import Reader, u32be


def encode_record_page(records: list[bytes]) -> bytes:
    """(u32be(len) record)*."""
    return b"".join(u32be(len(r)) + r for r in records)


def decode_record_page(page: bytes) -> list[bytes]:
    """Splits a record page; rejects truncation."""
    r = Reader(page, "record page")
    out = []
    while r.remaining():
        n = r.u32("record length")
        out.append(r.take(n, "record"))
    return out


def hashseq_hash(parts: list[bytes]) -> bytes:
    """BLAKE3(BLAKE3(part 0) || BLAKE3(part 1) || ...), the snapshot's name."""
    return blake3.blake3(b"".join(blake3.blake3(p).digest() for p in parts)).digest()
