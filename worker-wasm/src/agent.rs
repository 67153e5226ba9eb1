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
//! Callbacks hold only a `Weak` reference to the agent and the number of the
//! socket they belong to, so events of an old socket after a reconnect are
//! ignored and nothing keeps a stopped agent alive.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use donut_shared::backoff::{Backoff, write_endpoint_url};
use donut_shared::wire::DecodeError;
use js_sys::{ArrayBuffer, Object, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{
    BinaryType, CloseEvent, DedicatedWorkerGlobalScope, Event, MessageChannel, MessageEvent,
    WebSocket,
};

use crate::task_loop::{Inbound, Refused, TaskLoop};

/// Longest stretch of rendering between two yields to the event loop.
pub const SLICE_MS: f64 = 8.0;
/// Shortest interval between two stats messages to the page.
const STATS_INTERVAL_MS: f64 = 250.0;
/// Close code for a protocol violation by the server. Browsers only let a
/// page close with 1000 or 3000..=4999 (1002 would throw and leave the
/// socket open), so this is an application code.
const CLOSE_PROTOCOL_ERROR: u16 = 4002;
/// Close code for a normal close.
const CLOSE_NORMAL: u16 = 1000;

/// Where the connection is, as shown on the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Stopped,
    Connecting,
    Connected,
    Waiting,
    /// The server speaks another protocol version (it was upgraded while
    /// this page was open): no retries, the page must be reloaded.
    Outdated,
}

impl Link {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Outdated => "outdated: reload the page",
            Self::Waiting => "reconnecting",
        }
    }
}

type Handler<E> = Closure<dyn FnMut(E)>;

/// An open (or opening) socket and the callbacks that must live as long.
struct Socket {
    ws: WebSocket,
    _on_open: Handler<Event>,
    _on_message: Handler<MessageEvent>,
    _on_close: Handler<CloseEvent>,
}

impl Socket {
    fn close(&self, code: u16, reason: &str) {
        if code != 1000 {
            web_sys::console::warn_1(&JsValue::from_str(&format!(
                "donut worker: closing the connection: {reason}"
            )));
        }
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        // A reason over 123 bytes or a reserved code makes `close` throw;
        // never leave the socket open because of that.
        if self.ws.close_with_code_and_reason(code, reason).is_err() {
            let _ = self.ws.close();
        }
    }
}

struct Agent {
    scope: DedicatedWorkerGlobalScope,
    url: String,
    tasks: TaskLoop,
    link: Link,
    contributing: bool,
    backoff: Backoff,
    socket: Option<Socket>,
    /// Bumped for every socket, so stale callbacks can tell.
    generation: u32,
    reconnect_timer: Option<i32>,
    pump: MessageChannel,
    pump_scheduled: bool,
    last_stats_ms: f64,
    me: Weak<RefCell<Agent>>,
    _on_pump: Option<Handler<MessageEvent>>,
    _on_reconnect: Option<Closure<dyn FnMut()>>,
}

