//! What a node knows of the committed timeline, and which entries of the
//! timeline stream it passes on to its viewers.
//!
//! Every node keeps a [`TimelineCursor`]: a follower feeds it each entry it reads
//! from `{p}timeline`, the leader each entry it appends. It decides, by
//! frame numbers and versions alone (sans-IO, no Redis, unit-tested), what
//! goes to the node's fan-out:
//!
//! - within one timeline version, only the entry that starts where the
//!   last one ended: a repeat (a deposed leader's late append, a re-read
//!   after a reconnect) is dropped, so viewers never get a frame twice;
//! - a newer version is taken wherever it starts (a scene change
//!   superseded frames; the fan-out replaces what it held from there on);
//! - an older version is stale and dropped;
//! - an entry starting past the end is taken, and counted as a gap (the
//!   stream lost entries: Redis lost its data, or trimmed past a reader
//!   that was away too long).
//!
//! It also remembers where the timeline stands, the **resume point**: a
//! node that becomes leader continues the stream from the end of the last
//! entry (frame, version, scene there), so across a failover viewers see
//! no gap and no repeat.
//!
//! And the current version's **change** (its first changed frame and the
//! scene there, carried by the entries of that version): with the resume
//! point's input-log position, what a steering page on this node is told
//! in a `Keyframe` (issue 25, [`TimelineCursor::keyframe`]). The first
//! entry of a version that carries its change sets it; a later one never
//! moves it (a new leader resuming mid-version only knows where it
//! resumed).

use donut_shared::scene::Scene;

use super::stream_log::{EntryId, TimelineEntry};

/// Where the committed timeline ends: what a new leader resumes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePoint {
    /// One past the last committed frame.
    pub frame: u64,
    /// The timeline version there.
    pub version: u32,
    /// The scene at `frame`.
    pub scene: Scene,
    /// The last push of the input log folded into the timeline there (see
    /// [`TimelineEntry::inputs`]): a new leader reads pushes after it.
    pub inputs: EntryId,
}

/// What to do with an entry (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryVerdict {
    /// Pass it on.
    Take,
    /// Pass it on; frames were lost before it.
    TakeAfterGap {
        /// Frames missing between the last entry and this one.
        missing: u64,
    },
    /// A repeat or a stale version: drop it.
    Drop,
}

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct TimelineCursor {
    /// The last stream ID read or appended.
    last_id: EntryId,
    resume: Option<ResumePoint>,
    /// The change of the resume point's version, if an entry told it:
    /// (frame, version, scene there).
    change: Option<(u64, u32, Scene)>,
}

impl TimelineCursor {
    /// The ID to read the stream after.
    pub fn last_id(&self) -> EntryId {
        self.last_id
    }

    /// Where the timeline ends, if any entry was seen.
    pub fn resume_point(&self) -> Option<ResumePoint> {
        self.resume
    }

    /// The current version's change `(frame, version, scene)` and the
    /// input-log position folded into it or before: what a steering page
    /// is told (`None` until an entry of the current version told its
    /// change).
    pub fn keyframe(&self) -> Option<((u64, u32, Scene), EntryId)> {
        let at = self.resume?;
        let change = self.change.filter(|c| c.1 == at.version)?;
        Some((change, at.inputs))
    }

    /// Judges the entry `id`, and if taken, moves the resume point past it.
    /// An entry whose scene bytes do not decode is dropped.
    pub fn offer(&mut self, id: EntryId, entry: &TimelineEntry) -> EntryVerdict {
        self.last_id = self.last_id.max(id);
        let Ok(scene) = Scene::from_bytes(&entry.scene) else {
            return EntryVerdict::Drop;
        };
        let verdict = match self.resume {
            None => EntryVerdict::Take,
            Some(at) if entry.version < at.version => EntryVerdict::Drop,
            Some(at) if entry.version > at.version => EntryVerdict::Take,
            Some(at) if entry.start < at.frame => EntryVerdict::Drop,
            Some(at) if entry.start > at.frame => EntryVerdict::TakeAfterGap {
                missing: entry.start - at.frame,
            },
            Some(_) => EntryVerdict::Take,
        };
        if verdict != EntryVerdict::Drop {
            if self.change.is_none_or(|c| c.1 != entry.version) {
                self.change = entry.change.and_then(|(frame, bytes)| {
                    Scene::from_bytes(&bytes)
                        .ok()
                        .map(|s| (frame, entry.version, s))
                });
            }
            let mut end = scene;
            end.advance(u64::from(entry.count));
            let inputs = self
                .resume
                .map_or(entry.inputs, |r| r.inputs.max(entry.inputs));
            self.resume = Some(ResumePoint {
                frame: entry.start.saturating_add(u64::from(entry.count)),
                version: entry.version,
                scene: end,
                inputs,
            });
        }
        verdict
    }

