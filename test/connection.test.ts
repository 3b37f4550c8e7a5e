// A pooled connection that dies while checked out between two statements must not crash the
// node: the pool only listens for errors on idle clients.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import pg from 'pg';
import { checkoutClient } from '../src/db/connection.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { until } from './helpers/wait.js';

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase('connection', { migrate: false });
});
after(async () => {
  await db?.close();
});

it('checkoutClient: a backend terminated between statements fails the next one and is discarded, no crash', async () => {
  const pool = new pg.Pool({ connectionString: db.url, max: 2 });
  try {
    const plain = await pool.connect();
    // The hazard itself: a checked-out client has no 'error' listener of the pool's.
    assert.equal(plain.listenerCount('error'), 0);
    plain.release();

    const client = await checkoutClient(pool);
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const ended = new Promise((resolve) => client.once('end', resolve));
    await db.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
    // The termination reaches the client while no query runs: without the guard this is an
    // unhandled 'error' event, and this test process would die here.
    await until(async () => (await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [rows[0]!.pid])).rowCount === 0, 'the backend to end');
    await ended;
    await assert.rejects(client.query('SELECT 1'));
    client.release();
    await until(() => pool.totalCount === 0, 'the broken client to be discarded');
    const { rows: ok } = await pool.query<{ one: number }>('SELECT 1 AS one');
    assert.equal(ok[0]!.one, 1);
  } finally {
    await pool.end();
  }
});
