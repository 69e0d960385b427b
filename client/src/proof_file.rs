//! Saved answers with their proofs (`cairn … --proof-out FILE`, checked offline by `cairn verify FILE`).
//!
//! Binary and canonical, ending in a BLAKE3 checksum of everything before it, so that any change to the file
//! is detected even where the proof itself would not care (the checksum is integrity, not trust: trust comes
//! from the proof and the pinned node id). Layout (big-endian):
//!
//! ```text
//! "CAIRNPF2" u8(kind: 1 get, 2 list, 3 recall, 4 lexical/hybrid recall, 5 filtered recall) u16(len) namespace
//! list only:   u64(since) u64(until) u8(has_after) [u64(created_at) id[32]] u32(limit)
//! recall only: u32(k) u32(min_ef)
//! kinds 4, 5:  u32(k) u32(min_ef) u32(min_depth) u32(len) query text
//! kind 5 only: u16(p) p × ( u16(len) key u32(len) value ) u8(flags: 1 since, 2 until) [u64(since)] [u64(until)]
//! u32(count) count × ( id[32] u32(len) record  [kinds 3, 4: u32(score bits)] )
//! u32(len) proof
//! u16(c) c × ( witness[32] signature[64] )      (witness cosignatures of the proof's root; absent in "CAIRNPF1")
//! checksum[32] = BLAKE3(all bytes above)
//! ```

use cairn_index::filtered::RecallFilter;
use cairn_index::id::MemoryId;
use cairn_index::proof::{
    self, ListRange, RecallAsked, Returned, Verified, VerifyError, VerifyLimits,
};
use cairn_index::wire::Reader;

const MAGIC: &[u8; 8] = b"CAIRNPF2";
/// The first version, without cosignatures; still read.
const MAGIC_V1: &[u8; 8] = b"CAIRNPF1";

/// Which answer a file holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A Get answer.
    Get,
    /// A List page over a range.
    List(ListRange),
    /// A Recall answer with its hit scores and what was asked.
    Recall(Vec<f32>, RecallAsked),
    /// A lexical or hybrid Recall answer (`CPX1`, its mode in the proof): scores, what was asked, the minimum
    /// fusion depth and the query text its terms must come from.
    Hybrid(Vec<f32>, RecallAsked, u32, String),
    /// A filtered Recall answer (`CPF1`, its mode in the proof): as [`Kind::Hybrid`], plus the filter asked.
    Filtered(Vec<f32>, RecallAsked, u32, String, RecallFilter),
}

impl Kind {
    fn scores(&self) -> Option<&Vec<f32>> {
        match self {
            Kind::Recall(s, _) | Kind::Hybrid(s, ..) | Kind::Filtered(s, ..) => Some(s),
            _ => None,
        }
    }

    fn scores_mut(&mut self) -> Option<&mut Vec<f32>> {
        match self {
            Kind::Recall(s, _) | Kind::Hybrid(s, ..) | Kind::Filtered(s, ..) => Some(s),
            _ => None,
        }
    }
}

/// An answer and its proof.
#[derive(Debug, Clone, PartialEq)]
pub struct ProofFile {
    /// What kind of answer.
    pub kind: Kind,
    /// The namespace asked.
    pub namespace: String,
    /// (id, record bytes) of each memory or hit, in answer order.
    pub items: Vec<(MemoryId, Vec<u8>)>,
    /// The proof bytes.
    pub proof: Vec<u8>,
    /// Witness cosignatures of the proof's root that came with the answer: (witness id, signature).
    pub cosigs: Vec<([u8; 32], [u8; 64])>,
}

