//! A benchmark, not a check (run by hand): the longest pause
//! at each node's viewer through each fault of the cluster (issue 23,
//! BENCHMARKS.md section 11). Three real `donut serve` nodes (lease 1 s,
//! `--viewer-lead-secs 3`), a native worker and a recording viewer on each
//! node; 4 s of stream, then one fault, then 12 s more:
//!
//! - Redis `SIGSTOP` for 5 s; Redis `SIGKILL`, restarted empty 1 s later;
//! - the leader `kill -9` (its own viewer goes with it: measured at the
//!   survivors); the leader `SIGSTOP` for 3 s (past its lease), then
//!   `SIGCONT`;
//! - a Sentinel promotion: primary and replica under three
//!   `redis-sentinel`s (`down-after-milliseconds` 1000), primary `SIGKILL`.
//!
//! Per node it prints the longest gap between two batch arrivals after the
//! fault, and the longest *stall* of a model player fed by those arrivals:
//! it starts at the first batch's first frame when that batch arrives and
//! shows one frame every 1/60 s, waiting when the next frame has not
//! arrived (the page's jitter buffer and clock re-anchoring are not
//! modelled; with 3 s sent ahead, a stall is what a page shows as a
//! frozen donut). It asserts only what the fault tests assert (one
//! timeline: no two pictures for a (frame, version)).
//!
//! `cargo bench -p donut-server --bench cluster_pauses [NAME…]`: each
//! NAME picks the measurements whose name contains it (default: all, one
//! after another): `redis_freeze`, `redis_restart`, `leader_kill`,
//! `leader_freeze`, `sentinel_promotion`, `push_to_batch`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{Node, fresh_prefix, start_nodes};
use common::recorder::{Record, Recorder, assert_one_timeline};
use common::redis_server::{RedisSentinel, RedisServer, signal};
use common::{cluster_leader, worker_on_each};

const LEASE: Duration = Duration::from_secs(1);
const FPS: f64 = 60.0;

/// The longest gap between two batch arrivals from `from` on.
fn longest_gap(r: &Record, from: Instant) -> Duration {
    let times: Vec<Instant> = r.arrivals.iter().map(|a| a.0).collect();
    let mut worst = Duration::ZERO;
    for w in times.windows(2) {
        if w[1] >= from {
            worst = worst.max(w[1].saturating_duration_since(w[0].max(from)));
        }
    }
    worst
}

/// The longest stall of the model player (see the module docs) at a frame
/// due from `from` on, the frames it skipped (never received), and how far
/// ahead of it the frames received by `from` reached then (its buffer, in
/// frames).
fn longest_stall(r: &Record, from: Instant) -> (Duration, u64, u64) {
    let mut first: BTreeMap<u64, Instant> = BTreeMap::new();
    for &(at, start, count) in &r.arrivals {
        for n in start..start + u64::from(count) {
            first.entry(n).or_insert(at);
        }
    }
    let Some(&(t0, f0, _)) = r.arrivals.first() else {
        return (Duration::ZERO, 0, 0);
    };
    let received_by = r
        .arrivals
        .iter()
        .filter(|a| a.0 < from)
        .map(|a| a.1 + u64::from(a.2))
        .max()
        .unwrap_or(f0);
    let mut buffered = None;
    let step = Duration::from_secs_f64(1.0 / FPS);
    let (mut shown_at, mut frame) = (t0, f0);
    let (mut worst, mut skipped) = (Duration::ZERO, 0);
    while let Some((&next, &arrived)) = first.range(frame + 1..).next() {
        skipped += next - frame - 1;
        let due = shown_at + step;
        let shown = due.max(arrived);
        if due >= from {
            worst = worst.max(shown - due);
            buffered.get_or_insert(received_by.saturating_sub(frame));
        }
        (shown_at, frame) = (shown, next);
    }
    (worst, skipped, buffered.unwrap_or(0))
}

/// How the cluster fails.
#[derive(Clone, Copy, Debug)]
enum Fault {
    RedisFreeze,
    RedisRestart,
    LeaderKill,
    LeaderFreeze,
}

