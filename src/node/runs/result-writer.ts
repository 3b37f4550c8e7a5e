import type pg from 'pg';
import type { Logger } from 'pino';
import type { EndReason } from '../../client/types.js';
import type { Statements } from '../../sql/queries/index.js';
import { Backoff } from '../../lib/backoff.js';
import type { NodeEvents } from '../events.js';
import type { Service } from '../services.js';
import type { ResourceUsage } from '../process/spawner.js';

export type { EndReason };

/** How one run ended: what the node writes to its task_run row (and the task row). */
export interface TaskOutcome {
  id: number;
  attempt: number;
  state: 'CS' | 'CF' | 'CC';
  endReason: EndReason;
  /** null when no process started. */
  pid: number | null;
  /** What the process used, where it can be told (see ResourceUsage). */
  usage?: ResourceUsage | undefined;
  exitCode: number | null;
  signal: string | null;
  error: string | null;
  output: string;
  /** The timeout the run was claimed with (its task_run row's deadline); null = none. */
  timeoutMs: number | null;
  /** Claimed as pinned to this worker: a retry stays pinned to it (else any worker may run it). */
  pinned: boolean;
}

/**
 * A pid waits this long before it is written on its own: most short runs end sooner, and the
 * end writes the pid with it (finishRuns), which saves a statement per batch of starts
 * (about a fifth of the node's statement time per task at 1 000 tasks/s, by pg_stat_statements). A running task shows its pid this much later.
 */
export const PID_DELAY_MS = 50;

/**
 * Writes what the node learns about its runs (pids, then outcomes) in batches: everything
 * that arrives in one turn of the event loop goes out in one statement per kind, so a burst
 * of 500 exits costs two statements, not 500. Every write names its run (task id, attempt)
 * and the lease term it was made under; runs the node no longer owns are left alone.
 */
