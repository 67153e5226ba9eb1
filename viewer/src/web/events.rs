//! The DOM event listeners: pointer drags on the canvas and the arrow keys
//! on the window, feeding the runner's [`InputGate`](crate::input::InputGate)
//! while steering is on.
//!
//! The canvas has `touch-action: none`, so a drag never scrolls or zooms;
//! a drag holds pointer capture, so moves outside the canvas keep coming
//! until the pointer is up. The listeners are `JsCallback`s, removed when
//! the viewer is dropped. The runner's animation loop polls the gate once
//! per refresh and sends what it releases.

use std::rc::{Rc, Weak};

use donut_browser::callback::JsCallback;
use donut_browser::shared::Shared;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{KeyboardEvent, PointerEvent};

use super::runner::Runner;
use crate::input::Arrow;

/// The pointer listeners on the canvas and the arrow keys' on the window.
pub(super) fn steering_listeners(runner: &Rc<Shared<Runner>>) -> Result<Vec<JsCallback>, JsValue> {
    let (canvas, window) = runner
        .try_read(|v| (v.screen.canvas().clone(), v.window.clone()))
        .ok_or("viewer busy")?;
    let weak = Rc::downgrade(runner);
    let on = |f: fn(&mut Runner, &PointerEvent)| {
        let weak: Weak<Shared<Runner>> = weak.clone();
        move |e: web_sys::Event| {
            let (Some(v), Some(e)) = (weak.upgrade(), e.dyn_ref::<PointerEvent>()) else {
                return;
            };
            let e = e.clone();
            v.update(move |v| {
                if v.steering {
                    f(v, &e);
                }
            });
        }
    };
    let target: &web_sys::EventTarget = canvas.as_ref();
    let mut listeners = vec![
        JsCallback::new(target, "pointerdown", on(pointer_down))?,
        JsCallback::new(target, "pointermove", on(pointer_move))?,
        JsCallback::new(target, "pointerup", on(pointer_up))?,
        JsCallback::new(target, "pointercancel", on(pointer_up))?,
    ];
    let keys = weak.clone();
    listeners.push(JsCallback::new(window.as_ref(), "keydown", move |e| {
        let Some(e) = e.dyn_ref::<KeyboardEvent>() else {
            return;
        };
        if e.ctrl_key() || e.alt_key() || e.meta_key() {
            return;
        }
        let (Some(v), Some(arrow)) = (keys.upgrade(), Arrow::from_key(&e.key())) else {
            return;
        };
        // The page scrolls no further on an arrow it steers with (and as
        // ever with `?steer=0`, or in the instant the viewer is busy).
        if v.try_read(|v| v.steering) == Some(false) {
            return;
        }
        e.prevent_default();
        v.update(move |v| {
            if v.steering {
                v.input.key(arrow);
            }
        });
    })?);
    Ok(listeners)
}

fn pointer_down(r: &mut Runner, e: &PointerEvent) {
    if e.button() != 0 {
        return;
    }
    let id = e.pointer_id();
    if r.input
        .pointer_down(id, f64::from(e.client_x()), f64::from(e.client_y()))
    {
        // Moves outside the canvas keep coming until the pointer is up.
        let _ = r.screen.canvas().set_pointer_capture(id);
        e.prevent_default();
    }
}

fn pointer_move(r: &mut Runner, e: &PointerEvent) {
    let canvas = r.screen.canvas();
    let (w, h) = (
        f64::from(canvas.client_width()),
        f64::from(canvas.client_height()),
    );
    if r.input.dragging() && r.input_since.is_none() {
        r.input_since = Some(r.wall(e.time_stamp()));
    }
    r.input.pointer_move(
        e.pointer_id(),
        f64::from(e.client_x()),
        f64::from(e.client_y()),
        w,
        h,
    );
}

fn pointer_up(r: &mut Runner, e: &PointerEvent) {
    r.input.pointer_up(e.pointer_id());
}
