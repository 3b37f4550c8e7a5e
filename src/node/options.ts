import os from 'node:os';
import type { Logger } from 'pino';
import type { SpawnerMode } from './process/spawner.js';
import type { TaskExecutor } from './process/task-process.js';

export type ShutdownMode = 'cancel' | 'drain';

/** 'allowlist': every task is checked against its group's task_allowlist before it spawns. */
export type CommandsMode = 'any' | 'allowlist';

export interface NodeOptions {
  /** Defaults to DATABASE_URL, then the PG* variables. */
  connectionString?: string | undefined;
  /**
   * For what needs a session of its own: LISTEN, the worker lock session and migrations.
   * Defaults to PGTASKS_SESSION_URL, then the connection string. When it differs from the
   * connection string (a pooler there), the pool sends no named prepared statement.
   */
  sessionUrl?: string | undefined;
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
   * For benches and tests only (no CLI flag, no environment variable): run each task with this
   * function in the node's process instead of starting a process (see TaskExecutor). The node
   * then starts no spawn helper and no reaper; a run has no pid. bench/fleet.ts uses it.
   */
  executor?: TaskExecutor;
  /**
   * 'supervisor': each run has a supervisor that owns every process it starts, even one in a
   * session of its own, and kills them all when the run ends (the spawn helper only; with
   * child_process runs are process groups). 'auto': the same, and where the node's cgroup v2
   * is delegated to it with the memory or cpu controller, a run with memory_max or cpu_max
   * also gets a cgroup of its own (memory.max, cpu.max, 'oom', memory.peak). 'cgroup': every
   * run gets one where delegated, controllers or not. 'group': the run is its leader's process
   * group.
   */
  containment: ContainmentMode;
  /**
   * Milliseconds the other processes of a run may outlive its leader (a daemon it started)
   * before they are killed; the run ends when the last is gone. 0: killed as the leader exits.
   */
  orphanGraceMs: number;
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
  /**
   * Export an OpenTelemetry span per run (docs/tracing.md). Undefined: on when the environment
   * names an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).
   */
  otel?: boolean;
  /** Apply migrations at start (default true). */
  migrate: boolean;
  logger: Logger;
}

export type ContainmentMode = 'auto' | 'supervisor' | 'cgroup' | 'group';

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
  containment: 'auto' as ContainmentMode,
  orphanGraceMs: 0,
  retentionEveryMs: 10 * 60_000,
  migrate: true,
  commands: 'any' as CommandsMode,
};

export function defaultNodeName(workerId: number): string {
  return `${os.hostname()}:${process.pid}:w${workerId}`;
}
