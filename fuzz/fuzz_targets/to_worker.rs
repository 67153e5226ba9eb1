//! Fuzzes `ToWorker::decode`, what a worker runs on every message from the
//! server: it must never panic, its errors must fit a WebSocket close
//! reason, and whatever it accepts must re-encode to exactly the same bytes.
#![no_main]

use donut_shared::wire::ToWorker;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ToWorker::decode(data) {
        Ok(ToWorker::Task(task)) => assert_eq!(&task.to_bytes()[..], data),
        Ok(ToWorker::Telemetry(telemetry)) => assert_eq!(&telemetry.to_bytes()[..], data),
        Err(error) => assert!(
            error.to_string().len() <= 123,
            "close reason too long: {error}"
        ),
    }
});
