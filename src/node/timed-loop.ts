// setTimeout's longest delay is 2^31 − 1 ms (24.8 days); a wait further away is re-read then.
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The loop behind a node's timed parts (the scheduler, the release of delayed tasks): one
 * cycle at a time, requests that arrive meanwhile folded into one more cycle, and one timer,
 * armed to the delay the last cycle returned (null: none). A stopped loop arms nothing: a
 * cycle still in flight at stop() must not leave a timer behind.
 */
export class TimedLoop {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private busy = false;
  private again = false;

  /** cycle(due): due is true when the timer fired (rather than a request). */
  constructor(private readonly cycle: (due: boolean) => Promise<number | null>) {}

  start(): void {
    this.running = true;
    this.request();
  }

  stop(): void {
    this.running = false;
    this.arm(null);
  }

  get active(): boolean {
    return this.running;
  }

  request(due = false): void {
    if (!this.running) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    void this.cycle(due)
      .then((delay) => this.arm(delay))
      .finally(() => {
        this.busy = false;
        if (this.again) {
          this.again = false;
          this.request();
        }
      });
  }

  private arm(ms: number | null): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = ms !== null && this.running ? setTimeout(() => this.request(true), Math.min(Math.max(ms, 0), MAX_TIMER_MS)) : null;
  }
}
