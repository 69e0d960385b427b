//! The `cairn` binary: `cairn serve` runs a node, every other subcommand talks to one.

use std::process::ExitCode;

use anyhow::Result;
use cairn_index::validate::Limits;
use cairn_server::cli::{self, Cli, Command};
use cairn_server::embed::EmbedConfig;
use cairn_server::node::{self, NodeConfig};
use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    cairn_server::embed::limit_heap_arenas();
    // `serve --config FILE` adds the file's settings in front of the command line's.
    let argv = match cli::config::expand(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let matches = match Cli::command().try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) => e.exit(),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    if let Command::Serve(args) = &cli.command {
        if args.print_config {
            if let Some(m) = matches.subcommand_matches("serve") {
                print!("{}", cli::config::print(m));
            }
            return ExitCode::SUCCESS;
        }
    }
    // Client commands die quietly on a closed pipe (`cairn list | head`), like other Unix tools, instead of
    // panicking in println. Never the node: a client that drops its connection mid-answer would kill it.
    #[cfg(unix)]
    if !matches!(cli.command, Command::Serve(_)) {
        // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
        #[allow(unsafe_code)]
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,ort=warn,iroh=warn,iroh_blobs=warn,rmcp=warn")
    });
    let otlp = match &cli.command {
        Command::Serve(a) => match a.otlp_endpoint.as_deref().map(cairn_server::otlp::provider) {
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => {
                eprintln!("error: --otlp-endpoint: {e}");
                return ExitCode::FAILURE;
            }
            None => None,
        },
        _ => None,
    };
    {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::prelude::*;
        // Per-layer filters: CAIRN_LOG is the log's own, so a quiet log does not silence the RPC spans, and only
        // the node's own spans reach the exporter.
        let fmt_layer = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter);
        let otel_layer = otlp.as_ref().map(|p| {
            tracing_opentelemetry::layer()
                .with_tracer(p.tracer("cairn"))
                .with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target("cairn_server", tracing::Level::INFO),
                )
        });
        tracing_subscriber::registry()
            .with(fmt_layer)
            .with(otel_layer)
            .init();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(run(cli));
    if let Some(p) = &otlp {
        // Flush the spans still queued (outside the runtime, as the exporter's blocking client needs).
        if let Err(e) = p.shutdown_with_timeout(std::time::Duration::from_secs(5)) {
            eprintln!("warning: OTLP flush at exit: {e}");
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let cfg = NodeConfig {
                data_dir: args.data_dir.unwrap_or_else(cli::default_data_dir),
                listen: args.listen,
                embed: EmbedConfig {
                    max_batch: usize::from(args.embed_batch),
                    ..cli::local_embed_config(args.model_dir, args.ort_lib)
                },
                model_source: cairn_server::models::ModelSource {
                    from: args.model_from,
                    model: args.model_hash,
                    allow_unpinned: args.allow_unpinned,
                    cache: cli::cache_root(),
                },
                serve_model: !args.no_serve_model,
                limits: Limits {
                    max_text_bytes: args.max_text_bytes as usize,
                    ..Limits::default()
                },
                m: usize::from(args.hnsw_m),
                ef_construction: usize::from(args.ef_construction),
                ef_search: usize::from(args.ef_search),
                exact_proof_limit: args.exact_proof_limit,
                recall_mode: args.recall_mode,
                fusion_depth: usize::from(args.fusion_depth),
                p2p_listen: args.p2p_listen,
                p2p_public: args.p2p_public,
                peer_check_secs: args.peer_check_secs,
                max_in_flight: args.max_in_flight as usize,
                request_timeout: std::time::Duration::from_secs(u64::from(args.request_timeout)),
                keepalive: std::time::Duration::from_secs(u64::from(args.keepalive)),
                chain_roots: args.chain_roots as usize,
                published_dir: args
                    .published_dir
                    .unwrap_or_else(cairn_server::published::default_dir),
                allow_fork: args.allow_fork,
                min_free_mb: args.min_free_mb,
                max_watchers: args.max_watchers as usize,
                max_page_bytes: (args.max_page_mb as usize) << 20,
                max_exact: args.max_exact,
                max_filter_candidates: args.max_filter_candidates,
                state_cache_bytes: (args.state_cache_mb as usize) << 20,
                scrub_interval: std::time::Duration::from_secs(args.scrub_secs),
                anchor: match (args.anchor_to, args.anchor_key) {
                    (Some(to), Some(key)) => Some(cairn_server::anchoring::AnchorSettings {
                        to,
                        key,
                        every: args.anchor_every,
                        interval: args.anchor_interval.map(std::time::Duration::from_secs),
                        timeout: std::time::Duration::from_secs(args.anchor_timeout),
                    }),
                    _ => None,
                },
                max_cosigs_per_sec: args.max_cosigs_per_sec,
                witnesses: args.witness,
                tls: match (args.tls, args.tls_cert, args.tls_key) {
                    (_, Some(cert), Some(key)) => cairn_server::tls::TlsMode::Files { cert, key },
                    (true, _, _) => cairn_server::tls::TlsMode::SelfSigned,
                    _ => cairn_server::tls::TlsMode::Off,
                },
                auth: !args.no_auth,
                metrics_listen: args.metrics_listen,
                trace_rpcs: args.otlp_endpoint.is_some(),
                insecure: args.insecure,
            };
            node::serve(cfg).await
        }
        _ => cli::run_client_command(cli).await,
    }
}
