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
//! - **presumed lost**: a task is dropped the same way once its worker has
//!   answered tasks given *after* it: as many of them as it has slots (our
//!   workers render in the order given, at most one task per thread, so by
//!   then it was skipped), or any at all once the task is overdue. A worker
//!   that is answering is alive, so the long floor that shields a paused
//!   tab (`min_expire`) does not apply. Without this, a worker whose
//!   results are silently lost fills every slot with tasks it will never
//!   answer and sits idle until they expire, and so do the workers meant
//!   to hedge them;
//! - **probe**: a worker whose every slot holds an overdue task gets one
//!   task more. If it is alive and losing results, its answer shows the
//!   others lost at once; if it is paused, the probe just waits with them;
//! - a disconnect or a rejected result drops the holder at once;
//! - **probation**: a task dropped unanswered (expired, or handed on
//!   because someone else answered) is a *miss* if its worker has been
//!   silent for `miss_spacing` since it got the task, counted at most once
//!   per `miss_spacing`; a worker with misses (starting from its address's
//!   count, so reconnecting does not clear them) gets one task at a time, a
//!   quarter the size per miss, until a *verified* answer
//!   ([`Scheduler::complete`] or a counted vote). [`Scheduler::take_misses`]
//!   reports them so the connection can close a worker that keeps missing.
//!   Presumed-lost tasks are not misses: their worker is answering;
//! - **proven first**: orphans and hedged copies (the ranges playback
//!   waits on next) go only to workers that have answered and missed
//!   nothing since, unless none is connected; the others get new frames,
//!   a whole lead ahead of the head;
//! - **address share**: the frames in flight held by the workers of one
//!   address never exceed `addr_cap_frames` (unless it holds nothing, or
//!   the worker asking is proven and idle), so no number of idle takers
//!   from one place can hold the window, nor starve a proven neighbour;
//! - **quorum votes**: under the `quorum` policy a range whose first answer
//!   is in stays outstanding, *voted* by that answer's address, until a
//!   worker from another address answers it too; it is then offered whole
//!   (never split) to workers of other addresses only;
//! - **scene changes**: every task carries the scene of its first frame
//!   from the [`Timeline`], and a new range never straddles a keyframe (its
//!   scene is stepped from its start). When a change commits at frame `n`
//!   ([`Scheduler::supersede`]), ranges at or after `n` are forgotten, a
//!   range straddling `n` is cut back to end there, and every task reaching
//!   `n` is dropped from its worker without counting as a miss; its answer,
//!   whenever it comes, is [`Claim::Stale`], never a strike.
//!
//! No dispatch waits for a round: a worker is given its next range the moment
//! it has a free slot, and the frames an unanswered range blocks are only
//! its own. The playback head (in [`crate::stream::core`]) advances as soon as the
//! frames in front of it are in.
//!
//! The scheduler is plain synchronous code with the clock passed in, so its
//! behaviour is unit-tested without sockets or sleeps.
//!
//! # Layout
//!
//! - this file: the config, the [`Scheduler`] and its picking policy
//!   (`pick`, `dispatch`, `claim`, `complete`, `vote`);
//! - `worker.rs`: per-worker bookkeeping (what each holds, its recent
//!   tasks, pace, probation, misses) and adding, sizing and dropping workers;
//! - `ranges.rs`: range bookkeeping (the ranges not yet accepted and their
//!   holders, the frontier, new ranges, what a scene change supersedes);
//! - `tests.rs`: unit and property tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use donut_shared::scene::Scene;
use donut_shared::wire::Task;

