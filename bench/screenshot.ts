// Not a benchmark: makes the README's pictures of the dashboard over a made-up day (about
// 8 000 runs of 12 commands in 3 groups, busier in the working hours, with a bad hour of
// failures), in the system's Chromium, 1 200 × 1 100 px: the overview (docs/overview.png) and,
// with --path /tasks, the tasks page (docs/dashboard.png).
//   DATABASE_URL=… npx tsx bench/screenshot.ts [--path /] [--out docs/overview.png] [--dark]
import path from 'node:path';
import { chromium } from 'playwright-core';
import pino from 'pino';
import { migrate } from '../src/db/migrate.js';
import { startDashboard } from '../src/http/dashboard/index.js';
import { arg, setUpDatabase } from './lib.js';

const shown = arg('--path') ?? '/';
const out = path.resolve(arg('--out') ?? path.join(import.meta.dirname, '..', 'docs', shown === '/' ? 'overview.png' : 'dashboard.png'));
const db = await setUpDatabase();
const schema = `shot_overview_${process.pid}`;
const s = `"${schema}"`;
await migrate(db.client, schema);
// The page's clock: the end of the made-up day.
const now = new Date('2026-03-10T15:42:20Z');

try {
  await seed();
  await shoot();
} finally {
  await db.client.query(`SET client_min_messages = warning; DROP SCHEMA ${s} CASCADE`);
  await db.close();
}

async function seed(): Promise<void> {
  await db.client.query('SET session_replication_role = replica');
  // Runs every 10 s over 24 h, fewer at night (a run kept when a hash of its slot passes the
  // hour's share); durations by command; 6 % failed, 40 % in the 09:00 hour.
  await db.client.query(
    `WITH slot AS (
       SELECT i, $1::timestamptz - i * interval '10 seconds' AS at
         FROM generate_series(1, 8640) i
     ), run AS (
       SELECT i, at, i % 12 AS c, i % 3 AS g,
              CASE WHEN extract(hour FROM at) = 9 THEN (hashint4(i) & 1023) < 410 ELSE (hashint4(i) & 1023) < 60 END AS failed
         FROM slot
        WHERE (hashint4(i * 7) & 1023) < 1023 * (0.35 + 0.65 * greatest(0, sin(pi() * (extract(hour FROM at) - 6) / 14)))
     ), task AS (
       INSERT INTO ${s}.task (state_id, group_id, command, created, last_state_change, started, finished, attempt, end_reason)
       SELECT CASE WHEN failed THEN 'CF' ELSE 'CS' END, g,
              string_to_array((ARRAY['backup --db orders', 'report daily', 'sync-users', 'thumbnails --size 256', 'import prices.csv',
                                     'reindex search', 'send-mail --queue digest', 'cleanup tmp', 'export invoices', 'ping partners',
                                     'train model-small', 'archive logs'])[c + 1], ' ')::varchar[],
              at, at, at, at + (c * c * 400 + (hashint4(i) & 4095)) * interval '1 ms', 1,
              CASE WHEN failed THEN 'exit_code' ELSE 'completed' END
         FROM run
       RETURNING id, started, finished, end_reason
     )
     INSERT INTO ${s}.task_run (task_id, attempt, worker_id, lease_epoch, node_name, started, finished, end_reason)
     SELECT id, 1, 1, 1, 'node-a', started, finished, end_reason FROM task`,
    [now],
  );
  await db.client.query(`INSERT INTO ${s}.task (state_id, group_id, command, created, last_state_change)
    SELECT (ARRAY['AW', 'DR', 'AW', 'AW'])[i % 4 + 1], i % 3, ARRAY['report', 'weekly']::varchar[], $1::timestamptz, $1::timestamptz FROM generate_series(1, 37) i`, [now]);
  await db.client.query('SET session_replication_role = DEFAULT');
  await db.client.query(`VACUUM ANALYZE ${s}.task`);
  await db.client.query(`VACUUM ANALYZE ${s}.task_run`);
}

async function shoot(): Promise<void> {
  const server = await startDashboard({ connectionString: db.url, schema, host: '127.0.0.1', port: 0, logger: pino({ level: 'warn' }), now: () => now });
  const browser = await chromium.launch({
    executablePath: process.env.PGTASKS_CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 1100 }, colorScheme: process.argv.includes('--dark') ? 'dark' : 'light' });
    await page.goto(`http://127.0.0.1:${server.port}${shown}`);
    await page.locator('html[data-live="open"]').waitFor({ state: 'attached' });
    // The overview's counts, both charts and the durations (its commands' tables go on below).
    await page.screenshot({ path: out });
    console.log(`wrote ${out}`);
  } finally {
    await browser.close();
    await server.close();
  }
}
