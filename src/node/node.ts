import pg from 'pg';
import type { Logger } from 'pino';
import { checkoutClient, clientConfig, poolConfig, resolveSchema } from '../db/connection.js';
import { describeError } from '../db/errors.js';
import { Listener, type Notification } from '../db/listener.js';
import { checkSchemaVersion, migrate } from '../db/migrate.js';
import { loadQueries, type Queries } from '../db/queries.js';
import { Lease, type RenewResult } from './lease.js';
import { LeaseKeeper } from './lease-keeper.js';
import type { NodeOptions, ShutdownMode } from './options.js';
import { ResultWriter } from './result-writer.js';
import { Run, type KillReason } from './run.js';
import { Scheduler } from './scheduler.js';
import { DelayedTasks } from './delayed.js';
import { recoverFailedWorker } from './recovery.js';
import { Reaper } from './reaper.js';
import { Spawner } from './spawner.js';
import { Claimer, type ClaimedRow } from './claimer.js';
import { TaskProcess, type ProcessResult, type TaskSpec } from './task-process.js';

export type NodeState = 'starting' | 'standby' | 'active' | 'stopping' | 'stopped';

/**
 * A pg-tasks node: serves one worker id of one group. The parts are wired here:
 * Lease (who may run the worker), Listener (wake-ups), the claim, TaskProcess (the OS
 * processes) and ResultWriter (batched writes back). See docs/node.md.
 */
export class TaskNode {
  state: NodeState = 'starting';
  /** The worker row's stop code as last read. */
  stopCode = 0;
  readonly schema: string;
  readonly exited: Promise<void>;

  private readonly log: Logger;
  private readonly queries: Queries;
  private pool: pg.Pool | null = null;
  private listener: Listener | null = null;
  private lease: LeaseKeeper | null = null;
  private writer: ResultWriter | null = null;
  private scheduler: Scheduler | null = null;
  private delayed: DelayedTasks | null = null;
  private readonly reaper = new Reaper();
  private spawner: Spawner | null = null;
  /**
   * The runs whose processes live here, by task id: a task has at most one live run (the
   * claim waits for it), whatever its row says meanwhile.
   */
  private readonly running = new Map<number, Run>();

  private claimer: Claimer | null = null;

  private idleWaiters: Array<() => void> = [];
  private stopping = false;
  private resolveExited!: () => void;
  // LISTEN health: each renewal sends a ping through NOTIFY; the next renewal checks it came back.
  private pingsSent = 0;
  private pingSending = 0;
  private pingsReceived = 0;
  // Runs ("id:attempt") that ended since the renewal before last: a renewal may have read
  // them as still live. Rotated at each renewal, so they hold only what ended lately.
  private endedRecently = new Set<string>();
  private endedBefore = new Set<string>();

  constructor(readonly options: NodeOptions) {
    this.schema = resolveSchema(options.schema);
    this.queries = loadQueries(this.schema);
    this.log = options.logger.child({ worker: options.workerId, group: options.groupId });
    this.exited = new Promise((resolve) => {
      this.resolveExited = resolve;
    });
  }

  /** The pid of the spawn helper, when tasks start through one (for diagnostics and tests). */
  get spawnerPid(): number | undefined {
    return this.spawner?.pid;
  }

