//! Replica namespaces: following another node's namespace, serving catch-up to peers, and taking in the
//! owner's signed state only after every leaf and the signature check out.
//!
//! A step has two halves so the network part (fetching record blobs) sits between them:
//! [`Engine::verify_step`] checks the root chain and that the shipped nodes reproduce the signed root (on a
//! copy, nothing visible changes), then [`Engine::install_step`] checks the fetched records against the nodes,
//! stores everything in one redb transaction and swaps the new state in.

use crate::store::terms::IntoTerms;
use std::collections::HashSet;
use std::sync::Arc;

use cairn_index::commit::GraphNode;
use cairn_index::id::MemoryId;
use cairn_index::proof::{NodeLists, ProofNode};
use cairn_index::record::{dedup_key, MemoryRecord};
use cairn_index::root::SignedRoot;

use super::commitment::{Commitment, DELTA_IN_PLACE};
use super::space::Space;
use super::Engine;
use crate::error::NodeError;
use crate::store::{PointRow, ReplicaPoint};

/// The catch-up messages' plain data lives with their codecs in cairn-index.
pub use cairn_index::sync::{Alert, CatchUp, MAX_CHAIN};

/// Why a replica step was refused.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The data does not check out (bad signature, broken chain, leaves that do not reproduce the root, a
    /// record that does not match): the peer that sent it is not to be trusted for this step.
    #[error("rejected: {0}")]
    Rejected(String),
    /// Two different signed roots for one (owner, namespace, seq): evidence kept, following stopped.
    #[error("equivocation: owner signed two different roots for seq {seq}")]
    Equivocation {
        /// The seq.
        seq: u64,
        /// The root this node had.
        ours: Box<SignedRoot>,
        /// The conflicting one.
        theirs: Box<SignedRoot>,
    },
    /// A local failure.
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// The graph of a checked step.
enum StepGraph {
    /// Applied to a commitment off the lock (a whole graph, or a delta too large to apply in place).
    Applied(Box<Commitment>),
    /// A small delta, applied in place at install ([`Commitment::apply_delta_in_place`]), which checks it
    /// against the signed root then and undoes it if anything fails: no copy of the whole commitment.
    Pending(Vec<ProofNode>),
}

/// A checked step, not yet visible.
pub struct VerifiedStep {
    ns: String,
    space: Arc<Space>,
    graph: StepGraph,
    full: bool,
    chain: Vec<SignedRoot>,
    /// The shipped nodes' numbers (their leaves and lists are in `commit`).
    shipped: Vec<u32>,
    /// Live memories whose records this node lacks: fetch them before installing.
    pub needed: Vec<MemoryId>,
    /// The root it installs.
    pub root: SignedRoot,
    /// Cosignatures of `root` from the sender (checked before they are kept).
    cosigs: Vec<crate::store::Cosig>,
    /// Keeps the needed records from garbage collection between download and tagging.
    hold: crate::blobs::Hold,
}

impl VerifiedStep {
    /// The step's hold on garbage collection: blobs stored for the step while it is held go through
    /// [`crate::blobs::Blobs::put_held`].
    pub fn hold(&self) -> &crate::blobs::Hold {
        &self.hold
    }
}

impl Engine {
    /// The seq of a namespace's latest root here (0 for none).
    pub fn owner_root_seq(&self, ns: &str) -> Result<u64, NodeError> {
        Ok(self
            .space(ns)?
            .with_commit(|c| c.root().map(|r| r.record.seq))?
            .unwrap_or(0))
    }

    /// The namespace's owner: the given replica owner or this node.
    pub fn owner_of(&self, ns: &str) -> Result<[u8; 32], NodeError> {
        Ok(self.space(ns)?.owner.unwrap_or_else(|| self.node_key()))
    }

    /// `ns` as held here, if it is `owner`'s (owned by this node or a replica of `owner`): what peers may ask for.
    fn space_of(&self, ns: &str, owner: &[u8; 32]) -> Result<Arc<Space>, NodeError> {
        let space = self.space(ns)?;
        if space.owner.unwrap_or_else(|| self.node_key()) != *owner {
            return Err(NodeError::NotFound(format!(
                "namespace {ns:?} here is not {}'s",
                hex::encode(owner)
            )));
        }
        Ok(space)
    }

