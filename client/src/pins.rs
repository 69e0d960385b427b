//! Pins: what a client trusts and what it has seen, kept in memory or in a JSON file.
//!
//! - the node id (the ed25519 key that signs roots) to trust per node address, pinned on first contact (for a
//!   replica namespace, its owner's id, pinned per address and namespace);
//! - the TLS certificate fingerprint per `https://` address;
//! - the newest root accepted per (node id, namespace), as (seq, root hash), for the freshness rule
//!   ([`crate::verify`]: a lower seq is a rollback, the same seq with another hash an equivocation) and for
//!   walking the signed chain across a gap.
//!
//! The file is the one the `cairn` CLI and the Python SDK keep (`roots.json`, same shape:
//! `{"nodes": {addr: id, "addr ns": owner}, "roots": {"id/ns": {"seq", "hash"}}, "tls": {addr: sha256}}`),
//! so the three share one verify-and-pin state. Every change is written atomically (temp file, fsync, rename).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::verify::{parse_node_id, LastSeen, Verified};
use crate::CairnClient;

/// Most roots [`PinStore::check_chain`] fetches to link a new root to the last one seen; a longer gap is only
/// checked for seq order (as the Python SDK does).
pub const MAX_CHAIN: u64 = 1000;

#[derive(Debug, Default, Serialize, Deserialize)]
struct PinFile {
    /// node address → pinned node id (hex); "address namespace" → a replica namespace's owner.
    #[serde(default)]
    nodes: BTreeMap<String, String>,
    /// "node_id/namespace" → newest root seen.
    #[serde(default)]
    roots: BTreeMap<String, SeenRoot>,
    /// node address (https) → pinned certificate fingerprint (SHA-256, hex).
    #[serde(default)]
    tls: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SeenRoot {
    seq: u64,
    hash: String,
}

/// Why pins could not be read, written or checked.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The pin file could not be read or written.
    #[error("cannot {what} {path}: {source}")]
    Io {
        /// "read", "write" or "create".
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The pin file does not parse, or holds a malformed id or hash.
    #[error("trust state {path} is damaged: {reason}")]
    Damaged {
        /// The file (empty for an in-memory store).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A call to the node failed.
    #[error(transparent)]
    Node(#[from] crate::Error),
    /// The node's roots do not link the last root seen to the new one.
    #[error("verification failed: {0}")]
    Verification(String),
}

/// How [`PinStore::node_id`] chose the node id it returned (a caller tells its user about first contacts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    /// The caller named it.
    Given,
    /// Pinned before.
    Pinned,
    /// First contact: the node's own id, pinned from now on.
    FirstContact,
    /// First contact with a replica namespace: its owner's id, pinned for (address, namespace) from now on.
    FirstContactReplica,
}

/// Pins held in memory, and in a file when opened from one.
#[derive(Debug, Default)]
pub struct PinStore {
    path: Option<PathBuf>,
    state: PinFile,
}

impl PinStore {
    /// Pins kept in memory only (nothing survives the process).
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Where the CLI keeps its pins: `$CAIRN_STATE`, else `$XDG_STATE_HOME/cairn/roots.json`, else
    /// `~/.local/state/cairn/roots.json`.
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("CAIRN_STATE").filter(|v| !v.is_empty()) {
            return PathBuf::from(p);
        }
        let base = std::env::var_os("XDG_STATE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into()))
                    .join(".local/state")
            });
        base.join("cairn/roots.json")
    }

