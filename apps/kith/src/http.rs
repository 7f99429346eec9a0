//! The local HTTP API (documented in `API.md`) and the page's static files.
//!
//! Every `/api` route needs the access token, as `Authorization: Bearer T`
//! or the `kith_token_PORT` cookie that `GET /?token=T` sets (named after
//! the daemon's port: browsers share cookies across ports of one host, so
//! two daemons' pages must not overwrite each other's). Requests whose
//! `Origin` is not this server are refused, so other pages can neither read
//! answers nor make changes, unless the person approved that origin
//! ([`crate::origins`]): then its own token, and only that, is accepted from
//! it, and the answers carry CORS headers naming exactly that origin (never
//! `*`). The pairing routes (`/api/pair…`) answer every origin, and only
//! record and hand over pairing requests. Errors are JSON `{ error, code }`;
//! [`ApiError`]'s `From<Error>` is the one place that maps errors to status
//! codes.

use std::collections::HashSet;
use std::convert::Infallible;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, FromRequest, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine;
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use kith::caps::{CapId, ReadCap, TombstoneId};
use kith::store::{EntryKind, WatchEvent};
use kith::{NamespaceId, Node, NodeEvent, Path, Timestamp};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result, blocking};
use crate::feed::{self, Audience, NewAttachment};
use crate::names::{self, Names};
use crate::origins::{Allowance, Claim, Origin, Origins, same_secret};
use crate::timeline;

/// Events an SSE client may fall behind by before events are dropped.
const EVENTS_CAPACITY: usize = 256;
/// Chunks of a blob response read ahead of the client.
const BLOB_CHUNKS_AHEAD: usize = 4;
/// Size of one chunk of a blob response.
const BLOB_CHUNK: usize = 64 << 10;
/// Default largest JSON body (a post with its attachments, base64).
pub const DEFAULT_MAX_JSON_BODY: usize = 64 << 20;
/// Largest body of a pairing route (open to every origin).
const MAX_PAIRING_BODY: usize = 1024;
/// How long a browser may reuse a CORS preflight's answer, seconds.
const PREFLIGHT_MAX_AGE: &str = "600";
/// Routes every origin may call: pairing only.
const PAIRING_ROUTES: &[&str] = &["/api/pair", "/api/pair/claim"];
/// Routes only the owner (the CLI, the node's own page) may call, never a
/// paired origin: approving origins, inviting devices, deleting everything.
const OWNER_ONLY: &[&str] = &["/api/web/", "/api/devices", "/api/everything"];
/// The cookie carrying the access token of the daemon answering on
/// `http_port`: `kith_token_PORT`. Cookies ignore ports, so one name for
/// every daemon would let opening one daemon's page sign another's out.
pub fn token_cookie(http_port: u16) -> String {
    format!("kith_token_{http_port}")
}

/// How the API is set up.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The access token.
    pub token: String,
    /// Serve no web page (API only).
    pub headless: bool,
    /// Largest JSON request body, bytes (larger ones get 413).
    pub max_json_body: usize,
    /// The name of the cookie carrying the token ([`token_cookie`]).
    pub cookie: String,
    /// The `Host` values the daemon answers to (its own address); requests
    /// naming another host are refused, so a page that rebinds its own
    /// DNS name to 127.0.0.1 cannot reach the API or the page. `None`
    /// (in-process) checks nothing.
    pub hosts: Option<Vec<String>>,
    /// The file of the web origins allowed to use the API
    /// ([`crate::origins::ORIGINS_FILE`] in the data folder); `None`: none
    /// is kept beyond this process.
    pub origins_file: Option<PathBuf>,
}

/// The `Host` values a daemon listening on `addr` answers to.
pub fn hosts_for(addr: std::net::SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![
        addr.to_string(),
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
    ];
    hosts.dedup();
    hosts
}

/// Shared state of the API handlers.
#[derive(Clone)]
pub(crate) struct AppState {
    inner: Arc<AppInner>,
}

struct AppInner {
    node: Node,
    config: ApiConfig,
    /// Friends changed (added or removed).
    friends_changed: broadcast::Sender<()>,
    /// The web origins allowed to use the API, and pairing requests.
    origins: Origins,
    /// Ends server-sent event streams at shutdown.
    stop: CancellationToken,
    /// Friends' documents being fetched again (purged from the cache), so a
    /// page asked for again meanwhile does not fetch them twice.
    fetching: std::sync::Mutex<HashSet<(NamespaceId, Path)>>,
}

/// An API error: a status, a stable code and a one-line reason.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        use kith::store::Error as S;
        let message = e.to_string();
        let (status, code) = match &e {
            Error::BadInput(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::UnknownFriend(_) => (StatusCode::NOT_FOUND, "unknown_friend"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Error::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            Error::Remote { status, .. } => (
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
                "remote",
            ),
            Error::Node(n) => match n {
                kith::Error::Store(s) => match &**s {
                    S::Invalid(_) | S::RootPath => (StatusCode::BAD_REQUEST, "bad_request"),
                    S::WrongKind { .. } => (StatusCode::BAD_REQUEST, "wrong_kind"),
                    S::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
                    S::BlobMissing(_) => (StatusCode::NOT_FOUND, "blob_missing"),
                    S::Tombstoned { .. } => (StatusCode::CONFLICT, "tombstoned"),
                    S::Superseded { .. } => (StatusCode::CONFLICT, "conflict"),
                    S::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
                    S::BadRange { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "bad_range"),
                    S::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
                    _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
                },
                kith::Error::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request"),
                kith::Error::WholeNamespace => (StatusCode::BAD_REQUEST, "whole_namespace"),
                kith::Error::InvalidTicket(_) => (StatusCode::BAD_REQUEST, "invalid_ticket"),
                kith::Error::NotFriend(_) => (StatusCode::NOT_FOUND, "unknown_friend"),
                kith::Error::NotAllowed(_) => (StatusCode::FORBIDDEN, "not_allowed"),
                kith::Error::Refused { .. } => (StatusCode::FORBIDDEN, "refused"),
                kith::Error::Unreachable { .. } | kith::Error::Network(_) => {
                    (StatusCode::BAD_GATEWAY, "unreachable")
                }
                kith::Error::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            },
        };
        Self::new(status, code, message)
    }
}

impl From<kith::Error> for ApiError {
    fn from(e: kith::Error) -> Self {
        Error::from(e).into()
    }
}

impl From<kith_types::ParseError> for ApiError {
    fn from(e: kith_types::ParseError) -> Self {
        Error::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.message, "code": self.code }));
        (self.status, body).into_response()
    }
}

type ApiResult<T> = std::result::Result<T, ApiError>;

