// The dashboard's operator actions (issue 31, item 5) over plain HTTP and in Chromium, against
// a real database and a real node: the list's filters (end reason, time range, params
// containment) and a bad filter's one-line 400; bulk re-queue and cancel with their count
// confirmation; Cancel shown only where the state allows it, and confirmed; the add form's
// timeout, retries, --after, concurrency key and schedule. No failed request, no console error.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { startDashboard, type DashboardServer } from '../src/http/dashboard/index.js';
import { after303, at, get, ids, launchChromium, live, needBrowser, post, session, WAIT, watched } from './helpers/dashboard.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { addTask, getTask, startNode, stopAllNodes, testLogger, waitEnded } from './helpers/node.js';

let db: TestDatabase;
let browser: Browser | null = null;
/** Loopback without a token: everyone is an operator. */
let open: DashboardServer;

/** Group 5's ended tasks (its node is stopped once they end, so a re-queued one stays AW). */
const ended = { completed: 0, failedA: 0, failedB: 0, oldFailed: 0 };

before(async () => {
  db = await createTestDatabase('dashboard_actions');
  open = await startDashboard({ connectionString: db.url, schema: 'long_task', host: '127.0.0.1', port: 0, logger: testLogger, token: null });
  browser = await launchChromium();
  await startNode(db, { workerId: 51, groupId: 5 });
  ended.completed = await addTask(db, ['true'], { group: 5, params: { customer: 1, tier: 'gold' } });
  ended.failedA = await addTask(db, ['sh', '-c', 'exit 3'], { group: 5, params: { customer: 1 } });
  ended.failedB = await addTask(db, ['sh', '-c', 'exit 4'], { group: 5, params: { customer: 2 } });
  ended.oldFailed = await addTask(db, ['sh', '-c', 'exit 5'], { group: 5, params: { customer: 1, tier: 'gold' } });
  await waitEnded(db, Object.values(ended));
  await stopAllNodes();
  // An old end, for the time filter: last_state_change is stamped on state changes only.
  await db.query("UPDATE long_task.task SET last_state_change = '2020-01-01T00:00:00Z' WHERE id = $1", [ended.oldFailed]);
});

after(async () => {
  await browser?.close();
  await stopAllNodes();
  await open?.close();
  await db.close();
});

async function states(list: number[]): Promise<string[]> {
  return Promise.all(list.map(async (id) => String((await getTask(db, id)).state_id)));
}

