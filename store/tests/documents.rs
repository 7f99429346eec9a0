//! Documents: create, edit, read, heads, changes for a peer, applying remote
//! changes, queued changes across restarts, identity and limits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT, ReadDoc};
use common::{device, ns, open, p};
use kith_store::{
    DocIdentity, EntryKind, Error, Limit, Limits, Options, RemoteWrite, Store, Timestamp,
};

fn text(doc: &AutoCommit, key: &str) -> Option<String> {
    doc.get(ROOT, key)
        .unwrap()
        .and_then(|(v, _)| v.into_scalar().ok())
        .and_then(|s| s.into_string().ok())
}

fn identity_of(store: &Store, n: &kith_store::NamespaceId, path: &kith_store::Path) -> DocIdentity {
    match store.get(n, path).unwrap().unwrap().kind {
        EntryKind::Document {
            created, creator, ..
        } => DocIdentity { created, creator },
        EntryKind::Blob { .. } => panic!("not a document"),
    }
}

fn remote(dev: u8, t: u64) -> RemoteWrite {
    RemoteWrite {
        device: device(dev),
        timestamp: Timestamp::from_micros(t),
    }
}

#[test]
fn edit_read_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let me = ns(1);
    let path = p("/posts/1");
    {
        let store = open(dir.path(), 1);
        let (r, entry) = store
            .edit_document(&me, &path, |d| d.put(ROOT, "title", "hello"))
            .unwrap();
        r.unwrap();
        assert_eq!(entry.seq, 1);
        assert_eq!(entry.device, device(1));
        let (_, entry2) = store
            .edit_document(&me, &path, |d| d.put(ROOT, "body", "world"))
            .unwrap();
        assert_eq!(entry2.seq, 2);
        assert!(entry2.timestamp > entry.timestamp);
        assert_eq!(store.heads(&me, &path).unwrap(), entry2.heads().unwrap());
        // An edit that changes nothing writes nothing.
        let (_, same) = store.edit_document(&me, &path, |_| ()).unwrap();
        assert_eq!(same.seq, 2);
    }
    let store = open(dir.path(), 1);
    let doc = store.document(&me, &path).unwrap().unwrap();
    assert_eq!(text(&doc, "title").as_deref(), Some("hello"));
    assert_eq!(text(&doc, "body").as_deref(), Some("world"));
    assert_eq!(store.current_seq(&me).unwrap(), 2);
    assert!(store.document(&me, &p("/nothing")).unwrap().is_none());
}

#[test]
fn many_edits_compact_into_a_snapshot_and_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let me = ns(1);
    let path = p("/counter");
    for i in 0..50i64 {
        store
            .edit_document(&me, &path, |d| d.put(ROOT, "n", i))
            .unwrap()
            .0
            .unwrap();
    }
    drop(store);
    let store = open(dir.path(), 1);
    let doc = store.document(&me, &path).unwrap().unwrap();
    let (v, _) = doc.get(ROOT, "n").unwrap().unwrap();
    assert_eq!(v.as_i64(), Some(49));
    let EntryKind::Document { size, .. } = store.get(&me, &path).unwrap().unwrap().kind else {
        panic!()
    };
    assert!(size < 4096, "a 50-edit counter takes {size} bytes");
}

#[test]
fn create_document_replaces_with_a_new_identity() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let me = ns(1);
    let path = p("/doc");
    store
        .edit_document(&me, &path, |d| d.put(ROOT, "old", 1))
        .unwrap()
        .0
        .unwrap();
    let first = identity_of(&store, &me, &path);
    let mut fresh = AutoCommit::new();
    fresh.put(ROOT, "new", 2).unwrap();
    store.create_document(&me, &path, fresh).unwrap();
    let second = identity_of(&store, &me, &path);
    assert!(second.created > first.created);
    let doc = store.document(&me, &path).unwrap().unwrap();
    assert!(doc.get(ROOT, "old").unwrap().is_none());
    assert!(doc.get(ROOT, "new").unwrap().is_some());
    // Changes for the replaced document are refused.
    let mut stale = AutoCommit::new();
    stale.put(ROOT, "stale", 1).unwrap();
    let err = store
        .apply_changes(&me, &path, first, remote(2, 5), &stale.save())
        .unwrap_err();
    assert!(matches!(err, Error::Superseded { .. }), "{err}");
}

