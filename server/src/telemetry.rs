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

/// Publishes telemetry every [`INTERVAL`] until `shutdown` turns true.
pub async fn run(
    src: Sources,
    tx: watch::Sender<TelemetryMsg>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    let mut last = (Instant::now(), src.stats.frames_accepted.get());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = Instant::now();
        let frames = src.stats.frames_accepted.get();
        let dt = now.saturating_duration_since(last.0).as_secs_f64();
        let rate = if dt > 0.0 {
            (frames.saturating_sub(last.1) as f64 / dt).round() as u32
        } else {
            0
        };
        last = (now, frames);
        tx.send_replace(TelemetryMsg::new(compute(&src, rate)));
    }
}
