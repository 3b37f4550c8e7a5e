import { describeError } from '../../db/errors.js';
import type { ShutdownMode } from '../options.js';
import { settleOldTerms } from '../recovery/recovery.js';
import type { KillReason } from '../runs/run.js';
import type { NodeControl } from './control.js';

/** How long a stop waits for the runs' results to be written (`pg-tasks systemd-unit` adds it to TimeoutStopSec). */
export const RESULTS_DRAIN_MS = 15_000;

/**
 * Two-phase stop (style §7): claim nothing more; then end the running tasks (cancel) or wait
 * for them (drain); write their results; release the lease; then stop every part (reverse of
 * their start) and end the pool. Calling it again while draining escalates to cancel.
 * Resolves when the node has stopped.
 */
export async function shutdownNode(node: NodeControl, mode: ShutdownMode, reason: string, clearStop: boolean): Promise<void> {
  const { parts, status, log, options: o } = node;
  const { runs, claimer, writer, lease } = parts;
  const cancelReason: KillReason = { state: 'CC', endReason: 'node_stopped', error: `Cancelled: ${reason}` };
  if (status.stopping) {
    if (mode === 'cancel') runs.killAll(cancelReason);
    return status.exited;
  }
  status.stopping = true;
  node.stopTerm();
  const leaseStopped = lease.stopTaking();
  status.state = 'stopping';
  log.info({ mode, reason, running: runs.size }, 'node stopping');
  if (mode === 'cancel') runs.killAll(cancelReason);
  // No claim starts from now on (canClaim is false); one in flight still starts its tasks.
  await claimer.settled();
  if (mode === 'cancel') runs.killAll(cancelReason);
  await runs.idle();
  await writer.drain(RESULTS_DRAIN_MS);
  // A take on its way when the stop began may have come back with a term: nothing ran
  // under it, and it is released below like any other.
  await leaseStopped;
  if (lease.held) await settleOldTerms(node.pool, node.queries, o.workerId, o.recoveryDelaySeconds, log);
  await lease.stop();
  if (lease.epoch !== null) {
    // Released only when every result is written: otherwise the row stays active, and
    // whoever takes it over recovers those tasks.
    if (writer.pending === 0) {
      await lease.release(clearStop).catch((error: unknown) => log.warn({ err: describeError(error) }, 'could not release the lease'));
    } else {
      log.error({ pending: writer.pending }, 'results not written; leaving the lease to lapse so the worker is recovered');
    }
  }
  await node.close();
  log.info('node stopped');
}
