//! Local embeddings: all-MiniLM-L6-v2 (or a compatible model) through fastembed + ONNX Runtime, loaded from
//! a provisioned model directory and checked against its manifest before use.
//!
//! One worker thread owns the model. Callers queue texts in chunks of at most `max_batch`; the worker takes
//! what is queued (up to `max_batch` texts), sorts it by length to waste little padding, and embeds it 32 texts
//! per model call, so concurrent requests share model calls. Small jobs (a query, a single memory) go ahead of
//! bulk work, also between two model calls of a bulk batch, so a Recall waits for at most one model call behind
//! an import. The queue is bounded (a caller waits for room), a caller sends its next chunk only when the
//! previous one is done, and the worker skips chunks whose caller has gone: a cancelled request costs at most
//! the batch already under way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, OnceLock};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

/// The model's maximum input, in word pieces (sentence-transformers truncates all-MiniLM-L6-v2 at 256).
pub const MAX_SEQ_LEN: usize = 256;

/// sha256 of the all-MiniLM-L6-v2 weights the exporter must have started from.
pub const MINILM_SAFETENSORS_SHA256: &str =
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
/// sha256 of `model.onnx` as `scripts/export_onnx.py` writes it from the pinned weights (fp32, and int8 dynamic
/// per-channel quantisation).
pub const MINILM_ONNX_SHA256: &str =
    "a2031b59348530c0d236d39248fc68d35da6e9f18b9b66cc297819ac807570e3";
/// See [`MINILM_ONNX_SHA256`].
pub const MINILM_INT8_ONNX_SHA256: &str =
    "4f82efb225a2533b93bd26ee6ad17481caff062778aad18707eaf6f694cae0ba";
/// sha256 of the all-MiniLM-L6-v2 tokenizer.
pub const MINILM_TOKENIZER_SHA256: &str =
    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037";

/// Why the embedder cannot start or could not embed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model directory or one of its files is missing.
    #[error("embedding model not found: {0} (run scripts/provision-model, or point --model-dir / CAIRN_MODEL_DIR at a provisioned model)")]
    MissingModel(String),
    /// A model file does not match the manifest or the pinned hashes.
    #[error("embedding model at {dir} failed its integrity check: {reason} (re-run scripts/provision-model)")]
    BadModel {
        /// Model directory.
        dir: PathBuf,
        /// What did not match.
        reason: String,
    },
    /// The ONNX Runtime library could not be loaded.
    #[error("cannot load ONNX Runtime from {path}: {reason} (run scripts/provision-model, or set --ort-lib / ORT_DYLIB_PATH)")]
    Runtime {
        /// Library path tried.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// fastembed refused the model.
    #[error("cannot initialise the embedding model: {0}")]
    Init(String),
    /// The model call failed.
    #[error("embedding failed: {0}")]
    Embed(String),
    /// The worker thread is gone (the node is shutting down).
    #[error("embedder stopped")]
    Stopped,
}

#[derive(Deserialize)]
struct Manifest {
    name: String,
    dim: usize,
    #[serde(default)]
    max_seq_length: Option<usize>,
    files: BTreeMap<String, String>,
    #[serde(default)]
    source_safetensors_sha256: Option<String>,
    #[serde(default)]
    quantization: Option<String>,
}

/// What identifies the model: name, dimension and the hash of its exact files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Human name plus a short content hash, e.g. `all-MiniLM-L6-v2@1a2b3c4d5e6f7a8b`.
    pub id: String,
    /// Vector dimension.
    pub dim: usize,
    /// BLAKE3 over the sorted (file name, sha256) list of the model's files: the model's identity in roots.
    pub hash: [u8; 32],
}

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>,
}

/// Handle to the embedding worker. Cheap to clone.
#[derive(Clone)]
pub struct Embedder {
    tx: mpsc::Sender<Job>,
    info: ModelInfo,
    /// Texts queued or being embedded, at most four model calls' worth.
    room: std::sync::Arc<tokio::sync::Semaphore>,
    max_batch: usize,
}

/// How to find and run the model.
#[derive(Debug, Clone)]
pub struct EmbedConfig {
    /// Directory with model.onnx, tokenizer files and manifest.json.
    pub model_dir: PathBuf,
    /// libonnxruntime.so.
    pub ort_lib: PathBuf,
    /// Most texts per model call.
    pub max_batch: usize,
    /// ONNX Runtime intra-op threads (None: all cores).
    pub threads: Option<usize>,
}

