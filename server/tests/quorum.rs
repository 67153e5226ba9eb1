//! The `quorum` policy with real workers from different loopback addresses
//! (127.0.0.x): ranges are accepted when two addresses agree byte for byte,
//! the server re-renders only to settle, and a liar never gets a frame to
//! the checking viewer.

mod common;

use std::time::Duration;

use common::*;
use donut_server::config::{ServeConfig, VerifyPolicy};
use donut_shared::PACKED_LEN;
use donut_shared::wire::RESULT_HEADER_LEN;

fn quorum_config(wait_ms: u64) -> ServeConfig {
    let mut cfg = config();
    cfg.verify = VerifyPolicy::Quorum;
    cfg.quorum_wait_ms = wait_ms;
    cfg.ban_secs = 60;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_honest_addresses_agree_and_the_server_renders_nothing() {
    // A lone vote would wait a minute: only agreement can move the stream.
    let server = start(quorum_config(60_000)).await;
    let addr = server.addr;
    let a = worker_from(addr, 1, loopback(1));
    let b = worker_from(addr, 1, loopback(2));
    let mut viewer = Viewer::connect(addr).await;
    viewer.receive(300).await;
    let s = stats(addr).await;
    assert!(s["quorum_agreements"].as_u64() > Some(0), "{s}");
    assert_eq!(s["frames_checked"], 0, "no re-render while they agree: {s}");
    assert_eq!(s["quorum_disputes"], 0, "{s}");
    assert_eq!(s["strikes"], 0, "{s}");
    a.abort();
    b.abort();
    server.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_one_address_is_settled_by_the_server() {
    let server = start(quorum_config(200)).await;
    let addr = server.addr;
    let w = worker(addr, 1);
    let mut viewer = Viewer::connect(addr).await;
    viewer.receive(120).await;
    let s = stats(addr).await;
    assert!(s["quorum_settled_alone"].as_u64() > Some(0), "{s}");
    assert_eq!(s["quorum_agreements"], 0, "{s}");
    w.abort();
    server.shutdown(Duration::from_secs(3)).await;
}

/// A worker from 127.0.0.3 that forges one glyph (row 7, column 40 of its
/// last frame: the layout stays valid) in every batch.
async fn liar(addr: std::net::SocketAddr) -> ((u16, String), usize) {
    let forge: Forge = Box::new(|t| {
        let mut r = result_for(t);
        let at = RESULT_HEADER_LEN + (t.count as usize - 1) * PACKED_LEN + 300;
        r[at] = (((r[at] >> 4) % 12 + 1) << 4) | (r[at] & 0x0f);
        vec![r]
    });
    cheat_from(addr, 3, forge).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_liar_among_honest_addresses_never_reaches_the_viewer() {
    let server = start(quorum_config(500)).await;
    let addr = server.addr;
    let viewer = BackgroundViewer::start(addr).await;
    let a = worker_from(addr, 1, loopback(1));
    let b = worker_from(addr, 1, loopback(2));
    let ((code, reason), sent) = liar(addr).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("banned"), "{reason}");
    assert!(sent >= 1);
    // Every frame the viewer played was compared with the native render.
    let seen = viewer.finish(600).await;
    assert_eq!(seen.first, Some(0));
    let s = stats(addr).await;
    assert!(s["batches_rejected"].as_u64() >= Some(3), "{s}");
    assert_eq!(s["workers_banned"], 1, "{s}");
    a.abort();
    b.abort();
    server.shutdown(Duration::from_secs(3)).await;
}
