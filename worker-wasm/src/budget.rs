//! The worker's CPU budget as plain Rust: a duty cycle that caps rendering
//! to a share of one core, and the accounting of what it cost.
//!
//! The pump renders in slices (`agent::SLICE_MS` at most); after a slice
//! of `busy` ms, [`DutyCycle::after_slice`] says how long to rest before the
//! next one so that busy time stays `share` of wall time:
//! `rest = busy × (1 − share) / share`. A share of 1 never rests. The rest
//! is owed even when the queue ran dry: a task that arrives during it waits
//! for its end ([`DutyCycle::wait_ms`]), so small tasks cannot add up to
//! more than the share. The rest is
//! wall time measured around the slice, so a worker thread the OS
//! descheduled mid-slice is charged for it and renders less, never more,
//! than its share.
//!
//! The server sees the pacing: a budgeted worker returns its tasks later,
//! the scheduler measures its slower pace and gives it shorter ranges (see
//! the server's `scheduler`).
//!
//! Busy time is the only CPU figure a Web Worker can measure (there is no
//! thread CPU clock in the browser): it is what the panel reports as this
//! tab's cost, in total and as the share of a core over the last second.

/// Shortest wall-clock window the recent load is computed over, in ms.
pub const LOAD_WINDOW_MS: f64 = 1_000.0;
/// Smallest share accepted (1% of a core): below it a slice would rest for
/// seconds.
pub const MIN_SHARE: f64 = 0.01;

/// A duty cycle and its accounting. Times are milliseconds on one
/// monotonic clock (`performance.now()` in the worker).
#[derive(Clone, Debug)]
pub struct DutyCycle {
    share: f64,
    busy_total_ms: f64,
    window_start_ms: f64,
    window_busy_ms: f64,
    load: f64,
    /// When the rest after the last slice ends.
    resume_at_ms: f64,
}

impl DutyCycle {
    /// A duty cycle of `share` of one core (clamped to
    /// [`MIN_SHARE`]`..=1`; not a number means 1), its load window opening
    /// at `now_ms`.
    pub fn new(share: f64, now_ms: f64) -> Self {
        Self {
            share: clamp_share(share),
            busy_total_ms: 0.0,
            window_start_ms: now_ms,
            window_busy_ms: 0.0,
            load: 0.0,
            resume_at_ms: f64::NEG_INFINITY,
        }
    }

    /// Changes the share (clamped as in [`Self::new`]); the next rest uses it.
    pub fn set_share(&mut self, share: f64) {
        self.share = clamp_share(share);
    }

    /// The share of one core this cycle allows, `MIN_SHARE..=1`.
    pub fn share(&self) -> f64 {
        self.share
    }

    /// A slice of rendering that took `busy_ms` ended at `now_ms`: returns
    /// how many ms to rest before the next slice (0: go on at once).
    pub fn after_slice(&mut self, busy_ms: f64, now_ms: f64) -> f64 {
        let busy = if busy_ms.is_finite() {
            busy_ms.max(0.0)
        } else {
            0.0
        };
        self.busy_total_ms += busy;
        self.roll(now_ms);
        self.window_busy_ms += busy;
        let rest = busy * (1.0 - self.share) / self.share;
        self.resume_at_ms = now_ms + rest;
        rest
    }

    /// Milliseconds left of the rest after the last slice (0: render now).
    pub fn wait_ms(&self, now_ms: f64) -> f64 {
        (self.resume_at_ms - now_ms).max(0.0)
    }

    /// Busy milliseconds since the worker started: the CPU it cost.
    pub fn busy_total_ms(&self) -> f64 {
        self.busy_total_ms
    }

    /// Share of one core used over the last complete window of at least
    /// [`LOAD_WINDOW_MS`] (0 once a window passed with no rendering).
    pub fn load(&mut self, now_ms: f64) -> f64 {
        self.roll(now_ms);
        self.load
    }

    /// Closes the load window if it is long enough.
    fn roll(&mut self, now_ms: f64) {
        let elapsed = now_ms - self.window_start_ms;
        if elapsed >= LOAD_WINDOW_MS {
            self.load = (self.window_busy_ms / elapsed).clamp(0.0, 1.0);
            self.window_start_ms = now_ms;
            self.window_busy_ms = 0.0;
        }
    }
}

fn clamp_share(share: f64) -> f64 {
    if share.is_nan() {
        1.0
    } else {
        share.clamp(MIN_SHARE, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn rests_so_that_busy_time_is_the_share_of_wall_time() {
        let mut d = DutyCycle::new(0.25, 0.0);
        let mut now = 0.0;
        for _ in 0..100 {
            now += 8.0;
            let rest = d.after_slice(8.0, now);
            assert!((rest - 24.0).abs() < 1e-9, "{rest}");
            now += rest;
        }
        assert!((d.busy_total_ms() - 800.0).abs() < 1e-9);
        assert!((d.busy_total_ms() / now - 0.25).abs() < 1e-9);
        assert!((d.load(now) - 0.25).abs() < 0.01, "{}", d.load(now));
    }

    #[test]
    fn work_arriving_during_a_rest_waits_for_its_end() {
        let mut d = DutyCycle::new(0.1, 0.0);
        assert_eq!(d.wait_ms(0.0), 0.0, "nothing owed at the start");
        // A small task took 2 ms and the queue ran dry: 18 ms are owed.
        let rest = d.after_slice(2.0, 2.0);
        assert!((rest - 18.0).abs() < 1e-9);
        assert!((d.wait_ms(5.0) - 15.0).abs() < 1e-9);
        assert_eq!(d.wait_ms(20.0), 0.0);
        assert_eq!(d.wait_ms(30.0), 0.0);
    }

    #[test]
    fn a_full_share_never_rests_and_odd_shares_are_clamped() {
        let mut d = DutyCycle::new(1.0, 0.0);
        assert_eq!(d.after_slice(8.0, 8.0), 0.0);
        d.set_share(f64::NAN);
        assert_eq!(d.share(), 1.0);
        d.set_share(7.0);
        assert_eq!(d.share(), 1.0);
        d.set_share(0.0);
        assert_eq!(d.share(), MIN_SHARE);
        d.set_share(-1.0);
        assert_eq!(d.share(), MIN_SHARE);
        // A nonsense measurement costs nothing and rests nothing.
        assert_eq!(d.after_slice(f64::NAN, 9.0), 0.0);
        assert_eq!(d.after_slice(-5.0, 9.0), 0.0);
        assert_eq!(d.busy_total_ms(), 8.0);
    }

    #[test]
    fn the_load_falls_to_zero_when_rendering_stops() {
        let mut d = DutyCycle::new(0.5, 0.0);
        let mut now = 0.0;
        while now < 2_000.0 {
            now += 10.0;
            now += d.after_slice(10.0, now);
        }
        assert!((d.load(now) - 0.5).abs() < 0.02, "{}", d.load(now));
        // Nothing rendered for a whole window: idle.
        assert!(d.load(now + 1_000.0) < 0.5);
        assert_eq!(d.load(now + 2_000.0), 0.0);
    }
}
