//! The replication protocol's messages (ALPN `cairn/sync/1` and the gossip topics, docs/PROOFS.md
//! "Replication"): a replica asks a peer for (owner, namespace) after its seq; the peer answers with the
//! signed roots since then and the graph nodes that changed (or all of them). Also the snapshot, grant-set and
//! roots asks on the same ALPN, and what is gossiped (root announcements, witness cosignatures, equivocation
//! alerts). Plain data and codecs only: nothing here is trusted, and every decoder answers any byte string with
//! a value or an error, never a panic or an allocation sized by an unchecked count. The node and anyone else
//! speaking the protocol share these codecs; a replica verifies every root and recomputes every leaf before
//! anything becomes visible.

use std::collections::HashSet;

use crate::id::MemoryId;
use crate::proof::{decode_node, encode_node, ProofNode};
use crate::root::SignedRoot;
use crate::wire::Reader;

/// Most signed roots in one catch-up answer or roots reply (nodes serve at most their configured chain length,
/// which is at most this).
pub const MAX_CHAIN: usize = 4096;

/// A witness cosignature held for a root: (witness key, ed25519 signature).
pub type Cosig = ([u8; 32], [u8; 64]);

/// What a node serves a replica: the latest root and either the changed nodes or all of them.
#[derive(Debug, Clone)]
pub struct SyncOut {
    /// The latest root.
    pub root: SignedRoot,
    /// True when `nodes` is the whole graph (the replica starts over).
    pub full: bool,
    /// Nodes with full lists.
    pub nodes: Vec<ProofNode>,
}

/// What a node serves to a replica catching up from `have`.
#[derive(Debug, Clone)]
pub struct CatchUp {
    /// Roots after `have` up to the latest, oldest first (the last is `out.root`).
    pub chain: Vec<SignedRoot>,
    /// The nodes.
    pub out: SyncOut,
    /// Witness cosignatures the sender holds for `out.root`.
    pub cosigs: Vec<Cosig>,
}

/// A snapshot as offered to peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotRef {
    /// The root seq it is at.
    pub seq: u64,
    /// The BLAKE3 hash of its HashSeq.
    pub hash: [u8; 32],
}

/// Request magic.
const REQ: &[u8; 4] = b"CSQ1";
/// Response magic.
const RESP: &[u8; 4] = b"CSR1";
/// Most bytes of an answer (a whole 100k-memory graph is about 60 MB).
pub const MAX_ANSWER: usize = 1 << 30;
/// Most nodes in an answer.
const MAX_NODES: usize = 20_000_000;

/// A catch-up request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The namespace's owner.
    pub owner: [u8; 32],
    /// The namespace.
    pub ns: String,
    /// The asker's latest seq (0 for none).
    pub have: u64,
}

/// A malformed message.
#[derive(Debug, thiserror::Error)]
#[error("malformed catch-up message: {0}")]
pub struct Malformed(pub &'static str);

impl From<crate::wire::Short> for Malformed {
    fn from(_: crate::wire::Short) -> Self {
        Malformed("truncated")
    }
}

impl Ask {
    /// `"CSQ1" owner[32] u64be(have) u16be(len) namespace`.
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(48 + self.ns.len());
        o.extend_from_slice(REQ);
        o.extend_from_slice(&self.owner);
        o.extend_from_slice(&self.have.to_be_bytes());
        o.extend_from_slice(&(self.ns.len() as u16).to_be_bytes());
        o.extend_from_slice(self.ns.as_bytes());
        o
    }

    /// Parses a request.
    pub fn decode(b: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(b);
        if r.bytes(4)? != REQ {
            return Err(Malformed("not a catch-up request"));
        }
        let owner = r.array()?;
        let have = r.u64()?;
        let ns = last_namespace(&mut r)?;
        Ok(Ask { owner, ns, have })
    }
}

/// Snapshot request magic.
const SNAP_REQ: &[u8; 4] = b"CSS1";
/// Snapshot response magic.
const SNAP_RESP: &[u8; 4] = b"CSH1";

/// True if `b` is a snapshot request (the sync ALPN carries both kinds).
pub fn is_snapshot_ask(b: &[u8]) -> bool {
    b.starts_with(SNAP_REQ)
}

/// `"CSS1" owner[32] u16be(len) namespace`: which snapshot does the peer hold for (owner, namespace)?
pub fn encode_snapshot_ask(owner: &[u8; 32], ns: &str) -> Vec<u8> {
    let mut o = Vec::with_capacity(38 + ns.len());
    o.extend_from_slice(SNAP_REQ);
    o.extend_from_slice(owner);
    o.extend_from_slice(&(ns.len() as u16).to_be_bytes());
    o.extend_from_slice(ns.as_bytes());
    o
}

/// Parses a snapshot request into (owner, namespace).
pub fn decode_snapshot_ask(b: &[u8]) -> Result<([u8; 32], String), Malformed> {
    let mut r = Reader::new(b);
    if r.bytes(4)? != SNAP_REQ {
        return Err(Malformed("not a snapshot request"));
    }
    let owner = r.array()?;
    Ok((owner, last_namespace(&mut r)?))
}

/// Reads `u16be(len) namespace`, which must end the message.
fn last_namespace(r: &mut Reader<'_>) -> Result<String, Malformed> {
    let n = r.u16()? as usize;
    let ns = std::str::from_utf8(r.bytes(n)?)
        .map_err(|_| Malformed("namespace"))?
        .to_owned();
    if !r.is_empty() {
        return Err(Malformed("trailing bytes"));
    }
    Ok(ns)
}

