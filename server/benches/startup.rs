//! Start-up and viewer-decode benchmark in real headless Chromium (issue 6).
//!
//! `cargo bench -p donut-server --bench startup`
//!
//! Starts the real `donut` binary (the release build cargo made for this
//! bench, or `$DONUT_BIN`) on a free loopback port, feeds it with one native
//! worker (`donut work`) until the stream is live, then, `$DONUT_RUNS` times
//! (default 20):
//!
//! - **cold**: a fresh Chromium with a fresh profile (empty HTTP cache, no
//!   V8 code cache) opens the page with `?contribute=0` (a pure viewer, so
//!   the tab's own worker does not compete for the two cores);
//! - **warm**: the same browser then opens the page again in a new window
//!   (HTTP and code caches warm: a returning visitor).
//!
//! Times come from inside the page, on its `performance.now()` clock, whose
//! zero is the navigation start: the viewer wasm's `responseEnd` (resource
//! timing), the viewer constructed (wasm instantiated), the socket open, the
//! first `Frames` message and the first frame painted
//! (`donutViewer.milestones()`).
//!
//! Then, on the last cold page, `donutViewer.benchDecode(reps)` re-decodes
//! the last `Frames` message the page received from the server (a real
//! context-coded batch) in the shipped viewer wasm, and the bench reports
//! milliseconds per 60 frames; then the same in a window that opened the
//! page with `?build=compat` (the compatibility build, WebAssembly 1.0), and
//! the ratio of the two medians.
//!
//! Environment: `DONUT_BIN`, `DONUT_RUNS`, `DONUT_CHROMIUM`,
//! `DONUT_CHROMEDRIVER`. It needs `www/pkg` built before the server binary
//! (`./build.sh` does both).

#[path = "../tests/chromium/mod.rs"]
mod chromium;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chromium::LiveStream;
use fantoccini::Client;

/// Rounds of `benchDecode` (each of 1000 decodes).
const DECODE_ROUNDS: usize = 7;
/// Limit on any wait, so a broken setup fails instead of hanging.
const HANG: Duration = Duration::from_secs(60);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// What one page load measured, in ms since its navigation start.
#[derive(Clone, Copy, Debug)]
struct Sample {
    html: f64,
    wasm: f64,
    /// Resource-timing entries for the viewer wasm (1 unless the preload
    /// was not reused).
    wasm_fetches: f64,
    created: f64,
    socket_open: f64,
    first_frames: f64,
    first_refresh: f64,
    paint_refresh: f64,
    first_paint: f64,
}

const PROBE: &str = r#"
const v = window.donutViewer;
if (!v || v.firstPaintMs() == null) return null;
const m = v.milestones();
const nav = performance.getEntriesByType('navigation')[0];
const wasms = performance.getEntriesByType('resource')
  .filter((e) => e.name.endsWith('/donut_viewer_bg.wasm'));
const wasm = wasms[0];
return {
  html: nav ? nav.responseEnd : NaN,
  wasm: wasm ? wasm.responseEnd : NaN, wasmFetches: wasms.length,
  created: m.created, socketOpen: m.socketOpen,
  firstFrames: m.firstFrames, firstRefresh: m.firstRefresh,
  paintRefresh: m.paintRefresh, firstPaint: m.firstPaint,
};
"#;

