//! The CLI's side of trust. The pins themselves (node id per address, TLS fingerprint, newest root seen per
//! namespace, in `roots.json`) live in `cairn_client::pins`, so the CLI, the Rust SDK and the Python SDK share one
//! verify-and-pin path and one file; here is only what belongs to a command line: the `--trust` flag and the
//! first-contact warnings on stderr.

use anyhow::{bail, Result};
use cairn_client::pins::{Chosen, PinStore};
use cairn_client::verify::parse_node_id;
use cairn_client::CairnClient;

/// Loads the CLI's pin file (`$CAIRN_STATE`, else `$XDG_STATE_HOME/cairn/roots.json`, else
/// `~/.local/state/cairn/roots.json`).
pub fn load() -> Result<PinStore> {
    Ok(PinStore::open(PinStore::default_path())?)
}

/// The node id to trust for `ns` on `node_url`: `--trust` if given, else the pinned one, else the node's (or a
/// replica namespace's owner's) on first contact, pinned from now on with a warning.
pub async fn node_id(
    pins: &mut PinStore,
    node_url: &str,
    ns: &str,
    flag: Option<&str>,
    client: &CairnClient,
) -> Result<[u8; 32]> {
    let given = flag
        .map(|t| parse_node_id(t).map_err(|e| anyhow::anyhow!("--trust: {e}")))
        .transpose()?;
    let (id, how) = pins.node_id(node_url, ns, given, client).await?;
    match how {
        Chosen::FirstContactReplica => eprintln!(
            "warning: first contact with {ns} on {node_url}, a replica: trusting its owner's node id {} from now on (pass --trust to pin it yourself)",
            hex::encode(id)
        ),
        Chosen::FirstContact => eprintln!(
            "warning: first contact with {node_url}: trusting node id {} from now on (pass --trust to pin it yourself)",
            hex::encode(id)
        ),
        Chosen::Given | Chosen::Pinned => {}
    }
    Ok(id)
}

/// Fails with a one-line reason if a node id given on the command line is malformed.
pub fn check_trust_flag(flag: Option<&str>) -> Result<()> {
    if let Some(t) = flag {
        if parse_node_id(t).is_err() {
            bail!("--trust {t:?} is not a node id (64 hex characters)");
        }
    }
    Ok(())
}
