//! In-process tests of a replica against hostile catch-up answers: an owner engine and a replica engine (real redb
//! files and blob stores, the deterministic test embedder, no network). Each structured mutation of an honest
//! answer (reorder, drop, duplicate, splice from another namespace, altered vector or lists, a tombstone that
//! keeps its vector, a count the owner inflated, a chain from elsewhere) and every truncation of its bytes is
//! refused, never panics, and leaves the replica serving the state it verified before.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn_index::proof::NodeLists;
use cairn_index::root::SignedRoot;
use cairn_index::validate::Limits;

use super::replica::CatchUp;
use super::{Engine, EngineConfig, Item};
use crate::embed::Embedder;
use cairn_index::sync::{decode_reply, encode_reply, Reply};

pub(super) fn config(dir: &Path) -> EngineConfig {
    EngineConfig {
        data_dir: dir.join("data"),
        limits: Limits::default(),
        m: 8,
        ef_construction: 32,
        ef_search: 32,
        exact_proof_limit: 5000,
        recall_mode: super::RecallMode::Hybrid,
        fusion_depth: 50,
        gc_interval: Duration::from_millis(250),
        max_chain: 64,
        published_dir: dir.join("published"),
        allow_fork: Vec::new(),
        min_free_bytes: 0,
        max_page_bytes: 16 << 20,
        max_exact: 200_000,
        max_filter_candidates: 10_000,
        state_cache_bytes: 16 << 20,
        witnesses: Vec::new(),
        cosigs_per_sec: 100,
        models: None,
    }
}

async fn engine(dir: &Path) -> Arc<Engine> {
    Engine::open(config(dir), Embedder::deterministic(16))
        .await
        .expect("open engine")
}

fn items(prefix: &str, n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| Item {
            text: format!("{prefix} memory number {i}"),
            metadata: Default::default(),
            created_at: None,
            vector: None,
        })
        .collect()
}

fn answer(bytes: &[u8]) -> CatchUp {
    match decode_reply(bytes).expect("honest reply decodes") {
        Reply::Answer(c) => *c,
        _ => panic!("not an answer"),
    }
}

fn encode(c: CatchUp) -> Vec<u8> {
    encode_reply(&Reply::Answer(Box::new(c)))
}

/// The replica's latest root (seq, hash).
fn held(b: &Engine) -> (u64, [u8; 32]) {
    b.space("team")
        .expect("space")
        .with_commit(|c| {
            c.root()
                .map_or((0, [0; 32]), |r| (r.record.seq, r.record.hash()))
        })
        .expect("commit")
}

/// True when the replica's commitment (graph, time and term trees) is exactly what its latest root signs: a refused
/// step applied in place must be undone completely.
fn current(b: &Engine) -> bool {
    b.space("team")
        .expect("space")
        .with_commit(|c| c.root_is_current())
        .expect("commit")
}

/// Verifies and installs an honest answer on `b`, handing it the records it needs as if fetched from a peer.
async fn install_honest(a: &Engine, b: &Arc<Engine>, bytes: &[u8]) {
    let step = b
        .verify_step("team", answer(bytes))
        .await
        .expect("honest answer verifies")
        .expect("something new");
    let records = a.records_bulk(&step.needed).await.expect("records");
    b.blobs
        .put_held(&records, step.hold())
        .await
        .expect("put records");
    b.install_step(step).await.expect("install");
}

/// A signed copy of `root` with one field changed, as a hostile owner could make.
fn resigned(
    a: &Engine,
    root: &SignedRoot,
    f: impl FnOnce(&mut cairn_index::root::RootRecord),
) -> SignedRoot {
    let mut rec = root.record.clone();
    f(&mut rec);
    SignedRoot::sign(rec, a.signing_key())
}

