//! The `cairn.v1.Cairn` gRPC service: converts messages to engine calls and engine errors to statuses.

use cairn_index::validate::KEY_META;
use std::sync::Arc;

use cairn_proto::v1 as pb;
use pb::cairn_server::Cairn;
use tonic::{Request, Response, Status};

use cairn_index::id::MemoryId;
use cairn_index::root::SignedRoot;
use tokio_stream::wrappers::ReceiverStream;

use crate::engine::{Engine, Filter, HitOut, Item, MemoryOut, Query, RecallMode, RecallOpts};
use crate::error::NodeError;

/// The gRPC face of an [`Engine`].
pub struct CairnService {
    engine: Arc<Engine>,
    /// Who may ask: every method asks it first (see `auth::rules`).
    auth: Arc<crate::auth::Auth>,
    p2p: Arc<crate::p2p::P2p>,
    /// One permit per open WatchRoots stream (`--max-watchers`).
    watchers: Arc<tokio::sync::Semaphore>,
    max_watchers: usize,
}

impl CairnService {
    /// Serves `engine`, with `p2p` for peering and following, `auth` checking every call, and at most
    /// `max_watchers` WatchRoots streams open.
    pub fn new(
        engine: Arc<Engine>,
        p2p: Arc<crate::p2p::P2p>,
        auth: Arc<crate::auth::Auth>,
        max_watchers: usize,
    ) -> Self {
        CairnService {
            engine,
            auth,
            p2p,
            watchers: Arc::new(tokio::sync::Semaphore::new(max_watchers)),
            max_watchers,
        }
    }
}

/// A memory's key: its `cairn.key` metadata entry (empty without one).
fn key_of(m: &MemoryOut) -> String {
    m.record
        .metadata
        .get(cairn_index::validate::KEY_META)
        .cloned()
        .unwrap_or_default()
}

fn memory(m: MemoryOut, with_record: bool) -> pb::Memory {
    pb::Memory {
        key: key_of(&m),
        id: m.id.to_hex(),
        namespace: m.record.namespace,
        text: m.record.text,
        metadata: m.record.metadata,
        created_at: m.record.created_at,
        record: if with_record {
            m.bytes.to_vec()
        } else {
            Vec::new()
        },
    }
}

fn hit(h: HitOut, with_record: bool) -> pb::Hit {
    pb::Hit {
        key: key_of(&h.memory),
        namespace: h.memory.record.namespace.clone(),
        id: h.memory.id.to_hex(),
        text: h.memory.record.text,
        metadata: h.memory.record.metadata,
        created_at: h.memory.record.created_at,
        score: h.score,
        record: if with_record {
            h.memory.bytes.to_vec()
        } else {
            Vec::new()
        },
    }
}

/// A signed root as the API shows it.
pub fn root_message(r: &SignedRoot) -> pb::Root {
    let rec = &r.record;
    pb::Root {
        namespace: rec.namespace.clone(),
        seq: rec.seq,
        prev: hex::encode(rec.prev),
        graph_leaves: rec.graph_leaves,
        graph_root: hex::encode(rec.graph_root),
        time_leaves: rec.time_leaves,
        time_root: hex::encode(rec.time_root),
        entry: rec.entry,
        max_level: u32::from(rec.max_level),
        m: u32::from(rec.m),
        m0: u32::from(rec.m0),
        dim: u32::from(rec.dim),
        model: hex::encode(rec.model),
        created_at: rec.created_at,
        node_id: hex::encode(rec.node_id),
        signature: hex::encode(r.signature),
        hash: hex::encode(rec.hash()),
        signed: r.encode(),
        cosignatures: Vec::new(),
    }
}

impl CairnService {
    /// The cosignatures this node holds for the root a proof is against.
    async fn cosigs_of_proof(&self, proof: Option<&[u8]>) -> Vec<pb::Cosignature> {
        match proof.and_then(cairn_index::proof::root_of_proof) {
            Some(root) => self.cosigs_of(&root).await,
            None => Vec::new(),
        }
    }

    async fn cosigs_of(&self, root: &SignedRoot) -> Vec<pb::Cosignature> {
        self.engine
            .cosigs(&root.record)
            .await
            .into_iter()
            .map(|(w, sig)| pb::Cosignature {
                witness: hex::encode(w),
                signature: sig.to_vec(),
            })
            .collect()
    }

