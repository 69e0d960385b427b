//! Memory record bytes as content-addressed iroh blobs (iroh-blobs `FsStore` under `<data-dir>/blobs`).
//!
//! Each blob is pinned by a tag named after its hash; forgetting deletes the tag and garbage collection
//! unlinks the bytes within about a second. Blobs are stored as separate files (no inlining into the store's
//! database) so that deleted bytes really leave the disk instead of lingering in freed database pages, and
//! every file is fsync'd before a write is acknowledged.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_index::id::MemoryId;
use iroh_blobs::store::fs::options::{BatchOptions, InlineOptions, Options, PathOptions};
use iroh_blobs::store::fs::FsStore;
use iroh_blobs::store::{GcConfig, ProtectCb, ProtectOutcome};
use iroh_blobs::Hash;

/// Threads reading record files at once in [`Blobs::get_many`].
const READERS: usize = 8;

/// How long a collection pass waits for writers and downloads in progress before it gives up until the next
/// interval: the longest a pass can hold writes back.
const GC_LOCK_WAIT: Duration = Duration::from_millis(100);

/// Blob store failures.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The store could not be opened.
    #[error("cannot open blob store at {path}: {reason}")]
    Open {
        /// Store directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A store operation failed.
    #[error("blob store: {0}")]
    Op(String),
    /// Stored bytes did not hash to the id asked for.
    #[error("blob {0} is missing or damaged")]
    Missing(MemoryId),
}

fn op<E: std::fmt::Display>(e: E) -> BlobError {
    BlobError::Op(e.to_string())
}

/// The node's blob store.
#[derive(Clone, Debug)]
pub struct Blobs {
    store: FsStore,
    paths: PathOptions,
    /// Set when tags were deleted; a garbage collection run only happens when it is set (a run lists every tag
    /// and blob, which is not free at 100k memories).
    gc_wanted: Arc<AtomicBool>,
    /// Blobs being downloaded and not yet tagged (a replica step in progress): garbage collection keeps them.
    in_flight: Arc<std::sync::Mutex<HashMap<Hash, usize>>>,
    /// Held shared by writers, exclusively by a collection pass (see `open`).
    gc_lock: Arc<tokio::sync::RwLock<()>>,
}

/// Keeps blobs safe from garbage collection until dropped (downloads not yet tagged).
pub struct Hold {
    hashes: Vec<Hash>,
    in_flight: Arc<std::sync::Mutex<HashMap<Hash, usize>>>,
    /// No collection pass runs while a download is held.
    _no_gc: tokio::sync::OwnedRwLockReadGuard<()>,
}

