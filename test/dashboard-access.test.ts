// The dashboard's access (issue 31, item 6) over plain HTTP and in Chromium: --read-only and
// the reader token render no form and refuse every POST with one line; the operator token
// changes rows; the session cookie's role can't be relabelled; wrong tokens count alike; the
// page says which access it was served with.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { DashboardConfigError, startDashboard, type DashboardServer } from '../src/http/dashboard/index.js';
import { runCli } from './helpers/cli.js';
import { at, get, launchChromium, live, needBrowser, post, after303, session, watched } from './helpers/dashboard.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { addTask, getTask, testLogger } from './helpers/node.js';

const OPERATOR = 'operator-token-0123456789abcdef';
const READER = 'reader-token-0123456789abcdef';

let db: TestDatabase;
let browser: Browser | null = null;
/** The operator token and the reader token. */
let guarded: DashboardServer;
/** --read-only: no action for anyone. */
let readOnly: DashboardServer;

before(async () => {
  db = await createTestDatabase('dashboard_access');
  const common = { connectionString: db.url, schema: 'long_task', host: '127.0.0.1', port: 0, logger: testLogger } as const;
  guarded = await startDashboard({ ...common, token: OPERATOR, readerToken: READER });
  readOnly = await startDashboard({ ...common, token: null, readOnly: true });
  browser = await launchChromium();
  // A worker row (no node): the workers page has its stop-code form for an operator.
  await db.query('INSERT INTO long_task.worker (id, group_id) VALUES (51, 6)');
});

after(async () => {
  await browser?.close();
  await Promise.all([guarded, readOnly].map((server) => server?.close()));
  await db.close();
});

const PAGES = (id: number): string[] => ['/tasks', `/tasks/${id}`, '/workers', '/schedules', '/groups'];

