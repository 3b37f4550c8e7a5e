import type pg from 'pg';
import type { Logger } from 'pino';
import { checkoutClient } from '../db/connection.js';
import type { Queries } from '../db/queries.js';

/**
 * Recovers a failed worker — active, its lease lapsed past the recovery delay — on behalf of
 * the cluster: any node that notices may call this, and the row lock makes sure the recovery
 * policy, recover_worker_tasks(worker_id), runs once. The worker's lease_epoch moves on, so
 * the node that held it can neither renew nor write about its tasks if it comes back.
 * Returns true if this call did the recovery.
 */
export async function recoverFailedWorker(pool: pg.Pool, queries: Queries, workerId: number, recoveryDelaySeconds: number, log: Logger, now: Date | null = null): Promise<boolean> {
  const client = await checkoutClient(pool);
  try {
    await client.query('BEGIN');
    const { rows } = await client.query<{ node_name: string | null; lease_epoch: number }>(queries.lockFailedWorker, [workerId, recoveryDelaySeconds, now]);
    if (!rows[0]) {
      await client.query('ROLLBACK');
      return false;
    }
    await client.query(queries.recoverWorker, [workerId]);
    await client.query(queries.markRecovered, [workerId]);
    await client.query('COMMIT');
    log.warn({ failedWorker: workerId, failedNode: rows[0].node_name, epoch: rows[0].lease_epoch }, 'recovered a failed worker');
    return true;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}
