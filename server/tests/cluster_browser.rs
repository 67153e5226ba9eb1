//! A cluster's pages in real headless Chromium (issue 23): three real
//! `donut serve` nodes sharing one timeline through a real `redis-server`,
//! a native worker on each, and a page on each node. What is checked is
//! what the pages paint: at any moment every page shows the same frame
//! (within 2 frames) whichever node it is connected to, a follower's page
//! misses no more frames than the leader's, and every frame two pages
//! painted under one version is the same picture.
//!
//! The pages anchor their playback clocks on `Telemetry.head`; a follower
//! once sent its idle core's head (0, or frozen where it stopped leading),
//! so its pages re-anchored every second, restarted at the leading edge
//! and ran seconds ahead of the leader's, missing frames all along.

mod chromium;
#[path = "common/cluster.rs"]
mod cluster;
mod firefox;
mod pages;
#[allow(dead_code)]
#[path = "common/redis_server.rs"]
mod redis_server;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use chromium::Proc;
use cluster::Node;
use pages::*;
use redis_server::RedisServer;

/// Seconds the pages are watched (`DONUT_CLUSTER_SECS`, default 25).
fn run_secs() -> u64 {
    std::env::var("DONUT_CLUSTER_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25)
}

/// What the pages need of a node.
impl Node {
    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&http_get(self.port(), "/api/stats")).expect("/api/stats is JSON")
    }

    /// A native worker process (`donut work`) connected to this node.
    fn native_worker(&self) -> Proc {
        let child = Command::new(env!("CARGO_BIN_EXE_donut"))
            .args(["work", "--server", &format!("ws://{}", self.addr)])
            .args(["--threads", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a native worker");
        Proc(child)
    }
}

/// What tab `tab` painted lately: `(frame, version, digest, wall ms)`.
async fn painted(browser: &Browser, tab: usize) -> Vec<(u64, u64, String, f64)> {
    browser.focus(tab).await;
    let log = browser.js("return window.donutViewer.painted()").await;
    log.as_array()
        .unwrap_or_else(|| panic!("painted() is not an array: {log}"))
        .iter()
        .map(|e| {
            (
                e[0].as_f64().expect("a frame number") as u64,
                e[1].as_f64().expect("a timeline version") as u64,
                e[2].as_str().expect("a digest").to_owned(),
                e[3].as_f64().expect("a wall time"),
            )
        })
        .collect()
}

/// The page's clock as one number: the median over its paints since
/// `since_ms` of `frame - wall_ms * fps / 1000`, the frame it would show at
/// the Unix epoch. Two pages showing the same frame at the same moment
/// have the same offset; a page 3 frames ahead has an offset 3 larger.
fn clock_offset(paints: &[(u64, u64, String, f64)], since_ms: f64, fps: f64) -> (f64, usize) {
    let mut offsets: Vec<f64> = paints
        .iter()
        .filter(|p| p.3 >= since_ms)
        .map(|p| p.0 as f64 - p.3 * fps / 1000.0)
        .collect();
    offsets.sort_by(f64::total_cmp);
    let n = offsets.len();
    assert!(n > 0, "no paint since {since_ms}");
    (offsets[n / 2], n)
}

/// Three nodes, a page on each: the pages paint in step, and followers'
/// pages miss no more frames than the leader's. Fails when a follower's
/// telemetry carries its idle core's head.
#[test]
fn every_node_s_page_paints_the_same_frame_at_the_same_moment() {
    serial(async {
        let redis = RedisServer::start();
        let prefix = format!("page{}:", std::process::id());
        let nodes = cluster::start_nodes(&redis.url(), &prefix, 3, Duration::from_secs(1), &[]);
        let _workers: Vec<Proc> = nodes.iter().map(Node::native_worker).collect();
        let leader = eventually("a leader", async || {
            nodes.iter().position(|n| n.stats()["cluster_role"] == 2)
        })
        .await;

        let mut browser = Browser::launch(1.0).await;
        for n in &nodes {
            let url = format!("http://{}/?contribute=0&steer=0", n.addr);
            browser.open(&url).await;
        }
        // Every page plays (two seconds each) before the watch starts.
        for tab in 0..nodes.len() {
            let f = eventually("a frame", async || browser.current_frame(tab).await).await;
            browser.wait_playing_past(tab, f, 120).await;
        }
        let mut before = Vec::new();
        for tab in 0..nodes.len() {
            before.push(browser.viewer_stats(tab).await);
        }
        let start_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_secs(run_secs())).await;

        // The painted log holds the last 20 s: compare the window's end.
        let since = start_ms.max(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
                - 15_000.0,
        );
        let mut logs = Vec::new();
        let mut misses = Vec::new();
        for (tab, before) in before.iter().enumerate() {
            let after = browser.viewer_stats(tab).await;
            misses.push(num(&after, "misses") - num(before, "misses"));
            logs.push(painted(&browser, tab).await);
            eprintln!("page on node n{}: {after}", tab + 1);
        }
        browser.quit().await;

        let fps = 60.0;
        let offsets: Vec<(f64, usize)> = logs
            .iter()
            .map(|log| clock_offset(log, since, fps))
            .collect();
        eprintln!(
            "leader n{}; clock offsets (frames): {:?}; missed frames over {} s: {misses:?}",
            leader + 1,
            offsets
                .iter()
                .map(|o| o.0 - offsets[leader].0)
                .collect::<Vec<_>>(),
            run_secs()
        );
        for (tab, (offset, paints)) in offsets.iter().enumerate() {
            assert!(
                *paints > 300,
                "the page on n{} painted only {paints} frames in 15 s",
                tab + 1
            );
            assert!(
                (offset - offsets[leader].0).abs() <= 2.0,
                "the page on n{} shows frame {:+.1} from the leader's page at the same moment",
                tab + 1,
                offset - offsets[leader].0
            );
        }
        for (tab, missed) in misses.iter().enumerate() {
            assert!(
                *missed <= misses[leader],
                "the page on follower n{} missed {missed} frames, the leader's page {}",
                tab + 1,
                misses[leader]
            );
        }
        // Every frame two pages painted under one version is one picture.
        let mut by_frame: BTreeMap<(u64, u64), &str> = BTreeMap::new();
        let mut compared = 0;
        for log in &logs {
            for (frame, version, digest, _) in log {
                match by_frame.get(&(*frame, *version)) {
                    Some(d) => {
                        assert_eq!(d, digest, "frame {frame} (version {version}) differs");
                        compared += 1;
                    }
                    None => {
                        by_frame.insert((*frame, *version), digest);
                    }
                }
            }
        }
        assert!(
            compared > 600,
            "too few frames painted by two pages: {compared}"
        );
        for n in &nodes {
            let s = n.stats();
            assert_eq!(num(&s, "protocol_errors"), 0, "{s}");
        }
    });
}

