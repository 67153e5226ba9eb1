//! JS callbacks that unhook themselves: a [`JsCallback`] is an event
//! listener removed from its target when dropped, a [`Timeout`] a timer
//! cleared when dropped (modelled on ruffle's `JsCallback`).
//!
//! A `Closure` handed to JS must outlive every call JS makes to it, and JS
//! must stop calling it before it is freed. Keeping the closure, the target
//! and the event name in one guard makes the second half automatic:
//! whoever owns the guard (a socket, an agent) unhooks the listener by
//! dropping it, so a replaced socket can never call into its old owner and
//! nothing leaks a `Closure::forget`.

use js_sys::Function;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{Event, EventTarget};

#[wasm_bindgen]
extern "C" {
    // The global timer functions exist in a window and in a worker alike;
    // binding them directly spares a `Window`/`WorkerGlobalScope` split.
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &Function, ms: i32) -> i32;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: i32);
}

/// An event listener on `target` for `name`, removed when dropped.
pub struct JsCallback {
    target: EventTarget,
    name: &'static str,
    closure: Closure<dyn FnMut(Event)>,
}

impl JsCallback {
    /// Adds `f` as a listener for `name` events on `target`. Errors are
    /// what `addEventListener` throws.
    pub fn new(
        target: &EventTarget,
        name: &'static str,
        f: impl FnMut(Event) + 'static,
    ) -> Result<Self, JsValue> {
        let closure = Closure::<dyn FnMut(Event)>::new(f);
        target.add_event_listener_with_callback(name, closure.as_ref().unchecked_ref())?;
        Ok(Self {
            target: target.clone(),
            name,
            closure,
        })
    }
}

impl Drop for JsCallback {
    fn drop(&mut self) {
        let _ = self
            .target
            .remove_event_listener_with_callback(self.name, self.closure.as_ref().unchecked_ref());
    }
}

/// A one-shot timer (`setTimeout`) that is cleared when dropped.
pub struct Timeout {
    id: i32,
    _closure: Closure<dyn FnMut()>,
}

impl Timeout {
    /// Calls `f` once after `ms` milliseconds (rounded down; at least 0),
    /// unless the guard is dropped first.
    pub fn new(ms: f64, f: impl FnOnce() + 'static) -> Self {
        let closure = Closure::once(f);
        let id = set_timeout(closure.as_ref().unchecked_ref(), ms.max(0.0) as i32);
        Self {
            id,
            _closure: closure,
        }
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        clear_timeout(self.id);
    }
}
