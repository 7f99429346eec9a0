//! After a deletion and the store's compaction step, no file in the data
//! folder contains the deleted bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use automerge::ROOT;
use automerge::ReadDoc;
use automerge::transaction::Transactable;
use common::{files, ns, open, p};

const MARKER: &str = "kith-marker-7f3c9a1e5b2d4e6f";

fn folder_contains(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    files(dir)
        .into_iter()
        .filter(|f| {
            let bytes = std::fs::read(f).unwrap_or_default();
            bytes.windows(needle.len()).any(|w| w == needle)
        })
        .collect()
}

#[test]
fn deleted_documents_and_blobs_leave_no_bytes_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let me = ns(1);
    // Data that stays, before and after.
    store
        .edit_document(&me, &p("/keep/doc"), |d| d.put(ROOT, "text", "kept"))
        .unwrap()
        .0
        .unwrap();
    // The marker in a document, edited several times (history), and in a blob.
    for i in 0..5 {
        store
            .edit_document(&me, &p("/secret/doc"), |d| {
                d.put(ROOT, "text", format!("{MARKER} v{i}"))
            })
            .unwrap()
            .0
            .unwrap();
    }
    let blob: Vec<u8> = format!("blob {MARKER} blob").into_bytes();
    store
        .put_blob(&me, &p("/secret/photo"), &blob[..], "text/plain")
        .unwrap();
    store.sync().unwrap();
    // The test can fail: the marker is on disk before the deletion.
    assert!(
        !folder_contains(dir.path(), MARKER.as_bytes()).is_empty(),
        "marker not written at all"
    );

    let out = store
        .apply_tombstone(&me, &p("/secret"), store.clock().now(), &[])
        .unwrap();
    assert_eq!(out.removed, 2);
    assert_eq!(out.blobs_deleted, 1);
    store.compact().unwrap();

    let left = folder_contains(dir.path(), MARKER.as_bytes());
    assert!(left.is_empty(), "deleted bytes still in {left:?}");
    // What was not deleted is intact, now and after a restart.
    drop(store);
    let store = open(dir.path(), 1);
    let doc = store.document(&me, &p("/keep/doc")).unwrap().unwrap();
    assert!(doc.get(ROOT, "text").unwrap().is_some());
    assert!(store.get(&me, &p("/secret/doc")).unwrap().is_none());
    let left = folder_contains(dir.path(), MARKER.as_bytes());
    assert!(left.is_empty(), "deleted bytes came back in {left:?}");
}
