// Through PgBouncer in transaction mode (the pool; LISTEN and the worker lock on --session-url,
// PostgreSQL itself) against a direct connection: N × /bin/true at a concurrency, one run each,
// the same server, in one run (issue 26). Skipped, with a line, when pgbouncer is not installed.
//   npx tsx bench/pooler.ts [--quick] [--fast] [--n 5000] [--concurrency 32]
import { arg, metric, setUpBench, timedRun } from './lib.js';
import { findPgBouncer, startPgBouncer, type Bouncer } from '../test/helpers/pgbouncer.js';

const quick = process.argv.includes('--quick');
const n = Number(arg('--n') ?? (quick ? 200 : 5000));
const concurrency = Number(arg('--concurrency') ?? 32);

const found = findPgBouncer();
if ('missing' in found) {
  console.log(`pooler: ${found.missing}`);
} else {
  const direct = await setUpBench(['--max-tasks', String(concurrency)]);
  let directRate: number;
  try {
    directRate = await timedRun(direct, n);
  } finally {
    await direct.close();
  }
  let bouncer: Bouncer | null = null;
  const pooled = await setUpBench(['--max-tasks', String(concurrency)], {
    nodeUrl: async (url) => {
      bouncer = await startPgBouncer(found.bin, url, 'transaction');
      return { url: bouncer.url(new URL(url).pathname.slice(1) || 'postgres'), args: ['--session-url', url] };
    },
  });
  let pooledRate: number;
  try {
    pooledRate = await timedRun(pooled, n);
  } finally {
    await pooled.close();
    await (bouncer as Bouncer | null)?.stop();
  }
  metric(`pooler.${concurrency}.direct`, directRate);
  metric(`pooler.${concurrency}.transaction`, pooledRate);
  console.log(
    `pooler, ${n} × /bin/true at ${concurrency}: direct ${directRate.toFixed(0)}/s; through PgBouncer in transaction mode ` +
      `(--session-url direct, unnamed statements) ${pooledRate.toFixed(0)}/s, ratio ${(pooledRate / directRate).toFixed(2)}`,
  );
}
