//! One client connection to a TURN server over TCP or TLS (RFC 8656 §3.1 and §11.5 framing: STUN
//! messages and ChannelData, each padded to a multiple of four bytes, back to back). Reads and
//! writes never block: what the socket does not take waits in an outbox, and bytes read are cut
//! into whole messages across reads.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use teletip_turn_proto::codec::{FramingError, frame_len};

/// How much one `fill` reads at most, so that one busy connection cannot hold up the
/// generator's pacing.
const READ_BUDGET: usize = 256 << 10;
const READ_CHUNK: usize = 16 << 10;

pub struct StreamConn {
    tcp: TcpStream,
    tls: Option<Box<ClientConnection>>,
    /// Bytes read and not yet cut into messages (the start of one whose rest is on the way).
    inbox: Vec<u8>,
    /// Bytes queued and not yet taken by the socket (or by rustls) from `out_pos` on.
    outbox: Vec<u8>,
    out_pos: usize,
    closed: bool,
}

impl StreamConn {
    /// Connects (and completes the TLS handshake when `tls` is given) blocking, then switches
    /// the connection to non-blocking with Nagle off: a paced stream of small frames must not
    /// wait for acknowledgements.
    pub fn connect(server: SocketAddr, tls: Option<&Arc<ClientConfig>>) -> io::Result<StreamConn> {
        let mut tcp = TcpStream::connect(server)?;
        tcp.set_nodelay(true)?;
        let tls = match tls {
            None => None,
            Some(config) => {
                let name = ServerName::IpAddress(server.ip().into());
                let mut conn = ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
                while conn.is_handshaking() {
                    conn.complete_io(&mut tcp)?;
                }
                // `flush` hands rustls frames only once it has written out the last ones, so
                // what rustls holds is bounded by the outbox; a whole frame must always fit.
                conn.set_buffer_limit(None);
                Some(Box::new(conn))
            }
        };
        tcp.set_nonblocking(true)?;
        Ok(StreamConn { tcp, tls, inbox: Vec::new(), outbox: Vec::new(), out_pos: 0, closed: false })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The negotiated TLS version and cipher suite, for the run's log.
    pub fn tls_suite(&self) -> Option<String> {
        let tls = self.tls.as_ref()?;
        Some(format!("{:?} {:?}", tls.protocol_version()?, tls.negotiated_cipher_suite()?.suite()))
    }

    /// Queues bytes (whole messages) and writes what the socket takes.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.outbox.extend_from_slice(bytes);
        self.flush()
    }

    /// Bytes queued that the socket has not taken yet (plus 1 while rustls holds records).
    pub fn backlog(&self) -> usize {
        let held = self.tls.as_ref().is_some_and(|t| t.wants_write());
        self.outbox.len() - self.out_pos + usize::from(held)
    }

    /// Writes as much of the outbox as the socket takes without blocking.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.tls {
            None => {
                while self.out_pos < self.outbox.len() {
                    match self.tcp.write(&self.outbox[self.out_pos..]) {
                        Ok(n) => self.out_pos += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Some(tls) => 'records: loop {
                while tls.wants_write() {
                    match tls.write_tls(&mut self.tcp) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 'records,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                if self.out_pos == self.outbox.len() {
                    break;
                }
                // One record per message, as teletip-relay sends them: coturn (OpenSSL) loses
                // messages that share a record. The records of the frames queued together
                // still leave in one write (rustls writes its queue with writev).
                while self.out_pos < self.outbox.len() {
                    let rest = &self.outbox[self.out_pos..];
                    let n = frame_len(rest).ok().flatten().map_or(rest.len(), |n| n.min(rest.len()));
                    tls.writer().write_all(&rest[..n])?;
                    self.out_pos += n;
                }
            },
        }
        if self.out_pos == self.outbox.len() {
            self.outbox.clear();
            self.out_pos = 0;
        } else if self.out_pos >= 64 << 10 {
            self.outbox.drain(..self.out_pos);
            self.out_pos = 0;
        }
        Ok(())
    }

    /// Reads what has arrived (at most [`READ_BUDGET`] bytes); false once the server closed.
    pub fn fill(&mut self) -> io::Result<bool> {
        let mut budget = READ_BUDGET;
        while budget > 0 && !self.closed {
            let got = match &mut self.tls {
                None => read_into(&mut self.inbox, |buf| self.tcp.read(buf))?,
                Some(tls) => fill_tls(tls, &mut self.tcp, &mut self.inbox)?,
            };
            match got {
                Some(0) => self.closed = true,
                Some(n) => budget = budget.saturating_sub(n),
                None => break,
            }
        }
        Ok(!self.closed)
    }

