// The Web Worker bootstrap: loads the worker wasm, which connects to
// /ws/worker, renders what it is assigned and posts its stats to the page.
import init, { WorkerAgent } from './pkg/worker/donut_worker.js';

// Remember a switch flip that arrives while the wasm is still loading; the
// agent takes over `onmessage` once it exists.
let want = true;
self.onmessage = (e) => { want = Boolean(e.data && e.data.contribute); };
await init();
self.agent = new WorkerAgent(want);
