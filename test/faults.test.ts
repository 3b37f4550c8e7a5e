// Faults: a busy cluster runs every task exactly once; a node cut off from the database fences
// its processes before its lease ends; a frozen node (SIGSTOP) that wakes up after a take-over
// writes nothing over its successor; every database connection killed at once changes nothing
// the tasks can see. Real PostgreSQL, real node processes; bounds are liveness bounds only.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { TEST_APPLICATION_NAME, createTestDatabase, withDatabase, type TestDatabase } from './helpers/db.js';
import { countEvents, nextEvent } from './helpers/events.js';
import { addTask, getTask, getWorker, killTaskGroups, startNode, stopAllNodes, taskPid, taskPids, tempDir, waitEnded } from './helpers/node.js';
import { Proxy, proxyFor } from './helpers/proxy.js';
import { until } from './helpers/wait.js';
import { children, killChild, spawnNode, withOutput } from './helpers/child-node.js';
import { isProcessGroupAlive } from '../src/node/process/process-group.js';

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase('faults');
});
after(async () => {
  await stopAllNodes();
  for (const child of children) await killChild(child);
  // Whatever task process a failed test left behind, by its process group.
  killTaskGroups();
  await db?.close();
});


/**
 * Every backend of the test database but the test's own: its pooled connections are spared, or
 * its next query could pick one that is being terminated and fail the test, not the node.
 */
const TERMINATE_NODE_BACKENDS = `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
  WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name <> '${TEST_APPLICATION_NAME}'`;




describe('a cluster under load', () => {
  it('runs every task exactly once across 4 nodes', async (t) => {
    // 10 000 tasks, as the spec asks (about 25 s here); PGTASKS_TEST_CLUSTER_TASKS=2000 for a quicker run.
    const n = Number(process.env.PGTASKS_TEST_CLUSTER_TASKS ?? 10_000);
    const group = 10;
    const log = `${tempDir('cluster')}/log`;
    const nodes = await Promise.all(
      // The four nodes share this process's event loop, and with child_process each spawn
      // blocks it. With a 4 s lease, 56 of 10 000 tasks ended CF in one CI run on a machine
      // slow to spawn (47 tasks/s), most likely leases lapsing under the load; the diagnostic
      // below says why, should it happen again. This test is about exactly once, not failover.
      [1, 2, 3, 4].map((i) => startNode(db, { workerId: 10 + i, groupId: group, maxTasks: 8, leaseSeconds: 10, nodeName: `cluster-${i}` })),
    );
    for (const node of nodes) assert.equal(node.state, 'active');
    const started = performance.now();
    const { rows } = await db.query<{ id: number }>(
      `INSERT INTO long_task.task (command, group_id, state_id)
       SELECT ARRAY['sh', '-c', 'echo $PG_TASKS_TASK_ID >> ${log}'], $1, 'AW' FROM generate_series(1, $2)
       RETURNING id`,
      [group, n],
    );
    const ids = rows.map((r) => Number(r.id));
    await waitEnded(db, ids, 300_000);
    const seconds = (performance.now() - started) / 1000;
    t.diagnostic(`${n} tasks on 4 nodes × 8 slots in ${seconds.toFixed(1)} s: ${Math.round(n / seconds)} tasks/s`);

    const { rows: states } = await db.query<{ state_id: string; n: number }>(
      'SELECT state_id, count(*)::int AS n FROM long_task.task WHERE id = ANY($1) GROUP BY state_id',
      [ids],
    );
    if (states.length !== 1) {
      const { rows: why } = await db.query<{ state_id: string; end_reason: string | null; error: string | null; n: number }>(
        "SELECT state_id, end_reason, left(error, 120) AS error, count(*)::int AS n FROM long_task.task WHERE id = ANY($1) AND state_id <> 'CS' GROUP BY 1, 2, 3",
        [ids],
      );
      t.diagnostic(`not CS: ${JSON.stringify(why)}`);
    }
    assert.deepEqual(states, [{ state_id: 'CS', n }]);
    const { rows: perNode } = await db.query<{ worker_id: number; n: number }>(
      'SELECT worker_id, count(*)::int AS n FROM long_task.task WHERE id = ANY($1) GROUP BY worker_id ORDER BY worker_id',
      [ids],
    );
    t.diagnostic(`per worker: ${perNode.map((r) => `${r.worker_id}=${r.n}`).join(' ')}`);

    const runs = new Map<number, number>();
    for (const line of readFileSync(log, 'utf8').split('\n')) {
      if (line) runs.set(Number(line), (runs.get(Number(line)) ?? 0) + 1);
    }
    const twice = [...runs].filter(([, c]) => c !== 1).map(([id]) => id);
    assert.deepEqual(twice, [], 'tasks run more than once');
    assert.deepEqual(ids.filter((id) => !runs.has(id)), [], 'tasks never run');
    assert.equal(runs.size, n);
    await stopAllNodes();
  });
});

