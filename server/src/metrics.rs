//! Counters and gauges, served as Prometheus text (`GET /metrics`) and JSON
//! (`GET /api/stats`).
//!
//! Hot-path counters are relaxed atomics owned by [`Stats`]; everything else
//! (connections, the stream's position, scheduler counters) is read when a
//! [`Snapshot`] is taken, so there is one place that knows every figure and
//! both endpoints print the same numbers.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Event counters updated by the connection tasks, broadcaster and verifier.
#[derive(Debug, Default)]
pub struct Stats {
    /// Frames accepted into the ring.
    pub frames_accepted: Counter,
    /// Results accepted into the ring.
    pub results_accepted: Counter,
    /// Results that arrived after their range was done (hedged copies, repeats).
    pub results_duplicate: Counter,
    /// Batches broadcast to viewers (each encoded once).
    pub broadcast_batches: Counter,
    /// Bytes of broadcast batches as encoded once.
    pub broadcast_bytes: Counter,
    /// Bytes written to viewer sockets (frames and telemetry, all viewers).
    pub viewer_bytes_sent: Counter,
    /// Times a viewer fell behind the broadcast and was skipped ahead to live.
    pub viewer_lag_events: Counter,
    /// Batches a lagging viewer skipped.
    pub viewer_batches_skipped: Counter,
    /// Viewers dropped because a send took too long.
    pub viewers_dropped_slow: Counter,
    /// Result batches that passed verification (at least one frame checked).
    pub batches_verified: Counter,
    /// Frames re-rendered natively to verify results.
    pub frames_checked: Counter,
    /// Result batches rejected by verification.
    pub batches_rejected: Counter,
    /// Strikes given (failed checks and protocol violations).
    pub strikes: Counter,
    /// Workers cut off after too many strikes.
    pub workers_banned: Counter,
    /// Connections closed for a malformed or wrong-role message.
    pub protocol_errors: Counter,
    /// Connections refused (caps, bans).
    pub connections_refused: Counter,
    /// Connections reaped for idleness.
    pub idle_reaped: Counter,
    /// Ranges accepted because workers of two addresses returned the same bytes (`quorum`).
    pub quorum_agreements: Counter,
    /// Ranges whose two votes differed, settled by a native re-render (`quorum`).
    pub quorum_disputes: Counter,
    /// First votes that waited too long for a second address and were settled by a native re-render (`quorum`).
    pub quorum_settled_alone: Counter,
    /// Workers closed for missing task after task (idle takers).
    pub workers_idle_closed: Counter,
    /// Frames of playback time lost to stalls after playback began (the head waited on a missing frame).
    pub playback_stall_frames: Counter,
}

