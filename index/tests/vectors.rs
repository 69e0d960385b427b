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
