// Each test file gets a database of its own, created fresh and migrated, on the server named
// by DATABASE_URL; without one, an embedded PostgreSQL is started for this process.
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { migrate } from '../../src/db/migrate.js';
import { startEmbedded, type EmbeddedServer } from '../../src/embedded/index.js';

let embedded: EmbeddedServer | null = null;

export const TEST_APPLICATION_NAME = 'pg-tasks-test';

async function serverUrl(): Promise<string> {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL;
  if (!embedded) {
    embedded = await startEmbedded({ dataDir: mkdtempSync(path.join(os.tmpdir(), 'pg-tasks-test-')), fast: true });
    // Shared by every database of this file; it stops when this process exits.
    embedded.unref();
  }
  return embedded.url;
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

export interface TestDatabase {
  url: string;
  name: string;
  pool: pg.Pool;
  /** Runs one statement on the test database. */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
  close(): Promise<void>;
}

/**
 * A new database named after the test file. It is left in place when the run ends, for
 * inspection, unless PGTASKS_TEST_KEEP is unset and the file passed: then it is dropped.
 */
export async function createTestDatabase(label: string, options: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const admin = await serverUrl();
  const name = `pgt_${label.replace(/\W/g, '_').toLowerCase()}_${randomBytes(3).toString('hex')}`;
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  await client.query(`CREATE DATABASE ${name} TEMPLATE template0`);
  await client.end();
  const url = withDatabase(admin, name);
  // Named, so that tests which terminate "every connection" can spare the test's own.
  const pool = new pg.Pool({ connectionString: url, max: 4, application_name: TEST_APPLICATION_NAME });
  pool.on('error', () => undefined);
  if (options.migrate ?? true) {
    const c = await pool.connect();
    try {
      await migrate(c, 'long_task');
    } finally {
      c.release();
    }
  }
  return {
    url,
    name,
    pool,
    query: (sql, values) => pool.query(sql, values),
    async close() {
      await pool.end();
      if (!process.env.PGTASKS_TEST_KEEP) {
        const c = new pg.Client({ connectionString: admin });
        await c.connect();
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
        await c.end();
      }
    },
  };
}
