import type pg from 'pg';
import type { Logger } from 'pino';
import { withTransaction } from '../../db/connection.js';
import { Backoff } from '../../lib/backoff.js';
import type { NodeEvents } from '../events.js';
import type { Statements } from '../../sql/queries/index.js';
import type { Advance, DueRow, NewCopy } from '../../sql/queries/schedule.js';
import { TimedPart } from './timed-part.js';
import { describeError } from '../../db/errors.js';
import { dueSlots, nextCronSlot, nextSlot, type PeriodId, type Schedule } from '../../lib/schedule-math.js';

export type OverlapPolicy = 'allow' | 'skip' | 'queue' | 'cancel_previous';

/**
 * What a fire does with the slots a schedule missed (migration 26): none of them run (skip),
 * or one copy each, oldest first, up to shed_catchup_max (all: clones with overlap allow only).
 * null: the seed's one run for all of them (once), and a fire that missed no slot.
 */
function missedSlots(row: DueRow, schedule: Schedule): { copies: Date[]; skipped: number } | null {
  if (row.shed_missed === 'once' || row.next_start === null) return null;
  const all = row.shed_missed === 'all';
  // `all` queues copies: a schedule that re-queues itself, or whose overlap policy holds
  // copies back, has one run to give, as `once`.
  if (all && !(row.shed_clone && row.shed_overlap === 'allow')) return null;
  const due = dueSlots(schedule, row.next_start, row.now, all ? row.shed_catchup_max : 0);
  // One slot due: this fire is late for it, but no slot was missed.
  if (due.total < 2) return null;
  return { copies: due.slots, skipped: due.total - due.slots.length };
}

/**
 * What a cloned schedule's slot does while earlier copies have not ended: a copy queued now
 * ('AW'), a copy that waits for them ('DR', queued by a trigger when the last one ends), or
 * none (the slot is skipped and counted). cancel_previous also cancels them.
 */
export function overlapDecision(policy: OverlapPolicy, activeCopies: number, waitingCopy: boolean): { copy: 'AW' | 'DR' | null; cancelPrevious: boolean } {
  if (policy === 'allow') return { copy: 'AW', cancelPrevious: false };
  // Nothing runs: a copy now. (A copy left waiting with nothing to wait for is queued by
  // queueWaitingCopies in the same fire, and stands for this slot.)
  if (activeCopies === 0) return { copy: waitingCopy ? null : 'AW', cancelPrevious: false };
  if (policy === 'skip') return { copy: null, cancelPrevious: false };
  return { copy: waitingCopy ? null : 'DR', cancelPrevious: policy === 'cancel_previous' };
}

export interface FireResult {
  /** Schedules whose slot came (cloned + requeued + skipped). */
  fired: number;
  cloned: number;
  requeued: number;
  skipped: number;
  /** Cron schedules whose first slot was computed. */
  initialised: number;
  /** Schedules switched off because their slots cannot be computed. */
  disabled: number;
  /** Rows handled; a full batch means more may be due. */
  rows: number;
}

/**
 * Fires the due schedules of a group, once per slot across every node of the group: the rows
 * are locked (SKIP LOCKED) and advanced in one transaction. `now` null = the database's now().
 *
 * At a slot: shed_clone → a copy is queued; otherwise the task itself is re-queued if it has
 * ended (C*), or — one-shot schedules only — if it is a draft; else the slot is skipped and
 * counted. next_start then moves to the first slot after now: after downtime, one catch-up run,
 * unless shed_missed says otherwise (missedSlots): none, or a copy per missed slot.
 */
