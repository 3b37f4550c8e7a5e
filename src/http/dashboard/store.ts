// The dashboard's statements (src/sql/queries/dashboard.sql and the shared ones), each behind
// one typed function: pages and actions never hold SQL text.
import type pg from 'pg';
import type { Statements } from '../../sql/queries/index.js';
import type { DependsRule, EndReason, PeriodId, Task, TaskState, Worker } from '../../client/types.js';
import type { TaskFilterParams } from '../../sql/queries/dashboard.js';
import type { GraphNodeRow, RunRow } from '../../sql/queries/taskpage.js';
import { readOverview, type OverviewData } from './overview.js';

export type TaskSort = 'newest' | 'oldest' | 'queue';

export interface TaskFilter {
  state: TaskState | null;
  group: number | null;
  text: string | null;
  reason: EndReason | null;
  /** last_state_change in [since, until). */
  since: Date | null;
  until: Date | null;
  /** JSON text the params contain (@>). */
  params: string | null;
}

/** What a bulk action does to the filter's tasks: re-queue the ended ones, or cancel the waiting and executing ones. */
export type BulkAction = 'requeue' | 'cancel';

/** The states a bulk action changes; the others are left as they are. */
export const BULK_STATES: Record<BulkAction, TaskState[]> = { requeue: ['CS', 'CF', 'CC'], cancel: ['AW', 'AE'] };

/** Where a page starts: after this row of the page before (null: the first page). */
export type Cursor = { id: number } | { priority: number; ageKey: string; id: number };

export type TaskRow = Pick<Task, 'id' | 'state_id' | 'priority' | 'group_id' | 'worker_id' | 'command' | 'attempt' | 'end_reason' | 'created'
  | 'last_state_change' | 'started' | 'finished' | 'error' | 'next_start' | 'shed_cron' | 'depends_on' | 'deps_left' | 'run_after' | 'live_worker_id'
  | 'owner' | 'progress' | 'progress_message'> & {
  /** last_state_change in microseconds since the epoch, as text (exact, unlike a Date). */
  age_key: string;
};

export interface TaskPage {
  rows: TaskRow[];
  /** The cursor of the next page, when there is one. */
  next: Cursor | null;
}

export interface WorkerRow extends Pick<Worker, 'id' | 'group_id' | 'node_name' | 'host' | 'pid' | 'task_count' | 'max_task_count' | 'stop' | 'active' | 'locked_until'> {
  lease_taken: Date | null;
  lease_epoch: number;
  standby_node: string | null;
  standby_seen: Date | null;
  status: 'ok' | 'paused' | 'draining' | 'cancelling' | 'failed' | 'standby' | 'stopped';
  lapses_in_ms: number | null;
}

export type ScheduleRow = Pick<Task, 'id' | 'state_id' | 'group_id' | 'command' | 'next_start' | 'shed_period_id' | 'shed_period_count' | 'shed_cron'
  | 'shed_tz' | 'shed_anchor' | 'shed_clone' | 'shed_overlap' | 'shed_skip_count' | 'last_state_change'>;

export interface GroupRow {
  id: number;
  max_running: number | null;
  recover_policy: string;
  timeout: string | null;
  keep_ended: string | null;
  keep_runs: string | null;
  max_attempts: number | null;
}

export interface GroupCount {
  group_id: number;
  state_id: TaskState;
  tasks: number;
  running: number;
}

export interface OutputChunk {
  seq: number;
  pos: number;
  data: Buffer;
}

/** Which page of a task's runs: the newest, those before an attempt, or those after one. */
export type RunsFrom = { before: number | null } | { after: number };

export interface RunsPage {
  /** Newest first. */
  rows: RunRow[];
  /** The cursors of the pages beside it (runs_after, runs_before), when there are such runs. */
  newer: number | null;
  older: number | null;
}

/** How far a graph reaches: levels each way (around a task), tasks kept, neighbours read per task. */
export interface GraphBounds {
  levels: number;
  nodes: number;
  fanOut: number;
}

/** A task of the graph; depth: levels up (< 0) or down (> 0) from the task it was drawn around. */
export type GraphNode = Omit<GraphNodeRow, 'shown_prerequisites'> & { shown_prerequisites: number[]; depth: number };

export interface NewTask {
  command: string[];
  group: number;
  priority: number;
  state: 'DR' | 'AW';
  /** Each null: the group's setting, else the default (as pg-tasks add without the option). */
  timeoutMs: number | null;
  maxAttempts: number | null;
  dependsOn: number[] | null;
  dependsRule: DependsRule | null;
  concurrencyKey: string | null;
  /** A schedule set in the same transaction (pg-tasks schedule): every period, or on cron. */
  schedule: NewSchedule | null;
}