    /// Loads the pins in `path` (a missing file is an empty store, created at the first change).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, PinError> {
        let path = path.into();
        let state = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| PinError::Damaged {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => PinFile::default(),
            Err(source) => {
                return Err(PinError::Io {
                    what: "read",
                    path,
                    source,
                })
            }
        };
        Ok(PinStore {
            path: Some(path),
            state,
        })
    }

    /// The file the pins are kept in, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn damaged(&self, reason: String) -> PinError {
        PinError::Damaged {
            path: self.path.clone().unwrap_or_default(),
            reason,
        }
    }

    fn parse_pinned(&self, hex: &str) -> Result<[u8; 32], PinError> {
        parse_node_id(hex).map_err(|e| self.damaged(e.to_string()))
    }

    /// The node id to trust for `ns` on `node_url`: `given` if the caller named one; else the one pinned for
    /// (address, namespace) or for the address; else, on first contact, the namespace owner's id when the
    /// node holds `ns` as a replica (its answers are signed by the owner), or the node's own id, pinned from
    /// now on.
    pub async fn node_id(
        &mut self,
        node_url: &str,
        ns: &str,
        given: Option<[u8; 32]>,
        client: &CairnClient,
    ) -> Result<([u8; 32], Chosen), PinError> {
        if let Some(id) = given {
            return Ok((id, Chosen::Given));
        }
        let ns_key = format!("{node_url} {ns}");
        if let Some(pinned) = self.state.nodes.get(&ns_key) {
            return Ok((self.parse_pinned(pinned)?, Chosen::Pinned));
        }
        let owner = client
            .list_namespaces()
            .await?
            .into_iter()
            .find(|n| n.namespace == ns && !n.owner.is_empty())
            .map(|n| n.owner);
        if let Some(owner) = owner {
            let id = parse_node_id(&owner)
                .map_err(|e| PinError::Verification(format!("owner id: {e}")))?;
            self.state.nodes.insert(ns_key, owner);
            self.save()?;
            return Ok((id, Chosen::FirstContactReplica));
        }
        if let Some(pinned) = self.state.nodes.get(node_url) {
            return Ok((self.parse_pinned(pinned)?, Chosen::Pinned));
        }
        let info = client.node_info().await?;
        let id = parse_node_id(&info.node_id)
            .map_err(|e| PinError::Verification(format!("node id: {e}")))?;
        self.state.nodes.insert(node_url.to_owned(), info.node_id);
        self.save()?;
        Ok((id, Chosen::FirstContact))
    }

    /// The certificate fingerprint pinned for `node_url`, if any.
    pub fn tls_pin(&self, node_url: &str) -> Option<String> {
        self.state.tls.get(node_url).cloned()
    }

    /// Pins `fingerprint` for `node_url` (first contact).
    pub fn pin_tls(&mut self, node_url: &str, fingerprint: &str) -> Result<(), PinError> {
        self.state
            .tls
            .insert(node_url.to_owned(), fingerprint.to_owned());
        self.save()
    }

    /// The newest root seen from `node_id` for `ns`.
    pub fn last_seen(&self, node_id: &[u8; 32], ns: &str) -> Result<Option<LastSeen>, PinError> {
        let key = format!("{}/{ns}", hex::encode(node_id));
        match self.state.roots.get(&key) {
            None => Ok(None),
            Some(s) => {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(&s.hash, &mut hash)
                    .map_err(|e| self.damaged(format!("root hash of {key}: {e}")))?;
                Ok(Some(LastSeen { seq: s.seq, hash }))
            }
        }
    }

    /// Checks that `v`'s root extends the last root seen through an unbroken prev-hash chain, fetching the
    /// roots in between from the node (at most [`MAX_CHAIN`]; a longer gap is only checked for seq order).
    pub async fn check_chain(
        &self,
        client: &CairnClient,
        v: &Verified,
        ns: &str,
    ) -> Result<(), PinError> {
        let Some(last) = self.last_seen(&v.root.record.node_id, ns)? else {
            return Ok(());
        };
        let seq = v.seq();
        if seq <= last.seq.saturating_add(1) || seq - last.seq > MAX_CHAIN {
            // Adjacent (its prev link is checked by `check_fresh` when the answer is verified) or too far to walk.
            return Ok(());
        }
        let mut chain = Vec::new();
        for s in last.seq + 1..seq {
            let r = client.root(ns, Some(s)).await?;
            chain.push(
                cairn_index::root::SignedRoot::decode(&r.signed)
                    .map_err(|e| PinError::Verification(format!("root {s}: {e}")))?,
            );
        }
        cairn_index::proof::check_fresh(&v.root, Some(&last), &chain)
            .map_err(|e| PinError::Verification(e.to_string()))
    }

    /// The whole verify-and-pin step for one answer from `ns`: runs `verify` (one of [`crate::verify`]'s
    /// checks) against the trusted node id and the last root seen, walks the signed chain from that root to the
    /// answer's, and records the answer's root as the newest seen.
    pub async fn verify(
        &mut self,
        client: &CairnClient,
        ns: &str,
        trusted: &[u8; 32],
        verify: impl FnOnce(
            &[u8; 32],
            Option<&LastSeen>,
        ) -> Result<Verified, cairn_index::proof::VerifyError>,
    ) -> Result<Verified, PinError> {
        let v = self.check(client, ns, trusted, verify).await?;
        self.saw(&v, ns)?;
        Ok(v)
    }

    /// [`PinStore::verify`] without recording the root: for a caller that checks more before it trusts the
    /// answer (witnesses, an anchor, the query's embedding) and calls [`PinStore::saw`] only when all pass, so
    /// an answer that fails a later check never becomes the root later answers must descend from. The CLI's
    /// `--verify` works this way.
    pub async fn check(
        &self,
        client: &CairnClient,
        ns: &str,
        trusted: &[u8; 32],
        verify: impl FnOnce(
            &[u8; 32],
            Option<&LastSeen>,
        ) -> Result<Verified, cairn_index::proof::VerifyError>,
    ) -> Result<Verified, PinError> {
        let last = self.last_seen(trusted, ns)?;
        let v =
            verify(trusted, last.as_ref()).map_err(|e| PinError::Verification(e.to_string()))?;
        self.check_chain(client, &v, ns).await?;
        Ok(v)
    }

    /// Records a verified root as the newest seen for `ns` (if it is newer).
    pub fn saw(&mut self, v: &Verified, ns: &str) -> Result<(), PinError> {
        let key = format!("{}/{ns}", v.node_id_hex());
        let seq = v.seq();
        if self.state.roots.get(&key).is_some_and(|s| s.seq >= seq) {
            return Ok(());
        }
        self.state.roots.insert(
            key,
            SeenRoot {
                seq,
                hash: hex::encode(v.root.record.hash()),
            },
        );
        self.save()
    }

    /// Writes the pins to their file (temp file, fsync, rename), if they have one.
    fn save(&self) -> Result<(), PinError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |what: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| PinError::Io { what, path, source }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        }
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| self.damaged(format!("cannot encode: {e}")))?;
        let mut f = std::fs::File::create(&tmp).map_err(io("write", &tmp))?;
        f.write_all(&bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io("write", path))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file round-trips, keeps the shape the CLI and the Python SDK read, and a damaged file is an error,
    /// not an empty store (which would trust the next node anew).
    #[test]
    fn pins_round_trip_and_a_damaged_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("cairn-pins-{}", std::process::id()));
        let path = dir.join("sub/roots.json");
        let mut p = PinStore::open(&path).expect("open missing");
        assert!(p.tls_pin("https://a").is_none());
        p.pin_tls("https://a", "ab").expect("pin");
        let back = PinStore::open(&path).expect("reopen");
        assert_eq!(back.tls_pin("https://a").as_deref(), Some("ab"));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        for k in ["nodes", "roots", "tls"] {
            assert!(json.get(k).is_some(), "{k} missing from {json}");
        }
        std::fs::write(&path, b"{not json").expect("damage");
        assert!(matches!(
            PinStore::open(&path),
            Err(PinError::Damaged { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
