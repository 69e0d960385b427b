//! Crash loop: a node is killed with SIGKILL at random moments while a client remembers and forgets (enough
//! forgets that compaction runs too) and a follower catches up, then restarted, again and again. After every
//! restart no acknowledged memory is missing, no acknowledged forget is undone, and `cairn audit` verifies every
//! leaf with none unreachable. At the end the follower, itself killed mid-catch-up every cycle, holds the owner's
//! latest root and audits clean too.
//!
//! `CAIRN_CRASH_CYCLES` sets the number of cycles (default 10; the bench variant runs 50 or more).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use cairn_client::{CairnClient, NewMemory};
use cairn_tests::{node_id, temp_dir, Node};

const NS: &str = "crash/loop";

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What the client knows for certain.
#[derive(Default)]
struct Ledger {
    /// Acknowledged and never asked to be forgotten.
    live: HashMap<String, String>,
    /// Forgets that were acknowledged.
    forgotten: HashSet<String>,
    next_text: usize,
}

fn text(i: usize) -> String {
    format!(
        "Crash-loop memory {i}: sensor {} read {} degrees at hour {}.",
        i % 31,
        i * 7 % 90,
        i % 24
    )
}

/// Remembers and forgets until the node goes away (or 200 calls); every answered call goes into the ledger.
/// Returns the ledger and whether a call was cut off by the kill.
async fn work(c: CairnClient, mut ledger: Ledger, seed: u64) -> (Ledger, bool) {
    let mut rng = Rng(seed | 1);
    for _ in 0..200 {
        if rng.below(3) == 0 && ledger.live.len() > 40 {
            let mut ids: Vec<String> = ledger.live.keys().cloned().collect();
            ids.sort();
            let take = (10 + rng.below(30)) as usize;
            let ids: Vec<String> = ids.into_iter().take(take).collect();
            // In flight when the node dies: its outcome is unknown, so these ids leave the ledger.
            for id in &ids {
                ledger.live.remove(id);
            }
            match c.forget(NS, ids.clone()).await {
                Ok((forgotten, missing)) => {
                    assert!(
                        missing.is_empty(),
                        "live memories reported missing: {missing:?}"
                    );
                    ledger.forgotten.extend(forgotten);
                }
                Err(_) => return (ledger, true),
            }
        } else {
            let n = 1 + rng.below(20) as usize;
            let texts: Vec<String> = (ledger.next_text..ledger.next_text + n).map(text).collect();
            ledger.next_text += n;
            match c
                .remember(NS, texts.iter().cloned().map(NewMemory::new).collect())
                .await
            {
                Ok(r) => {
                    for (m, t) in r.into_iter().zip(texts) {
                        assert!(!m.deduplicated && m.created_at > 0);
                        ledger.live.insert(m.id, t);
                    }
                }
                Err(_) => return (ledger, true),
            }
        }
    }
    (ledger, false)
}

fn audit_clean(n: &Node, owner: &str) {
    let v = n.cli_json(&["audit", "--ns", NS, "--from", owner]);
    assert_eq!(v["every_leaf_verified"], true, "{v}");
    assert_eq!(v["unreachable"], 0, "{v}");
}

async fn check(n: &Node, ledger: &Ledger) {
    let c = n.client().await.expect("client");
    let live: Vec<String> = ledger.live.keys().cloned().collect();
    for chunk in live.chunks(500) {
        let got = c.get(NS, chunk.to_vec()).await.expect("get");
        assert!(
            got.missing.is_empty(),
            "acknowledged memories lost: {:?}",
            got.missing
        );
        for m in got.memories {
            assert_eq!(Some(&m.text), ledger.live.get(&m.id));
        }
    }
    let gone: Vec<String> = ledger.forgotten.iter().cloned().collect();
    for chunk in gone.chunks(500) {
        let got = c.get(NS, chunk.to_vec()).await.expect("get forgotten");
        assert!(got.memories.is_empty(), "a forgotten memory came back");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_nothing_acknowledged() {
    let cycles: u64 = std::env::var("CAIRN_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let (da, db) = (temp_dir(), temp_dir());
    let mut a = Node::start(da.path()).expect("A");
    let mut b = Node::start(db.path()).expect("B");
    let a_id = node_id(&a);
    let ticket = |n: &Node| {
        String::from_utf8_lossy(&n.cli(&["ticket"]).stdout)
            .trim()
            .to_owned()
    };
    assert!(b.cli(&["peer", "add", &ticket(&a)]).status.success());
    assert!(a.cli(&["peer", "add", &ticket(&b)]).status.success());
    cairn_tests::share(&a, "", &b);
    // The namespace must exist on A before B can follow it.
    a.client()
        .await
        .expect("client")
        .remember(
            NS,
            vec![NewMemory::new("The first memory of the crash loop.")],
        )
        .await
        .expect("remember");
    let o = b.cli(&["follow", "--ns", NS, "--from", &a_id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut ledger = Ledger::default();
    let mut kills_mid_call = 0;
    for cycle in 0..cycles {
        let c = a.client().await.expect("client");
        let worker = tokio::spawn(work(c, ledger, rng.below(u64::MAX)));
        // B dies at a random moment of the cycle too, in the middle of catching up.
        tokio::time::sleep(Duration::from_millis(200 + rng.below(800))).await;
        b.kill9();
        tokio::time::sleep(Duration::from_millis(100 + rng.below(1200))).await;
        a.kill9();
        let (l, cut) = worker.await.expect("worker");
        ledger = l;
        kills_mid_call += u64::from(cut);
        a = Node::start(da.path()).expect("restart A");
        check(&a, &ledger).await;
        audit_clean(&a, &a_id);
        b = Node::start(db.path()).expect("restart B");
        eprintln!(
            "cycle {cycle}: {} live, {} forgotten",
            ledger.live.len(),
            ledger.forgotten.len()
        );
    }
    assert!(
        kills_mid_call * 2 >= cycles,
        "only {kills_mid_call} of {cycles} kills landed during a call"
    );
    // Compaction ran (it renumbers the graph without its tombstones): fewer graph points than memories ever made.
    let stats = a
        .client()
        .await
        .expect("client")
        .stats(Some(NS))
        .await
        .expect("stats");
    let points = stats.namespaces.first().map_or(0, |s| s.index_points);
    assert!(
        (points as usize) < ledger.next_text,
        "no compaction: {points} graph points for {} memories made",
        ledger.next_text
    );

    // B catches up with A's latest root and checks out leaf by leaf against A's key.
    let want = a
        .client()
        .await
        .expect("client")
        .root(NS, None)
        .await
        .expect("root")
        .seq;
    let t0 = Instant::now();
    loop {
        let seq = match b.client().await {
            Ok(c) => c
                .list_namespaces()
                .await
                .ok()
                .and_then(|l| l.into_iter().find(|x| x.namespace == NS))
                .map_or(0, |x| x.seq),
            Err(_) => 0,
        };
        if seq >= want {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "B stuck at seq {seq}, A at {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    check(&b, &ledger).await;
    audit_clean(&b, &a_id);
}
