//! a1k0n's spinning donut, as a pure function of an absolute frame number.
//!
//! For frame `n` the torus is rotated by A = 1 + 0.07·n around the x axis and
//! B = 1 + 0.03·n around the z axis; theta (the tube) steps 0.07 rad and phi
//! (around the axis) steps 0.02 rad, each over [0, 6.28); every sample is
//! projected, z-buffered and shaded with `.,-~:;=!*#$@` by its luminance,
//! exactly as in donut.c (visible columns 1..=79 of donut.c become columns
//! 0..=78 here, and column 79 of every row is `\n`).
//!
//! Why it is the same bytes on every target:
//! - the sines and cosines of theta and phi are constant tables generated at
//!   build time (`build.rs`) as exact `f32` bit patterns;
//! - the angles A and B are kept as 0.64 fixed-point turns, so
//!   `n.wrapping_mul(rate)` gives the phase of any `u64` frame exactly: the
//!   donut keeps turning smoothly forever and never snaps back (a plain
//!   `0.07 * n` in `f64` would lose all sub-radian precision past 2^50);
//! - their sines and cosines come from the portable `libm` crate, never the
//!   platform's;
//! - the hot loop is only `f32` add, multiply, divide, compare and
//!   truncation toward zero (as a cast, or in wasm as `f32x4.trunc` followed
//!   by exact small-integer arithmetic), which IEEE-754 defines exactly, and
//!   Rust never fuses multiply-adds.

use crate::frame::{ALPHABET, NEWLINE_CODE, PACKED_LEN, SPACE_CODE};

include!(concat!(env!("OUT_DIR"), "/tables.rs"));

/// Columns of a frame, including the trailing newline column.
pub const WIDTH: usize = 80;
/// Rows of a frame.
pub const HEIGHT: usize = 22;
/// Bytes in one rendered frame: 80 × 22 ASCII characters.
pub const FRAME_LEN: usize = WIDTH * HEIGHT;

/// The columns (of ours, where donut.c's column x is our x - 1) in which the
/// donut can ever appear; every other cell of a row but the newline is
/// always blank. A point of the torus lies within 3 of its centre (R1 + R2),
/// which is 5 in front of the eye, so X / (5 + Z) ≤ 3/4 and donut.c's
/// x = 40 + 30·X/(5 + Z) stays within 17.5 ..= 62.5: columns 17..=62 of
/// donut.c, 16..=61 of ours, and one column of margin each side for f32
/// rounding. [`crate::frame::validate_frame`] refuses glyphs outside them.
pub const DRAWN_COLS: core::ops::Range<usize> = 15..63;
const _: () = assert!(DRAWN_COLS.start >= GRID_X0 as usize - 1);
const _: () = assert!(DRAWN_COLS.end <= GRID_X0 as usize - 1 + GRID_W);

/// 2^-64 as an `f64`, to turn a 0.64 fixed-point phase into a fraction.
const TWO_POW_MINUS_64: f64 = 1.0 / 18_446_744_073_709_551_616.0;

/// The rotation of one frame: sines and cosines of A and B.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameAngles {
    /// sin(A), A being the rotation around the x axis.
    pub sin_a: f64,
    /// cos(A).
    pub cos_a: f64,
    /// sin(B), B being the rotation around the z axis.
    pub sin_b: f64,
    /// cos(B).
    pub cos_b: f64,
}

impl FrameAngles {
    /// The angles of absolute frame `frame` of the idle spin:
    /// A = 1 + 0.07·frame and B = 1 + 0.03·frame radians, reduced modulo 2π
    /// exactly.
    pub fn for_frame(frame: u64) -> Self {
        Self::for_pose(Pose::idle(frame))
    }

    /// The angles of `pose`: A = 1 + 2π·pose.a and B = 1 + 2π·pose.b radians.
    pub fn for_pose(pose: Pose) -> Self {
        let a = angle(pose.a);
        let b = angle(pose.b);
        Self {
            sin_a: libm::sin(a),
            cos_a: libm::cos(a),
            sin_b: libm::sin(b),
            cos_b: libm::cos(b),
        }
    }

