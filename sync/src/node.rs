//! The node: a store, an iroh endpoint and the catch-up protocol.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iroh::address_lookup::memory::MemoryLookup;
use iroh::endpoint::{Connection, PortmapperConfig, presets};
use iroh::protocol::Router;
use iroh::{Endpoint, EndpointAddr, RelayMode, RelayUrl, SecretKey};
use kith_caps::{CapId, ReadCap, Revocation, Tombstone, TombstoneId};
use kith_store::{
    BlobHash, BlobReader, Durability, Options as StoreOptions, RecordKind, RecordOp, Store,
};
use kith_types::{DeviceId, NamespaceId, Path, Timestamp};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use crate::cache::BlobCache;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::live::{Live, LiveConfig, LiveMetrics};
use crate::net;
use crate::net::fetch::Downloads;
use crate::net::gate::Gate;
use crate::net::limits::{PeerBudgets, PeerLimits};
use crate::net::serve::SyncProtocol;
use crate::proto::wire::ALPN;
use crate::state::{DeletionStatus, Shared, Work};
use crate::ticket::{DeviceInvite, Ticket};

/// How long one whole sync with a device may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(300);
/// Periodic catch-ups a subscription skips in a row while live push keeps
/// it up to date; the next one runs anyway, as a safety net.
const RESYNC_SKIPS_MAX: u32 = 9;
/// First and largest wait between retries of a subscription.
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// First wait before poking a device again.
const POKE_RETRY_MIN: Duration = Duration::from_secs(1);
/// Retries of a failed recovery catch-up (after 1 s, 2 s, … 32 s); the
/// periodic re-sync covers the rest.
const RECOVERY_RETRIES: u32 = 6;
/// Quiet time awaited after a change of what is owed before poking (and
/// the most it waits while changes keep coming).
const POKE_SETTLE: Duration = Duration::from_millis(50);
const POKE_SETTLE_MAX: Duration = Duration::from_secs(1);
/// How often what is owed to other devices is checked when nothing wakes
/// the check earlier.
const POKE_TICK: Duration = Duration::from_secs(1);

/// How long [`Node::shutdown`] gives aborted tasks (and then live push)
/// to end.
pub const SHUTDOWN_TASKS: Duration = Duration::from_secs(2);
/// How long [`Node::shutdown`] gives gossip and the endpoint to close
/// gracefully (iroh waits up to about 3 s for peers to acknowledge).
pub const SHUTDOWN_NETWORK: Duration = Duration::from_secs(6);
/// The most [`Node::shutdown`] takes before its final flush to disk: the
/// tasks, then live push, then the endpoint.
pub const SHUTDOWN_BOUND: Duration = SHUTDOWN_TASKS
    .saturating_mul(2)
    .saturating_add(SHUTDOWN_NETWORK);

/// Where a node's endpoint looks for peers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// Real use: iroh's relays and address lookup, so friends connect across
    /// NATs by key. With `relays`, only those (self-hosted iroh-relay) URLs
    /// are used instead of the default relays.
    #[default]
    Internet,
    /// Like `Internet`, with these relay servers instead of the defaults.
    InternetWithRelays(Vec<RelayUrl>),
    /// Loopback only: no relays, no outside lookups, bound to 127.0.0.1.
    /// What tests, examples and benches use; peers are reached by the
    /// addresses in their tickets.
    LocalOnly,
}

/// Configures and starts a [`Node`].
#[derive(Debug, Clone)]
pub struct Builder {
    data_dir: PathBuf,
    network: NetworkMode,
    bind: Option<SocketAddr>,
    durability: Durability,
    eager_blob_size: u64,
    resync_interval: Duration,
    connection_idle: Duration,
    connect_timeout: Duration,
    peer_limits: PeerLimits,
    blob_cache_limit: u64,
    join: Option<DeviceInvite>,
    gossip_max_message_size: usize,
    heartbeat_interval: Duration,
    live_silence: Duration,
    live: bool,
}

/// Prepares a fresh data folder for a further device of an existing
/// namespace: creates this device's key and returns its id. Give the id to a
/// device holding the namespace key ([`Node::invite_device`]), then start
/// this one with [`Builder::join_namespace`].
///
/// # Errors
/// [`Error::Identity`] if the folder already belongs to a namespace.
pub fn prepare_device(data_dir: impl AsRef<std::path::Path>) -> Result<DeviceId> {
    std::fs::create_dir_all(data_dir.as_ref())?;
    Ok(Identity::prepare(data_dir.as_ref())?.id())
}

/// What one [`Node::sync_now`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// The device synced with.
    pub device: Option<DeviceId>,
    /// Entries received.
    pub entries: u64,
    /// Documents updated.
    pub docs: u64,
    /// Tombstones applied.
    pub tombstones: u64,
    /// Blobs fetched eagerly (small ones).
    pub blobs_fetched: u64,
    /// Items refused by the owner or rejected here.
    pub refused: u64,
    /// Deletion receipts the owner recorded in this sync.
    pub receipts_sent: u64,
    /// Bytes sent on the catch-up stream.
    pub bytes_sent: u64,
    /// Bytes received on the catch-up stream and blob streams.
    pub bytes_received: u64,
    /// The prefixes synced.
    pub prefixes: Vec<Path>,
    /// How long it took.
    pub duration: Duration,
}

