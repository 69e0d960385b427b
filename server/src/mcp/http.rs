//! `cairn mcp --http ADDR`: MCP over streamable HTTP. Every request needs `Authorization: Bearer <token>`, the
//! caller's own Cairn capability token: it is checked with the node once (then cached briefly) and sent with
//! each of the caller's calls, so the server holds no authority of its own. Host headers are checked against an
//! allow-list (DNS rebinding), and requests from browsers (an `Origin` header) are refused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::tools::{CairnMcp, Shared};

/// How long a token the node accepted is taken without asking again.
const TOKEN_TTL: Duration = Duration::from_secs(30);
/// Most tokens remembered as accepted (the cache is cleared when full).
const TOKEN_CACHE: usize = 1024;

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

struct Gate {
    shared: Arc<Shared>,
    accepted: Mutex<HashMap<String, Instant>>,
}

impl Gate {
    /// True if the node accepts `token` (any right: ListNamespaces is open to every valid token).
    async fn accepts(&self, token: &str) -> bool {
        if let Ok(m) = self.accepted.lock() {
            if m.get(token).is_some_and(|t| t.elapsed() < TOKEN_TTL) {
                return true;
            }
        }
        let Ok(c) = self.shared.client.with_token(Some(token)) else {
            return false;
        };
        match c.list_namespaces().await {
            Ok(_) => {
                if let Ok(mut m) = self.accepted.lock() {
                    if m.len() >= TOKEN_CACHE {
                        m.clear();
                    }
                    m.insert(token.to_owned(), Instant::now());
                }
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "MCP request with a token the node refuses");
                false
            }
        }
    }
}

async fn require_bearer(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    match bearer(req.headers()) {
        Some(t) if gate.accepts(&t).await => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a Cairn capability token is required: Authorization: Bearer <token>",
        )
            .into_response(),
    }
}

/// Serves MCP at `http://ADDR/mcp` until Ctrl-C / SIGTERM.
pub async fn serve(
    shared: Arc<Shared>,
    addr: SocketAddr,
    allowed_hosts: Vec<String>,
) -> Result<()> {
    let ct = CancellationToken::new();
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(allowed_hosts)
        .enforce_origin_validation()
        .with_cancellation_token(ct.child_token());
    let factory_shared = shared.clone();
    let mcp: StreamableHttpService<CairnMcp, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(CairnMcp::new(factory_shared.clone())),
        LocalSessionManager::default().into(),
        config,
    );
    let gate = Arc::new(Gate {
        shared,
        accepted: Mutex::new(HashMap::new()),
    });
    let app = axum::Router::new()
        .nest_service("/mcp", mcp)
        .layer(middleware::from_fn_with_state(gate, require_bearer));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    // Scripts and tests wait for this line (stdout is free in HTTP mode).
    println!("cairn mcp listening on http://{local}/mcp");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            crate::node::shutdown_signal().await;
            ct.cancel();
        })
        .await?;
    Ok(())
}
