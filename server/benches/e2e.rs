//! End-to-end benchmarks over loopback WebSockets (a `--release` bench
//! binary, not a test): the real `donut serve` as a subprocess with pacing
//! off, N workers, and one viewer that compares every frame it receives byte
//! for byte with the native render, on an OS thread of its own (on the
//! workers' runtime, eight busy workers starved it and it set the pace).
//!
//! ```text
//! cargo bench -p donut-server --bench e2e -- throughput   # N = 1, 2, 4, 8, real and replayed frames, median of 3
//! cargo bench -p donut-server --bench e2e -- churn        # 2 and 8 workers, 0/25/50% of results dropped, median of 3
//! cargo bench -p donut-server --bench e2e -- churn replayed 8   # only those: [replayed|real] [N...] select
//! cargo bench -p donut-server --bench e2e -- fanout 1000 60   # K viewers for S seconds, paced, server as a subprocess
//! DONUT_CLUSTER_NODES=3 cargo bench -p donut-server --bench e2e -- fanout 1000 60   # the same over a 3-node cluster
//! DONUT_CODEC=nibble cargo bench -p donut-server --bench e2e -- throughput   # plain 880-byte frames to viewers
//! DONUT_BATCH_FRAMES=60 cargo bench -p donut-server --bench e2e -- throughput replayed 8   # 60-frame viewer batches
//! ```
//!
//! Viewer batches are `DONUT_BATCH_FRAMES` frames at most (default 600), and
//! the server's viewer queue is sized in batches to hold the same backlog in
//! frames whatever that size (see `support::unpaced_server`).
//!
//! Frames: "real" workers are `donut work`'s code (render + pack on
//! receipt); "replayed" workers answer from a table of frames rendered before
//! the run, the analogue of the Go harness's synthetic frames, isolating the
//! server and transport. The viewer checks every frame against the same
//! table, so the measured window is the table's length.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

// The clock the server stamps its broadcasts with (same machine, same
// clock, another process).
use donut_server::config::WorkConfig;
use donut_server::stream::broadcaster::unix_us;

mod support;

#[path = "../tests/common/redis_server.rs"]
#[allow(dead_code)] // Only `start` and `url` are used here.
mod redis_server;

use support::fanout::{ViewerLog, fanout_viewer, loadavg, parse_published};
use support::{
    ServerProcess, TABLE, WARMUP, join_viewer, replay_worker, spawn_checking_viewer, table,
    unpaced_server,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Frames {
    Real,
    Replayed,
}

/// The viewer codec under test: `DONUT_CODEC=nibble` or `context` (default).
fn codec() -> &'static str {
    match std::env::var("DONUT_CODEC").as_deref() {
        Ok("nibble") => "nibble",
        _ => "context",
    }
}

/// One run: `donut serve` as a subprocess (so that nothing else runs in its
/// threads), `n` workers and the checking viewer in this process. Returns
/// the viewer's frames/s and the server's `/api/stats`.
async fn run_once(
    n: usize,
    frames: Frames,
    drop_fraction: f64,
    verify: &str,
    table: &Arc<Vec<u8>>,
) -> (f64, serde_json::Value) {
    let server = unpaced_server(codec(), verify);
    let addr = server.addr;
    let viewer = spawn_checking_viewer(addr, Arc::clone(table), || {});
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut workers = Vec::new();
    for _ in 0..n {
        workers.push(match frames {
            Frames::Replayed => tokio::spawn(replay_worker(addr, Arc::clone(table), drop_fraction)),
            Frames::Real => {
                let mut cfg = WorkConfig::for_server(&format!("ws://{addr}"));
                cfg.threads = 1;
                cfg.drop_fraction = drop_fraction;
                tokio::spawn(async move {
                    let _ = donut_server::native_worker::run(cfg).await;
                })
            }
        });
    }
    let fps = join_viewer(viewer).await.fps();
    let stats = tokio::task::spawn_blocking(move || {
        let s = server.stats().unwrap_or_default();
        drop(server);
        s
    })
    .await
    .unwrap_or_default();
    for w in workers {
        w.abort();
    }
    (fps, stats)
}

fn line(label: &str, fps: f64, s: &serde_json::Value) {
    let g = |k: &str| s[k].as_u64().unwrap_or(0);
    let frames = g("frames_accepted").max(1);
    println!(
        "{label:<44} {fps:>8.0} frames/s  hedged {:>4}  reassigned {:>4}  expired {:>4}  presumed lost {:>4}  dup results {:>4}  broadcast bytes/frame {:.0}",
        g("tasks_hedged"),
        g("tasks_reassigned"),
        g("tasks_expired"),
        g("tasks_presumed_lost"),
        g("results_duplicate"),
        g("broadcast_bytes") as f64 / frames as f64,
    );
}

