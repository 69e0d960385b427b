//! Property tests over every decoder and verifier that reads untrusted bytes: arbitrary input and mutated
//! valid proofs must give an error or a value, never a panic.

use cairn_index::commit::{quantise, time_leaf_hash, TimeEntry};
use cairn_index::filtered::{
    filtered_answer, verify_filtered, FilteredAsked, FilteredProof, RecallFilter, FMODE_HYBRID,
    FMODE_LEXICAL, FMODE_SEMANTIC,
};
use cairn_index::hybrid::{
    hybrid_answer, verify_hybrid, GraphPart, HybridAsked, HybridProof, TermLeaf, TermPostings,
    MODE_HYBRID, MODE_LEXICAL,
};
use cairn_index::id::MemoryId;
use cairn_index::lexical::{postings_hash, term_leaf_hash, Posting};
use cairn_index::merkle::Tree;
use cairn_index::proof::{
    recall_answer, verify_get, verify_list, verify_recall, ListRange, RecallAsked, RecallProof,
    Returned, TimeProof, VerifyLimits,
};
use cairn_index::record::MemoryRecord;
use cairn_index::root::{LexCommit, RootRecord, SignedRoot};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[3; 32])
}

fn root(time: &Tree) -> SignedRoot {
    let k = key();
    SignedRoot::sign(
        RootRecord {
            version: 1,
            namespace: "fz".into(),
            seq: 1,
            prev: [0; 32],
            graph_leaves: 0,
            graph_root: [0; 32],
            time_leaves: time.len(),
            time_root: time.root(),
            entry: u32::MAX,
            max_level: 0,
            m: 16,
            m0: 32,
            quantiser: 1,
            distance: 1,
            dim: 4,
            model: [0; 32],
            created_at: 0,
            node_id: k.verifying_key().to_bytes(),
            lexicon: None,
        },
        &k,
    )
}

fn valid_time_proof() -> Vec<u8> {
    let entries: Vec<TimeEntry> = (0..9u64)
        .map(|i| TimeEntry {
            created_at: i * 10,
            id: MemoryId([i as u8; 32]),
            node: i as u32,
        })
        .collect();
    let tree = Tree::build(&entries.iter().map(time_leaf_hash).collect::<Vec<_>>());
    let idx: Vec<u64> = (2..6).collect();
    TimeProof {
        pages: None,
        root: root(&tree),
        entries: idx.iter().map(|&i| (i, entries[i as usize])).collect(),
        lemmas: tree.prove(&idx).expect("prove"),
    }
    .encode()
}

/// A valid `CPT2` proof against a version-3 root: 3,000 entries in a paged time tree, positions in its first and
/// last pages and between.
fn valid_paged_time_proof() -> Vec<u8> {
    static PROOF: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    PROOF
        .get_or_init(|| {
            let entries: Vec<TimeEntry> = (0..3000u64)
                .map(|i| TimeEntry {
                    created_at: i * 10,
                    id: MemoryId(*blake3::hash(&i.to_be_bytes()).as_bytes()),
                    node: i as u32,
                })
                .collect();
            let tree = cairn_index::paged::ChunkedTree::build(
                &entries.iter().map(time_leaf_hash).collect::<Vec<_>>(),
            );
            let idx: Vec<u64> = vec![0, 1, 2, 1500, 1501, 2998, 2999];
            let (refs, lemmas) = tree.prove(&idx).expect("prove");
            let k = key();
            let mut r = root(&Tree::build(&[])).record;
            r.version = cairn_index::root::ROOT_VERSION;
            r.time_leaves = tree.len();
            r.time_root = tree.root();
            r.lexicon = Some(LexCommit {
                tokenizer: 1,
                terms: 0,
                root: [0; 32],
                total_len: 0,
            });
            TimeProof {
                pages: Some(cairn_index::paged::ChunkedPages {
                    pages: tree.pages(),
                    refs,
                }),
                root: SignedRoot::sign(r, &k),
                entries: idx.iter().map(|&i| (i, entries[i as usize])).collect(),
                lemmas,
            }
            .encode()
        })
        .clone()
}

