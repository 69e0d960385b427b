//! Roots anchored on an Ethereum-compatible chain (feature `anchor`; docs/PROOFS.md, "Anchoring").
//!
//! The contract (`server/contracts/CairnAnchor.sol`) records anyone's claim that a (node id, namespace) had a
//! root at a seq, with the signed root record. This module submits anchors, reads them back from the contract's
//! event log, and checks an answer against them with the pure rule in [`cairn_index::anchor`], fetching the
//! roots it needs from the node. It talks JSON-RPC over HTTP(S) with alloy (the log read with reqwest directly, to
//! bound the answer's size).

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{keccak256, Address, Bytes, B256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::SolEvent;
use cairn_index::anchor::{self as rule, Anchor};
use cairn_index::root::SignedRoot;

use crate::verify::Verified;
use crate::CairnClient;

sol! {
    /// The interface of `server/contracts/CairnAnchor.sol` (contract version 1).
    #[sol(rpc)]
    contract CairnAnchor {
        event Anchored(bytes32 indexed nodeId, bytes32 indexed nsHash, address indexed submitter, uint64 seq, bytes32 root, uint64 time, bytes signedRoot);
        error SeqNotHigher(uint64 seq, uint64 last);
        function anchor(bytes32 nodeId, string calldata ns, uint64 seq, bytes32 root, bytes calldata signedRoot) external;
        function latest(address submitter, bytes32 nodeId, string calldata ns) external view returns (uint64 seq, bytes32 root, uint64 time);
    }
}

/// Why anchoring or an anchored check failed.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// A flag or file is malformed (RPC URL, contract address, key file, bytecode).
    #[error("{0}")]
    Config(String),
    /// The chain's RPC endpoint failed or answered something unusable.
    #[error("chain RPC: {0}")]
    Rpc(String),
    /// The contract refused the anchor: its seq is not higher than this submitter's last one.
    #[error("the contract refused seq {seq}: this submitter already anchored seq {last} for this namespace")]
    SeqNotHigher {
        /// The seq submitted.
        seq: u64,
        /// The submitter's last anchored seq.
        last: u64,
    },
    /// The answer does not meet the anchoring rule.
    #[error("verification failed: {0}")]
    Rule(#[from] rule::AnchorError),
    /// A call to the node failed.
    #[error(transparent)]
    Node(#[from] crate::Error),
    /// A root the node served does not decode.
    #[error("verification failed: root {seq}: {reason}")]
    Root {
        /// Its seq.
        seq: u64,
        /// Why.
        reason: String,
    },
}

/// reqwest (under alloy) is built without a TLS provider of its own: use the ring provider the SDK's gRPC TLS
/// uses, installed once per process (a provider installed earlier by the application wins).
fn ensure_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn rpc(e: impl std::fmt::Display) -> AnchorError {
    AnchorError::Rpc(e.to_string())
}

/// A chain endpoint and the anchor contract on it: `RPC_URL,CONTRACT_ADDRESS` on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// JSON-RPC endpoint (`http://` or `https://`).
    pub rpc: alloy::transports::http::reqwest::Url,
    /// The contract's address.
    pub contract: Address,
    /// Longest wait for one operation on the chain (a read, or a transaction until its receipt).
    pub timeout: Duration,
    /// First block searched for anchors: the contract's deployment block, say. Public endpoints cap how many
    /// blocks one log query may span, and anchors older than this are not seen.
    pub from_block: u64,
    /// Most bytes read of the endpoint's answer listing the anchors: an endpoint cannot make the verifier hold
    /// more than this in memory.
    pub max_log_bytes: usize,
}

/// Default of [`Target::max_log_bytes`]: 64 MiB, about 100,000 anchors.
pub const DEFAULT_MAX_LOG_BYTES: usize = 64 << 20;

/// Default of [`Target::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs one chain operation with `t` as its deadline.
async fn within<T>(
    t: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T, AnchorError>>,
) -> Result<T, AnchorError> {
    tokio::time::timeout(t, f)
        .await
        .map_err(|_| AnchorError::Rpc(format!("{what}: no answer within {} s", t.as_secs_f64())))?
}

impl Target {
    /// From an RPC URL and a contract address (`0x…`, 20 bytes).
    pub fn new(rpc: &str, contract: &str) -> Result<Self, AnchorError> {
        let url = alloy::transports::http::reqwest::Url::parse(rpc)
            .map_err(|e| AnchorError::Config(format!("RPC URL {rpc:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(AnchorError::Config(format!(
                "RPC URL {rpc:?}: only http and https are supported"
            )));
        }
        let contract = Address::from_str(contract.trim())
            .map_err(|e| AnchorError::Config(format!("contract address {contract:?}: {e}")))?;
        Ok(Target {
            rpc: url,
            contract,
            timeout: DEFAULT_TIMEOUT,
            from_block: 0,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
        })
    }
}

