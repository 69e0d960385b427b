//! The serving vector index of one namespace: Cairn's HNSW graph ([`cairn_index::hnsw`]) over the int8 codes of
//! unit vectors (the same quantisation the proofs commit, [`cairn_index::commit::quantise`]) with the proofs'
//! integer distance, plus saving it to and restoring it from the data dir so a restart does not rebuild (or
//! re-embed) anything. The graph keeps no f32 vector: one byte per component instead of four.
//!
//! The graph is a cache of the durable state in redb: a dump records how many points it covers, and points
//! written after the last dump are re-inserted from redb on start-up. A missing, stale or damaged dump only
//! costs a rebuild (which gives the same graph on the same platform: inserts are deterministic).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use cairn_index::commit::quantise;
use cairn_index::hnsw::{Hnsw, HnswConfig, HnswError};
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

impl HnswParams {
    fn config(&self) -> HnswConfig {
        HnswConfig {
            m: self.m,
            ef_construction: self.ef_construction,
            dim: self.dim,
        }
    }
}

/// The layout of a dump; a dump in any other (hnsw_rs's files of older nodes) is rebuilt.
const CODES: &str = "cairn-hnsw-1";

/// The file of a dump that holds the graph ([`Hnsw::write_to`]).
const GRAPH_FILE: &str = "graph.bin";

/// `127²`: the dot product of a unit vector's int8 code with itself, up to rounding.
const UNIT: f32 = 127.0 * 127.0;

/// A hit's distance as the serving search reports it: `1 − a·b / 127²` (1 − cosine of the codes), clamped at 0.
fn code_distance(proof_distance: i32) -> f32 {
    (1.0 + proof_distance as f32 / UNIT).max(0.0)
}

/// An HNSW graph whose point numbers are the namespace's point numbers.
pub struct Ann {
    graph: RwLock<Hnsw>,
    /// Points whose lists changed since the last [`Ann::take_changed`].
    changed: Mutex<Vec<u32>>,
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
    /// The dump's layout ([`CODES`]); other layouts are rebuilt.
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
    /// Neighbour point numbers per layer 0..=level, nearest first (ties by number).
    pub lists: Vec<Vec<u32>>,
}

/// Why a dump could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot save HNSW index to {path}: {reason}")]
pub struct DumpError {
    path: PathBuf,
    reason: String,
}