fn exercise(bytes: &[u8]) {
    let lim = VerifyLimits::default();
    let trusted = key().verifying_key().to_bytes();
    let id = MemoryId([1; 32]);
    let rec = [0u8; 3];
    let returned = [Returned {
        id: &id,
        record: &rec,
    }];
    let _ = MemoryRecord::decode(bytes);
    let _ = RootRecord::decode(bytes);
    let _ = SignedRoot::decode(bytes);
    let _ = TimeProof::decode(bytes, &lim);
    if let Ok(p) = RecallProof::decode(bytes, &lim) {
        let _ = recall_answer(&p);
    }
    let _ = verify_get(bytes, "fz", &trusted, &returned, &lim);
    let range = ListRange {
        since: 0,
        until: u64::MAX,
        after: None,
        limit: 10,
    };
    let _ = verify_list(bytes, "fz", &trusted, &range, &returned, &lim);
    let _ = verify_recall(
        bytes,
        "fz",
        &trusted,
        &RecallAsked { k: 1, min_ef: 0 },
        &returned,
        &[0.5],
        &lim,
    );
    if let Ok(p) = HybridProof::decode(bytes, &lim) {
        let _ = hybrid_answer(&p);
    }
    if let Ok(p) = FilteredProof::decode(bytes, &lim) {
        let _ = filtered_answer(&p);
    }
    let filter = RecallFilter {
        pairs: vec![("speaker".into(), "Caroline".into())],
        since: Some(1),
        until: None,
    };
    // Each verify checks a signature first (slow in debug builds): one call per mode, filters alternating.
    for (f, mode) in [
        (RecallFilter::default(), FMODE_LEXICAL),
        (filter, FMODE_HYBRID),
        (RecallFilter::default(), FMODE_SEMANTIC),
    ] {
        {
            let _ = verify_filtered(
                bytes,
                "fz",
                &trusted,
                &FilteredAsked {
                    mode,
                    k: 1,
                    min_depth: 1,
                    filter: &f,
                    query: Some("tea paris"),
                },
                &returned,
                &[0.5],
                &lim,
            );
        }
    }
    for mode in [MODE_LEXICAL, MODE_HYBRID] {
        let _ = verify_hybrid(
            bytes,
            "fz",
            &trusted,
            &HybridAsked {
                mode,
                k: 1,
                min_ef: 0,
                min_depth: 1,
                query: Some("tea paris"),
            },
            &returned,
            &[0.5],
            &lim,
        );
    }
}

/// A small, valid filtered proof (lexical, a time range, no pairs) built from the lexical one's parts.
fn valid_filtered_proof() -> Vec<u8> {
    static PROOF: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    PROOF.get_or_init(make_filtered_proof).clone()
}

fn make_filtered_proof() -> Vec<u8> {
    let h = HybridProof::decode(&valid_lexical_proof(), &VerifyLimits::default()).expect("decode");
    FilteredProof {
        root: h.root,
        mode: FMODE_LEXICAL,
        k: 1,
        depth: 1,
        filter: RecallFilter {
            pairs: Vec::new(),
            since: Some(0),
            until: Some(5),
        },
        terms: h.terms,
        query: Vec::new(),
        leaves: h.leaves,
        lex_lemmas: h.lex_lemmas,
        lex_pages: h.lex_pages,
        nodes: Vec::new(),
        lemmas: Vec::new(),
    }
    .encode()
}

