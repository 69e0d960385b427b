//! Signed root records (docs/PROOFS.md, "Root record"): what a node signs after every write to a namespace.
//! Roots form a hash chain per namespace (`seq` strictly increasing, `prev` = hash of the previous record).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::merkle::Hash;

/// Magic bytes of a root record.
pub const ROOT_MAGIC: &[u8; 9] = b"CAIRNROOT";
/// Root record format version without a lexical index (still decoded and verified).
pub const ROOT_VERSION_1: u8 = 1;
/// Root record format version with the lexical index's commitment ([`LexCommit`]) over whole-tree CBMTs
/// (still decoded and verified).
pub const ROOT_VERSION_2: u8 = 2;
/// Root record format version 3: the layout of version 2, with paged graph and time trees
/// ([`crate::paged`]); what nodes sign now.
pub const ROOT_VERSION: u8 = 3;
/// Domain tag of the signed message: the signature covers `SIG_CONTEXT ‖ root_hash`.
pub const SIG_CONTEXT: &[u8; 17] = b"CAIRN-ROOT-SIG-V1";
/// `entry` when the graph is empty.
pub const NO_ENTRY: u32 = u32::MAX;

/// One root of a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootRecord {
    /// Format version ([`ROOT_VERSION_1`], [`ROOT_VERSION_2`] or [`ROOT_VERSION`]): says how the trees are built
    /// ([`RootRecord::paged`]) and whether a lexicon follows.
    pub version: u8,
    /// The namespace.
    pub namespace: String,
    /// Sequence number, 1 for the first root, +1 per root.
    pub seq: u64,
    /// Hash of the previous root record (zeros for seq 1).
    pub prev: Hash,
    /// Graph tree leaf count (graph nodes, tombstones included).
    pub graph_leaves: u64,
    /// Graph tree root.
    pub graph_root: Hash,
    /// Time tree leaf count (live memories).
    pub time_leaves: u64,
    /// Time tree root.
    pub time_root: Hash,
    /// HNSW entry point node ([`NO_ENTRY`] when empty).
    pub entry: u32,
    /// Level of the entry point.
    pub max_level: u8,
    /// HNSW M (links per node above layer 0).
    pub m: u16,
    /// HNSW M0 (links per node at layer 0).
    pub m0: u16,
    /// Quantiser code ([`crate::commit::QUANTISER_INT8_127`]).
    pub quantiser: u8,
    /// Distance code ([`crate::commit::DISTANCE_NEG_DOT_I32`]).
    pub distance: u8,
    /// Vector dimension.
    pub dim: u16,
    /// Embedding model hash.
    pub model: Hash,
    /// When the root was made (ms).
    pub created_at: u64,
    /// The signing node's ed25519 public key (its node id).
    pub node_id: [u8; 32],
    /// The lexical index's commitment (version-2 and -3 roots; `None` in version-1 roots).
    pub lexicon: Option<LexCommit>,
}

/// What a version-2 root commits of the lexical index (docs/PROOFS.md, "Lexical index").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LexCommit {
    /// Tokenizer code ([`crate::lexical::TOKENIZER_V1`]).
    pub tokenizer: u8,
    /// Term tree leaf count (distinct terms).
    pub terms: u64,
    /// Term tree root.
    pub root: Hash,
    /// Sum of the live memories' lengths in terms (BM25's average length is this over `time_leaves`).
    pub total_len: u64,
}

/// A root record with the node's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRoot {
    /// The record.
    pub record: RootRecord,
    /// ed25519 signature over `SIG_CONTEXT ‖ record.hash()`.
    pub signature: [u8; 64],
}

/// Why a root was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootError {
    /// Bytes are not a root record.
    #[error("malformed root record: {0}")]
    Malformed(&'static str),
    /// The signature does not verify under the record's node id.
    #[error("root signature does not verify")]
    BadSignature,
    /// Signed by another node than the trusted one.
    #[error("root signed by {got}, expected {want}")]
    WrongNode {
        /// Signer.
        got: String,
        /// Trusted.
        want: String,
    },
}

