//! The probes: what the browser tests and the benches read from the page,
//! behind one typed boundary.
//!
//! The runner records into [`Probes`] (bounded logs of what it painted,
//! sent and received, the start-up [`Milestones`], the last batch); every
//! answer is a Rust type that implements [`ToJs`], the one place where a
//! figure becomes a JS value; and every JS-visible probe is a method of
//! [`DonutViewer`] in the one `#[wasm_bindgen]` block below, reading the
//! runner through [`DonutViewer::probe`] (`null` in the instant the
//! viewer is busy). The page itself calls none of these.

use std::collections::VecDeque;

use donut_shared::FRAME_LEN;
use donut_shared::digest::fnv1a64;
use donut_shared::wire::ToViewer;
use js_sys::{Array, Object, Reflect};
use wasm_bindgen::prelude::*;

use super::handle::DonutViewer;
use super::runner::Runner;
use crate::batch::Batch;
use crate::p2p::RelayStats;
use crate::panel::RelayPlace;
use crate::player::PlayerStats;
use crate::screen::Layout;

/// Frames remembered in the painted log ([`DonutViewer::painted`]): 20 s.
const PAINTED_LOG: usize = 1_200;
/// `Input` messages remembered in the sent log ([`DonutViewer::inputs`]).
const INPUT_LOG: usize = 256;
/// Batches remembered in the arrival log ([`DonutViewer::arrivals`]):
/// about 2.5 minutes of quarter-second batches.
const ARRIVAL_LOG: usize = 600;

/// A probe's answer as a JS value.
pub(super) trait ToJs {
    /// The value the page's tests read.
    fn to_js(&self) -> JsValue;
}

/// Start-up milestones on this page's `performance.now()` clock (0 is the
/// navigation start), for the start-up benchmark (`server/benches/startup.rs`).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Milestones {
    /// The viewer was constructed (the wasm is fetched and instantiated).
    pub(super) created: f64,
    /// The first socket opened.
    pub(super) socket_open: Option<f64>,
    /// The first `Frames` message arrived.
    pub(super) first_frames: Option<f64>,
    /// The first display refresh (`requestAnimationFrame` callback).
    pub(super) first_refresh: Option<f64>,
    /// The refresh that drew the first frame started (its callback ran).
    pub(super) paint_refresh: Option<f64>,
    /// The first frame was drawn on the canvas.
    pub(super) first_paint: Option<f64>,
}

impl ToJs for Milestones {
    fn to_js(&self) -> JsValue {
        let or_nan = |t: Option<f64>| t.unwrap_or(f64::NAN);
        object(&[
            ("created", self.created),
            ("socketOpen", or_nan(self.socket_open)),
            ("firstFrames", or_nan(self.first_frames)),
            ("firstRefresh", or_nan(self.first_refresh)),
            ("paintRefresh", or_nan(self.paint_refresh)),
            ("firstPaint", or_nan(self.first_paint)),
        ])
    }
}

/// A frame painted: `[frame, timelineVersion, digest, wallMs]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Painted {
    frame: u64,
    timeline: u32,
    /// FNV-1a 64 of the frame's text.
    digest: u64,
    wall_ms: f64,
}

impl Painted {
    /// Frame `frame` of version `timeline`, whose text is `text`, drawn at
    /// `wall_ms` (ms since the Unix epoch).
    pub(super) fn of(frame: u64, timeline: u32, text: &[u8; FRAME_LEN], wall_ms: f64) -> Self {
        Self {
            frame,
            timeline,
            digest: fnv1a64(text),
            wall_ms,
        }
    }
}

impl ToJs for Painted {
    fn to_js(&self) -> JsValue {
        Array::of4(
            &JsValue::from_f64(self.frame as f64),
            &JsValue::from_f64(f64::from(self.timeline)),
            &JsValue::from_str(&format!("{:016x}", self.digest)),
            &JsValue::from_f64(self.wall_ms),
        )
        .into()
    }
}

/// An `Input` sent: `[eventWallMs, sentWallMs]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct SentInput {
    /// When the first pointer event it carries fired.
    pub(super) event_wall_ms: f64,
    /// When it left.
    pub(super) sent_wall_ms: f64,
}

impl ToJs for SentInput {
    fn to_js(&self) -> JsValue {
        Array::of2(
            &JsValue::from_f64(self.event_wall_ms),
            &JsValue::from_f64(self.sent_wall_ms),
        )
        .into()
    }
}

/// A batch played: `[start, wallMs, fromPeer]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Arrival {
    /// Its first frame.
    pub(super) start: u64,
    /// When it arrived.
    pub(super) wall_ms: f64,
    /// It came from the parent peer (not the server).
    pub(super) from_peer: bool,
}

