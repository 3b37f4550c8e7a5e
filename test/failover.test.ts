// Failover in a second (issue 14): a standby takes the next term as soon as the holder's
// session ends, never recovers the old term's tasks before that term's lease + delay, and one
// task never has two live processes: a holder cut off by a TCP proxy, a holder whose lock
// session alone is terminated, a standby woken while the holder is alive. And recovery
// without a standby at lease + delay. Real PostgreSQL, real node processes, real signals;
// time bounds are liveness bounds.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { countEvents } from './helpers/events.js';
import { addTask, getTask, getWorker, killTaskGroups, markClaimed, startNode, stopAllNodes, taskPid, tempDir, type WorkerRow, waitEnded } from './helpers/node.js';
import { proxyFor } from './helpers/proxy.js';
import { until } from './helpers/wait.js';
import { children, killChild, spawnNode, withOutput } from './helpers/child-node.js';
import { isProcessGroupAlive } from '../src/node/process/process-group.js';

let db: TestDatabase;

before(async () => {
  db = await createTestDatabase('failover');
});
after(async () => {
  await stopAllNodes();
  for (const child of children) await killChild(child);
  killTaskGroups();
  await db?.close();
});



/** When a worker's old term becomes recoverable: its lease's end + the recovery delay of every node here (2 s). */
function oldDue(w: WorkerRow): Date {
  return new Date(+w.old_until! + 2_000);
}

/**
 * A task that says if it ever ran beside another process of itself: each process holds an
 * flock on the task's file while it runs, and writes "overlap" to it if it cannot take it.
 * It ignores SIGTERM, so only a SIGKILL ends it, by the fence whatever --kill-grace says.
 * Re-queued when its worker fails, so that it runs again on the new term.
 */
async function addWitness(group: number, dir: string): Promise<number> {
  const script = `trap '' TERM; exec 9>>"${dir}/lock"; flock -n 9 || echo overlap >> "${dir}/log"; echo run >> "${dir}/log"; exec sleep 300`;
  const { rows } = await db.query<{ id: number }>(
    "INSERT INTO long_task.task (command, group_id, state_id, recover_policy) VALUES ($1, $2, 'AW', 'requeue') RETURNING id",
    [['sh', '-c', script], group],
  );
  return Number(rows[0]!.id);
}

function runs(dir: string): string[] {
  return existsSync(`${dir}/log`) ? readFileSync(`${dir}/log`, 'utf8').trim().split('\n') : [];
}

describe('a holder cut off by a TCP proxy', () => {
  it('its standby takes the next term at once and runs new work; the old task runs again only after its lease + delay, its first process dead by then', async (t) => {
    const W = 10;
    const G = 10;
    const dir = tempDir('failover-cut');
    const { proxy, url } = await proxyFor(db.url);
    const { child, output } = spawnNode(url, ['--worker-id', String(W), '--group', String(G), '--lease', '4s', '--name', 'cut']);
    try {
      await withOutput(t, output, async () => {
        await until(async () => (await getWorker(db, W))?.lock_pid != null, 'the holder to take its lease and its lock', 30_000);
        const standby = await startNode(db, { workerId: W, groupId: G, leaseSeconds: 4, nodeName: 'standby' });
        assert.equal(standby.state, 'standby');
        const task = await addWitness(G, dir);
        const pid1 = await taskPid(db, task, 'the holder to start the task');
        const before = (await getWorker(db, W))!;

        proxy.pause();
        const cutAt = performance.now();
        await until(() => standby.state === 'active', 'the standby to take over', 10_000);
        const tookMs = performance.now() - cutAt;
        const taken = (await getWorker(db, W))!;
        assert.equal(taken.node_name, 'standby');
        // At once, in database time: before the lease (4 s) + delay (2 s) that the old way waited.
        assert.ok(taken.lease_taken < oldDue(taken), `take-over ${Math.round(tookMs)} ms after the cut, at ${taken.lease_taken.toISOString()}, once the old term was recoverable (${oldDue(taken).toISOString()})`);
        assert.ok(taken.lease_epoch > before.lease_epoch);
        assert.equal(taken.old_epoch, before.lease_epoch, 'the cut-off term waits for its recovery');
        // New work runs at once under the new term, while the old task is still the old term's.
        const fresh = await addTask(db, ['true'], { group: G });
        await waitEnded(db, [fresh]);
        assert.equal((await getTask(db, fresh)).node_name, 'standby');
        assert.equal((await getTask(db, task)).pid, pid1);
        assert.equal((await getTask(db, task)).state_id, 'AE');

        // Recovered (re-queued) at its lease + delay, then run again by the standby.
        const pid2 = await taskPid(db, task, 'the old task to run again on the new term', { other: pid1 });
        const rerunAt = (await getTask(db, task)).started as Date;
        assert.ok(+rerunAt >= +oldDue(taken), `ran again at ${rerunAt.toISOString()}, before its lease + delay ${oldDue(taken).toISOString()}`);
        t.diagnostic(`take-over ${Math.round(tookMs)} ms after the cut; the old task ran again ${+rerunAt - +oldDue(taken)} ms after its lease + delay`);
        assert.equal(isProcessGroupAlive(pid1), false, 'the cut-off holder\'s process still lives');
        assert.equal(isProcessGroupAlive(pid2), true);
        assert.deepEqual(runs(dir), ['run', 'run'], 'two live processes of one task');
        proxy.resume();
      });
    } finally {
      await killChild(child);
      await stopAllNodes();
      await proxy.close();
    }
  });
});

