//! # cairn-client
//!
//! The Rust SDK for Cairn: typed async methods over a node's gRPC API (`cairn.v1`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), cairn_client::Error> {
//! use cairn_client::{CairnClient, NewMemory};
//!
//! let client = CairnClient::connect("http://127.0.0.1:7420").await?;
//! client
//!     .remember("agents/alice", vec![NewMemory::new("Alice prefers tea.").meta("source", "chat")])
//!     .await?;
//! let hits = client.recall("agents/alice", "what does Alice drink?").k(3).send().await?;
//! for hit in hits {
//!     println!("{:.3} {}", hit.score, hit.text);
//! }
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
pub mod proof_file;
mod recall;
pub mod verify;

use std::collections::BTreeMap;

use cairn_proto::v1 as pb;
use tonic::transport::{Channel, Endpoint};

pub use cairn_proto::v1::{
    EmbedResponse, GetResponse, Hit, ListResponse, Memory, NamespaceInfo, NamespaceStats,
    NodeInfoResponse, RecallResponse, RememberResult, Root, StatsResponse,
};
pub use error::Error;
pub use recall::RecallBuilder;

/// The address a node listens on unless told otherwise.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:7420";

/// Largest response the client accepts (a List page of big memories can exceed tonic's 4 MiB default).
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// A connection to one Cairn node. Cheap to clone; clones share the connection.
#[derive(Clone, Debug)]
pub struct CairnClient {
    inner: pb::cairn_client::CairnClient<Channel>,
}

/// A memory to remember: text, optional metadata and an optional creation time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewMemory {
    /// The text.
    pub text: String,
    /// Labels that Recall can filter on.
    pub metadata: BTreeMap<String, String>,
    /// Creation time in ms since the Unix epoch; `None` lets the node use its clock.
    pub created_at: Option<u64>,
}

impl NewMemory {
    /// A memory with just a text.
    pub fn new(text: impl Into<String>) -> Self {
        NewMemory {
            text: text.into(),
            ..Default::default()
        }
    }

    /// Adds a metadata entry.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the creation time (ms since the Unix epoch), e.g. when importing.
    pub fn created_at(mut self, ms: u64) -> Self {
        self.created_at = Some(ms);
        self
    }
}

impl From<NewMemory> for pb::MemoryInput {
    fn from(m: NewMemory) -> Self {
        pb::MemoryInput {
            text: m.text,
            metadata: m.metadata,
            created_at: m.created_at,
        }
    }
}

/// Options of a List call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only memories created at or after this time (ms).
    pub since: Option<u64>,
    /// Only memories created before this time (ms).
    pub until: Option<u64>,
    /// Page size; `None` lets the node choose (100).
    pub limit: Option<u32>,
    /// The previous page's `next_page_token`.
    pub page_token: Option<String>,
}

