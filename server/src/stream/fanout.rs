//! The fan-out: encoded batches out to every viewer of this node, and the
//! catch-up a joining viewer starts from.
//!
//! Each batch is encoded once and published as a `Bytes` on a tokio
//! broadcast channel; the fan-out also keeps the published batches that
//! still hold frames at or after the playback head, so a joiner is sent the
//! very bytes already broadcast (no encoding per join). Publishing and a
//! joiner's subscribe happen under one lock, so a viewer gets every frame
//! exactly once, in order: the catch-up up to the last publish, then
//! everything later on its receiver.
//!
//! # Why apart from the core
//!
//! Viewers need the committed stream, not the scheduler. On a single node
//! (and on a cluster's leader) the [`Core`](crate::stream::core::Core)'s
//! broadcaster feeds the fan-out; on a cluster follower nothing here runs a
//! core, and the batches come from the leader through Redis. Both feed the
//! same [`Fanout::publish`], so the rules a follower needs are the fan-out's
//! own, not the core's:
//!
//! - **Versions.** A batch of a newer timeline version than the last one
//!   published replaces what was published from its start on (a scene
//!   change superseded those frames; see [`crate::stream::core`]), so joiners never
//!   get frames of an old timeline past the change. A batch of an older
//!   version than the last one is stale and dropped.
//! - **The head.** Each batch carries the playback head of the node that
//!   took it; the fan-out keeps the highest head it was given (by a batch
//!   or by [`Fanout::advance`]) and forgets the batches wholly behind it.
//!
//! On the node that runs the core, the core also calls
//! [`Fanout::advance`] when its head moves and [`Fanout::forget_from`] when
//! a scene change supersedes frames, under its own lock (the lock order is
//! core, then fan-out; the fan-out never calls back), so a viewer joining
//! between a change and the next publish gets no superseded batch.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use tokio::sync::broadcast;

use donut_shared::scene::Scene;

use crate::metrics::Stats;

/// One encoded broadcast batch, shared by every viewer.
#[derive(Debug, Clone)]
pub struct Batch {
    /// First frame.
    pub start: u64,
    /// Number of frames.
    pub count: u32,
    /// The scene timeline's version the frames were rendered under (also in
    /// `msg`'s header).
    pub timeline: u32,
    /// The playback head (a frame number) of the node that took the batch,
    /// once the tick that took it was done.
    pub head: u64,
    /// The scene at `start` (what a cluster's next leader resumes from).
    pub scene: Scene,
    /// The encoded `Frames` message.
    pub msg: Bytes,
    /// Its encoded `Digest` (what a peer-fed viewer is sent instead),
    /// computed once, by whichever viewer needs it first, and shared by
    /// every clone: nothing is hashed while no viewer is peer-fed.
    pub digest: Arc<OnceLock<Bytes>>,
}

impl Batch {
    /// The encoded `Digest` of the batch (computed on first use).
    pub fn digest(&self) -> &Bytes {
        self.digest.get_or_init(|| {
            let d = donut_shared::wire::p2p::Digest::of(
                self.start,
                self.count,
                self.timeline,
                &self.msg,
            );
            Bytes::copy_from_slice(&d.to_bytes())
        })
    }

    /// One past its last frame.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(u64::from(self.count))
    }
}

struct Published {
    /// Published batches that still hold frames at or after `head`, in
    /// order: what a joining viewer is sent.
    batches: VecDeque<Batch>,
    /// The highest playback head given.
    head: u64,
    /// The timeline version of the last batch published.
    timeline: u32,
    /// One past the last frame published (0 before any).
    end: u64,
}

impl Published {
    /// Forgets the batches wholly behind the head.
    fn prune(&mut self) {
        while self.batches.front().is_some_and(|b| b.end() <= self.head) {
            self.batches.pop_front();
        }
    }

    /// See [`Fanout::forget_from`].
    fn forget_from(&mut self, frame: u64) -> u64 {
        let resume = self
            .batches
            .iter()
            .find(|b| b.start < frame && b.end() > frame)
            .map_or(frame, |b| b.start);
        self.batches.retain(|b| b.end() <= resume);
        self.end = self.end.min(resume);
        resume
    }
}

