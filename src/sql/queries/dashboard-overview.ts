// The typed statements of dashboard-overview.sql.
import type { TaskState } from '../../client/types.js';
import { statement } from '../../db/statement.js';

export interface StateCountRow {
  group_id: number;
  state_id: TaskState;
  tasks: number;
}

export interface RunsBucketRow {
  /** The bucket's start. */
  at: Date;
  started: number;
  completed: number;
  failed: number;
  /** The time the buckets end at (:now, else the database's clock), on every row. */
  now: Date;
}

export interface DurationRow {
  kind: 'group' | 'slowest' | 'failing';
  /** kind 'group' only. */
  group_id: number | null;
  /** kinds 'slowest' and 'failing' only. */
  command: string[] | null;
  runs: number;
  failed: number;
  /** kind 'group' only. */
  p50_ms: number | null;
  p95_ms: number | null;
  mean_ms: number;
  max_ms: number;
}

/** now: null is the database's clock. */
export const overviewSettings = statement<Record<never, never>>({});
export const overviewStateCounts = statement<Record<never, never>, StateCountRow>({});
export const overviewRunsOverTime = statement<{ now: Date | null; bucket: string; buckets: number }, RunsBucketRow>({ now: true, bucket: true, buckets: true });
export const overviewDurations = statement<{ now: Date | null; hours: number; limit: number }, DurationRow>({ now: true, hours: true, limit: true });
