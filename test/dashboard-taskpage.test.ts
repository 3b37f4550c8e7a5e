// The task page in a real browser (the system's Chromium, driven by playwright-core) against a
// real database: the dependency graph (its tasks, states, rules, links and bounds), the page of
// a whole DAG, the run timeline and the runs table, paging through runs, and a task with
// 10 000 runs whose page stays small. Every page is watched for failed requests and console
// errors. History (ended tasks, runs) is written by SQL past the triggers, as a bulk load
// would (session_replication_role = replica): the pages read rows, not how they came.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it, type TestContext } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startDashboard, type DashboardServer } from '../src/http/dashboard/index.js';
import { watched as watchPage } from './helpers/dashboard.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { addTask, testLogger } from './helpers/node.js';

const CHROMIUM = process.env.PGTASKS_CHROMIUM ?? '/usr/bin/chromium';
/** Liveness bounds for the browser's waits, not measures. */
const WAIT = { timeout: 20_000 };
/** The 10 000-run page: the bound on its size. Its time (1 s asked) is measured and printed; the test allows 10 s (a loaded machine). */
const PAGE_BYTES = 300 * 1024;
const PAGE_LIVENESS_MS = 10_000;

let db: TestDatabase;
let dashboard: DashboardServer;
let browser: Browser | null = null;
let base: string;

before(async () => {
  db = await createTestDatabase('dashboard_taskpage');
  dashboard = await startDashboard({ connectionString: db.url, schema: 'long_task', host: '127.0.0.1', port: 0, logger: testLogger });
  base = `http://127.0.0.1:${dashboard.port}`;
  if (existsSync(CHROMIUM)) {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] });
  }
});

after(async () => {
  await browser?.close();
  await dashboard.close();
  await db.close();
});

/** Writes rows as history: past the triggers, in one transaction. */
async function history(sql: string, values: unknown[] = []): Promise<void> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SET LOCAL session_replication_role = replica');
    await client.query(sql, values);
    await client.query('COMMIT');
  } finally {
    client.release();
  }
}

async function dependent(dependsOn: number[], rule = 'all_success', command = ['true']): Promise<number> {
  const { rows } = await db.query<{ id: string }>(
    "INSERT INTO long_task.task (command, state_id, group_id, depends_on, depends_rule) VALUES ($1, 'DR', 31, $2, $3) RETURNING id",
    [command, dependsOn, rule],
  );
  return Number(rows[0]!.id);
}

interface Watched {
  page: Page;
  /** Failed requests, 4xx/5xx answers and console errors seen so far. */
  problems: string[];
}

/** A page watched for trouble from its first request (test/helpers/dashboard.ts). */
async function watched(t: TestContext): Promise<Watched | null> {
  if (!browser) {
    t.skip(`chromium not found at ${CHROMIUM}: install it with apt-get install chromium (or set PGTASKS_CHROMIUM)`);
    return null;
  }
  return watchPage(browser, { width: 1300, height: 800 });
}

/** Goes to a page and waits for its live stream (the script ran, its first refresh was asked). */
async function visit(w: Watched, path: string): Promise<void> {
  await w.page.goto(base + path);
  await w.page.locator('html[data-live="open"]').waitFor({ state: 'attached', ...WAIT });
}

const nodeOf = (page: Page, id: number) => page.locator(`svg.graph a.node[data-id="${id}"]`);

async function drawnIds(page: Page): Promise<number[]> {
  return Promise.all((await page.locator('svg.graph a.node').all()).map(async (node) => Number(await node.getAttribute('data-id'))));
}

