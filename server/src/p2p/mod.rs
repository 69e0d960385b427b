//! The node's peer-to-peer side: one iroh endpoint keyed by the node key (node id = root-signing key), serving
//! record blobs (iroh-blobs), root announcements (iroh-gossip), catch-up (`cairn/sync/1`) and the model it runs
//! (`cairn/model/1`, see [`crate::models`]) on one router.
//!
//! Local-only by default: no relay, no internet address lookups; peers are reached at the direct addresses in
//! their tickets, which are kept in redb.

pub mod ticket;
/// The replication protocol's messages (codecs in cairn-index, shared with anyone speaking it).
pub use cairn_index::sync as wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cairn_index::root::SignedRoot;
use futures::StreamExt;
use iroh::address_lookup::MemoryLookup;
use iroh::endpoint::{presets, Connection, PortmapperConfig};
use iroh::protocol::{AcceptError, ProtocolHandler, Router};
use iroh::{Endpoint, EndpointAddr, EndpointId, PublicKey, RelayMode, SecretKey, TransportAddr};
use iroh_blobs::protocol::GetManyRequest;
use iroh_blobs::Hash;
use iroh_gossip::api::{Event, GossipSender};
use iroh_gossip::{Gossip, TopicId};
use tokio::sync::Notify;

use crate::engine::replica::StepError;
use crate::engine::Engine;
use crate::error::NodeError;
use ticket::Ticket;
use wire::{Ask, GossipCosig, Reply};

/// ALPN of the catch-up protocol.
pub const SYNC_ALPN: &[u8] = b"cairn/sync/1";
/// How often a replica asks for news even without an announcement.
const POLL: Duration = Duration::from_secs(3);
/// File in the data dir holding the last p2p address (reused when --p2p-listen asks for port 0).
const ADDR_FILE: &str = "p2p.addr";
/// Records per blob request.
const FETCH_CHUNK: usize = 1024;
/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one catch-up exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(120);

/// Peer-to-peer settings.
#[derive(Debug, Clone)]
pub struct P2pConfig {
    /// Where the endpoint listens.
    pub listen: SocketAddr,
    /// Use relays and public address lookup (off by default: local-only, nothing leaves the machine's networks).
    pub public: bool,
    /// The model this node offers to peers over `cairn/model/1` (None: it offers none).
    pub shelf: Option<Arc<crate::models::Shelf>>,
}

/// Failures of the peer-to-peer side.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    /// The endpoint could not start.
    #[error("cannot start the p2p endpoint on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// Why one exchange with a peer failed (a download, a catch-up ask, a roots fetch). A catch-up step that
/// fails this way is retried with the next provider; at the engine's boundary it becomes a rejected step.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The peer's id is not an ed25519 public key.
    #[error("bad peer id")]
    BadPeerId,
    /// No connection within [`CONNECT_TIMEOUT`].
    #[error("connect timed out")]
    ConnectTimeout,
    /// The exchange did not finish within [`EXCHANGE_TIMEOUT`].
    #[error("timed out")]
    Timeout,
    /// The connection or stream failed (iroh's own error, as text: its types differ per step).
    #[error("transport: {0}")]
    Transport(String),
    /// The peer's reply does not parse.
    #[error(transparent)]
    Malformed(#[from] wire::Malformed),
    /// The peer's snapshot lists no parts, too many, or bytes that are not whole hashes.
    #[error("snapshot lists {0} bytes of part hashes")]
    SnapshotParts(usize),
    /// The peer's snapshot is larger than [`MAX_SNAPSHOT_BYTES`].
    #[error("snapshot exceeds {MAX_SNAPSHOT_BYTES} bytes")]
    SnapshotTooLarge,
    /// The download stream ended without saying done.
    #[error("snapshot download ended without a result")]
    SnapshotUnfinished,
    /// More roots are missing between the held root and a peer's chain than a replica fetches.
    #[error("{0} roots missing between this node's root and the peer's chain (at most {MAX_GAP} are fetched); follow the namespace again from scratch")]
    GapTooLong(u64),
    /// The peer has no root at a seq it should hold.
    #[error("the peer holds no root at seq {0}")]
    NoRoot(u64),
    /// The peer sent roots out of order.
    #[error("the peer sent seq {got} where seq {want} belongs")]
    OutOfOrder {
        /// The seq sent.
        got: u64,
        /// The seq expected.
        want: u64,
    },
    /// Records no provider could serve.
    #[error("record {first} and {more} more could not be fetched from any peer")]
    Unfetched {
        /// The first missing record.
        first: cairn_index::id::MemoryId,
        /// How many more.
        more: usize,
    },
    /// A blocking task (decoding) failed.
    #[error("task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl PeerError {
    fn transport(e: impl std::fmt::Display) -> Self {
        PeerError::Transport(e.to_string())
    }
}

/// The running peer-to-peer side.
pub struct P2p {
    engine: Arc<Engine>,
    endpoint: Endpoint,
    router: Router,
    gossip: Gossip,
    lookup: MemoryLookup,
    senders: Mutex<HashMap<TopicId, GossipSender>>,
    kicks: Mutex<HashMap<String, Arc<Notify>>>,
    /// Cosignatures of roots not held yet: (owner, namespace, cosignature).
    pending: Mutex<Vec<([u8; 32], String, GossipCosig)>>,
    /// Newest root announced over gossip per followed namespace: (seq, created_at ms), for the lag metrics.
    announced: Mutex<HashMap<String, (u64, u64)>>,
}

