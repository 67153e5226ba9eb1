//! Range bookkeeping: the ranges not yet accepted, who holds each, the
//! frontier of frames never handed out, new ranges cut from it, and what a
//! scene change supersedes.

use std::collections::HashMap;

use donut_shared::scene::Scene;

use super::{Scheduler, WorkerId};
use crate::stream::timeline::Timeline;
use crate::trust::reputation::AddrKey;

/// A range of frames not yet accepted.
#[derive(Debug)]
pub(super) struct RangeEntry {
    pub(super) count: u32,
    /// The scene of its first frame when it was planned: only frames
    /// rendered from it are accepted (a range planned again after a scene
    /// change may have the same start and count as a superseded one).
    pub(super) scene: Scene,
    pub(super) holders: Vec<(WorkerId, u32)>,
    /// Under `quorum`: the address whose answer waits for a second one.
    pub(super) voted: Option<AddrKey>,
}

impl RangeEntry {
    pub(super) fn new(count: u32, scene: Scene) -> Self {
        Self {
            count,
            scene,
            holders: Vec::new(),
            voted: None,
        }
    }
}

impl Scheduler {
    /// The lowest frame never handed out.
    pub fn frontier(&self) -> u64 {
        self.frontier
    }

    /// Ranges not yet accepted.
    pub fn outstanding_ranges(&self) -> usize {
        self.ranges.len()
    }

    /// Removes one holder from a range; orphans go to the unassigned set.
    pub(super) fn drop_holder(&mut self, start: u64, worker: WorkerId, task_id: u32) {
        if let Some(entry) = self.ranges.get_mut(&start) {
            entry.holders.retain(|&h| h != (worker, task_id));
            if entry.holders.is_empty() {
                self.unassigned.insert(start);
            }
        }
    }

    /// New frames from the frontier, within the window below `limit`, and
    /// ending at the next keyframe of `timeline` if one lies inside.
    pub(super) fn pick_new(
        &mut self,
        want: u32,
        limit: u64,
        timeline: &Timeline,
    ) -> Option<(u64, u32)> {
        let room = limit.saturating_sub(self.frontier);
        if room == 0 || room < u64::from(want.min(self.min_new)) {
            return None;
        }
        let cut = timeline
            .next_keyframe_after(self.frontier)
            .map_or(room, |k| k - self.frontier);
        let count = room.min(cut).min(u64::from(want)) as u32;
        let start = self.frontier;
        self.frontier += u64::from(count);
        self.ranges
            .insert(start, RangeEntry::new(count, timeline.scene_at(start)));
        Some((start, count))
    }

    /// Frames held by live tasks, summed per address.
    pub(super) fn frames_in_flight_by_addr(&self) -> HashMap<AddrKey, u64> {
        let mut held: HashMap<AddrKey, u64> = HashMap::new();
        for w in self.workers.values() {
            let frames: u64 = w.live.values().map(|a| u64::from(a.count)).sum();
            *held.entry(w.addr).or_insert(0) += frames;
        }
        held
    }

    /// A scene change committed at frame `n`: forgets every range at or
    /// after `n`, cuts one straddling `n` back to end there (unassigned, to
    /// be rendered again from its unchanged scene), drops every task
    /// reaching `n` from its worker (not a miss; its answer will be
    /// [`Claim::Stale`](super::Claim::Stale)) and moves the frontier back to `n`. Returns the
    /// frames that had been handed out at or after `n` (to be rendered again).
    pub fn supersede(&mut self, n: u64) -> u64 {
        let handed = self.frontier.saturating_sub(n);
        let gone: Vec<u64> = self.ranges.range(n..).map(|(&s, _)| s).collect();
        for start in gone {
            self.ranges.remove(&start);
            self.unassigned.remove(&start);
        }
        if let Some((&start, entry)) = self.ranges.range_mut(..n).next_back()
            && start.saturating_add(u64::from(entry.count)) > n
        {
            entry.count = (n - start) as u32;
            entry.holders.clear();
            entry.voted = None;
            self.unassigned.insert(start);
        }
        let reaches = |start: u64, count: u32| start.saturating_add(u64::from(count)) > n;
        for w in self.workers.values_mut() {
            let cut: Vec<u32> = w
                .live
                .iter()
                .filter(|(_, a)| reaches(a.start, a.count))
                .map(|(&t, _)| t)
                .collect();
            for r in w.recent.iter_mut() {
                if reaches(r.start, r.count) {
                    r.superseded = true;
                }
            }
            for t in cut {
                if let Some(a) = w.live.remove(&t) {
                    w.remember_as(t, &a, true);
                }
            }
        }
        self.frontier = self.frontier.min(n);
        handed
    }

    /// Whether frames `start .. start + count` form a range still wanted
    /// and rendered from `scene` (the scene its first frame has now).
    pub fn wants(&self, start: u64, count: u32, scene: Scene) -> bool {
        self.ranges
            .get(&start)
            .is_some_and(|e| e.count == count && e.scene == scene)
    }

    /// Whether frames `start .. start + count` form a range still wanted.
    pub fn is_wanted(&self, start: u64, count: u32) -> bool {
        self.ranges.get(&start).is_some_and(|e| e.count == count)
    }
}
