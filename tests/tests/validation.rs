//! Every validation rule answers with its status code, names the field, changes nothing, and the node keeps
//! serving.

use std::collections::BTreeMap;

use cairn_proto::v1 as pb;
use cairn_tests::{temp_dir, Node};
use tonic::Code;

type Raw = cairn_client::Raw;

async fn raw(node: &Node) -> Raw {
    node.raw().await.expect("connect")
}

fn item(text: &str) -> pb::MemoryInput {
    pb::MemoryInput {
        text: text.into(),
        metadata: BTreeMap::new(),
        created_at: None,
        key: String::new(),
        vector: None,
    }
}

async fn remember(
    c: &mut Raw,
    ns: &str,
    items: Vec<pb::MemoryInput>,
) -> Result<pb::RememberResponse, tonic::Status> {
    c.remember(pb::RememberRequest {
        namespace: ns.into(),
        items,
    })
    .await
    .map(|r| r.into_inner())
}

fn expect(r: Result<impl std::fmt::Debug, tonic::Status>, code: Code, field: &str) {
    match r {
        Ok(v) => panic!("expected {code:?} naming {field:?}, got Ok({v:?})"),
        Err(s) => {
            assert_eq!(s.code(), code, "{}", s.message());
            assert!(
                s.message().contains(field),
                "message {:?} should name {field:?}",
                s.message()
            );
        }
    }
}

