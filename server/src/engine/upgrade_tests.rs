//! A data dir written before the lexical index existed (rows without index terms) is indexed at start-up from
//! its records, and the first root after the upgrade commits every memory's terms.

use std::sync::Arc;

use super::hostile_tests::config;
use super::{Engine, Query, RecallMode, RecallOpts};
use crate::embed::Embedder;
use crate::store::State;

async fn lexical_ids(e: &Engine, q: &str) -> Vec<String> {
    let (hits, _, mode) = e
        .recall(
            "team",
            Some(Query::Text(q.into())),
            RecallOpts {
                k: 5,
                mode: Some(RecallMode::Lexical),
                ..Default::default()
            },
        )
        .await
        .expect("recall");
    assert_eq!(mode, RecallMode::Lexical);
    hits.into_iter().map(|h| h.memory.id.to_string()).collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn rows_without_terms_are_indexed_from_their_records_at_start_up() {
    // Each engine runs in its own runtime, dropped after it, so that its background tasks let go of the files.
    let dir = tempfile::tempdir().expect("tmp");
    let before = runtime().block_on(first_run(dir.path()));
    // Strip the index terms, as a version before the lexical index wrote the rows.
    {
        let model = Embedder::deterministic(16).info().id.clone();
        let st = State::open(&dir.path().join("data/state.redb"), &model).expect("state");
        let rows = st.load_points("team").expect("rows");
        let old: Vec<(usize, crate::store::PointRow)> = rows
            .into_iter()
            .map(|mut r| {
                r.lex = None;
                r
            })
            .enumerate()
            .collect();
        st.fill_terms("team", &old).expect("rewrite");
        assert!(st
            .load_points("team")
            .expect("rows")
            .iter()
            .all(|r| r.lex.is_none()));
    }
    runtime().block_on(async {
        let e = Engine::open(config(dir.path()), Embedder::deterministic(16))
            .await
            .expect("reopen");
        assert_eq!(lexical_ids(&e, "bicycles").await, before);
        assert_eq!(lexical_ids(&e, "bees roof").await.len(), 1);
        e.shutdown().await;
    });
}

async fn first_run(dir: &std::path::Path) -> Vec<String> {
    let items = |texts: &[&str]| -> Vec<super::Item> {
        texts
            .iter()
            .map(|t| super::Item {
                text: (*t).to_owned(),
                metadata: Default::default(),
                created_at: None,
                vector: None,
            })
            .collect()
    };
    let e: Arc<Engine> = Engine::open(config(dir), Embedder::deterministic(16))
        .await
        .expect("open");
    e.remember(
        "team",
        items(&[
            "Alice keeps bees on the roof",
            "Bob repairs vintage bicycles",
            "Carol grows tomatoes",
        ]),
    )
    .await
    .expect("remember");
    let before = lexical_ids(&e, "bicycles").await;
    assert_eq!(before.len(), 1);
    e.shutdown().await;
    before
}

/// A data dir whose latest root is version 2 (whole-tree commitments, as nodes signed before paged trees) is
/// re-signed at start-up as a version-3 root that continues the same chain, and its proofs verify against it.
#[test]
fn a_version_2_root_is_followed_by_a_version_3_root_on_the_same_chain() {
    use cairn_index::proof::{verify_list, ListRange, Returned, VerifyLimits};
    use cairn_index::root::{verify_link, SignedRoot, ROOT_VERSION};

    let dir = tempfile::tempdir().expect("tmp");
    runtime().block_on(first_run(dir.path()));
    let key = crate::identity::load_or_create(&dir.path().join("data"), false).expect("key");
    let owner = key.verifying_key().to_bytes();
    let old = {
        let model = Embedder::deterministic(16).info().id.clone();
        let st = State::open(&dir.path().join("data/state.redb"), &model).expect("state");
        let latest = st.latest_root("team").expect("root").expect("a root");
        assert_eq!(latest.record.version, ROOT_VERSION);
        // What a version-2 node would have signed next (its trees' roots differ; the upgrade must not trust them).
        let mut rec = latest.record.clone();
        rec.version = 2;
        rec.seq += 1;
        rec.prev = latest.record.hash();
        rec.time_root = [7; 32];
        let old = SignedRoot::sign(rec, &key);
        st.put_root("team", &old).expect("put");
        old
    };
    runtime().block_on(async {
        let e = Engine::open(config(dir.path()), Embedder::deterministic(16))
            .await
            .expect("reopen");
        let now = e.root("team", None).await.expect("root");
        assert_eq!(now.record.version, ROOT_VERSION);
        verify_link(
            Some((old.record.seq, &old.record.hash())),
            &now,
            &owner,
            "team",
        )
        .expect("the version-3 root continues the chain");
        let page = e
            .list("team", None, None, 10, None, true, &Default::default())
            .await
            .expect("list");
        assert_eq!(page.memories.len(), 3);
        let returned: Vec<Returned<'_>> = page
            .memories
            .iter()
            .map(|m| Returned {
                id: &m.id,
                record: &m.bytes,
            })
            .collect();
        let range = ListRange {
            since: 0,
            until: u64::MAX,
            after: None,
            limit: 10,
        };
        let proof = page.proof.expect("proof");
        assert_eq!(&proof[..4], b"CPT2");
        let v = verify_list(
            &proof,
            "team",
            &owner,
            &range,
            &returned,
            &VerifyLimits::default(),
        )
        .expect("the list proof verifies");
        assert_eq!(v.root.record.seq, old.record.seq + 1);
        e.shutdown().await;
    });
}
