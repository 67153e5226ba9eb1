//! The viewer on the page: a WebSocket to `/ws/viewer`, the
//! `requestAnimationFrame` loop that draws, and the handle the page (and
//! the browser tests) talk to.
//!
//! The socket only feeds [`Player`]; the animation loop asks the player
//! which frame is due and draws it when it changes. When the socket closes
//! the player keeps playing what it has buffered while the viewer reconnects
//! with backoff, and the panel shows the connection state; while it is not
//! live the panel's figures are marked stale. Callbacks hold a `Weak`
//! reference and their socket's generation number, so a late event from an
//! old socket is ignored.
//!
//! A page entering the back/forward cache or being frozen calls
//! [`DonutViewer::suspend`] (the shim forwards `pagehide` and `freeze`): the
//! socket is closed normally and nothing reconnects until
//! [`DonutViewer::resume`] (`pageshow`, `resume`). The server then does not
//! keep sending batches to a tab that cannot play them, and the clock lands
//! the returning tab on the live frame.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use donut_shared::FRAME_LEN;
use donut_shared::backoff::{Backoff, write_endpoint_url};
use donut_shared::wire::DecodeError;
use js_sys::{ArrayBuffer, Object, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, Event, HtmlCanvasElement, MessageEvent, WebSocket, Window};

use crate::clock::{History, RateMeter};
use crate::panel::{Panel, RunningTotal, buffer_text, group};
use crate::player::{Player, Received};
use crate::screen::{Chart, Layout, Screen};

/// How often the panel's playback numbers are refreshed.
const PANEL_INTERVAL_MS: f64 = 500.0;
/// Close code for a normal close (the page is hidden).
const CLOSE_NORMAL: u16 = 1000;
/// Close code for a protocol violation by the server. Browsers only let a
/// page close with 1000 or 3000..=4999 (1002 would throw and leave the
/// socket open), so this is an application code.
const CLOSE_PROTOCOL_ERROR: u16 = 4002;

type Handler<E> = Closure<dyn FnMut(E)>;

/// Where the viewer's connection is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Link {
    Connecting,
    Live,
    Waiting {
        until_ms: f64,
    },
    /// Hidden in the back/forward cache or frozen: no socket, no retries.
    Suspended,
    /// The server speaks protocol version `server` (it was upgraded while
    /// this page was open): no retries, the page must be reloaded.
    Outdated {
        server: u8,
    },
}

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
                "donut viewer: closing the connection: {reason}"
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

/// Start-up milestones on this page's `performance.now()` clock (0 is the
/// navigation start), for the start-up benchmark (`server/benches/startup.rs`).
#[derive(Clone, Copy, Debug, Default)]
struct Milestones {
    /// The viewer was constructed (the wasm is fetched and instantiated).
    created: f64,
    /// The first socket opened.
    socket_open: Option<f64>,
    /// The first `Frames` message arrived.
    first_frames: Option<f64>,
    /// The first display refresh (`requestAnimationFrame` callback).
    first_refresh: Option<f64>,
    /// The refresh that drew the first frame started (its callback ran).
    paint_refresh: Option<f64>,
    /// The first frame was drawn on the canvas.
    first_paint: Option<f64>,
}

/// What this tab's own Web Worker last reported.
#[derive(Default)]
struct Contribution {
    on: bool,
    state: String,
    /// Across workers: the page starts a fresh one after a freeze.
    rendered: RunningTotal,
    contributed: RunningTotal,
}

struct Inner {
    window: Window,
    url: String,
    player: Player,
    screen: Screen,
    chart: Option<Chart>,
    panel: Panel,
    history: History,
    shown_meter: RateMeter,
    text: [u8; FRAME_LEN],
    text_frame: Option<u64>,
    paused: bool,
    link: Link,
    socket: Option<Socket>,
    generation: u32,
    backoff: Backoff,
    reconnect_timer: Option<i32>,
    contribution: Contribution,
    last_panel_ms: f64,
    milestones: Milestones,
    /// The last `Frames` message as received, kept (not copied: the buffer
    /// is moved here) for [`DonutViewer::bench_decode`].
    last_frames: Vec<u8>,
    me: Weak<RefCell<Inner>>,
    on_reconnect: Option<Closure<dyn FnMut()>>,
    on_frame: Option<Handler<f64>>,
}

/// The running viewer. The page keeps it as `window.donutViewer`.
#[wasm_bindgen]
pub struct DonutViewer {
    inner: Rc<RefCell<Inner>>,
}

