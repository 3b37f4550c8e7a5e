import { spawn, type ChildProcess } from 'node:child_process';
import { stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { OutputTail } from './output-tail.js';
import { killProcessGroup, waitProcessGroupGone } from './process-group.js';
import { NO_LIMITS, describeLimits, hasLimits, prlimitArgv, rlimits, type TaskLimits } from './limits.js';
import { RunAs, type RunAsUser } from './run-as.js';
import type { ResourceUsage, SpawnStep, Spawner } from './spawner.js';
import { TaskEnv, type GroupEnv } from './task-env.js';

export interface TaskSpec {
  id: number;
  command: string[];
  cwd: string | null;
  params: unknown;
  /** The run's number (PG_TASKS_ATTEMPT); 0 when not known. */
  attempt?: number;
  /** The effective run_as (the task's, else its group's); null: the node's own user. */
  runAs?: string | null;
  /** The group's pass_env and env, as claimed. */
  groupEnv?: GroupEnv | null;
  limits?: TaskLimits;
}

/** What the node allows and passes: its environment rules and its run_as rules. */
export interface SpawnPolicy {
  env: TaskEnv;
  runAs: RunAs;
}

let defaultPolicy: SpawnPolicy | null = null;

export interface ProcessOptions {
  /** Where a relative or missing cwd resolves. */
  rootDir: string;
  /** Bytes of output kept (stdout and stderr interleaved). */
  outputLimit: number;
  /** Also given every chunk of output as it is read (live output). */
  sink?: ((chunk: Buffer) => void) | null;
  /** The node's; by default a clean environment with nothing passed, and no run_as allowed. */
  policy?: SpawnPolicy;
}

export interface ProcessResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all. */
  spawnError: string | null;
  /** Set when the node would not start it (a run_as it cannot or may not honour). */
  refused?: string;
  output: string;
  /** The node ended it (cancel, stop code, shutdown, fencing). */
  killed: boolean;
  /** Set when the process's end could not be observed (the spawn helper died). */
  lost?: string;
  /** What the leader used, where it can be told (the spawn helper's wait4; not child_process). */
  usage?: ResourceUsage;
}

/** The argv of a task: every element that is exactly %TASK becomes the task id. */
export function taskArgv(task: TaskSpec): string[] {
  return task.command.map((arg) => (arg === '%TASK' ? String(task.id) : arg));
}

export function taskCwd(task: TaskSpec, rootDir: string): string {
  return task.cwd ? path.resolve(rootDir, task.cwd) : rootDir;
}

/**
 * One task's OS process. It runs in its own process group (setsid), so that ending the task
 * ends everything it started, and a Ctrl-C at the node's terminal does not reach it. It is
 * started by the spawn helper when the node has one, else by child_process.spawn.
 */
export class TaskProcess {
  /** Known once started: synchronously with child_process, a moment later with the helper. */
  pid: number | undefined;
  /** The pid (= process group id), or undefined when the process could not be started. */
  readonly started: Promise<number | undefined>;
  readonly done: Promise<ProcessResult>;
  private killed = false;
  private exited = false;
  private readonly tail: OutputTail;

  constructor(
    readonly task: TaskSpec,
    private readonly options: ProcessOptions,
    spawner?: Spawner | null,
  ) {
    const argv = taskArgv(task);
    const cwd = taskCwd(task, options.rootDir);
    this.tail = new OutputTail(options.outputLimit);
    let resolveStarted!: (pid: number | undefined) => void;
    this.started = new Promise((resolve) => (resolveStarted = resolve));
    let resolveDone!: (result: ProcessResult) => void;
    this.done = new Promise((resolve) => (resolveDone = resolve));
    this.resolveStarted = resolveStarted;
    this.resolveDone = resolveDone;
    const policy = options.policy ?? (defaultPolicy ??= { env: new TaskEnv({ passEnv: [], env: {} }), runAs: RunAs.disabled() });
    if (!task.runAs) {
      // The fast path: no lookup, nothing awaited before the spawn.
      this.launch(argv, cwd, policy.env.build(this.envTask(), task.groupEnv ?? null, null), null, null, spawner);
      return;
    }
    void policy.runAs.decide(task.runAs).then((decision) => {
      if ('refused' in decision) {
        resolveStarted(undefined);
        resolveDone({ exitCode: null, signal: null, spawnError: null, refused: decision.refused, output: '', killed: false });
        return;
      }
      try {
        const env = policy.env.build(this.envTask(), task.groupEnv ?? null, decision.user);
        this.launch(argv, cwd, env, decision.user, decision.switchTo, spawner);
      } catch (error) {
        // What the fast path throws to its caller (a NUL byte) ends the run here instead.
        resolveStarted(undefined);
        resolveDone({ exitCode: null, signal: null, spawnError: `could not start the process: ${(error as Error).message}`, output: '', killed: false });
      }
    });
  }

