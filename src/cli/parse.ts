import { InvalidArgumentError } from 'commander';
import { TASK_STATES, type PeriodId, type TaskState } from '../client/types.js';

export function parseInteger(value: string, what = 'value'): number {
  if (!/^-?\d+$/.test(value.trim())) throw new InvalidArgumentError(`${what} must be an integer, got "${value}"`);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || Math.abs(n) > 2 ** 31 - 1) throw new InvalidArgumentError(`${what} is out of range: ${value}`);
  return n;
}

export function parseNonNegative(value: string, what = 'value'): number {
  const n = parseInteger(value, what);
  if (n < 0) throw new InvalidArgumentError(`${what} must not be negative, got ${value}`);
  return n;
}

export function parsePositive(value: string, what = 'value'): number {
  const n = parseInteger(value, what);
  if (n < 1) throw new InvalidArgumentError(`${what} must be at least 1, got ${value}`);
  return n;
}

export function parseTaskId(value: string): number {
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`a task id is a positive integer, got "${value}"`);
  return n;
}

/** "12,13": task ids, each once. */
export function parseTaskIds(value: string): number[] {
  const ids = value.split(',').map((part) => part.trim()).filter((part) => part !== '');
  if (ids.length === 0) throw new InvalidArgumentError(`expected task ids separated by commas, got "${value}"`);
  return [...new Set(ids.map(parseTaskId))];
}

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "500ms", "10s", "2m", "1h", "30d"; a bare number is seconds. Returns milliseconds. */
export function parseDuration(value: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(value.trim());
  if (!match) throw new InvalidArgumentError(`expected a duration like 500ms, 10s, 2m, 1h or 30d, got "${value}"`);
  return Math.round(Number(match[1]) * UNITS[match[2] ?? 's']!);
}

export function parseState(value: string): TaskState {
  const state = value.toUpperCase();
  if (!(state in TASK_STATES)) {
    throw new InvalidArgumentError(`unknown state "${value}": one of ${Object.keys(TASK_STATES).join(', ')}`);
  }
  return state as TaskState;
}

export function parseJson(value: string): unknown {
  try {
    return JSON.parse(value) as unknown;
  } catch (error) {
    throw new InvalidArgumentError(`not valid JSON: ${(error as Error).message}`);
  }
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
    throw new InvalidArgumentError(`expected a period like 10s, 5m, 2h, 1d, 1w or 1mo, got "${value}"`);
  }
  return { periodId, count };
}

/** An ISO 8601 time ("2027-01-31T09:00:00Z", "2027-01-31 09:00+01:00") or "now". */
export function parseTime(value: string): Date {
  if (value.trim().toLowerCase() === 'now') return new Date();
  const date = /^\d{4}-\d{2}-\d{2}/.test(value.trim()) ? new Date(value.trim().replace(' ', 'T')) : new Date(NaN);
  if (Number.isNaN(date.getTime())) throw new InvalidArgumentError(`expected an ISO 8601 time like 2027-01-31T09:00:00Z, or "now", got "${value}"`);
  return date;
}
