//! The frame alphabet and nibble packing.
//!
//! A frame uses 14 symbols: space, the 12 luminance glyphs `.,-~:;=!*#$@`
//! and newline. Each symbol has a 4-bit code (space = 0, glyphs = 1..=12 from
//! darkest to brightest, newline = 13), packed two per byte, high nibble
//! first: 1760 symbols become 880 bytes. Codes 14 and 15 are invalid, so
//! unpacking untrusted bytes can fail, and does so with an error, never a
//! panic.

use core::fmt;

use crate::donut::FRAME_LEN;

/// Bytes of one packed frame.
pub const PACKED_LEN: usize = FRAME_LEN / 2;

/// The 14 symbols, indexed by their 4-bit code.
pub const ALPHABET: [u8; 14] = *b" .,-~:;=!*#$@\n";

/// The code of `' '`.
pub const SPACE_CODE: u8 = 0;
/// The code of `'\n'`.
pub const NEWLINE_CODE: u8 = 13;

/// Marks a byte outside the alphabet in [`CODE_OF`].
const INVALID: u8 = 0xff;

/// Maps every byte to its symbol code, or [`INVALID`].
const CODE_OF: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut code = 0;
    while code < ALPHABET.len() {
        table[ALPHABET[code] as usize] = code as u8;
        code += 1;
    }
    table
};

/// Why a frame could not be packed or unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A byte of an ASCII frame is not one of the 14 symbols.
    InvalidSymbol {
        /// Offset within the frame.
        at: usize,
        /// The offending byte.
        byte: u8,
    },
    /// A nibble of a packed frame is 14 or 15.
    InvalidCode {
        /// Offset of the symbol within the frame.
        at: usize,
        /// The offending nibble.
        code: u8,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidSymbol { at, byte } => {
                write!(f, "byte 0x{byte:02x} at offset {at} is not a frame symbol")
            }
            Self::InvalidCode { at, code } => {
                write!(f, "nibble {code} at symbol {at} is not a frame symbol code")
            }
        }
    }
}

impl core::error::Error for FrameError {}

/// The symbol code of an ASCII byte, if it is in the alphabet.
pub fn symbol_code(byte: u8) -> Option<u8> {
    match CODE_OF[usize::from(byte)] {
        INVALID => None,
        code => Some(code),
    }
}

/// Packs an ASCII frame into 880 bytes.
pub fn pack(frame: &[u8; FRAME_LEN], out: &mut [u8; PACKED_LEN]) -> Result<(), FrameError> {
    for (k, (pair, byte)) in frame.chunks_exact(2).zip(out.iter_mut()).enumerate() {
        let hi = CODE_OF[usize::from(pair[0])];
        let lo = CODE_OF[usize::from(pair[1])];
        if hi == INVALID {
            return Err(FrameError::InvalidSymbol {
                at: 2 * k,
                byte: pair[0],
            });
        }
        if lo == INVALID {
            return Err(FrameError::InvalidSymbol {
                at: 2 * k + 1,
                byte: pair[1],
            });
        }
        *byte = (hi << 4) | lo;
    }
    Ok(())
}

/// Packs symbol codes (each known to be `< 14`) into 880 bytes.
pub(crate) fn pack_codes(codes: &[u8; FRAME_LEN], out: &mut [u8; PACKED_LEN]) {
    for (pair, byte) in codes.chunks_exact(2).zip(out.iter_mut()) {
        *byte = (pair[0] << 4) | pair[1];
    }
}

/// Unpacks a packed frame into symbol codes, without validating them.
#[cfg(feature = "alloc")]
pub(crate) fn unpack_codes(packed: &[u8; PACKED_LEN], out: &mut [u8; FRAME_LEN]) {
    for (byte, pair) in packed.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = byte >> 4;
        pair[1] = byte & 0x0f;
    }
}

/// Unpacks 880 untrusted bytes into an ASCII frame.
pub fn unpack(packed: &[u8; PACKED_LEN], out: &mut [u8; FRAME_LEN]) -> Result<(), FrameError> {
    validate_packed(packed)?;
    for (byte, pair) in packed.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = ALPHABET[usize::from(byte >> 4)];
        pair[1] = ALPHABET[usize::from(byte & 0x0f)];
    }
    Ok(())
}

/// Checks that every nibble of a packed frame is a valid symbol code.
pub fn validate_packed(packed: &[u8]) -> Result<(), FrameError> {
    let bad = |code: u8| usize::from(code) >= ALPHABET.len();
    // Fast path: OR the verdicts over 64-byte blocks with no early exit
    // inside a block, so the compiler vectorises it (an `any` over the
    // whole slice stays scalar: LLVM does not vectorise early-exit loops).
    let clean = packed.chunks(64).all(|block| {
        !block
            .iter()
            .fold(false, |acc, &b| acc | bad(b >> 4) | bad(b & 0x0f))
    });
    if clean {
        return Ok(());
    }
    for (k, &b) in packed.iter().enumerate() {
        for (half, code) in [(0, b >> 4), (1, b & 0x0f)] {
            if bad(code) {
                return Err(FrameError::InvalidCode {
                    at: 2 * k + half,
                    code,
                });
            }
        }
    }
    Ok(())
}
