import { describeError } from '../../db/errors.js';
import type { NodeControl } from '../control/control.js';
import { readWatchAll } from '../recovery/recovery.js';
import type { LeaseEvents } from './lease-keeper.js';

/**
 * What a node does at each turn of its lease (LeaseKeeper announces them): a term begins
 * (the term's parts start, the rows are read again), a renewal is sent and comes back (it
 * doubles as the node's safety resync, see renewLease), the term ends (its processes die by
 * the fence).
 */
export function termEvents(node: NodeControl): LeaseEvents {
  const { options: o, log, events, status } = node;
  return {
    gained(epoch, stop, oldDueInMs) {
      node.parts.writer.dropStale(epoch);
      if (status.stopping) return;
      status.state = 'active';
      log.info({ epoch, maxTasks: o.maxTasks, node: o.nodeName, commands: o.commands }, 'lease taken; node active');
      events.publish('lease:gained', { epoch, workerId: o.workerId });
      node.applyStop(stop, true);
      node.resync();
      if (!status.stopping) node.startTerm();
      if (!status.stopping) void watchWorkers(node, oldDueInMs);
    },
    standingBy(heldBy, lockedUntil) {
      status.state = 'standby';
      events.publish('lease:standby', { heldBy, lockedUntil });
    },
    /** What a renewal carries: the running count, and a ping that checks LISTEN end to end. */
    renewing() {
      const { listener, listenCheck, runs } = node.parts;
      if (listener.connected && listenCheck.silent) {
        log.warn('LISTEN delivered nothing since the last renewal, not even its ping: reconnecting the listener');
        listener.reconnect();
      }
      return { taskCount: runs.size, ping: listenCheck.nextPing() };
    },
    renewed(result, epoch, ms) {
      events.publish('lease:renewed', { epoch, ms });
      node.parts.listenCheck.pingSent();
      node.applyStop(result.stop);
      if (result.hasWaiting) node.hint();
      if (result.hasCancels) node.checkCancels();
      node.parts.recoveryWatch.update(result.watch);
      node.parts.runs.checkOwned(result.owned, epoch);
    },
    lost(reason, trustedForMs) {
      events.publish('lease:lost', { reason });
      node.stopTerm();
      // Dead by the fence, whatever --kill-grace says: another node may recover these tasks at
      // the lease's end + the delay (the reaper's fence stays armed, should this node stall).
      const graceMs = Math.min(o.killGraceMs, Math.max(0, Math.floor(trustedForMs)));
      node.parts.runs.killAll({ state: 'CF', endReason: 'worker_failed', error: `Worker lost its lease: ${reason}`, leaveToRecovery: true }, graceMs);
      if (!status.stopping) status.state = 'standby';
    },
    // The reaper keeps the fence too, should this process be paused (see reaper-process.js).
    fenceMoved: (ms) => node.parts.reaper.fence(ms),
  };
}

/**
 * Arms the recovery timers as soon as a term begins (the first renewal is half a lease
 * away), including the old terms of a take-over from a node whose session ended.
 */
async function watchWorkers(node: NodeControl, oldDueInMs: number | null): Promise<void> {
  const workerId = node.options.workerId;
  if (oldDueInMs !== null) node.parts.recoveryWatch.oldTerms(workerId, oldDueInMs);
  try {
    const rows = await readWatchAll(node.pool, node.queries, workerId, node.options.recoveryDelaySeconds);
    if (node.status.state === 'active') node.parts.recoveryWatch.update(rows);
  } catch (error) {
    node.log.warn({ err: describeError(error) }, 'could not read the workers to watch; the next renewal will');
  }
}
