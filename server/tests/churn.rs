//! Workers that vanish, go silent or answer twice: their ranges are handed
//! to others, and every viewer still gets every frame, in order, correct.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

fn churn_config() -> donut_server::config::ServeConfig {
    let mut cfg = config();
    // An unmeasured worker's task is hedged after this long.
    cfg.first_task_timeout_ms = 300;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_disconnecting_mid_task_leaves_no_gap() {
    let server = start(churn_config()).await;
    let addr = server.addr;
    let mut viewer = Viewer::connect(addr).await;
    let mut quitter = connect(addr, "/ws/worker").await;
    hello(&mut quitter, 2).await;
    let task = next_task(&mut quitter).await;
    assert_eq!(task.start, 0, "the quitter holds the first frames");
    drop(quitter);
    let honest = worker(addr, 1);
    viewer.receive(task.count as u64 + 120).await;
    assert_eq!(viewer.seen.first, Some(0));
    let s = stats(addr).await;
    assert!(s["tasks_reassigned"].as_u64().unwrap_or(0) >= 1, "{s}");
    honest.abort();
    server.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_worker_is_hedged_around() {
    let server = start(churn_config()).await;
    let addr = server.addr;
    let mut viewer = Viewer::connect(addr).await;
    // From another address: one address may hold only half the window, so
    // a silent worker on the honest one's address would starve it instead.
    let mut silent = connect_from(addr, "/ws/worker", loopback(2)).await;
    hello(&mut silent, 4).await;
    let task = next_task(&mut silent).await;
    assert_eq!(task.start, 0);
    // Stay connected and keep reading (so pings are answered), never answer.
    let keep = tokio::spawn(async move { while let Some(Ok(_)) = silent.next().await {} });
    let honest = worker(addr, 1);
    viewer.receive(300).await;
    assert_eq!(viewer.seen.first, Some(0));
    let s = stats(addr).await;
    assert!(s["tasks_hedged"].as_u64().unwrap_or(0) >= 1, "{s}");
    assert_eq!(s["batches_rejected"], 0);
    keep.abort();
    honest.abort();
    server.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_skipped_by_a_worker_that_answers_later_ones_is_handed_on() {
    let mut cfg = config();
    // Hedging (after this long) and expiry (twice it) lie far beyond the
    // test's time limit: only presuming the skipped task lost, from the
    // later answers, lets the stream start.
    cfg.first_task_timeout_ms = 120_000;
    let server = start(cfg).await;
    let addr = server.addr;
    let mut viewer = Viewer::connect(addr).await;
    let mut skipper = connect(addr, "/ws/worker").await;
    hello(&mut skipper, 2).await;
    let first = next_task(&mut skipper).await;
    assert_eq!(first.start, 0, "the skipper holds the first frames");
    // Never answer the first task; answer every later one, in order
    // (including the first range, when it comes back under a new task).
    let answer = tokio::spawn(async move {
        loop {
            let task = next_task(&mut skipper).await;
            if skipper
                .send(Message::binary(result_for(&task)))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    viewer.receive(u64::from(first.count) + 120).await;
    assert_eq!(viewer.seen.first, Some(0));
    let s = stats(addr).await;
    assert!(s["tasks_presumed_lost"].as_u64().unwrap_or(0) >= 1, "{s}");
    assert_eq!(s["tasks_hedged"], 0, "{s}");
    answer.abort();
    server.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_answering_twice_is_harmless() {
    let server = start(churn_config()).await;
    let addr = server.addr;
    let mut viewer = Viewer::connect(addr).await;
    let mut twice = connect(addr, "/ws/worker").await;
    hello(&mut twice, 2).await;
    let echo = tokio::spawn(async move {
        loop {
            let task = next_task(&mut twice).await;
            let result = result_for(&task);
            for _ in 0..2 {
                if twice.send(Message::binary(result.clone())).await.is_err() {
                    return;
                }
            }
        }
    });
    viewer.receive(400).await;
    assert_eq!(viewer.seen.first, Some(0));
    let s = stats(addr).await;
    assert!(s["results_duplicate"].as_u64().unwrap_or(0) >= 1, "{s}");
    assert_eq!(s["strikes"], 0);
    assert_eq!(s["workers"], 1, "the double answerer is still connected");
    echo.abort();
    server.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_quarter_of_results_keeps_the_stream_whole() {
    let mut cfg = churn_config();
    cfg.no_pacing = true;
    cfg.ring_frames = 8192;
    // Plain nibble batches here; the other tests cover the context coder.
    cfg.codec = donut_shared::wire::Codec::Nibble;
    let server = start(cfg).await;
    let addr = server.addr;
    let mut viewer = Viewer::connect(addr).await;
    let mut wcfg = donut_server::config::WorkConfig::for_server(&format!("ws://{addr}"));
    wcfg.threads = 1;
    wcfg.drop_fraction = 0.25;
    let lossy: Vec<_> = (0..2)
        .map(|_| {
            let c = wcfg.clone();
            tokio::spawn(async move {
                let _ = donut_server::native_worker::run(c).await;
            })
        })
        .collect();
    viewer.receive(3000).await;
    assert_eq!(viewer.seen.first, Some(0));
    let s = stats(addr).await;
    assert!(
        s["tasks_hedged"].as_u64().unwrap_or(0) + s["tasks_reassigned"].as_u64().unwrap_or(0) >= 1,
        "{s}"
    );
    for w in lossy {
        w.abort();
    }
    server.shutdown(Duration::from_secs(3)).await;
}
