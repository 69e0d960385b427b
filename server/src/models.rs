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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_index::model_offer::{self, OfferedFile, OfferedModel};
use iroh::address_lookup::MemoryLookup;
use iroh::endpoint::{presets, PortmapperConfig};
use iroh::protocol::{AcceptError, ProtocolHandler};
use iroh::{Endpoint, EndpointAddr, PublicKey, RelayMode, SecretKey, TransportAddr};
use iroh_blobs::protocol::GetManyRequest;
use iroh_blobs::Hash;

use crate::embed::{check_manifest, sha256_file};
use crate::p2p::ticket::Ticket;

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

/// The model (and runtime) a node offers to peers. Its files go into the node's blob store on the first ask, not
/// at start-up, so a node nobody asks spends nothing on it.
pub struct Shelf {
    blobs: crate::blobs::Blobs,
    model_dir: PathBuf,
    ort_lib: PathBuf,
    /// The data dir (whose disk receives the copies) and the free space it must keep (`--min-free-mb`).
    floor: (PathBuf, u64),
    offer: tokio::sync::OnceCell<Option<OfferedModel>>,
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

/// What to fetch, from whom, and where to put it.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// Peers to ask, in order.
    pub from: Vec<Ticket>,
    /// The model wanted (None: the one model the first answering peer offers).
    pub model: Option<[u8; 32]>,
    /// A model hash the operator accepts although this binary does not pin it.
    pub allow_unpinned: Option<[u8; 32]>,
    /// The cache root (`models/` and `ort/` below it).
    pub cache: PathBuf,
    /// Also install the peer's ONNX Runtime library when this machine has none at `<cache>/ort`.
    pub runtime: bool,
}

/// A model installed by [`fetch`].
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its identity.
    pub hash: [u8; 32],
    /// Its label (`all-MiniLM-L6-v2@69e6cc71e6e77d60`).
    pub id: String,
    /// Where it was installed.
    pub dir: PathBuf,
    /// The runtime library installed with it, if one was.
    pub runtime: Option<PathBuf>,
    /// The peer that gave it (hex node id).
    pub peer: String,
    /// Peers skipped before it, with why.
    pub skipped: Vec<(String, String)>,
}

/// A temporary directory removed when dropped. It holds an exclusive lock on its `.lock` file while it lives,
/// so a later fetch can tell the scratch of a fetch that was killed (lock free) from a running one's.
struct Scratch(PathBuf, #[allow(dead_code)] std::fs::File);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Prefix of every scratch directory's name in the cache.
const SCRATCH_PREFIX: &str = ".scratch-";

/// The lock file inside a scratch directory.
const SCRATCH_LOCK: &str = ".lock";

fn scratch(cache: &Path, what: &str) -> Result<Scratch, ModelError> {
    let nonce: u64 = rand::random();
    let dir = cache.join(format!("{SCRATCH_PREFIX}{what}-{nonce:016x}"));
    std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
    let lock = std::fs::File::create(dir.join(SCRATCH_LOCK))
        .map_err(io(format!("cannot create a lock in {}", dir.display())))?;
    lock.try_lock().map_err(|e| ModelError::Io {
        what: format!("cannot lock {}", dir.display()),
        reason: e.to_string(),
    })?;
    Ok(Scratch(dir, lock))
}

/// Removes the scratch directories that fetches killed midway (`kill -9`, power loss) left in the cache: those
/// whose lock no live process holds. Returns how many went.
fn sweep_scratch(cache: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(SCRATCH_PREFIX) {
            continue;
        }
        let dir = e.path();
        // A scratch being created has its lock within microseconds; one without a lock file is a leftover.
        let free = match std::fs::File::open(dir.join(SCRATCH_LOCK)) {
            Ok(f) => f.try_lock().is_ok(),
            Err(_) => true,
        };
        if free && std::fs::remove_dir_all(&dir).is_ok() {
            tracing::info!(dir = %dir.display(), "removed the scratch of an interrupted model fetch");
            removed += 1;
        }
    }
    removed
}

