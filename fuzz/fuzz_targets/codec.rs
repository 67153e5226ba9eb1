//! Fuzzes `codec::decode` and `codec::decode_primed`, the context decoders
//! (from even odds and from the trained prior) every viewer runs on every
//! broadcast batch: they must never panic, and on success they must have
//! handed over exactly `count` frames, each a valid packed frame.
#![no_main]

use donut_shared::codec;
use donut_shared::frame::validate_packed;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&count, payload)) = data.split_first() else {
        return;
    };
    let count = u32::from(count % 16) + 1;
    for primed in [false, true] {
        let mut seen = 0u32;
        let sink = |i: u32, frame: &[u8; donut_shared::PACKED_LEN]| {
            assert_eq!(i, seen, "frames out of order");
            assert!(validate_packed(frame).is_ok(), "invalid frame handed over");
            seen += 1;
        };
        let result = match primed {
            false => codec::decode(payload, count, sink),
            true => codec::decode_primed(payload, count, sink),
        };
        if result.is_ok() {
            assert_eq!(seen, count, "success with the wrong number of frames");
        }
    }
});