impl Builder {
    fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            network: NetworkMode::default(),
            bind: None,
            durability: Durability::default(),
            eager_blob_size: 256 << 10,
            resync_interval: Duration::from_secs(30),
            connection_idle: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            peer_limits: PeerLimits::default(),
            blob_cache_limit: 4 << 30,
            join: None,
            gossip_max_message_size: 4096,
            heartbeat_interval: Duration::from_secs(5),
            live_silence: Duration::from_secs(20),
            live: true,
        }
    }

    /// Whether to push and receive changes live over gossip and poke
    /// friends' devices when something is owed to them (default on). Off,
    /// the node only catches up: on demand and every resync interval.
    pub fn live_push(mut self, on: bool) -> Self {
        self.live = on;
        self
    }

    /// The gossip message size limit (default 4,096 bytes, iroh-gossip's
    /// default). Every node of a scope must use the same value; changes that
    /// do not fit are announced by their heads and pulled directly.
    pub fn gossip_max_message_size(mut self, bytes: usize) -> Self {
        self.gossip_max_message_size = bytes.max(1024);
        self
    }

    /// How often this namespace's devices publish a heartbeat into each of
    /// its scopes (default 5 s).
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// How long a member may hear nothing on a scope's topic, not even a
    /// heartbeat, before it re-joins the topic and catches up directly
    /// (default 20 s; keep it a few heartbeats long).
    pub fn live_silence(mut self, interval: Duration) -> Self {
        self.live_silence = interval;
        self
    }

    /// How long a connection attempt to one device may take before the next
    /// device of the same person is tried (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// What each peer device may use of this node (streams, requests and
    /// bytes per second).
    pub fn peer_limits(mut self, limits: PeerLimits) -> Self {
        self.peer_limits = limits;
        self
    }

    /// Most bytes of friends' blob content kept (default 4 GiB); the least
    /// recently used is evicted first and fetched again when read.
    pub fn blob_cache_limit(mut self, bytes: u64) -> Self {
        self.blob_cache_limit = bytes;
        self
    }

    /// Starts this node as a further device of the namespace that issued
    /// `invite` (prepared with [`prepare_device`]): it replicates the whole
    /// namespace, its grants and friends from the issuing device, and serves
    /// friends like it.
    pub fn join_namespace(mut self, invite: DeviceInvite) -> Self {
        self.join = Some(invite);
        self
    }

    /// Sets the network mode (default [`NetworkMode::Internet`]).
    pub fn network(mut self, network: NetworkMode) -> Self {
        self.network = network;
        self
    }

    /// Binds the endpoint to this address (default: any port, on 127.0.0.1
    /// in `LocalOnly` mode, on all interfaces otherwise).
    pub fn bind_addr(mut self, addr: SocketAddr) -> Self {
        self.bind = Some(addr);
        self
    }

    /// Sets the store's durability mode.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Blobs up to this size are fetched with their entries; larger ones
    /// when read (default 256 KiB).
    pub fn eager_blob_size(mut self, bytes: u64) -> Self {
        self.eager_blob_size = bytes;
        self
    }

    /// How often a subscription re-syncs while the friend is reachable
    /// (default 30 s). Changes arrive live over gossip in between; the
    /// re-sync is the safety net. While every prefix the friend granted
    /// lies in a topic that is delivering with nothing missing, up to nine
    /// re-syncs in a row are skipped (gaps and silence start a catch-up at
    /// once anyway).
    pub fn resync_interval(mut self, interval: Duration) -> Self {
        self.resync_interval = interval;
        self
    }

    /// How long a connection this node opened stays open without moving
    /// stream data (default 30 s). iroh keeps open connections alive with
    /// pings, so an owner whose friends all synced once would otherwise
    /// keep paying for every one of them.
    pub fn connection_idle(mut self, idle: Duration) -> Self {
        self.connection_idle = idle.max(Duration::from_millis(100));
        self
    }

    /// Opens the data folder (creating the identity on first start), binds
    /// the endpoint and starts serving.
    ///
    /// # Errors
    /// [`Error::Identity`] for damaged identity files, store errors,
    /// [`Error::Network`] if the endpoint cannot bind.
    pub async fn spawn(self) -> Result<Node> {
        std::fs::create_dir_all(&self.data_dir)?;
        let data_dir = self.data_dir.clone();
        let durability = self.durability;
        let join = self.join.clone();
        let cache_limit = self.blob_cache_limit;
        let gate = Gate::default();
        let admission = Arc::new(gate.clone());
        let shared = tokio::task::spawn_blocking(move || -> Result<_> {
            let identity = match &join {
                Some(invite) => Identity::join(&data_dir, &invite.cert)?,
                None => Identity::load_or_create(&data_dir)?,
            };
            let store = Store::open(
                data_dir.join("store"),
                StoreOptions::new(identity.device()).durability(durability),
            )?;
            let cache = BlobCache::load(&store, &identity.namespace, cache_limit)?;
            Shared::open(store, identity, cache, admission)
        })
        .await
        .map_err(|e| Error::Protocol(format!("start-up task failed: {e}")))??;
        let shared = Arc::new(shared);
        let identity = &shared.identity;
        let (requests_tx, requests_rx) = tokio::sync::mpsc::channel(REQUEST_CAPACITY);
        let lookup = MemoryLookup::new();
        let secret = SecretKey::from_bytes(&identity.device_key.to_bytes());
        let builder = match &self.network {
            NetworkMode::LocalOnly => Endpoint::builder(presets::Minimal)
                .relay_mode(RelayMode::Disabled)
                .clear_ip_transports()
                .bind_addr(
                    self.bind
                        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
                )
                .map_err(Error::network)?
                .portmapper_config(PortmapperConfig::Disabled),
            NetworkMode::Internet | NetworkMode::InternetWithRelays(_) => {
                let mut b = Endpoint::builder(presets::N0);
                if let NetworkMode::InternetWithRelays(urls) = &self.network {
                    b = b.relay_mode(RelayMode::Custom(urls.iter().cloned().collect()));
                }
                if let Some(addr) = self.bind {
                    b = b
                        .clear_ip_transports()
                        .bind_addr(addr)
                        .map_err(Error::network)?;
                }
                b
            }
        };
        let endpoint = builder
            .secret_key(secret)
            .address_lookup(lookup.clone())
            .hooks(gate.clone())
            .alpns(vec![ALPN.to_vec()])
            .bind()
            .await
            .map_err(Error::network)?;
        let gossip = iroh_gossip::Gossip::builder()
            .max_message_size(self.gossip_max_message_size)
            .spawn(endpoint.clone());
        let router = Router::builder(endpoint.clone())
            .accept(
                ALPN,
                SyncProtocol::new(
                    shared.clone(),
                    PeerBudgets::new(self.peer_limits),
                    requests_tx.clone(),
                ),
            )
            .accept(iroh_gossip::ALPN, gossip.clone())
            .spawn();
        // Gossip finds peers by id: give it every address known.
        for (device, addrs) in shared.known_addresses() {
            if let Ok(id) = iroh::PublicKey::from_bytes(device.as_bytes())
                && !addrs.is_empty()
            {
                lookup.add_endpoint_info(EndpointAddr::from_parts(
                    id,
                    addrs.iter().map(|a| iroh::TransportAddr::Ip(*a)),
                ));
            }
        }
        let live = self.live.then(|| {
            Live::start(
                gossip,
                shared.clone(),
                LiveConfig {
                    max_message_size: self.gossip_max_message_size,
                    heartbeat: self.heartbeat_interval,
                    silence: self.live_silence,
                    eager_blob_size: self.eager_blob_size,
                },
                requests_tx,
            )
        });
        let node = Node {
            inner: Arc::new(Inner {
                shared,
                gate,
                downloads: Downloads::default(),
                endpoint,
                router,
                lookup,
                config: self,
                subscriptions: Mutex::new(HashMap::new()),
                connections: tokio::sync::Mutex::new(HashMap::new()),
                live,
                tasks: Mutex::new(Some(Vec::new())),
            }),
        };
        {
            let shared = node.inner.shared.clone();
            blocking(move || shared.reconcile_own_scopes().map(|_| ())).await?;
        }
        let mut tasks = vec![tokio::spawn(Node::serve_requests(
            Arc::downgrade(&node.inner),
            requests_rx,
        ))];
        tasks.push(tokio::spawn(Node::close_idle_connections(Arc::downgrade(
            &node.inner,
        ))));
        if node.inner.live.is_some() {
            tasks.push(tokio::spawn(Node::deliver_owed(Arc::downgrade(
                &node.inner,
            ))));
        }
        *node.inner.tasks.lock() = Some(tasks);
        if let Some(invite) = &node.inner.config.join {
            // Replicate the namespace from the device that invited this one.
            node.add_friend(&invite.from).await?;
            let shared = node.inner.shared.clone();
            let own = node.namespace();
            blocking(move || shared.set_subscribed(&own, true)).await?;
        }
        // Subscriptions resume after a restart.
        let store = node.inner.shared.clone();
        let resume = tokio::task::spawn_blocking(move || store.subscribed())
            .await
            .map_err(|e| Error::Protocol(format!("start-up task failed: {e}")))??;
        for friend in resume {
            node.start_subscription(friend);
        }
        Ok(node)
    }
}