use self::ranges::RangeEntry;
use self::worker::{Assignment, WorkerState};
use crate::stream::timeline::Timeline;
use crate::trust::reputation::AddrKey;

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
    /// Never expire sooner than this after dispatch, unless the task is
    /// presumed lost (see the module docs).
    pub min_expire: Duration,
    /// Most workers holding one range at once.
    pub max_copies: usize,
    /// Only this many of the lowest outstanding ranges are hedged.
    pub hedge_window: usize,
    /// New frames are handed out only once this many (or a worker's whole
    /// range) fit in the window, so a full window does not degenerate into
    /// one-frame tasks as the head creeps forward.
    pub min_new_frames: u32,
    /// Most frames in flight held by the workers of one address (at least
    /// one task is always allowed).
    pub addr_cap_frames: u64,
    /// A worker must be silent this long, with a task out, for a miss to
    /// count, and misses count at most once per this long.
    pub miss_spacing: Duration,
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
            addr_cap_frames: u64::MAX,
            miss_spacing: Duration::from_secs(1),
        }
    }
}

/// What a result's header means, before its frames are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The range is still wanted: verify the frames, rendered from this
    /// scene (the task's), then [`Scheduler::complete`].
    Fresh(Scene),
    /// The range was already accepted from someone else (or was re-split):
    /// harmless, nothing to do.
    Done,
    /// A task this worker was given and has already finished or lost, or
    /// one a scene change superseded: harmless.
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
    /// Holders dropped because their worker answered later tasks instead.
    pub presumed_lost: u64,
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
    /// Misses not yet taken by [`Scheduler::take_misses`].
    missed: Vec<(WorkerId, u32)>,
    /// `min_new_frames` of the dispatch under way (see
    /// [`Scheduler::dispatch_window`]).
    min_new: u32,
}

impl Scheduler {
    /// A scheduler whose first range starts at `start`.
    pub fn new(cfg: SchedulerConfig, start: u64) -> Self {
        Self {
            min_new: cfg.min_new_frames,
            cfg,
            workers: HashMap::new(),
            ranges: BTreeMap::new(),
            unassigned: BTreeSet::new(),
            frontier: start,
            stats: SchedulerStats::default(),
            missed: Vec::new(),
        }
    }

    /// Counters for metrics.
    pub fn stats(&self) -> SchedulerStats {
        self.stats
    }

    /// When a task given now is overdue (hedged) and when it expires.
    fn deadlines(&self, spf: Option<f64>, count: u32, now: Instant) -> (Instant, Instant) {
        let Some(spf) = spf else {
            let first = self.cfg.first_task_timeout;
            return (now + first, now + first * 2);
        };
        let expected = spf * f64::from(count);
        let times = |factor: f64| Duration::from_secs_f64((expected * factor).min(3600.0));
        (
            now + times(self.cfg.hedge_factor).max(self.cfg.min_hedge),
            now + times(self.cfg.expire_factor).max(self.cfg.min_expire),
        )
    }