/// Every figure at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Seconds since the server started.
    pub uptime_secs: f64,
    /// Worker connections.
    pub workers: u64,
    /// Viewer connections.
    pub viewers: u64,
    /// Playback rate (0 = unpaced).
    pub fps: u16,
    /// The playback head.
    pub head: u64,
    /// All frames below this are accepted.
    pub contiguous: u64,
    /// Frames broadcast so far end here.
    pub broadcast_cursor: u64,
    /// Accepted frames ahead of the head.
    pub buffered_frames: u64,
    /// Buffered frames in seconds at the playback rate.
    pub buffered_secs: f64,
    /// Frames accepted per second over the last telemetry interval.
    pub fleet_fps: u64,
    /// Ring capacity in frames.
    pub ring_frames: u64,
    /// Bytes the ring allocated.
    pub ring_bytes: u64,
    /// Ranges handed out and not yet accepted.
    pub outstanding_ranges: u64,
    /// Tasks sent, including hedged copies.
    pub tasks_dispatched: u64,
    /// Copies of overdue ranges sent to a second worker.
    pub tasks_hedged: u64,
    /// Ranges dispatched again after expiry, rejection or disconnect.
    pub tasks_reassigned: u64,
    /// Holders dropped far past their deadline.
    pub tasks_expired: u64,
    /// Holders dropped because their worker answered later tasks instead.
    pub tasks_presumed_lost: u64,
    /// See [`Stats::frames_accepted`].
    pub frames_accepted: u64,
    /// See [`Stats::results_accepted`].
    pub results_accepted: u64,
    /// See [`Stats::results_duplicate`].
    pub results_duplicate: u64,
    /// See [`Stats::broadcast_batches`].
    pub broadcast_batches: u64,
    /// See [`Stats::broadcast_bytes`].
    pub broadcast_bytes: u64,
    /// See [`Stats::viewer_bytes_sent`].
    pub viewer_bytes_sent: u64,
    /// See [`Stats::viewer_lag_events`].
    pub viewer_lag_events: u64,
    /// See [`Stats::viewer_batches_skipped`].
    pub viewer_batches_skipped: u64,
    /// See [`Stats::viewers_dropped_slow`].
    pub viewers_dropped_slow: u64,
    /// Verification policy in force.
    pub verify_policy: &'static str,
    /// See [`Stats::batches_verified`].
    pub batches_verified: u64,
    /// See [`Stats::frames_checked`].
    pub frames_checked: u64,
    /// See [`Stats::batches_rejected`].
    pub batches_rejected: u64,
    /// See [`Stats::strikes`].
    pub strikes: u64,
    /// See [`Stats::workers_banned`].
    pub workers_banned: u64,
    /// See [`Stats::quorum_agreements`].
    pub quorum_agreements: u64,
    /// See [`Stats::quorum_disputes`].
    pub quorum_disputes: u64,
    /// See [`Stats::quorum_settled_alone`].
    pub quorum_settled_alone: u64,
    /// See [`Stats::workers_idle_closed`].
    pub workers_idle_closed: u64,
    /// See [`Stats::playback_stall_frames`].
    pub playback_stall_frames: u64,
    /// See [`Stats::protocol_errors`].
    pub protocol_errors: u64,
    /// See [`Stats::connections_refused`].
    pub connections_refused: u64,
    /// See [`Stats::idle_reaped`].
    pub idle_reaped: u64,
}

