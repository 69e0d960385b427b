//! Durable node state in one redb file: namespaces, per-point rows (vector, metadata, liveness), id and dedup
//! maps, the signed root chain, and blob deletions still to do. Every write commits with
//! `Durability::Immediate`, so a call acknowledged after `commit` survives a crash.

pub mod migrate;
pub mod rows;
pub mod terms;

use std::path::{Path, PathBuf};

use cairn_index::id::MemoryId;
use cairn_index::root::SignedRoot;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

pub use rows::PointRow;

/// Node-wide facts: format version and the model the vectors were made with.
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// namespace → next point number (u64).
const NAMESPACES: TableDefinition<&str, u64> = TableDefinition::new("namespaces");
/// (namespace, point) → [`PointRow`] bytes.
const POINTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("points");
/// (namespace, memory id) → point, for live memories only.
const MEMORIES: TableDefinition<(&str, [u8; 32]), u64> = TableDefinition::new("memories");
/// (namespace, dedup key) → memory id, for live memories only.
const DEDUP: TableDefinition<(&str, [u8; 32]), [u8; 32]> = TableDefinition::new("dedup");
/// (namespace, seq) → signed root bytes: each namespace's append-only root chain.
const ROOTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("roots");
/// blob hash → (): blobs of forgotten memories whose bytes may still be in the blob store.
const BLOB_DELETES: TableDefinition<[u8; 32], ()> = TableDefinition::new("blob_deletes");

/// (replica namespace, point) → u8(level) ‖ encode_lists: the owner's neighbour lists, which a replica cannot
/// rebuild itself.
const LISTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("replica_lists");
/// replica namespace → owner node id.
const FOLLOWS: TableDefinition<&str, [u8; 32]> = TableDefinition::new("follows");
/// peer node id → its direct addresses, comma-separated.
const PEERS: TableDefinition<[u8; 32], &str> = TableDefinition::new("peers");
/// alert number → alert bytes (evidence of equivocation etc.).
const ALERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("alerts");
/// (owner, namespace, seq, witness) → signature: cosignatures of roots by peers that verified them.
const COSIGS: TableDefinition<CosigKey, [u8; 64]> = TableDefinition::new("cosignatures");

/// memory id → pack hash[32] ‖ u32be(offset) ‖ u32be(len): where a record lives when it is not its own blob
/// but a slice of a record pack (a replica installed from a snapshot; see `engine::snapshot`).
const PACKED: TableDefinition<[u8; 32], [u8; 40]> = TableDefinition::new("packed_records");

/// namespace → u64be(seq) ‖ HashSeq hash[32] ‖ (u32be(page) fingerprint[32] page hash[32])*: the snapshot this
/// node keeps pinned and offers to peers, with its pages' fingerprints so a restarted node reuses unchanged pages.
const KEPT_SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("kept_snapshots");

/// revocation id → when it was revoked (ms since the Unix epoch): tokens carrying any of these ids are refused.
const REVOKED: TableDefinition<&[u8], u64> = TableDefinition::new("revoked_tokens");

/// (namespace prefix, peer node id) → when it was granted (ms): the owner's grants (`cairn share`).
const GRANTS: TableDefinition<(&str, [u8; 32]), u64> = TableDefinition::new("grants");

/// replica namespace → the newest owner-signed grant set seen (`cairn_index::grants`): who it may be re-served to.
const REPLICA_GRANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("replica_grants");

/// owned namespace → the external model its vectors come from (`u16be(dim) ‖ name`); absent for namespaces of the
/// node's own model.
const EXTERNAL_MODELS: TableDefinition<&str, &[u8]> = TableDefinition::new("external_models");

/// META key of the grants version: bumped by every share and unshare, so grant sets signed later win.
const GRANTS_VERSION: &str = "grants_version";

/// (owner, namespace, seq, witness).
type CosigKey<'a> = ([u8; 32], &'a str, u64, [u8; 32]);

/// A replica point's stored lists: (point, level, lists).
pub type StoredLists = (u64, u8, Vec<Vec<u32>>);

/// A kept snapshot's page: (page number, fingerprint of its ids, page hash).
pub type SnapshotPage = (u32, [u8; 32], [u8; 32]);

/// The snapshot a node keeps for a namespace: its root seq, HashSeq hash and pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptSnapshot {
    /// Root seq.
    pub seq: u64,
    /// HashSeq hash.
    pub hash: [u8; 32],
    /// Its record pages.
    pub pages: Vec<SnapshotPage>,
}

/// A cosignature to store, with the root it signs.
#[derive(Debug, Clone)]
pub struct CosigRow {
    /// The root's signer.
    pub owner: [u8; 32],
    /// Its namespace.
    pub ns: String,
    /// Its seq.
    pub seq: u64,
    /// The cosigning node.
    pub witness: [u8; 32],
    /// Its signature.
    pub sig: [u8; 64],
}

/// A cosignature: (witness node id, signature).
pub type Cosig = ([u8; 32], [u8; 64]);

/// One replicated point to store: number, row, level and lists.
pub struct ReplicaPoint<'a> {
    /// Point (graph node) number.
    pub point: u64,
    /// The row, without a vector (see `codes`).
    pub row: &'a PointRow,
    /// The owner's int8 vector of the point, stored as it came (read back as `code / 127`).
    pub codes: &'a [i8],
    /// HNSW level.
    pub level: u8,
    /// Neighbour lists, layers 0..=level.
    pub lists: &'a [Vec<u32>],
}

/// Where a record's bytes sit inside a pack blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackLoc {
    /// The pack's BLAKE3 hash (an iroh blob).
    pub pack: [u8; 32],
    /// Offset of the record's bytes in the pack.
    pub offset: u32,
    /// Length of the record's bytes.
    pub len: u32,
}

impl PackLoc {
    fn encode(&self) -> [u8; 40] {
        let mut o = [0u8; 40];
        o[..32].copy_from_slice(&self.pack);
        o[32..36].copy_from_slice(&self.offset.to_be_bytes());
        o[36..].copy_from_slice(&self.len.to_be_bytes());
        o
    }

    fn decode(b: &[u8; 40]) -> Self {
        let mut pack = [0u8; 32];
        pack.copy_from_slice(&b[..32]);
        let mut w = [0u8; 4];
        w.copy_from_slice(&b[32..36]);
        let offset = u32::from_be_bytes(w);
        w.copy_from_slice(&b[36..]);
        PackLoc {
            pack,
            offset,
            len: u32::from_be_bytes(w),
        }
    }
}

/// Everything one replica step writes, in one transaction.
#[derive(Clone, Copy)]
pub struct StepWrite<'a> {
    /// The step ships the whole graph (replace every row).
    pub full: bool,
    /// Changed points.
    pub points: &'a [ReplicaPoint<'a>],
    /// The namespace's next point number.
    pub next_point: u64,
    /// New roots.
    pub roots: &'a [SignedRoot],
    /// Blobs (records or packs) whose bytes are to be deleted.
    pub deletes: &'a [[u8; 32]],
    /// Memories the owner forgot in this step (their rows arrive as empty tombstones, so their ids come here).
    pub forgotten: &'a [MemoryId],
    /// Record locations in packs.
    pub packs: &'a PackChanges,
}

