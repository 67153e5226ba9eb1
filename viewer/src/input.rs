//! Steering, sans-IO: pointer drags and arrow keys in, the viewer's
//! [`Input`] messages out.
//!
//! Why a gate: a drag fires a pointer event for every few pixels, far more
//! often than anyone needs to tell the server about, and the server closes
//! a viewer that floods it. So movement is *accumulated* and at most one
//! message leaves every [`MIN_INTERVAL_MS`] (under 30 a second, below the
//! server's per-viewer limit), carrying the sum of everything since the
//! last one. The browser shell ([`crate::web`]) only forwards events and
//! calls [`InputGate::poll`] once per animation frame; everything that
//! decides what is sent lives here and is tested natively.
//!
//! Scale: a drag across the whole canvas (its width for a horizontal drag,
//! its height for a vertical one) pushes [`DRAG_UNITS_PER_CANVAS`] spin
//! units (2^-16 turns a frame, [`donut_shared::scene`]). Friction removes
//! 1/32 of a spin a frame, so a push of `s` units turns the donut about
//! `32 · s · 2^-16` extra turns before it settles: a brisk drag across the
//! canvas is about one extra turn, clearly visible, while a twitch of a few
//! pixels is a nudge. One message carries at most [`MAX_INPUT_UNITS`] per
//! axis; anything beyond that in one interval is dropped, never carried
//! over, so letting go of the pointer stops the pushing at once.
//!
//! Directions: dragging down (or the down arrow) pushes rotation A (around
//! the x axis) forwards, dragging right (or the right arrow) pushes
//! rotation B (around the z axis) forwards; up and left push backwards.
//! An arrow key press, or each auto-repeat while it is held, pushes
//! [`KEY_UNITS`].
//!
//! A watch-only screen (a TV with no pointer and nobody at the keys, or a
//! page with steering turned off) produces no events, so nothing is sent.

use donut_shared::wire::{Input, MAX_INPUT_UNITS};

/// Spin units pushed by a drag across the whole canvas.
pub const DRAG_UNITS_PER_CANVAS: f64 = 2048.0;
/// Spin units pushed by one arrow key press or auto-repeat (an eighth of a
/// full-canvas drag: about an eighth of an extra turn).
pub const KEY_UNITS: i16 = 256;
/// The least time between two messages, in milliseconds: at most 29.4
/// messages a second.
pub const MIN_INTERVAL_MS: f64 = 34.0;

/// An arrow key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrow {
    /// Pushes rotation A backwards.
    Up,
    /// Pushes rotation A forwards.
    Down,
    /// Pushes rotation B backwards.
    Left,
    /// Pushes rotation B forwards.
    Right,
}

impl Arrow {
    /// The arrow a `KeyboardEvent.key` names (`"ArrowUp"`, …), if any.
    pub fn from_key(key: &str) -> Option<Self> {
        match key {
            "ArrowUp" => Some(Self::Up),
            "ArrowDown" => Some(Self::Down),
            "ArrowLeft" => Some(Self::Left),
            "ArrowRight" => Some(Self::Right),
            _ => None,
        }
    }
}

/// The pointer being dragged: its id and last position, in CSS pixels.
#[derive(Clone, Copy, Debug)]
struct Drag {
    id: i32,
    x: f64,
    y: f64,
}

/// Accumulates drags and key presses and releases them as rate-limited
/// [`Input`] messages.
#[derive(Debug, Default)]
pub struct InputGate {
    /// Pushes not sent yet, in spin units (fractions kept), each within
    /// ±[`MAX_INPUT_UNITS`].
    pending_a: f64,
    pending_b: f64,
    drag: Option<Drag>,
    /// When the last message left, in milliseconds.
    last_sent: Option<f64>,
    sent: u64,
}

impl InputGate {
    /// A gate with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// A pointer went down at (`x`, `y`) CSS pixels. Returns whether it now
    /// drags the donut (the caller then captures it); a second pointer
    /// while one is dragging is ignored.
    pub fn pointer_down(&mut self, id: i32, x: f64, y: f64) -> bool {
        if self.drag.is_some() || !x.is_finite() || !y.is_finite() {
            return false;
        }
        self.drag = Some(Drag { id, x, y });
        true
    }

    /// Pointer `id` moved to (`x`, `y`) CSS pixels over a canvas of
    /// `width` × `height` CSS pixels. Only the dragging pointer counts.
    pub fn pointer_move(&mut self, id: i32, x: f64, y: f64, width: f64, height: f64) {
        let Some(drag) = self.drag.as_mut().filter(|d| d.id == id) else {
            return;
        };
        if !x.is_finite() || !y.is_finite() {
            return;
        }
        let (dx, dy) = (x - drag.x, y - drag.y);
        drag.x = x;
        drag.y = y;
        if width >= 1.0 && height >= 1.0 {
            self.add(
                dy / height * DRAG_UNITS_PER_CANVAS,
                dx / width * DRAG_UNITS_PER_CANVAS,
            );
        }
    }

