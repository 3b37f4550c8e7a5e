import pg from 'pg';
import type { Logger } from 'pino';
import { clientConfig, poolConfig, resolveSchema } from '../db/connection.js';
import { describeError } from '../db/errors.js';
import { Listener, type Notification } from '../db/listener.js';
import { prepareSchema } from '../db/migrate.js';
import { loadQueries, type Queries } from '../db/queries.js';
import { Lease, type RenewResult } from './lease/lease.js';
import { LeaseKeeper } from './lease/lease-keeper.js';
import type { NodeOptions, ShutdownMode } from './options.js';
import { ResultWriter } from './runs/result-writer.js';
import { OutputWriter } from './runs/output-writer.js';
import type { KillReason } from './runs/run.js';
import { LiveRuns } from './runs/live-runs.js';
import { ListenCheck } from './lease/listen-check.js';
import { Scheduler } from './timers/scheduler.js';
import { DelayedTasks } from './timers/delayed.js';
import { Retention } from './timers/retention.js';
import { readWatchAll, readWatchTimes, recoverWorker, settleOldTerms } from './recovery/recovery.js';
import { RecoveryWatch } from './recovery/recovery-watch.js';
import { LockSession } from './lease/lock-session.js';
import { Reaper } from './process/reaper.js';
import { Spawner } from './process/spawner.js';
import { spawnPolicy } from './process/spawn-policy.js';
import { Claimer } from './claim/claimer.js';
import type { Part } from './part.js';
import { NodeEvents, type NodeState } from './events.js';
import { logNodeEvents } from './event-log.js';

export type { NodeState };

/** See LockSession: a standby's pause before it watches again after its session was lost. */
const LOCK_WATCH_GRACE_MS = 2_000;

/**
 * A pg-tasks node: serves one worker id of one group. The parts are wired here:
 * Lease (who may run the worker), Listener (wake-ups), the claim, TaskProcess (the OS
 * processes) and ResultWriter (batched writes back). See docs/node.md.
 */
export class TaskNode {
  /** What happens in the node, for logs, metrics and health (see NodeEventMap). */
  readonly events: NodeEvents;
  private nodeState: NodeState = 'starting';
  /** The worker row's stop code as last read. */
  stopCode = 0;
  readonly schema: string;
  readonly exited: Promise<void>;

  private readonly log: Logger;
  private readonly queries: Queries;
  private pool: pg.Pool | null = null;
  private listener: Listener | null = null;
  private lease: LeaseKeeper | null = null;
  private lockSession: LockSession | null = null;
  private recoveryWatch: RecoveryWatch | null = null;
  private writer: ResultWriter | null = null;
  private output: OutputWriter | null = null;
  private scheduler: Scheduler | null = null;
  private delayed: DelayedTasks | null = null;
  private readonly reaper = new Reaper();
  private spawner: Spawner | null = null;
  private runs: LiveRuns | null = null;
  private claimer: Claimer | null = null;
  private readonly listenCheck: ListenCheck;
  /** The parts that work only while this node holds the lease (a term). */
  private termParts: Part[] = [];
  private stopping = false;
  private resolveExited!: () => void;

  constructor(readonly options: NodeOptions) {
    this.schema = resolveSchema(options.schema);
    this.queries = loadQueries(this.schema);
    this.log = options.logger.child({ worker: options.workerId, group: options.groupId });
    this.listenCheck = new ListenCheck(options.workerId, options.leaseSeconds);
    this.events = new NodeEvents(this.log);
    logNodeEvents(this.events, this.log);
    this.exited = new Promise((resolve) => {
      this.resolveExited = resolve;
    });
  }

  get state(): NodeState {
    return this.nodeState;
  }

  private set state(state: NodeState) {
    if (state === this.nodeState) return;
    this.nodeState = state;
    this.events.publish('state', { state });
  }

  /** Holds the lease (and trusts it) and hears notifications: what /readyz reports. */
  get ready(): { active: boolean; listening: boolean } {
    return { active: this.nodeState === 'active' && (this.lease?.held ?? false), listening: this.listener?.connected ?? false };
  }

