/**
 * The node's one backoff: base × 2^n, capped, each delay optionally spread ±jitter so a cluster
 * does not retry in step. With base 100 ms and cap 5 s: 100, 200, 400, 800, 1 600, 3 200, 5 000,
 * 5 000 … ms. reset() after a success.
 */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly baseMs: number,
    private readonly capMs: number,
    private readonly jitter = 0,
  ) {}

  /** Failures since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  next(): number {
    const delay = Math.min(this.baseMs * 2 ** Math.min(this.attempt, 30), this.capMs);
    this.attempt++;
    return this.jitter > 0 ? delay * (1 - this.jitter + Math.random() * 2 * this.jitter) : delay;
  }

  reset(): void {
    this.attempt = 0;
  }
}