/// A vector the graph cannot take (another dimension, or a point number out of order: a bug in the caller).
#[derive(Debug, thiserror::Error)]
#[error("HNSW insert refused: {0}")]
pub struct InsertError(#[from] HnswError);

impl Ann {
    /// An empty graph with room for `capacity` points.
    pub fn new(params: HnswParams, capacity: usize) -> Self {
        let mut graph = Hnsw::new(params.config());
        graph.reserve(capacity);
        Ann {
            graph: RwLock::new(graph),
            changed: Mutex::new(Vec::new()),
            params,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Hnsw> {
        // A panic while inserting cannot leave the graph half-linked in a way searches trip over (lists only
        // ever name existing points), so a poisoned lock is still read.
        self.graph.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Hnsw> {
        self.graph.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Points in the graph.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True when the graph has no points.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The vector dimension the graph takes.
    pub fn dim(&self) -> usize {
        self.read().config().dim
    }

    /// Adds a unit vector as point `point` (the next number; kept as its int8 code). The points whose lists
    /// changed are remembered for [`Ann::take_changed`].
    pub fn insert(&self, vector: &[f32], point: usize) -> Result<(), InsertError> {
        let changed = self.write().insert(&quantise(vector), point)?;
        self.changed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(changed);
        Ok(())
    }

    /// The points whose level or lists changed since the last call (new points included), ascending: what the
    /// commitment must re-read after inserts, without walking the graph.
    pub fn take_changed(&self) -> Vec<u32> {
        let mut c = std::mem::take(&mut *self.changed.lock().unwrap_or_else(|e| e.into_inner()));
        c.sort_unstable();
        c.dedup();
        c
    }

    /// Approximate nearest points to a unit query vector that pass `keep` (every point when None), nearest
    /// first, as (point, distance = 1 − cosine of the int8 codes). Points `keep` refuses are walked through
    /// but not returned.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: Option<&dyn Fn(usize) -> bool>,
    ) -> Vec<(usize, f32)> {
        let q = quantise(query);
        let g = self.read();
        let found = match keep {
            Some(keep) => {
                let filter = |p: u32| keep(p as usize);
                g.search(&q, k, ef.max(k), Some(&filter))
            }
            None => g.search(&q, k, ef.max(k), None),
        };
        found
            .into_iter()
            .map(|(p, d)| (p as usize, code_distance(d)))
            .collect()
    }

    /// The entry point (point number) and its level.
    pub fn entry(&self) -> Option<(usize, u8)> {
        self.read().entry().map(|(p, l)| (p as usize, l))
    }

    /// The level and neighbour lists (layers 0..=level, as point numbers) of every point `wanted` accepts.
    pub fn links(&self, wanted: &dyn Fn(usize) -> bool) -> Vec<NodeLinks> {
        let g = self.read();
        (0..g.len() as u32)
            .filter(|&p| wanted(p as usize))
            .filter_map(|p| Self::node_links(&g, p))
            .collect()
    }

    /// The level and neighbour lists of the given points (unknown points are skipped).
    pub fn links_of(&self, points: &[u32]) -> Vec<NodeLinks> {
        let g = self.read();
        points
            .iter()
            .filter_map(|&p| Self::node_links(&g, p))
            .collect()
    }

    fn node_links(g: &Hnsw, p: u32) -> Option<NodeLinks> {
        g.links(p).map(|l| NodeLinks {
            point: p as usize,
            level: l.level,
            lists: l.lists,
        })
    }

    /// Writes the graph to `dir` atomically (fresh directory, fsync, rename over the old one), bound to the
    /// fingerprint of the rows it indexes.
    /// The codes of points for which `dead` is true (forgotten memories) are written as zeros, so a forgotten
    /// vector never reaches the disk through the dump; the reloaded graph then holds zero codes there.
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
        let written = (|| -> Result<usize, String> {
            let file = std::fs::File::create(tmp.join(GRAPH_FILE)).map_err(|e| e.to_string())?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            let g = self.read();
            g.write_to(&mut w, &|p| dead(p as usize))
                .map_err(|e| e.to_string())?;
            let file = w.into_inner().map_err(|e| e.to_string())?;
            file.sync_all().map_err(|e| e.to_string())?;
            Ok(g.len())
        })();
        let points = match written {
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(err(e));
            }
        };
        let meta = DumpMeta {
            points,
            params: self.params,
            rows: Some(rows),
            codes: Some(CODES.into()),
        };
        let meta_bytes = serde_json::to_vec(&meta).map_err(|e| err(e.to_string()))?;
        std::fs::write(tmp.join("meta.json"), meta_bytes).map_err(|e| err(e.to_string()))?;
        std::fs::File::open(tmp.join("meta.json"))
            .and_then(|f| f.sync_all())
            .map_err(|e| err(e.to_string()))?;
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
            tracing::info!(dir = %dir.display(), "HNSW index saved by an older node in another layout; rebuilding it");
            return None;
        }
        let file = std::fs::File::open(dir.join(GRAPH_FILE)).ok()?;
        // A damaged meta must not size the reader's allocations: the file holds at least a level byte, a code
        // and a list length per point.
        let least = (meta.points as u64).saturating_mul(params.dim as u64 + 3);
        if file.metadata().ok()?.len() < least {
            tracing::warn!("HNSW dump shorter than its meta says; rebuilding the index");
            return None;
        }
        let mut r = std::io::BufReader::with_capacity(1 << 20, file);
        match Hnsw::read_from(&mut r, params.config(), meta.points) {
            Ok(graph) if graph.len() == meta.points => Some((
                Ann {
                    graph: RwLock::new(graph),
                    changed: Mutex::new(Vec::new()),
                    params,
                },
                meta.rows.unwrap_or_default(),
            )),
            Ok(_) => {
                tracing::warn!(
                    "HNSW dump holds another point count than its meta; rebuilding the index"
                );
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "HNSW dump unreadable; rebuilding the index");
                None
            }
        }
    }
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
            ann.insert(v, i).expect("insert");
        }
        ann
    }

    /// The reported distance orders as the proofs' integer distance does and is about 0 for a code against
    /// itself.
    #[test]
    fn reported_distance_orders_as_the_proof_distance() {
        let codes: Vec<Vec<i8>> = vectors(60, 3).iter().map(|v| quantise(v)).collect();
        for a in &codes {
            assert!(code_distance(cairn_index::commit::distance(a, a)) < 0.02);
            for b in &codes {
                for c in &codes {
                    let (db, dc) = (
                        cairn_index::commit::distance(a, b),
                        cairn_index::commit::distance(a, c),
                    );
                    assert!(db >= dc || code_distance(db) <= code_distance(dc));
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
    /// to the same graph and answers, and a dump in another layout (hnsw_rs's, written by older nodes) is not
    /// reused.
    #[test]
    fn dumps_hold_int8_codes_and_older_layouts_are_rebuilt() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("hnsw");
        let vs = vectors(500, 5);
        let ann = built(&vs);
        ann.save(&dir, "fp".into(), &|_| false).expect("save");
        let data = std::fs::metadata(dir.join(GRAPH_FILE))
            .expect("graph file")
            .len();
        // Header, levels, codes, lists (2 + 4 per link), digest: well under 4 bytes per component.
        assert!(data < 500 * (DIM as u64 * 4), "{data} bytes");
        let (back, fp) = Ann::load(&dir, params()).expect("reload");
        assert_eq!(fp, "fp");
        assert_eq!(back.len(), 500);
        assert_eq!(back.links(&|_| true), ann.links(&|_| true));
        for q in vectors(5, 77) {
            assert_eq!(back.search(&q, 10, 64, None), ann.search(&q, 10, 64, None));
        }
        // The same dump tagged with hnsw_rs's layout, as older nodes wrote it: rebuilt, not reused.
        let meta = std::fs::read_to_string(dir.join("meta.json")).expect("meta");
        let mut v: serde_json::Value = serde_json::from_str(&meta).expect("json");
        v["codes"] = serde_json::Value::String("int8-127".into());
        std::fs::write(dir.join("meta.json"), v.to_string()).expect("write meta");
        assert!(Ann::load(&dir, params()).is_none());
    }

    /// Inserts report exactly the points the commitment must re-read, and a damaged dump is rebuilt, not used.
    #[test]
    fn changed_points_are_reported_and_damaged_dumps_refused() {
        let vs = vectors(300, 17);
        let ann = built(&vs[..299]);
        let _ = ann.take_changed();
        let before = ann.links(&|_| true);
        ann.insert(&vs[299], 299).expect("insert");
        let changed = ann.take_changed();
        let after = ann.links(&|_| true);
        let mut differs: Vec<u32> = before
            .iter()
            .zip(&after)
            .filter(|(a, b)| a != b)
            .map(|(a, _)| a.point as u32)
            .collect();
        differs.push(299);
        assert_eq!(changed, differs);
        assert!(ann.take_changed().is_empty());
        assert!(ann.insert(&vs[0], 7).is_err());
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("hnsw");
        ann.save(&dir, "fp".into(), &|_| false).expect("save");
        let path = dir.join(GRAPH_FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&path, bytes).expect("write");
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
        let bytes = std::fs::read(dir.join(GRAPH_FILE)).expect("data");
        let code7: Vec<u8> = quantise(&vs[7]).iter().map(|&c| c as u8).collect();
        assert!(!bytes.windows(DIM).any(|w| w == code7));
        let code8: Vec<u8> = quantise(&vs[8]).iter().map(|&c| c as u8).collect();
        assert!(bytes.windows(DIM).any(|w| w == code8));
    }
}