/// `"CSH1" u8(0) u64be(seq) hash[32]` (a snapshot: its root seq and HashSeq hash) or `"CSH1" u8(2)` (none).
pub fn encode_snapshot_reply(s: Option<SnapshotRef>) -> Vec<u8> {
    let mut o = SNAP_RESP.to_vec();
    match s {
        Some(s) => {
            o.push(ANSWER);
            o.extend_from_slice(&s.seq.to_be_bytes());
            o.extend_from_slice(&s.hash);
        }
        None => o.push(UNKNOWN),
    }
    o
}

/// Parses a snapshot reply. Never panics.
pub fn decode_snapshot_reply(b: &[u8]) -> Result<Option<SnapshotRef>, Malformed> {
    let mut r = Reader::new(b);
    if r.bytes(4)? != SNAP_RESP {
        return Err(Malformed("not a snapshot reply"));
    }
    let out = match r.u8()? {
        ANSWER => Some(SnapshotRef {
            seq: r.u64()?,
            hash: r.array()?,
        }),
        UNKNOWN => None,
        _ => return Err(Malformed("status")),
    };
    if !r.is_empty() {
        return Err(Malformed("trailing bytes"));
    }
    Ok(out)
}

/// Grant-set request magic.
const GRANTS_REQ: &[u8; 4] = b"CSG1";
/// Grant-set response magic.
const GRANTS_RESP: &[u8; 4] = b"CSJ1";
/// Largest grant-set reply (a set of [`crate::grants::MAX_GRANTEES`] peers and its signature).
pub const GRANTS_REPLY_MAX: usize = 4 + 1 + 15 + 32 + 2 + 1024 + 12 + 32 * 4096 + 64;

/// True if `b` is a grant-set request.
pub fn is_grants_ask(b: &[u8]) -> bool {
    b.starts_with(GRANTS_REQ)
}

/// `"CSG1" owner[32] u16be(len) namespace`: the newest owner-signed grant set held for (owner, namespace).
pub fn encode_grants_ask(owner: &[u8; 32], ns: &str) -> Vec<u8> {
    let mut o = Vec::with_capacity(38 + ns.len());
    o.extend_from_slice(GRANTS_REQ);
    o.extend_from_slice(owner);
    o.extend_from_slice(&(ns.len() as u16).to_be_bytes());
    o.extend_from_slice(ns.as_bytes());
    o
}

/// Parses a grant-set request into (owner, namespace).
pub fn decode_grants_ask(b: &[u8]) -> Result<([u8; 32], String), Malformed> {
    let mut r = Reader::new(b);
    if r.bytes(4)? != GRANTS_REQ {
        return Err(Malformed("not a grant-set request"));
    }
    let owner = r.array()?;
    Ok((owner, last_namespace(&mut r)?))
}

/// `"CSJ1" u8(0) signed_grant_set` or `"CSJ1" u8(2)` (none, or not for this caller).
pub fn encode_grants_reply(g: Option<&[u8]>) -> Vec<u8> {
    let mut o = GRANTS_RESP.to_vec();
    match g {
        Some(b) => {
            o.push(ANSWER);
            o.extend_from_slice(b);
        }
        None => o.push(UNKNOWN),
    }
    o
}

/// Parses a grant-set reply into the signed set's bytes (checked by the caller). Never panics.
pub fn decode_grants_reply(b: &[u8]) -> Result<Option<Vec<u8>>, Malformed> {
    let mut r = Reader::new(b);
    if r.bytes(4)? != GRANTS_RESP {
        return Err(Malformed("not a grant-set reply"));
    }
    match r.u8()? {
        ANSWER => Ok(Some(b[5..].to_vec())),
        UNKNOWN if r.is_empty() => Ok(None),
        _ => Err(Malformed("status")),
    }
}

/// Roots request magic.
const ROOTS_REQ: &[u8; 4] = b"CSK1";
/// Roots response magic.
const ROOTS_RESP: &[u8; 4] = b"CSL1";

/// True if `b` is a roots request.
pub fn is_roots_ask(b: &[u8]) -> bool {
    b.starts_with(ROOTS_REQ)
}

/// `"CSK1" owner[32] u64be(from) u16be(len) namespace`: the owner's signed roots of the namespace from seq `from`
/// on (a replica links a catch-up chain that starts above the root it holds).
pub fn encode_roots_ask(owner: &[u8; 32], ns: &str, from: u64) -> Vec<u8> {
    let mut o = Vec::with_capacity(46 + ns.len());
    o.extend_from_slice(ROOTS_REQ);
    o.extend_from_slice(owner);
    o.extend_from_slice(&from.to_be_bytes());
    o.extend_from_slice(&(ns.len() as u16).to_be_bytes());
    o.extend_from_slice(ns.as_bytes());
    o
}

/// Parses a roots request into (owner, namespace, from).
pub fn decode_roots_ask(b: &[u8]) -> Result<([u8; 32], String, u64), Malformed> {
    let mut r = Reader::new(b);
    if r.bytes(4)? != ROOTS_REQ {
        return Err(Malformed("not a roots request"));
    }
    let owner = r.array()?;
    let from = r.u64()?;
    Ok((owner, last_namespace(&mut r)?, from))
}

/// `"CSL1" u32be(n) (u32be(len) signed_root)×n`, n ≤ [`MAX_CHAIN`], consecutive seqs
/// from the asked one (n = 0: none held).
pub fn encode_roots_reply(roots: &[SignedRoot]) -> Vec<u8> {
    let mut o = ROOTS_RESP.to_vec();
    let n = roots.len().min(MAX_CHAIN);
    o.extend_from_slice(&(n as u32).to_be_bytes());
    for root in &roots[..n] {
        let b = root.encode();
        o.extend_from_slice(&(b.len() as u32).to_be_bytes());
        o.extend_from_slice(&b);
    }
    o
}

