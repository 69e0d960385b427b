//! A complete binary Merkle tree (CBMT) with domain-separated hashing and range-checked multiproofs.
//!
//! Trees are built by the `merkle-cbt` crate (with [`NodeMerge`] as its merge); proofs and their verification are
//! Cairn's own, because merkle-cbt's verifier neither range-checks leaf positions nor knows the leaf count.
//! Layout as in the `merkle-cbt` crate: for `n` leaves the tree has `2n − 1` nodes in one array, the root at
//! position 0, the children of `i` at `2i + 1` and `2i + 2`, and leaf `j` at position `n − 1 + j`. Unlike a
//! bare CBMT, leaves (unkeyed, 0x00 prefix) and interior nodes (keyed) are hashed apart, the leaf count is an input of
//! every verification (roots commit to it separately), and every claimed leaf position is range-checked, so
//! an interior node can never pass as a leaf (see docs/PROOFS.md, "Merkle trees").

use std::collections::{BTreeMap, BTreeSet};

/// A 32-byte hash.
pub type Hash = [u8; 32];

/// The BLAKE3 key of interior nodes (32 ASCII bytes). Keyed hashing separates interior nodes from leaves
/// (which are hashed unkeyed with a 0x00 prefix) and keeps a node's input at exactly one 64-byte block.
pub const NODE_KEY: &[u8; 32] = b"CAIRN-MERKLE-INTERIOR-NODE-V1...";

/// Interior node: keyed BLAKE3 under [`NODE_KEY`] of `left ‖ right`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(left);
    buf[32..].copy_from_slice(right);
    *blake3::keyed_hash(NODE_KEY, &buf).as_bytes()
}

/// Leaf: BLAKE3(0x00 ‖ leaf bytes).
pub fn leaf_hash(bytes: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[0x00]);
    h.update(bytes);
    *h.finalize().as_bytes()
}

/// merkle-cbt's merge for Cairn's interior nodes: [`node_hash`] (keyed, so never equal to a leaf's hash).
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeMerge;

impl merkle_cbt::merkle_tree::Merge for NodeMerge {
    type Item = Hash;
    fn merge(left: &Hash, right: &Hash) -> Hash {
        node_hash(left, right)
    }
}

/// The root of an empty tree: 32 zero bytes.
pub const EMPTY_ROOT: Hash = [0u8; 32];

/// Why a multiproof was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// A leaf index is not below the leaf count.
    #[error("leaf index {index} out of range for {count} leaves")]
    IndexOutOfRange {
        /// Claimed leaf index.
        index: u64,
        /// Committed leaf count.
        count: u64,
    },
    /// Leaf indices are not strictly increasing.
    #[error("leaf indices not strictly increasing")]
    Unordered,
    /// Too few or too many sibling hashes.
    #[error("wrong number of sibling hashes")]
    LemmaCount,
    /// The recomputed root differs.
    #[error("root mismatch")]
    RootMismatch,
    /// Nothing to prove.
    #[error("empty proof")]
    Empty,
    /// A leaf count no tree can have: its node positions (2·count − 1) would not fit in 64 bits.
    #[error("leaf count {0} is too large for a tree")]
    TooManyLeaves(u64),
}

/// The most leaves a tree may claim (2⁶²): node positions `count − 1 + index` then always fit in a u64.
pub const MAX_LEAVES: u64 = 1 << 62;

fn sibling(i: u64) -> u64 {
    ((i + 1) ^ 1) - 1
}

fn parent(i: u64) -> u64 {
    (i - 1) / 2
}

/// A whole tree, kept by the prover.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    nodes: Vec<Hash>,
    leaves: u64,
}

impl Tree {
    /// Builds the tree over leaf hashes (in order), with merkle-cbt.
    pub fn build(leaves: &[Hash]) -> Self {
        if leaves.is_empty() {
            return Tree::default();
        }
        let t = merkle_cbt::CBMT::<Hash, NodeMerge>::build_merkle_tree(leaves);
        Tree {
            nodes: t.nodes().to_vec(),
            leaves: leaves.len() as u64,
        }
    }

    /// Replaces leaves in place (leaf index, new hash) and re-hashes only their paths to the root: what
    /// [`Tree::build`] over the changed leaves gives, in O(changes × log n). Indices past the end are ignored.
    pub fn update(&mut self, changes: &[(u64, Hash)]) {
        let n = self.leaves;
        let mut inner: Vec<u64> = Vec::with_capacity(changes.len() * 2);
        for &(i, h) in changes {
            if i >= n {
                continue;
            }
            let mut at = n - 1 + i;
            if let Some(slot) = self.nodes.get_mut(at as usize) {
                *slot = h;
            }
            while at > 0 {
                at = parent(at);
                inner.push(at);
            }
        }
        // Children sit at higher indices than their parent: in descending order every node is re-hashed after
        // both its children are final.
        inner.sort_unstable_by(|a, b| b.cmp(a));
        inner.dedup();
        for p in inner {
            let (l, r) = (2 * p + 1, 2 * p + 2);
            if let (Some(a), Some(b)) = (self.nodes.get(l as usize), self.nodes.get(r as usize)) {
                let h = node_hash(a, b);
                if let Some(slot) = self.nodes.get_mut(p as usize) {
                    *slot = h;
                }
            }
        }
    }

