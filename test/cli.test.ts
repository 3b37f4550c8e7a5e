// The CLI as a user runs it: a real child process (node --import tsx src/cli/main.ts) against a
// real, migrated database. One in-process node serves NODE_GROUP only, so tasks added to any
// other group stay where the test put them.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Task } from '../src/client/types.js';
import type { TaskNode } from '../src/node/node.js';
import { isProcessAlive } from '../src/node/process/process-group.js';
import { runCli as runCliOn, type CliResult } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { getTask, startNode, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';
import { loadMigrations } from '../src/db/migrate.js';

const LATEST = loadMigrations().length;

/** The only group the node serves. */
const NODE_GROUP = 5;
const UNREACHABLE_URL = 'postgres://postgres@127.0.0.1:1/x';

let db: TestDatabase;
let node: TaskNode | undefined;

before(async () => {
  db = await createTestDatabase('cli');
  node = await startNode(db, { groupId: NODE_GROUP });
});
after(async () => {
  await node?.shutdown('cancel');
  await db?.close();
});

/** Runs the CLI against the test database (env entries override). */
function runCli(args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  return runCliOn(db.url, args, env);
}

/** Runs the CLI and expects success with nothing on stderr. */
async function ok(args: string[], env?: Record<string, string | undefined>): Promise<string> {
  const r = await runCli(args, env);
  assert.equal(r.code, 0, `pg-tasks ${args.join(' ')} failed: ${r.stderr}`);
  assert.equal(r.stderr, '', `pg-tasks ${args.join(' ')} wrote to stderr`);
  return r.stdout;
}

async function okJson<T>(args: string[], env?: Record<string, string | undefined>): Promise<T> {
  return JSON.parse(await ok(args, env)) as T;
}

/** Adds a task through the CLI and returns its id. */
async function addId(args: string[]): Promise<number> {
  const out = await ok(['add', ...args]);
  assert.match(out, /^\d+\n$/);
  return Number(out);
}

function lines(text: string): string[] {
  const all = text.split('\n');
  if (all.at(-1) === '') all.pop();
  return all;
}

function assertNoStack(r: CliResult): void {
  assert.ok(!r.stderr.includes('    at '), `stack trace on stderr:\n${r.stderr}`);
  assert.ok(!/\bat .*\.(ts|js):\d+/.test(r.stderr), `stack frame on stderr:\n${r.stderr}`);
}

/**
 * A runtime failure (the command ran and was refused, or the database failed): non-zero exit,
 * nothing on stdout, and exactly one stderr line, "pg-tasks: <message>". Returns the message.
 */
function assertRuntimeError(r: CliResult): string {
  assert.notEqual(r.code, 0, `expected a failure, got exit 0: ${r.stdout}`);
  assert.equal(r.stdout, '');
  assertNoStack(r);
  const errLines = lines(r.stderr);
  assert.equal(errLines.length, 1, `expected one stderr line, got:\n${r.stderr}`);
  assert.match(errLines[0]!, /^pg-tasks: \S/);
  return errLines[0]!.slice('pg-tasks: '.length);
}

/**
 * A usage error, caught by commander before any command runs: read as any other error, one
 * "pg-tasks: <message>" line (commander's own wording goes through our formatter).
 */
function assertUsageError(r: CliResult): string {
  return assertRuntimeError(r);
}

async function taskCount(schema = 'long_task'): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".task`);
  return rows[0]!.n;
}

async function stateOf(id: number): Promise<string> {
  return (await getTask(db, id)).state_id as string;
}


/** Splits a `pg-tasks ls` table into its rows (columns are separated by two spaces or more). */
function parseTable(text: string): { header: string[]; rows: string[][] } {
  const [header, ...rows] = lines(text).map((l) => l.trimEnd().split(/ {2,}/));
  return { header: header!, rows };
}