    /// What a replica of (`owner`, `ns`) at seq `have` needs; served to peers, from owned and replicated
    /// namespaces alike. None when this node has nothing newer.
    pub async fn catch_up(
        &self,
        ns: &str,
        owner: [u8; 32],
        have: u64,
    ) -> Result<Option<CatchUp>, NodeError> {
        let space = self.space_of(ns, &owner)?;
        let out = {
            let sp = space.clone();
            tokio::task::spawn_blocking(move || sp.sync_out(have)).await??
        };
        let Some(out) = out else { return Ok(None) };
        let latest = out.root.record.seq;
        // At the asker's own seq the answer is just that root: enough to notice a fork.
        if latest < have {
            return Ok(None);
        }
        // From the asker's own seq on: a different root at that seq is evidence of a fork.
        let max_chain = self.cfg.max_chain.clamp(2, MAX_CHAIN);
        let from = have.max(1).max(latest.saturating_sub(max_chain as u64 - 1));
        let st = self.state.clone();
        let name = ns.to_owned();
        let mut chain =
            tokio::task::spawn_blocking(move || st.roots_range(&name, from, latest, max_chain))
                .await??;
        // The chain ends at the root the nodes belong to (a newer root may have been stored meanwhile).
        chain.retain(|r| r.record.seq <= latest);
        if chain.last().map(|r| r.record.seq) != Some(latest) {
            chain.push(out.root.clone());
        }
        let cosigs = self.cosigs(&out.root.record).await;
        Ok(Some(CatchUp { chain, out, cosigs }))
    }

    /// Up to `--chain-roots` signed roots of (`owner`, `ns`) from seq `from` on, as held here; served to replicas
    /// that must link a catch-up chain to the root they hold.
    pub async fn roots_from(
        &self,
        ns: &str,
        owner: [u8; 32],
        from: u64,
    ) -> Result<Vec<SignedRoot>, NodeError> {
        self.space_of(ns, &owner)?;
        let st = self.state.clone();
        let name = ns.to_owned();
        let max_chain = self.cfg.max_chain.clamp(2, MAX_CHAIN);
        Ok(tokio::task::spawn_blocking(move || {
            st.roots_range(&name, from.max(1), u64::MAX, max_chain)
        })
        .await??)
    }

    /// Checks a catch-up answer for replica `ns`: every root signed by the owner, for this namespace, chained
    /// by seq and prev hash to what this node already holds, and the nodes reproducing the last root. Nothing
    /// becomes visible. Ok(None) when there is nothing new.
    pub async fn verify_step(
        &self,
        ns: &str,
        c: CatchUp,
    ) -> Result<Option<VerifiedStep>, StepError> {
        self.verify_step_held(ns, c, None).await
    }

