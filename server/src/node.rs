//! Running a node: load the model, open the engine, serve gRPC (+ health and reflection) until a signal, then
//! save indexes and close the stores.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use cairn_index::validate::Limits;
use cairn_proto::v1::cairn_server::CairnServer;

use crate::embed::{EmbedConfig, Embedder};
use crate::engine::{Engine, EngineConfig};
use crate::service::CairnService;

/// Largest request the node accepts: 8 MiB of content plus room for framing and field overhead. Bigger
/// messages are refused by the decoder with RESOURCE_EXHAUSTED before being buffered whole.
pub const MAX_REQUEST_BYTES: usize = (8 << 20) + (256 << 10);

/// Everything `cairn serve` needs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// gRPC listen address.
    pub listen: String,
    /// Model and runtime.
    pub embed: EmbedConfig,
    /// Peers to fetch the model from when it is not installed (`--model-from`).
    pub model_source: crate::models::ModelSource,
    /// Offer the model to peers over `cairn/model/1`.
    pub serve_model: bool,
    /// Memory size limits.
    pub limits: Limits,
    /// HNSW M.
    pub m: usize,
    /// HNSW ef_construction.
    pub ef_construction: usize,
    /// Default Recall ef.
    pub ef_search: usize,
    /// Graph size up to which recall proofs are exact-mode.
    pub exact_proof_limit: u64,
    /// Recall's default ranking for text queries.
    pub recall_mode: crate::engine::RecallMode,
    /// Default fusion depth of lexical and hybrid Recall.
    pub fusion_depth: usize,
    /// Where the iroh endpoint listens (peers, replication).
    pub p2p_listen: SocketAddr,
    /// Enable relays and public address lookup.
    pub p2p_public: bool,
    /// Seconds to spend at start-up comparing owned namespaces' roots with peers' (0: skip).
    pub peer_check_secs: u64,
    /// Most gRPC calls in progress at once; more are shed with RESOURCE_EXHAUSTED.
    pub max_in_flight: usize,
    /// Server-side deadline of one gRPC call.
    pub request_timeout: Duration,
    /// Keepalive probe interval on gRPC connections.
    pub keepalive: Duration,
    /// Most signed roots per catch-up answer served to peers.
    pub chain_roots: usize,
    /// Where the highest published root per namespace is kept (outside the data dir).
    pub published_dir: PathBuf,
    /// Namespaces allowed to write although their data dir is older than what was published.
    pub allow_fork: Vec<String>,
    /// Free-space floor of the data dir's disk, in MiB (0: none).
    pub min_free_mb: u64,
    /// Most WatchRoots streams open at once.
    pub max_watchers: usize,
    /// Most bytes of memories in one List page.
    pub max_page_bytes: usize,
    /// Most graph nodes an exact search (or exact-mode proof) may score on request.
    pub max_exact: u64,
    /// Most memories a ranked filtered Recall may score (and its proof carry).
    pub max_filter_candidates: u64,
    /// Bytes of RAM the state file's page cache may hold (`--state-cache-mb`).
    pub state_cache_bytes: usize,
    /// Witness keys pinned by the operator (their cosignatures are kept although they are not peers).
    pub witnesses: Vec<[u8; 32]>,
    /// Most cosignatures kept per witness per second.
    pub max_cosigs_per_sec: u32,
    /// TLS on the gRPC port.
    pub tls: crate::tls::TlsMode,
    /// Where to serve Prometheus metrics (`GET /metrics`); none: off.
    pub metrics_listen: Option<SocketAddr>,
    /// A span per gRPC call (for OTLP export, `--otlp-endpoint`).
    pub trace_rpcs: bool,
    /// Check capability tokens on every call (off only with `--no-auth`).
    pub auth: bool,
    /// Serve on a non-loopback address without TLS or without tokens.
    pub insecure: bool,
    /// Time between scrub passes (forgotten data rewritten out of the saved graphs and the state file).
    pub scrub_interval: Duration,
    /// Anchor owned namespaces' roots on a chain while serving (`--anchor-to`).
    pub anchor: Option<crate::anchoring::AnchorSettings>,
}

