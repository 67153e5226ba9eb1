//! The tagged frame ring: packed frames keyed by absolute frame number in a
//! fixed number of slots, for the server's store of accepted frames and the
//! viewer's jitter buffer.
//!
//! Frame `n` lives in slot `n % capacity`, and every slot is tagged with the
//! absolute frame it holds, so a stale frame from a previous lap is never
//! mistaken for the one wanted: lookups compare the tag, not just the slot.
//! The ring keeps a *base*, the oldest frame still needed; only frames in
//! `[base, base + capacity)` are stored, so a stored frame is never
//! overwritten by a different frame number until the base has moved past it.
//! Memory is one zeroed allocation of `capacity × 880` bytes made at start
//! (untouched pages cost nothing until a frame lands in them) plus one tag a
//! slot; nothing allocates afterwards.
//!
//! What the base means is up to the owner: the server's playback head, the
//! viewer's play position minus a little slack.

use alloc::vec;
use alloc::vec::Vec;

use crate::PACKED_LEN;

/// Marks an empty slot. No frame has that number: it is always at or past
/// `base + capacity`, so it can never be stored.
const EMPTY: u64 = u64::MAX;

/// Why a frame was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// The frame is below the base (already played, or too old to matter).
    Behind,
    /// The frame is at or beyond `base + capacity`: storing it would
    /// overwrite a frame still needed.
    Ahead,
}

/// A bounded ring of packed frames keyed by absolute frame number.
#[derive(Debug)]
pub struct FrameRing {
    /// `capacity × PACKED_LEN` bytes, slot by slot.
    buf: Vec<u8>,
    /// The absolute frame number held by each slot, or [`EMPTY`].
    tags: Vec<u64>,
    /// Oldest frame still needed; nothing below it is stored or served.
    base: u64,
    /// Slots holding a frame.
    stored: usize,
}

impl FrameRing {
    /// An empty ring of `capacity` frames (at least one) starting at frame
    /// `base`.
    pub fn new(capacity: usize, base: u64) -> Self {
        let capacity = capacity.max(1);
        Self {
            buf: vec![0; capacity * PACKED_LEN],
            tags: vec![EMPTY; capacity],
            base,
            stored: 0,
        }
    }

    /// Capacity in frames.
    pub fn capacity(&self) -> usize {
        self.tags.len()
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.stored
    }

    /// Whether no frame is held.
    pub fn is_empty(&self) -> bool {
        self.stored == 0
    }

    /// Bytes allocated for frames and their tags.
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

    fn slot(&self, frame: u64) -> usize {
        (frame % self.capacity() as u64) as usize
    }

    /// Moves the base forward to `base` (never backwards), dropping every
    /// frame below it. Costs at most one step per slot.
    pub fn advance_base(&mut self, base: u64) {
        let old = self.base;
        if base <= old {
            return;
        }
        self.base = base;
        if base - old >= self.capacity() as u64 {
            self.clear();
            return;
        }
        for frame in old..base {
            let slot = self.slot(frame);
            if self.tags[slot] == frame {
                self.tags[slot] = EMPTY;
                self.stored -= 1;
            }
        }
    }

    /// Forgets every frame and starts over at `base`, which may lie
    /// anywhere (after a long disconnect the stream may have moved).
    pub fn reset(&mut self, base: u64) {
        self.clear();
        self.base = base;
    }

    fn clear(&mut self) {
        self.tags.fill(EMPTY);
        self.stored = 0;
    }

    /// Stores one packed frame, replacing the copy already held, if any.
    pub fn insert(&mut self, frame: u64, packed: &[u8; PACKED_LEN]) -> Result<(), RingError> {
        if frame < self.base {
            return Err(RingError::Behind);
        }
        if frame >= self.limit() {
            return Err(RingError::Ahead);
        }
        let slot = self.slot(frame);
        self.buf[slot * PACKED_LEN..(slot + 1) * PACKED_LEN].copy_from_slice(packed);
        if self.tags[slot] == EMPTY {
            self.stored += 1;
        }
        self.tags[slot] = frame;
        Ok(())
    }

