//! The scheduler: which worker renders which frames, and what happens when a
//! worker is slow, silent, wrong or gone.
//!
//! Work is a set of non-overlapping *ranges* of absolute frame numbers. A
//! range is created when a worker with a free slot asks for work, sized by
//! that worker's own measured pace (capacity-aware: a phone gets a few
//! frames, a workstation hundreds), and lives until a result for it is
//! accepted. While it lives it has zero or more *holders* (worker, task id):
//!
//! - **hedged dispatch**: once a range is overdue relative to the pace of
//!   every worker holding it (not a fixed timeout), an idle worker gets a
//!   copy; the first correct answer wins, later ones are harmless;
//! - **expiry**: a holder far past its own deadline is dropped and its slot
//!   freed; a range with no holders left goes back to the unassigned set,
//!   where it is split to fit the next worker's pace;
//! - a disconnect or a rejected result drops the holder at once.
//!
//! No dispatch waits for a round: a worker is given its next range the moment
//! it has a free slot, and the frames an unanswered range blocks are only
//! its own. The playback head (in [`crate::core`]) advances as soon as the
//! frames in front of it are in.
//!
//! The scheduler is plain synchronous code with the clock passed in, so its
//! behaviour is unit-tested without sockets or sleeps.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use donut_shared::wire::{MAX_TASK_FRAMES, Task};

/// Identifies a worker connection for the life of the server.
pub type WorkerId = u64;

/// Tunables of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Target duration of one task; a worker's pace turns it into a size.
    pub task_target: Duration,
    /// Size of a worker's tasks before its pace is known.
    pub first_task_frames: u32,
    /// Deadline of a task whose worker's pace is unknown.
    pub first_task_timeout: Duration,
    /// A task is overdue (hedged) after this many times its expected duration.
    pub hedge_factor: f64,
    /// A holder is dropped after this many times its expected duration.
    pub expire_factor: f64,
    /// Never hedge sooner than this after dispatch.
    pub min_hedge: Duration,
    /// Never expire sooner than this after dispatch.
    pub min_expire: Duration,
    /// Most workers holding one range at once.
    pub max_copies: usize,
    /// Only this many of the lowest outstanding ranges are hedged.
    pub hedge_window: usize,
    /// New frames are handed out only once this many (or a worker's whole
    /// range) fit in the window, so a full window does not degenerate into
    /// one-frame tasks as the head creeps forward.
    pub min_new_frames: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            task_target: Duration::from_millis(100),
            first_task_frames: 30,
            first_task_timeout: Duration::from_secs(2),
            hedge_factor: 2.0,
            expire_factor: 8.0,
            min_hedge: Duration::from_millis(15),
            min_expire: Duration::from_millis(500),
            max_copies: 3,
            hedge_window: 4,
            min_new_frames: 1,
        }
    }
}

/// One task handed to one worker.
#[derive(Debug, Clone, Copy)]
struct Assignment {
    start: u64,
    count: u32,
    sent: Instant,
    hedge_at: Instant,
    expire_at: Instant,
}

/// Tasks remembered after they were answered or expired, per worker, so a
/// late or repeated answer is recognised as harmless.
const RECENT_TASKS: usize = 256;

/// A worker as the scheduler sees it.
#[derive(Debug)]
struct WorkerState {
    slots: u16,
    live: HashMap<u32, Assignment>,
    recent: VecDeque<(u32, u64, u32)>,
    next_task_id: u32,
    /// Measured seconds per frame, end to end (an EWMA).
    spf: Option<f64>,
}

impl WorkerState {
    fn remember(&mut self, task_id: u32, a: &Assignment) {
        if self.recent.len() == RECENT_TASKS {
            self.recent.pop_front();
        }
        self.recent.push_back((task_id, a.start, a.count));
    }

    fn recent(&self, task_id: u32) -> Option<(u64, u32)> {
        self.recent
            .iter()
            .rev()
            .find(|(id, _, _)| *id == task_id)
            .map(|&(_, s, c)| (s, c))
    }