impl Hold {
    /// Also keeps `ids` from collection (without taking the collection lock again, which could wait forever
    /// behind a pass that waits for this hold).
    pub fn extend(&mut self, ids: &[MemoryId]) {
        if let Ok(mut m) = self.in_flight.lock() {
            for id in ids {
                let h = Hash::from_bytes(id.0);
                *m.entry(h).or_default() += 1;
                self.hashes.push(h);
            }
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Ok(mut m) = self.in_flight.lock() {
            for h in &self.hashes {
                if let Some(c) = m.get_mut(h) {
                    *c -= 1;
                    if *c == 0 {
                        m.remove(h);
                    }
                }
            }
        }
    }
}

impl Blobs {
    /// Opens (or creates) the store in `dir`, with garbage collection every `gc_interval`.
    pub async fn open(dir: &Path, gc_interval: Duration) -> Result<Self, BlobError> {
        std::fs::create_dir_all(dir).map_err(|e| BlobError::Open {
            path: dir.to_owned(),
            reason: e.to_string(),
        })?;
        let paths = PathOptions::new(dir);
        // Collect once at start-up (deletions interrupted by a crash), then only after deletions.
        let gc_wanted = Arc::new(AtomicBool::new(true));
        let flag = gc_wanted.clone();
        let in_flight: Arc<std::sync::Mutex<HashMap<Hash, usize>>> = Arc::default();
        let held = in_flight.clone();
        // iroh-blobs collects in two steps: mark (the tags and temp tags now), then sweep (every blob not marked).
        // A blob written between the two would be swept, tag or not. So a pass holds `gc_lock` exclusively from
        // its protect callback until the next callback (passes run one after another), and every writer holds it
        // shared while it adds and tags blobs.
        let gc_lock = Arc::new(tokio::sync::RwLock::new(()));
        let pass_guard: Arc<std::sync::Mutex<Option<tokio::sync::OwnedRwLockWriteGuard<()>>>> =
            Arc::default();
        let (lock, slot) = (gc_lock.clone(), pass_guard.clone());
        let again = gc_wanted.clone();
        let protect: ProtectCb = Arc::new(move |live| {
            // The previous pass is over: let writers in again.
            if let Ok(mut g) = slot.lock() {
                g.take();
            }
            let run = flag.swap(false, Ordering::SeqCst);
            if let Ok(m) = held.lock() {
                live.extend(m.keys().copied());
            }
            let (lock, slot, again) = (lock.clone(), slot.clone(), again.clone());
            Box::pin(async move {
                if !run {
                    return ProtectOutcome::Abort;
                }
                // Writers queue behind a waiting pass (the lock is fair), so a pass waits only briefly: behind a
                // long download it gives up and tries again at the next interval, rather than stall every write
                // until the download ends (or forever, if a holder wanted the lock again).
                let Ok(g) = tokio::time::timeout(GC_LOCK_WAIT, lock.write_owned()).await else {
                    again.store(true, Ordering::SeqCst);
                    metrics::counter!("cairn_blob_gc_deferred_total").increment(1);
                    return ProtectOutcome::Abort;
                };
                metrics::counter!("cairn_blob_gc_passes_total").increment(1);
                match slot.lock() {
                    Ok(mut s) => {
                        *s = Some(g);
                        ProtectOutcome::Continue
                    }
                    Err(_) => ProtectOutcome::Abort,
                }
            })
        });
        let opts = Options {
            path: paths.clone(),
            // Record bytes always live in their own files (so forgetting really deletes them); outboards (hashes
            // only) may sit in the store's database, which saves a file per blob.
            inline: InlineOptions {
                max_data_inlined: 0,
                max_outboard_inlined: 16 * 1024,
            },
            batch: BatchOptions::default(),
            gc: Some(GcConfig {
                interval: gc_interval,
                add_protected: Some(protect),
            }),
        };
        let store = FsStore::load_with_opts(dir.join("blobs.db"), opts)
            .await
            .map_err(|e| BlobError::Open {
                path: dir.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Blobs {
            store,
            paths,
            gc_wanted,
            in_flight,
            gc_lock,
        })
    }

    /// Protects blobs about to be downloaded from garbage collection until the returned guard is dropped.
    pub async fn hold(&self, ids: &[MemoryId]) -> Hold {
        let no_gc = self.gc_lock.clone().read_owned().await;
        let hashes: Vec<Hash> = ids.iter().map(|id| Hash::from_bytes(id.0)).collect();
        if let Ok(mut m) = self.in_flight.lock() {
            for h in &hashes {
                *m.entry(*h).or_default() += 1;
            }
        }
        Hold {
            hashes,
            in_flight: self.in_flight.clone(),
            _no_gc: no_gc,
        }
    }

    /// Durably stores records (canonical bytes); returns once bytes and tags are on disk.
    pub async fn put_all(&self, records: &[Bytes]) -> Result<(), BlobError> {
        // No collection pass between adding a blob and its tag being on disk.
        let _no_gc = self.gc_lock.read().await;
        self.add_tagged(records).await.map(|_| ())
    }

    /// Adds blobs, each pinned by its tag, and makes them durable. Callers keep collection out meanwhile.
    async fn add_tagged(&self, items: &[Bytes]) -> Result<Vec<Hash>, BlobError> {
        let mut hashes = Vec::with_capacity(items.len());
        for bytes in items {
            let hash = Hash::new(bytes);
            self.store
                .add_bytes(bytes.clone())
                .with_named_tag(tag_name(&hash))
                .await
                .map_err(op)?;
            hashes.push(hash);
        }
        self.make_durable(&hashes).await?;
        Ok(hashes)
    }

    /// Pins blobs that arrived by download (records or record packs) with their tags and makes them durable.
    pub async fn keep(&self, hashes: &[[u8; 32]]) -> Result<(), BlobError> {
        let hashes: Vec<Hash> = hashes.iter().map(|h| Hash::from_bytes(*h)).collect();
        for h in &hashes {
            self.store.tags().set(tag_name(h), *h).await.map_err(op)?;
        }
        self.make_durable(&hashes).await
    }

    async fn make_durable(&self, hashes: &[Hash]) -> Result<(), BlobError> {
        let files: Vec<PathBuf> = hashes.iter().map(|h| self.paths.data_path(h)).collect();
        self.store.sync_db().await.map_err(op)?;
        // The store renames data files into place without fsync: make them durable ourselves.
        let data_dir = self.paths.data_path.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if files.len() > 64 {
                // Many files (a replica catching up): one syncfs(2) flushes them all.
                let dir = std::fs::File::open(&data_dir)?;
                // SAFETY: syncfs on a valid open file descriptor.
                #[allow(unsafe_code)]
                let rc = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                return Ok(());
            }
            for f in &files {
                match std::fs::File::open(f) {
                    Ok(file) => file.sync_data()?,
                    // Content that was already present may sit elsewhere (e.g. a prior identical add).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            std::fs::File::open(&data_dir)?.sync_all()
        })
        .await
        .map_err(op)?
        .map_err(op)?;
        Ok(())
    }

    /// Adds a file this node offers to peers (a model file) pinned under `tag`, unless the tag already pins a
    /// complete blob; returns the file's BLAKE3 hash. The tag's prefix (`model-`) keeps it apart from record and
    /// snapshot tags, so no record clean-up touches it.
    pub async fn add_file_tagged(&self, path: &Path, tag: &str) -> Result<[u8; 32], BlobError> {
        if let Some(t) = self.store.tags().get(tag).await.map_err(op)? {
            if self.has_raw(*t.hash.as_bytes()).await {
                return Ok(*t.hash.as_bytes());
            }
        }
        // No collection pass between adding the blob and its tag being on disk.
        let _no_gc = self.gc_lock.read().await;
        let added = self
            .store
            .add_path(path)
            .with_named_tag(tag)
            .await
            .map_err(op)?;
        self.store.sync_db().await.map_err(op)?;
        Ok(*added.hash.as_bytes())
    }

    /// Where the store keeps a blob's bytes (a separate file per blob; see [`Blobs::open`]).
    pub fn data_path(&self, hash: [u8; 32]) -> PathBuf {
        self.paths.data_path(&Hash::from_bytes(hash))
    }

    /// True if the store holds the complete blob of a record.
    pub async fn has(&self, id: &MemoryId) -> bool {
        self.has_raw(id.0).await
    }

    /// The underlying store (served to peers and filled by downloads).
    pub fn store(&self) -> &FsStore {
        &self.store
    }

    /// The bytes of a record, checked against its id: read straight from its data file like [`Blobs::get_many`],
    /// else asked of the store.
    pub async fn get(&self, id: &MemoryId) -> Result<Bytes, BlobError> {
        self.get_many(std::slice::from_ref(id))
            .await?
            .into_iter()
            .next()
            .ok_or(BlobError::Missing(*id))
    }

    /// A record asked of the store. Many reads of one blob at once can overflow the store's per-blob inbox, so a
    /// failed read is tried again a few times (about 0.3 s in all) before the record counts as missing.
    async fn get_from_store(&self, id: &MemoryId) -> Result<Bytes, BlobError> {
        for attempt in 0..5u64 {
            if let Ok(bytes) = self.get_raw(id.0).await {
                if MemoryId::of_bytes(&bytes) == *id {
                    return Ok(bytes);
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(20 * (attempt + 1))).await;
        }
        Err(BlobError::Missing(*id))
    }

    /// Many records at once, in order, each checked against its id: read straight from the store's data files
    /// (records are never inlined, see [`Blobs::open`]) on a blocking thread, which is much faster than one
    /// store request per record; a record not found that way is asked of the store.
    pub async fn get_many(&self, ids: &[MemoryId]) -> Result<Vec<Bytes>, BlobError> {
        let paths: Vec<PathBuf> = ids
            .iter()
            .map(|id| self.paths.data_path(&Hash::from_bytes(id.0)))
            .collect();
        let want = ids.to_vec();
        let direct: Vec<Option<Bytes>> = tokio::task::spawn_blocking(move || {
            let read = |(p, id): (&PathBuf, &MemoryId)| {
                std::fs::read(p)
                    .ok()
                    .filter(|b| MemoryId::of_bytes(b) == *id)
                    .map(Bytes::from)
            };
            // Several readers: files not in the page cache are read from disk, where more requests in flight
            // help even on few cores.
            let per = paths.len().div_ceil(READERS).max(1);
            std::thread::scope(|s| {
                let handles: Vec<_> = paths
                    .chunks(per)
                    .zip(want.chunks(per))
                    .map(|(ps, ws)| {
                        (
                            ps.len(),
                            s.spawn(move || ps.iter().zip(ws).map(read).collect::<Vec<_>>()),
                        )
                    })
                    .collect();
                // A reader that failed yields nothing for its share: those records go to the store instead.
                handles
                    .into_iter()
                    .flat_map(|(n, h)| h.join().unwrap_or_else(|_| vec![None; n]))
                    .collect()
            })
        })
        .await
        .map_err(op)?;
        let mut out = Vec::with_capacity(ids.len());
        for (got, id) in direct.into_iter().zip(ids) {
            match got {
                Some(b) => out.push(b),
                None => out.push(self.get_from_store(id).await?),
            }
        }
        Ok(out)
    }

    /// Records inside packs, each given as (pack, offset, length, record id), in order: read straight from the
    /// packs' data files on one blocking thread (a Recall's hits are then one hand-off, not one store request
    /// each), every record checked against its id; a record not read that way is asked of the store.
    pub async fn read_records(
        &self,
        wanted: &[([u8; 32], u32, u32, MemoryId)],
    ) -> Result<Vec<Bytes>, BlobError> {
        let jobs: Vec<(PathBuf, u64, usize, MemoryId)> = wanted
            .iter()
            .map(|&(pack, offset, len, id)| {
                (
                    self.paths.data_path(&Hash::from_bytes(pack)),
                    u64::from(offset),
                    len as usize,
                    id,
                )
            })
            .collect();
        let direct: Vec<Option<Bytes>> = tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut open: Option<(PathBuf, std::fs::File)> = None;
            jobs.into_iter()
                .map(|(path, offset, len, id)| {
                    if open.as_ref().is_none_or(|(p, _)| *p != path) {
                        open = std::fs::File::open(&path).ok().map(|f| (path, f));
                    }
                    let (_, f) = open.as_ref()?;
                    let mut buf = vec![0u8; len];
                    f.read_exact_at(&mut buf, offset).ok()?;
                    (MemoryId::of_bytes(&buf) == id).then(|| Bytes::from(buf))
                })
                .collect()
        })
        .await
        .map_err(op)?;
        let mut out = Vec::with_capacity(wanted.len());
        for (got, &(pack, offset, len, id)) in direct.into_iter().zip(wanted) {
            match got {
                Some(b) => out.push(b),
                None => {
                    let rec = self.read_range(pack, offset, len).await?;
                    if MemoryId::of_bytes(&rec) != id {
                        return Err(BlobError::Missing(id));
                    }
                    out.push(rec);
                }
            }
        }
        Ok(out)
    }

