//! The Distributed Donut viewer, compiled to wasm: receives the server's
//! broadcast batches, decodes them with the shared crate and plays them on a
//! `<canvas>` at the show's 60 fps, with the live telemetry panel.
//!
//! - [`batch`]: a `Frames` message decoded once (its bytes and header).
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
//! - [`screen`]: canvas drawing.
//! - [`panel`]: the DOM panel and every word it shows (pure functions of
//!   the figures, tested natively).
//! - [`selftest`]: the batch decoding as C-ABI exports, for the tests that
//!   run the shipped wasm (default and compatibility builds) in Node.
//! - [`web`]: the page, split as eframe's web runner is:
//!   `web/handle.rs` ([`DonutViewer`], the handle JS holds: constructor and
//!   switches), `web/runner.rs` (the state, the WebSocket, the animation
//!   loop and the one `route` that decodes each message once),
//!   `web/events.rs` (the steering listeners) and `web/probes.rs` (what
//!   the tests and benches read, behind one typed boundary).

use wasm_bindgen::prelude::*;

pub mod batch;
pub mod clock;
pub mod input;
pub mod jitter;
pub mod p2p;
pub mod panel;
pub mod player;
pub mod predict;
pub mod screen;
pub mod selftest;
pub mod web;

pub use web::DonutViewer;

/// The protocol version this viewer speaks.
#[wasm_bindgen(js_name = protocolVersion)]
pub fn protocol_version() -> u8 {
    donut_shared::wire::PROTOCOL_VERSION
}
