//! Malformed, oversized, wrong-role and wrong-version messages, connection
//! caps and a viewer that never reads: the offender is closed with a code and
//! a reason, nobody else notices, nothing panics.

mod common;

use std::time::Duration;

use common::*;
use donut_shared::wire::p2p::{Fetch, MAX_FROM_VIEWER_LEN, Signal, SignalKind};
use donut_shared::wire::{Codec, Frames, FromViewer, MAX_WORKER_MESSAGE_LEN, PROTOCOL_VERSION};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

/// Sends `msg` on a fresh connection to `path` and returns the close.
async fn close_for(addr: std::net::SocketAddr, path: &str, msg: Message) -> (u16, String) {
    let mut ws = connect(addr, path).await;
    ws.send(msg).await.expect("send");
    expect_close(&mut ws).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_close_only_the_sender() {
    let server = start(config()).await;
    let addr = server.addr;
    let honest = worker(addr, 1);
    let mut viewer = Viewer::connect(addr).await;
    viewer.receive(30).await;

    let cases: Vec<(&str, Message, u16, &str)> = vec![
        (
            "/ws/worker",
            Message::binary(vec![PROTOCOL_VERSION; MAX_WORKER_MESSAGE_LEN + 1]),
            1009,
            "exceeds",
        ),
        (
            "/ws/worker",
            Message::binary(vec![PROTOCOL_VERSION, 0x02, 0, 0]),
            1002,
            "truncated",
        ),
        (
            "/ws/worker",
            Message::binary(vec![PROTOCOL_VERSION, 0x77]),
            1002,
            "unknown message tag",
        ),
        (
            "/ws/worker",
            // A hello of the next protocol version.
            Message::binary(vec![PROTOCOL_VERSION + 1, 0x01, 0, 1]),
            1002,
            "unsupported, this server speaks",
        ),
        (
            "/ws/worker",
            Message::binary(Vec::<u8>::new()),
            1002,
            "empty",
        ),
        (
            "/ws/worker",
            Message::text("hello"),
            1003,
            "binary messages only",
        ),
        (
            // A viewer-bound message sent by a "worker": wrong role.
            "/ws/worker",
            Message::binary(Frames::header(0, 1, 0, Codec::Nibble).to_vec()),
            1003,
            "not allowed",
        ),
        (
            "/ws/viewer",
            Message::binary(vec![PROTOCOL_VERSION, 0x01, 0, 1]),
            1003,
            "viewers send",
        ),
        ("/ws/viewer", Message::text("hi"), 1003, "viewers send"),
        (
            "/ws/viewer",
            Message::binary(vec![0u8; 64 * 1024]),
            1009,
            "exceeds",
        ),
        (
            // A relay message from a viewer outside the relay tree.
            "/ws/viewer",
            Message::binary(
                FromViewer::Fetch(Fetch {
                    start: 0,
                    timeline: 0,
                })
                .to_vec(),
            ),
            1008,
            "join the relay tree first",
        ),
        (
            // A Peering whose flag is neither 0 nor 1.
            "/ws/viewer",
            Message::binary(vec![PROTOCOL_VERSION, 0x04, 7]),
            1002,
            "invalid",
        ),
        (
            // A Report cut short.
            "/ws/viewer",
            Message::binary(vec![PROTOCOL_VERSION, 0x08, 0, 0, 0]),
            1002,
            "truncated",
        ),
        (
            // A Signal one byte over the largest a viewer may send.
            "/ws/viewer",
            Message::binary(
                FromViewer::Signal(Signal {
                    peer: 1,
                    kind: SignalKind::Offer,
                    text: &"x".repeat(MAX_FROM_VIEWER_LEN - 10),
                })
                .to_vec(),
            ),
            1009,
            "exceeds",
        ),
    ];
    for (path, msg, code, reason) in cases {
        let (got_code, got_reason) = close_for(addr, path, msg).await;
        assert_eq!(got_code, code, "{path}: {got_reason}");
        assert!(
            got_reason.contains(reason),
            "{path}: expected {reason:?} in {got_reason:?}"
        );
        // Everyone else carries on.
        viewer.receive(viewer.seen.frames + 15).await;
    }
    let s = stats(addr).await;
    assert_eq!(s["workers"], 1);
    assert!(s["protocol_errors"].as_u64().unwrap_or(0) >= 13, "{s}");
    honest.abort();
    server.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_caps_are_refused_with_a_reason() {
    let mut cfg = config();
    cfg.max_viewers = 2;
    cfg.max_workers = 1;
    cfg.max_per_ip = 0;
    let server = start(cfg).await;
    let addr = server.addr;
    let _v1 = connect(addr, "/ws/viewer").await;
    let _v2 = connect(addr, "/ws/viewer").await;
    // Admission runs after the upgrade, in each connection's own task: the
    // third is the one refused only once the first two are counted.
    wait_stats(addr, "two viewers admitted", |s| s["viewers"] == 2).await;
    let mut v3 = connect(addr, "/ws/viewer").await;
    let (code, reason) = expect_close(&mut v3).await;
    assert_eq!(code, 1013);
    assert!(reason.contains("viewer connection cap of 2"), "{reason}");
    let _w1 = connect(addr, "/ws/worker").await;
    wait_stats(addr, "a worker admitted", |s| s["workers"] == 1).await;
    let mut w2 = connect(addr, "/ws/worker").await;
    let (code, reason) = expect_close(&mut w2).await;
    assert_eq!(code, 1013);
    assert!(reason.contains("worker connection cap of 1"), "{reason}");
    let s = stats(addr).await;
    assert_eq!(s["connections_refused"], 2);
    assert_eq!(s["viewers"], 2);
    server.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_opening_many_connections_is_capped() {
    let mut cfg = config();
    cfg.max_per_ip = 5;
    let server = start(cfg).await;
    let addr = server.addr;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect(addr, "/ws/viewer").await);
    }
    wait_stats(addr, "five viewers admitted", |s| s["viewers"] == 5).await;
    for _ in 0..3 {
        let mut extra = connect(addr, "/ws/viewer").await;
        let (code, reason) = expect_close(&mut extra).await;
        assert_eq!(code, 1013);
        assert!(
            reason.contains("per-address connection cap of 5"),
            "{reason}"
        );
    }
    // Closing one frees a place.
    held.pop();
    wait_stats(addr, "a place freed", |s| s["viewers"] == 4).await;
    let mut again = Viewer::connect(addr).await;
    let honest = worker(addr, 1);
    again.receive(30).await;
    honest.abort();
    server.shutdown(Duration::from_secs(3)).await;
}

/// A viewer socket with a 4 KiB receive buffer that the test does not read
/// from (until it chooses to): the server's sends to it back up at once.
async fn unread_viewer(
    addr: std::net::SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = socket.connect(addr).await.expect("connect");
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws/viewer"), stream)
        .await
        .expect("handshake");
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_never_reads_does_not_hold_anyone_back() {
    let mut cfg = config();
    // Real time, but fast enough to fill socket buffers in seconds.
    cfg.fps = 3000;
    cfg.viewer_queue = 4;
    cfg.send_timeout_secs = 2;
    cfg.verify = donut_server::config::VerifyPolicy::Off;
    let server = start(cfg).await;
    let addr = server.addr;
    // Connected with a tiny receive buffer, never read from again.
    let stuck = unread_viewer(addr).await;
    let mut viewer = Viewer::connect(addr).await;
    let workers: Vec<_> = (0..2).map(|_| worker(addr, 1)).collect();
    viewer.receive(3000).await;
    wait_stats(addr, "the stuck viewer is skipped ahead or dropped", |s| {
        s["viewer_lag_events"].as_u64().unwrap_or(0)
            + s["viewers_dropped_slow"].as_u64().unwrap_or(0)
            > 0
    })
    .await;
    // The reading viewer got everything, gap-free and correct, and keeps going.
    let target = viewer.seen.frames + 3000;
    viewer.receive(target).await;
    let s = stats(addr).await;
    assert!(s["viewer_bytes_sent"].as_u64().unwrap_or(0) > 0, "{s}");
    drop(stuck);
    for w in workers {
        w.abort();
    }
    server.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_leaving_too_much_unread_is_closed_with_a_reason() {
    let mut cfg = config();
    // Real time, fast enough to fill socket buffers in seconds (256 KiB is
    // about 3,000 frames) yet slow enough that the reading viewer keeps up
    // on a loaded 2-core machine (at 3000 fps it was itself dropped there);
    // the send timeout and the idle reaper far away, so only the unread
    // bound can end the viewer, whatever it answers.
    cfg.fps = 1000;
    cfg.send_timeout_secs = 3600;
    cfg.idle_secs = 3600;
    // A short catch-up burst.
    cfg.viewer_lead_secs = 0.2;
    // The default bound (256 KiB).
    assert_eq!(cfg.viewer_max_unsent, 256 * 1024);
    cfg.verify = donut_server::config::VerifyPolicy::Off;
    let server = start(cfg).await;
    let addr = server.addr;
    // A tiny receive window, and no reading for now.
    let mut stuck = unread_viewer(addr).await;
    let mut viewer = Viewer::connect(addr).await;
    let workers: Vec<_> = (0..2).map(|_| worker(addr, 1)).collect();
    viewer.receive(3000).await;
    wait_stats(addr, "the unread viewer is closed", |s| {
        s["viewers_dropped_slow"].as_u64().unwrap_or(0) > 0 && s["viewers"] == 1
    })
    .await;
    // Reading it all now ends in the close frame, with the reason.
    let (code, reason) = expect_close(&mut stuck).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(
        reason.contains("not reading") && reason.contains("over the limit of 262144"),
        "{reason}"
    );
    // The reading viewer got everything, gap-free and correct, and keeps going.
    let target = viewer.seen.frames + 3000;
    viewer.receive(target).await;
    for w in workers {
        w.abort();
    }
    server.shutdown(Duration::from_secs(3)).await;
}
