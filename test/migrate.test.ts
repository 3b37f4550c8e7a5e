// The migrator against empty databases: up from nothing, idempotence, racing migrators,
// refusing a schema newer than the package, custom schema names, and a user's own
// recovery policy surviving migrations and being the one a node calls.
import assert from 'node:assert/strict';
import { after, afterEach, describe, it } from 'node:test';
import pg from 'pg';
import { loadFunctionSources } from '../src/db/functions.js';
import { SchemaTooNewError, loadMigrations, migrate } from '../src/db/migrate.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { startNode } from './helpers/node.js';
import { until } from './helpers/wait.js';
import type { TaskNode } from '../src/node/node.js';

const databases: TestDatabase[] = [];
const clients: pg.Client[] = [];
const nodes: TaskNode[] = [];

async function emptyDatabase(label: string): Promise<TestDatabase> {
  const db = await createTestDatabase(label, { migrate: false });
  databases.push(db);
  return db;
}

async function connect(db: TestDatabase): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  clients.push(client);
  return client;
}

afterEach(async () => {
  for (const node of nodes.splice(0)) await node.shutdown('cancel');
  for (const client of clients.splice(0)) await client.end();
});
after(async () => {
  for (const db of databases.splice(0)) await db.close();
});

const LATEST = loadMigrations().length;
const ALL_NAMES = loadMigrations().map((m) => m.name);
const ALL_VERSIONS = loadMigrations().map((m) => ({ id: m.id, name: m.name }));
const FUNCTION_NAMES = loadFunctionSources().map((f) => f.name);

async function versions(db: TestDatabase, schema = 'long_task'): Promise<Array<{ id: number; name: string }>> {
  const ident = `"${schema.replace(/"/g, '""')}"`;
  const { rows } = await db.query<{ id: number; name: string }>(`SELECT id, name FROM ${ident}.migrations ORDER BY id`);
  return rows;
}

