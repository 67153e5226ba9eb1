//! Time for the player: where playback should be now, and how fast it went.
//!
//! The server owns the show's clock: every second its telemetry says which
//! frame its playback head is on (`head`) and at what rate (`fps`). The
//! viewer anchors to that and extrapolates with its own clock in between, so
//! the frame to show is a function of *elapsed time*, not of how many times
//! the display refreshed: a 144 Hz screen shows each frame on two or three
//! refreshes, a 30 Hz one skips every other frame, and a tab that comes back
//! from the background lands on the live frame instead of replaying what it
//! missed.
//!
//! A telemetry `head` is a *lower bound* of the show's head when it arrives:
//! the network delayed it, and the server may have held it for a batch to
//! ride with (it moves a held message's head on by the frames played since,
//! but a message is never ahead of the show). So a page behind a head it
//! is told catches up to it at once (by more than [`CATCH_UP_FRAMES`]), and
//! a page ahead of one by up to [`SNAP_FRAMES`] keeps its place: the next
//! fresher message will agree. Every page so converges on the show's head
//! less the smallest delay it has seen, and pages on any node agree with
//! each other to about a frame (issue 25: a page that tolerated being up to
//! four frames behind, anchored on a message held 300 ms, played up to 22
//! frames late, and so showed every push that much later). Ahead by more
//! than [`SNAP_FRAMES`] (the server stalled or restarted) re-anchors.

use std::collections::VecDeque;

/// Playback rate assumed until the server says otherwise.
pub const DEFAULT_FPS: f64 = 60.0;
/// How far ahead of the server's head, in frames, the clock may run before
/// it re-anchors back (a stalled or restarted server).
pub const SNAP_FRAMES: f64 = 4.0;
/// How far behind the server's head, in frames, the clock may fall before
/// it catches up: less than a frame of phase is not worth a step.
pub const CATCH_UP_FRAMES: f64 = 0.5;

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
    /// rate) received at `now_ms`: catches up to `head` if behind it by more
    /// than [`CATCH_UP_FRAMES`], re-anchors on it if ahead by more than
    /// [`SNAP_FRAMES`] or at another rate. Returns whether the clock moved
    /// by more than [`SNAP_FRAMES`] (re-anchored), as the player resets on a
    /// stream that went back.
    pub fn sync(&mut self, head: u64, fps: u16, now_ms: f64) -> bool {
        let fps = if fps == 0 {
            DEFAULT_FPS
        } else {
            f64::from(fps)
        };
        let head = head as f64;
        let ahead = match self.position(now_ms) {
            Some(p) if fps == self.fps => p - head,
            _ => f64::INFINITY,
        };
        self.fps = fps;
        if !(-CATCH_UP_FRAMES..=SNAP_FRAMES).contains(&ahead) {
            self.anchor = Some((head, now_ms));
            return ahead.abs() > SNAP_FRAMES;
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
    fn behind_a_head_catches_up_ahead_of_one_keeps_its_place() {
        let mut c = PlaybackClock::new();
        assert!(c.sync(0, 60, 0.0));
        // A fresher head than the anchor's: 2 frames behind it is lag, not
        // jitter (the message the clock anchored on was late).
        assert!(!c.sync(62, 60, 1_000.0), "a catch-up is not a re-anchor");
        assert_eq!(c.frame_at(1_000.0), Some(62));
        // Less than half a frame behind: the phase is kept.
        assert!(!c.sync(122, 60, 1_995.0));
        assert_eq!(
            c.position(1_995.0).map(|p| (p * 10.0).round()),
            Some(1217.0)
        );
        // A staler head (held, delayed): ahead of it by up to 4 frames is
        // where the show is; keep the place.
        assert!(!c.sync(118, 60, 2_000.0));
        assert_eq!(c.frame_at(2_000.0), Some(122));
        // Far ahead of the head: the server stalled or went back; follow it.
        assert!(c.sync(30, 60, 2_000.0), "server stalled: follow it");
        assert_eq!(c.frame_at(2_000.0), Some(30));
        assert!(c.sync(30, 30, 2_000.0), "rate change re-anchors");
        assert_eq!(c.frame_at(3_000.0), Some(60));
        c.sync(0, 0, 0.0);
        assert_eq!(c.fps(), DEFAULT_FPS, "unpaced server: default rate");
    }

    /// Pages that get heads each late by its own amount (the server moves a
    /// held head on by whole frames, so up to a frame; the network up to
    /// 20 ms more) end within a frame of the show and of each other, never
    /// ahead of it, whatever head they anchored on first.
    #[test]
    fn pages_fed_stale_heads_converge_on_the_show() {
        // A small deterministic generator (no dependency for a test).
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let show = |t_ms: f64| 10_000.0 + t_ms * 60.0 / 1000.0;
        let mut pages = [PlaybackClock::new(); 5];
        for tick in 0..40 {
            // Telemetry every 250 ms. The first a page gets was held for
            // up to 4 frames (page 4: 3.6), within what the clock once
            // tolerated, so such a page stayed that far behind for good.
            let sent = 1_000.0 + f64::from(tick) * 250.0;
            for (page, clock) in pages.iter_mut().enumerate() {
                let stale = if tick == 0 {
                    15.0 * page as f64
                } else {
                    (next() % 17) as f64
                };
                let computed = (sent - stale).max(0.0);
                let arrives = sent + (next() % 20) as f64;
                clock.sync(show(computed) as u64, 60, arrives);
            }
        }
        let now = 11_500.0;
        let at: Vec<f64> = pages
            .iter()
            .map(|c| c.position(now).unwrap_or(0.0))
            .collect();
        for p in &at {
            assert!(
                show(now) - p < 1.5,
                "a page {:.1} frames behind the show",
                show(now) - p
            );
            assert!(p - show(now) <= 0.0, "a page ahead of the show");
        }
        let spread = at.iter().cloned().fold(f64::MIN, f64::max)
            - at.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread < 1.5, "pages {spread:.1} frames apart");
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
