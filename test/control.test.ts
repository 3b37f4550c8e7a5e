// The task's own channel on fd 3 (issue 29, docs/control.md): progress on the row while the
// run lives, a result on task and task_run, heartbeats, bad lines counted and never fatal,
// prerequisites' results in the environment. CI runs this file with the spawn helper and with
// PGTASKS_SPAWNER=node; one test also runs a node whose runs have no supervisor.
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { TaskClient } from '../src/index.js';
import { runCli } from './helpers/cli.js';
import { serveNode } from '../src/http/node-server.js';
import { addTask, getTask, startNode, tempDir, testLogger, useTestDatabase, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';

const db = useTestDatabase('control', { setup: (db) => startNode(db, { workerId: 1, maxTasks: 8 }) });

async function runsOf(id: number): Promise<Array<Record<string, unknown>>> {
  return (await db.query('SELECT * FROM long_task.task_run WHERE task_id = $1 ORDER BY attempt', [id])).rows;
}

/** A task with its heartbeat_timeout (and retries) set before it is queued. */
async function addWithHeartbeat(command: string[], heartbeat: string, maxAttempts: number, group = 0): Promise<number> {
  const id = await addTask(db, command, { state: 'DR', maxAttempts, backoffBase: '10 ms', group });
  await db.query("UPDATE long_task.task SET heartbeat_timeout = $2, state_id = 'AW' WHERE id = $1", [id, heartbeat]);
  return id;
}

/** Reports progress, then waits at dir/go, then reports its result and the last progress. */
function reporting(dir: string): string[] {
  const script = `
    [ "$PG_TASKS_CONTROL_FD" = 3 ] || exit 9
    echo '{"progress":0.5,"message":"half way"}' >&3
    while [ ! -e "$0/go" ]; do sleep 0.05; done
    echo '{"progress":1,"message":"done","result":{"rows":42,"name":"x"}}' >&3`;
  return ['sh', '-c', script, dir];
}

describe('the control channel on fd 3', () => {
  it('progress shows on the row while the run lives; the result lands on task and task_run with its end', async () => {
    const dir = tempDir('control-progress');
    const id = await addTask(db, reporting(dir));
    const live = await until(async () => {
      const t = await getTask(db, id);
      return t.state_id === 'AE' && t.progress === 0.5 && t.progress_message === 'half way' ? t : null;
    }, 'the progress on the running task\'s row');
    assert.equal(live.result, null);
    writeFileSync(`${dir}/go`, '');
    await waitEnded(db, [id]);
    const t = await getTask(db, id);
    assert.equal(t.state_id, 'CS', String(t.error));
    assert.deepEqual(t.result, { rows: 42, name: 'x' });
    assert.equal(t.progress, 1);
    assert.equal(t.progress_message, 'done');
    const [run] = await runsOf(id);
    assert.deepEqual(run!.result, { rows: 42, name: 'x' });
    assert.equal(run!.progress, 1);
    assert.equal(run!.progress_message, 'done');
    assert.equal(run!.control_errors, 0);
  });

  it('show, ls and runs print progress and result; the client reads progress, and wait resolves with the result', async () => {
    const dir = tempDir('control-cli');
    const id = await addTask(db, reporting(dir), { group: 0 });
    const client = new TaskClient({ connectionString: db.url });
    try {
      await until(async () => (await client.progress(id)).progress === 0.5, 'the progress through the client');
      assert.deepEqual(await client.progress(id), { progress: 0.5, message: 'half way' });
      const shown = await runCli(db.url, ['show', String(id)]);
      assert.match(shown.stdout, /^progress: +50% half way$/m);
      const listed = await runCli(db.url, ['ls', '--state', 'AE']);
      const line = listed.stdout.split('\n').find((l) => l.startsWith(`${id} `));
      assert.match(line ?? '', new RegExp(`^${id} +AE +50% `), listed.stdout);
      const waited = client.wait(id);
      writeFileSync(`${dir}/go`, '');
      assert.deepEqual((await waited).result, { rows: 42, name: 'x' });
      assert.match((await runCli(db.url, ['show', String(id)])).stdout, /^result: +\{"name":"x","rows":42\}$/m);
      const runs = await runCli(db.url, ['runs', String(id)]);
      const [head, row] = runs.stdout.trim().split('\n');
      assert.equal(row!.split(/\s{2,}/)[head!.split(/\s{2,}/).indexOf('RESULT')], '{"name":"x","rows":42}', runs.stdout);
    } finally {
      await client.close();
    }
  });

  it('a task that never writes on fd 3 runs as before: nothing on its rows', async () => {
    const id = await addTask(db, ['sh', '-c', 'echo out; [ -e /proc/self/fd/3 ]']);
    await waitEnded(db, [id]);
    const t = await getTask(db, id);
    assert.equal(t.state_id, 'CS', `fd 3 is open: ${String(t.error)}`);
    assert.equal(t.result, null);
    assert.equal(t.progress, null);
    const [run] = await runsOf(id);
    assert.equal(run!.control_errors, null);
    assert.equal(run!.output, 'out\n');
  });

  it('a silent run is killed at its heartbeat_timeout, ends CF heartbeat and is retried; one that beats lives on', async () => {
    const dir = tempDir('control-heartbeat');
    // Beats every 50 ms until the gate opens; its first beat is proof it runs.
    const beating = await addWithHeartbeat(['sh', '-c', 'while [ ! -e "$0/go" ]; do echo "{\\"heartbeat\\":true}" >&3; touch "$0/beat"; sleep 0.05; done', dir], '2 seconds', 1);
    await until(() => existsSync(`${dir}/beat`), 'the beating task to run');
    // On a node of its own, whose /metrics counts the end reason.
    const server = await serveNode(await startNode(db, { workerId: 3, groupId: 6 }), { host: '127.0.0.1', port: 0 }, testLogger);
    const silent = await addWithHeartbeat(['sleep', '300'], '2 seconds', 2, 6);
    await waitEnded(db, [silent], 60_000);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    await server.close();
    assert.match(metrics, /^pgtasks_runs_ended_total\{[^}]*end_reason="heartbeat"[^}]*\} 2$/m, metrics);
    const t = await getTask(db, silent);
    assert.equal(t.state_id, 'CF');
    assert.equal(t.end_reason, 'heartbeat');
    assert.match(String(t.error), /no sign of life on fd 3 for 2s/);
    const runs = await runsOf(silent);
    assert.deepEqual(runs.map((r) => r.end_reason), ['heartbeat', 'heartbeat'], 'retried once (heartbeat is in the default retry_on)');
    // The beating task has outlived two silent runs of the same timeout, each started after it.
    assert.equal((await getTask(db, beating)).state_id, 'AE');
    writeFileSync(`${dir}/go`, '');
    await waitEnded(db, [beating]);
    assert.equal((await getTask(db, beating)).state_id, 'CS');
  });

  it('bad lines are counted, logged once, and never fail the task; a result over the cap is named in the error', async () => {
    const script = `
      echo 'not json' >&3
      echo '{"unknown":1}' >&3
      echo '[1,2]' >&3
      echo '{"progress":2}' >&3
      head -c 1100000 /dev/zero | tr '\\0' a >&3; echo >&3
      printf '%s\\n' '{"result":"\\ud800"}' >&3
      printf '{"progress":0.25}\\n{"result":"ok"}' >&3`;
    const id = await addTask(db, ['sh', '-c', script]);
    await waitEnded(db, [id]);
    const t = await getTask(db, id);
    assert.equal(t.state_id, 'CS', String(t.error));
    assert.equal(t.result, 'ok', 'a last line without a newline counts');
    assert.equal(t.progress, 0.25);
    assert.equal((await runsOf(id))[0]!.control_errors, 6, 'a lone surrogate in a result, which jsonb refuses, is a bad line too');

    const big = await addTask(db, ['sh', '-c', 'printf \'{"result":"%s"}\\n\' "$(head -c 70000 /dev/zero | tr "\\0" b)" >&3']);
    await waitEnded(db, [big]);
    const b = await getTask(db, big);
    assert.equal(b.state_id, 'CS');
    assert.equal(b.result, null);
    assert.match(String(b.error), /result not stored: 70002 bytes of JSON, over the 65536-byte cap/);

    // Queued again: the row forgets what the last run said (task_run keeps it).
    await db.query("UPDATE long_task.task SET group_id = 99, state_id = 'AW' WHERE id = $1", [id]);
    const again = await getTask(db, id);
    assert.equal(again.result, null);
    assert.equal(again.progress, null);
    assert.equal((await runsOf(id))[0]!.result, 'ok');
  });

  it('a dependent task gets its prerequisites\' results, in the environment or, when large, in a file', async () => {
    const a = await addTask(db, ['sh', '-c', 'echo \'{"result":{"a":1}}\' >&3']);
    const b = await addTask(db, ['sh', '-c', 'echo \'{"result":[2]}\' >&3']);
    const dependent = await addTask(db, ['sh', '-c', 'printf %s "$PG_TASKS_DEPENDENCY_RESULTS"; [ -z "$PG_TASKS_DEPENDENCY_RESULTS_FILE" ]'], { dependsOn: [a, b] });
    await waitEnded(db, [a, b, dependent]);
    const d = await getTask(db, dependent);
    assert.equal(d.state_id, 'CS', String(d.error));
    assert.deepEqual(JSON.parse(String(d.output)), { [a]: { a: 1 }, [b]: [2] });

    // Two results of 40 000 bytes: over the 64 KiB the environment takes.
    const large = 'printf \'{"result":"%s"}\\n\' "$(head -c 40000 /dev/zero | tr "\\0" c)" >&3';
    const c1 = await addTask(db, ['sh', '-c', large]);
    const c2 = await addTask(db, ['sh', '-c', large]);
    const reader = await addTask(db, ['sh', '-c', '[ -z "$PG_TASKS_DEPENDENCY_RESULTS" ] && wc -c < "$PG_TASKS_DEPENDENCY_RESULTS_FILE" && echo "$PG_TASKS_DEPENDENCY_RESULTS_FILE"'], { dependsOn: [c1, c2] });
    await waitEnded(db, [c1, c2, reader]);
    const r = await getTask(db, reader);
    assert.equal(r.state_id, 'CS', String(r.error));
    const [bytes, file] = String(r.output).trim().split('\n');
    assert.ok(Number(bytes) > 80_000, `the file holds both results: ${bytes}`);
    await until(() => !existsSync(file!), 'the results file to be removed with the run');
  });

  it('a node whose runs have no supervisor gives them fd 3 too; the node publishes run:progress', async () => {
    const seen: Array<{ taskId: number; attempt: number; progress: number | null; message: string | null }> = [];
    await startNode(db, { workerId: 2, groupId: 5, containment: 'group' }, (node) => node.events.on('run:progress', (e) => seen.push(e)));
    const dir = tempDir('control-group');
    const id = await addTask(db, reporting(dir), { group: 5 });
    await until(async () => (await getTask(db, id)).progress === 0.5, 'the progress on the row');
    await until(() => seen.length > 0, 'the run:progress event');
    assert.deepEqual(seen, [{ taskId: id, attempt: 1, progress: 0.5, message: 'half way' }]);
    writeFileSync(`${dir}/go`, '');
    await waitEnded(db, [id]);
    const t = await getTask(db, id);
    assert.equal(t.state_id, 'CS', String(t.error));
    assert.deepEqual(t.result, { rows: 42, name: 'x' });
  });
});
