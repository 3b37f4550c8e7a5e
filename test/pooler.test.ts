// PgBouncer in front of the node (issue 26, poolers): a real PgBouncer from Debian's package, in
// transaction and in session mode. In transaction mode the pool goes through it and LISTEN and
// the worker lock go to PostgreSQL itself (--session-url); without a session URL the node
// refuses to start, in one line that says which URL to point where.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { TaskClient } from '../src/client/client.js';
import { loadStatements } from '../src/sql/queries/index.js';
import type { TaskNode } from '../src/node/node.js';
import { countEvents } from './helpers/events.js';
import { runCli } from './helpers/cli.js';
import { startNode, stopAllNodes, useTestDatabase } from './helpers/node.js';
import { findPgBouncer, startPgBouncer, type Bouncer } from './helpers/pgbouncer.js';
import { until } from './helpers/wait.js';

const found = findPgBouncer();
const skip = 'missing' in found ? found.missing : false;
if (skip) console.log(skip);

describe('PgBouncer', { skip }, () => {
  const db = useTestDatabase('pooler');
  let transaction: Bouncer | undefined;
  let session: Bouncer | undefined;
  const clients: TaskClient[] = [];
  before(async () => {
    if (!('bin' in found)) return;
    transaction = await startPgBouncer(found.bin, db.url, 'transaction');
    session = await startPgBouncer(found.bin, db.url, 'session');
  });
  after(async () => {
    await stopAllNodes();
    await Promise.all(clients.map((c) => c.close()));
    await transaction?.stop();
    await session?.stop();
  });

  const client = (options: ConstructorParameters<typeof TaskClient>[0]): TaskClient => {
    const c = new TaskClient(options);
    clients.push(c);
    return c;
  };

  /** Adds `n` tasks and waits for each with TaskClient.wait (LISTEN): every one must complete. */
  async function runTasks(c: TaskClient, n: number, command: string[]): Promise<void> {
    const ids: number[] = [];
    for (let i = 0; i < n; i++) ids.push((await c.add({ command })).id);
    const ended = await Promise.all(ids.map((id) => c.wait(id, { timeout: 20_000 })));
    assert.deepEqual(ended.map((t) => t.state_id), ids.map(() => 'CS'), ended.find((t) => t.state_id !== 'CS')?.error ?? '');
  }

  test('transaction mode with --session-url direct: tasks run, wait() and logs -f hear, the lease stays put', async () => {
    const pooled = transaction!.url(db.name);
    const options = { connectionString: pooled, sessionUrl: db.url, leaseSeconds: 2, maxTasks: 8 };
    const holder = await startNode(db, { ...options, workerId: 11, nodeName: 'holder' });
    assert.equal(holder.state, 'active');
    const standby = await startNode(db, { ...options, workerId: 11, nodeName: 'standby' });
    assert.equal(standby.state, 'standby');
    const lost = countEvents(holder, 'lease:lost');
    const gained = countEvents(standby, 'lease:gained');
    const relistened = countEvents(holder, 'listener:connected');
    const { rows: [before] } = await db.query<{ lease_epoch: number }>('SELECT lease_epoch FROM long_task.worker WHERE id = 11');

    const c = client({ connectionString: pooled, sessionUrl: db.url });
    // Several claims of several tasks each, on whichever server connection PgBouncer gives.
    await runTasks(c, 40, ['sh', '-c', 'sleep 0.05']);

    // logs -f: the output followed live, woken by LISTEN on the session URL.
    const task = await c.add({ command: ['sh', '-c', 'echo first; sleep 0.3; echo second'] });
    let text = '';
    const follow = new AbortController();
    const timer = setTimeout(() => follow.abort(), 20_000);
    await c.output(task.id, { follow: true, signal: follow.signal }, (chunk) => (text += chunk.data.toString()));
    clearTimeout(timer);
    assert.equal(text, 'first\nsecond\n');
    // pg-tasks logs -f, the same through the command line.
    const printed = await c.add({ command: ['sh', '-c', 'sleep 0.3; echo third'] });
    const logs = await runCli(pooled, ['logs', '-f', String(printed.id), '--session-url', db.url], { PGTASKS_SESSION_URL: undefined });
    assert.equal(logs.stderr, `pg-tasks: task ${printed.id} ended CS: exit code 0\n`);
    assert.equal(logs.stdout, 'third\n');

    // Renewals keep going with a standby watching the lock: through the pooler, the lock
    // session's lock would be let go and the lease would bounce between the two.
    const renewed = countEvents(holder, 'lease:renewed');
    await until(() => renewed.count >= 4, 'four renewals of the holder');
    renewed.stop();
    const { rows: [afterwards] } = await db.query<{ lease_epoch: number; node_name: string }>('SELECT lease_epoch, node_name FROM long_task.worker WHERE id = 11');
    assert.equal(lost.count, 0, 'the holder lost its lease');
    assert.equal(gained.count, 0, 'the standby took the lease');
    assert.equal(relistened.count, 0, 'the listener reconnected');
    assert.equal(afterwards!.lease_epoch, before!.lease_epoch);
    assert.equal(afterwards!.node_name, 'holder');
    assert.equal(standby.state, 'standby');
    lost.stop();
    gained.stop();
    relistened.stop();
    await Promise.all([holder.shutdown('cancel'), standby.shutdown('cancel')]);
  });

  test('transaction mode: the claim is sent unnamed, so a second client on the same server connection prepares nothing twice', async () => {
    const queries = loadStatements('long_task', { named: false });
    const a = new pg.Client({ connectionString: transaction!.url(db.name) });
    const b = new pg.Client({ connectionString: transaction!.url(db.name) });
    await a.connect();
    await b.connect();
    try {
      const params = { groupId: 0, workerId: 99, freeSlots: 1, epoch: 1, nodeName: 'probe', checkCommands: false };
      // PgBouncer hands b the server connection a just let go: a named claim would be there already.
      await queries.claimTasks(a, params);
      await queries.claimTasks(b, params);
      await queries.claimTasks(a, params);
    } finally {
      await a.end();
      await b.end();
    }
  });

  test('transaction mode without a session URL: the node refuses in one line', async () => {
    const pooled = transaction!.url(db.name);
    const where = `127.0.0.1:${transaction!.port}/${db.name}`;
    await assert.rejects(startNode(db, { connectionString: pooled, workerId: 12 }), (error: Error) => {
      assert.equal(error.message, `${where} is a transaction pooler (two connections shared backend ${/backend (\d+)/.exec(error.message)?.[1]}): LISTEN and the worker lock need a session; point --session-url (PGTASKS_SESSION_URL) at PostgreSQL itself or at a session-mode pool, and keep DATABASE_URL on the pooler`);
      return true;
    });
    // A session URL that is the pooler too.
    await assert.rejects(startNode(db, { connectionString: db.url, sessionUrl: pooled, workerId: 12 }), /^Error: the session URL 127\.0\.0\.1:\d+\/\w+ is a transaction pooler \(.*\): point --session-url \(PGTASKS_SESSION_URL\) at PostgreSQL itself or at a session-mode pool$/);
    const { rows } = await db.query('SELECT 1 FROM long_task.worker WHERE id = 12 AND active');
    assert.equal(rows.length, 0, 'no lease was taken');

    // The command line: one line on stderr, exit 1.
    const cli = await runCli(pooled, ['node', '--worker-id', '12', '--no-migrate', '--log-level', 'fatal'], { PGTASKS_SESSION_URL: undefined });
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, new RegExp(`^pg-tasks: ${where.replace(/\./g, '\\.')} is a transaction pooler \\(.*\\): LISTEN and the worker lock need a session; point --session-url \\(PGTASKS_SESSION_URL\\) at PostgreSQL itself or at a session-mode pool, and keep DATABASE_URL on the pooler\\n$`));
  });

  test('session mode: one URL is enough', async () => {
    const url = session!.url(db.name);
    const node: TaskNode = await startNode(db, { connectionString: url, workerId: 13, maxTasks: 8 });
    assert.equal(node.state, 'active');
    await runTasks(client({ connectionString: url }), 20, ['true']);
    await node.shutdown('cancel');
  });
});
