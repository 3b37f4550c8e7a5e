// Cancel latency: from the commit of AC on a running task (client clock) to its process
// receiving SIGTERM (it stamps the instant), p50/p95/p99.
//   npx tsx bench/cancel-latency.ts [--quick] [--n 100]
import { existsSync } from 'node:fs';
import path from 'node:path';
import { nowMs, percentiles, readStamp, setUpBench, metric } from './lib.js';

const quick = process.argv.includes('--quick');
const nArg = process.argv.indexOf('--n');
const n = nArg > 0 ? Number(process.argv[nArg + 1]) : quick ? 10 : 100;

const bench = await setUpBench(['--max-tasks', '8']);
const s = `"${bench.schema}"`;
const latencies: number[] = [];
for (let i = 0; i < n; i++) {
  const file = path.join(bench.dir, `c${i}`);
  const { rows } = await bench.client.query<{ id: number }>(`INSERT INTO ${s}.task (state_id, command) VALUES ('AW', $1) RETURNING id`, [[...bench.stampTerm, file]]);
  const id = rows[0]!.id;
  // Running, and its pid recorded (the program is waiting for its signal by then).
  for (;;) {
    const r = await bench.client.query<{ pid: number | null }>(`SELECT pid FROM ${s}.task WHERE id = $1 AND state_id = 'AE'`, [id]);
    if (r.rows[0]?.pid) break;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await new Promise((resolve) => setTimeout(resolve, 20)); // let the node go idle
  await bench.client.query(`UPDATE ${s}.task SET state_id = 'AC' WHERE id = $1`, [id]);
  const committed = nowMs();
  latencies.push((await readStamp(file)) - committed);
  if (!existsSync(file)) throw new Error('no stamp');
}
const p = percentiles(latencies);
metric('cancel.p50', Number(p.p50));
console.log(`cancel latency, ${n} running tasks (commit of AC → SIGTERM received): p50 ${p.p50} ms, p95 ${p.p95} ms, p99 ${p.p99} ms`);
await bench.close();
