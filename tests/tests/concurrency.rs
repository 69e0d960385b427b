//! Many concurrent writers lose nothing and share model calls.

use cairn_client::NewMemory;
use cairn_tests::{temp_dir, Node};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_clients_times_fifty_remembers_lose_nothing() {
    let dir = temp_dir();
    let node = Node::start(dir.path()).expect("node");
    let mut tasks = Vec::new();
    for client_no in 0..16 {
        let c = node.client().await.expect("client");
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..50 {
                let text = format!(
                    "Client {client_no} remembers fact {i}: item {} costs {} coins.",
                    i * 7 % 13,
                    client_no * 100 + i
                );
                let ns = if client_no % 2 == 0 {
                    "conc/even"
                } else {
                    "conc/odd"
                };
                let r = c
                    .remember(ns, vec![NewMemory::new(text)])
                    .await
                    .expect("remember");
                assert!(!r[0].deduplicated);
                ids.push((ns, r[0].id.clone()));
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("join"));
    }
    assert_eq!(all.len(), 800);
    let c = node.client().await.expect("client");
    for ns in ["conc/even", "conc/odd"] {
        let ids: Vec<String> = all
            .iter()
            .filter(|(n, _)| *n == ns)
            .map(|(_, id)| id.clone())
            .collect();
        assert_eq!(ids.len(), 400);
        let got = c.get(ns, ids).await.expect("get");
        assert!(got.missing.is_empty());
        assert_eq!(got.memories.len(), 400);
    }
    let stats = c.stats(None).await.expect("stats");
    assert_eq!(stats.total_memories, 800);
    // Group commit: concurrent writers share signed roots, so each namespace needs fewer roots than its 400 calls.
    for ns in ["conc/even", "conc/odd"] {
        let root = c.root(ns, None).await.expect("root");
        assert!(
            root.seq < 400,
            "{ns}: {} roots for 400 concurrent calls",
            root.seq
        );
        assert_eq!(root.time_leaves, 400);
    }
}