    /// Leaf count.
    pub fn len(&self) -> u64 {
        self.leaves
    }

    /// True without leaves.
    pub fn is_empty(&self) -> bool {
        self.leaves == 0
    }

    /// The root ([`EMPTY_ROOT`] when empty).
    pub fn root(&self) -> Hash {
        self.nodes.first().copied().unwrap_or(EMPTY_ROOT)
    }

    /// The sibling hashes proving the leaves at `indices` (strictly increasing, in range), in the order
    /// [`verify`] consumes them.
    pub fn prove(&self, indices: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        check_indices(indices, self.leaves)?;
        let n = self.leaves;
        let mut pending: BTreeSet<u64> = indices.iter().map(|&j| n - 1 + j).collect();
        let mut lemmas = Vec::new();
        while let Some(i) = pending.pop_last() {
            if i == 0 {
                break;
            }
            let s = sibling(i);
            if !pending.remove(&s) {
                lemmas.push(self.nodes[s as usize]);
            }
            pending.insert(parent(i));
        }
        Ok(lemmas)
    }
}

/// Leaf indices must be non-empty, strictly increasing and below `count` (shared with [`crate::paged`]).
pub(crate) fn check_indices(indices: &[u64], count: u64) -> Result<(), MerkleError> {
    if count > MAX_LEAVES {
        return Err(MerkleError::TooManyLeaves(count));
    }
    if indices.is_empty() {
        return Err(MerkleError::Empty);
    }
    for w in indices.windows(2) {
        if w[0] >= w[1] {
            return Err(MerkleError::Unordered);
        }
    }
    if let Some(&last) = indices.last() {
        if last >= count {
            return Err(MerkleError::IndexOutOfRange { index: last, count });
        }
    }
    Ok(())
}

/// Checks that `leaves` (pairs of leaf index and leaf hash, indices strictly increasing) sit in a tree of
/// `count` leaves with root `root`, using `lemmas` from [`Tree::prove`]. Never panics.
pub fn verify(
    root: &Hash,
    count: u64,
    leaves: &[(u64, Hash)],
    lemmas: &[Hash],
) -> Result<(), MerkleError> {
    let mut lemma = lemmas.iter();
    let h = fold(count, leaves, &mut lemma)?;
    finish(root, &h, lemma)
}

/// The end of every multiproof check: every lemma consumed and the recomputed root equal to the committed one.
pub(crate) fn finish(
    root: &Hash,
    got: &Hash,
    mut rest: std::slice::Iter<'_, Hash>,
) -> Result<(), MerkleError> {
    if rest.next().is_some() {
        return Err(MerkleError::LemmaCount);
    }
    if got == root {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch)
    }
}

