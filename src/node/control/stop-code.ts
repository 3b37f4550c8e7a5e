import type { Logger } from 'pino';
import type { ShutdownMode } from '../options.js';

/**
 * The worker row's stop column, written by users (design §2): run; pause (start no new tasks,
 * keep the running ones); drain (no new tasks, exit when the running ones end); cancel
 * (cancel the running ones, then exit). The row's CHECK keeps it to these four.
 */
export const StopCode = { run: 0, pause: 1, drain: 2, cancel: 3 } as const;
export type StopCode = (typeof StopCode)[keyof typeof StopCode];

export function toStopCode(value: number): StopCode {
  if (value === 0 || value === 1 || value === 2 || value === 3) return value;
  throw new Error(`worker stop code ${value}: expected 0 (run), 1 (pause), 2 (drain) or 3 (cancel)`);
}

/** What the stop code acts on. */
export interface StopCodeHost {
  readonly log: Logger;
  running(): number;
  hint(): void;
  shutdown(mode: ShutdownMode, reason: string, clearStop: boolean): Promise<void>;
}

/**
 * Acts on a stop code just read (`initial`: the first of a term, acted on even when it is
 * the one already known). Drain and cancel end the node and clear the code with its lease.
 */
export function applyStopCode(host: StopCodeHost, previous: StopCode, stop: StopCode, initial: boolean): void {
  if (stop === previous && !initial) return;
  const log = host.log;
  if (stop === StopCode.run) {
    if (!initial) log.info('resumed (stop code 0): claiming again');
    host.hint();
  } else if (stop === StopCode.pause) {
    log.info('paused (stop code 1): no new tasks; running ones continue');
  } else if (stop === StopCode.drain) {
    log.info({ running: host.running() }, 'draining (stop code 2): no new tasks; exiting when the running ones end');
    if (host.running() === 0) void host.shutdown('drain', 'worker stop code 2', true);
  } else {
    log.info({ running: host.running() }, 'cancelling (stop code 3): cancelling the running tasks, then exiting');
    void host.shutdown('cancel', 'worker stop code 3', true);
  }
}
