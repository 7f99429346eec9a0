//! Live push over gossip: friends receive changes as they happen; a revoked
//! friend's scope moves to a new epoch, so it receives nothing more, live or
//! by catch-up, and the remaining members' nodes refuse its device.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{WAIT, befriend, init_tracing, list, p};
use kith::caps::DeviceKey;
use kith::{NetworkMode, Node, Timestamp};

/// Nodes whose periodic re-sync is too slow to matter: what arrives, arrives
/// live (or by the recovery the live layer starts).
fn live_builder(dir: &std::path::Path) -> kith::Builder {
    init_tracing();
    Node::builder(dir)
        .network(NetworkMode::LocalOnly)
        .resync_interval(Duration::from_secs(3600))
        .heartbeat_interval(Duration::from_millis(500))
}

async fn spawn_live(dir: &std::path::Path) -> Node {
    live_builder(dir).spawn().await.unwrap()
}

/// Waits until `cond` holds, checking after every change under `prefix` of
/// `ns` in `node` (and at least every 200 ms for conditions on other state).
async fn until(node: &Node, ns: &kith::NamespaceId, prefix: &str, mut cond: impl FnMut() -> bool) {
    let mut watcher = node.watch(ns, &p(prefix));
    tokio::time::timeout(WAIT, async {
        while !cond() {
            let _ = tokio::time::timeout(Duration::from_millis(200), watcher.recv()).await;
        }
    })
    .await
    .expect("condition not reached in time");
}

fn count(node: &Node, ns: &kith::NamespaceId, prefix: &str) -> usize {
    list(node, ns, prefix).len()
}

