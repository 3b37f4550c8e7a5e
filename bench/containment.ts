// The cost of containment: N × /bin/true on one node at 32 with each run its process group
// (--containment group: no supervisor, as before issue 24), with a supervisor per run
// (--containment supervisor: one more fork per run, of the small helper), with a cgroup per
// run too where the node's cgroup v2 is delegated (--containment cgroup: a mkdir, a clone3
// into it, an rmdir), and with the default (auto: tasks without memory_max or cpu_max get a
// supervisor only). Rounds alternate, in the same run, on the same server (the cgroup rounds
// come last).
//   npx tsx bench/containment.ts [--quick] [--n 5000] [--rounds 2]
import { NodeCgroup } from '../src/node/process/cgroup.js';
import { setUpBench, metric, arg, timedRun } from './lib.js';

const quick = process.argv.includes('--quick');
const n = Number(arg('--n') ?? (quick ? 200 : 5000));
const rounds = Number(arg('--rounds') ?? (quick ? 1 : 2));
const CONCURRENCY = 32;
type Variant = 'group' | 'supervisor' | 'cgroup' | 'auto';

async function run(variant: Variant): Promise<number> {
  const bench = await setUpBench(['--max-tasks', String(CONCURRENCY), '--containment', variant]);
  const s = `"${bench.schema}"`;
  const rate = await timedRun(bench, n, () =>
    bench.client.query(`INSERT INTO ${s}.task (state_id, command) SELECT 'AW', '{/bin/true}' FROM generate_series(1, $1)`, [n]));
  await bench.close();
  return rate;
}

// Whether auto gives runs cgroups here (the same check the node makes; its cgroup is removed).
const probe = NodeCgroup.create();
if (probe instanceof NodeCgroup) probe.remove();
const cgroups = probe instanceof NodeCgroup ? `(controllers: ${probe.controllers.join(', ') || 'none'})` : `(no cgroups here: ${probe.reason})`;

const rates: Record<Variant, number[]> = { group: [], supervisor: [], cgroup: [], auto: [] };
for (let r = 0; r < rounds; r++) {
  for (const variant of ['group', 'supervisor', 'auto'] as const) rates[variant].push(await run(variant));
}
// After the others, not between them: the kernel frees a removed cgroup later, in the
// background, and that work slowed whichever variant came next (seen: the round after it
// 8 % slower).
for (let r = 0; r < rounds; r++) rates.cgroup.push(await run('cgroup'));
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const [group, supervisor, cgroup, auto] = [mean(rates.group), mean(rates.supervisor), mean(rates.cgroup), mean(rates.auto)];
metric('containment.supervisor.ratio', supervisor / group);
metric('containment.cgroup.ratio', cgroup / group);
metric('containment.auto.ratio', auto / group);
console.log(
  `containment, ${n} × /bin/true at ${CONCURRENCY}, mean of ${rounds} alternating rounds: process group only ${group.toFixed(0)}/s; ` +
    `supervisor ${supervisor.toFixed(0)}/s (ratio ${(supervisor / group).toFixed(2)}); ` +
    `a cgroup per run ${cgroups} ${cgroup.toFixed(0)}/s (ratio ${(cgroup / group).toFixed(2)}); auto (the default) ${auto.toFixed(0)}/s (ratio ${(auto / group).toFixed(2)})`,
);
