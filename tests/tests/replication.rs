//! Replication between real nodes over iroh on loopback: a follower takes in the owner's signed state, serves
//! reads whose proofs verify against the OWNER's key, keeps serving after the owner is gone, refuses writes,
//! and follows forgets.

use std::time::{Duration, Instant};

use cairn_client::NewMemory;
use cairn_tests::{files_containing, introduce, node_id, temp_dir, ticket, wait_seq, Node, FACTS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_serves_verified_reads_that_survive_the_owner() {
    let (da, db) = (temp_dir(), temp_dir());
    let mut a = Node::start(da.path()).expect("start A");
    let mut b = Node::start(db.path()).expect("start B");
    introduce(&a, &b);
    let a_id = node_id(&a);
    let b_id = node_id(&b);
    let ca = a.client().await.expect("client A");
    let items: Vec<NewMemory> = FACTS.iter().map(|t| NewMemory::new(*t)).collect();
    ca.remember("team", items).await.expect("remember on A");
    let a_seq = ca.root("team", None).await.expect("root").seq;

    let o = b.cli(&["follow", "--ns", "team", "--from", &a_id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        wait_seq(&b, "team", a_seq, Duration::from_secs(30)).await,
        a_seq
    );

    // A memory remembered on A becomes readable on B.
    ca.remember(
        "team",
        vec![NewMemory::new("Heidi runs the Thursday book club.")],
    )
    .await
    .expect("remember");
    let a_seq = ca.root("team", None).await.expect("root").seq;
    assert_eq!(
        wait_seq(&b, "team", a_seq, Duration::from_secs(30)).await,
        a_seq
    );

    let state = db.path().join("client-state.json");
    let verify_on_b = |query: &str| {
        b.cli_with_state(
            &state,
            &[
                "recall",
                "--ns",
                "team",
                "--verify",
                "--trust",
                &a_id,
                "--witnesses",
                "1",
                "--witness",
                &b_id,
                query,
            ],
        )
    };
    let o = verify_on_b("who leads the book club?");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("Heidi"), "{out}");
    assert!(out.contains(&format!("by {a_id} with")), "{out}");
    // Without --trust, first contact with a replica pins the namespace's owner (with a warning), not B.
    let o = b.cli_with_state(
        &db.path().join("fresh-state.json"),
        &["recall", "--ns", "team", "--verify", "book club"],
    );
    let (so, se) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{so}{se}");
    assert!(se.contains("replica") && se.contains(&a_id), "{se}");
    assert!(so.contains(&format!("by {a_id}")), "{so}");

    // A saved answer keeps its cosignatures: `cairn verify` checks witnesses offline.
    let saved = db.path().join("answer.proof");
    let saved_s = saved.to_string_lossy().into_owned();
    let o = b.cli_with_state(
        &state,
        &[
            "recall",
            "--ns",
            "team",
            "--trust",
            &a_id,
            "--proof-out",
            &saved_s,
            "book club",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let verify_file = |file: &std::path::Path, w: &str, wit: &[&str]| {
        let mut cmd = std::process::Command::new(cairn_tests::cairn_bin());
        cmd.arg("verify")
            .arg(file)
            .args(["--trust", &a_id, "--witnesses", w]);
        for k in wit {
            cmd.args(["--witness", k]);
        }
        cmd.output().expect("run cairn")
    };
    let o = verify_file(&saved, "1", &[&b_id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("witness"));
    assert_eq!(verify_file(&saved, "2", &[&b_id]).status.code(), Some(1));
    // Without a witness set, --witnesses cannot be met: cosignatures count only from keys chosen beforehand.
    let o = verify_file(&saved, "1", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--witness"));

    // Three cosignatures from fresh keys (what a dishonest node could mint for its own fork) do not count...
    let mut pf = cairn_client::proof_file::ProofFile::decode(&std::fs::read(&saved).expect("read"))
        .expect("proof file");
    let pinned_root = pf
        .verify(&cairn_client::verify::parse_node_id(&a_id).expect("id"))
        .expect("verifies");
    let fresh: Vec<ed25519_dalek::SigningKey> = (0..3u8)
        .map(|i| ed25519_dalek::SigningKey::from_bytes(&[40 + i; 32]))
        .collect();
    pf.cosigs = fresh
        .iter()
        .map(|k| {
            (
                k.verifying_key().to_bytes(),
                cairn_index::root::cosign(&pinned_root.root.record, k),
            )
        })
        .collect();
    let forged = db.path().join("fresh-witnesses.proof");
    std::fs::write(&forged, pf.encode()).expect("write");
    let o = verify_file(&forged, "1", &[&b_id]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "fresh keys must not count as witnesses"
    );
    // ... unless the verifier pinned those keys.
    let k0 = hex::encode(fresh[0].verifying_key().to_bytes());
    let o = verify_file(&forged, "1", &[&k0]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // More witnesses than exist: refused.
    let o = b.cli_with_state(
        &state,
        &[
            "recall",
            "--ns",
            "team",
            "--trust",
            &a_id,
            "--witnesses",
            "2",
            "--witness",
            &b_id,
            "book club",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("witness"));

    // The audit of B's copy: every leaf recomputed against A's signed root, every memory reachable, and B's
    // proven answers equal exact search (a small namespace gets exact-mode proofs).
    let queries = db.path().join("queries.txt");
    std::fs::write(&queries, "tea\nbook club\nallergies\nwho moved abroad?\n")
        .expect("write queries");
    let q = queries.to_string_lossy().into_owned();
    let v = b.cli_json(&["audit", "--ns", "team", "--from", &a_id, "--queries", &q]);
    assert_eq!(v["every_leaf_verified"], true, "{v}");
    assert_eq!(v["memories"], FACTS.len() + 1, "{v}");
    // The snapshot's record pages hold every live memory, each matching its leaf.
    assert_eq!(v["records_verified"], FACTS.len() + 1, "{v}");
    assert_eq!(v["snapshot"].as_str().map(str::len), Some(64), "{v}");
    assert_eq!(v["unreachable"], 0, "{v}");
    assert_eq!(v["queries"], 4, "{v}");
    assert_eq!(v["recall_at_k"].as_f64(), Some(1.0), "{v}");
    // Audited against the wrong owner key, it fails.
    let b_id = node_id(&b);
    let o = b.cli(&["audit", "--ns", "team", "--from", &b_id]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // One writer per namespace: B refuses writes and names the owner.
    let cb = b.client().await.expect("client B");
    let err = cb
        .remember("team", vec![NewMemory::new("written on a replica")])
        .await
        .expect_err("replica must refuse writes");
    assert!(err.to_string().contains(&a_id), "{err}");
    assert!(err.to_string().to_lowercase().contains("replica"), "{err}");

    // Forgetting on A removes the memories from B as well, and their bytes from both disks: one came to B in
    // the snapshot's record pages (packs), one as its own blob.
    let eve = cb
        .recall("team", "who moved to Lisbon?")
        .k(1)
        .send()
        .await
        .expect("recall")
        .remove(0);
    assert!(eve.text.contains("Lisbon"), "{}", eve.text);
    // B took the first memories from A's snapshot: they sit together in record pages, not one file each.
    let packed = files_containing(&db.path().join("blobs"), b"Eve moved to Lisbon");
    assert!(
        packed.iter().any(|f| std::fs::read(f)
            .is_ok_and(|b| b.windows(15).any(|w| w == b"Carol's birthda"))),
        "no record page on B holds both memories: {packed:?}"
    );
    let heidi = cb
        .recall("team", "book club")
        .k(1)
        .send()
        .await
        .expect("recall")
        .remove(0)
        .id;
    ca.forget("team", vec![heidi.clone(), eve.id.clone()])
        .await
        .expect("forget");
    let a_seq = ca.root("team", None).await.expect("root").seq;
    assert_eq!(
        wait_seq(&b, "team", a_seq, Duration::from_secs(30)).await,
        a_seq
    );
    let got = cb
        .get("team", vec![heidi, eve.id.clone()])
        .await
        .expect("get");
    assert!(got.memories.is_empty(), "forgotten memory still on B");
    for text in ["Eve moved to Lisbon", "Heidi runs the Thursday"] {
        let t0 = Instant::now();
        let left = loop {
            // The nodes' storage (the data dirs also hold this test's client files, e.g. saved proofs).
            let mut left = Vec::new();
            for d in [da.path(), db.path()] {
                left.extend(files_containing(&d.join("blobs"), text.as_bytes()));
                left.extend(files_containing(&d.join("hnsw"), text.as_bytes()));
                left.extend(files_containing(&d.join("state.redb"), text.as_bytes()));
            }
            if left.is_empty() || t0.elapsed() > Duration::from_secs(15) {
                break left;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(left.is_empty(), "{text:?} still on disk in {left:?}");
    }
    // The rest of B's packed records are still there, and still verify.
    let o = verify_on_b("who has a birthday in June?");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Carol"));

    // The owner dies; B still answers, and the answers still verify against A's key.
    a.kill9();
    let o = verify_on_b("what does Dave avoid eating?");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("peanuts"), "{out}");
    assert!(
        out.contains(&format!("verified against root seq {a_seq} by {a_id}")),
        "{out}"
    );

    // B restarts from disk and serves the same, without A.
    b.stop();
    let b2 = Node::start(db.path()).expect("restart B");
    let o = b2.cli_with_state(
        &state,
        &[
            "recall", "--ns", "team", "--verify", "--trust", &a_id, "tea",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("green tea"), "{out}");
}

/// The peering and replication calls answer bad input with the right status and the node keeps serving.
#[tokio::test]
async fn p2p_calls_reject_bad_input_and_keep_serving() {
    use tonic::Code;
    let dir = temp_dir();
    let a = Node::start(dir.path()).expect("node");
    let c = a.client().await.expect("client");
    let own_id = node_id(&a);
    // A valid key that is not this node (the root test vector's signer, docs/PROOFS.md).
    let other = "2152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12";
    c.remember("mine", vec![NewMemory::new("owned here")])
        .await
        .expect("remember");

    let code = |r: Result<(), cairn_client::Error>| r.expect_err("must fail").code();
    assert_eq!(
        code(c.add_peer("not a ticket").await.map(|_| ())),
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        code(c.add_peer(&format!("{other}@nowhere")).await.map(|_| ())),
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        code(c.add_peer(&ticket(&a)).await.map(|_| ())),
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        code(c.follow("team", "xyz").await),
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        code(c.follow("team", &own_id).await),
        Some(Code::InvalidArgument)
    );
    assert_eq!(code(c.follow("", other).await), Some(Code::InvalidArgument));
    assert_eq!(
        code(c.follow("mine", other).await),
        Some(Code::FailedPrecondition)
    );
    assert_eq!(
        code(c.snapshot("nothing-here", 1 << 20).await.map(|_| ())),
        Some(Code::NotFound)
    );
    // Following twice from the same owner is fine; from another owner it is not.
    c.follow("team", other).await.expect("follow");
    c.follow("team", other).await.expect("follow again");
    let third = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&[9; 32])
            .verifying_key()
            .to_bytes(),
    );
    assert_eq!(
        code(c.follow("team", &third).await),
        Some(Code::FailedPrecondition)
    );
    // The CLI says why in one line and exits 1.
    let o = a.cli(&["audit", "--ns", "mine", "--from", other]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("audit failed"));
    // Still serving.
    assert_eq!(c.alerts().await.expect("alerts").len(), 0);
    assert!(c.peers().await.expect("peers").is_empty());
    assert!(c.stats(None).await.is_ok());
}

/// Unfollow is the inverse of Follow: the replica's rows, roots, graph and blobs leave the replica's data dir (the
/// state file at the next scrub pass), it no longer serves the namespace, and an owned namespace cannot be
/// unfollowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfollow_deletes_the_replicas_bytes() {
    let (da, db) = (temp_dir(), temp_dir());
    let a = Node::start(da.path()).expect("start A");
    let b = Node::start_with(db.path(), &["--scrub-secs", "1"]).expect("start B");
    introduce(&a, &b);
    let a_id = node_id(&a);
    let ca = a.client().await.expect("client A");
    let items: Vec<NewMemory> = FACTS.iter().map(|t| NewMemory::new(*t)).collect();
    ca.remember("team", items).await.expect("remember on A");
    let a_seq = ca.root("team", None).await.expect("root").seq;
    let o = b.cli(&["follow", "--ns", "team", "--from", &a_id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        wait_seq(&b, "team", a_seq, Duration::from_secs(30)).await,
        a_seq
    );
    let needle = b"walks his dog Biscuit";
    assert!(
        !files_containing(db.path(), needle).is_empty(),
        "the detector finds the text on the replica before"
    );

    // Owned namespaces are not unfollowed.
    let o = a.cli(&["unfollow", "--ns", "team"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("owned by this node"));

    let out = b.cli_json(&["unfollow", "--ns", "team"]);
    assert_eq!(out["dropped"].as_u64(), Some(FACTS.len() as u64), "{out}");
    let cb = b.client().await.expect("client B");
    let e = cb
        .recall("team", "dog")
        .send()
        .await
        .expect_err("no longer served");
    assert_eq!(e.code(), Some(tonic::Code::NotFound), "{e}");
    assert!(cb
        .list_namespaces()
        .await
        .expect("namespaces")
        .iter()
        .all(|n| n.namespace != "team"));
    // Within the scrub interval (1 s here; the margin covers slow CI disks) no file of B holds the text.
    let t0 = Instant::now();
    let mut left = files_containing(db.path(), needle);
    while !left.is_empty() && t0.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        left = files_containing(db.path(), needle);
    }
    assert!(left.is_empty(), "still on B after unfollow: {left:?}");
    // The owner is untouched, and B can follow again from scratch.
    assert_eq!(ca.root("team", None).await.expect("root").seq, a_seq);
    let o = b.cli(&["follow", "--ns", "team", "--from", &a_id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        wait_seq(&b, "team", a_seq, Duration::from_secs(30)).await,
        a_seq
    );
}
