//! Embedding models by hash from peers, end to end: real nodes offering their model over iroh, a peer whose stored
//! copy of a model file is damaged, a node with an empty model cache that fetches its model (and ONNX Runtime)
//! from peers, and a model this build does not pin.

use std::path::{Path, PathBuf};

use cairn_tests::{cairn_bin, cosine, fixture, temp_dir, ticket, Node};

/// The fp32 all-MiniLM-L6-v2 identity pinned in `cairn_server::models::PINNED_MODELS`.
const MINILM: &str = "69e6cc71e6e77d601e8334200340a84d456d4f5bb17bba4cc051ae402723d793";

/// Runs `cairn --json model ...` with `CAIRN_CACHE` set to `cache`; returns (success, stdout JSON or null, stderr).
fn model_cmd(cache: &Path, args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = std::process::Command::new(cairn_bin())
        .arg("--json")
        .arg("model")
        .args(args)
        .env("CAIRN_CACHE", cache)
        .env("CAIRN_LOG", "warn")
        .output()
        .expect("run cairn model");
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.success(),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file under `root` whose name is `name`.
fn find(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == name) {
                found.push(p);
            }
        }
    }
    found
}

/// The blake3 (hex) of a file a peer offers, from `cairn model list --from`.
fn offered_file(listing: &serde_json::Value, name: &str) -> String {
    listing["models"][0]["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["name"] == name)
        .and_then(|f| f["blake3"].as_str())
        .unwrap_or_else(|| panic!("no {name} in {listing}"))
        .to_owned()
}

#[test]
fn models_come_from_peers_by_hash_and_damaged_copies_are_skipped() {
    let (good_dir, bad_dir) = (temp_dir(), temp_dir());
    let good = Node::start(good_dir.path()).expect("node");
    let bad = Node::start(bad_dir.path()).expect("node");
    let (good_t, bad_t) = (ticket(&good), ticket(&bad));

    // What a peer offers: the pinned model, every file, and the runtime library for this platform.
    let scratch = temp_dir();
    let (ok, listing, err) = model_cmd(scratch.path(), &["list", "--from", &bad_t]);
    assert!(ok, "{err}");
    assert_eq!(listing["models"][0]["hash"], MINILM, "{listing}");
    assert_eq!(listing["models"][0]["pinned"], true);
    let names: Vec<&str> = listing["models"][0]["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    for want in [
        "model.onnx",
        "tokenizer.json",
        "config.json",
        "special_tokens_map.json",
        "tokenizer_config.json",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("runtime/")), "{names:?}");

    // Damage the bad peer's stored copy of model.onnx (as a failing disk would): one byte in the middle.
    let onnx = offered_file(&listing, "model.onnx");
    let files = find(bad_dir.path(), &format!("{onnx}.data"));
    assert_eq!(
        files.len(),
        1,
        "the offered model.onnx blob in the bad peer's store"
    );
    let mut bytes = std::fs::read(&files[0]).expect("read blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&files[0], &bytes).expect("damage blob");
    drop(bytes);

    // `cairn model fetch`: the damaged peer is skipped, the good one completes the fetch.
    let cache = temp_dir();
    let (ok, fetched, err) = model_cmd(
        cache.path(),
        &[
            "fetch", "--from", &bad_t, "--from", &good_t, "--model", MINILM,
        ],
    );
    assert!(ok, "fetch failed: {err}");
    assert_eq!(fetched["hash"], MINILM);
    assert_eq!(fetched["peer"], ticket_id(&good_t));
    let skipped = fetched["skipped"].as_array().expect("skipped");
    assert_eq!(skipped.len(), 1, "{fetched}");
    assert_eq!(skipped[0]["peer"], ticket_id(&bad_t));
    let (ok, local, err) = model_cmd(cache.path(), &["list"]);
    assert!(ok, "{err}");
    assert_eq!(local["models"][0]["hash"], MINILM, "{local}");
    assert_eq!(local["models"][0]["ok"], true);
    assert!(cache.path().join("ort/libonnxruntime.so").is_file() || !cfg!(target_os = "linux"));

    // A node with an empty model cache and no model settings gets its model and runtime from the peers, and
    // embeds the reference texts as the reference does.
    let empty = temp_dir();
    let fresh_dir = temp_dir();
    let fresh = Node::start_with_env(
        fresh_dir.path(),
        &[
            "--model-from",
            &bad_t,
            "--model-from",
            &good_t,
            "--model-hash",
            MINILM,
        ],
        &[
            (
                "CAIRN_CACHE",
                Some(empty.path().to_str().expect("utf-8 path")),
            ),
            ("CAIRN_MODEL_DIR", None),
            ("ORT_DYLIB_PATH", None),
        ],
    )
    .expect("a node fetching its model starts");
    assert!(empty
        .path()
        .join("models/all-minilm-l6-v2/manifest.json")
        .is_file());
    let fx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("minilm-reference.json")).expect("fixture"))
            .expect("fixture JSON");
    let items = fx["items"].as_array().expect("items");
    let mut args = vec!["embed"];
    args.extend(items.iter().map(|i| i["text"].as_str().expect("text")));
    let out = fresh.cli_json(&args);
    assert!(out["model"]
        .as_str()
        .is_some_and(|m| m.starts_with("all-MiniLM-L6-v2@69e6cc71e6e77d60")));
    let got = out["vectors"].as_array().expect("vectors");
    assert_eq!(got.len(), items.len());
    for (item, v) in items.iter().zip(got) {
        let want: Vec<f32> = item["embedding"]
            .as_array()
            .expect("embedding")
            .iter()
            .map(|x| x.as_f64().expect("number") as f32)
            .collect();
        let v: Vec<f32> = v
            .as_array()
            .expect("vector")
            .iter()
            .map(|x| x.as_f64().expect("number") as f32)
            .collect();
        let c = cosine(&want, &v);
        assert!(c >= 0.9999, "cosine {c} for {:?}", item["text"]);
    }
}

