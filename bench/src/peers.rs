//! Peer measurements that kith's network scenarios (`catchup`, `blobs`) are
//! compared against, plus a temporary scenario `peers` that runs them alone.
//!
//! Everything runs in this process on 127.0.0.1: loopback iroh endpoints
//! (`presets::Minimal`, relays disabled, port mapping disabled, only an IPv4
//! socket on 127.0.0.1), no relays, no DNS/pkarr lookup, no mDNS. Endpoints
//! find each other through one shared in-memory address lookup
//! (`MemoryLookup`) holding only 127.0.0.1 addresses. The `wan` scenario
//! runs the same peers on namespace hosts instead (`*_at` and
//! [`crate::site::Site`]): bound on the host's address, with the host's
//! relay if it has one, looked up the same way.
//!
//! What each peer times, exactly:
//!
//! - [`iroh_docs_catchup`]: two iroh-docs nodes (endpoint + blobs store +
//!   gossip + docs behind one `Router` each, all set up before timing). The
//!   writer creates a document and writes `entries` entries of `entry_size`
//!   bytes (distinct keys, pseudo-random content, so every entry has its own
//!   blob), untimed. The clock starts just before the reader calls
//!   `import_and_subscribe` with a read ticket that names the writer's
//!   loopback address, and stops when the reader has seen every entry
//!   (`LiveEvent::InsertRemote`) and every entry's content is local (its
//!   status was `Complete` on insert or a `LiveEvent::ContentReady` arrived
//!   for its hash). Bytes: UDP payload bytes sent plus received by the
//!   reader's endpoint during that window (endpoint metrics).
//! - [`raw_iroh_stream`]: the physical ceiling for moving bytes between two
//!   iroh endpoints. The clock starts just before the sender calls
//!   `Endpoint::connect` (so it includes the QUIC/TLS handshake), the sender
//!   opens one unidirectional stream and writes `bytes` bytes in 1 MiB
//!   writes, and the clock stops when the receiver has read the last byte
//!   (end of stream). Bytes: UDP payload bytes sent plus received by the
//!   sender's endpoint during that window.
//! - [`raw_iroh_stream_to_file_at`]: the same stream, and the receiver
//!   writes what it reads into a new file (a thread of its own writes, so
//!   that the endpoint's task never blocks on the disk) and syncs it; the
//!   clock stops once the file is synced. What any fetch that keeps the
//!   bytes must do at least.
//! - [`raw_iroh_round_trips`]: the ceiling for many small request/response
//!   messages. The clock starts just before `Endpoint::connect`; the sender
//!   opens one bidirectional stream and, `n` times, writes `size` bytes and
//!   waits until the receiver has echoed them back in full; the clock stops
//!   when the last echo has been read. Bytes as for the stream.
//!
//! Every wait has a timeout and so does every shutdown: a run that does not
//! finish in time returns an error saying the peer stalled; it is a failure
//! of the peer, not of the bench. (iroh-docs is known to stall now and then:
//! blob downloads that never finish, `Router::shutdown` that never returns.)

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use iroh::address_lookup::memory::MemoryLookup;
use iroh::protocol::Router;
use iroh::{Endpoint, EndpointAddr};
use iroh_blobs::BlobsProtocol;
use iroh_blobs::api::Store as BlobsStore;
use iroh_blobs::store::fs::FsStore;
use iroh_blobs::store::mem::MemStore;
use iroh_docs::ContentStatus;
use iroh_docs::api::protocol::{AddrInfoOptions, ShareMode};
use iroh_docs::engine::LiveEvent;
use iroh_docs::protocol::Docs;
use iroh_gossip::net::Gossip;
use n0_future::StreamExt;

use crate::Options;
use crate::report::Figure;
use crate::site::{SETUP, Site, within};

const SCENARIO: &str = "peers";

/// Longest wait for a transfer or a catch-up to finish.
const WAIT: Duration = Duration::from_secs(60);
/// Longest wait for one shutdown step (a router, a store, an endpoint).
const SHUTDOWN: Duration = Duration::from_secs(10);

/// ALPN of the raw stream and round-trip peers.
const RAW_ALPN: &[u8] = b"kith-bench/raw/0";
/// Size of each write on the raw stream.
const RAW_CHUNK: usize = 1 << 20;

/// Where an iroh-docs node keeps its replicas and blobs.
#[derive(Debug, Clone)]
pub(crate) enum DocsStore {
    /// In memory (`Docs::memory()`, `MemStore`).
    Memory,
    /// In files under this directory (`Docs::persistent`, `FsStore`); each
    /// node uses its own subdirectory.
    File(PathBuf),
}

