//! Waits on a peer are bounded: a friend whose address swallows every
//! packet neither holds up syncs with other friends nor keeps the node from
//! stopping.
//!
//! The silent friend is a real device (its ticket is genuine) reached at an
//! address where a UDP socket receives and never answers, as a phone that
//! went to sleep or a laptop behind a router that drops packets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{WAIT, befriend, p, write_docs};
use kith::{NetworkMode, Node, SHUTDOWN_BOUND};

/// Longer than any bound the test asserts: an attempt to reach the silent
/// friend is still running when the node is asked to do something else.
const SLOW_CONNECT: Duration = Duration::from_secs(120);

async fn node(dir: &std::path::Path) -> Node {
    common::init_tracing();
    Node::builder(dir)
        .network(NetworkMode::LocalOnly)
        .live_push(false)
        .connect_timeout(SLOW_CONNECT)
        .spawn()
        .await
        .unwrap()
}

/// Alice, who knows Bob only at an address that never answers, and Carol,
/// a friend who answers and lets her read `/feed`. Returns the socket that
/// swallows what Alice sends Bob.
async fn alice_bob_and_carol(dir: &std::path::Path) -> (Node, Node, Node, tokio::net::UdpSocket) {
    let alice = node(&dir.join("alice")).await;
    let bob = node(&dir.join("bob")).await;
    let carol = node(&dir.join("carol")).await;
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut ticket = bob.ticket();
    ticket.addrs = vec![silent.local_addr().unwrap()];
    alice.add_friend(&ticket).await.unwrap();
    befriend(&alice, &carol).await;
    carol
        .grant(&alice.namespace(), &p("/feed"), None)
        .await
        .unwrap();
    write_docs(&carol, "/feed", 3).await;
    (alice, bob, carol, silent)
}

/// Starts a sync with the silent friend and returns once its first packet
/// arrived at the silent socket (the attempt is under way).
async fn start_silent_sync(
    alice: &Node,
    bob: &Node,
    silent: &tokio::net::UdpSocket,
) -> tokio::task::JoinHandle<kith::Result<kith::SyncReport>> {
    let (a, bob_ns) = (alice.clone(), bob.namespace());
    let pending = tokio::spawn(async move { a.sync_now(&bob_ns).await });
    let mut buf = [0u8; 2048];
    tokio::time::timeout(WAIT, silent.recv_from(&mut buf))
        .await
        .expect("alice never tried to reach bob")
        .unwrap();
    pending
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_friend_does_not_hold_up_a_sync_with_another() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob, carol, silent) = alice_bob_and_carol(dir.path()).await;
    let pending = start_silent_sync(&alice, &bob, &silent).await;

    // While the attempt to reach bob runs (up to two minutes), carol is
    // reached and synced at once.
    let started = Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(20), alice.sync_now(&carol.namespace()))
        .await
        .expect("the sync with carol waited for the attempt to reach bob")
        .unwrap();
    assert_eq!(report.entries, 3);
    assert!(
        !pending.is_finished(),
        "the attempt to reach bob ended early"
    );
    println!(
        "carol synced in {:?} while bob was being dialed",
        started.elapsed()
    );

    pending.abort();
    for n in [alice, bob, carol] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_while_a_friend_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob, carol, silent) = alice_bob_and_carol(dir.path()).await;
    let pending = start_silent_sync(&alice, &bob, &silent).await;

    let started = Instant::now();
    tokio::time::timeout(SHUTDOWN_BOUND + Duration::from_secs(5), alice.shutdown())
        .await
        .expect("alice's node did not stop while an attempt to reach bob ran")
        .unwrap();
    println!("alice stopped in {:?}", started.elapsed());
    pending.abort();

    // What she held is on disk and the folder opens again.
    let again = node(&dir.path().join("alice")).await;
    assert_eq!(again.friends().len(), 2);
    for n in [again, bob, carol] {
        n.shutdown().await.unwrap();
    }
}
