//! A namespace's commitment: graph leaves (one per HNSW point, tombstones included), time leaves (live
//! memories by (created_at, id)), both Merkle trees, and the latest signed root. It is updated incrementally
//! after every write (only the points whose leaf changed are re-hashed) and answers proof requests.

use std::collections::HashSet;

use cairn_index::commit::{
    graph_leaf_hash, lists_hash, quantise, time_leaf_hash, GraphNode, TimeEntry,
    DISTANCE_NEG_DOT_I32, QUANTISER_INT8_127,
};
use cairn_index::id::MemoryId;
use cairn_index::merkle::Hash;
use cairn_index::paged::{ChunkedTree, FixedTree};
use cairn_index::proof::{
    NodeLists, ProofNode, RecallProof, TimePages, TimeProof, MODE_EXACT, MODE_GRAPH,
};
use cairn_index::root::{RootRecord, SignedRoot, NO_ENTRY, ROOT_VERSION};
use cairn_index::search::{search, GraphView, SearchError, SearchParams};
use ed25519_dalek::SigningKey;

use super::lexicon::Lexicon;
use crate::ann::{Ann, NodeLinks};
use crate::store::PointRow;
use cairn_index::filtered::{
    filtered_answer, FilteredProof, RecallFilter, FMODE_HYBRID, FMODE_LEXICAL, FMODE_SEMANTIC,
};
use cairn_index::hybrid::{GraphPart, HybridProof, MODE_HYBRID, MODE_LEXICAL};
use cairn_index::lexical::{facet_terms, fixed_score, fuse, query_terms};

/// Namespace-independent commitment parameters.
#[derive(Debug, Clone, Copy)]
pub struct CommitParams {
    /// HNSW M.
    pub m: u16,
    /// Vector dimension.
    pub dim: u16,
    /// Embedding model hash.
    pub model: Hash,
}

#[derive(Debug, Clone)]
struct CNode {
    node: GraphNode,
    lists: Vec<Vec<u32>>,
    lists_hash: Hash,
    /// Cached graph leaf hash (recomputed only when the node changes).
    leaf: Hash,
    /// How many entries at the end of the layer-0 list are reachability repairs (see [`Commitment::repair`]),
    /// not the HNSW graph's links.
    repairs: usize,
}

impl CNode {
    fn new(node: GraphNode) -> Self {
        let lists = vec![Vec::new()];
        let lh = lists_hash(&lists);
        let leaf = graph_leaf_hash(&node, &lh);
        CNode {
            node,
            lists,
            lists_hash: lh,
            leaf,
            repairs: 0,
        }
    }

    fn refresh(&mut self) {
        self.leaf = graph_leaf_hash(&self.node, &self.lists_hash);
    }

    /// Takes this node's repair links off its layer-0 list (which then holds the HNSW graph's links only).
    fn strip_repairs(&mut self) -> Vec<u32> {
        let n = std::mem::take(&mut self.repairs);
        match self.lists.first_mut() {
            Some(l0) if n > 0 => l0.split_off(l0.len().saturating_sub(n)),
            _ => Vec::new(),
        }
    }
}

/// The committed state of one namespace.
#[derive(Debug, Clone, Default)]
pub struct Commitment {
    nodes: Vec<CNode>,
    time: Vec<TimeEntry>,
    /// The graph tree over the nodes' leaves (paged: a write re-hashes the pages it touched and the top).
    graph_tree: FixedTree,
    /// The time tree over `time`'s leaves (content-cut pages: an insert anywhere re-cuts one page).
    time_tree: ChunkedTree,
    /// Nodes whose leaf changed since the graph tree last took them in (see [`Commitment::sync_trees`]).
    tree_dirty: Vec<u32>,
    entry: Option<(u32, u8)>,
    root: Option<SignedRoot>,
    /// Nodes whose leaf changed since the last [`Commitment::take_changed`] (for replication deltas).
    changed: Vec<u32>,
    /// The lexical index over the live memories.
    lex: Lexicon,
    /// Nodes whose layer-0 list carries repair links.
    repaired: Vec<u32>,
    /// When the last reachability walk ran and how long it took (see [`Commitment::repair`]).
    walked: Option<(std::time::Instant, std::time::Duration)>,
}

/// Replica deltas shipping fewer nodes than this are applied incrementally (and may be applied in place, see
/// [`Commitment::apply_delta_in_place`]); larger ones rebuild the time tree.
pub const DELTA_IN_PLACE: usize = 4096;

/// What an in-place replica delta changed ([`Commitment::apply_delta_in_place`]), to undo it exactly.
#[derive(Debug, Default)]
pub struct Undo {
    old_len: usize,
    /// Nodes the delta replaced, with their former state, in the order replaced.
    replaced: Vec<(usize, CNode)>,
    /// Time-list edits, in the order made.
    time_ops: Vec<TimeOp>,
    entry: Option<(u32, u8)>,
    root: Option<SignedRoot>,
    changed_len: usize,
    /// Each shipped node's former lexical document (terms and facets), if it had one.
    lex_docs: Vec<(u32, Option<crate::engine::lexicon::Doc>)>,
    lex_tokenizer: u8,
}

/// One edit of the time list (and its tree) made by a replica delta.
#[derive(Debug)]
enum TimeOp {
    /// An entry removed from this position.
    Removed(usize, TimeEntry),
    /// An entry inserted at this position.
    Inserted(usize),
}

/// Graphs up to this many nodes are walked for reachability after every change.
const WALK_ALWAYS_UP_TO: usize = 20_000;
/// Above that, a walk waits at least this many times its last duration after the previous one.
const WALK_SPACING: u32 = 10;

/// A live memory's contribution to a replica's lexical index: its node, text terms and facet terms.
pub type ReplicaDoc = (
    u32,
    std::sync::Arc<crate::store::terms::PackedTerms>,
    Vec<String>,
);

/// New points handed to [`Commitment::add_points`] without exactly one vector each (a bug in the caller).
#[derive(Debug, thiserror::Error)]
#[error("{rows} new points but {vectors} vectors")]
pub struct VectorsMismatch {
    /// New rows.
    pub rows: usize,
    /// Vectors given.
    pub vectors: usize,
}

/// Why replicated nodes were refused: they do not reproduce the owner's signed root.
#[derive(Debug, thiserror::Error)]
#[error("replicated state rejected: {0}")]
pub struct ReplicaMismatch(pub String);

/// Node `i`'s graph leaf from its row and unit vector (a tombstone keeps only the vector's dimension).
fn node_of(i: usize, row: &PointRow, vector: &[f32], level: u8) -> GraphNode {
    if !row.alive {
        return GraphNode::tombstone(i as u32, level, vector.len());
    }
    GraphNode {
        node: i as u32,
        id: row.id,
        created_at: row.created_at,
        alive: row.alive,
        level,
        vector: quantise(vector),
    }
}

