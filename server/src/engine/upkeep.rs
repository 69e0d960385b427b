//! Upkeep: statistics, index saves, the forget scrub, and shutdown.

use super::*;

impl Engine {
    /// Counts for one namespace or all.
    pub fn stats(&self, ns: Option<&str>) -> Result<Vec<SpaceStats>, NodeError> {
        match ns {
            Some(ns) => Ok(vec![self.space(ns)?.stats()]),
            None => Ok(self
                .spaces
                .read()
                .map_err(|_| NodeError::Task("namespace table poisoned".into()))?
                .values()
                .map(|s| s.stats())
                .collect()),
        }
    }

    /// Saves every namespace's graph that changed since its last save.
    pub async fn save_indexes(&self) {
        self.save_where(|sp| sp.needs_save()).await;
    }

    /// One scrub pass (every `--scrub-secs`): rewrites the saved graphs that still hold forgotten vectors, then,
    /// if anything was forgotten since the last pass, the state file (see [`State::vacuum`]). After it, nothing
    /// of a memory forgotten before the pass began is left in the node's files.
    pub async fn scrub(&self) -> Result<(), NodeError> {
        self.save_where(|sp| sp.dump_stale()).await;
        let st = self.state.clone();
        if !tokio::task::spawn_blocking(move || st.scrub_due()).await?? {
            return Ok(());
        }
        let now = std::time::Instant::now();
        if self
            .next_vacuum
            .lock()
            .is_ok_and(|g| g.is_some_and(|t| now < t))
        {
            return Ok(());
        }
        let st = self.state.clone();
        let t0 = std::time::Instant::now();
        let v = tokio::task::spawn_blocking(move || st.vacuum()).await??;
        let took = t0.elapsed();
        if let Ok(mut g) = self.next_vacuum.lock() {
            *g = Some(std::time::Instant::now() + took * VACUUM_SPACING);
        }
        metrics::counter!("cairn_vacuum_total").increment(1);
        metrics::counter!("cairn_vacuum_bytes_freed_total")
            .increment(v.before.saturating_sub(v.after));
        tracing::info!(
            ms = took.as_millis() as u64,
            bytes_before = v.before,
            bytes_after = v.after,
            "state file rewritten without forgotten data"
        );
        Ok(())
    }

    pub(super) async fn save_where(&self, wanted: impl Fn(&Space) -> bool) {
        let spaces: Vec<Arc<Space>> = match self.spaces.read() {
            Ok(s) => s.values().cloned().collect(),
            Err(_) => return,
        };
        for sp in spaces {
            if !wanted(&sp) {
                continue;
            }
            let _w = sp.write.lock().await;
            if sp.dropped.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            let s = sp.clone();
            match tokio::task::spawn_blocking(move || s.save()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(namespace = %sp.name, error = %e, "index save failed"),
                Err(e) => {
                    tracing::warn!(namespace = %sp.name, error = %e, "index save task failed")
                }
            }
        }
    }

    /// Waits for writes in progress (refusing new ones), then saves indexes and closes the blob store.
    pub async fn shutdown(&self) {
        *self.gate.write().await = true;
        self.save_indexes().await;
        if let Err(e) = self.scrub().await {
            tracing::warn!(error = %e, "scrub at shutdown failed; it runs again at the next start");
        }
        if let Err(e) = self.blobs.shutdown().await {
            tracing::warn!(error = %e, "blob store shutdown");
        }
    }
}

/// A vacuum waits at least this many times the previous one's duration after it (see `Engine::scrub`).
const VACUUM_SPACING: u32 = 10;
