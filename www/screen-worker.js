// The screen worker (viewer/src/offscreen.rs): paints the donut canvas off
// the page's main thread where the engine can hand it over
// (`transferControlToOffscreen`). Loads the same viewer build as the page
// (`screen-worker.js?pkg=viewer|viewer-compat`); the painting is the
// viewer's own (`ScreenPainter`): this shim only passes messages.
//
// A classic worker script, ES5, like worker.js.
var m = /[?&]pkg=(viewer(-compat)?)(&|$)/.exec(self.location.search);
var pkg = 'pkg/' + (m ? m[1] : 'viewer');
var painter = null;
var queue = [];

function handle(data) {
  if (painter === null) {
    if (data && data.canvas) painter = new wasm_bindgen.ScreenPainter(data.canvas);
    return;
  }
  var reply = painter.message(data);
  if (reply !== undefined) self.postMessage(reply);
}

// Messages that arrive while the wasm is loading wait, in order.
self.onmessage = function (e) { queue.push(e.data); };

function failed(e) {
  console.error('donut screen worker failed to start', e);
}

try {
  importScripts(pkg + '/donut_viewer.js');
  wasm_bindgen({ module_or_path: pkg + '/donut_viewer_bg.wasm' }).then(function () {
    self.onmessage = function (e) { handle(e.data); };
    for (var i = 0; i < queue.length; i++) handle(queue[i]);
    queue = [];
  }).catch(failed);
} catch (e) {
  failed(e);
}
