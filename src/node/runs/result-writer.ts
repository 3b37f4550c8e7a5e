import type pg from 'pg';
import { isStaleServer } from '../../db/server-guard.js';
import type { Logger } from 'pino';
import type { EndReason } from '../../client/types.js';
import type { Statements } from '../../sql/queries/index.js';
import { Backoff } from '../../lib/backoff.js';
import type { NodeEvents } from '../events.js';
import type { Service } from '../services.js';
import type { ResourceUsage } from '../process/spawner.js';
import type { ControlSummary } from './control-channel.js';
import { isRowError, writeBisected } from './row-errors.js';

export type { EndReason };

/** How one run ended: what the node writes to its task_run row (and the task row). */
export interface TaskOutcome {
  id: number;
  attempt: number;
  state: 'CS' | 'CF' | 'CC';
  endReason: EndReason;
  /** null when no process started. */
  pid: number | null;
  /** What the process used, where it can be told (see ResourceUsage). */
  usage?: ResourceUsage | undefined;
  exitCode: number | null;
  signal: string | null;
  error: string | null;
  output: string;
  /** The timeout the run was claimed with (its task_run row's deadline); null = none. */
  timeoutMs: number | null;
  /** Claimed as pinned to this worker: a retry stays pinned to it (else any worker may run it). */
  pinned: boolean;
  /** The processes its supervisor killed that had left the leader's group or outlived it (null: no supervisor). */
  orphansKilled?: number | null;
  /** memory.peak of the run's cgroup, in bytes (null: no cgroup with memory). */
  memoryPeakBytes?: number | null;
  /** What it said on fd 3 (docs/control.md); undefined: it never started. */
  control?: ControlSummary;
}

/**
 * A pid waits this long before it is written on its own: most short runs end sooner, and the
 * end writes the pid with it (finishRuns), which saves a statement per batch of starts
 * (about a fifth of the node's statement time per task at 1 000 tasks/s, by pg_stat_statements). A running task shows its pid this much later.
 */
export const PID_DELAY_MS = 50;

/**
 * Writes what the node learns about its runs (pids, then outcomes) in batches: everything
 * that arrives in one turn of the event loop goes out in one statement per kind, so a burst
 * of 500 exits costs two statements, not 500. Every write names its run (task id, attempt)
 * and the lease term it was made under; runs the node no longer owns are left alone.
 */
