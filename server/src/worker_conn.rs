//! One worker connection (`/ws/worker`): tasks out, results in.
//!
//! The connection task owns the socket and is the only place a worker's
//! bytes are interpreted. A result goes through four gates before it can
//! reach a viewer: the decoder (length caps, frame symbol validity), the
//! scheduler's claim (was this task given to this worker, with this header?),
//! the [`Verifier`](crate::verifier::Verifier) (off the executor), and the
//! core's accept (is the range still wanted?). Malformed bytes close the
//! connection with a reason at once; cheating earns strikes, and enough
//! strikes cut the worker off and ban its address for a cooldown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use donut_shared::wire::{FromWorker, RESULT_HEADER_LEN, TaskResult};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::app::App;
use crate::fleet::Admission;
use crate::limits::{CloseReason, POLICY, UNSUPPORTED};
use crate::scheduler::Claim;
use crate::verifier::Trust;
use crate::ws;

/// Per-connection state.
struct Conn {
    app: Arc<App>,
    id: u64,
    admission: Admission,
    trust: Trust,
    strikes: u32,
    contributed: u64,
    /// Tasks sent to this worker.
    tasks_sent: u64,
    /// Results that needed no work (repeats, late copies).
    needless: u64,
}

/// Answers beyond the tasks given that a worker may send before it counts as
/// a flood (a hedged or expired task legitimately gets one late answer).
const NEEDLESS_ALLOWANCE: u64 = 16;

/// Runs a worker connection to its end.
pub async fn run(mut socket: WebSocket, app: Arc<App>, admission: Admission) {
    let id = admission.id;
    let (task_tx, mut task_rx) = mpsc::unbounded_channel();
    app.core.add_worker(id, task_tx);
    info!(worker = id, ip = %admission.ip, "worker connected");
    let mut conn = Conn {
        app: Arc::clone(&app),
        id,
        admission,
        trust: Trust::default(),
        strikes: 0,
        contributed: 0,
        tasks_sent: 0,
        needless: 0,
    };
    let mut telemetry = app.telemetry.clone();
    let mut shutdown = app.shutdown.clone();
    let send_limit = Duration::from_secs(app.cfg.send_timeout_secs.max(1));
    let idle = Duration::from_secs(app.cfg.idle_secs.max(1));
    let mut ping = tokio::time::interval(Duration::from_secs(app.cfg.ping_secs.max(1)));
    ping.reset();
    let mut last_heard = Instant::now();

    let close: Option<CloseReason> = loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                None | Some(Ok(Message::Close(_))) => break None,
                Some(Err(e)) => {
                    if ws::is_size_limit(&e) {
                        app.stats.protocol_errors.inc();
                        break Some(CloseReason::for_decode_error(
                            &donut_shared::wire::DecodeError::TooLarge {
                                len: donut_shared::wire::MAX_WORKER_MESSAGE_LEN + 1,
                                max: donut_shared::wire::MAX_WORKER_MESSAGE_LEN,
                            },
                        ));
                    }
                    debug!(worker = id, error = %e, "worker socket error");
                    break None;
                }
                Some(Ok(Message::Binary(bytes))) => {
                    last_heard = Instant::now();
                    if let Some(reason) = conn.on_binary(bytes).await {
                        break Some(reason);
                    }
                }
                Some(Ok(Message::Text(_))) => {
                    app.stats.protocol_errors.inc();
                    break Some(CloseReason::new(UNSUPPORTED, "binary messages only"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => last_heard = Instant::now(),
            },
            Some(task) = task_rx.recv() => {
                conn.tasks_sent += 1;
                let msg = Message::Binary(Bytes::copy_from_slice(&task.to_bytes()));
                if !ws::send_timed(&mut socket, msg, send_limit).await {
                    break None;
                }
            }
            Ok(()) = telemetry.changed() => {
                let mut t = telemetry.borrow_and_update().telemetry;
                t.contributed = conn.contributed;
                let msg = Message::Binary(Bytes::copy_from_slice(&t.to_bytes()));
                if !ws::send_timed(&mut socket, msg, send_limit).await {
                    break None;
                }
            }
            _ = ping.tick() => {
                let tick = ws::keep_alive(&mut socket, last_heard, idle, send_limit, &app.stats.idle_reaped);
                if let Err(close) = tick.await {
                    break close;
                }
            }
            _ = shutdown.changed() => break Some(crate::app::shutdown_reason()),
        }
    };
    app.core.remove_worker(id);
    if let Some(reason) = &close {
        info!(worker = id, code = reason.code, reason = %reason.reason, "closing worker");
        ws::close(&mut socket, reason).await;
    }
    info!(
        worker = id,
        contributed = conn.contributed,
        "worker disconnected"
    );
}

impl Conn {
    /// Handles one binary message; returns a reason to close, if any.
    async fn on_binary(&mut self, bytes: Bytes) -> Option<CloseReason> {
        let stats = &self.app.stats;
        let msg = match FromWorker::decode(&bytes) {
            Ok(m) => m,
            Err(e) => {
                stats.protocol_errors.inc();
                return Some(CloseReason::for_decode_error(&e));
            }
        };
        match msg {
            FromWorker::Hello(h) => {
                self.app.core.hello(self.id, h.slots);
                None
            }
            FromWorker::Result(r) => self.on_result(r, &bytes).await,
        }
    }

    async fn on_result(&mut self, r: TaskResult<'_>, bytes: &Bytes) -> Option<CloseReason> {
        let app = Arc::clone(&self.app);
        let stats = &app.stats;
        match app.core.claim(self.id, r.task_id, r.start, r.count) {
            Claim::Fresh => {}
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
                app.core.reject(self.id, r.task_id);
                return self.strike(format!(
                    "result header for task {} does not match the task",
                    r.task_id
                ));
            }
            Claim::Unsolicited => {
                return self.strike(format!("result for task {} never given", r.task_id));
            }
        }
        let frames = bytes.slice(RESULT_HEADER_LEN..);
        let verdict = app.verifier.verify(self.trust, r.start, frames).await;
        stats.frames_checked.add(u64::from(verdict.checked));
        if let Some(bad) = verdict.bad_frame {
            stats.batches_rejected.inc();
            app.core.reject(self.id, r.task_id);
            return self.strike(format!("frame {bad} failed verification"));
        }
        if verdict.checked > 0 {
            stats.batches_verified.inc();
            self.trust.clean_batches = self.trust.clean_batches.saturating_add(1);
        }
        if app.core.accept(self.id, r.task_id, r.start, r.frames) {
            self.contributed += u64::from(r.count);
        } else {
            stats.results_duplicate.inc();
        }
        None
    }

    /// Records a violation; returns the close reason once strikes run out.
    fn strike(&mut self, why: String) -> Option<CloseReason> {
        let app = &self.app;
        self.strikes += 1;
        self.trust = Trust::default();
        app.stats.strikes.inc();
        warn!(worker = self.id, ip = %self.admission.ip, strikes = self.strikes, "strike: {why}");
        if self.strikes < app.cfg.max_strikes {
            return None;
        }
        self.cut_off(why)
    }

    /// Cuts the worker off now and bans its address for the cooldown.
    fn cut_off(&mut self, why: String) -> Option<CloseReason> {
        let app = &self.app;
        app.stats.workers_banned.inc();
        app.fleet
            .ban(self.admission.ip, Duration::from_secs(app.cfg.ban_secs));
        warn!(worker = self.id, ip = %self.admission.ip, "worker cut off and address banned");
        Some(CloseReason::new(
            POLICY,
            format!("cut off ({} strikes): {why}", self.strikes),
        ))
    }
}
