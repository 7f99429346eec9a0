//! Blobs: streaming writes and ranged reads, de-duplication, reference
//! counting, imports verified by hash, purge and re-fetch.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;

use common::{device, files, ns, open, p};
use kith_store::{BlobHash, Error, Limit, Limits, Options, RemoteWrite, Store, Timestamp, groups};

fn read_all(store: &Store, hash: &BlobHash, range: impl std::ops::RangeBounds<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .read_blob(hash, range)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn blob_files(dir: &std::path::Path) -> usize {
    files(&dir.join("blobs"))
        .into_iter()
        .filter(|f| !f.starts_with(dir.join("blobs/tmp")))
        .count()
}

#[test]
fn write_read_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let me = ns(1);
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let entry = store
        .put_blob(
            &me,
            &p("/photos/a.bin"),
            &data[..],
            "application/octet-stream",
        )
        .unwrap();
    let hash = entry.blob_hash().unwrap();
    assert_eq!(hash, BlobHash::of(&data));
    assert_eq!(read_all(&store, &hash, ..), data);
    assert_eq!(read_all(&store, &hash, 10..20), &data[10..20]);
    assert_eq!(read_all(&store, &hash, 999_990..), &data[999_990..]);
    assert_eq!(read_all(&store, &hash, ..=4), &data[..5]);
    assert_eq!(store.read_blob(&hash, 5..5).unwrap().len(), 0);
    assert!(matches!(
        store.read_blob(&hash, 10..2_000_000),
        Err(Error::BadRange { .. })
    ));
    assert!(matches!(
        store.read_blob(&BlobHash::of(b"nope"), ..),
        Err(Error::BlobMissing(_))
    ));
}

#[test]
fn shared_content_is_stored_once_and_removed_with_its_last_reference() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let (a, b) = (ns(1), ns(2));
    let content = b"the same picture".repeat(1000);
    let e1 = store
        .put_blob(&a, &p("/x"), &content[..], "image/png")
        .unwrap();
    let e2 = store
        .put_blob(&a, &p("/y"), &content[..], "image/png")
        .unwrap();
    let e3 = store
        .put_blob(&b, &p("/z"), &content[..], "image/png")
        .unwrap();
    let hash = e1.blob_hash().unwrap();
    assert_eq!(e2.blob_hash(), Some(hash));
    assert_eq!(e3.blob_hash(), Some(hash));
    assert_eq!(blob_files(dir.path()), 1, "stored once");
    // Same content again at the same path keeps it.
    store
        .put_blob(&a, &p("/x"), &content[..], "image/png")
        .unwrap();
    assert!(store.has_blob(&hash));
    // Replace /x with a document and delete /y: /z still refers to it.
    store
        .create_document(&a, &p("/x"), automerge::AutoCommit::new())
        .unwrap();
    store
        .apply_tombstone(&a, &p("/y"), store.clock().now(), &[])
        .unwrap();
    assert!(store.has_blob(&hash));
    // The last reference goes: so does the file.
    let out = store
        .apply_tombstone(&b, &p("/z"), store.clock().now(), &[])
        .unwrap();
    assert_eq!(out.blobs_deleted, 1);
    assert!(!store.has_blob(&hash));
    assert_eq!(blob_files(dir.path()), 0);
}

