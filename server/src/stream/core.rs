//! The stream's core: scheduler, frame ring, playback head and broadcast
//! cursor behind one short-held lock.
//!
//! Four positions describe the stream, always in this order:
//!
//! ```text
//!   ring.base == head  <=  cursor (broadcast)  <=  contiguous  <=  frontier
//!   (oldest kept)          (sent to viewers)       (all below     (never handed
//!                                                    accepted)      out yet)
//! ```
//!
//! Invariants:
//! - the head never passes `contiguous`: playback never shows a frame that
//!   has not been received and accepted;
//! - every frame in `[head, contiguous)` is in the ring (the ring's base is
//!   the head, and nothing is dispatched at or beyond `head + capacity`);
//! - `cursor >= head` after every tick: a frame is broadcast before the head
//!   (and so the ring) leaves it behind, so viewers see every frame;
//! - frame numbers are absolute `u64` and only grow.
//!
//! With pacing, the head advances at the configured fps, stalling (never
//! skipping) when the frame in front of it is missing; workers render up to
//! `lead` frames ahead and viewers are sent up to `viewer lead` frames ahead.
//! Without pacing the head follows the broadcast cursor and everything moves
//! as fast as frames arrive.
//!
//! Under the `quorum` policy the core also holds each outstanding range's
//! first vote (the bytes one address returned) until a second address
//! agrees, the referee settles it, or the range is accepted; so votes are
//! bounded by the render-ahead window. Worker connections hear from the
//! core through one channel each ([`WorkerEvent`]): tasks, misses, bans.
//!
//! Each batch is encoded once into a `Bytes` (by the broadcaster, off the
//! lock) and published on the node's [`Fanout`], which viewers subscribe
//! to; the core tells the fan-out where the head is and what a scene change
//! superseded, under its lock, so a joiner's catch-up starts at the head
//! and holds no superseded frame.
//!
//! # Scene changes supersede
//!
//! The core owns the scene [`Timeline`]. Viewers' pushes queue there
//! ([`Core::input`]); each tick folds them into one change at frame
//! `n = head + input_lead` (or the last keyframe, if later). Everything at
//! or after `n` was rendered for the old timeline, so the change
//! *supersedes* it, under the lock, before any batch is taken: accepted
//! frames `>= n` leave the ring, `contiguous`, the broadcast cursor and the
//! scheduler's frontier fall back to `n` (never below the head, so the
//! order above holds), outstanding ranges and first votes at or after `n`
//! are forgotten (a straddling range is cut), and published batches
//! reaching `n` are no longer handed to joiners ([`Fanout::forget_from`];
//! an encoded batch straddling `n` cannot be cut: the cursor goes back to
//! its start, at the head at the earliest, and its frames before `n` are
//! sent again). Every
//! batch carries the version it was taken under, so the first batch after
//! a change (at `n`, or lower as just said) tells viewers to drop what they
//! hold from its start on. Answers to superseded tasks are
//! harmless: never accepted, never a strike.
//!
//! # Hot and quiet
//!
//! While viewers steer, most of a full render-ahead past a change would be
//! superseded by the next one. So the timeline is *hot* from a push until
//! `hot_quiet` after the last change: the window handed to workers and the
//! window sent to viewers then both end at the earliest frame the next
//! change can land on (`Core::hot_limit`), and a change made while hot
//! supersedes nothing handed out or sent. Steering then costs what
//! playing costs, a few frames a change; only the first change after a
//! quiet spell supersedes a render-ahead. Once quiet, the full lead and
//! viewer lead come back.
//!
//! # A seam, driven by a clock it is given
//!
//! `Core` is the one place the connections, the broadcaster and the
//! referee change the stream through. Around it are two more seams, so a
//! cluster can run one core for many nodes: viewers read the committed
//! stream from a [`Fanout`] (fed by this core's broadcaster, or on another
//! node by batches read from the leader), and a worker connection drives a
//! [`Transport`](crate::conn::transport::Transport) (a local socket, or a
//! [`Pipe`](crate::conn::pipe::Pipe) whose other end is a tunnel to a worker on
//! another node). The core itself reads no
//! clock (as [`Scheduler`], after quinn-proto's sans-IO state machines):
//! every call that may dispatch, expire or advance playback takes `now`,
//! and its callers pass `Instant::now()`. Its behaviour and the invariants
//! above are then unit- and property-tested with a fake clock, without
//! sockets or sleeps (`core/tests.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use donut_shared::PACKED_LEN;
use donut_shared::codec;
use donut_shared::ring::FrameRing;
use donut_shared::scene::{Impulse, Scene};
use donut_shared::wire::{Codec, FRAMES_HEADER_LEN, Frames, Task};
use tokio::sync::{Notify, mpsc};
use tracing::debug;