/// A local-only endpoint (no relay, no address lookup beyond the tickets given) with a fresh key.
async fn endpoint(peers: &[Ticket]) -> Result<Endpoint, ModelError> {
    let lookup = MemoryLookup::new();
    for t in peers {
        if let Ok(id) = PublicKey::from_bytes(&t.id) {
            lookup.add_endpoint_info(EndpointAddr::from_parts(
                id,
                t.addrs.iter().copied().map(TransportAddr::Ip),
            ));
        }
    }
    let unspecified: std::net::SocketAddr = ([0, 0, 0, 0], 0).into();
    Endpoint::builder(presets::Minimal)
        .relay_mode(RelayMode::Disabled)
        .portmapper_config(PortmapperConfig::Disabled)
        .secret_key(SecretKey::from_bytes(&rand::random()))
        .clear_ip_transports()
        .bind_addr(unspecified)
        .map_err(|e| ModelError::Start(e.to_string()))?
        .address_lookup(lookup)
        .bind()
        .await
        .map_err(|e| ModelError::Start(e.to_string()))
}

/// Asks one peer for its offers (of `model`, or all).
async fn ask(
    ep: &Endpoint,
    peer: &Ticket,
    model: Option<&[u8; 32]>,
) -> Result<Vec<OfferedModel>, String> {
    let id = PublicKey::from_bytes(&peer.id).map_err(|_| "not a valid node id".to_string())?;
    let exchange = async {
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, ep.connect(id, MODEL_ALPN))
            .await
            .map_err(|_| "no answer within 5 s".to_string())?
            .map_err(|e| format!("cannot connect: {e}"))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(&model_offer::encode_ask(model))
            .await
            .map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        let reply = recv
            .read_to_end(model_offer::MAX_REPLY)
            .await
            .map_err(|e| format!("reading the offer: {e}"))?;
        conn.close(0u32.into(), b"done");
        model_offer::decode_reply(&reply).map_err(|e| e.to_string())
    };
    tokio::time::timeout(ASK_TIMEOUT, exchange)
        .await
        .map_err(|_| "no offer within 30 s".to_string())?
}

/// Lists the models a peer offers: (identity, label, files).
pub async fn list_remote(
    peer: &Ticket,
) -> Result<Vec<(OfferedModel, Result<String, String>)>, ModelError> {
    let ep = endpoint(std::slice::from_ref(peer)).await?;
    let offers = ask(&ep, peer, None).await.map_err(|r| ModelError::NoPeer {
        tried: vec![(hex::encode(peer.id), r)],
    });
    ep.close().await;
    Ok(offers?
        .into_iter()
        .map(|o| {
            let label = check_manifest(&o.manifest).and_then(|c| {
                if c.info.hash == o.hash {
                    Ok(c.info.id)
                } else {
                    Err("its manifest does not hash to the offered id".into())
                }
            });
            (o, label)
        })
        .collect())
}

/// The directory under `<cache>/models` a model is installed in.
pub fn install_dir(cache: &Path, hash: &[u8; 32]) -> PathBuf {
    let models = cache.join("models");
    match pinned(hash) {
        Some(p) => models.join(p.dir),
        None => models.join(format!("model-{}", &hex::encode(hash)[..16])),
    }
}

/// Fetches a model from the first peer that gives one passing every check, and installs it (and, if asked and
/// missing, the runtime library). An unpinned model is refused before anything is downloaded, unless named by
/// `allow_unpinned`.
pub async fn fetch(req: &FetchRequest) -> Result<Fetched, ModelError> {
    if let Some(m) = &req.model {
        check_pinned(m, req.allow_unpinned.as_ref())?;
    }
    std::fs::create_dir_all(&req.cache)
        .map_err(io(format!("cannot create {}", req.cache.display())))?;
    sweep_scratch(&req.cache);
    let store_dir = scratch(&req.cache, "model-fetch")?;
    let store = iroh_blobs::store::fs::FsStore::load(&store_dir.0)
        .await
        .map_err(|e| ModelError::Start(e.to_string()))?;
    let ep = endpoint(&req.from).await?;
    let mut skipped: Vec<(String, String)> = Vec::new();
    let mut result = None;
    for peer in &req.from {
        let who = hex::encode(peer.id);
        match from_peer(&ep, &store, peer, req).await {
            Ok(Step::Done(mut f)) => {
                f.peer = who;
                f.skipped = std::mem::take(&mut skipped);
                result = Some(Ok(f));
                break;
            }
            Ok(Step::Refused(e)) => {
                result = Some(Err(e));
                break;
            }
            Err(reason) => {
                tracing::warn!(peer = %who, %reason, "model fetch: peer skipped");
                skipped.push((who, reason));
            }
        }
    }
    ep.close().await;
    let _ = store.shutdown().await;
    drop(store_dir);
    result.unwrap_or(Err(ModelError::NoPeer { tried: skipped }))
}

