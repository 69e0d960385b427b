//! Fetching a model from peers: ask each peer for its offer, check the manifest against the hash asked for and the
//! pins, download into a temporary blob store, check every file, and install into the cache.

use std::path::{Path, PathBuf};

use cairn_index::model_offer::{self, OfferedFile, OfferedModel};
use iroh::address_lookup::MemoryLookup;
use iroh::endpoint::{presets, PortmapperConfig};
use iroh::{Endpoint, EndpointAddr, PublicKey, RelayMode, SecretKey, TransportAddr};
use iroh_blobs::protocol::GetManyRequest;
use iroh_blobs::Hash;

use crate::embed::{check_manifest, sha256_file};
use crate::p2p::ticket::Ticket;

use super::*;

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
pub(super) struct Scratch(pub(super) PathBuf, #[allow(dead_code)] std::fs::File);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Prefix of every scratch directory's name in the cache.
pub(super) const SCRATCH_PREFIX: &str = ".scratch-";

/// The lock file inside a scratch directory.
pub(super) const SCRATCH_LOCK: &str = ".lock";

pub(super) fn scratch(cache: &Path, what: &str) -> Result<Scratch, ModelError> {
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
pub(super) fn sweep_scratch(cache: &Path) -> usize {
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
pub(super) async fn endpoint(peers: &[Ticket]) -> Result<Endpoint, ModelError> {
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
pub(super) async fn ask(
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

pub(super) fn check_pinned(hash: &[u8; 32], allowed: Option<&[u8; 32]>) -> Result<(), ModelError> {
    if pinned(hash).is_some() || allowed == Some(hash) {
        Ok(())
    } else {
        Err(ModelError::Unpinned {
            hash: hex::encode(hash),
        })
    }
}

/// What one peer led to: a model installed, or a refusal that no other peer can change.
pub(super) enum Step {
    Done(Fetched),
    Refused(ModelError),
}

/// Asks one peer and, if its offer checks, downloads, checks and installs the model. `Err` skips the peer.
pub(super) async fn from_peer(
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
pub(super) fn runtime_pin() -> Option<&'static PinnedRuntime> {
    let p = platform();
    PINNED_RUNTIMES.iter().find(|r| r.platform == p)
}

/// True if `<cache>/ort` already holds the pinned runtime.
pub(super) fn runtime_ok(ort_dir: &Path, pin: &PinnedRuntime) -> bool {
    sha256_file(&ort_dir.join(pin.file)).is_ok_and(|h| h == pin.sha256)
}

/// Downloads the files from one peer into the temporary store (each blob BLAKE3-verified as it streams).
pub(super) async fn download(
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
pub(super) async fn export(
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
pub(super) fn install(stage: &Path, dir: &Path) -> std::io::Result<()> {
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
pub(super) fn install_runtime(
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
