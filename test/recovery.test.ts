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
    // Migration 9 creates claim_limits with the outputs it had then; version 27 gave it more.
    await client.query('DROP FUNCTION long_task.claim_limits(int, int, boolean)');
    await client.query('ALTER TABLE long_task.worker DROP COLUMN lock_pid, DROP COLUMN old_epoch, DROP COLUMN old_until, DROP COLUMN timeline');
    await client.query('DELETE FROM long_task.migrations WHERE id >= 3');
    await client.query('DROP TABLE long_task.function_source');
    await client.query('DROP TABLE long_task.task_run');
    // Migrations 6 to 9's triggers (and task_bounds, version 19, task_owner_rules, 21; task_before_update, 22) read columns dropped here; they create them again.
    for (const trigger of ['task_before_update', 'task_schedule_rules_update', 'task_deps_rules_insert', 'task_deps_rules_update',
      'task_deps_release_insert', 'task_deps_release_update', 'task_deps_release_delete', 'task_overlap_release_update',
      'task_limit_rules', 'task_bounds_insert', 'task_bounds_update', 'task_owner_rules_insert', 'task_owner_rules_update']) {
      await client.query(`DROP TRIGGER ${trigger} ON long_task.task`);
    }
    await client.query(`ALTER TABLE long_task.task DROP COLUMN attempt, DROP COLUMN end_reason, DROP COLUMN timeout,
      DROP COLUMN max_attempts, DROP COLUMN backoff_base, DROP COLUMN backoff_cap, DROP COLUMN retry_on, DROP COLUMN run_after,
      DROP COLUMN live_worker_id, DROP COLUMN live_epoch, DROP COLUMN depends_on, DROP COLUMN deps_left, DROP COLUMN shed_overlap,
      DROP COLUMN owner, DROP COLUMN lost_claims, DROP COLUMN claim_pinned, DROP COLUMN shed_missed, DROP COLUMN shed_catchup_max, DROP COLUMN shed_slot`);
    await client.query('ALTER TABLE long_task.task DROP COLUMN unique_key, DROP COLUMN shed_unique_key'); // version 24
    await client.query('ALTER TABLE long_task.task DROP COLUMN depends_rule'); // migration 25
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

/** What a claim that committed without the node hearing of it leaves behind: the task, added
 * pinned to a worker no node holds (so that no node claims it first), claimed under `epoch` of
 * `worker` as pinned to it or not. */
async function lostClaim(command: string[], worker: number, epoch: number, group: number, options: { startedAgo: string; maxAttempts?: number; backoffBase?: string; pinned?: boolean; cancelled?: boolean }): Promise<number> {
  const id = await addTask(db, command, { group, worker: 999, maxAttempts: options.maxAttempts ?? 1, ...(options.backoffBase ? { backoffBase: options.backoffBase } : {}) });
  await db.query('UPDATE long_task.task SET claim_pinned = $2 WHERE id = $1', [id, options.pinned ?? false]);
  await markClaimed(db, id, worker, epoch, { live: true, startedAgo: options.startedAgo });
  if (options.cancelled) await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1", [id]);
  return id;
}

/** The task's runs (task_run), in order: attempt, end reason, worker. */
async function runsOf(id: number): Promise<Array<[number, string, number]>> {
  const { rows } = await db.query<{ attempt: number; end_reason: string; worker_id: number }>('SELECT attempt, end_reason, worker_id FROM long_task.task_run WHERE task_id = $1 ORDER BY attempt', [id]);
  return rows.map((r) => [r.attempt, r.end_reason, r.worker_id]);
}

