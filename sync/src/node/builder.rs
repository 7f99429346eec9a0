//! Configuring and starting a node.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use iroh::address_lookup::memory::MemoryLookup;
use iroh::address_lookup::pkarr::{PkarrPublisher, PkarrResolver};
use iroh::endpoint::{ControllerFactory, PortmapperConfig, QuicTransportConfig, presets};
use iroh::endpoint_info::AddrFilter;
use iroh::{Endpoint, RelayMode, RelayUrl, SecretKey};
use kith_store::{BlobCipher, Durability, Options as StoreOptions, Store};
use kith_types::{DeviceId, Path};
use parking_lot::Mutex;

use crate::cache::{CacheSettings, FriendCache};
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::live::{Live, LiveConfig};
use crate::net;
use crate::net::accept::Acceptor;
use crate::net::connections::Connections;
use crate::net::fetch::Downloads;
use crate::net::gate::Gate;
use crate::net::limits::{PeerBudgets, PeerLimits};
use crate::net::serve::SyncProtocol;
use crate::proto::wire::ALPN;
use crate::state::Shared;
use crate::ticket::DeviceInvite;

use super::handle::{Inner, Node, Settings, blocking};

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
    /// Only what is named, nothing of iroh's public services: these relays
    /// (none: direct paths only) and, if given, this pkarr server (a
    /// self-hosted iroh-dns-server's `/pkarr` URL) where the node publishes
    /// its addresses and looks up friends' devices by key.
    Custom {
        /// The relays (self-hosted iroh-relay servers).
        relays: Vec<RelayUrl>,
        /// The pkarr relay for lookups by key.
        pkarr: Option<String>,
    },
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
    blob_cipher: BlobCipher,
    eager_blob_size: u64,
    resync_interval: Duration,
    connection_idle: Duration,
    connect_timeout: Duration,
    peer_limits: PeerLimits,
    cache: CacheSettings,
    cache_keep: Vec<Path>,
    join: Option<DeviceInvite>,
    gossip_max_message_size: usize,
    heartbeat_interval: Duration,
    live_silence: Duration,
    live: bool,
    relay_ca: Vec<Vec<u8>>,
    tell_back: bool,
    congestion: CongestionControl,
}

/// How the node's QUIC connections pace what they send. Measured on an
/// impaired link by the `wan` bench.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CongestionControl {
    /// kith's own connections (catch-up, blobs, pokes) pace each network
    /// path by its round trip: BBR where the shortest round trip is 20 ms
    /// or more (across the internet, through a relay), CUBIC on shorter
    /// paths (a LAN, loopback); live push over gossip uses CUBIC.
    #[default]
    Auto,
    /// CUBIC everywhere, iroh's default: backs off on every lost packet, so
    /// on a lossy link (mobile data, busy Wi-Fi) bulk transfers slow down
    /// with the loss rate and the round-trip time; small live messages go
    /// out at once.
    Cubic,
    /// BBR (version 3) everywhere: paces by the measured bandwidth and
    /// round-trip time, not by loss, so random loss costs bulk transfers
    /// little; it delays small live messages more than CUBIC does.
    Bbr,
}

impl CongestionControl {
    /// The transport of the endpoint: gossip's connections, and any other
    /// the endpoint makes.
    fn endpoint_transport(self) -> QuicTransportConfig {
        let factory: Arc<dyn ControllerFactory + Send + Sync> = match self {
            Self::Auto | Self::Cubic => Arc::new(noq_proto::congestion::CubicConfig::default()),
            Self::Bbr => Arc::new(noq_proto::congestion::Bbr3Config::default()),
        };
        transport(factory)
    }

    /// The transport of kith's own connections, dialed and accepted.
    fn kith_transport(self) -> QuicTransportConfig {
        match self {
            Self::Auto => transport(Arc::new(net::pacing::ByPathConfig::default())),
            Self::Cubic | Self::Bbr => self.endpoint_transport(),
        }
    }
}

