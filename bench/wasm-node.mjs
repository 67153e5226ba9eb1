#!/usr/bin/env node
// Times the shipped worker wasm against the reference JavaScript worker, in
// one Node process, so the ratio is measured under identical conditions.
//
//   node bench/wasm-node.mjs [--frames N] [--rounds R] [--wasm PATH] [--clock cpu|wall]
//
// - wasm: `www/pkg/worker/donut_worker_bg.wasm` exactly as `./build.sh`
//   ships it (wasm-pack + wasm-bindgen output). Its plain C-ABI export
//   `donut_selftest_render_packed(frame: u64) -> u32` renders and packs one
//   frame, the worker's whole per-frame job, and returns a checksum of the
//   880 packed bytes so the work cannot be skipped. (Falls back to
//   `donut_selftest_digest`, render + digest, on builds that lack it.)
// - reference: bench/reference-worker.mjs, a re-implementation of the Go
//   reference project's JavaScript worker (render, then pack), timed as
//   render alone, pack alone, and the two together in 60-frame tasks the
//   way the reference runs them.
//
// Every measurement is R rounds of N consecutive frames after a warm-up, the
// four measurements interleaved round by round; the table reports the median
// round as microseconds per frame (min and max beside it), and the speed-up
// is the median of the per-round ratios. Frames are numbered from 1,000 so
// neither side sees frame 0.
//
// Rounds are timed in this process's CPU time (`process.cpuUsage()`, user +
// system) by default, so that time the OS gives to other processes on a
// shared machine is not counted against either side; `--clock wall` times
// them with the monotonic wall clock instead (the same on an idle machine).

import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import os from "node:os";

import { referencePack, referenceRender, referenceTask } from "./reference-worker.mjs";

const here = dirname(fileURLToPath(import.meta.url));

function arg(name, fallback) {
  const k = process.argv.indexOf(name);
  return k >= 0 && k + 1 < process.argv.length ? process.argv[k + 1] : fallback;
}

const FRAMES = Number(arg("--frames", "600"));
const ROUNDS = Number(arg("--rounds", "9"));
const WASM = resolve(arg("--wasm", resolve(here, "../www/pkg/worker/donut_worker_bg.wasm")));
const BASE = 1000;
const TASK = 60;
const CLOCK = arg("--clock", "cpu");
if (CLOCK !== "cpu" && CLOCK !== "wall") throw new Error(`--clock must be cpu or wall, not ${CLOCK}`);

/** Microseconds on the chosen clock. */
function now() {
  if (CLOCK === "wall") return Number(process.hrtime.bigint()) / 1000;
  const { user, system } = process.cpuUsage();
  return user + system;
}

/** Instantiates the wasm with every import stubbed to throw: the selftest
 * exports are pure computation and must never call out to JavaScript. */
async function loadWasm(path) {
  let bytes;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new Error(`cannot read ${path} (${e.code}); run ./build.sh build first`);
  }
  const module = await WebAssembly.compile(bytes);
  const imports = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.kind !== "function") {
      throw new Error(`unexpected ${imp.kind} import ${imp.module}.${imp.name}`);
    }
    imports[imp.module] ??= {};
    imports[imp.module][imp.name] = () => {
      throw new Error(`benchmark called import ${imp.module}.${imp.name}`);
    };
  }
  const instance = await WebAssembly.instantiate(module, imports);
  return { instance, size: bytes.length };
}

/** Times each `body(first, count)` for ROUNDS rounds after a warm-up round,
 * interleaving the bodies round by round so that load from other processes
 * hits all of them alike. Returns, per body, the per-frame microseconds of
 * every round. */
function measure(bodies) {
  for (const body of bodies) body(BASE, FRAMES); // warm-up: tier up the JIT
  const rounds = bodies.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    const first = BASE + (r + 1) * FRAMES;
    bodies.forEach((body, b) => {
      const t0 = now();
      body(first, FRAMES);
      rounds[b].push((now() - t0) / FRAMES);
    });
  }
  return rounds;
}

/** Median, min and max of a list of numbers. */
function stats(values) {
  const v = [...values].sort((a, b) => a - b);
  return { median: v[Math.floor(v.length / 2)], min: v[0], max: v[v.length - 1] };
}

let sink = 0; // results feed this so no work can be optimised away

async function main() {
  const { instance, size } = await loadWasm(WASM);
  const ex = instance.exports;
  const exportName =
    typeof ex.donut_selftest_render_packed === "function"
      ? "donut_selftest_render_packed"
      : "donut_selftest_digest";
  const wasmFrame = ex[exportName];
  if (typeof wasmFrame !== "function") {
    throw new Error(`${WASM} exports neither donut_selftest_render_packed nor donut_selftest_digest`);
  }

  // Sanity: the reference produces 1760-char frames that pack to 880 bytes.
  const sample = referenceRender(BASE);
  if (sample.length !== 1760) throw new Error(`reference frame is ${sample.length} chars`);
  const sampleTask = referenceTask(1, BASE, BASE + TASK - 1);
  if (sampleTask.length !== 5 + TASK * 880) throw new Error("reference task has the wrong size");

  const rendered = [];
  for (let k = 0; k < TASK; k++) rendered.push(referenceRender(BASE + k));
  const names = [
    `wasm render+pack (${exportName})`,
    "reference JS render",
    "reference JS pack",
    "reference JS render+pack (60-frame tasks)",
  ];
  const rounds = measure([
    (first, n) => {
      for (let k = 0; k < n; k++) sink ^= Number(wasmFrame(BigInt(first + k)));
    },
    (first, n) => {
      for (let k = 0; k < n; k++) sink ^= referenceRender(first + k).charCodeAt(900);
    },
    (first, n) => {
      for (let done = 0; done < n; done += TASK) sink ^= referencePack(first, rendered)[900];
    },
    (first, n) => {
      for (let done = 0; done < n; done += TASK) {
        sink ^= referenceTask(1, first + done, first + done + TASK - 1)[900];
      }
    },
  ]);
  const results = names.map((name, b) => ({ name, ...stats(rounds[b]) }));
  // The ratio of each round (both sides measured back to back), then its median.
  const ratio = stats(rounds[0].map((wasm, r) => rounds[3][r] / wasm));

  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  const load = os.loadavg().map((l) => l.toFixed(2)).join(" ");
  console.log(`node ${process.version} on ${cpu} (${os.cpus().length} logical CPUs), load average ${load}`);
  console.log(`wasm: ${WASM} (${size} bytes)`);
  console.log(
    `${ROUNDS} rounds of ${FRAMES} frames each, median round (min..max), us per frame (${CLOCK === "cpu" ? "process CPU time" : "wall clock"})`,
  );
  console.log("");
  console.log("| measurement | us/frame (median) | min | max |");
  console.log("|---|---:|---:|---:|");
  for (const r of results) {
    console.log(`| ${r.name} | ${r.median.toFixed(2)} | ${r.min.toFixed(2)} | ${r.max.toFixed(2)} |`);
  }
  console.log("");
  console.log(
    `speed-up, reference render+pack / wasm render+pack, per round: median ${ratio.median.toFixed(1)}x ` +
      `(min ${ratio.min.toFixed(1)}x, max ${ratio.max.toFixed(1)}x; goal: at least 20x)`,
  );
  console.log(
    `against the reference's documented ~1100 us/frame: ${(1100 / results[0].median).toFixed(1)}x`,
  );
  console.log(`(checksum ${sink >>> 0})`);
}

main().catch((e) => {
  console.error(`error: ${e.message}`);
  process.exit(1);
});
