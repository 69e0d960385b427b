//! Proof wire formats and their verifiers (docs/PROOFS.md, "Proofs").
//!
//! - [`TimeProof`] (`CPT1`): time-tree leaves with their positions and one multiproof. It proves Get (each
//!   returned memory is committed and live) and List (the returned set is exactly the committed set in the
//!   range: contiguous positions plus boundary leaves).
//! - [`RecallProof`] (`CPR2`): the quantised query, every graph node the deterministic search touched (full
//!   neighbour lists for the nodes it expanded, only their hash for the others), and one multiproof. The
//!   verifier re-runs the search on those nodes only. In exact mode the proof holds every node and the verifier
//!   computes the exact top-k itself.
//!
//! Every verifier caps sizes before doing work and never panics on any input.

use std::collections::HashMap;

use crate::commit::{
    graph_leaf_hash, lists_hash, time_leaf_hash, GraphNode, TimeEntry, DISTANCE_NEG_DOT_I32,
    MAX_DIM, MAX_LEVEL, MAX_NEIGHBOURS, QUANTISER_INT8_127,
};
use crate::id::MemoryId;
use crate::merkle::{self, Hash, MerkleError};
use crate::record::MemoryRecord;
use crate::root::{RootError, SignedRoot, NO_ENTRY};
use crate::search::{search, GraphView, SearchError, SearchParams};
use crate::wire::{Reader, Short};

/// Magic of a time proof against a whole-CBMT time tree (root versions 1 and 2).
pub const TIME_MAGIC: &[u8; 4] = b"CPT1";
/// Magic of a time proof against a paged time tree (root version 3): [`TimeProof::pages`] follows the entries.
pub const TIME_MAGIC_PAGED: &[u8; 4] = b"CPT2";
/// Magic of a recall proof.
pub const RECALL_MAGIC: &[u8; 4] = b"CPR2";
/// Recall proof mode: transcript of the graph search.
pub const MODE_GRAPH: u8 = 1;
/// Recall proof mode: every node, exact top-k.
pub const MODE_EXACT: u8 = 2;

/// Bounds a verifier enforces before doing any work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyLimits {
    /// Largest proof accepted, in bytes.
    pub max_proof_bytes: usize,
    /// Most nodes or entries in one proof.
    pub max_items: usize,
    /// Largest k.
    pub max_k: u32,
    /// Largest ef.
    pub max_ef: u32,
}

impl Default for VerifyLimits {
    fn default() -> Self {
        VerifyLimits {
            max_proof_bytes: 64 << 20,
            max_items: 200_000,
            max_k: 1000,
            max_ef: 10_000,
        }
    }
}

