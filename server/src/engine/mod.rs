//! The node's data path, one namespace ("space") at a time:
//! validation → embed → blobs (record bytes) → redb (durable rows) → HNSW (serving index) → answer.
//!
//! Writes to a namespace are serialised by its write lock; embedding happens before the lock so concurrent
//! writers share model calls. Reads never wait for the model or the disk of a concurrent write.

pub mod commitment;
#[cfg(test)]
mod external_tests;
pub mod follow;
mod grants;
#[cfg(test)]
mod hostile_tests;
pub mod lexicon;
pub mod migrate;
#[cfg(test)]
mod migrate_tests;
mod open;
mod read;
pub mod replica;
pub mod snapshot;
mod space;
#[cfg(test)]
mod upgrade_tests;
mod upkeep;
mod write;

use crate::store::terms::IntoTerms;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use cairn_index::id::MemoryId;
use cairn_index::record::{dedup_key, MemoryRecord, Metadata};
use cairn_index::validate::{self, Limits};
use tokio::sync::Mutex;

use crate::ann::{self, HnswParams};
use crate::blobs::Blobs;
use crate::embed::Embedder;
use crate::error::NodeError;
use crate::store::{Forgotten, NewPoint, PointRow, State};
use cairn_index::root::SignedRoot;
use commitment::CommitParams;
use ed25519_dalek::SigningKey;
use space::RootSigner;
pub use space::{PendingWrite, Search, Space, SyncOut};

/// Most items in one Remember, ids in one Get/Forget, texts in one Embed.
pub const MAX_ITEMS: usize = 1000;
/// Most bytes of text and metadata in one Remember.
pub const MAX_CALL_BYTES: usize = 8 << 20;
/// Most hits of one Recall.
pub const MAX_K: u32 = 1000;
/// Largest search breadth of one Recall.
pub const MAX_EF: u32 = 10_000;
/// Most memories in one List page.
pub const MAX_PAGE: u32 = 10_000;

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Data directory (state.redb, blobs/, hnsw/).
    pub data_dir: PathBuf,
    /// Size limits for memories.
    pub limits: Limits,
    /// M and ef_construction (the dimension comes from the model).
    pub m: usize,
    /// HNSW build breadth.
    pub ef_construction: usize,
    /// Default Recall breadth.
    pub ef_search: usize,
    /// Namespaces with at most this many graph nodes get exact-mode recall proofs.
    pub exact_proof_limit: u64,
    /// Recall's ranking for a text query without filter or prefix when the caller names none.
    pub recall_mode: RecallMode,
    /// Default candidates per ranking for lexical and hybrid Recall.
    pub fusion_depth: usize,
    /// How often garbage collection deletes unpinned blob bytes.
    pub gc_interval: Duration,
    /// Most signed roots in one catch-up answer or roots reply served to peers (2..=[`replica::MAX_CHAIN`]).
    pub max_chain: usize,
    /// Base directory of the published-seq record, outside the data dir (see [`crate::published`]).
    pub published_dir: PathBuf,
    /// Namespaces whose writes go on even though their data dir is older than what was published.
    pub allow_fork: Vec<String>,
    /// Writes (and replica installs) are refused while the data dir's disk has less free space than this.
    pub min_free_bytes: u64,
    /// Most bytes of memories in one List page (at least one memory is always returned).
    pub max_page_bytes: usize,
    /// Most graph nodes a caller may have scored exactly in one Recall.
    pub max_exact: u64,
    /// Most memories a ranked filtered Recall may score (and its proof carry).
    pub max_filter_candidates: u64,
    /// Bytes of RAM the state file's page cache may hold (redb's default is 1 GiB, which a large state
    /// file fills and keeps).
    pub state_cache_bytes: usize,
    /// Keys whose cosignatures are kept besides the node's own and its peers'.
    pub witnesses: Vec<[u8; 32]>,
    /// Most cosignatures kept per witness per second (others' cosignatures beyond it are dropped).
    pub cosigs_per_sec: u32,
    /// Starts the embedder of another installed model by its identity hash (namespaces moved with
    /// `cairn migrate`); None: this node runs its own model only.
    pub models: Option<migrate::ModelLoader>,
}