/// A page on a cluster node steers while Redis is frozen (5 s): the node
/// cannot store the pushes in the cluster's input log in time, refuses
/// them, and the page's panel says so ("Pushes refused": how many and
/// why). Before, such pushes were counted accepted and lost without a
/// word.
#[test]
fn a_page_whose_pushes_are_refused_shows_why() {
    serial(async {
        let redis = RedisServer::start();
        let prefix = format!("refused{}:", std::process::id());
        let nodes = cluster::start_nodes(&redis.url(), &prefix, 1, Duration::from_secs(1), &[]);
        let _worker = nodes[0].native_worker();
        eventually("a leader", async || {
            (nodes[0].stats()["cluster_role"] == 2).then_some(())
        })
        .await;
        let mut browser = Browser::launch(1.0).await;
        let tab = browser
            .open(&format!("http://{}/?contribute=0", nodes[0].addr))
            .await;
        let f = eventually("a frame", async || browser.current_frame(tab).await).await;
        browser.wait_playing_past(tab, f, 60).await;
        let refused = "return document.querySelector('[data-stat=refused]').textContent";
        assert_eq!(browser.js(refused).await, "none", "nothing refused yet");

        redis.freeze();
        browser.focus(tab).await;
        let canvas = browser
            .client
            .find(fantoccini::Locator::Id("donut"))
            .await
            .expect("the canvas");
        browser
            .client
            .perform_actions(chromium::steering_drag(canvas))
            .await
            .expect("drag");
        browser
            .client
            .release_actions()
            .await
            .expect("release the pointer");
        tokio::time::sleep(Duration::from_secs(5)).await;
        redis.thaw();
        let shown = eventually("the page to show its pushes refused", async || {
            let text = browser.js(refused).await;
            let text = text.as_str().unwrap_or_default().to_owned();
            text.contains("not applied").then_some(text)
        })
        .await;
        let page = browser.viewer_stats(tab).await;
        let s = nodes[0].stats();
        browser.quit().await;
        eprintln!("the panel says {shown:?}; page {page}; node {s}");
        let sent = num(&page, "inputsSent");
        assert!(sent > 0, "the drag sent no push: {page}");
        assert_eq!(
            shown,
            format!(
                "{sent} {} not applied: the cluster's store is unreachable",
                if sent == 1 { "push" } else { "pushes" }
            ),
            "every push of the drag refused, and the page told why"
        );
        assert_eq!(num(&s, "cluster_inputs_refused_unreachable"), sent, "{s}");
        assert_eq!(
            num(&s, "scene_changes"),
            0,
            "a refused push was applied: {s}"
        );
    });
}
