//! Namespaces embedded with another installed model than the node's: created for it (CreateNamespace with
//! `model`), or moved to it (`cairn migrate`). A migration embeds every live memory
//! again with the new model in batches that are staged durably (so an interrupted migration resumes where it
//! stopped), then, under the namespace's write lock, what was written meanwhile is embedded too, the rows and the
//! namespace's model are replaced in one redb transaction, and the graph is rebuilt and committed by the next
//! root of the same chain. That root names the new model (docs/PROOFS.md, "Model changes"); earlier roots and
//! their proofs stay as they were.

use super::*;

/// Starts the embedder of an installed model by identity hash; the error says why it cannot (not installed,
/// damaged, another model in the directory).
#[derive(Clone)]
pub struct ModelLoader(pub Arc<LoadModel>);

/// What a [`ModelLoader`] runs.
pub type LoadModel = dyn Fn(&[u8; 32]) -> Result<Embedder, String> + Send + Sync;

impl std::fmt::Debug for ModelLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModelLoader")
    }
}

/// Memories embedded and staged per step (one redb transaction and one progress report each).
const BATCH: usize = 128;

/// Where a migration stands, as reported to its caller after every step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrateProgress {
    /// Live memories whose new vector is staged.
    pub done: u64,
    /// Live memories of the namespace.
    pub total: u64,
    /// Of `done`, how many were staged by an earlier, interrupted run.
    pub resumed: u64,
}

/// What a finished migration did.
#[derive(Debug, Clone)]
pub struct Migrated {
    /// The root that commits the namespace under the new model (the latest one, if nothing changed).
    pub root: Option<SignedRoot>,
    /// Live memories now embedded with the new model.
    pub memories: u64,
    /// Of those, staged by an earlier run.
    pub resumed: u64,
    /// Of those, written while the migration ran (embedded under the write lock at the end).
    pub caught_up: u64,
    /// The model's human id.
    pub model: String,
    /// False when the namespace was on that model already.
    pub changed: bool,
}

/// Removes a namespace from the running migrations when its migration ends, however it ends.
struct Running<'a> {
    set: &'a std::sync::Mutex<HashSet<String>>,
    ns: String,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.ns);
        }
    }
}

impl Engine {
    /// The embedder of an installed model: the node's own, or another one started on first use (and shared by
    /// every namespace of that model). FAILED_PRECONDITION if this node cannot run it.
    pub async fn model(&self, hash: &[u8; 32]) -> Result<Embedder, NodeError> {
        if *hash == self.embedder.info().hash {
            return Ok(self.embedder.clone());
        }
        let mut loaded = self.models.lock().await;
        if let Some(e) = loaded.get(hash) {
            return Ok(e.clone());
        }
        let e = load_model(self.cfg.models.as_ref(), hash).await?;
        loaded.insert(*hash, e.clone());
        Ok(e)
    }

    /// The embedder of a namespace's texts: the installed model it was moved to, else the node's.
    pub(super) fn embedder_for(&self, space: &Space) -> Embedder {
        space.local().unwrap_or_else(|| self.embedder.clone())
    }