/// Runs of each configuration; the median is reported, because one run of
/// a fast configuration lasts under a second.
const RUNS: usize = 3;

/// The median of [`RUNS`] runs of one configuration, printed with every
/// run's frames/s; returns the median frames/s.
async fn median_run(
    label: &str,
    (n, frames, drop, verify): (usize, Frames, f64, &str),
    table: &Arc<Vec<u8>>,
) -> f64 {
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        runs.push(run_once(n, frames, drop, verify, table).await);
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (fps, s) = &runs[RUNS / 2];
    line(label, *fps, s);
    let all: Vec<String> = runs.iter().map(|r| format!("{:.0}", r.0)).collect();
    println!("    runs {}", all.join(" / "));
    *fps
}

/// The configurations a run covers: `-- throughput|churn [replayed|real]
/// [N...]` keeps those with that kind of frames and those worker counts.
#[derive(Default)]
struct Only {
    frames: Option<Frames>,
    workers: Vec<usize>,
}

impl Only {
    fn parse(args: &[String]) -> Self {
        let mut only = Self::default();
        for a in args {
            match a.as_str() {
                "replayed" => only.frames = Some(Frames::Replayed),
                "real" => only.frames = Some(Frames::Real),
                n => match n.parse() {
                    Ok(n) => only.workers.push(n),
                    Err(_) => {
                        panic!("unknown selection {n:?}: expected replayed, real or a worker count")
                    }
                },
            }
        }
        only
    }

    fn admits(&self, frames: Frames, n: usize) -> bool {
        self.frames.is_none_or(|f| f == frames)
            && (self.workers.is_empty() || self.workers.contains(&n))
    }
}

async fn throughput(table: Arc<Vec<u8>>, only: &Only) {
    for frames in [Frames::Replayed, Frames::Real] {
        for n in [1, 2, 4, 8] {
            if !only.admits(frames, n) {
                continue;
            }
            let label = format!("{frames:?} frames, {n} workers, verify off");
            median_run(&label, (n, frames, 0.0, "off"), &table).await;
        }
    }
    for verify in ["sample", "full"] {
        if !only.admits(Frames::Replayed, 8) {
            break;
        }
        let label = format!("Replayed frames, 8 workers, verify {verify}");
        median_run(&label, (8, Frames::Replayed, 0.0, verify), &table).await;
    }
}

async fn churn(table: Arc<Vec<u8>>, only: &Only) {
    for (frames, n) in [
        (Frames::Replayed, 2),
        (Frames::Replayed, 8),
        (Frames::Real, 2),
        (Frames::Real, 8),
    ] {
        if !only.admits(frames, n) {
            continue;
        }
        let mut no_drop = None;
        for drop in [0.0, 0.25, 0.5] {
            let label = format!(
                "{frames:?} frames, {n} workers, {:.0}% dropped",
                drop * 100.0
            );
            let fps = median_run(&label, (n, frames, drop, "off"), &table).await;
            let base = *no_drop.get_or_insert(fps);
            println!("    {:.0}% of no-drop", fps / base * 100.0);
        }
    }
}

/// `v` sorted; the value at quantile `q`.
fn quantile(v: &[u64], q: f64) -> u64 {
    v.get(((v.len().max(1) - 1) as f64 * q).round() as usize)
        .copied()
        .unwrap_or(0)
}

/// Connection ramp: the window starts this long after the last viewer's
/// handshake completed (the server finishes upgrades and catch-ups).
const SETTLE: Duration = Duration::from_secs(1);
/// Viewers keep listening this long after the window, so every batch in
/// the window has had time to arrive.
const TAIL: Duration = Duration::from_secs(2);

