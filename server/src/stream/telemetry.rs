//! The telemetry task: once a second it computes the fleet's figures and
//! publishes them on a `watch` channel, from which every connection sends
//! them on. The viewer message is encoded once here; worker connections add
//! their own contribution before encoding theirs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use donut_shared::wire::Telemetry;
use tokio::sync::watch;

use crate::conn::fleet::Fleet;
use crate::metrics::Stats;
use crate::p2p::hub::Hub;
use crate::stream::core::Core;

/// Interval between telemetry messages.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The latest telemetry, decoded and as a viewer message.
#[derive(Debug, Clone)]
pub struct TelemetryMsg {
    /// The figures.
    pub telemetry: Telemetry,
    /// The encoded message for viewers (`contributed` is zero).
    pub viewer_msg: Bytes,
    /// When the figures were computed.
    pub at: Instant,
}

impl TelemetryMsg {
    /// Wraps and encodes `telemetry`, computed now.
    pub fn new(telemetry: Telemetry) -> Self {
        Self {
            viewer_msg: Bytes::copy_from_slice(&telemetry.to_bytes()),
            telemetry,
            at: Instant::now(),
        }
    }

    /// The viewer message as of `now`: the head moved on by the whole
    /// frames played since the figures were computed (at `fps`; never past
    /// the frames buffered then, so a stalled head is not moved; unpaced,
    /// as computed). A viewer anchors its playback clock on the head, and a
    /// message waits up to `TELEMETRY_HOLD` (300 ms, 18 frames) for a
    /// batch to ride with: sent as computed, it set a page's clock up to
    /// that far behind the show (issue 25: a push then showed that much
    /// later on every other screen).
    pub fn viewer_msg_at(&self, now: Instant) -> Bytes {
        let t = self.telemetry;
        if t.fps == 0 {
            return self.viewer_msg.clone();
        }
        let played = now.saturating_duration_since(self.at).as_secs_f64() * f64::from(t.fps);
        let moved = (played as u64).min(u64::from(t.buffered_frames));
        if moved == 0 {
            return self.viewer_msg.clone();
        }
        let fresh = Telemetry {
            head: t.head.saturating_add(moved),
            buffered_frames: t.buffered_frames - moved as u32,
            ..t
        };
        Bytes::copy_from_slice(&fresh.to_bytes())
    }
}

/// What telemetry reads of the cluster this node is in (a cluster node;
/// handed over by the engine, so the stream never names the node type).
pub trait ClusterView: Send + Sync {
    /// Whether this node leads now.
    fn is_leader(&self) -> bool;
    /// The cluster's playback head moved on to `now` at `fps`, and the end
    /// of what the timeline stream committed (frame numbers); `None`
    /// before any entry.
    fn cluster_head(&self, now: Instant, fps: u16) -> Option<(u64, u64)>;
    /// The cluster's workers, viewers and frames a second, as last read.
    fn totals(&self) -> (u64, u64, f64);
}

/// Everything the telemetry task reads.
pub struct Sources {
    /// The stream.
    pub core: Arc<Core>,
    /// Connections.
    pub fleet: Arc<Fleet>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Playback rate.
    pub fps: u16,
    /// The cluster, if any: viewers and workers are then the cluster's,
    /// and a follower shows the leader's render rate.
    pub cluster: Option<Arc<dyn ClusterView>>,
    /// The relay tree (this node's viewers).
    pub hub: Arc<Hub>,
}

/// Computes the current telemetry; `fleet_fps` comes from the caller.
pub fn compute(src: &Sources, fleet_fps: u32) -> Telemetry {
    let pos = src.core.position();
    // A follower's core idles (its head is 0, or frozen where it stopped
    // leading): its pages anchor their clocks on the cluster's head, the
    // one the timeline stream carries, so every node's pages show the same
    // frame at the same moment.
    let (head, contiguous) = match &src.cluster {
        Some(node) if !node.is_leader() => node
            .cluster_head(Instant::now(), src.fps)
            .unwrap_or((pos.head, pos.contiguous)),
        _ => (pos.head, pos.contiguous),
    };
    let s = &src.stats;
    let (workers, viewers, fleet_fps) = match &src.cluster {
        None => (src.fleet.workers(), src.fleet.viewers(), fleet_fps),
        Some(node) => {
            let (workers, viewers, cluster_fps) = node.totals();
            // Only the leader's core accepts frames: its rate is the
            // cluster's (followers report 0, so nothing counts twice).
            let rate = if node.is_leader() {
                fleet_fps
            } else {
                cluster_fps as u32
            };
            (workers, viewers, rate)
        }
    };
    Telemetry {
        head,
        fps: src.fps,
        workers: u32::try_from(workers).unwrap_or(u32::MAX),
        viewers: u32::try_from(viewers).unwrap_or(u32::MAX),
        fleet_fps,
        buffered_frames: u32::try_from(contiguous.saturating_sub(head)).unwrap_or(u32::MAX),
        batches_verified: s.batches_verified.get(),
        frames_checked: s.frames_checked.get(),
        batches_rejected: s.batches_rejected.get(),
        workers_banned: u32::try_from(s.workers_banned.get()).unwrap_or(u32::MAX),
        contributed: 0,
        peers_linked: u32::try_from(src.hub.counts().linked).unwrap_or(u32::MAX),
        offload_permille: src.hub.offload(std::time::Instant::now()).confirmed,
        p2p_fallbacks: s.p2p_fallbacks.get(),
        digest_mismatches: u32::try_from(s.p2p_digest_mismatches.get()).unwrap_or(u32::MAX),
    }
}

