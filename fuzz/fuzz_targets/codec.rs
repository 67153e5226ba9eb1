//! Fuzzes `codec::decode`, the context decoder every viewer runs on every
//! broadcast batch: it must never panic, and on success it must have handed
//! over exactly `count` frames, each a valid packed frame.
#![no_main]

use donut_shared::codec;
use donut_shared::frame::validate_packed;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&count, payload)) = data.split_first() else {
        return;
    };
    let count = u32::from(count % 16) + 1;
    let mut seen = 0u32;
    let result = codec::decode(payload, count, |i, frame| {
        assert_eq!(i, seen, "frames out of order");
        assert!(validate_packed(frame).is_ok(), "invalid frame handed over");
        seen += 1;
    });
    if result.is_ok() {
        assert_eq!(seen, count, "success with the wrong number of frames");
    }
});
