//! The input lead, measured: how many frames past the playback head a
//! scene change lands.
//!
//! A change committed at time `t` lands on frame `head + lead`, which
//! playback reaches `lead / fps` seconds later. Before then the fleet must
//! render the change's first frames, the server verify and broadcast them,
//! and viewers receive and decode them. A fixed lead sized for slow remote
//! workers (8 frames, 133 ms) is most of the input lag on a fast fleet, so
//! the core measures instead: for each change, the time from its commit to
//! the broadcast of a batch of its version holding its first frame. The
//! lead is then the slowest of the last [`SAMPLES`] such times, in frames
//! (rounded up), plus [`MARGIN_FRAMES`] for the viewer's side (network,
//! decode, the next display refresh), clamped to the operator's floor and
//! ceiling (`--input-lead-min-frames`, `--input-lead-frames`). Until a
//! change has been measured, and whenever one's first frames are not
//! broadcast before playback reaches them, the lead is the ceiling.
//!
//! Sans-IO: the caller passes every instant.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Changes measured: the lead follows the slowest of the last this many.
pub const SAMPLES: usize = 8;
/// Frames added to the measured time for the viewer's side: receiving,
/// decoding and the display refresh after it.
pub const MARGIN_FRAMES: u64 = 1;

/// A change whose first frames are not broadcast yet.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    frame: u64,
    version: u32,
    since: Instant,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct LeadEstimator {
    floor: u64,
    ceiling: u64,
    fps: f64,
    /// Commit → first broadcast of the last changes measured, newest last.
    samples: VecDeque<Duration>,
    waiting: Option<Waiting>,
}

impl LeadEstimator {
    /// An estimator between `floor` and `ceiling` frames (a floor above the
    /// ceiling is lowered to it) at `fps` frames a second (0: unpaced, the
    /// lead stays the ceiling).
    pub fn new(floor: u64, ceiling: u64, fps: u16) -> Self {
        Self {
            floor: floor.min(ceiling),
            ceiling,
            fps: f64::from(fps),
            samples: VecDeque::with_capacity(SAMPLES),
            waiting: None,
        }
    }

    /// The lead now, in frames: within `[floor, ceiling]`.
    pub fn lead(&self) -> u64 {
        let Some(slowest) = self.samples.iter().max() else {
            return self.ceiling;
        };
        if self.fps <= 0.0 {
            return self.ceiling;
        }
        // Saturating float-to-int cast: an absurd time clamps to the ceiling.
        let frames = (slowest.as_secs_f64() * self.fps).ceil() as u64;
        frames
            .saturating_add(MARGIN_FRAMES)
            .clamp(self.floor, self.ceiling)
    }

    /// The slowest commit → broadcast time among the last measured, if any.
    pub fn slowest(&self) -> Option<Duration> {
        self.samples.iter().max().copied()
    }

    /// A change of version `version` landing on `frame` was committed at
    /// `now`: its first broadcast is waited for (a change not measured yet
    /// is forgotten, superseded by this one).
    pub fn committed(&mut self, frame: u64, version: u32, now: Instant) {
        self.waiting = Some(Waiting {
            frame,
            version,
            since: now,
        });
    }

    /// A batch of version `version` covering frames `start .. start +
    /// count` was taken for broadcast at `now`. If it holds the first frame
    /// of the change waited for, the time since the commit is a sample.
    pub fn broadcast(&mut self, start: u64, count: u32, version: u32, now: Instant) {
        let Some(w) = self.waiting else {
            return;
        };
        let end = start.saturating_add(u64::from(count));
        if version != w.version || !(start..end).contains(&w.frame) {
            return;
        }
        self.waiting = None;
        self.sample(now.saturating_duration_since(w.since));
    }

    /// Playback reached frame `head` at `now`: a change at or before it
    /// whose first frames were not broadcast yet was too slow for the lead,
    /// and counts as taking at least the time since its commit plus one
    /// frame (so the lead grows).
    pub fn played(&mut self, head: u64, now: Instant) {
        let Some(w) = self.waiting else {
            return;
        };
        if head < w.frame {
            return;
        }
        self.waiting = None;
        let frame = if self.fps > 0.0 {
            Duration::from_secs_f64(1.0 / self.fps)
        } else {
            Duration::ZERO
        };
        self.sample(now.saturating_duration_since(w.since) + frame);
    }

