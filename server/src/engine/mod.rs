//! The node's data path, one namespace ("space") at a time:
//! validation → embed → blobs (record bytes) → redb (durable rows) → HNSW (serving index) → answer.
//!
//! Writes to a namespace are serialised by its write lock; embedding happens before the lock so concurrent
//! writers share model calls. Reads never wait for the model or the disk of a concurrent write.

pub mod commitment;
mod grants;
#[cfg(test)]
mod hostile_tests;
pub mod lexicon;
pub mod replica;
pub mod snapshot;
mod space;
#[cfg(test)]
mod upgrade_tests;

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
/// Below this many wanted records of one pack, they are read as ranges instead of reading the whole pack.
const FEW_OF_A_PACK: usize = 16;

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
}

/// The query of a Recall.
#[derive(Debug, Clone)]
pub enum Query {
    /// Text to embed.
    Text(String),
    /// A vector made with the node's model.
    Vector(Vec<f32>),
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
    /// Others' cosignatures on their way to the batch writer ([`replica::cosig_writer`]).
    cosig_tx: tokio::sync::mpsc::Sender<crate::store::CosigRow>,
    /// Per witness: start of its current second and cosignatures taken in it.
    cosig_rates: std::sync::Mutex<HashMap<[u8; 32], (std::time::Instant, u32)>>,
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

/// Memories Get reads at a time while filling its answer up to the byte cap.
const GET_CHUNK: usize = 32;

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

/// A vacuum waits at least this many times the previous one's duration after it (see `Engine::scrub`).
const VACUUM_SPACING: u32 = 10;

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

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Engine {
    /// Opens the data dir, checks it belongs to the embedder's model and restores every namespace's index.
    pub async fn open(cfg: EngineConfig, embedder: Embedder) -> Result<Arc<Self>, NodeError> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
            NodeError::FailedPrecondition(format!(
                "cannot create data dir {}: {e}",
                cfg.data_dir.display()
            ))
        })?;
        let model = embedder.info().id.clone();
        let path = cfg.data_dir.join("state.redb");
        let fresh = !path.exists();
        let cache = cfg.state_cache_bytes;
        let state = Arc::new(
            tokio::task::spawn_blocking(move || State::open_with_cache(&path, &model, cache))
                .await??,
        );
        let blobs = Blobs::open(&cfg.data_dir.join("blobs"), cfg.gc_interval).await?;
        let params = HnswParams {
            m: cfg.m,
            ef_construction: cfg.ef_construction,
            dim: embedder.info().dim,
        };
        let key = Arc::new(
            crate::identity::load_or_create(&cfg.data_dir, fresh)
                .map_err(|e| NodeError::FailedPrecondition(e.to_string()))?,
        );
        {
            let (st, id) = (state.clone(), crate::identity::node_id_hex(&key));
            tokio::task::spawn_blocking(move || st.bind_node_id(&id)).await??;
        }
        let commit_params = CommitParams {
            m: cfg.m.min(u16::MAX as usize) as u16,
            dim: embedder.info().dim as u16,
            model: embedder.info().hash,
        };
        let hnsw_dir = cfg.data_dir.join("hnsw");
        ann::clean_leftovers(&hnsw_dir);
        let alerts: Vec<replica::Alert> = {
            let st = state.clone();
            tokio::task::spawn_blocking(move || st.alerts())
                .await??
                .iter()
                .filter_map(|b| replica::Alert::decode(b))
                .collect()
        };
        let published = crate::published::Published::open(
            &cfg.published_dir,
            &crate::identity::node_id_hex(&key),
        )
        .map_err(|e| NodeError::FailedPrecondition(e.to_string()))?;
        let signing = Arc::new(Signing {
            key: key.clone(),
            params: commit_params,
            state: state.clone(),
            published,
        });
        let mut forks = HashMap::new();
        let mut spaces = BTreeMap::new();
        let names = {
            let st = state.clone();
            tokio::task::spawn_blocking(move || st.namespaces()).await??
        };
        let follows: HashMap<String, [u8; 32]> = {
            let st = state.clone();
            tokio::task::spawn_blocking(move || st.follows())
                .await??
                .into_iter()
                .collect()
        };
        let mut quarantined = HashMap::new();
        for (name, _next) in names {
            let st = state.clone();
            let dir = hnsw_dir.join(space::dir_name(&name));
            let n = name.clone();
            let restored = if let Some(&owner) = follows.get(&name) {
                tokio::task::spawn_blocking(move || -> Result<(Space, Option<String>), NodeError> {
                    let rows = st.load_points(&n)?;
                    let lists = st.load_lists(&n)?;
                    let root = st.latest_root(&n)?;
                    let nodes = replica::stored_nodes(&rows, lists);
                    match Space::replica(n.clone(), dir.clone(), owner, rows, nodes, root) {
                        Ok(s) => Ok((s, None)),
                        Err(e) => {
                            tracing::warn!(namespace = %n, error = %e, "stored replica state does not reproduce its root; it will be fetched again in full");
                            Space::replica(n, dir, owner, Vec::new(), Vec::new(), None)
                                .map(|s| (s, None))
                                .map_err(|e| NodeError::Task(e.to_string()))
                        }
                    }
                })
                .await
            } else {
                let sg = signing.clone();
                let allowed = cfg.allow_fork.contains(&name);
                let rows = {
                    let (st, n) = (st.clone(), n.clone());
                    tokio::task::spawn_blocking(move || -> Result<Vec<PointRow>, NodeError> {
                        Ok(st.scrub_tombstones(&n, st.load_points(&n)?)?)
                    })
                    .await
                    .map_err(NodeError::from)
                    .and_then(|r| r)
                };
                let rows = match rows {
                    Ok(rows) => fill_terms(&st, &blobs, &n, rows).await,
                    Err(e) => Err(e),
                };
                tokio::task::spawn_blocking(
                    move || -> Result<(Space, Option<String>), NodeError> {
                        let rows = rows?;
                        let space = Space::restore(n.clone(), dir, rows, params);
                        let latest = st.latest_root(&n)?;
                        let fork = restored_fork(&n, latest.as_ref(), &sg.published)?;
                        if let (Some(why), true) = (&fork, allowed) {
                            tracing::warn!(namespace = %n, "{why}; writing anyway (--allow-fork)");
                        }
                        let fork = fork.filter(|_| !allowed);
                        sg.with(|s| space.ensure_root(latest, fork.is_none(), s))?;
                        Ok((space, fork))
                    },
                )
                .await
            };
            // A namespace whose stored state cannot be read is set aside; the node serves the others.
            let (space, fork) = match restored.map_err(NodeError::from).and_then(|r| r) {
                Ok(r) => r,
                Err(e) => {
                    let why = format!(
                        "namespace {name:?} is quarantined: its stored state could not be loaded ({e}); \
                         the node serves its other namespaces. Restore the data dir from a backup to recover it"
                    );
                    tracing::error!(namespace = %name, error = %e, "namespace quarantined");
                    quarantined.insert(name, why);
                    continue;
                }
            };
            if let Some(why) = fork {
                tracing::error!(namespace = %name, "{why}; writes refused");
                forks.insert(name.clone(), why);
            }
            match space.owner {
                Some(owner) => {
                    tracing::info!(namespace = %name, owner = %hex::encode(owner), memories = space.stats().memories, "replica restored")
                }
                None => {
                    tracing::info!(namespace = %name, memories = space.stats().memories, "namespace restored")
                }
            }
            spaces.insert(name, Arc::new(space));
        }
        let (cosig_tx, cosig_rx) = tokio::sync::mpsc::channel(replica::COSIG_QUEUE);
        tokio::spawn(replica::cosig_writer(state.clone(), cosig_rx));
        let engine = Arc::new(Engine {
            cfg,
            state,
            blobs,
            embedder,
            params,
            spaces: RwLock::new(spaces),
            create: Mutex::new(()),
            key,
            roots: tokio::sync::broadcast::channel(1024).0,
            snapshots: std::sync::Mutex::new(HashMap::new()),
            snapshot_build: std::sync::Mutex::new(HashMap::new()),
            gate: Arc::new(tokio::sync::RwLock::new(false)),
            alerts: std::sync::Mutex::new(alerts),
            signing,
            forks: std::sync::RwLock::new(forks),
            quarantined,
            next_vacuum: std::sync::Mutex::new(None),
            cosig_tx,
            cosig_rates: std::sync::Mutex::new(HashMap::new()),
        });
        engine.finish_blob_deletes().await?;
        engine.remove_orphan_blobs().await?;
        engine.remove_orphan_snapshots().await?;
        Ok(engine)
    }

    /// Start-up repair: unpins snapshot pins of namespaces that keep no snapshot (an Unfollow or a pin whose row
    /// never committed, interrupted by a crash), so their pages go with the next collection.
    async fn remove_orphan_snapshots(&self) -> Result<(), NodeError> {
        let st = self.state.clone();
        let kept = tokio::task::spawn_blocking(
            move || -> Result<Vec<String>, crate::store::StoreError> {
                let mut out = Vec::new();
                for (ns, _) in st.namespaces()? {
                    if st.snapshot(&ns)?.is_some() {
                        out.push(ns);
                    }
                }
                Ok(out)
            },
        )
        .await??;
        let n = self.blobs.drop_snapshots_except(&kept).await?;
        if n > 0 {
            tracing::warn!(
                pins = n,
                "repaired: removed snapshot pins of namespaces that keep none"
            );
        }
        Ok(())
    }

    /// Start-up repair: unpins record blobs that no row refers to. A write stores and tags its blobs before its
    /// rows commit, so a crash (or a failed commit) in between leaves them behind; nobody has seen their ids.
    async fn remove_orphan_blobs(&self) -> Result<(), NodeError> {
        let st = self.state.clone();
        let referenced = tokio::task::spawn_blocking(move || st.referenced_blobs()).await??;
        let orphans: Vec<[u8; 32]> = self
            .blobs
            .tagged()
            .await?
            .into_iter()
            .filter(|h| !referenced.contains(h))
            .collect();
        if !orphans.is_empty() {
            tracing::warn!(
                blobs = orphans.len(),
                "repaired: removed record blobs left by writes that never committed"
            );
            self.blobs.delete(&orphans).await?;
        }
        Ok(())
    }

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

    /// Stores memories; returns once they are durable and searchable.
    /// Validation and embedding run in the caller's future (cancelling them loses nothing); the commit runs in a
    /// task of its own that finishes whatever the caller does.
    pub async fn remember(
        self: &Arc<Self>,
        ns: &str,
        items: Vec<Item>,
    ) -> Result<Vec<Remembered>, NodeError> {
        validate::namespace(ns)?;
        if items.is_empty() {
            return Err(NodeError::invalid("items", "at least one item is required"));
        }
        if items.len() > MAX_ITEMS {
            return Err(NodeError::too_large(
                "items",
                format!("{} items, at most {MAX_ITEMS} per call", items.len()),
            ));
        }
        let mut total = 0usize;
        for (i, it) in items.iter().enumerate() {
            validate::text(&format!("items[{i}].text"), &it.text, &self.cfg.limits)?;
            if let Some(t) = it.created_at {
                validate::created_at(&format!("items[{i}].created_at"), t)?;
            }
            validate::metadata(
                &format!("items[{i}].metadata"),
                &it.metadata,
                &self.cfg.limits,
            )?;
            total += it.text.len()
                + it.metadata
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>();
        }
        if total > MAX_CALL_BYTES {
            return Err(NodeError::too_large(
                "items",
                format!("{total} bytes of text and metadata, at most {MAX_CALL_BYTES} per call"),
            ));
        }
        match self.space(ns) {
            Ok(space) => writable(&space)?,
            Err(NodeError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        self.not_forked(ns)?;
        self.disk_floor()?;
        let keys: Vec<[u8; 32]> = items
            .iter()
            .map(|it| dedup_key(&it.text, &it.metadata))
            .collect();

        // Embed only what is new (existing content and repeats within the call need no vector).
        let known = self.find_dedup(ns, &keys).await?;
        let mut first_of: HashMap<[u8; 32], usize> = HashMap::new();
        let mut to_embed = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            if known[i].is_none() && !first_of.contains_key(k) {
                first_of.insert(*k, i);
                to_embed.push(i);
            }
        }
        let texts: Vec<String> = to_embed.iter().map(|&i| items[i].text.clone()).collect();
        let vectors = self.embedder.embed(texts).await?;
        let vector_of: HashMap<usize, Vec<f32>> = to_embed.into_iter().zip(vectors).collect();

        // Everything from here on changes disk and memory, so it runs in its own task: a caller that cancels,
        // times out or disconnects drops only its wait for the answer, never a commit half done.
        let gate = self.write_gate().await?;
        let me = self.clone();
        let ns = ns.to_owned();
        tokio::spawn(async move {
            let _gate = gate;
            me.group_commit(&ns, items, keys, vector_of).await
        })
        .await?
    }

    /// Group commit: queue this call, then take the namespace's write lock. Whoever holds it commits every
    /// queued call at once (one blob sync, one redb transaction, one signed root); a call whose batch was
    /// committed by another holder just collects its answer.
    async fn group_commit(
        &self,
        ns: &str,
        items: Vec<Item>,
        keys: Vec<[u8; 32]>,
        vectors: HashMap<usize, Vec<f32>>,
    ) -> Result<Vec<Remembered>, NodeError> {
        let space = self.space_or_create(ns).await?;
        writable(&space)?;
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        space.queue(PendingWrite {
            items,
            keys,
            vectors,
            reply,
        })?;
        let w = space.write.lock().await;
        if let Ok(done) = answer.try_recv() {
            return done;
        }
        let batch = space.take_queue()?;
        match self.commit_batch(ns, &space, &batch).await {
            Ok(results) => {
                for (w, r) in batch.into_iter().zip(results) {
                    let _ = w.reply.send(Ok(r));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for w in batch {
                    let _ = w
                        .reply
                        .send(Err(NodeError::Task(format!("group commit failed: {msg}"))));
                }
                return Err(e);
            }
        }
        drop(w);
        // Keyed writes that replaced memories leave tombstones, like Forget: compact when they pile up. The
        // writes are committed already, so a failed compaction is logged, not reported to them.
        if space.wants_compaction() {
            if let Err(e) = self.compact(&space).await {
                tracing::warn!(namespace = ns, error = %e, "compaction after replacing writes failed");
            }
        }
        answer
            .await
            .map_err(|_| NodeError::Task("write was not committed".into()))?
    }

    /// Refuses writes while the data dir's disk has less free space than `--min-free-mb` (a write that fills the
    /// disk could leave redb or the blob store unable to commit anything, reads included).
    pub(crate) fn disk_floor(&self) -> Result<(), NodeError> {
        if self.cfg.min_free_bytes == 0 {
            return Ok(());
        }
        let st = rustix::fs::statvfs(&self.cfg.data_dir).map_err(|e| {
            NodeError::Task(format!(
                "cannot read free space of {}: {e}",
                self.cfg.data_dir.display()
            ))
        })?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        if free < self.cfg.min_free_bytes {
            return Err(NodeError::DiskFull(format!(
                "the disk of data dir {} has {} MiB free, below the floor of {} MiB (--min-free-mb): writes are refused until space is freed; reads go on",
                self.cfg.data_dir.display(),
                free >> 20,
                self.cfg.min_free_bytes >> 20
            )));
        }
        Ok(())
    }

    /// Refuses writes to a namespace whose data dir is older than the roots this node already published.
    fn not_forked(&self, ns: &str) -> Result<(), NodeError> {
        let forks = self
            .forks
            .read()
            .map_err(|_| NodeError::Task("fork table poisoned".into()))?;
        match forks.get(ns) {
            Some(why) => Err(NodeError::FailedPrecondition(why.clone())),
            None => Ok(()),
        }
    }

    /// Takes a root of an owned namespace that a peer holds (asked at start-up, [`crate::p2p`]): if it is signed
    /// by this node and newer than this node's latest root (or another root for the same seq), this data dir is
    /// older than what the node already published: a copy restored on a machine whose published-seq record
    /// does not know it. Writes to the namespace are then refused like a restored data dir's (and the seq is
    /// recorded, so a restart still refuses them), unless `--allow-fork` names it. Returns true if it forked.
    pub fn peer_holds_root(&self, ns: &str, peer: &[u8; 32], root: &SignedRoot) -> bool {
        let me = self.node_key();
        if root.record.node_id != me
            || root.record.namespace != ns
            || root.verify(Some(&me)).is_err()
        {
            return false;
        }
        let Ok(space) = self.space(ns) else {
            return false;
        };
        if space.owner.is_some() {
            return false;
        }
        let held = space
            .with_commit(|c| c.root().map(|r| (r.record.seq, r.record.hash())))
            .ok()
            .flatten();
        let (have, have_hash) = held.unwrap_or((0, [0u8; 32]));
        let (seq, hash) = (root.record.seq, root.record.hash());
        if seq < have || (seq == have && hash == have_hash) {
            return false;
        }
        let why = format!(
            "namespace {ns:?}: peer {} holds root seq {seq} ({}) signed by this node, but its data dir holds seq {have}: \
             it was restored from an older copy, and new writes would sign a second root for a published seq. \
             Restore the newest copy of the data dir, or start with --allow-fork {ns} to accept the fork",
            hex::encode(peer),
            hex::encode(hash)
        );
        if self.cfg.allow_fork.iter().any(|n| n == ns) {
            tracing::warn!(namespace = %ns, "{why}; writing anyway (--allow-fork)");
            return false;
        }
        tracing::error!(namespace = %ns, "{why}; writes refused");
        let newer = self
            .signing
            .published
            .get(ns)
            .ok()
            .flatten()
            .is_none_or(|(s, _)| s <= seq);
        if newer {
            if let Err(e) = self.signing.published.record(ns, seq, &hash) {
                tracing::error!(namespace = %ns, error = %e, "cannot record the published seq");
            }
        }
        if let Ok(mut f) = self.forks.write() {
            f.insert(ns.to_owned(), why);
        }
        true
    }

    /// Admits one write (or replica install) unless the node is shutting down; the guard keeps
    /// [`Engine::shutdown`] waiting until the write has finished.
    pub(crate) async fn write_gate(
        &self,
    ) -> Result<tokio::sync::OwnedRwLockReadGuard<bool>, NodeError> {
        let g = self.gate.clone().read_owned().await;
        if *g {
            return Err(NodeError::Unavailable("the node is shutting down".into()));
        }
        Ok(g)
    }

    /// Commits queued writes of one namespace together (the caller holds the write lock): dedup against stored
    /// and in-batch content, records, blobs, rows, graph, commitment and one signed root. Returns each write's
    /// results in order.
    async fn commit_batch(
        &self,
        ns: &str,
        space: &Arc<Space>,
        batch: &[PendingWrite],
    ) -> Result<Vec<Vec<Remembered>>, NodeError> {
        let all_keys: Vec<[u8; 32]> = batch.iter().flat_map(|w| w.keys.iter().copied()).collect();
        // Re-check under the lock: another writer may have stored the same content meanwhile.
        let known = self.find_dedup(ns, &all_keys).await?;
        let mut known = known.into_iter();
        let now = now_ms();
        let mut next = space.next_point();
        let mut new_points = Vec::new();
        let mut records = Vec::new();
        let mut made: HashMap<[u8; 32], Remembered> = HashMap::new();
        let mut results = Vec::with_capacity(batch.len());
        // Keyed items replace the live memory holding their key: stored ones found now, and earlier items of
        // this batch as they are made. Everything replaced is forgotten in the same transaction and root.
        let wanted_keys: HashSet<String> = batch
            .iter()
            .flat_map(|w| w.items.iter())
            .filter_map(|it| it.metadata.get(validate::KEY_META).cloned())
            .collect();
        let mut holder: HashMap<String, (u64, PointRow)> = if wanted_keys.is_empty() {
            HashMap::new()
        } else {
            space.live_keys(&wanted_keys)?
        };
        let mut gone: Vec<Forgotten> = Vec::new();
        let mut buried: HashSet<MemoryId> = HashSet::new();
        for w in batch {
            let mut out = Vec::with_capacity(w.items.len());
            for (i, it) in w.items.iter().enumerate() {
                let key = w.keys[i];
                if let Some(id) = known.next().flatten() {
                    // Memory mirrors the committed rows, so a stored dedup key always has its live memory.
                    let created_at = space.created_at(&id).ok_or_else(|| {
                        NodeError::Task(format!(
                            "memory {id} is in the dedup table but not in namespace {ns:?}"
                        ))
                    })?;
                    if !buried.contains(&id) {
                        out.push(Remembered {
                            id,
                            deduplicated: true,
                            created_at,
                            replaced: None,
                        });
                        continue;
                    }
                    // Replaced by an earlier item of this batch: stored anew below.
                }
                if let Some(r) = made.get(&key) {
                    if !buried.contains(&r.id) {
                        out.push(Remembered {
                            deduplicated: true,
                            replaced: None,
                            ..r.clone()
                        });
                        continue;
                    }
                }
                let vector = match w.vectors.get(&i) {
                    Some(v) => v.clone(),
                    // Known when the call began but forgotten since: embed it now (rare).
                    None => self
                        .embedder
                        .embed(vec![it.text.clone()])
                        .await?
                        .pop()
                        .ok_or_else(|| NodeError::Task("no vector for a new memory".into()))?,
                };
                let record = MemoryRecord {
                    namespace: ns.to_owned(),
                    created_at: it.created_at.unwrap_or(now),
                    salt: rand::random(),
                    text: it.text.clone(),
                    metadata: it.metadata.clone(),
                };
                let bytes = Bytes::from(record.encode());
                let id = MemoryId::of_bytes(&bytes);
                let row = PointRow {
                    id,
                    created_at: record.created_at,
                    alive: true,
                    dedup: key,
                    vector,
                    lex: Some(cairn_index::lexical::DocTerms::of(&record.text).into_terms()),
                    metadata: record.metadata,
                };
                let mut replaced = None;
                if let Some(k) = row.metadata.get(validate::KEY_META) {
                    if let Some((point, old)) = holder.insert(k.clone(), (next, row.clone())) {
                        replaced = Some(old.id);
                        buried.insert(old.id);
                        gone.push(Forgotten { point, row: old });
                    }
                }
                let r = Remembered {
                    id,
                    deduplicated: false,
                    created_at: row.created_at,
                    replaced,
                };
                made.insert(key, r.clone());
                out.push(r);
                records.push(bytes);
                new_points.push(NewPoint { point: next, row });
                next += 1;
            }
            results.push(out);
        }
        if !new_points.is_empty() {
            let t0 = std::time::Instant::now();
            self.blobs.put_all(&records).await?;
            let t_blobs = t0.elapsed();
            let st = self.state.clone();
            let name = ns.to_owned();
            let gone_points: Vec<u64> = gone.iter().map(|g| g.point).collect();
            let new_points =
                tokio::task::spawn_blocking(move || -> Result<Vec<NewPoint>, NodeError> {
                    st.write_points(&name, &new_points, next, &gone)?;
                    Ok(new_points)
                })
                .await??;
            let t_rows = t0.elapsed();
            let (sp, sg) = (space.clone(), self.signing.clone());
            let buried_points = gone_points.clone();
            let root = tokio::task::spawn_blocking(move || {
                sg.with(|s| sp.add(new_points, &buried_points, s))
            })
            .await??;
            tracing::debug!(
                namespace = ns,
                calls = batch.len(),
                items = records.len(),
                blobs_ms = t_blobs.as_secs_f64() * 1e3,
                rows_ms = (t_rows - t_blobs).as_secs_f64() * 1e3,
                index_and_commit_ms = (t0.elapsed() - t_rows).as_secs_f64() * 1e3,
                seq = root.record.seq,
                "remembered"
            );
            let _ = self.roots.send(root);
            if !gone_points.is_empty() {
                // Replaced memories are forgotten: their bytes go like Forget's.
                self.forget_snapshot(ns).await?;
                self.finish_blob_deletes().await?;
            }
        }
        Ok(results)
    }

    async fn find_dedup(
        &self,
        ns: &str,
        keys: &[[u8; 32]],
    ) -> Result<Vec<Option<MemoryId>>, NodeError> {
        if self.space(ns).is_err() {
            return Ok(vec![None; keys.len()]);
        }
        let st = self.state.clone();
        let (name, keys) = (ns.to_owned(), keys.to_vec());
        Ok(tokio::task::spawn_blocking(move || st.find_dedup(&name, &keys)).await??)
    }

    /// Embeds texts (validated like memory texts).
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, NodeError> {
        if texts.is_empty() {
            return Err(NodeError::invalid("texts", "at least one text is required"));
        }
        if texts.len() > MAX_ITEMS {
            return Err(NodeError::too_large(
                "texts",
                format!("{} texts, at most {MAX_ITEMS} per call", texts.len()),
            ));
        }
        for (i, t) in texts.iter().enumerate() {
            validate::text(&format!("texts[{i}]"), t, &self.cfg.limits)?;
        }
        Ok(self.embedder.embed(texts).await?)
    }

    /// The nearest memories to a query, best first, with the mode used; with `opts.proof`, also the proof.
    pub async fn recall(
        &self,
        ns: &str,
        query: Option<Query>,
        opts: RecallOpts,
    ) -> Result<(Vec<HitOut>, Option<Vec<u8>>, RecallMode), NodeError> {
        if !(opts.prefix && ns.is_empty()) {
            validate::namespace(ns)?;
        }
        let f = &opts.filter;
        let filtered = f.since.is_some() || f.until.is_some() || !f.metadata.is_empty();
        let text = matches!(query, Some(Query::Text(_)));
        let mode = match opts.mode {
            Some(m) => m,
            // A filtered Recall without proof keeps the fast graph search; with one, the filtered proof ranks
            // in the node's default mode.
            None if text && !opts.prefix && (!filtered || opts.proof) => self.cfg.recall_mode,
            None => RecallMode::Semantic,
        };
        if mode != RecallMode::Semantic {
            if !text {
                return Err(NodeError::invalid(
                    "mode",
                    "lexical and hybrid recall need a query text",
                ));
            }
            if opts.prefix {
                return Err(NodeError::invalid(
                    "mode",
                    "lexical and hybrid recall do not take a prefix; use mode semantic",
                ));
            }
        }
        if opts.depth > MAX_K {
            return Err(NodeError::invalid(
                "depth",
                format!("{} is more than {MAX_K}", opts.depth),
            ));
        }
        let (hits, proof) = self.recall_in(ns, query, opts, mode).await?;
        Ok((hits, proof, mode))
    }

    async fn recall_in(
        &self,
        ns: &str,
        query: Option<Query>,
        mut opts: RecallOpts,
        mode: RecallMode,
    ) -> Result<(Vec<HitOut>, Option<Vec<u8>>), NodeError> {
        let f = &opts.filter;
        let filtered = f.since.is_some() || f.until.is_some() || !f.metadata.is_empty();
        if opts.proof && opts.prefix {
            return Err(NodeError::invalid(
                "prefix",
                "a search across namespaces is not supported together with proof",
            ));
        }
        if opts.proof && query.is_none() {
            return Err(NodeError::invalid(
                "query",
                "a proof needs a query text or vector",
            ));
        }
        opts.k = match opts.k {
            0 => 10,
            k if k > MAX_K => {
                return Err(NodeError::invalid("k", format!("{k} is more than {MAX_K}")));
            }
            k => k,
        };
        if opts.ef > MAX_EF {
            return Err(NodeError::invalid(
                "ef",
                format!("{} is more than {MAX_EF}", opts.ef),
            ));
        }
        if opts.ef == 0 {
            opts.ef = self.cfg.ef_search as u32;
        }
        opts.ef = opts.ef.max(opts.k);
        if let (Some(s), Some(u)) = (f.since, f.until) {
            if s >= u {
                return Err(NodeError::invalid(
                    "filter",
                    format!("since ({s}) must be before until ({u})"),
                ));
            }
        }
        validate::metadata("filter.metadata", &f.metadata, &self.cfg.limits)?;
        let spaces: Vec<Arc<Space>> = if opts.prefix {
            self.spaces
                .read()
                .map_err(|_| NodeError::Task("namespace table poisoned".into()))?
                .iter()
                .filter(|(name, _)| {
                    ns.is_empty()
                        || name.as_str() == ns
                        || name
                            .strip_prefix(ns)
                            .is_some_and(|rest| rest.starts_with('/'))
                })
                .map(|(_, s)| s.clone())
                .collect()
        } else {
            vec![self.space(ns)?]
        };
        if filtered
            && !opts.prefix
            && query.is_some()
            && (opts.proof || mode != RecallMode::Semantic)
        {
            let Some(space) = spaces.into_iter().next() else {
                return Err(NodeError::NotFound(format!("namespace {ns:?}")));
            };
            return self.filtered(space, query, mode, opts).await;
        }
        let q = match query {
            None => return self.newest(spaces, &opts).await,
            Some(Query::Text(t)) => {
                validate::text("query.text", &t, &self.cfg.limits)?;
                if mode != RecallMode::Semantic {
                    let Some(space) = spaces.into_iter().next() else {
                        return Err(NodeError::NotFound(format!("namespace {ns:?}")));
                    };
                    return self.lexical(space, t, mode, opts).await;
                }
                self.embedder
                    .embed(vec![t])
                    .await?
                    .pop()
                    .ok_or_else(|| NodeError::Task("no query vector".into()))?
            }
            Some(Query::Vector(v)) => self.unit_query(v)?,
        };
        if !opts.prefix {
            let Some(space) = spaces.into_iter().next() else {
                return Err(NodeError::NotFound(format!("namespace {ns:?}")));
            };
            return self.search(space, q, opts).await;
        }
        let k = opts.k as usize;
        let mut hits = Vec::new();
        for space in spaces {
            let (found, _) = self.search(space, q.clone(), opts.clone()).await?;
            hits.extend(found);
        }
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.memory.id.cmp(&b.memory.id))
        });
        hits.truncate(k);
        Ok((hits, None))
    }

    /// Recall without a query: the newest k memories passing the filter across `spaces`, newest first (ties by
    /// id), score 0.
    async fn newest(
        &self,
        spaces: Vec<Arc<Space>>,
        opts: &RecallOpts,
    ) -> Result<(Vec<HitOut>, Option<Vec<u8>>), NodeError> {
        let k = opts.k as usize;
        let mut found: Vec<(u64, MemoryId)> = Vec::new();
        for space in spaces {
            let (page, _) = space.scan(&opts.filter, None, k, true)?;
            found.extend(page);
        }
        found.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        found.truncate(k);
        let ids: Vec<MemoryId> = found.iter().map(|f| f.1).collect();
        let hits = self
            .read_all(&ids)
            .await?
            .into_iter()
            .map(|memory| HitOut { memory, score: 0.0 })
            .collect();
        Ok((hits, None))
    }

    /// Checks a caller's query vector and scales it to unit length.
    fn unit_query(&self, q: Vec<f32>) -> Result<Vec<f32>, NodeError> {
        let dim = self.embedder.info().dim;
        if q.len() != dim {
            return Err(NodeError::invalid(
                "query.vector",
                format!("{} components, the model's dimension is {dim}", q.len()),
            ));
        }
        if q.iter().any(|x| !x.is_finite()) {
            return Err(NodeError::invalid(
                "query.vector",
                "components must be finite numbers",
            ));
        }
        let norm = q.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm < 1e-6 {
            return Err(NodeError::invalid(
                "query.vector",
                "must not be the zero vector",
            ));
        }
        Ok(q.iter().map(|x| x / norm).collect())
    }

    /// Runs a validated Recall on a unit query vector.
    async fn search(
        &self,
        space: Arc<Space>,
        q: Vec<f32>,
        opts: RecallOpts,
    ) -> Result<(Vec<HitOut>, Option<Vec<u8>>), NodeError> {
        let (k, ef) = (opts.k as usize, opts.ef as usize);
        let points = space.stats().index_points;
        self.exact_allowed(opts.exact, points)?;
        if opts.proof {
            let exact = opts.exact || points <= self.cfg.exact_proof_limit;
            let (found, transcript) = tokio::task::spawn_blocking(move || {
                space.with_commit(|c| c.prove_recall(&q, k, ef, exact))
            })
            .await??
            .ok_or_else(|| {
                NodeError::FailedPrecondition("namespace has no signed root yet".into())
            })?;
            let ids: Vec<MemoryId> = found.iter().map(|f| f.1).collect();
            let hits = self
                .read_all(&ids)
                .await?
                .into_iter()
                .zip(found)
                .map(|(memory, (d, _))| HitOut {
                    memory,
                    score: cairn_index::proof::proof_score(d),
                })
                .collect();
            return Ok((hits, Some(transcript.encode())));
        }
        let found = tokio::task::spawn_blocking(move || {
            space.search(&Search {
                query: &q,
                k,
                ef,
                filter: &opts.filter,
                exact: opts.exact,
            })
        })
        .await??;
        let ids: Vec<MemoryId> = found.iter().map(|f| f.0).collect();
        let hits = self
            .read_all(&ids)
            .await?
            .into_iter()
            .zip(found)
            .map(|(memory, (_, score))| HitOut { memory, score })
            .collect();
        Ok((hits, None))
    }

    /// Refuses an exact search over more memories than `--max-exact` allows.
    fn exact_allowed(&self, exact: bool, points: u64) -> Result<(), NodeError> {
        if exact && points > self.cfg.max_exact {
            return Err(NodeError::too_large(
                "exact",
                format!(
                    "an exact search here scores {points} memories, more than this node allows per call ({}, --max-exact)",
                    self.cfg.max_exact
                ),
            ));
        }
        Ok(())
    }

    /// Lexical or hybrid Recall on a validated text query: the hits of the deterministic ranking over the
    /// committed state (docs/PROOFS.md), and with `opts.proof` its `CPX1` proof.
    async fn lexical(
        &self,
        space: Arc<Space>,
        text: String,
        mode: RecallMode,
        opts: RecallOpts,
    ) -> Result<(Vec<HitOut>, Option<Vec<u8>>), NodeError> {
        let (k, ef) = (opts.k as usize, opts.ef as usize);
        let depth = match opts.depth {
            0 => self.cfg.fusion_depth,
            d => d as usize,
        }
        .max(k);
        let points = space.stats().index_points;
        self.exact_allowed(opts.exact, points)?;
        let vector = if mode == RecallMode::Hybrid {
            Some(
                self.embedder
                    .embed(vec![text.clone()])
                    .await?
                    .pop()
                    .ok_or_else(|| NodeError::Task("no query vector".into()))?,
            )
        } else {
            None
        };
        let exact = opts.exact || points <= self.cfg.exact_proof_limit;
        let pmode = if mode == RecallMode::Hybrid {
            cairn_index::hybrid::MODE_HYBRID
        } else {
            cairn_index::hybrid::MODE_LEXICAL
        };
        let with_proof = opts.proof;
        let (found, proof) = tokio::task::spawn_blocking(move || {
            space.with_commit(|c| {
                c.prove_hybrid(
                    pmode,
                    vector.as_deref(),
                    &text,
                    k,
                    depth,
                    ef,
                    exact,
                    with_proof,
                )
            })
        })
        .await??
        .ok_or_else(|| {
            NodeError::FailedPrecondition(
                "namespace has no signed root with a lexical index yet".into(),
            )
        })?;
        Ok((
            self.scored_hits(found).await?,
            opts.proof.then(|| proof.encode()),
        ))
    }

    /// Filtered Recall in any mode, ranked exactly over the memories the filter allows (docs/PROOFS.md,
    /// "Filtered recall proof"), and with `opts.proof` its `CPF1` proof. More candidates than
    /// `--max-filter-candidates` is RESOURCE_EXHAUSTED.
    async fn filtered(
        &self,
        space: Arc<Space>,
        query: Option<Query>,
        mode: RecallMode,
        opts: RecallOpts,
    ) -> Result<(Vec<HitOut>, Option<Vec<u8>>), NodeError> {
        use cairn_index::filtered::{FMODE_HYBRID, FMODE_LEXICAL, FMODE_SEMANTIC};
        let k = opts.k as usize;
        let depth = match opts.depth {
            0 => self.cfg.fusion_depth,
            d => d as usize,
        }
        .max(k);
        let (text, vector) = match query {
            Some(Query::Text(t)) => {
                validate::text("query.text", &t, &self.cfg.limits)?;
                let v = if mode == RecallMode::Lexical {
                    None
                } else {
                    self.embedder.embed(vec![t.clone()]).await?.pop()
                };
                (t, v)
            }
            Some(Query::Vector(v)) => (String::new(), Some(self.unit_query(v)?)),
            None => {
                return Err(NodeError::invalid(
                    "query",
                    "a filtered ranking needs a query",
                ));
            }
        };
        let pmode = match mode {
            RecallMode::Semantic => FMODE_SEMANTIC,
            RecallMode::Lexical => FMODE_LEXICAL,
            RecallMode::Hybrid => FMODE_HYBRID,
        };
        let filter = cairn_index::filtered::RecallFilter {
            pairs: opts
                .filter
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            since: opts.filter.since,
            until: opts.filter.until,
        };
        if filter.pairs.len() > cairn_index::filtered::MAX_FILTER_PAIRS {
            return Err(NodeError::invalid(
                "filter.metadata",
                format!(
                    "at most {} pairs in a ranked filter",
                    cairn_index::filtered::MAX_FILTER_PAIRS
                ),
            ));
        }
        let max = usize::try_from(self.cfg.max_filter_candidates).unwrap_or(usize::MAX);
        let result = tokio::task::spawn_blocking(move || {
            space.with_commit(|c| {
                c.prove_filtered(pmode, vector.as_deref(), &text, k, depth, &filter, max)
            })
        })
        .await??;
        let (found, proof) = result.map_err(|e| match e {
            commitment::FilterRefused::TooBroad(n) => NodeError::too_large(
                "filter",
                format!(
                    "{n} memories can pass this filter; a ranked filtered Recall scores them exactly, and this node allows {} per call (--max-filter-candidates): add a metadata pair or use mode semantic without a proof",
                    self.cfg.max_filter_candidates
                ),
            ),
            commitment::FilterRefused::NoRoot => NodeError::FailedPrecondition(e.to_string()),
            commitment::FilterRefused::Stale => NodeError::Unavailable(e.to_string()),
            other => NodeError::Task(other.to_string()),
        })?;
        Ok((
            self.scored_hits(found).await?,
            opts.proof.then(|| proof.encode()),
        ))
    }

    /// The hits of a ranking: each (score, id)'s record read and decoded, in rank order.
    async fn scored_hits(&self, found: Vec<(f32, MemoryId)>) -> Result<Vec<HitOut>, NodeError> {
        let ids: Vec<MemoryId> = found.iter().map(|f| f.1).collect();
        Ok(self
            .read_all(&ids)
            .await?
            .into_iter()
            .zip(found)
            .map(|(memory, (score, _))| HitOut { memory, score })
            .collect())
    }

    /// Reads and decodes records, in order (in bulk: record files directly, packs a pack at a time).
    async fn read_all(&self, ids: &[MemoryId]) -> Result<Vec<MemoryOut>, NodeError> {
        let bytes = self.records_bulk(ids).await?;
        ids.iter()
            .zip(bytes)
            .map(|(id, bytes)| {
                let record = MemoryRecord::decode(&bytes).map_err(|e| {
                    NodeError::Task(format!("stored record {id} does not decode: {e}"))
                })?;
                Ok(MemoryOut {
                    id: *id,
                    record,
                    bytes,
                })
            })
            .collect()
    }

    /// Memories by id, in request order; unknown or forgotten ids are returned as missing. With `proof`, also a
    /// time proof covering the memories found, taken under the same lock as the lookup.
    /// `keys` name memories by their key (see [`validate::KEY_META`]); a key no live memory holds is missing.
    pub async fn get(
        &self,
        ns: &str,
        ids: &[MemoryId],
        keys: &[String],
        proof: bool,
    ) -> Result<Got, NodeError> {
        item_count("keys", "ids and keys", ids.len() + keys.len())?;
        for (i, k) in keys.iter().enumerate() {
            validate::key(&format!("keys[{i}]"), k)?;
        }
        let space = self.space(ns)?;
        let mut seen = HashSet::new();
        let mut wanted = Vec::new();
        for &id in ids {
            if seen.insert(id) {
                wanted.push((id.to_hex(), id));
            }
        }
        let mut missing = Vec::new();
        if !keys.is_empty() {
            let held = space.live_keys(&keys.iter().cloned().collect())?;
            for k in keys {
                match held.get(k) {
                    Some((_, row)) => {
                        if seen.insert(row.id) {
                            wanted.push((row.id.to_hex(), row.id));
                        }
                    }
                    None => missing.push(k.clone()),
                }
            }
        }
        let (live, _) = space.live_with_proof(wanted.iter().map(|w| w.1).collect(), false)?;
        let mut present = Vec::new();
        for ((raw, id), is_live) in wanted.into_iter().zip(live) {
            if is_live {
                present.push((raw, id));
            } else {
                missing.push(raw);
            }
        }
        // Read a few at a time and stop at the byte cap (one memory at least): the rest is named, not sent.
        let mut found: Vec<MemoryOut> = Vec::new();
        let mut bytes = 0usize;
        let mut next = 0;
        while next < present.len() && (found.is_empty() || bytes < self.cfg.max_page_bytes) {
            let end = (next + GET_CHUNK).min(present.len());
            let ids: Vec<MemoryId> = present[next..end].iter().map(|p| p.1).collect();
            let mut got = self.read_all(&ids).await?;
            let room = self.cfg.max_page_bytes.saturating_sub(bytes);
            let fits = fitting(&got, room, found.is_empty());
            got.truncate(fits);
            bytes += got.iter().map(|m| m.bytes.len()).sum::<usize>();
            next += fits;
            found.extend(got);
            if next < end {
                break;
            }
        }
        let unreturned: Vec<String> = present[next..].iter().map(|p| p.0.clone()).collect();
        let proof = if proof {
            // Proven after reading, over exactly what is returned. A memory forgotten meanwhile is reported
            // missing (and the proof taken again without it), never returned unproven.
            loop {
                let (live, p) =
                    space.live_with_proof(found.iter().map(|m| m.id).collect(), true)?;
                if live.iter().all(|l| *l) {
                    break p.map(|p| p.encode());
                }
                let (kept, gone): (Vec<_>, Vec<_>) =
                    found.into_iter().zip(live).partition(|(_, l)| *l);
                missing.extend(gone.into_iter().map(|(m, _)| m.id.to_hex()));
                found = kept.into_iter().map(|(m, _)| m).collect();
            }
        } else {
            None
        };
        Ok(Got {
            found,
            missing,
            unreturned,
            proof,
        })
    }

    /// One page of memories in (created_at, id) order, the token of the next page (empty if none), and with
    /// `proof` a range-completeness proof of the page.
    /// With a `metadata` filter (not combinable with `proof`), only the memories holding every pair.
    #[allow(clippy::too_many_arguments)]
    pub async fn list(
        &self,
        ns: &str,
        since: Option<u64>,
        until: Option<u64>,
        limit: u32,
        after: Option<(u64, MemoryId)>,
        proof: bool,
        metadata: &Metadata,
    ) -> Result<ListPage, NodeError> {
        let space = self.space(ns)?;
        if proof && !metadata.is_empty() {
            return Err(NodeError::invalid(
                "metadata",
                "a metadata filter is not supported together with proof",
            ));
        }
        validate::metadata("metadata", metadata, &self.cfg.limits)?;
        let limit = match limit {
            0 => 100,
            l if l > MAX_PAGE => {
                return Err(NodeError::invalid(
                    "limit",
                    format!("{l} is more than {MAX_PAGE}"),
                ));
            }
            l => l,
        } as usize;
        let (since, until) = (since.unwrap_or(0), until.unwrap_or(u64::MAX));
        if since >= until {
            return Err(NodeError::invalid(
                "since",
                format!("since ({since}) must be before until ({until})"),
            ));
        }
        if !metadata.is_empty() {
            let filter = Filter {
                metadata: metadata.clone(),
                since: Some(since),
                until: Some(until),
            };
            let mut limit = limit;
            let (page, more, out) = loop {
                let (page, more) = space.scan(&filter, after, limit, false)?;
                let ids: Vec<MemoryId> = page.iter().map(|e| e.1).collect();
                let out = self.read_all(&ids).await?;
                let fits = fitting(&out, self.cfg.max_page_bytes, true);
                if fits >= out.len() || fits >= limit {
                    break (page, more, out);
                }
                limit = fits;
            };
            return Ok(ListPage {
                memories: out,
                next: page.last().copied().filter(|_| more),
                proof: None,
            });
        }
        // A page ends early rather than exceed --max-page-mb: a shorter page is asked for again (under the then
        // current root, so page and proof stay one consistent answer). Each round shortens the page.
        let mut limit = limit;
        let (page, more, time_proof, out) = loop {
            let (page, more, time_proof) = space
                .with_commit(|c| c.list_page(since, until, after, limit))?
                .ok_or_else(|| {
                    NodeError::FailedPrecondition("namespace has no signed root yet".into())
                })?;
            let ids: Vec<MemoryId> = page.iter().map(|e| e.id).collect();
            let out = self.read_all(&ids).await?;
            let fits = fitting(&out, self.cfg.max_page_bytes, true);
            if fits >= out.len() || fits >= limit {
                break (page, more, time_proof, out);
            }
            limit = fits;
        };
        Ok(ListPage {
            memories: out,
            next: page.last().map(|e| (e.created_at, e.id)).filter(|_| more),
            proof: proof.then(|| time_proof.encode()),
        })
    }

    /// The latest signed root of a namespace, or the one with `seq`.
    pub async fn root(&self, ns: &str, seq: Option<u64>) -> Result<SignedRoot, NodeError> {
        let space = self.space(ns)?;
        match seq {
            None => space.with_commit(|c| c.root().cloned())?.ok_or_else(|| {
                NodeError::FailedPrecondition("namespace has no signed root yet".into())
            }),
            Some(seq) => {
                let st = self.state.clone();
                let name = ns.to_owned();
                tokio::task::spawn_blocking(move || st.root_at(&name, seq))
                    .await??
                    .ok_or_else(|| {
                        NodeError::NotFound(format!("namespace {ns:?} has no root with seq {seq}"))
                    })
            }
        }
    }

    /// New roots of every namespace, as they are signed.
    pub fn watch_roots(&self) -> tokio::sync::broadcast::Receiver<SignedRoot> {
        self.roots.subscribe()
    }

    /// The node id (hex ed25519 public key).
    pub fn node_id(&self) -> String {
        crate::identity::node_id_hex(&self.key)
    }

    /// Forgets memories: gone from every read when this returns; blob bytes are unpinned for deletion. The
    /// durable part runs in its own task, so a caller that goes away cannot interrupt it.
    pub async fn forget(
        self: &Arc<Self>,
        ns: &str,
        ids: &[MemoryId],
    ) -> Result<(Vec<String>, Vec<String>), NodeError> {
        item_count("ids", "ids", ids.len())?;
        let space = self.space(ns)?;
        writable(&space)?;
        self.not_forked(ns)?;
        let mut wanted = Vec::new();
        let mut seen = HashSet::new();
        for &id in ids {
            if seen.insert(id) {
                wanted.push((id.to_hex(), id));
            }
        }
        let gate = self.write_gate().await?;
        let me = self.clone();
        let ns = ns.to_owned();
        tokio::spawn(async move {
            let _gate = gate;
            me.forget_locked(&ns, &space, wanted).await
        })
        .await?
    }

    async fn forget_locked(
        &self,
        ns: &str,
        space: &Arc<Space>,
        wanted: Vec<(String, MemoryId)>,
    ) -> Result<(Vec<String>, Vec<String>), NodeError> {
        let w = space.write.lock().await;
        let mut gone = Vec::new();
        let (mut forgotten, mut missing) = (Vec::new(), Vec::new());
        for (raw, id) in wanted {
            match space.live_row(&id)? {
                Some((point, row)) => {
                    gone.push(Forgotten { point, row });
                    forgotten.push(id.to_hex());
                }
                None => missing.push(raw),
            }
        }
        if !gone.is_empty() {
            let st = self.state.clone();
            let name = ns.to_owned();
            let gone = tokio::task::spawn_blocking(move || -> Result<Vec<Forgotten>, NodeError> {
                st.forget(&name, &gone)?;
                Ok(gone)
            })
            .await??;
            let points: Vec<u64> = gone.iter().map(|g| g.point).collect();
            let (sp, sg) = (space.clone(), self.signing.clone());
            let root = tokio::task::spawn_blocking(move || sg.with(|s| sp.tombstone(&points, s)))
                .await??;
            let _ = self.roots.send(root);
            // The namespace's snapshot held the forgotten bytes too.
            self.forget_snapshot(ns).await?;
            self.finish_blob_deletes().await?;
        }
        drop(w);
        if space.wants_compaction() {
            self.compact(space).await?;
        }
        Ok((forgotten, missing))
    }

    /// Records of `ids` in order, checked against their ids. Records in packs are read one pack at a time (a
    /// whole pack once when many of its records are wanted, else their ranges); the others from their own
    /// blobs' files.
    pub async fn records_bulk(&self, ids: &[MemoryId]) -> Result<Vec<Bytes>, NodeError> {
        let locs = self.pack_locs(ids.to_vec()).await?;
        let mut out: Vec<Option<Bytes>> = vec![None; ids.len()];
        let mut by_pack: HashMap<[u8; 32], Vec<usize>> = HashMap::new();
        let mut loose = Vec::new();
        for (i, l) in locs.iter().enumerate() {
            match l {
                Some(l) => by_pack.entry(l.pack).or_default().push(i),
                None => loose.push(i),
            }
        }
        for (pack, idx) in by_pack {
            // A few records of a pack (a Recall's hits): read just their ranges, not the whole page.
            if idx.len() < FEW_OF_A_PACK {
                for i in idx {
                    let (id, l) = (ids[i], locs[i].as_ref());
                    let l = l.ok_or(crate::blobs::BlobError::Missing(id))?;
                    let rec = self.blobs.read_range(l.pack, l.offset, l.len).await?;
                    if MemoryId::of_bytes(&rec) != id {
                        return Err(crate::blobs::BlobError::Missing(id).into());
                    }
                    out[i] = Some(rec);
                }
                continue;
            }
            let bytes = self.blobs.get_raw(pack).await?;
            for i in idx {
                let (id, l) = (ids[i], locs[i].as_ref());
                let rec = l
                    .and_then(|l| {
                        let start = l.offset as usize;
                        bytes.get(start..start + l.len as usize)
                    })
                    .map(|s| bytes.slice_ref(s))
                    .filter(|r| MemoryId::of_bytes(r) == id)
                    .ok_or(crate::blobs::BlobError::Missing(id))?;
                out[i] = Some(rec);
            }
        }
        let loose_ids: Vec<MemoryId> = loose.iter().map(|&i| ids[i]).collect();
        for (i, b) in loose
            .into_iter()
            .zip(self.blobs.get_many(&loose_ids).await?)
        {
            out[i] = Some(b);
        }
        out.into_iter()
            .zip(ids)
            .map(|(b, id)| b.ok_or_else(|| crate::blobs::BlobError::Missing(*id).into()))
            .collect()
    }

    /// True if this node holds the record (as its own blob or in a pack).
    pub async fn has_record(&self, id: &MemoryId) -> bool {
        if self.blobs.has(id).await {
            return true;
        }
        matches!(self.pack_locs(vec![*id]).await, Ok(v) if v.first().is_some_and(Option::is_some))
    }

    /// Where `ids` sit in packs (None: not in a pack).
    pub(crate) async fn pack_locs(
        &self,
        ids: Vec<MemoryId>,
    ) -> Result<Vec<Option<crate::store::PackLoc>>, NodeError> {
        let st = self.state.clone();
        Ok(tokio::task::spawn_blocking(move || st.pack_locs(&ids)).await??)
    }

    async fn finish_blob_deletes(&self) -> Result<(), NodeError> {
        let st = self.state.clone();
        let pending = tokio::task::spawn_blocking(move || st.pending_blob_deletes()).await??;
        if pending.is_empty() {
            return Ok(());
        }
        self.blobs.delete(&pending).await?;
        let st = self.state.clone();
        tokio::task::spawn_blocking(move || st.blob_deletes_done(&pending)).await??;
        Ok(())
    }

    /// Rebuilds a namespace's graph without its tombstones (renumbering points).
    pub async fn compact(&self, space: &Arc<Space>) -> Result<(), NodeError> {
        let _w = space.write.lock().await;
        let sp = space.clone();
        let st = self.state.clone();
        let params = self.params;
        let sg = self.signing.clone();
        tokio::task::spawn_blocking(move || -> Result<(), NodeError> {
            // From redb, with their vectors (rows in memory hold none); the write lock keeps both the same.
            let live: Vec<_> = st
                .load_points(&sp.name)?
                .into_iter()
                .filter(|r| r.alive)
                .collect();
            st.compact(&sp.name, &live)?;
            sg.with(|s| sp.replace(live, params, s))?;
            Ok(())
        })
        .await??;
        tracing::info!(namespace = %space.name, "compacted");
        Ok(())
    }

    /// Counts for one namespace or all.
    pub fn stats(&self, ns: Option<&str>) -> Result<Vec<SpaceStats>, NodeError> {
        match ns {
            Some(ns) => Ok(vec![self.space(ns)?.stats()]),
            None => Ok(self
                .spaces
                .read()
                .map_err(|_| NodeError::Task("namespace table poisoned".into()))?
                .values()
                .map(|s| s.stats())
                .collect()),
        }
    }

    /// Saves every namespace's graph that changed since its last save.
    pub async fn save_indexes(&self) {
        self.save_where(|sp| sp.needs_save()).await;
    }

    /// One scrub pass (every `--scrub-secs`): rewrites the saved graphs that still hold forgotten vectors, then,
    /// if anything was forgotten since the last pass, the state file (see [`State::vacuum`]). After it, nothing
    /// of a memory forgotten before the pass began is left in the node's files.
    pub async fn scrub(&self) -> Result<(), NodeError> {
        self.save_where(|sp| sp.dump_stale()).await;
        let st = self.state.clone();
        if !tokio::task::spawn_blocking(move || st.scrub_due()).await?? {
            return Ok(());
        }
        let now = std::time::Instant::now();
        if self
            .next_vacuum
            .lock()
            .is_ok_and(|g| g.is_some_and(|t| now < t))
        {
            return Ok(());
        }
        let st = self.state.clone();
        let t0 = std::time::Instant::now();
        let v = tokio::task::spawn_blocking(move || st.vacuum()).await??;
        let took = t0.elapsed();
        if let Ok(mut g) = self.next_vacuum.lock() {
            *g = Some(std::time::Instant::now() + took * VACUUM_SPACING);
        }
        metrics::counter!("cairn_vacuum_total").increment(1);
        metrics::counter!("cairn_vacuum_bytes_freed_total")
            .increment(v.before.saturating_sub(v.after));
        tracing::info!(
            ms = took.as_millis() as u64,
            bytes_before = v.before,
            bytes_after = v.after,
            "state file rewritten without forgotten data"
        );
        Ok(())
    }

    async fn save_where(&self, wanted: impl Fn(&Space) -> bool) {
        let spaces: Vec<Arc<Space>> = match self.spaces.read() {
            Ok(s) => s.values().cloned().collect(),
            Err(_) => return,
        };
        for sp in spaces {
            if !wanted(&sp) {
                continue;
            }
            let _w = sp.write.lock().await;
            if sp.dropped.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            let s = sp.clone();
            match tokio::task::spawn_blocking(move || s.save()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(namespace = %sp.name, error = %e, "index save failed"),
                Err(e) => {
                    tracing::warn!(namespace = %sp.name, error = %e, "index save task failed")
                }
            }
        }
    }

    /// Waits for writes in progress (refusing new ones), then saves indexes and closes the blob store.
    pub async fn shutdown(&self) {
        *self.gate.write().await = true;
        self.save_indexes().await;
        if let Err(e) = self.scrub().await {
            tracing::warn!(error = %e, "scrub at shutdown failed; it runs again at the next start");
        }
        if let Err(e) = self.blobs.shutdown().await {
            tracing::warn!(error = %e, "blob store shutdown");
        }
    }
}