    /// Picks the range a worker from `addr` should render next, with at
    /// most `room` frames (its address's share left), or `None`.
    fn pick(
        &mut self,
        (id, addr): (WorkerId, AddrKey),
        want: u32,
        room: u64,
        (limit, timeline): (u64, &Timeline),
        now: Instant,
    ) -> Option<(u64, u32)> {
        let fits = |count: u32| u64::from(count) <= room;
        let want = want.min(u32::try_from(room).unwrap_or(u32::MAX)).max(1);
        // Orphans and copies are what playback waits on next: while anyone
        // proven is connected, a worker that has never answered (or is on
        // probation) gets only new frames, a whole lead away from the head,
        // so a zombie cannot sit on the range in front of it.
        let may_rescue = self.workers.get(&id).is_some_and(WorkerState::proven)
            || !self.workers.values().any(WorkerState::proven);
        if !may_rescue {
            return self.pick_new(want, limit, timeline);
        }
        // 1. An orphaned range, lowest first (the head waits on it): split
        // to fit, unless it carries a vote (then whole, and only to another
        // address).
        let ranges = &self.ranges;
        let orphan = self.unassigned.iter().copied().find(|s| {
            ranges
                .get(s)
                .is_some_and(|e| e.voted.is_none() || (e.voted != Some(addr) && fits(e.count)))
        });
        if let Some(start) = orphan {
            self.unassigned.remove(&start);
            let entry = self.ranges.get_mut(&start)?;
            let count = entry.count;
            if entry.voted.is_some() {
                self.stats.reassigned += 1;
                return Some((start, count));
            }
            if count > want {
                entry.count = want;
                let rest = start + u64::from(want);
                let scene = timeline.scene_at(rest);
                self.ranges
                    .insert(rest, RangeEntry::new(count - want, scene));
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
                    && e.voted != Some(addr)
                    && fits(e.count)
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
        self.pick_new(want, limit, timeline)
    }

    /// Fills every free slot of every worker, never creating frames at or
    /// beyond `limit`, each task with its scene and version from
    /// `timeline`. Returns the tasks to send.
    pub fn dispatch(
        &mut self,
        now: Instant,
        limit: u64,
        timeline: &Timeline,
    ) -> Vec<(WorkerId, Task)> {
        self.dispatch_window(now, (limit, None), timeline)
    }

    /// [`Scheduler::dispatch`] with the window's least new task size for
    /// this dispatch only: `Some(n)` instead of `min_new_frames` (a hot
    /// timeline's window opens a frame at a time and is short, so waiting
    /// for `min_new_frames` to fit would stall playback).
    pub fn dispatch_window(
        &mut self,
        now: Instant,
        (limit, min_new): (u64, Option<u32>),
        timeline: &Timeline,
    ) -> Vec<(WorkerId, Task)> {
        self.min_new = min_new.unwrap_or(self.cfg.min_new_frames);
        let mut out = Vec::new();
        // Longest waiting first, so every worker gets a share when the
        // window opens a little at a time (paced playback): sizes already
        // follow each worker's pace, so a share costs no latency, while
        // fastest-first would starve every worker but one. Ties (workers
        // never given a task) go to the fastest.
        let mut ids: Vec<(WorkerId, Option<u64>, f64)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.free_slots(now) > 0)
            .map(|(&id, w)| (id, w.last_given, w.spf.unwrap_or(f64::MAX)))
            .collect();
        ids.sort_by(|a, b| a.1.cmp(&b.1).then(a.2.total_cmp(&b.2)).then(a.0.cmp(&b.0)));
        let mut in_flight = self.frames_in_flight_by_addr();
        for (id, _, _) in ids {
            while let Some(w) = self.workers.get(&id) {
                if w.free_slots(now) == 0 {
                    break;
                }
                let addr = w.addr;
                let held = in_flight.get(&addr).copied().unwrap_or(0);
                // An address holding nothing may always take one task, and so
                // may a proven worker holding nothing (or a zombie on its
                // address would starve it).
                let room = if held == 0 || (w.proven() && w.live.is_empty()) {
                    u64::MAX
                } else {
                    self.cfg.addr_cap_frames.saturating_sub(held)
                };
                if room == 0 {
                    break;
                }
                let want = self.want(w);
                let spf = w.spf;
                let Some((start, count)) =
                    self.pick((id, addr), want, room, (limit, timeline), now)
                else {
                    break;
                };
                let scene = timeline.scene_at(start);
                *in_flight.entry(addr).or_insert(0) += u64::from(count);
                let (hedge_at, expire_at) = self.deadlines(spf, count, now);
                let Some(w) = self.workers.get_mut(&id) else {
                    break;
                };
                let task_id = w.next_task_id;
                w.next_task_id = w.next_task_id.wrapping_add(1).max(1);
                w.given += 1;
                w.last_given = Some(self.stats.dispatched);
                w.live.insert(
                    task_id,
                    Assignment {
                        start,
                        count,
                        scene,
                        sent: now,
                        seq: w.given,
                        overtaken_by: 0,
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
                        timeline: timeline.version(),
                        scene,
                    },
                ));
            }
        }
        out
    }

