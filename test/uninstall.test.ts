// `pg-tasks migrate --no-roles` and `pg-tasks uninstall` (docs/security.md, "Roles"), through
// the CLI as a user runs it, against the real server. Roles are cluster-wide and other test
// files run on the same server at the same time: this file creates and drops only roles of a
// prefix of its own (random), never the default pgtasks_* ones, which other files' migrations
// may be using; the databases are its own too.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { ROOT, runCli } from './helpers/cli.js';
import { startNode, stopAllNodes, testLogger } from './helpers/node.js';

const PREFIX = `pgt_${randomBytes(3).toString('hex')}_`;
const AS_PREFIX = { PGTASKS_ROLE_PREFIX: PREFIX };
const USER = `${PREFIX}u_alice`;

let db: TestDatabase;
let otherDb: TestDatabase;

async function rolesOf(prefix: string): Promise<string[]> {
  const { rows } = await db.query<{ rolname: string }>("SELECT rolname FROM pg_roles WHERE rolname LIKE $1 || '%' AND rolname <> $2 ORDER BY rolname", [prefix, USER]);
  return rows.map((r) => r.rolname);
}

async function schemaExists(d: TestDatabase, schema: string): Promise<boolean> {
  const { rows } = await d.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
  return rows.length === 1;
}

function oneLine(stderr: string): string {
  assert.equal(stderr.trimEnd().split('\n').length, 1, stderr);
  return stderr.trimEnd();
}

before(async () => {
  db = await createTestDatabase('uninstall', { migrate: false });
  otherDb = await createTestDatabase('uninstall_other', { migrate: false });
});

after(async () => {
  await stopAllNodes();
  // What a failed test left: this file's roles only.
  const names = [...(await rolesOf(PREFIX)), USER].map((n) => `"${n}"`).join(', ');
  for (const d of [db, otherDb]) await d.query(`DROP OWNED BY ${names}`).catch(() => undefined);
  await db.query(`DROP ROLE IF EXISTS ${names}`);
  await otherDb.close();
  await db.close();
});

describe('migrate --no-roles', () => {
  it('creates no roles and leaves row-level security off', async () => {
    const plain = await runCli(db.url, ['--schema', 'plain', 'migrate', '--no-roles'], AS_PREFIX);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.stderr, '');
    assert.deepEqual(await rolesOf(PREFIX), []);
    const { rows } = await db.query<{ relrowsecurity: boolean }>("SELECT relrowsecurity FROM pg_class WHERE oid = 'plain.task'::regclass");
    assert.deepEqual(rows, [{ relrowsecurity: false }]);

    // Without it, the same command creates them (the check above can fail).
    const roles = await runCli(db.url, ['--schema', 'withroles', 'migrate'], AS_PREFIX);
    assert.equal(roles.code, 0, roles.stderr);
    assert.match(roles.stdout, new RegExp(`created roles: ${PREFIX}reader, `));
    assert.equal((await rolesOf(PREFIX)).length, 5);
  });
});

