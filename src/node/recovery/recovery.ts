import type pg from 'pg';
import type { Logger } from 'pino';
import { withTransaction } from '../../db/connection.js';
import { describeError } from '../../db/errors.js';
import type { Statements } from '../../sql/queries/index.js';
import type { WatchTimes } from './recovery-watch.js';

/**
 * Recovers a worker's old terms if their recovery is due, in a transaction that has locked
 * the worker row: the recover policy, recover_worker_tasks(worker, last old term), then the
 * end of their live runs. Due means the latest locked_until of those terms + the recovery
 * delay has passed in database time: by then the node that ran them has fenced itself (its
 * fence, renewal + lease − margin on its own clock, comes before locked_until). Returns the
 * last term recovered, or null if none was due.
 */
export async function recoverOldTerms(client: pg.PoolClient, queries: Statements, workerId: number, recoveryDelaySeconds: number, now: Date | null = null): Promise<number | null> {
  const { rows } = await queries.dueOldTerms(client, { workerId, recoveryDelaySeconds, now });
  if (!rows[0]) return null;
  const epoch = rows[0].old_epoch;
  await queries.markRecovering(client);
  await queries.recoverWorker(client, { workerId, epoch });
  await queries.endWorkerRuns(client, { workerId, epoch });
  await queries.clearOldTerms(client, { workerId });
  return epoch;
}

export interface RecoveryResult {
  /** This call ended a lapsed term or recovered old terms. */
  recovered: boolean;
  /** Milliseconds (database time) until the worker's lease has lapsed past the delay; null: not watched. */
  lapseInMs: number | null;
  /** Milliseconds (database time) until its old terms are due; null: none wait. */
  oldInMs: number | null;
}

/**
 * Recovery on behalf of the cluster: any node may call this for any worker, and the row lock
 * (SKIP LOCKED) makes sure one does it at a time. A worker whose lease lapsed past the
 * recovery delay without a standby taking it over is no longer active, and its term (with any
 * older one pending) joins the old terms, recovered at once when due. `selfId`: the caller's
 * own worker, whose lease it takes back itself rather than end. Null when another node is at
 * it (it will say when it is done: the row's change is notified).
 */
export async function recoverWorker(pool: pg.Pool, queries: Statements, workerId: number, selfId: number, recoveryDelaySeconds: number, log: Logger, now: Date | null = null): Promise<RecoveryResult | null> {
  const result = await withTransaction(pool, async (client) => {
    const { rows } = await queries.lockRecoverable(client, { workerId, recoveryDelaySeconds, now, selfId });
    const row = rows[0];
    if (!row) return null;
    if (row.lapsed) await queries.endLapsedTerm(client, { workerId });
    const epoch = await recoverOldTerms(client, queries, workerId, recoveryDelaySeconds, now);
    // Ending the lapsed term made its lease's end the old terms' due time, if later.
    const oldInMs = epoch !== null ? null : row.lapsed ? Math.max(row.old_in_ms ?? -Infinity, row.lapse_in_ms!) : row.old_in_ms;
    return { recovered: row.lapsed || epoch !== null, lapseInMs: row.lapsed ? null : row.lapse_in_ms, oldInMs, failed: row.lapsed ? row : null, epoch };
  });
  if (!result) return null;
  if (result.failed) log.warn({ failedWorker: workerId, failedNode: result.failed.node_name, epoch: result.failed.lease_epoch }, 'ended the term of a failed worker');
  if (result.epoch !== null) log.warn({ worker: workerId, throughEpoch: result.epoch }, "recovered a worker's old terms");
  return { recovered: result.recovered, lapseInMs: result.lapseInMs, oldInMs: result.oldInMs };
}

/** When worker `id` may need recovering (see RecoveryWatch); null when it will not. */
export async function readWatchTimes(pool: pg.Pool, queries: Statements, id: number, selfId: number, recoveryDelaySeconds: number): Promise<WatchTimes | null> {
  const { rows } = await queries.watchWorkers(pool, { selfId, recoveryDelaySeconds, workerId: id });
  return rows[0] ?? null;
}

/** Every worker that may need recovering, and when (what a renewal's watch says). */
export async function readWatchAll(pool: pg.Pool, queries: Statements, selfId: number, recoveryDelaySeconds: number): Promise<Array<{ id: number } & WatchTimes>> {
  const { rows } = await queries.watchWorkers(pool, { selfId, recoveryDelaySeconds, workerId: null });
  return rows;
}

/** See settleOldTerms: how long a stopping node waits for its take-over's old terms. */
const OLD_TERMS_WAIT_MS = 60_000;

/**
 * A node that took its worker over from one whose session ended, and stops before that
 * term's tasks are due for recovery, waits for them and recovers them first (still holding
 * its lease): with no other node running, nobody else would. Not past OLD_TERMS_WAIT_MS.
 */
export async function settleOldTerms(pool: pg.Pool, queries: Statements, workerId: number, recoveryDelaySeconds: number, log: Logger): Promise<void> {
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      const times = await readWatchTimes(pool, queries, workerId, workerId, recoveryDelaySeconds);
      const dueInMs = times?.old ?? null;
      if (dueInMs === null) return;
      if (dueInMs > OLD_TERMS_WAIT_MS) {
        log.warn({ dueInMs: Math.round(dueInMs) }, "stopping before the old term's tasks are due: left to the other nodes' recovery");
        return;
      }
      if (dueInMs > 0) {
        log.info({ dueInMs: Math.round(dueInMs) }, "waiting to recover the old term's tasks before stopping");
        await new Promise((resolve) => setTimeout(resolve, dueInMs + 5));
      }
      await recoverWorker(pool, queries, workerId, workerId, recoveryDelaySeconds, log);
    }
  } catch (error) {
    log.warn({ err: describeError(error) }, "could not recover the old term's tasks before stopping; left to the other nodes");
  }
}
