//! One timeline through Redis faults (issue 23): three real `donut serve`
//! nodes on a real `redis-server`, a native worker on each, a recording
//! viewer on each node, and a push sent to the leader's viewer socket
//! while Redis is frozen (`SIGSTOP`) or killed and restarted empty.
//!
//! Afterwards: every node's viewers hold the same bytes for every (frame,
//! version) they were sent, and no viewer was sent two pictures for one
//! (frame, version); the push is on every node or on none; no node's
//! telemetry head ever went back. Before fencing and durable-before-
//! visible batches, the leader played the push to its own viewers while
//! the next leader resumed the same version without it: a fork.

mod common;

use std::time::Duration;

use common::cluster::{Node, fresh_prefix, start_nodes};
use common::recorder::{Recorder, assert_one_timeline};
use common::redis_server::{RedisServer, signal};
use common::{cluster_leader, connect, stats, worker_on_each};
use donut_shared::wire::Input;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// `n` nodes under a fresh prefix (lease 1 s); returns them and the prefix.
fn cluster(redis: &RedisServer, n: usize) -> (Vec<Node>, String) {
    let prefix = fresh_prefix("faults");
    (
        start_nodes(&redis.url(), &prefix, n, Duration::from_secs(1), &[]),
        prefix,
    )
}

/// How Redis fails.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// `SIGSTOP` for 5 s, then `SIGCONT`.
    Freeze,
    /// `SIGKILL`, 1 s down, then a new empty Redis on the same port.
    Restart,
}

async fn a_push_during_a_redis_fault_is_on_every_node_or_none(fault: Fault) {
    let mut redis = RedisServer::start();
    let (nodes, _) = cluster(&redis, 3);
    let lead = cluster_leader(&nodes).await;
    let workers = worker_on_each(&nodes).await;
    let mut recorders = Vec::new();
    for n in &nodes {
        recorders.push(Recorder::start(n.addr).await);
    }
    let mut steer = connect(nodes[lead].addr, "/ws/viewer").await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    let push = Message::binary(Input { a: 900, b: -400 }.to_bytes().to_vec());
    match fault {
        Fault::Freeze => {
            redis.freeze();
            tokio::time::sleep(Duration::from_millis(300)).await;
            steer.send(push).await.expect("the push is sent");
            tokio::time::sleep(Duration::from_millis(4_700)).await;
            redis.thaw();
        }
        Fault::Restart => {
            redis.kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            steer.send(push).await.expect("the push is sent");
            tokio::time::sleep(Duration::from_millis(700)).await;
            redis.restart();
        }
    }
    // Keep the steering socket reading, so the server never sees it stuck.
    let drain = tokio::spawn(async move { while steer.next().await.is_some() {} });
    tokio::time::sleep(Duration::from_secs(12)).await;
    let mut records = Vec::new();
    for r in recorders {
        records.push(r.finish().await);
    }
    drain.abort();

    let compared = assert_one_timeline(&format!("{fault:?}"), &records);
    let versions: Vec<u32> = records.iter().map(|r| r.version).collect();
    eprintln!(
        "{fault:?}: leader n{}, versions seen per node {versions:?}, {compared} frames compared",
        lead + 1
    );
    assert!(
        versions.iter().all(|&v| v == versions[0]),
        "{fault:?}: the push reached some nodes and not others: {versions:?}"
    );
    assert!(compared > 3 * 600, "too few frames compared: {compared}");
    // The show went on after the fault.
    let last: Vec<u64> = records
        .iter()
        .map(|r| r.frames.keys().map(|k| k.0).max().unwrap_or(0))
        .collect();
    let first_after = records[lead].heads.first().copied().unwrap_or(0);
    assert!(
        last.iter().all(|&f| f > first_after + 600),
        "the stream stalled: last frames {last:?}"
    );
    for w in workers {
        w.abort();
    }
}

