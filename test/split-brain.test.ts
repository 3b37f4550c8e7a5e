// Split brain (issue 26): a standby promoted while its old primary keeps running. The guard
// (src/db/server-guard.ts) refuses a server on an older timeline than one a node has seen;
// with synchronous replication the old primary commits nothing, so its nodes lose their
// leases at their fence; with asynchronous replication both sides work on (measured here and
// reported: docs/production.md). Real servers: a primary and a pg_basebackup -R standby.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import pino from 'pino';
import { clientConfig, createClient } from '../src/db/connection.js';
import { migrate } from '../src/db/migrate.js';
import { ServerGuard, StaleServerError } from '../src/db/server-guard.js';
import { isProcessGroupAlive } from '../src/node/process/process-group.js';
import { loadStatements } from '../src/sql/queries/index.js';
import { on, Pair } from './helpers/pair.js';
import { Proxy } from './helpers/proxy.js';
import { addTask, killTaskGroups, startNode, stopAllNodes, taskPid, tempDir, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';

const queries = loadStatements('long_task');

/** A logger whose lines a test reads. */
function capture(): { logger: pino.Logger; lines: Array<{ msg: string }> } {
  const lines: Array<{ msg: string }> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as { msg: string }) });
  return { logger, lines };
}

function guardOf(logger: pino.Logger): ServerGuard {
  return new ServerGuard(async (db) => {
    const row = (await queries.serverIdentity(db)).rows[0]!;
    return { systemId: row.system_id, timeline: row.timeline };
  }, logger);
}

async function migrateOn(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await migrate(client, 'long_task');
  await client.end();
}

const standingBy = (lines: Array<{ msg: string }>): number => lines.filter((l) => l.msg.startsWith('split-brain guard: standing by')).length;

describe('the guard, against a promoted standby and its old primary running on', () => {
  const pair = new Pair();
  before(async () => {
    await pair.start();
    await migrateOn(pair.url(pair.primary));
    await pair.promote();
  });
  after(async () => {
    await stopAllNodes();
    killTaskGroups();
    await pair.stop();
  });

  it('reads the same system_identifier on both, timeline 1 on the old primary and 2 on the promoted one', async () => {
    const [a] = await pair.sql<{ system_id: string; timeline: number }>('primary', queries.serverIdentity.text);
    const [b] = await pair.sql<{ system_id: string; timeline: number }>('standby', queries.serverIdentity.text);
    assert.equal(a!.system_id, b!.system_id);
    assert.deepEqual([a!.timeline, b!.timeline], [1, 2]);
  });

  it('refuses timeline 1 once it has seen 2, skips it in a host list, cuts its open connection, refuses another cluster', async () => {
    const { logger, lines } = capture();
    const guard = guardOf(logger);
    const old = createClient(clientConfig({ connectionString: pair.url(pair.primary) }, guard));
    old.on('error', () => undefined);
    await old.connect();
    assert.equal(guard.timeline, 1);
    const cut = new Promise((resolve) => old.once('end', resolve));
    const promoted = createClient(clientConfig({ connectionString: pair.url(pair.standby) }, guard));
    await promoted.connect();
    assert.equal(guard.timeline, 2);
    await cut;
    for (let i = 0; i < 2; i++) {
      const stale = createClient(clientConfig({ connectionString: pair.url(pair.primary) }, guard));
      await assert.rejects(stale.connect(), (error: Error) => error instanceof StaleServerError
        && error.message === `split-brain guard: refused ${pair.primary}: it is on timeline 1, older than timeline 2 already seen: a stale old primary`);
    }
    assert.equal(standingBy(lines), 1, 'one line for the whole standby');
    // Both are read-write: libpq would keep the first; the guard skips the stale one.
    const listed = createClient(clientConfig({ connectionString: pair.url(pair.both, '?target_session_attrs=read-write') }, guard));
    await listed.connect();
    assert.equal((await listed.query<{ port: number }>('SELECT inet_server_port() AS port')).rows[0]!.port, pair.standbyPort);
    assert.ok(lines.some((l) => l.msg.includes('carrying on')));
    const other = createClient(clientConfig({ connectionString: process.env.DATABASE_URL! }, guard));
    await assert.rejects(other.connect(), /is not \d+, the cluster this node has worked on: another cluster/);
    await Promise.all([promoted.end(), listed.end()]);
  });

  it('a node that has seen timeline 2 and lands on timeline 1 stands by, loses its lease at its fence, and carries on when timeline 2 answers', async () => {
    const proxy = new Proxy('127.0.0.1', pair.standbyPort);
    await proxy.listen();
    const { logger, lines } = capture();
    const promoted = on(pair.url(pair.standby));
    const old = on(pair.url(pair.primary));
    try {
      const node = await startNode(promoted, { connectionString: pair.url(`127.0.0.1:${proxy.port}`), workerId: 5, leaseSeconds: 4, killGraceMs: 1_000, logger });
      const id = await addTask(promoted, ['sleep', '600']);
      const pid = await taskPid(promoted, id, 'the task to start');
      await until(async () => (await promoted.query('SELECT 1 FROM long_task.worker WHERE id = 5 AND timeline = 2')).rowCount === 1, 'the worker row to keep timeline 2');
      const waiting = await addTask(old, ['true']);
      // A virtual IP moved back to the old primary, which runs on.
      proxy.retarget(pair.primaryPort);
      await until(() => !isProcessGroupAlive(pid), 'the task to be killed at the fence', 30_000);
      assert.equal(node.ready.active, false);
      assert.equal((await old.query('SELECT 1 FROM long_task.worker WHERE id = 5')).rowCount, 0, 'nothing written on the old primary');
      assert.equal((await old.query<{ state_id: string }>('SELECT state_id FROM long_task.task WHERE id = $1', [waiting])).rows[0]!.state_id, 'AW', 'nothing claimed there');
      assert.equal(standingBy(lines), 1, 'one line');
      proxy.retarget(pair.standbyPort);
      await until(() => node.ready.active, 'the node to hold its lease again', 30_000);
      assert.ok(lines.some((l) => l.msg.includes('carrying on')));
      const next = await addTask(promoted, ['true']);
      await waitEnded(promoted, [next], 30_000);
      assert.equal((await promoted.query<{ state_id: string }>('SELECT state_id FROM long_task.task WHERE id = $1', [next])).rows[0]!.state_id, 'CS');
    } finally {
      await stopAllNodes();
      await proxy.close();
      await Promise.all([promoted.close(), old.close()]);
    }
  });
});

