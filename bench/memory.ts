// Memory over many runs: one node (max-tasks 32) runs N tasks, queued in batches so the
// table stays small, and the node process's VmRSS is read after each tenth of them. A node
// keeps nothing per ended run (the runs it holds are the live ones; the ended-run sets rotate
// at each renewal), so its RSS must stay flat however many runs it has done.
//   npx tsx bench/memory.ts [--quick] [--n 1000000] [--command /bin/true]
// --command picks what each task runs. A path that does not exist makes every run end at
// once with spawn_error through the whole path a run takes (claim, Run, the spawn helper,
// the batched end with its task_run row) without the cost of a process: a million runs in
// minutes instead of an hour where spawning is slow.
import { setUpBench, metric, arg } from './lib.js';
import { assertNodeProcess, rssMb, sleep } from './statements.js';

const quick = process.argv.includes('--quick');
const n = Number(arg('--n') ?? (quick ? 5_000 : 1_000_000));
const command = arg('--command') ?? '/bin/true';
const batch = Math.min(20_000, n);

const bench = await setUpBench(['--max-tasks', '32']);
const { client } = bench;
const s = `"${bench.schema}"`;
const pid = bench.node.pid!;
assertNodeProcess(pid);
await sleep(3_000);
const samples: Array<[number, number]> = [[0, rssMb(pid)]];
const started = performance.now();
let queued = 0;
let done = 0;
const step = n / 10;
while (done < n) {
  // Keep up to two batches queued; delete what has ended, as a retention job would.
  if (queued - done < 2 * batch && queued < n) {
    const count = Math.min(batch, n - queued);
    await client.query(`INSERT INTO ${s}.task (state_id, command) SELECT 'AW', ARRAY[$2::text] FROM generate_series(1, $1)`, [count, command]);
    queued += count;
  }
  const { rowCount } = await client.query(`DELETE FROM ${s}.task WHERE state_id LIKE 'C%'`);
  done += rowCount ?? 0;
  while (samples.length <= 10 && done >= samples.length * step) {
    samples.push([samples.length * step, rssMb(pid)]);
    // As it goes: a long run stopped early still tells what it saw.
    process.stderr.write(`memory: ${done} runs after ${((performance.now() - started) / 1000).toFixed(0)} s, node RSS ${rssMb(pid).toFixed(0)} MB\n`);
  }
  await sleep(200);
}
const secs = (performance.now() - started) / 1000;
await sleep(3_000);
const after = rssMb(pid);
const first = samples[1]![1];
const last = samples[samples.length - 1]![1];
metric('memory.rss.first_tenth_mb', first);
metric('memory.rss.end_mb', last);
const fmt = (v: number): string => v.toLocaleString('en-US').replace(/,/g, ' ');
console.log(
  `memory: ${fmt(n)} runs of ${command} in ${secs.toFixed(0)} s (${(n / secs).toFixed(0)}/s); node RSS ${samples.map(([at, mb]) => `${fmt(Math.round(at))}: ${mb.toFixed(0)} MB`).join(', ')}; ` +
    `3 s after: ${after.toFixed(0)} MB; from the first tenth to the end ${(last - first >= 0 ? '+' : '')}${(last - first).toFixed(0)} MB`,
);
await bench.close();
