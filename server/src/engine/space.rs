//! One namespace in memory: its point rows (id, metadata, liveness), id map, and HNSW graph.
//!
//! Point numbers are the graph's data ids and the keys of the `points` table in redb; forgotten points stay
//! as tombstones (filtered out of every read) until compaction renumbers the survivors.
//!
//! Each vector is held in memory once: an owner's HNSW graph keeps the f32 vector, a replica's commitment the
//! int8 codes it replicated. Rows in memory carry an empty `vector` (see [`without_vectors`]); the rows in redb
//! keep theirs, and whatever needs a vector from a row (compaction, a rebuild) reads it from there.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use cairn_index::id::MemoryId;
use cairn_index::model::ExternalModel;
use cairn_index::root::SignedRoot;
use tokio::sync::Mutex;

use super::commitment::{CommitParams, Commitment};
use super::Filter;
use crate::ann::{rows_fingerprint, Ann, DumpError, HnswParams};
use crate::error::NodeError;
use crate::store::{NewPoint, PointRow};

/// At or below this many candidate memories, Recall scores every candidate exactly instead of walking the graph.
const EXACT_LIMIT: usize = 2048;

/// A Recall's search request.
pub struct Search<'a> {
    /// Unit query vector.
    pub query: &'a [f32],
    /// Hits wanted.
    pub k: usize,
    /// Graph search breadth.
    pub ef: usize,
    /// Restrictions.
    pub filter: &'a Filter,
    /// Score every candidate instead of walking the graph.
    pub exact: bool,
}

struct Inner {
    commit: Commitment,
    /// The node's own HNSW graph (owned namespaces). Replicas search the owner's committed graph instead.
    ann: Option<Arc<Ann>>,
    log: ChangeLog,
    rows: Vec<PointRow>,
    by_id: HashMap<MemoryId, usize>,
    live: usize,
    newest: u64,
}

impl Inner {
    /// Hides forgotten points from every read and drops them from the commitment (not yet signed).
    fn bury(&mut self, points: &[u64]) {
        for &p in points {
            let p = p as usize;
            if let Some(row) = self.rows.get_mut(p) {
                if row.alive {
                    let id = row.id;
                    // In memory (no vector held); the row in redb keeps its dimension.
                    *row = PointRow::tombstone(0);
                    self.by_id.remove(&id);
                    self.live -= 1;
                }
            }
        }
        self.commit.forget(points);
    }
}

/// A Remember call waiting to be committed with whatever else is queued (group commit).
pub struct PendingWrite {
    /// The items, validated.
    pub items: Vec<super::Item>,
    /// Their dedup keys.
    pub keys: Vec<[u8; 32]>,
    /// Vectors of the items that needed embedding, by item index.
    pub vectors: std::collections::HashMap<usize, Vec<f32>>,
    /// Identity of the model the vectors are of (a migration may change the namespace's before they commit).
    pub model: [u8; 32],
    /// Where the results go.
    pub reply: tokio::sync::oneshot::Sender<Result<Vec<super::Remembered>, NodeError>>,
}

/// Which nodes changed at each recent root, so replicas can fetch only those (a delta) instead of the whole
/// graph. Holds every change for seqs in `(base, latest]`.
#[derive(Debug, Default)]
struct ChangeLog {
    base: u64,
    entries: std::collections::VecDeque<(u64, Vec<u32>)>,
    total: usize,
}

/// Most node numbers the log keeps before dropping its oldest roots.
const CHANGE_LOG_CAP: usize = 2_000_000;

impl ChangeLog {
    fn starting_at(seq: u64) -> Self {
        ChangeLog {
            base: seq,
            ..Default::default()
        }
    }

    fn record(&mut self, seq: u64, changed: Vec<u32>) {
        self.total += changed.len();
        self.entries.push_back((seq, changed));
        while self.total > CHANGE_LOG_CAP {
            match self.entries.pop_front() {
                Some((s, c)) => {
                    self.total -= c.len();
                    self.base = s;
                }
                None => break,
            }
        }
    }

    /// Nodes changed after `have`, or None if the log does not reach back that far.
    fn since(&self, have: u64) -> Option<Vec<u32>> {
        if have < self.base {
            return None;
        }
        let mut out: Vec<u32> = self
            .entries
            .iter()
            .filter(|(s, _)| *s > have)
            .flat_map(|(_, c)| c.iter().copied())
            .collect();
        out.sort_unstable();
        out.dedup();
        Some(out)
    }
}

/// What a node serves a replica (plain data, with its codec in cairn-index).
pub use cairn_index::sync::SyncOut;

/// A namespace's in-memory state.
pub struct Space {
    /// The namespace.
    pub name: String,
    /// The owner's node id when this namespace is a replica: read-only here, updated only from the owner's
    /// signed roots.
    pub owner: Option<[u8; 32]>,
    /// Serialises writers (Remember, Forget, compaction, saving).
    pub write: Mutex<()>,
    pending: std::sync::Mutex<Vec<PendingWrite>>,
    dir: PathBuf,
    inner: RwLock<Inner>,
    saved_points: AtomicUsize,
    /// True after a forget until the saved graph is rewritten without the forgotten vectors.
    dump_stale: AtomicBool,
    /// Set (under `write`) when the namespace is dropped by Unfollow: a writer that got this space before must
    /// not write anything for it after.
    pub dropped: AtomicBool,
    /// The external model whose vectors callers bring (None: the node embeds with its own model).
    model: Option<ExternalModel>,
    /// The installed model the node embeds this namespace's texts with when it is not the node's own (after
    /// `cairn migrate`); changed only under `write`, together with the graph it embeds for.
    local: std::sync::RwLock<Option<crate::embed::Embedder>>,
}

/// Sorts a replica step's rows by point and checks that they replace or extend the `held` rows (none held
/// when `full`) without leaving a hole.
pub fn replica_rows_fit(
    held: usize,
    full: bool,
    rows: &mut [(u32, PointRow)],
) -> Result<(), NodeError> {
    rows.sort_by_key(|(n, _)| *n);
    let mut len = if full { 0 } else { held };
    for (n, _) in rows.iter() {
        let n = *n as usize;
        if n > len {
            return Err(NodeError::Task(format!(
                "replica rows skip point {len} (next is {n})"
            )));
        }
        len = len.max(n + 1);
    }
    Ok(())
}

