// A schedule's next start times, computed as the nodes compute them (src/lib/schedule-math).
import { nextSlot, type PeriodId } from '../../lib/schedule-math.js';

export interface ScheduleFields {
  next_start: Date | null;
  shed_period_id: string | null;
  shed_period_count: number | null;
  shed_cron: string | null;
  shed_tz: string;
  shed_anchor: Date | null;
}

/** next_start, then the slots after it: `count` in all. A bad schedule says why instead. */
export function nextRuns(s: ScheduleFields, count: number): { times: Date[]; problem: string | null } {
  const times: Date[] = [];
  if (s.next_start === null) return { times, problem: null };
  times.push(s.next_start);
  try {
    const schedule = { anchor: s.shed_anchor, periodId: s.shed_period_id as PeriodId | null, periodCount: s.shed_period_count, cron: s.shed_cron, tz: s.shed_tz };
    while (times.length < count) {
      const next = nextSlot(schedule, times[times.length - 1]!);
      if (next === null) break;
      times.push(next);
    }
    return { times, problem: null };
  } catch (error) {
    return { times, problem: (error as Error).message };
  }
}

// A period as people say it: "every 10 s", "every minute", "every 3 days".
const UNITS: Record<string, [string, string]> = {
  SEC: ['second', 's'], MIN: ['minute', 'min'], HOU: ['hour', 'h'], DAY: ['day', 'days'], WEE: ['week', 'weeks'], MON: ['month', 'months'],
};

/** How often a schedule starts its task: "every 10 s", "cron 0 * * * *", "once". */
export function everyLabel(s: Pick<ScheduleFields, 'shed_period_id' | 'shed_period_count' | 'shed_cron'>): string {
  if (s.shed_cron !== null) return `cron ${s.shed_cron}`;
  if (s.shed_period_id === null) return 'once';
  const count = s.shed_period_count ?? 1;
  const [one, many] = UNITS[s.shed_period_id] ?? [s.shed_period_id, s.shed_period_id];
  return count === 1 ? `every ${one}` : `every ${count} ${many}`;
}