    fn free_slots(&self) -> usize {
        usize::from(self.slots).saturating_sub(self.live.len())
    }
}

/// A range of frames not yet accepted.
#[derive(Debug)]
struct RangeEntry {
    count: u32,
    holders: Vec<(WorkerId, u32)>,
}

/// What a result's header means, before its frames are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The range is still wanted: verify the frames, then [`Scheduler::complete`].
    Fresh,
    /// The range was already accepted from someone else (or was re-split):
    /// harmless, nothing to do.
    Done,
    /// A task this worker was given and has already finished or lost: harmless.
    Stale,
    /// The header does not match the task with that id: a violation.
    Mismatch,
    /// This worker was never given a task with that id: a violation.
    Unsolicited,
}

/// Counters the scheduler keeps for metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct SchedulerStats {
    /// Tasks sent (including hedged copies).
    pub dispatched: u64,
    /// Copies of overdue ranges sent to a second worker.
    pub hedged: u64,
    /// Ranges dispatched again after their holder expired, failed or left.
    pub reassigned: u64,
    /// Holders dropped for being far past their deadline.
    pub expired: u64,
}

/// The scheduler state. See the module docs.
#[derive(Debug)]
pub struct Scheduler {
    cfg: SchedulerConfig,
    workers: HashMap<WorkerId, WorkerState>,
    ranges: BTreeMap<u64, RangeEntry>,
    unassigned: BTreeSet<u64>,
    /// The lowest frame never handed out.
    frontier: u64,
    stats: SchedulerStats,
}

impl Scheduler {
    /// A scheduler whose first range starts at `start`.
    pub fn new(cfg: SchedulerConfig, start: u64) -> Self {
        Self {
            cfg,
            workers: HashMap::new(),
            ranges: BTreeMap::new(),
            unassigned: BTreeSet::new(),
            frontier: start,
            stats: SchedulerStats::default(),
        }
    }

    /// Counters for metrics.
    pub fn stats(&self) -> SchedulerStats {
        self.stats
    }

    /// The lowest frame never handed out.
    pub fn frontier(&self) -> u64 {
        self.frontier
    }

    /// Ranges not yet accepted.
    pub fn outstanding_ranges(&self) -> usize {
        self.ranges.len()
    }

    /// A worker's measured pace in frames per second, if known.
    pub fn worker_fps(&self, id: WorkerId) -> Option<f64> {
        self.workers
            .get(&id)
            .and_then(|w| w.spf)
            .map(|spf| 1.0 / spf)
    }

    /// Registers a worker with one slot (until it says hello).
    pub fn add_worker(&mut self, id: WorkerId) {
        self.workers.insert(
            id,
            WorkerState {
                slots: 1,
                live: HashMap::new(),
                recent: VecDeque::new(),
                next_task_id: 1,
                spf: None,
            },
        );
    }

    /// Sets how many tasks a worker may have outstanding.
    pub fn set_slots(&mut self, id: WorkerId, slots: u16) {
        if let Some(w) = self.workers.get_mut(&id) {
            w.slots = slots.max(1);
        }
    }

    /// Forgets a worker; the ranges only it held become unassigned.
    pub fn remove_worker(&mut self, id: WorkerId) {
        let Some(w) = self.workers.remove(&id) else {
            return;
        };
        for (task_id, a) in w.live {
            self.drop_holder(a.start, id, task_id);
        }
    }

    /// Removes one holder from a range; orphans go to the unassigned set.
    fn drop_holder(&mut self, start: u64, worker: WorkerId, task_id: u32) {
        if let Some(entry) = self.ranges.get_mut(&start) {
            entry.holders.retain(|&h| h != (worker, task_id));
            if entry.holders.is_empty() {
                self.unassigned.insert(start);
            }
        }
    }

    /// The range size this worker should get.
    fn want(&self, w: &WorkerState) -> u32 {
        match w.spf {
            Some(spf) if spf > 0.0 => {
                let n = (self.cfg.task_target.as_secs_f64() / spf).round();
                (n as u32).clamp(1, MAX_TASK_FRAMES)
            }
            Some(_) => MAX_TASK_FRAMES,
            None => self.cfg.first_task_frames.clamp(1, MAX_TASK_FRAMES),
        }
    }