  /** Processes running now. */
  get running(): number {
    return this.runs?.size ?? 0;
  }

  /** Waiting tasks per group (ready, delayed), for /metrics. */
  async queueDepth(): Promise<Array<{ group_id: number; ready: number; delayed: number }>> {
    if (!this.pool) return [];
    const { rows } = await this.pool.query<{ group_id: number; ready: number; delayed: number }>(this.queries.queueDepth);
    return rows;
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
      const applied = await prepareSchema(pool, this.schema, o.migrate);
      if (applied.length > 0) this.log.info({ applied }, 'migrated');
      const writer = new ResultWriter(pool, this.queries, o.workerId, o.nodeName, this.log, this.events);
      this.writer = writer;
      const output = new OutputWriter(pool, this.queries, this.schema, o.outputKeep, this.log, this.events);
      output.start();
      this.output = output;
      const policy = await spawnPolicy(o);
      const runs = new LiveRuns({ pool, queries: this.queries, workerId: o.workerId }, { ...o, policy }, () => this.spawner, this.reaper, writer, this.log, { ended: () => this.onRunEnded() }, this.events, output);
      this.runs = runs;
      const lockSession = new LockSession(clientConfig({ connectionString: o.connectionString }), this.queries, o.workerId, LOCK_WATCH_GRACE_MS, this.log, {
        released: () => this.lease?.lockReleased(),
        held: (pid) => this.lease?.lockHeld(pid),
      });
      this.lockSession = lockSession;
      this.lease = new LeaseKeeper(new Lease(pool, this.queries, o, this.log), o.leaseSeconds, this.schema, this.log, {
        gained: (epoch, stop, oldDueInMs) => this.onLeaseGained(epoch, stop, oldDueInMs),
        standingBy: (heldBy, lockedUntil) => {
          this.state = 'standby';
          this.events.publish('lease:standby', { heldBy, lockedUntil });
        },
        renewing: (epoch) => this.renewal(epoch),
        renewed: (result, epoch, ms) => this.onRenewed(result, epoch, ms),
        lost: (reason, trustedForMs) => this.onLeaseLost(reason, trustedForMs),
        // The reaper keeps the fence too, should this process be paused (see reaper-process.js).
        fenceMoved: (ms) => this.reaper.fence(ms),
      }, lockSession);
      this.scheduler = new Scheduler(pool, this.queries, o.groupId, this.log, () => this.hint(), this.events);
      this.delayed = new DelayedTasks(pool, this.queries, o.groupId, this.log);
      const retention = new Retention(pool, this.queries, o.nodeName, o.retentionEveryMs, this.log);
      this.recoveryWatch = new RecoveryWatch(
        (id) => recoverWorker(pool, this.queries, id, o.workerId, o.recoveryDelaySeconds, this.log),
        (id) => readWatchTimes(pool, this.queries, id, o.workerId, o.recoveryDelaySeconds),
        o.recoveryDelaySeconds * 1000,
        this.log,
      );
      this.termParts = [this.scheduler, this.delayed, retention, this.recoveryWatch];
      this.claimer = new Claimer(pool, this.queries, this.schema, o, this.log, {
        canClaim: () => this.canClaim(),
        freeSlots: () => o.maxTasks - runs.size,
        epoch: () => this.lease!.epoch!,
        start: (row, epoch, claimedAt) => {
          // A claim's reply that comes back after the fence (or a take-over) starts nothing:
          // its rows stay marked live under that term and are recovered with it.
          if (this.lease!.held && this.lease!.epoch === epoch) runs.start(row, epoch, claimedAt);
          else this.log.warn({ task: row.id, attempt: row.attempt, epoch }, 'claimed after the lease ended: not started, left to recovery');
        },
      }, this.events);
      const listener = new Listener(clientConfig({ connectionString: o.connectionString }), this.schema, this.log);
      listener.on('notification', (n: Notification) => this.onNotification(n));
      listener.on('connected', (reconnect: boolean) => {
        this.events.publish('listener:connected', { reconnect });
        this.listenCheck.reset();
        this.resync();
      });
      listener.on('disconnected', (error: Error) => this.events.publish('listener:lost', { error: error.message }));
      this.listener = listener;
      await listener.start();
      this.reaper.start();
      this.spawner = await Spawner.create(o.spawner, this.log);
      lockSession.start();
    } catch (error) {
      await this.close();
      throw error;
    }
    this.lease.start();
  }

  private onLeaseGained(epoch: number, stop: number, oldDueInMs: number | null): void {
    const o = this.options;
    this.writer!.dropStale(epoch);
    if (this.stopping) return;
    this.state = 'active';
    this.log.info({ epoch, maxTasks: o.maxTasks, node: o.nodeName, commands: o.commands }, 'lease taken; node active');
    this.events.publish('lease:gained', { epoch, workerId: o.workerId });
    this.applyStop(stop, true);
    this.resync();
    if (!this.stopping) for (const part of this.termParts) part.start();
    if (!this.stopping) void this.watchWorkers(o.workerId, oldDueInMs);
  }

  /**
   * Arms the recovery timers as soon as a term begins (the first renewal is half a lease
   * away), including the old terms of a take-over from a node whose session ended.
   */
  private async watchWorkers(workerId: number, oldDueInMs: number | null): Promise<void> {
    if (oldDueInMs !== null) this.recoveryWatch?.oldTerms(workerId, oldDueInMs);
    try {
      const rows = await readWatchAll(this.pool!, this.queries, workerId, this.options.recoveryDelaySeconds);
      if (this.state === 'active') this.recoveryWatch?.update(rows);
    } catch (error) {
      this.log.warn({ err: describeError(error) }, 'could not read the workers to watch; the next renewal will');
    }
  }

  /** What a renewal carries: the running count, and a ping that checks LISTEN end to end. */
  private renewal(epoch: number): { taskCount: number; ping: string } {
    if (this.listener?.connected && this.listenCheck.silent) {
      this.log.warn('LISTEN delivered nothing since the last renewal, not even its ping: reconnecting the listener');
      this.listener.reconnect();
    }
    return { taskCount: this.runs!.size, ping: this.listenCheck.nextPing(epoch) };
  }

  /** The renewal doubles as the node's safety resync (see renewLease). */
  private onRenewed(result: RenewResult, epoch: number, ms: number): void {
    this.events.publish('lease:renewed', { epoch, ms });
    this.listenCheck.pingSent();
    this.applyStop(result.stop);
    if (result.hasWaiting) this.hint();
    if (result.hasCancels) this.checkCancels();
    this.recoveryWatch?.update(result.watch);
    this.runs!.checkOwned(result.owned, epoch);
  }

  private onLeaseLost(reason: string, trustedForMs: number): void {
    this.events.publish('lease:lost', { reason });
    for (const part of this.termParts) part.stop();
    // Dead by the fence, whatever --kill-grace says: another node may recover these tasks at
    // the lease's end + the delay (the reaper's fence stays armed, should this node stall).
    const graceMs = Math.min(this.options.killGraceMs, Math.max(0, Math.floor(trustedForMs)));
    this.runs!.killAll({ state: 'CF', endReason: 'worker_failed', error: `Worker lost its lease: ${reason}`, leaveToRecovery: true }, graceMs);
    if (!this.stopping) this.state = 'standby';
  }

  private onNotification(n: Notification): void {
    const o = this.options;
    if (n.e === 'queued' && n.g === o.groupId) this.hint();
    else if (n.e === 'ping') {
      if (n.w === o.workerId) this.listenCheck.onPing(n as { w?: number; k?: number; n?: number }, this.lease?.epoch);
      else if (typeof n.w === 'number') this.recoveryWatch?.renewed(n.w, n.l);
    }
    else if (n.e === 'schedule' && n.g === o.groupId) this.scheduler?.rearm();
    else if (n.e === 'delayed' && n.g === o.groupId) this.delayed?.rearm();
    else if (n.e === 'cancel' && n.w === o.workerId) this.checkCancels();
    else if (n.e === 'worker' && n.w === o.workerId) {
      if (this.state === 'standby') this.lease?.wake();
      else void this.refreshWorker();
    } else if (n.e === 'worker' && typeof n.w === 'number' && this.state === 'active') this.recoveryWatch?.changed(n.w);
  }

  /** After (re)connecting: notifications may have been missed, so read the rows again. */
  private resync(): void {
    if (this.state !== 'active') return;
    this.hint();
    this.checkCancels();
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

  /** A run ended: its slot is free; a node told to stop when idle (stop code 2) may now. */
  private onRunEnded(): void {
    if (this.runs!.size === 0 && this.stopCode === 2 && !this.stopping) void this.shutdown('drain', 'worker stop code 2', true);
    this.claimer?.request();
  }

  private checkCancels(): void {
    void this.runs?.checkCancels(this.lease?.epoch ?? null);
  }

  private async refreshWorker(): Promise<void> {
    try {
      const { rows } = await this.pool!.query<{ stop: number; lease_epoch: number }>(this.queries.readWorker, [this.options.workerId]);
      if (!rows[0]) return;
      // A newer term: another node took this worker over (its standby, after this node's
      // lock session ended). End this term's processes now, not at the next renewal.
      this.lease?.takenOver(rows[0].lease_epoch);
      this.applyStop(rows[0].stop);
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
      this.log.info({ running: this.runs!.size }, 'stop code 2: no new tasks; exiting when the running ones end');
      if (this.runs!.size === 0) void this.shutdown('drain', 'worker stop code 2', true);
    } else if (stop === 3) {
      this.log.info({ running: this.runs!.size }, 'stop code 3: cancelling the running tasks, then exiting');
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
      if (mode === 'cancel') this.runs?.killAll(cancelReason);
      return this.exited;
    }
    this.stopping = true;
    for (const part of this.termParts) part.stop();
    const leaseStopped = this.lease?.stop();
    this.state = 'stopping';
    this.log.info({ mode, reason, running: this.runs?.size ?? 0 }, 'node stopping');
    if (mode === 'cancel') this.runs?.killAll(cancelReason);
    // No claim starts from now on (canClaim is false); one in flight still starts its tasks.
    await this.claimer?.settled();
    if (mode === 'cancel') this.runs?.killAll(cancelReason);
    await this.runs?.idle();
    await this.writer?.drain(15_000);
    // A take on its way when the stop began may have come back with a term: nothing ran
    // under it, and it is released below like any other.
    await leaseStopped;
    if (this.lease?.held) await settleOldTerms(this.pool!, this.queries, this.options.workerId, this.options.recoveryDelaySeconds, this.log);
    await this.lease?.close();
    if (this.lease && this.lease.epoch !== null) {
      // Released only when every result is written: otherwise the row stays active, and
      // whoever takes it over recovers those tasks.
      if (this.writer!.pending === 0) {
        await this.lease.release(clearStop).catch((error: unknown) =>
          this.log.warn({ err: describeError(error) }, 'could not release the lease'),
        );
      } else {
        this.log.error({ pending: this.writer!.pending }, 'results not written; leaving the lease to lapse so the worker is recovered');
      }
    }
    await this.close();
    this.log.info('node stopped');
  }

  private async close(): Promise<void> {
    // Let go of the worker's lock only now: after the lease's release, so that a standby
    // woken by it finds the worker free, not a holder without its lock.
    await this.lockSession?.stop();
    this.reaper.stop();
    this.spawner?.stop();
    for (const part of this.termParts) part.stop();
    this.writer?.close();
    this.output?.stop();
    await this.lease?.close();
    this.claimer?.stop();
    await this.listener?.stop();
    await this.pool?.end().catch(() => undefined);
    this.state = 'stopped';
    this.resolveExited();
  }
}
