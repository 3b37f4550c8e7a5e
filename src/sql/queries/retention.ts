// The typed statements of retention.sql: the client's prune and the nodes' retention pass.
import { statement } from '../../db/statement.js';

export interface PruneParams {
  olderThanMs: number;
  /** null: every group. */
  groupId: number | null;
  limit: number;
}

/** The pass's token and cursor: timestamps stay text (microseconds; a Date keeps milliseconds). */
export interface RetentionRow {
  token: string;
  rerun_since: string | null;
  settled: string;
  min_keep_runs_ms: number | null;
  cursor_finished: string | null;
  cursor_task: string | null;
  cursor_attempt: number | null;
  keep_ended_groups: number[];
}

/** Where the runs scan stands: the last run read (all null: none yet). */
export interface CursorParams {
  cursorFinished: string | null;
  cursorTask: string | null;
  cursorAttempt: number | null;
}

export interface HolderParams {
  nodeName: string;
  token: string;
}

export const pruneTasks = statement<PruneParams>({ olderThanMs: true, groupId: true, limit: true });
export const pruneRuns = statement<PruneParams>({ olderThanMs: true, groupId: true, limit: true });

export const startRetention = statement<{ nodeName: string; everyMs: number }, RetentionRow>({ nodeName: true, everyMs: true });

export const pruneEndedBatch = statement<{ groupId: number; limit: number }>({ groupId: true, limit: true });

export const pruneRunsBatch = statement<CursorParams & { olderThanMs: number; limit: number }, {
  deleted: number;
  scanned: number;
  finished: string | null;
  task_id: string | null;
  attempt: number | null;
}>({ olderThanMs: true, limit: true, cursorFinished: true, cursorTask: true, cursorAttempt: true });

export const pruneRerunRuns = statement<{ since: string; cursorFinished: string }>({ since: true, cursorFinished: true });

export const holdRetention = statement<HolderParams>({ nodeName: true, token: true });

export const finishRetention = statement<CursorParams & HolderParams & { tasks: number; runs: number; nextInMs: number; settled: string }>({
  tasks: true, runs: true, cursorFinished: true, cursorTask: true, cursorAttempt: true, nextInMs: true, nodeName: true, token: true, settled: true,
});
