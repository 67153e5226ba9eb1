//! A cluster of real `donut serve` processes sharing one timeline through a
//! real `redis-server` (issue 15): every viewer on every node gets the same
//! bytes, with no gap and no repeat, across `kill -9` of the leader; a
//! cheater banned through one node is refused by another.
//!
//! Nodes are processes (so they can be killed), started with
//! `--cluster redis://…` on free loopback ports, each with a unique key
//! prefix; workers are real native workers (in this process), viewers are
//! checking clients that verify every frame against the native render.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{Node, fresh_prefix, start_nodes};
use common::nginx::Nginx;
use common::redis_server::RedisServer;
use common::{
    HANG, Viewer, cheat_from, cluster_leader, connect_from, expect_close, loopback, stats, worker,
};
use donut_shared::wire::{RESULT_HEADER_LEN, ToViewer};
use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// Seconds of the long run (`DONUT_CLUSTER_SECS`, default 20; the issue
/// asks a minute, which `DONUT_CLUSTER_SECS=60` gives).
fn run_secs() -> u64 {
    std::env::var("DONUT_CLUSTER_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// Starts `n` nodes under a fresh prefix.
fn cluster(redis: &RedisServer, n: usize) -> Vec<Node> {
    cluster_with(redis, n, &[])
}

/// Starts `n` nodes under a fresh prefix (lease 1 s, one strike), with
/// `extra` arguments.
fn cluster_with(redis: &RedisServer, n: usize, extra: &[&str]) -> Vec<Node> {
    let extra: Vec<&str> = ["--max-strikes", "1"]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    start_nodes(
        &redis.url(),
        &fresh_prefix("test"),
        n,
        Duration::from_secs(1),
        &extra,
    )
}

/// A checking viewer on one node, in the background: every frame in order,
/// no gap, no repeat, each equal to the native render; it keeps each
/// batch's bytes by start frame, to compare nodes.
struct Watch {
    task: JoinHandle<(Viewer, BTreeMap<u64, Bytes>)>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Watch {
    async fn start(addr: SocketAddr) -> Self {
        let mut viewer = Viewer::connect(addr).await;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut batches = BTreeMap::new();
            loop {
                tokio::select! {
                    msg = viewer.ws.next() => match msg {
                        Some(Ok(Message::Binary(b))) => {
                            // `check` returns a range for frame batches only.
                            if let Some((start, _)) = viewer.check(&b) {
                                batches.insert(start, b.clone());
                            }
                        }
                        Some(Ok(Message::Close(f))) => panic!("viewer closed: {f:?}"),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => panic!("viewer socket error: {e}"),
                        None => panic!("viewer socket ended"),
                    },
                    _ = stopped.changed() => return (viewer, batches),
                }
            }
        });
        Self { task, stop }
    }

    /// Frames checked so far.
    async fn finish(self) -> (Viewer, BTreeMap<u64, Bytes>) {
        let _ = self.stop.send(true);
        self.task
            .await
            .expect("the viewer saw every frame in order, right")
    }
}

/// Waits until `addr`'s stats satisfy `f`.
async fn wait_for(addr: SocketAddr, what: &str, f: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + HANG;
    loop {
        let s = stats(addr).await;
        if f(&s) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Batches seen by every viewer: identical bytes at every start they
/// share. Returns the frames in those batches.
fn assert_same_bytes(seen: &[BTreeMap<u64, Bytes>]) -> u64 {
    let mut shared = 0;
    for (start, bytes) in &seen[0] {
        let others: Vec<_> = seen[1..].iter().filter_map(|s| s.get(start)).collect();
        if others.len() == seen.len() - 1 {
            for o in others {
                assert_eq!(o, bytes, "the batch at {start} differs between nodes");
            }
            if let Ok(ToViewer::Frames(f)) = ToViewer::decode(bytes) {
                shared += u64::from(f.count);
            }
        }
    }
    shared
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_play_one_timeline_byte_for_byte() {
    let redis = RedisServer::start();
    let nodes = cluster(&redis, 3);
    let refs: Vec<&Node> = nodes.iter().collect();
    cluster_leader(&refs).await;
    let workers: Vec<_> = nodes.iter().map(|n| worker(n.addr, 1)).collect();
    for n in &nodes {
        wait_for(n.addr, "three workers cluster-wide", |s| {
            s["cluster_workers"] == 3
        })
        .await;
        wait_for(n.addr, "three nodes", |s| s["cluster_nodes"] == 3).await;
    }
    let mut watches = Vec::new();
    for n in &nodes {
        watches.push(Watch::start(n.addr).await);
    }
    tokio::time::sleep(Duration::from_secs(run_secs())).await;
    let mut seen = Vec::new();
    let secs = run_secs();
    for w in watches {
        let (viewer, batches) = w.finish().await;
        assert!(
            viewer.seen.frames >= 50 * secs,
            "a viewer got {} frames in {secs} s",
            viewer.seen.frames
        );
        seen.push(batches);
    }
    // The viewers joined within moments of each other: all but their first
    // batches are the same batches, byte for byte.
    let shared = assert_same_bytes(&seen);
    assert!(
        shared >= 50 * secs,
        "only {shared} frames in batches every node sent"
    );
    // One leader; the others follow.
    let mut roles = Vec::new();
    for n in &nodes {
        roles.push(stats(n.addr).await["cluster_role"].as_u64().unwrap_or(0));
    }
    roles.sort_unstable();
    assert_eq!(roles, [1, 1, 2], "one leader, two followers");
    for w in workers {
        w.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_twice_leaves_no_gap_or_repeat() {
    let redis = RedisServer::start();
    let mut nodes: Vec<Option<Node>> = cluster(&redis, 3).into_iter().map(Some).collect();
    let live = |nodes: &[Option<Node>]| -> Vec<usize> {
        (0..nodes.len()).filter(|&k| nodes[k].is_some()).collect()
    };
    let addr = |nodes: &[Option<Node>], k: usize| nodes[k].as_ref().map(|n| n.addr).expect("live");
    let workers: Vec<_> = (0..3).map(|k| worker(addr(&nodes, k), 1)).collect();
    let mut watches = BTreeMap::new();
    for k in 0..3 {
        watches.insert(k, Watch::start(addr(&nodes, k)).await);
    }
    for round in 0..2 {
        let alive = live(&nodes);
        let refs: Vec<&Node> = alive.iter().filter_map(|&k| nodes[k].as_ref()).collect();
        let lead = alive[cluster_leader(&refs).await];
        let term = stats(addr(&nodes, lead)).await["cluster_term"]
            .as_u64()
            .unwrap_or(0);
        // Play a while, then kill the leader mid-stream.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let victim = nodes[lead].take().expect("the leader is alive");
        eprintln!("round {round}: killing leader {} (term {term})", victim.id);
        victim.kill();
        if let Some(w) = watches.remove(&lead) {
            w.stop.send(true).ok();
            w.task.abort();
        }
        // A survivor takes over under a higher term, and the stream goes on.
        let alive = live(&nodes);
        let refs: Vec<&Node> = alive.iter().filter_map(|&k| nodes[k].as_ref()).collect();
        let next = alive[cluster_leader(&refs).await];
        let next_term = stats(addr(&nodes, next)).await["cluster_term"]
            .as_u64()
            .unwrap_or(0);
        assert!(next_term > term, "the new term {next_term} exceeds {term}");
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    // The one node left plays on; every viewer on a survivor saw every
    // frame once, in order, right (checked as they came).
    let last = live(&nodes)[0];
    for (k, w) in watches {
        let (viewer, _) = w.finish().await;
        assert_eq!(k, last);
        assert!(
            viewer.seen.frames >= 60 * 8,
            "{} frames",
            viewer.seen.frames
        );
    }
    for w in workers {
        w.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cheater_banned_through_one_node_is_refused_by_another() {
    let redis = RedisServer::start();
    let nodes = cluster(&redis, 2);
    let refs: Vec<&Node> = nodes.iter().collect();
    let lead = cluster_leader(&refs).await;
    // Cheat through the follower: its results are tunnelled to the leader,
    // checked there, and the ban shared through Redis.
    let follower = &nodes[1 - lead];
    let forge: common::Forge = Box::new(|t| {
        let mut r = common::result_for(t);
        let at = RESULT_HEADER_LEN + 300;
        r[at] = (((r[at] >> 4) % 12 + 1) << 4) | (r[at] & 0x0f);
        vec![r]
    });
    let ((code, reason), sent) = cheat_from(follower.addr, 3, forge).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("banned"), "{reason}");
    assert!(sent >= 1);
    // Checked where the socket is: the follower rejected it, the leader
    // struck the address without checking again.
    let f = stats(follower.addr).await;
    assert!(f["batches_rejected"].as_u64() >= Some(1), "{f}");
    let l = stats(nodes[lead].addr).await;
    assert_eq!(l["frames_checked"], 0, "{l}");
    assert!(l["strikes"].as_u64() >= Some(1), "{l}");
    // Every node refuses the address now: the leader, which banned it,
    // and the follower, which learns it from Redis.
    for n in &nodes {
        let mut ws = connect_from(n.addr, "/ws/worker", loopback(3)).await;
        let (code, reason) = expect_close(&mut ws).await;
        assert_eq!(code, 1008, "node {}: {reason}", n.id);
        assert!(reason.contains("banned"), "node {}: {reason}", n.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_that_loses_everything_loses_no_frame() {
    let mut redis = RedisServer::start();
    let nodes = cluster(&redis, 2);
    let refs: Vec<&Node> = nodes.iter().collect();
    cluster_leader(&refs).await;
    let workers: Vec<_> = nodes.iter().map(|n| worker(n.addr, 1)).collect();
    let mut watches = Vec::new();
    for n in &nodes {
        watches.push(Watch::start(n.addr).await);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before: Vec<u64> = {
        let mut v = Vec::new();
        for n in &nodes {
            v.push(stats(n.addr).await["head"].as_u64().unwrap_or(0));
        }
        v
    };
    // `--save ''`: the new Redis is empty (no lease, no term, no stream).
    redis.restart();
    // A leader again, and the stream goes on from where it was: the
    // viewers check every frame once, in order, as they come.
    cluster_leader(&refs).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    for (w, n) in watches.into_iter().zip(&nodes) {
        let (viewer, _) = w.finish().await;
        assert!(
            viewer.seen.next > before.iter().copied().max().unwrap_or(0) + 120,
            "node {}: the stream did not go on after the restart (at {})",
            n.id,
            viewer.seen.next
        );
    }
    for w in workers {
        w.abort();
    }
}

/// Behind nginx (the README's cluster recipe): workers spread over the
/// nodes through the balancer; kill -9 a node, and its workers reconnect
/// through nginx to the live ones, so the cluster recovers its fleet,
/// while a viewer through nginx on another node plays on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_a_dead_nodes_workers_come_back_through_the_balancer() {
    let redis = RedisServer::start();
    let mut nodes: Vec<Option<Node>> =
        cluster_with(&redis, 3, &["--trusted-proxies", "127.0.0.1/32"])
            .into_iter()
            .map(Some)
            .collect();
    let addrs: Vec<SocketAddr> = nodes.iter().flatten().map(|n| n.addr).collect();
    let nginx = Nginx::start(&addrs);
    let refs: Vec<&Node> = nodes.iter().flatten().collect();
    let lead = cluster_leader(&refs).await;
    // Six workers through nginx from six client addresses: round robin
    // puts two on each node.
    let workers: Vec<_> = (0..6u8)
        .map(|k| common::worker_from(nginx.addr, 1, loopback(10 + k)))
        .collect();
    let lead_addr = addrs[lead];
    wait_for(lead_addr, "six workers cluster-wide", |s| {
        s["cluster_workers"] == 6
    })
    .await;
    // Kill a follower holding workers: they must come back elsewhere.
    let victim = (0..3).find(|&k| k != lead).expect("a follower");
    let mut on_victim = 0;
    while on_victim == 0 {
        on_victim = stats(addrs[victim]).await["workers"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let watch = Watch::start(lead_addr).await;
    nodes[victim].take().expect("alive").kill();
    wait_for(lead_addr, "two nodes", |s| s["cluster_nodes"] == 2).await;
    wait_for(lead_addr, "the six workers back", |s| {
        s["cluster_workers"] == 6
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (viewer, _) = watch.finish().await;
    assert!(viewer.seen.frames >= 60, "{} frames", viewer.seen.frames);
    for w in workers {
        w.abort();
    }
    drop(nginx);
}

/// A viewer on a follower steers: its push travels up to the leader's
/// timeline, and every node's viewers get the new version's frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_on_a_follower_changes_the_timeline_on_every_node() {
    use donut_shared::wire::Input;
    use futures_util::SinkExt;

    let redis = RedisServer::start();
    let nodes = cluster(&redis, 2);
    let refs: Vec<&Node> = nodes.iter().collect();
    let lead = cluster_leader(&refs).await;
    let workers: Vec<_> = nodes.iter().map(|n| worker(n.addr, 1)).collect();
    let mut sockets = Vec::new();
    for n in &nodes {
        sockets.push(common::connect(n.addr, "/ws/viewer").await);
    }
    // Both play version 0 first.
    for ws in &mut sockets {
        assert_eq!(next_version(ws).await, 0);
    }
    let push = Input { a: 0, b: 900 }.to_bytes().to_vec();
    sockets[1 - lead]
        .send(Message::binary(push))
        .await
        .expect("the push is sent");
    let deadline = Instant::now() + HANG;
    for ws in &mut sockets {
        while next_version(ws).await == 0 {
            assert!(Instant::now() < deadline, "no node played the push");
        }
    }
    for w in workers {
        w.abort();
    }
}

/// The timeline version of the next frames batch on `ws`.
async fn next_version(ws: &mut common::Ws) -> u32 {
    loop {
        let msg = tokio::time::timeout(HANG, ws.next())
            .await
            .expect("a message in time");
        if let Some(Ok(Message::Binary(b))) = msg
            && let Ok(ToViewer::Frames(f)) = ToViewer::decode(&b)
        {
            return f.timeline;
        }
    }
}