export class ResultWriter implements Service {
  /** Pids by run: `${task id}:${attempt}`; at: performance.now() when the process started. */
  private pids = new Map<string, { id: number; attempt: number; pid: number; at: number }>();
  private pidTimer: NodeJS.Timeout | null = null;
  private outcomes: Array<{ epoch: number; outcome: TaskOutcome }> = [];
  private pidEpoch: number | null = null;
  private flushing: Promise<void> | null = null;
  private scheduled = false;
  private readonly backoff = new Backoff(100, 5_000);
  private inFlight = 0;
  private inFlightRuns = new Set<string>();
  private closed = false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly queries: Statements,
    private readonly workerId: number,
    /** Named in each run's task_run row. */
    private readonly nodeName: string,
    private readonly log: Logger,
    private readonly events: NodeEvents,
  ) {}

  /** Outcomes not yet written, including a batch being written right now. */
  get pending(): number {
    return this.outcomes.length + this.inFlight;
  }

  /** True while an outcome for this run waits to be written (or is being written). */
  isPending(taskId: number, attempt: number): boolean {
    return this.outcomes.some((o) => o.outcome.id === taskId && o.outcome.attempt === attempt) || this.inFlightRuns.has(`${taskId}:${attempt}`);
  }

  /** Writes again after stop() (a new writer starts written-to at once: nothing to do). */
  start(): void {
    this.closed = false;
  }

  /** Stops retrying: the pool is about to end. What is still pending is reported by the caller. */
  stop(): void {
    this.closed = true;
    if (this.pidTimer) clearTimeout(this.pidTimer);
    this.pidTimer = null;
  }

  recordPid(epoch: number, taskId: number, attempt: number, pid: number): void {
    // Stopped: nothing is written any more, so nothing is kept or armed for it.
    if (this.closed) return;
    if (this.pidEpoch !== epoch) this.pids.clear();
    this.pidEpoch = epoch;
    this.pids.set(`${taskId}:${attempt}`, { id: taskId, attempt, pid, at: performance.now() });
    this.pidTimer ??= setTimeout(() => {
      this.pidTimer = null;
      this.schedule();
    }, PID_DELAY_MS);
  }

  finish(epoch: number, outcome: TaskOutcome): void {
    // A pid still pending goes with the outcome: finishRuns writes it to the task row too, so
    // a task that ended before its pid was written still shows the pid it ran as.
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

  /**
   * For a stopping node: writes what is pending, trying again until `timeoutMs` has passed
   * (a database that stays down must not keep the node from exiting), then stops.
   */
  async drain(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while ((this.pending > 0 || this.pids.size > 0) && performance.now() < deadline) {
      await this.flush(true);
      if (this.pending > 0) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    this.stop();
  }

  /**
   * Writes what is pending (pids younger than PID_DELAY_MS only with `all`, or with their run's
   * outcome); resolves when it is written or given up on.
   */
  async flush(all = false): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.closed || (this.pids.size === 0 && this.outcomes.length === 0)) return;
    this.flushing = this.writeOnce(all).finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  private async writeOnce(all: boolean): Promise<void> {
    const pidEpoch = this.pidEpoch;
    const outcomes = this.outcomes;
    this.outcomes = [];
    // The pids to write on their own: not those whose outcome goes now (finishRuns writes
    // them), and not those younger than PID_DELAY_MS (their run may end first).
    const ending = new Map(outcomes.map((o) => [`${o.outcome.id}:${o.outcome.attempt}`, o.outcome]));
    const pids = new Map<string, { id: number; attempt: number; pid: number; at: number }>();
    const youngerThan = performance.now() - PID_DELAY_MS;
    for (const [key, run] of this.pids) {
      if (ending.has(key)) {
        const outcome = ending.get(key)!;
        outcome.pid ??= run.pid;
        this.pids.delete(key);
      } else if (all || run.at <= youngerThan) {
        pids.set(key, run);
        this.pids.delete(key);
      }
    }
    if (this.pids.size > 0 && !this.pidTimer && !this.closed) {
      const oldest = Math.min(...[...this.pids.values()].map((r) => r.at));
      this.pidTimer = setTimeout(() => {
        this.pidTimer = null;
        this.schedule();
      }, Math.max(1, oldest + PID_DELAY_MS - performance.now()));
    }
    if (pids.size === 0 && outcomes.length === 0) return;
    this.inFlight = outcomes.length;
    this.inFlightRuns = new Set(outcomes.map((o) => `${o.outcome.id}:${o.outcome.attempt}`));
    try {
      if (pids.size > 0 && pidEpoch !== null) {
        await this.queries.recordPids(this.pool, { workerId: this.workerId, epoch: pidEpoch, runs: [...pids.values()] });
      }
      const byEpoch = new Map<number, TaskOutcome[]>();
      for (const { epoch, outcome } of outcomes) {
        const list = byEpoch.get(epoch) ?? [];
        list.push(outcome);
        byEpoch.set(epoch, list);
      }
      for (const [epoch, list] of byEpoch) {
        const { rows } = await this.queries.finishRuns(this.pool, { workerId: this.workerId, epoch, nodeName: this.nodeName, runs: list });
        if (rows.length < list.length) {
          // Only a run that is no longer this term's: recovered by another node after this
          // one lost its lease, or deleted. What users write to the task row never causes it.
          const ok = new Set(rows.map((r) => `${r.id}:${r.attempt}`));
          this.log.warn(
            { runs: list.filter((o) => !ok.has(`${o.id}:${o.attempt}`)).map((o) => `${o.id}:${o.attempt}`), epoch },
            'results not written: these runs are no longer owned by this lease term (recovered elsewhere, or deleted)',
          );
        }
      }
      this.backoff.reset();
      this.inFlight = 0;
      this.inFlightRuns.clear();
    } catch (error) {
      // Keep them and try again: the database may be restarting. Newer pids win.
      for (const [key, run] of pids) if (!this.pids.has(key)) this.pids.set(key, run);
      this.outcomes = [...outcomes, ...this.outcomes];
      this.inFlight = 0;
      this.inFlightRuns.clear();
      const retryInMs = this.backoff.next();
      this.log.warn({ err: (error as Error).message, retryInMs }, 'could not write task results; retrying');
      this.events.publish('results:retry', { error: (error as Error).message, retryInMs });
      await new Promise((resolve) => setTimeout(resolve, retryInMs));
      this.schedule();
    }
  }
}
