import { TimedLoop } from '../../lib/timed-loop.js';
import type { Service } from '../services.js';

/**
 * A timed part of the node (the scheduler, the release of delayed tasks, retention): a
 * TimedLoop that runs the part's cycle, started and stopped as a Service. cycle(due) returns
 * how long until the next one (null: no timer); due is true when the timer fired.
 */
export abstract class TimedPart implements Service {
  protected readonly loop = new TimedLoop((due) => this.cycle(due));

  protected abstract cycle(due: boolean): Promise<number | null>;

  start(): void {
    this.loop.start();
  }

  /** Resolves once a cycle in flight has ended (it arms nothing). */
  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** Runs a cycle now (folded into the one in flight, if any): re-reads and re-arms the timer. */
  rearm(): void {
    this.loop.request();
  }
}
