//! Snapshots: the committed state of a namespace at one root, as content-addressed iroh blobs.
//!
//! A snapshot is an iroh HashSeq. Its first part is the full catch-up answer (every graph node and the recent
//! root chain, in the `CSR1` encoding of the sync protocol); every other part is a record page,
//! `(u32be(len) record)*`, holding the canonical bytes of the live memories of 1,024 consecutive points, in
//! point order. Every live memory's record appears exactly once and nothing else does (docs/PROOFS.md,
//! "Snapshots").
//!
//! A fresh replica fetches a snapshot in one iroh-blobs request, every part checked against its BLAKE3 as it
//! streams, then verifies the answer against the owner's key like any catch-up step, checks that the pages
//! hold exactly the live leaves' records, and keeps the pages as record packs: a few large blobs instead of
//! one small blob per memory. Anyone can fetch the same snapshot for `cairn audit`.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use cairn_index::id::MemoryId;

use super::replica::{Packed, StepError};
use super::Engine;
use crate::error::NodeError;
use crate::store::PackLoc;
use cairn_index::sync::{PagesCheck, Reply, ReplyChunks, ReplyReader, MAX_ANSWER, NODES_PER_CHUNK};

/// Points per record page.
pub const PAGE_POINTS: u32 = 1024;
/// Most parts a snapshot may have (about 4 billion points).
pub const MAX_PARTS: usize = 1 << 22;

/// A snapshot as offered to peers (plain data, with its codec in cairn-index).
pub use cairn_index::sync::SnapshotRef;

/// A snapshot kept by this node: what it is and, per page, the ids it holds (to reuse unchanged pages).
#[derive(Debug, Clone, Default)]
pub struct Cached {
    snap: Option<SnapshotRef>,
    /// page number → (BLAKE3 of the page's ids, page hash).
    pages: HashMap<u32, ([u8; 32], [u8; 32])>,
}

/// The page codec and the rule of a valid snapshot live in cairn-index (docs/PROOFS.md "Snapshots").
pub use cairn_index::sync::{parse_page, BadPage, PagesError};

/// Encodes records as one page ([`cairn_index::sync::encode_page`]).
pub fn encode_page(records: &[Bytes]) -> Bytes {
    Bytes::from(cairn_index::sync::encode_page(records))
}

/// A record found in a page: its id (BLAKE3 of its bytes), where it sits, and the bytes.
pub struct PageRecord {
    /// BLAKE3 of the bytes.
    pub id: MemoryId,
    /// Offset of the bytes in the page.
    pub offset: u32,
    /// Length of the bytes.
    pub len: u32,
    /// The bytes (a slice of the page, not a copy).
    pub bytes: Bytes,
}

/// Splits a page into its records, hashing each. Never panics.
pub fn page_records(page: &Bytes) -> Result<Vec<PageRecord>, BadPage> {
    Ok(parse_page(page)?
        .into_iter()
        .map(|(offset, len)| {
            // parse_page keeps offset + len within the page, which is at most u32::MAX bytes.
            let bytes = page.slice(offset as usize..offset as usize + len as usize);
            PageRecord {
                id: MemoryId::of_bytes(&bytes),
                offset,
                len,
                bytes,
            }
        })
        .collect())
}

/// [`cairn_index::sync::records_of_pages`] (every live record exactly once, nothing else), with each record's
/// bytes sliced from its page and the index of its page.
pub fn records_of_pages(
    pages: &[Bytes],
    live: &HashSet<MemoryId>,
) -> Result<Vec<(usize, PageRecord)>, PagesError> {
    Ok(cairn_index::sync::records_of_pages(pages, live)?
        .into_iter()
        .map(|e| {
            let (at, len) = (e.offset as usize, e.len as usize);
            (
                e.page,
                PageRecord {
                    id: e.id,
                    offset: e.offset,
                    len: e.len,
                    bytes: pages[e.page].slice(at..at + len),
                },
            )
        })
        .collect())
}

fn page_fingerprint(ids: &[MemoryId]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    for id in ids {
        h.update(&id.0);
    }
    *h.finalize().as_bytes()
}

