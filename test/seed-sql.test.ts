// The SQL examples of the seed README are a contract: each one runs here verbatim against a
// running node. Only the Windows ping is swapped for a Linux command, and <id> for a real id.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { getTask, startNode, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';
import type { TaskNode } from '../src/node/node.js';

// Copied from the seed README, whitespace included.
const SEED = {
  create: `INSERT INTO long_task.task(group_id, state_id, priority, command)
VALUES (0, 'DR', 0, '{ping,-n,1,127.0.0.1}')
RETURNING id;`,
  queue: `UPDATE long_task.task
SET state_id='AW', worker_id=null
WHERE id = <id>`,
  requeue: `UPDATE long_task.task
SET state_id='AW', worker_id=null
WHERE id = <id> AND state_id like 'C%'`,
  cancel: `UPDATE long_task.task
SET state_id='AC'
WHERE id = <id> AND state_id like 'A%'`,
  schedule: `UPDATE long_task.task
SET \n\tnext_start=now(),
\tshed_period_id='HOU',
\tshed_period_count=2,
\tshed_clone=false
WHERE id = <id>`,
};

let db: TestDatabase;
let node: TaskNode;
before(async () => {
  db = await createTestDatabase('seed_sql');
  node = await startNode(db);
});
after(async () => {
  await node?.shutdown('cancel');
  await db?.close();
});

/** The seed's insert, with its command swapped for a Linux one. */
async function create(command: string): Promise<number> {
  const { rows } = await db.query<{ id: number }>(SEED.create.replace('{ping,-n,1,127.0.0.1}', command));
  return rows[0]!.id;
}

/** Runs one of the seed's updates on task `id`; returns how many rows it changed. */
async function run(sql: string, id: number): Promise<number> {
  assert.ok(sql.includes('<id>'));
  const result = await db.query(sql.replaceAll('<id>', String(id)));
  return result.rowCount ?? 0;
}

async function state(id: number): Promise<string> {
  return (await getTask(db, id)).state_id as string;
}

function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return true;
    throw error;
  }
  // Still in the process table: only a zombie (exited, not yet reaped) counts as gone.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

let draft: number;
let done: number;

it('creates a draft that stays DR and does not run', async () => {
  draft = await create('{echo,draft}');
  assert.equal(await state(draft), 'DR');
  // A task queued after it runs to the end: the node was awake and claiming, yet left the draft.
  const witness = await create('{true}');
  assert.equal(await run(SEED.queue, witness), 1);
  await waitEnded(db, [witness]);
  const t = await getTask(db, draft);
  assert.equal(t.state_id, 'DR');
  assert.equal(t.started, null);
  assert.equal(t.worker_id, null);
  assert.equal(t.pid, null);
});

it('queues the draft: it runs and ends CS', async () => {
  assert.equal(await run(SEED.queue, draft), 1);
  await waitEnded(db, [draft]);
  const t = await getTask(db, draft);
  assert.equal(t.state_id, 'CS');
  assert.equal(t.exit_code, 0);
  assert.equal(t.worker_id, 1);
  assert.match(t.output as string, /draft/);
  done = draft;
});

it('re-queues a completed task: it runs again', async () => {
  const first = await getTask(db, done);
  assert.ok(first.started instanceof Date);
  assert.equal(await run(SEED.requeue, done), 1);
  await waitEnded(db, [done]);
  const second = await getTask(db, done);
  assert.equal(second.state_id, 'CS');
  assert.ok(second.started instanceof Date);
  assert.notEqual(second.started.getTime(), first.started.getTime());
  assert.ok(second.started > first.started);
});

it('re-queue changes nothing on a task that is not in a C* state', async () => {
  const fresh = await create('{true}');
  const before = await getTask(db, fresh);
  assert.equal(await run(SEED.requeue, fresh), 0);
  assert.deepEqual(await getTask(db, fresh), before);
});

it('cancels a running sleep 30: CC, and the process is gone', async () => {
  const id = await create('{sleep,30}');
  assert.equal(await run(SEED.queue, id), 1);
  const running = await until(async () => {
    const t = await getTask(db, id);
    return t.state_id === 'AE' && t.pid !== null ? t : null;
  }, 'sleep 30 to be running with a pid');
  const pid = running.pid as number;
  assert.equal(processGone(pid), false);

  // The re-queue guard leaves an executing task alone.
  assert.equal(await run(SEED.requeue, id), 0);
  assert.equal(await state(id), 'AE');

  assert.equal(await run(SEED.cancel, id), 1);
  await waitEnded(db, [id]);
  const t = await getTask(db, id);
  assert.equal(t.state_id, 'CC');
  // The task is marked ended only once its process is dead.
  assert.ok(processGone(pid), `process ${pid} of task ${id} is still alive`);
});

it('cancel changes nothing on an ended or draft task', async () => {
  for (const id of [done, await create('{true}')]) {
    const before = await getTask(db, id);
    assert.equal(await run(SEED.cancel, id), 0);
    assert.deepEqual(await getTask(db, id), before);
  }
});

it('cancels a waiting task at once', async () => {
  // Not reachable by the node: worker 2 has no node, so the task stays AW until cancelled.
  const id = await create('{true}');
  await db.query('UPDATE long_task.task SET worker_id = 2 WHERE id = $1', [id]);
  await db.query("UPDATE long_task.task SET state_id = 'AW' WHERE id = $1", [id]);
  assert.equal(await state(id), 'AW');
  assert.equal(await run(SEED.cancel, id), 1);
  assert.equal(await state(id), 'CC');
});

it('accepts the scheduling update and stores the schedule', async () => {
  const { rows } = await db.query<{ now: Date }>('SELECT now()');
  assert.equal(await run(SEED.schedule, done), 1);
  const t = await getTask(db, done);
  assert.ok(t.next_start instanceof Date);
  assert.ok(t.next_start >= rows[0]!.now);
  assert.equal(t.shed_period_id, 'HOU');
  assert.equal(t.shed_period_count, 2);
  assert.equal(t.shed_clone, false);
});
