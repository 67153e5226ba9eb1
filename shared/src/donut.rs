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

use crate::frame::{ALPHABET, NEWLINE_CODE, PACKED_LEN};

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
/// on phi, hoisted out of the inner loop.
struct Ring {
    /// Denominator of the perspective divide: D = 1 / (sin φ · k_depth + depth0).
    k_depth: f32,
    depth0: f32,
    /// t = sin φ · k_t - t0.
    k_t: f32,
    t0: f32,
    /// x and y numerators: cos φ · k_x - t · sin B, cos φ · k_y + t · cos B.
    k_x: f32,
    k_y: f32,
    /// Luminance: lum0 - sin φ · k_lum_sin - cos φ · k_lum_cos.
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
            k_x: h * m,
            k_y: h * n,
            lum0: fe * m - fg,
            k_lum_sin: d * g * m + d * e,
            k_lum_cos: d * n,
        }
    }
}

/// Renders frame `frame` as symbol codes (see [`crate::frame`]).
///
/// The z-buffer holds one `u32` key per cell: the sample's inverse depth
/// (a positive `f32`, whose bit pattern orders like the value) with its low
/// four mantissa bits replaced by the glyph code. The nearest sample wins with
/// a single integer `max`, and the code rides along for free; depths within
/// 2^-19 of each other are treated as a tie broken by the brighter glyph.
pub(crate) fn render_codes(frame: u64, out: &mut [u8; FRAME_LEN]) {
    let angles = FrameAngles::for_frame(frame);
    let e = angles.sin_a as f32;
    let g = angles.cos_a as f32;
    let n = angles.sin_b as f32;
    let m = angles.cos_b as f32;

    // One spare cell takes every off-screen sample, so the scatter needs no
    // branch; it is never read.
    let mut zbuf = [0u32; FRAME_LEN + 1];
    let mut cells = [0u32; PHI_STEPS];
    let mut keys = [0u32; PHI_STEPS];

    for j in 0..THETA_STEPS {
        let ring = Ring::new(j, e, g, m, n);
        project_ring(&ring, m, n, &mut cells, &mut keys);
        for (&cell, &key) in cells.iter().zip(&keys) {
            let z = &mut zbuf[cell as usize];
            *z = (*z).max(key);
        }
    }

    for (o, &z) in out.iter_mut().zip(&zbuf) {
        *o = (z & CODE_MASK) as u8;
    }
    for row in 0..HEIGHT {
        out[row * WIDTH + WIDTH - 1] = NEWLINE_CODE;
    }
}

/// The low bits of a z-buffer key that carry the glyph code.
const CODE_MASK: u32 = 0xf;

/// Projects every phi sample of one theta ring into its cell (or the spare
/// cell `FRAME_LEN` when off screen) and z-buffer key. Plain arithmetic over
/// arrays, so the compiler vectorises it.
#[inline(always)]
#[allow(clippy::manual_clamp, reason = "clamp propagates NaN; max/min drop it")]
fn project_ring(
    ring: &Ring,
    m: f32,
    n: f32,
    cells: &mut [u32; PHI_STEPS],
    keys: &mut [u32; PHI_STEPS],
) {
    for i in 0..PHI_STEPS {
        let c = PHI_SIN[i];
        let l = PHI_COS[i];
        let depth = 1.0 / (c * ring.k_depth + ring.depth0);
        let t = c * ring.k_t - ring.t0;
        let x = 40.0 + 30.0 * depth * (l * ring.k_x - t * n);
        let y = 12.0 + 15.0 * depth * (l * ring.k_y + t * m);
        let lum = 8.0 * (ring.lum0 - c * ring.k_lum_sin - l * ring.k_lum_cos);
        // donut.c truncates x and y to ints and draws when 0 < x < 80 and
        // 0 < y < 22, which for truncation toward zero is exactly these float
        // tests. Its column 0 is the previous row's newline, so its column x
        // is our column x - 1.
        let visible = x >= 1.0 && x < WIDTH as f32 && y >= 1.0 && y < HEIGHT as f32;
        let cell = (trunc(x) - 1) + WIDTH as i32 * trunc(y);
        cells[i] = if visible {
            cell as u32
        } else {
            FRAME_LEN as u32
        };
        // donut.c's glyph index is max(trunc(lum), 0), at most 11 since
        // |lum| <= 8·√2; the code is one more (0 is the blank).
        let level = trunc(lum.max(0.0).min((LUMINANCE_LEVELS - 1) as f32));
        keys[i] = (depth.to_bits() & !CODE_MASK) | (level + 1) as u32;
    }
}

/// `v` truncated toward zero, like C's `(int)v`, for the small values the
/// projection produces (clamped to ±2^20 first).
///
/// Rust's saturating `as i32` does not vectorise on baseline x86_64; after the
/// clamp the plain truncating conversion is both defined and identical.
#[inline(always)]
#[allow(clippy::manual_clamp, reason = "clamp propagates NaN; max/min drop it")]
fn trunc(v: f32) -> i32 {
    // `max`/`min` return the non-NaN operand, so `v` is finite and in range.
    let v = v.max(-1_048_576.0).min(1_048_576.0);
    // SAFETY: `v` is finite and within i32's range, as to_int_unchecked needs.
    unsafe { v.to_int_unchecked::<i32>() }
}
