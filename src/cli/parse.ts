import { InvalidArgumentError } from 'commander';
import { TASK_STATES, type PeriodId, type TaskState } from '../client/types.js';
import { MAX_TIMER_MS } from '../lib/timed-loop.js';

/**
 * A value as an error message quotes it: in double quotes, control characters escaped (a
 * newline in an argument must not split the one line of the message), and long ones cut
 * (an argument may be 128 KiB).
 */
export function shown(value: string, max = 60): string {
  const cut = value.length > max ? `${value.slice(0, max)}…` : value;
  const quoted = JSON.stringify(cut).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return value.length > max ? `${quoted} (${value.length} characters)` : quoted;
}

/** PostgreSQL's int: the columns these values go to (group_id, priority, worker ids, limits). */
const INT_MIN = -(2 ** 31);
const INT_MAX = 2 ** 31 - 1;

export function parseInteger(value: string, what = 'value'): number {
  if (!/^-?\d+$/.test(value.trim())) throw new InvalidArgumentError(`${what} must be an integer, got ${shown(value)}`);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < INT_MIN || n > INT_MAX) throw new InvalidArgumentError(`${what} is out of range (${INT_MIN} to ${INT_MAX}): ${shown(value)}`);
  return n;
}

export function parseNonNegative(value: string, what = 'value'): number {
  const n = parseInteger(value, what);
  if (n < 0) throw new InvalidArgumentError(`${what} must not be negative, got ${shown(value)}`);
  return n;
}

export function parsePositive(value: string, what = 'value'): number {
  const n = parseInteger(value, what);
  if (n < 1) throw new InvalidArgumentError(`${what} must be at least 1, got ${shown(value)}`);
  return n;
}

export function parseTaskId(value: string): number {
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`a task id is a positive integer, got ${shown(value)}`);
  return n;
}

/** "12,13": task ids, each once. */
export function parseTaskIds(value: string): number[] {
  const ids = value.split(',').map((part) => part.trim()).filter((part) => part !== '');
  if (ids.length === 0) throw new InvalidArgumentError(`expected task ids separated by commas, got ${shown(value)}`);
  return [...new Set(ids.map(parseTaskId))];
}

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * "500ms", "10s", "2m", "1h", "30d"; a bare number is refused (is "5" seconds or
 * milliseconds?), except 0, which is 0 in any unit. Returns milliseconds, at most 2^53 − 1
 * (285 000 years): past that a number loses its last digits, or becomes Infinity.
 */
export function parseDuration(value: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(value.trim());
  if (!match) throw new InvalidArgumentError(`expected a duration like 500ms, 10s, 2m, 1h or 30d, got ${shown(value)}`);
  if (match[2] === undefined && Number(match[1]) !== 0) throw new InvalidArgumentError(`${shown(value)} needs a unit (e.g. ${match[1]}s, 2m, 1h)`);
  const ms = Math.round(Number(match[1]) * UNITS[match[2] ?? 's']!);
  if (!Number.isSafeInteger(ms)) throw new InvalidArgumentError(`the duration ${shown(value)} is out of range`);
  return ms;
}

/** A duration the node waits for with one timer (--lease, --kill-grace): at most 24 days (setTimeout's longest). */
export function parseTimerDuration(value: string, what: string): number {
  const ms = parseDuration(value);
  if (ms > MAX_TIMER_MS) throw new InvalidArgumentError(`${what} must be at most 24d, got ${shown(value)}`);
  return ms;
}

/** A TCP port, or 0 for any free one; `or`: what else the option takes ("off"). */
export function parsePort(value: string, what: string, or = ''): number {
  const port = parseNonNegative(value, what);
  // The value is digits by now: quoted as is.
  if (port > 65_535) throw new InvalidArgumentError(`${what} must be a port (0 to 65535)${or ? ` or ${or}` : ''}, got ${value.trim()}`);
  return port;
}

export function parseState(value: string): TaskState {
  const state = value.toUpperCase();
  if (!(state in TASK_STATES)) {
    throw new InvalidArgumentError(`unknown state ${shown(value)}: one of ${Object.keys(TASK_STATES).join(', ')}`);
  }
  return state as TaskState;
}

/** JSON for a jsonb column: PostgreSQL refuses \\u0000 in jsonb, so it is refused here, by name. */
export function parseJson(value: string): unknown {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value) as unknown;
  } catch (error) {
    throw new InvalidArgumentError(`not valid JSON: ${shown((error as Error).message, 120)}`);
  }
  if (holdsNul(parsed)) throw new InvalidArgumentError('the JSON holds \\u0000 (a NUL character), which PostgreSQL cannot store in jsonb');
  return parsed;
}

function holdsNul(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\0');
  if (Array.isArray(value)) return value.some(holdsNul);
  if (value !== null && typeof value === 'object') return Object.entries(value).some(([k, v]) => k.includes('\0') || holdsNul(v));
  return false;
}

const PERIOD_UNITS: Record<string, PeriodId> = {
  s: 'SEC', sec: 'SEC', second: 'SEC',
  m: 'MIN', min: 'MIN', minute: 'MIN',
  h: 'HOU', hour: 'HOU',
  d: 'DAY', day: 'DAY',
  w: 'WEE', week: 'WEE',
  mo: 'MON', mon: 'MON', month: 'MON',
};

/** "--every 2h" → HOU × 2: 10s, 5m, 2h, 1d, 1w, 1mo (plural words too: 3 days). */
export function parseEvery(value: string): { periodId: PeriodId; count: number } {
  const match = /^(\d+)\s*([a-z]+?)s?$/i.exec(value.trim());
  const periodId = match ? PERIOD_UNITS[match[2]!.toLowerCase()] : undefined;
  const count = match ? Number(match[1]) : 0;
  if (!periodId || !Number.isSafeInteger(count) || count < 1 || count > 2 ** 31 - 1) {
    throw new InvalidArgumentError(`expected a period like 10s, 5m, 2h, 1d, 1w or 1mo, got ${shown(value)}`);
  }
  return { periodId, count };
}

/** An ISO 8601 time ("2027-01-31T09:00:00Z", "2027-01-31 09:00+01:00") or "now". */
export function parseTime(value: string): Date {
  if (value.trim().toLowerCase() === 'now') return new Date();
  const date = /^\d{4}-\d{2}-\d{2}/.test(value.trim()) ? new Date(value.trim().replace(' ', 'T')) : new Date(NaN);
  if (Number.isNaN(date.getTime())) throw new InvalidArgumentError(`expected an ISO 8601 time like 2027-01-31T09:00:00Z, or "now", got ${shown(value)}`);
  return date;
}