    /// The exact bit patterns of the four values, for digests.
    pub fn bits(&self) -> [u64; 4] {
        [
            self.sin_a.to_bits(),
            self.cos_a.to_bits(),
            self.sin_b.to_bits(),
            self.cos_b.to_bits(),
        ]
    }
}

/// 1 + 2π·phase, phase being 0.64 fixed-point turns: radians within
/// [1, 1 + 2π).
fn angle(phase: u64) -> f64 {
    1.0 + phase as f64 * TWO_POW_MINUS_64 * core::f64::consts::TAU
}

/// The donut's orientation: its rotations A (around the x axis) and B
/// (around the z axis) as 0.64 fixed-point turns, so that stepping a pose is
/// exact integer arithmetic on every target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Pose {
    /// Rotation A in 2^-64 turns.
    pub a: u64,
    /// Rotation B in 2^-64 turns.
    pub b: u64,
}

impl Pose {
    /// Rotation A's idle rate: 0.07 rad a frame (donut.c), as 2^-64 turns.
    pub const IDLE_RATE_A: u64 = TURN_A;
    /// Rotation B's idle rate: 0.03 rad a frame (donut.c), as 2^-64 turns.
    pub const IDLE_RATE_B: u64 = TURN_B;

    /// The pose of absolute frame `frame` when nobody has ever steered:
    /// donut.c's A = 0.07·frame, B = 0.03·frame (plus its starting 1 rad).
    pub fn idle(frame: u64) -> Self {
        Self {
            a: frame.wrapping_mul(TURN_A),
            b: frame.wrapping_mul(TURN_B),
        }
    }
}

/// Renders absolute frame `frame` of the idle spin as 1760 ASCII bytes (22
/// rows of 79 glyphs and a newline).
pub fn render(frame: u64, out: &mut [u8; FRAME_LEN]) {
    render_pose(Pose::idle(frame), out);
}

/// Renders the donut in `pose` as 1760 ASCII bytes.
pub fn render_pose(pose: Pose, out: &mut [u8; FRAME_LEN]) {
    render_codes(pose, out);
    for b in out.iter_mut() {
        *b = ALPHABET[usize::from(*b)];
    }
}

/// Renders absolute frame `frame` of the idle spin straight into its packed
/// form (what workers send), skipping the ASCII detour.
pub fn render_packed(frame: u64, out: &mut [u8; PACKED_LEN]) {
    render_pose_packed(Pose::idle(frame), out);
}

/// Renders the donut in `pose` straight into its packed form.
pub fn render_pose_packed(pose: Pose, out: &mut [u8; PACKED_LEN]) {
    let mut codes = [0u8; FRAME_LEN];
    render_codes(pose, &mut codes);
    crate::frame::pack_codes(&codes, out);
}

/// Per-theta constants: everything in the projection that does not depend
/// on phi, hoisted out of the inner loop. The screen scale factors (30 for x,
/// 15 for y, 8 for luminance) are folded in here too.
struct Ring {
    /// Perspective divide: depth = 1 / (sin φ · k_depth + depth0).
    k_depth: f32,
    depth0: f32,
    /// t = sin φ · k_t - t0 (donut.c's `t`).
    k_t: f32,
    t0: f32,
    /// x = 40 + depth · (cos φ · k_x - t · kt_x).
    k_x: f32,
    kt_x: f32,
    /// y = 12 + depth · (cos φ · k_y + t · kt_y).
    k_y: f32,
    kt_y: f32,
    /// Luminance × 8: lum0 - sin φ · k_lum_sin - cos φ · k_lum_cos.
    lum0: f32,
    k_lum_sin: f32,
    k_lum_cos: f32,
}

impl Ring {
    /// Screen x and y, inverse depth and luminance × 8 of the sample with
    /// sin φ = `c` and cos φ = `l`.
    #[inline(always)]
    fn screen(&self, c: f32, l: f32) -> (f32, f32, f32, f32) {
        let depth = 1.0 / (c * self.k_depth + self.depth0);
        let t = c * self.k_t - self.t0;
        let x = 40.0 + depth * (l * self.k_x - t * self.kt_x);
        let y = 12.0 + depth * (l * self.k_y + t * self.kt_y);
        let lum = self.lum0 - c * self.k_lum_sin - l * self.k_lum_cos;
        (x, y, depth, lum)
    }

