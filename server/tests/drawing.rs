//! The donut canvas paints, at every device pixel ratio, exactly the pixels
//! that drawing each glyph with `fillText` would (issue 26: drawing that a
//! TV can afford, "crisp at every pixel ratio as today").
//!
//! The viewer draws only the cells that change, each filled from a
//! prepared glyph pattern where the context is low-latency (Chromium), else
//! copied from an atlas (Firefox) (viewer/src/screen.rs): both are checked. These tests pause a real
//! page on a frame, read its canvas back, and draw the same frame in the
//! same page from scratch, one `fillText` per glyph at the place the
//! viewer's reported layout gives it (the font, colours and background
//! are restated here from the viewer's docs, so a change there shows up).
//! The middle of every cell must be pixel-identical, and the backing
//! store must be the element's size × the ratio (no scaling, so nothing is
//! blurred). Chromium at ratios 1, 1.5 and 2; Firefox at 1 and 1.5.
//!
//! Real browsers, the real `donut` binary; they fail, never skip, when a
//! browser or the wasm packages are missing (`./build.sh test`).

mod chromium;
mod firefox;
mod pages;

use donut_shared::{FRAME_LEN, HEIGHT, WIDTH};
use pages::*;
use serde_json::{Value, json};

/// Pauses the page on its frame, then compares the canvas with the frame
/// drawn afresh with `fillText`, in the middle 60% of every cell (where
/// neither a neighbour's antialiased edge nor a cell's clipping reaches).
const COMPARE: &str = r#"
const done = arguments[0];
const v = window.donutViewer;
v.setPaused(true);
requestAnimationFrame(() => requestAnimationFrame(() => {
  const c = document.getElementById('donut');
  const l = v.layout(), text = v.currentText(), frame = v.currentFrame();
  const dpr = l.dpr, w = c.width, h = c.height;
  const got = c.getContext('2d').getImageData(0, 0, w, h).data;
  const ref = document.createElement('canvas');
  ref.width = w; ref.height = h;
  const r = ref.getContext('2d');
  r.fillStyle = '#0b0d12';
  r.fillRect(0, 0, w, h);
  const ox = l.x * dpr, oy = l.y * dpr, cw = l.cellWidth * dpr, ch = l.cellHeight * dpr;
  r.font = Math.round(l.fontPx * dpr) + 'px "DejaVu Sans Mono", ui-monospace, Menlo, Consolas, monospace';
  r.textAlign = 'left';
  r.textBaseline = 'middle';
  const alphabet = '.,-~:;=!*#$@';
  let lit = 0;
  for (let row = 0; row < l.rows; row++) {
    for (let col = 0; col < l.cols; col++) {
      const code = alphabet.indexOf(text[row * (l.cols + 1) + col]) + 1;
      if (code === 0) continue;
      lit++;
      r.fillStyle = 'hsl(38, 95%, ' + Math.round(38 + 52 * (code - 1) / 11) + '%)';
      r.fillText(alphabet[code - 1], ox + col * cw, oy + (row + 0.5) * ch);
    }
  }
  const want = r.getImageData(0, 0, w, h).data;
  let compared = 0, differ = 0, worst = 0, inked = 0;
  for (let row = 0; row < l.rows; row++) {
    for (let col = 0; col < l.cols; col++) {
      const x0 = Math.round(ox + (col + 0.2) * cw), x1 = Math.round(ox + (col + 0.8) * cw);
      const y0 = Math.round(oy + (row + 0.2) * ch), y1 = Math.round(oy + (row + 0.8) * ch);
      for (let y = y0; y < y1; y++) {
        for (let x = x0; x < x1; x++) {
          const i = (y * w + x) * 4;
          let d = 0;
          for (let k = 0; k < 3; k++) d = Math.max(d, Math.abs(got[i + k] - want[i + k]));
          compared++;
          if (d > 0) differ++;
          if (d > worst) worst = d;
          if (got[i] + got[i + 1] > 120) inked++;
        }
      }
    }
  }
  v.setPaused(false);
  const attrs = c.getContext('2d').getContextAttributes();
  done({lowLatency: !!(attrs && attrs.desynchronized && attrs.alpha === false), frame, dpr, w, h, cssW: c.clientWidth, cssH: c.clientHeight, lit, compared, differ, worst, inked, layout: l});
}));
"#;