// Each run records its side (the node's SIDE) and pid, after checking whether an earlier
// process of the same task still lives (not a zombie): that is a task in two processes.
const RUN = `d=$1; t=$PG_TASKS_TASK_ID
for p in $(cat "$d/run-$t" 2>/dev/null); do
  if [ -e /proc/$p ] && ! grep -q '^State:[[:space:]]*Z' /proc/$p/status 2>/dev/null; then echo "$t $p $$" >> "$d/overlap"; fi
done
echo $$ >> "$d/run-$t"; echo "$SIDE $t $$" >> "$d/starts"
exec sleep 600`;
const SLOT = 'echo "$SIDE $PG_TASKS_TASK_ID" >> "$1/slots"';
const PERIOD_S = 2;
const TASKS = 6;

function lines(file: string): string[][] {
  return existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => l.split(' ')) : [];
}

interface Figures {
  /** Starts of a task while an earlier process of it lived. */
  overlaps: number;
  /** Processes (tasks and slot copies) started by each side's node from just before the promotion on. */
  runsA: number;
  runsB: number;
  /** Processes started on the old side still alive once the new side ran every task. */
  oldAlive: number;
  /** Slots fired after the last one both sides shared, on each side, and on both. */
  slotsA: number;
  slotsB: number;
  slotsTwice: number;
  /** ms from the promotion until every task ran again on the new side. */
  rerunMs: number;
  oldLeaseHeld: boolean;
  /** The highest timeline in the old side's worker row, as each server has it. */
  oldRowTimeline: { A: number | null; B: number | null };
}

/**
 * oldFirst: the old side's node lists the old primary first (it stays there: nothing on it
 * tells of the promotion); else the standby first (a new connection lands on the promoted
 * server, and the guard then cuts those to the old one).
 */
