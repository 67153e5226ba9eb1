//! Input-to-photon latency of steering, in real headless Chromium on
//! loopback (issue 14).
//!
//! `cargo bench -p donut-server --bench steer`
//!
//! Starts the real `donut` binary (the release build cargo made for this
//! bench, or `$DONUT_BIN`) at 60 fps with one native worker (`donut work`),
//! opens two watch-only windows (`?contribute=0`: tab A steers, tab B
//! watches) and, `$DONUT_STEERS` times (default 15) a few seconds apart,
//! drags across the donut in tab A with WebDriver pointer actions. For each
//! drag:
//!
//! - **t0**: when the first pointer event of the drag fired in tab A (its
//!   `timeStamp`, from `donutViewer.inputs()`), and when tab A sent the
//!   `Input` it produced;
//! - **t1**: when tab B drew its first frame of a newer timeline version
//!   (`donutViewer.painted()`), and — since the server re-sends the frames
//!   before the change under the new version — when it drew the first such
//!   frame at or after the estimated change frame: the frame tab B was
//!   drawing when the `Input` left plus `--input-lead-frames`.
//!
//! Both clocks are `performance.timeOrigin + performance.now()` in the same
//! browser, so they compare across tabs. "Painted" is the canvas draw; the
//! compositor shows it at the next vsync (≤ 16.7 ms later).
//!
//! Then a **continuous spin** (`$DONUT_SPIN_SECS`, default 10): tab A winds
//! the donut round a circle, a pointer move every 33 ms, so it sends an
//! `Input` about every 34 ms (the viewer's gate) for the whole phase. A
//! thread samples `/api/stats` every 100 ms meanwhile: the server's render
//! buffer (accepted frames ahead of the head), its stalls, the scene changes
//! and frames superseded a second, and the fleet's render rate; tab B's
//! frames drawn, gaps and misses are read before and after.
//!
//! Also reported: tab B's playback over the run (distinct frames drawn a
//! second, gaps, misses, from `donutViewer.stats()`), and the server's
//! `scene_changes` and `frames_superseded` (`/api/stats`, the same counters
//! as `/metrics`).
//!
//! Environment: `DONUT_BIN`, `DONUT_STEERS`, `DONUT_SPIN_SECS`,
//! `DONUT_INPUT_LEAD_FRAMES` and `DONUT_INPUT_COMMIT_MS` (passed on to the
//! server), `DONUT_CHROMIUM`, `DONUT_CHROMEDRIVER`. It
//! needs `www/pkg` built before the server binary (`./build.sh build`).

#[path = "../tests/chromium/mod.rs"]
mod chromium;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chromium::LiveStream;
use fantoccini::Client;
use fantoccini::Locator;
use fantoccini::wd::WindowHandle;
use serde_json::Value;

