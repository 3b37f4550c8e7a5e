// The timer's fire (migration 16): the rows upcomingSchedules lists are fired by fire_slots in
// one statement, with the following slot the node worked out when it armed its timer. Each
// test calls the queries with an injected now, on a group no node serves, and checks the rows
// end as the general fire (fireDueSchedules) leaves them, or are left to it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadStatements } from '../src/sql/queries/index.js';
import { armSlots, fireDueSchedules } from '../src/node/timers/scheduler.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { addTask, getTask, testLogger } from './helpers/node.js';

const queries = loadStatements('long_task');
let db: TestDatabase;
before(async () => {
  db = await createTestDatabase('schedule_fire');
});
after(async () => {
  await db?.close();
});

const ms = (value: unknown): number => (value as Date).getTime();
const T0 = new Date('2031-05-05T12:00:00.000Z');
const at = (offsetMs: number): Date => new Date(T0.getTime() + offsetMs);

/** A task that ran and ended CS, as a user's schedule finds it. */
async function endedTask(group: number): Promise<number> {
  const id = await addTask(db, ['true'], { group });
  await db.query("UPDATE long_task.task SET state_id = 'AE', worker_id = 1 WHERE id = $1", [id]);
  await db.query("UPDATE long_task.task SET state_id = 'CS' WHERE id = $1", [id]);
  return id;
}

/** What the node does when it arms its timer (read at `now`), then its fire at `fireAt`. */
async function armAndFire(group: number, now: Date, fireAt: Date): Promise<{ delay: number | null; fired: Array<{ id: number; action: string }> }> {
  const { rows } = await queries.upcomingSchedules(db.pool, { groupId: group, now: now, limit: 100 });
  const armed = armSlots(rows);
  if (!armed) return { delay: rows[0]!.delay_ms, fired: [] };
  const fired = await queries.fireSlots(db.pool, { groupId: group, taskIds: armed.ids, readSlots: armed.expected, nextSlots: armed.next, now: fireAt });
  return { delay: rows[0]!.delay_ms, fired: fired.rows.map((r) => ({ id: Number(r.id), action: r.action })) };
}

