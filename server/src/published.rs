//! The highest root this node has published per namespace, kept **outside** the data dir (by default under
//! `~/.local/state/cairn/published/<node id>/`). A data dir restored from an older copy holds older roots than
//! the node already signed and served; signing on from there would give two different roots for one seq, which
//! clients and replicas report as equivocation. At start-up the engine compares each namespace's latest stored
//! root with this record and refuses writes to a namespace that would fork (see `--allow-fork`).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the record could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("published-seq record {path}: {source}")]
pub struct PublishedError {
    /// The file or directory.
    pub path: String,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// The per-namespace record of the latest published (seq, root hash) of one node.
#[derive(Debug, Clone)]
pub struct Published {
    dir: PathBuf,
}

/// The default base directory: `$XDG_STATE_HOME/cairn/published` or `~/.local/state/cairn/published`.
pub fn default_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("cairn/published");
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".local/state/cairn/published")
}

impl Published {
    /// The record of node `node_id` under `base` (created if absent).
    pub fn open(base: &Path, node_id: &str) -> Result<Self, PublishedError> {
        let dir = base.join(node_id);
        std::fs::create_dir_all(&dir).map_err(|source| PublishedError {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Published { dir })
    }

    fn file(&self, ns: &str) -> PathBuf {
        self.dir
            .join(hex::encode(&blake3::hash(ns.as_bytes()).as_bytes()[..16]))
    }

    /// The latest (seq, root hash) published for `ns`, if recorded. A damaged record reads as none.
    pub fn get(&self, ns: &str) -> Result<Option<(u64, [u8; 32])>, PublishedError> {
        let path = self.file(ns);
        match std::fs::read(&path) {
            Ok(b) if b.len() == 40 => {
                let mut seq = [0u8; 8];
                seq.copy_from_slice(&b[..8]);
                let mut hash = [0u8; 32];
                hash.copy_from_slice(&b[8..]);
                Ok(Some((u64::from_be_bytes(seq), hash)))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(PublishedError {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Durably records that (seq, hash) of `ns` is about to become visible.
    pub fn record(&self, ns: &str, seq: u64, hash: &[u8; 32]) -> Result<(), PublishedError> {
        let path = self.file(ns);
        let err = |source| PublishedError {
            path: path.display().to_string(),
            source,
        };
        let mut b = [0u8; 40];
        b[..8].copy_from_slice(&seq.to_be_bytes());
        b[8..].copy_from_slice(hash);
        let mut f = std::fs::File::create(&path).map_err(err)?;
        f.write_all(&b).map_err(err)?;
        f.sync_data().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_per_namespace() -> Result<(), PublishedError> {
        let dir = tempfile::tempdir().map_err(|source| PublishedError {
            path: "tempdir".into(),
            source,
        })?;
        let p = Published::open(dir.path(), "ab")?;
        assert_eq!(p.get("a/b")?, None);
        p.record("a/b", 7, &[1; 32])?;
        p.record("c", 2, &[2; 32])?;
        p.record("a/b", 8, &[3; 32])?;
        assert_eq!(p.get("a/b")?, Some((8, [3; 32])));
        assert_eq!(p.get("c")?, Some((2, [2; 32])));
        std::fs::write(p.file("c"), b"torn").map_err(|source| PublishedError {
            path: "c".into(),
            source,
        })?;
        assert_eq!(p.get("c")?, None);
        Ok(())
    }
}
