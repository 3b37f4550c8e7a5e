// Counting the node's own statements with pg_stat_statements, and the node's memory.
// pg_stat_statements keys its counters by user, database and query, not by connection or
// application_name: so the node connects as a login role of its own, and its statements are
// those of that role (the benchmark's client stays on the DATABASE_URL user).
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { loadQueries } from '../src/db/queries.js';

/** Why pg_stat_statements can't be used at DATABASE_URL; null when it can, or when the embedded server (which preloads it) will be used. */
export async function statementsUnavailable(): Promise<string | null> {
  if (!process.env.DATABASE_URL) return null;
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  try {
    const { rows } = await client.query<{ preload: string; available: boolean; superuser: boolean }>(
      `SELECT current_setting('shared_preload_libraries') AS preload,
              EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements') AS available,
              coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false) AS superuser`,
    );
    const row = rows[0]!;
    const libraries = row.preload.split(',').map((l) => l.trim().replace(/^"|"$/g, ''));
    if (!libraries.includes('pg_stat_statements')) {
      return `pg_stat_statements is not preloaded by the server at DATABASE_URL (shared_preload_libraries = '${row.preload}'), so it counts nothing`;
    }
    if (!row.available) return 'the pg_stat_statements extension is not installed on the server at DATABASE_URL';
    if (!row.superuser) return 'the DATABASE_URL user is not a superuser (needed to create the node\'s role and read its statements)';
    return null;
  } finally {
    await client.end();
  }
}

export interface NodeRole {
  name: string;
  /** The database URL with the role's credentials, for the node. */
  url: string;
  /** Drops the role (after the schema it created is gone) and the extension if this made it. */
  drop(): Promise<void>;
}

/**
 * Creates pg_stat_statements (if missing) and a login role for the node, allowed to create its
 * schema. `name`: another role (a second node's, counted apart).
 */
export async function createNodeRole(client: pg.Client, url: string, name = `pgt_bench_node_${process.pid}`): Promise<NodeRole> {
  const { rows } = await client.query<{ present: boolean; db: string }>(
    `SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements') AS present, current_database() AS db`,
  );
  const createdExtension = !rows[0]!.present;
  if (createdExtension) await client.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  const password = 'pg-tasks';
  await client.query(`CREATE ROLE ${name} LOGIN PASSWORD '${password}'`);
  await client.query(`GRANT CREATE ON DATABASE "${rows[0]!.db.replace(/"/g, '""')}" TO ${name}`);
  const u = new URL(url);
  u.username = name;
  u.password = password;
  return {
    name,
    url: u.toString(),
    async drop() {
      await client.query(`DROP OWNED BY ${name}`);
      await client.query(`DROP ROLE ${name}`);
      if (createdExtension) await client.query('DROP EXTENSION pg_stat_statements');
    },
  };
}

/** Forgets the counters of one role's statements only (a shared server's other counters stay). */
export async function resetStatements(client: pg.Client, role: string): Promise<void> {
  await client.query(`SELECT pg_stat_statements_reset((SELECT oid FROM pg_roles WHERE rolname = $1))`, [role]);
}

export interface StatementStat {
  /** The query's name in src/sql/queries, or its first words. */
  name: string;
  calls: number;
  meanMs: number;
  maxMs: number;
  totalMs: number;
}

/** The counters of one role's statements since the last reset, most called first. */
export async function readStatements(client: pg.Client, role: string, schema: string): Promise<StatementStat[]> {
  const { rows } = await client.query<{ query: string; calls: string; mean: number; max: number; total: number }>(
    `SELECT query, calls, mean_exec_time AS mean, max_exec_time AS max, total_exec_time AS total
       FROM pg_stat_statements
      WHERE userid = (SELECT oid FROM pg_roles WHERE rolname = $1) AND calls > 0
      ORDER BY calls DESC, query`,
    [role],
  );
  const known = [...loadQueries(schema)].map(([name, query]): [string, string] => [name, shape(query.text)]);
  return rows.map((r) => ({
    name: nameOf(known, r.query) ?? shorten(r.query),
    calls: Number(r.calls),
    meanMs: r.mean,
    maxMs: r.max,
    totalMs: r.total,
  }));
}

const squash = (sql: string): string => sql.replace(/--[^\n]*/g, '').replace(/\/\*.*?\*\//gs, '').replace(/\s+/g, ' ').trim();
/**
 * The shape of a statement: pg_stat_statements shows the text with its constants (numbers,
 * strings, true/false, a NULL assigned, the field of extract) replaced by $n, and from
 * PostgreSQL 18 a list of them squashed to one; compare without any of those.
 */
const shape = (sql: string): string =>
  squash(sql)
    .replace(/'(?:[^']|'')*'|\$\d+|\b\d+\b|\b(?:true|false)\b/gi, '?')
    .replace(/= NULL\b/gi, '= ?')
    .replace(/extract\(\w+ FROM/gi, 'extract(? FROM')
    .replace(/\?(?:\s*,\s*\?)+/g, '?')
    .replace(/\s*([(),])\s*/g, '$1');

/** The name of the known statement of that shape, else of the one sharing its longest beginning (60 characters at least). */
function nameOf(known: Array<[string, string]>, sql: string): string | undefined {
  const target = shape(sql);
  let best: string | undefined;
  let bestLength = 59;
  for (const [name, candidate] of known) {
    if (candidate === target) return name;
    let i = 0;
    while (i < candidate.length && candidate[i] === target[i]) i++;
    if (i > bestLength) [best, bestLength] = [name, i];
  }
  return best;
}

const shorten = (sql: string): string => {
  const s = squash(sql);
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
};

/** Resident set size of a process in MB, from /proc/<pid>/status (VmRSS). */
export function rssMb(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for process ${pid}`);
  return Number(match[1]) / 1024;
}

/** Throws unless pid is the node itself (node … src/cli/main.ts … node), not a wrapper such as a shell or npx. */
export function assertNodeProcess(pid: number): void {
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  const exe = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  if (exe !== 'node' || !argv.some((a) => a.endsWith('src/cli/main.ts')) || !argv.includes('node')) {
    throw new Error(`process ${pid} is not the pg-tasks node: ${exe} ${argv.join(' ')}`);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
