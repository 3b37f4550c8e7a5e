import os from 'node:os';
import type { Logger } from 'pino';
import type { SpawnerMode } from './process/spawner.js';

export type ShutdownMode = 'cancel' | 'drain';

/** 'allowlist': every task is checked against its group's task_allowlist before it spawns. */
export type CommandsMode = 'any' | 'allowlist';

export interface NodeOptions {
  /** Defaults to DATABASE_URL, then the PG* variables. */
  connectionString?: string | undefined;
  /** Defaults to PGTASKS_SCHEMA, then long_task. */
  schema?: string | undefined;
  workerId: number;
  groupId: number;
  /** Most processes running at once. */
  maxTasks: number;
  nodeName: string;
  /** Where a task's relative cwd resolves, and the cwd of a task without one. */
  rootDir: string;
  /**
   * Lease length in seconds, renewed every half of it. 20 s means 6 renewals a minute (an
   * idle node's only statements) and a failed worker taken over after about 20 s + the
   * recovery delay.
   */
  leaseSeconds: number;
  /** The node stops trusting its lease this many seconds before it ends (fencing). */
  marginSeconds: number;
  /** Seconds a failed worker's lease must have lapsed before it is recovered. */
  recoveryDelaySeconds: number;
  /** Milliseconds between SIGTERM and SIGKILL when a task is ended. */
  killGraceMs: number;
  /** Bytes of each process's output kept in task.output. */
  outputLimit: number;
  /**
   * Bytes of each run's output kept in task_output, written while it runs (live output; the
   * newest are kept): 0 writes none.
   */
  outputKeep: number;
  /** On SIGTERM/SIGINT: cancel the running tasks, or wait for them. */
  shutdown: ShutdownMode;
  /** What starts task processes: the spawn helper, child_process, or the helper when it builds. */
  spawner: SpawnerMode;
  /**
   * How often the node tries to start a retention pass (one node at a time runs it,
   * cluster-wide; see docs/retention): 0 never.
   */
  retentionEveryMs: number;
  /**
   * 'any': tasks of groups whose commands = 'allowlist' are checked, others run as written.
   * 'allowlist': every task is checked, whatever its group says (see docs/security.md).
   */
  commands: CommandsMode;
  /** Names of the node's environment variables passed to every task (--pass-env). */
  passEnv?: string[];
  /** Variables set for every task (--env NAME=VALUE). */
  env?: Record<string, string>;
  /** Users tasks may run as (--allow-run-as), by name or id; the node must run as root. */
  allowRunAs?: string[];
  /** Root may be asked for as a run_as (--allow-run-as-root). */
  allowRunAsRoot?: boolean;
  /** Apply migrations at start (default true). */
  migrate: boolean;
  logger: Logger;
}

export const NODE_DEFAULTS = {
  groupId: 0,
  maxTasks: 10,
  leaseSeconds: 20,
  marginSeconds: 3,
  recoveryDelaySeconds: 2,
  killGraceMs: 5_000,
  outputLimit: 64 * 1024,
  outputKeep: 1024 * 1024,
  shutdown: 'cancel' as ShutdownMode,
  spawner: 'auto' as SpawnerMode,
  retentionEveryMs: 10 * 60_000,
  migrate: true,
  commands: 'any' as CommandsMode,
};

export function defaultNodeName(workerId: number): string {
  return `${os.hostname()}:${process.pid}:w${workerId}`;
}
