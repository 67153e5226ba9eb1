//! One viewer connection (`/ws/viewer`): the frame stream and telemetry out,
//! the viewer's pushes on the scene in.
//!
//! Inputs are decoded by `FromViewer` (length, tag and range caps); each is
//! queued on the core's scene timeline (`crate::stream::timeline`), where the next
//! tick folds it with everyone's into one change. A malformed or
//! out-of-range input closes the viewer with the decoder's reason (1002), a
//! viewer-bound or worker message with 1003, and a viewer over its input
//! rate (`--input-rate`, `--input-burst`: a token bucket) with 1008: one
//! viewer's flood never reaches the timeline, and the others are untouched.
//!
//! On connect the viewer subscribes to the node's
//! [`Fanout`](crate::stream::fanout::Fanout) (not to the core: on a cluster
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
//! ([`crate::edge::send_queue`]), so the memory it can pin is the channel's
//! bounded retention plus a fixed socket buffer.
//!
//! A viewer that joins the peer relay (`Peering { on: true }`, see
//! [`crate::p2p`]) becomes a [`Member`] of the tree: its task also writes
//! the control messages the hub queues for it (`Welcome`, `Assign`,
//! forwarded `Signal`s), and while it is fed by a peer it is sent each
//! batch's `Digest` instead of the batch (telemetry as before). Its
//! `Signal`, `Link` and `Report` messages (capped by a token bucket) go to
//! the hub; a `Fetch` (capped too) is answered with the batch's bytes if
//! it was announced to this viewer by digest and not sent since (each at
//! most once: a viewer's fetches cost at most its own stream) and the
//! fan-out still holds it; any other fetch is refused and counted. Relay messages from a viewer that has not
//! joined close it with 1008. A viewer that never joins is served exactly
//! as without P2P.
//!
//! The fan-out is bound by `write` calls (on loopback at 10,000 viewers
//! three quarters of the server's CPU is the kernel's send path), so a
//! telemetry update (once a second) is held until the next batch (four a
//! second) and written with it in one `write`, at most [`TELEMETRY_HOLD`]
//! later: a fifth fewer writes and peer wake-ups. The loop polls the
//! broadcast first (`biased`): a viewer with a batch waiting sends it
//! without first polling its other sources.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::WebSocket;
use bytes::Bytes;
use donut_shared::wire::p2p::{Fetch, Peering, Proof};
use donut_shared::wire::{DecodeError, FromViewer, Input};
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

use crate::conn::connection::{Connection, End, Event};
use crate::conn::fleet::Admission;
use crate::conn::limits::{CloseReason, POLICY, TOO_BIG, UNSUPPORTED};
use crate::edge::send_queue::SendQueue;
use crate::p2p::hub::{Control, Member};
use crate::state::App;
use crate::stream::fanout::Batch;
use crate::stream::timeline::acks::Acks;
use crate::stream::timeline::rate::TokenBucket;
use crate::trust::reputation::AddrKey;

/// Longest a telemetry update waits for a batch to ride with: a little more
/// than the quarter-second batch interval, so while the stream plays every
/// update rides along, and when it stalls updates still go out on their own.
pub const TELEMETRY_HOLD: Duration = Duration::from_millis(300);

/// Relay messages other than `Fetch` (`Peering`, `Signal`, `Link`,
/// `Report`) one viewer may send a second on average; setting up a data
/// channel takes a handful.
pub const SIGNAL_RATE: f64 = 50.0;
/// Relay signalling one viewer may send at once.
pub const SIGNAL_BURST: u32 = 200;
/// Fallback fetches one viewer may send a second on average (a stalled
/// parent costs four a second).
pub const FETCH_RATE: f64 = 20.0;
/// Fallback fetches one viewer may send at once.
pub const FETCH_BURST: u32 = 40;
/// Proofs of peer-delivered batches one viewer may send a second on
/// average: two a frame at 60 fps (an honest viewer sends at most one a
/// batch, and a batch is at least a frame).
pub const PROOF_RATE: f64 = 120.0;
/// Proofs one viewer may send at once.
pub const PROOF_BURST: u32 = 240;
/// Batches announced by digest a viewer may still fetch (16 s of 60-frame
/// batches at 60 fps; its jitter buffer is about a second).
pub const OWED_KEPT: usize = 64;

