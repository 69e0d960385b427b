//! The serving vector index of one namespace: an hnsw_rs graph over the int8 codes of unit vectors (the same
//! quantisation the proofs commit, [`cairn_index::commit::quantise`]) with the proofs' dot-product distance,
//! plus saving it to and restoring it from the data dir so a restart does not rebuild (or re-embed) anything.
//! The graph keeps no f32 vector: one byte per component instead of four.
//!
//! The graph is a cache of the durable state in redb: a dump records how many points it covers, and points
//! written after the last dump are re-inserted from redb on start-up. A missing, stale or damaged dump only
//! costs a rebuild.

use std::path::{Path, PathBuf};

use cairn_index::commit::quantise;
use hnsw_rs::prelude::*;
use serde::{Deserialize, Serialize};

/// HNSW parameters (all configurable on `cairn serve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    /// Links per node (M); layer 0 keeps 2·M.
    pub m: usize,
    /// Search breadth while inserting.
    pub ef_construction: usize,
    /// Vector dimension.
    pub dim: usize,
}

/// Most HNSW layers.
const MAX_LAYERS: usize = 16;

/// The layout of the vectors a dump holds; a dump in any other layout (an older node's f32 vectors) is rebuilt.
const CODES: &str = "int8-127";

/// `127²`: the dot product of a unit vector's int8 code with itself, up to rounding.
const UNIT: f32 = 127.0 * 127.0;

/// hnsw_rs distance over int8 codes: `1 − a·b / 127²` (1 − cosine, as hnsw_rs's `DistDot` gives for f32),
/// clamped at 0. It orders points as the proofs' [`cairn_index::commit::distance`] does (the clamp only ties
/// points closer than a code's rounded self-product), so the serving search and the proven search compare the
/// same numbers.
#[derive(Debug, Default, Clone, Copy)]
pub struct CodeDot;

impl Distance<i8> for CodeDot {
    fn eval(&self, va: &[i8], vb: &[i8]) -> f32 {
        let dot = -cairn_index::commit::distance(va, vb);
        (1.0 - dot as f32 / UNIT).max(0.0)
    }
}

/// An HNSW graph whose data ids are the namespace's point numbers.
pub struct Ann {
    hnsw: Hnsw<'static, i8, CodeDot>,
    params: HnswParams,
}

#[derive(Serialize, Deserialize)]
struct DumpMeta {
    points: usize,
    params: HnswParams,
    /// [`rows_fingerprint`] of the rows the graph indexes (hex). A dump without it, or with another, is not
    /// reused: after a compaction renumbers the rows, an older dump would map points to the wrong memories.
    #[serde(default)]
    rows: Option<String>,
    /// The vector layout ([`CODES`]); absent in dumps of f32 graphs, which are rebuilt.
    #[serde(default)]
    codes: Option<String>,
}

/// BLAKE3 over the ids of `ids` in point order: what a saved graph is bound to.
pub fn rows_fingerprint<'a>(ids: impl Iterator<Item = &'a [u8; 32]>) -> String {
    let mut h = blake3::Hasher::new();
    for id in ids {
        h.update(id);
    }
    h.finalize().to_hex().to_string()
}

/// A point's place in the graph: its level and neighbour lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLinks {
    /// Point number.
    pub point: usize,
    /// Top layer.
    pub level: u8,
    /// Neighbour point numbers per layer 0..=level, in hnsw_rs order (nearest first).
    pub lists: Vec<Vec<u32>>,
}

/// Why a dump could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot save HNSW index to {path}: {reason}")]
pub struct DumpError {
    path: PathBuf,
    reason: String,
}

impl Ann {
    /// An empty graph.
    pub fn new(params: HnswParams, capacity: usize) -> Self {
        let m = params.m.clamp(2, 256);
        let hnsw = Hnsw::new(
            m,
            capacity.max(1024),
            MAX_LAYERS,
            params.ef_construction.max(m),
            CodeDot,
        );
        Ann { hnsw, params }
    }

    /// Points in the graph.
    pub fn len(&self) -> usize {
        self.hnsw.get_nb_point()
    }

    /// True when the graph has no points.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a unit vector as point `point` (kept as its int8 code).
    pub fn insert(&self, vector: &[f32], point: usize) {
        self.hnsw.insert_slice((&quantise(vector), point));
    }

