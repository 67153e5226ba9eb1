//! Reconnect delays (exponential backoff with jitter) and the WebSocket URL
//! to reconnect to, for the two browser clients (the viewer and the worker)
//! and the native worker (`donut work`, with its own bounds).
//!
//! When the server goes away every tab notices at the same instant; if they
//! all retried on the same schedule they would hammer the restarted server in
//! lockstep. Each retry doubles the delay up to a cap, and a random factor
//! (supplied by the caller, so this stays pure and testable) spreads the
//! fleet out. Pure logic, no allocation: it lives here so every client
//! shares one copy and it is unit-tested natively.

use core::fmt;

/// First reconnect delay, in milliseconds.
pub const BASE_MS: f64 = 250.0;
/// Largest reconnect delay, in milliseconds.
pub const MAX_MS: f64 = 8_000.0;

/// Exponential backoff state for one connection.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    attempt: u32,
    base_ms: f64,
    max_ms: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::with_bounds(BASE_MS, MAX_MS)
    }
}

impl Backoff {
    /// A fresh backoff between [`BASE_MS`] and [`MAX_MS`] (the browser
    /// clients'): the next delay is the base delay.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh backoff whose first nominal delay is `base_ms` and whose
    /// nominal delays never exceed `max_ms` (milliseconds; `max_ms` below
    /// `base_ms` caps every delay at `max_ms`).
    pub fn with_bounds(base_ms: f64, max_ms: f64) -> Self {
        Self {
            attempt: 0,
            base_ms,
            max_ms,
        }
    }

    /// The delay before the next attempt, given `jitter` in `[0, 1)`; each
    /// call doubles the following one up to the largest delay ([`MAX_MS`]
    /// unless set by [`with_bounds`](Self::with_bounds)). The result lies in
    /// `[d/2, d)` for the nominal delay `d`; a non-finite `jitter` counts as
    /// `0.5`.
    pub fn next_delay_ms(&mut self, jitter: f64) -> f64 {
        // 2^30 doublings reach past any cap that fits a u64 of milliseconds
        // from a base of a millisecond, without overflowing the shift.
        let nominal = (self.base_ms * f64::from(1u32 << self.attempt.min(30))).min(self.max_ms);
        self.attempt = self.attempt.saturating_add(1);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.5
        };
        nominal * (0.5 + 0.5 * jitter)
    }

    /// Forgets past failures, after a connection proved healthy.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Writes the WebSocket URL of `path` on the server that served a page or
/// worker script from `protocol` (`"http:"` or `"https:"`, as in
/// `location.protocol`) and `host` (`location.host`): `wss:` for a secure
/// page, `ws:` otherwise.
pub fn write_endpoint_url(
    out: &mut impl fmt::Write,
    protocol: &str,
    host: &str,
    path: &str,
) -> fmt::Result {
    let scheme = if protocol == "https:" { "wss:" } else { "ws:" };
    write!(out, "{scheme}//{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed-capacity `fmt::Write` sink, so the tests need no allocator.
    struct Buf {
        bytes: [u8; 64],
        len: usize,
    }

    impl Buf {
        fn new() -> Self {
            Self {
                bytes: [0; 64],
                len: 0,
            }
        }
        fn as_str(&self) -> &str {
            core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("<invalid>")
        }
    }

    impl fmt::Write for Buf {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.len + s.len();
            self.bytes
                .get_mut(self.len..end)
                .ok_or(fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new();
        let mut delays = [0.0; 8];
        for d in &mut delays {
            *d = b.next_delay_ms(1.0);
        }
        assert_eq!(delays[0], BASE_MS);
        assert_eq!(delays[1], 2.0 * BASE_MS);
        assert!(delays.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(delays[7], MAX_MS);
        for _ in 0..100 {
            assert!(b.next_delay_ms(0.99) <= MAX_MS);
        }
        b.reset();
        assert_eq!(b.next_delay_ms(1.0), BASE_MS);
    }

    #[test]
    fn jitter_spreads_within_half_to_full() {
        let mut lo = Backoff::new();
        let mut hi = Backoff::new();
        let mut out_of_range = Backoff::new();
        assert_eq!(lo.next_delay_ms(0.0), BASE_MS / 2.0);
        assert_eq!(hi.next_delay_ms(f64::NAN), BASE_MS * 0.75);
        assert_eq!(out_of_range.next_delay_ms(-3.0), BASE_MS / 2.0);
    }

    #[test]
    fn bounds_set_the_first_and_largest_delay() {
        let mut b = Backoff::with_bounds(100.0, 10_000.0);
        assert_eq!(b.next_delay_ms(1.0), 100.0);
        assert_eq!(b.next_delay_ms(1.0), 200.0);
        assert_eq!(b.next_delay_ms(0.0), 200.0);
        for _ in 0..40 {
            assert!(b.next_delay_ms(1.0) <= 10_000.0);
        }
        assert_eq!(b.next_delay_ms(1.0), 10_000.0);
        b.reset();
        assert_eq!(b.next_delay_ms(1.0), 100.0);
    }

    #[test]
    fn attempts_never_overflow() {
        let mut b = Backoff {
            attempt: u32::MAX,
            ..Backoff::new()
        };
        assert_eq!(b.next_delay_ms(1.0), MAX_MS);
        assert_eq!(b.next_delay_ms(1.0), MAX_MS);
    }

    #[test]
    fn endpoint_follows_page_scheme() {
        let mut plain = Buf::new();
        assert!(write_endpoint_url(&mut plain, "http:", "127.0.0.1:8080", "/ws/worker").is_ok());
        assert_eq!(plain.as_str(), "ws://127.0.0.1:8080/ws/worker");
        let mut secure = Buf::new();
        assert!(write_endpoint_url(&mut secure, "https:", "donut.example", "/ws/viewer").is_ok());
        assert_eq!(secure.as_str(), "wss://donut.example/ws/viewer");
    }
}
