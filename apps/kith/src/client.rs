//! How the CLI reaches a data folder: through the running daemon's HTTP
//! API when there is one, otherwise through the same API served in this
//! process over a node opened on the folder (without a listening socket).
//! Either way every command goes through one code path, the API.
//!
//! A command never loses a race with a daemon: while a daemon is starting
//! (it holds the folder's daemon lock but does not answer yet) or another
//! command holds the store, [`Client::connect`] waits for it, bounded by
//! [`daemon::STORE_WAIT`], saying so once on stderr. Nor does it wait
//! forever on a daemon that is gone: a `daemon.json` whose lock no process
//! holds is stale, and a request waiting for an answer checks every second
//! that its daemon still runs and goes another way a few seconds after it
//! is seen gone, even if its connection stayed open.

use std::net::SocketAddr;
use std::path::Path as FsPath;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kith::Node;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::daemon::{self, ServeOptions};
use crate::error::{Error, Result};
use crate::http::{self, ApiConfig};

/// How long to wait for a daemon's port to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request body kept to be sent again another way.
const REPLAYABLE_BODY: u64 = 1 << 20;
/// How often a request waiting for the daemon's answer checks that the
/// daemon still runs.
const DAEMON_CHECK: Duration = Duration::from_secs(1);
/// How long a request still waits for its answer once the daemon it went
/// to is seen gone: a stopping daemon finishes the requests it holds within
/// a few seconds and then closes their connections.
const DAEMON_GONE_GRACE: Duration = Duration::from_secs(5);

/// A way to the API of one data folder.
pub struct Client {
    token: String,
    kind: Kind,
    /// The data folder, for a client that can fall back to another way.
    data: Option<std::path::PathBuf>,
    /// The way taken after the daemon stopped before a request reached it.
    fallback: tokio::sync::OnceCell<Box<Client>>,
}

enum Kind {
    Daemon {
        addr: SocketAddr,
        /// The daemon's process, as its `daemon.json` said (none for a
        /// [`Client::remote`]).
        pid: Option<u32>,
        http: Box<HyperClient<HttpConnector, Body>>,
    },
    InProcess {
        router: Router,
        node: Node,
        stop: CancellationToken,
    },
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Daemon { addr, .. } => write!(f, "Client(daemon at {addr})"),
            Kind::InProcess { node, .. } => write!(f, "Client(in process, {node:?})"),
        }
    }
}

