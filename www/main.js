// The page shim: checks the engine can run our wasm, loads the viewer wasm,
// starts the Web Worker, wires the contribute switch and the `?steer=0`
// option, and forwards the page's lifecycle. No protocol or rendering logic lives here.
import { missingWasmFeatures, BROWSERS } from './support.js';

const KEY = 'donut.contribute';
const RELAY_KEY = 'donut.relay';
const params = new URLSearchParams(location.search);

// `?contribute=0|1` decides for this page load; otherwise the last choice
// made with the switch (default: contribute).
function initialChoice() {
  if (params.has('contribute')) return params.get('contribute') !== '0';
  try { return localStorage.getItem(KEY) !== '0'; } catch { return true; }
}

// `?p2p=0|1` decides for this page load; otherwise the last choice made
// with the relay switch (default: share).
function relayChoice() {
  if (params.has('p2p')) return params.get('p2p') !== '0';
  try { return localStorage.getItem(RELAY_KEY) !== '0'; } catch { return true; }
}

// An engine without WebAssembly, or without a feature the wasm is compiled
// with, would fail to compile it with an opaque error: say so instead.
function showUnsupported(missing) {
  const box = document.getElementById('unsupported');
  box.dataset.missing = missing.join(', ');
  box.querySelector('[data-missing]').textContent = missing[0] === 'WebAssembly'
    ? 'WebAssembly (it is missing or switched off)'
    : `the WebAssembly features ${missing.join(', ')}`;
  box.querySelector('[data-browsers]').textContent = BROWSERS;
  box.hidden = false;
  const state = document.querySelector('[data-stat=connection]');
  state.textContent = 'this browser cannot run the donut';
  state.dataset.state = 'unsupported';
  document.getElementById('contribute').disabled = true;
  document.getElementById('relay').disabled = true;
}

const missing = missingWasmFeatures();
if (missing.length > 0) {
  showUnsupported(missing);
} else {
  await start();
}

async function start() {
  const { default: initViewer, DonutViewer } = await import('./pkg/viewer/donut_viewer.js');
  await initViewer();
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
  // An engine without WebRTC (WebKitGTK) cannot relay: no switch to offer,
  // and the viewer never joins the relay tree there.
  if (!viewer.relayAvailable()) relay.parentNode.hidden = true;
  relay.checked = relayChoice();
  relay.addEventListener('change', () => {
    try { localStorage.setItem(RELAY_KEY, relay.checked ? '1' : '0'); } catch { /* private mode */ }
    viewer.setRelaying(relay.checked);
  });
  viewer.setRelaying(relay.checked);

  let worker = null;
  let suspended = false;
  const toggle = document.getElementById('contribute');
  function setContributing(on) {
    viewer.setContributing(on);
    if (on && !worker) {
      worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
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
    try { localStorage.setItem(KEY, toggle.checked ? '1' : '0'); } catch { /* private mode */ }
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
