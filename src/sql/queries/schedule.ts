// The typed statements of schedule.sql: the scheduler's fires and the client's schedules.
import type { EndReason, MissedPolicy, OverlapPolicy, PeriodId, Task } from '../../client/types.js';
import { columns, mappedStatement, statement } from '../../db/statement.js';
import type { UpcomingRow } from '../../node/timers/scheduler.js';

/** null: the database's now(); an instant: tests move time without sleeping. */
export interface GroupAtParams {
  groupId: number;
  now: Date | null;
  limit: number;
}

export interface TaskIdsParams {
  taskIds: number[];
}

/** A due schedule, locked (dueSchedules). */
export interface DueRow {
  id: number;
  state_id: string;
  next_start: Date | null;
  shed_period_id: PeriodId | null;
  shed_period_count: number | null;
  shed_clone: boolean;
  shed_cron: string | null;
  shed_tz: string;
  shed_anchor: Date | null;
  shed_overlap: OverlapPolicy;
  shed_missed: MissedPolicy;
  shed_catchup_max: number;
  /** Copies of this schedule not ended yet (AW, AE, AC, or a process still alive); 0 unless it clones with a policy. */
  active_copies: number;
  /** A copy waiting in DR for those to end (the queue and cancel_previous policies). */
  waiting_copy: boolean;
  now: Date;
}

export const upcomingSchedules = statement<GroupAtParams, UpcomingRow>({ groupId: true, now: true, limit: true });

export const fireSlots = statement<{
  groupId: number;
  taskIds: number[];
  /** Each row's next_start as read (next_start_exact): a row that changed since is not fired. */
  readSlots: string[];
  /** The slot after it (null: a one-shot schedule). */
  nextSlots: Array<Date | null>;
  now: Date | null;
}, { id: number; action: 'requeued' | 'cloned' | 'skipped' }>({ groupId: true, taskIds: true, readSlots: true, nextSlots: true, now: true });

export const dueSchedules = statement<GroupAtParams, DueRow>({ groupId: true, now: true, limit: true });

export const markAdvancing = statement({});

/** A copy of a cloned schedule to insert, queued (AW) or waiting (DR) for earlier copies to end. */
export interface NewCopy {
  id: number;
  state: 'AW' | 'DR';
  /** The slot it stands for (shed_slot, PG_TASKS_SLOT). */
  slot: Date;
}

export const cloneScheduled = mappedStatement<{ copies: NewCopy[] }, TaskIdsParams & { states: string[]; slots: Date[] }>({ taskIds: true, states: true, slots: true }, ({ copies }) =>
  columns(copies, { taskIds: (c) => c.id, states: (c) => c.state, slots: (c) => c.slot }));

/** A clone schedule's key template: each copy's unique_key, {{slot}} replaced by its slot. */
export const setCloneUniqueKey = statement<{ taskId: number; uniqueKey: string | null }, Task>({ taskId: true, uniqueKey: true });

export const queueWaitingCopies = statement<TaskIdsParams>({ taskIds: true });

export const cancelCopies = statement<TaskIdsParams>({ taskIds: true });

/** What a fire does to one schedule. */
export interface Advance {
  id: number;
  nextStart: Date | null;
  requeue: boolean;
  /** Slots skipped, added to shed_skip_count. */
  skipped: number;
  /** Switch the schedule off with this error (null: keep it). */
  disabled: string | null;
}

export const advanceSchedules = mappedStatement<{ advances: Advance[] }, TaskIdsParams & {
  nextStarts: Array<Date | null>;
  requeues: boolean[];
  skips: number[];
  disabled: Array<string | null>;
}>({ taskIds: true, nextStarts: true, requeues: true, skips: true, disabled: true }, ({ advances }) =>
  columns(advances, { taskIds: (a) => a.id, nextStarts: (a) => a.nextStart, requeues: (a) => a.requeue, skips: (a) => a.skipped, disabled: (a) => a.disabled }));

export const setSchedule = statement<{
  taskId: number;
  nextStart: Date;
  periodId: PeriodId | null;
  periodCount: number | null;
  cron: string | null;
  tz: string;
  clone: boolean;
  /** The run settings and the overlap policy: null leaves each as it is. */
  timeoutMs: number | null;
  maxAttempts: number | null;
  backoffBaseMs: number | null;
  backoffCapMs: number | null;
  retryOn: EndReason[] | null;
  overlap: OverlapPolicy | null;
  missed: MissedPolicy | null;
  catchupMax: number | null;
}, Task>({
  taskId: true, nextStart: true, periodId: true, periodCount: true, cron: true, tz: true, clone: true,
  timeoutMs: true, maxAttempts: true, backoffBaseMs: true, backoffCapMs: true, retryOn: true, overlap: true, missed: true, catchupMax: true,
});

export const clearSchedule = statement<{ taskId: number }, Task>({ taskId: true });

export const listScheduled = statement<{ groupId: number | null; limit: number }, Task>({ groupId: true, limit: true });