static ORT_ENV: OnceLock<ort::environment::Environment> = OnceLock::new();

fn ort_environment(lib: &Path) -> Result<ort::environment::Environment, EmbedError> {
    if let Some(env) = ORT_ENV.get() {
        return Ok(env.clone());
    }
    let rt = |reason: String| EmbedError::Runtime {
        path: lib.to_owned(),
        reason,
    };
    if !lib.is_file() {
        return Err(rt("no such file".into()));
    }
    let env = ort::init_from(lib)
        .map_err(|e| rt(e.to_string()))?
        .with_name("cairn")
        .with_telemetry(false)
        .build()
        .map_err(|e| rt(e.to_string()))?;
    Ok(ORT_ENV.get_or_init(|| env).clone())
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// sha256 (lowercase hex) of a file, read in 1 MiB pieces: a file fetched from a peer can be as large as the
/// offer allows, and is never held whole in memory to be checked.
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// A model's manifest after [`check_manifest`]: its identity and the sha256 of each file, by name.
#[derive(Debug, Clone)]
pub struct CheckedManifest {
    /// Name, dimension and identity hash.
    pub info: ModelInfo,
    /// sha256 (lowercase hex) of every file the model needs, by file name.
    pub files: BTreeMap<String, String>,
}

/// Checks a model's `manifest.json` without reading the files it lists: the files a model needs are listed, names
/// are plain file names and hashes are sha256 hex, the sequence length is Cairn's, and the default model's pinned
/// files are the pinned ones. Returns the identity computed from the listed hashes. Used for a local model
/// directory and for a manifest a peer sent (before any file of it is trusted).
pub fn check_manifest(raw: &[u8]) -> Result<CheckedManifest, String> {
    let m: Manifest = serde_json::from_slice(raw).map_err(|e| format!("manifest.json: {e}"))?;
    for needed in [
        "model.onnx",
        "tokenizer.json",
        "config.json",
        "special_tokens_map.json",
        "tokenizer_config.json",
    ] {
        if !m.files.contains_key(needed) {
            return Err(format!("manifest lists no {needed}"));
        }
    }
    if m.files.len() > cairn_index::model_offer::MAX_FILES {
        return Err("manifest lists too many files".into());
    }
    for (name, sha) in &m.files {
        if name.contains('/') || !cairn_index::model_offer::allowed_name(name) {
            return Err(format!(
                "manifest names a file {name:?}; only plain file names are allowed"
            ));
        }
        if sha.len() != 64
            || !sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!(
                "manifest gives {name} a sha256 that is not 64 lowercase hex digits"
            ));
        }
    }
    if m.dim == 0 || m.dim > usize::from(cairn_index::model::MAX_DIM) {
        return Err(format!(
            "dim {} is outside 1..={}",
            m.dim,
            cairn_index::model::MAX_DIM
        ));
    }
    if m.max_seq_length.is_some_and(|n| n != MAX_SEQ_LEN) {
        return Err(format!("max_seq_length must be {MAX_SEQ_LEN}"));
    }
    if m.name == "all-MiniLM-L6-v2" {
        if m.files.get("tokenizer.json").map(String::as_str) != Some(MINILM_TOKENIZER_SHA256) {
            return Err("tokenizer.json is not the pinned all-MiniLM-L6-v2 tokenizer".into());
        }
        if m.source_safetensors_sha256.as_deref() != Some(MINILM_SAFETENSORS_SHA256) {
            return Err("model was not exported from the pinned all-MiniLM-L6-v2 weights".into());
        }
        let want_onnx = match m.quantization.as_deref() {
            None | Some("none") => MINILM_ONNX_SHA256,
            _ => MINILM_INT8_ONNX_SHA256,
        };
        if m.files.get("model.onnx").map(String::as_str) != Some(want_onnx) {
            return Err("model.onnx is not the pinned export of all-MiniLM-L6-v2".into());
        }
    }
    let hash = cairn_index::model::provisioned_model_hash(
        m.files.iter().map(|(n, s)| (n.as_str(), s.as_str())),
    );
    let suffix = match m.quantization.as_deref() {
        None | Some("none") => String::new(),
        Some(q) => format!("+{q}"),
    };
    Ok(CheckedManifest {
        info: ModelInfo {
            id: format!("{}{}@{}", m.name, suffix, &hex::encode(hash)[..16]),
            dim: m.dim,
            hash,
        },
        files: m.files,
    })
}

