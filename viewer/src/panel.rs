//! The telemetry panel: plain DOM text the viewer fills in.
//!
//! The page declares the panel in HTML with `data-stat` attributes; the
//! viewer finds them once and sets their text. Keeping the numbers in wasm
//! keeps the shim free of logic, and a missing element is simply skipped.
//! The panel itself (`[data-panel]`) carries `data-stale` while the figures
//! are not live (the server is unreachable), and the stylesheet dims them.

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

/// Pushes from this tab the server refused so far (`InputRefused`).
static REFUSED: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Shows on the panel (stat `refused`) that one of this tab's pushes was
/// not applied, and why: the count so far and the latest reason.
pub fn show_refusal(panel: &Panel, reason: donut_shared::wire::Refusal) {
    let n = REFUSED.fetch_add(1, core::sync::atomic::Ordering::Relaxed) + 1;
    panel.set("refused", &refusal_text(n, reason));
}

/// The panel's text after `n` refused pushes, the latest for `reason`.
pub fn refusal_text(n: u32, reason: donut_shared::wire::Refusal) -> String {
    let pushes = if n == 1 { "push" } else { "pushes" };
    format!("{n} {pushes} {}", reason.text())
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
    fn buffer_in_seconds() {
        assert_eq!(buffer_text(240, 60), "4.0 s (240)");
        assert_eq!(buffer_text(90, 0), "1.5 s (90)");
    }
}
