//! The predictor against a model of the server's timeline built from the
//! same shared rules (`donut_shared::steer`): what a page paints, and what
//! it counts.

use std::collections::BTreeMap;

use super::*;
use donut_shared::render;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// The page's viewer id in the model.
const PAGE: u64 = 1;

/// The server's timeline as `server/src/timeline` runs it, from the
/// shared rules: keyframes, a version, pushes queued per viewer.
#[derive(Clone, Debug)]
struct Model {
    keys: BTreeMap<u64, Scene>,
    version: u32,
    pending: BTreeMap<u64, Impulse>,
    /// The versions the page's pushes were queued under.
    queued: Vec<u32>,
    /// Version → the keyframes then, to draw any (frame, version).
    history: BTreeMap<u32, BTreeMap<u64, Scene>>,
}

impl Model {
    fn new() -> Self {
        let keys = BTreeMap::from([(0, Scene::idle(0))]);
        Self {
            history: BTreeMap::from([(0, keys.clone())]),
            keys,
            version: 0,
            pending: BTreeMap::new(),
            queued: Vec::new(),
        }
    }

    fn input(&mut self, viewer: u64, push: Impulse) {
        let sum = self.pending.entry(viewer).or_default();
        *sum = steer::add_viewer_push(*sum, push);
        if viewer == PAGE {
            self.queued.push(self.version);
        }
    }

    fn commit(&mut self, at: u64) -> bool {
        let pending = std::mem::take(&mut self.pending);
        let Some(total) = steer::fold(pending.into_values()) else {
            return false;
        };
        let last = *self.keys.keys().next_back().expect("a keyframe");
        let frame = steer::change_frame(at, last);
        let mut scene = scene_in(&self.keys, frame);
        scene.push(total);
        self.keys.insert(frame, scene);
        self.version += 1;
        self.history.insert(self.version, self.keys.clone());
        true
    }

    fn keyframe(&self) -> Keyframe {
        let (&frame, &scene) = self.keys.iter().next_back().expect("a keyframe");
        Keyframe {
            frame,
            timeline: self.version,
            acked: self.queued.iter().filter(|&&v| v < self.version).count() as u32,
            scene,
        }
    }

    /// The server's frame `frame` in version `version`.
    fn text(&self, frame: u64, version: u32) -> [u8; FRAME_LEN] {
        let mut out = [0u8; FRAME_LEN];
        render_pose(scene_in(&self.history[&version], frame).pose, &mut out);
        out
    }
}

fn scene_in(keys: &BTreeMap<u64, Scene>, frame: u64) -> Scene {
    let (&k, &s) = keys.range(..=frame).next_back().expect("a keyframe");
    steer::scene_after(k, s, frame)
}

const PUSH: Impulse = Impulse { a: 700, b: -300 };

#[test]
fn version_zero_is_the_idle_donut() {
    let mut idle = [0u8; FRAME_LEN];
    let mut model = [0u8; FRAME_LEN];
    for f in [0u64, 1, 777, 123_456] {
        render(f, &mut idle);
        render_pose(steer::scene_after(0, Scene::idle(0), f).pose, &mut model);
        assert_eq!(idle, model, "frame {f}");
    }
}

#[test]
fn a_page_that_never_pushes_never_predicts() {
    let mut p = Predictor::new();
    let mut text = [b'x'; FRAME_LEN];
    for f in 0..50 {
        assert!(!p.overlay(f, 0, false, &mut text, 0.0));
    }
    assert_eq!(text, [b'x'; FRAME_LEN], "the server's frame is left alone");
    assert_eq!(p.stats(), PredictStats::default());
}

