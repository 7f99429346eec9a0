//! Deletion: tombstones remove what they cover, refuse older writes and any
//! later change to a killed document, accept new documents afterwards, and
//! survive restarts. A model-based property test checks the rules against a
//! reference implementation over random operation sequences.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT, ReadDoc};
use common::{device, ns, open, p};
use kith_store::{
    BlobHash, DocIdentity, EntryKind, Error, RecordKind, RecordOp, RemoteWrite, Store, Timestamp,
};
use proptest::prelude::*;

fn t(n: u64) -> Timestamp {
    Timestamp::from_micros(n)
}

fn doc_bytes(key: &str) -> Vec<u8> {
    let mut d = AutoCommit::new();
    d.put(ROOT, key, 1).unwrap();
    d.save()
}

#[test]
fn a_killed_document_never_half_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 2);
    let owner = ns(1);
    let path = p("/posts/1");
    let id = DocIdentity {
        created: t(100),
        creator: device(1),
    };
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "text", "secret").unwrap();
    let v1 = doc.save();
    let h1 = doc.get_heads();
    store
        .apply_changes(
            &owner,
            &path,
            id,
            RemoteWrite {
                device: device(1),
                timestamp: t(100),
            },
            &v1,
        )
        .unwrap();
    // Deleted at 200.
    let tomb_bytes = b"signed tombstone";
    let out = store
        .apply_tombstone(
            &owner,
            &p("/posts"),
            t(200),
            &[RecordOp::put(
                RecordKind::Tombstone,
                owner,
                b"tomb-1",
                tomb_bytes,
            )],
        )
        .unwrap();
    assert_eq!(out.removed, 1);
    assert!(store.get(&owner, &path).unwrap().is_none());
    assert_eq!(
        store
            .record(RecordKind::Tombstone, &owner, b"tomb-1")
            .unwrap()
            .as_deref(),
        Some(&tomb_bytes[..]),
        "the signed tombstone is kept with the deletion"
    );
    // A later change to the killed document, stamped after the deletion,
    // from any device: refused, because the document was created before it.
    doc.put(ROOT, "text", "edited later").unwrap();
    let later = doc.save_after(&h1);
    let err = store
        .apply_changes(
            &owner,
            &path,
            id,
            RemoteWrite {
                device: device(3),
                timestamp: t(300),
            },
            &later,
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::Tombstoned { tombstone, .. } if tombstone == t(200)),
        "{err}"
    );
    // The whole old document again: refused.
    assert!(matches!(
        store.apply_changes(
            &owner,
            &path,
            id,
            RemoteWrite {
                device: device(1),
                timestamp: t(100)
            },
            &v1
        ),
        Err(Error::Tombstoned { .. })
    ));
    // An old blob write: refused. A blob written after: accepted.
    let old_blob = RemoteWrite {
        device: device(1),
        timestamp: t(150),
    };
    assert!(matches!(
        store.put_blob_entry(
            &owner,
            &p("/posts/img"),
            old_blob,
            BlobHash::of(b"x"),
            1,
            "a/b"
        ),
        Err(Error::Tombstoned { .. })
    ));
    let new_blob = RemoteWrite {
        device: device(1),
        timestamp: t(250),
    };
    store
        .put_blob_entry(
            &owner,
            &p("/posts/img"),
            new_blob,
            BlobHash::of(b"x"),
            1,
            "a/b",
        )
        .unwrap();
    // A new document at the same path, created after the deletion: accepted.
    let new_id = DocIdentity {
        created: t(260),
        creator: device(1),
    };
    store
        .apply_changes(
            &owner,
            &path,
            new_id,
            RemoteWrite {
                device: device(1),
                timestamp: t(260),
            },
            &doc_bytes("fresh"),
        )
        .unwrap();
    let fresh = store.document(&owner, &path).unwrap().unwrap();
    assert!(
        fresh.get(ROOT, "text").unwrap().is_none(),
        "nothing of the old document"
    );
    // Outside the prefix nothing is affected.
    store
        .put_blob_entry(
            &owner,
            &p("/postscript"),
            old_blob,
            BlobHash::of(b"y"),
            1,
            "a/b",
        )
        .unwrap();
    // All of it holds after a restart.
    drop(store);
    let store = open(dir.path(), 2);
    assert!(matches!(
        store.apply_changes(
            &owner,
            &path,
            id,
            RemoteWrite {
                device: device(3),
                timestamp: t(300)
            },
            &later
        ),
        Err(Error::Tombstoned { .. })
    ));
    assert_eq!(store.tombstones(&owner).unwrap(), [(p("/posts"), t(200))]);
    assert_eq!(
        store.covering_tombstone(&owner, &p("/posts/x/y")),
        Some(t(200))
    );
    assert_eq!(store.covering_tombstone(&owner, &p("/postscript")), None);
}

#[test]
fn local_writes_after_a_deletion_are_new_documents() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let me = ns(1);
    let path = p("/notes/1");
    store
        .edit_document(&me, &path, |d| d.put(ROOT, "old", 1))
        .unwrap()
        .0
        .unwrap();
    // A deletion from a device whose clock runs ahead of ours.
    let ahead = Timestamp::from_micros(store.clock().now().as_micros() + 60_000_000);
    store
        .apply_tombstone(&me, &p("/notes"), ahead, &[])
        .unwrap();
    let (_, entry) = store
        .edit_document(&me, &path, |d| d.put(ROOT, "new", 1))
        .unwrap();
    let EntryKind::Document { created, .. } = entry.kind else {
        panic!()
    };
    assert!(created > ahead, "the local clock moved past the deletion");
    let doc = store.document(&me, &path).unwrap().unwrap();
    assert!(doc.get(ROOT, "old").unwrap().is_none());
    // Re-applying the same tombstone removes nothing and is known.
    let again = store
        .apply_tombstone(&me, &p("/notes"), ahead, &[])
        .unwrap();
    assert!(again.already_known);
    assert_eq!(again.removed, 0);
    assert!(store.get(&me, &path).unwrap().is_some());
}