use crate::metrics::Stats;
use crate::stream::fanout::{Batch, Fanout};
use crate::stream::scheduler::{Claim, Scheduler, SchedulerConfig, SchedulerStats, WorkerId};
use crate::stream::timeline::Timeline;
use crate::stream::timeline::lead::LeadEstimator;
use crate::trust::reputation::AddrKey;

/// What the core tells one worker's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerEvent {
    /// Send this task.
    Task(Task),
    /// A task it held was dropped with no answer (the count is read from
    /// [`Core::worker_misses`] when handled: an answer may come first).
    Missed,
    /// Its address was banned (a quorum settlement found it lying).
    Banned,
    /// This node stopped leading its cluster: the worker must reconnect
    /// (through the load balancer) to be scheduled by the new leader.
    Handover,
}

/// A first quorum vote: one worker's answer to a range, waiting for an
/// answer from another address.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Who answered.
    pub worker: WorkerId,
    /// From where.
    pub addr: AddrKey,
    /// Its task id.
    pub task_id: u32,
    /// First frame.
    pub start: u64,
    /// The scene of `start` its task carried: what the referee renders.
    pub scene: Scene,
    /// The packed frames it returned.
    pub frames: Bytes,
    /// When the vote was cast.
    pub since: Instant,
}

/// What a quorum vote led to (see [`Core::vote`]).
#[derive(Debug)]
pub enum Vote {
    /// The range was already done.
    Done,
    /// The first vote: it waits for another address.
    Pending,
    /// Another answer from the address that already voted: not counted.
    Uncounted,
    /// The same bytes as the first vote, from another address: accepted.
    Agreed {
        /// The first voter's address.
        first: AddrKey,
    },
    /// Different bytes than the first vote: the caller settles it by
    /// re-rendering. The first vote is handed over; the range stays out.
    Disputed(Candidate),
}

/// Static settings of the core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Playback rate; 0 = unpaced.
    pub fps: u16,
    /// Frames rendered ahead of the head.
    pub lead_frames: u64,
    /// Frames sent to viewers ahead of the head.
    pub viewer_lead_frames: u64,
    /// Ring capacity in frames.
    pub ring_frames: usize,
    /// First frame of the stream.
    pub start_frame: u64,
    /// Most frames per broadcast batch.
    pub batch_frames: u32,
    /// How batches are encoded.
    pub codec: Codec,
    /// Scheduler tunables.
    pub scheduler: SchedulerConfig,
    /// A scene change applies at most this many frames past the playback
    /// head: the time workers get to render the changed frames before
    /// playback needs them (see [`crate::stream::timeline`]). The lead used is
    /// measured ([`crate::stream::timeline::lead`]) between this and
    /// `input_lead_min_frames`.
    pub input_lead_frames: u64,
    /// The least input lead in frames (the measured lead's floor).
    pub input_lead_min_frames: u64,
    /// Least time between two scene changes: a throttle with a leading
    /// edge (see [`crate::stream::timeline`]).
    pub input_commit_interval: Duration,
    /// How long the timeline stays *hot* after its last change (see
    /// "Hot and quiet" in the module docs): while hot, workers render and
    /// viewers are sent only up to the earliest frame the next change can
    /// land on. `Duration::ZERO` never runs hot (the whole render-ahead
    /// at every change). Only with pacing.
    pub hot_quiet: Duration,
}

/// Positions of the stream, for telemetry and metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Position {
    /// The playback head.
    pub head: u64,
    /// Every frame below is accepted.
    pub contiguous: u64,
    /// Broadcast has reached here.
    pub cursor: u64,
    /// The lowest frame never handed out to a worker.
    pub frontier: u64,
    /// Ring capacity in frames.
    pub ring_frames: u64,
    /// Bytes the ring allocated.
    pub ring_bytes: u64,
    /// Ranges not yet accepted.
    pub outstanding: u64,
    /// Scheduler counters.
    pub sched: SchedulerStats,
    /// The scene timeline's version.
    pub timeline: u32,
    /// The input lead now, in frames (measured; see
    /// [`crate::stream::timeline::lead`]).
    pub input_lead: u64,
    /// The slowest of the last changes measured, commit → the broadcast of
    /// its first frame (what the lead is made of), if any was measured.
    pub change_to_broadcast: Option<Duration>,
    /// Whether the timeline is hot (viewers are steering): the window
    /// rendered and sent ends at the earliest frame the next change can
    /// land on.
    pub hot: bool,
}

