"""Paged Merkle trees of root format 3 (docs/PROOFS.md, "Paged trees"): the
graph tree in fixed pages of 1024 leaves under a top tree of page roots, and the
time tree in content-cut pages under a top tree of page descriptors. Mirrors
cairn_index::paged; the builders are for provers and tests."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import VerifyError
from .merkle import (EMPTY_ROOT, check_positions, fold, leaf_hash, make_multiproof, tree_root,
                     verify_multiproof)
from .wire import Reader, u32be, u64be

GRAPH_PAGE = 1024
TIME_CUT_BELOW = 64
TIME_PAGE_MAX = 4096


def is_cut(leaf: bytes) -> bool:
    """A time leaf ends its page when the u16be of its first two bytes is below 64."""
    return int.from_bytes(leaf[:2], "big") < TIME_CUT_BELOW


def time_page_leaf(first: int, count: int, page_root: bytes) -> bytes:
    """leaf_hash("CTP1" || u64be(first) || u32be(count) || page_root)."""
    return leaf_hash(b"CTP1" + u64be(first) + u32be(count) + page_root)


def time_root_of(pages: int, top_root: bytes) -> bytes:
    """leaf_hash("CTR1" || u32be(pages) || top_root); 32 zero bytes without pages."""
    if pages == 0:
        return EMPTY_ROOT
    return leaf_hash(b"CTR1" + u32be(pages) + top_root)


@dataclass
class PageRef:
    """A time page a proof touches: its index in the top tree, first position and leaf count."""

    page: int
    first: int
    count: int


def read_pages(r: Reader, max_refs: int) -> tuple[int, list[PageRef]]:
    """`u32be(pages) u32be(refs) (u32be(page) u64be(first) u32be(count))×refs`, at most `max_refs`
    descriptors (one per leaf shown)."""
    pages = r.u32("page count")
    k = r.u32("page refs")
    if k > max_refs or k * 16 > r.remaining():
        raise VerifyError("page refs exceed the leaves shown or the bytes left")
    return pages, [PageRef(r.u32(), r.u64(), r.u32()) for _ in range(k)]


def encode_pages(pages: int, refs: list[PageRef]) -> bytes:
    """What read_pages reads. For provers and tests."""
    return u32be(pages) + u32be(len(refs)) + b"".join(u32be(x.page) + u64be(x.first) + u32be(x.count) for x in refs)


def verify_fixed(n: int, root: bytes, leaves: list[tuple[int, bytes]], lemmas: list[bytes]) -> None:
    """Checks graph leaves ((index, hash), strictly increasing, each < n) against a
    paged graph tree of n leaves with `root`. Accepts an empty claim like
    verify_multiproof (callers decide)."""
    if not leaves:
        return
    check_positions(n, leaves)
    groups: list[tuple[int, list[tuple[int, bytes]]]] = []
    for j, h in leaves:
        p = j // GRAPH_PAGE
        if groups and groups[-1][0] == p:
            groups[-1][1].append((j % GRAPH_PAGE, h))
        else:
            groups.append((p, [(j % GRAPH_PAGE, h)]))
    li = 0
    tops = []
    for p, local in groups:
        page_root, li = fold(min(GRAPH_PAGE, n - p * GRAPH_PAGE), local, lemmas, li)
        tops.append((p, page_root))
    pages = -(-n // GRAPH_PAGE)
    h, li = fold(pages, tops, lemmas, li)
    if li != len(lemmas) or h != root:
        raise VerifyError("multiproof: does not rebuild the root")


def verify_graph(root, leaves: list[tuple[int, bytes]], lemmas: list[bytes]) -> None:
    """Graph leaves against a root record: paged for version-3 roots, one CBMT before."""
    if root.version >= 3:
        verify_fixed(root.graph_leaves, root.graph_root, leaves, lemmas)
    else:
        verify_multiproof(root.graph_leaves, root.graph_root, leaves, lemmas)


def verify_chunked(n: int, pages: int, root: bytes, refs: list[PageRef], leaves: list[tuple[int, bytes]],
                   lemmas: list[bytes]) -> None:
    """Checks time leaves ((position, hash), strictly increasing, each < n) against
    a paged time tree of n leaves in `pages` pages with `root`, using the proof's
    page descriptors (the checks of cairn_index::paged::verify_chunked)."""
    if not leaves:
        return
    check_positions(n, leaves)
    if not refs or pages > n:
        raise VerifyError("bad page descriptor: page count")
    for i, r in enumerate(refs):
        end = r.first + r.count
        if not (r.count > 0 and end <= n and r.page < pages):
            raise VerifyError("bad page descriptor: page out of range")
        if (r.page == 0) != (r.first == 0):
            raise VerifyError("bad page descriptor: only page 0 starts at position 0")
        if (r.page == pages - 1) != (end == n):
            raise VerifyError("bad page descriptor: only the last page ends at the leaf count")
        if i > 0:
            q = refs[i - 1]
            q_end = q.first + q.count
            if r.page <= q.page:
                raise VerifyError("bad page descriptor: pages not in increasing order")
            gap = r.page - q.page - 1
            if (gap == 0 and r.first != q_end) or (gap > 0 and r.first < q_end + gap):
                raise VerifyError("bad page descriptor: pages do not adjoin")
    li = 0
    at = 0
    tops = []
    for r in refs:
        end = r.first + r.count
        local = []
        while at < len(leaves):
            pos, h = leaves[at]
            if pos < r.first:
                raise VerifyError("bad page descriptor: a leaf outside every page")
            if pos >= end:
                break
            local.append((pos - r.first, h))
            at += 1
        if not local:
            raise VerifyError("bad page descriptor: a page without a leaf")
        page_root, li = fold(r.count, local, lemmas, li)
        tops.append((r.page, time_page_leaf(r.first, r.count, page_root)))
    if at != len(leaves):
        raise VerifyError("bad page descriptor: a leaf outside every page")
    top, li = fold(pages, tops, lemmas, li)
    if li != len(lemmas) or time_root_of(pages, top) != root:
        raise VerifyError("multiproof: does not rebuild the root")


# ------------------------------------------------------------------ builders (provers and tests)

def fixed_root(leaves: list[bytes]) -> bytes:
    """The paged graph root over leaf hashes."""
    return tree_root([tree_root(leaves[i:i + GRAPH_PAGE]) for i in range(0, len(leaves), GRAPH_PAGE)])


def fixed_multiproof(leaves: list[bytes], indices: list[int]) -> list[bytes]:
    """Lemmas proving `indices` (strictly increasing) in the paged graph tree."""
    pages = [leaves[i:i + GRAPH_PAGE] for i in range(0, len(leaves), GRAPH_PAGE)]
    out: list[bytes] = []
    touched: list[int] = []
    for p in sorted({j // GRAPH_PAGE for j in indices}):
        out += make_multiproof(pages[p], [j % GRAPH_PAGE for j in indices if j // GRAPH_PAGE == p])
        touched.append(p)
    return out + make_multiproof([tree_root(pg) for pg in pages], touched)


def cut_pages(leaves: list[bytes]) -> list[list[bytes]]:
    """The time tree's pages by the content rule."""
    out, cur = [], []
    for h in leaves:
        cur.append(h)
        if is_cut(h) or len(cur) >= TIME_PAGE_MAX:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def _time_tops(pages: list[list[bytes]]) -> list[bytes]:
    tops, first = [], 0
    for pg in pages:
        tops.append(time_page_leaf(first, len(pg), tree_root(pg)))
        first += len(pg)
    return tops


def chunked_root(leaves: list[bytes]) -> bytes:
    """The paged time root over leaf hashes (in time order)."""
    pages = cut_pages(leaves)
    return time_root_of(len(pages), tree_root(_time_tops(pages)))


def chunked_multiproof(leaves: list[bytes], positions: list[int]) -> tuple[int, list[PageRef], list[bytes]]:
    """(page count, descriptors, lemmas) proving `positions` in the paged time tree."""
    pages = cut_pages(leaves)
    firsts, f = [], 0
    for pg in pages:
        firsts.append(f)
        f += len(pg)
    refs: list[PageRef] = []
    local: list[list[int]] = []
    for pos in positions:
        p = max(i for i, fi in enumerate(firsts) if fi <= pos)
        if not refs or refs[-1].page != p:
            refs.append(PageRef(p, firsts[p], len(pages[p])))
            local.append([])
        local[-1].append(pos - firsts[p])
    out: list[bytes] = []
    for r, loc in zip(refs, local):
        out += make_multiproof(pages[r.page], loc)
    out += make_multiproof(_time_tops(pages), [r.page for r in refs])
    return len(pages), refs, out
