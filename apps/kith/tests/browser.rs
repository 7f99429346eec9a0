#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The feed page in a real browser: two `kith serve` daemons (alice and
//! bob, friends over loopback) and Debian's chromium driven by
//! `tests/browser/feed.mjs` (npm's playwright-core, which never downloads a
//! browser of its own), both pages in one browser profile (each daemon's
//! token cookie has its own name). On alice's page a profile picture is
//! chosen; the composer counts bytes against the server's text limit (64
//! KiB, from `GET /api/id`) and holds back a post one byte over it, which
//! the API refuses too; a post with an image is composed; bob's page shows it without
//! a reload, image and alice's picture rendered; bob comments and
//! alice's page shows the comment; alice deletes the post;
//! bob's page removes it; alice's page shows it deleted on 1 of 1 friends'
//! devices; alice's page shows the newest page of 45 more posts and loads
//! older pages as she scrolls, each post once, newest first, with a new
//! post still appearing on top. Screenshots of every step land in `target/browser-artifacts/`.
//!
//! Needs `/usr/bin/chromium` (or `KITH_CHROMIUM`), `node`, and `npm ci` run
//! in `tests/browser/` (`.ci/run` does all three). Without them the test
//! fails when `CI=true` and is skipped otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, KITH, POLL, json, ok};

/// How long the whole browser script may run (its own waits are shorter).
const SCRIPT: Duration = Duration::from_secs(300);

/// The npm project holding `feed.mjs` and its `node_modules`.
fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("KITH_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// The workspace's target folder: the `kith` binary lives in `<target>/<profile>/`.
fn target_dir() -> PathBuf {
    let kith = Path::new(KITH);
    kith.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// What is missing to run the browser, if anything.
fn missing_prerequisites() -> Vec<String> {
    let mut missing = Vec::new();
    let chromium = chromium();
    if !chromium.is_file() {
        missing.push(format!(
            "{} (apt-get install chromium, or set KITH_CHROMIUM)",
            chromium.display()
        ));
    }
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(node, Ok(status) if status.success()) {
        missing.push("node on PATH (Node.js 20 or newer)".to_string());
    }
    let playwright = script_dir().join("node_modules/playwright-core/package.json");
    if !playwright.is_file() {
        missing.push(format!(
            "{} (run `npm ci` in {})",
            playwright.display(),
            script_dir().display()
        ));
    }
    missing
}

/// Kills the browser script if the test ends early.
struct Script(Child);

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_post_with_an_image_reaches_a_friend_live_and_its_deletion_is_confirmed() {
    let missing = missing_prerequisites();
    if !missing.is_empty() {
        let what = missing.join("; ");
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the browser test cannot run in CI: missing {what} (.ci/run installs them)"
        );
        println!("skipping: the browser test needs {what}");
        return;
    }

    let root = tempfile::tempdir().unwrap();
    let [alice, bob]: [PathBuf; 2] = ["alice", "bob"].map(|n| root.path().join(n));
    for (data, name) in [(&alice, "alice"), (&bob, "bob")] {
        ok(data, &["init", "--name", name]);
    }
    let alice_daemon = Daemon::start(&alice, 2, false);
    let bob_daemon = Daemon::start(&bob, 2, false);

    // Friends both ways; adding a friend grants them the friends audience.
    let ticket = |d: &Path| ok(d, &["ticket"]).trim().to_string();
    let (ta, tb) = (ticket(&alice), ticket(&bob));
    ok(&alice, &["friend", "add", &tb, "--name", "bob"]);
    ok(&bob, &["friend", "add", &ta, "--name", "alice"]);
    let friends = json(&alice, &["friend", "ls"]);
    let bob_entry = friends
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "bob")
        .expect("alice lists bob");
    assert!(
        bob_entry["prefixes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "/feed/friends"),
        "bob may read alice's friends posts: {bob_entry}"
    );

    let shots = target_dir().join("browser-artifacts");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();

    let mut script = Script(
        Command::new("node")
            .arg(script_dir().join("feed.mjs"))
            .arg(alice_daemon.url())
            .arg(bob_daemon.url())
            .arg(&shots)
            .current_dir(script_dir())
            .env("KITH_CHROMIUM", chromium())
            // playwright-core must use Debian's chromium, never fetch one.
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .stdin(Stdio::null())
            .spawn()
            .expect("node could not start"),
    );
    let deadline = Instant::now() + SCRIPT;
    let status = loop {
        if let Some(status) = script.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the browser script did not finish within {SCRIPT:?}; screenshots in {}",
            shots.display()
        );
        std::thread::sleep(POLL);
    };
    assert!(
        status.success(),
        "the browser script failed ({status}); its output is above, screenshots in {}",
        shots.display()
    );
    for shot in [
        "4-bob-sees-post.png",
        "7-alice-deletion-confirmed.png",
        "9-alice-scrolled-to-the-oldest.png",
    ] {
        assert!(shots.join(shot).is_file(), "no screenshot {shot}");
    }
    println!("screenshots in {}", shots.display());
}
