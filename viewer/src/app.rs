//! The viewer on the page: a WebSocket to `/ws/viewer`, the
//! `requestAnimationFrame` loop that draws, and the handle the page (and
//! the browser tests) talk to.
//!
//! The socket only feeds [`Player`]; the animation loop asks the player
//! which frame is due and draws it when it changes. When the socket closes
//! the player keeps playing what it has buffered while the viewer reconnects
//! with backoff, and the panel shows the connection state; while it is not
//! live the panel's figures are marked stale. The reconnecting socket, its
//! callbacks and the re-entry-safe state are `donut_browser`'s, shared with
//! the worker.
//!
//! A page entering the back/forward cache or being frozen calls
//! [`DonutViewer::suspend`] (the shim forwards `pagehide` and `freeze`): the
//! socket is closed normally and nothing reconnects until
//! [`DonutViewer::resume`] (`pageshow`, `resume`). The server then does not
//! keep sending batches to a tab that cannot play them, and the clock lands
//! the returning tab on the live frame.
//!
//! Steering: pointer drags on the canvas (mouse, pen or touch; the canvas
//! has `touch-action: none`, so a drag never scrolls or zooms) and the arrow
//! keys feed the [`InputGate`], through listeners that are `JsCallback`s
//! (removed when the viewer is dropped). The animation loop polls the gate
//! once per refresh and sends what it releases as one `Input` message, so
//! a drag costs at most one message per refresh and under 30 a second.
//! Nothing is sent while nobody drags or presses a key.

use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use donut_browser::callback::JsCallback;
use donut_browser::link::{Close, End, State};
use donut_browser::shared::Shared;
use donut_browser::socket::{Client, Event, Socket};
use donut_browser::stats::{WorkerState, WorkerStats};
use donut_shared::FRAME_LEN;
use donut_shared::backoff::write_endpoint_url;
use donut_shared::digest::fnv1a64;
use donut_shared::wire::p2p::SERVER;
use donut_shared::wire::{DecodeError, ToViewer};
use js_sys::{Array, Object, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{HtmlCanvasElement, KeyboardEvent, PointerEvent, Window};

use crate::clock::{History, RateMeter};
use crate::input::{Arrow, InputGate};
use crate::p2p::Relay;
use crate::p2p::link::{LinkEvent, Sink};
use crate::panel::{Panel, RunningTotal, buffer_text, group};
use crate::player::{Player, Received};
use crate::predict::Predictor;
use crate::screen::{Chart, Layout, Screen};

mod prediction;

/// How often the panel's playback numbers are refreshed.
const PANEL_INTERVAL_MS: f64 = 500.0;
/// Frames remembered in the painted log ([`DonutViewer::painted`]): 20 s.
const PAINTED_LOG: usize = 1_200;
/// `Input` messages remembered in the sent log ([`DonutViewer::inputs`]).
const INPUT_LOG: usize = 256;
/// Batches remembered in the arrival log ([`DonutViewer::arrivals`]):
/// about 2.5 minutes of quarter-second batches.
const ARRIVAL_LOG: usize = 600;
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
    /// `None` until the worker first reports.
    state: Option<WorkerState>,
    /// Across workers: the page starts a fresh one after a freeze.
    rendered: RunningTotal,
    contributed: RunningTotal,
    /// Milliseconds the workers spent rendering: what contributing cost.
    busy_ms: RunningTotal,
    /// The worker's budget and its load over the last second, in
    /// thousandths of one core (0 budget: not reported yet).
    budget_permille: u64,
    load_permille: u64,
}

