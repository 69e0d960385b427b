//! In-process tests of `cairn migrate`: a namespace moves to a second installed model, the same chain goes on
//! with a root naming it, proofs before and after verify against their own roots, an interrupted migration
//! resumes from what it staged, writes and forgets made meanwhile are taken into account, and the namespace's
//! model survives a restart. Real redb files and blob stores, two deterministic test embedders as the models.

use std::sync::Arc;

use cairn_index::proof::{verify_recall, RecallAsked, Returned, VerifyLimits};
use cairn_index::root::verify_chain;

use super::hostile_tests::config;
use super::migrate::{MigrateProgress, ModelLoader};
use super::{Engine, Item, Query, RecallOpts};
use crate::embed::Embedder;
use crate::error::NodeError;

/// The node's model has 16 dimensions, the installed second model 24 (so a vector of the wrong one cannot pass).
const NODE_DIM: usize = 16;
const NEW_DIM: usize = 24;

fn new_model() -> Embedder {
    Embedder::deterministic(NEW_DIM)
}

async fn engine(dir: &std::path::Path) -> Arc<Engine> {
    let second = new_model();
    let mut cfg = config(dir);
    cfg.models = Some(ModelLoader(Arc::new(move |h: &[u8; 32]| {
        if *h == second.info().hash {
            Ok(second.clone())
        } else {
            Err("not installed".into())
        }
    })));
    Engine::open(cfg, Embedder::deterministic(NODE_DIM))
        .await
        .expect("open engine")
}

fn text(i: usize) -> String {
    format!(
        "note {i} about the {} harbour",
        ["north", "south", "east"][i % 3]
    )
}

