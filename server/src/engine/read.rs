//! The read path: Recall in every mode (with its proofs), Get, List, roots, and reading records back.

use super::*;

impl Engine {
    /// Embeds texts (validated like memory texts).
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, NodeError> {
        if texts.is_empty() {
            return Err(NodeError::invalid("texts", "at least one text is required"));
        }
        if texts.len() > MAX_ITEMS {
            return Err(NodeError::too_large(
                "texts",
                format!("{} texts, at most {MAX_ITEMS} per call", texts.len()),
            ));
        }
        for (i, t) in texts.iter().enumerate() {
            validate::text(&format!("texts[{i}]"), t, &self.cfg.limits)?;
        }
        Ok(self.embedder.embed(texts).await?)
    }

    /// The nearest memories to a query, best first, with the mode used; with `opts.proof`, also the proof.
    pub async fn recall(
        &self,
        ns: &str,
        query: Option<Query>,
        opts: RecallOpts,
    ) -> Result<(Vec<HitOut>, Option<Vec<u8>>, RecallMode), NodeError> {
        if !(opts.prefix && ns.is_empty()) {
            validate::namespace(ns)?;
        }
        let f = &opts.filter;
        let filtered = f.since.is_some() || f.until.is_some() || !f.metadata.is_empty();
        let text = matches!(
            query,
            Some(Query::Text(_)) | Some(Query::TextWithVector(..))
        );
        // A namespace of an external model cannot embed a text: its text queries without a vector rank
        // lexically.
        let bare_text = matches!(query, Some(Query::Text(_)));
        let external = match opts.prefix {
            true => None,
            false => self.space(ns).ok().and_then(|s| s.external().cloned()),
        };
        let mode = match opts.mode {
            Some(m) => m,
            None if bare_text && external.is_some() => RecallMode::Lexical,
            // A filtered Recall without proof keeps the fast graph search; with one, the filtered proof ranks
            // in the node's default mode.
            None if text && !opts.prefix && (!filtered || opts.proof) => self.cfg.recall_mode,
            None => RecallMode::Semantic,
        };
        if let (Some(m), true, false) = (&external, bare_text, mode == RecallMode::Lexical) {
            return Err(NodeError::invalid(
                "mode",
                format!(
                    "namespace {ns:?} holds vectors of the external model {}, which this node cannot embed: send query.vector (semantic), the text with text_vector (semantic or hybrid), or use mode lexical",
                    m.label()
                ),
            ));
        }
        if mode != RecallMode::Semantic {
            if !text {
                return Err(NodeError::invalid(
                    "mode",
                    "lexical and hybrid recall need a query text",
                ));
            }
            if opts.prefix {
                return Err(NodeError::invalid(
                    "mode",
                    "lexical and hybrid recall do not take a prefix; use mode semantic",
                ));
            }
        }
        if opts.depth > MAX_K {
            return Err(NodeError::invalid(
                "depth",
                format!("{} is more than {MAX_K}", opts.depth),
            ));
        }
        let (hits, proof) = self.recall_in(ns, query, opts, mode).await?;
        Ok((hits, proof, mode))
    }

