import pg from 'pg';
import type { Logger } from 'pino';
import { createClient } from '../../db/connection.js';
import { isStaleServer } from '../../db/server-guard.js';
import type { Statements } from '../../sql/queries/index.js';
import { Backoff } from '../../lib/backoff.js';
import type { Service } from '../services.js';

/** What the lock session tells the lease keeper. */
export interface LockSessionEvents {
  /** The holder's lock was let go (its session ended): a standby looks at the worker now. */
  released(): void;
  /** This node's session holds the worker's lock; `pid` is its backend. */
  held(pid: number): void;
}

type Want = 'none' | 'hold' | 'watch';

/**
 * The worker's session advisory lock, on a connection of its own (migration 15). The node
 * holding the lease holds the lock ('hold'); PostgreSQL lets go of it the moment that session
 * ends — the node died, or its connection was cut — which no lease can tell in less than a
 * lease. A standby waits for that ('watch'): a shared request, queued behind the holder's
 * exclusive one, granted once no holder is left; it lets go at once and says so (released).
 *
 * The lock is a wake-up and a witness (lock_pid), never a permission: who may run what is
 * still decided by the worker row's term, so a lock that is lost, late or stolen costs
 * speed, never safety (docs/failover.md).
 */
export class LockSession implements Service {
  private client: pg.Client | null = null;
  private backendPid: number | null = null;
  private want: Want = 'none';
  /** The exclusive lock is granted on the current connection. */
  private holding = false;
  /** The request in flight on the current connection; it may wait for long. */
  private pending: 'hold' | 'watch' | null = null;
  /** Each connection's number: a reply from an older one is ignored. */
  private generation = 0;
  private connecting = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private graceTimer: NodeJS.Timeout | null = null;
  /** performance.now() before which no watch is sent: the grace after the session was lost. */
  private watchNotBefore = 0;
  /** A session was lost (or could not be had) since the last connection. */
  private hadLoss = false;
  private readonly backoff = new Backoff(100, 1_000, 0.3);
  private stopped = false;

  constructor(
    private readonly config: pg.ClientConfig,
    private readonly queries: Statements,
    private readonly workerId: number,
    /**
     * After a reconnect, a standby waits this long before it watches again: when the
     * database restarted, every session ended, the holder's too, and the holder should have
     * the time to take its lock back before a standby reads its absence as a death.
     */
    private readonly watchGraceMs: number,
    private readonly log: Logger,
    private readonly events: LockSessionEvents,
  ) {}

  /** The backend holding the worker's lock for this node, or null. */
  get heldPid(): number | null {
    return this.holding ? this.backendPid : null;
  }

  /** Hold the worker's lock (this node holds the lease). */
  hold(): void {
    this.want = 'hold';
    if (this.holding || this.pending === 'hold') return;
    if (this.pending === 'watch') this.reconnect(false);
    else this.apply();
  }

  /** Wait for the holder's lock to be let go, once; let go of this node's own first. */
  watch(): void {
    this.want = 'watch';
    if (this.pending === 'watch') return;
    if (this.pending === 'hold') this.reconnect(false);
    else this.apply();
  }

  start(): void {
    this.stopped = false;
    void this.connect();
  }

  /** Ends the session: whatever it held is let go. */
  async stop(): Promise<void> {
    this.stopped = true;
    const client = this.client;
    this.drop();
    await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    if (this.stopped || this.connecting || this.client) return;
    this.connecting = true;
    const client = createClient({ ...this.config, keepAlive: true });
    try {
      client.on('error', (error) => this.lost(client, error));
      client.on('end', () => this.lost(client, new Error('connection ended')));
      await client.connect();
      const { rows } = await this.queries.lockSessionStart(client);
      if (this.stopped) {
        await client.end().catch(() => undefined);
        return;
      }
      this.client = client;
      this.backendPid = rows[0]!.pid;
      this.generation++;
      this.backoff.reset();
      // The grace starts when the database answers again: after a restart, the holder needs
      // that long to take its lock back, whatever this node was doing meanwhile.
      if (this.hadLoss) this.watchNotBefore = performance.now() + this.watchGraceMs;
      this.hadLoss = false;
    } catch (error) {
      client.removeAllListeners('end');
      await client.end().catch(() => undefined);
      this.log[isStaleServer(error) ? 'debug' : 'warn']({ err: (error as Error).message }, 'worker lock session: could not connect; retrying');
      this.hadLoss = true;
      this.scheduleConnect(this.backoff.next());
      return;
    } finally {
      this.connecting = false;
    }
    this.apply();
  }

  /** Sends the request the node wants, on an idle connection. */
  private apply(): void {
    const client = this.client;
    if (!client || this.pending) return;
    const generation = this.generation;
    if (this.want === 'hold' && !this.holding) {
      this.pending = 'hold';
      this.queries.lockSession(client, { workerId: this.workerId }).then(
        () => {
          if (generation !== this.generation) return;
          this.pending = null;
          this.holding = true;
          this.events.held(this.backendPid!);
          // Told to watch meanwhile (the term was lost): let go again.
          if (this.want !== 'hold') this.apply();
        },
        (error: unknown) => this.failed(generation, error),
      );
    } else if (this.want === 'watch' && !this.graceTimer) {
      const waitMs = this.watchNotBefore - performance.now();
      if (waitMs > 0) {
        this.graceTimer = setTimeout(() => {
          this.graceTimer = null;
          this.apply();
        }, waitMs);
        return;
      }
      if (this.holding) {
        this.holding = false;
        this.queries.unlockSession(client, { workerId: this.workerId }).catch((error: unknown) => this.failed(generation, error));
      }
      this.pending = 'watch';
      this.queries.awaitLockRelease(client, { workerId: this.workerId }).then(
        () => {
          if (generation !== this.generation) return;
          this.pending = null;
          // One wake per watch: the keeper asks again once it has looked at the worker row.
          if (this.want === 'watch') this.want = 'none';
          this.queries.releaseShared(client, { workerId: this.workerId }).then(
            () => this.apply(),
            (error: unknown) => this.failed(generation, error),
          );
          this.events.released();
        },
        (error: unknown) => this.failed(generation, error),
      );
    }
  }

  private failed(generation: number, error: unknown): void {
    if (generation !== this.generation || this.stopped) return;
    this.log.warn({ err: (error as Error).message }, 'worker lock session: a request failed; reconnecting');
    this.reconnect(true);
  }

  private lost(client: pg.Client, error: Error): void {
    if (this.client !== client || this.stopped) return;
    this.log.warn({ err: error.message }, 'worker lock session lost; reconnecting');
    this.reconnect(true);
  }

  /**
   * A new connection: the only way to take back a request that is waiting (the server lets
   * go of it once it notices the session ended: client_connection_check_interval). afterLoss: the old one failed.
   */
  private reconnect(afterLoss: boolean): void {
    const client = this.client;
    this.drop();
    if (client) {
      client.removeAllListeners('end');
      client.end().catch(() => undefined);
    }
    if (afterLoss) {
      this.hadLoss = true;
      this.scheduleConnect(this.backoff.next());
    } else {
      void this.connect();
    }
  }

  private scheduleConnect(ms: number): void {
    if (this.stopped || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, ms);
  }

  private drop(): void {
    this.client = null;
    this.backendPid = null;
    this.holding = false;
    this.pending = null;
    this.generation++;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.retryTimer = null;
    this.graceTimer = null;
  }
}