  /** Connects, migrates, listens, then holds the lease (waiting as a standby if needed). */
  async start(): Promise<void> {
    const o = this.options;
    const pool = new pg.Pool(poolConfig({ connectionString: o.connectionString }, { max: 4 }));
    // An idle pooled connection that drops is not the node's failure; the next query reconnects.
    pool.on('error', (error) => this.log.warn({ err: error.message }, 'idle database connection lost'));
    this.pool = pool;
    try {
      const client = await checkoutClient(pool);
      try {
        if (o.migrate) {
          const result = await migrate(client, this.schema);
          if (result.applied.length > 0) this.log.info({ applied: result.applied }, 'migrated');
        } else {
          await checkSchemaVersion(client, this.schema);
        }
      } finally {
        client.release();
      }
      this.writer = new ResultWriter(pool, this.queries, o.workerId, this.schema, this.log);
      this.lease = new LeaseKeeper(new Lease(pool, this.queries, o, this.log), o.leaseSeconds, this.schema, this.log, {
        gained: (epoch, stop) => this.onLeaseGained(epoch, stop),
        standingBy: (heldBy, lockedUntil) => {
          this.state = 'standby';
          this.log.info({ heldBy, lockedUntil }, 'worker is held by another node; standing by');
        },
        renewing: (epoch) => this.renewal(epoch),
        renewed: (result, epoch) => this.onRenewed(result, epoch),
        lost: (reason) => this.onLeaseLost(reason),
      });
      this.scheduler = new Scheduler(pool, this.queries, o.groupId, this.log, () => this.hint());
      this.delayed = new DelayedTasks(pool, this.queries, o.groupId, this.log);
      this.claimer = new Claimer(pool, this.queries, this.schema, o, this.log, {
        canClaim: () => this.canClaim(),
        freeSlots: () => o.maxTasks - this.running.size,
        epoch: () => this.lease!.epoch!,
        start: (row, epoch) => this.startTask(row, epoch),
      });
      const listener = new Listener(clientConfig({ connectionString: o.connectionString }), this.schema, this.log);
      listener.on('notification', (n: Notification) => this.onNotification(n));
      listener.on('connected', () => {
        this.pingsReceived = this.pingsSent;
        this.resync();
      });
      this.listener = listener;
      await listener.start();
      this.reaper.start();
      this.spawner = await Spawner.create(o.spawner, this.log);
    } catch (error) {
      await this.close();
      throw error;
    }
    this.lease.start();
  }

  private onLeaseGained(epoch: number, stop: number): void {
    const o = this.options;
    this.writer!.dropStale(epoch);
    if (this.stopping) return;
    this.state = 'active';
    this.log.info({ epoch, maxTasks: o.maxTasks, node: o.nodeName }, 'lease taken; node active');
    this.applyStop(stop, true);
    this.resync();
    if (!this.stopping) {
      this.scheduler!.start();
      this.delayed!.start();
    }
  }

  /** What a renewal carries: the running count, and a ping that checks LISTEN end to end. */
  private renewal(epoch: number): { taskCount: number; ping: string } {
    if (this.listener?.connected && this.pingsSent > this.pingsReceived) {
      this.log.warn('LISTEN delivered nothing since the last renewal, not even its ping: reconnecting the listener');
      this.listener.reconnect();
    }
    this.pingSending = this.pingsSent + 1;
    return { taskCount: this.running.size, ping: JSON.stringify({ e: 'ping', w: this.options.workerId, k: epoch, n: this.pingSending }) };
  }

  /** The renewal doubles as the node's safety resync (see renewLease). */
  private onRenewed(result: RenewResult, epoch: number): void {
    // Counted once sent: a renewal that failed or matched no row sent no ping.
    this.pingsSent = this.pingSending;
    this.applyStop(result.stop);
    if (result.hasWaiting) this.hint();
    if (result.hasCancels) void this.checkCancels();
    for (const id of result.failedWorkers) void this.recoverWorker(id);
    this.failLostClaims(result.owned, epoch);
    this.endedBefore = this.endedRecently;
    this.endedRecently = new Set();
  }

  private onLeaseLost(reason: string): void {
    this.log.error({ reason }, 'lease lost: killing running tasks and standing by');
    this.scheduler!.stop();
    this.delayed!.stop();
    for (const run of this.running.values()) {
      run.kill({ state: 'CF', endReason: 'worker_failed', error: `Worker lost its lease: ${reason}`, leaveToRecovery: true }, 0);
    }
    if (!this.stopping) this.state = 'standby';
  }

  /**
   * A task this term owns with no process here and no result on its way: its claim committed
   * but the reply was lost (a dropped connection). Nothing answers for it, so it fails now
   * rather than wait for the lease to end.
   */
  private failLostClaims(owned: Array<{ id: number; attempt: number }>, epoch: number): void {
    for (const { id, attempt } of owned) {
      const key = `${id}:${attempt}`;
      if (this.running.get(id)?.attempt === attempt || this.writer!.isPending(id, attempt) || this.endedRecently.has(key) || this.endedBefore.has(key)) continue;
      this.log.error({ task: id, attempt }, 'run claimed under this lease has no process here: failing it');
      this.writer!.finish(epoch, {
        id, attempt, state: 'CF', endReason: 'lost', pid: null, exitCode: null, signal: null, output: '',
        error: 'Lost: the node that claimed it has no process for it (the claim reply was lost)',
      });
    }
  }

