//! Headless Chromium behind its own chromedriver, and the loopback plumbing
//! around it: shared by the browser tests (`tests/browser.rs`), the
//! start-up bench (`benches/startup.rs`, which includes this file by path)
//! and the other benches' `support` (for `/api/stats`), so the flags this
//! machine's Chromium needs and the HTTP helper are written once.
//!
//! Errors are strings, so the tests can panic with instructions and the
//! bench can report and stop.
#![allow(dead_code)] // each user takes a part

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use fantoccini::elements::Element;
use fantoccini::wd::WindowHandle;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Chromium binary: `DONUT_CHROMIUM`, or Debian's.
pub fn chromium() -> PathBuf {
    env_path("DONUT_CHROMIUM", "/usr/bin/chromium")
}

/// The chromedriver binary: `DONUT_CHROMEDRIVER`, or Debian's.
pub fn chromedriver() -> PathBuf {
    env_path("DONUT_CHROMEDRIVER", "/usr/bin/chromedriver")
}

/// `$var` as a path, or `default`.
pub fn env_path(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// A loopback port free a moment ago.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16, what: &str, limit: Duration) -> Result<(), String> {
    wait_for_addr(SocketAddr::from(([127, 0, 0, 1], port)), what, limit)
}

/// Waits until something accepts connections on `addr`.
pub fn wait_for_addr(addr: SocketAddr, what: &str, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{what} never listened on {addr}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A minimal HTTP/1.0 GET on loopback; the body of a 200 response.
pub fn http_get(port: u16, path: &str, limit: Duration) -> Result<String, String> {
    http_get_at(SocketAddr::from(([127, 0, 0, 1], port)), path, limit)
}

/// A minimal HTTP/1.0 GET to `addr`; the body of a 200 response.
pub fn http_get_at(addr: SocketAddr, path: &str, limit: Duration) -> Result<String, String> {
    use std::io::{Read, Write};
    let fail = |e: std::io::Error| format!("GET {path}: {e}");
    let mut s = TcpStream::connect(addr).map_err(fail)?;
    s.set_read_timeout(Some(limit)).map_err(fail)?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(fail)?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(fail)?;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: not an HTTP response"))?;
    if !(head.starts_with("HTTP/1.") && head.contains(" 200 ")) {
        return Err(format!("GET {path}: {head}"));
    }
    Ok(body.to_owned())
}

/// `GET /api/stats` as JSON.
pub fn stats(port: u16, limit: Duration) -> Result<Value, String> {
    let body = http_get(port, "/api/stats", limit)?;
    serde_json::from_str(&body).map_err(|e| format!("/api/stats is not JSON: {e}"))
}

/// A browser session: the WebDriver client, its chromedriver, and the
/// fresh profile directory (remove it when done).
pub struct Session {
    /// The WebDriver client.
    pub client: Client,
    /// The chromedriver process.
    pub driver: Proc,
    /// The profile directory.
    pub profile: PathBuf,
}

/// Starts chromedriver on a free port and a headless Chromium with a fresh
/// profile and a 1280x720 window; `extra` flags are appended.
pub async fn launch(extra: &[String], limit: Duration) -> Result<Session, String> {
    let (driver, port) = start_driver(&chromedriver(), limit)?;
    let profile =
        std::env::temp_dir().join(format!("donut-chromium-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    // What headless Chromium needs on these machines (no sandbox, no GPU),
    // and nothing that phones home during a measurement.
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,720",
    ]
    .map(str::to_owned)
    .to_vec();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.extend_from_slice(extra);
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium().display().to_string(),
            "args": args,
        },
    });
    open_session(caps, (driver, port), profile, "Chromium").await
}

/// Starts a WebDriver server (chromedriver, geckodriver) on a free port and
/// waits until it listens; returns it and its port.
pub fn start_driver(binary: &std::path::Path, limit: Duration) -> Result<(Proc, u16), String> {
    let port = free_port()?;
    let driver = Proc(
        Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {}: {e}", binary.display()))?,
    );
    let name = binary
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    wait_for_port(port, &name, limit)?;
    Ok((driver, port))
}

/// Opens a session with capabilities `caps` on the WebDriver server
/// `driver` (listening on its port) for `browser` (named in errors).
pub async fn open_session(
    caps: Value,
    (driver, port): (Proc, u16),
    profile: PathBuf,
    browser: &str,
) -> Result<Session, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    open_session_at(caps, (driver, addr), profile, browser).await
}

/// [`open_session`] with the WebDriver server listening on `addr`.
pub async fn open_session_at(
    caps: Value,
    (driver, addr): (Proc, SocketAddr),
    profile: PathBuf,
    browser: &str,
) -> Result<Session, String> {
    let Value::Object(caps) = caps else {
        return Err("capabilities are not an object".to_owned());
    };
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://{addr}"))
        .await
        .map_err(|e| format!("start headless {browser}: {e}"))?;
    Ok(Session {
        client,
        driver,
        profile,
    })
}

/// A Chrome DevTools Protocol command, sent through chromedriver's
/// `goog/cdp/execute` endpoint (W3C WebDriver has no way to run a script
/// before a page's own, or to freeze a page).
#[derive(Debug)]
struct Cdp {
    cmd: String,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({"cmd": self.cmd, "params": self.params});
        (http::Method::POST, Some(body.to_string()))
    }
}

