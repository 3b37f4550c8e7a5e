// Dashboard page loads with a big table: N tasks (1 000 000 by default) in mixed states and
// groups, and N runs, loaded in one INSERT ... SELECT each, then HTTP GETs of the pages a
// person opens, each repeated: the overview, the first tasks page, a filtered one, text
// searches, deep keyset pages, a task, the workers, schedules and groups pages, a task with
// 10 000 runs (and its size) and a DAG's graph; then the overview's statements one by one.
// Prints p50 and max in ms.
// Then an open page's requests per minute (Chromium, when there is one): the tasks list and a
// task page left open while a run prints a line a second and, every 10 s, a task ends in
// another group (the notifications a node sends for these), the live stream not counted.
//   npx tsx bench/dashboard.ts [--quick] [--n 1000000] [--reps 5] [--waiting-index] [--open-seconds 60]
import { existsSync } from 'node:fs';
import pino from 'pino';
import { chromium } from 'playwright-core';
import { migrate } from '../src/db/migrate.js';
import { startDashboard } from '../src/http/dashboard/index.js';
import { loadStatements } from '../src/sql/queries/index.js';
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
          ARRAY['sh', '-c', CASE WHEN i = 7 THEN 'echo needle' ELSE 'echo task ' || i % 97 END],
          t, t, CASE WHEN st LIKE 'C%' THEN t END, CASE WHEN st LIKE 'C%' THEN t + interval '1 second' END,
          CASE WHEN st LIKE 'C%' THEN 1 ELSE 0 END,
          CASE WHEN st = 'CF' THEN 'exit code ' || (i % 7 + 1) WHEN st = 'CC' THEN 'Cancelled' END,
          CASE st WHEN 'CS' THEN 'completed' WHEN 'CF' THEN 'exit_code' WHEN 'CC' THEN 'cancelled' END
     FROM (SELECT i, now() - (($1 - i) * interval '2 seconds') AS t,
                  (ARRAY['CS','CS','CS','CS','CS','CF','CC','AW','DR','CS'])[i % 10 + 1] AS st
             FROM generate_series(1, $1) i) g`,
  [n],
);
const taskId = Math.floor(n / 2);
// One run per task (the tasks with three and with 10 000 runs below aside), as long as the task row says:
// N runs over the last N × 2 s (1 000 000: 23 days, 43 200 in the last 24 hours, 1 800 in
// the last hour), lasting 0 to 21.6 s by command, the waiting and draft ones failed before a
// retry. What the overview reads (its figures in docs/dashboard.md "Overview").
await db.client.query(
  `INSERT INTO ${s}.task_run (task_id, attempt, worker_id, lease_epoch, node_name, started, finished, end_reason, exit_code)
   SELECT id, 1, 1 + id % 8, 1, 'bench', created,
          created + (id % 97) * interval '100 ms' + (id % 13) * interval '1 second',
          CASE WHEN state_id IN ('AW', 'DR') THEN 'exit_code' ELSE end_reason END,
          CASE WHEN state_id IN ('AW', 'DR', 'CF') THEN 1 WHEN state_id = 'CS' THEN 0 END
     FROM ${s}.task WHERE id NOT IN ($1::bigint, $1::bigint + 1)`,
  [taskId],
);
await db.client.query('SET session_replication_role = DEFAULT');
// A task with three runs and some output, and a few workers.
await db.client.query(
  `INSERT INTO ${s}.task_run (task_id, attempt, worker_id, lease_epoch, node_name, started, finished, end_reason)
   SELECT $1, a, 1, 1, 'bench', now() - interval '1 hour', now() - interval '59 minutes', 'completed' FROM generate_series(1, 3) a`,
  [taskId],
);
await db.client.query(`INSERT INTO ${s}.task_output (task_id, attempt, seq, pos, data)
  SELECT $1, 1, k, k * 1000, convert_to(repeat('x', 999) || E'\\n', 'UTF8') FROM generate_series(0, 49) k`, [taskId]);
// A task with 10 000 runs (a 10-second schedule for 28 hours), each with a 2 KB output tail and
// every tenth a long error: its page shows 50 of them and none of that text (issue 31).
const manyRuns = taskId + 1;
await db.client.query(
  `INSERT INTO ${s}.task_run (task_id, attempt, worker_id, lease_epoch, node_name, started, finished, end_reason, error, output, cpu_user_ms, cpu_system_ms, max_rss_kb)
   SELECT $1, a, 1, 1, 'bench', now() - (10001 - a) * interval '10 seconds', now() - (10001 - a) * interval '10 seconds' + interval '1.2 seconds',
          CASE WHEN a % 10 = 0 THEN 'exit_code' ELSE 'completed' END, CASE WHEN a % 10 = 0 THEN 'exit code 1' || E'\\n' || repeat('e', 2000) END,
          repeat('o', 2000), 900, 100, 20000
     FROM generate_series(1, 10000) a`,
  [manyRuns],
);
await db.client.query('SET session_replication_role = replica');
await db.client.query(`UPDATE ${s}.task SET attempt = 10000 WHERE id = $1`, [manyRuns]);
await db.client.query('SET session_replication_role = DEFAULT');
// A DAG of 1 + 10 + 100 + 1 000 tasks (ten dependents each), for the graph around a task of its
// second level (3 levels each way, 50 tasks) and for the whole DAG's page (100 tasks).
const dagRoot = Number((await db.client.query<{ id: string }>(`INSERT INTO ${s}.task (command, state_id) VALUES ('{true}', 'DR') RETURNING id`)).rows[0]!.id);
let level = [dagRoot];
const dagLevels: number[][] = [];
for (let depth = 0; depth < 3; depth++) {
  const { rows } = await db.client.query<{ id: string }>(
    `INSERT INTO ${s}.task (command, state_id, depends_on) SELECT '{true}', 'DR', ARRAY[p] FROM unnest($1::bigint[]) p, generate_series(1, 10) RETURNING id`,
    [level],
  );
  level = rows.map((row) => Number(row.id));
  dagLevels.push(level);
}
await db.client.query(`INSERT INTO ${s}.worker (id, group_id, active, locked_until, node_name, task_count, max_task_count)
  SELECT w, w % 4, w % 3 <> 0, now() + interval '1 hour', 'bench-' || w, 3, 10 FROM generate_series(1, 8) w`);
await db.client.query(`UPDATE ${s}.task SET next_start = now() + interval '1 hour', shed_period_id = 'HOU', shed_period_count = 1 WHERE id % 10000 = 1`);
// --waiting-index: the index that queue order would need (not in the migrations; see the report).
if (process.argv.includes('--waiting-index')) {
  await db.client.query(`CREATE INDEX task_waiting_order_idx ON ${s}.task (priority, last_state_change, id) WHERE state_id = 'AW'`);
}
// As autovacuum leaves them: the visibility map set, so index-only scans read no heap.
await db.client.query(`VACUUM ANALYZE ${s}.task`);
await db.client.query(`VACUUM ANALYZE ${s}.task_run`);
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
  ['overview (4 statements, one transaction)', '/'],
  ['overview, its live part', '/?fragment=1'],
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
  ['a task with 10 000 runs (its newest 50)', `/tasks/${manyRuns}`],
  ['its oldest 50 runs (runs_before=51)', `/tasks/${manyRuns}?runs_before=51`],
  ['a DAG task: its graph (50 of 111 around it)', `/tasks/${dagLevels[0]![0]}`],
  ['its whole DAG (100 of 1 111 tasks)', `/tasks/${dagRoot}/graph`],
  ['its output (50 chunks)', `/tasks/${taskId}/output?attempt=1`],
  ['workers', '/workers'],
  ['schedules', '/schedules'],
  ['groups (counts every task)', '/groups'],
];

const lines: string[] = [];
const sizes = new Map<string, number>();
for (const [name, path] of pages) {
  sizes.set(name, Buffer.byteLength(await get(path))); // warm: the first read of a page brings its rows into the cache
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
  if (name.startsWith('overview (')) metric('dashboard.overview.p50', p50);
  if (name.startsWith('page 51, newest')) metric('dashboard.deep.p50', p50);
  if (name.startsWith('a task with 10 000 runs')) {
    metric('dashboard.task10k.p50', p50);
    metric('dashboard.task10k.bytes', sizes.get(name)!);
  }
}

const openSeconds = Number(arg('--open-seconds') ?? (quick ? 20 : 60));
const chromiumPath = process.env.PGTASKS_CHROMIUM ?? '/usr/bin/chromium';
let openLines: string[] = [`open pages: skipped (no chromium at ${chromiumPath})`];
if (existsSync(chromiumPath)) openLines = await openPages();

/** Requests per minute of a page left open while a run prints and tasks end elsewhere. */
async function openPages(): Promise<string[]> {
  const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] });
  const out: string[] = [];
  // The printing task: a run in progress (attempt 4, live), its output appended below.
  const { rows } = await db.client.query<{ id: string }>(
    `INSERT INTO ${s}.task (state_id, group_id, command, attempt, started) VALUES ('DR', 0, '{sh,-c,"echo a line a second"}', 1, now()) RETURNING id`);
  const printing = Number(rows[0]!.id);
  try {
    for (const [name, path] of [['tasks list', '/tasks'], ['a task printing a line a second', `/tasks/${printing}`]] as const) {
      const page = await browser.newPage();
      let requests = 0;
      page.on('request', (r) => {
        if (!new URL(r.url()).pathname.startsWith('/events')) requests += 1;
      });
      await page.goto(base + path);
      await page.locator('html[data-live="open"]').waitFor({ state: 'attached', timeout: 30_000 });
      const loaded = requests;
      const began = performance.now();
      for (let second = 1; second <= openSeconds; second++) {
        await db.client.query(`INSERT INTO ${s}.task_output (task_id, attempt, seq, pos, data)
          VALUES ($1, 1, $2, $2 * 12, convert_to('line ' || lpad($2::text, 6, '0') || E'\\n', 'UTF8'))`, [printing, second]);
        await db.client.query(`SELECT ${s}.notify_event($1, 'output', p_ids => $2::bigint[])`, [schema, [printing]]);
        if (second % 10 === 0) await db.client.query(`SELECT ${s}.notify_event($1, 'ended', p_ids => $2::bigint[])`, [schema, [second]]);
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, began + second * 1000 - performance.now())));
      }
      const perMinute = ((requests - loaded) * 60) / openSeconds;
      out.push(`${`open ${openSeconds} s: ${name}`.padEnd(44)} ${perMinute.toFixed(1).padStart(6)} requests/min beyond its stream (${loaded} to load)`);
      metric(path === '/tasks' ? 'dashboard.open.list.rpm' : 'dashboard.open.task.rpm', perMinute);
      await page.close();
      // The next page starts from a clean run.
      await db.client.query(`DELETE FROM ${s}.task_output WHERE task_id = $1`, [printing]);
    }
  } finally {
    await browser.close();
  }
  return out;
}

// The overview's statements one at a time, as the page sends them (without JIT: see
// overviewSettings).
const statements = loadStatements(schema);
await db.client.query('SET jit = off');
const overviewStatements: Array<[string, () => Promise<unknown>]> = [
  ['counts per group and state', () => statements.overviewStateCounts(db.client)],
  ['runs per minute, last hour', () => statements.overviewRunsOverTime(db.client, { now: null, bucket: '1 minute', buckets: 60 })],
  ['runs per hour, last 24 h', () => statements.overviewRunsOverTime(db.client, { now: null, bucket: '1 hour', buckets: 24 })],
  ['durations, slowest and failing commands', () => statements.overviewDurations(db.client, { now: null, hours: 24, limit: 10 })],
];
for (const [name, run] of overviewStatements) {
  await run();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    started = performance.now();
    await run();
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  lines.push(`overview statement: ${name.padEnd(40)} p50 ${times[Math.floor(times.length / 2)]!.toFixed(1).padStart(7)} ms   max ${times[times.length - 1]!.toFixed(1).padStart(7)} ms`);
}

await server.close();
await db.client.query(`DROP SCHEMA ${s} CASCADE`);
await db.close();
console.log(`dashboard page loads, ${n.toLocaleString('en')} tasks and runs (loaded in ${loadSeconds.toFixed(0)} s), ${reps} GETs each after one to warm:`);
for (const line of [...lines, ...openLines]) console.log(`  ${line}`);
const sized = ['a task with 10 000 runs (its newest 50)', 'its whole DAG (100 of 1 111 tasks)'];
console.log(`page sizes: ${sized.map((name) => `${name}: ${((sizes.get(name) ?? 0) / 1024).toFixed(1)} KB`).join('; ')}`);