/// A lone push predicted at the lead the server uses is drawn from that
/// frame at once, before any answer, and every predicted frame is then
/// confirmed by the server's frames of the committed version.
#[test]
fn a_lone_push_at_the_servers_lead_is_confirmed() {
    let mut p = Predictor::new();
    let mut m = Model::new();
    p.pushed(PUSH, 100);
    m.input(PAGE, PUSH);
    let mut text = [0u8; FRAME_LEN];
    // Up to the change frame the server's frames are right as they are.
    assert!(!p.overlay(102, 0, false, &mut text, 0.0));
    // Frames 103.. are predicted while the server has not answered.
    for f in 103..107 {
        text = m.text(f, 0);
        assert!(
            p.overlay(f, 0, false, &mut text, f as f64),
            "frame {f} predicted"
        );
        assert!(text != m.text(f, 0), "frame {f} shows the push");
    }
    assert!(m.commit(100 + DEFAULT_LEAD));
    p.on_keyframe(&m.keyframe());
    // The player now holds version 1: the server's frames are painted.
    p.settle(1, 107, |f, out| {
        *out = m.text(f, 1);
        true
    });
    assert!(!p.overlay(107, 1, false, &mut text, 0.0));
    let s = p.stats();
    assert_eq!(
        (s.predicted, s.confirmed, s.mispredicted),
        (4, 4, 0),
        "{s:?}"
    );
    assert_eq!(p.log().count(), 4);
}

/// The change landing later than predicted: the frames drawn before it
/// differ from the server's, and are counted; the lead is learned.
#[test]
fn a_push_landing_later_is_counted_and_the_lead_learned() {
    let mut p = Predictor::new();
    let mut m = Model::new();
    p.pushed(PUSH, 100);
    m.input(PAGE, PUSH);
    let mut text = [0u8; FRAME_LEN];
    for f in 103..107 {
        assert!(p.overlay(f, 0, false, &mut text, 0.0));
    }
    assert!(m.commit(105));
    p.on_keyframe(&m.keyframe());
    assert_eq!(p.lead(), 5);
    p.settle(1, 107, |f, out| {
        *out = m.text(f, 1);
        true
    });
    let s = p.stats();
    // Every one differs: the pose stays three frames of spin apart.
    assert_eq!(
        (s.predicted, s.mispredicted, s.confirmed),
        (4, 4, 0),
        "{s:?}"
    );
    // The next push is predicted at the lead learned, and is right.
    p.pushed(PUSH, 200);
    m.input(PAGE, PUSH);
    assert!(!p.overlay(205, 1, false, &mut text, 0.0));
    assert!(p.overlay(206, 1, false, &mut text, 0.0));
    assert!(m.commit(205));
    p.on_keyframe(&m.keyframe());
    p.settle(2, 207, |f, out| {
        *out = m.text(f, 2);
        true
    });
    assert_eq!(p.stats().confirmed, 1);
}

/// The acknowledgement counts only once the player holds the version:
/// a `Keyframe` that arrives before its frames keeps the prediction up.
#[test]
fn the_prediction_stays_until_the_player_holds_the_committed_version() {
    let mut p = Predictor::new();
    let mut m = Model::new();
    p.pushed(PUSH, 10);
    m.input(PAGE, PUSH);
    assert!(m.commit(12));
    p.on_keyframe(&m.keyframe());
    let mut text = [0u8; FRAME_LEN];
    assert!(
        p.overlay(13, 0, false, &mut text, 0.0),
        "still on version 0"
    );
    assert!(
        text == m.text(13, 1),
        "and the prediction is the server's frame"
    );
    assert!(!p.overlay(14, 1, false, &mut text, 0.0), "version 1 held");
}

/// A version whose change the page was never told (it joined after it,
/// and another viewer steered): nothing is predicted rather than a guess
/// from the wrong scene.
#[test]
fn an_unknown_version_is_not_predicted_from() {
    let mut p = Predictor::new();
    p.pushed(PUSH, 10);
    let mut text = [0u8; FRAME_LEN];
    assert!(!p.overlay(20, 3, false, &mut text, 0.0));
    p.reset();
    assert!(
        !p.overlay(20, 0, false, &mut text, 0.0),
        "reset forgets the push"
    );
    assert_eq!(p.stats().pushes, 1, "the figures stay");
}