/// Runs a node until SIGINT/SIGTERM.
pub async fn serve(cfg: NodeConfig) -> Result<()> {
    let addr: SocketAddr = cfg.listen.parse().with_context(|| {
        format!(
            "--listen {:?} is not an address like 127.0.0.1:7420",
            cfg.listen
        )
    })?;
    let protected = cfg.auth && cfg.tls != crate::tls::TlsMode::Off;
    if !(addr.ip().is_loopback() || protected) {
        if !cfg.insecure {
            anyhow::bail!(
                "refusing to listen on {addr} (not loopback) without TLS and token checks: anyone who reaches the \
                 port could read, write and forget memories. Give --tls (or --tls-cert/--tls-key) and keep tokens \
                 on, or pass --insecure if the network itself is trusted."
            );
        }
        tracing::warn!(
            %addr,
            "INSECURE: serving on a non-loopback address without TLS and token checks (--insecure)"
        );
        eprintln!("WARNING: cairn is serving on {addr} without TLS and token checks (--insecure)");
    }
    let embed_cfg = crate::models::ensure(cfg.embed.clone(), &cfg.model_source)
        .await
        .context("cannot get the embedding model from the peers given with --model-from")?;
    let t0 = std::time::Instant::now();
    let shelf = cfg
        .serve_model
        .then(|| (embed_cfg.model_dir.clone(), embed_cfg.ort_lib.clone()));
    let embed_base = embed_cfg.clone();
    let embedder = tokio::task::spawn_blocking(move || Embedder::start(&embed_cfg)).await??;
    tracing::info!(model = %embedder.info().id, ms = t0.elapsed().as_millis() as u64, "model loaded");
    let engine = Engine::open(
        EngineConfig {
            data_dir: cfg.data_dir.clone(),
            limits: cfg.limits,
            m: cfg.m,
            ef_construction: cfg.ef_construction,
            ef_search: cfg.ef_search,
            exact_proof_limit: cfg.exact_proof_limit,
            recall_mode: cfg.recall_mode,
            fusion_depth: cfg.fusion_depth,
            // Short: a pass holds writers off until the next tick (see blobs.rs), and passes run only when wanted.
            gc_interval: Duration::from_millis(250),
            max_chain: cfg.chain_roots,
            published_dir: cfg.published_dir.clone(),
            allow_fork: cfg.allow_fork.clone(),
            min_free_bytes: cfg.min_free_mb << 20,
            max_page_bytes: cfg.max_page_bytes,
            max_exact: cfg.max_exact,
            max_filter_candidates: cfg.max_filter_candidates,
            state_cache_bytes: cfg.state_cache_bytes,
            witnesses: cfg.witnesses.clone(),
            cosigs_per_sec: cfg.max_cosigs_per_sec,
            models: Some(installed_models(&embed_base, &cfg.model_source.cache)),
        },
        embedder,
    )
    .await
    .with_context(|| format!("cannot open data dir {}", cfg.data_dir.display()))?;

    let cert = crate::tls::load(&cfg.tls, &cfg.data_dir).context("cannot set up TLS")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;

    let (health, health_svc) = tonic_health::server::health_reporter();
    health.set_serving::<CairnServer<CairnService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cairn_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let p2p = crate::p2p::P2p::start(
        engine.clone(),
        crate::p2p::P2pConfig {
            listen: cfg.p2p_listen,
            public: cfg.p2p_public,
            shelf: shelf.map(|(dir, ort)| {
                std::sync::Arc::new(crate::models::Shelf::new(
                    engine.blobs(),
                    dir,
                    ort,
                    cfg.data_dir.clone(),
                    cfg.min_free_mb << 20,
                ))
            }),
        },
    )
    .await?;
    // Before any write is taken: a peer holding a newer root of ours means this data dir is an older copy.
    if cfg.peer_check_secs > 0 {
        p2p.compare_with_peers(std::time::Duration::from_secs(cfg.peer_check_secs))
            .await;
    }
    let auth = if cfg.auth {
        let revoked = engine.revoked_tokens()?;
        std::sync::Arc::new(
            crate::auth::Auth::open(&cfg.data_dir, revoked).context("cannot set up tokens")?,
        )
    } else {
        tracing::warn!(
            "token checks are off (--no-auth): anyone who reaches the port may do anything"
        );
        std::sync::Arc::new(crate::auth::Auth::disabled())
    };
    let svc = CairnServer::new(CairnService::new(
        engine.clone(),
        p2p.clone(),
        auth,
        cfg.max_watchers,
    ))
    .max_decoding_message_size(MAX_REQUEST_BYTES)
    .max_encoding_message_size(usize::MAX);

    let anchorer = match &cfg.anchor {
        Some(a) => Some(crate::anchoring::spawn(engine.clone(), a)?),
        None => None,
    };
    let scrubber = {
        let engine = engine.clone();
        let every = cfg.scrub_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = engine.scrub().await {
                    tracing::warn!(error = %e, "scrub pass failed; retrying at the next pass");
                }
                let _ =
                    tokio::task::spawn_blocking(crate::embed::release_free_memory_if_grown).await;
            }
        })
    };
    if let Some(m) = cfg.metrics_listen {
        crate::metrics::install(m)?;
        crate::metrics::spawn_gauges(engine.clone(), p2p.clone());
    }
    let saver = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            tick.tick().await;
            loop {
                tick.tick().await;
                engine.save_indexes().await;
            }
        })
    };

    // Printed on stdout so scripts and tests can wait for it (the certificate line first).
    if let Some(c) = &cert {
        println!("cairn node TLS certificate sha256 {}", c.fingerprint);
    }
    println!(
        "cairn node listening on {local} (data dir {}; p2p ticket {})",
        cfg.data_dir.display(),
        p2p.ticket()
    );
    tracing::info!(%local, "serving");
    let mut server = tonic::transport::Server::builder();
    if cfg.trace_rpcs {
        server = server.trace_fn(crate::otlp::rpc_span);
    }
    if let Some(c) = &cert {
        server = server
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(
                tonic::transport::Identity::from_pem(&c.cert_pem, &c.key_pem),
            ))
            .context("TLS certificate or key not usable")?;
    }
    server
        .layer(crate::metrics::RpcMetricsLayer)
        .timeout(cfg.request_timeout)
        .http2_keepalive_interval(Some(cfg.keepalive))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_keepalive(Some(cfg.keepalive))
        .layer(tower::util::MapResponseLayer::new(
            crate::status_map::fix_status,
        ))
        // Overload is shed at once with RESOURCE_EXHAUSTED, never queued without bound.
        .layer(tower::util::MapErrLayer::new(shed_status))
        .layer(tower::load_shed::LoadShedLayer::new())
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            cfg.max_in_flight,
        ))
        .add_service(health_svc)
        .add_service(reflection)
        .add_service(svc)
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY, Nagle's algorithm and delayed ACKs add ~40 ms to small responses.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown_signal(),
        )
        .await?;
    saver.abort();
    scrubber.abort();
    if let Some(a) = anchorer {
        a.abort();
    }
    tracing::info!("shutting down: saving indexes");
    p2p.shutdown().await;
    shutdown(engine).await;
    Ok(())
}