/// Shortest window the fleet's frames/s is averaged over.
pub const FLEET_FPS_WINDOW: Duration = Duration::from_secs(8);
/// Longest window (for workers whose tasks come this rarely).
const FLEET_FPS_MAX_WINDOW: Duration = Duration::from_secs(60);
/// How often the accepted-frames counter is read, to time each arrival.
pub const FLEET_FPS_SAMPLE: Duration = Duration::from_millis(20);

/// The fleet's frames/s, from the frames accepted and when they arrived.
///
/// Results arrive as whole tasks (about 100 ms of work each: 45 frames for
/// a tab, 600 for a fast native worker), so counting the frames accepted in
/// a fixed window aliases with the task size: a steady 60 frames/s in
/// 45-frame tasks read 54, 63, 63 over 5 s, depending on how many tasks
/// fell inside. Here each arrival (the counter is read every
/// [`FLEET_FPS_SAMPLE`] to time them) is weighted by a Hann window over its
/// age: an arrival enters and leaves the average smoothly instead of
/// stepping it by a whole task, so a periodic stream of tasks reads its
/// rate to well under one frame a second once the window spans a few of
/// them. The window is [`FLEET_FPS_WINDOW`], or four mean gaps between
/// arrivals if that is longer: a Hann window of a whole number of periods
/// (two or more) sees a periodic stream exactly, so even a worker sending
/// 600 frames every 10 s reads 60. The price is lag: a change shows fully
/// after one window, and a fleet that stops reads zero after one window.
#[derive(Debug)]
struct FleetRate {
    /// Where counting began.
    since: Instant,
    /// The counter when last read.
    last: u64,
    /// (when, frames) of each arrival, oldest first, within the longest
    /// window.
    arrivals: VecDeque<(Instant, u64)>,
}

impl FleetRate {
    /// Most arrivals kept: one per sample over the longest window.
    const MAX_ARRIVALS: usize = 3_000;

    fn new(now: Instant, frames: u64) -> Self {
        Self {
            since: now,
            last: frames,
            arrivals: VecDeque::with_capacity(256),
        }
    }

    /// Reads the counter: records an arrival if it moved.
    fn observe(&mut self, now: Instant, frames: u64) {
        if frames == self.last {
            return;
        }
        self.arrivals
            .push_back((now, frames.saturating_sub(self.last)));
        self.last = frames;
        while self.arrivals.len() > Self::MAX_ARRIVALS
            || self
                .arrivals
                .front()
                .is_some_and(|&(t, _)| now.saturating_duration_since(t) > FLEET_FPS_MAX_WINDOW)
        {
            self.arrivals.pop_front();
        }
    }

    /// The averaging window: the minimum, or four mean gaps.
    fn window(&self) -> f64 {
        let min = FLEET_FPS_WINDOW.as_secs_f64();
        let (Some(&(first, _)), Some(&(last, _))) = (self.arrivals.front(), self.arrivals.back())
        else {
            return min;
        };
        let gaps = self.arrivals.len().saturating_sub(1).max(1) as f64;
        let mean_gap = last.saturating_duration_since(first).as_secs_f64() / gaps;
        (4.0 * mean_gap).clamp(min, FLEET_FPS_MAX_WINDOW.as_secs_f64())
    }

    /// Frames per second as of `now`.
    fn rate(&self, now: Instant) -> u32 {
        let window = self.window();
        let elapsed = now.saturating_duration_since(self.since).as_secs_f64();
        if elapsed < window {
            // Not a window of history yet: plain frames over time so far.
            if elapsed <= 0.0 {
                return 0;
            }
            let frames: u64 = self.arrivals.iter().map(|&(_, f)| f).sum();
            return (frames as f64 / elapsed).round() as u32;
        }
        let weighted: f64 = self
            .arrivals
            .iter()
            .map(|&(t, frames)| {
                let age = now.saturating_duration_since(t).as_secs_f64() / window;
                if age < 1.0 {
                    frames as f64 * (std::f64::consts::PI * age).sin().powi(2)
                } else {
                    0.0
                }
            })
            .sum();
        // The Hann window's integral is half its length.
        (weighted / (window / 2.0)).round() as u32
    }
}

