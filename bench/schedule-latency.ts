// Schedule accuracy on an idle node: one-shot schedules due at known instants; how late after
// its next_start each process runs (it stamps its own start time).
//   npx tsx bench/schedule-latency.ts [--quick] [--fast] [--n 50]
import path from 'node:path';
import { metric, percentiles, readStamp, setUpBench } from './lib.js';

const quick = process.argv.includes('--quick');
const nArg = process.argv.indexOf('--n');
const n = nArg > 0 ? Number(process.argv[nArg + 1]) : quick ? 5 : 50;

const bench = await setUpBench(['--max-tasks', '8']);
const delays: number[] = [];
for (let i = 0; i < n; i++) {
  const file = path.join(bench.dir, `s${i}`);
  // Due 300 ms from now, in database time; the node learns of it through NOTIFY and arms its timer.
  const { rows } = await bench.client.query<{ due: Date }>(
    `INSERT INTO "${bench.schema}".task (state_id, command, next_start) VALUES ('DR', $1, now() + interval '300 ms') RETURNING next_start AS due`,
    [[...bench.stamp, file]],
  );
  delays.push((await readStamp(file)) - rows[0]!.due.getTime());
}
const p = percentiles(delays);
metric('schedule.p50', Number(p.p50));
metric('schedule.p99', Number(p.p99));
console.log(`schedule delay, ${n} one-shot tasks on an idle node (start − next_start): p50 ${p.p50} ms, p95 ${p.p95} ms, p99 ${p.p99} ms`);
await bench.close();