impl Commitment {
    /// Builds the whole commitment from the rows and the graph (start-up, compaction).
    pub fn build(rows: &[PointRow], ann: &Ann) -> Self {
        let mut c = Commitment::default();
        // Everything is read below: what the inserts so far changed is taken in too.
        let _ = ann.take_changed();
        let links = ann.links(&|_| true);
        c.nodes = rows
            .iter()
            .enumerate()
            .map(|(i, r)| CNode::new(node_of(i, r, &r.vector, 0)))
            .collect();
        c.apply_links(links);
        c.time = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.alive)
            .map(|(i, r)| TimeEntry {
                created_at: r.created_at,
                id: r.id,
                node: i as u32,
            })
            .collect();
        c.time.sort_unstable();
        c.time_tree = ChunkedTree::build(&c.time.iter().map(time_leaf_hash).collect::<Vec<_>>());
        c.entry = ann.entry().map(|(p, l)| (p as u32, l));
        for (i, r) in rows.iter().enumerate() {
            if let (true, Some(d)) = (r.alive, &r.lex) {
                c.lex.add(i as u32, d.clone(), facet_terms(&r.metadata));
            }
        }
        c.lex.rebuild();
        c.repair(true);
        c.graph_tree = FixedTree::build(&c.nodes.iter().map(|n| n.leaf).collect::<Vec<_>>());
        c.tree_dirty.clear();
        c.sync_trees();
        c
    }

    fn apply_links(&mut self, links: Vec<NodeLinks>) {
        for l in links {
            self.mark(l.point as u32);
            if let Some(n) = self.nodes.get_mut(l.point) {
                n.node.level = l.level;
                n.lists_hash = lists_hash(&l.lists);
                n.lists = l.lists;
                n.repairs = 0;
                n.refresh();
            }
        }
    }

    /// Notes that node `n`'s leaf changed: for replication deltas ([`Commitment::take_changed`]) and for the graph
    /// tree ([`Commitment::sync_trees`]).
    fn mark(&mut self, n: u32) {
        self.changed.push(n);
        self.tree_dirty.push(n);
    }

    /// Brings both trees up to date: the graph tree takes in the changed and appended leaves, then each tree
    /// re-hashes only the pages that changed and its top ([`cairn_index::paged`]): O(changes × page + pages),
    /// not O(n).
    fn sync_trees(&mut self) {
        if self.graph_tree.len() as usize > self.nodes.len() {
            self.graph_tree = FixedTree::default();
        }
        let held = self.graph_tree.len() as usize;
        for n in std::mem::take(&mut self.tree_dirty) {
            if let Some(c) = self.nodes.get(n as usize).filter(|_| (n as usize) < held) {
                self.graph_tree.set(u64::from(n), c.leaf);
            }
        }
        for c in &self.nodes[held..] {
            self.graph_tree.push(c.leaf);
        }
        self.graph_tree.commit();
        self.time_tree.commit();
    }

    /// Takes in points appended to the graph (`first..rows.len()` are new, `vectors[i - first]` the vector of
    /// point i: rows in memory keep none): their leaves, the leaves of the points whose neighbour lists the
    /// inserts changed, and their time entries. A vector count that does not match the new rows changes nothing.
    pub fn add_points(
        &mut self,
        rows: &[PointRow],
        first: usize,
        vectors: &[&[f32]],
        ann: &Ann,
    ) -> Result<(), VectorsMismatch> {
        let new = rows.len().checked_sub(first).ok_or(VectorsMismatch {
            rows: 0,
            vectors: vectors.len(),
        })?;
        if new != vectors.len() {
            return Err(VectorsMismatch {
                rows: new,
                vectors: vectors.len(),
            });
        }
        for ((i, r), vector) in rows.iter().enumerate().skip(first).zip(vectors) {
            self.nodes.push(CNode::new(node_of(i, r, vector, 0)));
            self.mark(i as u32);
            let e = TimeEntry {
                created_at: r.created_at,
                id: r.id,
                node: i as u32,
            };
            let at = self.time.partition_point(|x| x < &e);
            self.time.insert(at, e);
            self.time_tree.insert(at as u64, time_leaf_hash(&e));
            if let (true, Some(d)) = (r.alive, &r.lex) {
                self.lex.add(i as u32, d.clone(), facet_terms(&r.metadata));
            }
        }
        let t_lex = std::time::Instant::now();
        self.lex.rebuild();
        let t_lex = t_lex.elapsed();
        // The graph reports exactly the points whose lists its inserts changed (the new points and those that
        // link back to them), so the committed lists follow it without a walk over the graph.
        let t0 = std::time::Instant::now();
        let links = ann.links_of(&ann.take_changed());
        let t_fresh = t0.elapsed();
        self.apply_links(links);
        let t_old = t0.elapsed();
        self.entry = ann.entry().map(|(p, l)| (p as u32, l));
        self.repair(false);
        let t_repair = t0.elapsed();
        self.sync_trees();
        tracing::debug!(
            lexicon_ms = t_lex.as_secs_f64() * 1e3,
            links_ms = t_fresh.as_secs_f64() * 1e3,
            apply_ms = (t_old - t_fresh).as_secs_f64() * 1e3,
            repair_ms = (t_repair - t_old).as_secs_f64() * 1e3,
            trees_ms = (t0.elapsed() - t_repair).as_secs_f64() * 1e3,
            "commitment update"
        );
        Ok(())
    }

    /// Marks points forgotten: their graph leaves flip to tombstones and their time entries go.
    pub fn forget(&mut self, points: &[u64]) {
        for &p in points {
            if let Some(n) = self.nodes.get_mut(p as usize) {
                if n.node.alive {
                    let e = TimeEntry {
                        created_at: n.node.created_at,
                        id: n.node.id,
                        node: n.node.node,
                    };
                    n.node = GraphNode::tombstone(n.node.node, n.node.level, n.node.vector.len());
                    n.refresh();
                    self.mark(p as u32);
                    if let Ok(at) = self.time.binary_search(&e) {
                        self.time.remove(at);
                        self.time_tree.remove(at as u64);
                    }
                }
            }
            self.lex.remove(p as u32);
        }
        self.lex.rebuild();
        self.repair(false);
        self.sync_trees();
    }

    /// Makes every live memory reachable in the committed graph. HNSW can orphan a point: when every node that
    /// linked to it later keeps closer neighbours instead (common among near-duplicate memories), no search can
    /// return it. After each change of the owner's graph this walks it from the entry point over every layer and,
    /// for each live node it cannot reach (in node order), appends that node to the layer-0 list of the nearest
    /// reachable live node among the orphan's own layer-0 neighbours (else of all reachable live nodes; else of
    /// the entry point), then counts everything reachable through it as reached.
    ///
    /// The repair is a pure function of the HNSW graph's links, the entry point and the nodes (a restart that
    /// reads the same links repairs the same way); repair links are committed like any other link (replicas and
    /// verifiers see ordinary lists and need no rule for them). Cost: one O(nodes + links) walk, about 110 ms
    /// at 100k memories on the reference machine. So it runs after every change only up to
    /// [`WALK_ALWAYS_UP_TO`] nodes and always when `force`d (start-up, compaction); above that, at most once
    /// per [`WALK_SPACING`] times its last duration (a tenth of the commit time at most): a memory orphaned in
    /// between is linked at the first commit after the spacing, or at the next start-up.
    fn repair(&mut self, force: bool) {
        if !force && self.nodes.len() > WALK_ALWAYS_UP_TO {
            if let Some((at, took)) = self.walked {
                if at.elapsed() < took * WALK_SPACING {
                    return;
                }
            }
        }
        let started = std::time::Instant::now();
        self.walk_and_link();
        self.walked = Some((started, started.elapsed()));
    }

    fn walk_and_link(&mut self) {
        let mut before: Vec<(u32, Vec<u32>)> = Vec::new();
        for n in std::mem::take(&mut self.repaired) {
            if let Some(c) = self.nodes.get_mut(n as usize) {
                before.push((n, c.strip_repairs()));
            }
        }
        let mut added: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
        if let Some((entry, _)) = self.entry {
            let mut seen = vec![false; self.nodes.len()];
            self.mark_reachable(entry, &mut seen);
            for u in 0..self.nodes.len() {
                if seen[u] || !self.nodes[u].node.alive {
                    continue;
                }
                let host = self.repair_host(u, &seen).unwrap_or(entry);
                if let Some(h) = self.nodes.get_mut(host as usize) {
                    if let Some(l0) = h.lists.first_mut() {
                        l0.push(u as u32);
                        h.repairs += 1;
                        added.entry(host).or_default().push(u as u32);
                    }
                }
                self.mark_reachable(u as u32, &mut seen);
            }
        }
        let mut touched: Vec<u32> = before.iter().map(|(n, _)| *n).collect();
        touched.extend(added.keys());
        touched.sort_unstable();
        touched.dedup();
        for n in touched {
            if let Some(c) = self.nodes.get_mut(n as usize) {
                let old = c.leaf;
                c.lists_hash = lists_hash(&c.lists);
                c.refresh();
                if c.leaf != old {
                    self.mark(n);
                }
            }
        }
        if !added.is_empty() {
            tracing::debug!(
                orphans = added.values().map(Vec::len).sum::<usize>(),
                "committed graph: linked unreachable memories"
            );
        }
        self.repaired = added.into_keys().collect();
    }

    /// Marks `from` and everything reachable from it over every layer's lists.
    /// Each node is marked when first met, so it is queued once: O(nodes + links).
    fn mark_reachable(&self, from: u32, seen: &mut [bool]) {
        let mut stack = Vec::new();
        if let Some(s) = seen.get_mut(from as usize) {
            if !*s {
                *s = true;
                stack.push(from as usize);
            }
        }
        while let Some(i) = stack.pop() {
            let Some(node) = self.nodes.get(i) else {
                continue;
            };
            for l in &node.lists {
                for &n in l {
                    if let Some(s) = seen.get_mut(n as usize) {
                        if !*s {
                            *s = true;
                            stack.push(n as usize);
                        }
                    }
                }
            }
        }
    }

    /// Where to link orphan `u` from: the nearest reachable live node among its own layer-0 neighbours, else
    /// among all reachable live nodes (ties by node number).
    fn repair_host(&self, u: usize, seen: &[bool]) -> Option<u32> {
        let v = &self.nodes[u].node.vector;
        let best = |cands: &mut dyn Iterator<Item = u32>| {
            cands
                .filter(|&n| {
                    n as usize != u
                        && seen.get(n as usize).copied().unwrap_or(false)
                        && self.nodes[n as usize].node.alive
                })
                .map(|n| {
                    (
                        cairn_index::commit::distance(v, &self.nodes[n as usize].node.vector),
                        n,
                    )
                })
                .min()
                .map(|(_, n)| n)
        };
        let own = self.nodes[u].lists.first().cloned().unwrap_or_default();
        best(&mut own.into_iter()).or_else(|| best(&mut (0..self.nodes.len() as u32)))
    }

    /// Node numbers whose leaf changed since the last call (sorted, deduplicated).
    pub fn take_changed(&mut self) -> Vec<u32> {
        let mut c = std::mem::take(&mut self.changed);
        c.sort_unstable();
        c.dedup();
        c
    }

    /// The cosine of a unit query vector with a node's committed int8 vector read as `code / 127` (what a
    /// node holds of each vector: none keeps an f32 copy). None for a node out of range.
    pub fn cosine(&self, query: &[f32], node: usize) -> Option<f32> {
        let v = &self.nodes.get(node)?.node.vector;
        Some(
            query
                .iter()
                .zip(v)
                .map(|(x, &c)| x * (f32::from(c) / 127.0))
                .sum(),
        )
    }

    /// Graph size (nodes, tombstones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True without nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The given nodes as replication ships them: leaf fields and full lists. Unknown numbers are skipped.
    pub fn export(&self, which: &[u32]) -> Vec<ProofNode> {
        which
            .iter()
            .filter_map(|&n| self.nodes.get(n as usize))
            .map(|c| ProofNode {
                node: c.node.clone(),
                lists: NodeLists::Full(c.lists.clone()),
            })
            .collect()
    }

    /// Live nodes that a walk from the entry point over every layer's lists never reaches: memories that no
    /// graph search can return (audit).
    pub fn unreachable_live(&self) -> usize {
        let Some((entry, _)) = self.entry else {
            return self.nodes.iter().filter(|n| n.node.alive).count();
        };
        let mut seen = vec![false; self.nodes.len()];
        let mut stack = vec![entry as usize];
        while let Some(i) = stack.pop() {
            match seen.get_mut(i) {
                Some(s) if !*s => *s = true,
                _ => continue,
            }
            for l in &self.nodes[i].lists {
                stack.extend(l.iter().map(|&n| n as usize));
            }
        }
        self.nodes
            .iter()
            .zip(&seen)
            .filter(|(n, s)| n.node.alive && !**s)
            .count()
    }

    /// Exact top-k live memories for an int8 query, ties by node number (audit).
    pub fn exact_top(&self, q: &[i8], k: usize) -> Vec<MemoryId> {
        self.alive_top(self.score_all(q), k)
            .into_iter()
            .map(|(_, id)| id)
            .collect()
    }

    /// Every node's distance to an int8 query (exact mode).
    fn score_all(&self, q: &[i8]) -> Vec<(i32, u32)> {
        self.nodes
            .iter()
            .map(|n| {
                (
                    cairn_index::commit::distance(q, &n.node.vector),
                    n.node.node,
                )
            })
            .collect()
    }

    /// The best `k` live (distance, id), ties by node number.
    fn alive_top(&self, mut scored: Vec<(i32, u32)>, k: usize) -> Vec<(i32, MemoryId)> {
        scored.sort_unstable();
        scored
            .iter()
            .filter_map(|&(d, n)| {
                let node = &self.nodes.get(n as usize)?.node;
                node.alive.then_some((d, node.id))
            })
            .take(k)
            .collect()
    }

    /// The deterministic graph search over the committed graph, recording which nodes it touched and which it
    /// expanded (what a proof must carry). None without an entry point or on a broken graph.
    fn graph_search(&self, q: &[i8], k: usize, ef: usize) -> Option<Recorder<'_>> {
        let (entry, max_level) = self.entry?;
        let mut view = Recorder {
            c: self,
            touched: HashSet::new(),
            expanded: HashSet::new(),
            scored: Vec::new(),
        };
        let params = SearchParams {
            entry,
            max_level,
            ef: ef.max(k),
        };
        view.scored = search(&mut view, q, &params).ok()?;
        Some(view)
    }

    /// Recall hits of the proof search without building a proof (a replica's ordinary Recall).
    pub fn recall_hits(&self, query: &[f32], k: usize, ef: usize) -> Vec<(i32, MemoryId)> {
        let q = quantise(query);
        match self.graph_search(&q, k, ef) {
            Some(v) => self.alive_top(v.scored, k),
            None => Vec::new(),
        }
    }

    /// Live memories.
    pub fn live_count(&self) -> usize {
        self.time.len()
    }

    /// The graph node with number `n`.
    pub fn node(&self, n: u32) -> Option<&GraphNode> {
        self.nodes.get(n as usize).map(|c| &c.node)
    }

    /// Node `n`'s committed neighbour lists (layers 0..=level, repair links included).
    pub fn lists(&self, n: u32) -> Option<&[Vec<u32>]> {
        self.nodes.get(n as usize).map(|c| c.lists.as_slice())
    }

    /// An empty commitment of the same kind (lexical index version), for a replica step that ships the whole
    /// graph: it replaces everything, so copying the held state first would only double the memory it needs.
    pub fn empty_like(&self) -> Self {
        Commitment {
            lex: self.lex.clone_empty(),
            ..Commitment::default()
        }
    }

    /// A replica's step: applies replicated nodes (all of them when `full`, else the changed and new ones) so
    /// that the graph has `root.graph_leaves` nodes, rebuilds both trees, and accepts `root` only if the result
    /// is exactly what it signs. On error `self` may be half-updated: apply to a clone.
    pub fn apply_replica(
        &mut self,
        nodes: Vec<ProofNode>,
        root: SignedRoot,
        full: bool,
    ) -> Result<(), ReplicaMismatch> {
        self.apply_replica_journaled(nodes, root, full, None)
    }

    /// A replica delta of at most [`DELTA_IN_PLACE`] nodes applied to this commitment itself: on success, what
    /// [`Commitment::undo`] needs to put it back exactly (should the records, the lexical index or the redb
    /// commit then fail); on error it is already put back. Costs what the delta ships, where a copy of the
    /// whole commitment costs O(n).
    pub fn apply_delta_in_place(
        &mut self,
        nodes: Vec<ProofNode>,
        root: SignedRoot,
    ) -> Result<Undo, ReplicaMismatch> {
        if nodes.len() >= DELTA_IN_PLACE {
            return Err(ReplicaMismatch(format!(
                "{} nodes are too many to apply in place",
                nodes.len()
            )));
        }
        let mut u = Undo {
            old_len: self.nodes.len(),
            entry: self.entry,
            root: self.root.clone(),
            changed_len: self.changed.len(),
            lex_tokenizer: self.lex.commit().tokenizer,
            ..Undo::default()
        };
        match self.apply_replica_journaled(nodes, root, false, Some(&mut u)) {
            Ok(()) => Ok(u),
            Err(e) => {
                self.undo(u);
                Err(e)
            }
        }
    }

    /// Puts the commitment back as it was before [`Commitment::apply_delta_in_place`] (and the
    /// [`Commitment::apply_replica_docs`] that followed it, if any).
    pub fn undo(&mut self, u: Undo) {
        for op in u.time_ops.into_iter().rev() {
            match op {
                TimeOp::Inserted(at) => {
                    if at < self.time.len() {
                        self.time.remove(at);
                        self.time_tree.remove(at as u64);
                    }
                }
                TimeOp::Removed(at, e) => {
                    let at = at.min(self.time.len());
                    self.time.insert(at, e);
                    self.time_tree.insert(at as u64, time_leaf_hash(&e));
                }
            }
        }
        self.nodes.truncate(u.old_len);
        self.graph_tree.truncate(u.old_len);
        self.tree_dirty.clear();
        for (i, c) in u.replaced.into_iter().rev() {
            if let Some(slot) = self.nodes.get_mut(i) {
                *slot = c;
                self.tree_dirty.push(i as u32);
            }
        }
        self.sync_trees();
        self.changed.truncate(u.changed_len);
        self.entry = u.entry;
        self.root = u.root;
        for (n, _) in &u.lex_docs {
            self.lex.remove(*n);
        }
        for (n, doc) in u.lex_docs {
            if let Some((terms, facets)) = doc {
                self.lex.add(n, terms, facets);
            }
        }
        self.lex.set_version(u.lex_tokenizer);
        self.lex.rebuild();
    }

    fn apply_replica_journaled(
        &mut self,
        nodes: Vec<ProofNode>,
        root: SignedRoot,
        full: bool,
        mut journal: Option<&mut Undo>,
    ) -> Result<(), ReplicaMismatch> {
        let rec = &root.record;
        if !rec.paged() {
            return Err(ReplicaMismatch(format!(
                "the owner signs root format {} (whole-tree Merkle commitments); this node builds format {} \
                 (paged trees): upgrade the owner",
                rec.version, ROOT_VERSION
            )));
        }
        let new_len = usize::try_from(rec.graph_leaves)
            .map_err(|_| ReplicaMismatch("graph too large".into()))?;
        if full {
            self.nodes.clear();
            self.time.clear();
            self.time_tree = ChunkedTree::default();
            self.graph_tree = FixedTree::default();
            self.tree_dirty.clear();
            self.lex.clear();
        }
        if new_len < self.nodes.len() {
            return Err(ReplicaMismatch(
                "graph shrank without a full transfer".into(),
            ));
        }
        let old_len = self.nodes.len();
        // Every new node must be shipped: the signed count sizes nothing before it is checked against them.
        if new_len - old_len > nodes.len() {
            return Err(ReplicaMismatch(format!(
                "the root counts {new_len} nodes, {old_len} held and only {} shipped",
                nodes.len()
            )));
        }
        let mut fresh: Vec<Option<CNode>> = vec![None; new_len - old_len];
        let incremental = !full && nodes.len() < DELTA_IN_PLACE;
        if journal.is_some() && !incremental {
            return Err(ReplicaMismatch("not a delta that can be undone".into()));
        }
        let mut seen = std::collections::HashSet::with_capacity(nodes.len());
        for pn in nodes {
            if !seen.insert(pn.node.node) {
                return Err(ReplicaMismatch(format!(
                    "node {} shipped twice",
                    pn.node.node
                )));
            }
            let NodeLists::Full(lists) = pn.lists else {
                return Err(ReplicaMismatch(format!(
                    "node {} came without its lists",
                    pn.node.node
                )));
            };
            if lists.len() != pn.node.level as usize + 1 {
                return Err(ReplicaMismatch("lists do not match level".into()));
            }
            let i = pn.node.node as usize;
            // Its terms come back with its record ([`Commitment::apply_replica_docs`]).
            if let Some(u) = journal.as_deref_mut() {
                u.lex_docs.push((pn.node.node, self.lex.doc(pn.node.node)));
            }
            self.lex.remove(pn.node.node);
            let lh = lists_hash(&lists);
            let leaf = graph_leaf_hash(&pn.node, &lh);
            // A replica takes the owner's lists as they are, repair links included.
            let c = CNode {
                node: pn.node,
                lists,
                lists_hash: lh,
                leaf,
                repairs: 0,
            };
            if i < old_len {
                if incremental {
                    let old = &self.nodes[i].node;
                    if old.alive {
                        let e = TimeEntry {
                            created_at: old.created_at,
                            id: old.id,
                            node: old.node,
                        };
                        if let Ok(at) = self.time.binary_search(&e) {
                            self.time.remove(at);
                            self.time_tree.remove(at as u64);
                            if let Some(u) = journal.as_deref_mut() {
                                u.time_ops.push(TimeOp::Removed(at, e));
                            }
                        }
                    }
                    if c.node.alive {
                        let at = self.insert_time(&c.node);
                        if let Some(u) = journal.as_deref_mut() {
                            u.time_ops.push(TimeOp::Inserted(at));
                        }
                    }
                }
                let old = std::mem::replace(&mut self.nodes[i], c);
                if let Some(u) = journal.as_deref_mut() {
                    u.replaced.push((i, old));
                }
            } else if let Some(slot) = fresh.get_mut(i - old_len) {
                *slot = Some(c);
            } else {
                return Err(ReplicaMismatch(format!("node {i} beyond the graph")));
            }
            self.mark(i as u32);
        }
        for (j, c) in fresh.into_iter().enumerate() {
            let c =
                c.ok_or_else(|| ReplicaMismatch(format!("new node {} missing", old_len + j)))?;
            if incremental && c.node.alive {
                let at = self.insert_time(&c.node);
                if let Some(u) = journal.as_deref_mut() {
                    u.time_ops.push(TimeOp::Inserted(at));
                }
            }
            self.nodes.push(c);
        }
        if !incremental {
            self.time = self
                .nodes
                .iter()
                .filter(|c| c.node.alive)
                .map(|c| TimeEntry {
                    created_at: c.node.created_at,
                    id: c.node.id,
                    node: c.node.node,
                })
                .collect();
            self.time.sort_unstable();
            self.time_tree =
                ChunkedTree::build(&self.time.iter().map(time_leaf_hash).collect::<Vec<_>>());
        }
        self.entry = (rec.entry != NO_ENTRY).then_some((rec.entry, rec.max_level));
        self.sync_trees();
        self.root = Some(root);
        if !self.graph_is_current() {
            return Err(ReplicaMismatch(
                "the nodes do not reproduce the signed root".into(),
            ));
        }
        Ok(())
    }

    /// A replica's second step, once the records of the step's live nodes are in: indexes their terms and
    /// accepts the root only if the lexical index is exactly what it signs (version-1 roots commit none).
    pub fn apply_replica_docs(&mut self, docs: Vec<ReplicaDoc>) -> Result<(), ReplicaMismatch> {
        let want = self.root.as_ref().and_then(|r| r.record.lexicon);
        if let Some(w) = want {
            self.lex.set_version(w.tokenizer);
        }
        for (node, d, facets) in docs {
            self.lex.add(node, d, facets);
        }
        self.lex.rebuild();
        if want.is_some_and(|w| w != self.lex.commit()) {
            return Err(ReplicaMismatch(
                "the records do not reproduce the signed lexical index".into(),
            ));
        }
        Ok(())
    }

    /// Inserts a live node's time entry where it sorts; returns its position.
    fn insert_time(&mut self, n: &GraphNode) -> usize {
        let e = TimeEntry {
            created_at: n.created_at,
            id: n.id,
            node: n.node,
        };
        let at = self.time.partition_point(|x| x < &e);
        self.time.insert(at, e);
        self.time_tree.insert(at as u64, time_leaf_hash(&e));
        at
    }

    /// The latest signed root.
    pub fn root(&self) -> Option<&SignedRoot> {
        self.root.as_ref()
    }

    /// Sets the latest root (restored from the database).
    pub fn set_root(&mut self, root: SignedRoot) {
        self.root = Some(root);
    }

    /// True when the latest root already commits to exactly this state, lexical index included.
    pub fn root_is_current(&self) -> bool {
        self.graph_is_current()
            && self
                .root
                .as_ref()
                .is_some_and(|r| r.record.lexicon == Some(self.lex.commit()))
    }

    /// True when the latest root commits to exactly these graph and time trees.
    pub fn graph_is_current(&self) -> bool {
        self.root.as_ref().is_some_and(|r| {
            r.record.paged()
                && r.record.graph_leaves == self.graph_tree.len()
                && r.record.graph_root == self.graph_tree.root()
                && r.record.time_leaves == self.time_tree.len()
                && r.record.time_root == self.time_tree.root()
                && r.record.entry == self.entry.map_or(NO_ENTRY, |e| e.0)
        })
    }

    /// Signs the next root over the current state (the caller stores it durably before acknowledging).
    pub fn next_root(
        &self,
        ns: &str,
        params: &CommitParams,
        key: &SigningKey,
        now: u64,
    ) -> SignedRoot {
        let (seq, prev) = match &self.root {
            Some(r) => (r.record.seq + 1, r.record.hash()),
            None => (1, [0u8; 32]),
        };
        let record = RootRecord {
            version: ROOT_VERSION,
            namespace: ns.to_owned(),
            seq,
            prev,
            graph_leaves: self.graph_tree.len(),
            graph_root: self.graph_tree.root(),
            time_leaves: self.time_tree.len(),
            time_root: self.time_tree.root(),
            entry: self.entry.map_or(NO_ENTRY, |e| e.0),
            max_level: self.entry.map_or(0, |e| e.1),
            m: params.m,
            m0: params.m.saturating_mul(2),
            quantiser: QUANTISER_INT8_127,
            distance: DISTANCE_NEG_DOT_I32,
            dim: params.dim,
            model: params.model,
            created_at: now,
            node_id: key.verifying_key().to_bytes(),
            lexicon: Some(self.lex.commit()),
        };
        SignedRoot::sign(record, key)
    }

    /// Position of a live memory in the timeline.
    fn time_position(&self, created_at: u64, id: &MemoryId) -> Option<usize> {
        self.time
            .binary_search_by(|e| (e.created_at, &e.id).cmp(&(created_at, id)))
            .ok()
    }

    /// The page descriptors and lemmas of a time proof for `positions` (none for no positions).
    fn prove_time(&self, positions: &[u64]) -> Option<(Option<TimePages>, Vec<Hash>)> {
        if positions.is_empty() {
            return Some((
                Some(TimePages {
                    pages: self.time_tree.pages(),
                    refs: Vec::new(),
                }),
                Vec::new(),
            ));
        }
        let (refs, lemmas) = self.time_tree.prove(positions).ok()?;
        Some((
            Some(TimePages {
                pages: self.time_tree.pages(),
                refs,
            }),
            lemmas,
        ))
    }

    /// A Get proof for live memories given as (created_at, id).
    pub fn prove_get(&self, items: &[(u64, MemoryId)]) -> Option<TimeProof> {
        let root = self.root.clone()?;
        let mut positions: Vec<usize> = items
            .iter()
            .filter_map(|(t, id)| self.time_position(*t, id))
            .collect();
        positions.sort_unstable();
        positions.dedup();
        let idx: Vec<u64> = positions.iter().map(|&p| p as u64).collect();
        let (pages, lemmas) = self.prove_time(&idx)?;
        Some(TimeProof {
            root,
            entries: positions
                .iter()
                .map(|&p| (p as u64, self.time[p]))
                .collect(),
            pages,
            lemmas,
        })
    }

    /// A List page: the live memories in range (`since <= t < until`, strictly after `after`), at most
    /// `limit`, plus its proof with boundary leaves.
    pub fn list_page(
        &self,
        since: u64,
        until: u64,
        after: Option<(u64, MemoryId)>,
        limit: usize,
    ) -> Option<(Vec<TimeEntry>, bool, TimeProof)> {
        let root = self.root.clone()?;
        let start = match after {
            Some((t, id)) => self
                .time
                .partition_point(|e| (e.created_at, e.id) <= (t, id)),
            None => 0,
        };
        let start = start.max(self.time.partition_point(|e| e.created_at < since));
        let mut end = start;
        while end < self.time.len() && end - start < limit && self.time[end].created_at < until {
            end += 1;
        }
        let page: Vec<TimeEntry> = self.time[start..end].to_vec();
        let more = end < self.time.len() && self.time[end].created_at < until;
        let lo = start.saturating_sub(1);
        let hi = if page.len() < limit {
            (end + 1).min(self.time.len())
        } else {
            end
        };
        let positions: Vec<u64> = (lo..hi).map(|p| p as u64).collect();
        let (pages, lemmas) = self.prove_time(&positions)?;
        let proof = TimeProof {
            root,
            entries: positions
                .iter()
                .map(|&p| (p, self.time[p as usize]))
                .collect(),
            pages,
            lemmas,
        };
        Some((page, more, proof))
    }

    /// Runs the proof search (or, in exact mode, scores every node) and returns the hits as (distance, id,
    /// created_at) with the proof.
    pub fn prove_recall(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        exact: bool,
    ) -> Option<(Vec<(i32, MemoryId)>, RecallProof)> {
        let root = self.root.clone()?;
        let q = quantise(query);
        let (mode, scored, touched, expanded) = match (self.entry, exact) {
            (None, _) => (MODE_GRAPH, Vec::new(), HashSet::new(), HashSet::new()),
            (Some(_), true) => {
                let all: HashSet<u32> = (0..self.nodes.len() as u32).collect();
                (MODE_EXACT, self.score_all(&q), all, HashSet::new())
            }
            (Some(_), false) => {
                let v = self.graph_search(&q, k, ef)?;
                (MODE_GRAPH, v.scored, v.touched, v.expanded)
            }
        };
        let hits = self.alive_top(scored, k);
        let mut ids: Vec<u32> = touched.into_iter().collect();
        ids.sort_unstable();
        let nodes: Vec<ProofNode> = ids
            .iter()
            .filter_map(|&n| {
                let c = self.nodes.get(n as usize)?;
                Some(ProofNode {
                    node: c.node.clone(),
                    lists: if expanded.contains(&n) {
                        NodeLists::Full(c.lists.clone())
                    } else {
                        NodeLists::Hash(c.lists_hash)
                    },
                })
            })
            .collect();
        let positions: Vec<u64> = ids.iter().map(|&n| u64::from(n)).collect();
        let lemmas = if positions.is_empty() {
            Vec::new()
        } else {
            self.graph_tree.prove(&positions).ok()?
        };
        let proof = RecallProof {
            root,
            mode,
            k: k as u32,
            ef: ef as u32,
            query: q,
            nodes,
            lemmas,
        };
        Some((hits, proof))
    }
}

