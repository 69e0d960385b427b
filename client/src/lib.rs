//! # cairn-client
//!
//! The Rust SDK for Cairn: typed async methods over a node's gRPC API (`cairn.v1`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), cairn_client::Error> {
//! use cairn_client::{CairnClient, NewMemory};
//!
//! let token = std::env::var("CAIRN_TOKEN").unwrap_or_default();
//! let client = CairnClient::connect_with_token("http://127.0.0.1:7420", token).await?;
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

#[cfg(feature = "anchor")]
pub mod anchor;
mod connect;
mod error;
pub mod pins;
pub mod proof_file;
mod recall;
pub mod verify;

use std::collections::BTreeMap;

use cairn_proto::v1 as pb;
use tonic::transport::Channel;

pub use cairn_proto::v1::{
    EmbedResponse, GetResponse, Hit, ListResponse, Memory, NamespaceInfo, NamespaceStats,
    NodeInfoResponse, RecallResponse, RememberResult, Root, StatsResponse,
};
pub use connect::{Bearer, Connect, Raw, Seen};
pub use error::Error;
pub use recall::RecallBuilder;

/// The address a node listens on unless told otherwise.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:7420";

/// Largest response the client accepts (a List page of big memories can exceed tonic's 4 MiB default).
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// A connection to one Cairn node. Cheap to clone; clones share the connection.
#[derive(Clone, Debug)]
pub struct CairnClient {
    inner: Raw,
    channel: Channel,
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
    /// A key unique in the namespace: remembering it again replaces the memory holding it, in one commit.
    pub key: Option<String>,
    /// The text's vector from the namespace's external model ([`CairnClient::create_namespace`]); `None` for
    /// namespaces the node embeds itself.
    pub vector: Option<Vec<f32>>,
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

    /// Sets the memory's key (unique in its namespace; an existing memory with this key is replaced).
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the text's vector (namespaces of an external model take one with every text, others refuse it).
    pub fn vector(mut self, vector: Vec<f32>) -> Self {
        self.vector = Some(vector);
        self
    }
}

