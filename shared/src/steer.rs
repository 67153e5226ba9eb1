//! How pushes become a scene change: the timeline's rules, shared by the
//! server (which commits changes) and the steering page (which predicts
//! them, issue 25).
//!
//! The server queues every viewer's `Input` and, at most once per commit
//! interval, folds everything queued into one change:
//!
//! 1. each viewer's pushes since the last change are summed, each axis
//!    clamped to ±[`MAX_VIEWER_UNITS`] ([`add_viewer_push`]);
//! 2. the per-viewer sums are added in viewer order and clamped to
//!    ±[`MAX_TOTAL_UNITS`] ([`fold`]);
//! 3. the change lands at [`change_frame`]: the frame asked for (the
//!    playback head plus the input lead), never before the last change, so
//!    changes only move forward; there [`Scene::push`] adds it to the spin
//!    (clamped to ±`MAX_SPIN`).
//!
//! The scene of any frame is then its newest change at or before it,
//! advanced ([`scene_after`]). A page that knows the committed changes (the
//! server's `Keyframe` messages, [`crate::wire::Keyframe`]) and its own
//! pushes not yet committed can therefore draw, with the shared renderer,
//! the frames the server will send once it commits them.

use crate::scene::{Impulse, Scene};

/// Most spin units one viewer adds on either axis in one commit (half of
/// [`MAX_TOTAL_UNITS`]): a single player cannot drive the scene as hard as
/// several together. Inputs are also rate-limited per connection.
pub const MAX_VIEWER_UNITS: i32 = 1024;

/// Most spin units all viewers together add on either axis in one commit.
pub const MAX_TOTAL_UNITS: i32 = 2048;

/// `sum` (one viewer's pushes since the last commit) plus `push`, each axis
/// clamped to ±[`MAX_VIEWER_UNITS`].
pub fn add_viewer_push(sum: Impulse, push: Impulse) -> Impulse {
    Impulse {
        a: sum
            .a
            .saturating_add(push.a)
            .clamp(-MAX_VIEWER_UNITS, MAX_VIEWER_UNITS),
        b: sum
            .b
            .saturating_add(push.b)
            .clamp(-MAX_VIEWER_UNITS, MAX_VIEWER_UNITS),
    }
}

/// The one change made of every viewer's sum (in viewer order), each axis
/// clamped to ±[`MAX_TOTAL_UNITS`]; `None` when they cancel out (no change
/// is committed then).
pub fn fold(sums: impl IntoIterator<Item = Impulse>) -> Option<Impulse> {
    let mut total = Impulse::default();
    for push in sums {
        total.a = total.a.saturating_add(push.a);
        total.b = total.b.saturating_add(push.b);
    }
    total.a = total.a.clamp(-MAX_TOTAL_UNITS, MAX_TOTAL_UNITS);
    total.b = total.b.clamp(-MAX_TOTAL_UNITS, MAX_TOTAL_UNITS);
    (total != Impulse::default()).then_some(total)
}

/// The frame a change asked for at `at` lands on: `at`, or the last
/// change's frame `last_key` if that is later.
pub fn change_frame(at: u64, last_key: u64) -> u64 {
    at.max(last_key)
}

/// The scene at `frame` given the scene `key` at the change frame
/// `key_frame <= frame`: `key` advanced (no change lies between them).
pub fn scene_after(key_frame: u64, key: Scene, frame: u64) -> Scene {
    let mut s = key;
    s.advance(frame.saturating_sub(key_frame));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_viewer_is_clamped_then_the_crowd() {
        let mut one = Impulse::default();
        for _ in 0..5 {
            one = add_viewer_push(one, Impulse { a: 600, b: -600 });
        }
        assert_eq!(one, Impulse { a: 1024, b: -1024 });
        let total = fold([one, one, one]).expect("a change");
        assert_eq!(total, Impulse { a: 2048, b: -2048 });
        assert_eq!(
            fold([Impulse { a: 5, b: 0 }, Impulse { a: -5, b: 0 }]),
            None
        );
    }

    #[test]
    fn changes_never_land_before_the_last() {
        assert_eq!(change_frame(100, 90), 100);
        assert_eq!(change_frame(80, 90), 90);
        let key = Scene::idle(10);
        assert_eq!(scene_after(10, key, 25), Scene::idle(25));
    }
}
