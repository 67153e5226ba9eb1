//! The reconnecting WebSocket of a browser client: the browser half of
//! [`crate::reconnect`].
//!
//! A [`Socket`] lives inside its owner's state (a [`Shared`]), opens
//! binary WebSockets to one URL, and hands the owner typed [`Event`]s
//! through the [`Client`] trait; it reconnects with backoff on its own, and
//! the owner only says what it wants ([`Socket::start`], [`Socket::close`])
//! and what a message meant ([`Socket::healthy`]). Its listeners are
//! [`JsCallback`]s and its retry timer a [`Timeout`], so replacing or
//! dropping a connection unhooks everything; every listener still carries
//! the generation of its socket, so an event already queued for an old
//! socket is ignored. Callbacks reach the owner through a `Weak` handle and
//! [`Shared::update`], so a callback can neither keep a dropped owner alive
//! nor panic on re-entry.

use std::rc::{Rc, Weak};

use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::callback::{JsCallback, Timeout};
use crate::reconnect::{CLOSE_NORMAL, Close, End, Reconnect, State};
use crate::shared::Shared;

/// What the socket tells its owner.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A connection attempt began (a retry fell due).
    Connecting,
    /// The socket opened; [`Socket::send`] works now.
    Open,
    /// A binary message arrived (the owner decodes it with `shared::wire`).
    Message(Vec<u8>),
    /// The connection ended without the owner closing it; the socket has
    /// already scheduled a retry, unless it is [`End::RefusedVersion`].
    Closed(End),
}

/// The owner of a [`Socket`]: where the socket lives and who hears it.
pub trait Client: 'static {
    /// The socket inside the owner's state.
    fn socket(&mut self) -> &mut Socket;
    /// Handles one event (the socket's state is already updated).
    fn on_event(&mut self, event: Event);
}

/// What a listener or the timer saw, before the socket interprets it.
enum Raw {
    Open(u32),
    Message(u32, JsValue),
    Close {
        generation: u32,
        code: u16,
        reason: String,
    },
    RetryDue,
}

/// An open (or opening) WebSocket and its listeners.
struct Conn {
    ws: WebSocket,
    listeners: Vec<JsCallback>,
}

impl Conn {
    /// Unhooks the listeners and closes with `code` and `reason`.
    fn close(mut self, code: u16, reason: &str) {
        self.listeners.clear();
        // A reason over 123 bytes or a reserved code makes `close` throw;
        // never leave the socket open because of that.
        if self.ws.close_with_code_and_reason(code, reason).is_err() {
            let _ = self.ws.close();
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.listeners.clear();
        // Nothing listens any more: make sure it goes (a no-op if it is
        // already closing or closed).
        let _ = self.ws.close();
    }
}

/// A reconnecting binary WebSocket to one URL.
pub struct Socket {
    /// Names the client in console warnings ("donut viewer").
    label: &'static str,
    url: String,
    reconnect: Reconnect,
    conn: Option<Conn>,
    retry: Option<Timeout>,
    dispatch: Rc<dyn Fn(Raw)>,
}

impl Socket {
    /// A socket to `url` (`ws:` or `wss:`) for the client behind `owner`;
    /// it is [`State::Off`] until [`Socket::start`]. `label` names the
    /// client in console warnings.
    pub fn new<C: Client>(label: &'static str, url: String, owner: &Weak<Shared<C>>) -> Self {
        let owner = owner.clone();
        let dispatch: Rc<dyn Fn(Raw)> = Rc::new(move |raw: Raw| {
            let Some(shared) = owner.upgrade() else {
                return;
            };
            shared.update(move |client: &mut C| {
                if let Some(event) = client.socket().handle(raw) {
                    client.on_event(event);
                }
            });
        });
        Self {
            label,
            url,
            reconnect: Reconnect::new(),
            conn: None,
            retry: None,
            dispatch,
        }
    }

    /// Where the connection is.
    pub fn state(&self) -> State {
        self.reconnect.state()
    }

    /// Milliseconds until the next attempt, while waiting to retry.
    pub fn retry_in_ms(&self) -> Option<f64> {
        self.reconnect.retry_in_ms(js_sys::Date::now())
    }

    /// Connects, if the socket was [`State::Off`] (with a fresh backoff);
    /// otherwise does nothing.
    pub fn start(&mut self) {
        if self.reconnect.start() {
            let _ = self.connect();
        }
    }

