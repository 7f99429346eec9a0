//! Scenarios `catchup` and `blobs`: two kith nodes on loopback, beside
//! iroh-docs and a raw iroh stream doing the same work in the same run.
//!
//! - `catchup`: the owner writes 10,000 documents of ~1 KiB (one string
//!   field each) under a granted prefix; a friend's fresh node catches up
//!   (`sync_now`, from the request until every document is applied and the
//!   cursors saved). Then a no-change re-sync, and a re-sync after 100 edits;
//!   and the fresh catch-up again into a friend whose store fsyncs every
//!   write (`Durability::Sync`).
//!   Peer: iroh-docs catching up 10,000 entries of 1 KiB, file store and
//!   memory store (see `peers.rs` for its timing).
//! - `blobs`: a 256 MiB blob fetched by the friend (`Node::fetch`, from the
//!   request until the content is verified and stored), with both nodes
//!   keeping blob files under this machine's cipher at rest, and again
//!   under XChaCha20 where that is another one. Ceiling: a raw iroh stream
//!   moving the same number of bytes, bare and into a file.
//!
//! Times are medians of 3 rounds with fresh nodes. Bytes are those kith's
//! frames put on the streams (application bytes); the peers report UDP
//! payload bytes from iroh's metrics, so the byte figures are indicative.

use std::time::Duration;

use anyhow::{Context, Result};
use kith::store::automerge::ROOT;
use kith::store::automerge::transaction::Transactable;
use kith::store::{BlobCipher, Durability};
use kith::{CongestionControl, Node, Path, SyncReport};

use crate::Options;
use crate::peers::{self, DocsStore};
use crate::report::Figure;
use crate::site::Site;

const ROUNDS: usize = 3;

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")
}

async fn pair(dir: &std::path::Path) -> Result<(Node, Node)> {
    pair_at(dir, &Site::Loopback, &Site::Loopback).await
}

/// [`pair`] with a friend whose every write is fsynced
/// ([`Durability::Sync`]).
async fn pair_synced(dir: &std::path::Path) -> Result<(Node, Node)> {
    let loopback = Site::Loopback;
    pair_built(
        dir,
        &loopback,
        &loopback,
        CongestionControl::default(),
        Durability::Sync,
        BlobCipher::for_this_machine(),
    )
    .await
}

/// An owner and a friend at these sites, befriended, `/feed` granted to
/// the friend; no live push (only catch-up moves data).
pub(crate) async fn pair_at(
    dir: &std::path::Path,
    owner_at: &Site,
    friend_at: &Site,
) -> Result<(Node, Node)> {
    pair_with(dir, owner_at, friend_at, CongestionControl::default()).await
}

/// [`pair_at`] with this congestion control on both nodes.
pub(crate) async fn pair_with(
    dir: &std::path::Path,
    owner_at: &Site,
    friend_at: &Site,
    congestion: CongestionControl,
) -> Result<(Node, Node)> {
    let cipher = BlobCipher::for_this_machine();
    pair_built(
        dir,
        owner_at,
        friend_at,
        congestion,
        Durability::default(),
        cipher,
    )
    .await
}

async fn pair_built(
    dir: &std::path::Path,
    owner_at: &Site,
    friend_at: &Site,
    congestion: CongestionControl,
    friend_durability: Durability,
    blob_cipher: BlobCipher,
) -> Result<(Node, Node)> {
    let owner = owner_at
        .kith(&dir.join("owner"), |b| {
            b.live_push(false)
                .congestion_control(congestion)
                .blob_cipher(blob_cipher)
        })
        .await?;
    let friend = friend_at
        .kith(&dir.join("friend"), |b| {
            b.live_push(false)
                .congestion_control(congestion)
                .durability(friend_durability)
                .blob_cipher(blob_cipher)
        })
        .await?;
    owner.add_friend(&friend.ticket()).await?;
    friend.add_friend(&owner.ticket()).await?;
    owner
        .grant(&friend.namespace(), &Path::parse("/feed")?, None)
        .await?;
    Ok((owner, friend))
}

/// Writes `n` documents of ~1 KiB under `/feed` (`version` in each text).
async fn write_docs(node: &Node, n: usize, version: u32) -> Result<()> {
    let store = node.store().clone();
    let ns = node.namespace();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let text = "k".repeat(1000);
        for i in 0..n {
            let path = Path::from_components(["feed", &format!("{i:06}")])?;
            store
                .edit_document(&ns, &path, |d| {
                    d.put(ROOT, "text", format!("{version} {text}"))
                })?
                .0?;
        }
        Ok(())
    })
    .await?
}

/// The owner writes `n` documents; the friend catches up once, and must
/// have them all.
pub(crate) async fn fresh_catchup(owner: &Node, friend: &Node, n: usize) -> Result<SyncReport> {
    write_docs(owner, n, 0).await?;
    crate::profile("enable");
    let report = friend.sync_now(&owner.namespace()).await;
    crate::profile("disable");
    let report = report?;
    anyhow::ensure!(
        report.docs as usize == n,
        "caught up {} of {n} documents",
        report.docs
    );
    Ok(report)
}

