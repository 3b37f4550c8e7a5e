// The dashboard in a real browser (the system's Chromium, driven by playwright-core) against a
// real database and real nodes: lists, a task's live output, cancelling (the process dies), a
// trigger's refusal on the page, a worker seen failing when its node is SIGKILLed, and the
// access rules (cross-site POSTs, the token off loopback, bad input).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { DashboardConfigError, startDashboard, type DashboardServer } from '../src/http/dashboard/index.js';
import { Access } from '../src/http/dashboard/access.js';
import { html } from '../src/http/dashboard/html.js';
import { parseCommand } from '../src/http/dashboard/routes/actions.js';
import { ROOT, runCli } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { addTask, getTask, startNode, stopAllNodes, tempDir, testLogger } from './helpers/node.js';
import { until } from './helpers/wait.js';

const CHROMIUM = process.env.PGTASKS_CHROMIUM ?? '/usr/bin/chromium';
/** Liveness bounds for the browser's waits, not measures: a live update takes milliseconds. */
const WAIT = { timeout: 20_000 };

let db: TestDatabase;
let dashboard: DashboardServer;
let browser: Browser | null = null;
let base: string;
const children: ChildProcess[] = [];

before(async () => {
  db = await createTestDatabase('dashboard');
  dashboard = await startDashboard({ connectionString: db.url, schema: 'long_task', host: '127.0.0.1', port: 0, logger: testLogger });
  base = `http://127.0.0.1:${dashboard.port}`;
  if (existsSync(CHROMIUM)) {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // Chromium's sandbox refuses to run as root.
      args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
    });
  }
});

after(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await browser?.close();
  await stopAllNodes();
  await dashboard.close();
  await db.close();
});

/** Whether the browser is there; if not, the test is skipped with a line that says why. */
function needBrowser(t: TestContext): boolean {
  if (!browser) t.skip(`chromium not found at ${CHROMIUM}: install it with apt-get install chromium (or set PGTASKS_CHROMIUM)`);
  return browser !== null;
}

