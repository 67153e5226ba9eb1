//! Fuzzes `ToViewer::decode`, what every viewer runs on every broadcast and
//! relay control message (`Digest`, `Welcome`, `Assign`, `Signal`): it must
//! never panic, its errors must fit a WebSocket close reason, and whatever
//! it accepts must re-encode (`to_vec`, every variant) to exactly the same
//! bytes.
#![no_main]

use donut_shared::wire::p2p::{MAX_ICE_TEXT, MAX_SIGNAL_TEXT};
use donut_shared::wire::{MAX_VIEWER_MESSAGE_LEN, ToViewer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ToViewer::decode(data) {
        Ok(message) => {
            assert!(data.len() <= MAX_VIEWER_MESSAGE_LEN);
            match message {
                // The payload itself (context-coded batches are only
                // checked when decoded) must decode or fail cleanly.
                ToViewer::Frames(frames) => {
                    let _ = frames.decode_frames(|_, _| {});
                }
                ToViewer::Welcome(welcome) => {
                    assert!(welcome.ice_servers.len() <= MAX_ICE_TEXT);
                    assert!(welcome.ice_server_urls().all(|u| !u.is_empty()));
                }
                ToViewer::Signal(signal) => assert!(signal.text.len() <= MAX_SIGNAL_TEXT),
                ToViewer::Telemetry(_) | ToViewer::Digest(_) | ToViewer::Assign(_) => {}
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
