//! Caller-chosen keys and the reads agent frameworks need (LangGraph's store): a key written again replaces its
//! memory in one commit (checked with a verified List and Get by key), List filtered by metadata, Recall across
//! a namespace prefix, and Recall with a filter but no query — against a real node with the real model.

use cairn_client::verify::{self as v, parse_node_id};
use cairn_client::{ListOptions, NewMemory};
use cairn_proto::v1 as pb;
use cairn_tests::{seq_of, temp_dir, Node};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_written_again_replaces_its_memory_in_one_commit() {
    let dir = temp_dir();
    let mut node = Node::start(dir.path()).expect("node");
    let c = node.client().await.expect("client");
    let trusted = parse_node_id(&c.node_info().await.expect("info").node_id).expect("node id");
    let ns = "agents/alice/prefs";

    let first = c
        .remember(
            ns,
            vec![
                NewMemory::new("Alice prefers green tea in the morning.").key("drink"),
                NewMemory::new("Alice lives in Lisbon.").key("home"),
                NewMemory::new("Alice met Bob at the climbing gym.").meta("kind", "event"),
            ],
        )
        .await
        .expect("remember");
    assert!(first
        .iter()
        .all(|r| !r.deduplicated && r.replaced.is_empty()));
    let seq_before = seq_of(&node, ns).await;

    // The same key with other content: the old memory is replaced under exactly one new root.
    let second = c
        .remember(
            ns,
            vec![NewMemory::new("Alice switched to black coffee.").key("drink")],
        )
        .await
        .expect("replace");
    assert_eq!(
        second[0].replaced, first[0].id,
        "the result names what it replaced"
    );
    assert_eq!(
        seq_of(&node, ns).await,
        seq_before + 1,
        "replacing is one commit"
    );

    // The same key with the same content is a duplicate, not a replacement.
    let again = c
        .remember(
            ns,
            vec![NewMemory::new("Alice switched to black coffee.").key("drink")],
        )
        .await
        .expect("again");
    assert!(again[0].deduplicated && again[0].replaced.is_empty());
    assert_eq!(again[0].id, second[0].id);

    // A verified List of the whole namespace: the new memory is there, the replaced one is not.
    let range = v::list_range(None, None, 100, "").expect("range");
    let page = c
        .list_with_proof(ns, ListOptions::default())
        .await
        .expect("list");
    v::list(ns, &range, &page, &trusted, None).expect("the list verifies");
    let ids: Vec<&str> = page.memories.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.contains(&second[0].id.as_str()));
    assert!(!ids.contains(&first[0].id.as_str()));
    let coffee = page
        .memories
        .iter()
        .find(|m| m.id == second[0].id)
        .expect("coffee");
    assert_eq!(coffee.key, "drink");
    assert_eq!(
        coffee.metadata.get("cairn.key").map(String::as_str),
        Some("drink")
    );

    // Get by key, verified: the record carries the key it is shown with.
    let keys = vec!["drink".to_string(), "home".into(), "nope".into()];
    let got = c.get_by_keys(ns, keys.clone(), true).await.expect("get");
    v::get_keys(ns, &keys, &got, &trusted, None).expect("get by key verifies");
    assert_eq!(got.memories.len(), 2);
    assert_eq!(got.memories[0].text, "Alice switched to black coffee.");
    assert_eq!(got.memories[1].text, "Alice lives in Lisbon.");
    assert_eq!(got.missing, vec!["nope".to_string()]);
    // A node that shows another key than the record's is caught.
    let mut lying = got.clone();
    lying.memories[0].key = "home".into();
    assert!(v::get_keys(ns, &keys, &lying, &trusted, None).is_err());
    // A node that repeats one memory in place of another is caught (the proof holds two different ones).
    let mut doubled = got.clone();
    doubled.memories[1] = doubled.memories[0].clone();
    assert!(v::get(ns, &doubled, &trusted, None).is_err());
    // A node that drops an asked key silently is caught.
    let mut dropped = got.clone();
    dropped.memories.remove(1);
    assert!(v::get_keys(ns, &keys, &dropped, &trusted, None).is_err());
    // The replaced memory is gone for Get by id too.
    let old = c.get(ns, vec![first[0].id.clone()]).await.expect("get old");
    assert_eq!(old.missing, vec![first[0].id.clone()]);

    // Two items with one key in one call: the last one wins, in that same commit.
    let seq = seq_of(&node, ns).await;
    let both = c
        .remember(
            ns,
            vec![
                NewMemory::new("Alice moved to Porto.").key("home"),
                NewMemory::new("Alice moved to Berlin.").key("home"),
            ],
        )
        .await
        .expect("two");
    assert_eq!(seq_of(&node, ns).await, seq + 1);
    assert_eq!(both[1].replaced, both[0].id);
    let home = c
        .get_by_keys(ns, vec!["home".into()], false)
        .await
        .expect("home");
    assert_eq!(home.memories.len(), 1);
    assert_eq!(home.memories[0].text, "Alice moved to Berlin.");

    // Replaced and then stored again with the same content in one call: the last one stays deduplicable.
    let back = c
        .remember(
            ns,
            vec![
                NewMemory::new("Alice moved to Lyon.").key("home"),
                NewMemory::new("Alice moved to Oslo.").key("home"),
                NewMemory::new("Alice moved to Lyon.").key("home"),
            ],
        )
        .await
        .expect("back and forth");
    let again = c
        .remember(ns, vec![NewMemory::new("Alice moved to Lyon.").key("home")])
        .await
        .expect("again");
    assert!(again[0].deduplicated, "{again:?}");
    assert_eq!(again[0].id, back[2].id);
    let both = c
        .remember(
            ns,
            vec![
                NewMemory::new("Alice moved to Porto.").key("home"),
                NewMemory::new("Alice moved to Berlin.").key("home"),
            ],
        )
        .await
        .expect("two again");
    assert!(both.iter().all(|r| !r.deduplicated));

    // The key and a conflicting metadata entry: refused, nothing written.
    let mut raw = node.raw().await.expect("raw");
    let bad = raw
        .remember(pb::RememberRequest {
            namespace: ns.into(),
            items: vec![pb::MemoryInput {
                text: "x".into(),
                metadata: [("cairn.key".to_string(), "a".to_string())].into(),
                created_at: None,
                key: "b".into(),
                vector: None,
            }],
        })
        .await
        .expect_err("conflict");
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad}");
    let bad = raw
        .remember(pb::RememberRequest {
            namespace: ns.into(),
            items: vec![pb::MemoryInput {
                text: "x".into(),
                metadata: Default::default(),
                created_at: None,
                key: "a\nb".into(),
                vector: None,
            }],
        })
        .await
        .expect_err("control character");
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad}");
    assert!(bad.message().contains("items[0].key"), "{bad}");

    // Keys survive a restart: the replacement works on the reloaded namespace.
    node.stop();
    let node = Node::start(dir.path()).expect("restart");
    let c = node.client().await.expect("client");
    let r = c
        .remember(
            ns,
            vec![NewMemory::new("Alice lives in Madrid.").key("home")],
        )
        .await
        .expect("after restart");
    assert_eq!(r[0].replaced, both[1].id);
    let page = c
        .list_with_proof(ns, ListOptions::default())
        .await
        .expect("list");
    v::list(ns, &range, &page, &trusted, None).expect("the list verifies after restart");

    // Replacements leave tombstones like Forget does, and they are compacted away the same way.
    let churn: Vec<NewMemory> = (0..300)
        .map(|i| NewMemory::new(format!("Version {i} of the running note.")).key("note"))
        .collect();
    let r = c.remember(ns, churn).await.expect("churn");
    assert_eq!(r[299].replaced, r[298].id);
    let stats = c.stats(Some(ns)).await.expect("stats");
    let s = &stats.namespaces[0];
    assert_eq!(s.tombstones, 0, "compacted: {s:?}");
    let page = c
        .list_with_proof(ns, ListOptions::default())
        .await
        .expect("list");
    v::list(ns, &range, &page, &trusted, None).expect("the list verifies after compaction");
    let notes: Vec<&str> = page
        .memories
        .iter()
        .filter(|m| m.key == "note")
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(notes, vec!["Version 299 of the running note."]);
    assert_eq!(
        page.memories
            .iter()
            .filter(|m| m.key == "home")
            .map(|m| m.text.as_str())
            .collect::<Vec<_>>(),
        vec!["Alice lives in Madrid."]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_lists_prefix_search_and_newest_without_query() {
    let dir = temp_dir();
    let node = Node::start(dir.path()).expect("node");
    let c = node.client().await.expect("client");
    for (ns, t0) in [("team/a", 1_000u64), ("team/b", 2_000), ("teammate", 3_000)] {
        let items = (0..6)
            .map(|i| {
                NewMemory::new(format!(
                    "{ns} note {i}: the deploy uses blue-green switching"
                ))
                .meta("user", if i % 2 == 0 { "ann" } else { "ben" })
                .created_at(t0 + i)
            })
            .collect();
        c.remember(ns, items).await.expect("remember");
    }

    // List with a metadata filter, paged.
    let mut got = Vec::new();
    let mut token = None;
    for _ in 0..10 {
        let page = c
            .list(
                "team/a",
                ListOptions {
                    limit: Some(2),
                    page_token: token.take(),
                    metadata: [("user".to_string(), "ann".to_string())].into(),
                    ..Default::default()
                },
            )
            .await
            .expect("list");
        got.extend(page.memories.iter().map(|m| m.created_at));
        if page.next_page_token.is_empty() {
            break;
        }
        token = Some(page.next_page_token);
    }
    assert_eq!(got, vec![1_000, 1_002, 1_004]);
    // A filtered List cannot carry a proof.
    let err = c
        .list_with_proof(
            "team/a",
            ListOptions {
                metadata: [("user".to_string(), "ann".to_string())].into(),
                ..Default::default()
            },
        )
        .await
        .expect_err("no proof with a filter");
    assert!(err.to_string().contains("metadata"), "{err}");

    // Recall across the prefix `team`: team/a and team/b, never teammate.
    let hits = c
        .recall("team", "blue-green deploy")
        .prefix(true)
        .k(20)
        .send_full()
        .await
        .expect("prefix recall")
        .hits;
    assert_eq!(hits.len(), 12);
    assert!(hits
        .iter()
        .all(|h| h.namespace == "team/a" || h.namespace == "team/b"));
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));

    // A token for team/a cannot search the prefix team.
    let scoped = c
        .mint_token(&["team/a"], &["read"], None)
        .await
        .expect("mint")
        .token;
    let narrow = node.client_with(Some(&scoped)).await.expect("client");
    let denied = narrow
        .recall("team", "deploy")
        .prefix(true)
        .send_full()
        .await
        .expect_err("denied");
    assert!(denied.to_string().contains("ermission"), "{denied}");

    // No query: the newest memories passing the filter, newest first, across the prefix.
    let newest = c
        .recall_newest("team")
        .prefix(true)
        .where_eq("user", "ben")
        .k(4)
        .send_full()
        .await
        .expect("newest")
        .hits;
    let times: Vec<u64> = newest.iter().map(|h| h.created_at).collect();
    assert_eq!(times, vec![2_005, 2_003, 2_001, 1_005]);
    assert!(newest.iter().all(|h| h.score == 0.0));
}
