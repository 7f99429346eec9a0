//! `kith demo`: three local nodes (alice, bob, carol), befriended, with
//! sample posts, comments and grants, each serving its page.
//!
//! Everything is set up through the same HTTP API the page and the CLI use.
//! The nodes run in loopback-only mode; each data folder is announced like
//! a daemon's, so `kith --data DIR/alice …` talks to the running demo.

use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, header};
use base64::Engine;
use serde_json::{Value, json};

use crate::client::Client;
use crate::daemon::{self, Daemon, ServeOptions};
use crate::error::{Error, Result};

/// The demo's people.
pub const PEOPLE: [&str; 3] = ["alice", "bob", "carol"];

/// How often the demo's nodes re-sync their friends.
const DEMO_RESYNC: Duration = Duration::from_secs(2);

/// A small picture for alice's first post.
const PICTURE: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="160" height="100" viewBox="0 0 160 100"><rect width="160" height="100" fill="#bfe3f5"/><circle cx="125" cy="28" r="14" fill="#ffd54a"/><path d="M0 100 L55 45 L95 85 L120 62 L160 100 Z" fill="#5b8c5a"/></svg>"##;

/// A profile picture: the person's initial on a disc of their colour.
fn picture_of(name: &str, hue: u32) -> String {
    let initial = name.chars().next().unwrap_or('?').to_uppercase();
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96" viewBox="0 0 96 96"><circle cx="48" cy="48" r="48" fill="hsl({hue} 60% 70%)"/><text x="48" y="62" font-family="sans-serif" font-size="44" font-weight="bold" text-anchor="middle" fill="hsl({hue} 50% 25%)">{initial}</text></svg>"##
    )
}

async fn call(c: &Client, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
    c.call(method, path, body.as_ref()).await
}

/// Starts the three nodes under `dir` (or a temporary folder), sets them up
/// if they are new, prints their page URLs and runs until stopped.
///
/// # Errors
/// Start-up or set-up errors.
pub async fn run(dir: Option<PathBuf>, json_out: bool) -> Result<()> {
    let (base, temporary) = match dir {
        Some(d) => (d, false),
        None => (
            std::env::temp_dir().join(format!("kith-demo-{}", std::process::id())),
            true,
        ),
    };
    let fresh = !daemon::has_identity(&base.join(PEOPLE[0]));
    let mut daemons = Vec::new();
    for name in PEOPLE {
        let mut options = ServeOptions::new(base.join(name));
        options.local_only = true;
        options.resync = Some(DEMO_RESYNC);
        daemons.push(Daemon::start(options).await?);
    }
    let result = async {
        if fresh {
            set_up(&daemons).await?;
        }
        let stop = daemon::StopSignals::listen();
        let urls: Vec<String> = daemons.iter().map(Daemon::page_url).collect();
        if json_out {
            let map: serde_json::Map<String, Value> = PEOPLE
                .iter()
                .zip(&urls)
                .map(|(n, u)| ((*n).to_string(), json!(u)))
                .collect();
            crate::output::print_json(&Value::Object(map));
        } else {
            out!(
                "kith demo: three friends on this machine (data in {})",
                base.display()
            );
            for (name, url) in PEOPLE.iter().zip(&urls) {
                out!("  {name:<6} {url}");
            }
            out!(
                "the CLI works on each: kith --data {} feed timeline",
                base.join(PEOPLE[0]).display()
            );
            out!("press Ctrl-C to stop");
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        stop.wait().await;
        Ok::<(), Error>(())
    }
    .await;
    for d in daemons {
        d.shutdown().await?;
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&base);
    }
    result
}

async fn set_up(daemons: &[Daemon]) -> Result<()> {
    let clients: Vec<Client> = daemons
        .iter()
        .map(|d| Client::remote(d.addr(), d.token()))
        .collect();
    let bios = [
        "Likes mountains and long walks.",
        "Bakes bread on Sundays.",
        "Grows tomatoes, mostly successfully.",
    ];
    for (((c, name), bio), hue) in clients.iter().zip(PEOPLE).zip(bios).zip([200, 30, 130]) {
        call(
            c,
            Method::PUT,
            "/api/profile",
            Some(json!({ "name": name, "bio": bio })),
        )
        .await?;
        let picture = Request::put("/api/profile/avatar")
            .header(header::CONTENT_TYPE, "image/svg+xml")
            .body(Body::from(picture_of(name, hue)))
            .map_err(|e| Error::BadInput(format!("bad request: {e}")))?;
        let _: Value = c.send_for_json(picture).await?;
    }
    let mut tickets = Vec::new();
    for c in &clients {
        tickets.push(call(c, Method::GET, "/api/ticket", None).await?["ticket"].clone());
    }
    for (i, c) in clients.iter().enumerate() {
        for (j, name) in PEOPLE.iter().enumerate() {
            if i != j {
                call(
                    c,
                    Method::POST,
                    "/api/friends",
                    Some(json!({ "ticket": tickets[j], "name": name })),
                )
                .await?;
            }
        }
    }
    let (alice, bob, carol) = (&clients[0], &clients[1], &clients[2]);
    // Bob is alice's close friend; carol is not.
    call(
        alice,
        Method::POST,
        "/api/grants",
        Some(json!({ "friend": "bob", "prefix": "/feed/close" })),
    )
    .await?;
    let picture = base64::engine::general_purpose::STANDARD.encode(PICTURE);
    let first = call(
        alice,
        Method::POST,
        "/api/feed/posts",
        Some(json!({
            "text": "Hello friends! My first post on kith: it lives on my own machine.",
            "audience": "friends",
            "attachments": [{ "name": "hills.svg", "media_type": "image/svg+xml", "data": picture }],
        })),
    )
    .await?;
    call(
        alice,
        Method::POST,
        "/api/feed/posts",
        Some(
            json!({ "text": "Close friends only: dinner at mine on Friday?", "audience": "close" }),
        ),
    )
    .await?;
    call(
        alice,
        Method::POST,
        "/api/feed/posts",
        Some(json!({ "text": "Note to self: water the plants.", "audience": "me" })),
    )
    .await?;
    call(
        bob,
        Method::POST,
        "/api/feed/posts",
        Some(json!({ "text": "Fresh sourdough today. Who wants a slice?", "audience": "friends" })),
    )
    .await?;
    call(
        carol,
        Method::POST,
        "/api/feed/posts",
        Some(json!({ "text": "The first tomatoes of the year are red!", "audience": "friends" })),
    )
    .await?;
    // Everyone catches up once, so that the pages open with content.
    for (i, c) in clients.iter().enumerate() {
        for (j, name) in PEOPLE.iter().enumerate() {
            if i != j {
                call(c, Method::POST, &format!("/api/sync/{name}"), None).await?;
            }
        }
    }
    let post = json!({ "author": first["author"], "id": first["id"] });
    call(
        bob,
        Method::POST,
        "/api/feed/comments",
        Some(json!({ "post": post, "text": "Lovely view!" })),
    )
    .await?;
    call(
        carol,
        Method::POST,
        "/api/feed/comments",
        Some(json!({ "post": post, "text": "Welcome, alice!" })),
    )
    .await?;
    for (i, c) in clients.iter().enumerate() {
        for (j, name) in PEOPLE.iter().enumerate() {
            if i != j {
                call(c, Method::POST, &format!("/api/sync/{name}"), None).await?;
            }
        }
    }
    Ok(())
}
