import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Service } from '../services.js';

/**
 * The node's side of the reaper (reaper-process.js): a child process that kills the task
 * process groups the node still runs when the node dies, whatever the cause.
 */
export class Reaper implements Service {
  private child: ChildProcess | null = null;
  // The lines of this turn of the event loop, written as one: the writes (each wakes the
  // reaper) are the largest single cost in the node's CPU profile at 1 000 tasks/s. Written
  // before the turn ends, so the reaper learns of a process no later than it did before.
  private pending = '';

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

  track(pgid: number): void {
    this.send(`+${pgid}\n`);
  }

  untrack(pgid: number): void {
    this.send(`-${pgid}\n`);
  }

  private send(line: string): void {
    if (!this.child) return;
    if (this.pending === '') queueMicrotask(() => this.flush());
    this.pending += line;
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
    this.send(`@${Math.max(0, Math.ceil(ms))}\n`);
  }

  /** A clean stop: the node ended its tasks itself; the reaper exits with nothing to kill. */
  stop(): void {
    this.flush();
    this.child?.stdin?.end();
    this.child = null;
  }
}