impl RootRecord {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(256);
        o.extend_from_slice(ROOT_MAGIC);
        o.push(self.version);
        o.extend_from_slice(&(self.namespace.len() as u16).to_be_bytes());
        o.extend_from_slice(self.namespace.as_bytes());
        o.extend_from_slice(&self.seq.to_be_bytes());
        o.extend_from_slice(&self.prev);
        o.extend_from_slice(&self.graph_leaves.to_be_bytes());
        o.extend_from_slice(&self.graph_root);
        o.extend_from_slice(&self.time_leaves.to_be_bytes());
        o.extend_from_slice(&self.time_root);
        o.extend_from_slice(&self.entry.to_be_bytes());
        o.push(self.max_level);
        o.extend_from_slice(&self.m.to_be_bytes());
        o.extend_from_slice(&self.m0.to_be_bytes());
        o.push(self.quantiser);
        o.push(self.distance);
        o.extend_from_slice(&self.dim.to_be_bytes());
        o.extend_from_slice(&self.model);
        o.extend_from_slice(&self.created_at.to_be_bytes());
        o.extend_from_slice(&self.node_id);
        if let Some(l) = &self.lexicon {
            o.push(l.tokenizer);
            o.extend_from_slice(&l.terms.to_be_bytes());
            o.extend_from_slice(&l.root);
            o.extend_from_slice(&l.total_len.to_be_bytes());
        }
        o
    }

    /// True when the graph and time trees are paged ([`crate::paged`], version 3); whole CBMTs before.
    pub fn paged(&self) -> bool {
        self.version >= ROOT_VERSION
    }

    /// BLAKE3(0x04 ‖ encode()): the value `prev` links to and the signature covers.
    pub fn hash(&self) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(&[0x04]);
        h.update(&self.encode());
        *h.finalize().as_bytes()
    }

    /// Parses canonical bytes (rejects trailing bytes). Never panics.
    pub fn decode(b: &[u8]) -> Result<Self, RootError> {
        let mut r = crate::wire::Reader::new(b);
        let m = |_| RootError::Malformed("truncated");
        if r.bytes(9).map_err(m)? != ROOT_MAGIC {
            return Err(RootError::Malformed("magic"));
        }
        let version = r.u8().map_err(m)?;
        if !(ROOT_VERSION_1..=ROOT_VERSION).contains(&version) {
            return Err(RootError::Malformed("version"));
        }
        let ns_len = r.u16().map_err(m)? as usize;
        if ns_len > 128 {
            return Err(RootError::Malformed("namespace length"));
        }
        let namespace = std::str::from_utf8(r.bytes(ns_len).map_err(m)?)
            .map_err(|_| RootError::Malformed("namespace utf-8"))?
            .to_owned();
        let rec = RootRecord {
            version,
            namespace,
            seq: r.u64().map_err(m)?,
            prev: r.array().map_err(m)?,
            graph_leaves: r.u64().map_err(m)?,
            graph_root: r.array().map_err(m)?,
            time_leaves: r.u64().map_err(m)?,
            time_root: r.array().map_err(m)?,
            entry: r.u32().map_err(m)?,
            max_level: r.u8().map_err(m)?,
            m: r.u16().map_err(m)?,
            m0: r.u16().map_err(m)?,
            quantiser: r.u8().map_err(m)?,
            distance: r.u8().map_err(m)?,
            dim: r.u16().map_err(m)?,
            model: r.array().map_err(m)?,
            created_at: r.u64().map_err(m)?,
            node_id: r.array().map_err(m)?,
            lexicon: None,
        };
        let rec = if version >= ROOT_VERSION_2 {
            RootRecord {
                lexicon: Some(LexCommit {
                    tokenizer: r.u8().map_err(m)?,
                    terms: r.u64().map_err(m)?,
                    root: r.array().map_err(m)?,
                    total_len: r.u64().map_err(m)?,
                }),
                ..rec
            }
        } else {
            rec
        };
        if !r.is_empty() {
            return Err(RootError::Malformed("trailing bytes"));
        }
        Ok(rec)
    }
}

impl SignedRoot {
    /// Signs a record with the node key (the record's `node_id` must be that key's public half).
    pub fn sign(record: RootRecord, key: &SigningKey) -> Self {
        let msg = signed_message(&record.hash());
        SignedRoot {
            record,
            signature: key.sign(&msg).to_bytes(),
        }
    }