/// Parses a roots reply (signatures are checked by the caller). Never panics.
pub fn decode_roots_reply(b: &[u8]) -> Result<Vec<SignedRoot>, Malformed> {
    let mut r = Reader::new(b);
    if r.bytes(4)? != ROOTS_RESP {
        return Err(Malformed("not a roots reply"));
    }
    let n = r.u32()? as usize;
    if n > MAX_CHAIN {
        return Err(Malformed("root count"));
    }
    let mut roots = Vec::with_capacity(n.min(r.remaining() / 4));
    for _ in 0..n {
        let len = r.u32()? as usize;
        roots.push(SignedRoot::decode(r.bytes(len)?).map_err(|_| Malformed("root"))?);
    }
    if !r.is_empty() {
        return Err(Malformed("trailing bytes"));
    }
    Ok(roots)
}

/// Status byte: an answer follows.
const ANSWER: u8 = 0;
/// Status byte: nothing newer than the asker's seq.
const UP_TO_DATE: u8 = 1;
/// Status byte: this peer does not hold that namespace of that owner.
const UNKNOWN: u8 = 2;

/// What a peer says.
pub enum Reply {
    /// Roots and nodes.
    Answer(Box<CatchUp>),
    /// Nothing newer.
    UpToDate,
    /// Not held here.
    Unknown,
}

/// `"CSR1" u8(status)`, then for an answer: `u32be(n) (u32be(len) signed_root)×n u8(full) u16be(dim)
/// u32be(count) node×count u16be(c) (witness[32] signature[64])×c` (nodes in the recall-proof node encoding,
/// always with full lists, in strictly increasing node order; the cosignatures are of the last root).
pub fn encode_reply(r: &Reply) -> Vec<u8> {
    ReplyChunks::new(r, usize::MAX).flatten().collect()
}

/// Nodes per chunk of [`ReplyChunks`] when the caller has no preference (about 150 KB at 384 dimensions).
pub const NODES_PER_CHUNK: usize = 256;

/// The bytes of [`encode_reply`] in pieces of at most `nodes_per_chunk` nodes, so a sender writes a whole graph
/// to a stream or a blob without ever holding its encoding whole (a 100k-memory graph encodes to about 39 MB).
pub struct ReplyChunks<'a> {
    reply: &'a Reply,
    per: usize,
    /// Next piece: 0 the head, 1 + i the i-th run of nodes, then the tail; None when done.
    next: Option<usize>,
}

impl<'a> ReplyChunks<'a> {
    /// Pieces of `reply`'s encoding.
    pub fn new(reply: &'a Reply, nodes_per_chunk: usize) -> Self {
        ReplyChunks {
            reply,
            per: nodes_per_chunk.max(1),
            next: Some(0),
        }
    }
}

impl Iterator for ReplyChunks<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let at = self.next?;
        let c = match self.reply {
            Reply::Answer(c) => c,
            Reply::UpToDate | Reply::Unknown => {
                self.next = None;
                let status = if matches!(self.reply, Reply::UpToDate) {
                    UP_TO_DATE
                } else {
                    UNKNOWN
                };
                let mut o = RESP.to_vec();
                o.push(status);
                return Some(o);
            }
        };
        let runs = c.out.nodes.len().div_ceil(self.per);
        let mut o = Vec::new();
        if at == 0 {
            o.extend_from_slice(RESP);
            o.push(ANSWER);
            o.extend_from_slice(&(c.chain.len() as u32).to_be_bytes());
            for root in &c.chain {
                let b = root.encode();
                o.extend_from_slice(&(b.len() as u32).to_be_bytes());
                o.extend_from_slice(&b);
            }
            o.push(u8::from(c.out.full));
            o.extend_from_slice(&c.out.root.record.dim.to_be_bytes());
            o.extend_from_slice(&(c.out.nodes.len() as u32).to_be_bytes());
        } else if at <= runs {
            let from = (at - 1).saturating_mul(self.per);
            let to = from.saturating_add(self.per).min(c.out.nodes.len());
            for n in c.out.nodes.get(from..to).unwrap_or(&[]) {
                encode_node(&mut o, n);
            }
        } else {
            o.extend_from_slice(&(c.cosigs.len().min(u16::MAX as usize) as u16).to_be_bytes());
            for (w, sig) in c.cosigs.iter().take(u16::MAX as usize) {
                o.extend_from_slice(w);
                o.extend_from_slice(sig);
            }
            self.next = None;
            return Some(o);
        }
        self.next = Some(at + 1);
        Some(o)
    }
}

/// Parses a reply. Never panics. The same decoder as [`ReplyReader`], fed the whole message at once.
pub fn decode_reply(b: &[u8]) -> Result<Reply, Malformed> {
    let mut d = ReplyReader::new(b.len());
    d.feed(b)?;
    d.finish()
}

/// Most bytes one signed root takes in a chain: `u32be(len)` and [`SignedRoot::encode`] (its own length, a
/// record of at most 1,024 bytes and the signature).
const MAX_CHAIN_ITEM: usize = 4 + 4 + 1024 + 64;

/// Most bytes one node of `dim` dimensions can take in the node encoding (a coded component is at most 35
/// bits; every level's list at most [`crate::commit::MAX_NEIGHBOURS`] ids).
fn max_node_len(dim: usize) -> usize {
    let lists =
        (usize::from(crate::commit::MAX_LEVEL) + 1) * (2 + 4 * crate::commit::MAX_NEIGHBOURS);
    64 + dim.saturating_mul(5) + lists
}

