//! Anchoring while serving (`cairn serve --anchor-to RPC,ADDR --anchor-key FILE --anchor-every N
//! --anchor-interval T`): the namespaces this node owns get their current root anchored on the chain every N roots
//! and/or every T while they change (docs/PROOFS.md, "Anchoring"). One transaction at a time; a failure is logged
//! and retried at a later tick, never blocks a write.

#[cfg(feature = "anchor")]
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
#[cfg(feature = "anchor")]
use std::time::Instant;

/// What `--anchor-*` asked for (feature-independent, so the flags parse in every build).
#[derive(Debug, Clone)]
pub struct AnchorSettings {
    /// `RPC_URL,CONTRACT_ADDRESS`.
    pub to: String,
    /// The paying account's key file.
    pub key: PathBuf,
    /// Anchor once the root is this many seqs past the last anchor (0: not by count).
    pub every: u64,
    /// Anchor a changed namespace when this long has passed since its last anchor (`None`: not by time).
    pub interval: Option<Duration>,
    /// Longest wait for the chain per operation.
    pub timeout: Duration,
}

#[cfg(feature = "anchor")]
/// How often the task looks at the namespaces' roots.
const TICK: Duration = Duration::from_secs(1);

#[cfg(feature = "anchor")]
/// Per namespace: the last seq this submitter anchored (from the contract at first sight) and when.
struct Last {
    seq: u64,
    at: Instant,
}

/// Checks the settings and starts the anchoring task. Errors (bad key file, bad target, no rule) stop start-up.
#[cfg(feature = "anchor")]
pub fn spawn(
    engine: Arc<crate::engine::Engine>,
    s: &AnchorSettings,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use cairn_client::anchor;
    if s.every == 0 && s.interval.is_none() {
        anyhow::bail!("--anchor-to needs --anchor-every N and/or --anchor-interval DURATION");
    }
    let mut target: anchor::Target = s.to.parse()?;
    target.timeout = s.timeout;
    let key = anchor::load_key(&s.key)?;
    let (every, interval) = (s.every, s.interval);
    tracing::info!(contract = %target.contract, submitter = %key.address(), every, ?interval, "anchoring owned namespaces");
    Ok(tokio::spawn(async move {
        let mut last: HashMap<String, Last> = HashMap::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for ns in engine.owned() {
                let Ok(root) = engine.root(&ns, None).await else {
                    continue; // no root yet
                };
                let seq = root.record.seq;
                if !last.contains_key(&ns) {
                    match anchor::latest(&target, key.address(), &root.record.node_id, &ns).await {
                        Ok((s, _, _)) => {
                            last.insert(
                                ns.clone(),
                                Last {
                                    seq: s,
                                    at: Instant::now(),
                                },
                            );
                        }
                        Err(e) => {
                            tracing::warn!(%ns, error = %e, "cannot read the last anchor; retrying");
                            continue;
                        }
                    }
                }
                let Some(l) = last.get(&ns) else {
                    continue;
                };
                if seq <= l.seq {
                    continue;
                }
                let by_count = every > 0 && seq - l.seq >= every;
                let by_time = interval.is_some_and(|t| l.at.elapsed() >= t);
                if !(by_count || by_time) {
                    continue;
                }
                match anchor::submit(&target, &key, &root).await {
                    Ok(r) => {
                        tracing::info!(%ns, seq, tx = %r.tx, gas = r.gas_used, "anchored");
                        last.insert(
                            ns,
                            Last {
                                seq,
                                at: Instant::now(),
                            },
                        );
                    }
                    Err(anchor::AnchorError::SeqNotHigher { last: s, .. }) => {
                        // Someone with this key anchored meanwhile (another process): start from there.
                        last.insert(
                            ns,
                            Last {
                                seq: s,
                                at: Instant::now(),
                            },
                        );
                    }
                    Err(e) => tracing::warn!(%ns, seq, error = %e, "anchoring failed; retrying"),
                }
            }
        }
    }))
}

/// Without the `anchor` feature, `--anchor-to` stops start-up with a clear message.
#[cfg(not(feature = "anchor"))]
pub fn spawn(
    _engine: Arc<crate::engine::Engine>,
    _s: &AnchorSettings,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    anyhow::bail!("--anchor-to: this cairn was built without the `anchor` feature")
}