describe('add', () => {
  it('prints just the id of a waiting task in group 0', async () => {
    const out = await ok(['add', '--', 'echo', 'hello']);
    assert.match(out, /^[1-9]\d*\n$/);
    const row = await getTask(db, Number(out));
    assert.equal(row.state_id, 'AW');
    assert.deepEqual(row.command, ['echo', 'hello']);
    assert.equal(row.group_id, 0);
    assert.equal(row.priority, 0);
    assert.equal(row.worker_id, null);
    assert.equal(row.cwd, null);
    assert.equal(row.params, null);
  });

  it('--json prints the inserted row', async () => {
    const task = await okJson<Task>(['add', '--json', '--group', '7', '--', 'echo', 'json']);
    assert.equal(typeof task.id, 'number');
    assert.equal(task.state_id, 'AW');
    assert.deepEqual(task.command, ['echo', 'json']);
    assert.equal(task.group_id, 7);
    const row = await getTask(db, task.id);
    assert.equal(row.state_id, 'AW');
    assert.equal(new Date(task.created).getTime(), (row.created as Date).getTime());
  });

  it('--group, --priority, --worker, --draft, --cwd and --params land in the row', async () => {
    const args = ['add', '--json', '--group', '3', '--priority', '-5', '--worker', '9', '--draft', '--cwd', '/tmp', '--params', '{"a":1}', '--', 'sh', '-c', 'echo "$0 x"'];
    const task = await okJson<Task>(args);
    const row = await getTask(db, task.id);
    assert.equal(row.state_id, 'DR');
    assert.equal(row.group_id, 3);
    assert.equal(row.priority, -5);
    assert.equal(row.worker_id, 9);
    assert.equal(row.cwd, '/tmp');
    assert.deepEqual(row.params, { a: 1 });
    assert.deepEqual(row.command, ['sh', '-c', 'echo "$0 x"']);
    // The JSON printed is that same row.
    assert.equal(task.state_id, 'DR');
    assert.deepEqual(task.params, { a: 1 });
    assert.equal(task.cwd, '/tmp');
  });

  it('--params with invalid JSON fails with one usage error and inserts nothing', async () => {
    const before = await taskCount();
    const message = assertUsageError(await runCli(['add', '--params', 'not json', '--', 'echo', 'x']));
    assert.match(message, /--params/);
    assert.match(message, /not valid JSON/);
    assert.equal(await taskCount(), before);
  });

  it('refuses a missing or empty command and inserts nothing', async () => {
    const before = await taskCount();
    assert.match(assertUsageError(await runCli(['add'])), /missing required argument 'command'/);
    assert.equal(assertRuntimeError(await runCli(['add', '--', ''])), 'a task needs a command');
    assert.match(assertUsageError(await runCli(['add', '--priority', 'high', '--', 'true'])), /--priority must be an integer/);
    assert.equal(await taskCount(), before);
  });

  it('--after names the flag when a task does not exist', async () => {
    const before = await taskCount();
    assert.equal(assertRuntimeError(await runCli(['add', '--after', '99999', '--', 'true'])), '--after: task 99999 does not exist');
    assert.equal(await taskCount(), before);
  });

  it('refuses a duration without a unit, naming the flag, wherever a duration is taken', async () => {
    const before = await taskCount();
    assert.equal(assertUsageError(await runCli(['add', '--timeout', '5', '--', 'true'])), '--timeout: "5" needs a unit (e.g. 5s, 2m, 1h)');
    assert.equal(assertUsageError(await runCli(['add', '--backoff', '1..10m', '--', 'true'])), '--backoff: "1" needs a unit (e.g. 1s, 2m, 1h)');
    assert.equal(assertUsageError(await runCli(['schedule', '1', '--every', '1h', '--timeout', '30'])), '--timeout: "30" needs a unit (e.g. 30s, 2m, 1h)');
    assert.equal(assertUsageError(await runCli(['prune', '--older-than', '30'])), '--older-than: "30" needs a unit (e.g. 30s, 2m, 1h)');
    for (const flag of ['--lease', '--kill-grace', '--orphan-grace', '--prune-every']) {
      const r = await runCli(['node', flag, '20'], { DATABASE_URL: UNREACHABLE_URL });
      assert.equal(assertUsageError(r), `${flag}: "20" needs a unit (e.g. 20s, 2m, 1h)`);
    }
    // With the unit, it is taken: 5 s, not 5 ms.
    const task = await okJson<Task>(['add', '--json', '--draft', '--timeout', '5s', '--', 'true']);
    assert.deepEqual(task.timeout, { seconds: 5 });
    assert.equal(await taskCount(), before + 1);
  });
});