/// Notices (refused pushes) held for one viewer; more are dropped (they
/// are rate-limited with its pushes, and counted where refused).
pub const NOTICES_HELD: usize = 64;

/// Runs a viewer connection to its end (inside its connection span, see
/// `app.rs`). `queue` is its socket's send queue, bounded by
/// `--viewer-max-unsent`.
pub async fn run(socket: WebSocket, app: Arc<App>, admission: Admission, queue: SendQueue) {
    debug!("viewer connected");
    let oversize = CloseReason::new(
        TOO_BIG,
        "message exceeds the viewer limit: Input and relay signalling (at most 4 KiB of text)",
    );
    let mut session = Session::new(&app, admission.id, admission.key);
    let mut ws = app.connection(socket, oversize);
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
    let first = telemetry.borrow_and_update().viewer_msg_at(Instant::now());
    let (mut rx, catchup) = app.fanout.subscribe();
    let mut ok = out.send(&mut ws, None, first).await;
    if ok.is_ok() {
        ok = out.send_batches(&mut ws, catchup, false).await;
    }

    // A telemetry update waiting for the next batch, and its deadline.
    // Whether a telemetry update waits for a batch to ride with.
    let mut held = false;
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
                        let sent = if session.fell_back() {
                            // Fed by a peer until now: what it may still
                            // owe comes again from the server, in order
                            // (the page drops batches it has).
                            let (fresh, catchup) = app.fanout.subscribe();
                            rx = fresh;
                            let lead = std::mem::take(&mut held).then(|| fresh_telemetry(&mut telemetry));
                            out.send_catchup(&mut ws, lead, catchup).await
                        } else {
                            if let Some(k) = session.keyframe()
                                && let Err(end) = out.send(&mut ws, None, k).await
                            {
                                break end;
                            }
                            let fed = session.peer_fed();
                            let lead = std::mem::take(&mut held).then(|| fresh_telemetry(&mut telemetry));
                            let sent = out.send_batch(&mut ws, lead, &b, fed).await;
                            if fed {
                                session.owe(&b);
                            }
                            sent
                        };
                        if let Err(end) = sent {
                            break end;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        app.stats.viewer_lag_events.inc();
                        app.stats.viewer_batches_skipped.add(n);
                        warn!(skipped = n, "viewer lagging; skipped ahead to live");
                        let (fresh, catchup) = app.fanout.subscribe();
                        rx = fresh;
                        session.fell_back();
                        let fed = session.peer_fed();
                        if fed {
                            for b in &catchup {
                                session.owe(b);
                            }
                        }
                        if let Err(end) = out.send_batches(&mut ws, catchup, fed).await {
                            break end;
                        }
                    }
                    Err(RecvError::Closed) => break End::Shutdown,
                },
                Some(msg) = session.notices.1.recv() => {
                    if let Err(end) = out.send(&mut ws, None, msg).await {
                        break end;
                    }
                }
                Some(msg) = next_control(&mut session.member) => {
                    let sent = match msg {
                        Control::Must(msg) => out.send(&mut ws, None, msg).await,
                        Control::Signal(msg) => out.send_signal(&mut ws, msg).await,
                    };
                    if let Err(end) = sent {
                        break end;
                    }
                }
                Ok(()) = telemetry.changed(), if !held => {
                    held = true;
                    hold.as_mut().reset(tokio::time::Instant::now() + TELEMETRY_HOLD);
                }
                () = &mut hold, if held => {
                    // No batch came along (the stream is stalled): send it alone,
                    // as fresh as it is now.
                    held = false;
                    let msg = telemetry.borrow_and_update().viewer_msg_at(Instant::now());
                    if let Err(end) = out.send(&mut ws, None, msg).await {
                        break end;
                    }
                }
                event = ws.next() => match event {
                    Err(end) => break end,
                    Ok(Event::Binary(bytes)) => match session.on_message(&bytes) {
                        Err(reason) => break End::Closed(reason),
                        Ok(Some(fallback)) => {
                            if let Err(end) = out.send_fallback(&mut ws, fallback).await {
                                break end;
                            }
                        }
                        Ok(None) => {
                            if let Some(k) = session.keyframe()
                                && let Err(end) = out.send(&mut ws, None, k).await
                            {
                                break end;
                            }
                        }
                    },
                    Ok(Event::Text | Event::Rejected { .. }) => {
                        app.stats.protocol_errors.inc();
                        break End::Closed(CloseReason::new(
                            UNSUPPORTED,
                            "viewers send only binary messages; workers connect to /ws/worker",
                        ));
                    }
                },
            }
        }
    };
    if let Some(reason) = end.close_reason() {
        debug!(code = reason.code, reason = %reason.reason, "closing viewer");
    }
    // Leave the relay tree at once (its children move now, not after the
    // closing handshake), and before the id is released.
    drop(session);
    ws.finish(&end).await;
    drop(admission);
    debug!(?end, "viewer disconnected");
}

