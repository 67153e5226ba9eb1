//! `Codec::Context`: lossless, context-modelled range coding of a batch of
//! frames, about ten times smaller than nibble packing.
//!
//! Frames of the donut are highly structured: most cells are blank, a cell
//! usually shows what it showed one frame earlier, and when it changes its
//! glyph usually moves one step lighter or darker (the shading drifts
//! smoothly as the donut turns), in the same direction as its changed
//! neighbours. Each cell of each frame is coded, in order, as
//!
//! 1. one binary decision, "same symbol as this cell in the previous frame",
//!    whose probability is learnt per context (the previous symbol here, the
//!    symbol just coded to the left, whether that one changed, and how the
//!    symbol just coded above compares with the previous symbol here), then
//! 2. only when it changed, a *step*: "one step" (learnt per previous and
//!    left symbol) and its direction (learnt per direction the left and
//!    upper neighbours moved, and whether they are lighter or darker than
//!    this cell was); else "two steps" and its direction; else "blank";
//!    else the new 4-bit symbol code as four binary decisions down a tree.
//!    Four in five changed cells move one step, so a changed cell costs
//!    about two decisions after the first, not four.
//!
//! Blank margins are cheaper still: where a cell is *quiet* (blank before,
//! blank to its left, nothing changed to its left or above), the run of
//! cells in its row that would all stay quiet is offered first as one
//! decision, "all unchanged", and skipped when it is. About two thirds of a
//! frame's cells go by that way, in some 45 runs.
//!
//! Decisions go through an adaptive binary range coder (the LZMA design:
//! 32-bit range, 12-bit probabilities adapting fast at first, settling at
//! 1/16 of their error). The first frame of a batch has no previous frame, so it is
//! predicted from itself, each row from the row above: every batch decodes on
//! its own and a viewer joining mid-stream needs nothing older. Models start
//! afresh in every batch; the server encodes each batch once and sends the
//! same bytes to every viewer.
//!
//! `Codec::Primed` (protocol 6, issue 25) is the same coder with the
//! probabilities starting at a prior trained on rendered frames ([`prior`])
//! instead of ½: every batch still decodes on its own, and a short batch
//! of a spinning donut (what viewers get while others steer) costs about
//! a fifth less.
//!
//! Decoding never panics and never allocates: garbage input yields
//! [`CodecError`], and output is bounded by the `count` the caller passes
//! (capped by the wire protocol before this runs).

use core::cmp::Ordering;
use core::fmt;

use crate::donut::{FRAME_LEN, WIDTH};
use crate::frame::{ALPHABET, NEWLINE_CODE, PACKED_LEN, SPACE_CODE};

pub mod prior;

/// Distinct symbol codes.
const SYMBOLS: usize = ALPHABET.len();
/// Probability precision in bits.
const PROB_BITS: u32 = 12;
/// An even chance.
const PROB_HALF: u16 = 1 << (PROB_BITS - 1);
/// The range is renormalised whenever it drops below this.
const TOP: u32 = 1 << 24;
/// Contexts of the "same as before" decision: previous symbol × left symbol
/// × left changed × how the symbol above compares with the previous one.
const SAME_CONTEXTS: usize = SYMBOLS * SYMBOLS * 2 * 3;
/// Contexts of the step decisions ("one step", "two steps", "blank") and of
/// the escape's symbol tree: previous symbol × left symbol (the tree uses 16
/// nodes of each).
const PAIR_CONTEXTS: usize = SYMBOLS * SYMBOLS;
/// Contexts of a step's direction: how the left and upper neighbours
/// changed × how they compare with the previous symbol here.
const DIRECTION_CONTEXTS: usize = CLASSES * CLASSES * 3 * 3;
/// Shortest quiet run offered as a whole.
const MIN_RUN: usize = 4;
/// Contexts of the "quiet run all unchanged" decision, by run length.
const RUN_CONTEXTS: usize = 8;