/// The outcome of one peer run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerRun {
    /// The timed span (see the module documentation for its start and end).
    pub(crate) duration: Duration,
    /// UDP payload bytes sent plus received by one endpoint during the timed
    /// span, when iroh's endpoint metrics are available.
    pub(crate) bytes: Option<u64>,
}

/// UDP payload bytes the endpoint has sent and received so far, or `None`
/// when iroh was built without metrics (every counter then reads 0).
fn wire_bytes(endpoint: &Endpoint) -> Option<u64> {
    let s = &endpoint.metrics().socket;
    let total =
        s.send_ipv4.get() + s.send_ipv6.get() + s.recv_data_ipv4.get() + s.recv_data_ipv6.get();
    (total > 0).then_some(total)
}

fn bytes_between(before: Option<u64>, after: Option<u64>) -> Option<u64> {
    Some(after?.saturating_sub(before.unwrap_or(0)))
}

async fn close_endpoint(endpoint: &Endpoint) -> Result<()> {
    within(SHUTDOWN, "Endpoint::close", endpoint.close()).await
}

/// Pseudo-random bytes (xorshift), different for every `seed`.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = vec![0u8; len];
    for chunk in out.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    out
}

/// One iroh-docs node: endpoint, blobs store, gossip and docs behind a router.
struct DocsNode {
    endpoint: Endpoint,
    router: Router,
    docs: Docs,
    blobs: BlobsStore,
}

impl DocsNode {
    async fn spawn(
        site: &Site,
        lookup: &MemoryLookup,
        store: &DocsStore,
        name: &str,
    ) -> Result<Self> {
        let endpoint = site.endpoint(lookup, Vec::new()).await?;
        let (blobs, docs) = match store {
            DocsStore::Memory => (BlobsStore::from(MemStore::new()), Docs::memory()),
            DocsStore::File(dir) => {
                let blobs_dir = dir.join(name).join("blobs");
                let docs_dir = dir.join(name).join("docs");
                std::fs::create_dir_all(&blobs_dir)
                    .with_context(|| format!("creating {}", blobs_dir.display()))?;
                std::fs::create_dir_all(&docs_dir)
                    .with_context(|| format!("creating {}", docs_dir.display()))?;
                let blobs = within(SETUP, "FsStore::load", FsStore::load(&blobs_dir))
                    .await?
                    .context("loading the iroh-blobs file store")?;
                (BlobsStore::from(blobs), Docs::persistent(docs_dir))
            }
        };
        let gossip = Gossip::builder().spawn(endpoint.clone());
        let docs = match within(
            SETUP,
            "spawning iroh-docs",
            docs.spawn(endpoint.clone(), blobs.clone(), gossip.clone()),
        )
        .await
        .and_then(|r| r.context("spawning iroh-docs"))
        {
            Ok(docs) => docs,
            Err(e) => {
                // Best effort: the error above is the one to report.
                let _ = within(SHUTDOWN, "blobs store shutdown", blobs.shutdown()).await;
                let _ = close_endpoint(&endpoint).await;
                return Err(e);
            }
        };
        let router = Router::builder(endpoint.clone())
            .accept(iroh_blobs::ALPN, BlobsProtocol::new(&blobs, None))
            .accept(iroh_docs::ALPN, docs.clone())
            .accept(iroh_gossip::ALPN, gossip)
            .spawn();
        Ok(Self {
            endpoint,
            router,
            docs,
            blobs,
        })
    }

    /// Shuts the router (docs, gossip, blobs protocol and its store, the
    /// endpoint) down, and makes sure the blobs store is down too (it
    /// normally is already), each within [`SHUTDOWN`].
    async fn shutdown(self) -> Result<()> {
        let router = within(
            SHUTDOWN,
            "iroh-docs Router::shutdown",
            self.router.shutdown(),
        )
        .await
        .map(|r| r.context("iroh-docs Router::shutdown"));
        // An error here only says the store's actor is gone, i.e. already
        // shut down by the router; running out of time is a stall.
        let blobs = within(SHUTDOWN, "iroh-blobs store shutdown", self.blobs.shutdown()).await;
        drop(self.docs);
        router??;
        blobs.map(drop)
    }
}

