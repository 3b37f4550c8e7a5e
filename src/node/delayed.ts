import type pg from 'pg';
import type { Logger } from 'pino';
import { describeError } from '../db/errors.js';
import type { Queries } from '../db/queries.js';

// setTimeout's longest delay is 2^31 − 1 ms (24.8 days); a run_after further away is re-read then.
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Waiting tasks with a run_after (a retry's backoff, a delayed start) are kept out of the
 * claim until it comes. Each node of the group keeps one timer armed to the earliest of them;
 * when it fires, the due ones are released (run_after cleared: the update notifies the group,
 * and the nodes claim them). Re-armed when a notification says a task was delayed ('delayed'),
 * and after every (re)connect. No polling: an idle group with nothing delayed has no timer.
 */
export class DelayedTasks {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private busy = false;
  private again = false;
  private retryMs = 0;

  constructor(
    private readonly pool: pg.Pool,
    private readonly queries: Queries,
    private readonly groupId: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.running = true;
    this.rearm();
  }

  stop(): void {
    this.running = false;
    this.arm(null);
  }

  /** Reads the earliest run_after again (and releases what is due); folds overlapping calls. */
  rearm(): void {
    if (!this.running) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    void this.cycle().finally(() => {
      this.busy = false;
      if (this.again) {
        this.again = false;
        this.rearm();
      }
    });
  }

  private arm(ms: number | null): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = ms !== null && this.running ? setTimeout(() => this.rearm(), ms) : null;
  }

  private async cycle(): Promise<void> {
    try {
      for (;;) {
        if (!this.running) return;
        const { rows } = await this.pool.query<{ delay_ms: number | null }>(this.queries.nextDelayedDue, [this.groupId]);
        const delay = rows[0]?.delay_ms ?? null;
        if (delay === null || delay > 0) {
          // +1 ms: a timer must not wake a hair before run_after and find nothing due.
          this.arm(delay === null ? null : Math.min(Math.ceil(delay) + 1, MAX_TIMER_MS));
          this.retryMs = 0;
          return;
        }
        await this.pool.query(this.queries.releaseDelayed, [this.groupId]);
      }
    } catch (error) {
      if (!this.running) return;
      this.retryMs = Math.min(Math.max(this.retryMs * 2, 200), 5_000);
      this.log.warn({ err: describeError(error), retryInMs: this.retryMs }, 'could not release delayed tasks; retrying');
      this.arm(this.retryMs);
    }
  }
}
