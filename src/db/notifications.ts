// The notification protocol: what pg-tasks sends on the schema's channel, built in SQL by
// notify_event (src/sql/functions/notify_event.sql), read here and nowhere else. A
// notification is a hint to read the rows again, never the truth itself.
import type { Logger } from 'pino';

export type Notification =
  /** Tasks of group g may start now (queued, a run ended, a limit raised). */
  | { e: 'queued'; g: number }
  /** Tasks of group g wait for a time (a retry's backoff): re-arm the retry timer. */
  | { e: 'delayed'; g: number }
  /** Scheduled tasks of group g were written: re-arm the schedule timer. */
  | { e: 'schedule'; g: number }
  /** Tasks whose live process belongs to worker w are being cancelled (no w: none lives). */
  | { e: 'cancel'; w?: number }
  /** These tasks ended (CS, CF, CC); no ids: more than 100, look again. */
  | { e: 'ended'; ids?: number[] }
  /** Runs of these tasks printed more; no ids: more than 100, look again. */
  | { e: 'output'; ids?: number[] }
  /** Worker w's row changed what others act on: stop, active, its term, its lock session. */
  | { e: 'worker'; w: number }
  /** Worker w renewed term k, the n-th renewal's ping, with a lease of l seconds. */
  | { e: 'ping'; w: number; k: number; n: number; l: number };

export type NotificationKind = Notification['e'];

type Field = 'g' | 'w' | 'ids' | 'k' | 'n' | 'l';

// The keys each kind must and may carry. Any other key is ignored.
const KINDS: Record<NotificationKind, { required: Field[]; optional: Field[] }> = {
  queued: { required: ['g'], optional: [] },
  delayed: { required: ['g'], optional: [] },
  schedule: { required: ['g'], optional: [] },
  cancel: { required: [], optional: ['w'] },
  ended: { required: [], optional: ['ids'] },
  output: { required: [], optional: ['ids'] },
  worker: { required: ['w'], optional: [] },
  ping: { required: ['w', 'k', 'n', 'l'], optional: [] },
};

function valid(field: Field, value: unknown): boolean {
  if (field === 'ids') return Array.isArray(value) && value.every((id) => Number.isSafeInteger(id));
  return typeof value === 'number' && Number.isFinite(value);
}

/** The notification in a payload, or why it is not one. */
export function parseNotification(payload: string): Notification | { unknown: string } {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return { unknown: 'not JSON' };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { unknown: 'not an object' };
  const object = value as Record<string, unknown>;
  const kind = object.e;
  if (typeof kind !== 'string' || !Object.hasOwn(KINDS, kind)) return { unknown: `kind ${JSON.stringify(kind)}` };
  const { required, optional } = KINDS[kind as NotificationKind];
  for (const field of required) {
    if (!valid(field, object[field])) return { unknown: `${kind} without a valid ${field}` };
  }
  for (const field of optional) {
    if (object[field] !== undefined && !valid(field, object[field])) return { unknown: `${kind} with an invalid ${field}` };
  }
  return object as Notification;
}

// Anyone who may NOTIFY can send anything on the channel: the kinds warned about are capped,
// so that a long-running node keeps no memory per odd payload.
const MAX_WARNED = 32;

/** Parses payloads; one that is not a notification is logged once per reason, and dropped. */
export class NotificationParser {
  private readonly warned = new Set<string>();

  constructor(private readonly log: Logger) {}

  parse(payload: string): Notification | null {
    const parsed = parseNotification(payload);
    if (!('unknown' in parsed)) return parsed;
    if (!this.warned.has(parsed.unknown) && this.warned.size < MAX_WARNED) {
      this.warned.add(parsed.unknown);
      this.log.warn({ payload: payload.slice(0, 200), reason: parsed.unknown }, 'ignored a notification this pg-tasks does not know (logged once per reason)');
    }
    return null;
  }
}
