//! The `cairn.v1.Cairn` gRPC service: converts messages to engine calls and engine errors to statuses.

use std::sync::Arc;

use cairn_proto::v1 as pb;
use pb::cairn_server::Cairn;
use tonic::{Request, Response, Status};

use crate::engine::{Engine, Filter, HitOut, Item, MemoryOut, Query};

/// The gRPC face of an [`Engine`].
pub struct CairnService {
    engine: Arc<Engine>,
}

impl CairnService {
    /// Serves `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        CairnService { engine }
    }
}

fn memory(m: MemoryOut) -> pb::Memory {
    pb::Memory {
        id: m.id.to_hex(),
        namespace: m.record.namespace,
        text: m.record.text,
        metadata: m.record.metadata,
        created_at: m.record.created_at,
    }
}

fn hit(h: HitOut) -> pb::Hit {
    pb::Hit {
        id: h.memory.id.to_hex(),
        text: h.memory.record.text,
        metadata: h.memory.record.metadata,
        created_at: h.memory.record.created_at,
        score: h.score,
    }
}

#[tonic::async_trait]
impl Cairn for CairnService {
    async fn remember(
        &self,
        request: Request<pb::RememberRequest>,
    ) -> Result<Response<pb::RememberResponse>, Status> {
        let req = request.into_inner();
        let items = req
            .items
            .into_iter()
            .map(|i| Item {
                text: i.text,
                metadata: i.metadata,
                created_at: i.created_at,
            })
            .collect();
        let results = self.engine.remember(&req.namespace, items).await?;
        Ok(Response::new(pb::RememberResponse {
            results: results
                .into_iter()
                .map(|r| pb::RememberResult {
                    id: r.id.to_hex(),
                    deduplicated: r.deduplicated,
                    created_at: r.created_at,
                })
                .collect(),
        }))
    }

    async fn recall(
        &self,
        request: Request<pb::RecallRequest>,
    ) -> Result<Response<pb::RecallResponse>, Status> {
        let req = request.into_inner();
        let query = req.query.map(|q| match q {
            pb::recall_request::Query::Text(t) => Query::Text(t),
            pb::recall_request::Query::Vector(v) => Query::Vector(v.values),
        });
        let filter = req
            .filter
            .map(|f| Filter {
                metadata: f.metadata,
                since: f.since,
                until: f.until,
            })
            .unwrap_or_default();
        let hits = self
            .engine
            .recall(&req.namespace, query, req.k, filter, req.ef, req.exact)
            .await?;
        Ok(Response::new(pb::RecallResponse {
            hits: hits.into_iter().map(hit).collect(),
        }))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let req = request.into_inner();
        let (found, missing) = self.engine.get(&req.namespace, &req.ids).await?;
        Ok(Response::new(pb::GetResponse {
            memories: found.into_iter().map(memory).collect(),
            missing,
        }))
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let req = request.into_inner();
        let (page, next) = self
            .engine
            .list(
                &req.namespace,
                req.since,
                req.until,
                req.limit,
                &req.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListResponse {
            memories: page.into_iter().map(memory).collect(),
            next_page_token: next,
        }))
    }

    async fn forget(
        &self,
        request: Request<pb::ForgetRequest>,
    ) -> Result<Response<pb::ForgetResponse>, Status> {
        let req = request.into_inner();
        let (forgotten, missing) = self.engine.forget(&req.namespace, &req.ids).await?;
        Ok(Response::new(pb::ForgetResponse { forgotten, missing }))
    }

    async fn embed(
        &self,
        request: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedResponse>, Status> {
        let req = request.into_inner();
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
        let req = request.into_inner();
        let spaces = self.engine.stats(req.namespace.as_deref())?;
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
                })
                .collect(),
            model: info.id.clone(),
            dim: info.dim as u32,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }))
    }

    async fn list_namespaces(
        &self,
        _request: Request<pb::ListNamespacesRequest>,
    ) -> Result<Response<pb::ListNamespacesResponse>, Status> {
        let spaces = self.engine.stats(None)?;
        Ok(Response::new(pb::ListNamespacesResponse {
            namespaces: spaces
                .into_iter()
                .map(|s| pb::NamespaceInfo {
                    namespace: s.namespace,
                    memories: s.memories,
                })
                .collect(),
        }))
    }
}
