import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Service } from '../services.js';

/** PGTASKS_OLD_TURNOVER=1: every line flushed within its task of the loop, as before issue 28 (bench/turnover.ts compares). */
const OLD_FLUSH = process.env.PGTASKS_OLD_TURNOVER === '1';

/**
 * The node's side of the reaper (reaper-process.js): a child process that kills the task
 * process groups the node still runs when the node dies, whatever the cause.
 */
export class Reaper implements Service {
  private child: ChildProcess | null = null;
  // The lines of this turn of the event loop, written as one: the writes (each wakes the
  // reaper) are the largest single cost in the node's CPU profile at 1 000 tasks/s after the
  // spawn helper's. A new run's line (and the fence) goes before this task of the loop ends,
  // so the reaper learns of a process no later than it did before; an ended run's line waits
  // for the end of the loop's turn (setImmediate), which gathers the exits of every chunk of
  // the helper's pipe read in that turn: an ended group listed a little longer is one kill
  // of a group that is gone if the node dies meanwhile (its pgid is not reused that soon).
  private pending = '';
  private urgent = false;
  private later = false;

  start(): void {
    if (this.child) return;
    const script = fileURLToPath(new URL('../../../src/node/process/reaper-process.js', import.meta.url));
    // Its own process group: a signal sent to the node's group (a Ctrl-C, kill -- -PGID)
    // leaves it alive to do its job.
    this.child = spawn(process.execPath, [script], { stdio: ['pipe', 'ignore', 'inherit'], detached: true });
    this.child.stdin!.on('error', () => undefined);
    this.child.unref();
    (this.child.stdin as unknown as { unref?: () => void }).unref?.();
  }

  /** The reaper's pid while it runs (for diagnostics and tests). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /**
   * A run (`key`, e.g. "12:3": a run's key never comes back, a pid may), its process group,
   * and the spawn helper of its supervisor if it has one: at the fence the reaper asks that
   * helper (SIGUSR2) to have every supervisor kill its run, including what left the group.
   */
  track(key: string, pgid: number, helper?: number): void {
    this.send(helper ? `+${key} ${pgid} ${helper}\n` : `+${key} ${pgid}\n`, true);
  }

  untrack(key: string): void {
    this.send(`-${key}\n`, false);
  }

  /** Lines go in order, in one buffer; an urgent one flushes it within this task of the loop. */
  private send(line: string, urgent: boolean): void {
    if (!this.child) return;
    this.pending += line;
    if ((urgent || OLD_FLUSH) && !this.urgent) {
      this.urgent = true;
      queueMicrotask(() => {
        this.urgent = false;
        this.flush();
      });
    } else if (!urgent && !OLD_FLUSH && !this.later) {
      this.later = true;
      setImmediate(() => {
        this.later = false;
        this.flush();
      });
    }
  }

  private flush(): void {
    if (this.pending !== '') this.child?.stdin?.write(this.pending);
    this.pending = '';
  }

  /**
   * The node trusts its lease for `ms` more. Past that with no word, the reaper kills every
   * group it tracks: the fence, kept even while the node is paused. A term that ends leaves
   * the deadline in place: its processes must be dead by then anyway.
   */
  fence(ms: number): void {
    this.send(`@${Math.max(0, Math.ceil(ms))}\n`, true);
  }

  /** A clean stop: the node ended its tasks itself; the reaper exits with nothing to kill. */
  stop(): void {
    this.flush();
    this.child?.stdin?.end();
    this.child = null;
  }
}
