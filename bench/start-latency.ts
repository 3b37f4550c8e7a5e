// Start latency on an idle node: from the commit of an AW row (client clock) to the child
// process running (it stamps its own start time).
//   npx tsx bench/start-latency.ts [--quick] [--n 300]
// Uses DATABASE_URL, or an embedded PostgreSQL; the node runs as a separate process.
import path from 'node:path';
import { nowMs, percentiles, readStamp, setUpBench } from './lib.js';

const quick = process.argv.includes('--quick');
const nArg = process.argv.indexOf('--n');
const n = nArg > 0 ? Number(process.argv[nArg + 1]) : quick ? 20 : 300;

const bench = await setUpBench(['--max-tasks', '8']);
const latencies: number[] = [];
for (let i = 0; i < n; i++) {
  const file = path.join(bench.dir, `t${i}`);
  await bench.client.query(`INSERT INTO "${bench.schema}".task (state_id, command) VALUES ('AW', $1)`, [[...bench.stamp, file]]);
  const committed = nowMs();
  latencies.push((await readStamp(file)) - committed);
  await new Promise((resolve) => setTimeout(resolve, 20)); // idle between tasks
}
const p = percentiles(latencies);
console.log(`start latency, ${n} sequential tasks on an idle node: p50 ${p.p50} ms, p95 ${p.p95} ms, p99 ${p.p99} ms`);
await bench.close();
