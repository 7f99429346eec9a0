//! `kith serve`: the node, the HTTP API and the page, for one data folder.
//!
//! A running daemon announces itself in `<data>/daemon.json` (its HTTP
//! address and process id) so that the CLI talks to it instead of opening
//! the store, which only one process may hold. The access token lives in
//! `<data>/http-token` (mode 0600), created on first use.
//!
//! From before it opens the store until it exits, a daemon holds an
//! exclusive lock on `<data>/daemon.lock` (released by the system even
//! when the process is killed). A command that finds the lock held but no
//! daemon answering knows one is starting and waits for it; a daemon that
//! finds the store held by a short-lived command waits for it to finish.
//! Both waits are bounded by [`STORE_WAIT`] and say what they wait for.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};

use rustls_pki_types::pem::PemObject;
use std::time::{Duration, Instant};

use kith::{NetworkMode, Node};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::files::write_private;
use crate::http::{self, ApiConfig};
use crate::timeline;

/// The discovery file of a running daemon.
pub const DAEMON_FILE: &str = "daemon.json";
/// The lock a daemon holds on its data folder while it runs.
pub const LOCK_FILE: &str = "daemon.lock";
/// The access token file.
pub const TOKEN_FILE: &str = "http-token";
/// How long a daemon waits for a command to release the store, and a
/// command for a starting daemon (or another command) to.
pub const STORE_WAIT: Duration = Duration::from_secs(30);
/// How often the store (or a starting daemon) is looked at again meanwhile.
pub const STORE_RETRY: Duration = Duration::from_millis(100);
/// The HTTP address `kith serve` uses by default.
pub const DEFAULT_HTTP: &str = "127.0.0.1:7780";
/// How long open connections (live event streams) may take to close at
/// shutdown.
const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How long a client may take to send a request's header.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What `<data>/daemon.json` says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DaemonInfo {
    /// Where the HTTP API answers.
    pub http: SocketAddr,
    /// The daemon's process id.
    pub pid: u32,
}

/// Reads `<data>/daemon.json`, if there is one (it may be stale).
pub fn daemon_info(data: &FsPath) -> Option<DaemonInfo> {
    let text = std::fs::read_to_string(data.join(DAEMON_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The lock of a running (or starting) daemon on its data folder; released
/// on drop, and by the system when the process ends in any way.
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
}

/// How long a starting daemon tries again to take a lock it found held: a
/// command asking whether a daemon runs ([`daemon_holds`]) holds it, shared,
/// for an instant, and must not stop a daemon from starting.
const LOCK_GRACE: Duration = Duration::from_secs(1);
/// How often it tries meanwhile.
const LOCK_RETRY: Duration = Duration::from_millis(5);

impl DaemonLock {
    /// Takes the lock of `data`, or `None` if another daemon holds it (it
    /// stayed held for [`LOCK_GRACE`]).
    ///
    /// # Errors
    /// [`Error::Io`] if the lock file cannot be opened.
    pub async fn acquire(data: &FsPath) -> Result<Option<Self>> {
        std::fs::create_dir_all(data)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(data.join(LOCK_FILE))?;
        let deadline = Instant::now() + LOCK_GRACE;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(Self { _file: file })),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    tokio::time::sleep(LOCK_RETRY).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
            }
        }
    }
}

/// Whether a daemon holds `data`'s lock: it is starting, running or
/// stopping.
pub fn daemon_holds(data: &FsPath) -> bool {
    let Ok(file) = File::open(data.join(LOCK_FILE)) else {
        return false;
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(_)) => false,
    }
}

/// Whether `e` says the store is open in another process.
pub fn is_store_locked(e: &Error) -> bool {
    matches!(e, Error::Node(kith::Error::Store(s)) if matches!(**s, kith::store::Error::Locked(_)))
}

/// Whether `data` holds an identity (`kith init` ran, or a node started).
pub fn has_identity(data: &FsPath) -> bool {
    data.join("identity").join("device.cert").exists()
}

/// The access token of `data`, created (mode 0600) if missing.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read or written.
pub fn token(data: &FsPath) -> Result<String> {
    let path = data.join(TOKEN_FILE);
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    std::fs::create_dir_all(data)?;
    let mut bytes = [0u8; 24];
    rand::fill(&mut bytes);
    let token = data_encoding::HEXLOWER.encode(&bytes);
    write_private(&path, token.as_bytes())?;
    Ok(token)
}

