//! `cairn-bench`: measures a real node (the `cairn` binary next to this one, over gRPC on loopback) with real
//! embeddings and real data sets from `../shared/data`. Results go to stdout as Markdown-ready lines; record them
//! in docs/BENCHMARKS.md together with the command.
//!
//! - `ingest`: raw model throughput (fastembed in this process, batches of 32) vs end-to-end Remember throughput
//!   (batches of 32 over gRPC, durable), measured one after the other in the same run on the same texts.
//! - `recall`: Recall latency (text query, k=10) p50/p99 at 10k and 100k memories.
//! - `scifact`: BEIR SciFact nDCG@10 / recall@10 with exact search and with HNSW search.
//! - `locomo`: LoCoMo evidence recall@5/@10 per question category (every turn a memory in its conversation's
//!   namespace), without and with verified proofs, and Recall latency.
//! - `scale`: growth curves with caller vectors (no embedding): one-item commit latency, vector Recall latency
//!   and recall@10 against exact f32 search, proof size and verify time, node RSS, at growing sizes.
//! - `graph`: the HNSW graph alone, in process: insert rate and cost, points relinked per insert, search latency
//!   and recall@10, heap bytes per point, at growing sizes (up to millions of points without a node).
//! - `trees`: the commitment trees' work per one-item write, in process: root version 3's paged trees against
//!   rebuilding whole CBMTs as version 2 did, at growing sizes (up to millions of leaves without a node).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cairn_client::{CairnClient, NewMemory};
use cairn_server::embed::{load_model, EmbedConfig};
use clap::{Parser, Subcommand};
use futures::stream::{self, StreamExt};
use serde_json::Value;

#[derive(Parser)]
#[command(name = "cairn-bench", about = "Benchmarks of a real Cairn node")]
struct Args {
    /// Directory with scifact/ and locomo/ (default ../shared/data, relative to the current directory: run from the repository root).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// Keep the node's data dir here instead of a temporary one.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Raw model vs end-to-end Remember throughput.
    Ingest {
        /// Texts to ingest.
        #[arg(long, default_value_t = 4096)]
        n: usize,
        /// Remember calls in flight.
        #[arg(long, default_value_t = 4)]
        in_flight: usize,
    },
    /// Query embedding latency: one short text per model call (LoCoMo questions), as a Recall embeds its query.
    /// The raw model at each intra-op thread count, then through the node's embedding worker (queue included).
    Embed {
        /// Questions to embed, one per call.
        #[arg(long, default_value_t = 300)]
        queries: usize,
        /// ONNX Runtime intra-op thread counts to measure (0: the runtime's default, all cores).
        #[arg(long, value_delimiter = ',', default_values_t = vec![0usize, 1, 2])]
        threads: Vec<usize>,
    },
    /// Recall latency at growing namespace sizes.
    Recall {
        /// Sizes to measure at (memories).
        #[arg(long, value_delimiter = ',', default_values_t = vec![10_000usize, 100_000])]
        sizes: Vec<usize>,
        /// Queries per size.
        #[arg(long, default_value_t = 1000)]
        queries: usize,
    },
    /// SciFact nDCG@10 in each mode (semantic exact and HNSW, lexical, hybrid).
    Scifact,
    /// LoCoMo evidence recall@5/@10 per category over the non-adversarial questions with evidence, without and
    /// with a verified proof, plus Recall latency.
    Locomo {
        /// What each memory holds: `rag` (LoCoMo's RAG string: date, speaker, text, image caption) or `text`.
        #[arg(long, default_value = "rag")]
        text: String,
        /// Also run every question with proof = true, verifying each answer.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        verify: bool,
        /// Recall modes to measure (comma-separated: semantic, lexical, hybrid).
        #[arg(long, value_delimiter = ',', default_value = "semantic,lexical,hybrid")]
        modes: Vec<String>,
        /// Fusion depth of lexical and hybrid recall (0: the node's default).
        #[arg(long, default_value_t = 0)]
        depth: u32,
        /// Filter each question by `speaker` = the speaker of its first evidence turn (an agent that knows whose
        /// memories it wants): measures filtered recall and its `CPF1` proof.
        #[arg(long)]
        filter_speaker: bool,
    },
    /// Recall proofs on an existing namespace (use --data-dir of a `recall` run): proof size, time to answer
    /// with a proof, client verify time, and recall@10 of the proof search against exact search.
    Proofs {
        /// Namespace to query.
        #[arg(long, default_value = "bench/recall")]
        ns: String,
        /// Queries.
        #[arg(long, default_value_t = 200)]
        queries: usize,
        /// Search breadth of the proof search.
        #[arg(long, default_value_t = 64)]
        ef: u32,
        /// Recall mode: semantic (`CPR2` proofs), lexical or hybrid (`CPX1` proofs, checked against the query
        /// text's terms).
        #[arg(long, default_value = "semantic")]
        mode: String,
    },
    /// Load: concurrent clients of mixed Remember / Recall / List / verified Recall for a while, one client
    /// opening and dropping WatchRoots streams, and an import of long texts, all at once against one node.
    /// Reports p50/p99 per call, errors (load shedding apart), acknowledged memories lost, peak RSS, and RSS
    /// after the load against the idle baseline.
    Load {
        /// Concurrent clients of mixed calls.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds the mixed clients run.
        #[arg(long, default_value_t = 60)]
        secs: u64,
        /// WatchRoots streams opened and dropped one after another.
        #[arg(long, default_value_t = 10_000)]
        watch_streams: usize,
        /// Long texts imported (batches of 64) meanwhile.
        #[arg(long, default_value_t = 10_000)]
        import: usize,
    },
    /// The scrub after a Forget: time to rewrite the state file (the vacuum) holding N memories of the model's
    /// dimension, i.e. how long other state calls wait once per --scrub-secs when something was forgotten.
    Scrub {
        /// Sizes to measure at (memories).
        #[arg(long, value_delimiter = ',', default_values_t = vec![10_000usize, 100_000])]
        sizes: Vec<usize>,
    },
    /// What token checks add to a Recall: two nodes with the same memories, one checking tokens (an agent's
    /// two-block attenuated token) and one started with --no-auth, queried alternately by vector (no embedding in
    /// the timing), p50 of each; plus the in-process cost of one check (cached token) and of parsing a token.
    Auth {
        /// Memories per node.
        #[arg(long, default_value_t = 1000)]
        memories: usize,
        /// Queries per node.
        #[arg(long, default_value_t = 2000)]
        queries: usize,
    },
    /// Growth with caller vectors (an external-model namespace, so no embedding in any figure): ingest to each
    /// size, then one-item commit latency, vector Recall latency and recall@10 against exact f32 search, verified
    /// proof size and verify time, and the node's RSS. Vectors are synthetic (see [`synthetic_vector`]).
    Scale {
        /// Sizes to measure at (memories).
        #[arg(long, value_delimiter = ',', default_values_t = vec![10_000usize, 100_000])]
        sizes: Vec<usize>,
        /// Vector queries per size (latency and recall@10).
        #[arg(long, default_value_t = 500)]
        queries: usize,
        /// One-item Remembers per size (commit latency).
        #[arg(long, default_value_t = 50)]
        commits: usize,
        /// Recalls with a verified proof per size.
        #[arg(long, default_value_t = 50)]
        proofs: usize,
        /// Vector dimension.
        #[arg(long, default_value_t = 384)]
        dim: u32,
        /// Search breadth.
        #[arg(long, default_value_t = 64)]
        ef: u32,
    },
    /// Vector Recall over real all-MiniLM-L6-v2 embeddings: the `recall` corpus (LoCoMo turns, then SciFact
    /// sentences) embedded by the node, stored with their vectors in a namespace of an external model (so the
    /// queries skip embedding, as in `scale`), and LoCoMo/SciFact questions embedded the same way. Reports latency
    /// and recall@10 against exact f32 search per ef, and of the node's exact search over the int8 codes.
    Vectors {
        /// Memories.
        #[arg(long, default_value_t = 10_000)]
        n: usize,
        /// Queries.
        #[arg(long, default_value_t = 500)]
        queries: usize,
        /// Search breadths to measure.
        #[arg(long, value_delimiter = ',', default_values_t = vec![64u32, 128])]
        efs: Vec<u32>,
    },
    /// The HNSW graph alone (`cairn_index::hnsw`), in process (no node): inserts up to each size (rate, per-insert
    /// time and how many points each insert relinks, which is what a commit re-reads), then vector searches
    /// (k=10) with recall@10 against exact search over the same int8 codes, and the graph's heap bytes per point.
    /// Vectors are the synthetic distribution of `scale`.
    Graph {
        /// Sizes to measure at (points).
        #[arg(long, value_delimiter = ',', default_values_t = vec![10_000usize, 100_000, 1_000_000])]
        sizes: Vec<usize>,
        /// Searches per size.
        #[arg(long, default_value_t = 200)]
        queries: usize,
        /// Vector dimension.
        #[arg(long, default_value_t = 384)]
        dim: u32,
        /// Links per point (M).
        #[arg(long, default_value_t = 16)]
        m: usize,
        /// Search breadth while inserting.
        #[arg(long, default_value_t = 200)]
        ef_construction: usize,
        /// Search breadth.
        #[arg(long, default_value_t = 64)]
        ef: usize,
    },
    /// The commitment trees alone, in process (no node, no embedding): per one-item write, the paged trees of root
    /// version 3 (graph: one appended leaf plus `--touched` changed leaves, as an HNSW insert relinks its
    /// neighbours; time: one leaf inserted at the end or at a random place) against rebuilding the whole CBMT, as
    /// version-2 roots did.
    Trees {
        /// Leaf counts to measure at.
        #[arg(long, value_delimiter = ',', default_values_t = vec![10_000usize, 100_000, 1_000_000])]
        sizes: Vec<usize>,
        /// Writes measured per size and kind.
        #[arg(long, default_value_t = 200)]
        writes: usize,
        /// Existing graph leaves each write changes (neighbour lists of the new node's neighbours).
        #[arg(long, default_value_t = 32)]
        touched: usize,
    },
    /// Replication over loopback: a fresh follower catches up with a namespace of the node at --data-dir
    /// (every leaf verified), then owner-commit to follower-visible latency of one-item writes.
    Catchup {
        /// Namespace to follow.
        #[arg(long, default_value = "bench/recall")]
        ns: String,
        /// One-item writes for the latency measurement.
        #[arg(long, default_value_t = 50)]
        writes: usize,
        /// The namespace holds caller vectors of this dimension (a `scale` run's `bench/scale-DIM`, model
        /// `bench-synthetic`): the follower follows it as that external model and the probes carry vectors.
        #[arg(long)]
        external_dim: Option<u32>,
    },
}

