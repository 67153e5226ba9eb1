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
//!
//! **On a cluster** (issue 25) no node's core folds its viewers' pushes:
//! each goes to the cluster's input log, the leader folds it, and every
//! node reads the committed timeline, whose entries carry the position in
//! the log folded so far and their version's change. So a viewer's pushes
//! are followed by their log position instead ([`LogAcks`], sans-IO): the
//! connection registers each push ([`Acks::carry`]) and hands the node a
//! [`PushTicket`], through which the node's carrier reports where Redis
//! stored it (or that it was refused); [`Acks::update_folded`] is then
//! given the version's change and the log position the timeline folded,
//! and a push is acked once it and every push before it is folded (its
//! position at or before the timeline's) or refused: in order, once each.
//! A watch-only page on a cluster node is told nothing, as on one node.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, Weak};

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
    /// A cluster node's pushes, by their input-log position (see the
    /// module docs); shared with the node's carriers through tickets.
    log: Arc<Mutex<LogAcks>>,
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

    /// A push on a cluster node, carried to the input log: the ticket the
    /// carrier reports its fate with ([`PushTicket::stored`],
    /// [`PushTicket::refused`]).
    pub fn carry(&mut self) -> PushTicket {
        self.steering = true;
        let seq = lock(&self.log).pushed();
        PushTicket {
            log: Arc::downgrade(&self.log),
            seq,
        }
    }

    /// A cluster node's view of the committed timeline: the current
    /// version's change `(frame, version, scene)` and the input-log
    /// position folded into it or before (`(ms, seq)` of a stream ID);
    /// `None` before the node read an entry telling its version's change.
    /// The `Keyframe` to send if the viewer steers and the version or the
    /// count of its pushes folded in (or refused) moved.
    pub fn update_folded(
        &mut self,
        change: Option<((u64, u32, Scene), LogPosition)>,
    ) -> Option<Keyframe> {
        let ((frame, version, scene), folded) = change?;
        if !self.steering {
            return None;
        }
        let acked = lock(&self.log).fold(folded);
        self.tell(frame, version, scene, acked)
    }

    fn tell(&mut self, frame: u64, version: u32, scene: Scene, acked: u32) -> Option<Keyframe> {
        if self.told == Some((version, acked)) {
            return None;
        }
        self.told = Some((version, acked));
        Some(Keyframe {
            frame,
            timeline: version,
            acked,
            scene,
        })
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
        self.tell(frame, version, scene, self.acked)
    }
}

/// A position in a cluster's input log: a Redis stream ID as `(ms, seq)`
/// (ordered as Redis orders them).
pub type LogPosition = (u64, u64);

/// What became of one push carried to the input log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Not stored yet (the carrier is still trying).
    Carried,
    /// Stored at this position.
    Stored(LogPosition),
    /// Refused (never folded: Redis did not take it, or lost it).
    Refused,
}

/// One viewer's pushes on a cluster node, oldest first, followed until the
/// timeline folds them (sans-IO; see the module docs). Pushes are acked in
/// the order they were made: a push stored out of order (a retry) waits
/// for the ones before it.
#[derive(Debug, Default)]
pub struct LogAcks {
    /// The sequence number of `pushes[0]`.
    front: u64,
    /// Pushes not acked yet (at most [`QUEUED_KEPT`]: past it the oldest
    /// is taken as acked).
    pushes: VecDeque<Fate>,
    /// Pushes acked so far (wrapping, as the wire's count).
    acked: u32,
}

impl LogAcks {
    /// A push was made: its sequence number (for [`Self::stored`]).
    pub fn pushed(&mut self) -> u64 {
        if self.pushes.len() == QUEUED_KEPT {
            self.pushes.pop_front();
            self.front = self.front.wrapping_add(1);
            self.acked = self.acked.wrapping_add(1);
        }
        self.pushes.push_back(Fate::Carried);
        self.front.wrapping_add(self.pushes.len() as u64 - 1)
    }

