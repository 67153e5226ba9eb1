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
//!   drawing when the `Input` left plus `--input-lead-frames`; and when it
//!   drew its first frame at or after the change frame the server told
//!   tab A in a `Keyframe` (exact: it also counts tab B's playback clock
//!   running behind the show, which the estimate cannot see);
//!
//! - **own**: when tab A drew its first frame past the change frame that
//!   shows the change (its own screen, issue 25: `donutViewer.painted()`
//!   and `prediction()`: the server's frames, those it drew ahead of the
//!   stream, and those drawn with its pushes not yet folded in).
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
//! **Crowd** (`DONUT_CROWD=1`, issue 25): instead of the above, bytes
//! and frames to one watching viewer (a WebSocket counting what it
//! receives) and frames the fleet renders, idle and while 5, then 50,
//! viewers push at the input rate limit, for the server as it was
//! (`--input-hot-ms 0 --input-lead-min-frames 8 --codec context`), with
//! the hot timeline and the protocol-5 codec (`--codec context`) and as it
//! is, in one run; `DONUT_CROWD_SECS` (default 30) a phase.
//!
//! **Browsers** (`DONUT_BROWSER`): `chromium` (default), `firefox`
//! (headless `firefox-esr` through geckodriver; tab B in a second Firefox
//! of its own, as Firefox animates only the focused window at full rate),
//! or `both` (Chromium, then Firefox, against the same server, with a side
//! by side table; the spin runs in the first only). A drag a browser
//! drops (no `Input` within a minute) is skipped. Per drag it also
//! measures the **breakdown**: tab A sends → tab B receives the new
//! version's first batch (`arrivals()`), the server's
//! `change_broadcast_ms`, and tab B receives → paints the change.
//! `DONUT_STEER_TRACE=1` prints, per drag, what tab A painted around it
//! (server's frames, predicted ones), its lead, the frames it plays ahead
//! and the changes told: the predicted-frame log against the paints.
//!
//! Environment: `DONUT_BIN`, `DONUT_STEERS`, `DONUT_SPIN_SECS`,
//! `DONUT_INPUT_LEAD_FRAMES` and `DONUT_INPUT_COMMIT_MS` (passed on to the
//! server), `DONUT_BROWSER`, `DONUT_STEER_TRACE`, `DONUT_CHROMIUM`,
//! `DONUT_CHROMEDRIVER`, `DONUT_FIREFOX`, `DONUT_GECKODRIVER`. It
//! needs `www/pkg` built before the server binary (`./build.sh build`).

#[path = "../tests/chromium/mod.rs"]
mod chromium;
#[path = "../tests/firefox/mod.rs"]
mod firefox;

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
    Ok(chromium::js_in(client, tab, script).await?)
}

/// Waits until `probe` returns a non-null value.
async fn until(client: &Client, tab: &WindowHandle, what: &str, probe: &str) -> Result<Value> {
    let every = Duration::from_millis(20);
    Ok(chromium::until_in(client, tab, what, probe, every, HANG).await?)
}

/// One drag in tab A: right and a little down, 4 moves 50 ms apart.
async fn drag(client: &Client, tab: &WindowHandle) -> Result<()> {
    Ok(chromium::drag_in(client, tab).await?)
}

