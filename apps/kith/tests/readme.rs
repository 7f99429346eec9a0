#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The root README's shell snippets, run as written: every fenced block
//! after a `<!-- test: NAME -->` line. The lines of the `daemons` block are
//! started as `kith serve` processes; every other block runs in bash, in
//! one folder for the whole tour, with this build's `kith` first on `PATH`
//! and the `curl` block's functions defined. The one change made to the
//! text: the HTTP ports the README names become free ones. After each block
//! the test checks, with the CLI, what the block is meant to have done.
//!
//! The quickstart's commands are the demo (run by `tests/demo.rs`) and the
//! tests themselves.
//!
//! Needs bash, curl and jq: without them the tour fails when `CI=true` and
//! is skipped otherwise.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{Daemon, KITH, POLL, WAIT, free_port, json, ok};
use serde_json::Value;

/// The README, as the tests see it.
const README: &str = include_str!("../../../README.md");

/// The tested blocks of the README, by name.
fn blocks() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = README.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- test: ")
            .and_then(|l| l.strip_suffix(" -->"))
        else {
            continue;
        };
        assert_eq!(
            lines.next().map(str::trim),
            Some("```sh"),
            "the block {name} is not a sh block"
        );
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        let previous = out.insert(name.to_string(), body.join("\n"));
        assert!(previous.is_none(), "two blocks are called {name}");
    }
    out
}

#[test]
fn the_quickstart_runs_the_demo_then_every_test() {
    // `tests/demo.rs` runs `kith demo` (what `cargo run -p kith-app --
    // demo` runs) and checks what it serves; `cargo test --workspace` is
    // this very run.
    assert_eq!(
        blocks()["quickstart"],
        "cargo run -p kith-app -- demo\ncargo test --workspace"
    );
}

/// A command found on `PATH`.
fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The tour's folder, its daemons and the README's blocks.
struct Tour {
    dir: tempfile::TempDir,
    blocks: BTreeMap<String, String>,
    /// README address → the free one used instead.
    addresses: Vec<(String, String)>,
    /// Each person's `kith serve` command line (after `kith`), and daemon.
    serve: BTreeMap<String, Vec<String>>,
    daemons: BTreeMap<String, Daemon>,
    /// Blocks that define shell functions, run before every later block.
    prelude: String,
}

impl Tour {
    fn new() -> Self {
        let blocks = blocks();
        let mut addresses = Vec::new();
        let mut serve = BTreeMap::new();
        for line in blocks["daemons"].lines().filter(|l| !l.trim().is_empty()) {
            let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            assert_eq!(words[0], "kith", "{line}");
            let after = |flag: &str| {
                let at = words.iter().position(|w| w == flag).unwrap();
                words[at + 1].clone()
            };
            let address = after("--http");
            assert!(address.starts_with("127.0.0.1:"), "{line}");
            addresses.push((address, format!("127.0.0.1:{}", free_port())));
            serve.insert(after("--data"), words[1..].to_vec());
        }
        Self {
            dir: tempfile::tempdir().unwrap(),
            blocks,
            addresses,
            serve,
            daemons: BTreeMap::new(),
            prelude: String::new(),
        }
    }

    fn data(&self, person: &str) -> PathBuf {
        self.dir.path().join(person)
    }

    /// `text` with the README's addresses replaced by the tour's.
    fn localised(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (readme, here) in &self.addresses {
            text = text.replace(readme, here);
        }
        text
    }

    /// Starts `person`'s daemon with the README's command line.
    fn start(&mut self, person: &str) {
        let args: Vec<String> = self.serve[person]
            .iter()
            .map(|a| self.localised(a))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let daemon = Daemon::run(Some(self.dir.path()), &args, None);
        self.daemons.insert(person.to_string(), daemon);
    }

    fn stop(&mut self, person: &str) {
        self.daemons.remove(person).unwrap().stop();
    }

    /// Runs block `name` in bash and returns what it printed.
    fn run(&self, name: &str) -> String {
        let script = self.localised(&format!(
            "set -euo pipefail\n{}\n{}",
            self.prelude, self.blocks[name]
        ));
        let bin = Path::new(KITH).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(self.dir.path())
            .env("PATH", path)
            .env_remove("KITH_DATA")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            out.status.success(),
            "the README block {name} failed ({}):\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status
        );
        println!("--- {name}\n{stdout}");
        stdout
    }

    /// The texts of the posts in `person`'s timeline.
    fn timeline(&self, person: &str) -> Vec<Value> {
        json(&self.data(person), &["feed", "timeline"])["posts"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn sees(&self, person: &str, text: &str) -> bool {
        self.timeline(person).iter().any(|p| p["text"] == text)
    }
}

/// Checks `f` every [`POLL`] until it holds, for at most [`WAIT`].
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(POLL);
    }
}

