//! Unit and property tests of the [`Scheduler`]: a base `Instant` plus
//! durations stands for the clock, so nothing sleeps.

use std::net::IpAddr;

use donut_shared::wire::MAX_TASK_FRAMES;

use super::*;
use crate::trust::reputation::BanScope;

fn sched() -> Scheduler {
    Scheduler::new(SchedulerConfig::default(), 0)
}

/// The timeline nobody steers: every task idle.
fn idle() -> Timeline {
    Timeline::new(0)
}

/// A timeline with one push committed at frame `n`.
fn steered_at(n: u64) -> Timeline {
    let mut t = idle();
    t.input(1, donut_shared::scene::Impulse { a: 300, b: -100 });
    t.commit(n);
    t
}

#[test]
fn a_change_cuts_ranges_and_supersedes_their_tasks_without_misses() {
    let mut s = sched();
    let t0 = Instant::now();
    add(&mut s, 1);
    s.set_slots(1, 4);
    let tasks = s.dispatch(t0, 1_000, &idle());
    let ranges: Vec<(u64, u32)> = tasks.iter().map(|(_, t)| (t.start, t.count)).collect();
    assert_eq!(ranges, vec![(0, 30), (30, 30), (60, 30), (90, 30)]);
    let timeline = steered_at(45);
    assert_eq!(s.supersede(45), 120 - 45);
    assert_eq!(s.frontier(), 45);
    // [0, 30) is untouched; [30, 60) is cut to [30, 45) and orphaned.
    assert!(s.is_wanted(0, 30));
    assert!(s.is_wanted(30, 15));
    assert!(!s.is_wanted(30, 30) && !s.is_wanted(60, 30));
    // Superseded answers are stale (harmless), never fresh or violations.
    for (_, t) in &tasks[1..] {
        assert!(s.is_superseded(1, t.task_id));
        assert_eq!(s.claim(1, t.task_id, t.start, t.count, t0), Claim::Stale);
    }
    let (_, first) = tasks[0];
    assert_eq!(
        s.claim(1, first.task_id, first.start, first.count, t0),
        Claim::Fresh(first.scene)
    );
    assert!(s.take_misses().is_empty());
    // The freed slots re-plan from the cut: the orphan up to the change
    // (its idle scene), then new frames from the change frame on, with
    // the changed scene and the new version, none straddling 45.
    let again = s.dispatch(t0, 1_000, &timeline);
    assert_eq!((again[0].1.start, again[0].1.count), (30, 15));
    assert_eq!(again[0].1.scene, donut_shared::scene::Scene::idle(30));
    let (_, at) = again[1];
    assert_eq!(at.start, 45);
    assert_eq!(at.scene, timeline.scene_at(45));
    assert_eq!(at.timeline, 1);
    assert_ne!(at.scene, donut_shared::scene::Scene::idle(45));
}

#[test]
fn new_ranges_stop_at_a_keyframe_ahead_of_the_frontier() {
    let mut s = sched();
    let t0 = Instant::now();
    add(&mut s, 1);
    s.set_slots(1, 3);
    let timeline = steered_at(20);
    let ranges: Vec<(u64, u32)> = s
        .dispatch(t0, 1_000, &timeline)
        .iter()
        .map(|(_, t)| (t.start, t.count))
        .collect();
    assert_eq!(ranges, vec![(0, 20), (20, 30), (50, 30)]);
}

/// Worker `id` connects from its own address, 10.0.0.`id`.
fn addr(id: WorkerId) -> AddrKey {
    AddrKey::new(IpAddr::from([10, 0, 0, id as u8]), BanScope::Address)
}

fn add(s: &mut Scheduler, id: WorkerId) {
    s.add_worker(id, addr(id), 0);
}