/// Where a [`ReplyReader`] is in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Status,
    ChainCount,
    Chain(usize),
    Shape,
    Nodes(usize),
    CosigCount,
    Cosigs(usize),
    /// The answer is complete; only the end of the input may follow.
    End,
    /// Up to date or unknown: whatever follows the status byte is ignored.
    Short,
}

/// Decodes a catch-up reply from pieces as they arrive (a QUIC stream, a stored snapshot part), holding the bytes
/// of at most the item being decoded beside what is already decoded, so a receiver never holds a whole encoded
/// graph next to the decoded one. Accepts exactly what [`decode_reply`] accepts, however the input is cut:
/// an item that fails to parse is an error once its bytes are all there (or the input ended), and waits for more
/// otherwise. Never panics; refuses more than `max` bytes in all.
pub struct ReplyReader {
    /// Bytes fed but not yet decoded (less than one item).
    buf: Vec<u8>,
    fed: usize,
    max: usize,
    stage: Stage,
    status: u8,
    chain: Vec<SignedRoot>,
    full: bool,
    dim: usize,
    nodes: Vec<ProofNode>,
    cosigs: Vec<Cosig>,
}

/// Parses one item of at most `bound` bytes at `data[*at..]` with `f`: Some when it parsed (and `*at` moves past
/// it), None when more bytes may complete it, an error when all of its bytes are there (or the input ended) and it
/// still does not parse.
fn item<T>(
    data: &[u8],
    at: &mut usize,
    bound: usize,
    eof: bool,
    f: impl FnOnce(&mut Reader<'_>) -> Result<T, Malformed>,
) -> Result<Option<T>, Malformed> {
    let avail = data.get(*at..).unwrap_or(&[]);
    let mut r = Reader::new(avail);
    match f(&mut r) {
        Ok(v) => {
            *at += avail.len() - r.remaining();
            Ok(Some(v))
        }
        Err(e) if eof || avail.len() >= bound => Err(e),
        Err(_) => Ok(None),
    }
}

impl ReplyReader {
    /// A decoder that refuses input beyond `max` bytes (at most [`MAX_ANSWER`] is sensible).
    pub fn new(max: usize) -> Self {
        ReplyReader {
            buf: Vec::new(),
            fed: 0,
            max,
            stage: Stage::Status,
            status: UNKNOWN,
            chain: Vec::new(),
            full: false,
            dim: 0,
            nodes: Vec::new(),
            cosigs: Vec::new(),
        }
    }

    /// Bytes fed so far.
    pub fn bytes_fed(&self) -> usize {
        self.fed
    }

    /// Takes the next piece of the message and decodes every item it completes; keeps only the bytes of an
    /// item not yet complete.
    pub fn feed(&mut self, piece: &[u8]) -> Result<(), Malformed> {
        self.fed = self.fed.saturating_add(piece.len());
        if self.fed > self.max {
            return Err(Malformed("reply too large"));
        }
        if self.stage == Stage::Short {
            return Ok(());
        }
        if self.buf.is_empty() {
            // Decoded straight from the piece: a whole message fed at once is never copied.
            let used = self.run(piece, false)?;
            self.buf.extend_from_slice(piece.get(used..).unwrap_or(&[]));
        } else {
            let mut buf = std::mem::take(&mut self.buf);
            buf.extend_from_slice(piece);
            let used = self.run(&buf, false)?;
            buf.drain(..used.min(buf.len()));
            self.buf = buf;
        }
        Ok(())
    }

    /// The input ended: the decoded reply, or why it is not one.
    pub fn finish(mut self) -> Result<Reply, Malformed> {
        let buf = std::mem::take(&mut self.buf);
        let used = self.run(&buf, true)?;
        match self.stage {
            Stage::Short if self.status == UP_TO_DATE => Ok(Reply::UpToDate),
            Stage::Short => Ok(Reply::Unknown),
            Stage::End => {
                if used != buf.len() {
                    return Err(Malformed("trailing bytes"));
                }
                let root = self.chain.last().cloned().ok_or(Malformed("root count"))?;
                if usize::from(root.record.dim) != self.dim {
                    return Err(Malformed("dimension"));
                }
                Ok(Reply::Answer(Box::new(CatchUp {
                    chain: self.chain,
                    out: SyncOut {
                        root,
                        full: self.full,
                        nodes: self.nodes,
                    },
                    cosigs: self.cosigs,
                })))
            }
            // With the input ended, run stops only at the end, after the status, or with an error.
            _ => Err(Malformed("truncated")),
        }
    }

    /// Decodes the items `data` completes; returns how many bytes they took.
    fn run(&mut self, data: &[u8], eof: bool) -> Result<usize, Malformed> {
        let mut at = 0;
        loop {
            let next = match self.stage {
                Stage::Short | Stage::End => return Ok(at),
                Stage::Status => {
                    let Some(status) = item(data, &mut at, 5, eof, |r| {
                        if r.bytes(4)? != RESP {
                            return Err(Malformed("not a catch-up reply"));
                        }
                        Ok(r.u8()?)
                    })?
                    else {
                        return Ok(at);
                    };
                    self.status = status;
                    match status {
                        UP_TO_DATE | UNKNOWN => Stage::Short,
                        ANSWER => Stage::ChainCount,
                        _ => return Err(Malformed("status")),
                    }
                }
                Stage::ChainCount => {
                    let Some(n) = item(data, &mut at, 4, eof, |r| Ok(r.u32()? as usize))? else {
                        return Ok(at);
                    };
                    if n > MAX_CHAIN || n == 0 {
                        return Err(Malformed("root count"));
                    }
                    self.chain = Vec::with_capacity(n);
                    Stage::Chain(n)
                }
                Stage::Chain(0) => Stage::Shape,
                Stage::Chain(left) => {
                    let Some(root) = item(data, &mut at, MAX_CHAIN_ITEM, eof, |r| {
                        let len = r.u32()? as usize;
                        SignedRoot::decode(r.bytes(len)?).map_err(|_| Malformed("root"))
                    })?
                    else {
                        return Ok(at);
                    };
                    self.chain.push(root);
                    Stage::Chain(left - 1)
                }
                Stage::Shape => {
                    let Some((full, dim, count)) = item(data, &mut at, 7, eof, |r| {
                        let full = match r.u8()? {
                            0 => false,
                            1 => true,
                            _ => return Err(Malformed("full flag")),
                        };
                        Ok((full, r.u16()? as usize, r.u32()? as usize))
                    })?
                    else {
                        return Ok(at);
                    };
                    if count > MAX_NODES {
                        return Err(Malformed("node count"));
                    }
                    (self.full, self.dim) = (full, dim);
                    // Sized by the bytes at hand, not by the claimed count (which the nodes that follow must meet).
                    let room = data.len().saturating_sub(at) / (dim / 2 + 48);
                    self.nodes = Vec::with_capacity(count.min(room.saturating_add(1024)));
                    Stage::Nodes(count)
                }
                Stage::Nodes(0) => Stage::CosigCount,
                Stage::Nodes(left) => {
                    let dim = self.dim;
                    let Some(n) = item(data, &mut at, max_node_len(dim), eof, |r| {
                        decode_node(r, dim).map_err(|_| Malformed("node"))
                    })?
                    else {
                        return Ok(at);
                    };
                    // Strictly increasing node numbers: no node twice, one canonical order.
                    if self
                        .nodes
                        .last()
                        .is_some_and(|p| p.node.node >= n.node.node)
                    {
                        return Err(Malformed("nodes out of order or repeated"));
                    }
                    self.nodes.push(n);
                    Stage::Nodes(left - 1)
                }
                Stage::CosigCount => {
                    let Some(n) = item(data, &mut at, 2, eof, |r| Ok(r.u16()? as usize))? else {
                        return Ok(at);
                    };
                    self.cosigs = Vec::with_capacity(n.min(1024));
                    Stage::Cosigs(n)
                }
                Stage::Cosigs(0) => Stage::End,
                Stage::Cosigs(left) => {
                    let Some(c) = item(data, &mut at, 96, eof, |r| Ok((r.array()?, r.array()?)))?
                    else {
                        return Ok(at);
                    };
                    self.cosigs.push(c);
                    Stage::Cosigs(left - 1)
                }
            };
            self.stage = next;
        }
    }
}

/// Gossip message magic: a signed root (`"CGR1" signed_root`).
const MSG_ROOT: &[u8; 4] = b"CGR1";
/// Gossip message magic: a witness cosignature (`"CGC1" u64be(seq) witness[32] signature[64]`).
const MSG_COSIG: &[u8; 4] = b"CGC1";

/// A cosignature as gossiped (the topic names owner and namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipCosig {
    /// The seq of the root cosigned.
    pub seq: u64,
    /// The witness's key.
    pub witness: [u8; 32],
    /// Its signature of the root.
    pub sig: [u8; 64],
}

