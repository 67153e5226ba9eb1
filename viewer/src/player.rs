//! The player's logic as plain Rust: what the viewer receives goes into the
//! jitter buffer, and on every display refresh [`Player::tick`] says which
//! frame to draw, if a new one is due.
//!
//! Rules:
//! - the frame due is the server-synchronised clock's frame
//!   ([`crate::clock::PlaybackClock`]), so playback holds the show's rate on
//!   any display and is live again at once after the tab was hidden;
//! - if the due frame has not arrived, the last frame shown stays up (a
//!   *miss* is counted) rather than skipping ahead or going blank;
//! - playback never steps backwards for a small correction of the clock;
//! - frames older than a little behind the due frame are dropped, so memory
//!   stays bounded and stale frames are never replayed;
//! - every batch names its *timeline version* (a new one each time a viewer
//!   steers the donut). A batch of a newer version drops every buffered
//!   frame from its start on and installs its own; a batch of an older
//!   version is ignored, so a superseded frame is never shown after the
//!   switch; the same version is stored as ever. The server starts the new
//!   version at the frame the push lands on, ahead of what is playing, and
//!   the frames before it are the same in both versions, so playback runs
//!   straight through the switch.

use donut_shared::FRAME_LEN;
use donut_shared::wire::{DecodeError, Frames, Telemetry};

use crate::clock::PlaybackClock;
use crate::jitter::JitterBuffer;

/// Frames the jitter buffer holds: about 34 s at 60 fps (1.8 MB).
pub const BUFFER_FRAMES: usize = 2048;
/// Frames kept behind the due frame (a clock correction may step back).
pub const KEEP_BEHIND: u64 = 60;
/// How far back a held frame is looked for when the due frame is missing.
const HOLD_SEARCH: u64 = 600;

/// Counters for the panel and the tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlayerStats {
    /// Frames received and stored.
    pub frames_received: u64,
    /// Frames received but dropped (stale or too far ahead).
    pub frames_dropped: u64,
    /// `Frames` messages received.
    pub batches: u64,
    /// Distinct due frames that had not arrived in time.
    pub misses: u64,
    /// Frames drawn.
    pub frames_shown: u64,
    /// Holes in the received stream: batches that started past the end of
    /// everything received before (the server skipped frames). Counted
    /// whether or not the tab is drawing.
    pub gaps: u64,
    /// Batches of a newer timeline version that replaced buffered frames.
    pub switches: u64,
    /// Batches of an older timeline version, ignored.
    pub superseded: u64,
}

/// Jitter buffer, clock and what is on screen.
pub struct Player {
    buffer: JitterBuffer,
    clock: PlaybackClock,
    shown: Option<u64>,
    last_miss: Option<u64>,
    /// One past the highest frame received.
    received_end: Option<u64>,
    /// The timeline version of the frames held (0: nobody has steered).
    timeline: u32,
    /// Whether `timeline` is this connection's: false until the first batch
    /// after (re)subscribing, which may be of any version (a restarted
    /// server starts again at 0).
    timeline_known: bool,
    telemetry: Option<Telemetry>,
    stats: PlayerStats,
    /// Frames this page plays ahead of the show's clock (0 but on a page
    /// that steers: see `crate::predict`).
    ahead: u64,
}

impl Default for Player {
    fn default() -> Self {
        Self::new()
    }
}

impl Player {
    /// An empty player.
    pub fn new() -> Self {
        Self::with_capacity(BUFFER_FRAMES)
    }

    /// An empty player whose buffer holds `frames` frames.
    pub fn with_capacity(frames: usize) -> Self {
        Self {
            buffer: JitterBuffer::new(frames),
            clock: PlaybackClock::new(),
            shown: None,
            last_miss: None,
            received_end: None,
            timeline: 0,
            timeline_known: false,
            telemetry: None,
            stats: PlayerStats::default(),
            ahead: 0,
        }
    }

    /// Fleet statistics received at `now_ms` (kept in
    /// [`Player::telemetry`]): they set the playback clock.
    pub fn on_telemetry(&mut self, t: Telemetry, now_ms: f64) {
        let behind = self.buffer.floor().is_some_and(|floor| t.head < floor);
        if self.clock.sync(t.head, t.fps, now_ms) && behind {
            // The stream went back (a restarted server): start over.
            self.buffer.reset();
            self.shown = None;
            self.last_miss = None;
            self.received_end = None;
            self.timeline_known = false;
        }
        self.telemetry = Some(t);
        self.trim(now_ms);
    }