/// Loads `url` in the current window and waits for the first paint.
async fn measure(client: &Client, url: &str) -> Result<Sample> {
    client.goto(url).await?;
    let deadline = Instant::now() + HANG;
    loop {
        let v = client.execute(PROBE, Vec::new()).await?;
        if !v.is_null() {
            let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
            return Ok(Sample {
                html: f("html"),
                wasm: f("wasm"),
                wasm_fetches: f("wasmFetches"),
                created: f("created"),
                socket_open: f("socketOpen"),
                first_frames: f("firstFrames"),
                first_refresh: f("firstRefresh"),
                paint_refresh: f("paintRefresh"),
                first_paint: f("firstPaint"),
            });
        }
        if Instant::now() > deadline {
            return Err("the page never painted a frame".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn summary(name: &str, mut xs: Vec<f64>) -> String {
    xs.retain(|x| x.is_finite());
    xs.sort_by(f64::total_cmp);
    let (Some(&min), Some(&max)) = (xs.first(), xs.last()) else {
        return format!("| {name} | – | – | – | – |");
    };
    let pct = |p: f64| xs[((xs.len() as f64 - 1.0) * p).round() as usize];
    // Milliseconds since navigation to 0.1 ms; decode times finer.
    let prec = if max < 10.0 { 3 } else { 1 };
    format!(
        "| {name} | {:.prec$} | {:.prec$} | {min:.prec$} | {max:.prec$} |",
        pct(0.5),
        pct(0.9),
    )
}

fn table(title: &str, samples: &[Sample]) {
    println!(
        "\n{title} ({} page loads), ms since navigation start:\n",
        samples.len()
    );
    println!("| milestone | median | p90 | min | max |");
    println!("|---|---:|---:|---:|---:|");
    let col = |f: fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<_>>();
    println!("{}", summary("HTML received", col(|s| s.html)));
    println!("{}", summary("viewer wasm received", col(|s| s.wasm)));
    println!(
        "{}",
        summary("wasm instantiated, viewer created", col(|s| s.created))
    );
    println!("{}", summary("socket open", col(|s| s.socket_open)));
    println!(
        "{}",
        summary("first display refresh", col(|s| s.first_refresh))
    );
    println!(
        "{}",
        summary("first Frames message", col(|s| s.first_frames))
    );
    println!(
        "{}",
        summary("refresh that paints begins", col(|s| s.paint_refresh))
    );
    println!(
        "{}",
        summary("**first frame painted**", col(|s| s.first_paint))
    );
    let fetches = col(|s| s.wasm_fetches);
    println!(
        "\nviewer wasm fetched {}..={} times a page load",
        fetches.iter().copied().fold(f64::INFINITY, f64::min),
        fetches.iter().copied().fold(0.0, f64::max)
    );
}

async fn run() -> Result<()> {
    let bin = std::env::var_os("DONUT_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_donut")), PathBuf::from);
    let runs: usize = std::env::var("DONUT_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let stream = LiveStream::start(&bin, &[], HANG)?;
    let port = stream.port;
    let listen = format!("127.0.0.1:{port}");
    println!(
        "server {} on {listen}, one native worker, stream live",
        bin.display()
    );
    let url = format!("http://{listen}/?contribute=0");
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let (mut decode, mut decode_compat) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let chromium::Session {
            client,
            driver: _driver,
            profile,
        } = chromium::launch(&[], HANG).await?;
        let c = measure(&client, &url).await?;
        let w = client.new_window(false).await?;
        client.switch_to_window(w.handle).await?;
        let h = measure(&client, &url).await?;
        println!(
            "run {i:2}: cold first paint {:6.1} ms, warm {:6.1} ms",
            c.first_paint, h.first_paint
        );
        cold.push(c);
        warm.push(h);
        if i + 1 == runs {
            // Let a few batches arrive, warm up, then re-decode the last one
            // in several rounds; then the same in the compatibility build
            // (`?build=compat`, WebAssembly 1.0), in a window of its own.
            tokio::time::sleep(Duration::from_secs(2)).await;
            decode = bench_decode(&client).await?;
            let w = client.new_window(false).await?;
            client.switch_to_window(w.handle).await?;
            measure(&client, &format!("{url}&build=compat")).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            decode_compat = bench_decode(&client).await?;
        }
        let _ = client.close().await;
        let _ = std::fs::remove_dir_all(&profile);
    }
    table("Cold: fresh Chromium, fresh profile, empty cache", &cold);
    table("Warm: same browser, new window, HTTP cache warm", &warm);
    let default = decode_table("default build", &decode)?;
    let compat = decode_table("compatibility build (`?build=compat`)", &decode_compat)?;
    println!(
        "\ncompatibility / default, median ms per 60 frames: {:.2}",
        median(compat) / median(default)
    );
    Ok(())
}

/// `benchDecode` in the current page: one warm-up, then the rounds.
async fn bench_decode(client: &Client) -> Result<Vec<serde_json::Value>> {
    let _ = client
        .execute("return window.donutViewer.benchDecode(200)", Vec::new())
        .await?;
    let mut out = Vec::new();
    for _ in 0..DECODE_ROUNDS {
        out.push(
            client
                .execute("return window.donutViewer.benchDecode(1000)", Vec::new())
                .await?,
        );
    }
    Ok(out)
}

/// Prints the decode rounds of `build`; returns ms per 60 frames.
fn decode_table(build: &str, decode: &[serde_json::Value]) -> Result<Vec<f64>> {
    let last = decode.last().ok_or("benchDecode never ran")?;
    let frames = last["frames"]
        .as_f64()
        .ok_or("benchDecode returned nothing")?;
    let per60: Vec<f64> = decode
        .iter()
        .filter_map(|d| d["msPerDecode"].as_f64())
        .map(|ms| ms * 60.0 / frames)
        .collect();
    println!(
        "\nViewer decode in Chromium, {build}, the last Frames message the page \
         received: {frames} frames, {} bytes, codec {}; {} rounds of {} decodes:\n",
        last["bytes"],
        last["codec"],
        per60.len(),
        last["reps"]
    );
    println!("| decode | median | p90 | min | max |");
    println!("|---|---:|---:|---:|---:|");
    println!("{}", summary("ms per 60 frames", per60.clone()));
    println!(
        "{}",
        summary(
            "µs per frame",
            per60.iter().map(|ms| ms * 1000.0 / 60.0).collect()
        )
    );
    Ok(per60)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(run())
}