/// Tries a gossip connection to `to` with `key` (a device's key).
async fn gossip_connection_accepted(key: &DeviceKey, to: &Node) -> bool {
    let ep = iroh::Endpoint::builder(iroh::endpoint::presets::Minimal)
        .relay_mode(iroh::RelayMode::Disabled)
        .clear_ip_transports()
        .bind_addr(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .unwrap()
        .secret_key(iroh::SecretKey::from_bytes(&key.to_bytes()))
        .bind()
        .await
        .unwrap();
    let id = iroh::PublicKey::from_bytes(to.device().as_bytes()).unwrap();
    let addr =
        iroh::EndpointAddr::from_parts(id, to.addrs().into_iter().map(iroh::TransportAddr::Ip));
    let accepted = match tokio::time::timeout(WAIT, ep.connect(addr, iroh_gossip::ALPN)).await {
        Ok(Ok(conn)) => {
            // A refused connection is closed right after the handshake; an
            // admitted one stays open.
            tokio::time::timeout(Duration::from_secs(3), conn.closed())
                .await
                .is_err()
        }
        _ => false,
    };
    ep.close().await;
    accepted
}

fn device_key(dir: &std::path::Path) -> DeviceKey {
    let hex = std::fs::read_to_string(dir.join("identity").join("device.key")).unwrap();
    let bytes = data_encoding::HEXLOWER
        .decode(hex.trim().as_bytes())
        .unwrap();
    DeviceKey::from_bytes(bytes.try_into().unwrap())
}

/// An owner A and friends B, C and D (in that order), each granted `/feed`
/// and subscribed to A; the grants, and the data folders to keep.
async fn owner_and_three_on_feed() -> (Vec<tempfile::TempDir>, [Node; 4], Vec<kith::caps::ReadCap>)
{
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = spawn_live(dirs[0].path()).await;
    let b = spawn_live(dirs[1].path()).await;
    let c = spawn_live(dirs[2].path()).await;
    let d = spawn_live(dirs[3].path()).await;
    let me = a.namespace();
    let mut caps = Vec::new();
    for f in [&b, &c, &d] {
        befriend(&a, f).await;
        caps.push(a.grant(&f.namespace(), &p("/feed"), None).await.unwrap());
    }
    for f in [&b, &c, &d] {
        f.subscribe(&me).await.unwrap();
    }
    (dirs, [a, b, c, d], caps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_push_and_revocation_that_rekeys() {
    let (dirs, [a, b, c, d], caps) = owner_and_three_on_feed().await;
    let me = a.namespace();
    // Everyone joins the scope's topic (the secret arrives by catch-up).
    for f in [&b, &c, &d] {
        until(f, &me, "/", || f.live_topics().len() == 1).await;
        assert_eq!(f.live_topics()[0].epoch, 0);
    }
    until(&a, &me, "/", || a.live_topics().len() == 1).await;

    // Live updates reach all three.
    common::write_docs(&a, "/feed/before", 10).await;
    for f in [&b, &c, &d] {
        until(f, &me, "/feed/before", || {
            count(f, &me, "/feed/before") == 10
        })
        .await;
    }
    // C's device is on the roster: B admits its gossip connections.
    let c_key = device_key(dirs[2].path());
    assert!(gossip_connection_accepted(&c_key, &b).await);

    // Revoke C: the scope moves to epoch 1 for A, B and D.
    a.revoke(caps[1].id()).await.unwrap();
    for f in [&a, &b, &d] {
        until(f, &me, "/", || {
            f.live_topics().first().map(|t| t.epoch) == Some(1)
        })
        .await;
    }
    // C, which was not sent the new epoch, still sits on the old topic.
    assert_eq!(c.live_topics().first().map(|t| t.epoch), Some(0));

    let live_before: Vec<u64> = [&b, &d]
        .iter()
        .map(|f| f.live_metrics().applied_live)
        .collect();
    common::write_docs(&a, "/feed/after", 100).await;
    for f in [&b, &d] {
        until(f, &me, "/feed/after", || {
            count(f, &me, "/feed/after") == 100
        })
        .await;
    }
    for (f, before) in [&b, &d].iter().zip(live_before) {
        let m = f.live_metrics();
        eprintln!(
            "{}: {} of 100 live, {} recovered, {} recoveries",
            f.namespace().fmt_short(),
            m.applied_live - before,
            m.recovered,
            m.recoveries
        );
        assert!(
            m.applied_live - before >= 50,
            "most changes arrive live: {m:?}"
        );
    }
    // C got none live, and catch-up gives it nothing under /feed.
    assert_eq!(count(&c, &me, "/feed/after"), 0);
    let report = c.sync_now(&me).await.unwrap();
    assert!(report.prefixes.is_empty(), "{report:?}");
    assert_eq!(count(&c, &me, "/feed/after"), 0);
    // What C had stays with it.
    assert_eq!(count(&c, &me, "/feed/before"), 10);

    // After the re-key, B refuses gossip connections from C's device (C is
    // on no roster B holds and is not B's friend).
    c.shutdown().await.unwrap();
    assert!(!gossip_connection_accepted(&c_key, &b).await);

    for n in [a, b, d] {
        n.shutdown().await.unwrap();
    }
}

/// Waits until `n` devices confirmed `tombstone` on `owner`, checking as
/// receipts arrive.
async fn until_confirmed(owner: &Node, tombstone: kith::caps::TombstoneId, n: usize) {
    let mut events = owner.events();
    tokio::time::timeout(WAIT, async {
        loop {
            let status = owner.receipts(tombstone).await.unwrap();
            if status.iter().filter(|s| s.confirmed.is_some()).count() >= n {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), events.recv()).await;
        }
    })
    .await
    .expect("receipts did not arrive in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_is_pushed_to_friends_who_confirm_without_syncing_themselves() {
    use kith::store::automerge::ROOT;
    use kith::store::automerge::transaction::Transactable;

    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = spawn_live(dirs[0].path()).await;
    let b = spawn_live(dirs[1].path()).await;
    let c = spawn_live(dirs[2].path()).await;
    let mut d = spawn_live(dirs[3].path()).await;
    let me = a.namespace();
    for f in [&b, &c, &d] {
        befriend(&a, f).await;
        a.grant(&f.namespace(), &p("/feed"), None).await.unwrap();
        f.subscribe(&me).await.unwrap();
    }
    for f in [&b, &c, &d] {
        until(f, &me, "/", || f.live_topics().len() == 1).await;
    }
    // A post with a photo reaches everyone live (the photo is small, so it
    // is fetched as soon as it is announced).
    a.store()
        .edit_document(&me, &p("/feed/p1"), |doc| doc.put(ROOT, "text", "hello"))
        .unwrap()
        .0
        .unwrap();
    let photo = b"jpeg bytes ".repeat(100);
    a.store()
        .put_blob(&me, &p("/feed/p1/photo.jpg"), &photo[..], "image/jpeg")
        .unwrap();
    for f in [&b, &c, &d] {
        until(f, &me, "/feed", || {
            list(f, &me, "/feed/p1").len() == 2
                && f.store()
                    .get(&me, &p("/feed/p1/photo.jpg"))
                    .unwrap()
                    .and_then(|e| e.blob_hash())
                    .is_some_and(|h| f.store().has_blob(&h))
        })
        .await;
    }

    // D goes offline; A deletes the post. B and C delete and confirm with
    // no sync of their own (their re-sync interval is an hour).
    d.shutdown().await.unwrap();
    let tombstone = a.delete(&p("/feed/p1")).await.unwrap();
    until_confirmed(&a, tombstone, 2).await;
    for f in [&b, &c] {
        assert!(list(f, &me, "/feed/p1").is_empty());
    }
    let status = a.receipts(tombstone).await.unwrap();
    assert_eq!(status.len(), 3);
    // D comes back: A's node pokes it (or its subscription syncs), and it
    // deletes and confirms.
    d = spawn_live(dirs[3].path()).await;
    until_confirmed(&a, tombstone, 3).await;
    assert!(list(&d, &me, "/feed/p1").is_empty());
    for n in [a, b, c, d] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_and_delete_removes_the_data_from_that_friend_only() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = spawn_live(dirs[0].path()).await;
    let b = spawn_live(dirs[1].path()).await;
    let c = spawn_live(dirs[2].path()).await;
    let me = a.namespace();
    let mut caps = Vec::new();
    for f in [&b, &c] {
        befriend(&a, f).await;
        caps.push(a.grant(&f.namespace(), &p("/feed"), None).await.unwrap());
    }
    common::write_docs(&a, "/feed", 5).await;
    for f in [&b, &c] {
        f.sync_now(&me).await.unwrap();
        assert_eq!(count(f, &me, "/feed"), 5);
    }
    let (_, tombstone) = a.revoke_and_delete(caps[1].id()).await.unwrap();
    // Only C's device owes a receipt, and it confirms (poked by A).
    let status = a.receipts(tombstone).await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].namespace, c.namespace());
    until_confirmed(&a, tombstone, 1).await;
    assert_eq!(count(&c, &me, "/feed"), 0, "C deleted what it held");
    // A keeps its data, B keeps its copy and is not asked to delete.
    assert_eq!(count(&a, &me, "/feed"), 5);
    let report = b.sync_now(&me).await.unwrap();
    assert_eq!(report.tombstones, 0);
    assert_eq!(count(&b, &me, "/feed"), 5);
    for n in [a, b, c] {
        n.shutdown().await.unwrap();
    }
}

/// Topic memberships and what is owed survive restarts: a friend that
/// restarts re-joins its topic by itself and keeps receiving; a new epoch
/// owed to a friend that was offline during a revoke is delivered after the
/// owner itself restarted, with nobody calling sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_owed_epochs_survive_restarts() {
    // Restarted nodes come back on the same port: on loopback there is no
    // address lookup to find them elsewhere.
    async fn restart(dir: &std::path::Path, addr: std::net::SocketAddr) -> Node {
        Node::builder(dir)
            .network(NetworkMode::LocalOnly)
            .bind_addr(addr)
            .resync_interval(Duration::from_secs(3600))
            .heartbeat_interval(Duration::from_millis(500))
            .spawn()
            .await
            .unwrap()
    }
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut a = spawn_live(dirs[0].path()).await;
    let mut b = spawn_live(dirs[1].path()).await;
    let c = spawn_live(dirs[2].path()).await;
    let (a_addr, b_addr) = (a.addrs()[0], b.addrs()[0]);
    let me = a.namespace();
    befriend(&a, &b).await;
    befriend(&a, &c).await;
    a.grant(&b.namespace(), &p("/feed"), None).await.unwrap();
    let cap_c = a.grant(&c.namespace(), &p("/feed"), None).await.unwrap();
    b.subscribe(&me).await.unwrap();
    c.subscribe(&me).await.unwrap();
    until(&b, &me, "/", || b.live_topics().len() == 1).await;
    common::write_docs(&a, "/feed/one", 5).await;
    until(&b, &me, "/feed/one", || count(&b, &me, "/feed/one") == 5).await;

    // B restarts: it is back on the topic and receives without asking.
    b.shutdown().await.unwrap();
    b = restart(dirs[1].path(), b_addr).await;
    until(&b, &me, "/", || b.live_topics().len() == 1).await;
    common::write_docs(&a, "/feed/two", 5).await;
    until(&b, &me, "/feed/two", || count(&b, &me, "/feed/two") == 5).await;

    // B goes offline; A revokes C, so B is owed epoch 1; A restarts.
    b.shutdown().await.unwrap();
    a.revoke(cap_c.id()).await.unwrap();
    a.shutdown().await.unwrap();
    a = restart(dirs[0].path(), a_addr).await;
    until(&a, &me, "/", || {
        a.live_topics().first().map(|t| t.epoch) == Some(1)
    })
    .await;
    // B comes back: its subscription resumes and A's node pokes it (what
    // is owed was kept in A's store); B syncs and joins epoch 1.
    b = restart(dirs[1].path(), b_addr).await;
    until(&b, &me, "/", || {
        b.live_topics().first().map(|t| t.epoch) == Some(1)
    })
    .await;
    // And A's writes after both restarts reach B, never C.
    common::write_docs(&a, "/feed/three", 5).await;
    until(&b, &me, "/feed/three", || {
        count(&b, &me, "/feed/three") == 5
    })
    .await;
    assert_eq!(count(&c, &me, "/feed/three"), 0);
    for n in [a, b, c] {
        n.shutdown().await.unwrap();
    }
}