// ----- model-based property test ------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Blob {
        path: usize,
        time: u64,
        dev: u8,
        content: u8,
    },
    Doc {
        path: usize,
        created: u64,
        dev: u8,
        key: u8,
    },
    Tomb {
        prefix: usize,
        time: u64,
    },
    Reopen,
}

const PATHS: &[&str] = &["/", "/a", "/a/b", "/a/b/c", "/ab", "/b"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1..PATHS.len(), 1..40u64, 1..3u8, 0..3u8).prop_map(|(path, time, dev, content)| Op::Blob { path, time, dev, content }),
        4 => (1..PATHS.len(), 1..40u64, 1..3u8, 0..3u8).prop_map(|(path, created, dev, key)| Op::Doc { path, created, dev, key }),
        2 => (0..PATHS.len(), 1..40u64).prop_map(|(prefix, time)| Op::Tomb { prefix, time }),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum Model {
    Blob { time: u64, dev: u8, content: u8 },
    Doc { created: u64, dev: u8 },
}

impl Model {
    fn identity(&self) -> (u64, u8) {
        match self {
            Model::Blob { time, dev, .. } => (*time, *dev),
            Model::Doc { created, dev } => (*created, *dev),
        }
    }
}

#[derive(Debug, PartialEq)]
enum Expect {
    Ok,
    Tombstoned,
    Superseded,
    WrongKind,
}

fn classify<T: std::fmt::Debug>(r: &Result<T, Error>) -> Expect {
    match r {
        Ok(_) => Expect::Ok,
        Err(Error::Tombstoned { .. }) => Expect::Tombstoned,
        Err(Error::Superseded { .. }) => Expect::Superseded,
        Err(Error::WrongKind { .. }) => Expect::WrongKind,
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn check(store: &Store, model: &BTreeMap<String, Model>) {
    let page = store
        .list(&ns(1), &kith_store::Path::root(), None, 1000)
        .unwrap();
    let got: BTreeMap<String, (u64, u8)> = page
        .entries
        .iter()
        .map(|(path, e)| {
            let id = match &e.kind {
                EntryKind::Document {
                    created, creator, ..
                } => (created.as_micros(), creator.as_bytes()[0]),
                EntryKind::Blob { .. } => (e.timestamp.as_micros(), e.device.as_bytes()[0]),
            };
            (path.to_string(), id)
        })
        .collect();
    let want: BTreeMap<String, (u64, u8)> = model
        .iter()
        .map(|(k, v)| (k.clone(), v.identity()))
        .collect();
    assert_eq!(got, want);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn tombstone_and_identity_rules_match_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), 9);
        let owner = ns(1);
        let mut model: BTreeMap<String, Model> = BTreeMap::new();
        let mut tombs: Vec<(String, u64)> = Vec::new();
        let covered = |tombs: &[(String, u64)], path: &str, time: u64| {
            tombs.iter().any(|(prefix, t)| p(prefix).is_prefix_of(&p(path)) && *t >= time)
        };
        for op in ops {
            match op {
                Op::Blob { path, time, dev, content } => {
                    let path_s = PATHS[path];
                    let hash = BlobHash::of(&[content]);
                    let write = RemoteWrite { device: device(dev), timestamp: t(time) };
                    let r = store.put_blob_entry(&owner, &p(path_s), write, hash, 1, "a/b");
                    let expect = if covered(&tombs, path_s, time) {
                        Expect::Tombstoned
                    } else {
                        match model.get(path_s) {
                            Some(Model::Blob { time: t0, dev: d0, content: c0 }) if (*t0, *d0) == (time, dev) && *c0 == content => Expect::Ok,
                            Some(m) if m.identity() >= (time, dev) => Expect::Superseded,
                            _ => Expect::Ok,
                        }
                    };
                    prop_assert_eq!(classify(&r), expect);
                    if r.is_ok() {
                        model.insert(path_s.to_string(), Model::Blob { time, dev, content });
                    }
                }
                Op::Doc { path, created, dev, key } => {
                    let path_s = PATHS[path];
                    let id = DocIdentity { created: t(created), creator: device(dev) };
                    let write = RemoteWrite { device: device(dev), timestamp: t(created) };
                    let r = store.apply_changes(&owner, &p(path_s), id, write, &doc_bytes(&format!("k{key}")));
                    let expect = if covered(&tombs, path_s, created) {
                        Expect::Tombstoned
                    } else {
                        match model.get(path_s) {
                            Some(m) if m.identity() > (created, dev) => Expect::Superseded,
                            Some(Model::Blob { .. }) if model[path_s].identity() == (created, dev) => Expect::WrongKind,
                            _ => Expect::Ok,
                        }
                    };
                    prop_assert_eq!(classify(&r), expect);
                    if r.is_ok() {
                        model.insert(path_s.to_string(), Model::Doc { created, dev });
                    }
                }
                Op::Tomb { prefix, time } => {
                    let prefix_s = PATHS[prefix];
                    store.apply_tombstone(&owner, &p(prefix_s), t(time), &[]).unwrap();
                    model.retain(|path, m| !(p(prefix_s).is_prefix_of(&p(path)) && m.identity().0 <= time));
                    tombs.push((prefix_s.to_string(), time));
                }
                Op::Reopen => {
                    drop(store);
                    store = open(dir.path(), 9);
                }
            }
            check(&store, &model);
        }
    }
}