async fn run(fault: Fault) {
    let mut redis = RedisServer::start();
    let prefix = fresh_prefix("pauses");
    let mut nodes: Vec<Option<Node>> = start_nodes(&redis.url(), &prefix, 3, LEASE, &[])
        .into_iter()
        .map(Some)
        .collect();
    let lead = {
        let refs: Vec<&Node> = nodes.iter().flatten().collect();
        cluster_leader(&refs).await
    };
    let workers = {
        let mut w = Vec::new();
        for n in nodes.iter().flatten() {
            w.push(common::worker(n.addr, 1));
        }
        // Every node counts the three workers (as `worker_on_each`).
        for n in nodes.iter().flatten() {
            common::wait_stats(n.addr, "3 workers cluster-wide", |s| {
                s["cluster_workers"] == 3
            })
            .await;
        }
        w
    };
    let mut recorders = Vec::new();
    for (k, n) in nodes.iter().flatten().enumerate() {
        // A killed leader's viewer dies with it: watch the survivors.
        if matches!(fault, Fault::LeaderKill) && k == lead {
            recorders.push(None);
        } else {
            recorders.push(Some(Recorder::start(n.addr).await));
        }
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let at = Instant::now();
    match fault {
        Fault::RedisFreeze => {
            redis.freeze();
            tokio::time::sleep(Duration::from_secs(5)).await;
            redis.thaw();
        }
        Fault::RedisRestart => {
            redis.kill();
            tokio::time::sleep(Duration::from_secs(1)).await;
            redis.restart();
        }
        Fault::LeaderKill => {
            if let Some(n) = nodes[lead].take() {
                n.kill();
            }
        }
        Fault::LeaderFreeze => {
            let pid = nodes[lead].as_ref().map_or(0, |n| n.child.id());
            signal(pid, "STOP");
            tokio::time::sleep(Duration::from_secs(3)).await;
            signal(pid, "CONT");
        }
    }
    tokio::time::sleep(Duration::from_secs(12)).await;
    report(&format!("{fault:?}"), lead, recorders, at).await;
    for w in workers {
        w.abort();
    }
}

async fn report(what: &str, lead: usize, recorders: Vec<Option<Recorder>>, at: Instant) {
    let mut records = Vec::new();
    let mut line = format!("{what}: leader n{}", lead + 1);
    for (k, r) in recorders.into_iter().enumerate() {
        let Some(r) = r else {
            line += &format!(" | n{}: (killed)", k + 1);
            continue;
        };
        let rec = r.finish().await;
        let (stall, skipped, buffered) = longest_stall(&rec, at);
        line += &format!(
            " | n{}: gap {} ms, stall {} ms, skipped {skipped}, buffer {} ms",
            k + 1,
            longest_gap(&rec, at).as_millis(),
            stall.as_millis(),
            buffered * 1000 / 60
        );
        records.push(rec);
    }
    eprintln!("{line}");
    assert_one_timeline(what, &records);
}

async fn pause_through_a_redis_freeze() {
    run(Fault::RedisFreeze).await;
}

async fn pause_through_a_redis_restart() {
    run(Fault::RedisRestart).await;
}

async fn pause_through_a_leader_kill() {
    run(Fault::LeaderKill).await;
}

async fn pause_through_a_leader_freeze() {
    run(Fault::LeaderFreeze).await;
}

async fn pause_through_a_sentinel_promotion() {
    const MASTER: &str = "donut";
    let primary = RedisServer::start();
    let _replica = RedisServer::replica_of(&primary);
    let sentinels: Vec<RedisSentinel> = (0..3)
        .map(|_| RedisSentinel::start(MASTER, &primary, 2, 1000))
        .collect();
    // Ready for a failover: each Sentinel knows the two others and the
    // replica.
    let deadline = Instant::now() + common::HANG;
    for s in &sentinels {
        let client = redis::Client::open(format!("redis://{}", s.addr())).expect("a URL");
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .expect("a Sentinel answers");
        loop {
            let others: Vec<redis::Value> = redis::cmd("SENTINEL")
                .arg("sentinels")
                .arg(MASTER)
                .query_async(&mut c)
                .await
                .unwrap_or_default();
            let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
                .arg("replicas")
                .arg(MASTER)
                .query_async(&mut c)
                .await
                .unwrap_or_default();
            if others.len() == 2 && replicas.len() == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "the Sentinels never met");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let url = format!(
        "redis+sentinel://{}/{MASTER}",
        sentinels
            .iter()
            .map(|s| s.addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let nodes = start_nodes(&url, &fresh_prefix("pauses"), 3, LEASE, &[]);
    let lead = cluster_leader(&nodes).await;
    let workers = worker_on_each(&nodes).await;
    let mut recorders = Vec::new();
    for n in &nodes {
        recorders.push(Some(Recorder::start(n.addr).await));
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let at = Instant::now();
    let mut primary = primary;
    primary.kill();
    tokio::time::sleep(Duration::from_secs(12)).await;
    report("SentinelPromotion", lead, recorders, at).await;
    for w in workers {
        w.abort();
    }
}

/// A `donut serve` process without `--cluster` (one node, pushes go to
/// its core directly), as `Node::start` starts cluster nodes.
fn single_node() -> Node {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_donut"))
        .args(["serve", "--listen", &addr.to_string()])
        .args(["--viewer-lead-secs", "3"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the donut binary starts");
    let node = Node {
        child,
        addr,
        id: "single".into(),
    };
    let deadline = Instant::now() + common::HANG;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the node never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    node
}

/// Push → the first batch of its version at the pushing viewer, `n`
/// pushes 600 ms apart (each its own change), in ms, sorted.
async fn push_to_batch(addr: std::net::SocketAddr, n: u32) -> Vec<f64> {
    let worker = common::worker(addr, 1);
    let viewer = Recorder::start(addr).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut sent = Vec::new();
    for k in 0..n {
        let a = if k % 2 == 0 { 300 } else { -300 };
        sent.push(Instant::now());
        viewer.push(a, 0);
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let record = viewer.finish().await;
    worker.abort();
    let mut lags: Vec<f64> = record
        .versions
        .iter()
        .filter_map(|&(at, v)| {
            let k = usize::try_from(v).ok()?.checked_sub(1)?;
            Some(at.saturating_duration_since(*sent.get(k)?).as_secs_f64() * 1000.0)
        })
        .collect();
    assert_eq!(lags.len(), n as usize, "every push made one version");
    lags.sort_by(f64::total_cmp);
    lags
}

/// What the input log costs a push on the leader's own viewer: push →
/// the first batch of its version, on one node (no Redis) and on a
/// one-node cluster (the push goes through `{p}inputs` and the batch
/// through the fenced timeline append before the viewer gets it).
async fn push_to_batch_on_one_node_and_on_a_cluster_leader() {
    let n = 15;
    let single = single_node();
    let one = push_to_batch(single.addr, n).await;
    drop(single);
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), &fresh_prefix("lag"), 1, LEASE, &[]);
    cluster_leader(&nodes).await;
    let cluster = push_to_batch(nodes[0].addr, n).await;
    let p = |v: &[f64], q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "push -> first batch of its version, {n} pushes: one node p50 {:.1} ms, max {:.1} ms; \
         cluster leader (input log + fenced append) p50 {:.1} ms, max {:.1} ms; ratio p50 {:.2}",
        p(&one, 0.5),
        p(&one, 1.0),
        p(&cluster, 0.5),
        p(&cluster, 1.0),
        p(&cluster, 0.5) / p(&one, 0.5)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; every other argument picks by name.
    let picks: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| picks.is_empty() || picks.iter().any(|p| name.contains(p.as_str()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if wanted("redis_freeze") {
        runtime.block_on(pause_through_a_redis_freeze());
    }
    if wanted("redis_restart") {
        runtime.block_on(pause_through_a_redis_restart());
    }
    if wanted("leader_kill") {
        runtime.block_on(pause_through_a_leader_kill());
    }
    if wanted("leader_freeze") {
        runtime.block_on(pause_through_a_leader_freeze());
    }
    if wanted("sentinel_promotion") {
        runtime.block_on(pause_through_a_sentinel_promotion());
    }
    if wanted("push_to_batch") {
        runtime.block_on(push_to_batch_on_one_node_and_on_a_cluster_leader());
    }
}
