//! Private replication: which peers may fetch a namespace. The owner keeps grants (`cairn share`: a namespace
//! prefix and a peer's node id) and signs, per namespace, a grant set naming the peers it allows
//! (`cairn_index::grants`). Replicas fetch that signed set with the namespace and re-serve the namespace only to
//! the peers it names. The sync handler and the blob server ask [`Engine::may_serve`] / [`Engine::blobs_allowed`]
//! before answering anything.

use cairn_index::grants::{GrantSet, SignedGrantSet};
use cairn_index::validate;

use super::{now_ms, Engine};
use crate::error::NodeError;

impl Engine {
    /// Grants (`on`) or withdraws `peer`'s access to the namespaces under `prefix` (canonical; empty: all).
    /// Returns whether anything changed.
    pub async fn set_grant(
        &self,
        prefix: &str,
        peer: [u8; 32],
        on: bool,
    ) -> Result<bool, NodeError> {
        if !prefix.is_empty() {
            validate::namespace(prefix)?;
        }
        if peer == self.node_key() {
            return Err(NodeError::invalid("node_id", "that is this node's own id"));
        }
        if iroh::PublicKey::from_bytes(&peer).is_err() {
            return Err(NodeError::invalid("node_id", "not a valid node id"));
        }
        let st = self.state.clone();
        let p = prefix.to_owned();
        let (changed, _) =
            tokio::task::spawn_blocking(move || st.set_grant(&p, peer, on, now_ms())).await??;
        Ok(changed)
    }

    /// Whether `id` is one of this node's peers (`cairn peer add`).
    pub async fn is_peer(&self, id: &[u8; 32]) -> bool {
        self.peers()
            .await
            .map(|p| p.iter().any(|(k, _)| k == id))
            .unwrap_or(false)
    }

    /// The owner's grants, as (prefix, peer).
    pub async fn grants(&self) -> Result<Vec<(String, [u8; 32])>, NodeError> {
        let st = self.state.clone();
        Ok(tokio::task::spawn_blocking(move || st.grants()).await??)
    }

    /// The grant set this node holds for (`owner`, `ns`): freshly signed for a namespace it owns, the newest one
    /// seen for a replica. `None` if it holds the namespace under another owner, or not at all.
    pub async fn grant_set(&self, ns: &str, owner: [u8; 32]) -> Option<SignedGrantSet> {
        let space = self.space(ns).ok()?;
        let st = self.state.clone();
        match space.owner {
            None if owner == self.node_key() => {
                let name = ns.to_owned();
                let (grants, version) = tokio::task::spawn_blocking(move || {
                    Ok::<_, crate::store::StoreError>((st.grants()?, st.grants_version()?))
                })
                .await
                .ok()?
                .ok()?;
                let peers = grants
                    .into_iter()
                    .filter(|(p, _)| crate::auth::token::covers(p, &name))
                    .map(|(_, peer)| peer)
                    .collect();
                Some(GrantSet::new(owner, ns, version, peers).sign(self.signing_key()))
            }
            Some(o) if o == owner => {
                let name = ns.to_owned();
                let bytes = tokio::task::spawn_blocking(move || st.replica_grants(&name))
                    .await
                    .ok()?
                    .ok()??;
                SignedGrantSet::decode(&bytes).ok()
            }
            _ => None,
        }
    }

    /// Whether `peer` may fetch (`owner`, `ns`) from this node: the owner's grants say so (here, or in the
    /// owner-signed set this replica holds). Signs nothing: the blob gate asks this for every namespace held.
    pub async fn may_serve(&self, peer: &[u8; 32], ns: &str, owner: [u8; 32]) -> bool {
        let Ok(space) = self.space(ns) else {
            return false;
        };
        let st = self.state.clone();
        let (name, peer) = (ns.to_owned(), *peer);
        match space.owner {
            None if owner == self.node_key() => tokio::task::spawn_blocking(move || {
                st.grants().map(|g| {
                    g.iter()
                        .any(|(p, who)| *who == peer && crate::auth::token::covers(p, &name))
                })
            })
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false),
            // The owner may always read back its own roots (its start-up check against restored data dirs).
            Some(o) if o == owner && peer == owner => true,
            Some(o) if o == owner => self
                .grant_set(ns, owner)
                .await
                .is_some_and(|g| g.set.allows(&peer)),
            _ => false,
        }
    }

    /// Keeps a grant set for replica namespace `ns` if it is the owner's, for this namespace, and newer than the
    /// one held. Returns whether it was kept.
    pub async fn install_grants(
        &self,
        ns: &str,
        owner: [u8; 32],
        bytes: &[u8],
    ) -> Result<bool, NodeError> {
        let g = SignedGrantSet::decode(bytes)
            .map_err(|e| NodeError::invalid("grants", e.to_string()))?;
        if g.set.owner != owner || g.set.namespace != ns {
            return Err(NodeError::invalid(
                "grants",
                "grant set of another owner or namespace",
            ));
        }
        let space = self.space(ns)?;
        if space.owner != Some(owner) {
            return Ok(false);
        }
        if let Some(held) = self.grant_set(ns, owner).await {
            if held.set.version >= g.set.version {
                return Ok(false);
            }
        }
        let st = self.state.clone();
        let (name, b) = (ns.to_owned(), bytes.to_vec());
        tokio::task::spawn_blocking(move || st.set_replica_grants(&name, &b)).await??;
        tracing::info!(namespace = %ns, version = g.set.version, peers = g.set.peers.len(), "grant set updated");
        Ok(true)
    }

    /// Whether `peer` may fetch all of `hashes` as blobs: each must be a live memory record or the kept snapshot
    /// (with its parts, when `with_children`) of a namespace this node may serve to `peer`.
    pub async fn blobs_allowed(
        &self,
        peer: [u8; 32],
        hashes: &[[u8; 32]],
        with_children: bool,
    ) -> bool {
        let me = self.node_key();
        let held: Vec<(String, [u8; 32])> = self
            .spaces
            .read()
            .map(|m| {
                m.values()
                    .map(|s| (s.name.clone(), s.owner.unwrap_or(me)))
                    .collect()
            })
            .unwrap_or_default();
        let mut servable = Vec::new();
        for (ns, owner) in held {
            if self.may_serve(&peer, &ns, owner).await {
                servable.push(ns);
            }
        }
        if servable.is_empty() || hashes.is_empty() {
            return false;
        }
        let st = self.state.clone();
        let hashes = hashes.to_vec();
        tokio::task::spawn_blocking(move || -> Result<bool, crate::store::StoreError> {
            let mut found = vec![false; hashes.len()];
            for ns in &servable {
                let snap = st.snapshot(ns)?.map(|k| k.hash);
                let live = st.has_memories(ns, &hashes)?;
                for (i, h) in hashes.iter().enumerate() {
                    found[i] |= snap == Some(*h) || (!with_children && live[i]);
                }
            }
            Ok(found.iter().all(|f| *f))
        })
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(false)
    }
}
