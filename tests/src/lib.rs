//! Test harness for end-to-end tests: starts real `cairn` node processes on ephemeral loopback ports with a
//! real model and real data dirs, and runs the real CLI against them.
//!
//! The `cairn` binary is taken from `CAIRN_BIN`, or else from the cargo target directory this test binary
//! lives in (`scripts/test` builds it first). The model comes from `CAIRN_MODEL_DIR` / `ORT_DYLIB_PATH` or the
//! default cache that `scripts/provision-model` fills.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_client::CairnClient;

/// Path of the `cairn` binary under test.
pub fn cairn_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-binary> → target/<profile>/cairn; a bin of this crate lives beside it.
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("the binary lives in a directory");
    let profile_dir = if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("target/<profile>/deps has a parent")
    } else {
        dir
    };
    profile_dir.join("cairn")
}

/// A running node.
pub struct Node {
    child: Option<Child>,
    /// gRPC URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// Its data dir.
    pub data_dir: PathBuf,
    /// Extra `cairn serve` arguments it was started with.
    pub args: Vec<String>,
    /// The admin token the node wrote into its data dir (`None` with `--no-auth`).
    pub token: Option<String>,
    /// SHA-256 fingerprint of its TLS certificate, when it serves TLS.
    pub tls_fingerprint: Option<String>,
}

impl Node {
    /// Starts a node on an ephemeral port with `data_dir` and waits until it serves.
    pub fn start(data_dir: &Path) -> Result<Node> {
        Self::start_with(data_dir, &[])
    }

    /// Like [`Node::start`] with extra `cairn serve` arguments.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Result<Node> {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// Like [`Node::start_with`], with environment variables set (`Some`) or removed (`None`) for the node.
    pub fn start_with_env(
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, Option<&str>)],
    ) -> Result<Node> {
        let mut cmd = Command::new(cairn_bin());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(extra)
            .env("CAIRN_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot run {}", cairn_bin().display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut fingerprint = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("cairn node TLS certificate sha256 ") {
                    fingerprint = Some(rest.trim().to_owned());
                }
                if let Some(rest) = line.strip_prefix("cairn node listening on ") {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send((addr, fingerprint.clone()));
                }
            }
        });
        let (addr, tls_fingerprint) = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                bail!("node did not start within 120 s (exit: {status:?})");
            }
        };
        let token = std::fs::read_to_string(data_dir.join("admin.token"))
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|_| !extra.contains(&"--no-auth"));
        let scheme = if tls_fingerprint.is_some() {
            "https"
        } else {
            "http"
        };
        Ok(Node {
            child: Some(child),
            url: format!("{scheme}://{addr}"),
            data_dir: data_dir.to_owned(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            token,
            tls_fingerprint,
        })
    }

    /// A connected SDK client with the node's admin token (and its TLS certificate pinned).
    pub async fn client(&self) -> Result<CairnClient> {
        self.client_with(self.token.as_deref()).await
    }

    /// A connected SDK client sending `token` (or none).
    pub async fn client_with(&self, token: Option<&str>) -> Result<CairnClient> {
        let mut b = CairnClient::builder(self.url.clone()).maybe_token(token.map(str::to_owned));
        if let Some(fp) = &self.tls_fingerprint {
            b = b.tls_pin(fp)?;
        }
        Ok(b.connect().await?)
    }

    /// The generated gRPC client with the admin token, for hand-made requests.
    pub async fn raw(&self) -> Result<cairn_client::Raw> {
        Ok(self.client().await?.raw())
    }

    /// Runs the CLI against this node: `cairn --node URL <args>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_token(self.token.as_deref(), args)
    }

    /// Runs the CLI against this node with `token` (or none) instead of the admin token.
    pub fn cli_token(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new(cairn_bin());
        cmd.arg("--node")
            .arg(&self.url)
            .args(args)
            .env_remove("CAIRN_TOKEN")
            .env("CAIRN_LOG", "warn")
            .stdin(Stdio::null());
        if let Some(t) = token {
            cmd.env("CAIRN_TOKEN", t);
        }
        if let Some(fp) = &self.tls_fingerprint {
            cmd.env("CAIRN_TLS_PIN", fp);
        }
        cmd.output().expect("run cairn")
    }

    /// Runs the CLI against this node with its own client state file (pinned node ids, last-seen roots), so
    /// tests that check trust do not share pins.
    pub fn cli_with_state(&self, state: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(cairn_bin());
        cmd.arg("--node")
            .arg(&self.url)
            .args(args)
            .env("CAIRN_STATE", state)
            .env("CAIRN_LOG", "warn")
            .stdin(Stdio::null());
        if let Some(t) = &self.token {
            cmd.env("CAIRN_TOKEN", t);
        }
        cmd.output().expect("run cairn")
    }

    /// Runs the CLI with `--json` and parses stdout; panics with stderr if it fails.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        assert!(
            out.status.success(),
            "cairn {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// Stops the node gracefully (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: plain kill(2) on our own child's pid.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            for _ in 0..300 {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the node with SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the process (SIGSTOP): it holds its connections but answers nothing until [`Node::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let ok = Command::new("kill")
                .arg(sig)
                .arg(c.id().to_string())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill {sig} failed");
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A fresh temporary directory for a node's data.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cairn-e2e-")
        .tempdir()
        .expect("tempdir")
}

