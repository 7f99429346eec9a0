#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Being found again: a node that restarts (after SIGKILL, on a new port or
//! the one it kept) is reached by its friends live; a person's devices push
//! to each other both ways; friends reach the backup device when the first
//! one is away, knowing only the first one's ticket.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Daemon, POLL, WAIT, free_port, json, ok, timeline_texts};

/// How long a live post may take to arrive after its author restarted.
const LIVE: Duration = Duration::from_secs(5);

/// Waits until `data`'s timeline shows `text`, for at most `within`;
/// returns how long it took.
fn arrives(data: &Path, text: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if timeline_texts(data).iter().any(|t| t == text) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{text:?} did not arrive within {within:?}"
        );
        std::thread::sleep(POLL);
    }
}

/// A daemon started as a user would (no `--listen`), with hourly re-syncs:
/// only live push can deliver in time.
fn serve(data: &Path) -> Daemon {
    Daemon::start_default(data, 3600, true)
}

fn friends(a: (&Path, &str), b: (&Path, &str)) {
    let ticket = |d: &Path| ok(d, &["ticket"]).trim().to_string();
    let (ta, tb) = (ticket(a.0), ticket(b.0));
    ok(a.0, &["friend", "add", &tb, "--name", b.1]);
    ok(b.0, &["friend", "add", &ta, "--name", a.1]);
}

#[test]
fn an_owner_killed_and_restarted_is_reached_live_on_a_new_port_and_on_its_own() {
    let root = tempfile::tempdir().unwrap();
    let [alice, bob]: [PathBuf; 2] = ["alice", "bob"].map(|n| root.path().join(n));
    for (data, name) in [(&alice, "alice"), (&bob, "bob")] {
        ok(data, &["init", "--name", name]);
    }
    let a = serve(&alice);
    let _b = serve(&bob);
    friends((&alice, "alice"), (&bob, "bob"));
    ok(&alice, &["feed", "post", "before the crash"]);
    arrives(&bob, "before the crash", WAIT);

    // Killed, and started on another port than its ticket names.
    drop(a);
    let port = free_port();
    let a = Daemon::start_on(&alice, &format!("127.0.0.1:{port}"), 3600, true);
    ok(&alice, &["feed", "post", "after a restart on a new port"]);
    let took = arrives(&bob, "after a restart on a new port", LIVE);
    eprintln!("new port: arrived after {took:?}");

    // Killed again, and started as a user would: it keeps its port.
    drop(a);
    let _a = serve(&alice);
    let kept = std::fs::read_to_string(alice.join("port")).unwrap();
    assert_eq!(
        kept.trim(),
        port.to_string(),
        "the node listens where it did"
    );
    ok(&alice, &["feed", "post", "after a restart on its own port"]);
    let took = arrives(&bob, "after a restart on its own port", LIVE);
    eprintln!("same port: arrived after {took:?}");
}

/// Runs `kith device join` on `backup` with an invite made on `phone`.
fn join_backup(phone: &Path, backup: &Path) {
    let device = json(backup, &["device", "join"])["device"]
        .as_str()
        .unwrap()
        .to_string();
    let invite = ok(phone, &["device", "invite", &device]).trim().to_string();
    ok(backup, &["device", "join", &invite, "--local-only"]);
}

#[test]
fn a_phone_and_its_backup_push_both_ways_and_friends_reach_the_backup_alone() {
    let root = tempfile::tempdir().unwrap();
    let [phone, backup, bob]: [PathBuf; 3] =
        ["phone", "backup", "bob"].map(|n| root.path().join(n));
    ok(&phone, &["init", "--name", "alice"]);
    ok(&bob, &["init", "--name", "bob"]);
    let p = serve(&phone);
    join_backup(&phone, &backup);
    let _k = serve(&backup);
    let _b = serve(&bob);
    // Bob knows only the phone's ticket.
    friends((&phone, "alice"), (&bob, "bob"));

    ok(&phone, &["feed", "post", "written on the phone"]);
    let took = arrives(&backup, "written on the phone", LIVE);
    eprintln!("phone → backup: {took:?}");
    let took = arrives(&bob, "written on the phone", WAIT);
    eprintln!("phone → bob: {took:?}");
    // What arrived live leaves nothing for a catch-up to bring.
    let synced = ok(&bob, &["sync", "alice"]);
    assert!(synced.starts_with("up to date with alice"), "{synced}");
    // An unknown friend gets the hint once.
    let unknown = common::kith(&bob, &["sync", "nobody"]);
    assert_eq!(unknown.status.code(), Some(1));
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(err.contains("unknown friend \"nobody\""), "{err}");
    assert_eq!(err.matches("kith friend ls").count(), 1, "{err}");
    ok(&backup, &["feed", "post", "written on the backup"]);
    let took = arrives(&phone, "written on the backup", LIVE);
    eprintln!("backup → phone: {took:?}");
    let took = arrives(&bob, "written on the backup", WAIT);
    eprintln!("backup → bob: {took:?}");

    // The phone goes away; bob still catches up, from the backup. (The ids
    // are read first: a command on a stopped device's folder runs a node.)
    let phone_id = json(&phone, &["id"])["device"].clone();
    let backup_id = json(&backup, &["id"])["device"].clone();
    drop(p);
    ok(&backup, &["feed", "post", "while the phone is off"]);
    let started = Instant::now();
    let synced = json(&bob, &["sync", "alice"]);
    eprintln!("sync with the phone off: {:?}", started.elapsed());
    assert_eq!(synced["device"], backup_id, "served by the backup");
    arrives(&bob, "while the phone is off", LIVE);

    // Bob's view of the network says so.
    let status = json(&bob, &["status"]);
    let peer = |device: &serde_json::Value| {
        status["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["device"] == *device)
            .cloned()
            .unwrap_or_else(|| panic!("{device} is not in {status}"))
    };
    let b = peer(&backup_id);
    assert_eq!(b["reachable"], true, "{b}");
    assert_eq!(b["route"], "direct", "{b}");
    assert!(b["last_sync_ms"].as_u64().is_some(), "{b}");
    assert!(b["rtt_ms"].as_f64().is_some(), "{b}");
    let ph = peer(&phone_id);
    assert_eq!(ph["reachable"], false, "{ph}");
    assert!(ph["last_error"]["error"].as_str().is_some(), "{ph}");
    let text = ok(&bob, &["status"]);
    assert!(text.contains("direct to 127.0.0.1:"), "{text}");
    assert!(text.contains("not reachable now"), "{text}");
}