/// A small, valid lexical proof: three terms committed, one query term present with its postings, one absent.
fn valid_lexical_proof() -> Vec<u8> {
    let post = vec![
        Posting {
            node: 0,
            tf: 1,
            dl: 2,
        },
        Posting {
            node: 2,
            tf: 2,
            dl: 3,
        },
    ];
    let terms = [
        (
            "coffe",
            postings_hash(&[Posting {
                node: 1,
                tf: 1,
                dl: 1,
            }]),
            1u32,
        ),
        ("pari", postings_hash(&post), 2),
        (
            "zebra",
            postings_hash(&[Posting {
                node: 1,
                tf: 1,
                dl: 1,
            }]),
            1,
        ),
    ];
    let leaves: Vec<[u8; 32]> = terms
        .iter()
        .map(|(t, h, df)| term_leaf_hash(t, *df, h))
        .collect();
    let tree = Tree::build(&leaves);
    let mut r = root(&Tree::build(&[])).record;
    r.time_leaves = 3;
    r.version = 2;
    r.lexicon = Some(LexCommit {
        tokenizer: 1,
        terms: 3,
        root: tree.root(),
        total_len: 6,
    });
    let root = SignedRoot::sign(r, &key());
    HybridProof {
        root,
        mode: MODE_LEXICAL,
        k: 1,
        depth: 1,
        terms: vec!["tea".into(), "pari".into()],
        leaves: vec![
            TermLeaf {
                position: 0,
                term: "coffe".into(),
                df: 1,
                postings: TermPostings::Hash(terms[0].1),
            },
            TermLeaf {
                position: 1,
                term: "pari".into(),
                df: 2,
                postings: TermPostings::Full(post),
            },
            TermLeaf {
                position: 2,
                term: "zebra".into(),
                df: 1,
                postings: TermPostings::Hash(terms[2].1),
            },
        ],
        lex_lemmas: tree.prove(&[0, 1, 2]).expect("prove"),
        lex_pages: None,
        graph: GraphPart::Nodes {
            nodes: Vec::new(),
            lemmas: Vec::new(),
        },
    }
    .encode()
}

proptest! {
    // Nearly every mutated filtered proof decodes, so each case pays for several signature checks (slow in
    // debug builds): fewer cases than the other decoders.
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn mutated_filtered_proofs_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
        let good = valid_filtered_proof();
        let p = FilteredProof::decode(&good, &VerifyLimits::default()).expect("decode");
        // No graph node can pass (the graph is empty): the honest answer is empty.
        prop_assert!(filtered_answer(&p).expect("answer").hits.is_empty());
        let mut b = good.clone();
        for (i, x) in flips {
            let n = b.len();
            b[i % n] ^= x;
        }
        exercise(&b);
        let n = b.len();
        exercise(&b[..cut % n]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_paged_time_proofs_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
        let mut b = valid_paged_time_proof();
        for (i, x) in flips {
            let n = b.len();
            b[i % n] ^= x;
        }
        exercise(&b);
        let n = b.len();
        exercise(&b[..cut % n]);
    }

    #[test]
    fn mutated_time_proofs_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
        let mut b = valid_time_proof();
        for (i, x) in flips {
            let n = b.len();
            b[i % n] ^= x;
        }
        exercise(&b);
        let n = b.len();
        exercise(&b[..cut % n]);
    }

    #[test]
    fn mutated_lexical_proofs_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
        let good = valid_lexical_proof();
        // The honest proof's term leaves check out (its one ranked node has no graph leaf here, so the answer
        // itself is refused as incomplete, not malformed).
        let p = HybridProof::decode(&good, &VerifyLimits::default()).expect("decode");
        prop_assert!(matches!(hybrid_answer(&p), Err(cairn_index::proof::VerifyError::Mismatch(m)) if m.contains("graph leaf")));
        let mut b = good.clone();
        for (i, x) in flips {
            let n = b.len();
            b[i % n] ^= x;
        }
        exercise(&b);
        let n = b.len();
        exercise(&b[..cut % n]);
    }

    #[test]
    fn mutated_recall_proofs_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        // A small but structurally complete recall proof (exact mode over 3 nodes).
        use cairn_index::commit::{graph_leaf_hash, lists_hash, GraphNode};
        use cairn_index::proof::{NodeLists, ProofNode, MODE_EXACT};
        let nodes: Vec<ProofNode> = (0..3u32).map(|i| ProofNode {
            node: GraphNode { node: i, id: MemoryId([i as u8; 32]), created_at: 1, alive: true, level: 0, vector: quantise(&[0.5, 0.5, 0.5, 0.5]) },
            lists: NodeLists::Full(vec![vec![(i + 1) % 3]]),
        }).collect();
        let leaves: Vec<[u8; 32]> = nodes.iter().map(|n| match &n.lists {
            NodeLists::Full(l) => graph_leaf_hash(&n.node, &lists_hash(l)),
            NodeLists::Hash(h) => graph_leaf_hash(&n.node, h),
        }).collect();
        let tree = Tree::build(&leaves);
        let mut r = root(&Tree::build(&[]));
        r.record.graph_leaves = 3;
        r.record.graph_root = tree.root();
        r.record.entry = 0;
        let r = SignedRoot::sign(r.record, &key());
        let p = RecallProof { root: r, mode: MODE_EXACT, k: 2, ef: 4, query: quantise(&[0.5, 0.5, 0.5, 0.5]), nodes, lemmas: tree.prove(&[0, 1, 2]).expect("prove") };
        let good = p.encode();
        prop_assert!(recall_answer(&RecallProof::decode(&good, &VerifyLimits::default()).expect("decode")).is_ok());
        let mut b = good.clone();
        for (i, x) in flips {
            let n = b.len();
            b[i % n] ^= x;
        }
        exercise(&b);
    }
}

