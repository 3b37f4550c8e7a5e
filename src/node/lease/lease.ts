import os from 'node:os';
import type pg from 'pg';
import type { Logger } from 'pino';
import { withTransaction } from '../../db/connection.js';
import type { ServerGuard } from '../../db/server-guard.js';
import type { Statements } from '../../sql/queries/index.js';
import { recoverOldTerms } from '../recovery/recovery.js';

export interface LeaseOptions {
  workerId: number;
  groupId: number;
  maxTasks: number;
  nodeName: string;
  /** Seconds a lease lasts; it is renewed every half of it. */
  leaseSeconds: number;
  /** Seconds before the lease ends at which the node stops trusting it (fencing margin). */
  marginSeconds: number;
  /** Seconds a lapsed lease of an active worker waits before a node recovers it. */
  recoveryDelaySeconds: number;
}

export type TakeResult =
  | {
      taken: true;
      epoch: number;
      stop: number;
      /** Old terms of the worker were recovered in the take-over. */
      recovered: boolean;
      /** The previous term was still active: 'lock' its holder's session ended, 'lapse' its lease lapsed. */
      tookOver: 'lock' | 'lapse' | null;
      /** Old terms wait for their recovery this long (database time); null: none waits. */
      oldDueInMs: number | null;
    }
  | { taken: false; heldBy: string | null; lockedUntil: Date | null; recoverableInMs: number | null };

export interface RenewResult {
  stop: number;
  hasWaiting: boolean;
  hasCancels: boolean;
  /** Workers that may need recovering, and in how many ms (database time) each is due. */
  watch: Array<{ id: number; lapse: number | null; old: number | null }>;
  /** Live runs of this term that started more than half a lease ago. */
  owned: Array<{ id: number; attempt: number }>;
}

/**
 * The lease of one worker row. A term is identified by lease_epoch, which every take-over
 * increments; renewals and releases apply only to the term held. The node trusts its lease
 * until (start of the last successful renewal) + lease − margin on its own monotonic clock,
 * which always ends before the database's locked_until does.
 */
export class Lease {
  epoch: number | null = null;
  private trustedUntilMs = 0;

  private readonly options: LeaseOptions;

  constructor(
    private readonly pool: pg.Pool,
    private readonly queries: Statements,
    options: LeaseOptions,
    private readonly log: Logger,
    /** The node's split-brain guard: the worker row records the highest timeline it has seen. */
    private readonly guard: ServerGuard | null = null,
  ) {
    // Renewal happens at half the lease; the margin must end after that, or a short lease
    // would be distrusted before its first renewal. 3 s of a 20 s lease; 0.5 s of a 2 s one.
    this.options = { ...options, marginSeconds: Math.min(options.marginSeconds, options.leaseSeconds / 4) };
  }

  get held(): boolean {
    return this.epoch !== null && performance.now() < this.trustedUntilMs;
  }

  /** Milliseconds left before the node must consider its lease lost. */
  remainingMs(): number {
    return this.trustedUntilMs - performance.now();
  }

