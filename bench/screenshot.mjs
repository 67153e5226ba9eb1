#!/usr/bin/env node
// Takes the README's screenshot (docs/screenshot.png) the way a visitor
// sees the page: the real server, real headless Chromium, the peer relay
// working between tabs, the panel's rows filled.
//
//   ./build.sh screenshot              (builds, then runs this)
//   node bench/screenshot.mjs [--bin target/release/donut] [--out docs/screenshot.png]
//                             [--width 1280] [--height 720] [--settle 15]
//
// It starts `donut serve` on a free loopback port (`--p2p on`, loopback ICE
// candidates only, `--contribute-default on` so no question covers the
// donut), chromedriver, and one headless Chromium with four windows: three
// watch and relay (`?contribute=0&steer=0&p2p=1`), the fourth (the one
// photographed) contributes and relays. After `--settle` seconds (the relay
// tree forms, the chart fills a little) it saves that window's screenshot
// and prints the panel's rows. Everything it started is stopped at the end,
// also on failure. Needs node >= 18, chromium and chromedriver on PATH.

import { writeFileSync } from 'node:fs';
import { chromium, parseArgs, sleep, startServer, stopAll } from './webdriver.mjs';

const args = parseArgs(process.argv.slice(2));
const bin = args.bin ?? process.env.DONUT_BIN ?? 'target/release/donut';
const out = args.out ?? 'docs/screenshot.png';
const width = Number(args.width ?? 1280);
const height = Number(args.height ?? 720);
const settle = Number(args.settle ?? 15);

async function main() {
  const { url } = await startServer(bin, [
    '--p2p', 'on', '--p2p-fanout', '2', '--p2p-candidates', '127.0.0.1/32',
    '--contribute-default', 'on',
  ]);
  const b = await chromium([
    '--allow-loopback-in-peer-connection', '--use-fake-ui-for-media-stream',
    '--hide-scrollbars', '--force-device-scale-factor=1', `--window-size=${width},${height}`,
  ]);
  try {
    const main = await b.cmd('GET', '/window');
    for (let i = 0; i < 3; i++) {
      const w = await b.cmd('POST', '/window/new', { type: 'window' });
      await b.cmd('POST', '/window', { handle: w.handle });
      await b.cmd('POST', '/url', { url: `${url}/?contribute=0&steer=0&p2p=1` });
    }
    await b.cmd('POST', '/window', { handle: main });
    await b.cmd('POST', '/url', { url: `${url}/?p2p=1` });
    // The viewport, not the window, is what a visitor sees: size it exactly.
    await b.cdp('Emulation.setDeviceMetricsOverride', {
      width, height, deviceScaleFactor: 1, mobile: false,
    });
    console.log(`waiting ${settle} s for the relay tree and the panel to fill`);
    await sleep(settle * 1000);
    const rows = await b.execute(
      "return [...document.querySelectorAll('[data-panel] dl dt')]" +
        ".map(dt => dt.textContent + ': ' + dt.nextElementSibling.textContent)",
    );
    console.log(rows.join('\n'));
    const png = await b.cmd('GET', '/screenshot');
    writeFileSync(out, Buffer.from(png, 'base64'));
    console.log(`wrote ${out} (${width}x${height})`);
  } finally {
    await b.quit();
  }
}

try {
  await main();
} catch (e) {
  console.error(e.message);
  process.exitCode = 1;
} finally {
  await stopAll();
}