impl ProofFile {
    /// Encodes the file.
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::new();
        o.extend_from_slice(MAGIC);
        o.push(match self.kind {
            Kind::Get => 1,
            Kind::List(_) => 2,
            Kind::Recall(..) => 3,
            Kind::Hybrid(..) => 4,
            Kind::Filtered(..) => 5,
        });
        o.extend_from_slice(&(self.namespace.len() as u16).to_be_bytes());
        o.extend_from_slice(self.namespace.as_bytes());
        if let Kind::List(r) = &self.kind {
            o.extend_from_slice(&r.since.to_be_bytes());
            o.extend_from_slice(&r.until.to_be_bytes());
            match r.after {
                Some((t, id)) => {
                    o.push(1);
                    o.extend_from_slice(&t.to_be_bytes());
                    o.extend_from_slice(id.as_bytes());
                }
                None => o.push(0),
            }
            o.extend_from_slice(&r.limit.to_be_bytes());
        }
        if let Kind::Recall(_, asked) | Kind::Hybrid(_, asked, ..) | Kind::Filtered(_, asked, ..) =
            &self.kind
        {
            o.extend_from_slice(&asked.k.to_be_bytes());
            o.extend_from_slice(&asked.min_ef.to_be_bytes());
        }
        if let Kind::Hybrid(_, _, depth, query) | Kind::Filtered(_, _, depth, query, _) = &self.kind
        {
            o.extend_from_slice(&depth.to_be_bytes());
            o.extend_from_slice(&(query.len() as u32).to_be_bytes());
            o.extend_from_slice(query.as_bytes());
        }
        if let Kind::Filtered(.., f) = &self.kind {
            o.extend_from_slice(&(f.pairs.len() as u16).to_be_bytes());
            for (k, v) in &f.pairs {
                o.extend_from_slice(&(k.len() as u16).to_be_bytes());
                o.extend_from_slice(k.as_bytes());
                o.extend_from_slice(&(v.len() as u32).to_be_bytes());
                o.extend_from_slice(v.as_bytes());
            }
            o.push(u8::from(f.since.is_some()) | (u8::from(f.until.is_some()) << 1));
            for x in [f.since, f.until].into_iter().flatten() {
                o.extend_from_slice(&x.to_be_bytes());
            }
        }
        o.extend_from_slice(&(self.items.len() as u32).to_be_bytes());
        for (i, (id, rec)) in self.items.iter().enumerate() {
            o.extend_from_slice(id.as_bytes());
            o.extend_from_slice(&(rec.len() as u32).to_be_bytes());
            o.extend_from_slice(rec);
            if let Some(scores) = self.kind.scores() {
                o.extend_from_slice(
                    &scores
                        .get(i)
                        .copied()
                        .unwrap_or(f32::NAN)
                        .to_bits()
                        .to_be_bytes(),
                );
            }
        }
        o.extend_from_slice(&(self.proof.len() as u32).to_be_bytes());
        o.extend_from_slice(&self.proof);
        let n = self.cosigs.len().min(u16::MAX as usize);
        o.extend_from_slice(&(n as u16).to_be_bytes());
        for (w, sig) in self.cosigs.iter().take(n) {
            o.extend_from_slice(w);
            o.extend_from_slice(sig);
        }
        let sum = blake3::hash(&o);
        o.extend_from_slice(sum.as_bytes());
        o
    }

    /// Parses a file; never panics.
    pub fn decode(b: &[u8]) -> Result<Self, VerifyError> {
        if b.len() < 32 || b.len() > VerifyLimits::default().max_proof_bytes * 2 {
            return Err(VerifyError::Malformed("proof file size"));
        }
        let (body, sum) = b.split_at(b.len() - 32);
        if blake3::hash(body).as_bytes() != sum {
            return Err(VerifyError::Malformed(
                "proof file checksum mismatch (the file was changed)",
            ));
        }
        let mut r = Reader::new(body);
        let v2 = match r.bytes(8)? {
            m if m == MAGIC => true,
            m if m == MAGIC_V1 => false,
            _ => return Err(VerifyError::Malformed("not a Cairn proof file")),
        };
        let kind_code = r.u8()?;
        let ns_len = r.u16()? as usize;
        let namespace = std::str::from_utf8(r.bytes(ns_len)?)
            .map_err(|_| VerifyError::Malformed("namespace"))?
            .to_owned();
        let mut kind = match kind_code {
            1 => Kind::Get,
            2 => {
                let since = r.u64()?;
                let until = r.u64()?;
                let after = match r.u8()? {
                    0 => None,
                    1 => Some((r.u64()?, MemoryId(r.array()?))),
                    _ => return Err(VerifyError::Malformed("list cursor")),
                };
                let limit = r.u32()?;
                Kind::List(ListRange {
                    since,
                    until,
                    after,
                    limit,
                })
            }
            3 => Kind::Recall(
                Vec::new(),
                RecallAsked {
                    k: r.u32()?,
                    min_ef: r.u32()?,
                },
            ),
            4 | 5 => {
                let asked = RecallAsked {
                    k: r.u32()?,
                    min_ef: r.u32()?,
                };
                let depth = r.u32()?;
                let n = r.u32()? as usize;
                if n > 1 << 20 {
                    return Err(VerifyError::TooLarge("query text"));
                }
                let q = std::str::from_utf8(r.bytes(n)?)
                    .map_err(|_| VerifyError::Malformed("query text utf-8"))?
                    .to_owned();
                if kind_code == 4 {
                    Kind::Hybrid(Vec::new(), asked, depth, q)
                } else {
                    Kind::Filtered(Vec::new(), asked, depth, q, read_filter(&mut r)?)
                }
            }
            _ => return Err(VerifyError::Malformed("proof file kind")),
        };
        let count = r.u32()? as usize;
        if count > 100_000 || count * 36 > r.remaining() {
            return Err(VerifyError::TooLarge("items"));
        }
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            let id = MemoryId(r.array()?);
            let len = r.u32()? as usize;
            let rec = r.bytes(len)?.to_vec();
            if let Some(scores) = kind.scores_mut() {
                scores.push(f32::from_bits(r.u32()?));
            }
            items.push((id, rec));
        }
        let plen = r.u32()? as usize;
        let proof = r.bytes(plen)?.to_vec();
        let mut cosigs = Vec::new();
        if v2 {
            let n = r.u16()? as usize;
            if n * 96 > r.remaining() {
                return Err(VerifyError::TooLarge("cosignatures"));
            }
            for _ in 0..n {
                cosigs.push((r.array()?, r.array()?));
            }
        }
        if !r.is_empty() {
            return Err(VerifyError::Malformed("trailing bytes"));
        }
        Ok(ProofFile {
            kind,
            namespace,
            items,
            proof,
            cosigs,
        })
    }

    /// Distinct valid witnesses of a verified root among the saved cosignatures.
    pub fn witnesses(&self, v: &Verified, pinned: &[[u8; 32]]) -> usize {
        cairn_index::root::count_witnesses(&v.root.record, &self.cosigs, pinned)
    }

    /// Verifies the saved answer against `trusted` (offline).
    pub fn verify(&self, trusted: &[u8; 32]) -> Result<Verified, VerifyError> {
        let returned: Vec<Returned<'_>> = self
            .items
            .iter()
            .map(|(id, rec)| Returned { id, record: rec })
            .collect();
        let lim = VerifyLimits::default();
        match &self.kind {
            Kind::Get => proof::verify_get(&self.proof, &self.namespace, trusted, &returned, &lim),
            Kind::List(range) => proof::verify_list(
                &self.proof,
                &self.namespace,
                trusted,
                range,
                &returned,
                &lim,
            ),
            Kind::Recall(scores, asked) => proof::verify_recall(
                &self.proof,
                &self.namespace,
                trusted,
                asked,
                &returned,
                scores,
                &lim,
            ),
            Kind::Filtered(scores, asked, depth, query, filter) => {
                let mode = cairn_index::filtered::FilteredProof::decode(&self.proof, &lim)?.mode;
                cairn_index::filtered::verify_filtered(
                    &self.proof,
                    &self.namespace,
                    trusted,
                    &cairn_index::filtered::FilteredAsked {
                        mode,
                        k: asked.k,
                        min_depth: (*depth).max(asked.k),
                        filter,
                        query: Some(query),
                    },
                    &returned,
                    scores,
                    &lim,
                )
            }
            Kind::Hybrid(scores, asked, depth, query) => {
                let mode = cairn_index::hybrid::HybridProof::decode(&self.proof, &lim)?.mode;
                cairn_index::hybrid::verify_hybrid(
                    &self.proof,
                    &self.namespace,
                    trusted,
                    &cairn_index::hybrid::HybridAsked {
                        mode,
                        k: asked.k,
                        min_ef: asked.min_ef,
                        min_depth: (*depth).max(asked.k),
                        query: Some(query),
                    },
                    &returned,
                    scores,
                    &lim,
                )
            }
        }
    }
}

