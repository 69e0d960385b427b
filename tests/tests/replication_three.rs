//! Three and more real nodes on loopback: 1,000 memories replicated A→B and A→C, the owner killed, verified
//! reads with witnesses from the replicas; a replica restarted mid-catch-up; a peer serving a tampered blob;
//! an owner caught signing two roots for one seq.

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_client::NewMemory;
use cairn_tests::{copy_dir, files_containing, node_id, seq_of, temp_dir, ticket, wait_seq, Node};

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Makes every node a peer of every other.
fn mesh(nodes: &[&Node]) {
    let tickets: Vec<String> = nodes.iter().map(|n| ticket(n)).collect();
    for (i, n) in nodes.iter().enumerate() {
        for (j, t) in tickets.iter().enumerate() {
            if i != j {
                add_peer(n, t);
            }
        }
    }
}

/// Makes the node of ticket `other` a peer of `n`, allowed to fetch every namespace from `n`.
fn add_peer(n: &Node, other: &str) {
    let o = n.cli(&["peer", "add", other]);
    assert!(o.status.success(), "{}", out(&o));
    let id = other.split('@').next().unwrap_or_default();
    let o = n.cli(&["share", "--ns", "", "--with", id]);
    assert!(o.status.success(), "{}", out(&o));
}

fn follow(n: &Node, ns: &str, owner: &str) {
    let o = n.cli(&["follow", "--ns", ns, "--from", owner]);
    assert!(o.status.success(), "{}", out(&o));
}

/// A verified recall of "fleet" on `n` against `owner`'s key, with at least `witnesses` cosignatures from keys
/// in the witness set `wit`.
fn recall_verified(
    n: &Node,
    state: &Path,
    owner: &str,
    wit: &[&str],
    witnesses: &str,
    q: &str,
) -> std::process::Output {
    let mut args = vec![
        "recall",
        "--ns",
        "fleet",
        "-k",
        "3",
        "--verify",
        "--trust",
        owner,
        "--witnesses",
        witnesses,
    ];
    for w in wit {
        args.extend(["--witness", w]);
    }
    args.push(q);
    n.cli_with_state(state, &args)
}

const TOPICS: &[&str] = &[
    "prefers window seats on long flights",
    "is allergic to cats",
    "plays the trumpet in a brass band",
    "grows tomatoes on the balcony",
    "runs a half marathon every autumn",
    "collects first editions of detective novels",
    "speaks Portuguese and Finnish",
    "keeps bees in the back garden",
];

fn memories(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("Person {i} {} (note {i}).", TOPICS[i % TOPICS.len()]))
        .collect()
}

async fn fill(a: &Node, texts: &[String]) -> u64 {
    fill_in(a, texts, 100).await
}

