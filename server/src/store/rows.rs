//! Byte layouts of the rows Cairn keeps in redb. Internal to the node (not part of any public format), but
//! versioned through the `format` entry of the `meta` table.

use super::terms::PackedTerms;
use cairn_index::id::MemoryId;
use cairn_index::record::Metadata;

/// Everything the node keeps per HNSW point: enough to rebuild the in-memory index without re-embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct PointRow {
    /// The memory's id.
    pub id: MemoryId,
    /// The memory's created_at (ms).
    pub created_at: u64,
    /// False once forgotten (a tombstone until the next compaction).
    pub alive: bool,
    /// The memory's dedup key (see `cairn_index::record::dedup_key`).
    pub dedup: [u8; 32],
    /// The unit vector.
    pub vector: Vec<f32>,
    /// The memory's metadata (for filtering without reading the blob).
    pub metadata: Metadata,
    /// The memory's index terms (lexical index). `None` for tombstones and for rows written before the
    /// lexical index existed (filled in from the record at start-up).
    /// Shared with the namespace's lexical index (one copy in RAM).
    pub lex: Option<std::sync::Arc<PackedTerms>>,
}

/// Top bit of the stored dimension: the vector is stored as int8 codes (see [`PointRow::encode`]).
const INT8_FLAG: u16 = 0x8000;