describe('lost claims', () => {
  it('a task owned by the node\'s term with no process there (a claim reply lost on the wire) is queued again at the next renewal, not counted as an attempt', async () => {
    // The term must last the whole test: a term that ends has its runs recovered by the policy
    // (worker_failed), not ended as lost claims. A 2 s lease is distrusted 1.5 s after a renewal
    // was sent, which a loaded machine can miss; 8 s (renewed every 4 s) allows a 2 s stall.
    const node = await startNode(db, { workerId: 120, groupId: 120, leaseSeconds: 8 });
    const lostTerms = countEvents(node, 'lease:lost');
    const epoch = (await getWorker(db, 120))!.lease_epoch;
    // max_attempts 1: the lost claim was no attempt, so its task still runs, once.
    const lost = await lostClaim(['true'], 120, epoch, 120, { startedAgo: '1 hour', maxAttempts: 1 });
    // max_attempts 2: two real runs after the lost claim (both fail, the first retries).
    const failing = await lostClaim(['false'], 120, epoch, 120, { startedAgo: '1 hour', maxAttempts: 2, backoffBase: '10 ms' });
    // Cancelled meanwhile: the cancel wins.
    const cancelled = await lostClaim(['true'], 120, epoch, 120, { startedAgo: '1 hour', cancelled: true });
    // A task the node really runs is left alone: it runs until the test creates the gate.
    const dir = tempDir('lost');
    const real = await addTask(db, ['sh', '-c', 'while [ ! -e "$0/go" ]; do sleep 0.05; done', dir], { group: 120 });
    await waitEnded(db, [lost, failing, cancelled]);
    const t = await getTask(db, lost);
    assert.deepEqual([t.state_id, t.end_reason, t.attempt, t.lost_claims], ['CS', 'completed', 2, 1], 'queued again and run to completion');
    assert.deepEqual(await runsOf(lost), [[1, 'lost_claim', 120], [2, 'completed', 120]]);
    const { rows: run } = await db.query('SELECT error, finished, pid FROM long_task.task_run WHERE task_id = $1 AND attempt = 1', [lost]);
    assert.match(String(run[0]!.error), /^Lost claim: /);
    assert.ok(run[0]!.finished, 'the lost claim is over');
    assert.equal(run[0]!.pid, null, 'no process');
    const f = await getTask(db, failing);
    assert.deepEqual([f.state_id, f.end_reason, f.attempt], ['CF', 'exit_code', 3]);
    assert.deepEqual((await runsOf(failing)).map((r) => r[1]), ['lost_claim', 'exit_code', 'exit_code'], 'max_attempts counts the real runs only');
    const c = await getTask(db, cancelled);
    assert.deepEqual([c.state_id, c.end_reason, c.attempt], ['CC', 'cancelled', 1]);
    assert.deepEqual(await runsOf(cancelled), [[1, 'lost_claim', 120]]);
    // A renewal checks the runs that started more than half a lease ago: let two renewals
    // (one of them sent after that) see the real task.
    await until(async () => (await db.query("SELECT 1 FROM long_task.task WHERE id = $1 AND started < now() - interval '4 s'", [real])).rowCount === 1, 'the real task to run for half a lease', 30_000);
    await nextEvent(node, 'lease:renewed');
    await nextEvent(node, 'lease:renewed');
    writeFileSync(`${dir}/go`, '');
    await waitEnded(db, [real]);
    assert.deepEqual([(await getTask(db, real)).state_id, (await getTask(db, real)).end_reason, (await getTask(db, real)).attempt], ['CS', 'completed', 1]);
    assert.equal(lostTerms.count, 0, 'the node kept its term throughout');
    lostTerms.stop();
    await node.shutdown();
  });

  it('a lost claim of a term that ends cleanly is queued again with it, pinned as it was claimed, rather than stay AE with nothing answering for it', async () => {
    const node = await startNode(db, { workerId: 122, groupId: 122 });
    const epoch = (await getWorker(db, 122))!.lease_epoch;
    // Claimed a moment ago: too recent for the renewal's check, which waits half a lease.
    const lost = await lostClaim(['true'], 122, epoch, 122, { startedAgo: '0 s', maxAttempts: 1 });
    const pinned = await lostClaim(['true'], 122, epoch, 122, { startedAgo: '0 s', maxAttempts: 1, pinned: true });
    const cancelled = await lostClaim(['true'], 122, epoch, 122, { startedAgo: '0 s', cancelled: true });
    await node.shutdown();
    const t = await getTask(db, lost);
    assert.deepEqual([t.state_id, t.end_reason, t.run_after, t.worker_id, t.attempt, t.lost_claims], ['AW', null, null, null, 1, 1], 'queued again at once, on any worker');
    const p = await getTask(db, pinned);
    assert.deepEqual([p.state_id, p.worker_id], ['AW', 122], 'still pinned to its worker');
    assert.deepEqual([(await getTask(db, cancelled)).state_id, (await getTask(db, cancelled)).end_reason], ['CC', 'cancelled']);
    for (const id of [lost, pinned, cancelled]) assert.deepEqual(await runsOf(id), [[1, 'lost_claim', 122]]);
    const { rows: worker } = await db.query('SELECT active FROM long_task.worker WHERE id = 122');
    assert.equal(worker[0]!.active, false, 'released');
    // The next node of the worker runs both, max_attempts 1 notwithstanding.
    const next = await startNode(db, { workerId: 122, groupId: 122 });
    await waitEnded(db, [lost, pinned]);
    for (const id of [lost, pinned]) {
      assert.deepEqual([(await getTask(db, id)).state_id, (await getTask(db, id)).attempt], ['CS', 2]);
      assert.deepEqual(await runsOf(id), [[1, 'lost_claim', 122], [2, 'completed', 122]]);
    }
    await next.shutdown();
  });

  it('after a claim that failed, the term\'s lost claims are queued again before the next claim, not half a lease later', async () => {
    // A 120 s lease: its renewals check only runs started a minute ago, so within this test
    // the lost claim can be found only through the failed claim.
    const node = await startNode(db, { workerId: 123, groupId: 123, leaseSeconds: 120 });
    const epoch = (await getWorker(db, 123))!.lease_epoch;
    const lost = await lostClaim(['true'], 123, epoch, 123, { startedAgo: '0 s', maxAttempts: 1 });
    // Every claim of the group fails (a server error) while the trigger stands: each is a
    // claim whose outcome the node cannot tell from a cut connection's.
    await db.query(`CREATE FUNCTION long_task.fail_claim() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'claims fail in this test'; END $$`);
    await db.query(`CREATE TRIGGER fail_claim BEFORE UPDATE ON long_task.task FOR EACH ROW
      WHEN (NEW.group_id = 123 AND OLD.state_id = 'AW' AND NEW.state_id = 'AE') EXECUTE FUNCTION long_task.fail_claim()`);
    try {
      const waiting = await addTask(db, ['true'], { group: 123 });
      await until(async () => (await runsOf(lost)).length === 1, 'the lost claim to be found after a failed claim', 30_000);
      assert.deepEqual(await runsOf(lost), [[1, 'lost_claim', 123]]);
      assert.deepEqual([(await getTask(db, lost)).state_id, (await getTask(db, lost)).lost_claims], ['AW', 1], 'queued again');
      await db.query('DROP TRIGGER fail_claim ON long_task.task');
      await waitEnded(db, [lost, waiting]);
      assert.deepEqual(await runsOf(lost), [[1, 'lost_claim', 123], [2, 'completed', 123]]);
      assert.equal((await getTask(db, waiting)).state_id, 'CS');
    } finally {
      await db.query('DROP TRIGGER IF EXISTS fail_claim ON long_task.task');
      await db.query('DROP FUNCTION IF EXISTS long_task.fail_claim()');
    }
    await node.shutdown();
  });

  it('only the end of a lost claim moves lost_claims', async () => {
    const id = await addTask(db, ['true'], { group: 999 });
    await assert.rejects(db.query('UPDATE long_task.task SET lost_claims = 5 WHERE id = $1', [id]), /the lost_claims of task \d+ is kept by pg-tasks/);
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
