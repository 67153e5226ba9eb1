//! Property tests for the context coder of viewer batches, from even odds
//! (`Codec::Context`) and from the trained prior (`Codec::Primed`).

use donut_shared::codec::{self, CodecError};
use donut_shared::wire::{Codec, Frames, ToViewer};
use donut_shared::{PACKED_LEN, render_packed};
use proptest::prelude::*;

/// `count` packed frames, each nibble a valid symbol code.
fn valid_frames(max_frames: usize) -> impl Strategy<Value = Vec<u8>> {
    (1..=max_frames).prop_flat_map(|n| {
        proptest::collection::vec((0u8..14, 0u8..14), n * PACKED_LEN)
            .prop_map(|pairs| pairs.into_iter().map(|(h, l)| (h << 4) | l).collect())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_valid_frames_round_trip(packed in valid_frames(3)) {
        let mut enc = Vec::new();
        codec::encode(&packed, &mut enc).expect("valid frames encode");
        let mut back = Vec::new();
        codec::decode(&enc, (packed.len() / PACKED_LEN) as u32, |_, f| back.extend_from_slice(f))
            .expect("own output decodes");
        prop_assert_eq!(back, packed);
    }

    #[test]
    fn rendered_runs_round_trip(start in any::<u64>(), count in 1u32..40) {
        let mut packed = Vec::new();
        for k in 0..u64::from(count) {
            let mut p = [0u8; PACKED_LEN];
            render_packed(start.wrapping_add(k), &mut p);
            packed.extend_from_slice(&p);
        }
        let mut enc = Vec::new();
        codec::encode(&packed, &mut enc).expect("encodes");
        let mut back = Vec::new();
        codec::decode(&enc, count, |_, f| back.extend_from_slice(f)).expect("decodes");
        prop_assert_eq!(back, packed);
    }

    #[test]
    fn rendered_frames_with_arbitrary_cells_round_trip(
        start in any::<u64>(),
        edits in proptest::collection::vec((0usize..3, 0usize..PACKED_LEN, 0u8..14, 0u8..14), 0..200),
    ) {
        // Real frames, so the step contexts are well trained, with cells
        // overwritten by any symbol: every step (one or two either way,
        // blank, escaped, out of the alphabet's middle, to and from newline)
        // must still come back exactly.
        let mut packed = Vec::new();
        for k in 0..3u64 {
            let mut p = [0u8; PACKED_LEN];
            render_packed(start.wrapping_add(k), &mut p);
            packed.extend_from_slice(&p);
        }
        for (frame, byte, hi, lo) in edits {
            packed[frame * PACKED_LEN + byte] = (hi << 4) | lo;
        }
        let mut enc = Vec::new();
        codec::encode(&packed, &mut enc).expect("valid frames encode");
        let mut back = Vec::new();
        codec::decode(&enc, 3, |_, f| back.extend_from_slice(f)).expect("own output decodes");
        prop_assert_eq!(back, packed);
    }

    #[test]
    fn decoder_never_panics_and_only_yields_valid_frames(
        payload in proptest::collection::vec(any::<u8>(), 0..2_000),
        count in 1u32..8,
    ) {
        let mut frames = 0u32;
        let result = codec::decode(&payload, count, |i, f| {
            assert_eq!(i, frames);
            assert!(donut_shared::frame::validate_packed(f).is_ok());
            frames += 1;
        });
        if result.is_ok() {
            prop_assert_eq!(frames, count);
        }
    }

    #[test]
    fn primed_arbitrary_and_rendered_frames_round_trip(
        packed in valid_frames(3),
        start in any::<u64>(),
        count in 1u32..40,
    ) {
        let mut enc = Vec::new();
        codec::encode_primed(&packed, &mut enc).expect("valid frames encode");
        let mut back = Vec::new();
        codec::decode_primed(&enc, (packed.len() / PACKED_LEN) as u32, |_, f| back.extend_from_slice(f))
            .expect("own output decodes");
        prop_assert_eq!(back, packed);
        let mut rendered = Vec::new();
        for k in 0..u64::from(count) {
            let mut p = [0u8; PACKED_LEN];
            render_packed(start.wrapping_add(k), &mut p);
            rendered.extend_from_slice(&p);
        }
        let mut enc = Vec::new();
        codec::encode_primed(&rendered, &mut enc).expect("encodes");
        // Through the wire, as a viewer decodes it.
        let mut msg = Frames::header(start, count, 3, Codec::Primed).to_vec();
        msg.extend_from_slice(&enc);
        let Ok(ToViewer::Frames(f)) = ToViewer::decode(&msg) else {
            return Err(TestCaseError::fail("a primed Frames message does not decode"));
        };
        prop_assert_eq!(f.codec, Codec::Primed);
        let mut back = Vec::new();
        f.decode_frames(|_, p| back.extend_from_slice(p)).expect("decodes");
        prop_assert_eq!(back, rendered);
    }

    #[test]
    fn primed_decoder_never_panics_and_only_yields_valid_frames(
        payload in proptest::collection::vec(any::<u8>(), 0..2_000),
        count in 1u32..8,
    ) {
        let mut frames = 0u32;
        let result = codec::decode_primed(&payload, count, |i, f| {
            assert_eq!(i, frames);
            assert!(donut_shared::frame::validate_packed(f).is_ok());
            frames += 1;
        });
        if result.is_ok() {
            prop_assert_eq!(frames, count);
        }
        let mut msg = Frames::header(7, count, 0, Codec::Primed).to_vec();
        msg.extend_from_slice(&payload);
        if let Ok(ToViewer::Frames(f)) = ToViewer::decode(&msg) {
            let _ = f.decode_frames(|_, _| {});
        }
    }

    #[test]
    fn frames_message_with_garbage_context_payload_is_an_error_not_a_panic(
        payload in proptest::collection::vec(any::<u8>(), 1..3_000),
        count in 1u32..4,
    ) {
        let mut msg = Frames::header(7, count, 0, Codec::Context).to_vec();
        msg.extend_from_slice(&payload);
        if let Ok(ToViewer::Frames(f)) = ToViewer::decode(&msg) {
            let _ = f.decode_frames(|_, _| {});
        }
    }
}

#[test]
fn corrupting_any_byte_never_yields_wrong_frames_silently_or_panics() {
    let mut packed = Vec::new();
    for n in 100..110u64 {
        let mut p = [0u8; PACKED_LEN];
        render_packed(n, &mut p);
        packed.extend_from_slice(&p);
    }
    let mut enc = Vec::new();
    codec::encode(&packed, &mut enc).expect("encodes");
    for i in 0..enc.len() {
        let mut bad = enc.clone();
        bad[i] ^= 0x5a;
        // An arithmetic code has no checksum: a flipped byte may decode to
        // other valid frames. What must hold is no panic and, on success,
        // exactly `count` valid frames.
        let mut got = 0;
        match codec::decode(&bad, 10, |_, f| {
            assert!(donut_shared::frame::validate_packed(f).is_ok());
            got += 1;
        }) {
            Ok(()) => assert_eq!(got, 10),
            Err(CodecError::Truncated | CodecError::InvalidSymbol | CodecError::TrailingBytes) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
}