/// The repository's root, found at run time (not baked in at compile time, so a target dir shared between clones
/// never points a test at another clone): the nearest directory at or above the current one (cargo runs tests in
/// their package dir) that holds both `Cargo.toml` and `sdk-examples/`.
pub fn repo_dir() -> PathBuf {
    let start = std::env::current_dir().expect("current dir");
    start
        .ancestors()
        .find(|d| d.join("Cargo.toml").is_file() && d.join("sdk-examples").is_dir())
        .map(Path::to_owned)
        .unwrap_or(start)
}

/// A fixture file the tests carry in `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    repo_dir().join("tests/fixtures").join(name)
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// A pass-through codec so tests can send hand-made (possibly invalid) protobuf bytes.
#[derive(Default, Clone)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let mut out = vec![0u8; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// Sends raw request bytes to a unary method of `node` with its admin token; returns (status code, message) of
/// the answer (0 = OK).
pub async fn raw_unary(node: &Node, path: &'static str, body: Vec<u8>) -> (i32, String) {
    raw_unary_token(&node.url, node.token.as_deref(), path, body).await
}

/// Like [`raw_unary`] with any token (or none), to any plain-HTTP node URL.
pub async fn raw_unary_token(
    url: &str,
    token: Option<&str>,
    path: &'static str,
    body: Vec<u8>,
) -> (i32, String) {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    let mut req = tonic::Request::new(body);
    if let Some(t) = token {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("ascii token"),
        );
    }
    match grpc.unary(req, path, RawCodec).await {
        Ok(_) => (0, String::new()),
        Err(s) => (s.code() as i32, s.message().to_owned()),
    }
}

/// Copies a directory tree (a data dir, for restore and fork scenarios).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let (p, q) = (e.path(), to.join(e.file_name()));
        if p.is_dir() {
            copy_dir(&p, &q);
        } else {
            std::fs::copy(&p, &q).expect("copy");
        }
    }
}

/// Files under `root` whose bytes contain `needle` (to show that forgotten text really left the disk).
pub fn files_containing(root: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            // A file given as the root.
            if let Ok(bytes) = std::fs::read(&d) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(d.display().to_string());
                }
            }
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(p.display().to_string());
                }
            }
        }
    }
    found
}