/// Reads and checks a model directory (its manifest, then every file against it); returns the model's info and
/// the file bytes.
pub fn load_files(dir: &Path) -> Result<(ModelInfo, BTreeMap<String, Vec<u8>>), EmbedError> {
    let bad = |reason: String| EmbedError::BadModel {
        dir: dir.to_owned(),
        reason,
    };
    let manifest_path = dir.join("manifest.json");
    let raw = std::fs::read(&manifest_path)
        .map_err(|e| EmbedError::MissingModel(format!("{}: {e}", manifest_path.display())))?;
    let checked = check_manifest(&raw).map_err(bad)?;
    let mut files = BTreeMap::new();
    for (name, want) in &checked.files {
        let path = dir.join(name);
        let bytes = std::fs::read(&path)
            .map_err(|e| EmbedError::MissingModel(format!("{}: {e}", path.display())))?;
        let got = sha256_hex(&bytes);
        if &got != want {
            return Err(bad(format!(
                "{name} has sha256 {got}, manifest says {want}"
            )));
        }
        files.insert(name.clone(), bytes);
    }
    Ok((checked.info, files))
}

impl Embedder {
    /// Checks the model files, loads ONNX Runtime and the model, and starts the worker thread.
    pub fn start(cfg: &EmbedConfig) -> Result<Self, EmbedError> {
        if !cfg.model_dir.is_dir() {
            return Err(EmbedError::MissingModel(format!(
                "{} is not a directory",
                cfg.model_dir.display()
            )));
        }
        let (info, mut te) = load_model(cfg)?;
        // One real call now, so a broken model fails at start-up rather than on the first request.
        let probe = te
            .embed(vec!["cairn start-up check"], Some(1))
            .map_err(|e| EmbedError::Init(e.to_string()))?;
        if probe.first().map(Vec::len) != Some(info.dim) {
            return Err(EmbedError::BadModel {
                dir: cfg.model_dir.clone(),
                reason: format!("model output is not {}-dimensional", info.dim),
            });
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let max_batch = cfg.max_batch.max(1);
        std::thread::Builder::new()
            .name("cairn-embed".into())
            .spawn(move || worker(te, rx, max_batch))
            .map_err(|e| EmbedError::Init(e.to_string()))?;
        Ok(Embedder {
            tx,
            info,
            room: std::sync::Arc::new(tokio::sync::Semaphore::new(4 * max_batch)),
            max_batch,
        })
    }

    /// A stand-in model for in-process engine tests: each text's vector is derived from its BLAKE3 hash (unit
    /// length, `dim` components), so tests run without ONNX Runtime. Its identity names it `test-hash@…`, so
    /// nothing it wrote can be mistaken for the real model's state. End-to-end tests use the real model.
    #[cfg(test)]
    pub fn deterministic(dim: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::spawn(move || {
            while let Ok(job) = rx.recv() {
                let out = job.texts.iter().map(|t| hash_vector(t, dim)).collect();
                let _ = job.reply.send(Ok(out));
            }
        });
        let hash =
            *blake3::hash(format!("cairn test-hash embedder, dim {dim}").as_bytes()).as_bytes();
        Embedder {
            tx,
            info: ModelInfo {
                id: format!("test-hash@{}", hex::encode(&hash[..8])),
                dim,
                hash,
            },
            room: std::sync::Arc::new(tokio::sync::Semaphore::new(1024)),
            max_batch: 256,
        }
    }

    /// The model's identity.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Embeds texts into unit vectors (in order). Texts longer than 256 word pieces are truncated.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(texts.len());
        let mut texts = texts.into_iter().peekable();
        while texts.peek().is_some() {
            let chunk: Vec<String> = texts.by_ref().take(self.max_batch).collect();
            // Chunks are at most max_batch texts, so the permits always exist.
            let _room = self
                .room
                .acquire_many(chunk.len() as u32)
                .await
                .map_err(|_| EmbedError::Stopped)?;
            let (reply, rx) = oneshot::channel();
            self.tx
                .send(Job {
                    texts: chunk,
                    reply,
                })
                .map_err(|_| EmbedError::Stopped)?;
            out.extend(rx.await.map_err(|_| EmbedError::Stopped)??);
        }
        Ok(out)
    }
}

