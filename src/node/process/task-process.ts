import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { OutputTail } from './output-tail.js';
import { killProcessGroup, waitProcessGroupGone } from './process-group.js';
import { NO_LIMITS, hasLimits, prlimitArgv, rlimits, type TaskLimits } from './limits.js';
import { decodeWaitStatus, describeSpawnError, errnoException } from './spawn-errors.js';
import { RunAs, type RunAsUser } from './run-as.js';
import type { CgroupUsage, ResourceUsage, SpawnStep, Spawner, Supervision } from './spawner.js';
import { TaskEnv, type EnvTask, type GroupEnv } from './task-env.js';
import { DEPENDENCY_ENV_BYTES, writeDependencyResults } from './dependency-results.js';

export interface TaskSpec {
  id: number;
  command: string[];
  cwd: string | null;
  params: unknown;
  /** The run's number (PG_TASKS_ATTEMPT); 0 when not known. */
  attempt?: number;
  /** A schedule's copy: the slot it stands for (PG_TASKS_SLOT). */
  slot?: Date | null;
  /** The effective run_as (the task's, else its group's); null: the node's own user. */
  runAs?: string | null;
  /** The group's pass_env and env, as claimed. */
  groupEnv?: GroupEnv | null;
  limits?: TaskLimits;
  /** Its prerequisites' results, a JSON object by task id (PG_TASKS_DEPENDENCY_RESULTS). */
  dependencyResults?: string | null;
  /** The run's span, as W3C TRACEPARENT (with tracing on). */
  traceparent?: string | null;
}

/** What the node allows and passes: its environment rules and its run_as rules. */
export interface SpawnPolicy {
  env: TaskEnv;
  runAs: RunAs;
}

let defaultPolicy: SpawnPolicy | null = null;

/**
 * For benches and tests only (NodeOptions.executor; no CLI flag): "runs" a task in the node's
 * own process instead of starting one, resolving when the task is over (reject: it failed).
 * bench/fleet.ts simulates hundreds of nodes in one process with it.
 */
export type TaskExecutor = (task: { id: number; attempt: number; command: string[] }) => Promise<void>;

export interface ProcessOptions {
  /** Run the task with this instead of a process (benches and tests): see TaskExecutor. */
  executor?: TaskExecutor;
  /** Where a relative or missing cwd resolves. */
  rootDir: string;
  /** Bytes of output kept (stdout and stderr interleaved). */
  outputLimit: number;
  /** Also given every chunk of output as it is read (live output). */
  sink?: ((chunk: Buffer) => void) | null;
  /** Given what the task writes on its fd 3, the control channel (docs/control.md). */
  control?: ((chunk: Buffer) => void) | null;
  /** The node's; by default a clean environment with nothing passed, and no run_as allowed. */
  policy?: SpawnPolicy;
  /** A supervisor for the run (the spawn helper only): see Supervision. */
  supervision?: Supervision | null;
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
  /**
   * The processes the run's supervisor killed that had escaped the leader's process group
   * (setsid, a daemon) or outlived the leader past the orphan grace. Undefined: no supervisor.
   */
  orphansKilled?: number;
  /** From the run's cgroup, where it had one: memory.peak, and whether the OOM killer struck. */
  cgroup?: CgroupUsage;
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
 * started by the spawn helper when the node has one, else by child_process.spawn. With the
 * helper and supervision, a supervisor owns the run's processes, even those that left the
 * group: the node ends the run through it (SIGTERM: every process gets SIGTERM; SIGUSR1: every
 * process is killed), and its end comes once all of them are gone.
 */
export class TaskProcess {
  /** Known once started: synchronously with child_process, a moment later with the helper. */
  pid: number | undefined;
  /** The run's supervisor (supervisor.c), when it has one. */
  supervisor: number | undefined;
  /** The spawn helper whose child the supervisor is, and the run's key there. */
  helperPid: number | undefined;
  private helper: { spawner: Spawner; key: number } | null = null;
  /** Resolved once the start was asked for (or refused): the run_as lookup may come first. */
  private readonly launched: Promise<void>;
  private resolveLaunched!: () => void;
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
    this.launched = new Promise((resolve) => (this.resolveLaunched = resolve));
    void this.done.then(() => this.resolveLaunched());
    if (options.executor) {
      this.simulate(options.executor);
      return;
    }
    const policy = options.policy ?? (defaultPolicy ??= { env: new TaskEnv({ passEnv: [], env: {} }), runAs: RunAs.disabled() });
    if (!task.runAs) {
      // The fast path: no lookup, nothing awaited before the spawn.
      this.launch(argv, cwd, policy.env.build(this.envTask(null), task.groupEnv ?? null, null), null, null, spawner);
      return;
    }
    void policy.runAs.decide(task.runAs).then((decision) => {
      if ('refused' in decision) {
        resolveStarted(undefined);
        resolveDone({ exitCode: null, signal: null, spawnError: null, refused: decision.refused, output: '', killed: false });
        return;
      }
      try {
        const env = policy.env.build(this.envTask(decision.switchTo), task.groupEnv ?? null, decision.user);
        this.launch(argv, cwd, env, decision.user, decision.switchTo, spawner);
      } catch (error) {
        // What the fast path throws to its caller (a NUL byte) ends the run here instead.
        resolveStarted(undefined);
        resolveDone({ exitCode: null, signal: null, spawnError: `could not start the process: ${(error as Error).message}`, output: '', killed: false });
      }
    });
  }

