//! The page's side of prediction (issue 25): [`crate::predict`] driven from
//! the animation loop, and its probe. A child of `app` so it reaches the
//! viewer's state; `app.rs` only calls in (a push sent, a `Keyframe`, a
//! reconnect, each refresh).

use donut_shared::FRAME_LEN;
use js_sys::{Array, Reflect};
use wasm_bindgen::prelude::*;

use super::{DonutViewer, Inner, object};

impl Inner {
    /// On a refresh at `now` (started at `started`): compares the
    /// predicted frames painted with the server's once committed, then
    /// paints the predicted frame due if this page's pushes not yet folded
    /// in change it, or (on a page that steers, which plays ahead) if the
    /// server's has not arrived. Returns whether the prediction has the screen this
    /// refresh (the player's frame is then not painted); the player still
    /// ticks, so its figures (misses included) stay the stream's.
    pub(super) fn paint_predicted(&mut self, now: f64, started: f64) -> bool {
        let Some(due) = self.player.due(now) else {
            return false;
        };
        let held = self.player.timeline();
        let player = &self.player;
        self.predict
            .settle(held, due, |frame, out| player.frame_text(frame, out));
        let missing = !self.player.holds(due);
        if self.paused || !(missing || self.predict.pending(held)) {
            return false;
        }
        if self.text_frame == Some(due) && self.predicted == Some(due) {
            // Already on screen (a display faster than the show).
            return true;
        }
        let mut text = [0u8; FRAME_LEN];
        let wall = self.wall(started);
        if !self.predict.overlay(due, held, missing, &mut text, wall) {
            return false;
        }
        let _ = self.player.tick(now);
        self.text = text;
        self.text_frame = Some(due);
        self.predicted = Some(due);
        self.shown_meter.record(now);
        self.screen.draw(&self.text);
        true
    }
}

#[wasm_bindgen]
impl DonutViewer {
    /// What prediction did on this page: `{keyframes, pushes, predicted,
    /// confirmed, mispredicted, unsettled, lead, log}`: `Keyframe`
    /// messages received (none unless the page pushed), pushes predicted,
    /// frames painted from the prediction, of those the ones equal to and
    /// different from the server's frame of the committed version, and
    /// those never compared; the change-frame lead assumed (frames); `log`
    /// the predicted frames painted (last 1,200) as `[frame,
    /// versionHeld, digest, wallMs, pushed]` (as `painted()`; `wallMs` at
    /// the start of the refresh that drew it; `pushed`: drawn with this
    /// page's pushes not yet folded in, not just ahead of the stream);
    /// `changes` the last 16 changes told, as `[version, changeFrame]`. Predicted frames are not in
    /// `painted()`, which lists the server's frames painted.
    pub fn prediction(&self) -> JsValue {
        self.inner
            .try_read(|v| {
                let s = v.predict.stats();
                let o = object(&[
                    ("keyframes", s.keyframes as f64),
                    ("pushes", s.pushes as f64),
                    ("predicted", s.predicted as f64),
                    ("confirmed", s.confirmed as f64),
                    ("mispredicted", s.mispredicted as f64),
                    ("unsettled", s.unsettled as f64),
                    ("lead", v.predict.lead() as f64),
                ]);
                let log: Array = v
                    .predict
                    .log()
                    .map(|(frame, held, digest, wall, pushed)| {
                        let e = Array::of4(
                            &JsValue::from_f64(*frame as f64),
                            &JsValue::from_f64(f64::from(*held)),
                            &JsValue::from_str(&format!("{digest:016x}")),
                            &JsValue::from_f64(*wall),
                        );
                        e.push(&JsValue::from_bool(*pushed));
                        e
                    })
                    .collect();
                let _ = Reflect::set(&o, &JsValue::from_str("log"), &log);
                let changes: Array = v
                    .predict
                    .changes()
                    .map(|(version, frame)| {
                        Array::of2(
                            &JsValue::from_f64(f64::from(version)),
                            &JsValue::from_f64(frame as f64),
                        )
                    })
                    .collect();
                let _ = Reflect::set(&o, &JsValue::from_str("changes"), &changes);
                o
            })
            .unwrap_or(JsValue::NULL)
    }
}