#[cfg(not(target_arch = "wasm32"))]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// One frame of the run: the page may push, another viewer may push.
    #[derive(Clone, Debug)]
    struct Step {
        page: Option<(i16, i16)>,
        other: Option<(i16, i16)>,
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        let push = (-1024i16..=1024, -1024i16..=1024);
        proptest::collection::vec(
            (
                proptest::option::weighted(0.15, push.clone()),
                proptest::option::weighted(0.05, push),
            )
                .prop_map(|(page, other)| Step { page, other }),
            20..90,
        )
    }

    fn impulse((a, b): (i16, i16)) -> Impulse {
        Impulse {
            a: i32::from(a),
            b: i32::from(b),
        }
    }

    /// Runs the page against the model: the server commits every
    /// `throttle` frames at `lead` past the frame, keyframes reach the page
    /// `delay` frames later with the frames of their version; the page is
    /// told the throttle if `told`. On every frame the page plays
    /// [`Predictor::ahead_at`] ahead: the frame it shows then never steps
    /// back or stands still while a push is in flight, and the frames
    /// played ahead come down by one at most. Returns the predictor, the
    /// model and the last frame.
    fn run(
        steps: &[Step],
        lead: u64,
        (throttle, told): (u64, bool),
        delay: u64,
    ) -> Result<(Predictor, Model, u64), TestCaseError> {
        let mut p = Predictor::new();
        if told {
            p.set_commit_interval(((throttle * 1000 + 30) / 60) as u32, 60.0);
            prop_assert_eq!(p.throttle(), throttle);
        }
        let mut m = Model::new();
        let mut held = 0u32;
        let mut inflight: Vec<(u64, Keyframe)> = Vec::new();
        let mut last_commit = 0u64;
        let mut last_due: Option<(u64, u64)> = None;
        let base = 1_000u64;
        let mut frame = base;
        for (i, step) in steps.iter().enumerate() {
            frame = base + i as u64;
            if let Some(push) = step.page {
                p.pushed(impulse(push), frame);
                m.input(PAGE, impulse(push));
            }
            if let Some(push) = step.other {
                m.input(2, impulse(push));
            }
            if !m.pending.is_empty() && frame >= last_commit + throttle {
                // Pushes that cancel out make no version, as on the server.
                if m.commit(frame + lead) {
                    last_commit = frame;
                }
            }
            inflight.push((frame + delay, m.keyframe()));
            while inflight.first().is_some_and(|(at, _)| *at <= frame) {
                let (_, k) = inflight.remove(0);
                p.on_keyframe(&k);
                held = k.timeline;
            }
            let in_flight = p.pending(held);
            let ahead = p.ahead_at(frame, held);
            let due = frame + ahead;
            if let Some((before, was)) = last_due {
                prop_assert!(
                    was <= ahead + 1,
                    "ahead {was} -> {ahead}: one frame at most"
                );
                if in_flight {
                    prop_assert!(
                        due > before,
                        "frame {before} -> {due} with a push in flight"
                    );
                }
            }
            last_due = Some((due, ahead));
            let mut text = m.text(frame, held);
            let server = text;
            if !p.overlay(frame, held, false, &mut text, 0.0) {
                prop_assert_eq!(text, server);
            }
            p.settle(held, frame, |f, out| {
                *out = m.text(f, held);
                true
            });
        }
        // Everything arrives, and one more commit folds what was queued.
        if m.commit(frame + lead) {
            frame += 1;
        }
        p.on_keyframe(&m.keyframe());
        Ok((p, m, frame))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Once the committed frames are held, the screen is the server's,
        /// and every predicted frame was compared or given up, once.
        #[test]
        fn once_committed_the_screen_is_the_servers(
            steps in steps(),
            lead in 1u64..8,
            throttle in 1u64..8,
            told: bool,
            delay in 0u64..6,
        ) {
            let (mut p, m, end) = run(&steps, lead, (throttle, told), delay)?;
            let held = m.version;
            prop_assert!(!p.pending(held), "every push folded in");
            for f in end + 1..end + 20 {
                let mut text = m.text(f, held);
                prop_assert!(!p.overlay(f, held, false, &mut text, 0.0));
                prop_assert_eq!(text, m.text(f, held));
            }
            p.settle(held, end + SETTLE_WITHIN + 1, |f, out| {
                *out = m.text(f, held);
                true
            });
            let s = p.stats();
            prop_assert_eq!(s.confirmed + s.mispredicted + s.unsettled, s.predicted, "{:?}", s);
            prop_assert_eq!(s.unsettled, 0, "{:?}", s);
        }

        /// Alone, at the lead the page assumes and the commit throttle it
        /// was told, pushes folded into changes as the server folds them:
        /// every predicted frame is the server's.
        #[test]
        fn a_lone_steerer_at_the_known_lead_is_never_wrong(
            steps in steps(),
            throttle in 1u64..10,
            delay in 0u64..6,
        ) {
            let alone: Vec<Step> = steps
                .into_iter()
                .map(|s| Step { other: None, ..s })
                .collect();
            let (mut p, m, end) = run(&alone, DEFAULT_LEAD, (throttle, true), delay)?;
            p.settle(m.version, end + 1, |f, out| {
                *out = m.text(f, m.version);
                true
            });
            let s = p.stats();
            prop_assert_eq!(s.mispredicted, 0, "{:?}", s);
            prop_assert_eq!(s.confirmed, s.predicted, "{:?}", s);
        }
    }
}

