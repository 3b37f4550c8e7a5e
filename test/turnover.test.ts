// Slot turnover in one commit (issue 28): when a run ends and frees a slot while tasks wait,
// its end and the claim of the next task are one statement, so one transaction. The proof is
// in the rows: a transaction's now() is the same for all it writes, so the run that ended
// (task_run.finished) and the run claimed in its place (task_run.started) share it exactly
// when they were one commit. PGTASKS_OLD_TURNOVER=1 (the path before) is the control.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { countEvents } from './helpers/events.js';
import { addTask, getTask, startNode, useTestDatabase, waitEnded } from './helpers/node.js';
import type { TestDatabase } from './helpers/db.js';

const db = useTestDatabase('turnover');

const N = 20;

/** N waiting tasks of `group`, queued in one statement (so the queue is full before the node starts). */
async function queue(db: TestDatabase, group: number, command: string[]): Promise<number[]> {
  const { rows } = await db.query<{ id: string }>(
    "INSERT INTO long_task.task (command, state_id, group_id) SELECT $1, 'AW', $2 FROM generate_series(1, $3) RETURNING id",
    [command, group, N],
  );
  return rows.map((r) => Number(r.id));
}

/** How many runs of `ids` ended in the transaction that claimed another of them. */
async function sharedCommits(ids: number[]): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM long_task.task_run a JOIN long_task.task_run b ON b.started = a.finished AND b.task_id <> a.task_id
      WHERE a.task_id = ANY($1) AND b.task_id = ANY($1)`,
    [ids],
  );
  return rows[0]!.n;
}

/** Starts a node for `group` at one slot, with the old path when `separate`. */
async function nodeFor(group: number, workerId: number, separate: boolean): ReturnType<typeof startNode> {
  const before = process.env.PGTASKS_OLD_TURNOVER;
  if (separate) process.env.PGTASKS_OLD_TURNOVER = '1';
  else delete process.env.PGTASKS_OLD_TURNOVER;
  try {
    return await startNode(db, { workerId, groupId: group, maxTasks: 1 });
  } finally {
    if (before === undefined) delete process.env.PGTASKS_OLD_TURNOVER;
    else process.env.PGTASKS_OLD_TURNOVER = before;
  }
}

describe('slot turnover', () => {
  it(`at one slot, each of ${N} sequential runs ends in the commit that claims the next`, async () => {
    const ids = await queue(db, 11, ['true']);
    const node = await nodeFor(11, 2, false);
    const claims = countEvents(node, 'claim');
    await waitEnded(db, ids);
    assert.equal(await sharedCommits(ids), N - 1, 'every end but the last shares its commit with the next claim');
    // The first claim, N - 1 turnovers, and the last end's turnover that finds the queue empty.
    assert.ok(claims.count <= N + 1, `${claims.count} claim statements for ${N} tasks`);
    claims.stop();
    await node.shutdown('drain', 'test');
  });

  it('with PGTASKS_OLD_TURNOVER=1, ends and claims are separate commits (the control)', async () => {
    const ids = await queue(db, 12, ['true']);
    const node = await nodeFor(12, 3, true);
    await waitEnded(db, ids);
    assert.equal(await sharedCommits(ids), 0);
    await node.shutdown('drain', 'test');
  });

  it('an end the database refuses in a turnover is split off: the claim and the other ends go on', async () => {
    // The owner's trigger refuses the end of a run that exited 4 (its result_rejected end,
    // written alone after the split, passes).
    await db.query(`CREATE OR REPLACE FUNCTION public.no_exit_4() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'task % may not end with exit code 4', NEW.id;
      END $$`);
    await db.query("CREATE TRIGGER no_exit_4 BEFORE UPDATE ON long_task.task FOR EACH ROW WHEN (new.end_reason = 'exit_code' AND new.exit_code = 4) EXECUTE FUNCTION public.no_exit_4()");
    try {
      // Queued before the node starts: the bad one runs first (priority -1) and ends while N wait.
      const good = await queue(db, 13, ['true']);
      const bad = await addTask(db, ['sh', '-c', 'exit 4'], { group: 13, priority: -1 });
      const node = await nodeFor(13, 4, false);
      const rejected = countEvents(node, 'results:rejected');
      await waitEnded(db, [...good, bad]);
      const t = await getTask(db, bad);
      assert.deepEqual([t.state_id, t.end_reason, t.exit_code], ['CF', 'result_rejected', 4]);
      const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM long_task.task WHERE id = ANY($1) AND state_id = 'CS'", [good]);
      assert.equal(rows[0]!.n, N);
      assert.equal(rejected.count, 1);
      // The refused turnover committed nothing; the claim after it went alone; every good run's
      // end but the last shared its commit with the next claim.
      assert.equal(await sharedCommits([...good, bad]), N - 1);
      rejected.stop();
      await node.shutdown('drain', 'test');
    } finally {
      await db.query('DROP TRIGGER no_exit_4 ON long_task.task');
    }
  });
});
