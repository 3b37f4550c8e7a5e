import type pg from 'pg';
import type { Queries } from '../../db/queries.js';

export interface QueueDepth {
  group_id: number;
  ready: number;
  delayed: number;
}

/** Waiting tasks per group: ready to claim, and delayed (run_after ahead), for /metrics. */
export async function queueDepth(pool: pg.Pool, queries: Queries): Promise<QueueDepth[]> {
  const { rows } = await pool.query<QueueDepth>(queries.queueDepth);
  return rows;
}