fn check_pinned(hash: &[u8; 32], allowed: Option<&[u8; 32]>) -> Result<(), ModelError> {
    if pinned(hash).is_some() || allowed == Some(hash) {
        Ok(())
    } else {
        Err(ModelError::Unpinned {
            hash: hex::encode(hash),
        })
    }
}

/// What one peer led to: a model installed, or a refusal that no other peer can change.
enum Step {
    Done(Fetched),
    Refused(ModelError),
}

/// Asks one peer and, if its offer checks, downloads, checks and installs the model. `Err` skips the peer.
async fn from_peer(
    ep: &Endpoint,
    store: &iroh_blobs::store::fs::FsStore,
    peer: &Ticket,
    req: &FetchRequest,
) -> Result<Step, String> {
    let offers = ask(ep, peer, req.model.as_ref()).await?;
    let offer = match &req.model {
        Some(m) => offers
            .into_iter()
            .find(|o| &o.hash == m)
            .ok_or_else(|| format!("does not offer model {}", hex::encode(m)))?,
        None => {
            let mut it = offers.into_iter();
            match (it.next(), it.next()) {
                (Some(o), None) => o,
                (None, _) => return Err("offers no model".into()),
                (Some(_), Some(_)) => {
                    return Err("offers several models; name one with --model HASH".into())
                }
            }
        }
    };
    let checked = check_manifest(&offer.manifest).map_err(|e| format!("bad manifest: {e}"))?;
    if checked.info.hash != offer.hash {
        return Err(format!(
            "its manifest hashes to {}, not to the model {} it claims",
            hex::encode(checked.info.hash),
            hex::encode(offer.hash)
        ));
    }
    if let Err(e) = check_pinned(&offer.hash, req.allow_unpinned.as_ref()) {
        return Ok(Step::Refused(e));
    }
    // Every file the manifest lists, and the runtime for this platform when one is wanted.
    let mut wanted: Vec<&OfferedFile> = Vec::new();
    for name in checked.files.keys() {
        let f = offer
            .files
            .iter()
            .find(|f| &f.name == name)
            .ok_or_else(|| format!("offers no {name}, which its manifest lists"))?;
        wanted.push(f);
    }
    let runtime_pin = runtime_pin();
    let ort_dir = req.cache.join("ort");
    let runtime = match runtime_pin {
        Some(pin) if req.runtime && !runtime_ok(&ort_dir, pin) => offer
            .files
            .iter()
            .find(|f| f.name == format!("runtime/{}/{}", pin.platform, pin.file)),
        _ => None,
    };
    wanted.extend(runtime);
    let total: u64 = wanted.iter().map(|f| f.size).sum();
    if total > 8 * model_offer::MAX_FILE_SIZE {
        return Err("offers more bytes than any model has".into());
    }
    download(ep, store, peer, &wanted).await?;
    // Check every file against the manifest before anything is installed.
    let stage = scratch(&req.cache, "model-stage").map_err(|e| e.to_string())?;
    for (name, sha) in &checked.files {
        let f = wanted
            .iter()
            .find(|f| &f.name == name)
            .ok_or("internal: file not wanted")?;
        let got = export(store, f, &stage.0.join(name)).await?;
        if &got != sha {
            return Err(format!(
                "its {name} has sha256 {got}, the manifest says {sha}: tampered or damaged"
            ));
        }
    }
    std::fs::write(stage.0.join("manifest.json"), &offer.manifest)
        .map_err(|e| format!("cannot write manifest.json: {e}"))?;
    // The same full check the node runs at start-up, on the staged copy.
    let (info, _) = crate::embed::load_files(&stage.0).map_err(|e| e.to_string())?;
    if info.hash != offer.hash {
        return Err("the staged model does not have the identity asked for".into());
    }
    // The runtime library is staged beside the model (outside the model's directory) until it checks.
    let runtime_stage = scratch(&req.cache, "runtime-stage").map_err(|e| e.to_string())?;
    let runtime_file = match (runtime, runtime_pin) {
        (Some(f), Some(pin)) => {
            let staged = runtime_stage.0.join(pin.file);
            let got = export(store, f, &staged).await?;
            if got != pin.sha256 {
                return Err(format!(
                    "its ONNX Runtime library has sha256 {got}, but {} is pinned for {}",
                    pin.sha256, pin.platform
                ));
            }
            Some(staged)
        }
        _ => None,
    };
    let dir = install_dir(&req.cache, &offer.hash);
    install(&stage.0, &dir).map_err(|e| e.to_string())?;
    let runtime = match (runtime_file, runtime_pin) {
        (Some(staged), Some(pin)) => Some(
            install_runtime(&ort_dir, pin, &staged, &hex::encode(peer.id))
                .map_err(|e| e.to_string())?,
        ),
        _ => None,
    };
    Ok(Step::Done(Fetched {
        hash: offer.hash,
        id: info.id,
        dir,
        runtime,
        peer: String::new(),
        skipped: Vec::new(),
    }))
}