/// A page that steers plays its lead ahead and draws frames the server has
/// not delivered from the committed scene; a watcher does neither.
#[test]
fn a_steering_page_plays_ahead_and_fills_from_the_committed_scene() {
    let mut watcher = Predictor::new();
    let mut text = [0u8; FRAME_LEN];
    assert_eq!(watcher.ahead(), 0);
    assert!(
        !watcher.overlay(50, 0, true, &mut text, 0.0),
        "a watcher never fills"
    );

    let mut p = Predictor::new();
    let mut m = Model::new();
    p.pushed(PUSH, 100);
    assert_eq!(p.ahead(), 0, "not before the server tells the changes");
    m.input(PAGE, PUSH);
    assert!(m.commit(104));
    p.on_keyframe(&m.keyframe());
    assert_eq!(p.ahead(), 5, "the lead measured, plus one");
    // Version 1 held, its frame 110 not yet delivered: drawn from the
    // committed scene, and confirmed once the server's arrives.
    assert!(p.overlay(110, 1, true, &mut text, 0.0));
    assert!(text == m.text(110, 1));
    assert!(
        !p.overlay(111, 1, false, &mut text, 0.0),
        "held: the server's"
    );
    p.settle(1, 111, |f, out| {
        *out = m.text(f, 1);
        true
    });
    assert_eq!(p.stats().confirmed, 1);
}

const PUSH2: Impulse = Impulse { a: -200, b: 500 };

