#!/usr/bin/env node
// Times the shipped worker wasm against the Go original's JavaScript worker,
// in one Node process, so the ratio is measured under identical conditions.
//
//   node bench/wasm-node.mjs [--frames N] [--rounds R] [--wasm PATH]
//                            [--reference PATH] [--clock cpu|wall]
//
// - wasm: `www/pkg/worker/donut_worker_bg.wasm` exactly as `./build.sh`
//   ships it (wasm-pack + wasm-bindgen output). Its plain C-ABI export
//   `donut_selftest_render_packed(frame: u64) -> u32` renders and packs one
//   frame, the worker's whole per-frame job, and returns a checksum of the
//   880 packed bytes so the work cannot be skipped. (Falls back to
//   `donut_selftest_digest`, render + digest, on builds that lack it.)
// - baseline: the Go original's own worker file, unmodified, loaded from
//   `--reference PATH` (default: `../shared/reference/go-original-donut-worker.js`
//   relative to the repository root, when it exists). It is run as the
//   browser runs it: a classic script in a `vm` context whose global is
//   `self`, driven through its own `self.onmessage({data: {renderTaskID,
//   startFrame, endFrame}})` (endFrame inclusive) in 60-frame tasks, the
//   result captured from `self.postMessage`. Its own `createFrames` and
//   `encodeRenderResult` are also timed apart (render alone, pack alone),
//   for information. Its code is read at run time, never copied here.
//   Our re-implementation, bench/reference-worker.mjs, is timed beside it
//   in the same tasks so that the two baselines can be compared.
// - Without the original's file the script falls back to the
//   re-implementation alone and says so loudly: that baseline computes
//   Math.sin/Math.cos per sample where the original steps rotation
//   recurrences, and measured about twice as slow as the original, so a
//   speed-up against it overstates the one against the original.
//
// Every measurement is R rounds of N consecutive frames after a warm-up, all
// measurements interleaved round by round; the table reports the median
// round as microseconds per frame (min and max beside it), and the speed-up
// is the median of the per-round ratios. Frames are numbered from 1,000 so
// neither side sees frame 0.
//
// Rounds are timed in this process's CPU time (`process.cpuUsage()`, user +
// system) by default, so that time the OS gives to other processes on a
// shared machine is not counted against either side; `--clock wall` times
// them with the monotonic wall clock instead (the same on an idle machine).

import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import os from "node:os";
import vm from "node:vm";

import { referencePack, referenceRender, referenceTask } from "./reference-worker.mjs";

const here = dirname(fileURLToPath(import.meta.url));

function arg(name, fallback) {
  const k = process.argv.indexOf(name);
  return k >= 0 && k + 1 < process.argv.length ? process.argv[k + 1] : fallback;
}

const FRAMES = Number(arg("--frames", "600"));
const ROUNDS = Number(arg("--rounds", "9"));
const WASM = resolve(arg("--wasm", resolve(here, "../www/pkg/worker/donut_worker_bg.wasm")));
// The Go original's worker, beside the repository (see ../shared/reference/README.md).
const DEFAULT_REFERENCE = resolve(here, "..", "../shared/reference/go-original-donut-worker.js");
const REFERENCE = arg("--reference", null);
const BASE = 1000;
const TASK = 60;
const CLOCK = arg("--clock", "cpu");
if (CLOCK !== "cpu" && CLOCK !== "wall") throw new Error(`--clock must be cpu or wall, not ${CLOCK}`);
if (!(FRAMES > 0 && FRAMES % TASK === 0)) throw new Error(`--frames must be a multiple of ${TASK}`);

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

/** Loads the Go original's worker file, unmodified, as a browser runs it: a
 * classic script whose global object is `self`. Returns its task entry point
 * (through its own `self.onmessage` / `self.postMessage`) and its own render
 * and pack functions. */
function loadOriginal(path) {
  const source = readFileSync(path, "utf8");
  const global = {};
  let posted = null;
  global.self = global;
  global.postMessage = (message) => {
    posted = message;
  };
  const context = vm.createContext(global);
  vm.runInContext(source, context, { filename: path });
  if (typeof global.onmessage !== "function") {
    throw new Error(`${path} did not set self.onmessage`);
  }
  const task = (renderTaskID, startFrame, endFrame) => {
    posted = null;
    global.onmessage({ data: { renderTaskID, startFrame, endFrame } });
    if (posted === null) throw new Error(`${path} posted nothing`);
    return posted;
  };
  // Its own top-level functions, looked up in its context (not copied).
  const render = vm.runInContext("createFrames", context);
  const pack = vm.runInContext("encodeRenderResult", context);
  const sha256 = createHash("sha256").update(source).digest("hex");
  return { task, render, pack, sha256 };
}

/** Checks a task result: tag 1, the task id big-endian, then 880 bytes a
 * frame of two 4-bit codes each below 14 (the 14-glyph alphabet). */