/// Opens a watch-only page, lets it play a second, and compares (see
/// [`COMPARE`]); returns the comparison's figures.
async fn compare(browser: &mut Browser, server: &Server) -> Value {
    let tab = browser.open(&server.url("/?contribute=0")).await;
    let first = eventually("a frame on screen", async || {
        browser.current_frame(tab).await
    })
    .await;
    browser.wait_playing_past(tab, first, 60).await;
    browser
        .client
        .execute_async(COMPARE, Vec::new())
        .await
        .expect("the comparison script")
}

/// Asserts the figures of [`compare`] at ratio `dpr` in `what`, whose
/// screen draws from glyph patterns if `patterns`, else from the atlas
/// (the viewer picks patterns where the context is low-latency).
fn assert_crisp(r: &Value, dpr: f64, what: &str, patterns: bool) {
    eprintln!("{what} at ratio {dpr}: {r}");
    assert_eq!(r["lowLatency"].as_bool(), Some(patterns), "{what}: {r}");
    assert_eq!(r["dpr"].as_f64(), Some(dpr), "{what}: {r}");
    // The backing store is the element's size × the ratio: one canvas
    // pixel a device pixel, nothing scaled.
    for (dev, css) in [("w", "cssW"), ("h", "cssH")] {
        let want = (r[css].as_f64().unwrap_or(0.0) * dpr).round();
        assert_eq!(r[dev].as_f64(), Some(want), "{what}: backing store {r}");
    }
    let frame = num(r, "frame");
    let mut text = [0u8; FRAME_LEN];
    donut_shared::render(frame, &mut text);
    let glyphs = (0..HEIGHT)
        .flat_map(|row| text[row * WIDTH..row * WIDTH + WIDTH - 1].iter())
        .filter(|b| **b != b' ')
        .count() as u64;
    assert_eq!(
        num(r, "lit"),
        glyphs,
        "{what}: the frame reported is not frame {frame}"
    );
    assert!(
        glyphs > 200,
        "{what}: frame {frame} has only {glyphs} glyphs"
    );
    let (compared, differ) = (num(r, "compared"), num(r, "differ"));
    assert!(compared > 20_000, "{what}: too few pixels compared: {r}");
    assert!(
        num(r, "inked") > compared / 20,
        "{what}: the canvas is (nearly) blank: {r}"
    );
    // Pixel for pixel what fillText paints.
    assert_eq!(
        differ, 0,
        "{what}: {differ} of {compared} pixels differ from fillText: {r}"
    );
}

#[test]
fn the_canvas_paints_what_filltext_paints_at_every_ratio_in_chromium() {
    serial(async {
        let server = Server::start(&[]);
        let _native = server.native_worker();
        for dpr in [1.0, 1.5, 2.0] {
            let mut browser = Browser::launch(dpr).await;
            let r = compare(&mut browser, &server).await;
            browser.quit().await;
            assert_crisp(&r, dpr, "Chromium", true);
        }
    });
}

#[test]
fn the_canvas_paints_what_filltext_paints_at_every_ratio_in_firefox() {
    serial(async {
        let server = Server::start(&[]);
        let _native = server.native_worker();
        for dpr in [1.0, 1.5] {
            let mut browser =
                Browser::firefox(&[("layout.css.devPixelsPerPx", json!(dpr.to_string()))]).await;
            let r = compare(&mut browser, &server).await;
            browser.quit().await;
            assert_crisp(&r, dpr, "Firefox", false);
        }
    });
}