/// What arrives on a namespace's gossip topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gossip {
    /// The owner announces a root (signature and namespace still to be checked).
    Root(Box<SignedRoot>),
    /// A witness cosigned a root.
    Cosig(GossipCosig),
}

/// `"CGR1" signed_root`: a root announcement.
pub fn encode_root_announcement(root: &SignedRoot) -> Vec<u8> {
    let mut msg = MSG_ROOT.to_vec();
    msg.extend_from_slice(&root.encode());
    msg
}

impl GossipCosig {
    /// `"CGC1" u64be(seq) witness[32] signature[64]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut o = MSG_COSIG.to_vec();
        o.extend_from_slice(&self.seq.to_be_bytes());
        o.extend_from_slice(&self.witness);
        o.extend_from_slice(&self.sig);
        o
    }
}

/// Parses a gossip message; None for anything else (ignored by the node).
pub fn decode_gossip(b: &[u8]) -> Option<Gossip> {
    if b.len() > 4 && &b[..4] == MSG_ROOT {
        return SignedRoot::decode(&b[4..])
            .ok()
            .map(|r| Gossip::Root(Box::new(r)));
    }
    if b.len() != 4 + 8 + 32 + 64 || &b[..4] != MSG_COSIG {
        return None;
    }
    Some(Gossip::Cosig(GossipCosig {
        seq: u64::from_be_bytes(b[4..12].try_into().ok()?),
        witness: b[12..44].try_into().ok()?,
        sig: b[44..108].try_into().ok()?,
    }))
}

/// Evidence that an owner signed two different roots for one (namespace, seq).
#[derive(Debug, Clone)]
pub struct Alert {
    /// The owner.
    pub owner: [u8; 32],
    /// The namespace.
    pub namespace: String,
    /// The two roots, both validly signed by the owner, same seq, different hashes.
    pub roots: [SignedRoot; 2],
}

