// The page shim: loads the viewer wasm of the build `support.js` chose,
// starts the Web Worker, wires the contribute switch and the `?steer=0`
// option, and forwards the page's lifecycle. No protocol or rendering logic lives here.
//
// A classic script, loaded by `support.js` after the viewer's glue and only
// where a wasm build can run; ES2017 at most (no modules, no `import`, no
// `catch {}`, no `??` or `?.`), which every engine with WebAssembly parses
// (es-check in CI). The glue (wasm-bindgen `--target no-modules`) defines the
// global `wasm_bindgen`.
const KEY = 'donut.contribute';
const RELAY_KEY = 'donut.relay';
const params = new URLSearchParams(location.search);

// `?contribute=0|1` decides for this page load; otherwise the last choice
// made with the switch (default: contribute).
function initialChoice() {
  if (params.has('contribute')) return params.get('contribute') !== '0';
  try { return localStorage.getItem(KEY) !== '0'; } catch (e) { return true; }
}

// `?p2p=0|1` decides for this page load; otherwise the last choice made
// with the relay switch (default: share).
function relayChoice() {
  if (params.has('p2p')) return params.get('p2p') !== '0';
  try { return localStorage.getItem(RELAY_KEY) !== '0'; } catch (e) { return true; }
}

// An engine without WebAssembly, or whose start failed, would leave the
// page blank: say so instead (`support.js` writes the message).
function showUnsupported(missing, error) {
  DonutSupport.showUnsupported(missing, error);
}

const build = DonutSupport.build;
DonutSupport.whenReady(() => {
  start().catch((e) => {
    console.error('donut viewer failed to start', e);
    showUnsupported([`the ${build.name} build`], String(e && e.message || e));
  });
});

async function start() {
  await wasm_bindgen({ module_or_path: `${build.viewer}/donut_viewer_bg.wasm` });
  const { DonutViewer } = wasm_bindgen;
  const viewer = new DonutViewer(document.getElementById('donut'), document.getElementById('chart'));
  window.donutViewer = viewer;
  // `?steer=0`: a screen that only watches (a TV in a lobby) ignores drags
  // and arrow keys and never sends input.
  if (params.get('steer') === '0') {
    viewer.setSteering(false);
    document.querySelector('.steer-hint').hidden = true;
  }

  // Relaying to other viewers (WebRTC): the user's choice, see the switch's
  // title for what it costs and shows.
  const relay = document.getElementById('relay');
  relay.checked = relayChoice();
  relay.addEventListener('change', () => {
    try { localStorage.setItem(RELAY_KEY, relay.checked ? '1' : '0'); } catch (e) { /* private mode */ }
    viewer.setRelaying(relay.checked);
  });
  viewer.setRelaying(relay.checked);

  let worker = null;
  let suspended = false;
  const toggle = document.getElementById('contribute');
  function setContributing(on) {
    viewer.setContributing(on);
    if (on && !worker) {
      // A classic worker (module workers need Firefox 114): worker.js
      // loads the same build's worker glue with importScripts.
      worker = new Worker(`worker.js?build=${build.name}`);
      worker.onmessage = (e) => {
        window.donutWorkerStats = e.data;
        viewer.workerStats(e.data);
      };
      worker.onerror = (e) => {
        console.error('donut worker failed to start', e.message);
        viewer.workerStats({ state: 'failed' });
      };
    }
    if (worker) worker.postMessage({ contribute: on });
  }

  toggle.checked = initialChoice();
  toggle.addEventListener('change', () => {
    try { localStorage.setItem(KEY, toggle.checked ? '1' : '0'); } catch (e) { /* private mode */ }
    setContributing(toggle.checked);
  });
  setContributing(toggle.checked);

  // Back/forward cache and frozen tabs: both sockets hang up while the page
  // cannot run, and come back with it. The viewer is told; the Web Worker is
  // ended, because a frozen page's workers freeze with it before they can
  // handle a message (measured in Chromium), socket open and tasks in hand.
  // Ending it closes its socket at once, so the server hands its tasks on;
  // a fresh one starts when the page is back.
  function lifecycle(hidden) {
    if (hidden === suspended) return;
    suspended = hidden;
    if (hidden) {
      viewer.suspend();
      if (worker) {
        worker.terminate();
        worker = null;
        window.donutWorkerStats = { state: 'suspended' };
        viewer.workerStats(window.donutWorkerStats);
      }
    } else {
      viewer.resume();
      setContributing(toggle.checked);
    }
  }
  addEventListener('pagehide', () => lifecycle(true));
  document.addEventListener('freeze', () => lifecycle(true));
  addEventListener('pageshow', () => lifecycle(false));
  document.addEventListener('resume', () => lifecycle(false));
}