describe('a node cut off from the database', () => {
  it('kills its processes before its lease ends; the task is recovered and runs once at a time; the node comes back', async (t) => {
    const W = 20;
    const G = 20;
    const target = new URL(db.url);
    const proxy = new Proxy(target.hostname, Number(target.port || 5432));
    await proxy.listen();
    const proxied = new URL(db.url);
    proxied.hostname = '127.0.0.1';
    proxied.port = String(proxy.port);
    // Recovers failed workers of any group; does not run group G's tasks.
    await startNode(db, { workerId: 21, groupId: G + 1, leaseSeconds: 2, nodeName: 'recoverer' });
    const { child, output } = spawnNode(withDatabase(proxied.toString(), db.name), ['--worker-id', String(W), '--group', String(G), '--lease', '4s', '--name', 'cut-node']);
    try {
      await withOutput(t, output, async () => {
        await until(async () => (await getWorker(db, W))?.active, 'the child node to take its lease', 30_000);
        const task = await addTask(db, ['sleep', '300'], { group: G, worker: W, recoverPolicy: 'requeue' });
        const pid1 = await taskPid(db, task, 'the child node to start the task');
        const before = (await getWorker(db, W))!;

        proxy.pause();
        const pausedAt = performance.now();
        await until(() => !isProcessGroupAlive(pid1), 'the cut-off node to kill its task', 20_000);
        const { rows: [killed] } = await db.query<{ at: Date }>('SELECT clock_timestamp() AS at');
        const killedMs = performance.now() - pausedAt;

        // The recoverer finds the worker failed (lease lapsed + 2 s) and re-queues the task.
        await until(async () => (await getTask(db, task)).state_id === 'AW', 'the task to be recovered and re-queued', 30_000);
        t.diagnostic(`re-queued ${Math.round(performance.now() - pausedAt)} ms after the cut`);
        const recovered = (await getWorker(db, W))!;
        // The lease's end, read after the recovery ended its term: a renewal in flight at the
        // cut may have committed, but none can land after this (and the recovery leaves it as is).
        const leftMs = +recovered.locked_until - +killed!.at;
        t.diagnostic(`task killed ${Math.round(killedMs)} ms after the cut, ${leftMs} ms before the lease ended (lease 4 s, margin 1 s)`);
        assert.ok(leftMs > 0, `the task was killed ${-leftMs} ms after the lease ended`);
        assert.equal(recovered.active, false);
        assert.ok(recovered.lease_epoch > before.lease_epoch, 'the recovery starts a new term');
        assert.equal((await getTask(db, task)).pid, null);

        proxy.resume();
        const resumedAt = performance.now();
        // The node takes its worker again, and runs the re-queued task: its first process is dead.
        await until(async () => {
          const w = (await getWorker(db, W))!;
          return w.active && w.node_name === 'cut-node' && w.lease_epoch > recovered.lease_epoch;
        }, 'the child node to take its lease again', 40_000);
        t.diagnostic(`lease taken again ${Math.round(performance.now() - resumedAt)} ms after the database came back`);
        let pid2 = 0;
        await until(async () => {
          assert.equal(isProcessGroupAlive(pid1), false, 'the first process came back to life?');
          pid2 = Number((await getTask(db, task)).pid ?? 0);
          return pid2;
        }, 'the re-queued task to run again', 30_000);
        taskPids.add(pid2);
        assert.notEqual(pid2, pid1);
        const rerun = await getTask(db, task);
        assert.equal(rerun.state_id, 'AE');
        assert.equal(Number(rerun.lease_epoch), (await getWorker(db, W))!.lease_epoch);

        const fresh = await addTask(db, ['true'], { group: G });
        await waitEnded(db, [fresh]);
        assert.equal((await getTask(db, fresh)).state_id, 'CS');
        assert.equal((await getTask(db, fresh)).worker_id, W);

        await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1", [task]);
        await waitEnded(db, [task]);
        assert.equal((await getTask(db, task)).state_id, 'CC');
        await until(() => !isProcessGroupAlive(pid2), 'the cancelled task to die', 10_000);
      });
    } finally {
      await killChild(child);
      await stopAllNodes();
      await proxy.close();
    }
  });
});

