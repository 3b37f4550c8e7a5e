// Node's own limit for the throughput benchmark, in a small process of its own (measured
// inside the benchmark's large process it came out about 30% lower): child_process.spawn of
// /bin/true COUNT times, CONCURRENCY at a time, each detached (a process group of its own) with
// stdout and stderr on pipes, as pg-tasks' --spawner node starts tasks. Prints ends per second.
//   node bench/node-spawn-ceiling.mjs COUNT CONCURRENCY
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';

const count = Number(process.argv[2]);
const concurrency = Number(process.argv[3]);
if (!(count > 0 && concurrency > 0)) {
  console.error('usage: node-spawn-ceiling.mjs COUNT CONCURRENCY');
  process.exit(2);
}
const runOne = () =>
  new Promise((resolve, reject) => {
    const child = spawn('/bin/true', [], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`/bin/true ended with ${code}`))));
  });
let next = 0;
const started = performance.now();
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (next < count) {
      next++;
      await runOne();
    }
  }),
);
console.log((count / ((performance.now() - started) / 1000)).toFixed(1));