describe('migrate', () => {
  it('brings an empty database up to the latest version and records it', async () => {
    const db = await emptyDatabase('migrate_up');
    const client = await connect(db);
    const schemaBefore = await db.query("SELECT 1 FROM pg_namespace WHERE nspname = 'long_task'");
    assert.equal(schemaBefore.rowCount, 0);

    const result = await migrate(client, 'long_task');
    assert.deepEqual(result, { from: 0, to: LATEST, applied: loadMigrations().map((m) => m.name), functions: FUNCTION_NAMES });
    assert.deepEqual(await versions(db), ALL_VERSIONS);

    const { rows } = await db.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'long_task' ORDER BY table_name",
    );
    assert.deepEqual(rows.map((r) => r.table_name), ['concurrency_limit', 'concurrency_start', 'function_source', 'maintenance', 'migrations', 'period', 'task', 'task_allowlist', 'task_group', 'task_output', 'task_run', 'task_state', 'worker']);
  });

  it('upgrades step by step: each version applies on top of the one before, keeping the rows', async () => {
    const db = await emptyDatabase('migrate_steps');
    const client = await connect(db);
    for (const step of loadMigrations()) {
      const result = await migrate(client, 'long_task', { target: step.id });
      assert.deepEqual(result, { from: step.id - 1, to: step.id, applied: [step.name], functions: step.id === LATEST ? FUNCTION_NAMES : [] });
      // A row written at every version survives the next ones.
      await db.query("INSERT INTO long_task.task (state_id, command) VALUES ('DR', $1)", [[`v${step.id}`]]);
    }
    const { rows } = await db.query<{ command: string[] }>('SELECT command FROM long_task.task ORDER BY id');
    assert.deepEqual(rows.map((r) => r.command[0]), loadMigrations().map((m) => `v${m.id}`));
    assert.deepEqual(await versions(db), ALL_VERSIONS);
  });

  it('moves the runs live at the upgrade to version 6 onto their task rows, and keeps the ended ones', async () => {
    const db = await emptyDatabase('migrate_live');
    const client = await connect(db);
    await migrate(client, 'long_task', { target: 5 });
    const { rows } = await db.query<{ id: string }>("INSERT INTO long_task.task (state_id, command) VALUES ('AW', '{true}'), ('AW', '{true}') RETURNING id");
    const [live, ended] = rows.map((r) => Number(r.id)) as [number, number];
    // Version 5's claim: attempt 1, and a task_run row that stays unfinished while it runs.
    for (const id of [live, ended]) {
      await db.query("UPDATE long_task.task SET state_id = 'AE', worker_id = 7, lease_epoch = 3, attempt = 1, started = now() WHERE id = $1", [id]);
      await db.query('INSERT INTO long_task.task_run (task_id, attempt, worker_id, lease_epoch) VALUES ($1, 1, 7, 3)', [id]);
    }
    await db.query("UPDATE long_task.task_run SET finished = now(), end_reason = 'completed' WHERE task_id = $1", [ended]);
    await db.query("UPDATE long_task.task SET state_id = 'CS' WHERE id = $1", [ended]);
    await migrate(client, 'long_task');
    const { rows: tasks } = await db.query<{ id: string; live_worker_id: number | null; live_epoch: string | null }>(
      'SELECT id, live_worker_id, live_epoch FROM long_task.task ORDER BY id');
    assert.deepEqual(tasks.map((t) => [Number(t.id), t.live_worker_id, t.live_epoch === null ? null : Number(t.live_epoch)]), [[live, 7, 3], [ended, null, null]]);
    const { rows: runs } = await db.query<{ task_id: string; end_reason: string }>('SELECT task_id, end_reason FROM long_task.task_run');
    assert.deepEqual(runs.map((r) => [Number(r.task_id), r.end_reason]), [[ended, 'completed']], 'the live run gets its row when it ends');
  });

  it('is a no-op when run again', async () => {
    const db = await emptyDatabase('migrate_again');
    const client = await connect(db);
    await migrate(client, 'long_task');
    const applied = await db.query<{ applied_at: Date }>('SELECT applied_at FROM long_task.migrations');

    const again = await migrate(client, 'long_task');
    assert.deepEqual(again, { from: LATEST, to: LATEST, applied: [], functions: [] });
    assert.deepEqual(await versions(db), ALL_VERSIONS);
    const still = await db.query<{ applied_at: Date }>('SELECT applied_at FROM long_task.migrations');
    assert.deepEqual(still.rows, applied.rows);
  });

  it('lets two migrators race: both succeed, the schema is applied once', async () => {
    const db = await emptyDatabase('migrate_race');
    const [a, b] = [await connect(db), await connect(db)];
    const results = await Promise.all([migrate(a, 'long_task'), migrate(b, 'long_task')]);
    const applied = results.map((r) => r.applied).sort((x, y) => y.length - x.length);
    assert.deepEqual(applied, [ALL_NAMES, []]);
    assert.ok(results.every((r) => r.to === LATEST));
    assert.deepEqual(await versions(db), ALL_VERSIONS);
    // The advisory lock is released by both: a third migrator is not kept waiting.
    const c = await connect(db);
    assert.deepEqual((await migrate(c, 'long_task')).applied, []);
    const { rows } = await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    );
    assert.equal(rows[0]!.n, 0);
  });

  it('refuses a schema newer than the package, telling to upgrade', async () => {
    const db = await emptyDatabase('migrate_too_new');
    const client = await connect(db);
    await migrate(client, 'long_task');
    await db.query("INSERT INTO long_task.migrations (id, name) VALUES ($1, '999999_from_the_future')", [LATEST + 1]);

    await assert.rejects(migrate(client, 'long_task'), (error: Error) => {
      assert.ok(error instanceof SchemaTooNewError, String(error));
      assert.match(error.message, /upgrade pg-tasks/);
      assert.match(error.message, new RegExp(`migration ${LATEST + 1}\\b`));
      return true;
    });
    // Nothing was changed, and the lock was released: another connection gets the same answer.
    assert.deepEqual(await versions(db), [...ALL_VERSIONS, { id: LATEST + 1, name: '999999_from_the_future' }]);
    const other = await connect(db);
    await assert.rejects(migrate(other, 'long_task'), SchemaTooNewError);
    // A node that migrates at start refuses to run.
    await assert.rejects(startNode(db, { migrate: true }), SchemaTooNewError);
  });

  it('works end to end in a schema whose name needs quoting', async () => {
    const db = await emptyDatabase('migrate_custom');
    const schema = 'tenant one';
    const client = await connect(db);
    assert.deepEqual((await migrate(client, schema)).applied, ALL_NAMES);
    assert.deepEqual(await versions(db, schema), ALL_VERSIONS);
    assert.deepEqual((await migrate(client, schema)).applied, []);
    // long_task was not touched.
    const other = await db.query("SELECT 1 FROM pg_namespace WHERE nspname = 'long_task'");
    assert.equal(other.rowCount, 0);

    const node = await startNode(db, { schema });
    nodes.push(node);
    assert.equal(node.state, 'active');
    // Inserted after the node is active, so it is woken by the notification on the
    // schema's own channel.
    const { rows } = await db.query<{ id: number }>(
      `INSERT INTO "tenant one".task (state_id, command) VALUES ('AW', '{echo,in tenant one}') RETURNING id`,
    );
    const id = rows[0]!.id;
    const done = await until(async () => {
      const r = await db.query<{ state_id: string; output: string }>('SELECT state_id, output FROM "tenant one".task WHERE id = $1', [id]);
      return r.rows[0]!.state_id.startsWith('C') ? r.rows[0] : null;
    }, 'the task in "tenant one" to end');
    assert.equal(done.state_id, 'CS');
    assert.match(done.output, /in tenant one/);
    const worker = await db.query<{ id: number; node_name: string }>('SELECT id, node_name FROM "tenant one".worker');
    assert.deepEqual(worker.rows, [{ id: 1, node_name: 'test-node' }]);
  });

  it('takes any schema name PostgreSQL accepts, even one with $$, $& and quotes', async () => {
    const db = await emptyDatabase('migrate_dollar');
    const schema = 'we$$ird $& "name"';
    const ident = '"we$$ird $& ""name"""';
    const client = await connect(db);
    assert.deepEqual((await migrate(client, schema)).applied, ALL_NAMES);
    const { rows: spaces } = await db.query<{ nspname: string }>("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'we%'");
    assert.deepEqual(spaces, [{ nspname: schema }]);

    // The default recovery policy works there too: it fails the worker's executing tasks.
    const { rows } = await db.query<{ id: number }>(`INSERT INTO ${ident}.task (state_id, command) VALUES ('AW', '{true}') RETURNING id`);
    const id = rows[0]!.id;
    await db.query(`UPDATE ${ident}.task SET state_id = 'AE', worker_id = 4 WHERE id = $1`, [id]);
    await db.query(`SELECT ${ident}.recover_worker_tasks(4)`);
    const task = await db.query<{ state_id: string; error: string }>(`SELECT state_id, error FROM ${ident}.task WHERE id = $1`, [id]);
    assert.deepEqual(task.rows[0], { state_id: 'CF', error: 'Worker failed' });
  });

  it('lets a role that cannot create in the database start a node with migrate on, once migrated', async () => {
    const db = await emptyDatabase('migrate_role');
    const admin = await connect(db);
    await migrate(admin, 'long_task');
    // Roles are cluster-wide: a unique name, dropped at the end.
    const role = `pgt_app_${db.name.slice(-6)}`;
    await db.query(`CREATE ROLE ${role} LOGIN PASSWORD 'app'`);
    try {
      await db.query(`REVOKE CREATE ON DATABASE ${db.name} FROM PUBLIC`);
      await db.query(`GRANT USAGE ON SCHEMA long_task TO ${role}`);
      await db.query(`GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA long_task TO ${role}`);
      await db.query(`GRANT USAGE ON ALL SEQUENCES IN SCHEMA long_task TO ${role}`);
      const url = new URL(db.url);
      url.username = role;
      url.password = 'app';
      const app = new pg.Client({ connectionString: url.toString() });
      await app.connect();
      clients.push(app);
      await assert.rejects(app.query('CREATE SCHEMA IF NOT EXISTS long_task'), /permission denied/);
      assert.deepEqual(await migrate(app, 'long_task'), { from: LATEST, to: LATEST, applied: [], functions: [] });

      const node = await startNode(db, { migrate: true, connectionString: url.toString() });
      nodes.push(node);
      const { rows } = await db.query<{ id: number }>("INSERT INTO long_task.task (state_id, command) VALUES ('AW', '{true}') RETURNING id");
      await until(async () => {
        const r = await db.query<{ state_id: string }>('SELECT state_id FROM long_task.task WHERE id = $1', [rows[0]!.id]);
        return r.rows[0]!.state_id === 'CS';
      }, 'the task to run under the unprivileged role');
      await node.shutdown('cancel');
      nodes.splice(0);
      await app.end();
      clients.splice(clients.indexOf(app), 1);
    } finally {
      await db.query(`DROP OWNED BY ${role}`);
      await db.query(`DROP ROLE ${role}`);
    }
  });

  it("keeps a user's own recover_worker_tasks, and the node calls it on take-over", async () => {
    const db = await emptyDatabase('migrate_policy');
    const client = await connect(db);
    await migrate(client, 'long_task');
    // A custom policy (since version 15 it names the terms it recovers, which this one
    // ignores): fail with the policy's own message, then re-queue the task for worker 1 only.
    await db.query(`
      CREATE OR REPLACE FUNCTION long_task.recover_worker_tasks(p_worker_id int, p_epoch bigint) RETURNS void
      LANGUAGE plpgsql AS $$
      BEGIN
        UPDATE long_task.task SET state_id = 'CF', error = 'custom'
         WHERE worker_id = p_worker_id AND state_id IN ('AE', 'AC');
        UPDATE long_task.task SET state_id = 'AW', params = jsonb_build_object('recovered_by', 'custom')
         WHERE worker_id = p_worker_id AND state_id = 'CF' AND error = 'custom';
      END;
      $$`);
    const body = async (): Promise<string> =>
      (await db.query<{ src: string }>("SELECT prosrc AS src FROM pg_proc WHERE oid = 'long_task.recover_worker_tasks(int, bigint)'::regprocedure")).rows[0]!.src;
    const custom = await body();
    assert.match(custom, /recovered_by/);

    assert.deepEqual((await migrate(client, 'long_task')).applied, []);
    assert.equal(await body(), custom);

    // A failed worker: active, its lease lapsed an hour ago, one task still executing.
    await db.query("INSERT INTO long_task.worker (id, active, locked_until, node_name) VALUES (1, true, now() - interval '1 hour', 'dead-node')");
    const { rows } = await db.query<{ id: number }>("INSERT INTO long_task.task (state_id, command) VALUES ('AW', '{echo,again}') RETURNING id");
    const id = rows[0]!.id;
    await db.query("UPDATE long_task.task SET state_id = 'AE', worker_id = 1 WHERE id = $1", [id]);

    // The node migrates at start (nothing to do) and takes the failed worker over.
    const node = await startNode(db, { migrate: true });
    nodes.push(node);
    assert.equal(await body(), custom);
    const task = await until(async () => {
      const r = await db.query<{ state_id: string; params: unknown; node_name: string; output: string }>(
        'SELECT state_id, params, node_name, output FROM long_task.task WHERE id = $1',
        [id],
      );
      return r.rows[0]!.state_id === 'CS' ? r.rows[0] : null;
    }, 'the recovered task to run again');
    // Re-queued by the custom policy (the default one would have left it CF 'Worker failed'),
    // then run by the new node.
    assert.deepEqual(task.params, { recovered_by: 'custom' });
    assert.equal(task.node_name, 'test-node');
    assert.match(task.output, /again/);
    const worker = await db.query<{ active: boolean; node_name: string; lease_epoch: number }>(
      'SELECT active, node_name, lease_epoch FROM long_task.worker WHERE id = 1',
    );
    assert.deepEqual(worker.rows[0], { active: true, node_name: 'test-node', lease_epoch: 1 });
  });

  it('lets a custom policy that only fails the tasks be the one applied', async () => {
    const db = await emptyDatabase('migrate_policy_fail');
    const client = await connect(db);
    await migrate(client, 'long_task');
    await db.query(`
      CREATE OR REPLACE FUNCTION long_task.recover_worker_tasks(p_worker_id int, p_epoch bigint) RETURNS void
      LANGUAGE sql AS $$
        UPDATE long_task.task SET state_id = 'CF', error = 'custom', finished = now()
         WHERE worker_id = p_worker_id AND state_id IN ('AE', 'AC');
      $$`);
    await db.query("INSERT INTO long_task.worker (id, active, locked_until) VALUES (1, true, now() - interval '1 hour')");
    const ids: number[] = [];
    for (const state of ['AE', 'AC']) {
      const { rows } = await db.query<{ id: number }>("INSERT INTO long_task.task (state_id, command) VALUES ('AW', '{true}') RETURNING id");
      const id = rows[0]!.id;
      await db.query("UPDATE long_task.task SET state_id = 'AE', worker_id = 1 WHERE id = $1", [id]);
      if (state === 'AC') await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1", [id]);
      ids.push(id);
    }

    const node = await startNode(db, { migrate: true });
    nodes.push(node);
    const { rows } = await db.query<{ state_id: string; error: string }>(
      'SELECT state_id, error FROM long_task.task WHERE id = ANY($1) ORDER BY id',
      [ids],
    );
    // The policy runs in the take-over's transaction, so it is done once the node is active.
    assert.equal(node.state, 'active');
    assert.deepEqual(rows, [
      { state_id: 'CF', error: 'custom' },
      { state_id: 'CF', error: 'custom' },
    ]);
  });

  it("gives a schedule's waiting copies their parent's run settings at version 32, and a copy whose process may still live keeps its key", async () => {
    const db = await emptyDatabase('migrate_clone_settings');
    const client = await connect(db);
    await migrate(client, 'long_task', { target: 31 });
    const parent = (await client.query<{ id: string }>(
      `INSERT INTO long_task.task (command, state_id, run_as, memory_max, heartbeat_timeout, concurrency_key)
       VALUES ('{true}', 'DR', 'nobody', 300000000, interval '45 s', 'nightly') RETURNING id`)).rows[0]!.id;
    const copy = async (): Promise<string> => (await client.query<{ id: string }>(
      "INSERT INTO long_task.task (command, state_id, shed_parent_id) VALUES ('{true}', 'AW', $1) RETURNING id", [parent])).rows[0]!.id;
    const waiting = await copy();
    const requeued = await copy();
    // Re-queued while its earlier process lives: the row still names that run (written as a
    // claim leaves it; the triggers that keep users off the live mark are skipped for it).
    await client.query("SET session_replication_role = 'replica'");
    await client.query('UPDATE long_task.task SET live_worker_id = 1, live_epoch = 1 WHERE id = $1', [requeued]);
    await client.query("SET session_replication_role = 'origin'");
    await migrate(client, 'long_task');
    const { rows } = await client.query<{ id: string; run_as: string | null; memory_max: string | null; heartbeat_timeout: string | null; concurrency_key: string | null }>(
      'SELECT id, run_as, memory_max::text, heartbeat_timeout::text, concurrency_key FROM long_task.task WHERE shed_parent_id = $1 ORDER BY id', [parent]);
    assert.deepEqual(rows, [
      { id: waiting, run_as: 'nobody', memory_max: '300000000', heartbeat_timeout: '00:00:45', concurrency_key: 'nightly' },
      { id: requeued, run_as: 'nobody', memory_max: '300000000', heartbeat_timeout: '00:00:45', concurrency_key: null },
    ]);
  });
});