    /// Pointer `id` went up or was cancelled: the drag ends (what it
    /// pushed so far is still sent).
    pub fn pointer_up(&mut self, id: i32) {
        if self.drag.is_some_and(|d| d.id == id) {
            self.drag = None;
        }
    }

    /// Whether a pointer is dragging.
    pub fn dragging(&self) -> bool {
        self.drag.is_some()
    }

    /// An arrow key was pressed (or auto-repeated).
    pub fn key(&mut self, arrow: Arrow) {
        let k = f64::from(KEY_UNITS);
        match arrow {
            Arrow::Up => self.add(-k, 0.0),
            Arrow::Down => self.add(k, 0.0),
            Arrow::Left => self.add(0.0, -k),
            Arrow::Right => self.add(0.0, k),
        }
    }

    fn add(&mut self, a: f64, b: f64) {
        let max = f64::from(MAX_INPUT_UNITS);
        self.pending_a = (self.pending_a + a).clamp(-max, max);
        self.pending_b = (self.pending_b + b).clamp(-max, max);
    }

    /// The message to send at `now_ms`, if a whole spin unit is pending and
    /// [`MIN_INTERVAL_MS`] has passed since the last one. Call it once per
    /// animation frame.
    pub fn poll(&mut self, now_ms: f64) -> Option<Input> {
        let (a, b) = (self.pending_a.round(), self.pending_b.round());
        if a == 0.0 && b == 0.0 {
            return None;
        }
        if self
            .last_sent
            .is_some_and(|last| now_ms - last < MIN_INTERVAL_MS)
        {
            return None;
        }
        // Pending pushes are kept within ±MAX_INPUT_UNITS, so the rounded
        // values fit an i16 and the wire's limit.
        self.pending_a -= a;
        self.pending_b -= b;
        self.last_sent = Some(now_ms);
        self.sent += 1;
        Some(Input {
            a: a as i16,
            b: b as i16,
        })
    }

    /// Messages released so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const W: f64 = 800.0;
    const H: f64 = 450.0;

    /// Drags from (x0, y0) by (dx, dy) in `steps` moves, `ms_per_step`
    /// apart from `t0`, polling once per 60 Hz refresh meanwhile; returns
    /// what was sent and when.
    fn drag(
        g: &mut InputGate,
        t0: f64,
        from: (f64, f64),
        by: (f64, f64),
        steps: u32,
        ms_per_step: f64,
    ) -> Vec<(f64, Input)> {
        let mut out = Vec::new();
        assert!(g.pointer_down(1, from.0, from.1));
        let mut next_poll = t0;
        for i in 1..=steps {
            let t = t0 + f64::from(i) * ms_per_step;
            while next_poll <= t {
                out.extend(g.poll(next_poll).map(|m| (next_poll, m)));
                next_poll += 1000.0 / 60.0;
            }
            let k = f64::from(i) / f64::from(steps);
            g.pointer_move(1, from.0 + by.0 * k, from.1 + by.1 * k, W, H);
        }
        g.pointer_up(1);
        for _ in 0..10 {
            out.extend(g.poll(next_poll).map(|m| (next_poll, m)));
            next_poll += 1000.0 / 60.0;
        }
        out
    }

    fn total(sent: &[(f64, Input)]) -> (i32, i32) {
        sent.iter().fold((0, 0), |(a, b), (_, m)| {
            (a + i32::from(m.a), b + i32::from(m.b))
        })
    }

    #[test]
    fn a_drag_across_the_canvas_pushes_the_documented_amount() {
        let mut g = InputGate::new();
        // Left to right across the whole width in 300 ms.
        let sent = drag(&mut g, 0.0, (0.0, 200.0), (W, 0.0), 30, 10.0);
        assert_eq!(total(&sent), (0, DRAG_UNITS_PER_CANVAS as i32));
        // Bottom to top across the height: rotation A, backwards.
        let sent = drag(&mut g, 1_000.0, (400.0, H), (0.0, -H), 30, 10.0);
        assert_eq!(total(&sent), (-(DRAG_UNITS_PER_CANVAS as i32), 0));
        assert!(!g.dragging());
    }

