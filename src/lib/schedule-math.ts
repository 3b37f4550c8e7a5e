// When a schedule fires next: pure functions of the schedule and an instant, no database.
import { CronExpressionParser } from 'cron-parser';
import { DateTime, IANAZone } from 'luxon';

export type PeriodId = 'SEC' | 'MIN' | 'HOU' | 'DAY' | 'WEE' | 'MON';

export interface Schedule {
  /** The first slot the user set (period schedules). */
  anchor: Date | null;
  periodId: PeriodId | null;
  periodCount: number | null;
  cron: string | null;
  tz: string;
}

const FIXED_MS: Partial<Record<PeriodId, number>> = { SEC: 1_000, MIN: 60_000, HOU: 3_600_000 };

export class ScheduleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScheduleError';
  }
}

export function assertTimeZone(tz: string): void {
  if (!IANAZone.isValidZone(tz)) throw new ScheduleError(`unknown time zone "${tz}": use an IANA name such as UTC or Europe/Berlin`);
}

/** Parses with the cron library; 5 fields, or 6 with seconds first. */
export function parseCron(expr: string, tz: string, after: Date): ReturnType<typeof CronExpressionParser.parse> {
  assertTimeZone(tz);
  const fields = expr.trim().split(/\s+/).length;
  if (fields !== 5 && fields !== 6) {
    throw new ScheduleError(`invalid cron expression "${expr}": expected 5 fields (minute hour day month weekday) or 6 (seconds first)`);
  }
  try {
    return CronExpressionParser.parse(expr, { currentDate: after, tz });
  } catch (error) {
    throw new ScheduleError(`invalid cron expression "${expr}": ${(error as Error).message}`);
  }
}

/** The first cron slot strictly after `after`. DST: a skipped local time fires at the first
 * instant after the gap; a repeated one fires once (cron-parser's documented behaviour). */
export function nextCronSlot(expr: string, tz: string, after: Date): Date {
  return parseCron(expr, tz, after).next().toDate();
}

/**
 * The k-th slot of a period schedule: anchor + k × count × unit. SEC/MIN/HOU are fixed
 * durations; DAY/WEE/MON are calendar steps in the schedule's zone, so a daily 09:00 stays
 * 09:00 across DST, and a month after Jan 31 is the last day of February. A local time that
 * a DST gap skips moves forward by the gap for that day only: each slot is counted from the
 * anchor, never from the previous slot.
 */
export function periodSlot(anchor: Date, periodId: PeriodId, count: number, tz: string, k: number): Date {
  const fixed = FIXED_MS[periodId];
  if (fixed !== undefined) return new Date(anchor.getTime() + k * count * fixed);
  const start = DateTime.fromJSDate(anchor, { zone: tz });
  const step = k * count;
  const moved = periodId === 'DAY' ? start.plus({ days: step }) : periodId === 'WEE' ? start.plus({ weeks: step }) : start.plus({ months: step });
  return moved.toJSDate();
}

/** The index k of the first slot of a period schedule strictly after `after` (0: the anchor). */
function nextPeriodIndex(anchor: Date, periodId: PeriodId, count: number, tz: string, after: Date): number {
  if (count < 1) throw new ScheduleError(`a period count must be at least 1, got ${count}`);
  assertTimeZone(tz);
  if (anchor > after) return 0;
  const approxMs = (FIXED_MS[periodId] ?? (periodId === 'DAY' ? 86_400_000 : periodId === 'WEE' ? 604_800_000 : 2_629_746_000)) * count;
  let k = Math.max(1, Math.floor((after.getTime() - anchor.getTime()) / approxMs));
  // The estimate is off by at most a step or two (DST hours, month lengths): walk to the
  // first slot after `after`.
  while (k > 1 && periodSlot(anchor, periodId, count, tz, k - 1) > after) k--;
  while (periodSlot(anchor, periodId, count, tz, k) <= after) k++;
  return k;
}

/** The first slot of a period schedule strictly after `after`. */
export function nextPeriodSlot(anchor: Date, periodId: PeriodId, count: number, tz: string, after: Date): Date {
  return periodSlot(anchor, periodId, count, tz, nextPeriodIndex(anchor, periodId, count, tz, after));
}

/** When the schedule fires next after `after`, or null for a one-shot (no period, no cron). */
export function nextSlot(schedule: Schedule, after: Date): Date | null {
  if (schedule.cron !== null) return nextCronSlot(schedule.cron, schedule.tz, after);
  if (schedule.periodId !== null) {
    return nextPeriodSlot(schedule.anchor ?? after, schedule.periodId, schedule.periodCount ?? 1, schedule.tz, after);
  }
  return null;
}

/** The slots a late fire found due: the first `keep` of them, oldest first, and how many there are in all. */
export interface DueSlots {
  slots: Date[];
  total: number;
}

/** Cron slots counted one by one past the kept ones (cron-parser: 10k to 100k a second); the rest are estimated. */
const CRON_COUNT_MAX = 1_000;

/**
 * The slots of a repeating schedule from `first` (the slot being fired) to `now`, both
 * included: `first`, then every slot after it that is not after `now`. A period schedule's
 * total is exact whatever the downtime (index arithmetic); a cron schedule is counted slot by
 * slot up to CRON_COUNT_MAX past the kept ones, and past that estimated from their spacing.
 */
export function dueSlots(schedule: Schedule, first: Date, now: Date, keep: number): DueSlots {
  const slots: Date[] = keep > 0 ? [first] : [];
  if (schedule.cron === null) {
    if (schedule.periodId === null) return { slots, total: 1 };
    const anchor = schedule.anchor ?? first;
    const count = schedule.periodCount ?? 1;
    const from = nextPeriodIndex(anchor, schedule.periodId, count, schedule.tz, first);
    const to = nextPeriodIndex(anchor, schedule.periodId, count, schedule.tz, now);
    for (let k = from; k < to && slots.length < keep; k++) slots.push(periodSlot(anchor, schedule.periodId, count, schedule.tz, k));
    return { slots, total: 1 + Math.max(0, to - from) };
  }
  const cron = parseCron(schedule.cron, schedule.tz, first);
  let total = 1;
  let countedFrom: Date | null = null;
  let counted = 0;
  for (;;) {
    const next = cron.next().toDate();
    if (next > now) return { slots, total };
    total++;
    if (slots.length < keep) {
      slots.push(next);
      continue;
    }
    countedFrom ??= slots.at(-1) ?? first;
    if (++counted >= CRON_COUNT_MAX) {
      // The rest at the mean spacing of the slots counted past the kept ones.
      const spacing = (next.getTime() - countedFrom.getTime()) / counted;
      return { slots, total: total + Math.floor((now.getTime() - next.getTime()) / spacing) };
    }
  }
}
