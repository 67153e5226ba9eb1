//! Steering on a 3-node cluster (issue 25): a push on one follower's page
//! to another follower's screen, in real headless Chromium on loopback.
//!
//! `cargo bench -p donut-server --bench cluster_steer`
//!
//! Starts a private `redis-server` on a free loopback port (in memory;
//! `$DONUT_REDIS` or Debian's), three real `donut serve` nodes sharing one
//! timeline through it (the release build cargo made for this bench;
//! `--fps 60`, lease 1 s, `--viewer-lead-secs 3` as the cluster tests run
//! them, the server's defaults otherwise)
//! and one native worker (`donut work --threads 1`) on the leader; opens
//! window A on follower 1 and window B on follower 2 (`?contribute=0`),
//! plus a raw WebSocket viewer on follower 2 (one zero push makes it a
//! steerer, so it is told every change) that notes when each version's
//! first batch reaches it. Then `$DONUT_DRAGS` (default 50) drags on tab
//! A, `$DONUT_SPACING_MS` (default 1500) apart. Per drag, all clocks the
//! same machine's wall clock (Unix ms):
//!
//! - **event**: tab A's first pointer event of the drag
//!   (`performance.timeOrigin + event.timeStamp`, `donutViewer.inputs()`),
//!   and **sent**: when tab A sent the `Input` it produced;
//! - **stored**: the first entry the drag added to the input log
//!   (`{p}inputs`): its stream ID's milliseconds, Redis's clock when the
//!   follower's append ran (ms resolution);
//! - **committed**: the first timeline entry (`{p}timeline`) of the version
//!   that folds it (its `inputs` position at or past the push): its ID's
//!   milliseconds, when the leader's fenced append ran;
//! - **relayed**: when follower 2's raw viewer received the first batch of
//!   that version (the follower read the entry and broadcast it);
//! - **B paints**: `timeOrigin +` the rAF time of tab B's first frame of
//!   the new version at or after its change frame (the change frame as
//!   the follower told tab A in its `Keyframe`, `prediction().changes`),
//!   and of its first frame of the new version at all;
//! - **A's own screen**: tab A's first frame past the change frame that
//!   shows the change (the server's, or predicted: as the steer bench).
//!
//! Breakdown: event → sent (the page), sent → stored (WebSocket to follower
//! 1, its carrier, the Lua append), stored → committed (the leader's read
//! of the input log, its commit at the next tick, encoding, the fenced
//! append), committed → relayed (follower 2's read, fan-out, WebSocket),
//! relayed → B paints (the page's jitter buffer and its wait for the change
//! frame's time, which the input lead sets). Also: how many frames tab B's
//! screen was behind the leader's head at the event and how far past that
//! head the change landed (the leader's `/api/stats` head, sampled every
//! 20 ms), and how stale the telemetry heads were on arrival at a raw
//! viewer on follower 2 and on the leader (pages anchor their clocks on
//! them). Reported with what the nodes counted (`/api/stats`). Needs
//! `www/pkg` built (`./build.sh build`).

#[path = "../tests/chromium/mod.rs"]
mod chromium;
#[path = "../tests/common/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "../tests/common/redis_server.rs"]
mod redis_server;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use donut_server::cluster::stream_log::{EntryId, TimelineEntry};
use donut_shared::wire::{Input, ToViewer};
use fantoccini::Client;
use fantoccini::wd::WindowHandle;
use futures_util::{SinkExt, StreamExt};
use redis::streams::StreamRangeReply;
use redis_server::RedisServer;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// Limit on any wait, so a broken setup fails instead of hanging.
const HANG: Duration = Duration::from_secs(60);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

async fn js(client: &Client, tab: &WindowHandle, script: &str) -> Result<Value> {
    Ok(chromium::js_in(client, tab, script).await?)
}

/// Waits until `probe` returns a non-null value.
async fn until(client: &Client, tab: &WindowHandle, what: &str, probe: &str) -> Result<Value> {
    let every = Duration::from_millis(10);
    Ok(chromium::until_in(client, tab, what, probe, every, HANG).await?)
}

fn stats(node: &cluster::Node) -> Result<Value> {
    Ok(chromium::stats(node.addr.port(), HANG)?)
}

/// When follower 2's raw viewer first received a batch of each version
/// (Unix ms).
type FirstBatch = Arc<Mutex<BTreeMap<u32, f64>>>;

/// Telemetry heads follower 2's raw viewer received: (Unix ms, head).
type Heads = Arc<Mutex<Vec<(f64, u64)>>>;

