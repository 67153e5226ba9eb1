//! The Distributed Donut Web Worker, compiled to wasm.
//!
//! A page starts a dedicated Web Worker (`www/worker.js`) that loads this
//! crate and constructs a [`WorkerAgent`]. The agent connects to the
//! server's `/ws/worker`, renders the frame ranges it is assigned with the
//! shared crate and sends them back, packed, in `Result` messages.
//!
//! - [`task_loop`]: the protocol as plain Rust (decode, queue, render one
//!   frame per step into the reply); unit-tested natively.
//! - [`budget`]: the duty cycle capping rendering to a share of one core,
//!   and what it cost; unit-tested natively.
//! - [`agent`]: the browser glue (WebSocket, yielding pump, page messages).
//!
//! Besides the worker itself it exports `donut_selftest_digest`, a plain
//! numeric C-ABI function the test suite calls from an embedded wasm runtime
//! to prove this very artifact renders the same bytes as the native build.

use wasm_bindgen::prelude::*;

pub mod agent;
pub mod budget;
pub mod task_loop;

pub use agent::WorkerAgent;

/// Digest of absolute frame `frame` as this build renders it (see
/// `donut_shared::digest::frame_digest`). A plain C-ABI export, so the
/// determinism test can call it without any JavaScript glue.
#[unsafe(no_mangle)]
pub extern "C" fn donut_selftest_digest(frame: u64) -> u64 {
    donut_shared::digest::frame_digest(frame)
}

/// Digest of frame `k` of the scripted input log
/// (`donut_shared::digest::scripted_scene`), for the determinism test of
/// steered scenes.
#[unsafe(no_mangle)]
pub extern "C" fn donut_selftest_scripted_digest(k: u64) -> u64 {
    donut_shared::digest::pose_digest(donut_shared::digest::scripted_scene(k).pose)
}

/// Renders and packs absolute frame `frame` exactly as the worker does for
/// a task, returning a checksum of the packed bytes so the work cannot be
/// optimised away. A plain C-ABI export for benchmarks (bench/wasm-node.mjs).
#[unsafe(no_mangle)]
pub extern "C" fn donut_selftest_render_packed(frame: u64) -> u32 {
    let mut packed = [0u8; donut_shared::PACKED_LEN];
    donut_shared::render_packed(frame, &mut packed);
    donut_shared::digest::fnv1a64(&packed) as u32
}

/// The protocol version this worker speaks.
#[wasm_bindgen(js_name = protocolVersion)]
pub fn protocol_version() -> u8 {
    donut_shared::wire::PROTOCOL_VERSION
}

/// The buffer of the i32-only selftest exports below, in this module's
/// memory: engines without the BigInt-to-i64 boundary (Chromium before 85,
/// Node before 15) cannot call the `u64` exports above, so the determinism
/// test of the compatibility build in old V8s goes through memory instead.
static SELFTEST: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

/// Makes the selftest buffer `len` zero bytes long and returns its address
/// in this module's memory (the caller writes `len / 8` little-endian u64
/// frame numbers there, then calls [`donut_selftest_digests`]).
#[unsafe(no_mangle)]
pub extern "C" fn donut_selftest_buffer(len: u32) -> u32 {
    let mut buf = SELFTEST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *buf = vec![0; len as usize];
    buf.as_ptr() as usize as u32
}

/// Replaces every little-endian u64 in the selftest buffer with its digest:
/// [`donut_selftest_digest`]'s when `scripted` is 0, else
/// [`donut_selftest_scripted_digest`]'s. Trailing bytes short of 8 are left.
#[unsafe(no_mangle)]
pub extern "C" fn donut_selftest_digests(scripted: u32) {
    let mut buf = SELFTEST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for chunk in buf.as_chunks_mut::<8>().0 {
        let k = u64::from_le_bytes(*chunk);
        let digest = if scripted == 0 {
            donut_selftest_digest(k)
        } else {
            donut_selftest_scripted_digest(k)
        };
        *chunk = digest.to_le_bytes();
    }
}