/// The pinned runtime for this machine, if any.
fn runtime_pin() -> Option<&'static PinnedRuntime> {
    let p = platform();
    PINNED_RUNTIMES.iter().find(|r| r.platform == p)
}

/// True if `<cache>/ort` already holds the pinned runtime.
fn runtime_ok(ort_dir: &Path, pin: &PinnedRuntime) -> bool {
    sha256_file(&ort_dir.join(pin.file)).is_ok_and(|h| h == pin.sha256)
}

/// Downloads the files from one peer into the temporary store (each blob BLAKE3-verified as it streams).
async fn download(
    ep: &Endpoint,
    store: &iroh_blobs::store::fs::FsStore,
    peer: &Ticket,
    files: &[&OfferedFile],
) -> Result<(), String> {
    let id = PublicKey::from_bytes(&peer.id).map_err(|_| "not a valid node id".to_string())?;
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, ep.connect(id, iroh_blobs::ALPN))
        .await
        .map_err(|_| "no answer within 5 s".to_string())?
        .map_err(|e| format!("cannot connect: {e}"))?;
    let req: GetManyRequest = files.iter().map(|f| Hash::from_bytes(f.blake3)).collect();
    let got = tokio::time::timeout(
        DOWNLOAD_TIMEOUT,
        store.remote().execute_get_many(conn.clone(), req),
    )
    .await
    .map_err(|_| "download took longer than 600 s".to_string())?;
    conn.close(0u32.into(), b"done");
    got.map_err(|e| format!("download failed (a file did not match the hash it was offered under, or the peer refused): {e}"))?;
    Ok(())
}

/// Copies a downloaded file out of the temporary store to `target` (file to file, never whole in memory: an
/// offer may name files up to `MAX_FILE_SIZE`), checks it is complete and of the size offered, and returns its
/// sha256.
async fn export(
    store: &iroh_blobs::store::fs::FsStore,
    f: &OfferedFile,
    target: &Path,
) -> Result<String, String> {
    let target =
        std::path::absolute(target).map_err(|e| format!("cannot stage {}: {e}", f.name))?;
    let size = store
        .export(Hash::from_bytes(f.blake3), &target)
        .finish()
        .await
        .map_err(|e| format!("{} did not arrive whole: {e}", f.name))?;
    if size != f.size {
        return Err(format!(
            "its {} is {size} bytes, offered as {}",
            f.name, f.size
        ));
    }
    let name = f.name.clone();
    tokio::task::spawn_blocking(move || sha256_file(&target))
        .await
        .map_err(|e| format!("hashing {name} stopped: {e}"))?
        .map_err(|e| format!("cannot read the staged {name}: {e}"))
}

/// Replaces `dir` with the staged directory (renamed into place; a previous copy is moved aside first).
fn install(stage: &Path, dir: &Path) -> std::io::Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if dir.exists() {
        let old = dir.with_extension(format!("old-{:016x}", rand::random::<u64>()));
        std::fs::rename(dir, &old)?;
        std::fs::rename(stage, dir)?;
        std::fs::remove_dir_all(&old)?;
    } else {
        std::fs::rename(stage, dir)?;
    }
    Ok(())
}