/// How a coded cell changed from the previous frame, as its neighbours'
/// contexts see it.
type Class = u8;
/// Unchanged.
const SAME: Class = 0;
/// One or two steps lighter (a higher symbol code).
const UP: Class = 1;
/// One or two steps darker.
const DOWN: Class = 2;
/// Became blank, or anything else.
const OTHER: Class = 3;
/// Distinct classes.
const CLASSES: usize = 4;

// The quiet-run scan tests "blank and unchanged above" as one OR of zeros.
const _: () = assert!(SPACE_CODE == 0 && SAME == 0);

/// The context of a quiet run of `len` cells: its length, bucketed.
#[inline(always)]
fn run_ctx(len: usize) -> usize {
    (len / 8).min(RUN_CONTEXTS - 1)
}

/// `a` compared with `b`, as 0 (less), 1 (equal) or 2 (greater).
#[inline(always)]
fn cmp3(a: u8, b: u8) -> usize {
    match a.cmp(&b) {
        Ordering::Less => 0,
        Ordering::Equal => 1,
        Ordering::Greater => 2,
    }
}

/// Why a `Codec::Context` payload could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// The payload ended before `count` frames were decoded.
    Truncated,
    /// A decoded symbol code is 14 or 15, or a step leads out of the
    /// alphabet.
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
    one_step: [Prob; PAIR_CONTEXTS],
    two_steps: [Prob; PAIR_CONTEXTS],
    direction: [Prob; DIRECTION_CONTEXTS],
    blank: [Prob; PAIR_CONTEXTS],
    tree: [Prob; PAIR_CONTEXTS * 16],
    run: [Prob; RUN_CONTEXTS],
}

impl Model {
    fn new() -> Self {
        Self {
            same: [Prob::NEW; SAME_CONTEXTS],
            one_step: [Prob::NEW; PAIR_CONTEXTS],
            two_steps: [Prob::NEW; PAIR_CONTEXTS],
            direction: [Prob::NEW; DIRECTION_CONTEXTS],
            blank: [Prob::NEW; PAIR_CONTEXTS],
            tree: [Prob::NEW; PAIR_CONTEXTS * 16],
            run: [Prob::NEW; RUN_CONTEXTS],
        }
    }
}

/// The neighbourhood the contexts are drawn from, carried along as a frame
/// is walked cell by cell (left to right, top to bottom), so encoder and
/// decoder derive identical contexts with a handful of register operations.
struct Walk {
    /// The symbol just coded (for the first cell, a newline).
    left: u8,
    /// How it changed.
    left_class: Class,
    /// For each column, how the cell above changed.
    up_class: [Class; WIDTH],
}

impl Walk {
    fn new() -> Self {
        Self {
            left: NEWLINE_CODE,
            left_class: SAME,
            up_class: [SAME; WIDTH],
        }
    }

    /// Context of the "same as before" decision for a cell whose previous
    /// symbol is `prev`, with `up_cmp` = [`cmp3`]`(up, prev)`.
    #[inline(always)]
    fn same_ctx(&self, prev: u8, up_cmp: usize) -> usize {
        ((usize::from(prev) * SYMBOLS + usize::from(self.left)) * 2
            + usize::from(self.left_class != SAME))
            * 3
            + up_cmp
    }

    /// Context of the step decisions, and the first of the 16 tree
    /// probabilities divided by 16.
    #[inline(always)]
    fn pair_ctx(&self, prev: u8) -> usize {
        usize::from(prev) * SYMBOLS + usize::from(self.left)
    }

    /// Context of a step's direction in column `col`.
    #[inline(always)]
    fn direction_ctx(&self, prev: u8, col: usize, up_cmp: usize) -> usize {
        ((usize::from(self.left_class) * CLASSES + usize::from(self.up_class[col])) * 3
            + cmp3(self.left, prev))
            * 3
            + up_cmp
    }

    /// Whether a cell is *quiet*: blank before, blank to its left, and
    /// nothing changed to its left or above. Runs of quiet cells (the blank
    /// margins around the donut) are offered as a whole first.
    #[inline(always)]
    fn quiet(&self, prev: u8, col: usize) -> bool {
        prev == SPACE_CODE
            && self.left == SPACE_CODE
            && self.left_class == SAME
            && self.up_class[col] == SAME
    }

