//! Who this node follows and trusts: followed namespaces, peers, revoked tokens, equivocation alerts that halt
//! following, and the cosignatures witnesses send (rate-limited and written in batches).

use super::replica::Alert;
use super::*;
use cairn_index::model::ExternalModel;

/// Cosignatures waiting to be written; more are dropped.
pub const COSIG_QUEUE: usize = 4096;
/// How long the cosignature writer gathers before one transaction.
pub const COSIG_FLUSH: std::time::Duration = std::time::Duration::from_millis(100);

/// Writes queued cosignatures in batches until every sender is gone.
pub(crate) async fn cosig_writer(
    state: std::sync::Arc<crate::store::State>,
    mut rx: tokio::sync::mpsc::Receiver<crate::store::CosigRow>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + COSIG_FLUSH;
        while batch.len() < 1024 {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(r)) => batch.push(r),
                _ => break,
            }
        }
        let st = state.clone();
        match tokio::task::spawn_blocking(move || st.put_cosigs(&batch)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "storing cosignatures failed"),
            Err(e) => tracing::warn!(error = %e, "cosignature writer task failed"),
        }
    }
}

impl Engine {
    /// Makes `ns` on this node a replica of `owner`'s namespace `ns` (idempotent).
    pub async fn follow(
        &self,
        ns: &str,
        owner: [u8; 32],
        model: Option<ExternalModel>,
    ) -> Result<Arc<Space>, NodeError> {
        validate::namespace(ns)?;
        if owner == self.key.verifying_key().to_bytes() {
            return Err(NodeError::invalid(
                "from",
                "that is this node's own id; a node cannot follow itself",
            ));
        }
        if let Some(a) = self.halted(ns, &owner) {
            return Err(NodeError::FailedPrecondition(format!(
                "following {} on {ns:?} is halted: it signed two different roots for seq {} ({} and {}); see `cairn alerts`",
                hex::encode(owner),
                a.roots[0].record.seq,
                hex::encode(a.roots[0].record.hash()),
                hex::encode(a.roots[1].record.hash()),
            )));
        }
        let _g = self.create.lock().await;
        if let Some(why) = self.quarantined.get(ns) {
            return Err(NodeError::FailedPrecondition(why.clone()));
        }
        if let Ok(s) = self.space(ns) {
            return match s.owner {
                Some(o) if o == owner && s.external() == model.as_ref() => Ok(s),
                Some(o) if o == owner => Err(NodeError::FailedPrecondition(format!(
                    "namespace {ns:?} is already followed with model {}; `cairn unfollow --ns {ns}` first to \
                     follow it with another",
                    s.external()
                        .map_or_else(|| "(this node's)".to_owned(), ExternalModel::label)
                ))),
                Some(o) => Err(NodeError::FailedPrecondition(format!(
                    "namespace {ns:?} already follows {}",
                    hex::encode(o)
                ))),
                None => Err(NodeError::FailedPrecondition(format!(
                    "namespace {ns:?} is owned by this node; cannot also follow it"
                ))),
            };
        }
        let st = self.state.clone();
        let name = ns.to_owned();
        let m = model.clone();
        tokio::task::spawn_blocking(move || st.set_follow(&name, owner, m.as_ref())).await??;
        let dir = self
            .cfg
            .data_dir
            .join("hnsw")
            .join(super::space::dir_name(ns));
        let space = Arc::new(
            Space::replica(ns.to_owned(), dir, owner, Vec::new(), Vec::new(), None)
                .map_err(|e| NodeError::Task(e.to_string()))?
                .with_model(model),
        );
        self.spaces
            .write()
            .map_err(|_| NodeError::Task("namespace table poisoned".into()))?
            .insert(ns.to_owned(), space.clone());
        tracing::info!(namespace = %ns, owner = %hex::encode(owner), "following");
        Ok(space)
    }