struct Inner {
    sched: Scheduler,
    /// Accepted frames by absolute frame number, allocated once
    /// (`ring_frames × 880` bytes; the Go original allocates a fixed 90 MiB).
    /// Its base is the playback head: it holds only `[head, head + capacity)`,
    /// and a stored frame is never overwritten by another frame number until
    /// the head has passed it.
    ring: FrameRing,
    senders: HashMap<WorkerId, (AddrKey, mpsc::UnboundedSender<WorkerEvent>)>,
    /// First quorum votes by range start.
    votes: HashMap<u64, Candidate>,
    /// The scene of every frame from the head on.
    timeline: Timeline,
    head: u64,
    contiguous: u64,
    cursor: u64,
    /// Fractional frames of playback time not yet applied to the head.
    carry: f64,
    last_tick: Instant,
    /// When the last scene change was committed.
    last_change: Option<Instant>,
    /// The input lead, measured from how fast changes reach viewers.
    lead: LeadEstimator,
    /// The input lead in effect, in frames: the measured one, except that
    /// it falls only while the timeline is quiet (a change made while hot
    /// must not land before the window already sent).
    input_lead: u64,
}

/// See the module docs.
pub struct Core {
    cfg: CoreConfig,
    stats: Arc<Stats>,
    inner: Mutex<Inner>,
    /// Where the batches go; told of the head and of superseded frames.
    fanout: Arc<Fanout>,
    /// Woken when new frames become contiguous, so the broadcaster
    /// publishes at once instead of at its next tick.
    pub frames_ready: Notify,
}

/// What an answer's range is to the core now (see `Core::gate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Rendered for a timeline since changed: dropped.
    Stale,
    /// No longer wanted: its task completed, nothing accepted.
    Done,
    /// Wanted: accept it (or cast it as a vote).
    Wanted,
}

impl Core {
    /// A core with an empty ring starting at `cfg.start_frame`, its
    /// playback clock starting at `now`, whose batches are published on
    /// `fanout` (by the broadcaster) and which keeps `fanout` told of the
    /// head and of superseded frames.
    pub fn new(cfg: CoreConfig, stats: Arc<Stats>, fanout: Arc<Fanout>, now: Instant) -> Self {
        let start = cfg.start_frame;
        fanout.advance(start);
        let inner = Inner {
            sched: Scheduler::new(cfg.scheduler.clone(), start),
            ring: FrameRing::new(cfg.ring_frames, start),
            senders: HashMap::new(),
            votes: HashMap::new(),
            timeline: Timeline::new(start),
            head: start,
            contiguous: start,
            cursor: start,
            carry: 0.0,
            last_tick: now,
            last_change: None,
            lead: LeadEstimator::new(cfg.input_lead_min_frames, cfg.input_lead_frames, cfg.fps),
            input_lead: cfg.input_lead_frames,
        };
        Self {
            cfg,
            stats,
            inner: Mutex::new(inner),
            fanout,
            frames_ready: Notify::new(),
        }
    }

    /// Resumes the stream at frame `at` with the timeline at `version` and
    /// `scene` there, its playback clock restarting at `now`: a cluster
    /// node that becomes leader continues the committed timeline where the
    /// last leader left it. Everything the core held (frames, ranges,
    /// votes, the scene's keyframes) is dropped; workers still registered
    /// are told [`WorkerEvent::Handover`] and forgotten.
    pub fn resume(&self, at: u64, version: u32, scene: Scene, now: Instant) {
        let mut inner = self.lock();
        for (_, tx) in inner.senders.values() {
            let _ = tx.send(WorkerEvent::Handover);
        }
        *inner = Inner {
            sched: Scheduler::new(self.cfg.scheduler.clone(), at),
            ring: FrameRing::new(self.cfg.ring_frames, at),
            senders: HashMap::new(),
            votes: HashMap::new(),
            timeline: Timeline::resume(at, version, scene),
            head: at,
            contiguous: at,
            cursor: at,
            carry: 0.0,
            last_tick: now,
            last_change: None,
            lead: LeadEstimator::new(
                self.cfg.input_lead_min_frames,
                self.cfg.input_lead_frames,
                self.cfg.fps,
            ),
            input_lead: self.cfg.input_lead_frames,
        };
        self.fanout.advance(at);
    }

