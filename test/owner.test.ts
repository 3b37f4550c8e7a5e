// Owners (docs/security.md, "Owners"; issue 25): every task belongs to the role that inserted
// it, and row-level security shows a submitter only its own tasks, runs and output. Each test
// connects as LOGIN users granted one group role, as roles.test.ts does; the two attacks of the
// issue are made by a user that is a member of the submitter role only. Roles are
// cluster-wide: a prefix of its own (random), dropped at the end.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { migrate } from '../src/db/migrate.js';
import { startDashboard } from '../src/http/dashboard/index.js';
import { ROOT, runCli } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { startNode, stopAllNodes, testLogger, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';

const PREFIX = `pgt_${randomBytes(3).toString('hex')}_`;
const PASSWORD = `pw_${randomBytes(8).toString('hex')}`;
// sub and sub2: two people granted only the submitter role (the rt_sub and rt_sub2).
const USERS = { sub: 'submitter', sub2: 'submitter', operator: 'operator', reader: 'reader', node: 'node' } as const;
type User = keyof typeof USERS;

let db: TestDatabase;
const names = {} as Record<User, string>;
const pools = new Map<User, pg.Pool>();

function urlAs(user: User): string {
  const u = new URL(db.url);
  u.username = names[user];
  u.password = PASSWORD;
  return u.toString();
}

function as(user: User): pg.Pool {
  let pool = pools.get(user);
  if (!pool) {
    pool = new pg.Pool({ connectionString: urlAs(user), max: 2 });
    pool.on('error', () => undefined);
    pools.set(user, pool);
  }
  return pool;
}

async function insertAs(user: User, command: string[], fields: { state?: string; group?: number; dependsOn?: number[] } = {}): Promise<number> {
  const { rows } = await as(user).query<{ id: string }>(
    'INSERT INTO long_task.task (command, state_id, group_id, depends_on) VALUES ($1, $2, $3, $4) RETURNING id',
    [command, fields.state ?? 'AW', fields.group ?? 0, fields.dependsOn ?? null],
  );
  return Number(rows[0]!.id);
}

async function row(id: number): Promise<{ state_id: string; command: string[]; owner: string | null; started: Date | null; exit_code: number | null }> {
  const { rows } = await db.query('SELECT state_id, command, owner, started, exit_code FROM long_task.task WHERE id = $1', [id]);
  return rows[0] as never;
}

/** The ids of the given tasks that `user` sees in task, task_run and task_output. */
async function visible(user: User, ids: number[]): Promise<{ task: number[]; task_run: number[]; task_output: number[] }> {
  const seen = async (table: string, column: string): Promise<number[]> => {
    const { rows } = await as(user).query<{ id: string }>(
      `SELECT DISTINCT ${column} AS id FROM long_task.${table} WHERE ${column} = ANY($1) ORDER BY 1`,
      [ids],
    );
    return rows.map((r) => Number(r.id));
  };
  return { task: await seen('task', 'id'), task_run: await seen('task_run', 'task_id'), task_output: await seen('task_output', 'task_id') };
}

const OWNER_REFUSAL = (target: string, user: string): RegExp =>
  new RegExp(`^can't give a task to ${target}: a task belongs to the role that writes it \\(${user}\\); only an operator or admin may set another owner$`);

before(async () => {
  db = await createTestDatabase('owner');
  const migrated = await runCli(db.url, ['migrate', '--role-prefix', PREFIX]);
  assert.equal(migrated.code, 0, migrated.stderr);
  for (const [user, role] of Object.entries(USERS) as Array<[User, string]>) {
    names[user] = `${PREFIX}u_${user}`;
    await db.query(`CREATE ROLE "${names[user]}" LOGIN PASSWORD '${PASSWORD}'`);
    await db.query(`GRANT "${PREFIX}${role}" TO "${names[user]}"`);
  }
});

after(async () => {
  await stopAllNodes();
  await Promise.all([...pools.values()].map((p) => p.end()));
  const users = Object.values(names).map((n) => `"${n}"`).join(', ');
  const roles = ['reader', 'submitter', 'operator', 'admin', 'node'].map((k) => `"${PREFIX}${k}"`).join(', ');
  await db.query(`DROP OWNED BY ${users}, ${roles}`);
  await db.query(`DROP ROLE IF EXISTS ${users}`);
  await db.query(`DROP ROLE IF EXISTS ${roles}`);
  await db.close();
});

describe('the attacks of issue 25, as a member of the submitter role only', () => {
  it("another's executing task can't be set CS: its dependent does not run while the process works", async () => {
    const group = 41;
    const a = await insertAs('sub2', ['sleep', '60'], { group });
    const b = await insertAs('sub2', ['true'], { group, dependsOn: [a] });
    const node = await startNode({ ...db, url: urlAs('node') }, { workerId: 41, groupId: group });
    await until(async () => (await db.query("SELECT 1 FROM long_task.task WHERE id = $1 AND state_id = 'AE' AND pid IS NOT NULL", [a])).rowCount === 1, 'task a to run');
    // The attack: the seed's own statement, on a task of someone else.
    const attack = await as('sub').query("UPDATE long_task.task SET state_id = 'CS' WHERE id = $1", [a]);
    assert.equal(attack.rowCount, 0);
    // The CLI says what a person needs: not found (it can't be told from a task that does not exist).
    const cancel = await runCli(urlAs('sub'), ['cancel', String(a)], { PGTASKS_ROLE_PREFIX: PREFIX });
    assert.equal(cancel.code, 1);
    assert.equal(cancel.stderr.trim(), `pg-tasks: task ${a} not found`);
    assert.equal((await row(a)).state_id, 'AE');
    assert.equal((await row(b)).state_id, 'AW');
    assert.equal((await row(b)).started, null);
    // The owner ends it: cancelled, and its dependent with it (released by the SECURITY
    // DEFINER trigger, under row-level security).
    assert.equal((await as('sub2').query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1", [a])).rowCount, 1);
    await waitEnded(db, [a, b]);
    assert.deepEqual([(await row(a)).state_id, (await row(b)).state_id], ['CC', 'CC']);
    await node.shutdown('drain', 'test');
  });

  it("another's draft can't be rewritten, queued, read or given away", async () => {
    const draft = await insertAs('sub2', ['sleep', '1'], { state: 'DR', group: 42 });
    const hijack = await as('sub').query(
      "UPDATE long_task.task SET command = '{/usr/bin/echo,hijacked}', state_id = 'AW' WHERE id = $1",
      [draft],
    );
    assert.equal(hijack.rowCount, 0);
    assert.deepEqual(await row(draft), { state_id: 'DR', command: ['sleep', '1'], owner: names.sub2, started: null, exit_code: null });
    assert.deepEqual(await visible('sub', [draft]), { task: [], task_run: [], task_output: [] });
    const queue = await runCli(urlAs('sub'), ['queue', String(draft)]);
    assert.equal(queue.stderr.trim(), `pg-tasks: task ${draft} not found`);
    const show = await runCli(urlAs('sub'), ['show', String(draft)]);
    assert.equal(show.stderr.trim(), `pg-tasks: task ${draft} not found`);
    // Nor may a submitter write a task owned by another, or give its own away.
    await assert.rejects(
      as('sub').query("INSERT INTO long_task.task (command, state_id, owner) VALUES ('{/usr/bin/echo,hijacked}', 'AW', $1)", [names.sub2]),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, '42501');
        assert.match(error.message, OWNER_REFUSAL(names.sub2, names.sub));
        return true;
      },
    );
    // Nor name it as a prerequisite: to a submitter, another's task does not exist.
    await assert.rejects(insertAs('sub', ['true'], { dependsOn: [draft] }), { message: `depends_on names task ${draft}, which does not exist` });
    const own = await insertAs('sub', ['true'], { state: 'DR' });
    await assert.rejects(as('sub').query('UPDATE long_task.task SET owner = $2 WHERE id = $1', [own, names.sub2]), { message: OWNER_REFUSAL(names.sub2, names.sub) });
    await assert.rejects(as('sub').query('UPDATE long_task.task SET owner = NULL WHERE id = $1', [own]), { message: OWNER_REFUSAL('no one \\(NULL\\)', names.sub) });
    assert.equal((await row(own)).owner, names.sub);
  });
});

describe('who sees and changes what', () => {
  it('the owner sees and changes its own: SQL, the CLI (ls and show name the owner)', async () => {
    const group = 43;
    const mine = await insertAs('sub', ['echo', 'mine'], { state: 'DR', group });
    const theirs = await insertAs('sub2', ['echo', 'theirs'], { state: 'DR', group });
    assert.equal((await as('sub').query("UPDATE long_task.task SET command = '{echo,changed}' WHERE id = $1", [mine])).rowCount, 1);
    // Writing itself as the owner is no change, and allowed.
    assert.equal((await as('sub').query('UPDATE long_task.task SET owner = $2 WHERE id = $1', [mine, names.sub])).rowCount, 1);
    const ls = await runCli(urlAs('sub'), ['ls', '--group', String(group)]);
    assert.equal(ls.code, 0, ls.stderr);
    const lines = ls.stdout.trim().split('\n').map((l) => l.trim().split(/ {2,}/));
    assert.deepEqual(lines, [['ID', 'STATE', 'PROGRESS', 'OWNER', 'GROUP', 'PRIO', 'WORKER', 'EXIT', 'COMMAND'], [String(mine), 'DR', '-', names.sub, String(group), '0', '-', '-', 'echo changed']]);
    const show = await runCli(urlAs('sub'), ['show', String(mine)]);
    assert.match(show.stdout, new RegExp(`^owner: +${names.sub}$`, 'm'));
    const json = JSON.parse((await runCli(urlAs('sub'), ['show', '--json', String(mine)])).stdout) as { owner: string };
    assert.equal(json.owner, names.sub);
    assert.deepEqual((await visible('sub2', [mine, theirs])).task, [theirs]);
  });

  it('an operator sees and changes all, and may give a task to another owner', async () => {
    const a = await insertAs('sub', ['true'], { state: 'DR', group: 44 });
    const b = await insertAs('sub2', ['true'], { state: 'DR', group: 44 });
    assert.deepEqual((await visible('operator', [a, b])).task, [a, b]);
    assert.equal((await as('operator').query('UPDATE long_task.task SET owner = $2 WHERE id = $1', [b, names.sub])).rowCount, 1);
    assert.deepEqual((await visible('sub', [a, b])).task, [a, b]);
    assert.deepEqual((await visible('sub2', [a, b])).task, []);
    const { rows } = await as('operator').query<{ owner: string }>(
      "INSERT INTO long_task.task (command, state_id, owner) VALUES ('{true}', 'DR', $1) RETURNING owner",
      [names.sub2],
    );
    assert.equal(rows[0]!.owner, names.sub2);
    // The operator's own insert is its own.
    const own = await insertAs('operator', ['true'], { state: 'DR' });
    assert.equal((await row(own)).owner, names.operator);
  });

  it('a node as the node role runs the tasks of several owners: claims, output, runs, ends; each owner reads only its own', async () => {
    const group = 45;
    const script = 'echo "out of $PG_TASKS_TASK_ID"';
    const a = await insertAs('sub', ['sh', '-c', script], { group });
    const b = await insertAs('sub2', ['sh', '-c', script], { group });
    const c = await insertAs('operator', ['sh', '-c', `${script}; exit 3`], { group });
    const node = await startNode({ ...db, url: urlAs('node') }, { workerId: 45, groupId: group });
    await waitEnded(db, [a, b, c]);
    const { rows } = await db.query<{ id: string; state_id: string; owner: string; end_reason: string; runs: number; output: number }>(
      `SELECT t.id, t.state_id, t.owner, r.end_reason,
              (SELECT count(*) FROM long_task.task_run x WHERE x.task_id = t.id)::int AS runs,
              (SELECT count(*) FROM long_task.task_output o WHERE o.task_id = t.id)::int AS output
         FROM long_task.task t JOIN long_task.task_run r ON r.task_id = t.id WHERE t.id = ANY($1) ORDER BY t.id`,
      [[a, b, c]],
    );
    assert.deepEqual(rows.map((r) => [Number(r.id), r.state_id, r.owner, r.end_reason, r.runs, r.output > 0]), [
      [a, 'CS', names.sub, 'completed', 1, true],
      [b, 'CS', names.sub2, 'completed', 1, true],
      [c, 'CF', names.operator, 'exit_code', 1, true],
    ]);
    assert.deepEqual(await visible('sub', [a, b, c]), { task: [a], task_run: [a], task_output: [a] });
    assert.deepEqual(await visible('sub2', [a, b, c]), { task: [b], task_run: [b], task_output: [b] });
    assert.deepEqual(await visible('reader', [a, b, c]), { task: [a, b, c], task_run: [a, b, c], task_output: [a, b, c] });
    assert.deepEqual(await visible('operator', [a, b, c]), { task: [a, b, c], task_run: [a, b, c], task_output: [a, b, c] });
    const logs = await runCli(urlAs('sub'), ['logs', String(a)]);
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, new RegExp(`out of ${a}`));
    const others = await runCli(urlAs('sub'), ['logs', String(b)]);
    assert.equal(others.code, 1);
    assert.match(others.stderr, new RegExp(`task ${b} not found`));
    // A schedule's copy keeps its parent's owner (the node inserts it).
    const parent = await insertAs('sub', ['true'], { state: 'DR', group });
    const schedule = await runCli(urlAs('operator'), ['schedule', String(parent), '--every', '1h', '--clone']);
    assert.equal(schedule.code, 0, schedule.stderr);
    const copy = await until(async () => (await db.query<{ id: string; owner: string }>('SELECT id, owner FROM long_task.task WHERE shed_parent_id = $1', [parent])).rows[0], 'the copy');
    assert.equal(copy.owner, names.sub);
    await waitEnded(db, [Number(copy.id)]);
    assert.deepEqual((await visible('sub', [Number(copy.id)])).task_run, [Number(copy.id)]);
    await node.shutdown('drain', 'test');
  });

  it("the seed's pattern: a task's process connected as its owner marks its own row CS", async () => {
    const group = 46;
    // The process marks its row CS (checking that one row changed), then exits 3: had the
    // node ended the row, it would be CF. node -e resolves pg from the cwd, the repository.
    const script = `const c = new (require('pg').Client)(process.argv[1]);
      c.connect()
        .then(() => c.query("UPDATE long_task.task SET state_id = 'CS' WHERE id = $1 AND state_id = 'AE'", [process.env.PG_TASKS_TASK_ID]))
        .then((r) => { if (r.rowCount !== 1) { console.error('rows: ' + r.rowCount); process.exit(1); } return c.end(); })
        .then(() => process.exit(3), (e) => { console.error(e.message); process.exit(1); });`;
    const { rows } = await as('sub').query<{ id: string }>(
      "INSERT INTO long_task.task (command, state_id, group_id, cwd) VALUES ($1, 'AW', $2, $3) RETURNING id",
      [[process.execPath, '-e', script, urlAs('sub')], group, ROOT],
    );
    const id = Number(rows[0]!.id);
    const node = await startNode({ ...db, url: urlAs('node') }, { workerId: 46, groupId: group });
    await until(async () => (await db.query('SELECT 1 FROM long_task.task_run WHERE task_id = $1', [id])).rows[0], 'the run to end');
    const task = await db.query('SELECT state_id, exit_code, error FROM long_task.task WHERE id = $1', [id]);
    assert.deepEqual(task.rows[0], { state_id: 'CS', exit_code: 3, error: null });
    await node.shutdown('drain', 'test');
  });

  it('the dashboard shows the owner; as a submitter it lists only its own', async () => {
    const group = 47;
    const a = await insertAs('sub', ['echo', 'dash-a'], { state: 'DR', group });
    const b = await insertAs('sub2', ['echo', 'dash-b'], { state: 'DR', group });
    for (const user of ['reader', 'sub'] as const) {
      const token = randomBytes(8).toString('hex');
      const dashboard = await startDashboard({ connectionString: urlAs(user), schema: 'long_task', host: '127.0.0.1', port: 0, token, logger: testLogger });
      try {
        const get = (path: string): Promise<Response> => fetch(`http://127.0.0.1:${dashboard.port}${path}`, { headers: { authorization: `Bearer ${token}` } });
        const list = await (await get(`/tasks?group=${group}`)).text();
        assert.match(list, new RegExp(`<td><a href="/tasks/${a}">${a}</a></td>[\\s\\S]*?<td>${names.sub}</td>`));
        if (user === 'reader') assert.match(list, new RegExp(`<td>${names.sub2}</td>`));
        else assert.doesNotMatch(list, new RegExp(`dash-b|/tasks/${b}"`));
        const page = await (await get(`/tasks/${a}`)).text();
        assert.match(page, new RegExp(`<dt>owner</dt><dd data-field="owner">${names.sub}</dd>`));
        if (user === 'sub') assert.equal((await get(`/tasks/${b}`)).status, 404);
      } finally {
        await dashboard.close();
      }
    }
  });
});

