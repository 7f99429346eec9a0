#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every route of the HTTP API (`API.md`), against real daemons on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine;
use futures_util::StreamExt;
use kith::{NamespaceId, Path};
use kith_app::client::{self, Client};
use kith_app::daemon::{Daemon, ServeOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(30);

/// Fields drop in order: the daemon (its store flushes as it closes)
/// before its folder.
struct Person {
    daemon: Daemon,
    api: Client,
    _dir: tempfile::TempDir,
}

async fn person(name: &str) -> Person {
    let dir = tempfile::tempdir().unwrap();
    let mut options = ServeOptions::new(dir.path());
    options.local_only = true;
    // Syncs happen when a test asks for them.
    options.resync = Some(Duration::from_secs(3600));
    options.max_json_body = 1 << 20;
    let daemon = Daemon::start(options).await.unwrap();
    let api = Client::remote(daemon.addr(), daemon.token());
    let p = Person {
        _dir: dir,
        daemon,
        api,
    };
    let (s, _) = p
        .call(Method::PUT, "/api/profile", Some(json!({ "name": name })))
        .await;
    assert_eq!(s, StatusCode::OK);
    p
}

impl Person {
    async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Body,
        extra: &[(header::HeaderName, &str)],
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = content_type {
            b = b.header(header::CONTENT_TYPE, t);
        }
        for (k, v) in extra {
            b = b.header(k, *v);
        }
        let res = self.api.send(b.body(body).unwrap()).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        (status, headers, client::read_body(res).await.unwrap())
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (ct, b) = match body {
            Some(v) => (Some("application/json"), Body::from(v.to_string())),
            None => (None, Body::empty()),
        };
        let (status, _, bytes) = self.raw(method, path, ct, b, &[]).await;
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, v)
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(method.clone(), path, body).await;
        assert!(s.is_success(), "{method} {path}: {s} {v}");
        v
    }

    fn ns(&self) -> String {
        self.daemon.node().namespace().to_string()
    }

    async fn befriend(&self, other: &Person, name: &str) {
        let ticket = other.ok(Method::GET, "/api/ticket", None).await["ticket"].clone();
        let (s, f) = self
            .call(
                Method::POST,
                "/api/friends",
                Some(json!({ "ticket": ticket, "name": name })),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{f}");
    }

    async fn timeline(&self) -> Vec<Value> {
        self.ok(Method::GET, "/api/feed", None).await["posts"]
            .as_array()
            .unwrap()
            .clone()
    }
}

