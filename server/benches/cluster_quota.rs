//! What more machines buy, shown on one (issue 23): viewers held within one
//! broadcast by 1, 2 and 3 cluster nodes when every node process is held
//! to the same CPU quota.
//!
//! ```text
//! cargo bench -p donut-server --bench cluster_quota            # 0.3 of a core a node, 10 s windows
//! DONUT_QUOTA_CORES=0.25 DONUT_QUOTA_SECS=20 cargo bench -p donut-server --bench cluster_quota
//! ```
//!
//! One machine stands in for several: each `donut serve --cluster` node is
//! put in a cgroup v1 `cpu` group of its own (`/sys/fs/cgroup/cpu/<name>`,
//! `cpu.cfs_quota_us` / `cpu.cfs_period_us` = `DONUT_QUOTA_CORES`, default
//! 0.3, of one core), so a node has the same CPU whether there are one,
//! two or three of them. The groups are made here and removed when the run
//! ends, also when it panics (a drop guard). Needs root, cgroup v1's `cpu`
//! controller and `redis-server`; without any of them the bench FAILS.
//!
//! The cluster: a real `redis-server` (in memory, private loopback port),
//! N nodes sharing it (`--viewer-lead-secs 1`, `--max-per-ip 0`), one native
//! worker (`donut work --threads 1`) per node, outside the quota. The
//! viewers: the §5 fan-out load generator's clients (tokio-tungstenite,
//! 4 KiB read buffer, only each `Frames` header parsed, continuity
//! checked, arrival stamped), on one tokio thread in this process, spread
//! evenly over the nodes (viewer i → node i mod N). They are the client
//! side and use CPU too (the figure is printed): outside the quota, on the
//! same two cores.
//!
//! **Held**: K viewers are held when all K connect, none is closed, none
//! sees a gap, every viewer receives every batch published in the window
//! (`DONUT_QUOTA_SECS`, default 10, starting 1 s after the last handshake)
//! and no batch reaches any viewer more than one broadcast after it was
//! published (*behind* ≤ 1: "within one broadcast"; behind as in §5's
//! fan-out, counted against the earliest `published` log line of each
//! batch across the nodes, i.e. the leader's). K doubles from
//! `DONUT_QUOTA_START` (default 500) until a K is not held; then the
//! midpoint between the last held and the first not held is tried. The
//! figure per N is the largest K held.

#[path = "../tests/common/redis_server.rs"]
#[allow(dead_code)] // Only `start` and `url` are used here.
mod redis_server;

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use donut_server::stream::broadcaster::unix_us;
use support::ServerProcess;
use support::fanout::{ViewerLog, fanout_viewer, loadavg, parse_published};

/// cgroup v1's `cpu` hierarchy.
const CPU_ROOT: &str = "/sys/fs/cgroup/cpu";
/// CFS period, µs.
const PERIOD_US: u64 = 100_000;
/// The window starts this long after the last viewer's handshake.
const SETTLE: Duration = Duration::from_secs(1);
/// Viewers keep listening this long after the window.
const TAIL: Duration = Duration::from_secs(2);

/// A cgroup v1 `cpu` group with a CFS quota; on drop its remaining tasks
/// go back to the root group and the group is removed.
struct CpuCgroup {
    dir: PathBuf,
}

impl CpuCgroup {
    /// Makes `CPU_ROOT/<name>` with `quota_us` of CPU every `PERIOD_US`.
    fn new(name: &str, quota_us: u64) -> Self {
        let root = Path::new(CPU_ROOT);
        assert!(
            root.join("cpu.cfs_quota_us").exists(),
            "cgroup v1 cpu controller not mounted at {CPU_ROOT}: this bench needs it (and root)"
        );
        let dir = root.join(name);
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("create cgroup {} (root needed): {e}", dir.display()));
        // Owned at once, so a group that fails to configure is still removed.
        let group = Self { dir };
        group.write("cpu.cfs_period_us", &PERIOD_US.to_string());
        group.write("cpu.cfs_quota_us", &quota_us.to_string());
        group
    }

    fn write(&self, file: &str, value: &str) {
        let path = self.dir.join(file);
        std::fs::write(&path, value)
            .unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()));
    }

    /// Moves process `pid` (all its threads) into the group.
    fn add(&self, pid: u32) {
        self.write("cgroup.procs", &pid.to_string());
    }

    /// `(periods, periods throttled)` so far, from the group's `cpu.stat`.
    fn throttled(&self) -> (u64, u64) {
        let stat = std::fs::read_to_string(self.dir.join("cpu.stat")).unwrap_or_default();
        let field = |k: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        (field("nr_periods "), field("nr_throttled "))
    }
}

