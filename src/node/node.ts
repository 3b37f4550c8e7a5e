import pg from 'pg';
import type { Logger } from 'pino';
import { poolConfig, resolveSchema } from '../db/connection.js';
import { prepareSchema } from '../db/migrate.js';
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
  private readonly queries: Statements;
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
    const pool = new pg.Pool(poolConfig({ connectionString: o.connectionString }, { max: 4 }));
    // An idle pooled connection that drops is not the node's failure; the next query reconnects.
    pool.on('error', (error) => this.log.warn({ err: error.message }, 'idle database connection lost'));
    let control: NodeControl;
    try {
      const applied = await prepareSchema(pool, this.schema, o.migrate);
      if (applied.length > 0) this.log.info({ applied }, 'migrated');
      const policy = await spawnPolicy(o);
      control = new NodeControl({ options: o, schema: this.schema, queries: this.queries, log: this.log, events: this.events, pool, policy, status: this.status });
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
