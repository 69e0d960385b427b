//! The `cairn` command line: `serve` runs a node; every other command is a client of a running node.

mod anchor_cmd;
mod audit;
mod client_cmds;
pub mod config;
mod import;
mod model_cmd;
mod output;
mod trust;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use client_cmds::run as run_client_command;

/// Cairn: a self-hosted, verifiable memory store for AI agents.
#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about,
    long_about = None,
    propagate_version = true,
    args_override_self = true
)]
pub struct Cli {
    /// Node to talk to (client commands).
    #[arg(long, global = true, env = "CAIRN_NODE", default_value = cairn_client::DEFAULT_NODE)]
    pub node: String,
    /// Capability token sent with every call (client commands). Default: when --node is the default local node,
    /// the admin token its data dir holds (`admin.token` under CAIRN_DATA_DIR or the default data dir).
    #[arg(long, global = true, env = "CAIRN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// For an `https://` node: the SHA-256 fingerprint (hex) its certificate must have. Default: the one pinned
    /// for this address on first contact.
    #[arg(long, global = true, env = "CAIRN_TLS_PIN")]
    pub tls_pin: Option<String>,
    /// Print machine-readable JSON instead of text (client commands).
    #[arg(long, global = true)]
    pub json: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// All `cairn` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node in the foreground.
    #[command(args_override_self = true)]
    Serve(Box<ServeArgs>),
    /// Remember one text.
    Remember {
        /// Namespace.
        #[arg(long = "ns")]
        ns: String,
        /// Metadata entry KEY=VALUE (repeatable).
        #[arg(long = "meta", value_parser = parse_kv)]
        meta: Vec<(String, String)>,
        /// Creation time in ms since the Unix epoch (default: the node's clock).
        #[arg(long)]
        created_at: Option<u64>,
        /// A key unique in the namespace: a memory already holding it is replaced in the same commit.
        #[arg(long)]
        key: Option<String>,
        /// The text's vector, comma-separated (namespaces of an external model only; see create-namespace).
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
        vector: Option<Vec<f32>>,
        /// The text to remember.
        text: String,
    },
    /// Create a namespace before its first memory; with --external-model, one whose vectors you bring.
    CreateNamespace {
        /// Namespace.
        #[arg(long = "ns")]
        ns: String,
        /// The external model's name: every memory then comes with its vector (`remember --vector`, `"vector"`
        /// in import lines), semantic recall takes `--vector`, and the namespace's roots commit the model.
        #[arg(long, requires = "dim")]
        external_model: Option<String>,
        /// The external model's dimension.
        #[arg(long, requires = "external_model")]
        dim: Option<u32>,
        /// Identity hash of a model installed on the node (`cairn model list`) to embed this namespace with
        /// instead of the node's own.
        #[arg(long, conflicts_with = "external_model")]
        model: Option<String>,
    },
    /// Move a namespace to another embedding model installed on the node (`cairn model list`): every memory
    /// is embedded again and the next root names the new model. Interrupted, run it again to resume.
    Migrate {
        /// Namespace.
        #[arg(long = "ns")]
        ns: String,
        /// Identity hash of the model to move to (64 hex digits).
        #[arg(long = "to-model")]
        to_model: String,
    },
    /// Import memories from a JSON Lines file: one {"text", "metadata"?, "created_at"?, "key"?, "vector"?} per
    /// line ("vector" for namespaces of an external model).
    Import {
        /// Namespace.
        #[arg(long = "ns")]
        ns: String,
        /// Items per Remember call.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// The .jsonl file (`-` for standard input).
        file: PathBuf,
    },
    /// Find the memories closest in meaning to a query.
    Recall {
        /// Namespace.
        #[arg(long = "ns")]
        ns: String,
        /// Number of hits.
        #[arg(short, default_value_t = 10)]
        k: u32,
        /// Only memories with metadata KEY=VALUE (repeatable; all must match).
        #[arg(long = "where", value_parser = parse_kv)]
        filters: Vec<(String, String)>,
        /// Only memories created at or after this time (ms).
        #[arg(long)]
        since: Option<u64>,
        /// Only memories created before this time (ms).
        #[arg(long)]
        until: Option<u64>,
        /// HNSW search breadth for this query.
        #[arg(long)]
        ef: Option<u32>,
        /// Exact search: score every memory instead of walking the HNSW graph.
        #[arg(long)]
        exact: bool,
        /// Treat --ns as a prefix: search every namespace under it (hits merged by score; no proof).
        #[arg(long)]
        prefix: bool,
        /// Ranking: hybrid (semantic and BM25 fused by reciprocal rank), semantic or lexical (BM25). Default:
        /// the node's (`--recall-mode`), except semantic for a filtered query without a proof.
        #[arg(long)]
        mode: Option<crate::engine::RecallMode>,
        /// Lexical and hybrid: candidates each ranking contributes (default: the node's, 50).
        #[arg(long)]
        depth: Option<u32>,
        /// Proof options.
        #[command(flatten)]
        proof: ProofArgs,
        /// Re-embed the query text on this machine and require the proof's query vector to be its embedding, so
        /// the answer is bound to this text and not just to some vector. Needs the model `cairn serve` uses
        /// (`CAIRN_MODEL_DIR`, `ORT_DYLIB_PATH`, or the provisioned defaults). Implies --verify.
        #[arg(long)]
        check_query: bool,
        /// Query by this vector (comma-separated; for a namespace of an external model, a vector of that model).
        /// With a query text as well, it is that text's vector: the lexical ranking reads the text, the semantic
        /// one this vector, and the node embeds nothing (how a text ranks in hybrid mode in a namespace of an
        /// external model).
        #[arg(
            long,
            value_delimiter = ',',
            allow_hyphen_values = true,
            conflicts_with = "check_query"
        )]
        vector: Option<Vec<f32>>,
        /// The query text.
        #[arg(required_unless_present = "vector")]
        query: Option<String>,
    },
    /// Fetch memories by id.
    Get {
        /// Namespace.
        #[arg(long = "ns")]
        ns: String,
        /// Proof options.
        #[command(flatten)]
        proof: ProofArgs,
        /// Fetch the memory holding this key (repeatable; instead of or besides ids).
        #[arg(long = "key")]
        keys: Vec<String>,
        /// Memory ids (hex).
        #[arg(required_unless_present = "keys")]
        ids: Vec<String>,
    },
    /// List memories in (created_at, id) order.
    List {
        /// Namespace.
        #[arg(long = "ns")]
        ns: String,
        /// Only memories created at or after this time (ms).
        #[arg(long)]
        since: Option<u64>,
        /// Only memories created before this time (ms).
        #[arg(long)]
        until: Option<u64>,
        /// Most memories to print (pages are fetched as needed).
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Only memories with metadata KEY=VALUE (repeatable; all must match; no proof).
        #[arg(long = "where", value_parser = parse_kv)]
        filters: Vec<(String, String)>,
        /// Proof options.
        #[command(flatten)]
        proof: ProofArgs,
    },
    /// Forget memories by id: removed from every read and from the blob store.
    Forget {
        /// Namespace.
        #[arg(long = "ns")]
        ns: String,
        /// Memory ids (hex).
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Embed texts with the node's model.
    Embed {
        /// Texts to embed.
        #[arg(required = true)]
        texts: Vec<String>,
    },
    /// Counts per namespace.
    Stats {
        /// Only this namespace.
        #[arg(long = "ns")]
        ns: Option<String>,
    },
    /// List the node's namespaces.
    Namespaces,
    /// Print this node's p2p ticket (node id and direct addresses) for `cairn peer add` on other nodes.
    Ticket,
    /// Manage peers.
    #[command(subcommand)]
    Peer(PeerCommand),
    /// List known peers.
    Peers,
    /// Show evidence of owners that signed two different roots for one seq.
    Alerts,
    /// Audit a namespace held by --node: fetch its committed state, recompute every leaf against the owner's
    /// signed root (which also proves the timeline is sorted), check that every memory is reachable in the
    /// committed graph, and measure recall@k of the node's proven answers against exact search.
    Audit {
        /// Namespace.
        #[arg(long = "ns")]
        ns: String,
        /// The owner's node id (hex): the key the roots must be signed with.
        #[arg(long = "from")]
        from: String,
        /// Queries, one per line.
        #[arg(long)]
        queries: Option<PathBuf>,
        /// Hits per query.
        #[arg(short, default_value_t = 10)]
        k: u32,
    },
    /// Capability tokens: mint, attenuate (offline), inspect (offline), revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Serve the node's memory to MCP clients (Claude, Cursor, ...): stdio by default, or streamable HTTP.
    Mcp(crate::mcp::McpArgs),
    /// Let a peer fetch the namespaces under a prefix over iroh (replication is private: nobody else can).
    Share {
        /// Namespace prefix (`team` covers `team` and `team/...`; `""` covers all).
        #[arg(long = "ns")]
        ns: String,
        /// The peer's node id (hex; `cairn id` on that node).
        #[arg(long = "with")]
        with: String,
    },
    /// Withdraw a grant made with `cairn share`.
    Unshare {
        /// Namespace prefix, as shared.
        #[arg(long = "ns")]
        ns: String,
        /// The peer's node id (hex).
        #[arg(long = "with")]
        with: String,
    },
    /// List the grants made with `cairn share`.
    Shares,
    /// Stop following a replica namespace and delete everything this node holds of it.
    Unfollow {
        /// Namespace.
        #[arg(long = "ns")]
        ns: String,
    },
    /// Make a namespace on this node a read-only, verified replica of another node's namespace.
    Follow {
        /// Namespace (the same name on both nodes).
        #[arg(long = "ns")]
        ns: String,
        /// The owner's node id (hex; `cairn id` on the owner).
        #[arg(long = "from")]
        from: String,
        /// For a namespace the owner created with an external model: that model's name (the replica then accepts
        /// only roots committing it).
        #[arg(long, requires = "dim")]
        external_model: Option<String>,
        /// The external model's dimension.
        #[arg(long, requires = "external_model")]
        dim: Option<u32>,
    },
    /// Print the node id (the public key that signs roots) alone on one line.
    Id {
        /// Read it from this data dir's key file instead of asking the node.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Show a namespace's signed root (the latest, or --seq N).
    Root {
        /// Namespace.
        #[arg(long = "ns")]
        ns: String,
        /// A past root's sequence number.
        #[arg(long)]
        seq: Option<u64>,
    },
    /// Embedding models by hash from peers: list what is installed or what a peer offers, fetch one.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Check a file saved with --proof-out, offline. Exits 0 only if it verifies.
    Verify {
        /// The file.
        file: PathBuf,
        /// Node id to trust (hex). Without it the file is checked against the signer it names (with a warning).
        #[arg(long)]
        trust: Option<String>,
        /// Require at least W valid witness cosignatures of the proof's root among those saved in the file, from
        /// keys in the witness set (--witness, --witness-file).
        #[arg(long, value_name = "W", default_value_t = 0)]
        witnesses: u32,
        /// The witness set.
        #[command(flatten)]
        set: WitnessSet,
        /// For a saved recall: re-embed TEXT on this machine and require the proof's query vector to be its
        /// embedding (the answer was for this text). Needs the model `cairn serve` uses.
        #[arg(long, value_name = "TEXT")]
        check_query: Option<String>,
        /// Chain anchoring required of the file's root (the roots in between are read from --node).
        #[command(flatten)]
        anchored: AnchoredArgs,
    },
    /// Anchor a namespace's current root on a chain (`cairn anchor --ns NS --rpc URL --contract ADDR --key FILE`),
    /// or deploy the anchor contract (`cairn anchor deploy`).
    Anchor(AnchorArgs),
}

/// `cairn anchor`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AnchorArgs {
    /// `deploy`: put the anchor contract on a chain.
    #[command(subcommand)]
    pub deploy: Option<AnchorCommand>,
    /// The namespace whose current root to anchor.
    #[arg(long = "ns")]
    pub ns: Option<String>,
    /// Anchor this past root instead of the current one.
    #[arg(long)]
    pub seq: Option<u64>,
    /// The chain and the key that pays.
    #[command(flatten)]
    pub chain: ChainArgs,
    /// The anchor contract's address (0x…).
    #[arg(long, value_name = "ADDR")]
    pub contract: Option<String>,
}

