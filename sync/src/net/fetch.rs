//! Running fetches over a connection to one of the owner's devices.

use std::sync::Arc;

use iroh::endpoint::Connection;
use kith_caps::DeviceCert;
use kith_store::BlobHash;
use kith_types::{DeviceId, NamespaceId, Path, Timestamp};

use super::frames::{BlobFrame, read_blob_frame, read_msg, read_msg_now, within, write_msg};
use crate::error::{Error, Result};
use crate::proto::fetch::{Fetch, FetchReport};
use crate::proto::wire::Message;
use crate::state::{FriendReplica, Shared};

/// One fetch of a blob at a time on a node: a second fetch of the same
/// blob waits for the first, asynchronously (so it can be cancelled, and
/// no blocking thread waits on the store's own one-download rule).
#[derive(Debug, Default)]
pub(crate) struct Downloads(
    parking_lot::Mutex<std::collections::HashMap<BlobHash, Arc<tokio::sync::Mutex<()>>>>,
);

impl Downloads {
    /// Waits for the turn to fetch `hash`; the turn ends when the guard drops.
    async fn turn(&self, hash: BlobHash) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.0.lock();
            // Turns nobody holds or waits for.
            map.retain(|_, l| Arc::strong_count(l) > 1);
            map.entry(hash).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// Bytes moved on one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Traffic {
    pub(crate) sent: u64,
    pub(crate) received: u64,
}

fn hello(shared: &Shared) -> Message {
    let others: Vec<DeviceCert> = shared
        .known
        .read()
        .own_certs
        .iter()
        .filter(|c| c.device() != shared.identity.device())
        .cloned()
        .collect();
    Fetch::hello(&shared.identity.cert, &others)
}

/// How long the owner's first answer (its `Welcome`) may take.
const FIRST_ANSWER: std::time::Duration = std::time::Duration::from_secs(5);

/// Bytes of messages read ahead of the ones being applied.
const READ_AHEAD_BYTES: usize = 4 << 20;

/// Messages that arrived while the ones before them were applied.
struct Arrived {
    msgs: Vec<Message>,
    bytes: u64,
    /// Their share of [`READ_AHEAD_BYTES`], returned once applied.
    permit: Option<Permit>,
}

/// A task reading a stream's messages ahead, at most [`READ_AHEAD_BYTES`]
/// (or one message, if larger) waiting; it ends with the stream, at the
/// first error, or when the inbox is dropped.
struct Inbox {
    rx: tokio::sync::mpsc::UnboundedReceiver<Result<Option<(Message, u64, Permit)>>>,
    /// The end of the stream or its error, met after messages that were
    /// handed out first.
    end: Option<Error>,
    ended: bool,
    task: tokio::task::JoinHandle<()>,
}

type Permit = tokio::sync::OwnedSemaphorePermit;