#[test]
fn hands_out_contiguous_ranges_within_limit() {
    let mut s = sched();
    let now = Instant::now();
    add(&mut s, 1);
    s.set_slots(1, 3);
    let tasks = s.dispatch(now, 70, &idle());
    let ranges: Vec<(u64, u32)> = tasks.iter().map(|(_, t)| (t.start, t.count)).collect();
    assert_eq!(ranges, vec![(0, 30), (30, 30), (60, 10)]);
    assert!(s.dispatch(now, 70, &idle()).is_empty());
}

#[test]
fn pace_sets_range_size() {
    let mut s = sched();
    let t0 = Instant::now();
    add(&mut s, 1);
    let (_, t) = s.dispatch(t0, 10_000, &idle())[0];
    // 30 frames in 30 ms: 1 ms a frame, so a 100 ms task is 100 frames.
    let t1 = t0 + Duration::from_millis(30);
    assert_eq!(
        s.claim(1, t.task_id, t.start, t.count, t1),
        Claim::Fresh(t.scene)
    );
    assert!(s.complete(1, t.task_id, t.start, t.count, t1));
    let (_, t) = s.dispatch(t1, 10_000, &idle())[0];
    assert_eq!(t.count, 100);
}

#[test]
fn overdue_range_is_hedged_and_first_answer_wins() {
    let mut s = sched();
    let t0 = Instant::now();
    add(&mut s, 1);
    let (_, a) = s.dispatch(t0, 30, &idle())[0];
    add(&mut s, 2);
    // Not overdue yet: worker 2 gets nothing (window is full).
    assert!(s.dispatch(t0, 30, &idle()).is_empty());
    let late = t0 + Duration::from_secs(3);
    let (w, b) = s.dispatch(late, 30, &idle())[0];
    assert_eq!((w, b.start, b.count), (2, a.start, a.count));
    assert_eq!(s.stats().hedged, 1);
    assert_eq!(
        s.claim(2, b.task_id, b.start, b.count, late),
        Claim::Fresh(b.scene)
    );
    assert!(s.complete(2, b.task_id, b.start, b.count, late));
    // The original holder's slot was freed; its answer arrives late: harmless.
    assert_eq!(s.workers[&1].live.len(), 0);
    assert_eq!(s.claim(1, a.task_id, a.start, a.count, late), Claim::Done);
    assert_eq!(s.claim(1, a.task_id, a.start, a.count, late), Claim::Done);
}

#[test]
fn a_window_opening_a_little_at_a_time_is_shared_not_given_to_the_fastest() {
    let mut s = sched();
    let mut now = Instant::now();
    add(&mut s, 1);
    add(&mut s, 2);
    let mut limit = 60;
    let mut given = HashMap::<WorkerId, u32>::new();
    for _ in 0..20 {
        for (w, t) in s.dispatch(now, limit, &idle()) {
            *given.entry(w).or_default() += 1;
            // Worker 1 answers at once, worker 2 ten times slower.
            let took = Duration::from_millis(if w == 1 { 1 } else { 10 });
            assert!(s.complete(w, t.task_id, t.start, t.count, now + took));
        }
        now += Duration::from_millis(20);
        limit += 30;
    }
    assert!(given[&1] >= 5 && given[&2] >= 5, "{given:?}");
}

#[test]
fn disconnect_orphans_ranges_which_are_split_to_fit() {
    let mut s = sched();
    let t0 = Instant::now();
    add(&mut s, 1);
    let (_, a) = s.dispatch(t0, 30, &idle())[0];
    s.remove_worker(1);
    add(&mut s, 2);
    s.set_slots(2, 2);
    let tasks = s.dispatch(t0, 30, &idle());
    assert_eq!(tasks.len(), 1);
    assert_eq!((tasks[0].1.start, tasks[0].1.count), (a.start, a.count));
    assert_eq!(s.stats().reassigned, 1);
}

#[test]
fn classifies_bad_headers() {
    let mut s = sched();
    let t0 = Instant::now();
    add(&mut s, 1);
    let (_, a) = s.dispatch(t0, 100, &idle())[0];
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
    let again = s.dispatch(t0, 100, &idle());
    assert_eq!(again[0].1.start, a.start);
}