    /// `u32be(len) record ‖ signature[64]`.
    pub fn encode(&self) -> Vec<u8> {
        let rec = self.record.encode();
        let mut o = Vec::with_capacity(4 + rec.len() + 64);
        o.extend_from_slice(&(rec.len() as u32).to_be_bytes());
        o.extend_from_slice(&rec);
        o.extend_from_slice(&self.signature);
        o
    }

    /// Reads a signed root from the front of a reader.
    pub(crate) fn read(r: &mut crate::wire::Reader<'_>) -> Result<Self, RootError> {
        let m = |_| RootError::Malformed("truncated");
        let len = r.u32().map_err(m)? as usize;
        if len > 1024 {
            return Err(RootError::Malformed("record length"));
        }
        let record = RootRecord::decode(r.bytes(len).map_err(m)?)?;
        let signature = r.array::<64>().map_err(m)?;
        Ok(SignedRoot { record, signature })
    }

    /// Parses [`SignedRoot::encode`] output.
    pub fn decode(b: &[u8]) -> Result<Self, RootError> {
        let mut r = crate::wire::Reader::new(b);
        let s = Self::read(&mut r)?;
        if !r.is_empty() {
            return Err(RootError::Malformed("trailing bytes"));
        }
        Ok(s)
    }

    /// Checks the signature, and that the signer is `trusted` when given.
    pub fn verify(&self, trusted: Option<&[u8; 32]>) -> Result<(), RootError> {
        if let Some(t) = trusted {
            if t != &self.record.node_id {
                return Err(RootError::WrongNode {
                    got: hex::encode(self.record.node_id),
                    want: hex::encode(t),
                });
            }
        }
        let key =
            VerifyingKey::from_bytes(&self.record.node_id).map_err(|_| RootError::BadSignature)?;
        let sig = Signature::from_bytes(&self.signature);
        key.verify_strict(&signed_message(&self.record.hash()), &sig)
            .map_err(|_| RootError::BadSignature)
    }
}

/// Why a chain of roots was refused ([`verify_link`], [`verify_chain`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A root's signature or signer is wrong.
    #[error("root seq {seq}: {source}")]
    Root {
        /// The root's seq.
        seq: u64,
        /// Why.
        source: RootError,
    },
    /// A root of another namespace.
    #[error("root seq {seq} is for namespace {got:?}, not {want:?}")]
    Namespace {
        /// The root's seq.
        seq: u64,
        /// Its namespace.
        got: String,
        /// The one asked.
        want: String,
    },
    /// A root whose seq is not the previous one's + 1 or whose `prev` is not the previous one's hash.
    #[error("root seq {seq} does not chain to seq {prev}")]
    Broken {
        /// The root's seq.
        seq: u64,
        /// The seq it should follow.
        prev: u64,
    },
}

/// The one rule of a root chain, used by replicas, `cairn audit`, the clients and the CLI: `r` is signed by
/// `owner`, is for namespace `ns` and, when `prev` (the root before it: its seq and hash) is given, has seq
/// `prev.0 + 1` and `prev` = `prev.1`. Arithmetic is checked, so a seq of `u64::MAX` is a broken link, not a wrap.
pub fn verify_link(
    prev: Option<(u64, &Hash)>,
    r: &SignedRoot,
    owner: &[u8; 32],
    ns: &str,
) -> Result<(), ChainError> {
    let seq = r.record.seq;
    r.verify(Some(owner))
        .map_err(|source| ChainError::Root { seq, source })?;
    if r.record.namespace != ns {
        return Err(ChainError::Namespace {
            seq,
            got: r.record.namespace.clone(),
            want: ns.to_owned(),
        });
    }
    if let Some((pseq, phash)) = prev {
        if pseq.checked_add(1) != Some(seq) || &r.record.prev != phash {
            return Err(ChainError::Broken { seq, prev: pseq });
        }
    }
    Ok(())
}

/// Checks a whole chain with [`verify_link`]: every root signed by `owner` for `ns`, each linked to the one
/// before it, and the first linked to `from` (seq and hash of the root the caller already trusts) when given.
pub fn verify_chain<'a>(
    roots: impl IntoIterator<Item = &'a SignedRoot>,
    owner: &[u8; 32],
    ns: &str,
    from: Option<(u64, Hash)>,
) -> Result<(), ChainError> {
    let mut prev = from;
    for r in roots {
        verify_link(prev.as_ref().map(|(s, h)| (*s, h)), r, owner, ns)?;
        prev = Some((r.record.seq, r.record.hash()));
    }
    Ok(())
}