/// Why a replica delta applied in place was not installed.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// It does not reproduce the owner's signed root (graph or lexical index).
    #[error(transparent)]
    Mismatch(#[from] super::commitment::ReplicaMismatch),
    /// A local failure (the redb write).
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// Puts a replica step's rows in place (all of them for a whole graph) and keeps the id index, live count and
/// newest time in step: a delta updates them for the rows it replaces, so it costs what it ships; a whole graph
/// (or losing the newest memory) indexes every row again.
fn put_replica_rows(inner: &mut Inner, rows: Vec<(u32, PointRow)>, full: bool) {
    if full {
        inner.rows.clear();
    }
    let mut reindex = full;
    for (n, mut row) in rows {
        row.vector = Vec::new();
        let n = n as usize;
        let Inner {
            rows: held,
            by_id,
            live,
            newest,
            ..
        } = inner;
        if let Some(old) = held.get(n).filter(|o| o.alive && !full) {
            if by_id.get(&old.id) == Some(&n) {
                by_id.remove(&old.id);
                *live -= 1;
            }
            reindex |= old.created_at >= *newest;
        }
        if row.alive && !full {
            if by_id.insert(row.id, n).is_none() {
                *live += 1;
            }
            *newest = (*newest).max(row.created_at);
        }
        if n < held.len() {
            held[n] = row;
        } else {
            held.push(row);
        }
    }
    if reindex {
        let (by_id, live, newest) = index_rows(&inner.rows);
        inner.by_id = by_id;
        inner.live = live;
        inner.newest = newest;
    }
}

/// Drops the f32 vectors of rows about to be kept in memory (see the module doc): the graph or the
/// commitment holds each vector, and a second copy would cost 1.5 KB per memory.
fn without_vectors(rows: &mut [PointRow]) {
    for r in rows {
        r.vector = Vec::new();
    }
}

/// The directory name of a namespace's saved graph (namespaces may contain `/` and `:`).
pub fn dir_name(ns: &str) -> String {
    hex::encode(&blake3::hash(ns.as_bytes()).as_bytes()[..16])
}

/// The id map, live count and newest created_at of a namespace's rows.
fn index_rows(rows: &[PointRow]) -> (HashMap<MemoryId, usize>, usize, u64) {
    let mut by_id = HashMap::with_capacity(rows.len());
    let (mut live, mut newest) = (0, 0);
    for (i, r) in rows.iter().enumerate() {
        if r.alive {
            by_id.insert(r.id, i);
            live += 1;
            newest = newest.max(r.created_at);
        }
    }
    (by_id, live, newest)
}

fn poisoned() -> NodeError {
    NodeError::Task("namespace state poisoned".into())
}

impl Space {
    /// An empty namespace.
    /// Sets the external model a namespace's vectors come from (at creation or restore).
    pub fn with_model(mut self, model: Option<ExternalModel>) -> Self {
        self.model = model;
        self
    }

    /// The external model callers embed with; None when the node embeds with its own model.
    pub fn external(&self) -> Option<&ExternalModel> {
        self.model.as_ref()
    }

    /// The installed model the node embeds this namespace with, when not its own (see [`Space::set_local`]).
    pub fn local(&self) -> Option<crate::embed::Embedder> {
        self.local.read().ok().and_then(|l| l.clone())
    }

    /// Sets the installed model this namespace is embedded with (None: the node's own). At restore, or when a
    /// migration swaps the graph (the caller holds `write`).
    pub fn set_local(&self, e: Option<crate::embed::Embedder>) {
        if let Ok(mut l) = self.local.write() {
            *l = e;
        }
    }

    /// True when queries embedded by the node's own model search this namespace (neither external nor moved
    /// to another installed model).
    pub fn shares_node_model(&self) -> bool {
        self.model.is_none() && self.local().is_none()
    }

    /// Identity of the model this namespace's vectors are of (`node`: the node's model's).
    pub fn vector_model(&self, node: &[u8; 32]) -> [u8; 32] {
        self.commit_model().map_or(*node, |(_, h)| h)
    }

    /// The (dimension, model hash) roots of this namespace commit instead of the node's, if any.
    fn commit_model(&self) -> Option<(u16, cairn_index::merkle::Hash)> {
        if let Some(m) = &self.model {
            return Some((m.dim, m.hash()));
        }
        self.local().map(|e| (e.info().dim as u16, e.info().hash))
    }

    pub fn new(name: String, dir: PathBuf, params: HnswParams) -> Self {
        Self::from_parts(name, dir, Vec::new(), Ann::new(params, 1024), 0)
    }

    /// A replica of `owner`'s namespace, restored from its durable rows and replicated graph (or empty).
    /// Fails if the stored state does not reproduce the stored root (the caller then starts it over).
    pub fn replica(
        name: String,
        dir: PathBuf,
        owner: [u8; 32],
        rows: Vec<PointRow>,
        nodes: Vec<cairn_index::proof::ProofNode>,
        root: Option<SignedRoot>,
    ) -> Result<Self, super::commitment::ReplicaMismatch> {
        let mut commit = Commitment::default();
        let seq = root.as_ref().map_or(0, |r| r.record.seq);
        if let Some(root) = root {
            commit.apply_replica(nodes, root, true)?;
            let docs = rows
                .iter()
                .enumerate()
                .filter(|(_, r)| r.alive)
                .filter_map(|(i, r)| {
                    let facets = cairn_index::lexical::facet_terms(&r.metadata);
                    r.lex.clone().map(|d| (i as u32, d, facets))
                })
                .collect();
            commit.apply_replica_docs(docs)?;
            commit.take_changed();
        }
        let mut rows = rows;
        without_vectors(&mut rows);
        let (by_id, live, newest) = index_rows(&rows);
        Ok(Space {
            name,
            owner: Some(owner),
            write: Mutex::new(()),
            pending: std::sync::Mutex::new(Vec::new()),
            dir,
            inner: RwLock::new(Inner {
                commit,
                ann: None,
                log: ChangeLog::starting_at(seq),
                rows,
                by_id,
                live,
                newest,
            }),
            saved_points: AtomicUsize::new(0),
            dump_stale: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
            model: None,
            local: std::sync::RwLock::new(None),
        })
    }

    /// Restores a namespace from its durable rows, reusing the saved graph where it is current.
    pub fn restore(name: String, dir: PathBuf, rows: Vec<PointRow>, params: HnswParams) -> Self {
        let (ann, saved) = match Ann::load(&dir, params) {
            Some((a, fp))
                if a.len() <= rows.len()
                    && fp == rows_fingerprint(rows[..a.len()].iter().map(|r| &r.id.0)) =>
            {
                let n = a.len();
                (a, n)
            }
            Some(_) => {
                tracing::warn!(namespace = %name, "saved graph belongs to other rows (e.g. from before a compaction or a forget); rebuilding it");
                // It may hold vectors forgotten since it was written.
                let _ = std::fs::remove_dir_all(&dir);
                (Ann::new(params, rows.len()), 0)
            }
            None => (Ann::new(params, rows.len()), 0),
        };
        if saved < rows.len() {
            tracing::info!(namespace = %name, from = saved, to = rows.len(), "indexing points written after the last index save");
            for (i, r) in rows.iter().enumerate().skip(saved) {
                if let Err(e) = ann.insert(&r.vector, i) {
                    // Only a damaged row can do this (writes check dimensions): it and the points after it stay
                    // out of the graph (still listed and proven by the commitment), and the error is loud.
                    tracing::error!(namespace = %name, point = i, error = %e, "cannot index a stored point");
                    break;
                }
            }
        }
        Self::from_parts(name, dir, rows, ann, saved)
    }

    fn from_parts(
        name: String,
        dir: PathBuf,
        mut rows: Vec<PointRow>,
        ann: Ann,
        saved: usize,
    ) -> Self {
        let (by_id, live, newest) = index_rows(&rows);
        let commit = Commitment::build(&rows, &ann);
        without_vectors(&mut rows);
        Space {
            name,
            owner: None,
            write: Mutex::new(()),
            pending: std::sync::Mutex::new(Vec::new()),
            dir,
            inner: RwLock::new(Inner {
                commit,
                ann: Some(Arc::new(ann)),
                log: ChangeLog::default(),
                rows,
                by_id,
                live,
                newest,
            }),
            saved_points: AtomicUsize::new(saved),
            dump_stale: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
            model: None,
            local: std::sync::RwLock::new(None),
        }
    }

    fn read(&self) -> Result<RwLockReadGuard<'_, Inner>, NodeError> {
        self.inner.read().map_err(|_| poisoned())
    }

    fn write(&self) -> Result<RwLockWriteGuard<'_, Inner>, NodeError> {
        self.inner.write().map_err(|_| poisoned())
    }

    /// Queues a write for the next group commit.
    pub fn queue(&self, w: PendingWrite) -> Result<(), NodeError> {
        self.pending.lock().map_err(|_| poisoned())?.push(w);
        Ok(())
    }

    /// Takes every queued write (the caller holds the write lock and commits them).
    pub fn take_queue(&self) -> Result<Vec<PendingWrite>, NodeError> {
        Ok(std::mem::take(
            &mut *self.pending.lock().map_err(|_| poisoned())?,
        ))
    }

    /// The number the next new point gets.
    pub fn next_point(&self) -> u64 {
        self.inner.read().map(|i| i.rows.len() as u64).unwrap_or(0)
    }

    /// created_at of a live memory.
    pub fn created_at(&self, id: &MemoryId) -> Option<u64> {
        let inner = self.inner.read().ok()?;
        inner.by_id.get(id).map(|&p| inner.rows[p].created_at)
    }

    /// The point and row of a live memory.
    pub fn live_row(&self, id: &MemoryId) -> Result<Option<(u64, PointRow)>, NodeError> {
        let inner = self.read()?;
        Ok(inner
            .by_id
            .get(id)
            .map(|&p| (p as u64, inner.rows[p].clone())))
    }

    /// Makes durable new points visible and committed: rows, graph, commitment, and a new root that `persist`
    /// stores durably before anyone can see it. Readers wait meanwhile, so every answer and proof they get is
    /// consistent with one root. (The caller holds the write lock.)
    /// `gone` are points forgotten in the same root (memories a keyed write replaces; they may be among `points`).
    pub fn add(
        &self,
        points: Vec<NewPoint>,
        gone: &[u64],
        signer: &RootSigner<'_>,
    ) -> Result<SignedRoot, NodeError> {
        let mut inner = self.write()?;
        let first = inner.rows.len();
        let Some(ann) = inner.ann.clone() else {
            return Err(NodeError::Task("a replica has no graph of its own".into()));
        };
        for (i, p) in points.iter().enumerate() {
            if p.point as usize != first + i {
                return Err(NodeError::Task("point numbers out of order".into()));
            }
        }
        // Checked before anything changes, so the graph's insert below cannot fail half-way through a batch.
        if ann.len() != first {
            return Err(NodeError::Task(format!(
                "the graph holds {} points for {first} rows (a stored point could not be indexed at start-up)",
                ann.len()
            )));
        }
        if let Some(p) = points.iter().find(|p| p.row.vector.len() != ann.dim()) {
            return Err(NodeError::Task(format!(
                "point {} has a vector of dimension {}, the graph holds {}",
                p.point,
                p.row.vector.len(),
                ann.dim()
            )));
        }
        for p in &points {
            inner.by_id.insert(p.row.id, p.point as usize);
            inner.live += 1;
            inner.newest = inner.newest.max(p.row.created_at);
            inner.rows.push(p.row.without_vector());
        }
        let t0 = std::time::Instant::now();
        for p in &points {
            ann.insert(&p.row.vector, p.point as usize)
                .map_err(|e| NodeError::Task(e.to_string()))?;
        }
        let t_ann = t0.elapsed();
        let vectors: Vec<&[f32]> = points.iter().map(|p| p.row.vector.as_slice()).collect();
        let Inner { commit, rows, .. } = &mut *inner;
        commit
            .add_points(rows, first, &vectors, &ann)
            .map_err(|e| NodeError::Task(e.to_string()))?;
        if !gone.is_empty() {
            inner.bury(gone);
            // The saved graph holds the forgotten vectors: it is rewritten at the next save.
            self.dump_stale.store(true, Ordering::SeqCst);
        }
        let t_commit = t0.elapsed();
        let root = signer.commit(&self.name, self.commit_model(), &mut inner.commit);
        if let Ok(r) = &root {
            let changed = inner.commit.take_changed();
            inner.log.record(r.record.seq, changed);
        }
        tracing::debug!(
            hnsw_ms = t_ann.as_secs_f64() * 1e3,
            commitment_ms = (t_commit - t_ann).as_secs_f64() * 1e3,
            sign_store_ms = (t0.elapsed() - t_commit).as_secs_f64() * 1e3,
            "index and commit"
        );
        root
    }

    /// Hides forgotten points from every read and commits a root without them.
    pub fn tombstone(
        &self,
        points: &[u64],
        signer: &RootSigner<'_>,
    ) -> Result<SignedRoot, NodeError> {
        let mut inner = self.write()?;
        inner.bury(points);
        // The saved graph holds the forgotten vectors: it is rewritten at the next save.
        self.dump_stale.store(true, Ordering::SeqCst);
        let root = signer.commit(&self.name, self.commit_model(), &mut inner.commit)?;
        let changed = inner.commit.take_changed();
        inner.log.record(root.record.seq, changed);
        Ok(root)
    }

    /// Makes sure the latest root commits to the current state (after a restart the graph may have been
    /// rebuilt): restores `latest` and signs a newer root if the state differs.
    /// With `sign = false` (a namespace that must not sign, see `--allow-fork`) the stored root is kept as it is.
    pub fn ensure_root(
        &self,
        latest: Option<SignedRoot>,
        sign: bool,
        signer: &RootSigner<'_>,
    ) -> Result<Option<SignedRoot>, NodeError> {
        let mut inner = self.write()?;
        if let Some(r) = latest {
            inner.commit.set_root(r);
        }
        let root = match inner.commit.root() {
            Some(r) if inner.commit.root_is_current() => r.clone(),
            Some(r) if !sign => r.clone(),
            None if !sign => return Ok(None),
            _ => signer.commit(&self.name, self.commit_model(), &mut inner.commit)?,
        };
        inner.commit.take_changed();
        inner.log = ChangeLog::starting_at(root.record.seq);
        Ok(Some(root))
    }

    /// What a replica at `have` (its latest seq, 0 for none) needs: the changed nodes if the change log reaches
    /// back that far, else the whole graph. None before the first root.
    pub fn sync_out(&self, have: u64) -> Result<Option<SyncOut>, NodeError> {
        let inner = self.read()?;
        let Some(root) = inner.commit.root().cloned() else {
            return Ok(None);
        };
        // A restored copy of an older data dir that may not sign (a fork, see `--allow-fork`) can hold a rebuilt
        // graph its latest root does not commit to: serving it would only have every replica reject the answer.
        if !inner.commit.graph_is_current() {
            return Err(NodeError::FailedPrecondition(format!(
                "namespace {:?} is not served to replicas: its state does not match its latest signed root {} \
                 (a restored data dir that may not sign; see the start-up log)",
                self.name, root.record.seq
            )));
        }
        if have > root.record.seq {
            return Ok(Some(SyncOut {
                root,
                full: false,
                nodes: Vec::new(),
            }));
        }
        let (full, which) = match inner.log.since(have).filter(|_| have > 0) {
            Some(changed) => (false, changed),
            None => (true, (0..inner.commit.len() as u32).collect()),
        };
        Ok(Some(SyncOut {
            root,
            full,
            nodes: inner.commit.export(&which),
        }))
    }

    /// The commitment a replica step is applied to off the lock: a copy of the held one for a delta, an empty
    /// one of the same kind for a step that ships the whole graph (which replaces everything held).
    pub fn commitment_for_step(&self, full: bool) -> Result<Commitment, NodeError> {
        let inner = self.read()?;
        Ok(if full {
            inner.commit.empty_like()
        } else {
            inner.commit.clone()
        })
    }

    /// Swaps in a verified replica state: the new commitment and rows for the changed points (already durable).
    pub fn install_replica(
        &self,
        mut commit: Commitment,
        full: bool,
        rows: Vec<(u32, PointRow)>,
        local: Option<Option<crate::embed::Embedder>>,
    ) -> Result<(), NodeError> {
        let mut rows = rows;
        let mut inner = self.write()?;
        // Checked before anything changes (the caller checked it before its redb commit too).
        replica_rows_fit(inner.rows.len(), full, &mut rows)?;
        // The model the installed root names, set while readers wait, with the graph it embeds for.
        if let Some(l) = local {
            self.set_local(l);
        }
        let changed = commit.take_changed();
        let seq = commit.root().map_or(0, |r| r.record.seq);
        put_replica_rows(&mut inner, rows, full);
        let old = std::mem::replace(&mut inner.commit, commit);
        if full {
            inner.log = ChangeLog::starting_at(seq);
        } else {
            inner.log.record(seq, changed);
        }
        // Freeing the replaced commitment takes as long as copying it did (one allocation per node list and
        // vector): readers need not wait for it.
        drop(inner);
        drop(old);
        Ok(())
    }

    /// Applies a small replica delta to the held commitment in place and makes it durable with `write` (given the
    /// updated commitment and the step's rows), all under the write lock: the graph must reproduce the signed
    /// root, the records' terms its lexical index, and `write` must succeed, or the commitment is put back
    /// exactly ([`Commitment::undo`]) and nothing changes. A step costs what it ships, not the namespace's size;
    /// readers wait for it, as they wait for an owner's commit.
    pub fn install_delta(
        &self,
        nodes: Vec<cairn_index::proof::ProofNode>,
        root: cairn_index::root::SignedRoot,
        docs: Vec<super::commitment::ReplicaDoc>,
        mut rows: Vec<(u32, PointRow)>,
        write: impl FnOnce(&Commitment, &[(u32, PointRow)]) -> Result<(), NodeError>,
    ) -> Result<(), DeltaError> {
        let mut inner = self.write()?;
        replica_rows_fit(inner.rows.len(), false, &mut rows)?;
        let undo = inner
            .commit
            .apply_delta_in_place(nodes, root)
            .map_err(DeltaError::Mismatch)?;
        if let Err(e) = inner.commit.apply_replica_docs(docs) {
            inner.commit.undo(undo);
            return Err(DeltaError::Mismatch(e));
        }
        if let Err(e) = write(&inner.commit, &rows) {
            inner.commit.undo(undo);
            return Err(DeltaError::Node(e));
        }
        let changed = inner.commit.take_changed();
        let seq = inner.commit.root().map_or(0, |r| r.record.seq);
        put_replica_rows(&mut inner, rows, false);
        inner.log.record(seq, changed);
        Ok(())
    }

    /// True when the id index, live count and newest time are exactly what the rows give (tests of the
    /// incremental update a replica delta makes).
    #[cfg(test)]
    pub fn index_matches_rows(&self) -> bool {
        self.read().is_ok_and(|inner| {
            let (by_id, live, newest) = index_rows(&inner.rows);
            by_id == inner.by_id && live == inner.live && newest == inner.newest
        })
    }

    /// Ids of the live memories.
    pub fn live_ids(&self) -> Result<std::collections::HashSet<MemoryId>, NodeError> {
        Ok(self.read()?.by_id.keys().copied().collect())
    }

    /// How many point rows are held.
    pub fn row_count(&self) -> Result<usize, NodeError> {
        Ok(self.read()?.rows.len())
    }

    /// The row of point `n`.
    pub fn row(&self, n: u32) -> Option<PointRow> {
        self.inner.read().ok()?.rows.get(n as usize).cloned()
    }

    /// The live memory holding each of `keys` (its `cairn.key` metadata entry), as (point, row). One pass over
    /// the rows: O(n) per call, which keyed writes and Get by key pay.
    pub fn live_keys(
        &self,
        keys: &std::collections::HashSet<String>,
    ) -> Result<HashMap<String, (u64, PointRow)>, NodeError> {
        let inner = self.read()?;
        let mut out = HashMap::new();
        for (p, r) in inner.rows.iter().enumerate() {
            if !r.alive {
                continue;
            }
            if let Some(k) = r.metadata.get(cairn_index::validate::KEY_META) {
                if keys.contains(k) {
                    out.insert(k.clone(), (p as u64, r.clone()));
                }
            }
        }
        Ok(out)
    }

    /// Live memories passing `f`, as (created_at, id): with `newest_first`, the first `limit` from the newest
    /// (ties by id); else the first `limit` in (created_at, id) order after `after`, and whether more follow.
    pub fn scan(
        &self,
        f: &Filter,
        after: Option<(u64, MemoryId)>,
        limit: usize,
        newest_first: bool,
    ) -> Result<(Vec<(u64, MemoryId)>, bool), NodeError> {
        let inner = self.read()?;
        let (since, until) = (f.since.unwrap_or(0), f.until.unwrap_or(u64::MAX));
        let mut all: Vec<(u64, MemoryId)> = inner
            .rows
            .iter()
            .filter(|r| {
                r.alive
                    && r.created_at >= since
                    && r.created_at < until
                    && f.metadata.iter().all(|(k, v)| r.metadata.get(k) == Some(v))
                    && after.is_none_or(|a| (r.created_at, r.id) > a)
            })
            .map(|r| (r.created_at, r.id))
            .collect();
        drop(inner);
        if newest_first {
            all.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        } else {
            all.sort_unstable();
        }
        let more = all.len() > limit;
        all.truncate(limit);
        Ok((all, more))
    }

    /// Which of `ids` are live, and (with `proof`) a Get proof for the live ones, from one consistent state.
    pub fn live_with_proof(
        &self,
        ids: Vec<MemoryId>,
        proof: bool,
    ) -> Result<(Vec<bool>, Option<cairn_index::proof::TimeProof>), NodeError> {
        let inner = self.read()?;
        let mut live = Vec::with_capacity(ids.len());
        let mut items = Vec::new();
        for id in &ids {
            match inner.by_id.get(id) {
                Some(&p) => {
                    live.push(true);
                    items.push((inner.rows[p].created_at, *id));
                }
                None => live.push(false),
            }
        }
        let time_proof = if proof {
            Some(inner.commit.prove_get(&items).ok_or_else(|| {
                NodeError::FailedPrecondition("namespace has no signed root yet".into())
            })?)
        } else {
            None
        };
        Ok((live, time_proof))
    }

    /// Reads the commitment (for proofs and roots) under the read lock.
    pub fn with_commit<T>(&self, f: impl FnOnce(&Commitment) -> T) -> Result<T, NodeError> {
        Ok(f(&self.read()?.commit))
    }

    /// True when tombstones make up a quarter of the graph (and there are enough to matter).
    pub fn wants_compaction(&self) -> bool {
        self.inner.read().is_ok_and(|i| {
            let dead = i.rows.len() - i.live;
            dead >= 256 && dead * 4 >= i.rows.len()
        })
    }

    /// Swaps in a graph rebuilt from `live` (the live rows as read from redb, with their vectors; already
    /// renumbered durably), commits it, and saves it.
    pub fn replace(
        &self,
        live: Vec<PointRow>,
        params: HnswParams,
        signer: &RootSigner<'_>,
    ) -> Result<(), NodeError> {
        self.swap_graph(live, params, None, signer).map(|_| ())
    }

    /// [`Space::replace`] for a migration: the live rows carry vectors of the model `local` (None: the node's own
    /// model), which the namespace is embedded with from the signed root on. Returns that root. (The caller holds
    /// `write` and has made the rows and the model durable.)
    pub fn migrate_to(
        &self,
        live: Vec<PointRow>,
        params: HnswParams,
        local: Option<crate::embed::Embedder>,
        signer: &RootSigner<'_>,
    ) -> Result<SignedRoot, NodeError> {
        self.swap_graph(live, params, Some(local), signer)
    }

    /// Removes the saved graph (before its rows change under it durably: a crash then rebuilds it from the
    /// rows instead of loading vectors of another model).
    pub fn discard_saved(&self) -> Result<(), NodeError> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NodeError::Task(format!(
                "cannot remove the saved graph {}: {e}",
                self.dir.display()
            ))),
        }
    }

    /// Builds a graph from `live`, commits it (with `local` set first as the namespace's model, when given),
    /// swaps it in and saves it.
    fn swap_graph(
        &self,
        mut live: Vec<PointRow>,
        params: HnswParams,
        local: Option<Option<crate::embed::Embedder>>,
        signer: &RootSigner<'_>,
    ) -> Result<SignedRoot, NodeError> {
        let ann = Ann::new(params, live.len());
        for (i, r) in live.iter().enumerate() {
            ann.insert(&r.vector, i)
                .map_err(|e| NodeError::Task(e.to_string()))?;
        }
        let mut commit = Commitment::build(&live, &ann);
        without_vectors(&mut live);
        let root = {
            let mut inner = self.write()?;
            if let Some(r) = inner.commit.root() {
                commit.set_root(r.clone());
            }
            // Readers wait on `inner` meanwhile, so none sees the new model with the old graph or the reverse.
            let before = local.as_ref().map(|_| self.local());
            if let Some(l) = local {
                self.set_local(l);
            }
            let root = match signer.commit(&self.name, self.commit_model(), &mut commit) {
                Ok(r) => r,
                Err(e) => {
                    if let Some(b) = before {
                        self.set_local(b);
                    }
                    return Err(e);
                }
            };
            commit.take_changed();
            inner.log = ChangeLog::starting_at(root.record.seq);
            inner.commit = commit;
            inner.by_id = live.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
            inner.live = live.len();
            inner.rows = live;
            inner.ann = Some(Arc::new(ann));
            root
        };
        self.saved_points.store(usize::MAX, Ordering::SeqCst);
        self.save().map_err(|e| NodeError::Task(e.to_string()))?;
        Ok(root)
    }

    /// True after a forget until the saved graph no longer holds the forgotten vectors.
    pub fn dump_stale(&self) -> bool {
        self.dump_stale.load(Ordering::SeqCst)
    }

    /// True if the graph changed since it was last saved.
    pub fn needs_save(&self) -> bool {
        if self.dump_stale.load(Ordering::SeqCst) {
            return true;
        }
        let saved = self.saved_points.load(Ordering::SeqCst);
        self.inner
            .read()
            .is_ok_and(|i| i.ann.as_ref().is_some_and(|a| a.len() != saved))
    }

    /// Saves the graph (the caller holds the write lock, so no point is added meanwhile).
    pub fn save(&self) -> Result<(), DumpError> {
        let (ann, rows, dead) = match self.inner.read() {
            Ok(i) => match i.ann.clone() {
                Some(a) => {
                    let n = a.len().min(i.rows.len());
                    let fp = rows_fingerprint(i.rows[..n].iter().map(|r| &r.id.0));
                    let dead: Vec<bool> = i.rows.iter().map(|r| !r.alive).collect();
                    (a, fp, dead)
                }
                None => return Ok(()),
            },
            Err(_) => return Ok(()),
        };
        self.dump_stale.store(false, Ordering::SeqCst);
        if let Err(e) = ann.save(&self.dir, rows, &|p| dead.get(p).copied().unwrap_or(false)) {
            self.dump_stale.store(true, Ordering::SeqCst);
            return Err(e);
        }
        self.saved_points.store(ann.len(), Ordering::SeqCst);
        Ok(())
    }

    /// The best `k` live memories passing the filter, as (id, cosine), best first, ties by id.
    pub fn search(&self, s: &Search<'_>) -> Result<Vec<(MemoryId, f32)>, NodeError> {
        let inner = self.read()?;
        let f = s.filter;
        let (since, until) = (f.since.unwrap_or(0), f.until.unwrap_or(u64::MAX));
        let keep = |p: usize| -> bool {
            let Some(r) = inner.rows.get(p) else {
                return false;
            };
            r.alive
                && r.created_at >= since
                && r.created_at < until
                && f.metadata.iter().all(|(k, v)| r.metadata.get(k) == Some(v))
        };
        let filtered = f.since.is_some() || f.until.is_some() || !f.metadata.is_empty();
        let candidates = if filtered {
            (0..inner.rows.len()).filter(|&p| keep(p)).count()
        } else {
            inner.live
        };
        let want = s.k.min(candidates);
        let mut scored: Vec<(usize, f32)> = Vec::new();
        if candidates > EXACT_LIMIT && !s.exact {
            // Either way a hit's score is the query's cosine with its committed int8 code, the one vector the
            // node holds in memory.
            scored = match &inner.ann {
                // The owner searches its HNSW graph of int8 codes: without a filter, unfiltered (far
                // cheaper) for enough hits to cover the tombstones, and filtered only if that comes back short.
                Some(ann) => {
                    let dead = inner.rows.len().saturating_sub(inner.live);
                    let mut hits: Vec<usize> = Vec::new();
                    if !filtered {
                        let ask = (s.k + dead).min(s.ef.max(s.k));
                        hits = ann
                            .search(s.query, ask, s.ef, None)
                            .into_iter()
                            .map(|(p, _)| p)
                            .filter(|&p| keep(p))
                            .take(s.k)
                            .collect();
                    }
                    if hits.len() < want {
                        hits = ann
                            .search(s.query, s.k, s.ef, Some(&keep))
                            .into_iter()
                            .map(|(p, _)| p)
                            .filter(|&p| keep(p))
                            .collect();
                    }
                    hits.into_iter()
                        .filter_map(|p| inner.commit.cosine(s.query, p).map(|c| (p, c)))
                        .collect()
                }
                // A replica walks the owner's committed graph (the proof search), then filters.
                None => inner
                    .commit
                    .recall_hits(s.query, s.k, s.ef)
                    .into_iter()
                    .filter_map(|(_, id)| inner.by_id.get(&id).copied())
                    .filter(|&p| keep(p))
                    .filter_map(|p| inner.commit.cosine(s.query, p).map(|c| (p, c)))
                    .collect(),
            };
        }
        if scored.len() < want {
            // Small candidate set, or the graph walk came back short under a selective filter: score exactly.
            scored = (0..inner.rows.len())
                .filter(|&p| keep(p))
                .filter_map(|p| inner.commit.cosine(s.query, p).map(|c| (p, c)))
                .collect();
        }
        let mut out: Vec<(MemoryId, f32)> = scored
            .into_iter()
            .map(|(p, score)| (inner.rows[p].id, score))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out.dedup_by_key(|x| x.0);
        out.truncate(s.k);
        Ok(out)
    }

    /// Counts.
    pub fn stats(&self) -> super::SpaceStats {
        let Ok(i) = self.inner.read() else {
            return super::SpaceStats::default();
        };
        super::SpaceStats {
            namespace: self.name.clone(),
            memories: i.live as u64,
            tombstones: (i.rows.len() - i.live) as u64,
            index_points: i.commit.len() as u64,
            newest_created_at: i.newest,
            external: self.model.clone(),
            local_model: self.local().map(|e| e.info().id.clone()),
        }
    }
}