    /// The socket (re)connected: the next batch says which timeline version
    /// the server is on, whatever this player held before (the server may
    /// have restarted, or moved on while the socket was down).
    pub fn resubscribed(&mut self) {
        self.timeline_known = false;
    }

    /// The timeline version of the frames held (0 until anyone steers).
    pub fn timeline(&self) -> u32 {
        self.timeline
    }

    /// A batch of frames received at `now_ms` (from the server, or from a
    /// parent peer and vouched for by its digest), decoded into the jitter
    /// buffer. An error: its payload does not decode.
    pub fn on_frames(&mut self, f: &Frames<'_>, now_ms: f64) -> Result<(), DecodeError> {
        self.stats.batches += 1;
        let first = self.received_end.is_none();
        let newer = if self.timeline_known {
            f.timeline > self.timeline
        } else {
            f.timeline != self.timeline
        };
        if self.timeline_known && f.timeline < self.timeline {
            // Frames of a superseded timeline: never shown after the switch.
            self.stats.superseded += 1;
            return Ok(());
        }
        if newer {
            // Everything held from the batch's start on belongs to the old
            // timeline; what is before it is the same in both.
            self.buffer.truncate_from(f.start);
            self.received_end = self.received_end.map(|end| end.min(f.start));
            self.timeline = f.timeline;
            if !first {
                self.stats.switches += 1;
            }
        }
        self.timeline_known = true;
        let end = f.start.saturating_add(u64::from(f.count));
        match self.received_end {
            Some(prev) if f.start > prev => self.stats.gaps += 1,
            _ => {}
        }
        self.received_end = Some(self.received_end.map_or(end, |prev| prev.max(end)));
        if first {
            // The first batch after (re)subscribing is the server's catch-up,
            // which begins at or just before its playback head; the telemetry
            // sent before it can be up to a second old. Never start behind
            // the first frame received: the picture would wait for the clock
            // to reach it (a slow start-up), then jump at the next telemetry.
            self.clock.catch_up_to(f.start, now_ms);
        }
        // Keep the floor moving even while no frame is drawn (hidden tab).
        self.trim(now_ms);
        // The codec lives in the shared crate; whatever the server chose
        // (nibble packing or the context coder) arrives here as packed frames.
        f.decode_frames(|n, packed| match self.buffer.insert(n, packed) {
            Ok(()) => self.stats.frames_received += 1,
            Err(_) => self.stats.frames_dropped += 1,
        })
    }

    fn trim(&mut self, now_ms: f64) {
        if let Some(due) = self.due(now_ms) {
            self.buffer.advance(due.saturating_sub(KEEP_BEHIND));
        }
    }

    /// Called on every display refresh: the frame to draw now, if it differs
    /// from the one on screen.
    pub fn tick(&mut self, now_ms: f64) -> Option<u64> {
        let due = self.due(now_ms)?;
        self.trim(now_ms);
        if let Some(shown) = self.shown
            && due <= shown
            && shown - due <= KEEP_BEHIND
        {
            return None;
        }
        let pick = if self.buffer.get(due).is_some() {
            Some(due)
        } else {
            if self.last_miss != Some(due) {
                self.last_miss = Some(due);
                self.stats.misses += 1;
            }
            // Nothing on screen yet, or a long way behind: show the newest
            // frame we have before the due one.
            self.buffer
                .latest_at_or_before(due, HOLD_SEARCH)
                .filter(|f| self.shown.is_none_or(|s| *f > s))
        };
        let frame = pick?;
        self.shown = Some(frame);
        self.stats.frames_shown += 1;
        Some(frame)
    }

    /// The frame due at `now_ms`: the show's clock plus the frames this
    /// page plays ahead ([`Player::set_ahead`]).
    pub fn due(&self, now_ms: f64) -> Option<u64> {
        self.clock
            .frame_at(now_ms)
            .map(|f| f.saturating_add(self.ahead))
    }

    /// Plays `frames` ahead of the show's clock from now on: a steering
    /// page plays its input lead ahead, so its pushes land on the next
    /// frame it shows (`crate::predict`); 0 for every other page.
    pub fn set_ahead(&mut self, frames: u64) {
        self.ahead = frames;
    }

    /// Whether frame `frame` is buffered.
    pub fn holds(&self, frame: u64) -> bool {
        self.buffer.get(frame).is_some()
    }

    /// The frame on screen.
    pub fn shown(&self) -> Option<u64> {
        self.shown
    }

    /// Unpacks buffered frame `frame` into ASCII.
    pub fn frame_text(&self, frame: u64, out: &mut [u8; FRAME_LEN]) -> bool {
        self.buffer
            .get(frame)
            .is_some_and(|p| donut_shared::unpack(p, out).is_ok())
    }