/// A JSON request body, bounded by [`ApiConfig::max_json_body`].
pub(crate) struct JsonBody<T>(T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> ApiResult<Self> {
        let bytes = read_limited(req.into_body(), state.inner.config.max_json_body).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))
    }
}

async fn read_limited(body: Body, limit: usize) -> ApiResult<Bytes> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is larger than {limit} bytes"),
        )),
        Err(e) => Err(ApiError::bad(format!("could not read the body: {e}"))),
    }
}

/// The API and page router over `node`. Cancel `stop` to end live event
/// streams (at shutdown).
///
/// # Errors
/// [`Error::Io`] or [`Error::BadInput`] when the origins file
/// ([`ApiConfig::origins_file`]) cannot be read.
pub fn router(node: Node, config: ApiConfig, stop: CancellationToken) -> Result<Router> {
    let origins = Origins::load(config.origins_file.clone())?;
    let state = AppState {
        inner: Arc::new(AppInner {
            node,
            config,
            friends_changed: broadcast::channel(16).0,
            origins,
            stop,
            fetching: std::sync::Mutex::new(HashSet::new()),
        }),
    };
    Ok(Router::new()
        .route("/api/id", get(id))
        .route("/api/ticket", get(ticket))
        .route("/api/status", get(status))
        .route("/api/friends", get(friends).post(add_friend))
        .route("/api/friends/{friend}", delete(remove_friend))
        .route("/api/grants", get(grants).post(grant))
        .route("/api/revoke", post(revoke))
        .route("/api/entries/{ns}", get(entries))
        .route(
            "/api/entry/{*rest}",
            get(get_entry).put(put_entry).delete(delete_entry),
        )
        // `/` in every spelling reaches the node's refusal of the root.
        .route("/api/entry", delete(delete_root))
        .route("/api/entry/", delete(delete_root))
        .route("/api/feed", get(timeline))
        .route("/api/feed/posts", post(create_post))
        .route(
            "/api/feed/posts/{id}",
            get(posts_with_id).delete(delete_post),
        )
        .route("/api/feed/comments", post(comment))
        .route("/api/profile", get(profile).put(set_profile))
        .route(
            "/api/profile/avatar",
            axum::routing::put(set_avatar).delete(remove_avatar),
        )
        .route("/api/everything", delete(delete_everything))
        .route("/api/deletions", get(deletions))
        .route("/api/deletions/{id}", get(deletion))
        .route("/api/sync/{friend}", post(sync))
        .route("/api/cache", get(cache).put(set_cache))
        .route("/api/cache/purge", post(purge_cache))
        .route("/api/devices", post(invite_device))
        .route("/api/events", get(events))
        .route("/api/pair", get(pairing_state).post(ask_pairing))
        .route("/api/pair/claim", post(claim_pairing))
        .route(
            "/api/web/origins",
            get(web_origins).post(allow_origin).delete(revoke_origin),
        )
        .fallback(page)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state))
}

fn same_token(given: &str, token: &str) -> bool {
    // Constant-time comparison: the token is the only secret here.
    same_secret(given, token)
}

/// Who a request comes from, as the guard found: an extension of every
/// request it lets through.
#[derive(Debug, Clone)]
enum Caller {
    /// The owner: the CLI (bearer token) or the node's own page (cookie).
    Owner,
    /// A page on an approved origin, with that origin's token.
    Site(Origin),
    /// A page on any origin calling a pairing route (no token).
    Pairing(Origin),
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Adds the CORS headers that let `origin` (and only it) read the answer.
fn allow_cors(res: &mut Response, origin: &Origin) {
    let headers = res.headers_mut();
    if let Ok(o) = HeaderValue::from_str(origin.as_str()) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
    }
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("content-range, accept-ranges, content-length"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// The answer to a CORS preflight of `origin`, allowing `methods`.
fn preflight(req: &Request, origin: &Origin, methods: &'static str) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    allow_cors(&mut res, origin);
    let headers = res.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, range"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    // Chromium asks before a public site reaches a local address.
    if req
        .headers()
        .get("access-control-request-private-network")
        .is_some()
    {
        headers.insert(
            "access-control-allow-private-network",
            HeaderValue::from_static("true"),
        );
    }
    res
}

/// Requests from a page on another origin: pairing routes for any valid
/// origin, the rest of the API for an approved origin with its own token;
/// everything else is refused without CORS headers, so the page can read
/// nothing.
async fn guard_site(state: &AppState, mut req: Request, next: Next, origin: &str) -> Response {
    let refuse =
        |why: String| ApiError::new(StatusCode::FORBIDDEN, "forbidden", why).into_response();
    let Ok(parsed) = Origin::parse(origin) else {
        return refuse("requests from other origins are refused".to_string());
    };
    // Browsers send the origin in its normal form; any other spelling is
    // not a browser's and is not matched loosely.
    if parsed.as_str() != origin {
        return refuse("requests from other origins are refused".to_string());
    }
    let path = req.uri().path().to_string();
    if PAIRING_ROUTES.contains(&path.as_str()) {
        if req.method() == Method::OPTIONS {
            return preflight(&req, &parsed, "GET, POST");
        }
        req.extensions_mut().insert(Caller::Pairing(parsed.clone()));
        let mut res = next.run(req).await;
        allow_cors(&mut res, &parsed);
        // A claim's answer carries the token: never kept by a cache.
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return res;
    }
    if !state.inner.origins.is_allowed(&parsed) {
        return refuse(format!(
            "{parsed} is not allowed to use this kith node: press Connect on its page and approve the code it shows (`kith web allow {parsed} --code CODE`)"
        ));
    }
    if req.method() == Method::OPTIONS {
        return preflight(&req, &parsed, "GET, POST, PUT, DELETE");
    }
    let answer = |e: ApiError| {
        let mut res = e.into_response();
        allow_cors(&mut res, &parsed);
        res
    };
    if !path.starts_with("/api") {
        return answer(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "only the API answers other origins; the page's files are `kith web export`'s",
        ));
    }
    let ok = bearer(req.headers()).is_some_and(|t| state.inner.origins.check(&parsed, t));
    if !ok {
        return answer(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("missing or wrong token for {parsed}: pair this page with the node again"),
        ));
    }
    if OWNER_ONLY.iter().any(|p| path.starts_with(p)) {
        return answer(ApiError::new(
            StatusCode::FORBIDDEN,
            "owner_only",
            "a web app may not do this; use the kith command line or the node's own page",
        ));
    }
    req.extensions_mut().insert(Caller::Site(parsed.clone()));
    let mut res = next.run(req).await;
    allow_cors(&mut res, &parsed);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn request_token(headers: &HeaderMap, cookie: &str) -> Option<String> {
    if let Some(auth) = headers.get(header::AUTHORIZATION)
        && let Ok(auth) = auth.to_str()
        && let Some(t) = auth.strip_prefix("Bearer ")
    {
        return Some(t.trim().to_string());
    }
    for cookies in headers.get_all(header::COOKIE) {
        let Ok(cookies) = cookies.to_str() else {
            continue;
        };
        for c in cookies.split(';') {
            if let Some((k, v)) = c.trim().split_once('=')
                && k == cookie
            {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// Refuses other origins everywhere and requests without the token under
/// `/api`.
async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(hosts) = &state.inner.config.hosts {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        if let Some(host) = host
            && !hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
        {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_host",
                format!("this daemon answers only to {}", hosts.join(", ")),
            )
            .into_response();
        }
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let own = format!("http://{host}");
        let origin = origin.to_str().unwrap_or("").to_string();
        if origin != own {
            return guard_site(&state, req, next, &origin).await;
        }
    }
    let mut req = req;
    req.extensions_mut().insert(Caller::Owner);
    if req.uri().path().starts_with("/api") {
        let ok = request_token(req.headers(), &state.inner.config.cookie)
            .is_some_and(|t| same_token(&t, &state.inner.config.token));
        if !ok {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong access token; open the URL `kith serve` printed",
            )
            .into_response();
        }
    }
    let mut res = next.run(req).await;
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The page's static files, and the token-in-URL login.
async fn page(State(state): State<AppState>, method: Method, uri: Uri) -> Response {
    if uri.path().starts_with("/api") {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API route")
            .into_response();
    }
    if method != Method::GET && method != Method::HEAD {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "only GET is served here",
        )
        .into_response();
    }
    let token = uri.query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(str::to_string)
    });
    if let Some(token) = token {
        if !same_token(&token, &state.inner.config.token) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "wrong access token",
            )
            .into_response();
        }
        let cookie = format!(
            "{}={token}; HttpOnly; SameSite=Strict; Path=/",
            state.inner.config.cookie
        );
        let mut res = Response::new(Body::empty());
        *res.status_mut() = StatusCode::SEE_OTHER;
        // Back to the same page of this host: a path such as `//other/`
        // would be read as another host by the browser.
        let back = format!("/{}", uri.path().trim_start_matches(['/', '\\']));
        if let (Ok(c), Ok(l)) = (HeaderValue::from_str(&cookie), HeaderValue::from_str(&back)) {
            res.headers_mut().insert(header::SET_COOKIE, c);
            res.headers_mut().insert(header::LOCATION, l);
        }
        return res;
    }
    if state.inner.config.headless {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this node runs headless: no web page",
        )
        .into_response();
    }
    match crate::web::static_file(uri.path()) {
        Some((content_type, bytes)) => (
            [(header::CONTENT_TYPE, content_type)],
            Bytes::from_static(bytes),
        )
            .into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such page").into_response(),
    }
}