/// Signs the next root of a namespace over a commitment and stores it durably before it becomes visible.
pub struct RootSigner<'a> {
    /// Signing key and parameters.
    pub key: &'a ed25519_dalek::SigningKey,
    /// Commitment parameters.
    pub params: CommitParams,
    /// Stores a root durably (redb).
    pub persist: &'a (dyn Fn(&str, &SignedRoot) -> Result<(), NodeError> + Sync),
}

impl RootSigner<'_> {
    /// Signs and records the next root of `ns`, committing `model` (dimension and hash of an external or
    /// another installed model) instead of the node's when given.
    fn commit(
        &self,
        ns: &str,
        model: Option<(u16, cairn_index::merkle::Hash)>,
        c: &mut Commitment,
    ) -> Result<SignedRoot, NodeError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut params = self.params;
        if let Some((dim, hash)) = model {
            params.dim = dim;
            params.model = hash;
        }
        let root = c.next_root(ns, &params, self.key, now);
        (self.persist)(ns, &root)?;
        c.set_root(root.clone());
        Ok(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(seed: u8, n: usize, dim: usize) -> Vec<PointRow> {
        (0..n)
            .map(|i| {
                let mut v: Vec<f32> = (0..dim)
                    .map(|j| ((i * 7 + j * 3) % 11) as f32 - 5.0)
                    .collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                v.iter_mut().for_each(|x| *x /= norm);
                PointRow {
                    id: MemoryId([seed.wrapping_add(i as u8); 32]),
                    created_at: 1 + i as u64,
                    alive: true,
                    dedup: [i as u8; 32],
                    vector: v,
                    metadata: Default::default(),
                    lex: None,
                }
            })
            .collect()
    }

    /// A saved graph is reused only for the rows it was saved with: after a compaction renumbered the rows (and a
    /// crash before the new graph was saved), the old dump must not map points to the wrong memories.
    const PARAMS: HnswParams = HnswParams {
        m: 8,
        ef_construction: 32,
        dim: 8,
    };

    /// A graph over `rows`' vectors.
    fn indexed(rows: &[PointRow]) -> Ann {
        let ann = Ann::new(PARAMS, rows.len());
        for (i, r) in rows.iter().enumerate() {
            ann.insert(&r.vector, i).expect("insert");
        }
        ann
    }

    /// A batch the graph cannot take (a vector of another dimension) is refused before anything changes: rows,
    /// graph and commitment stay as they were, and the next good batch commits.
    #[test]
    fn a_batch_the_graph_cannot_take_changes_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let persist = |_: &str, _: &SignedRoot| Ok(());
        let signer = RootSigner {
            key: &key,
            params: CommitParams {
                m: PARAMS.m as u16,
                dim: PARAMS.dim as u16,
                model: [0; 32],
            },
            persist: &persist,
        };
        let rs = rows(5, 40, 8);
        let space = Space::from_parts(
            "t".into(),
            tmp.path().join("a"),
            rs[..30].to_vec(),
            indexed(&rs[..30]),
            0,
        );
        let batch = |short: bool| -> Vec<NewPoint> {
            (30..33)
                .map(|i| {
                    let mut row = rs[i].clone();
                    if short && i == 32 {
                        row.vector.truncate(5);
                    }
                    NewPoint {
                        point: i as u64,
                        row,
                    }
                })
                .collect()
        };
        assert!(space.add(batch(true), &[], &signer).is_err());
        assert_eq!(space.next_point(), 30);
        assert!(space.live_row(&rs[30].id).expect("read").is_none());
        space
            .add(batch(false), &[], &signer)
            .expect("a good batch commits");
        assert_eq!(space.next_point(), 33);
        assert!(space.live_row(&rs[32].id).expect("read").is_some());
    }

    /// A namespace whose state its latest root does not commit to (a restored data dir that may not sign a new
    /// root) is not served to replicas: they could only reject the answer, again and again.
    #[test]
    fn state_its_root_does_not_commit_to_is_not_served() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let persist = |_: &str, _: &SignedRoot| Ok(());
        let signer = RootSigner {
            key: &key,
            params: CommitParams {
                m: PARAMS.m as u16,
                dim: PARAMS.dim as u16,
                model: [0; 32],
            },
            persist: &persist,
        };
        let rs = rows(4, 30, 8);
        let space = Space::from_parts(
            "t".into(),
            tmp.path().join("a"),
            rs.clone(),
            indexed(&rs),
            0,
        );
        let root = space
            .ensure_root(None, true, &signer)
            .expect("sign")
            .expect("root");
        assert!(space.sync_out(0).expect("served").is_some_and(|o| o.full));
        // The same namespace restored with one memory fewer than its root commits to, not allowed to sign.
        let fewer = rs[..29].to_vec();
        let restored = Space::from_parts(
            "t".into(),
            tmp.path().join("b"),
            fewer.clone(),
            indexed(&fewer),
            0,
        );
        restored
            .ensure_root(Some(root), false, &signer)
            .expect("kept");
        assert!(matches!(
            restored.sync_out(0),
            Err(NodeError::FailedPrecondition(_))
        ));
    }

    #[test]
    fn a_saved_graph_is_reused_only_for_its_own_rows() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("g");
        let params = PARAMS;
        let old = rows(1, 12, 8);
        let ann = indexed(&old);
        let space = Space::from_parts("t".into(), dir.clone(), old.clone(), ann, 0);
        space.save().expect("save");

        let same = Space::restore("t".into(), dir.clone(), old, params);
        assert!(
            !same.needs_save(),
            "the dump of the same rows was not reused"
        );

        // As many rows, other memories in the same point numbers (what a compaction leaves).
        let renumbered = rows(100, 12, 8);
        let other = Space::restore("t".into(), dir, renumbered, params);
        assert!(
            other.needs_save(),
            "a dump of other rows was reused instead of rebuilding"
        );
    }

    fn holds(dir: &std::path::Path, needle: &[u8]) -> bool {
        std::fs::read_dir(dir).expect("dir").flatten().any(|e| {
            std::fs::read(e.path()).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        })
    }

    /// A forgotten point's vector is zeroed in the saved graph (the graph still loads, with the same size).
    #[test]
    fn a_saved_graph_does_not_hold_forgotten_vectors() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("g");
        let mut rs = rows(3, 40, 8);
        // (The helper's vectors repeat every 11 rows; this one is unique.)
        let n = (1..=8).map(|x| (x * x) as f32).sum::<f32>().sqrt();
        rs[7].vector = (1..=8).map(|x| x as f32 / n).collect();
        // The graph holds int8 codes (one byte per component).
        let bytes = |v: &[f32]| {
            cairn_index::commit::quantise(v)
                .into_iter()
                .map(|c| c as u8)
                .collect::<Vec<u8>>()
        };
        let (gone, kept) = (bytes(&rs[7].vector), bytes(&rs[8].vector));
        let ann = indexed(&rs);
        rs[7] = PointRow::tombstone(8);
        let space = Space::from_parts("t".into(), dir.clone(), rs.clone(), ann, 0);
        space.save().expect("save");
        assert!(!holds(&dir, &gone), "the forgotten vector is in the dump");
        assert!(holds(&dir, &kept), "a live vector is missing from the dump");
        let back = Space::restore("t".into(), dir, rs, PARAMS);
        assert!(!back.needs_save(), "the zeroed dump was not reusable");
    }

    /// An unfiltered search of a large namespace asks the graph without a filter (its cheap path) and drops the
    /// tombstones after; when too many of the nearest points are tombstones it still answers k live memories
    /// (the filtered search), never fewer and never a forgotten one.
    #[test]
    fn tombstones_near_the_query_do_not_shorten_an_unfiltered_search() {
        for forgotten in [0usize, 5, 40, 200] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let n = EXACT_LIMIT + 500;
            let mut rs = rows(1, n, 8);
            for (i, r) in rs.iter_mut().enumerate() {
                r.id = MemoryId(*blake3::hash(&(i as u64).to_le_bytes()).as_bytes());
            }
            let query = rs[7].vector.clone();
            let ann = indexed(&rs);
            // The rows nearest the query (the helper repeats each vector every 11 rows) are forgotten.
            let mut near: Vec<(f32, usize)> = rs
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    (
                        -r.vector.iter().zip(&query).map(|(a, b)| a * b).sum::<f32>(),
                        i,
                    )
                })
                .collect();
            near.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut dead = std::collections::HashSet::new();
            for &(_, i) in near.iter().take(forgotten) {
                dead.insert(rs[i].id);
                rs[i] = PointRow::tombstone(8);
            }
            let space = Space::from_parts("t".into(), tmp.path().join("g"), rs, ann, 0);
            let filter = Filter::default();
            let hits = space
                .search(&Search {
                    query: &query,
                    k: 10,
                    ef: 64,
                    filter: &filter,
                    exact: false,
                })
                .expect("search");
            assert_eq!(hits.len(), 10, "{forgotten} forgotten: {} hits", hits.len());
            assert!(
                hits.iter().all(|h| !dead.contains(&h.0)),
                "{forgotten} forgotten: a forgotten memory was returned"
            );
        }
    }

    /// Rows in memory keep no f32 vector (the graph and the commitment hold int8 codes), and Recall's scores are
    /// the query's cosine with a memory's code: exact scoring of a small namespace and the graph walk of a large
    /// one both find the stored vector itself, at a cosine of 1 up to the int8 rounding.
    #[test]
    fn rows_in_memory_hold_no_vector_and_scores_come_from_the_graph() {
        for n in [40, EXACT_LIMIT + 500] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let mut rs = rows(9, n, 8);
            // `rows` repeats 11 vectors; spread them so the namespace is not 11 piles of exact duplicates (the
            // graph keeps one of a pile per list, and a walk with ef = 64 stops inside a pile of 231 ties).
            for (i, r) in rs.iter_mut().enumerate() {
                r.vector[i % 8] += (i / 8 % 97) as f32 / 97.0;
                let norm = r.vector.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                r.vector.iter_mut().for_each(|x| *x /= norm);
            }
            let norm = (1..=8).map(|x| (x * x) as f32).sum::<f32>().sqrt();
            rs[7].vector = (1..=8).map(|x| x as f32 / norm).collect();
            let query: Vec<f32> = rs[7].vector.clone();
            let want = rs[7].id;
            let ann = indexed(&rs);
            let space = Space::from_parts("t".into(), tmp.path().join("g"), rs, ann, 0);
            for p in 0..n as u32 {
                let row = space.row(p).expect("row");
                assert!(row.vector.is_empty(), "row {p} kept its vector in memory");
            }
            let filter = Filter::default();
            let hits = space
                .search(&Search {
                    query: &query,
                    k: 3,
                    ef: 64,
                    filter: &filter,
                    exact: false,
                })
                .expect("search");
            assert_eq!(
                hits[0].0, want,
                "{n} rows: the stored vector itself is not the top hit"
            );
            assert!(
                (hits[0].1 - 1.0).abs() < 0.02,
                "{n} rows: score {}",
                hits[0].1
            );
            // Every score is the cosine of some stored vector: at most 1, and in order.
            assert!(hits.windows(2).all(|w| w[0].1 >= w[1].1));
            assert!(hits.iter().all(|h| h.1 <= 1.0 + 0.02));
        }
    }
}