#[wasm_bindgen]
impl DonutViewer {
    /// Starts playing on `canvas`, filling the `[data-stat]` panel elements
    /// and drawing the fleet's rate on `chart` (optional). Connects to
    /// `/ws/viewer` on the server that served the page.
    #[wasm_bindgen(constructor)]
    pub fn new(
        canvas: HtmlCanvasElement,
        chart: Option<HtmlCanvasElement>,
    ) -> Result<DonutViewer, JsValue> {
        console_error_panic_hook::set_once();
        let window = web_sys::window().ok_or("no window")?;
        let document = window.document().ok_or("no document")?;
        let location = window.location();
        let mut url = String::new();
        write_endpoint_url(
            &mut url,
            &location.protocol()?,
            &location.host()?,
            "/ws/viewer",
        )
        .map_err(|_| "bad viewer URL")?;
        let screen = Screen::new(canvas)?;
        let chart = chart.map(Chart::new).transpose()?;
        let created = window.performance().map_or(0.0, |p| p.now());
        let inner = Rc::new_cyclic(|me| {
            RefCell::new(Inner {
                window,
                url,
                player: Player::new(),
                screen,
                chart,
                panel: Panel::find(&document),
                history: History::new(),
                shown_meter: RateMeter::new(),
                text: [b' '; FRAME_LEN],
                text_frame: None,
                paused: false,
                link: Link::Connecting,
                socket: None,
                generation: 0,
                backoff: Backoff::new(),
                reconnect_timer: None,
                contribution: Contribution::default(),
                last_panel_ms: f64::NEG_INFINITY,
                milestones: Milestones {
                    created,
                    ..Milestones::default()
                },
                last_frames: Vec::new(),
                me: me.clone(),
                on_reconnect: None,
                on_frame: None,
            })
        });
        {
            let mut v = inner.borrow_mut();
            let weak = Rc::downgrade(&inner);
            v.on_reconnect = Some(Closure::new(move || {
                if let Some(v) = weak.upgrade() {
                    let mut v = v.borrow_mut();
                    v.reconnect_timer = None;
                    v.connect();
                }
            }));
            let weak = Rc::downgrade(&inner);
            v.on_frame = Some(Closure::new(move |t: f64| {
                if let Some(v) = weak.upgrade() {
                    v.borrow_mut().animate(t);
                }
            }));
            v.connect();
            v.request_frame();
        }
        Ok(DonutViewer { inner })
    }

    /// The absolute frame number on screen, if any.
    #[wasm_bindgen(js_name = currentFrame)]
    pub fn current_frame(&self) -> Option<f64> {
        self.inner.borrow().text_frame.map(|f| f as f64)
    }

    /// The text of the frame on screen (80 × 22 characters, rows ending in
    /// a newline), if any.
    #[wasm_bindgen(js_name = currentText)]
    pub fn current_text(&self) -> Option<String> {
        let v = self.inner.borrow();
        v.text_frame?;
        Some(String::from_utf8_lossy(&v.text).into_owned())
    }

    /// Distinct frames drawn over the last second.
    #[wasm_bindgen(js_name = playbackFps)]
    pub fn playback_fps(&self) -> f64 {
        let mut v = self.inner.borrow_mut();
        let now = v.now();
        v.shown_meter.per_second(now) as f64
    }

    /// `"connecting"`, `"live"`, `"reconnecting"` or `"suspended"`.
    #[wasm_bindgen(js_name = connectionState)]
    pub fn connection_state(&self) -> String {
        self.inner.borrow().link_name().to_owned()
    }

    /// Freezes (or resumes) the picture; frames keep being received.
    #[wasm_bindgen(js_name = setPaused)]
    pub fn set_paused(&self, paused: bool) {
        self.inner.borrow_mut().paused = paused;
    }

    /// Where the glyph grid is on the canvas, in CSS pixels relative to the
    /// canvas element: `{x, y, cellWidth, cellHeight, cols, rows}`.
    pub fn layout(&self) -> JsValue {
        let l: Layout = self.inner.borrow().screen.layout();
        let dpr = if l.dpr > 0.0 { l.dpr } else { 1.0 };
        object(&[
            ("x", l.origin_x / dpr),
            ("y", l.origin_y / dpr),
            ("cellWidth", l.cell_w / dpr),
            ("cellHeight", l.cell_h / dpr),
            ("fontPx", l.font_px / dpr),
            ("cols", crate::screen::COLS as f64),
            ("rows", crate::screen::ROWS as f64),
            ("dpr", dpr),
        ])
    }