impl From<NewMemory> for pb::MemoryInput {
    fn from(m: NewMemory) -> Self {
        pb::MemoryInput {
            text: m.text,
            metadata: m.metadata,
            created_at: m.created_at,
            key: m.key.unwrap_or_default(),
            vector: m.vector.map(|values| pb::Vector { values }),
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
    /// Only memories holding every one of these metadata pairs (not combinable with a proof).
    pub metadata: BTreeMap<String, String>,
}

impl CairnClient {
    /// Connects to a node without a token, e.g. `http://127.0.0.1:7420` (enough for `node_info`; nodes check
    /// tokens on every other call, so most callers want [`CairnClient::connect_with_token`]).
    pub async fn connect(url: impl Into<String>) -> Result<Self, Error> {
        Connect::new(url).connect().await
    }

    /// Connects to a node and sends `token` (a capability token, `cairn token mint`) with every call.
    pub async fn connect_with_token(
        url: impl Into<String>,
        token: impl Into<String>,
    ) -> Result<Self, Error> {
        Connect::new(url).token(token).connect().await
    }

    /// Connection options: token, TLS pin. Finish with [`Connect::connect`].
    pub fn builder(url: impl Into<String>) -> Connect {
        Connect::new(url)
    }

    /// Wraps an existing tonic channel, sending `token` with every call.
    pub fn from_channel(channel: Channel, token: Option<&str>) -> Result<Self, Error> {
        Ok(Self::from_parts(channel, Bearer::new(token)?))
    }

    pub(crate) fn from_parts(channel: Channel, bearer: Bearer) -> Self {
        let inner = pb::cairn_client::CairnClient::with_interceptor(channel.clone(), bearer)
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
            .max_encoding_message_size(MAX_RESPONSE_BYTES);
        CairnClient { inner, channel }
    }

    /// The same connection sending another token (e.g. a gateway forwarding each caller's own token).
    pub fn with_token(&self, token: Option<&str>) -> Result<Self, Error> {
        Self::from_channel(self.channel.clone(), token)
    }

    /// The generated gRPC client underneath (with the token attached), for calls the SDK does not wrap.
    pub fn raw(&self) -> Raw {
        self.inner.clone()
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
            Some(pb::recall_request::Query::Text(query.into())),
        )
    }

    /// Starts a Recall without a query: the newest memories passing the filter (`where_eq`, `since`, `until`).
    pub fn recall_newest(&self, namespace: &str) -> RecallBuilder {
        RecallBuilder::new(self.inner.clone(), namespace, None)
    }

    /// Starts a Recall by vector (made with the node's model).
    pub fn recall_vector(&self, namespace: &str, vector: Vec<f32>) -> RecallBuilder {
        RecallBuilder::new(
            self.inner.clone(),
            namespace,
            Some(pb::recall_request::Query::Vector(pb::Vector {
                values: vector,
            })),
        )
    }

    /// Fetches memories by id; unknown ids come back in `missing`.
    pub async fn get(&self, namespace: &str, ids: Vec<String>) -> Result<GetResponse, Error> {
        self.get_impl(namespace, ids, Vec::new(), false).await
    }

    /// Fetches memories by key; keys no live memory holds come back in `missing`. With `proof`, check the
    /// answer with [`verify::get_keys`].
    pub async fn get_by_keys(
        &self,
        namespace: &str,
        keys: Vec<String>,
        proof: bool,
    ) -> Result<GetResponse, Error> {
        self.get_impl(namespace, Vec::new(), keys, proof).await
    }

    async fn get_impl(
        &self,
        namespace: &str,
        ids: Vec<String>,
        keys: Vec<String>,
        proof: bool,
    ) -> Result<GetResponse, Error> {
        let req = pb::GetRequest {
            namespace: namespace.to_owned(),
            ids,
            proof,
            keys,
        };
        Ok(self.inner.clone().get(req).await?.into_inner())
    }

    /// Fetches memories by id with an inclusion proof (check it with [`verify::get`]).
    pub async fn get_with_proof(
        &self,
        namespace: &str,
        ids: Vec<String>,
    ) -> Result<GetResponse, Error> {
        self.get_impl(namespace, ids, Vec::new(), true).await
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
        self.follow_with(namespace, owner, None).await
    }

    /// [`CairnClient::follow`] for a namespace its owner created with an external model `(name, dim)` (see
    /// [`CairnClient::create_namespace`]): the replica accepts only roots committing that model.
    pub async fn follow_with(
        &self,
        namespace: &str,
        owner: &str,
        external: Option<(&str, u32)>,
    ) -> Result<(), Error> {
        self.inner
            .clone()
            .follow(pb::FollowRequest {
                namespace: namespace.to_owned(),
                owner: owner.to_owned(),
                external_model: external.map(|(name, dim)| pb::ExternalModel {
                    name: name.to_owned(),
                    dim,
                }),
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

    /// Moves a namespace to another embedding model installed on the node (`model`: its identity hash, hex):
    /// a stream of progress reports, the last carrying the result. Dropping the stream stops the migration
    /// between batches; calling again resumes it.
    pub async fn migrate(
        &self,
        namespace: &str,
        model: &str,
    ) -> Result<tonic::Streaming<pb::MigrateProgress>, Error> {
        Ok(self
            .inner
            .clone()
            .migrate(pb::MigrateRequest {
                namespace: namespace.to_owned(),
                model: model.to_owned(),
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
            metadata: opts.metadata,
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

    /// Mints a token for namespace `prefixes` with `rights` (read, write, forget, admin), valid for
    /// `ttl_secs` (none: until revoked). Needs admin on every prefix.
    pub async fn mint_token(
        &self,
        prefixes: &[&str],
        rights: &[&str],
        ttl_secs: Option<u64>,
    ) -> Result<pb::MintTokenResponse, Error> {
        let req = pb::MintTokenRequest {
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            rights: rights.iter().map(|r| r.to_string()).collect(),
            ttl_secs,
        };
        Ok(self.inner.clone().mint_token(req).await?.into_inner())
    }

    /// Revokes a token by a revocation id (hex). Needs node-wide admin.
    pub async fn revoke_token(&self, id: &str) -> Result<(), Error> {
        let req = pb::RevokeTokenRequest { id: id.to_owned() };
        self.inner.clone().revoke_token(req).await?;
        Ok(())
    }

    /// Removes a peer by node id; false if it was not one. Needs node-wide admin.
    pub async fn remove_peer(&self, node_id: &str) -> Result<bool, Error> {
        let req = pb::RemovePeerRequest {
            node_id: node_id.to_owned(),
        };
        Ok(self
            .inner
            .clone()
            .remove_peer(req)
            .await?
            .into_inner()
            .removed)
    }

    /// Stops following a replica namespace and deletes it from the node; returns how many memories went.
    pub async fn unfollow(&self, namespace: &str) -> Result<u64, Error> {
        let req = pb::UnfollowRequest {
            namespace: namespace.to_owned(),
        };
        Ok(self.inner.clone().unfollow(req).await?.into_inner().dropped)
    }

    /// Lets peer `node_id` fetch the namespaces under `prefix` over iroh (`on`), or withdraws that (`!on`).
    /// Returns whether anything changed. Needs admin on the prefix.
    pub async fn share(&self, prefix: &str, node_id: &str, on: bool) -> Result<bool, Error> {
        let req = pb::ShareRequest {
            prefix: prefix.to_owned(),
            node_id: node_id.to_owned(),
        };
        let mut c = self.inner.clone();
        let r = if on {
            c.share(req).await?
        } else {
            c.unshare(req).await?
        };
        Ok(r.into_inner().changed)
    }

    /// The node's grants as (prefix, node id).
    pub async fn shares(&self) -> Result<Vec<(String, String)>, Error> {
        Ok(self
            .inner
            .clone()
            .list_shares(pb::ListSharesRequest {})
            .await?
            .into_inner()
            .grants
            .into_iter()
            .map(|g| (g.prefix, g.node_id))
            .collect())
    }

    /// Creates `namespace` before its first memory: with `external` = (model name, dimension), a namespace whose
    /// vectors the caller brings (every [`NewMemory`] then needs [`NewMemory::vector`], and semantic recall a
    /// query vector); its roots commit that model. Idempotent for the same model.
    pub async fn create_namespace(
        &self,
        namespace: &str,
        external: Option<(&str, u32)>,
    ) -> Result<pb::CreateNamespaceResponse, Error> {
        self.send_create_namespace(pb::CreateNamespaceRequest {
            namespace: namespace.to_owned(),
            external_model: external.map(|(name, dim)| pb::ExternalModel {
                name: name.to_owned(),
                dim,
            }),
            model: String::new(),
        })
        .await
    }

    async fn send_create_namespace(
        &self,
        req: pb::CreateNamespaceRequest,
    ) -> Result<pb::CreateNamespaceResponse, Error> {
        Ok(self.inner.clone().create_namespace(req).await?.into_inner())
    }

    /// Creates `namespace` for an embedding model installed on the node (`model`: its identity hash, hex) instead
    /// of the node's own: the node embeds the namespace's texts and queries with it, and its roots commit it.
    /// Idempotent for the same model.
    pub async fn create_namespace_with_model(
        &self,
        namespace: &str,
        model: &str,
    ) -> Result<pb::CreateNamespaceResponse, Error> {
        self.send_create_namespace(pb::CreateNamespaceRequest {
            namespace: namespace.to_owned(),
            external_model: None,
            model: model.to_owned(),
        })
        .await
    }

    /// All namespaces on the node (those the token can see), with owner, latest seq and model.
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