/// Which relays and discovery a node uses, from `kith serve`'s flags and
/// the data folder's `config.toml` (flags win):
///
/// ```toml
/// relays = ["https://relay.example.org/"]
/// relay_ca = "relay-cert.pem"   # relative to the data folder
/// discovery = "https://dns.example.org/pkarr"   # or "none"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Relays to use instead of iroh's public ones.
    pub relays: Vec<String>,
    /// Extra certificates (DER) trusted for relays and discovery.
    pub relay_ca: Vec<Vec<u8>>,
    /// The pkarr server for lookups by key (`Some("none")`: no lookups).
    pub discovery: Option<String>,
    /// The QUIC connections' congestion control.
    pub congestion: kith::CongestionControl,
}

/// The data folder's network settings file.
pub const CONFIG_FILE: &str = "config.toml";

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    relays: Vec<String>,
    relay_ca: Option<PathBuf>,
    discovery: Option<String>,
    congestion: Option<String>,
}

impl NetworkConfig {
    /// The settings for `data`: the flags given, else `config.toml`'s.
    ///
    /// # Errors
    /// [`Error::BadInput`] for a damaged `config.toml`, a relay URL or
    /// certificate that cannot be used.
    pub fn load(
        data: &FsPath,
        relays: Vec<String>,
        relay_ca: Option<PathBuf>,
        discovery: Option<String>,
        congestion: Option<String>,
    ) -> Result<Self> {
        let path = data.join(CONFIG_FILE);
        let file: ConfigFile = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| Error::BadInput(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ConfigFile::default(),
            Err(e) => {
                return Err(Error::BadInput(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        let relays = if relays.is_empty() {
            file.relays
        } else {
            relays
        };
        for r in &relays {
            r.parse::<kith::RelayUrl>()
                .map_err(|e| Error::BadInput(format!("relay {r:?}: {e}")))?;
        }
        let ca = relay_ca.or_else(|| {
            file.relay_ca
                .map(|p| if p.is_absolute() { p } else { data.join(p) })
        });
        let relay_ca = match ca {
            Some(p) => {
                let certs: Vec<Vec<u8>> = rustls_pki_types::CertificateDer::pem_file_iter(&p)
                    .and_then(|i| {
                        i.map(|c| c.map(|c| c.to_vec()))
                            .collect::<std::result::Result<_, _>>()
                    })
                    .map_err(|e| Error::BadInput(format!("cannot read {}: {e}", p.display())))?;
                if certs.is_empty() {
                    return Err(Error::BadInput(format!(
                        "{} holds no certificate",
                        p.display()
                    )));
                }
                certs
            }
            None => Vec::new(),
        };
        let congestion = match congestion.or(file.congestion).as_deref() {
            None | Some("auto") => kith::CongestionControl::Auto,
            Some("cubic") => kith::CongestionControl::Cubic,
            Some("bbr") => kith::CongestionControl::Bbr,
            Some(other) => {
                return Err(Error::BadInput(format!(
                    "congestion control {other:?}: choose auto, cubic or bbr"
                )));
            }
        };
        Ok(Self {
            relays,
            relay_ca,
            discovery: discovery.or(file.discovery),
            congestion,
        })
    }

    /// The node's network mode for these settings.
    ///
    /// # Errors
    /// [`Error::BadInput`] for a relay URL that cannot be used.
    pub fn mode(&self) -> Result<NetworkMode> {
        let relays = self
            .relays
            .iter()
            .map(|r| {
                r.parse::<kith::RelayUrl>()
                    .map_err(|e| Error::BadInput(format!("relay {r:?}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(match (&self.discovery, relays.is_empty()) {
            (None, true) => NetworkMode::Internet,
            (None, false) => NetworkMode::InternetWithRelays(relays),
            (Some(d), _) => NetworkMode::Custom {
                relays,
                pkarr: (d != "none").then(|| d.clone()),
            },
        })
    }
}

/// How to run a daemon.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The data folder.
    pub data: PathBuf,
    /// Where the node's endpoint listens (default: any port).
    pub listen: Option<SocketAddr>,
    /// Where the HTTP API listens (port 0: any free port).
    pub http: SocketAddr,
    /// Loopback only: no relays, no outside lookups.
    pub local_only: bool,
    /// Relays, their certificates and discovery (else iroh's defaults).
    pub network: NetworkConfig,
    /// Serve no web page.
    pub headless: bool,
    /// How often subscriptions re-sync (default: the engine's).
    pub resync: Option<Duration>,
    /// Largest JSON request body.
    pub max_json_body: usize,
    /// Write `daemon.json` so that the CLI finds this daemon.
    pub announce: bool,
}

impl ServeOptions {
    /// Defaults for `data`: loopback HTTP on any port, internet mode.
    pub fn new(data: impl Into<PathBuf>) -> Self {
        Self {
            data: data.into(),
            listen: None,
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            local_only: false,
            network: NetworkConfig::default(),
            headless: false,
            resync: None,
            max_json_body: http::DEFAULT_MAX_JSON_BODY,
            announce: true,
        }
    }
}

/// Starts a node on `options.data` (not its HTTP API). While another
/// process holds the store, it waits (up to [`STORE_WAIT`]) and tries
/// again, saying so once on stderr.
///
/// # Errors
/// Node start-up errors ([`Error::Unavailable`] if the store was still held
/// after [`STORE_WAIT`], the endpoint cannot bind …).
pub async fn start_node_waiting(options: &ServeOptions) -> Result<Node> {
    let deadline = Instant::now() + STORE_WAIT;
    let mut said = false;
    loop {
        match start_node(options).await {
            Err(e) if is_store_locked(&e) && Instant::now() < deadline => {
                if !said {
                    eprintln!(
                        "the store in {} is in use by another kith command; waiting for it to finish (up to {} s)",
                        options.data.display(),
                        STORE_WAIT.as_secs()
                    );
                    said = true;
                }
                tokio::time::sleep(STORE_RETRY).await;
            }
            Err(e) if is_store_locked(&e) => {
                return Err(Error::Unavailable(format!(
                    "the store in {} was still in use by another kith process after {} s; stop it (or let it finish) and try again",
                    options.data.display(),
                    STORE_WAIT.as_secs()
                )));
            }
            other => return other,
        }
    }
}

/// Starts a node on `options.data` (not its HTTP API), once.
///
/// # Errors
/// Node start-up errors (the store is open in another process, the
/// endpoint cannot bind …).
pub async fn start_node(options: &ServeOptions) -> Result<Node> {
    let mut builder = Node::builder(&options.data)
        .network(if options.local_only {
            NetworkMode::LocalOnly
        } else {
            options.network.mode()?
        })
        .cache_keep(crate::profile::kept_prefixes());
    if !options.local_only {
        builder = builder
            .relay_ca(options.network.relay_ca.clone())
            .congestion_control(options.network.congestion);
    }
    if let Some(addr) = options.listen {
        builder = builder.bind_addr(addr);
    }
    if let Some(resync) = options.resync {
        builder = builder.resync_interval(resync);
    }
    if !options.announce {
        // A node for one command: friends need not re-link to it.
        builder = builder.tell_devices_when_back(false);
    }
    builder.spawn().await.map_err(|e| match e {
        kith::Error::Store(s) if matches!(*s, kith::store::Error::Storage(_)) => {
            Error::Unavailable(format!(
                "the store in {} cannot be opened ({s})",
                options.data.display()
            ))
        }
        other => other.into(),
    })
}

/// A running daemon: node, HTTP API and page.
pub struct Daemon {
    node: Node,
    addr: SocketAddr,
    token: String,
    data: PathBuf,
    announce: bool,
    stop: CancellationToken,
    server: JoinHandle<()>,
    /// Keeps the timeline index up to date (see [`keep_timeline`]).
    indexer: JoinHandle<()>,
    _lock: Option<DaemonLock>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("addr", &self.addr)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Starts the node and the HTTP API, and announces the daemon. An
    /// announced daemon takes the folder's daemon lock first, and waits
    /// (bounded, saying so) while a short-lived command holds the store.
    ///
    /// # Errors
    /// [`Error::Conflict`] if another daemon runs (or starts) on the
    /// folder, node start-up errors, [`Error::Unavailable`] if the HTTP
    /// address cannot be bound.
    pub async fn start(options: ServeOptions) -> Result<Self> {
        let lock = if options.announce {
            match DaemonLock::acquire(&options.data).await? {
                Some(lock) => Some(lock),
                None => {
                    return Err(Error::Conflict(format!(
                        "a kith daemon already runs (or is starting) for {}",
                        options.data.display()
                    )));
                }
            }
        } else {
            None
        };
        let token = token(&options.data)?;
        let node = start_node_waiting(&options).await?;
        let listener = match tokio::net::TcpListener::bind(options.http).await {
            Ok(l) => l,
            Err(e) => {
                let _ = node.shutdown().await;
                return Err(Error::Unavailable(format!(
                    "cannot listen on {}: {e}",
                    options.http
                )));
            }
        };
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let router = http::router(
            node.clone(),
            ApiConfig {
                token: token.clone(),
                headless: options.headless,
                max_json_body: options.max_json_body,
                cookie: http::token_cookie(addr.port()),
                hosts: Some(http::hosts_for(addr)),
                origins_file: Some(options.data.join(crate::origins::ORIGINS_FILE)),
            },
            stop.clone(),
        );
        let router = match router {
            Ok(r) => r,
            Err(e) => {
                let _ = node.shutdown().await;
                return Err(e);
            }
        };
        let stopped = stop.clone();
        let server = tokio::spawn(serve_http(listener, router, stopped));
        let indexer = keep_timeline(&node, stop.clone());
        if options.announce {
            let info = DaemonInfo {
                http: addr,
                pid: std::process::id(),
            };
            let text = serde_json::to_vec_pretty(&info)
                .map_err(|e| Error::Io(std::io::Error::other(e)))?;
            write_private(&options.data.join(DAEMON_FILE), &text)?;
        }
        Ok(Self {
            node,
            addr,
            token,
            data: options.data,
            announce: options.announce,
            stop,
            server,
            indexer,
            _lock: lock,
        })
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Where the HTTP API answers.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The access token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The page URL, carrying the access token.
    pub fn page_url(&self) -> String {
        format!("http://{}/?token={}", self.addr, self.token)
    }

    /// Stops the HTTP API and the node and removes `daemon.json`.
    ///
    /// # Errors
    /// Store errors while flushing.
    pub async fn shutdown(self) -> Result<()> {
        if self.announce {
            // Only our own announcement: a newer daemon may have replaced it.
            if daemon_info(&self.data).is_some_and(|i| i.pid == std::process::id()) {
                let _ = std::fs::remove_file(self.data.join(DAEMON_FILE));
            }
        }
        self.stop.cancel();
        let mut server = self.server;
        if tokio::time::timeout(HTTP_SHUTDOWN_GRACE, &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
        // It stops after the batch it is writing.
        let _ = tokio::time::timeout(HTTP_SHUTDOWN_GRACE, self.indexer).await;
        self.node.shutdown().await?;
        Ok(())
    }
}

/// How often a long index build says how far it is.
const INDEX_PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// How often the timeline keeper looks for new friends to watch without
/// being woken by a change.
const INDEX_FRIENDS_EVERY: Duration = Duration::from_secs(30);

/// Keeps the timeline index up to date in the background, so pages rarely
/// have anything to catch up on themselves and a deleted post's path leaves
/// the index right after the deletion. At start it reads what arrived since
/// the last run; after an upgrade (or of a damaged index) it builds the
/// index from the change logs once, saying how far it is on stderr every
/// couple of seconds. Then it catches up after every burst of changes to
/// the own or a friend's namespace. Stops at `stop`, keeping what it wrote.
fn keep_timeline(node: &Node, stop: CancellationToken) -> JoinHandle<()> {
    let node = node.clone();
    tokio::spawn(async move {
        // Capacity 1: changes during a catch-up coalesce into one more.
        let (wake, mut woken) = tokio::sync::mpsc::channel::<()>(1);
        let mut watched = std::collections::HashSet::new();
        let mut first = true;
        let mut ticks = tokio::time::interval(INDEX_FRIENDS_EVERY);
        loop {
            // Watch before reading, so no change falls in between.
            let people = timeline::people(&node.namespace(), &node.friends());
            for ns in &people {
                if watched.insert(*ns) {
                    let mut watcher = node.watch(ns, &kith::Path::root());
                    let (wake, stop) = (wake.clone(), stop.clone());
                    tokio::spawn(async move {
                        loop {
                            tokio::select! {
                                ev = watcher.recv() => match ev {
                                    Some(_) => { let _ = wake.try_send(()); }
                                    None => return,
                                },
                                () = stop.cancelled() => return,
                            }
                        }
                    });
                }
            }
            let store = node.store().clone();
            let stopping = stop.clone();
            let verbose = std::mem::take(&mut first);
            let caught_up = tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let mut last_said = started;
                let mut said = false;
                let result = timeline::catch_up(&store, &people, &mut |p| {
                    if verbose && last_said.elapsed() >= INDEX_PROGRESS_EVERY {
                        eprintln!(
                            "indexing the timeline: {} changes read, {} of {} namespaces done",
                            p.changes, p.done, p.namespaces
                        );
                        last_said = Instant::now();
                        said = true;
                    }
                    !stopping.is_cancelled()
                });
                if let (Ok(p), true) = (&result, said) {
                    eprintln!(
                        "timeline index ready: {} changes in {:.1} s",
                        p.changes,
                        started.elapsed().as_secs_f64()
                    );
                }
                result
            })
            .await;
            match caught_up {
                Ok(Ok(_)) => {}
                // A page being read catches up itself; try again on the
                // next change.
                Ok(Err(e)) => tracing::warn!(error = %e, "could not update the timeline index"),
                Err(e) => tracing::warn!(error = %e, "the timeline index task failed"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                _ = woken.recv() => {}
                _ = ticks.tick() => {}
            }
        }
    })
}

/// Serves `router` on `listener` until `stop`, then lets open requests
/// finish. A client gets [`HEADER_READ_TIMEOUT`] to send each request's
/// header (an idle keep-alive connection as long), so one that opens
/// connections and sends nothing holds no resources for long.
async fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    stop: CancellationToken,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;

    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: try again soon.
                    tracing::warn!(%e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let service = TowerToHyperService::new(router.clone().map_request(
            |r: axum::http::Request<hyper::body::Incoming>| r.map(axum::body::Body::new),
        ));
        let stop = stop.clone();
        connections.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%e, "an HTTP connection ended with an error");
                    }
                }
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// The signals that stop a daemon: Ctrl-C (SIGINT) and, on Unix, SIGTERM
/// (what `kill PID` and service managers send). They are caught from
/// [`StopSignals::listen`] on, so one that arrives before
/// [`StopSignals::wait`] is kept rather than ending the process by the
/// signal's default action: listen before telling anyone (a printed line,
/// `daemon.json`) that the process is ready, so that a stop right after the
/// announcement is a clean one.
#[derive(Debug)]
pub struct StopSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Starts catching the stop signals (needs a Tokio runtime). A signal
    /// whose handler cannot be installed keeps its default action.
    pub fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// Waits until a stop signal came (at once if one came since
    /// [`StopSignals::listen`]).
    pub async fn wait(self) {
        #[cfg(unix)]
        {
            async fn next(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = next(self.interrupt) => {}
                () = next(self.terminate) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn load(dir: &FsPath, congestion: Option<&str>) -> Result<NetworkConfig> {
        NetworkConfig::load(dir, Vec::new(), None, None, congestion.map(str::to_string))
    }

    #[test]
    fn network_settings_come_from_flags_over_config_toml() {
        let dir = tempfile::tempdir().unwrap();
        let settings = load(dir.path(), None).unwrap();
        assert_eq!(settings.congestion, kith::CongestionControl::Auto);
        assert!(settings.relays.is_empty());
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "relays = [\"https://relay.example.org/\"]\ncongestion = \"bbr\"\n",
        )
        .unwrap();
        let settings = load(dir.path(), None).unwrap();
        assert_eq!(settings.congestion, kith::CongestionControl::Bbr);
        assert_eq!(
            settings.relays,
            vec!["https://relay.example.org/".to_string()]
        );
        let settings = load(dir.path(), Some("cubic")).unwrap();
        assert_eq!(settings.congestion, kith::CongestionControl::Cubic);
        let err = load(dir.path(), Some("reno")).unwrap_err().to_string();
        assert!(err.contains("choose auto, cubic or bbr"), "{err}");
        std::fs::write(dir.path().join(CONFIG_FILE), "congestoin = \"bbr\"\n").unwrap();
        let err = load(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
    }
}
