// src/sql/schema.sql is the schema a fresh migrate makes: regenerated here from this test's own
// database with the pg_dump that matches its server, and compared.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { SCHEMA_FILE, dumpSchema, findPgDump } from '../src/db/schema-dump.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

let db: TestDatabase | undefined;
after(async () => {
  await db?.close();
});

describe('schema snapshot', () => {
  it('src/sql/schema.sql is the pg_dump of a freshly migrated schema', async (t) => {
    db = await createTestDatabase('schema');
    const { rows } = await db.query<{ v: string }>("SELECT current_setting('server_version_num') AS v");
    const major = Math.floor(Number(rows[0]!.v) / 10000);
    const pgDump = findPgDump(major);
    if (!pgDump) {
      // pg_dump refuses a server newer than itself, and the embedded PostgreSQL ships none.
      t.skip(`no pg_dump of version ${major} or newer on this host (set PGTASKS_PG_DUMP to one)`);
      return;
    }
    const expected = dumpSchema(pgDump, db.url).split('\n');
    const actual = readFileSync(SCHEMA_FILE, 'utf8').split('\n');
    const line = expected.findIndex((text, i) => actual[i] !== text);
    assert.ok(
      line < 0 && actual.length === expected.length,
      `src/sql/schema.sql is stale (line ${line + 1}: ${JSON.stringify(actual[line])}, the schema has ${JSON.stringify(expected[line])}): ` +
        'regenerate it with DATABASE_URL=postgres://... npm run schema:dump, and review the diff',
    );
  });
});
