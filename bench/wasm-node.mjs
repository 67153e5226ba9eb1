#!/usr/bin/env node
// Times the shipped worker wasm against the reference JavaScript worker, in
// one Node process, so the ratio is measured under identical conditions.
//
//   node bench/wasm-node.mjs [--frames N] [--rounds R] [--wasm PATH]
//
// - wasm: `www/pkg/worker/donut_worker_bg.wasm` exactly as `./build.sh`
//   ships it (wasm-bindgen + wasm-opt output). Its plain C-ABI export
//   `donut_selftest_render_packed(frame: u64) -> u32` renders and packs one
//   frame, the worker's whole per-frame job, and returns a checksum of the
//   880 packed bytes so the work cannot be skipped. (Falls back to
//   `donut_selftest_digest`, render + digest, on builds that lack it.)
// - reference: bench/reference-worker.mjs, a re-implementation of the Go
//   reference project's JavaScript worker (render, then pack), timed as
//   render alone, pack alone, and the two together in 60-frame tasks the
//   way the reference runs them.
//
// Every measurement is R rounds of N consecutive frames after a warm-up; the
// table reports the median round as microseconds per frame (min and max
// beside it). Frames are numbered from 1,000 so neither side sees frame 0.

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

/** Runs `body(first, count)` for ROUNDS rounds after a warm-up round and
 * returns per-frame microseconds: median, min, max. */
function measure(body, frames = FRAMES) {
  body(BASE, frames); // warm-up: tier up the JIT / wasm compiler
  const perFrame = [];
  for (let r = 0; r < ROUNDS; r++) {
    const first = BASE + (r + 1) * frames;
    const t0 = process.hrtime.bigint();
    body(first, frames);
    const ns = Number(process.hrtime.bigint() - t0);
    perFrame.push(ns / 1000 / frames);
  }
  perFrame.sort((a, b) => a - b);
  return {
    median: perFrame[Math.floor(perFrame.length / 2)],
    min: perFrame[0],
    max: perFrame[perFrame.length - 1],
  };
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

  const results = [];
  results.push({
    name: `wasm render+pack (${exportName})`,
    ...measure((first, n) => {
      for (let k = 0; k < n; k++) sink ^= Number(wasmFrame(BigInt(first + k)));
    }),
  });
  results.push({
    name: "reference JS render",
    ...measure((first, n) => {
      for (let k = 0; k < n; k++) sink ^= referenceRender(first + k).charCodeAt(900);
    }),
  });
  const rendered = [];
  for (let k = 0; k < TASK; k++) rendered.push(referenceRender(BASE + k));
  results.push({
    name: "reference JS pack",
    ...measure((first, n) => {
      for (let done = 0; done < n; done += TASK) sink ^= referencePack(first, rendered)[900];
    }),
  });
  results.push({
    name: "reference JS render+pack (60-frame tasks)",
    ...measure((first, n) => {
      for (let done = 0; done < n; done += TASK) {
        sink ^= referenceTask(1, first + done, first + done + TASK - 1)[900];
      }
    }),
  });

  const wasm = results[0].median;
  const reference = results[3].median;
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  console.log(`node ${process.version} on ${cpu} (${os.cpus().length} logical CPUs)`);
  console.log(`wasm: ${WASM} (${size} bytes)`);
  console.log(`${ROUNDS} rounds of ${FRAMES} frames each, median round (min..max), us per frame`);
  console.log("");
  console.log("| measurement | us/frame (median) | min | max |");
  console.log("|---|---:|---:|---:|");
  for (const r of results) {
    console.log(`| ${r.name} | ${r.median.toFixed(2)} | ${r.min.toFixed(2)} | ${r.max.toFixed(2)} |`);
  }
  console.log("");
  console.log(
    `speed-up, reference render+pack / wasm render+pack: ${(reference / wasm).toFixed(1)}x ` +
      `(goal: at least 20x)`,
  );
  console.log(`(checksum ${sink >>> 0})`);
}

main().catch((e) => {
  console.error(`error: ${e.message}`);
  process.exit(1);
});
