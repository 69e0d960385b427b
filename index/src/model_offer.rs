//! What a node tells a peer about the embedding models it serves (`cairn/model/1`, docs/PROOFS.md, "Model
//! collections"): for each model, its identity hash (the one roots commit), its manifest, and the BLAKE3 hash and
//! size of every file, which the peer then downloads as ordinary iroh blobs. The codec lives here, beside the
//! proofs, so that anyone can speak the protocol; it checks every count and length before it allocates, and
//! never panics on any byte string. Nothing in an offer is trusted: the fetching side recomputes the identity
//! from the manifest and checks every file against it.

use crate::merkle::Hash;

/// First bytes of an ask.
pub const ASK_MAGIC: &[u8; 4] = b"CMA1";
/// First bytes of a reply.
pub const REPLY_MAGIC: &[u8; 4] = b"CMR1";
/// Most models in one reply.
pub const MAX_MODELS: usize = 8;
/// Most files per model (model files and runtime libraries together).
pub const MAX_FILES: usize = 16;
/// Largest manifest, in bytes.
pub const MAX_MANIFEST: usize = 64 << 10;
/// Longest file name, in bytes.
pub const MAX_NAME: usize = 128;
/// Largest single file a fetch accepts (4 GiB).
pub const MAX_FILE_SIZE: u64 = 4 << 30;
/// Largest reply: every limit above at once.
pub const MAX_REPLY: usize =
    5 + MAX_MODELS * (32 + 4 + MAX_MANIFEST + 1 + MAX_FILES * (1 + MAX_NAME + 40));

/// An offer or ask that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// Wrong magic bytes.
    #[error("not a model {0}")]
    Magic(&'static str),
    /// The bytes end early or go on after the end.
    #[error("model offer: truncated or trailing bytes")]
    Length,
    /// A count or length above its limit.
    #[error("model offer: {0} above the limit")]
    Limit(&'static str),
    /// A file name outside the allowed shape.
    #[error("model offer: file name {0:?} is not allowed")]
    Name(String),
    /// The same file name twice in one model.
    #[error("model offer: file {0:?} listed twice")]
    Duplicate(String),
}

/// One file of an offered model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedFile {
    /// A model file's name as its manifest lists it (`model.onnx`), or a runtime library as
    /// `runtime/<os>-<arch>/<file>` (`runtime/linux-x86_64/libonnxruntime.so`).
    pub name: String,
    /// BLAKE3 hash of the file: the iroh blob to download.
    pub blake3: Hash,
    /// Its size in bytes.
    pub size: u64,
}

/// One offered model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedModel {
    /// The model's identity ([`crate::model::provisioned_model_hash`] over its manifest's files).
    pub hash: Hash,
    /// The model's `manifest.json`, byte for byte.
    pub manifest: Vec<u8>,
    /// Its files.
    pub files: Vec<OfferedFile>,
}

/// True for a name a node may write under its cache: a plain file name of `[A-Za-z0-9._-]` not starting with a
/// dot, or `runtime/<platform>/<plain name>` with a platform of `[a-z0-9_-]`. Nothing else (no `..`, no absolute
/// path, no other directory) can come out of an offer, so installing a fetched model cannot write elsewhere.
pub fn allowed_name(name: &str) -> bool {
    fn plain(s: &str) -> bool {
        !s.is_empty()
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    }
    if name.is_empty() || name.len() > MAX_NAME {
        return false;
    }
    match name.strip_prefix("runtime/") {
        None => plain(name),
        Some(rest) => match rest.split_once('/') {
            Some((platform, file)) => {
                !platform.is_empty()
                    && platform.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                    })
                    && plain(file)
            }
            None => false,
        },
    }
}

/// Encodes an ask: `"CMA1" ‖ model hash` (32 zero bytes ask for every model the node serves).
pub fn encode_ask(model: Option<&Hash>) -> Vec<u8> {
    let mut out = ASK_MAGIC.to_vec();
    out.extend_from_slice(model.unwrap_or(&[0; 32]));
    out
}

