//! `cairn model list|fetch`: embedding models by hash, from peers. No node is needed: the command runs its own
//! short-lived, local-only iroh endpoint.

use anyhow::Result;
use serde_json::json;

use super::output::print_json;
use super::ModelCommand;
use crate::models;

/// Runs a `cairn model` command.
pub async fn run(cmd: &ModelCommand, json_out: bool) -> Result<()> {
    match cmd {
        ModelCommand::List { from: None, cache } => {
            let cache = cache.clone().unwrap_or_else(super::cache_root);
            let local = models::list_local(&cache);
            if json_out {
                let v: Vec<_> = local
                    .iter()
                    .map(|m| match &m.model {
                        Ok((h, id)) => json!({ "dir": m.dir, "hash": hex::encode(h), "id": id, "pinned": m.pinned, "ok": true }),
                        Err(e) => json!({ "dir": m.dir, "ok": false, "error": e }),
                    })
                    .collect();
                print_json(&json!({ "cache": cache, "models": v }));
            } else if local.is_empty() {
                println!("no models in {}", cache.join("models").display());
            } else {
                for m in &local {
                    match &m.model {
                        Ok((h, id)) => println!(
                            "{} {id}{}\n  {}",
                            hex::encode(h),
                            if m.pinned {
                                " (pinned)"
                            } else {
                                " (not pinned)"
                            },
                            m.dir.display()
                        ),
                        Err(e) => println!("damaged {}: {e}", m.dir.display()),
                    }
                }
            }
        }
        ModelCommand::List {
            from: Some(peer), ..
        } => {
            let offers = models::list_remote(peer).await?;
            if json_out {
                let v: Vec<_> = offers
                    .iter()
                    .map(|(o, label)| {
                        let files: Vec<_> = o
                            .files
                            .iter()
                            .map(|f| json!({ "name": f.name, "blake3": hex::encode(f.blake3), "size": f.size }))
                            .collect();
                        json!({
                            "hash": hex::encode(o.hash),
                            "id": label.as_ref().ok(),
                            "error": label.as_ref().err(),
                            "pinned": models::pinned(&o.hash).is_some(),
                            "files": files,
                        })
                    })
                    .collect();
                print_json(&json!({ "peer": hex::encode(peer.id), "models": v }));
            } else if offers.is_empty() {
                println!("peer {} offers no model", hex::encode(peer.id));
            } else {
                for (o, label) in &offers {
                    let pinned = if models::pinned(&o.hash).is_some() {
                        "pinned"
                    } else {
                        "not pinned"
                    };
                    match label {
                        Ok(id) => println!("{} {id} ({pinned})", hex::encode(o.hash)),
                        Err(e) => println!("{} (refused: {e})", hex::encode(o.hash)),
                    }
                    for f in &o.files {
                        println!("  {} {} bytes", f.name, f.size);
                    }
                }
            }
        }
        ModelCommand::Fetch {
            from,
            model,
            allow_unpinned,
            cache,
            no_runtime,
        } => {
            let req = models::FetchRequest {
                from: from.clone(),
                model: *model,
                allow_unpinned: *allow_unpinned,
                cache: cache.clone().unwrap_or_else(super::cache_root),
                runtime: !no_runtime,
            };
            let f = models::fetch(&req).await?;
            if json_out {
                let skipped: Vec<_> = f
                    .skipped
                    .iter()
                    .map(|(p, r)| json!({ "peer": p, "reason": r }))
                    .collect();
                print_json(&json!({
                    "hash": hex::encode(f.hash),
                    "id": f.id,
                    "dir": f.dir,
                    "runtime": f.runtime,
                    "peer": f.peer,
                    "skipped": skipped,
                }));
            } else {
                for (p, r) in &f.skipped {
                    eprintln!("skipped peer {p}: {r}");
                }
                println!(
                    "installed {} ({}) from peer {}\n  {}",
                    f.id,
                    hex::encode(f.hash),
                    f.peer,
                    f.dir.display()
                );
                if let Some(r) = &f.runtime {
                    println!("  ONNX Runtime: {}", r.display());
                }
            }
        }
    }
    Ok(())
}
