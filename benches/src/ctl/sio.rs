//! A Socket.IO client for many connections at once: Engine.IO v4 spoken directly over a
//! WebSocket (tokio-tungstenite), one small task per connection. Chosen over `rust_socketio`
//! because 10,000 clients in one process need a lean one: no polling transport, no reconnect
//! machinery, no callback registry; a connection is a task, a command channel and a 4 KiB read
//! buffer. Frames used (socket.io protocol v5):
//! `0{…}` open, `2`/`3` ping/pong, `40/ns,{auth}` connect, `40/ns,{"sid"…}` connected,
//! `44/ns,{"message"…}` refused, `42/ns,<id>["event",data]` emit, `43/ns,<id>[data]` ack.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::Error;

/// A frame the server sent, and when it arrived (taken in the connection's task, so that a busy
/// driver does not add its own delay to a latency).
pub struct Incoming {
    pub at: Instant,
    pub text: String,
}

/// An open /ns connection. Dropping it closes the WebSocket.
pub struct Socket {
    ns: String,
    out: mpsc::UnboundedSender<String>,
    next_ack: u64,
}

/// Opens `ws://addr/socket.io/?EIO=4&transport=websocket`, connects to namespace `ns` with
/// `auth`, and keeps the connection alive (answers pings) in its own task. With `events`, every
/// other frame is forwarded there. A connection the server closes is counted in `closed`.
pub async fn connect(
    addr: &str,
    ns: &str,
    auth: Option<&serde_json::Value>,
    events: Option<mpsc::UnboundedSender<Incoming>>,
    closed: Arc<AtomicUsize>,
) -> Result<Socket, Error> {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    let open = next_text(&mut ws).await?;
    if !open.starts_with('0') {
        return Err(Error::Protocol(format!("expected an Engine.IO open packet, got {open:?}")));
    }
    let head = head(ns);
    let connect = match auth {
        Some(a) => format!("40{head}{a}"),
        None => format!("40{head}"),
    };
    ws.send(Message::text(connect)).await?;
    loop {
        let t = next_text(&mut ws).await?;
        if t == "2" {
            ws.send(Message::text("3")).await?;
            continue;
        }
        if t.strip_prefix("40").is_some_and(|r| r.starts_with(&head)) {
            break;
        }
        if t.strip_prefix("44").is_some_and(|r| r.starts_with(&head)) {
            return Err(Error::Protocol(format!("connection refused: {t}")));
        }
    }
    let (out, mut commands) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(t) => if sink.send(Message::text(t)).await.is_err() { break },
                    None => { let _ = sink.send(Message::Close(None)).await; break }
                },
                msg = stream.next() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        if t.as_str() == "2" {
                            if sink.send(Message::text("3")).await.is_err() { break }
                        } else if let Some(ev) = &events {
                            let _ = ev.send(Incoming { at: Instant::now(), text: t.as_str().to_owned() });
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                        // The server ended it: counted, so that a run can say none was lost.
                        closed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Some(Ok(_)) => {}
                },
            }
        }
    });
    Ok(Socket { ns: ns.to_owned(), out, next_ack: 1 })
}

/// What follows a packet type for namespace `ns`: `/ns,`, or nothing for the main namespace.
fn head(ns: &str) -> String {
    if ns.is_empty() || ns == "/" { String::new() } else { format!("{ns},") }
}

async fn next_text<S>(ws: &mut S) -> Result<String, Error>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Err(_) => return Err(Error::Protocol("no frame within 30 s".into())),
            Ok(None) => return Err(Error::Protocol("closed".into())),
            Ok(Some(m)) => match m? {
                Message::Text(t) => return Ok(t.as_str().to_owned()),
                Message::Close(c) => return Err(Error::Protocol(format!("closed: {c:?}"))),
                _ => {}
            },
        }
    }
}

impl Socket {
    /// Emits `event` with `data` and an acknowledgement id; returns the id and the instant it
    /// was handed to the connection's task.
    pub fn emit(&mut self, event: &str, data: &serde_json::Value) -> Result<(u64, Instant), Error> {
        let id = self.next_ack;
        self.next_ack += 1;
        let frame = format!("42{}{id}{}", head(&self.ns), serde_json::json!([event, data]));
        let at = Instant::now();
        self.out.send(frame).map_err(|_| Error::Protocol("connection closed".into()))?;
        Ok((id, at))
    }
}

/// The name and data of an event frame `42/ns,["name",data]` (no ack id), else None.
pub fn event_of(text: &str, ns: &str) -> Option<(String, serde_json::Value)> {
    let body = text.strip_prefix("42")?.strip_prefix(head(ns).as_str())?;
    if !body.starts_with('[') {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let arr = v.as_array()?;
    Some((arr.first()?.as_str()?.to_owned(), arr.get(1).cloned().unwrap_or(serde_json::Value::Null)))
}

/// The data of ack frame `43/ns,<id>[data]` for `id`, else None.
pub fn ack_of(text: &str, ns: &str, id: u64) -> Option<serde_json::Value> {
    let body = text.strip_prefix("43")?.strip_prefix(head(ns).as_str())?;
    let rest = body.strip_prefix(&id.to_string())?;
    let v: serde_json::Value = serde_json::from_str(rest).ok()?;
    v.as_array()?.first().cloned()
}

/// Waits for the ack of `id` on `events`, dropping other frames.
pub async fn await_ack(
    events: &mut mpsc::UnboundedReceiver<Incoming>,
    ns: &str,
    id: u64,
    within: Duration,
) -> Result<serde_json::Value, Error> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let f = tokio::time::timeout_at(deadline, events.recv())
            .await
            .map_err(|_| Error::Protocol(format!("no ack {id} within {within:?}")))?
            .ok_or_else(|| Error::Protocol("connection closed".into()))?;
        if let Some(v) = ack_of(&f.text, ns, id) {
            return Ok(v);
        }
    }
}

/// Waits for event `name` on `events`; its arrival instant and data.
pub async fn await_event(
    events: &mut mpsc::UnboundedReceiver<Incoming>,
    ns: &str,
    name: &str,
    within: Duration,
) -> Result<(Instant, serde_json::Value), Error> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let f = tokio::time::timeout_at(deadline, events.recv())
            .await
            .map_err(|_| Error::Protocol(format!("no {name} within {within:?}")))?
            .ok_or_else(|| Error::Protocol("connection closed".into()))?;
        if let Some((n, data)) = event_of(&f.text, ns) {
            if n == name {
                return Ok((f.at, data));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse() {
        let (n, d) = event_of(r#"42/rtc,["lobby:patient-arrived",{"peerId":"p1"}]"#, "/rtc").unwrap();
        assert_eq!(n, "lobby:patient-arrived");
        assert_eq!(d["peerId"], "p1");
        assert!(event_of(r#"42/rtc,7["x",{}]"#, "/rtc").is_none());
        assert_eq!(ack_of(r#"43/rtc,12[{"ok":true}]"#, "/rtc", 12).unwrap()["ok"], true);
        assert!(ack_of(r#"43/rtc,12[{"ok":true}]"#, "/rtc", 1).is_none());
        assert_eq!(event_of(r#"42["echo",1]"#, "").unwrap().0, "echo");
    }
}