describe('task page', () => {
  // A DAG: a (CS) ← b (CF); c waits for b if it fails (any_failed); d for a and b, however
  // they end (all_done); a chain e1 ← e2 ← e3 ← e4 after c, and 60 tasks after e1.
  let a = 0, b = 0, c = 0, d = 0;
  const e: number[] = [];
  const fan: number[] = [];

  before(async () => {
    a = await addTask(db, ['./extract.sh'], { state: 'DR', group: 31 });
    b = await dependent([a], 'all_success', ['./report.sh', '--month', '2026-11']);
    c = await dependent([b], 'any_failed', ['./notify.sh', 'it failed']);
    d = await dependent([a, b], 'all_done', ['./cleanup.sh']);
    e.push(await dependent([c]));
    for (let i = 1; i < 4; i++) e.push(await dependent([e[i - 1]!]));
    const { rows } = await db.query<{ id: string }>(
      "INSERT INTO long_task.task (command, state_id, group_id, depends_on) SELECT ARRAY['fan', i::text], 'DR', 31, $1 FROM generate_series(1, 60) i RETURNING id", [[e[0]]]);
    fan.push(...rows.map((row) => Number(row.id)));
    await history("UPDATE long_task.task SET state_id = 'CS', end_reason = 'completed', attempt = 1 WHERE id = $1", [a]);
    await history("UPDATE long_task.task SET state_id = 'CF', end_reason = 'exit_code', attempt = 1 WHERE id = $1", [b]);
    await history("UPDATE long_task.task SET state_id = 'AW' WHERE id = ANY ($1)", [[c, d]]);
  });

  it("draws a task's dependency graph: its tasks with their states and rules, 3 levels down, each a link", async (t) => {
    const w = await watched(t);
    if (!w) return;
    const { page } = w;
    await visit(w, `/tasks/${a}`);
    // a's dependents: b and d (1), c (2), e1 (3); e2 is the 4th level: not drawn, counted.
    const drawn = await drawnIds(page);
    assert.deepEqual(drawn.sort((x, y) => x - y), [a, b, c, d, e[0]!]);
    assert.equal(await nodeOf(page, a).getAttribute('class'), 'node st-CS focus');
    // The state in words as well as in colour; the rule of each task with prerequisites.
    assert.match(await nodeOf(page, a).textContent() ?? '', new RegExp(`${a} · CS completed`));
    assert.match(await nodeOf(page, b).textContent() ?? '', new RegExp(`${b} · CF exit_code[\\s\\S]*./report.sh --month 2026-11[\\s\\S]*runs if all succeed`));
    assert.match(await nodeOf(page, c).textContent() ?? '', new RegExp(`${c} · AW waiting[\\s\\S]*runs if any fails`));
    assert.match(await nodeOf(page, d).textContent() ?? '', /runs when all end/);
    // e1 has e2 and 60 more after it, none drawn: at least 61 (counted up to 100).
    assert.match(await nodeOf(page, e[0]!).textContent() ?? '', /61 more after/);
    // Edges: a→b, a→d, b→d, b→c, c→e1; the one into c drawn by c's rule.
    assert.equal(await page.locator('svg.graph path.edge').count(), 5);
    assert.equal(await page.locator('svg.graph path.edge.rule-any_failed').count(), 1, 'b → c');
    assert.equal(await page.locator('svg.graph path.edge.rule-all_done').count(), 2, 'a → d, b → d');
    await nodeOf(page, c).click();
    await page.waitForURL(`${base}/tasks/${c}`, WAIT);
    assert.match(await page.locator('h1').innerText(), new RegExp(`^Task ${c}\\b`));
    assert.deepEqual(w.problems, []);
    await page.close();
  });

  it('bounds the graph: 20 of a fan, the 50 nearest tasks; and draws the whole DAG on a page of its own', async (t) => {
    const w = await watched(t);
    if (!w) return;
    const { page } = w;
    // Around e1: c, b, a up (3 levels); down, 20 of the 61 after it (e2 and the 60: which 20 is
    // the index's order), the rest counted; e3 and e4 after e2 when e2 is among them.
    await visit(w, `/tasks/${e[0]}`);
    const drawn = await drawnIds(page);
    for (const id of [e[0]!, c, b, a]) assert.ok(drawn.includes(id), `task ${id} is drawn`);
    assert.equal(drawn.filter((id) => fan.includes(id) || id === e[1]).length, 20);
    const chain = drawn.includes(e[1]!) ? [e[2]!, e[3]!] : [];
    for (const id of chain) assert.ok(drawn.includes(id), `task ${id} is drawn`);
    assert.equal(drawn.length, 4 + 20 + chain.length);
    assert.match(await nodeOf(page, e[0]!).textContent() ?? '', /41 more after/);
    // A hub of 30 dependents, 10 of them with 5 each: 81 tasks within 2 levels; the 50 nearest drawn.
    const hub = await addTask(db, ['hub'], { state: 'DR', group: 31 });
    const { rows: spokes } = await db.query<{ id: string }>(
      "INSERT INTO long_task.task (command, state_id, group_id, depends_on) SELECT ARRAY['spoke', i::text], 'DR', 31, $1 FROM generate_series(1, 30) i RETURNING id", [[hub]]);
    for (const spoke of spokes.slice(0, 10)) {
      await db.query("INSERT INTO long_task.task (command, state_id, group_id, depends_on) SELECT ARRAY['rim', i::text], 'DR', 31, $1 FROM generate_series(1, 5) i", [[Number(spoke.id)]]);
    }
    await visit(w, `/tasks/${hub}`);
    assert.equal(await page.locator('svg.graph a.node').count(), 50);
    assert.match(await page.locator('#task-graph p.hint').innerText(), /^50 tasks: 3 levels/);
    assert.match(await nodeOf(page, hub).textContent() ?? '', /10 more after/);
    await visit(w, `/tasks/${e[0]}`);
    await page.getByRole('link', { name: 'The whole DAG' }).click();
    await page.waitForURL(`${base}/tasks/${e[0]}/graph`, WAIT);
    // The whole DAG: a to d, e1 to e4 and the 60: 68 tasks, all drawn (its bound is 100).
    await page.locator('svg.graph').waitFor(WAIT);
    assert.equal(await page.locator('svg.graph a.node').count(), 68);
    assert.match(await page.locator('#task-graph p.hint').innerText(), /^68 tasks\.$/);
    assert.equal(await page.locator('svg.graph path.edge').count(), 5 + 3 + 60);
    await nodeOf(page, d).click();
    await page.waitForURL(`${base}/tasks/${d}`, WAIT);
    await page.locator('#task-graph').waitFor(WAIT);
    assert.deepEqual(w.problems, []);
    await page.close();
  });

  it('answers a task without dependencies, and bad input, in one line', async () => {
    const alone = await addTask(db, ['true'], { state: 'DR', group: 31 });
    const page = await (await fetch(`${base}/tasks/${alone}`)).text();
    assert.doesNotMatch(page, /svg class="graph"/);
    assert.match(await (await fetch(`${base}/tasks/${alone}/graph`)).text(), new RegExp(`task ${alone} has no prerequisites and no dependents`));
    const missing = await fetch(`${base}/tasks/999999999/graph`);
    assert.equal(missing.status, 404);
    assert.equal(await missing.text(), 'task 999999999 not found\n');
    const bad = await fetch(`${base}/tasks/${a}/graph?fragment=x`);
    assert.equal(bad.status, 400);
    assert.equal(await bad.text(), 'querystring/fragment must be one of around, dag\n');
  });
});