describe('queue and cancel', () => {
  it('queue moves a draft to AW', async () => {
    const id = await addId(['--draft', '--group', '8', '--', 'true']);
    assert.equal(await stateOf(id), 'DR');
    assert.equal(await ok(['queue', String(id)]), `task ${id} is AW\n`);
    assert.equal(await stateOf(id), 'AW');
  });

  it('cancel ends a waiting task at once (CC), and queue brings it back', async () => {
    const id = await addId(['--group', '8', '--', 'true']);
    assert.equal(await ok(['cancel', String(id)]), `task ${id} is CC\n`);
    const row = await getTask(db, id);
    assert.equal(row.state_id, 'CC');
    assert.ok(row.finished instanceof Date);
    const queued = await okJson<Task>(['queue', '--json', String(id)]);
    assert.equal(queued.id, id);
    assert.equal(queued.state_id, 'AW');
    assert.equal(queued.finished, null);
  });

  it('cancel of an ended task is refused with the trigger rule', async () => {
    const id = await addId(['--group', '8', '--', 'true']);
    await ok(['cancel', String(id)]);
    const r = await runCli(['cancel', String(id)]);
    assert.equal(assertRuntimeError(r), `can't cancel an inactive task (task ${id} is CC)`);
    assert.equal(await stateOf(id), 'CC');
  });

  it('cancel of a draft is refused too', async () => {
    const id = await addId(['--draft', '--group', '8', '--', 'true']);
    assert.equal(assertRuntimeError(await runCli(['cancel', String(id)])), `can't cancel an inactive task (task ${id} is DR)`);
    assert.equal(await stateOf(id), 'DR');
  });

  it('queue and cancel of a task that does not exist say so', async () => {
    assert.equal(assertRuntimeError(await runCli(['queue', '999999'])), 'task 999999 not found');
    assert.equal(assertRuntimeError(await runCli(['cancel', '999999'])), 'task 999999 not found');
  });

  it('with a node running: queue of an executing task is refused, cancel kills it and it ends CC', async () => {
    const id = await addId(['--group', String(NODE_GROUP), '--', 'sleep', '60']);
    const running = await until(async () => {
      const row = await getTask(db, id);
      return row.state_id === 'AE' && row.pid !== null ? row : null;
    }, `task ${id} to be running`);
    const pid = running.pid as number;
    assert.ok(isProcessAlive(pid));

    const refused = await runCli(['queue', String(id)]);
    assert.equal(assertRuntimeError(refused), `task ${id} is AE: only a draft (DR) or ended (C*) task can be queued`);
    assert.equal(await stateOf(id), 'AE');

    assert.equal(await ok(['cancel', String(id)]), `task ${id} is AC\n`);
    await waitEnded(db, [id]);
    const row = await getTask(db, id);
    assert.equal(row.state_id, 'CC');
    assert.ok(row.finished instanceof Date);
    await until(() => !isProcessAlive(pid), `process ${pid} to be gone`);
  });
});