#[test]
fn expiry_frees_the_slot_and_reassigns() {
    let mut s = sched();
    let t0 = Instant::now();
    add(&mut s, 1);
    let (_, a) = s.dispatch(t0, 30, &idle())[0];
    s.expire(t0 + Duration::from_secs(5));
    assert_eq!(s.stats().expired, 1);
    let (_, b) = s.dispatch(t0 + Duration::from_secs(5), 30, &idle())[0];
    assert_eq!(b.start, a.start);
    assert_ne!(b.task_id, a.task_id);
    // The expired answer is still usable if it arrives first.
    assert_eq!(
        s.claim(1, b.task_id, b.start, b.count, t0),
        Claim::Fresh(b.scene)
    );
}

#[test]
fn an_idle_taker_gets_less_and_less_until_it_answers() {
    let mut s = sched();
    let t0 = Instant::now();
    add(&mut s, 1);
    s.set_slots(1, 2);
    let first = s.dispatch(t0, 1000, &idle());
    assert_eq!(first.len(), 2);
    let t1 = t0 + Duration::from_secs(5);
    s.expire(t1);
    // Both tasks expired in one silence: one miss.
    assert_eq!(s.take_misses(), vec![(1, 1)]);
    let probation = s.dispatch(t1, 1000, &idle());
    assert_eq!(probation.len(), 1, "one task at a time on probation");
    assert_eq!(probation[0].1.count, 30 / 4, "a quarter per miss");
    let t2 = t1 + Duration::from_secs(5);
    s.expire(t2);
    assert_eq!(s.take_misses(), vec![(1, 2)]);
    let smaller = s.dispatch(t2, 1000, &idle());
    assert_eq!(smaller[0].1.count, 1);
    // A late answer (unverified) does not end probation...
    let (_, old) = first[0];
    assert_eq!(
        s.claim(1, old.task_id, old.start, old.count, t2),
        Claim::Done
    );
    assert_eq!(s.misses(1), Some(2));
    // ...a verified one does, and both slots open again.
    let t = smaller[0].1;
    assert_eq!(
        s.claim(1, t.task_id, t.start, t.count, t2),
        Claim::Fresh(t.scene)
    );
    s.complete(1, t.task_id, t.start, t.count, t2);
    assert_eq!(s.misses(1), Some(0));
    let back = s.dispatch(t2, 1000, &idle());
    assert_eq!(back.len(), 2, "{back:?}");
    // The lowest orphan (frames 1..7, left by the splits) goes whole.
    assert_eq!((back[0].1.start, back[0].1.count), (1, 6));
}

#[test]
fn a_proven_worker_losing_hedge_races_in_a_short_pause_is_no_zombie() {
    let (mut s, t0) = paced_worker();
    add(&mut s, 2);
    let first = s.dispatch(t0, 10_000, &idle());
    // Worker 2 proves itself; worker 1 (two 100-frame tasks, overdue
    // after 200 ms) pauses.
    let t1 = t0 + Duration::from_millis(10);
    for &(id, t) in first.iter().filter(|(id, _)| *id == 2) {
        s.claim(id, t.task_id, t.start, t.count, t1);
        s.complete(id, t.task_id, t.start, t.count, t1);
    }
    // 300 ms in, worker 2 takes and wins copies of worker 1's tasks.
    let t2 = t0 + Duration::from_millis(300);
    let mut won = 0;
    for (id, t) in s.dispatch(t2, 10_000, &idle()) {
        if id == 2 && s.claim(id, t.task_id, t.start, t.count, t2) == Claim::Fresh(t.scene) {
            s.complete(id, t.task_id, t.start, t.count, t2);
            won += 1;
        }
    }
    assert!(won >= 1, "worker 2 hedged worker 1's overdue tasks");
    assert!(
        s.take_misses().iter().all(|&(id, _)| id != 1),
        "a 300 ms pause is not a miss"
    );
    assert_eq!(s.misses(1), Some(0));
}

