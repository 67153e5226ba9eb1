//! Redis is not a single point of failure (issue 23): three real
//! `donut serve` nodes reach Redis through three real `redis-sentinel`
//! processes (`--cluster redis+sentinel://…/donut`), a real primary
//! `redis-server` and its replica; a native worker and a checking viewer
//! on each node. Mid-stream the primary is killed (`SIGKILL`); the
//! Sentinels promote the replica; the nodes follow it.
//!
//! Afterwards: every node's viewer was sent every frame, in order, each
//! byte-identical to the native render (no frame lost or wrong across the
//! failover), well past the frame where the primary died; the timeline's
//! terms never went back; and a node appended to the new primary within
//! lease + 1 s of the promotion (measured from the moment the replica
//! answers as a primary, printed with `--nocapture`). A second run freezes
//! the replica and cuts its link before the kill, so the promoted replica
//! lacks the last appends some viewers were already sent: the same holds.
//!
//! Before `redis+sentinel://`, `--cluster` took one Redis only: the nodes
//! could not start against Sentinels, and after the primary's loss stayed
//! on it (an outage, not a failover).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::cluster::{Node, fresh_prefix, start_nodes};
use common::redis_server::{RedisSentinel, RedisServer};
use common::{BackgroundViewer, HANG, stats, worker_on_each};
use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;

/// The lease the nodes run with.
const LEASE: Duration = Duration::from_millis(1000);

/// The service name the Sentinels monitor.
const MASTER: &str = "donut";

/// A connection that reconnects after an error: the Sentinels cut every
/// client of the replica they promote (`CLIENT KILL TYPE normal`).
async fn connect(addr: SocketAddr) -> ConnectionManager {
    let client = redis::Client::open(format!("redis://{addr}")).expect("a Redis URL");
    ConnectionManager::new(client).await.expect("connects")
}

/// One command with a short timeout: `None` for an error or no answer.
async fn ask<T: redis::FromRedisValue>(
    conn: &mut ConnectionManager,
    cmd: &redis::Cmd,
) -> Option<T> {
    tokio::time::timeout(Duration::from_millis(300), cmd.query_async(conn))
        .await
        .ok()?
        .ok()
}