    #[test]
    fn messages_are_coalesced_rate_limited_and_within_the_wire_limit() {
        let mut g = InputGate::new();
        // Two seconds of wild zig-zags, a move every 4 ms, polled at 60 Hz.
        let mut sent = Vec::new();
        assert!(g.pointer_down(7, 0.0, 0.0));
        for i in 1..=500u32 {
            let t = f64::from(i) * 4.0;
            let x = if i % 2 == 0 { 0.0 } else { W };
            g.pointer_move(7, x, f64::from(i % 3) * H, W, H);
            sent.extend(g.poll(t).map(|m| (t, m)));
        }
        assert!(
            sent.len() <= 2_000 / MIN_INTERVAL_MS as usize + 1,
            "{}",
            sent.len()
        );
        assert!(sent.len() >= 40, "only {} messages", sent.len());
        for pair in sent.windows(2) {
            assert!(pair[1].0 - pair[0].0 >= MIN_INTERVAL_MS, "{pair:?}");
        }
        for (_, m) in &sent {
            assert!(m.a.abs() <= MAX_INPUT_UNITS && m.b.abs() <= MAX_INPUT_UNITS);
            // Every message the gate sends is one the server's decoder takes.
            let bytes = m.to_bytes();
            assert_eq!(
                donut_shared::wire::FromViewer::decode(&bytes).ok(),
                Some(donut_shared::wire::FromViewer::Input(*m))
            );
        }
        assert_eq!(g.sent(), sent.len() as u64);
    }

    #[test]
    fn a_fling_is_clamped_and_nothing_is_carried_over() {
        let mut g = InputGate::new();
        assert!(g.pointer_down(1, 0.0, 0.0));
        // Ten canvases to the right within one interval.
        for i in 1..=10 {
            g.pointer_move(1, W * f64::from(i), 0.0, W, H);
        }
        g.pointer_up(1);
        assert_eq!(
            g.poll(0.0),
            Some(Input {
                a: 0,
                b: MAX_INPUT_UNITS
            })
        );
        assert_eq!(g.poll(100.0), None, "the excess was dropped");
    }

    #[test]
    fn arrow_keys_push_a_fixed_amount_and_repeats_coalesce() {
        let mut g = InputGate::new();
        g.key(Arrow::Right);
        assert_eq!(g.poll(0.0), Some(Input { a: 0, b: KEY_UNITS }));
        g.key(Arrow::Up);
        assert_eq!(g.poll(10.0), None, "too soon");
        assert_eq!(
            g.poll(MIN_INTERVAL_MS),
            Some(Input {
                a: -KEY_UNITS,
                b: 0
            })
        );
        // Auto-repeat faster than the interval: summed, then clamped.
        for _ in 0..10 {
            g.key(Arrow::Down);
        }
        g.key(Arrow::Left);
        assert_eq!(
            g.poll(100.0),
            Some(Input {
                a: MAX_INPUT_UNITS,
                b: -KEY_UNITS
            })
        );
        assert_eq!(Arrow::from_key("ArrowLeft"), Some(Arrow::Left));
        assert_eq!(Arrow::from_key("a"), None);
    }

    #[test]
    fn only_the_dragging_pointer_counts() {
        let mut g = InputGate::new();
        g.pointer_move(1, 100.0, 100.0, W, H);
        assert!(g.pointer_down(1, 0.0, 0.0));
        assert!(!g.pointer_down(2, 0.0, 0.0), "a second finger is ignored");
        g.pointer_move(2, W, H, W, H);
        g.pointer_up(2);
        assert!(g.dragging());
        assert_eq!(g.poll(0.0), None);
        g.pointer_move(1, f64::NAN, 5.0, W, H);
        g.pointer_move(1, 10.0, 0.0, 0.0, 0.0);
        assert_eq!(g.poll(50.0), None, "no size, no push");
        g.pointer_up(1);
        g.pointer_move(1, W, 0.0, W, H);
        assert_eq!(g.poll(100.0), None, "moves after the drag ended");
    }

    #[test]
    fn sub_unit_movement_adds_up_and_a_still_page_sends_nothing() {
        let mut g = InputGate::new();
        for t in 0..1_000 {
            assert_eq!(g.poll(f64::from(t)), None);
        }
        assert!(g.pointer_down(1, 0.0, 0.0));
        // 0.1 px moves: 0.256 units each, so the first few send nothing.
        let mut sent = 0i32;
        for i in 1..=100 {
            g.pointer_move(1, f64::from(i) * 0.1, 0.0, W, H);
            if let Some(m) = g.poll(f64::from(i) * 100.0) {
                sent += i32::from(m.b);
            }
        }
        assert_eq!(sent, (10.0 / W * DRAG_UNITS_PER_CANVAS).round() as i32);
    }
}