  /**
   * Takes the next term if the worker is free: not active, or its holder's lease lapsed past
   * the recovery delay, or its holder's lock session has ended (lock_gone: the node died or
   * was cut off). In the last case its runs are left to recovery when their term's lease +
   * delay has passed, and this term starts on new work at once. `lockPid`: the backend of
   * this node's lock session if it holds the worker's lock, else null. `lockWake`: this look
   * follows this node's own wait for the lock being granted. Only then is lock_gone read as a
   * death: after a database restart every session has ended, the holder's too, and a standby
   * that merely reconnected first must not take over a holder that is about to lock again.
   */
  async take(lockPid: number | null, lockWake: boolean, now: Date | null = null): Promise<TakeResult> {
    const o = this.options;
    const q = this.queries;
    const sentAt = performance.now();
    await q.ensureWorker(this.pool, { workerId: o.workerId, groupId: o.groupId });
    const result = await withTransaction(this.pool, async (client): Promise<TakeResult & { previousNode?: string | null }> => {
      const { rows } = await q.lockWorker(client, { workerId: o.workerId, recoveryDelaySeconds: o.recoveryDelaySeconds, now });
      const row = rows[0]!;
      const lockGone = lockWake && row.lock_gone;
      if (!lockGone && (row.held || (row.active && !row.failed))) {
        // Seen as this worker's standby (pg-tasks workers) until a lease after the last attempt.
        await q.markStandby(client, { workerId: o.workerId, nodeName: o.nodeName });
        return { taken: false, heldBy: row.node_name, lockedUntil: row.locked_until, recoverableInMs: row.recoverable_in_ms };
      }
      // A term that ended cleanly may have left runs no node ever started (orphans). One that
      // is still active ends now: takeLease puts its runs with the old terms, and the recovery
      // policy runs on them once they are due — in this transaction if they already are (the
      // lease lapsed past the delay), else later (RecoveryWatch).
      if (!row.active) await q.failOrphanRuns(client, { workerId: o.workerId, epoch: row.lease_epoch });
      const taken = await q.takeLease(client, {
        workerId: o.workerId, leaseSeconds: o.leaseSeconds, now, nodeName: o.nodeName, host: os.hostname(), pid: process.pid,
        groupId: o.groupId, maxTasks: o.maxTasks, lockPid, recoveryDelaySeconds: o.recoveryDelaySeconds, timeline: this.timeline(),
      });
      const { lease_epoch: epoch, stop, old_epoch: oldEpoch, old_due_in_ms: oldDue } = taken.rows[0]!;
      const recovered = oldEpoch !== null && (await recoverOldTerms(client, q, o.workerId, o.recoveryDelaySeconds, now)) !== null;
      const tookOver = !row.active ? null : row.failed ? 'lapse' : 'lock';
      const oldDueInMs = oldEpoch !== null && !recovered ? oldDue : null;
      return { taken: true, epoch, stop, recovered, tookOver, oldDueInMs, previousNode: row.node_name };
    });
    if (!result.taken) return result;
    // Trusted only once committed: a take-over whose COMMIT failed holds nothing.
    const { previousNode, ...taken } = result;
    this.epoch = taken.epoch;
    this.trustedUntilMs = sentAt + (o.leaseSeconds - o.marginSeconds) * 1000;
    if (taken.tookOver === 'lock') {
      this.log.warn({ worker: o.workerId, previousNode, oldTermsDueInMs: taken.oldDueInMs }, "took over: the holder's session ended; its runs are recovered when its lease + delay has passed");
    } else if (taken.recovered) {
      this.log.warn({ worker: o.workerId, previousNode }, 'recovered failed worker');
    }
    return taken;
  }

  /**
   * Renews the held term; null when the lease was lost (another term began). `ping` is sent
   * on `channel` by the same statement (see renewLease).
   */
  async renew(taskCount: number, channel: string, ping: number, lockPid: number | null): Promise<RenewResult | null> {
    if (this.epoch === null) return null;
    const o = this.options;
    const sentAt = performance.now();
    const { rows } = await this.queries.renewLease(this.pool, {
      workerId: o.workerId, epoch: this.epoch, leaseSeconds: o.leaseSeconds, taskCount, now: null, groupId: o.groupId,
      recoveryDelaySeconds: o.recoveryDelaySeconds, channel, ping, lockPid, timeline: this.timeline(),
    });
    const row = rows[0];
    if (!row) {
      this.epoch = null;
      return null;
    }
    this.trustedUntilMs = sentAt + (o.leaseSeconds - o.marginSeconds) * 1000;
    // bigints in json arrive as numbers or strings: the int8 parser covers columns only.
    return { stop: row.stop, hasWaiting: row.has_waiting, hasCancels: row.has_cancels, watch: row.watch, owned: row.owned.map((r) => ({ id: Number(r.id), attempt: r.attempt })) };
  }

  /** ms the recovery delay adds to a lapsed lease before a standby (or any node) may take over. */
  get recoveryDelayMs(): number {
    return this.options.recoveryDelaySeconds * 1000;
  }

  /**
   * A standby's mark that it still waits (see standbySeen): ms until the holder's lease is
   * recoverable (database time), or null when there is no holder to wait for.
   */
  async standbySeen(): Promise<number | null> {
    const o = this.options;
    const { rows } = await this.queries.standbySeen(this.pool, { workerId: o.workerId, nodeName: o.nodeName, recoveryDelaySeconds: o.recoveryDelaySeconds });
    return rows[0]?.recoverable_in_ms ?? null;
  }

  private timeline(): number | null {
    return this.guard && this.guard.timeline > 0 ? this.guard.timeline : null;
  }

  /** Names this node's lock session on the term's row (lock_pid): see migration 15. */
  async setLockPid(pid: number | null): Promise<void> {
    if (this.epoch === null) return;
    await this.queries.setLockPid(this.pool, { workerId: this.options.workerId, epoch: this.epoch, lockPid: pid });
  }

  /** Ends the term cleanly; call only when none of its processes lives and every result is written. */
  async release(clearStop: boolean): Promise<void> {
    if (this.epoch === null) return;
    const epoch = this.epoch;
    await withTransaction(this.pool, async (client) => {
      await this.queries.failOrphanRuns(client, { workerId: this.options.workerId, epoch });
      await this.queries.releaseLease(client, { workerId: this.options.workerId, epoch, clearStop });
    });
    this.epoch = null;
  }

  /** Forget the lease locally (fencing): from now on nothing is written under it. */
  drop(): void {
    this.epoch = null;
    this.trustedUntilMs = 0;
  }
}