    /// Player counters: `{framesReceived, framesDropped, batches, misses,
    /// framesShown, gaps, head, workers, viewers}`.
    pub fn stats(&self) -> JsValue {
        let v = self.inner.borrow();
        let s = v.player.stats();
        let t = v.player.telemetry().unwrap_or_default();
        object(&[
            ("framesReceived", s.frames_received as f64),
            ("framesDropped", s.frames_dropped as f64),
            ("batches", s.batches as f64),
            ("misses", s.misses as f64),
            ("framesShown", s.frames_shown as f64),
            ("gaps", s.gaps as f64),
            ("head", t.head as f64),
            ("workers", f64::from(t.workers)),
            ("viewers", f64::from(t.viewers)),
        ])
    }

    /// `performance.now()` when the first frame was drawn on the canvas (0
    /// is the navigation start), if one was.
    #[wasm_bindgen(js_name = firstPaintMs)]
    pub fn first_paint_ms(&self) -> Option<f64> {
        self.inner.borrow().milestones.first_paint
    }

    /// Start-up milestones in `performance.now()` milliseconds: `{created,
    /// socketOpen, firstFrames, firstRefresh, paintRefresh, firstPaint}`
    /// (the viewer constructed, i.e. the wasm instantiated; the first
    /// socket open; the first `Frames` message; the first display refresh;
    /// the refresh that drew the first frame began; that frame drawn).
    /// Missing ones are `NaN`.
    pub fn milestones(&self) -> JsValue {
        let m = self.inner.borrow().milestones;
        let or_nan = |t: Option<f64>| t.unwrap_or(f64::NAN);
        object(&[
            ("created", m.created),
            ("socketOpen", or_nan(m.socket_open)),
            ("firstFrames", or_nan(m.first_frames)),
            ("firstRefresh", or_nan(m.first_refresh)),
            ("paintRefresh", or_nan(m.paint_refresh)),
            ("firstPaint", or_nan(m.first_paint)),
        ])
    }

    /// Benchmark: decodes the last `Frames` message received, exactly as
    /// the player does (message header, then the batch's codec into packed
    /// frames), `reps` times. Returns `{msPerDecode, frames, bytes, codec}`,
    /// or `null` if no batch has arrived yet or it no longer decodes.
    #[wasm_bindgen(js_name = benchDecode)]
    pub fn bench_decode(&self, reps: u32) -> JsValue {
        let v = self.inner.borrow();
        let bytes = v.last_frames.as_slice();
        let Ok(donut_shared::wire::ToViewer::Frames(f)) =
            donut_shared::wire::ToViewer::decode(bytes)
        else {
            return JsValue::NULL;
        };
        let (frames, codec) = (f.count, f.codec as u8);
        let reps = reps.max(1);
        let mut sink = 0u8;
        let start = v.now();
        for _ in 0..reps {
            let Ok(donut_shared::wire::ToViewer::Frames(f)) =
                donut_shared::wire::ToViewer::decode(bytes)
            else {
                return JsValue::NULL;
            };
            let decoded = f.decode_frames(|n, packed| {
                sink ^= packed[0] ^ (n as u8);
            });
            if decoded.is_err() {
                return JsValue::NULL;
            }
        }
        let elapsed = v.now() - start;
        // Keep the work observable so it cannot be optimised away.
        std::hint::black_box(sink);
        object(&[
            ("msPerDecode", elapsed / f64::from(reps)),
            ("frames", f64::from(frames)),
            ("bytes", bytes.len() as f64),
            ("codec", f64::from(codec)),
            ("reps", f64::from(reps)),
        ])
    }

    /// The page is going into the back/forward cache or being frozen:
    /// closes the socket normally and stops reconnecting until
    /// [`Self::resume`].
    pub fn suspend(&self) {
        self.inner.borrow_mut().suspend();
    }

    /// The page is back (`pageshow`, `resume`): reconnects at once if it
    /// was suspended; otherwise does nothing.
    pub fn resume(&self) {
        self.inner.borrow_mut().resume();
    }

    /// Whether this tab contributes (the page's switch), for the panel.
    #[wasm_bindgen(js_name = setContributing)]
    pub fn set_contributing(&self, on: bool) {
        let mut v = self.inner.borrow_mut();
        v.contribution.on = on;
        v.update_contribution();
    }