/// Serves blobs to peers the owner's grants allow, and only the blobs of namespaces they may fetch: every Get and
/// GetMany is checked against [`Engine::blobs_allowed`] for the caller's node id; Push and Observe are refused.
/// The files of the model this node offers ([`crate::models::Shelf`]) are served to any peer: they are public.
/// (The store is not taken down with the router: the engine owns it.)
#[derive(Debug, Clone)]
struct ServeBlobs {
    store: iroh_blobs::api::Store,
    engine: Arc<EngineRef>,
    /// The offered model's files are served to any peer.
    shelf: Option<Arc<crate::models::Shelf>>,
}

impl ProtocolHandler for ServeBlobs {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        use iroh_blobs::provider::events::{
            AbortReason, ConnectMode, EventMask, EventSender, ObserveMode, ProviderMessage,
            RequestMode, ThrottleMode,
        };
        let peer = *connection.remote_id().as_bytes();
        let mask = EventMask {
            connected: ConnectMode::None,
            get: RequestMode::Intercept,
            get_many: RequestMode::Intercept,
            push: RequestMode::Disabled,
            observe: ObserveMode::Intercept,
            throttle: ThrottleMode::None,
        };
        let (events, mut rx) = EventSender::channel(16, mask);
        let engine = self.engine.clone();
        let shelf = self.shelf.clone();
        let gate = tokio::spawn(async move {
            let verdict = |ok: bool| {
                if ok {
                    Ok(())
                } else {
                    Err(AbortReason::Permission)
                }
            };
            while let Some(msg) = rx.recv().await {
                match msg {
                    ProviderMessage::GetRequestReceived(m) => {
                        let r = &m.inner.request;
                        let model_file = r.ranges.is_blob()
                            && shelf
                                .as_ref()
                                .is_some_and(|s| s.serves(&[*r.hash.as_bytes()]));
                        let ok = model_file
                            || engine
                                .0
                                .blobs_allowed(peer, &[*r.hash.as_bytes()], !r.ranges.is_blob())
                                .await;
                        if !ok {
                            tracing::debug!(peer = %hex::encode(peer), "blob request refused: no grant");
                        }
                        m.tx.send(verdict(ok)).await.ok();
                    }
                    ProviderMessage::GetManyRequestReceived(m) => {
                        let hashes: Vec<[u8; 32]> = m
                            .inner
                            .request
                            .hashes
                            .iter()
                            .map(|h| *h.as_bytes())
                            .collect();
                        let ok = shelf.as_ref().is_some_and(|s| s.serves(&hashes))
                            || engine.0.blobs_allowed(peer, &hashes, false).await;
                        if !ok {
                            tracing::debug!(peer = %hex::encode(peer), "blob request refused: no grant");
                        }
                        m.tx.send(verdict(ok)).await.ok();
                    }
                    ProviderMessage::PushRequestReceived(m) => {
                        m.tx.send(verdict(false)).await.ok();
                    }
                    ProviderMessage::ObserveRequestReceived(m) => {
                        m.tx.send(verdict(false)).await.ok();
                    }
                    ProviderMessage::ClientConnected(m) => {
                        m.tx.send(Ok(())).await.ok();
                    }
                    ProviderMessage::Throttle(m) => {
                        m.tx.send(Ok(())).await.ok();
                    }
                    _ => {}
                }
            }
        });
        iroh_blobs::provider::handle_connection(connection, self.store.clone(), events).await;
        gate.abort();
        Ok(())
    }
}

/// Answers catch-up requests from the engine.
#[derive(Debug, Clone)]
struct ServeSync(Arc<EngineRef>);

struct EngineRef(Arc<Engine>);

impl std::fmt::Debug for EngineRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

impl ProtocolHandler for ServeSync {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        // Every answer below is only for peers the owner's grants allow; anyone else learns nothing (the same
        // replies as for a namespace this node does not hold).
        let peer = *connection.remote_id().as_bytes();
        let engine = &self.0 .0;
        loop {
            let (mut send, mut recv) = match connection.accept_bi().await {
                Ok(s) => s,
                Err(_) => return Ok(()),
            };
            let req = recv
                .read_to_end(4096)
                .await
                .map_err(AcceptError::from_err)?;
            if wire::is_grants_ask(&req) {
                // The set is told to the peers it names and to this node's peers (so a replica that was
                // unshared learns it and stops re-serving).
                let set = match wire::decode_grants_ask(&req) {
                    Ok((owner, ns)) => match engine.grant_set(&ns, owner).await {
                        Some(g) if g.set.allows(&peer) || engine.is_peer(&peer).await => {
                            Some(g.encode())
                        }
                        _ => None,
                    },
                    Err(_) => None,
                };
                send.write_all(&wire::encode_grants_reply(set.as_deref()))
                    .await
                    .map_err(AcceptError::from_err)?;
                send.finish()?;
                continue;
            }
            if wire::is_snapshot_ask(&req) {
                let snap = match wire::decode_snapshot_ask(&req) {
                    Ok((owner, ns)) if engine.may_serve(&peer, &ns, owner).await => {
                        engine.serve_snapshot(&ns, owner).await
                    }
                    _ => None,
                };
                send.write_all(&wire::encode_snapshot_reply(snap))
                    .await
                    .map_err(AcceptError::from_err)?;
                send.finish()?;
                continue;
            }
            if wire::is_roots_ask(&req) {
                let roots = match wire::decode_roots_ask(&req) {
                    Ok((owner, ns, from)) if engine.may_serve(&peer, &ns, owner).await => engine
                        .roots_from(&ns, owner, from)
                        .await
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                send.write_all(&wire::encode_roots_reply(&roots))
                    .await
                    .map_err(AcceptError::from_err)?;
                send.finish()?;
                continue;
            }
            let reply = match Ask::decode(&req) {
                Ok(ask) if engine.may_serve(&peer, &ask.ns, ask.owner).await => {
                    match engine.catch_up(&ask.ns, ask.owner, ask.have).await {
                        Ok(Some(c)) => Reply::Answer(Box::new(c)),
                        Ok(None) => Reply::UpToDate,
                        Err(_) => Reply::Unknown,
                    }
                }
                _ => Reply::Unknown,
            };
            // Written piece by piece: a whole graph's encoding (39 MB at 100k memories) is never held at once. The
            // pieces are encoded on a blocking thread, a few ahead of the connection, not on an async worker.
            let (tx, mut rx) = tokio::sync::mpsc::channel(4);
            let encoder = tokio::task::spawn_blocking(move || {
                for piece in wire::ReplyChunks::new(&reply, wire::NODES_PER_CHUNK) {
                    if tx.blocking_send(piece).is_err() {
                        break;
                    }
                }
            });
            while let Some(piece) = rx.recv().await {
                send.write_all(&piece)
                    .await
                    .map_err(AcceptError::from_err)?;
            }
            encoder.await.map_err(AcceptError::from_err)?;
            send.finish()?;
        }
    }
}

