//! Restarts and crashes lose nothing that was acknowledged; forgetting really deletes the bytes.

use std::time::Duration;

use cairn_client::NewMemory;
use cairn_tests::{files_containing, temp_dir, Node};

fn memories(n: usize, tag: &str) -> Vec<NewMemory> {
    (0..n)
        .map(|i| {
            NewMemory::new(format!(
                "{tag} note {i}: the {} of project {} moved to room {}.",
                ["budget", "deadline", "review", "launch"][i % 4],
                i % 7,
                100 + i
            ))
        })
        .collect()
}

#[tokio::test]
async fn graceful_restart_keeps_everything() {
    let dir = temp_dir();
    let mut node = Node::start(dir.path()).expect("node");
    let c = node.client().await.expect("client");
    let ids: Vec<String> = c
        .remember("r", memories(60, "restart"))
        .await
        .expect("remember")
        .into_iter()
        .map(|r| r.id)
        .collect();
    let before = c
        .recall("r", "where did the launch move?")
        .k(10)
        .send()
        .await
        .expect("recall");
    let list_before = c.list("r", Default::default()).await.expect("list");
    node.stop();

    let node = Node::start(dir.path()).expect("restart");
    let c = node.client().await.expect("client");
    let got = c.get("r", ids.clone()).await.expect("get");
    assert_eq!(got.memories.len(), ids.len());
    assert!(got.missing.is_empty());
    let after = c
        .recall("r", "where did the launch move?")
        .k(10)
        .send()
        .await
        .expect("recall");
    let ids_of = |h: &Vec<cairn_client::Hit>| h.iter().map(|x| x.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids_of(&before), ids_of(&after));
    let list_after = c.list("r", Default::default()).await.expect("list");
    assert_eq!(list_before, list_after);
    // The restarted node still deduplicates against what it had.
    let again = c
        .remember("r", memories(1, "restart"))
        .await
        .expect("remember");
    assert!(again[0].deduplicated);
    assert_eq!(again[0].id, ids[0]);
}

#[tokio::test]
async fn kill_9_right_after_acknowledged_remembers_loses_nothing() {
    let dir = temp_dir();
    let mut node = Node::start(dir.path()).expect("node");
    let c = node.client().await.expect("client");
    let mut ids = Vec::new();
    for chunk in memories(40, "crash").chunks(8) {
        for r in c.remember("k", chunk.to_vec()).await.expect("remember") {
            ids.push(r.id);
        }
    }
    // The very last acknowledged call is followed immediately by SIGKILL.
    let last = c
        .remember("k", vec![NewMemory::new("The last word before the crash.")])
        .await
        .expect("remember");
    ids.push(last[0].id.clone());
    node.kill9();

    let node = Node::start(dir.path()).expect("restart after kill -9");
    let c = node.client().await.expect("client");
    let got = c.get("k", ids.clone()).await.expect("get");
    assert!(
        got.missing.is_empty(),
        "lost after kill -9: {:?}",
        got.missing
    );
    assert_eq!(got.memories.len(), ids.len());
    // And it is searchable (the index was rebuilt from durable state, no dump was ever written).
    let hits = c
        .recall("k", "the last word before the crash")
        .k(1)
        .send()
        .await
        .expect("recall");
    assert_eq!(hits[0].id, last[0].id);
    let stats = c.stats(Some("k")).await.expect("stats");
    assert_eq!(stats.total_memories, ids.len() as u64);
}

#[tokio::test]
async fn forget_deletes_the_bytes_from_the_blob_store() {
    let dir = temp_dir();
    let node = Node::start(dir.path()).expect("node");
    let c = node.client().await.expect("client");
    let marker = format!(
        "zebra-marker-{} secret text to be forgotten",
        std::process::id()
    );
    let keep = c
        .remember("f", vec![NewMemory::new("An unrelated memory that stays.")])
        .await
        .expect("remember");
    let r = c
        .remember("f", vec![NewMemory::new(marker.clone())])
        .await
        .expect("remember");
    assert!(
        !files_containing(&dir.path().join("blobs"), marker.as_bytes()).is_empty(),
        "the blob store should hold the text before forgetting"
    );
    c.forget("f", vec![r[0].id.clone()]).await.expect("forget");
    // Garbage collection runs every second; give it a bounded while.
    let mut left = Vec::new();
    for _ in 0..100 {
        left = files_containing(dir.path(), marker.as_bytes());
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left.is_empty(), "forgotten text still on disk in {left:?}");
    let got = c.get("f", vec![keep[0].id.clone()]).await.expect("get");
    assert_eq!(got.memories.len(), 1, "unrelated memory must survive GC");
}