impl Commitment {
    /// A graph node as a proof carries it when only its leaf matters (lists by hash).
    fn hashed_node(&self, n: u32) -> Option<ProofNode> {
        let c = self.nodes.get(n as usize)?;
        Some(ProofNode {
            node: c.node.clone(),
            lists: NodeLists::Hash(c.lists_hash),
        })
    }

    /// Lexical (`MODE_LEXICAL`) or hybrid (`MODE_HYBRID`, needs `query`) recall: the hits as (score, id) and
    /// the `CPX1` proof that they are exactly the BM25 top-k, or the reciprocal-rank fusion of the semantic
    /// and BM25 top-`depth`. None before the first root, for a root without a lexical index, or on a
    /// broken graph. Without `with_proof` the hits are the same and the proof carries no term leaves, extra
    /// nodes or lemmas (a Recall that asked for none).
    #[allow(clippy::too_many_arguments)]
    pub fn prove_hybrid(
        &self,
        mode: u8,
        query: Option<&[f32]>,
        text: &str,
        k: usize,
        depth: usize,
        ef: usize,
        exact: bool,
        with_proof: bool,
    ) -> Option<(Vec<(f32, MemoryId)>, HybridProof)> {
        let root = self.root.clone()?;
        root.record.lexicon?;
        let terms = query_terms(text);
        let lexical = self.lex.rank(&terms, self.time.len() as u64, depth);
        // Without a proof asked, the ranking is the same; the term leaves, extra nodes and lemmas are skipped.
        let (leaves, lex_pages, lex_lemmas) = if with_proof {
            self.lex.prove(&terms)?
        } else {
            (Vec::new(), Default::default(), Vec::new())
        };
        let (ranked, graph) = if mode == MODE_HYBRID {
            let (_, mut rp) = self.prove_recall(query?, depth, ef, exact)?;
            let sem: Vec<u32> = cairn_index::proof::recall_answer(&rp)
                .ok()?
                .iter()
                .map(|(_, n)| n.node)
                .collect();
            let lex: Vec<u32> = lexical.iter().map(|x| x.1).collect();
            let fused = fuse(&[&sem, &lex], k);
            let have: HashSet<u32> = rp.nodes.iter().map(|n| n.node.node).collect();
            let extra: Vec<u32> = fused
                .iter()
                .map(|x| x.1)
                .filter(|n| !have.contains(n))
                .collect();
            if with_proof && !extra.is_empty() {
                for n in extra {
                    rp.nodes.push(self.hashed_node(n)?);
                }
                rp.nodes.sort_by_key(|n| n.node.node);
                let pos: Vec<u64> = rp.nodes.iter().map(|n| u64::from(n.node.node)).collect();
                rp.lemmas = self.graph_tree.prove(&pos).ok()?;
            }
            (fused, GraphPart::Search(Box::new(rp)))
        } else {
            let mut top = lexical;
            top.truncate(k);
            let mut ids: Vec<u32> = if with_proof {
                top.iter().map(|x| x.1).collect()
            } else {
                Vec::new()
            };
            ids.sort_unstable();
            let nodes = ids
                .iter()
                .map(|&n| self.hashed_node(n))
                .collect::<Option<Vec<_>>>()?;
            let pos: Vec<u64> = ids.iter().map(|&n| u64::from(n)).collect();
            let lemmas = if pos.is_empty() {
                Vec::new()
            } else {
                self.graph_tree.prove(&pos).ok()?
            };
            (top, GraphPart::Nodes { nodes, lemmas })
        };
        let hits = ranked
            .iter()
            .map(|&(s, n)| {
                let node = &self.nodes.get(n as usize)?.node;
                node.alive.then_some((fixed_score(s), node.id))
            })
            .collect::<Option<Vec<_>>>()?;
        let proof = HybridProof {
            root,
            mode: if mode == MODE_HYBRID {
                MODE_HYBRID
            } else {
                MODE_LEXICAL
            },
            k: k as u32,
            depth: if mode == MODE_HYBRID { depth } else { k } as u32,
            terms,
            leaves,
            lex_lemmas,
            lex_pages: Some(lex_pages),
            graph,
        };
        Some((hits, proof))
    }