#[tokio::test]
async fn every_rule_has_its_status_code() {
    let dir = temp_dir();
    let node = Node::start(dir.path()).expect("node");
    let mut c = raw(&node).await;
    remember(&mut c, "ok", vec![item("a valid memory")])
        .await
        .expect("valid remember");

    // Namespace rules.
    for bad in [
        "",
        "/a",
        "a/",
        "a//b",
        "a/../b",
        "a..b",
        "has space",
        "ünï",
        &"n".repeat(129),
    ] {
        expect(
            remember(&mut c, bad, vec![item("x")]).await,
            Code::InvalidArgument,
            "namespace",
        );
    }
    // Item count and text rules.
    expect(
        remember(&mut c, "ok", vec![]).await,
        Code::InvalidArgument,
        "items",
    );
    expect(
        remember(&mut c, "ok", vec![item("x"); 1001]).await,
        Code::ResourceExhausted,
        "items",
    );
    expect(
        remember(&mut c, "ok", vec![item("fine"), item("  \n\t ")]).await,
        Code::InvalidArgument,
        "items[1].text",
    );
    expect(
        remember(&mut c, "ok", vec![item("")]).await,
        Code::InvalidArgument,
        "items[0].text",
    );
    expect(
        remember(&mut c, "ok", vec![item(&"x".repeat(64 * 1024 + 1))]).await,
        Code::ResourceExhausted,
        "items[0].text",
    );
    // Metadata rules.
    let with_meta = |pairs: Vec<(String, String)>| pb::MemoryInput {
        text: "t".into(),
        metadata: pairs.into_iter().collect(),
        created_at: None,
        key: String::new(),
        vector: None,
    };
    expect(
        remember(
            &mut c,
            "ok",
            vec![with_meta(vec![(String::new(), "v".into())])],
        )
        .await,
        Code::InvalidArgument,
        "items[0].metadata",
    );
    expect(
        remember(
            &mut c,
            "ok",
            vec![with_meta(vec![("k".repeat(129), "v".into())])],
        )
        .await,
        Code::ResourceExhausted,
        "items[0].metadata",
    );
    expect(
        remember(
            &mut c,
            "ok",
            vec![with_meta(vec![("k".into(), "v".repeat(4097))])],
        )
        .await,
        Code::ResourceExhausted,
        "items[0].metadata",
    );
    expect(
        remember(
            &mut c,
            "ok",
            vec![with_meta(
                (0..65).map(|i| (format!("k{i}"), "v".into())).collect(),
            )],
        )
        .await,
        Code::ResourceExhausted,
        "items[0].metadata",
    );
    // More than 8 MiB of content in one call (each item within its own limit).
    let big: Vec<pb::MemoryInput> = (0..130)
        .map(|i| item(&format!("{i}{}", "y".repeat(65_000))))
        .collect();
    expect(
        remember(&mut c, "ok", big).await,
        Code::ResourceExhausted,
        "",
    );
    // A message far over the limit is refused by the decoder, not buffered.
    let huge: Vec<pb::MemoryInput> = (0..300)
        .map(|i| item(&format!("{i}{}", "z".repeat(60_000))))
        .collect();
    expect(
        remember(&mut c, "ok", huge).await,
        Code::ResourceExhausted,
        "",
    );

    // Recall rules.
    let recall = |ns: &str,
                  q: Option<pb::recall_request::Query>,
                  k: u32,
                  ef: u32,
                  filter: Option<pb::Filter>| pb::RecallRequest {
        namespace: ns.into(),
        query: q,
        k,
        filter,
        ef,
        exact: false,
        proof: false,
        prefix: false,
        mode: 0,
        depth: 0,
        text_vector: None,
    };
    let text = |t: &str| Some(pb::recall_request::Query::Text(t.into()));
    expect(
        c.recall(recall("nope", text("x"), 1, 0, None)).await,
        Code::NotFound,
        "nope",
    );
    expect(
        c.recall(recall("bad ns", text("x"), 1, 0, None)).await,
        Code::InvalidArgument,
        "namespace",
    );
    // Without a query Recall lists the newest memories; a proof of that is not offered.
    expect(
        c.recall(pb::RecallRequest {
            proof: true,
            ..recall("ok", None, 1, 0, None)
        })
        .await,
        Code::InvalidArgument,
        "query",
    );
    expect(
        c.recall(pb::RecallRequest {
            proof: true,
            prefix: true,
            ..recall("ok", text("x"), 1, 0, None)
        })
        .await,
        Code::InvalidArgument,
        "prefix",
    );
    expect(
        c.recall(recall("ok", text(" "), 1, 0, None)).await,
        Code::InvalidArgument,
        "query.text",
    );
    expect(
        c.recall(recall("ok", text("x"), 1001, 0, None)).await,
        Code::InvalidArgument,
        "k",
    );
    expect(
        c.recall(recall("ok", text("x"), 1, 10_001, None)).await,
        Code::InvalidArgument,
        "ef",
    );
    let vector = |v: Vec<f32>| Some(pb::recall_request::Query::Vector(pb::Vector { values: v }));
    expect(
        c.recall(recall("ok", vector(vec![0.1; 3]), 1, 0, None))
            .await,
        Code::InvalidArgument,
        "query.vector",
    );
    expect(
        c.recall(recall("ok", vector(vec![0.0; 384]), 1, 0, None))
            .await,
        Code::InvalidArgument,
        "query.vector",
    );
    expect(
        c.recall(recall("ok", vector(vec![f32::NAN; 384]), 1, 0, None))
            .await,
        Code::InvalidArgument,
        "query.vector",
    );
    let range = pb::Filter {
        metadata: BTreeMap::new(),
        since: Some(10),
        until: Some(5),
    };
    expect(
        c.recall(recall("ok", text("x"), 1, 0, Some(range))).await,
        Code::InvalidArgument,
        "filter",
    );
    // A valid vector query works.
    let ok = c
        .recall(recall("ok", vector(vec![0.05; 384]), 1, 0, None))
        .await
        .expect("vector recall");
    assert_eq!(ok.into_inner().hits.len(), 1);

    // Get / Forget / List / Embed / Stats rules.
    let get = |ns: &str, ids: Vec<String>| pb::GetRequest {
        namespace: ns.into(),
        ids,
        proof: false,
        keys: vec![],
    };
    expect(c.get(get("ok", vec![])).await, Code::InvalidArgument, "ids");
    expect(
        c.get(get("ok", vec!["xyz".into()])).await,
        Code::InvalidArgument,
        "ids[0]",
    );
    expect(
        c.get(get("ok", vec!["0".repeat(64); 1001])).await,
        Code::ResourceExhausted,
        "ids",
    );
    expect(
        c.get(get("nope", vec!["0".repeat(64)])).await,
        Code::NotFound,
        "nope",
    );
    expect(
        c.forget(pb::ForgetRequest {
            namespace: "ok".into(),
            ids: vec!["0".repeat(63)],
        })
        .await,
        Code::InvalidArgument,
        "ids[0]",
    );
    expect(
        c.forget(pb::ForgetRequest {
            namespace: "nope".into(),
            ids: vec!["0".repeat(64)],
        })
        .await,
        Code::NotFound,
        "nope",
    );
    let list = |limit: u32, token: &str, since: Option<u64>, until: Option<u64>| pb::ListRequest {
        namespace: "ok".into(),
        since,
        until,
        limit,
        page_token: token.into(),
        proof: false,
        metadata: Default::default(),
    };
    expect(
        c.list(list(10_001, "", None, None)).await,
        Code::InvalidArgument,
        "limit",
    );
    expect(
        c.list(list(10, "not-a-token", None, None)).await,
        Code::InvalidArgument,
        "page_token",
    );
    expect(
        c.list(list(10, "", Some(5), Some(5))).await,
        Code::InvalidArgument,
        "since",
    );
    expect(
        c.embed(pb::EmbedRequest { texts: vec![] }).await,
        Code::InvalidArgument,
        "texts",
    );
    expect(
        c.embed(pb::EmbedRequest {
            texts: vec!["a".into(), "".into()],
        })
        .await,
        Code::InvalidArgument,
        "texts[1]",
    );
    expect(
        c.stats(pb::StatsRequest {
            namespace: Some("nope".into()),
        })
        .await,
        Code::NotFound,
        "nope",
    );

    // Nothing above changed anything, and the node still serves.
    let stats = c
        .stats(pb::StatsRequest { namespace: None })
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(stats.namespaces.len(), 1);
    assert_eq!(stats.total_memories, 1);
    remember(&mut c, "ok", vec![item("still serving")])
        .await
        .expect("still serving");
}