/// A friend that live push keeps up to date skips its periodic catch-ups
/// (the owner would only list what it already pushed); a friend of an owner
/// that does not publish keeps running them and gets everything by them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_catch_ups_are_skipped_while_live_push_is_in_step() {
    init_tracing();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let spawn = |dir: &std::path::Path, live: bool| {
        live_builder(dir)
            .resync_interval(Duration::from_millis(300))
            .heartbeat_interval(Duration::from_millis(100))
            .live_push(live)
            .spawn()
    };
    let a = spawn(dirs[0].path(), true).await.unwrap();
    let b = spawn(dirs[1].path(), true).await.unwrap();
    let quiet = spawn(dirs[2].path(), false).await.unwrap();
    let c = spawn(dirs[3].path(), true).await.unwrap();
    for (owner, friend) in [(&a, &b), (&quiet, &c)] {
        befriend(owner, friend).await;
        owner
            .grant(&friend.namespace(), &p("/feed"), None)
            .await
            .unwrap();
        friend.subscribe(&owner.namespace()).await.unwrap();
    }
    let me = a.namespace();
    until(&b, &me, "/", || b.live_topics().len() == 1).await;
    common::write_docs(&a, "/feed/live", 3).await;
    until(&b, &me, "/feed/live", || count(&b, &me, "/feed/live") == 3).await;
    until(&b, &me, "/", || b.live_metrics().resyncs_skipped >= 3).await;
    assert!(b.live_metrics().applied_live >= 3, "{:?}", b.live_metrics());

    // A silent topic, no skipping: the periodic catch-up delivers.
    let q = quiet.namespace();
    common::write_docs(&quiet, "/feed/synced", 3).await;
    until(&c, &q, "/feed/synced", || {
        count(&c, &q, "/feed/synced") == 3
    })
    .await;
    assert_eq!(c.live_metrics().resyncs_skipped, 0);
    for n in [a, b, quiet, c] {
        n.shutdown().await.unwrap();
    }
}

