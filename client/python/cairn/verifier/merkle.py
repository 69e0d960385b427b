"""Complete binary Merkle trees (merkle-cbt layout) with Cairn's domain separation,
and the multiproof check of docs/PROOFS.md, "Merkle trees"."""

from __future__ import annotations

import heapq

import blake3

from .errors import VerifyError

INTERIOR_KEY = b"CAIRN-MERKLE-INTERIOR-NODE-V1..."
assert len(INTERIOR_KEY) == 32
EMPTY_ROOT = bytes(32)


def leaf_hash(b: bytes) -> bytes:
    """BLAKE3(0x00 || bytes): the hash of a leaf."""
    return blake3.blake3(b"\x00" + b).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """BLAKE3 keyed with INTERIOR_KEY over left || right: an interior node."""
    return blake3.blake3(left + right, key=INTERIOR_KEY).digest()


def tree_nodes(leaves: list[bytes]) -> list[bytes]:
    """The whole 2n-1 node array (root at 0, leaf j at n-1+j). For provers and tests."""
    n = len(leaves)
    if n == 0:
        return []
    nodes: list[bytes] = [b""] * (n - 1) + list(leaves)
    for i in range(n - 2, -1, -1):
        nodes[i] = node_hash(nodes[2 * i + 1], nodes[2 * i + 2])
    return nodes


def tree_root(leaves: list[bytes]) -> bytes:
    """The root over leaf hashes; 32 zero bytes for the empty tree."""
    if not leaves:
        return EMPTY_ROOT
    return tree_nodes(leaves)[0]


def make_multiproof(leaves: list[bytes], indices: list[int]) -> list[bytes]:
    """The lemmas proving `indices` (strictly increasing), in the order the
    verifier consumes them. For provers and tests."""
    n = len(leaves)
    nodes = tree_nodes(leaves)
    pending = {n - 1 + j for j in indices}
    heap = [-p for p in pending]
    heapq.heapify(heap)
    lemmas = []
    while heap:
        i = -heapq.heappop(heap)
        pending.discard(i)
        if i == 0:
            break
        s = ((i + 1) ^ 1) - 1
        if s in pending:
            pending.discard(s)
            heap.remove(-s)
            heapq.heapify(heap)
        else:
            lemmas.append(nodes[s])
        parent = (i - 1) // 2
        if parent not in pending:
            pending.add(parent)
            heapq.heappush(heap, -parent)
    return lemmas


def verify_multiproof(n: int, root: bytes, leaves: list[tuple[int, bytes]], lemmas: list[bytes]) -> None:
    """Checks that `leaves` ((index, hash), strictly increasing indices, each < n)
    are leaves of the n-leaf tree with `root`, using `lemmas` in the order of the
    document's loop. Raises VerifyError otherwise.

    With no claimed leaves the document's loop never runs and proves nothing;
    like the Rust verifier this accepts (whatever n, root and lemmas are), and
    callers decide whether an empty claim is acceptable. See VERIFIER-NOTES.md."""
    if not leaves:
        return
    h, li = fold(n, leaves, lemmas, 0)
    if li != len(lemmas) or h != root:
        raise VerifyError("multiproof: does not rebuild the root")


def check_positions(n: int, leaves: list[tuple[int, bytes]]) -> None:
    """Claimed leaf indices must be strictly increasing and below the leaf count n,
    and n at most 2^62 (as the Rust verifier: positions n - 1 + j fit in 64 bits)."""
    if n > 1 << 62:
        raise VerifyError(f"multiproof: leaf count {n} is too large for a tree")
    prev = -1
    for j, _ in leaves:
        if j <= prev:
            raise VerifyError("multiproof: leaf indices not strictly increasing")
        if j >= n:
            raise VerifyError(f"multiproof: leaf index {j} out of range (tree has {n} leaves)")
        prev = j


def fold(n: int, leaves: list[tuple[int, bytes]], lemmas: list[bytes], li: int) -> tuple[bytes, int]:
    """The root that `leaves` (non-empty, strictly increasing indices, each < n)
    imply in an n-leaf tree, taking lemmas from `lemmas[li:]` in the document's
    order. Returns (root, index of the first lemma not used): paged trees fold
    several trees from one lemma list. Raises VerifyError."""
    if not leaves:
        raise VerifyError("multiproof: no leaves")
    check_positions(n, leaves)
    pending: dict[int, bytes] = {n - 1 + j: h for j, h in leaves}
    heap = [-p for p in pending]
    heapq.heapify(heap)
    nl = len(lemmas)
    while heap:
        i = -heapq.heappop(heap)
        h = pending.pop(i)
        if i == 0:
            if pending:
                raise VerifyError("multiproof: does not rebuild the root")
            return h, li
        s = ((i + 1) ^ 1) - 1
        if s in pending:
            sh = pending.pop(s)
            # s < i here (the larger was popped first), remove it from the heap.
            if heap and -heap[0] == s:
                heapq.heappop(heap)
            else:  # cannot happen for a well-formed loop; stay safe
                heap.remove(-s)
                heapq.heapify(heap)
        else:
            if li >= nl:
                raise VerifyError("multiproof: too few lemmas")
            sh = lemmas[li]
            li += 1
        parent = (i - 1) // 2
        if parent in pending:
            raise VerifyError("multiproof: inconsistent positions")
        pending[parent] = node_hash(h, sh) if i % 2 == 1 else node_hash(sh, h)
        heapq.heappush(heap, -parent)
    raise VerifyError("multiproof: does not rebuild the root")