impl Inbox {
    fn start(mut recv: iroh::endpoint::RecvStream) -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let budget = Arc::new(tokio::sync::Semaphore::new(READ_AHEAD_BYTES));
        let task = tokio::spawn(async move {
            loop {
                // Room for one more message before reading it; the rest of
                // its size is taken once it is read.
                let Ok(mut permit) = budget.clone().acquire_many_owned(1).await else {
                    return;
                };
                // No stall limit here: the applying side applies it while
                // it waits for messages (reading ahead is not waiting).
                let item = match read_msg_now(&mut recv).await {
                    Ok(Some((msg, n))) => {
                        let more = (n as usize).clamp(1, READ_AHEAD_BYTES) - 1;
                        if more > 0 {
                            let Ok(rest) = budget.clone().acquire_many_owned(more as u32).await
                            else {
                                return;
                            };
                            permit.merge(rest);
                        }
                        Ok(Some((msg, n, permit)))
                    }
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                };
                let last = !matches!(item, Ok(Some(_)));
                if tx.send(item).is_err() || last {
                    return;
                }
            }
        });
        Inbox {
            rx,
            end: None,
            ended: false,
            task,
        }
    }

    /// Waits (at most the stall limit) for at least one message, then
    /// takes every one waiting. `None` when the stream ended.
    async fn next(&mut self) -> Result<Option<Arrived>> {
        if let Some(e) = self.end.take() {
            return Err(e);
        }
        if self.ended {
            return Ok(None);
        }
        let mut arrived = Arrived {
            msgs: Vec::new(),
            bytes: 0,
            permit: None,
        };
        let first = within("waiting for the peer's next message", async {
            self.rx
                .recv()
                .await
                .ok_or_else(|| Error::Protocol("the stream reader stopped".into()))
        })
        .await?;
        let mut item = first;
        loop {
            match item {
                Ok(Some((msg, n, permit))) => {
                    arrived.msgs.push(msg);
                    arrived.bytes += n;
                    match &mut arrived.permit {
                        Some(held) => held.merge(permit),
                        None => arrived.permit = Some(permit),
                    }
                }
                Ok(None) => {
                    self.ended = true;
                    break;
                }
                Err(e) => {
                    self.end = Some(e);
                    break;
                }
            }
            match self.rx.try_recv() {
                Ok(next) => item = next,
                Err(_) => break,
            }
        }
        if arrived.msgs.is_empty() {
            if let Some(e) = self.end.take() {
                return Err(e);
            }
            return Ok(None);
        }
        Ok(Some(arrived))
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs one catch-up of `owner`'s namespace over `conn`.
pub(crate) async fn sync(
    shared: &Arc<Shared>,
    conn: &Connection,
    owner: NamespaceId,
) -> Result<(FetchReport, Traffic)> {
    let server = DeviceId::from_bytes(*conn.remote_id().as_bytes());
    run(shared, conn, Fetch::new(owner, shared.namespace(), server)).await
}

/// Fetches the whole of `owner`'s documents at `paths` (each with the
/// identity of the entry held here) over `conn`, without a catch-up.
pub(crate) async fn documents(
    shared: &Arc<Shared>,
    conn: &Connection,
    owner: NamespaceId,
    paths: Vec<(Path, kith_store::DocIdentity)>,
) -> Result<(FetchReport, Traffic)> {
    let server = DeviceId::from_bytes(*conn.remote_id().as_bytes());
    let fetch = Fetch::documents(owner, shared.namespace(), server, paths);
    run(shared, conn, fetch).await
}

/// Runs `fetch` on a new stream of `conn` to its end.
async fn run(
    shared: &Arc<Shared>,
    conn: &Connection,
    mut fetch: Fetch,
) -> Result<(FetchReport, Traffic)> {
    let (mut send, recv) = within("opening a stream", async {
        conn.open_bi().await.map_err(Error::network)
    })
    .await?;
    let mut traffic = Traffic::default();
    traffic.sent += write_msg(&mut send, &hello(shared)).await?;
    // Messages are read ahead while earlier ones are applied, and all that
    // wait are applied in one blocking task: documents in one store batch.
    let mut inbox = Inbox::start(recv);
    let mut first = true;
    while !fetch.is_done() {
        let arrived = if std::mem::take(&mut first) {
            // A device that is gone (its connection not yet timed out)
            // never answers: found out in seconds, not at the stall limit.
            tokio::time::timeout(FIRST_ANSWER, inbox.next())
                .await
                .map_err(|_| Error::Timeout("waiting for the first answer"))??
        } else {
            inbox.next().await?
        };
        let Some(arrived) = arrived else {
            return Err(Error::Protocol(
                "the server closed the stream before the sync was complete".into(),
            ));
        };
        traffic.received += arrived.bytes;
        let shared2 = shared.clone();
        let (returned, replies) = tokio::task::spawn_blocking(move || {
            let replies = fetch.handle_all(
                arrived.msgs,
                Timestamp::wall_clock(),
                &FriendReplica(&shared2),
            );
            drop(arrived.permit);
            (fetch, replies)
        })
        .await
        .map_err(|e| Error::Protocol(format!("fetch task failed: {e}")))?;
        fetch = returned;
        for reply in replies? {
            traffic.sent += write_msg(&mut send, &reply).await?;
        }
    }
    let _ = send.finish();
    Ok((fetch.report().clone(), traffic))
}

/// Fetches a blob's content over `conn` and stores it once verified: each
/// group of its bytes as it arrives, against the blob's group hashes, which
/// the owner sends first and which must merge into `hash`. An interrupted
/// fetch resumes where it stopped (the verified groups received are kept by
/// the store across restarts, and verified again before the fetch goes on).
/// Returns the bytes received.
pub(crate) async fn blob(
    shared: &Arc<Shared>,
    downloads: &Downloads,
    conn: &Connection,
    path: &Path,
    hash: BlobHash,
    size: u64,
) -> Result<u64> {
    let _turn = downloads.turn(hash).await;
    if shared.store.has_blob(&hash) {
        return Ok(0); // fetched by the one before
    }
    match blob_once(shared, conn, path, hash, size).await? {
        Some(received) => Ok(received),
        // The bytes kept from before were damaged, and are gone: once more
        // from the first byte.
        None => blob_once(shared, conn, path, hash, size)
            .await?
            .ok_or_else(|| Error::Protocol("a new download found damaged bytes".into())),
    }
}

/// Runs a blocking store call on a blocking thread.
async fn on_store<T: Send + 'static>(
    f: impl FnOnce() -> kith_store::Result<T> + Send + 'static,
) -> Result<T> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Protocol(format!("import task failed: {e}")))??)
}

