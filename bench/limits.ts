// The cost of a cluster-wide limit: N × /bin/true on one node at 32, with no limit, with the
// group's max_running = 32 (it never binds below the node's slots: what is measured is the
// lock and the count each claim pays), and with every task keyed (64 keys, one at a time
// each), and with every task keyed and rate-limited above the reach (the same 64 keys, each
// also at most 1000 starts per second, which 32 slots never reach: what is measured is the
// window's count and the starts recorded, issue 30), and with every task holding a unique_key
// of its own (the partial unique index each insert, claim and end maintains, issue 30). Rounds
// alternate, in the same run, on the same server.
//   npx tsx bench/limits.ts [--quick] [--n 5000] [--rounds 2]
import { setUpBench, metric, arg, timedRun } from './lib.js';

const quick = process.argv.includes('--quick');
const n = Number(arg('--n') ?? (quick ? 200 : 5000));
const rounds = Number(arg('--rounds') ?? (quick ? 1 : 2));
const CONCURRENCY = 32;
type Variant = 'none' | 'group' | 'keys' | 'rate' | 'unique';

async function run(variant: Variant): Promise<number> {
  const bench = await setUpBench(['--max-tasks', String(CONCURRENCY)]);
  const s = `"${bench.schema}"`;
  if (variant === 'group') await bench.client.query(`INSERT INTO ${s}.task_group (id, max_running) VALUES (0, $1)`, [CONCURRENCY]);
  if (variant === 'rate') {
    await bench.client.query(`INSERT INTO ${s}.concurrency_limit (key, max_running, max_starts, period)
                              SELECT 'k' || i, 1, 1000, interval '1 second' FROM generate_series(0, 63) i`);
  }
  const rate = await timedRun(bench, n, () =>
    bench.client.query(
      `INSERT INTO ${s}.task (state_id, command, concurrency_key, unique_key)
       SELECT 'AW', '{/bin/true}', CASE WHEN $2 THEN 'k' || (i % 64) END, CASE WHEN $3 THEN 'u' || i END FROM generate_series(1, $1) i`,
      [n, variant === 'keys' || variant === 'rate', variant === 'unique'],
    ));
  await bench.close();
  return rate;
}

const rates: Record<Variant, number[]> = { none: [], group: [], keys: [], rate: [], unique: [] };
for (let r = 0; r < rounds; r++) {
  for (const variant of ['none', 'group', 'keys', 'rate', 'unique'] as const) rates[variant].push(await run(variant));
}
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const [none, group, keys, rated, unique] = [mean(rates.none), mean(rates.group), mean(rates.keys), mean(rates.rate), mean(rates.unique)];
metric('limits.group.ratio', group / none);
metric('limits.keys.ratio', keys / none);
metric('limits.rate.ratio', rated / none);
metric('limits.unique.ratio', unique / none);
console.log(
  `limits, ${n} × /bin/true at ${CONCURRENCY}, mean of ${rounds} alternating rounds: no limit ${none.toFixed(0)}/s; ` +
    `group max_running = ${CONCURRENCY} ${group.toFixed(0)}/s (ratio ${(group / none).toFixed(2)}); ` +
    `every task keyed (64 keys, 1 each) ${keys.toFixed(0)}/s (ratio ${(keys / none).toFixed(2)}); ` +
    `keyed and rate-limited above the reach (1000/s a key) ${rated.toFixed(0)}/s (ratio ${(rated / none).toFixed(2)}, ${(rated / keys).toFixed(2)} of keyed); ` +
    `every task with a unique_key ${unique.toFixed(0)}/s (ratio ${(unique / none).toFixed(2)})`,
);
