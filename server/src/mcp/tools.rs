//! The MCP tools (remember, recall, get, list, forget, namespaces): typed arguments with JSON schemas, each call
//! forwarded to the node with the caller's authority, answers verified on request.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use cairn_client::verify::{self as v, LastSeen, RecallAsked, Verified};
use cairn_client::{CairnClient, ListOptions, NewMemory};
use cairn_index::proof::VerifyError;
use cairn_proto::v1 as pb;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_handler, tool_router, ErrorData as McpError, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

/// What every session of one `cairn mcp` shares: the connection, the namespace pin, the node id answers are
/// verified against and the newest root accepted per namespace (rollback and equivocation are refused).
pub struct Shared {
    /// The node connection (stdio: with the server's token; HTTP: re-tokened per call with the caller's).
    pub client: CairnClient,
    /// Calls may only name this namespace or those under it.
    pub pin: Option<String>,
    /// The node id proofs must be signed by.
    pub trusted: [u8; 32],
    /// Witness keys whose cosignatures count.
    pub witnesses: Vec<[u8; 32]>,
    /// Over HTTP, every call carries its caller's own token (none is held by the server).
    pub forward_token: bool,
    /// Newest accepted root per namespace.
    pub seen: Mutex<HashMap<String, LastSeen>>,
}

/// The MCP server handler: one per session, all sharing [`Shared`].
#[derive(Clone)]
pub struct CairnMcp {
    shared: Arc<Shared>,
    tool_router: ToolRouter<Self>,
}

/// Remember's arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RememberArgs {
    /// Namespace, e.g. `agents/alice/notes` (optional when the server is pinned to one).
    #[serde(default)]
    pub namespace: Option<String>,
    /// The text to remember.
    pub text: String,
    /// Labels (string to string) that recall and list can filter on.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// A key unique in the namespace: a memory already holding it is replaced (forgotten) in the same commit.
    #[serde(default)]
    pub key: Option<String>,
}

/// Recall's arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RecallArgs {
    /// Namespace to search (optional when the server is pinned to one).
    #[serde(default)]
    pub namespace: Option<String>,
    /// What to look for. Without a query, the newest memories passing the filter are returned.
    #[serde(default)]
    pub query: Option<String>,
    /// Number of hits, 1..=1000 (default 10).
    #[serde(default)]
    pub k: Option<u32>,
    /// Only memories whose metadata has all these pairs.
    #[serde(default, rename = "where")]
    pub filter: Option<BTreeMap<String, String>>,
    /// Only memories created at or after this time (ms since the Unix epoch).
    #[serde(default)]
    pub since: Option<u64>,
    /// Only memories created before this time (ms since the Unix epoch).
    #[serde(default)]
    pub until: Option<u64>,
    /// Search every namespace under `namespace` as well.
    #[serde(default)]
    pub prefix: Option<bool>,
    /// Check the node's proof that these are exactly the top-k of the committed memories that pass the filter
    /// (not with `prefix` or without a query); the answer then carries the verification.
    #[serde(default)]
    pub verify: Option<bool>,
    /// Ranking: "hybrid" (words and meaning, the node's default), "semantic" (meaning) or "lexical" (words,
    /// BM25). Prefix searches, and filtered searches without `verify`, default to semantic.
    #[serde(default)]
    pub mode: Option<String>,
}

/// Get's arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetArgs {
    /// Namespace (optional when the server is pinned to one).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Memory ids (hex).
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    /// Memory keys.
    #[serde(default)]
    pub keys: Option<Vec<String>>,
    /// Check the node's proof that every memory returned is committed and live.
    #[serde(default)]
    pub verify: Option<bool>,
}

/// List's arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListArgs {
    /// Namespace (optional when the server is pinned to one).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Only memories created at or after this time (ms).
    #[serde(default)]
    pub since: Option<u64>,
    /// Only memories created before this time (ms).
    #[serde(default)]
    pub until: Option<u64>,
    /// Page size, 1..=1000 (default 100).
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `next_page_token` of the previous page.
    #[serde(default)]
    pub page_token: Option<String>,
    /// Only memories whose metadata has all these pairs (not with `verify`).
    #[serde(default, rename = "where")]
    pub filter: Option<BTreeMap<String, String>>,
    /// Check the node's proof that the page is exactly the committed memories of the range, in order.
    #[serde(default)]
    pub verify: Option<bool>,
}

