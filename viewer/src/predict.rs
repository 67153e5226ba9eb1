//! The steering page sees its own push at once (issue 25): prediction with
//! the shared crate, sans-IO.
//!
//! Without it, a push shows on the page that made it only when the server's
//! frames of the new timeline version arrive: one input lead plus the round
//! trip, later if they come late. With it, the page draws the frames from
//! the predicted change frame on itself, with the shared renderer
//! ([`donut_shared::render_pose`]) at the scene the server's rules
//! ([`donut_shared::steer`]) will give them, until the server's frames of
//! the version that folds the push in are held; then it paints the
//! server's again. Every predicted frame painted is later compared with the
//! server's frame for the same frame number in that committed version: equal
//! is *confirmed*, different is a *misprediction* (counted, and replaced on
//! screen from the next refresh, as the server's frames are painted again).
//!
//! **Playing ahead.** The server lands a push at the show's frame plus its
//! input lead (2–8 frames, measured). A page that steers therefore plays
//! that lead ahead of the show's clock ([`Predictor::ahead`], applied by
//! the player): its push then lands on the next frame it shows, and it
//! draws the frames the server has not delivered yet itself, from the
//! committed scene (every version's change is in a `Keyframe`) or with its
//! pending pushes. On loopback the server's frames of a change arrive a
//! few milliseconds after the push, so most predicted frames are the
//! frames the fleet is still rendering, drawn a little early, and equal.
//!
//! Events in: the page's own pushes ([`Predictor::pushed`], with the
//! show's frame, the server's clock without the page's lead, when it was
//! sent), the server's [`Keyframe`]s (a version's change
//! frame and scene, and how many of this page's pushes are folded in; sent
//! only to a page that pushed), and each refresh ([`Predictor::overlay`],
//! with the frame the player is about to paint and the version it holds).
//! Out: the text to paint instead, and [`PredictStats`]. A page that never
//! pushes (a watch-only TV, `?steer=0`) never predicts: it has no pending
//! push, and the server sends it no `Keyframe`.
//!
//! **How far ahead** ([`Predictor::ahead_at`]). The frames played ahead
//! go *up* at once (on a `Keyframe`: to one more than the lead, and than
//! the lead of the push just told, so a push shows at the refresh that
//! sends it or the next; the screen jumps forward), and come *down* one frame at a time ([`LOWER_EVERY`]) and only
//! while no push of this page is in flight. Lowering them steps the frame
//! due back, and the player holds the frame on screen until the clock
//! passes it again: done at a push (as it was, applying a lower median at
//! the push's `Keyframe`), that froze the screen for that many frames
//! exactly when it should show the push (BENCHMARKS §12).
//!
//! What it predicts, and where it can be wrong:
//! - the change frame: the show's frame (on the animation-frame clock the
//!   frame due is computed from) plus the lead measured on this page's own
//!   earlier changes (the server's change frame minus the show's frame
//!   when the push was sent; the median of the last [`LEAD_SAMPLES`],
//!   [`DEFAULT_LEAD`] before any), never before the version's change (the
//!   server's rule, [`steer::change_frame`]). Only changes committed on a
//!   quiet timeline are lead samples (the push sent at least
//!   [`QUIET_FRAMES`], or a commit throttle, after the change before):
//!   one the throttle held back lands later by however long it waited;
//! - the commit throttle (`--input-commit-ms`, told by `/api/page`,
//!   [`Predictor::set_commit_interval`]): a push sent before the change it
//!   would join commits folds into it; a later one waits a throttle after
//!   the change before ([`Predictor::throttle`]). Pushes of one change are
//!   summed with the per-viewer clamp ([`steer::add_viewer_push`]) and
//!   folded with [`steer::fold`];
//! - versions told but not yet held are drawn from what they committed
//!   (their `Keyframe`s), the pushes they fold in where the server put
//!   them;
//! - not known: other viewers' pushes not yet committed, the lead moving
//!   between two pushes, and a throttle not told (0 is assumed: each push
//!   at its own frame). Those are mispredictions, counted.

use std::collections::{BTreeMap, VecDeque};

use donut_shared::digest::fnv1a64;
use donut_shared::scene::{Impulse, Scene};
use donut_shared::steer;
use donut_shared::wire::Keyframe;
use donut_shared::{FRAME_LEN, render_pose};

