// The typed statements of the bulk actions (dashboard.sql): the dashboard's re-queue and cancel of a filter's tasks.
import type { TaskState } from '../../client/types.js';
import { statement } from '../../db/statement.js';
import type { TaskFilterParams } from './dashboard.js';

const filterParams = { state: true, groupId: true, text: true, taskId: true, endReason: true, since: true, until: true, params: true, limit: true } as const;

/** states: the states the action changes (C* to re-queue, AW and AE to cancel); counted up to limit. */
export const bulkCount = statement<TaskFilterParams & { states: TaskState[] }, { tasks: number }>({ ...filterParams, states: true });
export const bulkRequeue = statement<TaskFilterParams, { tasks: number }>(filterParams);
export const bulkCancel = statement<TaskFilterParams, { tasks: number }>(filterParams);