/// Sends one HTTP/1.1 request by hand (no token added) and returns the
/// whole answer as text.
async fn raw_http(addr: SocketAddr, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn identity_ticket_and_profile() {
    let alice = person("alice").await;
    let id = alice.ok(Method::GET, "/api/id", None).await;
    assert_eq!(id["namespace"], alice.ns());
    assert_eq!(id["device"], alice.daemon.node().device().to_string());
    assert_eq!(id["name"], "alice");

    // The page learns the text limit here; it is the one posts are held to
    // (in bytes of UTF-8: "é" is two).
    let limit = id["limits"]["text_bytes"].as_u64().unwrap() as usize;
    assert_eq!(limit, 64 << 10);
    let post = |text: String| json!({ "text": text, "audience": "me" });
    let (s, v) = alice
        .call(
            Method::POST,
            "/api/feed/posts",
            Some(post("a".repeat(limit - 1) + "é")),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains(&limit.to_string()),
        "{v}"
    );
    alice
        .ok(
            Method::POST,
            "/api/feed/posts",
            Some(post("a".repeat(limit))),
        )
        .await;

    let t = alice.ok(Method::GET, "/api/ticket", None).await;
    let ticket: kith::Ticket = t["ticket"].as_str().unwrap().parse().unwrap();
    assert_eq!(ticket.namespace.to_string(), alice.ns());

    let p = alice
        .ok(Method::PUT, "/api/profile", Some(json!({ "bio": "hi" })))
        .await;
    assert_eq!(p, json!({ "name": "alice", "bio": "hi", "avatar": null }));
    assert_eq!(alice.ok(Method::GET, "/api/profile", None).await, p);
    alice.daemon.shutdown().await.unwrap();
}

async fn put_avatar(
    p: &Person,
    content_type: &str,
    body: impl Into<Body>,
) -> (StatusCode, HeaderMap, Bytes) {
    p.raw(
        Method::PUT,
        "/api/profile/avatar",
        Some(content_type),
        body.into(),
        &[],
    )
    .await
}

/// A small SVG picture, as a profile picture.
const PICTURE: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><circle cx="4" cy="4" r="4" fill="#fa0"/></svg>"##;

#[tokio::test]
async fn a_profile_picture_reaches_friends_beside_posts_and_comments() {
    let alice = person("alice").await;
    let bob = person("bob").await;

    // Bad pictures are refused with a reason, and change nothing.
    let (s, _, b) = put_avatar(&alice, "text/html", "<script>").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b:?}");
    assert!(String::from_utf8_lossy(&b).contains("image"), "{b:?}");
    let (s, _, _) = put_avatar(&alice, "image/png", Body::empty()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, b) = put_avatar(&alice, "image/png", vec![0; (2 << 20) + 1]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b:?}");
    let p = alice.ok(Method::GET, "/api/profile", None).await;
    assert_eq!(p["avatar"], Value::Null);

    // A picture: the profile names it, the API serves it.
    let (s, _, b) = put_avatar(&alice, "image/svg+xml", PICTURE).await;
    assert_eq!(s, StatusCode::OK, "{b:?}");
    let p: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(p["name"], "alice");
    assert_eq!(p["avatar"]["media_type"], "image/svg+xml");
    assert_eq!(p["avatar"]["size"], PICTURE.len());
    let url = p["avatar"]["url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&format!("/api/entry/{}/profile/avatar?v=", alice.ns())),
        "{url}"
    );
    let (s, headers, bytes) = alice.raw(Method::GET, &url, None, Body::empty(), &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(bytes, PICTURE.as_bytes());
    // Friends' files never run scripts with the page's origin.
    assert_eq!(headers[header::CONTENT_SECURITY_POLICY], "sandbox");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(
        alice.ok(Method::GET, "/api/id", None).await["avatar"],
        url.as_str()
    );
    // A new picture gets a new URL, so pages show the new one.
    let (s, _, b) = put_avatar(&alice, "image/svg+xml", PICTURE.replace("fa0", "0af")).await;
    assert_eq!(s, StatusCode::OK);
    let newer: Value = serde_json::from_slice(&b).unwrap();
    assert_ne!(newer["avatar"]["url"], url.as_str());
    let url = newer["avatar"]["url"].as_str().unwrap().to_string();

    // Bob, a friend, sees it beside alice's name, her posts and comments.
    alice.befriend(&bob, "bob").await;
    bob.befriend(&alice, "alice").await;
    let post = alice
        .ok(
            Method::POST,
            "/api/feed/posts",
            Some(json!({ "text": "new picture!" })),
        )
        .await;
    assert_eq!(post["author_avatar"], url.as_str());
    alice
        .ok(
            Method::POST,
            "/api/feed/comments",
            Some(
                json!({ "post": { "author": "me", "id": post["id"] }, "text": "do you like it?" }),
            ),
        )
        .await;
    bob.ok(Method::POST, "/api/sync/alice", None).await;
    let friends = bob.ok(Method::GET, "/api/friends", None).await;
    assert_eq!(friends[0]["avatar"], url.as_str(), "{friends}");
    let seen = bob.timeline().await;
    let shown = seen.iter().find(|p| p["id"] == post["id"]).unwrap();
    assert_eq!(shown["author_avatar"], url.as_str(), "{shown}");
    assert_eq!(shown["comments"][0]["author_avatar"], url.as_str());
    let (s, _, bytes) = bob.raw(Method::GET, &url, None, Body::empty(), &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(bytes, PICTURE.replace("fa0", "0af").as_bytes());
    // Bob has none: his posts carry no picture.
    let own = bob
        .ok(
            Method::POST,
            "/api/feed/posts",
            Some(json!({ "text": "hi" })),
        )
        .await;
    assert_eq!(own["author_avatar"], Value::Null);

    // Removing it removes it from bob's node too.
    let removed = alice.ok(Method::DELETE, "/api/profile/avatar", None).await;
    assert!(removed["deletion"].is_string(), "{removed}");
    let (s, _) = alice
        .call(Method::DELETE, "/api/profile/avatar", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        alice.ok(Method::GET, "/api/profile", None).await["avatar"],
        Value::Null
    );
    bob.ok(Method::POST, "/api/sync/alice", None).await;
    let friends = bob.ok(Method::GET, "/api/friends", None).await;
    assert_eq!(friends[0]["avatar"], Value::Null, "{friends}");
    alice.daemon.shutdown().await.unwrap();
    bob.daemon.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_api_needs_the_token_and_refuses_other_origins() {
    let alice = person("alice").await;
    let addr = alice.daemon.addr();
    let token = alice.daemon.token().to_string();

    // No token, a wrong token: 401 with a JSON error.
    let answer = raw_http(
        addr,
        &format!("GET /api/id HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("\"code\":\"unauthorized\""), "{answer}");
    let wrong = Client::remote(addr, "not-the-token");
    let res = wrong
        .send(Request::get("/api/friends").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // The page URL sets the token as a strict, HTTP-only cookie ...
    let answer = raw_http(
        addr,
        &format!("GET /?token={token} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 303"), "{answer}");
    let cookie = format!("kith_token_{}", addr.port());
    assert!(
        answer.contains(&format!(
            "{cookie}={token}; HttpOnly; SameSite=Strict; Path=/"
        )),
        "{answer}"
    );
    assert!(
        answer.to_lowercase().contains("location: /\r\n"),
        "{answer}"
    );
    // ... which then opens the API.
    let answer = raw_http(
        addr,
        &format!(
            "GET /api/id HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}={token}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(&alice.ns()), "{answer}");
    let answer = raw_http(
        addr,
        &format!("GET /?token=wrong HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    // The page's files need no token; no CORS header is ever sent.
    let answer = raw_http(
        addr,
        &format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.to_lowercase().contains("content-type: text/html"));
    assert!(!answer.to_lowercase().contains("access-control-allow"));

    // Another origin is refused even with the token; the own origin is not.
    let (s, _, body) = alice
        .raw(
            Method::GET,
            "/api/id",
            None,
            Body::empty(),
            &[(header::ORIGIN, "http://evil.example")],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body:?}");
    let own = format!("http://{addr}");
    let (s, _, _) = alice
        .raw(
            Method::GET,
            "/api/id",
            None,
            Body::empty(),
            &[
                (header::ORIGIN, own.as_str()),
                (header::HOST, &addr.to_string()),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // Unknown routes are JSON 404s.
    let (s, v) = alice.call(Method::GET, "/api/nope", None).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    alice.daemon.shutdown().await.unwrap();
}

/// A request from a page on `origin` with `token` (or none), through a
/// client holding that token.
async fn from_site(
    addr: SocketAddr,
    token: &str,
    method: Method,
    path: &str,
    origin: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let site = Client::remote(addr, token);
    let mut b = Request::builder().method(method).uri(path);
    if let Some(o) = origin {
        b = b.header(header::ORIGIN, o);
    }
    let body = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let res = site.send(b.body(body).unwrap()).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let bytes = client::read_body(res).await.unwrap();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, v)
}

fn cors(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn only_an_approved_origin_gets_cors_and_only_with_its_own_token() {
    let alice = person("alice").await;
    let addr = alice.daemon.addr();
    let owner = alice.daemon.token().to_string();
    let site = "http://127.0.0.1:9";

    // Before approval: nothing usable, even with the owner's token, and no
    // CORS header on the answer or the preflight.
    let (s, h, _) = from_site(addr, &owner, Method::GET, "/api/id", Some(site), None).await;
    assert_eq!((s, cors(&h)), (StatusCode::FORBIDDEN, None));
    let answer = raw_http(
        addr,
        &format!(
            "OPTIONS /api/feed HTTP/1.1\r\nHost: {addr}\r\nOrigin: {site}\r\nAccess-Control-Request-Method: GET\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        !answer.to_lowercase().contains("access-control-allow"),
        "{answer}"
    );
    // Origins in another spelling than a browser's, or not origins at all.
    for bad in [
        "http://127.0.0.1:9/",
        "HTTP://127.0.0.1:9",
        "null",
        "http://x.org/path",
    ] {
        let (s, h, _) = from_site(addr, &owner, Method::GET, "/api/pair", Some(bad), None).await;
        assert_eq!((s, cors(&h)), (StatusCode::FORBIDDEN, None), "{bad}");
    }

    // The page asks to pair: open to every origin, and answered to it.
    let answer = raw_http(
        addr,
        &format!(
            "OPTIONS /api/pair HTTP/1.1\r\nHost: {addr}\r\nOrigin: {site}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    assert!(
        answer
            .to_lowercase()
            .contains(&format!("access-control-allow-origin: {site}\r\n")),
        "{answer}"
    );
    let (s, h, asked) = from_site(
        addr,
        "",
        Method::POST,
        "/api/pair",
        Some(site),
        Some(json!({})),
    )
    .await;
    assert_eq!((s, cors(&h)), (StatusCode::CREATED, Some(site)), "{asked}");
    assert_eq!(asked["origin"], site);
    let code = asked["code"].as_str().unwrap().to_string();
    let request = asked["request"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 9, "{code}");
    let claim = json!({ "request": request });
    let (s, _, _) = from_site(
        addr,
        "",
        Method::POST,
        "/api/pair/claim",
        Some(site),
        Some(claim.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    // Another origin cannot claim it.
    let (s, _, _) = from_site(
        addr,
        "",
        Method::POST,
        "/api/pair/claim",
        Some("http://127.0.0.1:10"),
        Some(claim.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A pairing body is bounded.
    let (s, _, _) = from_site(
        addr,
        "",
        Method::POST,
        "/api/pair",
        Some(site),
        Some(json!({ "x": "a".repeat(4096) })),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);

    // The owner approves: with a wrong code nothing, without one a hint.
    let (s, v) = alice
        .call(
            Method::POST,
            "/api/web/origins",
            Some(json!({ "origin": site, "code": "AAAA-AAAA" })),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = alice
        .call(
            Method::POST,
            "/api/web/origins",
            Some(json!({ "origin": site })),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains(&code), "{v}");
    let (s, v) = alice
        .call(
            Method::POST,
            "/api/web/origins",
            Some(json!({ "origin": "http://x.org/" })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = alice
        .call(
            Method::POST,
            "/api/web/origins",
            Some(json!({ "origin": site, "code": code })),
        )
        .await;
    assert_eq!(
        (s, &v["paired"]),
        (StatusCode::CREATED, &json!(true)),
        "{v}"
    );
    let (s, h, v) = from_site(
        addr,
        "",
        Method::POST,
        "/api/pair/claim",
        Some(site),
        Some(claim.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The answer carrying the token is never cached.
    assert_eq!(h.get(header::CACHE_CONTROL).unwrap(), "no-store");
    let token = v["token"].as_str().unwrap().to_string();
    assert_ne!(token, owner);
    // Handed over once.
    let (s, _, _) = from_site(
        addr,
        "",
        Method::POST,
        "/api/pair/claim",
        Some(site),
        Some(claim),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The origin's token works from the origin, with CORS naming it exactly.
    let (s, h, v) = from_site(addr, &token, Method::GET, "/api/id", Some(site), None).await;
    assert_eq!((s, cors(&h)), (StatusCode::OK, Some(site)), "{v}");
    assert_eq!(v["namespace"], alice.ns());
    assert!(h.get_all(header::VARY).iter().any(|v| v == "Origin"));
    let (s, h, post) = from_site(
        addr,
        &token,
        Method::POST,
        "/api/feed/posts",
        Some(site),
        Some(json!({ "text": "from the web app", "audience": "me" })),
    )
    .await;
    assert_eq!((s, cors(&h)), (StatusCode::CREATED, Some(site)), "{post}");
    let answer = raw_http(
        addr,
        &format!(
            "OPTIONS /api/feed/posts HTTP/1.1\r\nHost: {addr}\r\nOrigin: {site}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    let lower = answer.to_lowercase();
    assert!(
        lower.contains(&format!("access-control-allow-origin: {site}\r\n")),
        "{answer}"
    );
    assert!(
        lower.contains("access-control-allow-headers: authorization, content-type"),
        "{answer}"
    );
    assert!(
        !lower.contains("access-control-allow-origin: *"),
        "{answer}"
    );
    // ... but not without its origin, not from another origin, not with
    // the owner's token, and never for what only the owner may do.
    let (s, _, _) = from_site(addr, &token, Method::GET, "/api/id", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, h, _) = from_site(
        addr,
        &token,
        Method::GET,
        "/api/id",
        Some("http://127.0.0.1:10"),
        None,
    )
    .await;
    assert_eq!((s, cors(&h)), (StatusCode::FORBIDDEN, None));
    let (s, h, _) = from_site(addr, &owner, Method::GET, "/api/id", Some(site), None).await;
    assert_eq!((s, cors(&h)), (StatusCode::UNAUTHORIZED, Some(site)));
    for (method, path) in [
        (Method::GET, "/api/web/origins"),
        (Method::POST, "/api/devices"),
        (Method::DELETE, "/api/everything"),
    ] {
        let (s, _, v) = from_site(addr, &token, method, path, Some(site), None).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("owner_only")),
            "{path}"
        );
    }
    // A web app is not told which sites are allowed.
    let (s, _, v) = from_site(addr, &token, Method::GET, "/api/status", Some(site), None).await;
    assert_eq!((s, &v["web_origins"]), (StatusCode::OK, &json!([])), "{v}");
    // GET /api/pair tells the page it is approved.
    let (s, _, v) = from_site(addr, "", Method::GET, "/api/pair", Some(site), None).await;
    assert_eq!((s, &v["approved"]), (StatusCode::OK, &json!(true)));

    // The status lists the origin, never its token; the file is private.
    let st = alice.ok(Method::GET, "/api/status", None).await;
    assert_eq!(st["web_origins"][0]["origin"], site, "{st}");
    assert!(!st.to_string().contains(&token));
    let file = alice._dir.path().join(kith_app::origins::ORIGINS_FILE);
    assert!(std::fs::read_to_string(&file).unwrap().contains(site));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // An open event stream of the origin ends when it is revoked.
    let site_client = Client::remote(addr, &token);
    let res = site_client
        .send(
            Request::get("/api/events")
                .header(header::ORIGIN, site)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut stream = res.into_body().into_data_stream();
    let (s, v) = alice
        .call(
            Method::DELETE,
            "/api/web/origins?origin=http%3A%2F%2F127.0.0.1%3A8",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains(site),
        "the known origins are named: {v}"
    );
    let (s, _) = alice
        .call(
            Method::DELETE,
            "/api/web/origins?origin=http%3A%2F%2F127.0.0.1%3A9",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    tokio::time::timeout(WAIT, async {
        while let Some(chunk) = stream.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await
    .expect("the revoked origin's event stream did not end");
    let (s, h, _) = from_site(addr, &token, Method::GET, "/api/id", Some(site), None).await;
    assert_eq!((s, cors(&h)), (StatusCode::FORBIDDEN, None));
    let (_, _, v) = from_site(addr, "", Method::GET, "/api/pair", Some(site), None).await;
    assert_eq!(v["approved"], json!(false));
    let st = alice.ok(Method::GET, "/api/status", None).await;
    assert_eq!(st["web_origins"], json!([]));
    alice.daemon.shutdown().await.unwrap();
}

/// The `name=value` of the cookie an answer sets.
fn set_cookie(answer: &str) -> String {
    answer
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no cookie set: {answer}"))
        .to_string()
}

#[tokio::test]
async fn two_daemons_pages_work_in_one_browser() {
    // Cookies ignore ports: a browser sends every 127.0.0.1 cookie to both
    // daemons. Each daemon's cookie has its own name, so opening bob's page
    // does not replace alice's token.
    let (alice, bob) = (person("alice").await, person("bob").await);
    let mut jar = Vec::new();
    for p in [&alice, &bob] {
        let addr = p.daemon.addr();
        let answer = raw_http(
            addr,
            &format!(
                "GET /?token={} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                p.daemon.token()
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 303"), "{answer}");
        jar.push(set_cookie(&answer));
    }
    let names: Vec<&str> = jar.iter().map(|c| c.split('=').next().unwrap()).collect();
    assert_ne!(names[0], names[1], "both daemons set the same cookie");
    let cookies = jar.join("; ");
    for p in [&alice, &bob] {
        let addr = p.daemon.addr();
        let answer = raw_http(
            addr,
            &format!(
                "GET /api/id HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookies}\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(&p.ns()), "{answer}");
    }
    // The other daemon's cookie alone does not open the API.
    let addr = alice.daemon.addr();
    let answer = raw_http(
        addr,
        &format!(
            "GET /api/id HTTP/1.1\r\nHost: {addr}\r\nCookie: {}\r\nConnection: close\r\n\r\n",
            jar[1]
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    alice.daemon.shutdown().await.unwrap();
    bob.daemon.shutdown().await.unwrap();
}

#[tokio::test]
async fn entries_hold_documents_and_blobs_with_ranges() {
    let alice = person("alice").await;
    let me = alice.ns();

    // A JSON object is a document; writing again replaces the root's keys.
    let v = alice
        .ok(
            Method::PUT,
            "/api/entry/notes/today",
            Some(json!({ "text": "hello", "tags": ["a", "b"] })),
        )
        .await;
    assert_eq!(v, json!({ "path": "/notes/today", "kind": "document" }));
    alice
        .ok(
            Method::PUT,
            "/api/entry/notes/today",
            Some(json!({ "text": "bye" })),
        )
        .await;
    let doc = alice
        .ok(Method::GET, &format!("/api/entry/{me}/notes/today"), None)
        .await;
    assert_eq!(doc, json!({ "text": "bye" }));
    assert_eq!(
        alice
            .ok(Method::GET, "/api/entry/me/notes/today", None)
            .await,
        doc
    );

    // Anything else is a blob with its media type, served with ranges.
    let bytes: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let (s, _, body) = alice
        .raw(
            Method::PUT,
            "/api/entry/photos/cat.png",
            Some("image/png"),
            Body::from(bytes.clone()),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body:?}");
    let (s, h, body) = alice
        .raw(
            Method::GET,
            "/api/entry/me/photos/cat.png",
            None,
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[header::CONTENT_TYPE], "image/png");
    assert_eq!(h[header::ACCEPT_RANGES], "bytes");
    assert_eq!(body.as_ref(), bytes.as_slice());
    let (s, h, body) = alice
        .raw(
            Method::GET,
            "/api/entry/me/photos/cat.png",
            None,
            Body::empty(),
            &[(header::RANGE, "bytes=10-19")],
        )
        .await;
    assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    assert_eq!(h[header::CONTENT_RANGE], "bytes 10-19/100000");
    assert_eq!(body.as_ref(), &bytes[10..20]);
    let (s, h, _) = alice
        .raw(
            Method::GET,
            "/api/entry/me/photos/cat.png",
            None,
            Body::empty(),
            &[(header::RANGE, "bytes=200000-")],
        )
        .await;
    assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(h[header::CONTENT_RANGE], "bytes */100000");

    // Listing, by prefix and page.
    let page = alice
        .ok(
            Method::GET,
            &format!("/api/entries/{me}?prefix=/photos"),
            None,
        )
        .await;
    assert_eq!(page["entries"][0]["path"], "/photos/cat.png");
    assert_eq!(page["entries"][0]["kind"], "blob");
    assert_eq!(page["entries"][0]["size"], 100_000);
    assert_eq!(page["entries"][0]["media_type"], "image/png");
    assert!(page["entries"][0]["hash"].is_string());
    assert_eq!(page["next"], Value::Null);
    let page = alice.ok(Method::GET, "/api/entries/me?limit=1", None).await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    let next = page["next"].as_str().unwrap().to_string();
    let page2 = alice
        .ok(
            Method::GET,
            &format!("/api/entries/me?limit=1&after={next}"),
            None,
        )
        .await;
    assert_ne!(page2["entries"][0]["path"], page["entries"][0]["path"]);

    // Errors: missing, malformed, too large.
    let (s, v) = alice
        .call(Method::GET, "/api/entry/me/nothing/here", None)
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (s, _) = alice
        .call(Method::GET, "/api/entries/not-a-friend", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = alice
        .call(Method::PUT, "/api/entry/notes/x", Some(json!([1, 2])))
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
    let huge = json!({ "text": "x".repeat(2 << 20) });
    let (s, v) = alice
        .call(Method::PUT, "/api/entry/notes/huge", Some(huge))
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large"))
    );

    // Deleting a path removes it; deleting nothing is a 404.
    let v = alice
        .ok(Method::DELETE, "/api/entry/notes?remote=true", None)
        .await;
    assert!(v["deletion"].is_string());
    let (s, _) = alice
        .call(Method::GET, "/api/entry/me/notes/today", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = alice.call(Method::DELETE, "/api/entry/notes", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    alice.daemon.shutdown().await.unwrap();
}

#[tokio::test]
async fn posts_with_attachments_and_bad_posts() {
    let alice = person("alice").await;
    let (s, p) = alice
        .call(
            Method::POST,
            "/api/feed/posts",
            Some(json!({
                "text": "look", "audience": "me",
                "attachments": [{ "name": "a.txt", "media_type": "text/plain", "data": "aGVsbG8=" }],
            })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!(p["audience"], "me");
    assert_eq!(p["mine"], true);
    assert!(p["path"].as_str().unwrap().starts_with("/private/"));
    assert_eq!(p["attachments"][0]["name"], "a.txt");
    assert_eq!(p["attachments"][0]["size"], 5);
    let url = p["attachments"][0]["url"].as_str().unwrap();
    let (s, h, body) = alice.raw(Method::GET, url, None, Body::empty(), &[]).await;
    assert_eq!((s, body.as_ref()), (StatusCode::OK, &b"hello"[..]));
    assert_eq!(h[header::CONTENT_TYPE], "text/plain");

    let (s, _) = alice
        .call(
            Method::POST,
            "/api/feed/posts",
            Some(json!({ "text": "x", "audience": "everyone" })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = alice
        .call(
            Method::POST,
            "/api/feed/posts",
            Some(json!({ "text": "x", "attachments": [{ "name": "a", "data": "!!" }] })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = alice
        .call(Method::POST, "/api/feed/posts", Some(json!({ "nope": 1 })))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = alice
        .call(Method::DELETE, "/api/feed/posts/0000000000000000", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    alice.daemon.shutdown().await.unwrap();
}

#[tokio::test]
async fn friends_grants_feed_sync_revoke_and_receipts() {
    let alice = person("alice").await;
    let bob = person("bob").await;
    alice.befriend(&bob, "bob").await;
    bob.befriend(&alice, "alice").await;

    // A friend may read the friends audience from the start.
    let friends = alice.ok(Method::GET, "/api/friends", None).await;
    assert_eq!(friends[0]["namespace"], bob.ns());
    assert_eq!(friends[0]["name"], "bob");
    let prefixes = friends[0]["prefixes"].as_array().unwrap();
    assert!(prefixes.contains(&json!("/feed/friends")), "{prefixes:?}");
    // Names are unique; tickets are checked.
    let ticket = bob.ok(Method::GET, "/api/ticket", None).await["ticket"].clone();
    let carol = person("carol").await;
    let carol_ticket = carol.ok(Method::GET, "/api/ticket", None).await["ticket"].clone();
    let (s, _) = alice
        .call(
            Method::POST,
            "/api/friends",
            Some(json!({ "ticket": carol_ticket, "name": "bob" })),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, v) = alice
        .call(
            Method::POST,
            "/api/friends",
            Some(json!({ "ticket": "kith1nope" })),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_ticket"))
    );
    let _ = ticket;

    // Close friends: a grant with an expiry.
    let (s, g) = alice
        .call(
            Method::POST,
            "/api/grants",
            Some(json!({ "friend": "bob", "prefix": "/feed/close", "expires": "30d" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    assert_eq!(g["prefix"], "/feed/close");
    assert_eq!(g["name"], "bob");
    assert!(g["expires"].as_u64().unwrap() > g["issued"].as_u64().unwrap());
    let grants = alice.ok(Method::GET, "/api/grants", None).await;
    assert!(
        grants
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == g["id"])
    );
    let (s, v) = alice
        .call(
            Method::POST,
            "/api/grants",
            Some(json!({ "friend": "zed", "prefix": "/feed" })),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_friend"))
    );

    // Posts reach bob when he syncs, with the attachment fetched on demand.
    let hello = alice
        .ok(
            Method::POST,
            "/api/feed/posts",
            Some(json!({
                "text": "hello friends", "audience": "friends",
                "attachments": [{ "name": "p.bin", "media_type": "application/octet-stream", "data": "AAEC" }],
            })),
        )
        .await;
    alice
        .ok(
            Method::POST,
            "/api/feed/posts",
            Some(json!({ "text": "close one", "audience": "close" })),
        )
        .await;
    alice
        .ok(
            Method::POST,
            "/api/feed/posts",
            Some(json!({ "text": "only me", "audience": "me" })),
        )
        .await;
    // Posts may already have arrived live; after the sync they are there.
    let report = bob.ok(Method::POST, "/api/sync/alice", None).await;
    assert!(report["entries"].is_u64(), "{report}");
    assert!(report["duration_ms"].is_u64());
    let texts: Vec<Value> = bob
        .timeline()
        .await
        .iter()
        .map(|p| p["text"].clone())
        .collect();
    assert!(texts.contains(&json!("hello friends")), "{texts:?}");
    assert!(texts.contains(&json!("close one")), "{texts:?}");
    assert!(!texts.contains(&json!("only me")), "{texts:?}");
    let seen = bob.timeline().await;
    let post = seen.iter().find(|p| p["id"] == hello["id"]).unwrap();
    assert_eq!(post["author_name"], "alice");
    assert_eq!(post["mine"], false);
    let url = post["attachments"][0]["url"].as_str().unwrap();
    let (s, _, body) = bob.raw(Method::GET, url, None, Body::empty(), &[]).await;
    assert_eq!((s, body.as_ref()), (StatusCode::OK, &[0u8, 1, 2][..]));
    // Bob reads alice's entries by her name.
    let listed = bob
        .ok(Method::GET, "/api/entries/alice?prefix=/feed", None)
        .await;
    assert!(!listed["entries"].as_array().unwrap().is_empty());

    // Bob comments in his namespace; alice sees it under her post.
    let (s, c) = bob
        .call(
            Method::POST,
            "/api/feed/comments",
            Some(json!({ "post": { "author": "alice", "id": hello["id"] }, "text": "nice" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert!(c["path"].as_str().unwrap().starts_with("/feed/comments/"));
    alice.ok(Method::POST, "/api/sync/bob", None).await;
    let mine = alice.timeline().await;
    let post = mine.iter().find(|p| p["id"] == hello["id"]).unwrap();
    assert_eq!(post["comments"][0]["text"], "nice");
    assert_eq!(post["comments"][0]["author_name"], "bob");
    let (s, _) = bob
        .call(
            Method::POST,
            "/api/feed/comments",
            Some(json!({ "post": { "author": "alice", "id": "nope" }, "text": "?" })),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Revoking close friends: the next close post does not reach bob.
    let r = alice
        .ok(
            Method::POST,
            "/api/revoke",
            Some(json!({ "friend": "bob", "prefix": "/feed/close", "delete": false })),
        )
        .await;
    assert_eq!(r["revoked"], json!([g["id"]]));
    assert_eq!(r["deletion"], Value::Null);
    let (s, _) = alice
        .call(
            Method::POST,
            "/api/revoke",
            Some(json!({ "friend": "bob", "prefix": "/feed/close" })),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    alice
        .ok(
            Method::POST,
            "/api/feed/posts",
            Some(json!({ "text": "close two", "audience": "close" })),
        )
        .await;
    bob.ok(Method::POST, "/api/sync/alice", None).await;
    let texts: Vec<Value> = bob
        .timeline()
        .await
        .iter()
        .map(|p| p["text"].clone())
        .collect();
    assert!(!texts.contains(&json!("close two")), "{texts:?}");

    // Deleting a post removes it from bob's node, who confirms.
    let id = hello["id"].as_str().unwrap();
    let d = alice
        .ok(Method::DELETE, &format!("/api/feed/posts/{id}"), None)
        .await;
    let deletion = d["deletion"].as_str().unwrap().to_string();
    bob.ok(Method::POST, "/api/sync/alice", None).await;
    assert!(!bob.timeline().await.iter().any(|p| p["id"] == id));
    let all = alice.ok(Method::GET, "/api/deletions", None).await;
    let one = all
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == deletion.as_str())
        .unwrap()
        .clone();
    assert_eq!(one["prefix"], hello["path"]);
    assert_eq!(
        (one["confirmed"].as_u64(), one["total"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(one["devices"][0]["name"], "bob");
    assert!(one["devices"][0]["confirmed_at"].is_u64());
    assert_eq!(
        alice
            .ok(Method::GET, &format!("/api/deletions/{deletion}"), None)
            .await,
        one
    );
    let (s, _) = alice.call(Method::GET, "/api/deletions/00", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Revoke and delete: bob deletes what he was given; alice keeps it.
    let (s, g) = alice
        .call(
            Method::POST,
            "/api/grants",
            Some(json!({ "friend": "bob", "prefix": "/shared" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    alice
        .ok(
            Method::PUT,
            "/api/entry/shared/plan",
            Some(json!({ "text": "trip" })),
        )
        .await;
    bob.ok(Method::POST, "/api/sync/alice", None).await;
    let (s, _) = bob
        .call(Method::GET, "/api/entry/alice/shared/plan", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let r = alice
        .ok(
            Method::POST,
            "/api/revoke",
            Some(json!({ "friend": "bob", "prefix": "/shared", "delete": true })),
        )
        .await;
    assert_eq!(r["revoked"], json!([g["id"]]));
    let asked = r["deletion"].as_str().unwrap().to_string();
    assert_eq!(r["deletions"], json!([asked]));
    bob.ok(Method::POST, "/api/sync/alice", None).await;
    let (s, v) = bob
        .call(Method::GET, "/api/entry/alice/shared/plan", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, _) = alice
        .call(Method::GET, "/api/entry/me/shared/plan", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let one = alice
        .ok(Method::GET, &format!("/api/deletions/{asked}"), None)
        .await;
    assert_eq!(
        (one["confirmed"].as_u64(), one["total"].as_u64()),
        (Some(1), Some(1)),
        "{one}"
    );

    // Removing a friend.
    let (s, _) = alice.call(Method::DELETE, "/api/friends/bob", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(alice.ok(Method::GET, "/api/friends", None).await, json!([]));
    let (s, _) = alice.call(Method::DELETE, "/api/friends/bob", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = alice.call(Method::POST, "/api/sync/bob", None).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_friend"))
    );
    for p in [alice, bob, carol] {
        p.daemon.shutdown().await.unwrap();
    }
}

/// Reads server-sent events until one contains all of `needles`.
async fn await_event(
    stream: &mut (impl futures_util::Stream<Item = Result<Bytes, axum::Error>> + Unpin),
    seen: &mut String,
    needles: &[&str],
) {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(block) = seen
                .split("\n\n")
                .find(|b| needles.iter().all(|n| b.contains(n)))
            {
                let block = block.to_string();
                *seen = seen.replacen(&block, "", 1);
                return;
            }
            let chunk = stream.next().await.expect("the stream ended").unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no event with {needles:?} in {seen:?}"));
}

#[tokio::test]
async fn events_stream_changes_friends_and_receipts() {
    let alice = person("alice").await;
    let bob = person("bob").await;
    let res = alice
        .api
        .send(Request::get("/api/events").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut stream = res.into_body().into_data_stream();
    let mut seen = String::new();

    let post = alice
        .ok(
            Method::POST,
            "/api/feed/posts",
            Some(json!({ "text": "hi" })),
        )
        .await;
    let path = post["path"].as_str().unwrap();
    await_event(&mut stream, &mut seen, &["event: entry", path, "\"put\""]).await;

    alice.befriend(&bob, "bob").await;
    await_event(&mut stream, &mut seen, &["event: friend", &bob.ns()]).await;
    bob.befriend(&alice, "alice").await;
    bob.ok(Method::POST, "/api/sync/alice", None).await;

    let d = alice
        .ok(
            Method::DELETE,
            &format!("/api/feed/posts/{}", post["id"].as_str().unwrap()),
            None,
        )
        .await;
    await_event(
        &mut stream,
        &mut seen,
        &["event: entry", path, "\"deleted\""],
    )
    .await;
    bob.ok(Method::POST, "/api/sync/alice", None).await;
    let deletion = d["deletion"].as_str().unwrap();
    await_event(
        &mut stream,
        &mut seen,
        &["event: receipt", deletion, &bob.ns()],
    )
    .await;

    // Friends' changes arrive too.
    bob.ok(
        Method::POST,
        "/api/feed/posts",
        Some(json!({ "text": "yo" })),
    )
    .await;
    alice.ok(Method::POST, "/api/sync/bob", None).await;
    await_event(
        &mut stream,
        &mut seen,
        &["event: entry", &bob.ns(), "/feed/friends/"],
    )
    .await;
    drop(stream);
    alice.daemon.shutdown().await.unwrap();
    bob.daemon.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_prepared_device_is_invited_and_joins() {
    let alice = person("alice").await;
    alice
        .ok(
            Method::PUT,
            "/api/entry/notes/n",
            Some(json!({ "text": "mine" })),
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let device = kith::prepare_device(dir.path()).unwrap();
    let (s, v) = alice
        .call(
            Method::POST,
            "/api/devices",
            Some(json!({ "device": device.to_string() })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let invite: kith::DeviceInvite = v["invite"].as_str().unwrap().parse().unwrap();
    let laptop = kith::Node::builder(dir.path())
        .network(kith::NetworkMode::LocalOnly)
        .join_namespace(invite)
        .spawn()
        .await
        .unwrap();
    assert_eq!(laptop.namespace(), alice.daemon.node().namespace());
    laptop.sync_now(&laptop.namespace()).await.unwrap();
    let path = kith::Path::parse("/notes/n").unwrap();
    assert!(
        laptop
            .store()
            .get(&laptop.namespace(), &path)
            .unwrap()
            .is_some()
    );
    let (s, _) = alice
        .call(
            Method::POST,
            "/api/devices",
            Some(json!({ "device": "nope" })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    laptop.shutdown().await.unwrap();
    alice.daemon.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_root_is_deleted_only_when_asked_for_by_name() {
    let alice = person("alice").await;
    alice
        .ok(
            Method::PUT,
            "/api/entry/notes/a",
            Some(json!({ "text": "keep me" })),
        )
        .await;
    // Every spelling of `/` is refused, and deletes nothing.
    for target in [
        "/api/entry",
        "/api/entry/",
        "/api/entry//",
        "/api/entry///",
        "/api/entry/%2F",
        "/api/entry/?remote=true",
    ] {
        let (s, v) = alice.call(Method::DELETE, target, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "DELETE {target}: {v}");
    }
    let (s, v) = alice.call(Method::DELETE, "/api/entry//", None).await;
    assert_eq!(v["code"], "whole_namespace", "{s} {v}");
    assert_eq!(
        alice.ok(Method::GET, "/api/deletions", None).await,
        json!([])
    );
    alice.ok(Method::GET, "/api/entry/me/notes/a", None).await;
    alice.ok(Method::GET, "/api/profile", None).await;

    // The explicit call needs the namespace's own id.
    for target in [
        "/api/everything".to_string(),
        "/api/everything?confirm=".to_string(),
        "/api/everything?confirm=someone-else".to_string(),
    ] {
        let (s, v) = alice.call(Method::DELETE, &target, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "DELETE {target}: {v}");
        assert_eq!(v["code"], "confirm", "{v}");
    }
    alice.ok(Method::GET, "/api/entry/me/notes/a", None).await;
    let done = alice
        .ok(
            Method::DELETE,
            &format!("/api/everything?confirm={}", alice.ns()),
            None,
        )
        .await;
    assert!(done["deletion"].is_string(), "{done}");
    let (s, _) = alice.call(Method::GET, "/api/entry/me/notes/a", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_daemon_answers_only_to_its_own_host_and_stays_on_it() {
    let alice = person("alice").await;
    let addr = alice.daemon.addr();
    let token = alice.daemon.token().to_string();
    let port = addr.port();

    // A page on another name that rebinds its DNS to 127.0.0.1 sends its
    // own name as Host: refused, even with the token.
    for host in [
        "evil.example",
        "evil.example:80",
        &format!("evil.example:{port}"),
    ] {
        for target in ["/", "/api/id"] {
            let answer = raw_http(
                addr,
                &format!(
                    "GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
                ),
            )
            .await;
            assert!(
                answer.starts_with("HTTP/1.1 403"),
                "{host} {target}: {answer}"
            );
            assert!(answer.contains("forbidden_host"), "{answer}");
        }
    }
    for host in [addr.to_string(), format!("localhost:{port}")] {
        let answer = raw_http(
            addr,
            &format!(
                "GET /api/id HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }

    // The login redirect stays on this host whatever the path looks like.
    for path in ["//evil.example/", "/\\evil.example/", "///evil.example"] {
        let answer = raw_http(
            addr,
            &format!(
                "GET {path}?token={token} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 303"), "{path}: {answer}");
        let location = answer
            .lines()
            .find_map(|l| {
                l.to_lowercase()
                    .strip_prefix("location: ")
                    .map(str::to_string)
            })
            .unwrap_or_default();
        assert!(
            location.starts_with('/')
                && !location.starts_with("//")
                && !location.starts_with("/\\"),
            "{path} redirects to {location:?}"
        );
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_header_is_closed() {
    let alice = person("alice").await;
    let addr = alice.daemon.addr();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET /api/id HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
        .await
        .unwrap();
    // The header never ends; the daemon closes the connection.
    let mut out = Vec::new();
    let closed = tokio::time::timeout(
        kith_app::daemon::HEADER_READ_TIMEOUT + Duration::from_secs(10),
        s.read_to_end(&mut out),
    )
    .await;
    assert!(closed.is_ok(), "the half-sent request was kept open");
    // The daemon still serves others.
    alice.ok(Method::GET, "/api/id", None).await;
}

/// Every page of `alice`'s timeline of `limit` posts, from the top; calls
/// `between` after each page (to write while the walk goes on).
async fn walk_timeline(
    p: &Person,
    limit: usize,
    mut between: impl AsyncFnMut(usize),
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut before: Option<String> = None;
    for page in 0.. {
        assert!(page < 10_000, "the walk does not end");
        let route = match &before {
            Some(c) => format!("/api/feed?limit={limit}&before={c}"),
            None => format!("/api/feed?limit={limit}"),
        };
        let v = p.ok(Method::GET, &route, None).await;
        let posts = v["posts"].as_array().unwrap();
        assert!(posts.len() <= limit, "{route}: {} posts", posts.len());
        out.extend(posts.iter().cloned());
        between(page).await;
        match v["next"].as_str() {
            Some(c) => before = Some(c.to_string()),
            None => {
                assert!(v["next"].is_null(), "{v}");
                return out;
            }
        }
    }
    unreachable!()
}

fn post_key(p: &Value) -> (String, String) {
    (
        p["author"].as_str().unwrap().to_string(),
        p["id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn a_timeline_of_many_friends_is_walked_page_by_page_while_posts_arrive() {
    let alice = person("alice").await;
    let mut friends = Vec::new();
    for name in ["bob", "carol", "dave"] {
        let f = person(name).await;
        alice.befriend(&f, name).await;
        f.befriend(&alice, "alice").await;
        friends.push((name, f));
    }
    // 3 friends and alice: 240 posts, interleaved in time.
    let mut expected = Vec::new();
    for i in 0..60 {
        for who in std::iter::once(&alice).chain(friends.iter().map(|(_, f)| f)) {
            let post = who
                .ok(
                    Method::POST,
                    "/api/feed/posts",
                    Some(json!({ "text": format!("post {i}"), "audience": "friends" })),
                )
                .await;
            expected.push(post_key(&post));
        }
    }
    for (name, _) in &friends {
        alice
            .ok(Method::POST, &format!("/api/sync/{name}"), None)
            .await;
    }
    // Newest first is the reverse of the order they were written in.
    expected.reverse();

    // A walk in pages of 7; after every page alice and bob post again.
    let bob = &friends[0].1;
    let mut added = Vec::new();
    let walked = walk_timeline(&alice, 7, async |page| {
        for who in [&alice, bob] {
            let post = who
                .ok(
                    Method::POST,
                    "/api/feed/posts",
                    Some(
                        json!({ "text": format!("during the walk {page}"), "audience": "friends" }),
                    ),
                )
                .await;
            added.push(post_key(&post));
        }
        alice.ok(Method::POST, "/api/sync/bob", None).await;
    })
    .await;
    let got: Vec<_> = walked.iter().map(post_key).collect();
    assert_eq!(got.len(), expected.len(), "every post once, nothing new");
    assert_eq!(got, expected, "newest first");
    let times: Vec<u64> = walked.iter().map(|p| p["time"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]));

    // A new walk from the top: the posts written meanwhile come first.
    let again = walk_timeline(&alice, 100, async |_| {}).await;
    let got: Vec<_> = again.iter().map(post_key).collect();
    added.reverse();
    assert_eq!(got[..added.len()], added[..]);
    assert_eq!(got[added.len()..], expected[..]);
    // The default page is 50 posts.
    let first = alice.ok(Method::GET, "/api/feed", None).await;
    assert_eq!(first["posts"].as_array().unwrap().len(), 50);
    assert!(first["next"].is_string());
    // A post found by its id, with its author.
    let (author, id) = &expected[0];
    let found = alice
        .ok(Method::GET, &format!("/api/feed/posts/{id}"), None)
        .await;
    assert_eq!(found["posts"][0]["author"], author.as_str());
    let none = alice.ok(Method::GET, "/api/feed/posts/nope", None).await;
    assert_eq!(none["posts"], json!([]));

    alice.daemon.shutdown().await.unwrap();
    for (_, f) in friends {
        f.daemon.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn bad_limits_and_cursors_are_refused() {
    let alice = person("alice").await;
    for i in 0..3 {
        alice
            .ok(
                Method::POST,
                "/api/feed/posts",
                Some(json!({ "text": format!("{i}"), "audience": "me" })),
            )
            .await;
    }
    let long = "A".repeat(10_000);
    for query in [
        "limit=0".to_string(),
        "limit=501".to_string(),
        "limit=-1".to_string(),
        "limit=abc".to_string(),
        "limit=99999999999999999999999".to_string(),
        "limit=".to_string(),
        "before=".to_string(),
        "before=not-a-cursor".to_string(),
        "before=%00%FF".to_string(),
        format!("before={long}"),
        // A cursor of another version, and one cut short.
        "before=CQcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH"
            .to_string(),
        "before=AQcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH".to_string(),
    ] {
        let (s, v) = alice
            .call(Method::GET, &format!("/api/feed?{query}"), None)
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request")),
            "{query}: {v}"
        );
        assert!(v["error"].as_str().unwrap().len() < 300, "{v}");
    }
    // The largest page, and the last page, which has no next.
    let v = alice.ok(Method::GET, "/api/feed?limit=500", None).await;
    assert_eq!(v["posts"].as_array().unwrap().len(), 3);
    assert!(v["next"].is_null());
    let v = alice.ok(Method::GET, "/api/feed?limit=2", None).await;
    let next = v["next"].as_str().unwrap();
    let v = alice
        .ok(
            Method::GET,
            &format!("/api/feed?limit=2&before={next}"),
            None,
        )
        .await;
    assert_eq!(v["posts"].as_array().unwrap().len(), 1);
    assert!(v["next"].is_null());
    alice.daemon.shutdown().await.unwrap();
}

#[tokio::test]
async fn deleted_revoked_and_unfriended_posts_leave_the_pages() {
    let alice = person("alice").await;
    let bob = person("bob").await;
    alice.befriend(&bob, "bob").await;
    bob.befriend(&alice, "alice").await;
    alice
        .ok(
            Method::POST,
            "/api/grants",
            Some(json!({ "friend": "bob", "prefix": "/feed/close" })),
        )
        .await;
    let mut posts = Vec::new();
    for (text, audience) in [("one", "friends"), ("two", "friends"), ("close", "close")] {
        let p = alice
            .ok(
                Method::POST,
                "/api/feed/posts",
                Some(json!({ "text": text, "audience": audience })),
            )
            .await;
        posts.push(p);
    }
    bob.ok(Method::POST, "/api/sync/alice", None).await;
    let texts = async |p: &Person| -> Vec<String> {
        walk_timeline(p, 1, async |_| {})
            .await
            .iter()
            .map(|p| p["text"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(texts(&bob).await, ["close", "two", "one"]);

    // A deleted post (a tombstone reaches bob).
    let id = posts[0]["id"].as_str().unwrap();
    alice
        .ok(Method::DELETE, &format!("/api/feed/posts/{id}"), None)
        .await;
    bob.ok(Method::POST, "/api/sync/alice", None).await;
    assert_eq!(texts(&bob).await, ["close", "two"]);
    assert_eq!(texts(&alice).await, ["close", "two"]);

    // A revoked grant whose data bob is asked to delete.
    alice
        .ok(
            Method::POST,
            "/api/revoke",
            Some(json!({ "friend": "bob", "prefix": "/feed/close", "delete": true })),
        )
        .await;
    bob.ok(Method::POST, "/api/sync/alice", None).await;
    assert_eq!(texts(&bob).await, ["two"]);
    assert_eq!(texts(&alice).await, ["close", "two"], "alice keeps hers");

    // Bob removes alice as a friend: her posts leave his timeline.
    bob.ok(
        Method::POST,
        "/api/feed/posts",
        Some(json!({ "text": "bob's", "audience": "friends" })),
    )
    .await;
    let (s, _) = bob.call(Method::DELETE, "/api/friends/alice", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(texts(&bob).await, ["bob's"]);
    // And a restart keeps all of that.
    let dir = bob._dir;
    bob.daemon.shutdown().await.unwrap();
    let mut options = ServeOptions::new(dir.path());
    options.local_only = true;
    options.resync = Some(Duration::from_secs(3600));
    let daemon = Daemon::start(options).await.unwrap();
    let api = Client::remote(daemon.addr(), daemon.token());
    let bob = Person {
        _dir: dir,
        daemon,
        api,
    };
    assert_eq!(texts(&bob).await, ["bob's"]);
    for p in [alice, bob] {
        p.daemon.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn the_daemon_indexes_posts_and_drops_deleted_ones_without_a_page_read() {
    let alice = person("alice").await;
    let store = alice.daemon.node().store().clone();
    let ns = alice.daemon.node().namespace();
    // The index's path keys of alice's namespace (see the timeline module).
    let prefix = [kith_app::timeline::KEY_PREFIX, b"3", ns.as_bytes()].concat();
    let indexed = move || {
        store
            .index_scan(&prefix, None, 100)
            .unwrap()
            .into_iter()
            .map(|(k, _)| {
                kith::Path::from_encoded(&k[prefix.len()..])
                    .unwrap()
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    let until = async |what: &str, ok: &dyn Fn(&[String]) -> bool| {
        tokio::time::timeout(WAIT, async {
            while !ok(&indexed()) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{what}: the index holds {:?}", indexed()));
    };
    let post = alice
        .ok(
            Method::POST,
            "/api/feed/posts",
            Some(json!({ "text": "soon gone", "audience": "friends" })),
        )
        .await;
    let path = post["path"].as_str().unwrap().to_string();
    until("the post is indexed", &|keys| keys.contains(&path)).await;
    let id = post["id"].as_str().unwrap();
    alice
        .ok(Method::DELETE, &format!("/api/feed/posts/{id}"), None)
        .await;
    until("the deleted post leaves the index", &|keys| {
        !keys.contains(&path)
    })
    .await;
    alice.daemon.shutdown().await.unwrap();
}

/// Friends' data is a cache: purged, a friend's posts stay in the timeline
/// marked loading and come back from their author, as does a photo; the
/// store holds neither until then. Settings are checked and kept.
#[tokio::test]
async fn purged_friends_posts_and_photos_load_again_from_their_author() {
    let alice = person("alice").await;
    let bob = person("bob").await;
    alice.befriend(&bob, "bob").await;
    bob.befriend(&alice, "alice").await;
    let photo: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let data = base64::engine::general_purpose::STANDARD.encode(&photo);
    let with_photo = alice
        .ok(
            Method::POST,
            "/api/feed/posts",
            Some(json!({
                "text": "a photo", "audience": "friends",
                "attachments": [{ "name": "p.jpg", "media_type": "image/jpeg", "data": data }],
            })),
        )
        .await;
    for i in 0..3 {
        alice
            .ok(
                Method::POST,
                "/api/feed/posts",
                Some(json!({ "text": format!("post {i}"), "audience": "friends" })),
            )
            .await;
    }
    bob.ok(Method::POST, "/api/sync/alice", None).await;
    let url = with_photo["attachments"][0]["url"].as_str().unwrap();
    let (s, _, body) = bob.raw(Method::GET, url, None, Body::empty(), &[]).await;
    assert_eq!((s, body.len()), (StatusCode::OK, photo.len()));
    let texts = |posts: &[Value]| -> Vec<String> {
        posts
            .iter()
            .map(|p| p["text"].as_str().unwrap().to_string())
            .collect()
    };
    let before = bob.timeline().await;
    assert_eq!(texts(&before), ["post 2", "post 1", "post 0", "a photo"]);
    let held = bob.ok(Method::GET, "/api/cache", None).await;
    assert!(held["documents"].as_u64().unwrap() >= 4, "{held}");
    assert_eq!(held["blobs"], 1, "{held}");
    assert_eq!(held["budget"], 4u64 << 30);

    let purged = bob.ok(Method::POST, "/api/cache/purge", None).await;
    assert!(
        purged["purged"]["documents"].as_u64().unwrap() >= 4,
        "{purged}"
    );
    assert_eq!(purged["purged"]["blobs"], 1);
    assert_eq!(
        (purged["documents"].as_u64(), purged["bytes"].as_u64()),
        (Some(0), Some(0))
    );
    // On disk: the posts' content and the photo are gone, the entries stay.
    let store = bob.daemon.node().store().clone();
    let owner: NamespaceId = alice.ns().parse().unwrap();
    let photo_hash = store
        .get(
            &owner,
            &Path::parse(&format!("{}/p.jpg", with_photo["path"].as_str().unwrap())).unwrap(),
        )
        .unwrap()
        .unwrap()
        .blob_hash()
        .unwrap();
    assert!(!store.has_blob(&photo_hash));
    let post_path = Path::parse(with_photo["path"].as_str().unwrap()).unwrap();
    assert!(store.is_purged(&owner, &post_path).unwrap());
    // A friend's profile is kept: it is read on every page.
    let profile = Path::parse("/profile").unwrap();
    assert!(store.get(&owner, &profile).unwrap().is_some());
    assert!(!store.is_purged(&owner, &profile).unwrap());

    // The timeline still lists every post, in order, loading; each comes
    // back from alice.
    let loading = bob.timeline().await;
    assert_eq!(loading.len(), 4);
    assert!(
        loading
            .iter()
            .all(|p| p["loading"] == true && p["text"] == ""),
        "{loading:?}"
    );
    let ids: Vec<_> = before.iter().map(|p| p["id"].clone()).collect();
    assert_eq!(
        loading.iter().map(|p| p["id"].clone()).collect::<Vec<_>>(),
        ids
    );
    tokio::time::timeout(WAIT, async {
        loop {
            let now = bob.timeline().await;
            if now.iter().all(|p| p["loading"] == false) {
                assert_eq!(texts(&now), ["post 2", "post 1", "post 0", "a photo"]);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the purged posts came back from alice");
    assert!(!store.is_purged(&owner, &post_path).unwrap());
    let (s, _, body) = bob.raw(Method::GET, url, None, Body::empty(), &[]).await;
    assert_eq!((s, body.as_ref()), (StatusCode::OK, &photo[..]));
    assert!(store.has_blob(&photo_hash));

    // Settings: a size and an age, kept; bad ones refused with a reason.
    let set = bob
        .ok(
            Method::PUT,
            "/api/cache",
            Some(json!({ "budget": "10MB", "max_age": "30d" })),
        )
        .await;
    assert_eq!(
        (set["budget"].as_u64(), set["max_age"].as_u64()),
        (Some(10_000_000), Some(30 * 86_400))
    );
    let set = bob
        .ok(Method::PUT, "/api/cache", Some(json!({ "max_age": null })))
        .await;
    assert_eq!(
        (set["budget"].as_u64(), set["max_age"].as_u64()),
        (Some(10_000_000), None)
    );
    for bad in [
        json!({ "budget": "lots" }),
        json!({ "budget": -1 }),
        json!({ "max_age": "soon" }),
        json!({ "colour": "blue" }),
    ] {
        let (s, v) = bob.call(Method::PUT, "/api/cache", Some(bad.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert!(!v["error"].as_str().unwrap_or("").is_empty(), "{v}");
    }
    // A budget of nothing purges what is held at once.
    let set = bob
        .ok(Method::PUT, "/api/cache", Some(json!({ "budget": 0 })))
        .await;
    assert!(set["purged"]["bytes"].as_u64().unwrap() > 0, "{set}");
    assert_eq!(set["bytes"], 0);
}
