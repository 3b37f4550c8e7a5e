import type pg from 'pg';
import type { Logger } from 'pino';
import { describeError } from '../../db/errors.js';
import type { Queries } from '../../db/queries.js';
import { TimedLoop } from '../../lib/timed-loop.js';
import type { Service } from '../services.js';

const TASK_BATCH = 1_000;
const RUN_BATCH = 5_000;
// A group with no task_group row keeps older runs this long (migration 10's default).
const DEFAULT_KEEP_RUNS_MS = 30 * 86_400_000;

// Timestamps stay text (microseconds; a Date keeps milliseconds): see startRetention.
interface RetentionRow {
  token: string;
  rerun_since: string | null;
  settled: string;
  min_keep_runs_ms: number | null;
  cursor_finished: string | null;
  cursor_task: string | null;
  cursor_attempt: number | null;
  keep_ended_groups: number[];
}

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
export class Retention implements Service {
  private readonly loop = new TimedLoop((due) => this.cycle(due));
  private heldAt = 0;
  private token = '';

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

  /** Resolves once a cycle in flight has ended (it arms nothing). */
  stop(): Promise<void> {
    return this.loop.stop();
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
    this.token = row.token;
    const began = performance.now();
    this.heldAt = began;
    let tasks = 0;
    for (const group of row.keep_ended_groups) {
      tasks += await this.batches(this.queries.pruneEndedBatch, [group, TASK_BATCH], TASK_BATCH);
    }
    // Runs: read by age from where the last pass stopped (never later than the longest
    // retention in force: startRetention), so the latest runs kept are not read again.
    const start: Cursor = { finished: row.cursor_finished, task: row.cursor_task, attempt: row.cursor_attempt };
    let cursor = start;
    let runs = 0;
    for (;;) {
      if (!this.loop.active) return;
      const t0 = performance.now();
      const { rows: batch } = await this.pool.query<{ deleted: number; scanned: number; finished: string | null; task_id: string | null; attempt: number | null }>(
        this.queries.pruneRunsBatch, [row.min_keep_runs_ms ?? DEFAULT_KEEP_RUNS_MS, RUN_BATCH, cursor.finished, cursor.task, cursor.attempt]);
      const b = batch[0]!;
      runs += b.deleted;
      if (b.finished !== null) cursor = { finished: b.finished, task: b.task_id, attempt: b.attempt };
      if (b.scanned < RUN_BATCH) break;
      await this.rest(performance.now() - t0);
    }
    // Runs behind the cursor whose task ran again since the last finished pass.
    if (row.rerun_since !== null && start.finished !== null) {
      const { rowCount } = await this.pool.query(this.queries.pruneRerunRuns, [row.rerun_since, start.finished]);
      runs += rowCount ?? 0;
    }
    await this.pool.query(this.queries.finishRetention,
      [tasks, runs, cursor.finished, cursor.task, cursor.attempt, this.everyMs, this.nodeName, row.token, row.settled]);
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
      await this.pool.query(this.queries.holdRetention, [this.nodeName, this.token]);
    }
  }
}