impl CairnClient {
    /// Connects to a node, e.g. `http://127.0.0.1:7420`.
    pub async fn connect(url: impl Into<String>) -> Result<Self, Error> {
        let url = url.into();
        let endpoint = Endpoint::from_shared(url.clone()).map_err(|e| Error::InvalidUrl {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Error::Connect { url, source: e })?;
        Ok(Self::from_channel(channel))
    }

    /// Wraps an existing tonic channel.
    pub fn from_channel(channel: Channel) -> Self {
        let inner = pb::cairn_client::CairnClient::new(channel)
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
            .max_encoding_message_size(MAX_RESPONSE_BYTES);
        CairnClient { inner }
    }

    /// Stores memories in a namespace; returns one result per item, in order.
    pub async fn remember(
        &self,
        namespace: &str,
        items: Vec<NewMemory>,
    ) -> Result<Vec<RememberResult>, Error> {
        let req = pb::RememberRequest {
            namespace: namespace.to_owned(),
            items: items.into_iter().map(Into::into).collect(),
        };
        Ok(self.inner.clone().remember(req).await?.into_inner().results)
    }

    /// Starts a Recall by text; finish it with [`RecallBuilder::send`].
    pub fn recall(&self, namespace: &str, query: impl Into<String>) -> RecallBuilder {
        RecallBuilder::new(
            self.inner.clone(),
            namespace,
            pb::recall_request::Query::Text(query.into()),
        )
    }

    /// Starts a Recall by vector (made with the node's model).
    pub fn recall_vector(&self, namespace: &str, vector: Vec<f32>) -> RecallBuilder {
        RecallBuilder::new(
            self.inner.clone(),
            namespace,
            pb::recall_request::Query::Vector(pb::Vector { values: vector }),
        )
    }

    /// Fetches memories by id; unknown ids come back in `missing`.
    pub async fn get(&self, namespace: &str, ids: Vec<String>) -> Result<GetResponse, Error> {
        self.get_impl(namespace, ids, false).await
    }

    async fn get_impl(
        &self,
        namespace: &str,
        ids: Vec<String>,
        proof: bool,
    ) -> Result<GetResponse, Error> {
        let req = pb::GetRequest {
            namespace: namespace.to_owned(),
            ids,
            proof,
        };
        Ok(self.inner.clone().get(req).await?.into_inner())
    }

    /// Fetches memories by id with an inclusion proof (check it with [`verify::get`]).
    pub async fn get_with_proof(
        &self,
        namespace: &str,
        ids: Vec<String>,
    ) -> Result<GetResponse, Error> {
        self.get_impl(namespace, ids, true).await
    }

    /// Lists one page with a range-completeness proof (check it with [`verify::list`]).
    pub async fn list_with_proof(
        &self,
        namespace: &str,
        opts: ListOptions,
    ) -> Result<ListResponse, Error> {
        self.list_impl(namespace, opts, true).await
    }

    /// A namespace's latest signed root, or the one with `seq`.
    pub async fn root(&self, namespace: &str, seq: Option<u64>) -> Result<pb::Root, Error> {
        let req = pb::GetRootRequest {
            namespace: namespace.to_owned(),
            seq,
        };
        Ok(self.inner.clone().get_root(req).await?.into_inner())
    }

    /// The node's id (hex public key), model and version.
    pub async fn node_info(&self) -> Result<pb::NodeInfoResponse, Error> {
        Ok(self
            .inner
            .clone()
            .node_info(pb::NodeInfoRequest {})
            .await?
            .into_inner())
    }

    /// Adds a peer from its ticket (`NODE_ID@ADDR[,ADDR...]`); returns its node id.
    pub async fn add_peer(&self, ticket: &str) -> Result<String, Error> {
        Ok(self
            .inner
            .clone()
            .add_peer(pb::AddPeerRequest {
                ticket: ticket.to_owned(),
            })
            .await?
            .into_inner()
            .node_id)
    }

    /// The node's known peers.
    pub async fn peers(&self) -> Result<Vec<pb::Peer>, Error> {
        Ok(self
            .inner
            .clone()
            .list_peers(pb::ListPeersRequest {})
            .await?
            .into_inner()
            .peers)
    }

    /// Makes `namespace` on this node a replica of `owner`'s (hex node id) namespace of the same name.
    pub async fn follow(&self, namespace: &str, owner: &str) -> Result<(), Error> {
        self.inner
            .clone()
            .follow(pb::FollowRequest {
                namespace: namespace.to_owned(),
                owner: owner.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// A stream of the namespace's signed roots: the current one, then each new one as the node makes it (or,
    /// on a replica, installs it).
    pub async fn watch_roots(&self, namespace: &str) -> Result<tonic::Streaming<pb::Root>, Error> {
        Ok(self
            .inner
            .clone()
            .watch_roots(pb::WatchRootsRequest {
                namespace: namespace.to_owned(),
            })
            .await?
            .into_inner())
    }

    /// The committed state of a namespace at its latest root: the content-addressed snapshot of docs/PROOFS.md
    /// ("Snapshots"), at most `max_bytes` in all. The parts are checked to hash to the snapshot hash (so they are
    /// exactly what peers fetch over iroh-blobs under that hash); their content is still untrusted until checked
    /// against the owner's signed root, as `cairn audit` does.
    pub async fn snapshot(&self, namespace: &str, max_bytes: usize) -> Result<Snapshot, Error> {
        let mut stream = self
            .inner
            .clone()
            .snapshot(pb::SnapshotRequest {
                namespace: namespace.to_owned(),
            })
            .await?
            .into_inner();
        let head = stream
            .message()
            .await?
            .ok_or_else(|| Error::Malformed("empty snapshot stream".into()))?;
        let hash: [u8; 32] = head
            .snapshot_hash
            .as_slice()
            .try_into()
            .map_err(|_| Error::Malformed("snapshot hash is not 32 bytes".into()))?;
        let count = head.parts as usize;
        if count == 0 {
            return Err(Error::Malformed("snapshot without parts".into()));
        }
        // Parts arrive in order, each as one or more chunks; nothing is allocated ahead of the bytes received.
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut total = 0usize;
        while let Some(chunk) = stream.message().await? {
            let i = chunk.part as usize;
            if i == parts.len() && i < count {
                parts.push(Vec::new());
            } else if i + 1 != parts.len() {
                return Err(Error::Malformed(format!("chunk for part {i} out of order")));
            }
            total += chunk.data.len();
            if total > max_bytes {
                return Err(Error::TooLarge(format!(
                    "snapshot is larger than {max_bytes} bytes"
                )));
            }
            parts[i].extend_from_slice(&chunk.data);
        }
        if parts.len() != count {
            return Err(Error::Malformed(format!(
                "snapshot has {} of {count} parts",
                parts.len()
            )));
        }
        if snapshot_hash(&parts) != hash {
            return Err(Error::Malformed(
                "snapshot parts do not hash to the snapshot hash".into(),
            ));
        }
        Ok(Snapshot {
            hash,
            seq: head.seq,
            parts,
        })
    }

    /// Evidence of equivocation the node holds.
    pub async fn alerts(&self) -> Result<Vec<pb::Alert>, Error> {
        Ok(self
            .inner
            .clone()
            .alerts(pb::AlertsRequest {})
            .await?
            .into_inner()
            .alerts)
    }

    /// Lists one page of memories in (created_at, id) order.
    pub async fn list(&self, namespace: &str, opts: ListOptions) -> Result<ListResponse, Error> {
        self.list_impl(namespace, opts, false).await
    }

    async fn list_impl(
        &self,
        namespace: &str,
        opts: ListOptions,
        proof: bool,
    ) -> Result<ListResponse, Error> {
        let req = pb::ListRequest {
            namespace: namespace.to_owned(),
            since: opts.since,
            until: opts.until,
            limit: opts.limit.unwrap_or(0),
            page_token: opts.page_token.unwrap_or_default(),
            proof,
        };
        Ok(self.inner.clone().list(req).await?.into_inner())
    }

    /// Forgets memories by id; returns (forgotten, missing).
    pub async fn forget(
        &self,
        namespace: &str,
        ids: Vec<String>,
    ) -> Result<(Vec<String>, Vec<String>), Error> {
        let req = pb::ForgetRequest {
            namespace: namespace.to_owned(),
            ids,
        };
        let resp = self.inner.clone().forget(req).await?.into_inner();
        Ok((resp.forgotten, resp.missing))
    }

    /// Embeds texts with the node's model.
    pub async fn embed(&self, texts: Vec<String>) -> Result<EmbedResponse, Error> {
        Ok(self
            .inner
            .clone()
            .embed(pb::EmbedRequest { texts })
            .await?
            .into_inner())
    }

    /// Counts for one namespace or all.
    pub async fn stats(&self, namespace: Option<&str>) -> Result<StatsResponse, Error> {
        let req = pb::StatsRequest {
            namespace: namespace.map(str::to_owned),
        };
        Ok(self.inner.clone().stats(req).await?.into_inner())
    }

    /// All namespaces on the node.
    pub async fn list_namespaces(&self) -> Result<Vec<NamespaceInfo>, Error> {
        Ok(self
            .inner
            .clone()
            .list_namespaces(pb::ListNamespacesRequest {})
            .await?
            .into_inner()
            .namespaces)
    }
}

/// A namespace's committed state as a node sent it (see [`CairnClient::snapshot`]).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The BLAKE3 hash of its iroh HashSeq.
    pub hash: [u8; 32],
    /// The root seq the node says it is at (the content says for sure).
    pub seq: u64,
    /// Part 0: the catch-up answer; parts 1..: record pages.
    pub parts: Vec<Vec<u8>>,
}

/// The hash of a snapshot with these parts: BLAKE3 of the concatenated BLAKE3 hashes of the parts (an iroh
/// HashSeq blob's hash).
pub fn snapshot_hash(parts: &[Vec<u8>]) -> [u8; 32] {
    let mut seq = Vec::with_capacity(parts.len() * 32);
    for p in parts {
        seq.extend_from_slice(blake3::hash(p).as_bytes());
    }
    *blake3::hash(&seq).as_bytes()
}