/// The change-frame lead assumed before any own change was measured: the
/// server's default floor (`--input-lead-min-frames`).
pub const DEFAULT_LEAD: u64 = 2;
/// Own changes whose lead is remembered (the median is used).
pub const LEAD_SAMPLES: usize = 5;
/// A lead sample above this (a stalled server, a frozen tab) is not taken.
const MAX_LEAD: u64 = 60;
/// A change whose push was sent at least this many frames after the change
/// before it (or a throttle, if longer) committed on a quiet timeline, at
/// the lead: only those are lead samples (`--input-commit-ms`' default,
/// 100 ms at 60 fps).
pub const QUIET_FRAMES: u64 = 6;
/// A commit throttle longer than this (frames) is taken as this.
const MAX_THROTTLE: u64 = 600;
/// While no push is in flight, the frames played ahead come down to the
/// lead by one frame at most every this many frames of the show (a frame
/// held once, while nobody steers), never at a push.
pub const LOWER_EVERY: u64 = 15;
/// Versions whose change is remembered.
const KEYS_KEPT: usize = 16;
/// Acknowledgements remembered (one a version at most).
const ACKS_KEPT: usize = 64;
/// Pushes not yet folded in, remembered (about a second at the input rate).
const PENDING_KEPT: usize = 64;
/// A predicted frame not compared within this many frames of being painted
/// (its pushes never folded in, or the server's frame never held) is given
/// up and counted as unsettled.
pub const SETTLE_WITHIN: u64 = 600;
/// Predicted frames remembered for [`Predictor::log`] (20 s at 60 fps).
pub const LOG_KEPT: usize = 1200;

/// What prediction did on this page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PredictStats {
    /// `Keyframe` messages received (0 on a page that never pushed).
    pub keyframes: u64,
    /// Pushes predicted (the page's own `Input`s).
    pub pushes: u64,
    /// Frames painted from the prediction.
    pub predicted: u64,
    /// Predicted frames equal to the server's frame of the committed version.
    pub confirmed: u64,
    /// Predicted frames that differed from it (replaced, counted).
    pub mispredicted: u64,
    /// Predicted frames never compared (given up after [`SETTLE_WITHIN`]).
    pub unsettled: u64,
}

/// One of this page's pushes, not yet folded in.
#[derive(Clone, Copy, Debug)]
struct Push {
    ordinal: u32,
    /// The show's frame when it was sent.
    on_screen: u64,
    impulse: Impulse,
}

/// A predicted frame painted, awaiting the server's frame.
#[derive(Clone, Copy, Debug)]
struct Shown {
    frame: u64,
    /// The pushes it assumed: every ordinal below this must be folded in
    /// before the server's frame is the one to compare with.
    upto: u32,
    digest: u64,
}

/// One predicted frame painted: (frame, version held, FNV-1a of the text,
/// wall-clock ms when painted, whether pushes of this page not yet folded
/// in were drawn: `false` for a frame drawn ahead of the stream from the
/// committed scene).
pub type LogEntry = (u64, u32, u64, f64, bool);

/// See the module docs.
#[derive(Debug, Default)]
pub struct Predictor {
    /// Version → (change frame, scene there). Version 0 is the idle scene.
    keys: BTreeMap<u32, (u64, Scene)>,
    /// (version, pushes folded in by then), as told, oldest first.
    acks: VecDeque<(u32, u32)>,
    /// Pushes sent so far (the next push's ordinal).
    sent: u32,
    pending: VecDeque<Push>,
    /// Pushes already sampled for the lead (ordinals below).
    sampled: u32,
    leads: VecDeque<u64>,
    /// The frames played ahead of the show (see [`Predictor::ahead_at`]).
    ahead: u64,
    /// The show's frame when `ahead` last came down.
    lowered: u64,
    /// The server's commit throttle (ms) and playback rate, as told.
    commit_ms: u32,
    fps: f64,
    shown: VecDeque<Shown>,
    log: VecDeque<LogEntry>,
    stats: PredictStats,
}

impl Predictor {
    /// A page that has not pushed: predicts nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The socket (re)connected: the server may have restarted (versions
    /// from 0 again), so every version's change and every push in flight
    /// is forgotten; the figures stay.
    pub fn reset(&mut self) {
        let stats = self.stats;
        let log = std::mem::take(&mut self.log);
        *self = Self {
            stats,
            log,
            commit_ms: self.commit_ms,
            fps: self.fps,
            ..Self::default()
        };
    }