/// Domain of a witness cosignature: `ed25519(witness, "CAIRN-COSIG-V1" ‖ root hash)`.
pub const COSIG_CONTEXT: &[u8; 14] = b"CAIRN-COSIG-V1";

fn cosig_message(root_hash: &Hash) -> [u8; 46] {
    let mut msg = [0u8; 46];
    msg[..14].copy_from_slice(COSIG_CONTEXT);
    msg[14..].copy_from_slice(root_hash);
    msg
}

/// A witness's cosignature of a root it verified: it vouches that it saw this root (and no other) for the
/// root's (owner, namespace, seq). The root hash already binds all three.
pub fn cosign(record: &RootRecord, witness: &SigningKey) -> [u8; 64] {
    witness.sign(&cosig_message(&record.hash())).to_bytes()
}

/// Checks one cosignature of `record` by `witness`.
pub fn verify_cosig(record: &RootRecord, witness: &[u8; 32], sig: &[u8; 64]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(witness) else {
        return false;
    };
    key.verify_strict(&cosig_message(&record.hash()), &Signature::from_bytes(sig))
        .is_ok()
}

/// The number of distinct witnesses with a valid cosignature of `record`, counting only keys in `pinned` (the
/// verifier's witness set) other than the root's own signer. A key outside the set never counts: anyone can
/// make fresh keys and cosign a fork with them.
pub fn count_witnesses(
    record: &RootRecord,
    cosigs: &[([u8; 32], [u8; 64])],
    pinned: &[[u8; 32]],
) -> usize {
    let mut seen: Vec<[u8; 32]> = Vec::new();
    for (w, sig) in cosigs {
        if *w != record.node_id
            && pinned.contains(w)
            && !seen.contains(w)
            && verify_cosig(record, w, sig)
        {
            seen.push(*w);
        }
    }
    seen.len()
}