impl Engine {
    /// The snapshot of `ns` at its latest root, built now unless the one kept is current. Pages whose
    /// memories did not change since the kept snapshot are reused, so after the first build only the pages
    /// of new or forgotten memories are written again. None when the namespace has no root yet.
    pub async fn snapshot(&self, ns: &str) -> Result<Option<SnapshotRef>, NodeError> {
        let owner = self.owner_of(ns)?;
        let _one = self.snapshot_guard(ns).await?;
        let seq = self.owner_root_seq(ns)?;
        let kept = self.cached_snapshot(ns).await;
        if let Some(s) = kept.snap {
            if s.seq == seq && self.blobs.has_raw(s.hash).await {
                return Ok(Some(s));
            }
        }
        let t0 = std::time::Instant::now();
        let Some(c) = self.catch_up(ns, owner, 0).await? else {
            return Ok(None);
        };
        let t_export = t0.elapsed();
        if !c.out.full {
            return Err(NodeError::Task(
                "snapshot answer is not a full graph".into(),
            ));
        }
        let seq = c.out.root.record.seq;
        let mut alive: Vec<(u32, MemoryId)> = c
            .out
            .nodes
            .iter()
            .filter(|n| n.node.alive)
            .map(|n| (n.node.node, n.node.id))
            .collect();
        alive.sort_unstable();
        // Every part goes to the store as it is made: the answer in pieces from an encoder thread, then each page.
        let mut w = self.blobs.snapshot_writer();
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        let encoder = tokio::task::spawn_blocking(move || {
            let reply = Reply::Answer(Box::new(c));
            for piece in ReplyChunks::new(&reply, NODES_PER_CHUNK) {
                if tx.blocking_send(Ok(Bytes::from(piece))).is_err() {
                    break;
                }
            }
        });
        w.add_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?;
        encoder.await?;
        let t_encode = t0.elapsed();
        let mut fingerprints = Vec::new();
        let mut start = 0;
        while start < alive.len() {
            let page = alive[start].0 / PAGE_POINTS;
            let mut end = start;
            while end < alive.len() && alive[end].0 / PAGE_POINTS == page {
                end += 1;
            }
            let ids: Vec<MemoryId> = alive[start..end].iter().map(|(_, id)| *id).collect();
            start = end;
            let fp = page_fingerprint(&ids);
            fingerprints.push((page, fp));
            if let Some((old_fp, h)) = kept.pages.get(&page) {
                if *old_fp == fp && self.blobs.has_raw(*h).await {
                    w.have(*h);
                    continue;
                }
            }
            let recs = self.records_bulk(&ids).await?;
            w.add(encode_page(&recs)).await?;
        }
        let t_pages = t0.elapsed();
        let (hash, hashes) = w.finish(ns).await?;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let snap = SnapshotRef { seq, hash };
        let pages = fingerprints
            .into_iter()
            .zip(hashes.into_iter().skip(1))
            .map(|((page, fp), h)| (page, (fp, h)))
            .collect();
        self.set_cached_snapshot(
            ns,
            Cached {
                snap: Some(snap),
                pages,
            },
        )
        .await?;
        metrics::counter!("cairn_snapshot_builds_total").increment(1);
        tracing::info!(
            namespace = %ns,
            seq,
            hash = %hex::encode(hash),
            export_ms = ms(t_export),
            encode_ms = ms(t_encode - t_export),
            pages_ms = ms(t_pages - t_encode),
            store_ms = ms(t0.elapsed() - t_pages),
            "snapshot stored"
        );
        Ok(Some(snap))
    }