/// One try of [`blob`]; `None` if the bytes kept from an earlier try did
/// not match the blob's group hashes (they were dropped).
async fn blob_once(
    shared: &Arc<Shared>,
    conn: &Connection,
    path: &Path,
    hash: BlobHash,
    size: u64,
) -> Result<Option<u64>> {
    let store = shared.store.clone();
    let partial = on_store(move || store.resume_import(hash, size)).await?;
    if partial.is_complete() {
        // Stopped between the last byte and storing it: verified as a whole.
        let store = shared.store.clone();
        on_store(move || store.finish_import(partial)).await?;
        return Ok(Some(0));
    }
    let offset = partial.offset();
    let (mut send, mut recv) = within("opening a stream", async {
        conn.open_bi().await.map_err(Error::network)
    })
    .await?;
    write_msg(&mut send, &hello(shared)).await?;
    let mut received = 0u64;
    match read_msg(&mut recv).await? {
        Some((Message::Welcome { .. }, n)) => received += n,
        Some((Message::Refused { code, reason, .. }, _)) => {
            return Err(Error::Refused { code, reason });
        }
        Some((other, _)) => {
            return Err(Error::Protocol(format!(
                "expected Welcome, got {}",
                other.name()
            )));
        }
        None => return Err(Error::Protocol("the server closed the stream".into())),
    }
    write_msg(
        &mut send,
        &Message::WantBlob {
            path: path.clone(),
            hash,
            offset,
            groups: true,
        },
    )
    .await?;
    let mut start = read_msg(&mut recv).await?;
    // After `Welcome` come the owner's addresses, an own device's friend
    // list, a member's scopes; none is needed here.
    while let Some((
        Message::Addresses { .. } | Message::Friends { .. } | Message::Scopes { .. },
        n,
    )) = &start
    {
        received += n;
        start = read_msg(&mut recv).await?;
    }
    match start {
        Some((Message::BlobStart { size: s, offset: o }, n)) if s == size && o == offset => {
            received += n
        }
        Some((Message::BlobStart { size: s, offset: o }, _)) => {
            return Err(Error::Protocol(format!(
                "the server offers {s} bytes from {o}; the entry says {size}, asked from {offset}"
            )));
        }
        Some((Message::Refused { code, reason, .. }, _)) => {
            return Err(Error::Refused { code, reason });
        }
        Some((other, _)) => {
            return Err(Error::Protocol(format!(
                "expected BlobStart, got {}",
                other.name()
            )));
        }
        None => return Err(Error::Protocol("the server closed the stream".into())),
    }
    let hashes = match read_msg(&mut recv).await? {
        Some((Message::BlobGroups { hashes }, n)) => {
            received += n;
            hashes
        }
        Some((other, _)) => {
            return Err(Error::Protocol(format!(
                "expected BlobGroups, got {}",
                other.name()
            )));
        }
        None => return Err(Error::Protocol("the server closed the stream".into())),
    };
    // The group hashes must be the blob's; then the bytes kept from before
    // must match them.
    let store = shared.store.clone();
    let checked = on_store(move || {
        let mut partial = partial;
        match partial.verify_groups(&hashes) {
            Ok(()) => Ok(Some(partial)),
            Err(kith_store::Error::GroupMismatch { offset, .. }) => {
                tracing::warn!(
                    %hash,
                    offset,
                    "bytes kept of a download do not match the blob; downloading it again"
                );
                store.discard_import(partial).map(|()| None)
            }
            Err(e) => Err(e),
        }
    })
    .await?;
    let Some(partial) = checked else {
        return Ok(None);
    };
    // Chunks cross to a blocking thread that verifies them group by group
    // and appends them to the partial download, through a small channel,
    // so memory stays bounded. A group that does not match is refused as
    // it completes: the writer stops, and so does the stream.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let writer = tokio::task::spawn_blocking(move || -> Result<kith_store::PartialBlob> {
        let mut partial = partial;
        while let Some(chunk) = rx.blocking_recv() {
            partial.append_owned(chunk)?;
        }
        Ok(partial)
    });
    let mut content = offset;
    let result = loop {
        match read_blob_frame(&mut recv).await {
            Ok(Some((BlobFrame::Chunk(bytes), n))) => {
                received += n;
                content += bytes.len() as u64;
                if content > size {
                    break Err(Error::Protocol(
                        "the server sent more bytes than the blob has".into(),
                    ));
                }
                if tx.send(bytes).await.is_err() {
                    break Ok(()); // the writer stopped; its error follows
                }
            }
            Ok(Some((BlobFrame::Other(Message::BlobEnd), n))) => {
                received += n;
                break Ok(());
            }
            Ok(Some((BlobFrame::Other(other), _))) => {
                break Err(Error::Protocol(format!(
                    "unexpected {} in a blob",
                    other.name()
                )));
            }
            Ok(None) => break Err(Error::Protocol("the blob stream ended early".into())),
            Err(e) => break Err(e),
        }
    };
    drop(tx);
    let partial = writer
        .await
        .map_err(|e| Error::Protocol(format!("import task failed: {e}")))??;
    // What was verified is kept even if the stream failed: the next fetch
    // resumes.
    result?;
    if !partial.is_complete() {
        return Err(Error::Protocol(format!(
            "received {} of {size} bytes",
            partial.offset()
        )));
    }
    let store = shared.store.clone();
    on_store(move || store.finish_import(partial)).await?;
    let _ = send.finish();
    Ok(Some(received))
}