/// Limit on any wait, so a broken setup fails instead of hanging.
const HANG: Duration = Duration::from_secs(60);
/// Time between drags, so the previous push has settled.
const SPACING: Duration = Duration::from_secs(3);
/// Playback rate the server is started with.
const FPS: f64 = 60.0;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn stats(port: u16) -> Result<Value> {
    Ok(chromium::stats(port, HANG)?)
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

async fn js(client: &Client, tab: &WindowHandle, script: &str) -> Result<Value> {
    client.switch_to_window(tab.clone()).await?;
    Ok(client.execute(script, Vec::new()).await?)
}

/// Waits until `probe` returns a non-null value.
async fn until(client: &Client, tab: &WindowHandle, what: &str, probe: &str) -> Result<Value> {
    let deadline = Instant::now() + HANG;
    loop {
        let v = js(client, tab, probe).await?;
        if !v.is_null() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One drag in tab A: right and a little down, 4 moves 50 ms apart.
async fn drag(client: &Client, tab: &WindowHandle) -> Result<()> {
    client.switch_to_window(tab.clone()).await?;
    let canvas = client.find(Locator::Id("donut")).await?;
    let d = chromium::steering_drag(canvas);
    client.perform_actions(d).await?;
    client.release_actions().await?;
    Ok(())
}

/// What one drag measured, in ms.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Pointer event to tab A sending the `Input`.
    event_to_send: f64,
    /// Pointer event to tab B drawing its first frame of the new version.
    first_new: f64,
    /// Pointer event to tab B drawing the first new-version frame at or
    /// after the estimated change frame.
    reflecting: f64,
    /// Frames between the one B drew when the `Input` left and the first
    /// new-version frame it drew.
    frames_ahead: f64,
}

fn summary(name: &str, mut xs: Vec<f64>) -> String {
    xs.retain(|x| x.is_finite());
    xs.sort_by(f64::total_cmp);
    let (Some(&min), Some(&max)) = (xs.first(), xs.last()) else {
        return format!("| {name} | – | – | – | – |");
    };
    let pct = |p: f64| xs[((xs.len() as f64 - 1.0) * p).round() as usize];
    format!(
        "| {name} | {min:.1} | {:.1} | {:.1} | {max:.1} |",
        pct(0.5),
        pct(0.9),
    )
}

async fn run() -> Result<()> {
    let bin = std::env::var_os("DONUT_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_donut")), PathBuf::from);
    let steers: usize = env_or("DONUT_STEERS", 15);
    let lead: u64 = env_or("DONUT_INPUT_LEAD_FRAMES", 8);
    let commit_ms: u64 = env_or("DONUT_INPUT_COMMIT_MS", 100);
    let spin_secs: f64 = env_or("DONUT_SPIN_SECS", 10.0);
    let (lead_arg, commit_arg) = (lead.to_string(), commit_ms.to_string());
    let stream = LiveStream::start(
        &bin,
        &[
            "--fps",
            "60",
            "--input-lead-frames",
            &lead_arg,
            "--input-commit-ms",
            &commit_arg,
        ],
        HANG,
    )?;
    let port = stream.port;
    let listen = format!("127.0.0.1:{port}");
    println!(
        "server {} on {listen} at 60 fps, --input-lead-frames {lead}, --input-commit-ms \
         {commit_ms}, one native worker (1 thread), stream live",
        bin.display()
    );
    let chromium::Session {
        client,
        driver: _driver,
        profile,
    } = chromium::launch(&[], HANG).await?;
    let url = format!("http://{listen}/?contribute=0");
    // Two windows, not background tabs: headless Chromium does not run a
    // background tab's requestAnimationFrame.
    let a = client.window().await?;
    client.goto(&url).await?;
    let b = client.new_window(false).await?.handle;
    client.switch_to_window(b.clone()).await?;
    client.goto(&url).await?;
    for tab in [&a, &b] {
        until(
            &client,
            tab,
            "a painted frame",
            "const v = window.donutViewer; return v && v.currentFrame() != null ? true : null",
        )
        .await?;
    }
    // A second of playback before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let server0 = stats(port)?;
    let b0 = js(&client, &b, "return window.donutViewer.stats()").await?;
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut fps_seen = Vec::new();
    for i in 0..steers {
        let version = num(
            &js(&client, &b, "return window.donutViewer.stats()").await?,
            "timeline",
        );
        let sent_before = js(&client, &a, "return window.donutViewer.inputs().length")
            .await?
            .as_u64()
            .unwrap_or(0);
        drag(&client, &a).await?;
        let first = until(
            &client,
            &a,
            "tab A to send an Input",
            &format!(
                "const l = window.donutViewer.inputs(); return l.length > {sent_before} ? l[{sent_before}] : null"
            ),
        )
        .await?;
        let (event, sent) = (
            first[0].as_f64().unwrap_or(f64::NAN),
            first[1].as_f64().unwrap_or(f64::NAN),
        );
        let probe = format!(
            "const p = window.donutViewer.painted();
             const n = p.filter((e) => e[1] > {version});
             if (n.length === 0) return null;
             const before = p.filter((e) => e[3] <= {sent}).pop();
             const at = before ? before[0] : null;
             const r = at == null ? null : n.find((e) => e[0] >= at + {lead});
             return [n[0], at, r ?? null];"
        );
        let seen = until(&client, &b, "tab B to paint the new version", &probe).await?;
        // Let playback pass the change frame, then look again.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let again = js(&client, &b, &probe).await?;
        let seen = if again.is_null() { seen } else { again };
        let t1 = seen[0][3].as_f64().unwrap_or(f64::NAN);
        let at = seen[1].as_f64().unwrap_or(f64::NAN);
        let reflect = seen[2][3].as_f64().unwrap_or(f64::NAN);
        let s = Sample {
            event_to_send: sent - event,
            first_new: t1 - event,
            reflecting: reflect - event,
            frames_ahead: seen[0][0].as_f64().unwrap_or(f64::NAN) - at,
        };
        let fps = js(&client, &b, "return window.donutViewer.playbackFps()")
            .await?
            .as_f64()
            .unwrap_or(f64::NAN);
        fps_seen.push(fps);
        println!(
            "drag {i:2}: event→send {:5.1} ms, event→B first new-version frame {:6.1} ms \
             (frame {:+} from B's when sent), event→B frame ≥ +{lead} {:6.1} ms; B at {fps} fps",
            s.event_to_send, s.first_new, s.frames_ahead, s.reflecting
        );
        samples.push(s);
        tokio::time::sleep(SPACING).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let server1 = stats(port)?;
    let b1 = js(&client, &b, "return window.donutViewer.stats()").await?;
    let d = |k: &str| num(&b1, k) - num(&b0, k);
    let ds = |k: &str| num(&server1, k) - num(&server0, k);
    println!(
        "\nInput-to-paint latency over {} drags, ms (tab A's pointer event → tab B's canvas draw):\n",
        samples.len()
    );
    println!("| measure | min | median | p90 | max |");
    println!("|---|---:|---:|---:|---:|");
    let col = |f: fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<_>>();
    println!(
        "{}",
        summary("event → tab A sends Input", col(|s| s.event_to_send))
    );
    println!(
        "{}",
        summary(
            "**event → tab B draws first frame of the new version**",
            col(|s| s.first_new)
        )
    );
    println!(
        "{}",
        summary(
            &format!("event → tab B draws first new-version frame ≥ +{lead}"),
            col(|s| s.reflecting)
        )
    );
    println!(
        "{}",
        summary(
            "frames from B's frame at send to its first new-version frame",
            col(|s| s.frames_ahead)
        )
    );
    println!(
        "\nTab B over {elapsed:.1} s: {} frames drawn ({:.1} a second), gaps {}, misses {}, \
         switches {}, superseded batches {}; playbackFps() after each drag: min {} max {}",
        d("framesShown"),
        d("framesShown") / elapsed,
        d("gaps"),
        d("misses"),
        d("switches"),
        d("superseded"),
        fps_seen.iter().copied().fold(f64::INFINITY, f64::min),
        fps_seen.iter().copied().fold(0.0, f64::max),
    );
    let changes = ds("scene_changes");
    println!(
        "Server: {changes} scene changes, {} frames superseded ({:.1} a change), \
         lead {lead} frames = {:.0} ms at {FPS} fps; batches rejected {}, protocol errors {}",
        ds("frames_superseded"),
        ds("frames_superseded") / changes,
        lead as f64 * 1000.0 / FPS,
        ds("batches_rejected"),
        ds("protocol_errors"),
    );
    spin(&client, (&a, &b), port, spin_secs).await?;
    println!("server stats at the end: {}", stats(port)?);
    let _ = client.close().await;
    let _ = std::fs::remove_dir_all(&profile);
    Ok(())
}

/// Samples of the server during the spin.
#[derive(Default)]
struct Sampled {
    buffered: Vec<f64>,
    fleet_fps: Vec<f64>,
}

/// Polls `/api/stats` every 100 ms until `stop` is set.
fn sample(port: u16, stop: &std::sync::atomic::AtomicBool) -> Sampled {
    let mut out = Sampled::default();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if let Ok(v) = stats(port) {
            out.buffered.push(num(&v, "buffered_frames"));
            out.fleet_fps.push(num(&v, "fleet_fps"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    out
}

/// The continuous phase: tab A winds the donut for `secs` while the
/// server is sampled; prints what the fleet and tab B did meanwhile.
async fn spin(
    client: &Client,
    (a, b): (&WindowHandle, &WindowHandle),
    port: u16,
    secs: f64,
) -> Result<()> {
    let step = Duration::from_millis(33);
    let moves = (secs * 1000.0 / 33.0).round() as usize;
    let s0 = stats(port)?;
    let b0 = js(client, b, "return window.donutViewer.stats()").await?;
    let sent0 = js(client, a, "return window.donutViewer.inputs().length").await?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || sample(port, &stop))
    };
    let started = Instant::now();
    client.switch_to_window(a.clone()).await?;
    let canvas = client.find(Locator::Id("donut")).await?;
    client
        .perform_actions(chromium::spinning_drag(canvas, moves, step))
        .await?;
    client.release_actions().await?;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sampled = sampler.join().map_err(|_| "sampler thread panicked")?;
    // Playback catches up with the last change before B is read.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s1 = stats(port)?;
    let b1 = js(client, b, "return window.donutViewer.stats()").await?;
    let sent1 = js(client, a, "return window.donutViewer.inputs().length").await?;
    let ds = |k: &str| num(&s1, k) - num(&s0, k);
    let db = |k: &str| num(&b1, k) - num(&b0, k);
    let inputs = sent1.as_f64().unwrap_or(f64::NAN) - sent0.as_f64().unwrap_or(f64::NAN);
    println!(
        "\nContinuous spin, {elapsed:.1} s ({moves} pointer moves 33 ms apart): tab A sent {inputs} \
         Inputs ({:.1}/s); server: {} scene changes ({:.1}/s), {} frames superseded ({:.0}/s, \
         {:.1} a change), playback stall frames {}, inputs refused {}",
        inputs / elapsed,
        ds("scene_changes"),
        ds("scene_changes") / elapsed,
        ds("frames_superseded"),
        ds("frames_superseded") / elapsed,
        ds("frames_superseded") / ds("scene_changes"),
        ds("playback_stall_frames"),
        ds("inputs_refused"),
    );
    println!(
        "{}",
        summary(
            "server buffer, accepted frames ahead of the head (100 ms samples)",
            sampled.buffered
        )
    );
    println!(
        "{}",
        summary(
            "fleet render rate, frames/s (100 ms samples)",
            sampled.fleet_fps
        )
    );
    println!(
        "Tab B over the spin (+1 s): {} frames drawn ({:.1}/s), gaps {}, misses {}, switches {}",
        db("framesShown"),
        db("framesShown") / (elapsed + 1.0),
        db("gaps"),
        db("misses"),
        db("switches"),
    );
    Ok(())
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(run())
}
