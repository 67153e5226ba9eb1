//! `Codec::Context`: lossless, context-modelled range coding of a batch of
//! frames, about nine times smaller than nibble packing.
//!
//! Frames of the donut are highly structured: most cells are blank, a cell
//! usually shows what it showed one frame earlier, and changes cluster along
//! the moving edges of the shading. Each cell of each frame is coded, in
//! order, as
//!
//! 1. one binary decision, "same symbol as this cell in the previous frame",
//!    whose probability is learnt per context (the previous symbol here, the
//!    symbol just coded to the left, and whether the left and upper
//!    neighbours changed), then
//! 2. only when it changed, the new 4-bit symbol code as four binary
//!    decisions down a tree, learnt per context (previous symbol, left
//!    symbol).
//!
//! Blank margins are cheaper still: where a cell is *quiet* (blank before,
//! blank to its left, nothing changed to its left or above), the run of
//! cells in its row that would all stay quiet is offered first as one
//! decision, "all unchanged", and skipped when it is. About two thirds of a
//! frame's cells go by that way, in some 40 runs.
//!
//! Decisions go through an adaptive binary range coder (the LZMA design:
//! 32-bit range, 12-bit probabilities adapting fast at first, then by 1/16 of
//! their error). The
//! first frame of a batch has no previous frame, so it is predicted from
//! itself, each row from the row above: every batch decodes on its own and a
//! viewer joining mid-stream needs nothing older.
//! Models start afresh in every batch; the server encodes each batch once and
//! sends the same bytes to every viewer.
//!
//! Decoding never panics and never allocates: garbage input yields
//! [`CodecError`], and output is bounded by the `count` the caller passes
//! (capped by the wire protocol before this runs).

use core::fmt;

use crate::donut::{FRAME_LEN, WIDTH};
use crate::frame::{ALPHABET, NEWLINE_CODE, PACKED_LEN, SPACE_CODE};

/// Distinct symbol codes.
const SYMBOLS: usize = ALPHABET.len();
/// Probability precision in bits.
const PROB_BITS: u32 = 12;
/// An even chance.
const PROB_HALF: u16 = 1 << (PROB_BITS - 1);
/// The range is renormalised whenever it drops below this.
const TOP: u32 = 1 << 24;
/// Contexts of the "same as before" decision: previous symbol × left symbol
/// × left changed × up changed.
const SAME_CONTEXTS: usize = SYMBOLS * SYMBOLS * 4;
/// Contexts of the symbol tree: previous symbol × left symbol, 16 nodes each.
const TREE_CONTEXTS: usize = SYMBOLS * SYMBOLS * 16;
/// Shortest quiet run offered as a whole.
const MIN_RUN: usize = 4;
/// Contexts of the "quiet run all unchanged" decision, by run length.
const RUN_CONTEXTS: usize = 8;

/// The context of a quiet run of `len` cells: its length, bucketed.
#[inline(always)]
fn run_ctx(len: usize) -> usize {
    (len / 8).min(RUN_CONTEXTS - 1)
}

/// Why a `Codec::Context` payload could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// The payload ended before `count` frames were decoded.
    Truncated,
    /// A decoded symbol code is 14 or 15.
    InvalidSymbol,
    /// Bytes remain after `count` frames.
    TrailingBytes,
    /// The input to the encoder is not a whole number of valid packed frames.
    InvalidInput,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Truncated => "context-coded payload is truncated",
            Self::InvalidSymbol => "context-coded payload decodes to an invalid symbol",
            Self::TrailingBytes => "context-coded payload has trailing bytes",
            Self::InvalidInput => "frames to encode are not valid packed frames",
        })
    }
}

impl core::error::Error for CodecError {}

/// The adaptive probabilities, identical on both sides.
struct Model {
    same: [Prob; SAME_CONTEXTS],
    tree: [Prob; TREE_CONTEXTS],
    run: [Prob; RUN_CONTEXTS],
}

impl Model {
    fn new() -> Self {
        Self {
            same: [Prob::NEW; SAME_CONTEXTS],
            tree: [Prob::NEW; TREE_CONTEXTS],
            run: [Prob::NEW; RUN_CONTEXTS],
        }
    }
}

/// The neighbourhood the contexts are drawn from, carried along as a frame
/// is walked cell by cell (left to right, top to bottom), so encoder and
/// decoder derive identical contexts with a handful of register operations.
struct Walk {
    /// The symbol just coded (for the first cell, a newline).
    left: usize,
    /// Whether it differs from the previous frame.
    left_changed: bool,
    /// For each column, whether the cell above changed.
    up_changed: [bool; WIDTH],
}

impl Walk {
    fn new() -> Self {
        Self {
            left: usize::from(NEWLINE_CODE),
            left_changed: false,
            up_changed: [false; WIDTH],
        }
    }