/// A handle on the running worker agent, kept by the Web Worker's script.
#[wasm_bindgen]
pub struct WorkerAgent {
    inner: Rc<RefCell<Agent>>,
    _on_control: Handler<MessageEvent>,
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
        let inner = Rc::new_cyclic(|me| {
            RefCell::new(Agent {
                scope: scope.clone(),
                url,
                tasks: TaskLoop::new(),
                link: Link::Stopped,
                contributing: false,
                backoff: Backoff::new(),
                socket: None,
                generation: 0,
                reconnect_timer: None,
                pump,
                pump_scheduled: false,
                last_stats_ms: 0.0,
                me: me.clone(),
                _on_pump: None,
                _on_reconnect: None,
            })
        });
        {
            let weak = Rc::downgrade(&inner);
            let on_pump: Handler<MessageEvent> = Closure::new(move |_: MessageEvent| {
                if let Some(agent) = weak.upgrade() {
                    agent.borrow_mut().run_slice();
                }
            });
            let mut agent = inner.borrow_mut();
            agent
                .pump
                .port2()
                .set_onmessage(Some(on_pump.as_ref().unchecked_ref()));
            agent._on_pump = Some(on_pump);
            let weak = Rc::downgrade(&inner);
            agent._on_reconnect = Some(Closure::new(move || {
                if let Some(agent) = weak.upgrade() {
                    let mut agent = agent.borrow_mut();
                    agent.reconnect_timer = None;
                    agent.connect();
                }
            }));
        }
        let weak = Rc::downgrade(&inner);
        let on_control: Handler<MessageEvent> = Closure::new(move |e: MessageEvent| {
            let Some(agent) = weak.upgrade() else { return };
            let data = e.data();
            if let Ok(v) = Reflect::get(&data, &JsValue::from_str("contribute")) {
                agent.borrow_mut().set_contributing(v.is_truthy());
            }
        });
        scope.set_onmessage(Some(on_control.as_ref().unchecked_ref()));
        inner.borrow_mut().set_contributing(contribute);
        Ok(WorkerAgent {
            inner,
            _on_control: on_control,
        })
    }

    /// Turns contributing on (connect) or off (close and drop queued work).
    #[wasm_bindgen(js_name = setContributing)]
    pub fn set_contributing(&self, on: bool) {
        self.inner.borrow_mut().set_contributing(on);
    }
}

impl Agent {
    fn set_contributing(&mut self, on: bool) {
        if on == self.contributing {
            return;
        }
        self.contributing = on;
        if on {
            self.backoff.reset();
            self.connect();
        } else {
            if let Some(id) = self.reconnect_timer.take() {
                self.scope.clear_timeout_with_handle(id);
            }
            self.drop_socket(CLOSE_NORMAL, "stopped contributing");
            self.link = Link::Stopped;
        }
        self.post_stats(true);
    }