    fn new(j: usize, e: f32, g: f32, m: f32, n: f32) -> Self {
        // Names follow donut.c: d = cos θ, f = sin θ, e = sin A, g = cos A,
        // m = cos B, n = sin B, h = d + 2 (the circle's distance from the axis).
        let d = THETA_COS[j];
        let f = THETA_SIN[j];
        let h = d + 2.0;
        let fe = f * e;
        let fg = f * g;
        Self {
            k_depth: h * e,
            depth0: fg + 5.0,
            k_t: h * g,
            t0: fe,
            k_x: 30.0 * h * m,
            kt_x: 30.0 * n,
            k_y: 15.0 * h * n,
            kt_y: 15.0 * m,
            lum0: 8.0 * (fe * m - fg),
            k_lum_sin: 8.0 * (d * g * m + d * e),
            k_lum_cos: 8.0 * (d * n),
        }
    }
}

/// Independent z-buffers the scatter rotates through.
const LANES: usize = 4;

/// The low bits of a z-buffer key that carry the glyph code.
const CODE_MASK: u32 = 0xf;

/// The z-buffer is a 64 × 24 grid of donut.c screen positions: columns
/// `GRID_X0..GRID_X0 + 64`, rows `0..24`. Every sample the geometry can
/// produce lands inside it: a point (X, Y, Z) of the torus has X² + Z² ≤ 9,
/// so X / (5 + Z) ≤ 3/4 and x = 40 + 30·X/(5 + Z) stays within 40 ± 22.5,
/// y = 12 + 15·Y/(5 + Z) within 12 ± 11.25 (rows 0..=23); the grid leaves
/// nine columns of margin on each side for rounding. Off-screen samples (row
/// 0, rows 22 and 23) land in rows the merge never reads, so the hot loop has
/// no visibility test and no clamp; the cell index is still capped at the
/// last cell (an invisible one), which keeps indexing in bounds whatever the
/// arithmetic did. 64 columns make the row offset a shift, and the four
/// z-buffers (24 KiB) fit in L1d.
const GRID_X0: i32 = 8;
const GRID_W: usize = 64;
const GRID_H: usize = 24;
const GRID_LEN: usize = GRID_W * GRID_H;
const _: () = assert!(GRID_X0 + 9 <= 17 && 62 + 9 < GRID_X0 + GRID_W as i32 && 23 < GRID_H);
const _: () = assert!(GRID_W.is_power_of_two() && GRID_X0 >= 1);

/// One ring's projected samples, padded like the phi tables.
pub(crate) type Samples = [u32; PHI_PADDED];

/// Renders `pose` as symbol codes (see [`crate::frame`]), with the widest
/// vector instructions this CPU has (see [`crate::simd`]).
pub(crate) fn render_codes(pose: Pose, out: &mut [u8; FRAME_LEN]) {
    crate::simd::dispatch(pose, out);
}

/// The renderer's body. `#[inline(always)]` so that each per-CPU entry point
/// in [`crate::simd`] compiles its own copy with its target features.
///
/// The z-buffer holds one `u32` key per cell: the sample's inverse depth
/// (a positive `f32`, whose bit pattern orders like the value) with its low
/// four mantissa bits replaced by the glyph code. The nearest sample wins with
/// a single integer `max`, and the code rides along for free; depths within
/// 2^-19 of each other are treated as a tie broken by the brighter glyph.
#[inline(always)]
pub(crate) fn render_codes_portable(pose: Pose, out: &mut [u8; FRAME_LEN]) {
    render_rings(pose, out, |zbuf, cells, keys| {
        // The padding samples past PHI_STEPS are computed but never drawn.
        scatter(zbuf, &cells[..PHI_STEPS], &keys[..PHI_STEPS]);
    });
}

/// The z-buffers samples are scattered into.
pub(crate) type ZBuffers = [[u32; GRID_LEN]; LANES];

