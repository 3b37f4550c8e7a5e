// The typed statements of taskpage.sql: the task page's dependency graph and runs.
import type { DependsRule, EndReason, TaskState } from '../../client/types.js';
import { statement } from '../../db/statement.js';

/** How far a graph walk goes: levels each way, neighbours read per task, rows pulled, tasks kept. */
export interface GraphBounds {
  taskId: number;
  fanOut: number;
  nodes: number;
}

/** A task of the walk; depth < 0: a prerequisite that many levels up, > 0: a dependent. */
export interface GraphStep {
  id: number;
  depth: number;
}

export interface GraphNodeRow {
  id: number;
  state_id: TaskState;
  depends_rule: DependsRule;
  end_reason: EndReason | null;
  /** The command line, its first 80 characters. */
  command: string;
  /** Its prerequisites among the tasks drawn (as the driver reads a bigint[]: strings). */
  shown_prerequisites: Array<number | string>;
  /** Its prerequisites that still exist and its dependents, each counted up to 100. */
  prerequisites: number;
  dependents: number;
}

/** A run as the runs table and timeline show it: no output, the error's first line. */
export interface RunRow {
  attempt: number;
  worker_id: number;
  node_name: string | null;
  pid: number | null;
  started: Date;
  /** null: the live run. */
  finished: Date | null;
  /** To finished, or to now for the live run. */
  duration_ms: number;
  exit_code: number | null;
  exit_signal: string | null;
  end_reason: EndReason | null;
  error: string | null;
  cpu_user_ms: number | null;
  cpu_system_ms: number | null;
  max_rss_kb: number | null;
  memory_peak: number | null;
}

export const dashboardGraphAround = statement<GraphBounds & { levels: number; pull: number }, GraphStep>({ taskId: true, fanOut: true, nodes: true, levels: true, pull: true });
export const dashboardGraphComponent = statement<GraphBounds, { id: number }>({ taskId: true, fanOut: true, nodes: true });
export const dashboardGraphNodes = statement<{ ids: number[] }, GraphNodeRow>({ ids: true });
/** beforeAttempt null: the newest page, the live run first. */
export const dashboardRunsBefore = statement<{ taskId: number; beforeAttempt: number | null; limit: number }, RunRow>({ taskId: true, beforeAttempt: true, limit: true });
export const dashboardRunsAfter = statement<{ taskId: number; afterAttempt: number; limit: number }, RunRow>({ taskId: true, afterAttempt: true, limit: true });