  /**
   * A run with no process: it has no pid (started resolves undefined), so nothing of the node
   * ever signals, tracks or waits for a process group; a kill waits for the executor's end.
   */
  private simulate(executor: TaskExecutor): void {
    this.resolveStarted(undefined);
    this.resolveLaunched();
    executor({ id: this.task.id, attempt: this.task.attempt ?? 0, command: this.task.command }).then(
      () => this.resolveDone({ exitCode: 0, signal: null, spawnError: null, output: '', killed: this.killed }),
      (error: unknown) => this.resolveDone({ exitCode: 1, signal: null, spawnError: null, output: String(error), killed: this.killed }),
    );
  }

  private readonly resolveStarted: (pid: number | undefined) => void;
  private readonly resolveDone: (result: ProcessResult) => void;

  private envTask(switchTo: RunAsUser | null): EnvTask {
    const base = { id: this.task.id, attempt: this.task.attempt ?? 0, params: this.task.params, slot: this.task.slot ?? null, traceparent: this.task.traceparent ?? null };
    const results = this.task.dependencyResults;
    if (!results) return base;
    if (Buffer.byteLength(results) <= DEPENDENCY_ENV_BYTES) return { ...base, dependencyResults: results };
    const file = writeDependencyResults(this.task.id, this.task.attempt ?? 0, results, switchTo);
    void this.done.finally(() => rmSync(file, { force: true }));
    return { ...base, dependencyResultsFile: file };
  }

  /** Starts the process: through the spawn helper when the node has one, else child_process. */
  private launch(argv: string[], cwd: string, env: string[], user: RunAsUser | null, switchTo: RunAsUser | null, spawner: Spawner | null | undefined): void {
    try {
      this.spawnProcess(argv, cwd, env, user, switchTo, spawner);
    } finally {
      this.resolveLaunched();
    }
  }

