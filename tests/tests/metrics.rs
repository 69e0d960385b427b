//! `--metrics-listen`: a real node serves Prometheus metrics, and the series move with the work done (calls by
//! method and status, latency histograms, namespace gauges, embedding batches, collections and vacuums).

use std::time::{Duration, Instant};

use cairn_client::NewMemory;
use cairn_tests::{temp_dir, Node, FACTS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(addr: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect metrics");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("scrape timed out")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of the first series whose line starts with `prefix`.
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_work() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let dir = temp_dir();
    let node = Node::start_with(
        dir.path(),
        &["--metrics-listen", &addr, "--scrub-secs", "1"],
    )
    .expect("node");
    let c = node.client().await.expect("client");
    let items: Vec<NewMemory> = FACTS.iter().map(|t| NewMemory::new(*t)).collect();
    let ids: Vec<String> = c
        .remember("metrics/ns", items)
        .await
        .expect("remember")
        .into_iter()
        .map(|r| r.id)
        .collect();
    c.recall("metrics/ns", "who has a dog?")
        .send()
        .await
        .expect("recall");
    c.forget("metrics/ns", vec![ids[0].clone()])
        .await
        .expect("forget");
    let anon = cairn_client::CairnClient::connect(node.url.clone())
        .await
        .expect("connect");
    assert!(anon.stats(None).await.is_err());

    // Gauges refresh every 2 s and the vacuum follows the forget within the scrub interval.
    let t0 = Instant::now();
    let mut text = scrape(&addr).await;
    while t0.elapsed() < Duration::from_secs(20)
        && (value(&text, "cairn_namespace_memories{namespace=\"metrics/ns\"}").is_none()
            || value(&text, "cairn_vacuum_total").is_none())
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
        text = scrape(&addr).await;
    }
    let expect = |prefix: &str, at_least: f64| {
        let v = value(&text, prefix).unwrap_or_else(|| panic!("no series {prefix} in:\n{text}"));
        assert!(v >= at_least, "{prefix} = {v}, expected ≥ {at_least}");
    };
    expect(
        "cairn_rpc_calls_total{method=\"/cairn.v1.Cairn/Remember\",code=\"0\"}",
        1.0,
    );
    expect(
        "cairn_rpc_calls_total{method=\"/cairn.v1.Cairn/Stats\",code=\"16\"}",
        1.0,
    );
    expect(
        "cairn_rpc_duration_seconds_count{method=\"/cairn.v1.Cairn/Recall\"}",
        1.0,
    );
    assert!(text.contains("cairn_rpc_duration_seconds_bucket{method=\"/cairn.v1.Cairn/Recall\""));
    assert_eq!(
        value(&text, "cairn_namespace_memories{namespace=\"metrics/ns\"}"),
        Some((FACTS.len() - 1) as f64)
    );
    expect("cairn_namespace_tombstones{namespace=\"metrics/ns\"}", 1.0);
    expect("cairn_namespace_root_seq{namespace=\"metrics/ns\"}", 2.0);
    expect("cairn_embed_batch_texts_count", 1.0);
    expect("cairn_blob_gc_passes_total", 1.0);
    expect("cairn_vacuum_total", 1.0);
    assert!(text.contains("cairn_equivocation_alerts 0"), "{text}");
}
