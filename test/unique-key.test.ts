// task.unique_key (docs/unique.md; issue 30, item 1): at most one unended task (DR, AW, AE,
// AC, a retry's wait in AW included) per key, enforced by the partial unique index
// task_unique_key; plain SQL's ON CONFLICT, the client's onDuplicate and the CLI's
// --on-duplicate over it; a clone schedule's key template; a submitter's refusal under
// row-level security. Tasks that must stay waiting go to group 9, which no node serves.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { TaskClient, UniqueKeyHeldError } from '../src/client/client.js';
import { runCli } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { addTask, getTask, startNode, stopAllNodes, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';

const PREFIX = `pgt_${randomBytes(3).toString('hex')}_`;
const PASSWORD = `pw_${randomBytes(8).toString('hex')}`;
const SUBMITTERS = ['sub', 'sub2'] as const;

let db: TestDatabase;
let client: TaskClient;
const clients: TaskClient[] = [];
const pools: pg.Pool[] = [];

// One hook makes everything (Node 20 does not wait for one top-level before() before the
// next), and one undoes it: the roles are cluster-wide.
before(async () => {
  db = await createTestDatabase('unique_key');
  const migrated = await runCli(db.url, ['migrate', '--role-prefix', PREFIX]);
  assert.equal(migrated.code, 0, migrated.stderr);
  for (const user of SUBMITTERS) {
    await db.query(`CREATE ROLE "${PREFIX}u_${user}" LOGIN PASSWORD '${PASSWORD}'`);
    await db.query(`GRANT "${PREFIX}submitter" TO "${PREFIX}u_${user}"`);
  }
  client = new TaskClient({ connectionString: db.url });
  clients.push(client);
  await startNode(db, { workerId: 1, maxTasks: 4 });
});

after(async () => {
  await stopAllNodes();
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(pools.map((p) => p.end()));
  const users = SUBMITTERS.map((u) => `"${PREFIX}u_${u}"`).join(', ');
  const roles = ['reader', 'submitter', 'operator', 'admin', 'node'].map((k) => `"${PREFIX}${k}"`).join(', ');
  await db.query(`DROP OWNED BY ${users}, ${roles}`);
  await db.query(`DROP ROLE IF EXISTS ${users}`);
  await db.query(`DROP ROLE IF EXISTS ${roles}`);
  await db.close();
});

function urlAs(user: (typeof SUBMITTERS)[number]): string {
  const u = new URL(db.url);
  u.username = `${PREFIX}u_${user}`;
  u.password = PASSWORD;
  return u.toString();
}

/** The verbatim ON CONFLICT clause of docs/unique.md. */
const ON_KEY = "ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state_id IN ('DR', 'AW', 'AE', 'AC')";

async function insertKeyed(key: string | null, extra = ''): Promise<number[]> {
  const { rows } = await db.query<{ id: number }>(
    `INSERT INTO long_task.task (command, state_id, group_id, unique_key) VALUES ('{true}', 'AW', 9, $1) ${extra} RETURNING id`,
    [key],
  );
  return rows.map((r) => Number(r.id));
}

function sqlError(promise: Promise<unknown>): Promise<{ code?: string; constraint?: string; message: string; detail?: string }> {
  return promise.then(
    () => assert.fail('the statement succeeded'),
    (error: unknown) => error as never,
  );
}

describe('unique_key in plain SQL', () => {
  it("a duplicate is refused by task_unique_key, naming the key; ON CONFLICT ... DO NOTHING inserts nothing", async () => {
    const [holder] = await insertKeyed('sql-a');
    const error = await sqlError(insertKeyed('sql-a'));
    assert.equal(error.code, '23505');
    assert.equal(error.constraint, 'task_unique_key');
    assert.equal(error.detail, 'Key (unique_key)=(sql-a) already exists.');
    assert.deepEqual(await insertKeyed('sql-a', `${ON_KEY} DO NOTHING`), []);
    // The clause must name the whole predicate: without "unique_key IS NOT NULL" no index matches.
    const short = await sqlError(insertKeyed('sql-a', "ON CONFLICT (unique_key) WHERE state_id IN ('DR', 'AW', 'AE', 'AC') DO NOTHING"));
    assert.equal(short.code, '42P10');
    // The docs' DO UPDATE: the waiting holder takes the new params and priority.
    const { rows } = await db.query<{ id: number; params: unknown; priority: number }>(
      `INSERT INTO long_task.task (command, group_id, unique_key, params, priority) VALUES ('{true}', 9, 'sql-a', '{"n": 2}', 5)
       ${ON_KEY}
       DO UPDATE SET params = EXCLUDED.params, priority = EXCLUDED.priority, run_after = EXCLUDED.run_after
       WHERE task.state_id IN ('DR', 'AW')
       RETURNING id, params, priority`,
    );
    assert.deepEqual(rows.map((r) => [Number(r.id), r.params, r.priority]), [[holder, { n: 2 }, 5]]);
    assert.equal(Number((await db.query("SELECT count(*) AS n FROM long_task.task WHERE unique_key = 'sql-a'")).rows[0]!.n), 1);
  });

  it('null keys change nothing: any number of tasks, as the seed inserts them', async () => {
    const ids = [...(await insertKeyed(null)), ...(await insertKeyed(null)), ...(await insertKeyed(null, `${ON_KEY} DO NOTHING`))];
    assert.equal(ids.length, 3);
    const seed = await db.query<{ id: number }>("INSERT INTO long_task.task (command, group_id) VALUES ('{true}', 9), ('{true}', 9) RETURNING id");
    assert.equal(seed.rowCount, 2);
  });

  it('the key is free once its holder ends, and a re-queue of an ended task is refused while another holds it', async () => {
    const [first] = await insertKeyed('sql-b');
    await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1", [first]); // AW -> CC at once
    assert.equal((await getTask(db, first!)).state_id, 'CC');
    const [second] = await insertKeyed('sql-b');
    assert.ok(second);
    const error = await sqlError(db.query("UPDATE long_task.task SET state_id = 'AW' WHERE id = $1", [first]));
    assert.equal(error.constraint, 'task_unique_key');
    await assert.rejects(client.queue(first!), (e: unknown) => e instanceof UniqueKeyHeldError && e.message === `unique key "sql-b" is held by task ${second}`);
  });

  it('two concurrent inserts of one key: the second waits for the first, then one wins', async () => {
    const a = new pg.Client({ connectionString: db.url });
    const b = new pg.Client({ connectionString: db.url });
    await a.connect();
    await b.connect();
    try {
      for (const [key, tail] of [['race-plain', ''], ['race-skip', `${ON_KEY} DO NOTHING`]] as const) {
        await a.query('BEGIN');
        await b.query('BEGIN');
        const insert = `INSERT INTO long_task.task (command, group_id, unique_key) VALUES ('{true}', 9, $1) ${tail} RETURNING id`;
        const first = await a.query<{ id: number }>(insert, [key]);
        const secondPid = (await b.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
        const second = b.query(insert, [key]).then((r) => r, (e: unknown) => e as Error);
        // The proof that the two overlapped: b waits on a's uncommitted index entry.
        await until(async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", [secondPid])).rowCount === 1, 'the second insert to wait');
        await a.query('COMMIT');
        const outcome = await second;
        await b.query('ROLLBACK');
        if (tail === '') assert.equal((outcome as { code?: string }).code, '23505');
        else assert.equal((outcome as pg.QueryResult).rowCount, 0);
        const { rows } = await db.query<{ id: number }>('SELECT id FROM long_task.task WHERE unique_key = $1', [key]);
        assert.deepEqual(rows.map((r) => Number(r.id)), [Number(first.rows[0]!.id)]);
      }
    } finally {
      await a.end();
      await b.end();
    }
  });
});

describe('unique_key from the client and the CLI', () => {
  it("onDuplicate: error names the holder, skip returns it, replace updates it while it waits", async () => {
    const holder = await client.add({ command: ['true'], groupId: 9, uniqueKey: 'cl-a', params: { v: 1 } });
    assert.equal(holder.unique_key, 'cl-a');
    await assert.rejects(client.add({ command: ['true'], groupId: 9, uniqueKey: 'cl-a' }),
      (e: unknown) => e instanceof UniqueKeyHeldError && e.holderId === holder.id && e.message === `unique key "cl-a" is held by task ${holder.id}`);
    const skipped = await client.add({ command: ['false'], groupId: 9, uniqueKey: 'cl-a', onDuplicate: 'skip', params: { v: 2 } });
    assert.equal(skipped.id, holder.id);
    assert.deepEqual(skipped.params, { v: 1 });
    const runAfter = new Date(Date.now() + 3_600_000);
    const replaced = await client.add({ command: ['false'], groupId: 9, uniqueKey: 'cl-a', onDuplicate: 'replace', params: { v: 3 }, priority: 7, runAfter });
    assert.equal(replaced.id, holder.id);
    assert.deepEqual([replaced.params, replaced.priority, replaced.run_after?.getTime(), replaced.command], [{ v: 3 }, 7, runAfter.getTime(), ['true']]);
    // Many concurrent skips of a new key: one task.
    const many = await Promise.all(Array.from({ length: 6 }, () => client.add({ command: ['true'], groupId: 9, uniqueKey: 'cl-many', onDuplicate: 'skip' })));
    assert.equal(new Set(many.map((t) => t.id)).size, 1);
  });

  it('replace refuses an executing holder, naming it; a retry waiting in AW still holds the key, and replace resets its wait', async () => {
    const running = await client.add({ command: ['sleep', '60'], uniqueKey: 'cl-run' });
    await until(async () => (await client.get(running.id)).state_id === 'AE', 'the holder to run');
    await assert.rejects(client.add({ command: ['true'], uniqueKey: 'cl-run', onDuplicate: 'replace' }),
      (e: unknown) => e instanceof UniqueKeyHeldError && e.message === `unique key "cl-run" is held by task ${running.id}, which is executing (AE): replace changes only a waiting task`);
    assert.equal((await client.add({ command: ['true'], uniqueKey: 'cl-run', onDuplicate: 'skip' })).id, running.id);
    await client.cancel(running.id);
    await waitEnded(db, [running.id]);
    const fresh = await client.add({ command: ['true'], uniqueKey: 'cl-run' });
    await waitEnded(db, [fresh.id]);

    const retrying = await addTask(db, ['false'], { maxAttempts: 2, backoffBase: '1 hour' });
    await db.query("UPDATE long_task.task SET unique_key = 'cl-retry' WHERE id = $1", [retrying]);
    await until(async () => { const t = await client.get(retrying); return t.attempt === 1 && t.state_id === 'AW' && t.run_after !== null; }, 'the first run to fail and wait for its retry');
    await assert.rejects(client.add({ command: ['true'], uniqueKey: 'cl-retry' }), (e: unknown) => e instanceof UniqueKeyHeldError && e.holderId === retrying);
    // replace with no runAfter: the retry runs now (and fails for good).
    assert.equal((await client.add({ command: ['true'], uniqueKey: 'cl-retry', onDuplicate: 'replace' })).id, retrying);
    await waitEnded(db, [retrying]);
    assert.deepEqual([(await client.get(retrying)).state_id, (await client.get(retrying)).attempt], ['CF', 2]);
  });

  it('the CLI: add --unique-key refuses a duplicate in one line; --on-duplicate skip prints the holder', async () => {
    const first = await runCli(db.url, ['add', '--group', '9', '--unique-key', 'cli-a', '--', 'true']);
    assert.equal(first.code, 0, first.stderr);
    const id = first.stdout.trim();
    const again = await runCli(db.url, ['add', '--group', '9', '--unique-key', 'cli-a', '--', 'true']);
    assert.equal(again.code, 1);
    assert.equal(again.stderr, `pg-tasks: unique key "cli-a" is held by task ${id}\n`);
    const skip = await runCli(db.url, ['add', '--group', '9', '--unique-key', 'cli-a', '--on-duplicate', 'skip', '--', 'true']);
    assert.deepEqual([skip.code, skip.stdout.trim()], [0, id]);
    const bad = await runCli(db.url, ['add', '--unique-key', 'cli-a', '--on-duplicate', 'merge', '--', 'true']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^pg-tasks: .*merge.*\n$/);
  });

  it("a submitter hitting another owner's key learns the holder's id and nothing else", async () => {
    const sub = new TaskClient({ connectionString: urlAs('sub') });
    const sub2 = new TaskClient({ connectionString: urlAs('sub2') });
    clients.push(sub, sub2);
    const theirs = await sub2.add({ command: ['true'], groupId: 9, uniqueKey: 'rls-a', params: { secret: 1 } });
    for (const onDuplicate of ['error', 'skip', 'replace'] as const) {
      await assert.rejects(sub.add({ command: ['true'], groupId: 9, uniqueKey: 'rls-a', onDuplicate, params: { mine: 1 } }),
        (e: unknown) => e instanceof UniqueKeyHeldError && e.message === `unique key "rls-a" is held by task ${theirs.id}`, onDuplicate);
    }
    assert.deepEqual((await sub2.get(theirs.id)).params, { secret: 1 });
    // Plain SQL as the submitter: the index's error, without the key's detail (row-level security).
    const pool = new pg.Pool({ connectionString: urlAs('sub'), max: 1 });
    pools.push(pool);
    const error = await sqlError(pool.query("INSERT INTO long_task.task (command, group_id, unique_key) VALUES ('{true}', 9, 'rls-a')"));
    assert.equal(error.constraint, 'task_unique_key');
    assert.equal(error.detail, undefined);
    assert.equal((await pool.query(`INSERT INTO long_task.task (command, group_id, unique_key) VALUES ('{true}', 9, 'rls-a') ${ON_KEY} DO NOTHING`)).rowCount, 0);
  });
});

describe('a clone schedule with a key template', () => {
  it('each copy takes the template for its slot; a copy whose key is held is not made', async () => {
    const slotted = await client.add({ command: ['true'], draft: true });
    await client.schedule(slotted.id, { every: { periodId: 'SEC', count: 1 }, clone: true, uniqueKey: 'tick-{{slot}}' });
    const fixed = await client.add({ command: ['sleep', '60'], draft: true });
    await client.schedule(fixed.id, { every: { periodId: 'SEC', count: 1 }, clone: true, uniqueKey: 'fixed' });
    const copies = async (parent: number): Promise<Array<{ id: number; unique_key: string }>> =>
      (await db.query('SELECT id, unique_key FROM long_task.task WHERE shed_parent_id = $1 ORDER BY id', [parent])).rows as never;
    await until(async () => (await copies(slotted.id)).length >= 3, 'three copies of the slotted schedule');
    const keys = (await copies(slotted.id)).map((c) => c.unique_key);
    for (const key of keys) assert.match(key, /^tick-\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(new Set(keys).size, keys.length);
    // The fixed key's first copy runs for a minute: the slots after it make none. Proven by
    // the schedule's anchor moving three slots past the first copy.
    const [first] = await until(async () => { const c = await copies(fixed.id); return c.length > 0 ? c : null; }, 'the first fixed copy');
    const firstSlot = (await getTask(db, fixed.id)).next_start as Date;
    await until(async () => ((await getTask(db, fixed.id)).next_start as Date).getTime() >= firstSlot.getTime() + 3_000, 'three more slots to fire');
    assert.deepEqual((await copies(fixed.id)).map((c) => [Number(c.id), c.unique_key]), [[Number(first!.id), 'fixed']]);
    await client.unschedule(slotted.id);
    await client.unschedule(fixed.id);
    await client.cancel(first!.id);
    await waitEnded(db, [first!.id]);
  });

  it("a re-queuing schedule skips its slots while another task holds its key, then runs again", async () => {
    const task = await client.add({ command: ['true'], uniqueKey: 'nc-key' });
    await waitEnded(db, [task.id]);
    const other = await addTask(db, ['true'], { group: 9 }); // group 9: no node, it waits
    await db.query("UPDATE long_task.task SET unique_key = 'nc-key' WHERE id = $1", [other]);
    await client.schedule(task.id, { every: { periodId: 'SEC', count: 1 } });
    await until(async () => (await client.get(task.id)).shed_skip_count >= 2, 'two slots skipped');
    assert.deepEqual([(await client.get(task.id)).state_id, (await client.get(task.id)).attempt], ['CS', 1]);
    await client.cancel(other);
    await until(async () => (await client.get(task.id)).attempt >= 2, 'the schedule to run the task again');
    await client.unschedule(task.id);
  });
});
