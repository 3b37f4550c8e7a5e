import type pg from 'pg';
import type { Statements } from '../../sql/queries/index.js';

export interface QueueDepth {
  group_id: number;
  ready: number;
  delayed: number;
}

/** Waiting tasks per group: ready to claim, and delayed (run_after ahead), for /metrics. */
export async function queueDepth(pool: pg.Pool, queries: Statements): Promise<QueueDepth[]> {
  const { rows } = await queries.queueDepth(pool);
  return rows;
}
