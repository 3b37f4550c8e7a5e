import type { Logger } from 'pino';
import { describeError } from '../../db/errors.js';
import { isStaleServer } from '../../db/server-guard.js';
import { Backoff } from '../../lib/backoff.js';
import type { Lease, RenewResult } from './lease.js';
import type { LockSession } from './lock-session.js';
import type { Service } from '../services.js';

/** What the keeper tells its node. */
export interface LeaseEvents {
  /**
   * A term began: the node may run this worker's tasks. oldDueInMs: the previous term's runs
   * wait this long for their recovery (database time); null when none waits.
   */
  gained(epoch: number, stop: number, oldDueInMs: number | null): void;
  /** Another live node holds the worker: this one waits as its hot standby (told once per wait). */
  standingBy(heldBy: string | null, lockedUntil: Date | null): void;
  /** A renewal is about to be sent: the running count and the LISTEN ping it carries. */
  renewing(epoch: number): { taskCount: number; ping: number };
  /** ms: how long the renewal statement took. */
  renewed(result: RenewResult, epoch: number, ms: number): void;
  /**
   * The term is over (renewal refused, taken over, or not renewed in time): nothing of it may
   * run on. trustedForMs: how long the fence was still ahead (≤ 0: it has passed); the term's
   * processes must be dead by then.
   */
  lost(reason: string, trustedForMs: number): void;
  /** The term is trusted for this many ms more (from a take or a renewal): the fence moved. */
  fenceMoved(ms: number): void;
}

/**
 * How often a waiting standby marks itself seen (standby_seen: pg-tasks workers shows it for
 * 150 s) and reads the holder's lease in database time: its only statement while the holder
 * is healthy, the bound issue 28 sets (1 a minute).
 */
export const STANDBY_MARK_MS = 60_000;

/**
 * The whole life of the worker's lease, in one part (the model: River's
 * internal/leadership): take it, or wait as a standby; renew it every half lease; trust it only
 * until the last renewal + lease − margin (Lease.held), and step down at that fence. It
 * announces each transition; the node reacts to them and never runs the lease loop itself.
 */
export class LeaseKeeper implements Service {
  private renewTimer: NodeJS.Timeout | null = null;
  private fenceTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private wakeStandby: (() => void) | null = null;
  /** performance.now() at which the holder's lease would be recoverable (a standby's deadline). */
  private recoverableAt = 0;
  /** A standby that did not watch the lock after its last look watches at the holder's next ping. */
  private watchOnPing = false;
  /** A wake came since the last look (one during a statement is not lost). */
  private woken = false;
  /** The last wake of the standby came from the lock session (see acquire). */
  private lockWake = false;
  /** A term is held and its timers run. */
  private holding = false;
  /** No new term will be taken (the node is stopping). */
  private stopped = false;
  /** The take loop, while it runs: stopTaking() waits for a take on its way. */
  private acquiring: Promise<void> | null = null;
  /** Renewals on their way: stop() waits for them, so none lands after the pool ends. */
  private readonly renewals = new Set<Promise<void>>();

  constructor(
    private readonly lease: Lease,
    private readonly leaseSeconds: number,
    private readonly schema: string,
    private readonly log: Logger,
    private readonly events: LeaseEvents,
    private readonly session: LockSession,
  ) {}

  get epoch(): number | null {
    return this.lease.epoch;
  }

  /** True while the term may be trusted (see Lease.held). */
  get held(): boolean {
    return this.lease.held;
  }

  /**
   * Takes the lease, waiting as a standby while another node holds it. Again after stop():
   * a new wait for a term (a call while waiting or holding does nothing).
   */
  start(): void {
    if (this.acquiring || this.holding) return;
    this.stopped = false;
    this.startAcquire();
  }

  private startAcquire(): void {
    // A term lost while the last loop was returning starts the next before that one is done.
    const acquiring = this.acquire().finally(() => {
      if (this.acquiring === acquiring) this.acquiring = null;
    });
    this.acquiring = acquiring;
  }

