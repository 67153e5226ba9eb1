//! The cluster's Redis groundwork against a real `redis-server` (started by
//! the test on a free loopback port, in memory only): the leader lease, the
//! cluster-wide bans, the timeline stream and the node registry.
//!
//! Each test uses its own Redis and its own key prefix. The tests fail
//! (never skip) when redis-server is missing: `./build.sh test` installs it.

mod common;

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::redis_server::RedisServer;
use donut_server::cluster::lease::{self, Lease, Role};
use donut_server::cluster::registry::{self, BEAT_TTL, Heartbeat, NodeFigures};
use donut_server::cluster::stream_log::{
    DecodeError, EntryId, ReadEvent, TimelineEntry, TimelineLog, TimelineReader,
};
use donut_server::cluster::{RedisLink, bans};
use donut_server::trust::reputation::{AddrKey, BanScope};
use tokio::time::Instant;

/// A key prefix no other test or run shares.
fn prefix(test: &str) -> String {
    format!("test-{}-{test}:", std::process::id())
}

async fn link(redis: &RedisServer, prefix: &str) -> RedisLink {
    RedisLink::connect(&redis.url(), prefix)
        .await
        .expect("connects to the test's redis-server")
}

/// Polls `cond` every 10 ms until it holds; panics after `limit`.
async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Retries `f` (a command through the self-healing connection) until it
/// succeeds, for the moments right after a Redis restart.
async fn retrying<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = redis::RedisResult<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => assert!(Instant::now() < deadline, "{what} kept failing: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_leader(lease: &Lease) -> Option<u64> {
    match *lease.role().borrow() {
        Role::Leader { term } => Some(term),
        Role::Follower => None,
    }
}

const TTL: Duration = Duration::from_millis(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_drivers_elect_exactly_one_leader_and_the_survivor_takes_over() {
    let redis = RedisServer::start();
    let p = prefix("lease");
    let a = Lease::start(link(&redis, &p).await, "node-a".into(), TTL);
    let b = Lease::start(link(&redis, &p).await, "node-b".into(), TTL);
    wait_until("a leader", Duration::from_secs(5), || {
        is_leader(&a).is_some() || is_leader(&b).is_some()
    })
    .await;
    // For several lease lengths: one leader, the same one, the one in Redis.
    let first = (is_leader(&a), is_leader(&b));
    let observer = link(&redis, &p).await;
    let until = Instant::now() + TTL * 4;
    while Instant::now() < until {
        assert_eq!(
            (is_leader(&a), is_leader(&b)),
            first,
            "the leadership moved or doubled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (winner, loser, old_term) = match first {
        (Some(term), None) => (a, b, term),
        (None, Some(term)) => (b, a, term),
        both => panic!("not exactly one leader: {both:?}"),
    };
    let held = lease::holder(&observer).await.expect("GET leader");
    assert_eq!(held.map(|(_, term)| term), Some(old_term));
    // Kill the leader (no resignation): the survivor takes over once the
    // lease lapses, within a lease plus one poll, under a larger term.
    let killed = Instant::now();
    drop(winner);
    let period = TTL / 3;
    wait_until(
        "the survivor leads",
        TTL + period + Duration::from_millis(400),
        || is_leader(&loser).is_some(),
    )
    .await;
    let took = killed.elapsed();
    let new_term = is_leader(&loser).expect("leads");
    assert!(new_term > old_term, "term {new_term} after {old_term}");
    assert!(
        took >= TTL / 2,
        "took over after {took:?}, before the old lease could lapse"
    );
    let held = lease::holder(&observer).await.expect("GET leader");
    assert_eq!(
        held,
        Some((loser_name(&observer, new_term).await, new_term))
    );
}

/// The node name in the leader key (whichever survived).
async fn loser_name(link: &RedisLink, term: u64) -> String {
    let (node, held) = lease::holder(link)
        .await
        .expect("GET leader")
        .expect("a holder");
    assert_eq!(held, term);
    assert!(node == "node-a" || node == "node-b", "holder {node}");
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resigning_hands_over_at_the_next_poll_and_terms_survive_redis_losing_its_data() {
    let mut redis = RedisServer::start();
    let p = prefix("resign");
    let a = Lease::start(link(&redis, &p).await, "node-a".into(), TTL);
    wait_until("a leads", Duration::from_secs(5), || {
        is_leader(&a).is_some()
    })
    .await;
    let b = Lease::start(link(&redis, &p).await, "node-b".into(), TTL);
    tokio::time::sleep(TTL / 3).await;
    assert_eq!(is_leader(&b), None, "b leads beside a");
    let a_term = is_leader(&a).expect("a leads");
    a.resign().await.expect("resign");
    wait_until(
        "b leads after a resigned",
        TTL / 3 + Duration::from_millis(300),
        || is_leader(&b).is_some(),
    )
    .await;
    let b_term = is_leader(&b).expect("b leads");
    assert!(b_term > a_term);
    // Redis restarts empty ({p}term is gone): b's renewal is answered "not
    // yours", it steps down and takes the lease again, with a term above
    // every term it has seen rather than 1.
    redis.restart();
    let mut role = b.role();
    role.mark_unchanged();
    let relead = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            role.changed().await.expect("the driver runs");
            if let Role::Leader { term } = *role.borrow() {
                return term;
            }
        }
    })
    .await
    .expect("b leads again after the restart");
    assert!(
        relead > b_term,
        "term {relead} after {b_term}: the epoch went back"
    );
}

