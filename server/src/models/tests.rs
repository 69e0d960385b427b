//! Tests of offering and fetching models between in-process peers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cairn_index::model_offer::{OfferedFile, OfferedModel};

use crate::embed::check_manifest;
use crate::p2p::ticket::Ticket;

use super::fetch::*;
use super::offer::*;
use super::*;
use iroh::protocol::Router;

/// A small stand-in model (not all-MiniLM, so only the generic manifest rules apply): file name → bytes.
fn files(tag: &str) -> Vec<(&'static str, Vec<u8>)> {
    [
        "model.onnx",
        "tokenizer.json",
        "config.json",
        "special_tokens_map.json",
        "tokenizer_config.json",
    ]
    .into_iter()
    .map(|n| (n, format!("{tag} {n}").into_bytes()))
    .collect()
}

fn manifest(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let f: serde_json::Map<String, serde_json::Value> = files
        .iter()
        .map(|(n, b)| {
            (
                n.to_string(),
                serde_json::Value::String(crate::embed::sha256_hex(b)),
            )
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "name": "tiny", "dim": 4, "files": f })).expect("json")
}

/// A peer on loopback answering `cairn/model/1` with `offer` and serving `blobs` as iroh blobs.
async fn peer(offer: OfferedModel, blobs: &[Vec<u8>]) -> (Router, Ticket, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = crate::blobs::Blobs::open(dir.path(), Duration::from_secs(3600))
        .await
        .expect("store");
    for b in blobs {
        store
            .store()
            .add_bytes(b.clone())
            .with_named_tag(format!("t-{}", blake3::hash(b).to_hex()))
            .await
            .expect("add");
    }
    let shelf = Shelf {
        blobs: store.clone(),
        model_dir: PathBuf::new(),
        ort_lib: PathBuf::new(),
        floor: (dir.path().to_owned(), 0),
        offer: tokio::sync::OnceCell::new_with(Some(Some(offer))),
    };
    let ep = endpoint(&[]).await.expect("endpoint");
    let t = Ticket {
        id: *ep.id().as_bytes(),
        addrs: ep
            .bound_sockets()
            .into_iter()
            .map(|a| ([127, 0, 0, 1], a.port()).into())
            .collect(),
    };
    let api: iroh_blobs::api::Store = store.store().clone().into();
    let router = Router::builder(ep)
        .accept(MODEL_ALPN, ServeModels(Arc::new(shelf)))
        .accept(iroh_blobs::ALPN, iroh_blobs::BlobsProtocol::new(&api, None))
        .spawn();
    (router, t, dir)
}

fn offer_of(files: &[(&str, Vec<u8>)], manifest: Vec<u8>, hash: [u8; 32]) -> OfferedModel {
    OfferedModel {
        hash,
        manifest,
        files: files
            .iter()
            .map(|(n, b)| OfferedFile {
                name: n.to_string(),
                blake3: *blake3::hash(b).as_bytes(),
                size: b.len() as u64,
            })
            .collect(),
    }
}

/// Peers that lie about the model's identity or serve a file other than the manifest's are skipped; the next
/// peer's model is installed; nothing of an unpinned model is fetched unless it is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_and_tampering_peers_are_skipped_and_unpinned_models_refused() {
    let good = files("good");
    let m = manifest(&good);
    let hash = check_manifest(&m).expect("manifest").info.hash;
    assert!(pinned(&hash).is_none());

    // A peer offering another model's manifest under this hash.
    let other = files("other");
    let (r1, liar, _d1) = peer(offer_of(&other, manifest(&other), hash), &[]).await;
    // A peer with the right manifest whose model.onnx is other bytes (its BLAKE3 matches what it offers).
    let mut tampered = good.clone();
    tampered[0].1 = b"tampered model".to_vec();
    let (r2, tamperer, _d2) = peer(
        offer_of(&tampered, m.clone(), hash),
        &tampered.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
    )
    .await;
    let (r3, honest, _d3) = peer(
        offer_of(&good, m.clone(), hash),
        &good.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
    )
    .await;

    let cache = tempfile::tempdir().expect("tempdir");
    let mut req = FetchRequest {
        from: vec![liar.clone(), tamperer.clone(), honest.clone()],
        model: Some(hash),
        allow_unpinned: None,
        cache: cache.path().to_owned(),
        runtime: false,
    };
    // Unpinned and not named: refused before anything is asked or installed.
    let e = fetch(&req).await.expect_err("unpinned");
    assert!(matches!(e, ModelError::Unpinned { .. }), "{e}");
    req.model = None;
    let e = fetch(&req).await.expect_err("unpinned");
    assert!(matches!(e, ModelError::Unpinned { .. }), "{e}");
    assert!(!cache.path().join("models").exists());

    req.model = Some(hash);
    req.allow_unpinned = Some(hash);
    let f = fetch(&req).await.expect("fetched from the honest peer");
    assert_eq!(f.peer, hex::encode(honest.id));
    assert_eq!(f.skipped.len(), 2, "{:?}", f.skipped);
    assert!(
        f.skipped[0].1.contains("manifest hashes to"),
        "{:?}",
        f.skipped
    );
    assert!(
        f.skipped[1].1.contains("tampered or damaged"),
        "{:?}",
        f.skipped
    );
    assert_eq!(f.dir, install_dir(cache.path(), &hash));
    for (n, b) in &good {
        assert_eq!(&std::fs::read(f.dir.join(n)).expect("installed file"), b);
    }
    let local = list_local(cache.path());
    assert_eq!(local.len(), 1);
    assert_eq!(local[0].model.as_ref().map(|(h, _)| *h), Ok(hash));
    // No scratch directories are left behind.
    let left: Vec<_> = std::fs::read_dir(cache.path())
        .expect("cache")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // Only lying and tampering peers: nothing is installed over the good copy, and each is named.
    req.from = vec![liar, tamperer];
    match fetch(&req).await {
        Err(ModelError::NoPeer { tried }) => assert_eq!(tried.len(), 2),
        other => panic!("expected NoPeer, got {other:?}"),
    }
    for (n, b) in &good {
        assert_eq!(&std::fs::read(f.dir.join(n)).expect("still installed"), b);
    }
    for r in [r1, r2, r3] {
        let _ = r.shutdown().await;
    }
}

