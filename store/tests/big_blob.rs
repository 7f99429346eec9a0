//! A blob larger than 256 MiB is written and read back with bounded memory.
//!
//! Alone in its test binary, so the process's peak resident set (VmHWM)
//! measures this test only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;

use common::{ns, open, p};
use kith_store::BlobHash;

const SIZE: u64 = 300 << 20;
/// What the store may add to the process's peak memory while streaming.
const MEMORY_BUDGET: u64 = 64 << 20;

/// Deterministic pseudo-random bytes, produced on demand.
struct Generated {
    left: u64,
    state: u64,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            self.state = self
                .state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            chunk.copy_from_slice(&self.state.to_le_bytes()[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn a_300_mib_blob_streams_in_and_out_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let me = ns(1);
    // The expected hash, computed by streaming the same generator.
    let mut hasher = blake3::Hasher::new();
    std::io::copy(
        &mut Generated {
            left: SIZE,
            state: 7,
        },
        &mut hasher,
    )
    .unwrap();
    let expected = BlobHash::from(hasher.finalize());
    let before = peak_rss();

    let entry = store
        .put_blob(
            &me,
            &p("/videos/big"),
            Generated {
                left: SIZE,
                state: 7,
            },
            "video/mp4",
        )
        .unwrap();
    assert_eq!(entry.blob_hash(), Some(expected));

    let mut reader = store.read_blob(&expected, ..).unwrap();
    assert_eq!(reader.len(), SIZE);
    let mut hasher = blake3::Hasher::new();
    let copied = std::io::copy(&mut reader, &mut hasher).unwrap();
    assert_eq!(copied, SIZE);
    assert_eq!(BlobHash::from(hasher.finalize()), expected);

    // A range near the end.
    let mut tail = Vec::new();
    store
        .read_blob(&expected, SIZE - 10..)
        .unwrap()
        .read_to_end(&mut tail)
        .unwrap();
    assert_eq!(tail.len(), 10);

    let growth = peak_rss().saturating_sub(before);
    eprintln!(
        "peak RSS {} MiB (grew by {} KiB) while writing and reading {} MiB",
        peak_rss() >> 20,
        growth / 1024,
        SIZE >> 20
    );
    assert!(growth < MEMORY_BUDGET, "peak RSS grew by {growth} bytes");
}
