//! Scenario `startup`: how long opening a store takes as it grows.
//!
//! Posts (small Automerge documents, as `kith feed post` writes them) are
//! written over 1 + 250 namespaces until the store holds 10,000, then
//! 200,000, then 1,000,000 of them (scaled by `--scale`). At each size the
//! store is closed and opened again five times; the figure is the median
//! `Store::open`, beside the same call on an empty store (the fixed cost:
//! opening the folder's files, starting fjall's workers). What the open
//! found in fjall's journal (`Store::recovery`: bytes read, bytes replayed
//! into memory) is printed on stderr. `KITH_STARTUP_DIR=DIR` keeps the
//! store in `DIR` (and goes on from the posts already there), so that its
//! opening can be profiled.

use std::path::Path as FsPath;
use std::time::{Duration, Instant};

use anyhow::Result;
use automerge::ROOT;
use automerge::transaction::Transactable;
use kith_store::{Options as StoreOptions, Recovery, Store};
use kith_types::{DeviceId, NamespaceId, Path};

use crate::Options;
use crate::report::Figure;

const SCENARIO: &str = "startup";
const ROUNDS: usize = 5;
/// Store sizes, in posts, at which start-up is measured.
const SIZES: [usize; 3] = [10_000, 200_000, 1_000_000];
/// The owner and 250 friends.
const PEOPLE: u32 = 251;

/// The middle of `v` (which must not be empty).
pub(crate) fn median_duration(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A store of device 1.
pub(crate) fn options() -> StoreOptions {
    StoreOptions::new(DeviceId::from_bytes([1; 32]))
}

/// The namespace of person `i`.
pub(crate) fn person(i: u32) -> NamespaceId {
    let mut b = [2; 32];
    b[..4].copy_from_slice(&i.to_be_bytes());
    NamespaceId::from_bytes(b)
}

/// Writes post number `i`: about what a post through the API stores.
pub(crate) fn write_post(store: &Store, i: u64) -> Result<()> {
    let ns = person((i % u64::from(PEOPLE)) as u32);
    let path = Path::from_components(["feed", "friends", &format!("{i:016x}")])?;
    let text = format!("post {i}: an afternoon at the lake, with friends and a cold swim");
    let (r, _) = store.edit_document(&ns, &path, |d| {
        d.put(ROOT, "text", text.as_str())?;
        d.put(ROOT, "time", 1_700_000_000_000_000 + i)
    })?;
    r?;
    Ok(())
}

/// The median time of opening the store at `dir` (each open closed
/// again), and what the last open found in the journal.
fn open_time(dir: &FsPath) -> Result<(Duration, Recovery)> {
    let mut times = Vec::new();
    let mut recovery = Recovery::default();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let store = Store::open(dir, options())?;
        times.push(start.elapsed());
        recovery = store.recovery();
        drop(store);
    }
    Ok((median_duration(times), recovery))
}

/// Runs the scenario.
pub(crate) fn run(opts: &Options) -> Result<Vec<Figure>> {
    let dir = tempfile::tempdir()?;
    let empty = dir.path().join("empty");
    drop(Store::open(&empty, options())?);
    let at =
        std::env::var_os("KITH_STARTUP_DIR").map_or_else(|| dir.path().join("store"), Into::into);
    let mut written: u64 = std::fs::read_to_string(at.join("written"))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut figures = Vec::new();
    for size in SIZES {
        let size = opts.scaled(size) as u64;
        let store = Store::open(&at, options())?;
        let started = Instant::now();
        while written < size {
            write_post(&store, written)?;
            written += 1;
        }
        let fill = started.elapsed();
        std::fs::write(at.join("written"), written.to_string())?;
        drop(store);
        let (kith, recovery) = open_time(&at)?;
        let (ceiling, _) = open_time(&empty)?;
        eprintln!(
            "  {size} posts (written in {fill:.1?}): Store::open {kith:.1?}; journal read \
             {} bytes, replayed into memory {} bytes",
            recovery.journal_bytes, recovery.replayed_bytes
        );
        figures.push(
            Figure::new(
                SCENARIO,
                format!("Store::open at {size} posts"),
                kith.as_secs_f64() * 1e3,
                "ms",
            )
            .with_peer("Store::open, empty store", ceiling.as_secs_f64() * 1e3),
        );
    }
    Ok(figures)
}
