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
