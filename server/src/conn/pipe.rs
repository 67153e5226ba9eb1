//! A [`Transport`] made of two channels: a worker connection whose socket
//! is somewhere else.
//!
//! In a cluster a worker may connect to a follower while its tasks come
//! from the leader's core. The follower keeps the socket (a real
//! [`Connection`](crate::conn::connection::Connection), with its keep-alive,
//! size limit and timeouts) and tunnels the messages; on the leader the
//! tunnel holds a [`PipeEnd`] and feeds it what the worker sent, while
//! [`endpoint::worker`](crate::endpoint::worker) runs unchanged over the [`Pipe`].
//! Everything the protocol decides (tasks, strikes, misses, bans, the
//! close and its reason) is decided once, on the leader; the pipe only
//! carries it.
//!
//! The channels are bounded: a tunnel that stops draining what the
//! connection sends stalls it, and after the send limit the connection
//! ends with [`End::PeerStalled`], as a socket that takes no bytes does
//! (its tasks then go to other workers).

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::conn::connection::{End, Event};
use crate::conn::transport::Transport;

/// What the connection sends the far end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A binary message for the worker.
    Message(Bytes),
    /// The connection ended, for this reason: the far end closes the
    /// worker's socket with [`End::close_reason`], if it gives one. The
    /// last thing sent.
    Close(End),
}

/// The connection's side: a [`Transport`].
#[derive(Debug)]
pub struct Pipe {
    inbound: mpsc::Receiver<Result<Event, End>>,
    outbound: mpsc::Sender<Outbound>,
    send_limit: Duration,
}

/// The far end of a [`Pipe`]: what a tunnel holds.
#[derive(Debug)]
pub struct PipeEnd {
    /// Feeds the connection each message from the worker (`Ok`), then why
    /// the worker's side ended (`Err`: closed, vanished, idle, or the node
    /// stopping). Dropping it without an `Err` reads as
    /// [`End::PeerVanished`].
    pub inbound: mpsc::Sender<Result<Event, End>>,
    /// What the connection sends the worker, then its [`Outbound::Close`].
    /// Dropping it makes the connection's sends fail with
    /// [`End::PeerVanished`].
    pub outbound: mpsc::Receiver<Outbound>,
}

impl Pipe {
    /// A pipe and its far end, each direction holding up to `capacity`
    /// messages (at least 1); a send that waits longer than `send_limit`
    /// for room ends the connection with [`End::PeerStalled`].
    ///
    /// Messages are not size-checked here: the worker's own connection, on
    /// the node that holds its socket, enforced the size limit, and
    /// `endpoint::worker`'s decoder checks every length again.
    pub fn new(capacity: usize, send_limit: Duration) -> (Self, PipeEnd) {
        let (in_tx, in_rx) = mpsc::channel(capacity.max(1));
        let (out_tx, out_rx) = mpsc::channel(capacity.max(1));
        let pipe = Self {
            inbound: in_rx,
            outbound: out_tx,
            send_limit,
        };
        let end = PipeEnd {
            inbound: in_tx,
            outbound: out_rx,
        };
        (pipe, end)
    }

    async fn put(&self, msg: Outbound) -> Result<(), End> {
        match tokio::time::timeout(self.send_limit, self.outbound.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::PeerVanished),
            Err(_) => Err(End::PeerStalled),
        }
    }
}

impl Transport for Pipe {
    const CHECKED_UPSTREAM: bool = true;

    async fn next(&mut self) -> Result<Event, End> {
        // `recv` is cancel-safe: a lost `select!` loses no message.
        self.inbound.recv().await.unwrap_or(Err(End::PeerVanished))
    }

    async fn send(&mut self, msg: Bytes) -> Result<(), End> {
        self.put(Outbound::Message(msg)).await
    }

    async fn finish(self, end: &End) {
        // The far end may be gone already: nothing left to tell.
        let _ = self.put(Outbound::Close(end.clone())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::limits::{CloseReason, POLICY};

    const LIMIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn messages_cross_both_ways_in_order_then_the_close() {
        let (mut pipe, mut far) = Pipe::new(4, LIMIT);
        for k in 0..3u8 {
            far.inbound
                .send(Ok(Event::Binary(Bytes::from(vec![k]))))
                .await
                .expect("open");
        }
        far.inbound.send(Ok(Event::Text)).await.expect("open");
        for k in 0..3u8 {
            assert_eq!(pipe.next().await, Ok(Event::Binary(Bytes::from(vec![k]))));
        }
        assert_eq!(pipe.next().await, Ok(Event::Text));
        pipe.send(Bytes::from_static(b"task")).await.expect("sent");
        let end = End::Closed(CloseReason::new(POLICY, "banned"));
        pipe.finish(&end).await;
        assert_eq!(
            far.outbound.recv().await,
            Some(Outbound::Message(Bytes::from_static(b"task")))
        );
        assert_eq!(far.outbound.recv().await, Some(Outbound::Close(end)));
        // The pipe is gone: nothing more comes.
        assert_eq!(far.outbound.recv().await, None);
    }

    #[tokio::test]
    async fn the_far_end_s_end_is_the_connection_s() {
        let (mut pipe, far) = Pipe::new(4, LIMIT);
        far.inbound
            .send(Err(End::PeerClosed(Some(1000))))
            .await
            .expect("open");
        assert_eq!(pipe.next().await, Err(End::PeerClosed(Some(1000))));
        // Dropped without a word: the worker vanished, both ways.
        drop(far);
        assert_eq!(pipe.next().await, Err(End::PeerVanished));
        assert_eq!(
            pipe.send(Bytes::from_static(b"x")).await,
            Err(End::PeerVanished)
        );
    }

    #[tokio::test]
    async fn a_far_end_that_stops_draining_stalls_the_connection() {
        let (mut pipe, _far) = Pipe::new(1, Duration::from_millis(50));
        pipe.send(Bytes::from_static(b"1"))
            .await
            .expect("room for one");
        assert_eq!(
            pipe.send(Bytes::from_static(b"2")).await,
            Err(End::PeerStalled)
        );
    }
}