/// A chain's JSON-RPC endpoint and the account key that signs transactions.
#[derive(Debug, Args, Clone)]
pub struct ChainArgs {
    /// JSON-RPC endpoint of the chain (http:// or https://).
    #[arg(long, value_name = "URL")]
    pub rpc: Option<String>,
    /// File holding the paying account's secp256k1 secret key as hex.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Longest wait for the chain: a transaction until its receipt, or a read.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_ttl)]
    pub rpc_timeout: u64,
}

/// `cairn anchor deploy`.
#[derive(Debug, Subcommand)]
pub enum AnchorCommand {
    /// Deploy the anchor contract (creation bytecode compiled from server/contracts/CairnAnchor.sol, e.g. by
    /// scripts/chain-setup) and print its address.
    Deploy {
        /// The chain and the key that pays.
        #[command(flatten)]
        chain: ChainArgs,
        /// File with the contract's creation bytecode as hex.
        #[arg(long, value_name = "FILE")]
        bytecode: PathBuf,
    },
}

/// `cairn model ...`: models by hash, from peers (no node needed).
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// The models installed in the cache (each file checked against its manifest), or with --from the models a
    /// peer offers.
    List {
        /// Ask this peer (its ticket) what it offers.
        #[arg(long, value_name = "TICKET", value_parser = parse_ticket)]
        from: Option<crate::p2p::ticket::Ticket>,
        /// The cache root (default `$CAIRN_CACHE` or `~/.cache/cairn`).
        #[arg(long)]
        cache: Option<PathBuf>,
    },
    /// Fetch a model from peers by hash and install it into the cache (with the ONNX Runtime library, if the
    /// cache has none and the peer's is the one pinned for this platform).
    Fetch {
        /// Peers to ask, in order (repeatable); one that serves a bad file is skipped.
        #[arg(long, value_name = "TICKET", value_parser = parse_ticket, required = true)]
        from: Vec<crate::p2p::ticket::Ticket>,
        /// The model wanted (default: the one model the first peer offers).
        #[arg(long, value_name = "HASH", value_parser = parse_model_hash)]
        model: Option<[u8; 32]>,
        /// Accept this model although this build of cairn does not pin it.
        #[arg(long, value_name = "HASH", value_parser = parse_model_hash)]
        allow_unpinned: Option<[u8; 32]>,
        /// The cache root (default `$CAIRN_CACHE` or `~/.cache/cairn`).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Do not install the peer's ONNX Runtime library.
        #[arg(long)]
        no_runtime: bool,
    },
}

