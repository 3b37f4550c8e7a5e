// The typed statements of task.sql: named parameters in, typed rows out.
import type { DependsRule, EndReason, RecoverPolicy, Task, TaskRun, TaskState } from '../../client/types.js';
import { columns, mappedStatement, statement } from '../../db/statement.js';
import type { ClaimReplyRow } from '../../node/claim/claimer.js';
import type { TaskOutcome } from '../../node/runs/result-writer.js';

/** A run, as the statements that write about it name it. */
export interface RunKey {
  id: number;
  attempt: number;
}

export interface TermParams {
  workerId: number;
  epoch: number;
}

export interface ClaimParams {
  groupId: number;
  workerId: number;
  freeSlots: number;
  epoch: number;
  nodeName: string;
  /** Check every command against the allowlist (the node's --commands allowlist). */
  checkCommands: boolean;
}

export const claimTasks = statement<ClaimParams, ClaimReplyRow>({ groupId: true, workerId: true, freeSlots: true, epoch: true, nodeName: true, checkCommands: true }, { prepared: true });

export const recordPids = mappedStatement<TermParams & { runs: Array<RunKey & { pid: number }> }, TermParams & {
  taskIds: number[];
  attempts: number[];
  pids: number[];
}>({ workerId: true, epoch: true, taskIds: true, attempts: true, pids: true }, ({ workerId, epoch, runs }) => ({
  workerId,
  epoch,
  ...columns(runs, { taskIds: (r) => r.id, attempts: (r) => r.attempt, pids: (r) => r.pid }),
}));

/** finishRuns: one array per column of the runs' ends, in the order unnest() reads them. */
export interface RunEndColumns {
  taskIds: number[];
  attempts: number[];
  stateIds: Array<'CS' | 'CF' | 'CC'>;
  endReasons: EndReason[];
  exitCodes: Array<number | null>;
  exitSignals: Array<string | null>;
  errors: Array<string | null>;
  outputs: string[];
  pids: Array<number | null>;
  cpuUserMs: Array<number | null>;
  cpuSystemMs: Array<number | null>;
  maxRssKb: Array<number | null>;
  timeoutMs: Array<number | null>;
  pinned: boolean[];
  orphansKilled: Array<number | null>;
  memoryPeak: Array<number | null>;
  /** What the run said on fd 3: its last progress and message, its result (JSON text), its bad lines. */
  progress: Array<number | null>;
  progressMessages: Array<string | null>;
  results: Array<string | null>;
  controlErrors: Array<number | null>;
}

const runEndParams = {
  workerId: true, epoch: true, nodeName: true, taskIds: true, attempts: true, stateIds: true, endReasons: true, exitCodes: true,
  exitSignals: true, errors: true, outputs: true, pids: true, cpuUserMs: true, cpuSystemMs: true, maxRssKb: true, timeoutMs: true, pinned: true, orphansKilled: true, memoryPeak: true,
  progress: true, progressMessages: true, results: true, controlErrors: true,
} as const;

/** The columns of a batch of run ends, in the order unnest() reads them. */
function runEndColumns(runs: TaskOutcome[]): RunEndColumns {
  return columns(runs, {
    taskIds: (o) => o.id,
    attempts: (o) => o.attempt,
    stateIds: (o) => o.state,
    endReasons: (o) => o.endReason,
    exitCodes: (o) => o.exitCode,
    exitSignals: (o) => o.signal,
    errors: (o) => o.error,
    outputs: (o) => o.output,
    pids: (o) => o.pid,
    cpuUserMs: (o) => o.usage?.userMs ?? null,
    cpuSystemMs: (o) => o.usage?.systemMs ?? null,
    maxRssKb: (o) => o.usage?.maxRssKb ?? null,
    timeoutMs: (o) => o.timeoutMs,
    pinned: (o) => o.pinned,
    orphansKilled: (o) => o.orphansKilled ?? null,
    memoryPeak: (o) => o.memoryPeakBytes ?? null,
    progress: (o) => o.control?.progress ?? null,
    progressMessages: (o) => o.control?.message ?? null,
    results: (o) => o.control?.result ?? null,
    controlErrors: (o) => o.control?.errors ?? null,
  });
}