/// Remembers `texts` in calls of `per_call` (each call is one signed root); returns the last seq.
async fn fill_in(a: &Node, texts: &[String], per_call: usize) -> u64 {
    let c = a.client().await.expect("client");
    for chunk in texts.chunks(per_call) {
        c.remember(
            "fleet",
            chunk.iter().map(|t| NewMemory::new(t.clone())).collect(),
        )
        .await
        .expect("remember");
    }
    c.root("fleet", None).await.expect("root").seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_and_outlive_the_owner() {
    let (da, db, dc) = (temp_dir(), temp_dir(), temp_dir());
    let mut a = Node::start(da.path()).expect("A");
    let mut b = Node::start(db.path()).expect("B");
    let c = Node::start(dc.path()).expect("C");
    mesh(&[&a, &b, &c]);
    let a_id = node_id(&a);
    let (b_id, c_id) = (node_id(&b), node_id(&c));
    let wit = [b_id.as_str(), c_id.as_str()];
    let texts = memories(1000);
    let seq = fill(&a, &texts).await;

    // B is killed while catching up and restarted: it resumes and completes. The owner is frozen the moment B has
    // asked, so B's catch-up is in flight and cannot finish before the kill.
    follow(&b, "fleet", &a_id);
    a.pause();
    let b_seq = wait_seq(&b, "fleet", seq, Duration::from_millis(500)).await;
    eprintln!("B at seq {b_seq} of {seq} when killed");
    assert!(b_seq < seq, "B finished before the owner was frozen");
    b.kill9();
    a.resume();
    follow(&c, "fleet", &a_id);
    let b = Node::start(db.path()).expect("restart B");
    assert_eq!(
        wait_seq(&b, "fleet", seq, Duration::from_secs(120)).await,
        seq
    );
    assert_eq!(
        wait_seq(&c, "fleet", seq, Duration::from_secs(120)).await,
        seq
    );
    let cb = b.client().await.expect("client B");
    let stats = cb.stats(Some("fleet")).await.expect("stats");
    assert_eq!(stats.total_memories, 1000);

    // Witnesses exchange cosignatures (gossip, and with every catch-up poll); then the owner is lost.
    let state = db.path().join("client-state.json");
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30)
        && ![&b, &c].iter().all(|n| {
            recall_verified(n, &state, &a_id, &wit, "2", "bees")
                .status
                .success()
        })
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    a.kill9();
    for (node, name) in [(&b, "B"), (&c, "C")] {
        let o = recall_verified(node, &state, &a_id, &wit, "2", "who keeps bees?");
        let text = out(&o);
        assert!(o.status.success(), "{name}: {text}");
        assert!(text.contains("keeps bees"), "{name}: {text}");
        assert!(
            text.contains(&format!(
                "verified against root seq {seq} by {a_id} with 2 witness"
            )),
            "{name}: {text}"
        );
        // Three witnesses do not exist (only B and C verified this root).
        let o = recall_verified(node, &state, &a_id, &wit, "3", "who keeps bees?");
        assert_eq!(o.status.code(), Some(1), "{name}: {}", out(&o));
    }
}

