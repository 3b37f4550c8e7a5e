// Start latency on an idle node: to the child process running (it stamps its own start time),
// from the moment the INSERT of an AW row is sent (what a user waits) and from its
// acknowledgement (the commit, as the node can first see it), on the client's clock. Measured
// with the spawn helper (or what PGTASKS_SPAWNER says), then with child_process.spawn
// (--spawner node) for the helper's gain.
//   npx tsx bench/start-latency.ts [--quick] [--fast] [--n 300]
// Uses DATABASE_URL, or an embedded PostgreSQL; the node runs as a separate process.
import path from 'node:path';
import { nowMs, percentiles, readStamp, setUpBench, metric, arg, latencyText } from './lib.js';

const quick = process.argv.includes('--quick');
const n = Number(arg('--n') ?? (quick ? 20 : 300));

async function startLatencies(spawner: string): Promise<{ send: number[]; ack: number[] }> {
  const bench = await setUpBench(['--max-tasks', '8', '--spawner', spawner]);
  const send: number[] = [];
  const ack: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const file = path.join(bench.dir, `t${i}`);
      const sent = nowMs();
      await bench.client.query(`INSERT INTO "${bench.schema}".task (state_id, command) VALUES ('AW', $1)`, [[...bench.stamp, file]]);
      const acked = nowMs();
      const started = await readStamp(file);
      send.push(started - sent);
      ack.push(started - acked);
      await new Promise((resolve) => setTimeout(resolve, 20)); // idle between tasks
    }
  } finally {
    await bench.close();
  }
  return { send, ack };
}

const ours = await startLatencies(process.env.PGTASKS_SPAWNER ?? 'auto');
const plain = await startLatencies('node');
const ack = percentiles(ours.ack);
const send = percentiles(ours.send);
metric('start.ack.p50', Number(ack.p50));
metric('start.ack.p99', Number(ack.p99));
metric('start.send.p50', Number(send.p50));
metric('start.send.p99', Number(send.p99));
console.log(`start latency, ${n} sequential tasks on an idle node: ${latencyText(ours)}`);
console.log(`start latency with --spawner node: ${latencyText(plain)}`);