fn parse_ticket(s: &str) -> Result<crate::p2p::ticket::Ticket, String> {
    crate::p2p::ticket::Ticket::parse(s).map_err(|e| e.to_string())
}

fn parse_model_hash(s: &str) -> Result<[u8; 32], String> {
    crate::models::parse_hash(s)
}

/// `cairn peer ...`.
#[derive(Debug, Subcommand)]
pub enum PeerCommand {
    /// Add a peer from its ticket (printed by `cairn ticket` on that node).
    Add {
        /// NODE_ID@ADDR[,ADDR...]
        ticket: String,
    },
    /// Remove a peer.
    Remove {
        /// Its node id (hex).
        node_id: String,
    },
}

/// `cairn token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Ask the node for a new token (your token needs admin on every prefix). Prints the token.
    Mint {
        /// Namespace prefix the token covers (repeatable; `team` covers `team` and `team/...`; `""` covers all).
        #[arg(long = "ns", required = true)]
        ns: Vec<String>,
        /// Rights: read, write, forget, admin (comma-separated or repeated).
        #[arg(long, required = true, value_delimiter = ',')]
        rights: Vec<String>,
        /// Lifetime, e.g. 90s, 30m, 24h, 7d (default: until revoked).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<u64>,
    },
    /// Narrow a token offline (no node involved): only these prefixes and rights, and an earlier expiry. The
    /// result can never do more than the token it came from.
    Attenuate {
        /// The token to narrow.
        token: String,
        /// Namespace prefix (repeatable).
        #[arg(long = "ns", required = true)]
        ns: Vec<String>,
        /// Rights to keep: read, write, forget, admin.
        #[arg(long, required = true, value_delimiter = ',')]
        rights: Vec<String>,
        /// Lifetime from now, e.g. 1h.
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<u64>,
    },
    /// Show what a token says (its blocks and revocation ids), offline. Does not check its signature.
    Inspect {
        /// The token (default: the one --token / CAIRN_TOKEN would send).
        token: Option<String>,
    },
    /// Revoke a token and every token made from it, by a revocation id from `cairn token inspect`.
    Revoke {
        /// Revocation id (hex).
        id: String,
    },
}

