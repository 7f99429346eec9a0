//! Length-prefixed frames on QUIC streams.
//!
//! Every read and write here is bounded by [`STALL`]: a peer that neither
//! sends the next frame nor takes the one written for that long ends the
//! stream with [`Error::Timeout`], so no task waits on a peer forever.

use std::time::Duration;

use iroh::endpoint::{RecvStream, SendStream};

use crate::error::{Error, Result};
use crate::proto::wire::{BLOB_CHUNK, MAX_FRAME_LEN, Message, TAG_BLOB_CHUNK, VERSION, WireError};

/// How long a stream may make no progress (no frame arrives, or the peer
/// takes none of what is written) before it is given up.
pub(crate) const STALL: Duration = Duration::from_secs(60);

/// `fut`, or [`Error::Timeout`] if it takes longer than [`STALL`].
pub(crate) async fn within<T>(
    what: &'static str,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(STALL, fut)
        .await
        .map_err(|_| Error::Timeout(what))?
}

/// Writes one message; returns the bytes put on the stream.
pub(crate) async fn write_msg(send: &mut SendStream, msg: &Message) -> Result<u64> {
    within(
        "the peer took nothing of a message",
        write_msg_now(send, msg),
    )
    .await
}

async fn write_msg_now(send: &mut SendStream, msg: &Message) -> Result<u64> {
    let frame = msg.encode_frame();
    if frame.len() - 4 > MAX_FRAME_LEN {
        return Err(Error::Protocol(format!(
            "{} message too large to send",
            msg.name()
        )));
    }
    send.write_all(&frame).await.map_err(Error::network)?;
    Ok(frame.len() as u64)
}

/// Reads a frame's length, or `None` if the peer finished the stream cleanly
/// between frames. A length over [`MAX_FRAME_LEN`] is refused before anything
/// else is read.
async fn read_frame_len(recv: &mut RecvStream) -> Result<Option<usize>> {
    let mut len = [0u8; 4];
    match recv.read(&mut len[..1]).await.map_err(Error::network)? {
        None | Some(0) => return Ok(None),
        Some(_) => {}
    }
    recv.read_exact(&mut len[1..])
        .await
        .map_err(Error::network)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_LEN {
        return Err(Error::Wire(WireError("frame larger than the maximum")));
    }
    Ok(Some(len))
}

/// Reads one message, or `None` if the peer finished the stream cleanly
/// between messages. Frames over [`MAX_FRAME_LEN`] are refused before their
/// body is read.
pub(crate) async fn read_msg(recv: &mut RecvStream) -> Result<Option<(Message, u64)>> {
    within("waiting for the peer's next message", read_msg_now(recv)).await
}

/// [`read_msg`] without the stall limit.
pub(crate) async fn read_msg_now(recv: &mut RecvStream) -> Result<Option<(Message, u64)>> {
    let Some(len) = read_frame_len(recv).await? else {
        return Ok(None);
    };
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(Error::network)?;
    let msg = Message::decode(&body)?;
    Ok(Some((msg, 4 + len as u64)))
}

/// Writes a `BlobChunk` without copying its bytes: the frame header and the
/// payload are handed to QUIC as two owned buffers.
pub(crate) async fn write_blob_chunk(send: &mut SendStream, bytes: Vec<u8>) -> Result<u64> {
    within(
        "the peer took nothing of a blob",
        write_blob_chunk_now(send, bytes),
    )
    .await
}

async fn write_blob_chunk_now(send: &mut SendStream, bytes: Vec<u8>) -> Result<u64> {
    let len = u32::try_from(bytes.len()).map_err(|_| Error::Protocol("chunk too large".into()))?;
    let mut header = Vec::with_capacity(10);
    header.extend_from_slice(&(len + 6).to_be_bytes());
    header.extend_from_slice(&[VERSION, TAG_BLOB_CHUNK]);
    header.extend_from_slice(&len.to_be_bytes());
    let total = 10 + bytes.len() as u64;
    let mut bufs = [bytes::Bytes::from(header), bytes::Bytes::from(bytes)];
    send.write_all_chunks(&mut bufs)
        .await
        .map_err(Error::network)?;
    Ok(total)
}

/// What a blob stream carries next.
pub(crate) enum BlobFrame {
    /// Content bytes, read straight into their own buffer.
    Chunk(Vec<u8>),
    /// Any other message.
    Other(Message),
}

/// Reads the next frame of a blob stream; a `BlobChunk`'s payload is read
/// directly into its own buffer, without an intermediate copy.
pub(crate) async fn read_blob_frame(recv: &mut RecvStream) -> Result<Option<(BlobFrame, u64)>> {
    within(
        "waiting for the next part of a blob",
        read_blob_frame_now(recv),
    )
    .await
}

async fn read_blob_frame_now(recv: &mut RecvStream) -> Result<Option<(BlobFrame, u64)>> {
    let Some(len) = read_frame_len(recv).await? else {
        return Ok(None);
    };
    if len < 2 {
        return Err(Error::Wire(WireError("truncated")));
    }
    let mut head = [0u8; 2];
    recv.read_exact(&mut head).await.map_err(Error::network)?;
    if head == [VERSION, TAG_BLOB_CHUNK] && len >= 6 {
        let mut n = [0u8; 4];
        recv.read_exact(&mut n).await.map_err(Error::network)?;
        let n = u32::from_be_bytes(n) as usize;
        if n != len - 6 || n > BLOB_CHUNK {
            return Err(Error::Wire(WireError("bad blob chunk length")));
        }
        let mut bytes = vec![0u8; n];
        recv.read_exact(&mut bytes).await.map_err(Error::network)?;
        return Ok(Some((BlobFrame::Chunk(bytes), 4 + len as u64)));
    }
    let mut body = vec![0u8; len];
    body[..2].copy_from_slice(&head);
    recv.read_exact(&mut body[2..])
        .await
        .map_err(Error::network)?;
    Ok(Some((
        BlobFrame::Other(Message::decode(&body)?),
        4 + len as u64,
    )))
}
