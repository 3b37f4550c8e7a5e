// Throughput: N × /bin/true on one node at a concurrency, against the ceiling of a plain Node
// spawner doing the same with no database, measured in the same run.
//   npx tsx bench/throughput.ts [--quick] [--n 5000] [--concurrency 8,32]
import { nodeSpawnCeiling, setUpBench, metric, arg, timedRun } from './lib.js';

const quick = process.argv.includes('--quick');
const n = Number(arg('--n') ?? (quick ? 200 : 5000));
const levels = (arg('--concurrency') ?? '8,32').split(',').map(Number);

/** pg-tasks: the tasks are queued while the node is paused (stop 1), then timed from resume. */
async function pgTasks(count: number, concurrency: number, spawner = process.env.PGTASKS_SPAWNER ?? 'auto'): Promise<number> {
  const bench = await setUpBench(['--max-tasks', String(concurrency), '--spawner', spawner]);
  const rate = await timedRun(bench, count);
  await bench.close();
  return rate;
}

for (const concurrency of levels) {
  const ceiling = await nodeSpawnCeiling(n, concurrency);
  const ours = await pgTasks(n, concurrency);
  metric(`throughput.${concurrency}.rate`, ours);
  metric(`throughput.${concurrency}.ceiling`, ceiling);
  // The gain of the spawn helper: the same run with tasks started by child_process.spawn.
  const plain = await pgTasks(n, concurrency, 'node');
  console.log(
    `throughput, ${n} × /bin/true at ${concurrency}: pg-tasks ${ours.toFixed(0)}/s, Node spawn ceiling ${ceiling.toFixed(0)}/s, ratio ${(ours / ceiling).toFixed(2)}; ` +
      `pg-tasks with --spawner node ${plain.toFixed(0)}/s (ratio ${(plain / ceiling).toFixed(2)}; the helper's gain ${(ours / plain).toFixed(2)}×)`,
  );
}
