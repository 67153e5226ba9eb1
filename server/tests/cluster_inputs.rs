//! No silent loss of a push on a cluster (issue 23): three real `donut
//! serve` nodes on a real `redis-server`, a native worker and a recording
//! viewer on each node.
//!
//! - The leader frozen (`SIGSTOP`) past its lease with pushes queued on its
//!   viewer's socket, and a push on a follower's viewer while no node acts
//!   as leader: every push reaches the next leader (every node's viewers
//!   end on the versions they make) or its viewer is sent `InputRefused`;
//!   no entry of the frozen term lands after the next term's first, and
//!   no viewer anywhere is sent two pictures for one (frame, version).
//!   Before the input log, the follower's push went up the frozen term's
//!   tunnel stream, which nobody read again, and was counted forwarded.
//! - A push Redis cannot take (frozen 5 s) is refused after the carry time
//!   and its viewer is told; and it never lands afterwards (the append's
//!   deadline), so no node's timeline changes.

mod common;

use std::time::Duration;

use common::cluster::{Node, fresh_prefix, start_nodes};
use common::recorder::{Recorder, assert_one_timeline};
use common::redis_server::{RedisServer, signal};
use common::{cluster_leader, stats, worker_on_each};
use donut_shared::wire::Refusal;

/// The terms of the timeline stream's entries under `prefix`, in order.
async fn stream_terms(redis: &RedisServer, prefix: &str) -> Vec<u64> {
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
    reply
        .ids
        .iter()
        .map(|e| {
            e.get::<String>("term")
                .and_then(|t| t.parse().ok())
                .expect("a term field")
        })
        .collect()
}

