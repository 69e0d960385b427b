//! Writes a corpus of saved proof files for the cross-check of independent verifiers (docs/PROOFS.md): honest
//! Get / List / Recall answers of every kind from a real node with the real model (namespaces of several sizes,
//! exact- and graph-mode recall proofs, lexical, hybrid and filtered recall proofs, tombstones, keyed replacements, witness cosignatures), and tampered copies
//! of each. Every case carries the decision of this (Rust) verifier; `python -m cairn.verifier.crosscheck DIR`
//! must take the same one on every case.
//!
//! Usage: proof_corpus --out DIR [--big N [--only-big]]
//! (`--big N` adds a namespace of N memories with honest answers only, for timing verifiers; `--only-big` leaves
//! out the small namespaces and their tampers.)

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cairn_client::proof_file::{Kind, ProofFile};
use cairn_client::verify::{self as v, parse_node_id, RecallAsked};
use cairn_client::{CairnClient, ListOptions, NewMemory};
use cairn_index::id::MemoryId;
use cairn_index::root::cosign;
use cairn_proto::v1::RecallMode;
use cairn_tests::{temp_dir, Node};
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

struct Case {
    file: String,
    node: &'static str,
    kind: &'static str,
    honest: bool,
    tamper: String,
}

struct Corpus {
    dir: PathBuf,
    trusted: [u8; 32],
    other: [u8; 32],
    pinned: Vec<[u8; 32]>,
    cases: Vec<Value>,
    n: usize,
}

const TOPICS: [&str; 8] = [
    "tea",
    "climbing",
    "Lisbon",
    "the deploy",
    "a birthday",
    "jazz",
    "the budget",
    "a dentist visit",
];

fn texts(ns: &str, n: usize) -> Vec<NewMemory> {
    (0..n)
        .map(|i| {
            let t = TOPICS[i % TOPICS.len()];
            NewMemory::new(format!(
                "Note {i} in {ns}: something worth remembering about {t}, case {}.",
                i * 7919 % 1000
            ))
            .meta("topic", t)
            .created_at(1_700_000_000_000 + (i as u64 * 104_729) % 5_000_000)
        })
        .collect()
}

fn kind_name(k: &Kind) -> &'static str {
    match k {
        Kind::Get => "get",
        Kind::List(_) => "list",
        Kind::Recall(..) => "recall",
        Kind::Hybrid(..) => "hybrid",
        Kind::Filtered(..) => "filtered",
    }
}

impl Corpus {
    /// Writes `bytes` as one case and records this verifier's decision on it.
    fn add_bytes(&mut self, bytes: &[u8], case: Case) -> Result<()> {
        let path = self.dir.join(&case.file);
        std::fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
        let trusted = if case.node == "other" {
            self.other
        } else {
            self.trusted
        };
        let (accept, witnesses, error) =
            match ProofFile::decode(bytes).and_then(|f| f.verify(&trusted).map(|vd| (f, vd))) {
                Ok((f, vd)) => (true, Some(f.witnesses(&vd, &self.pinned)), String::new()),
                Err(e) => (false, None, e.to_string()),
            };
        self.cases.push(json!({
            "file": case.file,
            "node": case.node,
            "kind": case.kind,
            "honest": case.honest,
            "tamper": case.tamper,
            "accept": accept,
            "witnesses": witnesses,
            "error": error,
        }));
        Ok(())
    }

    fn add(&mut self, f: &ProofFile, honest: bool, tamper: String) -> Result<()> {
        self.n += 1;
        let case = Case {
            file: format!("{:05}.cpf", self.n),
            node: "trusted",
            kind: kind_name(&f.kind),
            honest,
            tamper,
        };
        self.add_bytes(&f.encode(), case)
    }