impl AppState {
    fn node(&self) -> &Node {
        &self.inner.node
    }

    fn me(&self) -> NamespaceId {
        self.inner.node.namespace()
    }

    async fn names(&self) -> Result<Names> {
        let store = self.node().store().clone();
        let (me, friends) = (self.me(), self.node().friends());
        blocking(move || Names::load(&store, me, &friends)).await
    }

    /// Starts fetching again, from their authors, the posts and comments
    /// in `posts` whose text was purged from the cache of friends' data
    /// (shown as loading meanwhile); one fetch per document at a time.
    fn fetch_loading(&self, posts: &[feed::Post]) {
        let loading = posts.iter().flat_map(|p| {
            std::iter::once((p.loading, &p.author, &p.path))
                .chain(p.comments.iter().map(|c| (c.loading, &c.author, &c.path)))
        });
        let mut by_owner: std::collections::HashMap<NamespaceId, Vec<Path>> = Default::default();
        {
            let mut fetching = self
                .inner
                .fetching
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (_, author, path) in loading.filter(|(l, _, _)| *l) {
                let (Ok(ns), Ok(path)) = (author.parse::<NamespaceId>(), Path::parse(path)) else {
                    continue;
                };
                if fetching.insert((ns, path.clone())) {
                    by_owner.entry(ns).or_default().push(path);
                }
            }
        }
        for (ns, paths) in by_owner {
            let state = self.clone();
            tokio::spawn(async move {
                match state.node().fetch_documents(&ns, &paths).await {
                    Ok(n) => tracing::debug!(%ns, n, "fetched purged documents again"),
                    Err(e) => tracing::info!(%ns, %e, "could not fetch purged documents again"),
                }
                let mut fetching = state
                    .inner
                    .fetching
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for path in paths {
                    fetching.remove(&(ns, path));
                }
            });
        }
    }

    /// Runs blocking work with the store, own namespace and names.
    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&kith::store::Store, &NamespaceId, &Names) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.node().store().clone();
        let (me, friends) = (self.me(), self.node().friends());
        blocking(move || {
            let names = Names::load(&store, me, &friends)?;
            f(&store, &me, &names)
        })
        .await
    }
}

fn parse_path(text: &str) -> ApiResult<Path> {
    let text = if text.starts_with('/') {
        text.to_string()
    } else {
        format!("/{text}")
    };
    Ok(Path::parse(&text)?)
}

// ----- identity, friends, grants ------------------------------------------

async fn id(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let names = s.names().await?;
    Ok(Json(json!({
        "namespace": s.me().to_string(),
        "device": s.node().device().to_string(),
        "name": names.name_of(&s.me()),
        "avatar": names.avatar_of(&s.me()),
        "limits": { "text_bytes": crate::docjson::MAX_TEXT_LEN },
    })))
}

