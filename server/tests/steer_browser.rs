//! The steering tab sees its own push at once (issue 25), in real headless
//! Chromium against the real `donut` binary.
//!
//! Tab A drags; before the server's frames of the change arrive, it paints
//! the frames it predicts with the shared renderer and the shared timeline
//! rules, then the server's. An independent observer (a raw WebSocket
//! viewer that pushes nothing: one `Input {0, 0}` makes it a steerer, so
//! the server tells it every version's change frame and scene) gives the
//! committed timeline, and every frame tabs A and B painted from the
//! server's stream is exactly the native render of it at its (frame,
//! version); tab B shows the change; a watch-only tab (`?steer=0`) never
//! predicts and is sent no `Keyframe`. Mispredictions are counted and
//! reported (a figure, not an assertion: the throttle may fold pushes).

mod chromium;
mod firefox;
mod pages;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use donut_shared::digest::fnv1a64;
use donut_shared::scene::Scene;
use donut_shared::steer::scene_after;
use donut_shared::wire::{Input, ToViewer};
use donut_shared::{FRAME_LEN, render_pose};
use fantoccini::Locator;
use futures_util::{SinkExt, StreamExt};
use pages::*;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// Version → (change frame, scene there), as the server told the observer.
type Keys = Arc<Mutex<BTreeMap<u32, (u64, Scene)>>>;

