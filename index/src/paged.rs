//! Paged Merkle trees (docs/PROOFS.md, "Paged trees"; root format 3): the commitments a write updates in
//! O(page + pages) instead of O(n).
//!
//! Both trees are two levels of the CBMTs of [`crate::merkle`]: *pages* of leaves, each its own CBMT, under a
//! *top* CBMT over one hash per page.
//!
//! - The **graph tree** ([`FixedTree`]) cuts its leaves into pages of [`GRAPH_PAGE`] by position: graph nodes
//!   only ever append, so every page but the last is final and the layout is a function of the leaf count. The
//!   top tree's leaves are the page roots. Up to one page it is exactly the CBMT of format 2.
//! - The **time tree** ([`ChunkedTree`]) holds live memories in (created_at, id) order, and an old created_at
//!   lands in the middle. Its pages are cut by content, as in a prolly tree: a page ends after a leaf whose hash
//!   starts with a 16-bit value below [`TIME_CUT_BELOW`] (one leaf in 1024 on average), or when it reaches
//!   [`TIME_PAGE_MAX`] leaves. The layout is a function of the set of leaves alone (a replica that learns them
//!   in another order builds the same tree), and an insert or a removal re-cuts one page (rarely two) and
//!   re-hashes the top. Each top leaf commits its page's first position and leaf count, so proofs keep global
//!   positions (List's completeness argument is unchanged), and the time root binds the page count.

use std::collections::BTreeMap;

use crate::merkle::{check_indices, finish, fold, leaf_hash, Hash, MerkleError, Tree, EMPTY_ROOT};

/// Leaves per graph page (the last page holds the rest).
pub const GRAPH_PAGE: u64 = 1024;
/// A time leaf ends its page when the big-endian u16 of its hash's first two bytes is below this (p = 1/1024).
pub const TIME_CUT_BELOW: u16 = 64;
/// A time page also ends when it holds this many leaves.
pub const TIME_PAGE_MAX: usize = 4096;

/// True when a time leaf ends its page by content.
pub fn is_cut(leaf: &Hash) -> bool {
    u16::from_be_bytes([leaf[0], leaf[1]]) < TIME_CUT_BELOW
}

/// The top-tree leaf of a time page: `leaf_hash("CTP1" ‖ u64be(first) ‖ u32be(count) ‖ page_root)`.
pub fn time_page_leaf(first: u64, count: u32, page_root: &Hash) -> Hash {
    let mut b = [0u8; 4 + 8 + 4 + 32];
    b[..4].copy_from_slice(b"CTP1");
    b[4..12].copy_from_slice(&first.to_be_bytes());
    b[12..16].copy_from_slice(&count.to_be_bytes());
    b[16..].copy_from_slice(page_root);
    leaf_hash(&b)
}

/// The time root over `pages` pages: `leaf_hash("CTR1" ‖ u32be(pages) ‖ top_root)`, or 32 zero bytes for no
/// pages.
pub fn time_root(pages: u32, top_root: &Hash) -> Hash {
    if pages == 0 {
        return EMPTY_ROOT;
    }
    let mut b = [0u8; 4 + 4 + 32];
    b[..4].copy_from_slice(b"CTR1");
    b[4..8].copy_from_slice(&pages.to_be_bytes());
    b[8..].copy_from_slice(top_root);
    leaf_hash(&b)
}

