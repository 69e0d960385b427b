//! Embedding models by hash, from peers: a node offers the model it runs (and the ONNX Runtime library it loaded)
//! over `cairn/model/1`, named by the identity hash its roots commit, and serves the files as ordinary iroh
//! blobs; another node fetches them from any peer holding them, checks every file against the manifest and the
//! manifest against the hash it asked for and against the pins compiled in here, and installs the model into its
//! cache (docs/PROOFS.md, "Model collections").
//!
//! Trust: nothing a peer says is believed. The offer's manifest must hash to the identity asked for; every file
//! must have the sha256 the manifest lists (the BLAKE3 blob transfer only proves the peer sent what it named); the
//! identity must be pinned below, or named by the operator (`--allow-unpinned HASH`); a runtime library must
//! have a pinned sha256 for this platform. A peer that fails any check is skipped and the next one is asked.

mod fetch;
mod offer;
#[cfg(test)]
mod tests;

pub use fetch::{ensure, fetch, list_remote, FetchRequest, Fetched, ModelSource};
pub use offer::{ServeModels, Shelf};

use std::path::{Path, PathBuf};
use std::time::Duration;

/// ALPN of the model protocol.
pub const MODEL_ALPN: &[u8] = b"cairn/model/1";

/// A model a node accepts from peers without the operator naming it: its identity (hex) and the directory under
/// the cache's `models/` it is installed in (where `scripts/provision-model` puts it, so `cairn serve` finds it).
#[derive(Debug, Clone, Copy)]
pub struct PinnedModel {
    /// Identity hash, hex.
    pub hash: &'static str,
    /// Directory under `<cache>/models`.
    pub dir: &'static str,
}

/// The models pinned into this binary: all-MiniLM-L6-v2 as `scripts/provision-model` exports it, fp32 and int8.
pub const PINNED_MODELS: &[PinnedModel] = &[
    PinnedModel {
        hash: "69e6cc71e6e77d601e8334200340a84d456d4f5bb17bba4cc051ae402723d793",
        dir: "all-minilm-l6-v2",
    },
    PinnedModel {
        hash: "e0948eea779adacfaaaf79d8b0f143d109fcfc43096a62056cd9e948ef44038b",
        dir: "all-minilm-l6-v2-int8",
    },
];

/// An ONNX Runtime library a node installs from a peer: platform (`<os>-<arch>`), file name, sha256, version.
#[derive(Debug, Clone, Copy)]
pub struct PinnedRuntime {
    /// `std::env::consts::OS`-`ARCH`.
    pub platform: &'static str,
    /// File name under `<cache>/ort`.
    pub file: &'static str,
    /// sha256, hex.
    pub sha256: &'static str,
    /// ONNX Runtime version.
    pub version: &'static str,
}

/// The runtimes pinned into this binary: the library `scripts/provision-model` takes from the onnxruntime wheel.
pub const PINNED_RUNTIMES: &[PinnedRuntime] = &[PinnedRuntime {
    platform: "linux-x86_64",
    file: "libonnxruntime.so",
    sha256: "6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f",
    version: "1.32.0",
}];

/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one peer may take to answer an ask.
const ASK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one peer may take to deliver a model's files.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// This machine's platform name, as runtime entries are named: `<os>-<arch>` (`linux-x86_64`).
pub fn platform() -> String {
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

/// The pin of a model identity, if this binary has one.
pub fn pinned(hash: &[u8; 32]) -> Option<&'static PinnedModel> {
    let h = hex::encode(hash);
    PINNED_MODELS.iter().find(|p| p.hash == h)
}

/// Parses a model hash given on the command line (64 hex digits).
pub fn parse_hash(s: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out)
        .map_err(|_| format!("{s:?} is not a model hash (64 hex digits)"))?;
    Ok(out)
}

/// Why a model could not be offered, fetched or installed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model is neither pinned in this binary nor named by the operator.
    #[error(
        "model {hash} is not pinned in this build of cairn; refusing it. If you trust it, name it: \
         --allow-unpinned {hash}"
    )]
    Unpinned {
        /// The model's identity, hex.
        hash: String,
    },
    /// No peer gave a model that passed every check.
    #[error("no peer gave the model: {}", .tried.iter().map(|(p, r)| format!("{p}: {r}")).collect::<Vec<_>>().join("; "))]
    NoPeer {
        /// Each peer asked, with why it was skipped.
        tried: Vec<(String, String)>,
    },
    /// A local file or directory operation failed.
    #[error("{what}: {reason}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// The endpoint or the temporary blob store could not start.
    #[error("cannot start the fetch: {0}")]
    Start(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ModelError {
    let what = what.into();
    move |e| ModelError::Io {
        what,
        reason: e.to_string(),
    }
}

/// The directory under `<cache>/models` a model is installed in.
pub fn install_dir(cache: &Path, hash: &[u8; 32]) -> PathBuf {
    let models = cache.join("models");
    match pinned(hash) {
        Some(p) => models.join(p.dir),
        None => models.join(format!("model-{}", &hex::encode(hash)[..16])),
    }
}

/// A model directory in the cache.
#[derive(Debug, Clone)]
pub struct LocalModel {
    /// The directory.
    pub dir: PathBuf,
    /// Its identity and label, or why it does not check.
    pub model: Result<([u8; 32], String), String>,
    /// True if this binary pins it.
    pub pinned: bool,
}

/// The model directories under `<cache>/models`, each fully checked (every file against its manifest).
pub fn list_local(cache: &Path) -> Vec<LocalModel> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cache.join("models"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("manifest.json").is_file())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let model = crate::embed::load_files(&dir)
                .map(|(info, _)| (info.hash, info.id))
                .map_err(|e| e.to_string());
            let pinned = model.as_ref().is_ok_and(|(h, _)| pinned(h).is_some());
            LocalModel { dir, model, pinned }
        })
        .collect()
}
