//! The browser glue of the worker: a WebSocket to `/ws/worker`, a pump that
//! renders in short slices and yields, control messages from the page, and
//! stats posted back to it.
//!
//! Everything runs on the Web Worker's own event loop, so the page never
//! janks. The pump renders frames for at most [`SLICE_MS`] and then yields
//! through a `MessageChannel` (a `setTimeout(0)` chain would be clamped to
//! 4 ms a hop), so a `{contribute: false}` message from the page is handled
//! within one slice: the socket is closed and queued tasks are dropped, and
//! the server hands them to someone else.
//!
//! The pump keeps to the tab's CPU budget ([`crate::budget`]): after a
//! slice it rests as long as the duty cycle says (a `setTimeout`), so a
//! budget of 25% renders 8 ms and rests 24. The page sets the share with a
//! `{budget: 0.25}` message (lower while the battery discharges) and the
//! worker reports what it cost (`busyMs`, `loadPermille`) in its stats.
//!
//! The reconnecting socket, the callback guards and the re-entry-safe state
//! are `donut_browser`'s, shared with the viewer; callbacks hold only a
//! `Weak` reference, so nothing keeps a stopped agent alive. The stats the
//! page sees are a typed [`WorkerStats`].

use std::rc::Rc;

use donut_browser::callback::JsCallback;
use donut_browser::reconnect::{Close, State};
use donut_browser::shared::Shared;
use donut_browser::socket::{Client, Event, Socket};
use donut_browser::stats::{WorkerState, WorkerStats};
use donut_shared::backoff::write_endpoint_url;
use donut_shared::wire::DecodeError;
use js_sys::Reflect;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{DedicatedWorkerGlobalScope, MessageChannel, MessageEvent};

use crate::budget::DutyCycle;
use crate::task_loop::{Inbound, Refused, TaskLoop};

/// Longest stretch of rendering between two yields to the event loop.
pub const SLICE_MS: f64 = 8.0;
/// Shortest interval between two stats messages to the page.
const STATS_INTERVAL_MS: f64 = 250.0;

struct Agent {
    scope: DedicatedWorkerGlobalScope,
    tasks: TaskLoop,
    contributing: bool,
    socket: Socket,
    pump: MessageChannel,
    pump_scheduled: bool,
    last_stats_ms: f64,
    /// The CPU budget and what rendering cost.
    duty: DutyCycle,
    /// Runs the next slice after a rest (a `setTimeout` callback).
    on_rest: Option<Closure<dyn FnMut()>>,
    /// The pump's listener on `pump.port2`, removed with the agent.
    _on_pump: Option<JsCallback>,
}

/// A handle on the running worker agent, kept by the Web Worker's script.
#[wasm_bindgen]
pub struct WorkerAgent {
    inner: Rc<Shared<Agent>>,
    _on_control: JsCallback,
}

#[wasm_bindgen]
impl WorkerAgent {
    /// Starts the agent inside a dedicated Web Worker: it connects to
    /// `/ws/worker` on the server that served the worker script (when
    /// `contribute` is true) and listens for `{contribute: bool}` messages
    /// from the page.
    #[wasm_bindgen(constructor)]
    pub fn new(contribute: bool) -> Result<WorkerAgent, JsValue> {
        console_error_panic_hook::set_once();
        let scope: DedicatedWorkerGlobalScope = js_sys::global().dyn_into()?;
        let location = scope.location();
        let mut url = String::new();
        write_endpoint_url(
            &mut url,
            &location.protocol(),
            &location.host(),
            "/ws/worker",
        )
        .map_err(|_| "bad worker URL")?;
        let pump = MessageChannel::new()?;
        let port = pump.port2();
        let inner = Shared::new_cyclic(|me| Agent {
            scope: scope.clone(),
            tasks: TaskLoop::new(),
            contributing: false,
            socket: Socket::new("donut worker", url, me),
            pump,
            pump_scheduled: false,
            last_stats_ms: 0.0,
            duty: DutyCycle::new(1.0, now_ms(&scope)),
            on_rest: None,
            _on_pump: None,
        });
        let weak = Rc::downgrade(&inner);
        let on_rest = Closure::<dyn FnMut()>::new(move || {
            if let Some(agent) = weak.upgrade() {
                agent.update(Agent::run_slice);
            }
        });
        inner.update(move |a| a.on_rest = Some(on_rest));
        let weak = Rc::downgrade(&inner);
        let on_pump = JsCallback::new(&port, "message", move |_| {
            if let Some(agent) = weak.upgrade() {
                agent.update(Agent::run_slice);
            }
        })?;
        // A port's `message` listener only hears once the port is started.
        port.start();
        inner.update(move |a| a._on_pump = Some(on_pump));
        // The agent takes over the page's messages from the bootstrap.
        scope.set_onmessage(None);
        let weak = Rc::downgrade(&inner);
        let on_control = JsCallback::new(&scope, "message", move |e| {
            let (Some(agent), Ok(e)) = (weak.upgrade(), e.dyn_into::<MessageEvent>()) else {
                return;
            };
            if let Some(share) = Reflect::get(&e.data(), &JsValue::from_str("budget"))
                .ok()
                .and_then(|v| v.as_f64())
            {
                agent.update(move |a| a.set_budget(share));
            }
            if let Ok(v) = Reflect::get(&e.data(), &JsValue::from_str("contribute"))
                && !v.is_undefined()
            {
                let on = v.is_truthy();
                agent.update(move |a| a.set_contributing(on));
            }
        })?;
        inner.update(move |a| a.set_contributing(contribute));
        Ok(WorkerAgent {
            inner,
            _on_control: on_control,
        })
    }

