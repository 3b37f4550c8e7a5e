import type pg from 'pg';
import type { Logger } from 'pino';
import { describeError } from '../db/errors.js';
import type { Queries } from '../db/queries.js';
import { TimedLoop } from './timed-loop.js';

const TASK_BATCH = 1_000;
const RUN_BATCH = 5_000;
const DAY_MS = 86_400_000;
// A group with no task_group row keeps older runs this long (migration 10's default).
const DEFAULT_KEEP_RUNS_MS = 30 * DAY_MS;

interface RetentionRow {
  previous_start: Date | null;
  runs_cursor_finished: Date | null;
  runs_cursor_task: string | null;
  runs_cursor_attempt: number | null;
  min_keep_runs_ms: number | null;
  max_keep_runs_ms: number | null;
  db_now: Date;
  keep_ended_groups: number[];
}

interface Cursor {
  finished: Date | null;
  task: string | null;
  attempt: number | null;
}

/**
 * Retention inside the nodes (migration 10): every `everyMs`, each active node tries to start
 * a pass; the one whose update of the 'retention' row wins deletes, in short batches that skip
 * rows others hold, the ended tasks past their group's keep_ended and the older runs past
 * keep_runs. Between batches it rests three times as long as the batch took, so a pass takes
 * at most a quarter of one connection's time: with 5 000 000 ended tasks to delete and resting
 * only as long as each batch, a node running tasks as fast as it could on 2 cores ran 0.80 as
 * many (bench/retention.ts). The first try comes one interval after the node starts: a node
 * adds no statement to an idle minute.
 */
export class Retention {
  private readonly loop = new TimedLoop((due) => this.cycle(due));
  private heldAt = 0;

  constructor(
    private readonly pool: pg.Pool,
    private readonly queries: Queries,
    private readonly nodeName: string,
    private readonly everyMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.everyMs > 0) this.loop.start();
  }

  stop(): void {
    this.loop.stop();
  }

  private async cycle(due: boolean): Promise<number> {
    if (!due) return this.everyMs;
    try {
      await this.pass();
    } catch (error) {
      if (this.loop.active) this.log.warn({ err: describeError(error) }, 'retention pass failed; trying again at the next interval');
    }
    return this.everyMs;
  }

  private async pass(): Promise<void> {
    const { rows } = await this.pool.query<RetentionRow>(this.queries.startRetention, [this.nodeName, this.everyMs]);
    const row = rows[0];
    if (!row) return; // another node's turn
    const began = performance.now();
    this.heldAt = began;
    let tasks = 0;
    for (const group of row.keep_ended_groups) {
      tasks += await this.batches(this.queries.pruneEndedBatch, [group, TASK_BATCH], TASK_BATCH);
    }
    // Runs: scanned by age from where the last pass stopped, but never from later than the
    // longest retention in force, so a run a longer-keeping group still holds is read again.
    const minKeep = row.min_keep_runs_ms ?? DEFAULT_KEEP_RUNS_MS;
    const settledBefore = new Date(+row.db_now - (row.max_keep_runs_ms ?? DEFAULT_KEEP_RUNS_MS));
    let cursor: Cursor = { finished: row.runs_cursor_finished, task: row.runs_cursor_task, attempt: row.runs_cursor_attempt };
    if (cursor.finished && cursor.finished > settledBefore) cursor = { finished: settledBefore, task: null, attempt: null };
    const start = cursor;
    let runs = 0;
    for (;;) {
      if (!this.loop.active) return;
      const t0 = performance.now();
      const { rows: batch } = await this.pool.query<{ deleted: number; scanned: number; finished: Date | null; task_id: string | null; attempt: number | null }>(
        this.queries.pruneRunsBatch, [minKeep, RUN_BATCH, cursor.finished, cursor.task, cursor.attempt]);
      const b = batch[0]!;
      runs += b.deleted;
      if (b.finished) cursor = { finished: b.finished, task: b.task_id, attempt: b.attempt };
      if (b.scanned < RUN_BATCH) break;
      await this.rest(performance.now() - t0);
    }
    // Runs behind the saved cursor whose task ran again since the last pass.
    if (row.previous_start && start.finished) {
      const { rowCount } = await this.pool.query(this.queries.pruneRerunRuns, [row.previous_start, start.finished]);
      runs += rowCount ?? 0;
    }
    const saved = cursor.finished && cursor.finished > settledBefore ? { finished: settledBefore, task: null, attempt: null } : cursor;
    await this.pool.query(this.queries.finishRetention, [tasks, runs, saved.finished, saved.task, saved.attempt, this.everyMs]);
    if (tasks + runs > 0) this.log.info({ tasks, runs, ms: Math.round(performance.now() - began) }, 'retention pass deleted ended tasks and older runs');
  }

  /** Runs a batch statement until it deletes fewer than `size`; returns how many it deleted. */
  private async batches(query: string, values: unknown[], size: number): Promise<number> {
    let total = 0;
    for (;;) {
      if (!this.loop.active) return total;
      const t0 = performance.now();
      const { rowCount } = await this.pool.query(query, values);
      total += rowCount ?? 0;
      if ((rowCount ?? 0) < size) return total;
      await this.rest(performance.now() - t0);
    }
  }

  /** Between batches: rests three times as long as the batch took; every 10 s, keeps the other nodes off. */
  private async rest(batchMs: number): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, Math.min(3 * batchMs, 2_000)));
    if (performance.now() - this.heldAt > 10_000) {
      this.heldAt = performance.now();
      await this.pool.query(this.queries.holdRetention, [this.nodeName]);
    }
  }
}