describe('dashboard access', () => {
  it('--read-only renders no form and refuses every POST with one line', async () => {
    const waiting = await addTask(db, ['sleep', '60'], { group: 6 });
    const s = await session(readOnly);
    for (const path of PAGES(waiting)) {
      const page = await get(s, path);
      assert.equal(page.status, 200, path);
      assert.doesNotMatch(page.text, /method="post"/i, `${path} has a POST form`);
      assert.doesNotMatch(page.text, /\/cancel/, `${path} links to a cancel`);
      assert.match(page.text, /<span class="access access-reader"[^>]*>read-only<\/span>/, path);
    }
    const refused = 'this dashboard is read-only (--read-only): it changes nothing\n';
    for (const path of ['/tasks', `/tasks/${waiting}/cancel`, `/tasks/${waiting}/queue`, '/tasks/bulk', '/workers/51/stop', '/no/such/path']) {
      const response = await post(s, path, { command: 'true', action: 'cancel', seen: '1', stop: '1' });
      assert.equal(response.status, 403, path);
      assert.equal(await response.text(), refused, path);
    }
    // The cancel's confirmation page is an action too.
    assert.deepEqual(await get(s, `/tasks/${waiting}/cancel`), { status: 403, text: refused });
    assert.equal((await getTask(db, waiting)).state_id, 'AW');
    assert.equal((await db.query("SELECT 1 FROM long_task.task WHERE command = '{true}' AND group_id = 0")).rowCount, 0);
  });

  it('gives the reader token a read-only view and the operator token everything', async () => {
    const draft = await addTask(db, ['sleep', '60'], { group: 6, state: 'DR' });
    const reader = await session(guarded, READER);
    const operator = await session(guarded, OPERATOR);
    const readerPage = await get(reader, `/tasks/${draft}`);
    assert.doesNotMatch(readerPage.text, /method="post"/i);
    assert.match(readerPage.text, />read-only</);
    const operatorPage = await get(operator, `/tasks/${draft}`);
    assert.match(operatorPage.text, /method="post" action="\/tasks\/\d+\/queue"/);
    assert.match(operatorPage.text, /<span class="access access-operator"[^>]*>operator<\/span>/);
    assert.match((await get(operator, '/workers')).text, /<form method="post" action="\/workers\/51\/stop"/);
    assert.doesNotMatch((await get(reader, '/workers')).text, /<form/);

    const byReader = await post(reader, `/tasks/${draft}/queue`, {});
    assert.equal(byReader.status, 403);
    assert.equal(await byReader.text(), 'read-only access: the reader token changes nothing (use the operator token)\n');
    // Bearer: the same roles, no cookie.
    const bearer = (token: string): Promise<Response> => fetch(`${at(guarded)}/tasks/${draft}/queue`, { method: 'POST', redirect: 'manual', headers: { authorization: `Bearer ${token}` } });
    assert.equal((await bearer(READER)).status, 403);
    assert.equal((await getTask(db, draft)).state_id, 'DR');
    assert.equal(await after303(operator, await post(operator, `/tasks/${draft}/queue`, {})), `task ${draft} queued (AW)`);
    assert.equal((await getTask(db, draft)).state_id, 'AW');

    // The role is under the cookie's HMAC: a reader's cookie relabelled is no session at all.
    const forged = reader.cookie.replace('.reader.', '.operator.');
    assert.notEqual(forged, reader.cookie);
    assert.equal((await fetch(`${at(guarded)}/tasks`, { headers: { cookie: forged } })).status, 401);
  });

  it('counts wrong tokens against both tokens alike', async () => {
    const server = await startDashboard({ connectionString: db.url, schema: 'long_task', host: '127.0.0.1', port: 0, logger: testLogger, token: OPERATOR, readerToken: READER });
    try {
      for (let i = 0; i < 10; i++) assert.equal((await fetch(`${at(server)}/tasks?token=wrong-token-0123456789-${i}`)).status, 401);
      // Past the budget even the right reader token is refused, unread.
      const throttled = await fetch(`${at(server)}/tasks?token=${READER}`, { redirect: 'manual' });
      assert.equal(throttled.status, 429);
      assert.ok(Number(throttled.headers.get('retry-after')) > 0);
    } finally {
      await server.close();
    }
  });

  it('refuses a reader token it could not tell apart or that guards nothing', async () => {
    const common = { connectionString: db.url, host: '127.0.0.1', port: 0, logger: testLogger } as const;
    for (const [options, message] of [
      [{ token: null, readerToken: READER }, /needs the operator token/],
      [{ token: OPERATOR, readerToken: 'short' }, /at least 16 characters/],
      [{ token: OPERATOR, readerToken: OPERATOR }, /must differ/],
    ] as const) {
      await assert.rejects(startDashboard({ ...common, ...options }), (error: Error) => error instanceof DashboardConfigError && message.test(error.message));
    }
    // The command line says it in one line, and PGTASKS_DASHBOARD_READER_TOKEN is the option's twin.
    const cli = await runCli(db.url, ['dashboard', '--port', '0'], { PGTASKS_DASHBOARD_READER_TOKEN: READER, PGTASKS_DASHBOARD_TOKEN: undefined });
    assert.equal(cli.code, 1);
    assert.equal(cli.stderr, 'pg-tasks: the reader token needs the operator token beside it: give --token too (or --read-only --token T for a dashboard that only reads)\n');
  });
});

describe('dashboard access in Chromium', () => {
  it('shows the reader token no action, and the page says so', async (t) => {
    if (!needBrowser(t, browser)) return;
    const { page, problems } = await watched(browser);
    for (const path of PAGES(await addTask(db, ['sleep', '60'], { group: 6, state: 'DR' }))) {
      await live(page, `${at(guarded)}${path}${path === '/tasks' ? `?token=${READER}` : ''}`);
      assert.equal(await page.locator('header .access').innerText(), 'read-only', path);
      assert.equal(await page.locator('form[method="post"]').count(), 0, path);
      assert.equal(await page.locator('a[href*="/cancel"]').count(), 0, path);
      // The filter's Show is the only button (it changes nothing).
      assert.deepEqual(await page.locator('button').allInnerTexts(), path === '/tasks' ? ['Show'] : [], path);
    }
    assert.deepEqual(problems, []);
    await page.close();
  });

});