fn addr(last: u8) -> AddrKey {
    AddrKey::new(IpAddr::from([203, 0, 113, last]), BanScope::Address)
}

#[tokio::test]
async fn a_ban_written_by_one_node_is_seen_by_another_with_its_length() {
    let redis = RedisServer::start();
    let p = prefix("bans");
    let (a, b) = (link(&redis, &p).await, link(&redis, &p).await);
    let cheater = addr(7);
    assert_eq!(bans::banned(&b, &cheater).await.expect("PTTL"), None);
    bans::ban(&a, &cheater, Duration::from_secs(5))
        .await
        .expect("ban");
    let left = bans::banned(&b, &cheater)
        .await
        .expect("PTTL")
        .expect("banned");
    assert!(
        left > Duration::from_secs(4) && left <= Duration::from_secs(5),
        "{left:?}"
    );
    // A shorter ban from another node keeps the longer one.
    bans::ban(&b, &cheater, Duration::from_millis(100))
        .await
        .expect("ban");
    let left = bans::banned(&a, &cheater)
        .await
        .expect("PTTL")
        .expect("banned");
    assert!(left > Duration::from_secs(4), "shortened to {left:?}");
    // Others are not banned; a short ban ends by itself; a pardon at once.
    assert_eq!(bans::banned(&a, &addr(8)).await.expect("PTTL"), None);
    bans::ban(&a, &addr(9), Duration::from_millis(150))
        .await
        .expect("ban");
    assert!(bans::banned(&b, &addr(9)).await.expect("PTTL").is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bans::banned(&b, &addr(9)).await.expect("PTTL"), None);
    bans::pardon(&b, &cheater).await.expect("pardon");
    assert_eq!(bans::banned(&a, &cheater).await.expect("PTTL"), None);
}

fn entry(start: u64) -> TimelineEntry {
    let mut scene = [0u8; 32];
    scene[..8].copy_from_slice(&start.to_le_bytes());
    TimelineEntry {
        term: 1,
        start,
        count: 30,
        version: u32::try_from(start % 7).expect("small"),
        head: start.saturating_sub(60),
        scene,
        msg: Bytes::from(start.to_be_bytes().repeat(20)),
        inputs: EntryId { ms: start, seq: 1 },
        change: None,
    }
}

/// The next event, waiting through reconnection errors (at most `limit`).
async fn next_event(reader: &mut TimelineReader, limit: Duration) -> ReadEvent {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, reader.next()).await {
            Ok(Ok(event)) => return event,
            Ok(Err(_)) => {}
            Err(_) => panic!("no timeline event within {limit:?}"),
        }
    }
}

async fn expect_entries(reader: &mut TimelineReader, want: &[(EntryId, TimelineEntry)]) {
    for (id, entry) in want {
        let got = next_event(reader, Duration::from_secs(10)).await;
        assert_eq!(
            got,
            ReadEvent::Entry {
                id: *id,
                entry: entry.clone()
            }
        );
    }
}