#[test]
fn two_stores_sync_by_changes_for_heads() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(da.path(), 1);
    let b = open(db.path(), 2);
    let owner = ns(1);
    let path = p("/shared/list");
    a.edit_document(&owner, &path, |d| d.put(ROOT, "a", 1))
        .unwrap()
        .0
        .unwrap();
    let id = identity_of(&a, &owner, &path);
    // b has nothing: everything.
    let all = a.changes_for(&owner, &path, &[]).unwrap();
    let out = b
        .apply_changes(&owner, &path, id, remote(1, 10), &all)
        .unwrap();
    assert!(out.changed && out.missing_deps.is_empty());
    assert_eq!(
        out.entry.heads(),
        Some(&a.heads(&owner, &path).unwrap()[..])
    );
    // Re-applying is a no-op.
    let again = b
        .apply_changes(&owner, &path, id, remote(1, 10), &all)
        .unwrap();
    assert!(!again.changed);
    assert_eq!(again.entry.seq, out.entry.seq);
    // Only the difference travels.
    a.edit_document(&owner, &path, |d| d.put(ROOT, "b", 2))
        .unwrap()
        .0
        .unwrap();
    let delta = a
        .changes_for(&owner, &path, &b.heads(&owner, &path).unwrap())
        .unwrap();
    assert!(delta.len() < all.len() + 200);
    b.apply_changes(&owner, &path, id, remote(1, 11), &delta)
        .unwrap();
    assert_eq!(
        b.heads(&owner, &path).unwrap(),
        a.heads(&owner, &path).unwrap()
    );
    // Unknown heads are ignored, not an error.
    let unknown = automerge::ChangeHash([7; 32]);
    assert!(!a.changes_for(&owner, &path, &[unknown]).unwrap().is_empty());
}

#[test]
fn changes_with_missing_dependencies_wait_and_survive_a_restart() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(da.path(), 1);
    let owner = ns(1);
    let path = p("/doc");
    a.edit_document(&owner, &path, |d| d.put(ROOT, "x", 1))
        .unwrap()
        .0
        .unwrap();
    let id = identity_of(&a, &owner, &path);
    let h1 = a.heads(&owner, &path).unwrap();
    a.edit_document(&owner, &path, |d| d.put(ROOT, "y", 2))
        .unwrap()
        .0
        .unwrap();
    let h2 = a.heads(&owner, &path).unwrap();
    a.edit_document(&owner, &path, |d| d.put(ROOT, "z", 3))
        .unwrap()
        .0
        .unwrap();
    let first = a.changes_for(&owner, &path, &[]).unwrap();
    let base = {
        let mut doc = a.document(&owner, &path).unwrap().unwrap();
        doc.save_after(&[]).len();
        let mut f = doc.fork_at(&h1).unwrap();
        f.save()
    };
    let middle = {
        let mut doc = a.document(&owner, &path).unwrap().unwrap();
        let all = doc.save_after(&h1);
        let last = doc.save_after(&h2);
        (all, last)
    };
    let (y_and_z, only_z) = middle;
    {
        let b = open(db.path(), 2);
        b.apply_changes(&owner, &path, id, remote(1, 1), &base)
            .unwrap();
        let out = b
            .apply_changes(&owner, &path, id, remote(1, 3), &only_z)
            .unwrap();
        assert!(
            !out.missing_deps.is_empty(),
            "z depends on y, which is missing"
        );
        assert!(matches!(
            out.entry.kind,
            EntryKind::Document { pending: true, .. }
        ));
    }
    // Restart: the queued change is still there and applies when y arrives.
    let b = open(db.path(), 2);
    let doc = b.document(&owner, &path).unwrap().unwrap();
    assert!(doc.get(ROOT, "z").unwrap().is_none());
    let out = b
        .apply_changes(&owner, &path, id, remote(1, 2), &y_and_z)
        .unwrap();
    assert!(out.missing_deps.is_empty());
    assert!(matches!(
        out.entry.kind,
        EntryKind::Document { pending: false, .. }
    ));
    drop(b);
    let b = open(db.path(), 2);
    let doc = b.document(&owner, &path).unwrap().unwrap();
    assert_eq!(doc.get(ROOT, "z").unwrap().unwrap().0.as_i64(), Some(3));
    assert_eq!(
        b.heads(&owner, &path).unwrap(),
        a.heads(&owner, &path).unwrap()
    );
    let _ = first;
}