    /// This page sent `impulse` while the show's clock (without the
    /// page's lead) was at frame `on_screen`.
    pub fn pushed(&mut self, impulse: Impulse, on_screen: u64) {
        if self.pending.len() == PENDING_KEPT {
            self.pending.pop_front();
        }
        self.pending.push_back(Push {
            ordinal: self.sent,
            on_screen,
            impulse,
        });
        self.sent = self.sent.wrapping_add(1);
        self.stats.pushes += 1;
    }

    /// The server's `Keyframe`: version `k.timeline` changes from `k.frame`
    /// on (scene `k.scene` there), and folds in this page's first `k.acked`
    /// pushes.
    pub fn on_keyframe(&mut self, k: &Keyframe) {
        self.stats.keyframes += 1;
        // The change before this one, if told: whether the commit throttle
        // held this one back.
        let before = self
            .keys
            .range(..k.timeline)
            .next_back()
            .filter(|(v, _)| v.wrapping_add(1) == k.timeline)
            .map(|(_, &(f, _))| f);
        let quiet = self.throttle().max(QUIET_FRAMES);
        self.keys.insert(k.timeline, (k.frame, k.scene));
        while self.keys.len() > KEYS_KEPT {
            self.keys.pop_first();
        }
        if self.acks.len() == ACKS_KEPT {
            self.acks.pop_front();
        }
        self.acks.push_back((k.timeline, k.acked));
        // The lead of this page's own change: its change frame against the
        // show's frame when the newest push it folded in was sent.
        if k.acked > self.sampled {
            // The newest push it folded in, and only if it was sent a
            // throttle past the change before (a change on a quiet
            // timeline): a change held back by the commit throttle lands
            // later than the lead, by however long its pushes waited.
            if let Some(p) = self
                .pending
                .iter()
                .rev()
                .find(|p| p.ordinal >= self.sampled && p.ordinal < k.acked)
                && before.is_none_or(|b| p.on_screen >= b.saturating_add(quiet))
                && k.frame >= p.on_screen
                && k.frame - p.on_screen <= MAX_LEAD
            {
                if self.leads.len() == LEAD_SAMPLES {
                    self.leads.pop_front();
                }
                let lead = k.frame - p.on_screen;
                self.leads.push_back(lead);
                // This push shows on the next refresh: play at least its
                // lead ahead at once (the screen jumps forward, never back).
                self.ahead = self.ahead.max(lead + 1);
            }
            self.sampled = k.acked;
        }
        if self.stats.pushes > 0 {
            // A higher lead is played at once; a lower one only while
            // nothing is in flight (`ahead_at`).
            self.ahead = self.ahead.max(self.target());
        }
    }

    /// The frames to play ahead: one more than the lead, so a push lands
    /// on the frame due at its own refresh (a change's own frame looks as
    /// the one before it: the push moves the frames after it), whatever
    /// the phase of the refreshes against the show's frames.
    fn target(&self) -> u64 {
        self.lead() + 1
    }

    /// The server's commit throttle (`--input-commit-ms`, told by
    /// `/api/page`) and playback rate: while viewers steer, the server
    /// commits at most one change an interval, at its head then plus the
    /// lead, so pushes made within one interval of a change fold into the
    /// next one, that interval after it. `ms` 0: no throttle.
    pub fn set_commit_interval(&mut self, ms: u32, fps: f64) {
        self.commit_ms = ms;
        self.fps = fps;
    }

    /// The show's playback rate (frames a second), from the telemetry.
    pub fn set_fps(&mut self, fps: f64) {
        self.fps = fps;
    }

    /// The server's commit throttle in frames of the show (0 until told).
    pub fn throttle(&self) -> u64 {
        let fps = if self.fps > 0.0 { self.fps } else { 60.0 };
        let frames = (f64::from(self.commit_ms) * fps / 1000.0).round();
        if frames.is_finite() && frames > 0.0 {
            (frames as u64).min(MAX_THROTTLE)
        } else {
            0
        }
    }

