import type pg from 'pg';
import type { Logger } from 'pino';
import { describeError } from '../../db/errors.js';
import type { Statements } from '../../sql/queries/index.js';
import type { NewChunk, Trim } from '../../sql/queries/output.js';
import { Backoff } from '../../lib/backoff.js';
import type { NodeEvents } from '../events.js';
import type { Service } from '../services.js';

/**
 * How often output is written while runs print: a run that prints 100 MB as fast as it can
 * costs 5 statements a second (each at most --output-keep bytes per run), not one per chunk.
 */
const FLUSH_MS = 200;
/** Largest chunk row: a run's pending bytes go out in rows of at most this many. */
const CHUNK_BYTES = 64 * 1024;
/** Tasks named in one notification; more, and it names none ("look again"), like 'ended'. */
const NOTIFY_IDS = 100;

interface RunOutput {
  taskId: number;
  attempt: number;
  /** Bytes before pending[0] in the run's whole output: written, being written, or dropped. */
  written: number;
  nextSeq: number;
  pending: Buffer[];
  pendingBytes: number;
  /** Taken by the flush in flight; put back in front of pending if it fails. */
  sending: Buffer[];
  /** Chunks in task_output, oldest first, to know which to delete past the keep. */
  kept: Array<{ seq: number; size: number }>;
  keptBytes: number;
  /** The lowest seq the table may still hold (older ones were deleted). */
  trimmedTo: number;
  /** Set once the run has ended: resolves when its last bytes are written (or given up on). */
  closed: (() => void) | null;
}

/**
 * Live output: what each run prints reaches task_output while it runs, in one statement per
 * flush for all runs of the node (appendOutput), at most every 200 ms, and at once for a run
 * that ended (its result is written after its output, so a reader that sees the run ended has
 * all of it). At most `keepBytes` per run are kept, in the table and in memory: a run that
 * prints faster than the flushes has its oldest unwritten bytes dropped, and its oldest rows
 * deleted as new ones land. Its memory is bounded by what runs now (entries end with their run).
 */
export class OutputWriter implements Service {
  private readonly runs = new Map<string, RunOutput>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private again = false;
  private running = false;
  private readonly backoff = new Backoff(100, 5_000);

  constructor(
    private readonly pool: pg.Pool,
    private readonly queries: Statements,
    /** The notification channel: the schema's name. */
    private readonly channel: string,
    private readonly keepBytes: number,
    private readonly log: Logger,
    private readonly events: NodeEvents,
  ) {}

  get enabled(): boolean {
    return this.keepBytes > 0;
  }