  private async recoverWorker(id: number): Promise<void> {
    try {
      await recoverFailedWorker(this.pool!, this.queries, id, this.options.recoveryDelaySeconds, this.log);
    } catch (error) {
      this.log.warn({ failedWorker: id, err: describeError(error) }, 'could not recover a failed worker');
    }
  }

  private onNotification(n: Notification): void {
    const o = this.options;
    if (n.e === 'queued' && n.g === o.groupId) this.hint();
    else if (n.e === 'ping' && n.w === o.workerId && n.k === this.lease?.epoch) this.pingsReceived = Math.max(this.pingsReceived, n.n ?? 0);
    else if (n.e === 'schedule' && n.g === o.groupId) this.scheduler?.rearm();
    else if (n.e === 'delayed' && n.g === o.groupId) this.delayed?.rearm();
    else if (n.e === 'cancel' && n.w === o.workerId) void this.checkCancels();
    else if (n.e === 'worker' && n.w === o.workerId) {
      if (this.state === 'standby') this.lease?.wake();
      else void this.refreshWorker();
    }
  }

  /** After (re)connecting: notifications may have been missed, so read the rows again. */
  private resync(): void {
    if (this.state !== 'active') return;
    this.hint();
    void this.checkCancels();
    void this.refreshWorker();
    this.scheduler?.rearm();
    this.delayed?.rearm();
  }

  private hint(): void {
    this.claimer?.hint();
  }

  private canClaim(): boolean {
    return this.state === 'active' && !this.stopping && this.stopCode === 0 && this.lease!.held;
  }

  private requestClaim(): void {
    this.claimer?.request();
  }

  private startTask(row: ClaimedRow, epoch: number): void {
    const o = this.options;
    const spec: TaskSpec = { id: row.id, command: row.command, cwd: row.cwd, params: row.params };
    let proc: TaskProcess;
    try {
      proc = new TaskProcess(spec, { rootDir: o.rootDir, outputLimit: o.outputLimit }, this.spawner);
    } catch (error) {
      // spawn() throws synchronously for arguments it cannot pass (a NUL byte, a null element).
      this.writer!.finish(epoch, {
        id: row.id, attempt: row.attempt, state: 'CF', endReason: 'spawn_error', pid: null, exitCode: null, signal: null, output: '',
        error: `could not start the process: ${(error as Error).message}`,
      });
      this.requestClaim();
      return;
    }
    const run = new Run(row.id, row.attempt, epoch, proc);
    this.running.set(row.id, run);
    if (row.timeout_ms !== null) run.armTimeout(row.timeout_ms, o.killGraceMs);
    void proc.started.then((pid) => {
      if (pid === undefined) return;
      this.reaper.track(pid);
      this.writer!.recordPid(epoch, row.id, row.attempt, pid);
      this.log.debug({ task: row.id, attempt: row.attempt, pid }, 'task started');
    });
    void proc.done.then((result) => this.onProcessEnd(run, result));
  }

  private onProcessEnd(run: Run, result: ProcessResult): void {
    run.ended();
    if (run.proc.pid !== undefined) this.reaper.untrack(run.proc.pid);
    this.running.delete(run.taskId);
    this.endedRecently.add(run.key);
    const outcome = run.outcome(result);
    const reason = run.reason;
    if (reason?.leaveToRecovery) {
      // Written now, while the term may still hold (the database back before the lease
      // lapsed), it would bypass the recover policy: a 'requeue' task would end CF for good.
      this.log.warn({ task: run.taskId, attempt: run.attempt, reason: reason.error }, 'task killed with the lease lost; left to the recovery of the worker');
    } else {
      this.log.info({ task: run.taskId, attempt: run.attempt, state: outcome.state, endReason: outcome.endReason, exitCode: result.exitCode, signal: result.signal }, 'task ended');
      this.writer!.finish(run.epoch, outcome);
    }
    if (this.running.size === 0) {
      for (const resolve of this.idleWaiters.splice(0)) resolve();
      if (this.stopCode === 2 && !this.stopping) void this.shutdown('drain', 'worker stop code 2', true);
    }
    this.requestClaim();
  }

  private killRuns(reason: KillReason): void {
    for (const run of this.running.values()) run.kill(reason, this.options.killGraceMs);
  }