    /// A slice of a blob (a record inside a pack).
    pub async fn read_range(
        &self,
        hash: [u8; 32],
        offset: u32,
        len: u32,
    ) -> Result<Bytes, BlobError> {
        let start = u64::from(offset);
        let mut last = None;
        // Retried like [`Blobs::get_from_store`]: many reads of one pack at once can overflow its inbox.
        for attempt in 0..5u64 {
            match self
                .store
                .blobs()
                .export_ranges(Hash::from_bytes(hash), start..start + u64::from(len))
                .concatenate()
                .await
            {
                Ok(bytes) => return Ok(Bytes::from(bytes)),
                Err(e) => last = Some(op(e)),
            }
            tokio::time::sleep(Duration::from_millis(20 * (attempt + 1))).await;
        }
        Err(last.unwrap_or_else(|| BlobError::Op("range read failed".into())))
    }

    /// A reader of a blob's bytes (a large snapshot part, decoded piece by piece instead of read whole).
    pub fn reader(&self, hash: [u8; 32]) -> iroh_blobs::api::blobs::BlobReader {
        self.store.blobs().reader(Hash::from_bytes(hash))
    }

    /// The whole bytes of any blob (packs and snapshot parts; unchecked beyond the store's own BLAKE3).
    pub async fn get_raw(&self, hash: [u8; 32]) -> Result<Bytes, BlobError> {
        self.store
            .get_bytes(Hash::from_bytes(hash))
            .await
            .map_err(op)
    }