/// Why a proof was rejected. Every variant is a reason to distrust the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The proof bytes do not parse.
    #[error("malformed proof: {0}")]
    Malformed(&'static str),
    /// A size cap was exceeded.
    #[error("proof exceeds a limit: {0}")]
    TooLarge(&'static str),
    /// The root is bad (signature, signer, format).
    #[error(transparent)]
    Root(#[from] RootError),
    /// The root is for another namespace.
    #[error("root is for namespace {got:?}, not {want:?}")]
    WrongNamespace {
        /// In the root.
        got: String,
        /// Asked.
        want: String,
    },
    /// The root uses a quantiser or distance this verifier does not know.
    #[error("unsupported commitment parameters")]
    Unsupported,
    /// The Merkle proof does not lead to the signed root.
    #[error("commitment check failed: {0}")]
    Merkle(#[from] MerkleError),
    /// The search could not be replayed.
    #[error(transparent)]
    Search(#[from] SearchError),
    /// The answer differs from what the proof implies.
    #[error("answer does not match the proof: {0}")]
    Mismatch(String),
    /// The root is older than, or conflicts with, one already seen.
    #[error("stale or forked root: {0}")]
    Freshness(String),
}

impl From<Short> for VerifyError {
    fn from(_: Short) -> Self {
        VerifyError::Malformed("truncated")
    }
}

/// What a successful verification vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The root the answer was checked against.
    pub root: SignedRoot,
}

impl Verified {
    /// The root's sequence number.
    pub fn seq(&self) -> u64 {
        self.root.record.seq
    }

    /// The signer's node id (hex).
    pub fn node_id_hex(&self) -> String {
        hex::encode(self.root.record.node_id)
    }
}

/// A returned memory as the verifier sees it: its claimed id and its canonical record bytes.
#[derive(Debug, Clone, Copy)]
pub struct Returned<'a> {
    /// The id the node claims.
    pub id: &'a MemoryId,
    /// The record bytes the node returned.
    pub record: &'a [u8],
}

/// The root checks every proof shares: signature, trusted signer, namespace.
pub(crate) fn check_root_pub(
    root: &SignedRoot,
    namespace: &str,
    trusted: &[u8; 32],
) -> Result<(), VerifyError> {
    check_root(root, namespace, trusted)
}

/// A returned record's checks (hash, namespace, created_at), for the other proof kinds.
pub(crate) fn check_record_pub(
    r: &Returned<'_>,
    namespace: &str,
    created_at: u64,
) -> Result<MemoryRecord, VerifyError> {
    check_record(r, namespace, created_at)
}

pub(crate) fn put_lemmas_pub(o: &mut Vec<u8>, lemmas: &[Hash]) {
    put_lemmas(o, lemmas)
}

pub(crate) fn read_lemmas_pub(
    r: &mut Reader<'_>,
    lim: &VerifyLimits,
) -> Result<Vec<Hash>, VerifyError> {
    read_lemmas(r, lim)
}

fn check_root(root: &SignedRoot, namespace: &str, trusted: &[u8; 32]) -> Result<(), VerifyError> {
    root.verify(Some(trusted))?;
    if root.record.namespace != namespace {
        return Err(VerifyError::WrongNamespace {
            got: root.record.namespace.clone(),
            want: namespace.to_owned(),
        });
    }
    Ok(())
}

/// Checks a returned record: it hashes to its id, belongs to `namespace`, and has `created_at`.
fn check_record(
    r: &Returned<'_>,
    namespace: &str,
    created_at: u64,
) -> Result<MemoryRecord, VerifyError> {
    if MemoryId::of_bytes(r.record) != *r.id {
        return Err(VerifyError::Mismatch(format!(
            "record bytes of {} do not hash to it",
            r.id
        )));
    }
    let rec = MemoryRecord::decode(r.record)
        .map_err(|e| VerifyError::Mismatch(format!("record {} does not decode: {e}", r.id)))?;
    if rec.namespace != namespace {
        return Err(VerifyError::Mismatch(format!(
            "memory {} belongs to namespace {:?}",
            r.id, rec.namespace
        )));
    }
    if rec.created_at != created_at {
        return Err(VerifyError::Mismatch(format!(
            "memory {} has another created_at than committed",
            r.id
        )));
    }
    Ok(rec)
}

// ------------------------------------------------------------------------------------------------
// Time proofs (Get, List)

/// Time-tree leaves at given positions, with a multiproof against a signed root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeProof {
    /// The root.
    pub root: SignedRoot,
    /// (position, entry), positions strictly increasing.
    pub entries: Vec<(u64, TimeEntry)>,
    /// Where the entries sit in a paged time tree (version-3 roots; `None` before).
    pub pages: Option<TimePages>,
    /// Sibling hashes.
    pub lemmas: Vec<Hash>,
}

/// The pages of a paged time tree that a time proof touches ([`crate::paged::verify_chunked`]).
pub type TimePages = crate::paged::ChunkedPages;

/// `u32be(pages) u32be(refs) (u32be(page) u64be(first) u32be(count))×refs`.
pub(crate) fn put_pages(o: &mut Vec<u8>, p: &TimePages) {
    o.extend_from_slice(&p.pages.to_be_bytes());
    o.extend_from_slice(&(p.refs.len() as u32).to_be_bytes());
    for r in &p.refs {
        o.extend_from_slice(&r.page.to_be_bytes());
        o.extend_from_slice(&r.first.to_be_bytes());
        o.extend_from_slice(&r.count.to_be_bytes());
    }
}

/// Reads [`put_pages`] output with at most `max_refs` descriptors.
pub(crate) fn read_pages(r: &mut Reader<'_>, max_refs: usize) -> Result<TimePages, VerifyError> {
    let pages = r.u32()?;
    let n = r.u32()? as usize;
    if n > max_refs || n * 16 > r.remaining() {
        return Err(VerifyError::TooLarge("pages"));
    }
    let mut refs = Vec::with_capacity(n);
    for _ in 0..n {
        refs.push(crate::paged::PageRef {
            page: r.u32()?,
            first: r.u64()?,
            count: r.u32()?,
        });
    }
    Ok(TimePages { pages, refs })
}

impl From<crate::paged::PagedError> for VerifyError {
    fn from(e: crate::paged::PagedError) -> Self {
        match e {
            crate::paged::PagedError::Merkle(m) => VerifyError::Merkle(m),
            crate::paged::PagedError::Pages(why) => VerifyError::Malformed(why),
        }
    }
}

fn put_lemmas(o: &mut Vec<u8>, lemmas: &[Hash]) {
    o.extend_from_slice(&(lemmas.len() as u32).to_be_bytes());
    for l in lemmas {
        o.extend_from_slice(l);
    }
}

fn read_lemmas(r: &mut Reader<'_>, lim: &VerifyLimits) -> Result<Vec<Hash>, VerifyError> {
    let n = r.u32()? as usize;
    if n > 64 * lim.max_items.max(1) || n * 32 > r.remaining() {
        return Err(VerifyError::TooLarge("lemmas"));
    }
    (0..n).map(|_| Ok(r.array::<32>()?)).collect()
}

impl TimeProof {
    /// `"CPT1" signed_root u32be(count) (u64be(pos) u64be(created_at) id[32] u32be(node))×count
    /// u32be(lemmas) hash×lemmas`; with pages, `"CPT2"` and after the entries `u32be(pages) u32be(refs)
    /// (u32be(page) u64be(first) u32be(count))×refs`.
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(256 + self.entries.len() * 52 + self.lemmas.len() * 32);
        o.extend_from_slice(if self.pages.is_some() {
            TIME_MAGIC_PAGED
        } else {
            TIME_MAGIC
        });
        o.extend_from_slice(&self.root.encode());
        o.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for (pos, e) in &self.entries {
            o.extend_from_slice(&pos.to_be_bytes());
            o.extend_from_slice(&e.created_at.to_be_bytes());
            o.extend_from_slice(e.id.as_bytes());
            o.extend_from_slice(&e.node.to_be_bytes());
        }
        if let Some(p) = &self.pages {
            put_pages(&mut o, p);
        }
        put_lemmas(&mut o, &self.lemmas);
        o
    }

    /// Parses a time proof within `lim`.
    pub fn decode(b: &[u8], lim: &VerifyLimits) -> Result<Self, VerifyError> {
        if b.len() > lim.max_proof_bytes {
            return Err(VerifyError::TooLarge("proof bytes"));
        }
        let mut r = Reader::new(b);
        let paged = match r.bytes(4)? {
            m if m == TIME_MAGIC => false,
            m if m == TIME_MAGIC_PAGED => true,
            _ => return Err(VerifyError::Malformed("not a time proof")),
        };
        let root = SignedRoot::read(&mut r)?;
        let n = r.u32()? as usize;
        if n > lim.max_items || n * 52 > r.remaining() {
            return Err(VerifyError::TooLarge("entries"));
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let pos = r.u64()?;
            let created_at = r.u64()?;
            let id = MemoryId(r.array()?);
            let node = r.u32()?;
            entries.push((
                pos,
                TimeEntry {
                    created_at,
                    id,
                    node,
                },
            ));
        }
        let pages = if paged {
            Some(read_pages(&mut r, entries.len())?)
        } else {
            None
        };
        let lemmas = read_lemmas(&mut r, lim)?;
        if !r.is_empty() {
            return Err(VerifyError::Malformed("trailing bytes"));
        }
        Ok(TimeProof {
            root,
            entries,
            pages,
            lemmas,
        })
    }

    fn check_tree(&self) -> Result<(), VerifyError> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let leaves: Vec<(u64, Hash)> = self
            .entries
            .iter()
            .map(|(p, e)| (*p, time_leaf_hash(e)))
            .collect();
        let rec = &self.root.record;
        match (&self.pages, rec.paged()) {
            (Some(p), true) => crate::paged::verify_chunked(
                &rec.time_root,
                rec.time_leaves,
                p.pages,
                &p.refs,
                &leaves,
                &self.lemmas,
            )?,
            (None, false) => {
                merkle::verify(&rec.time_root, rec.time_leaves, &leaves, &self.lemmas)?
            }
            _ => {
                return Err(VerifyError::Malformed(
                    "time proof format does not match the root's version",
                ))
            }
        }
        Ok(())
    }
}

