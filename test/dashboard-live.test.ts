// The dashboard's live pages in a real browser (Chromium through playwright-core) against a
// real database and a real node: lists patched row by row (focus and selection stay), a task
// page that follows its run from the events alone (its requests counted), the run label,
// ANSI colours, the raw download, phone width, and every page without a failed request or a
// console error.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it, type TestContext } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startDashboard, type DashboardServer } from '../src/http/dashboard/index.js';
import { watched as watchPage } from './helpers/dashboard.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { addTask, getTask, startNode, stopAllNodes, testLogger } from './helpers/node.js';
import { until } from './helpers/wait.js';

const CHROMIUM = process.env.PGTASKS_CHROMIUM ?? '/usr/bin/chromium';
/** Liveness bounds for the browser's waits, not measures: a live update takes milliseconds. */
const WAIT = { timeout: 30_000 };
/** A group no node serves: its tasks stay where the test puts them. */
const IDLE_GROUP = 77;

let db: TestDatabase;
let dashboard: DashboardServer;
let browser: Browser | null = null;
let base: string;

before(async () => {
  db = await createTestDatabase('dashboard_live');
  dashboard = await startDashboard({ connectionString: db.url, schema: 'long_task', host: '127.0.0.1', port: 0, logger: testLogger });
  base = `http://127.0.0.1:${dashboard.port}`;
  if (existsSync(CHROMIUM)) {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] });
  }
  await startNode(db, { workerId: 1, groupId: 0 });
});

after(async () => {
  await browser?.close();
  await stopAllNodes();
  await dashboard.close();
  await db.close();
});

interface Watched {
  page: Page;
  /** Every request the page made, but its event stream. */
  requests: string[];
  /** Failed requests, answers of 400 and up, console errors and uncaught exceptions. */
  problems: string[];
}

async function open(t: TestContext, path: string, viewport = { width: 1200, height: 700 }, beforeGoto?: (page: Page) => Promise<void>): Promise<Watched | null> {
  if (!browser) {
    t.skip(`chromium not found at ${CHROMIUM}: install it with apt-get install chromium (or set PGTASKS_CHROMIUM)`);
    return null;
  }
  const { page, problems } = await watchPage(browser, viewport);
  const requests: string[] = [];
  page.on('request', (r) => {
    if (!new URL(r.url()).pathname.startsWith('/events')) requests.push(r.url().slice(base.length));
  });
  await beforeGoto?.(page);
  await page.goto(base + path);
  await page.locator('html[data-live="open"]').waitFor({ state: 'attached', ...WAIT });
  return { page, requests, problems };
}

/** The text of the output panel. */
const outputText = (page: Page): Promise<string> => page.evaluate<string>("document.getElementById('output').textContent");

