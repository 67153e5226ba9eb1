//! The runner: the page's state, the WebSocket's events, the animation
//! loop and [`Runner::route`], the one place a message from the server is
//! decoded.
//!
//! The frame path, for whoever hooks into it:
//!
//! - [`Runner::animate`] runs once per display refresh: it releases a
//!   locally pushed input ([`Runner::send_input`], where an `Input` leaves
//!   this page), gives the relay its clock tick, asks the player which
//!   frame is due and draws it.
//! - [`Runner::route`] takes each message from the server and decodes it
//!   once: `Frames` become a [`Batch`], `Telemetry` goes to the player,
//!   the relay's messages to the relay.
//! - [`Runner::play`] is where every batch arrives, from the server or
//!   (vouched for by its digest) from the parent peer: into the player,
//!   then on to this tab's children.

use std::rc::Rc;

use donut_browser::reconnect::{Close, End, State};
use donut_browser::shared::Shared;
use donut_browser::socket::{Client, Event, Socket};
use donut_shared::FRAME_LEN;
use donut_shared::backoff::write_endpoint_url;
use donut_shared::wire::{DecodeError, ToViewer};
use js_sys::Reflect;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{HtmlCanvasElement, Window};

use super::probes::{Arrival, Painted, Probes, SentInput};
use crate::batch::{Batch, Head};
use crate::clock::{History, RateMeter};
use crate::input::InputGate;
use crate::p2p::Relay;
use crate::p2p::link::{LinkEvent, Sink};
use crate::panel::{self, Contribution, Panel, RelayPlace};
use crate::player::Player;
use crate::predict::Predictor;
use crate::screen::{Chart, Screen};

/// How often the panel's playback numbers are refreshed.
const PANEL_INTERVAL_MS: f64 = 500.0;

/// See the module docs.
pub(super) struct Runner {
    pub(super) window: Window,
    pub(super) player: Player,
    pub(super) screen: Screen,
    chart: Option<Chart>,
    panel: Panel,
    history: History,
    pub(super) shown_meter: RateMeter,
    /// The text of the frame on screen.
    pub(super) text: [u8; FRAME_LEN],
    /// The frame on screen, if any.
    pub(super) text_frame: Option<u64>,
    pub(super) paused: bool,
    pub(super) socket: Socket,
    pub(super) contribution: Contribution,
    last_panel_ms: f64,
    on_frame: Option<Closure<dyn FnMut(f64)>>,
    /// Drags and arrow keys, released as `Input` messages by `animate`.
    pub(super) input: InputGate,
    /// Whether this page steers (`?steer=0` turns it off).
    pub(super) steering: bool,
    /// Wall-clock ms of the first pointer event moving a drag since the
    /// last `Input` left (what that `Input` answers), if any.
    pub(super) input_since: Option<f64>,
    /// The peer relay: batches from a parent viewer, passed on to children.
    pub(super) relay: Relay,
    /// The engine has `RTCPeerConnection` (WebKitGTK, for one, has not):
    /// without it the tab never joins the relay tree.
    pub(super) webrtc: bool,
    /// What the tests and benches read (see [`super::probes`]).
    pub(super) probes: Probes,
    /// This tab's pushes the server refused so far (`InputRefused`).
    refused: u32,
    /// This page's own pushes drawn at once (issue 25, `prediction.rs`).
    pub(super) predict: Predictor,
    /// The frame on screen, if the prediction drew it.
    pub(super) predicted: Option<u64>,
}

impl Runner {
    /// The state for a viewer on `canvas` (and `chart`), its socket to
    /// `/ws/viewer` on the server that served the page not yet started.
    pub(super) fn new(
        canvas: HtmlCanvasElement,
        chart: Option<HtmlCanvasElement>,
    ) -> Result<Rc<Shared<Self>>, JsValue> {
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
        Ok(Shared::new_cyclic(|me| {
            let weak = me.clone();
            let links = me.clone();
            let sink: Sink = Rc::new(move |serial, event| {
                if let Some(v) = links.upgrade() {
                    v.update(move |v: &mut Runner| v.on_link_event(serial, event));
                }
            });
            Runner {
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
                refused: 0,
                predict: Predictor::new(),
                predicted: None,
                on_frame: Some(Closure::new(move |t: f64| {
                    if let Some(v) = weak.upgrade() {
                        v.update(move |v: &mut Runner| v.animate(t));
                    }
                })),
                input: InputGate::new(),
                steering: true,
                input_since: None,
                relay: Relay::new(sink),
                webrtc,
                probes: Probes::new(created),
            }
        }))
    }

    /// Connects and asks for the first display refresh.
    pub(super) fn start(&mut self) {
        self.socket.start();
        self.request_frame();
    }