describe('show', () => {
  it('prints every field of a task as text', async () => {
    const id = await addId(['--draft', '--group', '3', '--priority', '4', '--cwd', 'sub/dir', '--params', '{"a":1}', '--', 'echo', 'hi there']);
    const out = lines(await ok(['show', String(id)]));
    assert.equal(out[0], `id:          ${id}`);
    assert.ok(out.includes('state:       DR'), out.join('\n'));
    assert.ok(out.includes('command:     ["echo","hi there"]'), out.join('\n'));
    assert.ok(out.includes('group:       3'));
    assert.ok(out.includes('priority:    4'));
    assert.ok(out.includes('worker:      -'));
    assert.ok(out.includes('cwd:         sub/dir'));
    assert.ok(out.includes('params:      {"a":1}'));
    assert.ok(out.includes('started:     -'));
    assert.ok(out.includes('exit:        -'));
    assert.ok(out.some((l) => /^created: {5}\d{4}-\d\d-\d\dT/.test(l)), out.join('\n'));
    assert.ok(!out.includes('output (tail):'));
  });

  it('shows the exit code, node and output tail of a task the node ran', async () => {
    const id = await addId(['--group', String(NODE_GROUP), '--', 'sh', '-c', 'echo hello; echo world; exit 3']);
    await waitEnded(db, [id]);
    const out = lines(await ok(['show', String(id)]));
    assert.ok(out.includes('state:       CF (exit_code)'), out.join('\n'));
    assert.ok(out.includes('attempt:     1'), out.join('\n'));
    assert.ok(out.includes('exit:        3'), out.join('\n'));
    assert.ok(out.includes('node:        test-node'), out.join('\n'));
    assert.ok(out.includes('worker:      1'), out.join('\n'));
    assert.deepEqual(out.slice(out.indexOf('output (tail):')), ['output (tail):', 'hello', 'world']);
  });

  it('of a task cancelled because its prerequisite failed: "depended on", not "ran after"', async () => {
    const failing = await addId(['--group', String(NODE_GROUP), '--', 'sh', '-c', 'exit 3']);
    const after = await addId(['--group', '8', '--after', String(failing), '--', 'true']);
    await waitEnded(db, [failing, after]);
    const out = lines(await ok(['show', String(after)]));
    assert.ok(out.includes('state:       CC (dependency)'), out.join('\n'));
    assert.ok(out.includes(`depended on: ${failing} (CF)`), out.join('\n'));
    assert.ok(out.includes(`error:       Cancelled: it depends on task ${failing}, which ended CF`), out.join('\n'));
    assert.ok(!out.some((l) => l.startsWith('ran after:')), out.join('\n'));
  });

  it('of a task that ran after its prerequisite: "ran after"', async () => {
    const first = await addId(['--group', String(NODE_GROUP), '--', 'true']);
    const then = await addId(['--group', String(NODE_GROUP), '--after', String(first), '--', 'true']);
    await waitEnded(db, [first, then]);
    assert.ok(lines(await ok(['show', String(then)])).includes(`ran after:   ${first} (CS)`));
  });

  it('--json prints the row', async () => {
    const id = await addId(['--group', '3', '--params', '[1,"two"]', '--', 'echo', 'x']);
    const task = await okJson<Task>(['show', '--json', String(id)]);
    const row = await getTask(db, id);
    assert.equal(task.id, id);
    assert.equal(task.state_id, row.state_id);
    assert.deepEqual(task.command, ['echo', 'x']);
    assert.deepEqual(task.params, [1, 'two']);
    assert.equal(task.group_id, 3);
    assert.equal(new Date(task.last_state_change).getTime(), (row.last_state_change as Date).getTime());
  });
});

describe('logs -f', () => {
  it('exits with how the run ended, 0 CS, 1 CF, 2 CC, and says so in one stderr line', async () => {
    const failed = await addId(['--group', String(NODE_GROUP), '--', 'sh', '-c', 'echo out; exit 3']);
    const f = await runCli(['logs', '-f', String(failed)]);
    assert.deepEqual([f.code, f.stdout, f.stderr], [1, 'out\n', `pg-tasks: task ${failed} ended CF: exit code 3\n`]);

    const succeeded = await addId(['--group', String(NODE_GROUP), '--', 'echo', 'fine']);
    const s = await runCli(['logs', '-f', String(succeeded), '--run', '1']);
    assert.deepEqual([s.code, s.stdout, s.stderr], [0, 'fine\n', `pg-tasks: task ${succeeded} run 1 ended CS: exit code 0\n`]);

    const cancelled = await addId(['--group', String(NODE_GROUP), '--', 'sleep', '60']);
    await until(async () => (await stateOf(cancelled)) === 'AE', `task ${cancelled} to run`);
    const following = runCli(['logs', '-f', String(cancelled)]);
    await ok(['cancel', String(cancelled)]);
    const c = await following;
    assert.deepEqual([c.code, c.stdout, c.stderr], [2, '', `pg-tasks: task ${cancelled} ended CC: cancelled (Cancelled)\n`]);

    // Without -f: what was printed, exit 0, whatever the outcome.
    assert.deepEqual(await ok(['logs', String(failed)]), 'out\n');
  });
});