/// docs/PROOFS.md, "Fixed-point BM25": a query term in more than 10,000 memories is skipped, visibly: its leaf
/// carries only the postings hash and its df, the verifier ranks without it, and a proof that carries such a list
/// in full is refused.
#[test]
fn terms_over_the_df_cap_are_skipped_visibly() {
    use cairn_index::lexical::MAX_DF;
    let rare = vec![Posting {
        node: 5,
        tf: 1,
        dl: 2,
    }];
    let common: Vec<Posting> = (0..=MAX_DF)
        .map(|n| Posting {
            node: n,
            tf: 1,
            dl: 2,
        })
        .collect();
    let terms = [
        ("common", postings_hash(&common), MAX_DF + 1),
        ("rare", postings_hash(&rare), 1),
    ];
    let leaves: Vec<[u8; 32]> = terms
        .iter()
        .map(|(t, h, df)| term_leaf_hash(t, *df, h))
        .collect();
    let tree = Tree::build(&leaves);
    let mut r = root(&Tree::build(&[])).record;
    r.time_leaves = u64::from(MAX_DF) + 10;
    r.version = 2;
    r.lexicon = Some(LexCommit {
        tokenizer: 1,
        terms: 2,
        root: tree.root(),
        total_len: 2 * (u64::from(MAX_DF) + 10),
    });
    let root = SignedRoot::sign(r, &key());
    let proof = |full: bool| HybridProof {
        root: root.clone(),
        mode: MODE_LEXICAL,
        k: 1,
        depth: 1,
        terms: vec!["common".into(), "rare".into()],
        leaves: vec![
            TermLeaf {
                position: 0,
                term: "common".into(),
                df: MAX_DF + 1,
                postings: if full {
                    TermPostings::Full(common.clone())
                } else {
                    TermPostings::Hash(terms[0].1)
                },
            },
            TermLeaf {
                position: 1,
                term: "rare".into(),
                df: 1,
                postings: TermPostings::Full(rare.clone()),
            },
        ],
        lex_lemmas: tree.prove(&[0, 1]).expect("prove"),
        lex_pages: None,
        graph: GraphPart::Nodes {
            nodes: Vec::new(),
            lemmas: Vec::new(),
        },
    };
    let lim = VerifyLimits::default();
    let p = HybridProof::decode(&proof(false).encode(), &lim).expect("decode");
    // Only "rare" is scored: its one memory (node 5) is the whole ranking; its graph leaf is missing here, so the
    // answer is refused for that reason, after the ranking.
    match hybrid_answer(&p) {
        Err(cairn_index::proof::VerifyError::Mismatch(m)) => {
            assert!(m.contains("ranked node 5"), "{m}")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        HybridProof::decode(&proof(true).encode(), &lim),
        Err(cairn_index::proof::VerifyError::TooLarge(_))
    ));
}

/// The fuzzed `CPT2` proof is valid to begin with, so mutations start from a proof that reaches every check.
#[test]
fn the_paged_time_proof_fixture_verifies() {
    let p = TimeProof::decode(&valid_paged_time_proof(), &VerifyLimits::default()).expect("decode");
    let pages = p.pages.expect("pages");
    assert!(pages.pages >= 2, "the fixture spans pages");
    let leaves: Vec<(u64, [u8; 32])> = p
        .entries
        .iter()
        .map(|(pos, e)| (*pos, time_leaf_hash(e)))
        .collect();
    cairn_index::paged::verify_chunked(
        &p.root.record.time_root,
        p.root.record.time_leaves,
        pages.pages,
        &pages.refs,
        &leaves,
        &p.lemmas,
    )
    .expect("verifies");
}