/// Why `latest` (the newest root in the data dir) is older than what this node published for `ns`, if it is.
fn restored_fork(
    ns: &str,
    latest: Option<&SignedRoot>,
    published: &crate::published::Published,
) -> Result<Option<String>, NodeError> {
    let Some((seq, hash)) = published
        .get(ns)
        .map_err(|e| NodeError::Task(e.to_string()))?
    else {
        return Ok(None);
    };
    let (have, have_hash) = latest.map_or((0, [0u8; 32]), |r| (r.record.seq, r.record.hash()));
    if seq > have || (seq == have && hash != have_hash) {
        return Ok(Some(format!(
            "namespace {ns:?}: this node already published root seq {seq} ({}), but its data dir holds seq {have}: \
             it was restored from an older copy, and new writes would sign a second root for a published seq. \
             Restore the newest copy of the data dir, or start with --allow-fork {ns} to accept the fork",
            hex::encode(hash)
        )));
    }
    Ok(None)
}

/// Refuses writes to a replica: one writer per namespace, its owner.
fn writable(space: &Space) -> Result<(), NodeError> {
    match space.owner {
        None => Ok(()),
        Some(o) => Err(NodeError::FailedPrecondition(format!(
            "namespace {:?} is a read-only replica; its owner {} takes writes",
            space.name,
            hex::encode(o)
        ))),
    }
}

