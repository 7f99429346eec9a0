//! Erasure by crypto-shredding: documents and blobs are never in the data
//! folder in the clear, and a deletion destroys the keys of what it deleted
//! before it returns, so that no file in the data folder holds a key that
//! opens any copy of the deleted bytes left in fjall's journal or tables.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

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

/// The keys in the vault file (its non-zero 32-byte slots after the
/// 64-byte header).
fn vault_keys(dir: &std::path::Path) -> HashSet<[u8; 32]> {
    let bytes = std::fs::read(dir.join("vault")).unwrap();
    assert_eq!(&bytes[..10], b"kith-vault");
    bytes[64..]
        .chunks_exact(32)
        .filter(|k| k.iter().any(|b| *b != 0))
        .map(|k| k.try_into().unwrap())
        .collect()
}

/// The keys of `before` no longer in the vault under `dir`.
fn keys_gone(dir: &std::path::Path, before: &HashSet<[u8; 32]>) -> HashSet<[u8; 32]> {
    before.difference(&vault_keys(dir)).copied().collect()
}

/// Every key in `gone` that some file under `dir` still holds.
fn keys_left(dir: &std::path::Path, gone: &HashSet<[u8; 32]>) -> Vec<std::path::PathBuf> {
    gone.iter().flat_map(|k| folder_contains(dir, k)).collect()
}

fn write_secrets(store: &kith_store::Store, blob: &[u8]) {
    let me = ns(1);
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
    store
        .put_blob(&me, &p("/secret/photo"), blob, "text/plain")
        .unwrap();
}

#[test]
fn documents_and_blobs_are_never_in_the_data_folder_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let blob = format!("blob {MARKER} blob").repeat(20_000).into_bytes();
    write_secrets(&store, &blob);
    store.sync().unwrap();
    let left = folder_contains(dir.path(), MARKER.as_bytes());
    assert!(left.is_empty(), "plaintext in {left:?}");
    // Read back whole and in ranges, after a restart.
    drop(store);
    let store = open(dir.path(), 1);
    let doc = store.document(&ns(1), &p("/secret/doc")).unwrap().unwrap();
    let text = doc
        .get(ROOT, "text")
        .unwrap()
        .unwrap()
        .0
        .into_string()
        .unwrap();
    assert_eq!(text, format!("{MARKER} v4"));
    let hash = store
        .get(&ns(1), &p("/secret/photo"))
        .unwrap()
        .unwrap()
        .blob_hash()
        .unwrap();
    let mut all = Vec::new();
    std::io::Read::read_to_end(&mut store.read_blob(&hash, ..).unwrap(), &mut all).unwrap();
    assert_eq!(all, blob);
    let mut part = Vec::new();
    std::io::Read::read_to_end(
        &mut store.read_blob(&hash, 300_001..300_100).unwrap(),
        &mut part,
    )
    .unwrap();
    assert_eq!(part, blob[300_001..300_100]);
}

#[test]
fn a_deletion_destroys_the_keys_of_what_it_deleted_before_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let me = ns(1);
    let blob = format!("blob {MARKER} blob").into_bytes();
    write_secrets(&store, &blob);
    let before = vault_keys(dir.path());
    assert_eq!(before.len(), 3, "two documents and a blob, a key each");

    let out = store
        .apply_tombstone(&me, &p("/secret"), store.clock().now(), &[])
        .unwrap();
    assert_eq!(out.removed, 2);
    assert_eq!(out.blobs_deleted, 1);

    // No compaction: the ciphertext may still be in the journal, but the
    // keys that opened it are nowhere in the folder.
    let gone = keys_gone(dir.path(), &before);
    assert_eq!(gone.len(), 2, "the secret document's and the blob's keys");
    let left = keys_left(dir.path(), &gone);
    assert!(left.is_empty(), "a destroyed key is still in {left:?}");
    assert!(folder_contains(dir.path(), MARKER.as_bytes()).is_empty());

    // What was not deleted is intact after a restart, and a new document
    // reuses no destroyed key.
    drop(store);
    let store = open(dir.path(), 1);
    let doc = store.document(&me, &p("/keep/doc")).unwrap().unwrap();
    assert!(doc.get(ROOT, "text").unwrap().is_some());
    assert!(store.get(&me, &p("/secret/doc")).unwrap().is_none());
    store
        .edit_document(&me, &p("/new"), |d| d.put(ROOT, "text", "new"))
        .unwrap()
        .0
        .unwrap();
    assert!(vault_keys(dir.path()).is_disjoint(&gone));
    // Compaction still runs and keeps what stays.
    store.compact().unwrap();
    assert!(store.document(&me, &p("/keep/doc")).unwrap().is_some());
}