/// See the module docs.
pub struct Fanout {
    tx: broadcast::Sender<Batch>,
    published: Mutex<Published>,
    stats: Arc<Stats>,
}

impl Fanout {
    /// A fan-out whose receivers each hold at most `queue` batches (at
    /// least 1) before they are told they lag (`--viewer-queue`); publishes
    /// are counted in `stats`.
    pub fn new(queue: usize, stats: Arc<Stats>) -> Self {
        let (tx, _) = broadcast::channel(queue.max(1));
        Self {
            tx,
            published: Mutex::new(Published {
                batches: VecDeque::new(),
                head: 0,
                timeline: 0,
                end: 0,
            }),
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Published> {
        // Every critical section leaves the list consistent before any call
        // that could panic, so a poisoned lock is still usable.
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends an encoded batch to every subscribed viewer and keeps it for
    /// joiners. Batches come in the order they were taken: within one
    /// timeline version without a gap or a repeat; a newer version may
    /// start at or before the end of the last batch, and replaces the kept
    /// batches from its start on.
    ///
    /// Returns false (and sends nothing) for a batch of an older version
    /// than the last one published (it was superseded before it arrived),
    /// or of the same version ending at or before the last one's end (a
    /// repeat).
    pub fn publish(&self, batch: Batch) -> bool {
        let mut published = self.lock();
        if batch.timeline < published.timeline
            || (batch.timeline == published.timeline && batch.end() <= published.end)
        {
            // Superseded before it arrived, or a repeat (a cluster node
            // can be handed a batch twice across a change of leader).
            return false;
        }
        if batch.timeline > published.timeline {
            published.forget_from(batch.start);
            published.timeline = batch.timeline;
        }
        self.stats.broadcast_batches.inc();
        self.stats.broadcast_bytes.add(batch.msg.len() as u64);
        published.head = published.head.max(batch.head);
        published.end = batch.end();
        published.batches.push_back(batch.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(batch);
        published.prune();
        true
    }

    /// Subscribes a viewer and returns, atomically with it, the batches
    /// already published that hold frames at or after the head: what it
    /// needs to start playing at once (the first may begin a little before
    /// the head; viewers skip frames they are past). Every later batch
    /// arrives on the receiver.
    pub fn subscribe(&self) -> (broadcast::Receiver<Batch>, Vec<Batch>) {
        let published = self.lock();
        let rx = self.tx.subscribe();
        let head = published.head;
        let catchup = published
            .batches
            .iter()
            .filter(|b| b.end() > head)
            .cloned()
            .collect();
        (rx, catchup)
    }

    /// The kept batch of `timeline` starting at `start`, if the fan-out
    /// still holds it (a peer-fed viewer's fallback fetch).
    pub fn find(&self, start: u64, timeline: u32) -> Option<Batch> {
        self.lock()
            .batches
            .iter()
            .find(|b| b.start == start && b.timeline == timeline)
            .cloned()
    }

    /// The highest playback head given (by the core, or by the batches a
    /// cluster follower relays).
    pub fn head(&self) -> u64 {
        self.lock().head
    }

    /// The playback head moved to `head` (a lower head than one given
    /// before changes nothing): batches wholly behind it are no longer
    /// handed to joiners.
    pub fn advance(&self, head: u64) {
        let mut published = self.lock();
        published.head = published.head.max(head);
        published.prune();
    }

    /// A scene change superseded the frames from `frame` on: joiners are no
    /// longer handed a batch holding any of them. An encoded batch
    /// straddling `frame` cannot be cut, so it goes whole.
    ///
    /// Returns where the broadcast must resume for the kept batches and
    /// the next ones to follow each other without a gap or an overlap: the
    /// start of the straddling batch if there was one, else `frame`.
    pub fn forget_from(&self, frame: u64) -> u64 {
        self.lock().forget_from(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of `count` frames from `start`, of timeline `timeline`, taken
    /// with the head at `head`; its message says where it came from.
    fn batch(start: u64, count: u32, timeline: u32, head: u64) -> Batch {
        Batch {
            start,
            count,
            timeline,
            head,
            scene: Scene::idle(start),
            msg: Bytes::from(format!("{start}+{count}@{timeline}")),
            digest: Arc::default(),
        }
    }

    fn fanout() -> Fanout {
        Fanout::new(16, Arc::new(Stats::default()))
    }

    /// `(start, count, timeline)` of each batch.
    fn spans(batches: &[Batch]) -> Vec<(u64, u32, u32)> {
        batches
            .iter()
            .map(|b| (b.start, b.count, b.timeline))
            .collect()
    }

    fn received(rx: &mut broadcast::Receiver<Batch>) -> Vec<Batch> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn subscribers_get_every_batch_once_in_order_and_joiners_the_rest() {
        let f = fanout();
        let (mut early, catchup) = f.subscribe();
        assert!(catchup.is_empty());
        for k in 0..3 {
            assert!(f.publish(batch(100 + 10 * k, 10, 0, 100)));
        }
        let (mut late, catchup) = f.subscribe();
        assert_eq!(spans(&catchup), [(100, 10, 0), (110, 10, 0), (120, 10, 0)]);
        assert!(f.publish(batch(130, 10, 0, 100)));
        assert_eq!(
            spans(&received(&mut early)),
            [(100, 10, 0), (110, 10, 0), (120, 10, 0), (130, 10, 0)]
        );
        // The joiner: its catch-up, then only what came after it.
        assert_eq!(spans(&received(&mut late)), [(130, 10, 0)]);
        // The very bytes published, not copies of other bytes.
        assert_eq!(catchup[1].msg, Bytes::from("110+10@0"));
        assert_eq!(f.stats.broadcast_batches.get(), 4);
        assert_eq!(f.stats.broadcast_bytes.get(), 4 * 8);
    }

    #[test]
    fn batches_behind_the_head_are_pruned_by_advance_or_by_a_batch_s_head() {
        let f = fanout();
        for k in 0..4 {
            f.publish(batch(100 + 10 * k, 10, 0, 100));
        }
        // A head inside a batch keeps it (the viewer skips what it is past).
        f.advance(115);
        let (_rx, catchup) = f.subscribe();
        assert_eq!(spans(&catchup), [(110, 10, 0), (120, 10, 0), (130, 10, 0)]);
        assert_eq!(f.lock().batches.len(), 3);
        // A head going back changes nothing.
        f.advance(101);
        assert_eq!(
            spans(&f.subscribe().1),
            [(110, 10, 0), (120, 10, 0), (130, 10, 0)]
        );
        // A follower learns the leader's head from the batches it reads.
        f.publish(batch(140, 10, 0, 130));
        assert_eq!(spans(&f.subscribe().1), [(130, 10, 0), (140, 10, 0)]);
        // A head at a batch's end leaves nothing of it to show.
        f.advance(150);
        assert!(f.subscribe().1.is_empty());
        assert!(f.lock().batches.is_empty());
    }

    #[test]
    fn forgetting_from_a_frame_drops_the_batches_reaching_it() {
        let f = fanout();
        for k in 0..4 {
            f.publish(batch(100 + 10 * k, 10, 0, 100));
        }
        // At a batch boundary: the batches from it on go.
        assert_eq!(f.forget_from(130), 130);
        assert_eq!(
            spans(&f.subscribe().1),
            [(100, 10, 0), (110, 10, 0), (120, 10, 0)]
        );
        // Inside a batch: it goes whole, and broadcast resumes at its start.
        assert_eq!(f.forget_from(115), 110);
        assert_eq!(spans(&f.subscribe().1), [(100, 10, 0)]);
        // Past everything published: nothing goes.
        assert_eq!(f.forget_from(500), 500);
        assert_eq!(spans(&f.subscribe().1), [(100, 10, 0)]);
    }

    #[test]
    fn kept_batches_are_found_by_start_and_version_and_hashed_once() {
        let f = fanout();
        f.publish(batch(100, 10, 0, 100));
        f.publish(batch(110, 10, 1, 100));
        assert_eq!(f.find(110, 1).map(|b| b.msg), Some(Bytes::from("110+10@1")));
        assert!(f.find(110, 0).is_none() && f.find(105, 0).is_none());
        let b = f.find(100, 0).expect("kept");
        let d = b.digest().clone();
        // Every clone shares the one digest.
        assert!(f.find(100, 0).expect("kept").digest.get().is_some());
        let parsed = donut_shared::wire::ToViewer::decode(&d).expect("a digest");
        match parsed {
            donut_shared::wire::ToViewer::Digest(d) => assert!(d.matches(&b.msg)),
            other => panic!("{other:?}"),
        }
        f.advance(200);
        assert!(f.find(100, 0).is_none());
    }

    #[test]
    fn a_repeat_of_the_same_version_is_dropped() {
        let f = fanout();
        let (mut rx, _) = f.subscribe();
        assert!(f.publish(batch(100, 10, 0, 100)));
        assert!(f.publish(batch(110, 10, 0, 100)));
        assert!(!f.publish(batch(110, 10, 0, 100)));
        assert!(!f.publish(batch(100, 10, 0, 100)));
        assert!(f.publish(batch(120, 10, 0, 100)));
        assert_eq!(
            spans(&received(&mut rx)),
            [(100, 10, 0), (110, 10, 0), (120, 10, 0)]
        );
    }

    #[test]
    fn a_newer_version_replaces_what_was_published_from_its_start_on() {
        let f = fanout();
        let (mut rx, _) = f.subscribe();
        for k in 0..4 {
            f.publish(batch(100 + 10 * k, 10, 0, 100));
        }
        // Version 1 from 115, re-sent from 110 (the straddling batch's
        // start), as a leader's core does: the old 110.. batches go.
        assert!(f.publish(batch(110, 10, 1, 100)));
        let (_joiner, catchup) = f.subscribe();
        assert_eq!(spans(&catchup), [(100, 10, 0), (110, 10, 1)]);
        // Within the new version, batches follow on.
        assert!(f.publish(batch(120, 10, 1, 100)));
        // Version 2 at a boundary the follower never saw a forget for.
        assert!(f.publish(batch(120, 5, 2, 100)));
        assert_eq!(
            spans(&f.subscribe().1),
            [(100, 10, 0), (110, 10, 1), (120, 5, 2)]
        );
        // A straggler of an old version is dropped, for everyone.
        assert!(!f.publish(batch(125, 5, 1, 100)));
        assert_eq!(
            spans(&f.subscribe().1),
            [(100, 10, 0), (110, 10, 1), (120, 5, 2)]
        );
        // Subscribers saw every batch published, versions never going back.
        let got = received(&mut rx);
        let versions: Vec<u32> = got.iter().map(|b| b.timeline).collect();
        assert_eq!(versions, [0, 0, 0, 0, 1, 1, 2]);
        assert_eq!(f.stats.broadcast_batches.get(), 7);
    }

    #[test]
    fn a_joiner_after_a_forget_and_before_the_next_publish_gets_no_superseded_batch() {
        let f = fanout();
        for k in 0..3 {
            f.publish(batch(100 + 10 * k, 10, 0, 105));
        }
        // The core supersedes from 112 (version 1 committed, not yet
        // published): resume at 110.
        assert_eq!(f.forget_from(112), 110);
        let (mut rx, catchup) = f.subscribe();
        assert_eq!(spans(&catchup), [(100, 10, 0)]);
        // The first batch of the new version follows the catch-up exactly.
        f.publish(batch(110, 10, 1, 105));
        assert_eq!(spans(&received(&mut rx)), [(110, 10, 1)]);
    }

    #[test]
    fn a_joiner_racing_publishes_sees_every_batch_exactly_once_in_order() {
        let f = Arc::new(Fanout::new(1024, Arc::new(Stats::default())));
        let publisher = {
            let f = Arc::clone(&f);
            std::thread::spawn(move || {
                for k in 0..500 {
                    f.publish(batch(10 * k, 10, 0, 0));
                }
            })
        };
        let mut joiners = Vec::new();
        for _ in 0..50 {
            joiners.push(f.subscribe());
            std::thread::yield_now();
        }
        publisher.join().expect("publisher");
        for (mut rx, catchup) in joiners {
            let mut next = 0;
            for b in catchup.iter().chain(received(&mut rx).iter()) {
                assert_eq!(b.start, next, "gap or repeat");
                next = b.end();
            }
            assert_eq!(next, 5_000);
        }
    }
}
