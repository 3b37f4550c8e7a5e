// The options of a task's runs (timeout and retries), shared by `add` and `schedule`.
import { InvalidArgumentError, type Command } from 'commander';
import type { EndReason, RunSettings } from '../client/types.js';
import { parseDuration, parsePositive, shown } from './parse.js';

const RETRYABLE: EndReason[] = ['exit_code', 'signal', 'spawn_error', 'timeout', 'worker_failed', 'lost', 'oom', 'heartbeat'];

export interface RunOptions {
  timeout?: number;
  maxAttempts?: number;
  backoff?: { base: number; cap: number | null };
  retryOn?: EndReason[];
}

export function addRunOptions(command: Command): Command {
  return command
    .option('--timeout <duration>', "kill a run that lasts longer (its whole process group) and fail it with end_reason 'timeout' (default: the group's, else none)", parsePositiveDuration)
    .option('--max-attempts <n>', "runs at most: a run that fails (see --retry-on) is retried after a backoff (default: the group's, else 1)", (v) => parsePositive(v, '--max-attempts'))
    .option('--backoff <base..cap>', "retry delays: base, doubling per attempt, at most cap, ±25% jitter (default: the group's, else 1s..10m)", parseBackoff)
    .option('--retry-on <reasons>', "end reasons that retry, comma-separated (default: the group's, else exit_code,signal,timeout,worker_failed,lost,heartbeat)", parseRetryOn);
}

/** The options given, as the client's settings; those not given are null (the group's default). */
export function runSettings(opts: RunOptions): RunSettings {
  return {
    timeoutMs: opts.timeout ?? null,
    maxAttempts: opts.maxAttempts ?? null,
    backoffBaseMs: opts.backoff?.base ?? null,
    backoffCapMs: opts.backoff?.cap ?? null,
    retryOn: opts.retryOn ?? null,
  };
}

/** "1s..10m": base and cap; "2s": base only. */
function parseBackoff(value: string): { base: number; cap: number | null } {
  const [base, cap, extra] = value.split('..');
  if (extra !== undefined || !base) throw new InvalidArgumentError(`expected a backoff like 1s..10m (base..cap) or 2s, got ${shown(value)}`);
  const result = { base: parsePositiveDuration(base), cap: cap ? parsePositiveDuration(cap) : null };
  if (result.cap !== null && result.cap < result.base) throw new InvalidArgumentError(`the backoff's cap (${cap}) is below its base (${base})`);
  return result;
}

function parseRetryOn(value: string): EndReason[] {
  const reasons = value.split(',').map((r) => r.trim()).filter(Boolean);
  const unknown = reasons.filter((r) => !RETRYABLE.includes(r as EndReason));
  if (reasons.length === 0 || unknown.length > 0) {
    throw new InvalidArgumentError(`unknown end reason ${shown(unknown[0] ?? value)}: --retry-on takes ${RETRYABLE.join(', ')}`);
  }
  return reasons as EndReason[];
}

function parsePositiveDuration(value: string): number {
  const ms = parseDuration(value);
  if (ms <= 0) throw new InvalidArgumentError(`expected a duration above 0, got ${shown(value)}`);
  return ms;
}
