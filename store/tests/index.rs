//! The derived-index keyspace: atomic batches, ordered bounded scans, size
//! limits, and durability across a reopen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::open;
use kith_store::{Error, IndexOp, Limit, MAX_INDEX_KEY_LEN, MAX_INDEX_VALUE_LEN};

fn put(key: &[u8], value: &[u8]) -> IndexOp {
    IndexOp::Put {
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

#[test]
fn scans_are_ordered_bounded_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), 1);
        store
            .write_index(&[
                put(b"a/3", b"three"),
                put(b"a/1", b"one"),
                put(b"a/2", b"two"),
                put(b"b/1", b"other"),
                put(b"a", b"the prefix itself"),
            ])
            .unwrap();
        store
            .write_index(&[IndexOp::Remove { key: b"a".to_vec() }])
            .unwrap();
        let all = store.index_scan(b"a/", None, 10).unwrap();
        let keys: Vec<&[u8]> = all.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, [&b"a/1"[..], b"a/2", b"a/3"]);
        let two = store.index_scan(b"a/", None, 2).unwrap();
        assert_eq!(two.len(), 2);
        let rest = store.index_scan(b"a/", Some(&two[1].0), 10).unwrap();
        assert_eq!(rest, vec![(b"a/3".to_vec(), b"three".to_vec())]);
        assert!(store.index_scan(b"a/", None, 0).unwrap().is_empty());
        // `after` before the prefix starts at the prefix.
        assert_eq!(store.index_scan(b"a/", Some(b"0"), 10).unwrap().len(), 3);
        assert_eq!(
            store.index_get(b"b/1").unwrap().as_deref(),
            Some(&b"other"[..])
        );
        assert_eq!(store.index_get(b"a").unwrap(), None);
        assert_eq!(store.index_get(b"").unwrap(), None);
    }
    let store = open(dir.path(), 1);
    assert_eq!(store.index_scan(b"a/", None, 10).unwrap().len(), 3);
    assert_eq!(
        store.index_get(b"a/2").unwrap().as_deref(),
        Some(&b"two"[..])
    );
    // Compaction keeps the index.
    store.compact().unwrap();
    assert_eq!(store.index_scan(b"", None, 10).unwrap().len(), 4);
}

#[test]
fn oversize_or_empty_keys_and_values_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let long_key = vec![b'k'; MAX_INDEX_KEY_LEN + 1];
    let big_value = vec![0; MAX_INDEX_VALUE_LEN + 1];
    for (ops, limit) in [
        (vec![put(b"ok", b"1"), put(&long_key, b"")], Limit::IndexKey),
        (vec![put(b"ok", b"1"), put(b"", b"")], Limit::IndexKey),
        (
            vec![put(b"ok", b"1"), put(b"v", &big_value)],
            Limit::IndexValue,
        ),
    ] {
        let e = store.write_index(&ops).unwrap_err();
        assert!(
            matches!(e, Error::TooLarge { limit: l, .. } if l == limit),
            "{e}"
        );
        assert_eq!(store.index_get(b"ok").unwrap(), None, "nothing written");
    }
    assert_eq!(store.index_get(&long_key).unwrap(), None);
    store
        .write_index(&[put(
            &vec![b'k'; MAX_INDEX_KEY_LEN],
            &vec![1; MAX_INDEX_VALUE_LEN],
        )])
        .unwrap();
}
