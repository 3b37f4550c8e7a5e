import type pg from 'pg';
import type { Logger } from 'pino';
import { describeError } from '../../db/errors.js';
import type { Statements } from '../../sql/queries/index.js';
import type { NodeEvents } from '../events.js';
import type { CommandsMode } from '../options.js';
import type { Service } from '../services.js';

export interface ClaimedRow {
  id: number;
  /** The run this claim started. */
  attempt: number;
  command: string[];
  cwd: string | null;
  params: unknown;
  priority: number;
  last_state_change: Date;
  /** The timeout in force for this run (the task's, else its group's); null = none. */
  timeout_ms: number | null;
  /** Claimed from the tasks pinned to this worker (worker_id set when it was queued). */
  pinned: boolean;
  /** How many tasks the claim read (the same on every row): more than it took = some were held back by their concurrency_key. */
  candidates: number;
  /** Checked against the allowlist (else both null): the absolute path to exec, or why it may not run. */
  exec_path: string | null;
  refusal: string | null;
  /** The task's run_as, else its group's (null: the node's own user). */
  run_as: string | null;
  /** The group's pass_env and env. */
  pass_env: string[] | null;
  env: Record<string, unknown> | null;
  /** Each the smaller of the task's and the group's; null: none. */
  memory_max: number | null;
  cpu_seconds_max: number | null;
  open_files_max: number | null;
  pids_max: number | null;
}

/** What the claim needs from its node. */
export interface ClaimHost {
  /** Active, not stopping, stop code 0, lease trusted. */
  canClaim(): boolean;
  freeSlots(): number;
  /** The lease term the claim is made under (the claim succeeds only while it is current); null: none held. */
  epoch(): number | null;
  /** claimedAt: performance.now() when the claim statement was sent. */
  start(row: ClaimedRow, epoch: number, claimedAt: number): void;
}

/**
 * The node's claim loop: one statement (claimTasks) at a time, for as many tasks as there are
 * free slots, run while a hint says work may wait. A claim that comes back short clears the
 * hint, so a node with an empty queue issues no statement when its tasks end. (Short because
 * of a limit: the end of a run that frees room sends a new hint. Short because a key held
 * some back: the hint stands, as other tasks may wait behind them.)
 */
export class Claimer implements Service {
  // Every hint bumps hintSeq, so a claim that comes back short clears the hint only if no new
  // hint arrived while it ran.
  private queueHint = true;
  private hintSeq = 0;
  private claiming = false;
  private again = false;
  private scheduled = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  /** Between start() and stop(): requests are taken. */
  private running = false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly queries: Statements,
    private readonly schema: string,
    private readonly target: { groupId: number; workerId: number; nodeName: string; commands: CommandsMode },
    private readonly log: Logger,
    private readonly host: ClaimHost,
    private readonly events: NodeEvents,
  ) {}

  /** Work may be waiting (a notification, a renewal, a resync): claim. */
  hint(): void {
    this.queueHint = true;
    this.hintSeq++;
    this.request();
  }

  /** A slot freed or the node's state changed: claim if the hint still stands. */
  request(): void {
    if (!this.running) return;
    if (this.claiming) {
      this.again = true;
      return;
    }
    if (this.scheduled) return;
    // Deferred one turn so that a burst of exits frees all its slots before one claim.
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.loop();
    });
  }

  start(): void {
    this.running = true;
  }

  /** Takes no request any more; a claim in flight ends as it would (see settled). */
  stop(): void {
    this.running = false;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  /**
   * Resolves when no claim is in flight. A stopping node waits for it before it counts its
   * runs: a claim that commits meanwhile starts its tasks, and they must be ended (or waited
   * for) like the others, not found later with nothing answering for them.
   */
  settled(): Promise<void> {
    return this.inFlight ?? Promise.resolve();
  }

  /** Claims run one at a time; requests arriving meanwhile fold into one more round. */
  private async loop(): Promise<void> {
    if (this.claiming) return;
    this.claiming = true;
    let settle!: () => void;
    this.inFlight = new Promise((resolve) => (settle = resolve));
    const t = this.target;
    try {
      do {
        this.again = false;
        while (this.running && this.queueHint && this.host.canClaim()) {
          const free = this.host.freeSlots();
          if (free <= 0) break;
          const epoch = this.host.epoch();
          if (epoch === null) break;
          const seen = this.hintSeq;
          const sentAt = performance.now();
          // A prepared statement (see claimTasks): each pooled connection plans the claim once, not per claim.
          const { rows } = await this.queries.claimTasks(this.pool, {
            groupId: t.groupId, workerId: t.workerId, freeSlots: free, epoch, nodeName: t.nodeName, checkCommands: t.commands === 'allowlist',
          });
          this.events.publish('claim', { asked: free, claimed: rows.length, ms: performance.now() - sentAt });
          const heldBack = rows.length > 0 && rows[0]!.candidates > rows.length;
          if (rows.length < free && !heldBack && this.hintSeq === seen) this.queueHint = false;
          rows.sort((a, b) => a.priority - b.priority || +a.last_state_change - +b.last_state_change || a.id - b.id);
          for (const row of rows) this.host.start(row, epoch, sentAt);
          if (rows.length === 0) break;
        }
      } while (this.again);
    } catch (error) {
      this.log.warn({ err: describeError(error, this.schema) }, 'claim failed; retrying');
      this.retryTimer ??= setTimeout(() => {
        this.retryTimer = null;
        this.request();
      }, 1_000);
    } finally {
      this.claiming = false;
      this.inFlight = null;
      settle();
    }
  }
}