    fn sample(&mut self, d: Duration) {
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(d);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_ceiling_until_measured_then_the_slowest_recent_change() {
        let t0 = Instant::now();
        let mut l = LeadEstimator::new(2, 8, 60);
        assert_eq!(l.lead(), 8);
        l.committed(100, 1, t0);
        // Another version, or a batch not holding the change frame: no sample.
        l.broadcast(100, 6, 0, t0 + ms(5));
        l.broadcast(90, 10, 1, t0 + ms(5));
        assert_eq!(l.lead(), 8);
        // 20 ms = 1.2 frames → 2, plus the margin.
        l.broadcast(98, 6, 1, t0 + ms(20));
        assert_eq!(l.slowest(), Some(ms(20)));
        assert_eq!(l.lead(), 3);
        // A fast change does not lower it while the slow one is recent.
        l.committed(200, 2, t0 + ms(100));
        l.broadcast(200, 6, 2, t0 + ms(101));
        assert_eq!(l.lead(), 3);
        // ... but it ages out after SAMPLES more.
        for k in 0..SAMPLES as u64 {
            let t = t0 + ms(200 + 100 * k);
            l.committed(300 + k * 10, 3 + k as u32, t);
            l.broadcast(300 + k * 10, 6, 3 + k as u32, t + ms(1));
        }
        assert_eq!(l.lead(), 2);
    }

    #[test]
    fn a_change_playback_reached_first_raises_the_lead_to_the_ceiling() {
        let t0 = Instant::now();
        let mut l = LeadEstimator::new(1, 8, 60);
        l.committed(100, 1, t0);
        // 1 ms: one frame, plus the margin.
        l.broadcast(100, 1, 1, t0 + ms(1));
        assert_eq!(l.lead(), 2);
        l.committed(102, 2, t0 + ms(50));
        l.played(101, t0 + ms(60));
        assert_eq!(l.lead(), 2);
        l.played(102, t0 + ms(400));
        assert_eq!(l.lead(), 8);
        // Measured once: the broadcast that comes later is not a sample.
        l.broadcast(102, 6, 2, t0 + ms(500));
        assert_eq!(
            l.slowest(),
            Some(ms(350) + Duration::from_secs_f64(1.0 / 60.0))
        );
    }

    #[test]
    fn unpaced_or_a_floor_above_the_ceiling() {
        let t0 = Instant::now();
        let mut l = LeadEstimator::new(4, 8, 0);
        l.committed(10, 1, t0);
        l.broadcast(10, 1, 1, t0);
        assert_eq!(l.lead(), 8);
        let l = LeadEstimator::new(9, 3, 60);
        assert_eq!(l.lead(), 3);
    }

    proptest! {
        /// Whatever happens, the lead stays within the floor and the
        /// ceiling, and covers the slowest recent change (plus the margin)
        /// when the ceiling allows.
        #[test]
        fn the_lead_is_bounded_and_covers_the_slowest_recent_change(
            floor in 0u64..10,
            ceiling in 0u64..20,
            events in prop::collection::vec((0u8..3, 0u64..500, 0u64..400), 0..60),
        ) {
            let t0 = Instant::now();
            let mut l = LeadEstimator::new(floor, ceiling, 60);
            let mut now = t0;
            let mut version = 0u32;
            let mut frame = 0u64;
            for (kind, dt, df) in events {
                now += ms(dt);
                match kind {
                    0 => {
                        version += 1;
                        frame += df;
                        l.committed(frame, version, now);
                    }
                    1 => l.broadcast(frame.saturating_sub(df % 4), 6, version, now),
                    _ => l.played(frame + df % 3, now),
                }
                let lead = l.lead();
                prop_assert!(lead <= ceiling);
                prop_assert!(lead >= floor.min(ceiling));
                if let Some(slow) = l.slowest() {
                    let need = (slow.as_secs_f64() * 60.0).ceil() as u64 + MARGIN_FRAMES;
                    prop_assert_eq!(lead, need.clamp(floor.min(ceiling), ceiling));
                }
            }
        }
    }
}