describe('runs on the task page', () => {
  /** The runs written for `task`: attempt a started 10 s after a − 1, ran (a % 5 + 1) × 100 ms. */
  const reasonOf = (a: number): string => (a % 15 === 0 ? 'timeout' : a % 10 === 0 ? 'exit_code' : 'completed');
  async function runsOf(task: number, attempts: number, outputBytes: number): Promise<void> {
    await history(
      `INSERT INTO long_task.task_run (task_id, attempt, worker_id, lease_epoch, node_name, pid, started, finished, exit_code, end_reason, error, output,
                                       cpu_user_ms, cpu_system_ms, max_rss_kb, memory_peak)
       SELECT $1, a, 1, 1, 'node-1', 1000 + a, now() - ($2 + 1 - a) * interval '10 s',
              now() - ($2 + 1 - a) * interval '10 s' + (a % 5 + 1) * interval '100 ms',
              CASE WHEN a % 10 = 0 AND a % 15 <> 0 THEN 1 END,
              CASE WHEN a % 15 = 0 THEN 'timeout' WHEN a % 10 = 0 THEN 'exit_code' ELSE 'completed' END,
              CASE WHEN a % 10 = 0 THEN 'exit code 1' || E'\\n' || 'SECOND-LINE-MARKER ' || repeat('e', 1000) END,
              'OUTPUT-MARKER ' || repeat('o', $3),
              a, 2, 2048, CASE WHEN a % 2 = 0 THEN 8 * 1024 * 1024 END
         FROM generate_series(1, $2) a`,
      [task, attempts, outputBytes],
    );
  }
  async function endedTask(attempts: number): Promise<number> {
    const { rows } = await db.query<{ id: string }>("INSERT INTO long_task.task (command, state_id, group_id) VALUES ('{./tick.sh}', 'DR', 32) RETURNING id");
    const id = Number(rows[0]!.id);
    await history("UPDATE long_task.task SET state_id = 'CS', end_reason = 'completed', attempt = $2, started = now() - interval '1 s', finished = now() WHERE id = $1", [id, attempts]);
    return id;
  }
  const rowAttempts = async (page: Page): Promise<number[]> =>
    Promise.all((await page.locator('table.runs tbody tr').all()).map(async (row) => Number(await row.getAttribute('data-attempt'))));
  const range = (from: number, to: number): number[] => Array.from({ length: from - to + 1 }, (_, i) => from - i);

  it('draws a page of runs as a timeline by end reason, with duration, CPU and peak memory, and pages through them', async (t) => {
    const w = await watched(t);
    if (!w) return;
    const { page } = w;
    const task = await endedTask(120);
    await runsOf(task, 120, 200);
    await visit(w, `/tasks/${task}`);
    // The newest 50, newest first, as bars and as rows.
    assert.deepEqual(await rowAttempts(page), range(120, 71));
    assert.equal(await page.locator('svg.timeline a.run').count(), 50);
    for (const reason of ['completed', 'exit_code', 'timeout']) {
      const expected = range(120, 71).filter((a) => reasonOf(a) === reason).length;
      assert.equal(await page.locator(`svg.timeline a.run.r-${reason}`).count(), expected, reason);
      assert.match(await page.locator(`.run-legend li[data-reason="${reason}"]`).innerText(), new RegExp(`\\(${expected}\\)$`));
    }
    // Run 120: 100 ms, CPU 120 + 2 ms, its cgroup's peak 8 MiB, a timeout; run 119: 500 ms, max
    // RSS 2 MiB; run 110: exit code 1, its error's first line.
    const cells = async (attempt: number): Promise<string[]> => page.locator(`table.runs tr[data-attempt="${attempt}"] td`).allInnerTexts();
    assert.deepEqual((await cells(120)).slice(2, 8), ['100 ms', '122 ms', '8.0 MiB', 'timeout', '-', '1']);
    assert.deepEqual((await cells(119)).slice(2, 6), ['500 ms', '121 ms', '2.0 MiB', 'completed']);
    assert.deepEqual((await cells(110)).slice(5, 7), ['exit_code', '1']);
    assert.equal((await cells(110))[10], 'exit code 1');
    // Older, older (the last page has no older link), newer, newest.
    await page.getByRole('link', { name: 'older runs →' }).first().click();
    await page.waitForURL(`${base}/tasks/${task}?runs_before=71`, WAIT);
    assert.deepEqual(await rowAttempts(page), range(70, 21));
    await page.getByRole('link', { name: 'older runs →' }).first().click();
    await page.waitForURL(`${base}/tasks/${task}?runs_before=21`, WAIT);
    assert.deepEqual(await rowAttempts(page), range(20, 1));
    assert.equal(await page.getByRole('link', { name: 'older runs →' }).count(), 0);
    await page.getByRole('link', { name: '← newer runs' }).first().click();
    await page.waitForURL(`${base}/tasks/${task}?runs_after=20`, WAIT);
    assert.deepEqual(await rowAttempts(page), range(70, 21));
    // A bar is a link to its run's output, on the same page of runs.
    await page.locator('svg.timeline a.run[data-attempt="45"]').click();
    await page.waitForURL(`${base}/tasks/${task}?attempt=45&runs_after=20`, WAIT);
    assert.equal(await page.locator('table.runs tr.shown').getAttribute('data-attempt'), '45');
    assert.equal(await page.locator('#output').getAttribute('data-attempt'), '45');
    await page.getByRole('link', { name: 'newest' }).first().click();
    await page.waitForURL(`${base}/tasks/${task}?attempt=45`, WAIT);
    assert.deepEqual(await rowAttempts(page), range(120, 71));
    // No run's output on the page, and of an error its first line only.
    const html = await page.content();
    assert.doesNotMatch(html, /OUTPUT-MARKER|SECOND-LINE-MARKER/);
    // The live part the page refreshes (data-src) keeps the page of runs it shows.
    assert.equal(await page.locator('#task-runs').getAttribute('data-src'), `/tasks/${task}?fragment=runs&attempt=45`);
    assert.deepEqual(w.problems, []);
    await page.close();
  });

  it('shows the live run first, running, on its bar and in the table', async (t) => {
    const w = await watched(t);
    if (!w) return;
    const task = await endedTask(2);
    await runsOf(task, 2, 10);
    await history("UPDATE long_task.task SET state_id = 'AE', attempt = 3, live_worker_id = 1, live_epoch = 1, started = now() - interval '5 s', node_name = 'node-1', pid = 4242 WHERE id = $1", [task]);
    await visit(w, `/tasks/${task}`);
    assert.deepEqual(await rowAttempts(w.page), [3, 2, 1]);
    assert.match(await w.page.locator('table.runs tr[data-attempt="3"] td').nth(2).innerText(), /^running \d/);
    assert.equal(await w.page.locator('svg.timeline a.run.r-running').getAttribute('data-attempt'), '3');
    assert.deepEqual(w.problems, []);
    await w.page.close();
  });

  it('refuses bad paging in one line', async () => {
    const task = await endedTask(1);
    const both = await fetch(`${base}/tasks/${task}?runs_before=3&runs_after=1`);
    assert.equal(both.status, 400);
    assert.equal(await both.text(), 'give runs_before or runs_after, not both\n');
    const bad = await fetch(`${base}/tasks/${task}?runs_before=abc`);
    assert.equal(bad.status, 400);
    assert.match(await bad.text(), /^querystring\/runs_before must match pattern "[^"\n]+"\n$/);
  });

  it('serves a task with 10 000 runs in a page under 300 KB', async (t) => {
    const w = await watched(t);
    if (!w) return;
    const task = await endedTask(10_000);
    // 10 000 runs that printed 2 KB each (20 MB of output tails) and the latest run's output.
    await runsOf(task, 10_000, 2000);
    await history(`INSERT INTO long_task.task_output (task_id, attempt, seq, pos, data)
      SELECT $1, 10000, k, k * 100, convert_to('line ' || lpad(k::text, 94, '.') || E'\\n', 'UTF8') FROM generate_series(0, 19) k`, [task]);
    await db.query('ANALYZE long_task.task_run');
    const started = performance.now();
    const response = await w.page.goto(`${base}/tasks/${task}`);
    await w.page.locator('html[data-live="open"]').waitFor({ state: 'attached', ...WAIT });
    await w.page.locator('#output').filter({ hasText: 'line ...' }).waitFor(WAIT);
    const loadMs = performance.now() - started;
    const bytes = (await response!.body()).length;
    // What a person waits for: the page, its script, its stream and its output (1 s asked: measured, not asserted).
    console.log(`# 10 000-run task page: ${bytes} bytes, loaded with its output in ${loadMs.toFixed(0)} ms`);
    assert.ok(bytes < PAGE_BYTES, `${bytes} bytes`);
    assert.ok(loadMs < PAGE_LIVENESS_MS, `${loadMs} ms`);
    assert.deepEqual(await rowAttempts(w.page), range(10_000, 9_951));
    // The oldest page, by its cursor.
    await visit(w, `/tasks/${task}?runs_before=51`);
    assert.deepEqual(await rowAttempts(w.page), range(50, 1));
    assert.deepEqual(w.problems, []);
    await w.page.close();
  });
});