/// A node's p2p ticket (`cairn ticket`).
pub fn ticket(n: &Node) -> String {
    let o = n.cli(&["ticket"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// A node's id (`cairn id`).
pub fn node_id(n: &Node) -> String {
    String::from_utf8_lossy(&n.cli(&["id"]).stdout)
        .trim()
        .to_owned()
}

/// Makes `a` and `b` peers of each other that may fetch every namespace from each other (`cairn share`).
pub fn introduce(a: &Node, b: &Node) {
    for (n, other) in [(b, a), (a, b)] {
        let o = n.cli(&["peer", "add", &ticket(other)]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        share(n, "", other);
    }
}

/// Lets `peer` fetch the namespaces under `prefix` from `owner` (`cairn share`).
pub fn share(owner: &Node, prefix: &str, peer: &Node) {
    let o = owner.cli(&["share", "--ns", prefix, "--with", &node_id(peer)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The latest root seq of `ns` on `n` (0 if none or unreachable).
pub async fn seq_of(n: &Node, ns: &str) -> u64 {
    let Ok(c) = n.client().await else { return 0 };
    c.list_namespaces()
        .await
        .ok()
        .and_then(|l| l.into_iter().find(|x| x.namespace == ns))
        .map_or(0, |x| x.seq)
}

/// Polls (bounded) until `ns` on `n` has root seq ≥ `seq`; returns the seq reached.
pub async fn wait_seq(n: &Node, ns: &str, seq: u64, limit: std::time::Duration) -> u64 {
    let t0 = std::time::Instant::now();
    loop {
        let now = seq_of(n, ns).await;
        if now >= seq || t0.elapsed() > limit {
            return now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Short facts the end-to-end tests remember and ask about.
pub const FACTS: &[&str] = &[
    "Alice prefers green tea to coffee.",
    "Bob walks his dog Biscuit every morning at 7.",
    "The server migration is scheduled for Friday night.",
    "Carol's birthday is on the 14th of June.",
    "Dave is allergic to peanuts and shellfish.",
    "Eve moved to Lisbon last spring.",
    "Frank has been learning the cello for two years.",
    "The wifi password is written on the fridge.",
    "Grace's flight to Tokyo leaves on Monday.",
];

/// Fetches one blob by hash from the node of `ticket` over iroh-blobs, as a stranger with its own key (`seed`), the
/// way any endpoint that can dial the node could. Returns its bytes, or why the node did not serve it.
pub async fn fetch_blob_as(
    ticket: &str,
    seed: [u8; 32],
    hash: [u8; 32],
) -> Result<Vec<u8>, String> {
    use iroh::endpoint::{presets, PortmapperConfig};
    use iroh::{Endpoint, EndpointAddr, RelayMode, SecretKey, TransportAddr};
    let (id, addrs) = ticket.split_once('@').ok_or("ticket without @")?;
    let mut idb = [0u8; 32];
    hex::decode_to_slice(id, &mut idb).map_err(|e| e.to_string())?;
    let peer = iroh::PublicKey::from_bytes(&idb).map_err(|e| e.to_string())?;
    let addrs: Vec<std::net::SocketAddr> =
        addrs.split(',').filter_map(|a| a.parse().ok()).collect();
    let lookup = iroh::address_lookup::MemoryLookup::new();
    lookup.add_endpoint_info(EndpointAddr::from_parts(
        peer,
        addrs.into_iter().map(TransportAddr::Ip),
    ));
    let ep = Endpoint::builder(presets::Minimal)
        .relay_mode(RelayMode::Disabled)
        .portmapper_config(PortmapperConfig::Disabled)
        .secret_key(SecretKey::from_bytes(&seed))
        .clear_ip_transports()
        .bind_addr(
            "127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?
        .address_lookup(lookup)
        .bind()
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::time::timeout(Duration::from_secs(10), ep.connect(peer, iroh_blobs::ALPN))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let store = iroh_blobs::store::mem::MemStore::new();
    let h = iroh_blobs::Hash::from_bytes(hash);
    let got = tokio::time::timeout(
        Duration::from_secs(10),
        store
            .remote()
            .fetch(conn, iroh_blobs::HashAndFormat::raw(h))
            .complete(),
    )
    .await
    .map_err(|_| "fetch timed out".to_string())?
    .map_err(|e| e.to_string());
    let out = match got {
        Ok(_) => store
            .get_bytes(h)
            .await
            .map(|b| b.to_vec())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    ep.close().await;
    out
}