/// What one drag measured, in ms.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Pointer event to tab A drawing its push (its own screen, from the
    /// prediction: issue 25).
    own: f64,
    /// Pointer event to tab A sending the `Input`.
    event_to_send: f64,
    /// Pointer event to tab B drawing its first frame of the new version.
    first_new: f64,
    /// Pointer event to tab B drawing the first new-version frame at or
    /// after the estimated change frame.
    reflecting: f64,
    /// Pointer event to tab B drawing the first frame at or after the change
    /// frame the server told tab A (its `Keyframe`), of that version or
    /// newer: the method, exactly. Unlike `reflecting` it sees how
    /// far tab B's clock is behind the show.
    exact: f64,
    /// Frames between the one B drew when the `Input` left and the first
    /// new-version frame it drew.
    frames_ahead: f64,
    /// Tab A sending the `Input` to tab B receiving the first batch of the
    /// new version (`arrivals()`): the server's read, commit and broadcast
    /// plus loopback both ways.
    send_to_b: f64,
    /// Tab B receiving that batch to drawing the first new-version frame
    /// at or after the change frame.
    b_arrival_to_paint: f64,
    /// The server's `change_broadcast_ms` after the drag (commit → the
    /// change's first frame broadcast, slowest of the last 8 changes).
    commit_to_broadcast: f64,
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
    let min_lead: u64 = env_or("DONUT_INPUT_LEAD_MIN_FRAMES", 2);
    let hot_ms: u64 = env_or("DONUT_INPUT_HOT_MS", 500);
    let (lead_arg, commit_arg) = (lead.to_string(), commit_ms.to_string());
    let (min_arg, hot_arg) = (min_lead.to_string(), hot_ms.to_string());
    let stream = LiveStream::start(
        &bin,
        &[
            "--fps",
            "60",
            "--input-lead-frames",
            &lead_arg,
            "--input-lead-min-frames",
            &min_arg,
            "--input-hot-ms",
            &hot_arg,
            "--input-commit-ms",
            &commit_arg,
        ],
        HANG,
    )?;
    let port = stream.port;
    let listen = format!("127.0.0.1:{port}");
    println!(
        "server {} on {listen} at 60 fps, --input-lead-frames {lead}, --input-lead-min-frames \
         {min_lead}, --input-hot-ms {hot_ms}, --input-commit-ms {commit_ms}, one native worker \
         (1 thread), stream live",
        bin.display()
    );
    // `DONUT_BROWSER`: chromium (default), firefox, or both (Chromium
    // then Firefox against the same server, in one run).
    let browsers: Vec<&str> = match std::env::var("DONUT_BROWSER").as_deref() {
        Ok("firefox") => vec!["firefox"],
        Ok("both") => vec!["chromium", "firefox"],
        Ok("chromium") | Err(_) => vec!["chromium"],
        Ok(other) => return Err(format!("DONUT_BROWSER={other}: chromium, firefox or both").into()),
    };
    let mut results = Vec::new();
    for (n, browser) in browsers.iter().enumerate() {
        // Firefox runs only the focused window's animation frames at full
        // rate: tab B gets a browser of its own there.
        let (session, second) = match *browser {
            "firefox" => (
                firefox::launch(&[], HANG).await?,
                Some(firefox::launch(&[], HANG).await?),
            ),
            _ => (chromium::launch(&[], HANG).await?, None),
        };
        // The continuous spin once, in the first browser.
        let spin_secs = if n == 0 { spin_secs } else { 0.0 };
        let samples = drags(
            (session, second),
            browser,
            (&listen, port, lead),
            steers,
            spin_secs,
        )
        .await?;
        results.push((*browser, samples));
    }
    if results.len() > 1 {
        println!("\nSide by side, one server, ms (median / p95):\n");
        println!(
            "| browser | event → send | own screen | B's first new-version frame ≥ the change frame |"
        );
        println!("|---|---:|---:|---:|");
        for (browser, samples) in &results {
            let mp = |f: fn(&Sample) -> f64| {
                let xs: Vec<f64> = samples.iter().map(f).collect();
                let (m, p) = median_p95(xs);
                format!("{m:.1} / {p:.1}")
            };
            println!(
                "| {browser} | {} | {} | {} |",
                mp(|s| s.event_to_send),
                mp(|s| s.own),
                mp(|s| s.reflecting)
            );
        }
    }
    println!("server stats at the end: {}", stats(port)?);
    Ok(())
}

/// The median and p95 of the finite `xs` (NaN if none).
fn median_p95(mut xs: Vec<f64>) -> (f64, f64) {
    xs.retain(|x| x.is_finite());
    xs.sort_by(f64::total_cmp);
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let median = xs[((xs.len() as f64 - 1.0) * 0.5).round() as usize];
    let p95 = xs[((xs.len() as f64 * 0.95).ceil() as usize).clamp(1, xs.len()) - 1];
    (median, p95)
}

