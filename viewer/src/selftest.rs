//! What the viewer does to a batch, as plain functions with i32-only C-ABI
//! exports, so the test suite can run this very artifact (the shipped wasm,
//! default or compatibility build, in today's or an old V8) without any
//! JavaScript glue and compare it with the native build: a `Frames`
//! message is decoded (header, then the batch's codec into packed frames)
//! and each packed frame unpacked into the text the screen paints, exactly
//! as [`crate::player::Player`] and [`crate::player::Player::frame_text`]
//! do.
//!
//! The exports work on a buffer in the module's memory: JavaScript asks for
//! one with `donut_selftest_buffer(len)` (its address), writes a message
//! there, calls `donut_selftest_decode()` (the number of frames, or
//! `u32::MAX` if the message does not decode) and reads the frames' records
//! at `donut_selftest_output()`: per frame, the frame number and
//! [`donut_shared::digest::fnv1a64`] of its text, both little-endian u64.

use std::sync::{Mutex, PoisonError};

use donut_shared::FRAME_LEN;
use donut_shared::wire::{DecodeError, ToViewer};

/// Calls `sink` with each frame's number and text of the `Frames` message
/// `bytes`, in order, as the player decodes and unpacks it. Returns
/// `Ok(true)` after a `Frames` message, `Ok(false)` for any other message,
/// and the decoder's error for bytes that do not decode (the frames before
/// the error may have been handed over).
pub fn decode_batch(
    bytes: &[u8],
    mut sink: impl FnMut(u64, &[u8; FRAME_LEN]),
) -> Result<bool, DecodeError> {
    let ToViewer::Frames(f) = ToViewer::decode(bytes)? else {
        return Ok(false);
    };
    let mut text = [0u8; FRAME_LEN];
    f.decode_frames(|n, packed| {
        // Every frame handed over is valid (see `decode_frames`).
        if donut_shared::unpack(packed, &mut text).is_ok() {
            sink(n, &text);
        }
    })?;
    Ok(true)
}

/// The records of [`decode_batch`]: per frame, its number and the digest
/// of its text, little-endian u64s; `None` if the message does not decode
/// as `Frames`.
pub fn decode_records(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let ok = decode_batch(bytes, |n, text| {
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&donut_shared::digest::fnv1a64(text).to_le_bytes());
    });
    matches!(ok, Ok(true)).then_some(out)
}

static INPUT: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static OUTPUT: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Makes the input buffer `len` zero bytes long; returns its address.
#[unsafe(no_mangle)]
pub extern "C" fn donut_selftest_buffer(len: u32) -> u32 {
    let mut buf = INPUT.lock().unwrap_or_else(PoisonError::into_inner);
    *buf = vec![0; len as usize];
    buf.as_ptr() as usize as u32
}

/// Decodes the input buffer with [`decode_records`] into the output
/// buffer; returns the number of frames, or `u32::MAX` if it does not
/// decode.
#[unsafe(no_mangle)]
pub extern "C" fn donut_selftest_decode() -> u32 {
    let input = INPUT.lock().unwrap_or_else(PoisonError::into_inner);
    let mut output = OUTPUT.lock().unwrap_or_else(PoisonError::into_inner);
    match decode_records(&input) {
        Some(records) => {
            *output = records;
            (output.len() / 16) as u32
        }
        None => {
            output.clear();
            u32::MAX
        }
    }
}

/// The address of the output buffer (valid until the next call).
#[unsafe(no_mangle)]
pub extern "C" fn donut_selftest_output() -> u32 {
    let output = OUTPUT.lock().unwrap_or_else(PoisonError::into_inner);
    output.as_ptr() as usize as u32
}
