//! Time for the player: where playback should be now, and how fast it went.
//!
//! The server owns the show's clock: every second its telemetry says which
//! frame its playback head is on (`head`) and at what rate (`fps`). The
//! viewer anchors to that and extrapolates with its own clock in between, so
//! the frame to show is a function of *elapsed time*, not of how many times
//! the display refreshed: a 144 Hz screen shows each frame on two or three
//! refreshes, a 30 Hz one skips every other frame, and a tab that comes back
//! from the background lands on the live frame instead of replaying what it
//! missed. Small disagreements (a telemetry message delayed by the network)
//! are ignored; a drift beyond [`SNAP_FRAMES`] re-anchors.

use std::collections::VecDeque;

/// Playback rate assumed until the server says otherwise.
pub const DEFAULT_FPS: f64 = 60.0;
/// Drift from the server's head, in frames, beyond which the clock
/// re-anchors.
pub const SNAP_FRAMES: f64 = 4.0;

/// Maps local time (milliseconds) to a fractional absolute frame number.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlaybackClock {
    /// `(frame, at_ms)`: the frame that was current at local time `at_ms`.
    anchor: Option<(f64, f64)>,
    fps: f64,
}

impl PlaybackClock {
    /// A clock with no anchor yet.
    pub fn new() -> Self {
        Self {
            anchor: None,
            fps: DEFAULT_FPS,
        }
    }

    /// Whether the clock has an anchor.
    pub fn is_anchored(&self) -> bool {
        self.anchor.is_some()
    }

    /// Frames per second of playback.
    pub fn fps(&self) -> f64 {
        self.fps
    }

    /// The fractional frame current at `now_ms`, once anchored.
    pub fn position(&self, now_ms: f64) -> Option<f64> {
        let (frame, at) = self.anchor?;
        Some(frame + (now_ms - at).max(0.0) * self.fps / 1000.0)
    }

    /// The whole frame current at `now_ms`.
    pub fn frame_at(&self, now_ms: f64) -> Option<u64> {
        // The epsilon keeps float rounding from landing a refresh that falls
        // exactly on a frame boundary on the frame before it.
        self.position(now_ms).map(|p| (p + 1e-6).max(0.0) as u64)
    }

    /// Anchors to frame `frame` now, if not anchored yet (before any
    /// telemetry arrives, the first frame received is "now").
    pub fn anchor_if_unset(&mut self, frame: u64, now_ms: f64) {
        if self.anchor.is_none() {
            self.anchor = Some((frame as f64, now_ms));
        }
    }

    /// Moves the anchor forward so that `frame` is current at `now_ms`, if
    /// the clock is behind it or not anchored. Returns whether it moved.
    pub fn catch_up_to(&mut self, frame: u64, now_ms: f64) -> bool {
        match self.position(now_ms) {
            Some(p) if p >= frame as f64 => false,
            _ => {
                self.anchor = Some((frame as f64, now_ms));
                true
            }
        }
    }

    /// Applies the server's `head` and `fps` (0 = unpaced: keep the default
    /// rate) received at `now_ms`. Returns whether the clock re-anchored.
    pub fn sync(&mut self, head: u64, fps: u16, now_ms: f64) -> bool {
        let fps = if fps == 0 {
            DEFAULT_FPS
        } else {
            f64::from(fps)
        };
        let head = head as f64;
        let drift = match self.position(now_ms) {
            Some(p) if fps == self.fps => (p - head).abs(),
            _ => f64::INFINITY,
        };
        self.fps = fps;
        if drift > SNAP_FRAMES {
            self.anchor = Some((head, now_ms));
            return true;
        }
        false
    }
}

/// Counts events over the last second (frames shown, for playback fps).
#[derive(Clone, Debug, Default)]
pub struct RateMeter {
    times: VecDeque<f64>,
}

impl RateMeter {
    /// An empty meter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one event at `now_ms`.
    pub fn record(&mut self, now_ms: f64) {
        self.times.push_back(now_ms);
        self.expire(now_ms);
    }