/// `GET /api/status`: where this device is, and per other known device
/// whether it is reachable now, over which path, and what was last
/// exchanged with it (since the daemon started).
async fn status(
    State(s): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> ApiResult<Json<Value>> {
    let names = s.names().await?;
    let peers = s.node().peers().await?;
    let when = |t: &Option<Timestamp>| t.map(|t| t.as_micros() / 1000);
    let peers: Vec<Value> = peers
        .iter()
        .map(|p| {
            let (route, via) = match &p.route {
                Some(kith::Route::Direct(a)) => (Some("direct"), Some(a.to_string())),
                Some(kith::Route::Relay(u)) => (Some("relay"), Some(u.clone())),
                _ => (None, None),
            };
            json!({
                "namespace": p.namespace.to_string(),
                "name": names.name_of(&p.namespace),
                "device": p.device.to_string(),
                "own": p.own,
                "reachable": p.reachable(),
                "route": route,
                "via": via,
                "rtt_ms": p.rtt.map(|d| d.as_secs_f64() * 1000.0),
                "addresses": p.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "last_seen_ms": when(&p.last_seen),
                "last_sync_ms": when(&p.last_sync),
                "last_live_ms": when(&p.last_live),
                "last_error": p.last_error.as_ref().map(|(t, e)| json!({ "at_ms": t.as_micros() / 1000, "error": e })),
                "owed_keys": p.owed_keys,
                "owed_deletions": p.owed_deletions,
            })
        })
        .collect();
    Ok(Json(json!({
        "namespace": s.me().to_string(),
        "device": s.node().device().to_string(),
        "addresses": s.node().here().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "peers": peers,
        // A web app is not told which other sites are allowed.
        "web_origins": match caller {
            Some(Extension(Caller::Site(_))) => Vec::new(),
            _ => s.inner.origins.list(),
        },
    })))
}

async fn ticket(State(s): State<AppState>) -> Json<Value> {
    Json(json!({ "ticket": s.node().ticket().to_string() }))
}

fn live(cap: &ReadCap, revoked: bool, now: Timestamp) -> bool {
    !revoked && cap.expires_at().is_none_or(|e| e > now)
}

async fn friend_view(s: &AppState, names: &Names, friend: &NamespaceId) -> ApiResult<Value> {
    let now = Timestamp::wall_clock();
    let mut prefixes: Vec<String> = s
        .node()
        .grants()
        .into_iter()
        .filter(|(c, r)| c.grantee() == *friend && live(c, *r, now))
        .map(|(c, _)| c.prefix().to_string())
        .collect();
    prefixes.sort();
    prefixes.dedup();
    let (caps, revocations) = s.node().caps_from(friend).await?;
    let mut shared: Vec<String> = caps
        .iter()
        .filter(|c| !revocations.iter().any(|r| r.revokes(c)))
        .filter(|c| c.expires_at().is_none_or(|e| e > now))
        .map(|c| c.prefix().to_string())
        .collect();
    shared.sort();
    shared.dedup();
    Ok(json!({
        "namespace": friend.to_string(),
        "name": names.name_of(friend),
        "nickname": names.nickname(friend),
        "avatar": names.avatar_of(friend),
        "prefixes": prefixes,
        "shared_with_me": shared,
    }))
}

async fn friends(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let names = s.names().await?;
    let mut out = Vec::new();
    for f in s.node().friends() {
        out.push(friend_view(&s, &names, &f).await?);
    }
    Ok(Json(Value::Array(out)))
}

#[derive(Deserialize)]
struct AddFriend {
    ticket: String,
    name: Option<String>,
}

async fn add_friend(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<AddFriend>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let ticket: kith::Ticket = body.ticket.parse()?;
    if ticket.namespace == s.me() {
        return Err(ApiError::bad(
            "this is a ticket of your own namespace; add devices with `kith device`",
        ));
    }
    let friend = ticket.namespace;
    if let Some(name) = &body.name {
        // Refuse a taken name before anything changes.
        let store = s.node().store().clone();
        let me = s.me();
        let name2 = name.clone();
        let taken = blocking(move || {
            Ok(names::nicknames(&store, &me)?
                .into_iter()
                .any(|(ns, n)| ns != friend && n == name2))
        })
        .await?;
        if taken {
            return Err(
                Error::Conflict(format!("another friend is already called {name:?}")).into(),
            );
        }
    }
    s.node().add_friend(&ticket).await?;
    if let Some(name) = body.name.clone() {
        let store = s.node().store().clone();
        let me = s.me();
        blocking(move || names::set_nickname(&store, &me, &friend, Some(&name))).await?;
    }
    // Every friend may read the "friends" audience (see `feed`).
    let now = Timestamp::wall_clock();
    let held: Vec<Path> = s
        .node()
        .grants()
        .into_iter()
        .filter(|(c, r)| c.grantee() == friend && live(c, *r, now))
        .map(|(c, _)| c.prefix().clone())
        .collect();
    for prefix in feed::FRIEND_PREFIXES {
        let prefix = Path::parse(prefix)?;
        if !held.iter().any(|h| h.is_prefix_of(&prefix)) {
            s.node().grant(&friend, &prefix, None).await?;
        }
    }
    s.node().subscribe(&friend).await?;
    let _ = s.inner.friends_changed.send(());
    let names = s.names().await?;
    Ok((
        StatusCode::CREATED,
        Json(friend_view(&s, &names, &friend).await?),
    ))
}

async fn remove_friend(
    State(s): State<AppState>,
    UrlPath(friend): UrlPath<String>,
) -> ApiResult<StatusCode> {
    let friend = s.names().await?.friend(&friend)?;
    s.node().remove_friend(&friend).await?;
    let store = s.node().store().clone();
    let me = s.me();
    blocking(move || names::set_nickname(&store, &me, &friend, None)).await?;
    let _ = s.inner.friends_changed.send(());
    Ok(StatusCode::NO_CONTENT)
}

fn grant_view(cap: &ReadCap, revoked: bool, names: &Names) -> Value {
    json!({
        "id": cap.id().to_string(),
        "friend": cap.grantee().to_string(),
        "name": names.name_of(&cap.grantee()),
        "prefix": cap.prefix().to_string(),
        "issued": cap.issued_at().as_micros(),
        "expires": cap.expires_at().map(Timestamp::as_micros),
        "revoked": revoked,
    })
}

async fn grants(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let names = s.names().await?;
    let mut grants = s.node().grants();
    grants.sort_by_key(|(c, _)| c.issued_at());
    Ok(Json(Value::Array(
        grants
            .iter()
            .map(|(c, r)| grant_view(c, *r, &names))
            .collect(),
    )))
}

/// Parses `30d`, `12h`, `45m`, `90s` or `2w`.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let bad = || Error::BadInput(format!("{text:?} is not a duration like 30d, 12h or 45m"));
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(secs).map(Duration::from_secs).ok_or_else(bad)
}

/// Parses a size: bytes (`1048576`), or a number with `KB`, `MB`, `GB`,
/// `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (of 1024).
pub fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let bad = || Error::BadInput(format!("{text:?} is not a size like 500MB or 2GiB"));
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "tb" | "t" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).ok_or_else(bad)
}

#[derive(Deserialize)]
struct GrantBody {
    friend: String,
    prefix: String,
    expires: Option<String>,
}

