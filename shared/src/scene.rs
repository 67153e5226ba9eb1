//! The scene viewers steer: the donut's pose plus a spin that friction eases
//! back to donut.c's idle rotation.
//!
//! Why a scene and not just a frame number: once viewers can give the donut
//! a push, frame `n` no longer follows from `n` alone. It follows from `n`
//! and every push before it. Workers must stay stateless (any worker renders
//! any range, the server re-renders any frame to verify it), so a task
//! carries the [`Scene`] at its first frame, and the range is rendered by
//! stepping that scene one frame at a time with [`Scene::step`]. Everything
//! here is integer arithmetic on 0.64 fixed-point turns, so a scene steps to
//! the same bits on every target, and [`Scene::idle`] of frame `n` is exactly
//! the pose that [`crate::render`] has always drawn: the default scene's
//! frames, and their golden digests, do not change.
//!
//! Units:
//! - a pose is two phases in 2^-64 turns ([`Pose`]);
//! - a spin is an extra rate on top of the idle one, in 2^-64 turns a frame,
//!   signed; it is built from [`Impulse`]s counted in *spin units* of
//!   2^-16 turns a frame (about 0.0000959 rad a frame);
//! - friction removes 1/32 of the spin every frame (an e-folding time of 32
//!   frames, about half a second at 60 fps), and never less than
//!   [`MIN_DECEL`], so any spin comes to rest within [`SETTLE_FRAMES`].

use crate::donut::Pose;

/// Bits from a spin unit (2^-16 turns a frame) to the 2^-64 turns a frame
/// that poses advance by.
pub const SPIN_UNIT_SHIFT: u32 = 48;

/// The fastest extra spin on either axis, in spin units: 1/16 turn a frame
/// (0.39 rad, about 5.6 times the idle rotation A). Pushes beyond it are
/// clamped, so no number of viewers can spin the donut into a blur.
pub const MAX_SPIN_UNITS: i64 = 4096;

/// [`MAX_SPIN_UNITS`] in 2^-64 turns a frame.
pub const MAX_SPIN: i64 = MAX_SPIN_UNITS << SPIN_UNIT_SHIFT;

/// Friction removes `spin >> FRICTION_SHIFT` each frame.
pub const FRICTION_SHIFT: u32 = 5;

/// The least friction removes in a frame (2^-24 spin units), so that a
/// spin reaches exactly zero rather than creeping forever.
pub const MIN_DECEL: i64 = 1 << 40;

/// An upper bound on the frames any spin takes to come to rest: from
/// [`MAX_SPIN`], 32·ln(2^60 / 2^45) ≈ 333 frames of proportional friction
/// bring it below 2^45 (where 1/32 of it is [`MIN_DECEL`]), then at most 32
/// frames of the floor. [`Scene::advance`] relies on it to stay cheap.
pub const SETTLE_FRAMES: u64 = 400;

/// A push on the donut, in spin units (2^-16 turns a frame) added to the
/// spin of rotation A (around the x axis: a vertical drag) and B (around
/// the z axis: a horizontal drag).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Impulse {
    /// Added to rotation A's spin, in spin units.
    pub a: i32,
    /// Added to rotation B's spin, in spin units.
    pub b: i32,
}

/// The extra rotation rates on top of the idle spin, in 2^-64 turns a
/// frame, each within ±[`MAX_SPIN`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Spin {
    /// Extra rate of rotation A.
    pub a: i64,
    /// Extra rate of rotation B.
    pub b: i64,
}

impl Spin {
    /// Whether there is no extra spin (the scene is idling).
    pub fn is_rest(&self) -> bool {
        self.a == 0 && self.b == 0
    }
}

/// The scene at one frame: what a renderer needs for that frame (the pose)
/// and for every later one until the next push (the spin).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Scene {
    /// The orientation drawn at this frame.
    pub pose: Pose,
    /// The extra rotation this frame adds on top of the idle rates.
    pub spin: Spin,
}

