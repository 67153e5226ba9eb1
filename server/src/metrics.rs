//! Counters and gauges, served as Prometheus text (`GET /metrics`) and JSON
//! (`GET /api/stats`).
//!
//! Hot-path counters are relaxed atomics owned by [`Stats`]; everything else
//! (connections, the stream's position, scheduler counters) is read when a
//! [`Snapshot`] is taken, so there is one place that knows every figure and
//! both endpoints print the same numbers.
//!
//! Every figure is declared once, in the table at the bottom of this file:
//! its field, its doc, and its Prometheus name, type and help. The
//! `figures!` macro turns the table into the [`Stats`] counters, the
//! [`Readings`] taken from the server's state, the [`Snapshot`] (serialised
//! field by field for `/api/stats`) and its exposition. Adding a counter is
//! one row (and the `inc()` where it happens); adding a read figure is one
//! row and the line of the server state's `snapshot()` that
//! reads it, which the compiler asks for.
//!
//! Why not the `prometheus-client` crate: it writes OpenMetrics, which names
//! a counter's `# TYPE` and `# HELP` lines without the `_total` its samples
//! carry, turns the policy gauge into an `info` type and ends with `# EOF`,
//! so the exposition would change under every scraper and dashboard; and it
//! would not give the JSON of `/api/stats`, which would still need its own
//! declaration of every figure. A table keeps both outputs as they were.

use std::fmt::{Display, Write};
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

/// Writes one metric's `# HELP`, `# TYPE` and sample lines, the name
/// prefixed with `donut_` and `labels` (`{k="v"}` or empty) after it.
fn expose(out: &mut String, name: &str, kind: &str, help: &str, labels: &str, value: &dyn Display) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP donut_{name} {help}");
    let _ = writeln!(out, "# TYPE donut_{name} {kind}");
    let _ = writeln!(out, "donut_{name}{labels} {value}");
}

