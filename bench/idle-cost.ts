// Idle cost: the statements an idle node sends to PostgreSQL, counted by pg_stat_statements
// over a window that starts once the node holds its lease and has settled (start-up is not
// idle cost). The node connects as a role of its own, so the benchmark's queries don't count.
//   npx tsx bench/idle-cost.ts [--quick] [--window 60]
// Uses DATABASE_URL (its server must preload pg_stat_statements, else this part is skipped),
// or an embedded PostgreSQL that preloads it.
import { spawn } from 'node:child_process';
import { setUpBench, metric } from './lib.js';
import { createNodeRole, readStatements, resetStatements, sleep, statementsUnavailable } from './statements.js';

const quick = process.argv.includes('--quick');
const windowArg = process.argv.indexOf('--window');
// The node renews its lease every lease/2 = 10 s (default 20 s lease): a quick window of 8 s
// sees 0 or 1 renewal, so only a full run gives a rate.
const windowS = windowArg > 0 ? Number(process.argv[windowArg + 1]) : quick ? 8 : 60;
const ORIGINAL = 'the original: ~42/min (measured on this machine kind)';

const unavailable = await statementsUnavailable();
if (unavailable) {
  console.log(`idle cost: skipped, ${unavailable}; ${ORIGINAL}`);
  process.exit(0);
}

const bench = await setUpBench([], { statements: true });
const role = bench.nodeRole!;
// A hot standby of the same worker, as a role of its own (a member of the node's, for its
// rights) so that its statements are counted apart: issue 28 wants at most 1 a minute.
const standbyRole = await createNodeRole(bench.client, bench.url, `pgt_bench_standby_${process.pid}`);
await bench.client.query(`GRANT ${role} TO ${standbyRole.name}`);
const standby = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', '--schema', bench.schema, 'node', '--worker-id', '1', '--log-level', 'warn', '--name', 'idle-standby'], {
  env: { ...process.env, DATABASE_URL: standbyRole.url },
  stdio: ['ignore', 'inherit', 'inherit'],
});
for (let i = 0; ; i++) {
  const { rows } = await bench.client.query<{ n: string | null }>(`SELECT standby_node AS n FROM "${bench.schema}".worker WHERE id = 1`);
  if (rows[0]?.n === 'idle-standby') break;
  if (i > 600) throw new Error('the standby did not stand by within 30 s');
  await sleep(50);
}
// setUpBench returned once the node holds its lease; its start-up reads (resync, scheduler) follow at once.
await sleep(3_000);
await resetStatements(bench.client, role);
await resetStatements(bench.client, standbyRole.name);
await sleep(windowS * 1000);
const stats = await readStatements(bench.client, role, bench.schema);
const standbyStats = await readStatements(bench.client, standbyRole.name, bench.schema);
standby.kill('SIGTERM');
await new Promise((resolve) => standby.once('exit', resolve));
await standbyRole.drop();
await bench.close();

const total = stats.reduce((sum, s) => sum + s.calls, 0);
const perMinute = (total * 60) / windowS;
const list = stats.length > 0 ? stats.map((s) => `${s.calls} × ${s.name}`).join(', ') : 'none';
metric('idle.perMinute', perMinute);
console.log(
  `idle cost, node idle for ${windowS} s: ${Number.isInteger(perMinute) ? perMinute : perMinute.toFixed(1)} statements a minute ` +
    `(${total} in the window: ${list}); ${ORIGINAL}`,
);
const standbyTotal = standbyStats.reduce((sum, s) => sum + s.calls, 0);
const standbyPerMinute = (standbyTotal * 60) / windowS;
metric('idle.standby.perMinute', standbyPerMinute);
console.log(
  `idle cost, its hot standby over the same ${windowS} s: ${Number.isInteger(standbyPerMinute) ? standbyPerMinute : standbyPerMinute.toFixed(1)} statements a minute ` +
    `(${standbyTotal}: ${standbyStats.length > 0 ? standbyStats.map((s) => `${s.calls} × ${s.name}`).join(', ') : 'none'}); before issue 28: ~30/min`,
);