/** A page of the dashboard once its live stream is open (so no event after this is missed). */
async function open(t: TestContext, url: string): Promise<Page | null> {
  if (!needBrowser(t)) return null;
  const page = await browser!.newPage({ viewport: { width: 1200, height: 700 } });
  await page.goto(url.startsWith('http') ? url : base + url);
  await page.locator('html[data-live="open"]').waitFor({ state: 'attached', ...WAIT });
  return page;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Prints "first", waits for `gate` to exist, prints "second", then sleeps until killed. */
function gated(gate: string): string[] {
  return ['sh', '-c', 'echo first; while [ ! -e "$0" ]; do sleep 0.05; done; echo second; exec sleep 60', gate];
}

describe('dashboard', () => {
  let running = 0;
  let runningPid = 0;

  it('lists tasks and shows a new one without a reload', async (t) => {
    const first = await addTask(db, ['echo', '<b>not markup</b>'], { state: 'DR' });
    const page = await open(t, '/tasks');
    if (!page) return;
    const row = page.locator(`tr[data-id="${first}"]`);
    await row.waitFor(WAIT);
    // Escaped, not rendered: the cell shows the angle brackets.
    assert.match(await row.locator('td.command').innerText(), /<b>not markup<\/b>/);
    const second = await addTask(db, ['echo', 'later']);
    await page.locator(`tr[data-id="${second}"]`).waitFor(WAIT);
    await page.close();
  });

  it("shows a task's output as it grows, then cancelling it kills its process", async (t) => {
    if (!needBrowser(t)) return;
    await startNode(db, { workerId: 1, groupId: 0 });
    const gate = path.join(tempDir('dashboard-gate'), 'open');
    running = await addTask(db, gated(gate));
    await until(async () => (await getTask(db, running)).pid, 'the task to start');
    runningPid = Number((await getTask(db, running)).pid);
    const page = (await open(t, `/tasks/${running}`))!;
    const output = page.locator('#output');
    await output.filter({ hasText: 'first' }).waitFor(WAIT);
    assert.doesNotMatch(await output.innerText(), /second/);
    // The process prints more: the page shows it without a reload.
    writeFileSync(gate, '');
    await output.filter({ hasText: 'second' }).waitFor(WAIT);
    assert.equal(await page.locator('#task-summary [data-state]').getAttribute('data-state'), 'AE');

    assert.ok(alive(runningPid), 'the task process runs');
    // Cancel asks first (a page of its own: no script needed), and nothing happens until then.
    await page.getByRole('link', { name: 'Cancel (→ AC)…' }).click();
    await page.locator('h1').filter({ hasText: `Cancel task ${running}?` }).waitFor(WAIT);
    assert.ok(alive(runningPid), 'asking kills nothing');
    assert.equal((await getTask(db, running)).state_id, 'AE');
    await page.getByRole('button', { name: `Yes, cancel task ${running}` }).click();
    // "cancelling", or already "cancelled" when the kill was quicker than the page's stream.
    await page.locator('p.notice').waitFor(WAIT);
    // The page follows the task to its end (an 'ended' notification), and the process is gone;
    // the notice says it was cancelled, not "cancelling" any more.
    await page.locator('#task-summary [data-state="CC"]').waitFor(WAIT);
    await page.locator('p.notice').filter({ hasText: `task ${running}: cancelled` }).waitFor(WAIT);
    await until(() => !alive(runningPid), `pid ${runningPid} to die`);
    await page.close();
  });

  it("shows a trigger's refusal as a readable message", async (t) => {
    // An ended task has no Cancel button; one that ends while its confirmation is open is
    // refused by the trigger, in its own words. (Group 8 has no node: it waits.)
    const waiting = await addTask(db, ['sleep', '60'], { group: 8 });
    const page = await open(t, `/tasks/${running}`);
    if (!page) return;
    assert.equal(await page.getByRole('link', { name: /Cancel/ }).count(), 0);
    await page.goto(`${base}/tasks/${waiting}/cancel`);
    await db.query("UPDATE long_task.task SET state_id = 'DR' WHERE id = $1", [waiting]);
    await page.getByRole('button', { name: `Yes, cancel task ${waiting}` }).click();
    const error = page.locator('p.error');
    await error.waitFor(WAIT);
    assert.equal(await error.innerText(), `refused: can't cancel an inactive task (task ${waiting} is DR)`);
    await page.close();
  });

  it('adds a draft from the form, queues it, and sees it complete', async (t) => {
    const page = await open(t, '/tasks');
    if (!page) return;
    await page.locator('details.add summary').click();
    await page.locator('textarea[name="command"]').fill('["sh", "-c", "echo from the form"]');
    await page.locator('select[name="state"]').last().selectOption('DR');
    await page.getByRole('button', { name: 'Add' }).click();
    await page.locator('p.notice').filter({ hasText: 'added (DR)' }).waitFor(WAIT);
    const id = Number(/\/tasks\/(\d+)$/.exec(page.url())![1]);
    assert.equal((await getTask(db, id)).state_id, 'DR');
    await page.getByRole('button', { name: 'Queue (→ AW)' }).click();
    await page.locator('#task-summary [data-state="CS"]').waitFor(WAIT);
    await page.locator('#output').filter({ hasText: 'from the form' }).waitFor(WAIT);
    if (process.env.PGTASKS_SCREENSHOT === '1') {
      await addTask(db, ['sh', '-c', 'exit 3']);
      await addTask(db, ['./report.sh', '--month', '2026-11'], { state: 'DR', priority: -1, group: 2 });
      await until(async () => (await db.query("SELECT 1 FROM long_task.task WHERE state_id = 'CF'")).rowCount, 'a failed task');
      await page.goto(`${base}/tasks`);
      await page.locator('html[data-live="open"]').waitFor({ state: 'attached', ...WAIT });
      mkdirSync(path.join(ROOT, 'docs'), { recursive: true });
      const file = path.join(ROOT, 'docs', 'dashboard.png');
      await page.screenshot({ path: file });
      assert.ok(statSync(file).size <= 150 * 1024, 'the screenshot is small');
    }
    await page.close();
  });

  it('refuses a POST from another site', async (t) => {
    const id = await addTask(db, ['sleep', '60'], { state: 'DR' });
    // Another origin (same host, another port): a page whose form posts to the dashboard.
    const evil = http.createServer((_request, response) => {
      response.setHeader('content-type', 'text/html');
      response.end(`<form method="post" action="${base}/tasks/${id}/queue"><input name="back" value="/"></form><script>document.forms[0].submit()</script>`);
    });
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
    try {
      const page = await open(t, '/tasks');
      if (!page) return;
      const response = page.waitForResponse((r) => r.url().startsWith(`${base}/tasks/${id}/queue`));
      await page.goto(`http://127.0.0.1:${(evil.address() as AddressInfo).port}/`);
      const refused = await response;
      assert.equal(refused.status(), 403);
      assert.match(await refused.text(), /^cross-site request refused/);
      assert.equal((await getTask(db, id)).state_id, 'DR');
      await page.close();
    } finally {
      evil.close();
    }
  });

  it('answers bad input with a one-line 400', async () => {
    for (const [url, message] of [
      ['/tasks?state=XX', 'querystring/state must be one of DR, AW, AE, AC, CS, CF, CC\n'],
      ['/tasks?sort=queue&after=12', 'after: queue order takes a cursor priority:microseconds:id, as its next link gives\n'],
      ['/tasks/1?attempt=99', 'task 1 has not run yet\n'],
      ['/tasks?sort=queue&state=CS', 'queue order is for waiting tasks (AW), not CS\n'],
    ] as const) {
      const response = await fetch(base + url);
      assert.equal(response.status, 400, url);
      assert.equal(await response.text(), message);
    }
  });

  it('pages through tasks by keyset, in each order', async () => {
    // Group 9 has no node: its waiting tasks stay waiting.
    await db.query("INSERT INTO long_task.task (command, state_id, group_id, priority) SELECT '{true}', CASE WHEN i % 2 = 0 THEN 'AW' ELSE 'DR' END, 9, i % 3 FROM generate_series(1, 50) i");
    for (const sort of ['newest', 'oldest', 'queue']) {
      const seen: number[] = [];
      let url: string | null = `/tasks?group=9&limit=10&sort=${sort}`;
      while (url) {
        const text = await (await fetch(base + url)).text();
        seen.push(...[...text.matchAll(/<tr data-id="(\d+)">/g)].map((m) => Number(m[1])));
        url = /<a href="([^"]+)" rel="next">/.exec(text)?.[1]?.replaceAll('&amp;', '&') ?? null;
      }
      const { rows } = await db.query<{ id: string }>(
        `SELECT id FROM long_task.task WHERE group_id = 9 ${sort === 'queue' ? "AND state_id = 'AW'" : ''}
          ORDER BY ${sort === 'newest' ? 'id DESC' : sort === 'oldest' ? 'id' : 'priority, last_state_change, id'}`,
      );
      assert.ok(rows.length > 20, 'more than two pages');
      assert.deepEqual(seen, rows.map((r) => Number(r.id)), sort);
    }
  });

  it("shows a task's dependencies and schedule, the schedules and the groups", async () => {
    const first = await addTask(db, ['true'], { state: 'DR', group: 11 });
    const { rows } = await db.query<{ id: string }>("INSERT INTO long_task.task (command, state_id, group_id, depends_on) VALUES ('{true}', 'DR', 11, $1) RETURNING id", [[first]]);
    const second = Number(rows[0]!.id);
    await db.query("UPDATE long_task.task SET next_start = '2030-01-01T00:00:00Z', shed_period_id = 'DAY', shed_period_count = 1 WHERE id = $1", [first]);
    const prerequisite = await (await fetch(`${base}/tasks/${first}`)).text();
    assert.match(prerequisite, new RegExp(`Waiting for it: <a href="/tasks/${second}">${second}</a> \\(DR\\)`));
    assert.match(prerequisite, /Next runs: 2030-01-01 00:00:00 UTC, 2030-01-02 00:00:00 UTC, 2030-01-03 00:00:00 UTC/);
    assert.match(await (await fetch(`${base}/tasks/${second}`)).text(), new RegExp(`Depends on: <a href="/tasks/${first}">${first}</a> \\(DR\\) · 1 not yet CS`));
    assert.match(await (await fetch(`${base}/schedules`)).text(), new RegExp(`<td><a href="/tasks/${first}">${first}</a></td>[\\s\\S]*every day`));
    const groups = await (await fetch(`${base}/groups?fragment=1`)).text();
    // Group 11: two drafts, nothing else.
    assert.match(groups, /<tr data-group="11">\s*<td><a href="\/tasks\?group=11">11<\/a><\/td>\s*<td><a href="\/tasks\?group=11&amp;state=DR">2<\/a><\/td>/);
  });

  it("shows a dependent's depends_rule, on its page and on its prerequisite's", async () => {
    const first = await addTask(db, ['true'], { state: 'DR', group: 12 });
    const { rows } = await db.query<{ id: string }>("INSERT INTO long_task.task (command, state_id, group_id, depends_on, depends_rule) VALUES ('{true}', 'DR', 12, $1, 'any_failed') RETURNING id", [[first]]);
    const handler = Number(rows[0]!.id);
    assert.match(await (await fetch(`${base}/tasks/${first}`)).text(),
      new RegExp(`Waiting for it: <a href="/tasks/${handler}">${handler}</a> \\(DR, <span class="depends-rule rule-any_failed">any failed</span>\\)`));
    const page = await (await fetch(`${base}/tasks/${handler}`)).text();
    assert.match(page, /· 1 not yet ended, none failed/);
    assert.match(page, /Runs when: <span class="depends-rule rule-any_failed">any prerequisite fails<\/span>/);
  });

  it('needs a token off loopback, and takes it once into a cookie', async (t) => {
    await assert.rejects(
      startDashboard({ connectionString: db.url, host: '0.0.0.0', port: 0, logger: testLogger, token: null }),
      (error: Error) => error instanceof DashboardConfigError && /needs a token/.test(error.message),
    );
    const cli = await runCli(db.url, ['dashboard', '--host', '0.0.0.0', '--port', '0']);
    assert.equal(cli.code, 1);
    assert.equal(cli.stderr, 'pg-tasks: the dashboard on 0.0.0.0 (not a loopback address) needs a token: give --token or PGTASKS_DASHBOARD_TOKEN\n');
    const token = 'a-token-of-the-test-0123456789';
    const remote = await startDashboard({ connectionString: db.url, host: '0.0.0.0', port: 0, logger: testLogger, token });
    try {
      // (Bound to every address; the test only connects to 127.0.0.1.)
      const at = `http://127.0.0.1:${remote.port}`;
      assert.equal((await fetch(`${at}/tasks`)).status, 401);
      assert.equal((await fetch(`${at}/tasks?token=wrong-token-0123456789`)).status, 401);
      assert.equal((await fetch(`${at}/tasks`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
      const entry = await fetch(`${at}/tasks?token=${token}`, { redirect: 'manual' });
      assert.equal(entry.status, 303);
      assert.equal(entry.headers.get('location'), '/tasks');
      assert.match(entry.headers.get('set-cookie') ?? '', /HttpOnly; SameSite=Strict/);
      const page = await open(t, `${at}/tasks?token=${token}`);
      if (!page) return;
      assert.equal(page.url(), `${at}/tasks`);
      await page.locator('h1').filter({ hasText: 'Tasks' }).waitFor(WAIT);
      await page.close();
    } finally {
      await remote.close();
    }
  });

  it('says a page is not live when its stream is refused (too many open)', async (t) => {
    if (!needBrowser(t)) return;
    const full = await startDashboard({ connectionString: db.url, schema: 'long_task', host: '127.0.0.1', port: 0, logger: testLogger, maxStreams: 1 });
    const taken = new AbortController();
    try {
      const at = `http://127.0.0.1:${full.port}`;
      const first = await fetch(`${at}/events`, { signal: taken.signal });
      assert.equal(first.status, 200);
      const page = await browser!.newPage();
      await page.goto(`${at}/tasks`);
      // The browser does not retry a refused stream: the page says so instead of "reconnecting…".
      await page.locator('html[data-live="refused"]').waitFor({ state: 'attached', ...WAIT });
      assert.equal(await page.locator('.live-state').innerText(), 'not live (reload to retry)');
      await page.close();
    } finally {
      taken.abort();
      await full.close();
    }
  });

  it('shows a worker go from ok to failed when its node is SIGKILLed', async (t) => {
    if (!needBrowser(t)) return;
    // The only node: nobody recovers the worker, so it stays failed for the page to see.
    await stopAllNodes();
    const node = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'node', '--worker-id', '7', '--group', '3', '--lease', '2s', '--no-migrate', '--log-level', 'warn'], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: db.url, NODE_TEST_CONTEXT: undefined },
      stdio: 'ignore',
    });
    children.push(node);
    await until(async () => (await db.query('SELECT 1 FROM long_task.worker WHERE id = 7 AND active')).rowCount, 'worker 7 to hold its lease');
    const page = await open(t, '/workers');
    if (!page) return;
    const status = page.locator('tr[data-worker="7"] [data-status]');
    await page.locator('tr[data-worker="7"] [data-status="ok"]').waitFor(WAIT);
    node.kill('SIGKILL');
    // No notification comes from a lapsed lease: the dashboard's timer at the lease's end does it.
    await page.locator('tr[data-worker="7"] [data-status="failed"]').waitFor(WAIT);
    assert.equal(await status.innerText(), 'failed');
    await page.close();
  });
});

