/**
 * What every background part of a node (the scheduler, the release of delayed tasks,
 * retention, the reaper, the output writer) promises: start() begins its timers and loops;
 * stop() ends them, and nothing of the part fires after it returns (a cycle in flight arms
 * nothing); both may be called again, in any order.
 */
export interface Part {
  start(): void;
  stop(): void;
}