#[test]
fn replacing_a_document_or_a_blob_destroys_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let me = ns(1);
    store
        .edit_document(&me, &p("/doc"), |d| d.put(ROOT, "text", "first"))
        .unwrap()
        .0
        .unwrap();
    store
        .put_blob(&me, &p("/photo"), &b"first photo"[..], "image/jpeg")
        .unwrap();
    let before = vault_keys(dir.path());
    store
        .create_document(&me, &p("/doc"), automerge::AutoCommit::new())
        .unwrap();
    store
        .put_blob(&me, &p("/photo"), &b"second photo"[..], "image/jpeg")
        .unwrap();
    let now = vault_keys(dir.path());
    assert_eq!(before.intersection(&now).count(), 0, "both old keys went");
    assert_eq!(now.len(), 2, "one new key each");
    assert!(keys_left(dir.path(), &before).is_empty());
}

#[test]
fn a_purged_blob_loses_its_key_and_a_fetched_one_is_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let me = ns(1);
    let content = format!("fetched {MARKER} fetched")
        .repeat(1000)
        .into_bytes();
    let hash = kith_store::BlobHash::from(blake3::hash(&content));
    let write = kith_store::RemoteWrite {
        device: common::device(2),
        timestamp: store.clock().now(),
    };
    store
        .put_blob_entry(
            &me,
            &p("/theirs"),
            write,
            hash,
            content.len() as u64,
            "text/plain",
        )
        .unwrap();
    // A download in two parts, the first interrupted.
    let mut partial = store.resume_import(hash, content.len() as u64).unwrap();
    partial.append(&content[..5000]).unwrap();
    drop(partial);
    store.sync().unwrap();
    assert!(folder_contains(dir.path(), MARKER.as_bytes()).is_empty());
    let mut partial = store.resume_import(hash, content.len() as u64).unwrap();
    assert_eq!(partial.offset(), 5000);
    partial.append(&content[5000..]).unwrap();
    store.finish_import(partial).unwrap();
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut store.read_blob(&hash, ..).unwrap(), &mut back).unwrap();
    assert_eq!(back, content);
    assert!(folder_contains(dir.path(), MARKER.as_bytes()).is_empty());

    let before = vault_keys(dir.path());
    assert!(store.purge_blob(&hash).unwrap());
    let gone = keys_gone(dir.path(), &before);
    assert_eq!(gone.len(), 1);
    assert!(keys_left(dir.path(), &gone).is_empty());
}

#[test]
fn a_purged_document_loses_its_key_before_the_purge_returns() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let owner_store = open(da.path(), 1);
    let friend = open(db.path(), 2);
    let owner = ns(1);
    let path = p("/posts/old");
    owner_store
        .edit_document(&owner, &path, |d| d.put(ROOT, "text", MARKER))
        .unwrap()
        .0
        .unwrap();
    let entry = owner_store.get(&owner, &path).unwrap().unwrap();
    let kith_store::EntryKind::Document {
        created, creator, ..
    } = entry.kind
    else {
        panic!("a document")
    };
    let write = kith_store::RemoteWrite {
        device: entry.device,
        timestamp: entry.timestamp,
    };
    let identity = kith_store::DocIdentity { created, creator };
    let whole = owner_store.document_bytes(&owner, &path).unwrap();
    friend
        .apply_changes(&owner, &path, identity, write, &whole)
        .unwrap();
    let before = vault_keys(db.path());
    assert!(
        friend
            .purge_documents(&owner, std::slice::from_ref(&path))
            .unwrap()
            > 0
    );
    let gone = keys_gone(db.path(), &before);
    assert_eq!(gone.len(), 1, "the document's key is destroyed");
    assert!(keys_left(db.path(), &gone).is_empty());
    // Fetched again, it is encrypted under a new key.
    friend
        .apply_changes(&owner, &path, identity, write, &whole)
        .unwrap();
    friend.sync().unwrap();
    assert!(folder_contains(db.path(), MARKER.as_bytes()).is_empty());
    assert!(vault_keys(db.path()).is_disjoint(&gone));
}