/// Decodes an ask; `None` asks for every model.
pub fn decode_ask(b: &[u8]) -> Result<Option<Hash>, OfferError> {
    let rest = b.strip_prefix(ASK_MAGIC).ok_or(OfferError::Magic("ask"))?;
    let h: Hash = rest.try_into().map_err(|_| OfferError::Length)?;
    Ok((h != [0; 32]).then_some(h))
}

/// Encodes a reply: `"CMR1" ‖ u8 count ‖ model*`, each model `hash[32] ‖ u32be len ‖ manifest ‖ u8 files ‖ file*`,
/// each file `u8 len ‖ name ‖ blake3[32] ‖ u64be size`. Fails if a limit is exceeded (a node never sends what a
/// peer would refuse).
pub fn encode_reply(models: &[OfferedModel]) -> Result<Vec<u8>, OfferError> {
    if models.len() > MAX_MODELS {
        return Err(OfferError::Limit("model count"));
    }
    let mut out = REPLY_MAGIC.to_vec();
    out.push(models.len() as u8);
    for m in models {
        if m.manifest.len() > MAX_MANIFEST {
            return Err(OfferError::Limit("manifest size"));
        }
        if m.files.len() > MAX_FILES {
            return Err(OfferError::Limit("file count"));
        }
        out.extend_from_slice(&m.hash);
        out.extend_from_slice(&(m.manifest.len() as u32).to_be_bytes());
        out.extend_from_slice(&m.manifest);
        out.push(m.files.len() as u8);
        for f in &m.files {
            if !allowed_name(&f.name) {
                return Err(OfferError::Name(f.name.clone()));
            }
            out.push(f.name.len() as u8);
            out.extend_from_slice(f.name.as_bytes());
            out.extend_from_slice(&f.blake3);
            out.extend_from_slice(&f.size.to_be_bytes());
        }
    }
    Ok(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], OfferError> {
        if self.0.len() < n {
            return Err(OfferError::Length);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, OfferError> {
        Ok(self.take(1)?[0])
    }
    fn hash(&mut self) -> Result<Hash, OfferError> {
        self.take(32)?.try_into().map_err(|_| OfferError::Length)
    }
    fn u32(&mut self) -> Result<u32, OfferError> {
        let b: [u8; 4] = self.take(4)?.try_into().map_err(|_| OfferError::Length)?;
        Ok(u32::from_be_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, OfferError> {
        let b: [u8; 8] = self.take(8)?.try_into().map_err(|_| OfferError::Length)?;
        Ok(u64::from_be_bytes(b))
    }
}

/// Decodes a reply, checking every limit before allocating and every file name's shape.
pub fn decode_reply(b: &[u8]) -> Result<Vec<OfferedModel>, OfferError> {
    if b.len() > MAX_REPLY {
        return Err(OfferError::Limit("reply size"));
    }
    let rest = b
        .strip_prefix(REPLY_MAGIC)
        .ok_or(OfferError::Magic("reply"))?;
    let mut r = Reader(rest);
    let count = usize::from(r.u8()?);
    if count > MAX_MODELS {
        return Err(OfferError::Limit("model count"));
    }
    let mut models = Vec::with_capacity(count);
    for _ in 0..count {
        let hash = r.hash()?;
        let len = r.u32()? as usize;
        if len > MAX_MANIFEST {
            return Err(OfferError::Limit("manifest size"));
        }
        let manifest = r.take(len)?.to_vec();
        let nfiles = usize::from(r.u8()?);
        if nfiles > MAX_FILES {
            return Err(OfferError::Limit("file count"));
        }
        let mut files: Vec<OfferedFile> = Vec::with_capacity(nfiles);
        for _ in 0..nfiles {
            let nlen = usize::from(r.u8()?);
            let name = std::str::from_utf8(r.take(nlen)?)
                .map_err(|_| OfferError::Name("(not UTF-8)".into()))?
                .to_owned();
            if !allowed_name(&name) {
                return Err(OfferError::Name(name));
            }
            if files.iter().any(|f| f.name == name) {
                return Err(OfferError::Duplicate(name));
            }
            let blake3 = r.hash()?;
            let size = r.u64()?;
            if size > MAX_FILE_SIZE {
                return Err(OfferError::Limit("file size"));
            }
            files.push(OfferedFile { name, blake3, size });
        }
        models.push(OfferedModel {
            hash,
            manifest,
            files,
        });
    }
    if !r.0.is_empty() {
        return Err(OfferError::Length);
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<OfferedModel> {
        vec![OfferedModel {
            hash: [7; 32],
            manifest: br#"{"name":"m"}"#.to_vec(),
            files: vec![
                OfferedFile {
                    name: "model.onnx".into(),
                    blake3: [1; 32],
                    size: 90_000_000,
                },
                OfferedFile {
                    name: "runtime/linux-x86_64/libonnxruntime.so".into(),
                    blake3: [2; 32],
                    size: 20_000_000,
                },
            ],
        }]
    }

    #[test]
    fn round_trip_and_the_documented_vector() {
        let m = sample();
        let b = encode_reply(&m).expect("encodes");
        assert_eq!(decode_reply(&b).expect("decodes"), m);
        assert_eq!(
            hex::encode(blake3::hash(&b).as_bytes()),
            "26e8223b5596da4b43f9398051136fccfd65b0bda85bd559b63c348bce8398a8",
            "docs/PROOFS.md, Model collections"
        );
        assert_eq!(decode_ask(&encode_ask(Some(&[9; 32]))), Ok(Some([9; 32])));
        assert_eq!(decode_ask(&encode_ask(None)), Ok(None));
        assert!(decode_ask(b"CMA1").is_err());
        assert!(decode_ask(&[b"XXXX".as_slice(), &[1; 32]].concat()).is_err());
    }

    #[test]
    fn names_that_could_leave_the_cache_are_refused() {
        for ok in [
            "model.onnx",
            "tokenizer_config.json",
            "runtime/linux-x86_64/libonnxruntime.so",
            "runtime/macos-aarch64/libonnxruntime.dylib",
        ] {
            assert!(allowed_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "..",
            "../x",
            "/etc/passwd",
            "a/b",
            "runtime/../x",
            "runtime/linux/../x",
            "runtime/Linux/x",
            "runtime//x",
            "runtime/linux/",
            "model onnx",
            "runtime/linux/a/b",
        ] {
            assert!(!allowed_name(bad), "{bad}");
        }
        let mut m = sample();
        m[0].files[0].name = "../model.onnx".into();
        assert!(encode_reply(&m).is_err());
    }

    #[test]
    fn limits_duplicates_and_truncation_are_refused() {
        let b = encode_reply(&sample()).expect("encodes");
        for cut in 0..b.len() {
            assert!(decode_reply(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(decode_reply(&long), Err(OfferError::Length));
        let mut dup = sample();
        let f = dup[0].files[0].clone();
        dup[0].files.push(f);
        let enc = encode_reply(&dup).expect("the encoder does not look for duplicates");
        assert!(matches!(decode_reply(&enc), Err(OfferError::Duplicate(_))));
        let mut many = b.clone();
        many[4] = (MAX_MODELS + 1) as u8;
        assert_eq!(decode_reply(&many), Err(OfferError::Limit("model count")));
        let mut big = sample();
        big[0].files[0].size = MAX_FILE_SIZE + 1;
        let enc = encode_reply(&big).expect("encodes");
        assert_eq!(decode_reply(&enc), Err(OfferError::Limit("file size")));
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_reply(&b);
            let _ = decode_ask(&b);
            let mut framed = REPLY_MAGIC.to_vec();
            framed.extend_from_slice(&b);
            let _ = decode_reply(&framed);
        }

        #[test]
        fn mutated_offers_never_panic(i in 0usize..400, v in any::<u8>()) {
            let mut b = encode_reply(&sample()).expect("encodes");
            let n = b.len();
            b[i % n] = v;
            if let Ok(models) = decode_reply(&b) {
                for m in models {
                    prop_assert!(m.files.iter().all(|f| allowed_name(&f.name)));
                }
            }
        }
    }
}
