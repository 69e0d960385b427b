//! The canonical memory record, format version 1 (specified in `docs/PROOFS.md`, "Memory record").
//!
//! A record binds a memory's namespace, creation time, a random salt, its text and its metadata. Its encoding
//! is canonical (one byte string per record: fixed field order, big-endian lengths, metadata sorted by key,
//! no trailing bytes), so `id = BLAKE3(encode(record))` is well defined and anyone can recompute it. The salt
//! keeps short texts from being guessed from their id.

use std::collections::BTreeMap;

use crate::id::MemoryId;

/// Metadata of a memory: string keys to string values, kept sorted by key (byte order).
pub type Metadata = BTreeMap<String, String>;

/// The magic bytes that open every encoded record.
pub const MAGIC: &[u8; 8] = b"CAIRNMEM";
/// The record format version this crate writes and reads.
pub const VERSION: u8 = 1;
/// Length of the random salt in bytes.
pub const SALT_LEN: usize = 16;
/// Hard caps the decoder enforces before allocating, whatever the node's configured limits are.
pub const MAX_NAMESPACE_BYTES: usize = 128;
/// Largest text the format can carry (16 MiB); nodes configure a lower limit.
pub const MAX_TEXT_BYTES: usize = 16 << 20;
/// Most metadata entries the format can carry.
pub const MAX_METADATA_ENTRIES: usize = 1024;
/// Largest metadata key the format can carry.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest metadata value the format can carry.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// One memory as committed: what its id is the hash of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryRecord {
    /// The namespace the memory belongs to.
    pub namespace: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at: u64,
    /// Random bytes chosen by the node at write time.
    pub salt: [u8; SALT_LEN],
    /// The memory's text, exactly as given.
    pub text: String,
    /// The memory's metadata.
    pub metadata: Metadata,
}

/// Why bytes are not a canonical version-1 record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end before the record does.
    #[error("record truncated while reading {0}")]
    Truncated(&'static str),
    /// The record does not start with `CAIRNMEM`.
    #[error("not a Cairn memory record (bad magic)")]
    BadMagic,
    /// A version this decoder does not know.
    #[error("unsupported record version {0}")]
    UnsupportedVersion(u8),
    /// A length field exceeds the format's cap.
    #[error("{0} too long")]
    TooLong(&'static str),
    /// A string field is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    NotUtf8(&'static str),
    /// Metadata keys are not strictly increasing (unsorted or duplicated).
    #[error("metadata keys not in strictly increasing order")]
    UnsortedMetadata,
    /// Bytes left after the record.
    #[error("{0} trailing bytes after the record")]
    TrailingBytes(usize),
}

impl MemoryRecord {
    /// The canonical bytes of this record (format version 1).
    pub fn encode(&self) -> Vec<u8> {
        let meta_len: usize = self
            .metadata
            .iter()
            .map(|(k, v)| 2 + k.len() + 4 + v.len())
            .sum();
        let mut out = Vec::with_capacity(
            MAGIC.len()
                + 1
                + 2
                + self.namespace.len()
                + 8
                + SALT_LEN
                + 4
                + self.text.len()
                + 2
                + meta_len,
        );
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        put_u16_len(&mut out, self.namespace.as_bytes());
        out.extend_from_slice(&self.created_at.to_be_bytes());
        out.extend_from_slice(&self.salt);
        put_u32_len(&mut out, self.text.as_bytes());
        out.extend_from_slice(&(self.metadata.len() as u16).to_be_bytes());
        for (k, v) in &self.metadata {
            put_u16_len(&mut out, k.as_bytes());
            put_u32_len(&mut out, v.as_bytes());
        }
        out
    }

    /// The record's id: BLAKE3 of [`MemoryRecord::encode`].
    pub fn id(&self) -> MemoryId {
        MemoryId::of_bytes(&self.encode())
    }

    /// Parses canonical bytes, rejecting anything that [`MemoryRecord::encode`] would not produce.
    /// Never panics and never allocates more than the input's length.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader { rest: bytes };
        if r.take(MAGIC.len(), "magic")? != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = r.take(1, "version")?[0];
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let namespace = r.string16("namespace", MAX_NAMESPACE_BYTES)?;
        let created_at = u64::from_be_bytes(r.array::<8>("created_at")?);
        let salt = r.array::<SALT_LEN>("salt")?;
        let text = r.string32("text", MAX_TEXT_BYTES)?;
        let count = u16::from_be_bytes(r.array::<2>("metadata count")?) as usize;
        if count > MAX_METADATA_ENTRIES {
            return Err(DecodeError::TooLong("metadata"));
        }
        let mut metadata = Metadata::new();
        let mut last: Option<String> = None;
        for _ in 0..count {
            let k = r.string16("metadata key", MAX_KEY_BYTES)?;
            let v = r.string32("metadata value", MAX_VALUE_BYTES)?;
            if let Some(prev) = &last {
                if prev.as_bytes() >= k.as_bytes() {
                    return Err(DecodeError::UnsortedMetadata);
                }
            }
            last = Some(k.clone());
            metadata.insert(k, v);
        }
        if !r.rest.is_empty() {
            return Err(DecodeError::TrailingBytes(r.rest.len()));
        }
        Ok(MemoryRecord {
            namespace,
            created_at,
            salt,
            text,
            metadata,
        })
    }
}