/// The leader frozen (`SIGSTOP`) past its lease with pushes queued on its
/// viewer socket, then thawed: another node leads meanwhile, and nothing
/// the old leader still sends lands in the timeline after the new term's
/// first entry (Redis fences it), and no viewer anywhere is sent a
/// divergent frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_frozen_past_its_lease_writes_nothing_after_the_next_term() {
    let redis = RedisServer::start();
    let (nodes, prefix) = cluster(&redis, 3);
    let lead = cluster_leader(&nodes).await;
    let workers = worker_on_each(&nodes).await;
    let mut recorders = Vec::new();
    for n in &nodes {
        recorders.push(Recorder::start(n.addr).await);
    }
    let mut steer = connect(nodes[lead].addr, "/ws/viewer").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A push it commits, then frozen for three leases with two more queued.
    let push = |a: i16| Message::binary(Input { a, b: 200 }.to_bytes().to_vec());
    steer.send(push(500)).await.expect("a push");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let pid = nodes[lead].child.id();
    signal(pid, "STOP");
    steer.send(push(-700)).await.expect("a push queued");
    steer.send(push(300)).await.expect("a push queued");
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(pid, "CONT");
    let drain = tokio::spawn(async move { while steer.next().await.is_some() {} });
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut records = Vec::new();
    for r in recorders {
        records.push(r.finish().await);
    }
    drain.abort();

    // The stream's terms, in order: never back to an older one.
    let client = redis::Client::open(redis.url()).expect("a Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects to redis");
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(format!("{prefix}timeline"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    let terms: Vec<u64> = reply
        .ids
        .iter()
        .map(|e| {
            e.get::<String>("term")
                .and_then(|t| t.parse().ok())
                .expect("a term field")
        })
        .collect();
    let mut changes: Vec<u64> = terms.clone();
    changes.dedup();
    eprintln!(
        "terms along the stream: {changes:?} ({} entries)",
        terms.len()
    );
    assert!(
        changes.len() >= 2,
        "no other node took over while the leader was frozen: {changes:?}"
    );
    assert!(
        changes.windows(2).all(|w| w[0] < w[1]),
        "an entry of an older term after a newer term's first: {changes:?}"
    );
    let compared = assert_one_timeline("leader frozen", &records);
    assert!(compared > 600, "too few frames compared: {compared}");
    for w in workers {
        w.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_while_redis_is_frozen_forks_nothing() {
    a_push_during_a_redis_fault_is_on_every_node_or_none(Fault::Freeze).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_while_redis_restarts_empty_forks_nothing() {
    a_push_during_a_redis_fault_is_on_every_node_or_none(Fault::Restart).await;
}

/// A push on a follower's viewer while Redis is down (killed, then
/// restarted empty a second later, so the lease and the term are gone):
/// the follower carries it until a leader takes it, and every node plays
/// it (`cluster_inputs_forwarded`, none lost). It used to be dropped at
/// the first failed append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_on_a_follower_during_a_redis_outage_reaches_the_next_leader() {
    let mut redis = RedisServer::start();
    let (nodes, _) = cluster(&redis, 3);
    let lead = cluster_leader(&nodes).await;
    let workers = worker_on_each(&nodes).await;
    let mut recorders = Vec::new();
    for n in &nodes {
        recorders.push(Recorder::start(n.addr).await);
    }
    let pusher = nodes[(lead + 1) % nodes.len()].addr;
    let mut steer = connect(pusher, "/ws/viewer").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    steer
        .send(Message::binary(
            Input { a: -800, b: 600 }.to_bytes().to_vec(),
        ))
        .await
        .expect("the push is sent");
    tokio::time::sleep(Duration::from_millis(700)).await;
    redis.restart();
    let drain = tokio::spawn(async move { while steer.next().await.is_some() {} });
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut records = Vec::new();
    for r in recorders {
        records.push(r.finish().await);
    }
    drain.abort();
    let versions: Vec<u32> = records.iter().map(|r| r.version).collect();
    let s = stats(pusher).await;
    eprintln!(
        "versions per node {versions:?}; forwarded {}, lost {}",
        s["cluster_inputs_forwarded"], s["cluster_inputs_lost"]
    );
    assert!(
        versions.iter().all(|&v| v >= 1),
        "the push made during the outage was lost: versions {versions:?}"
    );
    assert_eq!(s["cluster_inputs_lost"], 0, "{s}");
    assert!(
        s["cluster_inputs_forwarded"].as_u64().unwrap_or(0) >= 1,
        "{s}"
    );
    assert_one_timeline("push during an outage", &records);
    for w in workers {
        w.abort();
    }
}
