import type pg from 'pg';
import type { Logger } from 'pino';
import { describeError } from '../../db/errors.js';
import type { Statements } from '../../sql/queries/index.js';
import type { ClaimedRow } from '../claim/claimer.js';
import type { NodeEvents } from '../events.js';
import type { OutputWriter } from './output-writer.js';
import { ControlChannel } from './control-channel.js';
import type { ControlWriter } from './control-writer.js';
import type { Reaper } from '../process/reaper.js';
import type { ResultWriter } from './result-writer.js';
import { Run, type KillReason } from './run.js';
import type { Spawner } from '../process/spawner.js';
import { TaskProcess, type ProcessResult, type SpawnPolicy, type TaskExecutor, type TaskSpec } from '../process/task-process.js';
import type { ContainmentMode } from '../options.js';
import type { TraceRun } from '../tracing/run-tracing.js';

/** What the live runs need from their node. */
export interface LiveRunsHost {
  /** A run is over (its outcome handed to the writer, or left to recovery): a slot is free. */
  ended(): void;
}

export interface LiveRunsOptions {
  rootDir: string;
  outputLimit: number;
  killGraceMs: number;
  /** 'supervisor': each run gets a supervisor (with the spawn helper; see TaskProcess). */
  containment?: ContainmentMode;
  /** How long a run's other processes may outlive its leader (with a supervisor). */
  orphanGraceMs?: number;
  /** The node's environment and run_as rules (default: a clean environment, no run_as). */
  policy?: SpawnPolicy;
  /** Benches and tests: no process (see TaskExecutor). */
  executor?: TaskExecutor;
  /** With tracing: gives each run its span before its process starts (see RunTracing). */
  trace?: TraceRun | undefined;
}

/**
 * The runs whose processes live on this node, by task id: a task has at most one live run
 * here (a claim never picks a task whose earlier process may still live), whatever its row
 * says meanwhile. Starts each claimed run's process, covers it with the reaper, kills it on
 * request, and hands its outcome to the writer when the process is gone. Holds nothing about
 * a run once it has ended, beyond the two short rotating sets below.
 */
export class LiveRuns {
  private readonly running = new Map<number, Run>();
  /** Runs ("id:attempt") that ended whose outcome waits for their last output to be written. */
  private readonly handing = new Set<string>();
  private idleWaiters: Array<() => void> = [];
  // Runs ("id:attempt") that ended since the renewal before last: a renewal may have read
  // them as still live. Rotated at each renewal, so they hold only what ended lately.
  private endedRecently = new Set<string>();
  private endedBefore = new Set<string>();

  constructor(
    private readonly db: { pool: pg.Pool; queries: Statements; workerId: number },
    private readonly options: LiveRunsOptions,
    private readonly spawner: () => Spawner | null,
    private readonly reaper: Reaper,
    private readonly writer: ResultWriter,
    private readonly log: Logger,
    private readonly host: LiveRunsHost,
    private readonly events: NodeEvents,
    private readonly output: OutputWriter,
    private readonly control: ControlWriter,
  ) {}

  get size(): number {
    return this.running.size;
  }