/// A QUIC transport paced by `factory`'s controllers.
fn transport(factory: Arc<dyn ControllerFactory + Send + Sync>) -> QuicTransportConfig {
    QuicTransportConfig::builder()
        .congestion_controller_factory(factory)
        .build()
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

/// Capacity of the queue of work the drivers ask of the node.
const REQUEST_CAPACITY: usize = 1024;

impl Builder {
    pub(super) fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            network: NetworkMode::default(),
            bind: None,
            durability: Durability::default(),
            blob_cipher: BlobCipher::for_this_machine(),
            eager_blob_size: 256 << 10,
            resync_interval: Duration::from_secs(30),
            connection_idle: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            peer_limits: PeerLimits::default(),
            cache: CacheSettings::default(),
            cache_keep: Vec::new(),
            join: None,
            gossip_max_message_size: 4096,
            heartbeat_interval: Duration::from_secs(5),
            live_silence: Duration::from_secs(20),
            live: true,
            relay_ca: Vec::new(),
            tell_back: true,
            congestion: CongestionControl::default(),
        }
    }

    /// The congestion control of the node's QUIC connections (default
    /// [`CongestionControl::Auto`]).
    pub fn congestion_control(mut self, congestion: CongestionControl) -> Self {
        self.congestion = congestion;
        self
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

    /// How much of friends' documents and blobs this node keeps until
    /// the person sets otherwise ([`Node::set_cache`], kept in the store):
    /// by default 4 GiB and no age. Past it the least recently written or
    /// used are purged, and fetched again from their owner when read.
    pub fn cache(mut self, settings: CacheSettings) -> Self {
        self.cache = settings;
        self
    }

    /// Friends' documents and blobs under these prefixes are never purged
    /// from the cache (small data read all the time, such as a profile).
    pub fn cache_keep(mut self, prefixes: Vec<Path>) -> Self {
        self.cache_keep = prefixes;
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

    /// Whether the node tells every device it knows that it is back when it
    /// starts or moves (default on; see `Back` in PROTOCOL.md). Off for a
    /// node that runs for one command: its friends would re-link their
    /// gossip to a node about to stop.
    pub fn tell_devices_when_back(mut self, on: bool) -> Self {
        self.tell_back = on;
        self
    }

    /// Also trusts these certificates (DER) for relays and the pkarr server,
    /// beside the usual web roots: for a self-hosted relay whose
    /// certificate no public authority signed.
    pub fn relay_ca(mut self, certs: Vec<Vec<u8>>) -> Self {
        self.relay_ca = certs;
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

    /// Sets the cipher of new blob files at rest (default:
    /// [`BlobCipher::for_this_machine`]).
    pub fn blob_cipher(mut self, cipher: BlobCipher) -> Self {
        self.blob_cipher = cipher;
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
        let blob_cipher = self.blob_cipher;
        let join = self.join.clone();
        let cache_settings = self.cache;
        let cache_keep = self.cache_keep.clone();
        let eager_blob_size = self.eager_blob_size;
        let (gate, sightings) = Gate::new();
        let admission = Arc::new(gate.clone());
        let shared = tokio::task::spawn_blocking(move || -> Result<_> {
            let identity = match &join {
                Some(invite) => Identity::join(&data_dir, &invite.cert)?,
                None => Identity::load_or_create(&data_dir)?,
            };
            let store = Store::open(
                data_dir.join("store"),
                StoreOptions::new(identity.device())
                    .durability(durability)
                    .blob_cipher(blob_cipher),
            )?;
            let cache = FriendCache::open(&store, &identity.namespace, cache_settings, cache_keep)?;
            Shared::open(store, identity, cache, admission, eager_blob_size)
        })
        .await
        .map_err(|e| Error::Protocol(format!("start-up task failed: {e}")))??;
        let shared = Arc::new(shared);
        let identity = &shared.identity;
        let (requests_tx, requests_rx) = tokio::sync::mpsc::channel(REQUEST_CAPACITY);
        let lookup = MemoryLookup::new();
        let secret = SecretKey::from_bytes(&identity.device_key.to_bytes());
        // The port used last, where free: friends' tickets and learnt
        // addresses then still lead here after a restart.
        let kept = if self.bind.is_none() {
            read_port(&self.data_dir)
        } else {
            None
        };
        let endpoint = match kept {
            Some(port) => match self
                .bind_endpoint(Some(port), &secret, &lookup, &gate)
                .await
            {
                Ok(ep) => ep,
                Err(e) => {
                    tracing::info!(port, %e, "the port used last is taken; listening on another");
                    self.bind_endpoint(None, &secret, &lookup, &gate).await?
                }
            },
            None => self.bind_endpoint(None, &secret, &lookup, &gate).await?,
        };
        if let Some(port) = endpoint.bound_sockets().first().map(SocketAddr::port) {
            write_port(&self.data_dir, port);
        }
        let gossip = iroh_gossip::Gossip::builder()
            .max_message_size(self.gossip_max_message_size)
            .spawn(endpoint.clone());
        let kith_transport = self.congestion.kith_transport();
        let connections = Arc::new(Connections::new(
            endpoint.clone(),
            gate,
            self.connect_timeout,
            kith_transport.clone(),
        ));
        let protocol = SyncProtocol::new(
            shared.clone(),
            PeerBudgets::new(self.peer_limits),
            requests_tx.clone(),
        );
        protocol.pair(&connections);
        let acceptor = Acceptor::spawn(
            endpoint.clone(),
            protocol,
            gossip.clone(),
            endpoint
                .create_server_config_builder(vec![ALPN.to_vec()])
                .set_transport_config(kith_transport)
                .build(),
        );
        // Gossip finds peers by id: give it every address known.
        for (device, addrs) in shared.known_addresses() {
            if !addrs.is_empty()
                && let Ok(addr) = net::addrs::endpoint_addr(&device, &addrs)
            {
                lookup.add_endpoint_info(addr);
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
                },
                requests_tx,
            )
        });
        let node = Node {
            inner: Arc::new(Inner {
                shared,
                downloads: Downloads::default(),
                endpoint,
                acceptor,
                lookup,
                settings: Settings {
                    relays: match &self.network {
                        NetworkMode::InternetWithRelays(r)
                        | NetworkMode::Custom { relays: r, .. } => {
                            r.iter().map(ToString::to_string).collect()
                        }
                        _ => Vec::new(),
                    },
                    connection_idle: self.connection_idle,
                    eager_blob_size: self.eager_blob_size,
                    resync_interval: self.resync_interval,
                    connect_timeout: self.connect_timeout,
                },
                subscriptions: Mutex::new(HashMap::new()),
                connections,
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
        tasks.push(tokio::spawn(Node::remember_sightings(
            Arc::downgrade(&node.inner),
            sightings,
        )));
        tasks.push(tokio::spawn(Node::follow_own_addresses(
            Arc::downgrade(&node.inner),
            self.tell_back,
        )));
        tasks.push(tokio::spawn(Node::follow_moves(Arc::downgrade(
            &node.inner,
        ))));
        tasks.push(tokio::spawn(Node::keep_cache(Arc::downgrade(&node.inner))));
        if node.inner.live.is_some() {
            tasks.push(tokio::spawn(Node::deliver_owed(Arc::downgrade(
                &node.inner,
            ))));
        }
        *node.inner.tasks.lock() = Some(tasks);
        if let Some(invite) = &self.join {
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
        if node.inner.live.is_some() && self.tell_back {
            node.inner
                .spawn_tracked(Node::announce(Arc::downgrade(&node.inner)));
        }
        Ok(node)
    }
}

impl Builder {
    /// Binds the endpoint, on `port` if given (else on the configured
    /// address, or any port).
    async fn bind_endpoint(
        &self,
        port: Option<u16>,
        secret: &SecretKey,
        lookup: &MemoryLookup,
        gate: &Gate,
    ) -> Result<Endpoint> {
        let builder = match &self.network {
            NetworkMode::LocalOnly => Endpoint::builder(presets::Minimal)
                .relay_mode(RelayMode::Disabled)
                .clear_ip_transports()
                .bind_addr(
                    self.bind
                        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], port.unwrap_or(0)))),
                )
                .map_err(Error::network)?
                .portmapper_config(PortmapperConfig::Disabled),
            NetworkMode::Internet
            | NetworkMode::InternetWithRelays(_)
            | NetworkMode::Custom { .. } => {
                let mut b = match &self.network {
                    NetworkMode::Custom { relays, pkarr } => {
                        let mut b =
                            Endpoint::builder(presets::Minimal).relay_mode(if relays.is_empty() {
                                RelayMode::Disabled
                            } else {
                                RelayMode::Custom(relays.iter().cloned().collect())
                            });
                        if let Some(pkarr) = pkarr {
                            let url: url::Url = pkarr.parse().map_err(|e| {
                                Error::Network(format!("pkarr server {pkarr:?}: {e}"))
                            })?;
                            b = b
                                .address_lookup(
                                    PkarrPublisher::builder(url.clone())
                                        .addr_filter(AddrFilter::unfiltered()),
                                )
                                .address_lookup(PkarrResolver::builder(url));
                        }
                        b
                    }
                    NetworkMode::InternetWithRelays(urls) => Endpoint::builder(presets::N0)
                        .relay_mode(RelayMode::Custom(urls.iter().cloned().collect())),
                    _ => Endpoint::builder(presets::N0),
                };
                if !self.relay_ca.is_empty() {
                    let extra = self
                        .relay_ca
                        .iter()
                        .map(|der| rustls_pki_types::CertificateDer::from(der.clone()));
                    b = b.ca_tls_config(iroh::tls::CaTlsConfig::embedded().with_extra_roots(extra));
                }
                if let Some(addr) = self.bind {
                    b = b
                        .clear_ip_transports()
                        .bind_addr(addr)
                        .map_err(Error::network)?;
                } else if let Some(port) = port {
                    b = b
                        .clear_ip_transports()
                        .bind_addr(SocketAddr::from(([0, 0, 0, 0], port)))
                        .map_err(Error::network)?
                        .bind_addr_with_opts(
                            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
                            iroh::endpoint::BindOpts::default().set_is_required(false),
                        )
                        .map_err(Error::network)?;
                }
                b
            }
        };
        builder
            .transport_config(self.congestion.endpoint_transport())
            .secret_key(secret.clone())
            .address_lookup(lookup.clone())
            .hooks(gate.clone())
            .alpns(vec![ALPN.to_vec(), iroh_gossip::ALPN.to_vec()])
            .bind()
            .await
            .map_err(Error::network)
    }
}

