//! Length-prefixed frames on QUIC streams.

use iroh::endpoint::{RecvStream, SendStream};

use crate::proto::wire::{MAX_FRAME_LEN, Message, WireError};
use crate::{Error, Result};

/// Writes one message; returns the bytes put on the stream.
pub(crate) async fn write_msg(send: &mut SendStream, msg: &Message) -> Result<u64> {
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

/// Reads one message, or `None` if the peer finished the stream cleanly
/// between messages. Frames over [`MAX_FRAME_LEN`] are refused before their
/// body is read.
pub(crate) async fn read_msg(recv: &mut RecvStream) -> Result<Option<(Message, u64)>> {
    let mut len = [0u8; 4];
    match recv.read(&mut len[..1]).await.map_err(Error::network)? {
        None => return Ok(None),
        Some(0) => return Ok(None),
        Some(_) => {}
    }
    recv.read_exact(&mut len[1..])
        .await
        .map_err(Error::network)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_LEN {
        return Err(Error::Wire(WireError("frame larger than the maximum")));
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(Error::network)?;
    let msg = Message::decode(&body)?;
    Ok(Some((msg, 4 + len as u64)))
}