    /// Context of the "same as before" decision for a cell whose previous
    /// symbol is `prev`, in column `col`.
    #[inline(always)]
    fn same_ctx(&self, prev: usize, col: usize) -> usize {
        ((prev * SYMBOLS + self.left) * 2 + usize::from(self.left_changed)) * 2
            + usize::from(self.up_changed[col])
    }

    /// First of the 16 tree probabilities for a changed cell.
    #[inline(always)]
    fn tree_base(&self, prev: usize) -> usize {
        (prev * SYMBOLS + self.left) * 16
    }

    /// Whether a cell is *quiet*: blank before, blank to its left, and
    /// nothing changed to its left or above. Runs of quiet cells (the blank
    /// margins around the donut) are offered as a whole first.
    #[inline(always)]
    fn quiet(&self, prev: u8, col: usize) -> bool {
        prev == SPACE_CODE
            && self.left == usize::from(SPACE_CODE)
            && !self.left_changed
            && !self.up_changed[col]
    }

    /// How many cells from quiet cell `k` on, within its row, would stay
    /// quiet if none of them changed.
    #[inline(always)]
    fn quiet_run(&self, prev: &[u8; FRAME_LEN], k: usize) -> usize {
        let row_end = (k / WIDTH + 1) * WIDTH;
        let mut end = k + 1;
        while end < row_end && prev[end] == SPACE_CODE && !self.up_changed[end % WIDTH] {
            end += 1;
        }
        end - k
    }

    /// Records the symbol coded in column `col`.
    #[inline(always)]
    fn step(&mut self, col: usize, sym: u8, changed: bool) {
        self.left = usize::from(sym);
        self.left_changed = changed;
        self.up_changed[col] = changed;
    }
}

/// The frame every batch's first frame is coded against.
fn blank_frame() -> [u8; FRAME_LEN] {
    let mut f = [SPACE_CODE; FRAME_LEN];
    for row in 0..FRAME_LEN / WIDTH {
        f[row * WIDTH + WIDTH - 1] = NEWLINE_CODE;
    }
    f
}

/// The first frame of a batch has no previous frame, so it is predicted from
/// itself: once row `r` is complete (cell `k - 1` was just coded), it becomes
/// the prediction for row `r + 1`; row 0 is predicted from blank.
#[inline(always)]
fn predict_row_below(cur: &[u8; FRAME_LEN], prev: &mut [u8; FRAME_LEN], k: usize) {
    if k.is_multiple_of(WIDTH) && k < FRAME_LEN {
        prev[k..k + WIDTH].copy_from_slice(&cur[k - WIDTH..k]);
    }
}

/// An adaptive probability that the next decision is 0, in 12 bits, with
/// how many decisions it has seen: it learns fast at first (moving halfway,
/// then a quarter, then an eighth) and settles at 1/16, so a batch's many rarely-seen
/// contexts cost little.
#[derive(Clone, Copy)]
struct Prob {
    p: u16,
    seen: u8,
}

/// Adaptation shift by decisions seen.
const RATE: [u8; 8] = [1, 2, 2, 3, 3, 3, 4, 4];

impl Prob {
    const NEW: Self = Self {
        p: PROB_HALF,
        seen: 0,
    };

    #[inline(always)]
    fn get(&self) -> u32 {
        u32::from(self.p)
    }

    #[inline(always)]
    fn adapt(&mut self, bit: bool) {
        let shift = RATE[usize::from(self.seen)];
        if bit {
            self.p -= self.p >> shift;
        } else {
            self.p += ((1 << PROB_BITS) - self.p) >> shift;
        }
        self.seen = (self.seen + 1).min(RATE.len() as u8 - 1);
    }
}

/// Encodes whole packed frames (`packed.len()` a multiple of [`PACKED_LEN`],
/// every nibble a valid code) as a `Codec::Context` payload appended to `out`.
#[cfg(feature = "alloc")]
pub fn encode(packed: &[u8], out: &mut alloc::vec::Vec<u8>) -> Result<(), CodecError> {
    let (frames, rest) = packed.as_chunks::<PACKED_LEN>();
    if !rest.is_empty()
        || frames
            .iter()
            .any(|f| crate::frame::validate_packed(f).is_err())
    {
        return Err(CodecError::InvalidInput);
    }
    let mut model = Model::new();
    let mut enc = Encoder::new(out);
    let mut prev = blank_frame();
    let mut cur = [0u8; FRAME_LEN];
    for (index, frame) in frames.iter().enumerate() {
        crate::frame::unpack_codes(frame, &mut cur);
        code_frame(&mut enc, &mut model, &mut prev, &mut cur, index == 0)?;
        prev = cur;
    }
    enc.finish();
    Ok(())
}

