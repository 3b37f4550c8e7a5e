// shed_missed (migration 26) against a real PostgreSQL: what a fire does with the slots no
// node fired in time. Each test calls fireDueSchedules with an injected now on a group no node
// serves, so "a day of downtime" is one call, without sleeping.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { TaskClient } from '../src/client/client.js';
import { loadStatements } from '../src/sql/queries/index.js';
import { fireDueSchedules } from '../src/node/timers/scheduler.js';
import { runCli } from './helpers/cli.js';
import { addTask, getTask, startNode, stopAllNodes, tempDir, testLogger, useTestDatabase, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';

const queries = loadStatements('long_task');
const db = useTestDatabase('schedule_missed');
const HOUR = 3_600_000;
const ms = (d: unknown): number => (d as Date).getTime();

/** A task ended (CS), moved through a run by hand: its group has no node. */
async function endedTask(group: number): Promise<number> {
  const id = await addTask(db, ['true'], { group });
  await db.query("UPDATE long_task.task SET state_id = 'AE', worker_id = 1 WHERE id = $1", [id]);
  await db.query("UPDATE long_task.task SET state_id = 'CS' WHERE id = $1", [id]);
  return id;
}

/** A task of its own group, ended (CS), with an hourly schedule whose first slot is `from`. */
async function hourly(group: number, from: Date, columns: { clone: boolean; missed?: string; catchupMax?: number; overlap?: string }): Promise<number> {
  const id = await endedTask(group);
  await db.query(
    `UPDATE long_task.task SET next_start = $2, shed_period_id = 'HOU', shed_period_count = 1, shed_clone = $3,
            shed_missed = coalesce($4, shed_missed), shed_catchup_max = coalesce($5, shed_catchup_max),
            shed_overlap = coalesce($6, shed_overlap)
      WHERE id = $1`,
    [id, from, columns.clone, columns.missed ?? null, columns.catchupMax ?? null, columns.overlap ?? null],
  );
  return id;
}

interface Copy {
  id: number;
  state_id: string;
  shed_slot: Date | null;
  priority: number;
  last_state_change: Date;
}

async function copiesOf(parent: number): Promise<Copy[]> {
  const { rows } = await db.query<Copy>(
    'SELECT id::int AS id, state_id, shed_slot, priority, last_state_change FROM long_task.task WHERE shed_parent_id = $1 ORDER BY id',
    [parent],
  );
  return rows;
}

async function skipCount(id: number): Promise<number> {
  return (await getTask(db, id)).shed_skip_count as number;
}

// Slots every hour from T0 - 24 h; a fire at T0 + 1 ms finds 25 of them due (k = 0 … 24).
const T0 = new Date('2031-05-05T12:00:00.000Z');
const DAY_BEFORE = new Date(T0.getTime() - 24 * HOUR);
const NOW = new Date(T0.getTime() + 1);
const NEXT = T0.getTime() + HOUR;

describe('shed_missed', () => {
  it('defaults to once: the seed rule, one copy for a day of missed slots, none counted', async () => {
    const id = await hourly(70, DAY_BEFORE, { clone: true });
    const t = await getTask(db, id);
    assert.equal(t.shed_missed, 'once');
    assert.equal(t.shed_catchup_max, 100);
    const r = await fireDueSchedules(db.pool, queries, 70, NOW, testLogger);
    assert.equal(r.cloned, 1);
    assert.equal((await copiesOf(id)).length, 1);
    assert.equal(ms((await copiesOf(id))[0]!.shed_slot), DAY_BEFORE.getTime(), 'once: the slot next_start held');
    assert.equal(await skipCount(id), 0);
    assert.equal(ms((await getTask(db, id)).next_start), NEXT);
  });

  it("the timer's one-statement fire gives its copy the slot too", async () => {
    const id = await hourly(80, T0, { clone: true, missed: 'all' });
    const { rows } = await db.query<{ exact: string }>('SELECT next_start::text AS exact FROM long_task.task WHERE id = $1', [id]);
    const fired = await queries.fireSlots(db.pool, { groupId: 80, taskIds: [id], readSlots: [rows[0]!.exact], nextSlots: [new Date(NEXT)], now: NOW });
    assert.deepEqual(fired.rows.map((r) => r.action), ['cloned']);
    assert.deepEqual((await copiesOf(id)).map((c) => ms(c.shed_slot)), [T0.getTime()]);
  });

  it('skip: no copy for a day of missed slots, all 25 counted, next_start the first slot in the future', async () => {
    const id = await hourly(71, DAY_BEFORE, { clone: true, missed: 'skip' });
    const r = await fireDueSchedules(db.pool, queries, 71, NOW, testLogger);
    assert.deepEqual({ fired: r.fired, cloned: r.cloned, skipped: r.skipped }, { fired: 1, cloned: 0, skipped: 1 });
    assert.equal((await copiesOf(id)).length, 0);
    assert.equal(await skipCount(id), 25);
    assert.equal(ms((await getTask(db, id)).next_start), NEXT);
  });

  it('skip: a fire late for one slot, before the next one came, missed nothing and runs', async () => {
    const id = await hourly(72, T0, { clone: true, missed: 'skip' });
    const r = await fireDueSchedules(db.pool, queries, 72, new Date(T0.getTime() + HOUR - 1), testLogger);
    assert.equal(r.cloned, 1);
    assert.equal((await copiesOf(id)).length, 1);
    assert.equal(await skipCount(id), 0);
    assert.equal(ms((await getTask(db, id)).next_start), NEXT);
  });

  it('skip: a schedule that re-queues itself is not re-queued for missed slots', async () => {
    const id = await hourly(73, DAY_BEFORE, { clone: false, missed: 'skip' });
    const r = await fireDueSchedules(db.pool, queries, 73, NOW, testLogger);
    assert.equal(r.requeued, 0);
    const t = await getTask(db, id);
    assert.equal(t.state_id, 'CS');
    assert.equal(t.shed_skip_count, 25);
    assert.equal(ms(t.next_start), NEXT);
  });

  it('all: one copy per missed slot, queued in slot order, none counted', async () => {
    const id = await hourly(74, new Date(T0.getTime() - 4 * HOUR), { clone: true, missed: 'all' });
    const r = await fireDueSchedules(db.pool, queries, 74, NOW, testLogger);
    assert.deepEqual({ fired: r.fired, cloned: r.cloned, skipped: r.skipped }, { fired: 1, cloned: 1, skipped: 0 });
    const copies = await copiesOf(id);
    assert.equal(copies.length, 5, 'T0 - 4 h … T0');
    assert.deepEqual(copies.map((c) => ms(c.shed_slot)), [4, 3, 2, 1, 0].map((h) => T0.getTime() - h * HOUR), 'each its own slot, in id order');
    // The claim orders by priority, last_state_change, id: equal but for the id, which
    // follows the slots.
    assert.ok(copies.every((c) => c.state_id === 'AW' && c.priority === copies[0]!.priority && ms(c.last_state_change) === ms(copies[0]!.last_state_change)));
    assert.equal(await skipCount(id), 0);
    assert.equal(ms((await getTask(db, id)).next_start), NEXT);
    // The next fire, on time, makes one copy.
    await fireDueSchedules(db.pool, queries, 74, new Date(NEXT + 1), testLogger);
    assert.equal((await copiesOf(id)).length, 6);
  });

  it('all: copies for the oldest shed_catchup_max slots, the rest counted as skipped', async () => {
    const id = await hourly(75, DAY_BEFORE, { clone: true, missed: 'all', catchupMax: 10 });
    await fireDueSchedules(db.pool, queries, 75, NOW, testLogger);
    const copies = await copiesOf(id);
    assert.equal(copies.length, 10);
    assert.equal(ms(copies.at(-1)!.shed_slot), DAY_BEFORE.getTime() + 9 * HOUR, 'the oldest ten');
    assert.equal(await skipCount(id), 15);
    assert.equal(ms((await getTask(db, id)).next_start), NEXT);
  });

  it('skip: a count past int (70 years of seconds) stops at its top rather than fail the fire', async () => {
    const id = await endedTask(82);
    await db.query("UPDATE long_task.task SET next_start = $2, shed_period_id = 'SEC', shed_period_count = 1, shed_missed = 'skip' WHERE id = $1",
      [id, new Date(T0.getTime() - 70 * 365 * 86_400_000)]);
    await fireDueSchedules(db.pool, queries, 82, NOW, testLogger);
    assert.equal(await skipCount(id), 2_147_483_647);
    assert.equal(ms((await getTask(db, id)).next_start), T0.getTime() + 1_000);
  });

  it('all: a cron schedule counts its slots the same way', async () => {
    const id = await endedTask(76);
    // Every 10 minutes: 13 slots from T0 - 2 h to T0.
    await db.query("UPDATE long_task.task SET shed_cron = '*/10 * * * *', next_start = $2, shed_clone = true, shed_missed = 'all', shed_catchup_max = 4 WHERE id = $1",
      [id, new Date(T0.getTime() - 2 * HOUR)]);
    await fireDueSchedules(db.pool, queries, 76, NOW, testLogger);
    assert.equal((await copiesOf(id)).length, 4);
    assert.equal(await skipCount(id), 9);
    assert.equal(ms((await getTask(db, id)).next_start), T0.getTime() + 10 * 60_000);
  });

  it('all without a clone, or with an overlap policy that holds copies back, is once', async () => {
    const self = await hourly(77, DAY_BEFORE, { clone: false, missed: 'all' });
    const held = await hourly(77, DAY_BEFORE, { clone: true, missed: 'all', overlap: 'skip' });
    const r = await fireDueSchedules(db.pool, queries, 77, NOW, testLogger);
    assert.deepEqual({ fired: r.fired, requeued: r.requeued, cloned: r.cloned, skipped: r.skipped }, { fired: 2, requeued: 1, cloned: 1, skipped: 0 });
    const t = await getTask(db, self);
    assert.equal(t.state_id, 'AW');
    assert.equal(t.shed_skip_count, 0);
    assert.equal(ms(t.next_start), NEXT);
    assert.equal((await copiesOf(held)).length, 1);
    assert.equal(await skipCount(held), 0);
  });

  it('plain SQL refuses an unknown policy and a cap out of range', async () => {
    const id = await endedTask(78);
    await assert.rejects(db.query("UPDATE long_task.task SET shed_missed = 'some' WHERE id = $1", [id]), /task_shed_missed_valid/);
    await assert.rejects(db.query('UPDATE long_task.task SET shed_catchup_max = 0 WHERE id = $1', [id]), /task_shed_catchup_max_valid/);
  });

  it('the client sets the policy and the cap, leaves them when not given, and refuses a cap out of range', async () => {
    const id = await endedTask(83);
    const client = new TaskClient({ connectionString: db.url });
    try {
      let t = await client.schedule(id, { every: { periodId: 'HOU', count: 1 }, clone: true, missed: 'skip', catchupMax: 12 });
      assert.deepEqual([t.shed_missed, t.shed_catchup_max], ['skip', 12]);
      t = await client.schedule(id, { every: { periodId: 'HOU', count: 2 }, clone: true });
      assert.deepEqual([t.shed_missed, t.shed_catchup_max], ['skip', 12]);
      await assert.rejects(client.schedule(id, { every: { periodId: 'HOU', count: 1 }, catchupMax: 0 }), /^Error: catchupMax must be an integer from 1 to 10000, got 0$/);
    } finally {
      await client.close();
    }
  });

  it('the CLI sets the policy and the cap, and refuses bad values in one line', async () => {
    const id = await endedTask(79);
    const set = await runCli(db.url, ['schedule', String(id), '--every', '1h', '--clone', '--missed', 'all', '--catchup-max', '7']);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /missed: all \(up to 7\)/);
    let t = await getTask(db, id);
    assert.equal(t.shed_missed, 'all');
    assert.equal(t.shed_catchup_max, 7);
    // Not given: left as it is.
    assert.equal((await runCli(db.url, ['schedule', String(id), '--every', '2h', '--clone'])).code, 0);
    t = await getTask(db, id);
    assert.equal(t.shed_missed, 'all');
    assert.equal(t.shed_catchup_max, 7);
    const self = await runCli(db.url, ['schedule', String(id), '--every', '1h', '--missed', 'all']);
    assert.equal(self.code, 0, self.stderr);
    assert.match(self.stderr, /^note: task \d+ re-queues itself \(no --clone\): its missed slots get one run, as --missed once\n$/);
    for (const args of [['--missed', 'some'], ['--catchup-max', '0'], ['--catchup-max', '10001']]) {
      const r = await runCli(db.url, ['schedule', String(id), '--every', '1h', ...args]);
      assert.notEqual(r.code, 0);
      const errLines = r.stderr.trim().split('\n');
      assert.equal(errLines.length, 1, r.stderr);
      assert.match(errLines[0]!, args[0] === '--missed' ? /--missed/ : /--catchup-max/);
    }
  });

  it('a node runs each catch-up copy with its own PG_TASKS_SLOT', async () => {
    after(stopAllNodes);
    const log = path.join(tempDir('missed'), 'slots');
    const id = await addTask(db, ['sh', '-c', `echo "$PG_TASKS_SLOT" >> ${log}`], { group: 81 });
    await db.query("UPDATE long_task.task SET state_id = 'AE', worker_id = 1 WHERE id = $1", [id]);
    await db.query("UPDATE long_task.task SET state_id = 'CS' WHERE id = $1", [id]);
    // Every 10 minutes from 35 minutes ago: slots at -35, -25, -15 and -5 minutes.
    await db.query(
      `UPDATE long_task.task SET next_start = clock_timestamp() - interval '35 minutes', shed_period_id = 'MIN', shed_period_count = 10,
              shed_clone = true, shed_missed = 'all' WHERE id = $1`, [id]);
    const from = ms((await getTask(db, id)).next_start);
    await startNode(db, { workerId: 81, groupId: 81 });
    const copies = await until(async () => { const c = await copiesOf(id); return c.length >= 4 ? c : null; }, 'the catch-up copies');
    await waitEnded(db, copies.map((c) => c.id));
    const expected = [0, 1, 2, 3].map((k) => new Date(from + k * 600_000).toISOString());
    assert.deepEqual(copies.map((c) => (c.shed_slot as Date).toISOString()), expected);
    assert.deepEqual(readFileSync(log, 'utf8').trim().split('\n').sort(), expected);
  });
});