/// Projects ring after ring of `pose`, hands each ring's samples to
/// `scatter_ring` to depth-test into the z-buffers, and writes the frame.
#[inline(always)]
pub(crate) fn render_rings(
    pose: Pose,
    out: &mut [u8; FRAME_LEN],
    mut scatter_ring: impl FnMut(&mut ZBuffers, &Samples, &Samples),
) {
    let angles = FrameAngles::for_pose(pose);
    let e = angles.sin_a as f32;
    let g = angles.cos_a as f32;
    let n = angles.sin_b as f32;
    let m = angles.cos_b as f32;

    let mut zbuf = [[0u32; GRID_LEN]; LANES];
    let mut cells = [0u32; PHI_PADDED];
    let mut keys = [0u32; PHI_PADDED];
    for j in 0..THETA_STEPS {
        project_ring(&Ring::new(j, e, g, m, n), &mut cells, &mut keys);
        scatter_ring(&mut zbuf, &cells, &keys);
    }
    merge(&zbuf, out);
}

/// Depth-tests samples `(cells[i], keys[i])` into the z-buffers.
///
/// Samples go round-robin into LANES independent z-buffers, merged with
/// `max` at the end (max is associative, so the result is the same as one
/// buffer). Neighbouring samples often land in the same cell; with one
/// buffer each would wait for the previous one's store.
#[inline(always)]
pub(crate) fn scatter(zbuf: &mut ZBuffers, cells: &[u32], keys: &[u32]) {
    let (cell_groups, cell_rest) = cells.as_chunks::<LANES>();
    let (key_groups, key_rest) = keys.as_chunks::<LANES>();
    for (cs, ks) in cell_groups.iter().zip(key_groups) {
        for lane in 0..LANES {
            depth_test(&mut zbuf[lane], cs[lane], ks[lane]);
        }
    }
    for (lane, (&cell, &key)) in cell_rest.iter().zip(key_rest).enumerate() {
        depth_test(&mut zbuf[lane], cell, key);
    }
}

/// Writes the frame from the z-buffers: the nearest sample's glyph code in
/// every visible cell, blanks elsewhere, a newline ending every row.
#[inline(always)]
fn merge<const L: usize>(zbuf: &[[u32; GRID_LEN]; L], out: &mut [u8; FRAME_LEN]) {
    // donut.c draws where 0 < x < 80 and 0 < y < 22; its column 0 is the
    // previous row's newline, so its column x is our column x - 1, and its
    // row 0 is never drawn. Columns outside the grid are always blank.
    out.fill(SPACE_CODE);
    for row in 1..HEIGHT {
        let start = row * WIDTH + GRID_X0 as usize - 1;
        let line = &mut out[start..start + GRID_W];
        for (col, o) in line.iter_mut().enumerate() {
            let z = zbuf
                .iter()
                .fold(0, |acc, lane| acc.max(lane[row * GRID_W + col]));
            *o = (z & CODE_MASK) as u8;
        }
    }
    for row in 0..HEIGHT {
        out[row * WIDTH + WIDTH - 1] = NEWLINE_CODE;
    }
}

/// Keeps the nearer of the cell's sample and this one.
#[inline(always)]
fn depth_test(zbuf: &mut [u32; GRID_LEN], cell: u32, key: u32) {
    debug_assert!((cell as usize) < GRID_LEN);
    // SAFETY: `project_ring` caps every cell index at GRID_LEN - 1. (The hot
    // loop's bounds check cost a tenth of the frame in wasm.)
    let z = unsafe { zbuf.get_unchecked_mut(cell as usize) };
    *z = (*z).max(key);
}

/// Projects every phi sample of one theta ring (padding included) into its
/// grid cell and z-buffer key. Plain arithmetic over arrays, so the compiler
/// vectorises it; wasm has its own version below.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn project_ring(ring: &Ring, cells: &mut Samples, keys: &mut Samples) {
    for i in 0..PHI_PADDED {
        let (cell, key) = project(ring, PHI_SIN[i], PHI_COS[i]);
        cells[i] = cell;
        keys[i] = key;
    }
}