    fn deadlines(&self, spf: Option<f64>, count: u32, now: Instant) -> (Instant, Instant) {
        match spf {
            Some(spf) => {
                let expected = spf * f64::from(count);
                let hedge = Duration::from_secs_f64((expected * self.cfg.hedge_factor).min(3600.0))
                    .max(self.cfg.min_hedge);
                let expire =
                    Duration::from_secs_f64((expected * self.cfg.expire_factor).min(3600.0))
                        .max(self.cfg.min_expire);
                (now + hedge, now + expire)
            }
            None => (
                now + self.cfg.first_task_timeout,
                now + self.cfg.first_task_timeout * 2,
            ),
        }
    }

    /// Picks the range a worker should render next, or `None`.
    fn pick(&mut self, id: WorkerId, want: u32, limit: u64, now: Instant) -> Option<(u64, u32)> {
        // 1. An orphaned range, lowest first (the head waits on it): split to fit.
        if let Some(&start) = self.unassigned.first() {
            self.unassigned.remove(&start);
            let entry = self.ranges.get_mut(&start)?;
            let count = entry.count;
            if count > want {
                entry.count = want;
                let rest = start + u64::from(want);
                self.ranges.insert(
                    rest,
                    RangeEntry {
                        count: count - want,
                        holders: Vec::new(),
                    },
                );
                self.unassigned.insert(rest);
            }
            self.stats.reassigned += 1;
            return Some((start, count.min(want)));
        }
        // 2. A copy of an overdue range this worker does not hold, among
        // the few nearest the head: those are what playback waits on next,
        // while a late range further ahead will usually still arrive before
        // it is needed, and copying it would only waste the fleet's time.
        let workers = &self.workers;
        let overdue = self
            .ranges
            .iter()
            .take(self.cfg.hedge_window)
            .find(|(_, e)| {
                !e.holders.is_empty()
                    && e.holders.len() < self.cfg.max_copies
                    && e.holders.iter().all(|&(w, t)| {
                        w != id
                            && workers
                                .get(&w)
                                .and_then(|ws| ws.live.get(&t))
                                .is_none_or(|a| a.hedge_at <= now)
                    })
            });
        if let Some((&start, e)) = overdue {
            self.stats.hedged += 1;
            return Some((start, e.count));
        }
        // 3. New frames from the frontier, within the window.
        let room = limit.saturating_sub(self.frontier);
        if room == 0 || room < u64::from(want.min(self.cfg.min_new_frames)) {
            return None;
        }
        let count = (limit - self.frontier).min(u64::from(want)) as u32;
        let start = self.frontier;
        self.frontier += u64::from(count);
        self.ranges.insert(
            start,
            RangeEntry {
                count,
                holders: Vec::new(),
            },
        );
        Some((start, count))
    }

