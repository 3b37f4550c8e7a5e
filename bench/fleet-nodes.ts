// One process of bench/fleet.ts: real TaskNodes (claim, end, lease, listener), worker ids
// FIRST..FIRST+COUNT-1, each with 8 slots and an executor that starts no process (see
// NodeOptions.executor, for benches and tests only). A task's command says when it was sent
// and how long it "runs": ['fleet', sentMs, runMs].
//   node --import tsx bench/fleet-nodes.ts URL SCHEMA FIRST COUNT
// stdin, one word a line: "report" prints `report {…}` (start latencies and claims since the
// last report); "stop" stops every node and exits. stdout: "ready" once every node is active,
// then `ended N` every 50 ms while runs end (N: runs ended so far), so that the bench counts
// ends without a statement of its own.
import os from 'node:os';
import { createInterface } from 'node:readline';
import pino from 'pino';
import { TaskNode } from '../src/node/node.js';
import { NODE_DEFAULTS } from '../src/node/options.js';
import type { TaskExecutor } from '../src/node/process/task-process.js';

const [url, schema, firstText, countText] = process.argv.slice(2);
const first = Number(firstText);
const count = Number(countText);
const SLOTS = 8;

let latencies: number[] = [];
let ended = 0;
let told = 0;
const claims = { rounds: 0, empty: 0, asked: 0, claimed: 0 };

const executor: TaskExecutor = async ({ command }) => {
  const sentMs = Number(command[1]);
  const runMs = Number(command[2]);
  if (sentMs > 0) latencies.push(performance.timeOrigin + performance.now() - sentMs);
  if (runMs > 0) await new Promise((resolve) => setTimeout(resolve, runMs));
};

const logger = pino({ level: 'warn' }, pino.destination(2));
const nodes: TaskNode[] = [];
for (let id = first; id < first + count; id++) {
  const node = new TaskNode({
    ...NODE_DEFAULTS,
    connectionString: url!,
    schema: schema!,
    workerId: id,
    groupId: 0,
    maxTasks: SLOTS,
    nodeName: `fleet-${id}`,
    rootDir: os.tmpdir(),
    logger,
    migrate: false,
    outputKeep: 0,
    executor,
  });
  node.events.on('claim', (c: { asked: number; claimed: number }) => {
    claims.rounds++;
    claims.asked += c.asked;
    claims.claimed += c.claimed;
    if (c.claimed === 0) claims.empty++;
  });
  node.events.on('run:ended', () => ended++);
  // A simulated node that loses its lease (its process starved past the fence) leaves its
  // claimed tasks to recovery: the run's figures would be wrong, so the bench stops.
  node.events.on('lease:lost', ({ reason }: { reason: string }) => console.log(`lost worker ${id}: ${reason}`));
  nodes.push(node);
}
await Promise.all(nodes.map((node) => node.start()));
while (!nodes.every((node) => node.state === 'active')) await new Promise((resolve) => setTimeout(resolve, 50));
console.log('ready');
const tell = setInterval(() => {
  if (ended === told) return;
  told = ended;
  console.log(`ended ${ended}`);
}, 50);

for await (const line of createInterface({ input: process.stdin })) {
  if (line === 'report') {
    console.log(`report ${JSON.stringify({ latencies, claims })}`);
    latencies = [];
    Object.assign(claims, { rounds: 0, empty: 0, asked: 0, claimed: 0 });
  } else if (line === 'stop') {
    break;
  }
}
clearInterval(tell);
await Promise.all(nodes.map((node) => node.shutdown('cancel', 'bench over')));
process.exit(0);