impl Snapshot {
    /// Renders the Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
            let _ = writeln!(out, "# HELP donut_{name} {help}");
            let _ = writeln!(out, "# TYPE donut_{name} {kind}");
            let _ = writeln!(out, "donut_{name} {value}");
        };
        let g = "gauge";
        let c = "counter";
        metric(
            "uptime_seconds",
            g,
            "Seconds since start.",
            self.uptime_secs,
        );
        metric("workers", g, "Worker connections.", self.workers as f64);
        metric("viewers", g, "Viewer connections.", self.viewers as f64);
        metric(
            "playback_fps",
            g,
            "Playback rate (0 = unpaced).",
            f64::from(self.fps),
        );
        metric("head_frame", g, "Playback head.", self.head as f64);
        metric(
            "contiguous_frame",
            g,
            "Every frame below is accepted.",
            self.contiguous as f64,
        );
        metric(
            "buffered_frames",
            g,
            "Accepted frames ahead of the head.",
            self.buffered_frames as f64,
        );
        metric(
            "buffered_seconds",
            g,
            "Buffer depth in seconds.",
            self.buffered_secs,
        );
        metric(
            "render_rate_fps",
            g,
            "Frames accepted per second, last interval.",
            self.fleet_fps as f64,
        );
        metric(
            "ring_frames",
            g,
            "Ring capacity in frames.",
            self.ring_frames as f64,
        );
        metric(
            "ring_bytes",
            g,
            "Bytes allocated by the ring.",
            self.ring_bytes as f64,
        );
        metric(
            "outstanding_ranges",
            g,
            "Ranges handed out, not yet accepted.",
            self.outstanding_ranges as f64,
        );
        metric(
            "tasks_dispatched_total",
            c,
            "Tasks sent, hedged copies included.",
            self.tasks_dispatched as f64,
        );
        metric(
            "tasks_hedged_total",
            c,
            "Copies of overdue ranges sent to another worker.",
            self.tasks_hedged as f64,
        );
        metric(
            "tasks_reassigned_total",
            c,
            "Ranges dispatched again after expiry, rejection or disconnect.",
            self.tasks_reassigned as f64,
        );
        metric(
            "tasks_expired_total",
            c,
            "Holders dropped far past their deadline.",
            self.tasks_expired as f64,
        );
        metric(
            "tasks_presumed_lost_total",
            c,
            "Holders dropped because their worker answered later tasks instead.",
            self.tasks_presumed_lost as f64,
        );
        metric(
            "frames_accepted_total",
            c,
            "Frames accepted into the ring.",
            self.frames_accepted as f64,
        );
        metric(
            "results_accepted_total",
            c,
            "Results accepted into the ring.",
            self.results_accepted as f64,
        );
        metric(
            "results_duplicate_total",
            c,
            "Results for ranges already done.",
            self.results_duplicate as f64,
        );
        metric(
            "broadcast_batches_total",
            c,
            "Batches broadcast (encoded once each).",
            self.broadcast_batches as f64,
        );
        metric(
            "broadcast_bytes_total",
            c,
            "Bytes of broadcast batches as encoded once.",
            self.broadcast_bytes as f64,
        );
        metric(
            "viewer_bytes_sent_total",
            c,
            "Bytes written to all viewer sockets.",
            self.viewer_bytes_sent as f64,
        );
        metric(
            "viewer_lag_events_total",
            c,
            "Viewers skipped ahead to live after falling behind.",
            self.viewer_lag_events as f64,
        );
        metric(
            "viewer_batches_skipped_total",
            c,
            "Batches skipped by lagging viewers.",
            self.viewer_batches_skipped as f64,
        );
        metric(
            "viewers_dropped_slow_total",
            c,
            "Viewers dropped for a send that took too long.",
            self.viewers_dropped_slow as f64,
        );
        metric(
            "batches_verified_total",
            c,
            "Result batches that passed verification.",
            self.batches_verified as f64,
        );
        metric(
            "frames_checked_total",
            c,
            "Frames re-rendered to verify results.",
            self.frames_checked as f64,
        );
        metric(
            "batches_rejected_total",
            c,
            "Result batches rejected by verification.",
            self.batches_rejected as f64,
        );
        metric(
            "strikes_total",
            c,
            "Strikes given to workers.",
            self.strikes as f64,
        );
        metric(
            "workers_banned_total",
            c,
            "Workers cut off for cheating.",
            self.workers_banned as f64,
        );
        metric(
            "quorum_agreements_total",
            c,
            "Ranges accepted by a quorum of two addresses.",
            self.quorum_agreements as f64,
        );
        metric(
            "quorum_disputes_total",
            c,
            "Quorum votes that disagreed and were settled by re-rendering.",
            self.quorum_disputes as f64,
        );
        metric(
            "quorum_settled_alone_total",
            c,
            "Lone quorum votes settled by re-rendering.",
            self.quorum_settled_alone as f64,
        );
        metric(
            "workers_idle_closed_total",
            c,
            "Workers closed for taking tasks and never answering.",
            self.workers_idle_closed as f64,
        );
        metric(
            "playback_stall_frames_total",
            c,
            "Frames of playback time lost to stalls.",
            self.playback_stall_frames as f64,
        );
        metric(
            "protocol_errors_total",
            c,
            "Connections closed for a bad message.",
            self.protocol_errors as f64,
        );
        metric(
            "connections_refused_total",
            c,
            "Connections refused by caps or bans.",
            self.connections_refused as f64,
        );
        metric(
            "idle_reaped_total",
            c,
            "Connections reaped for idleness.",
            self.idle_reaped as f64,
        );
        let _ = writeln!(
            out,
            "# HELP donut_verify_policy_info Verification policy in force."
        );
        let _ = writeln!(out, "# TYPE donut_verify_policy_info gauge");
        let _ = writeln!(
            out,
            "donut_verify_policy_info{{policy=\"{}\"}} 1",
            self.verify_policy
        );
        out
    }
}