/// What the reader has seen so far.
#[derive(Default)]
struct CatchUp {
    /// Keys of entries inserted from the writer.
    keys: HashSet<Vec<u8>>,
    /// Content hashes of those entries not yet local.
    pending: HashSet<iroh_blobs::Hash>,
    /// Content hashes reported ready (possibly before their entry arrived).
    ready: HashSet<iroh_blobs::Hash>,
}

impl CatchUp {
    fn done(&self, entries: usize) -> bool {
        self.keys.len() >= entries && self.pending.is_empty()
    }

    fn on_event(&mut self, event: LiveEvent) {
        match event {
            LiveEvent::InsertRemote {
                entry,
                content_status,
                ..
            } => {
                self.keys.insert(entry.key().to_vec());
                let hash = entry.content_hash();
                if content_status != ContentStatus::Complete && !self.ready.contains(&hash) {
                    self.pending.insert(hash);
                }
            }
            LiveEvent::ContentReady { hash } => {
                self.pending.remove(&hash);
                self.ready.insert(hash);
            }
            _ => {}
        }
    }
}

/// iroh-docs catch-up: a reader imports a document of `entries` entries of
/// `entry_size` bytes from a writer and waits for every entry and its
/// content. See the module documentation for what is timed.
pub(crate) async fn iroh_docs_catchup(
    entries: usize,
    entry_size: usize,
    store: DocsStore,
) -> Result<PeerRun> {
    let progress =
        iroh_docs_catchup_at(entries, entry_size, store, &Site::Loopback, &Site::Loopback).await?;
    match progress.complete {
        Some(duration) => Ok(PeerRun {
            duration,
            bytes: progress.bytes,
        }),
        None => bail!(progress.stall.unwrap_or_default()),
    }
}

/// How far an iroh-docs catch-up got within [`WAIT`].
pub(crate) struct DocsProgress {
    /// When the reader had every entry (from the start of the clock).
    pub(crate) entries: Option<Duration>,
    /// When it had every entry's content too (`None`: it stalled).
    pub(crate) complete: Option<Duration>,
    /// UDP payload bytes of the reader's endpoint, as in [`PeerRun`].
    pub(crate) bytes: Option<u64>,
    /// What was missing when it stalled.
    pub(crate) stall: Option<String>,
}

/// [`iroh_docs_catchup`] with the writer and the reader at these sites; a
/// stall is reported in the answer, with how far it got.
pub(crate) async fn iroh_docs_catchup_at(
    entries: usize,
    entry_size: usize,
    store: DocsStore,
    writer_at: &Site,
    reader_at: &Site,
) -> Result<DocsProgress> {
    let lookup = MemoryLookup::new();
    let writer = DocsNode::spawn(writer_at, &lookup, &store, "writer").await?;
    let reader = match DocsNode::spawn(reader_at, &lookup, &store, "reader").await {
        Ok(reader) => reader,
        Err(e) => {
            let _ = writer.shutdown().await;
            return Err(e);
        }
    };
    let result = docs_catchup_between(writer_at, &writer, &reader, entries, entry_size).await;
    // Shut both down even when the run failed; the run's error comes first.
    let writer_down = writer.shutdown().await;
    let reader_down = reader.shutdown().await;
    let run = result?;
    writer_down.context("shutting the iroh-docs writer down")?;
    reader_down.context("shutting the iroh-docs reader down")?;
    Ok(run)
}

