// Issue 25: the ways around the write-time checks a submitter had, each tried as a login user
// that is only a member of the submitter role and each refused with its one line; and what
// closes them: submit_roles, allow_dotdot, args_patterns, at write and (for what slipped past)
// at spawn. Roles are cluster-wide: this file uses a prefix of its own and drops them at the end.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { runCli } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { getTask, startNode, stopAllNodes, tempDir, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';

const PREFIX = `pgt_${randomBytes(3).toString('hex')}_`;
const PASSWORD = `pw_${randomBytes(8).toString('hex')}`;
/** A role of the installation's own, named in a group's submit_roles. */
const DEPLOYERS = `${PREFIX}deployers`;
const USERS = {
  submitter: { user: `${PREFIX}u_sub`, roles: [`${PREFIX}submitter`] },
  deployer: { user: `${PREFIX}u_deployer`, roles: [`${PREFIX}submitter`, DEPLOYERS] },
  admin: { user: `${PREFIX}u_admin`, roles: [`${PREFIX}admin`] },
  node: { user: `${PREFIX}u_node`, roles: [`${PREFIX}node`] },
};
type Who = keyof typeof USERS;

let db: TestDatabase;
const pools = new Map<Who, pg.Pool>();

function urlAs(who: Who): string {
  const u = new URL(db.url);
  u.username = USERS[who].user;
  u.password = PASSWORD;
  return u.toString();
}

function as(who: Who): pg.Pool {
  let pool = pools.get(who);
  if (!pool) {
    pool = new pg.Pool({ connectionString: urlAs(who), max: 2 });
    pool.on('error', () => undefined);
    pools.set(who, pool);
  }
  return pool;
}

/** Runs the statements on one connection of `who`, in one transaction, rolled back at the end. */
async function inTransaction(who: Who, statements: Array<[string, unknown[]?]>): Promise<void> {
  const client = await as(who).connect();
  try {
    await client.query('BEGIN');
    for (const [sql, params] of statements) await client.query(sql, params);
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
    client.release();
  }
}

/** Refused with SQLSTATE 42501 and one line matching `message`. */
async function refused(write: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(write, (error: Error & { code?: string }) => {
    assert.equal(error.code, '42501', error.message);
    assert.match(error.message, message);
    assert.ok(!error.message.includes('\n'), `one line: ${error.message}`);
    return true;
  });
}

async function insertTask(who: Who, command: string[], group: number, state = 'AW'): Promise<number> {
  const { rows } = await as(who).query<{ id: string }>(
    'INSERT INTO long_task.task (command, group_id, state_id) VALUES ($1, $2, $3) RETURNING id', [command, group, state]);
  return Number(rows[0]!.id);
}