impl Drop for CpuCgroup {
    fn drop(&mut self) {
        let root_procs = Path::new(CPU_ROOT).join("cgroup.procs");
        for _ in 0..50 {
            let procs = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.split_whitespace() {
                let _ = std::fs::write(&root_procs, pid);
            }
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not remove cgroup {}", self.dir.display());
    }
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Batch start → earliest publish time (µs) over the nodes' logs.
type Published = Arc<Mutex<HashMap<u64, u64>>>;

/// A cluster of `n` nodes, each in its own quota group.
struct Cluster {
    // Field order is drop order: workers, nodes, then the groups, then Redis.
    _workers: Vec<Proc>,
    nodes: Vec<ServerProcess>,
    groups: Vec<CpuCgroup>,
    _redis: redis_server::RedisServer,
    published: Published,
}

impl Cluster {
    fn start(n: usize, quota_us: u64) -> Self {
        let redis = redis_server::RedisServer::start();
        let url = redis.url();
        let tag = std::process::id();
        let groups: Vec<CpuCgroup> = (1..=n)
            .map(|k| CpuCgroup::new(&format!("donut-quota-{tag}-n{k}"), quota_us))
            .collect();
        let published: Published = Arc::default();
        let mut nodes = Vec::new();
        for (k, group) in groups.iter().enumerate() {
            let id = format!("n{}", k + 1);
            let mut node = ServerProcess::start_logging(
                &[
                    "--max-per-ip",
                    "0",
                    "--max-viewers",
                    "100000",
                    "--cluster",
                    &url,
                    "--node-id",
                    &id,
                    "--viewer-lead-secs",
                    "1",
                ],
                "warn,donut_server::stream::broadcaster=debug",
            );
            group.add(node.pid());
            if let Some(err) = node.take_log() {
                let published = Arc::clone(&published);
                std::thread::spawn(move || {
                    for l in BufReader::new(err).lines().map_while(Result::ok) {
                        match parse_published(&l) {
                            Some((start, us)) => {
                                if let Ok(mut p) = published.lock() {
                                    let e = p.entry(start).or_insert(us);
                                    *e = (*e).min(us);
                                }
                            }
                            None => eprintln!("[{id}] {l}"),
                        }
                    }
                });
            }
            nodes.push(node);
        }
        let workers = nodes
            .iter()
            .map(|node| {
                Proc(
                    Command::new(support::donut_bin())
                        .args([
                            "work",
                            "--server",
                            &format!("ws://{}", node.addr),
                            "--threads",
                            "1",
                        ])
                        .env("RUST_LOG", "warn")
                        .stdout(Stdio::null())
                        .spawn()
                        .expect("the donut worker starts"),
                )
            })
            .collect();
        // Leader elected, frames flowing.
        std::thread::sleep(Duration::from_secs(4));
        Self {
            _workers: workers,
            nodes,
            groups,
            _redis: redis,
            published,
        }
    }
}

/// One trial's outcome.
struct Trial {
    k: usize,
    connected: u64,
    failed: u64,
    closed: usize,
    gaps: u64,
    window_batches: usize,
    missing: u64,
    behind_max: usize,
    behind_over_1: u64,
    viewer_batches: u64,
    node_cpu: f64,
    gen_cpu: f64,
    throttled: f64,
}

impl Trial {
    fn held(&self) -> bool {
        self.connected == self.k as u64
            && self.failed == 0
            && self.closed == 0
            && self.gaps == 0
            && self.window_batches > 0
            && self.missing == 0
            && self.behind_max <= 1
    }
}

fn trial(
    cluster: &Cluster,
    rt: &tokio::runtime::Runtime,
    k: usize,
    secs: u64,
    quota: f64,
) -> Trial {
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|s| s.addr).collect();
    let pids: Vec<u32> = cluster.nodes.iter().map(ServerProcess::pid).collect();
    let me = std::process::id();
    let connected = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..k)
        .map(|i| {
            rt.spawn(fanout_viewer(
                addrs[i % addrs.len()],
                Arc::clone(&stop),
                Arc::clone(&gate),
                Arc::clone(&connected),
                Arc::clone(&failed),
                128,
            ))
        })
        .collect();
    let t_ramp = Instant::now();
    while connected.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < k as u64
        && t_ramp.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let from_us = unix_us() + SETTLE.as_micros() as u64;
    let to_us = from_us + secs * 1_000_000;
    std::thread::sleep(SETTLE);
    let cpu = |pids: &[u32]| pids.iter().map(|&p| support::cpu_secs(p)).sum::<f64>();
    let thr = |c: &Cluster| {
        c.groups
            .iter()
            .map(CpuCgroup::throttled)
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    let (c0, g0, th0, t0) = (
        cpu(&pids),
        support::cpu_secs(me),
        thr(cluster),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(secs));
    let (c1, g1, th1) = (cpu(&pids), support::cpu_secs(me), thr(cluster));
    let wall = t0.elapsed().as_secs_f64();
    std::thread::sleep(TAIL);
    stop.store(true, Ordering::Relaxed);
    let logs: Vec<ViewerLog> = rt.block_on(async {
        let mut logs = Vec::with_capacity(k);
        for t in tasks {
            if let Ok(Ok(Some(l))) = tokio::time::timeout(Duration::from_secs(5), t).await {
                logs.push(l);
            }
        }
        logs
    });
    // Publish times, sorted, and the window's batches.
    let published: Vec<(u64, u64)> = {
        let p = cluster
            .published
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default();
        let mut v: Vec<(u64, u64)> = p.into_iter().collect();
        v.sort_unstable_by_key(|&(_, us)| us);
        v
    };
    let times: Vec<u64> = published.iter().map(|&(_, us)| us).collect();
    let window: HashMap<u64, u64> = published
        .iter()
        .filter(|&&(_, us)| us >= from_us && us < to_us)
        .copied()
        .collect();
    let mut t = Trial {
        k,
        connected: connected.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        closed: 0,
        gaps: 0,
        window_batches: window.len(),
        missing: (k - logs.len()) as u64 * window.len() as u64,
        behind_max: 0,
        behind_over_1: 0,
        viewer_batches: 0,
        node_cpu: (c1 - c0) / wall / quota / pids.len() as f64 * 100.0,
        gen_cpu: (g1 - g0) / wall * 100.0,
        throttled: (th1.1 - th0.1) as f64 / (th1.0 - th0.0).max(1) as f64 * 100.0,
    };
    for log in &logs {
        t.closed += usize::from(log.closed);
        t.gaps += u64::from(log.gaps);
        let mut got = 0;
        for &(start, recv) in &log.recv {
            if let Some(&pub_us) = window.get(&start) {
                got += 1;
                // Batches published after this one by the time it arrived.
                let behind =
                    times.partition_point(|&u| u <= recv) - times.partition_point(|&u| u <= pub_us);
                t.behind_max = t.behind_max.max(behind);
                t.behind_over_1 += u64::from(behind > 1);
                t.viewer_batches += 1;
            }
        }
        t.missing += (window.len() as u64).saturating_sub(got);
    }
    // Let the nodes drain the closed viewers before the next trial.
    std::thread::sleep(Duration::from_secs(3));
    t
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let quota: f64 = env_or("DONUT_QUOTA_CORES", 0.3);
    let secs: u64 = env_or("DONUT_QUOTA_SECS", 10);
    let start: usize = env_or("DONUT_QUOTA_START", 500);
    let quota_us = (quota * PERIOD_US as f64).round() as u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "quota {quota} of a core a node ({quota_us} µs / {PERIOD_US} µs, cgroup v1 cpu), \
         {secs} s windows, load average {} at start",
        loadavg()
    );
    let mut held = Vec::new();
    for n in 1..=3 {
        let cluster = Cluster::start(n, quota_us);
        let run = |k: usize| {
            let t = trial(&cluster, &rt, k, secs, quota);
            println!(
                "  N={n} K={k:>6}: {} | connected {} failed {} closed {} gaps {} | \
                 window batches {} missing {} | behind max {} (>1: {} of {}) | \
                 node CPU {:.0}% of quota, throttled {:.0}% of periods | load gen {:.0}% | load {}",
                if t.held() { "HELD    " } else { "not held" },
                t.connected,
                t.failed,
                t.closed,
                t.gaps,
                t.window_batches,
                t.missing,
                t.behind_max,
                t.behind_over_1,
                t.viewer_batches,
                t.node_cpu,
                t.throttled,
                t.gen_cpu,
                loadavg()
            );
            t.held()
        };
        let mut k = start;
        let mut best = 0;
        while k <= 64_000 && run(k) {
            best = k;
            k *= 2;
        }
        let mid = (best.max(start / 2) + k) / 2;
        if mid > best && mid < k && run(mid) {
            best = mid;
        }
        println!("N={n}: {best} viewers held");
        held.push(best);
        drop(cluster);
    }
    let one = held[0].max(1) as f64;
    println!("\nnodes | viewers held | ratio to 1 node   (quota {quota} core a node)");
    for (n, h) in held.iter().enumerate() {
        println!("{} | {h} | {:.2}", n + 1, *h as f64 / one);
    }
    println!("load average at end {}", loadavg());
}