    /// [`Engine::verify_step`] for a caller that already holds downloads from collection (a snapshot).
    pub async fn verify_step_held(
        &self,
        ns: &str,
        c: CatchUp,
        held: Option<crate::blobs::Hold>,
    ) -> Result<Option<VerifiedStep>, StepError> {
        let space = self.space(ns)?;
        let Some(owner) = space.owner else {
            return Err(NodeError::FailedPrecondition(format!("{ns:?} is not a replica")).into());
        };
        let CatchUp { chain, out, cosigs } = c;
        let current = space.with_commit(|c| c.root().cloned())?;
        let cur_seq = current.as_ref().map_or(0, |r| r.record.seq);
        let mut prev: Option<&SignedRoot> = None;
        for r in &chain {
            let link = prev.map(|p| (p.record.seq, p.record.hash()));
            cairn_index::root::verify_link(link.as_ref().map(|(s, h)| (*s, h)), r, &owner, ns)
                .map_err(|e| StepError::Rejected(e.to_string()))?;
            // A root for a seq this node already holds must be the same root.
            if r.record.seq <= cur_seq {
                let st = self.state.clone();
                let (name, seq) = (ns.to_owned(), r.record.seq);
                let ours = tokio::task::spawn_blocking(move || st.root_at(&name, seq))
                    .await
                    .map_err(NodeError::from)?
                    .map_err(NodeError::from)?;
                if let Some(ours) = ours {
                    if ours.record.hash() != r.record.hash() {
                        return Err(StepError::Equivocation {
                            seq: r.record.seq,
                            ours: Box::new(ours),
                            theirs: Box::new(r.clone()),
                        });
                    }
                }
            } else if let Some(cur) = current
                .as_ref()
                .filter(|_| cur_seq.checked_add(1) == Some(r.record.seq))
            {
                cairn_index::root::verify_link(Some((cur_seq, &cur.record.hash())), r, &owner, ns)
                    .map_err(|e| {
                        StepError::Rejected(format!("{e}: it does not chain to this node's root"))
                    })?;
            }
            prev = Some(r);
        }
        // The chain must link to the root held here: a chain that starts above it could hide a fork in between.
        if let (Some(cur), Some(first)) = (&current, chain.first()) {
            if first.record.seq > cur.record.seq.saturating_add(1) {
                return Err(StepError::Rejected(format!(
                    "the chain starts at seq {}, above this node's seq {} + 1: the roots in between are missing",
                    first.record.seq, cur.record.seq
                )));
            }
        }
        let last = chain
            .last()
            .ok_or_else(|| StepError::Rejected("no roots".into()))?;
        if last.record.hash() != out.root.record.hash() || last.signature != out.root.signature {
            return Err(StepError::Rejected(
                "the nodes are for another root than the chain's last".into(),
            ));
        }
        if out.root.record.seq <= cur_seq {
            return Ok(None);
        }
        // The model the roots must commit: the external one named when following, else one this node runs (its
        // own, or another installed model the owner moved the namespace to with `cairn migrate`).
        let (dim, model) = match space.external() {
            Some(m) => (m.dim.into(), m.hash()),
            None => match self.model(&out.root.record.model).await {
                Ok(e) => (e.info().dim, e.info().hash),
                Err(_) => (self.embedder.info().dim, self.embedder.info().hash),
            },
        };
        if out.root.record.dim as usize != dim || out.root.record.model != model {
            let named = match space.external() {
                Some(m) => format!("the model named when following ({})", m.label()),
                None => "this node's model or one installed here (cairn model fetch installs a model); for a \
                          namespace of an external model, follow it with --external-model NAME --dim N"
                    .to_owned(),
            };
            return Err(StepError::Rejected(format!(
                "the owner's roots commit model {} with {} dimensions, not {named}",
                hex::encode(&out.root.record.model[..8]),
                out.root.record.dim
            )));
        }
        let full = out.full;
        let shipped: Vec<u32> = out.nodes.iter().map(|n| n.node.node).collect();
        let before: HashSet<MemoryId> = if full {
            HashSet::new()
        } else {
            space.with_commit(|c| {
                shipped
                    .iter()
                    .filter_map(|&n| c.node(n))
                    .filter(|g| g.alive)
                    .map(|g| g.id)
                    .collect()
            })?
        };
        let (graph, candidates) = if !full && out.nodes.len() < DELTA_IN_PLACE {
            // Checked against the signed root when it is applied, at install.
            let candidates: Vec<MemoryId> = out
                .nodes
                .iter()
                .filter(|n| n.node.alive && !before.contains(&n.node.id))
                .map(|n| n.node.id)
                .collect();
            (StepGraph::Pending(out.nodes), candidates)
        } else {
            // The shipped nodes move into the commitment (no copy of them is kept beside it): what the install
            // needs of them is read back from there.
            let mut commit = space.commitment_for_step(full)?;
            let root = out.root.clone();
            let nodes: Vec<ProofNode> = out.nodes;
            let commit = tokio::task::spawn_blocking(move || {
                commit.apply_replica(nodes, root, full).map(|_| commit)
            })
            .await
            .map_err(NodeError::from)?
            .map_err(|e| StepError::Rejected(e.to_string()))?;
            let candidates: Vec<MemoryId> = shipped
                .iter()
                .filter_map(|&n| commit.node(n))
                .filter(|g| g.alive && !before.contains(&g.id))
                .map(|g| g.id)
                .collect();
            (StepGraph::Applied(Box::new(commit)), candidates)
        };
        let fresh = cur_seq == 0;
        // A fresh replica has none of them; otherwise ask the store (the downloader skips what is local too).
        let needed = if fresh {
            candidates
        } else {
            use futures::stream::{self, StreamExt};
            stream::iter(candidates)
                .map(|id| async move { (!self.has_record(&id).await).then_some(id) })
                .buffered(64)
                .filter_map(|x| async move { x })
                .collect()
                .await
        };
        let hold = match held {
            Some(mut h) => {
                h.extend(&needed);
                h
            }
            None => self.blobs.hold(&needed).await,
        };
        Ok(Some(VerifiedStep {
            hold,
            ns: ns.to_owned(),
            space,
            graph,
            full,
            chain,
            shipped,
            needed,
            root: out.root,
            cosigs,
        }))
    }