/// One memory as returned by reads.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryOut {
    /// Id.
    pub id: MemoryId,
    /// The decoded record.
    pub record: MemoryRecord,
    /// The canonical record bytes (what the id hashes).
    pub bytes: Bytes,
}

/// Outcome of one Remember item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    /// The memory's id.
    pub id: MemoryId,
    /// True if an identical memory already existed.
    pub deduplicated: bool,
    /// Its created_at.
    pub created_at: u64,
    /// The live memory with the same key that this one replaced (forgotten in the same commit).
    pub replaced: Option<MemoryId>,
}

/// A memory to remember, as received.
#[derive(Debug, Clone)]
pub struct Item {
    /// Text.
    pub text: String,
    /// Metadata.
    pub metadata: Metadata,
    /// Creation time, if the caller set it.
    pub created_at: Option<u64>,
    /// The caller's vector for the text (namespaces of an external model only).
    pub vector: Option<Vec<f32>>,
}

/// The query of a Recall.
#[derive(Debug, Clone)]
pub enum Query {
    /// Text to embed.
    Text(String),
    /// A vector made with the namespace's model.
    Vector(Vec<f32>),
    /// A text with its vector, made by the caller with the namespace's model: the lexical ranking reads the
    /// text, the semantic one the vector, and the node embeds nothing (how a namespace of an external model
    /// ranks a text in hybrid mode).
    TextWithVector(String, Vec<f32>),
}

/// Restrictions on Recall hits.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Required metadata pairs.
    pub metadata: Metadata,
    /// created_at >= since.
    pub since: Option<u64>,
    /// created_at < until.
    pub until: Option<u64>,
}

/// How to run a Recall (all validated by [`Engine::recall`]).
#[derive(Debug, Clone, Default)]
pub struct RecallOpts {
    /// Hits wanted (0 = 10).
    pub k: u32,
    /// Restrictions.
    pub filter: Filter,
    /// Search breadth (0 = the node's default).
    pub ef: u32,
    /// Score every candidate.
    pub exact: bool,
    /// Return a proof.
    pub proof: bool,
    /// `ns` is a namespace prefix: search every namespace under it.
    pub prefix: bool,
    /// Ranking (None = the node's default for a text query, semantic otherwise).
    pub mode: Option<RecallMode>,
    /// Candidates per ranking for lexical and hybrid (0 = the node's default).
    pub depth: u32,
}

/// How Recall ranks memories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecallMode {
    /// Nearest by embedding.
    Semantic,
    /// BM25 over the committed lexical index.
    Lexical,
    /// Reciprocal-rank fusion of both.
    #[default]
    Hybrid,
}

impl std::str::FromStr for RecallMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "semantic" => Ok(RecallMode::Semantic),
            "lexical" => Ok(RecallMode::Lexical),
            "hybrid" => Ok(RecallMode::Hybrid),
            _ => Err(format!("{s:?} is not semantic, lexical or hybrid")),
        }
    }
}

/// A Recall hit.
#[derive(Debug, Clone)]
pub struct HitOut {
    /// The memory.
    pub memory: MemoryOut,
    /// Cosine similarity to the query.
    pub score: f32,
}

/// Counts of one namespace.
#[derive(Debug, Clone, Default)]
pub struct SpaceStats {
    /// Name.
    pub namespace: String,
    /// Live memories.
    pub memories: u64,
    /// Forgotten points still in the graph.
    pub tombstones: u64,
    /// Points in the graph.
    pub index_points: u64,
    /// Newest created_at.
    pub newest_created_at: u64,
    /// The external model callers embed with (None: the node's model).
    pub external: Option<cairn_index::model::ExternalModel>,
    /// The id of the installed model the node embeds this namespace with, when not its own (`cairn migrate`).
    pub local_model: Option<String>,
}

