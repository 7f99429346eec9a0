//! Running fetches over a connection to one of the owner's devices.

use std::io::Read;
use std::sync::Arc;

use iroh::endpoint::Connection;
use kith_caps::DeviceCert;
use kith_store::BlobHash;
use kith_types::{DeviceId, NamespaceId, Path, Timestamp};

use super::frames::{read_msg, write_msg};
use crate::proto::fetch::{Fetch, FetchReport};
use crate::proto::wire::Message;
use crate::state::{FriendReplica, Shared};
use crate::{Error, Result};

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

/// Runs one catch-up of `owner`'s namespace over `conn`.
pub(crate) async fn sync(
    shared: &Arc<Shared>,
    conn: &Connection,
    owner: NamespaceId,
) -> Result<(FetchReport, Traffic)> {
    let server = DeviceId::from_bytes(*conn.remote_id().as_bytes());
    let (mut send, mut recv) = conn.open_bi().await.map_err(Error::network)?;
    let mut traffic = Traffic::default();
    traffic.sent += write_msg(&mut send, &hello(shared)).await?;
    let mut fetch = Fetch::new(owner, shared.namespace(), server);
    while !fetch.is_done() {
        let Some((msg, n)) = read_msg(&mut recv).await? else {
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

/// Fetches a blob's content over `conn` and stores it, verified against
/// `hash` while it streams in. Returns the bytes received.
pub(crate) async fn blob(
    shared: &Arc<Shared>,
    conn: &Connection,
    path: &Path,
    hash: BlobHash,
    size: u64,
) -> Result<u64> {
    let max = shared.store.limits().max_blob_size;
    if size > max {
        return Err(kith_store::Error::TooLarge {
            limit: kith_store::Limit::BlobSize,
            size,
            max,
        }
        .into());
    }
    let (mut send, mut recv) = conn.open_bi().await.map_err(Error::network)?;
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
            offset: 0,
        },
    )
    .await?;
    let mut start = read_msg(&mut recv).await?;
    // An own device receives the friend list after `Welcome`; not needed here.
    while let Some((Message::Friends { .. }, n)) = &start {
        received += n;
        start = read_msg(&mut recv).await?;
    }
    match start {
        Some((Message::BlobStart { size: s, offset: 0 }, n)) if s == size => received += n,
        Some((Message::BlobStart { size: s, .. }, _)) => {
            return Err(Error::Protocol(format!(
                "the server offers {s} bytes, the entry says {size}"
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
    // The store hashes while it writes; chunks cross to its blocking thread
    // through a small channel, so memory stays bounded.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    let store = shared.store.clone();
    let import = tokio::task::spawn_blocking(move || {
        store.import_blob(
            hash,
            ChannelReader {
                rx,
                buf: Vec::new(),
                pos: 0,
            },
        )
    });
    let mut content = 0u64;
    let result = loop {
        match read_msg(&mut recv).await {
            Ok(Some((Message::BlobChunk { bytes }, n))) => {
                received += n;
                content += bytes.len() as u64;
                if content > size {
                    break Err(Error::Protocol(
                        "the server sent more bytes than the blob has".into(),
                    ));
                }
                if tx.send(bytes).is_err() {
                    break Ok(()); // the store stopped reading; its error follows
                }
            }
            Ok(Some((Message::BlobEnd, n))) => {
                received += n;
                break Ok(());
            }
            Ok(Some((other, _))) => {
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
    let stored = import
        .await
        .map_err(|e| Error::Protocol(format!("import task failed: {e}")))?;
    result?;
    if content != size {
        return Err(Error::Protocol(format!(
            "received {content} of {size} bytes"
        )));
    }
    stored?;
    let _ = send.finish();
    Ok(received)
}

/// Reads chunks handed over a channel; ends when the sender is dropped.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
