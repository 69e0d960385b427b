//! `cairn import`: JSON Lines in, batched Remember calls out, a per-line report of bad lines.
//!
//! A bad line (not JSON, no `text`, wrong types, or rejected by the node) is reported with its line number and
//! skipped; every good line is still remembered. When the node rejects a batch because of one item, the batch
//! is retried item by item so only the offending lines fail.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::Path;

use anyhow::{Context, Result};
use cairn_client::{CairnClient, Error as ClientError, NewMemory, RememberResult};
use futures::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::json;

/// How many Remember calls run at once (the node batches concurrent calls into shared model calls).
const IN_FLIGHT: usize = 3;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    text: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    created_at: Option<u64>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    vector: Option<Vec<f32>>,
}

/// Per-line outcomes of one chunk: (line number, id or error text).
type LineOutcomes = Vec<(usize, Result<RememberResult, String>)>;
/// A chunk's line outcomes; or, when the node failed the whole chunk (unreachable, overloaded, out of disk,
/// deadline), the chunk's line numbers and that error.
type ChunkOutcome = Result<LineOutcomes, (Vec<usize>, ClientError)>;

struct LineError {
    line: usize,
    error: String,
}

/// Imports `file` into `ns`, `batch` items per call.
pub async fn run(
    client: &CairnClient,
    ns: &str,
    file: &Path,
    batch: usize,
    json: bool,
) -> Result<()> {
    let batch = batch.clamp(1, 1000);
    let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
        ))
    };

    let mut good: Vec<(usize, NewMemory)> = Vec::new();
    let mut errors: Vec<LineError> = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let n = i + 1;
        let line = line.with_context(|| format!("cannot read line {n} of {}", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(&line) {
            Ok(l) => good.push((
                n,
                NewMemory {
                    text: l.text,
                    metadata: l.metadata,
                    created_at: l.created_at,
                    key: l.key,
                    vector: l.vector,
                },
            )),
            Err(e) => errors.push(LineError {
                line: n,
                error: format!("bad JSON line: {e}"),
            }),
        }
    }

    let progress = if std::io::stderr().is_terminal() {
        let pb = ProgressBar::new(good.len() as u64);
        pb.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} memories ({per_sec}, eta {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb
    } else {
        ProgressBar::hidden()
    };

    let chunks: Vec<Vec<(usize, NewMemory)>> = good.chunks(batch).map(<[_]>::to_vec).collect();
    let outcomes: Vec<ChunkOutcome> = stream::iter(chunks)
        .map(|chunk| {
            let pb = progress.clone();
            async move {
                let len = chunk.len() as u64;
                let lines: Vec<usize> = chunk.iter().map(|(l, _)| *l).collect();
                let r = remember_chunk(client, ns, chunk)
                    .await
                    .map_err(|e| (lines, e));
                pb.inc(len);
                r
            }
        })
        .buffered(IN_FLIGHT)
        .collect()
        .await;
    progress.finish_and_clear();

    let mut ids = Vec::new();
    let (mut imported, mut deduplicated) = (0u64, 0u64);
    // Lines of chunks the node failed as a whole, and the first such failure.
    let mut unfinished: Vec<usize> = Vec::new();
    let mut node_error: Option<String> = None;
    for outcome in outcomes {
        let lines = match outcome {
            Ok(lines) => lines,
            Err((lines, e)) => {
                unfinished.extend(lines);
                node_error.get_or_insert_with(|| match &e {
                    ClientError::Status(s) => format!("{:?}: {}", s.code(), s.message()),
                    other => other.to_string(),
                });
                continue;
            }
        };
        for (line, r) in lines {
            match r {
                Ok(res) => {
                    if res.deduplicated {
                        deduplicated += 1;
                    } else {
                        imported += 1;
                    }
                    ids.push(res.id);
                }
                Err(error) => errors.push(LineError { line, error }),
            }
        }
    }
    errors.sort_by_key(|e| e.line);

    if json {
        let errs: Vec<_> = errors
            .iter()
            .map(|e| json!({ "line": e.line, "error": e.error }))
            .collect();
        println!(
            "{}",
            json!({
                "ids": ids,
                "imported": imported,
                "deduplicated": deduplicated,
                "failed": errors.len(),
                "errors": errs,
                "unfinished": unfinished.len(),
                "node_error": node_error,
            })
        );
    } else {
        for e in &errors {
            eprintln!("line {}: {}", e.line, e.error);
        }
        println!(
            "imported {imported}, already present {deduplicated}, failed {}, not done {}",
            errors.len(),
            unfinished.len()
        );
    }
    if let Some(e) = node_error {
        unfinished.sort_unstable();
        anyhow::bail!(
            "{} lines were not imported (first at line {}): the node answered {e}. Every line reported imported or \
             already present is stored; run the same import again to finish (stored lines come back as already present)",
            unfinished.len(),
            unfinished.first().copied().unwrap_or(0)
        );
    }
    if !errors.is_empty() {
        anyhow::bail!("{} of the lines failed (see above)", errors.len());
    }
    Ok(())
}

/// Remembers one chunk; if the node rejects the chunk for one of its items, retries item by item.
async fn remember_chunk(
    client: &CairnClient,
    ns: &str,
    chunk: Vec<(usize, NewMemory)>,
) -> Result<LineOutcomes, ClientError> {
    let items: Vec<NewMemory> = chunk.iter().map(|(_, m)| m.clone()).collect();
    match client.remember(ns, items).await {
        Ok(results) => Ok(chunk
            .iter()
            .map(|(l, _)| *l)
            .zip(results.into_iter().map(Ok))
            .collect()),
        Err(e) if is_item_error(&e) && chunk.len() > 1 => {
            let mut out = Vec::with_capacity(chunk.len());
            for (line, item) in chunk {
                match client.remember(ns, vec![item]).await {
                    Ok(mut r) => match r.pop() {
                        Some(r) => out.push((line, Ok(r))),
                        None => out.push((line, Err("node returned no result".into()))),
                    },
                    Err(e) if is_item_error(&e) => out.push((line, Err(e.to_string()))),
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        }
        Err(e) if is_item_error(&e) => Ok(chunk
            .into_iter()
            .map(|(l, _)| (l, Err(e.to_string())))
            .collect()),
        Err(e) => Err(e),
    }
}

/// Errors caused by the content of an item (as opposed to the node being unreachable or the namespace bad).
fn is_item_error(e: &ClientError) -> bool {
    match e {
        ClientError::Status(s) => {
            matches!(
                s.code(),
                tonic::Code::InvalidArgument | tonic::Code::ResourceExhausted
            ) && s.message().starts_with("items[")
        }
        _ => false,
    }
}