/// The newest telemetry for a viewer, its head as of now (see
/// `TelemetryMsg::viewer_msg_at`): a held update may be up to
/// [`TELEMETRY_HOLD`] old when its batch comes. Marked seen: an update
/// that came during the hold goes out now, not again after.
fn fresh_telemetry(
    telemetry: &mut tokio::sync::watch::Receiver<crate::stream::telemetry::TelemetryMsg>,
) -> Bytes {
    telemetry.borrow_and_update().viewer_msg_at(Instant::now())
}

/// The next control message for a member; never, for a viewer that has
/// not joined the relay tree.
async fn next_control(member: &mut Option<Member>) -> Option<Control> {
    match member {
        Some(m) => m.recv().await,
        None => std::future::pending().await,
    }
}

/// What one viewer's messages do: its rate limits and its place in the
/// relay tree.
struct Session {
    app: Arc<App>,
    id: u64,
    /// The address it connected from, as reputation keys it.
    origin: AddrKey,
    inputs: TokenBucket,
    signals: TokenBucket,
    fetches: TokenBucket,
    proofs: TokenBucket,
    member: Option<Member>,
    /// Notices for this viewer (a refused push), and where they are read.
    notices: (crate::engine::Notices, tokio::sync::mpsc::Receiver<Bytes>),
    /// Whether the last batch went out as a digest.
    was_fed: bool,
    /// Batches announced to it by digest and not sent since (the newest
    /// [`OWED_KEPT`]): the only ones it may fetch, each once.
    owed: VecDeque<(u64, u32)>,
    /// Its pushes folded in so far, told with each change once it steers.
    acks: Acks,
}

impl Session {
    fn new(app: &Arc<App>, id: u64, origin: AddrKey) -> Self {
        let now = Instant::now();
        Self {
            app: Arc::clone(app),
            id,
            origin,
            inputs: TokenBucket::new(app.cfg.input_rate, app.cfg.input_burst, now),
            signals: TokenBucket::new(SIGNAL_RATE, SIGNAL_BURST, now),
            fetches: TokenBucket::new(FETCH_RATE, FETCH_BURST, now),
            proofs: TokenBucket::new(PROOF_RATE, PROOF_BURST, now),
            member: None,
            notices: tokio::sync::mpsc::channel(NOTICES_HELD),
            was_fed: false,
            owed: VecDeque::new(),
            acks: Acks::default(),
        }
    }

    /// Whether the viewer is fed by a peer now (send it digests).
    fn peer_fed(&self) -> bool {
        self.member.as_ref().is_some_and(Member::peer_fed)
    }

    /// Whether the viewer was fed by a peer and no longer is (its parent
    /// left or failed, it was moved, or it left the tree) since the last
    /// call.
    fn fell_back(&mut self) -> bool {
        let fed = self.peer_fed();
        let fell = self.was_fed && !fed;
        self.was_fed = fed;
        if fell {
            // Everything from the playback head is sent again.
            self.owed.clear();
        }
        fell
    }

    /// The `Keyframe` to send a steering viewer now, if the version or its
    /// pushes folded in moved (issue 25; never for a watcher).
    fn keyframe(&mut self) -> Option<Bytes> {
        // A watcher costs no look at the core's lock.
        if !self.acks.steering() {
            return None;
        }
        let k = self.app.engine.keyframe(&self.app.core, &mut self.acks)?;
        Some(Bytes::copy_from_slice(&k.to_bytes()))
    }

