// The typed statements of worker.sql: leases, recovery and the lock session.
import type { Worker, WorkerColumns } from '../../client/types.js';
import { statement } from '../../db/statement.js';
import type { WatchTimes } from '../../node/recovery/recovery-watch.js';
import type { TermParams } from './task.js';

/** A row of the worker table as stored (readWorker's SELECT *). */
export interface WorkerRecord extends WorkerColumns {
  standby_node: string | null;
  standby_seen: Date | null;
  old_epoch: number | null;
  old_until: Date | null;
  lock_pid: number | null;
  /** The highest timeline the holding node has seen (migration 23); null: not recorded. */
  timeline: number | null;
}

export interface WorkerParams {
  workerId: number;
}

/** null: the database's now(); an instant: tests move time without sleeping. */
export interface NowParams {
  now: Date | null;
}

export const ensureWorker = statement<WorkerParams & { groupId: number }>({ workerId: true, groupId: true });

export const lockWorker = statement<WorkerParams & NowParams & { recoveryDelaySeconds: number }, {
  id: number;
  active: boolean;
  stop: number;
  node_name: string | null;
  lease_epoch: number;
  locked_until: Date | null;
  recoverable_in_ms: number | null;
  held: boolean;
  failed: boolean;
  lock_gone: boolean;
}>({ workerId: true, recoveryDelaySeconds: true, now: true });

export const markRecovering = statement({});

/** epoch: the last of the worker's old terms recovered (every term up to it is). */
export const recoverWorker = statement<TermParams>({ workerId: true, epoch: true });

export const endWorkerRuns = statement<TermParams>({ workerId: true, epoch: true });

export const takeLease = statement<WorkerParams & NowParams & {
  leaseSeconds: number;
  nodeName: string;
  host: string;
  pid: number;
  groupId: number;
  maxTasks: number;
  /** The backend holding the worker's advisory lock for this node, or null. */
  lockPid: number | null;
  recoveryDelaySeconds: number;
  /** The highest timeline this node has seen (null: unknown, the row keeps its value). */
  timeline: number | null;
}, { lease_epoch: number; stop: number; old_epoch: number | null; old_due_in_ms: number | null }>({
  workerId: true, leaseSeconds: true, now: true, nodeName: true, host: true, pid: true, groupId: true, maxTasks: true, lockPid: true, recoveryDelaySeconds: true,
  timeline: true,
});

export const renewLease = statement<TermParams & NowParams & {
  leaseSeconds: number;
  taskCount: number;
  groupId: number;
  recoveryDelaySeconds: number;
  channel: string;
  /** The ping's sequence number (see ListenCheck). */
  ping: number;
  lockPid: number | null;
  /** As takeLease's. */
  timeline: number | null;
}, {
  stop: number;
  has_waiting: boolean;
  has_cancels: boolean;
  watch: Array<{ id: number; lapse: number | null; old: number | null }>;
  /** bigints in json arrive as numbers or strings: the int8 parser covers columns only. */
  owned: Array<{ id: number | string; attempt: number }>;
  pinged: boolean;
}>({
  workerId: true, epoch: true, leaseSeconds: true, taskCount: true, now: true, groupId: true, recoveryDelaySeconds: true, channel: true, ping: true, lockPid: true,
  timeline: true,
});

export const failOrphanRuns = statement<TermParams>({ workerId: true, epoch: true });

/** clearStop: the node fulfilled a stop request, so the stop code goes back to 0. */
export const releaseLease = statement<TermParams & { clearStop: boolean }>({ workerId: true, epoch: true, clearStop: true });

export const readWorker = statement<WorkerParams, WorkerRecord>({ workerId: true });

export const listWorkers = statement<{ recoveryDelaySeconds: number; leaseSeconds: number }, Worker>({ recoveryDelaySeconds: true, leaseSeconds: true });

export const setWorkerStop = statement<WorkerParams & { stop: number }, Worker>({ workerId: true, stop: true });

/** selfId: this node's own worker (it takes that one back through its lease, not here). */
export const lockRecoverable = statement<WorkerParams & NowParams & { recoveryDelaySeconds: number; selfId: number }, {
  id: number;
  node_name: string | null;
  lease_epoch: number;
  lapsed: boolean;
  lapse_in_ms: number | null;
  old_in_ms: number | null;
}>({ workerId: true, recoveryDelaySeconds: true, now: true, selfId: true });

export const endLapsedTerm = statement<WorkerParams>({ workerId: true });

export const dueOldTerms = statement<WorkerParams & NowParams & { recoveryDelaySeconds: number }, { old_epoch: number }>({ workerId: true, recoveryDelaySeconds: true, now: true });

export const clearOldTerms = statement<WorkerParams>({ workerId: true });

/** workerId null: every worker that may need recovering. */
export const watchWorkers = statement<{ selfId: number; recoveryDelaySeconds: number; workerId: number | null }, { id: number } & WatchTimes>({
  selfId: true, recoveryDelaySeconds: true, workerId: true,
});

export const setLockPid = statement<TermParams & { lockPid: number | null }>({ workerId: true, epoch: true, lockPid: true });

export const lockSession = statement<WorkerParams>({ workerId: true });
export const lockSessionStart = statement<Record<never, never>, { pid: number; settings: number }>({});
/** See ServerGuard. */
export const serverIdentity = statement<Record<never, never>, { system_id: string; timeline: number }>({});
export const backendPid = statement<Record<never, never>, { pid: number }>({});
export const unlockSession = statement<WorkerParams>({ workerId: true });
export const awaitLockRelease = statement<WorkerParams>({ workerId: true });
export const releaseShared = statement<WorkerParams>({ workerId: true });

export const markStandby = statement<WorkerParams & { nodeName: string }>({ workerId: true, nodeName: true });
export const standbySeen = statement<WorkerParams & { nodeName: string; recoveryDelaySeconds: number }, { recoverable_in_ms: number | null }>({
  workerId: true, nodeName: true, recoveryDelaySeconds: true,
});