    /// Drops holders far past their deadline or presumed lost (see the
    /// module docs), freeing their slots.
    pub fn expire(&mut self, now: Instant) {
        let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        for id in ids {
            self.drop_lost(id, now);
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
        let wanted = |ranges: &BTreeMap<u64, RangeEntry>, scene: Scene| {
            ranges
                .get(&start)
                .is_some_and(|e| e.count == count && e.scene == scene)
        };
        if let Some(a) = w.live.get(&task_id).copied() {
            if a.start != start || a.count != count {
                return Claim::Mismatch;
            }
            if wanted(&self.ranges, a.scene) {
                return Claim::Fresh(a.scene);
            }
            // Someone else's copy won; this one is done too.
            w.answered(task_id, &a, now);
            self.drop_lost(id, now);
            return Claim::Done;
        }
        if let Some(r) = w.recent(task_id) {
            if r.start != start || r.count != count {
                return Claim::Mismatch;
            }
            // A late answer shows the worker alive (not verified, so it
            // does not end probation).
            w.last_heard = Some(now);
            return if r.superseded {
                Claim::Stale
            } else if wanted(&self.ranges, r.scene) {
                Claim::Fresh(r.scene)
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

    /// Whether a scene change superseded `id`'s task `task_id` (its answer
    /// must not be accepted, though the range may be wanted again).
    pub fn is_superseded(&self, id: WorkerId, task_id: u32) -> bool {
        self.workers
            .get(&id)
            .and_then(|w| w.recent(task_id))
            .is_some_and(|r| r.superseded)
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
            w.answered(task_id, &a, now);
            // A verified, accepted answer: probation ends (late answers and
            // answers needing no check do not count, or an idle taker could
            // clear its record with junk).
            w.misses = 0;
            self.drop_lost(id, now);
        }
        if !self.is_wanted(start, count) {
            return false;
        }
        if let Some(entry) = self.ranges.remove(&start) {
            // Free the other holders' slots now: a copy that was lost (a
            // dropped result) must not hold a slot until it expires. A copy
            // still rendering just finishes later as a harmless duplicate.
            // An overdue copy handed on this way is a miss, forgiven by its
            // late answer if one comes.
            for (w, t) in entry.holders {
                if let Some(ws) = self.workers.get_mut(&w)
                    && let Some(a) = ws.live.remove(&t)
                {
                    ws.remember(t, &a);
                    if ws.note_miss(&a, now, self.cfg.miss_spacing) {
                        self.missed.push((w, ws.misses));
                    }
                }
            }
        }
        self.unassigned.remove(&start);
        true
    }

    /// Under `quorum`: `id`'s answer to `task_id` is the range's first
    /// vote (or, when `vote` is false, an answer from the voting address
    /// that does not count). Frees the worker's slot and learns its pace;
    /// the range stays outstanding, voted by the worker's address, and
    /// goes (whole) to a worker of another address.
    pub fn vote(&mut self, id: WorkerId, task_id: u32, start: u64, now: Instant, vote: bool) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if vote && let Some(entry) = self.ranges.get_mut(&start) {
            // Also for a late answer (its task no longer live).
            entry.voted = Some(w.addr);
        }
        if let Some(a) = w.live.get(&task_id).copied() {
            w.answered(task_id, &a, now);
            if vote {
                w.misses = 0;
            }
            self.drop_holder(a.start, id, task_id);
        }
        self.drop_lost(id, now);
    }

    /// Under `quorum`: `addr`'s vote on the range at `start` was settled
    /// against it, so any address may answer it again (a newer vote from
    /// another address stays).
    pub fn clear_vote(&mut self, start: u64, addr: AddrKey) {
        if let Some(entry) = self.ranges.get_mut(&start)
            && entry.voted == Some(addr)
        {
            entry.voted = None;
        }
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

mod ranges;
mod worker;

#[cfg(test)]
mod tests;
