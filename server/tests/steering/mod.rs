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