    /// The change-frame lead predicted: the median of the last own changes.
    pub fn lead(&self) -> u64 {
        if self.leads.is_empty() {
            return DEFAULT_LEAD;
        }
        let mut l: Vec<u64> = self.leads.iter().copied().collect();
        l.sort_unstable();
        l[l.len() / 2]
    }

    /// The frames this page plays ahead of the show's clock: 0 on a page
    /// that never pushed (a watch-only page plays the show as everyone
    /// else) or is told nothing (a cluster follower's: it could not draw
    /// the frames it would be ahead of); else at least the lead plus one
    /// since its first `Keyframe` (see [`Predictor::ahead_at`]).
    pub fn ahead(&self) -> u64 {
        if self.stats.pushes == 0 || self.stats.keyframes == 0 {
            0
        } else {
            self.ahead
        }
    }

    /// [`Predictor::ahead`] on a refresh where the show's clock (without
    /// the page's lead) is at frame `show` and the player holds version
    /// `held`. A higher lead is played at once (on a `Keyframe`); a lower
    /// one comes down by one frame at most every [`LOWER_EVERY`] frames,
    /// and only while no push of this page is in flight: lowering the
    /// frames played ahead steps the frame due back, and the player holds
    /// the frame on screen until the clock passes it again, which must not
    /// happen at a push (the screen would freeze exactly when it should
    /// show it).
    pub fn ahead_at(&mut self, show: u64, held: u32) -> u64 {
        if self.ahead() == 0 {
            return 0;
        }
        let target = self.target();
        if self.ahead < target {
            self.ahead = target;
        } else if self.ahead > target
            && !self.pending(held)
            && show >= self.lowered.saturating_add(LOWER_EVERY)
        {
            self.ahead -= 1;
            self.lowered = show;
        }
        self.ahead
    }

    /// The committed scene of `frame` in version `held`, from the changes
    /// told (`None` if one between is unknown). Version 0 is the idle donut.
    pub fn committed(&self, frame: u64, held: u32) -> Option<Scene> {
        let mut v = held;
        while v > 0 {
            let &(k, scene) = self.keys.get(&v)?;
            if k <= frame {
                return Some(steer::scene_after(k, scene, frame));
            }
            v -= 1;
        }
        Some(Scene::idle(frame))
    }

    /// The changes told, as (version, change frame), oldest first.
    pub fn changes(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.keys.iter().map(|(&v, &(f, _))| (v, f))
    }

    /// What prediction did so far.
    pub fn stats(&self) -> PredictStats {
        self.stats
    }

    /// The predicted frames painted, oldest first (the last [`LOG_KEPT`]).
    pub fn log(&self) -> impl Iterator<Item = &LogEntry> {
        self.log.iter()
    }

    /// Whether pushes of this page are still to be folded into the version
    /// `held` (the one the player holds).
    pub fn pending(&mut self, held: u32) -> bool {
        self.prune(held);
        !self.pending.is_empty()
    }

    /// The count of this page's pushes folded into `held` or before, as
    /// far as the server told.
    fn acked(&self, held: u32) -> u32 {
        self.acks
            .iter()
            .filter(|(v, _)| held.wrapping_sub(*v) as i32 >= 0)
            .map(|&(_, a)| a)
            .max()
            .unwrap_or(0)
    }

    /// Forgets the pushes the version held already shows.
    fn prune(&mut self, held: u32) {
        let acked = self.acked(held);
        while self
            .pending
            .front()
            .is_some_and(|p| (acked.wrapping_sub(p.ordinal) as i32) > 0)
        {
            self.pending.pop_front();
        }
    }

