// A minimal W3C WebDriver client for the bench scripts (Node >= 18 `fetch`):
// the real server binary and headless Chromium behind chromedriver, and
// everything stopped again at the end. Used by screenshot.mjs and budget.mjs.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/// `--name value` pairs of argv.
export function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith('--')) out[argv[i].slice(2)] = argv[i + 1];
  }
  return out;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export async function waitFor(url, what) {
  for (let i = 0; i < 150; i++) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch { /* not up yet */ }
    await sleep(200);
  }
  throw new Error(`${what} did not come up at ${url}`);
}

/// Processes started here, and the profile directories, cleaned up by `stopAll`.
const children = [];
const dirs = [];

export function start(cmd, argv) {
  const child = spawn(cmd, argv, { stdio: 'ignore' });
  child.on('error', (e) => console.error(`cannot start ${cmd}: ${e.message}`));
  children.push(child);
  return child;
}

/// `donut serve` on a free loopback port with `flags`; returns its base URL.
export async function startServer(bin, flags) {
  const port = await freePort();
  const child = start(bin, ['serve', '--listen', `127.0.0.1:${port}`, ...flags]);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}/healthz`, 'the server');
  return { url, child };
}

/// A WebDriver session: `cmd(method, path, body)` on it, `execute(script)`,
/// `cdp(cmd, params)`.
export async function chromium(extraArgs = []) {
  const driverPort = await freePort();
  start('chromedriver', [`--port=${driverPort}`]);
  const driver = `http://127.0.0.1:${driverPort}`;
  await waitFor(`${driver}/status`, 'chromedriver');
  const profile = mkdtempSync(join(tmpdir(), 'donut-bench-'));
  dirs.push(profile);
  const session = await wd(driver, 'POST', '/session', {
    capabilities: {
      alwaysMatch: {
        'goog:chromeOptions': {
          args: [
            '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
            '--disable-background-networking', '--disable-component-update', '--disable-sync',
            `--user-data-dir=${profile}`, ...extraArgs,
          ],
        },
      },
    },
  });
  const s = `/session/${session.sessionId}`;
  const cmd = (method, path, body) => wd(driver, method, s + path, body);
  return {
    profile,
    cmd,
    execute: (script, args = []) => cmd('POST', '/execute/sync', { script, args }),
    cdp: (name, params = {}) => cmd('POST', '/goog/cdp/execute', { cmd: name, params }),
    quit: () => wd(driver, 'DELETE', s).catch(() => {}),
  };
}

/// One W3C WebDriver command.
export async function wd(base, method, path, body) {
  const r = await fetch(base + path, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const j = await r.json();
  if (!r.ok) throw new Error(`${method} ${path}: ${JSON.stringify(j.value)}`);
  return j.value;
}

export async function stopAll() {
  for (const c of children) c.kill();
  await sleep(300);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