/// Verifies a Get answer: every returned memory is committed and live under a root signed by `trusted`.
/// (Ids reported missing are not proven absent.)
pub fn verify_get(
    proof: &[u8],
    namespace: &str,
    trusted: &[u8; 32],
    returned: &[Returned<'_>],
    lim: &VerifyLimits,
) -> Result<Verified, VerifyError> {
    let p = TimeProof::decode(proof, lim)?;
    check_root(&p.root, namespace, trusted)?;
    if returned.is_empty() && p.entries.is_empty() {
        return Ok(Verified { root: p.root });
    }
    p.check_tree()?;
    let by_id: HashMap<MemoryId, &TimeEntry> = p.entries.iter().map(|(_, e)| (e.id, e)).collect();
    if by_id.len() != returned.len() || p.entries.len() != returned.len() {
        return Err(VerifyError::Mismatch(
            "proof and answer list different memories".into(),
        ));
    }
    // Every entry returned exactly once: as many distinct returned ids as entries, each one in the proof.
    let mut seen = std::collections::HashSet::with_capacity(returned.len());
    for r in returned {
        if !seen.insert(*r.id) {
            return Err(VerifyError::Mismatch(format!(
                "memory {} is returned twice",
                r.id
            )));
        }
        let e = by_id
            .get(r.id)
            .ok_or_else(|| VerifyError::Mismatch(format!("memory {} is not in the proof", r.id)))?;
        check_record(r, namespace, e.created_at)?;
    }
    Ok(Verified { root: p.root })
}

/// The range a List asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListRange {
    /// created_at >= since.
    pub since: u64,
    /// created_at < until.
    pub until: u64,
    /// Strictly after this (created_at, id) — the page token's position.
    pub after: Option<(u64, MemoryId)>,
    /// Page size.
    pub limit: u32,
}

