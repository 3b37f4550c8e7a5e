import type pg from 'pg';
import type { Logger } from 'pino';
import { describeError } from '../../db/errors.js';
import type { Statements } from '../../sql/queries/index.js';
import type { NodeEvents } from '../events.js';
import type { NodeOptions, ShutdownMode } from '../options.js';
import { buildParts, type NodeContext, type NodeParts } from '../parts.js';
import { startAll, stopAll, stopAllAtOnce } from '../services.js';
import { shutdownNode } from './shutdown.js';
import type { NodeStatus } from './status.js';
import { applyStopCode, StopCode, toStopCode } from './stop-code.js';

/**
 * A started node's parts and the reactions that tie them together: when to claim, what to
 * read again after a reconnect, the stop code, the term's parts. The parts call in here;
 * nothing here runs a loop or a timer of its own.
 */
export class NodeControl {
  readonly parts: NodeParts;
  readonly options: NodeOptions;
  readonly log: Logger;
  readonly events: NodeEvents;
  readonly status: NodeStatus;
  readonly pool: pg.Pool;
  readonly queries: Statements;
  private starting: Promise<void> = Promise.resolve();

  constructor(c: NodeContext) {
    this.options = c.options;
    this.log = c.log;
    this.events = c.events;
    this.status = c.status;
    this.pool = c.pool;
    this.queries = c.queries;
    this.parts = buildParts(c, this);
  }

  /** After (re)connecting: notifications may have been missed, so read the rows again. */
  resync(): void {
    if (this.status.state !== 'active') return;
    this.hint();
    this.checkCancels();
    void this.refreshWorker();
    this.parts.scheduler.rearm();
    this.parts.delayed.rearm();
  }

  hint(): void {
    this.parts.claimer.hint();
  }

  canClaim(): boolean {
    const s = this.status;
    return s.state === 'active' && !s.stopping && s.stopCode === StopCode.run && this.parts.lease.held;
  }

  /** A run ended: its slot is free; a node told to stop when idle (drain) may now. */
  onRunEnded(): void {
    if (this.parts.runs.size === 0 && this.status.stopCode === StopCode.drain && !this.status.stopping) void this.shutdown('drain', 'worker stop code 2', true);
    this.parts.claimer.request();
  }

  checkCancels(): void {
    void this.parts.runs.checkCancels(this.parts.lease.epoch);
  }

  /** Reads this worker's row again: its stop code, and whether a newer term took it over. */
  async refreshWorker(): Promise<void> {
    try {
      const { rows } = await this.queries.readWorker(this.pool, { workerId: this.options.workerId });
      if (!rows[0]) return;
      // A newer term: another node took this worker over (its standby, after this node's
      // lock session ended). End this term's processes now, not at the next renewal.
      this.parts.lease.takenOver(rows[0].lease_epoch);
      this.applyStop(rows[0].stop);
    } catch (error) {
      this.log.warn({ err: describeError(error) }, 'could not read the worker row');
    }
  }

  /** The worker row's stop code, as just read (`initial`: the first of a term). */
  applyStop(stop: number, initial = false): void {
    const previous = this.status.stopCode;
    const code = toStopCode(stop);
    // A stopping node obeys only a cancel (it escalates a drain): its own release clears the
    // code to 0, which is not "claiming again".
    if (this.status.stopping && code !== StopCode.cancel) return;
    this.status.stopCode = code;
    const host = { log: this.log, running: () => this.parts.runs.size, hint: () => this.hint(), shutdown: this.shutdown.bind(this) };
    applyStopCode(host, previous, code, initial);
  }

  /** A term began: start the parts that work only under a term. */
  startTerm(): void {
    this.run(startAll(this.parts.termServices), 'could not start the parts of the term');
  }

  /** The term ended (or the node stops): nothing of those parts fires any more. */
  stopTerm(): void {
    this.run(stopAllAtOnce(this.parts.termServices), 'could not stop the parts of the term');
  }

  /** See shutdownNode. */
  shutdown(mode: ShutdownMode, reason: string, clearStop: boolean): Promise<void> {
    return shutdownNode(this, mode, reason, clearStop);
  }

  /** Starts the node's parts in their declared order (see parts.ts). */
  start(): Promise<void> {
    this.starting = startAll(this.parts.services);
    return this.starting;
  }

  /**
   * Stops every part, in reverse of their start, then ends the pool: the node has stopped.
   * A start still on its way ends first, so that what it starts late is stopped too.
   */
  async close(): Promise<void> {
    await this.starting.catch(() => undefined);
    const failed = (error: unknown): void => this.log.error({ err: describeError(error) }, 'a part did not stop cleanly');
    await stopAllAtOnce(this.parts.termServices).catch(failed);
    await stopAll(this.parts.services).catch(failed);
    await this.pool.end().catch(() => undefined);
    this.status.stopped();
  }

  private run(work: Promise<void>, what: string): void {
    work.catch((error: unknown) => this.log.error({ err: describeError(error) }, what));
  }
}
