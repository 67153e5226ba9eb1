// The page shim: loads the viewer wasm of the build `support.js` chose,
// asks before contributing (first visit), starts the Web Worker within its
// CPU budget, wires the contribute switch, the pause button and the
// `?steer=0` option, and forwards the page's lifecycle. No protocol or
// rendering logic lives here.
//
// A classic script, loaded by `support.js` after the viewer's glue and only
// where a wasm build can run; ES2017 at most (no modules, no `import`, no
// `catch {}`, no `??` or `?.`), which every engine with WebAssembly parses
// (es-check in CI). The glue (wasm-bindgen `--target no-modules`) defines the
// global `wasm_bindgen`.
const KEY = 'donut.contribute';
const RELAY_KEY = 'donut.relay';
const params = new URLSearchParams(location.search);

// The operator's choices (`/api/page`: `--contribute-default` and
// `--contribute-budget`), fetched at once, in parallel with the wasm. If it
// cannot be read the page asks, with the default budget.
const pageConfig = fetchPageConfig();

async function fetchPageConfig() {
  const fallback = { contribute: 'ask', budget: 25 };
  try {
    const r = await fetch('/api/page', { cache: 'no-store' });
    if (!r.ok) return fallback;
    const c = await r.json();
    return {
      contribute: ['ask', 'on', 'off'].indexOf(c.contribute) >= 0 ? c.contribute : 'ask',
      budget: c.budget >= 1 && c.budget <= 100 ? Number(c.budget) : fallback.budget,
      inputCommitMs: typeof c.inputCommitMs === 'number' && c.inputCommitMs >= 0 && c.inputCommitMs <= 60000 ? c.inputCommitMs : null,
    };
  } catch (e) {
    return fallback;
  }
}

// `?contribute=0|1` decides for this page load; otherwise the visitor's
// last answer or switch flip; otherwise the operator's default, where
// `'ask'` means: ask before any worker starts.
function initialChoice(operatorDefault) {
  if (params.has('contribute')) return params.get('contribute') !== '0';
  let stored = null;
  try { stored = localStorage.getItem(KEY); } catch (e) { /* private mode */ }
  if (stored === '1' || stored === '0') return stored === '1';
  if (operatorDefault === 'on' || operatorDefault === 'off') return operatorDefault === 'on';
  return 'ask';
}

function rememberChoice(on) {
  try { localStorage.setItem(KEY, on ? '1' : '0'); } catch (e) { /* private mode */ }
}

// The first-visit question, with the budget's figures; `answer(bool)` once
// the visitor picks a button.
function askToContribute(budget, answer) {
  const box = document.getElementById('consent');
  box.querySelector('[data-budget]').textContent = `${budget}%`;
  box.querySelector('[data-battery-budget]').textContent = `${batteryBudget(budget)}%`;
  const buttons = box.querySelectorAll('button[data-consent]');
  for (let i = 0; i < buttons.length; i++) {
    const button = buttons[i];
    button.addEventListener('click', () => answer(button.getAttribute('data-consent') === 'yes'));
  }
  box.hidden = false;
}

function closeQuestion() {
  document.getElementById('consent').hidden = true;
}

// Percent of one core while the battery discharges: half the budget.
function batteryBudget(budget) {
  return Math.max(1, Math.round(budget / 2));
}

// Calls `onChange(discharging)` now and whenever charging starts or stops,
// where the browser says (`navigator.getBattery`, Chromium only).
async function watchBattery(onChange) {
  if (typeof navigator.getBattery !== 'function') return;
  try {
    const battery = await navigator.getBattery();
    const report = () => onChange(!battery.charging);
    battery.addEventListener('chargingchange', report);
    report();
  } catch (e) { /* no battery information */ }
}

// The pause button, and `prefers-reduced-motion`: such a page starts
// paused on a still frame (and follows the setting if it changes).
function wireMotion(viewer) {
  const button = document.getElementById('pause');
  const setPaused = (paused) => {
    viewer.setPaused(paused);
    button.setAttribute('aria-pressed', paused ? 'true' : 'false');
  };
  const reduce = matchMedia('(prefers-reduced-motion: reduce)');
  setPaused(reduce.matches);
  const follow = () => setPaused(reduce.matches);
  // MediaQueryList is an EventTarget only since Chrome 45 / Safari 14.
  if (typeof reduce.addEventListener === 'function') reduce.addEventListener('change', follow);
  else if (typeof reduce.addListener === 'function') reduce.addListener(follow);
  button.addEventListener('click', () => setPaused(button.getAttribute('aria-pressed') !== 'true'));
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
  wireMotion(viewer);
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
    try { localStorage.setItem(RELAY_KEY, relay.checked ? '1' : '0'); } catch (e) { /* private mode */ }
    viewer.setRelaying(relay.checked);
  });
  viewer.setRelaying(relay.checked);

  let worker = null;
  let suspended = false;
  const toggle = document.getElementById('contribute');
  const config = await pageConfig;
  // The server's commit throttle, which the steering page predicts with.
  if (config.inputCommitMs != null) viewer.setInputCommitMs(config.inputCommitMs);
  // The share of one core the worker may use (lower on a discharging battery).
  let share = config.budget / 100;
  watchBattery((discharging) => {
    share = (discharging ? batteryBudget(config.budget) : config.budget) / 100;
    if (worker) worker.postMessage({ budget: share });
  });
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
    if (worker) worker.postMessage({ contribute: on, budget: share });
  }

  const choice = initialChoice(config.contribute);
  toggle.checked = choice === true;
  toggle.addEventListener('change', () => {
    closeQuestion();
    rememberChoice(toggle.checked);
    setContributing(toggle.checked);
  });
  if (choice === 'ask') {
    askToContribute(config.budget, (yes) => {
      closeQuestion();
      rememberChoice(yes);
      toggle.checked = yes;
      setContributing(yes);
    });
  }
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