struct Inner {
    window: Window,
    player: Player,
    screen: Screen,
    chart: Option<Chart>,
    panel: Panel,
    history: History,
    shown_meter: RateMeter,
    text: [u8; FRAME_LEN],
    text_frame: Option<u64>,
    paused: bool,
    socket: Socket,
    contribution: Contribution,
    last_panel_ms: f64,
    milestones: Milestones,
    /// The last `Frames` message as received, kept (not copied: the buffer
    /// is moved here) for [`DonutViewer::bench_decode`].
    last_frames: Vec<u8>,
    on_frame: Option<Closure<dyn FnMut(f64)>>,
    /// Drags and arrow keys, released as `Input` messages by `animate`.
    input: InputGate,
    /// Whether this page steers (`?steer=0` turns it off).
    steering: bool,
    /// The pointer and key listeners, removed when the viewer is dropped.
    listeners: Vec<JsCallback>,
    /// The last frames painted: (frame, timeline version, digest of the
    /// frame's text, wall-clock ms of the draw), oldest first, for the
    /// browser tests and the steering benchmark.
    painted: VecDeque<(u64, u32, u64, f64)>,
    /// Wall-clock ms of the first pointer event moving a drag since the
    /// last `Input` left (what that `Input` answers), if any.
    input_since: Option<f64>,
    /// The last `Input` messages sent: (wall-clock ms of the first event
    /// they carry, wall-clock ms they were sent), oldest first.
    inputs: VecDeque<(f64, f64)>,
    /// This page's own pushes drawn at once (issue 25, `prediction.rs`).
    predict: Predictor,
    /// The frame on screen, if the prediction drew it.
    predicted: Option<u64>,
    /// The peer relay: batches from a parent viewer, passed on to children.
    relay: Relay,
    /// The engine has `RTCPeerConnection` (WebKitGTK, for one, has not):
    /// without it the tab never joins the relay tree.
    webrtc: bool,
    /// The last batches played: (first frame, wall-clock ms it arrived,
    /// whether it came from a peer), oldest first.
    arrivals: VecDeque<(u64, f64, bool)>,
}

