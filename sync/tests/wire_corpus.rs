//! The sync wire decoder's fuzz corpus (`fuzz/corpus/sync_message/`) runs as
//! an ordinary test: seeds decode and re-encode to the same bytes, and no
//! input panics; the same for the live-push body decoder
//! (`fuzz/corpus/push_body/`). `KITH_UPDATE_CORPUS=1` rewrites the seeds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use kith::proto::addr::Addr;
use kith::proto::push::{PushBody, PushKind};
use kith::proto::wire::{Message, RefusalCode, WireEntry, WireKind};
use kith::store::BlobHash;
use kith::store::automerge::ChangeHash;
use kith::{DeviceId, Path, Timestamp};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/sync_message")
}

fn seeds() -> Vec<(&'static str, Message)> {
    let p = |s: &str| Path::parse(s).unwrap();
    vec![
        (
            "hello",
            Message::Hello {
                cert: vec![1; 140],
                other_certs: vec![vec![2; 140]],
            },
        ),
        (
            "welcome",
            Message::Welcome {
                caps: vec![vec![3; 100]],
                revocations: vec![],
                owner_certs: vec![vec![4; 140]],
                device_revocations: vec![],
            },
        ),
        (
            "sync",
            Message::Sync {
                cursors: vec![(p("/feed"), 7), (p("/photos"), 0)],
            },
        ),
        (
            "entries",
            Message::Entries {
                items: vec![
                    WireEntry {
                        path: p("/feed/1"),
                        device: DeviceId::from_bytes([5; 32]),
                        timestamp: Timestamp::from_micros(9),
                        kind: WireKind::Document {
                            created: Timestamp::from_micros(1),
                            creator: DeviceId::from_bytes([6; 32]),
                            heads: vec![],
                        },
                    },
                    WireEntry {
                        path: p("/feed/img"),
                        device: DeviceId::from_bytes([5; 32]),
                        timestamp: Timestamp::from_micros(9),
                        kind: WireKind::Blob {
                            hash: BlobHash::of(b"x"),
                            size: 1,
                            media_type: "image/png".into(),
                        },
                    },
                ],
            },
        ),
        (
            "want-docs",
            Message::WantDocs {
                items: vec![(p("/feed/1"), vec![])],
            },
        ),
        (
            "want-blob",
            Message::WantBlob {
                path: p("/feed/img"),
                hash: BlobHash::of(b"x"),
                offset: 0,
                groups: false,
            },
        ),
        (
            "want-blob-groups",
            Message::WantBlob {
                path: p("/feed/video"),
                hash: BlobHash::of(b"x"),
                offset: 65_536,
                groups: true,
            },
        ),
        (
            "blob-groups",
            Message::BlobGroups {
                hashes: vec![0x5A; 64],
            },
        ),
        (
            "blob-chunk",
            Message::BlobChunk {
                bytes: vec![0xAB; 64],
            },
        ),
        (
            "refused",
            Message::refused(
                RefusalCode::Unauthorized,
                Some(p("/photos")),
                "no valid read capability",
            ),
        ),
        ("docs-done", Message::DocsDone),
        (
            "addresses",
            Message::Addresses {
                devices: vec![(
                    DeviceId::from_bytes([7; 32]),
                    vec![
                        Addr::Ip("192.0.2.7:4433".parse().unwrap()),
                        Addr::Ip("[2001:db8::7]:4433".parse().unwrap()),
                        Addr::relay("https://relay.example/").unwrap(),
                    ],
                )],
            },
        ),
        ("back", Message::Back),
    ]
}

#[test]
fn sync_message_corpus_runs_as_a_test() {
    let dir = corpus();
    if std::env::var_os("KITH_UPDATE_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, msg) in seeds() {
            std::fs::write(dir.join(format!("seed-{name}")), msg.encode()).unwrap();
        }
    }
    let mut seen = 0;
    for file in std::fs::read_dir(&dir).unwrap() {
        let file = file.unwrap().path();
        let bytes = std::fs::read(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let decoded = Message::decode(&bytes);
        if name.starts_with("seed-") {
            let msg = decoded.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(msg.encode(), bytes, "{name}");
            seen += 1;
        }
    }
    assert!(
        seen >= seeds().len(),
        "seeds are missing from {}",
        dir.display()
    );
}

fn push_corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/push_body")
}

fn push_seeds() -> Vec<(&'static str, PushBody)> {
    let p = |s: &str| Path::parse(s).unwrap();
    let body = |counter, kind| PushBody {
        session: 0x0123_4567_89ab_cdef,
        counter,
        kind,
    };
    vec![
        ("heartbeat", body(7, PushKind::Heartbeat)),
        (
            "doc",
            body(
                8,
                PushKind::Doc {
                    path: p("/feed/p1"),
                    created: Timestamp::from_micros(1_700_000_000_000_000),
                    creator: DeviceId::from_bytes([3; 32]),
                    timestamp: Timestamp::from_micros(1_700_000_000_000_001),
                    heads: vec![ChangeHash([5; 32])],
                    changes: vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3],
                },
            ),
        ),
        (
            "doc-heads-only",
            body(
                9,
                PushKind::Doc {
                    path: p("/feed/p2"),
                    created: Timestamp::from_micros(1),
                    creator: DeviceId::from_bytes([4; 32]),
                    timestamp: Timestamp::from_micros(2),
                    heads: vec![ChangeHash([6; 32]), ChangeHash([7; 32])],
                    changes: Vec::new(),
                },
            ),
        ),
        (
            "blob",
            body(
                10,
                PushKind::Blob {
                    path: p("/feed/p1/photo"),
                    timestamp: Timestamp::from_micros(3),
                    hash: BlobHash::from_bytes([9; 32]),
                    size: 18_500,
                    media_type: "image/png".into(),
                },
            ),
        ),
        (
            "tombstone",
            body(
                11,
                PushKind::Tombstone {
                    bytes: vec![1; 150],
                },
            ),
        ),
    ]
}

/// The live-push body decoder's corpus (`fuzz/corpus/push_body/`): seeds
/// decode and re-encode to the same bytes; cut or extended, they are refused.
#[test]
fn push_body_corpus_runs_as_a_test() {
    let dir = push_corpus();
    if std::env::var_os("KITH_UPDATE_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, body) in push_seeds() {
            std::fs::write(dir.join(format!("seed-{name}")), body.encode()).unwrap();
        }
    }
    let mut seen = 0;
    for file in std::fs::read_dir(&dir).unwrap() {
        let file = file.unwrap().path();
        let bytes = std::fs::read(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let body = PushBody::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(body.encode(), bytes, "{name}");
        for cut in 0..bytes.len() {
            assert!(
                PushBody::decode(&bytes[..cut]).is_err(),
                "{name} cut at {cut}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(
            PushBody::decode(&long).is_err(),
            "{name} with a trailing byte"
        );
        seen += 1;
    }
    assert!(
        seen >= push_seeds().len(),
        "seeds are missing from {}",
        dir.display()
    );
}
