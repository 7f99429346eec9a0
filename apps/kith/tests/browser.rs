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
//! The web app (`tests/browser/webapp.mjs`): alice's page passes chromium's
//! installability checks (manifest, icons, service worker); with her daemon
//! stopped a reload shows her last timeline marked offline, and a post
//! deleted meanwhile leaves it once the daemon is back; the page exported by
//! `kith web export`, served on a second origin, is refused before pairing,
//! posts and shows bob's post live after it, and is refused again after
//! `kith web revoke`. Screenshots of the feed, the friends view and the
//! deletion receipts, desktop and 390 px wide, in
//! `target/browser-artifacts/webapp/`.
//!
//! Needs `/usr/bin/chromium` (or `KITH_CHROMIUM`), `node`, and `npm ci` run
//! in `tests/browser/` (`.ci/run` does all three). Without them the test
//! fails when `CI=true` and is skipped otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, KITH, POLL, free_port, json, ok};

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

/// One browser at a time: the machines that run these have few cores.
static ONE_BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Whether the browser tests can run here; `false` (skip) outside CI.
fn prerequisites_met() -> bool {
    let missing = missing_prerequisites();
    if missing.is_empty() {
        return true;
    }
    let what = missing.join("; ");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the browser test cannot run in CI: missing {what} (.ci/run installs them)"
    );
    println!("skipping: the browser test needs {what}");
    false
}

/// Empties `dir` of files (screenshots of an earlier run), keeping folders.
fn clear_files(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::remove_file(path).unwrap();
        }
    }
}

/// Runs `node SCRIPT ARGS…` in the npm project and waits (at most
/// [`SCRIPT`]) until it exits successfully.
fn run_script(script: &str, args: &[&std::ffi::OsStr], shots: &Path) {
    let mut child = Script(
        Command::new("node")
            .arg(script_dir().join(script))
            .args(args)
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
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{script} did not finish within {SCRIPT:?}; screenshots in {}",
            shots.display()
        );
        std::thread::sleep(POLL);
    };
    assert!(
        status.success(),
        "{script} failed ({status}); its output is above, screenshots in {}",
        shots.display()
    );
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
    if !prerequisites_met() {
        return;
    }
    let _one = ONE_BROWSER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);

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
    clear_files(&shots);
    let (alice_url, bob_url) = (alice_daemon.url(), bob_daemon.url());
    run_script(
        "feed.mjs",
        &[alice_url.as_ref(), bob_url.as_ref(), shots.as_os_str()],
        &shots,
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

#[test]
fn the_web_app_installs_reads_offline_and_pairs_with_another_origin() {
    if !prerequisites_met() {
        return;
    }
    let _one = ONE_BROWSER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);

    let root = tempfile::tempdir().unwrap();
    let [alice, bob]: [PathBuf; 2] = ["alice", "bob"].map(|n| root.path().join(n));
    for (data, name) in [(&alice, "alice"), (&bob, "bob")] {
        ok(data, &["init", "--name", name]);
    }
    // Alice's page keeps one origin across restarts: one HTTP port.
    let http = format!("127.0.0.1:{}", free_port());
    let alice_daemon = Daemon::run(
        None,
        &[
            "--data",
            alice.to_str().unwrap(),
            "serve",
            "--local-only",
            "--http",
            &http,
            "--json",
        ],
        Some(2),
    );
    let _bob_daemon = Daemon::start(&bob, 2, false);
    let ticket = |d: &Path| ok(d, &["ticket"]).trim().to_string();
    let (ta, tb) = (ticket(&alice), ticket(&bob));
    ok(&alice, &["friend", "add", &tb, "--name", "bob"]);
    ok(&bob, &["friend", "add", &ta, "--name", "alice"]);
    // The script runs alice's daemon from here on.
    alice_daemon.stop();

    let site = root.path().join("site");
    let exported = ok(&alice, &["web", "export", site.to_str().unwrap()]);
    assert!(exported.contains("files of the page"), "{exported}");
    assert!(site.join("index.html").is_file() && site.join("sw.js").is_file());

    let shots = target_dir().join("browser-artifacts").join("webapp");
    clear_files(&shots);
    run_script(
        "webapp.mjs",
        &[
            KITH.as_ref(),
            alice.as_os_str(),
            http.as_ref(),
            bob.as_os_str(),
            site.as_os_str(),
            shots.as_os_str(),
        ],
        &shots,
    );
    for view in ["feed", "friends", "receipts"] {
        for size in ["desktop", "phone"] {
            let shot = format!("webapp-{view}-{size}.png");
            assert!(shots.join(&shot).is_file(), "no screenshot {shot}");
        }
    }
    // Revoked: the site's origin is gone from the node.
    let origins = json(&alice, &["web", "ls"]);
    assert_eq!(origins["origins"], serde_json::json!([]), "{origins}");
    println!("screenshots in {}", shots.display());
}
