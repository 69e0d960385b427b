//! The catch-up protocol's messages (ALPN `cairn/sync/1`, docs/PROOFS.md "Replication"): a replica asks a
//! peer for (owner, namespace) after its seq; the peer answers with the signed roots since then and the
//! graph nodes that changed (or all of them). Nothing here is trusted: the replica verifies every root and
//! recomputes every leaf before anything becomes visible.

use cairn_index::proof::{decode_node, encode_node, ProofNode};
use cairn_index::root::SignedRoot;
use cairn_index::wire::Reader;

use crate::engine::replica::CatchUp;
use crate::engine::SyncOut;

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

impl From<cairn_index::wire::Short> for Malformed {
    fn from(_: cairn_index::wire::Short) -> Self {
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
pub fn encode_snapshot_reply(s: Option<crate::engine::snapshot::SnapshotRef>) -> Vec<u8> {
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
pub fn decode_snapshot_reply(
    b: &[u8],
) -> Result<Option<crate::engine::snapshot::SnapshotRef>, Malformed> {
    let mut r = Reader::new(b);
    if r.bytes(4)? != SNAP_RESP {
        return Err(Malformed("not a snapshot reply"));
    }
    let out = match r.u8()? {
        ANSWER => Some(crate::engine::snapshot::SnapshotRef {
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
/// Largest grant-set reply (a set of [`cairn_index::grants::MAX_GRANTEES`] peers and its signature).
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

/// `"CSL1" u32be(n) (u32be(len) signed_root)×n`, n ≤ [`crate::engine::replica::MAX_CHAIN`], consecutive seqs
/// from the asked one (n = 0: none held).
pub fn encode_roots_reply(roots: &[SignedRoot]) -> Vec<u8> {
    let mut o = ROOTS_RESP.to_vec();
    let n = roots.len().min(crate::engine::replica::MAX_CHAIN);
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
    if n > crate::engine::replica::MAX_CHAIN {
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
    let mut o = Vec::new();
    o.extend_from_slice(RESP);
    match r {
        Reply::UpToDate => o.push(UP_TO_DATE),
        Reply::Unknown => o.push(UNKNOWN),
        Reply::Answer(c) => {
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
            for n in &c.out.nodes {
                encode_node(&mut o, n);
            }
            o.extend_from_slice(&(c.cosigs.len().min(u16::MAX as usize) as u16).to_be_bytes());
            for (w, sig) in c.cosigs.iter().take(u16::MAX as usize) {
                o.extend_from_slice(w);
                o.extend_from_slice(sig);
            }
        }
    }
    o
}

/// Parses a reply. Never panics.
pub fn decode_reply(b: &[u8]) -> Result<Reply, Malformed> {
    let mut r = Reader::new(b);
    if r.bytes(4)? != RESP {
        return Err(Malformed("not a catch-up reply"));
    }
    match r.u8()? {
        UP_TO_DATE => return Ok(Reply::UpToDate),
        UNKNOWN => return Ok(Reply::Unknown),
        ANSWER => {}
        _ => return Err(Malformed("status")),
    }
    let n = r.u32()? as usize;
    if n > crate::engine::replica::MAX_CHAIN || n == 0 {
        return Err(Malformed("root count"));
    }
    let mut chain = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.u32()? as usize;
        let root = SignedRoot::decode(r.bytes(len)?).map_err(|_| Malformed("root"))?;
        chain.push(root);
    }
    let full = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(Malformed("full flag")),
    };
    let dim = r.u16()? as usize;
    let count = r.u32()? as usize;
    if count > MAX_NODES || count.saturating_mul(dim / 2 + 48) > r.remaining() {
        return Err(Malformed("node count"));
    }
    let mut nodes: Vec<ProofNode> = Vec::with_capacity(count);
    for _ in 0..count {
        let n = decode_node(&mut r, dim).map_err(|_| Malformed("node"))?;
        // Strictly increasing node numbers: no node twice, one canonical order.
        if nodes.last().is_some_and(|p| p.node.node >= n.node.node) {
            return Err(Malformed("nodes out of order or repeated"));
        }
        nodes.push(n);
    }
    let n = r.u16()? as usize;
    let mut cosigs = Vec::with_capacity(n.min(r.remaining() / 96));
    for _ in 0..n {
        cosigs.push((r.array()?, r.array()?));
    }
    if !r.is_empty() {
        return Err(Malformed("trailing bytes"));
    }
    let root = chain.last().cloned().ok_or(Malformed("root count"))?;
    if usize::from(root.record.dim) != dim {
        return Err(Malformed("dimension"));
    }
    Ok(Reply::Answer(Box::new(CatchUp {
        chain,
        out: SyncOut { root, full, nodes },
        cosigs,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::snapshot::SnapshotRef;

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
    use proptest::prelude::*;

    fn roots_reply() -> Vec<u8> {
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let rec = cairn_index::root::RootRecord {
            namespace: "p".into(),
            seq: 1,
            prev: [0; 32],
            graph_leaves: 0,
            graph_root: [0; 32],
            time_leaves: 0,
            time_root: [0; 32],
            entry: u32::MAX,
            max_level: 0,
            m: 16,
            m0: 32,
            quantiser: 1,
            distance: 1,
            dim: 4,
            model: [0; 32],
            created_at: 0,
            node_id: key.verifying_key().to_bytes(),
            lexicon: None,
        };
        let root = SignedRoot::sign(rec, &key);
        let mut next = root.clone();
        next.record.seq = 2;
        encode_roots_reply(&[root, next])
    }

    proptest! {
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
            let _ = crate::engine::replica::Alert::decode(&b);
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
                prop_assert!(r.len() <= crate::engine::replica::MAX_CHAIN);
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
