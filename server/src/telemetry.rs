//! The telemetry task: once a second it computes the fleet's figures and
//! publishes them on a `watch` channel, from which every connection sends
//! them on. The viewer message is encoded once here; worker connections add
//! their own contribution before encoding theirs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use donut_shared::wire::Telemetry;
use tokio::sync::watch;

use crate::core::Core;
use crate::fleet::Fleet;
use crate::metrics::Stats;

/// Interval between telemetry messages.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The latest telemetry, decoded and as a viewer message.
#[derive(Debug, Clone)]
pub struct TelemetryMsg {
    /// The figures.
    pub telemetry: Telemetry,
    /// The encoded message for viewers (`contributed` is zero).
    pub viewer_msg: Bytes,
}

impl TelemetryMsg {
    /// Wraps and encodes `telemetry`.
    pub fn new(telemetry: Telemetry) -> Self {
        Self {
            viewer_msg: Bytes::copy_from_slice(&telemetry.to_bytes()),
            telemetry,
        }
    }
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
}

/// Computes the current telemetry; `fleet_fps` comes from the caller.
pub fn compute(src: &Sources, fleet_fps: u32) -> Telemetry {
    let pos = src.core.position();
    let s = &src.stats;
    Telemetry {
        head: pos.head,
        fps: src.fps,
        workers: u32::try_from(src.fleet.workers()).unwrap_or(u32::MAX),
        viewers: u32::try_from(src.fleet.viewers()).unwrap_or(u32::MAX),
        fleet_fps,
        buffered_frames: u32::try_from(pos.contiguous.saturating_sub(pos.head)).unwrap_or(u32::MAX),
        batches_verified: s.batches_verified.get(),
        frames_checked: s.frames_checked.get(),
        batches_rejected: s.batches_rejected.get(),
        workers_banned: u32::try_from(s.workers_banned.get()).unwrap_or(u32::MAX),
        contributed: 0,
    }
}

/// Seconds the fleet's frames/s is averaged over. Results arrive as whole
/// tasks (about 100 ms of frames each, several per second at 60 fps), so a
/// one-second sample swings by a task or two either way.
pub const FLEET_FPS_WINDOW: usize = 5;

/// Frames accepted over the last [`FLEET_FPS_WINDOW`] seconds, as a rate.
#[derive(Debug)]
struct FleetRate {
    /// (when, frames accepted so far), oldest first.
    samples: std::collections::VecDeque<(Instant, u64)>,
}

impl FleetRate {
    fn new(now: Instant, frames: u64) -> Self {
        let mut samples = std::collections::VecDeque::with_capacity(FLEET_FPS_WINDOW + 1);
        samples.push_back((now, frames));
        Self { samples }
    }

    /// Records a sample and returns frames per second since the oldest kept.
    fn update(&mut self, now: Instant, frames: u64) -> u32 {
        self.samples.push_back((now, frames));
        if self.samples.len() > FLEET_FPS_WINDOW + 1 {
            self.samples.pop_front();
        }
        let Some(&(t0, f0)) = self.samples.front() else {
            return 0;
        };
        let dt = now.saturating_duration_since(t0).as_secs_f64();
        if dt > 0.0 {
            (frames.saturating_sub(f0) as f64 / dt).round() as u32
        } else {
            0
        }
    }
}

/// Publishes telemetry every [`INTERVAL`] until `shutdown` turns true.
pub async fn run(
    src: Sources,
    tx: watch::Sender<TelemetryMsg>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    let mut rate = FleetRate::new(Instant::now(), src.stats.frames_accepted.get());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let fleet_fps = rate.update(Instant::now(), src.stats.frames_accepted.get());
        tx.send_replace(TelemetryMsg::new(compute(&src, fleet_fps)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_rate_averages_lumpy_arrivals_over_the_window() {
        let t0 = Instant::now();
        let mut rate = FleetRate::new(t0, 0);
        // 60 frames/s delivered as 90- and 30-frame seconds alternately.
        let mut frames = 0;
        let mut last = 0;
        for s in 1..=10u64 {
            frames += if s % 2 == 1 { 90 } else { 30 };
            last = rate.update(t0 + Duration::from_secs(s), frames);
        }
        // The last 5 s hold 30 + 90 + 30 + 90 + 30 frames.
        assert_eq!(last, 54);
        assert_eq!(rate.samples.len(), FLEET_FPS_WINDOW + 1);
        // Before the window fills, the rate covers what there is.
        let mut young = FleetRate::new(t0, 0);
        assert_eq!(young.update(t0 + Duration::from_secs(2), 120), 60);
    }
}
