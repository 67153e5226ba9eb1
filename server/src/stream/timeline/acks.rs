//! Which of one viewer's pushes the timeline has folded in, told to a
//! steering page with each new version's change (`Keyframe`, issue 25).
//!
//! Sans-IO, one per viewer connection: [`Acks::pushed`] when an `Input` is
//! queued on the core (with the version it was queued under: the push
//! lands in the next version, or in none if the pushes cancel out), and
//! [`Acks::update`] with the core's current change before each batch and
//! after each input; it answers with the `Keyframe` to send when the
//! version or the count of pushes folded in moved. A viewer that never
//! pushed gets nothing (watching costs no extra byte).

use std::collections::VecDeque;

use donut_shared::scene::Scene;
use donut_shared::wire::Keyframe;

/// Pushes remembered as not yet folded in. The input rate bounds them to
/// about a burst (30) plus what arrives within one commit interval; past
/// this, the oldest is taken as folded in (it has been, or it cancelled).
const QUEUED_KEPT: usize = 64;

/// See the module docs.
#[derive(Debug, Default)]
pub struct Acks {
    /// The versions pushes were queued under, oldest first (`None`: the
    /// core that folds them is elsewhere, a cluster's leader).
    queued: VecDeque<Option<u32>>,
    /// Pushes folded in (or cancelled out) so far.
    acked: u32,
    /// Whether the viewer ever pushed.
    steering: bool,
    /// The (version, acked) last told.
    told: Option<(u32, u32)>,
}

impl Acks {
    /// A push was queued under version `under` (`None` on a cluster).
    pub fn pushed(&mut self, under: Option<u32>) {
        self.steering = true;
        if self.queued.len() == QUEUED_KEPT {
            self.queued.pop_front();
            self.acked = self.acked.wrapping_add(1);
        }
        self.queued.push_back(under);
    }

    /// Whether the viewer ever pushed (only then is it told anything).
    pub fn steering(&self) -> bool {
        self.steering
    }

    /// The core's current change `(frame, version, scene)` (`None` where
    /// this node does not hold the timeline): the `Keyframe` to send if
    /// the viewer steers and the version or its acked count moved.
    pub fn update(&mut self, change: Option<(u64, u32, Scene)>) -> Option<Keyframe> {
        let (frame, version, scene) = change?;
        if !self.steering {
            return None;
        }
        // A push queued under `w` is in version `w + 1`, at or before the
        // current one once the version moved past `w`.
        while let Some(&Some(w)) = self.queued.front() {
            if version.wrapping_sub(w) as i32 <= 0 {
                break;
            }
            self.queued.pop_front();
            self.acked = self.acked.wrapping_add(1);
        }
        if self.told == Some((version, self.acked)) {
            return None;
        }
        self.told = Some((version, self.acked));
        Some(Keyframe {
            frame,
            timeline: version,
            acked: self.acked,
            scene,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(version: u32) -> Option<(u64, u32, Scene)> {
        Some((100 + u64::from(version), version, Scene::idle(100)))
    }

    #[test]
    fn a_watcher_is_told_nothing() {
        let mut acks = Acks::default();
        for v in 0..5 {
            assert_eq!(acks.update(change(v)), None);
        }
    }

    #[test]
    fn pushes_are_acked_by_the_version_after_the_one_they_were_queued_under() {
        let mut acks = Acks::default();
        acks.pushed(Some(3));
        let told = acks.update(change(3)).expect("told at once");
        assert_eq!((told.timeline, told.acked, told.frame), (3, 0, 103));
        assert_eq!(acks.update(change(3)), None, "nothing moved");
        acks.pushed(Some(3));
        acks.pushed(Some(4));
        assert_eq!(acks.update(change(4)).map(|k| k.acked), Some(2));
        assert_eq!(acks.update(change(5)).map(|k| k.acked), Some(3));
        // On a cluster the page is told nothing: no keyframe to give.
        acks.pushed(None);
        assert_eq!(acks.update(None), None);
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut acks = Acks::default();
        for _ in 0..(QUEUED_KEPT + 10) {
            acks.pushed(Some(0));
        }
        assert_eq!(acks.update(change(0)).map(|k| k.acked), Some(10));
        assert_eq!(
            acks.update(change(1)).map(|k| k.acked),
            Some(QUEUED_KEPT as u32 + 10)
        );
    }
}