/// Changes to record locations that commit with a replica step.
#[derive(Debug, Default)]
pub struct PackChanges {
    /// New or moved locations.
    pub set: Vec<(MemoryId, PackLoc)>,
    /// Records no longer in any pack (forgotten).
    pub remove: Vec<MemoryId>,
}

/// The version of this file's layout.
const FORMAT: &str = "1";

/// Failures of the state database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed (I/O, corruption, ...).
    #[error("state database: {0}")]
    Db(#[from] redb::Error),
    /// A row did not parse.
    #[error("state database: {0}")]
    Corrupt(#[from] rows::CorruptRow),
    /// The data dir holds vectors of another model; mixing them would make recall meaningless.
    #[error(
        "this data dir was written with embedding model {stored}, but the node runs {running}; \
         use the same model or another --data-dir"
    )]
    ModelMismatch {
        /// The model recorded in the data dir.
        stored: String,
        /// The model this node loaded.
        running: String,
    },
    /// The node key in the data dir is not the key that signed this state (a damaged or swapped key file).
    #[error(
        "the node key in this data dir has id {running}, but its state was signed by {stored}; \
         restore the original node.key (a new key would be a new identity that peers and clients do not trust)"
    )]
    NodeIdMismatch {
        /// The node id recorded in the state.
        stored: String,
        /// The id of the key file found.
        running: String,
    },
    /// The data dir was written by an incompatible version of Cairn.
    #[error(
        "state database format {0} is not supported by this version of cairn (expects {FORMAT})"
    )]
    Format(String),
}

fn vacuum_path(path: &Path) -> PathBuf {
    path.with_extension("redb.vacuum")
}

fn dberr<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(e.into())
}

/// A memory to insert: its point number and row.
pub struct NewPoint {
    /// The point number in the namespace's HNSW graph.
    pub point: u64,
    /// The row.
    pub row: PointRow,
}

/// A memory to forget.
pub struct Forgotten {
    /// Its point number.
    pub point: u64,
    /// Its row as it was (alive; its vector may be left out, as rows in memory hold none).
    pub row: PointRow,
}

/// The rows of `gone` become tombstones, their lookups go, their blobs are queued for deletion, and the next
/// vacuum is due (inside the caller's transaction).
fn forget_in(tx: &redb::WriteTransaction, ns: &str, gone: &[Forgotten]) -> Result<(), StoreError> {
    let mut pts = tx.open_table(POINTS).map_err(dberr)?;
    let mut mem = tx.open_table(MEMORIES).map_err(dberr)?;
    let mut ded = tx.open_table(DEDUP).map_err(dberr)?;
    let mut del = tx.open_table(BLOB_DELETES).map_err(dberr)?;
    for g in gone {
        let row = &g.row;
        // Rows in memory hold no vector; the tombstone keeps the dimension of the row it replaces on disk (a
        // restart re-inserts tombstones into the graph as zero vectors of that dimension).
        let dim = match pts.get((ns, g.point)).map_err(dberr)? {
            Some(v) => PointRow::decode(v.value())?.vector.len(),
            None => row.vector.len(),
        };
        let tomb = PointRow::tombstone(dim);
        pts.insert((ns, g.point), tomb.encode().as_slice())
            .map_err(dberr)?;
        mem.remove((ns, row.id.0)).map_err(dberr)?;
        // Only this memory's own entry: a batch that replaced a memory and then stored the same content again
        // under a new id has already pointed the entry at the new one.
        let own = ded
            .get((ns, row.dedup))
            .map_err(dberr)?
            .is_some_and(|v| v.value() == row.id.0);
        if own {
            ded.remove((ns, row.dedup)).map_err(dberr)?;
        }
        del.insert(row.id.0, ()).map_err(dberr)?;
    }
    migrate::unstage_in(tx, ns, gone.iter().map(|g| g.row.id.0))?;
    tx.open_table(META)
        .map_err(dberr)?
        .insert(SCRUB_DUE, "1")
        .map_err(dberr)?;
    Ok(())
}

/// The redb-backed state.
pub struct State {
    /// The open database. Every method holds the read side for its whole transaction; [`State::vacuum`] takes
    /// the write side to swap in a rewritten file.
    db: std::sync::RwLock<Database>,
    /// Where the file lives (for the vacuum's rewrite).
    path: PathBuf,
    /// Bytes of page cache the database may hold (also for the file a vacuum swaps in).
    cache_bytes: usize,
}

/// redb's own default page cache, kept by [`State::open`] (tests, tools).
const DEFAULT_CACHE_BYTES: usize = 1 << 30;

/// META key present while forgotten data may linger in pages redb freed: cleared by [`State::vacuum`].
const SCRUB_DUE: &str = "scrub_due";

/// What one [`State::vacuum`] did.
#[derive(Debug, Clone, Copy)]
pub struct Vacuumed {
    /// File size before, bytes.
    pub before: u64,
    /// File size after, bytes.
    pub after: u64,
}

/// Copies every entry of one table from `r` into `w` (a missing source table is empty); returns its name.
fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    r: &redb::ReadTransaction,
    w: &redb::WriteTransaction,
    def: TableDefinition<K, V>,
    skip: impl Fn(&K::SelfType<'_>) -> bool,
) -> Result<String, StoreError> {
    let src = match r.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(def.name().to_owned()),
        Err(e) => return Err(dberr(e)),
    };
    let mut dst = w.open_table(def).map_err(dberr)?;
    for e in src.iter().map_err(dberr)? {
        let (k, v) = e.map_err(dberr)?;
        if skip(&k.value()) {
            continue;
        }
        dst.insert(k.value(), v.value()).map_err(dberr)?;
    }
    Ok(def.name().to_owned())
}

