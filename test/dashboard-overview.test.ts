// The dashboard's overview (/): its statements' figures for runs seeded around a fixed "now",
// and the page in Chromium showing those numbers in its counts, charts and tables, with no
// failed request and no console error.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { startDashboard, type DashboardServer } from '../src/http/dashboard/index.js';
import { lineChart, niceCeiling } from '../src/http/dashboard/views/charts.js';
import { loadStatements } from '../src/sql/queries/index.js';
import { watched as watchPage } from './helpers/dashboard.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { testLogger } from './helpers/node.js';

const CHROMIUM = process.env.PGTASKS_CHROMIUM ?? '/usr/bin/chromium';
/** A liveness bound for the browser's waits, not a measure. */
const WAIT = { timeout: 20_000 };
/** The overview's clock in this file: every figure below is counted from it. */
const NOW = new Date('2026-03-10T12:30:30Z');

let db: TestDatabase;
let dashboard: DashboardServer;
let browser: Browser | null = null;

/**
 * Tasks and runs as nodes leave them, written past the triggers (a superuser's
 * session_replication_role = replica: ended states cannot be inserted through them).
 *   a  group 1 CS ['job', 'a']: 12:25:10–12:25:12 completed, 12:25:20–12:25:24 completed,
 *      12:29:00–12:30:00 exit_code, 12:30:10–12:30:20 cancelled
 *   b  group 2 CF ['job', 'b']: 10:00–10:10 timeout; 11:40:00–11:40:01 lost_claim (no
 *      process: in no count); yesterday 11:00 to 12:29 (out of the day)
 *   c  group 1 AE: running since 12:28:00 (no task_run row yet: written at its end)
 *   d  group 1 CS: 12:30:25–12:31:00, after NOW: started, not yet ended at NOW
 *   three more tasks in group 3: two DR, one AW
 */
