// The function files (src/sql/functions) against the schema: after a fresh migrate and after
// an upgrade from every older version, each function and trigger in the schema is its file's
// text, and nothing is in one without the other. A changed file is applied on the next
// migrate, an unchanged one is not, and a user's own recover_worker_tasks is never replaced.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { quoteIdent } from '../src/db/connection.js';
import { loadFunctionSources } from '../src/db/functions.js';
import { checkSchemaVersion, loadMigrations, migrate } from '../src/db/migrate.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

const FROZEN = 16;
const LATEST = loadMigrations().length;
const FILES = loadFunctionSources();
const FILE_NAMES = FILES.map((f) => f.name);

let db: TestDatabase;
let client: pg.Client;

after(async () => {
  await client?.end();
  await db?.close();
});

async function setup(): Promise<void> {
  if (db) return;
  db = await createTestDatabase('functions', { migrate: false });
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
}

/** What the schema holds, as the files write it: {{schema}} for the schema's name. */
async function definitions(schema: string): Promise<{ functions: Map<string, string[]>; triggers: Map<string, string[]> }> {
  const ident = quoteIdent(schema);
  // Only pg_catalog on the search path: every object of the schema is named with it.
  await client.query('SET search_path = pg_catalog');
  try {
    const own = (text: string): string =>
      text
        // pg_get_functiondef writes a function's search_path as string literals.
        .replaceAll(`SET search_path TO '${schema}', 'pg_catalog'`, `SET search_path TO ${ident}, pg_catalog`)
        .replaceAll(", pg_catalog, 'pg_temp'", ', pg_catalog, pg_temp')
        .replaceAll(ident, '{{schema}}');
    const functions = new Map<string, string[]>();
    const { rows: procs } = await client.query<{ name: string; def: string }>(
      `SELECT p.proname AS name, pg_get_functiondef(p.oid) AS def FROM pg_proc p
        WHERE p.pronamespace = $1::regnamespace ORDER BY p.proname, p.oid::regprocedure::text`,
      [ident],
    );
    for (const { name, def } of procs) functions.set(name, [...(functions.get(name) ?? []), own(def).trimEnd() + ';']);
    const triggers = new Map<string, string[]>();
    const { rows: trigs } = await client.query<{ name: string; def: string }>(
      `SELECT p.proname AS name, pg_get_triggerdef(t.oid) AS def
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid
        WHERE c.relnamespace = $1::regnamespace AND NOT t.tgisinternal ORDER BY t.tgname`,
      [ident],
    );
    for (const { name, def } of trigs) triggers.set(name, [...(triggers.get(name) ?? []), own(def) + ';']);
    return { functions, triggers };
  } finally {
    await client.query('RESET search_path');
  }
}

async function assertSchemaIsFiles(schema: string): Promise<void> {
  const { functions, triggers } = await definitions(schema);
  assert.deepEqual([...functions.keys()].sort(), FILE_NAMES, `${schema}: a function without a file, or a file without a function`);
  for (const file of FILES) {
    for (const def of functions.get(file.name)!) {
      assert.ok(file.sql.includes(def), `${schema}: ${file.name} in the schema is not src/sql/functions/${file.name}.sql:\n${def}`);
    }
    const inFile = [...file.sql.matchAll(/^CREATE TRIGGER (\w+) /gm)].map((m) => m[1]!);
    const inSchema = triggers.get(file.name) ?? [];
    assert.equal(inSchema.length, inFile.length, `${schema}: the triggers of ${file.name}`);
    for (const def of inSchema) assert.ok(file.sql.includes(def), `${schema}: trigger not in ${file.name}.sql:\n${def}`);
  }
}

async function recorded(schema: string): Promise<Map<string, { checksum: string; applied_at: Date }>> {
  const { rows } = await client.query<{ name: string; checksum: string; applied_at: Date }>(
    `SELECT name, checksum, applied_at FROM ${quoteIdent(schema)}.function_source`,
  );
  return new Map(rows.map((r) => [r.name, r]));
}

async function recoverBody(schema: string): Promise<string> {
  const { rows } = await client.query<{ src: string }>('SELECT prosrc AS src FROM pg_proc WHERE oid = $1::regprocedure', [
    `${quoteIdent(schema)}.recover_worker_tasks(int, bigint)`,
  ]);
  return rows[0]!.src;
}

/** A new database's schema, migrated; returns its quoted name. */
async function migrated(schema: string): Promise<string> {
  await setup();
  await migrate(client, schema);
  return quoteIdent(schema);
}

/** What a newer pg-tasks finds in a schema an older one migrated: a file whose text is not the recorded one. */
async function fileChanged(schema: string, name: string): Promise<void> {
  await client.query(`UPDATE ${quoteIdent(schema)}.function_source SET checksum = 'older' WHERE name = $1`, [name]);
}