/// Generates [`Stats`], [`Readings`], [`Snapshot`] and the exposition from
/// one table of figures, in three sections whose order is the order of the
/// JSON fields and of the exposition:
///
/// - `read`: `field: type` read from the server's state when a snapshot is
///   taken, optionally `=> kind "name" "help"` to expose it (`kind` is
///   `gauge` or `counter`; a row without it is JSON only);
/// - `counted`: `field: "help"`, a hot-path [`Counter`] in [`Stats`],
///   exposed as the counter `donut_<field>_total`;
/// - `info`: `field: "name" { label } "help"`, a `&'static str` read from
///   state and exposed as the gauge `donut_<name>{label="value"} 1`.
macro_rules! figures {
    (
        read {
            $( $(#[doc = $rdoc:literal])* $rfield:ident: $rty:ty
               $(=> $rkind:ident $rname:literal $rhelp:literal)?; )*
        }
        counted {
            $( $(#[doc = $cdoc:literal])* $cfield:ident: $chelp:literal; )*
        }
        info {
            $( $(#[doc = $idoc:literal])* $ifield:ident: $iname:literal { $ilabel:ident }
               $ihelp:literal; )*
        }
    ) => {
        /// Event counters updated by the connection tasks, broadcaster and verifier.
        #[derive(Debug, Default)]
        pub struct Stats {
            $( $(#[doc = $cdoc])* pub $cfield: Counter, )*
        }

        /// The figures read from the server's state (not counted here) when
        /// a snapshot is taken.
        #[derive(Debug, Clone)]
        pub struct Readings {
            $( $(#[doc = $rdoc])* pub $rfield: $rty, )*
            $( $(#[doc = $idoc])* pub $ifield: &'static str, )*
        }

        /// Every figure at one moment.
        #[derive(Debug, Clone, Serialize)]
        pub struct Snapshot {
            $( $(#[doc = $rdoc])* pub $rfield: $rty, )*
            $(
                #[doc = concat!("See [`Stats::", stringify!($cfield), "`].")]
                pub $cfield: u64,
            )*
            $( $(#[doc = $idoc])* pub $ifield: &'static str, )*
        }

        impl Snapshot {
            /// The figures `read` now with the counters' current values.
            pub fn new(read: Readings, stats: &Stats) -> Self {
                Self {
                    $( $rfield: read.$rfield, )*
                    $( $cfield: stats.$cfield.get(), )*
                    $( $ifield: read.$ifield, )*
                }
            }

            /// Renders the Prometheus text exposition format (version 0.0.4).
            pub fn prometheus(&self) -> String {
                let mut out = String::with_capacity(4096);
                $($(
                    expose(&mut out, $rname, stringify!($rkind), $rhelp, "", &self.$rfield);
                )?)*
                $(
                    expose(
                        &mut out,
                        concat!(stringify!($cfield), "_total"),
                        "counter",
                        $chelp,
                        "",
                        &self.$cfield,
                    );
                )*
                $(
                    let labels = format!(concat!("{{", stringify!($ilabel), "=\"{}\"}}"), self.$ifield);
                    expose(&mut out, $iname, "gauge", $ihelp, &labels, &1);
                )*
                out
            }
        }
    };
}

figures! {
    read {
        /// Seconds since the server started.
        uptime_secs: f64 => gauge "uptime_seconds" "Seconds since start.";
        /// Worker connections.
        workers: u64 => gauge "workers" "Worker connections.";
        /// Viewer connections.
        viewers: u64 => gauge "viewers" "Viewer connections.";
        /// Playback rate (0 = unpaced).
        fps: u16 => gauge "playback_fps" "Playback rate (0 = unpaced).";
        /// The playback head.
        head: u64 => gauge "head_frame" "Playback head.";
        /// All frames below this are accepted.
        contiguous: u64 => gauge "contiguous_frame" "Every frame below is accepted.";
        /// Frames broadcast so far end here.
        broadcast_cursor: u64;
        /// Accepted frames ahead of the head.
        buffered_frames: u64 => gauge "buffered_frames" "Accepted frames ahead of the head.";
        /// Buffered frames in seconds at the playback rate.
        buffered_secs: f64 => gauge "buffered_seconds" "Buffer depth in seconds.";
        /// Frames past the head a scene change lands on now (measured; see
        /// `timeline::lead`).
        input_lead_frames: u64 =>
            gauge "input_lead_frames" "Frames past the head a scene change lands on.";
        /// Milliseconds from a scene change's commit to the broadcast of its
        /// first frame: the slowest of the last 8 changes (0 before any).
        change_broadcast_ms: f64 =>
            gauge "change_broadcast_ms" "Slowest recent change, commit to first broadcast, ms.";
        /// 1 while the timeline is hot (viewers steering: short windows), else 0.
        timeline_hot: u64 => gauge "timeline_hot" "1 while viewers steer (short windows).";
        /// Frames accepted per second over the last telemetry interval.
        fleet_fps: u64 => gauge "render_rate_fps" "Frames accepted per second, last interval.";
        /// Ring capacity in frames.
        ring_frames: u64 => gauge "ring_frames" "Ring capacity in frames.";
        /// Bytes the ring allocated.
        ring_bytes: u64 => gauge "ring_bytes" "Bytes allocated by the ring.";
        /// Ranges handed out and not yet accepted.
        outstanding_ranges: u64 =>
            gauge "outstanding_ranges" "Ranges handed out, not yet accepted.";
        /// Tasks sent, including hedged copies.
        tasks_dispatched: u64 =>
            counter "tasks_dispatched_total" "Tasks sent, hedged copies included.";
        /// Copies of overdue ranges sent to a second worker.
        tasks_hedged: u64 =>
            counter "tasks_hedged_total" "Copies of overdue ranges sent to another worker.";
        /// Ranges dispatched again after expiry, rejection or disconnect.
        tasks_reassigned: u64 => counter "tasks_reassigned_total"
            "Ranges dispatched again after expiry, rejection or disconnect.";
        /// Holders dropped far past their deadline.
        tasks_expired: u64 =>
            counter "tasks_expired_total" "Holders dropped far past their deadline.";
        /// Holders dropped because their worker answered later tasks instead.
        tasks_presumed_lost: u64 => counter "tasks_presumed_lost_total"
            "Holders dropped because their worker answered later tasks instead.";
        /// This node's cluster role: 0 alone (no `--cluster`), 1 follower, 2 leader.
        cluster_role: u64 =>
            gauge "cluster_role" "Cluster role: 0 single node, 1 follower, 2 leader.";
        /// The leader's term (the fencing epoch) while this node leads, else 0.
        cluster_term: u64 => gauge "cluster_term" "Leader term while this node leads, else 0.";
        /// Live nodes of the cluster (1 without `--cluster`).
        cluster_nodes: u64 => gauge "cluster_nodes" "Live nodes in the cluster.";
        /// Worker connections over the cluster's nodes (this node's alone without `--cluster`).
        cluster_workers: u64 =>
            gauge "cluster_workers" "Worker connections over all nodes.";
        /// Viewer connections over the cluster's nodes.
        cluster_viewers: u64 =>
            gauge "cluster_viewers" "Viewer connections over all nodes.";
        /// Viewers in the relay tree (sent `Peering { on: true }`).
        p2p_peering: u64 => gauge "p2p_peering" "Viewers in the relay tree.";
        /// Viewers fed by a peer over an open data channel.
        p2p_linked: u64 => gauge "p2p_linked" "Viewers fed by a peer.";
        /// Viewers relaying to at least one linked child.
        p2p_relays: u64 => gauge "p2p_relays" "Viewers relaying to at least one linked peer.";
        /// The relay tree's deepest node (1: server-fed only; 0: empty).
        p2p_depth: u64 => gauge "p2p_depth" "Depth of the relay tree.";
        /// Of the batch bytes viewers needed over the last minute, the share
        /// peers delivered as the viewers proved (`Proof`), in thousandths
        /// (see [`crate::p2p::OffloadWindow`]): what the server measurably saved.
        p2p_offload_permille: u64 => gauge "p2p_offload_permille"
            "Share of batch bytes peers delivered, proven by the viewers, last minute, per mille.";
        /// The share announced by digest to viewers that said they were linked
        /// (proven or not), last minute, in thousandths: claims.
        p2p_claimed_permille: u64 => gauge "p2p_claimed_permille"
            "Share of batch bytes announced by digest (claimed links), last minute, per mille.";
        /// Viewers barred from relaying now (accused by enough witnesses).
        p2p_barred: u64 => gauge "p2p_barred" "Viewers barred from relaying now.";
        /// Viewers whose address is a suspect reporter now (server-fed only).
        p2p_suspects: u64 => gauge "p2p_suspects" "Viewers from suspect reporting addresses.";
    }
    counted {
        /// Frames accepted into the ring.
        frames_accepted: "Frames accepted into the ring.";
        /// Results accepted into the ring.
        results_accepted: "Results accepted into the ring.";
        /// Results that arrived after their range was done (hedged copies, repeats).
        results_duplicate: "Results for ranges already done.";
        /// Batches broadcast to viewers (each encoded once).
        broadcast_batches: "Batches broadcast (encoded once each).";
        /// Bytes of broadcast batches as encoded once.
        broadcast_bytes: "Bytes of broadcast batches as encoded once.";
        /// Bytes written to viewer sockets (frames and telemetry, all viewers).
        viewer_bytes_sent: "Bytes written to all viewer sockets.";
        /// Bytes of `Frames` batches written to viewers (catch-ups and fetches included).
        viewer_batch_bytes_direct: "Bytes of frame batches written to viewers.";
        /// Bytes of batches a peer-fed viewer got as a digest instead (the batch's length).
        p2p_batch_bytes_offloaded: "Bytes of batches announced by digest, delivered by peers.";
        /// Batches fetched by viewers whose peer was late (served).
        p2p_fallbacks: "Batches served to viewers whose peer was late.";
        /// Bytes of the batches served as fallbacks.
        p2p_fallback_bytes: "Bytes of batches served to viewers whose peer was late.";
        /// Fetches for a batch the server no longer holds (ignored).
        p2p_fetches_missed: "Fetches for batches no longer held.";
        /// Bytes of batches a peer-fed viewer proved it holds (`Proof`).
        p2p_bytes_confirmed: "Bytes of batches viewers proved peers delivered.";
        /// Proofs that did not match the batch (or were not owed, or its batch
        /// was no longer held to check).
        p2p_proofs_refused: "Proofs not counted (wrong, not owed, or unverifiable).";
        /// Fetches for a batch not owed to the viewer (not announced to it by
        /// digest, or already sent): refused, nothing sent.
        p2p_fetches_refused: "Fetches for batches not owed to the viewer (refused).";
        /// Reports of bytes from a peer failing their digest.
        p2p_digest_mismatches: "Reports of peer bytes failing their digest.";
        /// Relays barred (reports from enough distinct addresses).
        p2p_bars: "Relays barred on reports from enough witnesses.";
        /// Reporting addresses made suspects (too many reports).
        p2p_suspicions: "Reporting addresses made suspects.";
        /// Reports not counted (stale, or from a suspect).
        p2p_reports_discounted: "Reports not counted as evidence.";
        /// Signals forwarded between a viewer and its parent or child.
        p2p_signals_forwarded: "Signals forwarded between relay peers.";
        /// Signals dropped (not between a pair, or the peer's queue full).
        p2p_signals_dropped: "Signals dropped (not between relay peers).";
        /// Signals dropped for the addressee's sake (over the pair's rate, or
        /// its socket backed up): included in `p2p_signals_dropped`.
        p2p_signals_throttled: "Signals dropped over the pair's rate or the addressee's backlog.";
        /// ICE candidates dropped by `--p2p-candidates` (trickled or in SDP).
        p2p_candidates_filtered: "ICE candidates dropped by the candidate filter.";
        /// Times a viewer fell behind the broadcast and was skipped ahead to live.
        viewer_lag_events: "Viewers skipped ahead to live after falling behind.";
        /// Batches a lagging viewer skipped.
        viewer_batches_skipped: "Batches skipped by lagging viewers.";
        /// Viewers dropped because a send took too long.
        viewers_dropped_slow: "Viewers dropped for a send that took too long.";
        /// Result batches that passed verification (at least one frame checked).
        batches_verified: "Result batches that passed verification.";
        /// Frames re-rendered natively to verify results.
        frames_checked: "Frames re-rendered to verify results.";
        /// Result batches rejected by verification.
        batches_rejected: "Result batches rejected by verification.";
        /// Strikes given (failed checks and protocol violations).
        strikes: "Strikes given to workers.";
        /// Bans imposed on workers' addresses (too many strikes, or a flood),
        /// once per ban whoever judged (`trust::sanction`); none with bans off.
        workers_banned: "Workers cut off for cheating (bans imposed on their addresses).";
        /// Ranges accepted because workers of two addresses returned the same bytes (`quorum`).
        quorum_agreements: "Ranges accepted by a quorum of two addresses.";
        /// Ranges whose two votes differed, settled by a native re-render (`quorum`).
        quorum_disputes: "Quorum votes that disagreed and were settled by re-rendering.";
        /// First votes that waited too long for a second address and were settled by a native re-render (`quorum`).
        quorum_settled_alone: "Lone quorum votes settled by re-rendering.";
        /// Workers closed for missing task after task (idle takers).
        workers_idle_closed: "Workers closed for taking tasks and never answering.";
        /// Frames of playback time lost to stalls after playback began (the head waited on a missing frame).
        playback_stall_frames: "Frames of playback time lost to stalls.";
        /// Viewer inputs (pushes on the scene) accepted and queued.
        inputs_accepted: "Viewer inputs accepted.";
        /// Viewer inputs refused (malformed, out of range, over the rate limit); each closes its viewer.
        inputs_refused: "Viewer inputs refused (the viewer is closed).";
        /// Scene changes committed to the timeline.
        scene_changes: "Scene changes committed.";
        /// Frames missing from the cluster's timeline stream when a node read it (Redis lost entries).
        cluster_frames_lost: "Frames missing from the cluster timeline stream.";
        /// Timeline appends Redis refused because this node's term no longer held the lease (fencing).
        cluster_appends_fenced: "Cluster timeline appends refused by fencing.";
        /// Viewer pushes this node stored in the cluster's input log (`{p}inputs`), for whichever node leads.
        cluster_inputs_forwarded: "Viewer inputs stored in the cluster's input log.";
        /// Viewer pushes this node refused (any reason; the viewer was sent `InputRefused`).
        cluster_inputs_lost: "Viewer inputs refused, the viewer told why.";
        /// Of those, pushes Redis did not take within the carry time (3 s).
        cluster_inputs_refused_unreachable: "Viewer inputs refused: Redis did not take them in time.";
        /// Of those, pushes stored but lost from the input log (Redis lost its data, a failover) before any leader folded them.
        cluster_inputs_refused_lost: "Viewer inputs refused: lost from the input log before any leader folded them.";
        /// Pushes this node, leading, took from the input log into its timeline.
        cluster_inputs_taken: "Viewer inputs the leader took from the input log.";
        /// Of those, pushes stored before its term began (carried across a change of leader or a time without one).
        cluster_inputs_carried: "Viewer inputs carried over to a new leader.";
        /// Frames handed out at or after a change's frame, superseded and rendered again.
        frames_superseded: "Frames superseded by scene changes.";
        /// Connections closed for a malformed or wrong-role message.
        protocol_errors: "Connections closed for a bad message.";
        /// Connections refused (caps, bans).
        connections_refused: "Connections refused by caps or bans.";
        /// Connections reaped for idleness.
        idle_reaped: "Connections reaped for idleness.";
    }
    info {
        /// Verification policy in force.
        verify_policy: "verify_policy_info" { policy } "Verification policy in force.";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot whose figures all differ, with one non-integer reading.
    fn sample() -> Snapshot {
        let stats = Stats::default();
        stats.frames_accepted.add(7);
        stats.viewer_lag_events.inc();
        stats.idle_reaped.add(3);
        let read = Readings {
            uptime_secs: 1.5,
            workers: 2,
            viewers: 3,
            fps: 60,
            head: 100,
            contiguous: 160,
            broadcast_cursor: 130,
            buffered_frames: 60,
            buffered_secs: 1.0,
            input_lead_frames: 3,
            change_broadcast_ms: 12.5,
            timeline_hot: 1,
            fleet_fps: 240,
            ring_frames: 600,
            ring_bytes: 528_000,
            outstanding_ranges: 4,
            tasks_dispatched: 11,
            tasks_hedged: 1,
            tasks_reassigned: 2,
            tasks_expired: 0,
            tasks_presumed_lost: 5,
            cluster_role: 2,
            cluster_term: 7,
            cluster_nodes: 3,
            cluster_workers: 6,
            cluster_viewers: 9,
            p2p_peering: 0,
            p2p_linked: 0,
            p2p_relays: 0,
            p2p_depth: 0,
            p2p_offload_permille: 0,
            p2p_claimed_permille: 0,
            p2p_barred: 0,
            p2p_suspects: 0,
            verify_policy: "quorum",
        };
        Snapshot::new(read, &stats)
    }

    /// The exposition's names, types and labels as scrapers and the docs
    /// know them (the list the hand-written exposition printed).
    #[test]
    fn exposition_keeps_names_types_and_labels() {
        let text = sample().prometheus();
        let types: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        let expected = [
            "donut_uptime_seconds gauge",
            "donut_workers gauge",
            "donut_viewers gauge",
            "donut_playback_fps gauge",
            "donut_head_frame gauge",
            "donut_contiguous_frame gauge",
            "donut_buffered_frames gauge",
            "donut_buffered_seconds gauge",
            "donut_input_lead_frames gauge",
            "donut_change_broadcast_ms gauge",
            "donut_timeline_hot gauge",
            "donut_render_rate_fps gauge",
            "donut_ring_frames gauge",
            "donut_ring_bytes gauge",
            "donut_outstanding_ranges gauge",
            "donut_tasks_dispatched_total counter",
            "donut_tasks_hedged_total counter",
            "donut_tasks_reassigned_total counter",
            "donut_tasks_expired_total counter",
            "donut_tasks_presumed_lost_total counter",
            "donut_cluster_role gauge",
            "donut_cluster_term gauge",
            "donut_cluster_nodes gauge",
            "donut_cluster_workers gauge",
            "donut_cluster_viewers gauge",
            "donut_p2p_peering gauge",
            "donut_p2p_linked gauge",
            "donut_p2p_relays gauge",
            "donut_p2p_depth gauge",
            "donut_p2p_offload_permille gauge",
            "donut_p2p_claimed_permille gauge",
            "donut_p2p_barred gauge",
            "donut_p2p_suspects gauge",
            "donut_frames_accepted_total counter",
            "donut_results_accepted_total counter",
            "donut_results_duplicate_total counter",
            "donut_broadcast_batches_total counter",
            "donut_broadcast_bytes_total counter",
            "donut_viewer_bytes_sent_total counter",
            "donut_viewer_batch_bytes_direct_total counter",
            "donut_p2p_batch_bytes_offloaded_total counter",
            "donut_p2p_fallbacks_total counter",
            "donut_p2p_fallback_bytes_total counter",
            "donut_p2p_fetches_missed_total counter",
            "donut_p2p_bytes_confirmed_total counter",
            "donut_p2p_proofs_refused_total counter",
            "donut_p2p_fetches_refused_total counter",
            "donut_p2p_digest_mismatches_total counter",
            "donut_p2p_bars_total counter",
            "donut_p2p_suspicions_total counter",
            "donut_p2p_reports_discounted_total counter",
            "donut_p2p_signals_forwarded_total counter",
            "donut_p2p_signals_dropped_total counter",
            "donut_p2p_signals_throttled_total counter",
            "donut_p2p_candidates_filtered_total counter",
            "donut_viewer_lag_events_total counter",
            "donut_viewer_batches_skipped_total counter",
            "donut_viewers_dropped_slow_total counter",
            "donut_batches_verified_total counter",
            "donut_frames_checked_total counter",
            "donut_batches_rejected_total counter",
            "donut_strikes_total counter",
            "donut_workers_banned_total counter",
            "donut_quorum_agreements_total counter",
            "donut_quorum_disputes_total counter",
            "donut_quorum_settled_alone_total counter",
            "donut_workers_idle_closed_total counter",
            "donut_playback_stall_frames_total counter",
            "donut_inputs_accepted_total counter",
            "donut_inputs_refused_total counter",
            "donut_scene_changes_total counter",
            "donut_cluster_frames_lost_total counter",
            "donut_cluster_appends_fenced_total counter",
            "donut_cluster_inputs_forwarded_total counter",
            "donut_cluster_inputs_lost_total counter",
            "donut_cluster_inputs_refused_unreachable_total counter",
            "donut_cluster_inputs_refused_lost_total counter",
            "donut_cluster_inputs_taken_total counter",
            "donut_cluster_inputs_carried_total counter",
            "donut_frames_superseded_total counter",
            "donut_protocol_errors_total counter",
            "donut_connections_refused_total counter",
            "donut_idle_reaped_total counter",
            "donut_verify_policy_info gauge",
        ];
        assert_eq!(types, expected);
        // Each metric is HELP, TYPE, then its one sample.
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3 * expected.len());
        for (chunk, t) in lines.chunks(3).zip(expected) {
            let name = t.split(' ').next().unwrap_or_default();
            assert!(
                chunk[0].starts_with(&format!("# HELP {name} ")),
                "{chunk:?}"
            );
            assert!(chunk[2].starts_with(name), "{chunk:?}");
        }
        for sample in [
            "donut_uptime_seconds 1.5",
            "donut_playback_fps 60",
            "donut_ring_bytes 528000",
            "donut_tasks_presumed_lost_total 5",
            "donut_frames_accepted_total 7",
            "donut_viewer_lag_events_total 1",
            "donut_idle_reaped_total 3",
            "donut_strikes_total 0",
            "donut_verify_policy_info{policy=\"quorum\"} 1",
        ] {
            assert!(lines.contains(&sample), "no line {sample} in\n{text}");
        }
        assert!(!text.contains("broadcast_cursor"), "JSON only");
    }

    /// `/api/stats` keeps its field names (the viewer panel and the tests
    /// read them).
    #[test]
    fn json_keeps_field_names() {
        let json = serde_json::to_value(sample()).expect("serialises");
        let obj = json.as_object().expect("an object");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        let mut expected = [
            "uptime_secs",
            "workers",
            "viewers",
            "fps",
            "head",
            "contiguous",
            "broadcast_cursor",
            "buffered_frames",
            "buffered_secs",
            "fleet_fps",
            "ring_frames",
            "ring_bytes",
            "outstanding_ranges",
            "tasks_dispatched",
            "tasks_hedged",
            "tasks_reassigned",
            "tasks_expired",
            "tasks_presumed_lost",
            "cluster_role",
            "cluster_term",
            "cluster_nodes",
            "cluster_workers",
            "cluster_viewers",
            "p2p_peering",
            "p2p_linked",
            "p2p_relays",
            "p2p_depth",
            "p2p_offload_permille",
            "p2p_claimed_permille",
            "p2p_barred",
            "p2p_suspects",
            "frames_accepted",
            "results_accepted",
            "results_duplicate",
            "broadcast_batches",
            "broadcast_bytes",
            "viewer_bytes_sent",
            "viewer_batch_bytes_direct",
            "p2p_batch_bytes_offloaded",
            "p2p_fallbacks",
            "p2p_fallback_bytes",
            "p2p_fetches_missed",
            "p2p_bytes_confirmed",
            "p2p_proofs_refused",
            "p2p_fetches_refused",
            "p2p_digest_mismatches",
            "p2p_bars",
            "p2p_suspicions",
            "p2p_reports_discounted",
            "p2p_signals_forwarded",
            "p2p_signals_dropped",
            "p2p_signals_throttled",
            "p2p_candidates_filtered",
            "viewer_lag_events",
            "viewer_batches_skipped",
            "viewers_dropped_slow",
            "batches_verified",
            "frames_checked",
            "batches_rejected",
            "strikes",
            "workers_banned",
            "quorum_agreements",
            "quorum_disputes",
            "quorum_settled_alone",
            "workers_idle_closed",
            "playback_stall_frames",
            "inputs_accepted",
            "inputs_refused",
            "scene_changes",
            "cluster_frames_lost",
            "cluster_appends_fenced",
            "cluster_inputs_forwarded",
            "cluster_inputs_lost",
            "cluster_inputs_refused_unreachable",
            "cluster_inputs_refused_lost",
            "cluster_inputs_taken",
            "cluster_inputs_carried",
            "frames_superseded",
            "protocol_errors",
            "connections_refused",
            "idle_reaped",
            "input_lead_frames",
            "change_broadcast_ms",
            "timeline_hot",
            "verify_policy",
        ];
        keys.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(obj["frames_accepted"], 7);
        assert_eq!(obj["buffered_secs"], 1.0);
        assert_eq!(obj["verify_policy"], "quorum");
    }
}