describe('a holder whose lock session alone ends', () => {
  it('is taken over, hears of it and ends its process by its fence at the latest (SIGTERM ignored, a kill grace of 20 s); the task runs again only after its lease + delay', async (t) => {
    const W = 20;
    const G = 20;
    const dir = tempDir('failover-lock');
    // A kill grace longer than the time left to the fence: the fence wins.
    const { child, output } = spawnNode(db.url, ['--worker-id', String(W), '--group', String(G), '--lease', '4s', '--kill-grace', '20s', '--name', 'holder']);
    try {
      await withOutput(t, output, async () => {
        await until(async () => (await getWorker(db, W))?.lock_pid != null, 'the holder to take its lease and its lock', 30_000);
        const standby = await startNode(db, { workerId: W, groupId: G, leaseSeconds: 4, nodeName: 'standby' });
        const task = await addWitness(G, dir);
        const pid1 = await taskPid(db, task, 'the holder to start the task');
        const { lock_pid: lockPid } = (await getWorker(db, W))!;

        // The holder lives and renews on its other connections; only its lock session ends.
        await db.query('SELECT pg_terminate_backend($1)', [lockPid]);
        const endedAt = performance.now();
        await until(() => standby.state === 'active', 'the standby to take over', 10_000);
        const taken = (await getWorker(db, W))!;
        assert.equal(taken.node_name, 'standby');
        // The take-over is notified: the holder ends its process at once, not at its fence.
        await until(() => !isProcessGroupAlive(pid1), 'the holder to kill its process', 10_000);
        const killedMs = performance.now() - endedAt;
        assert.equal((await getTask(db, task)).state_id, 'AE', 'recovered before its lease + delay');
        const pid2 = await taskPid(db, task, 'the task to run again on the new term', { other: pid1 });
        const rerunAt = (await getTask(db, task)).started as Date;
        assert.ok(+rerunAt >= +oldDue(taken), `ran again at ${rerunAt.toISOString()}, before ${oldDue(taken).toISOString()}`);
        t.diagnostic(`the holder killed its process ${Math.round(killedMs)} ms after its lock session ended; the task ran again ${+rerunAt - +oldDue(taken)} ms after its lease + delay`);
        assert.equal(isProcessGroupAlive(pid2), true);
        assert.deepEqual(runs(dir), ['run', 'run'], 'two live processes of one task');
        // The old holder stands by: it waits for the new holder's lock.
        await until(async () => (await getWorker(db, W))?.lock_pid != null, 'the new holder to take the lock', 10_000);
        assert.equal(child.exitCode, null, 'the old holder stands by, it does not exit');
      });
    } finally {
      await killChild(child);
      await stopAllNodes();
    }
  });
});

