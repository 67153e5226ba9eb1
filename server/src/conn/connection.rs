//! One WebSocket connection as both endpoints use it: the socket, its
//! keep-alive, its size limit and its close, behind typed events and a
//! typed end.
//!
//! The worker and the viewer endpoints differ in what they do with a
//! message, not in how a socket is kept: both ping every `--ping-secs`,
//! reap a peer silent (not even a pong) for `--idle-secs`, give up a send
//! after `--send-timeout-secs`, close an over-size message with 1009, stop
//! when the server does, and close with a code and a reason. [`Connection`]
//! does all of that once (as mini-redis's `Connection` owns its socket and
//! yields frames), so each endpoint's loop only has its role's logic.
//!
//! Why a connection ended is an [`End`] that says what happened (the peer
//! closed, vanished or stalled; it idled; the server stopped it, and why),
//! and [`End::close_reason`] says which of those get a close frame.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures_util::SinkExt;
use tokio::sync::watch;
use tokio::time::Interval;
use tokio_tungstenite::tungstenite;
use tracing::debug;

use crate::conn::limits::{CloseReason, NORMAL, shutdown_reason};
use crate::metrics::Stats;

/// What a connection received that its endpoint must handle. Pings and
/// pongs are not events: they only show the peer is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A binary message: the only kind the protocol has.
    Binary(Bytes),
    /// A text message (neither endpoint takes text).
    Text,
    /// The node holding a tunnelled worker's socket checked its answer to
    /// `task_id` natively and found frame `frame` wrong (a cluster's
    /// [`Pipe`](crate::conn::pipe::Pipe) only: a socket never yields it).
    Rejected {
        /// The task answered.
        task_id: u32,
        /// The first wrong frame.
        frame: u64,
    },
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The peer sent a close frame, with its code if it gave one.
    PeerClosed(Option<u16>),
    /// The peer went without a close frame: end of stream, a reset, or a
    /// read or write error.
    PeerVanished,
    /// The peer stopped taking bytes: a send waited out the send timeout.
    PeerStalled,
    /// The peer said nothing, not even a pong, for longer than the idle
    /// limit (counted in `idle_reaped`).
    IdleTimeout,
    /// The server is stopping.
    Shutdown,
    /// The server ends the connection for this reason.
    Closed(CloseReason),
}

impl End {
    /// The close frame this end sends the peer: none when the peer is gone
    /// or not reading.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self {
            Self::IdleTimeout => Some(CloseReason::new(NORMAL, "idle timeout")),
            Self::Shutdown => Some(shutdown_reason()),
            Self::Closed(reason) => Some(reason.clone()),
            Self::PeerClosed(_) | Self::PeerVanished | Self::PeerStalled => None,
        }
    }
}

/// A WebSocket with its keep-alive, limits and close.
pub struct Connection {
    socket: WebSocket,
    stats: Arc<Stats>,
    shutdown: watch::Receiver<bool>,
    ping: Interval,
    /// When the peer last sent anything (a message, a ping or a pong).
    last_heard: Instant,
    idle: Duration,
    send_limit: Duration,
    /// The close for a message over the endpoint's size limit.
    oversize: CloseReason,
}

/// A connection's keep-alive and send timings (`--ping-secs`,
/// `--idle-secs`, `--send-timeout-secs`; derived in `config::derive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// How often the server pings a quiet peer.
    pub ping: Duration,
    /// A peer silent this long is reaped.
    pub idle: Duration,
    /// How long a send may wait for the peer to take bytes.
    pub send_limit: Duration,
}

impl Connection {
    /// Wraps an upgraded socket with `limits`' timings, counting into
    /// `stats` and ending when `shutdown` turns true. `oversize` is the
    /// close sent for a message over the limit the upgrade set.
    pub fn new(
        socket: WebSocket,
        limits: ConnLimits,
        stats: Arc<Stats>,
        shutdown: watch::Receiver<bool>,
        oversize: CloseReason,
    ) -> Self {
        let mut ping = tokio::time::interval(limits.ping);
        ping.reset();
        Self {
            socket,
            stats,
            shutdown,
            ping,
            last_heard: Instant::now(),
            idle: limits.idle,
            send_limit: limits.send_limit,
            oversize,
        }
    }

    /// How long a send may wait for the peer to take bytes.
    pub fn send_limit(&self) -> Duration {
        self.send_limit
    }