impl Alert {
    /// `"CALERT1" owner[32] u16be(len) namespace (u32be(len) signed_root)×2`.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"CALERT1");
        b.extend_from_slice(&self.owner);
        b.extend_from_slice(&(self.namespace.len() as u16).to_be_bytes());
        b.extend_from_slice(self.namespace.as_bytes());
        for r in &self.roots {
            let e = r.encode();
            b.extend_from_slice(&(e.len() as u32).to_be_bytes());
            b.extend_from_slice(&e);
        }
        b
    }

    /// Parses [`Alert::encode`] output (the evidence is checked by the caller).
    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Reader::new(b);
        if r.bytes(7).ok()? != b"CALERT1" {
            return None;
        }
        let owner = r.array().ok()?;
        let n = r.u16().ok()? as usize;
        let namespace = std::str::from_utf8(r.bytes(n).ok()?).ok()?.to_owned();
        let mut one = || -> Option<SignedRoot> {
            let len = r.u32().ok()? as usize;
            SignedRoot::decode(r.bytes(len).ok()?).ok()
        };
        let roots = [one()?, one()?];
        Some(Alert {
            owner,
            namespace,
            roots,
        })
    }
}

/// A malformed record page (docs/PROOFS.md "Snapshots").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed record page: {0}")]
pub struct BadPage(pub &'static str);

/// Encodes records as one snapshot page: `(u32be(len) record)*`.
pub fn encode_page<R: AsRef<[u8]>>(records: &[R]) -> Vec<u8> {
    let mut o = Vec::with_capacity(records.iter().map(|r| r.as_ref().len() + 4).sum());
    for r in records {
        let r = r.as_ref();
        o.extend_from_slice(&(r.len() as u32).to_be_bytes());
        o.extend_from_slice(r);
    }
    o
}

/// The (offset, length) of every record in a page. Never panics.
pub fn parse_page(b: &[u8]) -> Result<Vec<(u32, u32)>, BadPage> {
    if b.len() > u32::MAX as usize {
        return Err(BadPage("too large"));
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < b.len() {
        let head = b.get(at..at + 4).ok_or(BadPage("truncated length"))?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let start = at + 4;
        let end = start.checked_add(len).ok_or(BadPage("length"))?;
        if end > b.len() {
            return Err(BadPage("truncated record"));
        }
        out.push((start as u32, len as u32));
        at = end;
    }
    Ok(out)
}

/// Where one record of a snapshot sits: its page (0-based among the record pages), its id (BLAKE3 of its
/// bytes) and its place in the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageEntry {
    /// Index of the page among the snapshot's record pages.
    pub page: usize,
    /// BLAKE3 of the record's bytes.
    pub id: MemoryId,
    /// Offset of the bytes in the page.
    pub offset: u32,
    /// Length of the bytes.
    pub len: u32,
}

/// Why a snapshot's record pages were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PagesError {
    /// A page does not parse (pages are numbered from 1 in messages, the graph answer being part 0).
    #[error("page {page}: {bad}")]
    Page {
        /// The page's part number.
        page: usize,
        /// Why.
        bad: BadPage,
    },
    /// A record whose id is not a live leaf of the snapshot's root.
    #[error("page {page} holds record {id}, not a live leaf")]
    NotLive {
        /// The page's part number.
        page: usize,
        /// The record's id.
        id: MemoryId,
    },
    /// A record held twice.
    #[error("record {0} appears twice")]
    Twice(MemoryId),
    /// Live leaves whose records no page holds.
    #[error("the pages hold {held} of {live} live records")]
    Missing {
        /// Records found.
        held: usize,
        /// Live leaves.
        live: usize,
    },
}

/// The rule of a valid snapshot: `pages` hold the record of every id in `live` exactly once and nothing else.
/// Returns where each record sits. Never panics.
pub fn records_of_pages<P: AsRef<[u8]>>(
    pages: &[P],
    live: &HashSet<MemoryId>,
) -> Result<Vec<PageEntry>, PagesError> {
    let mut check = PagesCheck::new(live.clone());
    let mut out = Vec::with_capacity(live.len());
    for page in pages {
        out.extend(check.page(page.as_ref())?);
    }
    check.finish()?;
    Ok(out)
}

/// [`records_of_pages`] one page at a time, for a receiver that reads a snapshot's pages one by one instead of
/// holding them all: [`PagesCheck::page`] for each page in order, then [`PagesCheck::finish`].
pub struct PagesCheck {
    live: HashSet<MemoryId>,
    seen: HashSet<MemoryId>,
    pages: usize,
}

impl PagesCheck {
    /// Checks pages against the live leaves `live`.
    pub fn new(live: HashSet<MemoryId>) -> Self {
        PagesCheck {
            seen: HashSet::with_capacity(live.len()),
            live,
            pages: 0,
        }
    }

    /// The next page: where each of its records sits, or why the snapshot is refused.
    pub fn page(&mut self, page: &[u8]) -> Result<Vec<PageEntry>, PagesError> {
        let i = self.pages;
        self.pages += 1;
        let spans = parse_page(page).map_err(|bad| PagesError::Page { page: i + 1, bad })?;
        let mut out = Vec::with_capacity(spans.len());
        for (offset, len) in spans {
            // parse_page keeps offset + len within the page.
            let bytes = &page[offset as usize..offset as usize + len as usize];
            let id = MemoryId::of_bytes(bytes);
            if !self.live.contains(&id) {
                return Err(PagesError::NotLive { page: i + 1, id });
            }
            if !self.seen.insert(id) {
                return Err(PagesError::Twice(id));
            }
            out.push(PageEntry {
                page: i,
                id,
                offset,
                len,
            });
        }
        Ok(out)
    }

