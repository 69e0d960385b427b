//! In-process tests of namespaces whose vectors the caller brings (an external model): creation commits the
//! model in the first root, Remember takes exactly one vector per text of the model's dimension, semantic Recall
//! takes a query vector and proves its answer, text queries rank lexically, mixing is refused, and all of it
//! survives a restart. Real redb files and blob stores, the deterministic test embedder for the node's model.

use std::sync::Arc;

use cairn_index::id::MemoryId;
use cairn_index::model::ExternalModel;
use cairn_index::proof::{verify_recall, RecallAsked, Returned, VerifyLimits};
use cairn_index::validate::Violation;

use super::hostile_tests::config;
use super::{Engine, Item, Query, RecallMode, RecallOpts};
use crate::embed::Embedder;
use crate::error::NodeError;

async fn engine(dir: &std::path::Path) -> Arc<Engine> {
    Engine::open(config(dir), Embedder::deterministic(16))
        .await
        .expect("open engine")
}

/// Point `i`'s vector: 8 pseudo-random components in [-0.5, 0.5).
fn vec_of(i: usize) -> Vec<f32> {
    (0..8u64)
        .map(|j| {
            // splitmix64's finaliser: neighbouring inputs give unrelated outputs.
            let mut x = (i as u64 * 8 + j + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^= x >> 31;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn item(i: usize, vector: Option<Vec<f32>>) -> Item {
    Item {
        text: format!(
            "memory {i} about the {} harbour",
            ["north", "south", "east"][i % 3]
        ),
        metadata: Default::default(),
        created_at: Some(1_000 + i as u64),
        vector,
    }
}

fn invalid(r: Result<impl std::fmt::Debug, NodeError>, what: &str) {
    match r {
        Err(NodeError::Validation(v)) if v.violation == Violation::Invalid => {}
        other => panic!("{what}: expected INVALID_ARGUMENT, got {other:?}"),
    }
}

/// A fresh runtime per engine life: dropping it ends the engine's background tasks, so the redb file is free to
/// reopen (as after a process restart).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn an_external_model_namespace_takes_commits_and_proves_its_vectors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = ExternalModel::new("acme-embed-v2", 8).expect("model");
    let (stored, seq) = runtime().block_on(first_life(dir.path(), &model));
    runtime().block_on(second_life(dir.path(), &model, &stored, seq));
}

/// Creation, validation, remember, proven recall, lexical text queries, prefix recall; returns the stored ids and
/// the last seq.
async fn first_life(dir: &std::path::Path, model: &ExternalModel) -> (Vec<MemoryId>, u64) {
    let e = engine(dir).await;
    let node_id = e.node_key();

    let (root, created) = e
        .create_namespace("ext", Some(model.clone()))
        .await
        .expect("create");
    assert!(created);
    let root = root.expect("the first root is signed at creation");
    assert_eq!(
        root.record.model,
        model.hash(),
        "the root commits the model"
    );
    assert_eq!(root.record.dim, 8);
    let (_, again) = e
        .create_namespace("ext", Some(model.clone()))
        .await
        .expect("same model again");
    assert!(!again, "creating again with the same model is idempotent");
    for other in [
        Some(ExternalModel::new("acme-embed-v2", 16).expect("m")),
        None,
    ] {
        assert!(
            matches!(
                e.create_namespace("ext", other).await,
                Err(NodeError::FailedPrecondition(_))
            ),
            "another model for an existing namespace is refused"
        );
    }

    // Mixing is refused: no vector, a wrong dimension, a non-finite component, a vector in a node-model namespace.
    invalid(
        e.remember("ext", vec![item(0, None)]).await,
        "missing vector",
    );
    invalid(
        e.remember("ext", vec![item(0, Some(vec![1.0; 7]))]).await,
        "wrong dimension",
    );
    invalid(
        e.remember("ext", vec![item(0, Some(vec![f32::NAN; 8]))])
            .await,
        "NaN",
    );
    invalid(
        e.remember("plain", vec![item(0, Some(vec_of(0)))]).await,
        "vector for the node's model",
    );

    let items: Vec<Item> = (0..40).map(|i| item(i, Some(vec_of(i)))).collect();
    let stored = e.remember("ext", items).await.expect("remember");
    assert_eq!(stored.len(), 40);

    // Semantic recall by the model's vector, with a proof a client verifies.
    let asked = RecallAsked { k: 5, min_ef: 0 };
    let opts = RecallOpts {
        k: 5,
        proof: true,
        ..Default::default()
    };
    let (hits, proof, mode) = e
        .recall("ext", Some(Query::Vector(vec_of(17))), opts.clone())
        .await
        .expect("recall by vector");
    assert_eq!(mode, RecallMode::Semantic);
    assert_eq!(
        hits[0].memory.id, stored[17].id,
        "the nearest is the point itself"
    );
    let proof = proof.expect("proof");
    let returned: Vec<Returned<'_>> = hits
        .iter()
        .map(|h| Returned {
            id: &h.memory.id,
            record: &h.memory.bytes,
        })
        .collect();
    let scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
    let v = verify_recall(
        &proof,
        "ext",
        &node_id,
        &asked,
        &returned,
        &scores,
        &VerifyLimits::default(),
    )
    .expect("the proof verifies");
    assert_eq!(v.root.record.model, model.hash());
    invalid(
        e.recall("ext", Some(Query::Vector(vec![1.0; 16])), opts.clone())
            .await,
        "query of another dimension",
    );

    // A text query cannot be embedded: semantic and hybrid are refused, the default ranks lexically.
    for m in [RecallMode::Semantic, RecallMode::Hybrid] {
        invalid(
            e.recall(
                "ext",
                Some(Query::Text("south harbour".into())),
                RecallOpts {
                    mode: Some(m),
                    ..opts.clone()
                },
            )
            .await,
            "text query, semantic or hybrid",
        );
    }
    let (hits, _, mode) = e
        .recall("ext", Some(Query::Text("memory 22".into())), opts.clone())
        .await
        .expect("text query");
    assert_eq!(mode, RecallMode::Lexical);
    assert_eq!(hits[0].memory.id, stored[22].id);

    // Recall across namespaces skips the external one (its vectors are in another space).
    e.remember("plain", vec![item(1, None)])
        .await
        .expect("plain remember");
    let (hits, _, _) = e
        .recall(
            "",
            Some(Query::Text("harbour".into())),
            RecallOpts {
                k: 50,
                prefix: true,
                ..Default::default()
            },
        )
        .await
        .expect("prefix recall");
    assert!(hits.iter().all(|h| h.memory.record.namespace == "plain"));

    let seq = e.root("ext", None).await.expect("root").record.seq;
    e.shutdown().await;
    (stored.into_iter().map(|s| s.id).collect(), seq)
}

/// After a restart: the model, its vectors and the chain are all still there.
async fn second_life(dir: &std::path::Path, model: &ExternalModel, stored: &[MemoryId], seq: u64) {
    let opts = RecallOpts {
        k: 5,
        proof: true,
        ..Default::default()
    };
    let e = engine(dir).await;
    let st = e.stats(Some("ext")).expect("stats");
    assert_eq!(st[0].external.as_ref(), Some(model));
    assert_eq!(st[0].memories, 40);
    let root = e.root("ext", None).await.expect("root");
    assert_eq!(root.record.seq, seq, "no new root at start-up");
    assert_eq!(root.record.model, model.hash());
    let (hits, _, _) = e
        .recall("ext", Some(Query::Vector(vec_of(3))), opts.clone())
        .await
        .expect("recall after restart");
    let pos: Vec<(Option<usize>, f32)> = hits
        .iter()
        .map(|h| (stored.iter().position(|s| *s == h.memory.id), h.score))
        .collect();
    assert_eq!(hits[0].memory.id, stored[3], "{pos:?}");
    assert!(hits[0].score > 0.99, "{pos:?}");
    invalid(
        e.remember("ext", vec![item(99, None)]).await,
        "missing vector after restart",
    );
    let more = e
        .remember("ext", vec![item(99, Some(vec_of(99)))])
        .await
        .expect("remember after restart");
    assert!(!more[0].deduplicated);
    assert_eq!(
        e.root("ext", None).await.expect("root").record.model,
        model.hash()
    );
    e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_model_descriptions_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = engine(dir.path()).await;
    // A namespace the node's model created is not turned into an external one.
    e.remember("plain", vec![item(0, None)])
        .await
        .expect("remember");
    assert!(matches!(
        e.create_namespace("plain", Some(ExternalModel::new("m", 8).expect("m")))
            .await,
        Err(NodeError::FailedPrecondition(_))
    ));
    let (_, created) = e.create_namespace("plain", None).await.expect("same model");
    assert!(!created);
    e.shutdown().await;
}
