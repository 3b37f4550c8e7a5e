import { spawn, type ChildProcess } from 'node:child_process';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { OutputTail } from './output-tail.js';
import { killProcessGroup, waitProcessGroupGone } from './process-group.js';

export interface TaskSpec {
  id: number;
  command: string[];
  cwd: string | null;
  params: unknown;
}

export interface ProcessOptions {
  /** Where a relative or missing cwd resolves. */
  rootDir: string;
  /** Bytes of output kept (stdout and stderr interleaved). */
  outputLimit: number;
  /** Extra environment for every task. */
  env?: NodeJS.ProcessEnv;
}

export interface ProcessResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all. */
  spawnError: string | null;
  output: string;
  /** The node ended it (cancel, stop code, shutdown, fencing). */
  killed: boolean;
}

/** The argv of a task: every element that is exactly %TASK becomes the task id. */
export function taskArgv(task: TaskSpec): string[] {
  return task.command.map((arg) => (arg === '%TASK' ? String(task.id) : arg));
}

export function taskCwd(task: TaskSpec, rootDir: string): string {
  return task.cwd ? path.resolve(rootDir, task.cwd) : rootDir;
}

/**
 * One task's OS process. It runs in its own process group (detached = setsid), so that
 * ending the task ends everything it started, and a Ctrl-C at the node's terminal does not
 * reach it.
 */
export class TaskProcess {
  readonly pid: number | undefined;
  readonly done: Promise<ProcessResult>;
  private killed = false;
  private exited = false;
  private readonly child: ChildProcess;

  constructor(
    readonly task: TaskSpec,
    private readonly options: ProcessOptions,
  ) {
    const argv = taskArgv(task);
    const cwd = taskCwd(task, options.rootDir);
    const tail = new OutputTail(options.outputLimit);
    this.child = spawn(argv[0]!, argv.slice(1), {
      cwd,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        ...options.env,
        PG_TASKS_TASK_ID: String(task.id),
        PG_TASKS_PARAMS: task.params === null || task.params === undefined ? '' : JSON.stringify(task.params),
      },
    });
    this.pid = this.child.pid;
    const onData = (chunk: Buffer): void => tail.push(chunk);
    this.child.stdout?.on('data', onData);
    this.child.stderr?.on('data', onData);

    this.done = new Promise<ProcessResult>((resolve) => {
      this.child.once('error', (error: NodeJS.ErrnoException) => {
        if (this.pid !== undefined) return; // an error after a successful spawn (e.g. kill) is not a spawn failure
        void describeSpawnError(error, argv[0]!, cwd).then((spawnError) =>
          resolve({ exitCode: null, signal: null, spawnError, output: '', killed: false }),
        );
      });
      this.child.once('exit', (exitCode, signal) => {
        this.exited = true;
        if (this.pid === undefined) return;
        // A task is its process group: whatever the leader left running dies with it, and the
        // task is reported only once nothing of it is alive.
        const pgid = this.pid;
        killProcessGroup(pgid, 'SIGKILL');
        void Promise.all([waitProcessGroupGone(pgid, 5_000), streamsClosed(this.child, 1_000)]).then(() =>
          resolve({ exitCode, signal, spawnError: null, output: tail.toString(), killed: this.killed }),
        );
      });
    });
  }

  /** Ends the whole process group: SIGTERM, then SIGKILL after the grace period. */
  async terminate(graceMs: number): Promise<ProcessResult> {
    if (this.pid === undefined) return this.done;
    this.killed = true;
    if (!this.exited) {
      killProcessGroup(this.pid, graceMs > 0 ? 'SIGTERM' : 'SIGKILL');
      if (graceMs > 0) {
        const timer = setTimeout(() => {
          if (!this.exited) killProcessGroup(this.pid!, 'SIGKILL');
        }, graceMs);
        void this.done.finally(() => clearTimeout(timer));
      }
    }
    return this.done;
  }
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
async function describeSpawnError(error: NodeJS.ErrnoException, program: string, cwd: string): Promise<string> {
  if (error.code === 'ENOENT' || error.code === 'ENOTDIR') {
    const dir = await stat(cwd).catch(() => null);
    if (!dir) return `working directory does not exist: ${cwd}`;
    if (!dir.isDirectory()) return `working directory is not a directory: ${cwd}`;
    return `command not found: ${program}`;
  }
  if (error.code === 'EACCES') return `permission denied: ${program}`;
  return `could not start ${program}: ${error.message}`;
}
