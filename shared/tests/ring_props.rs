//! Property test of the tagged frame ring against a plain model: under any
//! sequence of inserts, base moves and resets, the ring holds exactly the
//! frames the model says, in the window `[base, base + capacity)`, and
//! never serves a frame from another lap.

use std::collections::BTreeMap;

use donut_shared::PACKED_LEN;
use donut_shared::ring::{FrameRing, RingError};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Insert frame `base + offset` (offset may reach past the window).
    Insert(u64),
    /// Insert a frame below the base.
    InsertBehind(u64),
    /// Advance the base by this much (zero or a backwards move is a no-op).
    Advance(u64),
    /// Start over at the base plus this much.
    Reset(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..24).prop_map(Op::Insert),
        1 => (1u64..8).prop_map(Op::InsertBehind),
        2 => (0u64..12).prop_map(Op::Advance),
        1 => (0u64..40).prop_map(Op::Reset),
    ]
}

/// A frame's bytes, distinct per frame number.
fn packed(frame: u64) -> [u8; PACKED_LEN] {
    let mut out = [0u8; PACKED_LEN];
    out[..8].copy_from_slice(&frame.to_be_bytes());
    out
}

proptest! {
    #[test]
    fn the_ring_matches_its_model(
        capacity in 1usize..12,
        start in prop_oneof![0u64..100, (u64::MAX - 60)..=u64::MAX - 30],
        ops in prop::collection::vec(op(), 0..80),
    ) {
        let mut ring = FrameRing::new(capacity, start);
        let mut model: BTreeMap<u64, [u8; PACKED_LEN]> = BTreeMap::new();
        let mut base = start;
        let cap = capacity as u64;
        for op in ops {
            match op {
                Op::Insert(offset) => {
                    let Some(frame) = base.checked_add(offset) else { continue };
                    let got = ring.insert(frame, &packed(frame));
                    if frame < base.saturating_add(cap) {
                        prop_assert_eq!(got, Ok(()));
                        model.insert(frame, packed(frame));
                    } else {
                        prop_assert_eq!(got, Err(RingError::Ahead));
                    }
                }
                Op::InsertBehind(back) => {
                    let Some(frame) = base.checked_sub(back) else { continue };
                    prop_assert_eq!(ring.insert(frame, &packed(frame)), Err(RingError::Behind));
                }
                Op::Advance(by) => {
                    base = base.saturating_add(by);
                    ring.advance_base(base);
                    model.retain(|f, _| *f >= base);
                }
                Op::Reset(by) => {
                    base = base.saturating_add(by);
                    ring.reset(base);
                    model.clear();
                }
            }
            prop_assert_eq!(ring.base(), base);
            prop_assert_eq!(ring.limit(), base.saturating_add(cap));
            prop_assert_eq!(ring.len(), model.len());
            // Every frame around the window, including the other laps of
            // each slot, is served exactly when the model holds it.
            let lo = base.saturating_sub(2 * cap);
            let hi = base.saturating_add(3 * cap);
            for f in lo..hi {
                prop_assert_eq!(ring.get(f), model.get(&f), "frame {}", f);
                prop_assert_eq!(ring.contains(f), model.contains_key(&f));
            }
            // copy_range succeeds exactly over runs the model holds whole.
            let mut out = Vec::new();
            let whole = base
                .checked_add(2)
                .is_some_and(|end| (base..end).all(|f| model.contains_key(&f)));
            prop_assert_eq!(ring.copy_range(base, 2, &mut out), whole);
            if whole {
                prop_assert_eq!(&out[..PACKED_LEN], &packed(base)[..]);
                prop_assert_eq!(&out[PACKED_LEN..], &packed(base + 1)[..]);
            } else {
                prop_assert!(out.is_empty());
            }
        }
    }
}