/// Forget's arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ForgetArgs {
    /// Namespace (optional when the server is pinned to one).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Ids (hex) of the memories to forget.
    pub ids: Vec<String>,
}

/// A tool's answer, or the message of a failed call (a tool error the model can read and act on).
type Answer = Result<Value, String>;

fn done(a: Answer) -> Result<CallToolResult, McpError> {
    Ok(match a {
        Ok(v) => CallToolResult::structured(v),
        Err(msg) => CallToolResult::error(vec![ContentBlock::text(msg)]),
    })
}

fn failed(e: cairn_client::Error) -> String {
    e.to_string()
}

fn memory_json(m: &pb::Memory) -> Value {
    json!({
        "id": m.id,
        "namespace": m.namespace,
        "text": m.text,
        "metadata": m.metadata,
        "created_at": m.created_at,
        "key": m.key,
    })
}

fn hit_json(h: &pb::Hit) -> Value {
    json!({
        "id": h.id,
        "namespace": h.namespace,
        "text": h.text,
        "metadata": h.metadata,
        "created_at": h.created_at,
        "key": h.key,
        "score": h.score,
    })
}

impl CairnMcp {
    /// The namespace a call may use: the one asked, within the pin.
    fn namespace(&self, asked: Option<String>) -> Result<String, String> {
        let asked = asked.filter(|n| !n.is_empty());
        match (&self.shared.pin, asked) {
            (None, None) => Err("namespace is required".into()),
            (None, Some(n)) => Ok(n),
            (Some(p), None) => Ok(p.clone()),
            (Some(p), Some(n)) => {
                if n == *p
                    || n.strip_prefix(p.as_str())
                        .is_some_and(|r| r.starts_with('/'))
                {
                    Ok(n)
                } else {
                    Err(format!(
                        "this server is pinned to namespace {p:?} (and those under it); {n:?} is outside"
                    ))
                }
            }
        }
    }

    /// The node client for this call: over HTTP it carries the caller's own bearer token.
    fn client(&self, ctx: &RequestContext<RoleServer>) -> Result<CairnClient, String> {
        if !self.shared.forward_token {
            return Ok(self.shared.client.clone());
        }
        let token = ctx
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| super::http::bearer(&p.headers))
            .ok_or("no bearer token on this request")?;
        self.shared
            .client
            .with_token(Some(&token))
            .map_err(|e| e.to_string())
    }

    /// Runs a verification against the trusted node id and the newest root seen for `ns`; on success records
    /// the root and returns what was verified.
    fn check(
        &self,
        ns: &str,
        cosigs: &[pb::Cosignature],
        f: impl FnOnce(&[u8; 32], Option<&LastSeen>) -> Result<Verified, VerifyError>,
    ) -> Result<Value, String> {
        let mut seen = self
            .shared
            .seen
            .lock()
            .map_err(|_| "verification state poisoned".to_string())?;
        let last = seen.get(ns).copied();
        let vd = f(&self.shared.trusted, last.as_ref())
            .map_err(|e| format!("verification failed: {e}"))?;
        let hash = vd.root.record.hash();
        if last.is_none_or(|l| vd.seq() > l.seq) {
            seen.insert(
                ns.to_owned(),
                LastSeen {
                    seq: vd.seq(),
                    hash,
                },
            );
        }
        let witnesses = cairn_index::root::count_witnesses(
            &vd.root.record,
            &v::parse_cosigs(cosigs),
            &self.shared.witnesses,
        );
        Ok(json!({
            "verified": true,
            "seq": vd.seq(),
            "root_hash": hex::encode(hash),
            "node_id": vd.node_id_hex(),
            "witnesses": witnesses,
        }))
    }
}