#[test]
fn remote_entries_then_verified_import_purge_and_refetch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 2);
    let friend = ns(9);
    let content = b"a friend's photo".repeat(100);
    let hash = BlobHash::of(&content);
    // Content without an entry is not kept.
    assert!(matches!(
        store.import_blob(hash, &content[..]),
        Err(Error::Unreferenced(_))
    ));
    let write = RemoteWrite {
        device: device(9),
        timestamp: Timestamp::from_micros(1_000),
    };
    let entry = store
        .put_blob_entry(
            &friend,
            &p("/photos/1"),
            write,
            hash,
            content.len() as u64,
            "image/jpeg",
        )
        .unwrap();
    assert_eq!(entry.device, device(9));
    // Re-applying the same write is a no-op; an older one is refused.
    let again = store
        .put_blob_entry(
            &friend,
            &p("/photos/1"),
            write,
            hash,
            content.len() as u64,
            "image/jpeg",
        )
        .unwrap();
    assert_eq!(again, entry);
    let older = RemoteWrite {
        timestamp: Timestamp::from_micros(999),
        ..write
    };
    assert!(matches!(
        store.put_blob_entry(
            &friend,
            &p("/photos/1"),
            older,
            BlobHash::of(b"x"),
            1,
            "image/jpeg"
        ),
        Err(Error::Superseded { .. })
    ));
    assert!(
        !store.has_blob(&hash),
        "the entry alone does not bring content"
    );
    // Wrong bytes are refused.
    let err = store.import_blob(hash, &b"tampered"[..]).unwrap_err();
    assert!(matches!(err, Error::HashMismatch { .. }), "{err}");
    assert!(!store.has_blob(&hash));
    store.import_blob(hash, &content[..]).unwrap();
    assert_eq!(read_all(&store, &hash, ..), content);
    // Purge the cache: the entry stays, the content can come back.
    assert!(store.purge_blob(&hash).unwrap());
    assert!(store.get(&friend, &p("/photos/1")).unwrap().is_some());
    assert!(matches!(
        store.read_blob(&hash, ..),
        Err(Error::BlobMissing(_))
    ));
    store.import_blob(hash, &content[..]).unwrap();
    assert!(store.has_blob(&hash));
}

#[test]
fn oversize_blobs_and_media_types_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_blob_size: 10_000,
        ..Limits::default()
    };
    let store = Store::open(dir.path(), Options::new(device(1)).limits(limits)).unwrap();
    let err = store
        .put_blob(&ns(1), &p("/big"), &vec![0u8; 10_001][..], "a/b")
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                limit: Limit::BlobSize,
                ..
            }
        ),
        "{err}"
    );
    assert!(store.get(&ns(1), &p("/big")).unwrap().is_none());
    assert_eq!(blob_files(dir.path()), 0, "no partial file left");
    let long = "x".repeat(256);
    assert!(matches!(
        store.put_blob(&ns(1), &p("/mt"), &b""[..], &long),
        Err(Error::TooLarge {
            limit: Limit::MediaType,
            ..
        })
    ));
    store
        .put_blob(&ns(1), &p("/ok"), &vec![0u8; 10_000][..], "a/b")
        .unwrap();
}

#[test]
fn a_failing_reader_leaves_nothing_behind() {
    struct Broken(usize);
    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("connection reset"));
            }
            self.0 -= 1;
            buf[0] = 1;
            Ok(1)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let err = store
        .put_blob(&ns(1), &p("/x"), Broken(100), "a/b")
        .unwrap_err();
    assert!(matches!(err, Error::Io(_)));
    assert!(store.get(&ns(1), &p("/x")).unwrap().is_none());
    assert_eq!(files(&dir.path().join("blobs")).len(), 0);
}

#[test]
fn unreferenced_files_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), 1);
        store
            .put_blob(&ns(1), &p("/keep"), &b"keep me"[..], "a/b")
            .unwrap();
    }
    // A file a crash left between writing the content and committing it.
    let orphan = BlobHash::of(b"orphan").to_hex();
    let shard = dir.path().join("blobs").join(&orphan[..2]);
    std::fs::create_dir_all(&shard).unwrap();
    std::fs::write(shard.join(&orphan[2..]), b"orphan").unwrap();
    let store = open(dir.path(), 1);
    assert!(store.has_blob(&BlobHash::of(b"keep me")));
    assert!(!store.has_blob(&BlobHash::of(b"orphan")));
}