/// The running viewer. The page keeps it as `window.donutViewer`.
#[wasm_bindgen]
pub struct DonutViewer {
    inner: Rc<Shared<Inner>>,
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
        let webrtc = has_webrtc(&window);
        let inner = Shared::new_cyclic(|me| {
            let weak = me.clone();
            let links = me.clone();
            let sink: Sink = Rc::new(move |serial, event| {
                if let Some(v) = links.upgrade() {
                    v.update(move |v: &mut Inner| v.on_link_event(serial, event));
                }
            });
            Inner {
                window,
                player: Player::new(),
                screen,
                chart,
                panel: Panel::find(&document),
                history: History::new(),
                shown_meter: RateMeter::new(),
                text: [b' '; FRAME_LEN],
                text_frame: None,
                paused: false,
                socket: Socket::new("donut viewer", url, me),
                contribution: Contribution::default(),
                last_panel_ms: f64::NEG_INFINITY,
                milestones: Milestones {
                    created,
                    ..Milestones::default()
                },
                last_frames: Vec::new(),
                on_frame: Some(Closure::new(move |t: f64| {
                    if let Some(v) = weak.upgrade() {
                        v.update(move |v: &mut Inner| v.animate(t));
                    }
                })),
                input: InputGate::new(),
                steering: true,
                listeners: Vec::new(),
                painted: VecDeque::with_capacity(PAINTED_LOG),
                input_since: None,
                inputs: VecDeque::with_capacity(INPUT_LOG),
                predict: Predictor::new(),
                predicted: None,
                relay: Relay::new(sink),
                webrtc,
                arrivals: VecDeque::with_capacity(ARRIVAL_LOG),
            }
        });
        let listeners = steering_listeners(&inner)?;
        inner.update(|v| {
            v.listeners = listeners;
            v.socket.start();
            v.request_frame();
        });
        Ok(DonutViewer { inner })
    }

    /// Turns steering on or off (a page that only watches: `?steer=0`).
    /// Off, drags and arrow keys are ignored and nothing is sent.
    #[wasm_bindgen(js_name = setSteering)]
    pub fn set_steering(&self, on: bool) {
        self.inner.update(move |v| {
            v.steering = on;
            if !on {
                v.input = InputGate::new();
            }
        });
    }

    /// Lets this tab take the stream from other viewers and relay it to
    /// them (the page's switch; `?p2p=0` turns it off). Relaying costs
    /// upload bandwidth and shows this tab's network address to its peers.
    /// Off, every peer link closes and the server serves this tab itself.
    #[wasm_bindgen(js_name = setRelaying)]
    pub fn set_relaying(&self, on: bool) {
        self.inner.update(move |v| {
            v.relay.set_wanted(on && v.webrtc, &v.socket);
            v.update_relay_panel();
        });
    }

    /// Whether this engine can relay at all (it has WebRTC's
    /// `RTCPeerConnection`). When it cannot, the page offers no relay
    /// switch and [`Self::set_relaying`] never joins the relay tree.
    #[wasm_bindgen(js_name = relayAvailable)]
    pub fn relay_available(&self) -> bool {
        self.inner.try_read(|v| v.webrtc).unwrap_or(false)
    }

    /// The peer relay's state: `{joined, id, parent, parentOpen, backup,
    /// children, batchesFromPeer, bytesFromPeer, batchesFromServer,
    /// batchesRelayed, bytesRelayed, fetches, mismatches, parentsLost}`
    /// (`parent` and `backup` are peer ids, 0 for the server; `id` is 0
    /// before the server gave one; `children` counts open channels).
    #[wasm_bindgen(js_name = relayStats)]
    pub fn relay_stats(&self) -> JsValue {
        let Some((r, joined, id, (parent, open), backup, children)) = self.inner.try_read(|v| {
            let r = &v.relay;
            (
                r.stats(),
                r.joined(),
                r.id().unwrap_or(0),
                r.parent(),
                r.backup(),
                r.children(),
            )
        }) else {
            return JsValue::NULL;
        };
        object(&[
            ("joined", f64::from(u8::from(joined))),
            ("id", id as f64),
            ("parent", parent as f64),
            ("parentOpen", f64::from(u8::from(open))),
            ("backup", backup as f64),
            ("children", children as f64),
            ("batchesFromPeer", r.batches_from_peer as f64),
            ("bytesFromPeer", r.bytes_from_peer as f64),
            ("batchesFromServer", r.batches_from_server as f64),
            ("batchesRelayed", r.batches_relayed as f64),
            ("bytesRelayed", r.bytes_relayed as f64),
            ("fetches", r.fetches as f64),
            ("mismatches", r.mismatches as f64),
            ("parentsLost", r.parents_lost as f64),
        ])
    }

    /// The last batches played (up to 600), oldest first, each as
    /// `[start, wallMs, fromPeer]`: the batch's first frame, when it arrived
    /// (ms since the Unix epoch, `performance.timeOrigin`-based, so tabs
    /// compare), and 1 if it came from the parent peer (0: the server).
    pub fn arrivals(&self) -> JsValue {
        self.inner
            .try_read(|v| {
                v.arrivals
                    .iter()
                    .map(|(start, wall, peer)| {
                        Array::of3(
                            &JsValue::from_f64(*start as f64),
                            &JsValue::from_f64(*wall),
                            &JsValue::from_f64(f64::from(u8::from(*peer))),
                        )
                    })
                    .collect::<Array>()
                    .into()
            })
            .unwrap_or(JsValue::NULL)
    }

    /// The last frames painted (up to 1,200), oldest first, each as
    /// `[frame, timelineVersion, digest, wallMs]`: the digest is the FNV-1a
    /// 64 of the frame's 1,760 text bytes as 16 hex digits, the version the
    /// one the player held when it was painted, `wallMs` when the canvas
    /// was drawn (`performance.timeOrigin + performance.now()`, ms since
    /// the Unix epoch; the compositor shows it at the next vsync).
    pub fn painted(&self) -> JsValue {
        self.inner
            .try_read(|v| {
                v.painted
                    .iter()
                    .map(|(frame, timeline, digest, wall)| {
                        Array::of4(
                            &JsValue::from_f64(*frame as f64),
                            &JsValue::from_f64(f64::from(*timeline)),
                            &JsValue::from_str(&format!("{digest:016x}")),
                            &JsValue::from_f64(*wall),
                        )
                    })
                    .collect::<Array>()
                    .into()
            })
            .unwrap_or(JsValue::NULL)
    }

    /// The last `Input` messages this page sent (up to 256), oldest first,
    /// each as `[eventWallMs, sentWallMs]`: when the first pointer event
    /// the message carries fired (its `timeStamp`) and when the message
    /// left, both in ms since the Unix epoch
    /// (`performance.timeOrigin`-based). Arrow keys carry no event time:
    /// theirs is the send time.
    pub fn inputs(&self) -> JsValue {
        self.inner
            .try_read(|v| {
                v.inputs
                    .iter()
                    .map(|(event, sent)| {
                        Array::of2(&JsValue::from_f64(*event), &JsValue::from_f64(*sent))
                    })
                    .collect::<Array>()
                    .into()
            })
            .unwrap_or(JsValue::NULL)
    }

    /// The absolute frame number on screen, if any.
    #[wasm_bindgen(js_name = currentFrame)]
    pub fn current_frame(&self) -> Option<f64> {
        self.inner.try_read(|v| v.text_frame)?.map(|f| f as f64)
    }

    /// The text of the frame on screen (80 × 22 characters, rows ending in
    /// a newline), if any.
    #[wasm_bindgen(js_name = currentText)]
    pub fn current_text(&self) -> Option<String> {
        self.inner.try_read(|v| {
            v.text_frame?;
            Some(String::from_utf8_lossy(&v.text).into_owned())
        })?
    }

    /// Distinct frames drawn over the last second.
    #[wasm_bindgen(js_name = playbackFps)]
    pub fn playback_fps(&self) -> f64 {
        self.inner
            .try_update(|v| {
                let now = v.now();
                v.shown_meter.per_second(now) as f64
            })
            .unwrap_or(0.0)
    }

    /// `"connecting"`, `"live"`, `"reconnecting"`, `"suspended"` or
    /// `"outdated"` (empty in the instant the viewer is busy, never seen).
    #[wasm_bindgen(js_name = connectionState)]
    pub fn connection_state(&self) -> String {
        self.inner
            .try_read(|v| v.link_name().to_owned())
            .unwrap_or_default()
    }

    /// Freezes (or resumes) the picture; frames keep being received, and
    /// playing resumes at the live frame. A viewer paused before its first
    /// frame still draws that one (a still picture, for
    /// `prefers-reduced-motion`), then holds it.
    #[wasm_bindgen(js_name = setPaused)]
    pub fn set_paused(&self, paused: bool) {
        self.inner.update(move |v| v.paused = paused);
    }

    /// Where the glyph grid is on the canvas, in CSS pixels relative to the
    /// canvas element: `{x, y, cellWidth, cellHeight, cols, rows}`.
    pub fn layout(&self) -> JsValue {
        let Some(l): Option<Layout> = self.inner.try_read(|v| v.screen.layout()) else {
            return JsValue::NULL;
        };
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
    /// framesShown, gaps, head, workers, viewers, timeline, switches,
    /// superseded, inputsSent}` (the timeline version held, batches of a
    /// newer version that replaced frames, batches of an older one ignored,
    /// `Input` messages this page sent).
    pub fn stats(&self) -> JsValue {
        let Some((s, t, timeline, sent)) = self.inner.try_read(|v| {
            (
                v.player.stats(),
                v.player.telemetry().unwrap_or_default(),
                v.player.timeline(),
                v.input.sent(),
            )
        }) else {
            return JsValue::NULL;
        };
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
            ("timeline", f64::from(timeline)),
            ("switches", s.switches as f64),
            ("superseded", s.superseded as f64),
            ("inputsSent", sent as f64),
        ])
    }

    /// `performance.now()` when the first frame was drawn on the canvas (0
    /// is the navigation start), if one was.
    #[wasm_bindgen(js_name = firstPaintMs)]
    pub fn first_paint_ms(&self) -> Option<f64> {
        self.inner.try_read(|v| v.milestones.first_paint)?
    }

    /// Start-up milestones in `performance.now()` milliseconds: `{created,
    /// socketOpen, firstFrames, firstRefresh, paintRefresh, firstPaint}`
    /// (the viewer constructed, i.e. the wasm instantiated; the first
    /// socket open; the first `Frames` message; the first display refresh;
    /// the refresh that drew the first frame began; that frame drawn).
    /// Missing ones are `NaN`.
    pub fn milestones(&self) -> JsValue {
        let Some(m) = self.inner.try_read(|v| v.milestones) else {
            return JsValue::NULL;
        };
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
        self.inner
            .try_read(|v| v.bench_decode(reps))
            .unwrap_or(JsValue::NULL)
    }

    /// The page is going into the back/forward cache or being frozen:
    /// closes the socket normally and stops reconnecting until
    /// [`Self::resume`].
    pub fn suspend(&self) {
        self.inner.update(Inner::suspend);
    }

    /// The page is back (`pageshow`, `resume`): reconnects at once if it
    /// was suspended; otherwise does nothing.
    pub fn resume(&self) {
        self.inner.update(Inner::resume);
    }

    /// Whether this tab contributes (the page's switch), for the panel.
    #[wasm_bindgen(js_name = setContributing)]
    pub fn set_contributing(&self, on: bool) {
        self.inner.update(move |v| {
            v.contribution.on = on;
            v.update_contribution();
        });
    }

    /// A stats message from this tab's Web Worker (a [`WorkerStats`] object,
    /// or one with only a `state` from the page), for the panel.
    #[wasm_bindgen(js_name = workerStats)]
    pub fn worker_stats(&self, stats: &JsValue) {
        let Some(s) = WorkerStats::from_js(stats) else {
            return;
        };
        self.inner.update(move |v| {
            v.contribution.state = Some(s.state);
            v.contribution.rendered.update(s.rendered);
            v.contribution.contributed.update(s.contributed);
            v.contribution.busy_ms.update(s.busy_ms);
            if s.budget_permille > 0 {
                v.contribution.budget_permille = s.budget_permille;
            }
            v.contribution.load_permille = s.load_permille;
            v.update_contribution();
        });
    }
}

