// Live output (migration 11): what a run prints reaches task_output while it runs, bounded per
// run, and `pg-tasks logs` prints it or follows it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ROOT, runCli } from './helpers/cli.js';
import { addTask, startNode, tempDir, useTestDatabase, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';

const db = useTestDatabase('output');

async function stored(id: number, attempt = 1): Promise<{ text: string; rows: number; bytes: number; first: number; end: number }> {
  const { rows } = await db.query<{ data: Buffer; pos: string }>('SELECT data, pos FROM long_task.task_output WHERE task_id = $1 AND attempt = $2 ORDER BY seq', [id, attempt]);
  const bytes = rows.reduce((n, r) => n + r.data.length, 0);
  const last = rows.at(-1);
  return {
    text: Buffer.concat(rows.map((r) => r.data)).toString(),
    rows: rows.length,
    bytes,
    first: rows[0] ? Number(rows[0].pos) : 0,
    end: last ? Number(last.pos) + last.data.length : 0,
  };
}

/** A task that prints "first", waits for `gate` to exist, then prints "second" (and one line to stderr). */
function gated(gate: string): string[] {
  return ['sh', '-c', 'echo first; while [ ! -e "$0" ]; do sleep 0.05; done; echo second; echo third >&2', gate];
}

describe('live output', () => {
  it('reaches task_output while the run lives, and `logs -f` follows it until the run ends', async () => {
    await startNode(db, { workerId: 1, groupId: 1 });
    const gate = path.join(tempDir('output-gate'), 'open');
    const id = await addTask(db, gated(gate), { group: 1 });
    // Written while the process still waits at its gate: live, not at the end.
    await until(async () => (await stored(id)).text === 'first\n', 'the first line in task_output');
    const { rows } = await db.query<{ state_id: string }>('SELECT state_id FROM long_task.task WHERE id = $1', [id]);
    assert.equal(rows[0]!.state_id, 'AE');

    // A follower started now prints what is there, then what comes, and ends with the run.
    const follower = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'logs', String(id), '-f'], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: db.url, NODE_TEST_CONTEXT: undefined },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    follower.stdout.on('data', (d: Buffer) => (out += d.toString()));
    follower.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => follower.once('exit', (code) => resolve(code)));
    await until(() => out === 'first\n', 'the follower to print the first line');
    writeFileSync(gate, '');
    const code = await exited;
    assert.equal(err, `pg-tasks: task ${id} ended CS: exit code 0\n`);
    assert.equal(code, 0);
    assert.equal(out, 'first\nsecond\nthird\n');
    await waitEnded(db, [id]);
    const s = await stored(id);
    assert.deepEqual([s.text, s.first, s.end], ['first\nsecond\nthird\n', 0, 19]);

    const again = await runCli(db.url, ['logs', String(id)]);
    assert.deepEqual([again.code, again.stdout, again.stderr], [0, 'first\nsecond\nthird\n', '']);
  });

  it('keeps the newest --output-keep bytes of a run that prints a lot, in few statements, and says what was not kept', async () => {
    const node = await startNode(db, { workerId: 2, groupId: 2, outputKeep: 100_000 });
    const flushes: number[] = [];
    node.events.on('output:flushed', (e) => flushes.push(e.bytes));
    const id = await addTask(db, ['sh', '-c', "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo END"], { group: 2 });
    const startedAt = performance.now();
    await waitEnded(db, [id]);
    const elapsedMs = performance.now() - startedAt;
    const s = await stored(id);
    assert.equal(s.end, 3_000_005, 'the last byte kept is the last byte printed');
    assert.ok(s.text.endsWith('x\nEND\n'));
    assert.ok(s.bytes >= 100_000 && s.bytes < 100_000 + 64 * 1024, `kept ${s.bytes} bytes`);
    assert.equal(s.first, 3_000_005 - s.bytes, 'the kept bytes are contiguous, up to the end');
    // One flush per 200 ms at most while it prints, plus the one at its end (and slack for a
    // flush cut short): never one per chunk read from the pipe (3 MB is ~50+ reads).
    assert.ok(flushes.length >= 1 && flushes.length <= Math.ceil(elapsedMs / 200) + 3, `${flushes.length} flushes in ${Math.round(elapsedMs)} ms`);
    assert.ok(flushes.every((bytes) => bytes <= 100_000), 'a flush writes at most the keep per run');

    const cli = await runCli(db.url, ['logs', String(id)]);
    assert.equal(cli.code, 0);
    assert.equal(cli.stderr, `[… ${s.first} bytes not kept]\n`);
    assert.equal(cli.stdout.length, s.bytes);
  });

  it('--run picks a run; earlier runs keep their output; mistakes get one line', async () => {
    await startNode(db, { workerId: 3, groupId: 3 });
    const id = await addTask(db, ['sh', '-c', 'echo run $PG_TASKS_TASK_ID-$(cat /proc/sys/kernel/random/uuid | cut -c1-4)'], { group: 3 });
    await waitEnded(db, [id]);
    await db.query("UPDATE long_task.task SET state_id = 'AW' WHERE id = $1", [id]);
    await until(async () => (await db.query('SELECT 1 FROM long_task.task WHERE id = $1 AND attempt = 2 AND state_id = $2', [id, 'CS'])).rowCount === 1, 'the second run to end');
    const first = await runCli(db.url, ['logs', String(id), '--run', '1']);
    const second = await runCli(db.url, ['logs', String(id)]);
    assert.match(first.stdout, new RegExp(`^run ${id}-\\w{4}\\n$`));
    assert.match(second.stdout, new RegExp(`^run ${id}-\\w{4}\\n$`));
    assert.notEqual(first.stdout, second.stdout);
    assert.equal((await stored(id, 1)).text, first.stdout);

    const noRun = await runCli(db.url, ['logs', String(id), '--run', '3']);
    assert.deepEqual([noRun.code, noRun.stderr], [1, `pg-tasks: task ${id} has no run 3 (its runs: 1 to 2)\n`]);
    const missing = await runCli(db.url, ['logs', '987654']);
    assert.deepEqual([missing.code, missing.stderr], [1, 'pg-tasks: task 987654 not found\n']);
    const { rows } = await db.query<{ id: string }>("INSERT INTO long_task.task (command, state_id, group_id) VALUES ('{true}', 'DR', 3) RETURNING id");
    const draft = await runCli(db.url, ['logs', rows[0]!.id]);
    assert.deepEqual([draft.code, draft.stderr], [1, `pg-tasks: task ${rows[0]!.id} has not run yet\n`]);
    const bad = await runCli(db.url, ['logs', String(id), '--run', '0']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--run/);
    assert.equal(bad.stderr.trim().split('\n').length, 1, 'one line');
  });

  it('goes with its run and with its task', async () => {
    await startNode(db, { workerId: 4, groupId: 4 });
    const id = await addTask(db, ['echo', 'hello'], { group: 4 });
    await waitEnded(db, [id]);
    await db.query("UPDATE long_task.task SET state_id = 'AW' WHERE id = $1", [id]);
    await until(async () => (await stored(id, 2)).text === 'hello\n', 'the second run');
    await waitEnded(db, [id]);
    // Retention deletes older runs from task_run: their output goes with them.
    await db.query('DELETE FROM long_task.task_run WHERE task_id = $1 AND attempt = 1', [id]);
    assert.equal((await stored(id, 1)).rows, 0);
    assert.equal((await stored(id, 2)).text, 'hello\n');
    await db.query('DELETE FROM long_task.task WHERE id = $1', [id]);
    assert.equal((await db.query('SELECT 1 FROM long_task.task_output WHERE task_id = $1', [id])).rowCount, 0);
  });

  it('with --output-keep 0 writes none, and `logs` prints the run\'s tail instead', async () => {
    await startNode(db, { workerId: 5, groupId: 5, outputKeep: 0 });
    const id = await addTask(db, ['echo', 'quiet'], { group: 5 });
    await waitEnded(db, [id]);
    assert.equal((await stored(id)).rows, 0);
    const cli = await runCli(db.url, ['logs', String(id)]);
    assert.deepEqual([cli.code, cli.stdout, cli.stderr], [0, 'quiet\n', '[no live output kept for run 1; its output tail:]\n']);
  });
});
