import type pg from 'pg';
import type { Logger } from 'pino';
import type { Queries } from '../db/queries.js';

export interface TaskOutcome {
  id: number;
  state: 'CS' | 'CF' | 'CC';
  exitCode: number | null;
  signal: string | null;
  error: string | null;
  output: string;
}

/**
 * Writes what the node learns about its tasks (pids, then outcomes) in batches: everything
 * that arrives in one turn of the event loop goes out in one statement per kind, so a burst
 * of 500 exits costs two statements, not 500. Every write names the lease term it was made
 * under; rows the node no longer owns are left alone.
 */
export class ResultWriter {
  private pids = new Map<number, number>();
  private outcomes: Array<{ epoch: number; outcome: TaskOutcome }> = [];
  private pidEpoch: number | null = null;
  private flushing: Promise<void> | null = null;
  private scheduled = false;
  private retryDelay = 0;
  private inFlight = 0;
  private inFlightIds = new Set<number>();
  private closed = false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly queries: Queries,
    private readonly workerId: number,
    private readonly log: Logger,
  ) {}

  /** Outcomes not yet written, including a batch being written right now. */
  get pending(): number {
    return this.outcomes.length + this.inFlight;
  }

  /** True while an outcome for this task waits to be written (or is being written). */
  isPending(taskId: number): boolean {
    return this.outcomes.some((o) => o.outcome.id === taskId) || this.inFlightIds.has(taskId);
  }

  /** Stops retrying: the pool is about to end. What is still pending is reported by the caller. */
  close(): void {
    this.closed = true;
  }

  recordPid(epoch: number, taskId: number, pid: number): void {
    if (this.pidEpoch !== epoch) this.pids.clear();
    this.pidEpoch = epoch;
    this.pids.set(taskId, pid);
    this.schedule();
  }

  finish(epoch: number, outcome: TaskOutcome): void {
    // A pid still pending is kept: it is written first, in the same flush, and a task that
    // ended within a turn of starting still shows the pid it ran as.
    this.outcomes.push({ epoch, outcome });
    this.schedule();
  }

  /** Drops what was recorded under terms other than `epoch` (the lease was lost). */
  dropStale(currentEpoch: number | null): void {
    const stale = this.outcomes.filter((o) => o.epoch !== currentEpoch);
    if (stale.length > 0) {
      this.log.warn(
        { tasks: stale.map((o) => o.outcome.id) },
        'dropping results of tasks whose lease term ended: another node may own them now',
      );
      this.outcomes = this.outcomes.filter((o) => o.epoch === currentEpoch);
    }
    if (this.pidEpoch !== currentEpoch) this.pids.clear();
  }

  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  /** Writes everything pending; resolves when it is written or given up on. */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.closed || (this.pids.size === 0 && this.outcomes.length === 0)) return;
    this.flushing = this.writeOnce().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  private async writeOnce(): Promise<void> {
    const pids = this.pids;
    const pidEpoch = this.pidEpoch;
    const outcomes = this.outcomes;
    this.pids = new Map();
    this.outcomes = [];
    this.inFlight = outcomes.length;
    this.inFlightIds = new Set(outcomes.map((o) => o.outcome.id));
    try {
      if (pids.size > 0 && pidEpoch !== null) {
        await this.pool.query(this.queries.recordPids, [this.workerId, pidEpoch, [...pids.keys()], [...pids.values()]]);
      }
      const byEpoch = new Map<number, TaskOutcome[]>();
      for (const { epoch, outcome } of outcomes) {
        const list = byEpoch.get(epoch) ?? [];
        list.push(outcome);
        byEpoch.set(epoch, list);
      }
      for (const [epoch, list] of byEpoch) {
        const { rows } = await this.pool.query<{ id: number }>(this.queries.finishTasks, [
          this.workerId,
          epoch,
          list.map((o) => o.id),
          list.map((o) => o.state),
          list.map((o) => o.exitCode),
          list.map((o) => o.signal),
          list.map((o) => o.error),
          list.map((o) => o.output),
        ]);
        if (rows.length < list.length) {
          const ok = new Set(rows.map((r) => r.id));
          this.log.warn(
            { tasks: list.filter((o) => !ok.has(o.id)).map((o) => o.id), epoch },
            'results not written: the tasks are no longer owned by this lease term',
          );
        }
      }
      this.retryDelay = 0;
      this.inFlight = 0;
      this.inFlightIds.clear();
    } catch (error) {
      // Keep them and try again: the database may be restarting. Newer pids win.
      for (const [id, pid] of pids) if (!this.pids.has(id)) this.pids.set(id, pid);
      this.outcomes = [...outcomes, ...this.outcomes];
      this.inFlight = 0;
      this.inFlightIds.clear();
      this.retryDelay = Math.min(Math.max(this.retryDelay * 2, 100), 5_000);
      this.log.warn({ err: (error as Error).message, retryInMs: this.retryDelay }, 'could not write task results; retrying');
      await new Promise((resolve) => setTimeout(resolve, this.retryDelay));
      this.schedule();
    }
  }
}