/// Runs CDP command `cmd` with `params` in the current tab; its result.
pub async fn cdp(client: &Client, cmd: &str, params: Value) -> Result<Value, String> {
    client
        .issue_cmd(Cdp {
            cmd: cmd.to_owned(),
            params,
        })
        .await
        .map_err(|e| format!("CDP {cmd}: {e}"))
}

/// A live stream for the benches: the `donut` binary `bin` serving on a
/// free loopback port with `serve_args`, one native worker (one thread),
/// and batches already broadcast. Both processes stop when it is dropped.
pub struct LiveStream {
    /// The server's port on 127.0.0.1.
    pub port: u16,
    _server: Proc,
    _worker: Proc,
}

impl LiveStream {
    /// Starts it, waiting up to `limit` for each step.
    pub fn start(
        bin: &std::path::Path,
        serve_args: &[&str],
        limit: Duration,
    ) -> Result<Self, String> {
        let spawn = |args: &[&str]| {
            Command::new(bin)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map(Proc)
                .map_err(|e| format!("starting {}: {e}", bin.display()))
        };
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let server = spawn(&[&["serve", "--listen", &listen][..], serve_args].concat())?;
        wait_for_port(port, "the server", limit)?;
        let url = format!("ws://{listen}");
        let worker = spawn(&["work", "--server", &url, "--threads", "1"])?;
        let deadline = Instant::now() + limit;
        while stats(port, limit)?["broadcast_batches"]
            .as_u64()
            .unwrap_or(0)
            < 2
        {
            if Instant::now() > deadline {
                return Err(format!(
                    "the stream never went live: {}",
                    stats(port, limit)?
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Self {
            port,
            _server: server,
            _worker: worker,
        })
    }
}

/// Runs `script` in window `tab` (switching to it first): its value.
pub async fn js_in(client: &Client, tab: &WindowHandle, script: &str) -> Result<Value, String> {
    client
        .switch_to_window(tab.clone())
        .await
        .map_err(|e| format!("switch to a window: {e}"))?;
    client
        .execute(script, Vec::new())
        .await
        .map_err(|e| format!("run a script: {e}"))
}

/// Runs `probe` in window `tab` every `every` until it returns non-null
/// (that value), or fails after `limit` naming `what`.
pub async fn until_in(
    client: &Client,
    tab: &WindowHandle,
    what: &str,
    probe: &str,
    every: Duration,
    limit: Duration,
) -> Result<Value, String> {
    let deadline = Instant::now() + limit;
    loop {
        let v = js_in(client, tab, probe).await?;
        if !v.is_null() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(every).await;
    }
}

/// One [`steering_drag`] across the donut canvas of window `tab`, the
/// pointer released after it.
pub async fn drag_in(client: &Client, tab: &WindowHandle) -> Result<(), String> {
    client
        .switch_to_window(tab.clone())
        .await
        .map_err(|e| format!("switch to a window: {e}"))?;
    let canvas = client
        .find(Locator::Id("donut"))
        .await
        .map_err(|e| format!("the canvas: {e}"))?;
    client
        .perform_actions(steering_drag(canvas))
        .await
        .map_err(|e| format!("drag: {e}"))?;
    client
        .release_actions()
        .await
        .map_err(|e| format!("release the pointer: {e}"))
}

/// The steering drag of the tests and the bench: from left of the canvas'
/// centre, right and a little down in 4 moves 50 ms apart (`x` 400 px,
/// `y` 80 px in all).
pub fn steering_drag(canvas: Element) -> MouseActions {
    let mut drag = MouseActions::new("mouse".to_owned())
        .then(PointerAction::MoveToElement {
            element: canvas,
            duration: None,
            x: -200.0,
            y: -40.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        });
    for _ in 0..4 {
        drag = drag.then(PointerAction::MoveBy {
            duration: Some(Duration::from_millis(50)),
            x: 100.0,
            y: 20.0,
        });
    }
    drag.then(PointerAction::Up {
        button: MOUSE_BUTTON_LEFT,
    })
}

/// A continuous spin: pointer down on the canvas, then `moves` moves of
/// `step` each, around a circle of radius 120 px once every 60 moves (so
/// the push keeps changing direction, as a player winding the donut does),
/// then up. Used by the steer bench's continuous phase.
pub fn spinning_drag(canvas: Element, moves: usize, step: Duration) -> MouseActions {
    let mut drag = MouseActions::new("mouse".to_owned())
        .then(PointerAction::MoveToElement {
            element: canvas,
            duration: None,
            x: 0.0,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        });
    let radius = 120.0;
    let point = |k: usize| {
        let angle = std::f64::consts::TAU * (k % 60) as f64 / 60.0;
        (radius * angle.cos(), radius * angle.sin())
    };
    for k in 0..moves {
        let (x0, y0) = point(k);
        let (x1, y1) = point(k + 1);
        drag = drag.then(PointerAction::MoveBy {
            duration: Some(step),
            x: (x1 - x0).round(),
            y: (y1 - y0).round(),
        });
    }
    drag.then(PointerAction::Up {
        button: MOUSE_BUTTON_LEFT,
    })
}