    /// Calls `each` with every whole message read so far (padding included) and keeps the
    /// start of an unfinished one.
    pub fn frames(&mut self, mut each: impl FnMut(&[u8])) -> Result<(), FramingError> {
        let mut pos = 0;
        while let Some(n) = frame_len(&self.inbox[pos..])? {
            if self.inbox.len() - pos < n {
                break;
            }
            each(&self.inbox[pos..pos + n]);
            pos += n;
        }
        if pos == self.inbox.len() {
            self.inbox.clear();
        } else {
            self.inbox.drain(..pos);
        }
        Ok(())
    }
}

impl AsRawFd for StreamConn {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }
}

/// One read of TLS records and of the plaintext they held: `Some(n)` bytes off the wire (0 = the
/// connection ended), `None` when nothing is there now.
fn fill_tls(tls: &mut ClientConnection, tcp: &mut TcpStream, inbox: &mut Vec<u8>) -> io::Result<Option<usize>> {
    let wire = match tls.read_tls(tcp) {
        Ok(0) => return Ok(Some(0)),
        Ok(n) => n,
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => return Ok(None),
        Err(e) => return Err(e),
    };
    tls.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    loop {
        match read_into(inbox, |buf| tls.reader().read(buf))? {
            // close_notify
            Some(0) => return Ok(Some(0)),
            Some(_) => {}
            None => return Ok(Some(wire)),
        }
    }
}

/// One read into the spare end of `inbox`: `Some(n)` bytes (0 = end of stream), `None` when
/// nothing is there now.
fn read_into(inbox: &mut Vec<u8>, read: impl FnOnce(&mut [u8]) -> io::Result<usize>) -> io::Result<Option<usize>> {
    let len = inbox.len();
    inbox.resize(len + READ_CHUNK, 0);
    let result = read(&mut inbox[len..]);
    let n = match result {
        Ok(n) => Some(n),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => None,
        Err(e) => {
            inbox.truncate(len);
            return Err(e);
        }
    };
    inbox.truncate(len + n.unwrap_or(0));
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::{Duration, Instant};
    use teletip_turn_proto::codec::{ChannelData, Class, MessageWriter, Method, stream_padding};

    /// Messages cut anywhere by the network come out whole (ChannelData with its padding), and
    /// a queued batch leaves whole and in order.
    #[test]
    fn frames_survive_any_split_and_batches_arrive_whole() {
        let mut wire = Vec::new();
        for (channel, len) in [(0x4000u16, 5usize), (0x4001, 8), (0x4002, 161)] {
            let mut frame = vec![channel as u8; 4 + len + stream_padding(len)];
            ChannelData::write_header(channel, len, &mut frame);
            wire.extend_from_slice(&frame);
        }
        let mut stun = [0u8; 20];
        let n = MessageWriter::new(&mut stun, Method::BINDING, Class::Request, [7; 12]).unwrap().finish();
        wire.extend_from_slice(&stun[..n]);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = wire.clone();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_nodelay(true).unwrap();
            // 1, 2, 3, … bytes at a time: boundaries fall inside headers, bodies and padding.
            let (mut at, mut step) = (0, 1);
            while at < sent.len() {
                let end = (at + step).min(sent.len());
                s.write_all(&sent[at..end]).unwrap();
                std::thread::sleep(Duration::from_millis(2));
                (at, step) = (end, step + 1);
            }
            let mut batch = vec![0u8; 3 * 12];
            s.read_exact(&mut batch).unwrap();
            batch
        });
        let mut conn = StreamConn::connect(addr, None).unwrap();
        let mut got: Vec<Vec<u8>> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.concat() != wire {
            assert!(Instant::now() < deadline, "got {} of {} bytes", got.concat().len(), wire.len());
            assert!(conn.fill().unwrap(), "the server closed early");
            conn.frames(|m| got.push(m.to_vec())).unwrap();
        }
        let lengths: Vec<usize> = got.iter().map(Vec::len).collect();
        assert_eq!(lengths, [12, 12, 168, 20]);
        let mut batch = Vec::new();
        for channel in [0x4000u16, 0x4001, 0x4002] {
            let mut frame = [0xaau8; 12];
            ChannelData::write_header(channel, 8, &mut frame);
            batch.extend_from_slice(&frame);
        }
        conn.send(&batch).unwrap();
        while conn.backlog() > 0 {
            conn.flush().unwrap();
        }
        assert_eq!(server.join().unwrap(), batch);
    }
}
