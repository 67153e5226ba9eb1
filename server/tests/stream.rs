//! The stream end to end over real sockets: several native workers, several
//! viewers, every frame in order, gap-free and byte-identical to the native
//! render; a viewer joining mid-stream can play at once; the operations
//! endpoints answer.

mod common;

use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_and_viewers_get_a_gap_free_correct_stream() {
    let mut cfg = config();
    cfg.no_pacing = true;
    cfg.ring_frames = 4096;
    let server = start(cfg).await;
    let addr = server.addr;
    let mut viewers = Vec::new();
    for _ in 0..3 {
        viewers.push(Viewer::connect(addr).await);
    }
    let workers: Vec<_> = (0..3).map(|_| worker(addr, 1)).collect();
    for v in &mut viewers {
        v.receive(3000).await;
        // Unpaced, a viewer connected before the stream started sees it all.
        assert_eq!(v.seen.first, Some(0));
    }
    let s = stats(addr).await;
    assert_eq!(s["workers"], 3);
    assert_eq!(s["viewers"], 3);
    assert!(s["frames_accepted"].as_u64().unwrap_or(0) >= 3000);
    assert!(s["batches_verified"].as_u64().unwrap_or(0) > 0);
    assert_eq!(s["batches_rejected"], 0);
    let metrics = http_get(addr, "/metrics").await;
    assert!(metrics.contains("donut_frames_accepted_total"));
    assert!(metrics.contains("donut_viewer_lag_events_total"));
    assert!(metrics.contains("donut_broadcast_bytes_total"));
    assert_eq!(http_get(addr, "/healthz").await, "ok\n");
    assert!(http_get(addr, "/").await.contains("<html"));
    for w in workers {
        w.abort();
    }
    server.shutdown(std::time::Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_stream_and_a_viewer_joining_mid_stream_plays_at_once() {
    let server = start(config()).await;
    let addr = server.addr;
    let w = worker(addr, 1);
    let mut early = Viewer::connect(addr).await;
    early.receive(120).await;
    // Mid-stream: the head has moved on.
    let mut late = Viewer::connect(addr).await;
    // The first message is telemetry, the next is a batch of frames already
    // rendered from the playback head on: playable without waiting for the
    // next broadcast.
    let mut head = None;
    let first_batch = loop {
        match late.ws.next().await {
            Some(Ok(Message::Binary(b))) => {
                if let Some(range) = late.check(&b) {
                    break range;
                }
                head = late.seen.telemetry.last().map(|t| t.head);
            }
            Some(Ok(_)) => {}
            other => panic!("viewer ended early: {other:?}"),
        }
    };
    let head = head.expect("telemetry before frames");
    assert!(head > 0, "the stream was live when the viewer joined");
    let (start, count) = first_batch;
    assert!(
        start + u64::from(count) > head,
        "catch-up holds the frames from the playback head"
    );
    assert!(
        start <= head + 90 && count >= 15,
        "catch-up covers the frames to play now: head {head}, batch {start}+{count}"
    );
    late.receive(240).await;
    early.receive(early.seen.frames + 60).await;
    // Telemetry reports the fleet.
    let t = late.seen.telemetry.last().copied().expect("telemetry");
    assert_eq!(t.workers, 1);
    assert!(t.viewers >= 2);
    assert_eq!(t.fps, 60);
    w.abort();
    server.shutdown(std::time::Duration::from_secs(3)).await;
}