    /// Fills every free slot of every worker, never creating frames at or
    /// beyond `limit`. Returns the tasks to send.
    pub fn dispatch(&mut self, now: Instant, limit: u64) -> Vec<(WorkerId, Task)> {
        let mut out = Vec::new();
        // Fastest first, so the work nearest the head goes to whoever
        // finishes it soonest. Unknown pace counts as slowest.
        let mut ids: Vec<(WorkerId, f64)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.free_slots() > 0)
            .map(|(&id, w)| (id, w.spf.unwrap_or(f64::MAX)))
            .collect();
        ids.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        for (id, _) in ids {
            while let Some(w) = self.workers.get(&id) {
                if w.free_slots() == 0 {
                    break;
                }
                let want = self.want(w);
                let spf = w.spf;
                let Some((start, count)) = self.pick(id, want, limit, now) else {
                    break;
                };
                let (hedge_at, expire_at) = self.deadlines(spf, count, now);
                let Some(w) = self.workers.get_mut(&id) else {
                    break;
                };
                let task_id = w.next_task_id;
                w.next_task_id = w.next_task_id.wrapping_add(1).max(1);
                w.live.insert(
                    task_id,
                    Assignment {
                        start,
                        count,
                        sent: now,
                        hedge_at,
                        expire_at,
                    },
                );
                if let Some(e) = self.ranges.get_mut(&start) {
                    e.holders.push((id, task_id));
                }
                self.stats.dispatched += 1;
                out.push((
                    id,
                    Task {
                        task_id,
                        start,
                        count,
                    },
                ));
            }
        }
        out
    }

    /// Drops holders far past their deadline, freeing their slots.
    pub fn expire(&mut self, now: Instant) {
        let mut dropped = Vec::new();
        for (&id, w) in self.workers.iter_mut() {
            let late: Vec<u32> = w
                .live
                .iter()
                .filter(|(_, a)| a.expire_at <= now)
                .map(|(&t, _)| t)
                .collect();
            for t in late {
                if let Some(a) = w.live.remove(&t) {
                    w.remember(t, &a);
                    dropped.push((a.start, id, t));
                }
            }
        }
        for (start, id, t) in dropped {
            self.stats.expired += 1;
            self.drop_holder(start, id, t);
        }
    }

    /// Classifies a result's header. Does not change any state except for
    /// answers that need no verification ([`Claim::Done`], [`Claim::Stale`]),
    /// which free the worker's slot.
    pub fn claim(
        &mut self,
        id: WorkerId,
        task_id: u32,
        start: u64,
        count: u32,
        now: Instant,
    ) -> Claim {
        let Some(w) = self.workers.get_mut(&id) else {
            return Claim::Stale;
        };
        let wanted = |ranges: &BTreeMap<u64, RangeEntry>| {
            ranges.get(&start).is_some_and(|e| e.count == count)
        };
        if let Some(a) = w.live.get(&task_id).copied() {
            if a.start != start || a.count != count {
                return Claim::Mismatch;
            }
            if wanted(&self.ranges) {
                return Claim::Fresh;
            }
            // Someone else's copy won; this one is done too.
            w.live.remove(&task_id);
            w.remember(task_id, &a);
            Self::learn_pace(w, &a, now);
            return Claim::Done;
        }
        if let Some((s, c)) = w.recent(task_id) {
            if s != start || c != count {
                return Claim::Mismatch;
            }
            return if wanted(&self.ranges) {
                Claim::Fresh
            } else {
                Claim::Done
            };
        }
        // Task ids count up from 1 and wrap past u32::MAX back to 1.
        if task_id != 0 && task_id < w.next_task_id {
            Claim::Stale
        } else {
            Claim::Unsolicited
        }
    }

    fn learn_pace(w: &mut WorkerState, a: &Assignment, now: Instant) {
        let sample = now.saturating_duration_since(a.sent).as_secs_f64() / f64::from(a.count);
        w.spf = Some(match w.spf {
            Some(old) => old * 0.7 + sample * 0.3,
            None => sample,
        });
    }

    /// Whether frames `start .. start + count` form a range still wanted.
    pub fn is_wanted(&self, start: u64, count: u32) -> bool {
        self.ranges.get(&start).is_some_and(|e| e.count == count)
    }

    /// Records that `id`'s answer to `task_id` was accepted: the range is
    /// done; other holders' copies become harmless. Returns false if the
    /// range was no longer wanted.
    pub fn complete(
        &mut self,
        id: WorkerId,
        task_id: u32,
        start: u64,
        count: u32,
        now: Instant,
    ) -> bool {
        if let Some(w) = self.workers.get_mut(&id)
            && let Some(a) = w.live.get(&task_id).copied()
            && a.start == start
            && a.count == count
        {
            w.live.remove(&task_id);
            w.remember(task_id, &a);
            Self::learn_pace(w, &a, now);
        }
        if !self.is_wanted(start, count) {
            return false;
        }
        if let Some(entry) = self.ranges.remove(&start) {
            // Free the other holders' slots now: a copy that was lost (a
            // dropped result) must not hold a slot until it expires. A copy
            // still rendering just finishes later as a harmless duplicate.
            for (w, t) in entry.holders {
                if let Some(ws) = self.workers.get_mut(&w)
                    && let Some(a) = ws.live.remove(&t)
                {
                    ws.remember(t, &a);
                }
            }
        }
        self.unassigned.remove(&start);
        true
    }

    /// Drops `id`'s hold on `task_id` after a failed check or a mismatched
    /// header, freeing its slot; the range goes to someone else.
    pub fn reject(&mut self, id: WorkerId, task_id: u32) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if let Some(a) = w.live.remove(&task_id) {
            w.remember(task_id, &a);
            self.drop_holder(a.start, id, task_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched() -> Scheduler {
        Scheduler::new(SchedulerConfig::default(), 0)
    }

    #[test]
    fn hands_out_contiguous_ranges_within_limit() {
        let mut s = sched();
        let now = Instant::now();
        s.add_worker(1);
        s.set_slots(1, 3);
        let tasks = s.dispatch(now, 70);
        let ranges: Vec<(u64, u32)> = tasks.iter().map(|(_, t)| (t.start, t.count)).collect();
        assert_eq!(ranges, vec![(0, 30), (30, 30), (60, 10)]);
        assert!(s.dispatch(now, 70).is_empty());
    }

    #[test]
    fn pace_sets_range_size() {
        let mut s = sched();
        let t0 = Instant::now();
        s.add_worker(1);
        let (_, t) = s.dispatch(t0, 10_000)[0];
        // 30 frames in 30 ms: 1 ms a frame, so a 100 ms task is 100 frames.
        let t1 = t0 + Duration::from_millis(30);
        assert_eq!(s.claim(1, t.task_id, t.start, t.count, t1), Claim::Fresh);
        assert!(s.complete(1, t.task_id, t.start, t.count, t1));
        let (_, t) = s.dispatch(t1, 10_000)[0];
        assert_eq!(t.count, 100);
    }

    #[test]
    fn overdue_range_is_hedged_and_first_answer_wins() {
        let mut s = sched();
        let t0 = Instant::now();
        s.add_worker(1);
        let (_, a) = s.dispatch(t0, 30)[0];
        s.add_worker(2);
        // Not overdue yet: worker 2 gets nothing (window is full).
        assert!(s.dispatch(t0, 30).is_empty());
        let late = t0 + Duration::from_secs(3);
        let (w, b) = s.dispatch(late, 30)[0];
        assert_eq!((w, b.start, b.count), (2, a.start, a.count));
        assert_eq!(s.stats().hedged, 1);
        assert_eq!(s.claim(2, b.task_id, b.start, b.count, late), Claim::Fresh);
        assert!(s.complete(2, b.task_id, b.start, b.count, late));
        // The original holder's slot was freed; its answer arrives late: harmless.
        assert_eq!(s.workers[&1].live.len(), 0);
        assert_eq!(s.claim(1, a.task_id, a.start, a.count, late), Claim::Done);
        assert_eq!(s.claim(1, a.task_id, a.start, a.count, late), Claim::Done);
    }

    #[test]
    fn disconnect_orphans_ranges_which_are_split_to_fit() {
        let mut s = sched();
        let t0 = Instant::now();
        s.add_worker(1);
        let (_, a) = s.dispatch(t0, 30)[0];
        s.remove_worker(1);
        s.add_worker(2);
        s.set_slots(2, 2);
        let tasks = s.dispatch(t0, 30);
        assert_eq!(tasks.len(), 1);
        assert_eq!((tasks[0].1.start, tasks[0].1.count), (a.start, a.count));
        assert_eq!(s.stats().reassigned, 1);
    }

    #[test]
    fn classifies_bad_headers() {
        let mut s = sched();
        let t0 = Instant::now();
        s.add_worker(1);
        let (_, a) = s.dispatch(t0, 100)[0];
        assert_eq!(s.claim(1, a.task_id + 7, 0, 30, t0), Claim::Unsolicited);
        assert_eq!(
            s.claim(1, a.task_id, a.start + 1, a.count, t0),
            Claim::Mismatch
        );
        assert_eq!(
            s.claim(1, a.task_id, a.start, a.count + 1, t0),
            Claim::Mismatch
        );
        s.reject(1, a.task_id);
        // Rejected: the range goes back, and the worker is free again.
        let again = s.dispatch(t0, 100);
        assert_eq!(again[0].1.start, a.start);
    }

    #[test]
    fn expiry_frees_the_slot_and_reassigns() {
        let mut s = sched();
        let t0 = Instant::now();
        s.add_worker(1);
        let (_, a) = s.dispatch(t0, 30)[0];
        s.expire(t0 + Duration::from_secs(5));
        assert_eq!(s.stats().expired, 1);
        let (_, b) = s.dispatch(t0 + Duration::from_secs(5), 30)[0];
        assert_eq!(b.start, a.start);
        assert_ne!(b.task_id, a.task_id);
        // The expired answer is still usable if it arrives first.
        assert_eq!(s.claim(1, a.task_id, a.start, a.count, t0), Claim::Fresh);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        /// One step a (possibly hostile) fleet can cause.
        #[derive(Debug, Clone)]
        enum Op {
            Add(u8),
            Slots(u8, u16),
            Remove(u8),
            /// Answer a real task (by index into those handed out) or a forged header.
            Answer {
                worker: u8,
                pick: usize,
                forged: Option<(u32, u64, u32)>,
                ok: bool,
            },
            Advance(u16),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (0u8..4).prop_map(Op::Add),
                (0u8..4, 0u16..80).prop_map(|(w, s)| Op::Slots(w, s)),
                (0u8..4).prop_map(Op::Remove),
                (
                    0u8..4,
                    any::<usize>(),
                    proptest::option::of((any::<u32>(), any::<u64>(), any::<u32>())),
                    any::<bool>()
                )
                    .prop_map(|(worker, pick, forged, ok)| Op::Answer {
                        worker,
                        pick,
                        forged,
                        ok
                    }),
                (0u16..3000).prop_map(Op::Advance),
            ]
        }

        proptest! {
            /// Whatever the fleet does, the scheduler never panics, never
            /// hands out a frame at or past the limit, and its outstanding
            /// ranges never overlap.
            #[test]
            fn invariants_hold_under_any_fleet(ops in proptest::collection::vec(op(), 1..200)) {
                let mut s = sched();
                let mut now = Instant::now();
                let limit = 5_000;
                let mut handed: Vec<(WorkerId, Task)> = Vec::new();
                for op in ops {
                    match op {
                        Op::Add(w) => s.add_worker(u64::from(w)),
                        Op::Slots(w, n) => s.set_slots(u64::from(w), n),
                        Op::Remove(w) => s.remove_worker(u64::from(w)),
                        Op::Answer { worker, pick, forged, ok } => {
                            let (id, t) = match (forged, handed.is_empty()) {
                                (Some(_), _) | (None, true) => {
                                    let (task_id, start, count) = forged.unwrap_or((0, 0, 1));
                                    (u64::from(worker), Task { task_id, start, count })
                                }
                                (None, false) => handed[pick % handed.len()],
                            };
                            if s.claim(id, t.task_id, t.start, t.count, now) == Claim::Fresh {
                                if ok {
                                    s.complete(id, t.task_id, t.start, t.count, now);
                                } else {
                                    s.reject(id, t.task_id);
                                }
                            }
                        }
                        Op::Advance(ms) => {
                            now += Duration::from_millis(u64::from(ms));
                            s.expire(now);
                        }
                    }
                    for (id, t) in s.dispatch(now, limit) {
                        prop_assert!(t.count >= 1 && t.count <= MAX_TASK_FRAMES);
                        prop_assert!(t.start + u64::from(t.count) <= limit);
                        handed.push((id, t));
                    }
                    let mut end = 0;
                    for (&start, e) in &s.ranges {
                        prop_assert!(start >= end, "overlapping ranges");
                        end = start + u64::from(e.count);
                    }
                    prop_assert!(end <= s.frontier);
                }
            }
        }
    }
}
