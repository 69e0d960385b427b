//! Start-up: opening the data dir, restoring every namespace, and reconciling what a crash left half done.

use super::*;

impl Engine {
    /// Opens the data dir, checks it belongs to the embedder's model and restores every namespace's index.
    pub async fn open(cfg: EngineConfig, embedder: Embedder) -> Result<Arc<Self>, NodeError> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
            NodeError::FailedPrecondition(format!(
                "cannot create data dir {}: {e}",
                cfg.data_dir.display()
            ))
        })?;
        let model = embedder.info().id.clone();
        let path = cfg.data_dir.join("state.redb");
        let fresh = !path.exists();
        let cache = cfg.state_cache_bytes;
        let state = Arc::new(
            tokio::task::spawn_blocking(move || State::open_with_cache(&path, &model, cache))
                .await??,
        );
        let blobs = Blobs::open(&cfg.data_dir.join("blobs"), cfg.gc_interval).await?;
        let params = HnswParams {
            m: cfg.m,
            ef_construction: cfg.ef_construction,
            dim: embedder.info().dim,
        };
        let key = Arc::new(
            crate::identity::load_or_create(&cfg.data_dir, fresh)
                .map_err(|e| NodeError::FailedPrecondition(e.to_string()))?,
        );
        {
            let (st, id) = (state.clone(), crate::identity::node_id_hex(&key));
            tokio::task::spawn_blocking(move || st.bind_node_id(&id)).await??;
        }
        let commit_params = CommitParams {
            m: cfg.m.min(u16::MAX as usize) as u16,
            dim: embedder.info().dim as u16,
            model: embedder.info().hash,
        };
        let hnsw_dir = cfg.data_dir.join("hnsw");
        ann::clean_leftovers(&hnsw_dir);
        let alerts: Vec<replica::Alert> = {
            let st = state.clone();
            tokio::task::spawn_blocking(move || st.alerts())
                .await??
                .iter()
                .filter_map(|b| replica::Alert::decode(b))
                .collect()
        };
        let published = crate::published::Published::open(
            &cfg.published_dir,
            &crate::identity::node_id_hex(&key),
        )
        .map_err(|e| NodeError::FailedPrecondition(e.to_string()))?;
        let signing = Arc::new(Signing {
            key: key.clone(),
            params: commit_params,
            state: state.clone(),
            published,
        });
        let mut forks = HashMap::new();
        let mut spaces = BTreeMap::new();
        let names = {
            let st = state.clone();
            tokio::task::spawn_blocking(move || st.namespaces()).await??
        };
        let follows: HashMap<String, [u8; 32]> = {
            let st = state.clone();
            tokio::task::spawn_blocking(move || st.follows())
                .await??
                .into_iter()
                .collect()
        };
        let externals: HashMap<String, cairn_index::model::ExternalModel> = {
            let st = state.clone();
            tokio::task::spawn_blocking(move || st.external_models())
                .await??
                .into_iter()
                .collect()
        };
        // Namespaces moved to another installed model: its embedder is started once for all of them. A model
        // that cannot be started sets its namespaces aside (quarantined) with the reason.
        let ns_models: HashMap<String, [u8; 32]> = {
            let st = state.clone();
            tokio::task::spawn_blocking(move || st.namespace_models())
                .await??
                .into_iter()
                .collect()
        };
        let mut loaded: HashMap<[u8; 32], Embedder> = HashMap::new();
        let mut unloadable: HashMap<[u8; 32], String> = HashMap::new();
        for h in ns_models.values() {
            if loaded.contains_key(h) || unloadable.contains_key(h) || *h == embedder.info().hash {
                continue;
            }
            match migrate::load_model(cfg.models.as_ref(), h).await {
                Ok(e) => {
                    loaded.insert(*h, e);
                }
                Err(e) => {
                    unloadable.insert(*h, e.to_string());
                }
            }
        }
        let mut quarantined = HashMap::new();
        for (name, _next) in names {
            let st = state.clone();
            let dir = hnsw_dir.join(space::dir_name(&name));
            let n = name.clone();
            let restored = if let Some(&owner) = follows.get(&name) {
                let external = externals.get(&name).cloned();
                tokio::task::spawn_blocking(move || -> Result<(Space, Option<String>), NodeError> {
                    let rows = st.load_points(&n)?;
                    let lists = st.load_lists(&n)?;
                    let root = st.latest_root(&n)?;
                    let nodes = replica::stored_nodes(&rows, lists);
                    match Space::replica(n.clone(), dir.clone(), owner, rows, nodes, root) {
                        Ok(s) => Ok((s.with_model(external), None)),
                        Err(e) => {
                            tracing::warn!(namespace = %n, error = %e, "stored replica state does not reproduce its root; it will be fetched again in full");
                            Space::replica(n, dir, owner, Vec::new(), Vec::new(), None)
                                .map(|s| (s.with_model(external), None))
                                .map_err(|e| NodeError::Task(e.to_string()))
                        }
                    }
                })
                .await
            } else {
                let sg = signing.clone();
                let allowed = cfg.allow_fork.contains(&name);
                let external = externals.get(&name).cloned();
                let local = match ns_models.get(&name) {
                    None => Ok(None),
                    Some(h) if *h == embedder.info().hash => Ok(None),
                    Some(h) => loaded.get(h).cloned().map(Some).ok_or_else(|| {
                        NodeError::FailedPrecondition(format!(
                            "it is embedded with model {} ({}); install that model (cairn model fetch) and restart",
                            hex::encode(h),
                            unloadable.get(h).map_or("not loaded", |s| s.as_str())
                        ))
                    }),
                };
                let params = HnswParams {
                    dim: match (&external, &local) {
                        (Some(m), _) => m.dim.into(),
                        (None, Ok(Some(e))) => e.info().dim,
                        _ => params.dim,
                    },
                    ..params
                };
                let rows = {
                    let (st, n) = (st.clone(), n.clone());
                    tokio::task::spawn_blocking(move || -> Result<Vec<PointRow>, NodeError> {
                        Ok(st.scrub_tombstones(&n, st.load_points(&n)?)?)
                    })
                    .await
                    .map_err(NodeError::from)
                    .and_then(|r| r)
                };
                let rows = match rows {
                    Ok(rows) => fill_terms(&st, &blobs, &n, rows).await,
                    Err(e) => Err(e),
                };
                tokio::task::spawn_blocking(
                    move || -> Result<(Space, Option<String>), NodeError> {
                        let rows = rows?;
                        let local = local?;
                        let space =
                            Space::restore(n.clone(), dir, rows, params).with_model(external);
                        space.set_local(local);
                        let latest = st.latest_root(&n)?;
                        let fork = restored_fork(&n, latest.as_ref(), &sg.published)?;
                        if let (Some(why), true) = (&fork, allowed) {
                            tracing::warn!(namespace = %n, "{why}; writing anyway (--allow-fork)");
                        }
                        let fork = fork.filter(|_| !allowed);
                        sg.with(|s| space.ensure_root(latest, fork.is_none(), s))?;
                        Ok((space, fork))
                    },
                )
                .await
            };
            // A namespace whose stored state cannot be read is set aside; the node serves the others.
            let (space, fork) = match restored.map_err(NodeError::from).and_then(|r| r) {
                Ok(r) => r,
                Err(e) => {
                    let why = format!(
                        "namespace {name:?} is quarantined: its stored state could not be loaded ({e}); \
                         the node serves its other namespaces. Restore the data dir from a backup to recover it"
                    );
                    tracing::error!(namespace = %name, error = %e, "namespace quarantined");
                    quarantined.insert(name, why);
                    continue;
                }
            };
            // A replica embeds queries with the model its latest root names (the owner may have moved it).
            if space.owner.is_some() && space.external().is_none() {
                let named = space.with_commit(|c| c.root().map(|r| r.record.model))?;
                if let Some(h) = named.filter(|h| *h != embedder.info().hash) {
                    let e = match loaded.get(&h) {
                        Some(e) => Ok(e.clone()),
                        None => migrate::load_model(cfg.models.as_ref(), &h).await,
                    };
                    match e {
                        Ok(e) => {
                            loaded.insert(h, e.clone());
                            space.set_local(Some(e));
                        }
                        Err(e) => {
                            let why = format!(
                                "replica {name:?} is embedded with model {} that this node cannot run ({e}); \
                                 install it (cairn model fetch) and restart"
                            ,hex::encode(h));
                            tracing::error!(namespace = %name, "{why}");
                            quarantined.insert(name, why);
                            continue;
                        }
                    }
                }
            }
            if let Some(why) = fork {
                tracing::error!(namespace = %name, "{why}; writes refused");
                forks.insert(name.clone(), why);
            }
            match space.owner {
                Some(owner) => {
                    tracing::info!(namespace = %name, owner = %hex::encode(owner), memories = space.stats().memories, "replica restored")
                }
                None => {
                    tracing::info!(namespace = %name, memories = space.stats().memories, "namespace restored")
                }
            }
            spaces.insert(name, Arc::new(space));
        }
        let (cosig_tx, cosig_rx) = tokio::sync::mpsc::channel(follow::COSIG_QUEUE);
        tokio::spawn(follow::cosig_writer(state.clone(), cosig_rx));
        let engine = Arc::new(Engine {
            cfg,
            state,
            blobs,
            embedder,
            params,
            spaces: RwLock::new(spaces),
            create: Mutex::new(()),
            key,
            roots: tokio::sync::broadcast::channel(1024).0,
            snapshots: std::sync::Mutex::new(HashMap::new()),
            snapshot_build: std::sync::Mutex::new(HashMap::new()),
            gate: Arc::new(tokio::sync::RwLock::new(false)),
            alerts: std::sync::Mutex::new(alerts),
            signing,
            forks: std::sync::RwLock::new(forks),
            quarantined,
            next_vacuum: std::sync::Mutex::new(None),
            cosig_tx,
            cosig_rates: std::sync::Mutex::new(HashMap::new()),
            models: Mutex::new(loaded),
            migrating: std::sync::Mutex::new(Default::default()),
        });
        engine.report_migrations().await?;
        engine.finish_blob_deletes().await?;
        engine.remove_orphan_blobs().await?;
        engine.remove_orphan_snapshots().await?;
        Ok(engine)
    }

    /// Start-up repair: unpins snapshot pins of namespaces that keep no snapshot (an Unfollow or a pin whose row
    /// never committed, interrupted by a crash), so their pages go with the next collection.
    pub(super) async fn remove_orphan_snapshots(&self) -> Result<(), NodeError> {
        let st = self.state.clone();
        let kept = tokio::task::spawn_blocking(
            move || -> Result<Vec<String>, crate::store::StoreError> {
                let mut out = Vec::new();
                for (ns, _) in st.namespaces()? {
                    if st.snapshot(&ns)?.is_some() {
                        out.push(ns);
                    }
                }
                Ok(out)
            },
        )
        .await??;
        let n = self.blobs.drop_snapshots_except(&kept).await?;
        if n > 0 {
            tracing::warn!(
                pins = n,
                "repaired: removed snapshot pins of namespaces that keep none"
            );
        }
        Ok(())
    }

    /// Start-up repair: unpins record blobs that no row refers to. A write stores and tags its blobs before its
    /// rows commit, so a crash (or a failed commit) in between leaves them behind; nobody has seen their ids.
    pub(super) async fn remove_orphan_blobs(&self) -> Result<(), NodeError> {
        let st = self.state.clone();
        let referenced = tokio::task::spawn_blocking(move || st.referenced_blobs()).await??;
        let orphans: Vec<[u8; 32]> = self
            .blobs
            .tagged()
            .await?
            .into_iter()
            .filter(|h| !referenced.contains(h))
            .collect();
        if !orphans.is_empty() {
            tracing::warn!(
                blobs = orphans.len(),
                "repaired: removed record blobs left by writes that never committed"
            );
            self.blobs.delete(&orphans).await?;
        }
        Ok(())
    }
}

