//! Steering on a cluster follower (issue 25), in real headless Chromium
//! against three real `donut serve` nodes sharing one timeline through a
//! real `redis-server`.
//!
//! A push on a follower makes one more hop: the follower stores it in the
//! cluster's input log, the leader folds it and appends the timeline
//! entries, and every follower reads them back. The follower tells its
//! steering pages each version's change and how many of their pushes are
//! folded in (`Keyframe`), from the committed entries, so tab A on
//! follower 1 predicts its drags exactly as on one node. Checked on what
//! the screens paint: tab A is told the changes and paints its predicted
//! push before the server's frames of it (and the prediction is compared
//! with the server's frames), tab B on follower 2 shows the change, every
//! server frame either tab painted is the native render of the committed
//! timeline at its (frame, version) (the timeline as a raw viewer on
//! follower 2 was told it), and a watch-only tab on follower 1 is sent no
//! `Keyframe` and predicts nothing. Before, a follower's pages were told
//! nothing: they never predicted, and only watched their pushes arrive.

mod chromium;
#[path = "common/cluster.rs"]
mod cluster;
mod firefox;
mod pages;
#[allow(dead_code)]
#[path = "common/redis_server.rs"]
mod redis_server;
mod steering;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chromium::Proc;
use pages::*;
use redis_server::RedisServer;
use serde_json::Value;
use steering::*;

fn node_stats(node: &cluster::Node) -> Value {
    serde_json::from_str(&http_get(node.addr.port(), "/api/stats")).expect("/api/stats is JSON")
}

/// A native worker process (`donut work`) connected to `node`.
fn native_worker(node: &cluster::Node) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_donut"))
        .args(["work", "--server", &format!("ws://{}", node.addr)])
        .args(["--threads", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a native worker");
    Proc(child)
}

#[test]
fn a_follower_s_steering_tab_predicts_and_another_follower_shows_the_change() {
    serial(async {
        let redis = RedisServer::start();
        let prefix = cluster::fresh_prefix("steer");
        let nodes = cluster::start_nodes(&redis.url(), &prefix, 3, Duration::from_secs(1), &[]);
        let leader = eventually("a leader", async || {
            nodes
                .iter()
                .position(|n| node_stats(n)["cluster_role"] == 2)
        })
        .await;
        let _worker = native_worker(&nodes[leader]);
        let followers: Vec<&cluster::Node> = (0..nodes.len())
            .filter(|&i| i != leader)
            .map(|i| &nodes[i])
            .collect();
        let (f1, f2) = (followers[0], followers[1]);

        let keys: Keys = Arc::default();
        let watch = observer(f2.addr, Arc::clone(&keys)).await;

        let mut browser = Browser::launch(1.0).await;
        let a = browser
            .open(&format!("http://{}/?contribute=0", f1.addr))
            .await;
        let b = browser
            .open(&format!("http://{}/?contribute=0", f2.addr))
            .await;
        let tv = browser
            .open(&format!("http://{}/?contribute=0&steer=0", f1.addr))
            .await;
        wait_all_playing(&browser, &[a, b, tv]).await;
        three_drags(&browser, a).await;
        let version = settled_version(&browser, a, b).await;

        // Tab A was told the changes and predicted its pushes.
        browser.focus(a).await;
        let pa = browser.js("return window.donutViewer.prediction()").await;
        let painted_a = entries(&browser.js("return window.donutViewer.painted()").await);
        eprintln!(
            "tab A (follower {}) prediction: {}",
            f1.id,
            serde_json::json!({
                "keyframes": pa["keyframes"], "pushes": pa["pushes"],
                "predicted": pa["predicted"], "confirmed": pa["confirmed"],
                "mispredicted": pa["mispredicted"], "unsettled": pa["unsettled"],
                "lead": pa["lead"],
            })
        );
        assert!(num(&pa, "pushes") >= 3, "tab A's pushes predicted: {pa}");
        assert!(
            num(&pa, "keyframes") >= 1,
            "tab A on a follower is told the changes: {pa}"
        );
        let predicted = entries(&pa["log"]);
        assert!(
            num(&pa, "predicted") >= 10 && !predicted.is_empty(),
            "tab A painted predicted frames: {pa}"
        );
        assert_eq!(
            num(&pa, "confirmed") + num(&pa, "mispredicted") + num(&pa, "unsettled"),
            num(&pa, "predicted"),
            "every predicted frame compared or given up, once: {pa}"
        );
        assert!(
            num(&pa, "confirmed") >= 1,
            "predicted frames confirmed by the server's: {pa}"
        );
        let keys = keys.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert!(
            (1..=version as u32).all(|v| keys.contains_key(&v)),
            "the observer on follower {} was told every change up to {version}: {:?}",
            f2.id,
            keys.keys().collect::<Vec<_>>()
        );
        browser.focus(b).await;
        let painted_b = entries(&browser.js("return window.donutViewer.painted()").await);

        // Tab A painted its push before the server's frames of it.
        predicted_before_the_server(&keys, &predicted, &painted_a);

        // Every server frame A and B painted is the native render of the
        // committed timeline; B (another follower) shows the change.
        for (tab, painted) in [("A", &painted_a), ("B", &painted_b)] {
            every_frame_committed_and_steered(&keys, tab, painted);
        }

        // The watch-only tab on the same follower: told nothing.
        watch_only_told_nothing(&browser, tv).await;

        for n in &nodes {
            let s = node_stats(n);
            assert_eq!(num(&s, "protocol_errors"), 0, "{}: {s}", n.id);
        }
        let s1 = node_stats(f1);
        assert!(
            num(&s1, "cluster_inputs_forwarded") >= 3,
            "tab A's pushes went through the input log: {s1}"
        );
        watch.abort();
        browser.quit().await;
    });
}
