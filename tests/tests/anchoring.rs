//! Roots anchored on a chain, end to end: a local development chain (ganache, from the npm registry, on loopback),
//! the anchor contract compiled from `server/contracts/CairnAnchor.sol` with solc from the npm registry
//! (`scripts/chain-setup`), deployed and used by the real `cairn` CLI against a real node.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cairn_tests::{cairn_bin, repo_dir, temp_dir, Node};

/// Secret keys of ganache's first two deterministic accounts (`--wallet.deterministic`), funded on start.
const KEY_A: &str = "4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d";
const KEY_B: &str = "6cbed15c793ce57650b9877cf6fa156fbef513c4e6134f022a85b1ffdd59b2a1";
const KEY_C: &str = "6370fd033278c143179d81c5526140625662b8daa446c22ee2d73db3707e620c";

/// A local chain that stops with the test.
struct Chain {
    child: Child,
    rpc: String,
}

impl Drop for Chain {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `scripts/chain-setup`: (ganache CLI, contract bytecode file).
fn chain_setup() -> (PathBuf, PathBuf) {
    let out = Command::new("bash")
        .arg(repo_dir().join("scripts/chain-setup"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/chain-setup");
    assert!(out.status.success(), "scripts/chain-setup failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("chain-setup printed no {k}: {text}"))
    };
    (get("CAIRN_GANACHE"), get("CAIRN_ANCHOR_BYTECODE"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Starts ganache on loopback and waits (bounded) until its port accepts connections.
fn start_chain(ganache: &Path) -> Chain {
    let port = free_port();
    let child = Command::new(ganache)
        .args([
            "--server.host",
            "127.0.0.1",
            "--server.port",
            &port.to_string(),
            "--wallet.deterministic",
            "--logging.quiet",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ganache");
    let chain = Chain {
        child,
        rpc: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..120 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return chain;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("ganache did not listen on {port} within 30 s");
}

/// Runs `cairn --json <args>` against `node` with its own trust state; returns (ok, JSON stdout, stderr).
fn run(node: &Node, state: &Path, args: &[&str]) -> (bool, serde_json::Value, String) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = node.cli_with_state(state, &all);
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchored_roots_pass_and_forks_of_an_anchored_seq_fail() {
    let (ganache, bytecode) = chain_setup();
    let chain = start_chain(&ganache);
    let dir = temp_dir();
    let key_a = dir.path().join("a.key");
    let key_b = dir.path().join("b.key");
    std::fs::write(&key_a, KEY_A).expect("key");
    std::fs::write(&key_b, KEY_B).expect("key");
    let state = dir.path().join("roots.json");

    // Deploy the contract with the CLI.
    let out = Command::new(cairn_bin())
        .args(["--json", "anchor", "deploy", "--rpc", &chain.rpc, "--key"])
        .arg(&key_a)
        .arg("--bytecode")
        .arg(&bytecode)
        .env("CAIRN_LOG", "warn")
        .output()
        .expect("deploy");
    assert!(
        out.status.success(),
        "deploy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deployed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let contract = deployed["contract"].as_str().expect("address").to_owned();
    let anchored = format!("{},{contract}", chain.rpc);
    let ka = key_a.to_str().expect("utf-8");
    let kb = key_b.to_str().expect("utf-8");
    let anchor_args = |key: &'static str| -> Vec<String> {
        let k = if key == "a" { ka } else { kb };
        [
            "anchor",
            "--ns",
            "anch",
            "--rpc",
            &chain.rpc,
            "--contract",
            &contract,
            "--key",
            k,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let anchor = |node: &Node, key: &'static str, extra: &[&str]| {
        let mut a = anchor_args(key);
        a.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        run(node, &state, &a)
    };

    let data = dir.path().join("node");
    let node = Node::start(&data).expect("node");
    for t in [
        "Maria moved to Porto in March",
        "the invoice for the boat is due on Friday",
        "Tom's favourite tea is lapsang souchong",
    ] {
        node.cli_json(&["remember", "--ns", "anch", t]);
    }
    let recall = |extra: &[&str]| {
        let mut a = vec![
            "recall",
            "--ns",
            "anch",
            "who moved to Porto",
            "--verify",
            "--anchored",
            &anchored,
        ];
        a.extend_from_slice(extra);
        run(&node, &state, &a)
    };

    // A chain endpoint that accepts connections and never answers: the check gives up at --anchored-timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_at = format!("http://{},{contract}", silent.local_addr().expect("addr"));
    // In a thread with a bounded wait, so a check without its deadline fails here instead of hanging the test.
    let t0 = std::time::Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let (url, state, silent_at) = (node.url.clone(), state.clone(), silent_at.clone());
        let token = node.token.clone();
        std::thread::spawn(move || {
            let mut cmd = Command::new(cairn_bin());
            cmd.args([
                "--json",
                "--node",
                &url,
                "recall",
                "--ns",
                "anch",
                "who moved to Porto",
            ])
            .args([
                "--verify",
                "--anchored",
                &silent_at,
                "--anchored-timeout",
                "1s",
            ])
            .env("CAIRN_STATE", &state)
            .env("CAIRN_LOG", "warn")
            .stdin(Stdio::null());
            if let Some(t) = token {
                cmd.env("CAIRN_TOKEN", t);
            }
            let _ = tx.send(cmd.output());
        });
    }
    let out = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("--anchored against a silent endpoint did not give up within 30 s")
        .expect("run cairn");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no answer within"),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    drop(silent);

    // An endpoint that answers with an endless list of logs: the check stops reading at --anchored-max-mb and
    // fails saying so, instead of holding the answer in memory. The endpoint stops by itself after 256 MiB.
    let flood = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let flood_at = format!("http://{},{contract}", flood.local_addr().expect("addr"));
    let flooded = std::thread::spawn(move || -> u64 {
        use std::io::{Read, Write};
        // A bounded wait for the one connection, so a client that never calls cannot hang the test.
        let _ = flood.set_nonblocking(true);
        let t0 = std::time::Instant::now();
        let mut conn = loop {
            match flood.accept() {
                Ok((c, _)) => break c,
                Err(_) if t0.elapsed() < Duration::from_secs(60) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(_) => return 0,
            }
        };
        let _ = conn.set_nonblocking(false);
        let mut req = [0u8; 4096];
        let _ = conn.read(&mut req);
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
        if conn
            .write_all(format!("{head}{{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":[").as_bytes())
            .is_err()
        {
            return 0;
        }
        let log = format!(
            "{{\"address\":\"{}\",\"topics\":[],\"data\":\"0x\"}},",
            "0x".to_owned() + &"ab".repeat(20)
        );
        let piece = log.repeat(1 + (64 << 10) / log.len());
        let mut sent = 0u64;
        while sent < 256 << 20 {
            if conn.write_all(piece.as_bytes()).is_err() {
                break;
            }
            sent += piece.len() as u64;
        }
        sent
    });
    let (ok, _, err) = run(
        &node,
        &state,
        &[
            "recall",
            "--ns",
            "anch",
            "who moved to Porto",
            "--verify",
            "--anchored",
            &flood_at,
            "--anchored-max-mb",
            "1",
        ],
    );
    assert!(!ok && err.contains("--anchored-max-mb"), "{err}");
    let sent = flooded.join().expect("flood thread");
    assert!(
        sent < 256 << 20,
        "the client read the whole flood ({sent} bytes)"
    );

    // Nothing anchored yet: an anchored recall fails.
    let (ok, _, err) = recall(&[]);
    assert!(!ok, "an unanchored root passed --anchored");
    assert!(err.contains("no anchor"), "{err}");

    // Anchor seq 3; the same seq again, and a lower one, are refused by the contract.
    let (ok, a3, err) = anchor(&node, "a", &[]);
    assert!(ok, "anchor: {err}");
    assert_eq!(a3["seq"], 3);
    let gas = a3["gas_used"].as_u64().expect("gas");
    assert!(gas > 21_000 && gas < 200_000, "gas {gas}");
    let (ok, _, err) = anchor(&node, "a", &[]);
    assert!(!ok && err.contains("refused seq 3"), "equal seq: {err}");
    let (ok, _, err) = anchor(&node, "a", &["--seq", "2"]);
    assert!(!ok && err.contains("refused seq 2"), "lower seq: {err}");

    // The anchored root passes; so do later roots that descend from it.
    let (ok, r, err) = recall(&[]);
    assert!(ok, "anchored recall: {err}");
    assert_eq!(r["verified"]["anchored"]["anchor_seq"], 3, "{r}");
    node.cli_json(&["remember", "--ns", "anch", "Ana plays the cello on Sundays"]);
    node.cli_json(&[
        "remember",
        "--ns",
        "anch",
        "the cello lessons cost 40 euros",
    ]);
    let (ok, r, err) = recall(&[]);
    assert!(ok, "descendant recall: {err}");
    assert_eq!(r["verified"]["seq"], 5, "{r}");
    assert_eq!(r["verified"]["anchored"]["anchor_seq"], 3, "{r}");
    // Get and List take --anchored too, and a saved proof verifies against the chain with `cairn verify`.
    let (ok, l, err) = run(
        &node,
        &state,
        &["list", "--ns", "anch", "--verify", "--anchored", &anchored],
    );
    assert!(ok, "anchored list: {err}");
    assert_eq!(l["verified"]["anchored"]["anchor_seq"], 3, "{l}");
    let pf = dir.path().join("answer.proof");
    let pf_s = pf.to_str().expect("utf-8");
    let (ok, _, err) = recall(&["--proof-out", pf_s]);
    assert!(ok, "{err}");
    let (ok, v, err) = run(&node, &state, &["verify", pf_s, "--anchored", &anchored]);
    assert!(ok, "cairn verify --anchored: {err}");
    assert_eq!(v["verified"]["anchored"]["anchor_seq"], 3, "{v}");

    // Anchors are searched from --anchored-from-block on: from the anchor's own block it is found, from a later
    // block it is not.
    let block = a3["block"].as_u64().expect("block").to_string();
    let (ok, r, err) = recall(&["--anchored-from-block", &block]);
    assert!(ok, "from the anchor's block: {err}");
    assert_eq!(r["verified"]["anchored"]["anchor_seq"], 3, "{r}");
    let later = (a3["block"].as_u64().expect("block") + 1_000).to_string();
    let (ok, _, err) = recall(&["--anchored-from-block", &later]);
    assert!(
        !ok,
        "an anchor before --anchored-from-block was seen: {err}"
    );

    // Too old for the caller's limit.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (ok, _, err) = recall(&["--anchored-max-age", "1s"]);
    assert!(!ok && err.contains("old"), "stale anchor passed: {err}");

    // A second submitter's anchor of another root counts the same way (anyone may anchor the owner's roots).
    let (ok, a5, err) = anchor(&node, "b", &[]);
    assert!(ok, "anchor by b: {err}");
    assert_eq!(a5["seq"], 5);
    let (ok, r, err) = recall(&[]);
    assert!(ok, "{err}");
    assert_eq!(r["verified"]["anchored"]["anchor_seq"], 5, "{r}");

    // Anchors whose record does not verify under the owner's key do not count: a stranger's key signs a root
    // claiming seq 6 for this namespace and anchors it.
    let owner_key: [u8; 32] = std::fs::read(data.join("node.key"))
        .expect("node key")
        .try_into()
        .expect("32 bytes");
    let owner_key = ed25519_dalek::SigningKey::from_bytes(&owner_key);
    let sdk = node.client().await.expect("client");
    let root_now = || async {
        let r = sdk.root("anch", None).await.expect("root");
        cairn_index::root::SignedRoot::decode(&r.signed).expect("signed root")
    };
    let honest = root_now().await;
    assert_eq!(honest.record.seq, 5);
    let target = cairn_client::anchor::Target::new(&chain.rpc, &contract).expect("target");
    let signer = cairn_client::anchor::load_key(&key_b).expect("key");
    let mut forged = honest.record.clone();
    forged.seq = 6;
    forged.prev = honest.record.hash();
    forged.graph_root = [0xee; 32];
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[0x5a; 32]);
    let by_stranger = cairn_index::root::SignedRoot::sign(forged.clone(), &stranger);
    cairn_client::anchor::submit(&target, &signer, &by_stranger)
        .await
        .expect("anchor by a stranger");
    node.cli_json(&["remember", "--ns", "anch", "Maria's sister lives in Braga"]);
    let (ok, r, err) = recall(&[]);
    assert!(ok, "a stranger's anchor must not count: {err}");
    assert_eq!(r["verified"]["seq"], 6, "{r}");
    assert_eq!(r["verified"]["anchored"]["anchor_seq"], 5, "{r}");

    // The owner shows the chain another history: a seq-7 root signed with the owner's key is anchored, and the
    // node then serves its own (different) seq 7. The anchored recall fails; the plain verified one still passes.
    let real6 = root_now().await;
    assert_eq!(real6.record.seq, 6);
    let mut fork = real6.record.clone();
    fork.seq = 7;
    fork.prev = real6.record.hash();
    fork.graph_root = [0xdd; 32];
    let fork = cairn_index::root::SignedRoot::sign(fork, &owner_key);
    cairn_client::anchor::submit(&target, &signer, &fork)
        .await
        .expect("anchor the fork");
    node.cli_json(&["remember", "--ns", "anch", "the boat is called Gaivota"]);
    let (ok, _, err) = recall(&[]);
    assert!(!ok, "a fork of an anchored seq passed --anchored");
    assert!(err.contains("not on the anchored history"), "{err}");
    let (ok, _, err) = run(
        &node,
        &state,
        &["recall", "--ns", "anch", "who moved to Porto", "--verify"],
    );
    assert!(ok, "plain --verify: {err}");

    // A node that anchors its own namespaces while serving, every 2 roots: nobody runs `cairn anchor`, and its
    // answers pass --anchored once the second root is anchored.
    let key_c = dir.path().join("c.key");
    std::fs::write(&key_c, KEY_C).expect("key");
    let auto = Node::start_with(
        &dir.path().join("auto"),
        &[
            "--anchor-to",
            &anchored,
            "--anchor-key",
            key_c.to_str().expect("utf-8"),
            "--anchor-every",
            "2",
        ],
    )
    .expect("auto-anchoring node");
    let state_c = dir.path().join("roots-c.json");
    auto.cli_json(&["remember", "--ns", "auto", "Lena keeps bees in Coimbra"]);
    let (ok, _, err) = run(
        &auto,
        &state_c,
        &[
            "recall",
            "--ns",
            "auto",
            "bees",
            "--verify",
            "--anchored",
            &anchored,
        ],
    );
    assert!(
        !ok && err.contains("no anchor"),
        "seq 1 must not be anchored yet: {err}"
    );
    auto.cli_json(&["remember", "--ns", "auto", "the hives are moved in May"]);
    let r = until_anchored(&auto, &state_c, "auto", &anchored).await;
    assert_eq!(r["verified"]["anchored"]["anchor_seq"], 2, "{r}");
    drop(auto);

    // By time instead (--anchor-interval, no count): the first root is anchored once the interval has passed.
    let timed = Node::start_with(
        &dir.path().join("timed"),
        &[
            "--anchor-to",
            &anchored,
            "--anchor-key",
            key_c.to_str().expect("utf-8"),
            "--anchor-interval",
            "1s",
        ],
    )
    .expect("node anchoring by time");
    let state_t = dir.path().join("roots-t.json");
    timed.cli_json(&["remember", "--ns", "auto", "Lena keeps bees in Coimbra"]);
    let r = until_anchored(&timed, &state_t, "auto", &anchored).await;
    assert_eq!(r["verified"]["anchored"]["anchor_seq"], 1, "{r}");
    drop(chain);
}

/// Polls (bounded: 60 tries, 30 s) a verified `--anchored` recall of "bees" in `ns` until it passes; panics with
/// the last refusal otherwise.
async fn until_anchored(node: &Node, state: &Path, ns: &str, anchored: &str) -> serde_json::Value {
    let mut last = String::new();
    for _ in 0..60 {
        let (ok, r, err) = run(
            node,
            state,
            &[
                "recall",
                "--ns",
                ns,
                "bees",
                "--verify",
                "--anchored",
                anchored,
            ],
        );
        if ok {
            return r;
        }
        last = err;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the node did not anchor within 30 s: {last}")
}