describe('dashboard filters and actions', () => {
  it('filters the list by end reason, time range and params', async () => {
    const s = await session(open);
    const list = async (query: string): Promise<number[]> => {
      const page = await get(s, `/tasks?group=5&${query}`);
      assert.equal(page.status, 200, query);
      return ids(page.text).sort((a, b) => a - b);
    };
    const { completed, failedA, failedB, oldFailed } = ended;
    assert.deepEqual(await list('reason=exit_code'), [failedA, failedB, oldFailed]);
    assert.deepEqual(await list('reason=completed'), [completed]);
    assert.deepEqual(await list(`params=${encodeURIComponent('{"customer": 1}')}`), [completed, failedA, oldFailed]);
    assert.deepEqual(await list(`params=${encodeURIComponent('{"tier": "gold"}')}&reason=exit_code`), [oldFailed]);
    assert.deepEqual(await list('since=2021-01-01T00:00'), [completed, failedA, failedB]);
    assert.deepEqual(await list('until=2021-01-01'), [oldFailed]);
    assert.deepEqual(await list('since=2019-12-31T23:59&until=2020-01-01T00:00:01'), [oldFailed]);
    // The filter stays in the form and in the next page's link.
    assert.match((await get(s, '/tasks?group=5&reason=exit_code&limit=1')).text, /href="\/tasks\?group=5&amp;reason=exit_code&amp;limit=1&amp;after=\d+" rel="next"/);
  });

  it('answers a bad params or time filter with one line in the page, and lists nothing', async () => {
    const s = await session(open);
    for (const [query, message] of [
      ['params=%7Boops', /^params: not valid JSON \(.*\): give what the params contain, like \{&quot;customer&quot;: 42\}$/],
      ['since=yesterday', /^since: not a time: &quot;yesterday&quot;/],
      ['since=2026-01-02&until=2026-01-01', /^since \(2026-01-02\) must be before until \(2026-01-01\)$/],
    ] as const) {
      const page = await get(s, `/tasks?group=5&${query}`);
      assert.equal(page.status, 400, query);
      const error = /<p class="error" role="alert">([^<]*)<\/p>/.exec(page.text)?.[1] ?? '';
      assert.match(error, message);
      assert.doesNotMatch(error, /\n/);
      assert.equal(ids(page.text).length, 0);
      assert.doesNotMatch(page.text, /data-live="tasks"/, 'no live part to fetch the bad filter again');
    }
    // The form keeps what was typed.
    assert.match((await get(s, '/tasks?params=%7Boops')).text, /name="params"[^>]*value="\{oops"/);
    // A fragment (the live part's fetch): the one line alone.
    const fragment = await get(s, '/tasks?params=%7Boops&fragment=1');
    assert.equal(fragment.status, 400);
    assert.match(fragment.text, /^params: not valid JSON [^\n]*\n$/);
  });

  it('finds params through the GIN index of migration 31', async () => {
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL enable_seqscan = off');
      const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN SELECT id FROM long_task.task WHERE params @> '{"customer": 1}'::jsonb`);
      assert.match(rows.map((r) => r['QUERY PLAN']).join('\n'), /task_params_idx/);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
  });

  it('re-queues the ended tasks of a filter after confirming their count, in one go', async () => {
    const s = await session(open);
    const filter = { group: '5', reason: 'exit_code', params: '{"customer": 1}' };
    const ask = await post(s, '/tasks/bulk', { ...filter, action: 'requeue' });
    assert.equal(ask.status, 200);
    const confirm = await ask.text();
    assert.match(confirm, /This will re-queue 2 tasks/);
    assert.match(confirm, /<input type="hidden" name="seen" value="2">/);
    assert.deepEqual(await states([ended.failedA, ended.oldFailed]), ['CF', 'CF'], 'asking changes nothing');
    const notice = await after303(s, await post(s, '/tasks/bulk', { ...filter, action: 'requeue', seen: '2' }));
    assert.equal(notice, 're-queued 2 tasks (AW)');
    assert.deepEqual(await states([ended.failedA, ended.oldFailed, ended.failedB, ended.completed]), ['AW', 'AW', 'CF', 'CS']);
    // Nothing ended matches any more: nothing to confirm.
    assert.match(await (await post(s, '/tasks/bulk', { ...filter, action: 'requeue' })).text(), /there is nothing to re-queue/);
  });

  it('cancels at most the count confirmed, and says when fewer changed', async () => {
    const s = await session(open);
    const filter = { group: '5', state: 'AW' };
    assert.match(await (await post(s, '/tasks/bulk', { ...filter, action: 'cancel' })).text(), /This will cancel 2 tasks/);
    assert.equal(await after303(s, await post(s, '/tasks/bulk', { ...filter, action: 'cancel', seen: '1' })), 'cancelled 1 task');
    assert.deepEqual(await states([ended.failedA, ended.oldFailed]), ['CC', 'AW'], 'the lowest id first');
    assert.equal(
      await after303(s, await post(s, '/tasks/bulk', { ...filter, action: 'cancel', seen: '2' })),
      'cancelled 1 task: 1 of the 2 confirmed had changed state meanwhile and were left as they are',
    );
    assert.deepEqual(await states([ended.failedA, ended.oldFailed]), ['CC', 'CC']);
    // Bad input: one line, nothing changed.
    const bad = await post(s, '/tasks/bulk', { group: '5', params: '{oops', action: 'requeue', seen: '1' });
    assert.equal(bad.status, 400);
    assert.match(await bad.text(), /^params: not valid JSON [^\n]*\n$/);
    assert.deepEqual(await states([ended.failedA, ended.oldFailed]), ['CC', 'CC']);
  });

  it('adds a task with a timeout, retries, prerequisites, a concurrency key and a schedule', async () => {
    const s = await session(open);
    const response = await post(s, '/tasks', {
      command: 'sh\n-c\necho hi', group: '7', state: 'DR', timeout: '90s', attempts: '3', after: `${ended.completed}, ${ended.failedB}`, when: 'all_done',
      concurrency_key: 'reports', every: '10m', tz: 'Europe/Berlin',
    });
    const id = Number(/^\/tasks\/(\d+)$/.exec(response.headers.get('location') ?? '')?.[1]);
    assert.equal(await after303(s, response), `task ${id} added (DR), scheduled`);
    const { rows } = await db.query(
      `SELECT command, group_id, state_id, extract(epoch FROM timeout)::int AS timeout_s, max_attempts, depends_on, depends_rule, concurrency_key,
              shed_period_id, shed_period_count, shed_tz, shed_cron, next_start IS NOT NULL AS scheduled
         FROM long_task.task WHERE id = $1`, [id]);
    assert.deepEqual({ ...rows[0], depends_on: (rows[0]!.depends_on as string[]).map(Number) }, {
      command: ['sh', '-c', 'echo hi'], group_id: 7, state_id: 'DR', timeout_s: 90, max_attempts: 3, depends_on: [ended.completed, ended.failedB],
      depends_rule: 'all_done', concurrency_key: 'reports', shed_period_id: 'MIN', shed_period_count: 10, shed_tz: 'Europe/Berlin', shed_cron: null, scheduled: true,
    });
    const cron = await post(s, '/tasks', { command: 'true', group: '7', state: 'DR', cron: '*/5 * * * *' });
    const cronId = Number(/(\d+)$/.exec(cron.headers.get('location') ?? '')?.[1]);
    assert.equal((await getTask(db, cronId)).shed_cron, '*/5 * * * *');

    // Bad fields: one line each, and no task added.
    const before = (await db.query('SELECT count(*)::int AS n FROM long_task.task')).rows[0]!.n as number;
    for (const [fields, message] of [
      [{ timeout: '5' }, 'timeout: "5" needs a unit (e.g. 5s, 2m, 1h)\n'],
      [{ after: '12,x' }, 'after: a task id is a positive integer, got "x"\n'],
      [{ every: '10m', cron: '* * * * *' }, 'a schedule is every a period or on cron, not both\n'],
      [{ cron: 'not cron' }, /^cron: [^\n]+\n$/],
      [{ every: '10m', tz: 'Mars/Olympus' }, /^zone: unknown time zone "Mars\/Olympus"[^\n]*\n$/],
      [{ attempts: '0' }, 'runs at most: 1 or more (1: no retry)\n'],
    ] as const) {
      const bad = await post(s, '/tasks', { command: 'true', ...fields });
      assert.equal(bad.status, 400, JSON.stringify(fields));
      const text = await bad.text();
      if (typeof message === 'string') assert.equal(text, message);
      else assert.match(text, message);
    }
    // A refusal of the database (a prerequisite that does not exist) is the page's error.
    const missing = await post(s, '/tasks', { command: 'true', after: '999999999', every: '1h' });
    assert.equal(await after303(s, missing), 'refused: depends_on names task 999999999, which does not exist');
    assert.equal((await db.query('SELECT count(*)::int AS n FROM long_task.task')).rows[0]!.n, before);
  });
});

describe('dashboard actions in Chromium', () => {
  it('shows Cancel only on a cancellable task, and cancels on confirmation', async (t) => {
    if (!needBrowser(t, browser)) return;
    const waiting = await addTask(db, ['sleep', '60'], { group: 6 });
    const { page, problems } = await watched(browser);
    await live(page, `${at(open)}/tasks?group=5`);
    assert.equal(await page.locator('header .access').innerText(), 'operator');
    // Group 5's tasks have all ended: re-queue, never cancel.
    assert.equal(await page.locator('td.actions a.cancel').count(), 0);
    assert.ok(await page.locator('td.actions button', { hasText: 're-queue' }).count() > 0);
    await live(page, `${at(open)}/tasks/${ended.completed}`);
    assert.equal(await page.getByRole('link', { name: /Cancel/ }).count(), 0);
    assert.equal(await page.getByRole('button', { name: 'Re-queue (→ AW)' }).count(), 1);

    await live(page, `${at(open)}/tasks?group=6&state=AW`);
    await page.locator(`tr[data-id="${waiting}"] a.cancel`).click();
    await page.locator('h1').filter({ hasText: `Cancel task ${waiting}?` }).waitFor(WAIT);
    assert.equal((await getTask(db, waiting)).state_id, 'AW', 'asking changes nothing');
    // "No": back to the list, nothing changed.
    await page.getByRole('link', { name: 'No, keep it' }).click();
    await page.locator(`tr[data-id="${waiting}"]`).waitFor(WAIT);
    assert.equal((await getTask(db, waiting)).state_id, 'AW');
    await page.locator(`tr[data-id="${waiting}"] a.cancel`).click();
    await page.getByRole('button', { name: `Yes, cancel task ${waiting}` }).click();
    await page.locator('p.notice').filter({ hasText: `task ${waiting} cancelled` }).waitFor(WAIT);
    // Back to the list it came from (waiting tasks: it has left it).
    assert.equal(new URL(page.url()).search, '?group=6&state=AW');
    assert.equal((await getTask(db, waiting)).state_id, 'CC');
    await live(page, `${at(open)}/tasks?group=6`);
    await page.locator(`tr[data-id="${waiting}"] button`, { hasText: 're-queue' }).waitFor(WAIT);
    assert.equal(await page.locator(`tr[data-id="${waiting}"] a.cancel`).count(), 0);
    assert.deepEqual(problems, []);
    await page.close();
  });

  it('re-queues a filtered set after saying how many, and adds a task with every new field', async (t) => {
    if (!needBrowser(t, browser)) return;
    const { page, problems } = await watched(browser);
    await live(page, `${at(open)}/tasks`);
    await page.locator('input[name="group"]').first().fill('5');
    await page.locator('select[name="reason"]').selectOption('exit_code');
    await page.locator('input[name="params"]').fill('{"customer": 2}');
    await page.getByRole('button', { name: 'Show' }).click();
    await page.locator(`tr[data-id="${ended.failedB}"]`).waitFor(WAIT);
    assert.equal(await page.locator('tbody tr[data-id]').count(), 1);
    await page.getByRole('button', { name: 'Re-queue the ended ones…' }).click();
    await page.locator('p.bulk-count').filter({ hasText: 'This will re-queue 1 task' }).waitFor(WAIT);
    assert.equal((await getTask(db, ended.failedB)).state_id, 'CF');
    await page.getByRole('button', { name: 'Yes, re-queue 1 task' }).click();
    await page.locator('p.notice').filter({ hasText: 're-queued 1 task (AW)' }).waitFor(WAIT);
    assert.equal((await getTask(db, ended.failedB)).state_id, 'AW');
    // Back on the filtered list (which it has left: waiting, it has no end reason).
    assert.equal(new URL(page.url()).searchParams.get('reason'), 'exit_code');
    assert.equal(await page.locator(`tr[data-id="${ended.failedB}"]`).count(), 0);

    await page.locator('details.add summary').click();
    await page.locator('textarea[name="command"]').fill('echo\nfrom the form');
    await page.locator('form.add-task input[name="group"]').fill('8');
    await page.locator('form.add-task input[name="timeout"]').fill('5m');
    await page.locator('form.add-task input[name="attempts"]').fill('4');
    await page.locator('form.add-task input[name="after"]').fill(String(ended.completed));
    await page.locator('form.add-task input[name="concurrency_key"]').fill('nightly');
    await page.locator('form.add-task input[name="cron"]').fill('0 3 * * *');
    await page.getByRole('button', { name: 'Add' }).click();
    await page.locator('p.notice').filter({ hasText: 'added (AW), scheduled' }).waitFor(WAIT);
    const id = Number(/\/tasks\/(\d+)$/.exec(page.url())![1]);
    const task = await getTask(db, id);
    assert.deepEqual(
      [task.group_id, task.max_attempts, (task.depends_on as string[]).map(Number), task.concurrency_key, task.shed_cron, task.shed_tz],
      [8, 4, [ended.completed], 'nightly', '0 3 * * *', 'UTC'],
    );
    assert.equal((await db.query('SELECT extract(epoch FROM timeout)::int AS s FROM long_task.task WHERE id = $1', [id])).rows[0]!.s, 300);
    assert.deepEqual(problems, []);
    await page.close();
  });

  it('shows a bad params filter as one line on the page', async (t) => {
    if (!needBrowser(t, browser)) return;
    const { page, problems } = await watched(browser);
    await live(page, `${at(open)}/tasks`);
    await page.locator('input[name="params"]').fill('{"customer": ');
    await page.getByRole('button', { name: 'Show' }).click();
    const error = page.locator('p.error');
    await error.waitFor(WAIT);
    assert.match(await error.innerText(), /^params: not valid JSON \(.*\): give what the params contain, like \{"customer": 42\}$/);
    assert.equal(await page.locator('input[name="params"]').inputValue(), '{"customer": ');
    assert.equal(await page.locator('#task-list').count(), 0);
    // The page's own 400 is the one answer of that status, and nothing else failed.
    assert.deepEqual(problems.filter((p) => !/^400: .*\/tasks\?/.test(p) && !/status of 400/.test(p)), []);
    await page.close();
  });
});