#[test]
fn garbage_changes_are_refused_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let owner = ns(1);
    let path = p("/doc");
    store
        .edit_document(&owner, &path, |d| d.put(ROOT, "keep", 1))
        .unwrap()
        .0
        .unwrap();
    let id = identity_of(&store, &owner, &path);
    let before = store.get(&owner, &path).unwrap();
    for garbage in [&b"hello"[..], &[0x85, 0x6f, 0x4a, 0x83, 1, 2, 3], &[]] {
        let r = store.apply_changes(&owner, &path, id, remote(2, 9), garbage);
        if let Ok(out) = &r {
            assert!(!out.changed, "garbage changed the document");
        }
    }
    assert_eq!(store.get(&owner, &path).unwrap(), before);
    let doc = store.document(&owner, &path).unwrap().unwrap();
    assert!(doc.get(ROOT, "keep").unwrap().is_some());
}

#[test]
fn limits_give_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_change_size: 1_000,
        max_document_size: 2_000,
        ..Limits::default()
    };
    let store = Store::open(dir.path(), Options::new(device(1)).limits(limits)).unwrap();
    let owner = ns(1);
    // Incompressible text, so Automerge's compression cannot shrink it.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let big: String = (0..1_500)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect();
    let err = store
        .edit_document(&owner, &p("/big"), |d| d.put(ROOT, "t", big.as_str()))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                limit: Limit::ChangeSize,
                ..
            }
        ),
        "{err}"
    );
    assert!(store.get(&owner, &p("/big")).unwrap().is_none());
    let err = store
        .apply_changes(
            &owner,
            &p("/big"),
            DocIdentity {
                created: Timestamp::from_micros(1),
                creator: device(2),
            },
            remote(2, 1),
            &vec![0u8; 1_001],
        )
        .unwrap_err();
    assert!(matches!(
        err,
        Error::TooLarge {
            limit: Limit::ChangeSize,
            ..
        }
    ));
    // Growing a document past its limit is refused; what it had is kept.
    let chunk = &big[..600];
    let mut err = None;
    for i in 0..10 {
        match store.edit_document(&owner, &p("/grow"), |d| d.put(ROOT, format!("k{i}"), chunk)) {
            Ok(_) => {}
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert!(
        matches!(
            err,
            Some(Error::TooLarge {
                limit: Limit::DocumentSize,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(store.document(&owner, &p("/grow")).unwrap().is_some());
}

#[test]
fn root_and_wrong_kind_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let owner = ns(1);
    assert!(matches!(
        store.edit_document(&owner, &kith_store::Path::root(), |_| ()),
        Err(Error::RootPath)
    ));
    store
        .put_blob(&owner, &p("/b"), &b"bytes"[..], "text/plain")
        .unwrap();
    assert!(matches!(
        store.edit_document(&owner, &p("/b"), |_| ()),
        Err(Error::WrongKind { .. })
    ));
    assert!(matches!(
        store.document(&owner, &p("/b")),
        Err(Error::WrongKind { .. })
    ));
    assert!(matches!(
        store.heads(&owner, &p("/none")),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn a_batch_applies_each_document_as_it_would_be_applied_alone() {
    batch_applies_each_document_alone(0);
}

/// The same batch behind enough new documents that the store loads new
/// documents ahead on a second thread: each document's outcome is still
/// its own (the same path twice, the second an increment the helper may
/// have loaded into nothing before the first was written, included).
#[test]
fn a_batch_loaded_ahead_on_a_second_thread_applies_each_document_as_alone() {
    batch_applies_each_document_alone(40);
}

fn batch_applies_each_document_alone(fillers: usize) {
    use kith_store::{RecordKind, RecordOp, RemoteChanges};
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(da.path(), 1);
    let owner = ns(1);
    let (one, two, gone, bad, newer) = (
        p("/posts/1"),
        p("/posts/2"),
        p("/gone/1"),
        p("/bad"),
        p("/newer"),
    );
    for path in [&one, &two, &gone, &newer] {
        a.edit_document(&owner, path, |d| d.put(ROOT, "text", path.to_string()))
            .unwrap()
            .0
            .unwrap();
    }
    let filler_paths: Vec<_> = (0..fillers).map(|i| p(&format!("/fill/{i}"))).collect();
    for path in &filler_paths {
        a.edit_document(&owner, path, |d| d.put(ROOT, "n", path.to_string()))
            .unwrap()
            .0
            .unwrap();
    }
    let id = |path| identity_of(&a, &owner, path);
    let full = |path| a.changes_for(&owner, path, &[]).unwrap();
    let (one_v1, two_v1, gone_v1, newer_v1) = (full(&one), full(&two), full(&gone), full(&newer));
    let filler_bytes: Vec<Vec<u8>> = filler_paths.iter().map(full).collect();
    let one_heads_v1 = a.heads(&owner, &one).unwrap();
    a.edit_document(&owner, &one, |d| d.put(ROOT, "more", 2))
        .unwrap()
        .0
        .unwrap();
    let one_delta = a.changes_for(&owner, &one, &one_heads_v1).unwrap();

    let dir_b = db.path().to_owned();
    {
        let b = open(&dir_b, 2);
        // b holds a deletion of /gone and a newer document at /newer.
        b.apply_tombstone(
            &owner,
            &p("/gone"),
            Timestamp::from_micros(u64::MAX / 2),
            &[RecordOp::put(RecordKind::Tombstone, owner, b"t", b"tomb")],
        )
        .unwrap();
        let later = DocIdentity {
            created: Timestamp::from_micros(u64::MAX / 2),
            creator: device(3),
        };
        let mut other = AutoCommit::new();
        other.put(ROOT, "text", "newer").unwrap();
        b.apply_changes(
            &owner,
            &newer,
            later,
            remote(3, u64::MAX / 2),
            &other.save(),
        )
        .unwrap();
        let newer_before = b.get(&owner, &newer).unwrap();

        let doc = |path, changes, t| RemoteChanges {
            path,
            identity: id(path),
            write: remote(1, t),
            changes,
        };
        let mut batch: Vec<RemoteChanges<'_>> = filler_paths
            .iter()
            .zip(&filler_bytes)
            .map(|(path, bytes)| doc(path, &bytes[..], 9))
            .collect();
        batch.extend([
            doc(&one, &one_v1[..], 10),
            doc(&two, &two_v1[..], 11),
            doc(&gone, &gone_v1[..], 12),
            RemoteChanges {
                path: &bad,
                identity: id(&one),
                write: remote(1, 13),
                changes: b"hello",
            },
            doc(&newer, &newer_v1[..], 14),
            // The same path again reads what the batch wrote before.
            doc(&one, &one_delta[..], 15),
            doc(&two, &two_v1[..], 16),
        ]);
        let all = b.apply_changes_batch(&owner, &batch).unwrap();
        assert_eq!(all.len(), batch.len());
        for (i, outcome) in all[..fillers].iter().enumerate() {
            assert!(
                matches!(outcome, Ok(o) if o.changed),
                "filler {i}: {outcome:?}"
            );
        }
        let out = &all[fillers..];
        assert!(matches!(&out[0], Ok(o) if o.changed));
        assert!(matches!(&out[1], Ok(o) if o.changed));
        assert!(
            matches!(&out[2], Err(Error::Tombstoned { .. })),
            "{:?}",
            out[2]
        );
        assert!(matches!(&out[3], Err(Error::Automerge(_))), "{:?}", out[3]);
        assert!(
            matches!(&out[4], Err(Error::Superseded { .. })),
            "{:?}",
            out[4]
        );
        assert!(matches!(&out[5], Ok(o) if o.changed));
        assert!(matches!(&out[6], Ok(o) if !o.changed));
        assert_eq!(b.get(&owner, &newer).unwrap(), newer_before);
    }
    // What the batch stored is on disk: read after a reopen.
    let b = open(&dir_b, 2);
    assert_eq!(
        b.heads(&owner, &one).unwrap(),
        a.heads(&owner, &one).unwrap()
    );
    assert_eq!(
        b.heads(&owner, &two).unwrap(),
        a.heads(&owner, &two).unwrap()
    );
    let one_doc = b.document(&owner, &one).unwrap().unwrap();
    assert!(one_doc.get(ROOT, "more").unwrap().is_some());
    assert!(b.get(&owner, &gone).unwrap().is_none());
    assert!(b.get(&owner, &bad).unwrap().is_none());
    let newer_doc = b.document(&owner, &newer).unwrap().unwrap();
    assert_eq!(text(&newer_doc, "text").as_deref(), Some("newer"));
    for path in &filler_paths {
        assert_eq!(
            b.heads(&owner, path).unwrap(),
            a.heads(&owner, path).unwrap()
        );
    }
}

#[test]
fn a_purged_document_keeps_its_entry_and_comes_back_only_whole() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(da.path(), 1);
    let b = open(db.path(), 2);
    let owner = ns(1);
    let path = p("/posts/1");
    a.edit_document(&owner, &path, |d| d.put(ROOT, "text", "first"))
        .unwrap()
        .0
        .unwrap();
    let id = identity_of(&a, &owner, &path);
    let whole = a.document_bytes(&owner, &path).unwrap();
    let held = b
        .apply_changes(&owner, &path, id, remote(1, 10), &whole)
        .unwrap()
        .entry;
    let EntryKind::Document { size, .. } = held.kind else {
        panic!("a document")
    };

    assert_eq!(
        b.purge_documents(&owner, std::slice::from_ref(&path))
            .unwrap(),
        size
    );
    assert!(b.is_purged(&owner, &path).unwrap());
    // The entry stays as it was (the timeline still knows the post); the
    // content is not here, and the store says so rather than answering an
    // empty document.
    assert_eq!(b.get(&owner, &path).unwrap(), Some(held.clone()));
    assert!(matches!(
        b.document(&owner, &path),
        Err(Error::NotHere { .. })
    ));
    assert!(matches!(
        b.document_bytes(&owner, &path),
        Err(Error::NotHere { .. })
    ));
    assert!(matches!(
        b.edit_document(&owner, &path, |d| d.put(ROOT, "x", 1)),
        Err(Error::NotHere { .. })
    ));
    // Purging again frees nothing; nor does purging a path without a document.
    assert_eq!(
        b.purge_documents(&owner, &[path.clone(), p("/none")])
            .unwrap(),
        0
    );
    // It survives a restart.
    drop(b);
    let b = open(db.path(), 2);
    assert!(matches!(
        b.document(&owner, &path),
        Err(Error::NotHere { .. })
    ));

    // The owner edits it; an increment alone (a live push) does not bring
    // it back, and changes nothing.
    let heads = a.heads(&owner, &path).unwrap();
    a.edit_document(&owner, &path, |d| d.put(ROOT, "text", "second"))
        .unwrap()
        .0
        .unwrap();
    let delta = a.changes_for(&owner, &path, &heads).unwrap();
    let out = b
        .apply_changes(&owner, &path, id, remote(1, 11), &delta)
        .unwrap();
    assert!(!out.changed && out.missing_deps.is_empty());
    assert!(b.is_purged(&owner, &path).unwrap());
    assert_eq!(b.get(&owner, &path).unwrap(), Some(held.clone()));

    // The whole document brings it back, as it is now, in a new write
    // (the change log shows it, so indexes read it again).
    let whole = a.document_bytes(&owner, &path).unwrap();
    let out = b
        .apply_changes(&owner, &path, id, remote(1, 11), &whole)
        .unwrap();
    assert!(out.changed);
    assert!(out.entry.seq > held.seq);
    assert!(!b.is_purged(&owner, &path).unwrap());
    let doc = b.document(&owner, &path).unwrap().unwrap();
    assert_eq!(text(&doc, "text").as_deref(), Some("second"));
    assert_eq!(
        b.heads(&owner, &path).unwrap(),
        a.heads(&owner, &path).unwrap()
    );
    drop(b);
    let b = open(db.path(), 2);
    let doc = b.document(&owner, &path).unwrap().unwrap();
    assert_eq!(text(&doc, "text").as_deref(), Some("second"));

    // A tombstone removes a purged document's entry and its mark.
    b.purge_documents(&owner, std::slice::from_ref(&path))
        .unwrap();
    let later = Timestamp::from_micros(b.clock().now().as_micros() + 1_000_000);
    b.apply_tombstone(&owner, &p("/posts"), later, &[]).unwrap();
    assert_eq!(b.get(&owner, &path).unwrap(), None);
    assert!(!b.is_purged(&owner, &path).unwrap());
}