/// A push made within the commit throttle of the change before it folds
/// into the next change, a throttle after that one (the server's
/// `--input-commit-ms`): the page predicts it there, so the frames it
/// draws are the server's, and the throttled change is no lead sample.
#[test]
fn a_push_within_the_throttle_is_predicted_where_the_server_folds_it() {
    let mut p = Predictor::new();
    // `/api/page` tells the server's `--input-commit-ms`: 100 ms, 6 frames.
    p.set_commit_interval(100, 60.0);
    let mut m = Model::new();
    p.pushed(PUSH, 100);
    m.input(PAGE, PUSH);
    assert!(m.commit(100 + DEFAULT_LEAD));
    p.on_keyframe(&m.keyframe());
    assert_eq!(p.lead(), DEFAULT_LEAD);
    // One frame after the change: the throttle holds it until the head
    // is at 100 + the throttle (6 frames, 100 ms), so it lands a throttle
    // after 102.
    p.pushed(PUSH2, 103);
    m.input(PAGE, PUSH2);
    let change = 100 + DEFAULT_LEAD + 6;
    let mut text = [0u8; FRAME_LEN];
    for f in 104..=change {
        text = m.text(f, 1);
        assert!(
            !p.overlay(f, 1, false, &mut text, 0.0),
            "frame {f}: version 1's"
        );
    }
    for f in change + 1..change + 5 {
        assert!(
            p.overlay(f, 1, false, &mut text, 0.0),
            "frame {f} predicted"
        );
    }
    assert!(m.commit(change));
    p.on_keyframe(&m.keyframe());
    p.settle(2, change + 5, |f, out| {
        *out = m.text(f, 2);
        true
    });
    let s = p.stats();
    assert_eq!(
        (s.predicted, s.confirmed, s.mispredicted),
        (4, 4, 0),
        "{s:?}"
    );
    assert_eq!(
        p.lead(),
        DEFAULT_LEAD,
        "a throttled change is no lead sample"
    );
}

/// A `Keyframe` told before the player holds its version: the frames
/// drawn meanwhile are the told version's (every push it folds in at the
/// frame the server put it), not the page's guess.
#[test]
fn a_told_version_is_drawn_before_its_frames_arrive() {
    let mut p = Predictor::new();
    let mut m = Model::new();
    p.pushed(PUSH, 100);
    p.pushed(PUSH2, 101);
    m.input(PAGE, PUSH);
    m.input(PAGE, PUSH2);
    // The server folded both into one change, later than either guess.
    assert!(m.commit(107));
    p.on_keyframe(&m.keyframe());
    let mut text = [0u8; FRAME_LEN];
    for f in [104, 107] {
        assert!(
            !p.overlay(f, 0, false, &mut text, 0.0),
            "frame {f}: as before"
        );
    }
    for f in 108..112 {
        assert!(p.overlay(f, 0, false, &mut text, 0.0));
        assert!(text == m.text(f, 1), "frame {f} is version 1's");
    }
}

/// The frames played ahead go up at once, and come down one at a time,
/// only while no push is in flight, so the screen never freezes or steps
/// back at a push.
#[test]
fn a_lower_lead_is_played_only_while_nothing_is_in_flight() {
    let mut p = Predictor::new();
    let mut m = Model::new();
    // A slow first change: 8 frames.
    p.pushed(PUSH, 100);
    m.input(PAGE, PUSH);
    assert!(m.commit(108));
    p.on_keyframe(&m.keyframe());
    assert_eq!((p.lead(), p.ahead()), (8, 9));
    // Two quick ones: the lead learned falls to 2.
    for (n, at) in [(2u32, 200u64), (3, 300)] {
        p.pushed(PUSH, at);
        m.input(PAGE, PUSH);
        assert_eq!(p.ahead_at(at + 1, n - 1), 9, "in flight");
        assert!(m.commit(at + 2));
        p.on_keyframe(&m.keyframe());
        assert_eq!(
            p.ahead_at(at + 2, n - 1),
            9,
            "told, not yet held: in flight"
        );
    }
    assert_eq!(p.lead(), 2);
    // Held: comes down one frame every LOWER_EVERY frames.
    let mut ahead = Vec::new();
    for show in 303..303 + 8 * LOWER_EVERY {
        ahead.push(p.ahead_at(show, 3));
    }
    assert!(ahead.windows(2).all(|w| w[0] >= w[1] && w[0] - w[1] <= 1));
    assert_eq!(ahead.first(), Some(&8));
    assert_eq!(ahead.last(), Some(&3));
    // A higher lead again is played at once, enough to show the push told
    // on the next refresh.
    p.pushed(PUSH, 400);
    m.input(PAGE, PUSH);
    assert!(m.commit(420));
    p.on_keyframe(&m.keyframe());
    assert_eq!(
        (p.lead(), p.ahead()),
        (8, 21),
        "the median for the next push, this push's own lead at once"
    );
}