/// Decodes a `Codec::Context` payload of exactly `count` frames, handing
/// each packed frame to `sink` in order.
pub fn decode(
    payload: &[u8],
    count: u32,
    mut sink: impl FnMut(u32, &[u8; PACKED_LEN]),
) -> Result<(), CodecError> {
    let mut model = Model::new();
    let mut dec = Decoder::new(payload)?;
    let mut prev = blank_frame();
    let mut cur = [0u8; FRAME_LEN];
    let mut packed = [0u8; PACKED_LEN];
    for index in 0..count {
        code_frame(&mut dec, &mut model, &mut prev, &mut cur, index == 0)?;
        crate::frame::pack_codes(&cur, &mut packed);
        sink(index, &packed);
        prev = cur;
    }
    dec.finish()
}

/// One side of the range coder. Encoder and decoder walk a frame through the
/// very same [`code_frame`], so their contexts can never drift apart: the
/// encoder codes the bit it is handed, the decoder never asks for it and
/// returns the bit it reads instead.
trait BitCoder {
    fn code(&mut self, prob: &mut Prob, bit: impl FnOnce() -> bool) -> Result<bool, CodecError>;
}

/// Codes one frame against `prev`. For the encoder `cur` holds the frame;
/// for the decoder it receives it. In the first frame of a batch (`first`),
/// each finished row becomes the prediction for the next one.
#[inline(always)]
fn code_frame(
    coder: &mut impl BitCoder,
    model: &mut Model,
    prev: &mut [u8; FRAME_LEN],
    cur: &mut [u8; FRAME_LEN],
    first: bool,
) -> Result<(), CodecError> {
    let mut walk = Walk::new();
    let mut k = 0;
    // Cells before this index were already offered as a quiet run.
    let mut no_run_before = 0;
    while k < FRAME_LEN {
        let col = k % WIDTH;
        let p = prev[k];
        if k >= no_run_before && walk.quiet(p, col) {
            let len = walk.quiet_run(prev, k);
            if len >= MIN_RUN {
                let dirty = coder.code(&mut model.run[run_ctx(len)], || {
                    cur[k..k + len].iter().any(|&s| s != SPACE_CODE)
                })?;
                if !dirty {
                    cur[k..k + len].fill(SPACE_CODE);
                    k += len;
                    if first {
                        predict_row_below(cur, prev, k);
                    }
                    continue;
                }
                no_run_before = k + len;
            }
        }
        let known = cur[k];
        let changed = coder.code(&mut model.same[walk.same_ctx(usize::from(p), col)], || {
            known != p
        })?;
        let sym = if changed {
            let base = walk.tree_base(usize::from(p));
            let mut node = 1;
            for shift in (0..4).rev() {
                let bit = coder.code(&mut model.tree[base + node], || (known >> shift) & 1 == 1)?;
                node = node * 2 + usize::from(bit);
            }
            let sym = node - 16;
            if sym >= SYMBOLS {
                return Err(CodecError::InvalidSymbol);
            }
            sym as u8
        } else {
            p
        };
        cur[k] = sym;
        walk.step(col, sym, changed);
        k += 1;
        if first {
            predict_row_below(cur, prev, k);
        }
    }
    Ok(())
}

#[cfg(feature = "alloc")]
impl BitCoder for Encoder<'_> {
    #[inline(always)]
    fn code(&mut self, prob: &mut Prob, bit: impl FnOnce() -> bool) -> Result<bool, CodecError> {
        let bit = bit();
        self.bit(prob, bit);
        Ok(bit)
    }
}

impl BitCoder for Decoder<'_> {
    #[inline(always)]
    fn code(&mut self, prob: &mut Prob, _: impl FnOnce() -> bool) -> Result<bool, CodecError> {
        self.bit(prob)
    }
}

/// The LZMA-style range encoder.
#[cfg(feature = "alloc")]
struct Encoder<'a> {
    out: &'a mut alloc::vec::Vec<u8>,
    low: u64,
    range: u32,
    cache: u8,
    cache_size: u64,
}

#[cfg(feature = "alloc")]
impl<'a> Encoder<'a> {
    fn new(out: &'a mut alloc::vec::Vec<u8>) -> Self {
        Self {
            out,
            low: 0,
            range: u32::MAX,
            cache: 0,
            cache_size: 1,
        }
    }

    fn bit(&mut self, prob: &mut Prob, bit: bool) {
        let bound = (self.range >> PROB_BITS) * prob.get();
        if bit {
            self.low += u64::from(bound);
            self.range -= bound;
        } else {
            self.range = bound;
        }
        prob.adapt(bit);
        while self.range < TOP {
            self.range <<= 8;
            self.shift_low();
        }
    }