impl ListRange {
    fn contains(&self, e: &TimeEntry) -> bool {
        e.created_at >= self.since
            && e.created_at < self.until
            && self.after.is_none_or(|a| (e.created_at, e.id) > a)
    }

    fn below(&self, e: &TimeEntry) -> bool {
        e.created_at < self.since || self.after.is_some_and(|a| (e.created_at, e.id) <= a)
    }
}

/// Verifies a List page: the returned memories are exactly the committed ones in the range, in
/// (created_at, id) order, up to `limit` (a full page is complete up to its last memory).
pub fn verify_list(
    proof: &[u8],
    namespace: &str,
    trusted: &[u8; 32],
    range: &ListRange,
    returned: &[Returned<'_>],
    lim: &VerifyLimits,
) -> Result<Verified, VerifyError> {
    let p = TimeProof::decode(proof, lim)?;
    check_root(&p.root, namespace, trusted)?;
    let n = p.root.record.time_leaves;
    if returned.len() > range.limit as usize {
        return Err(VerifyError::Mismatch("more memories than the limit".into()));
    }
    if p.entries.is_empty() {
        if n != 0 || !returned.is_empty() {
            return Err(VerifyError::Mismatch(
                "empty proof for a non-empty namespace or answer".into(),
            ));
        }
        return Ok(Verified { root: p.root });
    }
    p.check_tree()?;
    // Contiguous positions, strictly increasing keys.
    for w in p.entries.windows(2) {
        if w[1].0 != w[0].0 + 1 {
            return Err(VerifyError::Mismatch(
                "proof leaves are not contiguous".into(),
            ));
        }
        if (w[1].1.created_at, w[1].1.id) <= (w[0].1.created_at, w[0].1.id) {
            return Err(VerifyError::Mismatch(
                "committed timeline is not sorted".into(),
            ));
        }
    }
    let entries = &p.entries;
    let in_range: Vec<&TimeEntry> = entries
        .iter()
        .map(|(_, e)| e)
        .filter(|e| range.contains(e))
        .collect();
    let full = in_range.len() == range.limit as usize;
    let (mut lo, mut hi) = (0, entries.len());
    // Left edge: a leaf below the range, or the start of the timeline.
    if range.below(&entries[0].1) {
        lo = 1;
    } else if entries[0].0 != 0 {
        return Err(VerifyError::Mismatch(
            "no left boundary: memories before the page may be hidden".into(),
        ));
    }
    // Right edge: a leaf past `until`, the end of the timeline, or a full page (complete up to its last memory).
    if hi > lo && entries[hi - 1].1.created_at >= range.until {
        hi -= 1;
    } else if !full && entries[entries.len() - 1].0 + 1 < n {
        return Err(VerifyError::Mismatch(
            "no right boundary: memories after the page may be hidden".into(),
        ));
    }
    for (_, e) in &entries[lo..hi] {
        if !range.contains(e) {
            return Err(VerifyError::Mismatch(
                "a proof leaf inside the page is out of range".into(),
            ));
        }
    }
    if in_range.len() != returned.len() {
        return Err(VerifyError::Mismatch(format!(
            "{} memories committed in range, {} returned",
            in_range.len(),
            returned.len()
        )));
    }
    for (e, r) in in_range.iter().zip(returned) {
        if e.id != *r.id {
            return Err(VerifyError::Mismatch(format!(
                "expected {} at this place, got {}",
                e.id, r.id
            )));
        }
        check_record(r, namespace, e.created_at)?;
    }
    Ok(Verified { root: p.root })
}

// ------------------------------------------------------------------------------------------------
// Recall proofs

/// A node as carried in a recall proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofNode {
    /// The leaf fields.
    pub node: GraphNode,
    /// Full lists (for expanded nodes) or only their hash.
    pub lists: NodeLists,
}

