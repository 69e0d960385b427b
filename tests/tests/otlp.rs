//! `cairn serve --otlp-endpoint URL` exports a span per gRPC call over OTLP/HTTP: a loopback receiver in the test
//! decodes what a real node sends (the spans arrive only through the exporter, flushed at shutdown).

use std::time::{Duration, Instant};

use cairn_client::NewMemory;
use cairn_tests::{temp_dir, Node};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// A loopback OTLP/HTTP receiver: every decoded `POST /v1/traces` body goes to the channel.
async fn otlp_receiver() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(sock);
                // Keep-alive: several requests per connection, each bounded by the connection's life.
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let (mut len, mut proto) = (0usize, false);
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        let Some((k, v)) = h.split_once(':') else {
                            break;
                        };
                        match k.to_ascii_lowercase().as_str() {
                            "content-length" => len = v.trim().parse().unwrap_or(0),
                            "content-type" => proto = v.trim() == "application/x-protobuf",
                            _ => {}
                        }
                    }
                    let mut body = vec![0; len.min(64 << 20)];
                    if r.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let ok = line.starts_with("POST /v1/traces ") && proto;
                    if ok {
                        if let Ok(m) = ExportTraceServiceRequest::decode(body.as_slice()) {
                            let _ = tx.send(m);
                        }
                    }
                    let status = if ok { "200 OK" } else { "400 Bad Request" };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
                    );
                    if r.get_mut().write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_exports_a_span_per_rpc() {
    let (endpoint, mut rx) = otlp_receiver().await;
    let dir = temp_dir();
    let node = Node::start_with(dir.path(), &["--otlp-endpoint", &endpoint]).expect("node");
    let c = node.client().await.expect("client");
    c.remember("otlp/ns", vec![NewMemory::new("the cat sat on the mat")])
        .await
        .expect("remember");
    c.recall("otlp/ns", "cat").send().await.expect("recall");
    // Stopped well before the batch delay (5 s): the spans arrive only if shutdown flushes them.
    let _node = tokio::task::spawn_blocking(move || {
        let mut n = node;
        n.stop();
        n
    })
    .await
    .expect("stop");
    let (mut names, mut services) = (Vec::<String>::new(), Vec::<String>::new());
    let t0 = Instant::now();
    while !(names.iter().any(|n| n == "cairn.v1.Cairn/Remember")
        && names.iter().any(|n| n == "cairn.v1.Cairn/Recall"))
        && t0.elapsed() < Duration::from_secs(15)
    {
        let Ok(Some(req)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await
        else {
            continue;
        };
        for rs in &req.resource_spans {
            for kv in rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .filter(|kv| kv.key == "service.name")
            {
                if let Some(Value::StringValue(s)) =
                    kv.value.as_ref().and_then(|v| v.value.as_ref())
                {
                    services.push(s.clone());
                }
            }
            names.extend(
                rs.scope_spans
                    .iter()
                    .flat_map(|ss| &ss.spans)
                    .map(|s| s.name.clone()),
            );
        }
    }
    assert!(
        names.iter().any(|n| n == "cairn.v1.Cairn/Remember"),
        "spans: {names:?}"
    );
    assert!(
        names.iter().any(|n| n == "cairn.v1.Cairn/Recall"),
        "spans: {names:?}"
    );
    assert!(
        !services.is_empty() && services.iter().all(|s| s == "cairn"),
        "service.name: {services:?}"
    );
}
