"""Leaf encodings of the two committed trees (docs/PROOFS.md, "Commitments"):
the graph tree (one leaf per HNSW node) and the time tree (one leaf per live
memory), plus the int8 quantiser."""

from __future__ import annotations

import math
import struct

import blake3

from .merkle import leaf_hash
from .wire import u16be, u32be, u64be

GRAPH_LEAF_MAGIC = b"CGL1"
TIME_LEAF_MAGIC = b"CTL1"
ZERO_ID = bytes(32)


def encode_lists(lists: list[list[int]]) -> bytes:
    """for each layer: u16be(count) || u32be(node) x count."""
    out = []
    for layer in lists:
        out.append(u16be(len(layer)))
        out.extend(u32be(n) for n in layer)
    return b"".join(out)


def lists_hash_of_encoded(encoded: bytes) -> bytes:
    """BLAKE3(0x02 || encode_lists)."""
    return blake3.blake3(b"\x02" + encoded).digest()


def lists_hash(lists: list[list[int]]) -> bytes:
    """The hash a graph leaf carries for a node's neighbour lists."""
    return lists_hash_of_encoded(encode_lists(lists))


def graph_leaf_bytes(node: int, id_: bytes, created_at: int, alive: int, level: int,
                     vector: bytes, lists_h: bytes) -> bytes:
    """"CGL1" node id created_at alive level u16be(dim) int8 x dim lists_hash.
    `vector` is the int8 components as raw bytes (two's complement)."""
    return b"".join([GRAPH_LEAF_MAGIC, u32be(node), id_, u64be(created_at), bytes([alive, level]),
                     u16be(len(vector)), vector, lists_h])


def graph_leaf_hash(node: int, id_: bytes, created_at: int, alive: int, level: int,
                    vector: bytes, lists_h: bytes) -> bytes:
    """leaf_hash(graph leaf bytes)."""
    return leaf_hash(graph_leaf_bytes(node, id_, created_at, alive, level, vector, lists_h))


def time_leaf_bytes(created_at: int, id_: bytes, node: int) -> bytes:
    """"CTL1" created_at id node (48 bytes)."""
    return TIME_LEAF_MAGIC + u64be(created_at) + id_ + u32be(node)


def time_leaf_hash(created_at: int, id_: bytes, node: int) -> bytes:
    """leaf_hash(time leaf bytes)."""
    return leaf_hash(time_leaf_bytes(created_at, id_, node))


def quantise(vec: list[float]) -> bytes:
    """clamp(round_half_away_from_zero(x * 127), -127, 127) as int8 bytes.
    x * 127 is computed in f32 (the embedding's type); see VERIFIER-NOTES.md."""
    out = bytearray()
    for x in vec:
        y = struct.unpack("<f", struct.pack("<f", float(x)))[0]
        p = struct.unpack("<f", struct.pack("<f", y * 127.0))[0]
        q = math.floor(abs(p) + 0.5)
        q = int(math.copysign(q, p)) if q else 0
        q = max(-127, min(127, q))
        out.append(q & 0xFF)
    return bytes(out)