/// A node's neighbour lists, in full or as their hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeLists {
    /// Layers 0..=level.
    Full(Vec<Vec<u32>>),
    /// [`lists_hash`] of them.
    Hash(Hash),
}

/// The transcript behind a Recall answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallProof {
    /// The root.
    pub root: SignedRoot,
    /// [`MODE_GRAPH`] or [`MODE_EXACT`].
    pub mode: u8,
    /// Hits asked for.
    pub k: u32,
    /// Layer-0 breadth.
    pub ef: u32,
    /// Quantised query.
    pub query: Vec<i8>,
    /// Nodes, in increasing node number.
    pub nodes: Vec<ProofNode>,
    /// Sibling hashes for the graph tree.
    pub lemmas: Vec<Hash>,
}

impl RecallProof {
    /// Encodes (see docs/PROOFS.md for the layout).
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(512 + self.nodes.len() * (self.query.len() + 120));
        o.extend_from_slice(RECALL_MAGIC);
        o.extend_from_slice(&self.root.encode());
        o.push(self.mode);
        o.extend_from_slice(&self.k.to_be_bytes());
        o.extend_from_slice(&self.ef.to_be_bytes());
        o.extend_from_slice(&(self.query.len() as u16).to_be_bytes());
        o.extend(self.query.iter().map(|&x| x as u8));
        o.extend_from_slice(&(self.nodes.len() as u32).to_be_bytes());
        for pn in &self.nodes {
            encode_node(&mut o, pn);
        }
        put_lemmas(&mut o, &self.lemmas);
        o
    }

    /// Parses a recall proof within `lim`. Never panics.
    pub fn decode(b: &[u8], lim: &VerifyLimits) -> Result<Self, VerifyError> {
        if b.len() > lim.max_proof_bytes {
            return Err(VerifyError::TooLarge("proof bytes"));
        }
        let mut r = Reader::new(b);
        if r.bytes(4)? != RECALL_MAGIC {
            return Err(VerifyError::Malformed("not a recall proof"));
        }
        let root = SignedRoot::read(&mut r)?;
        let mode = r.u8()?;
        if mode != MODE_GRAPH && mode != MODE_EXACT {
            return Err(VerifyError::Malformed("mode"));
        }
        let k = r.u32()?;
        let ef = r.u32()?;
        if k == 0 || k > lim.max_k {
            return Err(VerifyError::TooLarge("k"));
        }
        if ef > lim.max_ef {
            return Err(VerifyError::TooLarge("ef"));
        }
        let dim = r.u16()? as usize;
        if dim > MAX_DIM {
            return Err(VerifyError::TooLarge("dimension"));
        }
        let query: Vec<i8> = r.bytes(dim)?.iter().map(|&x| x as i8).collect();
        let count = r.u32()? as usize;
        if count > lim.max_items || count.saturating_mul(dim / 2 + 48) > r.remaining() {
            return Err(VerifyError::TooLarge("nodes"));
        }
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            nodes.push(decode_node(&mut r, dim)?);
        }
        let lemmas = read_lemmas(&mut r, lim)?;
        if !r.is_empty() {
            return Err(VerifyError::Malformed("trailing bytes"));
        }
        Ok(RecallProof {
            root,
            mode,
            k,
            ef,
            query,
            nodes,
            lemmas,
        })
    }
}

