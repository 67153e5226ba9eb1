//! Server egress per viewer with sybils beside honest relaying peers
//! (issue 24), native sockets over loopback against the real server.
//!
//! `cargo bench -p donut-server --bench p2p_sybils`
//!
//! For each honest count in `$DONUT_SYBIL_PEERS` (default `8,32`), and each
//! of no sybils and 2 and 8 sybils (`$DONUT_SYBIL_COUNTS`, default `2,8`)
//! of each kind: starts the server in-process (`--p2p on`, `--p2p-max-depth
//! 4`, the other relay flags at their defaults) with one native worker,
//! joins the honest peers (each at its own loopback address, linking to
//! every parent it is given: the page's rules, without a data channel),
//! waits until all but one are linked, then joins the sybils (each at its
//! own address too) and, after `$DONUT_SYBIL_SETTLE` seconds (default 5),
//! measures the server's bytes to viewers (`viewer_bytes_sent`: frames,
//! digests, telemetry, signalling, fallbacks) over `$DONUT_SYBIL_SECS`
//! seconds (default 10). `$DONUT_SYBIL_KINDS` (comma-separated name
//! prefixes, e.g. `fetch`; default all) picks the kinds. Prints, per run, the egress and the egress per
//! viewer (honest and sybil sockets alike), the ratio to the run with the
//! same number of sockets watching plainly (`× plain`: what the sybils cost
//! beyond their own streams), the viewers the server counts as linked, the
//! honest peers the server closed, and the server's relay figures.
//!
//! Kinds (`tests/common/p2p.rs`): reporters (report every parent they are
//! given), offer flooders (4 KiB offers to every parent up to the
//! signalling bucket), fetch flooders (fetch the newest batch 19 times a
//! second), link claimers (say every link is up, never hold a byte; to the
//! server's egress alike to the honest peers in this native model, whose
//! children do not need the bytes).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::p2p::{Driven, Role};
use common::{config, start, stats, wait_stats, worker};
use donut_server::config::P2pMode;

fn env_list(var: &str, default: &[u64]) -> Vec<u64> {
    std::env::var(var)
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

fn env_secs(var: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

fn num(s: &serde_json::Value, k: &str) -> u64 {
    s[k].as_u64().unwrap_or(0)
}

/// The loopback address of viewer `i` of group `net` (1: honest, 2:
/// sybils).
fn host(net: u8, i: u64) -> std::net::IpAddr {
    std::net::IpAddr::from([127, net, (i / 250) as u8, (i % 250 + 1) as u8])
}

/// One run: egress (bytes a second), the figures at the end, honest peers
/// closed.
async fn run(honest: u64, sybils: u64, kind: Role) -> (f64, serde_json::Value, usize) {
    let mut cfg = config();
    cfg.p2p = P2pMode::On;
    cfg.p2p_max_depth = 4;
    let server = start(cfg).await;
    let addr = server.addr;
    let _w = worker(addr, 1);
    let mut good = Vec::new();
    for i in 0..honest {
        good.push(Driven::start(addr, host(1, i), Role::Honest).await);
    }
    wait_stats(addr, "the honest peers linked", |s| {
        num(s, "p2p_peering") == honest && num(s, "p2p_linked") + 1 >= honest
    })
    .await;
    let mut bad = Vec::new();
    for i in 0..sybils {
        bad.push(Driven::start(addr, host(2, i), kind).await);
    }
    tokio::time::sleep(env_secs("DONUT_SYBIL_SETTLE", 5)).await;
    let before = num(&stats(addr).await, "viewer_bytes_sent");
    let t = Instant::now();
    tokio::time::sleep(env_secs("DONUT_SYBIL_SECS", 10)).await;
    let s = stats(addr).await;
    let rate = (num(&s, "viewer_bytes_sent") - before) as f64 / t.elapsed().as_secs_f64();
    for d in bad {
        d.finish().await;
    }
    let mut closed = 0;
    for d in good {
        closed += usize::from(d.finish().await.closed.is_some());
    }
    server.shutdown(Duration::from_secs(2)).await;
    (rate, s, closed)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let only = std::env::var("DONUT_SYBIL_KINDS").unwrap_or_default();
    let kinds: Vec<_> = [
        ("reporters", Role::Reporter),
        ("offer flooders", Role::OfferFlooder),
        ("fetch flooders", Role::Fetcher),
        ("link claimers", Role::Honest),
    ]
    .into_iter()
    .filter(|(name, _)| only.split(',').any(|k| name.starts_with(k.trim())))
    .collect();
    println!(
        "| honest | sybils | egress B/s | per viewer B/s | × same count of plain viewers | linked | honest closed | figures |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let counts = env_list("DONUT_SYBIL_COUNTS", &[2, 8]);
    for honest in env_list("DONUT_SYBIL_PEERS", &[8, 32]) {
        let row = |sybils: String, rate: f64, base: f64, n: u64, s: &serde_json::Value, closed| {
            println!(
                "| {honest} | {sybils} | {rate:.0} | {:.0} | {:.2} | {} | {closed} | offload {}‰ (claimed {}‰), bars {}, suspects {}, fetches refused {}, signals throttled {} |",
                rate / n as f64,
                rate / base,
                num(s, "p2p_linked"),
                num(s, "p2p_offload_permille"),
                num(s, "p2p_claimed_permille"),
                num(s, "p2p_bars"),
                num(s, "p2p_suspects"),
                num(s, "p2p_fetches_refused"),
                num(s, "p2p_signals_throttled"),
            );
        };
        // The honest baseline: no sybils, then the same number of sockets
        // watching plainly (their own streams are the server's either way).
        let (none, s, closed) = rt.block_on(run(honest, 0, Role::Plain));
        row("none".into(), none, none, honest, &s, closed);
        for &n in &counts {
            let (plain, s, closed) = rt.block_on(run(honest, n, Role::Plain));
            row(
                format!("{n} plain viewers"),
                plain,
                plain,
                honest + n,
                &s,
                closed,
            );
            for &(name, kind) in &kinds {
                let (rate, s, closed) = rt.block_on(run(honest, n, kind));
                row(format!("{n} {name}"), rate, plain, honest + n, &s, closed);
            }
        }
    }
}
