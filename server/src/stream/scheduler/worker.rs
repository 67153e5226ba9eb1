//! Per-worker bookkeeping: what each worker holds, its recent tasks, its
//! pace, probation and misses (a task presumed lost), and the scheduler's
//! calls that add, size and drop workers.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use donut_shared::scene::Scene;
use donut_shared::wire::MAX_TASK_FRAMES;

use super::{Scheduler, WorkerId};
use crate::trust::reputation::AddrKey;

/// One task handed to one worker.
#[derive(Debug, Clone, Copy)]
pub(super) struct Assignment {
    pub(super) start: u64,
    pub(super) count: u32,
    /// The scene of `start` the task was sent with.
    pub(super) scene: Scene,
    pub(super) sent: Instant,
    /// The worker's count of tasks given, this one included.
    pub(super) seq: u64,
    /// Tasks given to the same worker after this one and answered.
    pub(super) overtaken_by: u16,
    /// From then on an idle worker may get a copy (it is overdue).
    pub(super) hedge_at: Instant,
    /// Then the holder is dropped even if its worker is silent.
    pub(super) expire_at: Instant,
}

/// Why a holder is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Loss {
    Expired,
    PresumedLost,
}

impl Assignment {
    /// Whether (and why) this holder of a worker with `slots` slots should
    /// be dropped now.
    pub(super) fn loss(&self, now: Instant, slots: u16) -> Option<Loss> {
        if self.overtaken_by >= slots || (self.overtaken_by > 0 && self.hedge_at <= now) {
            Some(Loss::PresumedLost)
        } else if self.expire_at <= now {
            Some(Loss::Expired)
        } else {
            None
        }
    }
}

/// Tasks remembered after they were answered or expired, per worker, so a
/// late or repeated answer is recognised as harmless.
pub(super) const RECENT_TASKS: usize = 256;

/// A task answered, dropped or superseded, remembered so its answer is
/// recognised.
#[derive(Debug, Clone, Copy)]
pub(super) struct Recent {
    pub(super) task_id: u32,
    pub(super) start: u64,
    pub(super) count: u32,
    pub(super) scene: Scene,
    /// A scene change reached its frames: its answer is stale.
    pub(super) superseded: bool,
}

/// A worker as the scheduler sees it.
#[derive(Debug)]
pub(super) struct WorkerState {
    pub(super) addr: AddrKey,
    /// Misses since its last verified answer (starting from its address's
    /// count); see [`WorkerState::note_miss`].
    pub(super) misses: u32,
    /// When it last answered anything, if ever.
    pub(super) last_heard: Option<Instant>,
    /// When its last miss was counted.
    pub(super) last_miss: Option<Instant>,
    pub(super) slots: u16,
    pub(super) live: HashMap<u32, Assignment>,
    pub(super) recent: VecDeque<Recent>,
    pub(super) next_task_id: u32,
    /// Measured seconds per frame, end to end (an EWMA).
    pub(super) spf: Option<f64>,
    /// Tasks given to this worker so far.
    pub(super) given: u64,
    /// The scheduler's dispatch count when it was last given a task.
    pub(super) last_given: Option<u64>,
}

impl WorkerState {
    pub(super) fn remember(&mut self, task_id: u32, a: &Assignment) {
        self.remember_as(task_id, a, false);
    }

    pub(super) fn remember_as(&mut self, task_id: u32, a: &Assignment, superseded: bool) {
        if self.recent.len() == RECENT_TASKS {
            self.recent.pop_front();
        }
        self.recent.push_back(Recent {
            task_id,
            start: a.start,
            count: a.count,
            scene: a.scene,
            superseded,
        });
    }

    pub(super) fn recent(&self, task_id: u32) -> Option<Recent> {
        self.recent
            .iter()
            .rev()
            .find(|r| r.task_id == task_id)
            .copied()
    }

    /// Counts a miss for task `a` dropped unanswered, unless the worker
    /// has been heard from within `spacing` of now (since the task was
    /// given), or a miss was counted within `spacing`: a pause, a GC, a lost
    /// hedge race is not a zombie, and one silence is one miss however many
    /// tasks it holds. Returns whether it counted.
    pub(super) fn note_miss(&mut self, a: &Assignment, now: Instant, spacing: Duration) -> bool {
        let since = self.last_heard.map_or(a.sent, |h| h.max(a.sent));
        let silent = now.saturating_duration_since(since) >= spacing;
        let spaced = self
            .last_miss
            .is_none_or(|t| now.saturating_duration_since(t) >= spacing);
        if !(silent && spaced) {
            return false;
        }
        self.misses = self.misses.saturating_add(1);
        self.last_miss = Some(now);
        true
    }

