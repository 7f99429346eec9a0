//! Listing in path order with pagination, the change log, watchers (with the
//! lag signal), namespaces and records.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use automerge::ROOT;
use automerge::transaction::Transactable;
use common::{ns, open, p};
use kith_store::{ChangeKind, RecordKind, RecordOp, WATCH_CAPACITY, WatchEvent};

#[test]
fn list_is_in_path_order_with_pages_and_exact_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let me = ns(1);
    let paths = [
        "/photos/b",
        "/photosecret/x",
        "/photos/a/deep",
        "/photos",
        "/a",
        "/photos/a",
    ];
    for path in paths {
        store
            .put_blob(&me, &p(path), path.as_bytes(), "text/plain")
            .unwrap();
    }
    store
        .put_blob(&ns(2), &p("/photos/other-ns"), &b"x"[..], "text/plain")
        .unwrap();
    let all = store.list(&me, &p("/photos"), None, 100).unwrap();
    let got: Vec<String> = all.entries.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(got, ["/photos", "/photos/a", "/photos/a/deep", "/photos/b"]);
    assert_eq!(all.next, None);
    // Pages of two.
    let first = store.list(&me, &p("/photos"), None, 2).unwrap();
    assert_eq!(first.entries.len(), 2);
    let second = store
        .list(&me, &p("/photos"), first.next.as_ref(), 2)
        .unwrap();
    let got: Vec<String> = second.entries.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(got, ["/photos/a/deep", "/photos/b"]);
    assert_eq!(second.next, None, "the last page says so");
    // Root lists the namespace, and only it.
    assert_eq!(
        store
            .list(&me, &kith_store::Path::root(), None, 100)
            .unwrap()
            .entries
            .len(),
        6
    );
    let mut namespaces = store.namespaces().unwrap();
    namespaces.sort();
    assert_eq!(namespaces, [ns(1), ns(2)]);
}

#[test]
fn changes_since_lists_each_path_once_at_its_latest_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let me = ns(1);
    store
        .edit_document(&me, &p("/a"), |d| d.put(ROOT, "v", 1))
        .unwrap()
        .0
        .unwrap(); // seq 1
    store
        .edit_document(&me, &p("/b"), |d| d.put(ROOT, "v", 1))
        .unwrap()
        .0
        .unwrap(); // seq 2
    store
        .edit_document(&me, &p("/a"), |d| d.put(ROOT, "v", 2))
        .unwrap()
        .0
        .unwrap(); // seq 3
    let changes = store.changes_since(&me, 0, 100).unwrap();
    let seqs: Vec<u64> = changes.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [2, 3]);
    assert!(
        matches!(&changes[1].kind, ChangeKind::Put { path, entry } if *path == p("/a") && entry.seq == 3)
    );
    assert_eq!(store.changes_since(&me, 2, 100).unwrap().len(), 1);
    assert!(store.changes_since(&me, 3, 100).unwrap().is_empty());
    assert_eq!(store.changes_since(&me, 0, 1).unwrap().len(), 1);
    let t = store.clock().now();
    store.apply_tombstone(&me, &p("/b"), t, &[]).unwrap(); // seq 4
    let changes = store.changes_since(&me, 0, 100).unwrap();
    let seqs: Vec<u64> = changes.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [3, 4], "the deleted path left the log");
    assert!(
        matches!(&changes[1].kind, ChangeKind::Tombstone { prefix, timestamp } if *prefix == p("/b") && *timestamp == t)
    );
    assert_eq!(store.current_seq(&me).unwrap(), 4);
    assert_eq!(store.current_seq(&ns(7)).unwrap(), 0);
}