/// The test embedder's vector of `text`: components from its BLAKE3 XOF in [-1, 1], normalised.
#[cfg(test)]
fn hash_vector(text: &str, dim: usize) -> Vec<f32> {
    let mut bytes = vec![0u8; dim.max(1)];
    blake3::Hasher::new()
        .update(text.as_bytes())
        .finalize_xof()
        .fill(&mut bytes);
    let mut v: Vec<f32> = bytes.iter().map(|&b| f32::from(b) / 127.5 - 1.0).collect();
    v.truncate(dim);
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Most word pieces (padded) in one model call. The runtime keeps its memory arena at the size of the largest
/// call it has run, which grows with texts × longest² (attention): 32 texts of 256 pieces held ~150 MB after an
/// import. At this budget a call holds 8 texts of 256 pieces, or 32 of up to 64.
const PIECE_BUDGET: usize = 2048;

/// A conservative guess of a text's word pieces from its bytes (English averages about four bytes a piece; the
/// model truncates at 256, plus the two special tokens).
fn pieces(bytes: usize) -> usize {
    (bytes / 3 + 2).min(258)
}

/// Splits texts sorted by length into model calls: at most [`SUB_BATCH`] texts each, and at most
/// [`PIECE_BUDGET`] padded word pieces (texts × the longest's pieces), one text at least.
fn calls_for(sorted_lens: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < sorted_lens.len() {
        let mut end = start + 1;
        while end < sorted_lens.len()
            && end - start < SUB_BATCH
            && (end - start + 1) * pieces(sorted_lens[end]) <= PIECE_BUDGET
        {
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
}

/// Texts per model call. A bulk batch is embedded this many texts at a time, and urgent jobs that arrive meanwhile
/// run between two calls: an urgent job waits for at most one such call.
const SUB_BATCH: usize = 32;
/// Jobs of at most this many texts (a Recall's query, a single memory) go ahead of bulk work (imports).
const URGENT_TEXTS: usize = 4;

/// Jobs waiting in the worker, urgent ones apart.
#[derive(Default)]
struct Queues {
    urgent: std::collections::VecDeque<Job>,
    bulk: std::collections::VecDeque<Job>,
}

impl Queues {
    /// Texts waiting in both queues.
    fn texts(&self) -> usize {
        self.urgent
            .iter()
            .chain(self.bulk.iter())
            .map(|j| j.texts.len())
            .sum()
    }

    fn push(&mut self, j: Job) {
        if j.texts.len() <= URGENT_TEXTS {
            self.urgent.push_back(j);
        } else {
            self.bulk.push_back(j);
        }
    }

    /// Moves everything queued on `rx` in, without waiting; false once every sender is gone and nothing is left.
    fn drain(&mut self, rx: &mpsc::Receiver<Job>) -> bool {
        loop {
            match rx.try_recv() {
                Ok(j) => self.push(j),
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => {
                    return !(self.urgent.is_empty() && self.bulk.is_empty())
                }
            }
        }
    }

    /// Up to `max` texts' worth of jobs from one queue (at least one job), callers that went away dropped.
    fn take(q: &mut std::collections::VecDeque<Job>, max: usize) -> Vec<Job> {
        let mut jobs = Vec::new();
        let mut count = 0;
        while let Some(j) = q.front() {
            if !jobs.is_empty() && count + j.texts.len() > max {
                break;
            }
            count += j.texts.len();
            if let Some(j) = q.pop_front() {
                jobs.push(j);
            }
        }
        // Work for callers that went away (cancelled, timed out, disconnected) is dropped, not done.
        jobs.retain(|j| !j.reply.is_closed());
        jobs
    }
}

fn worker(mut te: fastembed::TextEmbedding, rx: mpsc::Receiver<Job>, max_batch: usize) {
    let mut q = Queues::default();
    // Bulk work done since memory was last handed back.
    let mut bulk_since_trim = false;
    loop {
        if !q.drain(&rx) {
            return;
        }
        if q.urgent.is_empty() && q.bulk.is_empty() {
            // After a burst, hand its buffers back, unless the resident set did not grow enough for that to be
            // worth a trim's stall (see `release_free_memory_if_grown`).
            if std::mem::take(&mut bulk_since_trim) {
                release_free_memory_if_grown();
            }
            match rx.recv() {
                Ok(j) => q.push(j),
                Err(_) => return,
            }
            continue;
        }
        metrics::gauge!("cairn_embed_queue_texts").set(q.texts() as f64);
        if !q.urgent.is_empty() {
            let jobs = Queues::take(&mut q.urgent, max_batch);
            embed_jobs(&mut te, jobs, &mut |_| {});
        } else {
            bulk_since_trim = true;
            let jobs = Queues::take(&mut q.bulk, max_batch);
            // Between two model calls of a bulk batch, urgent jobs that arrived meanwhile go first.
            embed_jobs(&mut te, jobs, &mut |te| {
                q.drain(&rx);
                while !q.urgent.is_empty() {
                    let urgent = Queues::take(&mut q.urgent, max_batch);
                    embed_jobs(te, urgent, &mut |_| {});
                }
            });
        }
    }
}

/// Hands memory the allocator keeps free back to the system (glibc keeps freed heap pages otherwise), so the
/// buffers of a burst do not stay counted in the node's RSS. A trim walks the whole heap with its arena locked
/// (about 0.1 s at 100k memories, stalling every allocation meanwhile), so callers go through
/// [`release_free_memory_if_grown`]: the embedding worker when the model has nothing queued after bulk work, the
/// scrubber every pass.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's own heaps.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
    LAST_TRIMMED_RSS.store(resident_bytes().unwrap_or(0), Ordering::Relaxed);
}

/// Resident set size right after the last trim (bytes; 0 before the first).
static LAST_TRIMMED_RSS: AtomicU64 = AtomicU64::new(0);

/// Growth of the resident set since the last trim that makes a periodic pass trim again.
pub(crate) const TRIM_AFTER_GROWTH: u64 = 32 << 20;

/// Trims (see [`release_free_memory`]) only when the resident set grew by [`TRIM_AFTER_GROWTH`] since the last trim
/// (a burst left buffers behind, or state grew), so a steady node is not stalled every scrub pass for nothing.
/// Returns whether it trimmed.
pub(crate) fn release_free_memory_if_grown() -> bool {
    let now = resident_bytes();
    if !should_trim(now, LAST_TRIMMED_RSS.load(Ordering::Relaxed)) {
        return false;
    }
    release_free_memory();
    true
}

/// Whether a resident set of `now` bytes (None: unknown) warrants a trim, `after_last` having been left by the last.
fn should_trim(now: Option<u64>, after_last: u64) -> bool {
    now.is_none_or(|n| n > after_last.saturating_add(TRIM_AFTER_GROWTH))
}

/// This process's resident set in bytes, from `/proc/self/statm` (None where that cannot be read).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // (4 KiB pages: where pages are larger this undercounts, and passes trim less often.)
    Some(pages.saturating_mul(4096))
}

/// Caps glibc's heap arenas at two. By default glibc gives busy threads arenas of their own (up to eight per core),
/// and what each arena keeps after a burst stays counted in the node's RSS; the node's threads are few and mostly
/// async, so two arenas cost little contention. Call before any thread starts.
pub fn limit_heap_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tuning parameter; called before other threads exist.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Embeds the texts of `jobs` sorted by length (little padding), in calls of at most [`SUB_BATCH`] texts and
/// [`PIECE_BUDGET`] word pieces, calling `between` after each call but the last, and answers every job.
fn embed_jobs(
    te: &mut fastembed::TextEmbedding,
    jobs: Vec<Job>,
    between: &mut dyn FnMut(&mut fastembed::TextEmbedding),
) {
    if jobs.is_empty() {
        return;
    }
    let mut order: Vec<(usize, usize)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(j, job)| (0..job.texts.len()).map(move |i| (j, i)))
        .collect();
    order.sort_by_key(|&(j, i)| jobs[j].texts[i].len());
    let span = tracing::debug_span!("embed", texts = order.len(), jobs = jobs.len());
    let _g = span.enter();
    let mut out: Vec<Vec<Vec<f32>>> = jobs
        .iter()
        .map(|j| vec![Vec::new(); j.texts.len()])
        .collect();
    let lens: Vec<usize> = order.iter().map(|&(j, i)| jobs[j].texts[i].len()).collect();
    let parts = calls_for(&lens);
    let calls = parts.len();
    for (n, range) in parts.into_iter().enumerate() {
        let part = &order[range];
        let texts: Vec<&str> = part
            .iter()
            .map(|&(j, i)| jobs[j].texts[i].as_str())
            .collect();
        metrics::histogram!("cairn_embed_batch_texts").record(texts.len() as f64);
        let failed = match te.embed(&texts, Some(SUB_BATCH)) {
            Ok(vectors) if vectors.len() == texts.len() => {
                for (&(j, i), v) in part.iter().zip(vectors) {
                    out[j][i] = v;
                }
                None
            }
            Ok(v) => Some(format!(
                "model returned {} vectors for {} texts",
                v.len(),
                texts.len()
            )),
            Err(e) => Some(e.to_string()),
        };
        if let Some(msg) = failed {
            for job in jobs {
                let _ = job.reply.send(Err(EmbedError::Embed(msg.clone())));
            }
            return;
        }
        if n + 1 < calls {
            between(te);
        }
    }
    for (job, vs) in jobs.into_iter().zip(out) {
        let _ = job.reply.send(Ok(vs));
    }
}

