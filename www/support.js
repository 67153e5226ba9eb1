// The page's bootstrap: a classic script in ES5, so that it parses in every
// engine a TV or an old phone might run (Chromium 38 up, checked in CI with
// es-check es5). It must never be what leaves a page blank.
//
// Before any wasm is fetched it asks the engine which of the WebAssembly
// features our builds are compiled with it lacks, and picks a build:
//
// - `simd` (www/pkg/viewer, www/pkg/worker): rustc's wasm32 defaults since
//   1.87 plus simd128 from .cargo/config.toml. Chrome 96, Firefox 89,
//   Safari 16.4.
// - `compat` (www/pkg/viewer-compat, www/pkg/worker-compat): the same
//   crates lowered to WebAssembly 1.0 (MVP) by build.sh, for engines that
//   have WebAssembly but not all of the above (Chromium 69-95 TVs, Safari
//   15). Byte-identical in what it renders and paints (tested).
// - none: no WebAssembly at all; the page says so, names the browsers that
//   work, and loads nothing else.
//
// Each probe is the smallest module using one feature, and
// `WebAssembly.validate` says whether the engine accepts it. With a build
// chosen, this script starts the wasm download (preload) and loads that
// build's wasm-bindgen glue (`--target no-modules`, a classic script) and
// then `main.js`, the page shim, which may use ES2017: every engine with
// WebAssembly parses ES2017. `?build=compat` forces the compatibility build
// (tests and benchmarks).
(function () {
  'use strict';

  var HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  // A type section with one function type, `params -> results`.
  function type(params, results) {
    return [0x01, 4 + params.length + results.length, 0x01, 0x60, params.length]
      .concat(params, [results.length], results);
  }
  // A function section declaring one function of type 0.
  var FUNC = [0x03, 0x02, 0x01, 0x00];
  // A code section with that function's body (no locals), `end` included.
  function code(body) {
    return [0x0a, body.length + 3, 0x01, body.length + 1, 0x00].concat(body);
  }
  function module() {
    var bytes = HEADER.slice();
    for (var i = 0; i < arguments.length; i++) bytes = bytes.concat(arguments[i]);
    return new Uint8Array(bytes);
  }

  var I32 = 0x7f, V128 = 0x7b, EXTERNREF = 0x6f, END = 0x0b;
  var I32_CONST_0 = [0x41, 0x00];
  var MEMORY_1 = [0x05, 0x03, 0x01, 0x00, 0x01];

  // WebAssembly 1.0 itself: () -> i32 { 0 }.
  var MVP = module(type([], [I32]), FUNC, code(I32_CONST_0.concat([END])));

  // [name shown to the user, probe module], for the features of the `simd`
  // build beyond WebAssembly 1.0.
  var PROBES = [
    // () -> v128 { i8x16.splat(0) }
    ['SIMD', module(type([], [V128]), FUNC, code(I32_CONST_0.concat([0xfd, 0x0f, END])))],
    // () -> externref { ref.null extern }
    ['reference types', module(type([], [EXTERNREF]), FUNC, code([0xd0, EXTERNREF, END]))],
    // () -> (i32, i32) { 0, 0 }
    ['multi-value', module(type([], [I32, I32]), FUNC, code(I32_CONST_0.concat(I32_CONST_0, [END])))],
    // (memory 1) () -> () { memory.fill(0, 0, 0) }
    ['bulk memory', module(type([], []), FUNC, MEMORY_1,
      code(I32_CONST_0.concat(I32_CONST_0, I32_CONST_0, [0xfc, 0x0b, 0x00, END])))],
    // () -> i32 { i32.trunc_sat_f32_s(0.0) }
    ['non-trapping float-to-int', module(type([], [I32]), FUNC,
      code([0x43, 0x00, 0x00, 0x00, 0x00, 0xfc, 0x00, END]))],
    // () -> i32 { i32.extend8_s(0) }
    ['sign extension', module(type([], [I32]), FUNC, code(I32_CONST_0.concat([0xc0, END])))]
  ];

  // What the page needs (the compatibility build's floor), for the message
  // and the README.
  var BROWSERS = 'Chrome or Edge 69+ (smart TVs from 2020 on), Firefox 78+, Safari 15+ (iOS 15+)';

  var BUILDS = {
    simd: { name: 'simd', viewer: 'pkg/viewer', worker: 'pkg/worker' },
    compat: { name: 'compat', viewer: 'pkg/viewer-compat', worker: 'pkg/worker-compat' }
  };

  function accepts(bytes) {
    try {
      return WebAssembly.validate(bytes) === true;
    } catch (e) {
      return false;
    }
  }

  function hasWasm() {
    return typeof WebAssembly === 'object' && WebAssembly !== null
      && typeof WebAssembly.validate === 'function'
      && typeof WebAssembly.instantiate === 'function'
      && accepts(MVP);
  }

  // The features of the `simd` build this engine lacks: empty when
  // everything is there, ['WebAssembly'] when there is no WebAssembly at
  // all (or it is switched off).
  function missingWasmFeatures() {
    if (!hasWasm()) return ['WebAssembly'];
    var missing = [];
    for (var i = 0; i < PROBES.length; i++) {
      if (!accepts(PROBES[i][1])) missing.push(PROBES[i][0]);
    }
    return missing;
  }

  // The build this engine runs: `{name, viewer, worker, missing}` (the
  // directories of its two wasm packages, and the `simd` build's features
  // it lacks), or null when it can run neither.
  function chooseBuild(search) {
    var missing = missingWasmFeatures();
    if (missing.length === 1 && missing[0] === 'WebAssembly') return null;
    var forced = /(^|[?&])build=compat(&|$)/.test(search || '');
    var build = missing.length === 0 && !forced ? BUILDS.simd : BUILDS.compat;
    return { name: build.name, viewer: build.viewer, worker: build.worker, missing: missing };
  }

  // Says on the page that this browser cannot run the donut: what it lacks
  // (`missing`: feature names, or ['WebAssembly']) or, with `error`, what
  // failed while starting; and which browsers work. Safe to call before
  // the body exists (it waits for it).
  function showUnsupported(missing, error) {
    whenReady(function () {
      var box = document.getElementById('unsupported');
      if (!box) return;
      box.setAttribute('data-missing', missing.join(', '));
      var what = box.querySelector('[data-missing]');
      if (error) {
        what.parentNode.textContent = 'Starting it failed: ' + error
          + '. This browser may lack something the page needs.';
      } else if (missing[0] === 'WebAssembly') {
        what.textContent = 'WebAssembly (it is missing or switched off)';
      } else {
        what.textContent = 'the WebAssembly features ' + missing.join(', ');
      }
      box.querySelector('[data-browsers]').textContent = BROWSERS;
      box.hidden = false;
      box.removeAttribute('hidden');
      var state = document.querySelector('[data-stat=connection]');
      if (state) {
        state.textContent = 'this browser cannot run the donut';
        state.setAttribute('data-state', 'unsupported');
      }
      var ids = ['contribute', 'relay', 'pause'];
      for (var i = 0; i < ids.length; i++) {
        var input = document.getElementById(ids[i]);
        if (input) input.disabled = true;
      }
    });
  }

  // Runs `f` once the document is parsed.
  function whenReady(f) {
    if (document.readyState === 'loading') {
      document.addEventListener('DOMContentLoaded', function () { f(); });
    } else {
      f();
    }
  }

  // Loads classic scripts one after the other (dynamically inserted
  // scripts with `async = false` run in insertion order).
  function loadScripts(srcs) {
    var head = document.getElementsByTagName('head')[0];
    for (var i = 0; i < srcs.length; i++) {
      var s = document.createElement('script');
      s.src = srcs[i];
      s.async = false;
      s.onerror = failedToLoad(srcs[i]);
      head.appendChild(s);
    }
  }

  function failedToLoad(src) {
    return function () { showUnsupported(['loading ' + src], 'could not load ' + src); };
  }

  // Starts the download of the chosen viewer's wasm now, in parallel with
  // its glue and main.js (start-up, issue 6). `crossorigin` matches the
  // glue's same-origin fetch, so the preload is reused, not fetched twice.
  function preload(href) {
    var link = document.createElement('link');
    link.rel = 'preload';
    link.href = href;
    link.setAttribute('as', 'fetch');
    link.type = 'application/wasm';
    link.crossOrigin = 'anonymous';
    document.getElementsByTagName('head')[0].appendChild(link);
  }

  var build = chooseBuild(window.location.search);
  window.DonutSupport = {
    PROBES: PROBES,
    BROWSERS: BROWSERS,
    BUILDS: BUILDS,
    build: build,
    missingWasmFeatures: missingWasmFeatures,
    chooseBuild: chooseBuild,
    showUnsupported: showUnsupported,
    whenReady: whenReady
  };
  if (build === null) {
    showUnsupported(['WebAssembly']);
  } else {
    preload(build.viewer + '/donut_viewer_bg.wasm');
    loadScripts([build.viewer + '/donut_viewer.js', 'main.js']);
  }
})();
