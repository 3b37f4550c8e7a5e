import type { Notification } from '../../db/notifications.js';
import type { NodeControl } from './control.js';

/**
 * A notification is a hint (style §4): each kind wakes the part that reads the rows it is
 * about. Queued work wakes the claim; a ping is LISTEN's check (this worker's) or another
 * worker's renewal (the recovery watch); schedules and delayed tasks re-arm their timers; a
 * change of this worker's row wakes a standby, or makes the holder read the row again.
 */
export function dispatchNotification(node: NodeControl, n: Notification): void {
  const o = node.options;
  const { lease, listenCheck, recoveryWatch, scheduler, delayed } = node.parts;
  if (n.e === 'queued' && n.g === o.groupId) node.hint();
  else if (n.e === 'ping') {
    // This worker's ping from another node: the holder renewed, a standby waits on.
    if (n.w === o.workerId) {
      if (!listenCheck.onPing(n, lease.epoch) && node.status.state === 'standby') lease.holderRenewed(n.l);
    }
    else if (typeof n.w === 'number') recoveryWatch.renewed(n.w, n.l);
  }
  else if (n.e === 'schedule' && n.g === o.groupId) scheduler.rearm();
  else if (n.e === 'delayed' && n.g === o.groupId) delayed.rearm();
  else if (n.e === 'cancel' && n.w === o.workerId) node.checkCancels();
  else if (n.e === 'worker' && n.w === o.workerId) {
    if (node.status.state === 'standby') lease.wake();
    else void node.refreshWorker();
  } else if (n.e === 'worker' && typeof n.w === 'number' && node.status.state === 'active') recoveryWatch.changed(n.w);
}
