// The actions (POST forms): each is the statement a user would write in SQL, so the triggers
// judge it; a refusal comes back to the page as the trigger's own sentence, not a stack trace.
// Every one returns to the page it came from (303), with what happened as a flash message.
import { InvalidArgumentError } from 'commander';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { DependsRule } from '../../../client/types.js';
import { parseDuration, parseEvery, parseTaskIds } from '../../../cli/parse.js';
import { describeError } from '../../../db/errors.js';
import { assertTimeZone, nextCronSlot } from '../../../lib/schedule-math.js';
import { localPath } from '../access.js';
import { flash, pageContext, sessionOf, type Dashboard } from '../context.js';
import { FILTER_FIELDS, filterFields, readFilter, type FilterFields } from '../filter.js';
import { href } from '../html.js';
import type { BulkAction, NewSchedule } from '../store.js';
import { bulkConfirmPage, cancelConfirmPage, tasks } from '../views/confirm.js';
import { BadRequest } from './errors.js';

const ID = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9]{1,15}$' } } } as const;
const INT = '^-?[0-9]{1,10}$';
/** Every form carries the CSRF token (checked before the route by the access hook) and where to return. */
const FORM = { csrf: { type: 'string', maxLength: 200 }, back: { type: 'string', maxLength: 2000 } } as const;
/** SQLSTATEs a person caused, shown as the database says them: the triggers' and constraints' refusals, a number out of range, a NUL byte (22021). */
// 42501: the database user lacks the role for this change (docs/security.md, "Roles").
const REFUSALS = new Set(['23514', '23503', '23502', '22P02', '22003', '22021', 'P0001', '42501']);
/**
 * A bulk action changes at most this many tasks per confirmation: one statement that locks and
 * updates 10 000 rows (each through the row triggers) took 0.6 to 1.4 s on a loaded 2-core
 * machine among 210 000 tasks, and the triggers notify once for it.
 */
export const BULK_MAX = 10_000;

interface AddForm {
  command: string; group?: string; priority?: string; state?: 'DR' | 'AW';
  timeout?: string; attempts?: string; after?: string; when?: DependsRule; concurrency_key?: string; every?: string; cron?: string; tz?: string;
}