/// Most bytes read from a catch-up answer's stream at a time.
const ANSWER_PIECE: usize = 256 << 10;

/// Most roots a replica fetches to link a catch-up chain to the root it holds (about 64 MB of roots).
const MAX_GAP: u64 = 1 << 18;
/// Most bytes of one roots reply ([`crate::engine::replica::MAX_CHAIN`] roots of at most about 4 KiB each).
const ROOTS_REPLY_MAX: usize = 16 << 20;

/// Most bytes a snapshot download may bring in (an untrusted peer could otherwise stream without end).
const MAX_SNAPSHOT_BYTES: u64 = 16 << 30;

/// Downloads a snapshot from one peer: first the HashSeq alone (its size bounds the part count), then every part,
/// stopping once more than [`MAX_SNAPSHOT_BYTES`] arrived. Every byte is BLAKE3-verified as it streams.
async fn fetch_snapshot(
    store: &iroh_blobs::store::fs::FsStore,
    conn: &Connection,
    hash: [u8; 32],
) -> Result<(), PeerError> {
    let h = Hash::from_bytes(hash);
    store
        .remote()
        .fetch(conn.clone(), iroh_blobs::HashAndFormat::raw(h))
        .complete()
        .await
        .map_err(PeerError::transport)?;
    let seq = store.get_bytes(h).await.map_err(PeerError::transport)?;
    let parts = seq.len() / 32;
    if seq.len() % 32 != 0 || parts == 0 || parts > crate::engine::snapshot::MAX_PARTS {
        return Err(PeerError::SnapshotParts(seq.len()));
    }
    let mut progress = std::pin::pin!(store
        .remote()
        .fetch(conn.clone(), iroh_blobs::HashAndFormat::hash_seq(h))
        .stream());
    while let Some(item) = progress.next().await {
        match item {
            iroh_blobs::api::remote::GetProgressItem::Progress(n) if n > MAX_SNAPSHOT_BYTES => {
                return Err(PeerError::SnapshotTooLarge);
            }
            iroh_blobs::api::remote::GetProgressItem::Progress(_) => {}
            iroh_blobs::api::remote::GetProgressItem::Done(_) => return Ok(()),
            iroh_blobs::api::remote::GetProgressItem::Error(e) => {
                return Err(PeerError::transport(e))
            }
        }
    }
    Err(PeerError::SnapshotUnfinished)
}

/// The gossip topic of (owner, namespace): where the owner announces roots.
pub fn topic(owner: &[u8; 32], ns: &str) -> TopicId {
    let mut h = blake3::Hasher::new();
    h.update(b"cairn-roots-v1");
    h.update(owner);
    h.update(ns.as_bytes());
    TopicId::from_bytes(*h.finalize().as_bytes())
}

fn endpoint_id(b: &[u8; 32]) -> Option<EndpointId> {
    PublicKey::from_bytes(b).ok()
}

impl P2p {
    /// Binds the endpoint, starts the router, loads known peers, and starts announcing and following.
    pub async fn start(engine: Arc<Engine>, cfg: P2pConfig) -> Result<Arc<Self>, P2pError> {
        // With port 0, reuse the port this data dir had before, so that peers' tickets stay valid across restarts.
        let addr_file = engine.data_dir().join(ADDR_FILE);
        if cfg.listen.port() == 0 {
            if let Some(prev) = std::fs::read_to_string(&addr_file)
                .ok()
                .and_then(|s| s.trim().parse::<SocketAddr>().ok())
                .filter(|a| a.ip() == cfg.listen.ip())
            {
                let mut again = cfg.clone();
                again.listen = prev;
                match Self::start_on(engine.clone(), again, &addr_file).await {
                    Ok(p) => return Ok(p),
                    Err(e) => {
                        tracing::warn!(error = %e, "previous p2p port unavailable; taking a new one")
                    }
                }
            }
        }
        Self::start_on(engine, cfg, &addr_file).await
    }

