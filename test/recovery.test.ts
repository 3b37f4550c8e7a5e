// Failed workers: recovered once by whichever node gets there first, under the default or the
// re-queue policy; a standby takes over a worker whose node was SIGKILLed.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { countEvents, nextEvent } from './helpers/events.js';
import { addTask, getTask, getWorker, markClaimed, startNode, stopAllNodes, tempDir, useTestDatabase, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';
import { migrate } from '../src/db/migrate.js';
import { isProcessGroupAlive } from '../src/node/process/process-group.js';
import type { Listener } from '../src/db/listener.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const db = useTestDatabase('recovery');

/** A worker row that failed: active, its lease lapsed an hour ago, running `task` under epoch 5. */
async function failedWorker(workerId: number, group: number, recoverPolicy: string | null = null): Promise<number> {
  await db.query("INSERT INTO long_task.worker (id, group_id, active, locked_until, lease_epoch, node_name) VALUES ($1, $2, true, now() - interval '1 hour', 5, 'gone')", [workerId, group]);
  const id = await addTask(db, ['true'], { group, recoverPolicy });
  // What the failed node's claim did.
  await markClaimed(db, id, workerId, 5);
  return id;
}

describe('recovery of failed workers', () => {
  it('any node recovers another group\'s failed worker, once, even with three nodes racing', async () => {
    await db.query('CREATE TABLE public.recoveries (worker_id int, at timestamptz DEFAULT clock_timestamp())');
    // The default policy, plus a record of every call.
    await db.query(`
      CREATE OR REPLACE FUNCTION long_task.recover_worker_tasks(p_worker_id int, p_epoch bigint) RETURNS void
      LANGUAGE sql AS $$
        INSERT INTO public.recoveries (worker_id) VALUES (p_worker_id);
        UPDATE long_task.task SET state_id = 'CF', error = 'Worker failed', finished = now()
         WHERE worker_id = p_worker_id AND state_id IN ('AE', 'AC');
      $$`);
    const task = await failedWorker(50, 51);
    // Three nodes of group 52, renewing every second: each sees worker 50 failed.
    const nodes = await Promise.all([1, 2, 3].map((i) => startNode(db, { workerId: 100 + i, groupId: 52, leaseSeconds: 2 })));
    await until(async () => (await getTask(db, task)).state_id === 'CF', 'the failed worker\'s task to be recovered');
    const t = await getTask(db, task);
    assert.equal(t.error, 'Worker failed');
    const { rows: worker } = await db.query<{ active: boolean; lease_epoch: string }>('SELECT active, lease_epoch FROM long_task.worker WHERE id = 50');
    assert.equal(worker[0]!.active, false);
    assert.equal(Number(worker[0]!.lease_epoch), 6, 'the recovery starts a new term, fencing off the old holder');
    // Two more renewals of every node (each renewal reads the workers to recover): still one call.
    await Promise.all(nodes.map(async (node) => {
      await nextEvent(node, 'lease:renewed');
      await nextEvent(node, 'lease:renewed');
    }));
    const { rows: calls } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM public.recoveries WHERE worker_id = 50');
    assert.equal(calls[0]!.n, 1);
    await stopAllNodes();
  });

  it('the re-queue policy, per task or per group, queues the tasks again and they run to completion', async () => {
    // Restore the shipped default policy (the previous test replaced it): undo migration 3, redo
    // it (and the migrations after it, which may run again).
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query('DROP FUNCTION long_task.recover_worker_tasks(int)');
    await client.query('DROP FUNCTION long_task.recover_worker_tasks(int, bigint)');
    await client.query('DROP FUNCTION long_task.worker_lock_held(int, int)');
    await client.query('DROP FUNCTION long_task.worker_lock_class()');
    await client.query('ALTER TABLE long_task.worker DROP COLUMN lock_pid, DROP COLUMN old_epoch, DROP COLUMN old_until');
    await client.query('DELETE FROM long_task.migrations WHERE id >= 3');
    await client.query('DROP TABLE long_task.function_source');
    await client.query('DROP TABLE long_task.task_run');
    // Migrations 6 to 9's triggers read columns dropped here; they create them again.
    for (const trigger of ['task_before_update', 'task_schedule_rules_update', 'task_deps_rules_insert', 'task_deps_rules_update',
      'task_deps_release_insert', 'task_deps_release_update', 'task_deps_release_delete', 'task_overlap_release_update',
      'task_limit_rules']) {
      await client.query(`DROP TRIGGER ${trigger} ON long_task.task`);
    }
    await client.query(`ALTER TABLE long_task.task DROP COLUMN attempt, DROP COLUMN end_reason, DROP COLUMN timeout,
      DROP COLUMN max_attempts, DROP COLUMN backoff_base, DROP COLUMN backoff_cap, DROP COLUMN retry_on, DROP COLUMN run_after,
      DROP COLUMN live_worker_id, DROP COLUMN live_epoch, DROP COLUMN depends_on, DROP COLUMN deps_left, DROP COLUMN shed_overlap`);
    // The newest version's triggers read columns just dropped; migration 5 replaces them.
    await client.query('CREATE OR REPLACE FUNCTION long_task.task_before_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$');
    await client.query('CREATE OR REPLACE FUNCTION long_task.task_notify() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$');
    await client.query('DROP TABLE long_task.task_group');
    await client.query('ALTER TABLE long_task.task DROP COLUMN recover_policy');
    await client.query('ALTER TABLE long_task.worker DROP COLUMN standby_node, DROP COLUMN standby_seen');
    await migrate(client, 'long_task');
    await client.end();

    await db.query("INSERT INTO long_task.task_group (id, recover_policy) VALUES (62, 'requeue')");
    const perTask = await failedWorker(60, 61, 'requeue');
    const perGroup = await failedWorker(63, 62);
    const failing = await failedWorker(64, 62, 'fail');
    await startNode(db, { workerId: 110, groupId: 61, leaseSeconds: 2 });
    await startNode(db, { workerId: 111, groupId: 62, leaseSeconds: 2 });
    await waitEnded(db, [perTask, perGroup, failing]);
    for (const [id, node] of [[perTask, 110], [perGroup, 111]] as const) {
      await waitEnded(db, [id]);
      const t = await getTask(db, id);
      assert.equal(t.state_id, 'CS', `task ${id} ran again`);
      assert.equal(t.worker_id, node);
    }
    const t = await getTask(db, failing);
    assert.equal(t.state_id, 'CF');
    assert.equal(t.error, 'Worker failed');
    await stopAllNodes();
  });
});

describe('lost claims', () => {
  it('a task owned by the node\'s term with no process there (a claim reply lost on the wire) fails at the next renewal', async () => {
    // The term must last the whole test: a term that ends has its runs recovered by the policy
    // (worker_failed), not failed as lost. A 2 s lease is distrusted 1.5 s after a renewal was
    // sent, which a loaded machine can miss; 8 s (renewed every 4 s) allows a 2 s stall.
    const node = await startNode(db, { workerId: 120, groupId: 120, leaseSeconds: 8 });
    const lostTerms = countEvents(node, 'lease:lost');
    const epoch = (await getWorker(db, 120))!.lease_epoch;
    // What a claim that committed without the node hearing of it leaves behind.
    const lost = await addTask(db, ['true'], { group: 121 });
    await markClaimed(db, lost, 120, epoch, { live: true, startedAgo: '1 hour' });
    // A task the node really runs is left alone: it runs until the test creates the gate.
    const dir = tempDir('lost');
    const real = await addTask(db, ['sh', '-c', 'while [ ! -e "$0/go" ]; do sleep 0.05; done', dir], { group: 120 });
    await waitEnded(db, [lost]);
    const t = await getTask(db, lost);
    assert.equal(t.state_id, 'CF');
    assert.equal(t.end_reason, 'lost');
    assert.match(String(t.error), /^Lost: /);
    const { rows: run } = await db.query('SELECT end_reason, finished FROM long_task.task_run WHERE task_id = $1', [lost]);
    assert.equal(run[0]!.end_reason, 'lost');
    assert.ok(run[0]!.finished, 'the lost run is over: the task may run again');
    // A renewal checks the runs that started more than half a lease ago: let two renewals
    // (one of them sent after that) see the real task.
    await until(async () => (await db.query("SELECT 1 FROM long_task.task WHERE id = $1 AND started < now() - interval '4 s'", [real])).rowCount === 1, 'the real task to run for half a lease', 30_000);
    await nextEvent(node, 'lease:renewed');
    await nextEvent(node, 'lease:renewed');
    writeFileSync(`${dir}/go`, '');
    await waitEnded(db, [real]);
    assert.deepEqual([(await getTask(db, real)).state_id, (await getTask(db, real)).end_reason], ['CS', 'completed']);
    assert.equal(lostTerms.count, 0, 'the node kept its term throughout');
    lostTerms.stop();
    await node.shutdown();
  });

  it('a lost claim of a term that ends cleanly ends CF lost with it, rather than stay AE with nothing answering for it', async () => {
    const node = await startNode(db, { workerId: 122, groupId: 122 });
    const epoch = (await getWorker(db, 122))!.lease_epoch;
    const lost = await addTask(db, ['true'], { group: 123 });
    // Claimed a moment ago: too recent for the renewal's check, which waits half a lease.
    await markClaimed(db, lost, 122, epoch, { live: true, startedAgo: '0 s' });
    await node.shutdown();
    const t = await getTask(db, lost);
    assert.equal(t.state_id, 'CF');
    assert.equal(t.end_reason, 'lost');
    const { rows: worker } = await db.query('SELECT active FROM long_task.worker WHERE id = 122');
    assert.equal(worker[0]!.active, false, 'released');
  });
});

describe('a SIGKILLed node under the re-queue policy', () => {
  it('its processes die with it, and each task runs to completion once at a time elsewhere', async () => {
    const dir = tempDir('sigkill');
    // flock -n fails while another live process of the same task holds the lock: a line in
    // "doubles" means two live processes of one task.
    const task = [
      'sh', '-c',
      // No exec before flock: the shell must live on to record the refusal (exit 75).
      'flock -n -E 75 "$0/$PG_TASKS_TASK_ID.lock" sh -c "echo \\$PG_TASKS_TASK_ID >> $0/runs; sleep 2"; rc=$?; ' +
        '[ $rc -ne 75 ] || echo "$PG_TASKS_TASK_ID" >> $0/doubles; exit $rc',
      dir,
    ];
    const victim = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'node', '--worker-id', '130', '--group', '130', '--max-tasks', '4', '--lease', '2s', '--no-migrate', '--log-level', 'warn'], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: db.url },
      stdio: 'ignore',
    });
    await until(async () => (await db.query('SELECT 1 FROM long_task.worker WHERE id = 130 AND active')).rowCount === 1, 'the victim to take its lease');
    const { rows } = await db.query<{ id: string }>(
      "INSERT INTO long_task.task (group_id, state_id, command, recover_policy) SELECT 130, 'AW', $1, 'requeue' FROM generate_series(1, 4) RETURNING id",
      [task],
    );
    const ids = rows.map((r) => Number(r.id));
    const pids = await until(async () => {
      const { rows: r } = await db.query<{ pid: number | null }>('SELECT pid FROM long_task.task WHERE id = ANY($1)', [ids]);
      return r.every((x) => x.pid) ? r.map((x) => x.pid!) : null;
    }, 'the victim to run all four');
    victim.kill('SIGKILL');
    await until(() => pids.every((pid) => !isProcessGroupAlive(pid)), 'the victim\'s task processes to die with it', 10_000);
    // Another node of the group recovers the worker and runs the re-queued tasks.
    // The victim's 2 s lease sets when its tasks are recovered; this node's own lease only
    // fences it. 8 s: a 2 s lease is distrusted 0.5 s after a late renewal, which a loaded
    // machine can miss, and its runs would then be killed and run a third time.
    await startNode(db, { workerId: 131, groupId: 130, leaseSeconds: 8 });
    await waitEnded(db, ids, 60_000);
    for (const id of ids) {
      const t = await getTask(db, id);
      assert.equal(t.state_id, 'CS', `task ${id}`);
      assert.equal(t.worker_id, 131);
    }
    assert.equal(existsSync(`${dir}/doubles`), false, 'no task had two live processes');
    const runs = readFileSync(`${dir}/runs`, 'utf8').trim().split('\n').map(Number);
    for (const id of ids) assert.equal(runs.filter((r) => r === id).length, 2, `task ${id}: the killed run and the completed one`);
    await stopAllNodes();
  });
});