impl State {
    /// Opens (or creates) the state file and checks it belongs to `model`, with redb's default cache.
    pub fn open(path: &Path, model: &str) -> Result<Self, StoreError> {
        Self::open_with_cache(path, model, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the state file with a page cache of at most `cache_bytes` (`--state-cache-mb`), and
    /// checks it belongs to `model`.
    pub fn open_with_cache(
        path: &Path,
        model: &str,
        cache_bytes: usize,
    ) -> Result<Self, StoreError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(dberr)?;
        let tx = db.begin_write().map_err(dberr)?;
        {
            let mut meta = tx.open_table(META).map_err(dberr)?;
            let format = meta
                .get("format")
                .map_err(dberr)?
                .map(|g| g.value().to_owned());
            match format {
                Some(f) if f != FORMAT => return Err(StoreError::Format(f)),
                Some(_) => {}
                None => {
                    meta.insert("format", FORMAT).map_err(dberr)?;
                }
            }
            let stored = meta
                .get("model")
                .map_err(dberr)?
                .map(|g| g.value().to_owned());
            match stored {
                Some(m) if m != model => {
                    return Err(StoreError::ModelMismatch {
                        stored: m,
                        running: model.to_owned(),
                    })
                }
                Some(_) => {}
                None => {
                    meta.insert("model", model).map_err(dberr)?;
                }
            }
            // Create every table so read transactions never meet a missing one.
            tx.open_table(NAMESPACES).map_err(dberr)?;
            tx.open_table(POINTS).map_err(dberr)?;
            tx.open_table(MEMORIES).map_err(dberr)?;
            tx.open_table(DEDUP).map_err(dberr)?;
            tx.open_table(BLOB_DELETES).map_err(dberr)?;
            tx.open_table(ROOTS).map_err(dberr)?;
            tx.open_table(LISTS).map_err(dberr)?;
            tx.open_table(FOLLOWS).map_err(dberr)?;
            tx.open_table(PEERS).map_err(dberr)?;
            tx.open_table(ALERTS).map_err(dberr)?;
            tx.open_table(COSIGS).map_err(dberr)?;
            tx.open_table(REVOKED).map_err(dberr)?;
            tx.open_table(GRANTS).map_err(dberr)?;
            tx.open_table(REPLICA_GRANTS).map_err(dberr)?;
            tx.open_table(EXTERNAL_MODELS).map_err(dberr)?;
            tx.open_table(migrate::NS_MODELS).map_err(dberr)?;
            tx.open_table(migrate::MIGRATIONS).map_err(dberr)?;
            tx.open_table(migrate::STAGED).map_err(dberr)?;
        }
        tx.commit().map_err(dberr)?;
        // A vacuum that died before its rename leaves its unfinished copy behind.
        let _ = std::fs::remove_file(vacuum_path(path));
        Ok(State {
            db: std::sync::RwLock::new(db),
            path: path.to_owned(),
            cache_bytes,
        })
    }

    /// Bytes the state file's page cache holds now (bounded by `--state-cache-mb`).
    pub fn cache_used(&self) -> usize {
        self.db.read().map_or(0, |db| db.cache_stats().used_bytes())
    }

    fn db(&self) -> Result<std::sync::RwLockReadGuard<'_, Database>, StoreError> {
        self.db.read().map_err(|_| {
            StoreError::Db(redb::Error::Corrupted(
                "state handle poisoned by a panic".into(),
            ))
        })
    }

