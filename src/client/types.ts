export type TaskState = 'DR' | 'AW' | 'AE' | 'AC' | 'CS' | 'CF' | 'CC';

export const TASK_STATES: Record<TaskState, string> = {
  DR: 'Draft',
  AW: 'Waiting',
  AE: 'Executing',
  AC: 'Cancelling',
  CS: 'Completed',
  CF: 'Failed',
  CC: 'Cancelled',
};

/** A row of the task table. */
export interface Task {
  id: number;
  params: unknown;
  state_id: TaskState;
  priority: number;
  group_id: number;
  worker_id: number | null;
  error: string | null;
  command: string[];
  cwd: string | null;
  started: Date | null;
  created: Date;
  last_state_change: Date;
  next_start: Date | null;
  shed_period_id: string | null;
  shed_period_count: number | null;
  shed_clone: boolean;
  shed_parent_id: number | null;
  shed_cron: string | null;
  shed_tz: string;
  shed_anchor: Date | null;
  shed_skip_count: number;
  recover_policy: RecoverPolicy | null;
  finished: Date | null;
  exit_code: number | null;
  exit_signal: string | null;
  pid: number | null;
  node_name: string | null;
  output: string | null;
  lease_epoch: number | null;
  /** The number of the current or last run; 0 before the first. */
  attempt: number;
  /** A run that lasts longer is killed (CF, 'timeout'); null = the group's, else none. */
  timeout: unknown;
  /** Runs at most; null = the group's, else 1 (no retry). */
  max_attempts: number | null;
  backoff_base: unknown;
  backoff_cap: unknown;
  retry_on: EndReason[] | null;
  /** A waiting task is not claimed before this: a retry's backoff, or a delayed start. */
  run_after: Date | null;
  /** Why the latest run ended (set by whoever ended it); null while none has ended. */
  end_reason: EndReason | null;
  /**
   * While a process of run `attempt` may still be alive: the worker and lease term that run
   * it (whatever the state says: a row set to C* or re-queued meanwhile). Kept by pg-tasks.
   */
  live_worker_id: number | null;
  live_epoch: number | null;
  /** Tasks that must end CS before this one runs; if one ends CF or CC, this one ends CC ('dependency'). */
  depends_on: number[] | null;
  /** How many of depends_on have not ended CS (kept by pg-tasks): the task waits while it is above 0. */
  deps_left: number;
  /** A cloned schedule's slot while an earlier copy has not ended: allow, skip, queue, cancel_previous. */
  shed_overlap: OverlapPolicy;
  /** Tasks sharing a key run at most concurrency_limit.max_running at once (no row: 1), in any group. */
  concurrency_key: string | null;
}

export type EndReason =
  | 'completed' | 'exit_code' | 'signal' | 'spawn_error' | 'cancelled' | 'timeout'
  | 'worker_failed' | 'lost' | 'node_stopped' | 'dependency' | 'refused' | 'oom';

/** A row of task_run: one execution of a task. */
export interface TaskRun {
  task_id: number;
  attempt: number;
  worker_id: number;
  lease_epoch: number;
  node_name: string | null;
  pid: number | null;
  started: Date;
  /** started + the timeout in force when it was claimed; null = none. */
  deadline: Date | null;
  /** null while the run is live: its process may still be running. */
  finished: Date | null;
  exit_code: number | null;
  exit_signal: string | null;
  end_reason: EndReason | null;
  error: string | null;
  output: string | null;
  /** CPU time and peak memory of the process; null where they cannot be told (child_process). */
  cpu_user_ms: number | null;
  cpu_system_ms: number | null;
  max_rss_kb: number | null;
}

