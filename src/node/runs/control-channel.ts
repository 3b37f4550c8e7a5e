/**
 * One run's control channel: the JSON lines its task writes on fd 3 (docs/control.md).
 *   {"progress": 0.42, "message": "…"}   progress (0..1) and a status line, either or both
 *   {"result": …}                         the run's result (any JSON, at most RESULT_BYTES)
 *   {"heartbeat": true}                   a sign of life; so is every other line
 * A line that is not a JSON object, holds an unknown key or a bad value, or is longer than
 * LINE_BYTES is counted (task_run.control_errors) and logged once per run: it never fails
 * the task. Holds at most one partial line (LINE_BYTES) per live run.
 */

/** Longest line read; the rest of a longer one is skipped up to its newline (1 MiB). */
export const LINE_BYTES = 1024 * 1024;
/** Largest result stored (64 KiB of JSON text); a larger one is named in the run's error. */
export const RESULT_BYTES = 64 * 1024;
/** Longest status line kept (characters); a longer one is cut. */
const MESSAGE_CHARS = 4096;

/** What the run's end carries to its rows (finishRuns). */
export interface ControlSummary {
  progress: number | null;
  message: string | null;
  /** The result as JSON text; null: none (or over the cap, see resultError). */
  result: string | null;
  /** Set when a result was over the cap: a line for the run's error. */
  resultError: string | null;
  /** Lines it could not use; null when it wrote none. */
  errors: number | null;
}

export interface ControlHandlers {
  /** Progress or message changed (the latest values). */
  progress(progress: number | null, message: string | null): void;
  /** The first bad line of the run (logged once). */
  firstError(reason: string): void;
}

/** An escape of \u0000 or of a surrogate, not itself after an escaped backslash. */
const JSONB_REFUSES = /(?:^|[^\\])(?:\\\\)*\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})/;

const KEYS = new Set(['progress', 'message', 'result', 'heartbeat']);

export class ControlChannel {
  private partial: Buffer[] = [];
  private partialBytes = 0;
  /** Skipping the rest of a line longer than LINE_BYTES. */
  private skipping = false;
  private progress: number | null = null;
  private message: string | null = null;
  private result: string | null = null;
  private resultError: string | null = null;
  private errors = 0;
  private wrote = false;
  /** performance.now() of the last sign of life: any bytes on fd 3 (or the channel's start). */
  lastLife = performance.now();

  constructor(private readonly handlers: ControlHandlers) {}

  push(chunk: Buffer): void {
    this.wrote = true;
    this.lastLife = performance.now();
    let start = 0;
    for (let nl = chunk.indexOf(10, start); nl >= 0; nl = chunk.indexOf(10, start)) {
      this.take(chunk.subarray(start, nl));
      this.endLine();
      start = nl + 1;
    }
    if (start < chunk.length) this.take(chunk.subarray(start));
  }

  /** The pipe closed: a last line without a newline counts too. */
  summary(): ControlSummary {
    if (this.partialBytes > 0 || this.skipping) this.endLine();
    return {
      progress: this.progress, message: this.message, result: this.result, resultError: this.resultError,
      errors: this.wrote ? this.errors : null,
    };
  }

  private take(part: Buffer): void {
    if (this.skipping || part.length === 0) return;
    if (this.partialBytes + part.length > LINE_BYTES) {
      this.skipping = true;
      this.partial = [];
      this.partialBytes = 0;
      return;
    }
    // Copied: the chunk may be a view of a buffer that is reused.
    this.partial.push(Buffer.from(part));
    this.partialBytes += part.length;
  }

  private endLine(): void {
    if (this.skipping) {
      this.skipping = false;
      this.bad(`a line longer than ${LINE_BYTES} bytes`);
      return;
    }
    const text = Buffer.concat(this.partial, this.partialBytes).toString('utf8').trim();
    this.partial = [];
    this.partialBytes = 0;
    if (text === '') return;
    let line: unknown;
    try {
      line = JSON.parse(text);
    } catch {
      this.bad('a line that is not JSON');
      return;
    }
    if (typeof line !== 'object' || line === null || Array.isArray(line)) {
      this.bad('a line that is not a JSON object');
      return;
    }
    const fields = line as Record<string, unknown>;
    const unknown = Object.keys(fields).filter((k) => !KEYS.has(k));
    if (unknown.length > 0) this.bad(`an unknown key: ${unknown[0]!.slice(0, 100)}`);
    let changed = false;
    if ('progress' in fields) {
      const p = fields.progress;
      if (typeof p === 'number' && p >= 0 && p <= 1) {
        this.progress = p;
        changed = true;
      } else if (p === null) {
        this.progress = null;
        changed = true;
      } else {
        this.bad('a progress that is not a number from 0 to 1');
      }
    }
    if ('message' in fields) {
      const m = fields.message;
      if (typeof m === 'string' || m === null) {
        this.message = m === null ? null : m.replace(/\0/g, '').slice(0, MESSAGE_CHARS);
        changed = true;
      } else {
        this.bad('a message that is not a string');
      }
    }
    if ('result' in fields) {
      // \u0000 and a lone surrogate (JSON.stringify escapes only those) are valid JSON that
      // jsonb refuses: such a result is a bad line, not a run's end the database refuses.
      const json = JSON.stringify(fields.result);
      const bytes = Buffer.byteLength(json);
      if (JSONB_REFUSES.test(json)) {
        this.bad('a result jsonb cannot hold (\\u0000 or a lone surrogate)');
      } else if (bytes > RESULT_BYTES) {
        this.result = null;
        this.resultError = `result not stored: ${bytes} bytes of JSON, over the ${RESULT_BYTES}-byte cap`;
      } else {
        this.result = json;
        this.resultError = null;
      }
    }
    if ('heartbeat' in fields && fields.heartbeat !== true) this.bad('a heartbeat that is not true');
    if (changed) this.handlers.progress(this.progress, this.message);
  }

  private bad(reason: string): void {
    if (this.errors++ === 0) this.handlers.firstError(reason);
  }
}
