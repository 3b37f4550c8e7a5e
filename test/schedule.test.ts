// Scheduling against a real PostgreSQL: the seed's scheduling UPDATE, skipped slots, clones,
// catch-up after downtime, calendar arithmetic (month ends, DST), cron with seconds,
// validation (SQL and CLI), several nodes racing one schedule, and one-shots.
// Each test uses a group of its own (and worker ids of its own), so no node fires another
// test's schedules. The calendar tests call fireDueSchedules with an injected now, on groups
// no node serves.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { DateTime } from 'luxon';
import type { Task } from '../src/client/types.js';
import { loadStatements } from '../src/sql/queries/index.js';
import { fireDueSchedules, Scheduler } from '../src/node/timers/scheduler.js';
import { runCli as runCliOn, type CliResult } from './helpers/cli.js';
import { addTask, getTask, startNode, stopAllNodes, tempDir, testLogger, useTestDatabase, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';

const queries = loadStatements('long_task');
/** SQL: a timestamptz column as whole microseconds since the epoch. */
const EPOCH_US = (column: string): string => `(extract(epoch FROM ${column}) * 1000000)::int8`;

// Copied from the seed README, whitespace included ("SET " ends in a space, then tabs).
const SEED_SCHEDULE = `UPDATE long_task.task
SET 
\tnext_start=now(),
\tshed_period_id='HOU',
\tshed_period_count=2,
\tshed_clone=false
WHERE id = <id>`;

const db = useTestDatabase('schedule');

async function dbNow(): Promise<Date> {
  const { rows } = await db.query<{ now: Date }>('SELECT clock_timestamp() AS now');
  return rows[0]!.now;
}

/** Clears a schedule the way `pg-tasks unschedule` does. */
async function unschedule(id: number): Promise<void> {
  await queries.clearSchedule(db.pool, { taskId: id });
}

/** Moves a task of a group no node serves through a run by hand: AW → AE (worker 1) → CS. */
async function completeByHand(id: number): Promise<void> {
  const t = await getTask(db, id);
  if (t.state_id !== 'AW') await db.query("UPDATE long_task.task SET state_id = 'AW', worker_id = NULL WHERE id = $1", [id]);
  await db.query("UPDATE long_task.task SET state_id = 'AE', worker_id = 1 WHERE id = $1", [id]);
  await db.query("UPDATE long_task.task SET state_id = 'CS' WHERE id = $1", [id]);
  assert.equal((await getTask(db, id)).state_id, 'CS');
}

interface CloneRow {
  id: number;
  state_id: string;
  created: Date;
  /** created in microseconds since the epoch (a Date keeps only milliseconds). */
  created_us: number;
  started: Date | null;
  shed_parent_id: number;
  command: string[];
  group_id: number;
}

async function clonesOf(parent: number): Promise<CloneRow[]> {
  const { rows } = await db.query<CloneRow>(
    `SELECT id::int AS id, state_id, created, ${EPOCH_US('created')} AS created_us, started, shed_parent_id, command, group_id
       FROM long_task.task WHERE shed_parent_id = $1 ORDER BY created, id`,
    [parent],
  );
  return rows;
}

/** A command that appends its task id to a log, once per run. */
function recorder(log: string): string[] {
  return ['sh', '-c', `echo "$PG_TASKS_TASK_ID" >> ${log}`];
}

function runsPerTask(log: string): Map<number, number> {
  const counts = new Map<number, number>();
  let text = '';
  try {
    text = readFileSync(log, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  for (const line of text.split('\n').filter((l) => l !== '')) counts.set(Number(line), (counts.get(Number(line)) ?? 0) + 1);
  return counts;
}

const ms = (d: unknown): number => (d as Date).getTime();

/** The seed's period columns with shed_clone: a copy every second from now. Returns the
 * anchor in microseconds since the epoch. */
async function scheduleEverySecondCloned(id: number): Promise<number> {
  const { rows } = await db.query<{ anchor_us: number | null }>(
    `UPDATE long_task.task SET next_start = now(), shed_period_id = 'SEC', shed_period_count = 1, shed_clone = true
      WHERE id = $1 RETURNING ${EPOCH_US('shed_anchor')} AS anchor_us`,
    [id],
  );
  assert.equal(typeof rows[0]!.anchor_us, 'number', 'shed_anchor is set');
  return rows[0]!.anchor_us!;
}

/**
 * At most one clone per slot. A clone's created is the now() of the transaction that fired
 * it, which is at or after its slot (it fired because next_start <= now()); that fire moved
 * next_start past now(), so the next fire is in a later slot however late either was. Hence,
 * with slots anchor + k × step: every clone falls in a slot window of its own, and there are
 * no more clones than slots up to the last one. Exact, whatever the timer jitter.
 */
function assertOnePerSlot(clones: CloneRow[], anchorUs: number, stepMs: number): void {
  const listing = clones.map((c) => c.created.toISOString()).join(', ');
  const anchor = new Date(anchorUs / 1_000).toISOString();
  // In microseconds, as PostgreSQL stores them: milliseconds could round a fire a hair
  // before a slot boundary into the next slot.
  const slots = clones.map((c) => Math.floor((c.created_us - anchorUs) / (stepMs * 1_000)));
  for (const k of slots) assert.ok(k >= 0, `a clone before the anchor ${anchor}: ${listing}`);
  assert.equal(new Set(slots).size, slots.length, `two clones in one slot (anchor ${anchor}, step ${stepMs} ms): ${listing}`);
  assert.ok(clones.length <= Math.max(...slots) + 1, `${clones.length} clones for ${Math.max(...slots) + 1} slots: ${listing}`);
}

describe('on a node', () => {
  it("the seed README's scheduling UPDATE, verbatim, re-runs a completed task at once and every 2 hours", async () => {
    const node = await startNode(db, { workerId: 1, groupId: 0 });
    const id = await addTask(db, ['true'], { group: 0 });
    await waitEnded(db, [id]);
    const first = await getTask(db, id);
    assert.equal(first.state_id, 'CS');

    const result = await db.query(SEED_SCHEDULE.replace('<id>', String(id)));
    assert.equal(result.rowCount, 1);
    const again = await until(async () => {
      const t = await getTask(db, id);
      return t.state_id === 'CS' && ms(t.started) !== ms(first.started) ? t : null;
    }, 'the scheduled task to run again and complete');
    assert.ok(ms(again.started) > ms(first.started));
    assert.equal(again.exit_code, 0);

    const now = await dbNow();
    assert.ok(again.next_start instanceof Date);
    const twoHours = 2 * 3_600_000;
    assert.ok(Math.abs(ms(again.next_start) - (now.getTime() + twoHours)) < 60_000, `next_start ${(again.next_start).toISOString()} is not about now + 2 h (${now.toISOString()})`);
    assert.ok(again.shed_anchor instanceof Date, 'shed_anchor is set by the trigger');
    assert.equal(ms(again.next_start) - ms(again.shed_anchor), twoHours, 'the next slot is the anchor + 2 h');
    assert.equal(again.shed_period_id, 'HOU');
    assert.equal(again.shed_period_count, 2);
    assert.equal(again.shed_clone, false);
    assert.equal(again.shed_skip_count, 0);
    await unschedule(id);
    await node.shutdown();
  });

  it('skips the slots of a task that is still running: same process, shed_skip_count grows', async () => {
    const group = 20;
    const node = await startNode(db, { workerId: 20, groupId: group });
    const id = await addTask(db, ['sleep', '30'], { group });
    const running = await until(async () => {
      const t = await getTask(db, id);
      return t.state_id === 'AE' && t.pid !== null ? t : null;
    }, 'sleep 30 to run');

    await db.query("UPDATE long_task.task SET next_start = now(), shed_period_id = 'SEC', shed_period_count = 1 WHERE id = $1", [id]);
    const skipped = await until(async () => {
      const t = await getTask(db, id);
      return (t.shed_skip_count as number) >= 3 ? t : null;
    }, 'three slots to be skipped');
    assert.equal(skipped.state_id, 'AE');
    assert.equal(skipped.pid, running.pid, 'still the same process');
    assert.equal(ms(skipped.started), ms(running.started), 'not started again');
    assert.equal(skipped.worker_id, 20);
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM long_task.task WHERE group_id = $1', [group]);
    assert.equal(rows[0]!.n, 1, 'no other task appeared in the group');

    await unschedule(id);
    await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1", [id]);
    await waitEnded(db, [id]);
    await node.shutdown();
  });

  it('shed_clone queues copies of a draft template every second; the template stays DR and never runs', async () => {
    const group = 30;
    const node = await startNode(db, { workerId: 30, groupId: group });
    const template = await addTask(db, ['echo', 'clone'], { group, state: 'DR' });
    const anchor = await scheduleEverySecondCloned(template);
    await until(async () => (await clonesOf(template)).filter((c) => c.state_id === 'CS').length >= 3, 'three clones to complete');
    await unschedule(template);
    const clones = await clonesOf(template);
    await waitEnded(db, clones.map((c) => c.id));

    assertOnePerSlot(await clonesOf(template), anchor, 1_000);
    for (const c of await clonesOf(template)) {
      assert.equal(c.shed_parent_id, template);
      assert.equal(c.state_id, 'CS');
      assert.ok(c.started instanceof Date);
      assert.deepEqual(c.command, ['echo', 'clone']);
      assert.equal(c.group_id, group);
      const row = await getTask(db, c.id);
      assert.equal(row.next_start, null, 'a clone has no schedule of its own');
      assert.equal(row.shed_period_id, null);
      assert.match(row.output as string, /clone/);
    }
    const t = await getTask(db, template);
    assert.equal(t.state_id, 'DR');
    assert.equal(t.started, null);
    assert.equal(t.pid, null);
    assert.equal(t.worker_id, null);
    assert.equal(t.shed_skip_count, 0);
    await node.shutdown();
  });

  it('a cron schedule with seconds gets its first slot from the node, then clones on distinct 2-second slots', async () => {
    const group = 60;
    const node = await startNode(db, { workerId: 60, groupId: group });
    const template = await addTask(db, ['true'], { group, state: 'DR' });
    const written = await dbNow();
    await db.query("UPDATE long_task.task SET shed_cron = '*/2 * * * * *', shed_clone = true WHERE id = $1", [template]);
    assert.equal((await getTask(db, template)).next_start, null, 'the database leaves the first slot to a node');

    const initialised = await until(async () => (await getTask(db, template)).next_start as Date | null, 'the node to compute the first slot');
    assert.ok(initialised > written);
    assert.equal(initialised.getTime() % 2_000, 0, `${initialised.toISOString()} is not on an even second`);

    await until(async () => (await clonesOf(template)).length >= 3, 'three clones', 30_000);
    await unschedule(template);
    const clones = await clonesOf(template);
    await waitEnded(db, clones.map((c) => c.id));
    // Cron slots of */2 are the even seconds: slot k starts at k × 2 s since the epoch.
    assertOnePerSlot(clones, 0, 2_000);
    for (const c of clones) assert.ok(c.created > written, 'no clone before the schedule was written');
    const t = await getTask(db, template);
    assert.equal(t.state_id, 'DR');
    assert.equal(t.started, null);
    await node.shutdown();
  });

  it('three nodes racing one cloning schedule fire each slot once, and each clone runs once', async () => {
    const group = 80;
    const log = `${tempDir('race')}/log`;
    await Promise.all([81, 82, 83].map((workerId) => startNode(db, { workerId, groupId: group, maxTasks: 4, nodeName: `race-${workerId}` })));
    const template = await addTask(db, recorder(log), { group, state: 'DR' });
    const anchor = await scheduleEverySecondCloned(template);
    await until(async () => (await clonesOf(template)).length >= 5, 'five clones', 30_000);
    await unschedule(template);
    const clones = await clonesOf(template);
    await waitEnded(db, clones.map((c) => c.id));

    assertOnePerSlot(clones, anchor, 1_000);
    const runs = runsPerTask(log);
    const workers = new Set<number>();
    for (const c of clones) {
      const row = await getTask(db, c.id);
      assert.equal(row.state_id, 'CS');
      assert.ok(row.started instanceof Date);
      assert.equal(runs.get(c.id), 1, `clone ${c.id} ran ${runs.get(c.id) ?? 0} times`);
      workers.add(row.worker_id as number);
    }
    assert.equal(runs.size, clones.length, 'only clones ran');
    for (const w of workers) assert.ok([81, 82, 83].includes(w));
    assert.equal((await getTask(db, template)).state_id, 'DR');
    await stopAllNodes();
  });

  it('three nodes racing one cron schedule (every second, cloned) fire each slot once', async () => {
    const group = 85;
    const log = `${tempDir('race-cron')}/log`;
    await Promise.all([86, 87, 88].map((workerId) => startNode(db, { workerId, groupId: group, maxTasks: 4, nodeName: `cron-${workerId}` })));
    const template = await addTask(db, recorder(log), { group, state: 'DR' });
    // No next_start: a node computes the first slot.
    await db.query("UPDATE long_task.task SET shed_cron = '* * * * * *', shed_clone = true WHERE id = $1", [template]);
    await until(async () => (await clonesOf(template)).length >= 5, 'five clones', 30_000);
    await unschedule(template);
    const clones = await clonesOf(template);
    await waitEnded(db, clones.map((c) => c.id));
    // Cron slots are whole seconds: counted from the epoch, each clone has a second of its own.
    assertOnePerSlot(clones, 0, 1_000);
    const runs = runsPerTask(log);
    for (const c of clones) assert.equal(runs.get(c.id), 1, `clone ${c.id} ran ${runs.get(c.id) ?? 0} times`);
    assert.equal(runs.size, clones.length, 'only clones ran');
    await stopAllNodes();
  });

  it('a one-shot next_start on a draft runs it once and clears next_start', async () => {
    const group = 90;
    const node = await startNode(db, { workerId: 90, groupId: group });
    const id = await addTask(db, ['echo', 'once'], { group, state: 'DR' });
    const { rows } = await db.query<{ next_start: Date }>(
      "UPDATE long_task.task SET next_start = now() + interval '1 second' WHERE id = $1 RETURNING next_start",
      [id],
    );
    const at = rows[0]!.next_start;
    const t0 = await getTask(db, id);
    assert.equal(t0.state_id, 'DR');
    assert.equal(t0.shed_anchor, null, 'a one-shot has no anchor');

    await until(async () => (await getTask(db, id)).state_id === 'CS', 'the one-shot to run');
    const t = await getTask(db, id);
    assert.equal(t.next_start, null);
    assert.equal(t.shed_anchor, null);
    assert.equal(t.shed_skip_count, 0);
    assert.ok(ms(t.started) >= at.getTime(), 'not started before its time');
    assert.match(t.output as string, /once/);
    const { rows: scheduled } = await queries.listScheduled(db.pool, { groupId: group, limit: 50 });
    assert.equal(scheduled.length, 0, 'nothing left scheduled in the group');
    await node.shutdown();
  });
});

describe('Scheduler', () => {
  it('stopped while a cycle is in flight, it leaves no timer behind', async () => {
    const group = 95;
    const id = await addTask(db, ['true'], { group, state: 'DR' });
    // A slot an hour away: the cycle's read ends by arming a timer for it.
    await db.query("UPDATE long_task.task SET next_start = now() + interval '1 hour', shed_period_id = 'HOU' WHERE id = $1", [id]);
    const scheduler = new Scheduler(db.pool, queries, group, testLogger);
    // Its loop (src/lib/timed-loop.ts) holds the timer and the cycle in flight.
    const inside = (scheduler as unknown as { loop: { cancel: (() => void) | null; busy: boolean } }).loop;
    scheduler.start();
    assert.equal(inside.busy, true, 'the cycle is in flight');
    void scheduler.stop();
    await until(() => !inside.busy, 'the cycle to finish');
    assert.equal(inside.cancel, null, 'a stopped scheduler armed a timer');
    await unschedule(id);
  });
});

describe('fireDueSchedules with an injected now', () => {
  it('fires once after downtime (one catch-up run, no burst) and moves to the first slot after now', async () => {
    const group = 40;
    const T0 = new Date('2031-05-05T12:34:56.789Z');
    const dayBefore = new Date(T0.getTime() - 86_400_000);
    const id = await addTask(db, ['true'], { group });
    await completeByHand(id);
    await db.query("UPDATE long_task.task SET next_start = $2, shed_period_id = 'HOU', shed_period_count = 1 WHERE id = $1", [id, dayBefore]);
    assert.equal(ms((await getTask(db, id)).shed_anchor), dayBefore.getTime());

    const now = new Date(T0.getTime() + 1);
    const first = await fireDueSchedules(db.pool, queries, group, now, testLogger);
    assert.deepEqual(
      { fired: first.fired, requeued: first.requeued, cloned: first.cloned, skipped: first.skipped, rows: first.rows },
      { fired: 1, requeued: 1, cloned: 0, skipped: 0, rows: 1 },
    );
    const t = await getTask(db, id);
    assert.equal(t.state_id, 'AW');
    assert.equal(t.worker_id, null);
    // Slots are dayBefore + k h; k = 24 is T0 itself, which is not after T0 + 1 ms.
    assert.equal(ms(t.next_start), dayBefore.getTime() + 25 * 3_600_000);
    assert.equal(ms(t.next_start), T0.getTime() + 3_600_000);
    assert.equal(ms(t.shed_anchor), dayBefore.getTime(), 'the scheduler keeps the anchor');
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM long_task.task WHERE group_id = $1', [group]);
    assert.equal(rows[0]!.n, 1, 'no copies');

    const second = await fireDueSchedules(db.pool, queries, group, now, testLogger);
    assert.equal(second.fired, 0);
    assert.equal(second.rows, 0);
    const t2 = await getTask(db, id);
    assert.equal(t2.state_id, 'AW');
    assert.equal(ms(t2.next_start), T0.getTime() + 3_600_000);
  });

  it('monthly from Jan 31 runs Feb 28, then Mar 31 (counted from the anchor)', async () => {
    const group = 50;
    const id = await addTask(db, ['true'], { group });
    await completeByHand(id);
    const anchor = new Date('2027-01-31T09:00:00Z');
    await db.query("UPDATE long_task.task SET next_start = $2, shed_period_id = 'MON', shed_period_count = 1 WHERE id = $1", [id, anchor]);

    let r = await fireDueSchedules(db.pool, queries, group, new Date('2027-01-31T09:00:00.001Z'), testLogger);
    assert.equal(r.requeued, 1);
    let t = await getTask(db, id);
    assert.equal(t.state_id, 'AW');
    assert.equal((t.next_start as Date).toISOString(), '2027-02-28T09:00:00.000Z');

    await completeByHand(id);
    r = await fireDueSchedules(db.pool, queries, group, new Date('2027-02-28T09:00:00.001Z'), testLogger);
    assert.equal(r.requeued, 1);
    t = await getTask(db, id);
    assert.equal(t.state_id, 'AW');
    assert.equal((t.next_start as Date).toISOString(), '2027-03-31T09:00:00.000Z');
    assert.equal(ms(t.shed_anchor), anchor.getTime());
  });

  it('daily 09:00 America/New_York keeps 09:00 local across spring-forward and fall-back', async () => {
    const group = 51;
    const id = await addTask(db, ['true'], { group });
    await completeByHand(id);
    // Saturday 2027-03-13 09:00 EST (UTC−5); DST starts Sunday 2027-03-14, ends Sunday 2027-11-07.
    const anchor = new Date('2027-03-13T14:00:00Z');
    assert.equal(DateTime.fromJSDate(anchor, { zone: 'America/New_York' }).toFormat('yyyy-MM-dd HH:mm ZZZZ'), '2027-03-13 09:00 EST');
    await db.query(
      "UPDATE long_task.task SET next_start = $2, shed_period_id = 'DAY', shed_period_count = 1, shed_tz = 'America/New_York' WHERE id = $1",
      [id, anchor],
    );
    const steps: Array<[fireAt: string, expected: string]> = [
      ['2027-03-13T14:00:00.001Z', '2027-03-14T13:00:00.000Z'], // → Sunday 09:00 EDT
      ['2027-03-14T13:00:00.001Z', '2027-03-15T13:00:00.000Z'],
      // A catch-up across months: Saturday 2027-11-06 09:00 EDT (13:00Z) has passed …
      ['2027-11-06T13:00:00.001Z', '2027-11-07T14:00:00.000Z'], // → Sunday 09:00 EST
      ['2027-11-07T14:00:00.001Z', '2027-11-08T14:00:00.000Z'],
    ];
    for (const [fireAt, expected] of steps) {
      const r = await fireDueSchedules(db.pool, queries, group, new Date(fireAt), testLogger);
      assert.equal(r.requeued, 1, `fire at ${fireAt}`);
      const t = await getTask(db, id);
      assert.equal(t.state_id, 'AW');
      assert.equal((t.next_start as Date).toISOString(), expected, `fire at ${fireAt}`);
      assert.equal(DateTime.fromJSDate(t.next_start as Date, { zone: 'America/New_York' }).toFormat('HH:mm'), '09:00');
      assert.equal(ms(t.shed_anchor), anchor.getTime());
      await completeByHand(id);
    }
  });
});

/** Runs the CLI as a user does (a child process) against the test database. */
function runCli(args: string[]): Promise<CliResult> {
  return runCliOn(db.url, args);
}

async function ok(args: string[]): Promise<string> {
  const r = await runCli(args);
  assert.equal(r.code, 0, `pg-tasks ${args.join(' ')} failed: ${r.stderr}`);
  assert.equal(r.stderr, '', `pg-tasks ${args.join(' ')} wrote to stderr`);
  return r.stdout;
}

function lines(text: string): string[] {
  return text.split('\n').filter((l, i, all) => !(l === '' && i === all.length - 1));
}

/** Non-zero exit, nothing on stdout, no stack trace; returns the stderr lines. */
function failed(r: CliResult): string[] {
  assert.notEqual(r.code, 0, `expected a failure, got exit 0: ${r.stdout}`);
  assert.equal(r.stdout, '');
  assert.ok(!/^\s+at /m.test(r.stderr), `stack trace on stderr:\n${r.stderr}`);
  return lines(r.stderr);
}

/** A refusal by the command: one line, "pg-tasks: <message>". */
function runtimeError(r: CliResult): string {
  const errLines = failed(r);
  assert.equal(errLines.length, 1, `expected one stderr line, got:\n${r.stderr}`);
  assert.match(errLines[0]!, /^pg-tasks: \S/);
  return errLines[0]!;
}

describe('validation', () => {
  it('plain SQL: invalid cron expressions and time zones are refused (23514) and change nothing', async () => {
    const id = await addTask(db, ['true'], { group: 70, state: 'DR' });
    const before = await getTask(db, id);
    // The last three pass a looser check but the node's cron library refuses them (no W, no
    // L-n), and an 11-digit number must not overflow into another error.
    for (const cron of ['61 * * * *', '* * *', 'a b c d e', '99999999999 * * * *', '0 0 15W * *', '0 0 L-3 * *']) {
      await assert.rejects(db.query('UPDATE long_task.task SET shed_cron = $2 WHERE id = $1', [id, cron]), (error: Error & { code?: string }) => {
        assert.equal(error.code, '23514');
        assert.ok(error.message.startsWith(`invalid cron expression "${cron}": expected 5 fields`), error.message);
        return true;
      });
      assert.deepEqual(await getTask(db, id), before);
    }
    // posix/… exists on servers built with the system's zone files, Factory on every server;
    // the node's zone database (ICU) knows neither.
    for (const tz of ['Mars/Base', 'PST', '+3', 'posix/Europe/Berlin', 'Factory']) {
      await assert.rejects(
        db.query("UPDATE long_task.task SET shed_tz = $2, next_start = now(), shed_period_id = 'DAY' WHERE id = $1", [id, tz]),
        (error: Error & { code?: string }) => {
          assert.equal(error.code, '23514');
          assert.equal(error.message, `unknown time zone "${tz}": use an IANA name such as UTC or Europe/Berlin`);
          return true;
        },
      );
      assert.deepEqual(await getTask(db, id), before);
    }
  });

  it('plain SQL: an IANA zone and a 6-field cron are accepted; a period and a cron together are refused', async () => {
    const id = await addTask(db, ['true'], { group: 70, state: 'DR' });
    await db.query("UPDATE long_task.task SET shed_tz = 'Europe/Berlin', shed_cron = '*/10 * 9-17 * * MON-FRI' WHERE id = $1", [id]);
    await db.query("UPDATE long_task.task SET shed_tz = 'America/Argentina/Buenos_Aires' WHERE id = $1", [id]);
    let t = await getTask(db, id);
    assert.equal(t.shed_tz, 'America/Argentina/Buenos_Aires');
    assert.equal(t.shed_cron, '*/10 * 9-17 * * MON-FRI');
    for (const cron of ['0 9 * * 1-5', '0 0 L * ?', '0 0 12 ? JAN,JUL 5#2', '*/15 0-30/5 * * * *']) {
      await db.query('UPDATE long_task.task SET shed_cron = $2 WHERE id = $1', [id, cron]);
      assert.equal((await getTask(db, id)).shed_cron, cron);
    }
    const before = await getTask(db, id);
    await assert.rejects(db.query("UPDATE long_task.task SET shed_period_id = 'HOU' WHERE id = $1", [id]), (error: Error & { code?: string; constraint?: string }) => {
      assert.equal(error.code, '23514');
      assert.equal(error.constraint, 'task_shed_period_or_cron');
      return true;
    });
    assert.deepEqual(await getTask(db, id), before);
    t = await getTask(db, id);
    assert.equal(t.shed_period_id, null);
    await unschedule(id);
  });

  it('plain SQL: changing a cron expression or zone clears next_start for a node to recompute, unless set too', async () => {
    const id = await addTask(db, ['true'], { group: 71, state: 'DR' });
    await db.query("UPDATE long_task.task SET shed_cron = '0 0 1 1 *', next_start = '2030-01-01T00:00:00Z' WHERE id = $1", [id]);
    assert.equal(ms((await getTask(db, id)).next_start), Date.parse('2030-01-01T00:00:00Z'));
    await db.query("UPDATE long_task.task SET shed_cron = '*/2 * * * * *' WHERE id = $1", [id]);
    assert.equal((await getTask(db, id)).next_start, null);
    await db.query("UPDATE long_task.task SET next_start = '2031-01-01T00:00:00Z' WHERE id = $1", [id]);
    await db.query("UPDATE long_task.task SET shed_tz = 'Europe/Berlin' WHERE id = $1", [id]);
    assert.equal((await getTask(db, id)).next_start, null);
    await db.query("UPDATE long_task.task SET shed_cron = '0 9 * * *', next_start = '2032-01-01T08:00:00Z' WHERE id = $1", [id]);
    assert.equal(ms((await getTask(db, id)).next_start), Date.parse('2032-01-01T08:00:00Z'));
    await unschedule(id);
  });

  it('CLI: invalid cron, zone or period fail with one error line and change nothing', async () => {
    const id = await addTask(db, ['true'], { group: 71, state: 'DR' });
    const before = await getTask(db, id);

    const cron = runtimeError(await runCli(['schedule', String(id), '--cron', '61 * * * *']));
    assert.match(cron, /invalid cron expression "61 \* \* \* \*"/);
    const tz = runtimeError(await runCli(['schedule', String(id), '--every', '1d', '--tz', 'Mars/Base']));
    assert.match(tz, /unknown time zone "Mars\/Base"/);
    // A malformed option is a usage error: one line too, the flag first.
    const every = failed(await runCli(['schedule', String(id), '--every', '2x']));
    assert.deepEqual(every, ['pg-tasks: --every: expected a period like 10s, 5m, 2h, 1d, 1w or 1mo, got "2x"']);

    assert.deepEqual(await getTask(db, id), before);
  });

  it('CLI: schedule --every / --cron --tz --clone / --at, ls --scheduled and unschedule', async () => {
    const group = 72;
    const periodic = await addTask(db, ['echo', 'periodic'], { group });
    await completeByHand(periodic);
    const cloned = await addTask(db, ['echo', 'cloned'], { group, state: 'DR' });
    const once = await addTask(db, ['echo', 'once'], { group, state: 'DR' });

    const start = await dbNow();
    const out1 = await ok(['schedule', String(periodic), '--every', '10s']);
    assert.match(out1, new RegExp(`^task ${periodic}: every 10s, next run \\S+\\n$`));
    let t = await getTask(db, periodic);
    assert.equal(t.shed_period_id, 'SEC');
    assert.equal(t.shed_period_count, 10);
    assert.equal(t.shed_cron, null);
    assert.equal(t.shed_clone, false);
    assert.ok(ms(t.next_start) >= start.getTime() - 5_000 && ms(t.next_start) <= (await dbNow()).getTime(), 'the first slot is now');
    assert.equal(ms(t.shed_anchor), ms(t.next_start));

    const cronExpr = '0 9 * * MON-FRI';
    const out2 = await ok(['schedule', String(cloned), '--cron', cronExpr, '--tz', 'Europe/Berlin', '--clone']);
    assert.match(out2, new RegExp(`^task ${cloned}: cron 0 9 \\* \\* MON-FRI \\(Europe/Berlin\\), cloned, next run \\S+\\n$`));
    t = await getTask(db, cloned);
    assert.equal(t.shed_cron, cronExpr);
    assert.equal(t.shed_tz, 'Europe/Berlin');
    assert.equal(t.shed_clone, true);
    assert.equal(t.shed_period_id, null);
    assert.equal(t.state_id, 'DR');
    const local = DateTime.fromJSDate(t.next_start as Date, { zone: 'Europe/Berlin' });
    assert.equal(local.toFormat('HH:mm:ss.SSS'), '09:00:00.000');
    assert.ok(local.weekday <= 5, `${local.toISO()} is not a weekday`);
    assert.ok(ms(t.next_start) > start.getTime() && ms(t.next_start) - start.getTime() <= 4 * 86_400_000, 'the next weekday 09:00');

    const at = '2031-01-01T06:00:00Z';
    const out3 = await ok(['schedule', String(once), '--at', at]);
    assert.equal(out3, `task ${once}: once, next run 2031-01-01T06:00:00.000Z\n`);
    t = await getTask(db, once);
    assert.equal((t.next_start as Date).toISOString(), '2031-01-01T06:00:00.000Z');
    assert.equal(t.shed_period_id, null);
    assert.equal(t.shed_cron, null);
    assert.equal(t.shed_anchor, null);
    assert.equal(t.state_id, 'DR');

    const table = lines(await ok(['ls', '--scheduled', '--group', String(group)])).map((l) => l.trimEnd().split(/ {2,}/));
    assert.deepEqual(table[0], ['ID', 'STATE', 'GROUP', 'SCHEDULE', 'NEXT RUN', 'SKIPPED', 'COMMAND']);
    const byId = new Map(table.slice(1).map((r) => [Number(r[0]), r]));
    assert.deepEqual([...byId.keys()].sort((a, b) => a - b), [periodic, cloned, once]);
    assert.equal(byId.get(periodic)![3], 'every 10s');
    assert.equal(byId.get(cloned)![3], 'cron 0 9 * * MON-FRI (Europe/Berlin), cloned');
    assert.equal(byId.get(once)![3], 'once');
    assert.equal(byId.get(once)![6], 'echo once');

    const json = JSON.parse(await ok(['ls', '--scheduled', '--json', '--group', String(group)])) as Task[];
    assert.deepEqual(json.map((x) => x.id).sort((a, b) => a - b), [periodic, cloned, once]);
    const jsonCloned = json.find((x) => x.id === cloned)!;
    assert.equal(jsonCloned.shed_cron, cronExpr);
    assert.equal(jsonCloned.shed_tz, 'Europe/Berlin');
    assert.equal(jsonCloned.shed_clone, true);

    for (const id of [periodic, cloned, once]) {
      assert.equal(await ok(['unschedule', String(id)]), `task ${id}: not scheduled\n`);
      const u = await getTask(db, id);
      assert.equal(u.next_start, null);
      assert.equal(u.shed_period_id, null);
      assert.equal(u.shed_cron, null);
      assert.equal(u.shed_clone, false);
    }
    assert.equal(await ok(['ls', '--scheduled', '--group', String(group)]), 'no scheduled tasks\n');
    assert.deepEqual(JSON.parse(await ok(['ls', '--scheduled', '--json', '--group', String(group)])), []);
    // Nothing ran: no node serves the group.
    assert.equal((await getTask(db, cloned)).state_id, 'DR');
    assert.equal((await getTask(db, once)).state_id, 'DR');
  });
});
