"""Paged trees of root version 3 (docs/PROOFS.md, "Paged trees"): the published
vectors, builder/verifier round trips, and every descriptor lie refused."""

import random

import pytest

from cairn.verifier import VerifyError
from cairn.verifier.merkle import leaf_hash, tree_root
from cairn.verifier.paged import (
    GRAPH_PAGE,
    PageRef,
    chunked_multiproof,
    chunked_root,
    cut_pages,
    fixed_multiproof,
    fixed_root,
    verify_chunked,
    verify_fixed,
)
from cairn.verifier.wire import u64be

LEAVES = [leaf_hash(u64be(i)) for i in range(2500)]


def test_published_vectors():
    idx = [5, 1023, 1024, 2499]
    claimed = [(j, LEAVES[j]) for j in idx]
    groot = fixed_root(LEAVES)
    glem = fixed_multiproof(LEAVES, idx)
    verify_fixed(2500, groot, claimed, glem)
    pages, refs, tlem = chunked_multiproof(LEAVES, idx)
    troot = chunked_root(LEAVES)
    verify_chunked(2500, pages, troot, refs, claimed, tlem)
    got = (f"graph_root {groot.hex()} graph_lemmas {len(glem)} time_pages {pages} time_root {troot.hex()} "
           f"refs {[(r.page, r.first, r.count) for r in refs]} time_lemmas {len(tlem)}")
    assert got == "graph_root 7c430b8a7d6b5984996a7355b8c208da1a28276c58c13da0a0269eead92bb30b graph_lemmas 37 time_pages 5 time_root 50923da1b5a4e946e39ec7b097ffdbc28a774b0c60471a7e0a47bab8c240b532 refs [(0, 0, 604), (2, 892, 357), (4, 1607, 893)] time_lemmas 28"


def test_one_graph_page_is_the_plain_cbmt():
    for n in (1, 2, 3, 1000, GRAPH_PAGE):
        assert fixed_root(LEAVES[:n]) == tree_root(LEAVES[:n])


def test_fixed_proofs_and_tampering():
    rng = random.Random(7)
    for _ in range(20):
        idx = sorted(rng.sample(range(2500), rng.randint(1, 12)))
        claimed = [(j, LEAVES[j]) for j in idx]
        root = fixed_root(LEAVES)
        lem = fixed_multiproof(LEAVES, idx)
        verify_fixed(2500, root, claimed, lem)
        bad = list(claimed)
        bad[0] = (bad[0][0], bytes(32))
        # The root does not bind the leaf count (the signed record does): a wrong count fails when it changes
        # the shape the proof walks (the page count, or the last page's size when the proof touches it).
        cases = [(2500, root, bad, lem), (3100, root, claimed, lem),
                 (2500, root, claimed, lem[1:]), (2500, root, claimed, lem + [bytes(32)])]
        if idx[-1] == 2499:
            cases.append((2501, root, claimed, lem))
        for args in cases:
            with pytest.raises(VerifyError):
                verify_fixed(*args)


def _timed(n):
    out = []
    for i in range(n):
        h = bytearray(leaf_hash(u64be(i)))
        h[0] = 0 if i % 7 == 3 else 0xFF
        h[1] = 0
        out.append(bytes(h))
    return out


def test_chunked_pages_and_descriptor_lies():
    leaves = _timed(200)
    assert len(cut_pages(leaves)) == 29
    root = chunked_root(leaves)
    for idx in ([0], [3, 4, 5, 6, 7, 8], [199], list(range(0, 200, 13))):
        claimed = [(j, leaves[j]) for j in idx]
        pages, refs, lem = chunked_multiproof(leaves, idx)
        verify_chunked(200, pages, root, refs, claimed, lem)
        with pytest.raises(VerifyError):
            verify_chunked(200, pages + 1, root, refs, claimed, lem)
        if idx[-1] == 199:
            with pytest.raises(VerifyError):
                verify_chunked(201, pages, root, refs, claimed, lem)
        with pytest.raises(VerifyError):
            verify_chunked(200, pages, root, [], claimed, lem)
        for i in range(len(refs)):
            for field, delta in (("first", 1), ("count", 1), ("page", 1), ("count", -refs[i].count)):
                rs = [PageRef(r.page, r.first, r.count) for r in refs]
                setattr(rs[i], field, getattr(rs[i], field) + delta)
                with pytest.raises(VerifyError):
                    verify_chunked(200, pages, root, rs, claimed, lem)


def test_leaf_counts_above_2_to_the_62_are_refused():
    # As the Rust verifier (MerkleError::TooManyLeaves): no tree has that many leaves.
    from cairn.verifier.merkle import check_positions

    check_positions(1 << 62, [((1 << 62) - 1, b"")])
    for n in (2**64 - 1, (1 << 62) + 1):
        with pytest.raises(VerifyError, match="too large"):
            check_positions(n, [(n - 1, b"")])