/// Runs the `catchup` scenario.
pub(crate) fn run_catchup(opts: &Options) -> Result<Vec<Figure>> {
    runtime()?.block_on(catchup(opts))
}

async fn catchup(opts: &Options) -> Result<Vec<Figure>> {
    let n = opts.scaled(10_000);
    let edits = opts.scaled(100).min(n);
    let (mut fresh, mut fresh_bytes, mut same, mut same_bytes, mut hundred, mut hundred_bytes) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let dir = tempfile::tempdir()?;
        let (owner, friend) = pair(dir.path()).await?;
        let report = fresh_catchup(&owner, &friend, n).await?;
        fresh.push(report.duration.as_secs_f64());
        fresh_bytes.push((report.bytes_sent + report.bytes_received) as f64);
        let report = friend.sync_now(&owner.namespace()).await?;
        same.push(report.duration.as_secs_f64() * 1e3);
        same_bytes.push((report.bytes_sent + report.bytes_received) as f64);
        write_docs(&owner, edits, 1).await?;
        let report = friend.sync_now(&owner.namespace()).await?;
        anyhow::ensure!(
            report.docs as usize == edits,
            "re-synced {} of {edits} edits",
            report.docs
        );
        hundred.push(report.duration.as_secs_f64() * 1e3);
        hundred_bytes.push((report.bytes_sent + report.bytes_received) as f64);
        owner.shutdown().await?;
        friend.shutdown().await?;
    }
    // The same fresh catch-up into a friend that fsyncs every write.
    let mut synced = Vec::new();
    for _ in 0..ROUNDS {
        let dir = tempfile::tempdir()?;
        let (owner, friend) = pair_synced(dir.path()).await?;
        let report = fresh_catchup(&owner, &friend, n).await?;
        synced.push(report.duration.as_secs_f64());
        owner.shutdown().await?;
        friend.shutdown().await?;
    }
    let mut docs_file = Vec::new();
    let mut docs_mem = Vec::new();
    let peer_rounds = if opts.no_peers { 0 } else { ROUNDS };
    for _ in 0..peer_rounds {
        let dir = tempfile::tempdir()?;
        match peers::iroh_docs_catchup(n, 1024, DocsStore::File(dir.path().to_path_buf())).await {
            Ok(run) => docs_file.push(run.duration.as_secs_f64()),
            Err(e) => eprintln!("iroh-docs (file store) failed a round: {e:#}"),
        }
        match peers::iroh_docs_catchup(n, 1024, DocsStore::Memory).await {
            Ok(run) => docs_mem.push(run.duration.as_secs_f64()),
            Err(e) => eprintln!("iroh-docs (memory store) failed a round: {e:#}"),
        }
    }
    let name = format!("fresh catch-up ({n} docs × ~1 KiB)");
    let mut figures = vec![Figure::new(
        "catchup",
        name.clone(),
        median(fresh.clone()),
        "s",
    )];
    if !docs_file.is_empty() {
        figures[0] = Figure::new("catchup", name.clone(), median(fresh.clone()), "s")
            .with_peer("iroh-docs, file store", median(docs_file));
    }
    if !docs_mem.is_empty() {
        figures.push(
            Figure::new("catchup", name, median(fresh), "s")
                .with_peer("iroh-docs, memory store", median(docs_mem)),
        );
    }
    figures.extend([
        Figure::new(
            "catchup",
            "fresh catch-up, friend fsyncs every write",
            median(synced),
            "s",
        ),
        Figure::new(
            "catchup",
            "fresh catch-up, bytes on the streams",
            median(fresh_bytes),
            "bytes",
        ),
        Figure::new("catchup", "no-change re-sync", median(same), "ms"),
        Figure::new(
            "catchup",
            "no-change re-sync, bytes",
            median(same_bytes),
            "bytes",
        ),
        Figure::new(
            "catchup",
            format!("re-sync after {edits} edits"),
            median(hundred),
            "ms",
        ),
        Figure::new(
            "catchup",
            format!("re-sync after {edits} edits, bytes"),
            median(hundred_bytes),
            "bytes",
        ),
    ]);
    Ok(figures)
}

/// Stores `size` pseudo-random bytes (different for every `seed`) as a
/// blob at `path` in the node's namespace.
pub(crate) async fn put_random_blob(node: &Node, path: &Path, size: u64, seed: u64) -> Result<()> {
    let store = node.store().clone();
    let (ns, p) = (node.namespace(), path.clone());
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ seed;
        let data: Vec<u8> = (0..size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        store.put_blob(&ns, &p, &data[..], "video/mp4")?;
        Ok(())
    })
    .await?
}

