//! Fuzzes `tunnel::Up::decode` and `tunnel::Down::decode`, what a cluster
//! node runs on every message read from the cluster's Redis streams (a
//! tunnelled worker's message, a viewer's push, the leader's answer): they
//! must never panic, their errors must fit a close reason, and whatever
//! they accept must re-encode to exactly the same bytes.
#![no_main]

use donut_shared::wire::tunnel::{Down, Up};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Up::decode(data) {
        Ok(up) => assert_eq!(up.to_vec(), data),
        Err(error) => assert!(error.to_string().len() <= 123, "{error}"),
    }
    match Down::decode(data) {
        Ok(down) => assert_eq!(down.to_vec(), data),
        Err(error) => assert!(error.to_string().len() <= 123, "{error}"),
    }
});
