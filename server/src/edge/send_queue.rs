//! How much one connection has queued towards its peer that the peer has
//! not taken: the bound on a viewer that stops reading.
//!
//! A viewer that never reads costs memory in the kernel, not in our
//! process: the broadcast hands every viewer the same `Bytes`, and each
//! write lands in the socket's send buffer, which Linux grows up to
//! `net.ipv4.tcp_wmem`'s maximum (4 MiB by default) per socket. The send
//! timeout only starts counting once that buffer is full, and a peer that
//! trickles a few bytes a second (enough to answer pings) never lets a
//! single write wait that long. So before each message to a viewer the
//! bytes its peer has not acknowledged are read with `SIOCOUTQ`
//! (`TIOCOUTQ`, see tcp(7)); over `--viewer-max-unsent` the viewer is
//! closed with a reason, whatever it pongs. Its socket gets a fixed
//! `SO_SNDBUF` of that bound plus the largest message, so a write made
//! under the bound completes instead of waiting in a full buffer, the
//! close frame still fits, and the kernel never grows the buffer further:
//! what one viewer can leave unread is the bound plus one message. (Linux
//! caps `SO_SNDBUF` at `net.core.wmem_max`, 208 KiB by default, doubled:
//! where that is below the bound plus a message, a write can wait, and the
//! send timeout ends it, as before.) A viewer's
//! stream is 5-50 KB/s, so 256 KiB unread is many seconds of a healthy
//! link's round trips.
//!
//! The descriptor comes from the accepted socket ([`Peer`], axum's
//! connect info), and is only used while the connection that owns it is
//! alive. Both calls are sound on any descriptor: they only fail on one
//! that is not a socket.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::{TcpListener, TcpStream};

/// The accepted TCP connection: the peer's address and the socket's
/// descriptor, as axum's connect info.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The TCP peer (a proxy, when there is one; see `client_addr`).
    pub addr: SocketAddr,
    /// The socket, owned by the connection.
    pub fd: RawFd,
}

impl Connected<IncomingStream<'_, Listener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, Listener>) -> Self {
        Self {
            addr: *stream.remote_addr(),
            fd: stream.io().as_raw_fd(),
        }
    }
}

/// The server's TCP listener: every accepted socket gets `TCP_NODELAY`
/// (each message is written whole, once: Nagle's algorithm would only hold
/// a message behind an unacknowledged one, up to the peer's delayed-ACK
/// time, 40 ms or more, never save a write). A type of our own rather than
/// axum's `tap_io`, so that [`Peer`] can be its connect info.
pub struct Listener(pub TcpListener);

impl axum::serve::Listener for Listener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        // axum's accept retries errors (EMFILE: after a second).
        let (tcp, addr) = axum::serve::Listener::accept(&mut self.0).await;
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY not set: {e}");
        }
        (tcp, addr)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// One connection's send queue.
#[derive(Debug, Clone, Copy)]
pub struct SendQueue {
    fd: RawFd,
}

impl SendQueue {
    /// The send queue of `peer`'s socket.
    pub fn of(peer: Peer) -> Self {
        Self { fd: peer.fd }
    }

    /// Fixes the socket's send buffer at `bytes` (`SO_SNDBUF`; Linux
    /// doubles it and stops growing it).
    ///
    /// # Errors
    /// The `setsockopt` failure.
    pub fn set_limit(&self, bytes: usize) -> std::io::Result<()> {
        let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: `v` outlives the call and its size is passed; a wrong
        // descriptor only makes the call fail.
        let r = unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&raw const v).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Bytes written to the socket that the peer has not acknowledged
    /// (unsent, or sent and unacknowledged: `SIOCOUTQ`).
    ///
    /// # Errors
    /// The `ioctl` failure.
    pub fn unsent(&self) -> std::io::Result<usize> {
        let mut n: libc::c_int = 0;
        // SAFETY: TIOCOUTQ writes one c_int through the pointer, which
        // points at `n`; a wrong descriptor only makes the call fail.
        let r = unsafe { libc::ioctl(self.fd, libc::TIOCOUTQ, &raw mut n) };
        if r == 0 {
            Ok(usize::try_from(n).unwrap_or(0))
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}