/// Polls `f` every 50 ms until it holds; panics after `limit`.
async fn wait_for<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The timeline's last entry on `conn`: (ID, term, frame after it).
async fn last_entry(conn: &mut ConnectionManager, key: &str) -> Option<(String, u64, u64)> {
    let reply: StreamRangeReply = ask(
        conn,
        redis::cmd("XREVRANGE")
            .arg(key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1),
    )
    .await?;
    let e = reply.ids.first()?;
    let num = |f: &str| e.get::<String>(f).and_then(|v| v.parse::<u64>().ok());
    Some((e.id.clone(), num("term")?, num("start")? + num("count")?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_mid_stream_loses_no_frame_and_a_leader_follows_in_time() {
    failover(None).await;
}

/// The replica frozen (`SIGSTOP`) for `lag` before the primary dies, so the
/// promoted replica misses the primary's last acknowledged appends (frames
/// some viewers were already sent): the next leader resumes where the
/// replica's timeline ends, re-renders those frames, and every viewer still
/// sees every frame once, in order, right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_that_missed_the_last_appends_forks_nothing() {
    failover(Some(Duration::from_millis(1500))).await;
}

/// The failover test; `lag`: how long the replica is frozen before the
/// primary's kill (it then misses that much of the stream).
async fn failover(lag: Option<Duration>) {
    let mut primary = RedisServer::start();
    let replica = RedisServer::replica_of(&primary);
    let sentinels: Vec<RedisSentinel> = (0..3)
        .map(|_| RedisSentinel::start(MASTER, &primary, 2, 1000))
        .collect();
    // The Sentinels must know each other and the replica before a failover
    // can be agreed; the replica must be in sync.
    for s in &sentinels {
        let mut c = connect(s.addr()).await;
        wait_for(
            "each Sentinel knows the two others and the replica",
            HANG,
            || {
                let mut c = c.clone();
                async move {
                    let others: Option<Vec<redis::Value>> =
                        ask(&mut c, redis::cmd("SENTINEL").arg("sentinels").arg(MASTER)).await;
                    let replicas: Option<Vec<redis::Value>> =
                        ask(&mut c, redis::cmd("SENTINEL").arg("replicas").arg(MASTER)).await;
                    others.is_some_and(|o| o.len() == 2) && replicas.is_some_and(|r| r.len() == 1)
                }
            },
        )
        .await;
        let _ = &mut c;
    }
    let mut on_replica = connect(replica.addr()).await;
    let url = format!(
        "redis+sentinel://{}/{MASTER}",
        sentinels
            .iter()
            .map(|s| s.addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let prefix = fresh_prefix("sentinel");
    let timeline = format!("{prefix}timeline");
    let nodes: Vec<Node> = start_nodes(&url, &prefix, 3, LEASE, &[]);
    let workers = worker_on_each(&nodes).await;
    let mut viewers = Vec::new();
    for n in &nodes {
        viewers.push(BackgroundViewer::start(n.addr).await);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;

    // The stream reached the replica; then the primary dies mid-stream.
    let mut before = last_entry(&mut on_replica, &timeline)
        .await
        .expect("the timeline is replicated");
    let mut on_primary = connect(primary.addr()).await;
    if let Some(lag) = lag {
        // Frozen, and its link cut by the primary: what the primary takes
        // from now on never reaches it (a thaw alone would deliver what
        // the kernel had buffered).
        replica.freeze();
        let cut: Option<u64> = ask(
            &mut on_primary,
            redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("replica"),
        )
        .await;
        assert_eq!(cut, Some(1), "the replica's link was not cut");
        tokio::time::sleep(lag).await;
    }
    let at_kill = last_entry(&mut on_primary, &timeline)
        .await
        .expect("the timeline on the primary");
    let roles: Vec<u64> = {
        let mut r = Vec::new();
        for n in &nodes {
            r.push(stats(n.addr).await["cluster_role"].as_u64().unwrap_or(0));
        }
        r
    };
    primary.kill();
    let killed = Instant::now();
    if lag.is_some() {
        replica.thaw();
        before = last_entry(&mut on_replica, &timeline)
            .await
            .expect("the replica's timeline");
        assert!(
            before.2 < at_kill.2,
            "the replica missed nothing (frame {} of {}): the test shows nothing",
            before.2,
            at_kill.2
        );
    }

    // Promotion: the replica answers ROLE as a primary. Then: the first
    // Sentinel to name it, and the first entry a leader appends there.
    let mut sentinel_conns = Vec::new();
    for s in &sentinels {
        sentinel_conns.push(connect(s.addr()).await);
    }
    let (mut promoted, mut named, mut leading, mut appended) = (None, None, None, None);
    let lease_key = format!("{prefix}leader");
    let mut last_at_promotion = None;
    let deadline = killed + Duration::from_secs(30);
    while appended.is_none() {
        assert!(
            Instant::now() < deadline,
            "no failover and new leader within 30 s (promoted {promoted:?}, named {named:?})"
        );
        let now = Instant::now();
        if promoted.is_none() {
            let info: Option<String> =
                ask(&mut on_replica, redis::cmd("INFO").arg("replication")).await;
            if info.is_some_and(|i| i.contains("role:master")) {
                promoted = Some(now);
                last_at_promotion = last_entry(&mut on_replica, &timeline).await;
            }
        }
        if named.is_none() {
            for c in &mut sentinel_conns {
                let addr: Option<(String, u16)> = ask(
                    c,
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(MASTER),
                )
                .await;
                if addr.is_some_and(|(_, port)| port == replica.port()) {
                    named = Some(now);
                }
            }
        }
        if promoted.is_some() && leading.is_none() {
            let held: Option<String> =
                ask(&mut on_replica, redis::cmd("GET").arg(&lease_key)).await;
            let term = held
                .as_deref()
                .and_then(|h| h.rsplit_once(':'))
                .and_then(|(_, t)| t.parse::<u64>().ok());
            if term.is_some_and(|t| t > at_kill.1) {
                leading = Some(now);
            }
        }
        if promoted.is_some() {
            let last = last_entry(&mut on_replica, &timeline).await;
            if last.is_some()
                && last.as_ref().map(|l| &l.0) != last_at_promotion.as_ref().map(|l| &l.0)
            {
                appended = Some(now);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let promoted = promoted.expect("promoted");
    let appended = appended.expect("appended");
    // The first append implies a leader under a new term.
    let leading = leading.unwrap_or(appended);
    let since = |t: Instant| t.saturating_duration_since(promoted).as_millis();
    let leader_after = leading.saturating_duration_since(promoted);
    eprintln!(
        "Sentinel failover (replica frozen {lag:?} before): roles before {roles:?}; promotion {} ms after the SIGKILL; \
         first Sentinel naming the new primary +{} ms; a leader under a new term on it \
         +{} ms, its first append +{} ms after the promotion (lease {} ms); frames: {} \
         replicated, {} on the primary at the kill",
        promoted.saturating_duration_since(killed).as_millis(),
        named.map_or(-1, |t| i128::try_from(since(t)).unwrap_or(-1)),
        leader_after.as_millis(),
        since(appended),
        LEASE.as_millis(),
        before.2,
        at_kill.2,
    );

    // The show goes on for a while, then every viewer is checked.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut seen = Vec::new();
    for v in viewers {
        seen.push(v.finish(1).await);
    }
    for (k, s) in seen.iter().enumerate() {
        eprintln!(
            "node n{}: frames {:?}..{} checked ({})",
            k + 1,
            s.first,
            s.next,
            s.frames
        );
        assert!(
            s.first.is_some_and(|f| f < at_kill.2) && s.next > at_kill.2 + 120,
            "node n{}'s viewer did not play through the failover: frames {:?}..{}, \
             primary killed at frame {}",
            k + 1,
            s.first,
            s.next,
            at_kill.2
        );
    }
    // The terms along the new primary's timeline never go back.
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(&timeline)
        .arg("-")
        .arg("+")
        .query_async(&mut on_replica)
        .await
        .expect("XRANGE");
    let mut terms: Vec<u64> = reply
        .ids
        .iter()
        .filter_map(|e| e.get::<String>("term").and_then(|t| t.parse().ok()))
        .collect();
    terms.dedup();
    eprintln!("terms along the timeline: {terms:?}");
    assert!(
        terms.windows(2).all(|w| w[0] < w[1]),
        "an entry of an older term after a newer term's: {terms:?}"
    );
    assert!(
        leader_after <= LEASE + Duration::from_secs(1),
        "no leader until {leader_after:?} after the promotion (lease {LEASE:?} + 1 s)"
    );
    for w in workers {
        w.abort();
    }
    drop(nodes);
    drop(sentinels);
}