#[test]
fn a_proven_worker_gets_a_task_though_a_zombie_on_its_address_holds_the_share() {
    let mut s = Scheduler::new(
        SchedulerConfig {
            addr_cap_frames: 60,
            ..SchedulerConfig::default()
        },
        0,
    );
    let t0 = Instant::now();
    add(&mut s, 1);
    let (_, t) = s.dispatch(t0, 10_000, &idle())[0];
    s.claim(1, t.task_id, t.start, t.count, t0);
    s.complete(1, t.task_id, t.start, t.count, t0);
    // Worker 1 is proven and idle; a zombie on its address takes the
    // whole share before it asks again.
    s.add_worker(9, addr(1), 0);
    s.set_slots(9, 4);
    s.set_slots(1, 0);
    let t1 = t0 + Duration::from_millis(10);
    let tasks = s.dispatch(t1, 10_000, &idle());
    assert!(tasks.iter().any(|&(id, _)| id == 1), "{tasks:?}");
}

#[test]
fn an_overdue_copy_handed_on_is_a_miss_and_a_fresh_one_is_not() {
    let mut s = sched();
    let t0 = Instant::now();
    add(&mut s, 1);
    add(&mut s, 2);
    let (zombie, z) = s.dispatch(t0, 30, &idle())[0];
    let other = 3 - zombie;
    // Overdue (first tasks are hedged after 2 s): the other one gets a copy.
    let t1 = t0 + Duration::from_millis(2100);
    let (_, copy) = s.dispatch(t1, 30, &idle())[0];
    assert_eq!(copy.start, z.start);
    s.claim(other, copy.task_id, copy.start, copy.count, t1);
    s.complete(other, copy.task_id, copy.start, copy.count, t1);
    assert_eq!(s.take_misses(), vec![(zombie, 1)]);
}

#[test]
fn one_address_holds_at_most_its_share_of_the_frames_in_flight() {
    let mut s = Scheduler::new(
        SchedulerConfig {
            addr_cap_frames: 40,
            ..SchedulerConfig::default()
        },
        0,
    );
    let t0 = Instant::now();
    let shared = addr(9);
    for id in 1..=4 {
        s.add_worker(id, shared, 0);
    }
    add(&mut s, 5);
    let tasks = s.dispatch(t0, 10_000, &idle());
    let of_shared: u32 = tasks
        .iter()
        .filter(|(id, _)| *id != 5)
        .map(|(_, t)| t.count)
        .sum();
    assert_eq!(of_shared, 40, "{tasks:?}");
    assert!(
        tasks.iter().any(|&(id, t)| id == 5 && t.count == 30),
        "{tasks:?}"
    );
}

#[test]
fn a_voted_range_goes_whole_to_another_address_only() {
    let mut s = sched();
    let t0 = Instant::now();
    add(&mut s, 1);
    let (_, t) = s.dispatch(t0, 30, &idle())[0];
    s.claim(1, t.task_id, t.start, t.count, t0);
    s.vote(1, t.task_id, t.start, t0, true);
    assert!(
        s.is_wanted(t.start, t.count),
        "a vote does not complete the range"
    );
    assert!(
        s.dispatch(t0, 30, &idle()).is_empty(),
        "not back to the voter's address"
    );
    // Another worker of the same address: still not.
    s.add_worker(3, addr(1), 0);
    assert!(s.dispatch(t0, 30, &idle()).is_empty());
    // A proven worker of another address: the whole range, unsplit,
    // even though its pace asks for smaller tasks.
    add(&mut s, 2);
    let (_, own) = s.dispatch(t0, 60, &idle())[0];
    let t1 = t0 + Duration::from_millis(300);
    s.claim(2, own.task_id, own.start, own.count, t1);
    s.complete(2, own.task_id, own.start, own.count, t1);
    let (id, again) = s.dispatch(t1, 60, &idle())[0];
    assert_eq!((id, again.start, again.count), (2, t.start, t.count));
    // A vote cleared (it was wrong): anyone may take it again.
    s.reject(2, again.task_id);
    s.clear_vote(t.start, addr(1));
    let redo = s.dispatch(t1, 60, &idle());
    assert_eq!(redo.len(), 1);
    assert_eq!(
        (redo[0].0, redo[0].1.start),
        (1, t.start),
        "the voter's address may"
    );
}

