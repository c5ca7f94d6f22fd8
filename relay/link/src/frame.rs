//! Length-prefixed JSON frames: a 4-byte big-endian length, then that many bytes of JSON.

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame either side accepts. Frames are a few hundred bytes; the bound keeps a
/// confused or hostile peer from making the other allocate at will.
pub const MAX_FRAME: usize = 64 * 1024;

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("link I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("frame is not a valid message: {0}")]
    Invalid(#[from] serde_json::Error),
    #[error("the stream ended inside a frame")]
    Truncated,
}

pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, message: &T) -> Result<(), FrameError> {
    let body = serde_json::to_vec(message)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(())
}

/// The next message, or `None` when the stream ended cleanly between frames.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(r: &mut R) -> Result<Option<T>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match r.read(&mut len[got..]).await? {
            0 if got == 0 => return Ok(None),
            0 => return Err(FrameError::Truncated),
            n => got += n,
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })?;
    Ok(Some(serde_json::from_slice(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ControlToRelay, Load, RelayToControl};

    #[tokio::test]
    async fn frames_round_trip_and_a_clean_end_is_none() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let sent = [
            RelayToControl::Load(Load { allocations: 3, draining: false }),
            RelayToControl::Load(Load { allocations: 0, draining: true }),
        ];
        for m in &sent {
            write_frame(&mut a, m).await.unwrap();
        }
        drop(a);
        for m in &sent {
            assert_eq!(read_frame::<_, RelayToControl>(&mut b).await.unwrap().as_ref(), Some(m));
        }
        assert!(read_frame::<_, RelayToControl>(&mut b).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversized_truncated_and_garbage_frames_are_errors() {
        let too_long = ((MAX_FRAME + 1) as u32).to_be_bytes();
        let err = read_frame::<_, ControlToRelay>(&mut &too_long[..]).await.unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(n) if n == MAX_FRAME + 1), "{err}");

        let cut = [0, 0, 0, 10, b'{'];
        assert!(matches!(read_frame::<_, ControlToRelay>(&mut &cut[..]).await, Err(FrameError::Truncated)));
        assert!(matches!(read_frame::<_, ControlToRelay>(&mut &cut[..2]).await, Err(FrameError::Truncated)));

        let garbage = [0, 0, 0, 2, b'h', b'i'];
        assert!(matches!(read_frame::<_, ControlToRelay>(&mut &garbage[..]).await, Err(FrameError::Invalid(_))));
    }
}
