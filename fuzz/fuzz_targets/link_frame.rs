//! The control link's byte stream (relay/link: 4-byte length, then JSON), as either side reads
//! it from a peer: every frame is read as a relay's message and as the control plane's. A
//! message that decodes must survive `write_frame` and `read_frame` unchanged; a frame is never
//! read past the limit.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use teletip_link::frame::{FrameError, MAX_FRAME, read_frame, write_frame};
use teletip_link::message::{ControlToRelay, RelayToControl};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("a runtime"))
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        read_all::<RelayToControl>(data).await;
        read_all::<ControlToRelay>(data).await;
    });
});

async fn read_all<T>(data: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    let mut stream = data;
    loop {
        match read_frame::<_, T>(&mut stream).await {
            Ok(Some(message)) => round_trip(&message).await,
            Ok(None) => return,
            Err(FrameError::TooLarge(n)) => {
                assert!(n > MAX_FRAME);
                return;
            }
            Err(FrameError::Invalid(_) | FrameError::Truncated) => return,
            Err(FrameError::Io(e)) => panic!("reading from memory cannot fail: {e}"),
        }
    }
}

async fn round_trip<T>(message: &T)
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    let mut out = Vec::new();
    match write_frame(&mut out, message).await {
        Ok(()) => {}
        // A message that arrived within the limit may grow when written again (escapes).
        Err(FrameError::TooLarge(n)) if n > MAX_FRAME => return,
        Err(e) => panic!("writing a decoded message: {e}"),
    }
    let again = read_frame::<_, T>(&mut out.as_slice()).await.expect("our own frame reads");
    assert_eq!(again.as_ref(), Some(message));
}