impl ToJs for Arrival {
    fn to_js(&self) -> JsValue {
        Array::of3(
            &JsValue::from_f64(self.start as f64),
            &JsValue::from_f64(self.wall_ms),
            &JsValue::from_f64(f64::from(u8::from(self.from_peer))),
        )
        .into()
    }
}

/// The last `cap` records, oldest first.
#[derive(Debug)]
pub(super) struct Log<T> {
    records: VecDeque<T>,
    cap: usize,
}

impl<T> Log<T> {
    fn new(cap: usize) -> Self {
        Self {
            records: VecDeque::with_capacity(cap),
            cap,
        }
    }

    fn push(&mut self, record: T) {
        if self.records.len() == self.cap {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }
}

impl<T: ToJs> ToJs for Log<T> {
    fn to_js(&self) -> JsValue {
        self.records
            .iter()
            .map(ToJs::to_js)
            .collect::<Array>()
            .into()
    }
}

/// What the runner records for the probes.
pub(super) struct Probes {
    /// Start-up milestones.
    pub(super) milestones: Milestones,
    painted: Log<Painted>,
    inputs: Log<SentInput>,
    arrivals: Log<Arrival>,
    /// The last batch played, kept (not copied: it is moved here) for
    /// [`DonutViewer::bench_decode`].
    last_batch: Option<Batch>,
}

impl Probes {
    /// Nothing recorded yet; the viewer was constructed at `created`.
    pub(super) fn new(created: f64) -> Self {
        Self {
            milestones: Milestones {
                created,
                ..Milestones::default()
            },
            painted: Log::new(PAINTED_LOG),
            inputs: Log::new(INPUT_LOG),
            arrivals: Log::new(ARRIVAL_LOG),
            last_batch: None,
        }
    }

    /// A frame was painted.
    pub(super) fn painted(&mut self, p: Painted) {
        self.painted.push(p);
    }

    /// An `Input` left.
    pub(super) fn input_sent(&mut self, i: SentInput) {
        self.inputs.push(i);
    }

    /// A batch was played.
    pub(super) fn arrived(&mut self, a: Arrival) {
        self.arrivals.push(a);
    }