/// Appends one node in the recall-proof node encoding (docs/PROOFS.md, "Recall proof"). Replication
/// (`cairn follow`) ships graph nodes in the same encoding, always with full lists.
pub fn encode_node(o: &mut Vec<u8>, pn: &ProofNode) {
    let n = &pn.node;
    o.extend_from_slice(&n.node.to_be_bytes());
    o.extend_from_slice(n.id.as_bytes());
    o.extend_from_slice(&n.created_at.to_be_bytes());
    o.push(u8::from(n.alive));
    o.push(n.level);
    crate::vcode::encode_vector(&n.vector, o);
    match &pn.lists {
        NodeLists::Full(lists) => {
            o.push(1);
            o.extend_from_slice(&crate::commit::encode_lists(lists));
        }
        NodeLists::Hash(h) => {
            o.push(0);
            o.extend_from_slice(h);
        }
    }
}

/// Reads one node written by [`encode_node`] with a `dim`-component vector. Never panics.
pub fn decode_node(r: &mut Reader<'_>, dim: usize) -> Result<ProofNode, VerifyError> {
    let node = r.u32()?;
    let id = MemoryId(r.array()?);
    let created_at = r.u64()?;
    let alive = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(VerifyError::Malformed("alive flag")),
    };
    let level = r.u8()?;
    if level > MAX_LEVEL {
        return Err(VerifyError::Malformed("level"));
    }
    let vector =
        crate::vcode::decode_vector(r, dim).map_err(|_| VerifyError::Malformed("coded vector"))?;
    let lists = match r.u8()? {
        1 => {
            let mut lists = Vec::with_capacity(level as usize + 1);
            for _ in 0..=level {
                let c = r.u16()? as usize;
                if c > MAX_NEIGHBOURS || c * 4 > r.remaining() {
                    return Err(VerifyError::TooLarge("neighbour list"));
                }
                let mut l = Vec::with_capacity(c);
                for _ in 0..c {
                    l.push(r.u32()?);
                }
                lists.push(l);
            }
            NodeLists::Full(lists)
        }
        0 => NodeLists::Hash(r.array()?),
        _ => return Err(VerifyError::Malformed("lists flag")),
    };
    let node = GraphNode {
        node,
        id,
        created_at,
        alive,
        level,
        vector,
    };
    if !node.is_well_formed() {
        return Err(VerifyError::Malformed(
            "a tombstone carries the forgotten memory's id, time or vector",
        ));
    }
    Ok(ProofNode { node, lists })
}

/// The signed root a Get/List/Recall proof is against (both formats start with magic ‖ signed root), without
/// verifying anything; used to attach witness cosignatures of that root to a response.
pub fn root_of_proof(proof: &[u8]) -> Option<SignedRoot> {
    let mut r = Reader::new(proof);
    let magic = r.bytes(4).ok()?;
    if magic != TIME_MAGIC && magic != RECALL_MAGIC && magic != crate::hybrid::HYBRID_MAGIC {
        return None;
    }
    SignedRoot::read(&mut r).ok()
}

struct ProofGraph<'a> {
    nodes: HashMap<u32, &'a ProofNode>,
}

impl GraphView for ProofGraph<'_> {
    fn vector(&mut self, node: u32) -> Result<&[i8], SearchError> {
        self.nodes
            .get(&node)
            .map(|n| n.node.vector.as_slice())
            .ok_or(SearchError::MissingNode(node))
    }

    fn neighbours(&mut self, node: u32, layer: u8) -> Result<Vec<u32>, SearchError> {
        let n = self
            .nodes
            .get(&node)
            .ok_or(SearchError::MissingNode(node))?;
        match &n.lists {
            NodeLists::Full(lists) => Ok(lists.get(layer as usize).cloned().unwrap_or_default()),
            NodeLists::Hash(_) => Err(SearchError::MissingLists(node)),
        }
    }
}

/// The score a proven hit carries: `−d / 127²` (the int8 dot product as an approximate cosine).
pub fn proof_score(distance: i32) -> f32 {
    -(distance as f32) / 16129.0
}

/// The (position, leaf hash) of proof nodes in strictly increasing node order, for one multiproof against
/// `graph_root` (shared by the recall and the lexical/hybrid verifiers).
pub(crate) fn node_leaves(nodes: &[ProofNode]) -> Result<Vec<(u64, Hash)>, VerifyError> {
    for w in nodes.windows(2) {
        if w[0].node.node >= w[1].node.node {
            return Err(VerifyError::Malformed("nodes not in increasing order"));
        }
    }
    let mut leaves = Vec::with_capacity(nodes.len());
    for pn in nodes {
        let lh = match &pn.lists {
            NodeLists::Full(l) => {
                if l.len() != pn.node.level as usize + 1 {
                    return Err(VerifyError::Malformed("lists do not match level"));
                }
                lists_hash(l)
            }
            NodeLists::Hash(h) => *h,
        };
        leaves.push((u64::from(pn.node.node), graph_leaf_hash(&pn.node, &lh)));
    }
    Ok(leaves)
}