/// Why a paged proof was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PagedError {
    /// A page's or the top tree's multiproof failed.
    #[error(transparent)]
    Merkle(#[from] MerkleError),
    /// The page descriptors do not describe consecutive, non-overlapping pages of the committed leaves.
    #[error("bad page descriptor: {0}")]
    Pages(&'static str),
}

// ---------------------------------------------------------------------------------------------------------
// Graph tree: fixed pages

/// The graph tree: fixed pages of [`GRAPH_PAGE`] leaves under a top CBMT of page roots. Append-only in layout;
/// any leaf may change in place.
#[derive(Debug, Clone, Default)]
pub struct FixedTree {
    leaves: Vec<Hash>,
    pages: Vec<Tree>,
    top: Tree,
    /// Pages whose tree is stale (changed or grown leaves).
    dirty: BTreeMap<usize, Vec<u64>>,
    /// Pages added or grown since the last [`FixedTree::commit`] (rebuilt whole).
    regrow: std::collections::BTreeSet<usize>,
}

impl FixedTree {
    /// Builds the tree over leaf hashes (in order).
    pub fn build(leaves: &[Hash]) -> Self {
        let mut t = FixedTree {
            leaves: leaves.to_vec(),
            ..FixedTree::default()
        };
        t.pages = t
            .leaves
            .chunks(GRAPH_PAGE as usize)
            .map(Tree::build)
            .collect();
        t.top = Tree::build(&t.pages.iter().map(Tree::root).collect::<Vec<_>>());
        t
    }

    /// Leaf count.
    pub fn len(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// True without leaves.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// Leaf `j`'s hash.
    pub fn leaf(&self, j: u64) -> Option<&Hash> {
        self.leaves.get(usize::try_from(j).ok()?)
    }

    /// Appends a leaf (takes effect at the next [`FixedTree::commit`]).
    pub fn push(&mut self, h: Hash) {
        let j = self.leaves.len();
        self.leaves.push(h);
        self.regrow.insert(j / GRAPH_PAGE as usize);
    }

    /// Replaces leaf `j` (ignored past the end; takes effect at the next [`FixedTree::commit`]).
    pub fn set(&mut self, j: u64, h: Hash) {
        let Some(slot) = usize::try_from(j).ok().and_then(|j| self.leaves.get_mut(j)) else {
            return;
        };
        if *slot == h {
            return;
        }
        *slot = h;
        let page = (j / GRAPH_PAGE) as usize;
        self.dirty.entry(page).or_default().push(j % GRAPH_PAGE);
    }

    /// Drops every leaf from `len` on (a replica's full transfer starts over with [`FixedTree::build`]).
    pub fn truncate(&mut self, len: usize) {
        if len < self.leaves.len() {
            *self = FixedTree::build(&self.leaves[..len]);
        }
    }

    /// Re-hashes what changed since the last commit: the changed leaves' paths in their pages, grown pages
    /// whole, and the top tree (whole when the page count changed, else the changed pages' paths).
    pub fn commit(&mut self) {
        if self.dirty.is_empty() && self.regrow.is_empty() {
            return;
        }
        let page = GRAPH_PAGE as usize;
        let pages_before = self.pages.len();
        let mut changed: Vec<u64> = Vec::new();
        for &p in &self.regrow {
            let lo = p * page;
            let hi = (lo + page).min(self.leaves.len());
            let Some(slice) = self.leaves.get(lo..hi) else {
                continue;
            };
            let t = Tree::build(slice);
            if p < self.pages.len() {
                self.pages[p] = t;
            } else {
                self.pages.push(t);
            }
            changed.push(p as u64);
        }
        for (&p, local) in &self.dirty {
            if self.regrow.contains(&p) {
                continue;
            }
            let Some(t) = self.pages.get_mut(p) else {
                continue;
            };
            let lo = p * page;
            let changes: Vec<(u64, Hash)> = local
                .iter()
                .filter_map(|&i| Some((i, *self.leaves.get(lo + i as usize)?)))
                .collect();
            t.update(&changes);
            changed.push(p as u64);
        }
        self.dirty.clear();
        self.regrow.clear();
        if self.pages.len() != pages_before {
            self.top = Tree::build(&self.pages.iter().map(Tree::root).collect::<Vec<_>>());
        } else {
            changed.sort_unstable();
            changed.dedup();
            let roots: Vec<(u64, Hash)> = changed
                .iter()
                .filter_map(|&p| Some((p, self.pages.get(p as usize)?.root())))
                .collect();
            self.top.update(&roots);
        }
    }

    /// The root ([`EMPTY_ROOT`] when empty). Call [`FixedTree::commit`] first.
    pub fn root(&self) -> Hash {
        self.top.root()
    }

    /// The lemmas proving the leaves at `indices` (strictly increasing, in range): each touched page's lemmas
    /// in page order, then the top tree's, as [`verify_fixed`] consumes them. Call [`FixedTree::commit`] first.
    pub fn prove(&self, indices: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        check_indices(indices, self.len())?;
        let mut lemmas = Vec::new();
        let mut touched = Vec::new();
        for (p, local) in group_fixed(indices) {
            let t = self.pages.get(p as usize).ok_or(MerkleError::LemmaCount)?;
            lemmas.extend(t.prove(&local)?);
            touched.push(p);
        }
        lemmas.extend(self.top.prove(&touched)?);
        Ok(lemmas)
    }
}

/// Strictly increasing indices grouped by graph page: (page, indices within it).
fn group_fixed(indices: &[u64]) -> Vec<(u64, Vec<u64>)> {
    let mut out: Vec<(u64, Vec<u64>)> = Vec::new();
    for &j in indices {
        let (p, i) = (j / GRAPH_PAGE, j % GRAPH_PAGE);
        match out.last_mut() {
            Some((q, l)) if *q == p => l.push(i),
            _ => out.push((p, vec![i])),
        }
    }
    out
}

/// Checks that `leaves` ((index, hash), indices strictly increasing) sit in a graph tree of `count` leaves with
/// root `root`, using `lemmas` from [`FixedTree::prove`]. Never panics.
pub fn verify_fixed(
    root: &Hash,
    count: u64,
    leaves: &[(u64, Hash)],
    lemmas: &[Hash],
) -> Result<(), MerkleError> {
    let indices: Vec<u64> = leaves.iter().map(|l| l.0).collect();
    check_indices(&indices, count)?;
    let mut lemma = lemmas.iter();
    let mut tops: Vec<(u64, Hash)> = Vec::new();
    let mut at = 0usize;
    for (p, local) in group_fixed(&indices) {
        let page_leaves: Vec<(u64, Hash)> = local
            .iter()
            .zip(&leaves[at..at + local.len()])
            .map(|(&i, &(_, h))| (i, h))
            .collect();
        at += local.len();
        // Pages before the last are full; the last holds the rest (p < pages, so this is at least 1).
        let in_page = (count - p * GRAPH_PAGE).min(GRAPH_PAGE);
        tops.push((p, fold(in_page, &page_leaves, &mut lemma)?));
    }
    let pages = count.div_ceil(GRAPH_PAGE);
    let h = fold(pages, &tops, &mut lemma)?;
    finish(root, &h, lemma)
}

/// Checks graph leaves against a root record's graph tree: paged ([`verify_fixed`]) for version-3 roots, one
/// whole CBMT ([`crate::merkle::verify`]) before. Every verifier of graph nodes goes through here.
pub fn verify_graph(
    rec: &crate::root::RootRecord,
    leaves: &[(u64, Hash)],
    lemmas: &[Hash],
) -> Result<(), MerkleError> {
    if rec.paged() {
        verify_fixed(&rec.graph_root, rec.graph_leaves, leaves, lemmas)
    } else {
        crate::merkle::verify(&rec.graph_root, rec.graph_leaves, leaves, lemmas)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Time tree: content-cut pages

/// Where a time page sits: its index in the top tree, its first leaf's position and its leaf count. Proofs
/// carry one per page they touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRef {
    /// Index of the page in the top tree.
    pub page: u32,
    /// Position of its first leaf.
    pub first: u64,
    /// Its leaf count (≥ 1).
    pub count: u32,
}

/// The pages of a content-cut tree ([`ChunkedTree`]) that one multiproof touches: the tree's page count (bound
/// by its root) and a descriptor per touched page. Time proofs and the term-tree half of lexical proofs carry
/// one against version-3 roots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkedPages {
    /// The tree's page count.
    pub pages: u32,
    /// One descriptor per touched page, in page order.
    pub refs: Vec<PageRef>,
}

#[derive(Debug, Clone, Default)]
struct Page {
    leaves: Vec<Hash>,
    tree: Tree,
}

/// The time tree: leaves in order, cut into pages by content (see the module doc), under a top CBMT of
/// [`time_page_leaf`]s. Inserts and removals anywhere; [`ChunkedTree::commit`] re-cuts the pages they touched.
#[derive(Debug, Clone, Default)]
pub struct ChunkedTree {
    pages: Vec<Page>,
    /// First position of each page (kept current by every insert and removal).
    firsts: Vec<u64>,
    len: u64,
    top: Tree,
    /// Pages whose leaves changed since the last commit.
    dirty: std::collections::BTreeSet<usize>,
}

/// Cuts leaves into pages by the content rule.
fn cut(leaves: &[Hash]) -> Vec<Vec<Hash>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for h in leaves {
        cur.push(*h);
        if is_cut(h) || cur.len() >= TIME_PAGE_MAX {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// True when a page's last leaf ends it by rule (content or size), so the next page starts afresh.
fn ends_cut(page: &[Hash]) -> bool {
    page.last().is_some_and(is_cut) || page.len() >= TIME_PAGE_MAX
}

impl ChunkedTree {
    /// Builds the tree over leaf hashes (in order).
    pub fn build(leaves: &[Hash]) -> Self {
        let mut t = ChunkedTree {
            pages: cut(leaves)
                .into_iter()
                .map(|l| Page {
                    tree: Tree::build(&l),
                    leaves: l,
                })
                .collect(),
            len: leaves.len() as u64,
            ..ChunkedTree::default()
        };
        t.refirst(0);
        t.retop();
        t
    }

    /// Leaf count.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True without leaves.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Page count.
    pub fn pages(&self) -> u32 {
        self.pages.len() as u32
    }

    fn refirst(&mut self, from: usize) {
        self.firsts.truncate(from);
        let mut f = match from.checked_sub(1) {
            Some(p) => self.firsts[p] + self.pages[p].leaves.len() as u64,
            None => 0,
        };
        for p in &self.pages[from..] {
            self.firsts.push(f);
            f += p.leaves.len() as u64;
        }
    }

    fn retop(&mut self) {
        let tops: Vec<Hash> = self
            .pages
            .iter()
            .zip(&self.firsts)
            .map(|(p, &f)| time_page_leaf(f, p.leaves.len() as u32, &p.tree.root()))
            .collect();
        self.top = Tree::build(&tops);
    }

    /// The page holding position `pos` (the last page for `pos == len`) and the index within it.
    fn locate(&self, pos: u64) -> Option<(usize, usize)> {
        let p = self.firsts.partition_point(|&f| f <= pos).checked_sub(1)?;
        Some((p, (pos - self.firsts[p]) as usize))
    }

    /// Inserts a leaf at position `pos` (`pos ≤ len`; takes effect at the next [`ChunkedTree::commit`]).
    pub fn insert(&mut self, pos: u64, h: Hash) {
        if self.pages.is_empty() {
            self.pages.push(Page::default());
            self.firsts.push(0);
        }
        let pos = pos.min(self.len);
        let Some((p, i)) = self.locate(pos) else {
            return;
        };
        let page = &mut self.pages[p].leaves;
        page.insert(i.min(page.len()), h);
        self.len += 1;
        for f in &mut self.firsts[p + 1..] {
            *f += 1;
        }
        self.dirty.insert(p);
    }

    /// Removes the leaf at position `pos` (ignored past the end; takes effect at the next commit).
    pub fn remove(&mut self, pos: u64) {
        if pos >= self.len {
            return;
        }
        let Some((p, i)) = self.locate(pos) else {
            return;
        };
        let page = &mut self.pages[p].leaves;
        if i < page.len() {
            page.remove(i);
            self.len -= 1;
            for f in &mut self.firsts[p + 1..] {
                *f -= 1;
            }
            self.dirty.insert(p);
        }
    }

    /// Replaces the leaf at position `pos` (ignored past the end; takes effect at the next commit).
    pub fn set(&mut self, pos: u64, h: Hash) {
        if pos >= self.len {
            return;
        }
        let Some((p, i)) = self.locate(pos) else {
            return;
        };
        if let Some(slot) = self.pages[p].leaves.get_mut(i) {
            if *slot != h {
                *slot = h;
                self.dirty.insert(p);
            }
        }
    }

    /// Re-cuts the changed pages (carrying into the next page while a re-cut page no longer ends at a cut),
    /// re-hashes them and rebuilds the top tree. The result equals [`ChunkedTree::build`] over the leaves.
    pub fn commit(&mut self) {
        let Some(&first_dirty) = self.dirty.first() else {
            return;
        };
        let old = std::mem::take(&mut self.pages);
        let mut out: Vec<Page> = Vec::with_capacity(old.len() + 1);
        let mut carry: Vec<Hash> = Vec::new();
        for (p, page) in old.into_iter().enumerate() {
            if carry.is_empty() && !self.dirty.contains(&p) {
                out.push(page);
                continue;
            }
            carry.extend(page.leaves);
            let mut pieces = cut(&carry);
            carry = match pieces.last() {
                Some(last) if !ends_cut(last) => pieces.pop().unwrap_or_default(),
                _ => Vec::new(),
            };
            out.extend(pieces.into_iter().map(|l| Page {
                tree: Tree::build(&l),
                leaves: l,
            }));
        }
        if !carry.is_empty() {
            out.push(Page {
                tree: Tree::build(&carry),
                leaves: carry,
            });
        }
        self.pages = out;
        self.dirty.clear();
        self.refirst(first_dirty.min(self.pages.len()));
        self.retop();
    }

    /// The root ([`EMPTY_ROOT`] when empty). Call [`ChunkedTree::commit`] first.
    pub fn root(&self) -> Hash {
        time_root(self.pages.len() as u32, &self.top.root())
    }

    /// The page descriptors and lemmas proving the leaves at `positions` (strictly increasing, in range): each
    /// touched page's lemmas in page order, then the top tree's, as [`verify_chunked`] consumes them. Call
    /// [`ChunkedTree::commit`] first.
    pub fn prove(&self, positions: &[u64]) -> Result<(Vec<PageRef>, Vec<Hash>), MerkleError> {
        check_indices(positions, self.len)?;
        let mut refs: Vec<PageRef> = Vec::new();
        let mut locals: Vec<Vec<u64>> = Vec::new();
        for &pos in positions {
            let (p, i) = self.locate(pos).ok_or(MerkleError::LemmaCount)?;
            match refs.last() {
                Some(r) if r.page as usize == p => {}
                _ => {
                    refs.push(PageRef {
                        page: p as u32,
                        first: self.firsts[p],
                        count: self.pages[p].leaves.len() as u32,
                    });
                    locals.push(Vec::new());
                }
            }
            if let Some(l) = locals.last_mut() {
                l.push(i as u64);
            }
        }
        let mut lemmas = Vec::new();
        for (r, local) in refs.iter().zip(&locals) {
            lemmas.extend(self.pages[r.page as usize].tree.prove(local)?);
        }
        let ks: Vec<u64> = refs.iter().map(|r| u64::from(r.page)).collect();
        lemmas.extend(self.top.prove(&ks)?);
        Ok((refs, lemmas))
    }
}

/// Checks that `leaves` ((position, hash), positions strictly increasing) sit in a time tree of `count` leaves
/// in `pages` pages with root `root`, using the page descriptors and lemmas of [`ChunkedTree::prove`]. The
/// descriptors must be in page order, each non-empty, within the leaves, page 0 exactly the one at position
/// 0, the last page exactly the one ending at `count`, and pages with adjacent indices must adjoin; every leaf
/// must fall in one of them and every one must hold a leaf. Never panics.
pub fn verify_chunked(
    root: &Hash,
    count: u64,
    pages: u32,
    refs: &[PageRef],
    leaves: &[(u64, Hash)],
    lemmas: &[Hash],
) -> Result<(), PagedError> {
    let positions: Vec<u64> = leaves.iter().map(|l| l.0).collect();
    check_indices(&positions, count)?;
    let bad = |why| Err(PagedError::Pages(why));
    if refs.is_empty() || u64::from(pages) > count {
        return bad("page count");
    }
    for (i, r) in refs.iter().enumerate() {
        let end = r.first.checked_add(u64::from(r.count));
        match end {
            Some(end) if r.count > 0 && end <= count && r.page < pages => {
                if (r.page == 0) != (r.first == 0) {
                    return bad("only page 0 starts at position 0");
                }
                if (r.page == pages - 1) != (end == count) {
                    return bad("only the last page ends at the leaf count");
                }
                if let Some(prev) = i.checked_sub(1).and_then(|j| refs.get(j)) {
                    let prev_end = prev.first + u64::from(prev.count);
                    if r.page <= prev.page {
                        return bad("pages not in increasing order");
                    }
                    let gap = u64::from(r.page - prev.page - 1);
                    if (gap == 0 && r.first != prev_end) || (gap > 0 && r.first < prev_end + gap) {
                        return bad("pages do not adjoin");
                    }
                }
            }
            _ => return bad("page out of range"),
        }
    }
    let mut lemma = lemmas.iter();
    let mut tops: Vec<(u64, Hash)> = Vec::with_capacity(refs.len());
    let mut at = 0usize;
    for r in refs {
        let end = r.first + u64::from(r.count);
        let mut local: Vec<(u64, Hash)> = Vec::new();
        while let Some(&(pos, h)) = leaves.get(at) {
            if pos < r.first {
                return bad("a leaf outside every page");
            }
            if pos >= end {
                break;
            }
            local.push((pos - r.first, h));
            at += 1;
        }
        if local.is_empty() {
            return bad("a page without a leaf");
        }
        let page_root = fold(u64::from(r.count), &local, &mut lemma)?;
        tops.push((
            u64::from(r.page),
            time_page_leaf(r.first, r.count, &page_root),
        ));
    }
    if at != leaves.len() {
        return bad("a leaf outside every page");
    }
    let top = fold(u64::from(pages), &tops, &mut lemma)?;
    Ok(finish(root, &time_root(pages, &top), lemma)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u64) -> Hash {
        leaf_hash(&i.to_be_bytes())
    }

    #[test]
    fn one_graph_page_is_the_plain_cbmt() {
        for n in [1u64, 2, 3, 1000, GRAPH_PAGE] {
            let l: Vec<Hash> = (0..n).map(h).collect();
            assert_eq!(
                FixedTree::build(&l).root(),
                Tree::build(&l).root(),
                "n = {n}"
            );
        }
        assert_eq!(FixedTree::build(&[]).root(), EMPTY_ROOT);
    }

    #[test]
    fn fixed_updates_equal_a_rebuild_and_proofs_verify() {
        let mut l: Vec<Hash> = (0..2500).map(h).collect();
        let mut t = FixedTree::build(&l[..1500]);
        for (j, &leaf) in l.iter().enumerate().skip(1500) {
            t.push(leaf);
            if j % 333 == 0 {
                t.commit();
            }
        }
        for j in (0..2500).step_by(97) {
            l[j] = h(10_000 + j as u64);
            t.set(j as u64, l[j]);
        }
        t.commit();
        let full = FixedTree::build(&l);
        assert_eq!(t.root(), full.root());
        for idx in [
            vec![0u64],
            vec![5, 1023, 1024, 2047, 2048, 2499],
            (0..2500).step_by(211).collect(),
        ] {
            let lemmas = t.prove(&idx).unwrap();
            let claimed: Vec<(u64, Hash)> = idx.iter().map(|&j| (j, l[j as usize])).collect();
            assert_eq!(verify_fixed(&t.root(), 2500, &claimed, &lemmas), Ok(()));
            let mut bad = claimed.clone();
            bad[0].1[3] ^= 1;
            assert!(verify_fixed(&t.root(), 2500, &bad, &lemmas).is_err());
            // The root does not bind the leaf count (the signed record does): a wrong count fails when it changes
            // the shape the proof walks, here the page count or the last page's size.
            assert!(verify_fixed(&t.root(), 3100, &claimed, &lemmas).is_err());
            if idx.last() == Some(&2499) {
                assert!(verify_fixed(&t.root(), 2501, &claimed, &lemmas).is_err());
            }
            assert!(verify_fixed(&t.root(), 2500, &claimed, &lemmas[1..]).is_err());
            let mut more = lemmas.clone();
            more.push([1; 32]);
            assert!(verify_fixed(&t.root(), 2500, &claimed, &more).is_err());
        }
    }

    /// Leaves whose hash is a cut every `every` leaves, else not (to make small pages in tests).
    fn timed(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| {
                let mut x = h(i);
                x[0] = if i % 7 == 3 { 0 } else { 0xff };
                x[1] = 0;
                x
            })
            .collect()
    }

    #[test]
    fn chunked_inserts_and_removals_equal_a_rebuild() {
        let all = timed(600);
        let mut held: Vec<Hash> = all[..300].to_vec();
        let mut t = ChunkedTree::build(&held);
        let mut x = 12345u64;
        for step in 0..900u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if x.is_multiple_of(3) && !held.is_empty() {
                let pos = (x >> 33) % held.len() as u64;
                held.remove(pos as usize);
                t.remove(pos);
            } else if x % 5 == 1 && !held.is_empty() {
                let pos = (x >> 33) % held.len() as u64;
                let leaf = all[((step * 7) % 600) as usize];
                held[pos as usize] = leaf;
                t.set(pos, leaf);
            } else {
                let pos = (x >> 33) % (held.len() as u64 + 1);
                let leaf = all[(step % 600) as usize];
                held.insert(pos as usize, leaf);
                t.insert(pos, leaf);
            }
            if step % 5 == 0 {
                t.commit();
                let full = ChunkedTree::build(&held);
                assert_eq!(t.root(), full.root(), "step {step}");
                assert_eq!(t.firsts, full.firsts, "step {step}");
            }
        }
    }

    #[test]
    fn chunked_pages_are_capped_and_cut_by_content() {
        // No content cuts at all: pages of TIME_PAGE_MAX.
        let l: Vec<Hash> = (0..(TIME_PAGE_MAX as u64 * 2 + 5))
            .map(|i| {
                let mut x = h(i);
                x[0] = 0xff;
                x
            })
            .collect();
        let t = ChunkedTree::build(&l);
        assert_eq!(t.pages(), 3);
        let t = ChunkedTree::build(&timed(70));
        assert_eq!(t.pages(), 11);
        assert_eq!(ChunkedTree::build(&[]).root(), EMPTY_ROOT);
    }

    #[test]
    fn chunked_proofs_verify_and_every_descriptor_lie_is_refused() {
        let l = timed(200);
        let t = ChunkedTree::build(&l);
        let n = l.len() as u64;
        for idx in [
            vec![0u64],
            vec![3, 4, 5, 6, 7, 8],
            vec![199],
            (0..200).step_by(13).collect(),
        ] {
            let (refs, lemmas) = t.prove(&idx).unwrap();
            let claimed: Vec<(u64, Hash)> = idx.iter().map(|&j| (j, l[j as usize])).collect();
            assert_eq!(
                verify_chunked(&t.root(), n, t.pages(), &refs, &claimed, &lemmas),
                Ok(())
            );
            let mut bad = claimed.clone();
            bad[0].1[9] ^= 1;
            assert!(verify_chunked(&t.root(), n, t.pages(), &refs, &bad, &lemmas).is_err());
            assert!(verify_chunked(&t.root(), n, t.pages() + 1, &refs, &claimed, &lemmas).is_err());
            if idx.last() == Some(&199) {
                assert!(
                    verify_chunked(&t.root(), n + 1, t.pages(), &refs, &claimed, &lemmas).is_err()
                );
            }
            for i in 0..refs.len() {
                for f in [
                    |r: &mut PageRef| r.first += 1,
                    |r: &mut PageRef| r.count += 1,
                    |r: &mut PageRef| r.page += 1,
                    |r: &mut PageRef| r.count = 0,
                ] {
                    let mut rs = refs.clone();
                    f(&mut rs[i]);
                    assert!(
                        verify_chunked(&t.root(), n, t.pages(), &rs, &claimed, &lemmas).is_err()
                    );
                }
            }
            assert!(verify_chunked(&t.root(), n, t.pages(), &[], &claimed, &lemmas).is_err());
        }
    }
}