    fn settle(&mut self, seq: u64, fate: Fate) {
        let at = seq.wrapping_sub(self.front);
        // Acked already (or forgotten past the bound): nothing to do.
        if let Ok(at) = usize::try_from(at)
            && let Some(slot) = self.pushes.get_mut(at)
            && *slot == Fate::Carried
        {
            *slot = fate;
        }
    }

    /// Push `seq` was stored in the log at `at`.
    pub fn stored(&mut self, seq: u64, at: LogPosition) {
        self.settle(seq, Fate::Stored(at));
    }

    /// Push `seq` was refused: it will never be folded.
    pub fn refused(&mut self, seq: u64) {
        self.settle(seq, Fate::Refused);
    }

    /// The timeline folded the log up to `folded`: the count of pushes
    /// acked (each once, in order: the longest run of the oldest pushes
    /// each folded or refused).
    pub fn fold(&mut self, folded: LogPosition) -> u32 {
        while let Some(&fate) = self.pushes.front() {
            match fate {
                Fate::Stored(at) if at <= folded => {}
                Fate::Refused => {}
                _ => break,
            }
            self.pushes.pop_front();
            self.front = self.front.wrapping_add(1);
            self.acked = self.acked.wrapping_add(1);
        }
        self.acked
    }
}

/// Where a cluster node's carrier reports what became of one push (see
/// [`Acks::carry`]); once the viewer is gone, reports go nowhere.
#[derive(Debug, Clone)]
pub struct PushTicket {
    log: Weak<Mutex<LogAcks>>,
    seq: u64,
}

impl PushTicket {
    /// The push was stored in the input log at `at`.
    pub fn stored(&self, at: LogPosition) {
        if let Some(log) = self.log.upgrade() {
            lock(&log).stored(self.seq, at);
        }
    }

    /// The push was refused (and its viewer told why).
    pub fn refused(&self) {
        if let Some(log) = self.log.upgrade() {
            lock(&log).refused(self.seq);
        }
    }
}