async fn docs_catchup_between(
    writer_at: &Site,
    writer: &DocsNode,
    reader: &DocsNode,
    entries: usize,
    entry_size: usize,
) -> Result<DocsProgress> {
    let api = writer.docs.api();
    let author = within(SETUP, "author_create", api.author_create()).await??;
    let doc = within(SETUP, "creating a document", api.create()).await??;
    let data = pseudo_random(entries * entry_size, 0x6b69_7468);
    for i in 0..entries {
        let key = format!("entry/{i:08}").into_bytes();
        let value = data[i * entry_size..(i + 1) * entry_size].to_vec();
        within(SETUP, "set_bytes", doc.set_bytes(author, key, value)).await??;
    }
    let mut ticket = within(
        SETUP,
        "sharing the document",
        doc.share(ShareMode::Read, AddrInfoOptions::Addresses),
    )
    .await??;
    // An endpoint without lookups may publish no address of its own: name
    // it here.
    ticket.nodes = vec![writer_at.addr(&writer.endpoint)?];

    let mut seen = CatchUp::default();
    let mut all_entries = None;
    let before = wire_bytes(&reader.endpoint);
    let start = Instant::now();
    let wait = async {
        let (_doc, mut events) = reader.docs.api().import_and_subscribe(ticket).await?;
        while !seen.done(entries) {
            let event = events
                .next()
                .await
                .context("the iroh-docs subscription ended")??;
            seen.on_event(event);
            if all_entries.is_none() && seen.keys.len() >= entries {
                all_entries = Some(start.elapsed());
            }
        }
        anyhow::Ok(())
    };
    let outcome = tokio::time::timeout(WAIT, wait).await;
    let duration = start.elapsed();
    let after = wire_bytes(&reader.endpoint);
    let bytes = bytes_between(before, after);
    match outcome {
        Ok(r) => {
            r.context("iroh-docs catch-up")?;
            Ok(DocsProgress {
                entries: all_entries.or(Some(duration)),
                complete: Some(duration),
                bytes,
                stall: None,
            })
        }
        Err(_) => Ok(DocsProgress {
            entries: all_entries,
            complete: None,
            bytes,
            stall: Some(format!(
                "iroh-docs peer stalled: after {WAIT:?} the reader had {} of {entries} entries \
                 and {} contents still missing",
                seen.keys.len(),
                seen.pending.len() + entries.saturating_sub(seen.keys.len()),
            )),
        }),
    }
}

/// Two endpoints for the raw peers: (sender, receiver, receiver's address).
async fn raw_pair(sites: &[Site; 2]) -> Result<(Endpoint, Endpoint, EndpointAddr)> {
    let lookup = MemoryLookup::new();
    let receiver = sites[1].endpoint(&lookup, vec![RAW_ALPN.to_vec()]).await?;
    let sender = match sites[0].endpoint(&lookup, Vec::new()).await {
        Ok(sender) => sender,
        Err(e) => {
            let _ = close_endpoint(&receiver).await;
            return Err(e);
        }
    };
    let addr = sites[1].addr(&receiver)?;
    Ok((sender, receiver, addr))
}

/// Runs `sender` against `receiver` (each given its endpoint) within
/// [`WAIT`], then closes both endpoints. The side that sees the end of the
/// work returns the instant it did (the other returns `None`); the result
/// is the span from just before `sender` started to that instant.
async fn raw_run<S, R>(
    sites: &[Site; 2],
    sender: impl FnOnce(Endpoint, EndpointAddr) -> S,
    receiver: impl FnOnce(Endpoint) -> R,
) -> Result<PeerRun>
where
    S: Future<Output = Result<Option<Instant>>>,
    R: Future<Output = Result<Option<Instant>>> + Send + 'static,
{
    let (sender_ep, receiver_ep, addr) = raw_pair(sites).await?;
    let receiving = tokio::spawn(receiver(receiver_ep.clone()));
    let before = wire_bytes(&sender_ep);
    let start = Instant::now();
    let outcome = within(WAIT, "raw iroh transfer", async {
        let (sent, received) = tokio::join!(sender(sender_ep.clone(), addr), receiving);
        let received = received.context("receiver task")??;
        let sent = sent?;
        sent.or(received)
            .context("neither side reported the end of the transfer")
    })
    .await;
    let after = wire_bytes(&sender_ep);
    let closed = (
        close_endpoint(&sender_ep).await,
        close_endpoint(&receiver_ep).await,
    );
    let end = outcome??;
    closed.0?;
    closed.1?;
    Ok(PeerRun {
        duration: end.saturating_duration_since(start),
        bytes: bytes_between(before, after),
    })
}

/// Accepts one connection on [`RAW_ALPN`].
async fn accept_one(endpoint: &Endpoint) -> Result<iroh::endpoint::Connection> {
    let incoming = endpoint
        .accept()
        .await
        .context("endpoint closed before a connection arrived")?;
    Ok(incoming.await?)
}

/// Raw iroh stream: `bytes` bytes on one unidirectional stream between two
/// loopback endpoints. See the module documentation for what is timed.
pub(crate) async fn raw_iroh_stream(bytes: u64) -> Result<PeerRun> {
    raw_iroh_stream_at(bytes, &[Site::Loopback, Site::Loopback]).await
}

/// [`raw_iroh_stream`] from a sender to a receiver at these sites.
pub(crate) async fn raw_iroh_stream_at(bytes: u64, sites: &[Site; 2]) -> Result<PeerRun> {
    raw_stream(bytes, sites, None).await
}

