//! How many offers the page answers: each answer is a new
//! `RTCPeerConnection` (Chromium allows 500 in a tab's life), so a child
//! that re-offers in a loop, or several that do, must not make the page
//! open connections without limit. Plain Rust, driven by the clock
//! (`performance.now()` ms), tested natively and as wasm.
//!
//! Rules: an offer from a child whose last answered offer is younger than
//! [`REOFFER_MS`] is ignored (a real child re-offers only after its link
//! failed, which takes seconds); and answers overall come out of a token
//! bucket of [`BURST`] refilled at one per [`REFILL_MS`], so a tab opens
//! at most `BURST + t / REFILL_MS` connections in `t` ms whatever its
//! children send (about 16 + 12 a minute, the 500 lasting 40 minutes of a
//! sustained storm; an honest tree asks for a handful an hour).

/// Shortest time between two answered offers from one child.
pub const REOFFER_MS: f64 = 4_000.0;
/// Answers the page may give at once.
pub const BURST: f64 = 16.0;
/// One more answer may be given per this long.
pub const REFILL_MS: f64 = 5_000.0;
/// Children remembered (their last answered offer).
const REMEMBERED: usize = 64;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct OfferBudget {
    tokens: f64,
    at_ms: f64,
    /// (child, when its last offer was answered).
    last: Vec<(u64, f64)>,
}

impl Default for OfferBudget {
    fn default() -> Self {
        Self::new()
    }
}

impl OfferBudget {
    /// A full budget.
    pub fn new() -> Self {
        Self {
            tokens: BURST,
            at_ms: f64::NAN,
            last: Vec::new(),
        }
    }

    /// Whether to answer `child`'s offer at `now_ms` (spending the budget
    /// if so).
    pub fn allow(&mut self, child: u64, now_ms: f64) -> bool {
        if self.at_ms.is_nan() {
            self.at_ms = now_ms;
        }
        let elapsed = (now_ms - self.at_ms).max(0.0);
        self.tokens = (self.tokens + elapsed / REFILL_MS).min(BURST);
        self.at_ms = self.at_ms.max(now_ms);
        let recent = self
            .last
            .iter()
            .any(|&(c, t)| c == child && now_ms - t < REOFFER_MS);
        if recent || self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        self.last.retain(|&(c, _)| c != child);
        if self.last.len() >= REMEMBERED {
            self.last.remove(0);
        }
        self.last.push((child, now_ms));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_child_re_offering_in_a_loop_is_answered_once_per_reoffer_interval() {
        let mut b = OfferBudget::new();
        let answered = (0..400)
            .filter(|&i| b.allow(7, f64::from(i) * 25.0))
            .count();
        // Ten seconds of an offer every 25 ms: at 0, 4 s and 8 s.
        assert_eq!(answered, 3);
    }

    #[test]
    fn a_storm_from_many_children_opens_at_most_the_burst_then_the_refill() {
        let mut b = OfferBudget::new();
        let mut answered = 0;
        // 3 sybils and fresh ids, an offer each every 20 ms for a minute.
        for i in 0..3000u32 {
            let child = u64::from(i % 50);
            if b.allow(child, f64::from(i) * 20.0) {
                answered += 1;
            }
        }
        let minute = 60_000.0;
        assert!(answered as f64 <= BURST + minute / REFILL_MS, "{answered}");
        // An honest child's first offer after the storm waits for a token
        // at most one refill.
        assert!(!b.allow(99, minute) || b.allow(98, minute + REFILL_MS));
    }

    #[test]
    fn honest_children_are_answered() {
        let mut b = OfferBudget::new();
        for child in 1..=6 {
            assert!(b.allow(child, 0.0));
        }
        // A child whose link failed re-offers seconds later: answered.
        assert!(b.allow(3, 8_000.0));
    }
}
