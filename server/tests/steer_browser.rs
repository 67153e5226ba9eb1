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
mod steering;

use std::sync::Arc;

use pages::*;
use serde_json::Value;
use steering::*;

#[test]
fn the_steering_tab_predicts_its_push_and_every_screen_converges() {
    serial(async {
        let server = Server::start(&[]);
        let _native = server.native_worker();

        // The observer: told every change once it pushed (a zero push,
        // which changes nothing).
        let keys: Keys = Arc::default();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.port));
        let observer = observer(addr, Arc::clone(&keys)).await;

        let mut browser = Browser::launch(1.0).await;
        let a = browser.open(&server.url("/?contribute=0")).await;
        let b = browser.open(&server.url("/?contribute=0")).await;
        let tv = browser.open(&server.url("/?contribute=0&steer=0")).await;
        wait_all_playing(&browser, &[a, b, tv]).await;
        three_drags(&browser, a).await;
        // Every tab on the last version, and two more seconds of it.
        let version = settled_version(&browser, a, b).await;

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
        // Tab A painted its push before the server's frames of it.
        predicted_before_the_server(&keys, &predicted, &painted_a);
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
            every_frame_committed_and_steered(&keys, tab, painted);
        }

        // The watch-only tab predicts nothing and is told nothing.
        watch_only_told_nothing(&browser, tv).await;

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