    /// The snapshot to offer a peer asking for (owner, ns): None unless this node holds that namespace of
    /// that owner (failures are logged, the peer just hears "none").
    pub async fn serve_snapshot(&self, ns: &str, owner: [u8; 32]) -> Option<SnapshotRef> {
        if self.owner_of(ns).ok()? != owner {
            return None;
        }
        match self.snapshot(ns).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(namespace = %ns, error = %e, "snapshot not built");
                None
            }
        }
    }

    /// Keeps everything downloaded from now on from collection until the hold is dropped.
    pub async fn hold_downloads(&self) -> crate::blobs::Hold {
        self.blobs.hold(&[]).await
    }

    /// The kept snapshot: from memory, or after a restart from redb.
    async fn cached_snapshot(&self, ns: &str) -> Cached {
        if let Some(c) = self.snapshots.lock().ok().and_then(|m| m.get(ns).cloned()) {
            return c;
        }
        let st = self.state.clone();
        let name = ns.to_owned();
        match tokio::task::spawn_blocking(move || st.snapshot(&name)).await {
            Ok(Ok(Some(k))) => Cached {
                snap: Some(SnapshotRef {
                    seq: k.seq,
                    hash: k.hash,
                }),
                pages: k.pages.into_iter().map(|(p, fp, h)| (p, (fp, h))).collect(),
            },
            _ => Cached::default(),
        }
    }

    async fn set_cached_snapshot(&self, ns: &str, c: Cached) -> Result<(), NodeError> {
        let st = self.state.clone();
        let name = ns.to_owned();
        let rec = c.snap.map(|s| crate::store::KeptSnapshot {
            seq: s.seq,
            hash: s.hash,
            pages: c.pages.iter().map(|(p, (fp, h))| (*p, *fp, *h)).collect(),
        });
        tokio::task::spawn_blocking(move || st.set_snapshot(&name, rec.as_ref())).await??;
        if let Ok(mut m) = self.snapshots.lock() {
            m.insert(ns.to_owned(), c);
        }
        Ok(())
    }

    /// Waits for `ns`'s snapshot build in progress (if any) and keeps the next one out until dropped.
    pub(crate) async fn snapshot_guard(
        &self,
        ns: &str,
    ) -> Result<tokio::sync::OwnedMutexGuard<()>, NodeError> {
        let one = self
            .snapshot_build
            .lock()
            .map_err(|_| NodeError::Task("snapshot lock table poisoned".into()))?
            .entry(ns.to_owned())
            .or_default()
            .clone();
        Ok(one.lock_owned().await)
    }

    /// Lets go of the namespace's kept snapshot (it holds bytes of memories just forgotten).
    pub(crate) async fn forget_snapshot(&self, ns: &str) -> Result<(), NodeError> {
        // A build in progress may have read the forgotten records already: let it finish, then drop its result.
        let _one = self.snapshot_guard(ns).await?;
        // Only a kept snapshot costs a redb write; the tag is always dropped (a crash between pinning a new
        // snapshot and recording it leaves a tag without a record), which is free when there is none.
        if self.cached_snapshot(ns).await.snap.is_some() {
            self.set_cached_snapshot(ns, Cached::default()).await?;
        }
        self.blobs.drop_snapshot(ns).await?;
        Ok(())
    }

    /// Offers the (pinned) snapshot a replica was installed from to peers.
    pub(crate) async fn note_installed_snapshot(
        &self,
        ns: &str,
        seq: u64,
        hash: [u8; 32],
    ) -> Result<(), NodeError> {
        self.set_cached_snapshot(
            ns,
            Cached {
                snap: Some(SnapshotRef { seq, hash }),
                pages: HashMap::new(),
            },
        )
        .await
    }

    /// The bytes of a blob this node holds (a snapshot part).
    pub async fn blob_bytes(&self, hash: [u8; 32]) -> Result<Bytes, NodeError> {
        Ok(self.blobs.get_raw(hash).await?)
    }

    /// Decodes a stored catch-up answer (a snapshot's first part) piece by piece as it is read from the store, so
    /// its encoded bytes are never held whole beside the decoded graph.
    pub async fn read_answer(&self, hash: [u8; 32]) -> Result<Reply, NodeError> {
        use tokio::io::AsyncReadExt;
        let mut reader = self.blobs.reader(hash);
        let mut d = ReplyReader::new(MAX_ANSWER);
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = reader
                .read(&mut buf)
                .await
                .map_err(|e| NodeError::Task(format!("snapshot answer: {e}")))?;
            if n == 0 {
                break;
            }
            d.feed(&buf[..n])
                .map_err(|e| NodeError::Task(e.to_string()))?;
        }
        d.finish().map_err(|e| NodeError::Task(e.to_string()))
    }

    /// The parts of a snapshot this node holds (the HashSeq's children), for serving it whole.
    pub async fn snapshot_parts(&self, hash: [u8; 32]) -> Result<Vec<[u8; 32]>, NodeError> {
        let seq = self.blobs.get_raw(hash).await?;
        let hs = iroh_blobs::hashseq::HashSeq::new(seq)
            .ok_or_else(|| NodeError::Task("stored snapshot is not a hash sequence".into()))?;
        Ok(hs.iter().map(|h| *h.as_bytes()).collect())
    }

    /// Installs replica `ns` from a downloaded snapshot (HashSeq `hash` and its parts, all in the blob store
    /// and kept from collection by `held`). Everything is checked first: the answer like any catch-up step,
    /// then that the pages hold exactly the records of the live leaves. Ok(None) when it is not newer.
    /// `link` holds roots fetched to link the answer's chain to the root held here (those below the chain's first
    /// seq are put in front of it; all are verified with it).
    pub async fn install_snapshot(
        &self,
        ns: &str,
        hash: [u8; 32],
        held: crate::blobs::Hold,
        link: Vec<cairn_index::root::SignedRoot>,
    ) -> Result<Option<cairn_index::root::SignedRoot>, StepError> {
        let rejected = |why: String| StepError::Rejected(format!("snapshot: {why}"));
        let t0 = std::time::Instant::now();
        let parts = self
            .snapshot_parts(hash)
            .await
            .map_err(|e| rejected(e.to_string()))?;
        if parts.is_empty() || parts.len() > MAX_PARTS {
            return Err(rejected(format!("{} parts", parts.len())));
        }
        let reply = self
            .read_answer(parts[0])
            .await
            .map_err(|e| rejected(e.to_string()))?;
        let Reply::Answer(mut c) = reply else {
            return Err(rejected("no answer".into()));
        };
        if let Some(first) = c.chain.first().map(|r| r.record.seq) {
            let mut chain: Vec<_> = link.into_iter().filter(|r| r.record.seq < first).collect();
            chain.append(&mut c.chain);
            c.chain = chain;
        }
        if !c.out.full {
            return Err(rejected("not a full graph".into()));
        }
        let live: HashSet<MemoryId> = c
            .out
            .nodes
            .iter()
            .filter(|n| n.node.alive)
            .map(|n| n.node.id)
            .collect();
        let t_decode = t0.elapsed();
        let Some(step) = self.verify_step_held(ns, *c, Some(held)).await? else {
            return Ok(None);
        };
        let t_verify = t0.elapsed();
        // The pages one at a time: each record is checked against the live leaves and reduced to what its row
        // keeps, so the install never holds every page (a second copy of every record) at once.
        let packs: Vec<[u8; 32]> = parts[1..].to_vec();
        let mut facts = HashMap::with_capacity(live.len());
        let mut locs = Vec::with_capacity(live.len());
        let mut check = PagesCheck::new(live);
        for pack in &packs {
            let page = self
                .blobs
                .get_raw(*pack)
                .await
                .map_err(|e| rejected(e.to_string()))?;
            let name = ns.to_owned();
            let (back, found) = tokio::task::spawn_blocking(move || {
                let found = check
                    .page(&page)
                    .map_err(|e| rejected(e.to_string()))
                    .and_then(|entries| {
                        entries
                            .into_iter()
                            .map(|e| {
                                let (at, len) = (e.offset as usize, e.len as usize);
                                let f = super::replica::RecordFacts::of(
                                    &name,
                                    e.id,
                                    &page[at..at + len],
                                )?;
                                Ok((e, f))
                            })
                            .collect::<Result<Vec<_>, StepError>>()
                    });
                (check, found)
            })
            .await
            .map_err(NodeError::from)?;
            check = back;
            for (e, f) in found? {
                let loc = PackLoc {
                    pack: *pack,
                    offset: e.offset,
                    len: e.len,
                };
                locs.push((e.id, loc));
                facts.insert(e.id, f);
            }
        }
        check.finish().map_err(|e| rejected(e.to_string()))?;
        let t_pages = t0.elapsed();
        tracing::debug!(
            namespace = %ns,
            decode_ms = t_decode.as_secs_f64() * 1e3,
            verify_ms = (t_verify - t_decode).as_secs_f64() * 1e3,
            pages_ms = (t_pages - t_verify).as_secs_f64() * 1e3,
            "snapshot checked"
        );
        let root = self
            .install_with(
                step,
                Some(Packed {
                    facts,
                    locs,
                    packs,
                    snapshot: hash,
                }),
            )
            .await?;
        Ok(Some(root))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/PROOFS.md "Snapshots": the page and snapshot-hash test vectors, the latter as iroh computes it.
    #[test]
    fn vectors() {
        let page = encode_page(&[Bytes::from_static(b"ab"), Bytes::new()]);
        assert_eq!(hex::encode(&page), "00000002616200000000");
        let seq: iroh_blobs::hashseq::HashSeq =
            [iroh_blobs::Hash::new(b"x"), iroh_blobs::Hash::new(b"yz")]
                .into_iter()
                .collect();
        let seq: Bytes = seq.into();
        assert_eq!(
            iroh_blobs::Hash::new(&seq).to_hex().to_string(),
            "a5f554c6ce82a2f4dbb09165ac2880272073f427c67e00925b79996450425041"
        );
    }
}