  private readonly resolveStarted: (pid: number | undefined) => void;
  private readonly resolveDone: (result: ProcessResult) => void;

  private envTask(): { id: number; attempt: number; params: unknown } {
    return { id: this.task.id, attempt: this.task.attempt ?? 0, params: this.task.params };
  }

  /** Starts the process: through the spawn helper when the node has one, else child_process. */
  private launch(argv: string[], cwd: string, env: string[], user: RunAsUser | null, switchTo: RunAsUser | null, spawner: Spawner | null | undefined): void {
    const resolveStarted = this.resolveStarted;
    const resolveDone = this.resolveDone;
    const limits = this.task.limits ?? NO_LIMITS;
    const spawnFailed = (error: NodeJS.ErrnoException, step: SpawnStep = 'exec', program = argv[0]!): void => {
      resolveStarted(undefined);
      void describeSpawnError(error, program, cwd, step, user, limits).then((spawnError) =>
        resolveDone({ exitCode: null, signal: null, spawnError, output: '', killed: false }),
      );
    };
    // A task is its process group: whatever the leader left running dies with it, and the
    // task is reported only once nothing of it is alive and its output is read.
    const leaderExited = (exitCode: number | null, signal: NodeJS.Signals | null, outputClosed: Promise<void>, lost?: string, usage?: ResourceUsage): void => {
      this.exited = true;
      const pgid = this.pid!;
      // No such group (the common case): nothing of it is left, not even a zombie, so there
      // is nothing to wait for.
      const left = killProcessGroup(pgid, 'SIGKILL');
      void Promise.all([left ? waitProcessGroupGone(pgid, 5_000) : true, outputClosed]).then(() =>
        resolveDone({ exitCode, signal, spawnError: null, output: this.tail.toString(), killed: this.killed, ...(lost ? { lost } : {}), ...(usage ? { usage } : {}) }),
      );
    };

    if (spawner && !spawner.dead) {
      let closed!: () => void;
      const outputClosed = new Promise<void>((resolve) => (closed = resolve));
      const creds = switchTo ? { uid: switchTo.uid, gid: switchTo.gid, groups: switchTo.groups } : null;
      spawner.spawn(argv, cwd, env, {
        started: (pid) => {
          this.pid = pid;
          resolveStarted(pid);
        },
        failed: (errno, step) => spawnFailed(errnoException(errno, argv[0]!), step),
        output: (chunk) => this.onOutput(chunk),
        exited: (status, usage) => {
          if (status === -1 && this.pid === undefined) {
            resolveStarted(undefined);
            resolveDone({ exitCode: null, signal: null, spawnError: 'the spawn helper died before it reported the start', output: '', killed: false });
            return;
          }
          if (status === -1) {
            leaderExited(null, null, outputClosed, 'the spawn helper died: the exit status is unknown');
            return;
          }
          const { exitCode, signal } = decodeWaitStatus(status);
          // The helper gives up on the pipe only at EOF; a descendant that escaped the group
          // (its own setsid) may hold it open, so stop waiting after a second, as below.
          leaderExited(exitCode, signal, Promise.race([outputClosed, delay(1_000)]), undefined, usage);
        },
        closed: () => closed(),
      }, creds, hasLimits(limits) ? rlimits(limits) : []);
      return;
    }

    // The fallback: child_process. Limits through util-linux prlimit (which then execs the
    // program); the user through spawn's uid and gid, which leave no supplementary groups.
    const envObject = Object.fromEntries(env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
    const full = hasLimits(limits) ? prlimitArgv(limits, argv) : argv;
    const ids = switchTo ? { uid: switchTo.uid, gid: switchTo.gid } : {};
    const child = spawn(full[0]!, full.slice(1), { cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: envObject, ...ids });
    this.pid = child.pid;
    const onData = (chunk: Buffer): void => this.onOutput(chunk);
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('error', (error: NodeJS.ErrnoException) => {
      if (this.pid !== undefined) return; // an error after a successful spawn (e.g. kill) is not a spawn failure
      // With limits the program spawned is prlimit: a "command not found" is about it.
      spawnFailed(error, 'exec', full === argv ? argv[0]! : 'prlimit (util-linux: it applies the limits with --spawner node)');
    });
    if (this.pid !== undefined) resolveStarted(this.pid);
    child.once('exit', (exitCode, signal) => {
      if (this.pid === undefined) return;
      leaderExited(exitCode, signal, streamsClosed(child, 1_000));
    });
  }

  private onOutput(chunk: Buffer): void {
    this.tail.push(chunk);
    this.options.sink?.(chunk);
  }

  /** Ends the whole process group: SIGTERM, then SIGKILL after the grace period. */
  async terminate(graceMs: number): Promise<ProcessResult> {
    this.killed = true;
    const pid = await this.started;
    if (pid === undefined) return this.done;
    if (!this.exited) {
      killProcessGroup(pid, graceMs > 0 ? 'SIGTERM' : 'SIGKILL');
      if (graceMs > 0) {
        const timer = setTimeout(() => {
          if (!this.exited) killProcessGroup(pid, 'SIGKILL');
        }, graceMs);
        void this.done.finally(() => clearTimeout(timer));
      }
    }
    return this.done;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** A raw wait(2) status as Node reports it: an exit code, or the name of the killing signal. */
function decodeWaitStatus(status: number): { exitCode: number | null; signal: NodeJS.Signals | null } {
  const termsig = status & 0x7f;
  if (termsig === 0) return { exitCode: (status >> 8) & 0xff, signal: null };
  const name = Object.entries(os.constants.signals).find(([, n]) => n === termsig)?.[0];
  return { exitCode: null, signal: (name ?? `SIG${termsig}`) as NodeJS.Signals };
}

function errnoException(errno: number, program: string): NodeJS.ErrnoException {
  const code = Object.entries(os.constants.errno).find(([, n]) => n === errno)?.[0] ?? `E${errno}`;
  return Object.assign(new Error(`spawn ${program} ${code}`), { code, errno });
}

async function streamsClosed(child: ChildProcess, timeoutMs: number): Promise<void> {
  const streams = [child.stdout, child.stderr].filter((s) => s !== null && !s.closed);
  if (streams.length === 0) return;
  await new Promise<void>((resolve) => {
    // A descendant that escaped the group (its own setsid) may hold the pipes open.
    const timer = setTimeout(() => {
      for (const s of streams) s?.destroy();
      resolve();
    }, timeoutMs);
    let open = streams.length;
    for (const s of streams) {
      s?.once('close', () => {
        if (--open === 0) {
          clearTimeout(timer);
          resolve();
        }
      });
    }
  });
}

/** Node says "spawn x ENOENT" for a missing program and for a missing cwd alike. */
async function describeSpawnError(error: NodeJS.ErrnoException, program: string, cwd: string, step: SpawnStep, user: RunAsUser | null, limits: TaskLimits): Promise<string> {
  const as = user ? ` by ${user.name} (uid ${user.uid}, gid ${user.gid})` : '';
  if (step === 'chdir') {
    if (error.code === 'ENOENT') return `working directory does not exist: ${cwd}`;
    if (error.code === 'ENOTDIR') return `working directory is not a directory: ${cwd}`;
    return `working directory is not usable${as}: ${cwd}: ${error.code}`;
  }
  if (step === 'setrlimit') return `could not apply the limits (${describeLimits(limits)}): ${error.code}`;
  if (step === 'setgroups' || step === 'setgid' || step === 'setuid') return `could not switch to ${user?.name ?? 'the user'} (${step}): ${error.code}`;
  if (step === 'fork') return `could not start ${program}: ${error.message}`;
  if (error.code === 'EAGAIN' && limits.pidsMax !== null) return `could not start ${program}: the user it runs as already has pids_max (${limits.pidsMax}) processes`;
  if ((error.code === 'ENOMEM' || error.code === 'E2BIG') && limits.memoryMax !== null) return `could not start ${program}: memory_max (${limits.memoryMax} bytes) is too small to load it`;
  if (error.code === 'ENOENT' || error.code === 'ENOTDIR') {
    const dir = await stat(cwd).catch(() => null);
    if (!dir) return `working directory does not exist: ${cwd}`;
    if (!dir.isDirectory()) return `working directory is not a directory: ${cwd}`;
    return `command not found: ${program}`;
  }
  if (error.code === 'EACCES') return user ? `permission denied: ${program}, or its working directory ${cwd}${as}` : `permission denied: ${program}`;
  return `could not start ${program}: ${error.message}`;
}