    /// Frames buffered from the due frame on, without a gap.
    pub fn buffered_ahead(&self, now_ms: f64) -> usize {
        self.due(now_ms).map_or(0, |due| self.buffer.run_from(due))
    }

    /// The latest telemetry.
    pub fn telemetry(&self) -> Option<Telemetry> {
        self.telemetry
    }

    /// The playback clock.
    pub fn clock(&self) -> &PlaybackClock {
        &self.clock
    }

    /// Counters.
    pub fn stats(&self) -> PlayerStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use donut_shared::PACKED_LEN;
    use donut_shared::wire::{Codec, Frames, ToViewer};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    impl Player {
        /// Decodes a message from the server as the page's runner does and
        /// hands the player its part (`Frames`, `Telemetry`).
        fn on_message(&mut self, bytes: &[u8], now_ms: f64) -> Result<(), DecodeError> {
            match ToViewer::decode(bytes)? {
                ToViewer::Frames(f) => self.on_frames(&f, now_ms),
                ToViewer::Telemetry(t) => {
                    self.on_telemetry(t, now_ms);
                    Ok(())
                }
                _ => Ok(()),
            }
        }
    }

    fn batch(start: u64, count: u32) -> Vec<u8> {
        version(start, count, 0)
    }

    /// The frames a timeline version draws: version 0 is the idle donut,
    /// version `v` the idle donut `v` million frames on (any other frames
    /// would do, as long as versions differ).
    fn drawn(frame: u64, timeline: u32) -> [u8; FRAME_LEN] {
        let mut out = [0u8; FRAME_LEN];
        donut_shared::render(frame + u64::from(timeline) * 1_000_000, &mut out);
        out
    }

    /// A nibble batch of timeline version `timeline`.
    fn version(start: u64, count: u32, timeline: u32) -> Vec<u8> {
        let mut msg = Frames::header(start, count, timeline, Codec::Nibble).to_vec();
        for f in start..start + u64::from(count) {
            let mut p = [0u8; PACKED_LEN];
            donut_shared::render_packed(f + u64::from(timeline) * 1_000_000, &mut p);
            msg.extend_from_slice(&p);
        }
        msg
    }

    /// Ticks at 60 Hz for `ms` from `t0`; returns each frame drawn with the
    /// timeline version whose picture it showed (checked against [`drawn`]).
    fn play_versions(p: &mut Player, t0: f64, ms: f64, versions: &[u32]) -> Vec<(u64, u32)> {
        let mut shown = Vec::new();
        let mut text = [0u8; FRAME_LEN];
        for i in 0..(ms * 60.0 / 1000.0) as usize {
            let Some(f) = p.tick(t0 + i as f64 * 1000.0 / 60.0) else {
                continue;
            };
            assert!(p.frame_text(f, &mut text), "frame {f} drawn but not held");
            let v = versions
                .iter()
                .copied()
                .find(|v| drawn(f, *v) == text)
                .unwrap_or_else(|| panic!("frame {f} is of no known version"));
            shown.push((f, v));
        }
        shown
    }

    fn telemetry(head: u64) -> [u8; donut_shared::wire::TELEMETRY_LEN] {
        Telemetry {
            head,
            fps: 60,
            ..Telemetry::default()
        }
        .to_bytes()
    }

    /// Ticks at `hz` for `ms` from `t0`, returning the frames drawn.
    fn play(p: &mut Player, t0: f64, ms: f64, hz: f64) -> Vec<u64> {
        let steps = (ms * hz / 1000.0) as usize;
        (0..steps)
            .filter_map(|i| p.tick(t0 + i as f64 * 1000.0 / hz))
            .collect()
    }

    #[test]
    fn plays_every_frame_once_at_60_fps_on_any_display() {
        for hz in [60.0, 75.0, 120.0, 144.0, 240.0] {
            let mut p = Player::new();
            assert!(p.on_message(&telemetry(1_000), 0.0).is_ok());
            assert!(p.on_message(&batch(1_000, 600), 0.0).is_ok());
            let shown = play(&mut p, 0.0, 5_000.0, hz);
            let want: Vec<u64> = (1_000..1_300).collect();
            assert_eq!(shown, want, "{hz} Hz");
            assert_eq!(p.stats().misses, 0);
        }
    }

