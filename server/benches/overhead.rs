//! Where the server's time goes: its CPU time per frame delivered, and
//! optionally a `perf` profile of it, with the real `donut serve` binary as
//! a subprocess so that nothing else runs in its threads.
//!
//! ```text
//! cargo bench -p donut-server --bench overhead                 # the matrix below
//! cargo bench -p donut-server --bench overhead -- replayed 2 nibble off
//! DONUT_FRAMES=1048576 DONUT_PERF=/tmp/server.perf cargo bench -p donut-server --bench overhead -- replayed 2 nibble off
//! perf report -i /tmp/server.perf --no-children --sort sym
//! ```
//!
//! The load (N workers and one viewer that checks every frame byte for byte,
//! see `support`) runs in this process; the server runs pacing off. The
//! server's CPU time is read from `/proc/<pid>/task/*/schedstat` when the
//! viewer's timed window opens and when it closes, and divided by the frames
//! the viewer received in between: the server's whole cost per frame (its
//! share of the loopback TCP in the kernel included), whatever the clients
//! cost. With `DONUT_PERF=<file>`, `perf record` samples the server for the
//! whole run (at 1999 Hz, with DWARF call graphs); `DONUT_FRAMES` (default
//! 2^18) lengthens the run, so that the profile has enough samples.

mod support;

use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{Window, join_viewer, replay_worker, spawn_checking_viewer, table, unpaced_server};

/// One configuration of a run.
#[derive(Clone, Copy, Debug)]
struct Run {
    real: bool,
    workers: usize,
    codec: &'static str,
    verify: &'static str,
}

impl Run {
    fn parse(args: &[String]) -> Option<Self> {
        let frames = args.first()?;
        let pick = |i: usize, options: &[&'static str]| {
            args.get(i)
                .and_then(|a| options.iter().find(|o| **o == a.as_str()).copied())
        };
        Some(Self {
            real: frames == "real",
            workers: args.get(1).and_then(|n| n.parse().ok()).unwrap_or(2),
            codec: pick(2, &["nibble", "context"]).unwrap_or("nibble"),
            verify: pick(3, &["off", "sample", "full"]).unwrap_or("off"),
        })
    }
}

/// This process's CPU time so far (the workers and the viewer), ns.
fn own_cpu() -> u64 {
    support::cpu_ns(std::process::id())
}

/// `perf record` on the server, if `DONUT_PERF` names an output file.
fn start_perf(pid: u32) -> Option<Child> {
    let out = std::env::var("DONUT_PERF").ok()?;
    Command::new("perf")
        .args(["record", "-q", "-F", "1999", "--call-graph", "dwarf,16384"])
        .args(["-p", &pid.to_string(), "-o", &out])
        .spawn()
        .map_err(|e| eprintln!("perf record: {e}"))
        .ok()
}

fn stop_perf(perf: Option<Child>) {
    if let Some(mut p) = perf {
        let _ = Command::new("kill")
            .args(["-INT", &p.id().to_string()])
            .status();
        let _ = p.wait();
    }
}

async fn run(cfg: Run, table: &Arc<Vec<u8>>) {
    let server = unpaced_server(cfg.codec, cfg.verify);
    let addr = server.addr;
    // Sampling from the start: perf needs a moment to attach, and the
    // warm-up is a small part of a profiling run (see DONUT_FRAMES).
    let perf = start_perf(server.pid());
    let mut workers = Vec::new();
    for _ in 0..cfg.workers {
        workers.push(if cfg.real {
            let mut wcfg = donut_server::config::WorkConfig::for_server(&format!("ws://{addr}"));
            wcfg.threads = 1;
            tokio::spawn(async move {
                let _ = donut_server::native_worker::run(wcfg).await;
            })
        } else {
            tokio::spawn(replay_worker(addr, Arc::clone(table), 0.0))
        });
    }
    // CPU times (server, this process) when the window opens and closes.
    let marks = Arc::new(Mutex::new(Vec::new()));
    let viewer = {
        let (pid, marks) = (server.pid(), Arc::clone(&marks));
        spawn_checking_viewer(addr, Arc::clone(table), move || {
            let now = (support::cpu_ns(pid), own_cpu());
            marks.lock().unwrap_or_else(|p| p.into_inner()).push(now);
        })
    };
    let window: Window = join_viewer(viewer).await;
    let marks = marks.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let [(cpu_warm, own_warm), (cpu_end, own_end)] = marks[..] else {
        panic!("two marks, got {marks:?}")
    };
    stop_perf(perf);
    for w in workers {
        w.abort();
    }
    let cpu_s = cpu_end.saturating_sub(cpu_warm) as f64 / 1e9;
    let own_s = own_end.saturating_sub(own_warm) as f64 / 1e9;
    println!(
        "{:<8} {} workers, codec {:<7}, verify {:<6}: {:>8.0} frames/s, server CPU {:>5.2} µs/frame ({:.2} of a core), load generator {:>5.2} µs/frame ({:.2} of a core)",
        if cfg.real { "real" } else { "replayed" },
        cfg.workers,
        cfg.codec,
        cfg.verify,
        window.fps(),
        cpu_s * 1e6 / window.frames as f64,
        cpu_s / window.secs,
        own_s * 1e6 / window.frames as f64,
        own_s / window.secs,
    );
    drop(server);
    tokio::time::sleep(Duration::from_millis(200)).await;
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let runs = match Run::parse(&args) {
        Some(one) => vec![one],
        None => [
            ("replayed", 2, "nibble", "off"),
            ("replayed", 2, "nibble", "sample"),
            ("replayed", 2, "context", "off"),
            ("real", 2, "context", "sample"),
        ]
        .map(|(frames, workers, codec, verify)| Run {
            real: frames == "real",
            workers,
            codec,
            verify,
        })
        .to_vec(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let frames = std::env::var("DONUT_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(support::TABLE);
    let table = table(frames);
    for cfg in runs {
        rt.block_on(run(cfg, &table));
    }
}
