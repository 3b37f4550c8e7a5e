// The current text of every SQL function and trigger of the schema, one file each in
// src/sql/functions (see src/sql/README.md). The migrator re-applies a file, under its
// advisory lock and after the migrations, whenever the file's text differs from the one
// recorded in {{schema}}.function_source.
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { quoteIdent } from './connection.js';
import { SQL_DIR } from './queries.js';

export interface FunctionSource {
  /** The function's name, and the file's: recover_worker_tasks.sql. */
  name: string;
  sql: string;
  /** sha256 of the file's text, as recorded in function_source. */
  checksum: string;
}

/**
 * Functions a user may replace with their own (docs/failover.md): the migrator applies their
 * file only while the schema has none of them, or the ones it recorded as installed by
 * pg-tasks itself, or ones identical to the file.
 */
export const USER_REPLACEABLE = new Set(['recover_worker_tasks']);

/** The files of src/sql/functions, in the order they are applied: by name. */
export function loadFunctionSources(): FunctionSource[] {
  const dir = path.join(SQL_DIR, 'functions');
  return readdirSync(dir)
    .filter((file) => file.endsWith('.sql'))
    .sort()
    .map((file) => {
      const name = file.replace(/\.sql$/, '');
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`src/sql/functions/${file}: a file is named after its function (lower case, digits, _)`);
      const sql = readFileSync(path.join(dir, file), 'utf8');
      return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    });
}

/** The files whose text is not the one recorded in the schema (all of them before version 17). */
export async function staleFunctions(client: pg.ClientBase, schema: string): Promise<FunctionSource[]> {
  const { rows: table } = await client.query<{ exists: boolean }>('SELECT to_regclass($1) IS NOT NULL AS exists', [
    `${quoteIdent(schema)}.function_source`,
  ]);
  const recorded = new Map<string, string>();
  if (table[0]?.exists) {
    const { rows } = await client.query<{ name: string; checksum: string }>(
      `SELECT name, checksum FROM ${quoteIdent(schema)}.function_source`,
    );
    for (const row of rows) recorded.set(row.name, row.checksum);
  }
  return loadFunctionSources().filter((source) => recorded.get(source.name) !== source.checksum);
}

export interface ApplyFunctionsResult {
  /** The files applied. */
  applied: string[];
  /** User-replaceable functions left as the user wrote them, although their file changed. */
  kept: string[];
}

/**
 * Applies the stale files in one transaction, and records their checksums. The caller holds
 * the migration lock and has brought the schema to the newest migration: the files are the
 * functions of that version. Bodies are not checked at creation (check_function_bodies), so
 * the order of the files does not matter to functions that call each other.
 */
export async function applyFunctions(client: pg.ClientBase, schema: string): Promise<ApplyFunctionsResult> {
  if ((await staleFunctions(client, schema)).length === 0) return { applied: [], kept: [] };
  await client.query('BEGIN');
  try {
    const result = await applyFunctionsInTransaction(client, schema);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  }
}

/**
 * applyFunctions inside the caller's transaction: the migrator applies the files in the same
 * transaction as the last migration, so that no writer ever meets new columns with old
 * triggers (or a trigger a migration dropped, not yet created again).
 */
export async function applyFunctionsInTransaction(client: pg.ClientBase, schema: string): Promise<ApplyFunctionsResult> {
  const result: ApplyFunctionsResult = { applied: [], kept: [] };
  const stale = await staleFunctions(client, schema);
  if (stale.length === 0) return result;
  const ident = quoteIdent(schema);
  await client.query('SET LOCAL check_function_bodies = off');
  for (const source of stale) {
    // A function, not a string: in a replacement string `$$` and `$&` are patterns, and
    // they are legal in a quoted schema name.
    const sql = source.sql.replaceAll('{{schema}}', () => ident);
    let installed: string | null;
    if (USER_REPLACEABLE.has(source.name)) {
      installed = await applyUnlessReplaced(client, schema, source.name, sql);
      if (installed === null) result.kept.push(source.name);
      else result.applied.push(source.name);
    } else {
      await apply(client, source.name, sql);
      installed = await definitionDigest(client, schema, source.name);
      result.applied.push(source.name);
    }
    await client.query(
      `INSERT INTO ${ident}.function_source (name, checksum, definition)
       VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET checksum = $2, definition = $3, applied_at = now()`,
      [source.name, source.checksum, installed],
    );
  }
  return result;
}

async function apply(client: pg.ClientBase, name: string, sql: string): Promise<void> {
  try {
    await client.query(sql);
  } catch (error) {
    throw new Error(`src/sql/functions/${name}.sql failed: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Applies a user-replaceable function's file when the schema has none of it, or has what
 * pg-tasks installed last (the digest recorded), or, with nothing recorded (a schema that
 * reached version 16 through the migrations), has exactly what the file installs. Returns the
 * digest of what is installed now, or null when the user's own was kept.
 */
async function applyUnlessReplaced(client: pg.ClientBase, schema: string, name: string, sql: string): Promise<string | null> {
  const before = await definitionDigest(client, schema, name);
  const { rows } = await client.query<{ definition: string | null }>(
    `SELECT definition FROM ${quoteIdent(schema)}.function_source WHERE name = $1`,
    [name],
  );
  const recorded = rows[0];
  if (before !== null && recorded !== undefined && recorded.definition !== before) return null;
  await client.query('SAVEPOINT user_replaceable');
  await apply(client, name, sql);
  const after = await definitionDigest(client, schema, name);
  if (before !== null && recorded === undefined && after !== before) {
    await client.query('ROLLBACK TO SAVEPOINT user_replaceable');
    return null;
  }
  await client.query('RELEASE SAVEPOINT user_replaceable');
  return after;
}

/**
 * md5 of pg_get_functiondef of every function of that name in the schema (overloads in a fixed
 * order), or null when there is none. Read with only pg_catalog on the search path, so that
 * the text names the schema wherever it names one of its objects, whoever asks.
 */
async function definitionDigest(client: pg.ClientBase, schema: string, name: string): Promise<string | null> {
  await client.query('SAVEPOINT digest');
  await client.query('SET LOCAL search_path = pg_catalog');
  const { rows } = await client.query<{ digest: string | null }>(
    `SELECT md5(string_agg(pg_get_functiondef(p.oid), E'\\n' ORDER BY p.oid::regprocedure::text)) AS digest
       FROM pg_proc p
      WHERE p.pronamespace = $1::regnamespace AND p.proname = $2`,
    [quoteIdent(schema), name],
  );
  await client.query('ROLLBACK TO SAVEPOINT digest');
  await client.query('RELEASE SAVEPOINT digest');
  return rows[0]?.digest ?? null;
}
