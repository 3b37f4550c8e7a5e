import type pg from 'pg';
import type { Logger } from 'pino';

/** Which cluster a server belongs to, and where in its history it stands. */
export interface ServerIdentity {
  /** pg_control_system().system_identifier: fixed at initdb, shared by its physical replicas. */
  systemId: string;
  /** The timeline it writes on: a promotion moves the promoted server to a higher one. */
  timeline: number;
}

/** A connection refused by the guard: the server is a stale old primary, or another cluster. */
export class StaleServerError extends Error {
  override readonly name = 'StaleServerError';
}

/** Whether the guard refused this, so a part that retries may stay quiet (the guard said it once). */
export function isStaleServer(error: unknown): boolean {
  return error instanceof StaleServerError;
}

/**
 * The split-brain guard of one node (issue 26; docs/production.md, "Replicas and promotion").
 * Every connection of the node (its pool, its listener, its lock session) is admitted here
 * once, at connect: the server's system_identifier and timeline are read, and the guard keeps
 * the first identifier and the highest timeline it has seen. A server of another cluster, or
 * on a timeline older than one already seen, is refused: the connection fails, so nothing of
 * the node is renewed, claimed or written there. Host selection asks the guard too and skips
 * such a server for the next host of the list. When a higher timeline shows up (a promoted
 * standby), the connections still open to the older one are cut, as a server's termination
 * would cut them: the parts reconnect, through host selection, to the new primary.
 *
 * Nothing here runs per statement: the cost is one statement per new connection.
 */
export class ServerGuard {
  private systemId: string | null = null;
  private highest = 0;
  /** Open connections and what they were admitted on: cut when a higher timeline is seen. */
  private readonly admitted = new Map<pg.Client, ServerIdentity>();
  /** The node stands by (a refusal was logged); the next admission ends it, with one line. */
  private refusing = false;
  /** The identity cannot be read here (privileges): the guard is off, said once. */
  private off = false;

  constructor(
    private readonly read: (db: pg.ClientBase) => Promise<ServerIdentity>,
    private readonly log: Logger,
  ) {}

  /** The highest timeline seen, for the worker row (0: none yet). */
  get timeline(): number {
    return this.highest;
  }

  /** Why a server of this identity is refused, or null. */
  refusal(identity: ServerIdentity): string | null {
    if (this.systemId !== null && identity.systemId !== this.systemId) {
      return `its system_identifier ${identity.systemId} is not ${this.systemId}, the cluster this node has worked on: another cluster`;
    }
    if (identity.timeline < this.highest) {
      return `it is on timeline ${identity.timeline}, older than timeline ${this.highest} already seen: a stale old primary`;
    }
    return null;
  }

  /** Reads the identity of a connected server; null when it cannot be read (the guard is then off). */
  async identify(db: pg.ClientBase): Promise<ServerIdentity | null> {
    if (this.off) return null;
    try {
      return await this.read(db);
    } catch (error) {
      const e = error as Error & { code?: string };
      // 42501: pg_control_system() revoked from PUBLIC; 42883: a server without it.
      if (e.code !== '42501' && e.code !== '42883') throw error;
      this.off = true;
      this.log.warn({ err: e.message }, 'cannot read the server\'s system_identifier and timeline: the split-brain guard is off (GRANT EXECUTE ON FUNCTION pg_control_system(), pg_control_checkpoint() TO the node\'s role)');
      return null;
    }
  }

  /**
   * Admits a connection that has just connected to `where`, or throws StaleServerError (the
   * caller closes it). Called by the node's clients (SelectingClient) before their first use.
   */
  async admit(client: pg.Client, where: string): Promise<void> {
    const identity = await this.identify(client);
    if (!identity) return;
    const refused = this.refusal(identity);
    if (refused) throw this.refuse(`${where}: ${refused}`);
    this.systemId ??= identity.systemId;
    if (this.refusing) {
      this.refusing = false;
      this.log.info({ server: where, timeline: identity.timeline }, 'split-brain guard: a server on the newest timeline answers again; carrying on');
    }
    if (identity.timeline > this.highest) this.raise(identity.timeline, where);
    this.admitted.set(client, identity);
    client.once('end', () => this.admitted.delete(client));
  }

  /**
   * The error for a refused server; the first of a standby episode is logged (one line), the
   * rest are not: every part that retries meets the same refusal.
   */
  refuse(reason: string): StaleServerError {
    const error = new StaleServerError(`split-brain guard: refused ${reason}`);
    if (!this.refusing) {
      this.refusing = true;
      this.log.error({ reason }, 'split-brain guard: standing by: no lease renewal, claim or result is written on this server; trying the hosts again');
    }
    return error;
  }

  private raise(timeline: number, where: string): void {
    const was = this.highest;
    this.highest = timeline;
    let cut = 0;
    for (const [client, identity] of this.admitted) {
      if (identity.timeline >= timeline) continue;
      this.admitted.delete(client);
      cut++;
      // As a server's termination would: the pool drops the client, the listener and the lock
      // session reconnect (through host selection, which skips the older timeline now).
      (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    }
    if (was > 0) this.log.warn({ timeline, was, server: where, cut }, 'split-brain guard: a newer timeline (a promotion): connections to the older one cut');
  }
}