/// Names the limit a shed call ran into (tonic's own message speaks of "the connection"; the limit is global).
fn shed_status(e: tower::BoxError) -> tower::BoxError {
    if e.is::<tower::load_shed::error::Overloaded>() {
        Box::new(tonic::Status::resource_exhausted(
            "overloaded: the node is serving its maximum of calls at once (--max-in-flight); retry shortly",
        ))
    } else {
        e
    }
}

async fn shutdown(engine: Arc<Engine>) {
    engine.shutdown().await;
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Starts the embedder of a model installed under `<cache>/models` by its identity (namespaces moved there with
/// `cairn migrate`), with the runtime and batch settings of the node's own model.
fn installed_models(
    base: &crate::embed::EmbedConfig,
    cache: &std::path::Path,
) -> crate::engine::migrate::ModelLoader {
    let (base, cache) = (base.clone(), cache.to_owned());
    crate::engine::migrate::ModelLoader(Arc::new(move |hash: &[u8; 32]| {
        let dir = crate::models::install_dir(&cache, hash);
        if !dir.join("manifest.json").is_file() {
            return Err(format!(
                "model {} is not installed in {} (cairn model fetch --model HASH installs it)",
                hex::encode(hash),
                dir.display()
            ));
        }
        let cfg = crate::embed::EmbedConfig {
            model_dir: dir.clone(),
            ..base.clone()
        };
        let e = Embedder::start(&cfg).map_err(|e| e.to_string())?;
        if e.info().hash != *hash {
            return Err(format!(
                "{} holds model {}, not {}",
                dir.display(),
                hex::encode(e.info().hash),
                hex::encode(hash)
            ));
        }
        Ok(e)
    }))
}
