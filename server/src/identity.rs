//! The node's identity: an ed25519 key kept in the data dir (`node.key`, mode 0600), made on first start.
//! Its public half is the node id that signs every root (and, later, the node's iroh endpoint id).

use std::io::Write;
use std::path::Path;

use ed25519_dalek::SigningKey;

/// File name of the key in the data dir.
pub const KEY_FILE: &str = "node.key";

/// Why the key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// I/O on the key file.
    #[error("node key {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The key file is gone from a data dir that already holds state signed with it.
    #[error(
        "node key {0} is missing, but the data dir already holds state signed with it; restore the key file \
         (a new key would be a new identity that peers and clients do not trust)"
    )]
    Missing(String),
    /// The file is not a 32-byte key.
    #[error("node key {0} is damaged (expected 32 bytes)")]
    Damaged(String),
}

/// Loads the node key from `data_dir`, creating it (0600) if absent and `fresh` (the data dir holds no state
/// yet). A data dir with state and no key is an error, never a silent new identity.
pub fn load_or_create(data_dir: &Path, fresh: bool) -> Result<SigningKey, IdentityError> {
    let path = data_dir.join(KEY_FILE);
    let shown = path.display().to_string();
    let io = |source| IdentityError::Io {
        path: shown.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let arr: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| IdentityError::Damaged(shown.clone()))?;
            Ok(SigningKey::from_bytes(&arr))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !fresh => {
            Err(IdentityError::Missing(shown.clone()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(io)?;
            let secret: [u8; 32] = rand::random();
            write_private(&path, &secret).map_err(io)?;
            tracing::info!(path = %shown, "created node key");
            Ok(SigningKey::from_bytes(&secret))
        }
        Err(e) => Err(io(e)),
    }
}

/// Writes a secret file readable by its owner only (mode 0600): a temporary file, fsync, rename, so a crash
/// leaves the old file or the new one, never half of one.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// The node id (hex public key) of a key.
pub fn node_id_hex(key: &SigningKey) -> String {
    hex::encode(key.verifying_key().to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path(), true).unwrap();
        let b = load_or_create(dir.path(), false).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        assert!(matches!(
            load_or_create(dir.path(), false),
            Err(IdentityError::Damaged(_))
        ));
        std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        assert!(matches!(
            load_or_create(dir.path(), false),
            Err(IdentityError::Missing(_))
        ));
    }
}
