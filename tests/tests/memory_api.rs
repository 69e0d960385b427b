//! Remember / Recall / Get / List / Forget round trips against a real node, through the SDK and the CLI.

use cairn_client::{ListOptions, NewMemory};
use cairn_tests::{temp_dir, Node};

#[tokio::test]
async fn remember_recall_get_list_forget_round_trip() {
    let dir = temp_dir();
    let node = Node::start(dir.path()).expect("node");
    let c = node.client().await.expect("client");
    let ns = "team/alice:chat";
    let items = vec![
        NewMemory::new("Alice prefers green tea to coffee.")
            .meta("speaker", "alice")
            .created_at(1000),
        NewMemory::new("The quarterly budget review is scheduled for Friday.")
            .meta("speaker", "bob")
            .created_at(2000),
        NewMemory::new("Bob's dog is called Biscuit and loves the beach.")
            .meta("speaker", "bob")
            .created_at(3000),
        NewMemory::new("The server migration finished without downtime.").created_at(4000),
    ];
    let res = c.remember(ns, items.clone()).await.expect("remember");
    assert_eq!(res.len(), 4);
    assert!(res.iter().all(|r| !r.deduplicated && r.id.len() == 64));
    assert_eq!(res[1].created_at, 2000);

    // Same text and metadata again: same id, flagged; same text, other metadata: a new memory.
    let again = c
        .remember(ns, vec![items[0].clone()])
        .await
        .expect("remember again");
    assert_eq!(again[0].id, res[0].id);
    assert!(again[0].deduplicated);
    let other = c
        .remember(
            ns,
            vec![NewMemory::new("Alice prefers green tea to coffee.").meta("speaker", "carol")],
        )
        .await
        .expect("remember other");
    assert!(!other[0].deduplicated);
    assert_ne!(other[0].id, res[0].id);
    // Repeats within one call are deduplicated too.
    let twice = c
        .remember(
            ns,
            vec![
                NewMemory::new("Repeated line."),
                NewMemory::new("Repeated line."),
            ],
        )
        .await
        .expect("remember twice");
    assert_eq!(twice[0].id, twice[1].id);
    assert!(!twice[0].deduplicated && twice[1].deduplicated);

    // Recall: the semantically closest memory comes first; scores descend.
    let hits = c
        .recall(ns, "what does Alice like to drink?")
        .k(3)
        .send()
        .await
        .expect("recall");
    assert_eq!(hits.len(), 3);
    assert!(hits[0].text.contains("green tea"), "{:?}", hits[0].text);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    let hits = c
        .recall(ns, "pets and animals")
        .k(1)
        .send()
        .await
        .expect("recall");
    assert_eq!(hits[0].id, res[2].id);
    assert_eq!(
        hits[0].metadata.get("speaker").map(String::as_str),
        Some("bob")
    );
    assert_eq!(hits[0].created_at, 3000);

    // Filters: metadata equality and created_at range.
    let hits = c
        .recall(ns, "tea")
        .where_eq("speaker", "bob")
        .k(10)
        .send()
        .await
        .expect("recall");
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h.metadata["speaker"] == "bob"));
    let hits = c
        .recall(ns, "anything")
        .since(2000)
        .until(4000)
        .k(10)
        .send()
        .await
        .expect("recall");
    let mut ids: Vec<_> = hits.iter().map(|h| h.id.clone()).collect();
    ids.sort();
    let mut want = vec![res[1].id.clone(), res[2].id.clone()];
    want.sort();
    assert_eq!(ids, want);

    // Get: found in order, unknown ids reported missing.
    let unknown = "0".repeat(64);
    let got = c
        .get(
            ns,
            vec![res[2].id.clone(), unknown.clone(), res[0].id.clone()],
        )
        .await
        .expect("get");
    assert_eq!(got.memories.len(), 2);
    assert_eq!(got.memories[0].id, res[2].id);
    assert_eq!(
        got.memories[0].text,
        "Bob's dog is called Biscuit and loves the beach."
    );
    assert_eq!(got.memories[0].namespace, ns);
    assert_eq!(got.missing, vec![unknown]);

    // List: (created_at, id) order, paging, range.
    let mut all = Vec::new();
    let mut token = None;
    for _ in 0..20 {
        let page = c
            .list(
                ns,
                ListOptions {
                    limit: Some(2),
                    page_token: token.take(),
                    ..Default::default()
                },
            )
            .await
            .expect("list");
        assert!(page.memories.len() <= 2);
        all.extend(page.memories);
        if page.next_page_token.is_empty() {
            break;
        }
        token = Some(page.next_page_token);
    }
    assert_eq!(all.len(), 6);
    assert!(all
        .windows(2)
        .all(|w| (w[0].created_at, &w[0].id) < (w[1].created_at, &w[1].id)));
    let ranged = c
        .list(
            ns,
            ListOptions {
                since: Some(2000),
                until: Some(3001),
                ..Default::default()
            },
        )
        .await
        .expect("list range");
    assert_eq!(
        ranged
            .memories
            .iter()
            .map(|m| m.created_at)
            .collect::<Vec<_>>(),
        vec![2000, 3000]
    );

    // Forget: gone from every read at once.
    let (forgotten, missing) = c.forget(ns, vec![res[0].id.clone()]).await.expect("forget");
    assert_eq!(forgotten, vec![res[0].id.clone()]);
    assert!(missing.is_empty());
    let got = c.get(ns, vec![res[0].id.clone()]).await.expect("get");
    assert!(got.memories.is_empty());
    let hits = c
        .recall(ns, "what does Alice like to drink?")
        .k(10)
        .send()
        .await
        .expect("recall");
    assert!(hits.iter().all(|h| h.id != res[0].id));
    let listed = c.list(ns, ListOptions::default()).await.expect("list");
    assert!(listed.memories.iter().all(|m| m.id != res[0].id));
    let (_, missing) = c
        .forget(ns, vec![res[0].id.clone()])
        .await
        .expect("forget twice");
    assert_eq!(missing, vec![res[0].id.clone()]);
    // Content can be remembered again after being forgotten.
    let back = c
        .remember(ns, vec![items[0].clone()])
        .await
        .expect("remember after forget");
    assert!(!back[0].deduplicated);

    let stats = c.stats(Some(ns)).await.expect("stats");
    assert_eq!(stats.total_memories, 6);
    assert_eq!(stats.namespaces[0].tombstones, 1);
    let spaces = c.list_namespaces().await.expect("namespaces");
    assert_eq!(spaces.len(), 1);
    assert_eq!(spaces[0].namespace, ns);

    // Namespaces are isolated.
    c.remember(
        "other",
        vec![NewMemory::new("Alice prefers green tea to coffee.")],
    )
    .await
    .expect("remember other ns");
    let hits = c
        .recall("other", "tea")
        .k(10)
        .send()
        .await
        .expect("recall other");
    assert_eq!(hits.len(), 1);
    let got = c
        .get("other", vec![res[2].id.clone()])
        .await
        .expect("get across ns");
    assert!(got.memories.is_empty());
}