/// The plaintext of the blob file of `hash` under one of the vault's keys
/// with `cipher`, worked out from the bytes on disk alone.
fn decrypt_file(
    dir: &std::path::Path,
    hash: &kith_store::BlobHash,
    cipher: kith_store::BlobCipher,
) -> Option<Vec<u8>> {
    use chacha20::cipher::{KeyIvInit, StreamCipher};
    let hex = hash.to_hex();
    let stored = std::fs::read(dir.join("blobs").join(&hex[..2]).join(&hex[2..])).unwrap();
    vault_keys(dir).into_iter().find_map(|key| {
        let mut plain = stored.clone();
        match cipher {
            kith_store::BlobCipher::XChaCha20 => {
                chacha20::XChaCha20::new((&key).into(), (&[0u8; 24]).into())
                    .apply_keystream(&mut plain);
            }
            kith_store::BlobCipher::Aes256Ctr => {
                ctr::Ctr128BE::<aes::Aes256>::new((&key).into(), (&[0u8; 16]).into())
                    .apply_keystream(&mut plain);
            }
            _ => unreachable!("a cipher this test does not know"),
        }
        plain.starts_with(b"blob").then_some(plain)
    })
}

#[test]
fn blob_files_under_either_cipher_are_read_side_by_side_and_erased_alike() {
    use kith_store::BlobCipher::{Aes256Ctr, XChaCha20};
    let dir = tempfile::tempdir().unwrap();
    let open_with = |cipher| {
        let options = kith_store::Options::new(common::device(1)).blob_cipher(cipher);
        kith_store::Store::open(dir.path(), options).unwrap()
    };
    let me = ns(1);
    let put = |store: &kith_store::Store, path: &str, content: &[u8]| {
        let entry = store.put_blob(&me, &p(path), content, "text/plain");
        entry.unwrap().blob_hash().unwrap()
    };
    let old = format!("blob old {MARKER}").repeat(30_000).into_bytes();
    let new = format!("blob new {MARKER}").repeat(30_000).into_bytes();
    // A blob stored under XChaCha20 (as every blob was before AES), then
    // one under AES-256-CTR by the same store reopened.
    let store = open_with(XChaCha20);
    let old_hash = put(&store, "/secret/old", &old);
    drop(store);
    let store = open_with(Aes256Ctr);
    let new_hash = put(&store, "/secret/new", &new);
    store.sync().unwrap();
    assert!(folder_contains(dir.path(), MARKER.as_bytes()).is_empty());
    // On disk, each file is its cipher's keystream over the content under
    // a key of the vault, and not the other's.
    assert_eq!(
        decrypt_file(dir.path(), &old_hash, XChaCha20),
        Some(old.clone())
    );
    assert_eq!(decrypt_file(dir.path(), &old_hash, Aes256Ctr), None);
    assert_eq!(
        decrypt_file(dir.path(), &new_hash, Aes256Ctr),
        Some(new.clone())
    );
    assert_eq!(decrypt_file(dir.path(), &new_hash, XChaCha20), None);
    // Both read back, whole and from an offset inside a cipher block.
    for (hash, content) in [(old_hash, &old), (new_hash, &new)] {
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut store.read_blob(&hash, ..).unwrap(), &mut all).unwrap();
        assert_eq!(&all, content);
        let mut part = Vec::new();
        let mut reader = store.read_blob(&hash, 100_003..100_500).unwrap();
        std::io::Read::read_to_end(&mut reader, &mut part).unwrap();
        assert_eq!(part, content[100_003..100_500]);
    }
    // A deletion destroys both keys, whatever their cipher.
    let before = vault_keys(dir.path());
    let out = store
        .apply_tombstone(&me, &p("/secret"), store.clock().now(), &[])
        .unwrap();
    assert_eq!(out.blobs_deleted, 2);
    let gone = keys_gone(dir.path(), &before);
    assert_eq!(gone.len(), 2, "both blobs' keys");
    assert!(keys_left(dir.path(), &gone).is_empty());
}
