//! The integrity gate between a parent peer and the player: a batch from a
//! peer is played or relayed only when its bytes hash to the digest the
//! server announced for it, and a batch that has not come in time is asked
//! of the server.
//!
//! Plain Rust, driven by the messages and the clock it is given (tested
//! natively). Its rules:
//!
//! - The server announces each batch a peer-fed viewer should get by a
//!   [`Digest`] over the WebSocket; the bytes come over the data channel.
//!   Either may come first: bytes without their digest yet are *held*
//!   (at most [`MAX_HELD`] batches; the oldest goes first), then checked
//!   when the digest comes.
//! - Bytes that fail the digest, or that are not a `Frames` message at all,
//!   are a [`Verdict::Mismatch`]: the caller drops the parent, reports it
//!   and fetches the batch from the server. A peer can never make this
//!   viewer play (or relay) a frame the server did not announce.
//! - Each batch is passed on once: a copy from the server of a batch
//!   already played, or a second copy from a peer, is a duplicate.
//! - The deadline fallback: an announced batch whose bytes have not come
//!   [`PATIENCE_MS`] after its digest, or whose first frame is due within
//!   [`MARGIN_FRAMES`], is fetched from the server ([`Gate::due`]), once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use donut_shared::wire::{Digest, Fetch, ToViewer};

use crate::batch::Batch;
pub use crate::batch::Key;

/// Longest a batch may take from the parent after its digest came before
/// it is fetched from the server. A batch is announced about a second
/// before it plays (the server's `--viewer-lead-secs`), so this leaves
/// half of that for the fallback's round trip.
pub const PATIENCE_MS: f64 = 500.0;
/// A batch whose first frame is due within this many frames is fetched at
/// once, however recently it was announced.
pub const MARGIN_FRAMES: u64 = 15;
/// Most batches held while their digest is awaited.
pub const MAX_HELD: usize = 16;
/// Most digests, and most batches passed on, remembered (about 40 s of
/// quarter-second batches): older ones are forgotten first.
pub const MAX_ANNOUNCED: usize = 160;

/// What to do with bytes that came from a peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// They match the server's digest: play them and relay them (decoded
    /// once, here).
    Play(Batch),
    /// Their digest has not come yet: held.
    Held,
    /// This batch was already passed on.
    Duplicate,
    /// They do not match the digest (or are not a batch): drop the parent,
    /// report it, fetch the batch (if it was announced) from the server.
    Mismatch {
        /// The batch they claimed to be (`(0, 0)` if not even that).
        key: Key,
    },
}

#[derive(Debug)]
struct Announced {
    digest: Digest,
    at_ms: f64,
    fetched: bool,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Gate {
    /// Announced batches not yet passed on.
    announced: BTreeMap<Key, Announced>,
    /// Batches passed on (from a peer or the server), whatever the path.
    passed: BTreeSet<Key>,
    held: VecDeque<Batch>,
}

impl Gate {
    /// An empty gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything (the socket reconnected: the server may have
    /// restarted and numbers frames afresh).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// The server announced a batch at `now_ms`. If its bytes were held,
    /// they are judged now.
    pub fn announce(&mut self, digest: Digest, now_ms: f64) -> Option<Verdict> {
        let key = (digest.start, digest.timeline);
        if self.passed.contains(&key) {
            return None;
        }
        self.announced.entry(key).or_insert(Announced {
            digest,
            at_ms: now_ms,
            fetched: false,
        });
        while self.announced.len() > MAX_ANNOUNCED {
            self.announced.pop_first();
        }
        let at = self.held.iter().position(|b| b.key() == key)?;
        let batch = self.held.remove(at)?;
        Some(self.judge(batch))
    }

    /// Bytes that came from the parent peer (decoded here, once).
    pub fn from_peer(&mut self, bytes: Vec<u8>) -> Verdict {
        let Some(batch) = Batch::decode(bytes) else {
            return Verdict::Mismatch { key: (0, 0) };
        };
        let key = batch.key();
        if self.passed.contains(&key) {
            return Verdict::Duplicate;
        }
        if !self.announced.contains_key(&key) {
            if self.held.iter().any(|b| b.key() == key) {
                return Verdict::Duplicate;
            }
            if self.held.len() == MAX_HELD {
                self.held.pop_front();
            }
            self.held.push_back(batch);
            return Verdict::Held;
        }
        self.judge(batch)
    }