/// Delivers the receipts this node owes `owner` over `conn`; removes the ones
/// the owner recorded from the outbox. Returns how many were recorded.
pub(crate) async fn receipts(
    shared: &Arc<Shared>,
    conn: &Connection,
    owner: NamespaceId,
) -> Result<usize> {
    let s = shared.clone();
    let owed = tokio::task::spawn_blocking(move || s.owed_receipts(&owner))
        .await
        .map_err(|e| Error::Protocol(format!("outbox task failed: {e}")))??;
    if owed.is_empty() {
        return Ok(0);
    }
    let (mut send, mut recv) = within("opening a stream", async {
        conn.open_bi().await.map_err(Error::network)
    })
    .await?;
    write_msg(&mut send, &hello(shared)).await?;
    let items = owed.iter().map(|r| r.bytes.clone()).collect();
    write_msg(&mut send, &Message::Receipts { items }).await?;
    let recorded = loop {
        match read_msg(&mut recv).await? {
            Some((
                Message::Welcome { .. }
                | Message::Addresses { .. }
                | Message::Friends { .. }
                | Message::Scopes { .. },
                _,
            )) => {}
            Some((Message::ReceiptsAck { tombstones }, _)) => break tombstones,
            Some((Message::Refused { code, reason, .. }, _)) => {
                return Err(Error::Refused { code, reason });
            }
            Some((other, _)) => {
                return Err(Error::Protocol(format!(
                    "expected ReceiptsAck, got {}",
                    other.name()
                )));
            }
            None => return Err(Error::Protocol("the owner closed the stream".into())),
        }
    };
    let _ = send.finish();
    let done: Vec<u64> = owed
        .into_iter()
        .filter(|r| recorded.contains(&r.tombstone))
        .map(|r| r.outbox_id)
        .collect();
    let n = done.len();
    let store = shared.store.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        for id in done {
            store.outbox_remove(&owner, id)?;
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::Protocol(format!("outbox task failed: {e}")))??;
    Ok(n)
}
