//! How the CLI reaches a data folder: through the running daemon's HTTP
//! API when there is one, otherwise through the same API served in this
//! process over a node opened on the folder (without a listening socket).
//! Either way every command goes through one code path, the API.

use std::net::SocketAddr;
use std::path::Path as FsPath;
use std::time::Duration;

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

/// A way to the API of one data folder.
pub struct Client {
    token: String,
    kind: Kind,
}

enum Kind {
    Daemon {
        addr: SocketAddr,
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
        let reachable = matches!(
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(info.http)).await,
            Ok(Ok(_))
        );
        if !reachable {
            let _ = std::fs::remove_file(data.join(daemon::DAEMON_FILE));
            return Ok(None);
        }
        Ok(Some(Self {
            token: daemon::token(data)?,
            kind: Kind::Daemon {
                addr: info.http,
                http: Box::new(HyperClient::builder(TokioExecutor::new()).build_http()),
            },
        }))
    }

    /// The daemon of `data` if it runs, else the API in this process over a
    /// node opened on `data` (loopback only).
    ///
    /// # Errors
    /// [`Error::Unavailable`] if the folder holds no identity yet, node
    /// start-up errors.
    pub async fn connect(data: &FsPath) -> Result<Self> {
        if let Some(c) = Self::daemon(data).await? {
            return Ok(c);
        }
        if !daemon::has_identity(data) {
            return Err(Error::Unavailable(format!(
                "{} holds no kith identity yet; run `kith init` first",
                data.display()
            )));
        }
        Self::in_process(data).await
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
            },
            stop.clone(),
        );
        Ok(Self {
            token,
            kind: Kind::InProcess { router, node, stop },
        })
    }

    /// A client of a daemon at `addr` with `token` (for tests and tools).
    pub fn remote(addr: SocketAddr, token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            kind: Kind::Daemon {
                addr,
                http: Box::new(HyperClient::builder(TokioExecutor::new()).build_http()),
            },
        }
    }

    /// Whether this talks to a running daemon.
    pub fn is_daemon(&self) -> bool {
        matches!(self.kind, Kind::Daemon { .. })
    }

    /// Sends a request (its URI a path such as `/api/id`), with the token.
    ///
    /// # Errors
    /// [`Error::Unavailable`] if the daemon stopped answering.
    pub async fn send(&self, mut req: Request<Body>) -> Result<Response<Body>> {
        let auth = format!("Bearer {}", self.token);
        if let Ok(v) = auth.parse() {
            req.headers_mut().insert(header::AUTHORIZATION, v);
        }
        match &self.kind {
            Kind::Daemon { addr, http } => {
                let uri = format!("http://{addr}{}", req.uri());
                *req.uri_mut() = uri
                    .parse()
                    .map_err(|e| Error::BadInput(format!("bad request path: {e}")))?;
                let res = http.request(req).await.map_err(|e| {
                    Error::Unavailable(format!("the daemon at {addr} did not answer: {e}"))
                })?;
                Ok(res.map(Body::new))
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

    /// Stops the node of an in-process client.
    ///
    /// # Errors
    /// Store errors while flushing.
    pub async fn close(self) -> Result<()> {
        if let Kind::InProcess { node, stop, .. } = self.kind {
            stop.cancel();
            node.shutdown().await?;
        }
        Ok(())
    }
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
