// What a node does with one task's OS process: outcomes, errors, environment, output,
// cancellation of a whole process tree.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { addTask, getTask, startNode, stopAllNodes, tempDir, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';
import { isProcessAlive, isProcessGroupAlive } from '../src/node/process/process-group.js';
import type { TaskNode } from '../src/node/node.js';

let db: TestDatabase;
let node: TaskNode;
const root = tempDir('process');

before(async () => {
  db = await createTestDatabase('process');
  node = await startNode(db, { maxTasks: 32, rootDir: root, killGraceMs: 500, outputLimit: 64 * 1024 });
});
after(async () => {
  await stopAllNodes();
  await node?.shutdown('cancel');
  await db?.close();
});


describe('outcomes', () => {
  it('exit 0 → CS with exit code 0 and the output', async () => {
    const id = await addTask(db, ['sh', '-c', 'echo hello; echo oops >&2']);
    await waitEnded(db, [id]);
    const t = await getTask(db, id);
    assert.equal(t.state_id, 'CS');
    assert.equal(t.exit_code, 0);
    assert.equal(t.error, null);
    assert.match(String(t.output), /hello\n/);
    assert.match(String(t.output), /oops\n/);
    assert.ok(t.pid, 'the pid is recorded');
    assert.ok(t.finished instanceof Date);
  });

  it('200 × /bin/false in one batch → 200 × CF with exit code 1', async () => {
    const { rows } = await db.query<{ id: string }>(
      "INSERT INTO long_task.task (state_id, command) SELECT 'AW', '{/bin/false}' FROM generate_series(1, 200) RETURNING id",
    );
    const ids = rows.map((r) => Number(r.id));
    await waitEnded(db, ids, 60_000);
    const { rows: summary } = await db.query<{ state_id: string; exit_code: number; n: number }>(
      'SELECT state_id, exit_code, count(*)::int AS n FROM long_task.task WHERE id = ANY($1) GROUP BY 1, 2',
      [ids],
    );
    assert.deepEqual(summary, [{ state_id: 'CF', exit_code: 1, n: 200 }]);
  });

  it('a non-zero exit → CF with the real code and the output tail in error', async () => {
    const id = await addTask(db, ['sh', '-c', 'echo "something broke"; exit 3']);
    await waitEnded(db, [id]);
    const t = await getTask(db, id);
    assert.equal(t.state_id, 'CF');
    assert.equal(t.exit_code, 3);
    assert.equal(t.error, 'exit code 3\nsomething broke\n');
  });

  it('death by a signal → CF with the signal name, no exit code', async () => {
    const id = await addTask(db, ['sh', '-c', 'kill -SEGV $$']);
    await waitEnded(db, [id]);
    const t = await getTask(db, id);
    assert.equal(t.state_id, 'CF');
    assert.equal(t.exit_code, null);
    assert.equal(t.exit_signal, 'SIGSEGV');
    assert.match(String(t.error), /^killed by signal SIGSEGV/);
  });

  it('a program that does not exist → CF "command not found"', async () => {
    const id = await addTask(db, ['pg-tasks-no-such-program', '--x']);
    await waitEnded(db, [id]);
    const t = await getTask(db, id);
    assert.equal(t.state_id, 'CF');
    assert.equal(t.error, 'command not found: pg-tasks-no-such-program');
  });

  it('a cwd that does not exist → CF naming the directory', async () => {
    const id = await addTask(db, ['true'], { cwd: '/nonexistent/dir' });
    await waitEnded(db, [id]);
    const t = await getTask(db, id);
    assert.equal(t.state_id, 'CF');
    assert.equal(t.error, 'working directory does not exist: /nonexistent/dir');
  });

  it('a command with a NULL element is refused when written', async () => {
    await assert.rejects(addTask(db, ['echo', null as unknown as string]), /task_command_not_empty/);
  });
});