describe('dashboard parts', () => {
  it('escapes every value in html``, keeping nested markup', () => {
    const cell = html`<td>${'<script>"x" & \'y\'</script>'}</td>`;
    assert.equal(html`<tr>${[cell, null, undefined, false]}${7}</tr>`.text, '<tr><td>&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;</td>7</tr>');
  });

  it('reads a command as argument lines or a JSON array', () => {
    assert.deepEqual(parseCommand('sh\r\n-c\n\necho  hi \n'), ['sh', '-c', 'echo  hi ']);
    assert.deepEqual(parseCommand(' ["sh", "-c", ""] '), ['sh', '-c', '']);
    assert.throws(() => parseCommand('["sh", 1]'), /non-empty array of strings/);
    assert.throws(() => parseCommand('[oops'), /not valid JSON/);
    assert.throws(() => parseCommand('\n \n'), /program on the first line/);
  });

  it('accepts only its own cookies, Bearer tokens and forms', () => {
    const request = { method: 'GET', url: '/tasks', host: '127.0.0.1:8080', cookie: undefined, authorization: undefined, origin: undefined, secFetchSite: undefined, address: '127.0.0.1' };
    const open = new Access({ token: null, loopbackOnly: true });
    const first = open.check(request);
    assert.equal(first.kind, 'ok');
    if (first.kind !== 'ok') return;
    const cookie = first.session.setCookie!.split(';')[0]!;
    const again = open.check({ ...request, cookie });
    assert.ok(again.kind === 'ok' && again.session.id === first.session.id && again.session.setCookie === null);
    // A forged cookie is a new visitor, not the session it names.
    const forged = open.check({ ...request, cookie: `${cookie.split('.')[0]}.forged` });
    assert.ok(forged.kind === 'ok' && forged.session.id !== first.session.id);
    assert.deepEqual(open.check({ ...request, host: 'rebound.example:8080' }).kind, 'refused');
    const post = { ...request, method: 'POST', cookie };
    const csrf = open.csrfToken(first.session);
    assert.equal(open.refuseCrossSite({ ...post, origin: 'http://127.0.0.1:8080', secFetchSite: 'same-origin' }, first.session, csrf), null);
    assert.match(open.refuseCrossSite(post, first.session, 'guess') ?? '', /CSRF/);
    assert.match(open.refuseCrossSite({ ...post, origin: 'http://127.0.0.1:9999' }, first.session, csrf) ?? '', /Origin/);
    assert.match(open.refuseCrossSite({ ...post, secFetchSite: 'cross-site' }, first.session, csrf) ?? '', /Sec-Fetch-Site/);
    // Another process's key: its cookies mean nothing here.
    assert.ok(new Access({ token: null, loopbackOnly: true }).check({ ...request, cookie }).kind === 'ok');
    const guarded = new Access({ token: '0123456789abcdef', loopbackOnly: false });
    assert.equal(guarded.check({ ...request, cookie }).kind, 'refused');
    assert.equal(guarded.check({ ...request, authorization: 'Bearer 0123456789abcdef' }).kind, 'ok');
  });
});