    /// The scene of `frame` predicted on top of version `held`, or `None`
    /// if nothing this page pushed changes it (or the version's change is
    /// not known: then the server's frame is the best guess).
    ///
    /// The prediction starts from the newest version told (`base`: every
    /// change from `held` to it known), which already folds in some of
    /// the pushes pending against `held`; the rest are placed by the
    /// server's rules: a push sent at show frame `s` lands at `s + lead`,
    /// but never within a throttle of the change before it
    /// ([`Predictor::throttle`]), and pushes sent before that change
    /// commits (`s + lead` not past it) fold into it.
    pub fn scene_at(&mut self, frame: u64, held: u32) -> Option<Scene> {
        self.prune(held);
        if self.pending.is_empty() {
            return None;
        }
        let held_frame = match self.keys.get(&held) {
            Some(&(f, _)) => f,
            None if held == 0 => 0,
            None => return None,
        };
        let mut base = held;
        while self.keys.contains_key(&base.wrapping_add(1)) {
            base = base.wrapping_add(1);
        }
        // The first frame where `base` differs from `held`.
        let (from, base_frame) = if base == held {
            (u64::MAX, held_frame)
        } else {
            let next = self.keys.get(&held.wrapping_add(1))?.0;
            (next, self.keys.get(&base)?.0)
        };
        let acked = self.acked(base);
        let (lead, throttle) = (self.lead(), self.throttle());
        let mut groups: Vec<(u64, Impulse)> = Vec::new();
        let mut last = base_frame;
        for p in &self.pending {
            if (acked.wrapping_sub(p.ordinal) as i32) > 0 {
                // Folded into `base` already.
                continue;
            }
            let at = p.on_screen.saturating_add(lead);
            match groups.last_mut() {
                Some((f, sum)) if at <= *f => *sum = steer::add_viewer_push(*sum, p.impulse),
                _ => {
                    // The first group waits out the throttle after the
                    // newest change told, each later one after the one
                    // before; never before the last change.
                    let f = steer::change_frame(at, last.saturating_add(throttle));
                    groups.push((f, steer::add_viewer_push(Impulse::default(), p.impulse)));
                    last = f;
                }
            }
        }
        // A change's own frame is drawn as before it (the push moves the
        // frames after it): the first frame to predict is the one after.
        let first = groups.first().map_or(u64::MAX, |g| g.0);
        if frame <= first.min(from) {
            return None;
        }
        if frame <= first {
            return self.committed(frame, base);
        }
        let mut scene = self.committed(first, base)?;
        let mut at = first;
        for (f, sum) in groups.iter().take_while(|g| g.0 <= frame) {
            scene.advance(f - at);
            at = *f;
            if let Some(total) = steer::fold([*sum]) {
                scene.push(total);
            }
        }
        scene.advance(frame - at);
        Some(scene)
    }

    /// On a refresh that paints `frame` while the player holds version
    /// `held`: if this page's pushes not yet folded in change it, or the
    /// player does not hold it (`missing`) on a page that steers, draws the
    /// predicted frame into `text` (and logs it, painted at `wall_ms`) and
    /// returns `true`; otherwise leaves `text` (the server's frame) alone.
    pub fn overlay(
        &mut self,
        frame: u64,
        held: u32,
        missing: bool,
        text: &mut [u8; FRAME_LEN],
        wall_ms: f64,
    ) -> bool {
        let (scene, pushed) = match self.scene_at(frame, held) {
            Some(s) => (s, true),
            None if missing && self.ahead() > 0 => match self.committed(frame, held) {
                Some(s) => (s, false),
                None => return false,
            },
            None => return false,
        };
        render_pose(scene.pose, text);
        let digest = fnv1a64(text);
        self.shown.push_back(Shown {
            frame,
            upto: self.sent,
            digest,
        });
        if self.log.len() == LOG_KEPT {
            self.log.pop_front();
        }
        self.log.push_back((frame, held, digest, wall_ms, pushed));
        self.stats.predicted += 1;
        true
    }

    /// Compares the predicted frames painted whose pushes version `held`
    /// folds in with the server's frames: `server(frame, out)` fills `out`
    /// with the player's frame `frame` if it holds it. `now` is the frame
    /// due; a predicted frame older than [`SETTLE_WITHIN`] is given up.
    pub fn settle(
        &mut self,
        held: u32,
        now: u64,
        mut server: impl FnMut(u64, &mut [u8; FRAME_LEN]) -> bool,
    ) {
        if self.shown.is_empty() {
            return;
        }
        let acked = self.acked(held);
        let mut text = [0u8; FRAME_LEN];
        let stats = &mut self.stats;
        self.shown.retain(|s| {
            if (s.upto.wrapping_sub(acked) as i32) <= 0 && server(s.frame, &mut text) {
                if fnv1a64(&text) == s.digest {
                    stats.confirmed += 1;
                } else {
                    stats.mispredicted += 1;
                }
                return false;
            }
            if now > s.frame.saturating_add(SETTLE_WITHIN) {
                stats.unsettled += 1;
                return false;
            }
            true
        });
    }
}

#[cfg(test)]
mod tests;