struct NodeProc {
    child: Child,
    url: String,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// A client of a bench node with the admin token the node wrote into its data dir (none with `--no-auth`).
async fn connect(url: String, dir: &Path) -> Result<CairnClient, cairn_client::Error> {
    let token = std::fs::read_to_string(dir.join(cairn_server::auth::ADMIN_TOKEN_FILE)).ok();
    CairnClient::builder(url)
        .maybe_token(token.map(|t| t.trim().to_owned()))
        .connect()
        .await
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        for _ in 0..600 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(data_dir: Option<&Path>) -> Result<NodeProc> {
    start_node_log(data_dir, "warn")
}

fn start_node_log(data_dir: Option<&Path>, log: &str) -> Result<NodeProc> {
    start_node_args(data_dir, log, &[])
}

fn start_node_args(data_dir: Option<&Path>, log: &str, extra: &[&str]) -> Result<NodeProc> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("cairn");
    let (dir, tmp) = match data_dir {
        Some(d) => (d.to_owned(), None),
        None => {
            let t = tempfile::Builder::new().prefix("cairn-bench-").tempdir()?;
            (t.path().to_owned(), Some(t))
        }
    };
    let mut child = Command::new(&bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .args(extra)
        // CAIRN_BENCH_NODE_LOG overrides the node's log filter (e.g. `cairn_server=debug` for commit timings).
        .env(
            "CAIRN_LOG",
            std::env::var("CAIRN_BENCH_NODE_LOG").unwrap_or_else(|_| log.to_owned()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(rest) = l.strip_prefix("cairn node listening on ") {
                    break rest.split_whitespace().next().unwrap_or("").to_owned();
                }
            }
            _ => bail!("node exited before listening"),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(NodeProc {
        child,
        url: format!("http://{addr}"),
        dir,
        _tmp: tmp,
    })
}

fn data_root(args: &Args) -> PathBuf {
    args.data
        .clone()
        .unwrap_or_else(|| PathBuf::from("../shared/data"))
}

fn read_jsonl(p: &Path) -> Result<Vec<Value>> {
    let f = std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?;
    BufReader::new(f)
        .lines()
        .map(|l| Ok(serde_json::from_str(&l?)?))
        .collect()
}

/// Short conversational memories (LoCoMo turns), then SciFact sentences, then sentence pairs, then titles:
/// real text, up to ~100k distinct items.
fn memory_texts(root: &Path, n: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut push = |t: String, out: &mut Vec<String>| {
        let t = t.trim().to_owned();
        if t.len() > 3 && seen.insert(t.clone()) {
            out.push(t);
        }
    };
    for v in read_jsonl(&root.join("locomo/flat/turns.jsonl"))? {
        if let Some(t) = v["text"].as_str() {
            push(t.to_owned(), &mut out);
        }
    }
    let corpus = read_jsonl(&root.join("scifact/corpus.jsonl"))?;
    let sentences: Vec<Vec<String>> = corpus
        .iter()
        .map(|d| {
            d["text"]
                .as_str()
                .unwrap_or("")
                .split(". ")
                .map(|s| s.to_owned())
                .collect()
        })
        .collect();
    for doc in &sentences {
        for s in doc {
            push(s.clone(), &mut out);
        }
    }
    for doc in &sentences {
        for w in doc.windows(2) {
            push(format!("{}. {}", w[0], w[1]), &mut out);
        }
    }
    for d in &corpus {
        if let Some(t) = d["title"].as_str() {
            push(t.to_owned(), &mut out);
        }
    }
    for doc in &sentences {
        for w in doc.windows(3) {
            push(format!("{}. {}. {}", w[0], w[1], w[2]), &mut out);
        }
    }
    if out.len() < n {
        bail!("only {} distinct texts available, {n} asked", out.len());
    }
    out.truncate(n);
    Ok(out)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn ingest(client: &CairnClient, ns: &str, texts: &[String], in_flight: usize) -> Result<f64> {
    let t0 = Instant::now();
    let batches: Vec<Vec<NewMemory>> = texts
        .chunks(32)
        .map(|c| c.iter().map(|t| NewMemory::new(t.clone())).collect())
        .collect();
    let results: Vec<Result<usize>> = stream::iter(batches)
        .map(|b| {
            let c = client.clone();
            let ns = ns.to_owned();
            async move { Ok(c.remember(&ns, b).await?.len()) }
        })
        .buffer_unordered(in_flight.max(1))
        .collect()
        .await;
    let mut n = 0;
    for r in results {
        n += r?;
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

fn embed_config() -> EmbedConfig {
    let cache = cairn_server::cli::cache_root();
    EmbedConfig {
        model_dir: std::env::var_os("CAIRN_MODEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| cache.join("models/all-minilm-l6-v2")),
        ort_lib: std::env::var_os("ORT_DYLIB_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| cache.join("ort/libonnxruntime.so")),
        max_batch: 256,
        threads: None,
    }
}

async fn bench_ingest(args: &Args, n: usize, in_flight: usize) -> Result<()> {
    let texts = memory_texts(&data_root(args), n)?;
    let chars: usize = texts.iter().map(String::len).sum();
    println!("texts: {n} (mean {} bytes)", chars / n);
    // Raw model first, on an idle machine, then the node, so they do not compete for the two cores.
    // The raw baseline gets the same help the node's embedder gives itself: texts sorted by length, so each
    // batch of 32 pads little. (In arrival order it is slower; both are printed.)
    let raw = {
        let (info, mut model) = load_model(&embed_config())?;
        let mut sorted = texts.clone();
        sorted.sort_by_key(String::len);
        let mut rate = |set: &[String]| -> Result<f64> {
            let t0 = Instant::now();
            let mut done = 0;
            for c in set.chunks(32) {
                done += model
                    .embed(c, Some(32))
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .len();
            }
            Ok(done as f64 / t0.elapsed().as_secs_f64())
        };
        let unsorted = rate(&texts)?;
        let r = rate(&sorted)?;
        println!(
            "raw model ({}), batches of 32, arrival order: {unsorted:.1} texts/s",
            info.id
        );
        println!(
            "raw model ({}), batches of 32, sorted by length: {r:.1} texts/s",
            info.id
        );
        r
    };
    let node = start_node(args.data_dir.as_deref())?;
    let client = connect(node.url.clone(), &node.dir).await?;
    let e2e = ingest(&client, "bench/ingest", &texts, in_flight).await?;
    println!("end-to-end Remember, batches of 32, {in_flight} in flight: {e2e:.1} memories/s");
    println!("ingest ratio (end-to-end / raw): {:.3}", e2e / raw);
    Ok(())
}

async fn bench_embed(args: &Args, queries: usize, threads: &[usize]) -> Result<()> {
    let mut qs: Vec<String> = read_jsonl(&data_root(args).join("locomo/flat/questions.jsonl"))?
        .iter()
        .filter_map(|v| v["question"].as_str().map(str::to_owned))
        .collect();
    qs.truncate(queries);
    for &t in threads {
        let mut cfg = embed_config();
        cfg.threads = (t > 0).then_some(t);
        let (info, mut model) = load_model(&cfg)?;
        for q in qs.iter().take(20) {
            model
                .embed(std::slice::from_ref(q), Some(1))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let mut lat = Vec::with_capacity(qs.len());
        for q in &qs {
            let t0 = Instant::now();
            model
                .embed(std::slice::from_ref(q), Some(1))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            lat.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        let label = if t == 0 {
            "default".to_owned()
        } else {
            t.to_string()
        };
        summary(
            &format!("raw model ({}), intra-op threads {label}", info.id),
            "ms",
            lat,
        );
    }
    let worker = cairn_server::embed::Embedder::start(&embed_config())?;
    for q in qs.iter().take(20) {
        worker.embed(vec![q.clone()]).await?;
    }
    let mut lat = Vec::with_capacity(qs.len());
    for q in &qs {
        let t0 = Instant::now();
        worker.embed(vec![q.clone()]).await?;
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    summary(
        "node embedding worker (queue + model), default threads",
        "ms",
        lat,
    );
    Ok(())
}

async fn bench_auth(memories: usize, queries: usize) -> Result<()> {
    use cairn_server::auth::{token, Auth, Right};
    let texts: Vec<String> = (0..memories)
        .map(|i| {
            format!(
                "Note {i}: the courier left parcel {} at gate {} before {} o'clock, signed by agent {}.",
                i * 37 % 1000,
                i % 17,
                i % 12 + 1,
                i % 101
            )
        })
        .collect();
    // One data dir, copied: both nodes serve the very same graph.
    let (d1, d2) = (tempfile::tempdir()?, tempfile::tempdir()?);
    {
        let n = start_node_args(Some(d1.path()), "warn", &[])?;
        let c = connect(n.url.clone(), &n.dir).await?;
        ingest(&c, "bench/auth", &texts, 4).await?;
    }
    copy_tree(d1.path(), d2.path())?;
    let secure = start_node_args(Some(d1.path()), "warn", &[])?;
    let open = start_node_args(Some(d2.path()), "warn", &["--no-auth"])?;
    let admin = std::fs::read_to_string(secure.dir.join(cairn_server::auth::ADMIN_TOKEN_FILE))?;
    // What an agent holds: the admin token narrowed offline to read on its namespace (two blocks).
    let grant = token::Grant::new(
        &["bench/auth".to_owned()],
        &[Right::Read],
        Some(Duration::from_secs(3600)),
    )?;
    let agent = token::attenuate(admin.trim(), &grant)?;
    let co = CairnClient::connect(open.url.clone()).await?;
    let cs = CairnClient::connect_with_token(secure.url.clone(), agent).await?;
    let qv = co
        .embed(vec!["which gate did the courier use?".into()])
        .await?
        .vectors
        .remove(0)
        .values;
    for _ in 0..50 {
        cs.recall_vector("bench/auth", qv.clone())
            .k(10)
            .send()
            .await?;
        co.recall_vector("bench/auth", qv.clone())
            .k(10)
            .send()
            .await?;
    }
    let (mut ls, mut lo) = (Vec::with_capacity(queries), Vec::with_capacity(queries));
    for _ in 0..queries {
        let t = Instant::now();
        cs.recall_vector("bench/auth", qv.clone())
            .k(10)
            .send()
            .await?;
        ls.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        co.recall_vector("bench/auth", qv.clone())
            .k(10)
            .send()
            .await?;
        lo.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ls.sort_by(f64::total_cmp);
    lo.sort_by(f64::total_cmp);
    let (ps, po) = (percentile(&ls, 0.5), percentile(&lo, 0.5));
    println!(
        "recall by vector, k=10, {memories} memories, {queries} queries each: with tokens p50 {ps:.3} ms (p99 {:.3}), --no-auth p50 {po:.3} ms (p99 {:.3}); tokens add {:.3} ms at p50",
        percentile(&ls, 0.99),
        percentile(&lo, 0.99),
        ps - po
    );
    // In process: one check of a cached two-block token (what every call pays), and a first parse.
    let dir = tempfile::tempdir()?;
    let auth = Auth::open(dir.path(), Vec::new())?;
    let admin = std::fs::read_to_string(dir.path().join(cairn_server::auth::ADMIN_TOKEN_FILE))?;
    let agent = token::attenuate(admin.trim(), &grant)?;
    let mut meta = tonic::metadata::MetadataMap::new();
    meta.insert("authorization", format!("Bearer {agent}").parse()?);
    let n = 20_000;
    auth.guard(&meta, "Recall", "bench/auth")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let t = Instant::now();
    for _ in 0..n {
        auth.guard(&meta, "Recall", "bench/auth")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let per_check = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t = Instant::now();
    let m = 500;
    for i in 0..m {
        // A distinct token each time (an extra check block), so nothing is cached.
        let g = token::Grant::new(&[format!("bench/auth/{i}")], &[Right::Read], None)?;
        let fresh = token::attenuate(admin.trim(), &g)?;
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert("authorization", format!("Bearer {fresh}").parse()?);
        let _ = auth.guard(&md, "Recall", &format!("bench/auth/{i}"));
    }
    let per_fresh = t.elapsed().as_secs_f64() * 1e6 / m as f64;
    println!(
        "in process: check of a cached 2-block token {per_check:.1} µs; attenuate + first parse + check of a new token {per_fresh:.0} µs"
    );
    Ok(())
}

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (p, q) = (e.path(), to.join(e.file_name()));
        if p.is_dir() {
            copy_tree(&p, &q)?;
        } else {
            std::fs::copy(&p, &q)?;
        }
    }
    Ok(())
}

async fn bench_recall(args: &Args, sizes: &[usize], queries: usize) -> Result<()> {
    let root = data_root(args);
    let max = sizes.iter().copied().max().unwrap_or(0);
    let texts = memory_texts(&root, max)?;
    let mut qs: Vec<String> = read_jsonl(&root.join("locomo/flat/questions.jsonl"))?
        .iter()
        .filter_map(|v| v["question"].as_str().map(str::to_owned))
        .collect();
    qs.extend(
        read_jsonl(&root.join("scifact/queries.jsonl"))?
            .iter()
            .filter_map(|v| v["text"].as_str().map(str::to_owned)),
    );
    qs.truncate(queries);
    let node = start_node(args.data_dir.as_deref())?;
    let client = connect(node.url.clone(), &node.dir).await?;
    // With --data-dir the memories of an earlier run are reused (texts come in a fixed order).
    let mut have = match client.stats(Some("bench/recall")).await {
        Ok(s) => s.total_memories as usize,
        Err(_) => 0,
    };
    let mut sorted_sizes = sizes.to_vec();
    sorted_sizes.sort_unstable();
    for size in sorted_sizes {
        if have < size {
            let t0 = Instant::now();
            let rate = ingest(&client, "bench/recall", &texts[have..size], 4).await?;
            println!(
                "ingested {} → {size} memories in {:.0} s ({rate:.0}/s)",
                size - have,
                t0.elapsed().as_secs_f64()
            );
            have = size;
        }
        // Warm-up, then measured sequential queries.
        for q in qs.iter().take(20) {
            client
                .recall("bench/recall", q.clone())
                .mode(cairn_proto::v1::RecallMode::Semantic)
                .k(10)
                .send()
                .await?;
        }
        let mut lat = Vec::with_capacity(qs.len());
        for q in &qs {
            let t = Instant::now();
            let hits = client
                .recall("bench/recall", q.clone())
                .mode(cairn_proto::v1::RecallMode::Semantic)
                .k(10)
                .send()
                .await?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            if hits.len() != 10 {
                bail!("expected 10 hits, got {}", hits.len());
            }
        }
        lat.sort_by(f64::total_cmp);
        println!(
            "recall at {size}: text query, k=10, {} queries: p50 {:.2} ms, p99 {:.2} ms, mean {:.2} ms",
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.iter().sum::<f64>() / lat.len() as f64
        );
    }
    Ok(())
}

fn ndcg_at_10(ranked: &[String], relevant: &HashSet<String>) -> (f64, f64) {
    let dcg: f64 = ranked
        .iter()
        .take(10)
        .enumerate()
        .filter(|(_, d)| relevant.contains(*d))
        .map(|(i, _)| 1.0 / ((i + 2) as f64).log2())
        .sum();
    let ideal: f64 = (0..relevant.len().min(10))
        .map(|i| 1.0 / ((i + 2) as f64).log2())
        .sum();
    let hits = ranked
        .iter()
        .take(10)
        .filter(|d| relevant.contains(*d))
        .count();
    (dcg / ideal, hits as f64 / relevant.len() as f64)
}

async fn bench_scifact(args: &Args) -> Result<()> {
    let root = data_root(args).join("scifact");
    let corpus = read_jsonl(&root.join("corpus.jsonl"))?;
    let queries: HashMap<String, String> = read_jsonl(&root.join("queries.jsonl"))?
        .into_iter()
        .filter_map(|v| {
            Some((
                v["_id"].as_str()?.to_owned(),
                v["text"].as_str()?.to_owned(),
            ))
        })
        .collect();
    let mut qrels: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    let qrels_text = std::fs::read_to_string(root.join("qrels/test.tsv"))?;
    for line in qrels_text.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() >= 3 && f[2].trim() != "0" {
            qrels
                .entry(f[0].to_owned())
                .or_default()
                .insert(f[1].to_owned());
        }
    }
    let node = start_node(args.data_dir.as_deref())?;
    let client = connect(node.url.clone(), &node.dir).await?;
    let docs: Vec<NewMemory> = corpus
        .iter()
        .map(|d| {
            let text = format!(
                "{} {}",
                d["title"].as_str().unwrap_or(""),
                d["text"].as_str().unwrap_or("")
            );
            NewMemory::new(text).meta("doc", d["_id"].as_str().unwrap_or(""))
        })
        .collect();
    let t0 = Instant::now();
    for chunk in docs.chunks(32) {
        client.remember("bench/scifact", chunk.to_vec()).await?;
    }
    println!(
        "ingested {} SciFact documents in {:.0} s",
        docs.len(),
        t0.elapsed().as_secs_f64()
    );
    use cairn_proto::v1::RecallMode as M;
    for (label, mode, exact) in [
        ("semantic, exact", M::Semantic, true),
        ("semantic, HNSW (ef=64)", M::Semantic, false),
        ("lexical (BM25)", M::Lexical, false),
        ("hybrid (RRF, HNSW ef=64)", M::Hybrid, false),
        ("hybrid (RRF, exact)", M::Hybrid, true),
    ] {
        let (mut ndcg, mut rec, mut n) = (0.0, 0.0, 0);
        for (qid, rel) in &qrels {
            let q = queries
                .get(qid)
                .with_context(|| format!("query {qid} missing"))?;
            let hits = client
                .recall("bench/scifact", q.clone())
                .k(10)
                .mode(mode)
                .exact(exact)
                .send()
                .await?;
            let ranked: Vec<String> = hits
                .iter()
                .map(|h| h.metadata.get("doc").cloned().unwrap_or_default())
                .collect();
            let (d, r) = ndcg_at_10(&ranked, rel);
            ndcg += d;
            rec += r;
            n += 1;
        }
        println!(
            "SciFact test ({n} queries), {label}: nDCG@10 {:.5}, recall@10 {:.5}",
            ndcg / n as f64,
            rec / n as f64
        );
    }
    Ok(())
}

/// LoCoMo's evidence recall: per question, the share of its evidence turns among the top k hits.
fn evidence_recall(hits: &[String], evidence: &HashSet<String>, k: usize) -> f64 {
    let found = hits
        .iter()
        .take(k)
        .filter(|d| evidence.contains(*d))
        .count();
    found as f64 / evidence.len().max(1) as f64
}

async fn bench_locomo(
    args: &Args,
    text_field: &str,
    verify: bool,
    modes: &[String],
    depth: u32,
    filter_speaker: bool,
) -> Result<()> {
    let root = data_root(args).join("locomo").join("flat");
    let turns = read_jsonl(&root.join("turns.jsonl"))?;
    let questions = read_jsonl(&root.join("questions.jsonl"))?;
    let field = match text_field {
        "rag" => "rag_text",
        "text" => "text",
        other => bail!("--text {other}: use rag or text"),
    };
    let node = start_node(args.data_dir.as_deref())?;
    let client = connect(node.url.clone(), &node.dir).await?;
    let trusted = cairn_client::verify::parse_node_id(&client.node_info().await?.node_id)
        .map_err(|e| anyhow::anyhow!("node id: {e}"))?;
    let mut by_conv: BTreeMap<String, Vec<NewMemory>> = BTreeMap::new();
    // (conv, dia_id) → speaker, for --filter-speaker.
    let mut speaker_of: HashMap<(String, String), String> = HashMap::new();
    for t in &turns {
        speaker_of.insert(
            (
                t["conv"].as_str().unwrap_or("").to_owned(),
                t["dia_id"].as_str().unwrap_or("").to_owned(),
            ),
            t["speaker"].as_str().unwrap_or("").to_owned(),
        );
        let conv = t["conv"].as_str().context("turn without conv")?;
        let text = t[field]
            .as_str()
            .context("turn without text")?
            .trim()
            .to_owned();
        by_conv.entry(conv.to_owned()).or_default().push(
            NewMemory::new(text)
                .meta("dia_id", t["dia_id"].as_str().unwrap_or(""))
                .meta("speaker", t["speaker"].as_str().unwrap_or("")),
        );
    }
    let t0 = Instant::now();
    let mut stored = 0;
    for (conv, items) in &by_conv {
        let ns = format!("bench/locomo/{conv}");
        let have = client
            .stats(Some(&ns))
            .await
            .map(|s| s.total_memories)
            .unwrap_or(0);
        if have as usize >= items.len() {
            continue; // kept from an earlier run (--data-dir)
        }
        for chunk in items.chunks(64) {
            client.remember(&ns, chunk.to_vec()).await?;
        }
        stored += items.len();
    }
    println!(
        "ingested {stored} LoCoMo turns ({} conversations, text = {field}) in {:.0} s",
        by_conv.len(),
        t0.elapsed().as_secs_f64()
    );
    let asked: Vec<&Value> = questions
        .iter()
        .filter(|q| q["category"].as_u64() != Some(5))
        .filter(|q| q["evidence_norm"].as_array().is_some_and(|e| !e.is_empty()))
        .collect();
    let proofs: &[bool] = if verify { &[false, true] } else { &[false] };
    let mut runs = Vec::new();
    for m in modes {
        let mode = match m.as_str() {
            "semantic" => cairn_proto::v1::RecallMode::Semantic,
            "lexical" => cairn_proto::v1::RecallMode::Lexical,
            "hybrid" => cairn_proto::v1::RecallMode::Hybrid,
            other => bail!("--modes: {other:?} is not semantic, lexical or hybrid"),
        };
        for &p in proofs {
            runs.push((m.as_str(), mode, p));
        }
    }
    for (mode_name, mode, proof) in runs {
        let mut sizes = Vec::new();
        // category name → (questions, recall@5 sum, recall@10 sum)
        let mut per: BTreeMap<String, (usize, f64, f64)> = BTreeMap::new();
        let mut lat = Vec::with_capacity(asked.len());
        let mut verified = 0usize;
        for q in &asked {
            let conv = q["conv"].as_str().context("question without conv")?;
            let ns = format!("bench/locomo/{conv}");
            let question = q["question"].as_str().context("question text")?;
            let evidence: HashSet<String> = q["evidence_norm"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect();
            let mut b = client
                .recall(&ns, question)
                .k(10)
                .mode(mode)
                .depth(depth)
                .proof(proof);
            if filter_speaker {
                let first = q["evidence_norm"]
                    .as_array()
                    .and_then(|e| e.first())
                    .and_then(|e| e.as_str())
                    .unwrap_or("");
                if let Some(s) = speaker_of.get(&(conv.to_owned(), first.to_owned())) {
                    b = b.where_eq("speaker", s.clone());
                }
            }
            let filter = b.filter_asked();
            let t = Instant::now();
            let resp = b.send_full().await?;
            if proof {
                let asked = cairn_client::verify::RecallAsked { k: 10, min_ef: 0 };
                cairn_client::verify::recall_filtered(
                    &ns,
                    &asked,
                    Some(question),
                    depth,
                    &filter,
                    &resp,
                    &trusted,
                    None,
                )
                .map_err(|e| anyhow::anyhow!("{ns}: {question:?}: proof rejected: {e}"))?;
                verified += 1;
                sizes.push(resp.proof.len() as f64 / 1024.0);
            }
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            let hits: Vec<String> = resp
                .hits
                .iter()
                .map(|h| h.metadata.get("dia_id").cloned().unwrap_or_default())
                .collect();
            let cat = q["category_name"].as_str().unwrap_or("?").to_owned();
            for key in [cat, "all".to_owned()] {
                let e = per.entry(key).or_default();
                e.0 += 1;
                e.1 += evidence_recall(&hits, &evidence, 5);
                e.2 += evidence_recall(&hits, &evidence, 10);
            }
        }
        let mode_name = if filter_speaker {
            format!("{mode_name}, filtered by the evidence's speaker")
        } else {
            mode_name.to_owned()
        };
        let label = if proof {
            format!("{mode_name}, with proof ({verified} verified)")
        } else {
            format!("{mode_name}, no proof")
        };
        println!("LoCoMo evidence recall, {label}:");
        println!("| category | questions | recall@5 | recall@10 |");
        println!("|---|---|---|---|");
        for (cat, (n, r5, r10)) in &per {
            println!(
                "| {cat} | {n} | {:.3} | {:.3} |",
                r5 / *n as f64,
                r10 / *n as f64
            );
        }
        summary(
            &format!("Recall k=10 ({label}, client-observed, verify included)"),
            "ms",
            lat,
        );
        if proof {
            summary(&format!("proof size ({label})"), "KiB", sizes);
        }
    }
    Ok(())
}

/// Size of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_bytes(&p)
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

fn bench_scrub(sizes: &[usize]) -> Result<()> {
    use cairn_server::store::{Forgotten, NewPoint, PointRow, State};
    for &n in sizes {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("state.redb");
        let st = State::open(&path, "bench")?;
        let row = |i: usize| -> PointRow {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let mut v: Vec<f32> = (0..384)
                .map(|j| (((i * 31 + j * 17) % 97) as f32 - 48.0) / 1000.0 + 1e-4)
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            PointRow {
                id: cairn_index::id::MemoryId(id),
                created_at: 1_700_000_000_000 + i as u64,
                alive: true,
                dedup: *blake3::hash(&id).as_bytes(),
                vector: v,
                metadata: [("user".to_owned(), format!("u{}", i % 50))].into(),
                lex: Some(cairn_server::store::terms::IntoTerms::into_terms(
                    cairn_index::lexical::DocTerms::of(&format!("memory number {i}")),
                )),
            }
        };
        for start in (0..n).step_by(10_000) {
            let batch: Vec<NewPoint> = (start..(start + 10_000).min(n))
                .map(|i| NewPoint {
                    point: i as u64,
                    row: row(i),
                })
                .collect();
            st.insert("bench", &batch, (start + batch.len()) as u64)?;
        }
        st.forget(
            "bench",
            &[Forgotten {
                point: 7,
                row: row(7),
            }],
        )?;
        let t0 = Instant::now();
        let v = st.vacuum()?;
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({
                "bench": "scrub",
                "memories": n,
                "vacuum_s": (secs * 1000.0).round() / 1000.0,
                "state_mb_before": v.before >> 20,
                "state_mb_after": v.after >> 20,
            })
        );
    }
    Ok(())
}

async fn seq_on(c: &CairnClient, ns: &str) -> u64 {
    c.list_namespaces()
        .await
        .ok()
        .and_then(|l| l.into_iter().find(|x| x.namespace == ns))
        .map_or(0, |x| x.seq)
}

/// Starts a fresh follower of `ns` on `owner`, waits until it holds root `target`, and reports the time.
async fn fresh_follower(
    label: &str,
    ca: &CairnClient,
    (owner_ticket, owner_id): (&str, &str),
    ns: &str,
    (target, total): (u64, u64),
    external_dim: Option<u32>,
) -> Result<(NodeProc, tempfile::TempDir, CairnClient)> {
    let dir = tempfile::Builder::new()
        .prefix("cairn-follower-")
        .tempdir()?;
    let follower = start_node_log(
        Some(dir.path()),
        &std::env::var("FOLLOWER_LOG").unwrap_or_else(|_| "warn,cairn_server::p2p=info".into()),
    )?;
    let cb = connect(follower.url.clone(), &follower.dir).await?;
    let ib = cb.node_info().await?;
    cb.add_peer(owner_ticket).await?;
    ca.add_peer(&ib.ticket).await?;
    ca.share("", &ib.node_id, true).await?;
    let t0 = Instant::now();
    cb.follow_with(ns, owner_id, external_dim.map(|d| ("bench-synthetic", d)))
        .await?;
    let deadline = Duration::from_secs(1800);
    while seq_on(&cb, ns).await < target {
        if t0.elapsed() > deadline {
            bail!("follower did not catch up within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let records = dir_bytes(&dir.path().join("blobs/data"));
    let n = total as f64;
    println!(
        "{label}: {n} memories in {secs:.2} s = {:.0} memories/s; {:.1} MB of blobs on the follower (snapshot answer and record pages) = {:.1} MB/s",
        n / secs,
        records as f64 / 1e6,
        records as f64 / 1e6 / secs
    );
    let (rss, peak) = rss_mb(follower.child.id());
    println!("{label}: follower RSS {rss:.0} MB after the catch-up, peak {peak:.0} MB (VmHWM)");
    let fs = cb.stats(Some(ns)).await?;
    if fs.total_memories != total {
        bail!("follower has {} memories, owner {total}", fs.total_memories);
    }
    Ok((follower, dir, cb))
}

async fn bench_catchup(
    args: &Args,
    ns: &str,
    writes: usize,
    external_dim: Option<u32>,
) -> Result<()> {
    let owner = start_node_log(
        args.data_dir.as_deref(),
        &std::env::var("OWNER_LOG").unwrap_or_else(|_| "warn,cairn_server::engine=info".into()),
    )?;
    let ca = connect(owner.url.clone(), &owner.dir).await?;
    let ia = ca.node_info().await?;
    let stats = ca.stats(Some(ns)).await?;
    let target = ca.root(ns, None).await?.seq;
    println!(
        "owner namespace {ns}: {} memories, root seq {target}",
        stats.total_memories
    );
    let total = stats.total_memories;
    // The first follower makes the owner build its snapshot; the second finds it built. The first stays for the
    // latency probes.
    let mut followers = Vec::new();
    for label in [
        "catch-up, snapshot built on request",
        "catch-up, snapshot already built",
    ] {
        let owner = (ia.ticket.as_str(), ia.node_id.as_str());
        followers.push(fresh_follower(label, &ca, owner, ns, (target, total), external_dim).await?);
    }
    drop(followers.pop());
    let (follower, _d1, cb) = followers.pop().context("no follower")?;
    // Owner commit -> follower visible: one-item Remember on the owner, then wait for the follower's root.
    let mut watch = cb.watch_roots(ns).await?;
    let mut lat = Vec::new();
    for i in 0..writes {
        let text = format!("Replication latency probe {i} at {:?}.", Instant::now());
        let item = match external_dim {
            Some(d) => NewMemory::new(text)
                .vector(Synthetic::new(d as usize).vector(QUERY_BASE + i as u64)),
            None => NewMemory::new(text),
        };
        ca.remember(ns, vec![item]).await?;
        let t = Instant::now();
        let want = ca.root(ns, None).await?.seq;
        loop {
            let r = tokio::time::timeout(Duration::from_secs(30), watch.next())
                .await
                .context("follower did not see the write within 30 s")?;
            match r {
                Some(Ok(root)) if root.seq >= want => break,
                Some(Ok(_)) => continue,
                Some(Err(e)) => bail!("watch: {e}"),
                None => bail!("watch ended"),
            }
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    summary("owner commit acknowledged -> follower visible", "ms", lat);
    let (rss, peak) = rss_mb(owner.child.id());
    println!("owner RSS {rss:.0} MB, peak {peak:.0} MB (VmHWM)");
    drop(owner);
    drop(follower);
    Ok(())
}

fn summary(name: &str, unit: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    println!(
        "{name}: p50 {:.2} {unit}, p99 {:.2} {unit}, mean {:.2} {unit}, max {:.2} {unit}",
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v.iter().sum::<f64>() / v.len().max(1) as f64,
        v.last().copied().unwrap_or(f64::NAN)
    );
}

fn bench_graph(sizes: &[usize], queries: usize, dim: usize, m: usize, ef_c: usize, ef: usize) {
    use cairn_index::commit::{distance, quantise};
    use cairn_index::hnsw::{Hnsw, HnswConfig};
    let syn = Synthetic::new(dim);
    let mut g = Hnsw::new(HnswConfig {
        m,
        ef_construction: ef_c,
        dim,
    });
    let qs: Vec<Vec<i8>> = (0..queries as u64)
        .map(|i| quantise(&syn.vector(QUERY_BASE + i)))
        .collect();
    let mut codes: Vec<i8> = Vec::new();
    println!(
        "graph: dim {dim}, M {m}, ef_construction {ef_c}, ef {ef}, synthetic vectors, {queries} queries per size"
    );
    let mut sorted = sizes.to_vec();
    sorted.sort_unstable();
    for size in sorted {
        let from = g.len();
        if from >= size {
            continue;
        }
        g.reserve(size - from);
        let (mut ms, mut relinked) = (Vec::new(), 0usize);
        let t0 = Instant::now();
        for i in from..size {
            let c = quantise(&syn.vector(i as u64));
            codes.extend_from_slice(&c);
            let t = Instant::now();
            match g.insert(&c, i) {
                Ok(changed) => relinked += changed.len(),
                Err(e) => {
                    println!("insert {i} refused: {e}");
                    return;
                }
            }
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "{size}: inserted {} in {secs:.0} s ({:.0}/s); points relinked per insert {:.1} (the commit re-reads these)",
            size - from,
            (size - from) as f64 / secs,
            relinked as f64 / (size - from) as f64
        );
        let tail = ms.split_off(ms.len().saturating_sub(2000));
        summary(&format!("{size}: one insert (last 2,000)"), "ms", tail);
        let (mut search_ms, mut found) = (Vec::new(), 0usize);
        for q in &qs {
            let t = Instant::now();
            let got = g.search(q, 10, ef, None);
            search_ms.push(t.elapsed().as_secs_f64() * 1e3);
            let mut exact: Vec<(i32, usize)> = codes
                .chunks_exact(dim)
                .enumerate()
                .map(|(i, c)| (distance(q, c), i))
                .collect();
            exact.select_nth_unstable(9);
            exact.truncate(10);
            found += exact
                .iter()
                .filter(|e| got.iter().any(|h| h.0 as usize == e.1))
                .count();
        }
        summary(
            &format!("{size}: one search, k=10, ef={ef}"),
            "ms",
            search_ms,
        );
        println!(
            "{size}: recall@10 {:.3} against exact search over the codes; graph heap {:.0} MB ({:.0} bytes per point)",
            found as f64 / (10 * qs.len()).max(1) as f64,
            g.heap_bytes() as f64 / 1e6,
            g.heap_bytes() as f64 / g.len().max(1) as f64
        );
    }
}

fn bench_trees(sizes: &[usize], writes: usize, touched: usize) {
    use cairn_index::merkle::{leaf_hash, Tree};
    use cairn_index::paged::{ChunkedTree, FixedTree};
    let leaf = |i: u64| leaf_hash(&i.to_be_bytes());
    // A fixed xorshift stream: the same "random" places in every run.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |below: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % below.max(1)
    };
    println!("trees: {writes} writes per size and kind; graph writes append one leaf and change {touched} others");
    for &n in sizes {
        let leaves: Vec<_> = (0..n as u64).map(leaf).collect();
        let mut fresh = n as u64 + 1_000_000_000;
        let t = Instant::now();
        let mut g = FixedTree::build(&leaves);
        let build_paged = t.elapsed().as_secs_f64() * 1e3;
        let mut ms = Vec::with_capacity(writes);
        for _ in 0..writes {
            let t = Instant::now();
            g.push(leaf(fresh));
            for _ in 0..touched {
                g.set(next(g.len()), leaf(fresh + 7));
            }
            g.commit();
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            fresh += 1;
        }
        summary(
            &format!("{n}: graph tree, version 3 (paged), one write"),
            "ms",
            ms,
        );
        let mut time = ChunkedTree::build(&leaves);
        for (kind, middle) in [("at the end", false), ("at a random place", true)] {
            let mut ms = Vec::with_capacity(writes);
            for _ in 0..writes {
                let pos = if middle {
                    next(time.len() + 1)
                } else {
                    time.len()
                };
                let t = Instant::now();
                time.insert(pos, leaf(fresh));
                time.commit();
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                fresh += 1;
            }
            summary(
                &format!("{n}: time tree, version 3 (content-cut pages), one insert {kind}"),
                "ms",
                ms,
            );
        }
        let mut ms = Vec::with_capacity(5);
        let mut all = leaves.clone();
        for _ in 0..5 {
            all.push(leaf(fresh));
            fresh += 1;
            let t = Instant::now();
            let full = Tree::build(&all);
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(full.root());
        }
        summary(
            &format!("{n}: one tree rebuilt whole, version 2 (per tree per write)"),
            "ms",
            ms,
        );
        println!(
            "{n}: building the paged graph tree from scratch (start-up) {build_paged:.1} ms; {} time pages",
            time.pages()
        );
    }
}

async fn bench_proofs(args: &Args, ns: &str, queries: usize, ef: u32, mode: &str) -> Result<()> {
    let mode = match mode {
        "semantic" => cairn_proto::v1::RecallMode::Semantic,
        "lexical" => cairn_proto::v1::RecallMode::Lexical,
        "hybrid" => cairn_proto::v1::RecallMode::Hybrid,
        other => bail!("--mode: {other:?} is not semantic, lexical or hybrid"),
    };
    let semantic = mode == cairn_proto::v1::RecallMode::Semantic;
    let root = data_root(args);
    let mut qs: Vec<String> = read_jsonl(&root.join("locomo/flat/questions.jsonl"))?
        .iter()
        .filter_map(|v| v["question"].as_str().map(str::to_owned))
        .collect();
    qs.truncate(queries);
    let node = start_node(args.data_dir.as_deref())?;
    let client = connect(node.url.clone(), &node.dir).await?;
    let stats = client.stats(Some(ns)).await?;
    let trusted = cairn_client::verify::parse_node_id(&client.node_info().await?.node_id)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "namespace {ns}: {} memories, {} graph nodes; mode {}, k=10, ef={ef}, {} queries",
        stats.total_memories,
        stats.namespaces.first().map_or(0, |n| n.index_points),
        mode.as_str_name(),
        qs.len()
    );
    let asked = cairn_client::verify::RecallAsked { k: 10, min_ef: ef };
    let (mut sizes, mut answer_ms, mut verify_ms, mut decode_ms, mut nodes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut recall_sum = 0.0;
    let mut qembed_ms = Vec::new();
    let mut responses = Vec::with_capacity(qs.len());
    for q in &qs {
        let t = Instant::now();
        let resp = client
            .recall(ns, q.clone())
            .mode(mode)
            .k(10)
            .ef(ef)
            .proof(true)
            .send_full()
            .await?;
        answer_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if mode == cairn_proto::v1::RecallMode::Hybrid {
            // What embedding the question costs on its own (an Embed call of the same text), to split the answer.
            let t = Instant::now();
            client.embed(vec![q.clone()]).await?;
            qembed_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        sizes.push(resp.proof.len() as f64 / 1024.0);
        // Verified once here so a bad proof fails the run; timed below, after all queries.
        cairn_client::verify::recall_query(ns, &asked, Some(q), 0, &resp, &trusted, None)
            .map_err(|e| anyhow::anyhow!("proof did not verify: {e}"))?;
        if !semantic {
            responses.push((q, resp));
            continue;
        }
        let exact = client
            .recall(ns, q.clone())
            .mode(cairn_proto::v1::RecallMode::Semantic)
            .k(10)
            .exact(true)
            .send()
            .await?;
        let want: HashSet<&str> = exact.iter().map(|h| h.id.as_str()).collect();
        let got = resp
            .hits
            .iter()
            .filter(|h| want.contains(h.id.as_str()))
            .count();
        recall_sum += got as f64 / want.len().max(1) as f64;
        responses.push((q, resp));
    }
    // Verification timed apart from the node's work: on two cores a client verifying while the node still
    // finishes the response shares the CPU with it. Each proof is verified three times; the median counts.
    for (q, resp) in &responses {
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            cairn_client::verify::recall_query(ns, &asked, Some(q), 0, resp, &trusted, None)
                .map_err(|e| anyhow::anyhow!("proof did not verify: {e}"))?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        verify_ms.push(times[1]);
        if !semantic {
            continue;
        }
        let t = Instant::now();
        let p = cairn_index::proof::RecallProof::decode(&resp.proof, &Default::default())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        decode_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        nodes.push(p.nodes.len() as f64);
    }
    summary("proof size", "KiB", sizes);
    if semantic {
        summary("nodes in proof", "nodes", nodes);
    }
    summary(
        "answer with proof (embed + prove + records + gRPC)",
        "ms",
        answer_ms,
    );
    if mode == cairn_proto::v1::RecallMode::Hybrid {
        summary(
            "  Embed call of the question alone (the answer's embedding share)",
            "ms",
            qembed_ms,
        );
    }
    summary("client verify", "ms", verify_ms);
    if semantic {
        summary("  of which: proof decode alone", "ms", decode_ms);
    }
    if semantic {
        println!(
            "recall@10 of the proof search vs the node's exact search (same int8 codes): {:.4}",
            recall_sum / qs.len() as f64
        );
    }
    // Write cost at this size: one-item Remember (embed + blob + redb + HNSW + commitment + signed root, all
    // durable) against Embed of the same text alone; the difference is the storage and commit path.
    let (mut write_ms, mut embed_ms) = (Vec::new(), Vec::new());
    for i in 0..30 {
        let text = format!(
            "Benchmark write {i} at {} memories, made at {:?}.",
            stats.total_memories,
            Instant::now()
        );
        let t = Instant::now();
        client.embed(vec![text.clone()]).await?;
        embed_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        client.remember(ns, vec![NewMemory::new(text)]).await?;
        write_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    summary(
        "one-item Remember (durable, new signed root)",
        "ms",
        write_ms,
    );
    summary("Embed of the same text alone", "ms", embed_ms);
    Ok(())
}

/// The value (first word after the name) of a field such as `VmRSS:` in `/proc/PID/status`.
fn status_field(status: &str, name: &str) -> Option<String> {
    status
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(str::to_owned)
}

fn proc_status(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
}

/// Resident and peak resident set size of a process, in MB (from /proc).
fn rss_mb(pid: u32) -> (f64, f64) {
    let status = proc_status(pid);
    let field = |name: &str| {
        status_field(&status, name)
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Where a process's resident memory is: anonymous vs file-backed pages, thread count, and the five largest
/// mappings by resident size (from `/proc/PID/smaps`), for telling heap left behind from other causes.
fn rss_breakdown(pid: u32) -> String {
    let status = proc_status(pid);
    let field = |name: &str| status_field(&status, name).unwrap_or_else(|| "?".to_owned());
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut maps: Vec<(u64, String)> = Vec::new();
    let mut name = String::new();
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping header: address range, perms, offset, dev, inode, [path].
            name = line
                .split_whitespace()
                .nth(5)
                .unwrap_or("[anon]")
                .to_owned();
        } else if first == "Rss:" {
            let kb = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            maps.push((kb, name.clone()));
        }
    }
    maps.sort_by_key(|m| std::cmp::Reverse(m.0));
    let top: Vec<String> = maps
        .iter()
        .take(5)
        .map(|(kb, n)| format!("{} MB {n}", kb / 1024))
        .collect();
    format!(
        "RssAnon {} kB, RssFile {} kB, threads {}, mappings {}, largest: {}",
        field("RssAnon:"),
        field("RssFile:"),
        field("Threads:"),
        maps.len(),
        top.join(", ")
    )
}

/// A long synthetic text (about 250 word pieces), different for every `i`.
fn long_text(i: usize) -> String {
    const WORDS: [&str; 24] = [
        "harbour",
        "ledger",
        "turbine",
        "orchard",
        "glacier",
        "protocol",
        "lantern",
        "meridian",
        "copper",
        "festival",
        "quarry",
        "satellite",
        "violin",
        "archive",
        "monsoon",
        "pixel",
        "canyon",
        "embassy",
        "falcon",
        "reactor",
        "tundra",
        "mosaic",
        "beacon",
        "saddle",
    ];
    let mut out = format!("Record {i}:");
    let mut x = i as u64 * 2_654_435_761 + 1;
    for _ in 0..180 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(' ');
        out.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
    }
    out
}

#[derive(Default)]
struct LoadStats {
    ms: BTreeMap<&'static str, Vec<f64>>,
    shed: usize,
    errors: Vec<String>,
    acked: Vec<String>,
}

async fn bench_load(
    args: &Args,
    clients: usize,
    secs: u64,
    watch_streams: usize,
    import: usize,
) -> Result<()> {
    let mut node = start_node(args.data_dir.as_deref())?;
    let pid = node.child.id();
    let client = connect(node.url.clone(), &node.dir).await?;
    let trusted: [u8; 32] = hex::decode(client.node_info().await?.node_id)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("node id"))?;
    // Warm up: the model's first call and one namespace to read from.
    let seed: Vec<NewMemory> = (0..200)
        .map(|i| NewMemory::new(long_text(1_000_000 + i)))
        .collect();
    client.remember("load/mixed", seed).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (idle, _) = rss_mb(pid);
    println!("node pid {pid}: idle RSS after warm-up {idle:.0} MB");
    println!("  idle: {}", rss_breakdown(pid));

    let deadline = Instant::now() + Duration::from_secs(secs);
    let stats = std::sync::Arc::new(std::sync::Mutex::new(LoadStats::default()));
    let record = |stats: &std::sync::Mutex<LoadStats>,
                  what: &'static str,
                  t: Instant,
                  r: Result<Vec<String>, cairn_client::Error>| {
        let Ok(mut s) = stats.lock() else { return };
        match r {
            Ok(ids) => {
                s.ms.entry(what)
                    .or_default()
                    .push(t.elapsed().as_secs_f64() * 1e3);
                s.acked.extend(ids);
            }
            Err(e) if e.code() == Some(tonic::Code::ResourceExhausted) => s.shed += 1,
            Err(e) => s.errors.push(format!("{what}: {e}")),
        }
    };
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (url, stats, dir) = (node.url.clone(), stats.clone(), node.dir.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(client) = connect(url, &dir).await else {
                return;
            };
            let asked = cairn_client::verify::RecallAsked { k: 10, min_ef: 0 };
            let mut i = 0usize;
            while Instant::now() < deadline {
                let t = Instant::now();
                let q = long_text(c * 1_000_003 + i);
                match i % 4 {
                    0 => {
                        let r = client
                            .remember("load/mixed", vec![NewMemory::new(q)])
                            .await
                            .map(|r| r.into_iter().map(|m| m.id).collect());
                        record(&stats, "remember (1 text)", t, r);
                    }
                    1 => {
                        let r = client
                            .recall("load/mixed", q)
                            .k(10)
                            .send()
                            .await
                            .map(|_| Vec::new());
                        record(&stats, "recall k=10", t, r);
                    }
                    2 => {
                        let r = client
                            .list(
                                "load/mixed",
                                cairn_client::ListOptions {
                                    limit: Some(50),
                                    ..Default::default()
                                },
                            )
                            .await
                            .map(|_| Vec::new());
                        record(&stats, "list 50", t, r);
                    }
                    _ => {
                        let r = match client
                            .recall("load/mixed", q)
                            .k(10)
                            .proof(true)
                            .send_full()
                            .await
                        {
                            Ok(resp) => cairn_client::verify::recall(
                                "load/mixed",
                                &asked,
                                &resp,
                                &trusted,
                                None,
                            )
                            .map(|_| Vec::new())
                            .map_err(|e| cairn_client::Error::Malformed(format!("proof: {e}"))),
                            Err(e) => Err(e),
                        };
                        record(&stats, "verified recall k=10", t, r);
                    }
                }
                i += 1;
            }
        }));
    }
    // One client opening and dropping WatchRoots streams.
    let watcher = {
        let (url, stats, dir) = (node.url.clone(), stats.clone(), node.dir.clone());
        tokio::spawn(async move {
            let Ok(client) = connect(url, &dir).await else {
                return;
            };
            for _ in 0..watch_streams {
                let t = Instant::now();
                let r = client.watch_roots("load/mixed").await.map(|s| {
                    drop(s);
                    Vec::new()
                });
                record(&stats, "watch open+drop", t, r);
            }
        })
    };
    // An import of long texts, batches of 64.
    let importer = {
        let (url, stats, dir) = (node.url.clone(), stats.clone(), node.dir.clone());
        tokio::spawn(async move {
            let Ok(client) = connect(url, &dir).await else {
                return;
            };
            for b in 0..import.div_ceil(64) {
                let items: Vec<NewMemory> = (b * 64..((b + 1) * 64).min(import))
                    .map(|i| NewMemory::new(long_text(50_000_000 + i)))
                    .collect();
                let t = Instant::now();
                let r = client
                    .remember("load/import", items)
                    .await
                    .map(|r| r.into_iter().map(|m| m.id).collect());
                record(&stats, "import batch of 64", t, r);
            }
        })
    };
    let mut peak = 0.0f64;
    let t0 = Instant::now();
    while !(tasks.iter().all(|t| t.is_finished())
        && watcher.is_finished()
        && importer.is_finished())
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak = peak.max(rss_mb(pid).0);
    }
    let wall = t0.elapsed().as_secs_f64();
    for t in tasks {
        t.await?;
    }
    watcher.await?;
    importer.await?;
    let (_, hwm) = rss_mb(pid);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (after, _) = rss_mb(pid);
    let after_breakdown = rss_breakdown(pid);
    // Again later: what is still resident after the node's idle-time work (scrub passes, blocking threads
    // retiring after their 10 s keep-alive) had time to run.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (later, _) = rss_mb(pid);
    let later_breakdown = rss_breakdown(pid);

    let stats = std::sync::Arc::try_unwrap(stats)
        .map_err(|_| anyhow::anyhow!("stats still shared"))?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("stats poisoned"))?;
    // Every acknowledged memory is readable afterwards (both namespaces; Get reports the others missing).
    let mut lost = 0usize;
    for chunk in stats.acked.chunks(1000) {
        let mut found = 0;
        for ns in ["load/mixed", "load/import"] {
            found += client.get(ns, chunk.to_vec()).await?.memories.len();
        }
        lost += chunk.len() - found;
    }
    println!(
        "{clients} clients for {secs} s + {watch_streams} WatchRoots opened and dropped + import of {import} long texts; all done in {wall:.1} s"
    );
    println!("| call | n | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    for (what, ms) in &stats.ms {
        let mut v = ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        println!(
            "| {what} | {} | {:.1} | {:.1} |",
            v.len(),
            percentile(&v, 0.5),
            percentile(&v, 0.99)
        );
    }
    println!(
        "errors other than load shedding: {}; shed (RESOURCE_EXHAUSTED): {}; acknowledged memories: {}, lost: {lost}",
        stats.errors.len(),
        stats.shed,
        stats.acked.len()
    );
    for e in stats.errors.iter().take(5) {
        println!("  error: {e}");
    }
    println!(
        "RSS: idle {idle:.0} MB, peak sampled {peak:.0} MB (VmHWM {hwm:.0} MB), 10 s after the load {after:.0} MB ({:+.0} MB vs idle)",
        after - idle
    );
    println!("  10 s after: {after_breakdown}");
    println!(
        "40 s after the load: {later:.0} MB ({:+.0} MB vs idle)",
        later - idle
    );
    println!("  40 s after: {later_breakdown}");
    // The same data in a fresh process: what of `after` is the memories themselves (rows, graph, commitment).
    let tmp = node._tmp.take();
    let dir = node.dir.clone();
    drop(client);
    drop(node);
    let again = start_node(Some(&dir))?;
    let c = connect(again.url.clone(), &again.dir).await?;
    for i in 0..20 {
        c.recall("load/mixed", long_text(i)).k(10).send().await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (fresh, _) = rss_mb(again.child.id());
    println!("  restarted: {}", rss_breakdown(again.child.id()));
    println!(
        "RSS of a node restarted on the same data dir (after 20 Recalls): {fresh:.0} MB; after the load was {:+.0} MB over it",
        after - fresh
    );
    drop(again);
    drop(tmp);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    match &args.cmd {
        Cmd::Ingest { n, in_flight } => bench_ingest(&args, *n, *in_flight).await,
        Cmd::Recall { sizes, queries } => bench_recall(&args, sizes, *queries).await,
        Cmd::Embed { queries, threads } => bench_embed(&args, *queries, threads).await,
        Cmd::Scifact => bench_scifact(&args).await,
        Cmd::Locomo {
            text,
            verify,
            modes,
            depth,
            filter_speaker,
        } => bench_locomo(&args, text, *verify, modes, *depth, *filter_speaker).await,
        Cmd::Auth { memories, queries } => bench_auth(*memories, *queries).await,
        Cmd::Scrub { sizes } => bench_scrub(sizes),
        Cmd::Proofs {
            ns,
            queries,
            ef,
            mode,
        } => bench_proofs(&args, ns, *queries, *ef, mode).await,
        Cmd::Catchup {
            ns,
            writes,
            external_dim,
        } => bench_catchup(&args, ns, *writes, *external_dim).await,
        Cmd::Vectors { n, queries, efs } => bench_vectors(&args, *n, *queries, efs).await,
        Cmd::Scale {
            sizes,
            queries,
            commits,
            proofs,
            dim,
            ef,
        } => bench_scale(&args, sizes, *queries, *commits, *proofs, *dim, *ef).await,
        Cmd::Graph {
            sizes,
            queries,
            dim,
            m,
            ef_construction,
            ef,
        } => {
            bench_graph(sizes, *queries, *dim as usize, *m, *ef_construction, *ef);
            Ok(())
        }
        Cmd::Trees {
            sizes,
            writes,
            touched,
        } => {
            bench_trees(sizes, *writes, *touched);
            Ok(())
        }
        Cmd::Load {
            clients,
            secs,
            watch_streams,
            import,
        } => bench_load(&args, *clients, *secs, *watch_streams, *import).await,
    }
}

/// Clusters of the synthetic distribution.
const SYN_CLUSTERS: u64 = 256;
/// Dimension of the subspace the synthetic vectors live in (text embeddings have a low intrinsic dimension).
const SYN_LATENT: usize = 24;

/// A deterministic xorshift stream seeded from `seed` (no two calls with one seed differ).
struct Xs(u64);

impl Xs {
    fn new(seed: u64) -> Self {
        Xs(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A standard normal sample (Box–Muller).
    fn normal(&mut self) -> f32 {
        let u1 = ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}

/// The synthetic distribution of `cairn-bench scale`: a fixed random basis of [`SYN_LATENT`] directions in `dim`
/// dimensions; point `i` is a normalised mix of one of [`SYN_CLUSTERS`] cluster centres in that subspace, a
/// within-cluster spread (0.6 of the centre's scale), and isotropic noise in all `dim` dimensions (0.15).
struct Synthetic {
    basis: Vec<Vec<f32>>,
    centres: Vec<Vec<f32>>,
    dim: usize,
}

impl Synthetic {
    fn new(dim: usize) -> Self {
        let mut r = Xs::new(0xCA1B);
        let basis = (0..SYN_LATENT)
            .map(|_| (0..dim).map(|_| r.normal()).collect())
            .collect();
        let centres = (0..SYN_CLUSTERS)
            .map(|_| (0..SYN_LATENT).map(|_| r.normal()).collect())
            .collect();
        Synthetic {
            basis,
            centres,
            dim,
        }
    }

    /// Point `i` (unit length); queries use indices the corpus does not.
    fn vector(&self, i: u64) -> Vec<f32> {
        let mut r = Xs::new(i.wrapping_add(1) ^ 0x5EED_0000_0000);
        let c = &self.centres[(r.next() % SYN_CLUSTERS) as usize];
        let mut v: Vec<f32> = (0..self.dim).map(|_| 0.15 * r.normal()).collect();
        let scale = 1.0 / (self.dim as f32).sqrt();
        for (j, b) in self.basis.iter().enumerate() {
            let z = (c[j] + 0.6 * r.normal()) * scale;
            for (x, bx) in v.iter_mut().zip(b) {
                *x += z * bx;
            }
        }
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter_mut().for_each(|x| *x /= n);
        v
    }
}

/// Index of the first query vector (far above any corpus index).
const QUERY_BASE: u64 = 1 << 40;

async fn bench_scale(
    args: &Args,
    sizes: &[usize],
    queries: usize,
    commits: usize,
    proofs: usize,
    dim: u32,
    ef: u32,
) -> Result<()> {
    let ns = format!("bench/scale-{dim}");
    let syn = Synthetic::new(dim as usize);
    let node = start_node(args.data_dir.as_deref())?;
    let pid = node.child.id();
    let client = connect(node.url.clone(), &node.dir).await?;
    client
        .create_namespace(&ns, Some(("bench-synthetic", dim)))
        .await?;
    let trusted = cairn_client::verify::parse_node_id(&client.node_info().await?.node_id)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut have = client
        .stats(Some(&ns))
        .await
        .map_or(0, |s| s.total_memories as usize);
    println!(
        "scale: namespace {ns}, dim {dim}, synthetic vectors ({SYN_CLUSTERS} clusters in a {SYN_LATENT}-dimensional subspace plus noise), ef={ef}; {have} memories already there"
    );
    let item =
        |i: usize| NewMemory::new(format!("synthetic memory {i}")).vector(syn.vector(i as u64));
    let qs: Vec<Vec<f32>> = (0..queries as u64)
        .map(|i| syn.vector(QUERY_BASE + i))
        .collect();
    let mut sorted = sizes.to_vec();
    sorted.sort_unstable();
    for size in sorted {
        if have < size {
            let t0 = Instant::now();
            let batches: Vec<Vec<NewMemory>> = (have..size)
                .collect::<Vec<_>>()
                .chunks(256)
                .map(|c| c.iter().map(|&i| item(i)).collect())
                .collect();
            let results: Vec<Result<usize>> = stream::iter(batches)
                .map(|b| {
                    let (c, ns) = (client.clone(), ns.clone());
                    async move { Ok(c.remember(&ns, b).await?.len()) }
                })
                .buffer_unordered(2)
                .collect()
                .await;
            for r in results {
                r?;
            }
            let secs = t0.elapsed().as_secs_f64();
            println!(
                "ingested {} → {size} in {secs:.0} s ({:.0}/s, batches of 256, 2 in flight)",
                size - have,
                (size - have) as f64 / secs
            );
            have = size;
        }
        // One-item commits (what an agent's single Remember costs at this size).
        let mut commit_ms = Vec::with_capacity(commits);
        for _ in 0..commits {
            let t = Instant::now();
            client.remember(&ns, vec![item(have)]).await?;
            commit_ms.push(t.elapsed().as_secs_f64() * 1e3);
            have += 1;
        }
        summary(
            &format!("{size}: one-item Remember (client-observed, durable)"),
            "ms",
            commit_ms,
        );
        // Exact top-10 by f32 cosine over the whole corpus, for recall@10.
        let corpus: Vec<Vec<f32>> = (0..have as u64).map(|i| syn.vector(i)).collect();
        let truth: Vec<HashSet<String>> = qs
            .iter()
            .map(|q| {
                let mut scored: Vec<(f32, usize)> = corpus
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (-v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), i))
                    .collect();
                let ten = scored.len().min(10);
                scored.select_nth_unstable_by(ten.saturating_sub(1), |a, b| a.0.total_cmp(&b.0));
                scored[..ten]
                    .iter()
                    .map(|&(_, i)| format!("synthetic memory {i}"))
                    .collect()
            })
            .collect();
        drop(corpus);
        for q in qs.iter().take(20) {
            client
                .recall_vector(&ns, q.clone())
                .k(10)
                .ef(ef)
                .send()
                .await?;
        }
        let (mut lat, mut found) = (Vec::with_capacity(qs.len()), 0usize);
        for (q, t10) in qs.iter().zip(&truth) {
            let t = Instant::now();
            let hits = client
                .recall_vector(&ns, q.clone())
                .k(10)
                .ef(ef)
                .send()
                .await?;
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            found += hits.iter().filter(|h| t10.contains(&h.text)).count();
        }
        let recall = found as f64 / (10 * qs.len().max(1)) as f64;
        summary(
            &format!(
                "{size}: vector Recall k=10 (client-observed), recall@10 {recall:.3} vs exact f32"
            ),
            "ms",
            lat,
        );
        let mut trivial = Vec::with_capacity(200);
        for _ in 0..200 {
            let t = Instant::now();
            client.node_info().await?;
            trivial.push(t.elapsed().as_secs_f64() * 1e3);
        }
        summary(&format!("{size}: NodeInfo (a trivial call)"), "ms", trivial);
        let asked = cairn_client::verify::RecallAsked { k: 10, min_ef: ef };
        let (mut answer, mut verify, mut kib) = (Vec::new(), Vec::new(), Vec::new());
        for q in qs.iter().take(proofs) {
            let t = Instant::now();
            let resp = client
                .recall_vector(&ns, q.clone())
                .k(10)
                .ef(ef)
                .proof(true)
                .send_full()
                .await?;
            answer.push(t.elapsed().as_secs_f64() * 1e3);
            kib.push(resp.proof.len() as f64 / 1024.0);
            let t = Instant::now();
            cairn_client::verify::recall(&ns, &asked, &resp, &trusted, None)
                .map_err(|e| anyhow::anyhow!("proof did not verify: {e}"))?;
            verify.push(t.elapsed().as_secs_f64() * 1e3);
        }
        summary(
            &format!("{size}: vector Recall with proof (answer)"),
            "ms",
            answer,
        );
        summary(&format!("{size}: proof size"), "KiB", kib);
        summary(&format!("{size}: client verify"), "ms", verify);
        let (rss, hwm) = rss_mb(pid);
        println!("{size}: node RSS {rss:.0} MB, peak {hwm:.0} MB (VmHWM)");
    }
    Ok(())
}

/// Embeds `texts` with the node, 256 at a time.
async fn embed_all(client: &CairnClient, texts: &[String]) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(256) {
        let r = client.embed(chunk.to_vec()).await?;
        out.extend(r.vectors.into_iter().map(|v| v.values));
    }
    Ok(out)
}

/// The texts of the exact top-10 of `q` by f32 dot product over `corpus`.
fn exact_top10(corpus: &[Vec<f32>], texts: &[String], q: &[f32]) -> HashSet<String> {
    let mut scored: Vec<(f32, usize)> = corpus
        .iter()
        .enumerate()
        .map(|(i, v)| (-v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), i))
        .collect();
    let ten = scored.len().min(10);
    if ten > 0 {
        scored.select_nth_unstable_by(ten - 1, |a, b| a.0.total_cmp(&b.0));
    }
    scored[..ten]
        .iter()
        .map(|&(_, i)| texts[i].clone())
        .collect()
}

async fn bench_vectors(args: &Args, n: usize, queries: usize, efs: &[u32]) -> Result<()> {
    let root = data_root(args);
    let mut texts = memory_texts(&root, n)?;
    let mut seen = HashSet::new();
    texts.retain(|t| seen.insert(t.clone()));
    let mut qs: Vec<String> = read_jsonl(&root.join("locomo/flat/questions.jsonl"))?
        .iter()
        .filter_map(|v| v["question"].as_str().map(str::to_owned))
        .collect();
    qs.extend(
        read_jsonl(&root.join("scifact/queries.jsonl"))?
            .iter()
            .filter_map(|v| v["text"].as_str().map(str::to_owned)),
    );
    qs.truncate(queries);
    let node = start_node(args.data_dir.as_deref())?;
    let client = connect(node.url.clone(), &node.dir).await?;
    let ns = format!("bench/vectors-{n}");
    let t0 = Instant::now();
    let corpus = embed_all(&client, &texts).await?;
    let qv = embed_all(&client, &qs).await?;
    println!(
        "vectors: {} distinct texts and {} queries embedded by the node in {:.0} s",
        texts.len(),
        qs.len(),
        t0.elapsed().as_secs_f64()
    );
    let have = client
        .stats(Some(&ns))
        .await
        .map_or(0, |s| s.total_memories as usize);
    if have == 0 {
        client
            .create_namespace(&ns, Some(("bench-all-MiniLM-L6-v2", 384)))
            .await?;
        let t0 = Instant::now();
        for (tc, vc) in texts.chunks(256).zip(corpus.chunks(256)) {
            let batch: Vec<NewMemory> = tc
                .iter()
                .zip(vc)
                .map(|(t, v)| NewMemory::new(t.clone()).vector(v.clone()))
                .collect();
            client.remember(&ns, batch).await?;
        }
        println!(
            "stored {} memories with their vectors in {:.0} s",
            texts.len(),
            t0.elapsed().as_secs_f64()
        );
    } else if have != texts.len() {
        bail!("{ns} holds {have} memories, expected {}", texts.len());
    }
    let truth: Vec<HashSet<String>> = qv.iter().map(|q| exact_top10(&corpus, &texts, q)).collect();
    let mut exact_found = 0usize;
    for (q, t10) in qv.iter().zip(&truth) {
        let hits = client
            .recall_vector(&ns, q.clone())
            .k(10)
            .exact(true)
            .send()
            .await?;
        exact_found += hits.iter().filter(|h| t10.contains(&h.text)).count();
    }
    println!(
        "{}: the node's exact search over the int8 codes: recall@10 {:.3} vs exact f32",
        texts.len(),
        exact_found as f64 / (10 * qv.len().max(1)) as f64
    );
    for &ef in efs {
        for q in qv.iter().take(20) {
            client
                .recall_vector(&ns, q.clone())
                .k(10)
                .ef(ef)
                .send()
                .await?;
        }
        let (mut lat, mut found) = (Vec::with_capacity(qv.len()), 0usize);
        for (q, t10) in qv.iter().zip(&truth) {
            let t = Instant::now();
            let hits = client
                .recall_vector(&ns, q.clone())
                .k(10)
                .ef(ef)
                .send()
                .await?;
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            found += hits.iter().filter(|h| t10.contains(&h.text)).count();
        }
        let recall = found as f64 / (10 * qv.len().max(1)) as f64;
        summary(
            &format!(
                "{}: vector Recall k=10 ef={ef} (client-observed), recall@10 {recall:.3} vs exact f32",
                texts.len()
            ),
            "ms",
            lat,
        );
    }
    Ok(())
}