describe('the lock is a wake-up, not a permission', () => {
  it('a standby does not take over a holder that runs its term without the lock, and does not spin on it', async () => {
    const W = 30;
    // A holder whose lease runs for an hour and which holds no lock (lock_pid null): as a node
    // that took its term while a paused node still held the lock.
    await db.query("INSERT INTO long_task.worker (id, group_id, active, locked_until, lease_epoch, node_name) VALUES ($1, 30, true, now() + interval '1 hour', 3, 'lockless')", [W]);
    const standby = await startNode(db, { workerId: W, groupId: 30, nodeName: 'standby' });
    assert.equal(standby.state, 'standby');
    // Nobody holds the lock, so the standby's wait is granted at once: one look, then it
    // waits for a notification or half a lease (10 s), not a loop.
    const seen = new Set<number>();
    const until3s = performance.now() + 3_000;
    while (performance.now() < until3s) {
      const w = (await getWorker(db, W))!;
      assert.equal(w.node_name, 'lockless');
      assert.equal(w.lease_epoch, 3);
      if (w.standby_seen) seen.add(+w.standby_seen);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(standby.state, 'standby');
    assert.ok(seen.size <= 3, `the standby looked at the worker ${seen.size} times in 3 s`);
    await standby.shutdown();
  });

  it('a session holding the lock as the holder (lock_pid) keeps the standby waiting; when it ends, the standby takes over at once', async () => {
    const W = 31;
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    const { rows } = await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    await holder.query('SELECT pg_advisory_lock(long_task.worker_lock_class(), $1)', [W]);
    await db.query(
      "INSERT INTO long_task.worker (id, group_id, active, locked_until, lease_epoch, node_name, lock_pid) VALUES ($1, 31, true, now() + interval '1 hour', 7, 'holder', $2)",
      [W, rows[0]!.pid],
    );
    const standby = await startNode(db, { workerId: W, groupId: 31, nodeName: 'standby' });
    // The standby has looked, found the worker held, and now waits on the holder's lock.
    await until(async () => (await db.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted", [W])).rowCount === 1,
      "the standby to wait for the holder's lock", 10_000);
    assert.equal(standby.state, 'standby');
    await holder.end();
    // At once: the holder's lease runs for an hour, so only the end of its lock explains a take-over.
    await until(() => standby.state === 'active', 'the standby to take over', 30_000);
    const w = (await getWorker(db, W))!;
    assert.equal(w.node_name, 'standby');
    assert.equal(w.old_epoch, 7, 'the holder\'s term waits for its lease + delay: an hour here');
    await standby.shutdown();
    // A clean stop releases the lease; an old term due in an hour is left to the other nodes.
    assert.equal((await getWorker(db, W))!.old_epoch, 7);
  });

  it('a node that took over by lock and is stopped at once recovers the old term before it lets the worker go', async () => {
    const W = 32;
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    const { rows } = await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    await holder.query('SELECT pg_advisory_lock(long_task.worker_lock_class(), $1)', [W]);
    await db.query(
      "INSERT INTO long_task.worker (id, group_id, active, locked_until, lease_epoch, node_name, lock_pid) VALUES ($1, 32, true, now() + interval '3 s', 7, 'holder', $2)",
      [W, rows[0]!.pid],
    );
    // What the holder's claim did.
    const task = await addTask(db, ['true'], { group: 32, state: 'DR' });
    await db.query("UPDATE long_task.task SET state_id = 'AW' WHERE id = $1", [task]);
    await markClaimed(db, task, W, 7);
    const standby = await startNode(db, { workerId: W, groupId: 32, nodeName: 'standby' });
    await holder.end();
    await until(() => standby.state === 'active', 'the standby to take over', 5_000);
    assert.equal((await getWorker(db, W))!.old_epoch, 7);
    assert.equal((await getTask(db, task)).state_id, 'AE');
    await standby.shutdown();
    // No other node runs: it waited for the old term's lease + delay and recovered it.
    assert.equal((await getWorker(db, W))!.old_epoch, null);
    assert.equal((await getTask(db, task)).state_id, 'CF');
    assert.equal((await getTask(db, task)).end_reason, 'worker_failed');
  });
});

describe('recovery without a standby', () => {
  it('another node recovers a SIGKILLed worker\'s task at its lease + delay, not at its own next renewal', async (t) => {
    const W = 40;
    const G = 40;
    // The victim's lease is 12 s; the recoverer's, 120 s: its first renewal comes 60 s after it
    // started, after the task is due, so a recovery before it is the recovery timer's.
    const { child, output } = spawnNode(db.url, ['--worker-id', String(W), '--group', String(G), '--lease', '12s', '--name', 'victim']);
    try {
      await withOutput(t, output, async () => {
        await until(async () => (await getWorker(db, W))?.lock_pid != null, 'the victim to take its lease', 30_000);
        const recoverer = await startNode(db, { workerId: 41, groupId: G + 1, leaseSeconds: 120, nodeName: 'recoverer' });
        const renewals = countEvents(recoverer, 'lease:renewed');
        const task = await addTask(db, ['sleep', '300'], { group: G });
        await taskPid(db, task, 'the victim to start the task');
        child.kill('SIGKILL');
        await until(async () => (await getTask(db, task)).state_id === 'CF', 'the task to be recovered', 30_000);
        // Read after the recovery, which ended the victim's term (a renewal of it still in
        // flight at the kill can no longer land) and left its locked_until as it was.
        const { rows } = await db.query<{ due: Date }>("SELECT locked_until + interval '2 s' AS due FROM long_task.worker WHERE id = $1", [W]);
        const due = rows[0]!.due;
        const finished = (await getTask(db, task)).finished as Date;
        const lagMs = +finished - +due;
        t.diagnostic(`recovered ${lagMs} ms after its lease + delay (lease 12 s)`);
        assert.ok(lagMs >= 0, `recovered ${-lagMs} ms before its lease + delay`);
        assert.equal(renewals.count, 0, 'recovered before the recoverer renewed: by its timer');
        renewals.stop();
      });
    } finally {
      await killChild(child);
      await stopAllNodes();
    }
  });
});