    async fn start_on(
        engine: Arc<Engine>,
        cfg: P2pConfig,
        addr_file: &std::path::Path,
    ) -> Result<Arc<Self>, P2pError> {
        let bind_err = |reason: String| P2pError::Bind {
            addr: cfg.listen,
            reason,
        };
        let lookup = MemoryLookup::new();
        let builder = if cfg.public {
            // Real deployments across networks: default relays and public address lookup (needs the internet).
            tracing::warn!("p2p: relays and public address lookup enabled (--p2p-public)");
            Endpoint::builder(presets::N0)
        } else {
            Endpoint::builder(presets::Minimal)
                .relay_mode(RelayMode::Disabled)
                .portmapper_config(PortmapperConfig::Disabled)
        };
        let endpoint = builder
            .secret_key(SecretKey::from_bytes(&engine.signing_key().to_bytes()))
            .clear_ip_transports()
            .bind_addr(cfg.listen)
            .map_err(|e| bind_err(e.to_string()))?
            .address_lookup(lookup.clone())
            .bind()
            .await
            .map_err(|e| bind_err(e.to_string()))?;
        let gossip = Gossip::builder().spawn(endpoint.clone());
        let store = engine.blob_store();
        let mut router = Router::builder(endpoint.clone())
            .accept(
                iroh_blobs::ALPN,
                ServeBlobs {
                    store: store.clone().into(),
                    engine: Arc::new(EngineRef(engine.clone())),
                    shelf: cfg.shelf.clone(),
                },
            )
            .accept(iroh_gossip::ALPN, gossip.clone())
            .accept(SYNC_ALPN, ServeSync(Arc::new(EngineRef(engine.clone()))));
        if let Some(shelf) = &cfg.shelf {
            router = router.accept(
                crate::models::MODEL_ALPN,
                crate::models::ServeModels(shelf.clone()),
            );
        }
        let router = router.spawn();
        let p2p = Arc::new(P2p {
            engine: engine.clone(),
            endpoint,
            router,
            gossip,
            lookup,
            senders: Mutex::new(HashMap::new()),
            kicks: Mutex::new(HashMap::new()),
            pending: Mutex::new(Vec::new()),
            announced: Mutex::new(HashMap::new()),
        });
        for (id, addrs) in engine.peers().await.unwrap_or_default() {
            if let Ok(t) = Ticket::parse(&format!("{}@{addrs}", hex::encode(id))) {
                p2p.learn(&t);
            }
        }
        tracing::info!(addr = %p2p.ticket(), "p2p endpoint listening");
        if let Some(a) = p2p.endpoint.bound_sockets().first() {
            if let Err(e) = std::fs::write(addr_file, a.to_string()) {
                tracing::warn!(error = %e, "cannot record the p2p address");
            }
        }
        // Announce this node's roots, and follow what it follows.
        let me = p2p.clone();
        tokio::spawn(async move { me.announce_roots().await });
        for (ns, owner) in engine.follows() {
            p2p.spawn_follower(ns, owner);
        }
        for ns in engine.owned() {
            let me = p2p.clone();
            tokio::spawn(async move {
                let _ = me.sender(&me.engine.node_key(), &ns).await;
            });
        }
        Ok(p2p)
    }

    /// This node's ticket: its id and direct addresses.
    pub fn ticket(&self) -> Ticket {
        Ticket {
            id: *self.endpoint.id().as_bytes(),
            addrs: self.endpoint.bound_sockets(),
        }
    }

    fn learn(&self, t: &Ticket) {
        if let Some(id) = endpoint_id(&t.id) {
            self.lookup.add_endpoint_info(EndpointAddr::from_parts(
                id,
                t.addrs.iter().copied().map(TransportAddr::Ip),
            ));
        }
    }

    /// Adds a peer from its ticket: kept in redb, known to the endpoint, and joined to every topic.
    pub async fn add_peer(&self, t: &Ticket) -> Result<(), NodeError> {
        if t.id == self.engine.node_key() {
            return Err(NodeError::invalid(
                "ticket",
                "that is this node's own ticket",
            ));
        }
        endpoint_id(&t.id).ok_or_else(|| NodeError::invalid("ticket", "not a valid node id"))?;
        self.engine.put_peer(t.id, &t.addrs_string()).await?;
        self.learn(t);
        let senders: Vec<GossipSender> = self
            .senders
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        if let Some(id) = endpoint_id(&t.id) {
            for s in senders {
                let _ = s.join_peers(vec![id]).await;
            }
        }
        // New peers may hold what replicas lack.
        if let Ok(k) = self.kicks.lock() {
            k.values().for_each(|n| n.notify_one());
        }
        Ok(())
    }

    /// Starts following (after [`Engine::follow`] registered the namespace).
    pub fn spawn_follower(self: &Arc<Self>, ns: String, owner: [u8; 32]) {
        let kick = Arc::new(Notify::new());
        if let Ok(mut k) = self.kicks.lock() {
            if k.contains_key(&ns) {
                return;
            }
            k.insert(ns.clone(), kick.clone());
        }
        let me = self.clone();
        tokio::spawn(async move { me.follow_loop(ns, owner, kick).await });
    }

    /// Newest root announced per namespace: (namespace, seq, created_at ms).
    pub fn announced(&self) -> Vec<(String, u64, u64)> {
        self.announced
            .lock()
            .map(|a| a.iter().map(|(n, (s, c))| (n.clone(), *s, *c)).collect())
            .unwrap_or_default()
    }

    /// Stops the follower of `ns` (its loop ends at its next turn).
    pub fn stop_follower(&self, ns: &str) {
        if let Ok(mut k) = self.kicks.lock() {
            if let Some(n) = k.remove(ns) {
                n.notify_one();
            }
        }
    }