    /// A batch came from the server (directly or fetched): whether it is
    /// new (to be played and relayed) rather than a duplicate.
    pub fn from_server(&mut self, key: Key) -> bool {
        self.held.retain(|b| b.key() != key);
        self.announced.remove(&key);
        self.pass(key)
    }

    /// The batches to fetch from the server now: announced, not yet come,
    /// not yet asked for, and out of patience or nearly due (`due_frame`:
    /// the frame the playback clock shows now, if it runs).
    pub fn due(&mut self, now_ms: f64, due_frame: Option<u64>) -> Vec<Fetch> {
        let soon = due_frame.map(|f| f.saturating_add(MARGIN_FRAMES));
        self.announced
            .iter_mut()
            .filter(|(_, a)| !a.fetched)
            .filter(|((start, _), a)| {
                now_ms - a.at_ms >= PATIENCE_MS || soon.is_some_and(|s| s >= *start)
            })
            .map(|(&(start, timeline), a)| {
                a.fetched = true;
                Fetch { start, timeline }
            })
            .collect()
    }

    /// The announced batch `key` is to be fetched now (its parent failed):
    /// a [`Fetch`] unless it came or was asked for already.
    pub fn fetch_now(&mut self, key: Key) -> Option<Fetch> {
        let a = self.announced.get_mut(&key)?;
        if a.fetched {
            return None;
        }
        a.fetched = true;
        Some(Fetch {
            start: key.0,
            timeline: key.1,
        })
    }

    /// Every announced batch not yet come nor asked for, to fetch now (the
    /// parent is gone).
    pub fn fetch_all_pending(&mut self) -> Vec<Fetch> {
        let keys: Vec<Key> = self.announced.keys().copied().collect();
        keys.into_iter().filter_map(|k| self.fetch_now(k)).collect()
    }

    /// Batches announced but not yet come.
    pub fn pending(&self) -> usize {
        self.announced.len()
    }

    fn judge(&mut self, batch: Batch) -> Verdict {
        let key = batch.key();
        let Some(a) = self.announced.get(&key) else {
            return Verdict::Mismatch { key };
        };
        if !a.digest.matches(batch.bytes()) {
            return Verdict::Mismatch { key };
        }
        self.announced.remove(&key);
        self.pass(key);
        Verdict::Play(batch)
    }