/// Writes the runtime library and its manifest (the one `scripts/provision-model` writes) into `ort_dir`.
fn install_runtime(
    ort_dir: &Path,
    pin: &PinnedRuntime,
    staged: &Path,
    peer: &str,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(ort_dir)?;
    let path = ort_dir.join(pin.file);
    // Copied next to its place first (the stage may be on another file system in principle), then renamed.
    let tmp = ort_dir.join(format!(".{}.{:016x}", pin.file, rand::random::<u64>()));
    std::fs::copy(staged, &tmp)?;
    std::fs::rename(&tmp, &path)?;
    let manifest = serde_json::json!({
        "file": pin.file,
        "sha256": pin.sha256,
        "onnxruntime_version": pin.version,
        "source": format!("peer {peer} (cairn model fetch)"),
    });
    std::fs::write(ort_dir.join("manifest.json"), format!("{manifest:#}\n"))?;
    Ok(path)
}

/// Where `cairn serve --model-from` gets its model from.
#[derive(Debug, Clone, Default)]
pub struct ModelSource {
    /// Peers to fetch from, in order (none: use the configured model directory as it is).
    pub from: Vec<Ticket>,
    /// The model wanted.
    pub model: Option<[u8; 32]>,
    /// A model accepted although not pinned.
    pub allow_unpinned: Option<[u8; 32]>,
    /// The cache root models are installed under.
    pub cache: PathBuf,
}