#[tokio::test]
async fn invalid_utf8_text_is_invalid_argument() {
    use prost::Message;
    let dir = temp_dir();
    let node = Node::start(dir.path()).expect("node");
    // Hand-encode a RememberRequest whose item text is not UTF-8 (field 2 → MemoryInput, field 1 → bytes).
    let mut input = Vec::new();
    prost::encoding::bytes::encode(1, &vec![0xff, 0xfe, 0x41], &mut input);
    let mut req = Vec::new();
    prost::encoding::string::encode(1, &"ok".to_string(), &mut req);
    prost::encoding::bytes::encode(2, &input, &mut req);
    let decoded = pb::RememberRequest::decode(req.as_slice());
    assert!(decoded.is_err(), "prost must reject it locally too");
    let status = cairn_tests::raw_unary(&node, "/cairn.v1.Cairn/Remember", req).await;
    assert_eq!(status.0, Code::InvalidArgument as i32, "{}", status.1);
    let mut c = raw(&node).await;
    remember(&mut c, "ok", vec![item("still serving")])
        .await
        .expect("still serving");
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let dir = temp_dir();
    let node = Node::start(dir.path()).expect("node");
    let channel = tonic::transport::Endpoint::from_shared(node.url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "cairn.v1.Cairn".into(),
        })
        .await
        .expect("health check")
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(channel);
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("reflection")
        .into_inner();
    let resp = stream.message().await.expect("stream").expect("response");
    let listed = format!("{:?}", resp.message_response);
    assert!(listed.contains("cairn.v1.Cairn"), "{listed}");
    assert!(listed.contains("grpc.health.v1.Health"), "{listed}");
}

/// created_at is capped at 2^53 − 1: beyond it INVALID_ARGUMENT naming the field, and a memory at the cap is
/// still found by a List without bounds and by one whose `until` is just above it.
#[tokio::test]
async fn created_at_is_capped_and_the_latest_memory_is_listable() {
    let dir = temp_dir();
    let node = Node::start(dir.path()).expect("node");
    let mut c = raw(&node).await;
    let max = cairn_index::validate::MAX_CREATED_AT;
    let at = |t: u64| pb::MemoryInput {
        created_at: Some(t),
        ..item("a memory from the far future")
    };
    for bad in [max + 1, u64::MAX] {
        expect(
            remember(&mut c, "time", vec![at(bad)]).await,
            Code::InvalidArgument,
            "items[0].created_at",
        );
    }
    let r = remember(&mut c, "time", vec![at(max)])
        .await
        .expect("at the cap");
    assert_eq!(r.results[0].created_at, max);
    for until in [None, Some(max + 1)] {
        let page = c
            .list(pb::ListRequest {
                namespace: "time".into(),
                since: Some(max),
                until,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        assert_eq!(page.memories.len(), 1, "until {until:?}");
        assert_eq!(page.memories[0].id, r.results[0].id);
    }
}

/// Below the free-space floor writes are refused with RESOURCE_EXHAUSTED naming the disk, while reads go on.
/// (A floor larger than any disk stands in for a full one.)
#[tokio::test]
async fn below_the_free_space_floor_writes_are_refused_and_reads_go_on() {
    let dir = temp_dir();
    let mut node = Node::start(dir.path()).expect("node");
    let mut c = raw(&node).await;
    let id = remember(&mut c, "disk", vec![item("written while there was room")])
        .await
        .expect("remember")
        .results[0]
        .id
        .clone();
    node.stop();
    let node = Node::start_with(dir.path(), &["--min-free-mb", "1000000000"]).expect("node");
    let mut c = raw(&node).await;
    let err = remember(&mut c, "disk", vec![item("no room for this")])
        .await
        .expect_err("a write below the floor");
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    assert!(err.message().contains("--min-free-mb"), "{}", err.message());
    assert!(
        err.message().contains(&dir.path().display().to_string()),
        "{}",
        err.message()
    );
    let got = c
        .get(pb::GetRequest {
            namespace: "disk".into(),
            ids: vec![id],
            ..Default::default()
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.memories.len(), 1);
}
