//! Catch-up between nodes on loopback: the granted subtree arrives whole,
//! documents equal and blobs byte-equal; offline catch-up; cheap re-syncs;
//! revocation on the pull side.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;

use common::{befriend, list, p, spawn, write_docs};
use kith::store::EntryKind;

fn blob_bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn read_all(node: &kith::Node, ns: &kith::NamespaceId, path: &str) -> Vec<u8> {
    let mut reader = node.read_blob(ns, &p(path)).await.unwrap();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        out
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_friend_gets_exactly_the_granted_subtree() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = spawn(da.path()).await;
    let b = spawn(db.path()).await;
    befriend(&a, &b).await;
    a.grant(&b.namespace(), &p("/feed"), None).await.unwrap();

    write_docs(&a, "/feed/posts", 1000).await;
    write_docs(&a, "/private", 50).await;
    write_docs(&a, "/feedback", 10).await; // not under /feed, component-wise
    let sizes = [10, 1000, 200 << 10, 300 << 10, 2 << 20];
    for (i, size) in sizes.iter().enumerate() {
        let bytes = blob_bytes(i as u8, *size);
        let path = p(&format!("/feed/photos/{i}.jpg"));
        a.store()
            .put_blob(&a.namespace(), &path, &bytes[..], "image/jpeg")
            .unwrap();
    }
    a.store()
        .put_blob(
            &a.namespace(),
            &p("/private/secret.jpg"),
            &b"secret"[..],
            "image/jpeg",
        )
        .unwrap();

    let report = b.sync_now(&a.namespace()).await.unwrap();
    assert_eq!(report.prefixes, vec![p("/feed")]);
    assert_eq!(report.entries, 1005);
    assert_eq!(report.docs, 1000);
    assert_eq!(
        report.blobs_fetched, 3,
        "blobs up to 256 KiB come with their entries"
    );

    // Exactly the /feed subtree, nothing else.
    let theirs: Vec<_> = list(&b, &a.namespace(), "/")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let mine: Vec<_> = list(&a, &a.namespace(), "/feed")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(theirs, mine);
    // Documents equal (heads), blobs byte-equal (large ones fetched on read).
    for (path, entry) in list(&a, &a.namespace(), "/feed") {
        let copy = b.store().get(&a.namespace(), &path).unwrap().unwrap();
        match entry.kind {
            EntryKind::Document { heads, .. } => {
                assert_eq!(copy.heads().unwrap(), &heads[..], "{path}")
            }
            EntryKind::Blob { hash, .. } => assert_eq!(copy.blob_hash(), Some(hash)),
        }
    }
    for (i, size) in sizes.iter().enumerate() {
        let got = read_all(&b, &a.namespace(), &format!("/feed/photos/{i}.jpg")).await;
        assert_eq!(got.len(), *size);
        assert_eq!(got, blob_bytes(i as u8, *size));
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_catch_up_then_a_no_change_resync_is_small() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = spawn(da.path()).await;
    let mut b = spawn(db.path()).await;
    befriend(&a, &b).await;
    a.grant(&b.namespace(), &p("/feed"), None).await.unwrap();
    write_docs(&a, "/feed", 300).await;
    let first = b.sync_now(&a.namespace()).await.unwrap();
    assert_eq!(first.docs, 300);

    // B goes away; A writes 500 changes: 250 edits and 250 new documents.
    b.shutdown().await.unwrap();
    common::write_docs_version(&a, "/feed", 250, 1).await; // edits of 00000..00249
    write_docs(&a, "/feed/new", 250).await;
    // B comes back (same data folder) and catches up.
    b = spawn(db.path()).await;
    let report = b.sync_now(&a.namespace()).await.unwrap();
    assert_eq!(report.entries, 500);
    assert_eq!(report.docs, 500);
    for (path, entry) in list(&a, &a.namespace(), "/feed") {
        let copy = b.store().get(&a.namespace(), &path).unwrap().unwrap();
        assert_eq!(copy.heads(), entry.heads(), "{path}");
    }
    // Nothing changed: the re-sync moves a few hundred bytes, not the namespace.
    let again = b.sync_now(&a.namespace()).await.unwrap();
    assert_eq!(again.entries, 0);
    let bytes = again.bytes_sent + again.bytes_received;
    assert!(bytes < 16 * 1024, "no-change re-sync moved {bytes} bytes");
    eprintln!("no-change re-sync of 550 documents: {bytes} bytes");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_revoke_the_friend_gets_nothing_new() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = spawn(da.path()).await;
    let b = spawn(db.path()).await;
    befriend(&a, &b).await;
    let cap = a.grant(&b.namespace(), &p("/feed"), None).await.unwrap();
    write_docs(&a, "/feed", 5).await;
    assert_eq!(b.sync_now(&a.namespace()).await.unwrap().docs, 5);

    a.revoke(cap.id()).await.unwrap();
    write_docs(&a, "/feed/after", 5).await;
    let report = b.sync_now(&a.namespace()).await.unwrap();
    assert!(report.prefixes.is_empty(), "no prefix is readable any more");
    assert_eq!(report.entries, 0);
    assert!(list(&b, &a.namespace(), "/feed/after").is_empty());
    // B learned of the revocation.
    let (_, revocations) = b.caps_from(&a.namespace()).await.unwrap();
    assert_eq!(revocations.len(), 1);
    // What B already had stays with B (revocation is not deletion).
    assert_eq!(list(&b, &a.namespace(), "/feed").len(), 5);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_reach_the_friend_on_catch_up() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = spawn(da.path()).await;
    let b = spawn(db.path()).await;
    befriend(&a, &b).await;
    a.grant(&b.namespace(), &p("/feed"), None).await.unwrap();
    write_docs(&a, "/feed/posts", 20).await;
    a.store()
        .put_blob(
            &a.namespace(),
            &p("/feed/posts/photo"),
            &b"photo"[..],
            "image/jpeg",
        )
        .unwrap();
    b.sync_now(&a.namespace()).await.unwrap();
    assert_eq!(list(&b, &a.namespace(), "/feed/posts").len(), 21);

    a.delete(&p("/feed/posts")).await.unwrap();
    let report = b.sync_now(&a.namespace()).await.unwrap();
    assert_eq!(report.tombstones, 1);
    assert!(list(&b, &a.namespace(), "/feed/posts").is_empty());
    assert!(
        b.store()
            .covering_tombstone(&a.namespace(), &p("/feed/posts/00001"))
            .is_some()
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

async fn spawn_subscriber(dir: &std::path::Path) -> kith::Node {
    kith::Node::builder(dir)
        .network(kith::NetworkMode::LocalOnly)
        .live_push(false)
        .resync_interval(std::time::Duration::from_millis(200))
        .spawn()
        .await
        .unwrap()
}

/// Waits until `b` holds `n` entries of `owner` under `prefix`: checked now
/// (the watcher already exists), then again after every event.
async fn await_entries(b: &kith::Node, owner: &kith::NamespaceId, prefix: &str, n: usize) {
    let mut watch = b.watch(owner, &p(prefix));
    while list(b, owner, prefix).len() < n {
        tokio::time::timeout(common::WAIT, watch.recv())
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_deliver_without_asking_and_resume_after_a_restart() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = spawn(da.path()).await;
    let b = spawn_subscriber(db.path()).await;
    befriend(&a, &b).await;
    a.grant(&b.namespace(), &p("/feed"), None).await.unwrap();
    b.subscribe(&a.namespace()).await.unwrap();
    write_docs(&a, "/feed", 3).await;
    // The subscription delivers without any explicit sync.
    await_entries(&b, &a.namespace(), "/feed", 3).await;

    // B restarts; its subscription resumes by itself.
    b.shutdown().await.unwrap();
    write_docs(&a, "/feed/later", 2).await;
    let b = spawn_subscriber(db.path()).await;
    await_entries(&b, &a.namespace(), "/feed", 5).await;
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_blob_fetch_resumes_where_it_stopped() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = spawn(da.path()).await;
    let b = spawn(db.path()).await;
    befriend(&a, &b).await;
    a.grant(&b.namespace(), &p("/feed"), None).await.unwrap();
    let size = 4 << 20;
    let content = blob_bytes(3, size);
    let entry = a
        .store()
        .put_blob(&a.namespace(), &p("/feed/film"), &content[..], "video/mp4")
        .unwrap();
    let hash = entry.blob_hash().unwrap();
    b.sync_now(&a.namespace()).await.unwrap();
    assert!(!b.store().has_blob(&hash), "large blobs wait until read");
    // A first fetch was cut off after half of the bytes.
    let mut partial = b.store().resume_import(hash, size as u64).unwrap();
    partial.append(&content[..size / 2]).unwrap();
    drop(partial);

    let received = b.fetch(&a.namespace(), &p("/feed/film")).await.unwrap();
    assert!(
        received < (size / 2 + 64 * 1024) as u64,
        "resumed fetch moved {received} bytes of a {size}-byte blob"
    );
    assert_eq!(read_all(&b, &a.namespace(), "/feed/film").await, content);
    assert_eq!(
        b.fetch(&a.namespace(), &p("/feed/film")).await.unwrap(),
        0,
        "already here"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn friends_blobs_are_bounded_by_the_cache_and_purged_blobs_come_back_from_the_owner() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = spawn(da.path()).await;
    let b = kith::Node::builder(db.path())
        .network(kith::NetworkMode::LocalOnly)
        .live_push(false)
        .cache(kith::CacheSettings {
            budget: 1 << 20,
            max_age: None,
        })
        .spawn()
        .await
        .unwrap();
    befriend(&a, &b).await;
    a.grant(&b.namespace(), &p("/feed"), None).await.unwrap();
    let size = 600 << 10;
    let mut hashes = Vec::new();
    for i in 0..3u8 {
        let e = a
            .store()
            .put_blob(
                &a.namespace(),
                &p(&format!("/feed/{i}")),
                &blob_bytes(i, size)[..],
                "image/jpeg",
            )
            .unwrap();
        hashes.push(e.blob_hash().unwrap());
    }
    b.sync_now(&a.namespace()).await.unwrap();
    assert_eq!(
        read_all(&b, &a.namespace(), "/feed/0").await,
        blob_bytes(0, size)
    );
    assert_eq!(
        read_all(&b, &a.namespace(), "/feed/1").await,
        blob_bytes(1, size)
    );
    // Over the 1 MiB budget: the least recently used went.
    let purged = b.enforce_cache().await.unwrap();
    assert_eq!((purged.blobs, purged.bytes), (1, size as u64));
    assert!(!b.store().has_blob(&hashes[0]));
    assert!(b.store().has_blob(&hashes[1]));
    let status = b.cache_status().await.unwrap();
    assert_eq!((status.blobs, status.blob_bytes), (1, size as u64));
    // Read again: fetched again from the owner.
    assert_eq!(
        read_all(&b, &a.namespace(), "/feed/0").await,
        blob_bytes(0, size)
    );
    assert!(b.store().has_blob(&hashes[0]));
    // Purge everything; entries stay and content comes back when read.
    assert!(b.purge_cache().await.unwrap().bytes >= size as u64);
    assert!(hashes.iter().all(|h| !b.store().has_blob(h)));
    assert_eq!(list(&b, &a.namespace(), "/feed").len(), 3);
    assert_eq!(
        read_all(&b, &a.namespace(), "/feed/2").await,
        blob_bytes(2, size)
    );
    // Content this node's own namespace also refers to is not purged.
    assert_eq!(
        read_all(&b, &a.namespace(), "/feed/1").await,
        blob_bytes(1, size)
    );
    b.store()
        .put_blob(
            &b.namespace(),
            &p("/mine/copy"),
            &blob_bytes(1, size)[..],
            "image/jpeg",
        )
        .unwrap();
    b.purge_cache().await.unwrap();
    assert!(b.store().has_blob(&hashes[1]), "own content purged");
    // The owner's own blobs are never purged from its store.
    assert_eq!(a.purge_cache().await.unwrap(), kith::Purged::default());
    assert!(hashes.iter().all(|h| a.store().has_blob(h)));
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// A connection this node opened closes once idle (iroh would keep it
/// alive with pings forever), and the next catch-up opens a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_and_the_next_sync_reconnects() {
    common::init_tracing();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = spawn(da.path()).await;
    let b = kith::Node::builder(db.path())
        .network(kith::NetworkMode::LocalOnly)
        .live_push(false)
        .connection_idle(std::time::Duration::from_millis(300))
        .spawn()
        .await
        .unwrap();
    befriend(&a, &b).await;
    a.grant(&b.namespace(), &p("/feed"), None).await.unwrap();
    write_docs(&a, "/feed/one", 5).await;
    assert_eq!(b.sync_now(&a.namespace()).await.unwrap().docs, 5);
    assert_eq!(b.connections_open().await, 1);
    tokio::time::timeout(common::WAIT, async {
        while b.connections_open().await > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the idle connection stayed open");
    write_docs(&a, "/feed/two", 5).await;
    assert_eq!(b.sync_now(&a.namespace()).await.unwrap().docs, 5);
    assert_eq!(b.connections_open().await, 1);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

fn text_of(doc: &kith::store::automerge::AutoCommit) -> String {
    use kith::store::automerge::ReadDoc;
    doc.get(kith::store::automerge::ROOT, "text")
        .unwrap()
        .and_then(|(v, _)| v.into_scalar().ok())
        .and_then(|s| s.into_string().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn friends_documents_purged_from_the_cache_come_back_from_the_owner_when_read() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = spawn(da.path()).await;
    let b = spawn(db.path()).await;
    befriend(&a, &b).await;
    let cap = a.grant(&b.namespace(), &p("/feed"), None).await.unwrap();
    write_docs(&a, "/feed", 20).await;
    write_docs(&b, "/mine", 3).await;
    b.sync_now(&a.namespace()).await.unwrap();
    let held = b.cache_status().await.unwrap();
    assert_eq!(
        (held.documents, held.blobs),
        (20, 0),
        "own data is not cached"
    );
    assert!(held.document_bytes > 0);

    // Purged: the entries stay, the content is not here.
    let purged = b.purge_cache().await.unwrap();
    assert_eq!((purged.documents, purged.bytes), (20, held.document_bytes));
    let status = b.cache_status().await.unwrap();
    assert_eq!((status.documents, status.document_bytes), (0, 0));
    assert_eq!(list(&b, &a.namespace(), "/feed").len(), 20);
    let owner = a.namespace();
    for (path, _) in list(&b, &owner, "/feed") {
        assert!(b.store().is_purged(&owner, &path).unwrap());
        assert!(matches!(
            b.store().document(&owner, &path),
            Err(kith::store::Error::NotHere { .. })
        ));
    }
    // Own documents are never purged.
    let me = b.namespace();
    for (path, _) in list(&b, &me, "/mine") {
        assert!(b.store().document(&me, &path).unwrap().is_some());
    }

    // Read: fetched whole from the owner.
    let doc = b.read_document(&owner, &p("/feed/00003")).await.unwrap();
    assert_eq!(text_of(&doc.unwrap()), "post 3 v0");
    let wanted: Vec<_> = (5..10).map(|i| p(&format!("/feed/{i:05}"))).collect();
    assert_eq!(b.fetch_documents(&owner, &wanted).await.unwrap(), 5);
    assert_eq!(b.fetch_documents(&owner, &wanted).await.unwrap(), 0, "held");
    assert_eq!(b.cache_status().await.unwrap().documents, 6);

    // An edit of a purged document reaches it in a catch-up without
    // bringing it back; read, it comes back as it is now.
    common::write_docs_version(&a, "/feed", 20, 1).await;
    b.sync_now(&owner).await.unwrap();
    assert!(b.store().is_purged(&owner, &p("/feed/00012")).unwrap());
    let doc = b.read_document(&owner, &p("/feed/00012")).await.unwrap();
    assert_eq!(text_of(&doc.unwrap()), "post 12 v1");
    assert_eq!(
        b.store().heads(&owner, &p("/feed/00012")).unwrap(),
        a.store().heads(&owner, &p("/feed/00012")).unwrap()
    );

    // A budget keeps the most recently written or read, purging the rest.
    let status = b.cache_status().await.unwrap();
    let one = status.document_bytes / status.documents;
    let budget = kith::CacheSettings {
        budget: one * 3,
        max_age: None,
    };
    let purged = b.set_cache(budget).await.unwrap();
    assert!(purged.documents > 0);
    let status = b.cache_status().await.unwrap();
    assert!(status.bytes() <= one * 3, "{status:?}");
    assert!(
        !b.store().is_purged(&owner, &p("/feed/00012")).unwrap(),
        "the document read last stays"
    );

    // The settings are kept across a restart.
    b.shutdown().await.unwrap();
    let b = spawn(db.path()).await;
    assert_eq!(b.cache_status().await.unwrap().settings, budget);

    // A document the owner no longer lets this node read is not sent.
    let purged_path = p("/feed/00001");
    assert!(b.store().is_purged(&owner, &purged_path).unwrap());
    a.revoke(cap.id()).await.unwrap();
    assert_eq!(
        b.fetch_documents(&owner, std::slice::from_ref(&purged_path))
            .await
            .unwrap(),
        0
    );
    assert!(b.store().is_purged(&owner, &purged_path).unwrap());

    // With the owner away, reading says so.
    a.shutdown().await.unwrap();
    let err = b.read_document(&owner, &purged_path).await.unwrap_err();
    assert!(matches!(err, kith::Error::Unreachable { .. }), "{err}");
    b.shutdown().await.unwrap();
}