  /** A notification says the worker row changed: a standby looks again at once. */
  wake(): void {
    this.woken = true;
    this.wakeStandby?.();
  }

  /** The lock session says the holder's lock was let go: a standby looks at once. */
  lockReleased(): void {
    this.lockWake = true;
    this.woken = true;
    this.wakeStandby?.();
  }

  /** This node's lock session got the worker's lock (or lost it: null): the term's row names it (lock_pid). */
  lockHeld(pid: number | null): void {
    if (!this.holding) return;
    this.lease.setLockPid(pid).catch((error: unknown) => this.log.warn({ err: describeError(error, this.schema) }, 'could not record the lock session'));
  }

  /** The worker row has a newer term than the one held: it was taken over. */
  takenOver(epoch: number): void {
    if (this.holding && this.lease.epoch !== null && epoch > this.lease.epoch) this.lose('another node took over this worker');
  }

  /**
   * Takes no new term; the one held (if any) is still renewed until stop(). Resolves once a
   * take that was on its way has come back: the node then knows whether it holds a term it
   * must release (a standby stopped while the holder let go may have just taken one).
   */
  stopTaking(): Promise<void> {
    this.stopped = true;
    this.wakeStandby?.();
    return this.acquiring ?? Promise.resolve();
  }

  /**
   * Takes no new term and stops renewing: the node has ended what ran under the term (or is
   * gone). Resolves when no lease statement of this keeper is on its way, so the pool may end.
   */
  async stop(): Promise<void> {
    await this.stopTaking();
    this.holding = false;
    this.clearTimers();
    await Promise.all(this.renewals);
  }

  /** Ends the term cleanly; see Lease.release. */
  release(clearStop: boolean): Promise<void> {
    return this.lease.release(clearStop);
  }

  private async acquire(): Promise<void> {
    let announced = false;
    const backoff = new Backoff(100, 5_000);
    const halfLease = (this.leaseSeconds * 1000) / 2;
    while (!this.stopped) {
      try {
        const lockWake = this.lockWake;
        this.lockWake = false;
        this.woken = false;
        const result = await this.lease.take(this.session.heldPid, lockWake);
        backoff.reset();
        if (result.taken) {
          this.holding = true;
          this.armFence();
          this.renewTimer = setInterval(() => this.renewSoon(), halfLease);
          this.session.hold();
          this.events.gained(result.epoch, result.stop, result.oldDueInMs);
          return;
        }
        // Stopped while the take was on its way: no wait and no watch.
        if (this.stopped) return;
        if (!announced) {
          this.events.standingBy(result.heldBy, result.lockedUntil);
          announced = true;
        }
        // Wait for the holder's lock to be let go. Not again at once after a wake that found
        // the holder alive (it runs its term without the lock for now, which a standby's
        // shared request does not wait behind): the next notification about the worker (it
        // got the lock: lock_pid) or the holder's next renewal ping watches again, so nothing spins.
        this.watchOnPing = lockWake;
        if (!lockWake) this.session.watch();
        await this.standBy(result.recoverableInMs ?? halfLease);
      } catch (error) {
        // A refusal of the split-brain guard was logged once by the guard.
        this.log[isStaleServer(error) ? 'debug' : 'warn']({ err: describeError(error, this.schema) }, 'could not take the lease; retrying');
        await this.sleep(backoff.next());
      }
    }
  }

  /**
   * A standby's wait, with no statement but one mark a minute (issue 28: it used to look at
   * the worker row every half lease, 30 statements a minute). It ends on a wake (a notification
   * about the worker, the holder's lock let go, stopTaking), or when the holder's lease would
   * be recoverable: each renewal ping of the holder puts that off (holderRenewed), so the
   * timer fires only for a holder that stopped renewing (paused, or its pings lost) — as soon
   * as before, since the ping arrives after the renewal committed.
   */
  private async standBy(recoverableInMs: number): Promise<void> {
    this.recoverableAt = performance.now() + recoverableInMs + 10;
    let markAt = performance.now() + STANDBY_MARK_MS;
    while (!this.stopped && !this.woken) {
      const now = performance.now();
      if (now >= this.recoverableAt) return;
      if (now >= markAt) {
        const ms = await this.lease.standbySeen();
        if (ms === null) return;
        markAt = performance.now() + STANDBY_MARK_MS;
        this.recoverableAt = performance.now() + ms + 10;
        continue;
      }
      // A timer that fires before a later ping's deadline only loops: no statement.
      if (await this.sleep(Math.max(Math.min(this.recoverableAt, markAt) - now, 50))) return;
    }
  }