async fn observer(addr: std::net::SocketAddr, seen: FirstBatch, heads: Heads) -> Result<()> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/viewer")).await?;
    ws.send(Message::binary(Input { a: 0, b: 0 }.to_bytes().to_vec()))
        .await?;
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Binary(b) = msg else { continue };
            let at = unix_ms();
            match ToViewer::decode(&b) {
                Ok(ToViewer::Frames(f)) => {
                    seen.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(f.timeline)
                        .or_insert(at);
                }
                Ok(ToViewer::Telemetry(t)) => {
                    heads
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((at, t.head));
                }
                _ => {}
            }
        }
    });
    Ok(())
}

/// The entries of stream `key` after `after` (oldest first).
async fn range(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    after: EntryId,
) -> Result<StreamRangeReply> {
    Ok(redis::cmd("XRANGE")
        .arg(key)
        .arg(format!("({after}"))
        .arg("+")
        .query_async(conn)
        .await?)
}

/// The leader's head at Unix ms `at`, from the nearest sample before it
/// (within 100 ms) moved on at 60 fps.
fn head_at(samples: &Heads, at: f64) -> f64 {
    let s = samples.lock().unwrap_or_else(|e| e.into_inner());
    s.iter()
        .rev()
        .find(|(t, _)| *t <= at)
        .filter(|(t, _)| at - t < 100.0)
        .map_or(f64::NAN, |&(t, h)| h as f64 + (at - t) * 60.0 / 1000.0)
}

/// One drag's times, ms from its pointer event.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    sent: f64,
    stored: f64,
    committed: f64,
    relayed: f64,
    b_first: f64,
    b_change: f64,
    own: f64,
    /// Frames tab B's screen was behind the leader's head at the event
    /// (B's last frame drawn by then; the head from 20 ms samples).
    b_behind: f64,
    /// The change frame less the leader's head when the push was stored:
    /// the input lead as the cluster applied it.
    change_ahead: f64,
}

fn summary(name: &str, mut xs: Vec<f64>) -> String {
    xs.retain(|x| x.is_finite());
    xs.sort_by(f64::total_cmp);
    let (Some(&min), Some(&max)) = (xs.first(), xs.last()) else {
        return format!("| {name} | – | – | – | – | 0 |");
    };
    let pct = |p: f64| xs[((xs.len() as f64 - 1.0) * p).round() as usize];
    let p95 = xs[((xs.len() as f64 * 0.95).ceil() as usize).clamp(1, xs.len()) - 1];
    format!(
        "| {name} | {min:.1} | {:.1} | {p95:.1} | {max:.1} | {} |",
        pct(0.5),
        xs.len()
    )
}