    /// Checks the records of a verified step (now all local) and makes the step durable and visible.
    pub async fn install_step(&self, step: VerifiedStep) -> Result<SignedRoot, StepError> {
        self.install_with(step, None).await
    }

    /// Installs a step whose records come from `packed` (a snapshot's pages) or, without it, from the blob
    /// store.
    pub(crate) async fn install_with(
        &self,
        step: VerifiedStep,
        packed: Option<Packed>,
    ) -> Result<SignedRoot, StepError> {
        // Shutdown waits for an install in progress instead of cutting it off between its durable steps.
        let _gate = self.write_gate().await?;
        self.disk_floor()?;
        if let Some(owner) = step.space.owner {
            if self.halted(&step.ns, &owner).is_some() {
                return Err(StepError::Rejected(format!(
                    "following {} on {:?} is halted (equivocation evidence on record)",
                    hex::encode(owner),
                    step.ns
                )));
            }
        }
        let VerifiedStep {
            ns,
            space,
            graph,
            full,
            chain,
            shipped,
            root,
            cosigs,
            needed,
            hold,
        } = step;
        let _w = space.write.lock().await;
        if space.dropped.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StepError::Node(NodeError::NotFound(format!(
                "namespace {ns:?} was unfollowed"
            ))));
        }
        let t0 = std::time::Instant::now();
        let mut marks: Vec<(&str, f64)> = Vec::new();
        let mut mark = |what: &'static str| marks.push((what, t0.elapsed().as_secs_f64() * 1e3));
        if space
            .with_commit(|c| c.root().map(|r| r.record.seq))?
            .is_some_and(|s| s >= root.record.seq)
        {
            return Ok(root);
        }
        let old_alive: HashSet<MemoryId> = if full {
            space.live_ids()?
        } else {
            shipped
                .iter()
                .filter_map(|&n| space.row(n))
                .filter(|r| r.alive)
                .map(|r| r.id)
                .collect()
        };
        let mut rows: Vec<(u32, PointRow)> = Vec::with_capacity(shipped.len());
        let mut now_alive: HashSet<MemoryId> = HashSet::with_capacity(shipped.len());
        // The shipped leaves: read back from the commitment they were applied to, or still pending.
        let leaves: Vec<&GraphNode> = match &graph {
            StepGraph::Applied(c) => shipped
                .iter()
                .map(|&n| {
                    c.node(n)
                        .ok_or_else(|| StepError::Rejected(format!("node {n} is not in the graph")))
                })
                .collect::<Result<_, _>>()?,
            StepGraph::Pending(nodes) => nodes.iter().map(|p| &p.node).collect(),
        };
        let alive_ids: Vec<MemoryId> = leaves.iter().filter(|g| g.alive).map(|g| g.id).collect();
        let (mut records, packed) = match packed {
            Some(mut p) => (std::mem::take(&mut p.facts), Some(p)),
            None => (self.facts_of(&ns, alive_ids).await?, None),
        };
        for (&n, g) in shipped.iter().zip(leaves) {
            // Rows carry no f32 vector: the codes are stored as they came (a quarter of the memory a full install
            // would otherwise hold), read from the commitment, which holds them in memory.
            let row = if g.alive {
                let f = records
                    .remove(&g.id)
                    .ok_or_else(|| StepError::Rejected(format!("record {} unavailable", g.id)))?;
                if f.created_at != g.created_at {
                    return Err(StepError::Rejected(format!(
                        "record {} does not match its committed leaf",
                        g.id
                    )));
                }
                now_alive.insert(g.id);
                PointRow {
                    id: g.id,
                    created_at: g.created_at,
                    alive: true,
                    dedup: f.dedup,
                    vector: Vec::new(),
                    metadata: f.metadata,
                    lex: Some(f.lex),
                }
            } else {
                PointRow::tombstone(0)
            };
            rows.push((n, row));
        }
        drop(records);
        mark("rows");
        // The owner's lexical index must be exactly what these records tokenize to: checked before anything
        // is kept, like the graph (a witness never cosigns an index it did not rebuild).
        let docs: Vec<super::commitment::ReplicaDoc> = rows
            .iter()
            .filter_map(|(n, r)| {
                let facets = cairn_index::lexical::facet_terms(&r.metadata);
                r.lex.clone().map(|d| (*n, d, facets))
            })
            .collect();
        let mut graph = graph;
        let mut docs = Some(docs);
        if let StepGraph::Applied(commit) = &mut graph {
            commit
                .apply_replica_docs(docs.take().unwrap_or_default())
                .map_err(|e| StepError::Rejected(e.to_string()))?;
        }
        // A memory lives in one node; only compaction moves it, and that ships the whole graph, so every id
        // that was live and is not live in the shipped nodes was forgotten by the owner.
        let gone: Vec<MemoryId> = old_alive.difference(&now_alive).copied().collect();
        // The records fetched for this step as their own blobs (the rest were here already, or came in packs).
        let keep: Vec<MemoryId> = if packed.is_none() { needed } else { Vec::new() };
        let mut deletes: Vec<[u8; 32]> = gone.iter().map(|id| id.0).collect();
        let keep: Vec<[u8; 32]> = keep.iter().map(|id| id.0).collect();
        self.blobs.keep(&keep).await.map_err(NodeError::from)?;
        let mut packs = crate::store::PackChanges {
            remove: gone.clone(),
            ..Default::default()
        };
        match &packed {
            Some(p) => {
                // The snapshot's pages now hold every live record: packs held before are superseded.
                self.blobs.keep(&p.packs).await.map_err(NodeError::from)?;
                let old: Vec<MemoryId> = old_alive.iter().copied().collect();
                let new: HashSet<[u8; 32]> = p.packs.iter().copied().collect();
                let mut stale: HashSet<[u8; 32]> = HashSet::new();
                for loc in self.pack_locs(old).await?.into_iter().flatten() {
                    if !new.contains(&loc.pack) {
                        stale.insert(loc.pack);
                    }
                }
                deletes.extend(stale);
                packs.set = p.locs.clone();
            }
            None => {
                // Forgotten records that sit in packs: rewrite those packs without them.
                let (set, stale) = self.repack_without(&gone, &hold).await?;
                packs.set = set;
                deletes.extend(stale);
            }
        }
        if !gone.is_empty() {
            // A snapshot this node kept may hold forgotten bytes: let it go (rebuilt on demand).
            self.forget_snapshot(&ns).await?;
        }
        if let Some(p) = &packed {
            // Pinned before the hold goes, or a collection pass could take the HashSeq and its answer part.
            self.blobs
                .pin_snapshot(&ns, p.snapshot)
                .await
                .map_err(NodeError::from)?;
        }
        // Tagged now: garbage collection keeps them by their tags.
        drop(hold);
        mark("blobs");
        let st = self.state.clone();
        // Every consistency check runs before the commit: rows that would leave a hole are refused here.
        super::space::replica_rows_fit(space.row_count()?, full, &mut rows)?;
        let name = ns.clone();
        // The rows are written with the codes and lists the commitment holds (borrowed, not copied), then move
        // into memory as they are.
        let write = move |commit: &Commitment, rows: &[(u32, PointRow)]| {
            let points = rows
                .iter()
                .map(|(n, row)| {
                    let g = commit.node(*n).ok_or_else(|| {
                        NodeError::Task(format!("replica node {n} is missing from its commitment"))
                    })?;
                    Ok(ReplicaPoint {
                        point: u64::from(*n),
                        row,
                        codes: &g.vector,
                        level: g.level,
                        lists: commit.lists(*n).unwrap_or(&[]),
                    })
                })
                .collect::<Result<Vec<_>, NodeError>>()?;
            st.apply_replica(
                &name,
                &crate::store::StepWrite {
                    full,
                    points: &points,
                    next_point: commit.len() as u64,
                    roots: &chain,
                    deletes: &deletes,
                    forgotten: &gone,
                    packs: &packs,
                },
            )
            .map_err(NodeError::from)
        };
        let sp = space.clone();
        // The model the step's root names (an owner may have moved the namespace): queries embed with it from
        // the moment the graph is swapped in.
        let local = match space.external() {
            Some(_) => None,
            None if root.record.model == self.embedder.info().hash => Some(None),
            None => Some(Some(self.model(&root.record.model).await?)),
        };
        let current = space
            .local()
            .map_or(self.embedder.info().hash, |e| e.info().hash);
        match graph {
            StepGraph::Pending(_)
                if local.as_ref().is_some_and(|l| {
                    l.as_ref()
                        .map_or(self.embedder.info().hash, |e| e.info().hash)
                        != current
                }) =>
            {
                return Err(StepError::Rejected(
                    "a step that changes the namespace's model must ship the whole graph".into(),
                ));
            }
            StepGraph::Applied(commit) => {
                let (commit, rows) = tokio::task::spawn_blocking(move || {
                    write(&commit, &rows)?;
                    Ok::<_, NodeError>((commit, rows))
                })
                .await
                .map_err(NodeError::from)??;
                mark("redb");
                tokio::task::spawn_blocking(move || sp.install_replica(*commit, full, rows, local))
                    .await
                    .map_err(NodeError::from)??;
            }
            StepGraph::Pending(nodes) => {
                let (root, docs) = (root.clone(), docs.take().unwrap_or_default());
                tokio::task::spawn_blocking(move || {
                    sp.install_delta(nodes, root, docs, rows, write)
                })
                .await
                .map_err(NodeError::from)?
                .map_err(|e| match e {
                    super::space::DeltaError::Mismatch(m) => StepError::Rejected(m.to_string()),
                    super::space::DeltaError::Node(n) => StepError::Node(n),
                })?;
                mark("redb");
            }
        }
        mark("swap");
        drop(_w);
        self.finish_blob_deletes().await?;
        // This node verified the root: it cosigns it, and keeps the sender's valid cosignatures too.
        let own = cairn_index::root::cosign(&root.record, &self.key);
        let me = self.node_key();
        let owner = root.record.node_id;
        for (w, sig) in std::iter::once((me, own)).chain(cosigs) {
            self.add_cosig(owner, &ns, root.record.seq, w, sig).await;
        }
        if let Some(p) = packed {
            // Keep offering the snapshot this replica was built from: peers may fetch it from here.
            self.note_installed_snapshot(&ns, root.record.seq, p.snapshot)
                .await?;
        }
        let _ = self.roots.send(root.clone());
        tracing::debug!(namespace = %ns, seq = root.record.seq, ms = ?marks, "replica step installed");
        Ok(root)
    }

    /// What the rows of `ids` keep of their records (read from blobs or packs, checked against their ids), read
    /// [`FACTS_CHUNK`] records at a time so a large step never holds all its records' bytes at once.
    async fn facts_of(
        &self,
        ns: &str,
        ids: Vec<MemoryId>,
    ) -> Result<std::collections::HashMap<MemoryId, RecordFacts>, StepError> {
        let mut out = std::collections::HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(FACTS_CHUNK) {
            let got = self
                .records_bulk(chunk)
                .await
                .map_err(|e| StepError::Rejected(format!("records unavailable: {e}")))?;
            let (ns, chunk) = (ns.to_owned(), chunk.to_vec());
            let facts = tokio::task::spawn_blocking(move || {
                chunk
                    .into_iter()
                    .zip(got)
                    .map(|(id, bytes)| Ok((id, RecordFacts::of(&ns, id, &bytes)?)))
                    .collect::<Result<Vec<_>, StepError>>()
            })
            .await
            .map_err(NodeError::from)??;
            out.extend(facts);
        }
        Ok(out)
    }

    /// Rewrites every pack holding one of `gone` without the records of `gone`, so forgotten bytes leave
    /// the disk. Returns the new locations of the records that stay, and the superseded packs to delete.
    async fn repack_without(
        &self,
        gone: &[MemoryId],
        hold: &crate::blobs::Hold,
    ) -> Result<(Vec<(MemoryId, crate::store::PackLoc)>, Vec<[u8; 32]>), NodeError> {
        if gone.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let locs = self.pack_locs(gone.to_vec()).await?;
        let affected: HashSet<[u8; 32]> = locs.iter().flatten().map(|l| l.pack).collect();
        if affected.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let gone: HashSet<MemoryId> = gone.iter().copied().collect();
        let mut set = Vec::new();
        let mut stale = Vec::new();
        for pack in affected {
            let bytes = self.blobs.get_raw(pack).await?;
            let (ids, recs): (Vec<MemoryId>, Vec<bytes::Bytes>) =
                super::snapshot::page_records(&bytes)
                    .map_err(|e| {
                        NodeError::Task(format!("stored pack {}: {e}", hex::encode(pack)))
                    })?
                    .into_iter()
                    .map(|r| (r.id, r.bytes))
                    .unzip();
            // Keep the records that live in this pack and are not forgotten.
            let here = self.pack_locs(ids.clone()).await?;
            let mut kept_ids = Vec::new();
            let mut kept = Vec::new();
            for ((id, rec), loc) in ids.into_iter().zip(recs).zip(here) {
                if !gone.contains(&id) && loc.is_some_and(|l| l.pack == pack) {
                    kept_ids.push(id);
                    kept.push(rec);
                }
            }
            stale.push(pack);
            if kept.is_empty() {
                continue;
            }
            let page = super::snapshot::encode_page(&kept);
            let entries = super::snapshot::parse_page(&page)
                .map_err(|e| NodeError::Task(format!("new pack: {e}")))?;
            let new = self
                .blobs
                .put_held(std::slice::from_ref(&page), hold)
                .await?;
            let Some(new) = new.first().copied() else {
                continue;
            };
            if new == pack {
                stale.pop();
            }
            for (id, (offset, len)) in kept_ids.into_iter().zip(entries) {
                set.push((
                    id,
                    crate::store::PackLoc {
                        pack: new,
                        offset,
                        len,
                    },
                ));
            }
        }
        Ok((set, stale))
    }
}

