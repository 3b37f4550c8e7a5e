// The schema in two parts (src/sql/README.md):
//   src/sql/migrations  numbered, applied once each, in order. 000001–000016 are frozen
//                       history; a new migration changes tables, indexes and data only.
//   src/sql/functions   the current text of every function and trigger, one file each,
//                       re-applied after the migrations whenever a file's text changed.
// Both run under one advisory lock per schema, so concurrent migrators take turns.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { SQL_DIR } from './queries.js';
import { checkoutClient, quoteIdent } from './connection.js';
import { applyFunctions, applyFunctionsInTransaction, staleFunctions, type ApplyFunctionsResult } from './functions.js';
import { ensureRoles, rolePrefix, type EnsureRolesResult } from './roles.js';

export interface Migration {
  id: number;
  name: string;
  sql: string;
}

export class SchemaTooNewError extends Error {
  constructor(schema: string, found: number, known: number) {
    super(
      `schema "${schema}" is at migration ${found}, newer than this pg-tasks knows (${known}): ` +
        'upgrade pg-tasks on this host before running it against this database',
    );
    this.name = 'SchemaTooNewError';
  }
}

/** The numbered files of src/sql/migrations, in order: 000001_schema.sql, 000002_... */
export function loadMigrations(): Migration[] {
  const dir = path.join(SQL_DIR, 'migrations');
  const migrations = readdirSync(dir)
    .filter((file) => /^\d{6}_[\w-]+\.sql$/.test(file))
    .sort()
    .map((file) => ({
      id: Number(file.slice(0, 6)),
      name: file.replace(/\.sql$/, ''),
      sql: readFileSync(path.join(dir, file), 'utf8'),
    }));
  migrations.forEach((migration, index) => {
    if (migration.id !== index + 1) throw new Error(`migration ${migration.name} is out of sequence`);
  });
  return migrations;
}

export interface MigrateResult {
  /** Version before and after. */
  from: number;
  to: number;
  applied: string[];
  /** The files of src/sql/functions applied (at the newest version only, when changed). */
  functions: string[];
  /** User-replaceable functions whose file changed, left as the user wrote them. */
  kept?: string[];
  /** What the roles step did, when it ran (see `MigrateOptions.roles`). */
  roles?: EnsureRolesResult;
}

export interface MigrateOptions {
  target?: number;
  /**
   * The group roles (src/db/roles.ts). `always`: set them up even when the schema is up to
   * date (the explicit `pg-tasks migrate`); otherwise only after migrations were applied, so
   * that what a new version adds is granted. `create`: create missing roles, else grant to
   * the ones that exist. Only at the newest version. Absent: no roles step.
   */
  roles?: { prefix: string; create: boolean; always: boolean };
}

/**
 * Brings the schema up to the newest migration this package ships (or `target`), then, at the
 * newest, applies the function files that changed. A session advisory lock serialises
 * concurrent migrators: the second one waits, then finds nothing left to do. Each migration
 * runs in its own transaction with its record; the function files in one more.
 */
