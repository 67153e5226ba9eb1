//! Reconnect delays: exponential backoff with jitter.
//!
//! When the server goes away every tab notices at the same instant; if they
//! all retried on the same schedule they would hammer the restarted server in
//! lockstep. Each retry doubles the delay up to a cap, and a random factor
//! spreads the fleet out. Plain Rust, so it is unit-tested natively.

/// First reconnect delay, in milliseconds.
pub const BASE_MS: f64 = 250.0;
/// Largest reconnect delay, in milliseconds.
pub const MAX_MS: f64 = 8_000.0;

/// Exponential backoff state for one connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// A fresh backoff: the next delay is the base delay.
    pub fn new() -> Self {
        Self::default()
    }

    /// The delay before the next attempt, given `jitter` in `[0, 1)`; each
    /// call doubles the following one up to [`MAX_MS`]. The result lies in
    /// `[d/2, d)` for the nominal delay `d`.
    pub fn next_delay_ms(&mut self, jitter: f64) -> f64 {
        let nominal = (BASE_MS * f64::from(1u32 << self.attempt.min(16))).min(MAX_MS);
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

/// The WebSocket URL of `path` on the server that served a page or worker
/// script from `protocol` (`"http:"` or `"https:"`) and `host`.
pub fn endpoint_url(protocol: &str, host: &str, path: &str) -> String {
    let scheme = if protocol == "https:" { "wss:" } else { "ws:" };
    format!("{scheme}//{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<f64> = (0..8).map(|_| b.next_delay_ms(1.0)).collect();
        assert_eq!(delays[0], BASE_MS);
        assert_eq!(delays[1], 2.0 * BASE_MS);
        assert!(delays.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*delays.last().unwrap_or(&0.0), MAX_MS);
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
        assert_eq!(lo.next_delay_ms(0.0), BASE_MS / 2.0);
        assert_eq!(hi.next_delay_ms(f64::NAN), BASE_MS * 0.75);
    }

    #[test]
    fn endpoint_follows_page_scheme() {
        assert_eq!(
            endpoint_url("http:", "127.0.0.1:8080", "/ws/worker"),
            "ws://127.0.0.1:8080/ws/worker"
        );
        assert_eq!(
            endpoint_url("https:", "donut.example", "/ws/viewer"),
            "wss://donut.example/ws/viewer"
        );
    }
}