    /// Filtered recall in any mode: the hits as (score, id) and the `CPF1` proof that they are exactly the
    /// top-k among the live memories that pass `filter` (docs/PROOFS.md, "Filtered recall proof"). The proof
    /// carries every memory the filter's metadata pairs allow (every node without pairs), so more than
    /// `max_candidates` of them, or a pair in more than [`cairn_index::lexical::MAX_DF`] memories, is refused.
    #[allow(clippy::too_many_arguments)]
    pub fn prove_filtered(
        &self,
        mode: u8,
        query: Option<&[f32]>,
        text: &str,
        k: usize,
        depth: usize,
        filter: &RecallFilter,
        max_candidates: usize,
    ) -> Result<(Vec<(f32, MemoryId)>, FilteredProof), FilterRefused> {
        let root = self.root.clone().ok_or(FilterRefused::NoRoot)?;
        if root.record.lexicon.is_none() {
            return Err(FilterRefused::NoRoot);
        }
        let facets = filter.facets();
        let candidates: Vec<u32> = if facets.is_empty() {
            if self.nodes.len() > max_candidates {
                return Err(FilterRefused::TooBroad(self.nodes.len()));
            }
            (0..self.nodes.len() as u32).collect()
        } else {
            let lists = facets
                .iter()
                .map(|f| self.lex.facet_nodes(f).map_err(FilterRefused::TooBroad))
                .collect::<Result<Vec<_>, _>>()?;
            cairn_index::filtered::intersect(lists)
        };
        if candidates.len() > max_candidates {
            return Err(FilterRefused::TooBroad(candidates.len()));
        }
        let terms = if mode == FMODE_SEMANTIC {
            Vec::new()
        } else {
            query_terms(text)
        };
        let mut want = terms.clone();
        want.extend(facets);
        let (leaves, lex_pages, lex_lemmas) = self.lex.prove(&want).ok_or(FilterRefused::Stale)?;
        let nodes = candidates
            .iter()
            .map(|&n| self.hashed_node(n))
            .collect::<Option<Vec<_>>>()
            .ok_or(FilterRefused::Stale)?;
        let pos: Vec<u64> = candidates.iter().map(|&n| u64::from(n)).collect();
        let lemmas = if pos.is_empty() {
            Vec::new()
        } else {
            self.graph_tree
                .prove(&pos)
                .map_err(|_| FilterRefused::Stale)?
        };
        let qv = match (mode, query) {
            (FMODE_LEXICAL, _) => Vec::new(),
            (_, Some(q)) => quantise(q),
            (_, None) => return Err(FilterRefused::NoQuery),
        };
        let proof = FilteredProof {
            root,
            mode,
            k: k as u32,
            depth: if mode == FMODE_HYBRID {
                depth.max(k)
            } else {
                k
            } as u32,
            filter: filter.clone(),
            terms,
            query: qv,
            leaves,
            lex_lemmas,
            lex_pages: Some(lex_pages),
            nodes,
            lemmas,
        };
        // One home for the rule: the node answers with what the verifier will derive.
        let hits = filtered_answer(&proof)
            .map_err(|e| FilterRefused::Internal(e.to_string()))?
            .hits
            .iter()
            .map(|(s, n)| (*s, n.id))
            .collect();
        Ok((hits, proof))
    }
}

