// What one client address may cost the dashboard: wrong tokens (a token bucket per address)
// and open live streams (a count per address and in all). Both tables are bounded: the
// failures keep at most maxAddresses entries (least recently seen evicted first) and forget
// an address whose bucket is full again; the streams keep one entry per address with a
// stream open, so at most the total cap.
//
// The address is the TCP peer's (Fastify's request.ip without trustProxy): X-Forwarded-For
// is not trusted, so behind a proxy every client shares the proxy's budget.
import { isIP } from 'node:net';

/**
 * The key an address is counted under: an IPv4 address as it is (also when mapped into IPv6,
 * ::ffff:1.2.3.4), an IPv6 address by its /64 (one host may pick any address of its /64).
 */
export function clientKey(address: string): string {
  const bare = address.replace(/%.*$/, '');
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(bare);
  if (mapped) return mapped[1]!;
  if (isIP(bare) !== 6) return address;
  const [head = '', tail] = bare.split('::');
  const groups = (part: string): string[] => (part === '' ? [] : part.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])));
  const front = groups(head);
  const back = tail === undefined ? [] : groups(tail);
  const all = [...front, ...Array<string>(Math.max(0, 8 - front.length - back.length)).fill('0'), ...back];
  return `${all.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
}

export interface FailureBudgetOptions {
  /** Failures an address may have in a burst (the bucket's size). Default 10. */
  burst?: number;
  /** Failures regained per minute (the bucket's refill). Default 10. */
  perMinute?: number;
  /** Addresses remembered at most; the least recently seen is forgotten first. Default 10 000. */
  maxAddresses?: number;
  /** Milliseconds, for tests. Default performance.now. */
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * Failed token checks per address, as a token bucket: an address may fail `burst` times at
 * once, then once every 60 / perMinute seconds (10 and 10: ten tries, then one each 6 s, at
 * most 14 410 a day, against a token of 16 characters or more). Successes take nothing.
 */
export class FailureBudget {
  private readonly buckets = new Map<string, Bucket>();
  private readonly burst: number;
  private readonly perMs: number;
  private readonly maxAddresses: number;
  private readonly now: () => number;

  constructor(options: FailureBudgetOptions = {}) {
    this.burst = options.burst ?? 10;
    this.perMs = (options.perMinute ?? 10) / 60_000;
    this.maxAddresses = options.maxAddresses ?? 10_000;
    this.now = options.now ?? (() => performance.now());
  }

  /** Seconds until `key` may try again; 0: now. */
  waitFor(key: string): number {
    const bucket = this.current(key);
    if (!bucket || bucket.tokens >= 1) return 0;
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.perMs / 1000));
  }

  /** Counts a failure of `key`. */
  fail(key: string): void {
    const bucket = this.current(key) ?? { tokens: this.burst, at: this.now() };
    bucket.tokens = Math.max(0, bucket.tokens - 1);
    // Re-inserted: the map's order is the order of last use, oldest first.
    this.buckets.delete(key);
    this.buckets.set(key, bucket);
    while (this.buckets.size > this.maxAddresses) this.buckets.delete(this.buckets.keys().next().value!);
  }

  /** Addresses remembered (for tests: bounded by maxAddresses). */
  get size(): number {
    return this.buckets.size;
  }

  /** The bucket refilled up to now; a full one is forgotten (it is what a new address gets). */
  private current(key: string): Bucket | null {
    const bucket = this.buckets.get(key);
    if (!bucket) return null;
    const now = this.now();
    bucket.tokens = Math.min(this.burst, bucket.tokens + (now - bucket.at) * this.perMs);
    bucket.at = now;
    if (bucket.tokens >= this.burst) {
      this.buckets.delete(key);
      return null;
    }
    return bucket;
  }
}

export interface StreamLimits {
  /** Live streams (GET /events) open at once from one address. Default 16. */
  perAddress: number;
  /** Live streams open at once in all. Default 256. */
  total: number;
}

/**
 * 16 a client: a browser opens at most 6 connections to one host over HTTP/1.1, so this is a
 * few browsers behind one address (a NAT, an office). 256 in all: each stream is a socket and
 * a write per event; far above what a team opens, far below what exhausts the process.
 */
export const DEFAULT_STREAM_LIMITS: StreamLimits = { perAddress: 16, total: 256 };

/** Open streams, counted per address and in all. */
export class StreamSlots {
  private readonly open = new Map<string, number>();
  private count = 0;

  constructor(private readonly limits: StreamLimits) {}

  /** Takes a slot for `address`, or says in one line why there is none. */
  take(address: string): { release(): void } | { refused: string } {
    const key = clientKey(address);
    const mine = this.open.get(key) ?? 0;
    if (mine >= this.limits.perAddress) {
      return { refused: `too many live streams from ${address}: ${mine} are open, the most one address may have (close some dashboard tabs)` };
    }
    if (this.count >= this.limits.total) {
      return { refused: `too many live streams: ${this.count} are open, the most this dashboard serves (try again later)` };
    }
    this.open.set(key, mine + 1);
    this.count += 1;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.count -= 1;
        const left = (this.open.get(key) ?? 1) - 1;
        if (left > 0) this.open.set(key, left);
        else this.open.delete(key);
      },
    };
  }

  /** Streams open now. */
  get size(): number {
    return this.count;
  }
}
