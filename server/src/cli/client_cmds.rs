//! Client subcommands: each connects to `--node`, makes one or a few calls and prints the result.

use anyhow::{bail, Context, Result};
use cairn_client::{CairnClient, ListOptions, NewMemory};
use serde_json::json;

use super::output::{hit_json, hit_line, memory_json, memory_line, print_json};
use super::{Cli, Command};

/// Runs a client command against the node named by `--node`.
pub async fn run(cli: Cli) -> Result<()> {
    let client = CairnClient::connect(cli.node.clone()).await?;
    let json = cli.json;
    match cli.command {
        Command::Serve(_) => unreachable!("serve is not a client command"),
        Command::Remember {
            ns,
            meta,
            created_at,
            text,
        } => {
            let item = NewMemory {
                text,
                metadata: meta.into_iter().collect(),
                created_at,
            };
            let results = client.remember(&ns, vec![item]).await?;
            let r = results.first().context("node returned no result")?;
            if json {
                print_json(&json!({
                    "ids": [r.id],
                    "deduplicated": [r.deduplicated],
                    "created_at": [r.created_at],
                }));
            } else if r.deduplicated {
                println!("{} (already remembered)", r.id);
            } else {
                println!("{}", r.id);
            }
        }
        Command::Import { ns, batch, file } => {
            super::import::run(&client, &ns, &file, batch, json).await?;
        }
        Command::Recall {
            ns,
            k,
            filters,
            since,
            until,
            ef,
            exact,
            query,
        } => {
            let mut b = client.recall(&ns, query).k(k).exact(exact);
            for (key, value) in filters {
                b = b.where_eq(key, value);
            }
            if let Some(s) = since {
                b = b.since(s);
            }
            if let Some(u) = until {
                b = b.until(u);
            }
            if let Some(ef) = ef {
                b = b.ef(ef);
            }
            let hits = b.send().await?;
            if json {
                print_json(&json!({ "hits": hits.iter().map(hit_json).collect::<Vec<_>>() }));
            } else if hits.is_empty() {
                println!("(no hits)");
            } else {
                for h in &hits {
                    println!("{}", hit_line(h));
                }
            }
        }
        Command::Get { ns, ids } => {
            let resp = client.get(&ns, ids).await?;
            if json {
                print_json(&json!({
                    "memories": resp.memories.iter().map(memory_json).collect::<Vec<_>>(),
                    "missing": resp.missing,
                }));
            } else {
                for m in &resp.memories {
                    println!("{}", memory_line(m));
                }
            }
            if !resp.missing.is_empty() {
                bail!("not found in {ns}: {}", resp.missing.join(", "));
            }
        }
        Command::List {
            ns,
            since,
            until,
            limit,
        } => {
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            while (out.len() as u64) < limit {
                let page = (limit - out.len() as u64).min(1000) as u32;
                let resp = client
                    .list(
                        &ns,
                        ListOptions {
                            since,
                            until,
                            limit: Some(page),
                            page_token: token.take(),
                        },
                    )
                    .await?;
                out.extend(resp.memories);
                if resp.next_page_token.is_empty() {
                    break;
                }
                token = Some(resp.next_page_token);
            }
            if json {
                print_json(&json!({ "memories": out.iter().map(memory_json).collect::<Vec<_>>() }));
            } else {
                for m in &out {
                    println!("{}", memory_line(m));
                }
            }
        }
        Command::Forget { ns, ids } => {
            let (forgotten, missing) = client.forget(&ns, ids).await?;
            if json {
                print_json(&json!({ "forgotten": forgotten, "missing": missing }));
            } else {
                for id in &forgotten {
                    println!("forgot {id}");
                }
            }
            if !missing.is_empty() {
                bail!("not found in {ns}: {}", missing.join(", "));
            }
        }
        Command::Embed { texts } => {
            let resp = client.embed(texts).await?;
            if json {
                let vectors: Vec<&Vec<f32>> = resp.vectors.iter().map(|v| &v.values).collect();
                print_json(&json!({ "model": resp.model, "dim": resp.dim, "vectors": vectors }));
            } else {
                println!("model {} dim {}", resp.model, resp.dim);
                for v in &resp.vectors {
                    let head: Vec<String> =
                        v.values.iter().take(8).map(|x| format!("{x:.4}")).collect();
                    println!("[{}, ...]", head.join(", "));
                }
            }
        }
        Command::Stats { ns } => {
            let s = client.stats(ns.as_deref()).await?;
            if json {
                let per: Vec<_> = s
                    .namespaces
                    .iter()
                    .map(|n| {
                        json!({
                            "namespace": n.namespace,
                            "memories": n.memories,
                            "tombstones": n.tombstones,
                            "index_points": n.index_points,
                            "newest_created_at": n.newest_created_at,
                        })
                    })
                    .collect();
                print_json(&json!({
                    "model": s.model,
                    "dim": s.dim,
                    "version": s.version,
                    "total_memories": s.total_memories,
                    "namespaces": per,
                }));
            } else {
                println!("model {} (dim {}), cairn {}", s.model, s.dim, s.version);
                println!("{} memories", s.total_memories);
                for n in &s.namespaces {
                    println!(
                        "  {}: {} memories, {} tombstones, {} index points",
                        n.namespace, n.memories, n.tombstones, n.index_points
                    );
                }
            }
        }
        Command::Namespaces => {
            let list = client.list_namespaces().await?;
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|n| json!({ "namespace": n.namespace, "memories": n.memories }))
                    .collect();
                print_json(&json!({ "namespaces": v }));
            } else {
                for n in &list {
                    println!("{}\t{}", n.namespace, n.memories);
                }
            }
        }
    }
    Ok(())
}
