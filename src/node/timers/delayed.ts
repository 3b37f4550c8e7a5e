import type pg from 'pg';
import type { Logger } from 'pino';
import { describeError } from '../../db/errors.js';
import type { Statements } from '../../sql/queries/index.js';
import { Backoff } from '../../lib/backoff.js';
import { TimedPart } from './timed-part.js';

/**
 * Waiting tasks with a run_after (a retry's backoff, a delayed start) are kept out of the
 * claim until it comes. Each node of the group keeps one timer armed to the earliest of them;
 * when it fires, the due ones are released (run_after cleared: the update notifies the group,
 * and the nodes claim them). Re-armed when a notification says a task was delayed ('delayed'),
 * and after every (re)connect. No polling: an idle group with nothing delayed has no timer.
 */
export class DelayedTasks extends TimedPart {
  private readonly backoff = new Backoff(200, 5_000);

  constructor(
    private readonly pool: pg.Pool,
    private readonly queries: Statements,
    private readonly groupId: number,
    private readonly log: Logger,
  ) {
    super();
  }

  /** Releases what is due; returns how long until the next run_after (null: none). */
  protected async cycle(): Promise<number | null> {
    try {
      for (;;) {
        if (!this.loop.active) return null;
        const { rows } = await this.queries.nextDelayedDue(this.pool, { groupId: this.groupId });
        const delay = rows[0]?.delay_ms ?? null;
        this.backoff.reset();
        // +1 ms: a timer must not wake a hair before run_after and find nothing due.
        if (delay === null || delay > 0) return delay === null ? null : Math.ceil(delay) + 1;
        await this.queries.releaseDelayed(this.pool, { groupId: this.groupId });
      }
    } catch (error) {
      const retryMs = this.backoff.next();
      if (this.loop.active) this.log.warn({ err: describeError(error), retryInMs: retryMs }, 'could not release delayed tasks; retrying');
      return retryMs;
    }
  }
}
