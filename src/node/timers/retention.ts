import type pg from 'pg';
import type { Logger } from 'pino';
import { describeError } from '../../db/errors.js';
import type { Statements } from '../../sql/queries/index.js';
import { TimedPart } from './timed-part.js';

const TASK_BATCH = 1_000;
const RUN_BATCH = 5_000;
// A group with no task_group row keeps older runs this long (migration 10's default).
const DEFAULT_KEEP_RUNS_MS = 30 * 86_400_000;

interface Cursor {
  finished: string | null;
  task: string | null;
  attempt: number | null;
}

/**
 * Retention inside the nodes (migration 10): every `everyMs`, each active node tries to start
 * a pass; the one whose update of the 'retention' row wins (and holds it while it works)
 * deletes, in short batches that skip rows others hold, the ended tasks past their group's keep_ended and the older runs past
 * keep_runs. Between batches it rests three times as long as the batch took, so a pass takes
 * at most a quarter of one connection's time: with 5 000 000 ended tasks to delete and resting
 * only as long as each batch, a node running tasks as fast as it could on 2 cores ran 0.80 as
 * many (bench/retention.ts). The first try comes one interval after the node starts: a node
 * adds no statement to an idle minute.
 */
export class Retention extends TimedPart {
  private heldAt = 0;
  private token = '';

  constructor(
    private readonly pool: pg.Pool,
    private readonly queries: Statements,
    private readonly nodeName: string,
    private readonly everyMs: number,
    private readonly log: Logger,
  ) {
    super();
  }

  override start(): void {
    if (this.everyMs > 0) super.start();
  }

  protected async cycle(due: boolean): Promise<number> {
    if (!due) return this.everyMs;
    try {
      await this.pass();
    } catch (error) {
      if (this.loop.active) this.log.warn({ err: describeError(error) }, 'retention pass failed; trying again at the next interval');
    }
    return this.everyMs;
  }

  private async pass(): Promise<void> {
    const { rows } = await this.queries.startRetention(this.pool, { nodeName: this.nodeName, everyMs: this.everyMs });
    const row = rows[0];
    if (!row) return; // another node's turn
    this.token = row.token;
    const began = performance.now();
    this.heldAt = began;
    let tasks = 0;
    for (const group of row.keep_ended_groups) {
      tasks += await this.batches(() => this.queries.pruneEndedBatch(this.pool, { groupId: group, limit: TASK_BATCH }), TASK_BATCH);
    }
    // Runs: read by age from where the last pass stopped (never later than the longest
    // retention in force: startRetention), so the latest runs kept are not read again.
    const start: Cursor = { finished: row.cursor_finished, task: row.cursor_task, attempt: row.cursor_attempt };
    let cursor = start;
    let runs = 0;
    for (;;) {
      if (!this.loop.active) return;
      const t0 = performance.now();
      const { rows: batch } = await this.queries.pruneRunsBatch(this.pool, {
        olderThanMs: row.min_keep_runs_ms ?? DEFAULT_KEEP_RUNS_MS, limit: RUN_BATCH, cursorFinished: cursor.finished, cursorTask: cursor.task, cursorAttempt: cursor.attempt,
      });
      const b = batch[0]!;
      runs += b.deleted;
      if (b.finished !== null) cursor = { finished: b.finished, task: b.task_id, attempt: b.attempt };
      if (b.scanned < RUN_BATCH) break;
      await this.rest(performance.now() - t0);
    }
    // Runs behind the cursor whose task ran again since the last finished pass.
    if (row.rerun_since !== null && start.finished !== null) {
      const { rowCount } = await this.queries.pruneRerunRuns(this.pool, { since: row.rerun_since, cursorFinished: start.finished });
      runs += rowCount;
    }
    await this.queries.finishRetention(this.pool, {
      tasks, runs, cursorFinished: cursor.finished, cursorTask: cursor.task, cursorAttempt: cursor.attempt, nextInMs: this.everyMs,
      nodeName: this.nodeName, token: row.token, settled: row.settled,
    });
    if (tasks + runs > 0) this.log.info({ tasks, runs, ms: Math.round(performance.now() - began) }, 'retention pass deleted ended tasks and older runs');
  }

  /** Runs a batch statement until it deletes fewer than `size`; returns how many it deleted. */
  private async batches(deleteBatch: () => Promise<{ rowCount: number }>, size: number): Promise<number> {
    let total = 0;
    for (;;) {
      if (!this.loop.active) return total;
      const t0 = performance.now();
      const { rowCount } = await deleteBatch();
      total += rowCount;
      if (rowCount < size) return total;
      await this.rest(performance.now() - t0);
    }
  }

  /** Between batches: rests three times as long as the batch took; every 10 s, keeps the other nodes off. */
  private async rest(batchMs: number): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, Math.min(3 * batchMs, 2_000)));
    if (performance.now() - this.heldAt > 10_000) {
      this.heldAt = performance.now();
      await this.queries.holdRetention(this.pool, { nodeName: this.nodeName, token: this.token });
    }
  }
}