    /// Durably stores records or record packs, each pinned by its own tag (one tag scheme for both, so deleting
    /// a pack goes through [`Blobs::delete`]), for a caller that already holds a [`Hold`]: no collection pass
    /// runs between adding and tagging, and the collection lock is not taken a second time (which would wait
    /// behind a pass queued behind the hold, until that pass gives up).
    pub async fn put_held(
        &self,
        packs: &[Bytes],
        _held: &Hold,
    ) -> Result<Vec<[u8; 32]>, BlobError> {
        let hashes = self.add_tagged(packs).await?;
        Ok(hashes.iter().map(|h| *h.as_bytes()).collect())
    }

    /// Starts storing a snapshot part by part ([`SnapshotWriter`]). Each part written is held by a temp tag until
    /// the snapshot's tag pins it; collection is kept out only while a part is being written (a pass marks temp
    /// tags), so a long snapshot build never holds collection, or the writes queued behind a waiting pass, back.
    pub fn snapshot_writer(&self) -> SnapshotWriter<'_> {
        SnapshotWriter {
            blobs: self,
            temps: Vec::new(),
            hashes: Vec::new(),
        }
    }

    /// True if the store holds the complete blob `hash`.
    pub async fn has_raw(&self, hash: [u8; 32]) -> bool {
        self.store
            .blobs()
            .has(Hash::from_bytes(hash))
            .await
            .unwrap_or(false)
    }

