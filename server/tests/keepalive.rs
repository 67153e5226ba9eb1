//! Keep-alive on the real server: every peer is pinged, a peer that stays
//! silent (no message, no pong) past the idle limit is closed with
//! "idle timeout", and a peer that answers pings is kept however little
//! else it says (viewers never send anything but pongs).

mod common;

use common::*;

/// Pings every second, reaps after two silent seconds.
fn keep_alive_config() -> donut_server::config::ServeConfig {
    let mut c = config();
    c.ping_secs = 1;
    c.idle_secs = 2;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peers_are_reaped_and_responsive_ones_are_kept() {
    let server = start(keep_alive_config()).await;
    let addr = server.addr;
    let native = worker(addr, 1);

    // A viewer that reads all along, so its client answers every ping; it
    // must see every frame for 10 s, well past the idle limit.
    let mut live = Viewer::connect(addr).await;
    let live = tokio::spawn(async move {
        live.receive(600).await;
        live
    });

    // A viewer and a worker that never read: their pings go unanswered.
    let mut silent_viewer = connect(addr, "/ws/viewer").await;
    let mut silent_worker = connect(addr, "/ws/worker").await;
    hello(&mut silent_worker, 1).await;

    wait_stats(addr, "both silent peers reaped", |s| s["idle_reaped"] == 2).await;
    let (code, reason) = expect_close(&mut silent_viewer).await;
    assert_eq!((code, reason.as_str()), (1000, "idle timeout"));
    let (code, reason) = expect_close(&mut silent_worker).await;
    assert_eq!((code, reason.as_str()), (1000, "idle timeout"));

    // The responsive viewer saw every frame, in order, checked byte for
    // byte (`receive` panics otherwise), and was never reaped.
    let live = live.await.expect("live viewer");
    assert!(live.seen.frames >= 600);
    let s = stats(addr).await;
    assert_eq!(
        s["idle_reaped"], 2,
        "only the silent peers were reaped: {s}"
    );
    native.abort();
}