async fn run() -> Result<()> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_donut"));
    let drags: usize = env_or("DONUT_DRAGS", 50);
    let spacing = Duration::from_millis(env_or("DONUT_SPACING_MS", 1500));
    let redis = RedisServer::start();
    let prefix = cluster::fresh_prefix("bench-steer");
    let nodes = cluster::start_nodes(
        &redis.url(),
        &prefix,
        3,
        Duration::from_secs(1),
        &["--fps", "60"],
    );
    let deadline = Instant::now() + HANG;
    let leader = loop {
        if let Some(i) = nodes
            .iter()
            .position(|n| stats(n).is_ok_and(|s| s["cluster_role"] == 2))
        {
            break i;
        }
        if Instant::now() > deadline {
            return Err("no node leads".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _worker = chromium::Proc(
        Command::new(&bin)
            .args(["work", "--server", &format!("ws://{}", nodes[leader].addr)])
            .args(["--threads", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let followers: Vec<&cluster::Node> =
        (0..3).filter(|&i| i != leader).map(|i| &nodes[i]).collect();
    let (f1, f2) = (followers[0], followers[1]);
    println!(
        "redis-server on {}; nodes {} (leader {}), {} and {}: {} --fps 60, lease 1 s; one native \
         worker (1 thread) on the leader; tab A on follower {}, tab B and a raw viewer on follower {}",
        redis.url(),
        nodes[leader].addr,
        nodes[leader].id,
        f1.addr,
        f2.addr,
        bin.display(),
        f1.id,
        f2.id
    );
    let firsts: FirstBatch = Arc::default();
    let heads: Heads = Arc::default();
    observer(f2.addr, Arc::clone(&firsts), Arc::clone(&heads)).await?;
    // The same on the leader, for comparison (its telemetry carries its
    // core's head).
    let leader_told: Heads = Arc::default();
    observer(nodes[leader].addr, Arc::default(), Arc::clone(&leader_told)).await?;
    // The leader's head, sampled every 20 ms: (Unix ms, head).
    let leader_heads: Heads = Arc::default();
    let sampler = {
        let (port, out) = (nodes[leader].addr.port(), Arc::clone(&leader_heads));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = Arc::clone(&stop);
        let t = std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let t0 = unix_ms();
                if let Ok(v) = chromium::stats(port, HANG) {
                    let mid = (t0 + unix_ms()) / 2.0;
                    out.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((mid, num(&v, "head") as u64));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        (stop, t)
    };
    let link = redis::Client::open(redis.url())?;
    let mut conn = link.get_multiplexed_async_connection().await?;
    let (inputs_key, timeline_key) = (format!("{prefix}inputs"), format!("{prefix}timeline"));

    let chromium::Session {
        client,
        driver: _driver,
        profile,
    } = chromium::launch(&[], HANG).await?;
    // Two windows, not background tabs: headless Chromium does not run a
    // background tab's requestAnimationFrame.
    let a = client.window().await?;
    client
        .goto(&format!("http://{}/?contribute=0", f1.addr))
        .await?;
    let b = client.new_window(false).await?.handle;
    client.switch_to_window(b.clone()).await?;
    client
        .goto(&format!("http://{}/?contribute=0", f2.addr))
        .await?;
    for tab in [&a, &b] {
        until(
            &client,
            tab,
            "a painted frame",
            "const v = window.donutViewer; return v && v.currentFrame() != null ? true : null",
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before: Vec<Value> = nodes.iter().map(stats).collect::<Result<_>>()?;
    let mut inputs_seen = range(&mut conn, &inputs_key, EntryId::ZERO)
        .await?
        .ids
        .last()
        .and_then(|e| e.id.parse().ok())
        .unwrap_or(EntryId::ZERO);
    let mut timeline_seen = inputs_seen;
    let mut samples = Vec::new();
    for i in 0..drags {
        let version = num(
            &js(&client, &a, "return window.donutViewer.stats()").await?,
            "timeline",
        );
        let sent_before = js(&client, &a, "return window.donutViewer.inputs().length")
            .await?
            .as_u64()
            .unwrap_or(0);
        chromium::drag_in(&client, &a).await?;
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
        // The drag's first change, as follower 1 told tab A.
        let change = until(
            &client,
            &a,
            "tab A to be told the change",
            &format!(
                "const c = window.donutViewer.prediction().changes.filter((c) => c[0] > {version});
                 return c.length ? c.sort((x, y) => x[0] - y[0])[0] : null"
            ),
        )
        .await?;
        let (v, frame) = (
            change[0].as_u64().unwrap_or(0) as u32,
            change[1].as_f64().unwrap_or(f64::NAN),
        );
        let probe = format!(
            "const p = window.donutViewer.painted().filter((e) => e[1] >= {v});
             const r = p.find((e) => e[0] >= {frame});
             const at = window.donutViewer.painted().filter((e) => e[3] <= {event}).pop();
             return r ? [p[0][3], r[3], at ? at[0] : null] : null"
        );
        let seen = until(&client, &b, "tab B to paint the change", &probe).await?;
        let own = js(
            &client,
            &a,
            &format!(
                "const v = window.donutViewer, p = v.prediction();
                 const s = v.painted().map((e) => [e[0], e[1], e[3], false])
                     .concat(p.log.map((e) => [e[0], e[1], e[3], e[4]]));
                 const hit = s.filter((e) => e[2] >= {event} && e[0] >= {frame} && (e[1] >= {v} || e[3]))
                     .sort((x, y) => x[2] - y[2])[0];
                 return hit ? hit[2] : null;"
            ),
        )
        .await?
        .as_f64()
        .unwrap_or(f64::NAN);
        // The drag's first push in the input log, and the first timeline
        // entry of version `v` (which folds it).
        let pushes = range(&mut conn, &inputs_key, inputs_seen).await?;
        let push: Option<EntryId> = pushes.ids.first().and_then(|e| e.id.parse().ok());
        if let Some(last) = pushes.ids.last().and_then(|e| e.id.parse().ok()) {
            inputs_seen = last;
        }
        let entries = range(&mut conn, &timeline_key, timeline_seen).await?;
        let mut committed = None;
        for raw in &entries.ids {
            let Ok(id) = raw.id.parse::<EntryId>() else {
                continue;
            };
            timeline_seen = id;
            if committed.is_none()
                && let Ok(e) = TimelineEntry::from_fields(&raw.map)
                && e.version == v
                && push.is_some_and(|p| e.inputs >= p)
            {
                committed = Some(id);
            }
        }
        let relayed = firsts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&v)
            .copied()
            .unwrap_or(f64::NAN);
        let s = Sample {
            sent: sent - event,
            stored: push.map_or(f64::NAN, |p| p.ms as f64 - event),
            committed: committed.map_or(f64::NAN, |c| c.ms as f64 - event),
            relayed: relayed - event,
            b_first: seen[0].as_f64().unwrap_or(f64::NAN) - event,
            b_change: seen[1].as_f64().unwrap_or(f64::NAN) - event,
            own: own - event,
            b_behind: head_at(&leader_heads, event) - seen[2].as_f64().unwrap_or(f64::NAN),
            change_ahead: push.map_or(f64::NAN, |p| frame - head_at(&leader_heads, p.ms as f64)),
        };
        println!(
            "drag {i:2} (version {v}, change frame {frame}): sent {:5.1}, stored {:5.1}, committed {:5.1}, \
             relayed {:5.1}, B first {:5.1}, B ≥ change frame {:5.1}, A's own screen {:5.1} ms; \
             B {:+.1} frames behind the leader's head, change frame {:+.1} past it",
            s.sent,
            s.stored,
            s.committed,
            s.relayed,
            s.b_first,
            s.b_change,
            s.own,
            s.b_behind,
            s.change_ahead
        );
        samples.push(s);
        tokio::time::sleep(spacing).await;
    }
    let after: Vec<Value> = nodes.iter().map(stats).collect::<Result<_>>()?;
    sampler.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.1.join();
    // Follower 2's telemetry head against the leader's head at the moment
    // it arrived (the nearest sample before it, moved on at 60 fps).
    let lh = leader_heads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let against = |heads: &Heads| -> Vec<f64> {
        heads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|&(at, head)| {
                let &(t, h) = lh.iter().rev().find(|(t, _)| *t <= at)?;
                (at - t < 100.0).then(|| head as f64 - (h as f64 + (at - t) * 60.0 / 1000.0))
            })
            .collect()
    };
    let (told, leader_told) = (against(&heads), against(&leader_told));
    let col = |f: fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<_>>();
    let step = |f: fn(&Sample) -> f64, g: fn(&Sample) -> f64| {
        samples.iter().map(|s| f(s) - g(s)).collect::<Vec<_>>()
    };
    println!(
        "\nFollower → follower steering over {} drags, ms from tab A's pointer event \
         (median and p95 over the drags):\n",
        samples.len()
    );
    println!("| measure | min | median | p95 | max | drags |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, xs) in [
        (
            "**event → tab B paints the change** (first new-version frame ≥ the change frame)",
            col(|s| s.b_change),
        ),
        (
            "event → tab B's first frame of the new version",
            col(|s| s.b_first),
        ),
        ("**event → tab A's own screen**", col(|s| s.own)),
        ("event → tab A sends the Input", col(|s| s.sent)),
        ("event → stored in the input log", col(|s| s.stored)),
        ("event → timeline entry committed", col(|s| s.committed)),
        (
            "event → follower 2's viewer receives it",
            col(|s| s.relayed),
        ),
        (
            "step: sent → stored (WS, follower 1, Lua append)",
            step(|s| s.stored, |s| s.sent),
        ),
        (
            "step: stored → committed (leader reads, commits, appends)",
            step(|s| s.committed, |s| s.stored),
        ),
        (
            "step: committed → relayed (follower 2 reads, broadcasts)",
            step(|s| s.relayed, |s| s.committed),
        ),
        (
            "step: relayed → B paints the change (jitter buffer, change frame's time)",
            step(|s| s.b_change, |s| s.relayed),
        ),
        (
            "frames tab B was behind the leader's head at the event",
            col(|s| s.b_behind),
        ),
        (
            "frames from the leader's head at the push's store to the change frame",
            col(|s| s.change_ahead),
        ),
        (
            "frames follower 2's telemetry head is ahead of the leader's head on arrival",
            told,
        ),
        (
            "frames the leader's telemetry head is ahead of its head on arrival",
            leader_told,
        ),
    ] {
        println!("{}", summary(name, xs));
    }
    println!("\nWhat the nodes counted over the drags:");
    for (k, n) in nodes.iter().enumerate() {
        let d = |key: &str| num(&after[k], key) - num(&before[k], key);
        println!(
            "  {} ({}): inputs accepted {}, forwarded to the log {}, taken from the log {}, lost {}, \
             scene changes {}, frames superseded {}, input lead now {} frames, protocol errors {}",
            n.id,
            if k == leader { "leader" } else { "follower" },
            d("inputs_accepted"),
            d("cluster_inputs_forwarded"),
            d("cluster_inputs_taken"),
            d("cluster_inputs_lost"),
            d("scene_changes"),
            d("frames_superseded"),
            num(&after[k], "input_lead_frames"),
            d("protocol_errors"),
        );
    }
    let pa = js(&client, &a, "return window.donutViewer.prediction()").await?;
    println!(
        "tab A's prediction: keyframes {}, pushes {}, predicted {}, confirmed {}, mispredicted {}, \
         unsettled {}, lead {} frames",
        pa["keyframes"],
        pa["pushes"],
        pa["predicted"],
        pa["confirmed"],
        pa["mispredicted"],
        pa["unsettled"],
        pa["lead"]
    );
    let _ = client.close().await;
    let _ = std::fs::remove_dir_all(&profile);
    Ok(())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(e) = rt.block_on(run()) {
        eprintln!("cluster_steer bench failed: {e}");
        std::process::exit(1);
    }
}