    /// Pins a snapshot HashSeq this node holds, with all its parts, under the tag for `name` (replacing the
    /// snapshot that tag held).
    pub async fn pin_snapshot(&self, name: &str, hash: [u8; 32]) -> Result<(), BlobError> {
        self.store
            .tags()
            .set(
                snap_tag(name),
                iroh_blobs::HashAndFormat::hash_seq(Hash::from_bytes(hash)),
            )
            .await
            .map_err(op)?;
        self.store.sync_db().await.map_err(op)?;
        // The previous snapshot under this tag may now be unpinned.
        self.gc_wanted.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Unpins the snapshot under `name` (its parts go with the next collection unless pinned otherwise).
    pub async fn drop_snapshot(&self, name: &str) -> Result<(), BlobError> {
        let n = self.store.tags().delete(snap_tag(name)).await.map_err(op)?;
        if n > 0 {
            self.store.sync_db().await.map_err(op)?;
            self.gc_wanted.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Unpins every snapshot except those of `keep` (namespace names); returns how many went.
    pub async fn drop_snapshots_except(&self, keep: &[String]) -> Result<usize, BlobError> {
        use futures::StreamExt;
        let wanted: std::collections::HashSet<String> = keep.iter().map(|n| snap_tag(n)).collect();
        let mut stale = Vec::new();
        {
            let tags = self.store.tags().list_prefix("snap-").await.map_err(op)?;
            futures::pin_mut!(tags);
            while let Some(t) = tags.next().await {
                let name = t.map_err(op)?.name.to_string();
                if !wanted.contains(&name) {
                    stale.push(name);
                }
            }
        }
        for name in &stale {
            self.store.tags().delete(name).await.map_err(op)?;
        }
        if !stale.is_empty() {
            self.store.sync_db().await.map_err(op)?;
            self.gc_wanted.store(true, Ordering::SeqCst);
        }
        Ok(stale.len())
    }

    /// Hashes of every blob pinned by a record tag (records and record packs).
    pub async fn tagged(&self) -> Result<Vec<[u8; 32]>, BlobError> {
        use futures::StreamExt;
        let mut out = Vec::new();
        let tags = self.store.tags().list_prefix("mem-").await.map_err(op)?;
        futures::pin_mut!(tags);
        while let Some(t) = tags.next().await {
            out.push(*t.map_err(op)?.hash.as_bytes());
        }
        Ok(out)
    }

    /// Unpins blobs so the next garbage collection deletes their bytes.
    pub async fn delete(&self, hashes: &[[u8; 32]]) -> Result<(), BlobError> {
        for h in hashes {
            self.store
                .tags()
                .delete(tag_name(&Hash::from_bytes(*h)))
                .await
                .map_err(op)?;
        }
        self.store.sync_db().await.map_err(op)?;
        self.gc_wanted.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Flushes and closes the store.
    pub async fn shutdown(&self) -> Result<(), BlobError> {
        self.store.shutdown().await.map_err(op)
    }
}

fn tag_name(hash: &Hash) -> String {
    format!("mem-{}", hash.to_hex())
}

fn snap_tag(name: &str) -> String {
    format!("snap-{}", blake3::hash(name.as_bytes()).to_hex())
}

/// A snapshot being stored: its parts are written one by one as the caller makes them (never all held in memory
/// at once), then [`SnapshotWriter::finish`] stores the iroh HashSeq listing them and pins it, with every part, under
/// the snapshot tag of a name (replacing whatever snapshot that tag held).
pub struct SnapshotWriter<'a> {
    blobs: &'a Blobs,
    temps: Vec<iroh_blobs::api::TempTag>,
    hashes: Vec<Hash>,
}

impl SnapshotWriter<'_> {
    /// Adds the next part from its bytes; returns its hash.
    pub async fn add(&mut self, bytes: Bytes) -> Result<[u8; 32], BlobError> {
        let _no_gc = self.blobs.gc_lock.read().await;
        let t = self
            .blobs
            .store
            .add_bytes(bytes)
            .temp_tag()
            .await
            .map_err(op)?;
        Ok(self.keep(t))
    }

    /// Adds the next part from pieces as a producer makes them (the store writes them out as they come).
    pub async fn add_stream(
        &mut self,
        pieces: impl futures::Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static,
    ) -> Result<[u8; 32], BlobError> {
        let _no_gc = self.blobs.gc_lock.read().await;
        let t = self
            .blobs
            .store
            .add_stream(pieces)
            .await
            .temp_tag()
            .await
            .map_err(op)?;
        Ok(self.keep(t))
    }

    /// Reuses a blob this node holds (a page unchanged since the previous snapshot) as the next part.
    pub fn have(&mut self, hash: [u8; 32]) {
        self.hashes.push(Hash::from_bytes(hash));
    }

    fn keep(&mut self, t: iroh_blobs::api::TempTag) -> [u8; 32] {
        let h = t.hash();
        self.hashes.push(h);
        self.temps.push(t);
        *h.as_bytes()
    }

    /// Stores the HashSeq of the parts added and pins it under the snapshot tag of `name`. Returns the HashSeq's
    /// hash and the parts' hashes.
    pub async fn finish(self, name: &str) -> Result<([u8; 32], Vec<[u8; 32]>), BlobError> {
        let _no_gc = self.blobs.gc_lock.read().await;
        let seq: iroh_blobs::hashseq::HashSeq = self.hashes.iter().copied().collect();
        let seq_bytes: Bytes = seq.into();
        let t = self
            .blobs
            .store
            .add_bytes(seq_bytes)
            .temp_tag()
            .await
            .map_err(op)?;
        let hash = t.hash();
        self.blobs.pin_snapshot(name, *hash.as_bytes()).await?;
        drop(t);
        Ok((
            *hash.as_bytes(),
            self.hashes.iter().map(|h| *h.as_bytes()).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression test for the mark/sweep race: records written while collection passes run back to back (a
    /// deletion before every write keeps passes coming) must all survive.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_written_while_collection_runs_survive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = Blobs::open(dir.path(), Duration::from_millis(1))
            .await
            .expect("open");
        let mut kept = Vec::new();
        for round in 0..300u32 {
            // Something to collect, so that a pass runs now.
            let doomed = Bytes::from(format!("doomed {round}"));
            blobs
                .put_all(std::slice::from_ref(&doomed))
                .await
                .expect("put");
            blobs
                .delete(&[*blake3::hash(&doomed).as_bytes()])
                .await
                .expect("delete");
            let recs: Vec<Bytes> = (0..4)
                .map(|i| Bytes::from(format!("kept {round} {i}")))
                .collect();
            blobs.put_all(&recs).await.expect("put");
            kept.extend(recs);
        }
        // Let any pass in progress finish, then check every kept record.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut lost = 0;
        for r in &kept {
            if blobs.get(&MemoryId::of_bytes(r)).await.is_err() {
                lost += 1;
            }
        }
        assert_eq!(lost, 0, "{lost} of {} records lost", kept.len());
        blobs.shutdown().await.expect("shutdown");
    }

    /// A download held for long (a [`Hold`]) does not hold writes back: a pass that cannot start gives up after
    /// [`GC_LOCK_WAIT`] and plain writes go on; once the hold is gone the deferred collection runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_hold_defers_collection_without_stalling_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = Blobs::open(dir.path(), Duration::from_millis(5))
            .await
            .expect("open");
        let doomed = Bytes::from_static(b"doomed while a download is held");
        blobs
            .put_all(std::slice::from_ref(&doomed))
            .await
            .expect("put");
        let hold = blobs.hold(&[]).await;
        blobs
            .delete(&[*blake3::hash(&doomed).as_bytes()])
            .await
            .expect("delete");
        // Writes during the hold: each may wait behind one pass for at most GC_LOCK_WAIT, never for the hold.
        for i in 0..20u32 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let rec = Bytes::from(format!("written during the hold {i}"));
            let put = tokio::time::timeout(
                Duration::from_secs(5),
                blobs.put_all(std::slice::from_ref(&rec)),
            )
            .await;
            assert!(put.is_ok(), "write {i} waited for the hold");
            put.expect("in time").expect("put");
        }
        let doomed_id = MemoryId::of_bytes(&doomed);
        assert!(
            blobs.get(&doomed_id).await.is_ok(),
            "collected while the hold was in place"
        );
        drop(hold);
        let mut gone = false;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if blobs.get(&doomed_id).await.is_err() {
                gone = true;
                break;
            }
        }
        assert!(gone, "the deferred collection never ran");
        blobs.shutdown().await.expect("shutdown");
    }

    /// A snapshot being built keeps collection out only while it writes a part: passes run between parts, and the
    /// parts written before a pass (held by temp tags) are still there when the snapshot is pinned.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn collection_runs_between_snapshot_parts_and_keeps_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = Blobs::open(dir.path(), Duration::from_millis(5))
            .await
            .expect("open");
        let mut w = blobs.snapshot_writer();
        let first = Bytes::from_static(b"snapshot part written before a pass");
        let first_hash = w.add(first.clone()).await.expect("add");
        let doomed = Bytes::from_static(b"doomed while a snapshot is built");
        blobs
            .put_all(std::slice::from_ref(&doomed))
            .await
            .expect("put");
        blobs
            .delete(&[*blake3::hash(&doomed).as_bytes()])
            .await
            .expect("delete");
        let doomed_id = MemoryId::of_bytes(&doomed);
        let mut gone = false;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if blobs.get(&doomed_id).await.is_err() {
                gone = true;
                break;
            }
        }
        assert!(gone, "no collection pass ran while the snapshot was built");
        assert!(
            blobs.has_raw(first_hash).await,
            "a part written before the pass was collected"
        );
        w.add(Bytes::from_static(b"snapshot part written after the pass"))
            .await
            .expect("add");
        let (hash, parts) = w.finish("ns").await.expect("finish");
        assert_eq!(parts.first(), Some(&first_hash));
        // Pinned: the parts outlive further passes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(blobs.has_raw(hash).await);
        for p in &parts {
            assert!(blobs.has_raw(*p).await, "a pinned part was collected");
        }
        blobs.shutdown().await.expect("shutdown");
    }
}