/// A scheduler that expires no task sooner than 2 s, and a worker with
/// two slots and a known pace of 1 ms a frame (so 100-frame tasks,
/// overdue after 200 ms), just after its first answer.
fn paced_worker() -> (Scheduler, Instant) {
    let cfg = SchedulerConfig {
        min_expire: Duration::from_secs(2),
        ..SchedulerConfig::default()
    };
    let mut s = Scheduler::new(cfg, 0);
    let t0 = Instant::now();
    add(&mut s, 1);
    let (_, t) = s.dispatch(t0, 30, &idle())[0];
    let t1 = t0 + Duration::from_millis(30);
    assert!(s.complete(1, t.task_id, t.start, t.count, t1));
    s.set_slots(1, 2);
    (s, t1)
}

/// [`paced_worker`] given two 100-frame tasks at `t1`, of which only the
/// later is answered, at `t1 + 100 ms` (the worker may render two at
/// once). Returns the scheduler, the unanswered task, `t1` and `t2`.
fn overtaken_once() -> (Scheduler, Task, Instant, Instant) {
    let (mut s, t1) = paced_worker();
    let tasks = s.dispatch(t1, 1_000, &idle());
    let [(_, lost), (_, next)] = tasks[..] else {
        panic!("{tasks:?}")
    };
    assert_eq!((lost.count, next.count), (100, 100));
    let t2 = t1 + Duration::from_millis(100);
    assert!(s.complete(1, next.task_id, next.start, next.count, t2));
    (s, lost, t1, t2)
}

#[test]
fn a_task_overtaken_once_is_presumed_lost_at_its_paced_deadline() {
    let (mut s, lost, t1, _) = overtaken_once();
    s.expire(t1 + Duration::from_millis(190));
    assert_eq!(s.stats().presumed_lost, 0);
    // Dropped once overdue (twice its expected 100 ms), not at the 2 s floor.
    let t3 = t1 + Duration::from_millis(210);
    s.expire(t3);
    assert_eq!((s.stats().presumed_lost, s.stats().expired), (1, 0));
    assert!(s.workers[&1].live.values().all(|a| a.start != lost.start));
    // Its range is the first handed out again.
    let again = s.dispatch(t3, 1_000, &idle());
    assert_eq!(again[0].1.start, lost.start);
    // A late answer to it is still usable.
    assert_eq!(
        s.claim(1, lost.task_id, lost.start, lost.count, t3),
        Claim::Fresh(lost.scene)
    );
}

#[test]
fn a_task_overtaken_by_a_slotful_of_later_ones_is_presumed_lost_at_once() {
    let (mut s, lost, _, t2) = overtaken_once();
    let (_, third) = s.dispatch(t2, 1_000, &idle())[0];
    // A second later task answered: with two slots, the first was skipped.
    let t3 = t2 + Duration::from_millis(100);
    assert!(s.complete(1, third.task_id, third.start, third.count, t3));
    assert_eq!(s.stats().presumed_lost, 1);
    let again = s.dispatch(t3, 1_000, &idle());
    assert_eq!(again[0].1.start, lost.start);
}