/// The pointer listeners on the canvas and the arrow keys' on the window,
/// feeding the viewer's [`InputGate`].
fn steering_listeners(inner: &Rc<Shared<Inner>>) -> Result<Vec<JsCallback>, JsValue> {
    let (canvas, window) = inner
        .try_read(|v| (v.screen.canvas().clone(), v.window.clone()))
        .ok_or("viewer busy")?;
    let weak = Rc::downgrade(inner);
    let on = |f: fn(&mut Inner, &PointerEvent)| {
        let weak: Weak<Shared<Inner>> = weak.clone();
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
        JsCallback::new(target, "pointerdown", on(Inner::pointer_down))?,
        JsCallback::new(target, "pointermove", on(Inner::pointer_move))?,
        JsCallback::new(target, "pointerup", on(Inner::pointer_up))?,
        JsCallback::new(target, "pointercancel", on(Inner::pointer_up))?,
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
        // The page scrolls no further on an arrow it steers with.
        e.prevent_default();
        v.update(move |v| {
            if v.steering {
                v.input.key(arrow);
            }
        });
    })?);
    Ok(listeners)
}

/// Whether `window` has WebRTC's `RTCPeerConnection` constructor.
fn has_webrtc(window: &Window) -> bool {
    Reflect::get(window, &JsValue::from_str("RTCPeerConnection")).is_ok_and(|c| c.is_function())
}

