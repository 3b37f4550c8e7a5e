// The group roles (docs/security.md, "Roles"): each test connects as a LOGIN user granted one
// role and checks what it may do and what it is refused. Roles are cluster-wide, so this file
// uses a prefix of its own (random) and drops its roles and users at the end; the password
// serves the embedded server (scram-sha-256), the local one ignores it (trust).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { startDashboard } from '../src/http/dashboard/index.js';
import { runCli } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { startNode, stopAllNodes, testLogger, waitEnded } from './helpers/node.js';

const PREFIX = `pgt_${randomBytes(3).toString('hex')}_`;
const OTHER_PREFIX = `pgt_${randomBytes(3).toString('hex')}_`;
const AS_PREFIX = { PGTASKS_ROLE_PREFIX: PREFIX };
const PASSWORD = `pw_${randomBytes(8).toString('hex')}`;
const KINDS = ['reader', 'submitter', 'operator', 'admin', 'node'] as const;
type Kind = (typeof KINDS)[number];

let db: TestDatabase;
let raceDb: TestDatabase;
let raceDb2: TestDatabase;
const users = {} as Record<Kind, string>;
const pools: pg.Pool[] = [];

function urlAs(user: string, base = db.url): string {
  const u = new URL(base);
  u.username = user;
  u.password = PASSWORD;
  return u.toString();
}

function poolAs(kind: Kind): pg.Pool {
  const pool = new pg.Pool({ connectionString: urlAs(users[kind]), max: 2 });
  pool.on('error', () => undefined);
  pools.push(pool);
  return pool;
}

async function refused(pool: pg.Pool, sql: string, params: unknown[] = []): Promise<void> {
  await assert.rejects(pool.query(sql, params), (error: Error & { code?: string }) => {
    assert.equal(error.code, '42501', `${sql}: ${error.message}`);
    return true;
  });
}

async function rolesOf(prefix: string): Promise<string[]> {
  const { rows } = await db.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE rolname LIKE $1 ORDER BY rolname', [`${prefix}%`]);
  return rows.map((r) => r.rolname);
}

/** Drops the roles of `prefix` after their privileges in the databases that hold them. */
async function dropRoles(prefix: string, databases: TestDatabase[]): Promise<void> {
  const names = (await rolesOf(prefix)).map((n) => `"${n}"`).join(', ');
  if (!names) return;
  for (const d of databases) await d.query(`DROP OWNED BY ${names}`);
  await db.query(`DROP ROLE IF EXISTS ${names}`);
}

before(async () => {
  db = await createTestDatabase('roles');
  raceDb = await createTestDatabase('roles_race', { migrate: false });
  raceDb2 = await createTestDatabase('roles_race2', { migrate: false });
  const migrated = await runCli(db.url, ['migrate', '--role-prefix', PREFIX]);
  assert.equal(migrated.code, 0, migrated.stderr);
  for (const kind of KINDS) {
    users[kind] = `${PREFIX}u_${kind}`;
    await db.query(`CREATE ROLE "${users[kind]}" LOGIN PASSWORD '${PASSWORD}'`);
    await db.query(`GRANT "${PREFIX}${kind}" TO "${users[kind]}"`);
  }
});

after(async () => {
  await stopAllNodes();
  await Promise.all(pools.map((p) => p.end()));
  await db.query(`DROP ROLE IF EXISTS ${KINDS.map((k) => `"${users[k]}"`).join(', ')}`);
  await dropRoles(PREFIX, [db]);
  await dropRoles(OTHER_PREFIX, [raceDb, raceDb2]);
  await raceDb.close();
  await raceDb2.close();
  await db.close();
});