async function count(where: string, params: unknown[]): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM long_task.task WHERE ${where}`, params);
  return rows[0]!.n;
}

async function allowlistGroup(group: number): Promise<void> {
  await db.query("INSERT INTO long_task.task_group (id, commands) VALUES ($1, 'allowlist') ON CONFLICT (id) DO UPDATE SET commands = 'allowlist'", [group]);
}

async function allow(group: number, program: string, rule: { pattern?: string; patterns?: string[]; dotdot?: boolean } = {}): Promise<void> {
  await db.query('INSERT INTO long_task.task_allowlist (group_id, program, args_pattern, args_patterns, allow_dotdot) VALUES ($1, $2, $3, $4, $5)',
    [group, program, rule.pattern ?? null, rule.patterns ?? null, rule.dotdot ?? false]);
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

async function refusedAtSpawn(id: number, message: RegExp): Promise<void> {
  const task = await getTask(db, id);
  assert.equal(task.state_id, 'CF');
  assert.equal(task.end_reason, 'refused');
  assert.match(String(task.error), message);
  assert.equal(task.pid, null);
}

before(async () => {
  db = await createTestDatabase('bypass');
  const migrated = await runCli(db.url, ['migrate', '--role-prefix', PREFIX]);
  assert.equal(migrated.code, 0, migrated.stderr);
  await db.query(`CREATE ROLE "${DEPLOYERS}" NOLOGIN`);
  for (const { user, roles } of Object.values(USERS)) {
    await db.query(`CREATE ROLE "${user}" LOGIN PASSWORD '${PASSWORD}'`);
    for (const role of roles) await db.query(`GRANT "${role}" TO "${user}"`);
  }
});

after(async () => {
  await stopAllNodes();
  await Promise.all([...pools.values()].map((p) => p.end()));
  const { rows } = await db.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE rolname LIKE $1', [`${PREFIX}%`]);
  const names = rows.map((r) => `"${r.rolname}"`).join(', ');
  if (names) {
    await db.query(`DROP OWNED BY ${names}`);
    await db.query(`DROP ROLE IF EXISTS ${names}`);
  }
  await db.close();
});

describe('a submitter cannot get around the allowlist check', () => {
  it("SET LOCAL pg_tasks.advancing or pg_tasks.recovering = 'on' lets nothing through", async () => {
    await allowlistGroup(101);
    await allow(101, '/usr/bin/true');
    const forbidden = /^program "\/usr\/bin\/touch" is not allowed in group 101: no rule of task_allowlist covers it \(group 101 has commands = 'allowlist'\)/;
    for (const setting of ['pg_tasks.advancing', 'pg_tasks.recovering']) {
      await refused(inTransaction('submitter', [
        [`SET LOCAL ${setting} = 'on'`],
        ["INSERT INTO long_task.task (command, group_id) VALUES ('{/usr/bin/touch,/tmp/pwned}', 101)"],
      ]), forbidden);
    }
    // An allowed draft rewritten, and a draft written before the group became 'allowlist'
    // queued, with both settings on.
    const draft = await insertTask('submitter', ['/usr/bin/true'], 101, 'DR');
    await refused(inTransaction('submitter', [
      ["SET LOCAL pg_tasks.advancing = 'on'"], ["SET LOCAL pg_tasks.recovering = 'on'"],
      ["UPDATE long_task.task SET command = '{/usr/bin/touch,/tmp/pwned}' WHERE id = $1", [draft]],
    ]), forbidden);
    await db.query('INSERT INTO long_task.task_group (id) VALUES (102)');
    const before = await insertTask('submitter', ['/usr/bin/touch', '/tmp/pwned'], 102, 'DR');
    await allowlistGroup(102);
    await refused(inTransaction('submitter', [
      ["SET LOCAL pg_tasks.advancing = 'on'"], ["SET LOCAL pg_tasks.recovering = 'on'"],
      ["UPDATE long_task.task SET state_id = 'AW' WHERE id = $1", [before]],
    ]), /^program "\/usr\/bin\/touch" is not allowed in group 102/);
    assert.equal(await count("group_id = 101 AND command[1] = '/usr/bin/touch'", []), 0);
    assert.equal((await getTask(db, before)).state_id, 'DR');
  });

  it('a temporary task_allowlist or task_group does not stand in for the real one', async () => {
    await allowlistGroup(103);
    await allow(103, '/usr/bin/true');
    await refused(inTransaction('submitter', [
      ['CREATE TEMP TABLE task_allowlist (id int, group_id int, program text, args_pattern text, note text, args_patterns text[], allow_dotdot boolean)'],
      ["INSERT INTO task_allowlist VALUES (1, 103, '/usr/bin/touch', NULL, NULL, NULL, true)"],
      ["INSERT INTO long_task.task (command, group_id) VALUES ('{/usr/bin/touch,/tmp/pwned}', 103)"],
    ]), /^program "\/usr\/bin\/touch" is not allowed in group 103/);
    await refused(inTransaction('submitter', [
      ['CREATE TEMP TABLE task_group (id int, commands text, submit_roles text[])'],
      ["INSERT INTO task_group VALUES (103, 'any', NULL)"],
      ["INSERT INTO long_task.task (command, group_id) VALUES ('{/usr/bin/touch,/tmp/pwned}', 103)"],
    ]), /^program "\/usr\/bin\/touch" is not allowed in group 103/);
    // Nor for the group's submit_roles.
    await db.query('INSERT INTO long_task.task_group (id, submit_roles) VALUES (104, $1)', [[DEPLOYERS]]);
    await refused(inTransaction('submitter', [
      ['CREATE TEMP TABLE task_group (id int, commands text, submit_roles text[])'],
      ["INSERT INTO task_group VALUES (104, 'any', NULL)"],
      ["INSERT INTO long_task.task (command, group_id) VALUES ('{/usr/bin/true}', 104)"],
    ]), /^group 104 takes tasks only from members of /);
    assert.equal(await count('group_id IN (103, 104)', []), 0);
  });

  it("the settings still count for the node's own writes (its role), which the claim checks", async () => {
    await allowlistGroup(105);
    await inTransaction('node', [
      ["SET LOCAL pg_tasks.advancing = 'on'"],
      ["INSERT INTO long_task.task (command, group_id) VALUES ('{/usr/bin/touch,/tmp/pwned}', 105)"],
    ]);
  });
});

describe('submit_roles', () => {
  it('only members of the named roles may insert into the group or move a task into it', async () => {
    await db.query('INSERT INTO long_task.task_group (id, submit_roles) VALUES (110, $1)', [[DEPLOYERS, `${PREFIX}no_such_role`]]);
    const message = new RegExp(`^group 110 takes tasks only from members of ${DEPLOYERS}, ${PREFIX}no_such_role: ${USERS.submitter.user} is not one \\(task_group\\.submit_roles; an admin may GRANT one of them\\)$`);
    await refused(insertTask('submitter', ['/usr/bin/true'], 110), message);
    await insertTask('deployer', ['/usr/bin/true'], 110, 'DR');
    // The CLI says it in the same one line.
    const cli = await runCli(urlAs('submitter'), ['add', '--group', '110', '--', '/usr/bin/true']);
    assert.equal(cli.code, 1);
    assert.equal(cli.stderr.trim().split('\n').length, 1, cli.stderr);
    assert.match(cli.stderr.trim(), new RegExp(`^pg-tasks: ${message.source.slice(1)}`));
    // One refused row of several: none is inserted.
    await refused(as('submitter').query("INSERT INTO long_task.task (command, group_id, state_id) VALUES ('{/usr/bin/true}', 0, 'DR'), ('{/usr/bin/true}', 110, 'DR')"), message);
    // Moved into the group by an update.
    const elsewhere = await insertTask('submitter', ['/usr/bin/true'], 0, 'DR');
    await refused(as('submitter').query('UPDATE long_task.task SET group_id = 110 WHERE id = $1', [elsewhere]), message);
    assert.equal((await getTask(db, elsewhere)).group_id, 0);
    const mine = await insertTask('deployer', ['/usr/bin/true'], 0, 'DR');
    await as('deployer').query('UPDATE long_task.task SET group_id = 110 WHERE id = $1', [mine]);
    // Other changes to a task of the group are not checked; an admin may always submit.
    await as('deployer').query('UPDATE long_task.task SET priority = 3 WHERE id = $1', [mine]);
    await insertTask('admin', ['/usr/bin/true'], 110, 'DR');
    assert.equal(await count('group_id = 110', []), 3);
    // '{}': nobody but admins and the node.
    await db.query("INSERT INTO long_task.task_group (id, submit_roles) VALUES (111, '{}')");
    await refused(insertTask('deployer', ['/usr/bin/true'], 111), /^group 111 takes tasks only from members of no role: /);
    // null: anyone, as before.
    await db.query('UPDATE long_task.task_group SET submit_roles = NULL WHERE id = 111');
    await insertTask('submitter', ['/usr/bin/true'], 111, 'DR');
  });

  it("the node's copies of a schedule in such a group are written (the node role)", async () => {
    await db.query('INSERT INTO long_task.task_group (id, submit_roles) VALUES (112, $1)', [[DEPLOYERS]]);
    const { rows } = await as('admin').query<{ id: string }>(
      `INSERT INTO long_task.task (command, group_id, state_id, next_start, shed_period_id, shed_period_count, shed_clone)
       VALUES ('{/usr/bin/true}', 112, 'DR', now(), 'SEC', 1, true) RETURNING id`);
    const schedule = Number(rows[0]!.id);
    await startNode({ ...db, url: urlAs('node') }, { connectionString: urlAs('node'), workerId: 112, groupId: 112 });
    await until(async () => (await count("shed_parent_id = $1 AND state_id = 'CS'", [schedule])) >= 1, 'a copy of the schedule to run', 30_000);
  });
});

describe('arguments', () => {
  it("'..' segments are refused unless the rule says allow_dotdot: when written, and at spawn", async () => {
    const dir = tempDir('bypass-dotdot');
    mkdirSync(`${dir}/jobs/sub`, { recursive: true });
    // The rule: perl ^/opt/jobs/[a-z0-9_/.-]+\.pl$, with touch and this test's directory.
    const pattern = `^${escapeRegex(dir)}/jobs/[a-z0-9_/.-]+$`;
    await db.query('INSERT INTO long_task.task_group (id) VALUES (120)');
    const slipped = await insertTask('submitter', ['/usr/bin/touch', `${dir}/jobs/sub/../../evil`], 120);
    await allowlistGroup(120);
    await allow(120, '/usr/bin/touch', { pattern });
    const dotdot = /^argument 2 of \/usr\/bin\/touch \(".*\/jobs\/sub\/\.\.\/\.\.\/evil"\) has a "\.\." segment, which rule \d+ of group 120 does not allow \(allow_dotdot\)/;
    await refused(insertTask('submitter', ['/usr/bin/touch', `${dir}/jobs/sub/../../evil`], 120), dotdot);
    // After '=' too.
    const { rows } = await as('submitter').query<{ why: string }>('SELECT long_task.command_refusal(120, $1) AS why', [['/usr/bin/touch', `--reference=${dir}/jobs/..`]]);
    assert.match(rows[0]!.why, /has a "\.\." segment/);
    const clean = await insertTask('submitter', ['/usr/bin/touch', `${dir}/jobs/sub/made`], 120);
    await startNode(db, { workerId: 120, groupId: 120 });
    await waitEnded(db, [slipped, clean]);
    await refusedAtSpawn(slipped, /^Refused: argument 2 of \/usr\/bin\/touch .* has a "\.\." segment/);
    assert.ok(!existsSync(`${dir}/evil`), 'the refused task ran');
    assert.equal((await getTask(db, clean)).state_id, 'CS');
    assert.ok(existsSync(`${dir}/jobs/sub/made`));
    // A rule that allows them: the same argument runs (its pattern still applies).
    await allow(120, '/usr/bin/touch', { pattern, dotdot: true });
    const allowed = await insertTask('submitter', ['/usr/bin/touch', `${dir}/jobs/sub/../made-too`], 120);
    await waitEnded(db, [allowed]);
    assert.equal((await getTask(db, allowed)).state_id, 'CS');
    assert.ok(existsSync(`${dir}/jobs/made-too`));
  });

  it('a path-like argument must match in its normal form too; a URL keeps its //', async () => {
    await allowlistGroup(121);
    await allow(121, '/usr/bin/cat', { pattern: '^/srv/(?!secret)[a-z/.]+$' });
    await allow(121, '/usr/bin/curl', { pattern: '^https://example\\.com/[a-z]+$' });
    const why = async (command: string[]): Promise<string | null> =>
      (await as('submitter').query<{ why: string | null }>('SELECT long_task.command_refusal(121, $1) AS why', [command])).rows[0]!.why;
    assert.equal(await why(['cat', '/srv/public']), null);
    assert.match(String(await why(['cat', '/srv//secret'])), /^argument 2 of \/usr\/bin\/cat \("\/srv\/\/secret", normally "\/srv\/secret"\) does not match the args_pattern of rule \d+ of group 121/);
    assert.match(String(await why(['cat', '/srv/./secret'])), /normally "\/srv\/secret"/);
    assert.equal(await why(['curl', 'https://example.com/x']), null);
  });

  it('args_patterns: one pattern per position; an argument past them is refused unless args_pattern takes the rest', async () => {
    await allowlistGroup(130);
    // The rule python3 ^[a-z0-9_./-]+$ let -mplatform through; per position it does not.
    await allow(130, '/usr/bin/python3', { patterns: ['^/opt/py/[a-z_]+\\.py$'] });
    await refused(insertTask('submitter', ['python3', '-mplatform'], 130),
      /^argument 2 of \/usr\/bin\/python3 \("-mplatform"\) does not match the args_patterns\[1\] of rule \d+ of group 130 \(\^\/opt\/py\/\[a-z_\]\+\\\.py\$\)/);
    await refused(insertTask('submitter', ['python3', '/opt/py/job.py', '-c', 'import os'], 130),
      /^argument 3 of \/usr\/bin\/python3 \("-c"\) is past the 1 positional patterns \(args_patterns\) of rule \d+ of group 130, which has no args_pattern for the rest/);
    await insertTask('submitter', ['python3', '/opt/py/job.py'], 130, 'DR');
    await insertTask('submitter', ['python3'], 130, 'DR');
    // args_pattern takes the arguments past the positional ones.
    await allow(130, '/usr/bin/perl', { patterns: ['^/opt/pl/[a-z]+\\.pl$'], pattern: '^[a-z0-9]+$' });
    await insertTask('submitter', ['perl', '/opt/pl/job.pl', 'a1', 'b2'], 130, 'DR');
    await refused(insertTask('submitter', ['perl', '/opt/pl/job.pl', '-e1'], 130), /^argument 3 of \/usr\/bin\/perl \("-e1"\) does not match the args_pattern of rule/);
    await refused(insertTask('submitter', ['perl', 'a1'], 130), /does not match the args_patterns\[1\]/);
  });

  it('args_patterns at spawn: a task that slipped past with one argument too many is refused, the other runs', async () => {
    const dir = tempDir('bypass-positions');
    await db.query('INSERT INTO long_task.task_group (id) VALUES (131)');
    const slipped = await insertTask('submitter', ['/usr/bin/touch', `${dir}/a`, `${dir}/b`], 131);
    await allowlistGroup(131);
    await allow(131, '/usr/bin/touch', { patterns: [`^${escapeRegex(dir)}/[a-z]$`] });
    const one = await insertTask('submitter', ['/usr/bin/touch', `${dir}/c`], 131);
    await startNode(db, { workerId: 131, groupId: 131 });
    await waitEnded(db, [slipped, one]);
    await refusedAtSpawn(slipped, /^Refused: argument 3 of \/usr\/bin\/touch \(".*\/b"\) is past the 1 positional patterns/);
    assert.ok(!existsSync(`${dir}/a`) && !existsSync(`${dir}/b`), 'the refused task ran');
    assert.equal((await getTask(db, one)).state_id, 'CS');
  });

  it("a pattern of args_patterns PostgreSQL can't compile, or a null one, is refused when the rule is written", async () => {
    await assert.rejects(allow(132, '/usr/bin/env', { patterns: ['^ok$', '(bad'] }), /invalid args_patterns\[2\] '\(bad': invalid regular expression/);
    await assert.rejects(db.query("INSERT INTO long_task.task_allowlist (group_id, program, args_patterns) VALUES (132, '/usr/bin/env', '{^a$,NULL}')"),
      /task_allowlist_args_patterns_valid/);
  });
});