#[test]
fn the_tour_of_the_four_journeys_runs_as_written() {
    let missing: Vec<&str> = ["bash", "curl", "jq"]
        .into_iter()
        .filter(|p| !installed(p))
        .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the README tour cannot run in CI: {missing:?} missing (.ci/run installs them)"
        );
        println!("skipping: the README tour needs {missing:?}");
        return;
    }
    let mut tour = Tour::new();
    let people = ["alice", "bob", "carol"];
    assert_eq!(
        tour.serve.keys().map(String::as_str).collect::<Vec<_>>(),
        people
    );

    tour.run("setup");
    for p in people {
        assert_eq!(json(&tour.data(p), &["id"])["name"], p);
        tour.start(p);
    }
    tour.run("friends");
    let names = |p: &str| -> Vec<String> {
        let mut names: Vec<String> = json(&tour.data(p), &["friend", "ls"])
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names("alice"), ["bob", "carol"]);
    assert_eq!(names("bob"), ["alice"]);
    tour.prelude = tour.blocks["curl"].clone();
    tour.run("curl");

    // 1. A feed on the store.
    let printed = tour.run("feed-cli");
    assert!(printed.contains("Morning swim at the lake"), "{printed}");
    let profile = json(&tour.data("alice"), &["profile"]);
    assert_eq!(profile["bio"], "Swims in cold lakes");
    assert_eq!(profile["avatar"]["media_type"], "image/svg+xml");
    let posts = tour.timeline("alice");
    let swim = posts
        .iter()
        .find(|p| p["text"] == "Morning swim at the lake")
        .unwrap();
    assert_eq!(swim["attachments"][0]["name"], "sun.svg");
    assert!(swim["author_avatar"].is_string(), "{swim}");
    assert!(
        posts
            .iter()
            .any(|p| p["text"] == "Dinner on Friday?" && p["audience"] == "close")
    );
    let printed = tour.run("feed-http");
    assert!(printed.contains("Posted over HTTP"), "{printed}");
    assert!(tour.sees("alice", "Posted over HTTP"));

    // 2. Subscribe: live, by `kith sync`, and after being offline.
    tour.run("subscribe-cli");
    assert!(tour.sees("bob", "Live to my friends"));
    eventually("the post reaches carol, who never syncs", || {
        tour.sees("carol", "Live to my friends")
    });
    tour.stop("bob");
    ok(&tour.data("alice"), &["feed", "post", "While bob was away"]);
    tour.start("bob");
    eventually("bob catches up by himself after his restart", || {
        tour.sees("bob", "While bob was away")
    });
    // Friends' data is a cache: purged, bob's timeline fetches it again.
    let printed = tour.run("cache-cli");
    assert!(printed.contains("budget set:"), "{printed}");
    assert!(printed.contains("purged:"), "{printed}");
    assert!(printed.contains("    Live to my friends"), "{printed}");
    let printed = tour.run("subscribe-http");
    assert!(printed.contains("\"entries\""), "{printed}");
    assert!(printed.contains("/feed/friends/"), "{printed}");

    // 3. Revoke.
    let close = "Close friends only, now without carol";
    tour.run("revoke-cli");
    assert!(tour.sees("bob", close));
    assert!(
        !tour.sees("carol", close),
        "a revoked friend received a post"
    );
    let printed = tour.run("revoke-http");
    assert!(
        printed.contains(r#"{"name":"bob","prefix":"/albums/summer"}"#),
        "{printed}"
    );
    let grants = json(&tour.data("alice"), &["grants"]);
    let revoked = |name: &str, prefix: &str| {
        grants
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == name && g["prefix"] == prefix && g["revoked"] == true)
    };
    assert!(revoked("carol", "/feed/close") && revoked("bob", "/albums/summer"));
    assert!(!tour.sees("carol", close));

    // 4. Remote deletion, with receipts; revoke and delete.
    let printed = tour.run("delete-cli");
    assert!(printed.contains("confirmed by"), "{printed}");
    for p in people {
        eventually("the post is gone everywhere", || {
            !tour.sees(p, "A post to take back")
        });
    }
    let all_confirmed = |count: usize| {
        let d = json(&tour.data("alice"), &["receipts"]);
        let d = d.as_array().unwrap();
        d.len() == count && d.iter().all(|d| d["confirmed"] == d["total"])
    };
    eventually(
        "both friends confirm, and bob the revoke and delete",
        || all_confirmed(2),
    );
    let deletions = json(&tour.data("alice"), &["receipts"]);
    let post = deletions
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["prefix"].as_str().unwrap().starts_with("/feed/friends/"))
        .unwrap();
    assert_eq!(post["total"], 2, "{deletions}");
    assert!(
        !tour.sees("bob", close),
        "bob still holds what revoke --delete asked him to delete"
    );
    assert!(tour.sees("alice", close), "alice keeps her own post");

    tour.run("delete-http");
    eventually("the deletion over HTTP is confirmed", || all_confirmed(3));
    assert!(!tour.sees("bob", "Another one to take back"));

    // Use kith from any web app: export, pair by hand, read, revoke.
    let printed = tour.run("web");
    assert!(tour.dir.path().join("site/index.html").is_file());
    assert!(tour.dir.path().join("site/manifest.webmanifest").is_file());
    assert!(
        printed.contains("allowed http://localhost:8080: its page is paired"),
        "{printed}"
    );
    assert!(
        printed.contains("web origin http://localhost:8080"),
        "{printed}"
    );
    assert!(
        printed.contains("revoked http://localhost:8080"),
        "{printed}"
    );
    // The token read the feed, and after the revoke the origin is refused.
    let last = printed.lines().last().unwrap_or("");
    assert_eq!(last, "403", "{printed}");
    let newest = &tour.timeline("alice")[0]["text"];
    assert!(
        printed.contains(newest.as_str().unwrap()),
        "the paired origin did not read the feed: {printed}"
    );
    let origins = json(&tour.data("alice"), &["web", "ls"]);
    assert_eq!(origins["origins"], serde_json::json!([]), "{origins}");
}