/// Parses a duration like `90s`, `30m`, `24h`, `7d` (a bare number is seconds) into seconds.
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 30m, 24h or 7d"))?;
    let mul = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: unit must be s, m, h or d")),
    };
    match n.checked_mul(mul) {
        Some(0) | None => Err(format!("{s:?}: must be between 1 s and 100 years")),
        Some(v) if v > 100 * 365 * 86_400 => Err(format!("{s:?}: must be at most 100 years")),
        Some(v) => Ok(v),
    }
}

/// Options that make a read verifiable.
#[derive(Debug, Args, Default, Clone)]
pub struct ProofArgs {
    /// Ask for a proof and verify the answer before printing it (exit non-zero if it does not verify).
    #[arg(long)]
    pub verify: bool,
    /// The node id to trust (hex). Default: the id pinned for this node address, recorded on first contact.
    #[arg(long)]
    pub trust: Option<String>,
    /// Save the answer with its proof to FILE (for `cairn verify FILE`). Implies --verify.
    #[arg(long, value_name = "FILE")]
    pub proof_out: Option<PathBuf>,
    /// Require at least W valid cosignatures of the proof's root from distinct witnesses in the witness set
    /// (--witness, --witness-file), besides the owner's signature. Implies --verify.
    #[arg(long, value_name = "W", default_value_t = 0)]
    pub witnesses: u32,
    /// The witness set.
    #[command(flatten)]
    pub set: WitnessSet,
    /// Chain anchoring required of the answer's root.
    #[command(flatten)]
    pub anchored: AnchoredArgs,
}

