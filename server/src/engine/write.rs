//! The write path: Remember, Forget and compaction, committed by one task per batch whatever the caller does.

use super::*;

impl Engine {
    /// Stores memories; returns once they are durable and searchable.
    /// Validation and embedding run in the caller's future (cancelling them loses nothing); the commit runs in a
    /// task of its own that finishes whatever the caller does.
    pub async fn remember(
        self: &Arc<Self>,
        ns: &str,
        mut items: Vec<Item>,
    ) -> Result<Vec<Remembered>, NodeError> {
        validate::namespace(ns)?;
        if items.is_empty() {
            return Err(NodeError::invalid("items", "at least one item is required"));
        }
        if items.len() > MAX_ITEMS {
            return Err(NodeError::too_large(
                "items",
                format!("{} items, at most {MAX_ITEMS} per call", items.len()),
            ));
        }
        let mut total = 0usize;
        for (i, it) in items.iter().enumerate() {
            validate::text(&format!("items[{i}].text"), &it.text, &self.cfg.limits)?;
            if let Some(t) = it.created_at {
                validate::created_at(&format!("items[{i}].created_at"), t)?;
            }
            validate::metadata(
                &format!("items[{i}].metadata"),
                &it.metadata,
                &self.cfg.limits,
            )?;
            total += it.text.len()
                + it.metadata
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>();
        }
        if total > MAX_CALL_BYTES {
            return Err(NodeError::too_large(
                "items",
                format!("{total} bytes of text and metadata, at most {MAX_CALL_BYTES} per call"),
            ));
        }
        let (external, embedder) = match self.space(ns) {
            Ok(space) => {
                writable(&space)?;
                (space.external().cloned(), self.embedder_for(&space))
            }
            Err(NodeError::NotFound(_)) => (None, self.embedder.clone()),
            Err(e) => return Err(e),
        };
        let model = external.as_ref().map_or(embedder.info().hash, |m| m.hash());
        // Vectors come with the texts exactly when the namespace's model is external.
        let mut given: Vec<Option<Vec<f32>>> =
            items.iter_mut().map(|it| it.vector.take()).collect();
        for (i, v) in given.iter_mut().enumerate() {
            let field = format!("items[{i}].vector");
            match (&external, v.as_mut()) {
                (Some(m), Some(v)) => *v = unit_vector(&field, std::mem::take(v), m.dim.into())?,
                (Some(m), None) => {
                    return Err(NodeError::invalid(
                        &field,
                        format!(
                            "namespace {ns:?} takes the vectors of its external model {} with every text",
                            m.label()
                        ),
                    ))
                }
                (None, Some(_)) => {
                    return Err(NodeError::invalid(
                        &field,
                        format!(
                            "namespace {ns:?} is embedded by the node's model {}; only a namespace created with an external model (CreateNamespace) takes vectors",
                            embedder.info().id
                        ),
                    ))
                }
                (None, None) => {}
            }
        }
        self.not_forked(ns)?;
        self.disk_floor()?;
        let keys: Vec<[u8; 32]> = items
            .iter()
            .map(|it| dedup_key(&it.text, &it.metadata))
            .collect();

        // Embed only what is new (existing content and repeats within the call need no vector).
        let known = self.find_dedup(ns, &keys).await?;
        let mut first_of: HashMap<[u8; 32], usize> = HashMap::new();
        let mut to_embed = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            if known[i].is_none() && !first_of.contains_key(k) {
                first_of.insert(*k, i);
                to_embed.push(i);
            }
        }
        let vector_of: HashMap<usize, Vec<f32>> = if external.is_some() {
            to_embed
                .into_iter()
                .filter_map(|i| Some((i, given.get_mut(i)?.take()?)))
                .collect()
        } else {
            let texts: Vec<String> = to_embed.iter().map(|&i| items[i].text.clone()).collect();
            let vectors = embedder.embed(texts).await?;
            to_embed.into_iter().zip(vectors).collect()
        };

