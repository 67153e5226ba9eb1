//! The frame ring: a bounded buffer of accepted frames keyed by absolute
//! frame number.
//!
//! Memory is one allocation of `capacity × 880` bytes made at start, sized by
//! configuration (the Go original allocates a fixed 90 MiB). Frame `n` lives
//! in slot `n % capacity`, and every slot is tagged with the absolute frame it
//! holds, so a stale frame from a previous lap can never be mistaken for the
//! one wanted: lookups compare the tag, not just the slot.
//!
//! Invariants (upheld by the caller, [`crate::core::Core`], and checked here):
//! - only frames within `[base, base + capacity)` are stored, where `base` is
//!   the oldest frame still needed (the playback head);
//! - a stored frame is never overwritten by a different frame number until
//!   `base` has moved past it.

use donut_shared::PACKED_LEN;

/// Marks an empty slot (no frame has that number: ranges saturate below it).
const EMPTY: u64 = u64::MAX;

/// A bounded buffer of accepted packed frames.
pub struct FrameRing {
    /// `capacity × PACKED_LEN` bytes.
    buf: Vec<u8>,
    /// The absolute frame number held by each slot, or [`EMPTY`].
    tags: Vec<u64>,
    /// Oldest frame still needed; nothing below it is served.
    base: u64,
}

/// Why a frame was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// The frame is below the base (already played).
    Behind,
    /// The frame is beyond `base + capacity`.
    Ahead,
}

impl FrameRing {
    /// A ring of `capacity` frames (at least one) starting at frame `base`.
    pub fn new(capacity: usize, base: u64) -> Self {
        let capacity = capacity.max(1);
        Self {
            buf: vec![0; capacity * PACKED_LEN],
            tags: vec![EMPTY; capacity],
            base,
        }
    }

    /// Capacity in frames.
    pub fn capacity(&self) -> usize {
        self.tags.len()
    }

    /// Bytes allocated for frames.
    pub fn allocated_bytes(&self) -> usize {
        self.buf.len() + self.tags.len() * size_of::<u64>()
    }

    /// The oldest frame still needed.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// One past the newest frame that may be stored.
    pub fn limit(&self) -> u64 {
        self.base.saturating_add(self.capacity() as u64)
    }

    /// Moves the base forward to `base` (never backwards).
    pub fn advance_base(&mut self, base: u64) {
        self.base = self.base.max(base);
    }

    fn slot(&self, frame: u64) -> usize {
        (frame % self.capacity() as u64) as usize
    }

    /// Stores one packed frame.
    pub fn insert(&mut self, frame: u64, packed: &[u8; PACKED_LEN]) -> Result<(), RingError> {
        if frame < self.base {
            return Err(RingError::Behind);
        }
        if frame >= self.limit() {
            return Err(RingError::Ahead);
        }
        let slot = self.slot(frame);
        self.buf[slot * PACKED_LEN..(slot + 1) * PACKED_LEN].copy_from_slice(packed);
        self.tags[slot] = frame;
        Ok(())
    }

    /// Whether `frame` is stored.
    pub fn contains(&self, frame: u64) -> bool {
        frame >= self.base && frame < self.limit() && self.tags[self.slot(frame)] == frame
    }

    /// The packed bytes of `frame`, if stored.
    pub fn get(&self, frame: u64) -> Option<&[u8; PACKED_LEN]> {
        if !self.contains(frame) {
            return None;
        }
        let slot = self.slot(frame);
        self.buf[slot * PACKED_LEN..(slot + 1) * PACKED_LEN]
            .as_chunks::<PACKED_LEN>()
            .0
            .first()
    }

    /// Appends the packed frames `start .. start + count` to `out`; returns
    /// false (appending nothing) unless every one of them is stored.
    pub fn copy_range(&self, start: u64, count: u64, out: &mut Vec<u8>) -> bool {
        let Some(end) = start.checked_add(count) else {
            return false;
        };
        if !(start..end).all(|f| self.contains(f)) {
            return false;
        }
        out.reserve(count as usize * PACKED_LEN);
        // At most two contiguous runs: up to the end of the buffer, then from 0.
        let mut frame = start;
        while frame < end {
            let slot = self.slot(frame);
            let run = (end - frame).min((self.capacity() - slot) as u64) as usize;
            out.extend_from_slice(&self.buf[slot * PACKED_LEN..(slot + run) * PACKED_LEN]);
            frame += run as u64;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8) -> [u8; PACKED_LEN] {
        [tag; PACKED_LEN]
    }

    #[test]
    fn stores_within_window_only() {
        let mut r = FrameRing::new(4, 10);
        assert_eq!(r.insert(9, &frame(1)), Err(RingError::Behind));
        assert_eq!(r.insert(14, &frame(1)), Err(RingError::Ahead));
        assert_eq!(r.insert(13, &frame(3)), Ok(()));
        assert!(r.contains(13));
        assert!(!r.contains(12));
        assert_eq!(r.get(13), Some(&frame(3)));
    }

    #[test]
    fn stale_lap_is_not_served() {
        let mut r = FrameRing::new(4, 0);
        r.insert(1, &frame(1)).expect("in window");
        r.advance_base(4);
        // Slot 1 still holds frame 1, but frame 5 is not there.
        assert!(!r.contains(5));
        assert!(!r.contains(1));
        r.insert(5, &frame(5)).expect("in window");
        assert_eq!(r.get(5), Some(&frame(5)));
    }

    #[test]
    fn copy_range_wraps() {
        let mut r = FrameRing::new(4, 2);
        for f in 2..6 {
            r.insert(f, &frame(f as u8)).expect("in window");
        }
        let mut out = Vec::new();
        assert!(r.copy_range(2, 4, &mut out));
        let tags: Vec<u8> = out.chunks(PACKED_LEN).map(|c| c[0]).collect();
        assert_eq!(tags, vec![2, 3, 4, 5]);
        let mut none = Vec::new();
        assert!(!r.copy_range(5, 2, &mut none));
        assert!(none.is_empty());
    }

    #[test]
    fn allocation_is_proportional() {
        assert_eq!(
            FrameRing::new(100, 0).allocated_bytes(),
            100 * (PACKED_LEN + 8)
        );
    }
}
