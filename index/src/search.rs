//! The deterministic proof search over a committed graph (docs/PROOFS.md, "Faithful recall").
//!
//! Integer distances on int8 vectors, total order by (distance, node number), and fixed visiting rules, so
//! the node that proves and the client that verifies compute the very same top-k on any CPU. The same code
//! runs on both sides: the node over its whole graph (recording what it touched), the verifier over the
//! nodes in the proof (failing when it needs one that is missing).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use crate::commit::distance;

/// Why a search could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// The search needed a node's vector that is not available (verifier: not in the proof).
    #[error("search needs node {0}, which the proof does not contain")]
    MissingNode(u32),
    /// The search needed a node's neighbour lists that are not available.
    #[error("search needs the neighbour lists of node {0}, which the proof does not contain")]
    MissingLists(u32),
    /// A vector has another dimension than the query.
    #[error("node {0} has a vector of the wrong dimension")]
    Dimension(u32),
}

/// Read access to a committed graph.
pub trait GraphView {
    /// The int8 vector of `node`.
    fn vector(&mut self, node: u32) -> Result<&[i8], SearchError>;
    /// The neighbour list of `node` at `layer` (empty above the node's level).
    fn neighbours(&mut self, node: u32, layer: u8) -> Result<Vec<u32>, SearchError>;
}

/// What to search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchParams {
    /// Entry point (from the root record).
    pub entry: u32,
    /// Its level (from the root record).
    pub max_level: u8,
    /// Breadth of the layer-0 search (≥ k).
    pub ef: usize,
}

/// Runs the search; returns up to `ef` candidates as (distance, node), nearest first, ties by node number.
/// The caller drops tombstones and keeps the first k.
pub fn search<G: GraphView>(
    g: &mut G,
    query: &[i8],
    p: &SearchParams,
) -> Result<Vec<(i32, u32)>, SearchError> {
    let ef = p.ef.max(1);
    let dist = |g: &mut G, node: u32| -> Result<i32, SearchError> {
        let v = g.vector(node)?;
        if v.len() != query.len() {
            return Err(SearchError::Dimension(node));
        }
        Ok(distance(query, v))
    };
    let mut cur = (dist(g, p.entry)?, p.entry);
    // Greedy descent through the upper layers.
    for layer in (1..=p.max_level).rev() {
        loop {
            let mut best = cur;
            for nb in g.neighbours(cur.1, layer)? {
                let cand = (dist(g, nb)?, nb);
                if cand < best {
                    best = cand;
                }
            }
            if best == cur {
                break;
            }
            cur = best;
        }
    }
    // Best-first search at layer 0, bounded by ef.
    let mut visited: HashSet<u32> = HashSet::new();
    visited.insert(cur.1);
    let mut candidates: BinaryHeap<Reverse<(i32, u32)>> = BinaryHeap::new();
    let mut results: BinaryHeap<(i32, u32)> = BinaryHeap::new();
    candidates.push(Reverse(cur));
    results.push(cur);
    while let Some(Reverse(c)) = candidates.pop() {
        if results.len() >= ef {
            if let Some(&worst) = results.peek() {
                if c > worst {
                    break;
                }
            }
        }
        for nb in g.neighbours(c.1, 0)? {
            if !visited.insert(nb) {
                continue;
            }
            let cand = (dist(g, nb)?, nb);
            let admit = results.len() < ef || results.peek().is_some_and(|&w| cand < w);
            if admit {
                candidates.push(Reverse(cand));
                results.push(cand);
                if results.len() > ef {
                    results.pop();
                }
            }
        }
    }
    let mut out = results.into_vec();
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Full {
        vectors: Vec<Vec<i8>>,
        lists: Vec<Vec<Vec<u32>>>,
    }

    impl GraphView for Full {
        fn vector(&mut self, node: u32) -> Result<&[i8], SearchError> {
            self.vectors
                .get(node as usize)
                .map(Vec::as_slice)
                .ok_or(SearchError::MissingNode(node))
        }
        fn neighbours(&mut self, node: u32, layer: u8) -> Result<Vec<u32>, SearchError> {
            let l = self
                .lists
                .get(node as usize)
                .ok_or(SearchError::MissingLists(node))?;
            Ok(l.get(layer as usize).cloned().unwrap_or_default())
        }
    }

    /// A ring graph over fixed 2-d vectors: every node links to its two ring neighbours at layer 0.
    fn ring(n: u32) -> Full {
        let vectors = (0..n)
            .map(|i| {
                let a = i as f32 / n as f32 * std::f32::consts::TAU;
                crate::commit::quantise(&[a.cos(), a.sin()])
            })
            .collect();
        let lists = (0..n)
            .map(|i| vec![vec![(i + n - 1) % n, (i + 1) % n]])
            .collect();
        Full { vectors, lists }
    }

    #[test]
    fn finds_the_true_nearest_on_a_ring_and_is_deterministic() {
        let mut g = ring(64);
        let q = crate::commit::quantise(&[0.0, 1.0]); // angle 90° = node 16
        let p = SearchParams {
            entry: 0,
            max_level: 0,
            ef: 8,
        };
        let a = search(&mut g, &q, &p).unwrap();
        assert_eq!(a[0].1, 16);
        assert_eq!(a.len(), 8);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(search(&mut g, &q, &p).unwrap(), a);
    }

    #[test]
    fn missing_nodes_are_reported_not_panicked() {
        let g = ring(16);
        // Keep only some nodes: the search must fail with MissingNode, never panic.
        let keep: HashMap<u32, Vec<i8>> = g
            .vectors
            .iter()
            .cloned()
            .enumerate()
            .take(3)
            .map(|(i, v)| (i as u32, v))
            .collect();
        struct Partial(HashMap<u32, Vec<i8>>, Vec<Vec<Vec<u32>>>);
        impl GraphView for Partial {
            fn vector(&mut self, node: u32) -> Result<&[i8], SearchError> {
                self.0
                    .get(&node)
                    .map(Vec::as_slice)
                    .ok_or(SearchError::MissingNode(node))
            }
            fn neighbours(&mut self, node: u32, layer: u8) -> Result<Vec<u32>, SearchError> {
                Ok(self
                    .1
                    .get(node as usize)
                    .and_then(|l| l.get(layer as usize))
                    .cloned()
                    .unwrap_or_default())
            }
        }
        let mut p = Partial(keep, g.lists.clone());
        let q = crate::commit::quantise(&[-1.0, 0.0]);
        let r = search(
            &mut p,
            &q,
            &SearchParams {
                entry: 0,
                max_level: 0,
                ef: 4,
            },
        );
        assert!(matches!(r, Err(SearchError::MissingNode(_))));
    }
}
