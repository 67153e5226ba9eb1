//! Runtime selection of the widest vector instructions for the renderer.
//!
//! The projection loop is plain scalar Rust that LLVM vectorises for whatever
//! target features it is compiled with: SSE2 on baseline x86_64, simd128 on
//! wasm32. On x86_64 the same body is also compiled with AVX2 and with
//! AVX-512, and the widest one the CPU supports runs. Output is identical on
//! every path: vectorisation never reorders floating-point operations, the
//! operations involved (add, multiply, divide, compare, truncate) are exact
//! IEEE-754 on every instruction set, and FMA is never enabled, so no
//! multiply-add is ever fused. A unit test renders frames through every path
//! the machine supports and compares bytes.
//!
//! The AVX-512 path also thins out each ring before the scalar scatter (see
//! `keep_ring_maxima`): it drops the samples that a neighbour in the same
//! cell beats, about 80% of them, and packs the rest with `vpcompressd`.
//! Dropping a sample that cannot be its cell's maximum leaves every z-buffer
//! cell with the same final key, so the bytes are the same; it cut the
//! native frame by a fifth. The other paths lack a branch-free compress
//! instruction: a scalar compaction, and a wasm one with `i8x16.swizzle`,
//! cost as much as they saved.
//!
//! `is_x86_feature_detected!` needs `std`, so detection reads CPUID and XCR0
//! directly and caches the answer in an atomic.

use crate::donut::{FRAME_LEN, Pose};

/// Instruction-set levels, widest last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[allow(dead_code, reason = "only x86_64 uses the wider levels")]
pub(crate) enum Level {
    Baseline = 1,
    Avx2 = 2,
    Avx512 = 3,
}

/// Renders with the widest level available.
#[inline(always)]
pub(crate) fn dispatch(pose: Pose, out: &mut [u8; FRAME_LEN]) {
    run(detected(), pose, out);
}

