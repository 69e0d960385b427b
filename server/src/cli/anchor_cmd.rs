//! `cairn anchor` (submit a namespace's current root to the chain, deploy the contract) and the `--anchored`
//! check of verified reads (docs/PROOFS.md, "Anchoring"). Needs the `anchor` feature (on by default).

#[cfg(feature = "anchor")]
use anyhow::Context;
use anyhow::Result;
use cairn_client::CairnClient;
use cairn_index::proof::Verified;
#[cfg(feature = "anchor")]
use serde_json::json;
use serde_json::Value;

#[cfg(feature = "anchor")]
use super::ChainArgs;
use super::{AnchorArgs, AnchorCommand, AnchoredArgs};

#[cfg(feature = "anchor")]
fn chain_key(chain: &ChainArgs) -> Result<(String, alloy::signers::local::PrivateKeySigner)> {
    let rpc = chain.rpc.clone().context("--rpc URL is required")?;
    let key = chain.key.as_ref().context("--key FILE is required")?;
    Ok((rpc, cairn_client::anchor::load_key(key)?))
}

/// `cairn anchor deploy`: deploys the contract and prints its address.
#[cfg(feature = "anchor")]
pub async fn deploy(cmd: &AnchorCommand, json_out: bool) -> Result<()> {
    let AnchorCommand::Deploy { chain, bytecode } = cmd;
    let (rpc, key) = chain_key(chain)?;
    let code = std::fs::read_to_string(bytecode)
        .with_context(|| format!("cannot read {}", bytecode.display()))?;
    let timeout = std::time::Duration::from_secs(chain.rpc_timeout);
    let (addr, gas) = cairn_client::anchor::deploy(&rpc, &key, &code, timeout).await?;
    if json_out {
        super::output::print_json(&json!({ "contract": addr.to_string(), "gas_used": gas }));
    } else {
        println!("{addr}");
    }
    Ok(())
}

/// `cairn anchor --ns NS …`: anchors the namespace's current root (or the one at `--seq`), as the node serves it.
#[cfg(feature = "anchor")]
pub async fn submit(client: &CairnClient, args: &AnchorArgs, json_out: bool) -> Result<()> {
    let ns = args.ns.as_deref().context("--ns NS is required")?;
    let (rpc, key) = chain_key(&args.chain)?;
    let contract = args
        .contract
        .as_deref()
        .context("--contract ADDR is required")?;
    let mut target = cairn_client::anchor::Target::new(&rpc, contract)?;
    target.timeout = std::time::Duration::from_secs(args.chain.rpc_timeout);
    let root = client.root(ns, args.seq).await?;
    let signed = cairn_index::root::SignedRoot::decode(&root.signed)
        .map_err(|e| anyhow::anyhow!("the node's root does not decode: {e}"))?;
    // Anchor only what verifies: a broken record would be an anchor nobody counts.
    signed
        .verify(None)
        .map_err(|e| anyhow::anyhow!("the node's root does not verify: {e}"))?;
    let t0 = std::time::Instant::now();
    let s = cairn_client::anchor::submit(&target, &key, &signed).await?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let r = &signed.record;
    if json_out {
        super::output::print_json(&json!({
            "namespace": ns,
            "seq": r.seq,
            "root": hex::encode(r.hash()),
            "node_id": hex::encode(r.node_id),
            "submitter": key.address().to_string(),
            "tx": s.tx,
            "block": s.block,
            "gas_used": s.gas_used,
            "ms": ms,
        }));
    } else {
        println!(
            "anchored {ns} seq {} root {} in block {} (tx {}, {} gas, {ms:.0} ms)",
            r.seq,
            hex::encode(r.hash()),
            s.block,
            s.tx,
            s.gas_used
        );
    }
    Ok(())
}

/// `--anchored`: checks a verified answer against the chain; `None` when not asked. The JSON says which anchor
/// the answer descends from.
#[cfg(feature = "anchor")]
pub async fn check(
    a: &AnchoredArgs,
    client: &CairnClient,
    vd: &Verified,
    ns: &str,
) -> Result<Option<Value>> {
    let Some(spec) = a.anchored.as_deref() else {
        return Ok(None);
    };
    let mut target: cairn_client::anchor::Target = spec.parse()?;
    target.timeout = std::time::Duration::from_secs(a.anchored_timeout);
    target.from_block = a.anchored_from_block;
    target.max_log_bytes =
        usize::try_from(a.anchored_max_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let policy = cairn_client::anchor::Policy {
        max_age: a.anchored_max_age,
        max_fetch: a.anchored_max_roots,
    };
    let c = cairn_client::anchor::check(client, &target, vd, ns, policy).await?;
    Ok(Some(json!({
        "anchor_seq": c.below,
        "anchor_age_s": c.age,
        "next_anchor_seq": c.above,
    })))
}

/// Without the `anchor` feature every anchoring command says so.
#[cfg(not(feature = "anchor"))]
fn unavailable() -> anyhow::Error {
    anyhow::anyhow!(
        "this cairn was built without the `anchor` feature (rebuild with default features)"
    )
}

/// `cairn anchor deploy` without the `anchor` feature.
#[cfg(not(feature = "anchor"))]
pub async fn deploy(_cmd: &AnchorCommand, _json_out: bool) -> Result<()> {
    Err(unavailable())
}

/// `cairn anchor` without the `anchor` feature.
#[cfg(not(feature = "anchor"))]
pub async fn submit(_client: &CairnClient, _args: &AnchorArgs, _json_out: bool) -> Result<()> {
    Err(unavailable())
}

/// `--anchored` without the `anchor` feature.
#[cfg(not(feature = "anchor"))]
pub async fn check(
    a: &AnchoredArgs,
    _client: &CairnClient,
    _vd: &Verified,
    _ns: &str,
) -> Result<Option<Value>> {
    if a.anchored.is_some() {
        return Err(unavailable());
    }
    Ok(None)
}