    /// After the last page: every live record was held.
    pub fn finish(self) -> Result<(), PagesError> {
        if self.seen.len() != self.live.len() {
            return Err(PagesError::Missing {
                held: self.seen.len(),
                live: self.live.len(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SnapshotRef;

    #[test]
    fn pages_round_trip_and_bad_pages_are_errors() {
        let recs: [&[u8]; 3] = [b"one", b"", b"three"];
        let page = encode_page(&recs);
        let got: Vec<&[u8]> = parse_page(&page)
            .unwrap()
            .into_iter()
            .map(|(o, l)| &page[o as usize..(o + l) as usize])
            .collect();
        assert_eq!(got, recs);
        // docs/PROOFS.md "Snapshots": the page test vector.
        let page: [&[u8]; 2] = [b"ab", b""];
        assert_eq!(hex::encode(encode_page(&page)), "00000002616200000000");
        assert!(parse_page(&[0, 0, 0]).is_err());
        assert!(parse_page(&[0, 0, 0, 5, 1, 2]).is_err());
        assert!(parse_page(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(parse_page(&[]).unwrap().is_empty());
    }

    #[test]
    fn pages_must_hold_every_live_record_once_and_nothing_else() {
        let (a, b, c): (&[u8], &[u8], &[u8]) = (b"a", b"b", b"c");
        let id = MemoryId::of_bytes;
        let live: HashSet<MemoryId> = [id(a), id(b)].into_iter().collect();
        let found = records_of_pages(&[encode_page(&[a]), encode_page(&[b])], &live).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(
            (found[1].page, found[1].id, found[1].offset, found[1].len),
            (1, id(b), 4, 1)
        );
        assert_eq!(
            records_of_pages(&[encode_page(&[a])], &live),
            Err(PagesError::Missing { held: 1, live: 2 })
        );
        assert_eq!(
            records_of_pages(&[encode_page(&[a, b, a])], &live),
            Err(PagesError::Twice(id(a)))
        );
        assert_eq!(
            records_of_pages(&[encode_page(&[a, b]), encode_page(&[c])], &live),
            Err(PagesError::NotLive { page: 2, id: id(c) })
        );
        assert!(matches!(
            records_of_pages(&[vec![0u8, 0, 0, 9]], &live),
            Err(PagesError::Page { page: 1, .. })
        ));
    }

    #[test]
    fn snapshot_messages_round_trip_and_reject_garbage() {
        let ask = encode_snapshot_ask(&[7; 32], "team/a");
        assert!(is_snapshot_ask(&ask));
        assert_eq!(
            decode_snapshot_ask(&ask).unwrap(),
            ([7; 32], "team/a".into())
        );
        let s = SnapshotRef {
            seq: 42,
            hash: [9; 32],
        };
        assert_eq!(
            decode_snapshot_reply(&encode_snapshot_reply(Some(s))).unwrap(),
            Some(s)
        );
        assert_eq!(
            decode_snapshot_reply(&encode_snapshot_reply(None)).unwrap(),
            None
        );
        // Every truncation and every extra byte is an error, never a panic.
        for b in [ask.clone(), encode_snapshot_reply(Some(s))] {
            for n in 0..b.len() {
                assert!(decode_snapshot_ask(&b[..n]).is_err());
                assert!(decode_snapshot_reply(&b[..n]).is_err());
            }
            let mut long = b.clone();
            long.push(0);
            assert!(decode_snapshot_ask(&long).is_err());
            assert!(decode_snapshot_reply(&long).is_err());
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::commit::GraphNode;
    use crate::proof::NodeLists;
    use proptest::prelude::*;

    fn roots_reply() -> Vec<u8> {
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let mut rec = crate::root::tests::sample(&key);
        (rec.seq, rec.prev) = (1, [0; 32]);
        let root = SignedRoot::sign(rec, &key);
        let mut next = root.clone();
        next.record.seq = 2;
        encode_roots_reply(&[root, next])
    }

    /// An honest catch-up answer: two roots, `nodes` nodes of 8 dimensions (every fifth a tombstone, levels up to
    /// 2) and two cosignatures.
    fn answer(nodes: u32) -> Reply {
        let key = ed25519_dalek::SigningKey::from_bytes(&[6; 32]);
        let mut rec = crate::root::tests::sample(&key);
        (rec.seq, rec.prev, rec.dim) = (1, [0; 32], 8);
        let first = SignedRoot::sign(rec.clone(), &key);
        (rec.seq, rec.prev) = (2, first.record.hash());
        let last = SignedRoot::sign(rec, &key);
        let nodes = (0..nodes)
            .map(|i| {
                let level = (i % 3) as u8;
                let alive = i % 5 != 4;
                let node = if alive {
                    GraphNode {
                        node: i * 2,
                        id: MemoryId([i as u8; 32]),
                        created_at: u64::from(i) * 1000,
                        alive,
                        level,
                        vector: (0..8).map(|d| (i as i8).wrapping_mul(d + 1)).collect(),
                    }
                } else {
                    GraphNode::tombstone(i * 2, level, 8)
                };
                let lists = (0..=level)
                    .map(|l| (0..(i % 7) + u32::from(l)).collect())
                    .collect();
                ProofNode {
                    node,
                    lists: NodeLists::Full(lists),
                }
            })
            .collect();
        Reply::Answer(Box::new(CatchUp {
            chain: vec![first, last.clone()],
            out: SyncOut {
                root: last,
                full: true,
                nodes,
            },
            cosigs: vec![([1; 32], [2; 64]), ([3; 32], [4; 64])],
        }))
    }

    /// Feeds `b` cut at `cuts` (sorted, taken modulo its length) to a [`ReplyReader`].
    fn streamed(b: &[u8], cuts: &[usize]) -> Result<Reply, Malformed> {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (b.len() + 1)).collect();
        at.sort_unstable();
        let mut d = ReplyReader::new(MAX_ANSWER);
        let mut from = 0;
        for c in at.into_iter().chain(std::iter::once(b.len())) {
            d.feed(&b[from..c])?;
            from = c;
        }
        d.finish()
    }

    /// The same reply decoded, as bytes (a reply has no equality of its own).
    fn again(r: &Result<Reply, Malformed>) -> Option<Vec<u8>> {
        r.as_ref().ok().map(encode_reply)
    }

    #[test]
    fn chunks_concatenate_to_the_encoding_and_decode_piece_by_piece() {
        for n in [0, 1, 7, 40] {
            let reply = answer(n);
            let whole = encode_reply(&reply);
            for per in [1, 3, 256] {
                let pieces: Vec<Vec<u8>> = ReplyChunks::new(&reply, per).collect();
                assert_eq!(pieces.concat(), whole, "{n} nodes, {per} per chunk");
                assert_eq!(pieces.len(), 2 + (n as usize).div_ceil(per));
            }
            // One byte at a time, as a slow stream would bring it.
            let cuts: Vec<usize> = (0..whole.len()).collect();
            assert_eq!(again(&streamed(&whole, &cuts)), Some(whole.clone()));
            assert_eq!(again(&decode_reply(&whole)), Some(whole.clone()));
        }
        for r in [Reply::UpToDate, Reply::Unknown] {
            let b = encode_reply(&r);
            assert_eq!(ReplyChunks::new(&r, 1).count(), 1);
            assert_eq!(again(&streamed(&b, &[3])), Some(b));
        }
        // Input beyond the reader's cap is refused as it arrives.
        let whole = encode_reply(&answer(40));
        let mut d = ReplyReader::new(whole.len() - 1);
        assert!(d.feed(&whole[..100]).is_ok());
        assert!(d.feed(&whole[100..]).is_err());
    }

    proptest! {
        /// However a reply is cut into pieces, the streaming reader accepts exactly what the whole-message decoder
        /// accepts, and decodes the same reply: honest answers, answers with one byte changed, cut short or with
        /// bytes added.
        #[test]
        fn streamed_decoding_agrees_with_whole_decoding(
            n in 0u32..30,
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            at in any::<usize>(),
            byte in any::<u8>(),
            how in 0u8..4,
            extra in proptest::collection::vec(any::<u8>(), 1..4),
        ) {
            let mut b = encode_reply(&answer(n));
            match how {
                0 => {}
                1 => { let i = at % b.len(); b[i] = byte; }
                2 => b.truncate(at % b.len()),
                _ => b.extend_from_slice(&extra),
            }
            let whole = decode_reply(&b);
            let piecewise = streamed(&b, &cuts);
            prop_assert_eq!(whole.is_ok(), piecewise.is_ok());
            prop_assert_eq!(again(&whole), again(&piecewise));
            if how == 0 {
                prop_assert!(whole.is_ok());
            }
        }

        /// Every peer-facing decoder of the sync protocol answers arbitrary bytes with a value or an error,
        /// never a panic or an allocation sized by an unchecked count.
        #[test]
        fn sync_decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Ask::decode(&b);
            let _ = decode_reply(&b);
            let _ = decode_snapshot_ask(&b);
            let _ = decode_snapshot_reply(&b);
            let _ = decode_roots_ask(&b);
            let _ = decode_roots_reply(&b);
            let _ = Alert::decode(&b);
            let _ = decode_gossip(&b);
            let _ = parse_page(&b);
        }

        /// Mutations of a valid roots reply (a changed byte, a cut, bytes added) never panic, and a reply that
        /// still decodes has its count in bounds.
        #[test]
        fn mutated_roots_replies_never_panic(at in 0usize..1000, byte in any::<u8>(), cut in 0usize..1000, extra in proptest::collection::vec(any::<u8>(), 0..8)) {
            let good = roots_reply();
            let mut b = good.clone();
            let i = at % b.len();
            b[i] = byte;
            if let Ok(r) = decode_roots_reply(&b) {
                prop_assert!(r.len() <= MAX_CHAIN);
            }
            let _ = decode_roots_reply(&good[..cut % good.len()]);
            let mut long = good.clone();
            long.extend_from_slice(&extra);
            if !extra.is_empty() {
                prop_assert!(decode_roots_reply(&long).is_err());
            }
        }
    }

    #[test]
    fn gossip_messages_round_trip() {
        let b = roots_reply();
        let root = decode_roots_reply(&b).expect("decodes").remove(0);
        let msg = encode_root_announcement(&root);
        assert_eq!(decode_gossip(&msg), Some(Gossip::Root(Box::new(root))));
        let c = GossipCosig {
            seq: 7,
            witness: [3; 32],
            sig: [4; 64],
        };
        let msg = c.encode();
        assert_eq!(decode_gossip(&msg), Some(Gossip::Cosig(c)));
        for n in 0..msg.len() {
            assert_eq!(decode_gossip(&msg[..n]), None);
        }
    }

    #[test]
    fn roots_messages_round_trip() {
        let b = roots_reply();
        let r = decode_roots_reply(&b).expect("decodes");
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].record.seq, 2);
        let ask = encode_roots_ask(&[7; 32], "team/a", 9);
        assert!(is_roots_ask(&ask));
        assert_eq!(
            decode_roots_ask(&ask).expect("ask"),
            ([7; 32], "team/a".into(), 9)
        );
        for n in 0..ask.len() {
            assert!(decode_roots_ask(&ask[..n]).is_err());
        }
    }
}
