// Feature detection, before any wasm is fetched: which of the WebAssembly
// features our builds are compiled with does this engine lack? (rustc's
// wasm32 defaults since 1.87, plus simd128 from .cargo/config.toml.)
//
// Each probe is the smallest module using one feature, and
// `WebAssembly.validate` says whether the engine accepts it. This decides
// only whether to load the wasm at all; the page then says which browsers
// are new enough (the version each feature first shipped in, the newest of
// them per engine: reference types in Chrome 96, SIMD in Firefox 89 and
// Safari 16.4).

const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
// A type section with one function type, `params -> results`.
const type = (params, results) =>
  [0x01, 4 + params.length + results.length, 0x01, 0x60,
   params.length, ...params, results.length, ...results];
// A function section declaring one function of type 0.
const FUNC = [0x03, 0x02, 0x01, 0x00];
// A code section with that function's body (no locals), `end` included.
const code = (...body) => [0x0a, body.length + 3, 0x01, body.length + 1, 0x00, ...body];
const module = (...sections) => new Uint8Array([...HEADER, ...sections.flat()]);

const I32 = 0x7f, V128 = 0x7b, EXTERNREF = 0x6f, END = 0x0b;
const I32_CONST_0 = [0x41, 0x00];

// name shown to the user -> the probe module.
export const PROBES = {
  // () -> v128 { i8x16.splat(0) }
  'SIMD': module(type([], [V128]), FUNC, code(...I32_CONST_0, 0xfd, 0x0f, END)),
  // () -> externref { ref.null extern }
  'reference types': module(type([], [EXTERNREF]), FUNC, code(0xd0, EXTERNREF, END)),
  // () -> (i32, i32) { 0, 0 }
  'multi-value': module(type([], [I32, I32]), FUNC, code(...I32_CONST_0, ...I32_CONST_0, END)),
  // (memory 1) () -> () { memory.fill(0, 0, 0) }
  'bulk memory': module(type([], []), FUNC, [0x05, 0x03, 0x01, 0x00, 0x01],
    code(...I32_CONST_0, ...I32_CONST_0, ...I32_CONST_0, 0xfc, 0x0b, 0x00, END)),
  // () -> i32 { i32.trunc_sat_f32_s(0.0) }
  'non-trapping float-to-int': module(type([], [I32]), FUNC,
    code(0x43, 0x00, 0x00, 0x00, 0x00, 0xfc, 0x00, END)),
  // () -> i32 { i32.extend8_s(0) }
  'sign extension': module(type([], [I32]), FUNC, code(...I32_CONST_0, 0xc0, END)),
};

// What the page needs, for the message and the README.
export const BROWSERS = 'Chrome or Edge 96+, Firefox 89+, Safari 16.4+ (iOS 16.4+)';

// The features this engine lacks: empty when everything is there,
// ['WebAssembly'] when there is no WebAssembly at all.
export function missingWasmFeatures() {
  if (typeof WebAssembly !== 'object' || WebAssembly === null
      || typeof WebAssembly.validate !== 'function') {
    return ['WebAssembly'];
  }
  return Object.entries(PROBES)
    .filter(([, bytes]) => {
      try { return !WebAssembly.validate(bytes); } catch { return true; }
    })
    .map(([name]) => name);
}