/// [`raw_iroh_stream_at`], the receiver writing what it reads into a new
/// file at `file` and syncing it before the clock stops.
pub(crate) async fn raw_iroh_stream_to_file_at(
    bytes: u64,
    sites: &[Site; 2],
    file: &std::path::Path,
) -> Result<PeerRun> {
    raw_stream(bytes, sites, Some(file.to_path_buf())).await
}

/// A file written by a thread of its own, in writes of [`RAW_CHUNK`]
/// gathered from what the stream delivers (packets of about a kilobyte).
struct FileSink {
    gathered: Vec<u8>,
    chunks: std::sync::mpsc::SyncSender<Vec<u8>>,
    done: std::thread::JoinHandle<std::io::Result<()>>,
}

impl FileSink {
    fn create(path: std::path::PathBuf) -> Result<Self> {
        use std::io::Write;
        let mut file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        // A few MiB in flight, as a store's write-behind would hold.
        let (chunks, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let done = std::thread::spawn(move || {
            for chunk in rx {
                file.write_all(&chunk)?;
            }
            file.sync_all()
        });
        Ok(Self {
            gathered: Vec::with_capacity(RAW_CHUNK),
            chunks,
            done,
        })
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.gathered.extend_from_slice(bytes);
        if self.gathered.len() >= RAW_CHUNK {
            self.hand_over().await?;
        }
        Ok(())
    }

    async fn hand_over(&mut self) -> Result<()> {
        let full = std::mem::replace(&mut self.gathered, Vec::with_capacity(RAW_CHUNK));
        let full = match self.chunks.try_send(full) {
            Ok(()) => return Ok(()),
            Err(std::sync::mpsc::TrySendError::Full(full)) => full,
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                bail!("the file writer stopped")
            }
        };
        // The writer is behind: wait for it off the endpoint's threads.
        let tx = self.chunks.clone();
        tokio::task::spawn_blocking(move || tx.send(full))
            .await?
            .map_err(|_| anyhow::anyhow!("the file writer stopped"))
    }

    async fn finish(mut self) -> Result<()> {
        if !self.gathered.is_empty() {
            self.hand_over().await?;
        }
        drop(self.chunks);
        let done = self.done;
        tokio::task::spawn_blocking(move || done.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the file writer panicked"))??;
        Ok(())
    }
}

async fn raw_stream(
    bytes: u64,
    sites: &[Site; 2],
    file: Option<std::path::PathBuf>,
) -> Result<PeerRun> {
    let chunk = pseudo_random(RAW_CHUNK, 0x7374_7265);
    raw_run(
        sites,
        move |ep, addr| async move {
            let conn = ep.connect(addr, RAW_ALPN).await?;
            let mut send = conn.open_uni().await?;
            let mut left = bytes;
            while left > 0 {
                let n = left.min(RAW_CHUNK as u64) as usize;
                send.write_all(&chunk[..n]).await?;
                left -= n as u64;
            }
            send.finish()?;
            // Keep the connection open until the receiver has everything:
            // it closes the connection once it has read the last byte.
            conn.closed().await;
            Ok(None)
        },
        move |ep| async move {
            let conn = accept_one(&ep).await?;
            let mut recv = conn.accept_uni().await?;
            let mut sink = file.map(FileSink::create).transpose()?;
            let mut got = 0u64;
            while let Some(c) = recv.read_chunk(usize::MAX).await? {
                got += c.len() as u64;
                if let Some(sink) = &mut sink {
                    sink.write(&c).await?;
                }
            }
            if let Some(sink) = sink {
                sink.finish().await?;
            }
            let end = Instant::now();
            conn.close(0u32.into(), b"done");
            if got != bytes {
                bail!("raw stream: received {got} of {bytes} bytes");
            }
            Ok(Some(end))
        },
    )
    .await
}

/// Raw iroh round trips: `n` request/response exchanges of `size` bytes on
/// one bidirectional stream. See the module documentation for what is timed.
pub(crate) async fn raw_iroh_round_trips(n: usize, size: usize) -> Result<PeerRun> {
    let request = pseudo_random(size, 0x7274_7269);
    raw_run(
        &[Site::Loopback, Site::Loopback],
        move |ep, addr| async move {
            let conn = ep.connect(addr, RAW_ALPN).await?;
            let (mut send, mut recv) = conn.open_bi().await?;
            let mut response = vec![0u8; size];
            for _ in 0..n {
                send.write_all(&request).await?;
                recv.read_exact(&mut response).await?;
            }
            let end = Instant::now();
            send.finish()?;
            if response != request {
                bail!("round trips: the echo differs from the request");
            }
            // The receiver closes the connection once it has seen the finish.
            conn.closed().await;
            Ok(Some(end))
        },
        move |ep| async move {
            let conn = accept_one(&ep).await?;
            let (mut send, mut recv) = conn.accept_bi().await?;
            let mut buf = vec![0u8; size];
            for _ in 0..n {
                recv.read_exact(&mut buf).await?;
                send.write_all(&buf).await?;
            }
            // Wait for the sender's finish before closing, so the last
            // echo is not cut off.
            recv.read_to_end(0).await?;
            conn.close(0u32.into(), b"done");
            Ok(None)
        },
    )
    .await
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `round` `rounds` times and returns the values of the rounds that
/// succeeded; failed rounds are reported on stderr. Fails only if every
/// round failed.
async fn rounds<F, Fut>(what: &str, rounds: usize, mut round: F) -> Result<Vec<PeerRun>>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<PeerRun>>,
{
    let mut ok = Vec::new();
    let mut last_err = None;
    for i in 0..rounds {
        match round(i).await {
            Ok(run) => ok.push(run),
            Err(e) => {
                eprintln!("  {what}: round {} of {rounds} failed: {e:#}", i + 1);
                last_err = Some(e);
            }
        }
    }
    if ok.is_empty() {
        return Err(last_err
            .unwrap_or_else(|| anyhow!("no rounds"))
            .context(format!("{what}: every round failed")));
    }
    if ok.len() < rounds {
        eprintln!(
            "  {what}: {} of {rounds} rounds failed; the figure is the median of the rest",
            rounds - ok.len()
        );
    }
    Ok(ok)
}

fn report_bytes(what: &str, runs: &[PeerRun]) {
    let bytes: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.bytes)
        .map(|b| b as f64)
        .collect();
    if !bytes.is_empty() {
        eprintln!(
            "  {what}: {:.1} MB on the wire (median)",
            median(bytes) / 1e6
        );
    }
}

/// Runs the temporary scenario `peers`: every peer alone, so they can be
/// checked before the scenarios that compare kith against them exist.
pub(crate) fn run(opts: &Options) -> Result<Vec<Figure>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    rt.block_on(run_async(opts))
}

