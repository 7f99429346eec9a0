//! Running fetches over a connection to one of the owner's devices.

use std::sync::Arc;

use iroh::endpoint::Connection;
use kith_caps::DeviceCert;
use kith_store::BlobHash;
use kith_types::{DeviceId, NamespaceId, Path, Timestamp};

use super::frames::{BlobFrame, read_blob_frame, read_msg, within, write_msg};
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

/// Runs one catch-up of `owner`'s namespace over `conn`.
pub(crate) async fn sync(
    shared: &Arc<Shared>,
    conn: &Connection,
    owner: NamespaceId,
) -> Result<(FetchReport, Traffic)> {
    let server = DeviceId::from_bytes(*conn.remote_id().as_bytes());
    let (mut send, mut recv) = within("opening a stream", async {
        conn.open_bi().await.map_err(Error::network)
    })
    .await?;
    let mut traffic = Traffic::default();
    traffic.sent += write_msg(&mut send, &hello(shared)).await?;
    let mut fetch = Fetch::new(owner, shared.namespace(), server);
    let mut first = true;
    while !fetch.is_done() {
        let next = if std::mem::take(&mut first) {
            // A device that is gone (its connection not yet timed out)
            // never answers: found out in seconds, not at the stall limit.
            tokio::time::timeout(FIRST_ANSWER, read_msg(&mut recv))
                .await
                .map_err(|_| Error::Timeout("waiting for the first answer"))??
        } else {
            read_msg(&mut recv).await?
        };
        let Some((msg, n)) = next else {
            return Err(Error::Protocol(
                "the server closed the stream before the sync was complete".into(),
            ));
        };
        traffic.received += n;
        let shared2 = shared.clone();
        let (returned, replies) = tokio::task::spawn_blocking(move || {
            let replies = fetch.handle(msg, Timestamp::wall_clock(), &FriendReplica(&shared2));
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

/// Fetches a blob's content over `conn` and stores it once verified against
/// `hash`. An interrupted fetch resumes where it stopped (the bytes received
/// are kept by the store across restarts). Returns the bytes received.
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
    let store = shared.store.clone();
    let partial = tokio::task::spawn_blocking(move || store.resume_import(hash, size))
        .await
        .map_err(|e| Error::Protocol(format!("import task failed: {e}")))??;
    let offset = partial.offset();
    if partial.is_complete() {
        let store = shared.store.clone();
        tokio::task::spawn_blocking(move || store.finish_import(partial))
            .await
            .map_err(|e| Error::Protocol(format!("import task failed: {e}")))??;
        return Ok(0);
    }
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
    // Chunks cross to a blocking thread that appends them to the partial
    // download, through a small channel, so memory stays bounded.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let writer = tokio::task::spawn_blocking(move || -> Result<kith_store::PartialBlob> {
        let mut partial = partial;
        while let Some(chunk) = rx.blocking_recv() {
            partial.append(&chunk)?;
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
    // What arrived is kept even if the stream failed: the next fetch resumes.
    result?;
    if !partial.is_complete() {
        return Err(Error::Protocol(format!(
            "received {} of {size} bytes",
            partial.offset()
        )));
    }
    let store = shared.store.clone();
    tokio::task::spawn_blocking(move || store.finish_import(partial))
        .await
        .map_err(|e| Error::Protocol(format!("import task failed: {e}")))??;
    let _ = send.finish();
    Ok(received)
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
