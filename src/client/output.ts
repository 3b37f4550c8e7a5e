import type pg from 'pg';
import pino from 'pino';
import { Listener } from '../db/listener.js';
import type { Notification } from '../db/notifications.js';
import type { Statements } from '../sql/queries/index.js';

/** Chunks read in one statement; a run keeps at most --output-keep bytes (1 MiB, 16 chunks). */
const PAGE = 200;

export interface OutputChunk {
  seq: number;
  /** Byte offset of the chunk's first byte in the run's whole output. */
  pos: number;
  at: Date;
  data: Buffer;
}

export interface OutputRun {
  taskId: number;
  groupId: number;
  /** The run shown (1, 2, …); 0 when the task has not run. */
  attempt: number;
  /** The task's latest run. */
  latest: number;
  /** The run has ended: its task_run row is written, and all it printed is in task_output. */
  ended: boolean;
}

export interface FollowOptions {
  /** Run N; the latest when absent. */
  attempt?: number | undefined;
  /** Keep reading as the run prints, until it ends (LISTEN, not polling). */
  follow?: boolean;
  /** Stops following. */
  signal?: AbortSignal;
}

export class RunNotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunNotFoundError';
  }
}

/**
 * Reads a run's live output (task_output, migration 11), and follows it while the run lives:
 * one LISTEN connection, opened before the first read, so nothing written after it is missed.
 * A notification is a hint to read again: 'output' naming the task (or none), 'ended', and the
 * group's 'queued'/'delayed' (a run that ends with a retry leaves its task waiting, not ended).
 * After every (re)connection it reads again.
 */
export async function readRunOutput(
  pool: pg.Pool,
  queries: Statements,
  listen: { config: pg.ClientConfig; channel: string },
  taskId: number,
  options: FollowOptions,
  write: (chunk: OutputChunk, run: OutputRun) => void,
): Promise<OutputRun> {
  let wake: (() => void) | null = null;
  let dirty = false;
  const poke = (): void => {
    dirty = true;
    wake?.();
  };
  let run = await locateRun(pool, queries, taskId, options.attempt);
  let listener: Listener | null = null;
  if (options.follow && !run.ended) {
    listener = new Listener(listen.config, listen.channel, pino({ level: 'silent' }));
    listener.on('notification', (n: Notification) => {
      if (n.e === 'ping' || n.e === 'worker' || n.e === 'cancel') return;
      if ('ids' in n && n.ids) {
        if (n.ids.includes(taskId)) poke();
      } else if (!('g' in n) || n.g === run.groupId) {
        poke();
      }
    });
    listener.on('connected', poke);
    await listener.start();
  }
  const aborted = new Promise<void>((resolve) => options.signal?.addEventListener('abort', () => resolve(), { once: true }));
  try {
    let after = -1;
    for (;;) {
      dirty = false;
      // Read whether it has ended before its output: once ended, the read has all it printed.
      // A follower of a task that has not run yet takes its first run.
      if (listener) run = await locateRun(pool, queries, taskId, run.attempt || undefined);
      const ended = !listener || run.ended;
      for (;;) {
        const { rows } = await queries.readOutput(pool, { taskId, attempt: run.attempt, afterSeq: after, limit: PAGE });
        for (const row of rows) {
          write({ ...row, pos: Number(row.pos) }, run);
          after = row.seq;
        }
        if (rows.length < PAGE) break;
      }
      if (ended || options.signal?.aborted) return run;
      if (!dirty) {
        await Promise.race([new Promise<void>((resolve) => (wake = resolve)), aborted]);
        wake = null;
      }
      if (options.signal?.aborted) return run;
    }
  } finally {
    await listener?.stop();
  }
}

async function locateRun(pool: pg.Pool, queries: Statements, taskId: number, attempt: number | undefined): Promise<OutputRun> {
  const { rows } = await queries.outputRun(pool, { taskId, attempt: attempt ?? null });
  const row = rows[0];
  if (!row) throw new RunNotFoundError(`task ${taskId} not found`);
  if (attempt !== undefined && (attempt < 1 || attempt > row.latest)) {
    throw new RunNotFoundError(row.latest === 0 ? `task ${taskId} has not run yet` : `task ${taskId} has no run ${attempt} (its runs: 1 to ${row.latest})`);
  }
  // A task that has not run has nothing to show; a follower waits for its first run.
  // The claim marks a run live as it numbers it, and its end clears the mark as it writes the
  // run's row: a numbered run that is not live has ended.
  return { taskId, groupId: row.group_id, attempt: row.attempt, latest: row.latest, ended: row.attempt > 0 && !row.live };
}