    /// Closes the connection for the owner's reason (see [`Close`]): stops,
    /// goes outdated, or retries after a protocol error. A stop of a socket
    /// that is already off does nothing.
    pub fn close(&mut self, why: Close<'_>) {
        if matches!(why, Close::Stop(_)) && self.reconnect.state() == State::Off {
            return;
        }
        if let Some(conn) = self.conn.take() {
            if why.code() != CLOSE_NORMAL {
                web_sys::console::warn_1(&JsValue::from_str(&format!(
                    "{}: closing the connection: {}",
                    self.label,
                    why.reason()
                )));
            }
            conn.close(why.code(), why.reason());
        }
        self.retry = None;
        if let Some(delay) = self
            .reconnect
            .close(why, js_sys::Date::now(), js_sys::Math::random())
        {
            self.arm_retry(delay);
        }
    }

    /// The server proved healthy (a valid message): the next failure
    /// retries after the base delay.
    pub fn healthy(&mut self) {
        self.reconnect.healthy();
    }

    /// Sends one binary message if the socket is open. Returns whether it
    /// was handed to the browser.
    pub fn send(&self, bytes: &[u8]) -> bool {
        match &self.conn {
            Some(conn) if self.reconnect.state() == State::Open => {
                conn.ws.send_with_u8_array(bytes).is_ok()
            }
            _ => false,
        }
    }

    /// Interprets what a listener or the timer saw.
    fn handle(&mut self, raw: Raw) -> Option<Event> {
        match raw {
            Raw::Open(generation) => self.reconnect.opened(generation).then_some(Event::Open),
            Raw::Message(generation, data) => {
                if !self.reconnect.is_current(generation) {
                    return None;
                }
                if let Ok(buf) = data.dyn_into::<ArrayBuffer>() {
                    return Some(Event::Message(Uint8Array::new(&buf).to_vec()));
                }
                self.close(Close::Protocol(
                    "text messages are not part of the protocol",
                ));
                Some(Event::Closed(End::Text))
            }
            Raw::Close {
                generation,
                code,
                reason,
            } => {
                let now = js_sys::Date::now();
                let (end, delay) = self.reconnect.closed(
                    generation,
                    code,
                    &reason,
                    now,
                    js_sys::Math::random(),
                )?;
                self.conn = None;
                if let Some(delay) = delay {
                    self.arm_retry(delay);
                }
                Some(Event::Closed(end))
            }
            Raw::RetryDue => {
                self.retry = None;
                if self.reconnect.retry_due() {
                    self.connect()
                } else {
                    None
                }
            }
        }
    }

    /// Opens a new socket, or schedules a retry if it cannot be created.
    fn connect(&mut self) -> Option<Event> {
        self.conn = None;
        let generation = self.reconnect.connecting();
        match self.open(generation) {
            Ok(conn) => {
                self.conn = Some(conn);
                Some(Event::Connecting)
            }
            Err(_) => {
                let delay = self
                    .reconnect
                    .retry(js_sys::Date::now(), js_sys::Math::random());
                if let Some(delay) = delay {
                    self.arm_retry(delay);
                }
                Some(Event::Closed(End::Unreachable))
            }
        }
    }

    fn open(&self, generation: u32) -> Result<Conn, JsValue> {
        let ws = WebSocket::new(&self.url)?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        // From here on a failure drops `conn`, which closes the socket.
        let mut conn = Conn {
            ws: ws.clone(),
            listeners: Vec::with_capacity(3),
        };
        let d = Rc::clone(&self.dispatch);
        conn.listeners.push(JsCallback::new(&ws, "open", move |_| {
            d(Raw::Open(generation));
        })?);
        let d = Rc::clone(&self.dispatch);
        conn.listeners
            .push(JsCallback::new(&ws, "message", move |e| {
                let data = e
                    .dyn_into::<MessageEvent>()
                    .map_or(JsValue::UNDEFINED, |m| m.data());
                d(Raw::Message(generation, data));
            })?);
        let d = Rc::clone(&self.dispatch);
        conn.listeners.push(JsCallback::new(&ws, "close", move |e| {
            let (code, reason) = e
                .dyn_into::<CloseEvent>()
                .map_or((1006, String::new()), |c| (c.code(), c.reason()));
            d(Raw::Close {
                generation,
                code,
                reason,
            });
        })?);
        Ok(conn)
    }

    fn arm_retry(&mut self, delay_ms: f64) {
        let d = Rc::clone(&self.dispatch);
        self.retry = Some(Timeout::new(delay_ms, move || d(Raw::RetryDue)));
    }
}
