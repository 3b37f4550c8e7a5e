// The cost of the task's control channel (fd 3, docs/control.md) on the spawn path: N tasks at
// 32 slots on one node, as built (every task gets fd 3 and PG_TASKS_CONTROL_FD), of three
// kinds: /bin/true (never touches fd 3: the fast path's figure), sh -c ':' (a shell that does
// nothing: the shell's own cost), and sh writing one progress line and a result on fd 3 (the
// node parses it, batches a progress write, carries the result with the run's end). Rounds
// alternate, in the same run, on the same server.
//   npx tsx bench/control.ts [--quick] [--n 5000] [--rounds 2]
import { setUpBench, metric, arg, timedRun } from './lib.js';

const quick = process.argv.includes('--quick');
const n = Number(arg('--n') ?? (quick ? 200 : 5000));
const rounds = Number(arg('--rounds') ?? (quick ? 1 : 2));
const CONCURRENCY = 32;
const VARIANTS = {
  true: ['/bin/true'],
  shell: ['/bin/sh', '-c', ':'],
  line: ['/bin/sh', '-c', 'echo \'{"progress":1,"message":"done","result":{"ok":true}}\' >&3'],
} as const;
type Variant = keyof typeof VARIANTS;

async function run(variant: Variant): Promise<number> {
  const bench = await setUpBench(['--max-tasks', String(CONCURRENCY)]);
  const s = `"${bench.schema}"`;
  const rate = await timedRun(bench, n, () =>
    bench.client.query(`INSERT INTO ${s}.task (state_id, command) SELECT 'AW', $2::varchar[] FROM generate_series(1, $1)`, [n, VARIANTS[variant]]));
  await bench.close();
  return rate;
}

const rates: Record<Variant, number[]> = { true: [], shell: [], line: [] };
for (let r = 0; r < rounds; r++) {
  for (const variant of ['true', 'shell', 'line'] as const) rates[variant].push(await run(variant));
}
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const [bare, shell, line] = [mean(rates.true), mean(rates.shell), mean(rates.line)];
metric('control.true.rate', bare);
metric('control.line.ratio', line / shell);
console.log(
  `control channel, ${n} tasks at ${CONCURRENCY}, mean of ${rounds} alternating rounds: /bin/true (fd 3 open, untouched) ${bare.toFixed(0)}/s; ` +
    `sh -c ':' ${shell.toFixed(0)}/s; sh writing one progress line and a result on fd 3 ${line.toFixed(0)}/s ` +
    `(ratio to sh -c ':' ${(line / shell).toFixed(2)})`,
);
