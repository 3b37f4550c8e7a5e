// Hostile input, end to end (issue 13): through the real CLI, plain SQL, a real node and the
// dashboard over HTTP. Each value is kept as a faithful literal or refused with one readable
// line; nothing is interpreted by a shell, no stack trace reaches the user, and a refusal
// changes nothing.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDashboard, type DashboardServer } from '../src/http/dashboard/index.js';
import { ROOT, runCli } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { addTask, getTask, startNode, stopAllNodes, tempDir, testLogger, waitEnded } from './helpers/node.js';

let db: TestDatabase;
let work: string;
const warnings: string[] = [];
const onWarning = (w: Error): void => void warnings.push(w.name);
before(async () => {
  db = await createTestDatabase('hostile');
  work = tempDir('hostile');
  process.on('warning', onWarning);
});
after(async () => {
  process.off('warning', onWarning);
  await stopAllNodes();
  await db?.close();
});

async function taskCount(): Promise<number> {
  return (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM long_task.task')).rows[0]!.n;
}

/** A refusal as the user sees it: exit 1 or 2, one line, no stack trace. */
function assertRefused(r: { code: number | null; stderr: string }, pattern: RegExp): void {
  assert.ok(r.code === 1 || r.code === 2, `exit code ${r.code}: ${r.stderr}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line: ${JSON.stringify(r.stderr.slice(0, 500))}`);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  assert.match(lines[0]!, pattern);
}

describe('the CLI', () => {
  it('stores a shell-looking command, cwd, key and params as literals, and runs nothing itself', async () => {
    const marker = path.join(work, 'pwned');
    const command = ['sh', '-c', `$(touch ${marker})`, ';', 'rm', '-rf', '`x`', '|', '&&', '*', '~', '-n', '', 'ü\n€'];
    const key = "x'; DROP TABLE long_task.task; --";
    const r = await runCli(db.url, ['add', '--draft', '--json', '--cwd', "/tmp/a\nb; $(x) 'q'", '--concurrency-key', key, '--params', '{"q":"\'; --","n":-1e308}', '--', ...command]);
    assert.equal(r.code, 0, r.stderr);
    const id = (JSON.parse(r.stdout) as { id: number }).id;
    const row = await getTask(db, id);
    assert.deepEqual(row.command, command);
    assert.equal(row.cwd, "/tmp/a\nb; $(x) 'q'");
    assert.equal(row.concurrency_key, key);
    assert.deepEqual(row.params, { q: "'; --", n: -1e308 });
    assert.equal(existsSync(marker), false, 'the CLI ran nothing');
    assert.ok(await taskCount() >= 1, 'the table is still there');
  });

  it('refuses hostile numbers and values with one line and changes nothing', async () => {
    const before = await taskCount();
    const cases: Array<[string[], RegExp]> = [
      [['add', '--priority', '1\n2', '--', 'echo'], /^pg-tasks: --priority must be an integer, got "1\\n2"/],
      [['add', '--group', '2147483648', '--', 'echo'], /--group is out of range/],
      [['add', '--timeout', `${'9'.repeat(400)}s`, '--', 'echo'], /is out of range/],
      [['add', '--backoff', '1ms..99999999999d', '--', 'echo'], /is out of range/],
      [['add', '--params', '{"a":"\\u0000"}', '--', 'echo'], /\\u0000 \(a NUL character\)/],
      [['add', '--after', '99999999999999999999', '--', 'echo'], /a task id is a positive integer/],
      [['add', '--after', '9007199254740991', '--', 'echo'], /^pg-tasks: --after: task 9007199254740991 does not exist$/],
      [['add', '--retry-on', 'exit_code;DROP', '--', 'echo'], /unknown end reason "exit_code;DROP"/],
      [['ls', '--state', "AW' OR '1'='1"], /unknown state/],
      [['--schema', 'long_task"; DROP TABLE long_task.task; --', 'ls'], /^pg-tasks: the pg-tasks tables are missing in schema "long_task"; DROP TABLE long_task.task; --"/],
      [['schedule', '1', '--tz', `Mars/${'x'.repeat(100_000)}`], /^pg-tasks: task 1 not found$|unknown time zone/],
      [['queue', '-1'], /^pg-tasks: /],
      [['stop', '-2147483648'], /^pg-tasks: worker -2147483648 not found$/],
      [['node', '--lease', '100d'], /--lease must be at most 24d/],
      [['node', '--metrics-port', '70000'], /or off, got 70000/],
      [['dashboard', '--port', '99999'], /--port must be a port \(0 to 65535\)/],
      [['dashboard', '--host', '127.0.0.1\nevil'], /^pg-tasks: .*127\.0\.0\.1\\nevil/],
      [['prune', '--older-than', '100000000d'], /^pg-tasks: timestamp out of range$/],
    ];
    for (const [args, pattern] of cases) assertRefused(await runCli(db.url, args), pattern);
    // A 100 000-character value is not echoed whole.
    const long = await runCli(db.url, ['add', '--priority', '7'.repeat(100_000), '--', 'echo']);
    assert.ok(long.stderr.length < 1_200, `${long.stderr.length} characters`);
    assert.equal(await taskCount(), before, 'nothing changed');
  });

  it('a byte that is not UTF-8 in an argument becomes U+FFFD (Node decodes argv as UTF-8): stored, not refused', async () => {
    const r = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
      // Only a shell can put a raw 0xFF byte in argv; Node's spawn encodes its strings as UTF-8.
      const child = spawn('/bin/sh', ['-c', 'exec "$0" --import tsx src/cli/main.ts add --draft -- echo "$(printf "a\\377b")"', process.execPath], {
        cwd: ROOT, env: { ...process.env, DATABASE_URL: db.url, NODE_TEST_CONTEXT: undefined }, stdio: ['ignore', 'pipe', 'inherit'],
      });
      let stdout = '';
      child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout }));
    });
    assert.equal(r.code, 0);
    assert.deepEqual((await getTask(db, Number(r.stdout.trim()))).command, ['echo', 'a\uFFFDb']);
  });
});