#[test]
fn failures_in_the_middle_of_a_large_blob_leave_nothing_behind() {
    /// Yields `ok` bytes, then fails.
    struct FailsAfter(usize);
    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("connection reset"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(3);
            self.0 -= n;
            Ok(n)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_blob_size: 3 << 20,
        ..Limits::default()
    };
    let store = Store::open(dir.path(), Options::new(device(1)).limits(limits)).unwrap();
    let err = store
        .put_blob(&ns(1), &p("/x"), FailsAfter(1 << 20), "a/b")
        .unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err}");
    let err = store
        .put_blob(&ns(1), &p("/y"), &vec![5u8; (3 << 20) + 1][..], "a/b")
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                limit: Limit::BlobSize,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        store
            .list(&ns(1), &kith_store::Path::root(), None, 10)
            .unwrap()
            .entries
            .is_empty()
    );
    assert_eq!(
        files(&dir.path().join("blobs")).len(),
        0,
        "no partial file left"
    );
    // Exactly at the limit, across many buffers: stored and intact.
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 253) as u8).collect();
    let entry = store.put_blob(&ns(1), &p("/z"), &data[..], "a/b").unwrap();
    assert_eq!(entry.blob_hash(), Some(BlobHash::of(&data)));
    assert_eq!(read_all(&store, &BlobHash::of(&data), ..), data);
}

#[test]
fn an_interrupted_download_resumes_after_a_restart_and_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let friend = ns(9);
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    let hash = BlobHash::of(&content);
    let write = RemoteWrite {
        device: device(9),
        timestamp: Timestamp::from_micros(5),
    };
    {
        let store = open(dir.path(), 2);
        // No entry refers to it yet: no download either.
        assert!(matches!(
            store.resume_import(hash, 3_000_000),
            Err(Error::Unreferenced(_))
        ));
        store
            .put_blob_entry(
                &friend,
                &p("/video"),
                write,
                hash,
                content.len() as u64,
                "video/mp4",
            )
            .unwrap();
        let mut partial = store.resume_import(hash, content.len() as u64).unwrap();
        assert_eq!(partial.offset(), 0);
        partial.append(&content[..1_234_567]).unwrap();
        // Interrupted here: the process goes away.
    }
    let store = open(dir.path(), 2);
    let mut partial = store.resume_import(hash, content.len() as u64).unwrap();
    // Only whole groups are kept: it resumes at the last group boundary.
    let group = groups::group_len(content.len() as u64);
    let kept = 1_234_567 - 1_234_567 % group;
    assert_eq!(partial.offset(), kept, "resumes where it stopped");
    assert!(matches!(
        partial.append(&vec![0; 3_000_000]),
        Err(Error::TooLarge { .. })
    ));
    partial.append(&content[kept as usize..]).unwrap();
    assert!(partial.is_complete());
    store.finish_import(partial).unwrap();
    assert_eq!(read_all(&store, &hash, ..), content);

    // A download whose bytes do not match its hash is dropped whole.
    let other = b"expected content".repeat(1000);
    let other_hash = BlobHash::of(&other);
    store
        .put_blob_entry(
            &friend,
            &p("/doc.pdf"),
            write,
            other_hash,
            other.len() as u64,
            "application/pdf",
        )
        .unwrap();
    let mut bad = store.resume_import(other_hash, other.len() as u64).unwrap();
    bad.append(&vec![b'x'; other.len()]).unwrap();
    assert!(matches!(
        store.finish_import(bad),
        Err(Error::HashMismatch { .. })
    ));
    assert!(!store.has_blob(&other_hash));
    assert_eq!(
        store
            .resume_import(other_hash, other.len() as u64)
            .unwrap()
            .offset(),
        0
    );
}

