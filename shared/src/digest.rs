//! A stable 64-bit digest (FNV-1a) of frames and frame parameters.
//!
//! Used to compare the wasm and native builds frame by frame, for golden
//! digests that pin the renderer's output, and by the selftest export of the
//! worker wasm. It is not a cryptographic hash and is never used for trust.

use crate::donut::{FRAME_LEN, FrameAngles, Pose, render_pose};
use crate::scene::{Impulse, Scene};

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// An incremental FNV-1a 64 hasher.
#[derive(Clone, Copy, Debug)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Self(OFFSET)
    }
}

impl Fnv64 {
    /// Feeds bytes into the digest.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(PRIME);
        }
    }

    /// Feeds a `u64` in little-endian byte order.
    pub fn write_u64(&mut self, v: u64) {
        self.write(&v.to_le_bytes());
    }

    /// The digest so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// FNV-1a 64 of a byte slice.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = Fnv64::default();
    h.write(bytes);
    h.finish()
}

/// Digest of everything target-dependent about one frame of the idle spin:
/// the exact bits of its rotation angles' sines and cosines and the 1760
/// rendered bytes.
///
/// Hashing the trigonometry as well as the glyphs makes a one-ulp difference
/// between two builds visible even when it happens not to flip a glyph.
pub fn frame_digest(frame: u64) -> u64 {
    pose_digest(Pose::idle(frame))
}

/// [`frame_digest`] of the donut in any `pose`.
pub fn pose_digest(pose: Pose) -> u64 {
    let mut out = [0u8; FRAME_LEN];
    render_pose(pose, &mut out);
    let angles = FrameAngles::for_pose(pose);
    let mut h = Fnv64::default();
    for v in angles.bits() {
        h.write_u64(v);
    }
    h.write(&out);
    h.finish()
}

/// Frame `k` of a fixed, scripted input log, as a worker renders it: from
/// the idle scene of frame 1,000,000, a push every 37 frames (strong and
/// weak, both signs, on both axes, sometimes past the clamp), stepped one
/// frame at a time. The wasm-versus-native test compares the
/// [`pose_digest`] of these, so the steering arithmetic is checked on both
/// targets as well as the renderer.
pub fn scripted_scene(k: u64) -> Scene {
    let mut scene = Scene::idle(1_000_000);
    for i in 0..k {
        if i % 37 == 0 {
            let beat = (i / 37) as i32;
            scene.push(Impulse {
                a: (beat % 7 - 3) * 900,
                b: (beat % 5 - 2) * 1_500,
            });
        }
        scene.step();
    }
    scene
}
