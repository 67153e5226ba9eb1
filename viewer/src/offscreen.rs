//! The screen worker: the donut canvas painted off the page's main thread
//! (issue 26, BENCHMARKS.md §9).
//!
//! Where the engine grants the canvas an opaque, low-latency context (the
//! glyph patterns, see [`crate::screen::Painter`]) and can hand it to a
//! worker (`transferControlToOffscreen`, `OffscreenCanvas`: Chromium 69+),
//! the page's [`Screen`](crate::screen::Screen) starts `screen-worker.js`,
//! a classic worker that loads this same viewer build (one source of
//! truth: the worker paints with the very [`Painter`] the page would) and
//! transfers the canvas to it. The page keeps the layout: it measures the
//! font on a detached canvas of its own, so [`Layout`] and everything the
//! tests read stay synchronous and exact. Then, in order, on one
//! `postMessage` channel:
//!
//! - page → worker `{canvas}` (transferred): the `OffscreenCanvas`, first;
//! - page → worker `Float64Array [w, h, originX, originY, cellW, cellH,
//!   fontPx, dpr]`: a new backing-store size and its layout (device
//!   pixels), on every resize;
//! - page → worker `Uint8Array` of `FRAME_LEN` bytes: a frame's text to
//!   paint (only its changed cells are repainted, as on the page);
//! - page → worker `"read"`, worker → page an `ImageData`: the canvas read
//!   back, for the drawing tests ([`Remote::pixels`]).
//!
//! The worker paints each frame as its message arrives; its canvas is
//! committed to the compositor when that task ends. Its glyph patterns are
//! `ImageBitmap`s (`transferToImageBitmap` of an `OffscreenCanvas`),
//! which Chromium does not copy each time a pattern is used, as it does a
//! canvas.
//!
//! Elsewhere (Firefox, WebKit, or no `OffscreenCanvas`, or no viewer build
//! named by `DonutSupport.build.viewer`) the page paints as before.
//! Limits: the canvas cannot be taken back from a worker, so a worker that
//! fails to load leaves the canvas blank (its error is logged), and the
//! page's `painted()` times are when a frame was posted to the worker,
//! which paints it within the same refresh.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use donut_shared::FRAME_LEN;
use js_sys::{Array, Float64Array, Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, MessageEvent, Worker};

use crate::screen::{Layout, Painter, context};

/// The page's half: the worker, and a context to measure the font on.
pub struct Remote {
    worker: Worker,
    measuring: CanvasRenderingContext2d,
    /// Resolvers of [`Remote::pixels`]' promises, oldest first (the worker
    /// answers in order).
    reads: Rc<RefCell<VecDeque<Function>>>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

impl Remote {
    /// Starts the screen worker and hands it `canvas`; `None` (and the
    /// canvas untouched) where the engine cannot, or no viewer build is
    /// named.
    pub fn start(canvas: &HtmlCanvasElement) -> Option<Self> {
        let window = web_sys::window()?;
        let has = |target: &JsValue, name: &str| {
            Reflect::get(target, &name.into()).is_ok_and(|f| f.is_function())
        };
        if !has(&window, "OffscreenCanvas") || !has(canvas, "transferControlToOffscreen") {
            return None;
        }
        let pkg = Reflect::get(&window, &"DonutSupport".into())
            .and_then(|s| Reflect::get(&s, &"build".into()))
            .and_then(|b| Reflect::get(&b, &"viewer".into()))
            .ok()?
            .as_string()?;
        let dir = pkg.strip_prefix("pkg/")?;
        if dir.is_empty() || !dir.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return None;
        }
        let measuring = canvas
            .owner_document()?
            .create_element("canvas")
            .ok()?
            .dyn_into::<HtmlCanvasElement>()
            .ok()
            .and_then(|c| context(&c).ok())?;
        let worker = Worker::new(&format!("screen-worker.js?pkg={dir}")).ok()?;
        let transfer = Reflect::get(canvas, &"transferControlToOffscreen".into())
            .ok()?
            .dyn_into::<Function>()
            .ok()?;
        let offscreen = match transfer.call0(canvas) {
            Ok(o) => o,
            Err(_) => {
                worker.terminate();
                return None;
            }
        };
        let init = js_sys::Object::new();
        Reflect::set(&init, &"canvas".into(), &offscreen).ok()?;
        if let Err(e) = worker.post_message_with_transfer(&init, &Array::of1(&offscreen)) {
            // The canvas is the worker's now or never was; either way
            // nothing can paint it here any more.
            web_sys::console::error_2(&"donut screen worker: canvas not sent".into(), &e);
        }
        let reads: Rc<RefCell<VecDeque<Function>>> = Rc::default();
        let answered = reads.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if let Some(resolve) = answered.borrow_mut().pop_front() {
                let _ = resolve.call1(&JsValue::NULL, &e.data());
            }
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        Some(Self {
            worker,
            measuring,
            reads,
            _on_message: on_message,
        })
    }

