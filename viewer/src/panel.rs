//! The telemetry panel: plain DOM text the viewer fills in, and every word
//! it shows.
//!
//! The page declares the panel in HTML with `data-stat` attributes; the
//! viewer finds them once and sets their text. Keeping the numbers in wasm
//! keeps the shim free of logic, and a missing element is simply skipped.
//! The panel itself (`[data-panel]`) carries `data-stale` while the figures
//! are not live (the server is unreachable), and the stylesheet dims them.
//!
//! The wording is here too, as pure functions of the figures (the
//! `*_text` functions, [`telemetry_rows`], [`connection_name`]), tested
//! natively: the runner ([`crate::web`]) only gathers the figures and
//! sets what these functions return.

use donut_browser::reconnect::State;
use donut_browser::stats::WorkerState;
use donut_shared::wire::Telemetry;
use donut_shared::wire::p2p::SERVER;
use web_sys::{Document, Element};

/// Every statistic the panel shows, by its `data-stat` name.
pub const STATS: [&str; 14] = [
    "workers",
    "viewers",
    "fleet-fps",
    "buffer",
    "verified",
    "rejected",
    "mine",
    "playback",
    "timeline",
    "refused",
    "peers",
    "relay",
    "cost",
    "connection",
];

/// The panel's elements.
pub struct Panel {
    root: Option<Element>,
    elements: Vec<(&'static str, Element)>,
}

impl Panel {
    /// Finds the `[data-stat=NAME]` elements in `doc`.
    pub fn find(doc: &Document) -> Self {
        let elements = STATS
            .iter()
            .filter_map(|name| {
                doc.query_selector(&format!("[data-stat=\"{name}\"]"))
                    .ok()
                    .flatten()
                    .map(|e| (*name, e))
            })
            .collect();
        let root = doc.query_selector("[data-panel]").ok().flatten();
        Self { root, elements }
    }

    /// Marks the figures stale (`data-stale` on the panel) or live.
    pub fn set_stale(&self, stale: bool) {
        let Some(root) = &self.root else { return };
        if root.has_attribute("data-stale") != stale {
            let _ = if stale {
                root.set_attribute("data-stale", "")
            } else {
                root.remove_attribute("data-stale")
            };
        }
    }

    /// Sets the text of stat `name`, if the element exists and changed.
    pub fn set(&self, name: &str, text: &str) {
        for (n, e) in &self.elements {
            if *n == name && e.text_content().as_deref() != Some(text) {
                e.set_text_content(Some(text));
            }
        }
    }

    /// Sets an attribute on stat `name` (for styling, e.g. `data-state`).
    pub fn set_attr(&self, name: &str, attr: &str, value: &str) {
        for (n, e) in &self.elements {
            if *n == name {
                let _ = e.set_attribute(attr, value);
            }
        }
    }
}

/// A counter reported by a source that may start over from zero (this
/// tab's Web Worker, replaced after the page was frozen): the total keeps
/// what earlier sources counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunningTotal {
    earlier: u64,
    current: u64,
}

impl RunningTotal {
    /// The source now reports `n`; less than before means it started over.
    pub fn update(&mut self, n: u64) {
        if n < self.current {
            self.earlier = self.earlier.saturating_add(self.current);
        }
        self.current = n;
    }

    /// Everything counted, by this source and the earlier ones.
    pub fn total(&self) -> u64 {
        self.earlier.saturating_add(self.current)
    }
}

/// `n` with thousands separators: `1234567` → `"1,234,567"`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Buffer depth as seconds at `fps`: `"4.0 s (240)"`.
pub fn buffer_text(frames: u32, fps: u16) -> String {
    let fps = if fps == 0 { 60.0 } else { f64::from(fps) };
    format!(
        "{:.1} s ({})",
        f64::from(frames) / fps,
        group(u64::from(frames))
    )
}

/// The playback row: distinct frames drawn over the last second.
pub fn playback_text(fps: usize) -> String {
    format!("{fps} fps")
}

/// The connection's state as one word, for the connection row's
/// `data-state` (the stylesheet's hook) and the `connectionState()` probe:
/// `"suspended"`, `"connecting"`, `"live"`, `"reconnecting"` or
/// `"outdated"`.
pub fn connection_name(state: State) -> &'static str {
    match state {
        State::Off => "suspended",
        State::Connecting => "connecting",
        State::Open => "live",
        State::Waiting { .. } => "reconnecting",
        State::Outdated { .. } => "outdated",
    }
}