async fn run_async(opts: &Options) -> Result<Vec<Figure>> {
    const ROUNDS: usize = 3;
    let mut figures = Vec::new();

    let entries = opts.scaled(10_000);
    for file in [true, false] {
        let kind = if file { "file store" } else { "memory store" };
        let name = format!("iroh-docs catch-up ({entries} × 1 KiB, {kind})");
        let runs = rounds(&name, ROUNDS, |_| async move {
            if file {
                let dir = tempfile::tempdir()?;
                iroh_docs_catchup(entries, 1024, DocsStore::File(dir.path().to_path_buf())).await
            } else {
                iroh_docs_catchup(entries, 1024, DocsStore::Memory).await
            }
        })
        .await?;
        report_bytes(&name, &runs);
        let secs = median(runs.iter().map(|r| r.duration.as_secs_f64()).collect());
        figures.push(Figure::new(SCENARIO, name, secs, "s"));
    }

    let bytes = opts.scaled(256 << 20) as u64;
    let name = format!("raw iroh stream ({} MiB)", fmt_mib(bytes));
    let runs = rounds(&name, ROUNDS, |_| raw_iroh_stream(bytes)).await?;
    report_bytes(&name, &runs);
    let rate = median(
        runs.iter()
            .map(|r| bytes as f64 / 1e6 / r.duration.as_secs_f64())
            .collect(),
    );
    figures.push(Figure::new(SCENARIO, name, rate, "MB/s"));

    let n = opts.scaled(10_000);
    let name = format!("raw iroh round trips ({n} × 1 KiB, one stream)");
    let runs = rounds(&name, ROUNDS, |_| raw_iroh_round_trips(n, 1024)).await?;
    report_bytes(&name, &runs);
    let rate = median(
        runs.iter()
            .map(|r| n as f64 / r.duration.as_secs_f64())
            .collect(),
    );
    figures.push(Figure::new(SCENARIO, name, rate, "round trips/s"));
    Ok(figures)
}

fn fmt_mib(bytes: u64) -> String {
    let mib = bytes as f64 / (1u64 << 20) as f64;
    if mib >= 1.0 && mib.fract() == 0.0 {
        format!("{mib:.0}")
    } else {
        format!("{mib:.2}")
    }
}