impl Client {
    /// The running daemon of `data`, if one answers. A stale `daemon.json`
    /// (nothing listening any more) is removed.
    ///
    /// # Errors
    /// [`Error::Io`] reading the token.
    pub async fn daemon(data: &FsPath) -> Result<Option<Self>> {
        let Some(info) = daemon::daemon_info(data) else {
            return Ok(None);
        };
        // A daemon holds the folder's lock as long as it runs: without it,
        // whatever answers at the address is not this folder's daemon.
        let reachable = daemon::daemon_holds(data)
            && matches!(
                tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(info.http))
                    .await,
                Ok(Ok(_))
            );
        if !reachable {
            tracing::debug!(addr = %info.http, pid = info.pid, "daemon.json is stale");
            // Only the file read here: a daemon starting meanwhile may
            // have written its own.
            if daemon::daemon_info(data).is_some_and(|now| now == info) {
                let _ = std::fs::remove_file(data.join(daemon::DAEMON_FILE));
            }
            return Ok(None);
        }
        tracing::debug!(addr = %info.http, pid = info.pid, "going through the daemon");
        Ok(Some(Self {
            token: daemon::token(data)?,
            kind: Kind::Daemon {
                addr: info.http,
                pid: Some(info.pid),
                http: http_client(),
            },
            data: Some(data.to_path_buf()),
            fallback: tokio::sync::OnceCell::new(),
        }))
    }

    /// The daemon of `data` if it runs, else the API in this process over a
    /// node opened on `data` (loopback only). Waits for a daemon that is
    /// starting, and for another command to release the store.
    ///
    /// # Errors
    /// [`Error::Unavailable`] if the folder holds no identity yet, or the
    /// store stayed in use for [`daemon::STORE_WAIT`]; node start-up errors.
    pub async fn connect(data: &FsPath) -> Result<Self> {
        Self::open(data, true).await
    }

    /// Like [`Client::connect`]; with `need_identity` false, a folder
    /// without an identity gets one (`kith init`).
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub async fn open(data: &FsPath, need_identity: bool) -> Result<Self> {
        let deadline = Instant::now() + daemon::STORE_WAIT;
        let mut said = false;
        loop {
            if let Some(c) = Self::daemon(data).await? {
                return Ok(c);
            }
            let starting = daemon::daemon_holds(data);
            if !starting {
                if need_identity && !daemon::has_identity(data) {
                    return Err(Error::Unavailable(format!(
                        "{} holds no kith identity yet; run `kith init` first",
                        data.display()
                    )));
                }
                match Self::in_process(data).await {
                    Err(e) if daemon::is_store_locked(&e) => {
                        tracing::debug!("the store is held by another process");
                    }
                    other => {
                        tracing::debug!(ok = other.is_ok(), "in process");
                        return other;
                    }
                }
            }
            let holder = if starting {
                format!("a kith daemon is starting for {}", data.display())
            } else {
                format!(
                    "another kith command is using the store in {}",
                    data.display()
                )
            };
            let wait = daemon::STORE_WAIT.as_secs();
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(format!(
                    "{holder}, still after {wait} s; try again once it is free"
                )));
            }
            if !said {
                eprintln!("{holder}; waiting for it (up to {wait} s)");
                said = true;
            }
            tokio::time::sleep(daemon::STORE_RETRY).await;
        }
    }

    /// The API in this process over a node opened on `data`.
    ///
    /// # Errors
    /// Node start-up errors.
    pub async fn in_process(data: &FsPath) -> Result<Self> {
        let mut options = ServeOptions::new(data);
        options.local_only = true;
        options.announce = false;
        let token = daemon::token(data)?;
        let node = daemon::start_node(&options).await?;
        let stop = CancellationToken::new();
        let router = http::router(
            node.clone(),
            ApiConfig {
                token: token.clone(),
                headless: true,
                max_json_body: options.max_json_body,
                // No browser reaches the in-process API.
                cookie: http::token_cookie(0),
                hosts: None,
                origins_file: Some(data.join(crate::origins::ORIGINS_FILE)),
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
        Ok(Self {
            token,
            kind: Kind::InProcess { router, node, stop },
            data: Some(data.to_path_buf()),
            fallback: tokio::sync::OnceCell::new(),
        })
    }

    /// A client of a daemon at `addr` with `token` (for tests and tools).
    pub fn remote(addr: SocketAddr, token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            kind: Kind::Daemon {
                addr,
                pid: None,
                http: http_client(),
            },
            data: None,
            fallback: tokio::sync::OnceCell::new(),
        }
    }

    /// Whether this talks to a running daemon.
    pub fn is_daemon(&self) -> bool {
        matches!(self.kind, Kind::Daemon { .. })
    }

    /// Sends a request (its URI a path such as `/api/id`), with the token.
    /// If the daemon stopped before the request reached it (its port
    /// refuses connections), the request goes the way [`Client::connect`]
    /// finds now, and so do later ones.
    ///
    /// # Errors
    /// [`Error::Unavailable`] if the daemon stopped answering.
    pub async fn send(&self, mut req: Request<Body>) -> Result<Response<Body>> {
        if let Some(other) = self.fallback.get() {
            return Box::pin(other.send(req)).await;
        }
        let auth = format!("Bearer {}", self.token);
        if let Ok(v) = auth.parse() {
            req.headers_mut().insert(header::AUTHORIZATION, v);
        }
        match &self.kind {
            Kind::Daemon { addr, pid, http } => {
                let uri = format!("http://{addr}{}", req.uri());
                *req.uri_mut() = uri
                    .parse()
                    .map_err(|e| Error::BadInput(format!("bad request path: {e}")))?;
                // A small body is kept, so that the request can go another
                // way if the daemon turns out to have stopped; a streamed
                // upload cannot be sent twice.
                let small = axum::body::HttpBody::size_hint(req.body())
                    .exact()
                    .is_some_and(|n| n <= REPLAYABLE_BODY);
                let (parts, body) = req.into_parts();
                let idempotent = matches!(
                    parts.method,
                    Method::GET | Method::HEAD | Method::PUT | Method::DELETE
                );
                let (first, replay) = if small {
                    let bytes = read_request_body(body).await?;
                    let replay = Request::from_parts(parts.clone(), Body::from(bytes.clone()));
                    (Request::from_parts(parts, Body::from(bytes)), Some(replay))
                } else {
                    (Request::from_parts(parts, body), None)
                };
                let answer = match (self.data.as_deref(), *pid) {
                    (Some(data), Some(pid)) => tokio::select! {
                        answer = http.request(first) => answer.map_err(Failed::Http),
                        () = daemon_gone(data, pid) => Err(Failed::Gone),
                    },
                    _ => http.request(first).await.map_err(Failed::Http),
                };
                match (answer, replay, self.data.as_deref()) {
                    (Ok(res), _, _) => Ok(res.map(Body::new)),
                    // The daemon stopped: before the request reached it, or
                    // (for a request that may be repeated) before it answered.
                    (Err(e), Some(again), Some(data)) if e.is_connect() || idempotent => {
                        tracing::debug!(%addr, error = %e, "the daemon stopped; going another way");
                        let other = self
                            .fallback
                            .get_or_try_init(|| async { Self::connect(data).await.map(Box::new) })
                            .await?;
                        Box::pin(other.send(again)).await
                    }
                    (Err(e), _, _) => Err(Error::Unavailable(format!(
                        "the daemon at {addr} did not answer: {e}"
                    ))),
                }
            }
            Kind::InProcess { router, .. } => match router.clone().oneshot(req).await {
                Ok(res) => Ok(res),
                Err(never) => match never {},
            },
        }
    }

    /// Sends a request with an optional JSON body and decodes the JSON
    /// answer; an error answer becomes [`Error::Remote`].
    ///
    /// # Errors
    /// [`Error::Remote`], transport errors.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T> {
        let mut builder = Request::builder().method(method).uri(path);
        let body = match body {
            Some(v) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(v).map_err(|e| Error::BadInput(e.to_string()))?)
            }
            None => Body::empty(),
        };
        let req = builder
            .body(body)
            .map_err(|e| Error::BadInput(format!("bad request: {e}")))?;
        self.send_for_json(req).await
    }

    /// Sends a request and decodes the JSON answer; an error answer becomes
    /// [`Error::Remote`].
    ///
    /// # Errors
    /// [`Error::Remote`], transport errors.
    pub async fn send_for_json<T: DeserializeOwned>(&self, req: Request<Body>) -> Result<T> {
        let res = self.send(req).await?;
        let status = res.status();
        let bytes = read_body(res).await?;
        decode(status, &bytes)
    }

    /// Sends `GET uri` and returns the answer with its body unread (a file,
    /// an event stream); an error answer becomes [`Error::Remote`].
    ///
    /// # Errors
    /// [`Error::Remote`], transport errors.
    pub async fn get(&self, uri: &str) -> Result<Response<Body>> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .body(Body::empty())
            .map_err(|e| Error::BadInput(format!("bad request: {e}")))?;
        let res = self.send(req).await?;
        let status = res.status();
        if !status.is_success() {
            let bytes = read_body(res).await?;
            return Err(remote_error(status, &bytes));
        }
        Ok(res)
    }

    /// Stops the node of an in-process client.
    ///
    /// # Errors
    /// Store errors while flushing.
    pub async fn close(self) -> Result<()> {
        if let Some(other) = self.fallback.into_inner() {
            Box::pin(other.close()).await?;
        }
        if let Kind::InProcess { node, stop, .. } = self.kind {
            stop.cancel();
            node.shutdown().await?;
        }
        Ok(())
    }
}

