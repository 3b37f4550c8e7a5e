// A node and its standby stopped together (both got SIGTERM): the standby's take of the lease
// may be on its way when its stop begins. Seen once: the standby logged 'node stopped', then
// 17 s of 'lease renewal failed … Cannot use a pool after calling end on the pool', and left
// the worker row active. Nothing may renew or take a lease once the node's pool is ended, and
// a stopped node never leaves its worker row active.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { loadStatements } from '../src/sql/queries/index.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import os from 'node:os';
import { TaskNode } from '../src/node/node.js';
import { NODE_DEFAULTS } from '../src/node/options.js';
import { startNode, stopAllNodes, testLogger } from './helpers/node.js';
import { until } from './helpers/wait.js';

let db: TestDatabase;

before(async () => {
  db = await createTestDatabase('shutdown');
});
after(async () => {
  await stopAllNodes();
  await db?.close();
});

describe('a node and its standby stopped together', () => {
  it('leave the worker inactive, and nothing touches an ended pool', async () => {
    const W = 7;
    const LEASE = 2;
    const queries = loadStatements('long_task');
    const holder = await startNode(db, { workerId: W, leaseSeconds: LEASE, nodeName: 'holder' });
    assert.equal(holder.state, 'active');
    const standby = await startNode(db, { workerId: W, leaseSeconds: LEASE, nodeName: 'standby' });
    assert.equal(standby.state, 'standby');

    // Every statement sent on a pool after its end() (pg refuses it, and the node logs it).
    const afterEnd: string[] = [];
    const poolQuery = Reflect.get(pg.Pool.prototype, 'query') as (...a: unknown[]) => unknown;
    const clientQuery = Reflect.get(pg.Client.prototype, 'query') as (...a: unknown[]) => unknown;
    const standbyStop: { stopped: Promise<void> | null } = { stopped: null };
    pg.Pool.prototype.query = function (this: pg.Pool & { ending?: boolean }, ...args: unknown[]) {
      if (this.ending) afterEnd.push(String(typeof args[0] === 'string' ? args[0] : (args[0] as { text?: string }).text).slice(0, 80));
      return poolQuery.apply(this, args);
    } as typeof pg.Pool.prototype.query;
    // The standby's take, sent once the holder let the worker go: its SIGTERM arrives now.
    pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
      if (args[0] === queries.takeLease.text && standbyStop.stopped === null) standbyStop.stopped = standby.shutdown();
      return clientQuery.apply(this, args);
    } as typeof pg.Client.prototype.query;
    try {
      const stoppedAt = (await db.query<{ now: Date }>('SELECT now()')).rows[0]!.now;
      await holder.shutdown();
      await until(() => standbyStop.stopped !== null, "the standby's take of the lease");
      await standbyStop.stopped;
      assert.equal(holder.state, 'stopped');
      assert.equal(standby.state, 'stopped');
      const { rows } = await db.query<{ active: boolean }>('SELECT active FROM long_task.worker WHERE id = $1', [W]);
      assert.equal(rows[0]!.active, false, 'the worker row is left active');
      // A term held on would be renewed every half lease: give it a whole lease of database
      // time to try.
      await until(
        async () => (await db.query<{ past: boolean }>("SELECT now() > $1::timestamptz + $2 * interval '1 s' AS past", [stoppedAt, LEASE])).rows[0]!.past,
        'a lease to pass',
      );
      assert.deepEqual(afterEnd, [], 'statements sent on an ended pool');
    } finally {
      Reflect.set(pg.Pool.prototype, 'query', poolQuery);
      Reflect.set(pg.Client.prototype, 'query', clientQuery);
    }
  });

  it('a node shut down while its parts start takes no lease, and leaves every part stopped', async () => {
    const W = 8;
    const node = new TaskNode({
      ...NODE_DEFAULTS, connectionString: db.url, schema: 'long_task', workerId: W, nodeName: 'starting', rootDir: os.tmpdir(), logger: testLogger, migrate: false,
      spawner: 'node',
    });
    // SIGTERM arrives while the parts start: the listener has connected, the lease keeper is still to come.
    let stopped: Promise<void> | null = null;
    node.events.on('listener:connected', () => {
      stopped = node.shutdown();
    });
    await node.start();
    await until(() => stopped !== null, 'the listener to connect');
    await node.exited;
    assert.equal(node.state, 'stopped');
    assert.equal(node.ready.listening, false);
    const { rows } = await db.query('SELECT 1 FROM long_task.worker WHERE id = $1 AND active', [W]);
    assert.equal(rows.length, 0, 'the worker row is active');
  });
});