describe('pg-tasks migrate and the roles', () => {
  it('creates the five roles, each a member of the one it extends', async () => {
    assert.deepEqual(await rolesOf(`${PREFIX}`).then((r) => r.filter((n) => !n.includes('_u_'))), KINDS.map((k) => `${PREFIX}${k}`).sort());
    const { rows } = await db.query<{ member: string; role: string }>(
      `SELECT u.rolname AS member, r.rolname AS role FROM pg_auth_members m
         JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
        WHERE u.rolname = ANY($1) ORDER BY 1`,
      [KINDS.map((k) => `${PREFIX}${k}`)],
    );
    assert.deepEqual(
      rows.map((r) => `${r.member.slice(PREFIX.length)}<${r.role.slice(PREFIX.length)}`),
      // Not submitter<reader: a reader reads every task, a submitter only its own (owner.test.ts).
      ['admin<operator', 'node<reader', 'operator<submitter'],
    );
  });

  it('is idempotent: a second run creates nothing and grants again', async () => {
    // A privilege lost meanwhile (or a table a new version added) is granted by the next run.
    await db.query(`REVOKE SELECT ON long_task.task_run FROM "${PREFIX}reader"`);
    const again = await runCli(db.url, ['migrate', '--role-prefix', PREFIX]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /up to date/);
    assert.doesNotMatch(again.stdout, /created roles/);
    assert.equal(again.stderr, '');
    const json = JSON.parse((await runCli(db.url, ['migrate', '--role-prefix', PREFIX, '--json'])).stdout) as { roles: { created: string[]; granted: boolean } };
    assert.deepEqual(json.roles, { created: [], granted: true, warnings: [] });
    const { rows } = await db.query<{ ok: boolean }>("SELECT has_table_privilege($1, 'long_task.task_run', 'SELECT') AS ok", [`${PREFIX}reader`]);
    assert.equal(rows[0]!.ok, true);
  });

  it('three migrators at once, in two databases, with one new prefix: all succeed', async () => {
    const runs = await Promise.all([
      runCli(raceDb.url, ['migrate', '--role-prefix', OTHER_PREFIX]),
      runCli(raceDb.url, ['migrate', '--role-prefix', OTHER_PREFIX]),
      runCli(raceDb2.url, ['migrate', '--role-prefix', OTHER_PREFIX]),
    ]);
    for (const r of runs) assert.equal(r.code, 0, r.stderr);
    assert.equal(runs.slice(0, 2).filter((r) => /migrated from version 0/.test(r.stdout)).length, 1, 'one migrator of raceDb applied the migrations');
    assert.deepEqual(await rolesOf(OTHER_PREFIX), KINDS.map((k) => `${OTHER_PREFIX}${k}`).sort());
    // Each role was created once, whoever created it.
    const created = runs.flatMap((r) => /created roles: (.*)/.exec(r.stdout)?.[1]?.split(', ') ?? []);
    assert.equal(created.length, new Set(created).size);
    const { rows } = await raceDb.query<{ ok: boolean }>(
      "SELECT has_table_privilege($1, 'long_task.task_run', 'INSERT') AND NOT has_table_privilege($2, 'long_task.worker', 'UPDATE') AS ok",
      [`${OTHER_PREFIX}node`, `${OTHER_PREFIX}reader`],
    );
    assert.equal(rows[0]!.ok, true);
  });

  it('refuses a prefix PostgreSQL would refuse, before connecting', async () => {
    const reserved = await runCli(db.url, ['migrate', '--role-prefix', 'pg_tasks_']);
    assert.equal(reserved.code, 1);
    assert.match(reserved.stderr, /reserves role names that start with "pg_"/);
    assert.equal(reserved.stderr.trim().split('\n').length, 1);
    const bad = await runCli(db.url, ['migrate'], { PGTASKS_ROLE_PREFIX: 'Bad-Prefix' });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /invalid role prefix "Bad-Prefix"/);
  });

  it('run by the owner without CREATEROLE: the schema migrates, one warning line, exit 0', async () => {
    const owner = `${PREFIX}u_owner`;
    const prefix = `pgt_${randomBytes(3).toString('hex')}_`;
    await db.query(`CREATE ROLE "${owner}" LOGIN PASSWORD '${PASSWORD}'`);
    try {
      await db.query(`GRANT CREATE ON DATABASE "${db.name}" TO "${owner}"`);
      const r = await runCli(urlAs(owner), ['--schema', 'owned', 'migrate', '--role-prefix', prefix]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /schema "owned" migrated from version 0/);
      assert.match(r.stderr, new RegExp(`^warning: roles not set up: ${prefix}reader, .* do not exist and ${owner} may not create roles \\(CREATEROLE\\)`));
      assert.equal(r.stderr.trim().split('\n').length, 1);
      assert.deepEqual(await rolesOf(prefix), []);
    } finally {
      await db.query('DROP SCHEMA IF EXISTS owned CASCADE');
      await db.query(`REVOKE CREATE ON DATABASE "${db.name}" FROM "${owner}"`);
      await db.query(`DROP ROLE "${owner}"`);
    }
  });

  it('run by a user who does not own the tables: a one-line warning, no change, exit 0', async () => {
    const r = await runCli(urlAs(users.node), ['migrate', '--role-prefix', PREFIX]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^warning: roles not set up: .* does not own the tables/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  });
});

