// The Web Worker bootstrap: loads the worker wasm, which connects to
// /ws/worker, renders what it is assigned and posts its stats to the page.
import init, { WorkerAgent } from './pkg/worker/donut_worker.js';

// Remember a switch flip or a budget that arrives while the wasm is still
// loading; the agent takes over `onmessage` once it exists.
let want = true;
let budget = 1;
self.onmessage = (e) => {
  const d = e.data || {};
  if ('contribute' in d) want = Boolean(d.contribute);
  if (typeof d.budget === 'number') budget = d.budget;
};
await init();
self.agent = new WorkerAgent(want);
self.agent.setBudget(budget);
