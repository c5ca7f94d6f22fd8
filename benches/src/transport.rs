//! How a generator's client reaches the TURN server: its own UDP socket, or its own TCP or TLS
//! connection (RFC 8656 §3.1). Whatever the client transport, allocations relay over UDP
//! (REQUESTED-TRANSPORT 17): the peer side of every run is UDP.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use rustls::ClientConfig;

use crate::sockets;
use crate::stream::StreamConn;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// One client's way to the server.
pub enum Link {
    Udp(UdpSocket),
    Stream(Box<StreamConn>),
}

impl Link {
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Link::Udp(s) => s.local_addr(),
            Link::Stream(s) => s.local_addr(),
        }
    }
}

impl AsRawFd for Link {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Link::Udp(s) => s.as_raw_fd(),
            Link::Stream(s) => s.as_raw_fd(),
        }
    }
}

/// Opens the links of one run: every one over the same transport, TLS ones sharing one client
/// configuration.
pub struct Dialer {
    transport: Transport,
    tls: Option<Arc<ClientConfig>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

impl Dialer {
    pub fn new(transport: Transport) -> Result<Dialer, DialError> {
        let tls = if transport == Transport::Tls { Some(crate::tls::client_config()?) } else { None };
        Ok(Dialer { transport, tls })
    }

    /// A UDP socket on an ephemeral port of `bind_ip` (non-blocking, 4 MiB buffers), or a
    /// connection to `server`.
    pub fn dial(&self, server: SocketAddr, bind_ip: IpAddr) -> io::Result<Link> {
        match self.transport {
            Transport::Udp => {
                let socket = UdpSocket::bind(SocketAddr::new(bind_ip, 0))?;
                socket.set_nonblocking(true)?;
                sockets::set_buffers(socket.as_raw_fd(), 4 << 20);
                Ok(Link::Udp(socket))
            }
            Transport::Tcp | Transport::Tls => {
                Ok(Link::Stream(Box::new(StreamConn::connect(server, self.tls.as_ref())?)))
            }
        }
    }
}