fn signed_message(root_hash: &Hash) -> [u8; 49] {
    let mut msg = [0u8; 49];
    msg[..17].copy_from_slice(SIG_CONTEXT);
    msg[17..].copy_from_slice(root_hash);
    msg
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn cosignatures_count_distinct_valid_witnesses_only() {
        let owner = SigningKey::from_bytes(&[1; 32]);
        let (w1, w2) = (
            SigningKey::from_bytes(&[2; 32]),
            SigningKey::from_bytes(&[3; 32]),
        );
        let r = SignedRoot::sign(sample(&owner), &owner).record;
        let id = |k: &SigningKey| k.verifying_key().to_bytes();
        let c1 = cosign(&r, &w1);
        let c2 = cosign(&r, &w2);
        assert!(verify_cosig(&r, &id(&w1), &c1));
        assert!(!verify_cosig(&r, &id(&w2), &c1));
        let mut other = r.clone();
        other.seq += 1;
        assert!(!verify_cosig(&other, &id(&w1), &c1));
        let own = cosign(&r, &owner);
        let list = vec![
            (id(&w1), c1),
            (id(&w1), c1),
            (id(&w2), c2),
            (id(&owner), own),
            ([9; 32], [0; 64]),
        ];
        let pins = [id(&w1), id(&w2), id(&owner), [9; 32]];
        assert_eq!(count_witnesses(&r, &list, &pins), 2);
        // Keys outside the witness set do not count, however valid their cosignatures.
        assert_eq!(count_witnesses(&r, &list, &[id(&w2)]), 1);
        assert_eq!(count_witnesses(&r, &list, &[]), 0);
    }

    /// A root record signed by `key` (seq 3), the fixture other modules' tests build roots from.
    pub(crate) fn sample(key: &SigningKey) -> RootRecord {
        RootRecord {
            version: 1,
            namespace: "agents/alice".into(),
            seq: 3,
            prev: [9; 32],
            graph_leaves: 5,
            graph_root: [1; 32],
            time_leaves: 4,
            time_root: [2; 32],
            entry: 2,
            max_level: 1,
            m: 16,
            m0: 32,
            quantiser: 1,
            distance: 1,
            dim: 384,
            model: [3; 32],
            created_at: 1_700_000_000_000,
            node_id: key.verifying_key().to_bytes(),
            lexicon: None,
        }
    }

    /// A chain of `n` roots from seq `start`, each linked to the one before.
    fn chain(key: &SigningKey, start: u64, n: u64) -> Vec<SignedRoot> {
        let mut out: Vec<SignedRoot> = Vec::new();
        for seq in (0..n).map(|i| start.wrapping_add(i)) {
            let mut r = sample(key);
            r.seq = seq;
            r.prev = out.last().map_or([0; 32], |p| p.record.hash());
            out.push(SignedRoot::sign(r, key));
        }
        out
    }

    #[test]
    fn chains_link_and_every_break_is_named() {
        let key = SigningKey::from_bytes(&[4; 32]);
        let owner = key.verifying_key().to_bytes();
        let ns = "agents/alice";
        let c = chain(&key, 1, 5);
        verify_chain(&c, &owner, ns, None).unwrap();
        verify_chain(&c[2..], &owner, ns, Some((2, c[1].record.hash()))).unwrap();
        verify_chain(&c[..0], &owner, ns, Some((9, [0; 32]))).unwrap();
        // The first root must link to the one trusted.
        assert_eq!(
            verify_chain(&c[2..], &owner, ns, Some((2, c[0].record.hash()))),
            Err(ChainError::Broken { seq: 3, prev: 2 })
        );
        assert_eq!(
            verify_chain(&c[2..], &owner, ns, Some((1, c[0].record.hash()))),
            Err(ChainError::Broken { seq: 3, prev: 1 })
        );
        // A gap, a swap and a duplicate each break the chain.
        let gapped = [c[0].clone(), c[2].clone()];
        assert_eq!(
            verify_chain(&gapped, &owner, ns, None),
            Err(ChainError::Broken { seq: 3, prev: 1 })
        );
        let swapped = [c[1].clone(), c[0].clone()];
        assert!(matches!(
            verify_chain(&swapped, &owner, ns, None),
            Err(ChainError::Broken { .. })
        ));
        let twice = [c[0].clone(), c[0].clone()];
        assert!(verify_chain(&twice, &owner, ns, None).is_err());
        // Another signer, another namespace.
        let other = SigningKey::from_bytes(&[5; 32]);
        assert!(matches!(
            verify_chain(&c, &other.verifying_key().to_bytes(), ns, None),
            Err(ChainError::Root { seq: 1, .. })
        ));
        assert!(matches!(
            verify_chain(&c, &owner, "agents/bob", None),
            Err(ChainError::Namespace { seq: 1, .. })
        ));
        // A seq at the top of the range is a broken link, not an overflow.
        let top = chain(&key, u64::MAX, 1);
        assert_eq!(
            verify_chain(&top, &owner, ns, Some((u64::MAX, [0; 32]))),
            Err(ChainError::Broken {
                seq: u64::MAX,
                prev: u64::MAX
            })
        );
        let mut wrapped = sample(&key);
        wrapped.seq = 0;
        wrapped.prev = top[0].record.hash();
        let wrapped = SignedRoot::sign(wrapped, &key);
        assert_eq!(
            verify_chain([&top[0], &wrapped], &owner, ns, None),
            Err(ChainError::Broken {
                seq: 0,
                prev: u64::MAX
            })
        );
    }

    #[test]
    fn sign_verify_round_trip_and_tamper() {
        let key = SigningKey::from_bytes(&[42u8; 32]);
        let s = SignedRoot::sign(sample(&key), &key);
        let bytes = s.encode();
        let back = SignedRoot::decode(&bytes).unwrap();
        assert_eq!(back, s);
        back.verify(Some(&key.verifying_key().to_bytes())).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x20;
            if let Ok(t) = SignedRoot::decode(&b) {
                assert!(t.verify(None).is_err() || t == s, "flip at {i} accepted");
            }
        }
        let other = SigningKey::from_bytes(&[7u8; 32]);
        assert!(matches!(
            s.verify(Some(&other.verifying_key().to_bytes())),
            Err(RootError::WrongNode { .. })
        ));
    }
}
