//! Optional OTLP trace export (`cairn serve --otlp-endpoint URL`): a span per gRPC call, sent over OTLP/HTTP
//! (protobuf) by the SDK's batch processor on a thread of its own, not on the call's path.

use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

/// Errors setting up the exporter.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The exporter could not be built (bad URL, no HTTP client).
    #[error("cannot set up the OTLP exporter: {0}")]
    Build(String),
}

/// A tracer provider exporting to `base` + `/v1/traces`. Keep it until exit and call `shutdown` to flush.
pub fn provider(base: &str) -> Result<SdkTracerProvider, OtlpError> {
    // The HTTP client (reqwest with rustls and no default crypto provider) needs a process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')))
        .with_timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| OtlpError::Build(e.to_string()))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("cairn").build())
        .build())
}

/// The span of one gRPC call, named by its method (`cairn.v1.Cairn/Remember`), as OTLP server spans.
pub fn rpc_span(req: &http::Request<()>) -> tracing::Span {
    // Only known methods name spans (like the metrics' labels): made-up paths share the name `other`.
    let label = crate::metrics::method_label(req.uri().path());
    let name = label.trim_start_matches('/');
    let (service, method) = name.split_once('/').unwrap_or((name, ""));
    tracing::info_span!(
        "grpc",
        otel.name = name,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method
    )
}
