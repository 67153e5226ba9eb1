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
//! lead is then the slowest of the last [`SAMPLES`] such times measured
//! within [`MAX_AGE`], in frames (rounded up), plus [`MARGIN_FRAMES`] for
//! the viewer's side (network, decode, the next display refresh), clamped
//! to the operator's floor and ceiling (`--input-lead-min-frames`,
//! `--input-lead-frames`). Until a change has been measured, and whenever
//! one's first frames are not broadcast before playback reaches them, the
//! lead is the ceiling.
//!
//! Samples age out by time as well as by count, so one slow change (a
//! cold start, a worker's GC pause) holds the lead high for at most
//! [`MAX_AGE`], not for the next [`SAMPLES`] changes however far apart
//! they come. The newest sample is kept whatever its age: after a quiet
//! spell the lead follows the last change measured rather than jumping
//! back to the ceiling.
//!
//! Sans-IO: the caller passes every instant; ageing happens at those
//! instants (each [`LeadEstimator::played`] tick and each new sample).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Changes measured: the lead follows the slowest of the last this many.
pub const SAMPLES: usize = 8;
/// Frames added to the measured time for the viewer's side: receiving,
/// decoding and the display refresh after it.
pub const MARGIN_FRAMES: u64 = 1;
/// How long a sample counts: one measured longer ago than this is dropped
/// (unless it is the newest).
pub const MAX_AGE: Duration = Duration::from_secs(5);

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
    /// Commit → first broadcast of the last changes measured, with the
    /// instant each was measured, newest last.
    samples: VecDeque<(Instant, Duration)>,
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
        let Some(slowest) = self.slowest() else {
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
        self.samples.iter().map(|&(_, d)| d).max()
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
        self.sample(now.saturating_duration_since(w.since), now);
    }

    /// Playback reached frame `head` at `now`: a change at or before it
    /// whose first frames were not broadcast yet was too slow for the lead,
    /// and counts as taking at least the time since its commit plus one
    /// frame (so the lead grows).
    /// Samples older than [`MAX_AGE`] at `now` (except the newest) are
    /// dropped first.
    pub fn played(&mut self, head: u64, now: Instant) {
        self.age(now);
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
        self.sample(now.saturating_duration_since(w.since) + frame, now);
    }

    /// Drops the samples measured more than [`MAX_AGE`] before `now`,
    /// keeping the newest.
    fn age(&mut self, now: Instant) {
        while self.samples.len() > 1
            && self
                .samples
                .front()
                .is_some_and(|&(at, _)| now.saturating_duration_since(at) > MAX_AGE)
        {
            self.samples.pop_front();
        }
    }

    fn sample(&mut self, d: Duration, now: Instant) {
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((now, d));
        self.age(now);
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
    fn a_slow_change_ages_out_with_time_not_only_by_count() {
        let t0 = Instant::now();
        let mut l = LeadEstimator::new(2, 8, 60);
        // A cold start: 60 ms = 3.6 frames → 4, plus the margin.
        l.committed(100, 1, t0);
        l.broadcast(100, 6, 1, t0 + ms(60));
        assert_eq!(l.lead(), 5);
        // Within MAX_AGE a fast change (1 ms) does not lower it.
        let slow_at = t0 + ms(60);
        l.committed(200, 2, t0 + ms(1_000));
        l.broadcast(200, 6, 2, t0 + ms(1_001));
        assert_eq!(l.lead(), 5);
        l.played(150, slow_at + MAX_AGE - ms(10));
        assert_eq!(l.lead(), 5);
        // Once the slow sample is older than MAX_AGE the next tick drops
        // it: one more change was enough, not SAMPLES more.
        l.played(151, slow_at + MAX_AGE + ms(10));
        assert_eq!(l.slowest(), Some(ms(1)));
        assert_eq!(l.lead(), 2);
        // The newest is kept however old: a quiet spell does not send the
        // lead back to the ceiling.
        l.played(152, slow_at + MAX_AGE * 10);
        assert_eq!(l.slowest(), Some(ms(1)));
        assert_eq!(l.lead(), 2);
        // A new sample also ages the old ones out.
        let mut l = LeadEstimator::new(2, 8, 60);
        l.committed(100, 1, t0);
        l.broadcast(100, 6, 1, t0 + ms(60));
        let t2 = t0 + ms(60) + MAX_AGE + ms(1);
        l.committed(300, 2, t2);
        l.broadcast(300, 6, 2, t2 + ms(1));
        assert_eq!(l.lead(), 2);
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
        /// Against a model that keeps every sample: after each playback
        /// tick the lead follows the slowest of the last SAMPLES samples
        /// measured within MAX_AGE, and the newest whatever its age.
        #[test]
        fn samples_age_out_by_count_and_by_time(
            events in prop::collection::vec((0u8..3, 0u64..2_500, 0u64..30), 0..80),
        ) {
            let t0 = Instant::now();
            let mut l = LeadEstimator::new(0, 1_000, 60);
            let frame_time = Duration::from_secs_f64(1.0 / 60.0);
            let mut model: Vec<(Instant, Duration)> = Vec::new();
            let mut waiting: Option<(u64, u32, Instant)> = None;
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
                        waiting = Some((frame, version, now));
                    }
                    1 => {
                        l.broadcast(frame, 1, version, now);
                        if let Some((_, v, since)) = waiting.take_if(|w| w.1 == version) {
                            prop_assert_eq!(v, version);
                            model.push((now, now - since));
                        }
                    }
                    _ => {
                        let head = (frame + df % 3).saturating_sub(1);
                        l.played(head, now);
                        if let Some((_, _, since)) = waiting.take_if(|w| head >= w.0) {
                            model.push((now, now - since + frame_time));
                        }
                        let recent = &model[model.len().saturating_sub(SAMPLES)..];
                        let expect = recent
                            .iter()
                            .enumerate()
                            .filter(|&(i, &(at, _))| {
                                i + 1 == recent.len() || now.duration_since(at) <= MAX_AGE
                            })
                            .map(|(_, &(_, d))| d)
                            .max();
                        prop_assert_eq!(l.slowest(), expect);
                    }
                }
            }
        }

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
