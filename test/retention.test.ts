// Retention on demand: pg-tasks prune deletes old ended tasks and old runs, in batches, and
// keeps what must stay (waiting tasks, schedules, prerequisites a waiting task still names).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runCli } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

let db: TestDatabase;

before(async () => {
  db = await createTestDatabase('retention');
});

after(async () => {
  await db.close();
});

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
    assert.match(bad.stderr, /argument 'soon' is invalid\. expected a duration like 500ms, 10s, 2m, 1h or 30d, got "soon"/);
  });
});
