//! Client subcommands: each connects to `--node`, makes one or a few calls and prints the result.

use anyhow::{bail, Context, Result};
use cairn_client::proof_file::{Kind, ProofFile};
use cairn_client::verify::{self as v, Verified};
use cairn_client::{CairnClient, ListOptions, NewMemory};
use cairn_index::id::MemoryId;
use cairn_proto::v1 as pb;
use serde_json::{json, Value};

use super::output::{hit_json, hit_line, memory_json, memory_line, print_json};
use super::trust::{self, check_trust_flag};
use super::{Cli, Command, ProofArgs};
use cairn_client::pins::PinStore;

fn verified_json(v: &Verified, witnesses: usize, anchored: &Option<Value>) -> Value {
    let mut o = json!({
        "seq": v.seq(),
        "node_id": v.node_id_hex(),
        "root": hex::encode(v.root.record.hash()),
        "model": hex::encode(v.root.record.model),
        "dim": v.root.record.dim,
        "witnesses": witnesses,
    });
    if let Some(a) = anchored {
        o["anchored"] = a.clone();
    }
    o
}

fn verified_line(v: &Verified, witnesses: usize, anchored: &Option<Value>) -> String {
    let w = match witnesses {
        0 => String::new(),
        1 => " with 1 witness cosignature".to_owned(),
        n => format!(" with {n} witness cosignatures"),
    };
    let a = match anchored {
        Some(a) => format!(
            ", on the history anchored at seq {} ({} s ago)",
            a["anchor_seq"], a["anchor_age_s"]
        ),
        None => String::new(),
    };
    format!(
        "verified against root seq {} by {}{w}{a}",
        v.seq(),
        v.node_id_hex()
    )
}

/// `--check-query`: the proof's query vector must be this machine's embedding of the query text, under the model
/// the verified root names. Embeddings of one text can differ by a rounding step between machines (different CPU
/// kernels), so each int8 component may be off by one; a substituted query is far off.
async fn bound_query(vd: &Verified, proof: &[u8], text: &str) -> Result<()> {
    use crate::embed::Embedder;
    let mut cfg = super::local_embed_config(None, None);
    // The model the root names, if it is installed here (a namespace moved with `cairn migrate`); else the
    // configured one, which must then be it.
    let named = crate::models::install_dir(&super::cache_root(), &vd.root.record.model);
    if named.join("manifest.json").is_file() {
        cfg.model_dir = named;
    }
    let embedder = tokio::task::spawn_blocking(move || Embedder::start(&cfg))
        .await?
        .map_err(|e| anyhow::anyhow!("--check-query needs the embedding model: {e}"))?;
    if embedder.info().hash != vd.root.record.model {
        bail!(
            "verification failed: the root names embedding model {}, this machine has {} ({})",
            hex::encode(vd.root.record.model),
            hex::encode(embedder.info().hash),
            embedder.info().id
        );
    }
    let mine = embedder
        .embed(vec![text.to_owned()])
        .await?
        .into_iter()
        .next()
        .context("no embedding")?;
    bound_vector(proof, &mine)
}

/// The proof's query vector must be `mine` (a unit vector) once quantised: the query this machine embedded, or
/// the vector the caller sent (`--vector`).
fn bound_vector(proof: &[u8], mine: &[f32]) -> Result<()> {
    let mine = cairn_index::commit::quantise(mine);
    if let Ok(f) = cairn_index::filtered::FilteredProof::decode(proof, &Default::default()) {
        // A lexical filtered proof has no query vector (its terms are bound to the text by the verifier).
        if f.query.is_empty() {
            return Ok(());
        }
        return compare_query(&mine, &f.query);
    }
    let theirs = match cairn_index::hybrid::HybridProof::decode(proof, &Default::default()) {
        // A hybrid proof's query vector is its semantic half's; a lexical proof has none (its terms are bound
        // to the text by the verifier already).
        Ok(h) => match h.graph {
            cairn_index::hybrid::GraphPart::Search(rp) => rp.query,
            cairn_index::hybrid::GraphPart::Nodes { .. } => return Ok(()),
        },
        Err(_) => {
            cairn_index::proof::RecallProof::decode(proof, &Default::default())
                .map_err(|e| anyhow::anyhow!("verification failed: {e}"))?
                .query
        }
    };
    compare_query(&mine, &theirs)
}