/// Finds the blob file holding exactly `bytes` under `dir`.
/// Every blob file under `dir` holding `bytes`, with the offset where they start (a record's own blob, or
/// the record page it sits in).
fn find_in_blobs(dir: &Path, bytes: &[u8]) -> Vec<(std::path::PathBuf, usize)> {
    files_containing(dir, bytes)
        .into_iter()
        .filter_map(|f| {
            let data = std::fs::read(&f).ok()?;
            let at = data.windows(bytes.len()).position(|w| w == bytes)?;
            Some((std::path::PathBuf::from(f), at))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_blob_is_rejected_and_fetched_from_another_peer() {
    let (da, db, dd, dc) = (temp_dir(), temp_dir(), temp_dir(), temp_dir());
    let mut a = Node::start(da.path()).expect("A");
    let mut b = Node::start(db.path()).expect("B");
    let d = Node::start(dd.path()).expect("D");
    let ta = ticket(&a);
    for n in [&b, &d] {
        add_peer(n, &ta);
        add_peer(&a, &ticket(n));
    }
    let a_id = node_id(&a);
    let (b_id, d_id) = (node_id(&b), node_id(&d));
    // C joins after A is gone; its key is made now so that A can grant it first (replicas re-serve by A's grant).
    std::fs::write(dc.path().join("node.key"), [0x5c; 32]).expect("key for C");
    let c_key = ed25519_dalek::SigningKey::from_bytes(&[0x5c; 32]);
    let c_id = hex::encode(c_key.verifying_key().to_bytes());
    let o = a.cli(&["share", "--ns", "", "--with", &c_id]);
    assert!(o.status.success(), "{}", out(&o));
    let seq = fill(&a, &memories(40)).await;
    follow(&b, "fleet", &a_id);
    follow(&d, "fleet", &a_id);
    assert_eq!(
        wait_seq(&b, "fleet", seq, Duration::from_secs(60)).await,
        seq
    );
    assert_eq!(
        wait_seq(&d, "fleet", seq, Duration::from_secs(60)).await,
        seq
    );
    a.kill9();

    // Tamper with one record's bytes on B's disk (same length, one letter changed), wherever B keeps them.
    let cb = b.client().await.expect("client B");
    let hit = cb
        .recall("fleet", "trumpet in a brass band")
        .k(1)
        .proof(true)
        .send_full()
        .await
        .expect("recall")
        .hits
        .remove(0);
    b.stop();
    let copies = find_in_blobs(&db.path().join("blobs"), &hit.record);
    assert!(!copies.is_empty(), "record not found on B's disk");
    for (file, start) in copies {
        let mut data = std::fs::read(&file).expect("read");
        data[start + hit.record.len() - 5] ^= 0x01;
        std::fs::write(&file, &data).expect("tamper");
    }
    let b = Node::start(db.path()).expect("restart B");

    // C knows only B: the tampered record fails BLAKE3 verification, so nothing becomes visible.
    let c = Node::start(dc.path()).expect("C");
    add_peer(&c, &ticket(&b));
    assert_eq!(node_id(&c), c_id);
    follow(&c, "fleet", &a_id);
    assert_eq!(
        wait_seq(&c, "fleet", seq, Duration::from_secs(8)).await,
        0,
        "C installed state with a record it could not verify"
    );
    // With D known as well, C fetches that record from D and completes.
    add_peer(&c, &ticket(&d));
    assert_eq!(
        wait_seq(&c, "fleet", seq, Duration::from_secs(60)).await,
        seq
    );
    let cc = c.client().await.expect("client C");
    let got = cc.get("fleet", vec![hit.id.clone()]).await.expect("get");
    assert_eq!(got.memories.len(), 1);
    assert_eq!(got.memories[0].text, hit.text, "C holds the authentic text");
    let state = dc.path().join("client-state.json");
    let o = recall_verified(
        &c,
        &state,
        &a_id,
        &[b_id.as_str(), d_id.as_str(), c_id.as_str()],
        "1",
        "brass band trumpet",
    );
    assert!(o.status.success(), "{}", out(&o));
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_signing_two_roots_for_one_seq_is_caught() {
    let (da, da2, db) = (temp_dir(), temp_dir(), temp_dir());
    let p2p = format!("127.0.0.1:{}", free_udp_port());
    let mut a = Node::start_with(da.path(), &["--p2p-listen", &p2p]).expect("A");
    let b = Node::start(db.path()).expect("B");
    add_peer(&b, &ticket(&a));
    add_peer(&a, &ticket(&b));
    let a_id = node_id(&a);
    let seq = fill(&a, &memories(5)).await;
    follow(&b, "fleet", &a_id);
    assert_eq!(
        wait_seq(&b, "fleet", seq, Duration::from_secs(60)).await,
        seq
    );

    // A second process, on another machine (its own published-seq record), with a copy of A's data dir holds A's
    // key: history forks at seq + 1.
    a.stop();
    copy_dir(da.path(), da2.path());
    let elsewhere = temp_dir();
    let elsewhere = elsewhere.path().display().to_string();
    let mut a2 = Node::start_with(
        da2.path(),
        &["--p2p-listen", &p2p, "--published-dir", &elsewhere],
    )
    .expect("A'");
    a2.client()
        .await
        .expect("client")
        .remember(
            "fleet",
            vec![NewMemory::new("Only the fork has this memory.")],
        )
        .await
        .expect("remember on A'");
    assert_eq!(
        wait_seq(&b, "fleet", seq + 1, Duration::from_secs(60)).await,
        seq + 1
    );
    a2.stop();
    // The original A, restarted, learns from B at start-up that seq + 1 is already signed and refuses to fork...
    let mut a = Node::start_with(da.path(), &["--p2p-listen", &p2p]).expect("A again");
    let err = a
        .client()
        .await
        .expect("client")
        .remember("fleet", vec![NewMemory::new("Refused: B holds seq + 1.")])
        .await
        .expect_err("A signed a seq its follower already holds");
    assert_eq!(err.code(), Some(tonic::Code::FailedPrecondition), "{err}");
    a.stop();
    // ...so its operator forces the fork (--allow-fork), and B must catch it.
    let a = Node::start_with(da.path(), &["--p2p-listen", &p2p, "--allow-fork", "fleet"])
        .expect("A forced");
    let ca = a.client().await.expect("client");
    ca.remember(
        "fleet",
        vec![NewMemory::new("Only the original has this one.")],
    )
    .await
    .expect("remember on A");
    assert_eq!(ca.root("fleet", None).await.expect("root").seq, seq + 1);

    // B sees a second root for seq + 1 signed by A, keeps both as evidence and stops following.
    let t0 = Instant::now();
    let alerts = loop {
        let v = b.cli_json(&["alerts"]);
        let list = v["alerts"].as_array().cloned().unwrap_or_default();
        if !list.is_empty() || t0.elapsed() > Duration::from_secs(30) {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["owner"], a_id.as_str());
    assert_eq!(alerts[0]["seq"], seq + 1);
    let roots = alerts[0]["roots"].as_array().expect("roots");
    assert_ne!(roots[0]["hash"], roots[1]["hash"]);
    ca.remember(
        "fleet",
        vec![NewMemory::new("Written after the fork was seen.")],
    )
    .await
    .expect("remember");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        seq_of(&b, "fleet").await,
        seq + 1,
        "B kept following an equivocating owner"
    );

    // The halt is durable: after a restart B still does not follow, keeps one alert, and refuses to follow again.
    let mut b = b;
    b.stop();
    let b = Node::start(db.path()).expect("restart B");
    add_peer(&b, &ticket(&a));
    ca.remember("fleet", vec![NewMemory::new("Written after B restarted.")])
        .await
        .expect("remember");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        seq_of(&b, "fleet").await,
        seq + 1,
        "B resumed following an equivocating owner after a restart"
    );
    let v = b.cli_json(&["alerts"]);
    assert_eq!(v["alerts"].as_array().map(Vec::len), Some(1), "{v}");
    let o = b.cli(&["follow", "--ns", "fleet", "--from", &a_id]);
    assert!(
        !o.status.success(),
        "follow of a halted namespace succeeded"
    );
    let msg = out(&o);
    assert!(msg.contains("halted"), "{msg}");
    assert!(msg.contains(&format!("seq {}", seq + 1)), "{msg}");
}

/// A replica that was offline while the owner wrote more, and whose only live peer holds those records inside
/// snapshot pages (not as one blob each), catches up by taking that peer's snapshot; its superseded pages are deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_catches_up_from_a_peer_that_holds_records_in_pages() {
    let (da, db, dc) = (temp_dir(), temp_dir(), temp_dir());
    let mut a = Node::start(da.path()).expect("A");
    let b = Node::start(db.path()).expect("B");
    let mut c = Node::start(dc.path()).expect("C");
    mesh(&[&a, &b, &c]);
    let a_id = node_id(&a);
    let texts = memories(120);
    let first = fill(&a, &texts[..80]).await;
    // C takes the first 80 from a snapshot, then goes offline.
    follow(&c, "fleet", &a_id);
    assert_eq!(
        wait_seq(&c, "fleet", first, Duration::from_secs(60)).await,
        first
    );
    c.stop();
    // A writes 40 more; B joins only now, so all 120 reach B in one snapshot's pages. Then A is lost.
    let last = fill(&a, &texts[80..]).await;
    follow(&b, "fleet", &a_id);
    assert_eq!(
        wait_seq(&b, "fleet", last, Duration::from_secs(60)).await,
        last
    );
    a.kill9();
    // C comes back. B cannot serve the 40 records one by one, so C takes B's snapshot.
    let c = Node::start(dc.path()).expect("restart C");
    assert_eq!(
        wait_seq(&c, "fleet", last, Duration::from_secs(60)).await,
        last
    );
    let cc = c.client().await.expect("client C");
    assert_eq!(
        cc.stats(Some("fleet")).await.expect("stats").total_memories,
        120
    );
    let state = dc.path().join("client-state.json");
    let o = recall_verified(&c, &state, &a_id, &[], "0", &texts[100]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("Person 100 "), "{}", out(&o));
    // C's earlier pages were superseded and deleted: each record is on C's disk once.
    let t0 = Instant::now();
    let copies = loop {
        let n = files_containing(&dc.path().join("blobs"), texts[5].as_bytes()).len();
        if n <= 1 || t0.elapsed() > Duration::from_secs(15) {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(copies, 1, "C keeps superseded copies of its records");
}

/// A catch-up chain must link to the root the replica holds. B fell further behind than the peers' answers reach
/// (`--chain-roots 8`). C, which joined late, holds only the last roots, so B cannot link C's chain: it installs
/// nothing and keeps serving what it had. Once the owner is back, B fetches the roots in between from it (in
/// several replies), checks every link and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_that_does_not_link_to_the_held_root_is_not_installed() {
    let (da, db, dc) = (temp_dir(), temp_dir(), temp_dir());
    let small = ["--chain-roots", "8"];
    let mut a = Node::start_with(da.path(), &small).expect("A");
    let mut b = Node::start_with(db.path(), &small).expect("B");
    let c = Node::start_with(dc.path(), &small).expect("C");
    mesh(&[&a, &b, &c]);
    let a_id = node_id(&a);
    let texts = memories(40);
    let first = fill_in(&a, &texts[..5], 1).await;
    follow(&b, "fleet", &a_id);
    assert_eq!(
        wait_seq(&b, "fleet", first, Duration::from_secs(60)).await,
        first
    );
    b.stop();
    let last = fill_in(&a, &texts[5..], 1).await;
    assert!(last >= first + 35);
    follow(&c, "fleet", &a_id);
    assert_eq!(
        wait_seq(&c, "fleet", last, Duration::from_secs(60)).await,
        last
    );
    a.stop();

    let b = Node::start_with(db.path(), &small).expect("restart B");
    // Two poll rounds (3 s each) with C as the only live peer.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        seq_of(&b, "fleet").await,
        first,
        "B installed a chain that does not link to its root"
    );
    let cb = b.client().await.expect("client B");
    assert_eq!(
        cb.stats(Some("fleet")).await.expect("stats").total_memories,
        5
    );

    let _a = Node::start_with(da.path(), &small).expect("restart A");
    assert_eq!(
        wait_seq(&b, "fleet", last, Duration::from_secs(60)).await,
        last
    );
    assert_eq!(
        cb.stats(Some("fleet")).await.expect("stats").total_memories,
        40
    );
    let state = db.path().join("client-state.json");
    let o = recall_verified(&b, &state, &a_id, &[], "0", &texts[30]);
    assert!(o.status.success(), "{}", out(&o));
}

/// Cosignatures are kept only from keys a node has reason to keep: its peers (or witnesses pinned with
/// `--witness`). C is B's peer but not A's: B keeps C's cosignature, A drops it, so a verified read from A finds one
/// witness (B) and not two. With C pinned on A (`--witness`), A keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosignatures_from_unknown_keys_are_not_kept() {
    let (da, db, dc) = (temp_dir(), temp_dir(), temp_dir());
    let mut a = Node::start(da.path()).expect("A");
    let b = Node::start(db.path()).expect("B");
    let c = Node::start(dc.path()).expect("C");
    let (ta, tb, tc) = (ticket(&a), ticket(&b), ticket(&c));
    add_peer(&a, &tb);
    add_peer(&b, &ta);
    add_peer(&b, &tc);
    add_peer(&c, &tb);
    let a_id = node_id(&a);
    let c_id = node_id(&c);
    let b_id = node_id(&b);
    let wit = [b_id.as_str(), c_id.as_str()];
    // A lets C fetch the namespace (through B) without C being A's peer.
    cairn_tests::share(&a, "", &c);
    let texts = memories(6);
    let seq = fill(&a, &texts).await;
    follow(&b, "fleet", &a_id);
    follow(&c, "fleet", &a_id);
    for n in [&b, &c] {
        assert_eq!(
            wait_seq(n, "fleet", seq, Duration::from_secs(60)).await,
            seq
        );
    }
    let state = da.path().join("client-state.json");
    let ok_within = |n: &Node, w: &str| -> bool {
        let t0 = Instant::now();
        loop {
            if recall_verified(n, &state, &a_id, &wit, w, &texts[2])
                .status
                .success()
            {
                return true;
            }
            if t0.elapsed() > Duration::from_secs(20) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    // B holds its own and C's (its peer): two witnesses. A holds B's only.
    assert!(ok_within(&b, "2"), "B did not get C's cosignature");
    assert!(ok_within(&a, "1"), "A did not get B's cosignature");
    assert!(
        !recall_verified(&a, &state, &a_id, &wit, "2", &texts[2])
            .status
            .success(),
        "A kept a cosignature from a key that is neither its peer nor pinned"
    );

    // Pinned, C's cosignature of the next root is kept by A.
    a.stop();
    let a = Node::start_with(da.path(), &["--witness", &c_id]).expect("A with C pinned");
    fill(&a, &memories(7)[6..]).await;
    assert!(
        ok_within(&a, "2"),
        "A dropped the cosignature of a pinned witness"
    );
}