    /// Creates namespace `ns` for the installed model `hash` (CreateNamespace with `model`): its texts and queries
    /// are embedded with it, and its first root, signed now, commits it. Idempotent for the same model;
    /// FAILED_PRECONDITION if the namespace exists with another model or is a replica, or if this node cannot run
    /// the model. Returns the first (or latest) root, whether it was created now, and the model's id. Runs to
    /// completion whatever the caller does.
    pub async fn create_local(
        self: &Arc<Self>,
        ns: &str,
        hash: [u8; 32],
    ) -> Result<(Option<SignedRoot>, bool, String), NodeError> {
        validate::namespace(ns)?;
        if hash == self.embedder.info().hash {
            let (root, created) = self.create_namespace(ns, None).await?;
            return Ok((root, created, self.embedder.info().id.clone()));
        }
        self.not_forked(ns)?;
        self.disk_floor()?;
        let model = self.model(&hash).await?;
        let gate = self.write_gate().await?;
        let me = self.clone();
        let ns = ns.to_owned();
        tokio::spawn(async move {
            let _gate = gate;
            let id = model.info().id.clone();
            let _g = me.create.lock().await;
            match me.space(&ns) {
                Ok(s) => {
                    let same = s.owner.is_none()
                        && s.external().is_none()
                        && s.local().is_some_and(|e| e.info().hash == hash);
                    if !same {
                        let has = match (s.owner, s.external(), s.local()) {
                            (Some(_), _, _) => "it is a replica here; its owner chose its model".to_owned(),
                            (None, Some(m), _) => format!("it exists with the model {}", m.label()),
                            (None, None, Some(e)) => format!("it exists with the model {}", e.info().id),
                            (None, None, None) => {
                                format!("it exists with the node's model {}", me.embedder.info().id)
                            }
                        };
                        return Err(NodeError::FailedPrecondition(format!(
                            "namespace {ns:?} cannot be created for {id}: {has} (cairn migrate moves a namespace)"
                        )));
                    }
                    return Ok((s.with_commit(|c| c.root().cloned())?, false, id));
                }
                Err(NodeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            let (st, name) = (me.state.clone(), ns.clone());
            tokio::task::spawn_blocking(move || st.create_with_model(&name, hash)).await??;
            let dir = me.cfg.data_dir.join("hnsw").join(space::dir_name(&ns));
            let params = HnswParams {
                dim: model.info().dim,
                ..me.params
            };
            let space = Arc::new(Space::new(ns.clone(), dir, params));
            space.set_local(Some(model));
            let (sg, sp) = (me.signing.clone(), space.clone());
            let root =
                tokio::task::spawn_blocking(move || sg.with(|s| sp.ensure_root(None, true, s)))
                    .await??;
            me.spaces
                .write()
                .map_err(|_| NodeError::Task("namespace table poisoned".into()))?
                .insert(ns.clone(), space);
            if let Some(r) = &root {
                let _ = me.roots.send(r.clone());
            }
            tracing::info!(namespace = %ns, model = %id, "namespace created");
            Ok((root, true, id))
        })
        .await?
    }

    /// Logs, at start-up, migrations an earlier run left unfinished (they resume when `cairn migrate` is run
    /// again; meanwhile the namespace is served with its old model).
    pub(super) async fn report_migrations(&self) -> Result<(), NodeError> {
        let st = self.state.clone();
        for (ns, target) in tokio::task::spawn_blocking(move || st.migrations()).await?? {
            tracing::warn!(namespace = %ns, model = %hex::encode(target), "a migration to this model was interrupted; run `cairn migrate` again to resume it");
        }
        Ok(())
    }

    /// Moves namespace `ns` to the installed model `target`, reporting progress on `progress` after every step.
    /// Stops (keeping what is staged) when `progress` is closed: the caller went away. Everything finished before
    /// an interruption is kept, so running it again resumes.
    pub async fn migrate(
        self: &Arc<Self>,
        ns: &str,
        target: [u8; 32],
        progress: tokio::sync::mpsc::Sender<MigrateProgress>,
    ) -> Result<Migrated, NodeError> {
        let space = self.space(ns)?;
        if let Some(o) = space.owner {
            return Err(NodeError::FailedPrecondition(format!(
                "namespace {ns:?} is a read-only replica; its owner {} chooses its model",
                hex::encode(o)
            )));
        }
        if let Some(m) = space.external() {
            return Err(NodeError::FailedPrecondition(format!(
                "namespace {ns:?} holds vectors of the external model {} that callers bring; the node cannot embed its texts again",
                m.label()
            )));
        }
        self.not_forked(ns)?;
        self.disk_floor()?;
        let to = self.model(&target).await?;
        let current = self.embedder_for(&space);
        let _running = {
            let mut set = self
                .migrating
                .lock()
                .map_err(|_| NodeError::Task("migration table poisoned".into()))?;
            if !set.insert(ns.to_owned()) {
                return Err(NodeError::FailedPrecondition(format!(
                    "a migration of namespace {ns:?} is already running"
                )));
            }
            Running {
                set: &self.migrating,
                ns: ns.to_owned(),
            }
        };
        if current.info().hash == target {
            // Nothing to do, but an interrupted migration to another model is dropped with its staged vectors.
            let st = self.state.clone();
            let name = ns.to_owned();
            tokio::task::spawn_blocking(move || st.cancel_migration(&name)).await??;
            return Ok(Migrated {
                root: space.with_commit(|c| c.root().cloned())?,
                memories: space.stats().memories,
                resumed: 0,
                caught_up: 0,
                model: to.info().id.clone(),
                changed: false,
            });
        }
        let st = self.state.clone();
        let name = ns.to_owned();
        let resumed =
            tokio::task::spawn_blocking(move || st.start_migration(&name, target)).await??;
        tracing::info!(namespace = ns, from = %current.info().id, to = %to.info().id, resumed, "migration started");

        // Embed and stage every live memory not staged yet, a batch at a time.
        let staged = {
            let st = self.state.clone();
            let name = ns.to_owned();
            tokio::task::spawn_blocking(move || st.staged_ids(&name)).await??
        };
        let live = space.live_ids()?;
        let mut todo: Vec<MemoryId> = live
            .iter()
            .filter(|id| !staged.contains(&id.0))
            .copied()
            .collect();
        todo.sort_by_key(|id| id.0);
        let total = live.len() as u64;
        let mut done = total - todo.len() as u64;
        let report = |done: u64| MigrateProgress {
            done,
            total,
            resumed,
        };
        if progress.send(report(done)).await.is_err() {
            return Err(gone());
        }
        for chunk in todo.chunks(BATCH) {
            let vectors = self.embed_records(&to, chunk).await?;
            let st = self.state.clone();
            let name = ns.to_owned();
            let n = tokio::task::spawn_blocking(move || st.stage(&name, &vectors)).await??;
            done += n as u64;
            if progress.send(report(done)).await.is_err() {
                tracing::info!(
                    namespace = ns,
                    done,
                    total,
                    "migration stopped: its caller went away (run it again to resume)"
                );
                return Err(gone());
            }
        }
        self.finish_migration(&space, to, resumed).await
    }

    /// Embeds the texts of live memories with `model`: (id, vector) pairs.
    async fn embed_records(
        &self,
        model: &Embedder,
        ids: &[MemoryId],
    ) -> Result<Vec<([u8; 32], Vec<f32>)>, NodeError> {
        let records = self.read_all(ids).await?;
        let texts: Vec<String> = records.iter().map(|m| m.record.text.clone()).collect();
        let vectors = model.embed(texts).await?;
        Ok(ids.iter().map(|id| id.0).zip(vectors).collect())
    }

    /// The last step, under the namespace's write lock (and the shutdown gate): embeds what was written since
    /// the migration began, makes the new rows and model durable in one transaction, and commits the rebuilt
    /// graph with the next root.
    async fn finish_migration(
        self: &Arc<Self>,
        space: &Arc<Space>,
        to: Embedder,
        resumed: u64,
    ) -> Result<Migrated, NodeError> {
        let ns = space.name.clone();
        let _gate = self.write_gate().await?;
        let _w = space.write.lock().await;
        let (st, name) = (self.state.clone(), ns.clone());
        let (mut live, staged) = tokio::task::spawn_blocking(move || -> Result<_, NodeError> {
            let live: Vec<PointRow> = st
                .load_points(&name)?
                .into_iter()
                .filter(|r| r.alive)
                .collect();
            Ok((live, st.staged(&name)?))
        })
        .await??;
        let missing: Vec<MemoryId> = live
            .iter()
            .filter(|r| !staged.contains_key(&r.id.0))
            .map(|r| r.id)
            .collect();
        let mut fresh: HashMap<[u8; 32], Vec<f32>> = HashMap::new();
        for chunk in missing.chunks(BATCH) {
            fresh.extend(self.embed_records(&to, chunk).await?);
        }
        let dim = to.info().dim;
        for r in &mut live {
            let v = staged
                .get(&r.id.0)
                .or_else(|| fresh.get(&r.id.0))
                .ok_or_else(|| NodeError::Task(format!("no new vector for memory {}", r.id)))?;
            if v.len() != dim {
                return Err(NodeError::Task(format!(
                    "a staged vector of memory {} has {} components, the model has {dim}",
                    r.id,
                    v.len()
                )));
            }
            r.vector = v.clone();
        }
        let local = (to.info().hash != self.embedder.info().hash).then(|| to.clone());
        let model = local.as_ref().map(|e| e.info().hash);
        let params = HnswParams { dim, ..self.params };
        let memories = live.len() as u64;
        let caught_up = missing.len() as u64;
        let (st, sg, sp) = (self.state.clone(), self.signing.clone(), space.clone());
        let root = tokio::task::spawn_blocking(move || -> Result<_, NodeError> {
            // The saved graph holds the old model's vectors for the same ids: gone before the rows change.
            sp.discard_saved()?;
            st.finish_migration(&sp.name, &live, model)?;
            Ok(sg.with(|s| sp.migrate_to(live, params, local, s)))
        })
        .await??;
        let root = match root {
            Ok(r) => r,
            Err(e) => {
                // The new rows and model are durable, the graph in memory is the old one: no write may mix the
                // two. A restart restores the namespace from the rows and signs its root.
                let why = format!(
                    "namespace {ns:?} was migrated on disk but its new root could not be signed ({e}); restart the node to finish"
                );
                tracing::error!(namespace = %ns, "{why}");
                if let Ok(mut f) = self.forks.write() {
                    f.insert(ns.clone(), why);
                }
                return Err(e);
            }
        };
        let _ = self.roots.send(root.clone());
        tracing::info!(namespace = %ns, model = %to.info().id, seq = root.record.seq, memories, caught_up, "migration finished");
        Ok(Migrated {
            root: Some(root),
            memories,
            resumed,
            caught_up,
            model: to.info().id.clone(),
            changed: true,
        })
    }
}

/// The caller of a migration went away; what was staged is kept.
fn gone() -> NodeError {
    NodeError::Unavailable("the migration's caller went away; run it again to resume".into())
}

/// Starts another installed model's embedder through the configured loader (off the async threads: loading a
/// model reads and checks its files).
pub(super) async fn load_model(
    loader: Option<&ModelLoader>,
    hash: &[u8; 32],
) -> Result<Embedder, NodeError> {
    let Some(loader) = loader.cloned() else {
        return Err(NodeError::FailedPrecondition(format!(
            "model {} is not this node's model, and this node runs no other",
            hex::encode(hash)
        )));
    };
    let h = *hash;
    tokio::task::spawn_blocking(move || (loader.0)(&h))
        .await?
        .map_err(NodeError::FailedPrecondition)
}