describe('ls', () => {
  const GROUP = 100;
  let ids: number[] = [];
  // The OWNER column: the user the CLI connects as, which inserted them.
  let owner = '';
  before(async () => {
    owner = (await db.query<{ user: string }>('SELECT current_user AS user')).rows[0]!.user;
    ids = [];
    ids.push(await addId(['--group', String(GROUP), '--', 'echo', 'one']));
    ids.push(await addId(['--group', String(GROUP), '--draft', '--', 'echo', 'two']));
    ids.push(await addId(['--group', String(GROUP), '--priority', '2', '--', 'echo', 'three']));
  });

  it('prints a table, newest first', async () => {
    const { header, rows } = parseTable(await ok(['ls', '--group', String(GROUP)]));
    assert.deepEqual(header, ['ID', 'STATE', 'PROGRESS', 'OWNER', 'GROUP', 'PRIO', 'WORKER', 'EXIT', 'COMMAND']);
    assert.deepEqual(rows, [
      [String(ids[2]), 'AW', '-', owner, String(GROUP), '2', '-', '-', 'echo three'],
      [String(ids[1]), 'DR', '-', owner, String(GROUP), '0', '-', '-', 'echo two'],
      [String(ids[0]), 'AW', '-', owner, String(GROUP), '0', '-', '-', 'echo one'],
    ]);
  });

  it('--json prints the rows, newest first', async () => {
    const tasks = await okJson<Task[]>(['ls', '--json', '--group', String(GROUP)]);
    assert.deepEqual(tasks.map((t) => t.id), [...ids].reverse());
    assert.ok(tasks.every((t) => t.group_id === GROUP));
    assert.deepEqual(tasks.map((t) => t.command), [['echo', 'three'], ['echo', 'two'], ['echo', 'one']]);
  });

  it('--limit keeps the newest', async () => {
    const tasks = await okJson<Task[]>(['ls', '--json', '--group', String(GROUP), '--limit', '2']);
    assert.deepEqual(tasks.map((t) => t.id), [ids[2], ids[1]]);
    const { rows } = parseTable(await ok(['ls', '--limit', '1']));
    assert.equal(rows.length, 1);
    const { rows: [newest] } = await db.query<{ id: number }>('SELECT max(id)::int AS id FROM long_task.task');
    assert.equal(rows[0]![0], String(newest!.id));
  });

  it('--state filters by state, in either case, and combines with --group', async () => {
    const draft = await okJson<Task[]>(['ls', '--json', '--state', 'dr', '--group', String(GROUP)]);
    assert.deepEqual(draft.map((t) => t.id), [ids[1]]);

    const failed = await addId(['--group', String(NODE_GROUP), '--', 'sh', '-c', 'exit 7']);
    await waitEnded(db, [failed]);
    const cf = await okJson<Task[]>(['ls', '--json', '--state', 'CF']);
    assert.ok(cf.length >= 1);
    assert.ok(cf.every((t) => t.state_id === 'CF'), JSON.stringify(cf.map((t) => t.state_id)));
    assert.ok(cf.some((t) => t.id === failed));
    const { rows } = parseTable(await ok(['ls', '--state', 'CF']));
    assert.ok(rows.every((r) => r[1] === 'CF'));
    assert.deepEqual(rows.find((r) => r[0] === String(failed)), [String(failed), 'CF', '-', owner, String(NODE_GROUP), '0', '1', '7', 'sh -c exit 7']);
  });

  it('keeps one task on one line when an argument holds a newline or a tab', async () => {
    const id = await addId(['--group', '101', '--', 'sh', '-c', 'echo a\n\techo b']);
    const out = lines(await ok(['ls', '--group', '101']));
    assert.equal(out.length, 2, out.join('\n'));
    assert.deepEqual(parseTable(out.join('\n')).rows, [[String(id), 'AW', '-', owner, '101', '0', '-', '-', 'sh -c echo a\\n\\techo b']]);
  });

  it('says so when nothing matches', async () => {
    assert.equal(await ok(['ls', '--group', '424242']), 'no tasks\n');
    assert.deepEqual(await okJson<Task[]>(['ls', '--json', '--group', '424242']), []);
  });

  it('refuses a bad --state, --limit or --group', async () => {
    assert.match(assertUsageError(await runCli(['ls', '--state', 'XX'])), /unknown state "XX": one of DR, AW, AE, AC, CS, CF, CC/);
    assert.match(assertUsageError(await runCli(['ls', '--limit', '0'])), /--limit must be at least 1/);
    assert.match(assertUsageError(await runCli(['ls', '--group', 'abc'])), /--group must be an integer/);
  });
});