impl FromStr for Target {
    type Err = AnchorError;

    /// `RPC_URL,CONTRACT_ADDRESS`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (rpc, addr) = s.rsplit_once(',').ok_or_else(|| {
            AnchorError::Config(format!("{s:?}: expected RPC_URL,CONTRACT_ADDRESS"))
        })?;
        Target::new(rpc.trim(), addr)
    }
}

/// Reads a chain account key: a file holding the 32-byte secp256k1 secret as hex (`0x` optional).
pub fn load_key(path: &std::path::Path) -> Result<PrivateKeySigner, AnchorError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AnchorError::Config(format!("cannot read key {}: {e}", path.display())))?;
    let t = text.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    let mut b = [0u8; 32];
    hex::decode_to_slice(t, &mut b).map_err(|_| {
        AnchorError::Config(format!(
            "key {}: expected 32 bytes of hex (a secp256k1 secret key)",
            path.display()
        ))
    })?;
    PrivateKeySigner::from_bytes(&B256::from(b))
        .map_err(|e| AnchorError::Config(format!("key {}: {e}", path.display())))
}

/// What a submitted anchor cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// Transaction hash (`0x…`).
    pub tx: String,
    /// Block it was included in.
    pub block: u64,
    /// Gas used.
    pub gas_used: u64,
}

/// Anchors a signed root: one transaction from `key`'s account, waited for until included.
pub async fn submit(
    target: &Target,
    key: &PrivateKeySigner,
    root: &SignedRoot,
) -> Result<Submitted, AnchorError> {
    within(
        target.timeout,
        "anchor transaction",
        submit_inner(target, key, root),
    )
    .await
}

async fn submit_inner(
    target: &Target,
    key: &PrivateKeySigner,
    root: &SignedRoot,
) -> Result<Submitted, AnchorError> {
    ensure_tls();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(key.clone()))
        .connect_http(target.rpc.clone());
    let c = CairnAnchor::new(target.contract, &provider);
    let r = &root.record;
    let call = c.anchor(
        B256::from(r.node_id),
        r.namespace.clone(),
        r.seq,
        B256::from(r.hash()),
        Bytes::from(root.encode()),
    );
    let pending =
        call.send().await.map_err(
            |e| match e.as_decoded_error::<CairnAnchor::SeqNotHigher>() {
                Some(x) => AnchorError::SeqNotHigher {
                    seq: x.seq,
                    last: x.last,
                },
                None => rpc(e),
            },
        )?;
    let receipt = pending.get_receipt().await.map_err(rpc)?;
    if !receipt.status() {
        return Err(AnchorError::Rpc(format!(
            "anchor transaction {} reverted",
            receipt.transaction_hash
        )));
    }
    Ok(Submitted {
        tx: receipt.transaction_hash.to_string(),
        block: receipt.block_number.unwrap_or(0),
        gas_used: receipt.gas_used,
    })
}

/// The newest anchor `submitter` made for (`node_id`, `ns`): (seq, root hash, block time); seq 0 if none.
pub async fn latest(
    target: &Target,
    submitter: Address,
    node_id: &[u8; 32],
    ns: &str,
) -> Result<(u64, [u8; 32], u64), AnchorError> {
    ensure_tls();
    let provider = ProviderBuilder::new().connect_http(target.rpc.clone());
    let c = CairnAnchor::new(target.contract, &provider);
    let call = c.latest(submitter, B256::from(*node_id), ns.to_owned());
    let r = within(target.timeout, "reading the last anchor", async {
        call.call().await.map_err(rpc)
    })
    .await?;
    Ok((r.seq, r.root.0, r.time))
}

