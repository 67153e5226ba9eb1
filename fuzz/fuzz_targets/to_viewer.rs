//! Fuzzes `ToViewer::decode`, what every viewer runs on every broadcast: it
//! must never panic, its errors must fit a WebSocket close reason, and
//! whatever it accepts must re-encode to exactly the same bytes.
#![no_main]

use donut_shared::wire::{MAX_VIEWER_MESSAGE_LEN, ToViewer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ToViewer::decode(data) {
        Ok(message) => {
            if let ToViewer::Frames(frames) = message {
                // The payload itself (context-coded batches are only checked
                // when decoded) must decode or fail cleanly.
                let _ = frames.decode_frames(|_, _| {});
            }
            let mut out = vec![0u8; MAX_VIEWER_MESSAGE_LEN];
            let n = match message {
                ToViewer::Frames(frames) => frames.encode(&mut out),
                ToViewer::Telemetry(telemetry) => telemetry.encode(&mut out),
            }
            .expect("an accepted message fits the largest buffer");
            assert_eq!(
                &out[..n],
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
