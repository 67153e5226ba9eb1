//! Fuzzes `FromViewer::decode`, what the server runs on every message a
//! viewer sends (a push on the donut): it must never panic, its errors must
//! fit a WebSocket close reason, and whatever it accepts must be within the
//! input cap and re-encode to exactly the same bytes.
#![no_main]

use donut_shared::wire::{FromViewer, MAX_INPUT_UNITS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match FromViewer::decode(data) {
        Ok(FromViewer::Input(input)) => {
            assert_eq!(&input.to_bytes()[..], data);
            assert!(input.a.abs() <= MAX_INPUT_UNITS && input.b.abs() <= MAX_INPUT_UNITS);
        }
        Err(error) => assert!(
            error.to_string().len() <= 123,
            "close reason too long: {error}"
        ),
    }
});