/// Why a filtered proof could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FilterRefused {
    /// No signed root with a lexical index yet.
    #[error("the namespace has no signed root with a lexical index yet")]
    NoRoot,
    /// Semantic or hybrid without a query vector.
    #[error("semantic and hybrid recall need a query")]
    NoQuery,
    /// More candidates than a proof may carry.
    #[error("{0} memories can pass this filter, more than a filtered proof may carry; narrow the filter (add a metadata pair) or ask without a proof")]
    TooBroad(usize),
    /// The trees are behind the index (never after a commit).
    #[error("the commitment is being updated; retry")]
    Stale,
    /// The verifier rejected the node's own proof.
    #[error("internal: {0}")]
    Internal(String),
}

/// The prover's view of the graph: everything is there; it records what the search touched.
struct Recorder<'a> {
    c: &'a Commitment,
    touched: HashSet<u32>,
    expanded: HashSet<u32>,
    /// The search's answer, once it ran.
    scored: Vec<(i32, u32)>,
}

impl GraphView for Recorder<'_> {
    fn vector(&mut self, node: u32) -> Result<&[i8], SearchError> {
        let n = self
            .c
            .nodes
            .get(node as usize)
            .ok_or(SearchError::MissingNode(node))?;
        self.touched.insert(node);
        Ok(&n.node.vector)
    }

    fn neighbours(&mut self, node: u32, layer: u8) -> Result<Vec<u32>, SearchError> {
        let n = self
            .c
            .nodes
            .get(node as usize)
            .ok_or(SearchError::MissingLists(node))?;
        self.touched.insert(node);
        self.expanded.insert(node);
        Ok(n.lists.get(layer as usize).cloned().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ann::HnswParams;
    use cairn_index::proof::{recall_answer, VerifyLimits};

    fn rows(n: usize, dim: usize, seed: u64) -> Vec<PointRow> {
        // Deterministic clustered unit vectors.
        let mut x = seed;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 10_000) as f32 / 10_000.0 - 0.5
        };
        (0..n)
            .map(|i| {
                let c = (i % 5) as f32;
                let mut v: Vec<f32> = (0..dim)
                    .map(|d| next() + if d % 5 == i % 5 { c } else { 0.0 })
                    .collect();
                let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
                v.iter_mut().for_each(|a| *a /= norm);
                PointRow {
                    id: MemoryId(*blake3::hash(&(i as u64).to_be_bytes()).as_bytes()),
                    created_at: 1000 + (i as u64 * 7919) % 500,
                    alive: true,
                    dedup: [0; 32],
                    vector: v,
                    metadata: Default::default(),
                    lex: None,
                }
            })
            .collect()
    }

    fn params() -> CommitParams {
        CommitParams {
            m: 8,
            dim: 16,
            model: [5; 32],
        }
    }

    #[test]
    fn incremental_commitment_equals_a_full_rebuild() {
        let all = rows(400, 16, 42);
        let ann = Ann::new(
            HnswParams {
                m: 8,
                ef_construction: 50,
                dim: 16,
            },
            400,
        );
        let mut c = Commitment::default();
        let mut have: Vec<PointRow> = Vec::new();
        for chunk in all.chunks(37) {
            let first = have.len();
            for (i, r) in chunk.iter().enumerate() {
                ann.insert(&r.vector, first + i).expect("insert");
            }
            have.extend_from_slice(chunk);
            let vectors: Vec<&[f32]> = chunk.iter().map(|r| r.vector.as_slice()).collect();
            c.add_points(&have, first, &vectors, &ann)
                .expect("one vector per new point");
            let full = Commitment::build(&have, &ann);
            assert_eq!(
                c.graph_tree.root(),
                full.graph_tree.root(),
                "graph root after {} points",
                have.len()
            );
            assert_eq!(c.time_tree.root(), full.time_tree.root());
            assert_eq!(c.entry, full.entry);
        }
        c.forget(&[3, 10, 200]);
        have[3].alive = false;
        have[10].alive = false;
        have[200].alive = false;
        let full = Commitment::build(&have, &ann);
        assert_eq!(c.graph_tree.root(), full.graph_tree.root());
        assert_eq!(c.time_tree.root(), full.time_tree.root());
    }

    /// Live points that a walk over the HNSW graph's own links (no repairs) cannot reach from its entry point.
    fn hnsw_orphans(ann: &Ann, n: usize) -> Vec<usize> {
        let links = ann.links(&|_| true);
        let mut lists = vec![Vec::new(); n];
        for l in links {
            lists[l.point] = l.lists;
        }
        let mut seen = vec![false; n];
        let mut stack = vec![ann.entry().map_or(0, |e| e.0)];
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            for l in &lists[i] {
                stack.extend(l.iter().map(|&x| x as usize));
            }
        }
        (0..n).filter(|&i| !seen[i]).collect()
    }

    #[test]
    fn every_live_memory_is_reachable_even_where_hnsw_orphans_it() {
        // Near-duplicates and a small M: HNSW leaves points that no list names.
        let p = HnswParams {
            m: 2,
            ef_construction: 8,
            dim: 16,
        };
        let mut all = rows(600, 16, 7);
        for r in all.iter_mut() {
            for (d, x) in r.vector.iter_mut().enumerate() {
                *x = *x * 0.05 + if d == 0 { 1.0 } else { 0.0 };
            }
            let norm = r.vector.iter().map(|a| a * a).sum::<f32>().sqrt();
            r.vector.iter_mut().for_each(|a| *a /= norm);
        }
        let ann = Ann::new(p, all.len());
        let mut c = Commitment::default();
        let mut have: Vec<PointRow> = Vec::new();
        for chunk in all.chunks(50) {
            let first = have.len();
            for (i, r) in chunk.iter().enumerate() {
                ann.insert(&r.vector, first + i).expect("insert");
            }
            have.extend_from_slice(chunk);
            let vectors: Vec<&[f32]> = chunk.iter().map(|r| r.vector.as_slice()).collect();
            c.add_points(&have, first, &vectors, &ann)
                .expect("one vector per new point");
            assert_eq!(c.unreachable_live(), 0, "after {} points", have.len());
            // A restart's rebuild is repaired too.
            assert_eq!(Commitment::build(&have, &ann).unreachable_live(), 0);
        }
        let orphans = hnsw_orphans(&ann, all.len());
        assert!(
            !orphans.is_empty(),
            "the fixture must make HNSW orphan points, or this test shows nothing"
        );
        // Forgetting a node that hosts repair links keeps the orphans reachable (tombstones still route).
        let hosts: Vec<u64> = c.repaired.iter().map(|&n| u64::from(n)).take(3).collect();
        assert!(!hosts.is_empty());
        c.forget(&hosts);
        for &h in &hosts {
            have[h as usize].alive = false;
        }
        assert_eq!(c.unreachable_live(), 0);
        // An orphan is now found by the committed graph search for its own vector.
        let u = orphans[0];
        let hits = c.recall_hits(&all[u].vector, 10, 64);
        assert!(
            hits.iter().any(|(_, id)| *id == all[u].id),
            "orphan {u} not found by the committed graph search"
        );
    }

    #[test]
    fn recall_proofs_verify_at_every_size_and_reject_tampering() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let trusted = key.verifying_key().to_bytes();
        for n in [1usize, 2, 7, 64, 300] {
            let all = rows(n, 16, n as u64 + 3);
            let ann = Ann::new(
                HnswParams {
                    m: 8,
                    ef_construction: 50,
                    dim: 16,
                },
                n,
            );
            for (i, r) in all.iter().enumerate() {
                ann.insert(&r.vector, i).expect("insert");
            }
            let mut c = Commitment::build(&all, &ann);
            // Tombstones (zeroed vectors) are passed through by the search and never returned.
            let dead: Vec<u64> = (0..n as u64).filter(|p| p % 5 == 3).collect();
            c.forget(&dead);
            let root = c.next_root("ns", &params(), &key, 1);
            c.set_root(root);
            for exact in [false, true] {
                let q = all[n / 2].vector.clone();
                let (hits, proof) = c.prove_recall(&q, 5, 16, exact).unwrap();
                assert_eq!(hits.len(), 5.min(n - dead.len()));
                assert!(hits
                    .iter()
                    .all(|h| !dead.iter().any(|&d| all[d as usize].id == h.1)));
                let bytes = proof.encode();
                let decoded = RecallProof::decode(&bytes, &VerifyLimits::default()).unwrap();
                let answer = recall_answer(&decoded).unwrap();
                let ids: Vec<MemoryId> = answer.iter().map(|(_, g)| g.id).collect();
                assert_eq!(
                    ids,
                    hits.iter().map(|h| h.1).collect::<Vec<_>>(),
                    "n={n} exact={exact}"
                );
                assert_eq!(decoded.root.verify(Some(&trusted)), Ok(()));
                // Sampled single-byte flips never panic and never yield the same answer silently.
                // The query vector is an input of the proof (a client with the model re-embeds its text to bind it):
                // flipping it asks another question, so those bytes are skipped here.
                let q_start = 4 + decoded.root.encode().len() + 1 + 4 + 4 + 2;
                let q_range = q_start..q_start + decoded.query.len();
                let step = (bytes.len() / 200).max(1);
                for i in (0..bytes.len())
                    .step_by(step)
                    .filter(|i| !q_range.contains(i))
                {
                    let mut b = bytes.clone();
                    b[i] ^= 0x01;
                    if let Ok(p) = RecallProof::decode(&b, &VerifyLimits::default()) {
                        // A changed proof may still be a valid proof of the same answer (e.g. another ef);
                        // it must never verify with a different answer or for another k.
                        if p.root.verify(Some(&trusted)).is_ok() && p.k == decoded.k {
                            if let Ok(a) = recall_answer(&p) {
                                let got: Vec<MemoryId> = a.iter().map(|(_, g)| g.id).collect();
                                assert_eq!(got, ids, "n={n} flip at {i} changed the answer");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn list_pages_prove_completeness() {
        use cairn_index::proof::{verify_list, ListRange, Returned};
        use cairn_index::record::MemoryRecord;
        let key = SigningKey::from_bytes(&[2; 32]);
        let trusted = key.verifying_key().to_bytes();
        for n in [0usize, 1, 2, 9, 120] {
            let mut all = rows(n, 16, 9);
            // Real records, so the verifier's record checks run too.
            let mut records = std::collections::HashMap::new();
            for (i, r) in all.iter_mut().enumerate() {
                let rec = MemoryRecord {
                    namespace: "ns".into(),
                    created_at: r.created_at,
                    salt: [i as u8; 16],
                    text: format!("memory {i}"),
                    metadata: Default::default(),
                };
                r.id = rec.id();
                records.insert(r.id, rec.encode());
            }
            let ann = Ann::new(
                HnswParams {
                    m: 8,
                    ef_construction: 50,
                    dim: 16,
                },
                n.max(1),
            );
            for (i, r) in all.iter().enumerate() {
                ann.insert(&r.vector, i).expect("insert");
            }
            let mut c = Commitment::build(&all, &ann);
            let root = c.next_root("ns", &params(), &key, 1);
            c.set_root(root);
            let cases = [
                (0, u64::MAX, 1000),
                (1100, 1300, 1000),
                (1100, 1300, 3),
                (1001, 1300, 1000),
                (0, 1000, 10),
                (0, 1001, 10),
                (1499, u64::MAX, 10),
                (5000, 6000, 10),
                (0, 1, 10),
            ];
            for (since, until, limit) in cases {
                let mut after = None;
                let mut got = Vec::new();
                for _ in 0..200 {
                    let (page, more, proof) = c.list_page(since, until, after, limit).unwrap();
                    let bytes = proof.encode();
                    assert_eq!(
                        TimeProof::decode(&bytes, &VerifyLimits::default()).unwrap(),
                        proof
                    );
                    let returned: Vec<Returned<'_>> = page
                        .iter()
                        .map(|e| Returned {
                            id: &e.id,
                            record: &records[&e.id],
                        })
                        .collect();
                    let range = ListRange {
                        since,
                        until,
                        after,
                        limit: limit as u32,
                    };
                    verify_list(
                        &bytes,
                        "ns",
                        &trusted,
                        &range,
                        &returned,
                        &VerifyLimits::default(),
                    )
                    .unwrap_or_else(|e| {
                        panic!("n={n} range=({since},{until},{limit}) after={after:?}: {e}")
                    });
                    // Leaving out any memory is caught.
                    for skip in 0..returned.len() {
                        let mut short = returned.clone();
                        short.remove(skip);
                        assert!(verify_list(
                            &bytes,
                            "ns",
                            &trusted,
                            &range,
                            &short,
                            &VerifyLimits::default()
                        )
                        .is_err());
                    }
                    got.extend(page.iter().map(|e| e.id));
                    match (more, page.last()) {
                        (true, Some(e)) => after = Some((e.created_at, e.id)),
                        _ => break,
                    }
                }
                let mut want: Vec<&PointRow> = all
                    .iter()
                    .filter(|r| r.created_at >= since && r.created_at < until)
                    .collect();
                want.sort_by_key(|r| (r.created_at, r.id));
                assert_eq!(
                    got,
                    want.iter().map(|r| r.id).collect::<Vec<_>>(),
                    "n={n} ({since},{until},{limit})"
                );
            }
        }
    }
}

#[cfg(test)]
mod hybrid_tests {
    use super::*;
    use crate::ann::HnswParams;
    use crate::store::terms::IntoTerms;
    use cairn_index::hybrid::{verify_hybrid, HybridAsked, TermPostings};
    use cairn_index::lexical::DocTerms;
    use cairn_index::proof::{Returned, VerifyLimits};
    use cairn_index::record::MemoryRecord;

    const WORDS: &[&str] = &[
        "paris", "lake", "painting", "adoption", "guitar", "camping", "sunset", "dog", "museum",
        "pottery", "festival", "marathon", "violin", "garden", "career", "school",
    ];

    /// Records with texts over a small vocabulary, rows with their terms and deterministic vectors.
    fn corpus(n: usize, dim: usize) -> (Vec<Vec<u8>>, Vec<PointRow>) {
        let mut recs = Vec::new();
        let mut rows = Vec::new();
        for i in 0..n {
            let text = format!(
                "Caroline talked about {} and {} with Melanie, then {} again on day {}",
                WORDS[i % WORDS.len()],
                WORDS[(i * 7 + 3) % WORDS.len()],
                WORDS[(i * i) % WORDS.len()],
                i % 9
            );
            let rec = MemoryRecord {
                namespace: "ns".into(),
                created_at: 1000 + i as u64,
                salt: [i as u8; 16],
                text: text.clone(),
                metadata: Default::default(),
            };
            let mut v: Vec<f32> = (0..dim)
                .map(|d| (((i * 31 + d * 17) % 23) as f32 - 11.0) / 10.0 + 0.01)
                .collect();
            let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
            v.iter_mut().for_each(|a| *a /= norm);
            rows.push(PointRow {
                id: rec.id(),
                created_at: rec.created_at,
                alive: true,
                dedup: [0; 32],
                vector: v,
                metadata: Default::default(),
                lex: Some(DocTerms::of(&text).into_terms()),
            });
            recs.push(rec.encode());
        }
        (recs, rows)
    }

    fn built(n: usize, key: &SigningKey) -> (Vec<Vec<u8>>, Vec<PointRow>, Commitment) {
        let (recs, rows) = corpus(n, 16);
        let ann = Ann::new(
            HnswParams {
                m: 8,
                ef_construction: 50,
                dim: 16,
            },
            n,
        );
        for (i, r) in rows.iter().enumerate() {
            ann.insert(&r.vector, i).expect("insert");
        }
        let mut c = Commitment::build(&rows, &ann);
        c.forget(&[4, 9]);
        let params = CommitParams {
            m: 8,
            dim: 16,
            model: [5; 32],
        };
        let root = c.next_root("ns", &params, key, 1);
        c.set_root(root);
        (recs, rows, c)
    }

    fn check(
        c: &Commitment,
        recs: &[Vec<u8>],
        rows: &[PointRow],
        proof: &[u8],
        hits: &[(f32, MemoryId)],
        asked: &HybridAsked<'_>,
    ) -> Result<(), cairn_index::proof::VerifyError> {
        let by_id: HashMap<MemoryId, &Vec<u8>> = rows.iter().map(|r| r.id).zip(recs).collect();
        let returned: Vec<Returned<'_>> = hits
            .iter()
            .map(|(_, id)| Returned {
                id,
                record: by_id.get(id).map_or(&[][..], |r| r.as_slice()),
            })
            .collect();
        let scores: Vec<f32> = hits.iter().map(|h| h.0).collect();
        let trusted = c.root().map_or([0; 32], |r| r.record.node_id);
        verify_hybrid(
            proof,
            "ns",
            &trusted,
            asked,
            &returned,
            &scores,
            &VerifyLimits::default(),
        )
        .map(|_| ())
    }

    use std::collections::HashMap;

    #[test]
    fn lexical_and_hybrid_proofs_verify_and_reject_every_change() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let (recs, rows, c) = built(50, &key);
        let question = "When did Caroline go to the museum or the pottery festival in Paris?";
        for (mode, exact) in [
            (MODE_LEXICAL, false),
            (MODE_HYBRID, false),
            (MODE_HYBRID, true),
        ] {
            let (hits, proof) = c
                .prove_hybrid(
                    mode,
                    Some(&rows[7].vector),
                    question,
                    6,
                    12,
                    16,
                    exact,
                    true,
                )
                .unwrap();
            assert_eq!(hits.len(), 6);
            // Without a proof asked, the same ranking and no proof material.
            let (plain, bare) = c
                .prove_hybrid(
                    mode,
                    Some(&rows[7].vector),
                    question,
                    6,
                    12,
                    16,
                    exact,
                    false,
                )
                .unwrap();
            assert_eq!(plain, hits);
            assert!(bare.leaves.is_empty() && bare.lex_lemmas.is_empty());
            let bytes = proof.encode();
            let asked = HybridAsked {
                mode,
                k: 6,
                min_ef: 0,
                min_depth: 12,
                query: Some(question),
            };
            check(&c, &recs, &rows, &bytes, &hits, &asked).unwrap();
            // Another question's terms are refused.
            let other = HybridAsked {
                query: Some("violin marathon"),
                ..asked
            };
            assert!(check(&c, &recs, &rows, &bytes, &hits, &other).is_err());
            // Swapped order, a dropped hit, a wrong score: refused.
            let mut swapped = hits.clone();
            swapped.swap(0, 1);
            assert!(check(&c, &recs, &rows, &bytes, &swapped, &asked).is_err());
            assert!(check(&c, &recs, &rows, &bytes, &hits[1..], &asked).is_err());
            let mut scored = hits.clone();
            scored[2].0 += 1e-6;
            assert!(check(&c, &recs, &rows, &bytes, &scored, &asked).is_err());
            // A posting dropped from a query term's list (a memory containing the term hidden): refused.
            let mut p = proof.clone();
            let leaf = p
                .leaves
                .iter_mut()
                .find(|l| matches!(&l.postings, TermPostings::Full(ps) if ps.len() > 1))
                .unwrap();
            if let TermPostings::Full(ps) = &mut leaf.postings {
                ps.remove(0);
                leaf.df -= 1;
            }
            assert!(check(&c, &recs, &rows, &p.encode(), &hits, &asked).is_err());
            // Every single-byte change of the proof is refused, except in the semantic half's query vector
            // (bound by re-embedding the text: `--check-query`) and ef (only a minimum is asked). Every byte
            // of the lexical half; one in 13 of the semantic half (a `CPR2` proof, swept in its own tests).
            let mut skip = 0..0;
            let mut skip_ef = 0..0;
            let mut semantic = bytes.len()..bytes.len();
            if let GraphPart::Search(rp) = &proof.graph {
                let inner = rp.encode();
                semantic = bytes.len() - inner.len()..bytes.len();
                let at = semantic.start + 4 + rp.root.encode().len() + 1 + 4;
                skip_ef = at..at + 4;
                skip = at + 6..at + 6 + rp.query.len();
            }
            // The signed root's bytes (checked by signature, swept in the root tests): one in 8.
            let root = 4..4 + proof.root.encode().len();
            for i in (0..bytes.len()).filter(|i| {
                !skip.contains(i)
                    && !skip_ef.contains(i)
                    && (!semantic.contains(i) || (i - semantic.start) % 13 == 0)
                    && (!root.contains(i) || i % 8 == 0)
            }) {
                let mut b = bytes.clone();
                b[i] ^= 0x01;
                assert!(
                    check(&c, &recs, &rows, &b, &hits, &asked).is_err(),
                    "mode {mode} exact {exact}: change at byte {i} of {} accepted",
                    bytes.len()
                );
            }
        }
    }

    /// A root that is not version 3 never counts as current, even when its trees' roots happen to equal the
    /// paged ones (an empty namespace, or up to a page of graph nodes): the node then signs a version-3 root, so
    /// its proofs (`CPT2`) always go with a root that expects them. A replica refuses such a root outright.
    #[test]
    fn older_root_versions_are_never_current_and_replicas_refuse_them() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let (_, _, mut c) = built(30, &key);
        assert!(c.root_is_current());
        let mut rec = c.root().expect("root").record.clone();
        rec.version = cairn_index::root::ROOT_VERSION_2;
        let old = SignedRoot::sign(rec, &key);
        c.set_root(old.clone());
        assert!(!c.graph_is_current() && !c.root_is_current());
        // An empty namespace: both formats give the same (zero) roots; only the version tells them apart.
        let mut empty = Commitment::default();
        let params = CommitParams {
            m: 8,
            dim: 16,
            model: [5; 32],
        };
        let mut rec = empty.next_root("ns", &params, &key, 1).record;
        empty.set_root(SignedRoot::sign(rec.clone(), &key));
        assert!(empty.graph_is_current());
        rec.version = cairn_index::root::ROOT_VERSION_2;
        empty.set_root(SignedRoot::sign(rec, &key));
        assert!(!empty.graph_is_current());
        let mut replica = Commitment::default();
        let nodes = c.export(&(0..c.len() as u32).collect::<Vec<_>>());
        let err = replica
            .apply_replica(nodes, old, true)
            .expect_err("a version-2 root is refused");
        assert!(err.0.contains("upgrade the owner"), "{err}");
    }

    #[test]
    fn an_index_that_hides_a_memory_does_not_reproduce_the_root() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let (_, rows, mut c) = built(40, &key);
        // The owner drops a live memory from its lexical index and signs that.
        c.lex.remove(11);
        c.lex.rebuild();
        let params = CommitParams {
            m: 8,
            dim: 16,
            model: [5; 32],
        };
        let lying = c.next_root("ns", &params, &key, 2);
        // A replica rebuilds the index from the records it holds and refuses the root.
        let mut replica = Commitment::default();
        let nodes = c.export(&(0..c.len() as u32).collect::<Vec<_>>());
        replica.apply_replica(nodes, lying, true).unwrap();
        let docs = rows
            .iter()
            .enumerate()
            .filter(|(i, r)| r.alive && ![4, 9].contains(i))
            .map(|(i, r)| (i as u32, r.lex.clone().unwrap(), facet_terms(&r.metadata)))
            .collect();
        assert!(replica.apply_replica_docs(docs).is_err());
    }
}

#[cfg(test)]
mod filtered_tests {
    use super::*;
    use crate::ann::HnswParams;
    use crate::store::terms::IntoTerms;
    use cairn_index::filtered::{verify_filtered, FilteredAsked, RecallFilter};
    use cairn_index::hybrid::TermPostings;
    use cairn_index::lexical::DocTerms;
    use cairn_index::proof::{Returned, VerifyLimits};
    use cairn_index::record::{MemoryRecord, Metadata};
    use std::collections::HashMap;

    const WORDS: &[&str] = &[
        "paris", "lake", "painting", "adoption", "guitar", "camping", "sunset", "dog", "museum",
        "pottery",
    ];

    fn meta(i: usize) -> Metadata {
        let mut m = Metadata::new();
        m.insert(
            "speaker".into(),
            if i.is_multiple_of(2) {
                "Caroline"
            } else {
                "Melanie"
            }
            .into(),
        );
        m.insert("session".into(), format!("s{}", i % 3));
        m
    }

    /// Records with metadata (speaker alternating, session i % 3) and rows built from them.
    fn built(n: usize, key: &SigningKey) -> (Vec<Vec<u8>>, Vec<PointRow>, Commitment) {
        let dim = 16;
        let mut recs = Vec::new();
        let mut rows = Vec::new();
        for i in 0..n {
            let text = format!(
                "{} talked about {} and {} on day {}",
                if i.is_multiple_of(2) {
                    "Caroline"
                } else {
                    "Melanie"
                },
                WORDS[i % WORDS.len()],
                WORDS[(i * 7 + 3) % WORDS.len()],
                i % 9
            );
            let rec = MemoryRecord {
                namespace: "ns".into(),
                created_at: 1000 + i as u64,
                salt: [i as u8; 16],
                text: text.clone(),
                metadata: meta(i),
            };
            let mut v: Vec<f32> = (0..dim)
                .map(|d| (((i * 31 + d * 17) % 23) as f32 - 11.0) / 10.0 + 0.01)
                .collect();
            let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
            v.iter_mut().for_each(|a| *a /= norm);
            rows.push(PointRow {
                id: rec.id(),
                created_at: rec.created_at,
                alive: true,
                dedup: [0; 32],
                vector: v,
                metadata: meta(i),
                lex: Some(DocTerms::of(&text).into_terms()),
            });
            recs.push(rec.encode());
        }
        let ann = Ann::new(
            HnswParams {
                m: 8,
                ef_construction: 50,
                dim,
            },
            n,
        );
        for (i, r) in rows.iter().enumerate() {
            ann.insert(&r.vector, i).expect("insert");
        }
        let mut c = Commitment::build(&rows, &ann);
        c.forget(&[4, 9]);
        rows[4].alive = false;
        rows[9].alive = false;
        let params = CommitParams {
            m: 8,
            dim: dim as u16,
            model: [5; 32],
        };
        let root = c.next_root("ns", &params, key, 1);
        c.set_root(root);
        (recs, rows, c)
    }

    fn check(
        c: &Commitment,
        recs: &[Vec<u8>],
        rows: &[PointRow],
        proof: &[u8],
        hits: &[(f32, MemoryId)],
        asked: &FilteredAsked<'_>,
    ) -> Result<(), cairn_index::proof::VerifyError> {
        let by_id: HashMap<MemoryId, &Vec<u8>> = rows.iter().map(|r| r.id).zip(recs).collect();
        let returned: Vec<Returned<'_>> = hits
            .iter()
            .map(|(_, id)| Returned {
                id,
                record: by_id.get(id).map_or(&[][..], |r| r.as_slice()),
            })
            .collect();
        let scores: Vec<f32> = hits.iter().map(|h| h.0).collect();
        let trusted = c.root().map_or([0; 32], |r| r.record.node_id);
        verify_filtered(
            proof,
            "ns",
            &trusted,
            asked,
            &returned,
            &scores,
            &VerifyLimits::default(),
        )
        .map(|_| ())
    }

    fn filter(pairs: &[(&str, &str)], since: Option<u64>, until: Option<u64>) -> RecallFilter {
        RecallFilter {
            pairs: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            since,
            until,
        }
    }

    const QUESTION: &str = "Did Caroline talk about the museum or pottery in Paris?";

    #[test]
    fn filtered_proofs_verify_in_every_mode_and_hold_only_passing_memories() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let (recs, rows, c) = built(60, &key);
        let q = rows[7].vector.clone();
        for f in [
            filter(&[("speaker", "Caroline")], None, None),
            filter(
                &[("session", "s1"), ("speaker", "Melanie")],
                Some(1010),
                None,
            ),
            filter(&[], Some(1005), Some(1040)),
            filter(&[("speaker", "Nobody")], None, None),
        ] {
            for mode in [FMODE_SEMANTIC, FMODE_LEXICAL, FMODE_HYBRID] {
                let (hits, proof) = c
                    .prove_filtered(mode, Some(&q), QUESTION, 5, 10, &f, 1000)
                    .unwrap();
                let asked = FilteredAsked {
                    mode,
                    k: 5,
                    min_depth: 10,
                    filter: &f,
                    query: Some(QUESTION),
                };
                check(&c, &recs, &rows, &proof.encode(), &hits, &asked)
                    .unwrap_or_else(|e| panic!("mode {mode} {f:?}: {e}"));
                let by_id: HashMap<MemoryId, &PointRow> = rows.iter().map(|r| (r.id, r)).collect();
                for (_, id) in &hits {
                    let r = by_id[id];
                    assert!(r.alive && f.passes(r.created_at, &r.metadata), "{f:?}");
                }
                if mode == FMODE_SEMANTIC {
                    // Exactly the k nearest passing memories (int8 distances, ties by node).
                    let qi = quantise(&q);
                    let mut want: Vec<(i32, usize)> = rows
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.alive && f.passes(r.created_at, &r.metadata))
                        .map(|(i, r)| (cairn_index::commit::distance(&qi, &quantise(&r.vector)), i))
                        .collect();
                    want.sort_unstable();
                    let want: Vec<MemoryId> = want.iter().take(5).map(|x| rows[x.1].id).collect();
                    let got: Vec<MemoryId> = hits.iter().map(|h| h.1).collect();
                    assert_eq!(got, want, "{f:?}");
                }
                if f.pairs.first().is_some_and(|p| p.1 == "Nobody") {
                    assert!(hits.is_empty());
                } else {
                    assert!(!hits.is_empty(), "mode {mode} {f:?}");
                }
                // Another filter's question is refused.
                let other = filter(&[("speaker", "Melanie")], None, None);
                let wrong = FilteredAsked {
                    filter: &other,
                    ..asked
                };
                assert!(check(&c, &recs, &rows, &proof.encode(), &hits, &wrong).is_err());
            }
        }
    }

    #[test]
    fn a_node_that_bends_a_filtered_answer_is_caught_and_every_byte_counts() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let (recs, rows, c) = built(60, &key);
        let q = rows[7].vector.clone();
        let f = filter(&[("speaker", "Caroline")], Some(1002), None);
        for mode in [FMODE_SEMANTIC, FMODE_LEXICAL, FMODE_HYBRID] {
            let (hits, proof) = c
                .prove_filtered(mode, Some(&q), QUESTION, 4, 8, &f, 1000)
                .unwrap();
            assert_eq!(hits.len(), 4);
            let bytes = proof.encode();
            let asked = FilteredAsked {
                mode,
                k: 4,
                min_depth: 8,
                filter: &f,
                query: Some(QUESTION),
            };
            check(&c, &recs, &rows, &bytes, &hits, &asked).unwrap();
            // A memory outside the filter in place of a hit (Melanie's, alive): refused.
            let outsider = rows[11].id;
            let mut out = hits.clone();
            out[1].1 = outsider;
            assert!(check(&c, &recs, &rows, &bytes, &out, &asked).is_err());
            // Swapped order, a dropped hit: refused.
            let mut swapped = hits.clone();
            swapped.swap(0, 1);
            assert!(check(&c, &recs, &rows, &bytes, &swapped, &asked).is_err());
            assert!(check(&c, &recs, &rows, &bytes, &hits[1..], &asked).is_err());
            // A passing memory hidden from the facet list (and its node left out): refused.
            let mut p = proof.clone();
            let facet = cairn_index::lexical::facet_term("speaker", "Caroline");
            let leaf = p.leaves.iter_mut().find(|l| l.term == facet).unwrap();
            let TermPostings::Full(ps) = &mut leaf.postings else {
                panic!("facet list not shown in full")
            };
            let hidden = ps.remove(0).node;
            leaf.df -= 1;
            p.nodes.retain(|n| n.node.node != hidden);
            assert!(check(&c, &recs, &rows, &p.encode(), &hits, &asked).is_err());
            // A candidate's node left out: refused.
            let mut p = proof.clone();
            p.nodes.remove(2);
            assert!(check(&c, &recs, &rows, &p.encode(), &hits, &asked).is_err());
            // Every single-byte change is refused, except in the query vector (bound by re-embedding the
            // text: `--check-query`) and a hybrid proof's depth; the signed root's bytes (swept in the root
            // tests) one in 8.
            // (Debug builds verify a signature per change, so the sweep samples where a byte is only hashed.)
            let root = 4..4 + proof.root.encode().len();
            let mut at = root.end + 1 + 4 + 4 + 2;
            for (k, v) in &proof.filter.pairs {
                at += 2 + k.len() + 4 + v.len();
            }
            at += 1
                + 8 * usize::from(proof.filter.since.is_some())
                + 8 * usize::from(proof.filter.until.is_some());
            at += 2 + proof.terms.iter().map(|t| 2 + t.len()).sum::<usize>() + 2;
            let skip = at..at + proof.query.len();
            // Hybrid: the depth too (only a minimum is asked; a deeper fusion may give the same answer).
            let depth = if mode == FMODE_HYBRID {
                root.end + 5..root.end + 9
            } else {
                0..0
            };
            // The graph nodes (each bound by the multiproof, as swept in the recall tests): one byte in 11.
            let bare = FilteredProof {
                nodes: Vec::new(),
                lemmas: Vec::new(),
                ..proof.clone()
            };
            let nodes = bare.encode().len() - 8..bytes.len();
            for i in (0..bytes.len()).filter(|i| {
                !skip.contains(i)
                    && !depth.contains(i)
                    && (!root.contains(i) || i % 8 == 0)
                    && (!nodes.contains(i) || i % 11 == 0)
            }) {
                let mut b = bytes.clone();
                b[i] ^= 0x01;
                assert!(
                    check(&c, &recs, &rows, &b, &hits, &asked).is_err(),
                    "mode {mode}: change at byte {i} of {} accepted",
                    bytes.len()
                );
            }
        }
    }

    #[test]
    fn a_filter_broader_than_a_proof_may_carry_is_refused() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let (_, rows, c) = built(60, &key);
        let f = filter(&[("speaker", "Caroline")], None, None);
        assert!(matches!(
            c.prove_filtered(FMODE_SEMANTIC, Some(&rows[0].vector), "", 5, 5, &f, 10),
            Err(FilterRefused::TooBroad(29)) // 30 of 60, one of them forgotten
        ));
        let f = filter(&[], Some(1000), None);
        assert!(matches!(
            c.prove_filtered(FMODE_LEXICAL, None, QUESTION, 5, 5, &f, 59),
            Err(FilterRefused::TooBroad(60))
        ));
    }
}
