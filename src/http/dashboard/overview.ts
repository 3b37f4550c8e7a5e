// The overview's figures (the dashboard's landing page): counts per group and state, runs
// over the last hour and the last day, durations and the commands that take longest or fail
// most. Four statements of dashboard-overview.sql.
import type pg from 'pg';
import { withTransaction } from '../../db/connection.js';
import type { DurationRow, RunsBucketRow, StateCountRow } from '../../sql/queries/dashboard-overview.js';
import type { Statements } from '../../sql/queries/index.js';

/** The commands listed as slowest and as failing most. */
export const COMMANDS_SHOWN = 10;
/** The window of the durations and the hourly chart. */
export const DAY_HOURS = 24;

export interface OverviewData {
  /** The time the figures are for: the database's now() unless one was given. */
  now: Date;
  counts: StateCountRow[];
  /** 60 buckets of a minute, the last holding now. */
  lastHour: RunsBucketRow[];
  /** 24 buckets of an hour, the last holding now. */
  lastDay: RunsBucketRow[];
  groups: DurationRow[];
  slowest: DurationRow[];
  failing: DurationRow[];
}

/**
 * One read-only transaction: every figure from one snapshot (a run is never counted as ended
 * in the chart and missing from the durations), and without JIT (overviewSettings).
 */
export async function readOverview(pool: pg.Pool, queries: Statements, now: Date | null): Promise<OverviewData> {
  const [counts, lastHour, lastDay, durations] = await withTransaction(pool, async (client) => [
    await queries.overviewStateCounts(client),
    await queries.overviewRunsOverTime(client, { now, bucket: '1 minute', buckets: 60 }),
    await queries.overviewRunsOverTime(client, { now, bucket: '1 hour', buckets: DAY_HOURS }),
    await queries.overviewDurations(client, { now, hours: DAY_HOURS, limit: COMMANDS_SHOWN }),
  ] as const, `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; ${queries.overviewSettings.text}`);
  const kind = (k: DurationRow['kind']): DurationRow[] => durations.rows.filter((row) => row.kind === k);
  return {
    now: lastHour.rows[0]?.now ?? now ?? new Date(),
    counts: counts.rows,
    lastHour: lastHour.rows,
    lastDay: lastDay.rows,
    groups: kind('group').sort((a, b) => (a.group_id ?? 0) - (b.group_id ?? 0)),
    // UNION ALL keeps each part's order in practice, but SQL does not promise it.
    slowest: kind('slowest').sort((a, b) => b.mean_ms - a.mean_ms || b.runs - a.runs),
    failing: kind('failing').sort((a, b) => b.failed - a.failed || b.runs - a.runs),
  };
}