/// The HTTP client to a daemon: a connection that is not made within
/// [`CONNECT_TIMEOUT`] fails (as one refused does) rather than waiting for
/// the system's own timeout of minutes.
fn http_client() -> Box<HyperClient<HttpConnector, Body>> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    Box::new(HyperClient::builder(TokioExecutor::new()).build(connector))
}

/// Why a request to the daemon got no answer.
#[derive(Debug)]
enum Failed {
    /// The connection failed or broke.
    Http(hyper_util::client::legacy::Error),
    /// The daemon's process is gone (or another daemon replaced it) and the
    /// connection did not say so within [`DAEMON_GONE_GRACE`].
    Gone,
}

impl Failed {
    /// Whether the request cannot have reached the daemon.
    fn is_connect(&self) -> bool {
        match self {
            Self::Http(e) => e.is_connect(),
            Self::Gone => false,
        }
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(e) => write!(f, "{e}"),
            Self::Gone => write!(
                f,
                "the daemon stopped while the request waited for its answer"
            ),
        }
    }
}

/// Ends once the daemon `pid` of `data` no longer runs (no daemon holds the
/// folder, or `daemon.json` names another process) and
/// [`DAEMON_GONE_GRACE`] has passed since; never while it runs. A request
/// waiting for an answer from a daemon that is gone would otherwise wait
/// as long as its connection stays open, which the system does not bound.
async fn daemon_gone(data: &FsPath, pid: u32) {
    let runs =
        || daemon::daemon_holds(data) && daemon::daemon_info(data).is_none_or(|i| i.pid == pid);
    loop {
        tokio::time::sleep(DAEMON_CHECK).await;
        if !runs() {
            tokio::time::sleep(DAEMON_GONE_GRACE).await;
            if !runs() {
                tracing::warn!(
                    pid,
                    "the daemon stopped without closing the connection of a request"
                );
                return;
            }
        }
    }
}

