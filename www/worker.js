// The Web Worker bootstrap: loads the worker wasm of the build the page
// chose (`worker.js?build=simd|compat`, see support.js), which connects to
// /ws/worker, renders what it is assigned within its CPU budget and posts
// its stats to the page.
//
// A classic worker script, ES5 (module workers need Firefox 114 and Chrome
// 80): the glue (wasm-bindgen `--target no-modules`) is loaded with
// importScripts and defines the global `wasm_bindgen`.
var pkg = /[?&]build=compat(&|$)/.test(self.location.search) ? 'pkg/worker-compat' : 'pkg/worker';

// Remember a switch flip or a budget that arrives while the wasm is still
// loading; the agent takes over `onmessage` once it exists.
var want = true;
var budget = 1;
self.onmessage = function (e) {
  var d = e.data || {};
  if ('contribute' in d) want = Boolean(d.contribute);
  if (typeof d.budget === 'number') budget = d.budget;
};

function failed(e) {
  console.error('donut worker failed to start', e);
  self.postMessage({ state: 'failed' });
}

try {
  importScripts(pkg + '/donut_worker.js');
  wasm_bindgen({ module_or_path: pkg + '/donut_worker_bg.wasm' }).then(function () {
    self.agent = new wasm_bindgen.WorkerAgent(want);
    self.agent.setBudget(budget);
  }).catch(failed);
} catch (e) {
  failed(e);
}