    /// `b` went out as a digest: the viewer may fetch it once.
    fn owe(&mut self, b: &Batch) {
        if self.owed.len() >= OWED_KEPT {
            self.owed.pop_front();
        }
        self.owed.push_back((b.start, b.timeline));
    }

    /// Handles one binary message: `Ok(Some(batch))` for a fetched batch to
    /// send, or why the viewer is closed (malformed, wrong role, over a
    /// rate, relay messages without joining).
    fn on_message(&mut self, bytes: &[u8]) -> Result<Option<Bytes>, CloseReason> {
        let msg = FromViewer::decode(bytes).map_err(|e| self.refuse_decode(&e))?;
        let msg = match msg {
            FromViewer::Input(input) => return self.on_input(input).map(|()| None),
            FromViewer::Peering(p) => return self.on_peering(p).map(|()| None),
            other => other,
        };
        if self.member.is_none() {
            self.app.stats.protocol_errors.inc();
            return Err(CloseReason::new(
                POLICY,
                "join the relay tree first: send Peering on before relay messages",
            ));
        }
        if let FromViewer::Fetch(f) = msg {
            return self.on_fetch(f);
        }
        if let FromViewer::Proof(p) = msg {
            if !self.proofs.take(Instant::now()) {
                return Err(CloseReason::new(
                    POLICY,
                    format!("proof flood: over {PROOF_RATE} proofs a second (burst {PROOF_BURST})"),
                ));
            }
            self.on_proof(p);
            return Ok(None);
        }
        let now = Instant::now();
        self.signalled(now)?;
        let hub = &self.app.hub;
        match msg {
            FromViewer::Signal(s) => hub.signal(self.id, s, now),
            FromViewer::Link(l) => hub.link(self.id, l, now),
            FromViewer::Report(r) => hub.report(self.id, r, now),
            _ => {}
        }
        Ok(None)
    }

    fn refuse_decode(&self, e: &DecodeError) -> CloseReason {
        self.app.stats.protocol_errors.inc();
        self.app.stats.inputs_refused.inc();
        let reason = match e {
            DecodeError::WrongDirection(_) => CloseReason::new(
                UNSUPPORTED,
                "viewers send Input and relay messages only; workers connect to /ws/worker",
            ),
            e => CloseReason::for_decode_error(e),
        };
        debug!(code = reason.code, reason = %reason.reason, "viewer message refused");
        reason
    }

    /// Queues a push on the scene, within the input rate.
    fn on_input(&mut self, input: Input) -> Result<(), CloseReason> {
        let app = &self.app;
        if !self.inputs.take(Instant::now()) {
            app.stats.inputs_refused.inc();
            return Err(CloseReason::new(
                POLICY,
                format!(
                    "input flood: over {} inputs a second (burst {})",
                    app.cfg.input_rate, app.cfg.input_burst
                ),
            ));
        }
        app.stats.inputs_accepted.inc();
        app.engine.input(
            &app.core,
            &app.stats,
            (self.id, input.impulse()),
            &self.notices.0,
            &mut self.acks,
        );
        Ok(())
    }

    /// Joins (unless `--p2p off`: ignored) or leaves the relay tree;
    /// capped with the signalling, as each change moves others.
    fn on_peering(&mut self, p: Peering) -> Result<(), CloseReason> {
        let now = Instant::now();
        self.signalled(now)?;
        if !p.on {
            self.member = None;
        } else if self.member.is_none() {
            self.member = self.app.hub.join(self.id, self.origin, now);
        }
        Ok(())
    }

    /// Spends a signalling token, or closes a flooding viewer.
    fn signalled(&mut self, now: Instant) -> Result<(), CloseReason> {
        if self.signals.take(now) {
            return Ok(());
        }
        Err(CloseReason::new(
            POLICY,
            format!(
                "signal flood: over {SIGNAL_RATE} relay messages a second (burst {SIGNAL_BURST})"
            ),
        ))
    }