#[tokio::test]
async fn forgetting_most_memories_compacts_and_everything_still_verifies() {
    let dir = temp_dir();
    let mut node = Node::start(dir.path()).expect("node");
    let c = node.client().await.expect("client");
    let ids: Vec<String> = c
        .remember("compact", memories(400, "compaction"))
        .await
        .expect("remember")
        .into_iter()
        .map(|r| r.id)
        .collect();
    // Forget 300 of 400 (in one call): tombstones pass a quarter of the graph, so the graph is rebuilt.
    let (forgotten, missing) = c
        .forget("compact", ids[..300].to_vec())
        .await
        .expect("forget");
    assert_eq!(forgotten.len(), 300);
    assert!(missing.is_empty());
    let stats = c.stats(Some("compact")).await.expect("stats");
    assert_eq!(stats.total_memories, 100);
    assert_eq!(
        stats.namespaces[0].tombstones, 0,
        "compaction dropped the forgotten vectors"
    );
    assert_eq!(stats.namespaces[0].index_points, 100);
    let got = c.get("compact", ids[300..].to_vec()).await.expect("get");
    assert_eq!(got.memories.len(), 100);
    let hits = c
        .recall("compact", "where did the launch move?")
        .k(20)
        .send()
        .await
        .expect("recall");
    assert_eq!(hits.len(), 20);
    assert!(hits.iter().all(|h| !ids[..300].contains(&h.id)));
    // Proofs over the compacted graph verify, and survive a restart.
    let trusted = cairn_client::verify::parse_node_id(&c.node_info().await.expect("info").node_id)
        .expect("id");
    let asked = cairn_client::verify::RecallAsked { k: 5, min_ef: 0 };
    let resp = c
        .recall("compact", "budget")
        .k(5)
        .proof(true)
        .send_full()
        .await
        .expect("recall");
    cairn_client::verify::recall("compact", &asked, &resp, &trusted, None)
        .expect("verifies after compaction");
    node.stop();
    let node = Node::start(dir.path()).expect("restart");
    let c = node.client().await.expect("client");
    let got = c.get("compact", ids.clone()).await.expect("get");
    assert_eq!(got.memories.len(), 100);
    assert_eq!(got.missing.len(), 300);
    let resp = c
        .recall("compact", "budget")
        .k(5)
        .proof(true)
        .send_full()
        .await
        .expect("recall");
    cairn_client::verify::recall("compact", &asked, &resp, &trusted, None)
        .expect("verifies after restart");
}

/// Garbage collection runs at start-up and after every forget. iroh-blobs marks tagged blobs and then sweeps all
/// the others, so a blob written between the two would be lost (blobs.rs now keeps writers and passes apart).
/// Writes and forgets here overlap those passes on purpose, and afterwards every remembered memory must still
/// have its bytes. A smoke test: the window is narrow, and without the fix this did not fail in 3 runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_garbage_collection_keep_their_bytes() {
    let dir = temp_dir();
    let node = Node::start(dir.path()).expect("node");
    let c = node.client().await.expect("client");
    let mut kept = Vec::new();
    for round in 0..12 {
        // Remember a batch, and forget one memory of the previous batch, concurrently: each forget wants a pass.
        let forget = kept.pop();
        let (r, f) = tokio::join!(
            c.remember("gc", memories(25, &format!("round{round}"))),
            async {
                match forget {
                    Some(id) => c.forget("gc", vec![id]).await.map(|_| ()),
                    None => Ok(()),
                }
            }
        );
        f.expect("forget");
        kept.extend(r.expect("remember").into_iter().map(|m| m.id));
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    // Let any pass finish, then read every kept memory (its record bytes come from the blob store).
    tokio::time::sleep(Duration::from_secs(2)).await;
    for chunk in kept.chunks(100) {
        let got = c
            .get("gc", chunk.to_vec())
            .await
            .expect("every kept memory readable");
        assert_eq!(
            got.memories.len(),
            chunk.len(),
            "missing: {:?}",
            got.missing
        );
    }
}

