//! Server egress per viewer with and without the peer relay, and the
//! latency relaying adds, in real headless Chromium tabs over loopback
//! WebRTC (issue 16).
//!
//! `cargo bench -p donut-server --bench p2p`
//!
//! For each tab count in `$DONUT_P2P_TABS` (default `2,4,8`) and each of
//! `--p2p off` and `--p2p on`: starts the real `donut` binary (the release
//! build cargo made for this bench, or `$DONUT_BIN`) at 60 fps with one
//! native worker, opens that many watch-only windows
//! (`?contribute=0&steer=0&p2p=1`) in one headless Chromium with the
//! loopback WebRTC flags, waits until the tree has formed (on), and then
//! for `$DONUT_P2P_SECS` seconds (default 20) measures:
//!
//! - the server's bytes to viewers (`viewer_bytes_sent`, every byte: frames,
//!   digests, telemetry, signalling, fallbacks) per viewer per second, and
//!   the offload ratio the server computes (`/api/stats`);
//! - fallbacks (batches fetched because a peer was late) per minute, from
//!   the tabs' own counters;
//! - relay latency: for every batch, when each tab got it
//!   (`donutViewer.arrivals()`, wall-clock ms on one machine's clock),
//!   minus when the first tab fed by the server got it, grouped by the
//!   tab's depth in the tree (1: fed by the server).
//!
//! Then it models 10,000 viewers from the measured per-batch bytes and the
//! tree's shape (`--p2p-fanout` 3, `--p2p-max-depth` 3 by default).
//!
//! Environment: `DONUT_BIN`, `DONUT_P2P_TABS`, `DONUT_P2P_SECS`,
//! `DONUT_CHROMIUM`, `DONUT_CHROMEDRIVER`. Needs `www/pkg` built before the
//! server binary (`./build.sh build`).

#[path = "../tests/chromium/mod.rs"]
mod chromium;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chromium::LiveStream;
use fantoccini::Client;
use fantoccini::wd::WindowHandle;
use serde_json::Value;

/// Limit on any wait, so a broken setup fails instead of hanging.
const HANG: Duration = Duration::from_secs(90);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

async fn js(client: &Client, tab: &WindowHandle, script: &str) -> Result<Value> {
    client.switch_to_window(tab.clone()).await?;
    Ok(client.execute(script, Vec::new()).await?)
}

/// Every tab's `relayStats()`.
async fn relays(client: &Client, tabs: &[WindowHandle]) -> Result<Vec<Value>> {
    let mut all = Vec::new();
    for tab in tabs {
        all.push(js(client, tab, "return window.donutViewer.relayStats()").await?);
    }
    Ok(all)
}

/// One run's figures.
struct Run {
    tabs: usize,
    p2p: bool,
    /// Server bytes to viewers per viewer per second.
    egress_per_viewer: f64,
    /// The server's offload ratio at the end, in per cent.
    offload_pct: f64,
    linked: usize,
    fallbacks_per_min: f64,
    /// Depth → arrival delays (ms) behind the first server-fed tab.
    delays: BTreeMap<u32, Vec<f64>>,
    /// Mean bytes of one batch, as the tabs received them.
    batch_bytes: f64,
}

/// Each tab's depth in the tree (1: fed by the server), from the tabs'
/// peer ids and parents; 0 if unknown.
fn depths(all: &[Value]) -> Vec<u32> {
    let parent: BTreeMap<u64, u64> = all
        .iter()
        .map(|r| (num(r, "id") as u64, num(r, "parent") as u64))
        .collect();
    all.iter()
        .map(|r| {
            let mut id = num(r, "id") as u64;
            let mut depth = 1;
            while let Some(&p) = parent.get(&id) {
                if p == 0 || depth > 8 {
                    return depth;
                }
                id = p;
                depth += 1;
            }
            0
        })
        .collect()
}

