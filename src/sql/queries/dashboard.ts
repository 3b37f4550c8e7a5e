// The typed statements of dashboard.sql.
import type { EndReason, Task, TaskState } from '../../client/types.js';
import { statement } from '../../db/statement.js';
import type { GroupCount, GroupRow, ScheduleRow, TaskRow, WorkerRow } from '../../http/dashboard/store.js';
import type { TaskStateRow } from './task.js';

/** The filter of the task pages; each null: no filter. */
export interface TaskFilterParams {
  state: TaskState | null;
  groupId: number | null;
  /** A substring of the command or the error, case-insensitive. */
  text: string | null;
  taskId: number | null;
  endReason: EndReason | null;
  /** last_state_change in [since, until). */
  since: Date | null;
  until: Date | null;
  /** JSON text the task's params contain (@>). */
  params: string | null;
  limit: number;
}

const filterParams = { state: true, groupId: true, text: true, taskId: true, endReason: true, since: true, until: true, params: true, limit: true } as const;

/** afterId: the last id of the page before (null: the first page). */
export const dashboardTasksNewest = statement<TaskFilterParams & { afterId: number | null }, TaskRow>({ ...filterParams, afterId: true });
export const dashboardTasksOldest = statement<TaskFilterParams & { afterId: number | null }, TaskRow>({ ...filterParams, afterId: true });

/** The last row of the page before (all null: the first page); afterAgeKey in microseconds. */
export const dashboardTasksQueue = statement<TaskFilterParams & { afterPriority: number | null; afterAgeKey: string | null; afterId: number | null }, TaskRow>({
  ...filterParams, afterPriority: true, afterAgeKey: true, afterId: true,
});

export const dashboardDependents = statement<{ taskId: number }, Pick<Task, 'id' | 'state_id' | 'depends_rule'>>({ taskId: true });
export const dashboardLastOutputSeq = statement<{ taskId: number; attempt: number }, { seq: number }>({ taskId: true, attempt: true });
export const dashboardWorkers = statement<Record<never, never>, WorkerRow>({});
export const dashboardSchedules = statement<{ limit: number }, ScheduleRow>({ limit: true });
export const dashboardGroupRows = statement<Record<never, never>, GroupRow>({});
export const dashboardGroupCounts = statement<Record<never, never>, GroupCount>({});
export const dashboardCancel = statement<{ taskId: number }, TaskStateRow>({ taskId: true });
export const dashboardQueue = statement<{ taskId: number }, TaskStateRow>({ taskId: true });