/// The connection row: the socket's `state`, the ms until it retries
/// (`retry_in_ms`, while waiting) and the frames buffered ahead of the
/// playback clock (`ahead`, while live).
pub fn connection_text(state: State, retry_in_ms: Option<f64>, ahead: usize) -> String {
    match state {
        State::Waiting { .. } => format!(
            "reconnecting in {:.1} s",
            retry_in_ms.unwrap_or(0.0) / 1000.0
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
    }
}

/// The timeline row: the version held (0: nobody has steered) and the
/// `Input` messages this page sent.
pub fn timeline_text(version: u32, sent: u64) -> String {
    match (version, sent) {
        (0, 0) => "not yet".to_owned(),
        (v, 0) => format!("version {v}"),
        (v, sent) => format!("version {v} · {} pushes from here", group(sent)),
    }
}

/// What this tab's own Web Worker last reported, for the panel's "mine"
/// and "cost" rows.
#[derive(Clone, Copy, Debug, Default)]
pub struct Contribution {
    /// The page's switch.
    pub on: bool,
    /// `None` until the worker first reports.
    pub state: Option<WorkerState>,
    /// Frames rendered, across workers (the page starts a fresh one after
    /// a freeze).
    pub rendered: RunningTotal,
    /// Frames the server took, across workers.
    pub contributed: RunningTotal,
    /// Milliseconds the workers spent rendering: what contributing cost.
    pub busy_ms: RunningTotal,
    /// The worker's budget, in thousandths of one core (0: not reported
    /// yet).
    pub budget_permille: u64,
    /// Its load over the last second, in thousandths of one core.
    pub load_permille: u64,
}

/// The "mine" row: what this tab contributed.
pub fn mine_text(c: &Contribution) -> String {
    match (c.on, c.state) {
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
    }
}

/// The "cost" row: what contributing cost this tab, the workers' busy time
/// (the CPU it took), the share of a core over the last second while on,
/// and the budget.
pub fn cost_text(c: &Contribution) -> String {
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

/// The fleet's peer relay figures, for the "peers" row.
pub fn peers_text(t: &Telemetry) -> String {
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

/// The rows a `Telemetry` message fills, as `(data-stat name, text)`.
pub fn telemetry_rows(t: &Telemetry) -> [(&'static str, String); 7] {
    [
        ("workers", group(u64::from(t.workers))),
        ("viewers", group(u64::from(t.viewers))),
        ("fleet-fps", group(u64::from(t.fleet_fps))),
        ("buffer", buffer_text(t.buffered_frames, t.fps)),
        ("verified", group(t.batches_verified)),
        ("peers", peers_text(t)),
        (
            "rejected",
            format!(
                "{} ({} banned)",
                group(t.batches_rejected),
                group(u64::from(t.workers_banned))
            ),
        ),
    ]
}

/// This tab's place in the relay tree, as the "relay" row shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayPlace {
    /// The engine has WebRTC.
    pub webrtc: bool,
    /// The tab joined the tree.
    pub joined: bool,
    /// Its peer id, once the server gave one (none: the server does not
    /// offer the relay).
    pub id: Option<u64>,
    /// The assigned parent ([`SERVER`]: 0, or a peer id).
    pub parent: u64,
    /// Whether the parent's data channel is open.
    pub parent_open: bool,
    /// Children whose channel is open.
    pub children: usize,
}

/// The "relay" row.
pub fn relay_text(r: &RelayPlace) -> String {
    if !r.webrtc {
        return "not in this browser (no WebRTC; served by the server)".to_owned();
    }
    if !r.joined {
        return "off (served by the server only)".to_owned();
    }
    if r.id.is_none() {
        return "not offered by the server (served by it)".to_owned();
    }
    let from = match (r.parent, r.parent_open) {
        (SERVER, _) => "fed by the server".to_owned(),
        (p, true) => format!("fed by viewer #{p}"),
        (p, false) => format!("connecting to viewer #{p}…"),
    };
    format!("{from} · relaying to {}", r.children)
}

/// The `refused` row after `n` of this tab's pushes were refused, the
/// latest for `reason` (`InputRefused`).
pub fn refusal_text(n: u32, reason: donut_shared::wire::Refusal) -> String {
    let pushes = if n == 1 { "push" } else { "pushes" };
    format!("{n} {pushes} {}", reason.text())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn a_running_total_survives_its_source_starting_over() {
        let mut t = RunningTotal::default();
        t.update(100);
        t.update(250);
        assert_eq!(t.total(), 250);
        // A fresh worker starts from zero.
        t.update(0);
        assert_eq!(t.total(), 250);
        t.update(40);
        assert_eq!(t.total(), 290);
        t.update(40);
        assert_eq!(t.total(), 290);
    }

    #[test]
    fn the_connection_row_says_the_state_and_what_follows() {
        assert_eq!(connection_name(State::Open), "live");
        assert_eq!(connection_name(State::Off), "suspended");
        assert_eq!(
            connection_name(State::Waiting { until_ms: 5.0 }),
            "reconnecting"
        );
        assert_eq!(connection_name(State::Connecting), "connecting");
        assert_eq!(
            connection_name(State::Outdated { server: None }),
            "outdated"
        );
        assert_eq!(
            connection_text(State::Open, None, 42),
            "live · 42 frames buffered here"
        );
        assert_eq!(
            connection_text(State::Waiting { until_ms: 0.0 }, Some(1_250.0), 0),
            "reconnecting in 1.2 s"
        );
        assert_eq!(connection_text(State::Connecting, None, 0), "connecting…");
        assert_eq!(
            connection_text(State::Off, None, 9),
            "paused while the page is hidden"
        );
        let v = donut_shared::wire::PROTOCOL_VERSION;
        assert_eq!(
            connection_text(State::Outdated { server: Some(9) }, None, 0),
            format!(
                "this page is out of date (the server speaks protocol 9, this page {v}): \
                 reload the page"
            )
        );
        assert!(
            connection_text(State::Outdated { server: None }, None, 0).contains("protocol another")
        );
    }

    #[test]
    fn the_playback_and_timeline_rows() {
        assert_eq!(playback_text(60), "60 fps");
        assert_eq!(timeline_text(0, 0), "not yet");
        assert_eq!(timeline_text(3, 0), "version 3");
        assert_eq!(
            timeline_text(3, 1_500),
            "version 3 · 1,500 pushes from here"
        );
    }

    #[test]
    fn the_contribution_rows() {
        let mut c = Contribution::default();
        assert_eq!(mine_text(&c), "off (watching only)");
        c.busy_ms.update(2_500);
        assert_eq!(cost_text(&c), "2.5 s CPU (not contributing)");
        c.on = true;
        assert_eq!(mine_text(&c), "starting…");
        c.load_permille = 125;
        assert_eq!(cost_text(&c), "2.5 s CPU · 12.5% of a core");
        c.budget_permille = 500;
        assert_eq!(cost_text(&c), "2.5 s CPU · 12.5% of a core of 50% budget");
        c.state = Some(WorkerState::Connected);
        c.contributed.update(1_200);
        c.rendered.update(1_300);
        assert_eq!(mine_text(&c), "1,200 frames (1,300 rendered)");
        c.state = Some(WorkerState::Reconnecting);
        assert_eq!(mine_text(&c), "reconnecting · 1,200 frames");
    }

    #[test]
    fn the_telemetry_rows() {
        let mut t = Telemetry {
            fps: 60,
            workers: 1_234,
            viewers: 7,
            fleet_fps: 480,
            buffered_frames: 240,
            batches_verified: 10_000,
            batches_rejected: 3,
            workers_banned: 1,
            ..Telemetry::default()
        };
        let rows = telemetry_rows(&t);
        let text = |name: &str| {
            rows.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.clone())
                .unwrap_or_default()
        };
        assert_eq!(text("workers"), "1,234");
        assert_eq!(text("viewers"), "7");
        assert_eq!(text("fleet-fps"), "480");
        assert_eq!(text("buffer"), "4.0 s (240)");
        assert_eq!(text("verified"), "10,000");
        assert_eq!(text("rejected"), "3 (1 banned)");
        assert_eq!(text("peers"), "none linked");
        for (name, _) in &rows {
            assert!(STATS.contains(name), "{name} is a panel stat");
        }
        t.peers_linked = 2;
        t.offload_permille = 625;
        t.p2p_fallbacks = 1_001;
        t.digest_mismatches = 4;
        assert_eq!(
            peers_text(&t),
            "2 fed by peers · 62.5% of bytes, proven, last min · 1,001 fallbacks · 4 bad"
        );
    }

    #[test]
    fn a_refused_push_says_so_and_why() {
        use donut_shared::wire::Refusal;
        assert_eq!(
            refusal_text(1, Refusal::Unreachable),
            "1 push not applied: the cluster's store is unreachable"
        );
        assert_eq!(
            refusal_text(3, Refusal::Lost),
            "3 pushes not applied: the cluster's store lost it"
        );
    }

    #[test]
    fn the_relay_row() {
        let mut r = RelayPlace::default();
        assert_eq!(
            relay_text(&r),
            "not in this browser (no WebRTC; served by the server)"
        );
        r.webrtc = true;
        assert_eq!(relay_text(&r), "off (served by the server only)");
        r.joined = true;
        assert_eq!(relay_text(&r), "not offered by the server (served by it)");
        r.id = Some(5);
        assert_eq!(relay_text(&r), "fed by the server · relaying to 0");
        r.parent = 9;
        assert_eq!(relay_text(&r), "connecting to viewer #9… · relaying to 0");
        r.parent_open = true;
        r.children = 2;
        assert_eq!(relay_text(&r), "fed by viewer #9 · relaying to 2");
    }

    #[test]
    fn buffer_in_seconds() {
        assert_eq!(buffer_text(240, 60), "4.0 s (240)");
        assert_eq!(buffer_text(90, 0), "1.5 s (90)");
    }
}
