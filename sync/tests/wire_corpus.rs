//! The sync wire decoder's fuzz corpus (`fuzz/corpus/sync_message/`) runs as
//! an ordinary test: seeds decode and re-encode to the same bytes, and no
//! input panics. `KITH_UPDATE_CORPUS=1` rewrites the seeds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use kith::proto::wire::{Message, RefusalCode, WireEntry, WireKind};
use kith::store::BlobHash;
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
