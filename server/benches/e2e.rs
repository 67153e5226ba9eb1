//! End-to-end benchmarks over loopback WebSockets (a `--release` bench
//! binary, not a test): the real server in-process with pacing off, N
//! workers, and one viewer that compares every frame it receives byte for
//! byte with the native render.
//!
//! ```text
//! cargo bench -p donut-server --bench e2e -- throughput   # N = 1, 2, 4, 8, real and replayed frames
//! cargo bench -p donut-server --bench e2e -- churn        # 8 workers, 0% and 25% of results dropped
//! cargo bench -p donut-server --bench e2e -- fanout 1000 60   # K viewers for S seconds, paced, server as a subprocess
//! DONUT_CODEC=nibble cargo bench -p donut-server --bench e2e -- throughput   # plain 880-byte frames to viewers
//! ```
//!
//! Frames: "real" workers are `donut work`'s code (render + pack on
//! receipt); "replayed" workers answer from a table of frames rendered before
//! the run, the analogue of the Go harness's synthetic frames, isolating the
//! server and transport. The viewer checks every frame against the same
//! table, so the measured window is the table's length.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use donut_server::app::Server;
use donut_server::config::{BatchCodec, ServeConfig, VerifyPolicy, WorkConfig};
use donut_shared::wire::{HELLO_LEN, Hello, RESULT_HEADER_LEN, TaskResult, ToViewer, ToWorker};
use donut_shared::{PACKED_LEN, render_packed};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Frames rendered up front; the viewer checks every frame against them.
const TABLE: u64 = 1 << 18;
/// Frames received before timing starts.
const WARMUP: u64 = 1 << 14;

fn table() -> Arc<Vec<u8>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut buf = vec![0u8; TABLE as usize * PACKED_LEN];
    let per = (TABLE as usize).div_ceil(threads);
    std::thread::scope(|s| {
        for (t, chunk) in buf.chunks_mut(per * PACKED_LEN).enumerate() {
            s.spawn(move || {
                for (k, out) in chunk.as_chunks_mut::<PACKED_LEN>().0.iter_mut().enumerate() {
                    render_packed((t * per + k) as u64, out);
                }
            });
        }
    });
    Arc::new(buf)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Frames {
    Real,
    Replayed,
}

/// The viewer codec under test: `DONUT_CODEC=nibble` or `context` (default).
fn codec() -> BatchCodec {
    match std::env::var("DONUT_CODEC").as_deref() {
        Ok("nibble") => BatchCodec::Nibble,
        _ => BatchCodec::Context,
    }
}

fn serve_config(verify: VerifyPolicy) -> ServeConfig {
    let mut cfg = ServeConfig::for_tests();
    cfg.codec = codec();
    cfg.no_pacing = true;
    cfg.verify = verify;
    cfg.ring_frames = 1 << 16;
    cfg.max_per_ip = 0;
    cfg.task_ms = 50;
    cfg.first_task_frames = 120;
    cfg.viewer_queue = 256;
    cfg
}

/// A worker that answers from the table (optionally dropping results).
async fn replay_worker(addr: SocketAddr, table: Arc<Vec<u8>>, drop_fraction: f64) {
    let Ok((ws, _)) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/worker")).await
    else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let mut hello = [0u8; HELLO_LEN];
    let _ = Hello { slots: 2 }.encode(&mut hello);
    if sink.send(Message::binary(hello.to_vec())).await.is_err() {
        return;
    }
    let mut dropped = 0.0f64;
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Binary(b) = msg else { continue };
        let Ok(ToWorker::Task(t)) = ToWorker::decode(&b) else {
            continue;
        };
        // Deterministic dropping: every 1/drop_fraction-th result.
        dropped += drop_fraction;
        if dropped >= 1.0 {
            dropped -= 1.0;
            continue;
        }
        let from = t.start as usize * PACKED_LEN;
        let to = from + t.count as usize * PACKED_LEN;
        let out = match table.get(from..to) {
            Some(frames) => {
                let mut out = Vec::with_capacity(RESULT_HEADER_LEN + frames.len());
                out.extend_from_slice(&TaskResult::header(t.task_id, t.start, t.count));
                out.extend_from_slice(frames);
                out
            }
            // Past the end of the table (the last task of a run): render.
            None => donut_server::native_worker::render_result(&t),
        };
        if sink.send(Message::binary(out)).await.is_err() {
            return;
        }
    }
}