#[test]
fn two_downloads_of_one_blob_at_once_store_it_once_not_twice_over() {
    // A live announcement and a catch-up may fetch the same blob at the
    // same time. Both appended to the one partial file, which then held
    // the content twice and was stored so, under the right hash.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let content = b"a photo of the lake ".repeat(1000);
    let hash = BlobHash::of(&content);
    let write = RemoteWrite {
        device: device(9),
        timestamp: Timestamp::from_micros(5),
    };
    store
        .put_blob_entry(
            &ns(9),
            &p("/photo.jpg"),
            write,
            hash,
            content.len() as u64,
            "image/jpeg",
        )
        .unwrap();
    let size = content.len() as u64;
    let mut first = store.resume_import(hash, size).unwrap();
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let second = std::thread::spawn({
        let (store, content) = (store.clone(), content.clone());
        move || {
            // Waits until the first download is done with the file.
            let mut partial = store.resume_import(hash, size).unwrap();
            opened_tx.send(()).unwrap();
            if partial.offset() == 0 {
                partial.append(&content).unwrap();
            }
            store.finish_import(partial).unwrap();
        }
    });
    // The second download cannot open while the first is open.
    assert!(
        opened_rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err()
    );
    first.append(&content).unwrap();
    store.finish_import(first).unwrap();
    second.join().unwrap();
    assert_eq!(read_all(&store, &hash, ..), content);
}

#[test]
fn the_namespaces_referencing_a_blob_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let hash = store
        .put_blob(&ns(2), &p("/a"), &b"shared"[..], "a/b")
        .unwrap()
        .blob_hash()
        .unwrap();
    store
        .put_blob(&ns(2), &p("/b"), &b"shared"[..], "a/b")
        .unwrap();
    store
        .put_blob(&ns(1), &p("/c"), &b"shared"[..], "a/b")
        .unwrap();
    assert_eq!(store.blob_namespaces(&hash).unwrap(), [ns(1), ns(2)]);
    assert!(
        store
            .blob_namespaces(&BlobHash::of(b"none"))
            .unwrap()
            .is_empty()
    );
}

/// A friend's store holding an entry for `content` (no bytes yet).
fn expecting(dir: &std::path::Path, content: &[u8]) -> (Store, BlobHash) {
    let store = open(dir, 2);
    let hash = BlobHash::of(content);
    let write = RemoteWrite {
        device: device(9),
        timestamp: Timestamp::from_micros(5),
    };
    store
        .put_blob_entry(
            &ns(9),
            &p("/video"),
            write,
            hash,
            content.len() as u64,
            "video/mp4",
        )
        .unwrap();
    (store, hash)
}

/// The group hashes the owner's store serves for `content`.
fn groups_of(content: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let owner = open(dir.path(), 1);
    let entry = owner
        .put_blob(&ns(1), &p("/video"), content, "video/mp4")
        .unwrap();
    owner.blob_groups(&entry.blob_hash().unwrap()).unwrap()
}

fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn a_corrupt_group_is_refused_as_it_arrives_and_nothing_of_it_is_kept() {
    let content = noise(10 * 65_536 + 1_000);
    let group = groups::group_len(content.len() as u64) as usize;
    let encoded = groups_of(&content);
    assert_eq!(encoded.len(), 11 * 32, "eleven groups of 64 KiB");
    let dir = tempfile::tempdir().unwrap();
    let (store, hash) = expecting(dir.path(), &content);
    let mut partial = store.resume_import(hash, content.len() as u64).unwrap();
    partial.verify_groups(&encoded).unwrap();
    partial.append(&content[..3 * group]).unwrap();
    assert_eq!(partial.offset(), 3 * group as u64);
    // The fourth group arrives with one byte flipped, in two pieces: the
    // first piece is held; the second completes the group, which is refused
    // right then, long before the blob's end.
    let mut bad = content[3 * group..4 * group].to_vec();
    bad[1234] ^= 1;
    partial.append(&bad[..1000]).unwrap();
    let err = partial.append(&bad[1000..]).unwrap_err();
    assert!(
        matches!(err, Error::GroupMismatch { offset, .. } if offset == 3 * group as u64),
        "{err}"
    );
    assert_eq!(partial.offset(), 3 * group as u64, "nothing of it was kept");
    // The file holds exactly the verified groups.
    let file = dir.path().join("blobs/partial").join(hash.to_hex());
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 3 * group as u64);
    // The same download goes on from the group's start with the right bytes.
    partial.append(&content[3 * group..]).unwrap();
    assert!(partial.is_complete());
    store.finish_import(partial).unwrap();
    assert_eq!(read_all(&store, &hash, ..), content);
    // The receiver keeps the group hashes to serve them in turn.
    assert_eq!(store.blob_groups(&hash).unwrap(), encoded);
}