describe('a frozen node', () => {
  it('its reaper kills its process at its fence, before the take-over; woken, it writes nothing over its successor', async (t) => {
    const W = 30;
    const G = 30;
    const { child, output } = spawnNode(db.url, ['--worker-id', String(W), '--group', String(G), '--lease', '3s', '--name', 'A']);
    try {
      await withOutput(t, output, async () => {
        await until(async () => (await getWorker(db, W))?.node_name === 'A', 'node A to take its lease', 30_000);
        const b = await startNode(db, { workerId: W, groupId: G, leaseSeconds: 3, nodeName: 'B' });
        assert.equal(b.state, 'standby');
        const task = await addTask(db, ['sleep', '300'], { group: G, recoverPolicy: 'requeue' });
        const pid1 = await taskPid(db, task, 'node A to start the task');
        assert.equal((await getTask(db, task)).node_name, 'A');

        process.kill(child.pid!, 'SIGSTOP');
        const stoppedAt = performance.now();
        // A stopped node cannot keep its fence; its reaper (a process of its own) does.
        await until(() => !isProcessGroupAlive(pid1), 'the reaper to kill the frozen node\'s process', 10_000);
        const fencedMs = performance.now() - stoppedAt;
        // The session of a stopped node stays open: no lock wake-up, the lease must lapse.
        await until(() => b.state === 'active', 'B to take over', 30_000);
        const tookMs = performance.now() - stoppedAt;
        t.diagnostic(`A's process killed by its reaper ${Math.round(fencedMs)} ms after SIGSTOP; B took over ${Math.round(tookMs)} ms after it (lease 3 s, recovery delay 2 s)`);
        assert.ok(fencedMs < tookMs, 'the frozen node\'s process outlived the take-over');
        const pid2 = await until(async () => {
          const row = await getTask(db, task);
          return row.node_name === 'B' && row.pid ? Number(row.pid) : 0;
        }, 'B to run the re-queued task', 30_000);
        taskPids.add(pid2);
        assert.notEqual(pid2, pid1);
        const mine = (await getWorker(db, W))!;
        assert.equal(mine.node_name, 'B');
        assert.equal(isProcessGroupAlive(pid1), false, 'two live processes of one task');

        const { rows: [woken] } = await db.query<{ at: Date }>('SELECT clock_timestamp() AS at');
        process.kill(child.pid!, 'SIGCONT');
        // Until A, awake, has looked at the worker as its standby (after its fence and its
        // failed renewal) and B has renewed twice since (a waiting standby looks again only on
        // a wake or once a minute, issue 28): nothing of B's changes, and only B's process lives.
        let looked = false;
        let renewalsSinceLook: ReturnType<typeof countEvents> | null = null;
        await until(async () => {
          const row = await getTask(db, task);
          assert.equal(row.state_id, 'AE');
          assert.equal(row.node_name, 'B');
          assert.equal(Number(row.lease_epoch), mine.lease_epoch);
          assert.equal(Number(row.pid), pid2);
          const w = (await getWorker(db, W))!;
          assert.equal(w.node_name, 'B');
          assert.equal(w.lease_epoch, mine.lease_epoch);
          assert.equal(w.active, true);
          assert.equal(isProcessGroupAlive(pid1), false);
          assert.equal(isProcessGroupAlive(pid2), true);
          const { rows: [look] } = await db.query<{ seen: Date | null }>(
            "SELECT standby_seen AS seen FROM long_task.worker WHERE id = $1 AND standby_node = 'A' AND standby_seen > $2", [W, woken!.at]);
          if (look?.seen && !looked) {
            looked = true;
            renewalsSinceLook = countEvents(b, 'lease:renewed');
          }
          return (renewalsSinceLook?.count ?? 0) >= 2;
        }, 'A, woken, to look at the worker as its standby, then B to renew twice', 60_000);
        renewalsSinceLook!.stop();
        assert.equal(b.state, 'active');
        assert.equal(child.exitCode, null, 'A stands by, it does not exit');

        await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1", [task]);
        await waitEnded(db, [task]);
        assert.equal((await getTask(db, task)).state_id, 'CC');
        await until(() => !isProcessGroupAlive(pid2), 'the cancelled task to die', 10_000);
      });
    } finally {
      await killChild(child);
      await stopAllNodes();
    }
  });
});

