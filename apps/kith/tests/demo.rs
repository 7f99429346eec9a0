#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `kith demo`: three befriended local nodes with sample content, each
//! serving its page.

mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use axum::http::Method;
use kith_app::client::Client;
use serde_json::Value;

use common::{POLL, WAIT};

fn client_for(url: &str) -> Client {
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, token) = rest.split_once("/?token=").unwrap();
    Client::remote(addr.parse().unwrap(), token)
}

async fn texts(c: &Client) -> Vec<Value> {
    let feed: Value = c.call(Method::GET, "/api/feed", None).await.unwrap();
    feed["posts"].as_array().unwrap().clone()
}

#[tokio::test]
async fn the_demo_serves_three_befriended_people_with_sample_posts() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["demo", "--json", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || common::first_line(stdout, "kith demo", WAIT))
        .await
        .unwrap();
    let urls: Value = serde_json::from_str(&line).unwrap();
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|n| {
        let url = urls[n].as_str().unwrap();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        client_for(url)
    });

    let id: Value = alice.call(Method::GET, "/api/id", None).await.unwrap();
    assert_eq!(id["name"], "alice");
    // Alice sees friends' posts and both comments under her first post.
    let posts = texts(&alice).await;
    let first = posts
        .iter()
        .find(|p| p["mine"] == true && !p["attachments"].as_array().unwrap().is_empty())
        .unwrap();
    let commenters: Vec<&str> = first["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["author_name"].as_str().unwrap())
        .collect();
    assert_eq!(commenters.len(), 2, "{first}");
    assert!(commenters.contains(&"bob") && commenters.contains(&"carol"));
    assert!(posts.iter().any(|p| p["author_name"] == "bob"));
    // Everyone has a profile picture, shown beside their posts.
    assert!(
        posts.iter().all(|p| p["author_avatar"].is_string()),
        "{posts:?}"
    );
    assert!(posts.iter().any(|p| p["author_name"] == "carol"));
    // Bob is a close friend of alice's; carol is not.
    let close = |posts: &[Value]| {
        posts
            .iter()
            .any(|p| p["author_name"] == "alice" && p["audience"] == "close")
    };
    assert!(close(&texts(&bob).await));
    assert!(!close(&texts(&carol).await));
    assert!(
        !texts(&carol).await.iter().any(|p| p["audience"] == "me"),
        "a private post left alice's node"
    );

    // The CLI reaches a demo node through its announced daemon.
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--data")
        .arg(dir.path().join("bob"))
        .args(["id", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let id: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(id["name"], "bob");

    // SIGTERM stops all three and withdraws their announcements.
    assert!(
        Command::new("kill")
            .arg(child.id().to_string())
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the demo did not stop");
        tokio::time::sleep(POLL).await;
    }
    for n in ["alice", "bob", "carol"] {
        assert!(!dir.path().join(n).join("daemon.json").exists());
    }
}
