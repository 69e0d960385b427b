//! Signed grant sets (docs/PROOFS.md, "Grant sets"): which peers an owner lets fetch a namespace. The owner signs
//! the set; replicas keep the newest one they have seen and re-serve the namespace only to the peers it names,
//! so the owner's grant travels with the namespace without the owner being online.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Magic bytes (and domain tag) of a grant set.
pub const GRANTS_MAGIC: &[u8; 15] = b"CAIRN-GRANTS-V1";
/// Most peers one grant set may name.
pub const MAX_GRANTEES: usize = 4096;

/// An owner's grant set for one namespace at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantSet {
    /// The owner's node id (the key that signs the set).
    pub owner: [u8; 32],
    /// The namespace.
    pub namespace: String,
    /// Version: strictly increasing with every change of the owner's grants; the newest wins.
    pub version: u64,
    /// Node ids allowed to fetch the namespace, sorted and distinct.
    pub peers: Vec<[u8; 32]>,
}

/// A grant set with the owner's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedGrantSet {
    /// The set.
    pub set: GrantSet,
    /// ed25519 signature over [`GrantSet::encode`].
    pub signature: [u8; 64],
}

/// Why grant-set bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// Not the format (wrong magic, truncated, trailing bytes, unsorted or too many peers).
    #[error("malformed grant set: {0}")]
    Malformed(&'static str),
    /// The signature does not verify against the owner the set names, or the owner is not the one expected.
    #[error("grant set not signed by the namespace's owner")]
    BadSignature,
}

impl GrantSet {
    /// A set over `peers` (sorted and deduplicated here).
    pub fn new(owner: [u8; 32], namespace: &str, version: u64, mut peers: Vec<[u8; 32]>) -> Self {
        peers.sort_unstable();
        peers.dedup();
        GrantSet {
            owner,
            namespace: namespace.to_owned(),
            version,
            peers,
        }
    }

    /// Canonical bytes: `"CAIRN-GRANTS-V1" owner[32] u16be(len) namespace u64be(version) u32be(n) peer[32]×n`.
    pub fn encode(&self) -> Vec<u8> {
        let ns = self.namespace.as_bytes();
        let mut o = Vec::with_capacity(15 + 32 + 2 + ns.len() + 12 + 32 * self.peers.len());
        o.extend_from_slice(GRANTS_MAGIC);
        o.extend_from_slice(&self.owner);
        o.extend_from_slice(&(ns.len().min(u16::MAX as usize) as u16).to_be_bytes());
        o.extend_from_slice(ns);
        o.extend_from_slice(&self.version.to_be_bytes());
        o.extend_from_slice(&(self.peers.len() as u32).to_be_bytes());
        for p in &self.peers {
            o.extend_from_slice(p);
        }
        o
    }

    /// Whether `peer` may fetch the namespace.
    pub fn allows(&self, peer: &[u8; 32]) -> bool {
        self.peers.binary_search(peer).is_ok()
    }

    /// Signs the set with the owner's key.
    pub fn sign(self, key: &SigningKey) -> SignedGrantSet {
        let signature = key.sign(&self.encode()).to_bytes();
        SignedGrantSet {
            set: self,
            signature,
        }
    }
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], GrantError> {
    if b.len() < n {
        return Err(GrantError::Malformed("truncated"));
    }
    let (h, t) = b.split_at(n);
    *b = t;
    Ok(h)
}

fn arr<const N: usize>(b: &mut &[u8]) -> Result<[u8; N], GrantError> {
    take(b, N)?
        .try_into()
        .map_err(|_| GrantError::Malformed("truncated"))
}

impl SignedGrantSet {
    /// Wire bytes: the set's canonical bytes, then the 64-byte signature.
    pub fn encode(&self) -> Vec<u8> {
        let mut o = self.set.encode();
        o.extend_from_slice(&self.signature);
        o
    }

    /// Parses wire bytes and checks the signature against the owner the set names. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, GrantError> {
        let mut b = bytes;
        if take(&mut b, GRANTS_MAGIC.len())? != GRANTS_MAGIC {
            return Err(GrantError::Malformed("wrong magic"));
        }
        let owner: [u8; 32] = arr(&mut b)?;
        let len = u16::from_be_bytes(arr(&mut b)?) as usize;
        let namespace = std::str::from_utf8(take(&mut b, len)?)
            .map_err(|_| GrantError::Malformed("namespace is not UTF-8"))?
            .to_owned();
        let version = u64::from_be_bytes(arr(&mut b)?);
        let n = u32::from_be_bytes(arr(&mut b)?) as usize;
        if n > MAX_GRANTEES {
            return Err(GrantError::Malformed("too many peers"));
        }
        let mut peers = Vec::with_capacity(n);
        for _ in 0..n {
            let p: [u8; 32] = arr(&mut b)?;
            if peers.last().is_some_and(|l: &[u8; 32]| *l >= p) {
                return Err(GrantError::Malformed("peers not sorted and distinct"));
            }
            peers.push(p);
        }
        let signature: [u8; 64] = arr(&mut b)?;
        if !b.is_empty() {
            return Err(GrantError::Malformed("trailing bytes"));
        }
        let set = GrantSet {
            owner,
            namespace,
            version,
            peers,
        };
        let key = VerifyingKey::from_bytes(&owner).map_err(|_| GrantError::BadSignature)?;
        key.verify_strict(&set.encode(), &Signature::from_bytes(&signature))
            .map_err(|_| GrantError::BadSignature)?;
        Ok(SignedGrantSet { set, signature })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_tampering() {
        let owner = SigningKey::from_bytes(&[5; 32]);
        let id = owner.verifying_key().to_bytes();
        let s = GrantSet::new(id, "team/a", 7, vec![[3; 32], [1; 32], [3; 32]]).sign(&owner);
        assert_eq!(s.set.peers, vec![[1; 32], [3; 32]]);
        let bytes = s.encode();
        assert_eq!(SignedGrantSet::decode(&bytes).unwrap(), s);
        assert!(s.set.allows(&[1; 32]) && !s.set.allows(&[2; 32]));
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 1;
            assert!(SignedGrantSet::decode(&t).is_err(), "flip at {i}");
        }
        for n in 0..bytes.len() {
            assert!(SignedGrantSet::decode(&bytes[..n]).is_err());
        }
        // Signed by someone else than the owner it names.
        let other = SigningKey::from_bytes(&[6; 32]);
        let forged = GrantSet::new(id, "team/a", 8, vec![[9; 32]]).sign(&other);
        assert_eq!(
            SignedGrantSet::decode(&forged.encode()),
            Err(GrantError::BadSignature)
        );
    }

    /// Test vector of docs/PROOFS.md ("Grant sets").
    #[test]
    fn vector() {
        let owner = SigningKey::from_bytes(&[0x42; 32]);
        let s = GrantSet::new(
            owner.verifying_key().to_bytes(),
            "agents/alice",
            3,
            vec![[0x11; 32]],
        )
        .sign(&owner);
        assert_eq!(
            hex::encode(s.encode()),
            concat!(
                "434149524e2d4752414e54532d5631",
                "2152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12",
                "000c",
                "6167656e74732f616c696365",
                "0000000000000003",
                "00000001",
                "1111111111111111111111111111111111111111111111111111111111111111",
                "3efaa2de31ddb9ec0cf884dfac27e181b6dc2ff49c5e566fa767a8e22b9edf7c",
                "39e1322d06541bfba9da8d583f8f48262afe2c0fc899767a8120f80ee8ba4704"
            )
        );
    }
}
