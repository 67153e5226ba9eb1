//! What the Web Worker tells the page about this tab's contribution: one
//! typed shape, with its one conversion to and from the plain JS object
//! that travels by `postMessage` (a Rust value cannot be structured-cloned).
//!
//! The worker builds it ([`WorkerStats::to_js`]), the page's shim passes it
//! on untouched (and keeps it as `window.donutWorkerStats` for the tests),
//! and the viewer reads it back ([`WorkerStats::from_js`]). The page itself
//! only ever sends a state with no counters (the worker failed to start, or
//! the page ended it while hidden); missing counters read as zero.

use js_sys::{Object, Reflect};
use wasm_bindgen::JsValue;

/// Where this tab's worker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerState {
    /// Not contributing (the switch is off).
    Stopped,
    /// Its socket is opening.
    Connecting,
    /// Connected and rendering what it is given.
    Connected,
    /// Waiting to reconnect.
    Reconnecting,
    /// The server speaks another protocol version: reload the page.
    Outdated,
    /// The page is hidden or frozen and ended the worker (set by the page).
    Suspended,
    /// The worker failed to start (set by the page).
    Failed,
}

impl WorkerState {
    const ALL: [Self; 7] = [
        Self::Stopped,
        Self::Connecting,
        Self::Connected,
        Self::Reconnecting,
        Self::Outdated,
        Self::Suspended,
        Self::Failed,
    ];

    /// Its name in the JS object (`state`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
            Self::Outdated => "outdated",
            Self::Suspended => "suspended",
            Self::Failed => "failed",
        }
    }

    /// What the page's panel says.
    pub fn label(self) -> &'static str {
        match self {
            Self::Outdated => "outdated: reload the page",
            other => other.name(),
        }
    }

    /// The state named `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// This tab's worker statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerStats {
    /// Where the worker is.
    pub state: WorkerState,
    /// Whether it contributes (the switch is on).
    pub contributing: bool,
    /// Frames it rendered since it started.
    pub rendered: u64,
    /// Results it sent.
    pub results: u64,
    /// Frames the server credits this tab with, across reconnects.
    pub contributed: u64,
    /// Tasks queued or being rendered.
    pub pending: u64,
    /// Milliseconds the worker spent rendering since it started: the CPU
    /// it cost (busy time measured in the worker).
    pub busy_ms: u64,
    /// Its CPU budget, in thousandths of one core (0: not reported).
    pub budget_permille: u64,
    /// Share of one core it used over the last second, in thousandths.
    pub load_permille: u64,
}

impl WorkerStats {
    /// Stats with only a state (what the page sends): no counters.
    pub fn only(state: WorkerState) -> Self {
        Self {
            state,
            contributing: false,
            rendered: 0,
            results: 0,
            contributed: 0,
            pending: 0,
            busy_ms: 0,
            budget_permille: 0,
            load_permille: 0,
        }
    }

    /// The plain JS object `{state, contributing, rendered, results,
    /// contributed, pending, busyMs, budgetPermille, loadPermille}` (numbers as JS numbers: exact below 2^53).
    pub fn to_js(&self) -> JsValue {
        let o = Object::new();
        let set = |k: &str, v: JsValue| {
            let _ = Reflect::set(&o, &JsValue::from_str(k), &v);
        };
        set("state", JsValue::from_str(self.state.name()));
        set("contributing", JsValue::from_bool(self.contributing));
        for (k, n) in self.counters() {
            set(k, JsValue::from_f64(n as f64));
        }
        o.into()
    }

    /// Reads the object [`Self::to_js`] makes. `None` unless `state` names
    /// a [`WorkerState`]; a missing or non-numeric counter reads as zero
    /// (negative or fractional ones are clamped and truncated).
    pub fn from_js(value: &JsValue) -> Option<Self> {
        let get = |k: &str| Reflect::get(value, &JsValue::from_str(k)).ok();
        let state = WorkerState::from_name(&get("state")?.as_string()?)?;
        let count = |k: &str| get(k).and_then(|v| v.as_f64()).map_or(0, |n| n as u64);
        Some(Self {
            state,
            contributing: get("contributing").is_some_and(|v| v.is_truthy()),
            rendered: count("rendered"),
            results: count("results"),
            contributed: count("contributed"),
            pending: count("pending"),
            busy_ms: count("busyMs"),
            budget_permille: count("budgetPermille"),
            load_permille: count("loadPermille"),
        })
    }

    fn counters(&self) -> [(&'static str, u64); 7] {
        [
            ("rendered", self.rendered),
            ("results", self.results),
            ("contributed", self.contributed),
            ("pending", self.pending),
            ("busyMs", self.busy_ms),
            ("budgetPermille", self.budget_permille),
            ("loadPermille", self.load_permille),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn every_state_has_a_distinct_name_that_reads_back() {
        for s in WorkerState::ALL {
            assert_eq!(WorkerState::from_name(s.name()), Some(s));
        }
        assert_eq!(WorkerState::from_name("Connected"), None);
        assert_eq!(WorkerState::Outdated.label(), "outdated: reload the page");
        assert_eq!(WorkerState::Connected.label(), "connected");
    }

    // Reflect needs a JS engine: these run under wasm-bindgen-test only.
    #[cfg(target_arch = "wasm32")]
    mod js {
        use super::*;
        use wasm_bindgen_test::wasm_bindgen_test as test;

        #[test]
        fn round_trips_through_a_js_object() {
            let s = WorkerStats {
                state: WorkerState::Reconnecting,
                contributing: true,
                rendered: 1 << 40,
                results: 7,
                contributed: 123_456,
                pending: 2,
                busy_ms: 4_321,
                budget_permille: 250,
                load_permille: 198,
            };
            assert_eq!(WorkerStats::from_js(&s.to_js()), Some(s));
        }

        #[test]
        fn a_page_made_state_reads_with_zero_counters() {
            let o = Object::new();
            let _ = Reflect::set(&o, &"state".into(), &"suspended".into());
            assert_eq!(
                WorkerStats::from_js(&o.into()),
                Some(WorkerStats::only(WorkerState::Suspended))
            );
            assert_eq!(WorkerStats::from_js(&JsValue::NULL), None);
            let bad = Object::new();
            let _ = Reflect::set(&bad, &"state".into(), &"sleeping".into());
            assert_eq!(WorkerStats::from_js(&bad.into()), None);
        }
    }
}
