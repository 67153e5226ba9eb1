//! The page in an old engine: Debian's QtWebEngine 5.15, whose Chromium 87
//! is the engine generation of 2021-2022 smart TVs (LG webOS 22, Samsung
//! Tizen 6.5: Chromium 85-87). It has WebAssembly but not SIMD or reference
//! types, and it cannot parse a top-level `await`; before the classic-script
//! bootstrap (`www/support.js`) and the compatibility build
//! (`www/pkg/*-compat`) it showed "starting…" forever.
//!
//! Each test starts the real `donut` binary and drives QtWebEngine on Qt's
//! offscreen platform from a small Python script
//! (`tests/qtwebengine/drive.py`, run with `/usr/bin/python3` or
//! `$DONUT_PYTHON`), which prints what the page shows four times a second
//! and every console message. The tests fail, never skip, when Python or
//! PyQt5's QtWebEngine is missing: `./build.sh test` installs
//! `python3-pyqt5.qtwebengine`.

mod chromium;
mod firefox;
mod pages;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pages::*;
use serde_json::Value;

fn python() -> PathBuf {
    chromium::env_path("DONUT_PYTHON", "/usr/bin/python3")
}

fn driver() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/qtwebengine/drive.py")
}

/// What the driver printed.
#[derive(Default)]
struct Run {
    ua: String,
    /// The page's state, four times a second.
    states: Vec<Value>,
    /// Every console message: (level, text, source:line).
    console: Vec<(u64, String, String)>,
}

impl Run {
    fn errors(&self) -> Vec<String> {
        self.console
            .iter()
            .filter(|(level, _, _)| *level >= 2)
            .map(|(_, m, at)| format!("{m} ({at})"))
            .collect()
    }

    /// Every frame seen on screen, with its text.
    fn frames(&self) -> BTreeMap<u64, String> {
        self.states
            .iter()
            .filter_map(|s| Some((s["frame"].as_f64()? as u64, s["text"].as_str()?.to_owned())))
            .collect()
    }
}

/// Loads `url` in QtWebEngine for `seconds`, then closes it.
fn qtwebengine(url: &str, seconds: u32) -> Run {
    let python = python();
    let check = Command::new(&python)
        .args(["-c", "import PyQt5.QtWebEngineWidgets"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: the QtWebEngine tests need Python 3 with PyQt5's QtWebEngine: \
                 run ./build.sh test (it installs python3-pyqt5.qtwebengine)",
                python.display()
            )
        });
    assert!(
        check.status.success(),
        "{} cannot import PyQt5.QtWebEngineWidgets ({}): run ./build.sh test \
         (it installs python3-pyqt5.qtwebengine)",
        python.display(),
        String::from_utf8_lossy(&check.stderr).trim()
    );
    let mut child = Command::new(&python)
        .arg(driver())
        .arg(url)
        .arg(seconds.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the QtWebEngine driver");
    let mut run = Run::default();
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read the driver's output");
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(ua) = v["ua"].as_str() {
            run.ua = ua.to_owned();
        } else if let Some(level) = v["console"].as_u64() {
            let text = v["message"].as_str().unwrap_or_default().to_owned();
            let at = format!("{}:{}", v["source"].as_str().unwrap_or("?"), v["line"]);
            eprintln!("console[{level}]: {text} ({at})");
            run.console.push((level, text, at));
        } else if !v["state"].is_null() {
            run.states.push(v["state"].clone());
        }
    }
    let status = child.wait().expect("wait for the driver");
    assert!(status.success(), "the QtWebEngine driver failed: {status}");
    run
}

/// `donut render --from frame --count 1`: the native build's frame text.
fn donut_render(frame: u64) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_donut"))
        .args(["render", "--from", &frame.to_string(), "--count", "1"])
        .output()
        .expect("run donut render");
    assert!(out.status.success(), "donut render failed");
    String::from_utf8(out.stdout).expect("ASCII frames")
}

/// The page ran the compatibility build, played the show (frames equal to
/// `donut render`, advancing), with no console error and no message.
fn assert_plays(run: &Run) {
    assert!(
        run.ua.contains("Chrome/87."),
        "not QtWebEngine 5.15's Chromium 87: {}",
        run.ua
    );
    assert_eq!(run.errors(), Vec::<String>::new(), "console errors");
    let last = run.states.last().cloned().unwrap_or_default();
    for s in &run.states {
        assert!(
            s["unsupported"].is_null(),
            "the page said: {}",
            s["unsupported"]
        );
    }
    assert_eq!(last["build"], "compat", "{last}");
    // What its own probes say it lacks (the report).
    let missing: Vec<&str> = last["missing"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        missing.contains(&"SIMD") && missing.contains(&"reference types"),
        "{last}"
    );
    let frames = run.frames();
    assert!(
        frames.len() >= 8,
        "only {} frames seen on screen: {last}",
        frames.len()
    );
    let (first, last_frame) = (
        *frames.keys().next().expect("a frame"),
        *frames.keys().next_back().expect("a frame"),
    );
    assert!(
        last_frame >= first + 120,
        "the show did not advance: frames {first}..{last_frame}"
    );
    for (frame, text) in &frames {
        assert_eq!(
            text,
            &donut_render(*frame),
            "frame {frame} on screen is not `donut render`'s"
        );
    }
    eprintln!(
        "QtWebEngine played {} sampled frames ({first}..{last_frame}), each equal to donut render",
        frames.len()
    );
}

/// A TV that only watches (`?contribute=0`), fed by a native worker.
#[test]
fn qtwebengine_5_15_watches_the_show() {
    serial(async {
        let server = Server::start(&[]);
        let _native = server.native_worker();
        eventually("the native worker", async || {
            (server.stat("workers") == 1).then_some(())
        })
        .await;
        let run = qtwebengine(&server.url("/?contribute=0"), 12);
        assert_plays(&run);
        for s in &run.states {
            assert!(
                s["worker"].is_null(),
                "a watch-only page started a worker: {s}"
            );
        }
        let stats = server.stats();
        assert_eq!(num(&stats, "batches_rejected"), 0, "{stats}");
    });
}

/// A TV that contributes: its Web Worker runs the compatibility worker
/// wasm, and the server, verifying every frame natively, accepts them all.
#[test]
fn qtwebengine_5_15_contributes_frames_that_verify() {
    serial(async {
        let server = Server::start(&[]);
        let run = qtwebengine(&server.url("/?contribute=1"), 15);
        assert_plays(&run);
        let contributed = run
            .states
            .iter()
            .filter_map(|s| s["worker"]["contributed"].as_f64())
            .fold(0.0, f64::max);
        assert!(contributed > 0.0, "the page's worker contributed nothing");
        let stats = server.stats();
        eprintln!("server after the QtWebEngine worker: {stats}");
        assert!(num(&stats, "frames_accepted") >= 300, "{stats}");
        assert_eq!(num(&stats, "batches_rejected"), 0, "{stats}");
        assert_eq!(num(&stats, "strikes"), 0, "{stats}");
        assert_eq!(num(&stats, "protocol_errors"), 0, "{stats}");
    });
}
