// Dashboard page loads with a big table: N tasks (1 000 000 by default) in mixed states and
// groups, loaded in one INSERT ... SELECT, then HTTP GETs of the pages a person opens, each
// repeated: the first tasks page, a filtered one, text searches, deep keyset pages, a task,
// the workers, schedules and groups pages. Prints p50 and max in ms.
//   npx tsx bench/dashboard.ts [--quick] [--n 1000000] [--reps 5] [--waiting-index]
import pino from 'pino';
import { migrate } from '../src/db/migrate.js';
import { startDashboard } from '../src/http/dashboard/index.js';
import { arg, metric, setUpDatabase } from './lib.js';

const quick = process.argv.includes('--quick');
const n = Number(arg('--n') ?? (quick ? 20_000 : 1_000_000));
const reps = Number(arg('--reps') ?? (quick ? 3 : 5));

const db = await setUpDatabase();
const schema = `bench_dash_${process.pid}`;
const s = `"${schema}"`;
await migrate(db.client, schema);

let started = performance.now();
// Rows as the years leave them, written past the triggers (session_replication_role = replica:
// a superuser's bulk load): ended states can't be inserted through them. One every 2 s over
// the last N × 2 s; half CS, a tenth each CF, CC, AW, DR; four groups; one needle for a
// search that must read the whole table to find it.
await db.client.query('SET session_replication_role = replica');
await db.client.query(
  `INSERT INTO ${s}.task (state_id, group_id, priority, command, created, last_state_change, started, finished, attempt, error, end_reason)
   SELECT st, i % 4, i % 5,
          ARRAY['sh', '-c', CASE WHEN i = 7 THEN 'echo needle' ELSE 'echo task ' || i END],
          t, t, CASE WHEN st LIKE 'C%' THEN t END, CASE WHEN st LIKE 'C%' THEN t + interval '1 second' END,
          CASE WHEN st LIKE 'C%' THEN 1 ELSE 0 END,
          CASE WHEN st = 'CF' THEN 'exit code ' || (i % 7 + 1) WHEN st = 'CC' THEN 'Cancelled' END,
          CASE st WHEN 'CS' THEN 'completed' WHEN 'CF' THEN 'exit_code' WHEN 'CC' THEN 'cancelled' END
     FROM (SELECT i, now() - (($1 - i) * interval '2 seconds') AS t,
                  (ARRAY['CS','CS','CS','CS','CS','CF','CC','AW','DR','CS'])[i % 10 + 1] AS st
             FROM generate_series(1, $1) i) g`,
  [n],
);
await db.client.query('SET session_replication_role = DEFAULT');
// A task with three runs and some output, and a few workers.
const taskId = Math.floor(n / 2);
await db.client.query(
  `INSERT INTO ${s}.task_run (task_id, attempt, worker_id, lease_epoch, node_name, started, finished, end_reason)
   SELECT $1, a, 1, 1, 'bench', now() - interval '1 hour', now() - interval '59 minutes', 'completed' FROM generate_series(1, 3) a`,
  [taskId],
);
await db.client.query(`INSERT INTO ${s}.task_output (task_id, attempt, seq, pos, data)
  SELECT $1, 1, k, k * 1000, convert_to(repeat('x', 999) || E'\\n', 'UTF8') FROM generate_series(0, 49) k`, [taskId]);
await db.client.query(`INSERT INTO ${s}.worker (id, group_id, active, locked_until, node_name, task_count, max_task_count)
  SELECT w, w % 4, w % 3 <> 0, now() + interval '1 hour', 'bench-' || w, 3, 10 FROM generate_series(1, 8) w`);
await db.client.query(`UPDATE ${s}.task SET next_start = now() + interval '1 hour', shed_period_id = 'HOU', shed_period_count = 1 WHERE id % 10000 = 1`);
// --waiting-index: the index that queue order would need (not in the migrations; see the report).
if (process.argv.includes('--waiting-index')) {
  await db.client.query(`CREATE INDEX task_waiting_order_idx ON ${s}.task (priority, last_state_change, id) WHERE state_id = 'AW'`);
}
await db.client.query(`ANALYZE ${s}.task`);
const loadSeconds = (performance.now() - started) / 1000;

const server = await startDashboard({ connectionString: db.url, schema, host: '127.0.0.1', port: 0, logger: pino({ level: 'warn' }) });
const base = `http://127.0.0.1:${server.port}`;

async function get(path: string): Promise<string> {
  const response = await fetch(base + path);
  const text = await response.text();
  if (response.status !== 200) throw new Error(`GET ${path}: ${response.status} ${text}`);
  return text;
}

function nextLink(page: string): string | null {
  return /<a href="([^"]+)" rel="next">/.exec(page)?.[1]?.replaceAll('&amp;', '&') ?? null;
}

/** The cursor 50 pages in: each page's next link followed. */
async function deepPage(first: string): Promise<string> {
  let path = first;
  for (let i = 0; i < 50; i++) {
    const next = nextLink(await get(path));
    if (!next) break;
    path = next;
  }
  return path;
}

const pages: Array<[string, string]> = [
  ['first tasks page', '/tasks'],
  ['state=CF, group=1', '/tasks?state=CF&group=1'],
  ['state=AE (none: reads every id)', '/tasks?state=AE'],
  ['search "exit code 3" (common)', '/tasks?q=exit+code+3'],
  ['search "needle" (one row, the oldest end)', '/tasks?q=needle'],
  ['search by id', `/tasks?q=${taskId}`],
  ['page 51, newest first (next × 50)', await deepPage('/tasks')],
  ['an old cursor: after=1000', '/tasks?after=1000'],
  ['waiting, queue order', '/tasks?state=AW&sort=queue'],
  ['waiting, queue order, page 51', await deepPage('/tasks?state=AW&sort=queue')],
  ['a task (3 runs)', `/tasks/${taskId}`],
  ['its output (50 chunks)', `/tasks/${taskId}/output?attempt=1`],
  ['workers', '/workers'],
  ['schedules', '/schedules'],
  ['groups (counts every task)', '/groups'],
];

const lines: string[] = [];
for (const [name, path] of pages) {
  await get(path); // warm: the first read of a page brings its rows into the cache
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    started = performance.now();
    await get(path);
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  const p50 = times[Math.floor(times.length / 2)]!;
  const max = times[times.length - 1]!;
  lines.push(`${name.padEnd(44)} p50 ${p50.toFixed(1).padStart(7)} ms   max ${max.toFixed(1).padStart(7)} ms   ${path.length > 60 ? `${path.slice(0, 57)}...` : path}`);
  if (name === 'first tasks page') metric('dashboard.tasks.p50', p50);
  if (name.startsWith('page 51, newest')) metric('dashboard.deep.p50', p50);
}

await server.close();
await db.client.query(`DROP SCHEMA ${s} CASCADE`);
await db.close();
console.log(`dashboard page loads, ${n.toLocaleString('en')} tasks (loaded in ${loadSeconds.toFixed(0)} s), ${reps} GETs each after one to warm:`);
for (const line of lines) console.log(`  ${line}`);