#[tool_router]
impl CairnMcp {
    /// A handler over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        CairnMcp {
            shared,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Store one memory (a fact, preference, event or note) in a namespace. Returns its id. With a key, the memory holding that key is replaced."
    )]
    async fn remember(
        &self,
        Parameters(a): Parameters<RememberArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        done(self.do_remember(a, &ctx).await)
    }

    #[tool(
        description = "Search a namespace for the memories closest in meaning to a query, best first. verify=true checks the node's proof that the hits are exactly the top-k.",
        annotations(read_only_hint = true)
    )]
    async fn recall(
        &self,
        Parameters(a): Parameters<RecallArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        done(self.do_recall(a, &ctx).await)
    }

    #[tool(
        description = "Fetch memories by id or by key. verify=true checks the node's proof that each is committed and live.",
        annotations(read_only_hint = true)
    )]
    async fn get(
        &self,
        Parameters(a): Parameters<GetArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        done(self.do_get(a, &ctx).await)
    }

    #[tool(
        description = "List memories of a namespace in time order, one page at a time. verify=true checks the node's proof that the page is complete.",
        annotations(read_only_hint = true)
    )]
    async fn list(
        &self,
        Parameters(a): Parameters<ListArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        done(self.do_list(a, &ctx).await)
    }

    #[tool(
        description = "Forget memories by id: removed from every read and their bytes deleted.",
        annotations(destructive_hint = true)
    )]
    async fn forget(
        &self,
        Parameters(a): Parameters<ForgetArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        done(self.do_forget(a, &ctx).await)
    }

    #[tool(
        description = "The namespaces this token can read, with their memory counts.",
        annotations(read_only_hint = true)
    )]
    async fn namespaces(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        done(self.do_namespaces(&ctx).await)
    }
}

impl CairnMcp {
    async fn do_remember(&self, a: RememberArgs, ctx: &RequestContext<RoleServer>) -> Answer {
        let ns = self.namespace(a.namespace)?;
        let c = self.client(ctx)?;
        let mut m = NewMemory::new(a.text);
        m.metadata = a.metadata.unwrap_or_default();
        m.key = a.key.filter(|k| !k.is_empty());
        let r = c.remember(&ns, vec![m]).await.map_err(failed)?;
        let r = r.first().ok_or("the node returned no result")?;
        Ok(json!({
            "namespace": ns,
            "id": r.id,
            "deduplicated": r.deduplicated,
            "created_at": r.created_at,
            "replaced": r.replaced,
        }))
    }

    async fn do_recall(&self, a: RecallArgs, ctx: &RequestContext<RoleServer>) -> Answer {
        let ns = self.namespace(a.namespace)?;
        let c = self.client(ctx)?;
        let verify = a.verify.unwrap_or(false);
        let query = a.query.filter(|q| !q.trim().is_empty());
        let mut b = match &query {
            Some(q) => c.recall(&ns, q.clone()),
            None => c.recall_newest(&ns),
        };
        let k = a.k.unwrap_or(10);
        b = b.k(k).prefix(a.prefix.unwrap_or(false)).proof(verify);
        if let Some(m) = &a.mode {
            b = b.mode(match m.as_str() {
                "semantic" => cairn_proto::v1::RecallMode::Semantic,
                "lexical" => cairn_proto::v1::RecallMode::Lexical,
                "hybrid" => cairn_proto::v1::RecallMode::Hybrid,
                other => return Err(format!("mode {other:?}: use semantic, lexical or hybrid")),
            });
        }
        for (key, value) in a.filter.unwrap_or_default() {
            b = b.where_eq(key, value);
        }
        if let Some(s) = a.since {
            b = b.since(s);
        }
        if let Some(u) = a.until {
            b = b.until(u);
        }
        let filter = b.filter_asked();
        let resp = b.send_full().await.map_err(failed)?;
        let mut out = json!({
            "namespace": ns,
            "hits": resp.hits.iter().map(hit_json).collect::<Vec<_>>(),
        });
        if verify {
            let asked = RecallAsked {
                k: if k == 0 { 10 } else { k },
                min_ef: 0,
            };
            out["verification"] = self.check(&ns, &resp.cosignatures, |t, last| {
                v::recall_filtered(&ns, &asked, query.as_deref(), 0, &filter, &resp, t, last)
            })?;
        }
        Ok(out)
    }

