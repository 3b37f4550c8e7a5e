// The task list's filter, as the query string (GET /tasks) or the bulk form (POST /tasks/bulk)
// gives it: read and checked once here, so the list and its bulk actions mean the same tasks.
// A bad value is one line for the page (BadRequest), and nothing is read or changed.
import { TASK_STATES, type EndReason, type TaskState } from '../../client/types.js';
import { BadRequest } from './routes/errors.js';
import type { TaskFilter } from './store.js';

const INT = '^-?[0-9]{1,10}$';

/** The end reasons a task row may hold (task_end_reason_valid), for the filter's choices. */
export const END_REASONS: EndReason[] = [
  'completed', 'exit_code', 'signal', 'spawn_error', 'cancelled', 'timeout', 'worker_failed', 'lost', 'node_stopped',
  'dependency', 'refused', 'oom', 'result_rejected', 'heartbeat',
];

/** The filter's fields: the JSON schema of each, for the routes' query and body schemas. */
export const FILTER_FIELDS = {
  state: { type: 'string', enum: ['', ...Object.keys(TASK_STATES)] },
  group: { type: 'string', pattern: `^$|${INT}` },
  q: { type: 'string', maxLength: 200 },
  reason: { type: 'string', enum: ['', ...END_REASONS] },
  since: { type: 'string', maxLength: 40 },
  until: { type: 'string', maxLength: 40 },
  params: { type: 'string', maxLength: 10_000 },
} as const;

export interface FilterFields {
  state?: string; group?: string; q?: string; reason?: string; since?: string; until?: string; params?: string;
}

/** The filter the fields ask for; BadRequest for a time or JSON that does not read. */
export function readFilter(fields: FilterFields): TaskFilter {
  const since = readTime(fields.since, 'since');
  const until = readTime(fields.until, 'until');
  if (since && until && since >= until) throw new BadRequest(`since (${fields.since}) must be before until (${fields.until})`);
  return {
    state: (fields.state || null) as TaskState | null,
    group: fields.group ? Number(fields.group) : null,
    text: fields.q?.trim() || null,
    reason: (fields.reason || null) as EndReason | null,
    since,
    until,
    params: readParams(fields.params),
  };
}

/** The filter as fields again: for links, and the hidden fields of the bulk forms. */
export function filterFields(filter: TaskFilter): Record<string, string | null> {
  return {
    state: filter.state, group: filter.group === null ? null : String(filter.group), q: filter.text, reason: filter.reason,
    since: filter.since ? timeField(filter.since) : null, until: filter.until ? timeField(filter.until) : null, params: filter.params,
  };
}

/** Whether any filter is set (a bulk action over no filter is over every task). */
export function filtered(filter: TaskFilter): boolean {
  return Object.values(filterFields(filter)).some((v) => v !== null);
}

/**
 * A time of the filter: ISO 8601 with a zone, or without one (an <input type=datetime-local>
 * sends 2026-12-07T05:00), read as UTC like every time the dashboard shows.
 */
function readTime(text: string | undefined, name: string): Date | null {
  const value = text?.trim();
  if (!value) return null;
  const parts = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?)?(Z|[+-]\d{2}:\d{2})?$/.exec(value);
  const date = parts ? new Date(`${value.replace(' ', 'T')}${parts[1] ? '' : 'T00:00'}${parts[4] ? '' : 'Z'}`) : null;
  if (!date || Number.isNaN(date.getTime())) throw new BadRequest(`${name}: not a time: ${JSON.stringify(value)} (give 2026-12-07T05:00, read as UTC, or an ISO 8601 time with its zone)`);
  return date;
}

/** A time as a datetime-local field takes it (UTC): 2026-12-07T05:00, seconds and milliseconds only when not zero. */
export function timeField(date: Date): string {
  return date.toISOString().replace(/Z$/, '').replace(/\.000$/, '').replace(/(T\d{2}:\d{2}):00$/, '$1');
}

/** The params filter: JSON the task's params must contain, kept as its text (normalized). */
function readParams(text: string | undefined): string | null {
  const value = text?.trim();
  if (!value) return null;
  try {
    return JSON.stringify(JSON.parse(value));
  } catch (error) {
    throw new BadRequest(`params: not valid JSON (${(error as Error).message}): give what the params contain, like {"customer": 42}`);
  }
}