describe('uninstall', () => {
  it('refuses without --yes when stdin is not a terminal', async () => {
    const r = await runCli(db.url, ['--schema', 'plain', 'uninstall']);
    assert.equal(r.code, 1);
    assert.equal(oneLine(r.stderr), 'pg-tasks: uninstall drops schema "plain" for good: run it on a terminal to be asked, or add --yes');
    assert.equal(await schemaExists(db, 'plain'), true);
  });

  it('refuses a schema that is not pg-tasks\'', async () => {
    const r = await runCli(db.url, ['--schema', 'public', 'uninstall', '--yes']);
    assert.equal(r.code, 1);
    assert.equal(oneLine(r.stderr), 'pg-tasks: schema "public" is not a pg-tasks schema (it has no migrations table): nothing dropped');
    assert.equal(await schemaExists(db, 'public'), true);
  });

  it('refuses while a node holds a worker of the schema', async () => {
    const node = await startNode(db, { schema: 'plain', logger: testLogger, migrate: false });
    const r = await runCli(db.url, ['--schema', 'plain', 'uninstall', '--yes']);
    assert.equal(r.code, 1);
    assert.match(oneLine(r.stderr), /^pg-tasks: nodes hold worker 1 \(test-node\) of schema "plain": stop them first .*--force$/);
    assert.equal(await schemaExists(db, 'plain'), true);
    await node.shutdown('cancel', 'test');
  });

  it('--yes drops the schema and keeps the roles, and says so', async () => {
    await db.query("INSERT INTO plain.task (command) VALUES ('{true}')");
    const r = await runCli(db.url, ['--schema', 'plain', 'uninstall', '--yes'], AS_PREFIX);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'dropped schema "plain" (1 tasks, 1 workers)\n');
    assert.match(oneLine(r.stderr), new RegExp(`^note: kept the roles ${PREFIX}admin, .*"pg-tasks uninstall --roles" drops them$`));
    assert.equal(await schemaExists(db, 'plain'), false);
    assert.equal((await rolesOf(PREFIX)).length, 5);
    // Again: nothing there.
    const again = await runCli(db.url, ['--schema', 'plain', 'uninstall', '--yes']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, 'schema "plain" does not exist: nothing to drop\n');
  });

  it('--roles drops nothing while another database uses the roles, then drops them once it does not', async () => {
    const migrated = await runCli(otherDb.url, ['migrate'], AS_PREFIX);
    assert.equal(migrated.code, 0, migrated.stderr);
    await db.query(`CREATE ROLE "${USER}" LOGIN`);
    await db.query(`GRANT "${PREFIX}submitter" TO "${USER}"`);

    const refused = await runCli(db.url, ['--schema', 'withroles', 'uninstall', '--yes', '--roles'], AS_PREFIX);
    assert.equal(refused.code, 1);
    assert.match(oneLine(refused.stderr), new RegExp(`^pg-tasks: nothing dropped: role ${PREFIX}\\w+ is still used outside schema "withroles" \\(.*in database ${otherDb.name}.*\\); uninstall those schemas first, or leave out --roles to keep the roles$`));
    assert.equal(await schemaExists(db, 'withroles'), true, 'one transaction: the schema stays too');
    assert.equal((await rolesOf(PREFIX)).length, 5);

    const other = await runCli(otherDb.url, ['uninstall', '--yes'], AS_PREFIX);
    assert.equal(other.code, 0, other.stderr);
    const dropped = await runCli(db.url, ['--schema', 'withroles', 'uninstall', '--yes', '--roles', '--role-prefix', PREFIX]);
    assert.equal(dropped.code, 0, dropped.stderr);
    assert.equal(
      dropped.stdout,
      `dropped schema "withroles" (0 tasks, 0 workers)\n` +
        `dropped roles: ${['admin', 'node', 'operator', 'reader', 'submitter'].map((k) => PREFIX + k).join(', ')}\n` +
        `users that lost them: ${USER} (${PREFIX}submitter)\n`,
    );
    assert.equal(dropped.stderr, '');
    assert.equal(await schemaExists(db, 'withroles'), false);
    assert.deepEqual(await rolesOf(PREFIX), []);
  });
});

// A terminal for the prompt: util-linux `script` runs the CLI on a pseudo-terminal.
const hasScript = spawnSync('script', ['--version']).status === 0;

/** Runs uninstall on a terminal, answers the prompt once it is shown, and returns what it printed and its code. */
function onTerminal(url: string, schema: string, answer: string): Promise<{ code: number | null; output: string }> {
  const command = `${process.execPath} --import tsx src/cli/main.ts --schema ${schema} uninstall`;
  const child = spawn('script', ['-qec', command, '/dev/null'], { cwd: ROOT, env: { ...process.env, DATABASE_URL: url, NODE_TEST_CONTEXT: '' }, stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  let answered = false;
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    output += s;
    if (!answered && output.includes('Type yes to go on: ')) {
      answered = true;
      child.stdin.write(`${answer}\n`);
    }
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, output })));
}

describe('uninstall on a terminal', { skip: hasScript ? false : 'no util-linux script here to give the CLI a terminal' }, () => {
  it('asks, and drops only on yes', async () => {
    const m = await runCli(db.url, ['--schema', 'asked', 'migrate', '--no-roles']);
    assert.equal(m.code, 0, m.stderr);
    const no = await onTerminal(db.url, 'asked', 'no');
    assert.match(no.output, /This drops schema "asked" \(0 tasks, 0 workers\), for good\./);
    assert.match(no.output, /pg-tasks: nothing dropped/);
    assert.equal(no.code, 1);
    assert.equal(await schemaExists(db, 'asked'), true);
    const yes = await onTerminal(db.url, 'asked', 'yes');
    assert.match(yes.output, /dropped schema "asked"/);
    assert.equal(yes.code, 0);
    assert.equal(await schemaExists(db, 'asked'), false);
  });
});