export interface NewSchedule {
  every: { periodId: PeriodId; count: number } | null;
  cron: string | null;
  tz: string;
  /** The first slot: now for a period, the next cron slot for cron (as the client computes it). */
  firstStart: Date;
}

export class DashboardStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly queries: Statements,
  ) {}

  async tasks(filter: TaskFilter, sort: TaskSort, after: Cursor | null, limit: number): Promise<TaskPage> {
    // One row more than shown: whether a next page exists, without counting.
    const base = filterParams(filter, limit + 1);
    let result: { rows: TaskRow[] };
    if (sort === 'queue') {
      const c = after && 'priority' in after ? after : null;
      result = await this.queries.dashboardTasksQueue(this.pool, { ...base, afterPriority: c?.priority ?? null, afterAgeKey: c?.ageKey ?? null, afterId: c?.id ?? null });
    } else {
      const page = sort === 'newest' ? this.queries.dashboardTasksNewest : this.queries.dashboardTasksOldest;
      result = await page(this.pool, { ...base, afterId: after && !('priority' in after) ? after.id : null });
    }
    const rows = result.rows.slice(0, limit);
    const last = rows[rows.length - 1];
    const next: Cursor | null = result.rows.length > limit && last
      ? sort === 'queue' ? { priority: last.priority, ageKey: String(last.age_key), id: last.id } : { id: last.id }
      : null;
    return { rows, next };
  }

  async task(id: number): Promise<Task | null> {
    const { rows } = await this.queries.getTask(this.pool, { taskId: id });
    return rows[0] ?? null;
  }

  /** A page of the task's runs, newest first (one row more is read: whether another page exists). */
  async runs(id: number, from: RunsFrom, limit: number): Promise<RunsPage> {
    if ('after' in from) {
      const { rows } = await this.queries.dashboardRunsAfter(this.pool, { taskId: id, afterAttempt: from.after, limit: limit + 1 });
      const shown = rows.slice(0, limit).reverse();
      return { rows: shown, newer: rows.length > limit ? shown[0]!.attempt : null, older: shown.length > 0 ? shown[shown.length - 1]!.attempt : from.after + 1 };
    }
    const { rows } = await this.queries.dashboardRunsBefore(this.pool, { taskId: id, beforeAttempt: from.before, limit: limit + 1 });
    const shown = rows.slice(0, limit);
    return {
      rows: shown,
      newer: from.before === null ? null : shown.length > 0 ? shown[0]!.attempt : Math.max(0, from.before - 1),
      older: rows.length > limit ? shown[shown.length - 1]!.attempt : null,
    };
  }

  /**
   * The tasks around `id` (its prerequisites and dependents, `levels` each way), or its whole
   * DAG (`whole`), at most `bounds.nodes` of them; [] when it has no dependencies either way.
   */
  async graph(id: number, whole: boolean, bounds: GraphBounds): Promise<GraphNode[]> {
    const walk = { taskId: id, fanOut: bounds.fanOut, nodes: bounds.nodes };
    // The walk around reads at most 4 rows a task kept per direction: a task met again at
    // another depth (a diamond) is one row more.
    const steps = whole
      ? (await this.queries.dashboardGraphComponent(this.pool, walk)).rows.map((row) => ({ id: row.id, depth: 0 }))
      : (await this.queries.dashboardGraphAround(this.pool, { ...walk, levels: bounds.levels, pull: bounds.nodes * 4 })).rows;
    if (steps.length <= 1) return [];
    const depth = new Map(steps.map((step) => [step.id, step.depth]));
    const { rows } = await this.queries.dashboardGraphNodes(this.pool, { ids: steps.map((step) => step.id) });
    // node-postgres reads a bigint[] as strings (only the scalar bigint has a parser: db/connection.ts).
    return rows.map((row) => ({ ...row, shown_prerequisites: row.shown_prerequisites.map(Number), depth: depth.get(row.id) ?? 0 }));
  }

  async prerequisites(id: number): Promise<Array<{ id: number; state_id: TaskState }>> {
    return (await this.queries.prerequisites(this.pool, { taskId: id })).rows;
  }

  async dependents(id: number): Promise<Array<{ id: number; state_id: TaskState; depends_rule: DependsRule }>> {
    return (await this.queries.dashboardDependents(this.pool, { taskId: id })).rows;
  }

  /** Chunks of run `attempt` after seq `after` (−1: from the first kept). */
  async output(id: number, attempt: number, after: number, limit: number): Promise<OutputChunk[]> {
    const { rows } = await this.queries.readOutput(this.pool, { taskId: id, attempt, afterSeq: after, limit });
    return rows.map((row) => ({ seq: row.seq, pos: Number(row.pos), data: row.data }));
  }

  /** The last chunk's seq of run `attempt` (−1: none yet). */
  async lastOutputSeq(id: number, attempt: number): Promise<number> {
    return (await this.queries.dashboardLastOutputSeq(this.pool, { taskId: id, attempt })).rows[0]?.seq ?? -1;
  }

  /** Tasks by id (those a live page shows); a deleted one is left out. */
  async tasksById(ids: number[]): Promise<Task[]> {
    return (await this.queries.getTasks(this.pool, { taskIds: ids })).rows;
  }

  async workers(): Promise<WorkerRow[]> {
    return (await this.queries.dashboardWorkers(this.pool)).rows;
  }

  async schedules(limit: number): Promise<ScheduleRow[]> {
    return (await this.queries.dashboardSchedules(this.pool, { limit })).rows;
  }

  async groups(): Promise<{ rows: GroupRow[]; counts: GroupCount[] }> {
    const [rows, counts] = await Promise.all([
      this.queries.dashboardGroupRows(this.pool),
      this.queries.dashboardGroupCounts(this.pool),
    ]);
    return { rows: rows.rows, counts: counts.rows };
  }

  /** null: no such task. A refusal by the trigger rejects with the database's error. */
  async cancel(id: number): Promise<{ id: number; state_id: TaskState } | null> {
    return (await this.queries.dashboardCancel(this.pool, { taskId: id })).rows[0] ?? null;
  }

  async queue(id: number): Promise<{ id: number; state_id: TaskState } | null> {
    return (await this.queries.dashboardQueue(this.pool, { taskId: id })).rows[0] ?? null;
  }

  /** How many of the filter's tasks the action would change, counted up to `limit`. */
  async bulkCount(action: BulkAction, filter: TaskFilter, limit: number): Promise<number> {
    return (await this.queries.bulkCount(this.pool, { ...filterParams(filter, limit), states: BULK_STATES[action] })).rows[0]!.tasks;
  }

  /** Re-queues or cancels at most `limit` of the filter's tasks (lowest ids first) in one statement; how many changed. */
  async bulk(action: BulkAction, filter: TaskFilter, limit: number): Promise<number> {
    const statement = action === 'requeue' ? this.queries.bulkRequeue : this.queries.bulkCancel;
    return (await statement(this.pool, filterParams(filter, limit))).rows[0]!.tasks;
  }

  /** Inserts the task, and sets its schedule in the same transaction: a schedule refused leaves no task. */
  async add(task: NewTask): Promise<number> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const { rows } = await this.queries.insertTask(client, {
        command: task.command, groupId: task.group, priority: task.priority, stateId: task.state, cwd: null, params: null, workerId: null,
        recoverPolicy: null, timeoutMs: task.timeoutMs, maxAttempts: task.maxAttempts, backoffBaseMs: null, backoffCapMs: null, retryOn: null,
        dependsOn: task.dependsOn, concurrencyKey: task.concurrencyKey, uniqueKey: null, runAfter: null, dependsRule: task.dependsRule,
      });
      const id = rows[0]!.id;
      const s = task.schedule;
      if (s) {
        await this.queries.setSchedule(client, {
          taskId: id, nextStart: s.firstStart, periodId: s.every?.periodId ?? null, periodCount: s.every?.count ?? null, cron: s.cron, tz: s.tz, clone: false,
          timeoutMs: null, maxAttempts: null, backoffBaseMs: null, backoffCapMs: null, retryOn: null, overlap: null, missed: null, catchupMax: null,
        });
      }
      await client.query('COMMIT');
      return id;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  /** The overview's figures at `now` (null: the database's clock). */
  async overview(now: Date | null): Promise<OverviewData> {
    return readOverview(this.pool, this.queries, now);
  }

  async setWorkerStop(id: number, stop: number): Promise<boolean> {
    return (await this.queries.setWorkerStop(this.pool, { workerId: id, stop })).rowCount === 1;
  }
}

/** The filter as the statements' parameters: a number searched for is a task id. */
function filterParams(filter: TaskFilter, limit: number): TaskFilterParams {
  // A number is a task id: found by the primary key, where a substring would read the table.
  const asId = filter.text !== null && /^\d{1,15}$/.test(filter.text.trim()) ? Number(filter.text.trim()) : null;
  const text = filter.text === null || filter.text === '' || asId !== null ? null : filter.text;
  return {
    state: filter.state, groupId: filter.group, text, taskId: asId, endReason: filter.reason, since: filter.since, until: filter.until,
    params: filter.params, limit,
  };
}
