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
        let (url, token) = (node.url.clone(), node.token.clone().unwrap_or_default());
        tasks.push(tokio::spawn(async move {
            // One connection per caller: the limit is for the node, not per connection.
            let c = cairn_client::CairnClient::connect_with_token(url, token)
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
    let mut raw = node.raw().await.expect("connect");
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

/// WatchRoots streams are capped (`--max-watchers`), and a stream is freed as soon as its client goes away, even
/// when no new root ever arrives for it.
#[tokio::test]
async fn watch_streams_are_capped_and_freed_on_disconnect() {
    let dir = temp_dir();
    let node = Node::start_with(dir.path(), &["--max-watchers", "2"]).expect("node");
    let c = node.client().await.expect("client");
    c.remember("w", batch(0, 1)).await.expect("remember");
    let first = c.watch_roots("w").await.expect("first stream");
    let _second = c.watch_roots("w").await.expect("second stream");
    let err = c
        .watch_roots("w")
        .await
        .expect_err("a third stream beyond --max-watchers 2");
    assert_eq!(err.code(), Some(Code::ResourceExhausted), "{err}");
    assert!(err.to_string().contains("--max-watchers"), "{err}");
    // The first client goes away; no root is written meanwhile, so only the disconnect can free its slot.
    drop(first);
    let mut freed = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if c.watch_roots("w").await.is_ok() {
            freed = true;
            break;
        }
    }
    assert!(freed, "a dropped stream kept its slot");
}

/// A List page ends early rather than exceed `--max-page-mb`, with a page token for the rest; paging still returns
/// every memory exactly once.
#[tokio::test]
async fn list_pages_end_early_at_the_byte_cap() {
    let dir = temp_dir();
    let node = Node::start_with(dir.path(), &["--max-page-mb", "1"]).expect("node");
    let c = node.client().await.expect("client");
    // 40 memories of about 60 KiB each: 2.4 MB in all.
    let items: Vec<NewMemory> = (0..40)
        .map(|i| {
            NewMemory::new(format!(
                "Long memory {i}: {}",
                "lorem ipsum dolor ".repeat(3400)
            ))
        })
        .collect();
    let ids: Vec<String> = c
        .remember("big", items)
        .await
        .expect("remember")
        .into_iter()
        .map(|r| r.id)
        .collect();
    let mut seen = Vec::new();
    let mut opts = cairn_client::ListOptions {
        limit: Some(100),
        ..Default::default()
    };
    let mut pages = 0;
    for _ in 0..40 {
        let page = c.list("big", opts.clone()).await.expect("list");
        pages += 1;
        let bytes: usize = page.memories.iter().map(|m| m.text.len()).sum();
        assert!(
            page.memories.len() == 1 || bytes <= 1 << 20,
            "a page of {bytes} bytes"
        );
        seen.extend(page.memories.into_iter().map(|m| m.id));
        if page.next_page_token.is_empty() {
            break;
        }
        opts.page_token = Some(page.next_page_token);
    }
    assert!(pages >= 3, "2.4 MB in {pages} pages of at most 1 MiB");
    let mut want = ids.clone();
    want.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(got, want, "paging lost or repeated memories");

    // Get is capped the same way: it names the ids it left out, in order, and asking again gets them, with a
    // proof of exactly what was returned.
    let owner: [u8; 32] = hex::decode(c.node_info().await.expect("info").node_id)
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    let mut asked = ids.clone();
    let mut fetched = Vec::new();
    let mut calls = 0;
    while !asked.is_empty() && calls < 40 {
        calls += 1;
        let r = c.get_with_proof("big", asked.clone()).await.expect("get");
        let bytes: usize = r.memories.iter().map(|m| m.text.len()).sum();
        assert!(
            r.memories.len() == 1 || bytes <= 1 << 20,
            "a Get answer of {bytes} bytes"
        );
        assert!(r.missing.is_empty(), "{:?}", r.missing);
        cairn_client::verify::get("big", &r, &owner, None)
            .expect("the proof covers what was returned");
        let returned: Vec<String> = r.memories.iter().map(|m| m.id.clone()).collect();
        assert_eq!(
            [returned.clone(), r.unreturned.clone()].concat(),
            asked,
            "returned and unreturned are not the request in order"
        );
        fetched.extend(returned);
        asked = r.unreturned;
    }
    assert!(calls >= 3, "2.4 MB in {calls} Get answers of at most 1 MiB");
    assert_eq!(fetched, ids, "Get lost or repeated memories");
}

/// Exact search is capped (`--max-exact`): a larger namespace answers RESOURCE_EXHAUSTED naming `exact`, while
/// the graph search keeps working.
#[tokio::test]
async fn exact_search_beyond_the_cap_is_refused() {
    let dir = temp_dir();
    let node = Node::start_with(dir.path(), &["--max-exact", "5"]).expect("node");
    let c = node.client().await.expect("client");
    c.remember("e", batch(0, 10)).await.expect("remember");
    let err = c
        .recall("e", "dock inspection")
        .exact(true)
        .send()
        .await
        .expect_err("an exact search over 10 memories with --max-exact 5");
    assert_eq!(err.code(), Some(Code::ResourceExhausted), "{err}");
    assert!(err.to_string().contains("exact"), "{err}");
    let hits = c
        .recall("e", "dock inspection")
        .k(3)
        .send()
        .await
        .expect("graph search");
    assert_eq!(hits.len(), 3);
}