    /// A context to measure the font on (see [`crate::screen::measure`]).
    pub fn measuring(&self) -> &CanvasRenderingContext2d {
        &self.measuring
    }

    /// A new backing-store size and its layout.
    pub fn resize(&self, w: u32, h: u32, l: Layout) {
        let m = Float64Array::from(
            &[
                f64::from(w),
                f64::from(h),
                l.origin_x,
                l.origin_y,
                l.cell_w,
                l.cell_h,
                l.font_px,
                l.dpr,
            ][..],
        );
        let _ = self.worker.post_message(&m);
    }

    /// Paints a frame.
    pub fn draw(&self, text: &[u8; FRAME_LEN]) {
        let _ = self.worker.post_message(&Uint8Array::from(&text[..]));
    }

    /// A promise of the canvas's `ImageData`, read in the worker after
    /// every frame posted before.
    pub fn pixels(&self) -> Promise {
        let reads = self.reads.clone();
        let worker = self.worker.clone();
        Promise::new(
            &mut |resolve, reject| match worker.post_message(&"read".into()) {
                Ok(()) => reads.borrow_mut().push_back(resolve),
                Err(e) => {
                    let _ = reject.call1(&JsValue::NULL, &e);
                }
            },
        )
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.worker.set_onmessage(None);
        self.worker.terminate();
    }
}

/// The worker's half (`screen-worker.js`): paints what the page posts on
/// the `OffscreenCanvas` it was given (see the module docs).
#[wasm_bindgen]
pub struct ScreenPainter {
    painter: Painter,
}

#[wasm_bindgen]
impl ScreenPainter {
    /// Paints on `canvas` (an `OffscreenCanvas`) with glyph patterns,
    /// through an opaque, low-latency context.
    #[wasm_bindgen(constructor)]
    pub fn new(canvas: JsValue) -> Result<ScreenPainter, JsValue> {
        console_error_panic_hook::set_once();
        // An OffscreenCanvas and its context have the methods the painter
        // calls (wasm-bindgen calls them by name), under these types.
        let canvas: HtmlCanvasElement = canvas.unchecked_into();
        let options = js_sys::Object::new();
        Reflect::set(&options, &"alpha".into(), &false.into())?;
        Reflect::set(&options, &"desynchronized".into(), &true.into())?;
        let ctx: CanvasRenderingContext2d = canvas
            .get_context_with_context_options("2d", &options)?
            .ok_or("no 2d context")?
            .unchecked_into();
        let scratch: HtmlCanvasElement = web_sys::OffscreenCanvas::new(1, 1)?.unchecked_into();
        let sctx: CanvasRenderingContext2d = scratch
            .get_context("2d")?
            .ok_or("no 2d context")?
            .unchecked_into();
        Ok(Self {
            painter: Painter::new(canvas, ctx, true, Some((scratch, sctx)), true),
        })
    }

    /// One message from the page (see the module docs); returns the reply
    /// to post back, or `undefined`. Anything else is ignored.
    pub fn message(&mut self, data: JsValue) -> JsValue {
        if let Some(bytes) = data.dyn_ref::<Uint8Array>() {
            if bytes.length() as usize == FRAME_LEN {
                let mut text = [0u8; FRAME_LEN];
                bytes.copy_to(&mut text);
                self.painter.draw(&text);
            }
        } else if let Some(m) = data.dyn_ref::<Float64Array>() {
            if m.length() == 8 {
                let v = m.to_vec();
                let size = |x: f64| x.clamp(1.0, 16_384.0) as u32;
                self.painter.set_size(size(v[0]), size(v[1]));
                self.painter.resize(Layout {
                    origin_x: v[2],
                    origin_y: v[3],
                    cell_w: v[4],
                    cell_h: v[5],
                    font_px: v[6],
                    dpr: v[7],
                });
            }
        } else if data.as_string().as_deref() == Some("read") {
            return self.painter.pixels().unwrap_or(JsValue::NULL);
        }
        JsValue::UNDEFINED
    }
}
