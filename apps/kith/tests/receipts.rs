//! `kith receipts` right after `kith rm --remote`: who is pending and since
//! when, and `--wait`, which returns once every friend's device confirmed
//! and fails naming who is still pending when its time runs out.
//!
//! Real `kith serve --local-only` daemons (alice, bob, carol) with hourly
//! re-syncs, so receipts come only from the pushed deletion and the
//! catch-up of a friend coming back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{Daemon, KITH, POLL, WAIT, free_port, json, kith, ok};

/// A daemon whose node listens on `port`, so that after a restart it is
/// where alice's ticket of it says.
fn serve_on(data: &Path, port: u16) -> Daemon {
    Daemon::start_on(data, &format!("127.0.0.1:{port}"), 3600, true)
}

/// Alice with friends bob and carol (each on its port), who all hold
/// alice's post; its path.
fn friends_holding_a_post(root: &Path) -> ([PathBuf; 3], [u16; 3], Vec<Daemon>, String) {
    let people = ["alice", "bob", "carol"].map(|n| root.join(n));
    let ports = [free_port(), free_port(), free_port()];
    let mut daemons = Vec::new();
    for ((data, name), port) in people.iter().zip(["alice", "bob", "carol"]).zip(ports) {
        ok(data, &["init", "--name", name]);
        daemons.push(serve_on(data, port));
    }
    let ticket = |d: &Path| ok(d, &["ticket"]).trim().to_string();
    let alice = &people[0];
    let ta = ticket(alice);
    for (friend, name) in [(&people[1], "bob"), (&people[2], "carol")] {
        ok(alice, &["friend", "add", &ticket(friend), "--name", name]);
        ok(friend, &["friend", "add", &ta, "--name", "alice"]);
    }
    let post = json(alice, &["feed", "post", "to be taken back"]);
    let path = post["path"].as_str().unwrap().to_string();
    for friend in &people[1..] {
        ok(friend, &["sync", "alice"]);
        assert!(
            ok(friend, &["get", "alice", &path]).contains("to be taken back"),
            "{} does not hold the post",
            friend.display()
        );
    }
    (people, ports, daemons, path)
}

/// Waits until `name`'s device confirmed every deletion of `path` that
/// alice holds.
fn confirmed_by(alice: &Path, path: &str, name: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let list = json(alice, &["receipts", path]);
        let done = list.as_array().unwrap().iter().all(|d| {
            d["devices"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|dev| dev["name"] == name)
                .all(|dev| dev["confirmed_at"].is_u64())
        });
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not confirm in {WAIT:?}: {list}"
        );
        std::thread::sleep(POLL);
    }
}

#[test]
fn receipts_wait_returns_once_every_friend_confirmed() {
    let root = tempfile::tempdir().unwrap();
    let (people, ports, mut daemons, path) = friends_holding_a_post(root.path());
    let [alice, _, carol] = &people;
    // Carol is away: her receipt can only come once she is back.
    daemons.pop().unwrap().stop();
    ok(alice, &["rm", &path, "--remote"]);

    // Right after the rm: pending devices are named, with since when.
    let now = ok(alice, &["receipts", &path]);
    assert!(now.contains("requested ") && now.contains(" ago"), "{now}");
    assert!(
        now.lines()
            .any(|l| l.contains("carol") && l.contains("pending since")),
        "{now}"
    );

    // Bob, online, confirms at once; then --wait waits for carol alone.
    confirmed_by(alice, &path, "bob");
    let started = Instant::now();
    let mut waiting = Command::new(KITH)
        .arg("--data")
        .arg(alice)
        .args(["receipts", &path, "--wait"])
        .env_remove("KITH_DATA")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _carol = serve_on(carol, ports[2]);
    let status = loop {
        if let Some(status) = waiting.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > WAIT {
            let _ = waiting.kill();
            panic!("kith receipts --wait did not return in {WAIT:?}");
        }
        std::thread::sleep(POLL);
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    waiting
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    waiting
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("all receipts are in"), "{stdout}\n{stderr}");
    // Carol's receipt was printed as it arrived, as the second of two.
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("carol") && l.contains("deleted at") && l.contains("2/2")),
        "{stdout}"
    );
    let list = json(alice, &["receipts", &path]);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|d| d["confirmed"] == 2 && d["total"] == 2),
        "{list}"
    );
    // Waiting for what is complete returns at once.
    let again = json(alice, &["receipts", &path, "--wait"]);
    assert_eq!(again, list);
}

#[test]
fn receipts_wait_times_out_naming_the_friend_still_pending() {
    let root = tempfile::tempdir().unwrap();
    let (people, _, mut daemons, path) = friends_holding_a_post(root.path());
    let alice = &people[0];
    daemons.remove(1).stop(); // bob
    ok(alice, &["rm", &path, "--remote"]);
    confirmed_by(alice, &path, "carol");

    let started = Instant::now();
    let out = kith(alice, &["receipts", &path, "--wait", "--timeout", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < WAIT, "took {:?}", started.elapsed());
    let error = stderr
        .lines()
        .find(|l| l.starts_with("kith: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        error.contains("after 2 s") && error.contains("still pending") && error.contains("bob"),
        "{stderr}"
    );
    // Carol, who is online, is not named as pending.
    assert!(!error.contains("carol"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");

    // --timeout means nothing without --wait.
    let usage = kith(alice, &["receipts", &path, "--timeout", "2"]);
    assert_eq!(usage.status.code(), Some(2));
}