  /** Starts the process of a run just claimed under lease term `epoch`. */
  start(row: ClaimedRow, epoch: number, claimedAt = performance.now()): void {
    const o = this.options;
    // Its span begins at the claim, whatever comes of the run ('run:ended' ends it).
    const traceparent = o.trace ? o.trace({ taskId: row.id, attempt: row.attempt, params: row.params, claimedAt }) : null;
    // Refused by the allowlist (the claim asked the matcher): no process at all.
    if (row.refusal !== null) {
      this.log.warn({ task: row.id, attempt: row.attempt, reason: row.refusal }, 'task refused: its command is not allowed');
      this.endUnstarted(row, epoch, 'refused', `Refused: ${row.refusal}`);
      return;
    }
    // Allowed by the allowlist: the program the matcher resolved is exec'd, as argv[0] too.
    const command = row.exec_path !== null ? [row.exec_path, ...row.command.slice(1)] : row.command;
    let proc: TaskProcess;
    // The run's fd 3 (docs/control.md): read from its start, before the Run exists.
    const channel = new ControlChannel({
      progress: (progress, message) => this.control.report({ id: row.id, attempt: row.attempt, epoch, progress, message }),
      firstError: (reason) => this.log.warn({ task: row.id, attempt: row.attempt, reason }, 'the task wrote a line on fd 3 that could not be used (counted in task_run.control_errors; logged once a run)'),
    });
    try {
      const sink = this.output.open(row.id, row.attempt);
      const supervision = o.containment === 'group' ? null : { orphanGraceMs: o.orphanGraceMs ?? 0, cgroup: o.containment === 'cgroup' };
      const control = (chunk: Buffer): void => channel.push(chunk);
      proc = new TaskProcess({ ...taskSpec(row), command, traceparent }, { rootDir: o.rootDir, outputLimit: o.outputLimit, sink, control, supervision, ...(o.policy ? { policy: o.policy } : {}), ...(o.executor ? { executor: o.executor } : {}) }, this.spawner());
    } catch (error) {
      void this.output.close(row.id, row.attempt);
      // spawn() throws synchronously for arguments it cannot pass (a NUL byte, a null element).
      this.endUnstarted(row, epoch, 'spawn_error', `could not start the process: ${(error as Error).message}`);
      return;
    }
    const run = new Run(row.id, row.attempt, epoch, proc, { timeoutMs: row.timeout_ms, pinned: row.pinned });
    run.control = channel;
    this.running.set(row.id, run);
    if (row.timeout_ms !== null) run.armTimeout(row.timeout_ms, o.killGraceMs);
    if (row.heartbeat_ms !== null && row.heartbeat_ms > 0) run.armHeartbeat(row.heartbeat_ms, o.killGraceMs);
    void proc.started.then((pid) => {
      if (pid === undefined) return;
      this.reaper.track(run.key, pid, proc.supervisor !== undefined ? proc.helperPid : undefined);
      run.startedAt = performance.now();
      this.writer.recordPid(epoch, row.id, row.attempt, pid);
      this.events.publish('run:started', { taskId: row.id, attempt: row.attempt, pid, startMs: run.startedAt - claimedAt });
    });
    void proc.done.then((result) => this.onProcessEnd(run, result));
  }

  /** Ends CF a run that never had a process. */
  private endUnstarted(row: ClaimedRow, epoch: number, endReason: 'refused' | 'spawn_error', error: string): void {
    this.writer.finish(epoch, {
      id: row.id, attempt: row.attempt, state: 'CF', endReason, pid: null, exitCode: null, signal: null, output: '',
      error, timeoutMs: row.timeout_ms, pinned: row.pinned,
    });
    this.events.publish('run:ended', { taskId: row.id, attempt: row.attempt, state: 'CF', endReason, exitCode: null, signal: null, durationMs: 0 });
    this.endedRecently.add(`${row.id}:${row.attempt}`);
    this.host.ended();
  }

  private onProcessEnd(run: Run, result: ProcessResult): void {
    run.ended();
    if (run.proc.pid !== undefined) this.reaper.untrack(run.key);
    if (result.orphansKilled) this.log.warn({ task: run.taskId, attempt: run.attempt, orphans: result.orphansKilled }, 'killed processes of the run that had left its process group or outlived its leader');
    this.running.delete(run.taskId);
    this.endedRecently.add(run.key);
    this.control.ended(run.taskId, run.attempt);
    const outcome = run.outcome(result);
    const reason = run.reason;
    if (reason?.leaveToRecovery) {
      // Written now, while the term may still hold (the database back before the lease
      // lapsed), it would bypass the recover policy: a 'requeue' task would end CF for good.
      this.log.warn({ task: run.taskId, attempt: run.attempt, reason: reason.error }, 'task killed with the lease lost; left to the recovery of the worker');
      void this.output.close(run.taskId, run.attempt);
    } else {
      // Its output first: a reader that sees the run ended then has all it printed.
      this.handing.add(run.key);
      void this.output.close(run.taskId, run.attempt).then(() => {
        this.writer.finish(run.epoch, outcome);
        this.handing.delete(run.key);
        this.resolveIdle();
      });
    }
    const durationMs = run.startedAt === null ? 0 : performance.now() - run.startedAt;
    this.events.publish('run:ended', { taskId: run.taskId, attempt: run.attempt, state: outcome.state, endReason: outcome.endReason, exitCode: outcome.exitCode, signal: outcome.signal, durationMs });
    this.resolveIdle();
    this.host.ended();
  }