    /// Keeps the last batch played.
    pub(super) fn keep_batch(&mut self, batch: Batch) {
        self.last_batch = Some(batch);
    }
}

/// The peer relay's figures (`relayStats()`).
struct RelayFigures {
    place: RelayPlace,
    backup: u64,
    stats: RelayStats,
}

impl ToJs for RelayFigures {
    fn to_js(&self) -> JsValue {
        let (p, r) = (&self.place, &self.stats);
        object(&[
            ("joined", f64::from(u8::from(p.joined))),
            ("id", p.id.unwrap_or(0) as f64),
            ("parent", p.parent as f64),
            ("parentOpen", f64::from(u8::from(p.parent_open))),
            ("backup", self.backup as f64),
            ("children", p.children as f64),
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
}

/// The player's counters (`stats()`).
struct PlayerFigures {
    stats: PlayerStats,
    head: u64,
    workers: u32,
    viewers: u32,
    timeline: u32,
    inputs_sent: u64,
}

impl ToJs for PlayerFigures {
    fn to_js(&self) -> JsValue {
        let s = &self.stats;
        object(&[
            ("framesReceived", s.frames_received as f64),
            ("framesDropped", s.frames_dropped as f64),
            ("batches", s.batches as f64),
            ("misses", s.misses as f64),
            ("framesShown", s.frames_shown as f64),
            ("gaps", s.gaps as f64),
            ("head", self.head as f64),
            ("workers", f64::from(self.workers)),
            ("viewers", f64::from(self.viewers)),
            ("timeline", f64::from(self.timeline)),
            ("switches", s.switches as f64),
            ("superseded", s.superseded as f64),
            ("inputsSent", self.inputs_sent as f64),
        ])
    }
}

impl ToJs for Layout {
    fn to_js(&self) -> JsValue {
        let dpr = if self.dpr > 0.0 { self.dpr } else { 1.0 };
        object(&[
            ("x", self.origin_x / dpr),
            ("y", self.origin_y / dpr),
            ("cellWidth", self.cell_w / dpr),
            ("cellHeight", self.cell_h / dpr),
            ("fontPx", self.font_px / dpr),
            ("cols", crate::screen::COLS as f64),
            ("rows", crate::screen::ROWS as f64),
            ("dpr", dpr),
        ])
    }
}

/// A decode benchmark's result (`benchDecode()`); `None`: no batch yet,
/// or it no longer decodes.
struct DecodeBench(Option<[(&'static str, f64); 5]>);

impl ToJs for DecodeBench {
    fn to_js(&self) -> JsValue {
        self.0
            .as_ref()
            .map_or(JsValue::NULL, |fields| object(fields))
    }
}

impl Runner {
    /// See [`DonutViewer::bench_decode`].
    fn bench_decode(&self, reps: u32) -> DecodeBench {
        let Some(batch) = &self.probes.last_batch else {
            return DecodeBench(None);
        };
        let bytes = batch.bytes();
        let Ok(ToViewer::Frames(f)) = ToViewer::decode(bytes) else {
            return DecodeBench(None);
        };
        let (frames, codec) = (f.count, f.codec as u8);
        let reps = reps.max(1);
        let mut sink = 0u8;
        let start = self.now();
        for _ in 0..reps {
            let Ok(ToViewer::Frames(f)) = ToViewer::decode(bytes) else {
                return DecodeBench(None);
            };
            let decoded = f.decode_frames(|n, packed| {
                sink ^= packed[0] ^ (n as u8);
            });
            if decoded.is_err() {
                return DecodeBench(None);
            }
        }
        let elapsed = self.now() - start;
        // Keep the work observable so it cannot be optimised away.
        std::hint::black_box(sink);
        DecodeBench(Some([
            ("msPerDecode", elapsed / f64::from(reps)),
            ("frames", f64::from(frames)),
            ("bytes", bytes.len() as f64),
            ("codec", f64::from(codec)),
            ("reps", f64::from(reps)),
        ]))
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

impl DonutViewer {
    /// Reads the runner's answer `f` ([`ToJs::to_js`] of a probe's
    /// type), or `null` if the viewer is busy.
    fn probe(&self, f: impl FnOnce(&Runner) -> JsValue) -> JsValue {
        self.runner.try_read(f).unwrap_or(JsValue::NULL)
    }
}

/// The probes the browser tests and benches call (see the module docs).
#[wasm_bindgen]
impl DonutViewer {
    /// The peer relay's state: `{joined, id, parent, parentOpen, backup,
    /// children, batchesFromPeer, bytesFromPeer, batchesFromServer,
    /// batchesRelayed, bytesRelayed, fetches, mismatches, parentsLost}`
    /// (`parent` and `backup` are peer ids, 0 for the server; `id` is 0
    /// before the server gave one; `children` counts open channels).
    #[wasm_bindgen(js_name = relayStats)]
    pub fn relay_stats(&self) -> JsValue {
        self.probe(|r| {
            RelayFigures {
                place: r.relay_place(),
                backup: r.relay.backup(),
                stats: r.relay.stats(),
            }
            .to_js()
        })
    }

    /// The last batches played (up to 600), oldest first, each as
    /// `[start, wallMs, fromPeer]`: the batch's first frame, when it arrived
    /// (ms since the Unix epoch, `performance.timeOrigin`-based, so tabs
    /// compare), and 1 if it came from the parent peer (0: the server).
    pub fn arrivals(&self) -> JsValue {
        self.probe(|r| r.probes.arrivals.to_js())
    }

    /// What prediction did on this page: `{keyframes, pushes, predicted,
    /// confirmed, mispredicted, unsettled, lead, log}`: `Keyframe`
    /// messages received (none unless the page pushed), pushes predicted,
    /// frames painted from the prediction, of those the ones equal to and
    /// different from the server's frame of the committed version, and
    /// those never compared; the change-frame lead assumed (frames); `log`
    /// the predicted frames painted (last 1,200) as `[frame,
    /// versionHeld, digest, wallMs, pushed]` (as `painted()`; `wallMs` at
    /// the start of the refresh that drew it; `pushed`: drawn with this
    /// page's pushes not yet folded in, not just ahead of the stream);
    /// `changes` the last 16 changes told, as `[version, changeFrame]`. Predicted frames are not in
    /// `painted()`, which lists the server's frames painted.
    pub fn prediction(&self) -> JsValue {
        self.runner
            .try_read(|v| {
                let s = v.predict.stats();
                let o = object(&[
                    ("keyframes", s.keyframes as f64),
                    ("pushes", s.pushes as f64),
                    ("predicted", s.predicted as f64),
                    ("confirmed", s.confirmed as f64),
                    ("mispredicted", s.mispredicted as f64),
                    ("unsettled", s.unsettled as f64),
                    ("lead", v.predict.lead() as f64),
                ]);
                let log: Array = v
                    .predict
                    .log()
                    .map(|(frame, held, digest, wall, pushed)| {
                        let e = Array::of4(
                            &JsValue::from_f64(*frame as f64),
                            &JsValue::from_f64(f64::from(*held)),
                            &JsValue::from_str(&format!("{digest:016x}")),
                            &JsValue::from_f64(*wall),
                        );
                        e.push(&JsValue::from_bool(*pushed));
                        e
                    })
                    .collect();
                let _ = Reflect::set(&o, &JsValue::from_str("log"), &log);
                let changes: Array = v
                    .predict
                    .changes()
                    .map(|(version, frame)| {
                        Array::of2(
                            &JsValue::from_f64(f64::from(version)),
                            &JsValue::from_f64(frame as f64),
                        )
                    })
                    .collect();
                let _ = Reflect::set(&o, &JsValue::from_str("changes"), &changes);
                o
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
        self.probe(|r| r.probes.painted.to_js())
    }

    /// The last `Input` messages this page sent (up to 256), oldest first,
    /// each as `[eventWallMs, sentWallMs]`: when the first pointer event
    /// the message carries fired (its `timeStamp`) and when the message
    /// left, both in ms since the Unix epoch
    /// (`performance.timeOrigin`-based). Arrow keys carry no event time:
    /// theirs is the send time.
    pub fn inputs(&self) -> JsValue {
        self.probe(|r| r.probes.inputs.to_js())
    }

    /// The absolute frame number on screen, if any.
    #[wasm_bindgen(js_name = currentFrame)]
    pub fn current_frame(&self) -> Option<f64> {
        self.runner.try_read(|v| v.text_frame)?.map(|f| f as f64)
    }

    /// The text of the frame on screen (80 × 22 characters, rows ending in
    /// a newline), if any.
    #[wasm_bindgen(js_name = currentText)]
    pub fn current_text(&self) -> Option<String> {
        self.runner.try_read(|v| {
            v.text_frame?;
            Some(String::from_utf8_lossy(&v.text).into_owned())
        })?
    }

    /// Distinct frames drawn over the last second.
    #[wasm_bindgen(js_name = playbackFps)]
    pub fn playback_fps(&self) -> f64 {
        self.runner
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
        self.runner
            .try_read(|v| v.connection_name().to_owned())
            .unwrap_or_default()
    }

    /// Where the glyph grid is on the canvas, in CSS pixels relative to the
    /// canvas element: `{x, y, cellWidth, cellHeight, fontPx, cols, rows,
    /// dpr}`.
    pub fn layout(&self) -> JsValue {
        self.probe(|r| r.screen.layout().to_js())
    }

    /// Player counters: `{framesReceived, framesDropped, batches, misses,
    /// framesShown, gaps, head, workers, viewers, timeline, switches,
    /// superseded, inputsSent}` (the timeline version held, batches of a
    /// newer version that replaced frames, batches of an older one ignored,
    /// `Input` messages this page sent).
    pub fn stats(&self) -> JsValue {
        self.probe(|r| {
            let t = r.player.telemetry().unwrap_or_default();
            PlayerFigures {
                stats: r.player.stats(),
                head: t.head,
                workers: t.workers,
                viewers: t.viewers,
                timeline: r.player.timeline(),
                inputs_sent: r.input.sent(),
            }
            .to_js()
        })
    }

    /// `performance.now()` when the first frame was drawn on the canvas (0
    /// is the navigation start), if one was.
    #[wasm_bindgen(js_name = firstPaintMs)]
    pub fn first_paint_ms(&self) -> Option<f64> {
        self.runner.try_read(|v| v.probes.milestones.first_paint)?
    }

    /// Start-up milestones in `performance.now()` milliseconds: `{created,
    /// socketOpen, firstFrames, firstRefresh, paintRefresh, firstPaint}`
    /// (the viewer constructed, i.e. the wasm instantiated; the first
    /// socket open; the first `Frames` message; the first display refresh;
    /// the refresh that drew the first frame began; that frame drawn).
    /// Missing ones are `NaN`.
    pub fn milestones(&self) -> JsValue {
        self.probe(|r| r.probes.milestones.to_js())
    }

    /// Benchmark: decodes the last `Frames` message received, exactly as
    /// the player does (message header, then the batch's codec into packed
    /// frames), `reps` times. Returns `{msPerDecode, frames, bytes, codec}`,
    /// or `null` if no batch has arrived yet or it no longer decodes.
    #[wasm_bindgen(js_name = benchDecode)]
    pub fn bench_decode(&self, reps: u32) -> JsValue {
        self.probe(|r| r.bench_decode(reps).to_js())
    }
}