    /// How many cells from quiet cell `k` on, within its row, would stay
    /// quiet if none of them changed.
    #[inline(always)]
    fn quiet_run(&self, prev: &[u8; FRAME_LEN], k: usize) -> usize {
        let col = k % WIDTH;
        let row = &prev[k - col..k - col + WIDTH];
        let mut c = col + 1;
        // Eight cells at a time: a cell ends the run if its previous symbol
        // or the class of the cell above is non-zero.
        while let (Some(p), Some(u)) = (
            row.get(c..).and_then(|s| s.first_chunk::<8>()),
            self.up_class.get(c..).and_then(|s| s.first_chunk::<8>()),
        ) {
            let stop = u64::from_le_bytes(*p) | u64::from_le_bytes(*u);
            if stop != 0 {
                return c + (stop.trailing_zeros() / 8) as usize - col;
            }
            c += 8;
        }
        while c < WIDTH && row[c] | self.up_class[c] == 0 {
            c += 1;
        }
        c - col
    }

    /// Records the symbol coded in column `col`.
    #[inline(always)]
    fn step(&mut self, col: usize, sym: u8, class: Class) {
        self.left = sym;
        self.left_class = class;
        self.up_class[col] = class;
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
/// how many decisions it has seen (up to 15, in the low four bits, so a
/// decision loads and stores one `u16`): it learns fast at first (moving
/// halfway, then a quarter for three decisions, then an eighth) and settles
/// at 1/16 after fifteen, so a batch's many rarely-seen contexts cost little.
#[derive(Clone, Copy)]
struct Prob(u16);

/// Adaptation shift by decisions seen.
const RATE: [u8; 16] = [1, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4];

impl Prob {
    const NEW: Self = Self(PROB_HALF << 4);

    #[inline(always)]
    fn get(self) -> u32 {
        u32::from(self.0 >> 4)
    }

    #[inline(always)]
    fn adapt(&mut self, bit: bool) {
        let seen = self.0 & 15;
        let shift = RATE[usize::from(seen)];
        // Stays within 1..4095: each move covers at most half the distance.
        let mut p = self.0 >> 4;
        if bit {
            p -= p >> shift;
        } else {
            p += ((1 << PROB_BITS) - p) >> shift;
        }
        self.0 = (p << 4) | (seen + u16::from(seen < 15));
    }
}

/// Encodes whole packed frames (`packed.len()` a multiple of [`PACKED_LEN`],
/// every nibble a valid code) as a `Codec::Context` payload appended to `out`.
#[cfg(feature = "alloc")]
pub fn encode(packed: &[u8], out: &mut alloc::vec::Vec<u8>) -> Result<(), CodecError> {
    encode_with(Model::new(), packed, out)
}

/// As [`encode`], for a `Codec::Primed` payload: the probabilities start
/// at the trained [`prior`] instead of ½ (about a fifth fewer bytes in a
/// short batch of a spinning donut; see [`prior`]).
#[cfg(feature = "alloc")]
pub fn encode_primed(packed: &[u8], out: &mut alloc::vec::Vec<u8>) -> Result<(), CodecError> {
    encode_with(Model::primed(), packed, out)
}

#[cfg(feature = "alloc")]
fn encode_with(
    mut model: Model,
    packed: &[u8],
    out: &mut alloc::vec::Vec<u8>,
) -> Result<(), CodecError> {
    let (frames, rest) = packed.as_chunks::<PACKED_LEN>();
    if !rest.is_empty()
        || frames
            .iter()
            .any(|f| crate::frame::validate_packed(f).is_err())
    {
        return Err(CodecError::InvalidInput);
    }
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
    sink: impl FnMut(u32, &[u8; PACKED_LEN]),
) -> Result<(), CodecError> {
    decode_with(Model::new(), payload, count, sink)
}

/// Decodes a `Codec::Primed` payload (see `encode_primed`, with the `alloc` feature) of exactly
/// `count` frames, handing each packed frame to `sink` in order. The same
/// contract as [`decode`]: no panic, no allocation, bounded work.
pub fn decode_primed(
    payload: &[u8],
    count: u32,
    sink: impl FnMut(u32, &[u8; PACKED_LEN]),
) -> Result<(), CodecError> {
    decode_with(Model::primed(), payload, count, sink)
}

fn decode_with(
    mut model: Model,
    payload: &[u8],
    count: u32,
    mut sink: impl FnMut(u32, &[u8; PACKED_LEN]),
) -> Result<(), CodecError> {
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
        let up_cmp = match k.checked_sub(WIDTH) {
            Some(up) => cmp3(cur[up], p),
            None => 1,
        };
        let changed = coder.code(&mut model.same[walk.same_ctx(p, up_cmp)], || known != p)?;
        let (sym, class) = if changed {
            code_change(coder, model, &walk, p, col, up_cmp, known)?
        } else {
            (p, SAME)
        };
        cur[k] = sym;
        walk.step(col, sym, class);
        k += 1;
        if first {
            predict_row_below(cur, prev, k);
        }
    }
    Ok(())
}

/// Codes the new symbol of a cell that changed from `prev`: one step or
/// two (then the direction), blank, or escaped through the symbol tree.
/// `known` is the new symbol for the encoder (ignored by the decoder).
#[inline(always)]
fn code_change(
    coder: &mut impl BitCoder,
    model: &mut Model,
    walk: &Walk,
    prev: u8,
    col: usize,
    up_cmp: usize,
    known: u8,
) -> Result<(u8, Class), CodecError> {
    let ctx = walk.pair_ctx(prev);
    // Blank is coded as blank even where it is also one or two steps down.
    let delta = match known {
        SPACE_CODE => 0,
        _ => i32::from(known) - i32::from(prev),
    };
    let one = coder.code(&mut model.one_step[ctx], || delta.abs() == 1)?;
    let steps = if one {
        1
    } else if coder.code(&mut model.two_steps[ctx], || delta.abs() == 2)? {
        2
    } else if coder.code(&mut model.blank[ctx], || known == SPACE_CODE)? {
        return Ok((SPACE_CODE, OTHER));
    } else {
        let base = ctx * 16;
        let mut node = 1;
        for shift in (0..4).rev() {
            let bit = coder.code(&mut model.tree[base + node], || (known >> shift) & 1 == 1)?;
            node = node * 2 + usize::from(bit);
        }
        return match u8::try_from(node - 16) {
            Ok(sym) if usize::from(sym) < SYMBOLS => Ok((sym, OTHER)),
            _ => Err(CodecError::InvalidSymbol),
        };
    };
    let down = coder.code(
        &mut model.direction[walk.direction_ctx(prev, col, up_cmp)],
        || delta < 0,
    )?;
    let (sym, class) = match down {
        true => (prev.checked_sub(steps), DOWN),
        false => (Some(prev + steps), UP),
    };
    match sym {
        Some(sym) if usize::from(sym) < SYMBOLS => Ok((sym, class)),
        _ => Err(CodecError::InvalidSymbol),
    }
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
    fn primed_round_trips_and_is_not_the_context_payload() {
        for (start, count) in [(0, 1), (0, 60), (1_000_000, 37), (u64::MAX - 60, 6)] {
            let packed = packed_run(start, count);
            let mut primed = Vec::new();
            encode_primed(&packed, &mut primed).expect("valid frames encode");
            let mut back = Vec::new();
            decode_primed(&primed, count as u32, |_, f| back.extend_from_slice(f))
                .expect("own output decodes");
            assert_eq!(back, packed, "batch at {start}");
            let mut plain = Vec::new();
            encode(&packed, &mut plain).expect("encodes");
            assert_ne!(plain, primed, "the prior changes the payload");
        }
    }

    #[test]
    fn the_prior_is_its_training() {
        assert_eq!(
            prior::train(),
            prior::PRIOR,
            "regenerate: cargo run -p donut-shared --example codec_prior"
        );
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