#[tokio::test]
async fn paraphrase_finds_its_partner_first() {
    let dir = temp_dir();
    let node = Node::start(dir.path()).expect("node");
    let c = node.client().await.expect("client");
    let pairs = [
        (
            "My flight to Lisbon leaves at 7am on Monday.",
            "When does my plane to Portugal depart?",
        ),
        (
            "I am allergic to peanuts and shellfish.",
            "Which foods make me sick?",
        ),
        (
            "Our wifi password is written on the fridge.",
            "Where can I find the internet login?",
        ),
        (
            "The car needs new tires before winter.",
            "What maintenance does my vehicle need?",
        ),
        (
            "Grandma's birthday party is on the 14th.",
            "When is the celebration for my grandmother?",
        ),
        (
            "I started learning the cello last spring.",
            "Which musical instrument am I studying?",
        ),
    ];
    let items: Vec<NewMemory> = pairs.iter().map(|(m, _)| NewMemory::new(*m)).collect();
    let ids = c.remember("p", items).await.expect("remember");
    for (i, (_, q)) in pairs.iter().enumerate() {
        let hits = c.recall("p", *q).k(3).send().await.expect("recall");
        assert_eq!(
            hits[0].id, ids[i].id,
            "query {q:?} found {:?}",
            hits[0].text
        );
    }
}

