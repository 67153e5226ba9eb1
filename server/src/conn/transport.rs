//! What a worker connection runs over: messages in, messages out, and a
//! close, whatever carries them.
//!
//! [`endpoint::worker`](crate::endpoint::worker) holds a worker's whole protocol
//! (tasks out, results in, the trust gates, strikes and misses), but not
//! how its bytes travel. On one node they travel on the worker's own
//! WebSocket, a [`Connection`] (keep-alive, limits, timeouts). In a cluster
//! every worker is a worker of the leader's core, and a worker connected to
//! a follower is run on the leader over a [`Pipe`](crate::conn::pipe::Pipe):
//! channels whose far end is the tunnel through Redis to the follower, where
//! the worker's real [`Connection`] lives. This trait is the little the
//! protocol loop needs of either.
//!
//! Generic rather than `dyn`: the loop polls `next` in every turn of a
//! `select!`, and a `dyn` trait's async methods would need a boxed future
//! per call (an `async fn` in a trait is not object-safe); with two
//! transports, two copies of the loop cost nothing that matters. The
//! methods return `impl Future + Send` (rather than `async fn`) so the
//! loop's future stays `Send`, as a spawned connection task must be.

use bytes::Bytes;

use crate::conn::connection::{Connection, End, Event};

/// Messages to and from one peer, and how the exchange ends.
pub trait Transport: Send {
    /// Whether the answers arriving here were already checked natively
    /// where the worker's socket is (a cluster follower, under `full` or
    /// `sample`): a failed one arrives as [`Event::Rejected`] instead of
    /// its bytes, so the protocol loop does not check again.
    const CHECKED_UPSTREAM: bool = false;

    /// The next message from the peer, or why the exchange ended (the peer
    /// closed, vanished or idled; the server is stopping). Cancel-safe: it
    /// may lose a `select!` without losing a message.
    fn next(&mut self) -> impl Future<Output = Result<Event, End>> + Send;

    /// Sends one binary message.
    ///
    /// # Errors
    /// [`End::PeerVanished`] if the peer is gone, [`End::PeerStalled`] if
    /// it took nothing for the send limit.
    fn send(&mut self, msg: Bytes) -> impl Future<Output = Result<(), End>> + Send;

    /// Ends the exchange for the reason `end` (a close frame with its
    /// reason, when [`End::close_reason`] gives one). Best effort, bounded
    /// in time.
    fn finish(self, end: &End) -> impl Future<Output = ()> + Send
    where
        Self: Sized;
}

impl Transport for Connection {
    fn next(&mut self) -> impl Future<Output = Result<Event, End>> + Send {
        Connection::next(self)
    }

    fn send(&mut self, msg: Bytes) -> impl Future<Output = Result<(), End>> + Send {
        Connection::send(self, msg)
    }

    fn finish(self, end: &End) -> impl Future<Output = ()> + Send {
        Connection::finish(self, end)
    }
}
