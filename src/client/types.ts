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
  /** How many of depends_on it still waits for, by depends_rule (kept by pg-tasks): the task waits while it is above 0. */
  deps_left: number;
  /** When it runs after depends_on: all_success (the default), all_done, any_failed. */
  depends_rule: DependsRule;
  /** A cloned schedule's slot while an earlier copy has not ended: allow, skip, queue, cancel_previous. */
  shed_overlap: OverlapPolicy;
  shed_missed: MissedPolicy;
  shed_catchup_max: number;
  /** A schedule's copy: the slot it stands for (PG_TASKS_SLOT); null on other tasks. */
  shed_slot: Date | null;
  /** Tasks sharing a key run at most concurrency_limit.max_running at once (no row: 1), in any group. */
  concurrency_key: string | null;
  /** At most one unended task (DR, AW, AE, AC) per key; free again once it ends (docs/unique.md). */
  unique_key: string | null;
  /** On a clone schedule: each copy's unique_key, with {{slot}} replaced by the slot's time (UTC). */
  shed_unique_key: string | null;
  /**
   * The role that owns it: the one that inserted it, unless an operator gave it to another.
   * null: written before owners existed (seen by operators, admins, readers and nodes only).
   */
  owner: string | null;
  /** Claims of it whose reply was lost (kept by pg-tasks): runs that never started, not counted toward max_attempts. */
  lost_claims: number;
  /** Whether its last claim took it as pinned to its worker (a lost claim's re-queue keeps that); null: never claimed since version 22. */
  claim_pinned: boolean | null;
  /** The live run's last progress, 0..1, and status line, from fd 3 (docs/control.md); cleared on entering AW. */
  progress: number | null;
  progress_message: string | null;
  /** What the latest run reported as {"result": …} on fd 3; cleared on entering AW. */
  result: unknown;
  /** A run silent on fd 3 this long is killed (CF 'heartbeat'); null = the group's, else none. */
  heartbeat_timeout: unknown;
}

export type EndReason =
  | 'completed' | 'exit_code' | 'signal' | 'spawn_error' | 'cancelled' | 'timeout'
  | 'worker_failed' | 'lost' | 'node_stopped' | 'dependency' | 'refused' | 'oom' | 'result_rejected'
  /** A claim whose reply never reached its node: no process started, not an attempt (task_run only; the task is queued again). */
  | 'lost_claim'
  /** Silent on fd 3 for its heartbeat_timeout (docs/control.md): killed like a timeout. */
  | 'heartbeat';

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
  /** memory.peak of the run's cgroup, in bytes; null without one (docs/lifecycle.md). */
  memory_peak: number | null;
  /** Processes its supervisor had to kill that had left the leader's group or outlived it; null: no supervisor. */
  orphans_killed: number | null;
  /** Its last progress and message, its result, and the lines on fd 3 it could not use (docs/control.md). */
  progress: number | null;
  progress_message: string | null;
  result: unknown;
  control_errors: number | null;
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
  /** When it runs after dependsOn (default all_success): all_done, whatever they end; any_failed, when one fails. */
  dependsRule?: DependsRule | null;
  /** At most the key's limit (concurrency_limit; default 1) of the tasks with this key run at once, cluster-wide. */
  concurrencyKey?: string | null;
  /** At most one unended task per key (docs/unique.md); what a held key does is onDuplicate. */
  uniqueKey?: string | null;
  /**
   * When an unended task holds uniqueKey: 'error' (the default) throws a UniqueKeyHeldError
   * naming it; 'skip' returns it, unchanged; 'replace' gives it this task's params, priority
   * and runAfter if it waits (DR, AW) and throws if it executes (AE, AC).
   */
  onDuplicate?: OnDuplicate;
  /** Not claimed before this time. Default: at once. */
  runAfter?: Date | null;
}

export type OnDuplicate = 'error' | 'skip' | 'replace';

/** A limit in force (listLimits): a group's max_running or a key's, with what runs and waits now. */
export interface Limit {
  kind: 'group' | 'key';
  /** The group id (as text) or the key. */
  name: string;
  max_running: number;
  /** A key's rate (migration 27): at most max_starts starts per period_seconds; null: none (and always for a group). */
  max_starts: number | null;
  period_seconds: number | null;
  running: number;
  waiting: number;
}

/** A rule of task_allowlist (migration 14), with its group's commands setting. */
export interface AllowRule {
  id: number;
  group_id: number;
  /** An absolute path, or a directory ending in '/' (every program under it). */
  program: string;
  /**
   * A regular expression every argument must match (with args_patterns: every argument past
   * them); null: any arguments (with args_patterns: none past them).
   */
  args_pattern: string | null;
  /** One regular expression per position: element i for argument i; null: none. */
  args_patterns: string[] | null;
  /** Whether its arguments may have '..' segments (refused otherwise). */
  allow_dotdot: boolean;
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
  /** End reasons that retry. Default: exit_code, signal, timeout, worker_failed, lost, heartbeat. */
  retryOn?: EndReason[] | null;
}

export type RecoverPolicy = 'fail' | 'requeue';

/**
 * When a task with depends_on runs: all_success once every one ended CS (one that ends CF or
 * CC cancels it); all_done once every one ended, however; any_failed as soon as one fails
 * (CF, deleted, or cancelled for a failure above it), and it ends CC when none does.
 */
export type DependsRule = 'all_success' | 'all_done' | 'any_failed';

/** When a task runs, by its depends_rule, in words (pg-tasks show, the dashboard). */
export const DEPENDS_RULE_WORDS: Record<DependsRule, string> = {
  all_success: 'every prerequisite ends CS',
  all_done: 'every prerequisite has ended, however',
  any_failed: 'any prerequisite fails',
};

/** What a waiting task's deps_left counts, by its depends_rule. */
export const DEPS_LEFT_WORDS: Record<DependsRule, string> = { all_success: 'not yet CS', all_done: 'not yet ended', any_failed: 'not yet ended, none failed' };

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
  /** With clone: each copy's unique_key, {{slot}} replaced by its slot (UTC); a copy whose key is held is not made. Left as it is where not given. */
  uniqueKey?: string;
  /** What a fire does with missed slots: skip, once (the default) or all (clones). Left as it is where not given. */
  missed?: MissedPolicy;
  /** With missed all: copies per fire at most, 1 to 10000 (default 100). Left as it is where not given. */
  catchupMax?: number;
}

/** See migration 8: allow (a copy each slot), skip, queue (one copy waits), cancel_previous. */
export type OverlapPolicy = 'allow' | 'skip' | 'queue' | 'cancel_previous';

/** See migration 26: skip (no run for missed slots), once (one run, the seed's rule), all (a copy per slot). */
export type MissedPolicy = 'skip' | 'once' | 'all';

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
  /**
   * ok; paused, draining, cancelling (its stop code 1, 2, 3); late (lease lapsed, not yet
   * recoverable); failed; standby (no holder, a standby waiting); stopped.
   */
  status: 'ok' | 'paused' | 'draining' | 'cancelling' | 'late' | 'failed' | 'standby' | 'stopped';
}
