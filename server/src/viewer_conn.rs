//! One viewer connection (`/ws/viewer`): the frame stream and telemetry out,
//! the viewer's pushes on the scene in.
//!
//! Inputs are decoded by `FromViewer` (length, tag and range caps); each is
//! queued on the core's scene timeline (`crate::timeline`), where the next
//! tick folds it with everyone's into one change. A malformed or
//! out-of-range input closes the viewer with the decoder's reason (1002), a
//! viewer-bound or worker message with 1003, and a viewer over its input
//! rate (`--input-rate`, `--input-burst`: a token bucket) with 1008: one
//! viewer's flood never reaches the timeline, and the others are untouched.
//!
//! On connect the viewer subscribes to the node's
//! [`Fanout`](crate::fanout::Fanout) (not to the core: on a cluster
//! follower the stream comes from the leader) and, atomically with that,
//! receives the frames from the playback head to the broadcast cursor, so
//! it can start playing at once. Afterwards it forwards each shared,
//! already-encoded batch (a `Bytes` clone, no copy, no re-encoding).
//!
//! A viewer that cannot keep up never slows anyone down: the broadcast
//! channel retains a bounded number of batches, and one that falls further
//! behind is told `Lagged` by the channel, counted, and skipped ahead to live
//! (resubscribed with a fresh catch-up). A viewer whose socket stops taking
//! bytes altogether is dropped when a send exceeds the send timeout, and
//! one that leaves more than `--viewer-max-unsent` bytes unread in its
//! socket is closed with a reason however it answers pings
//! ([`crate::send_queue`]), so the memory it can pin is the channel's
//! bounded retention plus a fixed socket buffer.
//!
//! The fan-out is bound by `write` calls (on loopback at 10,000 viewers
//! three quarters of the server's CPU is the kernel's send path), so a
//! telemetry update (once a second) is held until the next batch (four a
//! second) and written with it in one `write`, at most [`TELEMETRY_HOLD`]
//! later: a fifth fewer writes and peer wake-ups. The loop polls the
//! broadcast first (`biased`): a viewer with a batch waiting sends it
//! without first polling its other sources.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocket;
use bytes::Bytes;
use donut_shared::wire::{DecodeError, FromViewer};
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

use crate::connection::{Connection, End, Event};
use crate::fanout::Batch;
use crate::fleet::Admission;
use crate::limits::{CloseReason, POLICY, TOO_BIG, UNSUPPORTED};
use crate::send_queue::SendQueue;
use crate::state::App;
use crate::timeline::rate::TokenBucket;

/// Longest a telemetry update waits for a batch to ride with: a little more
/// than the quarter-second batch interval, so while the stream plays every
/// update rides along, and when it stalls updates still go out on their own.
pub const TELEMETRY_HOLD: Duration = Duration::from_millis(300);

