//! Writes survive whatever the client does: a few hundred Remembers and Forgets with client deadlines from 1 to
//! 50 ms and dropped connections, then a restart. Afterwards every text re-remembered is stored exactly once with
//! a real created_at, every acknowledged id is readable, acknowledged forgets stay forgotten, and the audit of
//! the namespace is clean.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use cairn_client::Raw;
use cairn_proto::v1 as pb;
use cairn_tests::{temp_dir, Node};
use tonic::transport::{Channel, Endpoint};

const NS: &str = "cancel/agent";
const TEXTS: usize = 300;

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn text(i: usize) -> String {
    format!(
        "Note {i} from the field diary: the courier left parcel {} at gate {} before {} o'clock.",
        i * 37 % 1000,
        i % 17,
        i % 12 + 1
    )
}

/// The node's admin token, sent by every raw client of this test.
static TOKEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

fn raw(ch: Channel) -> Raw {
    let token = TOKEN.get().and_then(Option::as_deref);
    cairn_client::CairnClient::from_channel(ch, token)
        .expect("token")
        .raw()
}

async fn channel(url: &str) -> Channel {
    Endpoint::from_shared(url.to_owned())
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

fn remember_req(i: usize) -> pb::RememberRequest {
    pb::RememberRequest {
        namespace: NS.into(),
        items: vec![pb::MemoryInput {
            text: text(i),
            ..Default::default()
        }],
    }
}

/// How one call is cut short (or not).
enum Cut {
    /// Not at all: the call runs to its answer.
    None,
    /// A grpc-timeout deadline of this many ms (the server drops the handler when it expires).
    Deadline(u64),
    /// The call runs on its own connection, which is dropped after this many ms.
    Drop(u64),
}

/// Runs `call` on a client of `shared` (or on a fresh connection for `Cut::Drop`); Some(answer) if it
/// completed, None if it was cut.
///
/// A quarter of the calls are not cut, so that acknowledged and cut calls share group commits.
async fn run_cut<T, F, Fut>(url: &str, shared: &Channel, cut: Cut, call: F) -> Option<T>
where
    F: FnOnce(Raw, Option<Duration>) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    match cut {
        Cut::None => call(raw(shared.clone()), None).await.ok(),
        Cut::Deadline(ms) => call(raw(shared.clone()), Some(Duration::from_millis(ms)))
            .await
            .ok(),
        Cut::Drop(ms) => {
            let ch = channel(url).await;
            let fut = call(raw(ch.clone()), None);
            let r = tokio::time::timeout(Duration::from_millis(ms), fut).await;
            // Dropping the future resets the stream; dropping the only channel closes the connection.
            drop(ch);
            r.ok().and_then(Result::ok)
        }
    }
}

/// A quarter uncut, the rest cut by a deadline of 1–50 ms or a connection dropped after 1–50 ms.
fn pick(rng: &mut Rng) -> Cut {
    let ms = 1 + rng.below(50);
    match rng.below(4) {
        0 => Cut::None,
        1 => Cut::Drop(ms),
        _ => Cut::Deadline(ms),
    }
}