fn ticket_id(t: &str) -> String {
    t.split('@').next().unwrap_or_default().to_owned()
}

#[test]
fn an_unpinned_model_is_refused_unless_named() {
    // A model this build does not pin: the default model with a changed config.json (so a new identity).
    let cache_src = cairn_server_cache_model();
    let variant = temp_dir();
    for f in [
        "model.onnx",
        "tokenizer.json",
        "special_tokens_map.json",
        "tokenizer_config.json",
    ] {
        std::os::unix::fs::symlink(cache_src.join(f), variant.path().join(f)).expect("link");
    }
    let mut config = std::fs::read(cache_src.join("config.json")).expect("config.json");
    config.extend_from_slice(b"\n");
    std::fs::write(variant.path().join("config.json"), &config).expect("write config");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache_src.join("manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    manifest["files"]["config.json"] = serde_json::Value::String(sha256_hex(&config));
    std::fs::write(
        variant.path().join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).expect("json"),
    )
    .expect("write manifest");

    let dir = temp_dir();
    let node = Node::start_with(
        dir.path(),
        &["--model-dir", variant.path().to_str().expect("utf-8")],
    )
    .expect("node on the variant model");
    let t = ticket(&node);
    let cache = temp_dir();
    let (ok, listing, err) = model_cmd(cache.path(), &["list", "--from", &t]);
    assert!(ok, "{err}");
    let hash = listing["models"][0]["hash"]
        .as_str()
        .expect("hash")
        .to_owned();
    assert_ne!(hash, MINILM);
    assert_eq!(listing["models"][0]["pinned"], false);

    // Refused without the flag, before anything is installed.
    let (ok, _, err) = model_cmd(cache.path(), &["fetch", "--from", &t]);
    assert!(!ok);
    assert!(err.contains("not pinned") && err.contains(&hash), "{err}");
    assert!(!cache.path().join("models").exists());
    let (ok, _, err) = model_cmd(cache.path(), &["fetch", "--from", &t, "--model", &hash]);
    assert!(!ok && err.contains("not pinned"), "{err}");
    // Naming another hash does not let it in either.
    let (ok, _, err) = model_cmd(
        cache.path(),
        &["fetch", "--from", &t, "--allow-unpinned", MINILM],
    );
    assert!(!ok && err.contains("not pinned"), "{err}");

    // Named by the operator: installed under its own directory, and it checks.
    let (ok, fetched, err) = model_cmd(
        cache.path(),
        &[
            "fetch",
            "--from",
            &t,
            "--allow-unpinned",
            &hash,
            "--no-runtime",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(fetched["hash"], hash.as_str());
    let (ok, local, err) = model_cmd(cache.path(), &["list"]);
    assert!(ok, "{err}");
    assert_eq!(local["models"][0]["hash"], hash.as_str(), "{local}");
    assert_eq!(local["models"][0]["pinned"], false);
    assert!(!cache.path().join("ort").exists(), "--no-runtime");

    // A node started with --no-serve-model offers nothing.
    let quiet_dir = temp_dir();
    let quiet = Node::start_with(quiet_dir.path(), &["--no-serve-model"]).expect("node");
    let (ok, listing, err) = model_cmd(cache.path(), &["list", "--from", &ticket(&quiet)]);
    assert!(!ok, "{listing}");
    assert!(err.contains("no peer gave the model"), "{err}");
    let (ok, _, err) = model_cmd(temp_dir().path(), &["fetch", "--from", &ticket(&quiet)]);
    assert!(!ok && err.contains("no peer gave the model"), "{err}");
}

/// The model directory the test nodes run (`CAIRN_MODEL_DIR` or the provisioned default).
fn cairn_server_cache_model() -> PathBuf {
    std::env::var_os("CAIRN_MODEL_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("CAIRN_CACHE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/cairn")
                });
            cache.join("models/all-minilm-l6-v2")
        })
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}
