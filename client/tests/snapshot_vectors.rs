//! Test vector of docs/PROOFS.md "Snapshots": the snapshot hash of two parts.

#[test]
fn snapshot_hash_vector() {
    let parts = vec![b"x".to_vec(), b"yz".to_vec()];
    let got = hex::encode(cairn_client::snapshot_hash(&parts));
    // BLAKE3(BLAKE3("x") ‖ BLAKE3("yz")), as an iroh HashSeq of the two parts hashes to.
    let mut seq = Vec::new();
    seq.extend_from_slice(blake3::hash(b"x").as_bytes());
    seq.extend_from_slice(blake3::hash(b"yz").as_bytes());
    assert_eq!(got, blake3::hash(&seq).to_hex().to_string());
    assert_eq!(
        got,
        "a5f554c6ce82a2f4dbb09165ac2880272073f427c67e00925b79996450425041"
    );
}