#[cfg(not(target_arch = "x86_64"))]
fn detected() -> Level {
    Level::Baseline
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) fn run(_: Level, pose: Pose, out: &mut [u8; FRAME_LEN]) {
    crate::donut::render_codes_portable(pose, out);
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{detected, run};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::{
        __cpuid, __cpuid_count, __m512i, _mm512_alignr_epi32, _mm512_cmpeq_epu32_mask,
        _mm512_cmple_epu32_mask, _mm512_cmplt_epu32_mask, _mm512_loadu_si512,
        _mm512_maskz_compress_epi32, _mm512_maskz_mov_epi32, _mm512_set1_epi32,
        _mm512_setzero_si512, _mm512_storeu_si512, _xgetbv,
    };
    use core::sync::atomic::{AtomicU8, Ordering};

    use super::Level;
    use crate::donut::{
        FRAME_LEN, PHI_PADDED, PHI_STEPS, Pose, Samples, render_codes_portable as body,
        render_rings, scatter,
    };

    /// 0 until detected, then a `Level` discriminant.
    static LEVEL: AtomicU8 = AtomicU8::new(0);

    /// The widest level this CPU and OS support.
    pub(crate) fn detected() -> Level {
        match LEVEL.load(Ordering::Relaxed) {
            1 => Level::Baseline,
            2 => Level::Avx2,
            3 => Level::Avx512,
            _ => {
                let level = detect();
                LEVEL.store(level as u8, Ordering::Relaxed);
                level
            }
        }
    }

    fn detect() -> Level {
        // CPUID leaf 1 ECX: bit 27 OSXSAVE, bit 28 AVX.
        let leaf1 = __cpuid(1);
        if leaf1.ecx & (1 << 27) == 0 || leaf1.ecx & (1 << 28) == 0 {
            return Level::Baseline;
        }
        // SAFETY: OSXSAVE is set, so XGETBV is available.
        let xcr0 = unsafe { xgetbv0() };
        let ymm_enabled = xcr0 & 0b110 == 0b110;
        let zmm_enabled = xcr0 & 0b1110_0110 == 0b1110_0110;
        if __cpuid(0).eax < 7 || !ymm_enabled {
            return Level::Baseline;
        }
        // CPUID leaf 7 EBX: bit 5 AVX2, 16 AVX-512F, 17 DQ, 30 BW, 31 VL.
        let ebx = __cpuid_count(7, 0).ebx;
        let avx512 = (1 << 16) | (1 << 17) | (1 << 30) | (1 << 31);
        if zmm_enabled && ebx & avx512 == avx512 {
            Level::Avx512
        } else if ebx & (1 << 5) != 0 {
            Level::Avx2
        } else {
            Level::Baseline
        }
    }

    #[target_feature(enable = "xsave")]
    unsafe fn xgetbv0() -> u64 {
        // SAFETY: the caller checked OSXSAVE.
        unsafe { _xgetbv(0) }
    }

    /// Runs `body` compiled for `level`, which must be supported.
    #[inline(always)]
    pub(crate) fn run(level: Level, pose: Pose, out: &mut [u8; FRAME_LEN]) {
        match level {
            // SAFETY: `level` comes from `detected()` (or a test that checked
            // it against `detected()`), so the CPU has these features.
            Level::Avx512 => unsafe { avx512(pose, out) },
            Level::Avx2 => unsafe { avx2(pose, out) },
            Level::Baseline => body(pose, out),
        }
    }

    #[target_feature(enable = "avx2")]
    #[inline(never)]
    unsafe fn avx2(pose: Pose, out: &mut [u8; FRAME_LEN]) {
        body(pose, out)
    }

    #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl")]
    #[inline(never)]
    unsafe fn avx512(pose: Pose, out: &mut [u8; FRAME_LEN]) {
        let mut kept_cells = Kept([0; KEPT_LEN]);
        let mut kept_keys = Kept([0; KEPT_LEN]);
        render_rings(pose, out, |zbuf, cells, keys| {
            // SAFETY: this closure only runs inside `avx512`, whose caller
            // guarantees the CPU has AVX-512F.
            let n = unsafe { keep_ring_maxima(cells, keys, &mut kept_cells, &mut kept_keys) };
            scatter(zbuf, &kept_cells.0[..n], &kept_keys.0[..n]);
        });
    }

    /// Room for a whole padded ring: each 16-lane store of compressed
    /// samples writes a whole vector, at most 16 lanes past the count.
    const KEPT_LEN: usize = PHI_PADDED;

    /// Samples that survive [`keep_ring_maxima`], packed to the front.
    struct Kept([u32; KEPT_LEN]);

    /// Packs to the front of `kept_*` the samples of one ring that no
    /// neighbour in the same cell beats, and returns how many there are.
    ///
    /// About 80% of a ring's samples land in the same cell as the previous
    /// one, so most depth tests are decided before the z-buffer sees them.
    /// Sample i is dropped when sample i + 1 has the same cell and a key at
    /// least as large, or sample i - 1 has the same cell and a larger key.
    /// That never drops a cell's maximum: in a run of equal cells, the last
    /// sample holding the run's largest key is beaten by neither neighbour.
    /// So every cell still receives the same maximum key, and the z-buffers
    /// end the same; only about 20% of the samples remain to scatter.
    /// `vpcompressd` packs them 16 lanes at a time, without branches.
    #[target_feature(enable = "avx512f")]
    unsafe fn keep_ring_maxima(
        cells: &Samples,
        keys: &Samples,
        kept_cells: &mut Kept,
        kept_keys: &mut Kept,
    ) -> usize {
        const VECTORS: usize = PHI_PADDED / 16;
        /// Lanes of the last vector that are real samples, not padding.
        const LAST_LANES: u16 = (1 << (PHI_STEPS - 16 * (VECTORS - 1))) - 1;
        const _: () = assert!(PHI_PADDED.is_multiple_of(16) && PHI_STEPS > 16 * (VECTORS - 1));
        let load = |samples: &Samples, v: usize| -> __m512i {
            // SAFETY: v < VECTORS, so lanes 16v..16v + 16 are in `samples`.
            unsafe { _mm512_loadu_si512(samples.as_ptr().add(16 * v).cast()) }
        };
        // Outside the ring: a cell no sample has and key 0, which never
        // beats a sample (every key has its depth bits set).
        let no_cell = _mm512_set1_epi32(-1);
        let no_key = _mm512_setzero_si512();
        let (mut prev_cell, mut prev_key) = (no_cell, no_key);
        let (mut cell, mut key) = (load(cells, 0), load(keys, 0));
        let mut count = 0;
        for v in 0..VECTORS {
            let real = if v + 1 < VECTORS {
                u16::MAX
            } else {
                LAST_LANES
            };
            // Padding samples get key 0, so they beat no real sample.
            key = _mm512_maskz_mov_epi32(real, key);
            let (next_cell, next_key) = if v + 1 < VECTORS {
                (load(cells, v + 1), load(keys, v + 1))
            } else {
                (no_cell, no_key)
            };
            // Lane i of `after_*` is sample i + 1, of `before_*` sample i - 1.
            let after_cell = _mm512_alignr_epi32(next_cell, cell, 1);
            let after_key = _mm512_alignr_epi32(next_key, key, 1);
            let before_cell = _mm512_alignr_epi32(cell, prev_cell, 15);
            let before_key = _mm512_alignr_epi32(key, prev_key, 15);
            let beaten_after =
                _mm512_cmpeq_epu32_mask(cell, after_cell) & _mm512_cmple_epu32_mask(key, after_key);
            let beaten_before = _mm512_cmpeq_epu32_mask(cell, before_cell)
                & _mm512_cmplt_epu32_mask(key, before_key);
            let keep = !(beaten_after | beaten_before) & real;
            // SAFETY: each vector keeps at most 16 samples, so count <= 16v
            // here and the 16-lane stores end within 16(v + 1) <= KEPT_LEN.
            unsafe {
                let at = kept_cells.0.as_mut_ptr().add(count);
                _mm512_storeu_si512(at.cast(), _mm512_maskz_compress_epi32(keep, cell));
                let at = kept_keys.0.as_mut_ptr().add(count);
                _mm512_storeu_si512(at.cast(), _mm512_maskz_compress_epi32(keep, key));
            }
            count += keep.count_ones() as usize;
            (prev_cell, prev_key) = (cell, key);
            (cell, key) = (next_cell, next_key);
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::donut::render_codes_portable;

    #[test]
    fn every_supported_level_renders_the_same_bytes() {
        let levels = [Level::Baseline, Level::Avx2, Level::Avx512];
        let supported: &[Level] = &levels[..detected() as usize];
        for frame in (0..3_000u64).chain([1 << 32, 1 << 53, u64::MAX]) {
            let mut reference = [0u8; FRAME_LEN];
            render_codes_portable(Pose::idle(frame), &mut reference);
            for &level in supported {
                let mut out = [0u8; FRAME_LEN];
                run(level, Pose::idle(frame), &mut out);
                assert!(out == reference, "frame {frame} differs at {level:?}");
            }
        }
    }
}
