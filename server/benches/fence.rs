//! What fencing costs (issue 23): a timeline append through the fencing
//! script (`EVALSHA`: `GET` the lease, compare owner and term, `XADD`)
//! against a bare `XADD` of the same entry, one at a time on loopback.
//!
//! `cargo bench -p donut-server --bench fence`
//!
//! Starts a real `redis-server` (in memory) on a free loopback port, holds
//! the lease (the acquire script), then appends `$DONUT_FENCE_APPENDS`
//! (default 5,000) entries of a real batch's size (a 15-frame batch of the
//! viewer codec, ~1.4 kB) each way, alternating in blocks of 100 so both
//! see the same machine load; prints p50, p99 and max round trips in
//! microseconds and the ratio of the medians.

#[path = "../tests/common/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

use std::time::{Duration, Instant};

use bytes::Bytes;
use donut_server::cluster::RedisLink;
use donut_server::cluster::fence::{Appended, Token};
use donut_server::cluster::lease::{self, Acquired};
use donut_server::cluster::stream_log::{TimelineEntry, TimelineLog};
use donut_shared::scene::Scene;
use redis_server::RedisServer;

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::var("DONUT_FENCE_APPENDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000);
    let redis = RedisServer::start();
    let link = RedisLink::connect(&redis.url(), "bench:")
        .await
        .expect("connects to the bench's redis-server");
    let won = lease::acquire(&link, "bench", 600_000, 0)
        .await
        .expect("acquire");
    let Some(Acquired::Won { term }) = won else {
        panic!("the lease was not won: {won:?}");
    };
    let token = Token::leader("bench", term);
    let log = TimelineLog::new(link, 4096);
    let entry = TimelineEntry {
        term,
        start: 0,
        count: 15,
        version: 0,
        head: 0,
        scene: Scene::idle(0).to_bytes(),
        msg: Bytes::from(vec![0x5a; 1_400]),
        inputs: donut_server::cluster::stream_log::EntryId::ZERO,
        change: None,
    };
    // Warm up: the script loaded, the connection busy.
    for _ in 0..200 {
        log.append_unfenced(&entry).await.expect("XADD");
        log.append_fenced(&token, &entry).await.expect("fenced");
    }
    let (mut bare, mut fenced) = (Vec::with_capacity(n), Vec::with_capacity(n));
    while bare.len() < n {
        for _ in 0..100 {
            let t = Instant::now();
            log.append_unfenced(&entry).await.expect("XADD");
            bare.push(t.elapsed());
        }
        for _ in 0..100 {
            let t = Instant::now();
            let r = log.append_fenced(&token, &entry).await.expect("fenced");
            fenced.push(t.elapsed());
            assert!(matches!(r, Appended::Id(_)), "refused: {r:?}");
        }
    }
    // And a stale token: refused by Redis, no entry written.
    let stale = Token::leader("bench", term - 1);
    let refused = log.append_fenced(&stale, &entry).await.expect("fenced");
    assert!(matches!(refused, Appended::Fenced { .. }));
    bare.sort_unstable();
    fenced.sort_unstable();
    println!(
        "appends of a {}-byte batch entry, {n} each way, one at a time, loopback:",
        entry.msg.len()
    );
    for (name, v) in [("bare XADD", &bare), ("fenced (script)", &fenced)] {
        println!(
            "  {name:16} p50 {:7.1} us  p99 {:7.1} us  max {:8.1} us",
            quantile(v, 0.5),
            quantile(v, 0.99),
            quantile(v, 1.0)
        );
    }
    println!(
        "  fenced / bare: p50 x{:.2}, p99 x{:.2}",
        quantile(&fenced, 0.5) / quantile(&bare, 0.5),
        quantile(&fenced, 0.99) / quantile(&bare, 0.99)
    );
}
