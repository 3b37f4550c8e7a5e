// Retention under load: a table holding N ended tasks (each with its run) of group 1, pruned by
// the node's own retention pass (group 1's keep_ended), while the same node runs /bin/true at
// 32 in group 0 as fast as it can. Reported: the node's throughput while the pass runs, as a
// ratio to its throughput on the same table just before; the longest lock wait seen (pg_locks
// sampled every 5 ms); the longest claim and run-end statements of the node in each phase; the
// pass's rate; the table and index sizes before and after (the space a delete frees is reused
// by later rows once vacuumed, not returned to the system).
//   npx tsx bench/retention.ts [--quick] [--n 5000000]
import pg from 'pg';
import { setUpBench, metric, arg } from './lib.js';
import { readStatements, resetStatements, sleep, statementsUnavailable } from './statements.js';

const quick = process.argv.includes('--quick');
const n = Number(arg('--n') ?? (quick ? 20_000 : 5_000_000));
const ROUND = quick ? 500 : 4_000;

const unavailable = await statementsUnavailable();
if (unavailable) {
  console.log(`retention: not measured (${unavailable})`);
  process.exit(0);
}
const bench = await setUpBench(['--max-tasks', '32', '--prune-every', '1s'], { statements: true });
const { client } = bench;
const s = `"${bench.schema}"`;
const fmt = (v: number): string => Math.round(v).toLocaleString('en-US').replace(/,/g, ' ');

// The ended rows, loaded as a restore would (triggers off for this session: no task may be
// inserted ended otherwise), then analyzed, as autovacuum would have by then.
const loadStarted = performance.now();
for (let done = 0; done < n; done += 500_000) {
  const count = Math.min(500_000, n - done);
  await client.query('SET session_replication_role = replica');
  await client.query(
    `WITH t AS (
       INSERT INTO ${s}.task (state_id, group_id, command, attempt, started, finished, end_reason, exit_code)
       SELECT 'CS', 1, '{/bin/true}', 1, now() - interval '2 days', now() - interval '2 days', 'completed', 0 FROM generate_series(1, $1)
       RETURNING id, started, finished)
     INSERT INTO ${s}.task_run (task_id, attempt, worker_id, lease_epoch, started, finished, exit_code, end_reason)
     SELECT id, 1, 1, 1, started, finished, 0, 'completed' FROM t`,
    [count],
  );
  await client.query('RESET session_replication_role');
}
await client.query(`VACUUM ANALYZE ${s}.task`);
await client.query(`VACUUM ANALYZE ${s}.task_run`);
const loadSecs = (performance.now() - loadStarted) / 1000;

async function sizes(): Promise<string> {
  const { rows } = await client.query<{ task: string; task_idx: string; run: string; run_idx: string }>(
    `SELECT pg_size_pretty(pg_table_size('${s}.task')) AS task, pg_size_pretty(pg_indexes_size('${s}.task')) AS task_idx,
            pg_size_pretty(pg_table_size('${s}.task_run')) AS run, pg_size_pretty(pg_indexes_size('${s}.task_run')) AS run_idx`,
  );
  const r = rows[0]!;
  return `task ${r.task} + indexes ${r.task_idx}, task_run ${r.run} + indexes ${r.run_idx}`;
}

/** The longest lock wait seen while `during` runs: pg_locks.waitstart, every 5 ms. */
async function watchLocks<T>(during: () => Promise<T>): Promise<{ result: T; longestMs: number }> {
  const watcher = new pg.Client({ connectionString: bench.url });
  await watcher.connect();
  let longestMs = 0;
  let watching = true;
  const loop = (async () => {
    while (watching) {
      const { rows } = await watcher.query<{ ms: number | null }>(
        'SELECT (extract(epoch FROM max(clock_timestamp() - waitstart)) * 1000)::float8 AS ms FROM pg_locks WHERE NOT granted');
      longestMs = Math.max(longestMs, rows[0]!.ms ?? 0);
      await sleep(5);
    }
  })();
  try {
    return { result: await during(), longestMs };
  } finally {
    watching = false;
    await loop;
    await watcher.end();
  }
}