export async function fireDueSchedules(pool: pg.Pool, queries: Statements, groupId: number, now: Date | null, log: Logger, limit = 500): Promise<FireResult> {
  const result: FireResult = { fired: 0, cloned: 0, requeued: 0, skipped: 0, initialised: 0, disabled: 0, rows: 0 };
  // BEGIN and markAdvancing in one round trip: no parameters, so the simple protocol carries both.
  return withTransaction(pool, async (client) => {
    const { rows } = await queries.dueSchedules(client, { groupId, now, limit });
    result.rows = rows.length;
    const advances: Advance[] = [];
    const copies: NewCopy[] = [];
    const cancelCopiesOf: number[] = [];
    const waitingToQueue: number[] = [];
    for (const row of rows) {
      let next: Date | null = null;
      let requeue = false;
      let skipped = 0;
      let disable: string | null = null;
      try {
        if (row.next_start === null) {
          // A cron schedule written without a first slot: compute it, fire nothing yet.
          next = nextCronSlot(row.shed_cron!, row.shed_tz, row.now);
          result.initialised++;
        } else {
          const oneShot = row.shed_cron === null && row.shed_period_id === null;
          const schedule: Schedule = { anchor: row.shed_anchor, periodId: row.shed_period_id, periodCount: row.shed_period_count, cron: row.shed_cron, tz: row.shed_tz };
          next = nextSlot(schedule, row.now);
          result.fired++;
          const missed = oneShot ? null : missedSlots(row, schedule);
          if (missed) {
            for (const slot of missed.copies) copies.push({ id: row.id, state: 'AW', slot });
            skipped = missed.skipped;
            if (missed.copies.length > 0) result.cloned++;
            else result.skipped++;
            log.info({ task: row.id, from: row.next_start, copies: missed.copies.length, skipped: missed.skipped, missed: row.shed_missed }, 'schedule slots missed');
            advances.push({ id: row.id, nextStart: next, requeue: false, skipped, disabled: null });
            continue;
          }
          const overlap = row.shed_clone ? overlapDecision(row.shed_overlap, row.active_copies, row.waiting_copy) : null;
          if (overlap?.cancelPrevious) cancelCopiesOf.push(row.id);
          if (overlap?.copy) {
            copies.push({ id: row.id, state: overlap.copy, slot: row.next_start });
            result.cloned++;
          } else if (overlap && row.active_copies === 0) {
            waitingToQueue.push(row.id);
            result.cloned++;
          } else if (overlap) {
            skipped = 1;
            result.skipped++;
            log.info({ task: row.id, slot: row.next_start, overlap: row.shed_overlap }, 'schedule slot skipped: an earlier copy has not ended');
          } else if (row.state_id.startsWith('C') || (oneShot && row.state_id === 'DR')) {
            requeue = true;
            result.requeued++;
          } else {
            skipped = 1;
            result.skipped++;
            log.warn({ task: row.id, state: row.state_id, slot: row.next_start }, 'schedule slot skipped: the task has not ended');
          }
        }
      } catch (error) {
        disable = `schedule disabled: ${(error as Error).message}`;
        next = null;
        requeue = false;
        result.disabled++;
        log.error({ task: row.id, err: (error as Error).message }, 'schedule disabled');
      }
      advances.push({ id: row.id, nextStart: next, requeue, skipped, disabled: disable });
    }
    // The waiting copy first: cancelling copies that were only waiting ends them at once, and
    // the trigger that queues the waiting copy must find it.
    if (copies.length > 0) await queries.cloneScheduled(client, { copies });
    if (cancelCopiesOf.length > 0) await queries.cancelCopies(client, { taskIds: cancelCopiesOf });
    if (waitingToQueue.length > 0) await queries.queueWaitingCopies(client, { taskIds: waitingToQueue });
    if (advances.length > 0) await queries.advanceSchedules(client, { advances });
    return result;
  }, `BEGIN; ${queries.markAdvancing.text}`);
}

/** A row upcomingSchedules returned (the id and schedule columns are null when nothing is scheduled). */
export interface UpcomingRow {
  delay_ms: number | null;
  uninitialised: boolean;
  id: number | null;
  next_start: Date | null;
  /** next_start to the microsecond, as text (a Date keeps milliseconds). */
  next_start_exact: string | null;
  shed_period_id: PeriodId | null;
  shed_period_count: number | null;
  shed_cron: string | null;
  shed_tz: string;
  shed_anchor: Date | null;
}

/** What the timer fires with fireSlots: each row's next_start as read, and the slot after it. */
interface ArmedSlots {
  ids: number[];
  /** next_start as read, exact: fire_slots fires a row only while it is still that. */
  expected: string[];
  next: Array<Date | null>;
}

/**
 * The rows the timer can fire in one statement, with each one's following slot worked out now:
 * the first slot after next_start is the first after the fire's now as long as the fire comes
 * before it (fire_slots checks). A period schedule without an anchor, or one whose slot cannot
 * be computed, is left to the general fire (which disables the latter).
 */