export interface AddTaskInput extends RunSettings {
  command: string[];
  groupId?: number;
  priority?: number;
  /** Insert in DR instead of AW. */
  draft?: boolean;
  cwd?: string | null;
  params?: unknown;
  /** Only this worker may run it. */
  workerId?: number | null;
  /** If the worker running it fails: fail it, or queue it again. Default: the group's, else fail. */
  recoverPolicy?: RecoverPolicy | null;
  /** Run only after these tasks have ended CS; if one ends CF or CC, this one ends CC ('dependency'). */
  dependsOn?: number[] | null;
  /** At most the key's limit (concurrency_limit; default 1) of the tasks with this key run at once, cluster-wide. */
  concurrencyKey?: string | null;
}

/** A limit in force (listLimits): a group's max_running or a key's, with what runs and waits now. */
export interface Limit {
  kind: 'group' | 'key';
  /** The group id (as text) or the key. */
  name: string;
  max_running: number;
  running: number;
  waiting: number;
}

/** A rule of task_allowlist (migration 14), with its group's commands setting. */
export interface AllowRule {
  id: number;
  group_id: number;
  /** An absolute path, or a directory ending in '/' (every program under it). */
  program: string;
  /** A regular expression every argument must match; null: any arguments. */
  args_pattern: string | null;
  note: string | null;
  /** 'allowlist': the group runs only what its rules allow; 'any': only nodes with --commands allowlist check them. */
  commands: 'any' | 'allowlist';
}

/** How a task's runs are bounded and retried; each null = the group's setting, else the default. */
export interface RunSettings {
  /** Milliseconds a run may last before its process group is killed (CF, 'timeout'). Default: none. */
  timeoutMs?: number | null;
  /** Runs at most (1 = no retry). Default: 1. */
  maxAttempts?: number | null;
  /** Retry backoff: base × 2^(attempt − 1), at most cap, ±25 % jitter. Default: 1 s and 10 min. */
  backoffBaseMs?: number | null;
  backoffCapMs?: number | null;
  /** End reasons that retry. Default: exit_code, signal, timeout, worker_failed, lost. */
  retryOn?: EndReason[] | null;
}

export type RecoverPolicy = 'fail' | 'requeue';

export interface ListOptions {
  state?: TaskState;
  groupId?: number;
  limit?: number;
}

export type PeriodId = 'SEC' | 'MIN' | 'HOU' | 'DAY' | 'WEE' | 'MON';

/** A schedule: every period, or on a cron expression, or once (neither). */
export interface ScheduleInput {
  /** First slot (or the one-shot instant). Defaults to now for a period, to the first cron slot for cron. */
  at?: Date;
  every?: { periodId: PeriodId; count: number };
  cron?: string;
  /** IANA zone for DAY/WEE/MON periods and cron fields. Default UTC. */
  tz?: string;
  /** Queue a copy at each slot instead of re-queuing the task itself. */
  clone?: boolean;
  /** Set on the task (and so on its clones) where given; left as they are where not. */
  runs?: RunSettings;
  /** With clone: what a slot does while an earlier copy has not ended. Left as it is where not given (default allow). */
  overlap?: OverlapPolicy;
}

/** See migration 8: allow (a copy each slot), skip, queue (one copy waits), cancel_previous. */
export type OverlapPolicy = 'allow' | 'skip' | 'queue' | 'cancel_previous';

/** The worker table's columns that every reader of a worker sees. */
export interface WorkerColumns {
  id: number;
  group_id: number;
  node_name: string | null;
  host: string | null;
  pid: number | null;
  task_count: number;
  max_task_count: number | null;
  stop: number;
  active: boolean;
  locked_until: Date | null;
  lease_epoch: number;
  lease_taken: Date | null;
}

/** A row of the worker table, with its status as seen from the database. */
export interface Worker extends WorkerColumns {
  /** The node waiting to take this worker over, if one was seen within a lease. */
  standby: string | null;
  /** A term taken over before its lease ended waits for this moment to have its tasks recovered; null when none waits. */
  recovers_at: Date | null;
  /** ok; stopping (stop code set); late (lease lapsed, not yet recoverable); failed; standby (no holder, a standby waiting); stopped. */
  status: 'ok' | 'stopping' | 'late' | 'failed' | 'standby' | 'stopped';
}