/// `--anchored`: the answer's root must be anchored on a chain, or descend from an anchored root.
#[derive(Debug, Args, Default, Clone)]
pub struct AnchoredArgs {
    /// Require the answer's root to be anchored on this chain, or to descend through the owner's signed chain from
    /// an anchored root (and lead to the next anchored root, if any): RPC_URL,CONTRACT_ADDRESS. Anchors count
    /// only if the signed root they carry verifies under the trusted node id. Implies --verify.
    #[arg(long, value_name = "RPC,ADDR")]
    pub anchored: Option<String>,
    /// With --anchored: the anchored root the answer descends from may be at most this old (90s, 30m, 24h, 7d).
    #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = parse_ttl)]
    pub anchored_max_age: u64,
    /// With --anchored: most roots fetched from the node to link the answer to the anchors around it.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub anchored_max_roots: u64,
    /// With --anchored: longest wait for the chain's RPC endpoint.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_ttl)]
    pub anchored_timeout: u64,
    /// With --anchored: the first block searched for anchors (the contract's deployment block). Anchors in
    /// earlier blocks are not seen; public RPC endpoints cap how far back one query may reach.
    #[arg(long, value_name = "BLOCK", default_value_t = 0)]
    pub anchored_from_block: u64,
    /// With --anchored: most MiB read of the chain endpoint's answer listing the anchors (a larger answer fails
    /// the check rather than fill memory).
    #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub anchored_max_mb: u64,
}

/// The keys whose cosignatures count toward `--witnesses`: only these. Anyone can make fresh keys and cosign a
/// fork, so a cosignature counts only from a key the verifier chose to trust beforehand.
#[derive(Debug, Args, Default, Clone)]
pub struct WitnessSet {
    /// A witness key (hex node id) whose cosignatures count. Repeatable.
    #[arg(long = "witness", value_name = "NODE_ID", value_parser = parse_node_id)]
    pub witness: Vec<[u8; 32]>,
    /// A file of witness keys, one hex node id per line (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    pub witness_file: Option<PathBuf>,
}

impl WitnessSet {
    /// The keys of `--witness` and `--witness-file` together; an error if `needed` > 0 and the set is empty.
    pub fn keys(&self, needed: u32) -> anyhow::Result<Vec<[u8; 32]>> {
        let mut keys = self.witness.clone();
        if let Some(f) = &self.witness_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?;
            for (i, line) in text.lines().enumerate() {
                let l = line.split('#').next().unwrap_or("").trim();
                if l.is_empty() {
                    continue;
                }
                keys.push(
                    parse_node_id(l)
                        .map_err(|e| anyhow::anyhow!("{} line {}: {e}", f.display(), i + 1))?,
                );
            }
        }
        if needed > 0 && keys.is_empty() {
            anyhow::bail!(
                "--witnesses {needed} needs the witness keys you trust: give --witness NODE_ID (repeatable) or \
                 --witness-file FILE; cosignatures from other keys never count"
            );
        }
        Ok(keys)
    }
}