/// One round of a blob fetch: the owner and the friend, still running.
pub(crate) struct BlobRound {
    /// The friend's fetch, MB/s.
    pub(crate) rate: f64,
    /// The node that stored the blob.
    pub(crate) owner: Node,
    /// The node that fetched it.
    pub(crate) friend: Node,
    _dir: tempfile::TempDir,
}

impl BlobRound {
    /// Stops both nodes.
    pub(crate) async fn shutdown(self) -> Result<()> {
        self.owner.shutdown().await?;
        self.friend.shutdown().await?;
        Ok(())
    }
}

/// An owner at `sites[0]` stores a blob of `size` pseudo-random bytes
/// (different for every `seed`); a friend at `sites[1]` catches up, then
/// fetches it, timed from the request until the content is verified and
/// stored.
pub(crate) async fn blob_round(
    size: u64,
    seed: u64,
    sites: &[Site; 2],
    cipher: BlobCipher,
) -> Result<BlobRound> {
    let dir = tempfile::tempdir()?;
    let congestion = CongestionControl::default();
    let durability = Durability::default();
    let (owner, friend) = pair_built(
        dir.path(),
        &sites[0],
        &sites[1],
        congestion,
        durability,
        cipher,
    )
    .await?;
    let path = Path::parse("/feed/video.mp4")?;
    put_random_blob(&owner, &path, size, seed).await?;
    friend.sync_now(&owner.namespace()).await?;
    crate::profile("enable");
    let started = std::time::Instant::now();
    let received = friend.fetch(&owner.namespace(), &path).await?;
    let elapsed = started.elapsed();
    crate::profile("disable");
    anyhow::ensure!(received >= size, "fetched {received} of {size} bytes");
    Ok(BlobRound {
        rate: size as f64 / 1e6 / elapsed.as_secs_f64(),
        owner,
        friend,
        _dir: dir,
    })
}

/// A raw iroh stream of `size` bytes from `sites[0]` to `sites[1]`, MB/s;
/// `None` (said on stderr) when the peer failed the round. With `file`, the
/// receiver writes the bytes there and syncs them.
pub(crate) async fn raw_stream_rate(
    size: u64,
    sites: &[Site; 2],
    file: Option<&std::path::Path>,
) -> Option<f64> {
    let run = match file {
        None => peers::raw_iroh_stream_at(size, sites).await,
        Some(file) => peers::raw_iroh_stream_to_file_at(size, sites, file).await,
    };
    match run {
        Ok(run) => {
            Some(size as f64 / 1e6 / run.duration.max(Duration::from_micros(1)).as_secs_f64())
        }
        Err(e) => {
            eprintln!("  raw iroh stream failed a round: {e:#}");
            None
        }
    }
}

/// Runs the `blobs` scenario.
pub(crate) fn run_blobs(opts: &Options) -> Result<Vec<Figure>> {
    runtime()?.block_on(blobs(opts))
}

async fn blobs(opts: &Options) -> Result<Vec<Figure>> {
    let size = opts.scaled(256 << 20) as u64;
    let mut kith = Vec::new();
    let mut chacha = Vec::new();
    let mut raw = Vec::new();
    let mut raw_file = Vec::new();
    let loopback = [Site::Loopback, Site::Loopback];
    let cipher = BlobCipher::for_this_machine();
    for round in 0..ROUNDS {
        // Under XChaCha20 too where this machine's cipher is another one,
        // the two taking turns going first.
        let mut turns = vec![(cipher, &mut kith)];
        if cipher != BlobCipher::XChaCha20 {
            turns.push((BlobCipher::XChaCha20, &mut chacha));
        }
        if round % 2 == 1 {
            turns.reverse();
        }
        for (cipher, rates) in turns {
            let done = blob_round(size, round as u64, &loopback, cipher).await?;
            rates.push(done.rate);
            done.shutdown().await?;
        }
        raw.extend(raw_stream_rate(size, &loopback, None).await);
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("stream");
        raw_file.extend(raw_stream_rate(size, &loopback, Some(&file)).await);
    }
    let mib = size >> 20;
    let rate = median(kith);
    let name = format!("blob fetch ({mib} MiB, verified)");
    let mut figures = Vec::new();
    if !raw.is_empty() {
        let raw = median(raw.clone());
        figures.push(Figure::new("blobs", &name, rate, "MB/s").with_peer("raw iroh stream", raw));
        if !chacha.is_empty() {
            let name = format!("blob fetch ({mib} MiB, verified), XChaCha20 at rest");
            let figure = Figure::new("blobs", name, median(chacha), "MB/s");
            figures.push(figure.with_peer("raw iroh stream", raw));
        }
    }
    if !raw_file.is_empty() {
        figures.push(
            Figure::new("blobs", &name, rate, "MB/s")
                .with_peer("raw iroh stream into a file", median(raw_file)),
        );
    }
    if figures.is_empty() {
        figures.push(Figure::new("blobs", name, rate, "MB/s"));
    }
    Ok(figures)
}