/// Publishes telemetry every [`INTERVAL`] until `shutdown` turns true.
pub async fn run(
    src: Sources,
    tx: watch::Sender<TelemetryMsg>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut publish = tokio::time::interval(INTERVAL);
    let mut sample = tokio::time::interval(FLEET_FPS_SAMPLE);
    sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut rate = FleetRate::new(Instant::now(), src.stats.frames_accepted.get());
    loop {
        tokio::select! {
            _ = sample.tick() => {
                rate.observe(Instant::now(), src.stats.frames_accepted.get());
            }
            _ = publish.tick() => {
                let now = Instant::now();
                rate.observe(now, src.stats.frames_accepted.get());
                tx.send_replace(TelemetryMsg::new(compute(&src, rate.rate(now))));
            }
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_message_carries_the_head_as_of_its_sending() {
        let t = Telemetry {
            head: 1_000,
            fps: 60,
            buffered_frames: 30,
            ..Telemetry::default()
        };
        let msg = TelemetryMsg::new(t);
        let head = |b: &Bytes| {
            let Ok(donut_shared::wire::ToViewer::Telemetry(t)) =
                donut_shared::wire::ToViewer::decode(b)
            else {
                panic!("a telemetry message");
            };
            (t.head, t.buffered_frames)
        };
        assert_eq!(head(&msg.viewer_msg_at(msg.at)), (1_000, 30));
        // 300 ms later (the longest hold): 18 frames on.
        let later = msg.at + Duration::from_millis(300);
        assert_eq!(head(&msg.viewer_msg_at(later)), (1_018, 12));
        // Never past what was buffered (a stalled head stays).
        let much_later = msg.at + Duration::from_secs(5);
        assert_eq!(head(&msg.viewer_msg_at(much_later)), (1_030, 0));
        // Unpaced: as computed.
        let unpaced = TelemetryMsg::new(Telemetry { fps: 0, ..t });
        assert_eq!(head(&unpaced.viewer_msg_at(much_later)), (1_000, 30));
    }

    /// Simulates workers delivering `(lump, period_ms, phase_ms)` each,
    /// the counter read every [`FLEET_FPS_SAMPLE`] and the rate published
    /// every second, for `secs` seconds; returns what was published.
    fn published(workers: &[(u64, u64, u64)], secs: u64, stop_at_ms: u64) -> Vec<u32> {
        let t0 = Instant::now();
        let mut rate = FleetRate::new(t0, 0);
        let sample = FLEET_FPS_SAMPLE.as_millis() as u64;
        let mut out = Vec::new();
        for ms in (sample..=secs * 1000).step_by(sample as usize) {
            let frames: u64 = workers
                .iter()
                .map(|&(lump, period, phase)| {
                    let until = ms.min(stop_at_ms);
                    if until < phase {
                        0
                    } else {
                        lump * ((until - phase) / period + 1)
                    }
                })
                .sum();
            let now = t0 + Duration::from_millis(ms);
            rate.observe(now, frames);
            if ms % 1000 == 0 {
                out.push(rate.rate(now));
            }
        }
        out
    }

    #[test]
    fn a_steady_worker_reads_its_rate_whatever_its_task_size() {
        // 60 frames/s in tasks of 30 to 600 frames, at several phases
        // against the sampling and the publishing. Counting frames in a
        // fixed 5 s window read 54, 63, 63 for the 45-frame case.
        for lump in [30, 45, 50, 64, 90, 100, 120, 150, 300, 600] {
            let period = lump * 1000 / 60;
            for phase in [0, 7, 333, 500, 999] {
                let secs = 20 + 6 * period / 1000;
                let got = published(&[(lump, period, phase)], secs, u64::MAX);
                // Once the window has filled.
                let settled = &got[(8 + 5 * period / 1000) as usize..];
                assert!(
                    settled.iter().all(|&r| r == 60),
                    "{lump}-frame tasks at phase {phase} ms: {got:?}"
                );
            }
        }
    }

    #[test]
    fn interleaved_workers_read_close_to_their_sum() {
        // 30 frames/s in 45-frame tasks plus 30 frames/s in 20-frame
        // tasks; three tabs of 20 frames/s each; 60 + 27 frames/s.
        for (workers, want) in [
            (vec![(45, 1500, 100), (20, 667, 250)], 60),
            (vec![(45, 2250, 0), (45, 2250, 700), (45, 2250, 1500)], 60),
            (vec![(100, 1667, 50), (45, 1667, 900)], 87),
        ] {
            let got = published(&workers, 30, u64::MAX);
            let settled = &got[9..];
            assert!(
                settled.iter().all(|&r| r.abs_diff(want) <= 1),
                "{workers:?}: {got:?}"
            );
        }
    }

    #[test]
    fn the_rate_falls_to_zero_when_arrivals_stop() {
        let got = published(&[(45, 750, 0)], 30, 15_000);
        assert_eq!(got[13], 60, "{got:?}");
        assert!(got[17] < 50, "{got:?}");
        assert!(got[24..].iter().all(|&r| r == 0), "{got:?}");
        // Nothing ever arrived: zero, not a division by zero.
        assert_eq!(published(&[], 3, u64::MAX), vec![0, 0, 0]);
    }

    #[test]
    fn the_first_seconds_cover_what_there_is() {
        // Before a window of history, frames over time so far: rough (a
        // task more or less is a large share), but there at once.
        let got = published(&[(30, 500, 250)], 8, u64::MAX);
        assert!(got.iter().all(|&r| (50..=70).contains(&r)), "{got:?}");
    }
}