describe('errors are one line, without a stack', () => {
  for (const bad of ['abc', '0', '-1', '1.5']) {
    it(`show ${bad}: a bad task id`, async () => {
      const message = assertUsageError(await runCli(['show', bad]));
      assert.match(message, new RegExp(`a task id is a positive integer, got "${bad.replace('.', '\\.')}"`));
    });
  }

  it('show of a task that does not exist', async () => {
    assert.equal(assertRuntimeError(await runCli(['show', '999999'])), 'task 999999 not found');
  });

  it('a missing id', async () => {
    assert.equal(assertUsageError(await runCli(['show'])), "missing required argument 'id' (see pg-tasks show --help)");
  });

  it('an unknown command, and one close to a known one', async () => {
    assert.equal(assertUsageError(await runCli(['frobnicate'])), "unknown command 'frobnicate' (see pg-tasks --help)");
    assert.equal(assertUsageError(await runCli(['lss'])), "unknown command 'lss' (did you mean ls?)");
  });

  it('an unknown option, of a command and of the program', async () => {
    assert.equal(assertUsageError(await runCli(['ls', '--bogus'])), "unknown option '--bogus' (see pg-tasks ls --help)");
    assert.equal(assertUsageError(await runCli(['--bogus', 'ls'])), "unknown option '--bogus' (see pg-tasks --help)");
    assert.equal(assertUsageError(await runCli(['ls', '--jsn'])), "unknown option '--jsn' (did you mean --json?)");
  });

  it("commander's other usage errors name the flag first", async () => {
    assert.equal(assertUsageError(await runCli(['add', '--timeout'])), '--timeout: missing its value (--timeout <duration>)');
    assert.equal(assertUsageError(await runCli(['add', '--timeout', '5x', '--', 'true'])), '--timeout: expected a duration like 500ms, 10s, 2m, 1h or 30d, got "5x"');
    assert.equal(assertUsageError(await runCli(['add', '--on-worker-failure', 'retry', '--', 'true'])), '--on-worker-failure: "retry" is not one of fail, requeue');
    assert.equal(assertUsageError(await runCli(['prune'])), '--older-than is required (--older-than <duration>)');
    assert.equal(assertUsageError(await runCli(['show', '1', '2'])), "too many arguments for 'show'. Expected 1 argument but got 2. (see pg-tasks show --help)");
    assert.equal(assertUsageError(await runCli(['stop', '1', '--drain', '--cancel'])), "option '--drain' cannot be used with option '--cancel'");
  });

  it('an unreachable database, for a task command and for migrate', async () => {
    for (const args of [['ls'], ['add', '--', 'true'], ['migrate']]) {
      const message = assertRuntimeError(await runCli(args, { DATABASE_URL: UNREACHABLE_URL }));
      assert.match(message, /^cannot reach PostgreSQL at 127\.0\.0\.1:1 \(ECONNREFUSED\): is it running\? Set DATABASE_URL/, `${args.join(' ')}: ${message}`);
    }
  });

  it('a database that does not exist', async () => {
    const url = new URL(db.url);
    url.pathname = '/pgt_cli_no_such_database';
    const message = assertRuntimeError(await runCli(['ls'], { DATABASE_URL: url.toString() }));
    assert.equal(message, 'cannot connect to PostgreSQL: database "pgt_cli_no_such_database" does not exist');
  });

  it('an option value refused after parsing (node/start --lease below 2s), before any connection', async () => {
    for (const command of ['node', 'start']) {
      const r = await runCli([command, '--lease', '1s'], { DATABASE_URL: UNREACHABLE_URL });
      assert.equal(assertRuntimeError(r), '--lease must be at least 2s, got 1s', command);
    }
  });

  it('a schema that was never migrated, by --schema or PGTASKS_SCHEMA, and it is not created', async () => {
    const expected = 'the pg-tasks tables are missing in schema "nosuch": run "pg-tasks migrate" first (relation "nosuch.task" does not exist)';
    assert.equal(assertRuntimeError(await runCli(['--schema', 'nosuch', 'ls'])), expected);
    assert.equal(assertRuntimeError(await runCli(['--schema', 'nosuch', 'add', '--', 'true'])), expected);
    assert.equal(assertRuntimeError(await runCli(['show', '1'], { PGTASKS_SCHEMA: 'nosuch' })), expected);
    const { rowCount } = await db.query("SELECT 1 FROM pg_namespace WHERE nspname = 'nosuch'");
    assert.equal(rowCount, 0);
  });
});

