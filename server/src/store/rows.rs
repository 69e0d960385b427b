//! Byte layouts of the rows Cairn keeps in redb. Internal to the node (not part of any public format), but
//! versioned through the `format` entry of the `meta` table.

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
}

/// A row that does not parse: the database was damaged or written by an incompatible version.
#[derive(Debug, thiserror::Error)]
#[error("corrupt point row: {0}")]
pub struct CorruptRow(pub &'static str);

impl PointRow {
    /// Encodes the row.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + 8 + 1 + 2 + self.vector.len() * 4 + 64);
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(&self.created_at.to_le_bytes());
        out.push(u8::from(self.alive));
        out.extend_from_slice(&self.dedup);
        out.extend_from_slice(&(self.vector.len() as u16).to_le_bytes());
        for x in &self.vector {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&(self.metadata.len() as u32).to_le_bytes());
        for (k, v) in &self.metadata {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
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
        let dim = u16::from_le_bytes(take::<2>(&mut r)?) as usize;
        if r.len() < dim * 4 {
            return Err(CorruptRow("vector"));
        }
        let vector = r[..dim * 4]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        r = &r[dim * 4..];
        let n = u32::from_le_bytes(take::<4>(&mut r)?);
        let mut metadata = Metadata::new();
        for _ in 0..n {
            let k = string(&mut r)?;
            let v = string(&mut r)?;
            metadata.insert(k, v);
        }
        Ok(PointRow {
            id,
            created_at,
            alive,
            dedup,
            vector,
            metadata,
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
        };
        let b = row.encode();
        assert_eq!(PointRow::decode(&b).unwrap(), row);
        for n in 0..b.len() {
            assert!(PointRow::decode(&b[..n]).is_err());
        }
    }
}
