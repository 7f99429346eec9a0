//! Deletion requests reach every friend device that was served the data,
//! including one that was offline and one whose access was revoked; each
//! deletes and erases (no readable bytes left, with no compaction),
//! confirms with a signed receipt, and the owner sees who has and who has
//! not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{befriend, list, p, spawn};
use kith::Node;
use kith::store::automerge::ROOT;
use kith::store::automerge::transaction::Transactable;

const MARKER: &str = "kith-deletion-marker-5e1f";

fn folder_contains(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if std::fs::read(e.path())
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                found.push(e.path());
            }
        }
    }
    found
}

async fn confirmed(a: &Node, tombstone: kith::caps::TombstoneId) -> (usize, usize) {
    let status = a.receipts(tombstone).await.unwrap();
    (
        status.iter().filter(|s| s.confirmed.is_some()).count(),
        status.len(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn friends_delete_confirm_and_the_owner_sees_who_has() {
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = spawn(dirs[0].path()).await;
    let b = spawn(dirs[1].path()).await;
    let c = spawn(dirs[2].path()).await;
    let mut d = spawn(dirs[3].path()).await;
    let e = spawn(dirs[4].path()).await;
    let mut e_cap = None;
    for (i, f) in [&b, &c, &d, &e].into_iter().enumerate() {
        befriend(&a, f).await;
        let cap = a.grant(&f.namespace(), &p("/feed"), None).await.unwrap();
        if i == 3 {
            e_cap = Some(cap);
        }
    }
    let me = a.namespace();
    a.store()
        .edit_document(&me, &p("/feed/p1"), |doc| {
            doc.put(ROOT, "text", format!("{MARKER} post"))
        })
        .unwrap()
        .0
        .unwrap();
    let photo = format!("jpeg {MARKER} jpeg").repeat(50).into_bytes();
    a.store()
        .put_blob(&me, &p("/feed/p1/photo.jpg"), &photo[..], "image/jpeg")
        .unwrap();
    a.store()
        .edit_document(&me, &p("/feed/p2"), |doc| doc.put(ROOT, "text", "second"))
        .unwrap()
        .0
        .unwrap();
    for f in [&b, &c, &d, &e] {
        let report = f.sync_now(&me).await.unwrap();
        assert_eq!(report.entries, 3);
        assert_eq!(report.blobs_fetched, 1);
    }

    // E loses access; D goes offline; then A deletes /feed/p1.
    a.revoke(e_cap.unwrap().id()).await.unwrap();
    let d_namespace = d.namespace();
    d.shutdown().await.unwrap();
    let tombstone = a.delete(&p("/feed/p1")).await.unwrap();
    assert_eq!(
        confirmed(&a, tombstone).await,
        (0, 4),
        "four devices were served /feed"
    );

    for f in [&b, &c] {
        let report = f.sync_now(&me).await.unwrap();
        assert_eq!(report.tombstones, 1);
        assert_eq!(report.receipts_sent, 1);
        assert!(list(f, &me, "/feed/p1").is_empty());
        assert_eq!(list(f, &me, "/feed").len(), 1, "/feed/p2 stays");
    }
    // The revoked friend still receives the deletion of what it was given.
    let report = e.sync_now(&me).await.unwrap();
    assert!(report.prefixes.is_empty());
    assert_eq!(report.tombstones, 1);
    assert!(list(&e, &me, "/feed/p1").is_empty());
    assert_eq!(confirmed(&a, tombstone).await, (3, 4), "D is pending");
    let pending: Vec<_> = a
        .receipts(tombstone)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.confirmed.is_none())
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].namespace, d_namespace);

    // D comes back, deletes and confirms.
    d = spawn(dirs[3].path()).await;
    let report = d.sync_now(&me).await.unwrap();
    assert_eq!(report.tombstones, 1);
    assert_eq!(report.receipts_sent, 1);
    assert_eq!(confirmed(&a, tombstone).await, (4, 4));
    // Nothing more is owed: the next sync carries no tombstone.
    assert_eq!(b.sync_now(&me).await.unwrap().tombstones, 0);

    // No friend's data folder holds the deleted bytes, and none needed a
    // compaction for it.
    for dir in &dirs[1..] {
        let left = folder_contains(dir.path(), MARKER.as_bytes());
        assert!(left.is_empty(), "deleted bytes remain in {left:?}");
    }
    for n in [a, b, c, d, e] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_is_deleted_only_by_delete_everything() {
    let dir = tempfile::tempdir().unwrap();
    let a = spawn(&dir.path().join("a")).await;
    let me = a.namespace();
    common::write_docs(&a, "/notes", 2).await;
    for root in [kith::Path::root(), p("/")] {
        let refused = a.delete(&root).await;
        assert!(
            matches!(refused, Err(kith::Error::WholeNamespace)),
            "{refused:?}"
        );
    }
    assert_eq!(list(&a, &me, "/").len(), 2, "a refused deletion deleted");
    assert!(a.deletions().await.unwrap().is_empty());

    a.delete_everything().await.unwrap();
    assert!(list(&a, &me, "/").is_empty());
    a.shutdown().await.unwrap();
}