/// A grant that expires takes its friend off the scope's roster without any
/// other event: the scope moves to a new epoch, and what is written after
/// reaches the friends still granted, not the one whose grant expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_grant_rekeys_the_scope() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = spawn_live(dirs[0].path()).await;
    let b = spawn_live(dirs[1].path()).await;
    let c = spawn_live(dirs[2].path()).await;
    let me = a.namespace();
    befriend(&a, &b).await;
    befriend(&a, &c).await;
    let expires = Timestamp::from_micros(
        Timestamp::wall_clock().as_micros() + Duration::from_secs(5).as_micros() as u64,
    );
    a.grant(&b.namespace(), &p("/feed"), Some(expires))
        .await
        .unwrap();
    a.grant(&c.namespace(), &p("/feed"), None).await.unwrap();
    for f in [&b, &c] {
        f.subscribe(&me).await.unwrap();
        until(f, &me, "/", || f.live_topics().len() == 1).await;
        assert_eq!(f.live_topics()[0].epoch, 0);
    }
    // After the expiry, A and C move to epoch 1; B is not sent it.
    for f in [&a, &c] {
        until(f, &me, "/", || {
            f.live_topics().first().map(|t| t.epoch) == Some(1)
        })
        .await;
    }
    assert_eq!(b.live_topics().first().map(|t| t.epoch), Some(0));
    common::write_docs(&a, "/feed/after", 10).await;
    until(&c, &me, "/feed/after", || {
        count(&c, &me, "/feed/after") == 10
    })
    .await;
    assert_eq!(
        count(&b, &me, "/feed/after"),
        0,
        "an expired grant still received live posts"
    );
    for n in [a, b, c] {
        n.shutdown().await.unwrap();
    }
}