export const finishRuns = mappedStatement<TermParams & { nodeName: string; runs: TaskOutcome[] }, TermParams & { nodeName: string } & RunEndColumns, RunKey>(
  runEndParams,
  ({ workerId, epoch, nodeName, runs }) => ({ workerId, epoch, nodeName, ...runEndColumns(runs) }),
);

/** The turnover's reply: the claim's rows (at least one, of nulls when none), each naming the ends written ("id:attempt"). */
export type TurnoverRow = ClaimReplyRow | ({ [K in keyof ClaimReplyRow]: null } & { wake_ms: number | null });

export const turnover = mappedStatement<
  ClaimParams & { runs: TaskOutcome[] },
  ClaimParams & RunEndColumns,
  TurnoverRow & { ended: string[] }
>(
  { ...runEndParams, groupId: true, freeSlots: true, checkCommands: true },
  ({ runs, ...claim }) => ({ ...claim, ...runEndColumns(runs) }),
  { prepared: true },
);

export const cancelRequests = statement<TermParams, RunKey>({ workerId: true, epoch: true });

/** delay_ms: until the earliest delayed task is due (negative: it is); null when there is none. */
export const nextDelayedDue = statement<{ groupId: number }, { delay_ms: number | null }>({ groupId: true });

export const releaseDelayed = statement<{ groupId: number }>({ groupId: true });

export const taskRuns = statement<{ taskId: number }, TaskRun>({ taskId: true });

export interface InsertTaskParams {
  command: string[];
  groupId: number;
  priority: number;
  stateId: 'DR' | 'AW';
  cwd: string | null;
  /** The params as JSON text. */
  params: string | null;
  workerId: number | null;
  recoverPolicy: RecoverPolicy | null;
  timeoutMs: number | null;
  maxAttempts: number | null;
  backoffBaseMs: number | null;
  backoffCapMs: number | null;
  retryOn: EndReason[] | null;
  dependsOn: number[] | null;
  concurrencyKey: string | null;
  /** At most one unended task per key (migration 24). */
  uniqueKey: string | null;
  /** Not claimed before this (null: at once). */
  runAfter: Date | null;
  /** null: all_success, the column's default. */
  dependsRule: DependsRule | null;
}

const insertTaskParams = {
  command: true, groupId: true, priority: true, stateId: true, cwd: true, params: true, workerId: true, recoverPolicy: true,
  timeoutMs: true, maxAttempts: true, backoffBaseMs: true, backoffCapMs: true, retryOn: true, dependsOn: true, concurrencyKey: true,
  uniqueKey: true, runAfter: true, dependsRule: true,
} as const;

export const insertTask = statement<InsertTaskParams, Task>(insertTaskParams);
export const insertTaskOrSkip = statement<InsertTaskParams, Task>(insertTaskParams);
export const insertTaskOrReplace = statement<InsertTaskParams, Task>(insertTaskParams);
/** The id of the unended task holding a key, whoever owns it; null: none now. */
export const uniqueKeyHolder = statement<{ uniqueKey: string }, { id: number | null }>({ uniqueKey: true });

export type TaskStateRow = Pick<Task, 'id' | 'state_id'>;

export const prerequisites = statement<{ taskId: number }, TaskStateRow>({ taskId: true });
export const queueTask = statement<{ taskId: number }, Task>({ taskId: true });
export const cancelTask = statement<{ taskId: number }, Task>({ taskId: true });
export const getTask = statement<{ taskId: number }, Task>({ taskId: true });
export const getTasks = statement<{ taskIds: number[] }, Task>({ taskIds: true });

export const listTasks = statement<{ stateId: TaskState | null; groupId: number | null; limit: number }, Task>({ stateId: true, groupId: true, limit: true });

export const termRuns = statement<TermParams, RunKey>({ workerId: true, epoch: true });
