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
    let id = node
        .client()
        .await
        .expect("client")
        .node_info()
        .await
        .expect("info")
        .node_id;
    nearest_by(node, &id, i).await
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
    // The text with its vector ranks in the node's default mode (hybrid): BM25 over the text fused with the
    // vector's semantic ranking, proven, and the client's check binds the proof's terms to the text.
    let trusted = v::parse_node_id(&c.node_info().await.expect("info").node_id).expect("id");
    let resp = c
        .recall("ext", text_of(7))
        .text_vector(vec_of(7))
        .k(3)
        .proof(true)
        .send_full()
        .await
        .expect("text with its vector");
    assert_eq!(resp.mode, pb::RecallMode::Hybrid as i32);
    assert_eq!(resp.hits[0].id, ids[7]);
    v::recall_query(
        "ext",
        &RecallAsked { k: 3, min_ef: 0 },
        Some(&text_of(7)),
        0,
        &resp,
        &trusted,
        None,
    )
    .expect("the hybrid answer verifies");
    // Semantic mode with the text's vector: the vector's nearest, as a vector query.
    let resp = c
        .recall("ext", "words that match nothing")
        .text_vector(vec_of(19))
        .mode(pb::RecallMode::Semantic)
        .send_full()
        .await
        .expect("semantic with the text's vector");
    assert_eq!(resp.hits[0].id, ids[19]);
    // A text vector of another dimension, or beside a vector query, is refused.
    invalid(
        c.recall("ext", "note 7")
            .text_vector(vec![0.1; DIM + 1])
            .send()
            .await,
        "text vector of another dimension",
    );
    invalid(
        c.recall_vector("ext", vec_of(7))
            .text_vector(vec_of(7))
            .send()
            .await,
        "text vector beside a vector query",
    );

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
    // --check-query cannot re-embed with a model only the caller has, and says so.
    let o = node.cli(&["recall", "--ns", "ext", "--check-query", "note 7"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot re-embed") && err.contains("external:acme-embed-v2"),
        "{err}"
    );

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

/// A replica follows an external-model namespace only when told the model: it then serves vector recalls whose
/// proofs verify against the owner's key, and keeps the model across its own restart.
#[tokio::test]
async fn a_replica_named_the_model_serves_proven_vector_recalls() {
    use cairn_tests::{introduce, node_id, wait_seq};
    use std::time::Duration;
    let (da, db) = (temp_dir(), temp_dir());
    let a = Node::start(da.path()).expect("owner");
    let mut b = Node::start(db.path()).expect("replica");
    introduce(&a, &b);
    let a_id = node_id(&a);
    let ca = a.client().await.expect("client");
    ca.create_namespace("ext", Some(("acme-embed-v2", DIM as u32)))
        .await
        .expect("create");
    let items: Vec<NewMemory> = (0..20)
        .map(|i| NewMemory::new(text_of(i)).vector(vec_of(i)))
        .collect();
    let ids: Vec<String> = ca
        .remember("ext", items)
        .await
        .expect("remember")
        .into_iter()
        .map(|r| r.id)
        .collect();
    let a_seq = cairn_tests::seq_of(&a, "ext").await;
    assert!(a_seq >= 2);

    // Followed as a namespace of the replica's own model, the owner's roots are refused.
    let cb = b.client().await.expect("client");
    cb.follow("ext", &a_id).await.expect("follow");
    assert_eq!(
        wait_seq(&b, "ext", 1, Duration::from_secs(4)).await,
        0,
        "roots committing another model must not be installed"
    );
    // Following it again with another model is refused until it is unfollowed.
    match cb
        .follow_with("ext", &a_id, Some(("acme-embed-v2", DIM as u32)))
        .await
    {
        Err(cairn_client::Error::Status(s)) if s.code() == Code::FailedPrecondition => {
            assert!(s.message().contains("unfollow"), "{}", s.message());
        }
        other => panic!("follow with another model: expected FAILED_PRECONDITION, got {other:?}"),
    }
    cb.unfollow("ext").await.expect("unfollow");

    cb.follow_with("ext", &a_id, Some(("acme-embed-v2", DIM as u32)))
        .await
        .expect("follow with the model");
    assert_eq!(
        wait_seq(&b, "ext", a_seq, Duration::from_secs(30)).await,
        a_seq
    );
    assert_eq!(nearest_by(&b, &a_id, 5).await, ids[5]);

    // The replica keeps the model across a restart and takes the owner's next commit.
    b.stop();
    let b = Node::start(db.path()).expect("replica restart");
    let cb = b.client().await.expect("client");
    let ns = cb.list_namespaces().await.expect("namespaces");
    let ext = ns
        .iter()
        .find(|n| n.namespace == "ext")
        .expect("ext listed");
    assert_eq!(ext.model, format!("external:acme-embed-v2/{DIM}"));
    let more = ca
        .remember("ext", vec![NewMemory::new(text_of(50)).vector(vec_of(50))])
        .await
        .expect("remember more");
    let a_seq = cairn_tests::seq_of(&a, "ext").await;
    assert_eq!(
        wait_seq(&b, "ext", a_seq, Duration::from_secs(30)).await,
        a_seq
    );
    assert_eq!(nearest_by(&b, &a_id, 50).await, more[0].id);
}

/// The top hit of a proven vector recall on `node`, verified against `owner`'s key (hex).
async fn nearest_by(node: &Node, owner: &str, i: usize) -> String {
    let c = node.client().await.expect("client");
    let trusted = v::parse_node_id(owner).expect("id");
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
    .expect("the answer verifies against the owner's key");
    let model = ExternalModel::new("acme-embed-v2", DIM as u16).expect("model");
    assert_eq!(
        vd.root.record.model,
        model.hash(),
        "the root commits the external model"
    );
    assert_eq!(vd.root.record.dim as usize, DIM);
    resp.hits[0].id.clone()
}