/// Records read per batch while installing a catch-up step (their bytes are dropped once decoded).
const FACTS_CHUNK: usize = 1024;

/// What a replica's row keeps of a record: decoded once while installing, without the text, so a step never holds
/// every record's bytes at once.
pub(crate) struct RecordFacts {
    /// The record's created_at (must match its committed leaf).
    pub created_at: u64,
    /// Its dedup key.
    pub dedup: [u8; 32],
    /// Its metadata.
    pub metadata: cairn_index::record::Metadata,
    /// Its index terms.
    pub lex: Arc<crate::store::terms::PackedTerms>,
}

impl RecordFacts {
    /// Decodes record `id` of namespace `ns` (its bytes already checked against the id).
    pub(crate) fn of(ns: &str, id: MemoryId, bytes: &[u8]) -> Result<Self, StepError> {
        let rec = MemoryRecord::decode(bytes)
            .map_err(|e| StepError::Rejected(format!("record {id}: {e}")))?;
        if rec.namespace != ns {
            return Err(StepError::Rejected(format!(
                "record {id} does not match its committed leaf"
            )));
        }
        Ok(RecordFacts {
            created_at: rec.created_at,
            dedup: dedup_key(&rec.text, &rec.metadata),
            lex: cairn_index::lexical::DocTerms::of(&rec.text).into_terms(),
            metadata: rec.metadata,
        })
    }
}

/// Records of a step that arrived as snapshot pages (kept as packs).
pub(crate) struct Packed {
    /// What the rows keep of every live record of the step, by id.
    pub facts: std::collections::HashMap<MemoryId, RecordFacts>,
    /// Where each lives.
    pub locs: Vec<(MemoryId, crate::store::PackLoc)>,
    /// The pages.
    pub packs: Vec<[u8; 32]>,
    /// The snapshot (HashSeq) they came in.
    pub snapshot: [u8; 32],
}

/// Rebuilds a replica's nodes from its stored rows and lists (start-up).
pub fn stored_nodes(rows: &[PointRow], lists: Vec<crate::store::StoredLists>) -> Vec<ProofNode> {
    lists
        .into_iter()
        .filter_map(|(p, level, l)| {
            let r = rows.get(p as usize)?;
            Some(ProofNode {
                node: GraphNode {
                    node: p as u32,
                    id: r.id,
                    created_at: r.created_at,
                    alive: r.alive,
                    level,
                    vector: cairn_index::commit::quantise(&r.vector),
                },
                lists: NodeLists::Full(l),
            })
        })
        .collect()
}