    /// Followed namespaces with their owners.
    pub fn follows(&self) -> Vec<(String, [u8; 32])> {
        self.spaces
            .read()
            .map(|m| {
                m.values()
                    .filter_map(|s| s.owner.map(|o| (s.name.clone(), o)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Namespaces this node owns.
    pub fn owned(&self) -> Vec<String> {
        self.spaces
            .read()
            .map(|m| {
                m.values()
                    .filter(|s| s.owner.is_none())
                    .map(|s| s.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.cfg.data_dir
    }

    /// The blob store (served to peers, filled by downloads).
    pub fn blob_store(&self) -> iroh_blobs::store::fs::FsStore {
        self.blobs.store().clone()
    }

    /// The blob store with its collection rules (for files this node offers beside its records).
    pub fn blobs(&self) -> crate::blobs::Blobs {
        self.blobs.clone()
    }

    /// Known peers.
    pub async fn peers(&self) -> Result<Vec<([u8; 32], String)>, NodeError> {
        let st = self.state.clone();
        Ok(tokio::task::spawn_blocking(move || st.peers()).await??)
    }

    /// Removes a peer: no longer asked for replicas, and its cosignatures are no longer kept (unless it is a
    /// pinned witness). False if it was not a peer.
    pub async fn remove_peer(&self, id: [u8; 32]) -> Result<bool, NodeError> {
        let st = self.state.clone();
        Ok(tokio::task::spawn_blocking(move || st.remove_peer(id)).await??)
    }

    /// Revocation ids recorded so far (loaded at start-up by access control).
    pub fn revoked_tokens(&self) -> Result<Vec<Vec<u8>>, NodeError> {
        Ok(self.state.revoked()?)
    }

    /// Records a token revocation durably.
    pub async fn revoke_token(&self, id: Vec<u8>) -> Result<(), NodeError> {
        let st = self.state.clone();
        let now = super::now_ms();
        Ok(tokio::task::spawn_blocking(move || st.revoke(&id, now)).await??)
    }

    /// Stops following `ns` and deletes what this node holds of it: rows, roots, cosignatures, the kept snapshot,
    /// the saved graph, and (by unpinning them for the next collection) the record and pack blobs. The state
    /// file is rewritten at the next scrub pass. Returns how many points (memories and tombstones) went.
    pub async fn unfollow(&self, ns: &str) -> Result<u64, NodeError> {
        validate::namespace(ns)?;
        let _g = self.create.lock().await;
        let space = self.space(ns)?;
        let Some(owner) = space.owner else {
            return Err(NodeError::FailedPrecondition(format!(
                "namespace {ns:?} is owned by this node, not a replica; Unfollow drops replicas only (use Forget)"
            )));
        };
        // Wait for any catch-up step in flight, then make sure none writes for this namespace again.
        let _w = space.write.lock().await;
        space
            .dropped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.spaces
            .write()
            .map_err(|_| NodeError::Task("namespace table poisoned".into()))?
            .remove(ns);
        // The saved graph goes first: a kill before the rows commit below leaves the replica intact but for its
        // saved graph, which a restart rebuilds from the rows; after the commit nothing would delete it.
        let dir = self
            .cfg
            .data_dir
            .join("hnsw")
            .join(super::space::dir_name(ns));
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(NodeError::Task(format!(
                    "cannot delete {}: {e}",
                    dir.display()
                )))
            }
        }
        let st = self.state.clone();
        let name = ns.to_owned();
        let dropped =
            tokio::task::spawn_blocking(move || st.drop_namespace(&name, owner)).await??;
        // A kill before these two is repaired at start-up (orphan snapshot pins and queued blob deletes).
        self.blobs.drop_snapshot(ns).await?;
        if let Ok(mut m) = self.snapshots.lock() {
            m.remove(ns);
        }
        self.finish_blob_deletes().await?;
        tracing::info!(namespace = %ns, owner = %hex::encode(owner), dropped, "unfollowed");
        Ok(dropped)
    }

    /// Adds or updates a peer.
    pub async fn put_peer(&self, id: [u8; 32], addrs: &str) -> Result<(), NodeError> {
        let st = self.state.clone();
        let addrs = addrs.to_owned();
        Ok(tokio::task::spawn_blocking(move || st.put_peer(id, &addrs)).await??)
    }

    /// Keeps evidence that `owner` signed two roots for one seq of `ns`, which halts following (owner, ns) at
    /// once and after every restart. Evidence for a seq already on record is not stored again. Returns true if
    /// the evidence was new.
    pub async fn record_equivocation(
        &self,
        ns: &str,
        owner: &[u8; 32],
        ours: &SignedRoot,
        theirs: &SignedRoot,
    ) -> bool {
        let alert = Alert {
            owner: *owner,
            namespace: ns.to_owned(),
            roots: [ours.clone(), theirs.clone()],
        };
        {
            let Ok(mut all) = self.alerts.lock() else {
                return false;
            };
            let seq = ours.record.seq;
            if all
                .iter()
                .any(|a| a.namespace == ns && a.owner == *owner && a.roots[0].record.seq == seq)
            {
                return false;
            }
            all.push(alert.clone());
        }
        let b = alert.encode();
        let st = self.state.clone();
        match tokio::task::spawn_blocking(move || st.put_alert(&b)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot store an alert"),
            Err(e) => tracing::error!(error = %e, "cannot store an alert"),
        }
        true
    }

    /// The evidence that halts following `owner`'s `ns`, if any.
    pub fn halted(&self, ns: &str, owner: &[u8; 32]) -> Option<Alert> {
        self.alerts
            .lock()
            .ok()?
            .iter()
            .find(|a| a.namespace == ns && a.owner == *owner)
            .cloned()
    }

    /// Valid cosignatures this node holds for `root`.
    pub async fn cosigs(&self, root: &cairn_index::root::RootRecord) -> Vec<crate::store::Cosig> {
        let st = self.state.clone();
        let (owner, ns, seq) = (root.node_id, root.namespace.clone(), root.seq);
        let all = tokio::task::spawn_blocking(move || st.cosigs(owner, &ns, seq))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        all.into_iter()
            .filter(|(w, sig)| cairn_index::root::verify_cosig(root, w, sig))
            .collect()
    }

    /// Stores a cosignature if it is valid for the root this node holds at that seq and comes from a key this
    /// node has reason to keep: its own, a peer's, or a witness pinned with `--witness`. Returns false when this
    /// node does not hold that root (yet), the signature does not check, or the key is unknown (anyone can mint
    /// keys; storing their cosignatures would let any gossip member fill the disk). Others' cosignatures are
    /// written in batches (one transaction per [`COSIG_FLUSH`]), at most `--max-cosigs-per-sec` per
    /// witness, through a queue of [`COSIG_QUEUE`]; beyond those they are dropped (cosignatures are advisory:
    /// a witness that keeps seeing the root sends them again), and true is returned.
    pub async fn add_cosig(
        &self,
        owner: [u8; 32],
        ns: &str,
        seq: u64,
        witness: [u8; 32],
        sig: [u8; 64],
    ) -> bool {
        if witness != self.node_key()
            && !self.cfg.witnesses.contains(&witness)
            && !self
                .peers()
                .await
                .is_ok_and(|p| p.iter().any(|(id, _)| *id == witness))
        {
            return false;
        }
        let st = self.state.clone();
        let name = ns.to_owned();
        let root = tokio::task::spawn_blocking(move || st.root_at(&name, seq))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        let Some(root) = root else { return false };
        if root.record.node_id != owner
            || !cairn_index::root::verify_cosig(&root.record, &witness, &sig)
        {
            return false;
        }
        let st = self.state.clone();
        if witness == self.node_key() {
            // The node's own cosignature (one per verified root) is stored at once: clients ask for it next.
            let name = ns.to_owned();
            return tokio::task::spawn_blocking(move || {
                st.put_cosig(owner, &name, seq, witness, sig)
            })
            .await
            .is_ok_and(|r| r.is_ok());
        }
        let name = ns.to_owned();
        if tokio::task::spawn_blocking(move || st.has_cosig(owner, &name, seq, witness))
            .await
            .is_ok_and(|r| r.unwrap_or(false))
        {
            return true;
        }
        if !self.cosig_budget(&witness) {
            tracing::debug!(witness = %hex::encode(witness), "cosignature dropped: over the per-witness rate");
            return true;
        }
        let row = crate::store::CosigRow {
            owner,
            ns: ns.to_owned(),
            seq,
            witness,
            sig,
        };
        if self.cosig_tx.try_send(row).is_err() {
            tracing::debug!("cosignature dropped: the write queue is full");
        }
        true
    }

    /// Takes one unit of `witness`'s cosignature budget (`--max-cosigs-per-sec`); false when spent.
    pub(super) fn cosig_budget(&self, witness: &[u8; 32]) -> bool {
        let Ok(mut b) = self.cosig_rates.lock() else {
            return false;
        };
        let now = std::time::Instant::now();
        if b.len() > 4096 {
            b.retain(|_, (t, _)| now.duration_since(*t) < std::time::Duration::from_secs(1));
        }
        let e = b.entry(*witness).or_insert((now, 0));
        if now.duration_since(e.0) >= std::time::Duration::from_secs(1) {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1 <= self.cfg.cosigs_per_sec
    }

    /// Every alert this node recorded, oldest first.
    pub fn alerts(&self) -> Vec<Alert> {
        self.alerts.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// This node's public key bytes.
    pub fn node_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The signing key (for cosignatures).
    pub fn signing_key(&self) -> &ed25519_dalek::SigningKey {
        &self.key
    }
}
