//! Serving catch-up streams to friends and own devices.

use std::io::Read;
use std::sync::Arc;

use iroh::endpoint::{Connection, RecvStream, SendStream};
use iroh::protocol::{AcceptError, ProtocolHandler};
use kith_store::BlobHash;
use kith_types::{DeviceId, Timestamp};
use tokio::sync::Semaphore;

use super::frames::{read_msg, write_msg};
use crate::proto::serve::{Output, Serve};
use crate::proto::wire::{BLOB_CHUNK, Message, RefusalCode};
use crate::state::{OwnerSource, Shared};
use crate::{Error, Result};

/// Streams one peer may have open with this node at once.
pub(crate) const MAX_STREAMS_PER_PEER: usize = 16;
/// Requests a peer may send that are refused (malformed, unauthorized)
/// before its stream is closed.
const MAX_REFUSALS_PER_STREAM: u64 = 64;

/// The catch-up protocol handler registered with the router.
#[derive(Debug, Clone)]
pub(crate) struct SyncProtocol {
    pub(crate) shared: Arc<Shared>,
}

impl ProtocolHandler for SyncProtocol {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let remote = DeviceId::from_bytes(*conn.remote_id().as_bytes());
        let streams = Arc::new(Semaphore::new(MAX_STREAMS_PER_PEER));
        loop {
            let (mut send, recv) = match conn.accept_bi().await {
                Ok(s) => s,
                Err(_) => break, // the peer closed the connection
            };
            let Ok(permit) = streams.clone().try_acquire_owned() else {
                tracing::info!(remote = %remote.fmt_short(), "too many concurrent streams; refusing one");
                let msg = Message::refused(
                    RefusalCode::RateLimited,
                    None,
                    "too many concurrent requests",
                );
                let _ = write_msg(&mut send, &msg).await;
                let _ = send.finish();
                continue;
            };
            let shared = self.shared.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_stream(shared, remote, send, recv).await {
                    tracing::debug!(remote = %remote.fmt_short(), %e, "catch-up stream ended with an error");
                }
                drop(permit);
            });
        }
        Ok(())
    }
}

async fn serve_stream(
    shared: Arc<Shared>,
    remote: DeviceId,
    mut send: SendStream,
    mut recv: RecvStream,
) -> Result<()> {
    let mut session = Serve::new(remote);
    loop {
        let msg = match read_msg(&mut recv).await {
            Ok(Some((msg, _))) => msg,
            Ok(None) => break,
            Err(Error::Wire(e)) => {
                tracing::info!(remote = %remote.fmt_short(), %e, "malformed frame; closing the stream");
                let _ = write_msg(
                    &mut send,
                    &Message::refused(RefusalCode::Malformed, None, e.to_string()),
                )
                .await;
                break;
            }
            Err(e) => return Err(e),
        };
        let shared2 = shared.clone();
        let (returned, outputs) = tokio::task::spawn_blocking(move || {
            let outputs = session.handle(msg, Timestamp::wall_clock(), &OwnerSource(&shared2));
            (session, outputs)
        })
        .await
        .map_err(|e| Error::Protocol(format!("serving task failed: {e}")))?;
        session = returned;
        let outputs = match outputs {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(%e, "serving a request failed");
                let _ = write_msg(
                    &mut send,
                    &Message::refused(RefusalCode::Internal, None, "internal error"),
                )
                .await;
                break;
            }
        };
        let mut close = false;
        for out in outputs {
            match out {
                Output::Send(m) => {
                    write_msg(&mut send, &m).await?;
                }
                Output::StreamBlob { hash, offset } => {
                    stream_blob(&shared, &mut send, hash, offset).await?
                }
                Output::Close => close = true,
            }
        }
        if close || session.stats().refused > MAX_REFUSALS_PER_STREAM {
            break;
        }
    }
    let _ = send.finish();
    Ok(())
}

/// Sends a blob's content from `offset` as `BlobStart`, chunks, `BlobEnd`.
async fn stream_blob(
    shared: &Arc<Shared>,
    send: &mut SendStream,
    hash: BlobHash,
    offset: u64,
) -> Result<()> {
    let store = shared.store.clone();
    let opened = tokio::task::spawn_blocking(move || -> Result<(u64, kith_store::BlobReader)> {
        let whole = store.read_blob(&hash, ..)?.len();
        let reader = store.read_blob(&hash, offset..)?;
        Ok((whole, reader))
    })
    .await
    .map_err(|e| Error::Protocol(format!("blob task failed: {e}")))?;
    let (size, reader) = match opened {
        Ok(v) => v,
        Err(e) => {
            let msg = Message::refused(
                RefusalCode::NotFound,
                None,
                format!("blob not available: {e}"),
            );
            write_msg(send, &msg).await?;
            return Ok(());
        }
    };
    write_msg(send, &Message::BlobStart { size, offset }).await?;
    // Reading happens on a blocking thread, a few chunks ahead of the network.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let reader_task = tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        loop {
            let mut buf = vec![0u8; BLOB_CHUNK];
            let mut filled = 0;
            while filled < buf.len() {
                match reader.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
            if filled == 0 {
                return;
            }
            buf.truncate(filled);
            if tx.blocking_send(Ok(buf)).is_err() {
                return;
            }
        }
    });
    while let Some(chunk) = rx.recv().await {
        let bytes = chunk?;
        write_msg(send, &Message::BlobChunk { bytes }).await?;
    }
    let _ = reader_task.await;
    write_msg(send, &Message::BlobEnd).await?;
    Ok(())
}
