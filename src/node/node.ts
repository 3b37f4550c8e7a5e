import pg from 'pg';
import type { Logger } from 'pino';
import { clientConfig, describeUrl, detectTransactionPooling, poolConfig, resolveSchema, resolveSessionUrl } from '../db/connection.js';
import { prepareSchema } from '../db/migrate.js';
import { ServerGuard } from '../db/server-guard.js';
import { loadStatements, type Statements } from '../sql/queries/index.js';
import { queueDepth, type QueueDepth } from './claim/queue-depth.js';
import { NodeControl } from './control/control.js';
import { NodeStatus } from './control/status.js';
import type { StopCode } from './control/stop-code.js';
import { logNodeEvents } from './event-log.js';
import { NodeEvents, type NodeState } from './events.js';
import type { NodeOptions, ShutdownMode } from './options.js';
import { spawnPolicy } from './process/spawn-policy.js';

export type { NodeState };

/**
 * A pg-tasks node: serves one worker id of one group. It builds its parts (parts.ts) once its
 * pool and schema are ready, starts them in their declared order and stops them in reverse
 * (services.ts); what ties them together is NodeControl. See docs/node.md.
 */
export class TaskNode {
  /** What happens in the node, for logs, metrics and health (see NodeEventMap). */
  readonly events: NodeEvents;
  readonly schema: string;
  readonly exited: Promise<void>;

  private readonly log: Logger;
  private queries: Statements;
  private readonly status: NodeStatus;
  /** The started node's parts: null before start(). */
  private control: NodeControl | null = null;

  constructor(readonly options: NodeOptions) {
    this.schema = resolveSchema(options.schema);
    this.queries = loadStatements(this.schema);
    this.log = options.logger.child({ worker: options.workerId, group: options.groupId });
    this.events = new NodeEvents(this.log);
    logNodeEvents(this.events, this.log);
    this.status = new NodeStatus(this.events);
    this.exited = this.status.exited;
  }

  get state(): NodeState {
    return this.status.state;
  }

  /** The worker row's stop code as last read. */
  get stopCode(): StopCode {
    return this.status.stopCode;
  }

  /** Holds the lease (and trusts it) and hears notifications: what /readyz reports. */
  get ready(): { active: boolean; listening: boolean } {
    const parts = this.control?.parts;
    return { active: this.status.state === 'active' && (parts?.lease.held ?? false), listening: parts?.listener.connected ?? false };
  }

  /** Processes running now. */
  get running(): number {
    return this.control?.parts.runs.size ?? 0;
  }

  /** Waiting tasks per group (ready, delayed), for /metrics. */
  async queueDepth(): Promise<QueueDepth[]> {
    return this.control ? queueDepth(this.control.pool, this.queries) : [];
  }

  /** The pid of the spawn helper, when tasks start through one (for diagnostics and tests). */
  get spawnerPid(): number | undefined {
    return this.control?.parts.spawner.current?.pid;
  }

  /** Connects, migrates, listens, then holds the lease (waiting as a standby if needed). */
  async start(): Promise<void> {
    const o = this.options;
    const sessionUrl = resolveSessionUrl({ connectionString: o.connectionString, sessionUrl: o.sessionUrl });
    const poolUrl = o.connectionString ?? process.env.DATABASE_URL;
    try {
      await this.checkSession(sessionUrl, poolUrl);
    } catch (error) {
      this.status.stopped();
      throw error;
    }
    // Named prepared statements (parsed and planned once per connection) only where the pool
    // is known to be sessions: the session URL, checked above. A pool URL of its own is
    // taken for a pooler's.
    this.queries = loadStatements(this.schema, { named: sessionUrl === poolUrl });
    const queries = this.queries;
    // Every connection of the node is admitted by it: see ServerGuard (split brain).
    const guard = new ServerGuard(async (db) => {
      const row = (await queries.serverIdentity(db)).rows[0]!;
      return { systemId: row.system_id, timeline: row.timeline };
    }, this.log);
    // Up to 4 under load (the claim, the result and output writers, a renewal at once); at
    // rest 1: the others close after 10 s unused, the last stays (min), so a renewal every
    // half lease or the first claim after a quiet spell finds it open, with no connect and no
    // guard statement. A node at rest holds 3: this one, the listener and the lock session
    // (docs/scaling.md).
    const pool = new pg.Pool(poolConfig({ connectionString: o.connectionString }, { max: 4, min: 1, idleTimeoutMillis: 10_000 }, guard));
    // An idle pooled connection that drops is not the node's failure; the next query reconnects.
    pool.on('error', (error) => this.log.warn({ err: error.message }, 'idle database connection lost'));
    let control: NodeControl;
    try {
      // A migration holds a session advisory lock: on the session URL.
      const applied = await this.withSessionPool(sessionUrl, poolUrl, pool, (p) => prepareSchema(p, this.schema, o.migrate));
      if (applied.length > 0) this.log.info({ applied }, 'migrated');
      const policy = await spawnPolicy(o);
      control = new NodeControl({ options: o, schema: this.schema, queries: this.queries, log: this.log, events: this.events, pool, guard, policy, status: this.status });
    } catch (error) {
      await pool.end().catch(() => undefined);
      this.status.stopped();
      throw error;
    }
    // Shut down while it was connecting: it stays stopped.
    if (this.status.stopping) return control.close();
    this.control = control;
    try {
      await control.start();
    } catch (error) {
      await control.close();
      throw error;
    }
  }

  /**
   * Refuses a session URL behind a transaction pooler: LISTEN would hear nothing and the
   * worker lock would be let go after each statement (the lease bouncing between nodes).
   */
  private async checkSession(sessionUrl: string | undefined, poolUrl: string | undefined): Promise<void> {
    const config = clientConfig({ connectionString: sessionUrl, sessionUrl });
    const seen = await detectTransactionPooling(config, async (db) => (await this.queries.backendPid(db)).rows[0]!.pid);
    if (!seen) return;
    const where = describeUrl(sessionUrl);
    throw new Error(
      sessionUrl === poolUrl
        ? `${where} is a transaction pooler (${seen}): LISTEN and the worker lock need a session; point --session-url (PGTASKS_SESSION_URL) at PostgreSQL itself or at a session-mode pool, and keep DATABASE_URL on the pooler`
        : `the session URL ${where} is a transaction pooler (${seen}): point --session-url (PGTASKS_SESSION_URL) at PostgreSQL itself or at a session-mode pool`,
    );
  }

  private async withSessionPool<T>(sessionUrl: string | undefined, poolUrl: string | undefined, pool: pg.Pool, fn: (pool: pg.Pool) => Promise<T>): Promise<T> {
    if (sessionUrl === poolUrl) return fn(pool);
    const session = new pg.Pool(poolConfig({ connectionString: sessionUrl }, { max: 1 }));
    session.on('error', () => undefined);
    try {
      return await fn(session);
    } finally {
      await session.end().catch(() => undefined);
    }
  }

  /**
   * Two-phase stop (see shutdownNode): claim nothing more; end the running tasks (cancel) or
   * wait for them (drain); write their results; release the lease; stop the parts. Calling
   * it again while draining escalates to cancel. Resolves when the node has stopped.
   */
  async shutdown(mode: ShutdownMode = this.options.shutdown, reason = 'shutdown requested', clearStop = false): Promise<void> {
    if (this.control) return this.control.shutdown(mode, reason, clearStop);
    this.status.stopping = true;
    this.status.stopped();
    return this.exited;
  }
}