async fn grant(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<GrantBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let names = s.names().await?;
    let friend = names.friend(&body.friend)?;
    let prefix = parse_path(&body.prefix)?;
    let expires = match &body.expires {
        Some(e) => {
            let d = parse_duration(e)?;
            let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
            Some(Timestamp::from_micros(
                Timestamp::wall_clock().as_micros().saturating_add(micros),
            ))
        }
        None => None,
    };
    let cap = s.node().grant(&friend, &prefix, expires).await?;
    Ok((StatusCode::CREATED, Json(grant_view(&cap, false, &names))))
}

#[derive(Deserialize)]
struct RevokeBody {
    friend: String,
    prefix: String,
    #[serde(default)]
    delete: bool,
}

async fn revoke(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<RevokeBody>,
) -> ApiResult<Json<Value>> {
    let names = s.names().await?;
    let friend = names.friend(&body.friend)?;
    let prefix = parse_path(&body.prefix)?;
    let caps: Vec<CapId> = s
        .node()
        .grants()
        .into_iter()
        .filter(|(c, r)| !r && c.grantee() == friend && prefix.is_prefix_of(c.prefix()))
        .map(|(c, _)| c.id())
        .collect();
    if caps.is_empty() {
        return Err(Error::NotFound(format!(
            "{} holds no grant under {prefix}",
            names.name_of(&friend)
        ))
        .into());
    }
    let (revoked, deletions) = revoke_caps(s.node(), &caps, body.delete).await?;
    Ok(Json(json!({
        "revoked": revoked.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "deletion": deletions.first().map(ToString::to_string),
        "deletions": deletions.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })))
}

/// Revokes `caps`; with `delete`, also asks the friend to delete what they
/// were given under each cap's prefix (this namespace keeps its data).
async fn revoke_caps(
    node: &Node,
    caps: &[CapId],
    delete: bool,
) -> Result<(Vec<CapId>, Vec<TombstoneId>)> {
    let mut revoked = Vec::new();
    let mut deletions = Vec::new();
    for cap in caps {
        if delete {
            let (_, deletion) = node.revoke_and_delete(*cap).await?;
            deletions.push(deletion);
        } else {
            node.revoke(*cap).await?;
        }
        revoked.push(*cap);
    }
    Ok((revoked, deletions))
}

#[derive(Deserialize)]
struct DeviceBody {
    device: String,
}

async fn invite_device(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<DeviceBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let device: kith::DeviceId = body.device.trim().parse()?;
    let invite = s
        .node()
        .invite_device(device, kith::caps::Rights::ALL)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "invite": invite.to_string() })),
    ))
}

// ----- entries --------------------------------------------------------------

#[derive(Deserialize)]
struct EntriesQuery {
    prefix: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

fn entry_view(path: &Path, entry: &kith::store::Entry) -> Value {
    let mut v = json!({
        "path": path.to_string(),
        "kind": entry.kind_name(),
        "time": entry.timestamp.as_micros(),
        "device": entry.device.to_string(),
    });
    match &entry.kind {
        EntryKind::Document { size, .. } => v["size"] = json!(size),
        EntryKind::Blob {
            hash,
            size,
            media_type,
        } => {
            v["size"] = json!(size);
            v["media_type"] = json!(media_type);
            v["hash"] = json!(hash.to_hex());
        }
    }
    v
}

async fn entries(
    State(s): State<AppState>,
    UrlPath(ns): UrlPath<String>,
    query: std::result::Result<Query<EntriesQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    let ns = s.names().await?.namespace(&ns)?;
    let prefix = match &q.prefix {
        Some(p) => parse_path(p)?,
        None => Path::root(),
    };
    let after = q.after.as_deref().map(parse_path).transpose()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let store = s.node().store().clone();
    let page = blocking(move || Ok(store.list(&ns, &prefix, after.as_ref(), limit)?)).await?;
    Ok(Json(json!({
        "entries": page.entries.iter().map(|(p, e)| entry_view(p, e)).collect::<Vec<_>>(),
        "next": page.next.map(|p| p.to_string()),
    })))
}

/// Parses a single `Range: bytes=…` header against a blob of `size` bytes.
fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = if start.is_empty() {
        let n: u64 = end.parse().ok()?;
        if n == 0 {
            return None;
        }
        (size.saturating_sub(n), size)
    } else {
        let start: u64 = start.parse().ok()?;
        let end = if end.is_empty() {
            size
        } else {
            end.parse::<u64>().ok()?.saturating_add(1).min(size)
        };
        (start, end)
    };
    (start < end).then_some((start, end))
}

async fn get_entry(
    State(s): State<AppState>,
    UrlPath(rest): UrlPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (ns_text, path_text) = rest
        .split_once('/')
        .ok_or_else(|| ApiError::bad("use /api/entry/NS/PATH"))?;
    let names = s.names().await?;
    let ns = names.namespace(ns_text)?;
    let path = parse_path(path_text)?;
    let store = s.node().store().clone();
    let (ns2, path2) = (ns, path.clone());
    let entry = blocking(move || Ok(store.get(&ns2, &path2)?))
        .await?
        .ok_or_else(|| {
            let whose = if ns == s.me() {
                String::new()
            } else {
                format!(
                    " (of {}: not granted to you, or not synced yet)",
                    names.name_of(&ns)
                )
            };
            Error::NotFound(format!("nothing at {path}{whose}"))
        })?;
    let (hash, size, media_type) = match entry.kind {
        EntryKind::Document { .. } => {
            // A friend's document purged from the cache is fetched first.
            let doc = s
                .node()
                .read_document(&ns, &path)
                .await?
                .ok_or_else(|| Error::NotFound(format!("nothing at {path}")))?;
            let doc = blocking(move || crate::docjson::to_json(&doc)).await?;
            return Ok(Json(doc).into_response());
        }
        EntryKind::Blob {
            hash,
            size,
            media_type,
        } => (hash, size, media_type),
    };
    // Fetched first if it is not here; a friend's counts as used now.
    s.node().fetch(&ns, &path).await?;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) => match parse_range(r, size) {
            Some(range) => Some(range),
            None => {
                let mut res = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "bad_range",
                    format!("range {r:?} is not satisfiable for {size} bytes"),
                )
                .into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    res.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(res);
            }
        },
        None => None,
    };
    let (start, end) = range.unwrap_or((0, size));
    let store = s.node().store().clone();
    let reader = blocking(move || {
        Ok(store.read_blob(&hash, (Bound::Included(start), Bound::Excluded(end)))?)
    })
    .await?;
    let mut res = Response::new(Body::from_stream(blob_stream(reader)));
    let h = res.headers_mut();
    let content_type = HeaderValue::from_str(&media_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, content_type);
    // Blobs come from friends: opened on their own (an SVG image, an HTML
    // file), they must not run scripts with this origin's access to the API.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if range.is_some() {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
        *res.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(res)
}