/// Reads a filter as [`ProofFile::encode`] writes it. Never panics.
fn read_filter(r: &mut Reader<'_>) -> Result<RecallFilter, VerifyError> {
    let n = r.u16()? as usize;
    if n > cairn_index::filtered::MAX_FILTER_PAIRS {
        return Err(VerifyError::TooLarge("filter pairs"));
    }
    let mut pairs = Vec::with_capacity(n);
    for _ in 0..n {
        let kl = r.u16()? as usize;
        let k = std::str::from_utf8(r.bytes(kl)?)
            .map_err(|_| VerifyError::Malformed("filter key utf-8"))?
            .to_owned();
        let vl = r.u32()? as usize;
        if vl > cairn_index::filtered::MAX_FILTER_BYTES {
            return Err(VerifyError::TooLarge("filter value"));
        }
        let v = std::str::from_utf8(r.bytes(vl)?)
            .map_err(|_| VerifyError::Malformed("filter value utf-8"))?
            .to_owned();
        pairs.push((k, v));
    }
    let flags = r.u8()?;
    if flags > 3 {
        return Err(VerifyError::Malformed("filter flags"));
    }
    let since = if flags & 1 != 0 { Some(r.u64()?) } else { None };
    let until = if flags & 2 != 0 { Some(r.u64()?) } else { None };
    Ok(RecallFilter {
        pairs,
        since,
        until,
    })
}
