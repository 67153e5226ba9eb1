//! The scene timeline: which [`Scene`] every frame of the stream is drawn
//! at, once viewers steer.
//!
//! Without input, frame `n` is [`Scene::idle`]`(n)`. With input, it follows
//! from `n` *and* every push committed before it, so the server keeps the
//! committed pushes as *keyframes* (frame → the scene at that frame, push
//! applied) and a *version* counting the changes. The scene of any frame is
//! its nearest keyframe at or before it, advanced ([`Timeline::scene_at`]);
//! tasks carry that scene, so workers stay stateless and the verifier
//! re-renders exactly what they did.
//!
//! # Data flow of an input
//!
//! A viewer's `Input` is queued here ([`Timeline::input`]), summed per viewer
//! and clamped to ±[`MAX_VIEWER_UNITS`] a commit. At the broadcaster's next
//! tick (every few milliseconds) [`Timeline::commit`] folds everything queued
//! into **one** change: the per-viewer sums (in viewer order, so any replay
//! gives the same bits) are added and clamped to ±[`MAX_TOTAL_UNITS`], and
//! [`Scene::push`] clamps the resulting spin to ±`MAX_SPIN`. One viewer moves
//! the donut at most half as hard a commit as a crowd, and no crowd spins it
//! past the scene's bound.
//!
//! # Throttled changes
//!
//! Every change supersedes the render-ahead past its frame (seconds of
//! frames), so the core commits at most one change per
//! `--input-commit-ms` (100 ms): a push after a quiet spell commits at the
//! next tick (no added input lag), pushes within the interval of the last
//! change stay queued here and fold into the next one. A player spinning
//! continuously then costs at most ten re-renders of the render-ahead a
//! second, not one per `Input`.
//!
//! # The change frame
//!
//! The caller chooses the frame the change applies from: the playback head
//! plus a small lead (`--input-lead-frames`), so the frames viewers are
//! about to show change soon after the input (low input lag) while workers
//! get that lead to render the new frames before the head needs them. The
//! change frame never precedes the last keyframe (a change lands on it
//! instead), so keyframes only grow and a change never rewrites a frame
//! before an earlier change. Everything at or after the change frame that was
//! rendered, handed out or broadcast is superseded (see `crate::stream::core`);
//! frames before it are untouched.
//!
//! # A seam
//!
//! Plain synchronous state with no clock and no I/O, owned by the core under
//! its lock: a cluster sharing the timeline between servers replaces the
//! queue, not the rules. Keyframes behind the playback head are pruned
//! ([`Timeline::prune`]), so it holds only the changes still ahead of
//! playback plus one.

pub mod acks;
pub mod lead;
pub mod rate;

use std::collections::BTreeMap;

use donut_shared::scene::{Impulse, Scene};
use donut_shared::steer;

// The folding rules (per-viewer and crowd clamps, the change frame) are
// `donut_shared::steer`'s: the steering page predicts with the same ones.
pub use donut_shared::steer::{MAX_TOTAL_UNITS, MAX_VIEWER_UNITS};

/// A change committed to the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The first frame whose scene changed.
    pub frame: u64,
    /// The timeline's version from this change on.
    pub version: u32,
    /// The scene at `frame`, the push applied.
    pub scene: Scene,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// Frame → the scene at that frame. Never empty; its first key is at or
    /// before every frame still wanted.
    keys: BTreeMap<u64, Scene>,
    version: u32,
    /// Pushes queued since the last commit, summed per viewer.
    pending: BTreeMap<u64, Impulse>,
}

impl Timeline {
    /// The timeline nobody has steered, from frame `start`: version 0.
    pub fn new(start: u64) -> Self {
        Self {
            keys: BTreeMap::from([(start, Scene::idle(start))]),
            version: 0,
            pending: BTreeMap::new(),
        }
    }

    /// A timeline taken over at frame `start`, where the scene is `scene`
    /// and the version `version` (a cluster's new leader resuming the
    /// committed timeline): frames from `start` on follow `scene`, and the
    /// next change is version `version + 1`, so viewers never see the
    /// version go back.
    pub fn resume(start: u64, version: u32, scene: Scene) -> Self {
        Self {
            keys: BTreeMap::from([(start, scene)]),
            version,
            pending: BTreeMap::new(),
        }
    }

    /// The version: 0 until the first change, then one more per change
    /// (wrapping after 2^32 changes).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The frames of the keyframes kept, oldest first.
    pub fn keyframes(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys.keys().copied()
    }

    /// The newest keyframe: its frame and scene (the change of the current
    /// version; for version 0, where the timeline started).
    pub fn last_change(&self) -> (u64, Scene) {
        self.keys
            .last_key_value()
            .map_or((0, Scene::idle(0)), |(&f, &s)| (f, s))
    }

    /// The frame of the newest keyframe.
    pub fn last_keyframe(&self) -> u64 {
        self.keys.last_key_value().map_or(0, |(&f, _)| f)
    }

    /// The first keyframe strictly after `frame`, if any: ranges starting at
    /// `frame` must end there (a task's scene is stepped from its start and
    /// cannot apply a push inside it).
    pub fn next_keyframe_after(&self, frame: u64) -> Option<u64> {
        self.keys
            .range(frame.saturating_add(1)..)
            .next()
            .map(|(&f, _)| f)
    }

    /// The scene of `frame`: its nearest keyframe at or before it, advanced.
    /// A frame before every kept keyframe (behind playback, never wanted
    /// again) gets its idle scene, exact only if no push preceded it.
    pub fn scene_at(&self, frame: u64) -> Scene {
        match self.keys.range(..=frame).next_back() {
            Some((&key, scene)) => {
                let mut s = *scene;
                s.advance(frame - key);
                s
            }
            None => Scene::idle(frame),
        }
    }

    /// Queues viewer `viewer`'s push for the next commit, its sum since the
    /// last commit clamped to ±[`MAX_VIEWER_UNITS`] on each axis.
    pub fn input(&mut self, viewer: u64, push: Impulse) {
        let sum = self.pending.entry(viewer).or_default();
        *sum = steer::add_viewer_push(*sum, push);
    }

    /// Whether pushes wait for a commit.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Folds every queued push into one change applying from frame `at`
    /// (or the last keyframe, if later), and bumps the version. `None` (and
    /// nothing changes) when nothing was queued or the pushes cancel out.
    pub fn commit(&mut self, at: u64) -> Option<Change> {
        let pending = std::mem::take(&mut self.pending);
        let total = steer::fold(pending.into_values())?;
        let frame = steer::change_frame(at, self.last_keyframe());
        let mut scene = self.scene_at(frame);
        scene.push(total);
        self.keys.insert(frame, scene);
        self.version = self.version.wrapping_add(1);
        Some(Change {
            frame,
            version: self.version,
            scene,
        })
    }

    /// Drops keyframes no frame at or after `head` needs: every one before
    /// the newest keyframe at or before `head`.
    pub fn prune(&mut self, head: u64) {
        let Some((&keep, _)) = self.keys.range(..=head).next_back() else {
            return;
        };
        self.keys = self.keys.split_off(&keep);
    }
}

#[cfg(test)]
mod tests;
