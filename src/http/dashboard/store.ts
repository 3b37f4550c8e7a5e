// The dashboard's statements (src/sql/queries/dashboard.sql and the shared ones), each behind
// one typed function: pages and actions never hold SQL text.
import type pg from 'pg';
import type { Statements } from '../../sql/queries/index.js';
import type { Task, TaskRun, TaskState, Worker } from '../../client/types.js';

export type TaskSort = 'newest' | 'oldest' | 'queue';

export interface TaskFilter {
  state: TaskState | null;
  group: number | null;
  text: string | null;
}

/** Where a page starts: after this row of the page before (null: the first page). */
export type Cursor = { id: number } | { priority: number; ageKey: string; id: number };

export type TaskRow = Pick<Task, 'id' | 'state_id' | 'priority' | 'group_id' | 'worker_id' | 'command' | 'attempt' | 'end_reason' | 'created'
  | 'last_state_change' | 'started' | 'finished' | 'error' | 'next_start' | 'shed_cron' | 'depends_on' | 'deps_left' | 'run_after' | 'live_worker_id'> & {
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
  status: 'ok' | 'failed' | 'standby' | 'stopped';
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

export interface NewTask {
  command: string[];
  group: number;
  priority: number;
  state: 'DR' | 'AW';
}

export class DashboardStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly queries: Statements,
  ) {}

  async tasks(filter: TaskFilter, sort: TaskSort, after: Cursor | null, limit: number): Promise<TaskPage> {
    // A number is a task id: found by the primary key, where a substring would read the table.
    const asId = filter.text !== null && /^\d{1,15}$/.test(filter.text.trim()) ? Number(filter.text.trim()) : null;
    const text = filter.text === null || filter.text === '' || asId !== null ? null : filter.text;
    // One row more than shown: whether a next page exists, without counting.
    const base = { state: filter.state, groupId: filter.group, text, taskId: asId, limit: limit + 1 };
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

  async runs(id: number): Promise<TaskRun[]> {
    return (await this.queries.taskRuns(this.pool, { taskId: id })).rows;
  }

  async prerequisites(id: number): Promise<Array<{ id: number; state_id: TaskState }>> {
    return (await this.queries.prerequisites(this.pool, { taskId: id })).rows;
  }

  async dependents(id: number): Promise<Array<{ id: number; state_id: TaskState }>> {
    return (await this.queries.dashboardDependents(this.pool, { taskId: id })).rows;
  }

  /** Chunks of run `attempt` after seq `after` (−1: from the first kept). */
  async output(id: number, attempt: number, after: number, limit: number): Promise<OutputChunk[]> {
    const { rows } = await this.queries.readOutput(this.pool, { taskId: id, attempt, afterSeq: after, limit });
    return rows.map((row) => ({ seq: row.seq, pos: Number(row.pos), data: row.data }));
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

  async add(task: NewTask): Promise<number> {
    const { rows } = await this.queries.insertTask(this.pool, {
      command: task.command, groupId: task.group, priority: task.priority, stateId: task.state, cwd: null, params: null, workerId: null,
      recoverPolicy: null, timeoutMs: null, maxAttempts: null, backoffBaseMs: null, backoffCapMs: null, retryOn: null, dependsOn: null, concurrencyKey: null,
    });
    return rows[0]!.id;
  }

  async setWorkerStop(id: number, stop: number): Promise<boolean> {
    return (await this.queries.setWorkerStop(this.pool, { workerId: id, stop })).rowCount === 1;
  }
}