/// A data dir whose key file is gone or replaced does not start with a new identity: the node refuses to start
/// and says why; with the original key back it serves the same namespace under the same id.
#[tokio::test]
async fn a_missing_or_swapped_key_file_is_a_clear_start_up_error() {
    let dir = temp_dir();
    let mut node = Node::start(dir.path()).expect("node");
    let c = node.client().await.expect("client");
    c.remember("k", memories(3, "key")).await.expect("remember");
    let id = c.node_info().await.expect("info").node_id;
    node.stop();
    let key = dir.path().join("node.key");
    let original = std::fs::read(&key).expect("key file");

    let serve = || {
        std::process::Command::new(cairn_tests::cairn_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("CAIRN_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run cairn serve")
    };
    std::fs::remove_file(&key).expect("remove key");
    let o = serve();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "started without its key: {err}");
    assert!(err.contains("node.key") && err.contains("missing"), "{err}");
    assert!(!key.exists(), "a new key was written");

    std::fs::write(&key, [7u8; 32]).expect("swap key");
    let o = serve();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "started with another key: {err}");
    assert!(err.contains(&id), "{err}");

    std::fs::write(&key, &original).expect("restore key");
    let node = Node::start(dir.path()).expect("restart with the original key");
    let c = node.client().await.expect("client");
    assert_eq!(c.node_info().await.expect("info").node_id, id);
    assert_eq!(c.stats(Some("k")).await.expect("stats").total_memories, 3);
}

/// A data dir restored from an older copy must not sign a root for a seq the node already published: writes to
/// that namespace are refused with a clear message (reads go on), other namespaces keep taking writes, and
/// `--allow-fork NS` is the operator's explicit override.
#[tokio::test]
async fn a_restored_older_data_dir_refuses_to_sign_a_published_seq_again() {
    let (dir, backup, published) = (temp_dir(), temp_dir(), temp_dir());
    let pd = published.path().display().to_string();
    let args = ["--published-dir", pd.as_str()];
    let mut node = Node::start_with(dir.path(), &args).expect("node");
    let c = node.client().await.expect("client");
    c.remember("old", memories(3, "before"))
        .await
        .expect("remember");
    c.remember("other", memories(2, "other"))
        .await
        .expect("remember");
    node.stop();
    cairn_tests::copy_dir(dir.path(), backup.path());
    let mut node = Node::start_with(dir.path(), &args).expect("node");
    let c = node.client().await.expect("client");
    c.remember("old", memories(2, "after"))
        .await
        .expect("remember");
    let published_seq = c.root("old", None).await.expect("root").seq;
    node.stop();

    // The operator restores the backup over the data dir.
    std::fs::remove_dir_all(dir.path()).expect("remove");
    cairn_tests::copy_dir(backup.path(), dir.path());
    let mut node = Node::start_with(dir.path(), &args).expect("restored node");
    let c = node.client().await.expect("client");
    let err = c
        .remember("old", memories(1, "fork"))
        .await
        .expect_err("a restored data dir signed a published seq again");
    assert_eq!(err.code(), Some(tonic::Code::FailedPrecondition), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("seq {published_seq}")), "{msg}");
    assert!(msg.contains("--allow-fork"), "{msg}");
    assert!(c.root("old", None).await.expect("root").seq < published_seq);
    assert_eq!(c.stats(Some("old")).await.expect("stats").total_memories, 3);
    c.remember("other", memories(1, "still fine"))
        .await
        .expect("another namespace keeps taking writes");
    node.stop();

    let node = Node::start_with(dir.path(), &["--published-dir", &pd, "--allow-fork", "old"])
        .expect("node with override");
    let c = node.client().await.expect("client");
    c.remember("old", memories(1, "forked on purpose"))
        .await
        .expect("writes with --allow-fork");
}