    /// Forgets every stored frame at or after `frame`, keeping the base (a
    /// newer timeline version superseded them: the server's store and a
    /// viewer's buffer both do this); returns how many were dropped. Costs
    /// one step per slot.
    pub fn forget_from(&mut self, frame: u64) -> usize {
        let mut dropped = 0;
        for tag in self.tags.iter_mut() {
            if *tag != EMPTY && *tag >= frame {
                *tag = EMPTY;
                dropped += 1;
            }
        }
        self.stored -= dropped;
        dropped
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
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn the_empty_tag_is_never_stored() {
        let mut r = FrameRing::new(4, u64::MAX - 2);
        assert_eq!(r.insert(u64::MAX - 1, &frame(1)), Ok(()));
        assert_eq!(r.insert(u64::MAX, &frame(1)), Err(RingError::Ahead));
        assert!(!r.contains(u64::MAX));
    }

    #[test]
    fn stale_lap_is_not_served() {
        let mut r = FrameRing::new(4, 0);
        assert_eq!(r.insert(1, &frame(1)), Ok(()));
        r.advance_base(4);
        // Slot 1 held frame 1, but frame 5 is not there.
        assert!(!r.contains(5));
        assert!(!r.contains(1));
        assert!(r.is_empty());
        assert_eq!(r.insert(5, &frame(5)), Ok(()));
        assert_eq!(r.get(5), Some(&frame(5)));
    }

    #[test]
    fn advancing_drops_old_frames_and_never_goes_back() {
        let mut r = FrameRing::new(8, 10);
        for f in 10..18 {
            assert_eq!(r.insert(f, &frame(f as u8)), Ok(()));
        }
        r.advance_base(14);
        assert_eq!(r.len(), 4);
        assert_eq!(r.get(13), None);
        assert!(r.get(14).is_some());
        r.advance_base(12);
        assert_eq!(r.base(), 14);
        assert_eq!(r.insert(21, &frame(21)), Ok(()), "room freed ahead");
        // A jump past the whole capacity empties it.
        r.advance_base(1_000);
        assert!(r.is_empty());
        r.reset(3);
        assert_eq!((r.base(), r.len()), (3, 0));
    }

    #[test]
    fn forget_from_drops_exactly_the_frames_from_there_on() {
        let mut r = FrameRing::new(8, 10);
        for f in 10..18 {
            assert_eq!(r.insert(f, &frame(f as u8)), Ok(()));
        }
        assert_eq!(r.forget_from(14), 4, "frames 14..18 dropped");
        assert_eq!(r.len(), 4);
        assert_eq!(r.base(), 10, "the base stays");
        for f in 10..14 {
            assert_eq!(r.get(f), Some(&frame(f as u8)), "frame {f} kept");
        }
        for f in 14..18 {
            assert!(!r.contains(f), "frame {f} dropped");
        }
        // The freed slots take the replacements.
        assert_eq!(r.insert(15, &frame(99)), Ok(()));
        assert_eq!(r.get(15), Some(&frame(99)));
        assert_eq!(r.len(), 5);
        // Below the base, everything goes; past the newest, nothing does.
        assert_eq!(r.forget_from(100), 0);
        assert_eq!(r.len(), 5);
        r.forget_from(0);
        assert!(r.is_empty());
        r.forget_from(u64::MAX);
        assert!(r.is_empty());
    }

    #[test]
    fn copy_range_wraps() {
        let mut r = FrameRing::new(4, 2);
        for f in 2..6 {
            assert_eq!(r.insert(f, &frame(f as u8)), Ok(()));
        }
        let mut out = Vec::new();
        assert!(r.copy_range(2, 4, &mut out));
        let tags: Vec<u8> = out.chunks(PACKED_LEN).map(|c| c[0]).collect();
        assert_eq!(tags, vec![2, 3, 4, 5]);
        let mut none = Vec::new();
        assert!(!r.copy_range(5, 2, &mut none));
        assert!(none.is_empty());
        assert!(!r.copy_range(u64::MAX, 2, &mut none));
    }

    #[test]
    fn allocation_is_proportional() {
        assert_eq!(
            FrameRing::new(100, 0).allocated_bytes(),
            100 * (PACKED_LEN + 8)
        );
    }
}
