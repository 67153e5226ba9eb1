//! The frame alphabet and nibble packing.
//!
//! A frame uses 14 symbols: space, the 12 luminance glyphs `.,-~:;=!*#$@`
//! and newline. Each symbol has a 4-bit code (space = 0, glyphs = 1..=12 from
//! darkest to brightest, newline = 13), packed two per byte, high nibble
//! first: 1760 symbols become 880 bytes. Codes 14 and 15 are invalid, so
//! unpacking untrusted bytes can fail, and does so with an error, never a
//! panic.

use core::fmt;

use crate::donut::{DRAWN_COLS, FRAME_LEN, WIDTH};

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
    /// A valid symbol where the frame's layout (see [`validate_frame`])
    /// requires another: a glyph or blank in the newline column, a newline
    /// inside a row, or a glyph in a cell the donut can never reach.
    Layout {
        /// Offset of the symbol within the frame (row × 80 + column).
        at: usize,
        /// The symbol code found there.
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
            Self::Layout { at, code } => {
                let (row, col) = (at / WIDTH, at % WIDTH);
                let want = match Cell::at(*at) {
                    Cell::Newline => "a newline",
                    Cell::Blank => "blank (the donut never reaches it)",
                    Cell::Drawn => "a glyph or blank",
                };
                write!(f, "code {code} at row {row}, column {col}: must be {want}")
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

/// What the renderer can put in one cell of a frame.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cell {
    /// Column 79 of every row.
    Newline,
    /// Row 0 (donut.c never draws it) and columns outside
    /// [`DRAWN_COLS`]: always a space.
    Blank,
    /// A space or one of the 12 luminance glyphs.
    Drawn,
}

impl Cell {
    const fn at(symbol: usize) -> Self {
        let (row, col) = (symbol / WIDTH, symbol % WIDTH);
        if col == WIDTH - 1 {
            Self::Newline
        } else if row == 0 || col < DRAWN_COLS.start || col >= DRAWN_COLS.end {
            Self::Blank
        } else {
            Self::Drawn
        }
    }

    /// The codes allowed here are `low ..= low + span`.
    const fn allowed(self) -> (u8, u8) {
        match self {
            Self::Newline => (NEWLINE_CODE, 0),
            Self::Blank => (SPACE_CODE, 0),
            Self::Drawn => (SPACE_CODE, NEWLINE_CODE - 1),
        }
    }
}

/// Per packed byte, per nibble (high, low): the lowest code allowed and how
/// far above it codes may go, so a whole frame checks as one branch-free,
/// vectorisable pass of `code - low <= span` (unsigned, so a code below
/// `low` wraps and fails too).
struct LayoutTable {
    low: [[u8; PACKED_LEN]; 2],
    span: [[u8; PACKED_LEN]; 2],
}

const LAYOUT: LayoutTable = {
    let mut t = LayoutTable {
        low: [[0; PACKED_LEN]; 2],
        span: [[0; PACKED_LEN]; 2],
    };
    let mut k = 0;
    while k < PACKED_LEN {
        let mut half = 0;
        while half < 2 {
            let (low, span) = Cell::at(2 * k + half).allowed();
            t.low[half][k] = low;
            t.span[half][k] = span;
            half += 1;
        }
        k += 1;
    }
    t
};

/// Checks that 880 untrusted bytes are a frame the renderer could have
/// produced, as far as its layout goes: every nibble a symbol code, exactly
/// one newline per row and it in column 79, blanks in row 0 and in every
/// column outside [`DRAWN_COLS`] (see there for why the donut never reaches
/// them), and a space or a glyph everywhere else.
///
/// It cannot tell a forged glyph from a true one (only re-rendering can);
/// it catches every malformed frame, whatever the verification policy, for
/// the cost of one pass over 880 bytes.
///
/// # Errors
/// [`FrameError::InvalidCode`] or [`FrameError::Layout`] for the first
/// offending symbol.
pub fn validate_frame(packed: &[u8; PACKED_LEN]) -> Result<(), FrameError> {
    let bad = |code: u8, low: u8, span: u8| code.wrapping_sub(low) > span;
    let [hi_low, lo_low] = &LAYOUT.low;
    let [hi_span, lo_span] = &LAYOUT.span;
    let mut any = false;
    for k in 0..PACKED_LEN {
        let b = packed[k];
        any |= bad(b >> 4, hi_low[k], hi_span[k]) | bad(b & 0x0f, lo_low[k], lo_span[k]);
    }
    if !any {
        return Ok(());
    }
    validate_packed(packed)?;
    for (k, &b) in packed.iter().enumerate() {
        for (half, code) in [(0, b >> 4), (1, b & 0x0f)] {
            if bad(code, LAYOUT.low[half][k], LAYOUT.span[half][k]) {
                return Err(FrameError::Layout {
                    at: 2 * k + half,
                    code,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;

    use super::*;
    use crate::render_packed;

    fn set(packed: &mut [u8; PACKED_LEN], at: usize, code: u8) {
        let b = &mut packed[at / 2];
        *b = if at.is_multiple_of(2) {
            (code << 4) | (*b & 0x0f)
        } else {
            (*b & 0xf0) | code
        };
    }

    fn frame(n: u64) -> [u8; PACKED_LEN] {
        let mut p = [0u8; PACKED_LEN];
        render_packed(n, &mut p);
        p
    }

    #[test]
    fn rendered_frames_have_the_layout() {
        // Phases spread over whole turns of both angles, and far frames.
        let far = [1 << 32, 1 << 53, u64::MAX - 1, 0x9e37_79b9_7f4a_7c15];
        for n in (0..4_000u64).map(|k| k * 37).chain(far) {
            assert_eq!(validate_frame(&frame(n)), Ok(()), "frame {n}");
        }
    }

    #[test]
    fn a_glyph_in_the_newline_column_is_refused() {
        // The smallest input: `@` (12) at symbol 79.
        let mut p = frame(20);
        set(&mut p, 79, 12);
        assert_eq!(
            validate_frame(&p),
            Err(FrameError::Layout { at: 79, code: 12 })
        );
        let text = FrameError::Layout { at: 79, code: 12 }.to_string();
        assert!(
            text.contains("row 0, column 79") && text.contains("newline"),
            "{text}"
        );
    }

    #[test]
    fn a_newline_inside_a_row_is_refused() {
        let mut p = frame(7);
        let at = 10 * WIDTH + 40;
        set(&mut p, at, NEWLINE_CODE);
        assert_eq!(validate_frame(&p), Err(FrameError::Layout { at, code: 13 }));
    }

    #[test]
    fn a_glyph_where_the_donut_never_reaches_is_refused() {
        for at in [
            5,
            3 * WIDTH + 2,
            3 * WIDTH + DRAWN_COLS.end,
            21 * WIDTH + 78,
        ] {
            let mut p = frame(99);
            set(&mut p, at, 5);
            assert_eq!(
                validate_frame(&p),
                Err(FrameError::Layout { at, code: 5 }),
                "{at}"
            );
        }
    }

    #[test]
    fn invalid_codes_are_still_named_as_such() {
        let mut p = frame(1);
        set(&mut p, 500, 15);
        assert_eq!(
            validate_frame(&p),
            Err(FrameError::InvalidCode { at: 500, code: 15 })
        );
    }
}
