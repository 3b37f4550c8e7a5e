import type pg from 'pg';
import type { Logger } from 'pino';
import { describeError } from '../../db/errors.js';
import { isStaleServer } from '../../db/server-guard.js';
import type { Statements } from '../../sql/queries/index.js';
import type { TaskOutcome } from '../runs/result-writer.js';
import { isRowError } from '../runs/row-errors.js';
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
  /** A schedule's copy: the slot it stands for (PG_TASKS_SLOT); else null. */
  shed_slot: Date | null;
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
  /** CPUs (cpu.max of the run's cgroup; applied only where runs get cgroups with cpu). */
  cpu_max: number | null;
  /** The heartbeat timeout in force (the task's, else its group's); null = none (docs/control.md). */
  heartbeat_ms: number | null;
  /** Of a task with depends_on: its prerequisites' results, a JSON object by task id (text); else null. */
  dependency_results: string | null;
}

/**
 * A row of the claim's reply: a claimed task, or (id null, when nothing was claimed) only
 * wake_ms. wake_ms, on every row: a key held back by its rate (migration 27) frees a start in
 * this many ms; null: none was.
 */
export type ClaimReplyRow = (ClaimedRow & { wake_ms: number | null }) | ({ [K in keyof ClaimedRow]: null } & { wake_ms: number });

/** What the claim needs from its node. */
export interface ClaimHost {
  /** Active, not stopping, stop code 0, lease trusted. */
  canClaim(): boolean;
  freeSlots(): number;
  /** The lease term the claim is made under (the claim succeeds only while it is current); null: none held. */
  epoch(): number | null;
  /** claimedAt: performance.now() when the claim statement was sent. */
  start(row: ClaimedRow, epoch: number, claimedAt: number): void;
  /** The live runs of term `epoch` after a failed claim: those with no process here are lost claims. */
  lostClaims(runs: Array<{ id: number; attempt: number }>, epoch: number): void;
  /** The ends of term `epoch` waiting to be written, for the claim to write in its statement (none: claim alone). */
  takeEnds(epoch: number): TaskOutcome[];
  /** Those ends are back: `ended` names the runs written ("id:attempt"); null: the statement failed. */
  endsDone(epoch: number, ends: TaskOutcome[], ended: ReadonlySet<string> | null): void;
  /** The claim loop stopped: ends left for it are the writer's again. */
  claimDone(): void;
}

/**
 * The node's claim loop: one statement (claimTasks) at a time, for as many tasks as there are
 * free slots, run while a hint says work may wait. A claim that comes back short clears the
 * hint, so a node with an empty queue issues no statement when its tasks end. (Short because
 * of a limit: the end of a run that frees room sends a new hint. Short because a key held
 * some back: the hint stands, as other tasks may wait behind them. Short because a key's rate
 * held some back: the claim says when the window frees a start, and a timer hints then.)
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
  /** A key's rate held tasks back: claim again when its window frees a start (wakeAt: performance.now()). */
  private wakeTimer: NodeJS.Timeout | null = null;
  private wakeAt = Infinity;
  private inFlight: Promise<void> | null = null;
  /**
   * A claim runs or is about to, and will claim (the hint stands): the ends that arrive now
   * wait for it (see takeEnds) rather than go in a statement of their own.
   */
  get willClaim(): boolean {
    return this.running && (this.claiming || this.scheduled) && this.queueHint && this.host.canClaim();
  }

  /** Between start() and stop(): requests are taken. */
  private running = false;
  /**
   * The term of a claim that failed: it may have committed with its reply lost (a cut
   * connection, a failover). Before the next claim, the term's live runs are read, and those
   * with no process here are queued again at once (lost claims, no attempt), not half a lease
   * later at a renewal.
   */
  private unsure: number | null = null;

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
    this.clearWake();
  }

  /**
   * Claims again in `ms` (a rate's window frees a start then): the one timer keeps the
   * earliest instant asked for. (+1 ms: the claim's window must have moved past the start.)
   */
  private wakeIn(ms: number): void {
    const at = performance.now() + Math.ceil(ms) + 1;
    if (this.wakeTimer && this.wakeAt <= at) return;
    this.clearWake();
    this.wakeAt = at;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = null;
      this.wakeAt = Infinity;
      this.hint();
    }, at - performance.now());
  }

  private clearWake(): void {
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeTimer = null;
    this.wakeAt = Infinity;
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
    let epoch: number | null = null;
    try {
      // Claims run one at a time, so none is in flight now: every live run of the term that
      // this node has not heard of came from the failed claim.
      if (this.unsure !== null) {
        const term = this.unsure;
        if (this.host.epoch() === term) this.host.lostClaims((await this.queries.termRuns(this.pool, { workerId: t.workerId, epoch: term })).rows, term);
        this.unsure = null;
      }
      do {
        this.again = false;
        while (this.running && this.queueHint && this.host.canClaim()) {
          const free = this.host.freeSlots();
          if (free <= 0) break;
          epoch = this.host.epoch();
          if (epoch === null) break;
          const seen = this.hintSeq;
          const sentAt = performance.now();
          const params = { groupId: t.groupId, workerId: t.workerId, freeSlots: free, epoch, nodeName: t.nodeName, checkCommands: t.commands === 'allowlist' };
          // A slot turnover: the ends that freed the slots go in the claim's own statement
          // (one round trip, one commit; docs/node.md "Slot turnover").
          const ends = this.host.takeEnds(epoch);
          let reply: { rows: ClaimReplyRow[] };
          if (ends.length > 0) {
            try {
              const combined = await this.queries.turnover(this.pool, { ...params, runs: ends });
              this.host.endsDone(epoch, ends, new Set(combined.rows[0]?.ended ?? []));
              reply = combined as { rows: ClaimReplyRow[] };
            } catch (error) {
              this.host.endsDone(epoch, ends, null);
              if (!isRowError(error)) throw error;
              // An end's row refused (nothing of the statement committed): these ends are
              // written on their own (endsDone), split down to the bad row, and never ride a
              // turnover again; the claim goes again, alone or with other ends.
              this.log.debug({ err: describeError(error, this.schema) }, 'turnover refused: its ends are written on their own');
              continue;
            }
          } else {
            // A prepared statement (see claimTasks): each pooled connection plans the claim once, not per claim.
            reply = await this.queries.claimTasks(this.pool, params);
          }
          const wakeMs = reply.rows[0]?.wake_ms ?? null;
          if (wakeMs !== null && this.running) this.wakeIn(wakeMs);
          const rows = reply.rows.filter((r): r is ClaimedRow & { wake_ms: number | null } => r.id !== null);
          this.events.publish('claim', { asked: free, claimed: rows.length, ms: performance.now() - sentAt });
          const heldBack = rows.length > 0 && rows[0]!.candidates > rows.length;
          if (rows.length < free && !heldBack && this.hintSeq === seen) this.queueHint = false;
          rows.sort((a, b) => a.priority - b.priority || +a.last_state_change - +b.last_state_change || a.id - b.id);
          for (const row of rows) this.host.start(row, epoch, sentAt);
          if (rows.length === 0) break;
        }
      } while (this.again);
    } catch (error) {
      if (epoch !== null) this.unsure = epoch;
      this.log[isStaleServer(error) ? 'debug' : 'warn']({ err: describeError(error, this.schema) }, 'claim failed; retrying');
      this.retryTimer ??= setTimeout(() => {
        this.retryTimer = null;
        this.request();
      }, 1_000);
    } finally {
      this.claiming = false;
      this.inFlight = null;
      settle();
      this.host.claimDone();
    }
  }
}
