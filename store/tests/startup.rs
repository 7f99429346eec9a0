//! Opening a store does work bounded by a constant, not by what it holds:
//! what fjall replays from its journal into memory stays under a few MiB
//! after a crash (`kill -9`) and near nothing after a clean close, and the
//! journal files left to read stay under one file's worth however many
//! entries were written. Times are measured in the `startup` bench; these
//! tests assert the work that makes them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};
use common::{device, p};
use kith_store::{NamespaceId, Options, Store};

const CHILD_DIR: &str = "KITH_STARTUP_CHILD_DIR";
const CHILD_POSTS: &str = "KITH_STARTUP_CHILD_POSTS";

/// Most bytes a start may replay into memory after a crash: the store's
/// bound on unflushed writes (4 MiB) with room for flushes in flight.
const REPLAY_AFTER_CRASH: u64 = 16 << 20;
/// Most bytes a start may replay after a clean close.
const REPLAY_AFTER_CLOSE: u64 = 64 << 10;
/// Most journal bytes a start reads after a clean close: the file being
/// written (the store has fjall start the next one at a flush past 8 MiB)
/// and what was written between that flush and the next.
const JOURNAL_LEFT: u64 = 16 << 20;
/// Most journal bytes a start reads after a crash: older files too, which
/// fjall deletes only once every keyspace has flushed past them.
const JOURNAL_LEFT_AFTER_CRASH: u64 = 32 << 20;

fn options() -> Options {
    Options::new(device(1))
}

fn person(i: u64) -> NamespaceId {
    let mut b = [2; 32];
    b[..8].copy_from_slice(&(i % 251).to_be_bytes());
    NamespaceId::from_bytes(b)
}

/// `len` letters that do not compress (Automerge deflates what it saves).
fn text(i: u64, len: usize) -> String {
    let mut state = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect()
}

/// Post `i`, with `text_len` bytes of text, in one of 251 namespaces.
fn post(store: &Store, i: u64, text_len: usize) {
    let text = text(i, text_len);
    store
        .edit_document(&person(i), &p(&format!("/feed/friends/{i:016x}")), |d| {
            d.put(ROOT, "text", text.as_str())?;
            d.put(ROOT, "time", i)
        })
        .unwrap()
        .0
        .unwrap();
}

fn assert_post(store: &Store, i: u64) {
    let doc = store
        .document(&person(i), &p(&format!("/feed/friends/{i:016x}")))
        .unwrap()
        .unwrap_or_else(|| panic!("acknowledged post {i} lost"));
    assert_eq!(doc.get(ROOT, "time").unwrap().unwrap().0.as_u64(), Some(i));
}

/// 6,000 posts of 6 KiB: about 30 MB in the journal, twice the bound.
const POSTS: u64 = 6_000;
const TEXT: usize = 6144;

/// The writer. Does nothing unless started by the parent test.
#[test]
fn startup_child() {
    let (Ok(dir), Ok(n)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_POSTS)) else {
        return;
    };
    let store = Store::open(&dir, options()).unwrap();
    for i in 0..n.parse().unwrap() {
        post(&store, i, TEXT);
    }
    println!("WRITTEN");
    // Killed here, with everything acknowledged and nothing closed.
    std::thread::sleep(std::time::Duration::from_secs(600));
}

#[test]
fn a_start_after_kill_9_replays_a_bounded_journal_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "startup_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_POSTS, POSTS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The harness prints the test name on the same line.
    let written = lines.any(|l| l.is_ok_and(|l| l.ends_with("WRITTEN")));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(written, "the writer did not finish");

    let store = Store::open(dir.path(), options()).unwrap();
    let recovery = store.recovery();
    eprintln!("after kill -9 at {POSTS} posts of {TEXT} bytes: {recovery:?}");
    assert!(
        recovery.replayed_bytes <= REPLAY_AFTER_CRASH,
        "replayed {} bytes into memory (bound {REPLAY_AFTER_CRASH})",
        recovery.replayed_bytes
    );
    assert!(
        recovery.journal_bytes <= JOURNAL_LEFT_AFTER_CRASH,
        "{} journal bytes (bound {JOURNAL_LEFT_AFTER_CRASH})",
        recovery.journal_bytes
    );
    for i in 0..POSTS {
        assert_post(&store, i);
    }
}

#[test]
fn a_start_after_a_clean_close_replays_nearly_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    for i in 0..POSTS {
        post(&store, i, TEXT);
    }
    drop(store);
    let store = Store::open(dir.path(), options()).unwrap();
    let recovery = store.recovery();
    eprintln!(
        "after a clean close at {} posts of {TEXT} bytes: {recovery:?}",
        POSTS
    );
    assert!(
        recovery.replayed_bytes <= REPLAY_AFTER_CLOSE,
        "replayed {} bytes into memory after a clean close",
        recovery.replayed_bytes
    );
    // Every open reads the journal file being written whole, flushed
    // writes too: its size bounds the start-up however large the store.
    assert!(
        recovery.journal_bytes <= JOURNAL_LEFT,
        "{} journal bytes to read after a clean close (bound {JOURNAL_LEFT})",
        recovery.journal_bytes
    );
    for i in 0..POSTS {
        assert_post(&store, i);
    }
}

/// The same bounds at 10,000 and at `KITH_STARTUP_POSTS` small posts
/// (default 200,000), with the open times printed. Not run by default:
/// `cargo test -p kith-store --release --test startup -- --ignored --nocapture`.
#[test]
#[ignore = "minutes of writes; run it with --ignored --nocapture"]
fn start_up_work_does_not_grow_from_10_000_to_200_000_posts() {
    use std::time::Instant;
    let n: u64 = std::env::var("KITH_STARTUP_POSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let mut written = 0;
    for size in [10_000, n] {
        let store = Store::open(dir.path(), options()).unwrap();
        while written < size {
            post(&store, written, 64);
            written += 1;
        }
        drop(store);
        let started = Instant::now();
        let store = Store::open(dir.path(), options()).unwrap();
        let took = started.elapsed();
        let recovery = store.recovery();
        println!("{size} posts: Store::open {took:.1?}, {recovery:?}");
        assert!(
            recovery.replayed_bytes <= REPLAY_AFTER_CLOSE,
            "{recovery:?}"
        );
        assert!(recovery.journal_bytes <= JOURNAL_LEFT, "{recovery:?}");
        assert_post(&store, size - 1);
    }
}