    /// Approximate nearest points to a unit query vector that pass `keep` (every point when None), nearest
    /// first, as (point, distance = 1 − cosine of the int8 codes).
    ///
    /// A filtered search costs far more: hnsw_rs then gives up its early stop and walks every candidate it
    /// queued, so callers without a filter pass None and drop what they do not want afterwards.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: Option<&dyn Fn(usize) -> bool>,
    ) -> Vec<(usize, f32)> {
        if self.is_empty() || k == 0 {
            return Vec::new();
        }
        let q = quantise(query);
        let found = match keep {
            Some(keep) => {
                let filter = |id: &usize| keep(*id);
                self.hnsw.search_filter(&q, k, ef.max(k), Some(&filter))
            }
            None => self.hnsw.search(&q, k, ef.max(k)),
        };
        found.into_iter().map(|n| (n.d_id, n.distance)).collect()
    }

    /// The entry point (point number) and its level, as hnsw_rs searches from it: the first point that reached
    /// the top layer.
    pub fn entry(&self) -> Option<(usize, u8)> {
        if self.is_empty() {
            return None;
        }
        let top = self.hnsw.get_max_level_observed();
        let pi = self.hnsw.get_point_indexation();
        pi.get_layer_iterator(top as usize)
            .next()
            .map(|p| (p.get_origin_id(), top))
    }

    /// The level and neighbour lists (layers 0..=level, as point numbers) of every point `wanted` accepts.
    /// Points are read layer by layer; the caller serialises this with inserts.
    pub fn links(&self, wanted: &dyn Fn(usize) -> bool) -> Vec<NodeLinks> {
        let mut out = Vec::new();
        if self.is_empty() {
            return out;
        }
        let pi = self.hnsw.get_point_indexation();
        for layer in 0..=self.hnsw.get_max_level_observed() {
            for p in pi.get_layer_iterator(layer as usize) {
                let point = p.get_origin_id();
                if !wanted(point) {
                    continue;
                }
                let level = p.get_point_id().0;
                let lists = p
                    .get_neighborhood_id()
                    .into_iter()
                    .take(level as usize + 1)
                    .map(|l| l.into_iter().map(|n| n.d_id as u32).collect())
                    .collect::<Vec<Vec<u32>>>();
                let mut lists = lists;
                lists.resize(level as usize + 1, Vec::new());
                out.push(NodeLinks {
                    point,
                    level,
                    lists,
                });
            }
        }
        out
    }

    /// Writes the graph to `dir` atomically (fresh directory, fsync, rename over the old one), bound to the
    /// fingerprint of the rows it indexes.
    /// The vectors of points for which `dead` is true (forgotten memories) are zeroed in the written dump, so
    /// a forgotten vector never reaches the disk through it; the reloaded graph then holds zero vectors there.
    pub fn save(
        &self,
        dir: &Path,
        rows: String,
        dead: &dyn Fn(usize) -> bool,
    ) -> Result<(), DumpError> {
        let err = |reason: String| DumpError {
            path: dir.to_owned(),
            reason,
        };
        if self.is_empty() {
            // Nothing to save; drop any older dump so it cannot be mistaken for the current state.
            let _ = std::fs::remove_dir_all(dir);
            return Ok(());
        }
        let parent = dir
            .parent()
            .ok_or_else(|| err("no parent directory".into()))?;
        std::fs::create_dir_all(parent).map_err(|e| err(e.to_string()))?;
        let tmp = parent.join(format!(
            "{}.tmp-{}",
            dir.file_name().and_then(|s| s.to_str()).unwrap_or("index"),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&tmp).map_err(|e| err(e.to_string()))?;
        let written = self
            .hnsw
            .file_dump(&tmp, "index")
            .map_err(|e| err(e.to_string()))?;
        if written != "index" {
            return Err(err(format!("hnsw_rs wrote basename {written}")));
        }
        zero_dead_vectors(&tmp.join("index.hnsw.data"), dead).map_err(|e| {
            // Without the zeroing, an older dump may still hold vectors forgotten since: drop it too.
            let _ = std::fs::remove_dir_all(&tmp);
            let _ = std::fs::remove_dir_all(dir);
            err(format!("zeroing forgotten vectors: {e}"))
        })?;
        let meta = DumpMeta {
            points: self.len(),
            params: self.params,
            rows: Some(rows),
            codes: Some(CODES.into()),
        };
        let meta_bytes = serde_json::to_vec(&meta).map_err(|e| err(e.to_string()))?;
        std::fs::write(tmp.join("meta.json"), meta_bytes).map_err(|e| err(e.to_string()))?;
        for f in ["index.hnsw.graph", "index.hnsw.data", "meta.json"] {
            std::fs::File::open(tmp.join(f))
                .and_then(|f| f.sync_all())
                .map_err(|e| err(e.to_string()))?;
        }
        let trash = parent.join(format!("trash-{}", rand::random::<u64>()));
        if dir.exists() {
            std::fs::rename(dir, &trash).map_err(|e| err(e.to_string()))?;
        }
        std::fs::rename(&tmp, dir).map_err(|e| err(e.to_string()))?;
        let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
        let _ = std::fs::remove_dir_all(&trash);
        Ok(())
    }

    /// Loads a graph saved by [`Ann::save`] with the fingerprint of the rows it was saved for; `None` if there is
    /// none or it does not fit `params` (the caller then rebuilds). Never panics on damaged files.
    pub fn load(dir: &Path, params: HnswParams) -> Option<(Self, String)> {
        let meta: DumpMeta =
            serde_json::from_slice(&std::fs::read(dir.join("meta.json")).ok()?).ok()?;
        if meta.params != params {
            tracing::info!(dir = %dir.display(), "HNSW parameters changed; rebuilding the index");
            return None;
        }
        if meta.codes.as_deref() != Some(CODES) {
            tracing::info!(dir = %dir.display(), "HNSW index saved with f32 vectors by an older node; rebuilding it with int8 codes");
            return None;
        }
        let dir = dir.to_owned();
        let loaded = std::panic::catch_unwind(move || {
            let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(&dir, "index")));
            io.load_hnsw::<i8, CodeDot>().ok()
        });
        match loaded {
            Ok(Some(hnsw)) if hnsw.get_nb_point() == meta.points => {
                Some((Ann { hnsw, params }, meta.rows.unwrap_or_default()))
            }
            _ => {
                tracing::warn!("HNSW dump unreadable or inconsistent; rebuilding the index");
                None
            }
        }
    }
}

