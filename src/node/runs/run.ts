import { limitNote, NO_LIMITS } from '../process/limits.js';
import type { EndReason, TaskOutcome } from './result-writer.js';
import type { ProcessResult, TaskProcess } from '../process/task-process.js';
import { MAX_TIMER_MS } from '../../lib/timed-loop.js';
import type { ControlChannel } from './control-channel.js';

/** Why the node itself ended a run, and what its task becomes. */
export interface KillReason {
  state: 'CC' | 'CF';
  endReason: EndReason;
  error: string;
  /**
   * Killed because the lease was lost: write nothing, and leave the row to the recovery of
   * the worker, where the task's recover policy decides (a 'requeue' task runs again).
   */
  leaveToRecovery?: boolean;
}

/** Characters of output quoted in the error of a failed run. */
const ERROR_TAIL = 2_000;

/**
 * One run: one execution of a task, claimed under one lease term. It owns its process and
 * the reason the node ended it, if it did; what the node writes about it names the run
 * (task id, attempt, epoch), never the task alone. The node holds a Run while its process
 * lives, whatever users write to the task row meanwhile, and forgets it when it ends.
 */
export class Run {
  private killReason: KillReason | null = null;
  /** Its control channel (fd 3): what its task says, for its end (docs/control.md). */
  control: ControlChannel | null = null;
  /** performance.now() when its process was running (null: not, or never). */
  startedAt: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private heartbeatTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly taskId: number,
    readonly attempt: number,
    readonly epoch: number,
    readonly proc: TaskProcess,
    /** As claimed: the timeout in force (null = none), and whether it was pinned to this worker. */
    readonly claimed: { timeoutMs: number | null; pinned: boolean },
  ) {}

  /** For logs and sets of runs: "12:3" is attempt 3 of task 12. */
  get key(): string {
    return `${this.taskId}:${this.attempt}`;
  }

  get reason(): KillReason | null {
    return this.killReason;
  }

  /**
   * Kills the run when it exceeds its timeout, counted from the claim (the deadline in its
   * task_run row is the same in database time). It ends CF 'timeout' once its whole process
   * group is gone: SIGTERM, SIGKILL after the grace period.
   */
  armTimeout(timeoutMs: number, graceMs: number, leftMs = timeoutMs): void {
    // One timer waits at most 24.8 days (a longer delay fires at once): a timeout of 30
    // days is that, then the rest.
    const wait = Math.min(Math.max(0, leftMs), MAX_TIMER_MS);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (leftMs > wait) this.armTimeout(timeoutMs, graceMs, leftMs - wait);
      else this.kill({ state: 'CF', endReason: 'timeout', error: `timed out after ${formatMs(timeoutMs)}` }, graceMs);
    }, wait);
  }

  /**
   * Kills the run when it writes nothing on fd 3 for heartbeatMs (docs/control.md): it ends CF
   * 'heartbeat', like a timeout. One timer per run, moved on only when it fires: a sign of
   * life costs a clock read, not a timer.
   */
  armHeartbeat(heartbeatMs: number, graceMs: number): void {
    if (!this.control) return;
    const left = this.control.lastLife + heartbeatMs - performance.now();
    if (left <= 0) {
      this.heartbeatTimer = null;
      this.kill({ state: 'CF', endReason: 'heartbeat', error: `no sign of life on fd 3 for ${formatMs(heartbeatMs)} (heartbeat_timeout)` }, graceMs);
      return;
    }
    this.heartbeatTimer = setTimeout(() => this.armHeartbeat(heartbeatMs, graceMs), Math.min(left, MAX_TIMER_MS));
  }

  /** The process is gone: nothing of the run may fire any more. */
  ended(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.heartbeatTimer) clearTimeout(this.heartbeatTimer);
    this.timer = null;
    this.heartbeatTimer = null;
  }

  /** Ends the process group (SIGTERM, SIGKILL after graceMs); the first reason given stands. */
  kill(reason: KillReason, graceMs: number): void {
    if (this.killReason) return;
    this.killReason = reason;
    void this.proc.terminate(graceMs);
  }

  /** How it ended, with what it said on fd 3: a result over the cap is named in its error. */
  outcome(result: ProcessResult): TaskOutcome {
    const outcome = this.processOutcome(result);
    const control = this.control?.summary();
    if (!control) return outcome;
    const error = control.resultError === null ? outcome.error : outcome.error === null ? control.resultError : `${outcome.error}\n${control.resultError}`;
    return { ...outcome, control, error };
  }

  private processOutcome(result: ProcessResult): TaskOutcome {
    const base = { id: this.taskId, attempt: this.attempt, timeoutMs: this.claimed.timeoutMs, pinned: this.claimed.pinned, pid: this.proc.pid ?? null, exitCode: result.exitCode, signal: result.signal, output: result.output, usage: result.usage, orphansKilled: result.orphansKilled ?? null, memoryPeakBytes: result.cgroup?.memoryPeakKb ? result.cgroup.memoryPeakKb * 1024 : null };
    if (result.refused !== undefined) return { ...base, state: 'CF', endReason: 'refused', error: `Refused: ${result.refused}` };
    if (result.spawnError !== null) return { ...base, state: 'CF', endReason: 'spawn_error', error: result.spawnError };
    if (result.lost !== undefined) return { ...base, state: 'CF', endReason: 'lost', error: `Lost: ${result.lost}` };
    const reason = this.killReason;
    const tail = result.output.slice(-ERROR_TAIL);
    if (reason?.endReason === 'timeout' || reason?.endReason === 'heartbeat') return { ...base, state: reason.state, endReason: reason.endReason, error: tail ? `${reason.error}\n${tail}` : reason.error };
    if (reason) return { ...base, state: reason.state, endReason: reason.endReason, error: reason.error };
    if (result.cgroup?.oom && result.exitCode !== 0) {
      const max = this.proc.task.limits?.memoryMax;
      const what = result.signal !== null ? `killed by signal ${result.signal}` : `exit code ${result.exitCode}`;
      return { ...base, state: 'CF', endReason: 'oom', error: `${what}: the kernel's OOM killer ended a process of the run${max ? ` (memory_max ${max} bytes)` : ''}${tail ? `\n${tail}` : ''}` };
    }
    if (result.exitCode === 0) return { ...base, state: 'CS', endReason: 'completed', error: null };
    const note = limitNote(this.proc.task.limits ?? NO_LIMITS, result.signal, result.usage);
    const what = (result.signal !== null ? `killed by signal ${result.signal}` : `exit code ${result.exitCode}`) + (note ? `: ${note}` : '');
    return { ...base, state: 'CF', endReason: result.signal !== null ? 'signal' : 'exit_code', error: tail ? `${what}\n${tail}` : what };
  }
}

/** 1500 → "1.5s", 90000 → "90s", 250 → "250ms". */
function formatMs(ms: number): string {
  return ms < 1_000 ? `${Math.round(ms)}ms` : `${+(ms / 1_000).toFixed(3)}s`;
}