    /// Ids of every known peer.
    async fn peer_ids(&self) -> Vec<[u8; 32]> {
        self.engine
            .peers()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.0)
            .collect()
    }

    /// The gossip sender of a topic, subscribing (with every known peer as bootstrap) on first use. Messages
    /// received on it are handled by [`P2p::on_message`].
    async fn sender(self: &Arc<Self>, owner: &[u8; 32], ns: &str) -> Option<GossipSender> {
        let t = topic(owner, ns);
        if let Some(s) = self.senders.lock().ok()?.get(&t) {
            return Some(s.clone());
        }
        let boot: Vec<EndpointId> = self
            .peer_ids()
            .await
            .iter()
            .filter_map(endpoint_id)
            .collect();
        let sub = match self.gossip.subscribe(t, boot).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, namespace = %ns, "gossip subscribe failed");
                return None;
            }
        };
        let (sender, mut receiver) = sub.split();
        self.senders.lock().ok()?.insert(t, sender.clone());
        let me = self.clone();
        let (owner, ns) = (*owner, ns.to_owned());
        tokio::spawn(async move {
            while let Some(ev) = receiver.next().await {
                match ev {
                    Ok(Event::Received(m)) => {
                        tokio::spawn(me.clone().on_message(owner, ns.clone(), m.content));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "gossip receiver ended");
                        break;
                    }
                }
            }
            if let Ok(mut s) = me.senders.lock() {
                s.remove(&topic(&owner, &ns));
            }
        });
        Some(sender)
    }

    async fn on_message(self: Arc<Self>, owner: [u8; 32], ns: String, content: Bytes) {
        match wire::decode_gossip(&content) {
            Some(wire::Gossip::Root(root)) => self.on_root(owner, ns, *root).await,
            Some(wire::Gossip::Cosig(c)) => self.on_cosig(owner, ns, c).await,
            None => {}
        }
    }

    /// A witness cosignature gossiped for (owner, ns): kept with its root, or held until that root arrives.
    async fn on_cosig(&self, owner: [u8; 32], ns: String, c: GossipCosig) {
        if self
            .engine
            .add_cosig(owner, &ns, c.seq, c.witness, c.sig)
            .await
        {
            return;
        }
        if let Ok(mut p) = self.pending.lock() {
            if p.len() < 10_000 {
                p.push((owner, ns, c));
            }
        }
    }

    /// A root announced on the topic of (owner, ns): a fork of a held root raises the alarm, a newer one
    /// starts a catch-up.
    async fn on_root(self: &Arc<Self>, owner: [u8; 32], ns: String, root: SignedRoot) {
        if root.verify(Some(&owner)).is_err() || root.record.namespace != ns {
            return;
        }
        if let Ok(mut a) = self.announced.lock() {
            let e = a.entry(ns.clone()).or_insert((0, 0));
            if root.record.seq > e.0 {
                *e = (root.record.seq, root.record.created_at);
            }
        }
        // A root for a seq this node holds must be the root it holds.
        if let Ok(ours) = self.engine.root(&ns, Some(root.record.seq)).await {
            if ours.record.hash() != root.record.hash() && ours.record.node_id == owner {
                self.equivocation(&ns, &owner, &ours, &root).await;
                return;
            }
        }
        self.kick(&ns);
    }

    fn kick(&self, ns: &str) {
        if let Ok(k) = self.kicks.lock() {
            if let Some(n) = k.get(ns) {
                n.notify_one();
            }
        }
    }

    async fn equivocation(
        &self,
        ns: &str,
        owner: &[u8; 32],
        ours: &SignedRoot,
        theirs: &SignedRoot,
    ) {
        if self
            .engine
            .record_equivocation(ns, owner, ours, theirs)
            .await
        {
            tracing::error!(namespace = %ns, owner = %hex::encode(owner), seq = ours.record.seq, "owner signed two different roots for one seq; evidence kept, following halted");
        }
        // The follower sees the halt and stops.
        self.kick(ns);
    }

    /// Retries cosignatures that arrived before the root they sign.
    async fn retry_pending(&self) {
        let pending = match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return,
        };
        let mut keep = Vec::new();
        for (owner, ns, c) in pending {
            let held = self.engine.owner_root_seq(&ns).unwrap_or(0);
            if !self
                .engine
                .add_cosig(owner, &ns, c.seq, c.witness, c.sig)
                .await
                && c.seq > held
            {
                keep.push((owner, ns, c));
            }
        }
        if let Ok(mut p) = self.pending.lock() {
            p.extend(keep);
        }
    }

    /// Gossips this node's cosignature of a root it verified.
    async fn announce_cosig(self: &Arc<Self>, root: &SignedRoot) {
        let c = GossipCosig {
            seq: root.record.seq,
            witness: self.engine.node_key(),
            sig: cairn_index::root::cosign(&root.record, self.engine.signing_key()),
        };
        if let Some(s) = self
            .sender(&root.record.node_id, &root.record.namespace)
            .await
        {
            if let Err(e) = s.broadcast(Bytes::from(c.encode())).await {
                tracing::debug!(error = %e, "cosignature announcement failed");
            }
        }
    }

    /// Broadcasts every root this node signs on its namespace's topic.
    async fn announce_roots(self: Arc<Self>) {
        let mut roots = self.engine.watch_roots();
        let me = self.engine.node_key();
        loop {
            let root = match roots.recv().await {
                Ok(r) => r,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            if root.record.node_id != me {
                continue;
            }
            let ns = root.record.namespace.clone();
            if let Some(s) = self.sender(&me, &ns).await {
                let msg = wire::encode_root_announcement(&root);
                if let Err(e) = s.broadcast(Bytes::from(msg)).await {
                    tracing::debug!(error = %e, "root announcement failed");
                }
            }
        }
    }

    async fn follow_loop(self: Arc<Self>, ns: String, owner: [u8; 32], kick: Arc<Notify>) {
        let _ = self.sender(&owner, &ns).await;
        loop {
            if self.engine.halted(&ns, &owner).is_some() {
                tracing::warn!(namespace = %ns, owner = %hex::encode(owner), "not following: the owner was caught equivocating (see `cairn alerts`)");
                if let Ok(mut k) = self.kicks.lock() {
                    k.remove(&ns);
                }
                return;
            }
            self.refresh_grants(&ns, &owner).await;
            match self.catch_up_once(&ns, &owner).await {
                Ok(()) => {}
                Err(StepError::Equivocation { ours, theirs, .. }) => {
                    self.equivocation(&ns, &owner, &ours, &theirs).await;
                }
                Err(e) => tracing::debug!(namespace = %ns, error = %e, "catch-up incomplete"),
            }
            let _ = tokio::time::timeout(POLL, kick.notified()).await;
            if self.router.is_shutdown() {
                return;
            }
            let wanted = self
                .kicks
                .lock()
                .map(|k| k.get(&ns).is_some_and(|n| Arc::ptr_eq(n, &kick)))
                .unwrap_or(false);
            if !wanted {
                return;
            }
        }
    }

    /// Fetches the newest owner-signed grant set for a replica namespace from its providers (the owner first) and
    /// keeps it if newer: it says to whom this replica may re-serve the namespace.
    async fn refresh_grants(&self, ns: &str, owner: &[u8; 32]) {
        let req = wire::encode_grants_ask(owner, ns);
        for p in self.providers(owner).await {
            let Ok(bytes) = self.exchange(&p, &req, wire::GRANTS_REPLY_MAX).await else {
                continue;
            };
            if let Ok(Some(set)) = wire::decode_grants_reply(&bytes) {
                if let Err(e) = self.engine.install_grants(ns, *owner, &set).await {
                    tracing::warn!(peer = %hex::encode(p), namespace = %ns, error = %e, "grant set refused");
                }
            }
            // The owner's answer is the newest there is.
            if p == *owner {
                return;
            }
        }
    }

    /// Providers to try for (owner, ns): the owner first, then every other peer.
    async fn providers(&self, owner: &[u8; 32]) -> Vec<[u8; 32]> {
        let mut out = vec![*owner];
        for p in self.peer_ids().await {
            if p != *owner {
                out.push(p);
            }
        }
        out
    }

    /// Catches a replica up as far as any provider can take it; one verified step at a time.
    async fn catch_up_once(self: &Arc<Self>, ns: &str, owner: &[u8; 32]) -> Result<(), StepError> {
        let providers = self.providers(owner).await;
        let mut last_err = None;
        let (mut records_failed, mut snapshot_tried) = (false, false);
        'steps: for _ in 0..10_000 {
            let have = self.engine.owner_root_seq(ns).map_err(StepError::Node)?;
            // A fresh replica (or one whose records no peer serves one by one) takes a whole snapshot: a few
            // large blobs instead of one request per record.
            if (have == 0 || records_failed) && !snapshot_tried {
                snapshot_tried = true;
                for p in &providers {
                    match self.snapshot_step(p, owner, ns, have).await {
                        Ok(true) => continue 'steps,
                        Ok(false) => {}
                        Err(e @ StepError::Equivocation { .. }) => return Err(e),
                        Err(e) => {
                            tracing::warn!(peer = %hex::encode(p), namespace = %ns, error = %e, "snapshot not installed");
                            last_err = Some(e);
                        }
                    }
                }
            }
            for p in &providers {
                let t0 = std::time::Instant::now();
                let (reply, answer_bytes) = match self.ask(p, owner, ns, have).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(peer = %hex::encode(p), error = %e, "catch-up ask failed");
                        continue;
                    }
                };
                let mut c = match reply {
                    Reply::Answer(c) => *c,
                    Reply::UpToDate | Reply::Unknown => continue,
                };
                // A chain that starts above the root held here is linked to it with the roots in between.
                if let Some(first) = c.chain.first().map(|r| r.record.seq) {
                    if have > 0 && first > have + 1 {
                        match self.roots_between(p, owner, ns, have + 1, first - 1).await {
                            Ok(mut gap) => {
                                gap.append(&mut c.chain);
                                c.chain = gap;
                            }
                            Err(e) => {
                                tracing::warn!(peer = %hex::encode(p), namespace = %ns, error = %e, "cannot link the catch-up chain");
                                last_err = Some(StepError::Rejected(e.to_string()));
                                continue;
                            }
                        }
                    }
                }
                let (their_seq, their_cosigs) = (c.out.root.record.seq, c.cosigs.clone());
                let nodes = c.out.nodes.len();
                let t_ask = t0.elapsed();
                let step = match self.engine.verify_step(ns, c).await {
                    Ok(Some(s)) => s,
                    Ok(None) => {
                        // Nothing newer here; keep the cosignatures this peer holds for the root both have.
                        for (w, sig) in their_cosigs {
                            self.engine.add_cosig(*owner, ns, their_seq, w, sig).await;
                        }
                        continue;
                    }
                    Err(e @ StepError::Equivocation { .. }) => return Err(e),
                    Err(e) => {
                        tracing::warn!(peer = %hex::encode(p), namespace = %ns, error = %e, "catch-up answer rejected");
                        last_err = Some(e);
                        continue;
                    }
                };
                let t_verify = t0.elapsed();
                let records = step.needed.len();
                let mut order = vec![*p];
                order.extend(providers.iter().filter(|x| *x != p));
                if let Err(e) = self.fetch(&step.needed, &order).await {
                    tracing::warn!(namespace = %ns, error = %e, "records unavailable");
                    last_err = Some(StepError::Rejected(e.to_string()));
                    if !snapshot_tried {
                        records_failed = true;
                        continue 'steps;
                    }
                    continue;
                }
                let t_fetch = t0.elapsed();
                match self.engine.install_step(step).await {
                    Ok(root) => {
                        let ms = |d: Duration| d.as_secs_f64() * 1e3;
                        tracing::info!(
                            namespace = %ns,
                            seq = root.record.seq,
                            nodes,
                            answer_bytes,
                            records,
                            ask_ms = ms(t_ask),
                            verify_ms = ms(t_verify - t_ask),
                            fetch_ms = ms(t_fetch - t_verify),
                            install_ms = ms(t0.elapsed() - t_fetch),
                            "replica step installed"
                        );
                        self.announce_cosig(&root).await;
                        self.retry_pending().await;
                        continue 'steps;
                    }
                    Err(e) => {
                        tracing::warn!(namespace = %ns, error = %e, "replica step not installed");
                        last_err = Some(e);
                        continue;
                    }
                }
            }
            // No provider had anything newer (or none could be reached).
            return match last_err {
                Some(e) => Err(e),
                None => Ok(()),
            };
        }
        Ok(())
    }

    /// Fetches and installs the snapshot `peer` offers for (owner, ns), if newer than `have`. Ok(false) when
    /// the peer has none or nothing newer.
    async fn snapshot_step(
        self: &Arc<Self>,
        peer: &[u8; 32],
        owner: &[u8; 32],
        ns: &str,
        have: u64,
    ) -> Result<bool, StepError> {
        let t0 = std::time::Instant::now();
        let snap = match self.ask_snapshot(peer, owner, ns).await {
            Ok(Some(s)) if s.seq > have => s,
            Ok(_) => return Ok(false),
            Err(e) => {
                tracing::debug!(peer = %hex::encode(peer), error = %e, "snapshot ask failed");
                return Ok(false);
            }
        };
        let Some(id) = endpoint_id(peer) else {
            return Ok(false);
        };
        // Nothing downloaded may be collected before it is checked and pinned.
        let held = self.engine.hold_downloads().await;
        let store = self.engine.blob_store();
        let got = async {
            let conn =
                tokio::time::timeout(CONNECT_TIMEOUT, self.endpoint.connect(id, iroh_blobs::ALPN))
                    .await
                    .map_err(|_| PeerError::ConnectTimeout)?
                    .map_err(PeerError::transport)?;
            let r = fetch_snapshot(&store, &conn, snap.hash).await;
            conn.close(0u32.into(), b"done");
            r
        };
        match tokio::time::timeout(EXCHANGE_TIMEOUT, got).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(StepError::Rejected(format!("snapshot download: {e}"))),
            Err(_) => return Err(StepError::Rejected("snapshot download timed out".into())),
        }
        let t_fetch = t0.elapsed();
        // The snapshot's chain may hold only the last roots; link it to the root held here.
        let link = if have > 0 {
            self.roots_between(peer, owner, ns, have + 1, snap.seq)
                .await
                .map_err(|e| StepError::Rejected(e.to_string()))?
        } else {
            Vec::new()
        };
        match self
            .engine
            .install_snapshot(ns, snap.hash, held, link)
            .await?
        {
            Some(root) => {
                tracing::info!(
                    namespace = %ns,
                    seq = root.record.seq,
                    snapshot = %hex::encode(snap.hash),
                    fetch_ms = t_fetch.as_secs_f64() * 1e3,
                    install_ms = (t0.elapsed() - t_fetch).as_secs_f64() * 1e3,
                    "replica snapshot installed"
                );
                self.announce_cosig(&root).await;
                self.retry_pending().await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Asks every known peer, for each namespace this node owns, for the roots it holds from this node's latest
    /// seq on ([`Engine::peer_holds_root`] refuses writes where one is newer). Bounded by `limit` overall; a peer
    /// that does not answer in time is logged and skipped (the check is only as strong as the peers reached).
    pub async fn compare_with_peers(self: &Arc<Self>, limit: Duration) {
        use futures::StreamExt;
        let owned = self.engine.owned();
        let peers = self.peer_ids().await;
        if owned.is_empty() || peers.is_empty() {
            return;
        }
        let me = self.engine.node_key();
        let mut asks = Vec::new();
        for ns in &owned {
            let have = self.engine.root(ns, None).await.map_or(0, |r| r.record.seq);
            for peer in &peers {
                asks.push((ns.clone(), *peer, have));
            }
        }
        let total = asks.len();
        let run = futures::stream::iter(asks)
            .map(|(ns, peer, have)| async move {
                let req = wire::encode_roots_ask(&me, &ns, have.max(1));
                match self.exchange(&peer, &req, ROOTS_REPLY_MAX).await {
                    Ok(bytes) => match wire::decode_roots_reply(&bytes) {
                        Ok(roots) => {
                            for r in &roots {
                                if self.engine.peer_holds_root(&ns, &peer, r) {
                                    break;
                                }
                            }
                            true
                        }
                        Err(e) => {
                            tracing::warn!(namespace = %ns, peer = %hex::encode(peer), error = %e, "peer root check: bad reply");
                            false
                        }
                    },
                    Err(e) => {
                        tracing::warn!(namespace = %ns, peer = %hex::encode(peer), error = %e, "peer root check: no answer");
                        false
                    }
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<bool>>();
        match tokio::time::timeout(limit, run).await {
            Ok(done) => {
                let answered = done.iter().filter(|x| **x).count();
                tracing::info!(
                    answered,
                    asked = total,
                    "compared owned namespaces' roots with peers"
                );
            }
            Err(_) => tracing::warn!(
                asked = total,
                secs = limit.as_secs(),
                "peer root check did not finish in time (--peer-check-secs); serving anyway"
            ),
        }
    }

    /// The owner's roots of `ns` for seqs `from..=to` from `peer`, in order (consecutive; signatures and links are
    /// checked with the catch-up chain they go in front of). At most [`MAX_GAP`] roots.
    async fn roots_between(
        &self,
        peer: &[u8; 32],
        owner: &[u8; 32],
        ns: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<SignedRoot>, PeerError> {
        let want = to.saturating_sub(from).saturating_add(1);
        if to < from || want > MAX_GAP {
            return Err(PeerError::GapTooLong(want));
        }
        let mut out = Vec::with_capacity(want as usize);
        let mut next = from;
        // Each round brings at least one root or ends the loop.
        while next <= to {
            let bytes = self
                .exchange(
                    peer,
                    &wire::encode_roots_ask(owner, ns, next),
                    ROOTS_REPLY_MAX,
                )
                .await?;
            let roots = wire::decode_roots_reply(&bytes)?;
            if roots.is_empty() {
                return Err(PeerError::NoRoot(next));
            }
            for r in roots {
                if next > to {
                    break;
                }
                if r.record.seq != next {
                    return Err(PeerError::OutOfOrder {
                        got: r.record.seq,
                        want: next,
                    });
                }
                out.push(r);
                next += 1;
            }
        }
        Ok(out)
    }

    async fn ask_snapshot(
        &self,
        peer: &[u8; 32],
        owner: &[u8; 32],
        ns: &str,
    ) -> Result<Option<crate::engine::snapshot::SnapshotRef>, PeerError> {
        let bytes = self
            .exchange(peer, &wire::encode_snapshot_ask(owner, ns), 64)
            .await?;
        Ok(wire::decode_snapshot_reply(&bytes)?)
    }

    /// One request and its reply (at most `max` bytes) on a fresh `cairn/sync/1` connection, within the exchange
    /// timeout.
    async fn exchange(
        &self,
        peer: &[u8; 32],
        req: &[u8],
        max: usize,
    ) -> Result<Vec<u8>, PeerError> {
        let exchange = async {
            let (conn, mut recv) = self.request(peer, req).await?;
            let bytes = recv.read_to_end(max).await.map_err(PeerError::transport)?;
            conn.close(0u32.into(), b"done");
            Ok::<_, PeerError>(bytes)
        };
        tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
            .await
            .map_err(|_| PeerError::Timeout)?
    }

    /// Sends one request on a fresh `cairn/sync/1` connection; the reply is read from the returned stream.
    async fn request(
        &self,
        peer: &[u8; 32],
        req: &[u8],
    ) -> Result<(Connection, iroh::endpoint::RecvStream), PeerError> {
        let id = endpoint_id(peer).ok_or(PeerError::BadPeerId)?;
        // A peer that is gone must not hold a catch-up for the whole exchange timeout.
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, self.endpoint.connect(id, SYNC_ALPN))
            .await
            .map_err(|_| PeerError::ConnectTimeout)?
            .map_err(PeerError::transport)?;
        let (mut send, recv) = conn.open_bi().await.map_err(PeerError::transport)?;
        send.write_all(req).await.map_err(PeerError::transport)?;
        send.finish().map_err(PeerError::transport)?;
        Ok((conn, recv))
    }

    async fn ask(
        &self,
        peer: &[u8; 32],
        owner: &[u8; 32],
        ns: &str,
        have: u64,
    ) -> Result<(Reply, usize), PeerError> {
        let req = Ask {
            owner: *owner,
            ns: ns.to_owned(),
            have,
        }
        .encode();
        // Decoded piece by piece as it arrives: the encoded answer is never held whole beside the decoded graph.
        let exchange = async {
            let (conn, mut recv) = self.request(peer, &req).await?;
            let mut d = wire::ReplyReader::new(wire::MAX_ANSWER);
            while let Some(piece) = recv
                .read_chunk(ANSWER_PIECE)
                .await
                .map_err(PeerError::transport)?
            {
                d.feed(&piece)?;
            }
            conn.close(0u32.into(), b"done");
            let n = d.bytes_fed();
            Ok::<_, PeerError>((d.finish()?, n))
        };
        tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
            .await
            .map_err(|_| PeerError::Timeout)?
    }

    /// Downloads record blobs with iroh-blobs, one GetMany request per provider in order: each blob is
    /// verified against its BLAKE3 hash as it streams, so a provider that serves bad bytes fails the request
    /// there, and whatever is still missing is asked of the next provider.
    async fn fetch(
        &self,
        ids: &[cairn_index::id::MemoryId],
        order: &[[u8; 32]],
    ) -> Result<(), PeerError> {
        let mut missing: Vec<cairn_index::id::MemoryId> = ids.to_vec();
        let store = self.engine.blob_store();
        for p in order {
            if missing.is_empty() {
                break;
            }
            let Some(id) = endpoint_id(p) else { continue };
            let conn = match tokio::time::timeout(
                CONNECT_TIMEOUT,
                self.endpoint.connect(id, iroh_blobs::ALPN),
            )
            .await
            {
                Ok(Ok(c)) => c,
                _ => continue,
            };
            // Requests of bounded size, a few in flight on the one connection.
            let requests: Vec<GetManyRequest> = missing
                .chunks(FETCH_CHUNK)
                .map(|chunk| chunk.iter().map(|m| Hash::from_bytes(m.0)).collect())
                .collect();
            let results: Vec<Result<(), PeerError>> = futures::stream::iter(requests)
                .map(|req| {
                    let (store, conn) = (store.clone(), conn.clone());
                    async move {
                        match tokio::time::timeout(
                            EXCHANGE_TIMEOUT,
                            store.remote().execute_get_many(conn, req),
                        )
                        .await
                        {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err(e)) => Err(PeerError::transport(e)),
                            Err(_) => Err(PeerError::Timeout),
                        }
                    }
                })
                .buffer_unordered(4)
                .collect()
                .await;
            if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                tracing::warn!(peer = %id, error = %e, "provider failed; trying the next");
            }
            conn.close(0u32.into(), b"done");
            missing = futures::stream::iter(missing)
                .map(|m| async move { (!self.engine.has_record(&m).await).then_some(m) })
                .buffered(64)
                .filter_map(|x| async move { x })
                .collect()
                .await;
        }
        match missing.first() {
            None => Ok(()),
            Some(m) => Err(PeerError::Unfetched {
                first: *m,
                more: missing.len() - 1,
            }),
        }
    }

    /// Stops the router (and the endpoint).
    pub async fn shutdown(&self) {
        let _ = self.router.shutdown().await;
    }
}