/// For `cairn serve --model-from`: the model and runtime to run. The configured directory is used when it holds a
/// complete model (the wanted one, if named); else the wanted model installed in the cache; else the model is
/// fetched from the peers and installed. A missing runtime library is fetched too.
pub async fn ensure(
    mut cfg: crate::embed::EmbedConfig,
    src: &ModelSource,
) -> Result<crate::embed::EmbedConfig, ModelError> {
    if src.from.is_empty() {
        return Ok(cfg);
    }
    let identity = |dir: &Path| crate::embed::load_files(dir).ok().map(|(i, _)| i.hash);
    let have = identity(&cfg.model_dir);
    let mut need_model = match (have, src.model) {
        (Some(h), Some(w)) => h != w,
        (Some(_), None) => false,
        (None, _) => true,
    };
    if need_model {
        if let Some(w) = src.model {
            let d = install_dir(&src.cache, &w);
            if identity(&d) == Some(w) {
                cfg.model_dir = d;
                need_model = false;
            }
        }
    }
    let need_runtime = !cfg.ort_lib.is_file();
    if need_model || need_runtime {
        let f = fetch(&FetchRequest {
            from: src.from.clone(),
            model: src.model.or(if need_model { None } else { have }),
            allow_unpinned: src.allow_unpinned,
            cache: src.cache.clone(),
            runtime: need_runtime,
        })
        .await?;
        for (p, r) in &f.skipped {
            tracing::warn!(peer = %p, reason = %r, "model fetch: peer skipped");
        }
        tracing::info!(model = %f.id, peer = %f.peer, dir = %f.dir.display(), "model fetched from a peer");
        if need_model {
            cfg.model_dir = f.dir;
        }
        if let (true, Some(r)) = (need_runtime, f.runtime) {
            cfg.ort_lib = r;
        }
    }
    Ok(cfg)
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

#[cfg(test)]
mod tests {
    use super::*;
    use iroh::protocol::Router;

    /// A small stand-in model (not all-MiniLM, so only the generic manifest rules apply): file name → bytes.
    fn files(tag: &str) -> Vec<(&'static str, Vec<u8>)> {
        [
            "model.onnx",
            "tokenizer.json",
            "config.json",
            "special_tokens_map.json",
            "tokenizer_config.json",
        ]
        .into_iter()
        .map(|n| (n, format!("{tag} {n}").into_bytes()))
        .collect()
    }

    fn manifest(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let f: serde_json::Map<String, serde_json::Value> = files
            .iter()
            .map(|(n, b)| {
                (
                    n.to_string(),
                    serde_json::Value::String(crate::embed::sha256_hex(b)),
                )
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "name": "tiny", "dim": 4, "files": f }))
            .expect("json")
    }

    /// A peer on loopback answering `cairn/model/1` with `offer` and serving `blobs` as iroh blobs.
    async fn peer(offer: OfferedModel, blobs: &[Vec<u8>]) -> (Router, Ticket, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::blobs::Blobs::open(dir.path(), Duration::from_secs(3600))
            .await
            .expect("store");
        for b in blobs {
            store
                .store()
                .add_bytes(b.clone())
                .with_named_tag(format!("t-{}", blake3::hash(b).to_hex()))
                .await
                .expect("add");
        }
        let shelf = Shelf {
            blobs: store.clone(),
            model_dir: PathBuf::new(),
            ort_lib: PathBuf::new(),
            floor: (dir.path().to_owned(), 0),
            offer: tokio::sync::OnceCell::new_with(Some(Some(offer))),
        };
        let ep = endpoint(&[]).await.expect("endpoint");
        let t = Ticket {
            id: *ep.id().as_bytes(),
            addrs: ep
                .bound_sockets()
                .into_iter()
                .map(|a| ([127, 0, 0, 1], a.port()).into())
                .collect(),
        };
        let api: iroh_blobs::api::Store = store.store().clone().into();
        let router = Router::builder(ep)
            .accept(MODEL_ALPN, ServeModels(Arc::new(shelf)))
            .accept(iroh_blobs::ALPN, iroh_blobs::BlobsProtocol::new(&api, None))
            .spawn();
        (router, t, dir)
    }

    fn offer_of(files: &[(&str, Vec<u8>)], manifest: Vec<u8>, hash: [u8; 32]) -> OfferedModel {
        OfferedModel {
            hash,
            manifest,
            files: files
                .iter()
                .map(|(n, b)| OfferedFile {
                    name: n.to_string(),
                    blake3: *blake3::hash(b).as_bytes(),
                    size: b.len() as u64,
                })
                .collect(),
        }
    }

    /// Peers that lie about the model's identity or serve a file other than the manifest's are skipped; the next
    /// peer's model is installed; nothing of an unpinned model is fetched unless it is named.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lying_and_tampering_peers_are_skipped_and_unpinned_models_refused() {
        let good = files("good");
        let m = manifest(&good);
        let hash = check_manifest(&m).expect("manifest").info.hash;
        assert!(pinned(&hash).is_none());

        // A peer offering another model's manifest under this hash.
        let other = files("other");
        let (r1, liar, _d1) = peer(offer_of(&other, manifest(&other), hash), &[]).await;
        // A peer with the right manifest whose model.onnx is other bytes (its BLAKE3 matches what it offers).
        let mut tampered = good.clone();
        tampered[0].1 = b"tampered model".to_vec();
        let (r2, tamperer, _d2) = peer(
            offer_of(&tampered, m.clone(), hash),
            &tampered.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
        )
        .await;
        let (r3, honest, _d3) = peer(
            offer_of(&good, m.clone(), hash),
            &good.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
        )
        .await;

        let cache = tempfile::tempdir().expect("tempdir");
        let mut req = FetchRequest {
            from: vec![liar.clone(), tamperer.clone(), honest.clone()],
            model: Some(hash),
            allow_unpinned: None,
            cache: cache.path().to_owned(),
            runtime: false,
        };
        // Unpinned and not named: refused before anything is asked or installed.
        let e = fetch(&req).await.expect_err("unpinned");
        assert!(matches!(e, ModelError::Unpinned { .. }), "{e}");
        req.model = None;
        let e = fetch(&req).await.expect_err("unpinned");
        assert!(matches!(e, ModelError::Unpinned { .. }), "{e}");
        assert!(!cache.path().join("models").exists());

        req.model = Some(hash);
        req.allow_unpinned = Some(hash);
        let f = fetch(&req).await.expect("fetched from the honest peer");
        assert_eq!(f.peer, hex::encode(honest.id));
        assert_eq!(f.skipped.len(), 2, "{:?}", f.skipped);
        assert!(
            f.skipped[0].1.contains("manifest hashes to"),
            "{:?}",
            f.skipped
        );
        assert!(
            f.skipped[1].1.contains("tampered or damaged"),
            "{:?}",
            f.skipped
        );
        assert_eq!(f.dir, install_dir(cache.path(), &hash));
        for (n, b) in &good {
            assert_eq!(&std::fs::read(f.dir.join(n)).expect("installed file"), b);
        }
        let local = list_local(cache.path());
        assert_eq!(local.len(), 1);
        assert_eq!(local[0].model.as_ref().map(|(h, _)| *h), Ok(hash));
        // No scratch directories are left behind.
        let left: Vec<_> = std::fs::read_dir(cache.path())
            .expect("cache")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");

        // Only lying and tampering peers: nothing is installed over the good copy, and each is named.
        req.from = vec![liar, tamperer];
        match fetch(&req).await {
            Err(ModelError::NoPeer { tried }) => assert_eq!(tried.len(), 2),
            other => panic!("expected NoPeer, got {other:?}"),
        }
        for (n, b) in &good {
            assert_eq!(&std::fs::read(f.dir.join(n)).expect("still installed"), b);
        }
        for r in [r1, r2, r3] {
            let _ = r.shutdown().await;
        }
    }

    /// A node offers its model only while the copies leave the disk above the write floor; the offer then
    /// lists every manifest file with its BLAKE3 hash, and the blobs are pinned under `model-` tags.
    #[tokio::test]
    async fn the_offer_keeps_the_disk_floor() {
        let model = tempfile::tempdir().expect("tempdir");
        let fs = files("local");
        for (n, b) in &fs {
            std::fs::write(model.path().join(n), b).expect("write");
        }
        std::fs::write(model.path().join("manifest.json"), manifest(&fs)).expect("write");
        let data = tempfile::tempdir().expect("tempdir");
        let blobs =
            crate::blobs::Blobs::open(&data.path().join("blobs"), Duration::from_secs(3600))
                .await
                .expect("store");
        let no_ort = data.path().join("none.so");
        let full = Shelf::new(
            blobs.clone(),
            model.path().to_owned(),
            no_ort.clone(),
            data.path().to_owned(),
            u64::MAX / 2,
        );
        assert!(full.offer().await.is_none(), "offered below the floor");
        let model_tags = |b: crate::blobs::Blobs| async move {
            use futures::StreamExt;
            let tags = b.store().tags().list_prefix("model-").await.expect("tags");
            futures::pin_mut!(tags);
            let mut n = 0;
            while tags.next().await.is_some() {
                n += 1;
            }
            n
        };
        assert_eq!(
            model_tags(blobs.clone()).await,
            0,
            "nothing copied below the floor"
        );
        let shelf = Shelf::new(
            blobs.clone(),
            model.path().to_owned(),
            no_ort,
            data.path().to_owned(),
            0,
        );
        let offer = shelf.offer().await.expect("offered").clone();
        assert_eq!(offer.files.len(), fs.len());
        for (n, b) in &fs {
            let f = offer.files.iter().find(|f| f.name == *n).expect("listed");
            assert_eq!(f.blake3, *blake3::hash(b).as_bytes());
            assert!(shelf.serves(&[f.blake3]));
        }
        assert!(!shelf.serves(&[[9; 32]]));
        assert_eq!(model_tags(blobs.clone()).await, fs.len());
        assert!(!full.serves(&[offer.files[0].blake3]));
    }

    /// A fetch killed midway leaves its scratch directory; the next fetch removes it, but never the scratch of a
    /// fetch still running (its lock is held), nor anything else in the cache.
    #[test]
    fn scratch_left_by_a_killed_fetch_is_swept_and_a_live_one_kept() {
        let cache = tempfile::tempdir().expect("cache");
        let live = scratch(cache.path(), "model-fetch").expect("live scratch");
        // What kill -9 leaves: the directory and its lock file, the lock released with the process.
        let killed_dir = cache
            .path()
            .join(format!("{SCRATCH_PREFIX}model-stage-00000000000000aa"));
        std::fs::create_dir_all(&killed_dir).expect("dir");
        std::fs::write(killed_dir.join(SCRATCH_LOCK), b"").expect("lock file");
        std::fs::write(killed_dir.join("model.onnx"), b"half a model").expect("write");
        let unlocked = cache
            .path()
            .join(format!("{SCRATCH_PREFIX}runtime-stage-0"));
        std::fs::create_dir_all(&unlocked).expect("dir");
        std::fs::create_dir_all(cache.path().join("models/keep")).expect("models");
        assert_eq!(sweep_scratch(cache.path()), 2);
        assert!(!killed_dir.exists() && !unlocked.exists());
        assert!(live.0.exists(), "a running fetch's scratch was removed");
        assert!(cache.path().join("models/keep").exists());
        drop(live);
        assert_eq!(sweep_scratch(cache.path()), 0);
    }

    #[test]
    fn pins_and_hashes() {
        for p in PINNED_MODELS {
            let h = parse_hash(p.hash).expect("pin is a hash");
            assert!(pinned(&h).is_some());
        }
        assert!(parse_hash("zz").is_err());
        assert!(pinned(&[0; 32]).is_none());
        assert!(platform().contains('-'));
    }
}
