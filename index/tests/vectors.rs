//! Test vectors published in docs/PROOFS.md. If any of these change, the formats changed: bump a version.

use cairn_index::commit::{
    graph_leaf_bytes, graph_leaf_hash, lists_hash, quantise, time_leaf_bytes, time_leaf_hash,
    GraphNode, TimeEntry,
};
use cairn_index::id::MemoryId;
use cairn_index::merkle::{leaf_hash, node_hash, Tree};
use cairn_index::root::{RootRecord, SignedRoot};
use ed25519_dalek::SigningKey;

fn node() -> GraphNode {
    GraphNode {
        node: 7,
        id: MemoryId([0xaa; 32]),
        created_at: 1_700_000_000_000,
        alive: true,
        level: 1,
        vector: quantise(&[0.5, -0.5, 0.5, -0.5]),
    }
}

fn lists() -> Vec<Vec<u32>> {
    vec![vec![1, 2, 3], vec![4]]
}

fn root_record() -> RootRecord {
    let key = SigningKey::from_bytes(&[0x42; 32]);
    RootRecord {
        version: 1,
        namespace: "agents/alice".into(),
        seq: 2,
        prev: [0x11; 32],
        graph_leaves: 3,
        graph_root: [0x22; 32],
        time_leaves: 2,
        time_root: [0x33; 32],
        entry: 1,
        max_level: 1,
        m: 16,
        m0: 32,
        quantiser: 1,
        distance: 1,
        dim: 4,
        model: [0x44; 32],
        created_at: 1_700_000_000_000,
        node_id: key.verifying_key().to_bytes(),
        lexicon: None,
    }
}

#[test]
fn published_vectors() {
    let n = node();
    assert_eq!(n.vector, vec![64, -64, 64, -64]);
    let lh = lists_hash(&lists());
    assert_eq!(
        hex::encode(lh),
        "f92fbf1df2d0b7a700f2f3e50b2f9d1b8f033efb0ca19f34fbda55475d258628"
    );
    assert_eq!(
        hex::encode(graph_leaf_bytes(&n, &lh)),
        format!(
            "43474c3100000007{}0000018bcfe568000101000440c040c0{}",
            "aa".repeat(32),
            hex::encode(lh)
        )
    );
    assert_eq!(
        hex::encode(graph_leaf_hash(&n, &lh)),
        "3f51482439fc721cd89953967c5fd22bbd42e7f8b6cdc43bf445ae56f72ad81c"
    );
    let e = TimeEntry {
        created_at: 1_700_000_000_000,
        id: MemoryId([0xbb; 32]),
        node: 7,
    };
    assert_eq!(
        hex::encode(time_leaf_bytes(&e)),
        format!("43544c310000018bcfe56800{}00000007", "bb".repeat(32))
    );
    assert_eq!(
        hex::encode(time_leaf_hash(&e)),
        "09157531c83778ffa8d10ed03afbd9f66da4cdc60e0340f17296a57bc57479fd"
    );
    let leaves: Vec<[u8; 32]> = (0u8..3).map(|i| leaf_hash(&[i])).collect();
    assert_eq!(
        hex::encode(leaves[0]),
        "1ad48f49627079d806b802c74f40c39d55fe1d78b3faf0f8017aec62cec42122"
    );
    assert_eq!(
        hex::encode(node_hash(&leaves[0], &leaves[1])),
        "5dd74fd6599404075507e25430c736438b5ca129df0b0d66ad327ace8567db27"
    );
    let t = Tree::build(&leaves);
    assert_eq!(
        hex::encode(t.root()),
        "e5c3efc99fafeaad62bc1e882657673cdfbe3c5a41110924160abebfe0035291"
    );
    let lemmas: Vec<String> = t.prove(&[1]).unwrap().iter().map(hex::encode).collect();
    assert_eq!(
        lemmas,
        vec![
            "0013f4c84c09ed4f906f561e31fb6cb5336107f6813206a1f8860ab1ad35f2b8",
            "1ad48f49627079d806b802c74f40c39d55fe1d78b3faf0f8017aec62cec42122"
        ]
    );
    let r = root_record();
    assert_eq!(
        hex::encode(r.hash()),
        "7f3e71c7b026953f742145016ac420e92dc8e1ba8dbb61489226d84c9554cb7f"
    );
    let s = SignedRoot::sign(r, &SigningKey::from_bytes(&[0x42; 32]));
    assert_eq!(
        hex::encode(s.record.node_id),
        "2152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12"
    );
    assert_eq!(
        hex::encode(s.signature),
        "472d1b720a705dd0c530bf2c5d62d5d60005ba69d474ac34fc464265cdec2d66dd1b24f1d2b375a16b979cc9399f57f93d5f392f62241a095579538147dd7302"
    );
    assert!(s.verify(Some(&s.record.node_id)).is_ok());
    let witness = SigningKey::from_bytes(&[0x43; 32]);
    assert_eq!(
        hex::encode(witness.verifying_key().to_bytes()),
        "22fc297792f0b6ffc0bfcfdb7edb0c0aa14e025a365ec0e342e86e3829cb74b6"
    );
    assert_eq!(
        hex::encode(cairn_index::root::cosign(&s.record, &witness)),
        "fe9d80a79b927c84946bbc65b817bb7ec2e7671e98998c29c584c56f54fdae9832c553fd0abb96ebc405f879d0bea4eee11520ca2741aa62c64f842576b28a0f"
    );
    let mut coded = Vec::new();
    cairn_index::vcode::encode_vector(&[0, -1, 1, 4], &mut coded);
    assert_eq!(hex::encode(&coded), "89a400");
}