/// The file in the data folder that keeps the endpoint's last port.
const PORT_FILE: &str = "port";

/// The port the endpoint used last, if recorded (a damaged file is
/// ignored: any port will do).
fn read_port(data_dir: &std::path::Path) -> Option<u16> {
    let text = std::fs::read_to_string(data_dir.join(PORT_FILE)).ok()?;
    match text.trim().parse::<u16>() {
        Ok(0) => None,
        Ok(port) => Some(port),
        Err(_) => {
            tracing::warn!("ignoring a damaged port file in the data folder");
            None
        }
    }
}

/// Records the endpoint's port for the next start.
fn write_port(data_dir: &std::path::Path, port: u16) {
    if read_port(data_dir) == Some(port) {
        return;
    }
    let tmp = data_dir.join(format!("{PORT_FILE}.tmp"));
    let done = std::fs::write(&tmp, format!("{port}\n"))
        .and_then(|()| std::fs::rename(&tmp, data_dir.join(PORT_FILE)));
    if let Err(e) = done {
        tracing::warn!(%e, "could not record the endpoint's port");
    }
}

impl Node {
    /// A builder for a node keeping its data in `data_dir`.
    pub fn builder(data_dir: impl Into<PathBuf>) -> Builder {
        Builder::new(data_dir)
    }
}