    /// An honest answer and every tamper of it.
    fn honest(&mut self, f: ProofFile, what: &str, witness: &SigningKey) -> Result<()> {
        // Add a real witness cosignature of the proof's root, so witness counting is compared too.
        let mut f = f;
        if let Some(root) = cairn_index::proof::root_of_proof(&f.proof) {
            f.cosigs.push((
                witness.verifying_key().to_bytes(),
                cosign(&root.record, witness),
            ));
        }
        self.add(&f, true, format!("honest {what}"))?;
        let kind = kind_name(&f.kind);
        // The same file checked against another node id.
        self.n += 1;
        let case = Case {
            file: format!("{:05}.cpf", self.n),
            node: "other",
            kind,
            honest: false,
            tamper: format!("{what}: verified against another node id"),
        };
        self.add_bytes(&f.encode(), case)?;
        // Raw file damage: checksum no longer matches; truncated; empty.
        let enc = f.encode();
        for (i, name) in [(enc.len() / 2, "middle"), (9, "kind byte")] {
            let mut b = enc.clone();
            b[i] ^= 0x40;
            self.raw(
                &b,
                kind,
                format!("{what}: file byte flipped at {name}, checksum kept"),
            )?;
        }
        self.raw(
            &enc[..enc.len() - 1],
            kind,
            format!("{what}: file truncated by one byte"),
        )?;
        self.raw(&[], kind, format!("{what}: empty file"))?;
        // Items.
        for drop in 0..f.items.len().min(3) {
            let mut t = f.clone();
            t.items.remove(drop);
            if let Kind::Recall(scores, _) = &mut t.kind {
                scores.remove(drop);
            }
            self.add(&t, false, format!("{what}: item {drop} dropped"))?;
        }
        if f.items.len() >= 2 {
            let mut t = f.clone();
            t.items.swap(0, 1);
            if let Kind::Recall(scores, _) = &mut t.kind {
                scores.swap(0, 1);
            }
            self.add(&t, false, format!("{what}: items 0 and 1 swapped"))?;
            let mut t = f.clone();
            t.items[0].0 = t.items[1].0;
            self.add(&t, false, format!("{what}: item 0 given item 1's id"))?;
            let mut t = f.clone();
            t.items[1] = t.items[0].clone();
            if let Kind::Recall(scores, _) = &mut t.kind {
                scores[1] = scores[0];
            }
            self.add(&t, false, format!("{what}: item 1 replaced by item 0"))?;
            let mut t = f.clone();
            let dup = t.items[0].clone();
            t.items.push(dup);
            if let Kind::Recall(scores, _) = &mut t.kind {
                let s = scores[0];
                scores.push(s);
            }
            self.add(&t, false, format!("{what}: item 0 repeated at the end"))?;
        }
        if let Some((_, rec)) = f.items.first() {
            for at in [rec.len() / 2, rec.len().saturating_sub(1), 0] {
                let mut t = f.clone();
                t.items[0].1[at] ^= 0x01;
                self.add(&t, false, format!("{what}: record 0 byte {at} flipped"))?;
            }
            let mut t = f.clone();
            t.items[0].0 = MemoryId([7; 32]);
            self.add(&t, false, format!("{what}: record 0 under a made-up id"))?;
        }
        // What was asked.
        let mut t = f.clone();
        t.namespace.push('x');
        self.add(&t, false, format!("{what}: namespace changed"))?;
        match &f.kind {
            Kind::Get => {}
            Kind::List(r) => {
                for (name, change) in [
                    ("since + 1", (1i64, 0i64, 0i64)),
                    ("until - 1", (0, -1, 0)),
                    ("limit + 1", (0, 0, 1)),
                    ("limit - 1", (0, 0, -1)),
                ] {
                    let mut r2 = *r;
                    r2.since = r2.since.saturating_add_signed(change.0);
                    r2.until = r2.until.saturating_add_signed(change.1);
                    r2.limit = r2.limit.saturating_add_signed(change.2 as i32);
                    let mut t = f.clone();
                    t.kind = Kind::List(r2);
                    self.add(&t, false, format!("{what}: range {name}"))?;
                }
                if r.after.is_none() && !f.items.is_empty() {
                    let mut r2 = *r;
                    let first = &f.items[0];
                    let created = cairn_index::record::MemoryRecord::decode(&first.1)
                        .map(|m| m.created_at)
                        .unwrap_or(0);
                    r2.after = Some((created, first.0));
                    let mut t = f.clone();
                    t.kind = Kind::List(r2);
                    self.add(&t, false, format!("{what}: cursor after item 0"))?;
                }
            }
            Kind::Hybrid(..) | Kind::Filtered(..) => {}
            Kind::Recall(scores, asked) => {
                for (name, k, ef) in [
                    ("k + 1", asked.k + 1, asked.min_ef),
                    ("k - 1", asked.k.saturating_sub(1), asked.min_ef),
                    ("min_ef 100000", asked.k, 100_000),
                ] {
                    let mut t = f.clone();
                    t.kind = Kind::Recall(scores.clone(), RecallAsked { k, min_ef: ef });
                    self.add(&t, false, format!("{what}: asked {name}"))?;
                }
                if !scores.is_empty() {
                    let mut s2 = scores.clone();
                    s2[0] = f32::from_bits(s2[0].to_bits() ^ 1);
                    let mut t = f.clone();
                    t.kind = Kind::Recall(s2, *asked);
                    self.add(&t, false, format!("{what}: score 0 off by one bit"))?;
                    let mut s2 = scores.clone();
                    s2[0] = f32::NAN;
                    let mut t = f.clone();
                    t.kind = Kind::Recall(s2, *asked);
                    self.add(&t, false, format!("{what}: score 0 NaN"))?;
                }
            }
        }
        // Proof bytes: sampled single-bit flips, truncation, a trailing byte.
        let p = &f.proof;
        let step = (p.len() / 24).max(1);
        for i in (0..p.len()).step_by(step) {
            let mut t = f.clone();
            t.proof[i] ^= 1 << (i % 8);
            self.add(&t, false, format!("{what}: proof bit flipped at byte {i}"))?;
        }
        let mut t = f.clone();
        t.proof.truncate(p.len() / 2);
        self.add(&t, false, format!("{what}: proof cut in half"))?;
        let mut t = f.clone();
        t.proof.push(0);
        self.add(&t, false, format!("{what}: proof with a trailing byte"))?;
        let mut t = f.clone();
        t.proof.clear();
        self.add(&t, false, format!("{what}: no proof"))?;
        // Cosignatures: a broken one, a repeated one, one by an unpinned key, the owner's own key.
        if let Some(root) = cairn_index::proof::root_of_proof(&f.proof) {
            let mut t = f.clone();
            if let Some(c) = t.cosigs.last_mut() {
                c.1[5] ^= 1;
            }
            self.add(
                &t,
                false,
                format!("{what}: witness signature broken (still valid, 0 witnesses)"),
            )?;
            let mut t = f.clone();
            if let Some(c) = t.cosigs.last().cloned() {
                t.cosigs.push(c);
            }
            self.add(&t, false, format!("{what}: witness cosignature repeated"))?;
            let stranger = SigningKey::from_bytes(&[99; 32]);
            let mut t = f.clone();
            t.cosigs.push((
                stranger.verifying_key().to_bytes(),
                cosign(&root.record, &stranger),
            ));
            self.add(&t, false, format!("{what}: cosignature by an unpinned key"))?;
        }
        Ok(())
    }

