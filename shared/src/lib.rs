//! The one source of truth for Distributed Donut: the donut math, the glyph
//! alphabet and frame packing, and the wire protocol.
//!
//! This crate is `#![no_std]` and allocation-free on every hot path so the
//! very same code runs natively inside the server (which re-renders frames to
//! verify what browsers send) and as `wasm32-unknown-unknown` inside every
//! browser's Web Worker. Frames are a pure function of their absolute `u64`
//! frame number, and the output is bit-identical on every target: the math
//! uses only IEEE-754 add, multiply and divide on constant tables generated at
//! build time, plus the portable `libm` crate for the per-frame angles.
//!
//! Layout:
//! - [`donut`]: `render(frame, &mut [u8; 1760])`, a1k0n's donut.
//! - [`frame`]: the 14-symbol alphabet and nibble packing (880 bytes a frame).
//! - [`wire`]: every message the server, browsers and native workers
//!   exchange, with allocation-free encode and zero-copy decode.
//! - [`scene`]: what viewers steer: a pose, a spin, friction; the state a
//!   task carries so that any worker can render any range.
//! - [`steer`]: how pushes fold into a scene change (server and page).
//! - [`codec`]: context-modelled range coding of frame batches for viewers.
//! - [`digest`]: a small stable hash used by tests and the selftest export.
//! - [`backoff`]: reconnect delays and endpoint URLs for the browser clients.
//! - `ring` (with `alloc`): the tagged frame ring, packed frames keyed by
//!   absolute frame number (the server's store, the viewer's jitter buffer).
#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod backoff;
pub mod codec;
pub mod digest;
pub mod donut;
pub mod frame;
#[cfg(feature = "alloc")]
pub mod ring;
pub mod scene;
mod simd;
pub mod steer;
pub mod wire;

pub use donut::{
    FRAME_LEN, HEIGHT, Pose, WIDTH, render, render_packed, render_pose, render_pose_packed,
};
pub use frame::{FrameError, PACKED_LEN, pack, unpack};
