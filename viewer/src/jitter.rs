//! The jitter buffer: received frames keyed by absolute frame number.
//!
//! Batches arrive in bursts and possibly out of order (a reconnect, a
//! backfill), while playback wants exactly one frame every 1/60 s. Frames
//! are stored packed (880 bytes) in the shared tagged ring
//! ([`donut_shared::ring::FrameRing`], the server's store too), frame `n` in
//! slot `n % capacity`, each tagged with its frame number so a stale frame
//! from a previous lap is never mistaken for the one wanted. The buffer keeps a
//! *floor*, the oldest frame still wanted (a little behind the play
//! position): anything below it is stale and dropped, and nothing at or past
//! `floor + capacity` is stored, because it would overwrite a frame still
//! needed. Memory is bounded by construction: `capacity × 880` bytes.

use donut_shared::PACKED_LEN;
use donut_shared::ring::{FrameRing, RingError};

/// A bounded buffer of packed frames keyed by absolute frame number: the
/// shared tagged ring, whose base is the floor, plus "no floor yet".
pub struct JitterBuffer {
    ring: FrameRing,
    /// Whether the floor (the ring's base) is known yet.
    floor_known: bool,
}

impl JitterBuffer {
    /// An empty buffer of `capacity` frames (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            ring: FrameRing::new(capacity, 0),
            floor_known: false,
        }
    }

    /// Capacity in frames.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether no frame is held.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The oldest frame still wanted, once known.
    pub fn floor(&self) -> Option<u64> {
        self.floor_known.then(|| self.ring.base())
    }

    /// Stores a packed frame. Before any floor is set, the first frame
    /// stored becomes the floor. [`RingError::Behind`]: below the floor,
    /// already played or too old to matter; [`RingError::Ahead`]: so far
    /// ahead it would overwrite a frame still needed.
    pub fn insert(&mut self, frame: u64, packed: &[u8; PACKED_LEN]) -> Result<(), RingError> {
        if !self.floor_known {
            self.ring.reset(frame);
            self.floor_known = true;
        }
        self.ring.insert(frame, packed)
    }

    /// The packed frame `frame`, if held.
    pub fn get(&self, frame: u64) -> Option<&[u8; PACKED_LEN]> {
        self.ring.get(frame)
    }

    /// Raises the floor to `floor` (it never moves down), dropping every
    /// frame below it. Cost is bounded by the capacity.
    pub fn advance(&mut self, floor: u64) {
        if self.floor_known {
            self.ring.advance_base(floor);
        } else {
            self.ring.reset(floor);
            self.floor_known = true;
        }
    }

    /// Drops every held frame numbered `from` or later (a newer timeline
    /// version replaces them); the floor stays.
    pub fn truncate_from(&mut self, from: u64) {
        self.ring.forget_from(from);
    }

    /// Forgets every frame and the floor (after a long disconnect, when the
    /// stream may have moved anywhere).
    pub fn reset(&mut self) {
        self.ring.reset(0);
        self.floor_known = false;
    }

    /// How many consecutive frames from `from` on are held (buffer depth
    /// ahead of the play position), up to the capacity.
    pub fn run_from(&self, from: u64) -> usize {
        (0..self.capacity() as u64)
            .take_while(|k| from.checked_add(*k).is_some_and(|f| self.get(f).is_some()))
            .count()
    }

    /// The held frame nearest below or at `frame`, searching back at most
    /// `within` frames: what to keep showing when `frame` is missing.
    pub fn latest_at_or_before(&self, frame: u64, within: u64) -> Option<u64> {
        let lowest = frame.saturating_sub(within).max(self.floor().unwrap_or(0));
        (lowest..=frame).rev().find(|f| self.get(*f).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn packed(frame: u64) -> [u8; PACKED_LEN] {
        let mut out = [0u8; PACKED_LEN];
        donut_shared::render_packed(frame, &mut out);
        out
    }

    #[test]
    fn stores_and_returns_frames_by_number() {
        let mut b = JitterBuffer::new(16);
        let base = 5_000_000_000u64;
        for f in base..base + 10 {
            assert_eq!(b.insert(f, &packed(f)), Ok(()));
        }
        assert_eq!(b.len(), 10);
        assert_eq!(b.floor(), Some(base));
        for f in base..base + 10 {
            assert_eq!(b.get(f), Some(&packed(f)), "frame {f}");
        }
        assert_eq!(b.get(base + 10), None);
        assert_eq!(b.get(base + 16), None, "same slot as base, other lap");
        assert_eq!(b.run_from(base), 10);
        assert_eq!(b.run_from(base + 3), 7);
    }

    #[test]
    fn out_of_order_batches_fill_the_gap() {
        let mut b = JitterBuffer::new(64);
        b.advance(100);
        for f in 120..130 {
            assert!(b.insert(f, &packed(f)).is_ok());
        }
        assert_eq!(b.run_from(100), 0);
        for f in 100..120 {
            assert!(b.insert(f, &packed(f)).is_ok());
        }
        assert_eq!(b.run_from(100), 30);
    }

    #[test]
    fn rejects_stale_and_overwriting_frames() {
        let mut b = JitterBuffer::new(8);
        b.advance(100);
        assert_eq!(b.insert(99, &packed(99)), Err(RingError::Behind));
        assert_eq!(b.insert(108, &packed(108)), Err(RingError::Ahead));
        assert_eq!(b.insert(107, &packed(107)), Ok(()));
        assert_eq!(b.insert(u64::MAX, &packed(0)), Err(RingError::Ahead));
        assert_eq!(b.get(99), None);
    }

    #[test]
    fn advancing_drops_old_frames_and_never_goes_back() {
        let mut b = JitterBuffer::new(8);
        for f in 10..18 {
            assert!(b.insert(f, &packed(f)).is_ok());
        }
        b.advance(14);
        assert_eq!(b.len(), 4);
        assert_eq!(b.get(13), None);
        assert!(b.get(14).is_some());
        b.advance(12);
        assert_eq!(b.floor(), Some(14));
        assert!(b.insert(21, &packed(21)).is_ok(), "room freed ahead");
        // A jump past the whole capacity (a backgrounded tab) empties it.
        b.advance(1_000);
        assert!(b.is_empty());
        assert_eq!(b.insert(1_003, &packed(1_003)), Ok(()));
        b.reset();
        assert_eq!(b.floor(), None);
        assert!(b.is_empty());
    }

    #[test]
    fn truncating_drops_the_frames_from_there_on_and_keeps_the_floor() {
        let mut b = JitterBuffer::new(32);
        for f in 100..120 {
            assert!(b.insert(f, &packed(f)).is_ok());
        }
        b.truncate_from(110);
        assert_eq!(b.floor(), Some(100));
        assert_eq!(b.run_from(100), 10);
        assert_eq!(b.get(110), None);
        assert_eq!(b.insert(110, &packed(5)), Ok(()));
        assert_eq!(b.get(110), Some(&packed(5)));
    }

    #[test]
    fn latest_at_or_before_finds_what_to_hold() {
        let mut b = JitterBuffer::new(32);
        for f in [40, 41, 45] {
            assert!(b.insert(f, &packed(f)).is_ok());
        }
        assert_eq!(b.latest_at_or_before(44, 10), Some(41));
        assert_eq!(b.latest_at_or_before(45, 10), Some(45));
        assert_eq!(b.latest_at_or_before(52, 5), None);
        assert_eq!(b.latest_at_or_before(39, 5), None);
    }
}