    fn raw(&mut self, bytes: &[u8], kind: &'static str, tamper: String) -> Result<()> {
        self.n += 1;
        let case = Case {
            file: format!("{:05}.cpf", self.n),
            node: "trusted",
            kind,
            honest: false,
            tamper,
        };
        self.add_bytes(bytes, case)
    }
}

fn items(resp: impl Iterator<Item = (String, Vec<u8>)>) -> Result<Vec<(MemoryId, Vec<u8>)>> {
    resp.map(|(id, rec)| {
        let id = id
            .parse::<MemoryId>()
            .map_err(|e| anyhow::anyhow!("bad id {id}: {e}"))?;
        Ok((id, rec))
    })
    .collect()
}

async fn answers(c: &CairnClient, ns: &str, n: usize) -> Result<Vec<(ProofFile, String)>> {
    let mut out = Vec::new();
    let listed = c
        .list(
            ns,
            ListOptions {
                limit: Some(1000),
                ..Default::default()
            },
        )
        .await?
        .memories;
    let ids: Vec<String> = listed.iter().map(|m| m.id.clone()).collect();
    // Get: one id, several, all (up to 50).
    for take in [1usize, 3, 50] {
        let want: Vec<String> = ids.iter().step_by(2).take(take).cloned().collect();
        if want.is_empty() {
            continue;
        }
        let r = c.get_with_proof(ns, want.clone()).await?;
        out.push((
            ProofFile {
                kind: Kind::Get,
                namespace: ns.into(),
                items: items(r.memories.iter().map(|m| (m.id.clone(), m.record.clone())))?,
                proof: r.proof,
                cosigs: Vec::new(),
            },
            format!("get {}/{n} ids of {ns}", want.len()),
        ));
    }
    // List: everything; a range; small pages following the cursor.
    let times: Vec<u64> = listed.iter().map(|m| m.created_at).collect();
    let mid = times.get(times.len() / 3).copied().unwrap_or(0);
    let late = times.get(times.len() * 2 / 3).copied().unwrap_or(u64::MAX);
    let mut ranges = vec![
        (None, None, 1000u32),
        (Some(mid), Some(late.max(mid + 1)), 1000),
    ];
    if n > 3 {
        ranges.push((None, None, 3));
    }
    for (since, until, limit) in ranges {
        let mut token = String::new();
        for page in 0..2 {
            let r = c
                .list_with_proof(
                    ns,
                    ListOptions {
                        since,
                        until,
                        limit: Some(limit),
                        page_token: Some(token.clone()).filter(|t| !t.is_empty()),
                        ..Default::default()
                    },
                )
                .await?;
            let range = v::list_range(since, until, limit, &token)?;
            out.push((
                ProofFile {
                    kind: Kind::List(range),
                    namespace: ns.into(),
                    items: items(r.memories.iter().map(|m| (m.id.clone(), m.record.clone())))?,
                    proof: r.proof,
                    cosigs: Vec::new(),
                },
                format!("list {since:?}..{until:?} limit {limit} page {page} of {ns}"),
            ));
            if r.next_page_token.is_empty() {
                break;
            }
            token = r.next_page_token;
        }
    }
    // Recall: several queries and k, graph and exact.
    for (q, k, exact) in [
        ("what about tea?", 1u32, false),
        ("the deploy", 5, false),
        ("a birthday party with jazz", 10, false),
        ("budget", 10, true),
    ] {
        let r = c
            .recall(ns, q)
            .k(k)
            .exact(exact)
            .mode(RecallMode::Semantic)
            .proof(true)
            .send_full()
            .await?;
        out.push((
            ProofFile {
                kind: Kind::Recall(
                    r.hits.iter().map(|h| h.score).collect(),
                    RecallAsked { k, min_ef: 0 },
                ),
                namespace: ns.into(),
                items: items(r.hits.iter().map(|h| (h.id.clone(), h.record.clone())))?,
                proof: r.proof,
                cosigs: Vec::new(),
            },
            format!("recall k={k} exact={exact} {q:?} in {ns} ({n} memories)"),
        ));
    }
    // Lexical and hybrid (CPX1) and filtered (CPF1) recall, in every mode, with the question each must come from.
    for (q, k, mode, topic) in [
        ("tea Lisbon", 5u32, RecallMode::Hybrid, None),
        ("the budget case", 3, RecallMode::Lexical, None),
        ("jazz birthday", 10, RecallMode::Hybrid, Some("jazz")),
        ("something about tea", 4, RecallMode::Lexical, Some("tea")),
        (
            "a dentist visit",
            5,
            RecallMode::Semantic,
            Some("a dentist visit"),
        ),
    ] {
        let mut b = c.recall(ns, q).k(k).mode(mode).proof(true);
        if let Some(t) = topic {
            b = b.where_eq("topic", t);
        }
        let filter = b.filter_asked();
        let r = b.send_full().await?;
        let scores = r.hits.iter().map(|h| h.score).collect();
        let asked = RecallAsked { k, min_ef: 0 };
        let kind = if r.proof.starts_with(cairn_index::filtered::FILTERED_MAGIC) {
            Kind::Filtered(scores, asked, 0, q.to_owned(), filter)
        } else {
            Kind::Hybrid(scores, asked, 0, q.to_owned())
        };
        out.push((
            ProofFile {
                kind,
                namespace: ns.into(),
                items: items(r.hits.iter().map(|h| (h.id.clone(), h.record.clone())))?,
                proof: r.proof,
                cosigs: Vec::new(),
            },
            format!("{mode:?} recall k={k} {q:?} filter {topic:?} in {ns} ({n} memories)"),
        ));
    }
    Ok(out)
}

