//! The CLI's trust state: which node id each node address was pinned to, and the newest root seen per
//! (node id, namespace), kept in a small JSON file (`$CAIRN_STATE`, else `$XDG_STATE_HOME/cairn/roots.json`,
//! else `~/.local/state/cairn/roots.json`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use cairn_client::verify::{parse_node_id, LastSeen, Verified};
use cairn_client::CairnClient;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    /// node address → pinned node id (hex).
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

/// The loaded trust state.
pub struct Trust {
    path: PathBuf,
    state: StateFile,
}

fn state_path() -> PathBuf {
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

impl Trust {
    /// Loads the state file (an absent file is an empty state).
    pub fn load() -> Result<Self> {
        let path = state_path();
        let state = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("trust state {} is damaged", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(Trust { path, state })
    }

    /// The node id to trust for `node_url`: `--trust` if given (and it must agree with a pinned one), else the
    /// pinned one, else the node's own on first contact (recorded, with a warning).
    pub async fn node_id(
        &mut self,
        node_url: &str,
        ns: &str,
        flag: Option<&str>,
        client: &CairnClient,
    ) -> Result<[u8; 32]> {
        if let Some(t) = flag {
            let id = parse_node_id(t).map_err(|e| anyhow::anyhow!("--trust: {e}"))?;
            return Ok(id);
        }
        // A replica's answers are signed by the namespace's owner: pin the owner for (node, namespace).
        let ns_key = format!("{node_url} {ns}");
        if let Some(pinned) = self.state.nodes.get(&ns_key) {
            return parse_node_id(pinned).map_err(|e| anyhow::anyhow!("trust state: {e}"));
        }
        let owner = client
            .list_namespaces()
            .await?
            .into_iter()
            .find(|n| n.namespace == ns && !n.owner.is_empty())
            .map(|n| n.owner);
        if let Some(owner) = owner {
            let id = parse_node_id(&owner).map_err(|e| anyhow::anyhow!("owner id: {e}"))?;
            eprintln!(
                "warning: first contact with {ns} on {node_url}, a replica: trusting its owner's node id {owner} from now on (pass --trust to pin it yourself)"
            );
            self.state.nodes.insert(ns_key, owner);
            self.save()?;
            return Ok(id);
        }
        if let Some(pinned) = self.state.nodes.get(node_url) {
            return parse_node_id(pinned).map_err(|e| anyhow::anyhow!("trust state: {e}"));
        }
        let info = client.node_info().await?;
        let id = parse_node_id(&info.node_id).map_err(|e| anyhow::anyhow!("node id: {e}"))?;
        eprintln!(
            "warning: first contact with {node_url}: trusting node id {} from now on (pass --trust to pin it yourself)",
            info.node_id
        );
        self.state.nodes.insert(node_url.to_owned(), info.node_id);
        self.save()?;
        Ok(id)
    }

    /// The certificate fingerprint pinned for `node_url`, if any.
    pub fn tls_pin(&self, node_url: &str) -> Option<String> {
        self.state.tls.get(node_url).cloned()
    }

    /// Pins `fingerprint` for `node_url` (first contact).
    pub fn pin_tls(&mut self, node_url: &str, fingerprint: &str) -> Result<()> {
        self.state
            .tls
            .insert(node_url.to_owned(), fingerprint.to_owned());
        self.save()
    }

    /// The newest root seen from `node_id` for `ns`.
    pub fn last_seen(&self, node_id: &[u8; 32], ns: &str) -> Result<Option<LastSeen>> {
        let key = format!("{}/{ns}", hex::encode(node_id));
        match self.state.roots.get(&key) {
            None => Ok(None),
            Some(s) => {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(&s.hash, &mut hash).context("trust state: bad root hash")?;
                Ok(Some(LastSeen { seq: s.seq, hash }))
            }
        }
    }

    /// Checks that `v`'s root extends the last root seen through an unbroken prev-hash chain, fetching the
    /// roots in between from the node (at most 1,000; a longer gap is only checked for seq order).
    pub async fn check_chain(&self, client: &CairnClient, v: &Verified, ns: &str) -> Result<()> {
        let Some(last) = self.last_seen(&v.root.record.node_id, ns)? else {
            return Ok(());
        };
        let seq = v.seq();
        if seq <= last.seq.saturating_add(1) || seq - last.seq > 1000 {
            // Adjacent (its prev link is checked by `check_fresh` when the answer is verified) or too far to walk.
            return Ok(());
        }
        let mut chain = Vec::new();
        for s in last.seq + 1..seq {
            let r = client.root(ns, Some(s)).await?;
            chain.push(
                cairn_index::root::SignedRoot::decode(&r.signed)
                    .map_err(|e| anyhow::anyhow!("verification failed: root {s}: {e}"))?,
            );
        }
        cairn_index::proof::check_fresh(&v.root, Some(&last), &chain)
            .map_err(|e| anyhow::anyhow!("verification failed: {e}"))
    }

    /// Records a verified root as the newest seen (if it is newer).
    pub fn saw(&mut self, v: &Verified, ns: &str) -> Result<()> {
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

    fn save(&self) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&self.state)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(())
    }
}

/// Fails with a one-line reason if a node id given on the command line is malformed.
pub fn check_trust_flag(flag: Option<&str>) -> Result<()> {
    if let Some(t) = flag {
        if parse_node_id(t).is_err() {
            bail!("--trust {t:?} is not a node id (64 hex characters)");
        }
    }
    Ok(())
}
