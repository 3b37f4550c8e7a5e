// setTimeout's longest delay is 2^31 − 1 ms (24.8 days); a wait further away is re-read then.
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The loop behind a node's timed parts (the scheduler, the release of delayed tasks): one
 * cycle at a time, requests that arrive meanwhile folded into one more cycle, and one timer,
 * armed to the delay the last cycle returned (null: none). A stopped loop arms nothing: a
 * cycle still in flight at stop() must not leave a timer behind, and stop() resolves once it
 * has ended.
 *
 * The timer keeps sub-millisecond time: setTimeout wakes on the event loop's whole-millisecond
 * clock, up to a millisecond or two off the instant asked for. So it is armed to wake about a
 * millisecond early, and the rest is waited out one turn of the event loop at a time (I/O is
 * still served meanwhile): at most ~1.5 ms of a core per wake, for a slot that starts on time.
 */
export class TimedLoop {
  private cancel: (() => void) | null = null;
  private running = false;
  private busy = false;
  private again = false;
  private inFlight: Promise<void> | null = null;

  /** cycle(due): due is true when the timer fired (rather than a request). */
  constructor(private readonly cycle: (due: boolean) => Promise<number | null>) {}

  start(): void {
    this.running = true;
    this.request();
  }

  stop(): Promise<void> {
    this.running = false;
    this.arm(null);
    return this.inFlight ?? Promise.resolve();
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
    this.inFlight = this.cycle(due)
      .then((delay) => this.arm(delay))
      .finally(() => {
        this.busy = false;
        this.inFlight = null;
        if (this.again) {
          this.again = false;
          this.request();
        }
      });
  }

  private arm(ms: number | null): void {
    this.cancel?.();
    this.cancel = null;
    if (ms === null || !this.running) return;
    const deadline = performance.now() + Math.min(Math.max(ms, 0), MAX_TIMER_MS);
    // Never fires in the caller's turn: a cycle still finishing must see the wake as due.
    const wait = (): void => {
      const left = deadline - performance.now();
      if (left > 2) {
        const timer = setTimeout(wake, left - 1);
        this.cancel = () => clearTimeout(timer);
      } else {
        const immediate = setImmediate(wake);
        this.cancel = () => clearImmediate(immediate);
      }
    };
    const wake = (): void => {
      if (performance.now() < deadline) return wait();
      this.cancel = null;
      this.request(true);
    };
    wait();
  }
}