async fn run(out_dir: &Path, big: usize, only_big: bool) -> Result<()> {
    std::fs::create_dir_all(out_dir)?;
    let data = temp_dir();
    // Graph-mode recall proofs from 40 memories up (exact-mode below).
    let node = Node::start_with(data.path(), &["--exact-proof-limit", "40"])?;
    let c = node.client().await?;
    let trusted = parse_node_id(&c.node_info().await?.node_id)?;
    let witness = SigningKey::from_bytes(&[42; 32]);
    let mut corpus = Corpus {
        dir: out_dir.to_owned(),
        trusted,
        other: SigningKey::from_bytes(&[43; 32]).verifying_key().to_bytes(),
        pinned: vec![witness.verifying_key().to_bytes()],
        cases: Vec::new(),
        n: 0,
    };
    let mut sizes = vec![
        ("c/one", 1usize),
        ("c/seven", 7),
        ("c/sixty", 60),
        ("c/three-hundred", 300),
    ];
    if only_big {
        sizes.clear();
    }
    if big > 0 {
        sizes.push(("c/big", big));
    }
    for (ns, n) in sizes {
        let all = texts(ns, n);
        for chunk in all.chunks(500) {
            c.remember(ns, chunk.to_vec()).await?;
        }
        if n >= 60 {
            // Tombstones and a keyed replacement in the committed state.
            let listed = c
                .list(
                    ns,
                    ListOptions {
                        limit: Some(10),
                        ..Default::default()
                    },
                )
                .await?;
            let gone: Vec<String> = listed
                .memories
                .iter()
                .step_by(3)
                .map(|m| m.id.clone())
                .collect();
            c.forget(ns, gone).await?;
            c.remember(
                ns,
                vec![NewMemory::new("The favourite tea is oolong.").key("tea")],
            )
            .await?;
            c.remember(
                ns,
                vec![NewMemory::new("The favourite tea is sencha.").key("tea")],
            )
            .await?;
        }
        for (f, what) in answers(&c, ns, n).await? {
            if big > 0 && ns == "c/big" {
                // Timing corpus: honest answers only.
                corpus.add(&f, true, format!("honest {what}"))?;
            } else {
                corpus.honest(f, &what, &witness)?;
            }
        }
        eprintln!(
            "proof-corpus: {ns} done, {} cases so far",
            corpus.cases.len()
        );
    }
    let honest = corpus.cases.iter().filter(|c| c["honest"] == true).count();
    let manifest = json!({
        "version": 1,
        "node_ids": { "trusted": hex::encode(corpus.trusted), "other": hex::encode(corpus.other) },
        "pinned_witnesses": corpus.pinned.iter().map(hex::encode).collect::<Vec<_>>(),
        "cases": corpus.cases,
    });
    std::fs::write(
        out_dir.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest)?,
    )?;
    let n = corpus.cases.len();
    let accepted = corpus.cases.iter().filter(|c| c["accept"] == true).count();
    println!(
        "proof-corpus: {n} cases ({honest} honest, {} tampered; {accepted} accepted by the Rust verifier) in {}",
        n - honest,
        out_dir.display()
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut out, mut big, mut only_big) = (None, 0usize, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = args.next().map(PathBuf::from),
            "--big" => big = args.next().context("--big N")?.parse().context("--big N")?,
            "--only-big" => only_big = true,
            _ => bail!("usage: proof_corpus --out DIR [--big N [--only-big]]"),
        }
    }
    let out = out.context("usage: proof_corpus --out DIR [--big N [--only-big]]")?;
    run(&out, big, only_big).await
}
