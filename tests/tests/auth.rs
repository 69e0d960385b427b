//! Who may ask: a real node checks a capability token on every call. Without one every data and admin call is
//! UNAUTHENTICATED; with one, each (right × inside / outside its prefix) is allowed or denied exactly as the
//! rights table says; attenuated tokens are made offline, cannot widen and expire; revoked tokens stop at once
//! and stay stopped across a restart. TLS with a pinned certificate works, a wrong pin fails, and a node refuses
//! a non-loopback address without TLS.

use std::time::Duration;

use cairn_client::{CairnClient, Error, NewMemory};
use cairn_proto::v1 as pb;
use cairn_tests::{raw_unary_token, temp_dir, Node};
use tonic::Code;

/// Every RPC of the service, as a path for hand-made calls.
const METHODS: &[&str] = &[
    "/cairn.v1.Cairn/Remember",
    "/cairn.v1.Cairn/Recall",
    "/cairn.v1.Cairn/Get",
    "/cairn.v1.Cairn/List",
    "/cairn.v1.Cairn/Forget",
    "/cairn.v1.Cairn/Embed",
    "/cairn.v1.Cairn/Stats",
    "/cairn.v1.Cairn/ListNamespaces",
    "/cairn.v1.Cairn/GetRoot",
    "/cairn.v1.Cairn/WatchRoots",
    "/cairn.v1.Cairn/NodeInfo",
    "/cairn.v1.Cairn/AddPeer",
    "/cairn.v1.Cairn/ListPeers",
    "/cairn.v1.Cairn/Follow",
    "/cairn.v1.Cairn/Alerts",
    "/cairn.v1.Cairn/Snapshot",
    "/cairn.v1.Cairn/RemovePeer",
    "/cairn.v1.Cairn/Unfollow",
    "/cairn.v1.Cairn/MintToken",
    "/cairn.v1.Cairn/RevokeToken",
    "/cairn.v1.Cairn/Share",
    "/cairn.v1.Cairn/Unshare",
    "/cairn.v1.Cairn/ListShares",
    "/cairn.v1.Cairn/Migrate",
];

const INSIDE: &str = "team/a";
const OUTSIDE: &str = "other";
const NOBODY: &str = "0000000000000000000000000000000000000000000000000000000000000001";

fn code(r: Result<(), Error>) -> Code {
    match r {
        Ok(()) => Code::Ok,
        Err(e) => e.code().unwrap_or(Code::Unknown),
    }
}

/// One call per row of the rights table that takes a namespace, made so that passing the check changes nothing
/// that matters (ids that do not exist, an invalid owner, a namespace that is not a replica).
async fn namespaced(c: &CairnClient, op: &str, ns: &str) -> Code {
    let r: Result<(), Error> = match op {
        "Remember" => c
            .remember(ns, vec![NewMemory::new(format!("auth probe for {ns}"))])
            .await
            .map(drop),
        "Recall" => c.recall(ns, "probe").k(1).send().await.map(drop),
        "Get" => c.get(ns, vec![NOBODY.into()]).await.map(drop),
        "List" => c.list(ns, Default::default()).await.map(drop),
        "Forget" => c.forget(ns, vec![NOBODY.into()]).await.map(drop),
        "GetRoot" => c.root(ns, None).await.map(drop),
        "WatchRoots" => c.watch_roots(ns).await.map(drop),
        "Snapshot" => c.snapshot(ns, 64 << 20).await.map(drop),
        // An owner id that is not a key: refused as INVALID_ARGUMENT once the right is there.
        "Follow" => c.follow(ns, &"f".repeat(64)).await,
        // Not a replica: FAILED_PRECONDITION once the right is there.
        "Unfollow" => c.unfollow(ns).await.map(drop),
        "MintToken" => c.mint_token(&[ns], &["read"], Some(60)).await.map(drop),
        // A key that is not a valid node id: INVALID_ARGUMENT once the right is there.
        "Share" => c.share(ns, &"f".repeat(64), true).await.map(drop),
        "Unshare" => c.share(ns, NOBODY, false).await.map(drop),
        // A model not installed: the stream ends with FAILED_PRECONDITION once the right is there.
        "Migrate" => c.migrate(ns, &"ab".repeat(32)).await.map(drop),
        other => panic!("no probe for {other}"),
    };
    code(r)
}