/// Tag hnsw_rs writes at the head of its data file and before each point's vector.
const DATA_MAGIC: u32 = 0xa67f_0000;

/// Overwrites with zeros, in an hnsw_rs data file (`u32 magic, u64 dim` then per point `u32 magic, u64 id,
/// u64 len, len bytes`, native endian), the vectors of the points for which `dead` is true. Checks every
/// record's framing and fails on anything unexpected rather than guess. Returns how many were zeroed.
fn zero_dead_vectors(path: &Path, dead: &dyn Fn(usize) -> bool) -> std::io::Result<usize> {
    use std::io::{Error, ErrorKind, Read, Seek, SeekFrom, Write};
    let bad = |what: &str| Error::new(ErrorKind::InvalidData, format!("hnsw data file: {what}"));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let size = f.metadata()?.len();
    let mut r = std::io::BufReader::new(&mut f);
    let mut u32b = [0u8; 4];
    let mut u64b = [0u8; 8];
    r.read_exact(&mut u32b)?;
    if u32::from_ne_bytes(u32b) != DATA_MAGIC {
        return Err(bad("header magic"));
    }
    r.read_exact(&mut u64b)?;
    let mut at: u64 = 12;
    let mut spots = Vec::new();
    while at < size {
        r.read_exact(&mut u32b)?;
        if u32::from_ne_bytes(u32b) != DATA_MAGIC {
            return Err(bad("point magic"));
        }
        r.read_exact(&mut u64b)?;
        let id = u64::from_ne_bytes(u64b);
        r.read_exact(&mut u64b)?;
        let len = u64::from_ne_bytes(u64b);
        at = at
            .checked_add(20)
            .and_then(|a| a.checked_add(len))
            .filter(|&a| a <= size)
            .ok_or_else(|| bad("point length"))?;
        if usize::try_from(id).is_ok_and(dead) {
            spots.push((at - len, len));
        }
        r.seek_relative(len as i64)?;
    }
    drop(r);
    let zeros = vec![0u8; 64 * 1024];
    for &(off, len) in &spots {
        f.seek(SeekFrom::Start(off))?;
        let mut left = len;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            f.write_all(&zeros[..n])?;
            left -= n as u64;
        }
    }
    Ok(spots.len())
}