#[test]
fn a_silent_worker_gets_one_probe_and_keeps_its_tasks_until_the_floor() {
    let (mut s, t1) = paced_worker();
    assert_eq!(s.dispatch(t1, 1_000, &idle()).len(), 2);
    assert!(
        s.dispatch(t1 + Duration::from_millis(190), 1_000, &idle())
            .is_empty()
    );
    // Both slots overdue: one probe, and only one.
    let t2 = t1 + Duration::from_millis(210);
    assert_eq!(s.dispatch(t2, 1_000, &idle()).len(), 1);
    assert!(
        s.dispatch(t2 + Duration::from_millis(500), 1_000, &idle())
            .is_empty()
    );
    // Paused (a background tab, a GC): nothing answered, so nothing is
    // presumed lost; the first two tasks last to the floor.
    s.expire(t1 + Duration::from_millis(1_990));
    assert_eq!(s.stats().expired, 0);
    s.expire(t1 + Duration::from_millis(2_010));
    assert_eq!((s.stats().expired, s.stats().presumed_lost), (2, 0));
}

#[test]
fn a_probe_answered_shows_the_overdue_tasks_lost() {
    let (mut s, t1) = paced_worker();
    let lost = s.dispatch(t1, 1_000, &idle());
    let t2 = t1 + Duration::from_millis(210);
    let (_, probe) = s.dispatch(t2, 1_000, &idle())[0];
    let t3 = t2 + Duration::from_millis(100);
    assert!(s.complete(1, probe.task_id, probe.start, probe.count, t3));
    assert_eq!(s.stats().presumed_lost, 2);
    // Both lost ranges come back first, lowest first.
    let again = s.dispatch(t3, 1_000, &idle());
    assert_eq!(again[0].1.start, lost[0].1.start);
    assert_eq!(again[1].1.start, lost[1].1.start);
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
        /// A scene change this many frames past the lowest outstanding
        /// range (or the frontier).
        Change(u16),
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
            (0u16..200).prop_map(Op::Change),
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
            let mut timeline = idle();
            for op in ops {
                match op {
                    Op::Add(w) => add(&mut s, u64::from(w)),
                    Op::Slots(w, n) => s.set_slots(u64::from(w), n),
                    Op::Remove(w) => s.remove_worker(u64::from(w)),
                    Op::Answer { worker, pick, forged, ok } => {
                        let (id, t) = match (forged, handed.is_empty()) {
                            (Some(_), _) | (None, true) => {
                                let (task_id, start, count) = forged.unwrap_or((0, 0, 1));
                                (u64::from(worker), Task::idle(task_id, start, count))
                            }
                            (None, false) => handed[pick % handed.len()],
                        };
                        let claim = s.claim(id, t.task_id, t.start, t.count, now);
                        // A superseded task's answer is never fresh work.
                        if s.is_superseded(id, t.task_id) {
                            prop_assert!(!matches!(claim, Claim::Fresh(_)));
                        }
                        if matches!(claim, Claim::Fresh(_)) {
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
                    Op::Change(ahead) => {
                        let base = s.ranges.keys().next().copied().unwrap_or(s.frontier);
                        timeline.input(1, donut_shared::scene::Impulse { a: 7, b: 0 });
                        if let Some(change) = timeline.commit(base + u64::from(ahead)) {
                            s.supersede(change.frame);
                            prop_assert!(s.frontier <= change.frame);
                            prop_assert!(s.ranges.iter().all(|(&st, e)| st + u64::from(e.count) <= change.frame));
                        }
                    }
                }
                for (id, t) in s.dispatch(now, limit, &timeline) {
                    prop_assert!(t.count >= 1 && t.count <= MAX_TASK_FRAMES);
                    prop_assert!(t.start + u64::from(t.count) <= limit);
                    // Never straddles a change; carries its scene.
                    prop_assert!(timeline.next_keyframe_after(t.start).is_none_or(|k| k >= t.start + u64::from(t.count)));
                    prop_assert_eq!(t.scene, timeline.scene_at(t.start));
                    prop_assert_eq!(t.timeline, timeline.version());
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