/// The key under which a namespace remembers "this text with this metadata already exists", so that a second
/// Remember of the same content returns the first id. Independent of created_at and salt.
pub fn dedup_key(text: &str, metadata: &Metadata) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("cairn 2026 memory dedup key v1");
    h.update(&(text.len() as u64).to_be_bytes());
    h.update(text.as_bytes());
    h.update(&(metadata.len() as u64).to_be_bytes());
    for (k, v) in metadata {
        h.update(&(k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        h.update(&(v.len() as u64).to_be_bytes());
        h.update(v.as_bytes());
    }
    *h.finalize().as_bytes()
}

fn put_u16_len(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn put_u32_len(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn string16(&mut self, what: &'static str, max: usize) -> Result<String, DecodeError> {
        let len = u16::from_be_bytes(self.array::<2>(what)?) as usize;
        self.string(len, what, max)
    }

    fn string32(&mut self, what: &'static str, max: usize) -> Result<String, DecodeError> {
        let len = u32::from_be_bytes(self.array::<4>(what)?) as usize;
        self.string(len, what, max)
    }

    fn string(
        &mut self,
        len: usize,
        what: &'static str,
        max: usize,
    ) -> Result<String, DecodeError> {
        if len > max {
            return Err(DecodeError::TooLong(what));
        }
        let raw = self.take(len, what)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError::NotUtf8(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MemoryRecord {
        let mut metadata = Metadata::new();
        metadata.insert("topic".into(), "drinks".into());
        metadata.insert("speaker".into(), "alice".into());
        MemoryRecord {
            namespace: "agents/alice".into(),
            created_at: 1_700_000_000_000,
            salt: [0x11; SALT_LEN],
            text: "Alice prefers tea to coffee.".into(),
            metadata,
        }
    }

    #[test]
    fn round_trip() {
        let r = sample();
        assert_eq!(MemoryRecord::decode(&r.encode()).unwrap(), r);
    }

    /// The test vector published in docs/PROOFS.md; if this changes, the format changed.
    #[test]
    fn test_vector() {
        let bytes = sample().encode();
        assert_eq!(hex::encode(&bytes), TEST_VECTOR_HEX);
        assert_eq!(sample().id().to_hex(), TEST_VECTOR_ID);
    }

    const TEST_VECTOR_HEX: &str = "434149524e4d454d01000c6167656e74732f616c6963650000018bcfe56800\
        11111111111111111111111111111111\
        0000001c416c69636520707265666572732074656120746f20636f666665652e\
        0002\
        0007737065616b657200000005616c696365\
        0005746f706963000000066472696e6b73";
    const TEST_VECTOR_ID: &str = "aad767565cc6ff98691328d80eccf51cb50864b98ec5b6d819e5aa0281e9e550";

    #[test]
    fn every_truncation_and_flip_is_handled() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(
                MemoryRecord::decode(&bytes[..n]).is_err(),
                "prefix {n} accepted"
            );
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                // Must not panic; a flip may still decode (e.g. inside the text), but never to the same record.
                if let Ok(r) = MemoryRecord::decode(&b) {
                    assert_ne!(r, sample());
                }
            }
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            MemoryRecord::decode(&longer),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn unsorted_metadata_rejected() {
        let r = sample();
        let mut bytes = r.encode();
        // Swap the two entries by re-encoding them in the wrong order.
        let head_len = bytes.len() - (2 + 7 + 4 + 5) - (2 + 5 + 4 + 6);
        bytes.truncate(head_len);
        for (k, v) in [("topic", "drinks"), ("speaker", "alice")] {
            put_u16_len(&mut bytes, k.as_bytes());
            put_u32_len(&mut bytes, v.as_bytes());
        }
        assert_eq!(
            MemoryRecord::decode(&bytes),
            Err(DecodeError::UnsortedMetadata)
        );
    }

    #[test]
    fn dedup_key_ignores_time_and_salt_but_not_content() {
        let a = sample();
        let mut b = sample();
        b.created_at += 1;
        b.salt = [9; SALT_LEN];
        assert_eq!(
            dedup_key(&a.text, &a.metadata),
            dedup_key(&b.text, &b.metadata)
        );
        b.metadata.insert("x".into(), "y".into());
        assert_ne!(
            dedup_key(&a.text, &a.metadata),
            dedup_key(&b.text, &b.metadata)
        );
        // Length prefixes keep text/metadata boundaries unambiguous.
        let mut m1 = Metadata::new();
        m1.insert("ab".into(), "c".into());
        let mut m2 = Metadata::new();
        m2.insert("a".into(), "bc".into());
        assert_ne!(dedup_key("t", &m1), dedup_key("t", &m2));
    }
}