    /// Tells every registered worker [`WorkerEvent::Handover`]: this node
    /// no longer leads its cluster. Their connections end and leave.
    pub fn hand_over(&self) {
        let inner = self.lock();
        for (_, tx) in inner.senders.values() {
            let _ = tx.send(WorkerEvent::Handover);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves the state consistent before any call
        // that could panic, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn paced(&self) -> bool {
        self.cfg.fps > 0
    }

    /// Tells the connections of the workers that missed, then sends every
    /// task the scheduler hands out now.
    fn dispatch(&self, inner: &mut Inner, now: Instant) {
        for (id, _) in inner.sched.take_misses() {
            send(inner, id, WorkerEvent::Missed);
        }
        let mut limit = inner
            .head
            .saturating_add(self.cfg.lead_frames)
            .min(inner.ring.limit());
        let hot = self.hot_limit(inner, now);
        if let Some(hot) = hot {
            limit = limit.min(hot);
        }
        let Inner {
            sched, timeline, ..
        } = &mut *inner;
        // While hot the window opens a frame at a time: any task size will do.
        let min_new = hot.map(|_| 1);
        for (id, task) in sched.dispatch_window(now, (limit, min_new), timeline) {
            send(inner, id, WorkerEvent::Task(task));
        }
    }

    /// While the timeline is hot at `now` (a change within
    /// `hot_quiet`, or pushes queued for the next one): the earliest frame
    /// the next change can land on, where the window rendered and sent
    /// ends. `None` when quiet (the full render-ahead), unpaced, or hot
    /// mode is off.
    ///
    /// The next change commits at a tick no sooner than the commit
    /// interval after the last one, at the head of that tick (moved
    /// first) plus the input lead. The head moves only at ticks, by
    /// `floor(carry + elapsed × fps)` since the last tick (`carry`: the
    /// fraction of a frame its clock held then) unless playback stalls (a
    /// stalled head lets a change land earlier: what was rendered past it
    /// is superseded as ever, waste, not a wrong frame). So no change can
    /// land before `head + lead + floor(carry + wait × fps)`, `wait` being
    /// the time from the last tick to the throttle opening, nor before the
    /// last keyframe. With the carry the end stays put between ticks (it
    /// used to creep a frame at a time as the head's and the wait's
    /// roundings took turns, each creep a one-frame batch).
    fn hot_limit(&self, inner: &Inner, now: Instant) -> Option<u64> {
        if self.cfg.hot_quiet.is_zero() || !self.paced() {
            return None;
        }
        let recent = inner
            .last_change
            .is_some_and(|t| now.saturating_duration_since(t) < self.cfg.hot_quiet);
        if !recent && !inner.timeline.has_pending() {
            return None;
        }
        // The head moves only at ticks, by the whole frames of its clock
        // (`carry` plus the time since the last tick): count from the
        // last tick with the carry, so the window's end stays put between
        // ticks instead of creeping a frame at a time (each creep a
        // one-frame task and a one-frame batch to every watcher). A hair
        // under, so rounding never puts it past where the head will be.
        let wait = inner.last_change.map_or(Duration::ZERO, |t| {
            (t + self.cfg.input_commit_interval).saturating_duration_since(inner.last_tick)
        });
        let wait_frames = if wait.is_zero() {
            0
        } else {
            (inner.carry + wait.as_secs_f64() * f64::from(self.cfg.fps) - 1e-6)
                .floor()
                .max(0.0) as u64
        };
        Some(
            inner
                .head
                .saturating_add(inner.input_lead)
                .saturating_add(wait_frames)
                .max(inner.timeline.last_keyframe()),
        )
    }

    /// Registers a worker connection from `addr`, whose address has missed
    /// `misses` tasks in a row, at `now`; its events arrive on `tx`.
    pub fn add_worker(
        &self,
        id: WorkerId,
        addr: AddrKey,
        misses: u32,
        tx: mpsc::UnboundedSender<WorkerEvent>,
        now: Instant,
    ) {
        let mut inner = self.lock();
        inner.sched.add_worker(id, addr, misses);
        inner.senders.insert(id, (addr, tx));
        self.dispatch(&mut inner, now);
    }

    /// A worker's misses in a row now (0 once it delivers), if connected.
    pub fn worker_misses(&self, id: WorkerId) -> Option<u32> {
        self.lock().sched.misses(id)
    }

    /// Tells every worker connection from `addr` that it is banned.
    pub fn evict(&self, addr: AddrKey) {
        let inner = self.lock();
        for (a, tx) in inner.senders.values() {
            if *a == addr {
                let _ = tx.send(WorkerEvent::Banned);
            }
        }
    }

    /// Records a worker's `Hello`, received at `now`.
    pub fn hello(&self, id: WorkerId, slots: u16, now: Instant) {
        let mut inner = self.lock();
        inner.sched.set_slots(id, slots);
        self.dispatch(&mut inner, now);
    }

    /// Forgets a worker (gone at `now`); its ranges go to others.
    pub fn remove_worker(&self, id: WorkerId, now: Instant) {
        let mut inner = self.lock();
        inner.sched.remove_worker(id);
        inner.senders.remove(&id);
        self.dispatch(&mut inner, now);
    }

    /// A worker's measured pace in frames per second.
    pub fn worker_fps(&self, id: WorkerId) -> Option<f64> {
        self.lock().sched.worker_fps(id)
    }

    /// Classifies a result header received at `now` (see [`Claim`]).
    pub fn claim(&self, id: WorkerId, task_id: u32, start: u64, count: u32, now: Instant) -> Claim {
        let mut inner = self.lock();
        let claim = inner.sched.claim(id, task_id, start, count, now);
        if matches!(claim, Claim::Done) {
            // A slot was freed.
            self.dispatch(&mut inner, now);
        }
        claim
    }

    /// Stores a verified result (packed `frames` from `start`, worker `id`'s
    /// answer to `task_id`) at `now`. Returns whether it was the first
    /// answer (false: someone else's copy won, nothing changed).
    pub fn accept(
        &self,
        id: WorkerId,
        (task_id, scene): (u32, Scene),
        start: u64,
        frames: &[u8],
        now: Instant,
    ) -> bool {
        let inner = self.lock();
        self.accept_locked(inner, (id, task_id, scene), start, frames, now)
    }

    /// Whether an answer of `id` to `task_id` (`count` frames from
    /// `start`, rendered at `scene`) is still wanted. [`Gate::Stale`]: it
    /// was rendered for a timeline since changed (perhaps by a worker gone
    /// since, judged by the referee), and its range, if wanted again, waits
    /// for a task of the current one. [`Gate::Done`]: the range is no
    /// longer wanted (another answer filled it); the task is completed and
    /// the worker given more.
    fn gate(
        &self,
        inner: &mut Inner,
        (id, task_id, scene): (WorkerId, u32, Scene),
        (start, count): (u64, u32),
        now: Instant,
    ) -> Gate {
        let replanned =
            inner.sched.is_wanted(start, count) && !inner.sched.wants(start, count, scene);
        if replanned || inner.sched.is_superseded(id, task_id) {
            return Gate::Stale;
        }
        if !inner.sched.is_wanted(start, count) {
            inner.sched.complete(id, task_id, start, count, now);
            self.dispatch(inner, now);
            return Gate::Done;
        }
        Gate::Wanted
    }

    /// [`Core::accept`] under the lock, which it releases.
    fn accept_locked(
        &self,
        mut inner: MutexGuard<'_, Inner>,
        (id, task_id, scene): (WorkerId, u32, Scene),
        start: u64,
        frames: &[u8],
        now: Instant,
    ) -> bool {
        let count = (frames.len() / PACKED_LEN) as u32;
        if self.gate(&mut inner, (id, task_id, scene), (start, count), now) != Gate::Wanted {
            return false;
        }
        inner.votes.remove(&start);
        for (k, packed) in frames.as_chunks::<PACKED_LEN>().0.iter().enumerate() {
            // Wanted ranges lie within [head, head + capacity) by
            // construction, so this cannot fail; if it did, the frame would
            // simply stay missing and the range be re-rendered.
            let _ = inner.ring.insert(start + k as u64, packed);
        }
        inner.sched.complete(id, task_id, start, count, now);
        let before = inner.contiguous;
        while inner.ring.contains(inner.contiguous) {
            inner.contiguous += 1;
        }
        let advanced = inner.contiguous > before;
        self.dispatch(&mut inner, now);
        drop(inner);
        self.stats.results_accepted.inc();
        self.stats.frames_accepted.add(u64::from(count));
        if advanced {
            self.frames_ready.notify_one();
        }
        true
    }

    /// Casts `id`'s answer (from `addr`, to `task_id`, packed `frames`
    /// from `start`) as a quorum vote cast at `now`: see [`Vote`]. Under
    /// `quorum` a range is accepted only when two addresses return the same
    /// bytes.
    pub fn vote(
        &self,
        (id, addr): (WorkerId, AddrKey),
        (task_id, scene): (u32, Scene),
        start: u64,
        frames: &Bytes,
        now: Instant,
    ) -> Vote {
        let count = (frames.len() / PACKED_LEN) as u32;
        let mut inner = self.lock();
        if self.gate(&mut inner, (id, task_id, scene), (start, count), now) != Gate::Wanted {
            return Vote::Done;
        }
        let first = inner
            .votes
            .get(&start)
            .map(|c| (c.addr, c.frames == *frames));
        match first {
            None => {
                let vote = Candidate {
                    worker: id,
                    addr,
                    task_id,
                    start,
                    scene,
                    frames: frames.clone(),
                    since: now,
                };
                inner.votes.insert(start, vote);
                inner.sched.vote(id, task_id, start, now, true);
                self.dispatch(&mut inner, now);
                Vote::Pending
            }
            Some((first, _)) if first == addr => {
                inner.sched.vote(id, task_id, start, now, false);
                self.dispatch(&mut inner, now);
                Vote::Uncounted
            }
            Some((first, true)) => {
                self.accept_locked(inner, (id, task_id, scene), start, frames, now);
                Vote::Agreed { first }
            }
            Some((_, false)) => match inner.votes.remove(&start) {
                Some(c) => Vote::Disputed(c),
                None => Vote::Done,
            },
        }
    }

    /// Takes the first votes that have waited at least `wait` by `now` for
    /// a second address, to be settled by a native re-render.
    pub fn take_stale_votes(&self, wait: std::time::Duration, now: Instant) -> Vec<Candidate> {
        let mut inner = self.lock();
        let stale: Vec<u64> = inner
            .votes
            .values()
            .filter(|c| now.saturating_duration_since(c.since) >= wait)
            .map(|c| c.start)
            .collect();
        stale
            .into_iter()
            .filter_map(|start| inner.votes.remove(&start))
            .collect()
    }

    /// `addr`'s vote on the range at `start` (taken off the core, by
    /// [`Core::vote`] or [`Core::take_stale_votes`]) was found wrong: any
    /// address may answer it again (from `now`). Unless a newer vote on it
    /// came in while the referee judged: the range's mark is then that
    /// vote's (perhaps of the same address), and stays, or the range would
    /// be split while the core holds a vote for it whole.
    pub fn clear_vote(&self, start: u64, addr: AddrKey, now: Instant) {
        let mut inner = self.lock();
        if !inner.votes.contains_key(&start) {
            inner.sched.clear_vote(start, addr);
        }
        self.dispatch(&mut inner, now);
    }

    /// Drops a worker's hold on a task after a failed check or bad header
    /// (found at `now`).
    pub fn reject(&self, id: WorkerId, task_id: u32, now: Instant) {
        let mut inner = self.lock();
        inner.sched.reject(id, task_id);
        self.dispatch(&mut inner, now);
    }

    /// Advances playback, expires overdue holders, dispatches, and takes the
    /// frames due for broadcast (copied out of the ring, so the cursor and
    /// the ring's base may move on). The caller encodes them outside the
    /// lock and hands each to [`Fanout::publish`], in order, before the
    /// next tick.
    /// Called by the broadcaster on every tick and whenever frames are
    /// ready, with the time `now` (never earlier than the last tick's: an
    /// earlier one counts as no time passing).
    pub fn tick(&self, now: Instant) -> Vec<Due> {
        let mut inner = self.lock();
        if self.paced() {
            let dt = now.saturating_duration_since(inner.last_tick).as_secs_f64();
            inner.carry += dt * f64::from(self.cfg.fps);
            let step = inner.carry.floor();
            inner.carry -= step;
            let target = inner.head.saturating_add(step as u64);
            if target > inner.contiguous {
                // Stalled on a missing frame: the clock waits, nothing is skipped.
                if inner.head > self.cfg.start_frame {
                    let lost = target - inner.contiguous;
                    self.stats.playback_stall_frames.add(lost);
                    // What was missing, for diagnosing stalls (issue 25):
                    // a change's first frame or not, handed out or not,
                    // and how late this tick came.
                    debug!(
                        lost,
                        missing = inner.contiguous,
                        head = inner.head,
                        frontier = inner.sched.frontier(),
                        keyframe = inner.timeline.last_keyframe(),
                        lead = inner.input_lead,
                        tick_gap_ms = dt * 1000.0,
                        since_change_ms = inner
                            .last_change
                            .map(|t| now.saturating_duration_since(t).as_secs_f64() * 1000.0),
                        "playback stalled"
                    );
                }
                inner.head = inner.contiguous;
                inner.carry = 0.0;
            } else {
                inner.head = target;
            }
        }
        inner.last_tick = inner.last_tick.max(now);
        // A change whose first frames playback reached unsent was too
        // slow for the lead.
        let head = inner.head;
        inner.lead.played(head, now);
        let measured = inner.lead.lead();
        if measured > inner.input_lead || self.hot_limit(&inner, now).is_none() {
            inner.input_lead = measured;
        }
        // After the head moved: the change lands `input_lead` frames past
        // where playback is now (see `hot_limit` for why it matters).
        self.commit_inputs(&mut inner, now);
        let mut due = self.take_due(&mut inner, now);
        if !self.paced() {
            inner.head = inner.cursor;
        }
        let head = inner.head;
        inner.ring.advance_base(head);
        inner.timeline.prune(head);
        self.fanout.advance(head);
        inner.sched.expire(now);
        self.dispatch(&mut inner, now);
        for d in &mut due {
            d.head = head;
        }
        due
    }

    /// Queues viewer `viewer`'s push for the next tick (see
    /// [`crate::stream::timeline`]); returns the timeline's version now, so the push
    /// is folded into the next version or lost in a change that cancels out.
    pub fn input(&self, viewer: u64, push: Impulse) -> u32 {
        let mut inner = self.lock();
        inner.timeline.input(viewer, push);
        inner.timeline.version()
    }

    /// Queues a group of pushes (`(viewer, push)`, in order) under one lock,
    /// so no commit can fold part of the group (a cluster leader notes the
    /// whole group's input-log position on the next version, in the
    /// cluster's input log). Returns the timeline's version before
    /// the group.
    pub fn input_many(&self, pushes: impl IntoIterator<Item = (u64, Impulse)>) -> u32 {
        let mut inner = self.lock();
        let before = inner.timeline.version();
        for (viewer, push) in pushes {
            inner.timeline.input(viewer, push);
        }
        before
    }

    /// The current version's change: (change frame, version, scene at the
    /// change frame), what a steering page predicts from (issue 25).
    pub fn keyframe(&self) -> (u64, u32, Scene) {
        let inner = self.lock();
        let (frame, scene) = inner.timeline.last_change();
        (frame, inner.timeline.version(), scene)
    }

    /// Folds the pushes queued since the last change into one scene change
    /// `input_lead` frames past the head, and supersedes what it replaces;
    /// unless the last change was less than the commit interval before
    /// `now` (the pushes then wait for a later tick).
    fn commit_inputs(&self, inner: &mut Inner, now: Instant) {
        if !inner.timeline.has_pending() {
            return;
        }
        let interval = self.cfg.input_commit_interval;
        if inner
            .last_change
            .is_some_and(|t| now.saturating_duration_since(t) < interval)
        {
            return;
        }
        let at = inner.head.saturating_add(inner.input_lead);
        if let Some(change) = inner.timeline.commit(at) {
            inner.last_change = Some(now);
            inner.lead.committed(change.frame, change.version, now);
            self.supersede(inner, change.frame);
        }
    }

    /// Drops everything at or after frame `n` that a scene change replaced
    /// (see the module docs). `n` is never below the head.
    fn supersede(&self, inner: &mut Inner, n: u64) {
        let n = n.max(inner.head);
        let head = inner.head;
        // A published batch straddling `n` cannot be cut (it is encoded):
        // broadcast resumes from its start instead (at the head at the
        // earliest), so a joiner's catch-up never overlaps the new batches.
        // Its frames before `n` are re-sent unchanged, under the new version.
        let rewind = self.fanout.forget_from(n).max(head);
        inner.ring.forget_from(n);
        inner.contiguous = inner.contiguous.min(n);
        inner.cursor = inner.cursor.min(rewind);
        let handed = inner.sched.supersede(n);
        inner
            .votes
            .retain(|&start, c| start.saturating_add((c.frames.len() / PACKED_LEN) as u64) <= n);
        self.stats.scene_changes.inc();
        self.stats.frames_superseded.add(handed);
    }

    /// Copies out every batch due now and moves the cursor past it.
    fn take_due(&self, inner: &mut Inner, now: Instant) -> Vec<Due> {
        let due = self.take_batches(inner, now);
        for d in &due {
            inner.lead.broadcast(d.start, d.count, d.timeline, now);
        }
        due
    }

    /// [`Core::take_due`]'s batches.
    fn take_batches(&self, inner: &mut Inner, now: Instant) -> Vec<Due> {
        let (end, min_batch) = if self.paced() {
            let end = inner
                .contiguous
                .min(inner.head.saturating_add(self.cfg.viewer_lead_frames));
            match self.hot_limit(inner, now) {
                // Hot: nothing past the earliest next change frame, so no
                // batch is ever superseded; batches of half the input lead
                // (a batch's first frame costs about twice the others).
                Some(hot) => (end.min(hot), (inner.input_lead / 2).max(1)),
                // Batch about a quarter second, unless viewers are running low.
                None => (end, u64::from(self.cfg.fps / 4).max(1)),
            }
        } else {
            (inner.contiguous, 1)
        };
        let mut due = Vec::new();
        while inner.cursor < end {
            let pending = end - inner.cursor;
            let urgent = inner.cursor < inner.head.saturating_add(min_batch);
            if pending < min_batch && !urgent {
                break;
            }
            let count = pending.min(u64::from(self.cfg.batch_frames)) as u32;
            // Room for the header first: a nibble batch is then encoded in
            // place, with this one copy out of the ring and no other.
            let mut buf = Vec::with_capacity(FRAMES_HEADER_LEN + count as usize * PACKED_LEN);
            buf.resize(FRAMES_HEADER_LEN, 0);
            if !inner
                .ring
                .copy_range(inner.cursor, u64::from(count), &mut buf)
            {
                break;
            }
            due.push(Due {
                start: inner.cursor,
                count,
                scene: inner.timeline.scene_at(inner.cursor),
                timeline: inner.timeline.version(),
                head: inner.head,
                codec: self.cfg.codec,
                buf,
            });
            inner.cursor += u64::from(count);
        }
        due
    }

    /// The fan-out this core's batches are published on.
    pub fn fanout(&self) -> &Arc<Fanout> {
        &self.fanout
    }

    /// A copy of the scene timeline now (its keyframes from the one at the
    /// head on), for observers such as tests and tools.
    pub fn timeline(&self) -> Timeline {
        self.lock().timeline.clone()
    }

    /// The stream's positions now.
    pub fn position(&self) -> Position {
        let inner = self.lock();
        Position {
            head: inner.head,
            contiguous: inner.contiguous,
            cursor: inner.cursor,
            frontier: inner.sched.frontier(),
            ring_frames: inner.ring.capacity() as u64,
            ring_bytes: inner.ring.allocated_bytes() as u64,
            outstanding: inner.sched.outstanding_ranges() as u64,
            sched: inner.sched.stats(),
            timeline: inner.timeline.version(),
            input_lead: inner.input_lead,
            change_to_broadcast: inner.lead.slowest(),
            hot: self.hot_limit(&inner, inner.last_tick).is_some(),
        }
    }
}

/// Frames taken from the ring for broadcast, not yet encoded.
#[derive(Debug)]
pub struct Due {
    /// First frame.
    pub start: u64,
    /// Number of frames.
    pub count: u32,
    /// The timeline version they were rendered under.
    pub timeline: u32,
    /// The scene at `start`.
    pub scene: Scene,
    /// The playback head once the tick that took them was done.
    pub head: u64,
    /// How to encode them.
    pub codec: Codec,
    /// `FRAMES_HEADER_LEN` bytes of room for the header, then the frames'
    /// packed bytes.
    buf: Vec<u8>,
}

impl Due {
    /// The frames' packed bytes.
    pub fn packed(&self) -> &[u8] {
        &self.buf[FRAMES_HEADER_LEN..]
    }