describe('every database connection killed', () => {
  it('the node keeps running, listens again, and every task ends CS', async (t) => {
    const W = 40;
    const G = 40;
    // Lease 8 s: the first cut must land between a renewal blocking on the row and the fence,
    // a window of lease/2 − margin = 2 s; at 4 s it was 1 s, too tight on a loaded machine.
    const node = await startNode(db, { workerId: W, groupId: G, maxTasks: 4, leaseSeconds: 8, nodeName: 'survivor' });
    const epoch = (await getWorker(db, W))!.lease_epoch;
    let leftActive = false;
    const watch = setInterval(() => {
      if (node.state !== 'active') leftActive = true;
    }, 10);
    try {
      const ids: number[] = [];
      for (let i = 0; i < 30; i++) ids.push(await addTask(db, ['sleep', '0.2'], { group: G }));
      await until(async () => (await db.query("SELECT 1 FROM long_task.task WHERE id = ANY($1) AND state_id = 'CS'", [ids])).rowCount! > 0, 'tasks to flow');
      // First cut: while a renewal is in flight. A transaction holds the worker row, so the
      // node's next renewal waits on it; every other backend is then terminated.
      const holder = new pg.Client({ connectionString: db.url });
      await holder.connect();
      try {
        await holder.query('BEGIN');
        await holder.query('SELECT 1 FROM long_task.worker WHERE id = $1 FOR UPDATE', [W]);
        await until(async () => {
          // Inside a transaction pg_stat_activity is a snapshot taken at its first read: without
          // clearing it, a renewal that starts waiting after the first poll is never seen.
          await holder.query('SELECT pg_stat_clear_snapshot()');
          // The renewal by its text (the lease take-over waits on the row too).
          const { rowCount } = await holder.query(
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%SET locked_until%'",
          );
          return rowCount === 1;
        }, 'a renewal to wait on the worker row', 10_000);
        await holder.query(TERMINATE_NODE_BACKENDS);
        await holder.query('ROLLBACK');
      } finally {
        await holder.end();
      }
      // Three more cuts, each once the node is back from the one before (its listener
      // reconnected), while tasks start and end: whatever statement is in flight (claim, pids,
      // results, renewal) fails.
      let killed = 0;
      for (let cut = 0; cut < 3; cut++) {
        const back = nextEvent(node, 'listener:connected', (e) => e.reconnect);
        const { rowCount } = await db.query(TERMINATE_NODE_BACKENDS);
        killed += rowCount ?? 0;
        await back;
      }
      t.diagnostic(`terminated ${killed} backends in 3 cuts`);
      // Inserted after the cuts: a new listener connection (or the renewal's resync) must see it.
      const late = await addTask(db, ['true'], { group: G });
      await waitEnded(db, [...ids, late], 60_000);
      const { rows } = await db.query<{ state_id: string; error: string | null; n: number }>(
        'SELECT state_id, error, count(*)::int AS n FROM long_task.task WHERE id = ANY($1) GROUP BY 1, 2',
        [[...ids, late]],
      );
      assert.deepEqual(rows, [{ state_id: 'CS', error: null, n: ids.length + 1 }]);
      assert.equal(node.state, 'active');
      assert.equal(leftActive, false, 'the node lost its lease');
      assert.equal((await getWorker(db, W))!.lease_epoch, epoch, 'the same term throughout');
    } finally {
      clearInterval(watch);
      await stopAllNodes();
    }
  });
});

describe('a node cut off just past its fence', () => {
  it('leaves the tasks it killed to recovery: a requeue task runs again, it does not end CF', async (t) => {
    const W = 50;
    const G = 50;
    const { proxy, url } = await proxyFor(db.url);
    try {
      const node = await startNode({ ...db, url }, { workerId: W, groupId: G, leaseSeconds: 3, nodeName: 'fenced' });
      const task = await addTask(db, ['sleep', '300'], { group: G, recoverPolicy: 'requeue' });
      const pid1 = await taskPid(db, task, 'the node to start the task');
      const before = (await getWorker(db, W))!;
      proxy.pause();
      await until(() => node.state !== 'active', 'the node to pass its fence', 10_000);
      await until(() => !isProcessGroupAlive(pid1), 'the fenced node to kill its task', 10_000);
      // Back before the lease is recoverable (2 s after it lapses): the term still holds, so a
      // result written now would be accepted; the task must go through the recover policy instead.
      proxy.resume();
      const resumedAt = performance.now();
      const pid2 = await until(async () => {
        const row = await getTask(db, task);
        assert.notEqual(row.state_id, 'CF', `the task ended CF: ${String(row.error)}`);
        return row.state_id === 'AE' && row.pid && Number(row.pid) !== pid1 ? Number(row.pid) : 0;
      }, 'the task to be re-queued and run again', 30_000);
      taskPids.add(pid2);
      t.diagnostic(`re-queued and running again ${Math.round(performance.now() - resumedAt)} ms after the database came back`);
      assert.ok(Number((await getTask(db, task)).lease_epoch) > before.lease_epoch);
      await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1", [task]);
      await waitEnded(db, [task]);
      assert.equal((await getTask(db, task)).state_id, 'CC');
    } finally {
      await stopAllNodes();
      await proxy.close();
    }
  });
});
