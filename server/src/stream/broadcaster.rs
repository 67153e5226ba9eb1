//! The broadcaster task: the stream's clock.
//!
//! It wakes on a short tick, or at once when a result makes new frames
//! contiguous, and calls [`Core::tick`](crate::stream::core::Core::tick), which
//! advances the playback head, takes the frames due for broadcast, expires
//! overdue tasks and dispatches work. It then encodes each due batch once
//! (on the blocking pool, outside the core's lock) and publishes it on the
//! [`Fanout`], shared by every viewer. Keeping one
//! clock for all of this means the head, the broadcast and the hedging
//! deadlines never disagree about "now".
//!
//! Each publish is logged at debug level with its wall-clock time
//! (`unix_us`), so a load generator on the same machine can tell how many
//! broadcasts behind the newest one each viewer was when a batch reached
//! it (`cargo bench -p donut-server --bench e2e -- fanout`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tracing::debug;

use crate::stream::core::Core;
use crate::stream::fanout::{Batch, Fanout};

/// How often the clock ticks without being woken.
pub const TICK: Duration = Duration::from_millis(5);

/// Runs until `shutdown` turns true, publishing `core`'s batches on
/// `fanout` (the one the core was built with, which it keeps told of the
/// head and of superseded frames).
///
/// In a cluster, every batch published is also sent on `commits`, for the
/// node to append to the cluster's timeline while it leads.
pub async fn run(
    core: Arc<Core>,
    fanout: Arc<Fanout>,
    commits: Option<mpsc::UnboundedSender<Batch>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = core.frames_ready.notified() => {}
            _ = shutdown.changed() => return,
        }
        for due in core.tick(Instant::now()) {
            // Encoding is CPU work: keep it off the executor threads so
            // sockets keep moving while a large batch is coded.
            let Ok(Some(batch)) = tokio::task::spawn_blocking(move || due.encode()).await else {
                // Cannot happen for frames validated on the way in; if it
                // did, viewers would see a gap rather than wrong frames.
                continue;
            };
            debug!(
                start = batch.start,
                count = batch.count,
                bytes = batch.msg.len(),
                unix_us = unix_us(),
                "published"
            );
            if let Some(commits) = &commits {
                let _ = commits.send(batch.clone());
            }
            fanout.publish(batch);
        }
    }
}

/// Wall-clock microseconds since the Unix epoch (0 if the clock is before
/// it): the time stamped on each publish.
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