export function registerActions(app: FastifyInstance, dashboard: Dashboard): void {
  const { store } = dashboard;

  /** Runs a change; a refusal becomes the page's error, anything else goes to the error handler. */
  const attempt = async (reply: FastifyReply, back: string | (() => string), change: () => Promise<string>): Promise<FastifyReply> => {
    try {
      flash(reply, 'notice', await change());
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (!(error instanceof Refused) && (code === undefined || !REFUSALS.has(code))) throw error;
      flash(reply, 'error', error instanceof Refused ? error.message : `refused: ${describeError(error, dashboard.schema)}`);
    }
    return reply.redirect(typeof back === 'string' ? back : back(), 303);
  };

  // The cancel's confirmation (a page, so it works without a script); the POST below cancels.
  app.get<{ Params: { id: string }; Querystring: { back?: string } }>('/tasks/:id/cancel', {
    schema: { params: ID, querystring: { type: 'object', properties: { back: { type: 'string', maxLength: 2000 } } } },
  }, async (request, reply) => {
    const refusal = dashboard.access.refuseReader(sessionOf(request));
    if (refusal) return reply.code(403).type('text/plain; charset=utf-8').send(`${refusal}\n`);
    const id = Number(request.params.id);
    const task = await store.task(id);
    if (!task) return reply.code(404).type('text/plain; charset=utf-8').send(`task ${id} not found\n`);
    const ctx = pageContext(dashboard, request, reply, true);
    return reply.type('text/html; charset=utf-8').header('cache-control', 'no-store')
      .send(cancelConfirmPage(ctx, task, localPath(request.query.back, `/tasks/${id}`)).text);
  });

  // Bulk: without `seen`, a page that says how many tasks the action would change and asks;
  // with it (the confirmation), at most that many change, in one statement.
  app.post<{ Body: FilterFields & { action: BulkAction; seen?: string } }>('/tasks/bulk', {
    schema: {
      body: {
        type: 'object',
        required: ['action'],
        properties: { ...FORM, ...FILTER_FIELDS, action: { type: 'string', enum: ['requeue', 'cancel'] }, seen: { type: 'string', pattern: '^[0-9]{1,9}$' } },
      },
    },
  }, async (request, reply) => {
    const { action } = request.body;
    const filter = readFilter(request.body);
    if (request.body.seen === undefined) {
      const count = await store.bulkCount(action, filter, BULK_MAX + 1);
      const ctx = pageContext(dashboard, request, reply, true);
      return reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(bulkConfirmPage(ctx, action, filter, count, BULK_MAX).text);
    }
    const seen = Number(request.body.seen);
    if (seen < 1 || seen > BULK_MAX) throw new BadRequest(`seen: a count from 1 to ${BULK_MAX}, as the confirmation gives`);
    return attempt(reply, href('/tasks', filterFields(filter)), async () => {
      const changed = await store.bulk(action, filter, seen);
      const done = action === 'requeue' ? `re-queued ${tasks(changed)} (AW)` : `cancelled ${tasks(changed)}`;
      return changed < seen ? `${done}: ${seen - changed} of the ${seen} confirmed had changed state meanwhile and were left as they are` : done;
    });
  });

  app.post<{ Params: { id: string }; Body: { back?: string } }>('/tasks/:id/cancel', {
    schema: { params: ID, body: { type: 'object', properties: FORM } },
  }, (request, reply) => {
    const id = Number(request.params.id);
    return attempt(reply, localPath(request.body.back, `/tasks/${id}`), async () => {
      const row = await store.cancel(id);
      if (!row) throw new Refused(`task ${id} not found`);
      return row.state_id === 'CC' ? `task ${id} cancelled (it was waiting: CC at once)` : `task ${id}: cancelling (its process group is being killed)`;
    });
  });

  app.post<{ Params: { id: string }; Body: { back?: string } }>('/tasks/:id/queue', {
    schema: { params: ID, body: { type: 'object', properties: FORM } },
  }, (request, reply) => {
    const id = Number(request.params.id);
    return attempt(reply, localPath(request.body.back, `/tasks/${id}`), async () => {
      const row = await store.queue(id);
      if (!row) throw new Refused(`task ${id} not found`);
      return `task ${id} queued (AW)`;
    });
  });

  app.post<{ Body: AddForm }>('/tasks', {
    schema: {
      body: {
        type: 'object',
        required: ['command'],
        properties: {
          ...FORM,
          command: { type: 'string', minLength: 1, maxLength: 100_000 },
          group: { type: 'string', pattern: `^$|${INT}` },
          priority: { type: 'string', pattern: `^$|${INT}` },
          state: { type: 'string', enum: ['DR', 'AW'] },
          timeout: { type: 'string', maxLength: 40 },
          attempts: { type: 'string', pattern: '^$|^[0-9]{1,9}$' },
          after: { type: 'string', maxLength: 10_000 },
          when: { type: 'string', enum: ['all_success', 'all_done', 'any_failed'] },
          concurrency_key: { type: 'string', maxLength: 1000 },
          every: { type: 'string', maxLength: 40 },
          cron: { type: 'string', maxLength: 200 },
          tz: { type: 'string', maxLength: 100 },
        },
      },
    },
  }, (request, reply) => {
    const body = request.body;
    const command = parseCommand(body.command);
    const group = body.group ? Number(body.group) : 0;
    const priority = body.priority ? Number(body.priority) : 0;
    const state = body.state ?? 'AW';
    const timeoutMs = optional(body.timeout, 'timeout', parseDuration);
    if (timeoutMs !== null && timeoutMs <= 0) throw new BadRequest('timeout: a duration above 0, like 30s or 5m');
    const maxAttempts = body.attempts ? Number(body.attempts) : null;
    if (maxAttempts !== null && maxAttempts < 1) throw new BadRequest('runs at most: 1 or more (1: no retry)');
    const dependsOn = optional(body.after, 'after', parseTaskIds);
    const task = {
      command, group, priority, state, timeoutMs, maxAttempts, dependsOn, dependsRule: dependsOn ? (body.when ?? null) : null,
      concurrencyKey: body.concurrency_key?.trim() || null, schedule: readSchedule(body),
    };
    let id = 0;
    // Added: to its page; refused: back to the list with the reason.
    return attempt(reply, () => (id > 0 ? `/tasks/${id}` : '/tasks'), async () => {
      id = await store.add(task);
      return `task ${id} added (${state})${task.schedule ? ', scheduled' : ''}`;
    });
  });

  app.post<{ Params: { id: string }; Body: { stop: string; back?: string } }>('/workers/:id/stop', {
    schema: {
      params: { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9]{1,10}$' } } },
      body: { type: 'object', required: ['stop'], properties: { ...FORM, stop: { type: 'string', enum: ['0', '1', '2', '3'] } } },
    },
  }, (request, reply) => {
    const id = Number(request.params.id);
    const stop = Number(request.body.stop);
    return attempt(reply, localPath(request.body.back, '/workers'), async () => {
      if (!(await store.setWorkerStop(id, stop))) throw new Refused(`worker ${id} not found`);
      return `worker ${id}: stop = ${stop}`;
    });
  });
}

/** A field read by the CLI's parser (the same words as pg-tasks add); empty: not given. */
function optional<T>(text: string | undefined, name: string, parse: (value: string) => T): T | null {
  if (!text?.trim()) return null;
  try {
    return parse(text.trim());
  } catch (error) {
    if (error instanceof InvalidArgumentError) throw new BadRequest(`${name}: ${error.message}`);
    throw error;
  }
}

/** The add form's schedule, as pg-tasks schedule reads it: every a period, or on cron, in a zone. */
function readSchedule(body: AddForm): NewSchedule | null {
  const every = optional(body.every, 'every', parseEvery);
  const cron = body.cron?.trim() || null;
  if (every === null && cron === null) return null;
  if (every !== null && cron !== null) throw new BadRequest('a schedule is every a period or on cron, not both');
  const tz = body.tz?.trim() || 'UTC';
  try {
    assertTimeZone(tz);
    return { every, cron, tz, firstStart: cron !== null ? nextCronSlot(cron, tz, new Date()) : new Date() };
  } catch (error) {
    throw new BadRequest(`${cron !== null ? 'cron' : 'zone'}: ${(error as Error).message.split('\n')[0]}`);
  }
}

/** A refusal of ours (no such row), shown like a trigger's. */
class Refused extends Error {}

/** One argument a line (blank lines skipped), or a JSON array of strings. */
export function parseCommand(text: string): string[] {
  const trimmed = text.trim();
  if (trimmed.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch (error) {
      throw new BadRequest(`command: not valid JSON: ${(error as Error).message}`);
    }
    if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((a) => typeof a === 'string')) {
      throw new BadRequest('command: a JSON command is a non-empty array of strings, like ["sh", "-c", "echo hi"]');
    }
    return parsed;
  }
  const args = text.split('\n').map((line) => line.replace(/\r$/, '')).filter((line) => line.trim() !== '');
  if (args.length === 0) throw new BadRequest('command: give the program on the first line, then one argument a line');
  return args;
}