    #[test]
    fn starts_on_the_first_frame_received_even_after_stale_telemetry() {
        let mut p = Player::new();
        // Telemetry a second old, then the catch-up from the real head.
        assert!(p.on_message(&telemetry(940), 0.0).is_ok());
        assert!(p.on_message(&batch(1_000, 60), 0.0).is_ok());
        assert_eq!(p.tick(0.0), Some(1_000), "painted at once");
        assert_eq!(p.tick(1000.0 / 60.0), Some(1_001));
        // Later batches run ahead of the clock and must not move it.
        assert!(p.on_message(&batch(1_060, 60), 20.0).is_ok());
        assert_eq!(p.tick(2000.0 / 60.0), Some(1_002));
        // Fresh telemetry agrees with the clock: no jump.
        assert!(p.on_message(&telemetry(1_003), 50.0).is_ok());
        assert_eq!(p.tick(3000.0 / 60.0), Some(1_003));
    }

    #[test]
    fn a_30_hz_display_shows_every_other_frame_in_time() {
        let mut p = Player::new();
        assert!(p.on_message(&telemetry(0), 0.0).is_ok());
        assert!(p.on_message(&batch(0, 600), 0.0).is_ok());
        let shown = play(&mut p, 0.0, 1_000.0, 30.0);
        assert_eq!(shown.len(), 30);
        assert_eq!(shown.last(), Some(&58));
    }

    #[test]
    fn holds_the_last_frame_when_the_next_is_late_then_resumes() {
        let mut p = Player::new();
        assert!(p.on_message(&telemetry(0), 0.0).is_ok());
        assert!(p.on_message(&batch(0, 10), 0.0).is_ok());
        let shown = play(&mut p, 0.0, 500.0, 60.0);
        assert_eq!(shown, (0..10).collect::<Vec<_>>(), "held at 9");
        assert!(p.stats().misses > 0);
        assert_eq!(p.shown(), Some(9));
        assert_eq!(p.stats().gaps, 0);
        assert!(p.on_message(&batch(10, 600), 500.0).is_ok());
        assert!(p.on_message(&batch(700, 10), 500.0).is_ok());
        assert_eq!(p.stats().gaps, 1, "frames 610..700 never came");
        assert_eq!(p.tick(500.0), Some(30), "back on the clock");
    }

    #[test]
    fn catches_up_to_live_after_the_background() {
        let mut p = Player::new();
        assert!(p.on_message(&telemetry(0), 0.0).is_ok());
        assert!(p.on_message(&batch(0, 600), 0.0).is_ok());
        assert_eq!(p.tick(0.0), Some(0));
        // Hidden for a minute: no ticks, but batches keep arriving.
        for s in 1..=60u64 {
            let now = s as f64 * 1000.0;
            assert!(p.on_message(&telemetry(s * 60), now).is_ok());
            assert!(p.on_message(&batch(s * 60 + 540, 60), now).is_ok());
        }
        assert_eq!(p.tick(60_000.0), Some(3_600), "live, not frame 1");
        assert_eq!(p.tick(60_017.0), Some(3_601));
    }

    #[test]
    fn plays_frames_that_arrived_out_of_order() {
        let mut p = Player::new();
        assert!(p.on_message(&telemetry(100), 0.0).is_ok());
        assert!(p.on_message(&batch(100, 30), 0.0).is_ok());
        assert!(p.on_message(&batch(160, 60), 0.0).is_ok());
        assert!(p.on_message(&batch(130, 30), 0.0).is_ok());
        let shown = play(&mut p, 0.0, 2_000.0, 60.0);
        assert_eq!(shown, (100..220).collect::<Vec<_>>());
        assert_eq!(
            p.stats().gaps,
            1,
            "160 came before 130..160: a hole when it arrived, filled in time"
        );
        let mut text = [0u8; FRAME_LEN];
        assert!(p.frame_text(219, &mut text));
        let mut want = [0u8; FRAME_LEN];
        donut_shared::render(219, &mut want);
        assert_eq!(text, want);
    }

    #[test]
    fn never_steps_back_for_a_small_correction() {
        let mut p = Player::new();
        assert!(p.on_message(&telemetry(0), 0.0).is_ok());
        assert!(p.on_message(&batch(0, 600), 0.0).is_ok());
        assert_eq!(p.tick(1_000.0), Some(60));
        // The server says it is at 50: the clock follows, the screen holds.
        assert!(p.on_message(&telemetry(50), 1_000.0).is_ok());
        assert_eq!(p.tick(1_000.0), None);
        assert_eq!(p.tick(1_200.0), Some(62));
    }

    #[test]
    fn follows_a_restarted_server_back_to_its_first_frames() {
        let mut p = Player::new();
        assert!(p.on_message(&telemetry(50_000), 0.0).is_ok());
        assert!(p.on_message(&batch(50_000, 600), 0.0).is_ok());
        assert_eq!(p.tick(1_000.0), Some(50_060));
        assert!(p.on_message(&telemetry(0), 2_000.0).is_ok());
        assert!(p.on_message(&batch(0, 120), 2_000.0).is_ok());
        assert_eq!(p.tick(2_000.0), Some(0));
        assert_eq!(p.tick(2_500.0), Some(30));
    }