describe('plain SQL', () => {
  const refused = async (sql: string, values: unknown[], code: string, message: RegExp): Promise<void> => {
    const before = await taskCount();
    await assert.rejects(db.query(sql, values), (e: Error & { code?: string }) => {
      assert.equal(e.code, code, e.message);
      assert.match(e.message, message);
      assert.doesNotMatch(e.message, /\n/);
      return true;
    });
    assert.equal(await taskCount(), before);
  };

  it('refuses NUL in a command or in params, invalid UTF-8, and out-of-range numbers, each with its reason', async () => {
    await refused('INSERT INTO long_task.task (command) VALUES ($1)', [['a\0b']], '22021', /invalid byte sequence for encoding "UTF8": 0x00/);
    await refused("INSERT INTO long_task.task (command) VALUES (ARRAY['a' || chr(0)])", [], '54000', /null character not permitted/);
    await refused('INSERT INTO long_task.task (command, params) VALUES (ARRAY[\'echo\'], $1::jsonb)', ['{"a":"\\u0000"}'], '22P05', /unsupported Unicode escape sequence/);
    await refused("INSERT INTO long_task.task (command) VALUES (ARRAY[convert_from('\\xff'::bytea, 'UTF8')])", [], '22021', /0xff/);
    await refused("INSERT INTO long_task.task (command, priority) VALUES ('{echo}', 2147483648)", [], '22003', /integer out of range/);
    for (const [column, value, constraint] of [
      ['timeout', '-1 s', 'task_timeout_positive'], ['max_attempts', '0', 'task_max_attempts_positive'], ['backoff_base', '-1 s', 'task_backoff_base_positive'],
      ['memory_max', '-1', 'task_memory_max_positive'], ['pids_max', '0', 'task_pids_max_positive'], ['run_as', 'root; rm -rf /', 'task_run_as_valid'],
      ['shed_period_count', '-5', 'task_shed_period_count_positive'],
    ] as const) {
      await refused(`INSERT INTO long_task.task (command, ${column}) VALUES ('{echo}', $1)`, [value], '23514', new RegExp(constraint));
    }
  });

  it('keeps negative and extreme ids and priorities literally', async () => {
    const { rows } = await db.query<{ id: number }>("INSERT INTO long_task.task (command, priority, group_id, worker_id, state_id) VALUES ('{echo}', -2147483648, -2147483648, -1, 'DR') RETURNING id");
    const t = await getTask(db, rows[0]!.id);
    assert.deepEqual([t.priority, t.group_id, t.worker_id], [-2147483648, -2147483648, -1]);
  });
});

