//! A second device of the same person: an always-on backup joins with an
//! invite, replicates the whole namespace with its grants and friends, and
//! serves friends while the primary is gone, enforcing the grants and
//! revocations made on the primary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{befriend, list, p, spawn, write_docs};
use kith::caps::Rights;
use kith::{NetworkMode, Node};

async fn spawn_quick(dir: &std::path::Path) -> Node {
    common::init_tracing();
    Node::builder(dir)
        .network(NetworkMode::LocalOnly)
        .live_push(false)
        .connect_timeout(Duration::from_secs(2))
        .spawn()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_device_replicates_and_serves_friends_with_the_same_grants() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let primary = spawn(dirs[0].path()).await;
    let b = spawn_quick(dirs[1].path()).await;
    let c = spawn_quick(dirs[2].path()).await;
    befriend(&primary, &b).await;
    befriend(&primary, &c).await;
    primary
        .grant(&b.namespace(), &p("/feed"), None)
        .await
        .unwrap();
    let c_cap = primary
        .grant(&c.namespace(), &p("/feed"), None)
        .await
        .unwrap();
    primary.revoke(c_cap.id()).await.unwrap();
    write_docs(&primary, "/feed", 20).await;
    write_docs(&primary, "/private", 5).await;
    primary
        .store()
        .put_blob(
            &primary.namespace(),
            &p("/feed/photo.jpg"),
            &vec![9u8; 300 << 10][..],
            "image/jpeg",
        )
        .unwrap();

    // The backup joins: prepare, invite, start.
    let device = kith::prepare_device(dirs[3].path()).unwrap();
    let invite = primary.invite_device(device, Rights::ALL).await.unwrap();
    let invite: kith::DeviceInvite = invite.to_string().parse().unwrap();
    let backup = Node::builder(dirs[3].path())
        .network(NetworkMode::LocalOnly)
        .live_push(false)
        .join_namespace(invite)
        .spawn()
        .await
        .unwrap();
    assert_eq!(backup.namespace(), primary.namespace());
    assert_ne!(backup.device(), primary.device());
    backup.sync_now(&primary.namespace()).await.unwrap();
    // The whole namespace, every document with its heads.
    let everything: Vec<_> = list(&primary, &primary.namespace(), "/");
    let replicated: Vec<_> = list(&backup, &primary.namespace(), "/");
    assert_eq!(
        everything.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        replicated.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for ((_, a), (path, r)) in everything.iter().zip(&replicated) {
        assert_eq!(a.heads(), r.heads(), "{path}");
    }
    // Grants, revocations and friends came along.
    assert_eq!(backup.grants().len(), 2);
    assert_eq!(backup.friends(), primary.friends());
    // Blobs too, fetched from the primary.
    let mut photo = backup
        .read_blob(&primary.namespace(), &p("/feed/photo.jpg"))
        .await
        .unwrap();
    let bytes = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut photo, &mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert_eq!(bytes.len(), 300 << 10);

    // Friends learn where the backup is; then the primary goes away.
    b.add_friend(&backup.ticket()).await.unwrap();
    c.add_friend(&backup.ticket()).await.unwrap();
    primary.shutdown().await.unwrap();

    let report = b.sync_now(&backup.namespace()).await.unwrap();
    assert_eq!(report.device, Some(backup.device()), "served by the backup");
    assert_eq!(list(&b, &backup.namespace(), "/feed").len(), 21);
    assert!(
        list(&b, &backup.namespace(), "/private").is_empty(),
        "the backup enforces the grant"
    );
    // The revocation made on the primary holds on the backup too.
    let report = c.sync_now(&backup.namespace()).await.unwrap();
    assert!(report.prefixes.is_empty());
    assert!(list(&c, &backup.namespace(), "/").is_empty());
    for n in [backup, b, c] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_only_works_for_the_device_it_names() {
    let (da, db, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let primary = spawn(da.path()).await;
    let device = kith::prepare_device(db.path()).unwrap();
    let invite = primary.invite_device(device, Rights::ALL).await.unwrap();
    // Another prepared device cannot use it.
    kith::prepare_device(dc.path()).unwrap();
    let err = Node::builder(dc.path())
        .network(NetworkMode::LocalOnly)
        .live_push(false)
        .join_namespace(invite.clone())
        .spawn()
        .await
        .unwrap_err();
    assert!(matches!(err, kith::Error::Identity(_)), "{err}");
    // A device without the namespace key cannot issue grants or invites.
    let backup = Node::builder(db.path())
        .network(NetworkMode::LocalOnly)
        .live_push(false)
        .join_namespace(invite)
        .spawn()
        .await
        .unwrap();
    let err = backup.invite_device(device, Rights::ALL).await.unwrap_err();
    assert!(matches!(err, kith::Error::NotAllowed(_)));
    // A prepared folder refuses to start as a new namespace by mistake.
    let err = Node::builder(dc.path())
        .network(NetworkMode::LocalOnly)
        .live_push(false)
        .spawn()
        .await
        .unwrap_err();
    assert!(matches!(err, kith::Error::Identity(_)), "{err}");
    primary.shutdown().await.unwrap();
    backup.shutdown().await.unwrap();
    let _ = write_docs;
    let _ = befriend;
}

/// Waits (on the node's own watch) until `done` holds.
async fn until(node: &Node, owner: &kith::NamespaceId, mut done: impl FnMut() -> bool) {
    let mut watch = node.watch(owner, &p("/"));
    tokio::time::timeout(common::WAIT, async {
        while !done() {
            watch.recv().await;
        }
    })
    .await
    .expect("not within the wait");
}

fn holds(node: &Node, owner: &kith::NamespaceId, path: &str) -> bool {
    node.store().get(owner, &p(path)).unwrap().is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_is_believed_by_no_one() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let live = |dir: &std::path::Path| {
        common::init_tracing();
        Node::builder(dir)
            .network(NetworkMode::LocalOnly)
            .connect_timeout(Duration::from_secs(2))
            .resync_interval(Duration::from_secs(3600))
    };
    let alice = live(dirs[0].path()).spawn().await.unwrap();
    let friend = live(dirs[1].path()).spawn().await.unwrap();
    let me = alice.namespace();
    befriend(&alice, &friend).await;
    alice
        .grant(&friend.namespace(), &p("/feed"), None)
        .await
        .unwrap();
    write_docs(&alice, "/feed", 2).await;

    // Alice's phone joins and holds everything; her friend follows her.
    let phone_dir = tempfile::tempdir().unwrap();
    let device = kith::prepare_device(phone_dir.path()).unwrap();
    let invite = alice.invite_device(device, Rights::ALL).await.unwrap();
    let phone = live(phone_dir.path())
        .join_namespace(invite)
        .spawn()
        .await
        .unwrap();
    phone.sync_now(&me).await.unwrap();
    friend.sync_now(&me).await.unwrap();
    assert!(holds(&phone, &me, "/feed/00001"));
    // Alice and her friend know where the phone is: it could serve both.
    alice.add_friend(&phone.ticket()).await.unwrap();
    friend.add_friend(&phone.ticket()).await.unwrap();
    assert_eq!(
        alice.sync_now(&me).await.unwrap().device,
        Some(phone.device()),
        "alice's own catch-up does not reach her phone"
    );

    // The phone is lost: alice revokes it, and the scope it was in moves
    // to a new key.
    alice.revoke_device(phone.device()).await.unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tokio::time::timeout(common::WAIT, async {
        while !alice.live_topics().iter().any(|t| t.epoch >= 1) {
            tick.tick().await;
        }
    })
    .await
    .expect("the phone's scope was not re-keyed");
    // The friend learns it at its next catch-up (it is poked for the new
    // key; here it asks at once).
    friend.sync_now(&me).await.unwrap();

    // Whoever holds the phone writes into alice's namespace with it.
    phone
        .store()
        .edit_document(&me, &p("/feed/from-the-lost-phone"), |d| {
            use kith::store::automerge::transaction::Transactable;
            d.put(kith::store::automerge::ROOT, "text", "not alice")
        })
        .unwrap()
        .0
        .unwrap();

    // 1. Live push: alice's next post reaches the friend; the phone's does
    // not (live receive's own check alone is
    // `sim_live::a_push_from_a_revoked_device_is_not_applied`).
    write_docs(&alice, "/feed/after", 1).await;
    until(&friend, &me, || holds(&friend, &me, "/feed/after/00000")).await;
    assert!(
        !holds(&friend, &me, "/feed/from-the-lost-phone"),
        "the friend accepted the revoked phone's write"
    );

    // 2. The phone asks alice for what she holds: her gate refuses the
    // connection itself (the serving side's own refusal at Hello is tested
    // in the simulation, `sim::a_requester_whose_namespace_revoked_it_…`).
    let asked = phone.sync_now(&me).await;
    assert!(
        matches!(asked, Err(kith::Error::Unreachable { .. })),
        "alice's gate let her revoked phone connect: {asked:?}"
    );

    // 3. Alice's own catch-up never takes the phone as a source: it has no
    // device to try at all (had it tried the phone, the fetching side's
    // check would fail it with a protocol error instead; that check alone is
    // `sim::a_server_whose_namespace_revoked_it_is_not_believed`).
    let own = alice.sync_now(&me).await;
    assert!(
        matches!(own, Err(kith::Error::Unreachable { .. })),
        "alice tried to sync from her revoked phone: {own:?}"
    );
    assert!(!holds(&alice, &me, "/feed/from-the-lost-phone"));

    // 4. With alice away, the friend does not turn to the phone.
    alice.shutdown().await.unwrap();
    let report = friend.sync_now(&me).await;
    assert!(
        matches!(report, Err(kith::Error::Unreachable { .. })),
        "the friend tried to sync from alice's revoked phone: {report:?}"
    );
    assert!(!holds(&friend, &me, "/feed/from-the-lost-phone"));

    for n in [friend, phone] {
        n.shutdown().await.unwrap();
    }
}