export function armSlots(rows: UpcomingRow[]): ArmedSlots | null {
  const armed: ArmedSlots = { ids: [], expected: [], next: [] };
  for (const row of rows) {
    if (row.id === null || row.next_start === null || row.next_start_exact === null) continue;
    if (row.shed_period_id !== null && row.shed_anchor === null) continue;
    try {
      const next = nextSlot(
        { anchor: row.shed_anchor, periodId: row.shed_period_id, periodCount: row.shed_period_count, cron: row.shed_cron, tz: row.shed_tz },
        row.next_start,
      );
      armed.ids.push(row.id);
      armed.expected.push(row.next_start_exact);
      armed.next.push(next);
    } catch {
      continue;
    }
  }
  return armed.ids.length > 0 ? armed : null;
}

/**
 * One timer per node, armed to the earliest due schedule of its group and re-armed when a
 * notification says schedules changed. A schedule a year away costs nothing until it is due.
 * When the timer is armed, the rows due first and their following slots are known: the timer
 * fires them in one statement (fireSlots), and the general fire (fireDueSchedules: a
 * transaction of four round trips) runs only for what that left due.
 */
export class Scheduler extends TimedPart {
  private readonly backoff = new Backoff(200, 5_000);
  private armed: ArmedSlots | null = null;

  constructor(
    private readonly pool: pg.Pool,
    private readonly queries: Statements,
    private readonly groupId: number,
    private readonly log: Logger,
    /** Told when a fire queued tasks, so this node claims without waiting for its own NOTIFY. */
    private readonly onQueued: () => void = () => undefined,
    private readonly events: NodeEvents | null = null,
  ) {
    super();
  }

  private fired(result: FireResult): void {
    if (result.fired + result.initialised + result.disabled > 0) this.events?.publish('schedule:fired', result);
    if (result.cloned + result.requeued > 0) this.onQueued();
  }

  private async fire(): Promise<FireResult> {
    const result = await fireDueSchedules(this.pool, this.queries, this.groupId, null, this.log);
    this.fired(result);
    return result;
  }

  /** The timer's fire: the armed rows in one statement. */
  private async fireArmed(armed: ArmedSlots): Promise<void> {
    const { rows } = await this.queries.fireSlots(this.pool, { groupId: this.groupId, taskIds: armed.ids, readSlots: armed.expected, nextSlots: armed.next, now: null });
    const result: FireResult = { fired: rows.length, cloned: 0, requeued: 0, skipped: 0, initialised: 0, disabled: 0, rows: rows.length };
    for (const row of rows) {
      result[row.action]++;
      if (row.action === 'skipped') this.log.warn({ task: row.id }, 'schedule slot skipped: the task has not ended');
    }
    this.fired(result);
  }

  /**
   * Fires what is due and returns the delay to the next slot. From the timer (`due`), it
   * fires first: the timer was armed for a slot, and reading again first would only delay it
   * by a round trip.
   */
  protected async cycle(due: boolean): Promise<number | null> {
    let fireFirst = due;
    try {
      for (;;) {
        if (!this.loop.active) return null;
        if (fireFirst) {
          fireFirst = false;
          const armed = this.armed;
          this.armed = null;
          // Nothing fired (the schedule moved, or another node holds it): read.
          if (armed) await this.fireArmed(armed);
          else if ((await this.fire()).rows === 0) continue;
        }
        const { rows } = await this.queries.upcomingSchedules(this.pool, { groupId: this.groupId, now: null, limit: 100 });
        const { delay_ms: delay, uninitialised } = rows[0]!;
        if (!uninitialised && (delay === null || delay > 0)) {
          this.backoff.reset();
          this.armed = delay === null ? null : armSlots(rows);
          // Without armed rows the general fire must find the slot due: 1 ms past it.
          return delay === null ? null : this.armed ? delay : delay + 1;
        }
        const result = await this.fire();
        // Another node holds the due rows (SKIP LOCKED). Its commit notifies and re-arms us;
        // the short timer only covers a lost notification.
        if (result.rows === 0) return 100;
      }
    } catch (error) {
      this.armed = null;
      const retryMs = this.backoff.next();
      if (this.loop.active) this.log.warn({ err: describeError(error), retryInMs: retryMs }, 'scheduler failed; retrying');
      return retryMs;
    }
  }
}