/// Receives until frame `TABLE`, checking order and every byte; returns
/// frames per second over `WARMUP .. TABLE`.
async fn checking_viewer(addr: SocketAddr, table: Arc<Vec<u8>>) -> f64 {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/viewer"))
        .await
        .expect("viewer connects");
    let mut next = 0u64;
    let mut t0 = None;
    while next < TABLE {
        let Some(Ok(Message::Binary(b))) = ws.next().await else {
            continue;
        };
        let Ok(ToViewer::Frames(f)) = ToViewer::decode(&b) else {
            continue;
        };
        assert_eq!(f.start, next, "gap or reordering");
        f.decode_frames(|n, got| {
            if let Some(want) = table.get(n as usize * PACKED_LEN..(n as usize + 1) * PACKED_LEN) {
                assert_eq!(&got[..], want, "wrong frame {n}");
            }
        })
        .expect("decodable batch");
        next = f.start + u64::from(f.count);
        if t0.is_none() && next >= WARMUP {
            t0 = Some((Instant::now(), next));
        }
    }
    let (t, from) = t0.expect("warm-up passed");
    (next - from) as f64 / t.elapsed().as_secs_f64()
}

async fn run_once(
    n: usize,
    frames: Frames,
    drop_fraction: f64,
    verify: VerifyPolicy,
    table: &Arc<Vec<u8>>,
) -> (f64, serde_json::Value) {
    let server = Server::start(serve_config(verify)).await.expect("server");
    let addr = server.addr;
    let viewer = tokio::spawn(checking_viewer(addr, Arc::clone(table)));
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
    let fps = viewer.await.expect("viewer");
    let stats = serde_json::to_value(server.app().snapshot()).unwrap_or_default();
    for w in workers {
        w.abort();
    }
    server.shutdown(Duration::from_secs(2)).await;
    (fps, stats)
}

fn line(label: &str, fps: f64, s: &serde_json::Value) {
    let g = |k: &str| s[k].as_u64().unwrap_or(0);
    let frames = g("frames_accepted").max(1);
    println!(
        "{label:<44} {fps:>8.0} frames/s  hedged {:>4}  reassigned {:>4}  expired {:>4}  dup results {:>4}  broadcast bytes/frame {:.0}",
        g("tasks_hedged"),
        g("tasks_reassigned"),
        g("tasks_expired"),
        g("results_duplicate"),
        g("broadcast_bytes") as f64 / frames as f64,
    );
}

async fn throughput(table: Arc<Vec<u8>>) {
    for frames in [Frames::Replayed, Frames::Real] {
        for n in [1, 2, 4, 8] {
            let (fps, s) = run_once(n, frames, 0.0, VerifyPolicy::Off, &table).await;
            line(
                &format!("{frames:?} frames, {n} workers, verify off"),
                fps,
                &s,
            );
        }
    }
    for verify in [VerifyPolicy::Sample, VerifyPolicy::Full] {
        let (fps, s) = run_once(8, Frames::Replayed, 0.0, verify, &table).await;
        line(
            &format!("Replayed frames, 8 workers, verify {verify:?}"),
            fps,
            &s,
        );
    }
}

