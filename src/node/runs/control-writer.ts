import type pg from 'pg';
import type { Logger } from 'pino';
import { describeError } from '../../db/errors.js';
import type { Statements } from '../../sql/queries/index.js';
import type { RunProgress } from '../../sql/queries/control.js';
import { Backoff } from '../../lib/backoff.js';
import type { NodeEvents } from '../events.js';
import type { Service } from '../services.js';

/**
 * At most one progress write per run per 200 ms, the latest value winning: a task that
 * reports progress in a tight loop costs 5 statements a second for all the node's runs.
 */
const FLUSH_MS = 200;

/**
 * Progress from the runs' control channels (docs/control.md) to their task rows: one
 * statement per flush for every run with a new value (recordProgress), each conditional on
 * its run (task id, attempt, lease term). Holds at most one pending value per live run; a
 * run's end takes its last values to its rows itself (finishRuns), so its pending value is
 * dropped then.
 */
export class ControlWriter implements Service {
  private pending = new Map<string, RunProgress>();
  private timer: NodeJS.Timeout | null = null;
  private flushing = false;
  private running = false;
  private readonly backoff = new Backoff(100, 5_000);

  constructor(
    private readonly pool: pg.Pool,
    private readonly queries: Statements,
    private readonly workerId: number,
    private readonly log: Logger,
    private readonly events: NodeEvents,
  ) {}

  start(): void {
    this.running = true;
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.pending.clear();
  }

  /** A run reported progress: written within FLUSH_MS, with whatever came after it. */
  report(run: RunProgress): void {
    if (!this.running) return;
    this.pending.set(`${run.id}:${run.attempt}`, run);
    this.flushSoon(FLUSH_MS);
  }

  /** The run ended: its end carries its last values. */
  ended(taskId: number, attempt: number): void {
    this.pending.delete(`${taskId}:${attempt}`);
  }

  private flushSoon(ms: number): void {
    if (this.timer || this.flushing || !this.running) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, ms);
  }

  private async flush(): Promise<void> {
    if (this.pending.size === 0) return;
    const runs = [...this.pending.values()];
    this.pending.clear();
    this.flushing = true;
    let wait = FLUSH_MS;
    try {
      await this.queries.recordProgress(this.pool, { workerId: this.workerId, runs });
      this.backoff.reset();
      for (const r of runs) this.events.publish('run:progress', { taskId: r.id, attempt: r.attempt, progress: r.progress, message: r.message });
    } catch (error) {
      wait = this.backoff.next();
      this.log.warn({ err: describeError(error), runs: runs.length, retryInMs: wait }, 'could not write progress; retrying');
      // Put back unless a newer value came meanwhile (a run that ended meanwhile is lost
      // here: its end carries its values anyway).
      for (const r of runs) {
        const key = `${r.id}:${r.attempt}`;
        if (!this.pending.has(key)) this.pending.set(key, r);
      }
    } finally {
      this.flushing = false;
    }
    if (this.pending.size > 0) this.flushSoon(wait);
  }
}
