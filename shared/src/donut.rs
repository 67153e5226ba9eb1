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
//! - the hot loop is only `f32` add, multiply, divide and truncating casts,
//!   which IEEE-754 defines exactly, and Rust never fuses multiply-adds.

use crate::frame::{ALPHABET, NEWLINE_CODE, PACKED_LEN, SPACE_CODE};

include!(concat!(env!("OUT_DIR"), "/tables.rs"));

/// Columns of a frame, including the trailing newline column.
pub const WIDTH: usize = 80;
/// Rows of a frame.
pub const HEIGHT: usize = 22;
/// Bytes in one rendered frame: 80 × 22 ASCII characters.
pub const FRAME_LEN: usize = WIDTH * HEIGHT;

/// Glyphs from darkest to brightest luminance (symbol codes 1..=12).
const LUMINANCE_LEVELS: i32 = 12;

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
    /// The angles of absolute frame `frame`: A = 1 + 0.07·frame and
    /// B = 1 + 0.03·frame radians, reduced modulo 2π exactly.
    pub fn for_frame(frame: u64) -> Self {
        let a = angle(frame, TURN_A);
        let b = angle(frame, TURN_B);
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

/// 1 + (frame × rate mod one turn), in radians within [1, 1 + 2π).
fn angle(frame: u64, rate: u64) -> f64 {
    let phase = frame.wrapping_mul(rate) as f64 * TWO_POW_MINUS_64;
    1.0 + phase * core::f64::consts::TAU
}

/// Renders absolute frame `frame` as 1760 ASCII bytes (22 rows of 79 glyphs
/// and a newline).
pub fn render(frame: u64, out: &mut [u8; FRAME_LEN]) {
    render_codes(frame, out);
    for b in out.iter_mut() {
        *b = ALPHABET[usize::from(*b)];
    }
}

/// Renders absolute frame `frame` straight into its packed form (what
/// workers send), skipping the ASCII detour.
pub fn render_packed(frame: u64, out: &mut [u8; PACKED_LEN]) {
    let mut codes = [0u8; FRAME_LEN];
    render_codes(frame, &mut codes);
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

/// The z-buffer is a grid padded around the visible window, wide enough for
/// every sample: depth ≤ 1/2 and |numerator| ≤ 30·3 put x within 40 ± 45
/// and y within 12 ± 22.5. Off-screen samples land in the padding, so the
/// hot loop needs no visibility test; x and y are still clamped to the grid,
/// which makes indexing in bounds whatever the arithmetic did.
const GRID_X0: i32 = -8;
const GRID_X1: i32 = 88;
const GRID_Y0: i32 = -12;
const GRID_Y1: i32 = 36;
const GRID_W: usize = (GRID_X1 - GRID_X0 + 1) as usize;
const GRID_LEN: usize = GRID_W * (GRID_Y1 - GRID_Y0 + 1) as usize;

/// Renders frame `frame` as symbol codes (see [`crate::frame`]), with the
/// widest vector instructions this CPU has (see [`crate::simd`]).
pub(crate) fn render_codes(frame: u64, out: &mut [u8; FRAME_LEN]) {
    crate::simd::dispatch(frame, out);
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
pub(crate) fn render_codes_portable(frame: u64, out: &mut [u8; FRAME_LEN]) {
    let angles = FrameAngles::for_frame(frame);
    let e = angles.sin_a as f32;
    let g = angles.cos_a as f32;
    let n = angles.sin_b as f32;
    let m = angles.cos_b as f32;

    // Samples go round-robin into LANES independent z-buffers, merged with
    // `max` at the end (max is associative, so the result is the same as one
    // buffer). Neighbouring samples often land in the same cell; with one
    // buffer each would wait for the previous one's store.
    let mut zbuf = [[0u32; GRID_LEN]; LANES];
    let mut cells = [0u32; PHI_STEPS];
    let mut keys = [0u32; PHI_STEPS];

    for j in 0..THETA_STEPS {
        project_ring(&Ring::new(j, e, g, m, n), &mut cells, &mut keys);
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

    // donut.c draws where 0 < x < 80 and 0 < y < 22; its column 0 is the
    // previous row's newline, so its column x is our column x - 1, and its
    // row 0 is never drawn.
    out.fill(SPACE_CODE);
    for row in 1..HEIGHT {
        let base = grid_cell(1, row as i32);
        let line = &mut out[row * WIDTH..row * WIDTH + WIDTH - 1];
        for (col, o) in line.iter_mut().enumerate() {
            let z = zbuf.iter().fold(0, |acc, lane| acc.max(lane[base + col]));
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
    // SAFETY: `project_ring` clamps x and y to the grid before computing
    // `cell`, so it is always below GRID_LEN. (The hot loop's bounds check
    // cost a tenth of the frame in wasm.)
    let z = unsafe { zbuf.get_unchecked_mut(cell as usize) };
    *z = (*z).max(key);
}

/// The grid index of donut.c screen position (x, y), both within the grid.
#[inline(always)]
fn grid_cell(x: i32, y: i32) -> usize {
    (x - GRID_X0) as usize + GRID_W * (y - GRID_Y0) as usize
}

/// Projects every phi sample of one theta ring into its grid cell and
/// z-buffer key. Plain arithmetic over arrays, so the compiler vectorises it.
#[inline(always)]
fn project_ring(ring: &Ring, cells: &mut [u32; PHI_STEPS], keys: &mut [u32; PHI_STEPS]) {
    for i in 0..PHI_STEPS {
        let c = PHI_SIN[i];
        let l = PHI_COS[i];
        let depth = 1.0 / (c * ring.k_depth + ring.depth0);
        let t = c * ring.k_t - ring.t0;
        let x = 40.0 + depth * (l * ring.k_x - t * ring.kt_x);
        let y = 12.0 + depth * (l * ring.k_y + t * ring.kt_y);
        let lum = ring.lum0 - c * ring.k_lum_sin - l * ring.k_lum_cos;
        // donut.c truncates x, y and lum toward zero with `(int)`.
        let xi = trunc(clamp(x, GRID_X0 as f32, GRID_X1 as f32));
        let yi = trunc(clamp(y, GRID_Y0 as f32, GRID_Y1 as f32));
        cells[i] = ((xi - GRID_X0) + GRID_W as i32 * (yi - GRID_Y0)) as u32;
        // donut.c's glyph index is max(lum, 0), at most 11 since
        // |lum| <= 8·√2; the code is one more (0 is the blank).
        let level = trunc(clamp(lum, 0.0, (LUMINANCE_LEVELS - 1) as f32));
        keys[i] = (depth.to_bits() & !CODE_MASK) | (level + 1) as u32;
    }
}

/// `v` truncated toward zero, like C's `(int)v`, for a `v` already clamped
/// to a small range (so every form of truncation agrees).
///
/// The choice per target is only about vectorising: wasm's saturating
/// truncation (`as`) has a SIMD instruction, while on baseline x86_64 only
/// the plain truncating conversion does.
#[inline(always)]
fn trunc(v: f32) -> i32 {
    #[cfg(target_arch = "wasm32")]
    {
        v as i32
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        // SAFETY: every caller passes the result of `clamp` with bounds
        // within ±2^10: finite and well within i32's range, as
        // to_int_unchecked requires.
        unsafe { v.to_int_unchecked::<i32>() }
    }
}

/// `v` limited to `lo..=hi`, with NaN mapped to `lo`.
///
/// Written as compare-and-select rather than `f32::clamp` or `max`/`min`:
/// those carry IEEE maxNum NaN semantics that wasm SIMD lacks, which made
/// LLVM give up vectorising the whole projection loop for wasm32.
#[inline(always)]
fn clamp(v: f32, lo: f32, hi: f32) -> f32 {
    let v = if v >= lo { v } else { lo };
    if v <= hi { v } else { hi }
}