    /// The next message from the peer, or why the connection ends.
    ///
    /// Meanwhile pings the peer every `--ping-secs` and ends with
    /// [`End::IdleTimeout`] once it has been silent for `--idle-secs`; ends
    /// with [`End::Shutdown`] when the server stops, and with
    /// [`End::Closed`] (the endpoint's over-size reason, counted as a
    /// protocol error) for a message over the size limit.
    ///
    /// Cancel-safe (it may lose in a `select!`) but for a keep-alive ping
    /// being written: that ping may then be lost, which costs nothing (the
    /// idle limit goes by what the peer sends, and a peer that takes no
    /// bytes fails the next send).
    pub async fn next(&mut self) -> Result<Event, End> {
        loop {
            tokio::select! {
                msg = self.socket.recv() => match msg {
                    None => return Err(End::PeerVanished),
                    Some(Ok(Message::Close(frame))) => {
                        return Err(End::PeerClosed(frame.map(|f| f.code)));
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        self.last_heard = Instant::now();
                        return Ok(Event::Binary(bytes));
                    }
                    Some(Ok(Message::Text(_))) => return Ok(Event::Text),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        self.last_heard = Instant::now();
                    }
                    Some(Err(e)) => return Err(self.receive_error(e)),
                },
                _ = self.ping.tick() => self.keep_alive().await?,
                _ = self.shutdown.changed() => return Err(End::Shutdown),
            }
        }
    }

    /// One keep-alive tick: reaps a peer silent for longer than the idle
    /// limit, otherwise pings it.
    async fn keep_alive(&mut self) -> Result<(), End> {
        if self.last_heard.elapsed() > self.idle {
            self.stats.idle_reaped.inc();
            return Err(End::IdleTimeout);
        }
        self.send_message(Message::Ping(Bytes::new())).await
    }

    /// A receive error: the size limit (checked by the WebSocket codec from
    /// the frame header, before the payload is read), or the peer is gone.
    fn receive_error(&self, e: axum::Error) -> End {
        let e = e.into_inner();
        if is_over_size(&*e) {
            self.stats.protocol_errors.inc();
            return End::Closed(self.oversize.clone());
        }
        debug!(error = %e, "socket error");
        End::PeerVanished
    }

    /// Sends a binary message, giving up after the send limit (a peer that
    /// stops reading must not hold its task forever).
    ///
    /// # Errors
    /// [`End::PeerVanished`] or [`End::PeerStalled`].
    pub async fn send(&mut self, msg: Bytes) -> Result<(), End> {
        self.send_message(Message::Binary(msg)).await
    }

    /// Sends `first` and then `msg` with one flush, giving up after the
    /// send limit: when `first` is smaller than the socket's write-buffer
    /// threshold (see the viewer upgrade in `app.rs`) both go out in one
    /// `write`, one TCP segment, one wake-up of the peer.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub async fn send_pair(&mut self, first: Bytes, msg: Bytes) -> Result<(), End> {
        let socket = &mut self.socket;
        let both = async {
            socket.feed(Message::Binary(first)).await?;
            socket.send(Message::Binary(msg)).await
        };
        within(self.send_limit, both).await
    }

    async fn send_message(&mut self, msg: Message) -> Result<(), End> {
        within(self.send_limit, self.socket.send(msg)).await
    }

    /// Ends the connection: sends `end`'s close frame, if it has one.
    pub async fn finish(mut self, end: &End) {
        if let Some(reason) = end.close_reason() {
            close(&mut self.socket, &reason).await;
        }
    }
}

/// Runs a send, giving up after `limit`.
async fn within(
    limit: Duration,
    send: impl Future<Output = Result<(), axum::Error>>,
) -> Result<(), End> {
    match tokio::time::timeout(limit, send).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::PeerVanished),
        Err(_) => Err(End::PeerStalled),
    }
}

/// Whether an error from the socket is a size limit: tungstenite's
/// `Capacity(MessageTooLong)` (a data message over our cap) or
/// `Protocol(ControlFrameTooBig)` (a ping or close over RFC 6455 §5.5's 125
/// bytes), which axum wraps (the same tungstenite version as ours, or the
/// downcast fails; `cargo tree -d` shows one).
fn is_over_size(e: &(dyn StdError + Send + Sync + 'static)) -> bool {
    use tungstenite::error::{CapacityError, ProtocolError};
    matches!(
        e.downcast_ref::<tungstenite::Error>(),
        Some(
            tungstenite::Error::Capacity(CapacityError::MessageTooLong { .. })
                | tungstenite::Error::Protocol(ProtocolError::ControlFrameTooBig)
        )
    )
}

/// Sends a close frame with a code and reason, best effort and bounded in
/// time. Also used on a socket never wrapped in a [`Connection`] (a refused
/// admission).
pub async fn close(socket: &mut WebSocket, reason: &CloseReason) {
    let frame = CloseFrame {
        code: reason.code,
        reason: reason.reason.as_str().into(),
    };
    let limit = Duration::from_secs(2);
    let _ = tokio::time::timeout(limit, socket.send(Message::Close(Some(frame)))).await;
    // Give the peer a moment to read the close and answer it before the
    // socket drops: dropping a socket with unread input (say, the rest of an
    // over-size message) makes the kernel send a reset, which can destroy
    // the close frame before the peer reads it.
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            match socket.recv().await {
                Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::error::{CapacityError, ProtocolError};

    /// Recognised through axum's wrapping, which only works while axum and
    /// this crate compile the same tungstenite.
    #[test]
    fn the_size_limit_is_recognised_by_type() {
        let too_long = axum::Error::new(tungstenite::Error::Capacity(
            CapacityError::MessageTooLong {
                size: 2,
                max_size: 1,
            },
        ));
        assert!(is_over_size(&*too_long.into_inner()));
        let big_ping = axum::Error::new(tungstenite::Error::Protocol(
            ProtocolError::ControlFrameTooBig,
        ));
        assert!(is_over_size(&*big_ping.into_inner()));
        let others = [
            axum::Error::new(tungstenite::Error::Capacity(CapacityError::TooManyHeaders)),
            axum::Error::new(tungstenite::Error::ConnectionClosed),
            axum::Error::new(std::io::Error::other("message too long")),
        ];
        for e in others {
            assert!(!is_over_size(&*e.into_inner()));
        }
    }

    #[test]
    fn only_the_server_s_ends_send_a_close() {
        assert_eq!(
            End::IdleTimeout.close_reason(),
            Some(CloseReason::new(NORMAL, "idle timeout"))
        );
        assert_eq!(End::Shutdown.close_reason(), Some(shutdown_reason()));
        let r = CloseReason::new(crate::conn::limits::POLICY, "no");
        assert_eq!(End::Closed(r.clone()).close_reason(), Some(r));
        for end in [
            End::PeerClosed(Some(1000)),
            End::PeerVanished,
            End::PeerStalled,
        ] {
            assert_eq!(end.close_reason(), None);
        }
    }
}
