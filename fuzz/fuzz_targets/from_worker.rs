//! Fuzzes `FromWorker::decode`, what the server runs on every byte a browser
//! worker sends: it must never panic, its errors must fit a WebSocket close
//! reason, and whatever it accepts must re-encode to exactly the same bytes.
#![no_main]

use donut_shared::wire::{FromWorker, MAX_WORKER_MESSAGE_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match FromWorker::decode(data) {
        Ok(message) => {
            let mut out = vec![0u8; MAX_WORKER_MESSAGE_LEN];
            let n = match message {
                FromWorker::Hello(hello) => hello.encode(&mut out),
                FromWorker::Result(result) => result.encode(&mut out),
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