    fn shift_low(&mut self) {
        if self.low < 0xff00_0000 || self.low > 0xffff_ffff {
            let carry = (self.low >> 32) as u8;
            let mut byte = self.cache;
            loop {
                self.out.push(byte.wrapping_add(carry));
                byte = 0xff;
                self.cache_size -= 1;
                if self.cache_size == 0 {
                    break;
                }
            }
            self.cache = (self.low >> 24) as u8;
        }
        self.cache_size += 1;
        self.low = (self.low & 0x00ff_ffff) << 8;
    }

    fn finish(mut self) {
        for _ in 0..5 {
            self.shift_low();
        }
    }
}

/// The matching range decoder over untrusted bytes.
struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    range: u32,
    code: u32,
}

impl<'a> Decoder<'a> {
    fn new(input: &'a [u8]) -> Result<Self, CodecError> {
        // The encoder's first byte is always 0 (its initial cache).
        let Some((&0, rest)) = input.split_first() else {
            return Err(CodecError::Truncated);
        };
        let head: [u8; 4] = rest
            .get(..4)
            .and_then(|h| h.try_into().ok())
            .ok_or(CodecError::Truncated)?;
        Ok(Self {
            input,
            pos: 5,
            range: u32::MAX,
            code: u32::from_be_bytes(head),
        })
    }

    #[inline(always)]
    fn bit(&mut self, prob: &mut Prob) -> Result<bool, CodecError> {
        let bound = (self.range >> PROB_BITS) * prob.get();
        let bit = self.code >= bound;
        if bit {
            self.code -= bound;
            self.range -= bound;
        } else {
            self.range = bound;
        }
        prob.adapt(bit);
        while self.range < TOP {
            let byte = *self.input.get(self.pos).ok_or(CodecError::Truncated)?;
            self.pos += 1;
            self.range <<= 8;
            self.code = (self.code << 8) | u32::from(byte);
        }
        Ok(bit)
    }

    fn finish(self) -> Result<(), CodecError> {
        match self.pos == self.input.len() {
            true => Ok(()),
            false => Err(CodecError::TrailingBytes),
        }
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn packed_run(start: u64, count: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for n in start..start + count {
            let mut p = [0u8; PACKED_LEN];
            crate::render_packed(n, &mut p);
            out.extend_from_slice(&p);
        }
        out
    }

    #[test]
    fn round_trips_rendered_batches() {
        for (start, count) in [(0, 1), (0, 60), (1_000_000, 37), (u64::MAX - 60, 60)] {
            let packed = packed_run(start, count);
            let mut enc = Vec::new();
            encode(&packed, &mut enc).expect("valid frames encode");
            let mut back = Vec::new();
            decode(&enc, count as u32, |i, f| {
                assert_eq!(i as usize, back.len() / PACKED_LEN);
                back.extend_from_slice(f);
            })
            .expect("own output decodes");
            assert_eq!(back, packed, "batch at {start}");
        }
    }

    #[test]
    fn round_trips_arbitrary_valid_symbols() {
        // Not donut-shaped at all, newlines anywhere: still lossless.
        let mut state = 7u32;
        let packed: Vec<u8> = (0..PACKED_LEN * 3)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let hi = (state >> 16) as u8 % 14;
                let lo = (state >> 24) as u8 % 14;
                (hi << 4) | lo
            })
            .collect();
        let mut enc = Vec::new();
        encode(&packed, &mut enc).expect("valid symbols encode");
        let mut back = Vec::new();
        decode(&enc, 3, |_, f| back.extend_from_slice(f)).expect("decodes");
        assert_eq!(back, packed);
    }

    #[test]
    fn rejects_bad_input_and_garbage() {
        let mut out = Vec::new();
        assert_eq!(encode(&[0u8; 10], &mut out), Err(CodecError::InvalidInput));
        assert_eq!(
            encode(&[0xffu8; PACKED_LEN], &mut out),
            Err(CodecError::InvalidInput)
        );
        let packed = packed_run(5, 10);
        let mut enc = Vec::new();
        encode(&packed, &mut enc).expect("encodes");
        assert_eq!(
            decode(&enc[..enc.len() - 3], 10, |_, _| {}),
            Err(CodecError::Truncated)
        );
        let mut longer = enc.clone();
        longer.push(0);
        assert_eq!(
            decode(&longer, 10, |_, _| {}),
            Err(CodecError::TrailingBytes)
        );
        assert_eq!(decode(&enc, 11, |_, _| {}), Err(CodecError::Truncated));
        assert!(decode(&[], 1, |_, _| {}).is_err());
    }

    #[test]
    fn is_much_smaller_than_nibble_packing() {
        let packed = packed_run(10_000, 60);
        let mut enc = Vec::new();
        encode(&packed, &mut enc).expect("encodes");
        // Nibble packing is 880 bytes a frame; this codec must stay under the
        // product's 100-byte budget on real frames.
        assert!(enc.len() < 60 * 100, "{} bytes for 60 frames", enc.len());
    }
}