/// A row that does not parse: the database was damaged or written by an incompatible version.
#[derive(Debug, thiserror::Error)]
#[error("corrupt point row: {0}")]
pub struct CorruptRow(pub &'static str);

impl PointRow {
    /// The row a forgotten memory leaves behind (a graph tombstone): its place only. Id, created_at, dedup
    /// key, metadata and vector are zeroed, so nothing of the memory is written again.
    pub fn tombstone(dim: usize) -> Self {
        PointRow {
            id: MemoryId([0; 32]),
            created_at: 0,
            alive: false,
            dedup: [0; 32],
            vector: vec![0.0; dim],
            metadata: Metadata::new(),
            lex: None,
        }
    }

    /// A copy without the vector, as rows are kept in memory (the graph or the commitment holds the vector);
    /// copying the vector first and dropping it after would cost an allocation per row and leave the heap
    /// full of vector-sized holes.
    pub fn without_vector(&self) -> Self {
        PointRow {
            id: self.id,
            created_at: self.created_at,
            alive: self.alive,
            dedup: self.dedup,
            vector: Vec::new(),
            metadata: self.metadata.clone(),
            lex: self.lex.clone(),
        }
    }

    /// True for a tombstone written before forgetting scrubbed rows (it still holds the memory's data).
    pub fn needs_scrub(&self) -> bool {
        !self.alive && *self != Self::tombstone(self.vector.len())
    }

    /// Encodes the row.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with(None)
    }

    /// Encodes the row with the int8 `codes` as its vector (read back as `code / 127`), ignoring
    /// `self.vector`: a replica stores the owner's codes as they came, without expanding them to f32 first.
    pub fn encode_codes(&self, codes: &[i8]) -> Vec<u8> {
        self.encode_with(Some(codes))
    }

    fn encode_with(&self, given: Option<&[i8]>) -> Vec<u8> {
        let dim = given.map_or(self.vector.len(), <[i8]>::len);
        let mut out = Vec::with_capacity(32 + 8 + 1 + 2 + dim * 4 + 64);
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(&self.created_at.to_le_bytes());
        out.push(u8::from(self.alive));
        out.extend_from_slice(&self.dedup);
        // Replica vectors are the owner's int8 vectors (q / 127): those are stored as the int8 codes, a quarter of
        // the bytes, marked by the top bit of the dimension.
        let codes: Option<std::borrow::Cow<'_, [i8]>> = match given {
            Some(c) => Some(c.into()),
            None => self
                .vector
                .iter()
                .map(|&x| {
                    let q = (x * 127.0).round();
                    (q.abs() <= 127.0 && f32::from(q as i8) / 127.0 == x).then_some(q as i8)
                })
                .collect::<Option<Vec<i8>>>()
                .map(Into::into),
        };
        match codes {
            Some(codes) if dim < INT8_FLAG as usize => {
                out.extend_from_slice(&(dim as u16 | INT8_FLAG).to_le_bytes());
                out.extend(codes.iter().map(|&c| c as u8));
            }
            _ => {
                out.extend_from_slice(&(self.vector.len() as u16).to_le_bytes());
                for x in &self.vector {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
        out.extend_from_slice(&(self.metadata.len() as u32).to_le_bytes());
        for (k, v) in &self.metadata {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        // Optional trailing section (rows written before the lexical index end after the metadata).
        if let Some(d) = &self.lex {
            out.push(1);
            out.extend_from_slice(&d.len.to_le_bytes());
            out.extend_from_slice(&(d.count() as u32).to_le_bytes());
            for (t, tf) in d.iter() {
                out.extend_from_slice(&(t.len() as u16).to_le_bytes());
                out.extend_from_slice(t.as_bytes());
                out.extend_from_slice(&tf.to_le_bytes());
            }
        }
        out
    }

    /// Decodes a row written by [`PointRow::encode`].
    pub fn decode(b: &[u8]) -> Result<Self, CorruptRow> {
        let mut r = b;
        let id = MemoryId(take::<32>(&mut r)?);
        let created_at = u64::from_le_bytes(take::<8>(&mut r)?);
        let alive = take::<1>(&mut r)?[0] != 0;
        let dedup = take::<32>(&mut r)?;
        let dim_word = u16::from_le_bytes(take::<2>(&mut r)?);
        let int8 = dim_word & INT8_FLAG != 0;
        let dim = (dim_word & !INT8_FLAG) as usize;
        let width = if int8 { 1 } else { 4 };
        if r.len() < dim * width {
            return Err(CorruptRow("vector"));
        }
        let vector = if int8 {
            r[..dim]
                .iter()
                .map(|&c| f32::from(c as i8) / 127.0)
                .collect()
        } else {
            r[..dim * 4]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        r = &r[dim * width..];
        let n = u32::from_le_bytes(take::<4>(&mut r)?);
        let mut metadata = Metadata::new();
        for _ in 0..n {
            let k = string(&mut r)?;
            let v = string(&mut r)?;
            metadata.insert(k, v);
        }
        let lex = if r.is_empty() {
            None
        } else {
            if take::<1>(&mut r)?[0] != 1 {
                return Err(CorruptRow("lexical section"));
            }
            let len = u32::from_le_bytes(take::<4>(&mut r)?);
            let n = u32::from_le_bytes(take::<4>(&mut r)?);
            let mut terms = Vec::with_capacity((n as usize).min(r.len() / 6));
            for _ in 0..n {
                let l = u16::from_le_bytes(take::<2>(&mut r)?) as usize;
                if r.len() < l {
                    return Err(CorruptRow("term"));
                }
                let t = std::str::from_utf8(&r[..l]).map_err(|_| CorruptRow("term"))?;
                r = &r[l..];
                terms.push((t, u32::from_le_bytes(take::<4>(&mut r)?)));
            }
            Some(std::sync::Arc::new(PackedTerms::new(terms, len)))
        };
        Ok(PointRow {
            id,
            created_at,
            alive,
            dedup,
            vector,
            metadata,
            lex,
        })
    }
}

fn take<const N: usize>(r: &mut &[u8]) -> Result<[u8; N], CorruptRow> {
    if r.len() < N {
        return Err(CorruptRow("truncated"));
    }
    let mut out = [0u8; N];
    out.copy_from_slice(&r[..N]);
    *r = &r[N..];
    Ok(out)
}

fn string(r: &mut &[u8]) -> Result<String, CorruptRow> {
    let len = u32::from_le_bytes(take::<4>(r)?) as usize;
    if r.len() < len {
        return Err(CorruptRow("metadata"));
    }
    let s = std::str::from_utf8(&r[..len]).map_err(|_| CorruptRow("metadata utf-8"))?;
    *r = &r[len..];
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::terms::IntoTerms;

    #[test]
    fn round_trip_and_truncation() {
        let mut metadata = Metadata::new();
        metadata.insert("a".into(), "b".into());
        let row = PointRow {
            id: MemoryId([3; 32]),
            created_at: 42,
            alive: true,
            dedup: [4; 32],
            vector: vec![0.5, -0.25, 1.0],
            metadata,
            lex: Some(cairn_index::lexical::DocTerms::of("tea with alice").into_terms()),
        };
        let b = row.encode();
        assert_eq!(PointRow::decode(&b).unwrap(), row);
        // Cut exactly where rows written before the lexical index end, a row reads as one without terms (which
        // start-up fills in again from the record); cut anywhere else, it is refused.
        let old = PointRow {
            lex: None,
            ..row.clone()
        };
        let boundary = old.encode().len();
        for n in 0..b.len() {
            match PointRow::decode(&b[..n]) {
                Ok(r) => assert!(n == boundary && r == old, "cut at {n} accepted"),
                Err(_) => assert_ne!(n, boundary),
            }
        }
    }

    #[test]
    fn dequantised_vectors_are_stored_as_codes_and_read_back_exactly() {
        let vector: Vec<f32> = [-127i8, -3, 0, 5, 127]
            .iter()
            .map(|&q| f32::from(q) / 127.0)
            .collect();
        let row = PointRow {
            id: MemoryId([1; 32]),
            created_at: 7,
            alive: true,
            dedup: [2; 32],
            vector,
            metadata: Metadata::new(),
            lex: None,
        };
        let b = row.encode();
        assert_eq!(b.len(), 32 + 8 + 1 + 32 + 2 + 5 + 4);
        assert_eq!(PointRow::decode(&b).unwrap(), row);
        // A vector that is not all codes keeps full floats.
        let mut other = row.clone();
        other.vector[0] = 0.123;
        let b = other.encode();
        assert_eq!(b.len(), 32 + 8 + 1 + 32 + 2 + 5 * 4 + 4);
        assert_eq!(PointRow::decode(&b).unwrap(), other);
    }

    /// A replica's codes written as they came encode exactly as the same codes expanded to f32 did.
    #[test]
    fn codes_encode_as_their_dequantised_vector() {
        let codes: Vec<i8> = vec![-127, -3, 0, 5, 127, 64];
        let expanded = PointRow {
            id: MemoryId([3; 32]),
            created_at: 9,
            alive: true,
            dedup: [4; 32],
            vector: codes.iter().map(|&q| f32::from(q) / 127.0).collect(),
            metadata: [("k".to_owned(), "v".to_owned())].into(),
            lex: None,
        };
        let bare = PointRow {
            vector: Vec::new(),
            ..expanded.clone()
        };
        assert_eq!(bare.encode_codes(&codes), expanded.encode());
        assert_eq!(
            PointRow::decode(&bare.encode_codes(&codes)).expect("decode"),
            expanded
        );
    }
}