async fn churn(table: Arc<Vec<u8>>) {
    for frames in [Frames::Replayed, Frames::Real] {
        for drop in [0.0, 0.25, 0.5] {
            let (fps, s) = run_once(8, frames, drop, VerifyPolicy::Off, &table).await;
            line(
                &format!("{frames:?} frames, 8 workers, {:.0}% dropped", drop * 100.0),
                fps,
                &s,
            );
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// K viewers on a paced stream served by the real binary as a subprocess.
async fn fanout(k: usize, secs: u64) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let bin = std::env::var("DONUT_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_donut").to_owned());
    let mut child = Command::new(&bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-per-ip",
            "0",
            "--max-viewers",
        ])
        .arg((k + 10).to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {bin} (set DONUT_BIN): {e}"));
    let pid = child.id();
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let addr: SocketAddr = line
        .trim()
        .trim_start_matches("listening on ")
        .parse()
        .expect("server address");
    let mut wcfg = WorkConfig::for_server(&format!("ws://{addr}"));
    wcfg.threads = 1;
    let worker = tokio::spawn(async move {
        let _ = donut_server::native_worker::run(wcfg).await;
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss0 = rss_kib(pid);
    // batch start -> (first arrival, last arrival, arrivals)
    let arrivals = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        u64,
        (Instant, Instant, usize),
    >::new()));
    let gaps = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(secs) + Duration::from_secs(k as u64 / 500);
    let mut tasks = Vec::new();
    for _ in 0..k {
        let arrivals = Arc::clone(&arrivals);
        let gaps = Arc::clone(&gaps);
        let connected = Arc::clone(&connected);
        tasks.push(tokio::spawn(async move {
            let Ok((mut ws, _)) =
                tokio_tungstenite::connect_async(format!("ws://{addr}/ws/viewer")).await
            else {
                return;
            };
            connected.fetch_add(1, Ordering::Relaxed);
            let mut next: Option<u64> = None;
            while Instant::now() < stop {
                let Ok(Some(Ok(Message::Binary(b)))) =
                    tokio::time::timeout(Duration::from_millis(500), ws.next()).await
                else {
                    continue;
                };
                let Ok(ToViewer::Frames(f)) = ToViewer::decode(&b) else {
                    continue;
                };
                if next.is_some_and(|n| n != f.start) {
                    gaps.fetch_add(1, Ordering::Relaxed);
                }
                next = Some(f.start + u64::from(f.count));
                let now = Instant::now();
                if let Ok(mut a) = arrivals.lock() {
                    let e = a.entry(f.start).or_insert((now, now, 0));
                    e.1 = now;
                    e.2 += 1;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs / 2 + k as u64 / 1000)).await;
    let rss_k = rss_kib(pid);
    for t in tasks {
        let _ = t.await;
    }
    let a = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
    let n = connected.load(Ordering::Relaxed) as usize;
    let mut spreads: Vec<f64> = a
        .values()
        .filter(|(_, _, c)| *c == n)
        .map(|(f, l, _)| l.duration_since(*f).as_secs_f64() * 1000.0)
        .collect();
    spreads.sort_by(f64::total_cmp);
    let full = spreads.len();
    let p = |q: f64| {
        spreads
            .get(((full as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "fanout K={k}: connected {n}, batches seen by every viewer {full}/{}, gaps {}, spread first-to-last viewer ms p50 {:.1} p99 {:.1} max {:.1}, server RSS {} KiB idle -> {} KiB ({:.1} KiB/viewer)",
        a.len(),
        gaps.load(Ordering::Relaxed),
        p(0.5),
        p(0.99),
        p(1.0),
        rss0,
        rss_k,
        (rss_k.saturating_sub(rss0)) as f64 / n.max(1) as f64,
    );
    let stats = std::process::Command::new("curl")
        .args(["-s", &format!("http://{addr}/api/stats")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&stats) {
        println!(
            "  server: viewer_lag_events {} viewers_dropped_slow {} broadcast_batches {}",
            v["viewer_lag_events"], v["viewers_dropped_slow"], v["broadcast_batches"]
        );
    }
    worker.abort();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
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
        "machine: {} cores; table {TABLE} frames, timed after {WARMUP}; viewer codec {:?}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        codec()
    );
    match what.as_str() {
        "fanout" => {
            let k = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
            let secs = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(60);
            rt.block_on(fanout(k, secs));
        }
        other => {
            let t0 = Instant::now();
            let table = table();
            println!(
                "rendered the check table in {:.1} s",
                t0.elapsed().as_secs_f64()
            );
            match other {
                "churn" => rt.block_on(churn(table)),
                _ => rt.block_on(throughput(table)),
            }
        }
    }
}