  start(): void {
    this.running = true;
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const run of this.runs.values()) run.closed?.();
    this.runs.clear();
  }

  /** Where a new run's output goes; null when live output is off. */
  open(taskId: number, attempt: number): ((chunk: Buffer) => void) | null {
    if (!this.enabled) return null;
    const run: RunOutput = {
      taskId, attempt, written: 0, nextSeq: 0, pending: [], pendingBytes: 0, sending: [], kept: [], keptBytes: 0, trimmedTo: 0, closed: null,
    };
    this.runs.set(`${taskId}:${attempt}`, run);
    return (chunk) => this.push(run, chunk);
  }

  /** The run ended: writes what it printed since the last flush; resolves when done. */
  close(taskId: number, attempt: number): Promise<void> {
    const key = `${taskId}:${attempt}`;
    const run = this.runs.get(key);
    if (!run) return Promise.resolve();
    if (run.pendingBytes === 0 && run.sending.length === 0) {
      this.runs.delete(key);
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      run.closed = () => {
        this.runs.delete(key);
        resolve();
      };
      this.flushSoon(0);
    });
  }

  private push(run: RunOutput, chunk: Buffer): void {
    if (run.closed || !this.running) return;
    run.pending.push(chunk);
    run.pendingBytes += chunk.length;
    this.bound(run);
    this.flushSoon(FLUSH_MS);
  }

  /** Drops the oldest unwritten bytes beyond the keep: they would be deleted once written. */
  private bound(run: RunOutput): void {
    let dropped = 0;
    while (run.pendingBytes > this.keepBytes) {
      const first = run.pending[0]!;
      const excess = run.pendingBytes - this.keepBytes;
      const cut = Math.min(excess, first.length);
      if (cut === first.length) run.pending.shift();
      else run.pending[0] = first.subarray(cut);
      run.pendingBytes -= cut;
      run.written += cut;
      dropped += cut;
    }
    if (dropped > 0) this.events.publish('output:dropped', { bytes: dropped });
  }

  private flushSoon(ms: number): void {
    if (!this.running) return;
    if (this.flushing) {
      this.again = true;
      return;
    }
    if (this.timer && ms > 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flushing = this.flush().finally(() => {
        this.flushing = null;
        if (this.again) {
          this.again = false;
          this.flushSoon([...this.runs.values()].some((r) => r.closed) ? 0 : FLUSH_MS);
        }
      });
    }, ms);
  }

  private async flush(): Promise<void> {
    const newChunks: NewChunk[] = [];
    const trims: Trim[] = [];
    const sent: RunOutput[] = [];
    let bytes = 0;
    for (const run of this.runs.values()) {
      if (run.pendingBytes === 0) {
        if (run.closed) run.closed();
        continue;
      }
      run.sending = run.pending;
      run.pending = [];
      const all = Buffer.concat(run.sending, run.pendingBytes);
      run.pendingBytes = 0;
      for (let offset = 0, seq = run.nextSeq; offset < all.length; offset += CHUNK_BYTES, seq++) {
        newChunks.push({ taskId: run.taskId, attempt: run.attempt, seq, pos: run.written + offset, data: all.subarray(offset, offset + CHUNK_BYTES) });
      }
      bytes += all.length;
      sent.push(run);
    }
    if (sent.length === 0) return;
    // What the table keeps once these land: the newest chunks within keepBytes.
    const plans = sent.map((run) => {
      const kept = [...run.kept];
      let keptBytes = run.keptBytes;
      const size = run.sending.reduce((n, b) => n + b.length, 0);
      for (let offset = 0, seq = run.nextSeq; offset < size; offset += CHUNK_BYTES, seq++) {
        const chunk = Math.min(CHUNK_BYTES, size - offset);
        kept.push({ seq, size: chunk });
        keptBytes += chunk;
      }
      while (kept.length > 1 && keptBytes - kept[0]!.size >= this.keepBytes) keptBytes -= kept.shift()!.size;
      if (kept[0]!.seq > run.trimmedTo) {
        trims.push({ taskId: run.taskId, attempt: run.attempt, keepFrom: kept[0]!.seq });
      }
      return { run, kept, keptBytes, size, chunks: Math.ceil(size / CHUNK_BYTES) };
    });
    const named = [...new Set(sent.map((r) => r.taskId))];
    const notifyIds = named.length > NOTIFY_IDS ? null : named;
    const startedAt = performance.now();
    try {
      await this.queries.appendOutput(this.pool, { chunks: newChunks, trims, channel: this.channel, notifyIds });
      this.backoff.reset();
      for (const { run, kept, keptBytes, size, chunks } of plans) {
        run.kept = kept;
        run.keptBytes = keptBytes;
        run.trimmedTo = kept[0]!.seq;
        run.written += size;
        run.nextSeq += chunks;
        run.sending = [];
        if (run.closed && run.pendingBytes === 0) run.closed();
      }
      this.events.publish('output:flushed', { runs: sent.length, chunks: newChunks.length, bytes, ms: performance.now() - startedAt });
    } catch (error) {
      const retryInMs = this.backoff.next();
      this.log.warn({ err: describeError(error), runs: sent.length, bytes, retryInMs }, 'could not write live output; retrying');
      for (const run of sent) {
        run.pending = [...run.sending, ...run.pending];
        run.pendingBytes = run.pending.reduce((n, b) => n + b.length, 0);
        run.sending = [];
        this.bound(run);
        // An ended run does not wait for the database: its result goes out (its output tail
        // with it, on the task row); what it printed last is given up.
        if (run.closed) {
          this.events.publish('output:dropped', { bytes: run.pendingBytes });
          run.closed();
        }
      }
      await new Promise((resolve) => setTimeout(resolve, retryInMs));
      this.again = true;
    }
  }
}
