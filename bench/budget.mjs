#!/usr/bin/env node
// What a contributing tab costs against its CPU budget (issue 27), in real
// headless Chromium on the real server, measured from /proc: the tab's Web
// Worker thread (Chromium names it `DedicatedWorker`) and its whole renderer
// process, from `schedstat` (nanoseconds on a CPU).
//
//   node bench/budget.mjs [--bin target/release/donut] [--budget 25] [--secs 10]
//
// Scenarios, one contributing window (`?contribute=1&steer=0`) each:
//   flat-out   `--no-pacing`: the server asks for frames as fast as they come
//   idle       paced at 60 fps, nobody steering
//   steering   a second, watch-only window presses an arrow key every 16 ms
//              (the page sends at most 30 inputs a second, the limit)
//   battery    steering, and the measured page's navigator.getBattery()
//              reports discharging (a script injected before the page loads)
//   stop       the switch is turned off: time until the worker thread's CPU
//              over a 100 ms window falls below 5% of a core
// Run it with `--budget 100` for the unbudgeted baseline (what main did).

import { readFileSync, readdirSync } from 'node:fs';
import { chromium, parseArgs, sleep, startServer, stopAll } from './webdriver.mjs';

const args = parseArgs(process.argv.slice(2));
const bin = args.bin ?? process.env.DONUT_BIN ?? 'target/release/donut';
const budget = Number(args.budget ?? 25);
const secs = Number(args.secs ?? 10);

// Every thread of every process whose command line names `profile`.
function threads(profile) {
  const out = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let cmd;
    try { cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8'); } catch { continue; }
    if (!cmd.includes(profile) || !cmd.includes('--type=renderer')) continue;
    let tids;
    try { tids = readdirSync(`/proc/${pid}/task`); } catch { continue; }
    for (const tid of tids) {
      try {
        const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
        const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
        out.push({ pid, tid, comm, ns });
      } catch { /* gone */ }
    }
  }
  return out;
}

// CPU ns of the DedicatedWorker thread(s), and of the renderer(s) holding them.
function sample(profile) {
  const all = threads(profile);
  const workers = all.filter((t) => t.comm.startsWith('DedicatedWorker'));
  const pids = new Set(workers.map((t) => t.pid));
  return {
    t: process.hrtime.bigint(),
    worker: workers.reduce((a, t) => a + t.ns, 0),
    renderer: all.filter((t) => pids.has(t.pid)).reduce((a, t) => a + t.ns, 0),
  };
}

function share(a, b) {
  const wall = Number(b.t - a.t);
  return {
    worker: (100 * (b.worker - a.worker)) / wall,
    renderer: (100 * (b.renderer - a.renderer)) / wall,
  };
}

async function measure(b, name, url) {
  const a = sample(b.profile);
  const f0 = await accepted(url);
  await sleep(secs * 1000);
  const z = sample(b.profile);
  const f1 = await accepted(url);
  const s = share(a, z);
  const fps = (f1 - f0) / (Number(z.t - a.t) / 1e9);
  console.log(
    `${name.padEnd(9)} worker thread ${s.worker.toFixed(1).padStart(5)}% of a core, ` +
      `its renderer ${s.renderer.toFixed(1).padStart(5)}%, server accepted ${fps.toFixed(0)} frames/s`,
  );
  return s;
}

async function accepted(url) {
  const r = await fetch(`${url}/api/stats`);
  return (await r.json()).frames_accepted;
}

async function main() {
  console.log(`budget ${budget}% of one core, ${secs} s a scenario`);
  const b = await chromium(['--window-size=1280,720']);
  try {
    const flat = await startServer(bin, ['--no-pacing', '--contribute-budget', String(budget)]);
    await b.cmd('POST', '/url', { url: `${flat.url}/?contribute=1&steer=0` });
    await sleep(5000);
    await measure(b, 'flat-out', flat.url);
    flat.child.kill();

    const { url } = await startServer(bin, ['--contribute-budget', String(budget)]);
    const measured = await b.cmd('GET', '/window');
    await b.cmd('POST', '/url', { url: `${url}/?contribute=1&steer=0` });
    await sleep(5000);
    await measure(b, 'idle', url);

    const w = await b.cmd('POST', '/window/new', { type: 'window' });
    await b.cmd('POST', '/window', { handle: w.handle });
    await b.cmd('POST', '/url', { url: `${url}/?contribute=0` });
    await sleep(2000);
    await b.execute(
      "window.__steer = setInterval(() => dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight'})), 16); return 1",
    );
    await b.cmd('POST', '/window', { handle: measured });
    await sleep(3000);
    await measure(b, 'steering', url);

    await b.cdp('Page.addScriptToEvaluateOnNewDocument', {
      source:
        "navigator.getBattery = () => Promise.resolve({charging: false, addEventListener() {}});",
    });
    await b.cmd('POST', '/refresh', {});
    await sleep(5000);
    const stats = await b.execute('return window.donutWorkerStats');
    console.log(`battery: the worker reports a budget of ${stats.budgetPermille / 10}%`);
    await measure(b, 'battery', url);

    // Stop: sample every 10 ms; the first 100 ms window under 5% of a core.
    const log = [sample(b.profile)];
    await b.execute("document.getElementById('contribute').click(); return 1");
    const clicked = process.hrtime.bigint();
    let stopped = null;
    while (process.hrtime.bigint() - clicked < 5_000_000_000n && stopped === null) {
      await sleep(10);
      log.push(sample(b.profile));
      const last = log[log.length - 1];
      const from = log.findLast((x) => last.t - x.t >= 100_000_000n);
      if (from && from.t >= clicked && share(from, last).worker < 5) {
        stopped = Number(from.t - clicked) / 1e6;
      }
    }
    console.log(
      stopped === null
        ? 'stop: the worker thread stayed above 5% of a core for 5 s'
        : `stop: the worker thread under 5% of a core from ${stopped.toFixed(0)} ms after the click`,
    );
  } finally {
    await b.quit();
  }
}

try {
  await main();
} catch (e) {
  console.error(e.stack);
  process.exitCode = 1;
} finally {
  await stopAll();
}