/// A counter of `/api/stats` summed over `nodes`.
async fn total(nodes: &[&Node], key: &str) -> u64 {
    let mut sum = 0;
    for n in nodes {
        sum += stats(n.addr).await[key].as_u64().unwrap_or(0);
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_queued_on_a_frozen_leader_or_sent_while_none_leads_reach_the_next_leader() {
    let redis = RedisServer::start();
    let prefix = fresh_prefix("inputs");
    // A long lease: the frozen leader still holds it for seconds after
    // the follower's push, longer than a follower carried a push before.
    let lease = Duration::from_secs(6);
    let nodes = start_nodes(&redis.url(), &prefix, 3, lease, &[]);
    let lead = cluster_leader(&nodes).await;
    let workers = worker_on_each(&nodes).await;
    let mut recorders = Vec::new();
    for n in &nodes {
        recorders.push(Recorder::start(n.addr).await);
    }
    let other = (lead + 1) % nodes.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // One push the leader commits and appends while it runs.
    recorders[lead].push(500, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = nodes[lead].child.id();
    signal(pid, "STOP");
    // Two pushes queued on its viewer's socket while it is frozen.
    recorders[lead].push(-700, 200);
    recorders[lead].push(300, 200);
    // One on a follower while no node acts as leader.
    tokio::time::sleep(Duration::from_millis(300)).await;
    recorders[other].push(-500, -500);
    // Past the lease: another node takes over, then the frozen one wakes.
    tokio::time::sleep(lease + Duration::from_secs(3)).await;
    signal(pid, "CONT");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut records = Vec::new();
    for r in recorders {
        records.push(r.finish().await);
    }

    let terms = stream_terms(&redis, &prefix).await;
    let mut changes = terms.clone();
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

    let versions: Vec<u32> = records.iter().map(|r| r.version).collect();
    let queued_refused = records[lead].refusals.len();
    let follower_refused = records[other].refusals.len();
    let all: Vec<&Node> = nodes.iter().collect();
    let others: Vec<&Node> = nodes
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != lead)
        .map(|(_, n)| n)
        .collect();
    let taken_by_others = total(&others, "cluster_inputs_taken").await;
    let carried = total(&all, "cluster_inputs_carried").await;
    let refused = total(&all, "cluster_inputs_lost").await;
    eprintln!(
        "leader n{}; versions per node {versions:?}; refused: queued {queued_refused}, \
         follower {follower_refused} (counted {refused}); taken by the next leaders \
         {taken_by_others}, carried {carried}",
        lead + 1
    );
    assert_eq!(
        refused as usize,
        queued_refused + follower_refused,
        "every refusal counted is one a viewer was told of"
    );
    // Every push not refused to its viewer reached a leader after the
    // frozen one: the follower's and both queued ones.
    let delivered = 3 - (queued_refused + follower_refused) as u64;
    assert!(
        taken_by_others >= delivered,
        "pushes lost without a word: {taken_by_others} of {delivered} reached the next leader"
    );
    // ... and every node's viewers play the versions they made: the
    // committed push (1), the follower's (carried while none led), and
    // the queued pair (folded in one change or two).
    let expect = 1 + u32::from(follower_refused == 0) + u32::from(queued_refused < 2);
    assert!(
        versions.iter().all(|&v| v >= expect && v == versions[0]),
        "versions per node {versions:?}, expected all equal and at least {expect}"
    );
    for w in workers {
        w.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_redis_cannot_take_is_refused_its_viewer_told_and_never_lands() {
    let redis = RedisServer::start();
    let prefix = fresh_prefix("refused");
    let nodes = start_nodes(&redis.url(), &prefix, 2, Duration::from_secs(1), &[]);
    let lead = cluster_leader(&nodes).await;
    let workers = worker_on_each(&nodes).await;
    let mut recorders = Vec::new();
    for n in &nodes {
        recorders.push(Recorder::start(n.addr).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.freeze();
    tokio::time::sleep(Duration::from_millis(300)).await;
    recorders[lead].push(900, -400);
    // Frozen past the carry time (3 s): the push is refused meanwhile.
    tokio::time::sleep(Duration::from_millis(4_700)).await;
    redis.thaw();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut records = Vec::new();
    for r in recorders {
        records.push(r.finish().await);
    }
    let s = stats(nodes[lead].addr).await;
    let versions: Vec<u32> = records.iter().map(|r| r.version).collect();
    eprintln!(
        "refusals told {:?}; versions per node {versions:?}; {s}",
        records[lead].refusals
    );
    assert_eq!(
        records[lead].refusals,
        vec![Refusal::Unreachable],
        "the pushing viewer was not told its push was refused"
    );
    assert_eq!(s["cluster_inputs_refused_unreachable"], 1, "{s}");
    assert_eq!(s["cluster_inputs_lost"], 1, "{s}");
    assert_eq!(s["cluster_inputs_forwarded"], 0, "{s}");
    // Refused means not applied: the append queued behind the frozen
    // Redis ran after its deadline and stored nothing.
    assert_eq!(versions, vec![0, 0], "a refused push was applied");
    assert_one_timeline("refused push", &records);
    for w in workers {
        w.abort();
    }
}

/// A push stored in the input log while no node acts as leader (the
/// leader frozen), then lost with Redis's data (killed, restarted empty)
/// before any leader folded it: its viewer is told (`InputRefused { Lost
/// }`) instead of the push vanishing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_lost_with_redis_before_any_leader_folded_it_is_refused_visibly() {
    let mut redis = RedisServer::start();
    let prefix = fresh_prefix("lost");
    let nodes = start_nodes(&redis.url(), &prefix, 2, Duration::from_secs(6), &[]);
    let lead = cluster_leader(&nodes).await;
    let other = 1 - lead;
    let pusher = Recorder::start(nodes[other].addr).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = nodes[lead].child.id();
    signal(pid, "STOP");
    pusher.push(-600, 400);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let stored = stats(nodes[other].addr).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let record = pusher.finish().await;
    let s = stats(nodes[other].addr).await;
    signal(pid, "CONT");
    eprintln!("refusals told {:?}; {s}", record.refusals);
    assert_eq!(
        stored["cluster_inputs_forwarded"], 1,
        "the push was not stored: {stored}"
    );
    assert_eq!(
        record.refusals,
        vec![Refusal::Lost],
        "the pushing viewer was not told its push was lost"
    );
    assert_eq!(s["cluster_inputs_refused_lost"], 1, "{s}");
    assert_eq!(s["scene_changes"], 0, "a lost push was applied: {s}");
}