/// After a revoke, the remaining members form the new epoch's topic over
/// the links of the earlier one (no gossip connection is dialed), which
/// they keep for a few seconds and then leave; leaving it cuts none of the
/// new topic's links (each topic drops a peer's connection only if no other
/// topic uses it: otherwise the post below would go out over new dials),
/// and a post then reaches everyone on the new topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_the_earlier_epochs_topic_keeps_the_new_topics_links() {
    let (_dirs, [a, b, c, d], caps) = owner_and_three_on_feed().await;
    let me = a.namespace();
    for f in [&a, &b, &c, &d] {
        until(f, &me, "/", || {
            f.live_topics().first().is_some_and(|t| t.neighbors > 0)
        })
        .await;
    }
    let dials = |nodes: [&Node; 3]| -> Vec<u64> {
        nodes
            .iter()
            .map(|n| n.live_metrics().gossip_dials)
            .collect()
    };
    let before = dials([&a, &b, &d]);
    a.revoke(caps[1].id()).await.unwrap();
    for f in [&a, &b, &d] {
        until(f, &me, "/", || {
            f.live_topics()
                .first()
                .is_some_and(|t| t.epoch == 1 && t.neighbors > 0)
        })
        .await;
    }
    // The earlier epoch's topic is held a while, then left.
    for f in [&a, &b, &d] {
        until(f, &me, "/", || f.live_metrics().topics_retiring == 0).await;
    }
    common::write_docs(&a, "/feed/after", 1).await;
    for f in [&b, &d] {
        until(f, &me, "/feed/after", || count(f, &me, "/feed/after") == 1).await;
    }
    for f in [&a, &b, &d] {
        let topic = &f.live_topics()[0];
        assert_eq!(topic.epoch, 1);
        assert_eq!(
            topic.neighbors_lost, 0,
            "leaving the earlier epoch's topic cut a link of the new one: {topic:?}"
        );
    }
    assert_eq!(
        dials([&a, &b, &d]),
        before,
        "gossip connections were dialed to form or use the new topic"
    );
    assert_eq!(count(&c, &me, "/feed/after"), 0);
    for n in [a, b, c, d] {
        n.shutdown().await.unwrap();
    }
}