/// How many memories from the start of `page` fit in `max` bytes (at least one if `one_at_least`).
fn fitting(page: &[MemoryOut], max: usize, one_at_least: bool) -> usize {
    let mut total = 0usize;
    page.iter()
        .position(|m| {
            total = total.saturating_add(m.bytes.len());
            total > max
        })
        .map_or(page.len(), |i| if one_at_least { i.max(1) } else { i })
}

/// Gives rows written before the lexical index existed their index terms, from their records (owner
/// namespaces keep each record as its own blob), and stores them, so the first root after an upgrade commits
/// every memory's terms.
async fn fill_terms(
    st: &Arc<State>,
    blobs: &Blobs,
    ns: &str,
    mut rows: Vec<PointRow>,
) -> Result<Vec<PointRow>, NodeError> {
    let missing: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].alive && rows[i].lex.is_none())
        .collect();
    if missing.is_empty() {
        return Ok(rows);
    }
    let ids: Vec<MemoryId> = missing.iter().map(|&i| rows[i].id).collect();
    let records = blobs.get_many(&ids).await?;
    let mut filled = Vec::with_capacity(missing.len());
    for (&i, bytes) in missing.iter().zip(records) {
        let rec = MemoryRecord::decode(&bytes)
            .map_err(|e| NodeError::Task(format!("record {}: {e}", rows[i].id)))?;
        rows[i].lex = Some(cairn_index::lexical::DocTerms::of(&rec.text).into_terms());
        filled.push((i, rows[i].clone()));
    }
    let (st, n, count) = (st.clone(), ns.to_owned(), filled.len());
    tokio::task::spawn_blocking(move || st.fill_terms(&n, &filled)).await??;
    tracing::info!(
        namespace = ns,
        memories = count,
        "indexed the terms of memories written before the lexical index"
    );
    Ok(rows)
}