    /// A proof that the viewer holds a batch a peer delivered: counted as
    /// offloaded (confirmed) if the batch was owed to it (announced by
    /// digest, not sent, not proven or fetched before: so one check of a
    /// batch's bytes per batch of its own stream, at most), is still held,
    /// and the tag matches its bytes and this viewer's id. Anything else is
    /// counted as refused.
    fn on_proof(&mut self, p: Proof) {
        let stats = &self.app.stats;
        // One attempt per owed batch, right or wrong.
        let owed = self.owed.iter().position(|&k| k == (p.start, p.timeline));
        let batch = owed
            .and_then(|at| self.owed.remove(at))
            .and_then(|_| self.app.fanout.find(p.start, p.timeline));
        match batch {
            Some(b) if Proof::tag_of(self.id, &b.msg) == p.tag => {
                stats.p2p_bytes_confirmed.add(b.msg.len() as u64);
            }
            _ => stats.p2p_proofs_refused.inc(),
        }
    }

    /// The deadline fallback: the batch, if it was announced to this
    /// viewer by digest and not sent since (each at most once, so its
    /// fetches cost at most its own stream), and still held; a strike on
    /// the parent either way. A fetch for anything else is refused
    /// (counted, nothing sent, no strike).
    fn on_fetch(&mut self, f: Fetch) -> Result<Option<Bytes>, CloseReason> {
        let now = Instant::now();
        if !self.fetches.take(now) {
            return Err(CloseReason::new(
                POLICY,
                format!("fetch flood: over {FETCH_RATE} fetches a second (burst {FETCH_BURST})"),
            ));
        }
        let stats = &self.app.stats;
        let Some(at) = self.owed.iter().position(|&k| k == (f.start, f.timeline)) else {
            stats.p2p_fetches_refused.inc();
            return Ok(None);
        };
        self.owed.remove(at);
        self.app.hub.late(self.id, now);
        let Some(batch) = self.app.fanout.find(f.start, f.timeline) else {
            stats.p2p_fetches_missed.inc();
            return Ok(None);
        };
        stats.p2p_fallbacks.inc();
        stats.p2p_fallback_bytes.add(batch.msg.len() as u64);
        Ok(Some(batch.msg))
    }
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

    /// Sends a signal another viewer sent this one, unless this one's
    /// socket already holds half its bound unread: then it is dropped
    /// (and counted), never a reason to close this viewer.
    async fn send_signal(&self, ws: &mut Connection, msg: Bytes) -> Result<(), End> {
        if let Some(max) = self.bound
            && let Ok(unsent) = self.queue.unsent()
            && unsent + msg.len() > max / 2
        {
            self.app.stats.p2p_signals_dropped.inc();
            self.app.stats.p2p_signals_throttled.inc();
            return Ok(());
        }
        self.write(ws, None, msg).await
    }

    async fn send_batches(
        &self,
        ws: &mut Connection,
        batches: Vec<Batch>,
        fed: bool,
    ) -> Result<(), End> {
        for b in batches {
            self.send_batch(ws, None, &b, fed).await?;
        }
        Ok(())
    }

    /// Sends a batch, or its digest to a viewer fed by a peer (`fed`),
    /// counting the batch bytes sent or offloaded.
    async fn send_batch(
        &self,
        ws: &mut Connection,
        lead: Option<Bytes>,
        b: &Batch,
        fed: bool,
    ) -> Result<(), End> {
        let len = b.msg.len() as u64;
        if fed {
            self.send(ws, lead, b.digest().clone()).await?;
            self.app.stats.p2p_batch_bytes_offloaded.add(len);
        } else {
            self.send(ws, lead, b.msg.clone()).await?;
            self.app.stats.viewer_batch_bytes_direct.add(len);
        }
        Ok(())
    }

    /// Sends `lead` (held telemetry), then `batches` themselves: a viewer
    /// no longer fed by a peer is sent everything from the playback head,
    /// so a batch its parent owed arrives in order before the next.
    async fn send_catchup(
        &self,
        ws: &mut Connection,
        lead: Option<Bytes>,
        batches: Vec<Batch>,
    ) -> Result<(), End> {
        if let Some(lead) = lead {
            self.send(ws, None, lead).await?;
        }
        self.send_batches(ws, batches, false).await
    }

    /// Sends a fetched batch (counted as sent directly).
    async fn send_fallback(&self, ws: &mut Connection, msg: Bytes) -> Result<(), End> {
        let len = msg.len() as u64;
        self.send(ws, None, msg).await?;
        self.app.stats.viewer_batch_bytes_direct.add(len);
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