describe('a node', () => {
  it('runs a command and cwd with newlines and shell characters literally, with no shell', async () => {
    await startNode(db, { workerId: 11, groupId: 11 });
    const dir = path.join(work, "d\nir; $(x) 'q' `y`");
    mkdirSync(dir);
    const marker = path.join(work, 'shell-ran');
    const args = [`$(touch ${marker})`, '; touch x', '|', '\n', "'\"", '*', '~', '-n'];
    const id = await addTask(db, ['/usr/bin/printf', '[%s]', ...args], { group: 11, cwd: dir });
    const pwd = await addTask(db, ['/bin/pwd', '-P'], { group: 11, cwd: dir });
    await waitEnded(db, [id, pwd]);
    assert.equal((await getTask(db, id)).output, args.map((a) => `[${a}]`).join(''));
    assert.equal((await getTask(db, pwd)).output, `${dir}\n`);
    assert.equal(existsSync(marker), false);
  });

  it('refuses an argument or params past the kernel limit (1 MB, 200 kB) when written; one written before the limits ends CF spawn_error E2BIG, and the node goes on', async () => {
    await startNode(db, { workerId: 12, groupId: 12 });
    const arg = 'x'.repeat(1024 * 1024);
    const blob = { blob: 'y'.repeat(200 * 1024) };
    await assert.rejects(addTask(db, ['/bin/echo', arg], { group: 12 }), {
      message: "command element 2 is 1048576 bytes: at most 131071 (Linux's limit for one argument)",
    });
    await assert.rejects(addTask(db, ['/bin/true'], { group: 12, params: blob }), {
      message: 'params is 204812 bytes as JSON: at most 131055 (it reaches the process as one environment variable)',
    });
    // Rows written before version 19 (its limits' trigger set aside to write them here).
    await db.query('ALTER TABLE long_task.task DISABLE TRIGGER task_bounds_insert');
    let big: number, params: number;
    try {
      big = await addTask(db, ['/bin/echo', arg], { group: 12 });
      params = await addTask(db, ['/bin/true'], { group: 12, params: blob });
    } finally {
      await db.query('ALTER TABLE long_task.task ENABLE TRIGGER task_bounds_insert');
    }
    await waitEnded(db, [big, params]);
    for (const id of [big, params]) {
      const t = await getTask(db, id);
      assert.deepEqual([t.state_id, t.end_reason], ['CF', 'spawn_error']);
      assert.match(String(t.error), /E2BIG/);
    }
    const next = await addTask(db, ['sh', '-c', 'echo alive'], { group: 12 });
    await waitEnded(db, [next]);
    assert.equal((await getTask(db, next)).output, 'alive\n');
  });

  it('takes a timeout past 24.8 days (setTimeout fired those at once) or past the timestamps, and its runs end normally', async () => {
    await startNode(db, { workerId: 13, groupId: 13 });
    const month = await db.query<{ id: number }>("INSERT INTO long_task.task (command, group_id, state_id, timeout) VALUES ('{sh,-c,sleep 0.3}', 13, 'AW', '30 days') RETURNING id");
    const eon = await db.query<{ id: number }>("INSERT INTO long_task.task (command, group_id, state_id, timeout) VALUES ('{true}', 13, 'AW', '100000000 years') RETURNING id");
    const ids = [month.rows[0]!.id, eon.rows[0]!.id];
    await waitEnded(db, ids);
    for (const id of ids) assert.deepEqual([(await getTask(db, id)).state_id, (await getTask(db, id)).end_reason], ['CS', 'completed']);
    const deadline = await db.query<{ deadline: number }>('SELECT deadline FROM long_task.task_run WHERE task_id = $1', [ids[1]]);
    assert.equal(deadline.rows[0]!.deadline, Infinity);
    assert.ok(!warnings.includes('TimeoutOverflowWarning'), 'no timer overflowed');
  });
});

