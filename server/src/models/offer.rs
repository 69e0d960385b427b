//! The offer: the model this node runs (and the runtime library it loaded), built once from its directory, copied
//! into the blob store on the first ask (if the disk keeps its floor), and answered over `cairn/model/1`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_index::model_offer::{self, OfferedFile, OfferedModel};
use iroh::protocol::{AcceptError, ProtocolHandler};

use crate::embed::check_manifest;

use super::*;

/// The model (and runtime) a node offers to peers. Its files go into the node's blob store on the first ask, not
/// at start-up, so a node nobody asks spends nothing on it.
pub struct Shelf {
    pub(super) blobs: crate::blobs::Blobs,
    pub(super) model_dir: PathBuf,
    pub(super) ort_lib: PathBuf,
    /// The data dir (whose disk receives the copies) and the free space it must keep (`--min-free-mb`).
    pub(super) floor: (PathBuf, u64),
    pub(super) offer: tokio::sync::OnceCell<Option<OfferedModel>>,
}

impl std::fmt::Debug for Shelf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shelf")
            .field("model_dir", &self.model_dir)
            .finish()
    }
}

impl Shelf {
    /// A shelf offering the model in `model_dir` and the runtime library `ort_lib`, stored in `blobs`. The copies
    /// are made only if the disk of `data_dir` keeps `min_free_bytes` free after them (the node's write floor).
    pub fn new(
        blobs: crate::blobs::Blobs,
        model_dir: PathBuf,
        ort_lib: PathBuf,
        data_dir: PathBuf,
        min_free_bytes: u64,
    ) -> Self {
        Shelf {
            blobs,
            model_dir,
            ort_lib,
            floor: (data_dir, min_free_bytes),
            offer: tokio::sync::OnceCell::new(),
        }
    }

    /// The offer, building it on first use: the manifest is checked, every file is added to the blob store under
    /// a `model-` tag, and the runtime library is added beside it. None if the model directory does not check
    /// (logged); the node then offers nothing.
    pub async fn offer(&self) -> Option<&OfferedModel> {
        self.offer
            .get_or_init(|| async {
                match self.build().await {
                    Ok(o) => {
                        tracing::info!(model = %hex::encode(o.hash), files = o.files.len(), "offering the model to peers");
                        Some(o)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot offer the model to peers");
                        None
                    }
                }
            })
            .await
            .as_ref()
    }

    async fn build(&self) -> Result<OfferedModel, ModelError> {
        let raw = tokio::fs::read(self.model_dir.join("manifest.json"))
            .await
            .map_err(io(format!("{}/manifest.json", self.model_dir.display())))?;
        let checked = check_manifest(&raw).map_err(|reason| ModelError::Io {
            what: format!("{}/manifest.json", self.model_dir.display()),
            reason,
        })?;
        let hash = checked.info.hash;
        let hex_hash = hex::encode(hash);
        // The copies must not take the disk below the node's write floor.
        let mut need: u64 = 0;
        for name in checked
            .files
            .keys()
            .map(|n| self.model_dir.join(n))
            .chain([self.ort_lib.clone()])
        {
            need = need.saturating_add(tokio::fs::metadata(&name).await.map_or(0, |m| m.len()));
        }
        let (dir, floor) = &self.floor;
        let st = rustix::fs::statvfs(dir).map_err(|e| ModelError::Io {
            what: format!("free space of {}", dir.display()),
            reason: e.to_string(),
        })?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        if free < floor.saturating_add(need) {
            return Err(ModelError::Io {
                what: format!("copying the model into {}", dir.display()),
                reason: format!(
                    "{} MiB free, the model needs {} MiB and the node keeps {} MiB free (--min-free-mb)",
                    free >> 20,
                    need >> 20,
                    floor >> 20
                ),
            });
        }
        let mut files = Vec::new();
        for name in checked.files.keys() {
            let path = self.model_dir.join(name);
            files.push(
                self.add(&path, name, &format!("model-{hex_hash}-{name}"))
                    .await?,
            );
        }
        if let Some(file) = self.ort_lib.file_name().and_then(|f| f.to_str()) {
            let name = format!("runtime/{}/{file}", platform());
            if self.ort_lib.is_file() && model_offer::allowed_name(&name) {
                let tag = format!("model-runtime-{}-{file}", platform());
                files.push(self.add(&self.ort_lib, &name, &tag).await?);
            }
        }
        Ok(OfferedModel {
            hash,
            manifest: raw,
            files,
        })
    }

    async fn add(&self, path: &Path, name: &str, tag: &str) -> Result<OfferedFile, ModelError> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(io(path.display().to_string()))?
            .len();
        let blake3 = self
            .blobs
            .add_file_tagged(path, tag)
            .await
            .map_err(|e| ModelError::Io {
                what: path.display().to_string(),
                reason: e.to_string(),
            })?;
        Ok(OfferedFile {
            name: name.to_owned(),
            blake3,
            size,
        })
    }

    /// True if every hash is a file of the offer (built already): such blobs are served to any peer.
    pub fn serves(&self, hashes: &[[u8; 32]]) -> bool {
        match self.offer.get() {
            Some(Some(o)) => {
                !hashes.is_empty()
                    && hashes
                        .iter()
                        .all(|h| o.files.iter().any(|f| &f.blake3 == h))
            }
            _ => false,
        }
    }
}

/// Answers `cairn/model/1` asks from any peer: the offer of the model asked for (or every model), nothing else.
#[derive(Debug, Clone)]
pub struct ServeModels(pub Arc<Shelf>);

impl ProtocolHandler for ServeModels {
    async fn accept(&self, connection: iroh::endpoint::Connection) -> Result<(), AcceptError> {
        loop {
            let (mut send, mut recv) = match connection.accept_bi().await {
                Ok(s) => s,
                Err(_) => return Ok(()),
            };
            let req = recv.read_to_end(64).await.map_err(AcceptError::from_err)?;
            let models: Vec<OfferedModel> = match model_offer::decode_ask(&req) {
                Ok(want) => match self.0.offer().await {
                    Some(o) if want.is_none_or(|w| w == o.hash) => vec![o.clone()],
                    _ => Vec::new(),
                },
                Err(_) => Vec::new(),
            };
            let reply = model_offer::encode_reply(&models).unwrap_or_else(|_| {
                model_offer::encode_reply(&[]).unwrap_or_else(|_| model_offer::REPLY_MAGIC.to_vec())
            });
            send.write_all(&reply)
                .await
                .map_err(AcceptError::from_err)?;
            send.finish()?;
        }
    }
}