#[test]
fn cli_tour_json_shapes() {
    let dir = temp_dir();
    let node = Node::start(dir.path()).expect("node");
    let r = node.cli_json(&[
        "remember",
        "--ns",
        "cli",
        "--meta",
        "topic=food",
        "I love ramen.",
    ]);
    let id = r["ids"][0].as_str().expect("id").to_owned();
    let hits = node.cli_json(&[
        "recall",
        "--ns",
        "cli",
        "-k",
        "1",
        "--where",
        "topic=food",
        "noodles",
    ]);
    let hit = &hits["hits"][0];
    assert_eq!(hit["id"], id.as_str());
    assert_eq!(hit["text"], "I love ramen.");
    assert_eq!(hit["metadata"]["topic"], "food");
    assert!(hit["score"].as_f64().expect("score") > 0.3);
    assert!(hit["created_at"].as_u64().expect("created_at") > 0);
    let got = node.cli_json(&["get", "--ns", "cli", &id]);
    assert_eq!(got["memories"][0]["text"], "I love ramen.");
    let listed = node.cli_json(&["list", "--ns", "cli", "--limit", "5"]);
    assert_eq!(listed["memories"].as_array().expect("memories").len(), 1);
    let stats = node.cli_json(&["stats"]);
    assert_eq!(stats["namespaces"][0]["memories"], 1);
    let f = node.cli_json(&["forget", "--ns", "cli", &id]);
    assert_eq!(f["forgotten"][0], id.as_str());

    // Errors: non-zero exit and a one-line reason.
    let out = node.cli(&["get", "--ns", "cli", &id]);
    assert!(!out.status.success());
    let out = node.cli(&["recall", "--ns", "no-such-ns", "x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not found") && err.trim().lines().count() == 1,
        "{err}"
    );
}

#[test]
fn cli_import_reports_bad_lines_and_keeps_good_ones() {
    let dir = temp_dir();
    let node = Node::start(dir.path()).expect("node");
    let file = dir.path().join("in.jsonl");
    let big = "x".repeat(70_000);
    let lines = [
        r#"{"text": "First memory from the import.", "metadata": {"src": "file"}}"#.to_owned(),
        "this is not json".to_owned(),
        r#"{"text": "Second memory, with a time.", "created_at": 1700000000000}"#.to_owned(),
        r#"{"metadata": {"a": "b"}}"#.to_owned(),
        format!(r#"{{"text": "{big}"}}"#),
        r#"{"text": "   "}"#.to_owned(),
        r#"{"text": "Third good memory."}"#.to_owned(),
    ];
    std::fs::write(&file, lines.join("\n")).expect("write file");
    let out = node.cli(&[
        "--json",
        "import",
        "--ns",
        "imp",
        "--batch",
        "3",
        file.to_str().expect("path"),
    ]);
    assert!(
        !out.status.success(),
        "bad lines must make the exit code non-zero"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(v["imported"], 3);
    assert_eq!(v["failed"], 4);
    let bad: Vec<u64> = v["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(bad, vec![2, 4, 5, 6]);
    let listed = node.cli_json(&["list", "--ns", "imp"]);
    let mut texts: Vec<String> = listed["memories"]
        .as_array()
        .expect("memories")
        .iter()
        .map(|m| m["text"].as_str().expect("text").to_owned())
        .collect();
    texts.sort();
    assert_eq!(
        texts,
        vec![
            "First memory from the import.",
            "Second memory, with a time.",
            "Third good memory."
        ]
    );
    // Importing the same file again deduplicates the good lines.
    let out = node.cli(&[
        "--json",
        "import",
        "--ns",
        "imp",
        file.to_str().expect("path"),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(v["deduplicated"], 3);
    assert_eq!(v["imported"], 0);
}

/// When the node fails whole batches (here: below its free-space floor, as with a full disk, an overloaded node or
/// a deadline), `cairn import` still reports what it did, counts the lines not done, and says how to finish.
#[tokio::test]
async fn import_says_what_is_unfinished_when_the_node_fails_batches() {
    let dir = temp_dir();
    let node = Node::start_with(dir.path(), &["--min-free-mb", "1000000000"]).expect("node");
    let file = dir.path().join("in.jsonl");
    let lines = [
        r#"{"text": "One."}"#,
        "not json",
        r#"{"text": "Two."}"#,
        r#"{"text": "Three."}"#,
    ];
    std::fs::write(&file, lines.join("\n")).expect("write file");
    let path = file.to_str().expect("path");
    let out = node.cli(&["--json", "import", "--ns", "imp", "--batch", "2", path]);
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(v["unfinished"], 3, "{v}");
    assert_eq!(v["failed"], 1, "{v}");
    assert_eq!(v["imported"], 0, "{v}");
    assert!(
        v["node_error"]
            .as_str()
            .is_some_and(|e| e.contains("ResourceExhausted")),
        "{v}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("3 lines were not imported (first at line 1)"),
        "{err}"
    );
    assert!(err.contains("run the same import again"), "{err}");
}
