//! The cluster through Redis (issue 15): what the shared timeline costs in
//! Redis, how long a batch takes from commit to each node's viewers, and
//! how long a failover takes.
//!
//! `cargo bench -p donut-server --bench cluster`
//!
//! Starts a real `redis-server` (in memory) on a free loopback port, three
//! `donut serve --cluster` nodes (the release build of this bench, or
//! `$DONUT_BIN`) at 60 fps with `--viewer-lead-secs 3`, one native worker
//! (`donut work --threads 1`) per node and one viewer per node (a client
//! here that stamps each batch's arrival with the wall clock). Then:
//!
//! 1. **Steady state**, `$DONUT_CLUSTER_SECS` (default 20): Redis commands
//!    and network bytes a second (`INFO stats`, before and after), the
//!    timeline's bytes a second, and for each batch a viewer received, the
//!    time from its commit (the timeline entry's ID: Redis's clock in
//!    milliseconds, the same machine's) to its arrival at a viewer of the
//!    leader and of each follower (p50, p99, max; millisecond resolution).
//! 2. **Failover**: `kill -9` of the leader; the time until a surviving
//!    node reports itself leader, until the first timeline entry of the new
//!    term, and the longest pause between batches at the survivors'
//!    viewers (against their 3 s of frames held ahead).

#[path = "../tests/common/redis_server.rs"]
#[allow(dead_code)] // The bench restarts nothing.
mod redis_server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use donut_shared::wire::ToViewer;
use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::streams::StreamRangeReply;
use redis_server::RedisServer;
use tokio_tungstenite::tungstenite::Message;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const PREFIX: &str = "bench:";

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn spawn(bin: &PathBuf, args: &[&str]) -> Result<Proc> {
    Ok(Proc(
        Command::new(bin)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    ))
}

/// Batch arrivals at one viewer: start frame → wall-clock ms.
type Arrivals = Arc<Mutex<BTreeMap<u64, f64>>>;

/// A viewer of `addr` stamping each batch's arrival.
async fn viewer(addr: SocketAddr) -> Result<Arrivals> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/viewer")).await?;
    let arrivals: Arrivals = Arc::default();
    let log = Arc::clone(&arrivals);
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Binary(b) = msg
                && let Ok(ToViewer::Frames(f)) = ToViewer::decode(&b)
            {
                let at = now_ms();
                if let Ok(mut l) = log.lock() {
                    l.entry(f.start).or_insert(at);
                }
            }
        }
    });
    Ok(arrivals)
}

async fn stats(addr: SocketAddr) -> Result<serde_json::Value> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /api/stats HTTP/1.0\r\n\r\n").await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    let json = body.split("\r\n\r\n").nth(1).ok_or("no body")?;
    Ok(serde_json::from_str(json)?)
}

/// `INFO stats` figures: commands, bytes in, bytes out.
async fn redis_counters(conn: &mut redis::aio::MultiplexedConnection) -> Result<[f64; 3]> {
    let info: String = redis::cmd("INFO").arg("stats").query_async(conn).await?;
    let get = |k: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    Ok([
        get("total_commands_processed"),
        get("total_net_input_bytes"),
        get("total_net_output_bytes"),
    ])
}