/// The grid cell and z-buffer key of the sample with sin φ = `c` and
/// cos φ = `l`.
#[cfg_attr(
    all(target_arch = "wasm32", target_feature = "simd128"),
    allow(dead_code, reason = "wasm projects with its own intrinsics version")
)]
#[inline(always)]
fn project(ring: &Ring, c: f32, l: f32) -> (u32, u32) {
    let (x, y, depth, lum) = ring.screen(c, l);
    // donut.c truncates x, y and lum toward zero with `(int)`. A negative
    // index (as u32) or one past the grid is capped to its last cell.
    let cell = (trunc(x) - GRID_X0 + (trunc(y) << GRID_W.trailing_zeros())) as u32;
    let cell = cell.min(GRID_LEN as u32 - 1);
    // donut.c's glyph index is max(lum, 0), at most 11 since
    // |lum| <= 8·√2; the code is one more (0 is the blank).
    let level = trunc(if lum >= 0.0 { lum } else { 0.0 });
    let key = (depth.to_bits() & !CODE_MASK) | ((level + 1) as u32 & CODE_MASK);
    (cell, key)
}

/// `v` truncated toward zero, like C's `(int)v`.
///
/// The choice per target is only about vectorising: wasm's saturating
/// truncation (`as`) has a SIMD instruction, while on baseline x86_64 only
/// the plain truncating conversion does.
#[cfg_attr(
    all(target_arch = "wasm32", target_feature = "simd128"),
    allow(dead_code, reason = "wasm projects with its own intrinsics version")
)]
#[inline(always)]
fn trunc(v: f32) -> i32 {
    #[cfg(target_arch = "wasm32")]
    {
        v as i32
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        // SAFETY: to_int_unchecked needs a finite value within i32's range.
        // Every input is bounded: sin and cos are within [-1, 1], so
        // |k_depth| <= 3, depth0 >= 4, the divisor is at least 1 and depth
        // within (0, 1]; the numerators of x and y are at most 30·3 + 30·4
        // in magnitude, so |x|, |y| < 300, and |lum| < 64. Rounding is
        // monotonic, so the float results keep these bounds.
        unsafe { v.to_int_unchecked::<i32>() }
    }
}

