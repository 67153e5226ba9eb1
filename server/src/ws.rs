//! Small helpers shared by both WebSocket endpoints: timed sends, clean
//! closes, and recognising an over-size inbound message.

use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures_util::SinkExt;

use crate::limits::{CloseReason, NORMAL};
use crate::metrics::Counter;

/// How a timed send ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Written.
    Ok,
    /// The peer is gone (closed or reset).
    Gone,
    /// The peer stopped taking bytes for longer than the limit.
    TimedOut,
}

/// Sends `msg`, giving up after `limit` (a peer that stops reading must not
/// hold its task forever).
pub async fn send_outcome(socket: &mut WebSocket, msg: Message, limit: Duration) -> Sent {
    within(limit, socket.send(msg)).await
}

/// Runs a send, giving up after `limit`.
async fn within(limit: Duration, send: impl Future<Output = Result<(), axum::Error>>) -> Sent {
    match tokio::time::timeout(limit, send).await {
        Ok(Ok(())) => Sent::Ok,
        Ok(Err(_)) => Sent::Gone,
        Err(_) => Sent::TimedOut,
    }
}

/// Sends `first` and then `msg` with one flush, giving up after `limit`:
/// when `first` is smaller than the socket's write-buffer threshold (see
/// the viewer upgrade in `app.rs`) both go out in one `write`, one TCP
/// segment, one wake-up of the peer.
pub async fn send_pair_outcome(
    socket: &mut WebSocket,
    first: Message,
    msg: Message,
    limit: Duration,
) -> Sent {
    let both = async {
        socket.feed(first).await?;
        socket.send(msg).await
    };
    within(limit, both).await
}

/// [`send_outcome`], as "was it written".
pub async fn send_timed(socket: &mut WebSocket, msg: Message, limit: Duration) -> bool {
    send_outcome(socket, msg, limit).await == Sent::Ok
}

/// One keep-alive tick of a connection: reaps a peer silent for longer
/// than `idle` (`Err(Some(reason))`, counted in `reaped`), otherwise pings
/// it (`Err(None)` when the ping cannot be sent: the peer is gone).
pub async fn keep_alive(
    socket: &mut WebSocket,
    last_heard: Instant,
    idle: Duration,
    send_limit: Duration,
    reaped: &Counter,
) -> Result<(), Option<CloseReason>> {
    if last_heard.elapsed() > idle {
        reaped.inc();
        return Err(Some(CloseReason::new(NORMAL, "idle timeout")));
    }
    match send_timed(socket, Message::Ping(Bytes::new()), send_limit).await {
        true => Ok(()),
        false => Err(None),
    }
}

/// Sends a close frame with a code and reason, best effort and bounded in time.
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

/// Whether a receive error is the message-size limit (checked by the
/// WebSocket codec from the frame header, before the payload is read).
pub fn is_size_limit(e: &axum::Error) -> bool {
    let text = e.to_string();
    text.contains("Space limit exceeded") || text.contains("too long") || text.contains("too big")
}