/// The committed scene of `frame` in `version`, if every version's change
/// up to it is known (version 0 is the idle donut).
fn committed(keys: &BTreeMap<u32, (u64, Scene)>, frame: u64, version: u32) -> Option<Scene> {
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

fn digest_of(scene: Scene) -> String {
    let mut text = [0u8; FRAME_LEN];
    render_pose(scene.pose, &mut text);
    format!("{:016x}", fnv1a64(&text))
}

/// `[frame, version, digest, wallMs]` entries of a probe's log.
fn entries(log: &Value) -> Vec<(u64, u32, String, f64)> {
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

#[test]
fn the_steering_tab_predicts_its_push_and_every_screen_converges() {
    serial(async {
        let server = Server::start(&[]);
        let _native = server.native_worker();

        // The observer: told every change once it pushed (a zero push,
        // which changes nothing).
        let url = format!("ws://127.0.0.1:{}/ws/viewer", server.port);
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("the observer connects");
        ws.send(Message::binary(Input { a: 0, b: 0 }.to_bytes().to_vec()))
            .await
            .expect("the zero push is sent");
        let keys: Keys = Arc::default();
        let told = Arc::clone(&keys);
        let observer = tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Binary(b) = msg
                    && let Ok(ToViewer::Keyframe(k)) = ToViewer::decode(&b)
                {
                    told.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(k.timeline, (k.frame, k.scene));
                }
            }
        });

        let mut browser = Browser::launch(1.0).await;
        let a = browser.open(&server.url("/?contribute=0")).await;
        let b = browser.open(&server.url("/?contribute=0")).await;
        let tv = browser.open(&server.url("/?contribute=0&steer=0")).await;
        for tab in [a, b, tv] {
            let f = eventually("a frame", async || browser.current_frame(tab).await).await;
            browser.wait_playing_past(tab, f, 30).await;
        }

        // Tab A: three drags, a second and a half apart.
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
        // Every tab on the last version, and two more seconds of it.
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

        // Tab A predicted, before the server's frames of the change.
        browser.focus(a).await;
        let pa = browser.js("return window.donutViewer.prediction()").await;
        let painted_a = entries(&browser.js("return window.donutViewer.painted()").await);
        eprintln!(
            "tab A prediction: {}",
            serde_json::json!({
                "keyframes": pa["keyframes"], "pushes": pa["pushes"],
                "predicted": pa["predicted"], "confirmed": pa["confirmed"],
                "mispredicted": pa["mispredicted"], "unsettled": pa["unsettled"],
                "lead": pa["lead"],
            })
        );
        assert!(num(&pa, "pushes") >= 3, "tab A's pushes predicted: {pa}");
        // `/api/page` told the page the server's commit throttle (100 ms,
        // the default), which it places folded pushes with.
        assert!(
            num(&pa, "throttle") >= 1,
            "tab A knows the commit throttle: {pa}"
        );
        assert!(num(&pa, "keyframes") >= 1, "tab A told the changes: {pa}");
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
            num(&pa, "confirmed") + num(&pa, "mispredicted") > 0,
            "predicted frames compared with the server's: {pa}"
        );
        // Every server frame painted, in A and B, is the native render of
        // the committed timeline at its (frame, version); B shows the change.
        let keys = keys.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert!(
            (1..=version as u32).all(|v| keys.contains_key(&v)),
            "the observer was told every change up to {version}: {:?}",
            keys.keys().collect::<Vec<_>>()
        );
        let painted_b = entries(&browser_painted(&browser, b).await);
        // Tab A painted its push before the server's frames of it: a
        // predicted frame that differs from the version it held, drawn
        // before tab A painted any server frame of a later version that
        // differs from that version.
        let mut early = 0usize;
        for (frame, held, digest, wall) in &predicted {
            let Some(now) = committed(&keys, *frame, *held) else {
                continue;
            };
            if *digest == digest_of(now) {
                continue;
            }
            let server_first = painted_a
                .iter()
                .filter(|e| {
                    e.1 > *held && committed(&keys, e.0, *held).is_some_and(|s| e.2 != digest_of(s))
                })
                .map(|e| e.3)
                .fold(f64::INFINITY, f64::min);
            if *wall < server_first {
                early += 1;
            }
        }
        eprintln!(
            "tab A: {early} predicted frames showed a change before the server's frames of it"
        );
        assert!(
            early >= 1,
            "tab A painted no change before the server's frames of it"
        );
        // Input to tab A's own screen (a figure): from the first pointer
        // event of each drag to the first frame tab A drew (predicted or
        // the server's) that differs from what it would have drawn without
        // the push, the version it showed just before.
        browser.focus(a).await;
        let inputs = browser.js("return window.donutViewer.inputs()").await;
        let mut screen: Vec<(u64, u32, String, f64)> =
            painted_a.iter().chain(predicted.iter()).cloned().collect();
        screen.sort_by(|x, y| x.3.total_cmp(&y.3));
        let mut last_event = f64::NEG_INFINITY;
        let mut own = Vec::new();
        for i in inputs.as_array().expect("inputs() is an array") {
            let event = i[0].as_f64().expect("an event time");
            if event - last_event < 500.0 {
                last_event = event;
                continue;
            }
            last_event = event;
            let before = screen.iter().rev().find(|e| e.3 < event).map_or(0, |e| e.1);
            let shown = screen.iter().find(|e| {
                e.3 >= event && committed(&keys, e.0, before).is_some_and(|s| e.2 != digest_of(s))
            });
            if let Some(e) = shown {
                own.push(e.3 - event);
            }
        }
        eprintln!("tab A input -> own screen (ms, per drag): {own:?}");
        for (tab, painted) in [("A", &painted_a), ("B", &painted_b)] {
            let mut steered = 0usize;
            for (frame, v, digest, _) in painted {
                let scene = committed(&keys, *frame, *v).expect("a known version");
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

        // The watch-only tab predicts nothing and is told nothing.
        browser.focus(tv).await;
        let ptv = browser.js("return window.donutViewer.prediction()").await;
        assert_eq!(num(&ptv, "predicted"), 0, "a watch-only tab: {ptv}");
        assert_eq!(num(&ptv, "keyframes"), 0, "a watch-only tab: {ptv}");
        assert_eq!(num(&ptv, "pushes"), 0, "a watch-only tab: {ptv}");
        let stv = browser.viewer_stats(tv).await;
        assert!(num(&stv, "timeline") >= 1, "it plays the change: {stv}");

        let stats = server.stats();
        assert_eq!(num(&stats, "protocol_errors"), 0, "{stats}");
        assert_eq!(num(&stats, "batches_rejected"), 0, "{stats}");
        observer.abort();
        browser.quit().await;
    });
}

async fn browser_painted(browser: &Browser, tab: usize) -> Value {
    browser.focus(tab).await;
    browser.js("return window.donutViewer.painted()").await
}
