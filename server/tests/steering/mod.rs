//! What the steering tests in real browsers share (issue 25): the committed
//! timeline as an independent observer is told it, the native render's
//! digest of a (frame, version), the pages' probe logs, and the drags.
//!
//! Each test binary compiles this module on its own (`mod steering;`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use donut_shared::digest::fnv1a64;
use donut_shared::scene::Scene;
use donut_shared::steer::scene_after;
use donut_shared::wire::{Input, ToViewer};
use donut_shared::{FRAME_LEN, render_pose};
use fantoccini::Locator;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::chromium;
use crate::pages::{Browser, eventually, num};

/// Version → (change frame, scene there), as a node told the observer.
pub type Keys = Arc<Mutex<BTreeMap<u32, (u64, Scene)>>>;

/// The committed scene of `frame` in `version`, if every version's change
/// up to it is known (version 0 is the idle donut).
pub fn committed(keys: &BTreeMap<u32, (u64, Scene)>, frame: u64, version: u32) -> Option<Scene> {
    let mut v = version;
    while v > 0 {
        let &(k, scene) = keys.get(&v)?;
        if k <= frame {
            return Some(scene_after(k, scene, frame));
        }
        v -= 1;
    }
    Some(Scene::idle(frame))
}

/// The native render's digest of `scene` (what `donut render` draws).
pub fn digest_of(scene: Scene) -> String {
    let mut text = [0u8; FRAME_LEN];
    render_pose(scene.pose, &mut text);
    format!("{:016x}", fnv1a64(&text))
}

/// `[frame, version, digest, wallMs]` entries of a probe's log.
pub fn entries(log: &Value) -> Vec<(u64, u32, String, f64)> {
    log.as_array()
        .unwrap_or_else(|| panic!("not a log: {log}"))
        .iter()
        .map(|e| {
            (
                e[0].as_f64().expect("a frame") as u64,
                e[1].as_f64().expect("a version") as u32,
                e[2].as_str().expect("a digest").to_owned(),
                e[3].as_f64().expect("a time"),
            )
        })
        .collect()
}

/// A raw viewer on `addr` that pushes once (a zero push, which changes
/// nothing, makes it a steerer) and records every change it is told.
pub async fn observer(addr: std::net::SocketAddr, keys: Keys) -> tokio::task::JoinHandle<()> {
    let url = format!("ws://{addr}/ws/viewer");
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("the observer connects");
    ws.send(Message::binary(Input { a: 0, b: 0 }.to_bytes().to_vec()))
        .await
        .expect("the zero push is sent");
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Binary(b) = msg
                && let Ok(ToViewer::Keyframe(k)) = ToViewer::decode(&b)
            {
                keys.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(k.timeline, (k.frame, k.scene));
            }
        }
    })
}

/// Every tab painting, 30 frames on from its first.
pub async fn wait_all_playing(browser: &Browser, tabs: &[usize]) {
    for &tab in tabs {
        let f = eventually("a frame", async || browser.current_frame(tab).await).await;
        browser.wait_playing_past(tab, f, 30).await;
    }
}

/// Tab `a`: three drags across the donut, a second and a half apart.
pub async fn three_drags(browser: &Browser, a: usize) {
    for _ in 0..3 {
        browser.focus(a).await;
        let canvas = browser
            .client
            .find(Locator::Id("donut"))
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
        let f = browser.current_frame(a).await.unwrap_or(0);
        browser.wait_playing_past(a, f, 90).await;
    }
}

/// Tabs `a` and `b` on one steered version, and two more seconds of it:
/// that version.
pub async fn settled_version(browser: &Browser, a: usize, b: usize) -> u64 {
    let version = eventually("tabs A and B on one steered version", async || {
        let va = num(&browser.viewer_stats(a).await, "timeline");
        let vb = num(&browser.viewer_stats(b).await, "timeline");
        (va >= 1 && va == vb).then_some(va)
    })
    .await;
    for tab in [a, b] {
        let f = browser.current_frame(tab).await.unwrap_or(0);
        browser.wait_playing_past(tab, f, 120).await;
    }
    version
}

/// Tab A painted its push before the server's frames of it: a predicted
/// frame that differs from the version it held, drawn before tab A painted
/// any server frame of a later version that differs from that version.
/// Asserts at least one; `predicted` and `painted_a` are probe logs.
pub fn predicted_before_the_server(
    keys: &BTreeMap<u32, (u64, Scene)>,
    predicted: &[(u64, u32, String, f64)],
    painted_a: &[(u64, u32, String, f64)],
) {
    let mut early = 0usize;
    for (frame, held, digest, wall) in predicted {
        let Some(now) = committed(keys, *frame, *held) else {
            continue;
        };
        if *digest == digest_of(now) {
            continue;
        }
        let server_first = painted_a
            .iter()
            .filter(|e| {
                e.1 > *held && committed(keys, e.0, *held).is_some_and(|s| e.2 != digest_of(s))
            })
            .map(|e| e.3)
            .fold(f64::INFINITY, f64::min);
        if *wall < server_first {
            early += 1;
        }
    }
    eprintln!("tab A: {early} predicted frames showed a change before the server's frames of it");
    assert!(
        early >= 1,
        "tab A painted no change before the server's frames of it"
    );
}

/// Every server frame `tab` painted is the native render of the committed
/// timeline at its (frame, version), and at least 60 of them show a change.
pub fn every_frame_committed_and_steered(
    keys: &BTreeMap<u32, (u64, Scene)>,
    tab: &str,
    painted: &[(u64, u32, String, f64)],
) {
    let mut steered = 0usize;
    for (frame, v, digest, _) in painted {
        let scene = committed(keys, *frame, *v).expect("a known version");
        assert_eq!(
            *digest,
            digest_of(scene),
            "tab {tab}: frame {frame} of version {v} is not the committed render"
        );
        if *v >= 1 && scene != Scene::idle(*frame) {
            steered += 1;
        }
    }
    eprintln!(
        "tab {tab}: {} server frames painted, all the committed render; {steered} steered",
        painted.len()
    );
    assert!(
        steered >= 60,
        "tab {tab} shows the change: {steered} steered frames"
    );
}

/// The watch-only tab `tv` predicts nothing, is told no change and pushed
/// nothing, yet plays the steered timeline.
pub async fn watch_only_told_nothing(browser: &Browser, tv: usize) {
    browser.focus(tv).await;
    let ptv = browser.js("return window.donutViewer.prediction()").await;
    assert_eq!(num(&ptv, "predicted"), 0, "a watch-only tab: {ptv}");
    assert_eq!(num(&ptv, "keyframes"), 0, "a watch-only tab: {ptv}");
    assert_eq!(num(&ptv, "pushes"), 0, "a watch-only tab: {ptv}");
    let stv = browser.viewer_stats(tv).await;
    assert!(num(&stv, "timeline") >= 1, "it plays the change: {stv}");
}