/// Timeline entries now: start → (commit ms, term, message bytes).
async fn timeline(
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<BTreeMap<u64, (f64, u64, usize)>> {
    let reply: StreamRangeReply = conn.xrange_all(format!("{PREFIX}timeline")).await?;
    let mut out = BTreeMap::new();
    for e in reply.ids {
        let ms: f64 =
            e.id.split('-')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(f64::NAN);
        let field = |k: &str| -> Option<u64> {
            match e.map.get(k) {
                Some(redis::Value::BulkString(b)) => std::str::from_utf8(b).ok()?.parse().ok(),
                _ => None,
            }
        };
        let bytes = match e.map.get("msg") {
            Some(redis::Value::BulkString(b)) => b.len(),
            _ => 0,
        };
        if let (Some(start), Some(term)) = (field("start"), field("term")) {
            out.insert(start, (ms, term, bytes));
        }
    }
    Ok(out)
}

fn percentiles(mut xs: Vec<f64>) -> String {
    xs.retain(|x| x.is_finite());
    xs.sort_by(f64::total_cmp);
    if xs.is_empty() {
        return "–".into();
    }
    let p = |q: f64| xs[((xs.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} batches)",
        p(0.5),
        p(0.99),
        p(1.0),
        xs.len()
    )
}

/// Longest pause between consecutive batch arrivals after `from` (ms).
fn longest_pause(arrivals: &BTreeMap<u64, f64>, from: f64) -> f64 {
    let mut times: Vec<f64> = arrivals.values().copied().filter(|&t| t >= from).collect();
    times.sort_by(f64::total_cmp);
    times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
}

async fn run() -> Result<()> {
    let bin = std::env::var_os("DONUT_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_donut")), PathBuf::from);
    let secs: u64 = std::env::var("DONUT_CLUSTER_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let redis = RedisServer::start();
    let mut conn = redis::Client::open(redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    let mut nodes = Vec::new();
    let mut addrs = Vec::new();
    for k in 1..=3 {
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let id = format!("n{k}");
        nodes.push(Some(spawn(
            &bin,
            &[
                "serve",
                "--listen",
                &listen,
                "--cluster",
                &redis.url(),
                "--cluster-prefix",
                PREFIX,
                "--node-id",
                &id,
                "--viewer-lead-secs",
                "3",
                "--leader-lease-ms",
                "2000",
            ],
        )?));
        addrs.push(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    for a in &addrs {
        while tokio::net::TcpStream::connect(a).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let _workers: Vec<Proc> = addrs
        .iter()
        .map(|a| {
            spawn(
                &bin,
                &["work", "--server", &format!("ws://{a}"), "--threads", "1"],
            )
        })
        .collect::<Result<_>>()?;
    let mut lead = None;
    while lead.is_none() {
        for (k, a) in addrs.iter().enumerate() {
            if stats(*a).await?["cluster_role"] == 2 {
                lead = Some(k);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lead = lead.ok_or("no leader")?;
    let mut views = Vec::new();
    for a in &addrs {
        views.push(viewer(*a).await?);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!(
        "three nodes (leader n{}), one worker thread each, a viewer each; {secs} s steady",
        lead + 1
    );
    let c0 = redis_counters(&mut conn).await?;
    let t0 = Instant::now();
    let from = now_ms();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let c1 = redis_counters(&mut conn).await?;
    let dt = t0.elapsed().as_secs_f64();
    let to = now_ms();
    let entries = timeline(&mut conn).await?;
    let in_window: Vec<_> = entries
        .values()
        .filter(|(ms, _, _)| *ms >= from && *ms < to)
        .collect();
    let tl_bytes: usize = in_window.iter().map(|e| e.2).sum();
    println!(
        "Redis: {:.0} commands/s, {:.1} KB/s in, {:.1} KB/s out; timeline: {:.1} entries/s, {:.1} KB/s",
        (c1[0] - c0[0]) / dt,
        (c1[1] - c0[1]) / dt / 1000.0,
        (c1[2] - c0[2]) / dt / 1000.0,
        in_window.len() as f64 / dt,
        tl_bytes as f64 / dt / 1000.0,
    );
    for (k, v) in views.iter().enumerate() {
        let arrivals = v.lock().map_err(|_| "poisoned")?.clone();
        let lat: Vec<f64> = arrivals
            .iter()
            .filter_map(|(start, at)| entries.get(start).map(|(ms, _, _)| at - ms))
            .collect();
        let role = if k == lead { "leader" } else { "follower" };
        println!(
            "commit → viewer of n{} ({role}): {}",
            k + 1,
            percentiles(lat)
        );
    }
    // Failover.
    let before = timeline(&mut conn).await?;
    let old_term = before.values().map(|e| e.1).max().unwrap_or(0);
    let killed = now_ms();
    nodes[lead].take();
    let mut new_leader_ms = None;
    let mut new_entry_ms = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while (new_leader_ms.is_none() || new_entry_ms.is_none()) && Instant::now() < deadline {
        if new_leader_ms.is_none() {
            for (k, a) in addrs.iter().enumerate() {
                if k != lead && stats(*a).await?["cluster_role"] == 2 {
                    new_leader_ms = Some(now_ms() - killed);
                }
            }
        }
        if new_entry_ms.is_none()
            && let Some((ms, _, _)) = timeline(&mut conn).await?.values().find(|e| e.1 > old_term)
        {
            new_entry_ms = Some(ms - killed);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "failover: kill -9 of the leader → a survivor leads after {:.0} ms (polled every 10 ms), \
         → first batch committed by the new term after {:.0} ms",
        new_leader_ms.unwrap_or(f64::NAN),
        new_entry_ms.unwrap_or(f64::NAN),
    );
    for (k, v) in views.iter().enumerate() {
        if k == lead {
            continue;
        }
        let arrivals = v.lock().map_err(|_| "poisoned")?.clone();
        println!(
            "n{} viewer: longest pause between batches from the kill on: {:.0} ms",
            k + 1,
            longest_pause(&arrivals, killed - 1000.0)
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}