fn with_deadline<T>(msg: T, d: Option<Duration>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(d) = d {
        r.set_timeout(d);
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cut_calls_lose_nothing_and_leave_no_ghosts() {
    let dir = temp_dir();
    let mut node = Node::start(dir.path()).expect("node");
    let _ = TOKEN.set(node.token.clone());
    let shared = channel(&node.url).await;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    // Phase 1: every text remembered once with its call cut short in one of two ways; some acknowledged
    // memories forgotten, also with cut calls. Calls overlap in waves of 10 so group commits mix cut and uncut
    // callers.
    let mut acked: HashMap<usize, (String, u64)> = HashMap::new();
    let mut cut_remembers = 0;
    for wave in (0..TEXTS).collect::<Vec<_>>().chunks(10) {
        let mut tasks = Vec::new();
        for &i in wave {
            let cut = pick(&mut rng);
            let (url, shared) = (node.url.clone(), shared.clone());
            tasks.push(tokio::spawn(async move {
                let r = run_cut(&url, &shared, cut, |mut c, d| async move {
                    c.remember(with_deadline(remember_req(i), d)).await
                })
                .await;
                (i, r.map(|r| r.into_inner()))
            }));
        }
        for t in tasks {
            let (i, r) = t.await.expect("join");
            match r {
                Some(r) => {
                    let m = &r.results[0];
                    assert!(m.created_at > 0, "text {i} acknowledged with created_at 0");
                    acked.insert(i, (m.id.clone(), m.created_at));
                }
                None => cut_remembers += 1,
            }
        }
    }
    assert!(
        cut_remembers > 0,
        "no Remember was cut short: the test exercises nothing"
    );

    let mut forget_acked: HashSet<usize> = HashSet::new();
    let mut forget_tried: HashSet<usize> = HashSet::new();
    let mut keys: Vec<usize> = acked.keys().copied().collect();
    keys.sort_unstable();
    for i in keys.into_iter().filter(|i| i % 4 == 0) {
        let id = acked[&i].0.clone();
        let cut = pick(&mut rng);
        forget_tried.insert(i);
        let r = run_cut(&node.url, &shared, cut, |mut c, d| async move {
            c.forget(with_deadline(
                pb::ForgetRequest {
                    namespace: NS.into(),
                    ids: vec![id],
                },
                d,
            ))
            .await
        })
        .await;
        if let Some(r) = r {
            assert_eq!(r.into_inner().forgotten.len(), 1, "text {i}");
            forget_acked.insert(i);
        }
    }
    // Let calls that were cut finish on the node before it stops (a graceful stop waits for them anyway).
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Phase 2: restart, then check.
    drop(shared);
    node.stop();
    let node = Node::start_with(dir.path(), &[]).expect("restart");
    let c = node.client().await.expect("client");

    // Every acknowledged memory not (possibly) forgotten is readable, with the created_at it was given.
    let live_acked: Vec<usize> = acked
        .keys()
        .copied()
        .filter(|i| !forget_tried.contains(i))
        .collect();
    assert!(!live_acked.is_empty(), "no Remember was acknowledged");
    let got = c
        .get(NS, live_acked.iter().map(|i| acked[i].0.clone()).collect())
        .await
        .expect("get");
    assert!(
        got.missing.is_empty(),
        "acknowledged memories missing: {:?}",
        got.missing
    );
    for m in &got.memories {
        let i = live_acked
            .iter()
            .find(|i| acked[i].0 == m.id)
            .expect("an asked id");
        assert_eq!(m.created_at, acked[i].1);
    }
    // Acknowledged forgets stay forgotten.
    let gone: Vec<String> = forget_acked.iter().map(|i| acked[i].0.clone()).collect();
    if !gone.is_empty() {
        let got = c.get(NS, gone.clone()).await.expect("get forgotten");
        assert!(got.memories.is_empty(), "forgotten memories came back");
        assert_eq!(got.missing.len(), gone.len());
    }

    // Every text re-remembered without a deadline: stored exactly once, with a real created_at and a readable id.
    let mut ids = Vec::new();
    for chunk in (0..TEXTS).collect::<Vec<_>>().chunks(60) {
        let items = chunk
            .iter()
            .map(|&i| cairn_client::NewMemory::new(text(i)))
            .collect();
        let r = c.remember(NS, items).await.expect("re-remember");
        for (&i, m) in chunk.iter().zip(r) {
            assert!(m.created_at > 0, "text {i} came back with created_at 0");
            if let Some((id, at)) = acked.get(&i).filter(|_| !forget_tried.contains(&i)) {
                assert!(m.deduplicated, "text {i} stored twice");
                assert_eq!((&m.id, m.created_at), (id, *at), "text {i}");
            }
            if forget_acked.contains(&i) {
                assert!(!m.deduplicated, "forgotten text {i} still deduplicated");
            }
            ids.push(m.id.clone());
        }
    }
    let got = c.get(NS, ids.clone()).await.expect("get all");
    assert!(
        got.missing.is_empty(),
        "re-remembered ids missing: {:?}",
        got.missing
    );

    // Exactly one live memory per text, nothing else.
    let mut texts = HashMap::new();
    let mut opts = cairn_client::ListOptions {
        limit: Some(1000),
        ..Default::default()
    };
    loop {
        let page = c.list(NS, opts.clone()).await.expect("list");
        for m in page.memories {
            *texts.entry(m.text).or_insert(0) += 1;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        opts.page_token = Some(page.next_page_token);
    }
    assert_eq!(texts.len(), TEXTS);
    assert!(texts.values().all(|&n| n == 1), "a text is stored twice");

    // The committed state checks out leaf by leaf.
    let id = node.cli(&["id"]);
    let id = String::from_utf8_lossy(&id.stdout).trim().to_owned();
    let v = node.cli_json(&["audit", "--ns", NS, "--from", &id]);
    assert_eq!(v["every_leaf_verified"], true, "{v}");
    assert_eq!(v["unreachable"], 0, "{v}");
    assert_eq!(v["memories"], TEXTS as u64, "{v}");
}