/// Why `latest` (the newest root in the data dir) is older than what this node published for `ns`, if it is.
fn restored_fork(
    ns: &str,
    latest: Option<&SignedRoot>,
    published: &crate::published::Published,
) -> Result<Option<String>, NodeError> {
    let Some((seq, hash)) = published
        .get(ns)
        .map_err(|e| NodeError::Task(e.to_string()))?
    else {
        return Ok(None);
    };
    let (have, have_hash) = latest.map_or((0, [0u8; 32]), |r| (r.record.seq, r.record.hash()));
    if seq > have || (seq == have && hash != have_hash) {
        return Ok(Some(format!(
            "namespace {ns:?}: this node already published root seq {seq} ({}), but its data dir holds seq {have}: \
             it was restored from an older copy, and new writes would sign a second root for a published seq. \
             Restore the newest copy of the data dir, or start with --allow-fork {ns} to accept the fork",
            hex::encode(hash)
        )));
    }
    Ok(None)
}

/// Gives rows written before the lexical index existed their index terms, from their records (owner
/// namespaces keep each record as its own blob), and stores them, so the first root after an upgrade commits
/// every memory's terms.
async fn fill_terms(
    st: &Arc<State>,
    blobs: &Blobs,
    ns: &str,
    mut rows: Vec<PointRow>,
) -> Result<Vec<PointRow>, NodeError> {
    let missing: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].alive && rows[i].lex.is_none())
        .collect();
    if missing.is_empty() {
        return Ok(rows);
    }
    let ids: Vec<MemoryId> = missing.iter().map(|&i| rows[i].id).collect();
    let records = blobs.get_many(&ids).await?;
    let mut filled = Vec::with_capacity(missing.len());
    for (&i, bytes) in missing.iter().zip(records) {
        let rec = MemoryRecord::decode(&bytes)
            .map_err(|e| NodeError::Task(format!("record {}: {e}", rows[i].id)))?;
        rows[i].lex = Some(cairn_index::lexical::DocTerms::of(&rec.text).into_terms());
        filled.push((i, rows[i].clone()));
    }
    let (st, n, count) = (st.clone(), ns.to_owned(), filled.len());
    tokio::task::spawn_blocking(move || st.fill_terms(&n, &filled)).await??;
    tracing::info!(
        namespace = ns,
        memories = count,
        "indexed the terms of memories written before the lexical index"
    );
    Ok(rows)
}