function checkTaskResult(name, message, id, frames) {
  if (message.length !== 5 + frames * 880) {
    throw new Error(`${name}: task result is ${message.length} bytes, not ${5 + frames * 880}`);
  }
  const header = [message[0], message[1], message[2], message[3], message[4]];
  const want = [1, (id >>> 24) & 0xff, (id >>> 16) & 0xff, (id >>> 8) & 0xff, id & 0xff];
  if (header.join() !== want.join()) throw new Error(`${name}: bad result header ${header}`);
  for (let k = 5; k < message.length; k++) {
    if (message[k] >> 4 >= 14 || (message[k] & 15) >= 14) throw new Error(`${name}: bad code at byte ${k}`);
  }
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

  // The baseline: the original's own file if we have it, else (loudly) our
  // re-implementation.
  let referencePath = REFERENCE === null ? DEFAULT_REFERENCE : resolve(REFERENCE);
  if (!existsSync(referencePath)) {
    if (REFERENCE !== null) throw new Error(`--reference ${referencePath} does not exist`);
    referencePath = null;
  }
  const original = referencePath === null ? null : loadOriginal(referencePath);

  // Sanity: every baseline answers a 60-frame task with a well-formed result.
  checkTaskResult("re-implementation", referenceTask(7, BASE, BASE + TASK - 1), 7, TASK);
  if (original) checkTaskResult("original", original.task(7, BASE, BASE + TASK - 1), 7, TASK);

  const wasmBody = (first, n) => {
    for (let k = 0; k < n; k++) sink ^= Number(wasmFrame(BigInt(first + k)));
  };
  const reimplTask = (first, n) => {
    for (let done = 0; done < n; done += TASK) {
      sink ^= referenceTask(1, first + done, first + done + TASK - 1)[900];
    }
  };
  let names;
  let bodies;
  if (original) {
    const rendered = original.render(BASE, BASE + TASK - 1);
    names = [
      `wasm render+pack (${exportName})`,
      "**Go original's worker file**: render+pack, 60-frame tasks via self.onmessage",
      "Go original's worker file: render alone (its createFrames)",
      "Go original's worker file: pack alone (its encodeRenderResult)",
      "our re-implementation (bench/reference-worker.mjs): render+pack, 60-frame tasks",
    ];
    bodies = [
      wasmBody,
      (first, n) => {
        for (let done = 0; done < n; done += TASK) {
          sink ^= original.task(1, first + done, first + done + TASK - 1)[900];
        }
      },
      (first, n) => {
        for (let done = 0; done < n; done += TASK) {
          sink ^= original.render(first + done, first + done + TASK - 1)[0].charCodeAt(900);
        }
      },
      (first, n) => {
        for (let done = 0; done < n; done += TASK) sink ^= original.pack(1, rendered)[900];
      },
      reimplTask,
    ];
  } else {
    const rendered = [];
    for (let k = 0; k < TASK; k++) rendered.push(referenceRender(BASE + k));
    names = [
      `wasm render+pack (${exportName})`,
      "re-implementation render",
      "re-implementation pack",
      "**re-implementation** render+pack (60-frame tasks)",
    ];
    bodies = [
      wasmBody,
      (first, n) => {
        for (let k = 0; k < n; k++) sink ^= referenceRender(first + k).charCodeAt(900);
      },
      (first, n) => {
        for (let done = 0; done < n; done += TASK) sink ^= referencePack(first, rendered)[900];
      },
      reimplTask,
    ];
  }
  const rounds = measure(bodies);
  const results = names.map((name, b) => ({ name, ...stats(rounds[b]) }));
  // The ratio of each round (both sides measured back to back), then its median.
  const ratioTo = (b) => stats(rounds[0].map((wasm, r) => rounds[b][r] / wasm));
  const headline = original ? 1 : 3;
  const reimpl = bodies.length - 1;

  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  const load = os.loadavg().map((l) => l.toFixed(2)).join(" ");
  console.log(`node ${process.version} on ${cpu} (${os.cpus().length} logical CPUs), load average ${load}`);
  console.log(`wasm: ${WASM} (${size} bytes)`);
  if (original) {
    console.log(`baseline: the Go original's own worker file ${referencePath} (sha256 ${original.sha256})`);
  } else {
    const banner = "!".repeat(78);
    console.log(banner);
    console.log(`!! BASELINE IS OUR RE-IMPLEMENTATION (bench/reference-worker.mjs), NOT THE`);
    console.log(`!! GO ORIGINAL'S WORKER: ${DEFAULT_REFERENCE} is missing`);
    console.log(`!! (pass --reference PATH). The re-implementation computes Math.sin/cos per`);
    console.log(`!! sample where the original steps rotation recurrences; it measured about`);
    console.log(`!! twice as slow as the original, so the speed-up below is about twice the`);
    console.log(`!! speed-up against the original. Do not quote it as "vs the reference".`);
    console.log(banner);
  }
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
  const fmt = (r) => `median ${r.median.toFixed(1)}x (min ${r.min.toFixed(1)}x, max ${r.max.toFixed(1)}x)`;
  if (original) {
    console.log(
      `speed-up vs the Go original's worker file, render+pack, per round: ${fmt(ratioTo(headline))}; goal: at least 20x`,
    );
    console.log(`(for comparison, vs our re-implementation: ${fmt(ratioTo(reimpl))};`);
    console.log(
      ` re-implementation / original, per round: ${fmt(stats(rounds[headline].map((o, r) => rounds[reimpl][r] / o)))})`,
    );
  } else {
    console.log(
      `speed-up vs OUR RE-IMPLEMENTATION (not the original), per round: ${fmt(ratioTo(headline))}`,
    );
  }
  console.log(`(checksum ${sink >>> 0})`);
}

main().catch((e) => {
  console.error(`error: ${e.message}`);
  process.exit(1);
});
