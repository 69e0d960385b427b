//! Replication is private: a peer the owner did not share a namespace with gets nothing over `cairn/sync/1`
//! or iroh-blobs, not even a record whose hash it knows; with a grant it replicates and verifies as before;
//! unshare stops it; and a replica re-serves the namespace only to peers the owner's signed grant set names.

use std::time::Duration;

use cairn_client::NewMemory;
use cairn_tests::{fetch_blob_as, node_id, seq_of, temp_dir, ticket, wait_seq, Node, FACTS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_granted_peers_get_a_namespace() {
    let (da, db) = (temp_dir(), temp_dir());
    let a = Node::start(da.path()).expect("start A");
    let b = Node::start(db.path()).expect("start B");
    // Peers, but no grant.
    for (n, other) in [(&a, &b), (&b, &a)] {
        let o = n.cli(&["peer", "add", &ticket(other)]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (a_id, b_id) = (node_id(&a), node_id(&b));
    let ca = a.client().await.expect("client A");
    let items: Vec<NewMemory> = FACTS.iter().map(|t| NewMemory::new(*t)).collect();
    let ids: Vec<String> = ca
        .remember("private/team", items)
        .await
        .expect("remember")
        .into_iter()
        .map(|r| r.id)
        .collect();
    let a_seq = ca.root("private/team", None).await.expect("root").seq;
    let mut known = [0u8; 32];
    hex::decode_to_slice(&ids[0], &mut known).expect("id");

    // A stranger that knows a record's hash gets nothing from the blob server.
    let stranger = [77u8; 32];
    let got = fetch_blob_as(&ticket(&a), stranger, known).await;
    assert!(got.is_err(), "a stranger fetched a record: {got:?}");
    // B follows without a grant: nothing arrives.
    let o = b.cli(&["follow", "--ns", "private/team", "--from", &a_id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        seq_of(&b, "private/team").await,
        0,
        "B replicated without a grant"
    );

    // With a grant, B replicates and its reads verify against A's key.
    let o = a.cli(&["share", "--ns", "private", "--with", &b_id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        wait_seq(&b, "private/team", a_seq, Duration::from_secs(30)).await,
        a_seq
    );
    let state = db.path().join("client-state.json");
    let o = b.cli_with_state(
        &state,
        &[
            "recall",
            "--ns",
            "private/team",
            "--verify",
            "--trust",
            &a_id,
            "dog",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Biscuit"));
    let shares = a.cli_json(&["shares"]);
    assert_eq!(shares["grants"][0]["node_id"].as_str(), Some(b_id.as_str()));
    // The gate is the grant: the stranger, once granted, gets the record; the hash is not the secret.
    let stranger_id = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&stranger)
            .verifying_key()
            .to_bytes(),
    );
    let o = a.cli(&["share", "--ns", "private/team", "--with", &stranger_id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = fetch_blob_as(&ticket(&a), stranger, known)
        .await
        .expect("granted fetch");
    assert_eq!(blake3::hash(&bytes).as_bytes(), &known);
    // Unshare: the owner refuses at once.
    let o = a.cli(&["unshare", "--ns", "private/team", "--with", &stranger_id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(fetch_blob_as(&ticket(&a), stranger, known).await.is_err());

    // A replica re-serves only to peers the owner's grant set names. C can reach B but not A.
    let dc = temp_dir();
    let c = Node::start(dc.path()).expect("start C");
    let c_id = node_id(&c);
    for (n, other) in [(&c, &b), (&b, &c)] {
        let o = n.cli(&["peer", "add", &ticket(other)]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // B's own operator sharing with C does not matter: the owner's grant decides.
    let o = b.cli(&["share", "--ns", "", "--with", &c_id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = c.cli(&["follow", "--ns", "private/team", "--from", &a_id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        seq_of(&c, "private/team").await,
        0,
        "B re-served without the owner's grant"
    );
    let o = a.cli(&["share", "--ns", "private/team", "--with", &c_id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        wait_seq(&c, "private/team", a_seq, Duration::from_secs(30)).await,
        a_seq,
        "B did not re-serve to a peer the owner granted"
    );
    let o = c.cli_with_state(
        &dc.path().join("client-state.json"),
        &[
            "recall",
            "--ns",
            "private/team",
            "--verify",
            "--trust",
            &a_id,
            "dog",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Unsharing C: B stops re-serving once it holds the owner's newer set, so A's next write reaches B, not C.
    let o = a.cli(&["unshare", "--ns", "private/team", "--with", &c_id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    tokio::time::sleep(Duration::from_secs(7)).await;
    ca.remember(
        "private/team",
        vec![NewMemory::new("Only for B from now on.")],
    )
    .await
    .expect("remember");
    let next = a_seq + 1;
    assert_eq!(
        wait_seq(&b, "private/team", next, Duration::from_secs(30)).await,
        next
    );
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        seq_of(&c, "private/team").await,
        a_seq,
        "C kept getting updates after unshare"
    );
    let a_seq = next;

    // Unsharing B stops its replication: a new write on A does not reach it.
    let o = a.cli(&["unshare", "--ns", "private", "--with", &b_id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ca.remember(
        "private/team",
        vec![NewMemory::new("Written after B lost its grant.")],
    )
    .await
    .expect("remember");
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        seq_of(&b, "private/team").await,
        a_seq,
        "B kept replicating after unshare"
    );
}
