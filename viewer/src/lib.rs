//! The Distributed Donut viewer, compiled to wasm: decodes broadcast batches
//! with the shared crate and plays them on a canvas.

use wasm_bindgen::prelude::*;

/// The protocol version this viewer speaks.
#[wasm_bindgen(js_name = protocolVersion)]
pub fn protocol_version() -> u8 {
    donut_shared::wire::PROTOCOL_VERSION
}