    async fn do_get(&self, a: GetArgs, ctx: &RequestContext<RoleServer>) -> Answer {
        let ns = self.namespace(a.namespace)?;
        let c = self.client(ctx)?;
        let verify = a.verify.unwrap_or(false);
        let keys = a.keys.unwrap_or_default();
        let resp = c
            .raw()
            .get(pb::GetRequest {
                namespace: ns.clone(),
                ids: a.ids.unwrap_or_default(),
                proof: verify,
                keys: keys.clone(),
            })
            .await
            .map_err(|s| failed(s.into()))?
            .into_inner();
        let mut out = json!({
            "namespace": ns,
            "memories": resp.memories.iter().map(memory_json).collect::<Vec<_>>(),
            "missing": resp.missing,
            "unreturned": resp.unreturned,
        });
        if verify {
            out["verification"] = self.check(&ns, &resp.cosignatures, |t, last| {
                v::get_keys(&ns, &keys, &resp, t, last)
            })?;
        }
        Ok(out)
    }

    async fn do_list(&self, a: ListArgs, ctx: &RequestContext<RoleServer>) -> Answer {
        let ns = self.namespace(a.namespace)?;
        let c = self.client(ctx)?;
        let verify = a.verify.unwrap_or(false);
        let limit = a.limit.unwrap_or(100);
        let token = a.page_token.unwrap_or_default();
        let opts = ListOptions {
            since: a.since,
            until: a.until,
            limit: Some(limit),
            page_token: Some(token.clone()).filter(|t| !t.is_empty()),
            metadata: a.filter.unwrap_or_default(),
        };
        let resp = if verify {
            c.list_with_proof(&ns, opts).await
        } else {
            c.list(&ns, opts).await
        }
        .map_err(failed)?;
        let mut out = json!({
            "namespace": ns,
            "memories": resp.memories.iter().map(memory_json).collect::<Vec<_>>(),
            "next_page_token": resp.next_page_token,
        });
        if verify {
            let range = v::list_range(a.since, a.until, limit, &token)
                .map_err(|e| format!("verification failed: {e}"))?;
            out["verification"] = self.check(&ns, &resp.cosignatures, |t, last| {
                v::list(&ns, &range, &resp, t, last)
            })?;
        }
        Ok(out)
    }

    async fn do_forget(&self, a: ForgetArgs, ctx: &RequestContext<RoleServer>) -> Answer {
        let ns = self.namespace(a.namespace)?;
        let c = self.client(ctx)?;
        let (forgotten, missing) = c.forget(&ns, a.ids).await.map_err(failed)?;
        Ok(json!({ "namespace": ns, "forgotten": forgotten, "missing": missing }))
    }

    async fn do_namespaces(&self, ctx: &RequestContext<RoleServer>) -> Answer {
        let c = self.client(ctx)?;
        let all = c.list_namespaces().await.map_err(failed)?;
        let shown: Vec<Value> = all
            .iter()
            .filter(|n| self.namespace(Some(n.namespace.clone())).is_ok())
            .map(|n| {
                json!({
                    "namespace": n.namespace,
                    "memories": n.memories,
                    "seq": n.seq,
                    "owner": n.owner,
                })
            })
            .collect();
        Ok(json!({ "namespaces": shown }))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for CairnMcp {
    fn get_info(&self) -> ServerConfig {
        let pin = match &self.shared.pin {
            Some(p) => format!(" This server is pinned to namespace {p:?}: leave `namespace` out or name one under it."),
            None => String::new(),
        };
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("cairn", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "Cairn is a long-term memory store. Use `remember` to store facts, preferences and events as short \
                 self-contained sentences, `recall` to search them by meaning before answering, `get`/`list` to \
                 read them back and `forget` to delete. Pass verify=true to have the node's answer checked \
                 against its signed commitment (authentic and complete).{pin}"
            ))
    }
}
