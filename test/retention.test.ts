// Retention, kept by the nodes (task_group.keep_ended, keep_runs) and on demand: pg-tasks prune deletes old ended tasks and old runs, in batches, and
// keeps what must stay (waiting tasks, schedules, prerequisites a waiting task still names).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runCli } from './helpers/cli.js';
import { startNode, stopAllNodes, useTestDatabase } from './helpers/node.js';
import { until } from './helpers/wait.js';

const db = useTestDatabase('retention');

/** A task that ended `state` (by the path a node takes: AW, claimed, ended), `daysAgo` days ago, after `runs` runs. */
async function ended(state: 'CS' | 'CF' | 'CC', daysAgo: number, extra: { group?: number; runs?: number } = {}): Promise<number> {
  const { rows } = await db.query<{ id: string }>("INSERT INTO long_task.task (state_id, group_id, command) VALUES ('AW', $1, '{true}') RETURNING id", [extra.group ?? 0]);
  const id = Number(rows[0]!.id);
  for (let attempt = 1; attempt <= (extra.runs ?? 1); attempt++) {
    if (attempt > 1) await db.query("UPDATE long_task.task SET state_id = 'AW' WHERE id = $1", [id]);
    await db.query("UPDATE long_task.task SET state_id = 'AE', worker_id = 1, attempt = attempt + 1, live_worker_id = 1, live_epoch = 1, started = now() WHERE id = $1", [id]);
    await db.query('UPDATE long_task.task SET state_id = $2, live_worker_id = NULL, live_epoch = NULL WHERE id = $1', [id, state]);
    await db.query("INSERT INTO long_task.task_run (task_id, attempt, worker_id, lease_epoch, finished, end_reason) VALUES ($1, $2, 1, 1, now() - make_interval(days => $3), 'completed')", [id, attempt, daysAgo]);
  }
  await db.query('UPDATE long_task.task SET finished = now() - make_interval(days => $2) WHERE id = $1', [id, daysAgo]);
  return id;
}

const exists = async (id: number): Promise<boolean> => (await db.query('SELECT 1 FROM long_task.task WHERE id = $1', [id])).rowCount === 1;

describe('pg-tasks prune', () => {
  it('deletes ended tasks older than the cutoff with their runs, and old runs of the tasks that stay; keeps what must stay', async () => {
    const old = await Promise.all([ended('CS', 40), ended('CF', 40), ended('CC', 40)]);
    const otherGroup = await ended('CS', 40, { group: 5 });
    const recent = await ended('CS', 1);
    const rerun = await ended('CS', 1, { runs: 3 });
    await db.query("UPDATE long_task.task_run SET finished = now() - interval '40 days' WHERE task_id = $1 AND attempt < 3", [rerun]);
    const prerequisite = await ended('CS', 40);
    const { rows: dep } = await db.query<{ id: string }>("INSERT INTO long_task.task (state_id, command, depends_on) VALUES ('DR', '{true}', $1) RETURNING id", [[prerequisite]]);
    const schedule = await ended('CS', 40);
    await db.query("UPDATE long_task.task SET next_start = now() + interval '1 day', shed_period_id = 'DAY' WHERE id = $1", [schedule]);
    const { rows: waiting } = await db.query<{ id: string }>("INSERT INTO long_task.task (state_id, command) VALUES ('AW', '{true}') RETURNING id");

    const groupOnly = await runCli(db.url, ['prune', '--older-than', '30d', '--group', '5', '--json']);
    assert.equal(groupOnly.code, 0, groupOnly.stderr);
    assert.deepEqual(JSON.parse(groupOnly.stdout), { tasks: 1, runs: 0 });
    assert.equal(await exists(otherGroup), false);
    assert.equal(await exists(old[0]), true, 'other groups untouched');

    const all = await runCli(db.url, ['prune', '--older-than', '30d']);
    assert.equal(all.code, 0, all.stderr);
    assert.equal(all.stdout.trim(), 'pruned 3 ended tasks and 2 older runs');
    for (const id of old) assert.equal(await exists(id), false);
    const { rows: orphanRuns } = await db.query('SELECT 1 FROM long_task.task_run WHERE task_id = ANY($1)', [old]);
    assert.equal(orphanRuns.length, 0, 'their runs went with them');
    for (const id of [recent, rerun, prerequisite, schedule, Number(dep[0]!.id), Number(waiting[0]!.id)]) assert.equal(await exists(id), true, `task ${id} kept`);
    const { rows: kept } = await db.query<{ attempt: number }>('SELECT attempt FROM long_task.task_run WHERE task_id = $1', [rerun]);
    assert.deepEqual(kept.map((r) => r.attempt), [3], 'the latest run stays');

    const bad = await runCli(db.url, ['prune', '--older-than', 'soon']);
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr, 'pg-tasks: --older-than: expected a duration like 500ms, 10s, 2m, 1h or 30d, got "soon"\n');
  });
});

