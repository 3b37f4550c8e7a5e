// How a node schedules and obeys: priority order, the process limit, stop codes, shutdown,
// standby and recovery of a failed worker. Each test uses a worker id of its own.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { countEvents, nextEvent } from './helpers/events.js';
import { addTask, getTask, getWorker, markClaimed, startNode, tempDir, useTestDatabase, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';
import { TaskClient } from '../src/client/client.js';

const db = useTestDatabase('node');

/** A task that appends "start|end <id> <ns>" lines to a log around a short sleep. */
function recorder(log: string, seconds = 0.2): string[] {
  return ['sh', '-c', `echo "start $PG_TASKS_TASK_ID $(date +%s%N)" >> ${log}; sleep ${seconds}; echo "end $PG_TASKS_TASK_ID $(date +%s%N)" >> ${log}`];
}

function readLog(log: string): Array<{ kind: string; id: number; t: bigint }> {
  return readFileSync(log, 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const [kind, id, t] = line.split(' ');
      return { kind: kind!, id: Number(id), t: BigInt(t!) };
    })
    .sort((a, b) => (a.t < b.t ? -1 : a.t > b.t ? 1 : 0));
}

describe('dispatch', () => {
  it('runs smaller priorities first, FIFO within a priority', async () => {
    const log = `${tempDir('prio')}/log`;
    const group = 11;
    // Queued before any node of the group exists, so the order is the claim's alone.
    const priorities = [5, 1, 3, 1, 0, 5, 3, 0];
    const ids: number[] = [];
    for (const p of priorities) ids.push(await addTask(db, recorder(log, 0.01), { priority: p, group }));
    const node = await startNode(db, { workerId: 11, groupId: group, maxTasks: 1 });
    await waitEnded(db, ids);
    await node.shutdown();
    const started = readLog(log).filter((e) => e.kind === 'start').map((e) => e.id);
    const expected = ids
      .map((id, i) => ({ id, p: priorities[i]! }))
      .sort((a, b) => a.p - b.p || a.id - b.id)
      .map((x) => x.id);
    assert.deepEqual(started, expected);
  });

  it('never runs more than max_task_count processes, and uses all of them', async () => {
    const log = `${tempDir('limit')}/log`;
    const group = 12;
    const ids: number[] = [];
    for (let i = 0; i < 12; i++) ids.push(await addTask(db, recorder(log, 0.3), { group }));
    const node = await startNode(db, { workerId: 12, groupId: group, maxTasks: 3 });
    await waitEnded(db, ids);
    await node.shutdown();
    let running = 0;
    let peak = 0;
    for (const e of readLog(log)) {
      running += e.kind === 'start' ? 1 : -1;
      peak = Math.max(peak, running);
    }
    assert.equal(peak, 3);
    const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM long_task.task WHERE id = ANY($1) AND state_id = 'CS'", [ids]);
    assert.equal(rows[0]!.n, 12);
  });

  it('runs tasks pinned to its worker id, and leaves those pinned to another', async () => {
    const group = 13;
    const node = await startNode(db, { workerId: 13, groupId: group });
    const { rows } = await db.query<{ id: string }>(
      "INSERT INTO long_task.task (group_id, worker_id, state_id, command) VALUES ($1, 13, 'AW', '{true}'), ($1, 99, 'AW', '{true}') RETURNING id",
      [group],
    );
    const [mine, other] = rows.map((r) => Number(r.id));
    await waitEnded(db, [mine!]);
    assert.equal((await getTask(db, other!)).state_id, 'AW');
    await node.shutdown();
  });

  it('wakes on NOTIFY for work committed while it idles', async () => {
    const claims: Array<Promise<{ claimed: number }>> = [];
    const node = await startNode(db, { workerId: 14, groupId: 14, leaseSeconds: 60 }, (n) => claims.push(nextEvent(n, 'claim')));
    // Idle: the claim its term began with found nothing, and no hint is left.
    assert.equal((await claims[0]!).claimed, 0);
    // The lease is renewed every 30 s, and a listener that reconnects reads again: neither may
    // be what starts this task, only the notification.
    const renewals = countEvents(node, 'lease:renewed');
    const reconnects = countEvents(node, 'listener:connected');
    const started = nextEvent(node, 'run:started', () => true, 10_000);
    const id = await addTask(db, ['true'], { group: 14 });
    assert.equal((await started).taskId, id);
    assert.deepEqual([renewals.count, reconnects.count], [0, 0], 'started by something other than the notification');
    await waitEnded(db, [id], 10_000);
    await node.shutdown();
  });
});