/// An owner `a` holding `team` (`n_team` memories) and `other` (`n_other`), and a replica `b` that follows
/// `team` and installed the owner's first honest answer; with the owner's key and the two data dirs.
async fn owner_and_replica(
    n_team: usize,
    n_other: usize,
) -> (
    Arc<Engine>,
    Arc<Engine>,
    [u8; 32],
    (tempfile::TempDir, tempfile::TempDir),
) {
    let (ta, tb) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let a = engine(ta.path()).await;
    let b = engine(tb.path()).await;
    let owner = a.node_key();
    a.remember("team", items("team", n_team))
        .await
        .expect("remember");
    a.remember("other", items("other", n_other))
        .await
        .expect("remember");
    b.follow("team", owner, None).await.expect("follow");
    let first = a
        .catch_up("team", owner, 0)
        .await
        .expect("catch up")
        .expect("answer");
    install_honest(&a, &b, &encode(first)).await;
    (a, b, owner, (ta, tb))
}

/// A delta updates the replica's id index, live count and newest time for the rows it ships only; forgetting
/// the newest memory (which lowers the newest time) and replacing tombstoned rows must leave them exactly as a
/// full re-index of the rows would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_deltas_keep_the_id_index_exact() {
    let (a, b, owner, _dirs) = owner_and_replica(30, 1).await;
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
        + 60_000;
    for round in 0..3 {
        // Each newer than everything before (the first memories took the clock's time), so the last of each
        // round is alone the newest.
        let mut batch = items(&format!("round {round}"), 6);
        for (i, it) in batch.iter_mut().enumerate() {
            it.created_at = Some(later + round * 100 + i as u64);
        }
        let more = a.remember("team", batch).await.expect("remember");
        // The newest memory and an older one go; so does one of the earlier memories in the first round.
        let mut gone = vec![more[5].id, more[1].id];
        if round == 0 {
            let new: std::collections::HashSet<_> = more.iter().map(|m| m.id).collect();
            let live = a.space("team").expect("space").live_ids().expect("ids");
            gone.extend(live.into_iter().find(|id| !new.contains(id)));
        }
        // The replica takes the new memories in one delta and the forgets in the next.
        for forget in [false, true] {
            if forget {
                a.forget("team", &gone).await.expect("forget");
            }
            let have = held(&b).0;
            let delta = a
                .catch_up("team", owner, have)
                .await
                .expect("catch up")
                .expect("answer");
            assert!(!delta.out.full, "expected a delta answer");
            install_honest(&a, &b, &encode(delta)).await;
            assert_eq!(held(&b).0, a.owner_root_seq("team").expect("seq"));
            assert!(
                b.space("team").expect("space").index_matches_rows(),
                "round {round} (forget: {forget}): the replica's id index differs from its rows"
            );
        }
        let (sa, sb) = (
            a.space("team").expect("space"),
            b.space("team").expect("space"),
        );
        assert_eq!(sa.live_ids().expect("ids"), sb.live_ids().expect("ids"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_catch_up_answers_are_refused_and_install_nothing() {
    let (a, b, owner, _dirs) = owner_and_replica(40, 40).await;
    let before = held(&b);
    assert_eq!(before.0, a.owner_root_seq("team").expect("seq"));

    // The owner moves on: new memories and a forget (a tombstone among the changed nodes).
    let more = a
        .remember("team", items("later", 12))
        .await
        .expect("remember");
    let gone = vec![more[0].id];
    a.forget("team", &gone).await.expect("forget");
    let have = before.0;
    let honest = encode(
        a.catch_up("team", owner, have)
            .await
            .expect("catch up")
            .expect("answer"),
    );
    let other = answer(&encode(
        a.catch_up("other", owner, 0)
            .await
            .expect("catch up")
            .expect("answer"),
    ));
    assert!(!answer(&honest).out.full, "expected a delta answer");
    let n = answer(&honest).out.nodes.len();
    assert!(n >= 3, "too few changed nodes to mutate: {n}");

    let dead = answer(&honest)
        .out
        .nodes
        .iter()
        .position(|p| !p.node.alive)
        .expect("the answer carries the tombstone");
    let alive = answer(&honest)
        .out
        .nodes
        .iter()
        .position(|p| p.node.alive)
        .expect("a live node");

    type Mutation = Box<dyn Fn(&mut CatchUp)>;
    let other_node = other.out.nodes[alive.min(other.out.nodes.len() - 1)].clone();
    let other_chain = other.chain.clone();
    let a2 = a.clone();
    let mutations: Vec<(&str, Mutation)> = vec![
        (
            "reorder",
            Box::new(|c: &mut CatchUp| c.out.nodes.swap(0, 1)),
        ),
        (
            "drop the last node",
            Box::new(|c: &mut CatchUp| {
                c.out.nodes.pop();
            }),
        ),
        // (A changed-node list may include nodes whose leaf came out the same; leaving one of those out still
        // reproduces the signed root, so it is the tombstone, whose leaf did change, that is dropped here.)
        (
            "drop the tombstone",
            Box::new(move |c: &mut CatchUp| {
                c.out.nodes.remove(dead);
            }),
        ),
        (
            "duplicate a node",
            Box::new(|c: &mut CatchUp| {
                let d = c.out.nodes[0].clone();
                c.out.nodes.insert(1, d);
            }),
        ),
        (
            "splice a node from another namespace",
            Box::new(move |c: &mut CatchUp| {
                let mut s = other_node.clone();
                s.node.node = c.out.nodes[alive].node.node;
                c.out.nodes[alive] = s;
            }),
        ),
        (
            "alter a vector",
            Box::new(move |c: &mut CatchUp| {
                let v = &mut c.out.nodes[alive].node.vector;
                v[0] = v[0].wrapping_add(1);
            }),
        ),
        (
            "alter a neighbour list",
            Box::new(move |c: &mut CatchUp| {
                if let NodeLists::Full(l) = &mut c.out.nodes[alive].lists {
                    l[0].push(0);
                }
            }),
        ),
        (
            "a tombstone that keeps its vector",
            Box::new(move |c: &mut CatchUp| {
                c.out.nodes[dead].node.vector[0] = 9;
            }),
        ),
        (
            "claim the delta is the whole graph",
            Box::new(|c: &mut CatchUp| c.out.full = true),
        ),
        (
            "a chain of another namespace",
            Box::new(move |c: &mut CatchUp| {
                c.chain = other_chain.clone();
            }),
        ),
        (
            "an owner-signed root that counts more nodes",
            Box::new(move |c: &mut CatchUp| {
                let r = resigned(&a2, &c.out.root, |r| r.graph_leaves += 1000);
                *c.chain.last_mut().expect("chain") = r.clone();
                c.out.root = r;
            }),
        ),
    ];
    for (what, m) in &mutations {
        let mut c = answer(&honest);
        m(&mut c);
        let bytes = encode(c);
        let refused = match decode_reply(&bytes) {
            Err(_) => true,
            Ok(Reply::Answer(c)) => match b.verify_step("team", *c).await {
                Err(_) => true,
                Ok(None) => false,
                // A small delta is checked against the signed root as it is applied, in place, at install:
                // hand it the records it asks for (those the owner has) and install.
                Ok(Some(step)) => {
                    if let Ok(records) = a.records_bulk(&step.needed).await {
                        let _ = b.blobs.put_held(&records, step.hold()).await;
                    }
                    b.install_step(step).await.is_err()
                }
            },
            Ok(_) => false,
        };
        assert!(refused, "mutation {what:?} was accepted");
        assert_eq!(held(&b), before, "mutation {what:?} changed the replica");
        assert!(
            current(&b),
            "mutation {what:?} left a commitment that is not its root's"
        );
    }

    // Every truncation and a count inflated in the bytes: a decode error, never a panic, nothing held changes.
    let step = (honest.len() / 300).max(1);
    for cut in (0..honest.len()).step_by(step) {
        assert!(decode_reply(&honest[..cut]).is_err(), "truncated at {cut}");
    }
    let roots_len: usize = {
        let c = answer(&honest);
        c.chain.iter().map(|r| 4 + r.encode().len()).sum()
    };
    let count_at = 4 + 1 + 4 + roots_len + 1 + 2;
    let mut inflated = honest.clone();
    inflated[count_at..count_at + 4].copy_from_slice(&(n as u32 + 1).to_be_bytes());
    assert!(
        decode_reply(&inflated).is_err(),
        "inflated node count decoded"
    );
    assert_eq!(held(&b), before);

    // An owner-signed root whose lexical index is not what the records tokenize to (a memory hidden from word
    // search, say): the graph checks out, so the step verifies; installing it, records in hand, is refused and
    // changes nothing.
    {
        let mut c = answer(&honest);
        let r = resigned(&a, &c.out.root, |r| {
            if let Some(l) = r.lexicon.as_mut() {
                l.root[0] ^= 1;
            }
        });
        *c.chain.last_mut().expect("chain") = r.clone();
        c.out.root = r;
        let step = b
            .verify_step("team", c)
            .await
            .expect("the graph checks out")
            .expect("something new");
        let records = a.records_bulk(&step.needed).await.expect("records");
        b.blobs
            .put_held(&records, step.hold())
            .await
            .expect("put records");
        assert!(
            b.install_step(step).await.is_err(),
            "a lexical index that differs from the records was installed"
        );
        assert_eq!(held(&b), before);
        assert!(current(&b), "the refused lexical index was not undone");
    }

    // The replica still serves its verified state, and then takes the honest answer.
    assert_eq!(b.stats(Some("team")).expect("stats")[0].memories, 40);
    install_honest(&a, &b, &honest).await;
    assert_eq!(held(&b).0, a.owner_root_seq("team").expect("seq"));
    assert_eq!(b.stats(Some("team")).expect("stats")[0].memories, 51);
}

/// A peer flooding cosignatures gets at most its per-second budget stored; duplicates and bad signatures cost
/// no write, and the node's own cosignature is never held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_cosignatures_is_rate_limited_and_batched() {
    use super::follow::COSIG_FLUSH;
    const RATE: u32 = 5;
    let ta = tempfile::tempdir().expect("tmp");
    let mut cfg = config(ta.path());
    cfg.cosigs_per_sec = RATE;
    let a = Engine::open(cfg, Embedder::deterministic(16))
        .await
        .expect("open engine");
    let owner = a.node_key();
    let roots: u64 = 40;
    for i in 0..roots {
        a.remember("team", items(&format!("write {i}"), 1))
            .await
            .expect("remember");
    }
    let w = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let wid = w.verifying_key().to_bytes();
    a.put_peer(wid, "").await.expect("peer");
    let mut sigs = Vec::new();
    for seq in 1..=roots {
        let root = a.root("team", Some(seq)).await.expect("root");
        sigs.push((seq, cairn_index::root::cosign(&root.record, &w)));
    }
    // A bad signature is refused outright.
    assert!(!a.add_cosig(owner, "team", 1, wid, [7; 64]).await);
    let t0 = std::time::Instant::now();
    let accepted = futures::future::join_all(
        sigs.iter()
            .map(|&(seq, sig)| a.add_cosig(owner, "team", seq, wid, sig)),
    )
    .await;
    let took = t0.elapsed();
    assert!(accepted.iter().all(|&x| x));
    tokio::time::sleep(COSIG_FLUSH * 4).await;
    let mut stored = 0;
    for seq in 1..=roots {
        let root = a.root("team", Some(seq)).await.expect("root");
        stored += a
            .cosigs(&root.record)
            .await
            .iter()
            .filter(|(x, _)| *x == wid)
            .count() as u64;
    }
    // However slow the machine, the flood spans at most this many one-second windows.
    let windows = took.as_secs() + 2;
    assert!(stored >= 1, "nothing stored");
    assert!(
        stored <= u64::from(RATE) * windows && stored < roots,
        "{stored} of {roots} cosignatures stored from a {took:?} flood at {RATE}/s"
    );
    // The node's own cosignature goes straight in, whatever the budget.
    let root = a.root("team", Some(roots)).await.expect("root");
    let own = cairn_index::root::cosign(&root.record, a.signing_key());
    assert!(a.add_cosig(owner, "team", roots, owner, own).await);
    assert!(a
        .cosigs(&root.record)
        .await
        .iter()
        .any(|(x, _)| *x == owner));
}

/// A forget marks the state file for a vacuum; the scrub pass runs it unless the previous vacuum was too recent
/// (it waits ten times that one's duration), and then it stays due for the next pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vacuum_follows_a_forget_but_keeps_its_spacing() {
    let ta = tempfile::tempdir().expect("tmp");
    let a = engine(ta.path()).await;
    let made = a
        .remember("team", items("spaced", 4))
        .await
        .expect("remember");
    let due = |a: &Engine| a.state.scrub_due().expect("due");
    assert!(!due(&a));
    a.forget("team", &[made[0].id]).await.expect("forget");
    assert!(due(&a), "a forget did not mark the state file");
    // Too soon after a previous vacuum: the pass leaves it due.
    *a.next_vacuum.lock().expect("lock") =
        Some(std::time::Instant::now() + Duration::from_secs(3600));
    a.scrub().await.expect("scrub");
    assert!(due(&a), "the vacuum ignored its spacing");
    *a.next_vacuum.lock().expect("lock") = None;
    a.scrub().await.expect("scrub");
    assert!(!due(&a), "the vacuum did not run");
    assert!(
        a.next_vacuum.lock().expect("lock").is_some(),
        "no spacing set after a vacuum"
    );
}

/// A snapshot build in progress (here: its lock held, as a long build at 100k holds it for seconds) holds back
/// a Forget of its own namespace (the build may have read the forgotten records) but not one of another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_build_holds_back_forgets_of_its_own_namespace_only() {
    let ta = tempfile::tempdir().expect("tmp");
    let a = engine(ta.path()).await;
    let big = a.remember("big", items("big", 4)).await.expect("remember");
    let small = a
        .remember("small", items("small", 4))
        .await
        .expect("remember");
    let building = a.snapshot_guard("big").await.expect("guard");
    let other =
        tokio::time::timeout(Duration::from_secs(10), a.forget("small", &[small[0].id])).await;
    assert!(
        other.is_ok(),
        "a forget of another namespace waited for the build"
    );
    assert_eq!(other.expect("in time").expect("forget").0.len(), 1);
    let id = big[0].id;
    let same = tokio::time::timeout(
        Duration::from_millis(300),
        a.forget("big", std::slice::from_ref(&id)),
    )
    .await;
    assert!(
        same.is_err(),
        "a forget did not wait for its namespace's build"
    );
    drop(building);
    // The forget given up on above was not cancelled (its durable part runs in its own task): it lands now.
    let mut gone = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if a.stats(Some("big")).expect("stats")[0].memories == 3 {
            gone = true;
            break;
        }
    }
    assert!(gone, "the forget held back by the build never landed");
}