impl ProofArgs {
    /// Whether a proof is wanted.
    pub fn wanted(&self) -> bool {
        self.verify
            || self.proof_out.is_some()
            || self.witnesses > 0
            || self.anchored.anchored.is_some()
    }
}

/// Options of `cairn serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Read settings from this TOML file: any flag below, by its long name (`max-in-flight = 512`, `tls = true`,
    /// `witness = ["…"]`). Flags given on the command line win over the file; repeatable flags add up.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective settings (command line, environment, config file and defaults) as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Where the node keeps its state.
    #[arg(long, env = "CAIRN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address for the gRPC API (loopback unless told otherwise).
    #[arg(long, env = "CAIRN_LISTEN", default_value = "127.0.0.1:7420")]
    pub listen: String,
    /// Address of the iroh endpoint that peers replicate from (UDP; loopback unless told otherwise; port 0 picks
    /// a free port, shown by `cairn ticket`).
    #[arg(long, env = "CAIRN_P2P_LISTEN", default_value = "127.0.0.1:0")]
    pub p2p_listen: std::net::SocketAddr,
    /// Opt in to iroh relays and public address lookup, for nodes on different networks (needs the internet).
    /// Off by default: peers are reached only at the direct addresses in their tickets.
    #[arg(long, env = "CAIRN_P2P_PUBLIC")]
    pub p2p_public: bool,
    /// Directory of the embedding model (model.onnx, tokenizer files, manifest.json), as `scripts/provision-model`
    /// writes it.
    #[arg(long, env = "CAIRN_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// Path of the ONNX Runtime shared library (libonnxruntime.so).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_lib: Option<PathBuf>,
    /// Peers to fetch the embedding model from (by hash, over iroh) when the model directory does not hold it,
    /// and the ONNX Runtime library when there is none. Every file is checked against the model's manifest and
    /// the manifest against the model hash; the model is installed into the cache. Repeatable: peers are tried
    /// in order, and one that serves a bad file is skipped.
    #[arg(long = "model-from", value_name = "TICKET", value_parser = parse_ticket)]
    pub model_from: Vec<crate::p2p::ticket::Ticket>,
    /// With --model-from: the model wanted (its hash, as roots carry it). Default: the model directory's, or
    /// the one model the first peer offers.
    #[arg(long, value_name = "HASH", value_parser = parse_model_hash)]
    pub model_hash: Option<[u8; 32]>,
    /// With --model-from: accept this model although this build of cairn does not pin it.
    #[arg(long, value_name = "HASH", value_parser = parse_model_hash)]
    pub allow_unpinned: Option<[u8; 32]>,
    /// Do not offer this node's model (and ONNX Runtime library) to peers over `cairn/model/1`.
    #[arg(long)]
    pub no_serve_model: bool,
    /// Largest memory text in bytes.
    #[arg(long, default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(1..=8 << 20))]
    pub max_text_bytes: u32,
    /// HNSW: links per node (M).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(2..=256))]
    pub hnsw_m: u16,
    /// HNSW: search breadth while building.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub ef_construction: u16,
    /// HNSW: default search breadth of Recall.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub ef_search: u16,
    /// Namespaces with at most this many graph nodes get exact-mode recall proofs (all leaves, exact top-k).
    /// (At most 200,000: the verifier's cap on nodes per proof.)
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(0..=200_000))]
    pub exact_proof_limit: u64,
    /// Recall's ranking for a text query (without filter or prefix) that names no mode: hybrid (reciprocal-rank
    /// fusion of semantic and BM25), semantic or lexical. A call's `mode` overrides it.
    #[arg(long, default_value = "hybrid")]
    pub recall_mode: crate::engine::RecallMode,
    /// Lexical and hybrid Recall: candidates each ranking contributes when a call names no depth.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub fusion_depth: u16,
    /// Most texts the embedder takes into one batch (shared by concurrent requests; embedded 32 texts per model
    /// call, with queries served between calls). A request larger than this is embedded in chunks of this size.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub embed_batch: u16,
    /// Most gRPC calls the node works on at once (all connections together); a call beyond it is refused at
    /// once with RESOURCE_EXHAUSTED instead of queueing.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_in_flight: u32,
    /// Longest a gRPC call may take on the node, in seconds (a client's shorter deadline wins); past it the
    /// call ends with CANCELLED. Writes already committing still finish.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub request_timeout: u32,
    /// Seconds between HTTP/2 and TCP keepalive probes on gRPC connections; a peer that does not answer a
    /// probe within 20 s is disconnected.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3_600))]
    pub keepalive: u32,
    /// Most signed roots this node puts in one catch-up answer or roots reply to a peer (a replica further
    /// behind fetches the roots in between, up to 262,144, to link its chain).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u16).range(2..=4096))]
    pub chain_roots: u16,
    /// Where the node records the newest root it published per namespace, outside the data dir (default
    /// `$XDG_STATE_HOME/cairn/published` or `~/.local/state/cairn/published`). A data dir restored from an older
    /// copy is caught against it: writes to a namespace that would sign a published seq again are refused.
    #[arg(long, env = "CAIRN_PUBLISHED_DIR")]
    pub published_dir: Option<PathBuf>,
    /// Write to this namespace although its data dir is older than the roots already published (clients and
    /// replicas that saw the newer roots will report equivocation). Repeatable.
    #[arg(long = "allow-fork", value_name = "NAMESPACE")]
    pub allow_fork: Vec<String>,
    /// Before serving, ask every known peer for the latest root of each namespace this node owns, for at most
    /// this many seconds: a peer holding a newer root signed by this node means the data dir is an older copy
    /// (restored, perhaps on another machine), and writes to that namespace are refused as with the
    /// published-seq record. 0 skips the check.
    #[arg(long, default_value_t = 10)]
    pub peer_check_secs: u64,
    /// Free space (MiB) the data dir's disk must keep: below it, Remember and replica installs are refused with
    /// RESOURCE_EXHAUSTED naming the disk, while reads and Forget go on (0 turns the floor off). The model is
    /// copied for offering to peers only if the disk keeps this much free after the copy.
    #[arg(long, default_value_t = 256)]
    pub min_free_mb: u64,
    /// Most WatchRoots streams open at once; one more is refused with RESOURCE_EXHAUSTED. A stream is freed as
    /// soon as its client disconnects.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_watchers: u32,
    /// Most MiB of memories in one List page or Get answer: a List page that would be larger ends early, with a
    /// page token for the rest; a Get answer names the ids it left out in `unreturned` (at least one memory is
    /// always returned).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_page_mb: u32,
    /// Most graph nodes a Recall with `exact = true` (or an exact-mode proof asked for with `exact`) may score;
    /// larger namespaces answer RESOURCE_EXHAUSTED. Small namespaces get exact proofs anyway
    /// (--exact-proof-limit).
    #[arg(long, default_value_t = 200_000)]
    pub max_exact: u64,
    /// Most memories a ranked filtered Recall (any proof with a filter; lexical or hybrid with a filter) may score:
    /// the proof carries each one's vector, about 0.5 KB with the default model. A filter whose metadata pairs
    /// allow more (or a time range alone over a larger namespace) answers RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=200_000))]
    pub max_filter_candidates: u64,
    /// MiB of RAM the state file's page cache (redb) may hold. The node keeps its namespaces' rows in its own
    /// structures, so the state file is read mostly at start-up; a larger cache only keeps those pages resident
    /// (redb's own default, 1 GiB, grows with the state file: about 23 MB at 10k long memories).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub state_cache_mb: u32,
    /// Keep cosignatures from this key (hex node id) although it is not a peer. Cosignatures from the node
    /// itself and its peers are always kept; any other key's are dropped. Repeatable.
    #[arg(long, value_name = "NODE_ID", value_parser = parse_node_id)]
    pub witness: Vec<[u8; 32]>,
    /// Seconds between scrub passes. A forgotten memory's text and record leave the disk when the Forget (or,
    /// on a replica, the catch-up) commits; its vector, metadata and id leave the saved HNSW graph and the
    /// state file at the next pass, which rewrites them. The state file rewrite blocks other state calls while
    /// it runs (about 0.3 s at 10k memories, 3 s at 100k), so it waits at least ten times its last duration
    /// before running again: everything is gone within the larger of this and that.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub scrub_secs: u64,
    /// Anchor the roots of the namespaces this node owns on a chain while serving: RPC_URL,CONTRACT_ADDRESS (see
    /// `cairn anchor`). Needs --anchor-key and --anchor-every and/or --anchor-interval. Off by default.
    #[arg(long, value_name = "RPC,ADDR", requires = "anchor_key")]
    pub anchor_to: Option<String>,
    /// With --anchor-to: file holding the paying account's secp256k1 secret key as hex.
    #[arg(long, value_name = "FILE", requires = "anchor_to")]
    pub anchor_key: Option<PathBuf>,
    /// With --anchor-to: anchor a namespace once its root is N seqs past its last anchor (0: not by count).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub anchor_every: u64,
    /// With --anchor-to: anchor a namespace whose root changed once this long has passed since its last anchor
    /// (90s, 30m, 24h, 7d).
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    pub anchor_interval: Option<u64>,
    /// With --anchor-to: longest wait for the chain per operation (a failed or timed-out anchor is retried later).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_ttl)]
    pub anchor_timeout: u64,
    /// Serve gRPC over TLS with a self-signed certificate made into the data dir on first start (`tls.crt`,
    /// `tls.key`); its SHA-256 fingerprint is printed at start-up for clients to pin (`--tls-pin`).
    #[arg(long, env = "CAIRN_TLS", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls: bool,
    /// Serve gRPC over TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "CAIRN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "CAIRN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (`GET /metrics`; off by default). The endpoint has no
    /// authentication: keep it on loopback or a monitoring network.
    #[arg(long, env = "CAIRN_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Export a trace span per gRPC call to this OTLP/HTTP (protobuf) collector, e.g. http://127.0.0.1:4318
    /// (`/v1/traces` is appended). Off by default. Spans are exported in batches from a thread of their own and
    /// flushed at shutdown.
    #[arg(long, env = "CAIRN_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Turn token checks off: anyone who reaches the port may do anything. For benchmarks and throwaway nodes.
    #[arg(long)]
    pub no_auth: bool,
    /// Allow a non-loopback --listen without TLS or without token checks (with a loud warning). Without it
    /// such a node refuses to start.
    #[arg(long)]
    pub insecure: bool,
    /// Most cosignatures kept per witness (a peer or a --witness key) per second. They are written in batches
    /// (one transaction per 100 ms, through a queue of 4,096); beyond this rate, or with the queue full, they are
    /// dropped (cosignatures are advisory, and a witness that keeps seeing a root sends them again).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_cosigs_per_sec: u32,
}