/// The answer a recall proof implies: up to k live (distance, node) pairs, best first.
pub fn recall_answer(p: &RecallProof) -> Result<Vec<(i32, &GraphNode)>, VerifyError> {
    let rec = &p.root.record;
    if rec.quantiser != QUANTISER_INT8_127 || rec.distance != DISTANCE_NEG_DOT_I32 {
        return Err(VerifyError::Unsupported);
    }
    if p.query.len() != rec.dim as usize {
        return Err(VerifyError::Mismatch(
            "query dimension differs from the root's".into(),
        ));
    }
    // Authenticate every node against the graph root.
    let leaves = node_leaves(&p.nodes)?;
    if rec.graph_leaves == 0 || rec.entry == NO_ENTRY {
        if !p.nodes.is_empty() || rec.graph_leaves != 0 {
            return Err(VerifyError::Mismatch("graph without entry point".into()));
        }
        return Ok(Vec::new());
    }
    crate::paged::verify_graph(rec, &leaves, &p.lemmas)?;
    let k = p.k as usize;
    let mut scored: Vec<(i32, u32)> = if p.mode == MODE_EXACT {
        if p.nodes.len() as u64 != rec.graph_leaves {
            return Err(VerifyError::Mismatch(
                "exact proof does not hold every node".into(),
            ));
        }
        p.nodes
            .iter()
            .map(|n| {
                (
                    crate::commit::distance(&p.query, &n.node.vector),
                    n.node.node,
                )
            })
            .collect()
    } else {
        let mut g = ProofGraph {
            nodes: p.nodes.iter().map(|n| (n.node.node, n)).collect(),
        };
        let params = SearchParams {
            entry: rec.entry,
            max_level: rec.max_level,
            ef: (p.ef as usize).max(k),
        };
        search(&mut g, &p.query, &params)?
    };
    scored.sort_unstable();
    let by_node: HashMap<u32, &GraphNode> =
        p.nodes.iter().map(|n| (n.node.node, &n.node)).collect();
    let mut out = Vec::with_capacity(k);
    for (d, node) in scored {
        let Some(n) = by_node.get(&node) else {
            return Err(VerifyError::Search(SearchError::MissingNode(node)));
        };
        if n.alive {
            out.push((d, *n));
            if out.len() == k {
                break;
            }
        }
    }
    Ok(out)
}

/// What the client asked a Recall for, which the proof must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecallAsked {
    /// The k asked for (the proof must be for exactly this k).
    pub k: u32,
    /// The smallest search breadth the client accepts (the proof's ef must be at least this).
    pub min_ef: u32,
}

/// Verifies a Recall answer: the hits are exactly the top-k of the documented search over the committed
/// graph, in order, and each hit's record is authentic. `returned` pairs each hit with its record bytes;
/// `scores` are the hits' scores as returned.
pub fn verify_recall(
    proof: &[u8],
    namespace: &str,
    trusted: &[u8; 32],
    asked: &RecallAsked,
    returned: &[Returned<'_>],
    scores: &[f32],
    lim: &VerifyLimits,
) -> Result<Verified, VerifyError> {
    let p = RecallProof::decode(proof, lim)?;
    check_root(&p.root, namespace, trusted)?;
    if p.k != asked.k {
        return Err(VerifyError::Mismatch(format!(
            "proof is for k={}, {} was asked",
            p.k, asked.k
        )));
    }
    if p.mode == MODE_GRAPH && p.ef < asked.min_ef {
        return Err(VerifyError::Mismatch(format!(
            "proof searched with ef={}, at least {} was asked",
            p.ef, asked.min_ef
        )));
    }
    let answer = recall_answer(&p)?;
    if answer.len() != returned.len() || scores.len() != returned.len() {
        return Err(VerifyError::Mismatch(format!(
            "the proof implies {} hits, {} returned",
            answer.len(),
            returned.len()
        )));
    }
    for (i, ((d, n), r)) in answer.iter().zip(returned).enumerate() {
        if n.id != *r.id {
            return Err(VerifyError::Mismatch(format!(
                "hit {i} should be {}, got {}",
                n.id, r.id
            )));
        }
        check_record(r, namespace, n.created_at)?;
        if scores[i].to_bits() != proof_score(*d).to_bits() {
            return Err(VerifyError::Mismatch(format!("hit {i} has a wrong score")));
        }
    }
    Ok(Verified { root: p.root })
}

/// What a client remembers about a (node, namespace): the newest root it has accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastSeen {
    /// Its seq.
    pub seq: u64,
    /// Its hash.
    pub hash: Hash,
}