describe('retention in the nodes', () => {
  it("deletes each group's ended tasks past keep_ended and older runs past keep_runs (30 days by default), in one pass that one of two nodes wins", async () => {
    await db.query("INSERT INTO long_task.task_group (id, keep_ended, keep_runs) VALUES (30, '1 day', '2 days')");
    const old = await ended('CS', 3, { group: 30 });
    const recent = await ended('CF', 0, { group: 30 });
    const noPolicy = await ended('CS', 40, { group: 31 });
    const rerun30 = await ended('CS', 0, { group: 30, runs: 3 });
    await db.query("UPDATE long_task.task_run SET finished = now() - interval '3 days' WHERE task_id = $1 AND attempt < 3", [rerun30]);
    const rerun31 = await ended('CS', 0, { group: 31, runs: 3 });
    await db.query("UPDATE long_task.task_run SET finished = now() - interval '10 days' WHERE task_id = $1 AND attempt = 1", [rerun31]);
    await db.query("UPDATE long_task.task_run SET finished = now() - interval '40 days' WHERE task_id = $1 AND attempt = 2", [rerun31]);
    const prerequisite = await ended('CS', 3, { group: 30 });
    await db.query("INSERT INTO long_task.task (state_id, group_id, command, depends_on) VALUES ('DR', 30, '{true}', $1)", [[prerequisite]]);
    const schedule = await ended('CS', 3, { group: 30 });
    await db.query("UPDATE long_task.task SET next_start = now() + interval '1 day', shed_period_id = 'DAY', shed_clone = true WHERE id = $1", [schedule]);
    const copy = await ended('CC', 3, { group: 30 });
    await db.query('UPDATE long_task.task SET shed_parent_id = $2 WHERE id = $1', [copy, schedule]);

    await Promise.all([
      startNode(db, { workerId: 300, groupId: 30, retentionEveryMs: 1_500, nodeName: 'retention-a' }),
      startNode(db, { workerId: 310, groupId: 31, retentionEveryMs: 1_500, nodeName: 'retention-b' }),
    ]);
    const pass = await until(async () => {
      const { rows } = await db.query<{ node_name: string; last_tasks: string; last_runs: string }>(
        "SELECT node_name, last_tasks, last_runs FROM long_task.maintenance WHERE name = 'retention' AND last_finished IS NOT NULL");
      return rows[0];
    }, 'a retention pass');
    assert.deepEqual([Number(pass.last_tasks), Number(pass.last_runs)], [2, 3], 'the first pass did all of it: 2 tasks, 3 runs');
    assert.ok(['retention-a', 'retention-b'].includes(pass.node_name), `the pass is signed by the node that won it (${pass.node_name})`);
    for (const id of [old, copy]) assert.equal(await exists(id), false, `task ${id} deleted`);
    for (const id of [recent, noPolicy, rerun30, rerun31, prerequisite, schedule]) assert.equal(await exists(id), true, `task ${id} kept`);
    const runs = async (id: number): Promise<number[]> =>
      (await db.query<{ attempt: number }>('SELECT attempt FROM long_task.task_run WHERE task_id = $1 ORDER BY attempt', [id])).rows.map((r) => r.attempt);
    assert.deepEqual(await runs(rerun30), [3]);
    assert.deepEqual(await runs(rerun31), [1, 3], 'runs of a group with no row are kept 30 days');
    assert.deepEqual(await runs(noPolicy), [1]);
    const { rows: next } = await db.query<{ ahead_ms: number }>(
      "SELECT extract(epoch FROM next_at - last_finished) * 1000 AS ahead_ms FROM long_task.maintenance WHERE name = 'retention'");
    assert.ok(Math.abs(Number(next[0]!.ahead_ms) - 1_500) < 1, 'the next pass is due one interval after this one ended');
  });

  it('a pass ends when more runs than a batch share one timestamp (the cursor keeps microseconds)', async () => {
    // 6 000 latest runs (kept) ended in the same statement, hence at the same instant: more than
    // one batch (5 000). A cursor rounded to milliseconds would read the same batch for ever.
    await stopAllNodes();
    await db.query("UPDATE long_task.maintenance SET runs_cursor_finished = NULL, runs_cursor_task = NULL, runs_cursor_attempt = NULL, last_finished = NULL WHERE name = 'retention'");
    const { rows: at } = await db.query<{ at: string }>("SELECT (now() - interval '40 days' + interval '123 microseconds')::text AS at");
    // Loaded as a restore would, triggers off (no task may be inserted ended otherwise), on one connection.
    const client = await db.pool.connect();
    try {
      await client.query('SET session_replication_role = replica');
      await client.query(
        `WITH t AS (INSERT INTO long_task.task (state_id, group_id, command, attempt, started, finished)
                    SELECT 'CS', 40, '{true}', 1, $1::timestamptz, $1::timestamptz FROM generate_series(1, 6000) RETURNING id)
         INSERT INTO long_task.task_run (task_id, attempt, worker_id, lease_epoch, started, finished, end_reason)
         SELECT id, 1, 1, 1, $1::timestamptz, $1::timestamptz, 'completed' FROM t`, [at[0]!.at]);
      await client.query('RESET session_replication_role');
    } finally {
      client.release();
    }
    const before = (await db.query<{ n: string }>('SELECT count(*) AS n FROM long_task.task_run')).rows[0]!.n;
    await db.query("UPDATE long_task.maintenance SET next_at = now() WHERE name = 'retention'");
    await startNode(db, { workerId: 400, groupId: 40, retentionEveryMs: 1_500 });
    const pass = await until(async () => {
      const { rows } = await db.query<{ last_runs: string; cursor: string }>(
        "SELECT last_runs, runs_cursor_finished::text AS cursor FROM long_task.maintenance WHERE name = 'retention' AND last_finished IS NOT NULL");
      return rows[0];
    }, 'a pass over 6 000 runs of one instant to end');
    assert.equal(Number(pass.last_runs), 0, 'latest runs are kept');
    // (Group 30 keeps runs 2 days: the scan goes on past the instant, to the longest retention.)
    assert.ok(pass.cursor > at[0]!.at, `the cursor (${pass.cursor}) went past the instant (${at[0]!.at})`);
    assert.equal((await db.query<{ n: string }>('SELECT count(*) AS n FROM long_task.task_run')).rows[0]!.n, before);
  });
});