/// Streams a blob from the blocking pool, a few chunks ahead.
fn blob_stream(
    mut reader: kith::store::BlobReader,
) -> impl Stream<Item = std::result::Result<Bytes, std::io::Error>> {
    let (tx, rx) = mpsc::channel(BLOB_CHUNKS_AHEAD);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        loop {
            let mut buf = vec![0u8; BLOB_CHUNK];
            match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
}

async fn put_entry(
    State(s): State<AppState>,
    UrlPath(rest): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let path = parse_path(&rest)?;
    let me = s.me();
    let store = s.node().store().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" {
        let bytes = read_limited(body, s.inner.config.max_json_body).await?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad(format!("invalid JSON: {e}")))?;
        let Value::Object(object) = value else {
            return Err(ApiError::bad("a document is written from a JSON object"));
        };
        let p = path.clone();
        blocking(move || {
            let is_doc = matches!(
                store.get(&me, &p)?,
                Some(kith::store::Entry {
                    kind: EntryKind::Document { .. },
                    ..
                })
            );
            if is_doc {
                let (res, _) = store
                    .edit_document(&me, &p, |doc| crate::docjson::replace_root(doc, &object))?;
                res
            } else {
                store.create_document(&me, &p, crate::docjson::new_doc(&object)?)?;
                Ok(())
            }
        })
        .await?;
        return Ok(Json(
            json!({ "path": path.to_string(), "kind": "document" }),
        ));
    }
    let stream = body
        .into_data_stream()
        .map(|r| r.map_err(std::io::Error::other));
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    let p = path.clone();
    blocking(move || {
        store.put_blob(&me, &p, reader, &content_type)?;
        Ok(())
    })
    .await?;
    Ok(Json(json!({ "path": path.to_string(), "kind": "blob" })))
}

#[derive(Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    #[allow(dead_code)]
    remote: bool,
}

async fn delete_entry(
    State(s): State<AppState>,
    UrlPath(rest): UrlPath<String>,
    query: std::result::Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    // Deletion always reaches the friends who were served the data, so
    // `remote` changes nothing today; it is accepted for clarity.
    let Query(_q) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    delete_existing(&s, parse_path(&rest)?).await
}

#[derive(Deserialize)]
struct EverythingQuery {
    /// This namespace's id, typed out: the one proof the caller means it.
    confirm: Option<String>,
}

/// `DELETE /api/everything?confirm=NAMESPACE`: the whole namespace, here
/// and on friends' devices. Only with the namespace's own id as `confirm`.
async fn delete_everything(
    State(s): State<AppState>,
    query: std::result::Result<Query<EverythingQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    let me = s.me().to_string();
    if q.confirm.as_deref() != Some(me.as_str()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "confirm",
            "deleting everything needs ?confirm= with this namespace's id (GET /api/id)",
        ));
    }
    let deletion = s.node().delete_everything().await?;
    Ok(Json(json!({ "deletion": deletion.to_string() })))
}

async fn delete_root(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    delete_existing(&s, Path::root()).await
}

/// Deletes everything at or under `path` of the own namespace, friends'
/// copies included; 404 if there is nothing.
async fn delete_existing(s: &AppState, path: Path) -> ApiResult<Json<Value>> {
    let store = s.node().store().clone();
    let (me, p) = (s.me(), path.clone());
    let any = blocking(move || Ok(!store.list(&me, &p, None, 1)?.entries.is_empty())).await?;
    if !any {
        return Err(Error::NotFound(format!("nothing at or under {path}")).into());
    }
    let deletion = s.node().delete(&path).await?;
    Ok(Json(json!({ "deletion": deletion.to_string() })))
}

// ----- feed -------------------------------------------------------------------

#[derive(Deserialize)]
struct FeedQuery {
    limit: Option<String>,
    before: Option<String>,
}

async fn timeline(
    State(s): State<AppState>,
    query: std::result::Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    let limit = match q.limit.as_deref() {
        None => None,
        Some(text) => Some(text.parse::<usize>().map_err(|_| {
            ApiError::bad(format!(
                "limit {:?} is not a number of posts (1 to {})",
                text.chars().take(40).collect::<String>(),
                timeline::MAX_LIMIT
            ))
        })?),
    };
    let limit = timeline::check_limit(limit)?;
    let before = q
        .before
        .as_deref()
        .map(str::parse::<timeline::Cursor>)
        .transpose()?;
    let friends = s.node().friends();
    let page = s
        .with_store(move |store, me, names| {
            timeline::page(store, me, &friends, names, before.as_ref(), limit)
        })
        .await?;
    s.fetch_loading(&page.posts);
    Ok(Json(json!({
        "posts": page.posts,
        "next": page.next.map(|c| c.to_string()),
    })))
}

async fn posts_with_id(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    let friends = s.node().friends();
    let posts = s
        .with_store(move |store, me, names| {
            timeline::posts_with_id(store, me, &friends, names, &id)
        })
        .await?;
    s.fetch_loading(&posts);
    Ok(Json(json!({ "posts": posts })))
}

#[derive(Deserialize)]
struct AttachmentBody {
    name: String,
    #[serde(default)]
    media_type: String,
    data: String,
}

#[derive(Deserialize)]
struct PostBody {
    text: String,
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    attachments: Vec<AttachmentBody>,
}

async fn create_post(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<PostBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let audience: Audience = body.audience.as_deref().unwrap_or("friends").parse()?;
    let mut attachments = Vec::new();
    for a in body.attachments {
        let data = base64::engine::general_purpose::STANDARD
            .decode(a.data.as_bytes())
            .map_err(|e| ApiError::bad(format!("attachment {:?}: not base64: {e}", a.name)))?;
        attachments.push(NewAttachment {
            name: a.name,
            media_type: a.media_type,
            data,
        });
    }
    let text = body.text;
    let mut post = s
        .with_store(move |store, me, names| {
            feed::create_post(store, me, &text, audience, attachments, names)
        })
        .await?;
    post.mine = true;
    Ok((StatusCode::CREATED, Json(json!(post))))
}

async fn delete_post(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    let path = s
        .with_store(move |store, me, _| feed::own_post_path(store, me, &id))
        .await?;
    let deletion = s.node().delete(&path).await?;
    Ok(Json(json!({ "deletion": deletion.to_string() })))
}

#[derive(Deserialize)]
struct PostRef {
    author: String,
    id: String,
}

#[derive(Deserialize)]
struct CommentBody {
    post: PostRef,
    text: String,
}

async fn comment(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<CommentBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let c = s
        .with_store(move |store, me, names| {
            let author = names.namespace(&body.post.author)?;
            feed::comment(store, me, &author, &body.post.id, &body.text, names)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(json!(c))))
}