    /// Whether it has answered a task and missed none since.
    pub(super) fn proven(&self) -> bool {
        self.spf.is_some() && self.misses == 0
    }

    /// Tasks it may be given now: its free slots, or one probe when every
    /// slot holds an overdue task, or on probation one task at a time (see
    /// the module docs).
    pub(super) fn free_slots(&self, now: Instant) -> usize {
        let slots = if self.misses > 0 {
            1
        } else {
            usize::from(self.slots)
        };
        if self.live.len() == slots && self.live.values().all(|a| a.hedge_at <= now) {
            return 1;
        }
        slots.saturating_sub(self.live.len())
    }

    /// Records this worker's own answer to a live task: frees the slot and
    /// learns its pace from the round trip.
    pub(super) fn answered(&mut self, task_id: u32, a: &Assignment, now: Instant) {
        self.last_heard = Some(now);
        self.live.remove(&task_id);
        self.remember(task_id, a);
        let sample = now.saturating_duration_since(a.sent).as_secs_f64() / f64::from(a.count);
        self.spf = Some(match self.spf {
            Some(old) => old * 0.7 + sample * 0.3,
            None => sample,
        });
        for earlier in self.live.values_mut().filter(|e| e.seq < a.seq) {
            earlier.overtaken_by = earlier.overtaken_by.saturating_add(1);
        }
    }
}

impl Scheduler {
    /// A worker's measured pace in frames per second, if known.
    pub fn worker_fps(&self, id: WorkerId) -> Option<f64> {
        self.workers
            .get(&id)
            .and_then(|w| w.spf)
            .map(|spf| 1.0 / spf)
    }

    /// Registers a worker from `addr` with one slot (until it says hello),
    /// starting with its address's `misses` in a row.
    pub fn add_worker(&mut self, id: WorkerId, addr: AddrKey, misses: u32) {
        self.workers.insert(
            id,
            WorkerState {
                addr,
                misses,
                last_heard: None,
                last_miss: None,
                slots: 1,
                live: HashMap::new(),
                recent: VecDeque::new(),
                next_task_id: 1,
                spf: None,
                given: 0,
                last_given: None,
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

    /// The range size this worker should get: sized by its pace, a quarter
    /// as large per miss in a row.
    pub(super) fn want(&self, w: &WorkerState) -> u32 {
        let shift = w.misses.saturating_mul(2).min(31);
        (self.paced_want(w) >> shift).max(1)
    }

    pub(super) fn paced_want(&self, w: &WorkerState) -> u32 {
        match w.spf {
            Some(spf) if spf > 0.0 => {
                let n = (self.cfg.task_target.as_secs_f64() / spf).round();
                (n as u32).clamp(1, MAX_TASK_FRAMES)
            }
            Some(_) => MAX_TASK_FRAMES,
            None => self.cfg.first_task_frames.clamp(1, MAX_TASK_FRAMES),
        }
    }

    /// The misses since the last call: each worker that missed, with its
    /// misses in a row.
    pub fn take_misses(&mut self) -> Vec<(WorkerId, u32)> {
        std::mem::take(&mut self.missed)
    }

    /// Drops one worker's holders that are past their deadline or presumed
    /// lost; an expiry is a miss.
    pub(super) fn drop_lost(&mut self, id: WorkerId, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        let lost: Vec<(u32, Loss)> = w
            .live
            .iter()
            .filter_map(|(&t, a)| a.loss(now, w.slots).map(|l| (t, l)))
            .collect();
        let mut dropped = Vec::with_capacity(lost.len());
        for (t, loss) in lost {
            if let Some(a) = w.live.remove(&t) {
                w.remember(t, &a);
                dropped.push((a, t, loss));
            }
        }
        let spacing = self.cfg.miss_spacing;
        let expired = dropped.iter().filter(|d| d.2 == Loss::Expired);
        if expired.fold(false, |m, d| w.note_miss(&d.0, now, spacing) | m) {
            self.missed.push((id, w.misses));
        }
        for (a, t, loss) in dropped {
            let start = a.start;
            match loss {
                Loss::Expired => self.stats.expired += 1,
                Loss::PresumedLost => self.stats.presumed_lost += 1,
            }
            self.drop_holder(start, id, t);
        }
    }

    /// A worker's misses in a row now, if it is connected.
    pub fn misses(&self, id: WorkerId) -> Option<u32> {
        self.workers.get(&id).map(|w| w.misses)
    }
}
