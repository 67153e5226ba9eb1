//! The browser tests' harness: the real server binary on a free loopback
//! port, headless Chromium or Firefox behind its WebDriver, tabs, and the
//! polling helpers. Shared by `tests/browser.rs` and `tests/p2p_browser.rs`.
#![allow(dead_code)] // each test file uses a part

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fantoccini::Client;
use fantoccini::wd::WindowHandle;
use serde_json::Value;

use crate::chromium::{self, Proc};

// WebKitGTK's launcher lives beside Chromium's and Firefox's; it is only
// reached through [`Browser::webkit`], so it is a part of this harness.
#[path = "../webkit/mod.rs"]
pub mod webkit;
use crate::firefox;

/// Generous limit so a broken test fails instead of hanging.
pub const HANG: Duration = Duration::from_secs(90);
/// Poll interval while waiting for a condition.
pub const POLL: Duration = Duration::from_millis(200);

/// One browser test at a time.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub const HOW_TO_FIX: &str = "run ./build.sh test (it installs Chromium, chromedriver, Firefox, geckodriver, WebKitGTK's WebKitWebDriver and Xvfb and builds the wasm packages into www/pkg)";

pub fn www() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../www")
}

/// Fails the test, with instructions, if anything the browser tests need
/// is missing.
pub fn require_prerequisites(browser: [PathBuf; 2]) {
    let mut missing = Vec::new();
    for p in browser {
        if !p.is_file() {
            missing.push(p.display().to_string());
        }
    }
    for p in [
        "pkg/worker/donut_worker.js",
        "pkg/worker/donut_worker_bg.wasm",
        "pkg/viewer/donut_viewer.js",
        "pkg/viewer/donut_viewer_bg.wasm",
    ] {
        let p = www().join(p);
        if !p.is_file() {
            missing.push(p.display().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "missing {}: {HOW_TO_FIX}",
        missing.join(", ")
    );
}

pub fn free_port() -> u16 {
    chromium::free_port().expect("a free loopback port")
}

pub fn wait_for_port(port: u16, what: &str) {
    chromium::wait_for_port(port, what, HANG).unwrap_or_else(|e| panic!("{e}"));
}

pub fn http_get(port: u16, path: &str) -> String {
    chromium::http_get(port, path, HANG).unwrap_or_else(|e| panic!("{e}"))
}

/// The real server binary.
pub struct Server {
    /// Its port on 127.0.0.1.
    pub port: u16,
    _proc: Proc,
}

impl Server {
    pub fn start(extra: &[&str]) -> Self {
        Self::start_on(free_port(), extra)
    }

    /// The server on `port` with `extra` flags. Its first-visit default is
    /// `--contribute-default on` (the tests that open `/` and expect a
    /// worker predate the question); a test about the question passes
    /// `--contribute-default` itself, which overrides it.
    pub fn start_on(port: u16, extra: &[&str]) -> Self {
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_donut"))
            .args(["serve", "--listen", &listen, "--verify", "full"])
            .args(extra)
            .env("DONUT_CONTRIBUTE_DEFAULT", "on")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the donut binary");
        let proc = Proc(child);
        wait_for_port(port, "the server");
        Self { port, _proc: proc }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn stats(&self) -> Value {
        serde_json::from_str(&http_get(self.port, "/api/stats")).expect("/api/stats is JSON")
    }

    pub fn stat(&self, name: &str) -> u64 {
        let v = self.stats();
        v[name]
            .as_u64()
            .unwrap_or_else(|| panic!("/api/stats has no counter {name}: {v}"))
    }

    /// A native worker (`donut work`), for tests about pure viewers.
    pub fn native_worker(&self) -> Proc {
        let server = format!("ws://127.0.0.1:{}", self.port);
        let child = Command::new(env!("CARGO_BIN_EXE_donut"))
            .args(["work", "--server", &server, "--threads", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a native worker");
        Proc(child)
    }
}

/// Headless Chromium behind its own chromedriver and a fresh profile.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    /// The open tabs, in the order they were opened.
    pub tabs: Vec<WindowHandle>,
    _driver: Proc,
    profile: PathBuf,
    /// The virtual X display a WebKitGTK session runs on.
    _display: Option<Proc>,
}

impl Browser {
    pub async fn launch(device_scale: f64) -> Self {
        let scale = format!("--force-device-scale-factor={device_scale}");
        Self::chromium(&[scale]).await
    }

    /// Chromium with `extra` command-line flags.
    pub async fn chromium(extra: &[String]) -> Self {
        require_prerequisites([chromium::chromium(), chromium::chromedriver()]);
        let s = chromium::launch(extra, HANG)
            .await
            .unwrap_or_else(|e| panic!("{e}: {HOW_TO_FIX}"));
        Self::with(s)
    }

    /// Firefox with `prefs` on top of the quiet ones.
    pub async fn firefox(prefs: &[(&str, Value)]) -> Self {
        require_prerequisites([firefox::firefox(), firefox::geckodriver()]);
        let s = firefox::launch(prefs, HANG)
            .await
            .unwrap_or_else(|e| panic!("{e}: {HOW_TO_FIX}"));
        Self::with(s)
    }

    pub fn with(s: chromium::Session) -> Self {
        Self {
            client: s.client,
            tabs: Vec::new(),
            _driver: s.driver,
            profile: s.profile,
            _display: None,
        }
    }

    /// WebKitGTK's MiniBrowser on its own virtual X display (see
    /// `tests/webkit`).
    pub async fn webkit() -> Self {
        require_prerequisites([webkit::driver(), webkit::minibrowser()]);
        require_prerequisites([webkit::xvfb(), webkit::xvfb()]);
        let (s, display) = webkit::launch(HANG)
            .await
            .unwrap_or_else(|e| panic!("{e}: {HOW_TO_FIX}"));
        Self {
            client: s.client,
            tabs: Vec::new(),
            _driver: s.driver,
            profile: s.profile,
            _display: Some(display),
        }
    }

    /// Loads `url` in the first tab without waiting for the viewer (for
    /// pages that must not start one).
    pub async fn goto(&mut self, url: &str) {
        if self.tabs.is_empty() {
            let handle = self.client.window().await.expect("the initial window");
            self.tabs.push(handle);
        }
        self.focus(0).await;
        self.client.goto(url).await.expect("load the page");
    }

    /// A CDP command in the current tab (Chromium only).
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        chromium::cdp(&self.client, cmd, params)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Opens `url` in a new tab (the first in the initial window) and waits
    /// for the viewer to be running there. Returns the tab's index.
    pub async fn open(&mut self, url: &str) -> usize {
        let handle = if self.tabs.is_empty() {
            self.client.window().await.expect("the initial window")
        } else {
            // A window rather than a background tab: headless Chromium
            // does not run a background tab's requestAnimationFrame, and
            // these tests watch every page play.
            let w = self.client.new_window(false).await.expect("open a window");
            w.handle
        };
        self.client
            .switch_to_window(handle.clone())
            .await
            .expect("switch to the new tab");
        self.client.goto(url).await.expect("load the page");
        self.tabs.push(handle);
        let tab = self.tabs.len() - 1;
        eventually(&format!("the viewer to start in tab {tab}"), async || {
            self.js("return typeof window.donutViewer === 'object' && window.donutViewer !== null")
                .await
                .as_bool()
                .filter(|ok| *ok)
        })
        .await;
        tab
    }

    pub async fn focus(&self, tab: usize) {
        self.client
            .switch_to_window(self.tabs[tab].clone())
            .await
            .expect("switch tabs");
    }

    /// Closes tab `tab` (and focuses the first remaining one).
    pub async fn close(&mut self, tab: usize) {
        self.focus(tab).await;
        self.client.close_window().await.expect("close the tab");
        self.tabs.remove(tab);
        if !self.tabs.is_empty() {
            self.focus(0).await;
        }
    }

    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script failed ({e}): {script}"))
    }

    /// The panel's rows in tab `tab`: (label, figure) in page order.
    pub async fn panel_rows(&self, tab: usize) -> Vec<(String, String)> {
        self.focus(tab).await;
        let rows = self
            .js(
                "return [...document.querySelectorAll('[data-panel] dl dt')]\
                 .map(dt => [dt.textContent, dt.nextElementSibling.textContent])",
            )
            .await;
        rows.as_array()
            .expect("the panel's rows")
            .iter()
            .map(|r| {
                let s = |i: usize| r[i].as_str().unwrap_or_default().to_owned();
                (s(0), s(1))
            })
            .collect()
    }

    /// The viewer's counters in tab `tab`.
    pub async fn viewer_stats(&self, tab: usize) -> Value {
        self.focus(tab).await;
        self.js("return window.donutViewer.stats()").await
    }

    /// The frame on screen in tab `tab`.
    pub async fn current_frame(&self, tab: usize) -> Option<u64> {
        self.focus(tab).await;
        self.js("return window.donutViewer.currentFrame() ?? null")
            .await
            .as_f64()
            .map(|f| f as u64)
    }

    /// Waits until tab `tab` shows a frame at least `frames` past `from`.
    pub async fn wait_playing_past(&self, tab: usize, from: u64, frames: u64) -> u64 {
        eventually(
            &format!("tab {tab} to play {frames} frames past {from}"),
            async || {
                self.current_frame(tab)
                    .await
                    .filter(|f| *f >= from + frames)
            },
        )
        .await
    }

    pub async fn quit(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    /// A test that panics never reaches [`Browser::quit`], and killing the
    /// WebDriver server leaves its browser running (with every renderer,
    /// playing at 60 fps: CPU every later test pays for). Whatever still
    /// runs with this session's fresh profile is killed, then the profile
    /// removed.
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-9", "-f"])
            .arg(self.profile.display().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Polls `f` until it returns `Some`, failing after [`HANG`].
pub async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + HANG;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Runs one browser test at a time, on a multi-threaded runtime.
pub fn serial<F: Future<Output = ()>>(test: F) {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(test);
}

pub fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {key} in {v}")) as u64
}