    fn connect(&mut self) {
        if !self.contributing || self.socket.is_some() {
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let ws = match WebSocket::new(&self.url) {
            Ok(ws) => ws,
            Err(_) => return self.schedule_reconnect(),
        };
        ws.set_binary_type(BinaryType::Arraybuffer);
        let me = self.me.clone();
        let on_open: Handler<Event> = Closure::new(move |_: Event| {
            with_current(&me, generation, |a| a.on_open());
        });
        let me = self.me.clone();
        let on_message: Handler<MessageEvent> = Closure::new(move |e: MessageEvent| {
            with_current(&me, generation, |a| a.on_message(&e));
        });
        let me = self.me.clone();
        let on_close: Handler<CloseEvent> = Closure::new(move |e: CloseEvent| {
            with_current(&me, generation, |a| a.on_close(&e));
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        self.socket = Some(Socket {
            ws,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        });
        self.link = Link::Connecting;
        self.post_stats(true);
    }

    fn on_open(&mut self) {
        let hello = self.tasks.hello();
        if let Some(s) = &self.socket {
            let _ = s.ws.send_with_u8_array(&hello);
        }
        self.link = Link::Connected;
        self.post_stats(true);
    }

    fn on_message(&mut self, e: &MessageEvent) {
        let Ok(buf) = e.data().dyn_into::<ArrayBuffer>() else {
            return self.drop_and_retry(
                CLOSE_PROTOCOL_ERROR,
                "text messages are not part of the protocol",
            );
        };
        let bytes = Uint8Array::new(&buf).to_vec();
        match self.tasks.on_message(&bytes) {
            Ok(Inbound::Task(_)) => {
                self.backoff.reset();
                self.schedule_pump();
                self.post_stats(true);
            }
            Ok(Inbound::Telemetry(_)) => {
                self.backoff.reset();
                self.post_stats(false);
            }
            Err(Refused::Decode(DecodeError::Version { .. })) => self.outdated(),
            Err(e) => self.drop_and_retry(CLOSE_PROTOCOL_ERROR, &e.to_string()),
        }
    }

    fn on_close(&mut self, e: &CloseEvent) {
        self.socket = None;
        self.tasks.disconnect();
        // The server refuses our protocol version: retrying would loop.
        if donut_shared::wire::refuses_version(e.code(), &e.reason()) {
            return self.outdated();
        }
        self.schedule_reconnect();
    }

    /// Stops for good: this page's code is older (or newer) than the server's.
    fn outdated(&mut self) {
        self.drop_socket(CLOSE_NORMAL, "page out of date");
        self.tasks.disconnect();
        self.link = Link::Outdated;
        self.post_stats(true);
    }

    /// Closes the socket on our side and tries again later.
    fn drop_and_retry(&mut self, code: u16, reason: &str) {
        self.drop_socket(code, reason);
        self.schedule_reconnect();
    }

    fn drop_socket(&mut self, code: u16, reason: &str) {
        if let Some(s) = self.socket.take() {
            s.close(code, reason);
        }
        self.tasks.disconnect();
    }

    fn schedule_reconnect(&mut self) {
        if !self.contributing || self.reconnect_timer.is_some() || self.link == Link::Outdated {
            return;
        }
        let delay = self.backoff.next_delay_ms(js_sys::Math::random());
        if let Some(cb) = &self._on_reconnect {
            self.reconnect_timer = self
                .scope
                .set_timeout_with_callback_and_timeout_and_arguments_0(
                    cb.as_ref().unchecked_ref(),
                    delay as i32,
                )
                .ok();
        }
        self.link = Link::Waiting;
        self.post_stats(true);
    }

    fn schedule_pump(&mut self) {
        if !self.pump_scheduled {
            self.pump_scheduled = true;
            let _ = self.pump.port1().post_message(&JsValue::NULL);
        }
    }

    /// Renders for up to [`SLICE_MS`], sends finished results, and yields.
    fn run_slice(&mut self) {
        self.pump_scheduled = false;
        if !self.contributing || self.link != Link::Connected {
            return;
        }
        let started = js_sys::Date::now();
        while self.tasks.has_work() {
            if let Some(reply) = self.tasks.step() {
                if let Some(s) = &self.socket {
                    let _ = s.ws.send_with_u8_array(&reply);
                }
                // The page sees `pending` change as it happens.
                self.post_stats(true);
            }
            if js_sys::Date::now() - started >= SLICE_MS {
                break;
            }
        }
        if self.tasks.has_work() {
            self.schedule_pump();
        }
        self.post_stats(false);
    }

    /// Tells the page this tab's counters: at once when a task arrives or
    /// is sent (`now`), otherwise at most every [`STATS_INTERVAL_MS`].
    fn post_stats(&mut self, now: bool) {
        let t = js_sys::Date::now();
        if !now && t - self.last_stats_ms < STATS_INTERVAL_MS {
            return;
        }
        self.last_stats_ms = t;
        let stats = self.tasks.stats();
        let msg = Object::new();
        let set = |k: &str, v: JsValue| {
            let _ = Reflect::set(&msg, &JsValue::from_str(k), &v);
        };
        set("state", JsValue::from_str(self.link.as_str()));
        set("contributing", JsValue::from_bool(self.contributing));
        set("rendered", JsValue::from_f64(stats.frames_rendered as f64));
        set("results", JsValue::from_f64(stats.results_sent as f64));
        set("contributed", JsValue::from_f64(stats.contributed as f64));
        set(
            "pending",
            JsValue::from_f64(self.tasks.pending_tasks() as f64),
        );
        let _ = self.scope.post_message(&msg);
    }
}

/// Runs `f` on the agent if it is alive and `generation` is its socket.
fn with_current(me: &Weak<RefCell<Agent>>, generation: u32, f: impl FnOnce(&mut Agent)) {
    if let Some(agent) = me.upgrade() {
        let mut agent = agent.borrow_mut();
        if agent.generation == generation && agent.socket.is_some() {
            f(&mut agent);
        }
    }
}