/// What contributing cost this tab, for the panel: the workers' busy time
/// (the CPU it took), the share of a core over the last second while on,
/// and the budget.
fn cost_text(c: &Contribution) -> String {
    let cpu = format!("{:.1} s CPU", c.busy_ms.total() as f64 / 1000.0);
    if !c.on {
        return format!("{cpu} (not contributing)");
    }
    let budget = match c.budget_permille {
        0 => String::new(),
        b => format!(" of {:.0}% budget", b as f64 / 10.0),
    };
    format!(
        "{cpu} · {:.1}% of a core{budget}",
        c.load_permille as f64 / 10.0
    )
}

/// The fleet's peer relay figures, for the panel.
fn peers_text(t: &donut_shared::wire::Telemetry) -> String {
    if t.peers_linked == 0 && t.offload_permille == 0 {
        return "none linked".to_owned();
    }
    format!(
        "{} fed by peers · {:.1}% of bytes, proven, last min · {} fallbacks · {} bad",
        group(u64::from(t.peers_linked)),
        f64::from(t.offload_permille) / 10.0,
        group(t.p2p_fallbacks),
        group(u64::from(t.digest_mismatches))
    )
}

/// A plain JS object of numbers.
fn object(fields: &[(&str, f64)]) -> JsValue {
    let o = Object::new();
    for (k, v) in fields {
        let _ = Reflect::set(&o, &JsValue::from_str(k), &JsValue::from_f64(*v));
    }
    o.into()
}

