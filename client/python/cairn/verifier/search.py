"""The deterministic proof search of docs/PROOFS.md ("faithful recall"), run over
only the nodes a proof carries, plus its exact mode and the score rule."""

from __future__ import annotations

import heapq
from typing import Callable

import numpy as np


SCORE_DIVISOR = np.float32(16129.0)  # 127 * 127


def distances(query: bytes, vectors: list[bytes], dim: int) -> list[int]:
    """d(q, v) = -sum(q_i * v_i) for each vector, exactly, via numpy in int32
    (|d| <= 4096 * 128 * 128 < 2^31), in chunks so a maximal proof does not
    make a large temporary."""
    if not vectors:
        return []
    if dim == 0:
        return [0] * len(vectors)
    q = np.frombuffer(query, dtype=np.int8).astype(np.int32)
    out: list[int] = []
    step = max(1, (1 << 22) // dim)
    for i in range(0, len(vectors), step):
        chunk = vectors[i:i + step]
        m = np.frombuffer(b"".join(chunk), dtype=np.int8).reshape(len(chunk), dim).astype(np.int32)
        out.extend((-(m @ q)).tolist())
    return out


def score_of(d: int) -> float:
    """A hit's score: -d / 16129 as f32 (returned as the exact Python float),
    computed as -(f32(d)) / f32(16129), so d = 0 gives -0.0 (the Rust
    verifier's bits; see VERIFIER-NOTES.md)."""
    return float(-np.float32(d) / SCORE_DIVISOR)


def graph_search(dist: Callable[[int], int], lists_at: Callable[[int, int], list[int]],
                 entry: int, max_level: int, efp: int) -> list[tuple[int, int]]:
    """The document's search: greedy descent from `entry` over layers
    max_level..1, then best-first at layer 0 with breadth `efp` (= max(ef, k)).
    Returns R sorted ascending by (d, node). `dist` and `lists_at` raise
    VerifyError when the proof lacks a node or a node's lists."""
    cur = (dist(entry), entry)
    for layer in range(max_level, 0, -1):
        while True:
            best = cur
            for nb in lists_at(cur[1], layer):
                e = (dist(nb), nb)
                if e < best:
                    best = e
            if best == cur:
                break
            cur = best
    visited = {cur[1]}
    cand = [cur]
    res = [(-cur[0], -cur[1])]  # max-heap of (d, node) via negation
    heappush, heappop = heapq.heappush, heapq.heappop
    while cand:
        c = heappop(cand)
        top = res[0]
        if len(res) >= efp and c > (-top[0], -top[1]):
            break
        for nb in lists_at(c[1], 0):
            if nb in visited:
                continue
            visited.add(nb)
            e = (dist(nb), nb)
            top = res[0]
            if len(res) < efp or e < (-top[0], -top[1]):
                heappush(cand, e)
                heappush(res, (-e[0], -e[1]))
                if len(res) > efp:
                    heappop(res)
    return sorted((-a, -b) for a, b in res)


def exact_answer(scored: list[tuple[int, int]], k: int) -> list[tuple[int, int]]:
    """The k smallest (d, node) pairs of `scored` (alive nodes only)."""
    return heapq.nsmallest(k, scored)


def instrumented_search(nodes: dict, query: bytes, entry: int, max_level: int, efp: int):
    """Runs graph_search over a full graph {node: (vector, level, lists)} and
    records which nodes it touched and whose lists it read. For provers/tests."""
    touched: set[int] = set()
    read: set[int] = set()
    q = np.frombuffer(query, dtype=np.int8).astype(np.int64)

    def dist(n: int) -> int:
        touched.add(n)
        v = np.frombuffer(nodes[n][0], dtype=np.int8).astype(np.int64)
        return int(-(v @ q))

    def lists_at(n: int, layer: int) -> list[int]:
        vec, level, lists = nodes[n]
        if layer > level:
            return []
        read.add(n)
        return lists[layer]

    res = graph_search(dist, lists_at, entry, max_level, efp)
    return res, touched, read