async fn profile(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let p = s
        .with_store(|store, me, _| feed::profile(store, me))
        .await?;
    Ok(Json(json!(p)))
}

#[derive(Deserialize)]
struct ProfileBody {
    name: Option<String>,
    bio: Option<String>,
}

async fn set_profile(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<ProfileBody>,
) -> ApiResult<Json<Value>> {
    let p = s
        .with_store(move |store, me, _| {
            feed::set_profile(store, me, body.name.as_deref(), body.bio.as_deref())
        })
        .await?;
    Ok(Json(json!(p)))
}

/// `PUT /api/profile/avatar`: the body is the picture, its `Content-Type`
/// an image type.
async fn set_avatar(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = read_limited(body, feed::MAX_AVATAR_SIZE).await?;
    let p = s
        .with_store(move |store, me, _| feed::set_avatar(store, me, &bytes, &media_type))
        .await?;
    Ok(Json(json!(p)))
}

/// `DELETE /api/profile/avatar`: friends' copies are deleted too.
async fn remove_avatar(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    delete_existing(&s, Path::parse(feed::AVATAR_PATH)?).await
}

// ----- deletions -----------------------------------------------------------------

async fn deletion_views(s: &AppState) -> ApiResult<Vec<Value>> {
    let names = s.names().await?;
    let mut out = Vec::new();
    for t in s.node().deletions().await? {
        let statuses = s.node().receipts(t.id()).await?;
        let confirmed = statuses.iter().filter(|d| d.confirmed.is_some()).count();
        out.push(json!({
            "id": t.id().to_string(),
            "prefix": t.prefix().to_string(),
            "time": t.up_to().as_micros(),
            "confirmed": confirmed,
            "total": statuses.len(),
            "devices": statuses.iter().map(|d| json!({
                "namespace": d.namespace.to_string(),
                "name": names.name_of(&d.namespace),
                "device": d.device.to_string(),
                "confirmed_at": d.confirmed.map(Timestamp::as_micros),
            })).collect::<Vec<_>>(),
        }));
    }
    Ok(out)
}

async fn deletions(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(Value::Array(deletion_views(&s).await?)))
}

async fn deletion(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    deletion_views(&s)
        .await?
        .into_iter()
        .find(|d| d["id"] == id)
        .map(Json)
        .ok_or_else(|| Error::NotFound(format!("no deletion {id:?}")).into())
}

// ----- sync and events -------------------------------------------------------------

async fn sync(
    State(s): State<AppState>,
    UrlPath(friend): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    let friend = s.names().await?.friend(&friend)?;
    let r = s.node().sync_now(&friend).await?;
    Ok(Json(json!({
        "device": r.device.map(|d| d.to_string()),
        "entries": r.entries,
        "docs": r.docs,
        "tombstones": r.tombstones,
        "blobs_fetched": r.blobs_fetched,
        "refused": r.refused,
        "receipts_sent": r.receipts_sent,
        "bytes_received": r.bytes_received,
        "prefixes": r.prefixes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "duration_ms": u64::try_from(r.duration.as_millis()).unwrap_or(u64::MAX),
    })))
}

// ----- the cache of friends' data ----------------------------------------------

fn cache_view(c: &kith::CacheStatus) -> Value {
    json!({
        "budget": c.settings.budget,
        "max_age": c.settings.max_age.map(|a| a.as_secs()),
        "documents": c.documents,
        "document_bytes": c.document_bytes,
        "blobs": c.blobs,
        "blob_bytes": c.blob_bytes,
        "bytes": c.bytes(),
    })
}

fn purged_view(p: &kith::Purged) -> Value {
    json!({ "documents": p.documents, "blobs": p.blobs, "bytes": p.bytes })
}

async fn cache(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(cache_view(&s.node().cache_status().await?)))
}

/// `{"budget": "500MB" or bytes, "max_age": "365d", seconds or null}`; a
/// field left out keeps its value.
async fn set_cache(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<serde_json::Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let mut settings = s.node().cache_status().await?.settings;
    for (key, value) in &body {
        match (key.as_str(), value) {
            ("budget", Value::String(t)) => settings.budget = parse_size(t)?,
            ("budget", Value::Number(n)) => {
                settings.budget = n
                    .as_u64()
                    .ok_or_else(|| ApiError::bad("budget: a whole number of bytes"))?;
            }
            ("max_age", Value::Null) => settings.max_age = None,
            ("max_age", Value::String(t)) if t == "off" => settings.max_age = None,
            ("max_age", Value::String(t)) => settings.max_age = Some(parse_duration(t)?),
            ("max_age", Value::Number(n)) => {
                let secs = n
                    .as_u64()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| ApiError::bad("max_age: a whole number of seconds"))?;
                settings.max_age = Some(Duration::from_secs(secs));
            }
            ("budget" | "max_age", _) => {
                return Err(ApiError::bad(format!("{key}: not a size or duration")));
            }
            _ => {
                return Err(ApiError::bad(format!(
                    "unknown field {key:?}: use budget, max_age"
                )));
            }
        }
    }
    let purged = s.node().set_cache(settings).await?;
    let mut view = cache_view(&s.node().cache_status().await?);
    view["purged"] = purged_view(&purged);
    Ok(Json(view))
}

async fn purge_cache(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let purged = s.node().purge_cache().await?;
    let mut view = cache_view(&s.node().cache_status().await?);
    view["purged"] = purged_view(&purged);
    Ok(Json(view))
}