/// After a revoke, the remaining members get the scope's new epoch alone
/// (no catch-up), with the post the owner wrote right after the revoke,
/// which went out while the new topic had no one on it: it is applied as a
/// live message, not brought by a catch-up. The revoked member gets neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_sends_the_new_epoch_alone_with_the_post_written_meanwhile() {
    let (_dirs, [a, b, c, d], caps) = owner_and_three_on_feed().await;
    let me = a.namespace();
    for f in [&a, &b, &c, &d] {
        until(f, &me, "/", || f.live_topics().len() == 1).await;
    }
    let before: Vec<kith::LiveMetrics> = [&b, &d].iter().map(|f| f.live_metrics()).collect();

    a.revoke(caps[1].id()).await.unwrap();
    common::write_docs(&a, "/feed/after", 1).await;
    for f in [&b, &d] {
        until(f, &me, "/feed/after", || {
            f.live_topics().first().map(|t| t.epoch) == Some(1) && count(f, &me, "/feed/after") == 1
        })
        .await;
    }
    for (f, before) in [&b, &d].iter().zip(before) {
        // The counters move just after the store applied the post.
        until(f, &me, "/", || {
            let m = f.live_metrics();
            m.applied_live > before.applied_live || m.recoveries > before.recoveries
        })
        .await;
        let m = f.live_metrics();
        assert_eq!(
            m.applied_live - before.applied_live,
            1,
            "the post came with the key, as a live message: {m:?}"
        );
        assert_eq!(
            m.recoveries, before.recoveries,
            "no catch-up was needed: {m:?}"
        );
    }
    // C is on no roster of the new epoch: it was sent neither the key nor
    // the post.
    assert_eq!(c.live_topics().first().map(|t| t.epoch), Some(0));
    assert_eq!(count(&c, &me, "/feed/after"), 0);
    for n in [a, b, c, d] {
        n.shutdown().await.unwrap();
    }
}

/// A node at rest does not spin: the owner's own topic, on which it hears
/// nothing (its only device publishes there, friends do not), wakes its
/// listener for timers and the odd neighbour event, long after the silence
/// that makes a friend re-join has passed, not in a loop that takes a core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_that_hears_nothing_does_not_wake_its_listener_in_a_loop() {
    init_tracing();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let silence = Duration::from_millis(200);
    // Heartbeats well within the silence, so the friend stays in step.
    let spawn = |dir: &std::path::Path| {
        live_builder(dir)
            .heartbeat_interval(Duration::from_millis(100))
            .live_silence(silence)
            .spawn()
    };
    let a = spawn(dirs[0].path()).await.unwrap();
    let b = spawn(dirs[1].path()).await.unwrap();
    befriend(&a, &b).await;
    a.grant(&b.namespace(), &p("/feed"), None).await.unwrap();
    b.subscribe(&a.namespace()).await.unwrap();
    let me = a.namespace();
    until(&b, &me, "/", || b.live_topics().len() == 1).await;
    common::write_docs(&a, "/feed/live", 1).await;
    until(&b, &me, "/feed/live", || count(&b, &me, "/feed/live") == 1).await;
    // Well past the silence, on a topic A has heard nothing on.
    tokio::time::sleep(silence * 3).await;
    let before = a.live_metrics().listener_wakeups;
    let window = Duration::from_secs(1);
    tokio::time::sleep(window).await;
    let woke = a.live_metrics().listener_wakeups - before;
    // Timers at the silence's pace, a heartbeat's echo or two: a few dozen
    // at most, where a spinning listener turns hundreds of thousands of
    // times.
    assert!(
        woke < 50,
        "the owner's listener woke {woke} times in {window:?} at rest"
    );
    // The friend, which hears heartbeats, wakes for them.
    assert!(b.live_metrics().listener_wakeups > 0);
    for n in [a, b] {
        n.shutdown().await.unwrap();
    }
}