export class ResultWriter implements Service {
  /** Pids by run: `${task id}:${attempt}`; at: performance.now() when the process started. */
  private pids = new Map<string, { id: number; attempt: number; pid: number; at: number }>();
  private pidTimer: NodeJS.Timeout | null = null;
  /** separate: given back by a turnover that failed; written on its own (split if need be). */
  private outcomes: Array<{ epoch: number; outcome: TaskOutcome; separate?: boolean }> = [];
  private pidEpoch: number | null = null;
  private flushing: Promise<void> | null = null;
  private scheduled = false;
  private readonly backoff = new Backoff(100, 5_000);
  private inFlight = 0;
  private inFlightRuns = new Set<string>();
  /** Ends handed to a turnover (takeEnds) and not yet back (turnoverDone). */
  private taken = new Set<string>();
  /**
   * Runs whose end the database refused even as result_rejected (a row no write of the node
   * can change): not written again, and not failed as lost by checkOwned. Only this term's;
   * the worker's recovery ends them. Bounded by the rows that show them live.
   */
  private abandoned = new Set<string>();
  private closed = false;
  /** True while a claim will take this term's ends (see leaveEndsTo). */
  private claimWillTake: () => boolean = () => false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly queries: Statements,
    private readonly workerId: number,
    /** Named in each run's task_run row. */
    private readonly nodeName: string,
    private readonly log: Logger,
    private readonly events: NodeEvents,
  ) {}

  /** Outcomes not yet written, including a batch being written right now. */
  get pending(): number {
    return this.outcomes.length + this.inFlight + this.taken.size;
  }

  /** True while an outcome for this run waits to be written (or is being written). */
  isPending(taskId: number, attempt: number): boolean {
    const key = `${taskId}:${attempt}`;
    return this.outcomes.some((o) => o.outcome.id === taskId && o.outcome.attempt === attempt) || this.inFlightRuns.has(key) || this.taken.has(key) || this.abandoned.has(key);
  }

  /**
   * Hands the ends of term `epoch` that wait to be written to a turnover (the claim that
   * writes them with its own statement, docs/node.md "Slot turnover"), each with its pid if
   * that was not written yet. They stay pending until turnoverDone.
   */
  takeEnds(epoch: number): TaskOutcome[] {
    if (this.closed || this.outcomes.length === 0) return [];
    const ends: TaskOutcome[] = [];
    const rest: typeof this.outcomes = [];
    for (const o of this.outcomes) {
      if (o.epoch !== epoch || o.separate) {
        rest.push(o);
        continue;
      }
      const key = `${o.outcome.id}:${o.outcome.attempt}`;
      const run = this.pids.get(key);
      if (run) {
        o.outcome.pid ??= run.pid;
        this.pids.delete(key);
      }
      this.taken.add(key);
      ends.push(o.outcome);
    }
    this.outcomes = rest;
    return ends;
  }

  /**
   * While `willClaim` says a claim runs or is about to, ends wait for it (takeEnds) instead of
   * going in a statement of their own: most ends then ride a turnover at 32 slots too, where a
   * claim is nearly always in flight. claimDone hands back what it did not take.
   */
  leaveEndsTo(willClaim: () => boolean): void {
    this.claimWillTake = willClaim;
  }

  /** The claim loop stopped: ends it left are written now, on their own. */
  claimDone(): void {
    if (this.outcomes.length > 0) this.schedule();
  }

  /**
   * A turnover's ends are back: written (`ended`: the runs whose end landed; the others are no
   * longer this term's), or not (null: nothing committed, or the reply was lost). Those go on
   * their own, split if a row is refused (after a lost reply that committed, they change
   * nothing: each end is conditional on its run still being live).
   */
  turnoverDone(epoch: number, ends: TaskOutcome[], ended: ReadonlySet<string> | null): void {
    for (const o of ends) this.taken.delete(`${o.id}:${o.attempt}`);
    if (ended === null) {
      this.outcomes.push(...ends.map((outcome) => ({ epoch, outcome, separate: true })));
      this.schedule();
      return;
    }
    this.warnNotOwned(epoch, ends, ended);
  }

  /** Writes again after stop() (a new writer starts written-to at once: nothing to do). */
  start(): void {
    this.closed = false;
  }

  /** Stops retrying: the pool is about to end. What is still pending is reported by the caller. */
  stop(): void {
    this.closed = true;
    this.abandoned.clear();
    if (this.pidTimer) clearTimeout(this.pidTimer);
    this.pidTimer = null;
  }

  recordPid(epoch: number, taskId: number, attempt: number, pid: number): void {
    // Stopped: nothing is written any more, so nothing is kept or armed for it.
    if (this.closed) return;
    if (this.pidEpoch !== epoch) this.pids.clear();
    this.pidEpoch = epoch;
    this.pids.set(`${taskId}:${attempt}`, { id: taskId, attempt, pid, at: performance.now() });
    this.pidTimer ??= setTimeout(() => {
      this.pidTimer = null;
      this.schedule();
    }, PID_DELAY_MS);
  }

  finish(epoch: number, outcome: TaskOutcome): void {
    // A pid still pending goes with the outcome: finishRuns writes it to the task row too, so
    // a task that ended before its pid was written still shows the pid it ran as.
    this.outcomes.push({ epoch, outcome });
    this.schedule();
  }

  /** Drops what was recorded under terms other than `epoch` (the lease was lost). */
  dropStale(currentEpoch: number | null): void {
    const stale = this.outcomes.filter((o) => o.epoch !== currentEpoch);
    if (stale.length > 0) {
      this.log.warn(
        { tasks: stale.map((o) => o.outcome.id) },
        'dropping results of tasks whose lease term ended: another node may own them now',
      );
      this.outcomes = this.outcomes.filter((o) => o.epoch === currentEpoch);
    }
    if (this.pidEpoch !== currentEpoch) this.pids.clear();
    this.abandoned.clear();
  }

  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  /**
   * For a stopping node: writes what is pending, trying again until `timeoutMs` has passed
   * (a database that stays down must not keep the node from exiting), then stops.
   */
  async drain(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while ((this.pending > 0 || this.pids.size > 0) && performance.now() < deadline) {
      await this.flush(true);
      if (this.pending > 0) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    this.stop();
  }

  /**
   * Writes what is pending (pids younger than PID_DELAY_MS only with `all`, or with their run's
   * outcome); resolves when it is written or given up on.
   */
  async flush(all = false): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.closed || (this.pids.size === 0 && this.outcomes.length === 0)) return;
    this.flushing = this.writeOnce(all).finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  private async writeOnce(all: boolean): Promise<void> {
    const pidEpoch = this.pidEpoch;
    let outcomes = this.outcomes;
    this.outcomes = [];
    if (!all && this.claimWillTake()) {
      // A claim will write these with its own statement (takeEnds), all but those a
      // turnover gave back; claimDone schedules this again if it does not.
      this.outcomes = outcomes.filter((o) => !o.separate);
      outcomes = outcomes.filter((o) => o.separate);
    }
    // The pids to write on their own: not those whose outcome goes now (finishRuns writes
    // them), and not those younger than PID_DELAY_MS (their run may end first).
    const ending = new Map(outcomes.map((o) => [`${o.outcome.id}:${o.outcome.attempt}`, o.outcome]));
    const pids = new Map<string, { id: number; attempt: number; pid: number; at: number }>();
    const youngerThan = performance.now() - PID_DELAY_MS;
    for (const [key, run] of this.pids) {
      if (ending.has(key)) {
        const outcome = ending.get(key)!;
        outcome.pid ??= run.pid;
        this.pids.delete(key);
      } else if (all || run.at <= youngerThan) {
        pids.set(key, run);
        this.pids.delete(key);
      }
    }
    if (this.pids.size > 0 && !this.pidTimer && !this.closed) {
      const oldest = Math.min(...[...this.pids.values()].map((r) => r.at));
      this.pidTimer = setTimeout(() => {
        this.pidTimer = null;
        this.schedule();
      }, Math.max(1, oldest + PID_DELAY_MS - performance.now()));
    }
    if (pids.size === 0 && outcomes.length === 0) return;
    this.inFlight = outcomes.length;
    this.inFlightRuns = new Set(outcomes.map((o) => `${o.outcome.id}:${o.outcome.attempt}`));
    // What this pass has written (or given up on), so that a failure part way through a split
    // batch keeps only the rest.
    const done = new Set<string>();
    try {
      if (pids.size > 0 && pidEpoch !== null) {
        // A pid the database refuses alone is dropped: the run's end writes it again.
        await writeBisected(
          [...pids.values()],
          async (runs) => {
            await this.queries.recordPids(this.pool, { workerId: this.workerId, epoch: pidEpoch, runs });
            for (const run of runs) pids.delete(`${run.id}:${run.attempt}`);
          },
          (run, error) => {
            pids.delete(`${run.id}:${run.attempt}`);
            this.log.warn({ task: run.id, attempt: run.attempt, err: error.message }, 'pid not written: the database refused its row; the run\'s end will write it');
          },
        );
      }
      const byEpoch = new Map<number, TaskOutcome[]>();
      for (const { epoch, outcome } of outcomes) {
        const list = byEpoch.get(epoch) ?? [];
        list.push(outcome);
        byEpoch.set(epoch, list);
      }
      for (const [epoch, list] of byEpoch) {
        await writeBisected(
          list,
          (runs) => this.writeEnds(epoch, runs, done),
          (outcome, error) => this.reject(epoch, outcome, error, done),
        );
      }
      this.backoff.reset();
      this.inFlight = 0;
      this.inFlightRuns.clear();
    } catch (error) {
      // Keep what was not written and try again: the database may be restarting. Newer pids win.
      for (const [key, run] of pids) if (!this.pids.has(key)) this.pids.set(key, run);
      this.outcomes = [...outcomes.filter((o) => !done.has(`${o.outcome.id}:${o.outcome.attempt}`)), ...this.outcomes];
      this.inFlight = 0;
      this.inFlightRuns.clear();
      const retryInMs = this.backoff.next();
      // The split-brain guard said it once already: its refusals are not news.
      this.log[isStaleServer(error) ? 'debug' : 'warn']({ err: (error as Error).message, retryInMs }, 'could not write task results; retrying');
      this.events.publish('results:retry', { error: (error as Error).message, retryInMs });
      await new Promise((resolve) => setTimeout(resolve, retryInMs));
      this.schedule();
    }
  }

  /** One finishRuns statement; its runs go to `done` once it has committed. */
  private async writeEnds(epoch: number, runs: TaskOutcome[], done: Set<string>): Promise<void> {
    const { rows } = await this.queries.finishRuns(this.pool, { workerId: this.workerId, epoch, nodeName: this.nodeName, runs });
    for (const o of runs) done.add(`${o.id}:${o.attempt}`);
    this.warnNotOwned(epoch, runs, new Set(rows.map((r) => `${r.id}:${r.attempt}`)));
  }

  private warnNotOwned(epoch: number, runs: TaskOutcome[], ended: ReadonlySet<string>): void {
    if (ended.size >= runs.length) return;
    // Only a run that is no longer this term's: recovered by another node after this one
    // lost its lease, or deleted. What users write to the task row never causes it.
    this.log.warn(
      { runs: runs.filter((o) => !ended.has(`${o.id}:${o.attempt}`)).map((o) => `${o.id}:${o.attempt}`), epoch },
      'results not written: these runs are no longer owned by this lease term (recovered elsewhere, or deleted)',
    );
  }

  /**
   * A run whose end the database refuses on its own (a trigger of the user's that raises, a
   * value a constraint refuses): it ends CF 'result_rejected' with the database's error, and
   * without the output or what it said on fd 3 (either may be what was refused; its live output
   * stays in task_output).
   * If even that is refused, it is left to the worker's recovery. Logged once either way.
   */
  private async reject(epoch: number, outcome: TaskOutcome, refusal: Error, done: Set<string>): Promise<void> {
    const key = `${outcome.id}:${outcome.attempt}`;
    const error = `Result rejected by the database: ${refusal.message}`;
    const rejected: TaskOutcome = { ...outcome, state: 'CF', endReason: 'result_rejected', error, output: '' };
    delete rejected.control;
    let written = true;
    try {
      await this.writeEnds(epoch, [rejected], done);
    } catch (again) {
      if (!isRowError(again)) throw again;
      written = false;
      done.add(key);
      this.abandoned.add(key);
    }
    const fields = { task: outcome.id, attempt: outcome.attempt, state: outcome.state, endReason: outcome.endReason, err: refusal.message };
    if (written) this.log.error(fields, 'result rejected by the database: the run ended CF (result_rejected); the rest of its batch was written');
    else this.log.error(fields, 'result rejected by the database, even as result_rejected: the run is left to the recovery of this worker');
    this.events.publish('results:rejected', { taskId: outcome.id, attempt: outcome.attempt, error: refusal.message, written });
  }
}