fn parse_node_id(s: &str) -> Result<[u8; 32], String> {
    hex::decode(s)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| format!("{s:?} is not a node id (64 hex digits)"))
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// The default data directory: `$XDG_DATA_HOME/cairn` or `~/.local/share/cairn`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("cairn");
    }
    home().join(".local/share/cairn")
}

/// The cache root where `scripts/provision-model` puts the model and ONNX Runtime: `$CAIRN_CACHE` or
/// `~/.cache/cairn`.
/// Where the embedding model and ONNX Runtime are found: `CAIRN_MODEL_DIR` / `ORT_DYLIB_PATH`, or what
/// `scripts/provision-model` writes under the cache root.
pub fn local_embed_config(
    model_dir: Option<PathBuf>,
    ort_lib: Option<PathBuf>,
) -> crate::embed::EmbedConfig {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let cache = cache_root();
    crate::embed::EmbedConfig {
        model_dir: model_dir
            .or_else(|| env("CAIRN_MODEL_DIR"))
            .unwrap_or_else(|| cache.join("models/all-minilm-l6-v2")),
        ort_lib: ort_lib
            .or_else(|| env("ORT_DYLIB_PATH"))
            .unwrap_or_else(|| cache.join("ort/libonnxruntime.so")),
        max_batch: 32,
        threads: None,
    }
}

pub fn cache_root() -> PathBuf {
    if let Some(x) = std::env::var_os("CAIRN_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(x);
    }
    home().join(".cache/cairn")
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}