/// Checks the model files, loads ONNX Runtime and builds a model instance (mean pooling, L2-normalised,
/// truncation at 256 word pieces). Also the raw-throughput baseline for benchmarks (no queue, no gRPC).
pub fn load_model(cfg: &EmbedConfig) -> Result<(ModelInfo, fastembed::TextEmbedding), EmbedError> {
    let (info, mut files) = load_files(&cfg.model_dir)?;
    let env = ort_environment(&cfg.ort_lib)?;
    let mut take = |n: &str| files.remove(n).unwrap_or_default();
    let tokenizer = fastembed::TokenizerFiles {
        tokenizer_file: take("tokenizer.json"),
        config_file: take("config.json"),
        special_tokens_map_file: take("special_tokens_map.json"),
        tokenizer_config_file: take("tokenizer_config.json"),
    };
    let model = fastembed::UserDefinedEmbeddingModel::new(take("model.onnx"), tokenizer)
        .with_pooling(fastembed::Pooling::Mean);
    // Without its memory arena the runtime hands each call's buffers back to the allocator, so RSS falls back
    // after a burst instead of staying at the largest call's size.
    let mut opts = fastembed::InitOptionsUserDefined::new()
        .with_environment(env)
        .with_execution_providers(vec![ort::ep::CPU::default()
            .with_arena_allocator(false)
            .build()])
        .with_max_length(MAX_SEQ_LEN);
    if let Some(t) = cfg.threads {
        opts = opts.with_intra_threads(t);
    }
    let te = fastembed::TextEmbedding::try_new_from_user_defined(model, opts)
        .map_err(|e| EmbedError::Init(e.to_string()))?;
    Ok((info, te))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A periodic pass trims only after the resident set grew by the threshold since the last trim (or when it
    /// cannot tell), and a trim records where it left the resident set.
    #[test]
    fn periodic_trims_wait_for_growth() {
        let base = 500 << 20;
        assert!(!should_trim(Some(base), base));
        assert!(!should_trim(Some(base + TRIM_AFTER_GROWTH), base));
        assert!(should_trim(Some(base + TRIM_AFTER_GROWTH + 1), base));
        assert!(!should_trim(Some(base - (100 << 20)), base));
        assert!(should_trim(None, base));
        release_free_memory();
        let left = LAST_TRIMMED_RSS.load(Ordering::Relaxed);
        assert!(left > 0, "the trim did not record the resident set");
    }

    /// Model calls keep to the text and word-piece budgets, cover every text once and in order.
    #[test]
    fn calls_keep_to_the_piece_budget() {
        let mut lens: Vec<usize> = (0..300).map(|i| (i * 37) % 1500).collect();
        lens.sort_unstable();
        let calls = calls_for(&lens);
        let mut next = 0;
        for c in &calls {
            assert_eq!(c.start, next);
            next = c.end;
            assert!(c.len() <= SUB_BATCH);
            let longest = pieces(lens[c.end - 1]);
            assert!(c.len() == 1 || c.len() * longest <= PIECE_BUDGET, "{c:?}");
        }
        assert_eq!(next, lens.len());
        // Short texts still go 32 at a time; long ones 7 or 8.
        assert_eq!(calls_for(&[10; 64]).len(), 2);
        let long = calls_for(&[2000; 64]);
        assert!(long.iter().all(|c| c.len() <= PIECE_BUDGET / 258));
        assert_eq!(long.len(), 64_usize.div_ceil(PIECE_BUDGET / 258));
        assert!(calls_for(&[]).is_empty());
    }
}