/// The drags (and the spin, if `spin_secs` > 0) in one browser session
/// against the server on `listen`; the session is closed at the end.
async fn drags(
    (session, second): (chromium::Session, Option<chromium::Session>),
    browser: &str,
    (listen, port, ceiling): (&str, u16, u64),
    steers: usize,
    spin_secs: f64,
) -> Result<Vec<Sample>> {
    let chromium::Session {
        client,
        driver: _driver,
        profile,
    } = session;
    println!("\n== {browser} ==");
    let url = format!("http://{listen}/?contribute=0");
    // Two windows, not background tabs: headless Chromium does not run a
    // background tab's requestAnimationFrame.
    let a = client.window().await?;
    client.goto(&url).await?;
    // Tab B: a second window, or the second browser's (`cb` drives it).
    let (cb, b, second_profile) = match second {
        Some(s) => {
            let b = s.client.window().await?;
            (s.client, b, Some((s.driver, s.profile)))
        }
        None => (client.clone(), client.new_window(false).await?.handle, None),
    };
    cb.switch_to_window(b.clone()).await?;
    cb.goto(&url).await?;
    for (c, tab) in [(&client, &a), (&cb, &b)] {
        until(
            c,
            tab,
            "a painted frame",
            "const v = window.donutViewer; return v && v.currentFrame() != null ? true : null",
        )
        .await?;
    }
    // A second of playback before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let server0 = stats(port)?;
    let b0 = js(&cb, &b, "return window.donutViewer.stats()").await?;
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut fps_seen = Vec::new();
    let mut leads = Vec::new();
    for i in 0..steers {
        // The lead the drag's first change will land at (measured by the
        // server; steady while nobody steers).
        let lead = num(&stats(port)?, "input_lead_frames") as u64;
        leads.push(lead as f64);
        let version = num(
            &js(&cb, &b, "return window.donutViewer.stats()").await?,
            "timeline",
        );
        let sent_before = js(&client, &a, "return window.donutViewer.inputs().length")
            .await?
            .as_u64()
            .unwrap_or(0);
        drag(&client, &a).await?;
        let first = match until(
            &client,
            &a,
            "tab A to send an Input",
            &format!(
                "const l = window.donutViewer.inputs(); return l.length > {sent_before} ? l[{sent_before}] : null"
            ),
        )
        .await
        {
            Ok(first) => first,
            Err(e) => {
                // A drag the browser dropped (seen in Firefox): counted
                // out, not a reason to lose the run.
                println!("drag {i:2}: skipped ({e})");
                tokio::time::sleep(SPACING).await;
                continue;
            }
        };
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
        let seen = until(&cb, &b, "tab B to paint the new version", &probe).await?;
        // Let playback pass the change frame, then look again.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let again = js(&cb, &b, &probe).await?;
        let seen = if again.is_null() { seen } else { again };
        let t1 = seen[0][3].as_f64().unwrap_or(f64::NAN);
        let at = seen[1].as_f64().unwrap_or(f64::NAN);
        let reflect = seen[2][3].as_f64().unwrap_or(f64::NAN);
        // Tab B's first batch of a newer version (from the server or a
        // peer; no relay here).
        let b_arrival = js(
            &cb,
            &b,
            &format!(
                "const a = window.donutViewer.arrivals().find((e) => e[3] > {version} && e[1] >= {sent} - 1);
                 return a ? a[1] : null;"
            ),
        )
        .await?
        .as_f64()
        .unwrap_or(f64::NAN);
        // Tab A's own screen: the first frame it drew past the drag's
        // first change frame showing the change: the server's or one drawn
        // ahead of the stream, of the new version, or one drawn with its
        // pushes not yet folded in.
        let own = js(
            &client,
            &a,
            &format!(
                "const v = window.donutViewer, p = v.prediction();
                 const k = p.changes.filter((c) => c[0] > {version}).sort((x, y) => x[0] - y[0])[0];
                 if (!k) return null;
                 const s = v.painted().map((e) => [e[0], e[1], e[3], false])
                     .concat(p.log.map((e) => [e[0], e[1], e[3], e[4]]));
                 const hit = s.filter((e) => e[2] >= {event} && e[0] > k[1] && (e[1] >= k[0] || e[3]))
                     .sort((x, y) => x[2] - y[2])[0];
                 return hit ? hit[2] : null;"
            ),
        )
        .await?
        .as_f64()
        .unwrap_or(f64::NAN);
        // The drag's first change as the server told tab A (version, change
        // frame), then tab B's first frame of it at or after that frame.
        let told = js(
            &client,
            &a,
            &format!(
                "const k = window.donutViewer.prediction().changes.filter((c) => c[0] > {version}).sort((x, y) => x[0] - y[0])[0];
                 return k ? [k[0], k[1]] : null;"
            ),
        )
        .await?;
        let exact = if told.is_null() {
            f64::NAN
        } else {
            js(
                &cb,
                &b,
                &format!(
                    "const e = window.donutViewer.painted().find((e) => e[1] >= {} && e[0] >= {});
                     return e ? e[3] : null;",
                    told[0], told[1]
                ),
            )
            .await?
            .as_f64()
            .unwrap_or(f64::NAN)
        };
        if std::env::var_os("DONUT_STEER_TRACE").is_some() {
            // What tab A drew around the drag: its inputs, the changes told
            // and every frame painted (server's `S`, predicted `P`/`p`
            // with/without pushes), times relative to the pointer event.
            let trace = js(
                &client,
                &a,
                &format!(
                    "const v = window.donutViewer, p = v.prediction(), t0 = {event};
                     const r = (x) => Math.round((x - t0) * 10) / 10;
                     const ins = v.inputs().filter((e) => e[1] >= t0 - 50 && e[1] <= t0 + 400).map((e) => [r(e[0]), r(e[1])]);
                     const s = v.painted().map((e) => [e[0], e[1], r(e[3]), 'S'])
                         .concat(p.log.map((e) => [e[0], e[1], r(e[3]), e[4] ? 'P' : 'p']))
                         .filter((e) => e[2] >= -60 && e[2] <= 260).sort((x, y) => x[2] - y[2]);
                     return JSON.stringify({{lead: p.lead, ahead: p.ahead, throttle: p.throttle, rafLag: Math.round(performance.now() - document.timeline.currentTime), changes: p.changes.filter((c) => c[0] > {version}), ins, s: s.map((e) => e.join(':')).join(' ')}});"
                ),
            )
            .await?;
            println!("trace drag {i}: {trace}");
        }
        let s = Sample {
            own: own - event,
            event_to_send: sent - event,
            first_new: t1 - event,
            reflecting: reflect - event,
            exact: exact - event,
            frames_ahead: seen[0][0].as_f64().unwrap_or(f64::NAN) - at,
            send_to_b: b_arrival - sent,
            b_arrival_to_paint: reflect - b_arrival,
            commit_to_broadcast: num(&stats(port)?, "change_broadcast_ms"),
        };
        let fps = js(&cb, &b, "return window.donutViewer.playbackFps()")
            .await?
            .as_f64()
            .unwrap_or(f64::NAN);
        fps_seen.push(fps);
        println!(
            "drag {i:2}: event→A's own screen {:5.1} ms, event→send {:5.1} ms, event→B first new-version frame {:6.1} ms \
             (frame {:+} from B's when sent), event→B frame ≥ +{lead} {:6.1} ms, event→B frame ≥ the change told {:6.1} ms; B at {fps} fps",
            s.own, s.event_to_send, s.first_new, s.frames_ahead, s.reflecting, s.exact
        );
        samples.push(s);
        tokio::time::sleep(SPACING).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let server1 = stats(port)?;
    let b1 = js(&cb, &b, "return window.donutViewer.stats()").await?;
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
            "**event → tab A draws its push** (its own screen, predicted)",
            col(|s| s.own)
        )
    );
    for (name, f) in [
        (
            "tab A's own screen",
            (|s: &Sample| s.own) as fn(&Sample) -> f64,
        ),
        ("tab B, frame ≥ the change frame", |s: &Sample| {
            s.reflecting
        }),
        (
            "tab B, frame ≥ the change frame told (Keyframe)",
            |s: &Sample| s.exact,
        ),
    ] {
        let mut xs: Vec<f64> = samples.iter().map(f).filter(|x| x.is_finite()).collect();
        xs.sort_by(f64::total_cmp);
        if !xs.is_empty() {
            let p95 = xs[((xs.len() as f64 * 0.95).ceil() as usize).clamp(1, xs.len()) - 1];
            println!("p95 {name}: {p95:.1} ms ({} drags)", xs.len());
        }
    }
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
            "**event → tab B draws first new-version frame ≥ + the lead** (the change frame, estimated)",
            col(|s| s.reflecting)
        )
    );
    println!(
        "{}",
        summary(
            "**event → tab B draws its first frame ≥ the change frame told** (the server's `Keyframe` to tab A: exact)",
            col(|s| s.exact)
        )
    );
    println!("{}", summary("input lead at each drag, frames", leads));
    println!(
        "{}",
        summary(
            "breakdown: tab A sends → tab B receives the new version's first batch",
            col(|s| s.send_to_b)
        )
    );
    println!(
        "{}",
        summary(
            "breakdown: server commit → the change's first frame broadcast (change_broadcast_ms, slowest of 8)",
            col(|s| s.commit_to_broadcast)
        )
    );
    println!(
        "{}",
        summary(
            "breakdown: tab B receives → draws the first new-version frame ≥ the change frame",
            col(|s| s.b_arrival_to_paint)
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
         lead ceiling {ceiling} frames = {:.0} ms at {FPS} fps; batches rejected {}, protocol errors {}",
        ds("frames_superseded"),
        ds("frames_superseded") / changes,
        ceiling as f64 * 1000.0 / FPS,
        ds("batches_rejected"),
        ds("protocol_errors"),
    );
    // What tab A's prediction did over the drags (issue 25).
    let pa = js(
        &client,
        &a,
        "const p = window.donutViewer.prediction(); return [p.pushes, p.keyframes, p.predicted, p.confirmed, p.mispredicted, p.unsettled, p.lead, p.throttle];",
    )
    .await?;
    println!(
        "Tab A's prediction over the drags: pushes, keyframes, frames predicted, confirmed, \
         mispredicted, unsettled, lead, throttle (frames) = {pa}"
    );
    if spin_secs > 0.0 {
        spin(&client, (&a, &b), port, spin_secs).await?;
    }
    let _ = client.close().await;
    let _ = std::fs::remove_dir_all(&profile);
    if let Some((_driver, profile)) = second_profile {
        let _ = cb.close().await;
        let _ = std::fs::remove_dir_all(&profile);
    }
    Ok(samples)
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

/// What a watching viewer and the server did over one phase of the crowd
/// bench.
#[derive(Clone, Copy, Debug, Default)]
struct Phase {
    secs: f64,
    /// Bytes of `Frames` messages the watcher received.
    bytes: u64,
    frames: u64,
    batches: u64,
    /// Frames the playback head moved on.
    played: f64,
    /// Frames handed out then superseded by a change (rendered again).
    superseded: f64,
    changes: f64,
    stalls: f64,
}

impl Phase {
    fn per_sec(&self, x: f64) -> f64 {
        x / self.secs
    }
    /// Frames the fleet was asked to render a second: each frame played
    /// once, plus every frame handed out and superseded.
    fn rendered_per_sec(&self) -> f64 {
        self.per_sec(self.played + self.superseded)
    }
}

/// Counts what a watching viewer receives, until dropped.
struct Watcher {
    counts: std::sync::Arc<std::sync::Mutex<(u64, u64, u64)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    async fn start(port: u16) -> Result<Self> {
        use futures_util::StreamExt;
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws/viewer")).await?;
        let counts = std::sync::Arc::new(std::sync::Mutex::new((0, 0, 0)));
        let c = std::sync::Arc::clone(&counts);
        let task = tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if let tokio_tungstenite::tungstenite::Message::Binary(b) = msg
                    && let Ok(donut_shared::wire::ToViewer::Frames(f)) =
                        donut_shared::wire::ToViewer::decode(&b)
                {
                    let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
                    c.0 += b.len() as u64;
                    c.1 += u64::from(f.count);
                    c.2 += 1;
                }
            }
        });
        Ok(Self { counts, task })
    }

    fn read(&self) -> (u64, u64, u64) {
        *self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Measures `secs` of the stream at `port` from the watcher, while
/// `steerers` (if any) each push at 93% of the input rate limit.
async fn phase(port: u16, watcher: &Watcher, steerers: &mut [Steerer], secs: f64) -> Result<Phase> {
    use futures_util::SinkExt;
    let s0 = stats(port)?;
    let w0 = watcher.read();
    let started = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / (30.0 * 0.93));
    let mut k = 0u64;
    while started.elapsed().as_secs_f64() < secs {
        if steerers.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        for (i, s) in steerers.iter_mut().enumerate() {
            // Every steerer the same way on `a` (turning back every 7
            // pushes), so the crowd's pushes never cancel out.
            let sign: i16 = if (k / 7).is_multiple_of(2) { 1 } else { -1 };
            let msg = donut_shared::wire::Input {
                a: sign * 40,
                b: 10 + (i % 5) as i16,
            };
            // A steerer closed by the server simply stops pushing.
            let _ = s
                .send(tokio_tungstenite::tungstenite::Message::binary(
                    msg.to_bytes().to_vec(),
                ))
                .await;
        }
        k += 1;
        tokio::time::sleep(gap).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let s1 = stats(port)?;
    let w1 = watcher.read();
    let ds = |key: &str| num(&s1, key) - num(&s0, key);
    Ok(Phase {
        secs,
        bytes: w1.0 - w0.0,
        frames: w1.1 - w0.1,
        batches: w1.2 - w0.2,
        played: ds("head"),
        superseded: ds("frames_superseded"),
        changes: ds("scene_changes"),
        stalls: ds("playback_stall_frames"),
    })
}

/// A steering viewer's sending half; its receiving half is drained by a
/// task (a viewer that never reads is dropped as too slow).
type Steerer = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Message,
>;

/// The crowd bench (`DONUT_CROWD=1`, issue 25): for the server as it was
/// (`--input-hot-ms 0 --input-lead-min-frames 8 --codec context`: every
/// change supersedes the render-ahead), with the hot timeline but the
/// protocol-5 codec (`--codec context`), and as it is (the primed codec),
/// one watching viewer is measured idle
/// and while 5, then 50, viewers push at the input rate limit for
/// `DONUT_CROWD_SECS` (default 30) each, with 3 s of quiet in between.
async fn crowd(bin: &std::path::Path) -> Result<()> {
    let secs: f64 = env_or("DONUT_CROWD_SECS", 30.0);
    let setups: [(&str, &[&str]); 3] = [
        (
            "never hot, fixed 8-frame lead, context codec (main before issue 25)",
            &[
                "--input-hot-ms",
                "0",
                "--input-lead-min-frames",
                "8",
                "--codec",
                "context",
            ],
        ),
        ("hot timeline, context codec", &["--codec", "context"]),
        ("hot timeline, primed codec (defaults)", &[]),
    ];
    let mut rows = Vec::new();
    for (name, extra) in setups {
        let args = [&["--fps", "60", "--max-per-ip", "0"][..], extra].concat();
        let stream = LiveStream::start(bin, &args, HANG)?;
        let port = stream.port;
        let watcher = Watcher::start(port).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle = phase(port, &watcher, &mut [], secs.min(10.0)).await?;
        let mut out = vec![(0usize, idle)];
        for n in [5usize, 50] {
            let mut steerers = Vec::with_capacity(n);
            let mut drains = Vec::with_capacity(n);
            for _ in 0..n {
                let (ws, _) =
                    tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws/viewer"))
                        .await?;
                let (tx, mut rx) = futures_util::StreamExt::split(ws);
                drains.push(tokio::spawn(async move {
                    while let Some(Ok(_)) = futures_util::StreamExt::next(&mut rx).await {}
                }));
                steerers.push(tx);
            }
            let p = phase(port, &watcher, &mut steerers, secs).await?;
            for mut s in steerers {
                let _ = futures_util::SinkExt::close(&mut s).await;
            }
            for d in drains {
                d.abort();
            }
            out.push((n, p));
            // Quiet: the render-ahead comes back.
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        println!("\n{name}: {}", stats(port)?);
        rows.push((name, out));
    }
    println!(
        "\nCrowd bench, {secs} s a phase, one native worker (1 thread), 60 fps, context codec:\n"
    );
    println!(
        "| server | steerers | watcher bytes/s | × idle | watcher frames/s | batches/s | \
         frames rendered/s | × idle | changes/s | stall frames |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, out) in &rows {
        let idle = out[0].1;
        for (n, p) in out {
            let bps = p.per_sec(p.bytes as f64);
            println!(
                "| {name} | {n} | {bps:.0} | {:.2} | {:.1} | {:.1} | {:.0} | {:.2} | {:.1} | {} |",
                bps / idle.per_sec(idle.bytes as f64),
                p.per_sec(p.frames as f64),
                p.per_sec(p.batches as f64),
                p.rendered_per_sec(),
                p.rendered_per_sec() / idle.rendered_per_sec(),
                p.per_sec(p.changes),
                p.stalls,
            );
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    if std::env::var_os("DONUT_CROWD").is_some() {
        let bin = std::env::var_os("DONUT_BIN")
            .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_donut")), PathBuf::from);
        return rt.block_on(crowd(&bin));
    }
    rt.block_on(run())
}