/// The wasm `simd128` version of [`project_ring`], written with intrinsics.
///
/// Autovectorised, the three conversions `(int)x`, `(int)y` and
/// `(int)lum` become `i32x4.trunc_sat_f32x4_s`, which V8 lowers to about
/// seven x86 instructions each. Here `f32x4.trunc` (one `roundps`) truncates
/// in float, the cell index `trunc(y)·64 + trunc(x) - GRID_X0` is computed
/// on small integers in float (exact below 2^24), and the integer is read
/// from the bits of its sum with 2^23, whose mantissa then holds it. Same
/// IEEE operations in the same order as [`project`], so the same bits.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn project_ring(ring: &Ring, cells: &mut Samples, keys: &mut Samples) {
    use core::arch::wasm32::{
        f32x4_add, f32x4_div, f32x4_mul, f32x4_pmax, f32x4_splat, f32x4_sub, f32x4_trunc,
        i32x4_sub, u32x4_min, u32x4_splat, v128, v128_bitselect,
    };
    /// 2^23: adding it to a small non-negative integer puts that integer in
    /// the mantissa bits.
    const MAGIC: f32 = 8_388_608.0;
    let k_depth = f32x4_splat(ring.k_depth);
    let depth0 = f32x4_splat(ring.depth0);
    let k_t = f32x4_splat(ring.k_t);
    let t0 = f32x4_splat(ring.t0);
    let k_x = f32x4_splat(ring.k_x);
    let kt_x = f32x4_splat(ring.kt_x);
    let k_y = f32x4_splat(ring.k_y);
    let kt_y = f32x4_splat(ring.kt_y);
    let lum0 = f32x4_splat(ring.lum0);
    let k_lum_sin = f32x4_splat(ring.k_lum_sin);
    let k_lum_cos = f32x4_splat(ring.k_lum_cos);
    let one = f32x4_splat(1.0);
    let forty = f32x4_splat(40.0);
    let twelve = f32x4_splat(12.0);
    let zero = f32x4_splat(0.0);
    let row = f32x4_splat(GRID_W as f32);
    let cell0 = f32x4_splat(MAGIC - GRID_X0 as f32);
    let magic_bits = u32x4_splat(MAGIC.to_bits());
    let last_cell = u32x4_splat(GRID_LEN as u32 - 1);
    let code0 = f32x4_splat(MAGIC + 1.0);
    let code_mask = u32x4_splat(CODE_MASK);
    // SAFETY (both): a 4-lane chunk is 16 bytes, and v128 accesses need no
    // alignment.
    let load =
        |lanes: &[f32; 4]| -> v128 { unsafe { core::ptr::read_unaligned(lanes.as_ptr().cast()) } };
    let store = |lanes: &mut [u32; 4], v: v128| unsafe {
        core::ptr::write_unaligned(lanes.as_mut_ptr().cast(), v)
    };
    let samples = PHI_SIN
        .as_chunks::<4>()
        .0
        .iter()
        .zip(PHI_COS.as_chunks::<4>().0);
    let outputs = cells
        .as_chunks_mut::<4>()
        .0
        .iter_mut()
        .zip(keys.as_chunks_mut::<4>().0);
    for ((sin, cos), (cell_out, key_out)) in samples.zip(outputs) {
        let c = load(sin);
        let l = load(cos);
        let depth = f32x4_div(one, f32x4_add(f32x4_mul(c, k_depth), depth0));
        let t = f32x4_sub(f32x4_mul(c, k_t), t0);
        let x = f32x4_mul(depth, f32x4_sub(f32x4_mul(l, k_x), f32x4_mul(t, kt_x)));
        let x = f32x4_add(forty, x);
        let y = f32x4_mul(depth, f32x4_add(f32x4_mul(l, k_y), f32x4_mul(t, kt_y)));
        let y = f32x4_add(twelve, y);
        let lum = f32x4_sub(
            f32x4_sub(lum0, f32x4_mul(c, k_lum_sin)),
            f32x4_mul(l, k_lum_cos),
        );
        let cell = f32x4_add(
            f32x4_add(f32x4_mul(f32x4_trunc(y), row), cell0),
            f32x4_trunc(x),
        );
        // Below 2^23 (a negative index) the subtraction wraps, and the cap
        // catches it, as the `as u32` and `min` of `project` do.
        let cell = u32x4_min(i32x4_sub(cell, magic_bits), last_cell);
        // pmax(0, lum) is `if 0 < lum { lum } else { 0 }`: for every
        // non-NaN lum the same level as `project`'s clamp.
        let code = f32x4_add(f32x4_trunc(f32x4_pmax(zero, lum)), code0);
        let key = v128_bitselect(code, depth, code_mask);
        store(cell_out, cell);
        store(key_out, key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grid needs no clamp: every sample of every ring lands inside it,
    /// with the margins the geometry promises (x within 40 ± 22.5, y within
    /// 12 ± 11.25), over frames spread across the whole u64 range.
    #[test]
    fn every_sample_lands_inside_the_grid() {
        let frames = (0..2_000u64)
            .chain((0..2_000u64).map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .chain([u64::MAX]);
        let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
        for frame in frames {
            let a = FrameAngles::for_frame(frame);
            let (e, g, n, m) = (
                a.sin_a as f32,
                a.cos_a as f32,
                a.sin_b as f32,
                a.cos_b as f32,
            );
            for j in 0..THETA_STEPS {
                let ring = Ring::new(j, e, g, m, n);
                for i in 0..PHI_STEPS {
                    let (x, y, _, _) = ring.screen(PHI_SIN[i], PHI_COS[i]);
                    x_lo = x_lo.min(x);
                    x_hi = x_hi.max(x);
                    y_lo = y_lo.min(y);
                    y_hi = y_hi.max(y);
                }
            }
        }
        assert!(x_lo > 17.4 && x_hi < 62.6, "x spans [{x_lo}, {x_hi}]");
        assert!(y_lo > 0.7 && y_hi < 23.3, "y spans [{y_lo}, {y_hi}]");
    }
}
