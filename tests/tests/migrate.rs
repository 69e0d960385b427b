//! `cairn migrate`, end to end: a real node moves a 1,000-memory namespace from the fp32 all-MiniLM-L6-v2 to
//! its int8 copy (both provisioned by `scripts/provision-model --int8`). The node is killed mid-way and the
//! migration resumes from what it had embedded; the root chain verifies across the model change; a recall saved
//! before still verifies, and binds its query, under the fp32 model its root names, and a recall after under the
//! int8 one. A namespace can also be created for the int8 model from the start. A replica that followed the namespace before follows it across the change, and embeds its queries
//! with the int8 model too, also after a restart.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use cairn_index::root::{verify_chain, SignedRoot};
use cairn_tests::{cairn_bin, introduce, node_id, seq_of, temp_dir, wait_seq, Node};

/// The identities pinned in `cairn_server::models::PINNED_MODELS`.
const FP32: &str = "69e6cc71e6e77d601e8334200340a84d456d4f5bb17bba4cc051ae402723d793";
const INT8: &str = "e0948eea779adacfaaaf79d8b0f143d109fcfc43096a62056cd9e948ef44038b";
const NS: &str = "agents/notes";
const N: usize = 1000;

fn text(i: usize) -> String {
    let who = ["Alice", "Bob", "Chen", "Dara", "Emeka", "Farah", "Goran"][i % 7];
    let what = [
        "prefers green tea in the morning",
        "booked the large meeting room",
        "is allergic to peanuts",
        "moved the release to next sprint",
        "asked for the quarterly report",
        "fixed the flaky login test",
        "is learning to play the cello",
        "lost the key to the bike shed",
        "wants the standup at ten",
        "reviewed the database migration",
        "travels to Lisbon in spring",
    ][i % 11];
    format!("{who} {what} (note {i})")
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Verified recall JSON with `--check-query`, sharing the client state file `state` (pinned id, last roots).
fn recall(
    node: &Node,
    state: &std::path::Path,
    query: &str,
    proof_out: Option<&str>,
) -> serde_json::Value {
    let mut args = vec!["--json", "recall", "--ns", NS, "-k", "3", "--check-query"];
    if let Some(p) = proof_out {
        args.extend(["--proof-out", p]);
    }
    args.push(query);
    let o = node.cli_with_state(state, &args);
    assert!(o.status.success(), "recall {query:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("recall JSON")
}

// Multi-threaded: the SDK connections the polls opened to the replica answer its shutdown's GOAWAY while the
// test thread waits for it to stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_moves_to_the_int8_model_resuming_after_a_crash() {
    let dir = temp_dir();
    let data = dir.path().join("node");
    let state = dir.path().join("client-state.json");
    let mut node = Node::start(&data).expect("node");

    // 1,000 memories, embedded by the node's fp32 model.
    let lines: String = (0..N)
        .map(|i| format!("{}\n", serde_json::json!({ "text": text(i) })))
        .collect();
    let file = dir.path().join("notes.jsonl");
    std::fs::write(&file, lines).expect("write import file");
    let o = node.cli(&["import", "--ns", NS, &file.to_string_lossy()]);
    assert!(o.status.success(), "import: {}", stderr(&o));

    let before_file = dir.path().join("before.proof");
    let before_path = before_file.to_string_lossy().into_owned();
    let q = "who is allergic to peanuts?";
    let before = recall(&node, &state, q, Some(&before_path));
    assert_eq!(before["verified"]["model"], FP32, "{before}");
    assert!(
        before["hits"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("peanuts"),
        "{before}"
    );
    let before_seq = before["verified"]["seq"].as_u64().expect("seq");

    // Refused with the right status and nothing changed: a malformed hash, a model not installed here.
    let o = node.cli(&["migrate", "--ns", NS, "--to-model", "abc"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a model hash"), "{}", stderr(&o));
    let o = node.cli(&["migrate", "--ns", NS, "--to-model", &"ab".repeat(32)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not installed"), "{}", stderr(&o));

    // Start the migration and kill the node (SIGKILL) once some memories are re-embedded.
    let mut child = Command::new(cairn_bin())
        .args([
            "--node",
            &node.url,
            "migrate",
            "--ns",
            NS,
            "--to-model",
            INT8,
        ])
        .env("CAIRN_TOKEN", node.token.as_deref().unwrap_or(""))
        .env("CAIRN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cairn migrate");
    let err = child.stderr.take().expect("stderr");
    let mut killed_at = None;
    for line in BufReader::new(err).lines().map_while(Result::ok) {
        // "migrating agents/notes: D/T memories"
        let done = line
            .strip_prefix(&format!("migrating {NS}: "))
            .and_then(|r| r.split('/').next())
            .and_then(|d| d.parse::<u64>().ok());
        if let Some(d) = done.filter(|d| *d > 0) {
            node.kill9();
            killed_at = Some(d);
            break;
        }
    }
    let killed_at = killed_at.expect("the migration reported progress");
    assert!(killed_at < N as u64, "killed before the end ({killed_at})");
    let status = child.wait().expect("wait for cairn migrate");
    assert!(
        !status.success(),
        "the migration cannot succeed once its node is gone"
    );

    // Restarted, the node still serves the namespace with the old model, and the migration resumes.
    let node = Node::start(&data).expect("restart");
    let mid = recall(&node, &state, q, None);
    assert_eq!(mid["verified"]["model"], FP32, "{mid}");

    // A replica follows the namespace before the model changes.
    let rdata = dir.path().join("replica");
    let mut replica = Node::start(&rdata).expect("replica");
    introduce(&node, &replica);
    let o = replica.cli(&["follow", "--ns", NS, "--from", &node_id(&node)]);
    assert!(o.status.success(), "follow: {}", stderr(&o));
    let mid_seq = seq_of(&node, NS).await;
    let limit = std::time::Duration::from_secs(60);
    assert_eq!(
        wait_seq(&replica, NS, mid_seq, limit).await,
        mid_seq,
        "the replica caught up"
    );
    let rstate = dir.path().join("replica-client-state.json");
    let r = recall(&replica, &rstate, q, None);
    assert_eq!(r["verified"]["model"], FP32, "{r}");
    let o = node.cli(&["--json", "migrate", "--ns", NS, "--to-model", INT8]);
    assert!(o.status.success(), "migrate: {}", stderr(&o));
    let done: serde_json::Value = serde_json::from_slice(&o.stdout).expect("migrate JSON");
    assert_eq!(done["changed"], true, "{done}");
    assert_eq!(done["memories"], N as u64, "{done}");
    assert_eq!(done["model_hash"], INT8, "{done}");
    let resumed = done["resumed"].as_u64().expect("resumed");
    assert!(
        resumed >= killed_at,
        "resumed {resumed} of the {killed_at} embedded before the crash: {done}"
    );
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));
    let after_seq = done["seq"].as_u64().expect("seq");

    // The chain from the answer before to the root after verifies, and shows where the model changed.
    let client = node.client().await.expect("client");
    let mut chain = Vec::new();
    for seq in before_seq..=after_seq {
        let r = client.root(NS, Some(seq)).await.expect("root");
        chain.push(SignedRoot::decode(&r.signed).expect("signed root"));
    }
    let owner = chain[0].record.node_id;
    verify_chain(&chain, &owner, NS, None).expect("the chain verifies across the model change");
    let models: Vec<String> = chain.iter().map(|r| hex::encode(r.record.model)).collect();
    assert_eq!(models.first().map(String::as_str), Some(FP32));
    assert_eq!(models.last().map(String::as_str), Some(INT8));
    assert_eq!(
        models.windows(2).filter(|w| w[0] != w[1]).count(),
        1,
        "one model change: {models:?}"
    );

    // After: recall verifies (linking from the last root this client saw) under the int8 model, and its query
    // is bound by the int8 model's embedding.
    let after = recall(&node, &state, q, None);
    assert_eq!(after["verified"]["model"], INT8, "{after}");
    assert_eq!(after["verified"]["query_bound"], true, "{after}");
    assert!(
        after["hits"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("peanuts"),
        "{after}"
    );

    // The proof saved before still verifies against its own root, its query bound by the fp32 model.
    let id = stdout(&node.cli(&["id"])).trim().to_owned();
    let o = node.cli(&[
        "--json",
        "verify",
        &before_path,
        "--trust",
        &id,
        "--check-query",
        q,
    ]);
    assert!(o.status.success(), "verify before: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("verify JSON");
    assert_eq!(v["verified"]["model"], FP32, "{v}");

    // The replica follows across the change: its answers verify under the int8 model, its queries embedded
    // with it, also after it restarts.
    assert!(
        wait_seq(&replica, NS, after_seq, limit).await >= after_seq,
        "the replica followed the change"
    );
    let r = recall(&replica, &rstate, q, None);
    assert_eq!(r["verified"]["model"], INT8, "{r}");
    assert_eq!(r["verified"]["query_bound"], true, "{r}");
    assert!(
        r["hits"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("peanuts"),
        "{r}"
    );
    replica.stop();
    let replica = Node::start(&rdata).expect("replica restart");
    let r = recall(&replica, &rstate, q, None);
    assert_eq!(r["verified"]["model"], INT8, "{r}");

    // New writes are embedded with the int8 model; the namespace lists it.
    let o = node.cli(&["remember", "--ns", NS, "Hana keeps the spare office key"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let found = recall(&node, &state, "who has the spare office key?", None);
    assert_eq!(found["verified"]["model"], INT8);
    assert!(
        found["hits"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("Hana"),
        "{found}"
    );
    // A namespace created for the int8 model from the start answers under it.
    let created = node.cli_json(&["create-namespace", "--ns", "agents/int8", "--model", INT8]);
    assert_eq!(created["created"], true, "{created}");
    assert_eq!(
        created["seq"], 1,
        "the first root is signed at creation: {created}"
    );
    let o = node.cli(&[
        "remember",
        "--ns",
        "agents/int8",
        "Ines waters the office plants on Fridays",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = node.cli_with_state(
        &state,
        &[
            "--json",
            "recall",
            "--ns",
            "agents/int8",
            "--check-query",
            "who waters the plants?",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("recall JSON");
    assert_eq!(r["verified"]["model"], INT8, "{r}");

    let listed = node.cli_json(&["namespaces"]);
    let row = listed["namespaces"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["namespace"] == NS).cloned())
        .expect("listed");
    assert_eq!(row["model"], done["model"], "{row}");
}