        // Everything from here on changes disk and memory, so it runs in its own task: a caller that cancels,
        // times out or disconnects drops only its wait for the answer, never a commit half done.
        let gate = self.write_gate().await?;
        let me = self.clone();
        let ns = ns.to_owned();
        tokio::spawn(async move {
            let _gate = gate;
            me.group_commit(&ns, external.as_ref(), model, items, keys, vector_of)
                .await
        })
        .await?
    }

    /// Creates a namespace before its first memory. With `model`, its vectors come from the caller's external
    /// model: the first root (signed now) commits that model's name and dimension, every Remember brings a vector
    /// per text and Recall a query vector (or ranks lexically). Idempotent for the same model; a namespace that
    /// exists with another model, or is a replica, is FAILED_PRECONDITION. Returns the namespace's latest root
    /// (none for a node-model namespace without memories) and whether it was created now. Runs to completion
    /// whatever the caller does.
    pub async fn create_namespace(
        self: &Arc<Self>,
        ns: &str,
        model: Option<cairn_index::model::ExternalModel>,
    ) -> Result<(Option<SignedRoot>, bool), NodeError> {
        validate::namespace(ns)?;
        self.not_forked(ns)?;
        self.disk_floor()?;
        let gate = self.write_gate().await?;
        let me = self.clone();
        let ns = ns.to_owned();
        tokio::spawn(async move {
            let _gate = gate;
            me.create_in(&ns, model).await
        })
        .await?
    }

    async fn create_in(
        &self,
        ns: &str,
        model: Option<cairn_index::model::ExternalModel>,
    ) -> Result<(Option<SignedRoot>, bool), NodeError> {
        let label = |m: Option<&cairn_index::model::ExternalModel>| {
            m.map_or_else(|| self.embedder.info().id.clone(), |m| m.label())
        };
        let _g = self.create.lock().await;
        match self.space(ns) {
            Ok(s) => {
                if s.owner.is_some() {
                    return Err(NodeError::FailedPrecondition(format!(
                        "namespace {ns:?} is a replica here; its owner chose its model"
                    )));
                }
                if s.external() != model.as_ref() || (model.is_none() && s.local().is_some()) {
                    let has = s
                        .local()
                        .map_or_else(|| label(s.external()), |e| e.info().id.clone());
                    return Err(NodeError::FailedPrecondition(format!(
                        "namespace {ns:?} exists with the model {has}, not {}",
                        label(model.as_ref())
                    )));
                }
                return Ok((s.with_commit(|c| c.root().cloned())?, false));
            }
            Err(NodeError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let dir = self.cfg.data_dir.join("hnsw").join(space::dir_name(ns));
        let Some(model) = model else {
            // Like a first Remember: registered with its first commit.
            let space = Arc::new(Space::new(ns.to_owned(), dir, self.params));
            self.spaces
                .write()
                .map_err(|_| NodeError::Task("namespace table poisoned".into()))?
                .insert(ns.to_owned(), space);
            return Ok((None, true));
        };
        let (st, name, m) = (self.state.clone(), ns.to_owned(), model.clone());
        tokio::task::spawn_blocking(move || st.create_external(&name, &m)).await??;
        let params = HnswParams {
            dim: model.dim.into(),
            ..self.params
        };
        let space = Arc::new(Space::new(ns.to_owned(), dir, params).with_model(Some(model)));
        let (sg, sp) = (self.signing.clone(), space.clone());
        let root = tokio::task::spawn_blocking(move || sg.with(|s| sp.ensure_root(None, true, s)))
            .await??;
        self.spaces
            .write()
            .map_err(|_| NodeError::Task("namespace table poisoned".into()))?
            .insert(ns.to_owned(), space.clone());
        if let Some(r) = &root {
            let _ = self.roots.send(r.clone());
        }
        tracing::info!(namespace = %ns, model = %label(space.external()), "namespace created");
        Ok((root, true))
    }

    /// Group commit: queue this call, then take the namespace's write lock. Whoever holds it commits every
    /// queued call at once (one blob sync, one redb transaction, one signed root); a call whose batch was
    /// committed by another holder just collects its answer.
    pub(super) async fn group_commit(
        &self,
        ns: &str,
        external: Option<&cairn_index::model::ExternalModel>,
        model: [u8; 32],
        items: Vec<Item>,
        keys: Vec<[u8; 32]>,
        vectors: HashMap<usize, Vec<f32>>,
    ) -> Result<Vec<Remembered>, NodeError> {
        let space = self.space_for(ns, external).await?;
        writable(&space)?;
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        space.queue(PendingWrite {
            items,
            keys,
            vectors,
            model,
            reply,
        })?;
        let w = space.write.lock().await;
        if let Ok(done) = answer.try_recv() {
            return done;
        }
        // Vectors of another model than the namespace's now (a migration finished since they were made) are
        // refused; the caller retries and gets the new model's.
        let now = space.vector_model(&self.embedder.info().hash);
        let (batch, stale): (Vec<_>, Vec<_>) = space
            .take_queue()?
            .into_iter()
            .partition(|w| w.vectors.is_empty() || w.model == now);
        for w in stale {
            let _ = w.reply.send(Err(NodeError::FailedPrecondition(format!(
                "namespace {ns:?} moved to another embedding model while this call ran; retry it"
            ))));
        }
        let committed = if batch.is_empty() {
            Ok(Vec::new())
        } else {
            self.commit_batch(ns, &space, &batch).await
        };
        match committed {
            Ok(results) => {
                for (w, r) in batch.into_iter().zip(results) {
                    let _ = w.reply.send(Ok(r));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for w in batch {
                    let _ = w
                        .reply
                        .send(Err(NodeError::Task(format!("group commit failed: {msg}"))));
                }
                return Err(e);
            }
        }
        drop(w);
        // Keyed writes that replaced memories leave tombstones, like Forget: compact when they pile up. The
        // writes are committed already, so a failed compaction is logged, not reported to them.
        if space.wants_compaction() {
            if let Err(e) = self.compact(&space).await {
                tracing::warn!(namespace = ns, error = %e, "compaction after replacing writes failed");
            }
        }
        answer
            .await
            .map_err(|_| NodeError::Task("write was not committed".into()))?
    }

    /// Refuses writes while the data dir's disk has less free space than `--min-free-mb` (a write that fills the
    /// disk could leave redb or the blob store unable to commit anything, reads included).
    pub(crate) fn disk_floor(&self) -> Result<(), NodeError> {
        if self.cfg.min_free_bytes == 0 {
            return Ok(());
        }
        let st = rustix::fs::statvfs(&self.cfg.data_dir).map_err(|e| {
            NodeError::Task(format!(
                "cannot read free space of {}: {e}",
                self.cfg.data_dir.display()
            ))
        })?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        if free < self.cfg.min_free_bytes {
            return Err(NodeError::DiskFull(format!(
                "the disk of data dir {} has {} MiB free, below the floor of {} MiB (--min-free-mb): writes are refused until space is freed; reads go on",
                self.cfg.data_dir.display(),
                free >> 20,
                self.cfg.min_free_bytes >> 20
            )));
        }
        Ok(())
    }

    /// Refuses writes to a namespace whose data dir is older than the roots this node already published.
    pub(super) fn not_forked(&self, ns: &str) -> Result<(), NodeError> {
        let forks = self
            .forks
            .read()
            .map_err(|_| NodeError::Task("fork table poisoned".into()))?;
        match forks.get(ns) {
            Some(why) => Err(NodeError::FailedPrecondition(why.clone())),
            None => Ok(()),
        }
    }

    /// Takes a root of an owned namespace that a peer holds (asked at start-up, [`crate::p2p`]): if it is signed
    /// by this node and newer than this node's latest root (or another root for the same seq), this data dir is
    /// older than what the node already published: a copy restored on a machine whose published-seq record
    /// does not know it. Writes to the namespace are then refused like a restored data dir's (and the seq is
    /// recorded, so a restart still refuses them), unless `--allow-fork` names it. Returns true if it forked.
    pub fn peer_holds_root(&self, ns: &str, peer: &[u8; 32], root: &SignedRoot) -> bool {
        let me = self.node_key();
        if root.record.node_id != me
            || root.record.namespace != ns
            || root.verify(Some(&me)).is_err()
        {
            return false;
        }
        let Ok(space) = self.space(ns) else {
            return false;
        };
        if space.owner.is_some() {
            return false;
        }
        let held = space
            .with_commit(|c| c.root().map(|r| (r.record.seq, r.record.hash())))
            .ok()
            .flatten();
        let (have, have_hash) = held.unwrap_or((0, [0u8; 32]));
        let (seq, hash) = (root.record.seq, root.record.hash());
        if seq < have || (seq == have && hash == have_hash) {
            return false;
        }
        let why = format!(
            "namespace {ns:?}: peer {} holds root seq {seq} ({}) signed by this node, but its data dir holds seq {have}: \
             it was restored from an older copy, and new writes would sign a second root for a published seq. \
             Restore the newest copy of the data dir, or start with --allow-fork {ns} to accept the fork",
            hex::encode(peer),
            hex::encode(hash)
        );
        if self.cfg.allow_fork.iter().any(|n| n == ns) {
            tracing::warn!(namespace = %ns, "{why}; writing anyway (--allow-fork)");
            return false;
        }
        tracing::error!(namespace = %ns, "{why}; writes refused");
        let newer = self
            .signing
            .published
            .get(ns)
            .ok()
            .flatten()
            .is_none_or(|(s, _)| s <= seq);
        if newer {
            if let Err(e) = self.signing.published.record(ns, seq, &hash) {
                tracing::error!(namespace = %ns, error = %e, "cannot record the published seq");
            }
        }
        if let Ok(mut f) = self.forks.write() {
            f.insert(ns.to_owned(), why);
        }
        true
    }

    /// Admits one write (or replica install) unless the node is shutting down; the guard keeps
    /// [`Engine::shutdown`] waiting until the write has finished.
    pub(crate) async fn write_gate(
        &self,
    ) -> Result<tokio::sync::OwnedRwLockReadGuard<bool>, NodeError> {
        let g = self.gate.clone().read_owned().await;
        if *g {
            return Err(NodeError::Unavailable("the node is shutting down".into()));
        }
        Ok(g)
    }

    /// Commits queued writes of one namespace together (the caller holds the write lock): dedup against stored
    /// and in-batch content, records, blobs, rows, graph, commitment and one signed root. Returns each write's
    /// results in order.
    pub(super) async fn commit_batch(
        &self,
        ns: &str,
        space: &Arc<Space>,
        batch: &[PendingWrite],
    ) -> Result<Vec<Vec<Remembered>>, NodeError> {
        let all_keys: Vec<[u8; 32]> = batch.iter().flat_map(|w| w.keys.iter().copied()).collect();
        // Re-check under the lock: another writer may have stored the same content meanwhile.
        let known = self.find_dedup(ns, &all_keys).await?;
        let mut known = known.into_iter();
        let now = now_ms();
        let mut next = space.next_point();
        let mut new_points = Vec::new();
        let mut records = Vec::new();
        let mut made: HashMap<[u8; 32], Remembered> = HashMap::new();
        let mut results = Vec::with_capacity(batch.len());
        // Keyed items replace the live memory holding their key: stored ones found now, and earlier items of
        // this batch as they are made. Everything replaced is forgotten in the same transaction and root.
        let wanted_keys: HashSet<String> = batch
            .iter()
            .flat_map(|w| w.items.iter())
            .filter_map(|it| it.metadata.get(validate::KEY_META).cloned())
            .collect();
        let mut holder: HashMap<String, (u64, PointRow)> = if wanted_keys.is_empty() {
            HashMap::new()
        } else {
            space.live_keys(&wanted_keys)?
        };
        let mut gone: Vec<Forgotten> = Vec::new();
        let mut buried: HashSet<MemoryId> = HashSet::new();
        for w in batch {
            let mut out = Vec::with_capacity(w.items.len());
            for (i, it) in w.items.iter().enumerate() {
                let key = w.keys[i];
                if let Some(id) = known.next().flatten() {
                    // Memory mirrors the committed rows, so a stored dedup key always has its live memory.
                    let created_at = space.created_at(&id).ok_or_else(|| {
                        NodeError::Task(format!(
                            "memory {id} is in the dedup table but not in namespace {ns:?}"
                        ))
                    })?;
                    if !buried.contains(&id) {
                        out.push(Remembered {
                            id,
                            deduplicated: true,
                            created_at,
                            replaced: None,
                        });
                        continue;
                    }
                    // Replaced by an earlier item of this batch: stored anew below.
                }
                if let Some(r) = made.get(&key) {
                    if !buried.contains(&r.id) {
                        out.push(Remembered {
                            deduplicated: true,
                            replaced: None,
                            ..r.clone()
                        });
                        continue;
                    }
                }
                let vector = match w.vectors.get(&i) {
                    Some(v) => v.clone(),
                    // Known when the call began but forgotten since: embed it now (rare).
                    None => self
                        .embedder
                        .embed(vec![it.text.clone()])
                        .await?
                        .pop()
                        .ok_or_else(|| NodeError::Task("no vector for a new memory".into()))?,
                };
                let record = MemoryRecord {
                    namespace: ns.to_owned(),
                    created_at: it.created_at.unwrap_or(now),
                    salt: rand::random(),
                    text: it.text.clone(),
                    metadata: it.metadata.clone(),
                };
                let bytes = Bytes::from(record.encode());
                let id = MemoryId::of_bytes(&bytes);
                let row = PointRow {
                    id,
                    created_at: record.created_at,
                    alive: true,
                    dedup: key,
                    vector,
                    lex: Some(cairn_index::lexical::DocTerms::of(&record.text).into_terms()),
                    metadata: record.metadata,
                };
                let mut replaced = None;
                if let Some(k) = row.metadata.get(validate::KEY_META) {
                    if let Some((point, old)) = holder.insert(k.clone(), (next, row.clone())) {
                        replaced = Some(old.id);
                        buried.insert(old.id);
                        gone.push(Forgotten { point, row: old });
                    }
                }
                let r = Remembered {
                    id,
                    deduplicated: false,
                    created_at: row.created_at,
                    replaced,
                };
                made.insert(key, r.clone());
                out.push(r);
                records.push(bytes);
                new_points.push(NewPoint { point: next, row });
                next += 1;
            }
            results.push(out);
        }
        if !new_points.is_empty() {
            let t0 = std::time::Instant::now();
            self.blobs.put_all(&records).await?;
            let t_blobs = t0.elapsed();
            let st = self.state.clone();
            let name = ns.to_owned();
            let gone_points: Vec<u64> = gone.iter().map(|g| g.point).collect();
            let new_points =
                tokio::task::spawn_blocking(move || -> Result<Vec<NewPoint>, NodeError> {
                    st.write_points(&name, &new_points, next, &gone)?;
                    Ok(new_points)
                })
                .await??;
            let t_rows = t0.elapsed();
            let (sp, sg) = (space.clone(), self.signing.clone());
            let buried_points = gone_points.clone();
            let root = tokio::task::spawn_blocking(move || {
                sg.with(|s| sp.add(new_points, &buried_points, s))
            })
            .await??;
            tracing::debug!(
                namespace = ns,
                calls = batch.len(),
                items = records.len(),
                blobs_ms = t_blobs.as_secs_f64() * 1e3,
                rows_ms = (t_rows - t_blobs).as_secs_f64() * 1e3,
                index_and_commit_ms = (t0.elapsed() - t_rows).as_secs_f64() * 1e3,
                seq = root.record.seq,
                "remembered"
            );
            let _ = self.roots.send(root);
            if !gone_points.is_empty() {
                // Replaced memories are forgotten: their bytes go like Forget's.
                self.forget_snapshot(ns).await?;
                self.finish_blob_deletes().await?;
            }
        }
        Ok(results)
    }

    pub(super) async fn find_dedup(
        &self,
        ns: &str,
        keys: &[[u8; 32]],
    ) -> Result<Vec<Option<MemoryId>>, NodeError> {
        if self.space(ns).is_err() {
            return Ok(vec![None; keys.len()]);
        }
        let st = self.state.clone();
        let (name, keys) = (ns.to_owned(), keys.to_vec());
        Ok(tokio::task::spawn_blocking(move || st.find_dedup(&name, &keys)).await??)
    }

    /// Forgets memories: gone from every read when this returns; blob bytes are unpinned for deletion. The
    /// durable part runs in its own task, so a caller that goes away cannot interrupt it.
    pub async fn forget(
        self: &Arc<Self>,
        ns: &str,
        ids: &[MemoryId],
    ) -> Result<(Vec<String>, Vec<String>), NodeError> {
        item_count("ids", "ids", ids.len())?;
        let space = self.space(ns)?;
        writable(&space)?;
        self.not_forked(ns)?;
        let mut wanted = Vec::new();
        let mut seen = HashSet::new();
        for &id in ids {
            if seen.insert(id) {
                wanted.push((id.to_hex(), id));
            }
        }
        let gate = self.write_gate().await?;
        let me = self.clone();
        let ns = ns.to_owned();
        tokio::spawn(async move {
            let _gate = gate;
            me.forget_locked(&ns, &space, wanted).await
        })
        .await?
    }

    pub(super) async fn forget_locked(
        &self,
        ns: &str,
        space: &Arc<Space>,
        wanted: Vec<(String, MemoryId)>,
    ) -> Result<(Vec<String>, Vec<String>), NodeError> {
        let w = space.write.lock().await;
        let mut gone = Vec::new();
        let (mut forgotten, mut missing) = (Vec::new(), Vec::new());
        for (raw, id) in wanted {
            match space.live_row(&id)? {
                Some((point, row)) => {
                    gone.push(Forgotten { point, row });
                    forgotten.push(id.to_hex());
                }
                None => missing.push(raw),
            }
        }
        if !gone.is_empty() {
            let st = self.state.clone();
            let name = ns.to_owned();
            let gone = tokio::task::spawn_blocking(move || -> Result<Vec<Forgotten>, NodeError> {
                st.forget(&name, &gone)?;
                Ok(gone)
            })
            .await??;
            let points: Vec<u64> = gone.iter().map(|g| g.point).collect();
            let (sp, sg) = (space.clone(), self.signing.clone());
            let root = tokio::task::spawn_blocking(move || sg.with(|s| sp.tombstone(&points, s)))
                .await??;
            let _ = self.roots.send(root);
            // The namespace's snapshot held the forgotten bytes too.
            self.forget_snapshot(ns).await?;
            self.finish_blob_deletes().await?;
        }
        drop(w);
        if space.wants_compaction() {
            self.compact(space).await?;
        }
        Ok((forgotten, missing))
    }

    pub(super) async fn finish_blob_deletes(&self) -> Result<(), NodeError> {
        let st = self.state.clone();
        let pending = tokio::task::spawn_blocking(move || st.pending_blob_deletes()).await??;
        if pending.is_empty() {
            return Ok(());
        }
        self.blobs.delete(&pending).await?;
        let st = self.state.clone();
        tokio::task::spawn_blocking(move || st.blob_deletes_done(&pending)).await??;
        Ok(())
    }

    /// Rebuilds a namespace's graph without its tombstones (renumbering points).
    pub async fn compact(&self, space: &Arc<Space>) -> Result<(), NodeError> {
        let _w = space.write.lock().await;
        let sp = space.clone();
        let st = self.state.clone();
        // The namespace's own dimension (an external or another installed model's may differ from the node's).
        let dim = match space.external() {
            Some(m) => m.dim.into(),
            None => self.embedder_for(space).info().dim,
        };
        let params = HnswParams { dim, ..self.params };
        let sg = self.signing.clone();
        tokio::task::spawn_blocking(move || -> Result<(), NodeError> {
            // From redb, with their vectors (rows in memory hold none); the write lock keeps both the same.
            let live: Vec<_> = st
                .load_points(&sp.name)?
                .into_iter()
                .filter(|r| r.alive)
                .collect();
            st.compact(&sp.name, &live)?;
            sg.with(|s| sp.replace(live, params, s))?;
            Ok(())
        })
        .await??;
        tracing::info!(namespace = %space.name, "compacted");
        Ok(())
    }
}

/// Refuses writes to a replica: one writer per namespace, its owner.
fn writable(space: &Space) -> Result<(), NodeError> {
    match space.owner {
        None => Ok(()),
        Some(o) => Err(NodeError::FailedPrecondition(format!(
            "namespace {:?} is a read-only replica; its owner {} takes writes",
            space.name,
            hex::encode(o)
        ))),
    }
}
