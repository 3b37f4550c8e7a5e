/**
 * LISTEN's health, checked end to end at no extra statement: each lease renewal sends the
 * node a ping through NOTIFY on its own channel, and the next renewal checks that it came
 * back. A connection can look open while delivering nothing (a proxy, a half-dead socket).
 */
export class ListenCheck {
  private sent = 0;
  private sending = 0;
  private received = 0;

  constructor(private readonly workerId: number) {}

  /** The listener (re)connected: what was sent before is not expected any more. */
  reset(): void {
    this.received = this.sent;
  }

  /** Nothing came back since the last renewal, not even its ping. */
  get silent(): boolean {
    return this.sent > this.received;
  }

  /** The sequence number of the next renewal's ping (renewLease sends it, with the term). */
  nextPing(): number {
    this.sending = this.sent + 1;
    return this.sending;
  }

  /** The renewal carrying the last ping committed (one that failed sent nothing). */
  pingSent(): void {
    this.sent = this.sending;
  }

  /** A ping arrived; true if it was ours (this worker, this term). */
  onPing(n: { w: number; k: number; n: number }, epoch: number | null | undefined): boolean {
    if (n.w !== this.workerId || n.k !== epoch) return false;
    this.received = Math.max(this.received, n.n);
    return true;
  }
}