    /// How a namespace's model is shown: the node's model id, or `external:NAME/DIM`.
    fn model_label(&self, external: Option<&cairn_index::model::ExternalModel>) -> String {
        external.map_or_else(|| self.engine.embedder().info().id.clone(), |m| m.label())
    }
}

/// Checks an `external_model` field (CreateNamespace, Follow).
fn external_model(
    m: Option<pb::ExternalModel>,
) -> Result<Option<cairn_index::model::ExternalModel>, Status> {
    m.map(|m| {
        let dim = u16::try_from(m.dim).unwrap_or(u16::MAX);
        cairn_index::model::ExternalModel::new(&m.name, dim).map_err(|e| {
            Status::from(crate::error::NodeError::invalid(
                "external_model",
                e.to_string(),
            ))
        })
    })
    .transpose()
}

#[tonic::async_trait]
impl Cairn for CairnService {
    async fn remember(
        &self,
        request: Request<pb::RememberRequest>,
    ) -> Result<Response<pb::RememberResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        self.auth.guard(&meta, "Remember", &req.namespace)?;
        let items = req
            .items
            .into_iter()
            .enumerate()
            .map(|(n, i)| {
                let mut metadata = i.metadata;
                if !i.key.is_empty() {
                    cairn_index::validate::key(&format!("items[{n}].key"), &i.key)
                        .map_err(|e| Status::from(crate::error::NodeError::from(e)))?;
                    match metadata.get(KEY_META) {
                        Some(k) if *k != i.key => {
                            return Err(Status::invalid_argument(format!(
                                "items[{n}].key: differs from its metadata entry {KEY_META:?}; give one of them"
                            )))
                        }
                        _ => {
                            metadata.insert(KEY_META.to_owned(), i.key);
                        }
                    }
                }
                Ok(Item {
                    text: i.text,
                    metadata,
                    created_at: i.created_at,
                    vector: i.vector.map(|v| v.values),
                })
            })
            .collect::<Result<_, Status>>()?;
        let results = self.engine.remember(&req.namespace, items).await?;
        Ok(Response::new(pb::RememberResponse {
            results: results
                .into_iter()
                .map(|r| pb::RememberResult {
                    id: r.id.to_hex(),
                    deduplicated: r.deduplicated,
                    created_at: r.created_at,
                    replaced: r.replaced.map(|id| id.to_hex()).unwrap_or_default(),
                })
                .collect(),
        }))
    }

    async fn recall(
        &self,
        request: Request<pb::RecallRequest>,
    ) -> Result<Response<pb::RecallResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        self.auth.guard(&meta, "Recall", &req.namespace)?;
        let query = match (req.query, req.text_vector) {
            (Some(pb::recall_request::Query::Text(t)), Some(v)) => {
                Some(Query::TextWithVector(t, v.values))
            }
            (Some(pb::recall_request::Query::Text(t)), None) => Some(Query::Text(t)),
            (Some(pb::recall_request::Query::Vector(v)), None) => Some(Query::Vector(v.values)),
            (_, Some(_)) => {
                return Err(Status::invalid_argument(
                    "text_vector: goes with query.text (the text's vector); a vector-only query is query.vector",
                ))
            }
            (None, None) => None,
        };
        let filter = req
            .filter
            .map(|f| Filter {
                metadata: f.metadata,
                since: f.since,
                until: f.until,
            })
            .unwrap_or_default();
        let mode = match pb::RecallMode::try_from(req.mode) {
            Ok(pb::RecallMode::Default) => None,
            Ok(pb::RecallMode::Semantic) => Some(RecallMode::Semantic),
            Ok(pb::RecallMode::Lexical) => Some(RecallMode::Lexical),
            Ok(pb::RecallMode::Hybrid) => Some(RecallMode::Hybrid),
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "mode: {} is not a recall mode",
                    req.mode
                )))
            }
        };
        let (hits, proof, used) = self
            .engine
            .recall(
                &req.namespace,
                query,
                RecallOpts {
                    k: req.k,
                    filter,
                    ef: req.ef,
                    exact: req.exact,
                    proof: req.proof,
                    prefix: req.prefix,
                    mode,
                    depth: req.depth,
                },
            )
            .await?;
        let cosignatures = self.cosigs_of_proof(proof.as_deref()).await;
        Ok(Response::new(pb::RecallResponse {
            hits: hits.into_iter().map(|h| hit(h, req.proof)).collect(),
            proof: proof.unwrap_or_default(),
            cosignatures,
            mode: match used {
                RecallMode::Semantic => pb::RecallMode::Semantic,
                RecallMode::Lexical => pb::RecallMode::Lexical,
                RecallMode::Hybrid => pb::RecallMode::Hybrid,
            } as i32,
        }))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        self.auth.guard(&meta, "Get", &req.namespace)?;
        let ids = if req.ids.is_empty() && !req.keys.is_empty() {
            Vec::new()
        } else {
            parse_ids(&req.ids)?
        };
        let got = self
            .engine
            .get(&req.namespace, &ids, &req.keys, req.proof)
            .await?;
        let cosignatures = self.cosigs_of_proof(got.proof.as_deref()).await;
        Ok(Response::new(pb::GetResponse {
            memories: got
                .found
                .into_iter()
                .map(|m| memory(m, req.proof))
                .collect(),
            missing: got.missing,
            proof: got.proof.unwrap_or_default(),
            cosignatures,
            unreturned: got.unreturned,
        }))
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        self.auth.guard(&meta, "List", &req.namespace)?;
        let after = parse_page_token(&req.page_token)?;
        let page = self
            .engine
            .list(
                &req.namespace,
                req.since,
                req.until,
                req.limit,
                after,
                req.proof,
                &req.metadata,
            )
            .await?;
        let cosignatures = self.cosigs_of_proof(page.proof.as_deref()).await;
        Ok(Response::new(pb::ListResponse {
            memories: page
                .memories
                .into_iter()
                .map(|m| memory(m, req.proof))
                .collect(),
            next_page_token: page_token_of(page.next),
            proof: page.proof.unwrap_or_default(),
            cosignatures,
        }))
    }

    async fn forget(
        &self,
        request: Request<pb::ForgetRequest>,
    ) -> Result<Response<pb::ForgetResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        self.auth.guard(&meta, "Forget", &req.namespace)?;
        let ids = parse_ids(&req.ids)?;
        let (forgotten, missing) = self.engine.forget(&req.namespace, &ids).await?;
        Ok(Response::new(pb::ForgetResponse { forgotten, missing }))
    }

    async fn embed(
        &self,
        request: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        self.auth.guard(&meta, "Embed", "")?;
        let vectors = self.engine.embed(req.texts).await?;
        let info = self.engine.embedder().info();
        Ok(Response::new(pb::EmbedResponse {
            model: info.id.clone(),
            dim: info.dim as u32,
            vectors: vectors
                .into_iter()
                .map(|values| pb::Vector { values })
                .collect(),
        }))
    }

    async fn stats(
        &self,
        request: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        let caller = self.auth.guard(&meta, "Stats", "")?;
        if let Some(ns) = &req.namespace {
            self.auth.check(&caller, crate::auth::Right::Read, ns)?;
        }
        let spaces: Vec<_> = self
            .engine
            .stats(req.namespace.as_deref())?
            .into_iter()
            .filter(|s| {
                self.auth
                    .covers(&caller, crate::auth::Right::Read, &s.namespace)
            })
            .collect();
        let info = self.engine.embedder().info();
        Ok(Response::new(pb::StatsResponse {
            total_memories: spaces.iter().map(|s| s.memories).sum(),
            namespaces: spaces
                .into_iter()
                .map(|s| pb::NamespaceStats {
                    namespace: s.namespace,
                    memories: s.memories,
                    tombstones: s.tombstones,
                    index_points: s.index_points,
                    newest_created_at: s.newest_created_at,
                    model: s
                        .local_model
                        .clone()
                        .unwrap_or_else(|| self.model_label(s.external.as_ref())),
                })
                .collect(),
            model: info.id.clone(),
            dim: info.dim as u32,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }))
    }

    async fn list_namespaces(
        &self,
        request: Request<pb::ListNamespacesRequest>,
    ) -> Result<Response<pb::ListNamespacesResponse>, Status> {
        let caller = self.auth.guard(request.metadata(), "ListNamespaces", "")?;
        let spaces: Vec<_> = self
            .engine
            .stats(None)?
            .into_iter()
            .filter(|s| self.auth.covers_any(&caller, &s.namespace))
            .collect();
        let follows: std::collections::HashMap<String, [u8; 32]> =
            self.engine.follows().into_iter().collect();
        Ok(Response::new(pb::ListNamespacesResponse {
            namespaces: spaces
                .into_iter()
                .map(|s| pb::NamespaceInfo {
                    owner: follows
                        .get(&s.namespace)
                        .map(hex::encode)
                        .unwrap_or_default(),
                    seq: self.engine.owner_root_seq(&s.namespace).unwrap_or(0),
                    model: s
                        .local_model
                        .clone()
                        .unwrap_or_else(|| self.model_label(s.external.as_ref())),
                    namespace: s.namespace,
                    memories: s.memories,
                })
                .collect(),
        }))
    }

    async fn create_namespace(
        &self,
        request: Request<pb::CreateNamespaceRequest>,
    ) -> Result<Response<pb::CreateNamespaceResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        self.auth.guard(&meta, "CreateNamespace", &req.namespace)?;
        if !req.model.is_empty() {
            let invalid = |m: String| Status::from(crate::error::NodeError::invalid("model", m));
            if req.external_model.is_some() {
                return Err(invalid(
                    "give either external_model or model, not both".into(),
                ));
            }
            let hash = crate::models::parse_hash(&req.model).map_err(invalid)?;
            let (root, created, label) = self.engine.create_local(&req.namespace, hash).await?;
            return Ok(Response::new(pb::CreateNamespaceResponse {
                created,
                model: label,
                root: root.as_ref().map(root_message),
            }));
        }
        let model = external_model(req.external_model)?;
        let (root, created) = self
            .engine
            .create_namespace(&req.namespace, model.clone())
            .await?;
        Ok(Response::new(pb::CreateNamespaceResponse {
            created,
            model: self.model_label(model.as_ref()),
            root: root.as_ref().map(root_message),
        }))
    }

    type MigrateStream = ReceiverStream<Result<pb::MigrateProgress, Status>>;

    async fn migrate(
        &self,
        request: Request<pb::MigrateRequest>,
    ) -> Result<Response<Self::MigrateStream>, Status> {
        let (meta, _, req) = request.into_parts();
        self.auth.guard(&meta, "Migrate", &req.namespace)?;
        let target = crate::models::parse_hash(&req.model)
            .map_err(|e| Status::from(crate::error::NodeError::invalid("model", e)))?;
        let (progress_tx, mut progress) = tokio::sync::mpsc::channel(8);
        let (tx, out) = tokio::sync::mpsc::channel(8);
        let engine = self.engine.clone();
        // Its own task: a caller that goes away stops the migration between batches (closing `progress`),
        // never in the middle of its last step.
        let job =
            tokio::spawn(async move { engine.migrate(&req.namespace, target, progress_tx).await });
        tokio::spawn(async move {
            while let Some(p) = progress.recv().await {
                let msg = pb::MigrateProgress {
                    done: p.done,
                    total: p.total,
                    resumed: p.resumed,
                    result: None,
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
            let last = match job.await {
                Ok(Ok(m)) => Ok(pb::MigrateProgress {
                    done: m.memories,
                    total: m.memories,
                    resumed: m.resumed,
                    result: Some(pb::MigrateResult {
                        changed: m.changed,
                        model: m.model,
                        memories: m.memories,
                        caught_up: m.caught_up,
                        root: m.root.as_ref().map(root_message),
                    }),
                }),
                Ok(Err(e)) => Err(Status::from(e)),
                Err(e) => Err(Status::internal(format!("migration task failed: {e}"))),
            };
            let _ = tx.send(last).await;
        });
        Ok(Response::new(ReceiverStream::new(out)))
    }

    async fn get_root(
        &self,
        request: Request<pb::GetRootRequest>,
    ) -> Result<Response<pb::Root>, Status> {
        let (meta, _, req) = request.into_parts();
        self.auth.guard(&meta, "GetRoot", &req.namespace)?;
        let root = self.engine.root(&req.namespace, req.seq).await?;
        let mut msg = root_message(&root);
        msg.cosignatures = self.cosigs_of(&root).await;
        Ok(Response::new(msg))
    }

    type WatchRootsStream = ReceiverStream<Result<pb::Root, Status>>;

    async fn watch_roots(
        &self,
        request: Request<pb::WatchRootsRequest>,
    ) -> Result<Response<Self::WatchRootsStream>, Status> {
        let (meta, _, req) = request.into_parts();
        self.auth.guard(&meta, "WatchRoots", &req.namespace)?;
        let permit = self.watchers.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "this node already serves its maximum of {} WatchRoots streams (--max-watchers); retry later",
                self.max_watchers
            ))
        })?;
        let mut rx = self.engine.watch_roots();
        let current = self.engine.root(&req.namespace, None).await?;
        let (tx, out) = tokio::sync::mpsc::channel(64);
        let ns = req.namespace;
        tokio::spawn(async move {
            // Held until the stream ends, which a client's disconnect does at once (below).
            let _permit = permit;
            if tx.send(Ok(root_message(&current))).await.is_err() {
                return;
            }
            let mut last = current.record.seq;
            loop {
                let got = tokio::select! {
                    _ = tx.closed() => return,
                    got = rx.recv() => got,
                };
                match got {
                    Ok(r) if r.record.namespace == ns && r.record.seq > last => {
                        last = r.record.seq;
                        if tx.send(Ok(root_message(&r))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx
                            .send(Err(Status::resource_exhausted(
                                "watcher fell behind; reconnect",
                            )))
                            .await;
                        return;
                    }
                    Err(_) => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(out)))
    }

    async fn node_info(
        &self,
        request: Request<pb::NodeInfoRequest>,
    ) -> Result<Response<pb::NodeInfoResponse>, Status> {
        self.auth.guard(request.metadata(), "NodeInfo", "")?;
        Ok(Response::new(pb::NodeInfoResponse {
            node_id: self.engine.node_id(),
            model: self.engine.embedder().info().id.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ticket: self.p2p.ticket().to_string(),
        }))
    }

    async fn add_peer(
        &self,
        request: Request<pb::AddPeerRequest>,
    ) -> Result<Response<pb::AddPeerResponse>, Status> {
        self.auth.guard(request.metadata(), "AddPeer", "")?;
        let t = crate::p2p::ticket::Ticket::parse(&request.into_inner().ticket)
            .map_err(|e| Status::invalid_argument(format!("ticket: {e}")))?;
        self.p2p.add_peer(&t).await?;
        Ok(Response::new(pb::AddPeerResponse {
            node_id: hex::encode(t.id),
        }))
    }

    async fn list_peers(
        &self,
        request: Request<pb::ListPeersRequest>,
    ) -> Result<Response<pb::ListPeersResponse>, Status> {
        self.auth.guard(request.metadata(), "ListPeers", "")?;
        let peers = self.engine.peers().await?;
        Ok(Response::new(pb::ListPeersResponse {
            peers: peers
                .into_iter()
                .map(|(id, addrs)| pb::Peer {
                    node_id: hex::encode(id),
                    addrs: addrs.split(',').map(str::to_owned).collect(),
                })
                .collect(),
        }))
    }

    type SnapshotStream = ReceiverStream<Result<pb::SnapshotChunk, Status>>;

    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let (meta, _, req) = request.into_parts();
        self.auth.guard(&meta, "Snapshot", &req.namespace)?;
        let ns = req.namespace;
        let snap = self
            .engine
            .snapshot(&ns)
            .await?
            .ok_or_else(|| Status::failed_precondition("namespace has no signed root yet"))?;
        let parts = self.engine.snapshot_parts(snap.hash).await?;
        let (tx, out) = tokio::sync::mpsc::channel(8);
        let engine = self.engine.clone();
        tokio::spawn(async move {
            let head = pb::SnapshotChunk {
                data: Vec::new(),
                part: 0,
                snapshot_hash: snap.hash.to_vec(),
                seq: snap.seq,
                parts: parts.len() as u32,
            };
            if tx.send(Ok(head)).await.is_err() {
                return;
            }
            for (i, h) in parts.iter().enumerate() {
                let bytes = match engine.blob_bytes(*h).await {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
                // Every part gets at least one chunk (an empty part is one empty chunk), so parts stay in step.
                let chunks: Vec<&[u8]> = if bytes.is_empty() {
                    vec![&[]]
                } else {
                    bytes.chunks(1 << 20).collect()
                };
                for chunk in chunks {
                    let msg = pb::SnapshotChunk {
                        data: chunk.to_vec(),
                        part: i as u32,
                        ..Default::default()
                    };
                    if tx.send(Ok(msg)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(out)))
    }

    async fn alerts(
        &self,
        request: Request<pb::AlertsRequest>,
    ) -> Result<Response<pb::AlertsResponse>, Status> {
        self.auth.guard(request.metadata(), "Alerts", "")?;
        let alerts = self.engine.alerts();
        Ok(Response::new(pb::AlertsResponse {
            alerts: alerts
                .iter()
                .map(|a| pb::Alert {
                    kind: "equivocation".into(),
                    owner: hex::encode(a.owner),
                    namespace: a.namespace.clone(),
                    seq: a.roots[0].record.seq,
                    roots: a.roots.iter().map(root_message).collect(),
                })
                .collect(),
        }))
    }

    async fn follow(
        &self,
        request: Request<pb::FollowRequest>,
    ) -> Result<Response<pb::FollowResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        self.auth.guard(&meta, "Follow", &req.namespace)?;
        let mut owner = [0u8; 32];
        hex::decode_to_slice(req.owner.trim(), &mut owner)
            .map_err(|_| Status::invalid_argument("owner: must be a node id of 64 hex digits"))?;
        if iroh::PublicKey::from_bytes(&owner).is_err() {
            return Err(Status::invalid_argument("owner: not a valid node id"));
        }
        let model = external_model(req.external_model)?;
        // Recording the follow (redb, then the in-memory namespace) and starting the follower run in a task of
        // their own: a caller that goes away cannot leave the follow on disk but not in memory.
        let (engine, p2p) = (self.engine.clone(), self.p2p.clone());
        tokio::spawn(async move {
            engine.follow(&req.namespace, owner, model).await?;
            p2p.spawn_follower(req.namespace, owner);
            Ok::<_, crate::error::NodeError>(())
        })
        .await
        .map_err(crate::error::NodeError::from)??;
        Ok(Response::new(pb::FollowResponse {}))
    }

    async fn remove_peer(
        &self,
        request: Request<pb::RemovePeerRequest>,
    ) -> Result<Response<pb::RemovePeerResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        self.auth.guard(&meta, "RemovePeer", "")?;
        let mut id = [0u8; 32];
        hex::decode_to_slice(req.node_id.trim(), &mut id)
            .map_err(|_| Status::invalid_argument("node_id: must be a node id of 64 hex digits"))?;
        let removed = self.engine.remove_peer(id).await?;
        Ok(Response::new(pb::RemovePeerResponse { removed }))
    }

    async fn unfollow(
        &self,
        request: Request<pb::UnfollowRequest>,
    ) -> Result<Response<pb::UnfollowResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        self.auth.guard(&meta, "Unfollow", &req.namespace)?;
        // Like Follow: the drop runs in a task of its own, so a caller that goes away cannot stop it halfway.
        let (engine, p2p) = (self.engine.clone(), self.p2p.clone());
        let dropped = tokio::spawn(async move {
            p2p.stop_follower(&req.namespace);
            engine.unfollow(&req.namespace).await
        })
        .await
        .map_err(crate::error::NodeError::from)??;
        Ok(Response::new(pb::UnfollowResponse { dropped }))
    }

    async fn mint_token(
        &self,
        request: Request<pb::MintTokenRequest>,
    ) -> Result<Response<pb::MintTokenResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        let caller = self.auth.guard(&meta, "MintToken", "")?;
        let rights = crate::auth::token::rights(&req.rights)
            .map_err(|e| Status::invalid_argument(format!("rights: {e}")))?;
        let ttl = match req.ttl_secs {
            Some(0) => return Err(Status::invalid_argument("ttl_secs: must be at least 1")),
            Some(s) if s > 100 * 365 * 86_400 => {
                return Err(Status::invalid_argument(
                    "ttl_secs: at most 100 years (leave it out for no expiry)",
                ))
            }
            t => t.map(std::time::Duration::from_secs),
        };
        let grant = crate::auth::token::Grant::new(&req.prefixes, &rights, ttl)
            .map_err(|e| Status::invalid_argument(format!("prefixes: {e}")))?;
        let (token, revocation_ids) = self.auth.mint(&caller, &grant)?;
        Ok(Response::new(pb::MintTokenResponse {
            token,
            revocation_ids,
            expires_at: grant.expires.map(|s| s * 1000).unwrap_or(0),
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        self.auth.guard(&meta, "RevokeToken", "")?;
        let id = hex::decode(req.id.trim())
            .ok()
            .filter(|b| !b.is_empty() && b.len() <= 128)
            .ok_or_else(|| {
                Status::invalid_argument(
                    "id: a revocation id in hex, as `cairn token inspect` prints",
                )
            })?;
        // Durable first, then in force: a revocation that returned survives a crash.
        self.engine.revoke_token(id.clone()).await?;
        self.auth.mark_revoked(id);
        Ok(Response::new(pb::RevokeTokenResponse {}))
    }

    async fn share(
        &self,
        request: Request<pb::ShareRequest>,
    ) -> Result<Response<pb::ShareResponse>, Status> {
        self.set_grant(request, "Share", true).await
    }

    async fn unshare(
        &self,
        request: Request<pb::ShareRequest>,
    ) -> Result<Response<pb::ShareResponse>, Status> {
        self.set_grant(request, "Unshare", false).await
    }

    async fn list_shares(
        &self,
        request: Request<pb::ListSharesRequest>,
    ) -> Result<Response<pb::ListSharesResponse>, Status> {
        let caller = self.auth.guard(request.metadata(), "ListShares", "")?;
        let mut grants: Vec<pb::ShareGrant> = self
            .engine
            .grants()
            .await?
            .into_iter()
            .filter(|(p, _)| self.auth.covers(&caller, crate::auth::Right::Admin, p))
            .map(|(prefix, peer)| pb::ShareGrant {
                prefix,
                node_id: hex::encode(peer),
            })
            .collect();
        grants.sort_by(|a, b| (&a.prefix, &a.node_id).cmp(&(&b.prefix, &b.node_id)));
        Ok(Response::new(pb::ListSharesResponse { grants }))
    }
}

impl CairnService {
    /// Share and Unshare: admin on the prefix, then the grant changes durably.
    async fn set_grant(
        &self,
        request: Request<pb::ShareRequest>,
        method: &str,
        on: bool,
    ) -> Result<Response<pb::ShareResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        let prefix = crate::auth::token::prefix(&req.prefix)
            .map_err(|e| Status::invalid_argument(format!("prefix: {e}")))?;
        self.auth.guard(&meta, method, &prefix)?;
        let mut peer = [0u8; 32];
        hex::decode_to_slice(req.node_id.trim(), &mut peer)
            .map_err(|_| Status::invalid_argument("node_id: must be a node id of 64 hex digits"))?;
        let changed = self.engine.set_grant(&prefix, peer, on).await?;
        Ok(Response::new(pb::ShareResponse { changed }))
    }
}

/// Memory ids as sent on the wire (hex), each error naming its index: at least one, at most
/// [`crate::engine::MAX_ITEMS`].
fn parse_ids(ids: &[String]) -> Result<Vec<MemoryId>, NodeError> {
    use crate::engine::MAX_ITEMS;
    if ids.is_empty() {
        return Err(NodeError::invalid("ids", "at least one id is required"));
    }
    if ids.len() > MAX_ITEMS {
        return Err(NodeError::too_large(
            "ids",
            format!("{} ids, at most {MAX_ITEMS} per call", ids.len()),
        ));
    }
    ids.iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<MemoryId>()
                .map_err(|e| NodeError::invalid(format!("ids[{i}]"), e.to_string()))
        })
        .collect()
}

/// The page token that continues after `last` (`hex(u64be(created_at) ‖ id)`; empty when no page follows).
fn page_token_of(last: Option<(u64, MemoryId)>) -> String {
    match last {
        Some((t, id)) => {
            let mut b = t.to_be_bytes().to_vec();
            b.extend_from_slice(id.as_bytes());
            hex::encode(b)
        }
        None => String::new(),
    }
}

/// Parses a token made by [`page_token_of`] (empty: the first page).
fn parse_page_token(t: &str) -> Result<Option<(u64, MemoryId)>, NodeError> {
    if t.is_empty() {
        return Ok(None);
    }
    let bad = || NodeError::invalid("page_token", "not a token returned by List");
    let raw = hex::decode(t).map_err(|_| bad())?;
    if raw.len() != 40 {
        return Err(bad());
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&raw[..8]);
    let mut id = [0u8; 32];
    id.copy_from_slice(&raw[8..]);
    Ok(Some((u64::from_be_bytes(ts), MemoryId(id))))
}
