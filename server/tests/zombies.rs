//! Idle takers: workers that answer pings and take tasks but never return a
//! result. Next to one honest worker, playback must hold its pace with no
//! stall, and the zombies must end up closed with no work, whether one or
//! several connect from one address.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

/// A zombie from 127.0.0.`from`: says hello with 4 slots, reads (so pings
/// are answered), never answers a task. Returns the server's close.
async fn zombie(addr: std::net::SocketAddr, from: u8) -> (u16, String) {
    let mut ws = connect_from(addr, "/ws/worker", loopback(from)).await;
    hello(&mut ws, 4).await;
    let run = async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(Some(f))) => return (u16::from(f.code), f.reason.to_string()),
                Ok(_) => {}
                Err(e) => return (0, e.to_string()),
            }
        }
        (0, "ended without close".to_owned())
    };
    tokio::time::timeout(HANG, run)
        .await
        .expect("zombie closed in time")
}

async fn playback_holds_with(zombies: usize, from: u8) {
    let server = start(config()).await;
    let addr = server.addr;
    let honest = worker_from(addr, 1, loopback(1));
    let mut first = Viewer::connect(addr).await;
    // Playing before the zombies come.
    first.receive(60).await;
    drop(first);
    let viewer = BackgroundViewer::start(addr).await;
    let tasks: Vec<_> = (0..zombies)
        .map(|_| tokio::spawn(zombie(addr, from)))
        .collect();
    for t in tasks {
        let (code, reason) = t.await.expect("zombie task");
        assert_eq!(code, 1008, "{reason}");
        assert!(reason.contains("not delivering"), "{reason}");
    }
    // Every zombie is gone; the viewer kept receiving every frame in order.
    let seen = viewer.finish(120).await;
    assert!(seen.frames >= 120);
    wait_stats(addr, "only the honest worker is left", |s| {
        s["workers"] == 1
    })
    .await;
    let s = stats(addr).await;
    assert_eq!(s["workers_idle_closed"], zombies, "{s}");
    assert_eq!(
        s["playback_stall_frames"], 0,
        "playback stalled with {zombies} zombies: {s}"
    );
    honest.abort();
    server.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_zombie_is_starved_and_closed_and_playback_never_stalls() {
    playback_holds_with(1, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_zombies_from_one_address_cannot_stall_the_show() {
    playback_holds_with(8, 2).await;
}

/// Zombies behind the honest worker's own address (a NAT, localhost tabs):
/// they cannot take the address's share away from the proven worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zombies_sharing_the_honest_workers_address_cannot_stall_it() {
    playback_holds_with(4, 1).await;
}
