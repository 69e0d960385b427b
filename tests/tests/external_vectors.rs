//! Bring-your-own vectors against a real node: a namespace created for an external model takes the caller's
//! vectors, proves recalls by query vector (verified on the client, the root committing the model), refuses
//! mixing with INVALID_ARGUMENT, and keeps all of it across a restart. The CLI does the same.

use cairn_client::verify::{self as v, RecallAsked};
use cairn_client::NewMemory;
use cairn_index::model::ExternalModel;
use cairn_proto::v1 as pb;
use cairn_tests::{temp_dir, Node};
use tonic::Code;

const DIM: usize = 12;

/// Point `i`'s vector: DIM well-spread components (splitmix64), as an external model might give.
fn vec_of(i: usize) -> Vec<f32> {
    (0..DIM as u64)
        .map(|j| {
            let mut x = (i as u64 * DIM as u64 + j + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^= x >> 31;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn text_of(i: usize) -> String {
    format!(
        "note {i}: the {} warehouse inventory",
        ["blue", "red", "green"][i % 3]
    )
}

fn invalid<T: std::fmt::Debug>(r: Result<T, cairn_client::Error>, what: &str) {
    match r {
        Err(cairn_client::Error::Status(s)) if s.code() == Code::InvalidArgument => {}
        other => panic!("{what}: expected INVALID_ARGUMENT, got {other:?}"),
    }
}

async fn proven_nearest(node: &Node, i: usize) -> String {
    let c = node.client().await.expect("client");
    let trusted = v::parse_node_id(&c.node_info().await.expect("info").node_id).expect("id");
    let resp = c
        .recall_vector("ext", vec_of(i))
        .k(3)
        .proof(true)
        .send_full()
        .await
        .expect("recall by vector");
    let vd = v::recall(
        "ext",
        &RecallAsked { k: 3, min_ef: 0 },
        &resp,
        &trusted,
        None,
    )
    .expect("the proof verifies");
    let model = ExternalModel::new("acme-embed-v2", DIM as u16).expect("model");
    assert_eq!(
        vd.root.record.model,
        model.hash(),
        "the root commits the external model"
    );
    assert_eq!(vd.root.record.dim as usize, DIM);
    resp.hits[0].id.clone()
}

#[tokio::test]
async fn external_vectors_are_stored_proven_and_kept() {
    let dir = temp_dir();
    let mut node = Node::start(dir.path()).expect("node");
    let c = node.client().await.expect("client");

    let r = c
        .create_namespace("ext", Some(("acme-embed-v2", DIM as u32)))
        .await
        .expect("create");
    assert!(r.created);
    assert_eq!(r.model, format!("external:acme-embed-v2/{DIM}"));
    assert_eq!(
        r.root.as_ref().map(|r| r.seq),
        Some(1),
        "the first root is signed at creation"
    );
    let again = c
        .create_namespace("ext", Some(("acme-embed-v2", DIM as u32)))
        .await
        .expect("again");
    assert!(!again.created);
    match c.create_namespace("ext", Some(("acme-embed-v2", 16))).await {
        Err(cairn_client::Error::Status(s)) => {
            assert_eq!(s.code(), Code::FailedPrecondition, "{}", s.message())
        }
        other => panic!("another model for ext: {other:?}"),
    }
    invalid(
        c.create_namespace("bad", Some(("", 8))).await,
        "empty model name",
    );
    invalid(
        c.create_namespace("bad", Some(("m", 0))).await,
        "zero dimension",
    );

    // Mixing is refused and stores nothing.
    invalid(
        c.remember("ext", vec![NewMemory::new(text_of(0))]).await,
        "no vector",
    );
    invalid(
        c.remember(
            "ext",
            vec![NewMemory::new(text_of(0)).vector(vec![0.5; DIM - 1])],
        )
        .await,
        "wrong dimension",
    );
    invalid(
        c.remember(
            "plain",
            vec![NewMemory::new("a plain memory").vector(vec_of(0))],
        )
        .await,
        "vector in a namespace of the node's model",
    );

    let items: Vec<NewMemory> = (0..30)
        .map(|i| NewMemory::new(text_of(i)).vector(vec_of(i)))
        .collect();
    let stored = c.remember("ext", items).await.expect("remember");
    assert_eq!(stored.len(), 30);
    let ids: Vec<String> = stored.iter().map(|r| r.id.clone()).collect();
    assert_eq!(proven_nearest(&node, 11).await, ids[11]);

    // A query vector of another dimension, and a semantic text query, are refused.
    invalid(
        c.recall_vector("ext", vec![0.1; DIM + 1]).send().await,
        "query of another dimension",
    );
    invalid(
        c.recall("ext", "red warehouse")
            .mode(pb::RecallMode::Semantic)
            .send()
            .await,
        "semantic text query",
    );
    // A text query ranks lexically.
    let resp = c
        .recall("ext", "note 7")
        .send_full()
        .await
        .expect("text query");
    assert_eq!(resp.mode, pb::RecallMode::Lexical as i32);
    assert_eq!(resp.hits[0].id, ids[7]);

    // The CLI: remember with --vector, recall with --vector --verify.
    let csv = |v: Vec<f32>| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let o = node.cli(&[
        "remember",
        "--ns",
        "ext",
        "--vector",
        &csv(vec_of(40)),
        &text_of(40),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = node.cli_json(&[
        "recall",
        "--ns",
        "ext",
        "--vector",
        &csv(vec_of(40)),
        "--verify",
        "-k",
        "2",
    ]);
    assert_eq!(out["hits"][0]["text"], text_of(40), "{out}");
    assert!(out["verified"].is_object(), "{out}");

    // After a restart: the model, the vectors and the proofs are all still there.
    node.stop();
    let node = Node::start(dir.path()).expect("restart");
    let c = node.client().await.expect("client");
    let ns = c.list_namespaces().await.expect("namespaces");
    let ext = ns
        .iter()
        .find(|n| n.namespace == "ext")
        .expect("ext listed");
    assert_eq!(ext.model, format!("external:acme-embed-v2/{DIM}"));
    assert_eq!(proven_nearest(&node, 23).await, ids[23]);
    invalid(
        c.remember("ext", vec![NewMemory::new(text_of(99))]).await,
        "no vector after restart",
    );
}