    /// Turns contributing on (connect) or off (close and drop queued work).
    #[wasm_bindgen(js_name = setContributing)]
    pub fn set_contributing(&self, on: bool) {
        self.inner.update(move |a| a.set_contributing(on));
    }

    /// Caps rendering to `share` of one core (0.01..=1; a duty cycle).
    #[wasm_bindgen(js_name = setBudget)]
    pub fn set_budget(&self, share: f64) {
        self.inner.update(move |a| a.set_budget(share));
    }
}

/// `performance.now()` in the worker, in ms (0 if it is unavailable).
fn now_ms(scope: &DedicatedWorkerGlobalScope) -> f64 {
    scope.performance().map_or(0.0, |p| p.now())
}

impl Client for Agent {
    fn socket(&mut self) -> &mut Socket {
        &mut self.socket
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connecting => self.post_stats(true),
            Event::Open => {
                let hello = self.tasks.hello();
                self.socket.send(&hello);
                self.post_stats(true);
            }
            Event::Message(bytes) => self.on_message(&bytes),
            Event::Closed(_) => {
                self.tasks.disconnect();
                self.post_stats(true);
            }
        }
    }
}

impl Agent {
    fn set_contributing(&mut self, on: bool) {
        if on == self.contributing {
            return;
        }
        self.contributing = on;
        if on {
            self.socket.start();
        } else {
            self.socket.close(Close::Stop("stopped contributing"));
            self.tasks.disconnect();
        }
        self.post_stats(true);
    }

    fn set_budget(&mut self, share: f64) {
        self.duty.set_share(share);
        self.post_stats(true);
    }

    fn on_message(&mut self, bytes: &[u8]) {
        match self.tasks.on_message(bytes) {
            Ok(Inbound::Task(_)) => {
                self.socket.healthy();
                self.schedule_pump();
                self.post_stats(true);
            }
            Ok(Inbound::Telemetry(_)) => {
                self.socket.healthy();
                self.post_stats(false);
            }
            // This page's code is older (or newer) than the server's.
            Err(Refused::Decode(DecodeError::Version { got })) => {
                self.socket.close(Close::Outdated { server: got });
                self.tasks.disconnect();
                self.post_stats(true);
            }
            Err(e) => {
                self.socket.close(Close::Protocol(&e.to_string()));
                self.tasks.disconnect();
                self.post_stats(true);
            }
        }
    }

    /// Runs a slice soon: at once, or when the budget's rest is over.
    fn schedule_pump(&mut self) {
        if self.pump_scheduled {
            return;
        }
        let wait = self.duty.wait_ms(now_ms(&self.scope));
        if wait >= 1.0 {
            self.schedule_after(wait);
        } else {
            self.post_pump();
        }
    }

    /// Runs a slice at once, after the events already queued.
    fn post_pump(&mut self) {
        self.pump_scheduled = true;
        let _ = self.pump.port1().post_message(&JsValue::NULL);
    }

    /// Renders for up to [`SLICE_MS`], sends finished results, and yields:
    /// at once, or after the rest the budget asks for.
    fn run_slice(&mut self) {
        self.pump_scheduled = false;
        if !self.contributing || self.socket.state() != State::Open {
            return;
        }
        let started = now_ms(&self.scope);
        let mut now = started;
        while self.tasks.has_work() {
            if let Some(reply) = self.tasks.step() {
                self.socket.send(&reply);
                // The page sees `pending` change as it happens.
                self.post_stats(true);
            }
            now = now_ms(&self.scope);
            if now - started >= SLICE_MS {
                break;
            }
        }
        self.duty.after_slice(now - started, now);
        if self.tasks.has_work() {
            self.schedule_pump();
        }
        self.post_stats(false);
    }

    /// Runs the next slice in `rest_ms` (a `setTimeout`).
    fn schedule_after(&mut self, rest_ms: f64) {
        let Some(cb) = &self.on_rest else {
            return self.post_pump();
        };
        let scheduled = self
            .scope
            .set_timeout_with_callback_and_timeout_and_arguments_0(
                cb.as_ref().unchecked_ref(),
                rest_ms.ceil().min(f64::from(i32::MAX)) as i32,
            )
            .is_ok();
        if scheduled {
            self.pump_scheduled = true;
        } else {
            self.post_pump();
        }
    }

    /// Where the worker is, for the page.
    fn state(&self) -> WorkerState {
        match self.socket.state() {
            State::Off => WorkerState::Stopped,
            State::Connecting => WorkerState::Connecting,
            State::Open => WorkerState::Connected,
            State::Waiting { .. } => WorkerState::Reconnecting,
            State::Outdated { .. } => WorkerState::Outdated,
        }
    }

    /// Tells the page this tab's counters: at once when a task arrives or
    /// is sent (`now`), otherwise at most every [`STATS_INTERVAL_MS`].
    fn post_stats(&mut self, now: bool) {
        let t = js_sys::Date::now();
        if !now && t - self.last_stats_ms < STATS_INTERVAL_MS {
            return;
        }
        self.last_stats_ms = t;
        let counters = self.tasks.stats();
        let stats = WorkerStats {
            state: self.state(),
            contributing: self.contributing,
            rendered: counters.frames_rendered,
            results: counters.results_sent,
            contributed: counters.contributed,
            pending: self.tasks.pending_tasks() as u64,
            busy_ms: self.duty.busy_total_ms() as u64,
            budget_permille: (self.duty.share() * 1000.0).round() as u64,
            load_permille: (self.duty.load(now_ms(&self.scope)) * 1000.0).round() as u64,
        };
        let _ = self.scope.post_message(&stats.to_js());
    }
}