fn lock(m: &Mutex<LogAcks>) -> std::sync::MutexGuard<'_, LogAcks> {
    // The state is valid after any panic between two of its calls.
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
        // No change to tell: nothing.
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

    fn folded(version: u32, at: LogPosition) -> Option<((u64, u32, Scene), LogPosition)> {
        Some(((100 + u64::from(version), version, Scene::idle(100)), at))
    }

    #[test]
    fn a_cluster_watcher_is_told_nothing() {
        let mut acks = Acks::default();
        for v in 0..5 {
            assert_eq!(acks.update_folded(folded(v, (u64::from(v), 0))), None);
        }
    }

    #[test]
    fn cluster_pushes_are_acked_once_folded_in_order() {
        let mut acks = Acks::default();
        let first = acks.carry();
        let second = acks.carry();
        let third = acks.carry();
        // Not stored yet: the version is told, nothing acked.
        let told = acks.update_folded(folded(1, (5, 0))).expect("told at once");
        assert_eq!((told.timeline, told.acked, told.frame), (1, 0, 101));
        // The second is stored first (a retry of the first): it waits.
        second.stored((10, 0));
        assert_eq!(
            acks.update_folded(folded(2, (10, 0))).map(|k| k.acked),
            Some(0)
        );
        first.stored((11, 0));
        // Folded up to 10 only: the first (at 11) is not in yet.
        assert_eq!(
            acks.update_folded(folded(2, (10, 0))),
            None,
            "nothing moved"
        );
        assert_eq!(
            acks.update_folded(folded(3, (11, 0))).map(|k| k.acked),
            Some(2)
        );
        // A report twice, or refused after stored, changes nothing.
        first.refused();
        second.stored((1, 0));
        // The third is refused: acked (it will never be folded).
        third.refused();
        assert_eq!(
            acks.update_folded(folded(3, (11, 0))).map(|k| k.acked),
            Some(3)
        );
        // Before the node knows the version's change: nothing to tell.
        acks.carry();
        assert_eq!(acks.update_folded(None), None);
    }

    #[test]
    fn a_ticket_outliving_its_viewer_reports_nowhere() {
        let mut acks = Acks::default();
        let t = acks.carry();
        drop(acks);
        t.stored((1, 1));
        t.refused();
    }

    #[test]
    fn the_cluster_queue_is_bounded() {
        let mut acks = Acks::default();
        let tickets: Vec<_> = (0..QUEUED_KEPT + 10).map(|_| acks.carry()).collect();
        assert_eq!(
            acks.update_folded(folded(0, (0, 0))).map(|k| k.acked),
            Some(10)
        );
        // The forgotten ones' reports land nowhere; the rest ack in order.
        for (i, t) in tickets.iter().enumerate() {
            t.stored((i as u64 + 1, 0));
        }
        assert_eq!(
            acks.update_folded(folded(1, (u64::MAX, 0)))
                .map(|k| k.acked),
            Some(QUEUED_KEPT as u32 + 10)
        );
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// The page pushes.
        Push,
        /// Redis stores the carried push `i` (modulo those made) next in
        /// the log: stores land in any order.
        Store(usize),
        /// Push `i` is refused (too late, lost).
        Refuse(usize),
        /// The node takes an entry telling version `v` folded the log up
        /// to position `p` (any: a leader's resend of an older entry or a
        /// failover re-reading the stream gives an older one).
        Entry(u32, u64),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            3 => Just(Step::Push),
            3 => any::<usize>().prop_map(Step::Store),
            1 => any::<usize>().prop_map(Step::Refuse),
            3 => (0u32..20, 0u64..60).prop_map(|(v, p)| Step::Entry(v, p)),
        ]
    }

    proptest::proptest! {
        #[test]
        fn every_push_is_acked_exactly_once_in_order(
            steps in proptest::collection::vec(step(), 0..120)
        ) {
            let mut acks = Acks::default();
            // Per push: its ticket, and its fate as the model knows it.
            let mut pushes: Vec<(PushTicket, Option<Fate>)> = Vec::new();
            let mut next_pos = 1u64;
            // The furthest the node's timeline has folded (the cursor
            // never goes back: it takes the newest position it saw).
            let mut folded_max = 0u64;
            let mut last_acked = 0u32;
            let mut told = 0usize;
            for s in steps {
                match s {
                    Step::Push if pushes.len() < QUEUED_KEPT => {
                        pushes.push((acks.carry(), None));
                    }
                    Step::Store(i) if !pushes.is_empty() => {
                        let at = i % pushes.len();
                        let (t, fate) = &mut pushes[at];
                        t.stored((next_pos, 0));
                        if fate.is_none() {
                            *fate = Some(Fate::Stored((next_pos, 0)));
                        }
                        next_pos += 1;
                    }
                    Step::Refuse(i) if !pushes.is_empty() => {
                        let at = i % pushes.len();
                        let (t, fate) = &mut pushes[at];
                        t.refused();
                        if fate.is_none() {
                            *fate = Some(Fate::Refused);
                        }
                    }
                    Step::Entry(v, p) => {
                        folded_max = folded_max.max(p);
                        if let Some(k) = acks.update_folded(folded(v, (folded_max, 0))) {
                            told += 1;
                            proptest::prop_assert!(!pushes.is_empty(), "a watcher was told");
                            proptest::prop_assert!(k.acked >= last_acked, "acked went back");
                            proptest::prop_assert!(k.acked as usize <= pushes.len());
                            // Exactly the longest run of settled pushes.
                            let run = pushes
                                .iter()
                                .take_while(|(_, f)| match f {
                                    Some(Fate::Stored(at)) => at.0 <= folded_max,
                                    Some(Fate::Refused) => true,
                                    _ => false,
                                })
                                .count();
                            proptest::prop_assert_eq!(k.acked as usize, run);
                            last_acked = k.acked;
                        }
                    }
                    _ => {}
                }
            }
            // Every push stored and folded at last: each acked, once.
            for (t, _) in &pushes {
                t.stored((next_pos, 0));
                next_pos += 1;
            }
            let end = acks.update_folded(folded(99, (u64::MAX, 0)));
            if pushes.is_empty() {
                proptest::prop_assert_eq!(end, None);
                proptest::prop_assert_eq!(told, 0);
            } else {
                proptest::prop_assert_eq!(end.map(|k| k.acked as usize), Some(pushes.len()));
            }
        }
    }
}