    /// True while a forget's old bytes may still sit in pages of the file that redb freed but did not
    /// overwrite (set in the forget's own transaction, cleared by [`State::vacuum`]).
    pub fn scrub_due(&self) -> Result<bool, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let meta = tx.open_table(META).map_err(dberr)?;
        Ok(meta.get(SCRUB_DUE).map_err(dberr)?.is_some())
    }

    /// Overwrites the rows of tombstones written before forgetting scrubbed rows (older data dirs) with empty
    /// tombstones, and returns the rows as they now are.
    pub fn scrub_tombstones(
        &self,
        ns: &str,
        mut rows: Vec<PointRow>,
    ) -> Result<Vec<PointRow>, StoreError> {
        let stale: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].needs_scrub()).collect();
        if stale.is_empty() {
            return Ok(rows);
        }
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        {
            let mut pts = tx.open_table(POINTS).map_err(dberr)?;
            for &i in &stale {
                rows[i] = PointRow::tombstone(rows[i].vector.len());
                pts.insert((ns, i as u64), rows[i].encode().as_slice())
                    .map_err(dberr)?;
            }
            tx.open_table(META)
                .map_err(dberr)?
                .insert(SCRUB_DUE, "1")
                .map_err(dberr)?;
        }
        tx.commit().map_err(dberr)?;
        tracing::info!(
            namespace = ns,
            tombstones = stale.len(),
            "scrubbed tombstones written by an older version"
        );
        Ok(rows)
    }

    /// Stores the index terms of rows written before the lexical index existed (`(point, row)` with `lex`
    /// filled in), in one transaction.
    pub fn fill_terms(&self, ns: &str, rows: &[(usize, PointRow)]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        {
            let mut pts = tx.open_table(POINTS).map_err(dberr)?;
            for (i, r) in rows {
                pts.insert((ns, *i as u64), r.encode().as_slice())
                    .map_err(dberr)?;
            }
        }
        tx.commit().map_err(dberr)?;
        Ok(())
    }

    /// Rewrites the whole state into a fresh file and swaps it in (write, fsync, rename), so bytes of forgotten
    /// memories that redb freed but never overwrote leave the disk with the old file. Blocks every other state
    /// call meanwhile: its cost grows with the state (see docs/BENCHMARKS.md).
    pub fn vacuum(&self) -> Result<Vacuumed, StoreError> {
        let io = |e: std::io::Error| StoreError::Db(redb::Error::Io(e));
        let mut db = self.db.write().map_err(|_| {
            StoreError::Db(redb::Error::Corrupted(
                "state handle poisoned by a panic".into(),
            ))
        })?;
        let before = std::fs::metadata(&self.path).map_err(io)?.len();
        let tmp = vacuum_path(&self.path);
        let _ = std::fs::remove_file(&tmp);
        let fresh = Database::builder()
            .set_cache_size(self.cache_bytes)
            .create(&tmp)
            .map_err(dberr)?;
        let copied = (|| -> Result<(), StoreError> {
            let r = db.begin_read().map_err(dberr)?;
            let w = fresh.begin_write().map_err(dberr)?;
            let copied = [
                copy_table(&r, &w, META, |k| *k == SCRUB_DUE)?,
                copy_table(&r, &w, NAMESPACES, |_| false)?,
                copy_table(&r, &w, POINTS, |_| false)?,
                copy_table(&r, &w, MEMORIES, |_| false)?,
                copy_table(&r, &w, DEDUP, |_| false)?,
                copy_table(&r, &w, ROOTS, |_| false)?,
                copy_table(&r, &w, BLOB_DELETES, |_| false)?,
                copy_table(&r, &w, LISTS, |_| false)?,
                copy_table(&r, &w, FOLLOWS, |_| false)?,
                copy_table(&r, &w, PEERS, |_| false)?,
                copy_table(&r, &w, ALERTS, |_| false)?,
                copy_table(&r, &w, COSIGS, |_| false)?,
                copy_table(&r, &w, PACKED, |_| false)?,
                copy_table(&r, &w, KEPT_SNAPSHOTS, |_| false)?,
                copy_table(&r, &w, REVOKED, |_| false)?,
                copy_table(&r, &w, GRANTS, |_| false)?,
                copy_table(&r, &w, REPLICA_GRANTS, |_| false)?,
                copy_table(&r, &w, EXTERNAL_MODELS, |_| false)?,
                copy_table(&r, &w, migrate::NS_MODELS, |_| false)?,
                copy_table(&r, &w, migrate::MIGRATIONS, |_| false)?,
                copy_table(&r, &w, migrate::STAGED, |_| false)?,
            ];
            // A table not copied above would be lost with the old file: refuse rather than drop it.
            for t in r.list_tables().map_err(dberr)? {
                if !copied.iter().any(|c| c == t.name()) {
                    return Err(StoreError::Db(redb::Error::Corrupted(format!(
                        "vacuum does not know table {:?}",
                        t.name()
                    ))));
                }
            }
            w.commit().map_err(dberr)?;
            Ok(())
        })();
        if let Err(e) = copied.and_then(|()| std::fs::rename(&tmp, &self.path).map_err(io)) {
            drop(fresh);
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        if let Some(parent) = self.path.parent() {
            let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
        }
        // The old handle closes here; its file is already unlinked.
        *db = fresh;
        let after = std::fs::metadata(&self.path).map_err(io)?.len();
        Ok(Vacuumed { before, after })
    }

    /// Records the node id that signs this state on first use, and refuses a key with another id later.
    pub fn bind_node_id(&self, id: &str) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        {
            let mut meta = tx.open_table(META).map_err(dberr)?;
            let stored = meta
                .get("node_id")
                .map_err(dberr)?
                .map(|g| g.value().to_owned());
            match stored {
                Some(s) if s != id => {
                    return Err(StoreError::NodeIdMismatch {
                        stored: s,
                        running: id.to_owned(),
                    })
                }
                Some(_) => return Ok(()),
                None => {
                    meta.insert("node_id", id).map_err(dberr)?;
                }
            }
        }
        tx.commit().map_err(dberr)?;
        Ok(())
    }

    /// Every namespace with its next point number.
    pub fn namespaces(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(NAMESPACES).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(dberr)? {
            let (k, v) = item.map_err(dberr)?;
            out.push((k.value().to_owned(), v.value()));
        }
        Ok(out)
    }

    /// Every blob the rows refer to: the records of live memories (all namespaces) and the packs that hold
    /// records. A tagged record blob outside this set is left over from a write that never committed.
    pub fn referenced_blobs(&self) -> Result<std::collections::HashSet<[u8; 32]>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let mut out = std::collections::HashSet::new();
        let mem = tx.open_table(MEMORIES).map_err(dberr)?;
        for item in mem.iter().map_err(dberr)? {
            let (k, _) = item.map_err(dberr)?;
            out.insert(k.value().1);
        }
        match tx.open_table(PACKED) {
            Ok(t) => {
                for item in t.iter().map_err(dberr)? {
                    let (_, v) = item.map_err(dberr)?;
                    out.insert(PackLoc::decode(&v.value()).pack);
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(dberr(e)),
        }
        Ok(out)
    }

    /// All point rows of a namespace, in point order (index = point number).
    pub fn load_points(&self, ns: &str) -> Result<Vec<PointRow>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(POINTS).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.range((ns, 0u64)..=(ns, u64::MAX)).map_err(dberr)? {
            let (k, v) = item.map_err(dberr)?;
            if k.value().1 != out.len() as u64 {
                return Err(StoreError::Corrupt(rows::CorruptRow(
                    "gap in point numbers",
                )));
            }
            out.push(PointRow::decode(v.value())?);
        }
        Ok(out)
    }

    /// The live memory with this dedup key, if any.
    pub fn find_dedup(
        &self,
        ns: &str,
        keys: &[[u8; 32]],
    ) -> Result<Vec<Option<MemoryId>>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(DEDUP).map_err(dberr)?;
        keys.iter()
            .map(|k| Ok(t.get((ns, *k)).map_err(dberr)?.map(|g| MemoryId(g.value()))))
            .collect()
    }

    /// Durably inserts new memories of one namespace and advances its next point number.
    pub fn insert(&self, ns: &str, points: &[NewPoint], next_point: u64) -> Result<(), StoreError> {
        self.write_points(ns, points, next_point, &[])
    }

    /// Durably stores new points and forgets `gone` in ONE transaction (a keyed Remember that replaces memories:
    /// a crash leaves either both done or neither).
    pub fn write_points(
        &self,
        ns: &str,
        points: &[NewPoint],
        next_point: u64,
        gone: &[Forgotten],
    ) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        {
            let mut nst = tx.open_table(NAMESPACES).map_err(dberr)?;
            let mut pts = tx.open_table(POINTS).map_err(dberr)?;
            let mut mem = tx.open_table(MEMORIES).map_err(dberr)?;
            let mut ded = tx.open_table(DEDUP).map_err(dberr)?;
            nst.insert(ns, next_point).map_err(dberr)?;
            for p in points {
                pts.insert((ns, p.point), p.row.encode().as_slice())
                    .map_err(dberr)?;
                mem.insert((ns, p.row.id.0), p.point).map_err(dberr)?;
                ded.insert((ns, p.row.dedup), p.row.id.0).map_err(dberr)?;
            }
        }
        if !gone.is_empty() {
            forget_in(&tx, ns, gone)?;
        }
        tx.commit().map_err(dberr)?;
        Ok(())
    }

    /// Durably forgets memories: overwrites their rows with empty tombstones, removes them from every lookup and
    /// queues their blobs for deletion. (The old row bytes can linger in pages redb freed until [`State::vacuum`].)
    pub fn forget(&self, ns: &str, gone: &[Forgotten]) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        forget_in(&tx, ns, gone)?;
        tx.commit().map_err(dberr)?;
        Ok(())
    }

    /// Appends a signed root to a namespace's chain (durably; refuses to overwrite a seq).
    pub fn put_root(&self, ns: &str, root: &SignedRoot) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        {
            let mut t = tx.open_table(ROOTS).map_err(dberr)?;
            let seq = root.record.seq;
            if t.get((ns, seq)).map_err(dberr)?.is_some() {
                return Err(StoreError::Corrupt(rows::CorruptRow(
                    "root seq already used",
                )));
            }
            t.insert((ns, seq), root.encode().as_slice())
                .map_err(dberr)?;
        }
        tx.commit().map_err(dberr)?;
        Ok(())
    }

    /// The newest root of a namespace.
    pub fn latest_root(&self, ns: &str) -> Result<Option<SignedRoot>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(ROOTS).map_err(dberr)?;
        let last = t
            .range((ns, 0u64)..=(ns, u64::MAX))
            .map_err(dberr)?
            .next_back();
        match last {
            Some(item) => {
                let (_, v) = item.map_err(dberr)?;
                Ok(Some(
                    SignedRoot::decode(v.value()).map_err(|_| rows::CorruptRow("root"))?,
                ))
            }
            None => Ok(None),
        }
    }

    /// The root with a given seq.
    pub fn root_at(&self, ns: &str, seq: u64) -> Result<Option<SignedRoot>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(ROOTS).map_err(dberr)?;
        match t.get((ns, seq)).map_err(dberr)? {
            Some(v) => Ok(Some(
                SignedRoot::decode(v.value()).map_err(|_| rows::CorruptRow("root"))?,
            )),
            None => Ok(None),
        }
    }

    /// Blob hashes whose deletion from the blob store is still to be done.
    pub fn pending_blob_deletes(&self) -> Result<Vec<[u8; 32]>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(BLOB_DELETES).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(dberr)? {
            out.push(item.map_err(dberr)?.0.value());
        }
        Ok(out)
    }

    /// Marks blob deletions as done.
    pub fn blob_deletes_done(&self, hashes: &[[u8; 32]]) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        {
            let mut t = tx.open_table(BLOB_DELETES).map_err(dberr)?;
            for h in hashes {
                t.remove(*h).map_err(dberr)?;
            }
        }
        tx.commit().map_err(dberr)?;
        Ok(())
    }

    /// Replaces all points of a namespace by `live` (renumbered 0..), dropping tombstones: the durable half of a
    /// compaction.
    pub fn compact(&self, ns: &str, live: &[PointRow]) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        rewrite_points_in(&tx, ns, live)?;
        tx.commit().map_err(dberr)?;
        Ok(())
    }
}

