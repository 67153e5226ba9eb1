//! The handle the page holds: [`DonutViewer`] (`window.donutViewer`), its
//! constructor and the page's switches. It only forwards to the
//! [`Runner`]; the probes the tests read are in [`super::probes`].

use std::rc::Rc;

use donut_browser::callback::JsCallback;
use donut_browser::shared::Shared;
use donut_browser::stats::WorkerStats;
use wasm_bindgen::prelude::*;
use web_sys::HtmlCanvasElement;

use super::events::steering_listeners;
use super::runner::Runner;

/// The running viewer. The page keeps it as `window.donutViewer`.
#[wasm_bindgen]
pub struct DonutViewer {
    pub(super) runner: Rc<Shared<Runner>>,
    /// The pointer and key listeners, removed when the viewer is dropped.
    _listeners: Vec<JsCallback>,
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
        let runner = Runner::new(canvas, chart)?;
        let listeners = steering_listeners(&runner)?;
        runner.update(Runner::start);
        Ok(DonutViewer {
            runner,
            _listeners: listeners,
        })
    }

    /// Turns steering on or off (a page that only watches: `?steer=0`).
    /// Off, drags and arrow keys are ignored and nothing is sent.
    #[wasm_bindgen(js_name = setSteering)]
    pub fn set_steering(&self, on: bool) {
        self.runner.update(move |v| v.set_steering(on));
    }

    /// The server's commit throttle (`--input-commit-ms`, from
    /// `/api/page`): a steering page predicts where its pushes fold into
    /// one change with it (issue 25, `crate::predict`).
    #[wasm_bindgen(js_name = setInputCommitMs)]
    pub fn set_input_commit_ms(&self, ms: u32) {
        self.runner.update(move |v| {
            let fps = v.player.clock().fps();
            v.predict.set_commit_interval(ms, fps);
        });
    }

    /// Lets this tab take the stream from other viewers and relay it to
    /// them (the page's switch; `?p2p=0` turns it off). Relaying costs
    /// upload bandwidth and shows this tab's network address to its peers.
    /// Off, every peer link closes and the server serves this tab itself.
    #[wasm_bindgen(js_name = setRelaying)]
    pub fn set_relaying(&self, on: bool) {
        self.runner.update(move |v| v.set_relaying(on));
    }

    /// Whether this engine can relay at all (it has WebRTC's
    /// `RTCPeerConnection`). When it cannot, the page offers no relay
    /// switch and [`Self::set_relaying`] never joins the relay tree.
    #[wasm_bindgen(js_name = relayAvailable)]
    pub fn relay_available(&self) -> bool {
        self.runner.try_read(|v| v.webrtc).unwrap_or(false)
    }

    /// Freezes (or resumes) the picture; frames keep being received, and
    /// playing resumes at the live frame. A viewer paused before its first
    /// frame still draws that one (a still picture, for
    /// `prefers-reduced-motion`), then holds it.
    #[wasm_bindgen(js_name = setPaused)]
    pub fn set_paused(&self, paused: bool) {
        self.runner.update(move |v| v.paused = paused);
    }

    /// The page is going into the back/forward cache or being frozen:
    /// closes the socket normally and stops reconnecting until
    /// [`Self::resume`].
    pub fn suspend(&self) {
        self.runner.update(Runner::suspend);
    }

    /// The page is back (`pageshow`, `resume`): reconnects at once if it
    /// was suspended; otherwise does nothing.
    pub fn resume(&self) {
        self.runner.update(Runner::resume);
    }

    /// Whether this tab contributes (the page's switch), for the panel.
    #[wasm_bindgen(js_name = setContributing)]
    pub fn set_contributing(&self, on: bool) {
        self.runner.update(move |v| {
            v.contribution.on = on;
            v.show_contribution();
        });
    }

    /// A stats message from this tab's Web Worker (a [`WorkerStats`] object,
    /// or one with only a `state` from the page), for the panel.
    #[wasm_bindgen(js_name = workerStats)]
    pub fn worker_stats(&self, stats: &JsValue) {
        let Some(s) = WorkerStats::from_js(stats) else {
            return;
        };
        self.runner.update(move |v| {
            let c = &mut v.contribution;
            c.state = Some(s.state);
            c.rendered.update(s.rendered);
            c.contributed.update(s.contributed);
            c.busy_ms.update(s.busy_ms);
            if s.budget_permille > 0 {
                c.budget_permille = s.budget_permille;
            }
            c.load_permille = s.load_permille;
            v.show_contribution();
        });
    }
}