describe('upgrading to owners', () => {
  it('rows written before have no owner: operators and readers see them, submitters do not', async () => {
    const old = await createTestDatabase('owner_upgrade', { migrate: false });
    const client = new pg.Client({ connectionString: old.url });
    await client.connect();
    try {
      await migrate(client, 'long_task', { target: 20 });
      await client.query("INSERT INTO long_task.task (command, state_id) VALUES ('{true}', 'DR')");
      await migrate(client, 'long_task');
      const { rows } = await client.query<{ owner: string | null }>('SELECT owner FROM long_task.task');
      assert.deepEqual(rows, [{ owner: null }]);
      const added = await client.query<{ owner: string; me: string }>("INSERT INTO long_task.task (command, state_id) VALUES ('{true}', 'DR') RETURNING owner, current_user AS me");
      assert.equal(added.rows[0]!.owner, added.rows[0]!.me);
    } finally {
      await client.end();
      await old.close();
    }
  });

  it('migrate takes back the membership of submitter in reader that older versions granted', async () => {
    await db.query(`GRANT "${PREFIX}reader" TO "${PREFIX}submitter"`);
    const again = await runCli(db.url, ['migrate', '--role-prefix', PREFIX]);
    assert.equal(again.code, 0, again.stderr);
    const { rows } = await db.query<{ member: boolean }>('SELECT pg_has_role($1, $2, \'MEMBER\') AS member', [`${PREFIX}submitter`, `${PREFIX}reader`]);
    assert.equal(rows[0]!.member, false);
    assert.deepEqual((await visible('sub', [])).task, []);
  });
});
