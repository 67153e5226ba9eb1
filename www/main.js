// The page shim: loads the viewer wasm, starts the Web Worker, wires the
// contribute switch. No protocol or rendering logic lives here.
import initViewer, { DonutViewer } from './pkg/viewer/donut_viewer.js';

const KEY = 'donut.contribute';
const params = new URLSearchParams(location.search);

// `?contribute=0|1` decides for this page load; otherwise the last choice
// made with the switch (default: contribute).
function initialChoice() {
  if (params.has('contribute')) return params.get('contribute') !== '0';
  try { return localStorage.getItem(KEY) !== '0'; } catch { return true; }
}

await initViewer();
const viewer = new DonutViewer(document.getElementById('donut'), document.getElementById('chart'));
window.donutViewer = viewer;

let worker = null;
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

const toggle = document.getElementById('contribute');
toggle.checked = initialChoice();
toggle.addEventListener('change', () => {
  try { localStorage.setItem(KEY, toggle.checked ? '1' : '0'); } catch { /* private mode */ }
  setContributing(toggle.checked);
});
setContributing(toggle.checked);