/** Queues `count` tasks in group 0 and returns the node's rate (ends/s) running them. */
async function round(count: number): Promise<number> {
  const { rows: ids } = await client.query<{ first: string }>(
    `WITH t AS (INSERT INTO ${s}.task (state_id, command) SELECT 'AW', '{/bin/true}' FROM generate_series(1, $1) RETURNING id)
     SELECT min(id) AS first FROM t`, [count]);
  const started = performance.now();
  // Read by id (the round's own rows): a count over the whole table would itself load the server.
  for (;;) {
    const { rows } = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${s}.task WHERE id >= $1 AND group_id = 0 AND state_id NOT LIKE 'C%'`, [ids[0]!.first]);
    if (rows[0]!.n === 0) break;
    await sleep(20);
  }
  return count / ((performance.now() - started) / 1000);
}

const left = async (): Promise<number> =>
  Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${s}.task WHERE group_id = 1`)).rows[0]!.n);
/**
 * The passes that started after `since` (database time) and finished: the tasks each deleted,
 * by its start. Read every 200 ms: with --prune-every 1s, an empty pass follows the big one
 * within a second and overwrites the row's figures (the report once said "counted 0").
 */
const passes = new Map<string, number>();
const watchPasses = (since: Date): (() => void) => {
  const timer = setInterval(() => {
    client
      .query<{ started: string; last_tasks: string }>(
        `SELECT last_started::text AS started, last_tasks FROM ${s}.maintenance
          WHERE name = 'retention' AND last_started >= $1 AND last_finished >= last_started`,
        [since],
      )
      .then(({ rows }) => rows.forEach((r) => passes.set(r.started, Number(r.last_tasks))))
      .catch(() => undefined);
  }, 200);
  return () => clearInterval(timer);
};
const nodeMax = async (): Promise<string> => {
  const stats = await readStatements(client, bench.nodeRole!, bench.schema);
  const max = (name: string): string => (stats.find((x) => x.name === name)?.maxMs ?? 0).toFixed(1);
  return `claim max ${max('claimTasks')} ms, turnover (ends + claim) max ${max('turnover')} ms, run ends max ${max('finishRuns')} ms`;
};

const before = await sizes();
// Without pruning: the same table, group 1 with no keep_ended yet.
await round(ROUND); // warm-up
await resetStatements(client, bench.nodeRole!);
const baseline = await watchLocks(() => round(ROUND));
const baselineStatements = await nodeMax();

// With pruning: keep_ended set; the node's next pass (within 1 s) deletes in batches.
await resetStatements(client, bench.nodeRole!);
const pruneStarted = performance.now();
const { rows: since } = await client.query<{ now: Date }>(`INSERT INTO ${s}.task_group (id, keep_ended) VALUES (1, '1 day') RETURNING now()`);
const stopWatching = watchPasses(since[0]!.now);
const during = await watchLocks(async () => {
  const rates: number[] = [];
  do rates.push(await round(ROUND));
  while (passes.size === 0);
  return rates;
});
stopWatching();
const passTasks = [...passes.values()].reduce((a, b) => a + b, 0);
const remaining = await left();
if (remaining > 0) throw new Error(`the pass left ${remaining} of the ended tasks`);
const pruneSecs = (performance.now() - pruneStarted) / 1000;
const duringStatements = await nodeMax();
const after = await sizes();
// What a plain VACUUM (autovacuum's) makes of it: the space is reused, not returned.
await client.query(`VACUUM ${s}.task`);
await client.query(`VACUUM ${s}.task_run`);
const vacuumed = await sizes();
const rate = during.result.reduce((a, b) => a + b, 0) / during.result.length;
const ratio = rate / baseline.result;
metric('retention.ratio', ratio);
metric('retention.longestLockWaitMs', Math.max(baseline.longestMs, during.longestMs));
console.log(
  `retention: ${fmt(n)} ended tasks with their runs (loaded in ${loadSecs.toFixed(0)} s), pruned by the node's own pass in ${pruneSecs.toFixed(0)} s ` +
    `(${fmt(n / pruneSecs)} tasks/s, batches of 1 000, resting 3 times as long as each took; its passes counted ${fmt(passTasks)}) while it ran /bin/true at 32: ` +
    `${rate.toFixed(0)}/s during vs ${baseline.result.toFixed(0)}/s before, ratio ${ratio.toFixed(2)} (${during.result.length} rounds of ${fmt(ROUND)}); ` +
    `longest lock wait seen ${during.longestMs.toFixed(1)} ms during (${baseline.longestMs.toFixed(1)} ms before); ` +
    `node statements before: ${baselineStatements}; during: ${duringStatements}; sizes before: ${before}; after: ${after}; after VACUUM: ${vacuumed}`,
);
await bench.close();