/// Runs a viewer connection to its end (inside its connection span, see
/// `app.rs`). `queue` is its socket's send queue, bounded by
/// `--viewer-max-unsent`.
pub async fn run(socket: WebSocket, app: Arc<App>, admission: Admission, queue: SendQueue) {
    debug!("viewer connected");
    let oversize = CloseReason::new(
        TOO_BIG,
        "message exceeds the viewer limit; viewers send only Input messages",
    );
    let mut inputs = TokenBucket::new(
        app.cfg.input_rate,
        app.cfg.input_burst,
        std::time::Instant::now(),
    );
    let mut ws = Connection::new(socket, &app, oversize);
    // Paced (a real show), what a viewer leaves unread is bounded. Unpaced
    // (benchmarks) the stream runs as fast as it can be rendered, kernel
    // buffering is part of the measured throughput, and the viewers are
    // the benchmark's own: no bound, buffers as the kernel tunes them.
    let bound = app.cfg.paced().then_some(app.cfg.viewer_max_unsent);
    if let Some(max) = bound {
        // Room for the bound plus the largest message (a batch of
        // nibble-packed frames) plus the close frame: a write made under the
        // bound completes instead of waiting out the send timeout in a full
        // buffer, and the close frame fits behind it.
        let largest = app.cfg.batch_frames as usize * donut_shared::PACKED_LEN + 64;
        if let Err(e) = queue.set_limit(max.saturating_add(largest)) {
            debug!("SO_SNDBUF not set: {e}");
        }
    }
    let out = Out {
        app: &app,
        queue,
        bound,
    };
    let mut telemetry = app.telemetry.clone();

    // Telemetry first, so the page can show the fleet before any frame.
    let first = telemetry.borrow_and_update().viewer_msg.clone();
    let (mut rx, catchup) = app.fanout.subscribe();
    let mut ok = out.send(&mut ws, None, first).await;
    if ok.is_ok() {
        ok = out.send_batches(&mut ws, catchup).await;
    }

    // A telemetry update waiting for the next batch, and its deadline.
    let mut held: Option<Bytes> = None;
    let hold = tokio::time::sleep(TELEMETRY_HOLD);
    tokio::pin!(hold);

    let end: End = if let Err(end) = ok {
        end
    } else {
        loop {
            tokio::select! {
                biased;
                batch = rx.recv() => match batch {
                    Ok(b) => {
                        if let Err(end) = out.send(&mut ws, held.take(), b.msg).await {
                            break end;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        app.stats.viewer_lag_events.inc();
                        app.stats.viewer_batches_skipped.add(n);
                        warn!(skipped = n, "viewer lagging; skipped ahead to live");
                        let (fresh, catchup) = app.fanout.subscribe();
                        rx = fresh;
                        if let Err(end) = out.send_batches(&mut ws, catchup).await {
                            break end;
                        }
                    }
                    Err(RecvError::Closed) => break End::Shutdown,
                },
                Ok(()) = telemetry.changed(), if held.is_none() => {
                    held = Some(telemetry.borrow_and_update().viewer_msg.clone());
                    hold.as_mut().reset(tokio::time::Instant::now() + TELEMETRY_HOLD);
                }
                () = &mut hold, if held.is_some() => {
                    // No batch came along (the stream is stalled): send it alone,
                    // as fresh as it is now.
                    held = None;
                    let msg = telemetry.borrow_and_update().viewer_msg.clone();
                    if let Err(end) = out.send(&mut ws, None, msg).await {
                        break end;
                    }
                }
                event = ws.next() => match event {
                    Err(end) => break end,
                    Ok(Event::Binary(bytes)) => {
                        if let Err(reason) = on_input(&app, admission.id, &mut inputs, &bytes) {
                            break End::Closed(reason);
                        }
                    }
                    Ok(Event::Text | Event::Rejected { .. }) => {
                        app.stats.protocol_errors.inc();
                        break End::Closed(CloseReason::new(
                            UNSUPPORTED,
                            "viewers send nothing but binary Input messages; workers connect to /ws/worker",
                        ));
                    }
                },
            }
        }
    };
    if let Some(reason) = end.close_reason() {
        debug!(code = reason.code, reason = %reason.reason, "closing viewer");
    }
    ws.finish(&end).await;
    drop(admission);
    debug!(?end, "viewer disconnected");
}

/// Handles one binary message from viewer `viewer`: queues its push, or
/// returns why the viewer is closed (malformed, out of range, wrong
/// role, or over its input rate).
fn on_input(
    app: &App,
    viewer: u64,
    bucket: &mut TokenBucket,
    bytes: &[u8],
) -> Result<(), CloseReason> {
    let refuse = |reason: CloseReason| {
        app.stats.inputs_refused.inc();
        debug!(code = reason.code, reason = %reason.reason, "input refused");
        reason
    };
    let input = match FromViewer::decode(bytes) {
        Ok(FromViewer::Input(input)) => input,
        Ok(_) => {
            app.stats.protocol_errors.inc();
            return Err(refuse(CloseReason::new(
                UNSUPPORTED,
                "peer relay messages need --p2p on",
            )));
        }
        Err(DecodeError::WrongDirection(_)) => {
            app.stats.protocol_errors.inc();
            return Err(refuse(CloseReason::new(
                UNSUPPORTED,
                "viewers send nothing but Input; workers connect to /ws/worker",
            )));
        }
        Err(e) => {
            app.stats.protocol_errors.inc();
            return Err(refuse(CloseReason::for_decode_error(&e)));
        }
    };
    if !bucket.take(std::time::Instant::now()) {
        return Err(refuse(CloseReason::new(
            POLICY,
            format!(
                "input flood: over {} inputs a second (burst {})",
                app.cfg.input_rate, app.cfg.input_burst
            ),
        )));
    }
    app.stats.inputs_accepted.inc();
    app.engine.input(app, viewer, input.impulse());
    Ok(())
}

/// How a viewer's messages go out: timed, counted, and bounded by what it
/// leaves unread.
struct Out<'a> {
    app: &'a App,
    queue: SendQueue,
    /// `--viewer-max-unsent` when paced.
    bound: Option<usize>,
}

impl Out<'_> {
    /// Sends `msg` (preceded by `lead` in the same `write` if there is
    /// one), unless what was written before is still unread beyond
    /// `--viewer-max-unsent`: a viewer that keeps up has taken the last
    /// message by the time the next is due (a quarter of a second later;
    /// a catch-up is about a second of frames, well under the bound).
    async fn send(&self, ws: &mut Connection, lead: Option<Bytes>, msg: Bytes) -> Result<(), End> {
        if let Some(max) = self.bound
            && let Ok(unsent) = self.queue.unsent()
            && unsent > max
        {
            self.app.stats.viewers_dropped_slow.inc();
            warn!(unsent, max, "viewer not reading; closed");
            return Err(End::Closed(CloseReason::new(
                POLICY,
                format!("not reading: {unsent} bytes unread, over the limit of {max}"),
            )));
        }
        self.write(ws, lead, msg).await
    }

    async fn send_batches(&self, ws: &mut Connection, batches: Vec<Batch>) -> Result<(), End> {
        for b in batches {
            self.send(ws, None, b.msg).await?;
        }
        Ok(())
    }

    /// The timed write, counted. A viewer that took no bytes for the send
    /// limit is closed with a reason (a worker in that state is not: it
    /// has nothing to read about it).
    async fn write(&self, ws: &mut Connection, lead: Option<Bytes>, msg: Bytes) -> Result<(), End> {
        let app = self.app;
        let len = (msg.len() + lead.as_ref().map_or(0, Bytes::len)) as u64;
        let sent = match lead {
            Some(lead) => ws.send_pair(lead, msg).await,
            None => ws.send(msg).await,
        };
        match sent {
            Ok(()) => {
                app.stats.viewer_bytes_sent.add(len);
                Ok(())
            }
            Err(End::PeerStalled) => {
                let limit = ws.send_limit();
                app.stats.viewers_dropped_slow.inc();
                warn!("viewer took no bytes for {limit:?}; dropped");
                Err(End::Closed(CloseReason::new(
                    POLICY,
                    format!("not reading: took no bytes for {} s", limit.as_secs()),
                )))
            }
            Err(end) => Err(end),
        }
    }
}