/// The node-wide admin calls, made harmlessly.
async fn node_wide(c: &CairnClient, op: &str) -> Code {
    let r: Result<(), Error> = match op {
        "AddPeer" => c.add_peer("not a ticket").await.map(drop),
        "ListPeers" => c.peers().await.map(drop),
        "RemovePeer" => c.remove_peer(NOBODY).await.map(drop),
        "RevokeToken" => c.revoke_token("00").await,
        "Alerts" => c.alerts().await.map(drop),
        other => panic!("no probe for {other}"),
    };
    code(r)
}

fn denied(c: Code) -> bool {
    matches!(c, Code::PermissionDenied | Code::Unauthenticated)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_gate_every_call() {
    let dir = temp_dir();
    let mut node = Node::start(dir.path()).expect("node");
    let admin = node.client().await.expect("admin client");
    admin
        .remember(INSIDE, vec![NewMemory::new("Inside the team prefix.")])
        .await
        .expect("seed inside");
    admin
        .remember(OUTSIDE, vec![NewMemory::new("Outside the team prefix.")])
        .await
        .expect("seed outside");

    // No token, or a forged one: every call but NodeInfo is UNAUTHENTICATED.
    let forged = {
        let other = temp_dir();
        let mut n = Node::start(other.path()).expect("second node");
        let t = n.token.clone().expect("token");
        n.stop();
        t
    };
    for token in [None, Some("garbage"), Some(forged.as_str())] {
        for m in METHODS {
            let (c, msg) = raw_unary_token(&node.url, token, m, Vec::new()).await;
            if m.ends_with("/NodeInfo") {
                assert_eq!(c, 0, "{m} is open: {msg}");
            } else {
                assert_eq!(c, Code::Unauthenticated as i32, "{m} with {token:?}: {msg}");
            }
        }
    }

    // Tokens with one right on the `team` prefix: each call is allowed iff the right is the one the table says
    // and the namespace is inside the prefix.
    let table: &[(&str, &str)] = &[
        ("Remember", "write"),
        ("Recall", "read"),
        ("Get", "read"),
        ("List", "read"),
        ("Forget", "forget"),
        ("GetRoot", "read"),
        ("WatchRoots", "read"),
        ("Snapshot", "admin"),
        ("Follow", "admin"),
        ("Unfollow", "admin"),
        ("MintToken", "admin"),
        ("Share", "admin"),
        ("Unshare", "admin"),
        ("Migrate", "admin"),
    ];
    for right in ["read", "write", "forget", "admin"] {
        let t = admin
            .mint_token(&["team"], &[right], None)
            .await
            .expect("mint")
            .token;
        let c = node.client_with(Some(&t)).await.expect("client");
        for (op, needs) in table {
            for ns in [INSIDE, OUTSIDE] {
                let got = namespaced(&c, op, ns).await;
                if *needs == right && ns == INSIDE {
                    assert!(!denied(got), "{right} token, {op} on {ns}: {got:?}");
                } else {
                    assert_eq!(got, Code::PermissionDenied, "{right} token, {op} on {ns}");
                }
            }
        }
        // Node-wide admin calls need admin on every namespace, which a `team` token never has.
        for op in [
            "AddPeer",
            "ListPeers",
            "RemovePeer",
            "RevokeToken",
            "Alerts",
        ] {
            assert_eq!(
                node_wide(&c, op).await,
                Code::PermissionDenied,
                "{right} token, {op}"
            );
        }
        // Embed touches no namespace: any valid token may use it.
        assert!(
            c.embed(vec!["probe".into()]).await.is_ok(),
            "{right} token, Embed"
        );
        // Lists show only what the token covers.
        let names: Vec<String> = c
            .list_namespaces()
            .await
            .expect("list namespaces")
            .into_iter()
            .map(|n| n.namespace)
            .collect();
        assert_eq!(names, vec![INSIDE.to_owned()], "{right} token");
        let stats = c.stats(None).await.expect("stats");
        let seen: Vec<&str> = stats
            .namespaces
            .iter()
            .map(|s| s.namespace.as_str())
            .collect();
        if right == "read" {
            assert_eq!(seen, vec![INSIDE], "stats with a read token");
        } else {
            assert!(seen.is_empty(), "stats with a {right} token shows {seen:?}");
        }
    }
    // The admin token can do the node-wide calls.
    for op in [
        "AddPeer",
        "ListPeers",
        "RemovePeer",
        "RevokeToken",
        "Alerts",
    ] {
        assert!(!denied(node_wide(&admin, op).await), "admin token, {op}");
    }
    let all: Vec<String> = admin
        .list_namespaces()
        .await
        .expect("list")
        .into_iter()
        .map(|n| n.namespace)
        .collect();
    assert!(all.contains(&OUTSIDE.to_owned()) && all.contains(&INSIDE.to_owned()));

    // Attenuation is offline: the CLI narrows a token without reaching any node (port 9 is closed).
    let read_write = admin
        .mint_token(&["team"], &["read", "write"], None)
        .await
        .expect("mint")
        .token;
    let attenuate = |token: &str, ns: &str, rights: &str, ttl: &str| {
        let mut args = vec![
            "--node",
            "http://127.0.0.1:9",
            "token",
            "attenuate",
            token,
            "--ns",
            ns,
            "--rights",
            rights,
        ];
        if !ttl.is_empty() {
            args.extend(["--ttl", ttl]);
        }
        let out = std::process::Command::new(cairn_tests::cairn_bin())
            .args(&args)
            .env_remove("CAIRN_TOKEN")
            .output()
            .expect("run cairn");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let narrow = attenuate(&read_write, INSIDE, "read", "3s");
    let c = node.client_with(Some(&narrow)).await.expect("client");
    assert!(!denied(namespaced(&c, "Recall", INSIDE).await));
    assert_eq!(
        namespaced(&c, "Remember", INSIDE).await,
        Code::PermissionDenied
    );
    assert_eq!(
        namespaced(&c, "Recall", "team/b").await,
        Code::PermissionDenied
    );
    // Asking for more than the token holds gives nothing more.
    let wider = attenuate(&narrow, "", "read,write,admin", "");
    let w = node.client_with(Some(&wider)).await.expect("client");
    assert_eq!(
        namespaced(&w, "Remember", INSIDE).await,
        Code::PermissionDenied
    );
    assert_eq!(
        namespaced(&w, "Recall", "team/b").await,
        Code::PermissionDenied
    );
    assert_eq!(node_wide(&w, "ListPeers").await, Code::PermissionDenied);
    assert!(!denied(namespaced(&w, "Recall", INSIDE).await));
    // It expires (token times have one-second resolution).
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(
        namespaced(&c, "Recall", INSIDE).await,
        Code::Unauthenticated
    );
    assert_eq!(
        namespaced(&w, "Recall", INSIDE).await,
        Code::Unauthenticated
    );
    // The token it came from still works.
    let rw = node.client_with(Some(&read_write)).await.expect("client");
    assert!(!denied(namespaced(&rw, "Recall", INSIDE).await));

    // Revocation: by the id `cairn token inspect` prints, at once, for the token and every token made from it.
    let child = attenuate(&read_write, INSIDE, "read", "");
    let out = node.cli_json(&["token", "inspect", &read_write]);
    let id = out["revocation_ids"][0].as_str().expect("id").to_owned();
    let out = node.cli(&["token", "revoke", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in [&read_write, &child] {
        let c = node.client_with(Some(t)).await.expect("client");
        assert_eq!(
            namespaced(&c, "Recall", INSIDE).await,
            Code::Unauthenticated
        );
    }
    // ... and across a restart.
    node.stop();
    let node = Node::start(dir.path()).expect("restart");
    let c = node.client_with(Some(&read_write)).await.expect("client");
    assert_eq!(
        namespaced(&c, "Recall", INSIDE).await,
        Code::Unauthenticated
    );
    let admin = node.client().await.expect("admin");
    assert!(!denied(namespaced(&admin, "Recall", INSIDE).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_pinned_certificate() {
    let dir = temp_dir();
    let node = Node::start_with(dir.path(), &["--tls"]).expect("node");
    let fp = node.tls_fingerprint.clone().expect("fingerprint printed");
    assert!(node.url.starts_with("https://"));
    let c = node.client().await.expect("pinned client");
    c.remember("tls", vec![NewMemory::new("Sent over TLS.")])
        .await
        .expect("remember over TLS");

    // A wrong pin fails, whichever way it is given.
    let mut wrong = fp.clone().into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).expect("hex");
    let bad = async {
        CairnClient::builder(node.url.clone())
            .maybe_token(node.token.clone())
            .tls_pin(&wrong)?
            .connect()
            .await?
            .stats(None)
            .await
    }
    .await;
    assert!(bad.is_err(), "a wrong pin must fail");
    let out = std::process::Command::new(cairn_tests::cairn_bin())
        .args(["--node", &node.url, "--tls-pin", &wrong, "stats"])
        .env("CAIRN_TOKEN", node.token.as_deref().unwrap_or(""))
        .output()
        .expect("cli");
    assert!(!out.status.success(), "the CLI must refuse a wrong pin");
    // Plain HTTP/2 to a TLS port gets nowhere.
    let plain = node.url.replace("https://", "http://");
    let r = async { CairnClient::connect(plain).await?.node_info().await }.await;
    assert!(r.is_err(), "plain HTTP/2 must not be served on a TLS port");
    // The CLI pins on first contact and then holds the node to it.
    let state = dir.path().join("client-state.json");
    let run = |args: &[&str]| {
        std::process::Command::new(cairn_tests::cairn_bin())
            .arg("--node")
            .arg(&node.url)
            .args(args)
            .env("CAIRN_STATE", &state)
            .env("CAIRN_TOKEN", node.token.as_deref().unwrap_or(""))
            .env_remove("CAIRN_TLS_PIN")
            .output()
            .expect("cli")
    };
    let first = run(&["recall", "--ns", "tls", "TLS"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stderr).contains(&fp));
    assert!(String::from_utf8_lossy(&first.stdout).contains("Sent over TLS."));
    let pinned = std::fs::read_to_string(&state).expect("state");
    assert!(pinned.contains(&fp));
}

#[test]
fn non_loopback_without_tls_refuses_to_start() {
    let dir = temp_dir();
    // Refused before anything binds.
    for extra in [&[][..], &["--tls", "--no-auth"][..]] {
        let out = std::process::Command::new(cairn_tests::cairn_bin())
            .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .env("CAIRN_LOG", "warn")
            .output()
            .expect("run");
        assert!(!out.status.success(), "{extra:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("refusing to listen"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn node_info_is_open_but_reveals_no_namespace() {
    let dir = temp_dir();
    let node = Node::start(dir.path()).expect("node");
    let anon = CairnClient::connect(node.url.clone())
        .await
        .expect("connect");
    let info = anon.node_info().await.expect("node info is open");
    assert_eq!(info.node_id.len(), 64);
    let e = anon
        .list_namespaces()
        .await
        .expect_err("namespaces need a token");
    assert_eq!(e.code(), Some(Code::Unauthenticated));
    let _ = pb::NodeInfoRequest {};
}
