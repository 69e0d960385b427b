//! The HNSW graph an owner builds and serves from: Malkov & Yashunin's hierarchical navigable small world over
//! the int8 codes the proofs commit ([`crate::commit::quantise`]), compared with the proofs' integer distance
//! ([`crate::commit::distance`]), ties broken by point number.
//!
//! Why Cairn keeps its own: the committed graph must follow every insert, and an insert changes the lists of
//! the new point and of the points it links back to. This graph reports exactly those points, so a commit costs
//! O(changed points) instead of a walk over every point (hnsw_rs 0.3.5 exposes lists only through whole-layer
//! iterators), and it stores the graph flat: one byte per vector component, fixed-stride `u32` lists at layer 0
//! and no per-link allocation (about 0.5 KB per point at dimension 384 and M = 16 instead of several KB).
//!
//! It is deterministic: a point's level is a function of its number, and inserts read no clock and no random
//! state, so the same points inserted in the same order give the same graph (a restart that
//! rebuilds from the durable rows signs the same lists). A level uses f64 `ln`, so two platforms whose maths
//! library rounds differently could draw another level for a rare point; nothing relies on graphs agreeing across
//! machines (replicas take the owner's committed lists). Inserts take `&mut self`; searches take `&self` and
//! may run concurrently (each borrows a visited-set from a small pool).
//!
//! [`Hnsw::write_to`] and [`Hnsw::read_from`] move the graph to and from bytes (the node keeps it in its data dir
//! so a restart does not rebuild); reading checks every length, level and link and never panics.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{Read, Write};
use std::sync::Mutex;

use crate::commit::{distance, MAX_DIM, MAX_LEVEL};

/// A point's distance to a query and its number: the order every comparison uses (smaller is nearer).
type Scored = (i32, u32);

/// Graph parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswConfig {
    /// Links per point above layer 0 (M); layer 0 keeps 2·M. Clamped to 2..=256.
    pub m: usize,
    /// Search breadth while inserting.
    pub ef_construction: usize,
    /// Vector dimension (1..=[`MAX_DIM`]).
    pub dim: usize,
}

/// Why an insert or a read failed.
#[derive(Debug, thiserror::Error)]
pub enum HnswError {
    /// A code's length is not the graph's dimension.
    #[error("vector of dimension {got}, the graph holds dimension {want}")]
    Dimension {
        /// The graph's dimension.
        want: usize,
        /// The code's.
        got: usize,
    },
    /// Points are numbered densely from 0, in insert order.
    #[error("point {got} inserted where point {want} comes next")]
    OutOfOrder {
        /// The next point number.
        want: usize,
        /// The number given.
        got: usize,
    },
    /// Saved bytes that are not a graph this code wrote, or are damaged.
    #[error("saved graph unreadable: {0}")]
    Format(String),
    /// Reading or writing the bytes failed.
    #[error("saved graph: {0}")]
    Io(#[from] std::io::Error),
}

/// The neighbour lists of one point, as the commitment records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointLinks {
    /// Top layer.
    pub level: u8,
    /// Neighbour point numbers per layer 0..=level, nearest first (ties by number).
    pub lists: Vec<Vec<u32>>,
}

/// Marks of visited points, reset in O(1) by moving to a new stamp.
#[derive(Default)]
struct Visited {
    marks: Vec<u32>,
    stamp: u32,
}

impl Visited {
    fn reset(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.stamp = 1;
        }
    }

    /// True the first time `p` is seen since the last reset.
    fn first(&mut self, p: u32) -> bool {
        match self.marks.get_mut(p as usize) {
            Some(m) if *m != self.stamp => {
                *m = self.stamp;
                true
            }
            _ => false,
        }
    }
}

/// Visited-sets kept for reuse by searches (at most this many are kept).
const POOL: usize = 8;