/// Deploys the contract from its creation bytecode (hex, as `solc` writes it); returns its address and the gas
/// used.
pub async fn deploy(
    rpc_url: &str,
    key: &PrivateKeySigner,
    bytecode_hex: &str,
    timeout: Duration,
) -> Result<(Address, u64), AnchorError> {
    within(
        timeout,
        "deployment",
        deploy_inner(rpc_url, key, bytecode_hex),
    )
    .await
}

async fn deploy_inner(
    rpc_url: &str,
    key: &PrivateKeySigner,
    bytecode_hex: &str,
) -> Result<(Address, u64), AnchorError> {
    let url = alloy::transports::http::reqwest::Url::parse(rpc_url)
        .map_err(|e| AnchorError::Config(format!("RPC URL {rpc_url:?}: {e}")))?;
    let t = bytecode_hex.trim();
    let code = hex::decode(t.strip_prefix("0x").unwrap_or(t))
        .map_err(|e| AnchorError::Config(format!("bytecode: {e}")))?;
    ensure_tls();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(key.clone()))
        .connect_http(url);
    let tx = TransactionRequest::default().with_deploy_code(code);
    let receipt = provider
        .send_transaction(tx)
        .await
        .map_err(rpc)?
        .get_receipt()
        .await
        .map_err(rpc)?;
    let addr = receipt
        .contract_address
        .filter(|_| receipt.status())
        .ok_or_else(|| AnchorError::Rpc("the deployment created no contract".into()))?;
    Ok((addr, receipt.gas_used))
}

/// Every anchor logged for (`node_id`, `ns`), by any submitter, as the chain reports them (not yet checked:
/// [`cairn_index::anchor::counted`] keeps those whose signed record verifies). The `eth_getLogs` answer is read
/// piece by piece and refused once it passes `target.max_log_bytes`, so a hostile endpoint cannot exhaust memory.
pub async fn read(
    target: &Target,
    node_id: &[u8; 32],
    ns: &str,
) -> Result<Vec<Anchor>, AnchorError> {
    ensure_tls();
    let filter = Filter::new()
        .address(target.contract)
        .event_signature(CairnAnchor::Anchored::SIGNATURE_HASH)
        .topic1(B256::from(*node_id))
        .topic2(keccak256(ns.as_bytes()))
        .from_block(target.from_block);
    let body = serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "eth_getLogs",
        "params": [filter],
    }))
    .map_err(rpc)?;
    let raw = within(target.timeout, "reading anchors", async {
        // `Client::new()` panics when no TLS backend can start; `build()` reports it instead.
        let http = reqwest::Client::builder().build().map_err(rpc)?;
        let mut resp = http
            .post(target.rpc.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(rpc)?;
        if !resp.status().is_success() {
            return Err(AnchorError::Rpc(format!(
                "reading anchors: HTTP {}",
                resp.status()
            )));
        }
        let mut raw = Vec::new();
        while let Some(piece) = resp.chunk().await.map_err(rpc)? {
            if raw.len() + piece.len() > target.max_log_bytes {
                return Err(AnchorError::Rpc(format!(
                    "reading anchors: the endpoint's answer passed {} bytes (--anchored-max-mb)",
                    target.max_log_bytes
                )));
            }
            raw.extend_from_slice(&piece);
        }
        Ok(raw)
    })
    .await?;
    #[derive(serde::Deserialize)]
    struct Answer {
        result: Option<Vec<alloy::rpc::types::Log>>,
        error: Option<serde_json::Value>,
    }
    let answer: Answer = serde_json::from_slice(&raw)
        .map_err(|e| AnchorError::Rpc(format!("reading anchors: {e}")))?;
    let logs = match (answer.result, answer.error) {
        (_, Some(e)) => return Err(AnchorError::Rpc(format!("reading anchors: {e}"))),
        (Some(logs), None) => logs,
        (None, None) => {
            return Err(AnchorError::Rpc(
                "reading anchors: an answer with neither result nor error".into(),
            ))
        }
    };
    let mut out = Vec::with_capacity(logs.len());
    for log in logs {
        // A log that does not decode as the event (another contract at that address) is not an anchor.
        let Ok(d) = log.log_decode::<CairnAnchor::Anchored>() else {
            continue;
        };
        let e = d.inner.data;
        out.push(Anchor {
            submitter: e.submitter.into_array(),
            seq: e.seq,
            root: e.root.0,
            time: e.time,
            signed_root: e.signedRoot.to_vec(),
        });
    }
    Ok(out)
}