async function splitBrain(synchronous: boolean, oldFirst = true): Promise<Figures> {
  const pair = new Pair({ synchronous });
  const dir = tempDir('split-brain');
  await pair.start();
  const old = on(pair.url(pair.primary));
  const promoted = on(pair.url(pair.standby));
  try {
    await migrateOn(pair.url(pair.primary));
    const common = { leaseSeconds: 4, recoveryDelaySeconds: 2, killGraceMs: 1_000 };
    const oldNode = await startNode(old, { ...common, connectionString: pair.url(oldFirst ? pair.both : `${pair.standby},${pair.primary}`, '?target_session_attrs=read-write'), workerId: 1, nodeName: 'old-side', env: { SIDE: 'A' } });
    const ids: number[] = [];
    for (let i = 0; i < TASKS; i++) ids.push(await addTask(old, ['sh', '-c', RUN, 'run', dir], { recoverPolicy: 'requeue' }));
    await until(() => lines(path.join(dir, 'starts')).length >= TASKS, 'every task to start');
    const schedule = await addTask(old, ['sh', '-c', SLOT, 'slot', dir], { state: 'DR' });
    await old.query("UPDATE long_task.task SET shed_period_id = 'SEC', shed_period_count = $2, shed_clone = true, next_start = now() WHERE id = $1", [schedule, PERIOD_S]);
    await until(() => lines(path.join(dir, 'slots')).length >= 2, 'two slots to fire');
    const nextOn = async (db: typeof old): Promise<number> => +(await db.query<{ next_start: Date }>('SELECT next_start FROM long_task.task WHERE id = $1', [schedule])).rows[0]!.next_start;
    const rowTimeline = async (db: typeof old): Promise<number | null> => (await db.query<{ timeline: number | null }>('SELECT timeline FROM long_task.worker WHERE id = 1')).rows[0]?.timeline ?? null;
    const startsBefore = lines(path.join(dir, 'starts')).length;
    const slotsBefore = lines(path.join(dir, 'slots')).length;
    await pair.promote();
    const promotedAt = performance.now();
    // The next slot as the promoted server has it, before any node works there: every slot
    // before it was fired on the old primary and replicated (read after the promotion, so a
    // slot fired meanwhile is not counted as fired on the old side only).
    const shared = await nextOn(promoted);
    await startNode(promoted, { ...common, connectionString: pair.url(pair.standby), workerId: 2, nodeName: 'new-side', env: { SIDE: 'B' } });
    // Every task runs again on the new side (recovered from the old side's lapsed lease), or,
    // when the old side's node followed the promotion, goes on where it ran.
    const rerun = (): boolean => ids.every((id) => lines(path.join(dir, 'starts')).some(([side, t]) => side === 'B' && Number(t) === id));
    const followed = async (): Promise<boolean> => (await promoted.query('SELECT 1 FROM long_task.worker WHERE id = 1 AND timeline = 2')).rowCount === 1;
    await until(async () => rerun() || (!oldFirst && await followed()), 'the new side to run every task again', 90_000);
    const rerunMs = performance.now() - promotedAt;
    await until(async () => (await nextOn(promoted)) >= shared + 3 * PERIOD_S * 1000, 'the new side to fire three slots', 30_000);
    const starts = lines(path.join(dir, 'starts')).slice(startsBefore);
    const slots = lines(path.join(dir, 'slots')).slice(slotsBefore);
    const slotsA = Math.max(0, Math.round(((await nextOn(old)) - shared) / (PERIOD_S * 1000)));
    const slotsB = Math.max(0, Math.round(((await nextOn(promoted)) - shared) / (PERIOD_S * 1000)));
    const oldPids = lines(path.join(dir, 'starts')).filter(([side]) => side === 'A').map(([, , pid]) => Number(pid));
    const figures: Figures = {
      overlaps: lines(path.join(dir, 'overlap')).length,
      runsA: starts.filter(([side]) => side === 'A').length + slots.filter(([side]) => side === 'A').length,
      runsB: starts.filter(([side]) => side === 'B').length + slots.filter(([side]) => side === 'B').length,
      oldAlive: oldPids.filter((pid) => isProcessGroupAlive(pid)).length,
      slotsA, slotsB, slotsTwice: Math.min(slotsA, slotsB), rerunMs: Math.round(rerunMs), oldLeaseHeld: oldNode.ready.active,
      oldRowTimeline: { A: await rowTimeline(old), B: await rowTimeline(promoted) },
    };
    // Let the old primary's waiting commits end (they commit there, seen by nobody else) so
    // that its node can stop.
    if (synchronous) await pair.sql('primary', "ALTER SYSTEM SET synchronous_standby_names = ''").then(() => pair.sql('primary', 'SELECT pg_reload_conf()'));
    return figures;
  } finally {
    await stopAllNodes();
    killTaskGroups();
    await Promise.all([old.close(), promoted.close()]);
    await pair.stop();
  }
}

describe('promotion while the old primary runs on', () => {
  it('synchronous replication: no task reaches two processes, no slot fires twice', async (t) => {
    const f = await splitBrain(true);
    t.diagnostic(`synchronous: ${JSON.stringify(f)}`);
    assert.equal(f.overlaps, 0, 'no task in two processes at once');
    assert.equal(f.oldAlive, 0, 'the old side killed its processes at its fence');
    assert.equal(f.slotsA, 0, 'the old primary fired no slot');
    assert.equal(f.slotsTwice, 0);
    assert.equal(f.oldLeaseHeld, false);
  });

  it('asynchronous replication: measured (both sides work on; the HA manager must fence)', async (t) => {
    const f = await splitBrain(false);
    t.diagnostic(`asynchronous, old primary listed first: ${JSON.stringify(f)}`);
    // Reported, not asserted: what the guard cannot see (docs/production.md).
    assert.ok(f.runsB >= TASKS);
  });

  it('asynchronous replication, the standby listed first: measured (the old side moves only if its node opens a new connection)', async (t) => {
    const f = await splitBrain(false, false);
    t.diagnostic(`asynchronous, standby listed first: ${JSON.stringify(f)}`);
    assert.ok(f.runsB > 0 || f.oldRowTimeline.B === 2);
  });
});