/// Replaces every point of `ns` by `live`, renumbered 0.. (compaction, migration).
fn rewrite_points_in(
    tx: &redb::WriteTransaction,
    ns: &str,
    live: &[PointRow],
) -> Result<(), StoreError> {
    let mut nst = tx.open_table(NAMESPACES).map_err(dberr)?;
    let mut pts = tx.open_table(POINTS).map_err(dberr)?;
    let mut mem = tx.open_table(MEMORIES).map_err(dberr)?;
    pts.retain_in((ns, 0u64)..=(ns, u64::MAX), |_, _| false)
        .map_err(dberr)?;
    for (i, row) in live.iter().enumerate() {
        pts.insert((ns, i as u64), row.encode().as_slice())
            .map_err(dberr)?;
        mem.insert((ns, row.id.0), i as u64).map_err(dberr)?;
    }
    nst.insert(ns, live.len() as u64).map_err(dberr)?;
    Ok(())
}

fn encode_level_lists(level: u8, lists: &[Vec<u32>]) -> Vec<u8> {
    let mut b = vec![level];
    b.extend_from_slice(&cairn_index::commit::encode_lists(lists));
    b
}

fn decode_level_lists(b: &[u8]) -> Result<(u8, Vec<Vec<u32>>), StoreError> {
    let bad = || StoreError::Corrupt(rows::CorruptRow("replica lists"));
    let (&level, mut r) = b.split_first().ok_or_else(bad)?;
    let mut lists = Vec::with_capacity(level as usize + 1);
    for _ in 0..=level {
        if r.len() < 2 {
            return Err(bad());
        }
        let c = u16::from_be_bytes([r[0], r[1]]) as usize;
        r = &r[2..];
        if r.len() < c * 4 {
            return Err(bad());
        }
        lists.push(
            r[..c * 4]
                .chunks_exact(4)
                .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
                .collect(),
        );
        r = &r[c * 4..];
    }
    if !r.is_empty() {
        return Err(bad());
    }
    Ok((level, lists))
}

/// Namespaces whose vectors the caller brings.
impl State {
    /// Every namespace created with an external model, with that model.
    pub fn external_models(
        &self,
    ) -> Result<Vec<(String, cairn_index::model::ExternalModel)>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(EXTERNAL_MODELS).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(dberr)? {
            let (k, v) = item.map_err(dberr)?;
            let v = v.value();
            let model = v
                .split_first_chunk::<2>()
                .and_then(|(d, name)| {
                    let name = std::str::from_utf8(name).ok()?;
                    cairn_index::model::ExternalModel::new(name, u16::from_be_bytes(*d)).ok()
                })
                .ok_or_else(|| {
                    StoreError::Db(redb::Error::Corrupted(format!(
                        "external model of namespace {:?} does not decode",
                        k.value()
                    )))
                })?;
            out.push((k.value().to_owned(), model));
        }
        Ok(out)
    }

    /// Registers `ns` (which must not exist yet) as a namespace of an external model.
    pub fn create_external(
        &self,
        ns: &str,
        model: &cairn_index::model::ExternalModel,
    ) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        {
            put_external(&tx, ns, model)?;
            let mut nst = tx.open_table(NAMESPACES).map_err(dberr)?;
            if nst.get(ns).map_err(dberr)?.is_none() {
                nst.insert(ns, 0u64).map_err(dberr)?;
            }
        }
        tx.commit().map_err(dberr)?;
        Ok(())
    }
}

/// Writes `ns`'s row in `external_models` (`u16be(dim) ‖ name`).
fn put_external(
    tx: &redb::WriteTransaction,
    ns: &str,
    model: &cairn_index::model::ExternalModel,
) -> Result<(), StoreError> {
    let mut v = model.dim.to_be_bytes().to_vec();
    v.extend_from_slice(model.name.as_bytes());
    tx.open_table(EXTERNAL_MODELS)
        .map_err(dberr)?
        .insert(ns, v.as_slice())
        .map_err(dberr)?;
    Ok(())
}