const CUSTOM_POLICY = (ident: string): string => `
  CREATE OR REPLACE FUNCTION ${ident}.recover_worker_tasks(p_worker_id int, p_epoch bigint) RETURNS void
  LANGUAGE sql AS $$ UPDATE ${ident}.task SET state_id = 'CF', error = 'custom' WHERE worker_id = p_worker_id AND state_id = 'AE' $$`;

describe('function files', () => {
  it('are the functions and triggers of a freshly migrated schema, one file each', async () => {
    await setup();
    const result = await migrate(client, 'Fresh Schema');
    assert.deepEqual(result.functions, FILE_NAMES);
    await assertSchemaIsFiles('Fresh Schema');
    assert.deepEqual([...(await recorded('Fresh Schema')).keys()].sort(), FILE_NAMES);
  });

  it('are the functions and triggers of a schema upgraded from each version 1 to 16', async () => {
    await setup();
    for (let version = 1; version <= FROZEN; version++) {
      const schema = `From ${version}`;
      const first = await migrate(client, schema, { target: version });
      assert.deepEqual(first.functions, [], 'no function file is applied below the newest version');
      const rest = await migrate(client, schema);
      assert.equal(rest.to, LATEST);
      assert.deepEqual(rest.functions, FILE_NAMES);
      await assertSchemaIsFiles(schema);
      // One transaction (now() is its start): the newest migration and the files commit together.
      const { rows } = await client.query<{ same: boolean }>(
        `SELECT (SELECT applied_at FROM ${quoteIdent(schema)}.migrations WHERE id = $1)
                = ALL (SELECT applied_at FROM ${quoteIdent(schema)}.function_source) AS same`,
        [LATEST],
      );
      assert.equal(rows[0]!.same, true, `${schema}: the function files were applied in a transaction of their own`);
    }
  });

  it('applies a changed file on the next migrate, and only that one', async () => {
    const schema = 'Changed Schema';
    const ident = await migrated(schema);
    const before = await recorded(schema);
    // (The schema's function is altered too, to see it replaced.)
    await fileChanged(schema, 'task_limit_rules');
    await client.query(`CREATE OR REPLACE FUNCTION ${ident}.task_limit_rules() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$`);
    await assert.rejects(checkSchemaVersion(client, schema), /other functions than this pg-tasks \(task_limit_rules\): run "pg-tasks migrate"/);

    const result = await migrate(client, schema);
    assert.deepEqual(result, { from: LATEST, to: LATEST, applied: [], functions: ['task_limit_rules'] });
    await assertSchemaIsFiles(schema);
    const now = await recorded(schema);
    for (const name of FILE_NAMES) {
      if (name === 'task_limit_rules') assert.ok(now.get(name)!.applied_at > before.get(name)!.applied_at);
      else assert.deepEqual(now.get(name), before.get(name), `${name} was not applied again`);
    }
    await checkSchemaVersion(client, schema);
    assert.deepEqual((await migrate(client, schema)).functions, []);
  });

  it("never replaces a user's own recover_worker_tasks, and replaces its own when its file changes", async () => {
    const schema = 'Policy Schema';
    const ident = await migrated(schema);
    const shipped = await recoverBody(schema);

    // Its own, when the file changed: replaced.
    await fileChanged(schema, 'recover_worker_tasks');
    assert.deepEqual((await migrate(client, schema)).functions, ['recover_worker_tasks']);

    // The user's, when the file changed: kept, and said so.
    await client.query(CUSTOM_POLICY(ident));
    const custom = await recoverBody(schema);
    assert.notEqual(custom, shipped);
    await fileChanged(schema, 'recover_worker_tasks');
    const result = await migrate(client, schema);
    assert.deepEqual(result.functions, []);
    assert.deepEqual(result.kept, ['recover_worker_tasks']);
    assert.equal(await recoverBody(schema), custom);
    // Recorded: the next migrate neither tries again nor calls the schema stale.
    assert.deepEqual(await migrate(client, schema), { from: LATEST, to: LATEST, applied: [], functions: [] });
    await checkSchemaVersion(client, schema);
  });

  it("keeps a user's own policy written at version 1 through the upgrade to the function files", async () => {
    await setup();
    const schema = 'Old Policy';
    const ident = quoteIdent(schema);
    await migrate(client, schema, { target: 1 });
    await client.query(`
      CREATE OR REPLACE FUNCTION ${ident}.recover_worker_tasks(p_worker_id int) RETURNS void
      LANGUAGE sql AS $$ UPDATE ${ident}.task SET state_id = 'CF', error = 'custom' WHERE worker_id = p_worker_id AND state_id = 'AE' $$`);
    const result = await migrate(client, schema);
    assert.deepEqual(result.kept, ['recover_worker_tasks']);
    assert.ok(!result.functions.includes('recover_worker_tasks'));
    const { rows } = await client.query<{ src: string }>('SELECT prosrc AS src FROM pg_proc WHERE oid = $1::regprocedure', [
      `${ident}.recover_worker_tasks(int)`,
    ]);
    assert.match(rows[0]!.src, /'custom'/);
  });
});
