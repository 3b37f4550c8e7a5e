// Cluster-wide limits: task_group.max_running and concurrency_key (concurrency_limit). The
// processes record how many of them are alive at once: each adds a file named by its pid to a
// directory, counts the directory, sleeps, and removes its file. Three tasks alive at once
// means the last of them to start counts three.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { loadStatements } from '../src/sql/queries/index.js';
import { runCli } from './helpers/cli.js';
import { nextEvent } from './helpers/events.js';
import { addTask, addTasks, getTask, startNode, tempDir, useTestDatabase, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';

const db = useTestDatabase('limits');

/** Records in dir/counts how many processes of dir were alive when it started; then sleeps. */
function counting(dir: string, seconds = 0.4): string[] {
  return ['sh', '-c', 'mkdir -p "$0/live"; touch "$0/live/$$"; ls "$0/live" | wc -l >> "$0/counts"; echo "$(date +%s%N) $$" >> "$0/starts"; sleep $1; rm "$0/live/$$"; echo "$(date +%s%N) $$" >> "$0/ends"', dir, String(seconds)];
}

function counts(dir: string): number[] {
  return readFileSync(`${dir}/counts`, 'utf8').trim().split('\n').map((line) => Number(line.trim()));
}

async function expectRefused(sql: string, params: unknown[], message: RegExp): Promise<void> {
  await assert.rejects(db.query(sql, params), (error: Error) => {
    assert.match(error.message, message);
    return true;
  });
}

describe('cluster-wide limits', () => {
  it('max_running = 2 holds across three nodes of 4 slots each, and the queue drains', async () => {
    await db.query('INSERT INTO long_task.task_group (id, max_running) VALUES (5, 2)');
    const dir = tempDir('limit-group');
    // Queued before the nodes start: all three claim at once.
    const ids = await addTasks(db, 12, counting(dir), { group: 5 });
    await Promise.all([1, 2, 3].map((n) => startNode(db, { workerId: 50 + n, groupId: 5, maxTasks: 4 })));
    // The database never shows more than 2 live runs in the group either.
    let maxLive = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM long_task.task WHERE group_id = 5 AND live_worker_id IS NOT NULL');
        maxLive = Math.max(maxLive, rows[0]!.n);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    await waitEnded(db, ids, 60_000);
    sampling = false;
    await sampler;
    for (const id of ids) assert.equal((await getTask(db, id)).state_id, 'CS');
    const seen = counts(dir);
    assert.equal(seen.length, 12);
    assert.equal(Math.max(...seen), 2, `processes alive at once: ${seen.join(',')} (2 at most, and the limit was reached)`);
    assert.ok(maxLive <= 2, `live runs in the group at once: ${maxLive}`);
  });

  it('a key with no limit row is a mutex: never two holders, across groups, and other tasks pass it', async () => {
    const dir = tempDir('limit-mutex');
    const other = tempDir('limit-mutex-other');
    await startNode(db, { workerId: 61, groupId: 6, maxTasks: 4 });
    await startNode(db, { workerId: 71, groupId: 7, maxTasks: 4 });
    // Keyed tasks at the head of group 6's queue must not hold back the unkeyed ones behind them.
    const keyed = [
      ...(await addTasks(db, 4, counting(dir, 0.3), { group: 6, key: 'backup:orders' })),
      ...(await addTasks(db, 4, counting(dir, 0.3), { group: 7, key: 'backup:orders' })),
    ];
    const unkeyed = await addTasks(db, 3, counting(other, 0.3), { group: 6, priority: 1 });
    await waitEnded(db, [...keyed, ...unkeyed], 60_000);
    for (const id of [...keyed, ...unkeyed]) assert.equal((await getTask(db, id)).state_id, 'CS');
    assert.deepEqual(counts(dir), [1, 1, 1, 1, 1, 1, 1, 1], 'one holder of the key at a time');
    const keyedStarts = readFileSync(`${dir}/starts`, 'utf8').trim().split('\n').map((l) => BigInt(l.split(' ')[0]!));
    const otherStarts = readFileSync(`${other}/starts`, 'utf8').trim().split('\n').map((l) => BigInt(l.split(' ')[0]!));
    const lastKeyed = keyedStarts.reduce((a, b) => (a > b ? a : b));
    assert.ok(otherStarts.every((s) => s < lastKeyed), 'the unkeyed tasks ran while the keyed ones waited their turns');
    assert.equal(Math.max(...counts(other)), 3, 'the unkeyed tasks ran side by side');
  });

  it('concurrency_limit sets a key to 2; 0 pauses it, and raising it wakes the nodes', async () => {
    await db.query("INSERT INTO long_task.concurrency_limit (key, max_running) VALUES ('pair', 2), ('paused', 0)");
    const dir = tempDir('limit-pair');
    await startNode(db, { workerId: 81, groupId: 8, maxTasks: 4 });
    await startNode(db, { workerId: 82, groupId: 8, maxTasks: 4 });
    const pair = await addTasks(db, 6, counting(dir), { group: 8, key: 'pair' });
    const paused = await addTask(db, ['true'], { group: 8, key: 'paused' });
    await waitEnded(db, pair, 60_000);
    assert.equal(Math.max(...counts(dir)), 2, `alive at once: ${counts(dir).join(',')}`);
    assert.equal((await getTask(db, paused)).state_id, 'AW', 'a key at 0 runs nothing');
    await db.query("UPDATE long_task.concurrency_limit SET max_running = 1 WHERE key = 'paused'");
    await waitEnded(db, [paused]);
    assert.equal((await getTask(db, paused)).state_id, 'CS');
  });

  it('max_running = 0 pauses a group; raising it wakes the nodes', async () => {
    await db.query('INSERT INTO long_task.task_group (id, max_running) VALUES (9, 0)');
    // Queued before the node starts: every claim the node makes can see it.
    const id = await addTask(db, ['true'], { group: 9 });
    const claims: Array<Promise<{ asked: number; claimed: number }>> = [];
    await startNode(db, { workerId: 91, groupId: 9, maxTasks: 2 }, (node) => claims.push(nextEvent(node, 'claim', (e) => e.asked > 0)));
    // The node claims (its queue hint) and takes nothing: the task stays waiting.
    assert.equal((await claims[0]!).claimed, 0);
    assert.equal((await getTask(db, id)).state_id, 'AW');
    await db.query('UPDATE long_task.task_group SET max_running = NULL WHERE id = 9');
    await waitEnded(db, [id]);
    assert.equal((await getTask(db, id)).state_id, 'CS');
  });

  it("a dead worker's runs count against max_running until its worker is recovered", async () => {
    await db.query('INSERT INTO long_task.task_group (id, max_running) VALUES (12, 2)');
    const first = await addTasks(db, 2, ['true'], { group: 12 });
    // Worker 120's node claims two tasks and dies: its lease (2 s) lapses with both runs live.
    await db.query("INSERT INTO long_task.worker (id, group_id, active, locked_until, lease_epoch) VALUES (120, 12, true, now() + interval '2 seconds', 1)");
    const { rows: claimed } = await loadStatements('long_task').claimTasks(db.pool, {
      groupId: 12, workerId: 120, freeSlots: 4, epoch: 1, nodeName: 'dead-node', checkCommands: false,
    });
    assert.equal(claimed.length, 2);
    const rest = await addTasks(db, 3, ['true'], { group: 12 });
    await startNode(db, { workerId: 121, groupId: 12, maxTasks: 4, leaseSeconds: 2 });
    await waitEnded(db, [...first, ...rest], 60_000);
    const { rows } = await db.query<{ id: string; state_id: string; end_reason: string; started: Date; finished: Date }>(
      'SELECT id, state_id, end_reason, started, finished FROM long_task.task WHERE id = ANY($1) ORDER BY id', [[...first, ...rest]]);
    const dead = rows.filter((r) => first.includes(Number(r.id)));
    assert.deepEqual(dead.map((r) => [r.state_id, r.end_reason]), [['CF', 'worker_failed'], ['CF', 'worker_failed']]);
    const recovered = Math.min(...dead.map((r) => +r.finished));
    for (const r of rows.filter((x) => rest.includes(Number(x.id)))) {
      assert.equal(r.state_id, 'CS');
      assert.ok(+r.started >= recovered, `task ${r.id} started only once the dead worker's runs were recovered`);
    }
  });

  it('refuses a bad limit, an empty key, and moving a live run to another key or group', async () => {
    await expectRefused('INSERT INTO long_task.task_group (id, max_running) VALUES (10, -1)', [], /task_group_max_running_valid/);
    await expectRefused("INSERT INTO long_task.concurrency_limit (key, max_running) VALUES ('x', -2)", [], /concurrency_limit_max_running_valid/);
    await expectRefused("INSERT INTO long_task.task (command, concurrency_key) VALUES ('{true}', '')", [], /task_concurrency_key_valid/);
    await startNode(db, { workerId: 111, groupId: 11, maxTasks: 1 });
    const id = await addTask(db, ['sleep', '30'], { group: 11, key: 'k' });
    await until(async () => (await getTask(db, id)).state_id === 'AE', 'the keyed task to start');
    await expectRefused("UPDATE long_task.task SET concurrency_key = 'other' WHERE id = $1", [id],
      /can't change the group_id or concurrency_key of task \d+ while a process of it may run/);
    await expectRefused('UPDATE long_task.task SET group_id = 12 WHERE id = $1', [id], /while a process of it may run/);
    await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1", [id]);
    await waitEnded(db, [id]);
    assert.equal((await getTask(db, id)).concurrency_key, 'k');
  });

  it('the CLI sets and lists limits, and adds keyed tasks', async () => {
    const set = await runCli(db.url, ['limit', '--group', '13', '3']);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /^group\s+13\s+3\s+0\s+0$/m);
    const added = await runCli(db.url, ['add', '--group', '13', '--draft', '--concurrency-key', 'db:orders', '--', 'true']);
    assert.equal(added.code, 0, added.stderr);
    const { rows } = await db.query<{ concurrency_key: string }>('SELECT concurrency_key FROM long_task.task WHERE id = $1', [Number(added.stdout.trim())]);
    assert.equal(rows[0]!.concurrency_key, 'db:orders');
    const key = await runCli(db.url, ['limit', '--key', 'db:orders', '2']);
    assert.match(key.stdout, /^key\s+db:orders\s+2\s+0\s+0$/m);
    const cleared = await runCli(db.url, ['limit', '--group', '13', 'none']);
    assert.equal(cleared.stdout.trim(), 'group 13: no limit');
    const bad = await runCli(db.url, ['limit', '--group', '13', '-1']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /the limit must not be negative/);
    const noTarget = await runCli(db.url, ['limit', '5']);
    assert.equal(noTarget.stderr.trim(), 'pg-tasks: a limit needs --group N or --key KEY');
  });
});