/// The node's storage and search engine.
pub struct Engine {
    cfg: EngineConfig,
    state: Arc<State>,
    blobs: Blobs,
    embedder: Embedder,
    params: HnswParams,
    spaces: RwLock<BTreeMap<String, Arc<Space>>>,
    create: Mutex<()>,
    key: Arc<SigningKey>,
    roots: tokio::sync::broadcast::Sender<SignedRoot>,
    /// Snapshots built or installed here, by namespace (see [`snapshot`]).
    snapshots: std::sync::Mutex<HashMap<String, snapshot::Cached>>,
    /// One snapshot build at a time per namespace (a build, or a Forget dropping what a build read): a long build
    /// of one namespace never holds back writes or forgets of another.
    snapshot_build: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Held shared by every write and replica install in progress; [`Engine::shutdown`] takes it exclusively and
    /// sets it, so shutdown waits for them and refuses new ones.
    gate: Arc<tokio::sync::RwLock<bool>>,
    /// Equivocation evidence (also in redb): an (owner, namespace) with evidence is no longer followed.
    alerts: std::sync::Mutex<Vec<replica::Alert>>,
    signing: Arc<Signing>,
    /// Owned namespaces whose data dir is older than the roots this node already published (a restored copy),
    /// with the reason: writing would sign a second root for a published seq, so writes are refused. Found at
    /// start-up from the published-seq record, or later from a peer holding a newer root of ours.
    forks: std::sync::RwLock<HashMap<String, String>>,
    /// Namespaces whose stored state could not be loaded at start-up, with the reason: every call on them fails
    /// (FAILED_PRECONDITION) and nothing may write over them.
    quarantined: HashMap<String, String>,
    /// No vacuum before this instant: each one blocks state calls for its duration, so the next waits at least
    /// [`VACUUM_SPACING`] times as long, keeping that stall under a tenth of the time.
    next_vacuum: std::sync::Mutex<Option<std::time::Instant>>,
    /// Others' cosignatures on their way to the batch writer ([`follow::cosig_writer`]).
    cosig_tx: tokio::sync::mpsc::Sender<crate::store::CosigRow>,
    /// Per witness: start of its current second and cosignatures taken in it.
    cosig_rates: std::sync::Mutex<HashMap<[u8; 32], (std::time::Instant, u32)>>,
    /// Embedders of other installed models started so far, by identity hash (shared by their namespaces).
    models: Mutex<HashMap<[u8; 32], Embedder>>,
    /// Namespaces with a migration running here (one at a time per namespace).
    migrating: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// What signing a root of an owned namespace needs: the key, the commitment parameters, and the two places a
/// root is recorded before anyone can see it (redb, and the published-seq record outside the data dir).
struct Signing {
    key: Arc<SigningKey>,
    params: CommitParams,
    state: Arc<State>,
    published: crate::published::Published,
}

impl Signing {
    /// Runs `f` with a [`RootSigner`] that records every root it signs.
    fn with<T>(&self, f: impl FnOnce(&RootSigner<'_>) -> T) -> T {
        let persist = |ns: &str, r: &SignedRoot| -> Result<(), NodeError> {
            self.state.put_root(ns, r)?;
            // The root is durable in redb now; failing here would leave the in-memory chain behind it (every
            // later commit would retry the same seq). A missing record only weakens the restore check.
            if let Err(e) = self.published.record(ns, r.record.seq, &r.record.hash()) {
                tracing::error!(namespace = ns, seq = r.record.seq, error = %e, "cannot record the published seq");
            }
            Ok(())
        };
        let signer = RootSigner {
            key: &self.key,
            params: self.params,
            persist: &persist,
        };
        f(&signer)
    }
}

/// What Get found.
#[derive(Debug)]
pub struct Got {
    /// Memories returned, in request order.
    pub found: Vec<MemoryOut>,
    /// Ids not live here (as asked).
    pub missing: Vec<String>,
    /// Live ids left out because the answer reached the byte cap (`--max-page-mb`), in request order.
    pub unreturned: Vec<String>,
    /// The time proof of `found`, if asked.
    pub proof: Option<Vec<u8>>,
}

/// One List page.
pub struct ListPage {
    /// Memories in (created_at, id) order.
    pub memories: Vec<MemoryOut>,
    /// Where the next page starts after (created_at and id of this page's last memory), when more follow.
    pub next: Option<(u64, MemoryId)>,
    /// The page's range-completeness proof, if asked.
    pub proof: Option<Vec<u8>>,
}

/// How many memories one Get or Forget may name (`what` says what was counted, `field` which field is blamed
/// when there are too many): at least one, at most [`MAX_ITEMS`].
fn item_count(field: &str, what: &str, n: usize) -> Result<(), NodeError> {
    if n == 0 {
        return Err(NodeError::invalid("ids", "at least one id is required"));
    }
    if n > MAX_ITEMS {
        return Err(NodeError::too_large(
            field,
            format!("{n} {what}, at most {MAX_ITEMS} per call"),
        ));
    }
    Ok(())
}

/// Checks a caller's vector (`dim` finite components, not all zero) and scales it to unit length.
fn unit_vector(field: &str, q: Vec<f32>, dim: usize) -> Result<Vec<f32>, NodeError> {
    if q.len() != dim {
        return Err(NodeError::invalid(
            field,
            format!("{} components, the model's dimension is {dim}", q.len()),
        ));
    }
    if q.iter().any(|x| !x.is_finite()) {
        return Err(NodeError::invalid(
            field,
            "components must be finite numbers",
        ));
    }
    let norm = q.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm < 1e-6 {
        return Err(NodeError::invalid(field, "must not be the zero vector"));
    }
    Ok(q.iter().map(|x| x / norm).collect())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Engine {
    /// The embedder (model id, dimension, `embed`).
    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    fn space(&self, ns: &str) -> Result<Arc<Space>, NodeError> {
        validate::namespace(ns)?;
        if let Some(why) = self.quarantined.get(ns) {
            return Err(NodeError::FailedPrecondition(why.clone()));
        }
        self.spaces
            .read()
            .map_err(|_| NodeError::Task("namespace table poisoned".into()))?
            .get(ns)
            .cloned()
            .ok_or_else(|| NodeError::NotFound(format!("namespace {ns:?} does not exist")))
    }

    /// The space of `ns` for a call made for `expected` (the external model it was checked against, None for the
    /// node's): created with the node's model if missing; FAILED_PRECONDITION if its model changed meanwhile (a
    /// CreateNamespace raced the call).
    async fn space_for(
        &self,
        ns: &str,
        expected: Option<&cairn_index::model::ExternalModel>,
    ) -> Result<Arc<Space>, NodeError> {
        let space = self.space_or_create(ns).await?;
        if space.external() != expected {
            return Err(NodeError::FailedPrecondition(format!(
                "namespace {ns:?} was created with another model while this call ran; retry it"
            )));
        }
        Ok(space)
    }

    async fn space_or_create(&self, ns: &str) -> Result<Arc<Space>, NodeError> {
        match self.space(ns) {
            Ok(s) => return Ok(s),
            Err(NodeError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let _g = self.create.lock().await;
        if let Ok(s) = self.space(ns) {
            return Ok(s);
        }
        let dir = self.cfg.data_dir.join("hnsw").join(space::dir_name(ns));
        let space = Arc::new(Space::new(ns.to_owned(), dir, self.params));
        self.spaces
            .write()
            .map_err(|_| NodeError::Task("namespace table poisoned".into()))?
            .insert(ns.to_owned(), space.clone());
        Ok(space)
    }
}