/// The bytes of a [`Scene`] on the wire: pose A, pose B (`u64`), spin A,
/// spin B (`i64`), each 8 bytes big-endian like the rest of [`crate::wire`].
pub const SCENE_LEN: usize = 32;

/// Why bytes are not a [`Scene`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SceneError {
    /// A spin beyond ±[`MAX_SPIN`]: no sequence of pushes reaches it.
    SpinOutOfRange,
}

impl Scene {
    /// The scene of absolute frame `frame` when nobody has steered: donut.c's
    /// pose, no extra spin.
    pub fn idle(frame: u64) -> Self {
        Self {
            pose: Pose::idle(frame),
            spin: Spin::default(),
        }
    }

    /// Advances one frame: the pose turns by the idle rate plus the spin,
    /// then friction slows the spin.
    pub fn step(&mut self) {
        self.pose.a = self
            .pose
            .a
            .wrapping_add(Pose::IDLE_RATE_A)
            .wrapping_add_signed(self.spin.a);
        self.pose.b = self
            .pose
            .b
            .wrapping_add(Pose::IDLE_RATE_B)
            .wrapping_add_signed(self.spin.b);
        self.spin.a = decelerate(self.spin.a);
        self.spin.b = decelerate(self.spin.b);
    }

    /// Advances `frames` frames: the same as calling [`Scene::step`] that
    /// many times, in at most [`SETTLE_FRAMES`] steps plus one multiply.
    pub fn advance(&mut self, frames: u64) {
        let mut left = frames;
        while left > 0 && !self.spin.is_rest() {
            self.step();
            left -= 1;
        }
        self.pose.a = self
            .pose
            .a
            .wrapping_add(left.wrapping_mul(Pose::IDLE_RATE_A));
        self.pose.b = self
            .pose
            .b
            .wrapping_add(left.wrapping_mul(Pose::IDLE_RATE_B));
    }

    /// The poses of this frame and the `count - 1` after it: what a task
    /// starting at this scene renders, frame by frame.
    pub fn poses(self, count: u32) -> impl ExactSizeIterator<Item = Pose> {
        let mut scene = self;
        (0..count).map(move |_| {
            let pose = scene.pose;
            scene.step();
            pose
        })
    }

    /// Adds `impulse` to the spin, each axis clamped to ±[`MAX_SPIN`].
    pub fn push(&mut self, impulse: Impulse) {
        self.spin.a = add_units(self.spin.a, impulse.a);
        self.spin.b = add_units(self.spin.b, impulse.b);
    }

    /// The scene as [`SCENE_LEN`] bytes (see there).
    pub fn to_bytes(&self) -> [u8; SCENE_LEN] {
        let mut out = [0u8; SCENE_LEN];
        out[0..8].copy_from_slice(&self.pose.a.to_be_bytes());
        out[8..16].copy_from_slice(&self.pose.b.to_be_bytes());
        out[16..24].copy_from_slice(&self.spin.a.to_be_bytes());
        out[24..32].copy_from_slice(&self.spin.b.to_be_bytes());
        out
    }

    /// The scene in `bytes`.
    ///
    /// # Errors
    /// [`SceneError::SpinOutOfRange`] for a spin no pushes could produce.
    pub fn from_bytes(bytes: &[u8; SCENE_LEN]) -> Result<Self, SceneError> {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i..i + 8]);
            w
        };
        let scene = Self {
            pose: Pose {
                a: u64::from_be_bytes(word(0)),
                b: u64::from_be_bytes(word(8)),
            },
            spin: Spin {
                a: i64::from_be_bytes(word(16)),
                b: i64::from_be_bytes(word(24)),
            },
        };
        // `unsigned_abs`: `i64::MIN.abs()` overflows (a panic in debug, and
        // in release a wrap to `i64::MIN`, which would pass the check).
        let limit = MAX_SPIN.unsigned_abs();
        if scene.spin.a.unsigned_abs() > limit || scene.spin.b.unsigned_abs() > limit {
            return Err(SceneError::SpinOutOfRange);
        }
        Ok(scene)
    }
}