impl Client for Inner {
    fn socket(&mut self) -> &mut Socket {
        &mut self.socket
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Open => {
                self.player.resubscribed();
                self.predict.reset();
                self.relay.on_open(&self.socket);
                if self.milestones.socket_open.is_none() {
                    self.milestones.socket_open = Some(self.now());
                }
            }
            Event::Message(bytes) => self.on_message(bytes),
            Event::Closed(End::RefusedVersion { .. }) => {
                self.relay.on_closed();
                self.show_link();
            }
            Event::Closed(_) => self.relay.on_closed(),
            Event::Connecting => {}
        }
    }
}

impl Inner {
    /// See [`DonutViewer::bench_decode`].
    fn bench_decode(&self, reps: u32) -> JsValue {
        let bytes = self.last_frames.as_slice();
        let Ok(donut_shared::wire::ToViewer::Frames(f)) =
            donut_shared::wire::ToViewer::decode(bytes)
        else {
            return JsValue::NULL;
        };
        let (frames, codec) = (f.count, f.codec as u8);
        let reps = reps.max(1);
        let mut sink = 0u8;
        let start = self.now();
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
        let elapsed = self.now() - start;
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
}

impl Inner {
    fn now(&self) -> f64 {
        self.window.performance().map_or(0.0, |p| p.now())
    }

    /// `performance.now()`-clock milliseconds `t` as wall-clock ms since
    /// the Unix epoch, comparable between tabs.
    fn wall(&self, t: f64) -> f64 {
        self.window.performance().map_or(0.0, |p| p.time_origin()) + t
    }

    fn link_name(&self) -> &'static str {
        match self.socket.state() {
            State::Off => "suspended",
            State::Connecting => "connecting",
            State::Open => "live",
            State::Waiting { .. } => "reconnecting",
            State::Outdated { .. } => "outdated",
        }
    }

    fn suspend(&mut self) {
        if self.socket.state() == State::Off {
            return;
        }
        self.socket.close(Close::Stop("page hidden"));
        self.show_link();
    }

    fn resume(&mut self) {
        if self.socket.state() != State::Off {
            return;
        }
        self.socket.start();
        self.show_link();
    }

    /// Shows the connection state now, and marks the fleet's figures stale
    /// unless they are live.
    fn show_link(&mut self) {
        let now = self.now();
        self.update_playback_panel(now);
    }

    fn pointer_down(&mut self, e: &PointerEvent) {
        if e.button() != 0 {
            return;
        }
        let id = e.pointer_id();
        if self
            .input
            .pointer_down(id, f64::from(e.client_x()), f64::from(e.client_y()))
        {
            // Moves outside the canvas keep coming until the pointer is up.
            let _ = self.screen.canvas().set_pointer_capture(id);
            e.prevent_default();
        }
    }