describe('--help', () => {
  it('of the program lists every command and the environment', async () => {
    const out = await ok(['--help']);
    assert.match(out, /^Usage: pg-tasks /);
    for (const command of ['start', 'node', 'migrate', 'add', 'queue', 'cancel', 'show', 'ls', 'schedule', 'unschedule', 'workers', 'stop']) {
      assert.match(out, new RegExp(`^  ${command} `, 'm'), `${command} missing from --help`);
    }
    assert.match(out, /^ {2}DATABASE_URL /m);
    assert.match(out, /^ {2}PGTASKS_SCHEMA /m);
  });

  for (const command of ['start', 'node', 'migrate', 'add', 'queue', 'cancel', 'show', 'ls', 'schedule', 'unschedule', 'workers', 'stop']) {
    it(`of ${command} exits 0 and lists DATABASE_URL and PGTASKS_SCHEMA`, async () => {
      // An unreachable database proves help never connects (start would even start one).
      const out = await ok([command, '--help'], { DATABASE_URL: UNREACHABLE_URL });
      assert.match(out, new RegExp(`^Usage: pg-tasks ${command} `));
      assert.match(out, /^ {2}DATABASE_URL /m);
      assert.match(out, /^ {2}PGTASKS_SCHEMA /m);
      assert.equal(await ok(['help', command], { DATABASE_URL: UNREACHABLE_URL }), out);
    });
  }

  it('of node and start shows duration defaults as durations, and start its own --max-tasks default', async () => {
    const nodeHelp = await ok(['node', '--help'], { DATABASE_URL: UNREACHABLE_URL });
    const start = await ok(['start', '--help'], { DATABASE_URL: UNREACHABLE_URL });
    for (const out of [nodeHelp, start]) {
      assert.match(out, /--lease <duration> [^]*?\(default:\s+20s\)/);
      assert.match(out, /--prune-every <duration> [^]*?\(default:\s+10m\)/);
      assert.match(out, /--kill-grace <duration> [^]*?\(default:\s+5000ms\)/);
    }
    assert.match(nodeHelp, /--max-tasks <n> .*\(default 10\)/);
    assert.match(start, /--max-tasks <n> .*\(default 4\)/);
  });

  it('of node and start lists --otel and the OTLP endpoint variables', async () => {
    for (const command of ['node', 'start']) {
      const out = await ok([command, '--help'], { DATABASE_URL: UNREACHABLE_URL });
      assert.match(out, /^ {2}--otel {2,}export an OpenTelemetry span per run/m, `${command} --help`);
      assert.match(out, /^ {2}OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT$/m, `${command} --help`);
    }
  });
});

// --no-roles: the roles are cluster-wide, so whether this run creates them depends on the
// server's past; test/roles.test.ts covers them.
describe('migrate', () => {
  it('says an already migrated schema is up to date', async () => {
    assert.equal(await ok(['migrate', '--no-roles']), `schema "long_task" is up to date (version ${LATEST})\n`);
    assert.deepEqual(await okJson(['migrate', '--no-roles', '--json']), { from: LATEST, to: LATEST, applied: [], functions: [] });
  });

  it('--schema other creates another schema whose tasks are its own', async () => {
    assert.equal(await ok(['--schema', 'other', 'migrate', '--no-roles']), `schema "other" migrated from version 0 to ${LATEST}: ${loadMigrations().map((m) => m.name).join(', ')}\n`);
    assert.equal(await ok(['--schema', 'other', 'migrate', '--no-roles']), `schema "other" is up to date (version ${LATEST})\n`);

    const mainBefore = await taskCount('long_task');
    const id = await addId(['--schema', 'other', '--', 'true']);
    const { rows } = await db.query<{ command: string[]; state_id: string }>('SELECT command, state_id FROM other.task WHERE id = $1', [id]);
    assert.deepEqual(rows, [{ command: ['true'], state_id: 'AW' }]);
    assert.equal(await taskCount('other'), 1);
    assert.equal(await taskCount('long_task'), mainBefore);

    // Reading it back through --schema and through PGTASKS_SCHEMA.
    assert.deepEqual((await okJson<Task[]>(['--schema', 'other', 'ls', '--json'])).map((t) => t.id), [id]);
    assert.deepEqual((await okJson<Task[]>(['ls', '--json'], { PGTASKS_SCHEMA: 'other' })).map((t) => t.id), [id]);
    assert.equal((await okJson<Task>(['--schema', 'other', 'show', '--json', String(id)])).state_id, 'AW');
  });
});

