//! The per-viewer input rate limit: a token bucket.
//!
//! A viewer earns `rate` inputs a second up to `burst` saved; each input
//! spends one. A drag sends one input per animation frame at most, which
//! the page coalesces to well under the default 30 a second, so a person
//! never meets the limit while a script flooding the socket does at once
//! and is closed with a reason (see `crate::endpoint::viewer`). Sans-IO: the
//! clock is passed in.

use std::time::Instant;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens earned a second.
    rate: f64,
    /// Most tokens saved.
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`: `rate` tokens a second, at most `burst`
    /// (at least one) saved.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: rate.max(0.0),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Spends one token at `now`; false when none is left (the caller
    /// refuses the input).
    pub fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(30.0, 30, t0);
        assert!((0..30).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        // 100 ms earn three.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!((0..10).filter(|_| b.take(t1)).count(), 3);
        // A long pause refills only up to the burst.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..100).filter(|_| b.take(t2)).count(), 30);
    }
}