    /// Events in the second up to `now_ms`.
    pub fn per_second(&mut self, now_ms: f64) -> usize {
        self.expire(now_ms);
        self.times.len()
    }

    fn expire(&mut self, now_ms: f64) {
        while self.times.front().is_some_and(|t| now_ms - t >= 1000.0) {
            self.times.pop_front();
        }
        // Bounded even if the clock misbehaves.
        while self.times.len() > 1000 {
            self.times.pop_front();
        }
    }
}

/// The last minute of one telemetry series (the fleet's frames/s), one
/// sample per telemetry message, for the panel's chart.
#[derive(Clone, Debug, Default)]
pub struct History {
    samples: VecDeque<u32>,
}

impl History {
    /// Samples kept: one a second for a minute.
    pub const LEN: usize = 60;

    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a sample, forgetting the oldest beyond [`Self::LEN`].
    pub fn push(&mut self, v: u32) {
        if self.samples.len() == Self::LEN {
            self.samples.pop_front();
        }
        self.samples.push_back(v);
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> impl ExactSizeIterator<Item = u32> + '_ {
        self.samples.iter().copied()
    }

    /// The largest sample (at least 1, so it can scale a chart).
    pub fn peak(&self) -> u32 {
        self.samples.iter().copied().max().unwrap_or(0).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn position_follows_elapsed_time_not_refreshes() {
        let mut c = PlaybackClock::new();
        assert_eq!(c.frame_at(0.0), None);
        assert!(c.sync(1_000, 60, 10_000.0));
        assert_eq!(c.frame_at(10_000.0), Some(1_000));
        // Whatever the refresh rate, after one second 60 frames have passed.
        assert_eq!(c.frame_at(11_000.0), Some(1_060));
        assert_eq!(c.frame_at(10_016.0), Some(1_000));
        assert_eq!(c.frame_at(10_017.0), Some(1_001));
        // A tab back from 5 minutes in the background is live, not replaying.
        assert_eq!(c.frame_at(310_000.0), Some(1_000 + 300 * 60));
    }

    #[test]
    fn small_drift_is_ignored_large_drift_reanchors() {
        let mut c = PlaybackClock::new();
        c.sync(0, 60, 0.0);
        assert!(!c.sync(62, 60, 1_000.0), "2 frames late is jitter");
        assert_eq!(c.frame_at(1_000.0), Some(60));
        assert!(c.sync(30, 60, 1_000.0), "server stalled: follow it");
        assert_eq!(c.frame_at(1_000.0), Some(30));
        assert!(c.sync(30, 30, 1_000.0), "rate change re-anchors");
        assert_eq!(c.frame_at(2_000.0), Some(60));
        c.sync(0, 0, 0.0);
        assert_eq!(c.fps(), DEFAULT_FPS, "unpaced server: default rate");
    }

    #[test]
    fn first_frame_anchors_only_without_telemetry() {
        let mut c = PlaybackClock::new();
        c.anchor_if_unset(500, 0.0);
        c.anchor_if_unset(900, 0.0);
        assert_eq!(c.frame_at(0.0), Some(500));
        assert!(c.is_anchored());
    }

    #[test]
    fn rate_meter_counts_the_last_second() {
        let mut m = RateMeter::new();
        for i in 0..120 {
            m.record(f64::from(i) * 1000.0 / 60.0);
        }
        assert_eq!(m.per_second(1990.0), 60);
        assert_eq!(m.per_second(5_000.0), 0);
    }

    #[test]
    fn history_keeps_a_minute() {
        let mut h = History::new();
        assert_eq!(h.peak(), 1);
        for v in 0..100 {
            h.push(v);
        }
        assert_eq!(h.samples().len(), History::LEN);
        assert_eq!(h.samples().next(), Some(40));
        assert_eq!(h.peak(), 99);
    }
}
