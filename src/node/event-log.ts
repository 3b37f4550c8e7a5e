import type { Logger } from 'pino';
import type { NodeEvents } from './events.js';

/**
 * The node's log lines about what happened, as one subscriber of its events. (A part still
 * logs its own failures where it has their context: what it tried, what it will do next.)
 */
export function logNodeEvents(events: NodeEvents, log: Logger): void {
  events.on('run:started', (e) => log.debug({ task: e.taskId, attempt: e.attempt, pid: e.pid }, 'task started'));
  events.on('run:ended', (e) =>
    log.info({ task: e.taskId, attempt: e.attempt, state: e.state, endReason: e.endReason, exitCode: e.exitCode, signal: e.signal }, 'task ended'),
  );
  events.on('schedule:fired', (e) => log.info({ ...e }, 'schedules fired'));
  events.on('lease:standby', (e) => log.info({ heldBy: e.heldBy, lockedUntil: e.lockedUntil }, 'worker is held by another node; standing by'));
  events.on('lease:lost', (e) => log.error({ reason: e.reason }, 'lease lost: killing running tasks and standing by'));
}
