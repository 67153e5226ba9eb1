//! The page's side of prediction (issue 25): [`crate::predict`] driven from
//! the animation loop. The runner only calls in (a push sent, a
//! `Keyframe`, a reconnect, each refresh); the probe is
//! `DonutViewer::prediction` in `probes.rs`.

use donut_shared::FRAME_LEN;

use super::runner::Runner;

impl Runner {
    /// On a refresh at `now` (started at `started`): compares the
    /// predicted frames painted with the server's once committed, then
    /// paints the predicted frame due if this page's pushes not yet folded
    /// in change it, or (on a page that steers, which plays ahead) if the
    /// server's has not arrived. Returns whether the prediction has the screen this
    /// refresh (the player's frame is then not painted); the player still
    /// ticks, so its figures (misses included) stay the stream's.
    pub(super) fn paint_predicted(&mut self, now: f64, started: f64) -> bool {
        let held = self.player.timeline();
        if let Some(show) = self.player.clock().frame_at(now) {
            // The frames played ahead come down only while nothing is in
            // flight (`Predictor::ahead_at`).
            let ahead = self.predict.ahead_at(show, held);
            self.player.set_ahead(ahead);
        }
        let Some(due) = self.player.due(now) else {
            return false;
        };
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
