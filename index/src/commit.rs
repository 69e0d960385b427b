//! What a namespace commits to (docs/PROOFS.md, "Commitments"): the quantised vectors and HNSW graph as
//! *graph leaves* (one per graph node, in node order), and the live memories in (created_at, id) order as
//! *time leaves*. Each leaf has a canonical, tagged, length-prefixed encoding and is hashed with
//! [`crate::merkle::leaf_hash`].

use crate::id::MemoryId;
use crate::merkle::Hash;

/// Quantiser code in root records: `round(x · 127)` clamped to [-127, 127], on unit vectors.
pub const QUANTISER_INT8_127: u8 = 1;
/// Distance code in root records: `d(q, v) = −Σ qᵢ·vᵢ` over the int8 vectors (smaller is closer).
pub const DISTANCE_NEG_DOT_I32: u8 = 1;
/// Most layers a node can have (the graph levels of [`crate::hnsw`] stay below it).
pub const MAX_LEVEL: u8 = 16;
/// Longest neighbour list accepted per layer.
pub const MAX_NEIGHBOURS: usize = 512;
/// Largest vector dimension accepted.
pub const MAX_DIM: usize = 4096;

/// Quantises a unit vector to int8: `round(x·127)` (half away from zero), clamped to ±127.
pub fn quantise(v: &[f32]) -> Vec<i8> {
    v.iter()
        .map(|&x| {
            let q = (x * 127.0).round();
            if q.is_nan() {
                0
            } else {
                q.clamp(-127.0, 127.0) as i8
            }
        })
        .collect()
}

/// The proof distance: `−Σ aᵢ·bᵢ` (i32; |Σ| ≤ 4096·127² fits easily). Smaller is closer.
#[inline]
pub fn distance(a: &[i8], b: &[i8]) -> i32 {
    let mut s: i32 = 0;
    for (x, y) in a.iter().zip(b) {
        s += i32::from(*x) * i32::from(*y);
    }
    -s
}

/// One node of the committed graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphNode {
    /// Node number = position in the graph tree.
    pub node: u32,
    /// The memory's id.
    pub id: MemoryId,
    /// The memory's created_at (ms).
    pub created_at: u64,
    /// False for a forgotten memory that is still part of the graph (a tombstone: traversed, never returned).
    pub alive: bool,
    /// Its top layer (it has neighbour lists for layers 0..=level).
    pub level: u8,
    /// The int8 vector.
    pub vector: Vec<i8>,
}

impl GraphNode {
    /// The committed form of a forgotten memory's node (docs/PROOFS.md, "Tombstones"): it keeps its place, level
    /// and lists so searches can still pass through it, but its id, created_at and vector are zeroed, so neither
    /// the graph leaves a node serves nor any file that holds them keep what was forgotten.
    pub fn tombstone(node: u32, level: u8, dim: usize) -> Self {
        GraphNode {
            node,
            id: MemoryId([0; 32]),
            created_at: 0,
            alive: false,
            level,
            vector: vec![0; dim],
        }
    }

    /// True unless this is a tombstone that still carries some of the forgotten memory (its id, created_at or a
    /// non-zero vector component). Verifiers and replicas refuse such nodes.
    pub fn is_well_formed(&self) -> bool {
        self.alive
            || (self.id.0 == [0; 32] && self.created_at == 0 && self.vector.iter().all(|&x| x == 0))
    }
}

/// Canonical encoding of a node's neighbour lists: for each layer 0..=level, `u16be(count)` then `count`
/// × `u32be(node)`.
pub fn encode_lists(lists: &[Vec<u32>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lists.iter().map(|l| 2 + 4 * l.len()).sum());
    for l in lists {
        out.extend_from_slice(&(l.len() as u16).to_be_bytes());
        for n in l {
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    out
}

/// BLAKE3(0x02 ‖ encode_lists(lists)): what a graph leaf binds of the lists.
pub fn lists_hash(lists: &[Vec<u32>]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[0x02]);
    h.update(&encode_lists(lists));
    *h.finalize().as_bytes()
}

/// Graph leaf bytes: `"CGL1" u32be(node) id[32] u64be(created_at) u8(alive) u8(level) u16be(dim) i8×dim
/// lists_hash[32]`.
pub fn graph_leaf_bytes(n: &GraphNode, lists_hash: &Hash) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 4 + 32 + 8 + 2 + 2 + n.vector.len() + 32);
    out.extend_from_slice(b"CGL1");
    out.extend_from_slice(&n.node.to_be_bytes());
    out.extend_from_slice(n.id.as_bytes());
    out.extend_from_slice(&n.created_at.to_be_bytes());
    out.push(u8::from(n.alive));
    out.push(n.level);
    out.extend_from_slice(&(n.vector.len() as u16).to_be_bytes());
    out.extend(n.vector.iter().map(|&x| x as u8));
    out.extend_from_slice(lists_hash);
    out
}

/// The graph leaf hash of a node.
pub fn graph_leaf_hash(n: &GraphNode, lists_hash: &Hash) -> Hash {
    crate::merkle::leaf_hash(&graph_leaf_bytes(n, lists_hash))
}

/// One live memory in the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeEntry {
    /// created_at (ms): the primary order.
    pub created_at: u64,
    /// The id: the tie-break.
    pub id: MemoryId,
    /// Its graph node number.
    pub node: u32,
}

/// Time leaf bytes: `"CTL1" u64be(created_at) id[32] u32be(node)`.
pub fn time_leaf_bytes(e: &TimeEntry) -> [u8; 48] {
    let mut out = [0u8; 48];
    out[..4].copy_from_slice(b"CTL1");
    out[4..12].copy_from_slice(&e.created_at.to_be_bytes());
    out[12..44].copy_from_slice(e.id.as_bytes());
    out[44..48].copy_from_slice(&e.node.to_be_bytes());
    out
}

/// The time leaf hash of an entry.
pub fn time_leaf_hash(e: &TimeEntry) -> Hash {
    crate::merkle::leaf_hash(&time_leaf_bytes(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantise_rounds_and_clamps() {
        assert_eq!(
            quantise(&[0.0, 1.0, -1.0, 0.5, -0.5, 2.0, f32::NAN, 0.004]),
            vec![0, 127, -127, 64, -64, 127, 0, 1]
        );
        assert_eq!(distance(&[127, 0], &[127, 1]), -16129);
    }

    #[test]
    fn a_tombstone_keeps_nothing_of_the_memory() {
        let t = GraphNode::tombstone(7, 1, 4);
        assert!(t.is_well_formed());
        let mut leaky = t.clone();
        leaky.vector[2] = 1;
        assert!(!leaky.is_well_formed());
        let mut leaky = t.clone();
        leaky.id.0[0] = 1;
        assert!(!leaky.is_well_formed());
        let mut leaky = t.clone();
        leaky.created_at = 1;
        assert!(!leaky.is_well_formed());
        let mut alive = t;
        alive.alive = true;
        alive.vector[0] = 5;
        assert!(alive.is_well_formed());
    }
}
