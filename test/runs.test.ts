// Runs: each execution of a task is a run with its own identity and history, and a task never
// has two live processes, whatever users write to its row while its process runs. Built on
// the seed's own example (looped_task_pairs.py): a task's process sets its own row to CS by
// SQL and keeps running for a moment, and its partner re-queues it meanwhile.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import pino from 'pino';
import { TaskClient, TaskNotFoundError, WaitTimeoutError } from '../src/index.js';
import { isProcessAlive } from '../src/node/process/process-group.js';
import { runCli } from './helpers/cli.js';
import { addTask, getTask, markClaimed, startNode, tempDir, useTestDatabase, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';

const db = useTestDatabase('runs', { setup: (db) => startNode(db, { workerId: 1, maxTasks: 4, logger }) });
const warnings: string[] = [];
// The node's warnings, to check that none blames the lease for what a user wrote.
const logger = pino(
  { level: 'warn' },
  new Writable({
    write(chunk: Buffer, _encoding, callback) {
      warnings.push(chunk.toString());
      callback();
    },
  }),
);

/**
 * A task that marks its own row CS, then runs on until the test creates dir/go (a gate, not a
 * sleep: on a loaded machine a fixed few seconds can pass before the test has looked). Each
 * process takes a lock directory for its whole life: a second live process of the same task
 * finds it taken and records an overlap.
 */
function selfCompleting(dir: string): string[] {
  const script = `
    mkdir "$2/lock" 2>/dev/null || echo "overlap $$" >> "$2/anomalies"
    echo "$$" >> "$2/runs"
    psql "$0" -qAtc "UPDATE long_task.task SET state_id = 'CS' WHERE id = $1" >/dev/null
    while [ ! -e "$2/go" ]; do sleep 0.05; done
    rmdir "$2/lock"`;
  return ['sh', '-c', script, db.url, '%TASK', dir];
}

async function runsOf(id: number): Promise<Array<Record<string, unknown>>> {
  return (await db.query('SELECT * FROM long_task.task_run WHERE task_id = $1 ORDER BY attempt', [id])).rows;
}

const isLive = (dir: string): boolean => existsSync(`${dir}/lock`);

describe('one live process per task, whatever users write', () => {
  it('a task that completes itself and is re-queued while its process lives waits for that process, then runs again', async () => {
    const dir = tempDir('runs-self');
    const id = await addTask(db, selfCompleting(dir));
    await until(async () => (await getTask(db, id)).state_id === 'CS' && isLive(dir), 'the task to mark itself CS while it runs');
    // The seed's re-queue, while run 1's process still runs.
    await db.query("UPDATE long_task.task SET state_id = 'AW', worker_id = NULL WHERE id = $1 AND state_id LIKE 'C%'", [id]);
    const meanwhile = await getTask(db, id);
    assert.equal(meanwhile.state_id, 'AW');
    assert.equal(meanwhile.attempt, 1, 'no second run while the first process lives');
    assert.deepEqual([meanwhile.live_worker_id, (await runsOf(id)).length], [1, 0], 'run 1 is live on worker 1 (its task_run row is written when it ends)');
    const shown = await runCli(db.url, ['show', String(id)]);
    assert.match(shown.stdout, /^live run: +attempt 1 still runs on worker 1/m);
    assert.equal(isLive(dir), true, 'run 1 lived through every check above');
    writeFileSync(`${dir}/go`, '');

    await until(async () => (await getTask(db, id)).attempt === 2, 'run 2 to start once run 1 is gone', 30_000);
    await until(async () => (await runsOf(id)).every((r) => r.finished !== null) && (await runsOf(id)).length === 2, 'both runs to end', 30_000);

    assert.equal(existsSync(`${dir}/anomalies`) ? readFileSync(`${dir}/anomalies`, 'utf8') : '', '', 'two live processes of one task');
    const runs = await runsOf(id);
    assert.deepEqual(runs.map((r) => [r.attempt, r.end_reason, r.exit_code]), [[1, 'completed', 0], [2, 'completed', 0]]);
    const pids = readFileSync(`${dir}/runs`, 'utf8').trim().split('\n').map(Number);
    assert.deepEqual(runs.map((r) => r.pid), pids, 'each run records its own process');
    assert.ok((runs[1]!.started as Date) >= (runs[0]!.finished as Date), 'run 2 started after run 1 ended');
    const task = await getTask(db, id);
    assert.equal(task.state_id, 'CS');
    assert.equal(task.exit_code, 0, "the task row keeps the latest run's figures");
    assert.equal(task.pid, pids[1]);
    assert.deepEqual(warnings.filter((w) => /not written/.test(w)), [], 'no warning blames the lease');
  });

  it('cancel kills the process of a task re-queued while it runs; the task ends CC and no new run starts', async () => {
    const dir = tempDir('runs-cancel');
    const id = await addTask(db, selfCompleting(dir));
    await until(async () => (await getTask(db, id)).state_id === 'CS' && isLive(dir), 'the task to mark itself CS while it runs');
    await db.query("UPDATE long_task.task SET state_id = 'AW', worker_id = NULL WHERE id = $1", [id]);
    // The seed's cancel: a waiting task whose process still runs is cancelled by killing it.
    await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1 AND state_id LIKE 'A%'", [id]);
    assert.equal((await getTask(db, id)).state_id, 'AC');
    await waitEnded(db, [id]);
    const task = await getTask(db, id);
    assert.equal(task.state_id, 'CC');
    assert.equal(task.end_reason, 'cancelled');
    assert.equal(task.attempt, 1);
    const runs = await runsOf(id);
    assert.equal(runs.length, 1);
    assert.equal(runs[0]!.end_reason, 'cancelled');
    assert.equal(runs[0]!.exit_signal, 'SIGTERM');
    assert.equal(isLive(dir), true, 'killed: it never reached its own cleanup');
  });

  it('a task set to CS by hand while it runs keeps its process tracked; pg-tasks cancel still kills it', async () => {
    const id = await addTask(db, ['sleep', '60']);
    await until(async () => (await getTask(db, id)).pid !== null, 'the task to start');
    await db.query("UPDATE long_task.task SET state_id = 'CS' WHERE id = $1", [id]);
    const result = await runCli(db.url, ['cancel', String(id)]);
    assert.equal(result.code, 0, result.stderr);
    // (No run row yet is not an ended run: `undefined !== null` passed at once, and the test
    // then read a run that was not written yet.)
    await until(async () => ((await runsOf(id))[0]?.finished ?? null) !== null, 'the run to end');
    const [run] = await runsOf(id);
    assert.equal(run!.end_reason, 'cancelled');
    assert.equal((await getTask(db, id)).state_id, 'CC');
  });
});

describe('run history', () => {
  it('keeps every run with its end reason; pg-tasks runs lists them and show gives the attempt', async () => {
    const dir = tempDir('runs-history');
    const id = await addTask(db, ['sh', '-c', 'test -f "$0/ok" || { touch "$0/ok"; echo failing; exit 3; }', dir]);
    await waitEnded(db, [id]);
    assert.equal((await getTask(db, id)).end_reason, 'exit_code');
    await db.query("UPDATE long_task.task SET state_id = 'AW', worker_id = NULL WHERE id = $1", [id]);
    await until(async () => (await getTask(db, id)).state_id === 'CS', 'the second run to complete');
    const task = await getTask(db, id);
    assert.equal(task.attempt, 2);
    assert.equal(task.end_reason, 'completed');
    const runs = await runsOf(id);
    assert.deepEqual(runs.map((r) => [r.attempt, r.end_reason, r.exit_code, r.worker_id]), [[1, 'exit_code', 3, 1], [2, 'completed', 0, 1]]);
    assert.match(String(runs[0]!.error), /^exit code 3\nfailing/);

    const listed = await runCli(db.url, ['runs', String(id)]);
    assert.equal(listed.code, 0, listed.stderr);
    const lines = listed.stdout.trim().split('\n');
    assert.match(lines[0]!, /^ATTEMPT\s+STARTED\s+FINISHED\s+END\s+EXIT/);
    assert.match(lines[1]!, /^1\s+\S+\s+\S+\s+exit_code\s+3\s/);
    assert.match(lines[2]!, /^2\s+\S+\s+\S+\s+completed\s+0\s/);
    const shown = await runCli(db.url, ['show', String(id)]);
    assert.match(shown.stdout, /^state: +CS \(completed\)$/m);
    assert.match(shown.stdout, /^attempt: +2$/m);
    const never = await runCli(db.url, ['runs', String(await addTask(db, ['true'], { state: 'DR' }))]);
    assert.match(never.stdout, /has not run yet/);
    const missing = await runCli(db.url, ['runs', '999999']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^pg-tasks: task 999999 not found/);
    await db.query('DELETE FROM long_task.task WHERE id = $1', [id]);
    assert.deepEqual(await runsOf(id), [], "a deleted task's runs go with it");
  });
});

describe('TaskClient.wait', () => {
  it('resolves with the final task once it ends (not while it waits for a retry), at once if it has, and times out', async () => {
    const client = new TaskClient({ connectionString: db.url });
    try {
      const dir = tempDir('wait');
      // Fails once, then succeeds: the wait spans the retry.
      const retried = await client.add({ command: ['sh', '-c', 'test -f "$0/ok" || { touch "$0/ok"; exit 1; }', dir], maxAttempts: 2, backoffBaseMs: 300 });
      const slow = await client.add({ command: ['sleep', '30'] });
      const [a, b] = await Promise.all([client.wait(retried.id), client.wait(retried.id, { timeout: 60_000 })]);
      assert.deepEqual([a.state_id, a.attempt, b.state_id], ['CS', 2, 'CS']);
      assert.equal((await client.wait(retried.id)).state_id, 'CS', 'an ended task resolves at once');

      await assert.rejects(client.wait(slow.id, { timeout: 200 }), (error: unknown) => error instanceof WaitTimeoutError && /did not end within 200 ms/.test(error.message));
      assert.equal((await client.get(slow.id)).state_id, 'AE', 'a wait that timed out leaves the task alone');
      const cancelled = client.wait(slow.id);
      await client.cancel(slow.id);
      assert.equal((await cancelled).state_id, 'CC');

      // Many ended by one statement: the notification names none, and every waiter looks again.
      // (Group 98 has no node: they wait until cancelled, all at once.)
      const waiting = await Promise.all(Array.from({ length: 120 }, () => client.add({ command: ['true'], groupId: 98 })));
      // Ended only once every wait has read its row (still AW): then the notification is what tells them.
      const waiter = (client as unknown as { waiter: { check(ids: number[], notFound: unknown): Promise<void> } }).waiter;
      const check = waiter.check.bind(waiter);
      let firstReads = 0;
      waiter.check = async (ids, notFound) => {
        await check(ids, notFound);
        if (notFound) firstReads += ids.length;
      };
      const ended = Promise.all(waiting.map((t) => client.wait(t.id, { timeout: 60_000 })));
      await until(() => firstReads === waiting.length, 'every wait to read its task once');
      await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = ANY($1)", [waiting.map((t) => t.id)]);
      assert.ok((await ended).every((t) => t.state_id === 'CC'));
      await assert.rejects(client.wait(999_999_999), TaskNotFoundError);
    } finally {
      await client.close();
    }
  });
});

describe('resource use', () => {
  it("records a run's CPU time and peak memory where the spawn helper starts it (null with child_process)", async () => {
    const id = await addTask(db, ['sh', '-c', 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done']);
    await waitEnded(db, [id], 60_000);
    const [run] = await runsOf(id);
    const shown = await runCli(db.url, ['show', String(id)]);
    if (process.env.PGTASKS_SPAWNER === 'node') {
      assert.equal(run!.cpu_user_ms, null);
      assert.doesNotMatch(shown.stdout, /^used:/m);
      return;
    }
    assert.ok(Number(run!.cpu_user_ms) + Number(run!.cpu_system_ms) > 0, `cpu ${Number(run!.cpu_user_ms)} + ${Number(run!.cpu_system_ms)} ms`);
    assert.ok(Number(run!.max_rss_kb) > 0, `peak ${Number(run!.max_rss_kb)} kB`);
    assert.match(shown.stdout, /^used: +cpu \d+\.\d\ds user \+ \d+\.\d\ds system, peak \d+\.\d MB$/m);
  });
});

describe('timeouts', () => {
  it('a run past its timeout is killed, whole tree, even what ignores SIGTERM, and ends CF timeout', async () => {
    const dir = tempDir('runs-timeout');
    // The shell and its children ignore SIGTERM (an ignored signal is inherited): only the
    // SIGKILL after the grace period (2 s in these tests) ends them.
    const script = 'trap "" TERM; sleep 300 & echo $! >> "$0/pids"; sleep 300 & echo $! >> "$0/pids"; echo $$ >> "$0/pids"; wait';
    const result = await runCli(db.url, ['add', '--timeout', '1s', '--', 'sh', '-c', script, dir]);
    assert.equal(result.code, 0, result.stderr);
    const id = Number(result.stdout.trim());
    const started = performance.now();
    await waitEnded(db, [id], 60_000);
    const elapsed = performance.now() - started;
    const task = await getTask(db, id);
    assert.equal(task.state_id, 'CF');
    assert.equal(task.end_reason, 'timeout');
    assert.match(String(task.error), /^timed out after 1s/);
    assert.equal(task.exit_signal, 'SIGKILL', 'it ignored SIGTERM: the grace period ran out');
    const [run] = await runsOf(id);
    assert.equal(run!.end_reason, 'timeout');
    assert.ok(run!.deadline, 'the deadline is in the run row');
    assert.equal(((run!.deadline as Date).getTime() - (run!.started as Date).getTime()), 1_000);
    const pids = readFileSync(`${dir}/pids`, 'utf8').trim().split('\n').map(Number);
    assert.equal(pids.length, 3);
    assert.deepEqual(pids.filter((pid) => isProcessAlive(pid)), [], 'the whole tree is dead when the run ends');
    assert.ok(elapsed >= 1_000, `ended after ${Math.round(elapsed)} ms, before its timeout`);
  });

  it("a group's timeout applies to its tasks without one of their own; a task's own wins; a run within its timeout completes", async () => {
    await db.query("INSERT INTO long_task.task_group (id, timeout) VALUES (7, '1 second')");
    const node = await startNode(db, { workerId: 7, groupId: 7, maxTasks: 4, logger });
    try {
      const capped = await addTask(db, ['sleep', '300'], { group: 7 });
      const { rows } = await db.query<{ id: string }>("INSERT INTO long_task.task (group_id, state_id, command, timeout) VALUES (7, 'AW', '{sleep,2}', '1 minute') RETURNING id");
      const own = Number(rows[0]!.id);
      await waitEnded(db, [capped, own], 60_000);
      assert.equal((await getTask(db, capped)).end_reason, 'timeout');
      assert.equal((await getTask(db, own)).end_reason, 'completed');
    } finally {
      await node.shutdown();
    }
  });

  it('refuses a timeout that is not a positive duration, at the CLI and in SQL', async () => {
    const zero = await runCli(db.url, ['add', '--timeout', '0s', '--', 'true']);
    assert.equal(zero.code, 1);
    assert.match(zero.stderr, /expected a duration above 0/);
    await assert.rejects(db.query("INSERT INTO long_task.task (state_id, command, timeout) VALUES ('DR', '{true}', '-1 second')"), /task_timeout_positive/);
  });
});

describe('retries', () => {
  /** Fails until its attempt number (PG_TASKS_ATTEMPT is not given: counted in a file) reaches `okAt`. */
  function failUntil(dir: string, okAt: number): string[] {
    return ['sh', '-c', `echo "$$" >> "$0/starts"; n=$(wc -l < "$0/starts"); [ "$n" -ge ${okAt} ] || { echo "attempt $n fails"; exit 7; }`, dir];
  }

  it('a task failing twice then succeeding ends CS at attempt 3, with 3 runs and growing gaps between them', async () => {
    const dir = tempDir('retry-ok');
    // The backoff each failed run was given, as the node wrote it (run_after, cleared again
    // when it is due): the gap between runs is that plus however long the node takes to claim
    // and start, which on a loaded machine is hundreds of ms and varies more than the jitter.
    await db.query('CREATE TABLE public.retry_due (task_id bigint, attempt int, run_after timestamptz)');
    await db.query(`CREATE FUNCTION public.record_retry_due() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO public.retry_due VALUES (NEW.id, NEW.attempt, NEW.run_after); RETURN NULL; END $$`);
    await db.query(`CREATE TRIGGER record_retry_due AFTER UPDATE OF run_after ON long_task.task FOR EACH ROW
      WHEN (NEW.run_after IS NOT NULL AND NEW.run_after IS DISTINCT FROM OLD.run_after) EXECUTE FUNCTION public.record_retry_due()`);
    const result = await runCli(db.url, ['add', '--max-attempts', '5', '--backoff', '300ms..10s', '--', ...failUntil(dir, 3)]);
    assert.equal(result.code, 0, result.stderr);
    const id = Number(result.stdout.trim());
    await until(async () => (await getTask(db, id)).state_id === 'CS', 'the third attempt to succeed', 60_000);
    const task = await getTask(db, id);
    assert.equal(task.attempt, 3);
    assert.equal(task.end_reason, 'completed');
    const runs = await runsOf(id);
    assert.deepEqual(runs.map((r) => [r.attempt, r.end_reason, r.exit_code]), [[1, 'exit_code', 7], [2, 'exit_code', 7], [3, 'completed', 0]]);
    const { rows: due } = await db.query<{ attempt: number; run_after: Date }>('SELECT attempt, run_after FROM public.retry_due WHERE task_id = $1 ORDER BY attempt', [id]);
    await db.query('DROP TRIGGER record_retry_due ON long_task.task');
    assert.deepEqual(due.map((d) => d.attempt), [1, 2], 'one backoff after each failed run');
    // run_after and the run's finished are the same statement's now(): their difference is the backoff.
    const ms = (a: unknown, b: unknown): number => (b as Date).getTime() - (a as Date).getTime();
    const [first, second] = [ms(runs[0]!.finished, due[0]!.run_after), ms(runs[1]!.finished, due[1]!.run_after)];
    // 300 ms × 2^(attempt − 1) × (0.75 … 1.25): 225-375 ms, then 450-750 ms.
    assert.ok(first >= 225 && first <= 375, `first backoff ${first} ms`);
    assert.ok(second >= 450 && second <= 750, `second backoff ${second} ms`);
    // No run starts before its backoff has passed: each gap is at least its backoff.
    assert.ok(ms(runs[0]!.finished, runs[1]!.started) >= first, `first gap ${ms(runs[0]!.finished, runs[1]!.started)} ms, backoff ${first} ms`);
    assert.ok(ms(runs[1]!.finished, runs[2]!.started) >= second, `second gap ${ms(runs[1]!.finished, runs[2]!.started)} ms, backoff ${second} ms`);
    assert.equal(readFileSync(`${dir}/starts`, 'utf8').trim().split('\n').length, 3, 'one process per attempt');
  });

  it('attempts exhausted: the task ends CF as before; a cancelled run never retries', async () => {
    const dir = tempDir('retry-exhausted');
    const { rows } = await db.query<{ id: string }>(
      "INSERT INTO long_task.task (state_id, command, max_attempts, backoff_base) VALUES ('AW', $1, 2, '100 ms') RETURNING id",
      [failUntil(dir, 99)],
    );
    const id = Number(rows[0]!.id);
    await until(async () => (await getTask(db, id)).state_id === 'CF', 'the second attempt to fail for good', 60_000);
    assert.equal((await getTask(db, id)).attempt, 2);
    assert.equal((await runsOf(id)).length, 2);

    const { rows: c } = await db.query<{ id: string }>("INSERT INTO long_task.task (state_id, command, max_attempts) VALUES ('AW', '{sleep,60}', 5) RETURNING id");
    const cancelled = Number(c[0]!.id);
    await until(async () => (await getTask(db, cancelled)).pid !== null, 'the task to start');
    await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1", [cancelled]);
    await waitEnded(db, [cancelled]);
    assert.equal((await getTask(db, cancelled)).state_id, 'CC');
    assert.equal((await runsOf(cancelled)).length, 1);
  });

  it('a retry runs once however many nodes race for it, and waits out its backoff across a node restart', async () => {
    const G = 9;
    const dir = tempDir('retry-race');
    const nodes = await Promise.all([91, 92, 93].map((w) => startNode(db, { workerId: w, groupId: G, maxTasks: 2, logger })));
    try {
      const { rows } = await db.query<{ id: string }>(
        "INSERT INTO long_task.task (group_id, state_id, command, max_attempts, backoff_base) VALUES ($1, 'AW', $2, 4, '200 ms') RETURNING id",
        [G, failUntil(dir, 4)],
      );
      const id = Number(rows[0]!.id);
      await until(async () => (await getTask(db, id)).state_id === 'CS', 'the fourth attempt to succeed', 60_000);
      assert.deepEqual((await runsOf(id)).map((r) => r.attempt), [1, 2, 3, 4]);
      assert.equal(readFileSync(`${dir}/starts`, 'utf8').trim().split('\n').length, 4, 'each attempt ran exactly once');
    } finally {
      await Promise.all(nodes.map((n) => n.shutdown()));
    }

    // A retry due while no node of its group runs: the next node to start runs it.
    const later = tempDir('retry-restart');
    const { rows } = await db.query<{ id: string }>(
      "INSERT INTO long_task.task (group_id, state_id, command, max_attempts, backoff_base) VALUES ($1, 'AW', $2, 2, '1 second') RETURNING id",
      [G, failUntil(later, 2)],
    );
    const id = Number(rows[0]!.id);
    const node = await startNode(db, { workerId: 94, groupId: G, logger });
    await until(async () => (await getTask(db, id)).run_after !== null, 'the first attempt to fail and schedule its retry');
    await node.shutdown();
    assert.equal((await getTask(db, id)).state_id, 'AW');
    const again = await startNode(db, { workerId: 94, groupId: G, logger });
    try {
      await until(async () => (await getTask(db, id)).state_id === 'CS', 'the retry to run on the restarted node', 30_000);
      assert.equal((await getTask(db, id)).attempt, 2);
    } finally {
      await again.shutdown();
    }
  });

  it('schedule sets the run settings too, and --clone passes them to each copy', async () => {
    const parent = await addTask(db, ['sleep', '30'], { state: 'DR' });
    const result = await runCli(db.url, ['schedule', String(parent), '--every', '1h', '--clone', '--timeout', '300ms', '--max-attempts', '2', '--backoff', '100ms..1s']);
    assert.equal(result.code, 0, result.stderr);
    // Every hour from now: the first slot is now, so one copy is queued at once.
    const clone = Number(await until(async () => (await db.query<{ id: string }>('SELECT id FROM long_task.task WHERE shed_parent_id = $1', [parent])).rows[0]?.id, 'the first copy'));
    await runCli(db.url, ['unschedule', String(parent)]);
    await until(async () => (await getTask(db, clone)).state_id === 'CF', 'the copy to time out on both its attempts', 30_000);
    const task = await getTask(db, clone);
    assert.deepEqual([task.end_reason, task.attempt, task.max_attempts], ['timeout', 2, 2]);
    assert.deepEqual((await runsOf(clone)).map((r) => r.end_reason), ['timeout', 'timeout']);
  });

  it('refuses bad retry settings at the CLI, and in SQL', async () => {
    for (const [args, message] of [
      [['--max-attempts', '0'], /--max-attempts/],
      [['--backoff', '10s..1s'], /below its base/],
      [['--backoff', 'soon'], /expected a duration/],
      [['--retry-on', 'cancelled'], /unknown end reason "cancelled"/],
    ] as Array<[string[], RegExp]>) {
      const result = await runCli(db.url, ['add', ...args, '--', 'true']);
      assert.equal(result.code, 1, args.join(' '));
      assert.match(result.stderr, message);
      assert.equal(result.stderr.trim().split('\n').length <= 2, true, result.stderr);
    }
    await assert.rejects(db.query("INSERT INTO long_task.task (state_id, command, retry_on) VALUES ('DR', '{true}', '{cancelled}')"), /task_retry_on_valid/);
    const { rows } = await db.query<{ id: string }>("INSERT INTO long_task.task (state_id, command) VALUES ('DR', '{true}') RETURNING id");
    await assert.rejects(db.query('UPDATE long_task.task SET attempt = 5 WHERE id = $1', [rows[0]!.id]), /the attempt of task \d+ is kept by pg-tasks/);
  });
});

describe('recovery on end reasons', () => {
  it("a failed worker's executing task retries on worker_failed when it has attempts left; one being cancelled ends CC", async () => {
    // Inactive until its tasks are in place: another node's renewal would recover it at once.
    await db.query("INSERT INTO long_task.worker (id, group_id, active, locked_until, lease_epoch) VALUES (200, 20, false, now() - interval '1 hour', 3)");
    const claimedBy200 = async (maxAttempts: number | null): Promise<number> => {
      const id = await addTask(db, ['true'], { group: 20, maxAttempts });
      // What a claim by worker 200, then its death, leaves behind.
      await markClaimed(db, id, 200, 3, { live: true });
      return id;
    };
    const retrying = await claimedBy200(3);
    const once = await claimedBy200(null);
    const cancelling = await claimedBy200(3);
    await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1", [cancelling]);
    await db.query('UPDATE long_task.worker SET active = true WHERE id = 200');
    const node = await startNode(db, { workerId: 200, groupId: 20, logger });
    try {
      await waitEnded(db, [once, cancelling]);
      assert.deepEqual([(await getTask(db, once)).state_id, (await getTask(db, once)).end_reason], ['CF', 'worker_failed']);
      assert.deepEqual([(await getTask(db, cancelling)).state_id, (await getTask(db, cancelling)).end_reason], ['CC', 'cancelled']);
      await until(async () => (await getTask(db, retrying)).state_id === 'CS', 'the retry after the worker failure to run', 30_000);
      const runs = await runsOf(retrying);
      assert.deepEqual(runs.map((r) => [r.attempt, r.end_reason]), [[1, 'worker_failed'], [2, 'completed']]);
    } finally {
      await node.shutdown();
    }
  });
});