/// Capacity of the queue of work the drivers ask of the node.
const REQUEST_CAPACITY: usize = 1024;

/// A connection this node opened, and when it last moved stream data.
struct Cached {
    conn: Connection,
    /// Stream frames sent and received when last looked at.
    stream_frames: u64,
    active_at: Instant,
}

impl Cached {
    fn new(conn: Connection) -> Self {
        Self {
            stream_frames: Self::stream_frames(&conn),
            conn,
            active_at: Instant::now(),
        }
    }

    fn stream_frames(conn: &Connection) -> u64 {
        let stats = conn.stats();
        stats.frame_tx.stream + stats.frame_rx.stream
    }
}

struct Inner {
    shared: Arc<Shared>,
    /// The connection gate (told by `shared` who is admitted).
    gate: Gate,
    /// Blob fetches in progress, one per blob.
    downloads: Downloads,
    endpoint: Endpoint,
    router: Router,
    lookup: MemoryLookup,
    config: Builder,
    subscriptions: Mutex<HashMap<NamespaceId, JoinHandle<()>>>,
    /// Connections this node opened to other devices, reused across
    /// requests and closed once idle.
    connections: tokio::sync::Mutex<HashMap<DeviceId, Cached>>,
    live: Option<Arc<Live>>,
    /// Background tasks other than subscriptions; `None` once the node is
    /// stopping.
    tasks: Mutex<Option<Vec<JoinHandle<()>>>>,
}

impl Inner {
    /// Spawns a task that [`Node::shutdown`] stops and awaits.
    /// Once the node is stopping, nothing new is started: a task spawned
    /// after [`Node::shutdown`] took the list would be neither aborted nor
    /// awaited, and could hold the store or a connection attempt after it.
    fn spawn_tracked(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock();
        let Some(tasks) = tasks.as_mut() else {
            tracing::debug!("the node is stopping; not starting a task");
            return;
        };
        tasks.retain(|t| !t.is_finished());
        tasks.push(tokio::spawn(task));
    }
}

/// A kith node: this device's store, endpoint and sync tasks.
///
/// `Node` is a cheap handle (`Clone`); the node stops when [`Node::shutdown`]
/// is awaited. Its methods are async; the blocking store is reached through
/// [`Node::store`] (call it from blocking code or `spawn_blocking`).
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("namespace", &self.namespace())
            .field("device", &self.device())
            .finish_non_exhaustive()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Protocol(format!("blocking task failed: {e}")))?
}

impl Node {
    /// A builder for a node keeping its data in `data_dir`.
    pub fn builder(data_dir: impl Into<PathBuf>) -> Builder {
        Builder::new(data_dir)
    }

    /// This node's namespace.
    pub fn namespace(&self) -> NamespaceId {
        self.inner.shared.namespace()
    }

    /// This device.
    pub fn device(&self) -> DeviceId {
        self.inner.shared.identity.device()
    }

    /// The store: this namespace's data and friends' replicated data.
    /// Blocking; see [`kith_store::Store`]. Write only into this node's own
    /// namespace: friends' namespaces are written by sync.
    pub fn store(&self) -> &Store {
        &self.inner.shared.store
    }

    /// Watches changes under `prefix` of `namespace`, this node's own or a
    /// friend's replicated one (see [`kith_store::Store::watch`]).
    pub fn watch(&self, namespace: &NamespaceId, prefix: &Path) -> kith_store::Watcher {
        self.inner.shared.store.watch(namespace, prefix)
    }