describe('each role, as a login user granted it', () => {
  it('reader reads every table and writes none', async () => {
    const reader = poolAs('reader');
    for (const table of ['task', 'task_run', 'task_output', 'worker', 'task_group', 'concurrency_limit', 'task_allowlist']) {
      await reader.query(`SELECT * FROM long_task.${table} LIMIT 1`);
    }
    await refused(reader, "INSERT INTO long_task.task (command, state_id) VALUES ('{true}', 'AW')");
    await refused(reader, 'UPDATE long_task.worker SET stop = 1');
    const add = await runCli(urlAs(users.reader), ['add', 'true'], AS_PREFIX);
    assert.equal(add.code, 1);
    assert.match(add.stderr, new RegExp(`permission denied for table task: .*${PREFIX}submitter`));
    assert.equal(add.stderr.trim().split('\n').length, 1);
  });

  it('a node running as the node role claims and runs a task to CS (its migrate a no-op)', async () => {
    const submitter = poolAs('submitter');
    const { rows } = await submitter.query<{ id: string }>(
      "INSERT INTO long_task.task (command, state_id) VALUES ('{sh,-c,echo hello}', 'AW') RETURNING id",
    );
    const id = Number(rows[0]!.id);
    // A task of a key with a rate (migration 27): the node records its start and prunes an old one.
    await db.query("INSERT INTO long_task.concurrency_limit (key, max_running, max_starts, period) VALUES ('rated', 1, 5, '1 hour')");
    await db.query("INSERT INTO long_task.concurrency_start (key, started) VALUES ('rated', now() - interval '2 hours')");
    const rated = await submitter.query<{ id: string }>("INSERT INTO long_task.task (command, state_id, concurrency_key) VALUES ('{true}', 'AW', 'rated') RETURNING id");
    const node = await startNode({ ...db, url: urlAs(users.node) }, { migrate: true, workerId: 7 });
    await waitEnded(db, [id, Number(rated.rows[0]!.id)]);
    const starts = await db.query("SELECT started > now() - interval '1 hour' AS recent FROM long_task.concurrency_start WHERE key = 'rated'");
    assert.deepEqual(starts.rows, [{ recent: true }]);
    const task = await db.query('SELECT state_id, exit_code FROM long_task.task WHERE id = $1', [id]);
    assert.equal(task.rows[0]!.state_id, 'CS');
    const run = await db.query('SELECT end_reason FROM long_task.task_run WHERE task_id = $1', [id]);
    assert.equal(run.rows[0]!.end_reason, 'completed');
    const logs = await runCli(urlAs(users.submitter), ['logs', String(id)]);
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, /hello/);
    await node.shutdown('drain', 'test');
    // What a node may not do.
    const asNode = poolAs('node');
    await refused(asNode, 'UPDATE long_task.task_group SET max_running = 1');
    await refused(asNode, "INSERT INTO long_task.task_allowlist (group_id, program) VALUES (0, '/bin/sh')");
    await refused(asNode, 'DELETE FROM long_task.worker');
    await refused(asNode, 'CREATE TABLE long_task.x (id int)');
  });

  it('submitter adds, shows, lists and cancels with the CLI; dependents are released', async () => {
    const url = urlAs(users.submitter);
    const first = await runCli(url, ['add', '--group', '50', '--json', 'sleep', '60']);
    assert.equal(first.code, 0, first.stderr);
    const a = Number((JSON.parse(first.stdout) as { id: string }).id);
    const second = await runCli(url, ['add', '--group', '50', '--after', String(a), '--json', 'true']);
    assert.equal(second.code, 0, second.stderr);
    const b = Number((JSON.parse(second.stdout) as { id: string }).id);
    for (const args of [['show', String(a)], ['ls'], ['runs', String(a)]]) {
      const r = await runCli(url, args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    }
    const cancel = await runCli(url, ['cancel', String(a)]);
    assert.equal(cancel.code, 0, cancel.stderr);
    // The release of b is written by a trigger on a's cancel, to a column (deps_left, state)
    // the submitter may not write itself.
    const { rows } = await db.query<{ id: string; state_id: string }>('SELECT id, state_id FROM long_task.task WHERE id = ANY($1) ORDER BY id', [[a, b]]);
    assert.deepEqual(rows.map((r) => r.state_id), ['CC', 'CC']);
    const queue = await runCli(url, ['queue', String(a)]);
    assert.equal(queue.code, 0, queue.stderr);
    assert.equal((await runCli(url, ['cancel', String(a)])).code, 0);
  });

  it('submitter is refused workers, allowlists, groups, limits, node columns and DDL', async () => {
    const submitter = poolAs('submitter');
    await db.query('INSERT INTO long_task.worker (id) VALUES (99) ON CONFLICT DO NOTHING');
    await refused(submitter, 'UPDATE long_task.worker SET stop = 3 WHERE id = 99');
    await refused(submitter, "INSERT INTO long_task.task_allowlist (group_id, program) VALUES (0, '/bin/sh')");
    await refused(submitter, 'UPDATE long_task.task_group SET max_running = 1');
    await refused(submitter, "INSERT INTO long_task.concurrency_limit (key, max_running) VALUES ('k', 1)");
    await refused(submitter, 'UPDATE long_task.task SET attempt = 5, live_worker_id = 1');
    await refused(submitter, "UPDATE long_task.task SET next_start = now() + interval '1 day'");
    await refused(submitter, 'DELETE FROM long_task.task');
    await refused(submitter, 'CREATE TABLE long_task.x (id int)');
    await refused(submitter, 'CREATE OR REPLACE FUNCTION long_task.recover_worker_tasks(p_worker_id int) RETURNS void LANGUAGE sql AS $$ SELECT $$');
    const stop = await runCli(urlAs(users.submitter), ['stop', '99'], AS_PREFIX);
    assert.equal(stop.code, 1);
    assert.match(stop.stderr, new RegExp(`permission denied for table worker: .*${PREFIX}operator`));
    assert.equal(stop.stderr.trim().split('\n').length, 1);
    const limit = await runCli(urlAs(users.submitter), ['limit', '--group', '3', '2'], AS_PREFIX);
    assert.equal(limit.code, 1);
    assert.match(limit.stderr, new RegExp(`permission denied for table task_group: .*${PREFIX}admin`));
  });

  it("operator changes a worker's stop code and sets a schedule, and no more", async () => {
    const url = urlAs(users.operator);
    await db.query('INSERT INTO long_task.worker (id) VALUES (98) ON CONFLICT DO NOTHING');
    const stop = await runCli(url, ['stop', '98', '--pause']);
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal((await db.query('SELECT stop FROM long_task.worker WHERE id = 98')).rows[0]!.stop, 1);
    const add = await runCli(url, ['add', '--draft', '--group', '51', '--json', 'true']);
    assert.equal(add.code, 0, add.stderr);
    const id = (JSON.parse(add.stdout) as { id: string }).id;
    const schedule = await runCli(url, ['schedule', id, '--every', '1h', '--clone']);
    assert.equal(schedule.code, 0, schedule.stderr);
    assert.notEqual((await db.query('SELECT next_start FROM long_task.task WHERE id = $1', [id])).rows[0]!.next_start, null);
    const operator = poolAs('operator');
    await refused(operator, 'UPDATE long_task.worker SET group_id = 5 WHERE id = 98');
    await refused(operator, "INSERT INTO long_task.task_allowlist (group_id, program) VALUES (0, '/bin/sh')");
    await refused(operator, 'UPDATE long_task.task_group SET max_running = 1');
  });

  it('admin writes allowlists, groups and limits, and may replace the recover policy', async () => {
    const admin = poolAs('admin');
    // Each write changes its row: an UPDATE that row-level security hid would change none, silently.
    await db.query('INSERT INTO long_task.worker (id) VALUES (98) ON CONFLICT DO NOTHING');
    await db.query('UPDATE long_task.worker SET stop = 1 WHERE id = 98');
    assert.equal((await admin.query("INSERT INTO long_task.task_allowlist (group_id, program) VALUES (60, '/usr/bin/true')")).rowCount, 1);
    assert.equal((await admin.query('INSERT INTO long_task.task_group (id, max_running) VALUES (60, 1)')).rowCount, 1);
    assert.equal((await admin.query('UPDATE long_task.task_group SET max_running = 2 WHERE id = 60')).rowCount, 1);
    assert.equal((await admin.query("INSERT INTO long_task.concurrency_limit (key, max_running) VALUES ('admin-key', 1)")).rowCount, 1);
    assert.equal((await admin.query('UPDATE long_task.worker SET stop = 0 WHERE id = 98')).rowCount, 1);
    const written = await db.query(`SELECT (SELECT array_agg(program) FROM long_task.task_allowlist WHERE group_id = 60) AS programs,
      (SELECT max_running FROM long_task.task_group WHERE id = 60) AS group_max,
      (SELECT max_running FROM long_task.concurrency_limit WHERE key = 'admin-key') AS key_max,
      (SELECT stop FROM long_task.worker WHERE id = 98) AS stop`);
    assert.deepEqual(written.rows[0], { programs: ['/usr/bin/true'], group_max: 2, key_max: 1, stop: 0 });
    const body = async (): Promise<string> => (await db.query<{ body: string }>(
      "SELECT prosrc AS body FROM pg_proc WHERE oid = 'long_task.recover_worker_tasks(int)'::regprocedure",
    )).rows[0]!.body;
    const before = await body();
    // The same body again, by the admin: it owns the function. A policy of its own is taken too.
    const replace = (text: string): Promise<unknown> => admin.query(
      `CREATE OR REPLACE FUNCTION long_task.recover_worker_tasks(p_worker_id int) RETURNS void
       LANGUAGE sql SET search_path = long_task, pg_catalog AS $body$${text}$body$`,
    );
    await replace(`${before}\n-- the admin's own policy`);
    assert.equal(await body(), `${before}\n-- the admin's own policy`);
    await replace(before);
    assert.equal(await body(), before);
  });

  it('the dashboard reads as reader and shows a refused action as one line; as submitter it cancels', async () => {
    // The submitter's own task: it sees no other.
    const { rows } = await db.query<{ id: string }>(
      "INSERT INTO long_task.task (command, state_id, group_id, owner) VALUES ('{true}', 'AW', 70, $1) RETURNING id",
      [users.submitter],
    );
    const id = rows[0]!.id;
    process.env.PGTASKS_ROLE_PREFIX = PREFIX;
    try {
      for (const kind of ['reader', 'submitter'] as const) {
        const token = randomBytes(8).toString('hex');
        const dashboard = await startDashboard({ connectionString: urlAs(users[kind]), schema: 'long_task', host: '127.0.0.1', port: 0, token, logger: testLogger });
        try {
          const base = `http://127.0.0.1:${dashboard.port}`;
          const headers = { authorization: `Bearer ${token}` };
          for (const page of ['/', '/tasks', `/tasks/${id}`, '/workers', '/groups']) {
            const response = await fetch(`${base}${page}`, { headers });
            assert.equal(response.status, 200, `${kind} GET ${page}: ${await response.text()}`);
          }
          const cancel = await fetch(`${base}/tasks/${id}/cancel`, {
            method: 'POST',
            headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' },
            body: '',
            redirect: 'manual',
          });
          assert.equal(cancel.status, 303);
          // The flash message rides in a cookie: base64url JSON { kind, message }.
          const cookie = /pgtasks_flash=([^;]*)/.exec(cancel.headers.get('set-cookie') ?? '')?.[1] ?? '';
          const flash = (JSON.parse(Buffer.from(cookie, 'base64url').toString('utf8')) as { message: string }).message;
          assert.doesNotMatch(flash, /\n/);
          const state = (await db.query<{ state_id: string }>('SELECT state_id FROM long_task.task WHERE id = $1', [id])).rows[0]!.state_id;
          if (kind === 'reader') {
            assert.match(flash, new RegExp(`refused: permission denied for table task: .*${PREFIX}submitter`));
            assert.equal(state, 'AW');
          } else {
            assert.match(flash, /cancelled/);
            assert.equal(state, 'CC');
          }
        } finally {
          await dashboard.close();
        }
      }
    } finally {
      delete process.env.PGTASKS_ROLE_PREFIX;
    }
  });
});