    /// Records `key` as passed on; whether it was new.
    fn pass(&mut self, key: Key) -> bool {
        let new = self.passed.insert(key);
        while self.passed.len() > MAX_ANNOUNCED {
            self.passed.pop_first();
        }
        new
    }
}

/// The key of a `Frames` message, or `None` if `bytes` is not one (for
/// callers holding raw bytes; a [`Batch`] knows its key).
pub fn batch_key(bytes: &[u8]) -> Option<Key> {
    match ToViewer::decode(bytes) {
        Ok(ToViewer::Frames(f)) => Some((f.start, f.timeline)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use donut_shared::wire::{Codec, Frames, Telemetry};
    // The same tests run natively and, with the BLAKE3 the page uses, as
    // wasm (`./build.sh test` runs them in Node).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn batch(start: u64, timeline: u32, fill: u8) -> Vec<u8> {
        let payload = vec![fill; 40];
        let f = Frames {
            start,
            count: 1,
            timeline,
            codec: Codec::Context,
            payload: &payload,
        };
        let mut out = vec![0u8; f.encoded_len()];
        let n = f.encode(&mut out).expect("sized");
        out.truncate(n);
        out
    }

    /// The verdict that plays `bytes`.
    fn played(bytes: Vec<u8>) -> Verdict {
        Verdict::Play(Batch::decode(bytes).expect("a batch"))
    }

    fn digest(bytes: &[u8]) -> Digest {
        let (start, timeline) = batch_key(bytes).expect("a batch");
        Digest::of(start, 1, timeline, bytes)
    }

    #[test]
    fn announced_bytes_play_once() {
        let mut g = Gate::new();
        let b = batch(10, 0, 1);
        assert_eq!(g.announce(digest(&b), 0.0), None);
        assert_eq!(g.from_peer(b.clone()), played(b.clone()));
        assert_eq!(g.from_peer(b), Verdict::Duplicate);
        assert!(!g.from_server((10, 0)), "a fetched copy is a duplicate");
        assert_eq!(g.pending(), 0);
    }

    #[test]
    fn bytes_before_their_digest_are_held_then_judged() {
        let mut g = Gate::new();
        let b = batch(10, 0, 1);
        assert_eq!(g.from_peer(b.clone()), Verdict::Held);
        assert_eq!(g.announce(digest(&b), 0.0), Some(played(b)));
    }

    #[test]
    fn altered_bytes_never_play_held_or_not() {
        let mut g = Gate::new();
        let good = batch(10, 0, 1);
        let bad = batch(10, 0, 2);
        g.announce(digest(&good), 0.0);
        assert_eq!(g.from_peer(bad.clone()), Verdict::Mismatch { key: (10, 0) });
        // The good copy from the server still plays.
        assert!(g.from_server((10, 0)));

        let mut g = Gate::new();
        assert_eq!(g.from_peer(bad), Verdict::Held);
        assert_eq!(
            g.announce(digest(&good), 0.0),
            Some(Verdict::Mismatch { key: (10, 0) })
        );
    }

    #[test]
    fn a_batch_of_another_version_or_not_a_batch_is_a_mismatch() {
        let mut g = Gate::new();
        let good = batch(10, 0, 1);
        g.announce(digest(&good), 0.0);
        // Same bytes claimed for a version the server never announced: held,
        // never played.
        assert_eq!(g.from_peer(batch(10, 1, 1)), Verdict::Held);
        let telemetry = Telemetry::default().to_bytes().to_vec();
        assert_eq!(g.from_peer(telemetry), Verdict::Mismatch { key: (0, 0) });
        assert_eq!(g.from_peer(vec![]), Verdict::Mismatch { key: (0, 0) });
    }

    #[test]
    fn a_batch_passed_on_once_is_a_duplicate_on_any_path() {
        let mut g = Gate::new();
        let b = batch(10, 0, 1);
        // Came directly from the server (before this tab was peer-fed), then
        // again in the catch-up after a parent left: passed on once.
        assert!(g.from_server((10, 0)));
        assert!(!g.from_server((10, 0)));
        // A digest for it afterwards asks for nothing; a peer's copy is a
        // duplicate.
        assert_eq!(g.announce(digest(&b), 0.0), None);
        assert!(g.due(10_000.0, None).is_empty());
        assert_eq!(g.from_peer(b), Verdict::Duplicate);
    }

    #[test]
    fn held_bytes_are_bounded() {
        let mut g = Gate::new();
        for i in 0..(MAX_HELD as u64 + 5) {
            assert_eq!(g.from_peer(batch(i, 0, 1)), Verdict::Held);
        }
        assert_eq!(g.held.len(), MAX_HELD);
        // The oldest went first.
        let first = batch(0, 0, 1);
        assert_eq!(g.announce(digest(&first), 0.0), None);
    }

    #[test]
    fn late_batches_are_fetched_once() {
        let mut g = Gate::new();
        let (a, b) = (batch(100, 0, 1), batch(400, 0, 1));
        g.announce(digest(&a), 0.0);
        g.announce(digest(&b), 100.0);
        assert!(g.due(PATIENCE_MS - 1.0, Some(0)).is_empty());
        assert_eq!(
            g.due(PATIENCE_MS, Some(0)),
            vec![Fetch {
                start: 100,
                timeline: 0
            }]
        );
        assert!(g.due(PATIENCE_MS + 1.0, Some(0)).is_empty(), "asked once");
        // Nearly due: fetched at once, patience or not.
        let c = batch(300, 0, 1);
        g.announce(digest(&c), 550.0);
        assert_eq!(g.due(551.0, Some(300 - MARGIN_FRAMES)).len(), 1);
        // Come from the parent in time: never fetched.
        assert_eq!(g.from_peer(b.clone()), played(b));
        assert!(g.due(10_000.0, None).is_empty());
    }

    #[test]
    fn a_lost_parent_fetches_everything_pending() {
        let mut g = Gate::new();
        let (a, b) = (batch(1, 0, 1), batch(2, 0, 1));
        g.announce(digest(&a), 0.0);
        g.announce(digest(&b), 0.0);
        assert_eq!(g.from_peer(a.clone()), played(a));
        assert_eq!(
            g.fetch_all_pending(),
            vec![Fetch {
                start: 2,
                timeline: 0
            }]
        );
        assert!(g.fetch_all_pending().is_empty());
    }

    #[test]
    fn announcements_are_bounded() {
        let mut g = Gate::new();
        for i in 0..(MAX_ANNOUNCED as u64 * 2) {
            g.announce(digest(&batch(i, 0, 1)), 0.0);
        }
        assert_eq!(g.announced.len(), MAX_ANNOUNCED);
    }
}
