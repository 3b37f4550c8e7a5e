import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { EndReason } from '../client/types.js';
import type { FireResult } from './timers/scheduler.js';

export type NodeState = 'starting' | 'standby' | 'active' | 'stopping' | 'stopped';

/**
 * What a node tells its subscribers (logs, metrics, the health endpoints): one typed event per
 * thing that happened, emitted by the part that saw it. A feature that wants to know subscribes
 * here instead of editing the parts (the model: graphile-worker's WorkerEventMap, Oban's
 * telemetry). Times are milliseconds, measured on the node's monotonic clock.
 */
export interface NodeEventMap {
  /** The node moved to another state (standby, active, stopping, stopped). */
  state: [{ state: NodeState }];
  'lease:gained': [{ epoch: number; workerId: number }];
  'lease:renewed': [{ epoch: number; ms: number }];
  /** Another live node holds the worker: this one waits as its hot standby. */
  'lease:standby': [{ heldBy: string | null; lockedUntil: Date | null }];
  'lease:lost': [{ reason: string }];
  /** One claim statement: how many slots it asked for and how many tasks it took. */
  claim: [{ asked: number; claimed: number; ms: number }];
  /** A run's process is running; startMs counts from the claim statement being sent. */
  'run:started': [{ taskId: number; attempt: number; pid: number; startMs: number }];
  /** A run's process group is gone (durationMs from its start; 0 when it never started). */
  'run:ended': [{ taskId: number; attempt: number; state: 'CS' | 'CF' | 'CC'; endReason: EndReason; exitCode: number | null; signal: string | null; durationMs: number }];
  /** Progress a run reported on fd 3 (docs/control.md), as written to its task row (at most every 200 ms a run). */
  'run:progress': [{ taskId: number; attempt: number; progress: number | null; message: string | null }];
  /** One fire of the group's due schedules. */
  'schedule:fired': [FireResult];
  'listener:connected': [{ reconnect: boolean }];
  'listener:lost': [{ error: string }];
  /** A batch of results could not be written; it is kept and written again. */
  'results:retry': [{ error: string; retryInMs: number }];
  /**
   * The database refused a run's end on its own (its batch was split around it): written:
   * it ended CF 'result_rejected'; not: even that was refused, and the run is left to recovery.
   */
  'results:rejected': [{ taskId: number; attempt: number; error: string; written: boolean }];
  /** One flush of live output: chunks of how many runs, how many bytes, how long. */
  'output:flushed': [{ runs: number; chunks: number; bytes: number; ms: number }];
  /** Output a run printed beyond what the node keeps, dropped before it was written. */
  'output:dropped': [{ bytes: number }];
}

/** The node's event bus. A subscriber that throws is logged, and never breaks the part that emitted. */
export class NodeEvents extends EventEmitter<NodeEventMap> {
  constructor(private readonly log: Logger) {
    super();
  }

  publish<K extends keyof NodeEventMap>(name: K, ...event: NodeEventMap[K]): void {
    if (this.listenerCount(name) === 0) return;
    try {
      // @types/node's EventEmitter<T> cannot see that NodeEventMap[K] is K's argument list.
      (this.emit as (name: K, ...args: NodeEventMap[K]) => boolean)(name, ...event);
    } catch (error) {
      this.log.error({ event: name, err: (error as Error).message }, 'an event subscriber failed');
    }
  }
}