describe('workers and stop', () => {
  it('workers lists the node\'s worker as ok with its host and running count', async () => {
    const table = parseTable(await ok(['workers']));
    assert.deepEqual(table.header, ['ID', 'GROUP', 'STATUS', 'STOP', 'TASKS', 'LEASE UNTIL', 'HOST', 'STANDBY', 'NODE']);
    assert.equal(table.rows.find((r) => r[0] === '1')?.[2], 'ok');
    const workers = await okJson<Array<{ id: number; group_id: number; status: string; host: string; active: boolean }>>(['workers', '--json']);
    const mine = workers.find((w) => w.id === 1)!;
    assert.equal(mine.group_id, NODE_GROUP);
    assert.equal(mine.status, 'ok');
    assert.equal(mine.active, true);
    assert.ok(mine.host);
  });

  it('stop --pause / --resume write the stop code and the node obeys', async () => {
    assert.equal(await ok(['stop', '1', '--pause']), 'worker 1: paused (stop code 1): no new tasks; the running ones go on ("--resume" resumes)\n');
    await until(() => node!.stopCode === 1, 'the node to read stop code 1');
    assert.equal((await okJson<Array<{ id: number; status: string }>>(['workers', '--json'])).find((w) => w.id === 1)!.status, 'paused');
    assert.equal(parseTable(await ok(['workers'])).rows.find((r) => r[0] === '1')?.[2], 'paused');
    assert.equal(await ok(['stop', '1', '--resume']), 'worker 1: running (stop code 0): it claims tasks\n');
    await until(() => node!.stopCode === 0, 'the node to read stop code 0');
  });

  it('stop of a worker no node holds says the next node obeys', async () => {
    await db.query('INSERT INTO long_task.worker (id, group_id) VALUES (61, 61)');
    assert.equal(await ok(['stop', '61', '--drain']), 'worker 61: draining (stop code 2): no new tasks; its node exits when the running ones end (no node holds it now: the next one obeys when it starts)\n');
    assert.equal((await okJson<Array<{ id: number; status: string }>>(['workers', '--json'])).find((w) => w.id === 61)!.status, 'stopped');
  });

  it('start (with DATABASE_URL) ends cleanly on "stop --drain", says so, and its node never reads its own cleared code as a resume', async () => {
    const started = runCli(['start', '--worker-id', '62', '--group', '62', '--dashboard-port', 'off', '--metrics-port', 'off', '--log-format', 'json', '--no-migrate']);
    await until(async () => (await db.query('SELECT 1 FROM long_task.worker WHERE id = 62 AND active')).rowCount === 1, 'start to take worker 62');
    await ok(['stop', '62', '--drain']);
    const r = await started;
    assert.equal(r.code, 0, r.stderr);
    const out = lines(r.stdout);
    assert.equal(out.at(-1), 'Worker 62 stopped by "pg-tasks stop 62 --drain": its running tasks ended, the node stopped. Its stop code is cleared: start again to run tasks.');
    assert.ok(out.some((l) => l.includes('draining (stop code 2)')), r.stdout);
    assert.ok(!out.some((l) => l.includes('stop code 0')), r.stdout);
    const { rows } = await db.query<{ stop: number; active: boolean }>('SELECT stop, active FROM long_task.worker WHERE id = 62');
    assert.deepEqual(rows, [{ stop: 0, active: false }]);
  });

  it('stop refuses an unknown worker and conflicting modes', async () => {
    assert.equal(assertRuntimeError(await runCli(['stop', '999'])), 'worker 999 not found');
    assertUsageError(await runCli(['stop', '1', '--drain', '--cancel']));
    assertUsageError(await runCli(['stop', 'x']));
  });
});
