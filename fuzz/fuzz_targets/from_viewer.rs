//! Fuzzes `FromViewer::decode`, what the server runs on every message a
//! viewer sends (a push on the donut, or a relay message: `Peering`,
//! `Signal`, `Link`, `Fetch`, `Report`): it must never panic, its errors
//! must fit a WebSocket close reason, and whatever it accepts must be
//! within its caps and re-encode (`to_vec`, every variant) to exactly the
//! same bytes.
#![no_main]

use donut_shared::wire::p2p::{MAX_FROM_VIEWER_LEN, MAX_SIGNAL_TEXT};
use donut_shared::wire::{FromViewer, MAX_INPUT_UNITS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match FromViewer::decode(data) {
        Ok(message) => {
            assert!(data.len() <= MAX_FROM_VIEWER_LEN);
            match message {
                FromViewer::Input(input) => {
                    assert!(input.a.abs() <= MAX_INPUT_UNITS && input.b.abs() <= MAX_INPUT_UNITS);
                }
                FromViewer::Signal(signal) => assert!(signal.text.len() <= MAX_SIGNAL_TEXT),
                FromViewer::Peering(_)
                | FromViewer::Link(_)
                | FromViewer::Fetch(_)
                | FromViewer::Report(_) => {}
            }
            assert_eq!(
                message.to_vec(),
                data,
                "accepted bytes do not re-encode identically"
            );
        }
        Err(error) => assert!(
            error.to_string().len() <= 123,
            "close reason too long: {error}"
        ),
    }
});