    fn pointer_move(&mut self, e: &PointerEvent) {
        let canvas = self.screen.canvas();
        let (w, h) = (
            f64::from(canvas.client_width()),
            f64::from(canvas.client_height()),
        );
        if self.input.dragging() && self.input_since.is_none() {
            self.input_since = Some(self.wall(e.time_stamp()));
        }
        self.input.pointer_move(
            e.pointer_id(),
            f64::from(e.client_x()),
            f64::from(e.client_y()),
            w,
            h,
        );
    }

    fn pointer_up(&mut self, e: &PointerEvent) {
        self.input.pointer_up(e.pointer_id());
    }

    /// Sends what the input gate releases now, if the socket is open.
    fn send_input(&mut self, now: f64) {
        let Some(input) = self.input.poll(now) else {
            return;
        };
        let event = self.input_since.take();
        if self.socket.state() == State::Open {
            self.socket.send(&input.to_bytes());
            let show = self.player.clock().frame_at(now).unwrap_or(0);
            self.predict.pushed(input.impulse(), show);
            self.player.set_ahead(self.predict.ahead());
            let sent = self.wall(now);
            if self.inputs.len() == INPUT_LOG {
                self.inputs.pop_front();
            }
            self.inputs.push_back((event.unwrap_or(sent), sent));
        }
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
        self.send_input(started);
        let due = self.player.clock().frame_at(now);
        self.relay.poll(started, due, &self.socket);
        let resized = self.screen.fit(self.window.device_pixel_ratio());
        if !self.paint_predicted(now, started)
            && (!self.paused || self.text_frame.is_none())
            && let Some(frame) = self.player.tick(now)
            && self.player.frame_text(frame, &mut self.text)
        {
            self.text_frame = Some(frame);
            self.predicted = None;
            if self.painted.len() == PAINTED_LOG {
                self.painted.pop_front();
            }
            self.shown_meter.record(now);
            self.screen.draw(&self.text);
            let drawn = self.wall(self.now());
            self.painted
                .push_back((frame, self.player.timeline(), fnv1a64(&self.text), drawn));
            if self.milestones.first_paint.is_none() {
                self.milestones.paint_refresh = Some(started);
                self.milestones.first_paint = Some(self.now());
            }
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
        let state = match self.socket.state() {
            State::Waiting { .. } => format!(
                "reconnecting in {:.1} s",
                self.socket.retry_in_ms().unwrap_or(0.0) / 1000.0
            ),
            State::Connecting => "connecting…".to_owned(),
            State::Open => format!("live · {ahead} frames buffered here"),
            State::Off => "paused while the page is hidden".to_owned(),
            State::Outdated { server } => format!(
                "this page is out of date (the server speaks protocol {}, \
                 this page {}): reload the page",
                server.map_or_else(|| "another".to_owned(), |v| v.to_string()),
                donut_shared::wire::PROTOCOL_VERSION
            ),
        };
        self.panel.set("connection", &state);
        let timeline = match (self.player.timeline(), self.input.sent()) {
            (0, 0) => "not yet".to_owned(),
            (v, 0) => format!("version {v}"),
            (v, sent) => format!("version {v} · {} pushes from here", group(sent)),
        };
        self.panel.set("timeline", &timeline);
        self.panel
            .set_attr("connection", "data-state", self.link_name());
        // Figures from before a disconnect are stale; before the first
        // telemetry there are none.
        let live = self.socket.state() == State::Open;
        let stale = !live && self.player.telemetry().is_some();
        self.panel.set_stale(stale);
    }

    fn update_contribution(&self) {
        let c = &self.contribution;
        let text = match (c.on, c.state) {
            (false, _) => "off (watching only)".to_owned(),
            (true, Some(WorkerState::Connected)) => format!(
                "{} frames ({} rendered)",
                group(c.contributed.total()),
                group(c.rendered.total())
            ),
            (true, None) => "starting…".to_owned(),
            (true, Some(state)) => format!(
                "{} · {} frames",
                state.label(),
                group(c.contributed.total())
            ),
        };
        self.panel.set("mine", &text);
        self.panel.set("cost", &cost_text(c));
    }

    fn on_telemetry(&mut self, t: &donut_shared::wire::Telemetry) {
        self.history.push(t.fleet_fps);
        let p = &self.panel;
        p.set("workers", &group(u64::from(t.workers)));
        p.set("viewers", &group(u64::from(t.viewers)));
        p.set("fleet-fps", &group(u64::from(t.fleet_fps)));
        p.set("buffer", &buffer_text(t.buffered_frames, t.fps));
        p.set("verified", &group(t.batches_verified));
        p.set("peers", &peers_text(t));
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

    fn on_message(&mut self, bytes: Vec<u8>) {
        let now = self.now();
        match ToViewer::decode(&bytes) {
            Ok(ToViewer::Frames(f)) if !self.relay.server_batch((f.start, f.timeline)) => {
                // Already played: its copy came from the parent first.
                self.socket.healthy();
                return;
            }
            Ok(ToViewer::Keyframe(k)) => {
                self.socket.healthy();
                self.predict.on_keyframe(&k);
                self.player.set_ahead(self.predict.ahead());
                return;
            }
            Ok(ToViewer::Frames(_) | ToViewer::Telemetry(_)) | Err(_) => {}
            Ok(msg) => {
                self.socket.healthy();
                let verified = self.relay.on_server(&msg, &self.socket, now);
                for batch in verified {
                    self.play(batch, now, true);
                }
                let due = self.player.clock().frame_at(now);
                self.relay.poll(now, due, &self.socket);
                if matches!(msg, ToViewer::Welcome(_) | ToViewer::Assign(_)) {
                    self.update_relay_panel();
                }
                return;
            }
        }
        self.play(bytes, now, false);
    }

    /// Plays a message from the server, or a batch from the parent peer
    /// (`from_peer`) that matched its digest; a batch is then passed on to
    /// the children.
    fn play(&mut self, bytes: Vec<u8>, now: f64, from_peer: bool) {
        match self.player.on_message(&bytes, now) {
            Ok(Received::Telemetry(t)) => {
                self.socket.healthy();
                self.on_telemetry(&t);
            }
            Ok(Received::Frames { start, .. }) => {
                self.socket.healthy();
                if self.milestones.first_frames.is_none() {
                    self.milestones.first_frames = Some(now);
                }
                if self.arrivals.len() == ARRIVAL_LOG {
                    self.arrivals.pop_front();
                }
                self.arrivals.push_back((start, self.wall(now), from_peer));
                self.relay.relay(&bytes);
                self.last_frames = bytes;
            }
            Ok(Received::Relay) => {}
            // The server was upgraded to another protocol version while
            // this page was open: retrying would loop forever.
            Err(DecodeError::Version { got }) => {
                self.socket.close(Close::Outdated { server: got });
                self.show_link();
            }
            Err(err) => self.socket.close(Close::Protocol(&err.to_string())),
        }
    }

    /// An event of one of the relay's WebRTC links.
    fn on_link_event(&mut self, serial: u32, event: LinkEvent) {
        let now = self.now();
        for batch in self.relay.on_link(serial, event, &self.socket) {
            self.play(batch, now, true);
        }
        self.update_relay_panel();
    }

    /// This tab's place in the relay tree, on the panel.
    fn update_relay_panel(&self) {
        let r = &self.relay;
        let text = if !self.webrtc {
            "not in this browser (no WebRTC; served by the server)".to_owned()
        } else if !r.joined() {
            "off (served by the server only)".to_owned()
        } else if r.id().is_none() {
            "not offered by the server (served by it)".to_owned()
        } else {
            let (parent, open) = r.parent();
            let from = match (parent, open) {
                (SERVER, _) => "fed by the server".to_owned(),
                (p, true) => format!("fed by viewer #{p}"),
                (p, false) => format!("connecting to viewer #{p}…"),
            };
            format!("{from} · relaying to {}", r.children())
        };
        self.panel.set("relay", &text);
    }
}
