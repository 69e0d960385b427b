//! Prometheus metrics on `--metrics-listen ADDR` (off by default), with the `metrics` facade and
//! `metrics-exporter-prometheus`. Series (all prefixed `cairn_`):
//!
//! - `rpc_calls_total{method,code}` and `rpc_duration_seconds{method}`: every gRPC call, by method and status code;
//! - `namespace_memories{namespace}`, `namespace_tombstones{namespace}`, `namespace_root_seq{namespace}`;
//! - `replica_lag_roots{namespace}` and `replica_lag_seconds{namespace}`: how far a replica is behind the newest root
//!   its owner announced (seconds since that root was signed, while it is not held; 0 when caught up);
//! - `equivocation_alerts`: evidence held against owners;
//! - `embed_batch_texts` (histogram) and `embed_queue_texts`: the embedder's model calls and queued texts;
//! - `blob_gc_passes_total`, `vacuum_total`, `vacuum_bytes_freed_total`: collections and state-file rewrites;
//! - `snapshot_builds_total`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}: {reason}")]
pub struct MetricsError {
    addr: SocketAddr,
    reason: String,
}

/// Latency buckets of `rpc_duration_seconds`, from 0.5 ms to 30 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Starts the exporter's HTTP listener (`GET /metrics`) in the current runtime and installs the recorder.
pub fn install(addr: SocketAddr) -> Result<(), MetricsError> {
    let err = |e: &dyn std::fmt::Display| MetricsError {
        addr,
        reason: e.to_string(),
    };
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(BUCKETS)
        .map_err(|e| err(&e))?
        .install()
        .map_err(|e| err(&e))?;
    tracing::info!(%addr, "serving metrics on /metrics");
    Ok(())
}

/// Counts every gRPC call and its latency by method and status (a tower layer around the whole server).
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcMetricsLayer;

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner }
    }
}

/// See [`RpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct RpcMetrics<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, RB> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = method_label(req.uri().path());
        let t0 = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            // Errors come as trailers-only responses with `grpc-status` in the headers; success has it in the
            // trailers, after the body (counted as 0 here).
            let code = match &r {
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0")
                    .to_owned(),
                Err(_) => "shed".to_owned(),
            };
            metrics::counter!("cairn_rpc_calls_total", "method" => method.clone(), "code" => code)
                .increment(1);
            metrics::histogram!("cairn_rpc_duration_seconds", "method" => method)
                .record(t0.elapsed().as_secs_f64());
            r
        })
    }
}

/// The `method` label of a request path: the path itself for the service's methods (from the rights table) and
/// the standard health and reflection services, `other` for anything else, so a client sending made-up paths
/// cannot grow the number of series without bound.
pub(crate) fn method_label(path: &str) -> String {
    let known = path
        .strip_prefix("/cairn.v1.Cairn/")
        .is_some_and(|m| crate::auth::rules::need(m).is_some())
        || matches!(
            path,
            "/grpc.health.v1.Health/Check"
                | "/grpc.health.v1.Health/Watch"
                | "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
                | "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        );
    if known {
        path.to_owned()
    } else {
        "other".to_owned()
    }
}

/// Updates the per-namespace gauges every few seconds.
pub fn spawn_gauges(engine: Arc<crate::engine::Engine>, p2p: Arc<crate::p2p::P2p>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            let announced = p2p.announced();
            for s in engine.stats(None).unwrap_or_default() {
                let ns = s.namespace.clone();
                metrics::gauge!("cairn_namespace_memories", "namespace" => ns.clone())
                    .set(s.memories as f64);
                metrics::gauge!("cairn_namespace_tombstones", "namespace" => ns.clone())
                    .set(s.tombstones as f64);
                let held = engine.owner_root_seq(&ns).unwrap_or(0);
                metrics::gauge!("cairn_namespace_root_seq", "namespace" => ns.clone())
                    .set(held as f64);
                if let Some((_, seq, created_at)) =
                    announced.iter().find(|(n, _, _)| *n == ns).cloned()
                {
                    let behind = seq.saturating_sub(held);
                    let secs = if behind > 0 {
                        now_ms.saturating_sub(created_at) as f64 / 1000.0
                    } else {
                        0.0
                    };
                    metrics::gauge!("cairn_replica_lag_roots", "namespace" => ns.clone())
                        .set(behind as f64);
                    metrics::gauge!("cairn_replica_lag_seconds", "namespace" => ns).set(secs);
                }
            }
            metrics::gauge!("cairn_equivocation_alerts").set(engine.alerts().len() as f64);
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn made_up_paths_share_one_label() {
        assert_eq!(
            super::method_label("/cairn.v1.Cairn/Recall"),
            "/cairn.v1.Cairn/Recall"
        );
        assert_eq!(
            super::method_label("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        for p in [
            "/cairn.v1.Cairn/NoSuch",
            "/x/y",
            "/grpc.reflection.zzz/a",
            "",
        ] {
            assert_eq!(super::method_label(p), "other", "{p}");
        }
    }
}
