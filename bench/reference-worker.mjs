// OUR RE-IMPLEMENTATION OF THE GO ORIGINAL'S WORKER, FOR BENCHMARK
// COMPARISON ONLY. NOT THE ORIGINAL, AND NOT A FAITHFUL COPY OF ITS SPEED.
//
// This is NOT part of the product and nothing in the product loads it. It
// was written, before the original's own file was at hand, from its
// description: a1k0n's donut in double-precision JavaScript (A = 1 + 0.07·n,
// B = 1 + 0.03·n, theta steps 0.07, phi steps 0.02, a JS array of
// one-character strings joined into a 1760-character string), followed by
// its nibble packing (one character-to-code lookup per character, bytes
// pushed onto a plain array, frames flattened, then copied into a
// Uint8Array behind a 5-byte header).
//
// Where it differs: it calls Math.sin/Math.cos for every sample, where the
// original steps cos/sin of theta and phi with rotation recurrences, which
// makes it about twice as slow as the original. The real baseline is the
// original's own file (../shared/reference/go-original-donut-worker.js
// beside the repository), which bench/wasm-node.mjs loads at run time; this
// file is timed only beside it, for comparison, or alone, with a loud
// warning, when that file is missing.

const GLYPHS = ".,-~:;=!*#$@";

/** Renders frame `n` like the reference worker: a 1760-char string. */
export function referenceRender(n) {
  const A = 1 + 0.07 * n;
  const B = 1 + 0.03 * n;
  const sinA = Math.sin(A);
  const cosA = Math.cos(A);
  const sinB = Math.sin(B);
  const cosB = Math.cos(B);
  const out = [];
  const zbuf = [];
  for (let k = 0; k < 1760; k++) {
    out[k] = k % 80 === 79 ? "\n" : " ";
    zbuf[k] = 0;
  }
  for (let theta = 0; theta < 6.28; theta += 0.07) {
    const cosT = Math.cos(theta);
    const sinT = Math.sin(theta);
    for (let phi = 0; phi < 6.28; phi += 0.02) {
      const sinP = Math.sin(phi);
      const cosP = Math.cos(phi);
      const circle = cosT + 2;
      const invZ = 1 / (sinP * circle * sinA + sinT * cosA + 5);
      const t = sinP * circle * cosA - sinT * sinA;
      const x = 0 | (40 + 30 * invZ * (cosP * circle * cosB - t * sinB));
      const y = 0 | (12 + 15 * invZ * (cosP * circle * sinB + t * cosB));
      const cell = x + 80 * y;
      const lum =
        0 |
        (8 *
          ((sinT * sinA - sinP * cosT * cosA) * cosB -
            sinP * cosT * sinA -
            sinT * cosA -
            cosP * cosT * sinB));
      if (y < 22 && y >= 0 && x >= 0 && x < 79 && invZ > zbuf[cell]) {
        zbuf[cell] = invZ;
        out[cell] = GLYPHS[lum > 0 ? lum : 0];
      }
    }
  }
  return out.join("");
}

// The reference's alphabet order: glyphs, then space, then newline.
const REFERENCE_ALPHABET = ".,-~:;=!*#$@ \n";
const CODE_OF = Object.fromEntries([...REFERENCE_ALPHABET].map((c, i) => [c, i]));

/** Packs rendered frames like the reference worker: 5-byte header + nibbles. */
export function referencePack(taskId, frames) {
  const bytes = frames.flatMap((frame) => {
    const packed = [];
    for (let i = 0; i < frame.length; i += 2) {
      const hi = CODE_OF[frame[i]];
      const lo = CODE_OF[i + 1 < frame.length ? frame[i + 1] : " "];
      if (hi === undefined || lo === undefined) {
        throw new Error(`invalid character at ${i}`);
      }
      packed.push((hi << 4) | lo);
    }
    return packed;
  });
  const message = new Uint8Array(bytes.length + 5);
  message.set(bytes, 5);
  message[0] = 0x1;
  message[1] = (taskId >>> 24) & 0xff;
  message[2] = (taskId >>> 16) & 0xff;
  message[3] = (taskId >>> 8) & 0xff;
  message[4] = taskId & 0xff;
  return message;
}

/** One reference task: render frames start..=end and pack them. */
export function referenceTask(taskId, start, end) {
  const frames = new Array(end - start + 1);
  for (let n = start; n <= end; n++) {
    frames[n - start] = referenceRender(n);
  }
  return referencePack(taskId, frames);
}