  private spawnProcess(argv: string[], cwd: string, env: string[], user: RunAsUser | null, switchTo: RunAsUser | null, spawner: Spawner | null | undefined): void {
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
    const leaderExited = (exitCode: number | null, signal: NodeJS.Signals | null, outputClosed: Promise<void>, lost?: string, usage?: ResourceUsage, orphansKilled?: number, cgroup?: CgroupUsage): void => {
      this.exited = true;
      const pgid = this.pid!;
      // No such group (the common case): nothing of it is left, not even a zombie, so there
      // is nothing to wait for. A supervised run that reported its end has nothing left at
      // all, and its leader's pid may belong to another process by now: no kill.
      const reported = orphansKilled !== undefined;
      const left = !reported && killProcessGroup(pgid, 'SIGKILL');
      void Promise.all([left ? waitProcessGroupGone(pgid, 5_000) : true, outputClosed]).then(() =>
        resolveDone({
          exitCode, signal, spawnError: null, output: this.tail.toString(), killed: this.killed,
          ...(lost ? { lost } : {}), ...(usage ? { usage } : {}), ...(orphansKilled !== undefined ? { orphansKilled } : {}), ...(cgroup ? { cgroup } : {}),
        }),
      );
    };

    if (spawner && !spawner.dead) {
      // A run gets a cgroup of its own where the node has one and it buys something the
      // supervisor cannot: memory_max as memory.max (all its processes together, 'oom',
      // memory.peak) or cpu_max as cpu.max; with --containment cgroup, every run. Otherwise the
      // supervisor alone contains it: a cgroup per run (mkdir, rmdir) costs about a fifth of
      // the throughput at 32 slots (bench/containment.ts).
      const base = this.options.supervision ?? null;
      const cgroup = base !== null ? spawner.cgroup : null;
      const memoryInCgroup = cgroup !== null && cgroup.has('memory') && limits.memoryMax !== null;
      const cpuInCgroup = cgroup !== null && cgroup.has('cpu') && !!limits.cpuMax && Number.isFinite(limits.cpuMax);
      const runLimits = memoryInCgroup ? { ...limits, memoryMax: null } : limits;
      const supervision = base && {
        ...base,
        cgroup: cgroup !== null && (base.cgroup === true || memoryInCgroup || cpuInCgroup),
        ...(memoryInCgroup ? { memoryMax: limits.memoryMax } : {}),
        ...(cpuInCgroup ? { cpuMax: limits.cpuMax } : {}),
      };
      let closed!: () => void;
      const outputClosed = new Promise<void>((resolve) => (closed = resolve));
      const creds = switchTo ? { uid: switchTo.uid, gid: switchTo.gid, groups: switchTo.groups } : null;
      const key = spawner.spawn(argv, cwd, env, {
        started: (pid, supervisor) => {
          this.pid = pid;
          if (supervisor > 0) this.supervisor = supervisor;
          resolveStarted(pid);
        },
        failed: (errno, step) => spawnFailed(errnoException(errno, argv[0]!), step),
        output: (chunk) => this.onOutput(chunk),
        control: (chunk) => this.options.control?.(chunk),
        exited: (status, usage, orphans, cgroupUsage) => {
          const who = status === -2 ? 'the run\'s supervisor' : 'the spawn helper';
          if (status < 0 && this.pid === undefined) {
            resolveStarted(undefined);
            resolveDone({ exitCode: null, signal: null, spawnError: `${who} died before it reported the start`, output: '', killed: false });
            return;
          }
          if (status < 0) {
            leaderExited(null, null, outputClosed, `${who} died: the exit status is unknown`);
            return;
          }
          const { exitCode, signal } = decodeWaitStatus(status);
          // The helper gives up on the pipe only at EOF; without a supervisor, a descendant
          // that escaped the group (its own setsid) may hold it open, so stop waiting after a
          // second, as below. A supervised run's processes are all gone by now.
          const supervised = this.supervisor !== undefined;
          leaderExited(exitCode, signal, Promise.race([outputClosed, delay(1_000)]), undefined, usage, supervised ? orphans : undefined, supervision?.cgroup ? cgroupUsage : undefined);
        },
        closed: () => closed(),
      }, creds, hasLimits(runLimits) ? rlimits(runLimits) : [], supervision);
      if (supervision) {
        this.helper = { spawner, key };
        this.helperPid = spawner.pid;
      }
      return;
    }

    // The fallback: child_process. Limits through util-linux prlimit (which then execs the
    // program); the user through spawn's uid and gid, which leave no supplementary groups.
    const envObject = Object.fromEntries(env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
    const full = hasLimits(limits) ? prlimitArgv(limits, argv) : argv;
    const ids = switchTo ? { uid: switchTo.uid, gid: switchTo.gid } : {};
    // fd 3: the task's control channel (docs/control.md), read like its output.
    const child = spawn(full[0]!, full.slice(1), { cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe', 'pipe'], env: envObject, ...ids });
    this.pid = child.pid;
    const onData = (chunk: Buffer): void => this.onOutput(chunk);
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.stdio[3]?.on('data', (chunk: Buffer) => this.options.control?.(chunk));
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

  /**
   * Ends the run: SIGTERM to every process, then SIGKILL after the grace period. Through its
   * supervisor when it has one (which reaches the processes that left the group), else to
   * the process group. A supervised run is not over when its leader has exited: its
   * supervisor may still wait out the orphan grace, so it is told too.
   */
  async terminate(graceMs: number): Promise<ProcessResult> {
    this.killed = true;
    // A supervised run is ended through its supervisor as soon as the start was asked for, not
    // once it reported the leader's pid: a task may stop its supervisor before it reports.
    await this.launched;
    const supervised = this.helper;
    const pid = supervised ? this.pid : await this.started;
    if (!supervised && pid === undefined) return this.done;
    let over = false;
    void this.done.then(() => (over = true));
    const timers: NodeJS.Timeout[] = [];
    void this.done.finally(() => timers.forEach(clearTimeout));
    const end = (final: boolean): void => {
      if (over || this.exited) return;
      // Through the helper, whose child the supervisor is: SIGTERM, then SIGUSR1 (kill all).
      if (supervised?.spawner.signal(supervised.key, final ? 'SIGUSR1' : 'SIGTERM')) {
        // A supervisor that does not answer (its task, as the same user, stopped it): killed,
        // with the leader's group; the helper then kills what is left of the run.
        if (final) {
          timers.push(setTimeout(() => {
            if (over || this.exited) return;
            supervised.spawner.signal(supervised.key, 'SIGKILL');
            if (this.pid !== undefined) killProcessGroup(this.pid, 'SIGKILL');
          }, SUPERVISOR_ANSWER_MS));
        }
        return;
      }
      const leader = this.pid ?? pid;
      if (leader !== undefined) killProcessGroup(leader, final ? 'SIGKILL' : 'SIGTERM');
    };
    end(graceMs <= 0);
    if (graceMs > 0) timers.push(setTimeout(() => end(true), graceMs));
    return this.done;
  }
}

/** How long a supervisor told to kill its run may take before it is killed itself. */
const SUPERVISOR_ANSWER_MS = 2_000;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

async function streamsClosed(child: ChildProcess, timeoutMs: number): Promise<void> {
  const streams = [child.stdout, child.stderr, child.stdio[3]].filter((s) => s != null && !s.closed);
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
