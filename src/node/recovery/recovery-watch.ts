import type { Logger } from 'pino';
import { describeError } from '../../db/errors.js';
import { Backoff } from '../../lib/backoff.js';
import type { Service } from '../services.js';
import type { RecoveryResult } from './recovery.js';

/** When a worker may need recovering, in milliseconds from now (database time); null: never. */
export interface WatchTimes {
  /** Its lease will have lapsed past the recovery delay, unless it renews first. */
  lapse: number | null;
  /** Its old terms' recovery is due. */
  old: number | null;
}

interface Watched {
  /** performance.now() deadlines. */
  lapseAt: number | null;
  oldAt: number | null;
  timer: NodeJS.Timeout | null;
}

// A timer may fire a little early (its start is the event loop's cached time), and the due
// time came over the wire: a few ms late costs nothing, early costs a statement.
const SLACK_MS = 5;
const MAX_TIMER_MS = 2 ** 31 - 1;
const SKIPPED_RETRY_MS = 200;

/**
 * Recovery at lease + delay, without polling (issue 14). Every renewal already reads when each
 * other active worker's lease will have lapsed past the recovery delay, and when old terms
 * are due; a timer is armed for each. A worker's renewal sends a ping that every node hears,
 * with its lease length: that puts its timer off, so a living cluster runs no statement for
 * this. A notification about a worker (a take-over, a lease released) makes the node read
 * that one row again. When a timer fires, recoverWorker checks in database time and either
 * recovers or says how long is left. Runs only while the node holds its own lease.
 */
export class RecoveryWatch implements Service {
  private readonly workers = new Map<number, Watched>();
  private readonly inFlight = new Set<number>();
  private readonly retry = new Backoff(500, 5_000, 0.3);
  private running = false;

  constructor(
    private readonly recover: (id: number) => Promise<RecoveryResult | null>,
    private readonly read: (id: number) => Promise<WatchTimes | null>,
    private readonly recoveryDelayMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.running = true;
  }

  stop(): void {
    this.running = false;
    for (const id of [...this.workers.keys()]) this.forget(id);
  }

  /** A renewal's list: every worker that may need recovering, and when. Others are forgotten. */
  update(entries: Array<{ id: number } & WatchTimes>): void {
    if (!this.running) return;
    const listed = new Set<number>();
    for (const entry of entries) {
      listed.add(entry.id);
      this.set(entry.id, entry);
    }
    for (const id of [...this.workers.keys()]) if (!listed.has(id) && !this.inFlight.has(id)) this.forget(id);
  }

  /**
   * Worker `id` renewed its lease just now (its ping): its lease ends at most `leaseSeconds`
   * from now, since the renewal committed before the ping was delivered.
   */
  renewed(id: number, leaseSeconds: number | undefined): void {
    if (!this.running || leaseSeconds === undefined || !Number.isFinite(leaseSeconds)) return;
    const watched = this.workers.get(id);
    const old = watched?.oldAt == null ? null : watched.oldAt - performance.now();
    this.set(id, { lapse: leaseSeconds * 1000 + this.recoveryDelayMs, old });
  }

  /** Something about worker `id` changed (a notification): read when it is due again. */
  changed(id: number): void {
    if (!this.running) return;
    this.read(id).then(
      (times) => {
        if (times) this.set(id, times);
        else this.forget(id);
      },
      (error: unknown) => this.log.warn({ worker: id, err: describeError(error) }, 'could not read a worker to watch'),
    );
  }

  /** This node's take-over left the previous term's runs, due in `ms`. */
  oldTerms(id: number, ms: number): void {
    const watched = this.workers.get(id);
    const lapse = watched?.lapseAt == null ? null : watched.lapseAt - performance.now();
    this.set(id, { lapse, old: ms });
  }

  private set(id: number, times: WatchTimes): void {
    if (!this.running) return;
    const now = performance.now();
    const watched: Watched = this.workers.get(id) ?? { lapseAt: null, oldAt: null, timer: null };
    watched.lapseAt = times.lapse === null ? null : now + times.lapse;
    watched.oldAt = times.old === null ? null : now + times.old;
    if (watched.timer) clearTimeout(watched.timer);
    watched.timer = null;
    const at = Math.min(watched.lapseAt ?? Infinity, watched.oldAt ?? Infinity);
    if (at === Infinity) {
      this.workers.delete(id);
      return;
    }
    this.workers.set(id, watched);
    if (this.inFlight.has(id)) return; // its result arms the next timer
    // Past setTimeout's range (a lease of months), it fires early and finds it is not due yet.
    watched.timer = setTimeout(() => this.fire(id), Math.min(Math.max(at - now, 0) + SLACK_MS, MAX_TIMER_MS));
  }

  private forget(id: number): void {
    const watched = this.workers.get(id);
    if (watched?.timer) clearTimeout(watched.timer);
    this.workers.delete(id);
  }

  private fire(id: number): void {
    const watched = this.workers.get(id);
    if (!this.running || !watched) return;
    watched.timer = null;
    this.inFlight.add(id);
    this.recover(id).then(
      (result) => {
        this.inFlight.delete(id);
        this.retry.reset();
        if (!this.running) return;
        if (result) {
          this.set(id, { lapse: result.lapseInMs, old: result.oldInMs });
        } else {
          // The row was locked (a renewal, a take-over, another node's recovery: SKIP LOCKED)
          // or needs nothing. Look again shortly rather than wait for the next renewal.
          watched.timer = setTimeout(() => {
            watched.timer = null;
            this.changed(id);
          }, SKIPPED_RETRY_MS);
        }
      },
      (error: unknown) => {
        this.inFlight.delete(id);
        const retryMs = this.retry.next();
        this.log.warn({ worker: id, err: describeError(error), retryInMs: Math.round(retryMs) }, 'could not recover a worker; retrying');
        this.set(id, { lapse: watched.lapseAt === null ? null : retryMs, old: watched.oldAt === null ? null : retryMs });
      },
    );
  }
}