/// Requires the proof's quantised query to be this machine's (within one int8 step per component).
fn compare_query(mine: &[i8], theirs: &[i8]) -> Result<()> {
    let off = mine
        .iter()
        .zip(theirs)
        .map(|(a, b)| (i16::from(*a) - i16::from(*b)).unsigned_abs())
        .max()
        .unwrap_or(0);
    if mine.len() != theirs.len() || off > 1 {
        bail!(
            "verification failed: the proof's query vector is not the embedding of the query text (nor the vector sent); largest difference {off}"
        );
    }
    Ok(())
}

/// Counts the witnesses of a verified root and enforces `--witnesses`.
fn check_witnesses(
    p: &ProofArgs,
    vd: &Verified,
    cosigs: &[cairn_proto::v1::Cosignature],
) -> Result<usize> {
    let n = v::witnesses(&vd.root.record, cosigs, &p.set.keys(p.witnesses)?);
    if n < p.witnesses as usize {
        bail!(
            "verification failed: root seq {} has {n} valid witness cosignature(s), --witnesses asks for {}",
            vd.seq(),
            p.witnesses
        );
    }
    Ok(n)
}

fn parse_ids(ids: &[String]) -> Result<Vec<MemoryId>> {
    ids.iter()
        .map(|s| s.parse::<MemoryId>().map_err(|e| anyhow::anyhow!("{e}")))
        .collect()
}

/// (id, record bytes) pairs of an answer, for a proof file.
fn saved_items<'a>(
    items: impl Iterator<Item = (&'a String, &'a Vec<u8>)>,
) -> Result<Vec<(MemoryId, Vec<u8>)>> {
    items
        .map(|(id, rec)| {
            Ok((
                id.parse::<MemoryId>().map_err(|e| anyhow::anyhow!("{e}"))?,
                rec.clone(),
            ))
        })
        .collect()
}

fn save_proof(path: &std::path::Path, file: &ProofFile) -> Result<()> {
    std::fs::write(path, file.encode()).with_context(|| format!("cannot write {}", path.display()))
}