async fn append_all(
    log: &TimelineLog,
    starts: impl Iterator<Item = u64>,
) -> Vec<(EntryId, TimelineEntry)> {
    let mut out = Vec::new();
    for start in starts {
        let e = entry(start);
        let id = retrying("XADD", || log.append_unfenced(&e)).await;
        out.push((id, e));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_reads_back_in_order_and_resumes_across_cuts_and_restarts() {
    let mut redis = RedisServer::start();
    let p = prefix("timeline");
    let log = TimelineLog::new(link(&redis, &p).await, 1000);
    let first = append_all(&log, (0..20).map(|i| i * 30)).await;
    assert!(first.windows(2).all(|w| w[0].0 < w[1].0), "ids increase");
    let newest = log.last().await.expect("XREVRANGE").expect("an entry");
    assert_eq!((newest.0, newest.1), (first[19].0, Ok(first[19].1.clone())));

    // Everything, in order, then a blocked read wakes for a new entry.
    let mut reader = log.reader(EntryId::ZERO);
    expect_entries(&mut reader, &first).await;
    let later = log.clone();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        append_all(&later, std::iter::once(600)).await
    });
    let woke = writer.await.expect("writer");
    expect_entries(&mut reader, &woke).await;

    // Every client connection cut, data kept: the reader resumes from its
    // last ID, no reset, nothing repeated.
    let admin = link(&redis, &p).await;
    let _: redis::Value = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
        .query_async(&mut admin.conn())
        .await
        .expect("CLIENT KILL");
    let cut = append_all(&log, (21..25).map(|i| i * 30)).await;
    expect_entries(&mut reader, &cut).await;

    // A garbled entry is reported and skipped.
    let raw: String = redis::cmd("XADD")
        .arg(format!("{p}timeline"))
        .arg(&["*", "term", "x"])
        .query_async(&mut admin.conn())
        .await
        .expect("raw XADD");
    let after = append_all(&log, std::iter::once(750)).await;
    let garbled = next_event(&mut reader, Duration::from_secs(10)).await;
    assert_eq!(
        garbled,
        ReadEvent::Garbled {
            id: raw.parse().expect("an id"),
            error: DecodeError::Garbled("term")
        }
    );
    expect_entries(&mut reader, &after).await;

    // Redis restarts empty: the stream and the reader's last ID are gone.
    // The reader says so (a reset, not a hang), then reads the new stream
    // from its start.
    let last_seen = reader.last_id();
    redis.restart();
    let reset = next_event(&mut reader, Duration::from_secs(10)).await;
    assert_eq!(reset, ReadEvent::Reset { last_seen });
    let fresh = append_all(&log, (100..105).map(|i| i * 30)).await;
    expect_entries(&mut reader, &fresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_totals_sum_live_nodes_and_drop_a_silent_one() {
    let redis = RedisServer::start();
    let p = prefix("registry");
    let frames = Arc::new(AtomicU64::new(100));
    let counted = Arc::clone(&frames);
    let a = Heartbeat::start(link(&redis, &p).await, "node-a".into(), move || {
        NodeFigures {
            role: Role::Leader { term: 2 },
            workers: 3,
            viewers: 10,
            fleet_fps: 60.0,
            frames: counted.load(Ordering::Relaxed),
        }
    });
    let _b = Heartbeat::start(link(&redis, &p).await, "node-b".into(), || NodeFigures {
        role: Role::Follower,
        workers: 2,
        viewers: 5,
        fleet_fps: 30.5,
        frames: 50,
    });
    let reader = link(&redis, &p).await;
    frames.store(400, Ordering::Relaxed);
    let totals = poll_totals(&reader, "both nodes, fresh figures", |t| {
        t.nodes == 2 && t.frames == 450
    })
    .await;
    assert_eq!((totals.workers, totals.viewers), (5, 15));
    assert!((totals.fleet_fps - 90.5).abs() < 1e-9);
    let nodes = registry::live_nodes(&reader).await.expect("live nodes");
    let leader = nodes
        .iter()
        .find(|n| n.id == "node-a")
        .expect("node-a listed");
    assert_eq!(leader.figures.role, Role::Leader { term: 2 });

    // node-a stops beating (as if killed): gone within the heartbeat TTL.
    let stopped = Instant::now();
    drop(a);
    let totals = poll_totals(&reader, "node-a dropped", |t| t.nodes == 1).await;
    assert!(stopped.elapsed() <= BEAT_TTL + Duration::from_secs(1));
    assert_eq!((totals.workers, totals.viewers, totals.frames), (2, 5, 50));
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("{p}node:node-a"))
        .query_async(&mut reader.conn())
        .await
        .expect("EXISTS");
    assert!(!exists, "the silent node's hash expired");
}

async fn poll_totals(
    link: &RedisLink,
    what: &str,
    cond: impl Fn(&registry::ClusterTotals) -> bool,
) -> registry::ClusterTotals {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let totals = registry::cluster_totals(link).await.expect("totals");
        if cond(&totals) {
            return totals;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {totals:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The fencing script (issue 23): an append lands only while the lease
/// is held under the writer's token, checked inside Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fenced_append_is_refused_for_any_other_holder_or_term() {
    use donut_server::cluster::fence::{self, Appended, Token};
    let redis = RedisServer::start();
    let p = prefix("fence");
    let l = link(&redis, &p).await;
    let key = format!("{p}timeline");
    let put = |token: Token, tag: &'static str| {
        let (l, key) = (l.clone(), key.clone());
        async move {
            fence::append(&l, &key, &token, 100, 0, &[("x", tag.as_bytes())])
                .await
                .expect("the script runs")
        }
    };
    // Nobody holds the lease: every append is refused.
    assert_eq!(
        put(Token::leader("n1", 1), "none").await,
        Appended::Fenced { holder: None }
    );
    let won = lease::acquire(&l, "n1", 60_000, 0).await.expect("acquire");
    assert_eq!(won, Some(lease::Acquired::Won { term: 1 }));
    assert!(matches!(
        put(Token::leader("n1", 1), "a").await,
        Appended::Id(_)
    ));
    assert!(matches!(put(Token::term(1), "b").await, Appended::Id(_)));
    let n1 = Some(("n1".to_owned(), 1));
    for stale in [
        Token::leader("n1", 0),
        Token::leader("n2", 1),
        Token::term(2),
    ] {
        assert_eq!(
            put(stale.clone(), "stale").await,
            Appended::Fenced { holder: n1.clone() },
            "{stale:?}"
        );
    }
    // n1 steps down (its floor is now 1) and takes the lease again: a new
    // term, and its old token is refused from then on.
    let again = lease::acquire(&l, "n1", 60_000, 1).await.expect("acquire");
    assert_eq!(again, Some(lease::Acquired::Won { term: 2 }));
    assert!(matches!(
        put(Token::leader("n1", 1), "late").await,
        Appended::Fenced { .. }
    ));
    assert!(matches!(
        put(Token::leader("n1", 2), "c").await,
        Appended::Id(_)
    ));
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query_async(&mut l.conn())
        .await
        .expect("XRANGE");
    let tags: Vec<String> = reply
        .ids
        .iter()
        .map(|e| e.get::<String>("x").expect("a tag"))
        .collect();
    assert_eq!(tags, ["a", "b", "c"], "only the holder's appends landed");
}

/// The acquire script counts a request once: repeats by the holder under
/// the same floor (requests that timed out and ran later) get the same
/// term, another node gets the holder's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_requests_that_run_late_count_once() {
    let redis = RedisServer::start();
    let p = prefix("acquire-once");
    let l = link(&redis, &p).await;
    for _ in 0..5 {
        assert_eq!(
            lease::acquire(&l, "n1", 60_000, 0).await.expect("acquire"),
            Some(lease::Acquired::Won { term: 1 })
        );
    }
    assert_eq!(
        lease::acquire(&l, "n2", 60_000, 0).await.expect("acquire"),
        Some(lease::Acquired::HeldBy { term: Some(1) })
    );
    let term: u64 = redis::cmd("GET")
        .arg(format!("{p}term"))
        .query_async(&mut l.conn())
        .await
        .expect("GET term");
    assert_eq!(term, 1);
}

/// Redis frozen (`SIGSTOP`) for several leases while two drivers keep
/// sending: the acquires queued behind it run when it thaws, and the term
/// moves by one leadership, not by one per queued request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_does_not_inflate_the_term() {
    let redis = RedisServer::start();
    let p = prefix("frozen");
    let a = Lease::start(link(&redis, &p).await, "node-a".into(), TTL);
    let b = Lease::start(link(&redis, &p).await, "node-b".into(), TTL);
    wait_until("a leader", Duration::from_secs(5), || {
        is_leader(&a).is_some() || is_leader(&b).is_some()
    })
    .await;
    let before = is_leader(&a).or(is_leader(&b)).expect("a leader");
    redis.freeze();
    tokio::time::sleep(TTL * 8).await;
    assert_eq!(
        (is_leader(&a), is_leader(&b)),
        (None, None),
        "a leader outlived its lease with Redis frozen"
    );
    redis.thaw();
    wait_until("a leader after the thaw", Duration::from_secs(10), || {
        is_leader(&a).is_some() || is_leader(&b).is_some()
    })
    .await;
    tokio::time::sleep(TTL * 2).await;
    let observer = link(&redis, &p).await;
    let term: u64 = retrying("GET term", || {
        let mut c = observer.conn();
        let key = format!("{p}term");
        async move { redis::cmd("GET").arg(key).query_async(&mut c).await }
    })
    .await;
    assert!(
        term <= before + 1,
        "term {term} after {before}: queued acquires counted more than once"
    );
}

/// The term lives in the timeline as well as in `{p}term`: with the
/// counter gone (evicted, deleted, or never replicated to a promoted
/// replica) and a node that knows no term (floor 0), the next term still
/// exceeds the last entry's. Before, the counter alone set it: term 1
/// again, after entries of term 7.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_term_exceeds_the_timelines_last_even_without_the_counter() {
    let redis = RedisServer::start();
    let p = prefix("term-in-stream");
    let l = link(&redis, &p).await;
    let log = TimelineLog::new(l.clone(), 100);
    for start in [0, 30] {
        let mut e = entry(start);
        e.term = 7;
        log.append_unfenced(&e).await.expect("XADD");
    }
    let _: () = redis::cmd("DEL")
        .arg(format!("{p}term"))
        .query_async(&mut l.conn())
        .await
        .expect("DEL");
    assert_eq!(
        lease::acquire(&l, "n1", 60_000, 0).await.expect("acquire"),
        Some(lease::Acquired::Won { term: 8 })
    );
}