/// A snapshot (a peer's whole namespace: the graph answer and pages of records, a HashSeq) that was tampered with
/// is refused before anything is installed, and the replica keeps serving the state it verified before: pages
/// missing, doubled, cut short, a record altered, dropped or spliced in from another namespace, an altered graph,
/// the graph of another namespace. The honest snapshot then installs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_snapshots_are_refused_and_install_nothing() {
    use super::snapshot::parse_page;
    let (a, b, _, _dirs) = owner_and_replica(30, 5).await;
    let before = held(&b);
    a.remember("team", items("later", 10))
        .await
        .expect("remember");

    let parts_of = |snap: super::snapshot::SnapshotRef| {
        let a = a.clone();
        async move {
            let mut out = Vec::new();
            for p in a.snapshot_parts(snap.hash).await.expect("parts") {
                out.push(a.blobs.get_raw(p).await.expect("part"));
            }
            out
        }
    };
    let ours = parts_of(a.snapshot("team").await.expect("build").expect("snap")).await;
    let theirs = parts_of(a.snapshot("other").await.expect("build").expect("snap")).await;
    let (graph, pages) = (ours[0].clone(), ours[1..].to_vec());
    assert!(!pages.is_empty(), "no pages");
    let records = |page: &bytes::Bytes| -> Vec<bytes::Bytes> {
        parse_page(page)
            .expect("page")
            .into_iter()
            .map(|(o, l)| page.slice(o as usize..(o + l) as usize))
            .collect()
    };
    let first_page = records(&pages[0]);
    let with_first_page = |page: Vec<bytes::Bytes>| {
        let mut v = vec![graph.clone(), super::snapshot::encode_page(&page)];
        v.extend(pages[1..].iter().cloned());
        v
    };
    let mut altered = first_page.clone();
    let mut rec = altered[0].to_vec();
    let last = rec.len() - 1;
    rec[last] ^= 1;
    altered[0] = rec.into();
    let mut spliced = first_page.clone();
    spliced.push(records(&theirs[1])[0].clone());
    let mut doubled = ours.clone();
    doubled.push(pages[0].clone());
    let mut bent = answer(&graph);
    let alive = bent
        .out
        .nodes
        .iter()
        .position(|n| n.node.alive)
        .expect("a live node");
    bent.out.nodes[alive].node.vector[0] = bent.out.nodes[alive].node.vector[0].wrapping_add(1);
    let mut cut = ours.clone();
    cut[1] = pages[0].slice(..pages[0].len() - 1);
    let mut short_graph = ours.clone();
    short_graph[0] = graph.slice(..graph.len() / 2);
    let mut other_graph = ours.clone();
    other_graph[0] = theirs[0].clone();

    let mutants: Vec<(&str, Vec<bytes::Bytes>)> = vec![
        ("no pages", vec![graph.clone()]),
        ("a page twice", doubled),
        ("a page cut short", cut),
        ("a record altered", with_first_page(altered)),
        (
            "a record dropped",
            with_first_page(first_page[1..].to_vec()),
        ),
        (
            "a record of another namespace added",
            with_first_page(spliced),
        ),
        ("an altered vector in the graph", {
            let mut v = ours.clone();
            v[0] = encode(bent).into();
            v
        }),
        ("the graph cut short", short_graph),
        ("the graph of another namespace", other_graph),
    ];
    for (i, (what, parts)) in mutants.into_iter().enumerate() {
        let hash = store_snapshot(&b, &format!("mutant {i}"), parts).await;
        let hold = b.hold_downloads().await;
        let got = b.install_snapshot("team", hash, hold, Vec::new()).await;
        assert!(got.is_err(), "snapshot with {what} was installed");
        assert_eq!(held(&b), before, "snapshot with {what} changed the replica");
        assert_eq!(b.stats(Some("team")).expect("stats")[0].memories, 30);
    }

    let hash = store_snapshot(&b, "honest", ours).await;
    let hold = b.hold_downloads().await;
    b.install_snapshot("team", hash, hold, Vec::new())
        .await
        .expect("the honest snapshot installs")
        .expect("something new");
    assert_eq!(held(&b).0, a.owner_root_seq("team").expect("seq"));
    assert_eq!(b.stats(Some("team")).expect("stats")[0].memories, 40);
}

/// Stores `parts` as a snapshot pinned under `name`; returns its hash.
async fn store_snapshot(e: &Engine, name: &str, parts: Vec<bytes::Bytes>) -> [u8; 32] {
    let mut w = e.blobs.snapshot_writer();
    for p in parts {
        w.add(p).await.expect("store a part");
    }
    w.finish(name).await.expect("store the snapshot").0
}