/// Commands that work without a node.
pub async fn run_offline(cli: &Cli) -> Result<bool> {
    use crate::auth::token;
    match &cli.command {
        Command::Model(cmd) => {
            super::model_cmd::run(cmd, cli.json).await?;
            Ok(true)
        }
        Command::Anchor(super::AnchorArgs {
            deploy: Some(cmd), ..
        }) => {
            super::anchor_cmd::deploy(cmd, cli.json).await?;
            Ok(true)
        }
        Command::Token(super::TokenCommand::Attenuate {
            token: t,
            ns,
            rights,
            ttl,
        }) => {
            let rights = token::rights(rights)?;
            let grant = token::Grant::new(ns, &rights, ttl.map(std::time::Duration::from_secs))?;
            let narrowed = token::attenuate(t, &grant)?;
            if cli.json {
                print_json(&json!({ "token": narrowed }));
            } else {
                println!("{narrowed}");
            }
            Ok(true)
        }
        Command::Token(super::TokenCommand::Inspect { token: t }) => {
            let t = match t.clone().or_else(|| token_for(cli)) {
                Some(t) => t,
                None => bail!("no token to inspect: give one, or --token / CAIRN_TOKEN"),
            };
            let ins = token::inspect(&t)?;
            if cli.json {
                print_json(&json!({ "blocks": ins.blocks, "revocation_ids": ins.revocation_ids }));
            } else {
                for (i, (b, id)) in ins.blocks.iter().zip(&ins.revocation_ids).enumerate() {
                    let what = if i == 0 {
                        "authority block (signed by the node)"
                    } else {
                        "attenuation block"
                    };
                    println!("block {i}: {what}\n  revocation id {id}");
                    for line in b.lines().filter(|l| !l.trim().is_empty()) {
                        println!("  {}", line.trim());
                    }
                }
            }
            Ok(true)
        }
        Command::Id {
            data_dir: Some(dir),
        } => {
            let bytes = std::fs::read(dir.join(crate::identity::KEY_FILE))
                .with_context(|| format!("no node key in {}", dir.display()))?;
            let arr: [u8; 32] = bytes.as_slice().try_into().context("node key is damaged")?;
            println!(
                "{}",
                crate::identity::node_id_hex(&ed25519_dalek::SigningKey::from_bytes(&arr))
            );
            Ok(true)
        }
        Command::Verify {
            file,
            trust,
            witnesses,
            set,
            check_query,
            anchored,
        } => {
            check_trust_flag(trust.as_deref())?;
            set.keys(*witnesses)?;
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let pf = ProofFile::decode(&bytes)
                .map_err(|e| anyhow::anyhow!("verification failed: {e}"))?;
            let trusted = match trust {
                Some(t) => v::parse_node_id(t).map_err(|e| anyhow::anyhow!("--trust: {e}"))?,
                None => {
                    // Unpinned: check against whoever signed, and say so.
                    let signer =
                        cairn_index::proof::RecallProof::decode(&pf.proof, &Default::default())
                            .map(|p| p.root.record.node_id)
                            .or_else(|_| {
                                cairn_index::hybrid::HybridProof::decode(
                                    &pf.proof,
                                    &Default::default(),
                                )
                                .map(|p| p.root.record.node_id)
                            })
                            .or_else(|_| {
                                cairn_index::proof::TimeProof::decode(
                                    &pf.proof,
                                    &Default::default(),
                                )
                                .map(|p| p.root.record.node_id)
                            })
                            .map_err(|e| anyhow::anyhow!("verification failed: {e}"))?;
                    eprintln!(
                        "warning: no --trust given; checking against the signer named in the file ({})",
                        hex::encode(signer)
                    );
                    signer
                }
            };
            let verified = pf
                .verify(&trusted)
                .map_err(|e| anyhow::anyhow!("verification failed: {e}"))?;
            let w = pf.witnesses(&verified, &set.keys(*witnesses)?);
            if w < *witnesses as usize {
                bail!(
                    "verification failed: the file holds {w} valid witness cosignature(s) of root seq {}, --witnesses asks for {witnesses}",
                    verified.seq()
                );
            }
            if let Some(text) = check_query {
                match &pf.kind {
                    Kind::Recall(..) => {}
                    // The file's question already bound the proof's terms; the text checked must be that question.
                    Kind::Hybrid(_, _, _, q) | Kind::Filtered(_, _, _, q, _) if q == text => {}
                    Kind::Hybrid(..) | Kind::Filtered(..) => bail!(
                        "verification failed: the saved answer is for another question than --check-query's"
                    ),
                    _ => bail!("--check-query applies to saved recalls only"),
                }
                bound_query(&verified, &pf.proof, text).await?;
            }
            let anch = if anchored.anchored.is_some() {
                // The roots between the file's root and the anchors come from --node.
                let client = connect(cli).await?;
                super::anchor_cmd::check(anchored, &client, &verified, &pf.namespace).await?
            } else {
                None
            };
            if cli.json {
                let mut vj = verified_json(&verified, w, &anch);
                vj["query_bound"] = json!(check_query.is_some());
                print_json(
                    &json!({ "ok": true, "namespace": pf.namespace, "items": pf.items.len(), "verified": vj }),
                );
            } else {
                println!(
                    "{} memories in {}: {}",
                    pf.items.len(),
                    pf.namespace,
                    verified_line(&verified, w, &anch)
                );
                if check_query.is_some() {
                    println!("query bound: the proof's query vector is this machine's embedding of the query text");
                }
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

struct ProofCtx {
    trust: PinStore,
    trusted: [u8; 32],
}

impl ProofCtx {
    /// Verifies an answer against the trusted node id and the last root seen and follows the root chain from
    /// there. The root is recorded as seen only by [`ProofCtx::accept`], once every other check has passed.
    async fn check(
        &self,
        client: &CairnClient,
        ns: &str,
        verify: impl FnOnce(
            &[u8; 32],
            Option<&v::LastSeen>,
        ) -> Result<Verified, cairn_index::proof::VerifyError>,
    ) -> Result<Verified> {
        Ok(self.trust.check(client, ns, &self.trusted, verify).await?)
    }

    /// Records an answer's root as the newest seen, after it passed every check asked for (proof, chain,
    /// witnesses, anchor, query binding): a root that failed one must not become what later answers descend
    /// from.
    fn accept(&mut self, vd: &Verified, ns: &str) -> Result<()> {
        Ok(self.trust.saw(vd, ns)?)
    }
}

async fn proof_ctx(
    cli_node: &str,
    ns: &str,
    p: &ProofArgs,
    client: &CairnClient,
) -> Result<Option<ProofCtx>> {
    if !p.wanted() {
        return Ok(None);
    }
    check_trust_flag(p.trust.as_deref())?;
    let mut pins = trust::load()?;
    let trusted = trust::node_id(&mut pins, cli_node, ns, p.trust.as_deref(), client).await?;
    Ok(Some(ProofCtx {
        trust: pins,
        trusted,
    }))
}

/// The token to send: `--token` / `CAIRN_TOKEN`, else (only when talking to the default local node) the admin
/// token in the local data dir, so the node's operator needs nothing by hand.
pub fn token_for(cli: &Cli) -> Option<String> {
    if let Some(t) = cli.token.as_ref().filter(|t| !t.trim().is_empty()) {
        return Some(t.trim().to_owned());
    }
    if cli.node != cairn_client::DEFAULT_NODE {
        return None;
    }
    let dir = std::env::var_os("CAIRN_DATA_DIR")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(super::default_data_dir);
    std::fs::read_to_string(dir.join(crate::auth::ADMIN_TOKEN_FILE))
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// Connects to `--node` with the token and, for `https://`, the pinned certificate (pinned on first contact).
pub async fn connect(cli: &Cli) -> Result<CairnClient> {
    let mut b = CairnClient::builder(cli.node.clone()).maybe_token(token_for(cli));
    if !cli.node.starts_with("https://") {
        return Ok(b.connect().await?);
    }
    let mut pins = trust::load()?;
    let pin = cli.tls_pin.clone().or_else(|| pins.tls_pin(&cli.node));
    match pin {
        Some(p) => {
            b = b.tls_pin(&p)?;
            Ok(b.connect().await.map_err(|e| {
                anyhow::anyhow!("{e} (the certificate must have SHA-256 fingerprint {p})")
            })?)
        }
        None => {
            let (client, seen) = b.trust_on_first_use().connect_seen().await?;
            if let Some(fp) = seen.tls_fingerprint {
                eprintln!(
                    "warning: first contact with {}: trusting TLS certificate sha256 {fp} from now on (pass --tls-pin to pin it yourself)",
                    cli.node
                );
                pins.pin_tls(&cli.node, &fp)?;
            }
            Ok(client)
        }
    }
}

/// `cairn share` / `cairn unshare`.
async fn share_cmd(client: &CairnClient, json: bool, ns: &str, with: &str, on: bool) -> Result<()> {
    let changed = client.share(ns, with, on).await?;
    if json {
        print_json(&json!({ "prefix": ns, "node_id": with, "shared": on, "changed": changed }));
    } else {
        let (verb, unchanged) = if on {
            ("shared", " (already)")
        } else {
            ("unshared", " (was not shared)")
        };
        println!(
            "{verb} {ns:?} with {with}{}",
            if changed { "" } else { unchanged }
        );
    }
    Ok(())
}

/// Runs a client command against the node named by `--node`.
pub async fn run(cli: Cli) -> Result<()> {
    if run_offline(&cli).await? {
        return Ok(());
    }
    let client = connect(&cli).await?;
    let json = cli.json;
    match cli.command {
        Command::Verify { .. } | Command::Model(_) => unreachable!("handled offline"),
        Command::Mcp(args) => crate::mcp::run(client, args).await?,
        Command::Anchor(args) => super::anchor_cmd::submit(&client, &args, json).await?,
        Command::Id { .. } => {
            let info = client.node_info().await?;
            println!("{}", info.node_id);
        }
        Command::Root { ns, seq } => {
            let r = client.root(&ns, seq).await?;
            if json {
                print_json(&json!({
                    "namespace": r.namespace,
                    "seq": r.seq,
                    "prev": r.prev,
                    "hash": r.hash,
                    "leaf_count": r.graph_leaves,
                    "graph_leaves": r.graph_leaves,
                    "graph_root": r.graph_root,
                    "time_leaves": r.time_leaves,
                    "time_root": r.time_root,
                    "roots": { "graph": r.graph_root, "time": r.time_root },
                    "entry": r.entry,
                    "max_level": r.max_level,
                    "m": r.m,
                    "m0": r.m0,
                    "dim": r.dim,
                    "model": r.model,
                    "created_at": r.created_at,
                    "node_id": r.node_id,
                    "signature": r.signature,
                    "signed": hex::encode(&r.signed),
                }));
            } else {
                println!("namespace   {}", r.namespace);
                println!("seq         {}", r.seq);
                println!("hash        {}", r.hash);
                println!("prev        {}", r.prev);
                println!(
                    "graph       {} leaves, root {}",
                    r.graph_leaves, r.graph_root
                );
                println!("time        {} leaves, root {}", r.time_leaves, r.time_root);
                println!(
                    "hnsw        entry {} level {} M {} M0 {}",
                    r.entry, r.max_level, r.m, r.m0
                );
                println!("model       {} (dim {})", r.model, r.dim);
                println!("created_at  {}", r.created_at);
                println!("node_id     {}", r.node_id);
                println!("signature   {}", r.signature);
            }
        }
        Command::Serve(_) => unreachable!("serve is not a client command"),
        Command::Remember {
            ns,
            meta,
            created_at,
            key,
            vector,
            text,
        } => {
            let item = NewMemory {
                text,
                metadata: meta.into_iter().collect(),
                created_at,
                key,
                vector,
            };
            let results = client.remember(&ns, vec![item]).await?;
            let r = results.first().context("node returned no result")?;
            if json {
                print_json(&json!({
                    "ids": [r.id],
                    "deduplicated": [r.deduplicated],
                    "created_at": [r.created_at],
                    "replaced": [r.replaced],
                }));
            } else if r.deduplicated {
                println!("{} (already remembered)", r.id);
            } else if !r.replaced.is_empty() {
                println!("{} (replaced {})", r.id, r.replaced);
            } else {
                println!("{}", r.id);
            }
        }
        Command::CreateNamespace {
            ns,
            external_model,
            dim,
            model,
        } => {
            let external = external_model.as_deref().zip(dim);
            let r = match &model {
                Some(m) => client.create_namespace_with_model(&ns, m).await?,
                None => client.create_namespace(&ns, external).await?,
            };
            let seq = r.root.as_ref().map_or(0, |r| r.seq);
            if json {
                print_json(&json!({ "created": r.created, "model": r.model, "seq": seq }));
            } else {
                let what = if r.created {
                    "created"
                } else {
                    "already exists"
                };
                println!("{ns} {what}, model {}, root seq {seq}", r.model);
            }
        }
        Command::Migrate { ns, to_model } => migrate(&client, &ns, &to_model, json).await?,
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
            prefix,
            mode,
            depth,
            mut proof,
            check_query,
            vector,
            query,
        } => {
            proof.verify |= check_query;
            if check_query {
                let external = client
                    .list_namespaces()
                    .await?
                    .into_iter()
                    .find(|n| n.namespace == ns)
                    .map(|n| n.model)
                    .filter(|m| m.starts_with("external:"));
                if let Some(m) = external {
                    bail!("--check-query cannot re-embed the query: namespace {ns:?} holds vectors of the external model {m}, which only the caller has; verify without it");
                }
            }
            let ctx = proof_ctx(&cli.node, &ns, &proof, &client).await?;
            let by_text = query.is_some();
            let sent = vector.clone();
            let start = match (vector, &query) {
                (Some(v), Some(text)) => client.recall(&ns, text.clone()).text_vector(v),
                (Some(v), None) => client.recall_vector(&ns, v),
                (None, text) => client.recall(&ns, text.clone().unwrap_or_default()),
            };
            let query = query.unwrap_or_default();
            let mut b = start.k(k).exact(exact).prefix(prefix).proof(ctx.is_some());
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
            if let Some(m) = mode {
                b = b.mode(match m {
                    crate::engine::RecallMode::Semantic => pb::RecallMode::Semantic,
                    crate::engine::RecallMode::Lexical => pb::RecallMode::Lexical,
                    crate::engine::RecallMode::Hybrid => pb::RecallMode::Hybrid,
                });
            }
            if let Some(d) = depth {
                b = b.depth(d);
            }
            let filter = b.filter_asked();
            let resp = b.send_full().await?;
            let verified = match ctx {
                Some(mut ctx) => {
                    let asked = v::RecallAsked {
                        k: if k == 0 { 10 } else { k },
                        min_ef: ef.unwrap_or(0),
                    };
                    let min_depth = depth.unwrap_or(0);
                    let vd = ctx
                        .check(&client, &ns, |trusted, last| {
                            v::recall_filtered(
                                &ns,
                                &asked,
                                by_text.then_some(query.as_str()),
                                min_depth,
                                &filter,
                                &resp,
                                trusted,
                                last,
                            )
                        })
                        .await?;
                    // The proof file is written only once every check asked for has passed.
                    let to_save = if let Some(path) = &proof.proof_out {
                        let items = saved_items(resp.hits.iter().map(|h| (&h.id, &h.record)))?;
                        let scores = resp.hits.iter().map(|h| h.score).collect();
                        let filtered = resp
                            .proof
                            .starts_with(cairn_index::filtered::FILTERED_MAGIC);
                        let kind = match pb::RecallMode::try_from(resp.mode) {
                            _ if filtered => Kind::Filtered(
                                scores,
                                asked,
                                min_depth,
                                query.clone(),
                                filter.clone(),
                            ),
                            Ok(pb::RecallMode::Lexical) | Ok(pb::RecallMode::Hybrid) => {
                                Kind::Hybrid(scores, asked, min_depth, query.clone())
                            }
                            _ => Kind::Recall(scores, asked),
                        };
                        Some((
                            path,
                            ProofFile {
                                kind,
                                namespace: ns.clone(),
                                items,
                                proof: resp.proof.clone(),
                                cosigs: v::parse_cosigs(&resp.cosignatures),
                            },
                        ))
                    } else {
                        None
                    };
                    let w = check_witnesses(&proof, &vd, &resp.cosignatures)?;
                    let anch = super::anchor_cmd::check(&proof.anchored, &client, &vd, &ns).await?;
                    if check_query {
                        bound_query(&vd, &resp.proof, &query).await?;
                    }
                    if let Some(v) = &sent {
                        // A vector query binds exactly: it is what this call sent, scaled to unit length.
                        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                        let unit: Vec<f32> = v.iter().map(|x| x / norm).collect();
                        bound_vector(&resp.proof, &unit)?;
                    }
                    if let Some((path, file)) = &to_save {
                        save_proof(path, file)?;
                    }
                    ctx.accept(&vd, &ns)?;
                    Some((vd, w, anch))
                }
                None => None,
            };
            let hits = &resp.hits;
            if json {
                let mut out = json!({ "hits": hits.iter().map(hit_json).collect::<Vec<_>>() });
                if let Some(vd) = &verified {
                    out["verified"] = verified_json(&vd.0, vd.1, &vd.2);
                    out["verified"]["query_bound"] = json!(check_query);
                }
                print_json(&out);
            } else {
                if hits.is_empty() {
                    println!("(no hits)");
                }
                for h in hits {
                    println!("{}", hit_line(h));
                }
                if let Some(vd) = &verified {
                    println!("{}", verified_line(&vd.0, vd.1, &vd.2));
                    if check_query {
                        println!("query bound: the proof's query vector is this machine's embedding of the query text");
                    }
                }
            }
        }
        Command::Get {
            ns,
            ids,
            keys,
            proof,
        } => {
            parse_ids(&ids)?;
            let ctx = proof_ctx(&cli.node, &ns, &proof, &client).await?;
            let resp = if keys.is_empty() {
                if ctx.is_some() {
                    client.get_with_proof(&ns, ids).await?
                } else {
                    client.get(&ns, ids).await?
                }
            } else {
                client
                    .raw()
                    .get(cairn_proto::v1::GetRequest {
                        namespace: ns.clone(),
                        ids,
                        keys: keys.clone(),
                        proof: ctx.is_some(),
                    })
                    .await?
                    .into_inner()
            };
            let verified = match ctx {
                Some(mut ctx) => {
                    let vd = ctx
                        .check(&client, &ns, |trusted, last| {
                            v::get_keys(&ns, &keys, &resp, trusted, last)
                        })
                        .await?;
                    let w = check_witnesses(&proof, &vd, &resp.cosignatures)?;
                    let anch = super::anchor_cmd::check(&proof.anchored, &client, &vd, &ns).await?;
                    // The proof file is written only once every check asked for has passed.
                    if let Some(path) = &proof.proof_out {
                        save_proof(
                            path,
                            &ProofFile {
                                kind: Kind::Get,
                                namespace: ns.clone(),
                                items: saved_items(
                                    resp.memories.iter().map(|m| (&m.id, &m.record)),
                                )?,
                                proof: resp.proof.clone(),
                                cosigs: v::parse_cosigs(&resp.cosignatures),
                            },
                        )?;
                    }
                    ctx.accept(&vd, &ns)?;
                    Some((vd, w, anch))
                }
                None => None,
            };
            if json {
                let mut out = json!({
                    "memories": resp.memories.iter().map(memory_json).collect::<Vec<_>>(),
                    "missing": resp.missing,
                    "unreturned": resp.unreturned,
                });
                if let Some(vd) = &verified {
                    out["verified"] = verified_json(&vd.0, vd.1, &vd.2);
                }
                print_json(&out);
            } else {
                for m in &resp.memories {
                    println!("{}", memory_line(m));
                }
                if let Some(vd) = &verified {
                    println!("{}", verified_line(&vd.0, vd.1, &vd.2));
                }
                if !resp.unreturned.is_empty() {
                    eprintln!(
                        "{} more not returned (the answer reached the node's --max-page-mb); ask again for: {}",
                        resp.unreturned.len(),
                        resp.unreturned.join(" ")
                    );
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
            filters,
            proof,
        } => {
            let mut ctx = proof_ctx(&cli.node, &ns, &proof, &client).await?;
            if proof.proof_out.is_some() && limit > u64::from(cairn_server_max_page()) {
                bail!(
                    "--proof-out saves one page: use --limit {} or less",
                    cairn_server_max_page()
                );
            }
            let page_max = if ctx.is_some() {
                cairn_server_max_page()
            } else {
                1000
            };
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            let mut last_verified = None;
            while (out.len() as u64) < limit {
                let page = (limit - out.len() as u64).min(u64::from(page_max)) as u32;
                let opts = ListOptions {
                    since,
                    until,
                    limit: Some(page),
                    page_token: token.take(),
                    metadata: filters.iter().cloned().collect(),
                };
                let resp = match &mut ctx {
                    Some(ctx) => {
                        let range = v::list_range(
                            since,
                            until,
                            page,
                            opts.page_token.as_deref().unwrap_or(""),
                        )
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                        let resp = client.list_with_proof(&ns, opts).await?;
                        let vd = ctx
                            .check(&client, &ns, |trusted, last| {
                                v::list(&ns, &range, &resp, trusted, last)
                            })
                            .await?;
                        let w = check_witnesses(&proof, &vd, &resp.cosignatures)?;
                        let anch =
                            super::anchor_cmd::check(&proof.anchored, &client, &vd, &ns).await?;
                        // The proof file is written only once every check asked for has passed.
                        if let Some(path) = &proof.proof_out {
                            save_proof(
                                path,
                                &ProofFile {
                                    kind: Kind::List(range),
                                    namespace: ns.clone(),
                                    items: saved_items(
                                        resp.memories.iter().map(|m| (&m.id, &m.record)),
                                    )?,
                                    proof: resp.proof.clone(),
                                    cosigs: v::parse_cosigs(&resp.cosignatures),
                                },
                            )?;
                        }
                        ctx.accept(&vd, &ns)?;
                        last_verified = Some((vd, w, anch));
                        resp
                    }
                    None => client.list(&ns, opts).await?,
                };
                out.extend(resp.memories);
                if resp.next_page_token.is_empty() {
                    break;
                }
                token = Some(resp.next_page_token);
            }
            if json {
                let mut o = json!({ "memories": out.iter().map(memory_json).collect::<Vec<_>>() });
                if let Some(vd) = &last_verified {
                    o["verified"] = verified_json(&vd.0, vd.1, &vd.2);
                }
                print_json(&o);
            } else {
                for m in &out {
                    println!("{}", memory_line(m));
                }
                if let Some(vd) = &last_verified {
                    println!("{}", verified_line(&vd.0, vd.1, &vd.2));
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
                    .map(|n| json!({ "namespace": n.namespace, "memories": n.memories, "owner": n.owner, "seq": n.seq, "model": n.model }))
                    .collect();
                print_json(&json!({ "namespaces": v }));
            } else {
                for n in &list {
                    if n.owner.is_empty() {
                        println!("{}\t{}", n.namespace, n.memories);
                    } else {
                        println!("{}\t{}\treplica of {}", n.namespace, n.memories, n.owner);
                    }
                }
            }
        }
        Command::Ticket => {
            let info = client.node_info().await?;
            if json {
                print_json(&json!({ "ticket": info.ticket, "node_id": info.node_id }));
            } else {
                println!("{}", info.ticket);
            }
        }
        Command::Peer(super::PeerCommand::Add { ticket }) => {
            let id = client.add_peer(&ticket).await?;
            if json {
                print_json(&json!({ "node_id": id }));
            } else {
                println!("added peer {id}");
            }
        }
        Command::Peers => {
            let peers = client.peers().await?;
            if json {
                let v: Vec<_> = peers
                    .iter()
                    .map(|p| json!({ "node_id": p.node_id, "addrs": p.addrs }))
                    .collect();
                print_json(&json!({ "peers": v }));
            } else {
                for p in &peers {
                    println!("{}\t{}", p.node_id, p.addrs.join(","));
                }
            }
        }
        Command::Audit {
            ns,
            from,
            queries,
            k,
        } => super::audit::run(&client, &ns, &from, queries.as_deref(), k, json).await?,
        Command::Alerts => {
            let alerts = client.alerts().await?;
            if json {
                let v: Vec<_> = alerts
                    .iter()
                    .map(|a| {
                        json!({
                            "kind": a.kind,
                            "owner": a.owner,
                            "namespace": a.namespace,
                            "seq": a.seq,
                            "roots": a.roots.iter().map(|r| json!({"hash": r.hash, "signed": hex::encode(&r.signed), "node_id": r.node_id})).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                print_json(&json!({ "alerts": v }));
            } else if alerts.is_empty() {
                println!("no alerts");
            } else {
                for a in &alerts {
                    let hashes: Vec<&str> = a.roots.iter().map(|r| r.hash.as_str()).collect();
                    println!(
                        "{}: owner {} signed two roots for {} seq {}: {}",
                        a.kind,
                        a.owner,
                        a.namespace,
                        a.seq,
                        hashes.join(" vs ")
                    );
                }
            }
        }
        Command::Peer(super::PeerCommand::Remove { node_id }) => {
            let removed = client.remove_peer(&node_id).await?;
            if json {
                print_json(&json!({ "node_id": node_id, "removed": removed }));
            } else if removed {
                println!("removed peer {node_id}");
            } else {
                println!("{node_id} was not a peer");
            }
        }
        Command::Share { ns, with } => share_cmd(&client, json, &ns, &with, true).await?,
        Command::Unshare { ns, with } => share_cmd(&client, json, &ns, &with, false).await?,
        Command::Shares => {
            let grants = client.shares().await?;
            if json {
                let v: Vec<_> = grants
                    .iter()
                    .map(|(p, n)| json!({ "prefix": p, "node_id": n }))
                    .collect();
                print_json(&json!({ "grants": v }));
            } else {
                for (p, n) in &grants {
                    println!("{p:?}\t{n}");
                }
            }
        }
        Command::Unfollow { ns } => {
            let dropped = client.unfollow(&ns).await?;
            if json {
                print_json(&json!({ "namespace": ns, "dropped": dropped }));
            } else {
                println!("unfollowed {ns}: deleted {dropped} memories");
            }
        }
        Command::Token(super::TokenCommand::Mint { ns, rights, ttl }) => {
            let prefixes: Vec<&str> = ns.iter().map(String::as_str).collect();
            let rights: Vec<&str> = rights.iter().map(String::as_str).collect();
            let t = client.mint_token(&prefixes, &rights, ttl).await?;
            if json {
                print_json(
                    &json!({ "token": t.token, "revocation_ids": t.revocation_ids, "expires_at": t.expires_at }),
                );
            } else {
                println!("{}", t.token);
            }
        }
        Command::Token(super::TokenCommand::Revoke { id }) => {
            client.revoke_token(&id).await?;
            if json {
                print_json(&json!({ "revoked": id }));
            } else {
                println!("revoked {id}");
            }
        }
        Command::Token(_) => unreachable!("handled offline"),
        Command::Follow {
            ns,
            from,
            external_model,
            dim,
        } => {
            client
                .follow_with(&ns, &from, external_model.as_deref().zip(dim))
                .await?;
            if json {
                print_json(&json!({ "namespace": ns, "owner": from }));
            } else {
                println!("following {ns} from {from}");
            }
        }
    }
    Ok(())
}

/// Largest List page the node serves (one proof covers one page).
fn cairn_server_max_page() -> u32 {
    crate::engine::MAX_PAGE
}

/// `cairn migrate`: follows the node's progress reports with a bar on a terminal (a line per report otherwise,
/// on stderr) and prints the result.
async fn migrate(client: &CairnClient, ns: &str, model: &str, json: bool) -> Result<()> {
    use indicatif::{ProgressBar, ProgressStyle};
    use std::io::IsTerminal;
    let mut stream = client.migrate(ns, model).await?;
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let pb = ProgressBar::new(0);
        pb.set_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} memories re-embedded ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb
    } else {
        ProgressBar::hidden()
    };
    let mut first = true;
    while let Some(p) = stream.message().await? {
        if let Some(r) = p.result {
            bar.finish_and_clear();
            let seq = r.root.as_ref().map_or(0, |r| r.seq);
            let root_model = r.root.as_ref().map(|r| r.model.clone()).unwrap_or_default();
            if json {
                print_json(&json!({
                    "changed": r.changed,
                    "model": r.model,
                    "model_hash": root_model,
                    "memories": r.memories,
                    "resumed": p.resumed,
                    "caught_up": r.caught_up,
                    "seq": seq,
                }));
            } else if r.changed {
                println!(
                    "{ns}: {} memories now embedded with {} (root seq {seq}; {} resumed from an earlier run, {} written meanwhile)",
                    r.memories, r.model, p.resumed, r.caught_up
                );
            } else {
                println!("{ns} is already embedded with {} (root seq {seq})", r.model);
            }
            return Ok(());
        }
        if first && p.resumed > 0 {
            eprintln!(
                "resuming: {} of {} memories were embedded by an earlier run",
                p.resumed, p.total
            );
        }
        first = false;
        if tty {
            bar.set_length(p.total);
            bar.set_position(p.done);
        } else {
            eprintln!("migrating {ns}: {}/{} memories", p.done, p.total);
        }
    }
    bar.finish_and_clear();
    bail!("the node ended the migration without a result; run it again to resume")
}
