//! Part of `delete`: what erasing one deleted post costs on a store that
//! holds a life's worth of data. A store of 10,000 documents of ~1 KiB and
//! 100 MiB of blobs (100 posts carry a 1 MiB photo); posts with a photo are
//! deleted one at a time through `Store::apply_tombstone`, which returns
//! once the keys of the post and its photo are destroyed on disk (the
//! erasure a receipt asserts). Measured per deletion, median of the rounds:
//! the time of the call (deletion plus durable erasure) and the bytes the
//! process wrote during it (`/proc/self/io`: `wchar`, every byte handed to
//! a write call, and `write_bytes`, bytes sent to the block device).
//! Beside: one `Store::compact`, the only way before crypto-shredding to
//! make deleted bytes leave the data folder, on the same store.

use std::time::Instant;

use anyhow::{Context, Result};
use automerge::ROOT;
use automerge::transaction::Transactable;
use kith_store::{Options as StoreOptions, Store};
use kith_types::{DeviceId, NamespaceId, Path};

use crate::Options;
use crate::report::Figure;

const SCENARIO: &str = "delete";
const DOCS: usize = 10_000;
const PHOTOS: usize = 100;
const PHOTO_SIZE: usize = 1 << 20;
/// Deletions measured (each one post with its photo).
const ROUNDS: usize = 20;

/// Bytes this process has written so far: (`wchar`, `write_bytes`).
fn written() -> Result<(u64, u64)> {
    let io = std::fs::read_to_string("/proc/self/io").context("reading /proc/self/io")?;
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("wchar:"), field("write_bytes:")))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub(crate) fn run(opts: &Options) -> Result<Vec<Figure>> {
    let docs = opts.scaled(DOCS);
    let photos = opts.scaled(PHOTOS);
    let rounds = ROUNDS.min(photos);
    eprintln!("  delete: erasure on a store of {docs} documents and {photos} MiB of photos …");
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), StoreOptions::new(DeviceId::from_bytes([7; 32])))?;
    let me = NamespaceId::from_bytes([8; 32]);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut random = |buf: &mut [u8]| {
        for chunk in buf.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
    };
    let mut text = vec![0u8; 512];
    for i in 0..docs {
        random(&mut text);
        let body: String = text.iter().map(|b| format!("{b:02x}")).collect();
        let post = Path::parse(&format!("/feed/friends/{i:08}"))?;
        store
            .edit_document(&me, &post, |d| d.put(ROOT, "text", body.as_str()))?
            .0?;
        if i < photos {
            let mut photo = vec![0u8; PHOTO_SIZE];
            random(&mut photo);
            store.put_blob(&me, &post.join("photo.jpg")?, &photo[..], "image/jpeg")?;
        }
    }
    store.sync()?;
    let mut times = Vec::new();
    let mut wchar = Vec::new();
    let mut device = Vec::new();
    for i in 0..rounds {
        let post = Path::parse(&format!("/feed/friends/{i:08}"))?;
        store.sync()?;
        let (w0, d0) = written()?;
        let start = Instant::now();
        let out = store.apply_tombstone(&me, &post, store.clock().now(), &[])?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        let (w1, d1) = written()?;
        anyhow::ensure!(
            out.removed == 2 && out.blobs_deleted == 1,
            "deleting {post} removed {} entries and {} blobs",
            out.removed,
            out.blobs_deleted
        );
        wchar.push((w1 - w0) as f64);
        device.push((d1 - d0) as f64);
    }
    store.sync()?;
    let (w0, d0) = written()?;
    let start = Instant::now();
    store.compact()?;
    let compact_ms = start.elapsed().as_secs_f64() * 1e3;
    let (w1, d1) = written()?;
    let compact_wchar = (w1 - w0) as f64;
    let compact_device = (d1 - d0) as f64;
    let mut figures = vec![
        Figure::new(
            SCENARIO,
            "erasure_time (1 post + 1 MiB photo)",
            median(times),
            "ms",
        )
        .with_peer("one Store::compact", compact_ms),
        Figure::new(
            SCENARIO,
            "erasure_bytes_written (write calls)",
            median(wchar),
            "bytes",
        )
        .with_peer("one Store::compact", compact_wchar),
    ];
    // Block-device accounting is absent on some file systems (tmpfs).
    let device = median(device);
    if device > 0.0 {
        figures.push(
            Figure::new(
                SCENARIO,
                "erasure_bytes_written (to the device)",
                device,
                "bytes",
            )
            .with_peer("one Store::compact", compact_device),
        );
    }
    Ok(figures)
}
