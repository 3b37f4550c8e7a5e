// The spawn helper (src/node/process/spawner.c): the node falls back to child_process.spawn when it
// cannot be built, and a helper that dies under the node loses no task silently.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { addTask, getTask, startNode, tempDir, useTestDatabase, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';
import { isProcessGroupAlive } from '../src/node/process/process-group.js';
import { Spawner } from '../src/node/process/spawner.js';
import { TaskProcess } from '../src/node/process/task-process.js';

const db = useTestDatabase('spawner');

describe('building the helper', () => {
  const log = pino({ level: 'silent' });
  it('without a C compiler: auto falls back to child_process, helper refuses with the reason', async () => {
    const saved = { cc: process.env.CC, cache: process.env.XDG_CACHE_HOME };
    process.env.CC = '/nonexistent/cc';
    process.env.XDG_CACHE_HOME = tempDir('spawner-cache'); // empty: nothing cached to reuse
    try {
      assert.equal(await Spawner.create('auto', log), null);
      await assert.rejects(Spawner.create('helper', log), /spawn helper could not be built: no C compiler/);
      assert.equal(await Spawner.create('node', log), null);
    } finally {
      for (const [key, value] of [['CC', saved.cc], ['XDG_CACHE_HOME', saved.cache]] as const) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
  });
});

describe('a helper that dies under the node', () => {
  it('ends its running task CF "Lost", kills the process, and later tasks still run', async () => {
    const node = await startNode(db, { spawner: 'helper', workerId: 7 });
    const helper = node.spawnerPid;
    assert.ok(helper, 'the node runs a spawn helper');
    const id = await addTask(db, ['sleep', '60']);
    const pid = Number(await until(async () => (await getTask(db, id)).pid, 'the task to start'));
    process.kill(helper, 'SIGKILL');
    await waitEnded(db, [id]);
    const t = await getTask(db, id);
    assert.equal(t.state_id, 'CF');
    assert.match(String(t.error), /^Lost: the spawn helper died/);
    assert.equal(isProcessGroupAlive(pid), false, 'the task process was killed, not left running unobserved');

    const next = await addTask(db, ['sh', '-c', 'echo after']);
    await waitEnded(db, [next]);
    const n = await getTask(db, next);
    assert.equal(n.state_id, 'CS');
    assert.equal(n.output, 'after\n');
    await node.shutdown('cancel');
  });
});

describe('a supervised run ended at once', () => {
  it('is ended whole, not lost, when its end is asked for right after its start', async () => {
    // The node may end a run as soon as its start was asked for (a shutdown right after a
    // claim). The kill frame follows the start frame on the supervisor's socket, so it is read
    // once the leader has started, and ends it (with a signal, CI once saw "Lost" here).
    const spawner = (await Spawner.create('helper', pino({ level: 'silent' })))!;
    try {
      const rootDir = tempDir('spawner-at-once');
      // One at a time, so each SIGTERM follows its start as closely as it can.
      for (let i = 1; i <= 200; i++) {
        const proc = new TaskProcess({ id: i, command: ['sleep', '300'], cwd: null, params: null }, { rootDir, outputLimit: 100, supervision: { orphanGraceMs: 0 } }, spawner);
        const r = await proc.terminate(10_000);
        assert.equal(r.lost, undefined, `run ${i}: ${r.lost}`);
        assert.equal(r.spawnError, null, `run ${i}: ${r.spawnError}`);
        assert.equal(r.killed, true);
        if (proc.pid !== undefined) assert.equal(isProcessGroupAlive(proc.pid), false, `run ${i}: its process lives on`);
      }
    } finally {
      spawner.stop();
    }
  });
});