fn items(from: usize, n: usize) -> Vec<Item> {
    (from..from + n)
        .map(|i| Item {
            text: text(i),
            metadata: Default::default(),
            created_at: Some(1_000 + i as u64),
            vector: None,
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A proven recall of `text` in `ns`, verified; returns the root's model hash and dimension.
async fn proven(e: &Arc<Engine>, ns: &str, text: &str) -> ([u8; 32], u16) {
    let opts = RecallOpts {
        k: 5,
        proof: true,
        mode: Some(super::RecallMode::Semantic),
        ..Default::default()
    };
    let (hits, proof, _) = e
        .recall(ns, Some(Query::Text(text.into())), opts)
        .await
        .expect("recall");
    let returned: Vec<Returned<'_>> = hits
        .iter()
        .map(|h| Returned {
            id: &h.memory.id,
            record: &h.memory.bytes,
        })
        .collect();
    let scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
    let v = verify_recall(
        &proof.expect("proof"),
        ns,
        &e.node_key(),
        &RecallAsked { k: 5, min_ef: 0 },
        &returned,
        &scores,
        &VerifyLimits::default(),
    )
    .expect("the proof verifies");
    assert_eq!(
        hits[0].memory.record.text, text,
        "the exact text is the nearest"
    );
    (v.root.record.model, v.root.record.dim)
}

#[test]
fn a_namespace_moves_to_another_model_on_the_same_chain_and_resumes_when_interrupted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let new_hash = new_model().info().hash;
    let seq = runtime().block_on(async {
        let e = engine(dir.path()).await;
        let node_hash = e.embedder().info().hash;
        let stored = e.remember("notes", items(0, 300)).await.expect("remember");
        assert_eq!(
            proven(&e, "notes", &text(7)).await,
            (node_hash, NODE_DIM as u16)
        );
        let before = e.root("notes", None).await.expect("root");

        // Refused: an unknown model, a namespace that does not exist.
        let (tx, _rx) = tokio::sync::mpsc::channel(64);
        assert!(matches!(
            e.migrate("notes", [7; 32], tx.clone()).await,
            Err(NodeError::FailedPrecondition(_))
        ));
        assert!(matches!(
            e.migrate("nowhere", new_hash, tx).await,
            Err(NodeError::NotFound(_))
        ));

        // Interrupted: the caller goes away after the first batch.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<MigrateProgress>(1);
        let job = {
            let e = e.clone();
            tokio::spawn(async move { e.migrate("notes", new_hash, tx).await })
        };
        let first = rx.recv().await.expect("first report");
        assert_eq!((first.done, first.total, first.resumed), (0, 300, 0));
        let second = rx.recv().await.expect("second report");
        assert!(second.done > 0 && second.done < 300, "{second:?}");
        drop(rx);
        assert!(matches!(
            job.await.expect("join"),
            Err(NodeError::Unavailable(_))
        ));
        // Still served with the old model meanwhile; a write and a forget happen before the migration resumes.
        assert_eq!(
            e.root("notes", None).await.expect("root").record.model,
            node_hash
        );
        let added = e
            .remember("notes", items(300, 5))
            .await
            .expect("write meanwhile");
        let gone = stored[0].id;
        e.forget("notes", &[gone]).await.expect("forget meanwhile");
        assert!(
            !e.state
                .staged_ids("notes")
                .expect("staged")
                .contains(&gone.0),
            "a forgotten memory's new vector is not kept"
        );

        // Resumed: the staged batches are not embedded again. A write lands while it runs (after it listed what
        // to embed, before its next report can go out: the one-slot channel holds the first): it is embedded at
        // the end, under the write lock.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<MigrateProgress>(1);
        let job = {
            let e = e.clone();
            tokio::spawn(async move { e.migrate("notes", new_hash, tx).await })
        };
        for _ in 0..500 {
            if !rx.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!rx.is_empty(), "no first report");
        e.remember("notes", items(310, 1))
            .await
            .expect("write during the migration");
        let mut reports = Vec::new();
        while let Some(p) = rx.recv().await {
            reports.push(p);
        }
        let done = job.await.expect("join").expect("migration");
        assert!(reports[0].resumed > 0, "{reports:?}");
        assert_eq!(done.resumed, reports[0].resumed);
        assert!(done.changed);
        assert_eq!(done.memories, 305);
        assert_eq!(
            done.caught_up, 1,
            "the write made meanwhile is embedded at the end"
        );
        let after = done.root.expect("root");
        assert_eq!(after.record.model, new_hash);
        assert_eq!(after.record.dim, NEW_DIM as u16);
        assert_eq!(after.record.time_leaves, 305);
        assert_eq!(
            proven(&e, "notes", &text(310)).await,
            (new_hash, NEW_DIM as u16),
            "the memory written meanwhile is found by the new model's vector"
        );

        // One chain: every root from the first to the new one links, signed by the node.
        let chain = e.roots_from("notes", e.node_key(), 1).await.expect("roots");
        verify_chain(&chain, &e.node_key(), "notes", None).expect("the chain verifies");
        assert_eq!(
            chain.last().expect("last").record.hash(),
            after.record.hash()
        );
        assert!(chain
            .iter()
            .any(|r| r.record.hash() == before.record.hash()));

        // A write whose vectors were made with the old model before the swap is refused when it reaches the
        // commit (the caller retries), and nothing of it is stored.
        let late = items(700, 1);
        let key = cairn_index::record::dedup_key(&late[0].text, &late[0].metadata);
        let old_vector = Embedder::deterministic(NODE_DIM)
            .embed(vec![late[0].text.clone()])
            .await
            .expect("embed");
        let vectors = old_vector.into_iter().enumerate().collect();
        assert!(matches!(
            e.group_commit("notes", None, node_hash, late, vec![key], vectors)
                .await,
            Err(NodeError::FailedPrecondition(_))
        ));
        assert_eq!(e.stats(Some("notes")).expect("stats")[0].memories, 305);

        // Recall embeds with the new model and proves against the new root; writes take it too.
        assert_eq!(
            proven(&e, "notes", &text(302)).await,
            (new_hash, NEW_DIM as u16)
        );
        e.remember("notes", items(400, 2))
            .await
            .expect("write after");
        assert_eq!(
            e.root("notes", None).await.expect("root").record.model,
            new_hash
        );
        assert!(added.iter().all(|a| !a.deduplicated));
        assert_eq!(
            e.stats(Some("notes")).expect("stats")[0].local_model,
            Some(new_model().info().id.clone())
        );

        // A namespace created for the second model from the start: its first root commits it, writes and queries
        // embed with it; creating it again is idempotent, for another model refused.
        let (first, created, id) = e.create_local("fresh", new_hash).await.expect("create");
        assert!(created);
        assert_eq!(id, new_model().info().id);
        let first = first.expect("the first root is signed at creation");
        assert_eq!(
            (first.record.model, first.record.dim),
            (new_hash, NEW_DIM as u16)
        );
        e.remember("fresh", items(500, 20)).await.expect("remember");
        assert_eq!(
            proven(&e, "fresh", &text(507)).await,
            (new_hash, NEW_DIM as u16)
        );
        // Compaction rebuilds the graph at the namespace's own dimension, not the node's.
        let gone: Vec<_> = e
            .remember("fresh", items(540, 4))
            .await
            .expect("remember")
            .iter()
            .map(|r| r.id)
            .collect();
        e.forget("fresh", &gone).await.expect("forget");
        let space = e.space("fresh").expect("space");
        e.compact(&space).await.expect("compaction");
        assert_eq!(space.stats().tombstones, 0);
        assert_eq!(
            proven(&e, "fresh", &text(508)).await,
            (new_hash, NEW_DIM as u16)
        );
        let (_, again, _) = e.create_local("fresh", new_hash).await.expect("again");
        assert!(!again);
        assert!(matches!(
            e.create_namespace("fresh", None).await,
            Err(NodeError::FailedPrecondition(_))
        ));
        assert!(matches!(
            e.create_local("plain", [9; 32]).await,
            Err(NodeError::FailedPrecondition(_))
        ));
        e.remember("plain", items(600, 1)).await.expect("plain");
        assert!(matches!(
            e.create_local("plain", new_hash).await,
            Err(NodeError::FailedPrecondition(_))
        ));

        // Recall across namespaces searches only those of the node's model (the others' vectors are not
        // comparable with the query's).
        let (hits, _, _) = e
            .recall(
                "",
                Some(Query::Text(text(600))),
                RecallOpts {
                    k: 50,
                    prefix: true,
                    mode: Some(super::RecallMode::Semantic),
                    ..Default::default()
                },
            )
            .await
            .expect("prefix recall");
        assert!(!hits.is_empty());
        assert!(hits.iter().all(|h| h.memory.record.namespace == "plain"));

        // Migrating again to the same model changes nothing.
        let (tx, _rx) = tokio::sync::mpsc::channel(64);
        let again = e.migrate("notes", new_hash, tx).await.expect("again");
        assert!(!again.changed);
        let seq = e.root("notes", None).await.expect("root").record.seq;
        e.shutdown().await;
        seq
    });

    // After a restart: the namespace is still on the new model, with no new root.
    runtime().block_on(async {
        let e = engine(dir.path()).await;
        let root = e.root("notes", None).await.expect("root");
        assert_eq!(root.record.seq, seq, "no new root at start-up");
        assert_eq!(root.record.model, new_hash);
        assert_eq!(
            proven(&e, "notes", &text(401)).await,
            (new_hash, NEW_DIM as u16)
        );
        assert_eq!(
            proven(&e, "fresh", &text(511)).await,
            (new_hash, NEW_DIM as u16),
            "a namespace created for the second model keeps it after a restart"
        );
        // And back to the node's own model.
        let node_hash = e.embedder().info().hash;
        let (tx, _rx) = tokio::sync::mpsc::channel(64);
        let back = e.migrate("notes", node_hash, tx).await.expect("back");
        assert!(back.changed);
        assert_eq!(
            proven(&e, "notes", &text(9)).await,
            (node_hash, NODE_DIM as u16)
        );
        e.shutdown().await;
    });

    // A node that can no longer run the second model (removed from its cache) sets its namespace aside, saying
    // which model to install, and serves the others.
    runtime().block_on(async {
        let e = Engine::open(config(dir.path()), Embedder::deterministic(NODE_DIM))
            .await
            .expect("open without the second model");
        match e
            .recall("fresh", Some(Query::Text(text(507))), RecallOpts::default())
            .await
        {
            Err(NodeError::FailedPrecondition(why)) => {
                assert!(why.contains(&hex::encode(new_hash)), "{why}")
            }
            other => panic!("expected the namespace quarantined, got {other:?}"),
        }
        assert_eq!(
            proven(&e, "notes", &text(9)).await.0,
            e.embedder().info().hash,
            "the namespace back on the node's model is served"
        );
        e.shutdown().await;
    });
}
