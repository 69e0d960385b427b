//! Verifiable retrieval against real nodes: the CLI's --verify / --proof-out / verify, and a client catching a
//! node that lies (answers tampered after the fact, replayed or conflicting roots).

use std::path::Path;
use std::process::Output;

use cairn_client::proof_file::ProofFile;
use cairn_client::verify::{self as v, LastSeen, RecallAsked};
use cairn_client::NewMemory;
use cairn_index::root::SignedRoot;
use cairn_tests::{temp_dir, Node, FACTS};

fn cli_with_state(node: &Node, state: &Path, args: &[&str]) -> Output {
    node.cli_with_state(state, args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn seeded(dir: &Path, extra: &[&str]) -> Node {
    let node = Node::start_with(dir, extra).expect("node");
    let c = node.client().await.expect("client");
    for (i, f) in FACTS.iter().enumerate() {
        c.remember(
            "proofs",
            vec![NewMemory::new(*f).created_at(1_000 + i as u64 * 100)],
        )
        .await
        .expect("remember");
    }
    node
}

#[tokio::test]
async fn cli_verify_recall_list_get_and_saved_proofs() {
    let dir = temp_dir();
    let state = dir.path().join("state.json");
    let node = seeded(dir.path(), &[]).await;
    let id_out = node.cli(&["id"]);
    assert!(id_out.status.success());
    let node_id = stdout(&id_out).trim().to_owned();
    assert_eq!(node_id.len(), 64);

    // Recall --verify: hits, then the verification line; first contact pins the node id with a warning.
    let o = cli_with_state(
        &node,
        &state,
        &[
            "recall",
            "--ns",
            "proofs",
            "-k",
            "3",
            "--verify",
            "what does Alice drink?",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("green tea"), "{out}");
    let want = format!("verified against root seq 9 by {node_id}");
    assert!(out.lines().any(|l| l == want), "{out}");
    assert!(stderr(&o).contains("first contact"), "{}", stderr(&o));

    // List over a range, and Get, verified with an explicit --trust.
    let o = cli_with_state(
        &node,
        &state,
        &[
            "list", "--ns", "proofs", "--since", "1200", "--until", "1600", "--verify", "--trust",
            &node_id, "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let times: Vec<u64> = v["memories"]
        .as_array()
        .expect("memories")
        .iter()
        .map(|m| m["created_at"].as_u64().expect("t"))
        .collect();
    assert_eq!(times, vec![1200, 1300, 1400, 1500]);
    assert_eq!(v["verified"]["seq"], 9);
    let first_id = v["memories"][0]["id"].as_str().expect("id").to_owned();
    let o = cli_with_state(
        &node,
        &state,
        &["get", "--ns", "proofs", "--verify", &first_id],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    // A wrong --trust fails with a reason.
    let other = "ab".repeat(32);
    let o = cli_with_state(
        &node,
        &state,
        &[
            "recall", "--ns", "proofs", "--verify", "--trust", &other, "tea",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("verification failed"), "{}", stderr(&o));

    // Saved proofs verify offline; every single-byte change is rejected, never with a panic. Recall in each
    // mode: the node's default (hybrid), semantic and lexical.
    for (kind, args) in [
        (
            "recall",
            vec!["recall", "--ns", "proofs", "-k", "4", "who has allergies?"],
        ),
        (
            "recall-semantic",
            vec![
                "recall",
                "--ns",
                "proofs",
                "-k",
                "4",
                "--mode",
                "semantic",
                "who has allergies?",
            ],
        ),
        (
            "recall-lexical",
            vec![
                "recall",
                "--ns",
                "proofs",
                "-k",
                "4",
                "--mode",
                "lexical",
                "Alice tea allergies",
            ],
        ),
        (
            "recall-filtered",
            vec![
                "recall",
                "--ns",
                "proofs",
                "-k",
                "3",
                "--since",
                "1200",
                "who has allergies?",
            ],
        ),
        (
            "recall-filtered-semantic",
            vec![
                "recall",
                "--ns",
                "proofs",
                "-k",
                "3",
                "--mode",
                "semantic",
                "--until",
                "1500",
                "who has allergies?",
            ],
        ),
        (
            "list",
            vec![
                "list", "--ns", "proofs", "--since", "1000", "--until", "1500",
            ],
        ),
        ("get", vec!["get", "--ns", "proofs", first_id.as_str()]),
    ] {
        let file = dir.path().join(format!("{kind}.proof"));
        let mut a = args.clone();
        a.extend(["--proof-out", file.to_str().expect("path")]);
        let o = cli_with_state(&node, &state, &a);
        assert!(o.status.success(), "{kind}: {}", stderr(&o));
        let o = node.cli(&["verify", file.to_str().expect("path"), "--trust", &node_id]);
        assert!(o.status.success(), "{kind}: {}", stderr(&o));
        let bytes = std::fs::read(&file).expect("read proof");
        // Exhaustively in-process (the same code the CLI runs) ...
        let trusted = v::parse_node_id(&node_id).expect("id");
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= bit;
                let ok = ProofFile::decode(&b)
                    .and_then(|f| f.verify(&trusted))
                    .is_ok();
                assert!(!ok, "{kind}: flip of byte {i} accepted");
            }
        }
        // ... and sampled through the CLI: non-zero exit, never 101 (a panic).
        let flipped = dir.path().join("flipped.proof");
        for i in (0..bytes.len()).step_by((bytes.len() / 12).max(1)) {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            std::fs::write(&flipped, &b).expect("write");
            let o = node.cli(&[
                "verify",
                flipped.to_str().expect("path"),
                "--trust",
                &node_id,
            ]);
            let code = o.status.code();
            assert!(
                code.is_some() && code != Some(0) && code != Some(101),
                "{kind}: byte {i} gave {code:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_lying_node_is_caught() {
    let dir = temp_dir();
    let node = seeded(dir.path(), &["--exact-proof-limit", "0"]).await;
    let c = node.client().await.expect("client");
    // More memories so the graph search (not exact mode) is exercised, in another namespace too.
    let more: Vec<NewMemory> = (0..60)
        .map(|i| {
            NewMemory::new(format!(
                "Note {i}: meeting room {} is booked by team {}.",
                i % 9,
                i % 4
            ))
        })
        .collect();
    c.remember("proofs", more).await.expect("remember");
    c.remember(
        "elsewhere",
        vec![NewMemory::new("Alice prefers green tea to coffee.")],
    )
    .await
    .expect("remember");
    let trusted = v::parse_node_id(&c.node_info().await.expect("info").node_id).expect("id");
    let asked = RecallAsked { k: 5, min_ef: 0 };

    let resp = c
        .recall("proofs", "what does Alice drink?")
        .k(5)
        .proof(true)
        .send_full()
        .await
        .expect("recall");
    assert_eq!(resp.hits.len(), 5);
    let honest =
        v::recall("proofs", &asked, &resp, &trusted, None).expect("honest answer verifies");

    // Omit a hit.
    let mut r = resp.clone();
    r.hits.remove(2);
    assert!(v::recall("proofs", &asked, &r, &trusted, None).is_err());
    // Reorder hits.
    let mut r = resp.clone();
    r.hits.swap(0, 1);
    assert!(v::recall("proofs", &asked, &r, &trusted, None).is_err());
    // Change a hit's text (record bytes stay honest).
    let mut r = resp.clone();
    r.hits[0].text = "Alice prefers coffee.".into();
    assert!(v::recall("proofs", &asked, &r, &trusted, None).is_err());
    // Return another namespace's memory in place of a hit.
    let foreign = c.get_with_proof("elsewhere", vec![]).await;
    assert!(foreign.is_err(), "empty id list is invalid");
    let other = c
        .recall("elsewhere", "tea")
        .k(1)
        .proof(true)
        .send_full()
        .await
        .expect("recall other ns");
    let mut r = resp.clone();
    r.hits[0].id = other.hits[0].id.clone();
    r.hits[0].record = other.hits[0].record.clone();
    r.hits[0].text = other.hits[0].text.clone();
    assert!(v::recall("proofs", &asked, &r, &trusted, None).is_err());
    // A proof for a smaller k than asked.
    let small = c
        .recall("proofs", "what does Alice drink?")
        .k(3)
        .proof(true)
        .send_full()
        .await
        .expect("recall");
    assert!(v::recall("proofs", &asked, &small, &trusted, None).is_err());
    // A proof for another namespace.
    assert!(v::recall("elsewhere", &asked, &resp, &trusted, None).is_err());

    // List: leaving out a memory in range is caught.
    let range = v::list_range(Some(1000), Some(1900), 100, "").expect("range");
    let page = c
        .list_with_proof(
            "proofs",
            cairn_client::ListOptions {
                since: Some(1000),
                until: Some(1900),
                limit: Some(100),
                page_token: None,
                ..Default::default()
            },
        )
        .await
        .expect("list");
    v::list("proofs", &range, &page, &trusted, None).expect("honest page verifies");
    let mut short = page.clone();
    short.memories.remove(3);
    assert!(v::list("proofs", &range, &short, &trusted, None).is_err());

    // Replay of an older root is caught once a newer one was seen.
    let newer = c
        .remember(
            "proofs",
            vec![NewMemory::new("A brand new fact about Alice's tea.")],
        )
        .await
        .expect("remember");
    assert!(!newer[0].deduplicated);
    let fresh = c
        .recall("proofs", "tea")
        .k(5)
        .proof(true)
        .send_full()
        .await
        .expect("recall");
    let fresh_v = v::recall("proofs", &asked, &fresh, &trusted, None).expect("fresh verifies");
    assert!(fresh_v.seq() > honest.seq());
    let seen = LastSeen {
        seq: fresh_v.seq(),
        hash: fresh_v.root.record.hash(),
    };
    let err =
        v::recall("proofs", &asked, &resp, &trusted, Some(&seen)).expect_err("old root replayed");
    assert!(err.to_string().contains("older"), "{err}");

    // Equivocation: the node's key signs a second, different root for a seq already seen.
    let key_bytes: [u8; 32] = std::fs::read(dir.path().join("node.key"))
        .expect("key")
        .try_into()
        .expect("32 bytes");
    let key = ed25519_dalek::SigningKey::from_bytes(&key_bytes);
    let mut forged = fresh_v.root.record.clone();
    forged.time_leaves += 1;
    let forged = SignedRoot::sign(forged, &key);
    assert!(
        forged.verify(Some(&trusted)).is_ok(),
        "the forged root is properly signed"
    );
    let err = cairn_index::proof::check_fresh(&forged, Some(&seen), &[]).expect_err("equivocation");
    assert!(err.to_string().contains("equivocation"), "{err}");

    // WatchRoots streams the current root, then each new one.
    let mut raw = node.raw().await.expect("connect");
    let mut stream = raw
        .watch_roots(cairn_proto::v1::WatchRootsRequest {
            namespace: "proofs".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("stream")
        .expect("current root");
    c.remember(
        "proofs",
        vec![NewMemory::new("One more fact for the watchers.")],
    )
    .await
    .expect("remember");
    let next = tokio::time::timeout(std::time::Duration::from_secs(30), stream.message())
        .await
        .expect("a new root within 30 s")
        .expect("stream")
        .expect("root");
    assert_eq!(next.seq, first.seq + 1);
    assert_eq!(next.prev, first.hash);
    let signed = SignedRoot::decode(&next.signed).expect("signed root");
    signed
        .verify(Some(&trusted))
        .expect("streamed root verifies");

    // Roots chain: GetRoot for consecutive seqs links by prev hash.
    let latest = c.root("proofs", None).await.expect("root");
    let prev = c
        .root("proofs", Some(latest.seq - 1))
        .await
        .expect("previous root");
    assert_eq!(latest.prev, prev.hash);
}

#[tokio::test]
async fn roots_survive_restart_and_continue_the_chain() {
    let dir = temp_dir();
    let mut node = seeded(dir.path(), &[]).await;
    let c = node.client().await.expect("client");
    let before = c.root("proofs", None).await.expect("root");
    let id_before = c.node_info().await.expect("info").node_id;
    node.stop();
    let node = Node::start(dir.path()).expect("restart");
    let c = node.client().await.expect("client");
    assert_eq!(
        c.node_info().await.expect("info").node_id,
        id_before,
        "the node key persists"
    );
    let after = c.root("proofs", None).await.expect("root");
    assert!(after.seq >= before.seq);
    if after.seq > before.seq {
        // The rebuilt graph got a new root that links to the old one.
        let next = c
            .root("proofs", Some(before.seq + 1))
            .await
            .expect("next root");
        assert_eq!(next.prev, before.hash);
    } else {
        assert_eq!(after.hash, before.hash);
    }
    let trusted = v::parse_node_id(&id_before).expect("id");
    let resp = c
        .recall("proofs", "tea")
        .k(3)
        .proof(true)
        .send_full()
        .await
        .expect("recall");
    let seen = LastSeen {
        seq: before.seq,
        hash: hex_hash(&before.hash),
    };
    v::recall(
        "proofs",
        &RecallAsked { k: 3, min_ef: 0 },
        &resp,
        &trusted,
        Some(&seen),
    )
    .expect("verifies after restart");
}

/// An answer whose proof verifies but that fails a later check the caller asked for (here `--witnesses`) is
/// refused and its root is not recorded as seen: the next answer must still descend from the last root that
/// passed every check.
#[tokio::test]
async fn an_answer_refused_by_a_later_check_is_not_pinned() {
    let dir = temp_dir();
    let state = dir.path().join("state.json");
    let node = seeded(dir.path(), &[]).await;
    let node_id = stdout(&node.cli(&["id"])).trim().to_owned();
    let seen = || -> u64 {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&state).expect("state file")).expect("json");
        v["roots"][format!("{node_id}/proofs")]["seq"]
            .as_u64()
            .expect("a seen root for proofs")
    };
    let recall = |extra: &[&str]| {
        let mut a = vec!["recall", "--ns", "proofs", "--verify", "--trust", &node_id];
        a.extend_from_slice(extra);
        a.push("tea");
        cli_with_state(&node, &state, &a)
    };
    let o = recall(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = seen();

    let c = node.client().await.expect("client");
    c.remember("proofs", vec![NewMemory::new("Dana brews green tea.")])
        .await
        .expect("remember");
    let newer = c.root("proofs", None).await.expect("root").seq;
    assert!(newer > first);
    // `cairn root --json` gives the signed record's bytes, which verify under the node id on their own.
    let r = node.cli_json(&["root", "--ns", "proofs"]);
    let signed =
        SignedRoot::decode(&hex::decode(r["signed"].as_str().expect("signed")).expect("hex"))
            .expect("a signed root record");
    signed
        .verify(Some(&v::parse_node_id(&node_id).expect("id")))
        .expect("signed by the node");
    assert_eq!(signed.record.seq, newer);
    assert_eq!(r["hash"], hex::encode(signed.record.hash()));

    // The proof verifies, but no cosignature from the one witness asked for exists: refused, nothing pinned,
    // and no proof file written (a saved file stands for an answer that passed every check).
    let stranger = "cd".repeat(32);
    let saved = dir.path().join("refused.proof");
    let saved_arg = saved.to_str().expect("utf-8 path");
    let o = recall(&[
        "--witnesses",
        "1",
        "--witness",
        &stranger,
        "--proof-out",
        saved_arg,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("witness"), "{}", stderr(&o));
    assert_eq!(
        seen(),
        first,
        "a refused answer's root was recorded as seen"
    );
    assert!(
        !saved.exists(),
        "a refused answer's proof was saved to --proof-out"
    );

    let o = recall(&["--proof-out", saved_arg]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(seen(), newer);
    assert!(saved.exists(), "an accepted answer's proof was not saved");
}

fn hex_hash(h: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("hex");
    }
    out
}

/// `--check-query` binds a recall to its query text: the client re-embeds the text and requires the proof's
/// query vector to be that embedding. A proof that is valid, but for another query, passes `--verify` and fails
/// this check (the stand-in for a node that answers a different question than it was asked).
#[tokio::test]
async fn check_query_binds_the_answer_to_the_text() {
    let dir = temp_dir();
    let state = dir.path().join("state.json");
    let node = seeded(dir.path(), &[]).await;
    let o = cli_with_state(
        &node,
        &state,
        &[
            "recall",
            "--ns",
            "proofs",
            "--check-query",
            "what does Alice drink?",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("query bound"), "{}", stdout(&o));

    // A saved hybrid answer (the default mode) carries its question: --check-query must name it, and the proof's
    // semantic half must be that question's embedding.
    let hybrid = dir.path().join("tea-hybrid.proof");
    let h = hybrid.to_string_lossy().into_owned();
    let o = cli_with_state(
        &node,
        &state,
        &[
            "recall",
            "--ns",
            "proofs",
            "--proof-out",
            &h,
            "what does Alice drink?",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&node.cli(&["id"])).trim().to_owned();
    let o = node.cli(&[
        "verify",
        &h,
        "--trust",
        &id,
        "--check-query",
        "what does Alice drink?",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("query bound"), "{}", stdout(&o));
    let o = node.cli(&[
        "verify",
        &h,
        "--trust",
        &id,
        "--check-query",
        "which room is booked on Friday?",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("another question"), "{}", stderr(&o));

    // A saved filtered answer (a time range, the node's default mode with a proof: CPF1) is bound the same way:
    // its question must be the text checked, and its query vector that text's embedding.
    let filtered = dir.path().join("tea-filtered.proof");
    let fp = filtered.to_string_lossy().into_owned();
    let o = cli_with_state(
        &node,
        &state,
        &[
            "recall",
            "--ns",
            "proofs",
            "--since",
            "1000",
            "--until",
            "1500",
            "--proof-out",
            &fp,
            "what does Alice drink?",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = node.cli(&[
        "verify",
        &fp,
        "--trust",
        &id,
        "--check-query",
        "what does Alice drink?",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("query bound"), "{}", stdout(&o));
    let o = node.cli(&[
        "verify",
        &fp,
        "--trust",
        &id,
        "--check-query",
        "which room is booked on Friday?",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("another question"), "{}", stderr(&o));

    // A saved semantic answer is bound to its text by the query vector alone.
    let file = dir.path().join("tea.proof");
    let f = file.to_string_lossy().into_owned();
    let o = cli_with_state(
        &node,
        &state,
        &[
            "recall",
            "--ns",
            "proofs",
            "--mode",
            "semantic",
            "--proof-out",
            &f,
            "what does Alice drink?",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let node_id = stdout(&node.cli(&["id"])).trim().to_owned();
    // The saved answer verifies, and is bound to the text it was asked with...
    let o = node.cli(&[
        "verify",
        &f,
        "--trust",
        &node_id,
        "--check-query",
        "what does Alice drink?",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("query bound"), "{}", stdout(&o));
    // ...but not to another question, although the proof itself is valid.
    let o = node.cli(&["verify", &f, "--trust", &node_id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = node.cli(&[
        "verify",
        &f,
        "--trust",
        &node_id,
        "--check-query",
        "which room is booked on Friday?",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("not the embedding of the query text"),
        "{}",
        stderr(&o)
    );
}

/// A filtered Recall with a proof, in every mode, against a real node: the hits are exactly the top-k of the
/// memories passing the filter (checked by the SDK's verifier, and independently here: every hit passes, and
/// semantic recall over just those memories ranks the same), the proof is bound to the filter asked, and a
/// filter broader than `--max-filter-candidates` is refused with RESOURCE_EXHAUSTED.
#[tokio::test]
async fn filtered_recall_is_proven_in_every_mode() {
    use cairn_proto::v1 as pb;
    let dir = temp_dir();
    let node = Node::start_with(dir.path(), &["--max-filter-candidates", "12"]).expect("node");
    let c = node.client().await.expect("client");
    let speakers = ["alice", "bob", "carol"];
    let mut batch = Vec::new();
    for (i, f) in FACTS.iter().chain(FACTS.iter()).enumerate() {
        batch.push(
            NewMemory::new(format!("{f} (note {i})"))
                .meta("speaker", speakers[i % 3])
                .created_at(1_000 + i as u64 * 100),
        );
    }
    c.remember("filtered", batch).await.expect("remember");
    let trusted = v::parse_node_id(&stdout(&node.cli(&["id"]))).expect("id");
    for mode in [
        pb::RecallMode::Semantic,
        pb::RecallMode::Lexical,
        pb::RecallMode::Hybrid,
    ] {
        let b = c
            .recall("filtered", "who walks the dog, and who is allergic?")
            .k(3)
            .mode(mode)
            .where_eq("speaker", "bob")
            .since(1_200)
            .proof(true);
        let filter = b.filter_asked();
        let resp = b.send_full().await.expect("recall");
        assert!(!resp.hits.is_empty(), "{mode:?}");
        for h in &resp.hits {
            assert_eq!(h.metadata.get("speaker").map(String::as_str), Some("bob"));
            assert!(h.created_at >= 1_200);
        }
        let asked = RecallAsked { k: 3, min_ef: 0 };
        let q = Some("who walks the dog, and who is allergic?");
        v::recall_filtered("filtered", &asked, q, 0, &filter, &resp, &trusted, None)
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        // Held to another filter (or to none), the same answer is refused.
        let other = v::filter_of(Some(&pb::Filter {
            metadata: [("speaker".to_owned(), "alice".to_owned())].into(),
            since: Some(1_200),
            until: None,
        }));
        assert!(
            v::recall_filtered("filtered", &asked, q, 0, &other, &resp, &trusted, None).is_err()
        );
        assert!(v::recall_query("filtered", &asked, q, 0, &resp, &trusted, None).is_err());
        // A memory outside the filter slipped in: refused.
        let mut bent = resp.clone();
        let alice = c
            .recall("filtered", "tea")
            .mode(pb::RecallMode::Semantic)
            .where_eq("speaker", "alice")
            .send()
            .await
            .expect("recall");
        bent.hits[0] = alice[0].clone();
        bent.hits[0].score = resp.hits[0].score;
        assert!(
            v::recall_filtered("filtered", &asked, q, 0, &filter, &bent, &trusted, None).is_err()
        );
    }
    // Without a metadata pair every memory is a candidate: allowed up to --max-filter-candidates.
    let small = c
        .recall("filtered", "who has allergies?")
        .k(4)
        .mode(pb::RecallMode::Semantic)
        .where_eq("speaker", "carol")
        .until(1_800)
        .proof(true)
        .send()
        .await
        .expect("proven");
    assert!(small.iter().all(
        |h| h.metadata.get("speaker").map(String::as_str) == Some("carol") && h.created_at < 1_800
    ));
    // More candidates than --max-filter-candidates (a time range alone allows every memory): RESOURCE_EXHAUSTED.
    let err = c
        .recall("filtered", "tea")
        .since(1_000)
        .proof(true)
        .send()
        .await
        .expect_err("too broad");
    assert!(format!("{err:?}").contains("ResourceExhausted"), "{err:?}");
}
