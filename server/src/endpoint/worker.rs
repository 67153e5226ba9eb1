//! One worker connection (`/ws/worker`): tasks out, results in.
//!
//! The connection task owns the socket and is the only place a worker's
//! bytes are interpreted. A result goes through four gates before it can
//! reach a viewer: the decoder (length caps, every frame's symbols and
//! layout), the scheduler's claim (was this task given to this worker, with
//! this header?), the policy's check (the
//! [`Verifier`](crate::trust::verifier::Verifier) off the executor, or a
//! [quorum vote](crate::trust::quorum)), and the core's accept (is the range
//! still wanted?). Malformed bytes close the connection with a reason at
//! once, and a malformed frame is also a strike; cheating earns strikes
//! against the *address* ([`Reputation`](crate::trust::reputation)), and
//! enough of them ban it. A worker whose tasks keep expiring unanswered is
//! closed once its address has missed `--max-misses` in a row.
//!
//! The loop runs over any [`Transport`]: the worker's own socket
//! ([`run`]), or a [`Pipe`](crate::conn::pipe::Pipe) to a socket held by another
//! node of a cluster ([`serve`]); the protocol is the same.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::WebSocket;
use bytes::Bytes;
use donut_shared::scene::Scene;
use donut_shared::wire::{
    DecodeError, FromWorker, MAX_WORKER_MESSAGE_LEN, RESULT_HEADER_LEN, TaskResult,
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::conn::connection::{Connection, End, Event};
use crate::conn::fleet::Admission;
use crate::conn::limits::{CloseReason, POLICY, UNSUPPORTED};
use crate::conn::transport::Transport;
use crate::state::App;
use crate::stream::core::{Candidate, Vote, WorkerEvent};
use crate::stream::scheduler::Claim;
use crate::stream::timeline::rate::TokenBucket;
use crate::trust::check::check_answer;
use crate::trust::verifier::VerifyPolicy;

/// Per-connection state.
struct Conn {
    app: Arc<App>,
    id: u64,
    admission: Admission,
    contributed: u64,
    /// Tasks sent to this worker.
    tasks_sent: u64,
    /// Results that needed no work (repeats, late copies).
    needless: u64,
    /// Answers were checked where the worker's socket is (see
    /// [`Transport::CHECKED_UPSTREAM`]).
    checked_upstream: bool,
    /// `Hello`s it may still send (each takes the core's lock and runs a
    /// dispatch round).
    hellos: TokenBucket,
}

/// `Hello`s one worker may send a second on average: a worker says it once
/// per connection (a pause or resume may say it again).
pub const HELLO_RATE: f64 = 2.0;
/// `Hello`s one worker may send at once.
pub const HELLO_BURST: u32 = 8;

/// Answers beyond the tasks given that a worker may send before it counts as
/// a flood (a hedged or expired task legitimately gets one late answer).
const NEEDLESS_ALLOWANCE: u64 = 16;

/// Runs a worker connection on its upgraded socket to its end (inside its
/// connection span, see `app.rs`).
pub async fn run(socket: WebSocket, app: Arc<App>, admission: Admission) {
    let ws = connection(socket, &app);
    serve(ws, app, admission).await;
}

/// A worker's upgraded socket as a [`Connection`] (with the worker
/// endpoint's size limit and its close).
pub fn connection(socket: WebSocket, app: &App) -> Connection {
    let oversize = CloseReason::for_decode_error(&DecodeError::TooLarge {
        len: MAX_WORKER_MESSAGE_LEN + 1,
        max: MAX_WORKER_MESSAGE_LEN,
    });
    app.connection(socket, oversize)
}

/// Runs the worker protocol over `ws` to its end: registers the worker
/// with the core, sends it tasks and telemetry, takes its results through
/// the gates of the module docs, and ends (the worker removed from the
/// core, `ws` finished with the reason) when either side ends it.
/// `admission` is its place in the fleet, held until it ends.
pub async fn serve<T: Transport>(mut ws: T, app: Arc<App>, admission: Admission) {
    let id = admission.id;
    let (event_tx, mut events) = mpsc::unbounded_channel();
    let key = admission.key;
    let misses = app.fleet.reputation().misses(key);
    app.core
        .add_worker(id, key, misses, event_tx, Instant::now());
    info!(misses, "worker connected");
    // Admitted just before its address was banned, and registered just
    // after the ban evicted the address's workers: checked once more now
    // that eviction would reach it.
    if app.fleet.reputation().banned(key, Instant::now()).is_some() {
        app.core.remove_worker(id, Instant::now());
        let end = End::Closed(CloseReason::new(POLICY, "address banned for cheating"));
        ws.finish(&end).await;
        return;
    }
    let mut conn = Conn {
        app: Arc::clone(&app),
        id,
        admission,
        contributed: 0,
        tasks_sent: 0,
        needless: 0,
        checked_upstream: T::CHECKED_UPSTREAM,
        hellos: TokenBucket::new(HELLO_RATE, HELLO_BURST, Instant::now()),
    };
    let mut telemetry = app.telemetry.clone();

    let end: End = loop {
        tokio::select! {
            event = ws.next() => match event {
                Err(end) => break end,
                Ok(Event::Binary(bytes)) => {
                    if let Some(reason) = conn.on_binary(bytes).await {
                        break End::Closed(reason);
                    }
                }
                Ok(Event::Text) => {
                    app.stats.protocol_errors.inc();
                    break End::Closed(CloseReason::new(UNSUPPORTED, "binary messages only"));
                }
                Ok(Event::Rejected { task_id, frame }) => {
                    if let Some(reason) = conn.rejected_upstream(task_id, frame) {
                        break End::Closed(reason);
                    }
                }
            },
            Some(event) = events.recv() => match event {
                WorkerEvent::Task(task) => {
                    conn.tasks_sent += 1;
                    if let Err(end) = ws.send(Bytes::copy_from_slice(&task.to_bytes())).await {
                        break end;
                    }
                }
                WorkerEvent::Missed => {
                    if let Some(reason) = conn.missed() {
                        break End::Closed(reason);
                    }
                }
                WorkerEvent::Banned => {
                    break End::Closed(CloseReason::new(POLICY, "address banned for cheating"));
                }
                WorkerEvent::Handover => break End::Closed(crate::conn::limits::handover_reason()),
            },
            Ok(()) = telemetry.changed() => {
                let mut t = telemetry.borrow_and_update().telemetry;
                t.contributed = conn.contributed;
                if let Err(end) = ws.send(Bytes::copy_from_slice(&t.to_bytes())).await {
                    break end;
                }
            }
        }
    };
    app.core.remove_worker(id, Instant::now());
    if let Some(reason) = end.close_reason() {
        info!(code = reason.code, reason = %reason.reason, "closing worker");
    }
    ws.finish(&end).await;
    info!(?end, contributed = conn.contributed, "worker disconnected");
}

impl Conn {
    /// Handles one binary message; returns a reason to close, if any.
    async fn on_binary(&mut self, bytes: Bytes) -> Option<CloseReason> {
        let stats = &self.app.stats;
        let msg = match FromWorker::decode(&bytes) {
            Ok(m) => m,
            Err(e) => {
                stats.protocol_errors.inc();
                let close = CloseReason::for_decode_error(&e);
                // A malformed frame is forgery by other means: a strike on
                // the address too (a wrong protocol version is not).
                if matches!(e, DecodeError::InvalidFrame { .. }) {
                    stats.batches_rejected.inc();
                    let _ = self.strike(format!("malformed frame: {e}"));
                }
                return Some(close);
            }
        };
        match msg {
            FromWorker::Hello(h) => {
                let now = Instant::now();
                if !self.hellos.take(now) {
                    stats.protocol_errors.inc();
                    return Some(CloseReason::new(
                        POLICY,
                        format!(
                            "hello flood: over {HELLO_RATE} Hello messages a second \
                             (burst {HELLO_BURST})"
                        ),
                    ));
                }
                self.app.core.hello(self.id, h.slots, now);
                None
            }
            FromWorker::Result(r) => self.on_result(r, &bytes).await,
        }
    }

    async fn on_result(&mut self, r: TaskResult<'_>, bytes: &Bytes) -> Option<CloseReason> {
        let app = Arc::clone(&self.app);
        let stats = &app.stats;
        let scene = match app
            .core
            .claim(self.id, r.task_id, r.start, r.count, Instant::now())
        {
            Claim::Fresh(scene) => scene,
            Claim::Done | Claim::Stale => {
                stats.results_duplicate.inc();
                self.needless += 1;
                if self.needless > self.tasks_sent + NEEDLESS_ALLOWANCE {
                    return self.cut_off(format!(
                        "flooding: {} answers needing no work for {} tasks",
                        self.needless, self.tasks_sent
                    ));
                }
                return None;
            }
            Claim::Mismatch => {
                app.core.reject(self.id, r.task_id, Instant::now());
                return self.strike(format!(
                    "result header for task {} does not match the task",
                    r.task_id
                ));
            }
            Claim::Unsolicited => {
                return self.strike(format!("result for task {} never given", r.task_id));
            }
        };
        let frames = bytes.slice(RESULT_HEADER_LEN..);
        if app.verifier.policy() == VerifyPolicy::Quorum {
            return self.on_vote(r, scene, frames).await;
        }
        let key = self.admission.key;
        if self.checked_upstream {
            // Checked natively where the socket is; a failure came as
            // `Event::Rejected` instead.
            return self.take(r, scene);
        }
        if let Some(bad) = check_answer(
            &app.verifier,
            app.fleet.reputation(),
            &app.stats,
            key,
            (r.start, scene),
            frames,
        )
        .await
        {
            app.core.reject(self.id, r.task_id, Instant::now());
            return self.strike(format!("frame {bad} failed verification"));
        }
        self.take(r, scene)
    }

    /// A checked answer goes in: the address delivers (answers needing no
    /// check do not count, or an idle taker could clear its misses with
    /// junk).
    fn take(&mut self, r: TaskResult<'_>, scene: Scene) -> Option<CloseReason> {
        let app = &self.app;
        app.fleet.reputation().delivered(self.admission.key);
        if app.core.accept(
            self.id,
            (r.task_id, scene),
            r.start,
            r.frames,
            Instant::now(),
        ) {
            self.contributed += u64::from(r.count);
        } else {
            app.stats.results_duplicate.inc();
        }
        None
    }

    /// The node holding this (tunnelled) worker's socket found frame
    /// `frame` of its answer to `task_id` wrong: as a failed check here.
    fn rejected_upstream(&mut self, task_id: u32, frame: u64) -> Option<CloseReason> {
        self.app.stats.batches_rejected.inc();
        self.app.core.reject(self.id, task_id, Instant::now());
        self.strike(format!("frame {frame} failed verification"))
    }

    /// Under `quorum`: casts the result as a vote (see [`Vote`]).
    async fn on_vote(
        &mut self,
        r: TaskResult<'_>,
        scene: Scene,
        frames: Bytes,
    ) -> Option<CloseReason> {
        let app = Arc::clone(&self.app);
        let key = self.admission.key;
        match app.core.vote(
            (self.id, key),
            (r.task_id, scene),
            r.start,
            &frames,
            Instant::now(),
        ) {
            Vote::Pending => {
                app.fleet.reputation().delivered(key);
                None
            }
            Vote::Uncounted => None,
            Vote::Done => {
                app.stats.results_duplicate.inc();
                None
            }
            Vote::Agreed { first } => {
                app.stats.quorum_agreements.inc();
                app.stats.batches_verified.inc();
                let now = Instant::now();
                app.fleet.reputation().clean(first, now);
                app.fleet.reputation().clean(key, now);
                app.fleet.reputation().delivered(key);
                self.contributed += u64::from(r.count);
                None
            }
            Vote::Disputed(first) => {
                let start = r.start;
                let mine = Candidate {
                    worker: self.id,
                    addr: key,
                    task_id: r.task_id,
                    start,
                    scene,
                    frames,
                    since: Instant::now(),
                };
                if app.referee.settle_dispute(first, mine).await {
                    self.contributed += u64::from(r.count);
                    return None;
                }
                app.stats.batches_rejected.inc();
                self.strike(format!("quorum: range {start} failed verification"))
            }
        }
    }

    /// A task of this worker went unanswered: closes it once it or its
    /// address has missed too many. The count is read now, not taken from
    /// the event: an answer may have come in since.
    fn missed(&mut self) -> Option<CloseReason> {
        let app = &self.app;
        let in_a_row = app.core.worker_misses(self.id).unwrap_or(0);
        if in_a_row == 0 {
            return None;
        }
        let max = app.cfg.max_misses;
        let by_addr = app
            .fleet
            .reputation()
            .missed(self.admission.key, Instant::now());
        debug!(in_a_row, by_addr, "task expired unanswered");
        if in_a_row < max && by_addr < max {
            return None;
        }
        app.stats.workers_idle_closed.inc();
        warn!(in_a_row, by_addr, "closing idle taker");
        Some(CloseReason::new(
            POLICY,
            format!(
                "not delivering: {} tasks in a row expired unanswered",
                in_a_row.max(by_addr)
            ),
        ))
    }

    /// Records a violation against the address (the one rule,
    /// [`Sanctions`](crate::trust::sanction::Sanctions)); returns the close
    /// reason once that cuts it off.
    fn strike(&mut self, why: String) -> Option<CloseReason> {
        let cut = self.app.sanctions.strike(self.admission.key, &why)?;
        Some(self.banned(cut.ban, &why, self.app.cfg.max_strikes))
    }

    /// Cuts the worker off now and bans its address (a flood).
    fn cut_off(&mut self, why: String) -> Option<CloseReason> {
        let cut = self.app.sanctions.cut_off(self.admission.key);
        Some(self.banned(cut.ban, &why, 0))
    }

    /// The close of a worker whose address was just cut off (and banned,
    /// if bans are on: its other workers were evicted).
    fn banned(&self, ban: Option<Duration>, why: &str, strikes: u32) -> CloseReason {
        let key = self.admission.key;
        let secs = ban.map_or(0, |b| b.as_secs());
        warn!(addr = %key, ban_secs = secs, "worker cut off");
        let strikes = match strikes {
            0 => String::new(),
            n => format!(" ({n} strikes)"),
        };
        CloseReason::new(POLICY, format!("cut off{strikes}, banned {secs} s: {why}"))
    }
}

#[cfg(test)]
mod tests {
    //! The protocol loop over a [`Pipe`]: a fake worker on the far end,
    //! no socket.

    use std::net::IpAddr;

    use donut_shared::wire::{Hello, Task, Telemetry, ToWorker};
    use tokio::sync::watch;

    use super::*;
    use crate::config::ServeConfig;
    use crate::conn::fleet::{Caps, ConnKind, Fleet};
    use crate::conn::limits::PROTOCOL_ERROR;
    use crate::conn::pipe::{Outbound, Pipe, PipeEnd};
    use crate::edge::client_addr::ClientAddr;
    use crate::edge::origin::OriginPolicy;
    use crate::metrics::Stats;
    use crate::native_worker::render_result;
    use crate::stream::core::{Core, CoreConfig};
    use crate::stream::fanout::Fanout;
    use crate::stream::telemetry::TelemetryMsg;
    use crate::trust::quorum::Referee;
    use crate::trust::reputation::Reputation;
    use crate::trust::sanction::Sanctions;

    use crate::stream::core::tests::START;
    const WAIT: Duration = Duration::from_secs(10);

    /// An [`App`] as `app.rs` builds it (full verification, an unpaced
    /// core from frame [`START`]), with no server, no broadcaster and no
    /// telemetry task; the senders keep its channels open.
    struct Rig {
        app: Arc<App>,
        _telemetry: watch::Sender<TelemetryMsg>,
        _shutdown: watch::Sender<bool>,
    }

    fn rig() -> Rig {
        let mut cfg = ServeConfig::for_tests();
        cfg.verify = VerifyPolicy::Full;
        let stats = Arc::new(Stats::default());
        let fanout = Arc::new(Fanout::new(cfg.viewer_queue, Arc::clone(&stats)));
        let core = Arc::new(Core::new(
            CoreConfig {
                viewer_lead_frames: u64::MAX,
                ..crate::stream::core::tests::config()
            },
            Arc::clone(&stats),
            Arc::clone(&fanout),
            Instant::now(),
        ));
        let reputation = Arc::new(Reputation::new(cfg.reputation_config()));
        let caps = Caps {
            workers: 8,
            viewers: 8,
            per_ip: 0,
        };
        let fleet = Arc::new(Fleet::new(caps, Arc::clone(&reputation)));
        let (telemetry_tx, telemetry) = watch::channel(TelemetryMsg::new(Telemetry::default()));
        let (shutdown_tx, shutdown) = watch::channel(false);
        let sanctions = Sanctions::new(Arc::clone(&core), reputation, Arc::clone(&stats));
        let app = Arc::new(App {
            engine: crate::engine::Engine::Memory,
            verifier: cfg.verifier(),
            referee: Referee::new(sanctions.clone()),
            sanctions,
            origins: OriginPolicy::new(&[]).expect("no origins is a valid policy"),
            client_addr: ClientAddr::new(Vec::new(), cfg.forwarded_header),
            hub: Arc::new(crate::p2p::hub::Hub::new(
                cfg.hub_config(),
                Arc::clone(&stats),
            )),
            cfg,
            core,
            fanout,
            fleet,
            stats,
            telemetry,
            shutdown,
            started: Instant::now(),
        });
        Rig {
            app,
            _telemetry: telemetry_tx,
            _shutdown: shutdown_tx,
        }
    }

    /// Starts a worker connection from 10.0.0.1 over a pipe; returns its
    /// task, the pipe's far end and the worker's id.
    fn connect(app: &Arc<App>) -> (tokio::task::JoinHandle<()>, PipeEnd, u64) {
        let admission = app
            .fleet
            .admit(ConnKind::Worker, IpAddr::from([10, 0, 0, 1]))
            .expect("admitted");
        let id = admission.id;
        let (pipe, far) = Pipe::new(8, WAIT);
        (
            tokio::spawn(serve(pipe, Arc::clone(app), admission)),
            far,
            id,
        )
    }

    /// The worker sends `bytes`.
    async fn say(far: &PipeEnd, bytes: &[u8]) {
        far.inbound
            .send(Ok(Event::Binary(Bytes::copy_from_slice(bytes))))
            .await
            .expect("the connection is reading");
    }

    /// The next thing the connection sends the worker.
    async fn hear(far: &mut PipeEnd) -> Outbound {
        tokio::time::timeout(WAIT, far.outbound.recv())
            .await
            .expect("the connection answers in time")
            .expect("the connection sends before it ends")
    }

    /// The next message, which must be a task.
    /// Hears `far` (passing over messages) until the connection closes
    /// with [`POLICY`] and a reason containing `why`; then `conn` ends in
    /// time. Panics on any other close.
    async fn closed_for_policy(far: &mut PipeEnd, conn: tokio::task::JoinHandle<()>, why: &str) {
        loop {
            match hear(far).await {
                Outbound::Close(End::Closed(reason)) => {
                    assert_eq!(reason.code, POLICY, "{reason:?}");
                    assert!(reason.reason.contains(why), "{reason:?}");
                    break;
                }
                Outbound::Close(other) => panic!("closed otherwise: {other:?}"),
                Outbound::Message(_) => {}
            }
        }
        tokio::time::timeout(WAIT, conn)
            .await
            .expect("ends in time")
            .expect("no panic");
    }

    async fn task(far: &mut PipeEnd) -> Task {
        match hear(far).await {
            Outbound::Message(m) => match ToWorker::decode(&m) {
                Ok(ToWorker::Task(t)) => t,
                other => panic!("expected a task, got {other:?}"),
            },
            other => panic!("expected a task, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_worker_over_a_pipe_gets_a_task_and_its_rendered_answer_is_accepted() {
        let Rig { app, .. } = rig();
        let (conn, mut far, id) = connect(&app);
        say(&far, &Hello { slots: 1 }.to_bytes()).await;
        let first = task(&mut far).await;
        assert_eq!(app.core.worker_misses(id), Some(0));
        assert_eq!(first.start, START);
        say(&far, &render_result(&first)).await;
        // Accepted, its slot is free: the next task follows on.
        let second = task(&mut far).await;
        assert_eq!(second.start, START + u64::from(first.count));
        assert_eq!(app.stats.results_accepted.get(), 1);
        assert_eq!(app.stats.frames_accepted.get(), u64::from(first.count));
        // Over a pipe the answer was checked where the socket is (a cluster
        // follower): not again here.
        assert_eq!(app.stats.batches_verified.get(), 0);
        assert_eq!(app.stats.strikes.get(), 0);
        assert_eq!(app.core.position().contiguous, second.start);
        assert_eq!(app.fleet.workers(), 1);
        // The worker's side closes: the connection ends, says so last, and
        // the worker leaves the core and the fleet.
        far.inbound
            .send(Err(End::PeerClosed(Some(1000))))
            .await
            .expect("the connection is reading");
        assert_eq!(
            hear(&mut far).await,
            Outbound::Close(End::PeerClosed(Some(1000)))
        );
        tokio::time::timeout(WAIT, conn)
            .await
            .expect("ends in time")
            .expect("no panic");
        assert_eq!(far.outbound.recv().await, None);
        assert_eq!(app.fleet.workers(), 0);
        assert_eq!(app.core.worker_misses(id), None);
    }

    #[tokio::test]
    async fn a_hello_flood_closes_only_its_worker() {
        let Rig { app, .. } = rig();
        let (conn, mut far, _) = connect(&app);
        let (_other, mut other_far, _) = connect(&app);
        for _ in 0..=HELLO_BURST {
            say(&far, &Hello { slots: 1 }.to_bytes()).await;
        }
        closed_for_policy(&mut far, conn, "hello flood").await;
        assert_eq!(app.fleet.workers(), 1);
        // The other worker is still given work.
        say(&other_far, &Hello { slots: 1 }.to_bytes()).await;
        task(&mut other_far).await;
    }

    #[tokio::test]
    async fn a_worker_over_a_pipe_is_struck_and_closed_with_a_reason() {
        let Rig { app, .. } = rig();
        let (conn, mut far, _) = connect(&app);
        let given = task(&mut far).await;
        // An answer to a task never given: a strike, not yet a close.
        let mut never = given;
        never.task_id += 1_000;
        say(&far, &render_result(&never)).await;
        // A message of another protocol version: closed with its reason.
        say(&far, &[1, 0x01, 0, 1]).await;
        match hear(&mut far).await {
            Outbound::Close(End::Closed(reason)) => {
                assert_eq!(reason.code, PROTOCOL_ERROR, "{reason:?}");
                assert!(reason.reason.contains("version"), "{reason:?}");
            }
            other => panic!("expected a close, got {other:?}"),
        }
        tokio::time::timeout(WAIT, conn)
            .await
            .expect("ends in time")
            .expect("no panic");
        assert_eq!(app.stats.strikes.get(), 1);
        assert_eq!(app.stats.protocol_errors.get(), 1);
        assert_eq!(app.stats.results_accepted.get(), 0);
        assert_eq!(app.fleet.workers(), 0);
    }

    /// The node holding the socket found an answer wrong: a strike here,
    /// the range goes back, and at the rig's one strike the worker is cut
    /// off with the reason.
    #[tokio::test]
    async fn an_answer_rejected_upstream_is_a_strike_here() {
        let Rig { app, .. } = rig();
        let (conn, mut far, id) = connect(&app);
        let given = task(&mut far).await;
        far.inbound
            .send(Ok(Event::Rejected {
                task_id: given.task_id,
                frame: given.start + 3,
            }))
            .await
            .expect("the connection is reading");
        let strikes = app.cfg.max_strikes;
        for _ in 1..strikes {
            // Under the cap: struck, still connected, the range handed out
            // again (perhaps to it).
            let again = task(&mut far).await;
            far.inbound
                .send(Ok(Event::Rejected {
                    task_id: again.task_id,
                    frame: again.start,
                }))
                .await
                .expect("the connection is reading");
        }
        closed_for_policy(&mut far, conn, "failed verification").await;
        assert_eq!(app.stats.strikes.get(), u64::from(strikes));
        assert_eq!(app.stats.batches_rejected.get(), u64::from(strikes));
        assert_eq!(app.stats.results_accepted.get(), 0);
        assert_eq!(app.core.worker_misses(id), None);
    }
}
