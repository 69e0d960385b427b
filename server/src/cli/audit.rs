//! `cairn audit`: checks a node's whole committed state for a namespace, trusting only the owner's key.
//!
//! The snapshot (every graph node and the root chain) is untrusted input. Rebuilding both trees from it and
//! matching the signed root proves that each leaf is committed, that the timeline is exactly the sorted live
//! set (so List completeness holds globally, not only locally), and gives the exact graph the proof search
//! walks. On it the audit checks reachability and compares the node's proven answers with exact search.

use crate::store::terms::IntoTerms;
use std::path::Path;

use anyhow::{bail, Context, Result};
use cairn_client::verify::{self as v, RecallAsked};
use cairn_client::CairnClient;
use cairn_index::proof::RecallProof;
use serde_json::json;

use super::output::print_json;
use crate::engine::commitment::Commitment;
use cairn_index::sync::{decode_reply, Reply};

/// Largest snapshot the audit takes in.
const MAX_SNAPSHOT: usize = 4 << 30;

/// Runs the audit and prints its report; fails if the snapshot does not verify.
pub async fn run(
    client: &CairnClient,
    ns: &str,
    from: &str,
    queries: Option<&Path>,
    k: u32,
    json: bool,
) -> Result<()> {
    let owner = v::parse_node_id(from).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let snap = client.snapshot(ns, MAX_SNAPSHOT).await?;
    let size: usize = snap.parts.iter().map(Vec::len).sum();
    let mut parts = snap.parts.into_iter();
    let answer = parts.next().context("snapshot without parts")?;
    let pages: Vec<bytes::Bytes> = parts.map(bytes::Bytes::from).collect();
    let reply = tokio::task::spawn_blocking(move || decode_reply(&answer)).await??;
    let Reply::Answer(c) = reply else {
        bail!("the node holds no committed state for {ns}");
    };
    if !c.out.full {
        bail!("audit failed: the snapshot is not a full graph");
    }
    cairn_index::root::verify_chain(&c.chain, &owner, ns, None)
        .map_err(|e| anyhow::anyhow!("audit failed: {e}"))?;
    let root = c.out.root.clone();
    let nodes = c.out.nodes;
    // The record pages must hold exactly the live leaves' records, each once, matching its leaf.
    let leaves: std::collections::HashMap<cairn_index::id::MemoryId, u64> = nodes
        .iter()
        .filter(|n| n.node.alive)
        .map(|n| (n.node.id, n.node.created_at))
        .collect();
    let numbers: std::collections::HashMap<cairn_index::id::MemoryId, u32> = nodes
        .iter()
        .filter(|n| n.node.alive)
        .map(|n| (n.node.id, n.node.node))
        .collect();
    let name = ns.to_owned();
    let (records, docs) =
        tokio::task::spawn_blocking(move || check_pages(&pages, &leaves, &name)).await??;
    let commit = tokio::task::spawn_blocking(move || -> Result<Commitment> {
        let mut commit = Commitment::default();
        commit
            .apply_replica(nodes, root, true)
            .map_err(|e| anyhow::anyhow!("audit failed: {e}"))?;
        // The lexical index must be exactly what the records tokenize to.
        let docs = docs
            .into_iter()
            .filter_map(|(id, d, f)| numbers.get(&id).map(|&n| (n, d.into_terms(), f)))
            .collect();
        commit
            .apply_replica_docs(docs)
            .map_err(|e| anyhow::anyhow!("audit failed: {e}"))?;
        Ok(commit)
    })
    .await??;
    let root = commit.root().cloned().context("no root")?;
    let unreachable = commit.unreachable_live();

    let mut recall_sum = 0.0;
    let mut asked = 0usize;
    let mut other_root = 0usize;
    if let Some(path) = queries {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for q in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            // The audit measures the semantic proof search against exact search.
            let resp = client
                .recall(ns, q)
                .k(k)
                .mode(cairn_proto::v1::RecallMode::Semantic)
                .proof(true)
                .send_full()
                .await?;
            let ask = RecallAsked { k, min_ef: 0 };
            let vd = v::recall(ns, &ask, &resp, &owner, None).map_err(|e| {
                anyhow::anyhow!("audit failed: answer to {q:?} does not verify: {e}")
            })?;
            if vd.root.record.hash() != root.record.hash() {
                // A write landed after the snapshot; this answer is about another state.
                other_root += 1;
                continue;
            }
            let proof = RecallProof::decode(&resp.proof, &Default::default())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let exact = commit.exact_top(&proof.query, k as usize);
            let got = resp
                .hits
                .iter()
                .filter(|h| exact.iter().any(|e| e.to_hex() == h.id))
                .count();
            recall_sum += got as f64 / exact.len().max(1) as f64;
            asked += 1;
        }
    }
    let recall = (asked > 0).then(|| recall_sum / asked as f64);
    if json {
        print_json(&json!({
            "namespace": ns,
            "owner": hex::encode(owner),
            "seq": root.record.seq,
            "root": hex::encode(root.record.hash()),
            "snapshot": hex::encode(snap.hash),
            "snapshot_bytes": size,
            "records_verified": records,
            "nodes": commit.len(),
            "memories": commit.live_count(),
            "every_leaf_verified": true,
            "unreachable": unreachable,
            "queries": asked,
            "queries_on_newer_roots": other_root,
            "recall_at_k": recall,
            "k": k,
        }));
    } else {
        println!(
            "snapshot {} of {ns} at root seq {} by {}: {} nodes, {} memories, {:.1} MB; every leaf verified, every record ({records}) matches its leaf",
            hex::encode(snap.hash),
            root.record.seq,
            hex::encode(owner),
            commit.len(),
            commit.live_count(),
            size as f64 / 1e6
        );
        println!("memories unreachable in the committed graph: {unreachable}");
        if let Some(r) = recall {
            println!("recall@{k} of the node's proven answers against exact search: {r:.4} over {asked} queries");
        }
        if other_root > 0 {
            println!("{other_root} queries were answered at a newer root and not scored");
        }
    }
    Ok(())
}