/// Reads a whole request body (requests to the API are small: JSON or
/// one file to upload).
async fn read_request_body(body: Body) -> Result<Bytes> {
    Ok(body
        .collect()
        .await
        .map_err(|e| Error::BadInput(format!("the request body broke off: {e}")))?
        .to_bytes())
}

/// Reads a whole response body.
///
/// # Errors
/// [`Error::Unavailable`] if the connection broke.
pub async fn read_body(res: Response<Body>) -> Result<Bytes> {
    Ok(res
        .into_body()
        .collect()
        .await
        .map_err(|e| Error::Unavailable(format!("the answer broke off: {e}")))?
        .to_bytes())
}

/// Decodes an answer: JSON for success (an empty body as `null`), the
/// error object otherwise.
///
/// # Errors
/// [`Error::Remote`] for an error status.
pub fn decode<T: DeserializeOwned>(status: StatusCode, bytes: &[u8]) -> Result<T> {
    if !status.is_success() {
        return Err(remote_error(status, bytes));
    }
    let bytes: &[u8] = if bytes.is_empty() { b"null" } else { bytes };
    serde_json::from_slice(bytes)
        .map_err(|e| Error::BadInput(format!("unexpected answer from the API: {e}")))
}

/// The [`Error::Remote`] for an error answer.
pub fn remote_error(status: StatusCode, bytes: &[u8]) -> Error {
    let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    Error::Remote {
        status: status.as_u16(),
        code: v["code"].as_str().unwrap_or("unknown").to_string(),
        message: v["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("the API answered {status}")),
    }
}