  /**
   * A renewal ping of this worker's holder (another node): its lease runs `leaseSeconds` from
   * now at most, since the renewal committed before the ping was sent.
   */
  holderRenewed(leaseSeconds: number): void {
    if (this.holding || !Number.isFinite(leaseSeconds)) return;
    this.recoverableAt = performance.now() + leaseSeconds * 1000 + this.lease.recoveryDelayMs + 10;
    if (this.watchOnPing) {
      this.watchOnPing = false;
      this.session.watch();
    }
  }

  /** Resolves true when woken, false when the time is up. */
  private sleep(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      this.wakeStandby = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
  }

  private renewSoon(): void {
    const renewal = this.renew().finally(() => this.renewals.delete(renewal));
    this.renewals.add(renewal);
  }

  private async renew(): Promise<void> {
    const epoch = this.lease.epoch;
    if (epoch === null || !this.holding) return;
    try {
      const { taskCount, ping } = this.events.renewing(epoch);
      const sentAt = performance.now();
      const lockPid = this.session.heldPid;
      const result = await this.lease.renew(taskCount, this.schema, ping, lockPid);
      if (!this.holding) return;
      if (!result) {
        this.lose('another node took over this worker');
        return;
      }
      this.armFence();
      // The lock was taken (or lost) while the renewal was on its way: the row says so now.
      if (this.session.heldPid !== lockPid) this.lockHeld(this.session.heldPid);
      this.events.renewed(result, epoch, performance.now() - sentAt);
    } catch (error) {
      // Try again soon, not at the next half lease: that comes after the lease is distrusted,
      // so one failed statement (a dropped connection) would otherwise cost every running task.
      // The fence timer decides when this becomes fatal.
      const retryMs = Math.min(1_000, Math.max(this.lease.remainingMs() / 3, 100));
      this.log[isStaleServer(error) ? 'debug' : 'warn']({ err: describeError(error), trustedForMs: Math.round(this.lease.remainingMs()), retryInMs: Math.round(retryMs) }, 'lease renewal failed');
      if (!this.retryTimer && this.holding) {
        this.retryTimer = setTimeout(() => {
          this.retryTimer = null;
          this.renewSoon();
        }, retryMs);
      }
    }
  }

  /** Fencing: when the lease can no longer be trusted, nothing of this term may run on. */
  private armFence(): void {
    if (this.fenceTimer) clearTimeout(this.fenceTimer);
    this.events.fenceMoved(this.lease.remainingMs());
    this.fenceTimer = setTimeout(() => {
      this.fenceTimer = null;
      // A timer may fire a little before performance.now() reaches its deadline (its start is
      // the event loop's cached time): then arm it again, never let the check pass silently.
      if (this.lease.held) this.armFence();
      else this.lose('could not renew the lease in time');
    }, Math.max(Math.ceil(this.lease.remainingMs()), 1));
  }

  private lose(reason: string): void {
    if (!this.holding) return;
    this.holding = false;
    this.clearTimers();
    const trustedForMs = this.lease.remainingMs();
    this.lease.drop();
    // Let go of the lock at once, so that whoever holds the term now can take it.
    this.session.watch();
    this.events.lost(reason, trustedForMs);
    if (!this.stopped) this.startAcquire();
  }

  private clearTimers(): void {
    if (this.renewTimer) clearInterval(this.renewTimer);
    if (this.fenceTimer) clearTimeout(this.fenceTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.renewTimer = null;
    this.fenceTimer = null;
    this.retryTimer = null;
  }
}