/// A node offers its model only while the copies leave the disk above the write floor; the offer then
/// lists every manifest file with its BLAKE3 hash, and the blobs are pinned under `model-` tags.
#[tokio::test]
async fn the_offer_keeps_the_disk_floor() {
    let model = tempfile::tempdir().expect("tempdir");
    let fs = files("local");
    for (n, b) in &fs {
        std::fs::write(model.path().join(n), b).expect("write");
    }
    std::fs::write(model.path().join("manifest.json"), manifest(&fs)).expect("write");
    let data = tempfile::tempdir().expect("tempdir");
    let blobs = crate::blobs::Blobs::open(&data.path().join("blobs"), Duration::from_secs(3600))
        .await
        .expect("store");
    let no_ort = data.path().join("none.so");
    let full = Shelf::new(
        blobs.clone(),
        model.path().to_owned(),
        no_ort.clone(),
        data.path().to_owned(),
        u64::MAX / 2,
    );
    assert!(full.offer().await.is_none(), "offered below the floor");
    let model_tags = |b: crate::blobs::Blobs| async move {
        use futures::StreamExt;
        let tags = b.store().tags().list_prefix("model-").await.expect("tags");
        futures::pin_mut!(tags);
        let mut n = 0;
        while tags.next().await.is_some() {
            n += 1;
        }
        n
    };
    assert_eq!(
        model_tags(blobs.clone()).await,
        0,
        "nothing copied below the floor"
    );
    let shelf = Shelf::new(
        blobs.clone(),
        model.path().to_owned(),
        no_ort,
        data.path().to_owned(),
        0,
    );
    let offer = shelf.offer().await.expect("offered").clone();
    assert_eq!(offer.files.len(), fs.len());
    for (n, b) in &fs {
        let f = offer.files.iter().find(|f| f.name == *n).expect("listed");
        assert_eq!(f.blake3, *blake3::hash(b).as_bytes());
        assert!(shelf.serves(&[f.blake3]));
    }
    assert!(!shelf.serves(&[[9; 32]]));
    assert_eq!(model_tags(blobs.clone()).await, fs.len());
    assert!(!full.serves(&[offer.files[0].blake3]));
}

/// A fetch killed midway leaves its scratch directory; the next fetch removes it, but never the scratch of a
/// fetch still running (its lock is held), nor anything else in the cache.
#[test]
fn scratch_left_by_a_killed_fetch_is_swept_and_a_live_one_kept() {
    let cache = tempfile::tempdir().expect("cache");
    let live = scratch(cache.path(), "model-fetch").expect("live scratch");
    // What kill -9 leaves: the directory and its lock file, the lock released with the process.
    let killed_dir = cache
        .path()
        .join(format!("{SCRATCH_PREFIX}model-stage-00000000000000aa"));
    std::fs::create_dir_all(&killed_dir).expect("dir");
    std::fs::write(killed_dir.join(SCRATCH_LOCK), b"").expect("lock file");
    std::fs::write(killed_dir.join("model.onnx"), b"half a model").expect("write");
    let unlocked = cache
        .path()
        .join(format!("{SCRATCH_PREFIX}runtime-stage-0"));
    std::fs::create_dir_all(&unlocked).expect("dir");
    std::fs::create_dir_all(cache.path().join("models/keep")).expect("models");
    assert_eq!(sweep_scratch(cache.path()), 2);
    assert!(!killed_dir.exists() && !unlocked.exists());
    assert!(live.0.exists(), "a running fetch's scratch was removed");
    assert!(cache.path().join("models/keep").exists());
    drop(live);
    assert_eq!(sweep_scratch(cache.path()), 0);
}

#[test]
fn pins_and_hashes() {
    for p in PINNED_MODELS {
        let h = parse_hash(p.hash).expect("pin is a hash");
        assert!(pinned(&h).is_some());
    }
    assert!(parse_hash("zz").is_err());
    assert!(pinned(&[0; 32]).is_none());
    assert!(platform().contains('-'));
}