    /// `performance.now()`, in ms.
    pub(super) fn now(&self) -> f64 {
        self.window.performance().map_or(0.0, |p| p.now())
    }

    /// `performance.now()`-clock milliseconds `t` as wall-clock ms since
    /// the Unix epoch, comparable between tabs.
    pub(super) fn wall(&self, t: f64) -> f64 {
        self.window.performance().map_or(0.0, |p| p.time_origin()) + t
    }

    /// The connection's state as one word (see [`panel::connection_name`]).
    pub(super) fn connection_name(&self) -> &'static str {
        panel::connection_name(self.socket.state())
    }

    /// The page is hidden or frozen: the socket closes, nothing reconnects
    /// until [`Runner::resume`].
    pub(super) fn suspend(&mut self) {
        if self.socket.state() == State::Off {
            return;
        }
        self.socket.close(Close::Stop("page hidden"));
        self.show_connection();
    }

    /// The page is back: reconnects if it was suspended.
    pub(super) fn resume(&mut self) {
        if self.socket.state() != State::Off {
            return;
        }
        self.socket.start();
        self.show_connection();
    }

    /// The user turned relaying on or off (see the handle's `setRelaying`).
    pub(super) fn set_relaying(&mut self, on: bool) {
        self.relay.set_wanted(on && self.webrtc, &self.socket);
        self.show_relay();
    }

    /// Turns steering on or off; off forgets any drag in progress.
    pub(super) fn set_steering(&mut self, on: bool) {
        self.steering = on;
        if !on {
            self.input = InputGate::new();
        }
    }

    fn request_frame(&self) {
        if let Some(cb) = &self.on_frame {
            let _ = self
                .window
                .request_animation_frame(cb.as_ref().unchecked_ref());
        }
    }

    /// One display refresh: release a pushed input, tick the relay, draw
    /// the due frame if new (resize if needed), refresh the panel.
    fn animate(&mut self, now: f64) {
        self.request_frame();
        let started = self.now();
        self.probes.milestones.first_refresh.get_or_insert(started);
        self.send_input(now, started);
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
            self.shown_meter.record(now);
            self.screen.draw(&self.text);
            let drawn = self.wall(self.now());
            self.probes.painted(Painted::of(
                frame,
                self.player.timeline(),
                &self.text,
                drawn,
            ));
            if self.probes.milestones.first_paint.is_none() {
                self.probes.milestones.paint_refresh = Some(started);
                self.probes.milestones.first_paint = Some(self.now());
            }
        } else if resized && self.text_frame.is_some() {
            self.screen.draw(&self.text);
        }
        if now - self.last_panel_ms >= PANEL_INTERVAL_MS {
            self.last_panel_ms = now;
            self.show_playback(now);
        }
    }

    /// Sends what the input gate releases now (a locally pushed `Input`),
    /// if the socket is open. `frame_time` is the refresh's animation
    /// frame time, the one the frame due is computed from.
    fn send_input(&mut self, frame_time: f64, now: f64) {
        let Some(input) = self.input.poll(now) else {
            return;
        };
        let event = self.input_since.take();
        if self.socket.state() == State::Open {
            self.socket.send(&input.to_bytes());
            // The show's frame on the same clock as the frame due (the
            // animation frame time, which may lag `performance.now()`), so
            // the lead measured is the one the screen needs.
            let show = self.player.clock().frame_at(frame_time).unwrap_or(0);
            self.predict.pushed(input.impulse(), show);
            self.player.set_ahead(self.predict.ahead());
            let sent = self.wall(now);
            self.probes.input_sent(SentInput {
                event_wall_ms: event.unwrap_or(sent),
                sent_wall_ms: sent,
            });
        }
    }

    /// A message from the server, decoded here and only here.
    fn route(&mut self, bytes: Vec<u8>) {
        let now = self.now();
        match ToViewer::decode(&bytes) {
            Ok(ToViewer::Frames(f)) => {
                if !self.relay.server_batch((f.start, f.timeline)) {
                    // Already played: its copy came from the parent first.
                    self.socket.healthy();
                    return;
                }
                let head = Head::of(&f);
                self.play(Batch::new(bytes, head), now, false);
            }
            Ok(ToViewer::Telemetry(t)) => {
                self.socket.healthy();
                self.player.on_telemetry(t, now);
                self.predict.set_fps(self.player.clock().fps());
                self.show_telemetry(&t);
            }
            Ok(ToViewer::Keyframe(k)) => {
                // A change and this page's pushes it folded in: what the
                // prediction settles against.
                self.socket.healthy();
                self.predict.on_keyframe(&k);
                self.player.set_ahead(self.predict.ahead());
            }
            Ok(ToViewer::InputRefused(r)) => {
                // A push that did nothing: the panel says so, and why.
                self.socket.healthy();
                self.refused = self.refused.saturating_add(1);
                self.panel
                    .set("refused", &panel::refusal_text(self.refused, r.reason));
            }
            Ok(msg) => {
                self.socket.healthy();
                for batch in self.relay.on_server(&msg, &self.socket, now) {
                    self.play(batch, now, true);
                }
                let due = self.player.clock().frame_at(now);
                self.relay.poll(now, due, &self.socket);
                if matches!(msg, ToViewer::Welcome(_) | ToViewer::Assign(_)) {
                    self.show_relay();
                }
            }
            Err(err) => self.refuse(&err),
        }
    }

    /// Plays a batch from the server, or from the parent peer
    /// (`from_peer`) that matched its digest, then passes it on to the
    /// children.
    fn play(&mut self, batch: Batch, now: f64, from_peer: bool) {
        if let Err(err) = self.player.on_frames(&batch.frames(), now) {
            return self.refuse(&err);
        }
        self.socket.healthy();
        self.probes.milestones.first_frames.get_or_insert(now);
        self.probes.arrived(Arrival {
            start: batch.start(),
            wall_ms: self.wall(now),
            from_peer,
            timeline: batch.key().1,
        });
        self.relay.relay(batch.bytes());
        self.probes.keep_batch(batch);
    }

    /// A message that does not decode closes the socket.
    fn refuse(&mut self, err: &DecodeError) {
        match *err {
            // The server was upgraded to another protocol version while
            // this page was open: retrying would loop forever.
            DecodeError::Version { got } => {
                self.socket.close(Close::Outdated { server: got });
                self.show_connection();
            }
            _ => self.socket.close(Close::Protocol(&err.to_string())),
        }
    }

    /// An event of one of the relay's WebRTC links.
    fn on_link_event(&mut self, serial: u32, event: LinkEvent) {
        let now = self.now();
        for batch in self.relay.on_link(serial, event, &self.socket) {
            self.play(batch, now, true);
        }
        self.show_relay();
    }

    /// Shows the connection state now, and marks the fleet's figures stale
    /// unless they are live.
    fn show_connection(&mut self) {
        let now = self.now();
        self.show_playback(now);
    }

    fn show_playback(&mut self, now: f64) {
        let fps = self.shown_meter.per_second(now);
        self.panel.set("playback", &panel::playback_text(fps));
        let state = self.socket.state();
        let ahead = self.player.buffered_ahead(now);
        self.panel.set(
            "connection",
            &panel::connection_text(state, self.socket.retry_in_ms(), ahead),
        );
        self.panel.set(
            "timeline",
            &panel::timeline_text(self.player.timeline(), self.input.sent()),
        );
        self.panel
            .set_attr("connection", "data-state", panel::connection_name(state));
        // Figures from before a disconnect are stale; before the first
        // telemetry there are none.
        let live = state == State::Open;
        let stale = !live && self.player.telemetry().is_some();
        self.panel.set_stale(stale);
    }

    /// The "mine" and "cost" rows.
    pub(super) fn show_contribution(&self) {
        self.panel
            .set("mine", &panel::mine_text(&self.contribution));
        self.panel
            .set("cost", &panel::cost_text(&self.contribution));
    }

    fn show_telemetry(&mut self, t: &donut_shared::wire::Telemetry) {
        self.history.push(t.fleet_fps);
        for (name, text) in panel::telemetry_rows(t) {
            self.panel.set(name, &text);
        }
        if let Some(chart) = &self.chart {
            chart.draw(&self.history, self.window.device_pixel_ratio());
        }
    }

    /// This tab's place in the relay tree.
    pub(super) fn relay_place(&self) -> RelayPlace {
        let (parent, parent_open) = self.relay.parent();
        RelayPlace {
            webrtc: self.webrtc,
            joined: self.relay.joined(),
            id: self.relay.id(),
            parent,
            parent_open,
            children: self.relay.children(),
        }
    }

    fn show_relay(&self) {
        self.panel
            .set("relay", &panel::relay_text(&self.relay_place()));
    }
}

impl Client for Runner {
    fn socket(&mut self) -> &mut Socket {
        &mut self.socket
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Open => {
                self.player.resubscribed();
                self.predict.reset();
                self.relay.on_open(&self.socket);
                let now = self.now();
                self.probes.milestones.socket_open.get_or_insert(now);
            }
            Event::Message(bytes) => self.route(bytes),
            Event::Closed(End::RefusedVersion { .. }) => {
                self.relay.on_closed();
                self.show_connection();
            }
            Event::Closed(_) => self.relay.on_closed(),
            Event::Connecting => {}
        }
    }
}

/// Whether `window` has WebRTC's `RTCPeerConnection` constructor.
fn has_webrtc(window: &Window) -> bool {
    Reflect::get(window, &JsValue::from_str("RTCPeerConnection")).is_ok_and(|c| c.is_function())
}