    /// Encodes the batch as one `Frames` message: with the context coder
    /// (about 90 bytes a frame instead of 880; see `donut_shared::codec`)
    /// or as plain nibble-packed frames (written in place, no copy).
    /// CPU work: callers run it off the lock and off the async executor.
    pub fn encode(self) -> Option<Batch> {
        let header = Frames::header(self.start, self.count, self.timeline, self.codec);
        let msg = match self.codec {
            Codec::Context | Codec::Primed => {
                let packed = self.packed();
                let mut msg = Vec::with_capacity(FRAMES_HEADER_LEN + packed.len() / 8);
                msg.extend_from_slice(&header);
                // Ring frames were validated on the way in, so this cannot fail.
                match self.codec {
                    Codec::Primed => codec::encode_primed(packed, &mut msg).ok()?,
                    _ => codec::encode(packed, &mut msg).ok()?,
                }
                msg
            }
            Codec::Nibble => {
                let mut msg = self.buf;
                msg[..FRAMES_HEADER_LEN].copy_from_slice(&header);
                msg
            }
        };
        Some(Batch {
            start: self.start,
            count: self.count,
            timeline: self.timeline,
            head: self.head,
            scene: self.scene,
            msg: Bytes::from(msg),
            digest: Default::default(),
        })
    }
}

/// Sends `event` to worker `id`'s connection. A closed channel means the
/// worker is leaving; its removal hands its ranges to someone else.
fn send(inner: &Inner, id: WorkerId, event: WorkerEvent) {
    if let Some((_, tx)) = inner.senders.get(&id) {
        let _ = tx.send(event);
    }
}

#[cfg(test)]
pub(crate) mod tests;