  /** Ends every live run (SIGTERM, SIGKILL after the grace period); the first reason stands. */
  killAll(reason: KillReason, graceMs = this.options.killGraceMs): void {
    for (const run of this.running.values()) run.kill(reason, graceMs);
  }

  /** Reads which runs of lease term `epoch` are asked to be cancelled (AC), and kills them. */
  async checkCancels(epoch: number | null): Promise<void> {
    if (epoch === null || this.running.size === 0) return;
    try {
      const { rows } = await this.db.queries.cancelRequests(this.db.pool, { workerId: this.db.workerId, epoch });
      for (const { id, attempt } of rows) {
        const run = this.running.get(id);
        if (run?.attempt === attempt) run.kill({ state: 'CC', endReason: 'cancelled', error: 'Cancelled' }, this.options.killGraceMs);
      }
    } catch (error) {
      this.log.warn({ err: describeError(error) }, 'could not read cancellations');
    }
  }

  /** Resolves when no run is live and every outcome is with the writer. */
  idle(): Promise<void> {
    if (this.running.size === 0 && this.handing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private resolveIdle(): void {
    if (this.running.size === 0 && this.handing.size === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  /**
   * After a renewal: a run the term owns with no process here and no result on its way had
   * its claim committed while the reply was lost (a dropped connection). No process ever
   * started, so it was no attempt: it ends now as 'lost_claim', and finishRuns queues its task
   * again at once, not counted toward max_attempts (a cancel meanwhile ends it CC), rather
   * than leave it to the lease's end. Then the ended sets rotate.
   */
  checkOwned(owned: Array<{ id: number; attempt: number }>, epoch: number): void {
    this.endLostClaims(owned, epoch);
    this.endedBefore = this.endedRecently;
    this.endedRecently = new Set();
  }

  /**
   * Ends as lost claims the runs of `runs` (all live in term `epoch`) that have no process
   * here and no result on its way: after a renewal (runs started half a lease ago), or after a
   * failed claim (every run of the term: no claim is in flight then).
   */
  endLostClaims(runs: Array<{ id: number; attempt: number }>, epoch: number): void {
    for (const { id, attempt } of runs) {
      const key = `${id}:${attempt}`;
      // Its outcome is on its way however long its last output takes to write.
      if (this.running.get(id)?.attempt === attempt || this.handing.has(key) || this.writer.isPending(id, attempt) || this.endedRecently.has(key) || this.endedBefore.has(key)) continue;
      this.log.warn({ task: id, attempt }, 'run claimed under this lease has no process here (the claim reply was lost): queuing it again');
      // state and pinned are the database's to decide (finishRuns): AW, or CC if cancelled,
      // pinned as the claim was.
      this.writer.finish(epoch, {
        id, attempt, state: 'CF', endReason: 'lost_claim', pid: null, exitCode: null, signal: null, output: '',
        error: LOST_CLAIM_ERROR, timeoutMs: null, pinned: false,
      });
    }
  }
}

/** The error of a lost claim's run (task_run); failOrphanRuns writes the same. */
const LOST_CLAIM_ERROR = 'Lost claim: the claim committed but its reply never reached the node, so no process started (not an attempt)';

/** What a claimed row asks of its process. */
function taskSpec(row: ClaimedRow): TaskSpec {
  return {
    id: row.id, command: row.command, cwd: row.cwd, params: row.params, attempt: row.attempt, runAs: row.run_as, slot: row.shed_slot,
    dependencyResults: row.dependency_results,
    groupEnv: row.pass_env || row.env ? { passEnv: row.pass_env, env: row.env } : null,
    limits: { memoryMax: row.memory_max, cpuSecondsMax: row.cpu_seconds_max, openFilesMax: row.open_files_max, pidsMax: row.pids_max, cpuMax: row.cpu_max },
  };
}