describe('dashboard live pages', () => {
  it('patches a new row into the list and keeps the focus on the row a reader is at', async (t) => {
    const first = await addTask(db, ['echo', 'focus me'], { state: 'DR', group: IDLE_GROUP });
    // The list's first read (when the stream opens) is held until the reader has focused a
    // button: that read patches a page the server rendered whole, whose markup differs from
    // the fragment's in whitespace, and it once replaced the table under the focus.
    let focused!: () => void;
    const focusDone = new Promise<void>((resolve) => { focused = resolve; });
    const watched = await open(t, `/tasks?group=${IDLE_GROUP}`, undefined, async (p) => {
      await p.route((url) => url.searchParams.get('fragment') === '1', async (route) => {
        await focusDone;
        await route.continue();
      });
    });
    if (!watched) return;
    const { page } = watched;
    const button = page.locator(`tr[data-id="${first}"] button`).first();
    await button.focus();
    await page.evaluate('window.focused = document.activeElement');
    focused();
    await page.locator('#task-list[data-refreshed]').waitFor({ state: 'attached', ...WAIT });
    const keptOnOpen = await page.evaluate<boolean>('window.focused === document.activeElement && window.focused.isConnected');
    assert.ok(keptOnOpen, 'the focused button is the same element, still focused, after the first read of the list');
    const second = await addTask(db, ['echo', 'a newcomer'], { group: IDLE_GROUP, state: 'DR' });
    // A draft notifies nobody; a queued task does (it is in a group no node serves).
    await db.query('UPDATE long_task.task SET state_id = $2 WHERE id = $1', [second, 'AW']);
    await page.locator(`tr[data-id="${second}"]`).waitFor(WAIT);
    const kept = await page.evaluate<boolean>(
      "window.focused !== null && window.focused === document.activeElement && window.focused.isConnected && window.focused.tagName === 'BUTTON'");
    assert.ok(kept, 'the focused button is the same element, still focused, after the row above it was added');
    assert.deepEqual(watched.problems, []);
    await page.close();
  });

  it('does not read a list again for tasks that ended elsewhere', async (t) => {
    const shown = await addTask(db, ['echo', 'shown'], { state: 'DR', group: IDLE_GROUP });
    const watched = await open(t, `/tasks?group=${IDLE_GROUP}`);
    if (!watched) return;
    const { page, requests } = watched;
    await page.locator(`tr[data-id="${shown}"]`).waitFor(WAIT);
    await page.locator('#task-list[data-refreshed]').waitFor({ state: 'attached', ...WAIT });
    const before = requests.length;
    // A task of group 0 is queued and ends: the list (group 77, no state filter) is not concerned.
    const elsewhere = await addTask(db, ['true']);
    await until(async () => (await getTask(db, elsewhere)).state_id === 'CS', 'the task elsewhere to complete');
    // Then one that concerns it: its notification comes after the others on the same stream.
    const concerned = await addTask(db, ['echo', 'concerned'], { group: IDLE_GROUP });
    await page.locator(`tr[data-id="${concerned}"]`).waitFor(WAIT);
    assert.deepEqual(requests.slice(before), [`/tasks?group=${IDLE_GROUP}&fragment=1`], 'one read, for the task that concerns the list');
    assert.deepEqual(watched.problems, []);
    await page.close();
  });

  it("patches a task page's changed fields and keeps a selection in the others", async (t) => {
    const id = await addTask(db, ['echo', 'select this text'], { state: 'DR', group: IDLE_GROUP });
    const watched = await open(t, `/tasks/${id}`);
    if (!watched) return;
    const { page } = watched;
    await page.evaluate(`{
      const range = document.createRange();
      range.selectNodeContents(document.querySelector('dd[data-field="command"]'));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
    }`);
    await db.query("UPDATE long_task.task SET state_id = 'AW' WHERE id = $1", [id]);
    await page.locator('#task-summary [data-state="AW"]').waitFor({ state: 'attached', ...WAIT });
    await page.locator('dd[data-field="state"] .state-AW').waitFor(WAIT);
    assert.match(await page.evaluate<string>('getSelection().toString()'), /select this text/);
    assert.deepEqual(watched.problems, []);
    await page.close();
  });

  it('follows a running task from its events alone: a few requests while lines arrive, the tail followed unless scrolled up', async (t) => {
    // 80 lines at once (the panel overflows), then a line every 0.2 s.
    const id = await addTask(db, ['sh', '-c', 'seq 1 80 | sed "s/^/early /"; i=0; while [ $i -lt 1000 ]; do i=$((i+1)); echo "line $i"; sleep 0.2; done']);
    await until(async () => (await getTask(db, id)).state_id === 'AE', 'the task to start');
    const watched = await open(t, `/tasks/${id}`);
    if (!watched) return;
    const { page, requests } = watched;
    const lastLine = async (): Promise<number> => {
      const numbers = [...(await outputText(page)).matchAll(/^line (\d+)$/gm)].map((m) => Number(m[1]));
      return numbers.length === 0 ? 0 : numbers[numbers.length - 1]!;
    };
    const lineShown = (n: number): Promise<unknown> => page.locator('#output').filter({ hasText: new RegExp(`\\nline ${n}\\n`) }).waitFor(WAIT);
    await lineShown(2);
    const from = await lastLine();
    await lineShown(from + 1);
    const before = requests.length;
    await lineShown(from + 11);
    const made = requests.slice(before);
    // Re-reading the parts on each event made two requests a line; the events carry the lines.
    assert.ok(made.length <= 2, `10 lines made ${made.length} requests: ${made.join(', ')}`);
    const pre = "document.getElementById('output')";
    const atTail = (): Promise<boolean> => page.evaluate<boolean>(`${pre}.scrollHeight - ${pre}.scrollTop - ${pre}.clientHeight < 24`);
    assert.ok(await page.evaluate<boolean>(`${pre}.scrollHeight > ${pre}.clientHeight`), 'the output overflows its panel');
    assert.ok(await atTail(), 'the output follows its tail');
    // Scrolled up, it stays where the reader is.
    await page.evaluate(`${pre}.scrollTop = 0`);
    const now = await lastLine();
    await lineShown(now + 3);
    assert.equal(await page.evaluate<number>(`${pre}.scrollTop`), 0);
    assert.equal(await page.locator('#output-run').innerText(), 'run 1');
    assert.deepEqual(watched.problems, []);
    await page.close();
    await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1", [id]);
    await until(async () => (await getTask(db, id)).state_id === 'CC', 'the task to be cancelled');
  });

  it('names the run it prints: a re-queued task shows run 2, its output and its raw link', async (t) => {
    const id = await addTask(db, ['sh', '-c', 'echo "a run of pid $$"']);
    await until(async () => (await getTask(db, id)).state_id === 'CS', 'run 1 to complete');
    const watched = await open(t, `/tasks/${id}`);
    if (!watched) return;
    const { page } = watched;
    await page.locator('#output').filter({ hasText: 'a run of pid' }).waitFor(WAIT);
    const first = await outputText(page);
    assert.equal(await page.locator('#output-run').innerText(), 'run 1');
    await db.query("UPDATE long_task.task SET state_id = 'AW' WHERE id = $1", [id]);
    await page.locator('#task-summary [data-latest-attempt="2"][data-state="CS"]').waitFor({ state: 'attached', ...WAIT });
    await page.locator('#output[data-attempt="2"]').filter({ hasText: 'a run of pid' }).waitFor(WAIT);
    assert.notEqual(await outputText(page), first, "run 2's output replaces run 1's");
    assert.equal(await page.locator('#output-run').innerText(), 'run 2');
    assert.equal(await page.locator('#output-raw').getAttribute('href'), `/tasks/${id}/output.txt?attempt=2`);
    // The runs table has read the new run.
    await page.locator('#task-runs table.runs a[href$="attempt=2"]').waitFor(WAIT);
    assert.deepEqual(watched.problems, []);
    await page.close();
  });

  it('renders ANSI colours as classes, strips other escapes, never makes markup of output, and serves it raw', async (t) => {
    const script = String.raw`printf '\033[31mred\033[0m plain <b>not markup</b> \033[1;32mbold green\033[0m\033[2K\033]0;a title\007 \033[38;5;200mcolour 200\033[0m end\n'`;
    const id = await addTask(db, ['sh', '-c', script]);
    await until(async () => (await getTask(db, id)).state_id === 'CS', 'the task to complete');
    const raw = await fetch(`${base}/tasks/${id}/output.txt?attempt=1`);
    assert.equal(raw.status, 200);
    assert.equal(raw.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(raw.headers.get('content-disposition'), `attachment; filename="task-${id}-run-1.txt"`);
    assert.ok((await raw.text()).startsWith('\x1b[31mred\x1b[0m plain <b>not markup</b>'), 'the raw text is as printed');
    assert.equal((await fetch(`${base}/tasks/${id}/output.txt?attempt=9`)).status, 400);

    const watched = await open(t, `/tasks/${id}`);
    if (!watched) return;
    const { page } = watched;
    await page.locator('#output').filter({ hasText: 'end' }).waitFor(WAIT);
    assert.equal(await page.locator('#output span.ansi-fg-1').innerText(), 'red');
    assert.equal(await page.locator('#output span.ansi-fg-2.ansi-bold').innerText(), 'bold green');
    const text = await outputText(page);
    assert.equal(text, 'red plain <b>not markup</b> bold green colour 200 end\n');
    assert.equal(await page.locator('#output b').count(), 0, 'no element made of the output');
    assert.deepEqual(watched.problems, []);
    await page.close();
  });

  it('fits a phone (390 px): no page wider than the screen, even with a 4 000-character argument', async (t) => {
    const long = await addTask(db, ['echo', 'x'.repeat(4000), 'and words after it'], { state: 'DR', group: IDLE_GROUP });
    const scheduled = await addTask(db, ['echo', 'tick'], { state: 'DR', group: IDLE_GROUP });
    await db.query("UPDATE long_task.task SET shed_period_id = 'SEC', shed_period_count = 10, next_start = now() + interval '1 day' WHERE id = $1", [scheduled]);
    for (const path of ['/tasks', `/tasks?group=${IDLE_GROUP}`, `/tasks/${long}`, '/workers', '/schedules', '/groups']) {
      const watched = await open(t, path, { width: 390, height: 844 });
      if (!watched) return;
      const { page } = watched;
      const widths = await page.evaluate<{ page: number; screen: number; header: number; headerBox: number }>(`({
        page: document.scrollingElement.scrollWidth, screen: innerWidth,
        header: document.querySelector('header').scrollWidth, headerBox: document.querySelector('header').clientWidth,
      })`);
      assert.ok(widths.page <= widths.screen, `${path} is ${widths.page} px wide on a ${widths.screen} px screen`);
      assert.ok(widths.header <= widths.headerBox, `${path}: the header is cut (${widths.header} px in ${widths.headerBox})`);
      if (path === '/schedules') assert.match(await page.locator(`tr:has(a[href="/tasks/${scheduled}"])`).innerText(), /every 10 s/);
      if (path.startsWith('/tasks?')) {
        // The long command is clipped on the list, the rest behind "show all".
        const cell = page.locator(`tr[data-id="${long}"] td.command`);
        assert.ok((await cell.innerText()).length < 400, 'the command is clipped');
        await cell.locator('summary').click();
        assert.match(await cell.innerText(), /and words after it/);
        assert.ok(await page.evaluate<boolean>('document.scrollingElement.scrollWidth <= innerWidth'), 'shown whole, it still fits');
      }
      assert.deepEqual(watched.problems, []);
      await page.close();
    }
  });

  it('says a paused worker is paused, live', async (t) => {
    const watched = await open(t, '/workers');
    if (!watched) return;
    const { page } = watched;
    await page.locator('tr[data-worker="1"] [data-status="ok"]').waitFor(WAIT);
    await db.query('UPDATE long_task.worker SET stop = 1 WHERE id = 1');
    try {
      await page.locator('tr[data-worker="1"] [data-status="paused"]').waitFor(WAIT);
      assert.equal(await page.locator('tr[data-worker="1"] [data-status]').innerText(), 'paused');
    } finally {
      await db.query('UPDATE long_task.worker SET stop = 0 WHERE id = 1');
    }
    await page.locator('tr[data-worker="1"] [data-status="ok"]').waitFor(WAIT);
    assert.deepEqual(watched.problems, []);
    await page.close();
  });

  it('loads every page without a failed request or a console error, and shows the favicon and human state names', async (t) => {
    const ended = await addTask(db, ['sh', '-c', 'echo out; echo "\x1b[31mfailing\x1b[0m with a long reason" >&2; exit 3']);
    await until(async () => (await getTask(db, ended)).state_id === 'CF', 'the task to fail');
    const paths = ['/', '/tasks', '/tasks?state=CF', `/tasks/${ended}`, `/tasks/${ended}?attempt=1`, '/workers', '/schedules', '/groups'];
    for (const path of paths) {
      const watched = await open(t, path);
      if (!watched) return;
      const { page, requests, problems } = watched;
      // The lists read their table once when the stream opens, a task page its output.
      const lists = page.locator('[data-src][data-live~="tasks"], [data-src][data-live~="workers"]');
      if (await lists.count() > 0) await page.locator('[data-src][data-refreshed]').first().waitFor({ state: 'attached', ...WAIT });
      if (path.startsWith(`/tasks/${ended}`)) await page.locator('#output[data-seq]').waitFor({ state: 'attached', ...WAIT });
      assert.deepEqual(problems, [], path);
      assert.deepEqual(requests.filter((r) => /undefined/.test(r)), [], `${path} asked for undefined`);
      assert.ok(requests.includes('/static/favicon.svg'), `${path} has its favicon`);
      await page.close();
    }
    const list = await open(t, '/tasks?state=CF');
    if (!list) return;
    const badge = list.page.locator(`tr[data-id="${ended}"] .state`);
    assert.equal(await badge.innerText(), 'failed');
    assert.equal(await badge.getAttribute('title'), 'CF');
    const error = list.page.locator(`tr[data-id="${ended}"] td.error-cell`);
    assert.match((await error.getAttribute('title')) ?? '', /failing with a long reason/);
    assert.ok(!((await error.getAttribute('title')) ?? '').includes('\x1b'), 'no escape code in the title');
    await list.page.close();
  });
});