/// docs/PROOFS.md, "Lexical index": tokenizer, postings, term leaf, fixed-point BM25, fusion, version-2 root.
#[test]
fn lexical_vectors() {
    use cairn_index::lexical::*;
    use cairn_index::root::LexCommit;
    assert_eq!(
        tokenize("Caroline's 2 trips to PARIS (May 7, 2023): don't stop!"),
        vec!["carolin", "2", "trip", "pari", "may", "7", "2023", "stop"]
    );
    // Facet terms (index version 2).
    let f = facet_term("speaker", "Caroline");
    assert_eq!(f.len(), 33);
    assert_eq!(&f[1..], "e1807ab5ae28536a6aae80888da64828");
    assert_eq!(f.as_bytes()[0], 0);
    let d = DocTerms::of("Paris, paris and Lyon");
    assert_eq!(d.terms, vec![("lyon".into(), 1), ("pari".into(), 2)]);
    assert_eq!(d.len, 3);
    let postings = [
        Posting {
            node: 3,
            tf: 2,
            dl: 3,
        },
        Posting {
            node: 9,
            tf: 1,
            dl: 12,
        },
    ];
    let ph = postings_hash(&postings);
    assert_eq!(
        hex::encode(ph),
        "8e0ef4166f0b98227472be5a02f72a944c9bc03e56faab0cdab4c55b3d2b1097"
    );
    assert_eq!(
        hex::encode(term_leaf_bytes("paris", 2, &ph)),
        format!(
            "434c5431000570617269730000000{}",
            "28e0ef4166f0b98227472be5a02f72a944c9bc03e56faab0cdab4c55b3d2b1097"
        )
    );
    assert_eq!(
        hex::encode(term_leaf_hash("paris", 2, &ph)),
        "e42c1496817c8099e9b99bab844329721651ebfb74481b0c429374c244fc72c9"
    );
    assert_eq!(log2_fixed(3), 103_872);
    assert_eq!(log2_fixed(1000), 653_117);
    assert_eq!(idf_fixed(100, 2), 349_719);
    assert_eq!(tf_fixed(2, 3, 100, 1000), 112_201);
    assert_eq!(tf_fixed(1, 12, 100, 1000), 60_579);
    let top = bm25_top(
        &[&postings],
        Corpus {
            docs: 100,
            total_len: 1000,
        },
        10,
    );
    assert_eq!(top, vec![(39_238_821_519, 3), (21_185_627_301, 9)]);
    assert_eq!(fixed_score(top[0].0).to_bits(), 0x4112_2d0e);
    assert_eq!(
        fuse(&[&[5, 1, 2], &[1, 5, 9]], 4),
        vec![
            (748_365_513, 1),
            (748_365_513, 5),
            (330_382_099, 2),
            (330_382_099, 9)
        ]
    );
    let mut r = root_record();
    r.version = 2;
    r.lexicon = Some(LexCommit {
        tokenizer: 1,
        terms: 2,
        root: [0x55; 32],
        total_len: 15,
    });
    assert_eq!(
        hex::encode(r.hash()),
        "427e2e0de9f5e15d62609f4a7d3b7b5ee7d8c4bb44ac00d2f1b208a5857d5b8e"
    );
    let s = SignedRoot::sign(r, &SigningKey::from_bytes(&[0x42; 32]));
    assert_eq!(
        hex::encode(s.signature),
        "d1ca3f336d8aee8a1547365536a7dc22bbce4a6e9b2992ab59f6c0246bf42aa36bf198ff2e0ffc47e768b9a9d3864be040d31728c1d3e11d8e52c5f093ea6c0f"
    );
}

/// Paged trees (root version 3) over leaves `leaf_hash(u64be(i))`, i < 2500: the graph root, the time tree's
/// pages and root, and the lemma counts of two proofs. Python checks the same values.
#[test]
fn paged_tree_vectors() {
    use cairn_index::paged::{verify_chunked, verify_fixed, ChunkedTree, FixedTree};
    let leaves: Vec<[u8; 32]> = (0..2500u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let g = FixedTree::build(&leaves);
    let t = ChunkedTree::build(&leaves);
    let idx = [5u64, 1023, 1024, 2499];
    let glem = g.prove(&idx).unwrap();
    let claimed: Vec<(u64, [u8; 32])> = idx.iter().map(|&j| (j, leaves[j as usize])).collect();
    verify_fixed(&g.root(), 2500, &claimed, &glem).unwrap();
    let (refs, tlem) = t.prove(&idx).unwrap();
    verify_chunked(&t.root(), 2500, t.pages(), &refs, &claimed, &tlem).unwrap();
    let firsts: Vec<u64> = refs.iter().map(|r| r.first).collect();
    let got = format!(
        "graph_root {} graph_lemmas {} time_pages {} time_root {} refs {:?} time_lemmas {}",
        hex::encode(g.root()),
        glem.len(),
        t.pages(),
        hex::encode(t.root()),
        refs.iter()
            .map(|r| (r.page, r.first, r.count))
            .collect::<Vec<_>>(),
        tlem.len()
    );
    let _ = firsts;
    assert_eq!(got, "graph_root 7c430b8a7d6b5984996a7355b8c208da1a28276c58c13da0a0269eead92bb30b graph_lemmas 37 time_pages 5 time_root 50923da1b5a4e946e39ec7b097ffdbc28a774b0c60471a7e0a47bab8c240b532 refs [(0, 0, 604), (2, 892, 357), (4, 1607, 893)] time_lemmas 28");
}