async function seed(): Promise<void> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SET LOCAL session_replication_role = replica');
    const task = async (state: string, group: number, command: string[], live = false): Promise<number> => {
      const { rows } = await client.query<{ id: string }>(
        `INSERT INTO long_task.task (state_id, group_id, command, live_worker_id, live_epoch, started)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
        [state, group, command, live ? 1 : null, live ? 1 : null, live ? '2026-03-10T12:28:00Z' : null],
      );
      return Number(rows[0]!.id);
    };
    const run = async (taskId: number, attempt: number, started: string, finished: string, endReason: string): Promise<void> => {
      await client.query(
        `INSERT INTO long_task.task_run (task_id, attempt, worker_id, lease_epoch, started, finished, end_reason)
         VALUES ($1, $2, 1, 1, $3, $4, $5)`,
        [taskId, attempt, started, finished, endReason],
      );
    };
    const a = await task('CS', 1, ['job', 'a']);
    await run(a, 1, '2026-03-10T12:25:10Z', '2026-03-10T12:25:12Z', 'completed');
    await run(a, 2, '2026-03-10T12:25:20Z', '2026-03-10T12:25:24Z', 'completed');
    await run(a, 3, '2026-03-10T12:29:00Z', '2026-03-10T12:30:00Z', 'exit_code');
    await run(a, 4, '2026-03-10T12:30:10Z', '2026-03-10T12:30:20Z', 'cancelled');
    const b = await task('CF', 2, ['job', 'b']);
    await run(b, 1, '2026-03-10T10:00:00Z', '2026-03-10T10:10:00Z', 'timeout');
    await run(b, 2, '2026-03-10T11:40:00Z', '2026-03-10T11:40:01Z', 'lost_claim');
    await run(b, 3, '2026-03-09T11:00:00Z', '2026-03-09T12:29:00Z', 'completed');
    await task('AE', 1, ['job', 'c'], true);
    const d = await task('CS', 1, ['job', 'd']);
    await run(d, 1, '2026-03-10T12:30:25Z', '2026-03-10T12:31:00Z', 'completed');
    await task('DR', 3, ['job', 'e']);
    await task('DR', 3, ['job', 'e']);
    await task('AW', 3, ['job', 'f']);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }
}

before(async () => {
  db = await createTestDatabase('dashboard_overview');
  await seed();
  dashboard = await startDashboard({ connectionString: db.url, schema: 'long_task', host: '127.0.0.1', port: 0, logger: testLogger, now: () => NOW });
  if (existsSync(CHROMIUM)) {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] });
  }
});

after(async () => {
  await browser?.close();
  await dashboard?.close();
  await db?.close();
});

/** "12:25" → its bucket's counts, from rows of the runs statement. */
function byMinute(rows: Array<{ at: Date; started: number; completed: number; failed: number }>): Map<string, [number, number, number]> {
  return new Map(rows.filter((r) => r.started + r.completed + r.failed > 0).map((r) => [r.at.toISOString().slice(11, 16), [r.started, r.completed, r.failed]]));
}

describe('dashboard overview', () => {
  it('counts runs per minute and per hour, durations per group and the commands, at an injected now', async () => {
    const q = loadStatements('long_task');
    const hour = await q.overviewRunsOverTime(db.pool, { now: NOW, bucket: '1 minute', buckets: 60 });
    assert.equal(hour.rows.length, 60);
    assert.equal(hour.rows[0]!.at.toISOString(), '2026-03-10T11:31:00.000Z');
    assert.equal(hour.rows[59]!.at.toISOString(), '2026-03-10T12:30:00.000Z');
    assert.equal(hour.rows[0]!.now.toISOString(), NOW.toISOString());
    // started, completed, failed: the lost claim at 11:40 and the cancelled run count nowhere
    // but in started (the cancel); d started at 12:30:25 and ends after NOW.
    assert.deepEqual([...byMinute(hour.rows)], [
      ['12:25', [2, 2, 0]],
      ['12:28', [1, 0, 0]],
      ['12:29', [1, 0, 0]],
      ['12:30', [2, 0, 1]],
    ]);
    const day = await q.overviewRunsOverTime(db.pool, { now: NOW, bucket: '1 hour', buckets: 24 });
    assert.equal(day.rows.length, 24);
    assert.equal(day.rows[0]!.at.toISOString(), '2026-03-09T13:00:00.000Z');
    assert.deepEqual([...byMinute(day.rows)], [
      ['10:00', [1, 0, 1]],
      ['12:00', [6, 2, 1]],
    ]);

    const durations = (await q.overviewDurations(db.pool, { now: NOW, hours: 24, limit: 10 })).rows;
    const groups = durations.filter((r) => r.kind === 'group').sort((x, y) => x.group_id! - y.group_id!);
    // Group 1: a's four runs of 2, 4, 60 and 10 s (d ends after NOW); p50 between 4 and 10,
    // p95 = 10 + 0.85 × (60 − 10) (percentile_cont). Group 2: b's timeout of 600 s.
    assert.deepEqual(groups.map((g) => [g.group_id, g.runs, g.failed, Math.round(g.p50_ms!), Math.round(g.p95_ms!), g.max_ms]), [
      [1, 4, 1, 7000, 52_500, 60_000],
      [2, 1, 1, 600_000, 600_000, 600_000],
    ]);
    const slowest = durations.filter((r) => r.kind === 'slowest').map((r) => [r.command, r.runs, r.mean_ms]);
    assert.deepEqual(new Set(slowest.map((s) => JSON.stringify(s))), new Set([JSON.stringify([['job', 'b'], 1, 600_000]), JSON.stringify([['job', 'a'], 4, 19_000])]));
    const failing = durations.filter((r) => r.kind === 'failing').map((r) => [r.command, r.failed, r.runs]);
    assert.equal(failing.length, 2);

    const counts = (await q.overviewStateCounts(db.pool)).rows.map((r) => [r.group_id, r.state_id, r.tasks]);
    assert.deepEqual(counts, [[1, 'AE', 1], [1, 'CS', 2], [2, 'CF', 1], [3, 'AW', 1], [3, 'DR', 2]]);

    // A day later nothing of this is in any window.
    const later = new Date(NOW.getTime() + 25 * 3600_000);
    assert.equal(byMinute((await q.overviewRunsOverTime(db.pool, { now: later, bucket: '1 hour', buckets: 24 })).rows).size, 0);
    assert.equal((await q.overviewDurations(db.pool, { now: later, hours: 24, limit: 10 })).rows.length, 0);
  });

  it('shows the counts, the charts and the tables in Chromium, with no failed request and no console error', async (t) => {
    if (!browser) return t.skip(`chromium not found at ${CHROMIUM}: install it with apt-get install chromium (or set PGTASKS_CHROMIUM)`);
    const { page, problems } = await watchPage(browser, { width: 1200, height: 900 });
    const base = `http://127.0.0.1:${dashboard.port}`;
    await page.goto(`${base}/`);
    await page.locator('html[data-live="open"]').waitFor({ state: 'attached', ...WAIT });

    assert.equal((await page.locator('h1').innerText()).replace(/\s+/g, ' '), 'Overview as of 2026-03-10 12:30:30 UTC');
    assert.equal(await page.locator('nav a[aria-current="page"]').innerText(), 'Overview');
    // Counts: per state in all, and per group with links to the filtered task list.
    assert.equal(await page.locator('[data-state-total="CS"] b').innerText(), '2');
    assert.equal(await page.locator('[data-state-total="DR"] b').innerText(), '2');
    assert.equal(await page.locator('[data-state-total="CC"] b').innerText(), '0');
    assert.equal(await page.locator('tr[data-group="3"] td[data-state="DR"] a').getAttribute('href'), '/tasks?group=3&state=DR');
    assert.equal(await page.locator('table.group-counts tr[data-group="1"] td').last().innerText(), '3');

    // The hour's chart: its totals, and one bucket's numbers in its hover title.
    const hourChart = page.locator('#runs-hour');
    assert.equal(await hourChart.locator('[data-total="started"]').innerText(), '6');
    assert.equal(await hourChart.locator('[data-total="completed"]').innerText(), '2');
    assert.equal(await hourChart.locator('[data-total="failed"]').innerText(), '1');
    assert.equal(await hourChart.locator('svg').getAttribute('role'), 'img');
    assert.equal(await hourChart.locator('rect[data-bucket]').count(), 60);
    assert.equal(await hourChart.locator('rect[data-bucket="59"] title').textContent(), '12:30 UTC: 2 started, 0 completed, 1 failed');
    assert.equal(await hourChart.locator('rect[data-bucket="54"] title').textContent(), '12:25 UTC: 2 started, 2 completed, 0 failed');
    const dayChart = page.locator('#runs-day');
    assert.equal(await dayChart.locator('[data-total="started"]').innerText(), '7');
    assert.equal(await dayChart.locator('[data-total="failed"]').innerText(), '2');
    assert.equal(await dayChart.locator('rect[data-bucket="21"] title').textContent(), '10:00 UTC: 1 started, 0 completed, 1 failed');
    // The same numbers as a table, for a screen reader or a keyboard.
    await dayChart.locator('summary').click();
    assert.equal(await dayChart.locator('tbody tr').nth(23).innerText(), '12:00 UTC\t6\t2\t1');

    // Durations per group, the slowest and the most failing commands.
    assert.equal(await page.locator('table.group-durations tr[data-group="1"] td[data-p95-ms]').getAttribute('data-p95-ms'), '52500');
    assert.equal(await page.locator('table.group-durations tr[data-group="1"] td[data-p50-ms]').innerText(), '7.0 s');
    assert.equal(await page.locator('table.group-durations tr[data-group="2"] td[data-p95-ms]').innerText(), '10 min 0 s');
    assert.deepEqual(await page.locator('table.slowest td.command').allInnerTexts(), ['job b', 'job a']);
    assert.equal(await page.locator('table.failing tr').nth(1).innerText(), 'job a\t1\t4\t25 %');

    // The live part reads itself again (a task event): the same figures, still no error.
    const overview = page.locator('#overview');
    await db.query("INSERT INTO long_task.task (command, state_id, group_id) VALUES ('{job,g}', 'AW', 3)");
    await page.locator('[data-state-total="AW"] b').filter({ hasText: /^2$/ }).waitFor(WAIT);
    assert.equal(await overview.locator('#runs-hour [data-total="started"]').innerText(), '6');
    assert.deepEqual(problems, []);
    await page.close();
  });

  it('draws a chart of nothing, and one of a large count, with whole axis labels and escaped text', () => {
    assert.deepEqual([0, 1, 2, 3, 7, 10, 11, 99, 101, 1999].map(niceCeiling), [1, 1, 2, 5, 10, 10, 20, 100, 200, 2000]);
    const empty = lineChart({ id: 'c', title: 'nothing <yet>', labels: ['a', 'b'], ticks: new Map([[0, 'a']]), series: [{ key: 'started', label: 'started', values: [0, 0] }] }).text;
    assert.doesNotMatch(empty, /NaN|Infinity|undefined/);
    assert.match(empty, /<title id="c-title">nothing &lt;yet&gt;<\/title>/);
    // The axis reads 0 and 1 (a middle line at 0.5 would read 1 again).
    assert.deepEqual([...empty.matchAll(/text-anchor="end">([^<]*)</g)].map((m) => m[1]), ['0', '1']);
    const big = lineChart({ id: 'd', title: 't', labels: ['x'], ticks: new Map(), series: [{ key: 'failed', label: 'failed', values: [123_456] }] }).text;
    assert.deepEqual([...big.matchAll(/text-anchor="end">([^<]*)</g)].map((m) => m[1]), ['0', '100\u202f000', '200\u202f000']);
    assert.match(big, /<title>x: 123\u202f456 failed<\/title>/);
  });

  it('keeps the task list at /tasks, linked from the navigation', async () => {
    const base = `http://127.0.0.1:${dashboard.port}`;
    const list = await fetch(`${base}/tasks`);
    assert.equal(list.status, 200);
    assert.match(await list.text(), /<nav><a href="\/">Overview<\/a><a href="\/tasks" aria-current="page">Tasks<\/a>/);
    const fragment = await fetch(`${base}/?fragment=1`);
    assert.equal(fragment.status, 200);
    const body = await fragment.text();
    assert.doesNotMatch(body, /<html/);
    assert.match(body, /id="runs-hour"/);
  });
});