describe('LISTEN health', () => {
  it('a listener that silently stops receiving is noticed by the renewal ping and reconnected', async () => {
    const node = await startNode(db, { workerId: 140, groupId: 140, leaseSeconds: 2 });
    const listener = (node as unknown as { control: { parts: { listener: Listener } } }).control.parts.listener;
    let reconnects = 0;
    listener.on('connected', () => reconnects++);
    // Behind the node's back: its LISTEN connection stays up but hears nothing any more.
    const client = (listener as unknown as { client: pg.Client })['client'];
    await client.query('UNLISTEN *');
    await until(() => reconnects > 0, 'the node to notice and reconnect its listener', 15_000);
    // The new connection hears notifications again.
    let heard = false;
    listener.on('notification', (n: { e: string; g?: number }) => {
      if (n.e === 'queued' && n.g === 140) heard = true;
    });
    const id = await addTask(db, ['true'], { group: 140 });
    await until(() => heard, 'the reconnected listener to hear the queued notification', 10_000);
    await waitEnded(db, [id], 10_000);
    await node.shutdown();
  });
});

describe('upgrades keep a user\'s policy', () => {
  it('migrations 3, 5 and 15 replace the shipped default policy, and leave a user\'s own alone', async () => {
    for (const custom of [false, true]) {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      const schema = custom ? 'upgrade_custom' : 'upgrade_default';
      await migrate(client, schema, { target: 2 });
      if (custom) {
        await client.query(`CREATE OR REPLACE FUNCTION ${schema}.recover_worker_tasks(p_worker_id int) RETURNS void LANGUAGE sql AS $$ SELECT 1 $$`);
      }
      await migrate(client, schema);
      const body = async (signature: string): Promise<string> =>
        (await client.query<{ prosrc: string }>(`SELECT prosrc FROM pg_proc WHERE oid = '${schema}.recover_worker_tasks(${signature})'::regprocedure`)).rows[0]!.prosrc;
      if (custom) {
        assert.equal((await body('int')).trim(), 'SELECT 1');
        // Version 15's policy names the terms; a user's own one-argument policy is what it calls.
        assert.match(await body('int, bigint'), /SELECT recover_worker_tasks\(p_worker_id\);/);
      } else {
        assert.match(await body('int, bigint'), /end_reason = 'worker_failed'/, 'the policy of version 5: end reasons, not error text');
        assert.match(await body('int, bigint'), /lease_epoch, 0\) <= p_epoch/, 'the policy of version 15: up to a term');
        assert.match(await body('int'), /recover_worker_tasks\(p_worker_id, 9223372036854775807\)/, 'the one-argument form: every term');
      }
      await client.end();
    }
  });
});

