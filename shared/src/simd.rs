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
//! `is_x86_feature_detected!` needs `std`, so detection reads CPUID and XCR0
//! directly and caches the answer in an atomic.

use crate::donut::FRAME_LEN;

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
pub(crate) fn dispatch(frame: u64, out: &mut [u8; FRAME_LEN]) {
    run(detected(), frame, out);
}

#[cfg(not(target_arch = "x86_64"))]
fn detected() -> Level {
    Level::Baseline
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) fn run(_: Level, frame: u64, out: &mut [u8; FRAME_LEN]) {
    crate::donut::render_codes_portable(frame, out);
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{detected, run};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv};
    use core::sync::atomic::{AtomicU8, Ordering};

    use super::Level;
    use crate::donut::{FRAME_LEN, render_codes_portable as body};

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
    pub(crate) fn run(level: Level, frame: u64, out: &mut [u8; FRAME_LEN]) {
        match level {
            // SAFETY: `level` comes from `detected()` (or a test that checked
            // it against `detected()`), so the CPU has these features.
            Level::Avx512 => unsafe { avx512(frame, out) },
            Level::Avx2 => unsafe { avx2(frame, out) },
            Level::Baseline => body(frame, out),
        }
    }

    #[target_feature(enable = "avx2")]
    #[inline(never)]
    unsafe fn avx2(frame: u64, out: &mut [u8; FRAME_LEN]) {
        body(frame, out)
    }

    #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl")]
    #[inline(never)]
    unsafe fn avx512(frame: u64, out: &mut [u8; FRAME_LEN]) {
        body(frame, out)
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
            render_codes_portable(frame, &mut reference);
            for &level in supported {
                let mut out = [0u8; FRAME_LEN];
                run(level, frame, &mut out);
                assert!(out == reference, "frame {frame} differs at {level:?}");
            }
        }
    }
}
