// Start latency on an idle node: from the commit of an AW row (client clock) to the child
// process running (it stamps its own start time). Measured with the spawn helper (or what
// PGTASKS_SPAWNER says), then with child_process.spawn (--spawner node) for the helper's gain.
//   npx tsx bench/start-latency.ts [--quick] [--n 300]
// Uses DATABASE_URL, or an embedded PostgreSQL; the node runs as a separate process.
import path from 'node:path';
import { nowMs, percentiles, readStamp, setUpBench, metric } from './lib.js';

const quick = process.argv.includes('--quick');
const nArg = process.argv.indexOf('--n');
const n = nArg > 0 ? Number(process.argv[nArg + 1]) : quick ? 20 : 300;

async function startLatencies(spawner: string): Promise<number[]> {
  const bench = await setUpBench(['--max-tasks', '8', '--spawner', spawner]);
  const latencies: number[] = [];
  for (let i = 0; i < n; i++) {
    const file = path.join(bench.dir, `t${i}`);
    await bench.client.query(`INSERT INTO "${bench.schema}".task (state_id, command) VALUES ('AW', $1)`, [[...bench.stamp, file]]);
    const committed = nowMs();
    latencies.push((await readStamp(file)) - committed);
    await new Promise((resolve) => setTimeout(resolve, 20)); // idle between tasks
  }
  await bench.close();
  return latencies;
}

const p = percentiles(await startLatencies(process.env.PGTASKS_SPAWNER ?? 'auto'));
const plain = percentiles(await startLatencies('node'));
metric('start.p50', Number(p.p50));
metric('start.p99', Number(p.p99));
console.log(
  `start latency, ${n} sequential tasks on an idle node: p50 ${p.p50} ms, p95 ${p.p95} ms, p99 ${p.p99} ms; ` +
    `with --spawner node: p50 ${plain.p50} ms, p95 ${plain.p95} ms, p99 ${plain.p99} ms`,
);