export async function migrate(
  client: pg.ClientBase,
  schema: string,
  options: MigrateOptions = {},
): Promise<MigrateResult> {
  const migrations = loadMigrations();
  const known = migrations.length;
  const target = options.target ?? known;
  const ident = quoteIdent(schema);
  // Up to date: a read only. CREATE SCHEMA IF NOT EXISTS checks the CREATE privilege on the
  // database before it looks for the schema, so without this a node whose role may use the
  // schema but not create one (PUBLIC's default) could not start with migrate on.
  const found = await existingVersion(client, schema);
  if (found !== null) {
    if (found > known) throw new SchemaTooNewError(schema, found, known);
    const functionsDue = found === known && (await staleFunctions(client, schema)).length > 0;
    if (found >= target && !functionsDue && !(options.roles?.always && found === known)) {
      return { from: found, to: found, applied: [], functions: [] };
    }
  }
  await client.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [`pg-tasks:${schema}`]);
  try {
    const applied: string[] = [];
    let functionsApplied: ApplyFunctionsResult | null = null;
    let from: number;
    if (found !== null && found >= target) {
      // Up to date: no DDL on the schema but the function files that changed, and the roles
      // step when asked (which warns and does nothing for a user who does not own the tables).
      from = found;
    } else {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${ident}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${ident}.migrations (
           id         int         PRIMARY KEY,
           name       text        NOT NULL,
           applied_at timestamptz NOT NULL DEFAULT now()
         )`,
      );
      from = await currentVersion(client, schema);
      if (from > known) throw new SchemaTooNewError(schema, from, known);
      for (const migration of migrations) {
        if (migration.id <= from || migration.id > target) continue;
        // The newest migration commits with the function files: the tables and the triggers
        // that write them change together.
        const last = migration.id === known;
        const done = await applyMigration(client, ident, migration, last ? () => applyFunctionsInTransaction(client, schema) : null);
        if (done) functionsApplied = done;
        applied.push(migration.name);
      }
    }
    const to = Math.max(from, Math.min(target, known));
    // The files are the functions of the newest version: an older one has other columns.
    const functions = functionsApplied ?? (to === known ? await applyFunctions(client, schema) : { applied: [], kept: [] });
    const result: MigrateResult = { from, to, applied, functions: functions.applied };
    if (functions.kept.length > 0) result.kept = functions.kept;
    // CREATE OR REPLACE FUNCTION resets what the roles step sets on a function (SECURITY
    // DEFINER, see src/sql/roles.sql): it runs again after any function was applied.
    const changed = applied.length > 0 || functions.applied.length > 0;
    if (options.roles && to === known && (options.roles.always || changed)) {
      result.roles = await ensureRoles(client, schema, options.roles.prefix, options.roles);
    }
    return result;
  } finally {
    await client.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [`pg-tasks:${schema}`]);
  }
}

/** Applies one migration in a transaction of its own; `alsoInIt` runs before its COMMIT. */
async function applyMigration<T>(client: pg.ClientBase, ident: string, migration: Migration, alsoInIt: (() => Promise<T>) | null): Promise<T | null> {
  await client.query('BEGIN');
  let also: T | null = null;
  try {
    // A function, not a string: in a replacement string `$$` and `$&` are patterns, and
    // they are legal in a quoted schema name.
    await client.query(migration.sql.replaceAll('{{schema}}', () => ident));
    await client.query(`INSERT INTO ${ident}.migrations (id, name) VALUES ($1, $2)`, [migration.id, migration.name]);
  } catch (error) {
    await client.query('ROLLBACK');
    throw new Error(`migration ${migration.name} failed: ${(error as Error).message}`, { cause: error });
  }
  try {
    if (alsoInIt) also = await alsoInIt();
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  }
  return also;
}

/** The recorded version, or null when the schema has no migrations table yet. */
async function existingVersion(client: pg.ClientBase, schema: string): Promise<number | null> {
  const { rows } = await client.query<{ exists: boolean }>('SELECT to_regclass($1) IS NOT NULL AS exists', [
    `${quoteIdent(schema)}.migrations`,
  ]);
  return rows[0]?.exists ? currentVersion(client, schema) : null;
}

export async function currentVersion(client: pg.ClientBase, schema: string): Promise<number> {
  const { rows } = await client.query<{ version: number | null }>(
    `SELECT max(id) AS version FROM ${quoteIdent(schema)}.migrations`,
  );
  return rows[0]?.version ?? 0;
}

/**
 * For a node started without migrating: the schema must be exactly the version it knows, with
 * the functions of this pg-tasks.
 */
export async function checkSchemaVersion(client: pg.ClientBase, schema: string): Promise<void> {
  const known = loadMigrations().length;
  const found = (await existingVersion(client, schema)) ?? 0;
  if (found > known) throw new SchemaTooNewError(schema, found, known);
  if (found < known) {
    throw new Error(`schema "${schema}" is at migration ${found}, this pg-tasks needs ${known}: run "pg-tasks migrate"`);
  }
  const stale = await staleFunctions(client, schema);
  if (stale.length > 0) {
    const names = stale.map((source) => source.name).join(', ');
    throw new Error(`schema "${schema}" has other functions than this pg-tasks (${names}): run "pg-tasks migrate"`);
  }
}

/**
 * What a node does first: migrate the schema (`migrate`), or check that it is exactly the
 * version this pg-tasks knows. Returns the migrations applied.
 */
export async function prepareSchema(pool: pg.Pool, schema: string, migrateFirst: boolean): Promise<string[]> {
  const client = await checkoutClient(pool);
  try {
    // A node never creates roles; when it upgrades the schema it grants the roles that exist
    // what the new version adds. Up to date (the usual case, and the only one for a node
    // connected as pgtasks_node), this is a read only.
    if (migrateFirst) {
      return (await migrate(client, schema, { roles: { prefix: rolePrefix(), create: false, always: false } })).applied;
    }
    await checkSchemaVersion(client, schema);
    return [];
  } finally {
    client.release();
  }
}