/// One frame of friction: `spin` loses 1/32 of itself, at least
/// [`MIN_DECEL`], and never crosses zero.
fn decelerate(spin: i64) -> i64 {
    let loss = (spin.unsigned_abs() >> FRICTION_SHIFT).max(MIN_DECEL as u64);
    if spin.unsigned_abs() <= loss {
        0
    } else if spin > 0 {
        spin - loss as i64
    } else {
        spin + loss as i64
    }
}

/// `spin` plus `units` spin units, clamped to ±[`MAX_SPIN`].
fn add_units(spin: i64, units: i32) -> i64 {
    let push = i64::from(units).clamp(-MAX_SPIN_UNITS, MAX_SPIN_UNITS) << SPIN_UNIT_SHIFT;
    spin.saturating_add(push).clamp(-MAX_SPIN, MAX_SPIN)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec;

    #[test]
    fn an_idle_scene_steps_through_donut_c_poses() {
        for start in [0u64, 1, 1_000_003, u64::MAX - 5] {
            let mut scene = Scene::idle(start);
            for k in 1..=10u64 {
                scene.step();
                assert_eq!(scene, Scene::idle(start.wrapping_add(k)));
            }
        }
    }

    #[test]
    fn the_fastest_spin_settles_within_the_bound() {
        for spin in [MAX_SPIN, -MAX_SPIN] {
            let mut scene = Scene {
                pose: Pose::default(),
                spin: Spin { a: spin, b: spin },
            };
            let mut frames = 0u64;
            while !scene.spin.is_rest() {
                scene.step();
                frames += 1;
            }
            assert!(frames <= SETTLE_FRAMES, "{frames} frames to settle");
            assert!(frames > SETTLE_FRAMES / 2, "friction too strong: {frames}");
        }
    }

    #[test]
    fn pushes_are_clamped() {
        let mut scene = Scene::idle(0);
        for _ in 0..10 {
            scene.push(Impulse {
                a: i32::MAX,
                b: i32::MIN,
            });
        }
        assert_eq!(
            scene.spin,
            Spin {
                a: MAX_SPIN,
                b: -MAX_SPIN
            }
        );
    }

    #[test]
    fn out_of_range_spin_is_refused() {
        let mut scene = Scene::idle(7);
        scene.spin.b = MAX_SPIN;
        let mut bytes = scene.to_bytes();
        assert_eq!(Scene::from_bytes(&bytes), Ok(scene));
        bytes[24..32].copy_from_slice(&(MAX_SPIN + 1).to_be_bytes());
        assert_eq!(Scene::from_bytes(&bytes), Err(SceneError::SpinOutOfRange));
        // The one spin whose `abs` overflows, in either place.
        for at in [16, 24] {
            let mut bytes = Scene::idle(7).to_bytes();
            bytes[at..at + 8].copy_from_slice(&i64::MIN.to_be_bytes());
            assert_eq!(Scene::from_bytes(&bytes), Err(SceneError::SpinOutOfRange));
        }
    }

    /// A push at frame n leaves frame n and every frame before it alone
    /// and changes every frame after it: only frames past a change need
    /// rendering again.
    #[test]
    fn a_push_changes_exactly_the_frames_after_it() {
        let start = 123_456u64;
        let at = 10usize;
        let idle: Vec<Pose> = Scene::idle(start).poses(400).collect();
        let mut steered = Scene::idle(start);
        steered.advance(at as u64);
        steered.push(Impulse { a: 1, b: -1 });
        let after: Vec<Pose> = steered.poses(390).collect();
        assert_eq!(after[0], idle[at], "the push's own frame is unchanged");
        for k in 1..390 {
            assert_ne!(after[k], idle[at + k], "frame {} unchanged", at + k);
        }
    }
}