    /// The endpoint's current direct addresses.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.inner.endpoint.addr().ip_addrs().copied().collect()
    }

    /// A ticket a friend adds to reach this node.
    pub fn ticket(&self) -> Ticket {
        Ticket {
            namespace: self.namespace(),
            cert: self.inner.shared.identity.cert.clone(),
            addrs: self.addrs(),
        }
    }

    /// Adds (or updates) a friend from their ticket. Their devices may
    /// connect from now on. A ticket of another device of this node's own
    /// namespace records that device instead.
    ///
    /// # Errors
    /// [`Error::NotAllowed`] for this device's own ticket; store errors.
    pub async fn add_friend(&self, ticket: &Ticket) -> Result<()> {
        let shared = self.inner.shared.clone();
        let ticket2 = ticket.clone();
        blocking(move || shared.add_friend(&ticket2)).await?;
        if !ticket.addrs.is_empty() {
            let id = iroh::PublicKey::from_bytes(ticket.cert.device().as_bytes())
                .map_err(Error::network)?;
            let addr = EndpointAddr::from_parts(
                id,
                ticket.addrs.iter().map(|a| iroh::TransportAddr::Ip(*a)),
            );
            self.inner.lookup.add_endpoint_info(addr);
        }
        Ok(())
    }

    /// This node's friends.
    pub fn friends(&self) -> Vec<NamespaceId> {
        let mut f: Vec<NamespaceId> = self
            .inner
            .shared
            .known
            .read()
            .friends
            .keys()
            .copied()
            .collect();
        f.sort();
        f
    }

    /// Removes a friend: their devices are refused from now on and their
    /// subscription stops. Their replicated data stays until deleted.
    ///
    /// # Errors
    /// Store errors.
    pub async fn remove_friend(&self, friend: &NamespaceId) -> Result<bool> {
        self.unsubscribe(friend).await?;
        let shared = self.inner.shared.clone();
        let friend = *friend;
        let removed = blocking(move || shared.remove_friend(&friend)).await?;
        Ok(removed)
    }

    fn namespace_key(&self) -> Result<&kith_caps::NamespaceKey> {
        self.inner
            .shared
            .identity
            .namespace_key
            .as_ref()
            .ok_or(Error::NotAllowed(
                "only the device holding the namespace key can sign grants and deletions",
            ))
    }

    /// Lets `friend` read everything under `prefix` until `expires` (or
    /// forever). Takes effect at once on this device.
    ///
    /// # Errors
    /// [`Error::NotFriend`], [`Error::NotAllowed`] without the namespace key,
    /// store errors.
    pub async fn grant(
        &self,
        friend: &NamespaceId,
        prefix: &Path,
        expires: Option<Timestamp>,
    ) -> Result<ReadCap> {
        if !self.inner.shared.known.read().friends.contains_key(friend) {
            return Err(Error::NotFriend(*friend));
        }
        let key = self.namespace_key()?;
        let now = self.inner.shared.store.clock().now();
        let cap = ReadCap::issue(
            key,
            CapId::random(&mut rand::rng()),
            *friend,
            prefix.clone(),
            now,
            expires,
        )?;
        let shared = self.inner.shared.clone();
        let cap2 = cap.clone();
        blocking(move || shared.store_own_cap(&cap2)).await?;
        Ok(cap)
    }

    /// Revokes a cap: from now on this device refuses the grantee anything
    /// under the cap's prefix (unless another valid cap covers it).
    ///
    /// # Errors
    /// [`Error::NotAllowed`] without the namespace key, store errors.
    pub async fn revoke(&self, cap: CapId) -> Result<Revocation> {
        let key = self.namespace_key()?;
        let now = self.inner.shared.store.clock().now();
        let rev = Revocation::issue(key, cap, now);
        let shared = self.inner.shared.clone();
        let rev2 = rev.clone();
        blocking(move || shared.store_own_revocation(&rev2)).await?;
        // Publishing moves to the new epoch's topics before this returns.
        if let Some(live) = &self.inner.live {
            live.reconcile().await;
        }
        Ok(rev)
    }

    /// Revokes a cap and asks the friend it was granted to to delete what
    /// they hold under its prefix ("revoke and delete"). This namespace
    /// keeps its own data; only the grantee's devices that were served data
    /// under the prefix are sent the deletion request (including when
    /// offline: they get it when they come back), and each confirms with a
    /// receipt, listed by [`Node::receipts`].
    ///
    /// # Errors
    /// [`Error::NotAllowed`] without the namespace key or for a cap this
    /// namespace did not issue, store errors.
    pub async fn revoke_and_delete(&self, cap: CapId) -> Result<(Revocation, TombstoneId)> {
        let issued = self
            .inner
            .shared
            .known
            .read()
            .grants
            .caps()
            .iter()
            .find(|c| c.id() == cap)
            .cloned()
            .ok_or(Error::NotAllowed("no cap with that id was issued here"))?;
        let key = self.namespace_key()?;
        let revocation = self.revoke(cap).await?;
        let now = self.inner.shared.store.clock().now();
        let tombstone = Tombstone::issue(
            key,
            TombstoneId::random(&mut rand::rng()),
            issued.prefix().clone(),
            now,
        );
        let id = tombstone.id();
        let shared = self.inner.shared.clone();
        let friend = issued.grantee();
        blocking(move || shared.store_addressed_tombstone(&tombstone, &friend)).await?;
        Ok((revocation, id))
    }

    /// Every cap this namespace issued, with whether it is revoked.
    pub fn grants(&self) -> Vec<(ReadCap, bool)> {
        let grants = self.inner.shared.known.read().grants.clone();
        grants
            .caps()
            .iter()
            .map(|c| (c.clone(), grants.is_revoked(&c.id())))
            .collect()
    }

    /// Certifies another device (prepared with [`prepare_device`]) to act
    /// for this namespace with `rights`, and returns the invite to start it
    /// with. The device may connect at once.
    ///
    /// # Errors
    /// [`Error::NotAllowed`] without the namespace key, store errors.
    pub async fn invite_device(
        &self,
        device: DeviceId,
        rights: kith_caps::Rights,
    ) -> Result<DeviceInvite> {
        let key = self.namespace_key()?;
        let now = self.inner.shared.store.clock().now();
        let cert = kith_caps::DeviceCert::issue(key, device, rights, now, None)?;
        let shared = self.inner.shared.clone();
        let cert2 = cert.clone();
        blocking(move || {
            shared.store_own_cert(&cert2)?;
            // The new device is a member of every scope of this namespace.
            shared.scopes_follow_grants()
        })
        .await?;
        Ok(DeviceInvite {
            cert,
            from: self.ticket(),
        })
    }

    /// Revokes one of this namespace's devices (a lost phone): from now on
    /// no device of this namespace syncs from it or serves it, its live
    /// pushes are refused, every scope it was in moves to a new key it is
    /// not given, and friends learn of the revocation at their next
    /// catch-up (they are poked for the new keys), after which they too
    /// neither sync from it nor accept what it sends.
    ///
    /// # Errors
    /// [`Error::NotAllowed`] without the namespace key or for this device
    /// itself; store errors. A device not known yet is revoked all the same
    /// (its certificate, seen later, is refused).
    pub async fn revoke_device(&self, device: DeviceId) -> Result<kith_caps::DeviceRevocation> {
        let key = self.namespace_key()?;
        if device == self.device() {
            return Err(Error::NotAllowed(
                "revoking the device that holds the namespace key",
            ));
        }
        let now = self.inner.shared.store.clock().now();
        let revocation = kith_caps::DeviceRevocation::issue(key, device, now);
        let shared = self.inner.shared.clone();
        let r = revocation.clone();
        blocking(move || {
            let ns = shared.namespace();
            crate::proto::fetch::Replica::store_owner_devices(
                &crate::state::FriendReplica(&shared),
                &ns,
                &[],
                &[r],
            )?;
            // Its rosters lose it: new epochs, keys it is not given, owed
            // (and poked) to every remaining member.
            shared.scopes_follow_grants()
        })
        .await?;
        // Cached connections to it are closed.
        if let Some(cached) = self.inner.connections.lock().await.remove(&device) {
            cached.conn.close(0u32.into(), b"revoked");
        }
        Ok(revocation)
    }

    /// The verified caps `friend` granted this node, and the revocations of
    /// caps it held, as last received from them.
    ///
    /// # Errors
    /// Store errors.
    pub async fn caps_from(&self, friend: &NamespaceId) -> Result<(Vec<ReadCap>, Vec<Revocation>)> {
        let shared = self.inner.shared.clone();
        let f = *friend;
        blocking(move || shared.caps_from(&f)).await
    }

    /// For a deletion this node requested: every friend device that was
    /// ever served data under its prefix, and whether it has confirmed the
    /// deletion with a signed receipt (friends receive owed deletions, even
    /// after a revocation, whenever they sync).
    ///
    /// # Errors
    /// Store errors.
    pub async fn receipts(&self, tombstone: TombstoneId) -> Result<Vec<DeletionStatus>> {
        let shared = self.inner.shared.clone();
        blocking(move || shared.deletion_status(&tombstone)).await
    }

    /// Every deletion this namespace requested, oldest first.
    ///
    /// # Errors
    /// Store errors.
    pub async fn deletions(&self) -> Result<Vec<Tombstone>> {
        let shared = self.inner.shared.clone();
        blocking(move || {
            let ns = shared.namespace();
            let mut out = Vec::new();
            for (_, bytes) in shared.store.records(RecordKind::Tombstone, &ns)? {
                match Tombstone::decode(&bytes) {
                    Ok(t) => out.push(t),
                    Err(e) => tracing::error!(%e, "ignoring a damaged stored tombstone"),
                }
            }
            out.sort_by_key(|t| t.up_to());
            Ok(out)
        })
        .await
    }

    /// Events of this node as they happen (deletion receipts arriving).
    /// A receiver that falls behind by more than 256 events gets
    /// `RecvError::Lagged` and should re-read what it shows.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<crate::state::NodeEvent> {
        self.inner.shared.events.subscribe()
    }

    /// Deletes everything under `prefix` of this namespace written until
    /// now, and keeps the signed tombstone so that friends receive it.
    /// The root is refused: deleting the whole namespace is
    /// [`Node::delete_everything`].
    ///
    /// # Errors
    /// [`Error::WholeNamespace`] for `/`, [`Error::NotAllowed`] without the
    /// namespace key, store errors.
    pub async fn delete(&self, prefix: &Path) -> Result<TombstoneId> {
        if prefix.is_root() {
            return Err(Error::WholeNamespace);
        }
        self.issue_deletion(prefix).await
    }

    /// Deletes the whole namespace: every document and blob, here and on
    /// every friend's device that was served any of it, which confirm with
    /// receipts. What [`Node::delete`] refuses for `/`, said explicitly.
    ///
    /// # Errors
    /// [`Error::NotAllowed`] without the namespace key, store errors.
    pub async fn delete_everything(&self) -> Result<TombstoneId> {
        self.issue_deletion(&Path::root()).await
    }

    async fn issue_deletion(&self, prefix: &Path) -> Result<TombstoneId> {
        let key = self.namespace_key()?;
        let now = self.inner.shared.store.clock().now();
        let tombstone = Tombstone::issue(
            key,
            TombstoneId::random(&mut rand::rng()),
            prefix.clone(),
            now,
        );
        let shared = self.inner.shared.clone();
        let id = tombstone.id();
        blocking(move || {
            let ns = shared.namespace();
            let record = RecordOp::put(
                RecordKind::Tombstone,
                ns,
                tombstone.id().as_bytes(),
                &tombstone.encode(),
            );
            shared
                .store
                .apply_tombstone(&ns, tombstone.prefix(), tombstone.up_to(), &[record])?;
            Ok(())
        })
        .await?;
        // Friends' devices that were served the data are poked to sync.
        self.inner.shared.owed_changed.notify_one();
        Ok(id)
    }

    async fn connect(&self, device: DeviceId, addrs: &[SocketAddr]) -> Result<Connection> {
        Ok(self.connection(device, addrs).await?.0)
    }

    /// A connection to `device`: the cached one if it is open (`true`), or
    /// a new one (`false`), which is cached.
    async fn connection(
        &self,
        device: DeviceId,
        addrs: &[SocketAddr],
    ) -> Result<(Connection, bool)> {
        {
            let mut conns = self.inner.connections.lock().await;
            if let Some(cached) = conns.get_mut(&device)
                && cached.conn.close_reason().is_none()
            {
                cached.active_at = Instant::now();
                return Ok((cached.conn.clone(), true));
            }
        }
        // Connecting may take up to the connect timeout: not under the
        // lock, so that other devices are reached meanwhile.
        let id = iroh::PublicKey::from_bytes(device.as_bytes()).map_err(Error::network)?;
        let addr = EndpointAddr::from_parts(id, addrs.iter().map(|a| iroh::TransportAddr::Ip(*a)));
        let conn = tokio::time::timeout(
            self.inner.config.connect_timeout,
            self.inner.endpoint.connect(addr, ALPN),
        )
        .await
        .map_err(|_| Error::Timeout("connecting"))?
        .map_err(Error::network)?;
        self.inner.gate.track(device, &conn);
        self.inner
            .connections
            .lock()
            .await
            .insert(device, Cached::new(conn.clone()));
        Ok((conn, false))
    }

    /// Closes cached connections that moved no stream data for the
    /// configured idle time ([`Builder::connection_idle`]).
    async fn close_idle_connections(weak: std::sync::Weak<Inner>) {
        loop {
            let idle = match weak.upgrade() {
                Some(inner) => inner.config.connection_idle,
                None => return,
            };
            tokio::time::sleep(idle / 3).await;
            let Some(inner) = weak.upgrade() else { return };
            let mut conns = inner.connections.lock().await;
            conns.retain(|device, cached| {
                if cached.conn.close_reason().is_some() {
                    return false;
                }
                let frames = Cached::stream_frames(&cached.conn);
                if frames != cached.stream_frames {
                    cached.stream_frames = frames;
                    cached.active_at = Instant::now();
                    return true;
                }
                if cached.active_at.elapsed() < idle {
                    return true;
                }
                tracing::debug!(device = %device.fmt_short(), "closing an idle connection");
                cached.conn.close(0u32.into(), b"idle");
                false
            });
        }
    }

    /// The devices of `owner` to sync from, in order of preference (for
    /// this node's own namespace: its other devices).
    fn devices_of(&self, owner: &NamespaceId) -> Result<Vec<(DeviceId, Vec<SocketAddr>)>> {
        let me = self.namespace();
        let known = self.inner.shared.known.read();
        if *owner != me && !known.friends.contains_key(owner) {
            return Err(Error::NotFriend(*owner));
        }
        let this = self.device();
        let mut devices = known.devices_of(owner, &me);
        devices.retain(|(d, _)| *d != this);
        Ok(devices)
    }

    /// Catches up with `friend` now: connects to one of their devices and
    /// fetches everything changed under the prefixes this node may read,
    /// then small blobs.
    ///
    /// # Errors
    /// [`Error::NotFriend`], [`Error::Unreachable`] if no device answered,
    /// [`Error::Refused`] or [`Error::Protocol`] if the device refused or
    /// misbehaved, store errors.
    pub async fn sync_now(&self, friend: &NamespaceId) -> Result<SyncReport> {
        let devices = self.devices_of(friend)?;
        let mut last_error = String::from("no known device");
        let mut attempts: std::collections::VecDeque<(DeviceId, Vec<SocketAddr>)> =
            devices.into_iter().collect();
        let mut retried: Vec<DeviceId> = Vec::new();
        while let Some((device, addrs)) = attempts.pop_front() {
            let started = Instant::now();
            let (conn, reused) = match self.connection(device, &addrs).await {
                Ok(c) => c,
                Err(e) => {
                    last_error = e.to_string();
                    continue;
                }
            };
            let run = tokio::time::timeout(
                SYNC_TIMEOUT,
                net::fetch::sync(&self.inner.shared, &conn, *friend),
            )
            .await;
            let (fetch, traffic) = match run {
                Ok(Ok(v)) => v,
                Ok(Err(e @ (Error::Refused { .. } | Error::Protocol(_) | Error::Wire(_)))) => {
                    return Err(e);
                }
                Ok(Err(e)) => {
                    self.inner.connections.lock().await.remove(&device);
                    last_error = e.to_string();
                    // A cached connection that turned out dead: once more
                    // on a fresh one.
                    if reused && !retried.contains(&device) {
                        retried.push(device);
                        attempts.push_front((device, addrs));
                    }
                    continue;
                }
                Err(_) => {
                    last_error = "timed out".into();
                    continue;
                }
            };
            let mut report = SyncReport {
                device: Some(device),
                entries: fetch.entries,
                docs: fetch.docs,
                tombstones: fetch.tombstones,
                refused: fetch.refused,
                bytes_sent: traffic.sent,
                bytes_received: traffic.received,
                prefixes: fetch.prefixes.clone(),
                ..SyncReport::default()
            };
            let eager = self.inner.config.eager_blob_size;
            for (path, hash, size) in fetch.blobs {
                if size > eager || self.inner.shared.store.has_blob(&hash) {
                    continue;
                }
                match net::fetch::blob(
                    &self.inner.shared,
                    &self.inner.downloads,
                    &conn,
                    &path,
                    hash,
                    size,
                )
                .await
                {
                    Ok(n) => {
                        report.blobs_fetched += 1;
                        report.bytes_received += n;
                        let shared = self.inner.shared.clone();
                        blocking(move || {
                            let own = shared.namespace();
                            shared.cache.used(&shared.store, &own, hash, size)
                        })
                        .await?;
                    }
                    Err(e) => {
                        tracing::info!(%path, %e, "could not fetch a small blob; it will be fetched when read")
                    }
                }
            }
            // Deletions applied now (or before) are confirmed to the owner.
            match net::fetch::receipts(&self.inner.shared, &conn, *friend).await {
                Ok(n) => report.receipts_sent = n as u64,
                Err(e) => tracing::info!(%e, "receipts not delivered yet; they stay queued"),
            }
            report.duration = started.elapsed();
            return Ok(report);
        }
        Err(Error::Unreachable {
            namespace: *friend,
            last_error,
        })
    }

    /// Opens the blob at `path` of `namespace`, fetching it from the owner's
    /// devices first if it is not stored here (a friend's blob that was
    /// never fetched or was purged, or one written on another device of this
    /// namespace).
    ///
    /// # Errors
    /// [`kith_store::Error::NotFound`] if nothing is at `path`, fetch errors,
    /// store errors.
    pub async fn read_blob(&self, namespace: &NamespaceId, path: &Path) -> Result<BlobReader> {
        let (hash, _) = self.ensure_blob(namespace, path).await?;
        let store = self.inner.shared.store.clone();
        blocking(move || Ok(store.read_blob(&hash, ..)?)).await
    }

    /// Fetches the content of the blob at `path` of `namespace` from the
    /// owner's devices now (if it is not stored here yet), resuming an
    /// interrupted fetch. Returns the bytes received (0 if it was here).
    ///
    /// # Errors
    /// As [`Node::read_blob`].
    pub async fn fetch(&self, namespace: &NamespaceId, path: &Path) -> Result<u64> {
        Ok(self.ensure_blob(namespace, path).await?.1)
    }

    /// Makes sure the blob at `path` is stored here, fetching it from the
    /// owner's devices if not: a friend's blob never fetched or purged, or
    /// one written on another device of this namespace. Returns its hash and
    /// the bytes received.
    async fn ensure_blob(&self, namespace: &NamespaceId, path: &Path) -> Result<(BlobHash, u64)> {
        let store = self.inner.shared.store.clone();
        let (ns, p) = (*namespace, path.clone());
        let entry = blocking(move || Ok(store.get(&ns, &p)?))
            .await?
            .ok_or_else(|| {
                Error::from(kith_store::Error::NotFound {
                    namespace: *namespace,
                    path: path.clone(),
                })
            })?;
        let kith_store::EntryKind::Blob { hash, size, .. } = entry.kind else {
            return Err(kith_store::Error::WrongKind {
                path: path.clone(),
                expected: "blob",
                found: "document",
            }
            .into());
        };
        let received = if self.inner.shared.store.has_blob(&hash) {
            0
        } else {
            if self.devices_of(namespace)?.is_empty() {
                return Err(kith_store::Error::BlobMissing(hash).into());
            }
            // Fetched from the owner's devices, never from other friends.
            self.fetch_blob(namespace, path, hash, size).await?
        };
        if *namespace != self.namespace() {
            let shared = self.inner.shared.clone();
            blocking(move || {
                let own = shared.namespace();
                shared.cache.used(&shared.store, &own, hash, size)
            })
            .await?;
        }
        Ok((hash, received))
    }

    async fn fetch_blob(
        &self,
        owner: &NamespaceId,
        path: &Path,
        hash: BlobHash,
        size: u64,
    ) -> Result<u64> {
        let mut last_error = String::from("no known device");
        for (device, addrs) in self.devices_of(owner)? {
            let conn = match self.connect(device, &addrs).await {
                Ok(c) => c,
                Err(e) => {
                    last_error = e.to_string();
                    continue;
                }
            };
            match net::fetch::blob(
                &self.inner.shared,
                &self.inner.downloads,
                &conn,
                path,
                hash,
                size,
            )
            .await
            {
                Ok(n) => return Ok(n),
                Err(e @ (Error::Refused { .. } | Error::Store(_))) => return Err(e),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(Error::Unreachable {
            namespace: *owner,
            last_error,
        })
    }

    /// Deletes every friend's blob content held here; their entries stay and
    /// the content is fetched again from its owner when read. Returns the
    /// bytes freed.
    ///
    /// # Errors
    /// Store errors.
    pub async fn purge_blob_cache(&self) -> Result<u64> {
        let shared = self.inner.shared.clone();
        blocking(move || {
            let own = shared.namespace();
            shared.cache.purge(&shared.store, &own)
        })
        .await
    }

    /// Bytes of friends' blob content held here.
    pub fn blob_cache_size(&self) -> u64 {
        self.inner.shared.cache.size()
    }

    /// Keeps `friend`'s namespace synced: syncs now and then every
    /// resync interval, retrying with backoff while the friend is offline.
    /// Resumes after a restart.
    ///
    /// # Errors
    /// [`Error::NotFriend`], store errors.
    pub async fn subscribe(&self, friend: &NamespaceId) -> Result<()> {
        if *friend != self.namespace()
            && !self.inner.shared.known.read().friends.contains_key(friend)
        {
            return Err(Error::NotFriend(*friend));
        }
        let shared = self.inner.shared.clone();
        let f = *friend;
        blocking(move || shared.set_subscribed(&f, true)).await?;
        self.start_subscription(*friend);
        Ok(())
    }

    /// Stops keeping `friend` synced.
    ///
    /// # Errors
    /// Store errors.
    pub async fn unsubscribe(&self, friend: &NamespaceId) -> Result<()> {
        if let Some(task) = self.inner.subscriptions.lock().remove(friend) {
            task.abort();
        }
        let shared = self.inner.shared.clone();
        let f = *friend;
        blocking(move || shared.set_subscribed(&f, false)).await
    }

    fn start_subscription(&self, friend: NamespaceId) {
        let weak = Arc::downgrade(&self.inner);
        let interval = self.inner.config.resync_interval;
        let task = tokio::spawn(async move {
            let mut wait = RETRY_MIN;
            let mut skipped = 0;
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let node = Node { inner };
                if wait == interval
                    && skipped < RESYNC_SKIPS_MAX
                    && node.live_in_step(&friend).await
                {
                    // Live push delivers everything; the catch-up would
                    // only list what already arrived.
                    skipped += 1;
                    if let Some(live) = &node.inner.live {
                        live.resync_skipped();
                    }
                    tracing::trace!(friend = %friend.fmt_short(), "in step live; periodic catch-up skipped");
                    drop(node);
                    tokio::time::sleep(wait).await;
                    continue;
                }
                skipped = 0;
                match node.sync_now(&friend).await {
                    Ok(report) => {
                        tracing::debug!(friend = %friend.fmt_short(), entries = report.entries, "subscription synced");
                        wait = interval;
                    }
                    Err(Error::NotFriend(_)) => return,
                    Err(e) => {
                        tracing::info!(friend = %friend.fmt_short(), %e, retry_in = ?wait, "subscription sync failed");
                        wait = if wait >= interval {
                            RETRY_MIN
                        } else {
                            (wait * 2).min(RETRY_MAX)
                        };
                    }
                }
                drop(node);
                tokio::time::sleep(wait).await;
            }
        });
        // Under the task list's lock, so that a subscription started while
        // the node stops is either drained by `shutdown` or never kept.
        let tasks = self.inner.tasks.lock();
        if tasks.is_none() {
            task.abort();
            return;
        }
        if let Some(old) = self.inner.subscriptions.lock().insert(friend, task) {
            old.abort();
        }
    }

    /// Counters of live push: how changes arrived (live or by recovery),
    /// what was published and dropped.
    pub fn live_metrics(&self) -> LiveMetrics {
        self.inner
            .live
            .as_ref()
            .map(|l| l.metrics())
            .unwrap_or_default()
    }

    /// Bytes this node's endpoint has sent since it started, over every
    /// protocol (catch-up, gossip) and transport.
    pub fn bytes_sent(&self) -> u64 {
        let m = &self.inner.endpoint.metrics().socket;
        m.send_ipv4.get() + m.send_ipv6.get() + m.send_relay.get()
    }

    /// Whether live push keeps this node up to date with everything
    /// `friend` granted it (see [`Live::in_step`]).
    async fn live_in_step(&self, friend: &NamespaceId) -> bool {
        let Some(live) = self.inner.live.as_ref() else {
            return false;
        };
        if *friend == self.namespace() {
            // Own devices replicate paths no scope covers.
            return false;
        }
        let Ok((caps, revocations)) = self.caps_from(friend).await else {
            return false;
        };
        let now = Timestamp::wall_clock();
        let prefixes: Vec<Path> = caps
            .iter()
            .filter(|c| c.check_time(now).is_ok() && !revocations.iter().any(|r| r.revokes(c)))
            .map(|c| c.prefix().clone())
            .collect();
        live.in_step(friend, &prefixes)
    }

    /// Connections this node opened to other devices that are open now
    /// (each closes after [`Builder::connection_idle`] without use).
    pub async fn connections_open(&self) -> usize {
        self.inner
            .connections
            .lock()
            .await
            .values()
            .filter(|c| c.conn.close_reason().is_none())
            .count()
    }

    /// The live-push topics this node has joined: one per scope it belongs
    /// to (its own namespace's granted prefixes, and friends' prefixes it
    /// may read), at the scope's current epoch.
    pub fn live_topics(&self) -> Vec<crate::live::LiveTopic> {
        self.inner
            .live
            .as_ref()
            .map(|l| l.topics())
            .unwrap_or_default()
    }

    /// Runs what the live layer and pokes ask for: catch-ups (one at a time
    /// per namespace; requests meanwhile are folded into one more run) and
    /// eager blob fetches.
    async fn serve_requests(
        weak: std::sync::Weak<Inner>,
        mut rx: tokio::sync::mpsc::Receiver<Work>,
    ) {
        // Per namespace being synced: whether another run was asked for.
        let running: Arc<Mutex<HashMap<NamespaceId, bool>>> = Arc::default();
        while let Some(request) = rx.recv().await {
            let Some(inner) = weak.upgrade() else { return };
            let node = Node { inner };
            match request {
                Work::Sync {
                    namespace,
                    recovery,
                } => {
                    {
                        let mut r = running.lock();
                        if let Some(again) = r.get_mut(&namespace) {
                            *again = true;
                            continue;
                        }
                        r.insert(namespace, false);
                    }
                    let running = running.clone();
                    let inner = node.inner.clone();
                    inner.spawn_tracked(async move {
                        // A failed recovery is retried with backoff: nothing
                        // else would notice what it was to bring.
                        let mut failures = 0u32;
                        loop {
                            match node.sync_now(&namespace).await {
                                Ok(report) if recovery => {
                                    if let Some(live) = &node.inner.live {
                                        live.counters.recovered.fetch_add(
                                            report.entries,
                                            std::sync::atomic::Ordering::Relaxed,
                                        );
                                    }
                                }
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::info!(ns = %namespace.fmt_short(), %e, failures, "requested catch-up failed");
                                    if recovery && failures < RECOVERY_RETRIES {
                                        failures += 1;
                                        tokio::time::sleep(
                                            Duration::from_millis(500) * 2u32.pow(failures),
                                        )
                                        .await;
                                        continue;
                                    }
                                }
                            }
                            let mut r = running.lock();
                            if r.get(&namespace) == Some(&true) {
                                r.insert(namespace, false);
                                continue;
                            }
                            r.remove(&namespace);
                            break;
                        }
                    });
                }
                Work::FetchBlob { namespace, path } => {
                    let inner = node.inner.clone();
                    inner.spawn_tracked(async move {
                        if let Err(e) = node.fetch(&namespace, &path).await {
                            tracing::info!(%path, %e, "fetching an announced blob failed");
                        }
                    });
                }
            }
        }
    }

    /// Pokes, with backoff, every device owed something: the current epoch
    /// of a scope it belongs to, or a deletion it has not confirmed. A
    /// poked device syncs at once and so receives what is owed. What is
    /// owed is derived from the store, so it survives restarts.
    async fn deliver_owed(weak: std::sync::Weak<Inner>) {
        let Some(shared) = weak.upgrade().map(|i| i.shared.clone()) else {
            return;
        };
        let mut next_try: HashMap<DeviceId, (Instant, Duration)> = HashMap::new();
        loop {
            let s2 = shared.clone();
            let owed = blocking(move || {
                let mut owed = s2.devices_owed_scopes()?;
                for d in s2.devices_owed_tombstones()? {
                    if !owed.contains(&d) {
                        owed.push(d);
                    }
                }
                Ok(owed)
            })
            .await;
            match owed {
                Ok(owed) => {
                    next_try.retain(|d, _| owed.contains(d));
                    let now = Instant::now();
                    for device in owed {
                        let (at, wait) = next_try
                            .get(&device)
                            .copied()
                            .unwrap_or((now, POKE_RETRY_MIN));
                        if at > now {
                            continue;
                        }
                        next_try.insert(device, (now + wait, (wait * 2).min(RETRY_MAX)));
                        let Some(inner) = weak.upgrade() else { return };
                        let node = Node {
                            inner: inner.clone(),
                        };
                        inner.spawn_tracked(async move {
                            if let Err(e) = node.poke(device).await {
                                tracing::debug!(device = %device.fmt_short(), %e, "poke failed; will retry");
                            }
                        });
                    }
                }
                Err(e) => tracing::warn!(%e, "could not list what is owed to other devices"),
            }
            tokio::select! {
                () = shared.owed_changed.notified() => {
                    // Let a burst of changes (many grants at once) settle
                    // into one round of pokes.
                    let until = Instant::now() + POKE_SETTLE_MAX;
                    while Instant::now() < until
                        && tokio::time::timeout(POKE_SETTLE, shared.owed_changed.notified())
                            .await
                            .is_ok()
                    {}
                    next_try.clear();
                }
                () = tokio::time::sleep(POKE_TICK) => {}
            }
        }
    }

    /// Tells `device` to sync with this one now.
    async fn poke(&self, device: DeviceId) -> Result<()> {
        let shared = self.inner.shared.clone();
        let (_, addrs) = shared
            .device_addrs(&device)
            .ok_or(Error::Protocol("no address known for the device".into()))?;
        let conn = self.connect(device, &addrs).await?;
        let (mut send, _recv) = net::frames::within("opening a stream", async {
            conn.open_bi().await.map_err(Error::network)
        })
        .await?;
        net::frames::write_msg(&mut send, &crate::proto::wire::Message::Poke).await?;
        send.finish().map_err(Error::network)?;
        let _ = tokio::time::timeout(self.inner.config.connect_timeout, send.stopped()).await;
        Ok(())
    }

    /// Stops the node: subscriptions end, connections close, the endpoint
    /// shuts down, and everything written is flushed to disk.
    ///
    /// It returns within [`SHUTDOWN_BOUND`] plus the time the final flush
    /// to disk takes, whatever peers, transfers or gossip do: every task is
    /// aborted and given [`SHUTDOWN_TASKS`] to end, live push as long to
    /// leave its topics, and the endpoint [`SHUTDOWN_NETWORK`] to close
    /// gracefully (what does not is logged and dropped).
    ///
    /// # Errors
    /// Store errors while flushing.
    pub async fn shutdown(self) -> Result<()> {
        // Every task is stopped and awaited, so that none still holds the
        // store when this returns (the data folder can be opened again).
        // From here on nothing new starts (see `Inner::spawn_tracked`).
        let mut tasks: Vec<JoinHandle<()>> = self.inner.tasks.lock().take().unwrap_or_default();
        tasks.extend(self.inner.subscriptions.lock().drain().map(|(_, t)| t));
        for task in &tasks {
            task.abort();
        }
        let ended = tokio::time::timeout(SHUTDOWN_TASKS, async {
            for task in tasks {
                let _ = task.await;
            }
        })
        .await;
        if ended.is_err() {
            tracing::warn!("a node task did not end within {SHUTDOWN_TASKS:?} of its abort");
        }
        if let Some(live) = &self.inner.live
            && tokio::time::timeout(SHUTDOWN_TASKS, live.shutdown())
                .await
                .is_err()
        {
            tracing::warn!("live push did not stop within {SHUTDOWN_TASKS:?}; dropping it");
        }
        for (_, cached) in self.inner.connections.lock().await.drain() {
            cached.conn.close(0u32.into(), b"shutting down");
        }
        match tokio::time::timeout(SHUTDOWN_NETWORK, self.inner.router.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(%e, "router shutdown failed"),
            Err(_) => tracing::warn!(
                "the endpoint did not close within {SHUTDOWN_NETWORK:?}; dropping it"
            ),
        }
        let store = self.inner.shared.store.clone();
        blocking(move || Ok(store.sync()?)).await
    }
}