describe('the dashboard', () => {
  let dashboard: DashboardServer;
  let base: string;
  before(async () => {
    dashboard = await startDashboard({ connectionString: db.url, schema: 'long_task', host: '127.0.0.1', port: 0, logger: testLogger });
    base = `http://127.0.0.1:${dashboard.port}`;
  });
  after(async () => dashboard?.close());

  it('answers every hostile query with a page or one line of 400/404, never a 500', async () => {
    const long = 'a'.repeat(5_000);
    const paths = [
      '/tasks?group=9999999999', '/tasks?group=-9999999999', '/tasks?q=%00', '/tasks?q=%FF', '/tasks?q=%', '/tasks?q=%25_%27%22%5C',
      "/tasks?q=x'%3B%20DROP%20TABLE%20long_task.task%3B--", '/tasks?after=99999999999999999999', '/tasks?sort=queue&after=9999999999:1:1',
      '/tasks?sort=queue&after=0:9223372036854775807:1', '/tasks?limit=0', '/tasks?limit=-1', '/tasks?state=%FF', `/tasks?q=${long}`,
      '/tasks/%FF', '/tasks/999999999999999', '/tasks/-1', '/tasks/1?attempt=999999999', '/tasks/1/output?attempt=x', '/tasks?group=1&group=2', '/static/%FF',
    ];
    for (const p of paths) {
      const r = await fetch(base + p);
      const body = await r.text();
      assert.ok(r.status < 500, `${p}: ${r.status} ${body}`);
      if (r.status >= 400) {
        assert.equal(body.trimEnd().split('\n').length, 1, `${p}: one line, got ${JSON.stringify(body.slice(0, 200))}`);
        assert.ok(body.length < 400, p);
      }
    }
    assert.ok(await taskCount() > 0, 'the table is still there');
  });

  it('takes hostile form fields literally or refuses them on the page; never a 500, never a redirect off the site', async () => {
    const page = await fetch(`${base}/tasks`);
    const cookie = page.headers.get('set-cookie')!.split(';')[0]!;
    const csrf = /name="csrf" value="([^"]+)"/.exec(await page.text())![1]!;
    const post = async (p: string, form: Record<string, string>): Promise<Response> => {
      const r = await fetch(base + p, { method: 'POST', redirect: 'manual', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ csrf, ...form }).toString() });
      assert.equal(r.status, 303, `${p} ${JSON.stringify(form)}: ${r.status} ${await r.text()}`);
      return r;
    };
    const before = await taskCount();
    for (const command of ['echo\na\0b', '["echo","a\\u0000b"]']) await post('/tasks', { command });
    await post('/tasks', { command: 'echo', group: '9999999999' });
    assert.equal(await taskCount(), before, 'the refusals changed nothing');
    for (const back of ['/\r\nSet-Cookie: x=1', '/é€', '/\t/evil.example', '//evil.example']) {
      const r = await post('/tasks/1/cancel', { back });
      assert.equal(r.headers.get('location'), '/tasks/1', `back ${JSON.stringify(back)}`);
    }
    const r = await post('/tasks', { command: 'sh\n-c\n$(touch /tmp/x); rm\n' });
    const id = Number(/\/tasks\/(\d+)/.exec(r.headers.get('location') ?? '')?.[1]);
    assert.deepEqual((await getTask(db, id)).command, ['sh', '-c', '$(touch /tmp/x); rm']);
  });

  it('a lease months long does not spin its lapse timer', async () => {
    await db.query("INSERT INTO long_task.worker (id, group_id, active, locked_until) VALUES (-77, 0, true, now() + interval '100 days')");
    await db.query("SELECT pg_notify('long_task_worker', '-77')").catch(() => undefined);
    // The worker list is read (and the timer armed) when the page is served and on changes.
    await fetch(`${base}/workers`);
    await db.query('UPDATE long_task.worker SET task_count = 0 WHERE id = -77');
    await fetch(`${base}/workers`);
    assert.ok(!warnings.includes('TimeoutOverflowWarning'), 'no timer overflowed');
  });
});
