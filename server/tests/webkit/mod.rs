//! WebKitGTK (Safari's engine family) behind its own `WebKitWebDriver`, for
//! the browser tests (`tests/browser.rs`; a submodule of `tests/pages`): the same W3C WebDriver client
//! (fantoccini) as Chromium and Firefox. Debian's `webkit2gtk-driver` drives
//! its `MiniBrowser` (`--automation`), a GTK program, so each session gets
//! its own virtual X display (`Xvfb`, Debian's `xvfb`, what `xvfb-run`
//! starts) on a free display number; `./build.sh test` installs both.
//!
//! WebKitGTK 2.50 as Debian builds it has WebAssembly with SIMD but no
//! WebRTC (`RTCPeerConnection` is undefined): the engine the page must
//! play on without the peer relay.
#![allow(dead_code)] // each user takes a part

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::chromium::{Proc, Session, env_path, free_port, open_session, wait_for_port};

/// The WebDriver server: `DONUT_WEBKITDRIVER`, or Debian's.
pub fn driver() -> PathBuf {
    env_path("DONUT_WEBKITDRIVER", "/usr/bin/WebKitWebDriver")
}

/// The browser it drives: `DONUT_MINIBROWSER`, or Debian's (multiarch
/// path, found under `/usr/lib/*/webkit2gtk-4.1/`).
pub fn minibrowser() -> PathBuf {
    if let Some(p) = std::env::var_os("DONUT_MINIBROWSER") {
        return PathBuf::from(p);
    }
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("webkit2gtk-4.1/MiniBrowser"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| PathBuf::from("/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser"))
}

/// The X server: `DONUT_XVFB`, or Debian's.
pub fn xvfb() -> PathBuf {
    env_path("DONUT_XVFB", "/usr/bin/Xvfb")
}

/// A virtual X display on a free number (`:N`), killed when dropped.
pub fn start_display(limit: Duration) -> Result<(Proc, u32), String> {
    // Display numbers from 200 up whose socket and lock are not taken.
    let base = 200 + std::process::id() % 500;
    let number = (base..base + 500)
        .find(|n| {
            !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
        })
        .ok_or("no free X display number")?;
    let proc = Proc(
        Command::new(xvfb())
            .args([
                format!(":{number}"),
                "-screen".to_owned(),
                "0".to_owned(),
                "1280x900x24".to_owned(),
                "-nolisten".to_owned(),
                "tcp".to_owned(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {}: {e}", xvfb().display()))?,
    );
    let socket = format!("/tmp/.X11-unix/X{number}");
    let deadline = Instant::now() + limit;
    while !Path::new(&socket).exists() {
        if Instant::now() > deadline {
            return Err(format!("Xvfb never opened display :{number}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((proc, number))
}

/// Starts a virtual display, `WebKitWebDriver` on a free port on it, and a
/// `MiniBrowser` session (an ephemeral profile; `profile` is an empty
/// directory for the harness to remove). Returns the session and the
/// display, which must outlive it.
pub async fn launch(limit: Duration) -> Result<(Session, Proc), String> {
    let (display, number) = start_display(limit)?;
    let port = free_port()?;
    let driver = Proc(
        Command::new(driver())
            .arg(format!("--port={port}"))
            .env("DISPLAY", format!(":{number}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {}: {e}", driver().display()))?,
    );
    wait_for_port(port, "WebKitWebDriver", limit)?;
    let profile = std::env::temp_dir().join(format!("donut-webkit-{}-{port}", std::process::id()));
    let _ = std::fs::create_dir_all(&profile);
    let caps = json!({
        "webkitgtk:browserOptions": {
            "binary": minibrowser().display().to_string(),
            "args": ["--automation"],
        },
    });
    let session = open_session(caps, (driver, port), profile, "WebKitGTK").await?;
    Ok((session, display))
}
