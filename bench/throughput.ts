// Throughput: N × /bin/true on one node at a concurrency, against the machine's own limit (C
// posix_spawn of the same count at the same concurrency, each child in its own process group;
// bench/spawn-ceiling.c) measured in the same run, just before and just after. Node's own
// child_process.spawn from a small process of its own is reported beside it.
//   npx tsx bench/throughput.ts [--quick] [--fast] [--n 5000] [--concurrency 8,32]
import { againstCeiling, nodeSpawnCeiling, serverDurability, setUpBench, metric, arg, timedRun } from './lib.js';

const quick = process.argv.includes('--quick');
const n = Number(arg('--n') ?? (quick ? 200 : 5000));
const levels = (arg('--concurrency') ?? '8,32').split(',').map(Number);

/** pg-tasks: the tasks are queued while the node is paused (stop 1), then timed from resume. */
async function pgTasks(count: number, concurrency: number, spawner = process.env.PGTASKS_SPAWNER ?? 'auto'): Promise<{ rate: number; c: number | null; line: string; server: string; cpu: string }> {
  const bench = await setUpBench(['--max-tasks', String(concurrency), '--spawner', spawner]);
  try {
    const cpu: { text?: string } = {};
    const { rate, ceiling, line } = await againstCeiling(bench, count, concurrency, () => timedRun(bench, count, undefined, cpu));
    return { rate, c: ceiling, line, server: await serverDurability(bench.client), cpu: cpu.text ?? '' };
  } finally {
    await bench.close();
  }
}

for (const [i, concurrency] of levels.entries()) {
  const ours = await pgTasks(n, concurrency);
  if (i === 0) console.log(`server: ${ours.server}`);
  const node = nodeSpawnCeiling(n, concurrency);
  // The gain of the spawn helper: the same run with tasks started by child_process.spawn.
  const plain = await pgTasks(n, concurrency, 'node');
  metric(`throughput.${concurrency}.rate`, ours.rate);
  if (ours.c !== null) metric(`throughput.${concurrency}.ceiling`, ours.c);
  metric(`throughput.${concurrency}.node`, node);
  console.log(
    `throughput, ${n} × /bin/true at ${concurrency}: pg-tasks ${ours.line}; ` +
      `Node spawn ceiling (a process of its own) ${node.toFixed(0)}/s, ratio ${(ours.rate / node).toFixed(2)}; ` +
      `pg-tasks with --spawner node ${plain.rate.toFixed(0)}/s (the helper's gain ${(ours.rate / plain.rate).toFixed(2)}×); ` +
      `during the pg-tasks run, ${ours.cpu}`,
  );
}