/// The root that `leaves` (strictly increasing indices, range-checked against `count`) imply with the lemmas
/// taken from `lemma` in [`Tree::prove`]'s order; lemmas after those the tree needs are left in `lemma` (paged
/// trees fold several trees from one lemma list). Never panics.
pub fn fold(
    count: u64,
    leaves: &[(u64, Hash)],
    lemma: &mut std::slice::Iter<'_, Hash>,
) -> Result<Hash, MerkleError> {
    let indices: Vec<u64> = leaves.iter().map(|l| l.0).collect();
    check_indices(&indices, count)?;
    let n = count;
    // Always combine the highest pending position first: its sibling's subtree is then complete.
    let mut pending: BTreeMap<u64, Hash> = leaves.iter().map(|&(j, h)| (n - 1 + j, h)).collect();
    while let Some((i, h)) = pending.pop_last() {
        if i == 0 {
            if !pending.is_empty() {
                return Err(MerkleError::LemmaCount);
            }
            return Ok(h);
        }
        let s = sibling(i);
        let sh = match pending.remove(&s) {
            Some(sh) => sh,
            None => *lemma.next().ok_or(MerkleError::LemmaCount)?,
        };
        let ph = if i % 2 == 1 {
            node_hash(&h, &sh)
        } else {
            node_hash(&sh, &h)
        };
        pending.insert(parent(i), ph);
    }
    Err(MerkleError::LemmaCount)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A claimed leaf count near 2⁶⁴ (found by mutating a filtered proof's count) is an error, not an overflow.
    #[test]
    fn huge_leaf_counts_are_refused_without_overflow() {
        for count in [u64::MAX, MAX_LEAVES + 1, 1 << 63] {
            let leaves = [(count - 1, [1u8; 32])];
            let r = fold(count, &leaves, &mut [[0u8; 32]; 70].iter());
            assert_eq!(r, Err(MerkleError::TooManyLeaves(count)));
            assert!(verify(&[0; 32], count, &leaves, &[]).is_err());
        }
    }

    /// Updating leaves in place equals building the tree again, for every size and any set of changed leaves.
    #[test]
    fn updating_leaves_equals_a_rebuild() {
        for n in 1..40u64 {
            let mut leaves: Vec<Hash> = (0..n).map(|i| [i as u8; 32]).collect();
            let mut t = Tree::build(&leaves);
            let changes: Vec<(u64, Hash)> = (0..n)
                .filter(|i| (i * 7 + n) % 3 == 0)
                .map(|i| (i, [200 + (i % 50) as u8; 32]))
                .collect();
            for &(i, h) in &changes {
                leaves[i as usize] = h;
            }
            t.update(&changes);
            t.update(&[(n + 5, [9; 32])]);
            assert_eq!(t.nodes, Tree::build(&leaves).nodes, "n = {n}");
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn every_subset_of_small_trees_round_trips() {
        for n in 1..=9usize {
            let l = leaves(n);
            let t = Tree::build(&l);
            for mask in 1u32..(1 << n) {
                let idx: Vec<u64> = (0..n as u64).filter(|i| mask & (1 << i) != 0).collect();
                let lemmas = t.prove(&idx).unwrap();
                let claimed: Vec<(u64, Hash)> = idx.iter().map(|&i| (i, l[i as usize])).collect();
                assert_eq!(
                    verify(&t.root(), n as u64, &claimed, &lemmas),
                    Ok(()),
                    "n={n} mask={mask:b}"
                );
                // Wrong leaf hash, wrong count, extra lemma, missing lemma: all rejected.
                let mut bad = claimed.clone();
                bad[0].1[0] ^= 1;
                assert!(verify(&t.root(), n as u64, &bad, &lemmas).is_err());
                assert!(verify(&t.root(), n as u64 + 1, &claimed, &lemmas).is_err());
                let mut more = lemmas.clone();
                more.push([7; 32]);
                assert!(verify(&t.root(), n as u64, &claimed, &more).is_err());
                if !lemmas.is_empty() {
                    assert!(verify(&t.root(), n as u64, &claimed, &lemmas[1..]).is_err());
                }
            }
        }
    }

    #[test]
    fn interior_node_cannot_pass_as_leaf() {
        let l = leaves(4);
        let t = Tree::build(&l);
        // Position 1 is the interior node over leaves 0 and 1; claim it as "leaf 0" of a 3-leaf tree.
        let inner = node_hash(&l[0], &l[1]);
        assert!(verify(&t.root(), 3, &[(0, inner)], &[node_hash(&l[2], &l[3])]).is_err());
        assert!(matches!(
            verify(&t.root(), 4, &[(4, l[0])], &[]),
            Err(MerkleError::IndexOutOfRange { .. })
        ));
        assert_eq!(verify(&t.root(), 4, &[], &[]), Err(MerkleError::Empty));
        assert_eq!(
            verify(&t.root(), 4, &[(1, l[1]), (0, l[0])], &[]),
            Err(MerkleError::Unordered)
        );
    }

    /// The tree merkle-cbt builds is the one its own root function computes another way, and the one the
    /// document's array layout gives.
    #[test]
    fn merkle_cbt_roots_agree_with_the_layout() {
        for n in 1..70usize {
            let l = leaves(n);
            let t = Tree::build(&l);
            assert_eq!(
                t.root(),
                merkle_cbt::CBMT::<Hash, NodeMerge>::build_merkle_root(&l),
                "n = {n}"
            );
            let mut nodes = vec![[0u8; 32]; 2 * n - 1];
            nodes[n - 1..].copy_from_slice(&l);
            for i in (0..n - 1).rev() {
                nodes[i] = node_hash(&nodes[2 * i + 1], &nodes[2 * i + 2]);
            }
            assert_eq!(t.nodes, nodes, "n = {n}");
        }
    }

    #[test]
    fn single_leaf_tree_root_is_the_leaf() {
        let l = leaves(1);
        let t = Tree::build(&l);
        assert_eq!(t.root(), l[0]);
        assert_eq!(verify(&t.root(), 1, &[(0, l[0])], &[]), Ok(()));
        assert_eq!(Tree::build(&[]).root(), EMPTY_ROOT);
    }

    #[test]
    fn large_tree_sampled() {
        let l = leaves(1000);
        let t = Tree::build(&l);
        let idx: Vec<u64> = (0..1000).step_by(37).collect();
        let lemmas = t.prove(&idx).unwrap();
        let claimed: Vec<(u64, Hash)> = idx.iter().map(|&i| (i, l[i as usize])).collect();
        assert_eq!(verify(&t.root(), 1000, &claimed, &lemmas), Ok(()));
    }
}
