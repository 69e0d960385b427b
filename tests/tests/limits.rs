//! Load limits are flags and overload is shed with a clear status: calls beyond `--max-in-flight` are refused
//! at once with RESOURCE_EXHAUSTED, a call past `--request-timeout` ends with CANCELLED and its remaining model
//! work is dropped, and the node keeps serving (nothing acknowledged is lost).

use cairn_client::NewMemory;
use cairn_proto::v1 as pb;
use cairn_tests::{temp_dir, Node};
use tonic::Code;

fn batch(call: usize, n: usize) -> Vec<NewMemory> {
    (0..n)
        .map(|i| {
            NewMemory::new(format!(
                "Call {call} item {i}: the shipment for order {} waits at dock {} until the {} inspection.",
                call * 1000 + i,
                i % 9,
                ["morning", "noon", "evening"][i % 3]
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_beyond_max_in_flight_are_shed_and_nothing_acknowledged_is_lost() {
    let dir = temp_dir();
    let node = Node::start_with(dir.path(), &["--max-in-flight", "2"]).expect("node");
    let mut tasks = Vec::new();
    for call in 0..24 {
        let url = node.url.clone();
        tasks.push(tokio::spawn(async move {
            // One connection per caller: the limit is for the node, not per connection.
            let c = cairn_client::CairnClient::connect(url)
                .await
                .expect("connect");
            c.remember("shed", batch(call, 24)).await
        }));
    }
    let (mut ok, mut shed) = (Vec::new(), 0);
    for t in tasks {
        match t.await.expect("join") {
            Ok(r) => ok.extend(r.into_iter().map(|m| m.id)),
            Err(cairn_client::Error::Status(s)) => {
                assert_eq!(s.code(), Code::ResourceExhausted, "{}", s.message());
                assert!(s.message().contains("max-in-flight"), "{}", s.message());
                shed += 1;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert!(
        shed > 0,
        "24 concurrent calls against a limit of 2: none shed"
    );
    assert!(!ok.is_empty(), "every call was shed");
    let c = node.client().await.expect("client");
    let got = c.get("shed", ok.clone()).await.expect("get");
    assert!(got.missing.is_empty(), "acknowledged memories missing");
    assert_eq!(got.memories.len(), ok.len());
}

#[tokio::test]
async fn a_call_past_the_request_timeout_is_cancelled_and_the_node_keeps_serving() {
    let dir = temp_dir();
    // Model calls of 32 texts: the node drops a cancelled call's remaining work after at most one of them.
    let node = Node::start_with(
        dir.path(),
        &["--request-timeout", "1", "--embed-batch", "32"],
    )
    .expect("node");
    let mut raw = pb::cairn_client::CairnClient::connect(node.url.clone())
        .await
        .expect("connect");
    // Embedding 1,000 texts takes several seconds on this machine's cores.
    let texts: Vec<String> = batch(0, 1000).into_iter().map(|m| m.text).collect();
    let err = raw
        .embed(pb::EmbedRequest { texts })
        .await
        .expect_err("a 1,000-text embed finished within 1 s");
    assert_eq!(err.code(), Code::Cancelled, "{}", err.message());
    // The cancelled call's remaining texts are not embedded: a small write fits in the next second.
    let c = node.client().await.expect("client");
    let r = c.remember("t", batch(1, 2)).await.expect("remember");
    assert_eq!(r.len(), 2);
}