    pub(super) async fn recall_in(
        &self,
        ns: &str,
        query: Option<Query>,
        mut opts: RecallOpts,
        mode: RecallMode,
    ) -> Result<(Vec<HitOut>, Option<Vec<u8>>), NodeError> {
        let f = &opts.filter;
        let filtered = f.since.is_some() || f.until.is_some() || !f.metadata.is_empty();
        if opts.proof && opts.prefix {
            return Err(NodeError::invalid(
                "prefix",
                "a search across namespaces is not supported together with proof",
            ));
        }
        if opts.proof && query.is_none() {
            return Err(NodeError::invalid(
                "query",
                "a proof needs a query text or vector",
            ));
        }
        opts.k = match opts.k {
            0 => 10,
            k if k > MAX_K => {
                return Err(NodeError::invalid("k", format!("{k} is more than {MAX_K}")));
            }
            k => k,
        };
        if opts.ef > MAX_EF {
            return Err(NodeError::invalid(
                "ef",
                format!("{} is more than {MAX_EF}", opts.ef),
            ));
        }
        if opts.ef == 0 {
            opts.ef = self.cfg.ef_search as u32;
        }
        opts.ef = opts.ef.max(opts.k);
        if let (Some(s), Some(u)) = (f.since, f.until) {
            if s >= u {
                return Err(NodeError::invalid(
                    "filter",
                    format!("since ({s}) must be before until ({u})"),
                ));
            }
        }
        validate::metadata("filter.metadata", &f.metadata, &self.cfg.limits)?;
        let spaces: Vec<Arc<Space>> = if opts.prefix {
            self.spaces
                .read()
                .map_err(|_| NodeError::Task("namespace table poisoned".into()))?
                .iter()
                .filter(|(name, _)| {
                    ns.is_empty()
                        || name.as_str() == ns
                        || name
                            .strip_prefix(ns)
                            .is_some_and(|rest| rest.starts_with('/'))
                })
                // Only namespaces of the node's model share the query's vector space.
                .filter(|(_, s)| s.shares_node_model())
                .map(|(_, s)| s.clone())
                .collect()
        } else {
            vec![self.space(ns)?]
        };
        if filtered
            && !opts.prefix
            && query.is_some()
            && (opts.proof || mode != RecallMode::Semantic)
        {
            let Some(space) = spaces.into_iter().next() else {
                return Err(NodeError::NotFound(format!("namespace {ns:?}")));
            };
            return self.filtered(space, query, mode, opts).await;
        }
        let q = match query {
            None => return self.newest(spaces, &opts).await,
            Some(Query::Text(t)) => {
                validate::text("query.text", &t, &self.cfg.limits)?;
                if mode != RecallMode::Semantic {
                    let Some(space) = spaces.into_iter().next() else {
                        return Err(NodeError::NotFound(format!("namespace {ns:?}")));
                    };
                    return self.lexical(space, t, None, mode, opts).await;
                }
                // One namespace: its model; a prefix: the node's (the namespaces searched share it).
                let embedder = match (opts.prefix, spaces.first()) {
                    (false, Some(s)) => self.embedder_for(s),
                    _ => self.embedder.clone(),
                };
                embedder
                    .embed(vec![t])
                    .await?
                    .pop()
                    .ok_or_else(|| NodeError::Task("no query vector".into()))?
            }
            Some(Query::TextWithVector(t, v)) => {
                validate::text("query.text", &t, &self.cfg.limits)?;
                let one = (!opts.prefix).then(|| spaces.first()).flatten();
                let v = self.unit_query(one.map(|s| s.as_ref()), v)?;
                if mode != RecallMode::Semantic {
                    let Some(space) = spaces.into_iter().next() else {
                        return Err(NodeError::NotFound(format!("namespace {ns:?}")));
                    };
                    return self.lexical(space, t, Some(v), mode, opts).await;
                }
                v
            }
            Some(Query::Vector(v)) => {
                let one = (!opts.prefix).then(|| spaces.first()).flatten();
                self.unit_query(one.map(|s| s.as_ref()), v)?
            }
        };
        if !opts.prefix {
            let Some(space) = spaces.into_iter().next() else {
                return Err(NodeError::NotFound(format!("namespace {ns:?}")));
            };
            return self.search(space, q, opts).await;
        }
        let k = opts.k as usize;
        let mut hits = Vec::new();
        for space in spaces {
            let (found, _) = self.search(space, q.clone(), opts.clone()).await?;
            hits.extend(found);
        }
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.memory.id.cmp(&b.memory.id))
        });
        hits.truncate(k);
        Ok((hits, None))
    }

    /// Recall without a query: the newest k memories passing the filter across `spaces`, newest first (ties by
    /// id), score 0.
    pub(super) async fn newest(
        &self,
        spaces: Vec<Arc<Space>>,
        opts: &RecallOpts,
    ) -> Result<(Vec<HitOut>, Option<Vec<u8>>), NodeError> {
        let k = opts.k as usize;
        let mut found: Vec<(u64, MemoryId)> = Vec::new();
        for space in spaces {
            let (page, _) = space.scan(&opts.filter, None, k, true)?;
            found.extend(page);
        }
        found.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        found.truncate(k);
        let ids: Vec<MemoryId> = found.iter().map(|f| f.1).collect();
        let hits = self
            .read_all(&ids)
            .await?
            .into_iter()
            .map(|memory| HitOut { memory, score: 0.0 })
            .collect();
        Ok((hits, None))
    }

    /// Checks a caller's query vector and scales it to unit length.
    /// (`space`'s model's dimension: its external model's, or the node's when None or its own.)
    pub(super) fn unit_query(
        &self,
        space: Option<&Space>,
        q: Vec<f32>,
    ) -> Result<Vec<f32>, NodeError> {
        let dim = match space {
            Some(s) => match s.external() {
                Some(m) => m.dim.into(),
                None => self.embedder_for(s).info().dim,
            },
            None => self.embedder.info().dim,
        };
        unit_vector("query.vector", q, dim)
    }

    /// Runs a validated Recall on a unit query vector.
    pub(super) async fn search(
        &self,
        space: Arc<Space>,
        q: Vec<f32>,
        opts: RecallOpts,
    ) -> Result<(Vec<HitOut>, Option<Vec<u8>>), NodeError> {
        let (k, ef) = (opts.k as usize, opts.ef as usize);
        let points = space.stats().index_points;
        self.exact_allowed(opts.exact, points)?;
        if opts.proof {
            let exact = opts.exact || points <= self.cfg.exact_proof_limit;
            let (found, transcript) = tokio::task::spawn_blocking(move || {
                space.with_commit(|c| c.prove_recall(&q, k, ef, exact))
            })
            .await??
            .ok_or_else(|| {
                NodeError::FailedPrecondition("namespace has no signed root yet".into())
            })?;
            let ids: Vec<MemoryId> = found.iter().map(|f| f.1).collect();
            let hits = self
                .read_all(&ids)
                .await?
                .into_iter()
                .zip(found)
                .map(|(memory, (d, _))| HitOut {
                    memory,
                    score: cairn_index::proof::proof_score(d),
                })
                .collect();
            return Ok((hits, Some(transcript.encode())));
        }
        // The search and the lookup of where its hits' records sit share one blocking hand-off.
        let st = self.state.clone();
        let (found, locs) = tokio::task::spawn_blocking(move || {
            let found = space.search(&Search {
                query: &q,
                k,
                ef,
                filter: &opts.filter,
                exact: opts.exact,
            })?;
            let ids: Vec<MemoryId> = found.iter().map(|f| f.0).collect();
            let locs = st.pack_locs(&ids)?;
            Ok::<_, NodeError>((found, locs))
        })
        .await??;
        let ids: Vec<MemoryId> = found.iter().map(|f| f.0).collect();
        let hits = self
            .read_located(&ids, locs)
            .await?
            .into_iter()
            .zip(found)
            .map(|(memory, (_, score))| HitOut { memory, score })
            .collect();
        Ok((hits, None))
    }

    /// Refuses an exact search over more memories than `--max-exact` allows.
    pub(super) fn exact_allowed(&self, exact: bool, points: u64) -> Result<(), NodeError> {
        if exact && points > self.cfg.max_exact {
            return Err(NodeError::too_large(
                "exact",
                format!(
                    "an exact search here scores {points} memories, more than this node allows per call ({}, --max-exact)",
                    self.cfg.max_exact
                ),
            ));
        }
        Ok(())
    }

    /// Lexical or hybrid Recall on a validated text query: the hits of the deterministic ranking over the
    /// committed state (docs/PROOFS.md), and with `opts.proof` its `CPX1` proof.
    /// `vector`: the text's vector when the caller sent it (hybrid mode then embeds nothing).
    pub(super) async fn lexical(
        &self,
        space: Arc<Space>,
        text: String,
        vector: Option<Vec<f32>>,
        mode: RecallMode,
        opts: RecallOpts,
    ) -> Result<(Vec<HitOut>, Option<Vec<u8>>), NodeError> {
        let (k, ef) = (opts.k as usize, opts.ef as usize);
        let depth = match opts.depth {
            0 => self.cfg.fusion_depth,
            d => d as usize,
        }
        .max(k);
        let points = space.stats().index_points;
        self.exact_allowed(opts.exact, points)?;
        let vector = match (mode, vector) {
            (RecallMode::Hybrid, Some(v)) => Some(v),
            (RecallMode::Hybrid, None) => Some(
                self.embedder_for(&space)
                    .embed(vec![text.clone()])
                    .await?
                    .pop()
                    .ok_or_else(|| NodeError::Task("no query vector".into()))?,
            ),
            _ => None,
        };
        let exact = opts.exact || points <= self.cfg.exact_proof_limit;
        let pmode = if mode == RecallMode::Hybrid {
            cairn_index::hybrid::MODE_HYBRID
        } else {
            cairn_index::hybrid::MODE_LEXICAL
        };
        let with_proof = opts.proof;
        let (found, proof) = tokio::task::spawn_blocking(move || {
            space.with_commit(|c| {
                c.prove_hybrid(
                    pmode,
                    vector.as_deref(),
                    &text,
                    k,
                    depth,
                    ef,
                    exact,
                    with_proof,
                )
            })
        })
        .await??
        .ok_or_else(|| {
            NodeError::FailedPrecondition(
                "namespace has no signed root with a lexical index yet".into(),
            )
        })?;
        Ok((
            self.scored_hits(found).await?,
            opts.proof.then(|| proof.encode()),
        ))
    }

    /// Filtered Recall in any mode, ranked exactly over the memories the filter allows (docs/PROOFS.md,
    /// "Filtered recall proof"), and with `opts.proof` its `CPF1` proof. More candidates than
    /// `--max-filter-candidates` is RESOURCE_EXHAUSTED.
    pub(super) async fn filtered(
        &self,
        space: Arc<Space>,
        query: Option<Query>,
        mode: RecallMode,
        opts: RecallOpts,
    ) -> Result<(Vec<HitOut>, Option<Vec<u8>>), NodeError> {
        use cairn_index::filtered::{FMODE_HYBRID, FMODE_LEXICAL, FMODE_SEMANTIC};
        let k = opts.k as usize;
        let depth = match opts.depth {
            0 => self.cfg.fusion_depth,
            d => d as usize,
        }
        .max(k);
        let (text, vector) = match query {
            Some(Query::Text(t)) => {
                validate::text("query.text", &t, &self.cfg.limits)?;
                let v = if mode == RecallMode::Lexical {
                    None
                } else {
                    self.embedder_for(&space)
                        .embed(vec![t.clone()])
                        .await?
                        .pop()
                };
                (t, v)
            }
            Some(Query::Vector(v)) => (String::new(), Some(self.unit_query(Some(&space), v)?)),
            Some(Query::TextWithVector(t, v)) => {
                validate::text("query.text", &t, &self.cfg.limits)?;
                let v = self.unit_query(Some(&space), v)?;
                (t, (mode != RecallMode::Lexical).then_some(v))
            }
            None => {
                return Err(NodeError::invalid(
                    "query",
                    "a filtered ranking needs a query",
                ));
            }
        };
        let pmode = match mode {
            RecallMode::Semantic => FMODE_SEMANTIC,
            RecallMode::Lexical => FMODE_LEXICAL,
            RecallMode::Hybrid => FMODE_HYBRID,
        };
        let filter = cairn_index::filtered::RecallFilter {
            pairs: opts
                .filter
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            since: opts.filter.since,
            until: opts.filter.until,
        };
        if filter.pairs.len() > cairn_index::filtered::MAX_FILTER_PAIRS {
            return Err(NodeError::invalid(
                "filter.metadata",
                format!(
                    "at most {} pairs in a ranked filter",
                    cairn_index::filtered::MAX_FILTER_PAIRS
                ),
            ));
        }
        let max = usize::try_from(self.cfg.max_filter_candidates).unwrap_or(usize::MAX);
        let result = tokio::task::spawn_blocking(move || {
            space.with_commit(|c| {
                c.prove_filtered(pmode, vector.as_deref(), &text, k, depth, &filter, max)
            })
        })
        .await??;
        let (found, proof) = result.map_err(|e| match e {
            commitment::FilterRefused::TooBroad(n) => NodeError::too_large(
                "filter",
                format!(
                    "{n} memories can pass this filter; a ranked filtered Recall scores them exactly, and this node allows {} per call (--max-filter-candidates): add a metadata pair or use mode semantic without a proof",
                    self.cfg.max_filter_candidates
                ),
            ),
            commitment::FilterRefused::NoRoot => NodeError::FailedPrecondition(e.to_string()),
            commitment::FilterRefused::Stale => NodeError::Unavailable(e.to_string()),
            other => NodeError::Task(other.to_string()),
        })?;
        Ok((
            self.scored_hits(found).await?,
            opts.proof.then(|| proof.encode()),
        ))
    }

    /// The hits of a ranking: each (score, id)'s record read and decoded, in rank order.
    pub(super) async fn scored_hits(
        &self,
        found: Vec<(f32, MemoryId)>,
    ) -> Result<Vec<HitOut>, NodeError> {
        let ids: Vec<MemoryId> = found.iter().map(|f| f.1).collect();
        Ok(self
            .read_all(&ids)
            .await?
            .into_iter()
            .zip(found)
            .map(|(memory, (score, _))| HitOut { memory, score })
            .collect())
    }

    /// Reads and decodes records, in order (in bulk: record files directly, packs a pack at a time).
    pub(super) async fn read_all(&self, ids: &[MemoryId]) -> Result<Vec<MemoryOut>, NodeError> {
        let locs = self.pack_locs(ids.to_vec()).await?;
        self.read_located(ids, locs).await
    }

    /// [`Engine::read_all`] for a caller that already looked up where the records sit (in the same blocking
    /// hand-off as its search).
    pub(super) async fn read_located(
        &self,
        ids: &[MemoryId],
        locs: Vec<Option<crate::store::PackLoc>>,
    ) -> Result<Vec<MemoryOut>, NodeError> {
        let bytes = self.records_located(ids, locs).await?;
        ids.iter()
            .zip(bytes)
            .map(|(id, bytes)| {
                let record = MemoryRecord::decode(&bytes).map_err(|e| {
                    NodeError::Task(format!("stored record {id} does not decode: {e}"))
                })?;
                Ok(MemoryOut {
                    id: *id,
                    record,
                    bytes,
                })
            })
            .collect()
    }

    /// Memories by id, in request order; unknown or forgotten ids are returned as missing. With `proof`, also a
    /// time proof covering the memories found, taken under the same lock as the lookup.
    /// `keys` name memories by their key (see [`validate::KEY_META`]); a key no live memory holds is missing.
    pub async fn get(
        &self,
        ns: &str,
        ids: &[MemoryId],
        keys: &[String],
        proof: bool,
    ) -> Result<Got, NodeError> {
        item_count("keys", "ids and keys", ids.len() + keys.len())?;
        for (i, k) in keys.iter().enumerate() {
            validate::key(&format!("keys[{i}]"), k)?;
        }
        let space = self.space(ns)?;
        let mut seen = HashSet::new();
        let mut wanted = Vec::new();
        for &id in ids {
            if seen.insert(id) {
                wanted.push((id.to_hex(), id));
            }
        }
        let mut missing = Vec::new();
        if !keys.is_empty() {
            let held = space.live_keys(&keys.iter().cloned().collect())?;
            for k in keys {
                match held.get(k) {
                    Some((_, row)) => {
                        if seen.insert(row.id) {
                            wanted.push((row.id.to_hex(), row.id));
                        }
                    }
                    None => missing.push(k.clone()),
                }
            }
        }
        let (live, _) = space.live_with_proof(wanted.iter().map(|w| w.1).collect(), false)?;
        let mut present = Vec::new();
        for ((raw, id), is_live) in wanted.into_iter().zip(live) {
            if is_live {
                present.push((raw, id));
            } else {
                missing.push(raw);
            }
        }
        // Read a few at a time and stop at the byte cap (one memory at least): the rest is named, not sent.
        let mut found: Vec<MemoryOut> = Vec::new();
        let mut bytes = 0usize;
        let mut next = 0;
        while next < present.len() && (found.is_empty() || bytes < self.cfg.max_page_bytes) {
            let end = (next + GET_CHUNK).min(present.len());
            let ids: Vec<MemoryId> = present[next..end].iter().map(|p| p.1).collect();
            let mut got = self.read_all(&ids).await?;
            let room = self.cfg.max_page_bytes.saturating_sub(bytes);
            let fits = fitting(&got, room, found.is_empty());
            got.truncate(fits);
            bytes += got.iter().map(|m| m.bytes.len()).sum::<usize>();
            next += fits;
            found.extend(got);
            if next < end {
                break;
            }
        }
        let unreturned: Vec<String> = present[next..].iter().map(|p| p.0.clone()).collect();
        let proof = if proof {
            // Proven after reading, over exactly what is returned. A memory forgotten meanwhile is reported
            // missing (and the proof taken again without it), never returned unproven.
            loop {
                let (live, p) =
                    space.live_with_proof(found.iter().map(|m| m.id).collect(), true)?;
                if live.iter().all(|l| *l) {
                    break p.map(|p| p.encode());
                }
                let (kept, gone): (Vec<_>, Vec<_>) =
                    found.into_iter().zip(live).partition(|(_, l)| *l);
                missing.extend(gone.into_iter().map(|(m, _)| m.id.to_hex()));
                found = kept.into_iter().map(|(m, _)| m).collect();
            }
        } else {
            None
        };
        Ok(Got {
            found,
            missing,
            unreturned,
            proof,
        })
    }

    /// One page of memories in (created_at, id) order, the token of the next page (empty if none), and with
    /// `proof` a range-completeness proof of the page.
    /// With a `metadata` filter (not combinable with `proof`), only the memories holding every pair.
    #[allow(clippy::too_many_arguments)]
    pub async fn list(
        &self,
        ns: &str,
        since: Option<u64>,
        until: Option<u64>,
        limit: u32,
        after: Option<(u64, MemoryId)>,
        proof: bool,
        metadata: &Metadata,
    ) -> Result<ListPage, NodeError> {
        let space = self.space(ns)?;
        if proof && !metadata.is_empty() {
            return Err(NodeError::invalid(
                "metadata",
                "a metadata filter is not supported together with proof",
            ));
        }
        validate::metadata("metadata", metadata, &self.cfg.limits)?;
        let limit = match limit {
            0 => 100,
            l if l > MAX_PAGE => {
                return Err(NodeError::invalid(
                    "limit",
                    format!("{l} is more than {MAX_PAGE}"),
                ));
            }
            l => l,
        } as usize;
        let (since, until) = (since.unwrap_or(0), until.unwrap_or(u64::MAX));
        if since >= until {
            return Err(NodeError::invalid(
                "since",
                format!("since ({since}) must be before until ({until})"),
            ));
        }
        if !metadata.is_empty() {
            let filter = Filter {
                metadata: metadata.clone(),
                since: Some(since),
                until: Some(until),
            };
            let mut limit = limit;
            let (page, more, out) = loop {
                let (page, more) = space.scan(&filter, after, limit, false)?;
                let ids: Vec<MemoryId> = page.iter().map(|e| e.1).collect();
                let out = self.read_all(&ids).await?;
                let fits = fitting(&out, self.cfg.max_page_bytes, true);
                if fits >= out.len() || fits >= limit {
                    break (page, more, out);
                }
                limit = fits;
            };
            return Ok(ListPage {
                memories: out,
                next: page.last().copied().filter(|_| more),
                proof: None,
            });
        }
        // A page ends early rather than exceed --max-page-mb: a shorter page is asked for again (under the then
        // current root, so page and proof stay one consistent answer). Each round shortens the page.
        let mut limit = limit;
        let (page, more, time_proof, out) = loop {
            let (page, more, time_proof) = space
                .with_commit(|c| c.list_page(since, until, after, limit))?
                .ok_or_else(|| {
                    NodeError::FailedPrecondition("namespace has no signed root yet".into())
                })?;
            let ids: Vec<MemoryId> = page.iter().map(|e| e.id).collect();
            let out = self.read_all(&ids).await?;
            let fits = fitting(&out, self.cfg.max_page_bytes, true);
            if fits >= out.len() || fits >= limit {
                break (page, more, time_proof, out);
            }
            limit = fits;
        };
        Ok(ListPage {
            memories: out,
            next: page.last().map(|e| (e.created_at, e.id)).filter(|_| more),
            proof: proof.then(|| time_proof.encode()),
        })
    }

    /// The latest signed root of a namespace, or the one with `seq`.
    pub async fn root(&self, ns: &str, seq: Option<u64>) -> Result<SignedRoot, NodeError> {
        let space = self.space(ns)?;
        match seq {
            None => space.with_commit(|c| c.root().cloned())?.ok_or_else(|| {
                NodeError::FailedPrecondition("namespace has no signed root yet".into())
            }),
            Some(seq) => {
                let st = self.state.clone();
                let name = ns.to_owned();
                tokio::task::spawn_blocking(move || st.root_at(&name, seq))
                    .await??
                    .ok_or_else(|| {
                        NodeError::NotFound(format!("namespace {ns:?} has no root with seq {seq}"))
                    })
            }
        }
    }

    /// New roots of every namespace, as they are signed.
    pub fn watch_roots(&self) -> tokio::sync::broadcast::Receiver<SignedRoot> {
        self.roots.subscribe()
    }

    /// The node id (hex ed25519 public key).
    pub fn node_id(&self) -> String {
        crate::identity::node_id_hex(&self.key)
    }

    /// Records of `ids` in order, checked against their ids. Records in packs are read one pack at a time (a
    /// whole pack once when many of its records are wanted, else their ranges); the others from their own
    /// blobs' files.
    pub async fn records_bulk(&self, ids: &[MemoryId]) -> Result<Vec<Bytes>, NodeError> {
        let locs = self.pack_locs(ids.to_vec()).await?;
        self.records_located(ids, locs).await
    }

    /// [`Engine::records_bulk`] with the records' pack locations already looked up (`locs[i]` for `ids[i]`).
    async fn records_located(
        &self,
        ids: &[MemoryId],
        locs: Vec<Option<crate::store::PackLoc>>,
    ) -> Result<Vec<Bytes>, NodeError> {
        if locs.len() != ids.len() {
            return Err(NodeError::Task(
                "pack locations do not match the ids".into(),
            ));
        }
        let mut out: Vec<Option<Bytes>> = vec![None; ids.len()];
        let mut by_pack: HashMap<[u8; 32], Vec<usize>> = HashMap::new();
        let mut loose = Vec::new();
        for (i, l) in locs.iter().enumerate() {
            match l {
                Some(l) => by_pack.entry(l.pack).or_default().push(i),
                None => loose.push(i),
            }
        }
        // A few records of a pack (a Recall's hits): read just their ranges, not the whole pack, all at once.
        let mut ranges = Vec::new();
        let mut at = Vec::new();
        for (_, idx) in by_pack.extract_if(|_, idx| idx.len() < FEW_OF_A_PACK) {
            for i in idx {
                let l = locs[i]
                    .as_ref()
                    .ok_or(crate::blobs::BlobError::Missing(ids[i]))?;
                ranges.push((l.pack, l.offset, l.len, ids[i]));
                at.push(i);
            }
        }
        for (i, rec) in at.into_iter().zip(self.blobs.read_records(&ranges).await?) {
            out[i] = Some(rec);
        }
        for (pack, idx) in by_pack {
            let bytes = self.blobs.get_raw(pack).await?;
            for i in idx {
                let (id, l) = (ids[i], locs[i].as_ref());
                let rec = l
                    .and_then(|l| {
                        let start = l.offset as usize;
                        bytes.get(start..start + l.len as usize)
                    })
                    .map(|s| bytes.slice_ref(s))
                    .filter(|r| MemoryId::of_bytes(r) == id)
                    .ok_or(crate::blobs::BlobError::Missing(id))?;
                out[i] = Some(rec);
            }
        }
        let loose_ids: Vec<MemoryId> = loose.iter().map(|&i| ids[i]).collect();
        for (i, b) in loose
            .into_iter()
            .zip(self.blobs.get_many(&loose_ids).await?)
        {
            out[i] = Some(b);
        }
        out.into_iter()
            .zip(ids)
            .map(|(b, id)| b.ok_or_else(|| crate::blobs::BlobError::Missing(*id).into()))
            .collect()
    }

    /// True if this node holds the record (as its own blob or in a pack).
    pub async fn has_record(&self, id: &MemoryId) -> bool {
        if self.blobs.has(id).await {
            return true;
        }
        matches!(self.pack_locs(vec![*id]).await, Ok(v) if v.first().is_some_and(Option::is_some))
    }

    /// Where `ids` sit in packs (None: not in a pack).
    pub(crate) async fn pack_locs(
        &self,
        ids: Vec<MemoryId>,
    ) -> Result<Vec<Option<crate::store::PackLoc>>, NodeError> {
        let st = self.state.clone();
        Ok(tokio::task::spawn_blocking(move || st.pack_locs(&ids)).await??)
    }
}

/// How many memories from the start of `page` fit in `max` bytes (at least one if `one_at_least`).
fn fitting(page: &[MemoryOut], max: usize, one_at_least: bool) -> usize {
    let mut total = 0usize;
    page.iter()
        .position(|m| {
            total = total.saturating_add(m.bytes.len());
            total > max
        })
        .map_or(page.len(), |i| if one_at_least { i.max(1) } else { i })
}

/// Memories Get reads at a time while filling its answer up to the byte cap.
const GET_CHUNK: usize = 32;

/// Below this many wanted records of one pack, they are read as ranges instead of reading the whole pack.
const FEW_OF_A_PACK: usize = 16;