    /// The stream was reset (Redis lost it): read it again from the start,
    /// keeping the resume point, so entries already passed on are still
    /// recognised as repeats.
    pub fn reset(&mut self) {
        self.last_id = EntryId::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn entry(start: u64, count: u32, version: u32) -> TimelineEntry {
        TimelineEntry {
            term: 1,
            start,
            count,
            version,
            head: start,
            scene: Scene::idle(start).to_bytes(),
            msg: Bytes::new(),
            inputs: EntryId::ZERO,
            change: None,
        }
    }

    fn id(n: u64) -> EntryId {
        EntryId { ms: n, seq: 0 }
    }

    #[test]
    fn entries_follow_each_other_repeats_and_stale_versions_drop() {
        let mut r = TimelineCursor::default();
        assert_eq!(r.offer(id(1), &entry(100, 15, 0)), EntryVerdict::Take);
        assert_eq!(r.offer(id(2), &entry(115, 15, 0)), EntryVerdict::Take);
        // The same batch again (a deposed leader, a re-read): dropped.
        assert_eq!(r.offer(id(3), &entry(115, 15, 0)), EntryVerdict::Drop);
        assert_eq!(r.offer(id(4), &entry(100, 15, 0)), EntryVerdict::Drop);
        // A scene change: version 1 from 120 on replaces what followed.
        assert_eq!(r.offer(id(5), &entry(120, 15, 1)), EntryVerdict::Take);
        assert_eq!(r.offer(id(6), &entry(130, 15, 0)), EntryVerdict::Drop);
        assert_eq!(
            r.offer(id(7), &entry(140, 15, 1)),
            EntryVerdict::TakeAfterGap { missing: 5 }
        );
        assert_eq!(r.last_id(), id(7));
        let at = r.resume_point().expect("entries were taken");
        assert_eq!((at.frame, at.version), (155, 1));
    }

    #[test]
    fn the_resume_point_carries_the_scene_to_the_end_of_the_last_entry() {
        let mut r = TimelineCursor::default();
        let mut spun = Scene::idle(600);
        spun.push(donut_shared::scene::Impulse { a: 500, b: -200 });
        let mut e = entry(600, 30, 4);
        e.scene = spun.to_bytes();
        e.inputs = id(77);
        assert_eq!(r.offer(id(9), &e), EntryVerdict::Take);
        let mut end = spun;
        end.advance(30);
        assert_eq!(
            r.resume_point(),
            Some(ResumePoint {
                frame: 630,
                version: 4,
                scene: end,
                inputs: id(77),
            })
        );
        // After a reset the stream is read from the start again, and what
        // was already passed on is still a repeat.
        r.reset();
        assert_eq!(r.last_id(), EntryId::ZERO);
        assert_eq!(r.offer(id(1), &e), EntryVerdict::Drop);
        // The input cursor never goes back (an entry of an older release
        // carries none).
        let mut next = entry(630, 30, 4);
        next.scene = {
            let mut s = spun;
            s.advance(30);
            s.to_bytes()
        };
        assert_eq!(r.offer(id(10), &next), EntryVerdict::Take);
        assert_eq!(r.resume_point().map(|p| p.inputs), Some(id(77)));
    }

    #[test]
    fn an_entry_with_a_garbled_scene_is_dropped() {
        let mut r = TimelineCursor::default();
        let mut e = entry(0, 10, 0);
        // Spin far beyond the bound: not a scene any server commits.
        e.scene[16..24].copy_from_slice(&i64::MAX.to_be_bytes());
        assert_eq!(r.offer(id(1), &e), EntryVerdict::Drop);
        assert_eq!(r.resume_point(), None);
    }

    #[test]
    fn the_change_of_the_current_version_is_told_with_the_folded_position() {
        let mut r = TimelineCursor::default();
        let spun = Scene::idle(130);
        let mut e = entry(120, 15, 1);
        // The first batch of version 1 starts before its change (a batch
        // straddling the change frame is sent again under the new version).
        e.change = Some((130, spun.to_bytes()));
        e.inputs = id(40);
        assert_eq!(r.keyframe(), None);
        assert_eq!(r.offer(id(1), &e), EntryVerdict::Take);
        assert_eq!(r.keyframe(), Some(((130, 1, spun), id(40))));
        // A later entry of the version moves the position, not the change
        // (a new leader resuming mid-version tells where it resumed).
        let mut next = entry(135, 15, 1);
        next.change = Some((135, Scene::idle(135).to_bytes()));
        next.inputs = id(41);
        assert_eq!(r.offer(id(2), &next), EntryVerdict::Take);
        assert_eq!(r.keyframe(), Some(((130, 1, spun), id(41))));
        // A repeat of an older version changes nothing.
        assert_eq!(r.offer(id(3), &e), EntryVerdict::Drop);
        assert_eq!(r.keyframe(), Some(((130, 1, spun), id(41))));
        // A version whose entries do not tell the change: nothing to tell.
        assert_eq!(r.offer(id(4), &entry(150, 15, 2)), EntryVerdict::Take);
        assert_eq!(r.keyframe(), None);
        let mut told = entry(165, 15, 2);
        told.change = Some((152, spun.to_bytes()));
        assert_eq!(r.offer(id(5), &told), EntryVerdict::Take);
        assert_eq!(r.keyframe().map(|k| k.0), Some((152, 2, spun)));
    }
}