/// Freshness: rejects a root older than the last one seen, and a different root for a seq already seen.
/// When `chain` (the roots between, in increasing seq) is given, or `root` is the next seq after the last one
/// seen, also checks the prev-hash links from the last seen root to `root` ([`crate::root::verify_chain`]).
pub fn check_fresh(
    root: &SignedRoot,
    last: Option<&LastSeen>,
    chain: &[SignedRoot],
) -> Result<(), VerifyError> {
    let Some(last) = last else {
        return Ok(());
    };
    let seq = root.record.seq;
    let hash = root.record.hash();
    if seq < last.seq {
        return Err(VerifyError::Freshness(format!(
            "root seq {seq} is older than the seq {} already seen (rollback)",
            last.seq
        )));
    }
    if seq == last.seq && hash != last.hash {
        return Err(VerifyError::Freshness(format!(
            "two different roots signed for seq {seq} (equivocation)"
        )));
    }
    // With the roots in between (or none needed: the next seq), the chain must link to the last root seen.
    if !chain.is_empty() || last.seq.checked_add(1) == Some(seq) {
        crate::root::verify_chain(
            chain.iter().chain(std::iter::once(root)),
            &root.record.node_id,
            &root.record.namespace,
            Some((last.seq, last.hash)),
        )
        .map_err(|e| VerifyError::Freshness(format!("broken root chain: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Reader;

    fn round_trip(node: GraphNode) -> Result<ProofNode, VerifyError> {
        let mut b = Vec::new();
        encode_node(
            &mut b,
            &ProofNode {
                node,
                lists: NodeLists::Full(vec![vec![1, 2]]),
            },
        );
        decode_node(&mut Reader::new(&b), 4)
    }

    /// A root one seq past the last one seen must link to it even when no roots in between are given; roots
    /// in between must link both ways.
    #[test]
    fn freshness_checks_the_link_to_the_last_root_seen() {
        use ed25519_dalek::SigningKey;
        let key = SigningKey::from_bytes(&[8; 32]);
        let sign = |seq: u64, prev: Hash| {
            let mut r = crate::root::tests::sample(&key);
            (r.seq, r.prev) = (seq, prev);
            SignedRoot::sign(r, &key)
        };
        let five = sign(5, [1; 32]);
        let last = LastSeen {
            seq: 5,
            hash: five.record.hash(),
        };
        let six = sign(6, five.record.hash());
        check_fresh(&six, Some(&last), &[]).unwrap();
        let fork = sign(6, [2; 32]);
        assert!(matches!(
            check_fresh(&fork, Some(&last), &[]),
            Err(VerifyError::Freshness(_))
        ));
        let seven = sign(7, six.record.hash());
        check_fresh(&seven, Some(&last), std::slice::from_ref(&six)).unwrap();
        check_fresh(&seven, Some(&last), &[]).unwrap();
        let seven_on_fork = sign(7, fork.record.hash());
        assert!(check_fresh(&seven_on_fork, Some(&last), std::slice::from_ref(&fork)).is_err());
        assert!(check_fresh(&seven_on_fork, Some(&last), std::slice::from_ref(&six)).is_err());
        assert!(check_fresh(&five, Some(&last), &[]).is_ok());
        assert!(check_fresh(&sign(5, [3; 32]), Some(&last), &[]).is_err());
        assert!(check_fresh(&sign(4, [3; 32]), Some(&last), &[]).is_err());
    }

    /// A proof that shows a forgotten memory's vector, id or time is refused: forgetting is checkable.
    #[test]
    fn tombstones_that_keep_the_memory_are_refused() {
        assert!(round_trip(GraphNode::tombstone(3, 0, 4)).is_ok());
        let mut leaky = GraphNode::tombstone(3, 0, 4);
        leaky.vector = vec![5, -3, 0, 1];
        assert!(matches!(round_trip(leaky), Err(VerifyError::Malformed(_))));
        let mut leaky = GraphNode::tombstone(3, 0, 4);
        leaky.id = MemoryId([9; 32]);
        assert!(round_trip(leaky).is_err());
    }
}
