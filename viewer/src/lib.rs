//! The Distributed Donut viewer, compiled to wasm: receives the server's
//! broadcast batches, decodes them with the shared crate and plays them on a
//! `<canvas>` at the show's 60 fps, with the live telemetry panel.
//!
//! - [`jitter`]: frames keyed by absolute frame number, bounded.
//! - [`clock`]: the server-synchronised playback clock, rate meter, history.
//! - [`input`]: drags and arrow keys into rate-limited `Input` messages
//!   (plain Rust, tested natively and under wasm-bindgen-test).
//! - [`player`]: which frame is due on each refresh (plain Rust, tested
//!   natively and under wasm-bindgen-test).
//! - [`predict`]: the steering page draws its own push at once (plain
//!   Rust, tested natively and under wasm-bindgen-test).
//! - [`p2p`]: the peer relay (batches from a parent viewer over WebRTC,
//!   checked against the server's digests, passed on to children).
//! - [`screen`], [`panel`]: canvas drawing and the DOM panel.
//! - [`selftest`]: the batch decoding as C-ABI exports, for the tests that
//!   run the shipped wasm (default and compatibility builds) in Node.
//! - [`app`]: the WebSocket, the animation loop and the page's handle,
//!   [`DonutViewer`].

use wasm_bindgen::prelude::*;

pub mod app;
pub mod clock;
pub mod input;
pub mod jitter;
pub mod p2p;
pub mod panel;
pub mod player;
pub mod predict;
pub mod screen;
pub mod selftest;

pub use app::DonutViewer;

/// The protocol version this viewer speaks.
#[wasm_bindgen(js_name = protocolVersion)]
pub fn protocol_version() -> u8 {
    donut_shared::wire::PROTOCOL_VERSION
}