/// Sweeps leftovers of interrupted saves in `parent`.
pub fn clean_leftovers(parent: &Path) {
    if let Ok(rd) = std::fs::read_dir(parent) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("trash-") || name.contains(".tmp-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIM: usize = 48;

    fn params() -> HnswParams {
        HnswParams {
            m: 12,
            ef_construction: 100,
            dim: DIM,
        }
    }

    /// Deterministic unit vectors around 8 centres (xorshift; no two runs differ).
    fn vectors(n: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut x = seed | 1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 10_000) as f32 / 10_000.0 - 0.5
        };
        (0..n)
            .map(|i| {
                let mut v: Vec<f32> = (0..DIM)
                    .map(|d| next() + if d % 8 == i % 8 { 1.5 } else { 0.0 })
                    .collect();
                let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
                v.iter_mut().for_each(|a| *a /= norm);
                v
            })
            .collect()
    }

    fn built(vs: &[Vec<f32>]) -> Ann {
        let ann = Ann::new(params(), vs.len());
        for (i, v) in vs.iter().enumerate() {
            ann.insert(v, i);
        }
        ann
    }

    /// The distance orders exactly as the proofs' integer distance does (so serving and proven search agree
    /// on every comparison), and is about 0 for a code against itself.
    #[test]
    fn code_distance_orders_as_the_proof_distance() {
        let vs = vectors(60, 3);
        let codes: Vec<Vec<i8>> = vs.iter().map(|v| quantise(v)).collect();
        for a in &codes {
            // A code's norm is 127 up to rounding, so its distance to itself is about 0.
            assert!(CodeDot.eval(a, a) < 0.02);
            for b in &codes {
                for c in &codes {
                    let proof =
                        cairn_index::commit::distance(a, b) < cairn_index::commit::distance(a, c);
                    let here = CodeDot.eval(a, b) < CodeDot.eval(a, c);
                    assert!(!proof || here || CodeDot.eval(a, b) == 0.0);
                }
            }
        }
    }

    /// Searching int8 codes still finds the exact top 10 (by cosine with the codes) nearly always.
    #[test]
    fn int8_search_finds_the_exact_top_ten() {
        let vs = vectors(3000, 11);
        let ann = built(&vs);
        let codes: Vec<Vec<i8>> = vs.iter().map(|v| quantise(v)).collect();
        let queries = vectors(100, 97);
        let (mut found, mut wanted) = (0usize, 0usize);
        for q in &queries {
            let qc = quantise(q);
            let mut exact: Vec<(i32, usize)> = codes
                .iter()
                .enumerate()
                .map(|(i, c)| (cairn_index::commit::distance(&qc, c), i))
                .collect();
            exact.sort_unstable();
            let truth: Vec<usize> = exact.iter().take(10).map(|&(_, i)| i).collect();
            let got: Vec<usize> = ann
                .search(q, 10, 64, None)
                .into_iter()
                .map(|(p, _)| p)
                .collect();
            wanted += truth.len();
            found += truth.iter().filter(|t| got.contains(t)).count();
        }
        let recall = found as f64 / wanted as f64;
        assert!(recall >= 0.98, "recall@10 {recall}");
    }

    /// A dump holds one byte per component (no f32 vector reaches the disk or comes back into memory), reloads
    /// to the same answers, and a dump written in the older f32 layout is not reused.
    #[test]
    fn dumps_hold_int8_codes_and_older_layouts_are_rebuilt() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("hnsw");
        let vs = vectors(500, 5);
        let ann = built(&vs);
        ann.save(&dir, "fp".into(), &|_| false).expect("save");
        let data = std::fs::metadata(dir.join("index.hnsw.data"))
            .expect("data file")
            .len();
        assert_eq!(data, 12 + 500 * (20 + DIM as u64));
        let (back, fp) = Ann::load(&dir, params()).expect("reload");
        assert_eq!(fp, "fp");
        assert_eq!(back.len(), 500);
        for q in vectors(5, 77) {
            assert_eq!(back.search(&q, 10, 64, None), ann.search(&q, 10, 64, None));
        }
        // The same dump without the layout tag, as nodes before int8 codes wrote it: rebuilt, not reused.
        let meta = std::fs::read_to_string(dir.join("meta.json")).expect("meta");
        let mut v: serde_json::Value = serde_json::from_str(&meta).expect("json");
        v.as_object_mut().expect("object").remove("codes");
        std::fs::write(dir.join("meta.json"), v.to_string()).expect("write meta");
        assert!(Ann::load(&dir, params()).is_none());
    }

    /// Forgotten points' codes are zeroed in the dump.
    #[test]
    fn dead_codes_are_zeroed_in_the_dump() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("hnsw");
        let vs = vectors(50, 9);
        let ann = built(&vs);
        ann.save(&dir, "fp".into(), &|p| p == 7).expect("save");
        let bytes = std::fs::read(dir.join("index.hnsw.data")).expect("data");
        let code7 = quantise(&vs[7]);
        assert!(!bytes
            .windows(DIM)
            .any(|w| w == code7.iter().map(|&c| c as u8).collect::<Vec<_>>()));
        let code8: Vec<u8> = quantise(&vs[8]).iter().map(|&c| c as u8).collect();
        assert!(bytes.windows(DIM).any(|w| w == code8));
    }
}