fn sse_event(name: &str, data: Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

async fn events(
    State(s): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Sse<impl Stream<Item = std::result::Result<Event, Infallible>>> {
    let (tx, rx) = mpsc::channel(EVENTS_CAPACITY);
    // Subscribed before the answer goes out: a client that reads the state
    // once it has the answer's header misses no receipt in between.
    let node_events = s.node().events();
    let friend_events = s.inner.friends_changed.subscribe();
    let site = match caller {
        Some(Extension(Caller::Site(origin))) => Some(origin),
        _ => None,
    };
    tokio::spawn(pump_events(s, tx, node_events, friend_events, site));
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Forwards entry changes of the own and every friend's namespace, receipts
/// and friend changes to one event stream, until the client leaves, the
/// server stops or, for a stream of a web origin (`site`), the origin is
/// revoked.
async fn pump_events(
    s: AppState,
    tx: mpsc::Sender<Event>,
    mut node_events: broadcast::Receiver<NodeEvent>,
    mut friend_events: broadcast::Receiver<()>,
    site: Option<Origin>,
) {
    let node = s.node().clone();
    let mut origins_changed = s.inner.origins.changes();
    let (wtx, mut wrx) = mpsc::channel::<(NamespaceId, WatchEvent)>(EVENTS_CAPACITY);
    let mut watched = HashSet::new();
    let watch = |ns: NamespaceId, watched: &mut HashSet<NamespaceId>| {
        if !watched.insert(ns) {
            return;
        }
        let mut watcher = node.watch(&ns, &Path::root());
        let wtx = wtx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    ev = watcher.recv() => match ev {
                        Some(ev) => if wtx.send((ns, ev)).await.is_err() { return },
                        None => return,
                    },
                    () = wtx.closed() => return,
                }
            }
        });
    };
    watch(node.namespace(), &mut watched);
    for f in node.friends() {
        watch(f, &mut watched);
    }
    loop {
        let event = tokio::select! {
            () = tx.closed() => return,
            () = s.inner.stop.cancelled() => return,
            changed = origins_changed.changed() => {
                if changed.is_err() {
                    return;
                }
                match &site {
                    Some(o) if !s.inner.origins.is_allowed(o) => return,
                    // A web app is not told about other origins.
                    Some(_) => continue,
                    None => sse_event("web", json!({})),
                }
            }
            Some((ns, ev)) = wrx.recv() => match ev {
                WatchEvent::Change(change) => {
                    let (path, kind) = match change.kind {
                        kith::store::ChangeKind::Put { path, .. } => (path, "put"),
                        kith::store::ChangeKind::Tombstone { prefix, .. } => (prefix, "deleted"),
                    };
                    sse_event("entry", json!({ "namespace": ns.to_string(), "path": path.to_string(), "kind": kind }))
                }
                WatchEvent::Lagged => sse_event("entry", json!({ "namespace": ns.to_string(), "path": "/", "kind": "lagged" })),
            },
            ev = node_events.recv() => match ev {
                Ok(NodeEvent::Receipt { tombstone, namespace, device }) => sse_event("receipt", json!({
                    "deletion": tombstone.to_string(),
                    "namespace": namespace.to_string(),
                    "device": device.to_string(),
                })),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            ev = friend_events.recv() => match ev {
                Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    for f in node.friends() {
                        watch(f, &mut watched);
                    }
                    sse_event("friend", json!({ "friends": node.friends().iter().map(ToString::to_string).collect::<Vec<_>>() }))
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

// ----- web origins and pairing ---------------------------------------------

/// The origin a pairing route is called from.
fn pairing_origin(caller: &Caller) -> ApiResult<&Origin> {
    match caller {
        Caller::Pairing(o) => Ok(o),
        _ => Err(ApiError::bad(
            "pairing is for web pages on other origins (their requests carry an Origin header)",
        )),
    }
}

/// `GET /api/pair`: whether the calling origin is approved (no token needed).
async fn pairing_state(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    let origin = pairing_origin(&caller)?;
    Ok(Json(json!({
        "origin": origin.to_string(),
        "approved": s.inner.origins.is_allowed(origin),
    })))
}

/// `POST /api/pair`: records a pairing request of the calling origin.
async fn ask_pairing(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let origin = pairing_origin(&caller)?.clone();
    // Nothing of the body is used; it is only bounded.
    read_limited(req.into_body(), MAX_PAIRING_BODY).await?;
    let asked = s.inner.origins.ask(origin.clone());
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "origin": origin.to_string(),
            "request": asked.request,
            "code": asked.code,
            "expires_ms": asked.expires_ms,
        })),
    ))
}

#[derive(Deserialize)]
struct ClaimBody {
    request: String,
}

/// `POST /api/pair/claim`: the token, once the person approved the request.
async fn claim_pairing(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> ApiResult<Response> {
    let origin = pairing_origin(&caller)?.clone();
    let bytes = read_limited(req.into_body(), MAX_PAIRING_BODY).await?;
    let body: ClaimBody = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))?;
    Ok(match s.inner.origins.claim(&origin, &body.request) {
        Claim::Waiting => (
            StatusCode::ACCEPTED,
            Json(json!({ "waiting": true, "origin": origin.to_string() })),
        )
            .into_response(),
        Claim::Token(token) => {
            Json(json!({ "token": token, "origin": origin.to_string() })).into_response()
        }
        Claim::Unknown => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such pairing request: it lapsed or was replaced; connect again",
        )
        .into_response(),
    })
}

/// `GET /api/web/origins`: the approved origins and the waiting requests.
async fn web_origins(State(s): State<AppState>) -> Json<Value> {
    Json(json!({
        "origins": s.inner.origins.list(),
        "pending": s.inner.origins.pending(),
    }))
}

#[derive(Deserialize)]
struct AllowBody {
    origin: String,
    code: Option<String>,
}

/// `POST /api/web/origins`: approves an origin (its pairing request, with the code).
async fn allow_origin(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<AllowBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let origin = Origin::parse(&body.origin)?;
    let origins = s.inner.origins.clone();
    let o = origin.clone();
    let allowance = blocking(move || origins.allow(&o, body.code.as_deref())).await?;
    let answer = match allowance {
        Allowance::Paired => json!({ "origin": origin.to_string(), "paired": true }),
        Allowance::Token(token) => {
            json!({ "origin": origin.to_string(), "paired": false, "token": token })
        }
    };
    Ok((StatusCode::CREATED, Json(answer)))
}

#[derive(Deserialize)]
struct RevokeOriginQuery {
    origin: String,
}

/// `DELETE /api/web/origins?origin=O`: forgets the origin's token at once.
async fn revoke_origin(
    State(s): State<AppState>,
    Query(q): Query<RevokeOriginQuery>,
) -> ApiResult<StatusCode> {
    let origin = Origin::parse(&q.origin)?;
    let origins = s.inner.origins.clone();
    blocking(move || origins.revoke(&origin)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ranges_parse_like_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 100)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(
            parse_duration("12h").unwrap(),
            Duration::from_secs(12 * 3600)
        );
        assert!(parse_duration("12").is_err());
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size(" 3 kib ").unwrap(), 3 << 10);
        for bad in ["", "MB", "1.5GB", "5 parsecs", "99999999999999TB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("d").is_err());
    }

    #[test]
    fn tombstoned_writes_are_409_and_too_large_413() {
        let t = kith::store::Error::Tombstoned {
            path: Path::parse("/a").unwrap(),
            tombstone: Timestamp::from_micros(2),
            write: Timestamp::from_micros(1),
        };
        let e = ApiError::from(Error::from(t));
        assert_eq!((e.status, e.code), (StatusCode::CONFLICT, "tombstoned"));
        let t = kith::store::Error::TooLarge {
            limit: kith::store::Limit::BlobSize,
            size: 2,
            max: 1,
        };
        let e = ApiError::from(Error::from(t));
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
