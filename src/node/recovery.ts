import type pg from 'pg';
import type { Logger } from 'pino';
import { withTransaction } from '../db/connection.js';
import type { Queries } from '../db/queries.js';

/**
 * Recovers a failed worker — active, its lease lapsed past the recovery delay — on behalf of
 * the cluster: any node that notices may call this, and the row lock makes sure the recovery
 * policy, recover_worker_tasks(worker_id), runs once. The worker's lease_epoch moves on, so
 * the node that held it can neither renew nor write about its tasks if it comes back.
 * Returns true if this call did the recovery.
 */
export async function recoverFailedWorker(pool: pg.Pool, queries: Queries, workerId: number, recoveryDelaySeconds: number, log: Logger, now: Date | null = null): Promise<boolean> {
  const failed = await withTransaction(pool, async (client) => {
    const { rows } = await client.query<{ node_name: string | null; lease_epoch: number }>(queries.lockFailedWorker, [workerId, recoveryDelaySeconds, now]);
    if (!rows[0]) return null; // not failed (any more), or another node is recovering it
    await client.query(queries.markRecovering);
    await client.query(queries.recoverWorker, [workerId]);
    await client.query(queries.endWorkerRuns, [workerId]);
    await client.query(queries.markRecovered, [workerId]);
    return rows[0];
  });
  if (failed) log.warn({ failedWorker: workerId, failedNode: failed.node_name, epoch: failed.lease_epoch }, 'recovered a failed worker');
  return failed !== null;
}