describe('stop codes', () => {
  it('1 starts no new tasks but keeps the running ones; 0 resumes', async () => {
    const group = 21;
    const node = await startNode(db, { workerId: 21, groupId: group });
    const running = await addTask(db, ['sleep', '1'], { group });
    await until(async () => (await getTask(db, running)).state_id === 'AE', 'the first task to run');
    await db.query('UPDATE long_task.worker SET stop = 1 WHERE id = 21');
    await until(() => node.stopCode === 1, 'the node to read stop code 1');
    const waiting = await addTask(db, ['true'], { group });
    await waitEnded(db, [running]);
    assert.equal((await getTask(db, running)).state_id, 'CS');
    assert.equal((await getTask(db, waiting)).state_id, 'AW');
    await db.query('UPDATE long_task.worker SET stop = 0 WHERE id = 21');
    await waitEnded(db, [waiting]);
    assert.equal((await getTask(db, waiting)).state_id, 'CS');
    await node.shutdown();
  });

  it('2 lets the running tasks finish, then the node exits and releases its lease', async () => {
    const group = 22;
    const node = await startNode(db, { workerId: 22, groupId: group });
    const id = await addTask(db, ['sleep', '1'], { group });
    await until(async () => (await getTask(db, id)).state_id === 'AE', 'the task to run');
    await db.query('UPDATE long_task.worker SET stop = 2 WHERE id = 22');
    await node.exited;
    assert.equal((await getTask(db, id)).state_id, 'CS');
    const w = (await getWorker(db, 22))!;
    assert.equal(w.active, false);
    assert.equal(w.stop, 0, 'the fulfilled stop request is cleared');
  });

  it('3 cancels the running tasks, then the node exits', async () => {
    const group = 23;
    const node = await startNode(db, { workerId: 23, groupId: group });
    const id = await addTask(db, ['sleep', '300'], { group });
    await until(async () => (await getTask(db, id)).state_id === 'AE', 'the task to run');
    await db.query('UPDATE long_task.worker SET stop = 3 WHERE id = 23');
    await node.exited;
    const t = await getTask(db, id);
    assert.equal(t.state_id, 'CC');
    assert.match(String(t.error), /stop code 3/);
    assert.equal((await getWorker(db, 23))!.active, false);
  });
});

describe('shutdown', () => {
  it('cancel mode kills the running tasks, writes CC and releases the lease', async () => {
    const node = await startNode(db, { workerId: 31, groupId: 31 });
    const id = await addTask(db, ['sleep', '300'], { group: 31 });
    await until(async () => (await getTask(db, id)).state_id === 'AE', 'the task to run');
    await node.shutdown('cancel', 'test');
    assert.equal((await getTask(db, id)).state_id, 'CC');
    assert.equal((await getWorker(db, 31))!.active, false);
  });

  it('drain mode waits for the running tasks to complete', async () => {
    const node = await startNode(db, { workerId: 32, groupId: 32 });
    const id = await addTask(db, ['sleep', '1'], { group: 32 });
    await until(async () => (await getTask(db, id)).state_id === 'AE', 'the task to run');
    await node.shutdown('drain', 'test');
    assert.equal((await getTask(db, id)).state_id, 'CS');
    assert.equal((await getWorker(db, 32))!.active, false);
  });
});

describe('leases', () => {
  it('a second node with the same worker id stands by, and takes over when the first stops', async () => {
    const first = await startNode(db, { workerId: 41, groupId: 41, nodeName: 'first' });
    const second = await startNode(db, { workerId: 41, groupId: 41, nodeName: 'second', leaseSeconds: 2 });
    assert.equal(first.state, 'active');
    assert.equal(second.state, 'standby');
    const client = new TaskClient({ connectionString: db.url });
    const listed = (await client.workers()).find((w) => w.id === 41)!;
    await client.close();
    assert.equal(listed.status, 'ok');
    assert.equal(listed.node_name, 'first');
    assert.equal(listed.standby, 'second', 'pg-tasks workers shows the standby');
    await first.shutdown();
    await until(() => second.state === 'active', 'the standby to take over');
    assert.equal((await getWorker(db, 41))!.node_name, 'second');
    const id = await addTask(db, ['true'], { group: 41 });
    await waitEnded(db, [id]);
    assert.equal((await getTask(db, id)).node_name, 'second');
    await second.shutdown();
  });

  it('recovers a failed worker with the default policy: its executing tasks fail with "Worker failed"', async () => {
    await db.query("INSERT INTO long_task.worker (id, group_id, active, locked_until, lease_epoch) VALUES (42, 42, true, now() - interval '1 hour', 7)");
    const id = await addTask(db, ['sleep', '300'], { group: 42 });
    await markClaimed(db, id, 42, 7);
    const node = await startNode(db, { workerId: 42, groupId: 42 });
    await until(() => node.state === 'active', 'the node to take over');
    const t = await getTask(db, id);
    assert.equal(t.state_id, 'CF');
    assert.equal(t.error, 'Worker failed');
    const w = (await getWorker(db, 42))!;
    assert.equal(w.active, true);
    assert.equal(Number(w.lease_epoch), 8, 'a take-over starts a new term');
    await node.shutdown();
  });
});