  private async checkCancels(): Promise<void> {
    const epoch = this.lease?.epoch;
    if (epoch === null || epoch === undefined || this.running.size === 0) return;
    try {
      const { rows } = await this.pool!.query<{ id: number; attempt: number }>(this.queries.cancelRequests, [this.options.workerId, epoch]);
      for (const { id, attempt } of rows) {
        const run = this.running.get(id);
        if (run?.attempt === attempt) run.kill({ state: 'CC', endReason: 'cancelled', error: 'Cancelled' }, this.options.killGraceMs);
      }
    } catch (error) {
      this.log.warn({ err: describeError(error) }, 'could not read cancellations');
    }
  }

  private async refreshWorker(): Promise<void> {
    try {
      const { rows } = await this.pool!.query<{ stop: number }>(this.queries.readWorker, [this.options.workerId]);
      if (rows[0]) this.applyStop(rows[0].stop);
    } catch (error) {
      this.log.warn({ err: describeError(error) }, 'could not read the worker row');
    }
  }

  /** The worker row's stop code, written by users: see design §2. */
  private applyStop(stop: number, initial = false): void {
    const previous = this.stopCode;
    this.stopCode = stop;
    if (stop === previous && !initial) return;
    if (stop === 0) {
      if (!initial) this.log.info('stop code 0: claiming again');
      this.hint();
    } else if (stop === 1) {
      this.log.info('stop code 1: no new tasks; running ones continue');
    } else if (stop === 2) {
      this.log.info({ running: this.running.size }, 'stop code 2: no new tasks; exiting when the running ones end');
      if (this.running.size === 0) void this.shutdown('drain', 'worker stop code 2', true);
    } else if (stop === 3) {
      this.log.info({ running: this.running.size }, 'stop code 3: cancelling the running tasks, then exiting');
      void this.shutdown('cancel', 'worker stop code 3', true);
    }
  }

  /**
   * Two-phase stop: claim nothing more; then end the running tasks (cancel) or wait for them
   * (drain); write their results; release the lease. Calling it again while draining
   * escalates to cancel. Resolves when the node has stopped.
   */
  async shutdown(mode: ShutdownMode = this.options.shutdown, reason = 'shutdown requested', clearStop = false): Promise<void> {
    const cancelReason: KillReason = { state: 'CC', endReason: 'node_stopped', error: `Cancelled: ${reason}` };
    if (this.stopping) {
      if (mode === 'cancel') this.killRuns(cancelReason);
      return this.exited;
    }
    this.stopping = true;
    this.scheduler?.stop();
    this.delayed?.stop();
    this.lease?.stop();
    const wasActive = this.state === 'active';
    this.state = 'stopping';
    this.log.info({ mode, reason, running: this.running.size }, 'node stopping');
    if (mode === 'cancel') this.killRuns(cancelReason);
    // No claim starts from now on (canClaim is false); one in flight still starts its tasks.
    await this.claimer?.settled();
    if (mode === 'cancel') this.killRuns(cancelReason);
    if (this.running.size > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    await this.flushResults();
    this.lease?.close();
    if (wasActive && this.lease?.epoch !== null) {
      // Released only when every result is written: otherwise the row stays active, and
      // whoever takes it over recovers those tasks.
      if (this.writer!.pending === 0) {
        await this.lease!.release(clearStop).catch((error: unknown) =>
          this.log.warn({ err: describeError(error) }, 'could not release the lease'),
        );
      } else {
        this.log.error({ pending: this.writer!.pending }, 'results not written; leaving the lease to lapse so the worker is recovered');
      }
    }
    await this.close();
    this.log.info('node stopped');
  }

  private async flushResults(): Promise<void> {
    // Bounded: a database that stays down must not keep the node from exiting.
    const deadline = performance.now() + 15_000;
    while (this.writer && this.writer.pending > 0 && performance.now() < deadline) {
      await this.writer.flush();
      if (this.writer.pending > 0) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    this.writer?.close();
  }

  private async close(): Promise<void> {
    this.reaper.stop();
    this.spawner?.stop();
    this.scheduler?.stop();
    this.delayed?.stop();
    this.writer?.close();
    this.lease?.close();
    this.claimer?.stop();
    await this.listener?.stop();
    await this.pool?.end().catch(() => undefined);
    this.state = 'stopped';
    this.resolveExited();
  }
}