/// Replication state: followed namespaces, peers, replicated graphs, alerts and cosignatures.
impl State {
    /// Every followed namespace with its owner.
    pub fn follows(&self) -> Result<Vec<(String, [u8; 32])>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(FOLLOWS).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(dberr)? {
            let (k, v) = item.map_err(dberr)?;
            out.push((k.value().to_owned(), v.value()));
        }
        Ok(out)
    }

    /// Records that `ns` is a replica of `owner`'s namespace (and registers the namespace), with the external
    /// model its roots must commit when the follower named one.
    pub fn set_follow(
        &self,
        ns: &str,
        owner: [u8; 32],
        model: Option<&cairn_index::model::ExternalModel>,
    ) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        {
            tx.open_table(FOLLOWS)
                .map_err(dberr)?
                .insert(ns, owner)
                .map_err(dberr)?;
            if let Some(model) = model {
                put_external(&tx, ns, model)?;
            }
            let mut nst = tx.open_table(NAMESPACES).map_err(dberr)?;
            if nst.get(ns).map_err(dberr)?.is_none() {
                nst.insert(ns, 0u64).map_err(dberr)?;
            }
        }
        tx.commit().map_err(dberr)?;
        Ok(())
    }

    /// Known peers and their addresses.
    pub fn peers(&self) -> Result<Vec<([u8; 32], String)>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(PEERS).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(dberr)? {
            let (k, v) = item.map_err(dberr)?;
            out.push((k.value(), v.value().to_owned()));
        }
        Ok(out)
    }

    /// Every revoked token id.
    pub fn revoked(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(REVOKED).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(dberr)? {
            out.push(item.map_err(dberr)?.0.value().to_vec());
        }
        Ok(out)
    }

    /// Records a revoked token id (durable when this returns).
    pub fn revoke(&self, id: &[u8], at_ms: u64) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        tx.open_table(REVOKED)
            .map_err(dberr)?
            .insert(id, at_ms)
            .map_err(dberr)?;
        tx.commit().map_err(dberr)?;
        Ok(())
    }

    /// Deletes everything of replica namespace `ns` (followed from `owner`) in one transaction: points, lists,
    /// memories, dedup rows, roots, cosignatures, pack locations, the kept snapshot and the follow itself. The
    /// record and pack blobs go to the blob delete queue. Marks the file for a vacuum. Returns the number of
    /// points dropped.
    pub fn drop_namespace(&self, ns: &str, owner: [u8; 32]) -> Result<u64, StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        let dropped;
        {
            let mut mem = tx.open_table(MEMORIES).map_err(dberr)?;
            let mut pk = tx.open_table(PACKED).map_err(dberr)?;
            let mut del = tx.open_table(BLOB_DELETES).map_err(dberr)?;
            let mut ids = Vec::new();
            for item in mem
                .range((ns, [0u8; 32])..=(ns, [0xffu8; 32]))
                .map_err(dberr)?
            {
                ids.push(item.map_err(dberr)?.0.value().1);
            }
            let mut packs = std::collections::BTreeSet::new();
            for id in &ids {
                del.insert(*id, ()).map_err(dberr)?;
                if let Some(loc) = pk.remove(*id).map_err(dberr)? {
                    packs.insert(PackLoc::decode(&loc.value()).pack);
                }
            }
            for p in packs {
                del.insert(p, ()).map_err(dberr)?;
            }
            mem.retain_in((ns, [0u8; 32])..=(ns, [0xffu8; 32]), |_, _| false)
                .map_err(dberr)?;
            let mut pts = tx.open_table(POINTS).map_err(dberr)?;
            dropped = pts
                .range((ns, 0u64)..=(ns, u64::MAX))
                .map_err(dberr)?
                .count() as u64;
            pts.retain_in((ns, 0u64)..=(ns, u64::MAX), |_, _| false)
                .map_err(dberr)?;
            tx.open_table(LISTS)
                .map_err(dberr)?
                .retain_in((ns, 0u64)..=(ns, u64::MAX), |_, _| false)
                .map_err(dberr)?;
            tx.open_table(DEDUP)
                .map_err(dberr)?
                .retain_in((ns, [0u8; 32])..=(ns, [0xffu8; 32]), |_, _| false)
                .map_err(dberr)?;
            tx.open_table(ROOTS)
                .map_err(dberr)?
                .retain_in((ns, 0u64)..=(ns, u64::MAX), |_, _| false)
                .map_err(dberr)?;
            tx.open_table(COSIGS)
                .map_err(dberr)?
                .retain_in(
                    (owner, ns, 0u64, [0u8; 32])..=(owner, ns, u64::MAX, [0xffu8; 32]),
                    |_, _| false,
                )
                .map_err(dberr)?;
            tx.open_table(NAMESPACES)
                .map_err(dberr)?
                .remove(ns)
                .map_err(dberr)?;
            tx.open_table(FOLLOWS)
                .map_err(dberr)?
                .remove(ns)
                .map_err(dberr)?;
            tx.open_table(EXTERNAL_MODELS)
                .map_err(dberr)?
                .remove(ns)
                .map_err(dberr)?;
            tx.open_table(KEPT_SNAPSHOTS)
                .map_err(dberr)?
                .remove(ns)
                .map_err(dberr)?;
            migrate::drop_in(&tx, ns)?;
            tx.open_table(REPLICA_GRANTS)
                .map_err(dberr)?
                .remove(ns)
                .map_err(dberr)?;
            tx.open_table(META)
                .map_err(dberr)?
                .insert(SCRUB_DUE, "1")
                .map_err(dberr)?;
        }
        tx.commit().map_err(dberr)?;
        Ok(dropped)
    }

    /// The owner's grants: (prefix, peer) pairs.
    pub fn grants(&self) -> Result<Vec<(String, [u8; 32])>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(GRANTS).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(dberr)? {
            let (k, _) = item.map_err(dberr)?;
            let (p, peer) = k.value();
            out.push((p.to_owned(), peer));
        }
        Ok(out)
    }

    /// The grants version (0 before any share).
    pub fn grants_version(&self) -> Result<u64, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let meta = tx.open_table(META).map_err(dberr)?;
        let v = meta
            .get(GRANTS_VERSION)
            .map_err(dberr)?
            .and_then(|g| g.value().parse().ok())
            .unwrap_or(0);
        Ok(v)
    }

    /// Adds (`on`) or removes a grant and bumps the grants version, in one transaction. Returns whether
    /// anything changed and the new version.
    pub fn set_grant(
        &self,
        prefix: &str,
        peer: [u8; 32],
        on: bool,
        now_ms: u64,
    ) -> Result<(bool, u64), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        let (changed, version);
        {
            let mut g = tx.open_table(GRANTS).map_err(dberr)?;
            changed = if on {
                g.insert((prefix, peer), now_ms).map_err(dberr)?.is_none()
            } else {
                g.remove((prefix, peer)).map_err(dberr)?.is_some()
            };
            let mut meta = tx.open_table(META).map_err(dberr)?;
            let old: u64 = meta
                .get(GRANTS_VERSION)
                .map_err(dberr)?
                .and_then(|v| v.value().parse().ok())
                .unwrap_or(0);
            // The clock when it is ahead, so a data dir restored from an older copy still signs newer sets.
            version = (old + 1).max(now_ms);
            meta.insert(GRANTS_VERSION, version.to_string().as_str())
                .map_err(dberr)?;
        }
        tx.commit().map_err(dberr)?;
        Ok((changed, version))
    }

    /// The newest grant set stored for a replica namespace.
    pub fn replica_grants(&self, ns: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(REPLICA_GRANTS).map_err(dberr)?;
        Ok(t.get(ns).map_err(dberr)?.map(|v| v.value().to_vec()))
    }

    /// Stores a replica namespace's grant set (the caller checked it is newer and signed by the owner).
    pub fn set_replica_grants(&self, ns: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        tx.open_table(REPLICA_GRANTS)
            .map_err(dberr)?
            .insert(ns, bytes)
            .map_err(dberr)?;
        tx.commit().map_err(dberr)?;
        Ok(())
    }

    /// Which of `ids` are live memories of `ns` here.
    pub fn has_memories(&self, ns: &str, ids: &[[u8; 32]]) -> Result<Vec<bool>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(MEMORIES).map_err(dberr)?;
        ids.iter()
            .map(|id| Ok(t.get((ns, *id)).map_err(dberr)?.is_some()))
            .collect()
    }

    /// Removes a peer; false if it was not one.
    pub fn remove_peer(&self, id: [u8; 32]) -> Result<bool, StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        let was = tx
            .open_table(PEERS)
            .map_err(dberr)?
            .remove(id)
            .map_err(dberr)?
            .is_some();
        tx.commit().map_err(dberr)?;
        Ok(was)
    }

    /// Adds or updates a peer.
    pub fn put_peer(&self, id: [u8; 32], addrs: &str) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        tx.open_table(PEERS)
            .map_err(dberr)?
            .insert(id, addrs)
            .map_err(dberr)?;
        tx.commit().map_err(dberr)?;
        Ok(())
    }

    /// A replica namespace's stored lists, by point.
    pub fn load_lists(&self, ns: &str) -> Result<Vec<StoredLists>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(LISTS).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.range((ns, 0u64)..=(ns, u64::MAX)).map_err(dberr)? {
            let (k, v) = item.map_err(dberr)?;
            let (level, lists) = decode_level_lists(v.value())?;
            out.push((k.value().1, level, lists));
        }
        Ok(out)
    }

    /// Roots of a namespace with seq in `from..=to`, oldest first, at most `limit`.
    pub fn roots_range(
        &self,
        ns: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<SignedRoot>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(ROOTS).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.range((ns, from)..=(ns, to)).map_err(dberr)?.take(limit) {
            let (_, v) = item.map_err(dberr)?;
            out.push(SignedRoot::decode(v.value()).map_err(|_| rows::CorruptRow("root"))?);
        }
        Ok(out)
    }

    /// Durably applies a verified replica step in one transaction: points, lists and id map (all replaced when
    /// `full`), the new roots, and blob deletions for memories the owner forgot.
    pub fn apply_replica(&self, ns: &str, w: &StepWrite<'_>) -> Result<(), StoreError> {
        let StepWrite {
            full,
            points,
            next_point,
            roots,
            deletes,
            forgotten,
            packs,
        } = *w;
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        {
            let mut pk = tx.open_table(PACKED).map_err(dberr)?;
            for id in &packs.remove {
                pk.remove(id.0).map_err(dberr)?;
            }
            let mut set: Vec<&(MemoryId, PackLoc)> = packs.set.iter().collect();
            set.sort_unstable_by_key(|(id, _)| id.0);
            for (id, loc) in set {
                pk.insert(id.0, loc.encode()).map_err(dberr)?;
            }
            let mut nst = tx.open_table(NAMESPACES).map_err(dberr)?;
            let mut pts = tx.open_table(POINTS).map_err(dberr)?;
            let mut lst = tx.open_table(LISTS).map_err(dberr)?;
            let mut mem = tx.open_table(MEMORIES).map_err(dberr)?;
            let mut rts = tx.open_table(ROOTS).map_err(dberr)?;
            let mut del = tx.open_table(BLOB_DELETES).map_err(dberr)?;
            if full {
                pts.retain_in((ns, 0u64)..=(ns, u64::MAX), |_, _| false)
                    .map_err(dberr)?;
                lst.retain_in((ns, 0u64)..=(ns, u64::MAX), |_, _| false)
                    .map_err(dberr)?;
                mem.retain_in((ns, [0u8; 32])..=(ns, [0xffu8; 32]), |_, _| false)
                    .map_err(dberr)?;
            }
            nst.insert(ns, next_point).map_err(dberr)?;
            for p in points {
                pts.insert((ns, p.point), p.row.encode_codes(p.codes).as_slice())
                    .map_err(dberr)?;
                lst.insert(
                    (ns, p.point),
                    encode_level_lists(p.level, p.lists).as_slice(),
                )
                .map_err(dberr)?;
            }
            // Ids are random: inserting them in key order keeps the B-tree writes local (much faster at 100k).
            let mut by_id: Vec<&ReplicaPoint> = points.iter().collect();
            by_id.sort_unstable_by_key(|p| p.row.id.0);
            for p in by_id.into_iter().filter(|p| p.row.alive) {
                mem.insert((ns, p.row.id.0), p.point).map_err(dberr)?;
            }
            for id in forgotten {
                mem.remove((ns, id.0)).map_err(dberr)?;
            }
            for r in roots {
                let seq = r.record.seq;
                if rts.get((ns, seq)).map_err(dberr)?.is_none() {
                    rts.insert((ns, seq), r.encode().as_slice())
                        .map_err(dberr)?;
                }
            }
            for h in deletes {
                del.insert(*h, ()).map_err(dberr)?;
            }
            // Rows of forgotten memories were overwritten (or whole tables replaced): their old bytes may linger.
            if full || !deletes.is_empty() || points.iter().any(|p| !p.row.alive) {
                tx.open_table(META)
                    .map_err(dberr)?
                    .insert(SCRUB_DUE, "1")
                    .map_err(dberr)?;
            }
        }
        tx.commit().map_err(dberr)?;
        Ok(())
    }

    /// Where records live in packs (None: not in a pack).
    pub fn pack_locs(&self, ids: &[MemoryId]) -> Result<Vec<Option<PackLoc>>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = match tx.open_table(PACKED) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![None; ids.len()]),
            Err(e) => return Err(dberr(e)),
        };
        ids.iter()
            .map(|id| {
                Ok(t.get(id.0)
                    .map_err(dberr)?
                    .map(|v| PackLoc::decode(&v.value())))
            })
            .collect()
    }

    /// The snapshot kept for `ns`.
    pub fn snapshot(&self, ns: &str) -> Result<Option<KeptSnapshot>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = match tx.open_table(KEPT_SNAPSHOTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(dberr(e)),
        };
        let Some(v) = t.get(ns).map_err(dberr)? else {
            return Ok(None);
        };
        let v = v.value();
        let bad = || StoreError::Corrupt(rows::CorruptRow("kept snapshot"));
        if v.len() < 40 || (v.len() - 40) % 68 != 0 {
            return Err(bad());
        }
        let arr = |b: &[u8]| -> [u8; 32] {
            let mut o = [0u8; 32];
            o.copy_from_slice(b);
            o
        };
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&v[..8]);
        let pages = v[40..]
            .chunks_exact(68)
            .map(|c| {
                (
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                    arr(&c[4..36]),
                    arr(&c[36..68]),
                )
            })
            .collect();
        Ok(Some(KeptSnapshot {
            seq: u64::from_be_bytes(seq),
            hash: arr(&v[8..40]),
            pages,
        }))
    }

    /// Records (or with None, clears) the snapshot kept for `ns`.
    pub fn set_snapshot(&self, ns: &str, snap: Option<&KeptSnapshot>) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        {
            let mut t = tx.open_table(KEPT_SNAPSHOTS).map_err(dberr)?;
            match snap {
                Some(k) => {
                    let mut v = Vec::with_capacity(40 + k.pages.len() * 68);
                    v.extend_from_slice(&k.seq.to_be_bytes());
                    v.extend_from_slice(&k.hash);
                    for (page, fp, hash) in &k.pages {
                        v.extend_from_slice(&page.to_be_bytes());
                        v.extend_from_slice(fp);
                        v.extend_from_slice(hash);
                    }
                    t.insert(ns, v.as_slice()).map_err(dberr)?;
                }
                None => {
                    t.remove(ns).map_err(dberr)?;
                }
            }
        }
        tx.commit().map_err(dberr)?;
        Ok(())
    }

    /// Stores an alert; returns its number.
    pub fn put_alert(&self, bytes: &[u8]) -> Result<u64, StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        let n;
        {
            let mut t = tx.open_table(ALERTS).map_err(dberr)?;
            n = t.last().map_err(dberr)?.map_or(0, |(k, _)| k.value() + 1);
            t.insert(n, bytes).map_err(dberr)?;
        }
        tx.commit().map_err(dberr)?;
        Ok(n)
    }

    /// Every alert, oldest first.
    pub fn alerts(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(ALERTS).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(dberr)? {
            out.push(item.map_err(dberr)?.1.value().to_vec());
        }
        Ok(out)
    }

    /// Stores a verified cosignature (idempotent).
    pub fn put_cosig(
        &self,
        owner: [u8; 32],
        ns: &str,
        seq: u64,
        witness: [u8; 32],
        sig: [u8; 64],
    ) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        tx.open_table(COSIGS)
            .map_err(dberr)?
            .insert((owner, ns, seq, witness), sig)
            .map_err(dberr)?;
        tx.commit().map_err(dberr)?;
        Ok(())
    }

    /// Stores many cosignatures in one transaction (one fsync), skipping those already held.
    pub fn put_cosigs(&self, rows: &[CosigRow]) -> Result<usize, StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(dberr)?;
        let mut added = 0;
        {
            let mut t = tx.open_table(COSIGS).map_err(dberr)?;
            for r in rows {
                let key = (r.owner, r.ns.as_str(), r.seq, r.witness);
                if t.get(key).map_err(dberr)?.is_none() {
                    t.insert(key, r.sig).map_err(dberr)?;
                    added += 1;
                }
            }
        }
        tx.commit().map_err(dberr)?;
        Ok(added)
    }

    /// True if this cosignature's (owner, namespace, seq, witness) is held already.
    pub fn has_cosig(
        &self,
        owner: [u8; 32],
        ns: &str,
        seq: u64,
        witness: [u8; 32],
    ) -> Result<bool, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(COSIGS).map_err(dberr)?;
        Ok(t.get((owner, ns, seq, witness)).map_err(dberr)?.is_some())
    }

    /// Cosignatures of one root: (witness, signature).
    pub fn cosigs(&self, owner: [u8; 32], ns: &str, seq: u64) -> Result<Vec<Cosig>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(dberr)?;
        let t = tx.open_table(COSIGS).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t
            .range((owner, ns, seq, [0u8; 32])..=(owner, ns, seq, [0xffu8; 32]))
            .map_err(dberr)?
        {
            let (k, v) = item.map_err(dberr)?;
            out.push((k.value().3, v.value()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--state-cache-mb`: reading a state file much larger than the cap keeps the page cache within it (redb's
    /// default would keep every page read, up to 1 GiB), before and after a vacuum swaps in a new file.
    #[test]
    fn the_page_cache_stays_within_its_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fill = |st: &State| {
            for batch in 0..8u64 {
                let points: Vec<NewPoint> = (0..500u64)
                    .map(|i| {
                        let n = batch * 500 + i;
                        NewPoint {
                            point: n,
                            row: PointRow {
                                id: MemoryId(*blake3::hash(&n.to_be_bytes()).as_bytes()),
                                created_at: n,
                                alive: true,
                                dedup: [0; 32],
                                vector: vec![0.5; 384],
                                metadata: cairn_index::record::Metadata::new(),
                                lex: None,
                            },
                        }
                    })
                    .collect();
                st.insert("ns", &points, (batch + 1) * 500).expect("insert");
            }
            assert_eq!(st.load_points("ns").expect("load").len(), 4000);
        };
        let cap = 1 << 20;
        let small =
            State::open_with_cache(&dir.path().join("small.redb"), "model", cap).expect("open");
        fill(&small);
        assert!(
            small.cache_used() <= cap,
            "cache holds {} bytes, cap {cap}",
            small.cache_used()
        );
        small.vacuum().expect("vacuum");
        assert_eq!(small.load_points("ns").expect("load").len(), 4000);
        assert!(
            small.cache_used() <= cap,
            "cache over its cap after a vacuum"
        );
        // Without the cap the same reads keep several times more (what the test is about).
        let big = State::open(&dir.path().join("big.redb"), "model").expect("open");
        fill(&big);
        assert!(
            big.cache_used() > 4 * cap,
            "an uncapped cache holds only {} bytes: the test no longer shows the cap's effect",
            big.cache_used()
        );
    }

    /// A vacuum leaves none of a forgotten row's bytes in the file, keeps everything else, and clears the
    /// scrub mark.
    #[test]
    fn a_vacuum_removes_forgotten_bytes_and_keeps_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let st = State::open(&path, "model").expect("open");
        let row = |i: u8, secret: &str| PointRow {
            id: MemoryId([i; 32]),
            created_at: 1000 + u64::from(i),
            alive: true,
            dedup: [i.wrapping_add(100); 32],
            vector: vec![0.25; 16],
            metadata: [("secret".to_owned(), secret.to_owned())].into(),
            lex: None,
        };
        let points: Vec<NewPoint> = (0..50u8)
            .map(|i| NewPoint {
                point: u64::from(i),
                row: row(i, &format!("value-{i:03}-zq")),
            })
            .collect();
        st.insert("ns", &points, 50).expect("insert");
        let file_has = |needle: &[u8]| {
            std::fs::read(&path)
                .expect("read")
                .windows(needle.len())
                .any(|w| w == needle)
        };
        assert!(file_has(b"value-007-zq"));
        assert!(!st.scrub_due().expect("due"));
        st.forget(
            "ns",
            // As the node passes it: the row as held in memory, without its vector.
            &[Forgotten {
                point: 7,
                row: PointRow {
                    vector: Vec::new(),
                    ..row(7, "value-007-zq")
                },
            }],
        )
        .expect("forget");
        assert!(st.scrub_due().expect("due"));
        // What the vacuum is for: redb freed the old row's page but did not overwrite it.
        assert!(
            file_has(b"value-007-zq"),
            "the forgotten row's bytes already left the file (the test no longer shows the vacuum's effect)"
        );
        // (The node deletes the record blob right after the forget; until then the id stays queued.)
        st.blob_deletes_done(&[[7; 32]]).expect("blob deleted");
        st.vacuum().expect("vacuum");
        assert!(
            !file_has(b"value-007-zq"),
            "forgotten metadata survived the vacuum"
        );
        assert!(!file_has(&[7; 32]), "forgotten id survived the vacuum");
        assert!(file_has(b"value-008-zq"));
        assert!(!st.scrub_due().expect("due"));
        let back = st.load_points("ns").expect("load");
        assert_eq!(back.len(), 50);
        // The tombstone keeps the dimension of the row on disk (a restart re-inserts it into the graph).
        assert_eq!(back[7], PointRow::tombstone(16));
        assert_eq!(back[8], row(8, "value-008-zq"));
        // The swapped-in file is the one a restart opens, and a copy left by a crashed vacuum is removed.
        drop(st);
        std::fs::write(vacuum_path(&path), b"half a copy").expect("leftover");
        let st = State::open(&path, "model").expect("reopen");
        assert_eq!(
            st.load_points("ns").expect("load")[9],
            row(9, "value-009-zq")
        );
        assert!(
            !vacuum_path(&path).exists(),
            "a crashed vacuum's copy was left"
        );

        // A table the vacuum does not copy makes it refuse, and the state stays as it was.
        {
            let db = st.db().expect("db");
            let tx = db.begin_write().expect("tx");
            let t: TableDefinition<u64, u64> = TableDefinition::new("from_a_newer_version");
            tx.open_table(t)
                .expect("table")
                .insert(1, 2)
                .expect("insert");
            tx.commit().expect("commit");
        }
        assert!(
            st.vacuum().is_err(),
            "a vacuum dropped a table it does not know"
        );
        assert_eq!(
            st.load_points("ns").expect("load")[9],
            row(9, "value-009-zq")
        );
        assert!(!vacuum_path(&path).exists());
    }

    #[test]
    fn kept_snapshots_and_pack_locations_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let st = State::open(&dir.path().join("s.redb"), "model").expect("open");
        assert_eq!(st.snapshot("ns").expect("read"), None);
        let k = KeptSnapshot {
            seq: 7,
            hash: [1; 32],
            pages: vec![(0, [2; 32], [3; 32]), (4, [5; 32], [6; 32])],
        };
        st.set_snapshot("ns", Some(&k)).expect("write");
        assert_eq!(st.snapshot("ns").expect("read"), Some(k));
        st.set_snapshot("ns", None).expect("clear");
        assert_eq!(st.snapshot("ns").expect("read"), None);

        let (a, b) = (MemoryId([8; 32]), MemoryId([9; 32]));
        assert_eq!(st.pack_locs(&[a]).expect("locs"), vec![None]);
        let loc = PackLoc {
            pack: [4; 32],
            offset: 10,
            len: 20,
        };
        let packs = PackChanges {
            set: vec![(a, loc), (b, loc)],
            remove: Vec::new(),
        };
        let w = StepWrite {
            full: false,
            points: &[],
            next_point: 0,
            roots: &[],
            deletes: &[],
            forgotten: &[],
            packs: &packs,
        };
        st.apply_replica("ns", &w).expect("apply");
        assert_eq!(
            st.pack_locs(&[a, b]).expect("locs"),
            vec![Some(loc), Some(loc)]
        );
        let packs = PackChanges {
            set: Vec::new(),
            remove: vec![a],
        };
        st.apply_replica("ns", &StepWrite { packs: &packs, ..w })
            .expect("apply");
        assert_eq!(st.pack_locs(&[a, b]).expect("locs"), vec![None, Some(loc)]);
    }
}