/// How strict an anchored check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The anchor at or below the answer may be at most this old (s).
    pub max_age: u64,
    /// Most roots fetched from the node to link the answer to the anchors around it.
    pub max_fetch: u64,
}

impl Default for Policy {
    /// A day, 10,000 roots.
    fn default() -> Self {
        Policy {
            max_age: 86_400,
            max_fetch: 10_000,
        }
    }
}

/// What an anchored check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// Seq of the anchor the answer descends from (or is).
    pub below: u64,
    /// Its age (s).
    pub age: u64,
    /// Seq of the next anchor, which the answer's root leads to, if any.
    pub above: Option<u64>,
}

/// Checks that a verified answer's root is anchored, or descends through the signed chain from an anchored root
/// no older than `policy.max_age` (and leads to the next anchor, if there is one), fetching the anchors from the
/// chain and the roots in between from `client`.
pub async fn check(
    client: &CairnClient,
    target: &Target,
    v: &Verified,
    ns: &str,
    policy: Policy,
) -> Result<Checked, AnchorError> {
    let owner = v.root.record.node_id;
    let anchors = read(target, &owner, ns).await?;
    let counted = rule::counted(&anchors, &owner, ns);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let seq = v.seq();
    let plan = rule::plan(&counted, seq, now, policy.max_age, policy.max_fetch)?;
    let fetch = |r: std::ops::Range<u64>| {
        let client = client.clone();
        async move {
            let mut out = Vec::with_capacity((r.end.saturating_sub(r.start)) as usize);
            for s in r {
                let root = client.root(ns, Some(s)).await?;
                out.push(
                    SignedRoot::decode(&root.signed).map_err(|e| AnchorError::Root {
                        seq: s,
                        reason: e.to_string(),
                    })?,
                );
            }
            Ok::<_, AnchorError>(out)
        }
    };
    let below = fetch(plan.below_range(seq)).await?;
    let after = fetch(plan.above_range(seq)).await?;
    rule::check(&v.root, &plan, &below, &after)?;
    Ok(Checked {
        below: plan.below.seq,
        age: now.saturating_sub(plan.below.time),
        above: plan.above.map(|a| a.seq),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::sol_types::{SolCall, SolError};

    /// The identifiers a third party needs to read and write anchors (docs/PROOFS.md, "Anchoring").
    #[test]
    fn anchoring_identifiers_match_the_spec() {
        let hex0x = |b: &[u8]| format!("0x{}", hex::encode(b));
        assert_eq!(
            hex0x(CairnAnchor::Anchored::SIGNATURE_HASH.as_slice()),
            "0xbb0da20ca7178f748e4fa344502e79ecbbc7c34b4997191554c831de0f764e04"
        );
        assert_eq!(
            hex0x(keccak256(b"agents/alice").as_slice()),
            "0xa37c6f3f3fb2df54bc10d3aa2cbe740a8495f57cdaf9464cc6cb4c845b599411"
        );
        assert_eq!(hex0x(&CairnAnchor::anchorCall::SELECTOR), "0xb049f2ca");
        assert_eq!(hex0x(&CairnAnchor::latestCall::SELECTOR), "0x4b27006b");
        assert_eq!(hex0x(&CairnAnchor::SeqNotHigher::SELECTOR), "0x9b49fb67");
        assert_eq!(
            "http://127.0.0.1:8545,0x00000000000000000000000000000000000000aa"
                .parse::<Target>()
                .map(|t| t.contract)
                .ok(),
            Some(Address::with_last_byte(0xaa))
        );
        assert!("no-comma".parse::<Target>().is_err());
        assert!("ftp://x,0x00".parse::<Target>().is_err());
    }
}