/// The graph. See the module documentation.
pub struct Hnsw {
    cfg: HnswConfig,
    /// Layer-0 capacity (2·M).
    m0: usize,
    /// Codes, `dim` bytes per point.
    codes: Vec<i8>,
    levels: Vec<u8>,
    /// Layer-0 lists, `m0` slots per point; `l0_len[p]` of them are used.
    l0: Vec<u32>,
    l0_len: Vec<u16>,
    /// How many layer-0 lists name each point: inserts keep a point's last in-link where they can, so a memory
    /// the graph stops linking to (an orphan no search can return) is rare.
    indeg: Vec<u32>,
    /// Lists at layers 1..=level of the points above layer 0 (about one point in M).
    upper: HashMap<u32, Vec<Vec<u32>>>,
    /// The entry point and its level: the first point to reach the top level.
    entry: Option<(u32, u8)>,
    /// Log base for levels: 1 / ln(M).
    level_mult: f64,
    pool: Mutex<Vec<Visited>>,
}

impl std::fmt::Debug for Hnsw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hnsw")
            .field("cfg", &self.cfg)
            .field("points", &self.len())
            .field("entry", &self.entry)
            .finish()
    }
}

/// splitmix64: a fixed, well-mixed function of a point number (its level's source).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Hnsw {
    /// An empty graph (`m` clamped to 2..=256, `dim` to 1..=[`MAX_DIM`], `ef_construction` to at least M).
    pub fn new(cfg: HnswConfig) -> Self {
        let m = cfg.m.clamp(2, 256);
        let cfg = HnswConfig {
            m,
            ef_construction: cfg.ef_construction.max(m),
            dim: cfg.dim.clamp(1, MAX_DIM),
        };
        Hnsw {
            cfg,
            m0: 2 * m,
            codes: Vec::new(),
            levels: Vec::new(),
            l0: Vec::new(),
            l0_len: Vec::new(),
            indeg: Vec::new(),
            upper: HashMap::new(),
            entry: None,
            level_mult: 1.0 / (m as f64).ln(),
            pool: Mutex::new(Vec::new()),
        }
    }

    /// The parameters in force (after clamping).
    pub fn config(&self) -> HnswConfig {
        self.cfg
    }

    /// Points in the graph.
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// True when the graph has no point.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Reserves room for `more` points.
    pub fn reserve(&mut self, more: usize) {
        self.codes.reserve(more.saturating_mul(self.cfg.dim));
        self.levels.reserve(more);
        self.l0.reserve(more.saturating_mul(self.m0));
        self.l0_len.reserve(more);
        self.indeg.reserve(more);
    }

    /// Bytes the graph holds on the heap (codes, lists, levels, in-degrees, upper layers), for benchmarks and
    /// memory accounting.
    pub fn heap_bytes(&self) -> usize {
        let upper: usize = self
            .upper
            .values()
            .map(|ls| 24 * ls.capacity() + ls.iter().map(|l| 4 * l.capacity()).sum::<usize>())
            .sum();
        self.codes.capacity()
            + self.levels.capacity()
            + 4 * self.l0.capacity()
            + 2 * self.l0_len.capacity()
            + 4 * self.indeg.capacity()
            + upper
            + self.upper.capacity() * (4 + 24 + 8)
    }

    /// The entry point and its level.
    pub fn entry(&self) -> Option<(u32, u8)> {
        self.entry
    }

    /// The level point `p` gets: ⌊−ln(u)/ln(M)⌋ for u ∈ (0, 1] drawn from the point number by splitmix64.
    pub fn level_of(&self, p: u32) -> u8 {
        let u = ((mix(u64::from(p)) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let l = (-u.ln() * self.level_mult).floor();
        if l.is_finite() && l > 0.0 {
            (l as u64).min(u64::from(MAX_LEVEL - 1)) as u8
        } else {
            0
        }
    }

    /// Point `p`'s code.
    pub fn code(&self, p: u32) -> Option<&[i8]> {
        let d = self.cfg.dim;
        let at = (p as usize).checked_mul(d)?;
        self.codes.get(at..at.checked_add(d)?)
    }

    fn code_of(&self, p: u32) -> &[i8] {
        self.code(p).unwrap_or(&[])
    }

    /// Point `p`'s list at `layer` (empty above its level or for an unknown point).
    pub fn list(&self, p: u32, layer: u8) -> &[u32] {
        if layer == 0 {
            let (Some(&len), Some(at)) = (
                self.l0_len.get(p as usize),
                (p as usize).checked_mul(self.m0),
            ) else {
                return &[];
            };
            return self.l0.get(at..at + usize::from(len)).unwrap_or(&[]);
        }
        self.upper
            .get(&p)
            .and_then(|ls| ls.get(usize::from(layer) - 1))
            .map_or(&[], Vec::as_slice)
    }

    /// Point `p`'s level and lists, as the commitment records them.
    pub fn links(&self, p: u32) -> Option<PointLinks> {
        let level = *self.levels.get(p as usize)?;
        Some(PointLinks {
            level,
            lists: (0..=level).map(|l| self.list(p, l).to_vec()).collect(),
        })
    }

    fn set_list(&mut self, p: u32, layer: u8, list: &[u32]) {
        if layer == 0 {
            let at = p as usize * self.m0;
            let n = list.len().min(self.m0);
            let Some(&old) = self.l0_len.get(p as usize) else {
                return;
            };
            for i in at..at + usize::from(old) {
                if let Some(d) = self.l0.get(i).and_then(|&x| self.indeg.get_mut(x as usize)) {
                    *d = d.saturating_sub(1);
                }
            }
            for &x in &list[..n] {
                if let Some(d) = self.indeg.get_mut(x as usize) {
                    *d += 1;
                }
            }
            if let (Some(slots), Some(len)) =
                (self.l0.get_mut(at..at + n), self.l0_len.get_mut(p as usize))
            {
                slots.copy_from_slice(&list[..n]);
                *len = n as u16;
            }
        } else if let Some(l) = self
            .upper
            .get_mut(&p)
            .and_then(|ls| ls.get_mut(usize::from(layer) - 1))
        {
            l.clear();
            l.extend_from_slice(list);
        }
    }

    fn cap(&self, layer: u8) -> usize {
        if layer == 0 {
            self.m0
        } else {
            self.cfg.m
        }
    }

    fn take_visited(&self) -> Visited {
        let mut v = self
            .pool
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default();
        v.reset(self.len());
        v
    }

    fn give_visited(&self, v: Visited) {
        if let Ok(mut p) = self.pool.lock() {
            if p.len() < POOL {
                p.push(v);
            }
        }
    }

    /// Greedy descent at `layer` from `cur` towards `q`.
    fn greedy(&self, q: &[i8], mut cur: Scored, layer: u8) -> Scored {
        loop {
            let mut best = cur;
            for &nb in self.list(cur.1, layer) {
                let c = (distance(q, self.code_of(nb)), nb);
                if c < best {
                    best = c;
                }
            }
            if best == cur {
                return cur;
            }
            cur = best;
        }
    }

    /// Best-first search at `layer` from `starts`: the `ef` nearest points `keep` accepts (all when None), nearest
    /// first. Points `keep` refuses are walked through but not returned.
    fn search_layer(
        &self,
        q: &[i8],
        starts: &[Scored],
        ef: usize,
        layer: u8,
        keep: Option<&dyn Fn(u32) -> bool>,
        seen: &mut Visited,
    ) -> Vec<Scored> {
        let ef = ef.max(1);
        let kept = |p: u32| keep.is_none_or(|k| k(p));
        let mut candidates: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(ef * 2);
        let mut results: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef + 1);
        for &s in starts {
            if seen.first(s.1) {
                candidates.push(Reverse(s));
                if kept(s.1) {
                    results.push(s);
                }
            }
        }
        while results.len() > ef {
            results.pop();
        }
        while let Some(Reverse(c)) = candidates.pop() {
            if results.len() >= ef && results.peek().is_some_and(|&w| c > w) {
                break;
            }
            for &nb in self.list(c.1, layer) {
                if !seen.first(nb) {
                    continue;
                }
                let d = (distance(q, self.code_of(nb)), nb);
                if results.len() < ef || results.peek().is_some_and(|&w| d < w) {
                    candidates.push(Reverse(d));
                    if kept(nb) {
                        results.push(d);
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
        }
        let mut out = results.into_vec();
        out.sort_unstable();
        out
    }

    /// The approximate `k` nearest points to `q` that `keep` accepts (every point when None), nearest first, as
    /// (point, distance). `ef` (≥ k) is the breadth of the layer-0 search. A code of another dimension finds
    /// nothing.
    pub fn search(
        &self,
        q: &[i8],
        k: usize,
        ef: usize,
        keep: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<(u32, i32)> {
        let Some((entry, top)) = self.entry else {
            return Vec::new();
        };
        if k == 0 || q.len() != self.cfg.dim {
            return Vec::new();
        }
        let mut cur = (distance(q, self.code_of(entry)), entry);
        for layer in (1..=top).rev() {
            cur = self.greedy(q, cur, layer);
        }
        let mut seen = self.take_visited();
        let found = self.search_layer(q, &[cur], ef.max(k), 0, keep, &mut seen);
        self.give_visited(seen);
        found.into_iter().take(k).map(|(d, p)| (p, d)).collect()
    }

    /// Malkov's neighbour-selection heuristic: from `cands` (distance to the base point, point), nearest first,
    /// keeps a candidate only if it is strictly nearer to the base than to every candidate already kept, up to
    /// `cap`. Strictly: of exact duplicates (common with integer codes) a list keeps one, so a group of
    /// identical vectors cannot fill each other's lists and cut itself off from the rest of the graph.
    fn select(&self, cands: &[Scored], cap: usize) -> Vec<u32> {
        let mut kept: Vec<u32> = Vec::with_capacity(cap);
        for &(d, c) in cands {
            if kept.len() >= cap {
                break;
            }
            let code = self.code_of(c);
            if kept.iter().all(|&r| distance(code, self.code_of(r)) > d) {
                kept.push(c);
            }
        }
        kept
    }

    /// Adds point `p` (the next number) with `code`. Returns the points whose lists changed: `p` and every point
    /// that now links to it (in ascending order).
    pub fn insert(&mut self, code: &[i8], p: usize) -> Result<Vec<u32>, HnswError> {
        if code.len() != self.cfg.dim {
            return Err(HnswError::Dimension {
                want: self.cfg.dim,
                got: code.len(),
            });
        }
        if p != self.len() || p >= u32::MAX as usize {
            return Err(HnswError::OutOfOrder {
                want: self.len(),
                got: p,
            });
        }
        let p = p as u32;
        let level = self.level_of(p);
        self.codes.extend_from_slice(code);
        self.levels.push(level);
        self.l0.resize(self.l0.len() + self.m0, 0);
        self.l0_len.push(0);
        self.indeg.push(0);
        if level > 0 {
            self.upper.insert(p, vec![Vec::new(); usize::from(level)]);
        }
        let Some((entry, top)) = self.entry else {
            self.entry = Some((p, level));
            return Ok(vec![p]);
        };
        let q = code;
        let mut cur = (distance(q, self.code_of(entry)), entry);
        for layer in (level.saturating_add(1)..=top).rev() {
            cur = self.greedy(q, cur, layer);
        }
        let mut changed = vec![p];
        let mut starts = vec![cur];
        let mut seen = self.take_visited();
        for layer in (0..=level.min(top)).rev() {
            seen.reset(self.len());
            seen.first(p);
            let found =
                self.search_layer(q, &starts, self.cfg.ef_construction, layer, None, &mut seen);
            let mine = self.select(&found, self.cap(layer));
            self.set_list(p, layer, &mine);
            for &n in &mine {
                if self.link_back(n, p, layer) {
                    changed.push(n);
                }
            }
            if layer == 0 && self.indeg[p as usize] == 0 {
                changed.extend(self.adopt(p, &mine));
            }
            starts = found;
        }
        self.give_visited(seen);
        if level > top {
            self.entry = Some((p, level));
        }
        changed.sort_unstable();
        changed.dedup();
        Ok(changed)
    }

    /// Adds `p` to `n`'s list at `layer`, keeping it nearest first; a full list is re-selected with the heuristic
    /// over its members and `p`. At layer 0, room the heuristic leaves goes to candidates it dropped that would
    /// otherwise have no layer-0 in-link left (nearest first, exact duplicates of a kept member last). Returns
    /// whether the list changed.
    fn link_back(&mut self, n: u32, p: u32, layer: u8) -> bool {
        let cap = self.cap(layer);
        let base = self.code_of(n);
        let mut cands: Vec<Scored> = self
            .list(n, layer)
            .iter()
            .chain(std::iter::once(&p))
            .map(|&c| (distance(base, self.code_of(c)), c))
            .collect();
        cands.sort_unstable();
        cands.dedup_by_key(|c| c.1);
        let new: Vec<u32> = if cands.len() <= cap {
            cands.iter().map(|c| c.1).collect()
        } else {
            let mut kept = self.select(&cands, cap);
            if layer == 0 {
                for &(_, c) in &cands {
                    if kept.len() >= cap {
                        break;
                    }
                    // `p` has no in-link from this list yet; the others have one each. An exact duplicate of a
                    // kept member is passed over: the room goes to points with nothing like them in the list.
                    let last = self.indeg[c as usize] <= u32::from(c != p);
                    let code = self.code_of(c);
                    if last && !kept.contains(&c) && !kept.iter().any(|&r| self.code_of(r) == code)
                    {
                        kept.push(c);
                    }
                }
                kept = cands
                    .iter()
                    .map(|c| c.1)
                    .filter(|c| kept.contains(c))
                    .collect();
            }
            kept
        };
        if new.as_slice() == self.list(n, layer) {
            return false;
        }
        self.set_list(n, layer, &new);
        true
    }

    /// Gives `p`, which no layer-0 list names after its insert, an in-link: its nearest neighbour (in `mine`, its
    /// own list) whose farthest member has another in-link swaps that member for `p`. Returns the point whose
    /// list changed, if any.
    fn adopt(&mut self, p: u32, mine: &[u32]) -> Option<u32> {
        for &n in mine {
            let list = self.list(n, 0).to_vec();
            let Some(&far) = list.last() else {
                continue;
            };
            if list.len() < self.m0 || self.indeg[far as usize] >= 2 {
                let base = self.code_of(n);
                let mut cands: Vec<Scored> = list
                    .iter()
                    .filter(|&&x| list.len() < self.m0 || x != far)
                    .chain(std::iter::once(&p))
                    .map(|&c| (distance(base, self.code_of(c)), c))
                    .collect();
                cands.sort_unstable();
                let new: Vec<u32> = cands.into_iter().map(|c| c.1).collect();
                self.set_list(n, 0, &new);
                return Some(n);
            }
        }
        None
    }

    /// Writes the graph: a header, the levels, the codes (those of points `dead` accepts written as zeros, so a
    /// forgotten vector does not reach the disk), every list, and a BLAKE3 digest of all of it.
    pub fn write_to(&self, w: &mut dyn Write, dead: &dyn Fn(u32) -> bool) -> Result<(), HnswError> {
        let mut out = Hashing {
            w,
            h: blake3::Hasher::new(),
        };
        out.put(MAGIC)?;
        for v in [self.cfg.dim, self.cfg.m, self.cfg.ef_construction] {
            out.put(&(v as u32).to_le_bytes())?;
        }
        out.put(&(self.len() as u64).to_le_bytes())?;
        let (e, el) = self.entry.unwrap_or((u32::MAX, 0));
        out.put(&e.to_le_bytes())?;
        out.put(&[el])?;
        out.put(&self.levels)?;
        let zero = vec![0u8; self.cfg.dim];
        let mut buf: Vec<u8> = Vec::with_capacity(self.cfg.dim);
        for p in 0..self.len() as u32 {
            if dead(p) {
                out.put(&zero)?;
            } else {
                buf.clear();
                buf.extend(self.code_of(p).iter().map(|&c| c as u8));
                out.put(&buf)?;
            }
        }
        for p in 0..self.len() as u32 {
            for layer in 0..=self.levels[p as usize] {
                let l = self.list(p, layer);
                buf.clear();
                buf.extend_from_slice(&(l.len() as u16).to_le_bytes());
                for &n in l {
                    buf.extend_from_slice(&n.to_le_bytes());
                }
                out.put(&buf)?;
            }
        }
        let digest = out.h.finalize();
        out.w.write_all(digest.as_bytes())?;
        Ok(())
    }

    /// Reads a graph [`Hnsw::write_to`] wrote with parameters `cfg` and at most `max_points` points. Anything
    /// else (other parameters, a damaged or truncated file, a link out of range) is an error, never a panic.
    pub fn read_from(
        r: &mut dyn Read,
        cfg: HnswConfig,
        max_points: usize,
    ) -> Result<Self, HnswError> {
        let bad = |s: &str| HnswError::Format(s.to_string());
        let mut g = Hnsw::new(cfg);
        let mut inp = Hashing {
            w: r,
            h: blake3::Hasher::new(),
        };
        let mut magic = [0u8; 8];
        inp.get(&mut magic)?;
        if &magic != MAGIC {
            return Err(bad("not a Cairn HNSW graph"));
        }
        let mut want = Vec::new();
        for v in [g.cfg.dim, g.cfg.m, g.cfg.ef_construction] {
            want.push(v as u32);
        }
        for w in want {
            if inp.u32()? != w {
                return Err(bad("saved with other parameters"));
            }
        }
        let n = usize::try_from(inp.u64()?).map_err(|_| bad("point count"))?;
        if n > max_points || n >= u32::MAX as usize {
            return Err(bad("more points than rows"));
        }
        let entry = inp.u32()?;
        let mut el = [0u8; 1];
        inp.get(&mut el)?;
        let mut levels = vec![0u8; n];
        inp.get(&mut levels)?;
        if levels.iter().any(|&l| l >= MAX_LEVEL) {
            return Err(bad("level out of range"));
        }
        let mut codes = vec![0u8; n.checked_mul(g.cfg.dim).ok_or_else(|| bad("size"))?];
        inp.get(&mut codes)?;
        g.codes = codes.into_iter().map(|b| b as i8).collect();
        g.levels = levels;
        g.l0 = vec![0; n * g.m0];
        g.l0_len = vec![0; n];
        g.indeg = vec![0; n];
        for p in 0..n as u32 {
            let level = g.levels[p as usize];
            if level > 0 {
                g.upper.insert(p, vec![Vec::new(); usize::from(level)]);
            }
            for layer in 0..=level {
                let mut len = [0u8; 2];
                inp.get(&mut len)?;
                let len = usize::from(u16::from_le_bytes(len));
                if len > g.cap(layer) {
                    return Err(bad("list longer than M allows"));
                }
                let mut raw = vec![0u8; len * 4];
                inp.get(&mut raw)?;
                let list: Vec<u32> = raw
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                if list.iter().any(|&x| x as usize >= n || x == p) {
                    return Err(bad("link out of range"));
                }
                g.set_list(p, layer, &list);
            }
        }
        let digest = inp.h.finalize();
        let mut stored = [0u8; 32];
        inp.w.read_exact(&mut stored)?;
        if digest.as_bytes() != &stored {
            return Err(bad("digest mismatch"));
        }
        let mut extra = [0u8; 1];
        if inp.w.read(&mut extra)? != 0 {
            return Err(bad("bytes after the digest"));
        }
        g.entry = match (n, entry) {
            (0, u32::MAX) => None,
            (_, e) if (e as usize) < n => {
                let top = g.levels.iter().copied().max().unwrap_or(0);
                if g.levels[e as usize] != el[0] || el[0] != top {
                    return Err(bad("entry point is not at the top level"));
                }
                Some((e, el[0]))
            }
            _ => return Err(bad("entry point out of range")),
        };
        Ok(g)
    }
}

/// Tag at the head of a saved graph (format 1).
const MAGIC: &[u8; 8] = b"CHNSW\x00\x00\x01";

/// A reader or writer that hashes what passes through it.
struct Hashing<T> {
    w: T,
    h: blake3::Hasher,
}

impl Hashing<&mut dyn Write> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.h.update(b);
        self.w.write_all(b)
    }
}

impl Hashing<&mut dyn Read> {
    fn get(&mut self, b: &mut [u8]) -> std::io::Result<()> {
        self.w.read_exact(b)?;
        self.h.update(b);
        Ok(())
    }

    fn u32(&mut self) -> std::io::Result<u32> {
        let mut b = [0u8; 4];
        self.get(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> std::io::Result<u64> {
        let mut b = [0u8; 8];
        self.get(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit::quantise;

    const DIM: usize = 32;

    /// Deterministic unit vectors around 8 centres (xorshift).
    fn vectors(n: usize, seed: u64) -> Vec<Vec<i8>> {
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
                quantise(&v)
            })
            .collect()
    }

    fn cfg() -> HnswConfig {
        HnswConfig {
            m: 8,
            ef_construction: 64,
            dim: DIM,
        }
    }

    fn built(codes: &[Vec<i8>]) -> (Hnsw, Vec<Vec<u32>>) {
        let mut g = Hnsw::new(cfg());
        let changes = codes
            .iter()
            .enumerate()
            .map(|(i, c)| g.insert(c, i).unwrap())
            .collect();
        (g, changes)
    }

    fn exact(codes: &[Vec<i8>], q: &[i8], k: usize) -> Vec<u32> {
        let mut all: Vec<Scored> = codes
            .iter()
            .enumerate()
            .map(|(i, c)| (distance(q, c), i as u32))
            .collect();
        all.sort_unstable();
        all.into_iter().take(k).map(|s| s.1).collect()
    }

    #[test]
    fn finds_the_exact_top_ten_nearly_always() {
        let codes = vectors(4000, 11);
        let (g, _) = built(&codes);
        let (mut found, mut wanted) = (0, 0);
        for q in vectors(100, 97) {
            let truth = exact(&codes, &q, 10);
            let got: Vec<u32> = g
                .search(&q, 10, 64, None)
                .into_iter()
                .map(|h| h.0)
                .collect();
            assert!(got.windows(2).all(|w| w[0] != w[1]));
            wanted += truth.len();
            found += truth.iter().filter(|t| got.contains(t)).count();
        }
        let recall = found as f64 / wanted as f64;
        assert!(recall >= 0.98, "recall@10 {recall}");
    }

    /// The points an insert reports are exactly the points whose lists differ from before the insert.
    #[test]
    fn inserts_report_exactly_the_points_whose_lists_changed() {
        let codes = vectors(600, 5);
        let mut g = Hnsw::new(cfg());
        for (i, c) in codes.iter().enumerate() {
            let before: Vec<Option<PointLinks>> = (0..i as u32).map(|p| g.links(p)).collect();
            let changed = g.insert(c, i).unwrap();
            let mut differs: Vec<u32> = (0..i as u32)
                .filter(|&p| g.links(p) != before[p as usize])
                .collect();
            differs.push(i as u32);
            assert_eq!(changed, differs, "insert {i}");
        }
    }

    #[test]
    fn lists_are_bounded_nearest_first_and_never_name_their_owner() {
        let codes = vectors(1500, 3);
        let (g, _) = built(&codes);
        for p in 0..g.len() as u32 {
            let links = g.links(p).unwrap();
            assert_eq!(links.lists.len(), usize::from(links.level) + 1);
            for (layer, l) in links.lists.iter().enumerate() {
                assert!(l.len() <= g.cap(layer as u8));
                assert!(!l.contains(&p));
                let d: Vec<Scored> = l
                    .iter()
                    .map(|&n| (distance(g.code_of(p), g.code_of(n)), n))
                    .collect();
                assert!(d.windows(2).all(|w| w[0] < w[1]), "point {p} layer {layer}");
                // Upper-layer links only name points that reach that layer.
                assert!(l
                    .iter()
                    .all(|&n| usize::from(g.levels[n as usize]) >= layer));
            }
        }
        let (e, top) = g.entry().unwrap();
        assert_eq!(top, g.levels.iter().copied().max().unwrap());
        assert_eq!(g.levels[e as usize], top);
    }

    #[test]
    fn the_same_inserts_give_the_same_graph() {
        let codes = vectors(800, 21);
        let (a, ca) = built(&codes);
        let (b, cb) = built(&codes);
        assert_eq!(ca, cb);
        for p in 0..a.len() as u32 {
            assert_eq!(a.links(p), b.links(p));
        }
        // Levels follow the exponential law: about one point in M above layer 0.
        let above = a.levels.iter().filter(|&&l| l > 0).count();
        assert!((50..=150).contains(&above), "{above} of 800 above layer 0");
    }

    /// Near-duplicates (each vector three times): inserts keep every point's last layer-0 in-link, so none is
    /// orphaned and a search for a point's own vector returns it.
    #[test]
    fn near_duplicates_keep_an_in_link_and_are_found() {
        let base = vectors(1000, 5);
        let codes: Vec<Vec<i8>> = (0..3000).map(|i| base[i % 1000].clone()).collect();
        let mut g = Hnsw::new(HnswConfig {
            m: 16,
            ef_construction: 100,
            dim: DIM,
        });
        for (i, c) in codes.iter().enumerate() {
            g.insert(c, i).unwrap();
        }
        let entry = g.entry().unwrap().0;
        let orphans: Vec<u32> = (0..3000u32)
            .filter(|&p| p != entry && g.indeg[p as usize] == 0)
            .collect();
        assert!(orphans.is_empty(), "no layer-0 in-link: {orphans:?}");
        let recount: usize = (0..3000u32).map(|p| g.list(p, 0).len()).sum();
        assert_eq!(recount, g.indeg.iter().map(|&d| d as usize).sum::<usize>());
        let missed = (0..3000)
            .step_by(3)
            .filter(|&i| {
                !g.search(&codes[i], 10, 64, None)
                    .iter()
                    .any(|h| h.0 as usize == i)
            })
            .count();
        assert!(
            missed <= 5,
            "{missed} of 1000 not found by their own vector"
        );
    }

    #[test]
    fn filtered_search_returns_only_kept_points() {
        let codes = vectors(2000, 8);
        let (g, _) = built(&codes);
        let keep = |p: u32| p % 7 == 3;
        for q in vectors(20, 41) {
            let got = g.search(&q, 10, 64, Some(&keep));
            assert_eq!(got.len(), 10);
            assert!(got.iter().all(|h| keep(h.0)));
            let kept: Vec<Vec<i8>> = codes.clone();
            let mut truth: Vec<Scored> = kept
                .iter()
                .enumerate()
                .filter(|(i, _)| keep(*i as u32))
                .map(|(i, c)| (distance(&q, c), i as u32))
                .collect();
            truth.sort_unstable();
            let hits = truth
                .iter()
                .take(10)
                .filter(|t| got.iter().any(|h| h.0 == t.1))
                .count();
            assert!(hits >= 8, "{hits} of the filtered top 10");
        }
    }

    #[test]
    fn bad_inserts_are_refused_and_change_nothing() {
        let codes = vectors(10, 1);
        let (mut g, _) = built(&codes);
        assert!(matches!(
            g.insert(&codes[0], 3),
            Err(HnswError::OutOfOrder { want: 10, got: 3 })
        ));
        assert!(matches!(
            g.insert(&[0i8; 5], 10),
            Err(HnswError::Dimension { .. })
        ));
        assert_eq!(g.len(), 10);
        assert!(g.search(&[0i8; 5], 3, 10, None).is_empty());
    }

    #[test]
    fn saved_graphs_read_back_equal_and_damage_is_an_error() {
        let codes = vectors(700, 13);
        let (g, _) = built(&codes);
        let mut bytes = Vec::new();
        g.write_to(&mut bytes, &|p| p == 5).unwrap();
        let back = Hnsw::read_from(&mut bytes.as_slice(), cfg(), 700).unwrap();
        assert_eq!(back.len(), 700);
        assert_eq!(back.entry(), g.entry());
        for p in 0..700 {
            assert_eq!(back.links(p), g.links(p));
        }
        assert_eq!(back.code(5).unwrap(), &[0i8; DIM][..]);
        assert_eq!(back.code(6), g.code(6));
        // Other parameters, fewer rows than points, and every single-byte change or truncation: errors.
        let other = HnswConfig { m: 9, ..cfg() };
        assert!(Hnsw::read_from(&mut bytes.as_slice(), other, 700).is_err());
        assert!(Hnsw::read_from(&mut bytes.as_slice(), cfg(), 699).is_err());
        let step = (bytes.len() / 500).max(1);
        for at in (0..bytes.len()).step_by(step) {
            let mut b = bytes.clone();
            b[at] ^= 0x41;
            assert!(
                Hnsw::read_from(&mut b.as_slice(), cfg(), 700).is_err(),
                "byte {at}"
            );
            assert!(
                Hnsw::read_from(&mut &bytes[..at], cfg(), 700).is_err(),
                "cut {at}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Hnsw::read_from(&mut longer.as_slice(), cfg(), 700).is_err());
        // An empty graph round-trips too.
        let mut e = Vec::new();
        Hnsw::new(cfg()).write_to(&mut e, &|_| false).unwrap();
        assert!(Hnsw::read_from(&mut e.as_slice(), cfg(), 0)
            .unwrap()
            .is_empty());
    }
}
