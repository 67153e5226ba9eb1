//! The Distributed Donut Web Worker, compiled to wasm.
//!
//! Besides the worker itself it exports `donut_selftest_digest`, a plain
//! numeric C-ABI function the test suite calls from an embedded wasm runtime
//! to prove this very artifact renders the same bytes as the native build.

use wasm_bindgen::prelude::*;

/// Digest of absolute frame `frame` as this build renders it (see
/// `donut_shared::digest::frame_digest`). A plain C-ABI export, so the
/// determinism test can call it without any JavaScript glue.
#[unsafe(no_mangle)]
pub extern "C" fn donut_selftest_digest(frame: u64) -> u64 {
    donut_shared::digest::frame_digest(frame)
}

/// The protocol version this worker speaks.
#[wasm_bindgen(js_name = protocolVersion)]
pub fn protocol_version() -> u8 {
    donut_shared::wire::PROTOCOL_VERSION
}