/// K viewers on a paced stream served by the real binary as a subprocess,
/// held `secs` seconds after all have connected.
///
/// "Behind": the server logs when it publishes each batch (`unix_us`, on
/// the same clock as this process). For every viewer and batch, the number
/// of batches the server had published after it by the time the viewer
/// received it: 0 = it arrived before the next broadcast, 1 = one
/// broadcast behind. Counted over the batches published in the window
/// `[all connected + SETTLE, + secs)`; the ramp before it and the tail
/// after it are reported on their own lines, not dropped.
///
/// With `DONUT_CLUSTER_NODES=N` (N ≥ 1) the stream is served by N
/// `--cluster` nodes sharing a real `redis-server`; the viewers are spread
/// over the nodes in turn, the worker is on the first, and "behind" counts
/// against the leader's publish times (followers relay them). Memory and
/// CPU figures are summed over the nodes.
fn fanout(k: usize, secs: u64, threads: usize) {
    use std::io::{BufRead, BufReader};
    use std::process::Command;
    let nodes: usize = std::env::var("DONUT_CLUSTER_NODES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let redis = (nodes > 0).then(redis_server::RedisServer::start);
    let max_viewers = (k + 10).to_string();
    let mut servers: Vec<ServerProcess> = (0..nodes.max(1))
        .map(|n| {
            let id = format!("n{}", n + 1);
            let mut args = vec!["--max-per-ip", "0", "--max-viewers", &max_viewers];
            let url = redis.as_ref().map(redis_server::RedisServer::url);
            if let Some(url) = &url {
                args.extend([
                    "--cluster",
                    url,
                    "--node-id",
                    &id,
                    "--viewer-lead-secs",
                    "1",
                ]);
            }
            ServerProcess::start_logging(&args, "warn,donut_server::stream::broadcaster=debug")
        })
        .collect();
    if nodes > 0 {
        println!(
            "cluster of {nodes} nodes sharing {}",
            redis.as_ref().map_or(String::new(), |r| r.url())
        );
    }
    let pids: Vec<u32> = servers.iter().map(ServerProcess::pid).collect();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let addr = addrs[0];
    // The servers' logs: publish times, and any warning (counted, shown).
    let log_readers: Vec<_> = servers
        .iter_mut()
        .filter_map(ServerProcess::take_log)
        .map(|err| {
            std::thread::spawn(move || {
                let mut published = Vec::new();
                let mut warnings = Vec::new();
                for l in BufReader::new(err).lines().map_while(Result::ok) {
                    match parse_published(&l) {
                        Some(p) => published.push(p),
                        None => warnings.push(l),
                    }
                }
                (published, warnings)
            })
        })
        .collect();
    let rss = |pids: &[u32]| {
        pids.iter()
            .map(|&p| support::status_kib(p, "VmRSS:"))
            .sum::<u64>()
    };
    let cpu = |pids: &[u32]| pids.iter().map(|&p| support::cpu_secs(p)).sum::<f64>();
    // One native worker as its own process, so the load generator's CPU
    // figure is the viewers' alone.
    let mut worker = Command::new(support::donut_bin())
        .args([
            "work",
            "--server",
            &format!("ws://{addr}"),
            "--threads",
            "1",
        ])
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("worker");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime");
    std::thread::sleep(Duration::from_secs(2));
    let rss_idle = rss(&pids);
    let me = std::process::id();
    let connected = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let t_ramp = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let capacity = (secs as usize + 10) * 6;
    let tasks: Vec<_> = (0..k)
        .map(|i| {
            rt.spawn(fanout_viewer(
                addrs[i % addrs.len()],
                Arc::clone(&stop),
                Arc::clone(&gate),
                Arc::clone(&connected),
                Arc::clone(&failed),
                capacity,
            ))
        })
        .collect();
    while connected.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < k as u64
        && t_ramp.elapsed() < Duration::from_secs(300)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let ramp_secs = t_ramp.elapsed().as_secs_f64();
    let ready_us = unix_us();
    let from_us = ready_us + SETTLE.as_micros() as u64;
    let to_us = from_us + secs * 1_000_000;
    std::thread::sleep(SETTLE);
    let cpu0 = (cpu(&pids), support::cpu_secs(me), Instant::now());
    let mut rss_max = 0;
    for _ in 0..secs {
        std::thread::sleep(Duration::from_secs(1));
        rss_max = rss_max.max(rss(&pids));
    }
    let cpu1 = (cpu(&pids), support::cpu_secs(me), Instant::now());
    let rss_end = rss(&pids);
    std::thread::sleep(TAIL);
    stop.store(true, Ordering::Relaxed);
    let wall = cpu1.2.duration_since(cpu0.2).as_secs_f64();
    let server_cpu = (cpu1.0 - cpu0.0) / wall * 100.0;
    let gen_cpu = (cpu1.1 - cpu0.1) / wall * 100.0;
    let stats = servers[0].stats().unwrap_or_default();
    // Each viewer notices `stop` after its next read (a batch every 250 ms).
    let (logs, stuck): (Vec<ViewerLog>, u64) = rt.block_on(async {
        let mut logs = Vec::with_capacity(k);
        let mut stuck = 0;
        for t in tasks {
            match tokio::time::timeout(Duration::from_secs(5), t).await {
                Ok(Ok(Some(l))) => logs.push(l),
                Ok(_) => {}
                Err(_) => stuck += 1,
            }
        }
        (logs, stuck)
    });
    let _ = worker.kill();
    let _ = worker.wait();
    drop(servers);
    drop(redis);
    let (mut published, mut warnings) = (Vec::new(), Vec::new());
    for h in log_readers {
        if let Ok((p, w)) = h.join() {
            published.extend(p);
            warnings.extend(w);
        }
    }
    published.sort_unstable();
    report_fanout(&FanoutRun {
        k,
        connected: connected.load(Ordering::Relaxed),
        ramp_secs,
        from_us,
        to_us,
        published,
        logs,
        rss: (rss_idle, rss_end, rss_max),
        cpu: (server_cpu, gen_cpu),
        threads,
        warnings,
        stats,
        stuck,
    });
}

struct FanoutRun {
    k: usize,
    connected: u64,
    ramp_secs: f64,
    from_us: u64,
    to_us: u64,
    published: Vec<(u64, u64)>,
    logs: Vec<ViewerLog>,
    rss: (u64, u64, u64),
    cpu: (f64, f64),
    threads: usize,
    warnings: Vec<String>,
    stats: serde_json::Value,
    /// Viewers that did not end within 5 s of `stop` (nothing received).
    stuck: u64,
}

/// Behind, latency and spread over one class of batches (ramp, window, tail).
#[derive(Default)]
struct Class {
    viewer_batches: u64,
    behind: [u64; 4],
    behind_max: u64,
    latency_us: Vec<u64>,
}

impl Class {
    fn add(&mut self, behind: u64, latency_us: u64) {
        self.viewer_batches += 1;
        self.behind[behind.min(3) as usize] += 1;
        self.behind_max = self.behind_max.max(behind);
        self.latency_us.push(latency_us);
    }

    fn line(&mut self, name: &str) -> String {
        self.latency_us.sort_unstable();
        let ms = |q| quantile(&self.latency_us, q) as f64 / 1000.0;
        format!(
            "  {name}: {} viewer-batches; behind 0: {}, 1: {}, 2: {}, 3+: {}, max {}; publish->receive ms p50 {:.1} p99 {:.1} max {:.1}",
            self.viewer_batches,
            self.behind[0],
            self.behind[1],
            self.behind[2],
            self.behind[3],
            self.behind_max,
            ms(0.5),
            ms(0.99),
            ms(1.0),
        )
    }
}

fn report_fanout(r: &FanoutRun) {
    let mut published = r.published.clone();
    published.sort_unstable();
    let index: std::collections::HashMap<u64, usize> = published
        .iter()
        .enumerate()
        .map(|(i, &(start, _))| (start, i))
        .collect();
    let at: Vec<u64> = published.iter().map(|&(_, t)| t).collect();
    let in_window = |i: usize| (r.from_us..r.to_us).contains(&at[i]);
    let window_batches = (0..at.len()).filter(|&i| in_window(i)).count() as u64;
    let (mut ramp, mut window, mut tail) = (Class::default(), Class::default(), Class::default());
    // Per window batch: first and last arrival over all viewers.
    let mut first_last = vec![(u64::MAX, 0u64); at.len()];
    let (mut unmatched, mut early, mut gaps) = (0u64, 0u64, 0u64);
    let mut per_viewer = Vec::with_capacity(r.logs.len());
    let mut viewers_over_one = 0u64;
    for log in &r.logs {
        gaps += u64::from(log.gaps);
        let mut seen = 0u64;
        let mut over_one = false;
        for &(start, recv) in &log.recv {
            let Some(&i) = index.get(&start) else {
                unmatched += 1;
                continue;
            };
            // The newest batch published at or before the receive time.
            let newest = at.partition_point(|&p| p <= recv);
            if newest <= i {
                // Received before its own publish stamp: impossible on one
                // clock; counted so it would show.
                early += 1;
                continue;
            }
            let behind = (newest - 1 - i) as u64;
            let latency = recv - at[i];
            if at[i] < r.from_us {
                ramp.add(behind, latency);
            } else if at[i] < r.to_us {
                window.add(behind, latency);
                seen += 1;
                over_one |= behind > 1;
                let fl = &mut first_last[i];
                *fl = (fl.0.min(recv), fl.1.max(recv));
            } else {
                tail.add(behind, latency);
            }
        }
        viewers_over_one += u64::from(over_one);
        per_viewer.push(seen);
    }
    per_viewer.sort_unstable();
    let mut spread: Vec<u64> = (0..at.len())
        .filter(|&i| in_window(i) && first_last[i].0 != u64::MAX)
        .map(|i| first_last[i].1 - first_last[i].0)
        .collect();
    spread.sort_unstable();
    let interval_ms = if window_batches > 1 {
        let w: Vec<u64> = (0..at.len())
            .filter(|&i| in_window(i))
            .map(|i| at[i])
            .collect();
        (w[w.len() - 1] - w[0]) as f64 / 1000.0 / (w.len() - 1) as f64
    } else {
        0.0
    };
    let missed = window_batches * r.logs.len() as u64 - per_viewer.iter().sum::<u64>();
    println!(
        "fanout K={}: connected {} (ramp {:.1} s), held {} s after all connected + {:.0} s settle; load generator {} thread(s); load {}",
        r.k,
        r.connected,
        r.ramp_secs,
        (r.to_us - r.from_us) / 1_000_000,
        SETTLE.as_secs_f64(),
        r.threads,
        loadavg(),
    );
    let closed = r.logs.iter().filter(|l| l.closed).count();
    println!(
        "  window: {window_batches} batches published (every {interval_ms:.0} ms); per viewer received min {} / median {} / max {}; missed viewer-batches {missed}; gaps {gaps}; closed early {closed}; stuck {}; unmatched {unmatched}; early {early}",
        per_viewer.first().copied().unwrap_or(0),
        quantile(&per_viewer, 0.5),
        per_viewer.last().copied().unwrap_or(0),
        r.stuck,
    );
    println!("{}", window.line("window"));
    println!(
        "  window: viewers ever more than one broadcast behind: {viewers_over_one}; spread first-to-last viewer ms p50 {:.1} p99 {:.1} max {:.1}",
        quantile(&spread, 0.5) as f64 / 1000.0,
        quantile(&spread, 0.99) as f64 / 1000.0,
        quantile(&spread, 1.0) as f64 / 1000.0,
    );
    println!("{}", ramp.line("ramp (published before the window)"));
    println!("{}", tail.line("tail (published after the window)"));
    let (idle, end, max) = r.rss;
    println!(
        "  server RSS {:.1} MiB idle -> {:.1} MiB at window end (max {:.1}): {:.1} KiB per viewer; CPU over the window: server {:.0}%, load generator {:.0}% (100% = one core)",
        idle as f64 / 1024.0,
        end as f64 / 1024.0,
        max as f64 / 1024.0,
        end.saturating_sub(idle) as f64 / r.connected.max(1) as f64,
        r.cpu.0,
        r.cpu.1,
    );
    let v = &r.stats;
    println!(
        "  server: viewer_lag_events {} viewers_dropped_slow {} broadcast_batches {}",
        v["viewer_lag_events"], v["viewers_dropped_slow"], v["broadcast_batches"]
    );
    if !r.warnings.is_empty() {
        println!(
            "  server warnings: {} (first: {})",
            r.warnings.len(),
            r.warnings[0]
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let what = args.first().map_or("throughput", String::as_str).to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "machine: {} cores, load {}; table {TABLE} frames, timed after {WARMUP}; viewer codec {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg(),
        codec()
    );
    match what.as_str() {
        "fanout" => {
            let k = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
            let secs = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(60);
            // The load generator's own runtime: few OS threads.
            let threads = std::env::var("DONUT_LOADGEN_THREADS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1);
            drop(rt);
            fanout(k, secs, threads);
        }
        other => {
            let t0 = Instant::now();
            let table = table(TABLE);
            println!(
                "rendered the check table in {:.1} s",
                t0.elapsed().as_secs_f64()
            );
            let batch = support::batch_frames();
            println!(
                "viewer batches of at most {batch} frames, viewer queue {} batches",
                support::viewer_queue(batch)
            );
            let only = Only::parse(args.get(1..).unwrap_or_default());
            match other {
                "churn" => rt.block_on(churn(table, &only)),
                _ => rt.block_on(throughput(table, &only)),
            }
        }
    }
}
