// NodeOptions.executor (benches and tests only; bench/fleet.ts): a run is a function in the
// node's process, not a process. The task goes through the real claim and end; the node
// starts no spawn helper, and a run has no pid, so nothing of the node signals one.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addTask, getTask, startNode, useTestDatabase, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';

const db = useTestDatabase('executor');

describe('a node with an executor', () => {
  it('runs each claimed task with it, ends it CS when it resolves and CF when it rejects, and starts no process', async () => {
    const calls: Array<{ id: number; command: string[]; finish: (error?: Error) => void }> = [];
    const node = await startNode(db, {
      workerId: 7, groupId: 7, nodeName: 'executor',
      executor: (task) => new Promise<void>((resolve, reject) => {
        calls.push({ id: task.id, command: task.command, finish: (error) => (error ? reject(error) : resolve()) });
      }),
    });
    assert.equal(node.state, 'active');
    const ok = await addTask(db, ['no-such-program', 'a'], { group: 7 });
    const bad = await addTask(db, ['no-such-program', 'b'], { group: 7 });
    await until(() => calls.length === 2, 'both tasks to be handed to the executor', 30_000);
    assert.deepEqual(calls.map((c) => c.command[1]).sort(), ['a', 'b']);
    assert.equal(node.running, 2);
    assert.equal(node.spawnerPid, undefined, 'a spawn helper was started');
    assert.equal((await getTask(db, ok)).state_id, 'AE');

    calls.find((c) => c.id === ok)!.finish();
    calls.find((c) => c.id === bad)!.finish(new Error('it failed'));
    await waitEnded(db, [ok, bad]);
    const done = await getTask(db, ok);
    assert.equal(done.state_id, 'CS');
    assert.equal(done.pid, null);
    const failed = await getTask(db, bad);
    assert.equal(failed.state_id, 'CF');
    assert.equal(failed.end_reason, 'exit_code');
    assert.match(String(failed.error), /it failed/);
  });
});