    /// A stats message from this tab's Web Worker (`{state, rendered,
    /// contributed}`), for the panel.
    #[wasm_bindgen(js_name = workerStats)]
    pub fn worker_stats(&self, stats: &JsValue) {
        let get = |k: &str| Reflect::get(stats, &JsValue::from_str(k)).ok();
        let mut v = self.inner.borrow_mut();
        if let Some(s) = get("state").and_then(|s| s.as_string()) {
            v.contribution.state = s;
        }
        if let Some(n) = get("rendered").and_then(|n| n.as_f64()) {
            v.contribution.rendered.update(n as u64);
        }
        if let Some(n) = get("contributed").and_then(|n| n.as_f64()) {
            v.contribution.contributed.update(n as u64);
        }
        v.update_contribution();
    }
}

/// A plain JS object of numbers.
fn object(fields: &[(&str, f64)]) -> JsValue {
    let o = Object::new();
    for (k, v) in fields {
        let _ = Reflect::set(&o, &JsValue::from_str(k), &JsValue::from_f64(*v));
    }
    o.into()
}

impl Inner {
    fn now(&self) -> f64 {
        self.window.performance().map_or(0.0, |p| p.now())
    }

    fn link_name(&self) -> &'static str {
        match self.link {
            Link::Connecting => "connecting",
            Link::Live => "live",
            Link::Waiting { .. } => "reconnecting",
            Link::Suspended => "suspended",
            Link::Outdated { .. } => "outdated",
        }
    }

    fn suspend(&mut self) {
        if self.link == Link::Suspended {
            return;
        }
        if let Some(id) = self.reconnect_timer.take() {
            self.window.clear_timeout_with_handle(id);
        }
        if let Some(s) = self.socket.take() {
            s.close(CLOSE_NORMAL, "page hidden");
        }
        self.link = Link::Suspended;
        self.show_link();
    }

    fn resume(&mut self) {
        if self.link != Link::Suspended {
            return;
        }
        self.backoff.reset();
        self.link = Link::Connecting;
        self.connect();
        self.show_link();
    }

    /// Shows the connection state now, and marks the fleet's figures stale
    /// unless they are live.
    fn show_link(&mut self) {
        let now = self.now();
        self.update_playback_panel(now);
    }

    fn request_frame(&self) {
        if let Some(cb) = &self.on_frame {
            let _ = self
                .window
                .request_animation_frame(cb.as_ref().unchecked_ref());
        }
    }

    /// One display refresh: resize if needed, draw the due frame if new.
    fn animate(&mut self, now: f64) {
        self.request_frame();
        let started = self.now();
        self.milestones.first_refresh.get_or_insert(started);
        let resized = self.screen.fit(self.window.device_pixel_ratio());
        if !self.paused
            && let Some(frame) = self.player.tick(now)
            && self.player.frame_text(frame, &mut self.text)
        {
            self.text_frame = Some(frame);
            self.shown_meter.record(now);
            self.screen.draw(&self.text);
            if self.milestones.first_paint.is_none() {
                self.milestones.paint_refresh = Some(started);
                self.milestones.first_paint = Some(self.now());
            }
            let _ = self
                .screen
                .canvas()
                .set_attribute("data-frame", &frame.to_string());
        } else if resized && self.text_frame.is_some() {
            self.screen.draw(&self.text);
        }
        if now - self.last_panel_ms >= PANEL_INTERVAL_MS {
            self.last_panel_ms = now;
            self.update_playback_panel(now);
        }
    }

    fn update_playback_panel(&mut self, now: f64) {
        let fps = self.shown_meter.per_second(now);
        self.panel.set("playback", &format!("{fps} fps"));
        let ahead = self.player.buffered_ahead(now);
        let state = match self.link {
            Link::Waiting { until_ms } => {
                format!(
                    "reconnecting in {:.1} s",
                    ((until_ms - now) / 1000.0).max(0.0)
                )
            }
            Link::Connecting => "connecting…".to_owned(),
            Link::Live => format!("live · {ahead} frames buffered here"),
            Link::Suspended => "paused while the page is hidden".to_owned(),
            Link::Outdated { server } => format!(
                "this page is out of date (the server speaks protocol {server}, \
                 this page {}): reload the page",
                donut_shared::wire::PROTOCOL_VERSION
            ),
        };
        self.panel.set("connection", &state);
        self.panel
            .set_attr("connection", "data-state", self.link_name());
        // Figures from before a disconnect are stale; before the first
        // telemetry there are none.
        let stale = self.link != Link::Live && self.player.telemetry().is_some();
        self.panel.set_stale(stale);
    }

    fn update_contribution(&self) {
        let c = &self.contribution;
        let text = match (c.on, c.state.as_str()) {
            (false, _) => "off (watching only)".to_owned(),
            (true, "connected") => format!(
                "{} frames ({} rendered)",
                group(c.contributed.total()),
                group(c.rendered.total())
            ),
            (true, "") => "starting…".to_owned(),
            (true, state) => format!("{state} · {} frames", group(c.contributed.total())),
        };
        self.panel.set("mine", &text);
    }

    fn on_telemetry(&mut self, t: &donut_shared::wire::Telemetry) {
        self.history.push(t.fleet_fps);
        let p = &self.panel;
        p.set("workers", &group(u64::from(t.workers)));
        p.set("viewers", &group(u64::from(t.viewers)));
        p.set("fleet-fps", &group(u64::from(t.fleet_fps)));
        p.set("buffer", &buffer_text(t.buffered_frames, t.fps));
        p.set("verified", &group(t.batches_verified));
        p.set(
            "rejected",
            &format!(
                "{} ({} banned)",
                group(t.batches_rejected),
                group(u64::from(t.workers_banned))
            ),
        );
        if let Some(chart) = &self.chart {
            chart.draw(&self.history, self.window.device_pixel_ratio());
        }
    }

    fn connect(&mut self) {
        if self.socket.is_some() {
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
            with_current(&me, generation, |v| {
                v.link = Link::Live;
                if v.milestones.socket_open.is_none() {
                    v.milestones.socket_open = Some(v.now());
                }
            });
        });
        let me = self.me.clone();
        let on_message: Handler<MessageEvent> = Closure::new(move |e: MessageEvent| {
            with_current(&me, generation, |v| v.on_message(&e));
        });
        let me = self.me.clone();
        let on_close: Handler<CloseEvent> = Closure::new(move |_: CloseEvent| {
            with_current(&me, generation, |v| {
                v.socket = None;
                v.schedule_reconnect();
            });
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
    }

    fn on_message(&mut self, e: &MessageEvent) {
        let Ok(buf) = e.data().dyn_into::<ArrayBuffer>() else {
            return self.drop_and_retry("text messages are not part of the protocol");
        };
        let bytes = Uint8Array::new(&buf).to_vec();
        let now = self.now();
        match self.player.on_message(&bytes, now) {
            Ok(Received::Telemetry(t)) => {
                self.backoff.reset();
                self.on_telemetry(&t);
            }
            Ok(Received::Frames { .. }) => {
                self.backoff.reset();
                if self.milestones.first_frames.is_none() {
                    self.milestones.first_frames = Some(now);
                }
                self.last_frames = bytes;
            }
            Err(DecodeError::Version { got }) => self.outdated(got),
            Err(err) => self.drop_and_retry(&err.to_string()),
        }
    }

    /// Stops for good: the server was upgraded to another protocol version
    /// while this page was open. Retrying would loop forever.
    fn outdated(&mut self, server: u8) {
        if let Some(id) = self.reconnect_timer.take() {
            self.window.clear_timeout_with_handle(id);
        }
        if let Some(s) = self.socket.take() {
            s.close(CLOSE_NORMAL, "page out of date");
        }
        self.link = Link::Outdated { server };
        self.show_link();
    }

    fn drop_and_retry(&mut self, reason: &str) {
        if let Some(s) = self.socket.take() {
            s.close(CLOSE_PROTOCOL_ERROR, reason);
        }
        self.schedule_reconnect();
    }

    fn schedule_reconnect(&mut self) {
        if matches!(self.link, Link::Suspended | Link::Outdated { .. })
            || self.reconnect_timer.is_some()
        {
            return;
        }
        let delay = self.backoff.next_delay_ms(js_sys::Math::random());
        if let Some(cb) = &self.on_reconnect {
            self.reconnect_timer = self
                .window
                .set_timeout_with_callback_and_timeout_and_arguments_0(
                    cb.as_ref().unchecked_ref(),
                    delay as i32,
                )
                .ok();
        }
        self.link = Link::Waiting {
            until_ms: self.now() + delay,
        };
    }
}

/// Runs `f` on the viewer if it is alive and `generation` is its socket.
fn with_current(me: &Weak<RefCell<Inner>>, generation: u32, f: impl FnOnce(&mut Inner)) {
    if let Some(v) = me.upgrade() {
        let mut v = v.borrow_mut();
        if v.generation == generation && v.socket.is_some() {
            f(&mut v);
        }
    }
}
