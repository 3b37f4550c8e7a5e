// The actions (POST forms): each is the statement a user would write in SQL, so the triggers
// judge it; a refusal comes back to the page as the trigger's own sentence, not a stack trace.
// Every one returns to the page it came from (303), with what happened as a flash message.
import type { FastifyInstance, FastifyReply } from 'fastify';
import { describeError } from '../../../db/errors.js';
import { flash, localPath, type Dashboard } from '../context.js';
import { BadRequest } from './errors.js';

const ID = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9]{1,15}$' } } } as const;
const INT = '^-?[0-9]{1,10}$';
/** Every form carries the CSRF token (checked before the route by the access hook) and where to return. */
const FORM = { csrf: { type: 'string', maxLength: 200 }, back: { type: 'string', maxLength: 2000 } } as const;
/** SQLSTATEs a person caused, shown as the database says them: the triggers' and constraints' refusals, a number out of range, a NUL byte (22021). */
// 42501: the database user lacks the role for this change (docs/security.md, "Roles").
const REFUSALS = new Set(['23514', '23503', '23502', '22P02', '22003', '22021', 'P0001', '42501']);

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

  app.post<{ Body: { command: string; group?: string; priority?: string; state?: 'DR' | 'AW' } }>('/tasks', {
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
        },
      },
    },
  }, (request, reply) => {
    const command = parseCommand(request.body.command);
    const group = request.body.group ? Number(request.body.group) : 0;
    const priority = request.body.priority ? Number(request.body.priority) : 0;
    const state = request.body.state ?? 'AW';
    let id = 0;
    // Added: to its page; refused: back to the list with the reason.
    return attempt(reply, () => (id > 0 ? `/tasks/${id}` : '/tasks'), async () => {
      id = await store.add({ command, group, priority, state });
      return `task ${id} added (${state})`;
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