describe('standby', () => {
  it('takes over a worker whose node was SIGKILLed at once; its task processes died with it; its tasks are recovered once its lease + delay has passed', async (t) => {
    // The holder is a real node process, killed the hard way.
    const holder = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'node', '--worker-id', '70', '--group', '70', '--lease', '2s', '--no-migrate', '--log-level', 'warn'], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: db.url },
      stdio: 'ignore',
    });
    // Holding the lease and the worker's lock (lock_pid): what a standby's wake-up waits on.
    await until(async () => (await db.query('SELECT 1 FROM long_task.worker WHERE id = 70 AND active AND lock_pid IS NOT NULL')).rowCount === 1, 'the holder to take its lease and lock');
    const standby = await startNode(db, { workerId: 70, groupId: 70, leaseSeconds: 2, nodeName: 'standby' });
    assert.equal(standby.state, 'standby');
    const task = await addTask(db, ['sleep', '300'], { group: 70 });
    const pid = Number(await until(async () => (await getTask(db, task)).pid, 'the holder to start the task'));
    holder.kill('SIGKILL');
    const killedAt = performance.now();
    await until(() => standby.state === 'active', 'the standby to take over', 30_000);
    const tookMs = performance.now() - killedAt;
    const worker = (await db.query<{ node_name: string; old_epoch: string | null; recoverable: Date; at_once: boolean }>(
      "SELECT node_name, old_epoch, old_until + interval '2 s' AS recoverable, lease_taken < old_until + interval '2 s' AS at_once FROM long_task.worker WHERE id = 70")).rows[0]!;
    assert.equal(worker.node_name, 'standby');
    // At once, in database time: before the lease (2 s) + recovery delay (2 s) it took before;
    // the old term, not yet recoverable then, waits for its recovery.
    assert.equal(worker.at_once, true, `taken over ${Math.round(tookMs)} ms after SIGKILL, once the old term was recoverable`);
    // The old term's task waits for its lease + delay: its node might only be cut off.
    assert.equal((await getTask(db, task)).state_id, 'AE');
    // New work starts at once under the new term.
    const fresh = await addTask(db, ['true'], { group: 70 });
    await waitEnded(db, [fresh]);
    assert.equal((await getTask(db, fresh)).node_name, 'standby');
    await until(async () => (await getTask(db, task)).state_id === 'CF', 'the old term\'s task to be recovered', 15_000);
    const row = await getTask(db, task);
    assert.equal(row.error, 'Worker failed');
    assert.ok(+(row.finished as Date) >= +worker.recoverable, `recovered at ${(row.finished as Date).toISOString()}, before ${worker.recoverable.toISOString()}`);
    t.diagnostic(`take-over ${Math.round(tookMs)} ms after SIGKILL; the old task recovered ${+(row.finished as Date) - +worker.recoverable} ms after its lease + delay`);
    // The task's process died with its node (the node's reaper saw the node go).
    await until(() => !isProcessGroupAlive(pid), 'the killed node\'s task process to die with it', 10_000);
    await standby.shutdown();
  });

  it("a run's timeout outlives its node: the run dies with the node, and the standby kills the retry at its own deadline", async () => {
    const holder = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'node', '--worker-id', '71', '--group', '71', '--lease', '2s', '--no-migrate', '--log-level', 'warn'], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: db.url },
      stdio: 'ignore',
    });
    await until(async () => (await db.query('SELECT 1 FROM long_task.worker WHERE id = 71 AND active')).rowCount === 1, 'the holder to take its lease');
    // The standby's own lease: 8 s, so that a loaded machine does not end its term (and the
    // retry with it, worker_failed) before the retry's timeout does.
    const standby = await startNode(db, { workerId: 71, groupId: 71, leaseSeconds: 8, nodeName: 'standby-71', killGraceMs: 500 });
    const { rows } = await db.query<{ id: string }>(
      "INSERT INTO long_task.task (group_id, state_id, command, timeout, max_attempts, backoff_base) VALUES (71, 'AW', '{sleep,300}', '3 s', 2, '100 ms') RETURNING id",
    );
    const task = Number(rows[0]!.id);
    const pid = Number(await until(async () => (await getTask(db, task)).pid, 'the holder to start the task'));
    holder.kill('SIGKILL');
    try {
      await until(async () => (await getTask(db, task)).state_id === 'CF', 'the retry to time out on the standby', 60_000);
      const row = await getTask(db, task);
      assert.deepEqual([row.end_reason, row.attempt, row.worker_id], ['timeout', 2, 71]);
      const { rows: runs } = await db.query<{ end_reason: string; node_name: string; deadline: Date | null; started: Date }>(
        'SELECT end_reason, node_name, deadline, started FROM long_task.task_run WHERE task_id = $1 ORDER BY attempt', [task]);
      assert.deepEqual(runs.map((r) => r.end_reason), ['worker_failed', 'timeout']);
      assert.equal(runs[1]!.node_name, 'standby-71');
      assert.equal(+runs[1]!.deadline! - +runs[1]!.started, 3_000, "the retry's deadline: its start + the timeout");
      assert.ok(!isProcessGroupAlive(pid), "the first run's process died with its node");
    } finally {
      await standby.shutdown();
    }
  });
});