/// Checks that the record pages hold the record of every live leaf exactly once and nothing else (the rule
/// replicas apply too), each decoding to a memory of this namespace with its leaf's created_at. Returns how many
/// records were checked.
/// Checks the record pages against the live leaves; returns how many records there are and their index terms.
#[allow(clippy::type_complexity)]
fn check_pages(
    pages: &[bytes::Bytes],
    leaves: &std::collections::HashMap<cairn_index::id::MemoryId, u64>,
    ns: &str,
) -> Result<(
    usize,
    Vec<(
        cairn_index::id::MemoryId,
        cairn_index::lexical::DocTerms,
        Vec<String>,
    )>,
)> {
    use cairn_index::record::MemoryRecord;
    let live = leaves.keys().copied().collect();
    let found = crate::engine::snapshot::records_of_pages(pages, &live)
        .map_err(|e| anyhow::anyhow!("audit failed: {e}"))?;
    let mut docs = Vec::with_capacity(found.len());
    for (_, r) in &found {
        let rec = MemoryRecord::decode(&r.bytes)
            .map_err(|e| anyhow::anyhow!("audit failed: record {}: {e}", r.id))?;
        if rec.namespace != ns || Some(&rec.created_at) != leaves.get(&r.id) {
            bail!("audit failed: record {} does not match its leaf", r.id);
        }
        docs.push((
            r.id,
            cairn_index::lexical::DocTerms::of(&rec.text),
            cairn_index::lexical::facet_terms(&rec.metadata),
        ));
    }
    Ok((found.len(), docs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::snapshot::encode_page;
    use bytes::Bytes;
    use cairn_index::id::MemoryId;
    use cairn_index::record::MemoryRecord;

    fn record(i: u8) -> Bytes {
        Bytes::from(
            MemoryRecord {
                namespace: "ns".into(),
                created_at: 1000 + u64::from(i),
                salt: [i; cairn_index::record::SALT_LEN],
                text: format!("memory {i}"),
                metadata: Default::default(),
            }
            .encode(),
        )
    }

    #[test]
    fn pages_must_hold_exactly_the_live_records() {
        let recs: Vec<Bytes> = (0..5).map(record).collect();
        let leaves: std::collections::HashMap<MemoryId, u64> = recs
            .iter()
            .enumerate()
            .map(|(i, r)| (MemoryId::of_bytes(r), 1000 + i as u64))
            .collect();
        let page = |rs: &[Bytes]| encode_page(rs);
        assert_eq!(
            check_pages(&[page(&recs[..2]), page(&recs[2..])], &leaves, "ns")
                .unwrap()
                .0,
            5
        );
        // Missing, duplicated, foreign, or in another namespace: all fail.
        assert!(check_pages(&[page(&recs[..4])], &leaves, "ns").is_err());
        let mut dup = recs.clone();
        dup.push(recs[0].clone());
        assert!(check_pages(&[page(&dup)], &leaves, "ns").is_err());
        let mut extra = recs.clone();
        extra.push(record(9));
        assert!(check_pages(&[page(&extra)], &leaves, "ns").is_err());
        assert!(check_pages(&[page(&recs)], &leaves, "other").is_err());
        // Garbage never panics.
        assert!(check_pages(&[Bytes::from_static(&[0, 0, 0, 9, 1])], &leaves, "ns").is_err());
    }
}