describe('environment', () => {
  it('replaces %TASK, passes the id and params, resolves a relative cwd against the root dir', async () => {
    mkdirSync(path.join(root, 'jobs'), { recursive: true });
    const id = await addTask(db, ['sh', '-c', 'echo "$0|$PG_TASKS_TASK_ID|$PG_TASKS_PARAMS|$(pwd)"', '%TASK'], {
      cwd: 'jobs',
      params: { to: 'ops@example.com', n: 2 },
    });
    await waitEnded(db, [id]);
    const t = await getTask(db, id);
    assert.equal(t.state_id, 'CS');
    assert.equal(t.output, `${id}|${id}|{"n": 2, "to": "ops@example.com"}|${path.join(root, 'jobs')}\n`.replace('{"n": 2, "to": "ops@example.com"}', JSON.stringify({ n: 2, to: 'ops@example.com' })));
  });

  it('closes stdin', async () => {
    const id = await addTask(db, ['sh', '-c', 'cat; echo "eof:$?"']);
    await waitEnded(db, [id]);
    assert.equal((await getTask(db, id)).output, 'eof:0\n');
  });
});

describe('output', () => {
  it('keeps a bounded tail of hundreds of megabytes, and the node memory stays flat', async () => {
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 20);
    // 300 MB of output, then a last line that must be in the tail.
    const id = await addTask(db, ['sh', '-c', 'head -c 300000000 /dev/zero | tr "\\000" x; echo; echo THE-END']);
    await waitEnded(db, [id], 120_000);
    clearInterval(sampler);
    const t = await getTask(db, id);
    assert.equal(t.state_id, 'CS');
    const output = String(t.output);
    assert.ok(output.endsWith('THE-END\n'), output.slice(-100));
    assert.ok(output.length <= 64 * 1024 + 100, `output kept: ${output.length} bytes`);
    assert.match(output, /earlier bytes dropped/);
    // Generous: the point is that 300 MB never sits in memory.
    assert.ok(peak - before < 100 * 1024 * 1024, `rss grew by ${Math.round((peak - before) / 1024 / 1024)} MB`);
  });
});

describe('cancellation', () => {
  it('kills the whole process tree of a cancelled task: no descendant survives', async () => {
    const dir = tempDir('tree');
    // The task starts a child and a grandchild, each recording its pid, then waits.
    const script = `sleep 300 & echo $! > ${dir}/child; sh -c 'sleep 300 & echo $! > ${dir}/grandchild; wait' & wait`;
    const id = await addTask(db, ['sh', '-c', script]);
    const pids = await until(() => {
      try {
        return [Number(readFileSync(`${dir}/child`, 'utf8')), Number(readFileSync(`${dir}/grandchild`, 'utf8'))].filter((p) => p > 0).length === 2
          ? [Number(readFileSync(`${dir}/child`, 'utf8')), Number(readFileSync(`${dir}/grandchild`, 'utf8'))]
          : null;
      } catch {
        return null;
      }
    }, 'the task to start its descendants');
    const leader = Number((await until(async () => (await getTask(db, id)).pid, 'the pid to be recorded')));
    assert.ok(pids.every(isProcessAlive), 'descendants run before the cancel');
    await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1 AND state_id LIKE 'A%'", [id]);
    await waitEnded(db, [id]);
    const t = await getTask(db, id);
    assert.equal(t.state_id, 'CC');
    assert.equal(t.error, 'Cancelled');
    // Ended means dead: by the time the row says CC, nothing of the task is running.
    for (const pid of [leader, ...pids]) assert.equal(isProcessAlive(pid), false, `pid ${pid} survived`);
    assert.equal(isProcessGroupAlive(leader), false);
  });

  it('SIGKILLs a task that ignores SIGTERM after the grace period', async () => {
    const dir = tempDir('trap');
    const id = await addTask(db, ['sh', '-c', `trap "" TERM; touch ${dir}/ready; while :; do sleep 1; done`]);
    await until(() => existsSync(`${dir}/ready`), 'the task to ignore SIGTERM');
    await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1", [id]);
    await waitEnded(db, [id]);
    const t = await getTask(db, id);
    assert.equal(t.state_id, 'CC');
    assert.equal(t.exit_signal, 'SIGKILL');
    assert.equal(isProcessAlive(Number(t.pid)), false);
  });

  it('cancelling a waiting task ends it at once, without a process', async () => {
    await db.query("UPDATE long_task.worker SET stop = 1 WHERE id = 1");
    await until(() => node.stopCode === 1, 'the node to see stop code 1');
    const id = await addTask(db, ['sleep', '300']);
    await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1", [id]);
    const t = await getTask(db, id);
    assert.equal(t.state_id, 'CC');
    assert.equal(t.pid, null);
    await db.query('UPDATE long_task.worker SET stop = 0 WHERE id = 1');
    await until(() => node.stopCode === 0, 'the node to see stop code 0');
  });
});