    #[test]
    fn a_newer_version_replaces_from_its_start_with_no_gap_at_the_switch() {
        let mut p = Player::new();
        assert!(p.on_message(&telemetry(0), 0.0).is_ok());
        assert!(p.on_message(&batch(0, 600), 0.0).is_ok());
        let before = play_versions(&mut p, 0.0, 1_000.0, &[0, 1]);
        assert_eq!(before, (0..60).map(|f| (f, 0)).collect::<Vec<_>>());
        // Someone steered: version 1 starts at frame 80, ahead of playback.
        assert!(p.on_message(&version(80, 60, 1), 1_000.0).is_ok());
        assert_eq!(p.timeline(), 1);
        assert_eq!(p.stats().switches, 1);
        assert!(
            !p.frame_text(140, &mut [0u8; FRAME_LEN]),
            "old frames dropped"
        );
        assert!(p.on_message(&version(140, 60, 1), 1_000.0).is_ok());
        let after = play_versions(&mut p, 1_000.0, 2_000.0, &[0, 1]);
        let want: Vec<(u64, u32)> = (60..180).map(|f| (f, if f < 80 { 0 } else { 1 })).collect();
        assert_eq!(after, want, "straight through the switch");
        assert_eq!(p.stats().misses, 0);
        assert_eq!(p.stats().gaps, 0);
    }

    #[test]
    fn an_older_version_is_ignored_after_the_switch() {
        let mut p = Player::new();
        assert!(p.on_message(&telemetry(0), 0.0).is_ok());
        assert!(p.on_message(&batch(0, 100), 0.0).is_ok());
        assert!(p.on_message(&version(50, 100, 2), 0.0).is_ok());
        let received = p.stats().frames_received;
        // Late frames of versions 1 and 0: superseded, never stored.
        assert!(p.on_message(&version(60, 100, 1), 0.0).is_ok());
        assert!(p.on_message(&batch(100, 100), 0.0).is_ok());
        assert_eq!(p.timeline(), 2);
        assert_eq!(p.stats().superseded, 2);
        assert_eq!(p.stats().frames_received, received);
        let shown = play_versions(&mut p, 0.0, 2_000.0, &[0, 1, 2]);
        let want: Vec<(u64, u32)> = (0..120).map(|f| (f, if f < 50 { 0 } else { 2 })).collect();
        assert_eq!(shown, want);
    }

    #[test]
    fn the_same_version_adds_frames_as_before() {
        let mut p = Player::new();
        assert!(p.on_message(&telemetry(0), 0.0).is_ok());
        assert!(p.on_message(&version(0, 100, 3), 0.0).is_ok());
        assert_eq!((p.timeline(), p.stats().switches), (3, 0), "joined at 3");
        // An overlapping batch of the same version truncates nothing.
        assert!(p.on_message(&version(40, 10, 3), 0.0).is_ok());
        assert!(p.on_message(&version(100, 20, 3), 0.0).is_ok());
        assert_eq!(p.buffered_ahead(0.0), 120);
        assert_eq!(p.stats().switches, 0);
        let shown = play_versions(&mut p, 0.0, 2_000.0, &[3]);
        assert_eq!(shown.len(), 120);
    }

    #[test]
    fn after_a_reconnect_the_servers_version_counts_even_if_lower() {
        let mut p = Player::new();
        assert!(p.on_message(&telemetry(0), 0.0).is_ok());
        assert!(p.on_message(&version(0, 100, 7), 0.0).is_ok());
        // The socket dropped; the server restarted, its timeline at 0 again.
        p.resubscribed();
        assert!(p.on_message(&batch(30, 100), 0.0).is_ok());
        assert_eq!(p.timeline(), 0);
        let shown = play_versions(&mut p, 0.0, 2_000.0, &[0, 7]);
        let want: Vec<(u64, u32)> = (0..120).map(|f| (f, if f < 30 { 7 } else { 0 })).collect();
        assert_eq!(shown, want);
    }

    #[test]
    fn garbage_is_an_error_and_changes_nothing() {
        let mut p = Player::new();
        for bad in [&[][..], &[1, 0x20, 0], &[1, 0x10], &[9, 0x30]] {
            assert!(p.on_message(bad, 0.0).is_err());
        }
        assert_eq!(p.stats(), PlayerStats::default());
        assert_eq!(p.tick(0.0), None);
    }
}