#[test]
fn watchers_see_their_prefix_and_a_slow_one_lags_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let me = ns(1);
    let mut photos = store.watch(&me, &p("/photos"));
    let mut slow = store.watch(&me, &kith_store::Path::root());
    let mut other = store.watch(&ns(2), &kith_store::Path::root());
    store
        .put_blob(&me, &p("/photos/1"), &b"1"[..], "a/b")
        .unwrap();
    store
        .put_blob(&me, &p("/photosecret"), &b"2"[..], "a/b")
        .unwrap();
    match photos.try_recv() {
        Some(WatchEvent::Change(c)) => {
            assert!(matches!(c.kind, ChangeKind::Put { ref path, .. } if *path == p("/photos/1")))
        }
        e => panic!("expected a change, got {e:?}"),
    }
    assert_eq!(photos.try_recv(), None, "/photosecret is not under /photos");
    assert_eq!(other.try_recv(), None);
    // A tombstone above the watched prefix reaches it.
    store
        .apply_tombstone(&me, &kith_store::Path::root(), store.clock().now(), &[])
        .unwrap();
    assert!(matches!(
        photos.try_recv(),
        Some(WatchEvent::Change(kith_store::Change {
            kind: ChangeKind::Tombstone { .. },
            ..
        }))
    ));
    // Writers never wait for `slow`, which never reads.
    for i in 0..WATCH_CAPACITY + 10 {
        store
            .put_blob(&me, &p(&format!("/n/{i}")), &b"x"[..], "a/b")
            .unwrap();
    }
    assert_eq!(slow.try_recv(), Some(WatchEvent::Lagged));
    // After the lag signal, events flow again.
    store.put_blob(&me, &p("/after"), &b"x"[..], "a/b").unwrap();
    assert!(matches!(slow.try_recv(), Some(WatchEvent::Change(_))));
}

#[test]
fn async_and_blocking_receivers_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let me = ns(1);
    let mut w = store.watch(&me, &p("/x"));
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            store
                .put_blob(&ns(1), &p("/x/y"), &b"1"[..], "a/b")
                .unwrap()
        })
    };
    assert!(matches!(w.blocking_recv(), Some(WatchEvent::Change(_))));
    writer.join().unwrap();
    drop(store);
    // The store is gone once every handle is dropped… but the watcher is
    // only closed when the store's watcher list goes too.
}

#[test]
fn records_and_outbox_round_trip_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (me, friend) = (ns(1), ns(2));
    {
        let store = open(dir.path(), 1);
        store
            .put_record(RecordKind::Capability, &me, b"cap-1", b"signed bytes 1")
            .unwrap();
        store
            .put_record(RecordKind::Capability, &me, b"cap-2", b"signed bytes 2")
            .unwrap();
        store
            .put_record(RecordKind::Receipt, &me, b"cap-1", b"other kind")
            .unwrap();
        store
            .write_records(&[
                RecordOp::put(RecordKind::Friend, friend, b"ticket", b"t"),
                RecordOp::remove(RecordKind::Capability, me, b"cap-2"),
            ])
            .unwrap();
        assert_eq!(store.outbox_push(&friend, b"deletion request").unwrap(), 0);
        assert_eq!(store.outbox_push(&friend, b"key update").unwrap(), 1);
        store.outbox_remove(&friend, 0).unwrap();
        let too_long = vec![0u8; 256];
        assert!(
            store
                .put_record(RecordKind::Capability, &me, &too_long, b"x")
                .is_err()
        );
        assert!(
            store
                .put_record(RecordKind::Capability, &me, b"big", &vec![0; 2 << 20])
                .is_err()
        );
    }
    let store = open(dir.path(), 1);
    assert_eq!(
        store.records(RecordKind::Capability, &me).unwrap(),
        [(b"cap-1".to_vec(), b"signed bytes 1".to_vec())]
    );
    assert_eq!(
        store
            .record(RecordKind::Receipt, &me, b"cap-1")
            .unwrap()
            .as_deref(),
        Some(&b"other kind"[..])
    );
    assert_eq!(
        store
            .record(RecordKind::Friend, &friend, b"ticket")
            .unwrap()
            .as_deref(),
        Some(&b"t"[..])
    );
    assert_eq!(
        store.outbox(&friend).unwrap(),
        [(1, b"key update".to_vec())]
    );
    assert_eq!(
        store.outbox_push(&friend, b"next").unwrap(),
        2,
        "ids keep increasing after a restart"
    );
}

#[test]
fn records_of_a_kind_are_listed_across_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    store
        .put_record(RecordKind::Friend, &ns(2), b"ticket", b"b")
        .unwrap();
    store
        .put_record(RecordKind::Friend, &ns(1), b"ticket", b"a")
        .unwrap();
    store
        .put_record(RecordKind::Capability, &ns(1), b"x", b"other kind")
        .unwrap();
    let all = store.all_records(RecordKind::Friend).unwrap();
    assert_eq!(
        all,
        [
            (ns(1), b"ticket".to_vec(), b"a".to_vec()),
            (ns(2), b"ticket".to_vec(), b"b".to_vec())
        ]
    );
}