async fn run_one(bin: &std::path::Path, tabs: usize, p2p: bool, secs: u64) -> Result<Run> {
    let mode = if p2p { "on" } else { "off" };
    let stream = LiveStream::start(
        bin,
        &[
            "--fps",
            "60",
            "--p2p",
            mode,
            "--p2p-candidates",
            "127.0.0.1/32",
        ],
        HANG,
    )?;
    let port = stream.port;
    let session = chromium::launch(
        &[
            "--allow-loopback-in-peer-connection".to_owned(),
            "--use-fake-ui-for-media-stream".to_owned(),
        ],
        HANG,
    )
    .await?;
    let client = &session.client;
    let url = format!("http://127.0.0.1:{port}/?contribute=0&steer=0&p2p=1");
    let mut handles = Vec::new();
    for i in 0..tabs {
        // Windows, not background tabs: headless Chromium does not run a
        // background tab's requestAnimationFrame.
        let h = if i == 0 {
            client.window().await?
        } else {
            client.new_window(false).await?.handle
        };
        client.switch_to_window(h.clone()).await?;
        client.goto(&url).await?;
        handles.push(h);
    }
    let deadline = Instant::now() + HANG;
    let want = if p2p { tabs - 1 } else { 0 };
    let linked = loop {
        let all = relays(client, &handles).await?;
        let linked = all.iter().filter(|r| num(r, "parentOpen") == 1.0).count();
        if linked >= want || Instant::now() > deadline {
            break linked;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s0 = chromium::stats(port, HANG)?;
    let r0 = relays(client, &handles).await?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let s1 = chromium::stats(port, HANG)?;
    let r1 = relays(client, &handles).await?;
    let sent = num(&s1, "viewer_bytes_sent") - num(&s0, "viewer_bytes_sent");
    let fallbacks: f64 = r1
        .iter()
        .zip(&r0)
        .map(|(a, b)| num(a, "fetches") - num(b, "fetches"))
        .sum();
    let (bytes, batches) = r1.iter().zip(&r0).fold((0.0, 0.0), |(b, n), (a, z)| {
        (
            b + num(a, "bytesFromPeer") - num(z, "bytesFromPeer"),
            n + num(a, "batchesFromPeer") - num(z, "batchesFromPeer"),
        )
    });
    let delays = arrival_delays(client, &handles, &r1).await?;
    let run = Run {
        tabs,
        p2p,
        egress_per_viewer: sent / tabs as f64 / elapsed,
        offload_pct: num(&s1, "p2p_offload_permille") / 10.0,
        linked,
        fallbacks_per_min: fallbacks * 60.0 / elapsed,
        delays,
        batch_bytes: if batches > 0.0 {
            bytes / batches
        } else {
            f64::NAN
        },
    };
    let _ = session.client.close().await;
    let _ = std::fs::remove_dir_all(&session.profile);
    Ok(run)
}

/// Per depth, how long after the first server-fed tab each tab got each
/// batch (over the last minute of arrivals).
async fn arrival_delays(
    client: &Client,
    tabs: &[WindowHandle],
    relays: &[Value],
) -> Result<BTreeMap<u32, Vec<f64>>> {
    let depth = depths(relays);
    let mut by_batch: BTreeMap<u64, Vec<(u32, f64)>> = BTreeMap::new();
    for (i, tab) in tabs.iter().enumerate() {
        let log = js(client, tab, "return window.donutViewer.arrivals()").await?;
        for e in log.as_array().into_iter().flatten() {
            let (start, wall) = (e[0].as_f64().unwrap_or(0.0) as u64, e[1].as_f64());
            if let Some(wall) = wall {
                by_batch.entry(start).or_default().push((depth[i], wall));
            }
        }
    }
    let mut delays: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
    for got in by_batch.values() {
        let Some(first) = got
            .iter()
            .filter(|(d, _)| *d == 1)
            .map(|(_, w)| *w)
            .min_by(f64::total_cmp)
        else {
            continue;
        };
        for (d, w) in got {
            delays.entry(*d).or_default().push(w - first);
        }
    }
    Ok(delays)
}

fn pct(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    if xs.is_empty() {
        return f64::NAN;
    }
    xs[((xs.len() as f64 - 1.0) * p).round() as usize]
}

async fn run() -> Result<()> {
    let bin = std::env::var_os("DONUT_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_donut")), PathBuf::from);
    let tab_counts: Vec<usize> = std::env::var("DONUT_P2P_TABS")
        .unwrap_or_else(|_| "2,4,8".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let secs: u64 = std::env::var("DONUT_P2P_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    println!(
        "{} at 60 fps, one native worker, {secs} s per run",
        bin.display()
    );
    println!(
        "\n| tabs | P2P | server bytes/s per viewer | vs off | offload (server) | fed by a peer | fallbacks/min |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut runs = Vec::new();
    for &tabs in &tab_counts {
        let off = run_one(&bin, tabs, false, secs).await?;
        let on = run_one(&bin, tabs, true, secs).await?;
        for r in [&off, &on] {
            println!(
                "| {} | {} | {:.0} | {:.2} | {:.1}% | {}/{} | {:.1} |",
                r.tabs,
                if r.p2p { "on" } else { "off" },
                r.egress_per_viewer,
                r.egress_per_viewer / off.egress_per_viewer,
                r.offload_pct,
                r.linked,
                r.tabs,
                r.fallbacks_per_min
            );
        }
        runs.push((off, on));
    }
    println!("\nRelay latency: batch arrival behind the first server-fed tab, ms");
    println!("\n| tabs | depth | batches | p50 | p90 | max |");
    println!("|---|---|---|---|---|---|");
    for (_, on) in &runs {
        for (depth, xs) in &on.delays {
            let mut xs = xs.clone();
            let n = xs.len();
            let (p50, p90, max) = (pct(&mut xs, 0.5), pct(&mut xs, 0.9), pct(&mut xs, 1.0));
            println!(
                "| {} | {depth} | {n} | {p50:.1} | {p90:.1} | {max:.1} |",
                on.tabs
            );
        }
    }
    model(&runs);
    Ok(())
}

/// 10,000 viewers from the measured figures: a direct viewer costs what
/// one cost with P2P off; in the tree, a server-fed root costs that, and
/// every other viewer costs its digests and telemetry (what a linked tab
/// cost the server in the largest run, measured as the difference).
fn model(runs: &[(Run, Run)]) {
    let Some((off, on)) = runs.last() else {
        return;
    };
    let direct = off.egress_per_viewer;
    let n = on.tabs as f64;
    // Per linked viewer: (total − roots × direct) / linked.
    let roots = (on.tabs - on.linked) as f64;
    let linked_cost = ((on.egress_per_viewer * n) - roots * direct) / on.linked.max(1) as f64;
    println!(
        "\nModel for 10,000 viewers (from the {}-tab runs: a direct viewer costs {direct:.0} B/s, \
         a peer-fed one {linked_cost:.0} B/s; mean batch {:.0} B):",
        on.tabs, on.batch_bytes
    );
    println!(
        "\n| fan-out, depth | viewers per server-fed root | server egress | per viewer | vs off |"
    );
    println!("|---|---|---|---|---|");
    for (k, d) in [(3u32, 3u32), (6, 3), (3, 4), (6, 4)] {
        let per_root: f64 = (0..d).map(|i| f64::from(k).powi(i as i32)).sum();
        let viewers = 10_000.0;
        let roots = (viewers / per_root).ceil();
        let egress = roots * direct + (viewers - roots) * linked_cost;
        println!(
            "| {k}, {d} | {per_root:.0} | {:.2} MB/s | {:.0} B/s | {:.3} |",
            egress / 1e6,
            egress / viewers,
            egress / viewers / direct
        );
    }
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(run())
}