describe('the timer fire (fire_slots)', () => {
  it('re-queues an ended period schedule, moves it to the next slot and keeps its anchor', async () => {
    const group = 160;
    const id = await endedTask(group);
    await db.query("UPDATE long_task.task SET next_start = $2, shed_period_id = 'HOU', shed_period_count = 1 WHERE id = $1", [id, T0]);
    const { delay, fired } = await armAndFire(group, at(-300), at(1));
    assert.equal(delay, 300, 'the read says how long until the slot');
    assert.deepEqual(fired, [{ id, action: 'requeued' }]);
    const t = await getTask(db, id);
    assert.equal(t.state_id, 'AW');
    assert.equal(t.worker_id, null);
    assert.equal(ms(t.next_start), at(3_600_000).getTime());
    assert.equal(ms(t.shed_anchor), T0.getTime(), 'the scheduler keeps the anchor');
    assert.equal(t.shed_skip_count, 0);
  });

  it('queues a one-shot draft and clears its schedule; a cron schedule moves to its next slot', async () => {
    const group = 161;
    const oneShot = await addTask(db, ['true'], { group, state: 'DR' });
    const cron = await endedTask(group);
    await db.query('UPDATE long_task.task SET next_start = $2 WHERE id = $1', [oneShot, T0]);
    await db.query("UPDATE long_task.task SET shed_cron = '*/5 * * * *', next_start = $2 WHERE id = $1", [cron, T0]);
    const { fired } = await armAndFire(group, at(-50), at(0));
    assert.deepEqual(fired.map((f) => f.action), ['requeued', 'requeued']);
    const one = await getTask(db, oneShot);
    assert.equal(one.state_id, 'AW');
    assert.equal(one.next_start, null);
    const c = await getTask(db, cron);
    assert.equal(c.state_id, 'AW');
    assert.equal(ms(c.next_start), at(5 * 60_000).getTime());
  });

  it('clones a schedule whose overlap is allow; counts a slot skipped when the task has not ended', async () => {
    const group = 162;
    const cloned = await addTask(db, ['echo', 'copy'], { group, state: 'DR' });
    const busy = await addTask(db, ['true'], { group });
    await db.query("UPDATE long_task.task SET state_id = 'AE', worker_id = 1 WHERE id = $1", [busy]);
    await db.query("UPDATE long_task.task SET next_start = $2, shed_period_id = 'MIN', shed_period_count = 1, shed_clone = true WHERE id = $1", [cloned, T0]);
    await db.query("UPDATE long_task.task SET next_start = $2, shed_period_id = 'MIN', shed_period_count = 1 WHERE id = $1", [busy, T0]);
    const { fired } = await armAndFire(group, at(-10), at(2));
    assert.deepEqual(fired.sort((a, b) => a.id - b.id), [{ id: cloned, action: 'cloned' }, { id: busy, action: 'skipped' }].sort((a, b) => a.id - b.id));
    const { rows: copies } = await db.query('SELECT state_id, command FROM long_task.task WHERE shed_parent_id = $1', [cloned]);
    assert.deepEqual(copies, [{ state_id: 'AW', command: ['echo', 'copy'] }]);
    assert.equal((await getTask(db, cloned)).state_id, 'DR', 'the schedule itself stays a draft');
    const b = await getTask(db, busy);
    assert.equal(b.state_id, 'AE');
    assert.equal(b.shed_skip_count, 1);
    assert.equal(ms(b.next_start), at(60_000).getTime());
  });

  it('leaves to the general fire: a row changed since the read, a fire later than the next slot, and overlap policies', async () => {
    const group = 163;
    const moved = await endedTask(group);
    const late = await endedTask(group);
    const policy = await addTask(db, ['true'], { group, state: 'DR' });
    await db.query("UPDATE long_task.task SET next_start = $2, shed_period_id = 'SEC', shed_period_count = 1 WHERE id = ANY($1)", [[moved, late], T0]);
    await db.query("UPDATE long_task.task SET next_start = $2, shed_period_id = 'SEC', shed_period_count = 1, shed_clone = true, shed_overlap = 'skip' WHERE id = $1", [policy, T0]);
    const { rows } = await queries.upcomingSchedules(db.pool, { groupId: group, now: at(-100), limit: 100 });
    const armed = armSlots(rows)!;
    assert.deepEqual([...armed.ids].sort(), [moved, late].sort(), 'a clone with an overlap policy is not armed');
    // The user moves one schedule after the node read it.
    await db.query('UPDATE long_task.task SET next_start = $2 WHERE id = $1', [moved, at(500)]);
    // The fire comes 1.5 s late: the slot after T0 (T0 + 1 s) has passed too.
    const fired = await queries.fireSlots(db.pool, { groupId: group, taskIds: armed.ids, readSlots: armed.expected, nextSlots: armed.next, now: at(1_500) });
    assert.equal(fired.rows.length, 0, 'nothing fired');
    assert.equal(ms((await getTask(db, late)).next_start), T0.getTime(), 'the late row is untouched');
    // The general fire catches up once, to the first slot after now, and fires the policy's copy.
    const general = await fireDueSchedules(db.pool, queries, group, at(1_500), testLogger);
    assert.equal(general.fired, 3);
    assert.equal(ms((await getTask(db, late)).next_start), at(2_000).getTime());
    // The user's move started a new anchor (T0 + 0.5 s).
    assert.equal(ms((await getTask(db, moved)).next_start), at(2_500).getTime());
  });

  it('fires nothing before the slot, and each slot once', async () => {
    const group = 164;
    const id = await endedTask(group);
    await db.query("UPDATE long_task.task SET next_start = $2, shed_period_id = 'HOU', shed_period_count = 1 WHERE id = $1", [id, T0]);
    const { rows } = await queries.upcomingSchedules(db.pool, { groupId: group, now: at(-100), limit: 100 });
    const armed = armSlots(rows)!;
    const early = await queries.fireSlots(db.pool, { groupId: group, taskIds: armed.ids, readSlots: armed.expected, nextSlots: armed.next, now: at(-1) });
    assert.equal(early.rows.length, 0, 'not before its slot');
    const first = await queries.fireSlots(db.pool, { groupId: group, taskIds: armed.ids, readSlots: armed.expected, nextSlots: armed.next, now: at(0) });
    const again = await queries.fireSlots(db.pool, { groupId: group, taskIds: armed.ids, readSlots: armed.expected, nextSlots: armed.next, now: at(1) });
    assert.equal(first.rows.length, 1);
    assert.equal(again.rows.length, 0, 'the slot fired once');
  });

  it('compares next_start to the microsecond (a Date keeps milliseconds)', async () => {
    const group = 166;
    const id = await addTask(db, ['true'], { group, state: 'DR' });
    const { rows: set } = await db.query<{ due: Date; us: number }>(
      "UPDATE long_task.task SET next_start = now() + interval '1 s' + interval '123 microseconds' WHERE id = $1 RETURNING next_start AS due, extract(microseconds FROM next_start)::int % 1000 AS us",
      [id],
    );
    const { rows } = await queries.upcomingSchedules(db.pool, { groupId: group, now: null, limit: 100 });
    const armed = armSlots(rows)!;
    const fired = await queries.fireSlots(db.pool, { groupId: group, taskIds: armed.ids, readSlots: armed.expected, nextSlots: armed.next, now: new Date(set[0]!.due.getTime() + 1) });
    assert.equal(fired.rows.length, 1, `fired (next_start had ${set[0]!.us} µs past the millisecond)`);
    assert.equal((await getTask(db, id)).state_id, 'AW');
  });

  it("a copy carries its parent's run_as, limits, heartbeat timeout and concurrency key, by either fire", async () => {
    // Copies dropped these before version 32: a copy of a task set to run as nobody ran as the
    // group's user, or the node's own (root, for a node running as root), with no limits.
    const settings = "run_as = 'nobody', memory_max = 300000000, cpu_seconds_max = 60, open_files_max = 256, pids_max = 32, " +
      "cpu_max = 0.5, heartbeat_timeout = interval '45 s', concurrency_key = 'nightly'";
    const columns = 'run_as, memory_max, cpu_seconds_max, open_files_max, pids_max, cpu_max::float8 AS cpu_max, heartbeat_timeout::text AS heartbeat_timeout, concurrency_key';
    const expected = { run_as: 'nobody', memory_max: 300000000, cpu_seconds_max: 60, open_files_max: 256, pids_max: 32, cpu_max: 0.5, heartbeat_timeout: '00:00:45', concurrency_key: 'nightly' };
    const copyOf = async (parent: number): Promise<unknown[]> =>
      (await db.query(`SELECT ${columns} FROM long_task.task WHERE shed_parent_id = $1`, [parent])).rows;
    // The timer's fire (fire_slots).
    const timed = 167;
    const byTimer = await addTask(db, ['true'], { group: timed, state: 'DR' });
    await db.query(`UPDATE long_task.task SET ${settings}, next_start = $2, shed_period_id = 'HOU', shed_period_count = 1, shed_clone = true WHERE id = $1`, [byTimer, T0]);
    const { fired } = await armAndFire(timed, at(-300), at(1));
    assert.deepEqual(fired, [{ id: byTimer, action: 'cloned' }]);
    assert.deepEqual(await copyOf(byTimer), [expected]);
    // The general fire (dueSchedules, then cloneScheduled).
    const general = 168;
    const byGeneral = await addTask(db, ['true'], { group: general, state: 'DR' });
    await db.query(`UPDATE long_task.task SET ${settings}, next_start = $2, shed_period_id = 'HOU', shed_period_count = 1, shed_clone = true WHERE id = $1`, [byGeneral, T0]);
    const result = await fireDueSchedules(db.pool, queries, general, at(1), testLogger);
    assert.equal(result.cloned, 1);
    assert.deepEqual(await copyOf(byGeneral), [expected]);
  });

  it('an empty group: one row of nulls, nothing armed', async () => {
    const { rows } = await queries.upcomingSchedules(db.pool, { groupId: 165, now: null, limit: 100 });
    assert.equal(rows.length, 1);
    assert.equal((rows[0] as { delay_ms: null }).delay_ms, null);
    assert.equal(armSlots(rows), null);
  });
});