#[test]
fn a_resumed_download_verifies_the_bytes_it_kept() {
    let content = noise(6 * 65_536);
    let encoded = groups_of(&content);
    let dir = tempfile::tempdir().unwrap();
    let size = content.len() as u64;
    let hash = {
        let (store, hash) = expecting(dir.path(), &content);
        let mut partial = store.resume_import(hash, size).unwrap();
        partial.verify_groups(&encoded).unwrap();
        partial.append(&content[..4 * 65_536]).unwrap();
        hash
    };
    // While the node was off, a byte of the kept bytes changed on disk.
    let file = dir.path().join("blobs/partial").join(hash.to_hex());
    let mut bytes = std::fs::read(&file).unwrap();
    assert_eq!(bytes.len(), 4 * 65_536);
    bytes[2 * 65_536 + 7] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();

    let store = open(dir.path(), 2);
    let mut partial = store.resume_import(hash, size).unwrap();
    assert_eq!(partial.offset(), 4 * 65_536);
    let err = partial.verify_groups(&encoded).unwrap_err();
    assert!(
        matches!(err, Error::GroupMismatch { offset, .. } if offset == 2 * 65_536),
        "{err}"
    );
    // Given up, the download starts over from nothing.
    store.discard_import(partial).unwrap();
    assert!(!file.exists());
    let mut partial = store.resume_import(hash, size).unwrap();
    assert_eq!(partial.offset(), 0);
    partial.verify_groups(&encoded).unwrap();
    partial.append(&content).unwrap();
    store.finish_import(partial).unwrap();
    assert_eq!(read_all(&store, &hash, ..), content);
}

#[test]
fn group_hashes_that_are_not_the_blobs_are_refused() {
    let content = noise(3 * 65_536);
    let dir = tempfile::tempdir().unwrap();
    let (store, hash) = expecting(dir.path(), &content);
    let mut partial = store.resume_import(hash, content.len() as u64).unwrap();
    // Another blob's hashes, a flipped one, a short list, a ragged list.
    let mut flipped = groups_of(&content);
    flipped[40] ^= 1;
    for wrong in [
        groups_of(&noise(3 * 65_536 + 1)),
        flipped,
        groups_of(&content)[..64].to_vec(),
        vec![0; 95],
    ] {
        assert!(matches!(
            partial.verify_groups(&wrong),
            Err(Error::BadGroups(h)) if h == hash
        ));
    }
    // A small blob (one group) has none, and is verified by its hash alone.
    assert!(groups_of(b"small").is_empty());
}

#[test]
fn an_imported_blob_keeps_its_group_hashes_to_serve() {
    let content = noise(2 * 65_536 + 5);
    let dir = tempfile::tempdir().unwrap();
    let (store, hash) = expecting(dir.path(), &content);
    store.import_blob(hash, &content[..]).unwrap();
    assert_eq!(store.blob_groups(&hash).unwrap(), groups_of(&content));
}

#[test]
fn the_groups_before_a_corrupt_one_in_the_same_buffer_are_kept() {
    let content = noise(8 * 65_536);
    let encoded = groups_of(&content);
    let dir = tempfile::tempdir().unwrap();
    let (store, hash) = expecting(dir.path(), &content);
    let mut partial = store.resume_import(hash, content.len() as u64).unwrap();
    partial.verify_groups(&encoded).unwrap();
    // One buffer of six groups, the fifth damaged.
    let mut buffer = content[..6 * 65_536].to_vec();
    buffer[4 * 65_536 + 99] ^= 0x80;
    let err = partial.append_owned(buffer).unwrap_err();
    assert!(
        matches!(err, Error::GroupMismatch { offset, .. } if offset == 4 * 65_536),
        "{err}"
    );
    assert_eq!(partial.offset(), 4 * 65_536);
    partial.append(&content[4 * 65_536..]).unwrap();
    store.finish_import(partial).unwrap();
    assert_eq!(read_all(&store, &hash, ..), content);
}