/// A data dir restored from an older copy on a machine whose published-seq record never saw the newer roots (a
/// new machine, a lost home directory): at start-up the node asks its peers for the roots they hold of its
/// namespaces; a follower holding a newer root signed by this node makes writes to that namespace fail with
/// FAILED_PRECONDITION (reads go on), and the seq is recorded so a restart without the peer still refuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_holding_newer_roots_catches_a_data_dir_restored_on_a_new_machine() {
    use cairn_tests::{introduce, node_id, wait_seq};
    let (da, db, backup) = (temp_dir(), temp_dir(), temp_dir());
    let (old_machine, new_machine) = (temp_dir(), temp_dir());
    let (po, pn) = (
        old_machine.path().display().to_string(),
        new_machine.path().display().to_string(),
    );
    let mut a = Node::start_with(da.path(), &["--published-dir", &po]).expect("A");
    let b = Node::start(db.path()).expect("B");
    introduce(&a, &b);
    let ca = a.client().await.expect("client A");
    ca.remember("team", memories(3, "before"))
        .await
        .expect("remember");
    ca.remember("solo", memories(1, "solo"))
        .await
        .expect("remember");
    let o = b.cli(&["follow", "--ns", "team", "--from", &node_id(&a)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let seq = ca.root("team", None).await.expect("root").seq;
    assert_eq!(
        wait_seq(&b, "team", seq, Duration::from_secs(30)).await,
        seq
    );
    a.stop();
    cairn_tests::copy_dir(da.path(), backup.path());

    let mut a = Node::start_with(da.path(), &["--published-dir", &po]).expect("A again");
    let ca = a.client().await.expect("client A");
    ca.remember("team", memories(2, "after"))
        .await
        .expect("remember");
    let published = ca.root("team", None).await.expect("root").seq;
    assert!(published > seq);
    assert_eq!(
        wait_seq(&b, "team", published, Duration::from_secs(30)).await,
        published
    );
    a.stop();

    // The old copy comes back on a new machine: its published-seq record knows nothing; B knows better.
    std::fs::remove_dir_all(da.path()).expect("remove");
    cairn_tests::copy_dir(backup.path(), da.path());
    let mut a = Node::start_with(da.path(), &["--published-dir", &pn]).expect("restored A");
    let ca = a.client().await.expect("client A");
    let err = ca
        .remember("team", memories(1, "fork"))
        .await
        .expect_err("a restored data dir signed a seq its follower already holds");
    assert_eq!(err.code(), Some(tonic::Code::FailedPrecondition), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("seq {published}")), "{msg}");
    assert!(msg.contains(&node_id(&b)), "{msg}");
    assert_eq!(ca.root("team", None).await.expect("root").seq, seq);
    assert_eq!(
        ca.stats(Some("team")).await.expect("stats").total_memories,
        3
    );
    ca.remember("solo", memories(1, "still fine"))
        .await
        .expect("a namespace no peer holds newer keeps taking writes");
    a.stop();

    // Without asking the peer again, the recorded seq still refuses writes...
    let mut a = Node::start_with(
        da.path(),
        &["--published-dir", &pn, "--peer-check-secs", "0"],
    )
    .expect("A, no peer check");
    let ca = a.client().await.expect("client A");
    let err = ca
        .remember("team", memories(1, "fork"))
        .await
        .expect_err("the peer's seq was not recorded");
    assert_eq!(err.code(), Some(tonic::Code::FailedPrecondition), "{err}");
    a.stop();
    // ...and --allow-fork is the explicit override.
    let a = Node::start_with(da.path(), &["--published-dir", &pn, "--allow-fork", "team"])
        .expect("A with override");
    let ca = a.client().await.expect("client A");
    ca.remember("team", memories(1, "forked on purpose"))
        .await
        .expect("writes with --allow-fork");
}
