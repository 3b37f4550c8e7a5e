// The pages (GET): each renders whole, or only its live part when ?fragment= asks for it.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { pageContext, type Dashboard } from '../context.js';
import type { Html } from '../html.js';
import { nextRuns } from '../schedule.js';
import { FILTER_FIELDS, readFilter, type FilterFields } from '../filter.js';
import type { Cursor, TaskFilter, TaskSort } from '../store.js';
import { groupTable, groupsPage } from '../views/groups.js';
import { overviewBody, overviewPage } from '../views/overview.js';
import { scheduleTable, schedulesPage } from '../views/schedules.js';
import { AROUND } from '../views/graph.js';
import { RUNS_PER_PAGE, runsSection, type RunsView } from '../views/runs.js';
import { taskActions, taskPage, taskSummary, type TaskView } from '../views/task.js';
import { taskTable, tasksPage, type TasksView } from '../views/tasks.js';
import { workerTable, workersPage } from '../views/workers.js';
import { BadRequest } from './errors.js';
import { registerTaskGraph, runsFrom, TASK_QUERY, type TaskQuery } from './task-page.js';

const ID = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9]{1,15}$' } } } as const;
const SCHEDULES_SHOWN = 500;
const NEXT_RUNS = 3;

const TASKS_QUERY = {
  type: 'object',
  properties: {
    ...FILTER_FIELDS,
    sort: { type: 'string', enum: ['', 'newest', 'oldest', 'queue'] },
    after: { type: 'string', pattern: '^$|^[0-9]{1,15}$|^-?[0-9]{1,10}:-?[0-9]{1,20}:[0-9]{1,15}$' },
    limit: { type: 'string', pattern: '^[0-9]{1,3}$' },
    fragment: { type: 'string' },
  },
} as const;

interface TasksQuery extends FilterFields {
  sort?: string; after?: string; limit?: string; fragment?: string;
}

function send(reply: FastifyReply, body: Html): FastifyReply {
  return reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(body.text);
}

function fragment(request: FastifyRequest): string | undefined {
  return (request.query as { fragment?: string }).fragment;
}

export function registerPages(app: FastifyInstance, dashboard: Dashboard): void {
  const { store } = dashboard;

  app.get<{ Querystring: { fragment?: string } }>('/', { schema: { querystring: { type: 'object', properties: { fragment: { type: 'string' } } } } }, async (request, reply) => {
    const data = await store.overview(dashboard.now());
    const ctx = pageContext(dashboard, request, reply, !fragment(request));
    return send(reply, fragment(request) ? overviewBody(data) : overviewPage(ctx, data));
  });

  app.get<{ Querystring: TasksQuery }>('/tasks', { schema: { querystring: TASKS_QUERY } }, async (request, reply) => {
    const q = request.query;
    const sort: TaskSort = q.sort === 'oldest' || q.sort === 'queue' ? q.sort : 'newest';
    const limit = q.limit ? Number(q.limit) : 50;
    if (limit < 1 || limit > 500) throw new BadRequest('limit must be 1 to 500');
    const after = q.after ? parseCursor(q.after, sort) : null;
    let filter: TaskFilter;
    try {
      filter = readFilter(q);
    } catch (error) {
      // A full page keeps the filter as typed, says what is wrong in one line, and lists
      // nothing (and has no live part to fetch the same bad filter again).
      if (!(error instanceof BadRequest) || fragment(request)) throw error;
      const ctx = pageContext(dashboard, request, reply, true);
      ctx.error = error.message;
      const view: TasksView = { filter: null, fields: q, sort, after: null, limit, result: { rows: [], next: null }, self: '/tasks' };
      return send(reply.code(400), tasksPage(ctx, view));
    }
    // Queue order is the order waiting tasks are claimed in; other states have none.
    if (sort === 'queue') {
      if (filter.state !== null && filter.state !== 'AW') throw new BadRequest(`queue order is for waiting tasks (AW), not ${filter.state}`);
      filter.state = 'AW';
    }
    const result = await store.tasks(filter, sort, after, limit);
    const url = new URL(request.url, 'http://dashboard');
    url.searchParams.delete('fragment');
    const self = url.pathname + url.search;
    const view: TasksView = { filter, fields: q, sort, after: q.after || null, limit, result, self };
    const ctx = pageContext(dashboard, request, reply, !fragment(request));
    return send(reply, fragment(request) ? taskTable(ctx, view) : tasksPage(ctx, view));
  });

  app.get<{ Params: { id: string }; Querystring: TaskQuery }>('/tasks/:id', { schema: { params: ID, querystring: TASK_QUERY } }, async (request, reply) => {
    const id = Number(request.params.id);
    const task = await store.task(id);
    if (!task) return reply.code(404).type('text/plain; charset=utf-8').send(`task ${id} not found\n`);
    const asked = request.query.attempt ? Number(request.query.attempt) : null;
    if (asked !== null && (asked < 1 || asked > task.attempt)) {
      throw new BadRequest(task.attempt === 0 ? `task ${id} has not run yet` : `task ${id} has no run ${asked} (its runs: 1 to ${task.attempt})`);
    }
    const ctx = pageContext(dashboard, request, reply, !fragment(request));
    const part = request.query.fragment;
    const from = runsFrom(request.query);
    const runs = async (): Promise<RunsView> => ({ taskId: id, attempts: task.attempt, page: await store.runs(id, from, RUNS_PER_PAGE), from, attempt: asked });
    if (part === 'runs') return send(reply, runsSection(await runs()));
    // The buttons the state allows (read again by the page when the state or the run changes).
    if (part === 'actions') return send(reply, taskActions(ctx, task));
    const noRuns: RunsView = { taskId: id, attempts: task.attempt, page: { rows: [], newer: null, older: null }, from, attempt: asked };
    const [runsView, prerequisites, dependents, nodes] = part === 'summary'
      ? [noRuns, [], [], []]
      : await Promise.all([runs(), store.prerequisites(id), store.dependents(id), store.graph(id, false, AROUND)]);
    const schedule = nextRuns(task, NEXT_RUNS);
    const view: TaskView = {
      task, runs: runsView, graph: { taskId: id, nodes, whole: false, bounds: AROUND }, prerequisites, dependents,
      nextRuns: schedule.times, scheduleProblem: schedule.problem, outputAttempt: asked ?? task.attempt, followLatest: asked === null,
    };
    return send(reply, part === 'summary' ? taskSummary(view) : taskPage(ctx, view));
  });
  registerTaskGraph(app, dashboard);

  // A run's output after a chunk, as JSON (bytes in base64: a chunk may end inside a UTF-8
  // character; the browser decodes the stream).
  app.get<{ Params: { id: string }; Querystring: { attempt: string; after?: string } }>('/tasks/:id/output', {
    schema: {
      params: ID,
      querystring: { type: 'object', required: ['attempt'], properties: { attempt: { type: 'string', pattern: '^[0-9]{1,9}$' }, after: { type: 'string', pattern: '^-1$|^[0-9]{1,9}$' } } },
    },
  }, async (request, reply) => {
    const page = 200;
    const chunks = await store.output(Number(request.params.id), Number(request.query.attempt), Number(request.query.after ?? -1), page);
    return reply.header('cache-control', 'no-store').send({
      chunks: chunks.map((c) => ({ seq: c.seq, pos: c.pos, data: c.data.toString('base64') })),
      more: chunks.length === page,
    });
  });

  app.get('/workers', async (request, reply) => {
    const workers = await store.workers();
    const ctx = pageContext(dashboard, request, reply, !fragment(request));
    return send(reply, fragment(request) ? workerTable(ctx, workers) : workersPage(ctx, workers));
  });

  app.get('/schedules', async (request, reply) => {
    const rows = await store.schedules(SCHEDULES_SHOWN);
    const views = rows.map((row) => {
      const next = nextRuns(row, NEXT_RUNS);
      return { row, nextRuns: next.times, problem: next.problem };
    });
    const ctx = pageContext(dashboard, request, reply, !fragment(request));
    return send(reply, fragment(request) ? scheduleTable(views, SCHEDULES_SHOWN) : schedulesPage(ctx, views, SCHEDULES_SHOWN));
  });

  app.get('/groups', async (request, reply) => {
    const [groups, workers] = await Promise.all([store.groups(), store.workers()]);
    const view = { ...groups, workers };
    const ctx = pageContext(dashboard, request, reply, !fragment(request));
    return send(reply, fragment(request) ? groupTable(view) : groupsPage(ctx, view));
  });

  // ?task=ID: a task page, sent its task's changes and output (live.ts).
  app.get<{ Querystring: { task?: string } }>('/events', {
    schema: { querystring: { type: 'object', properties: { task: { type: 'string', pattern: '^[0-9]{1,15}$' } } } },
  }, (request, reply) => {
    const slot = dashboard.live.reserve(request.ip);
    if ('refused' in slot) return reply.code(503).type('text/plain; charset=utf-8').send(`${slot.refused}\n`);
    void reply.hijack();
    dashboard.live.subscribe(reply.raw, securityHeaders(), slot, request.query.task ? Number(request.query.task) : null);
    return undefined;
  });
}

/** "123" for the id sorts; "priority:microseconds:id" for queue order. */
function parseCursor(text: string, sort: TaskSort): Cursor {
  const parts = text.split(':');
  if (sort === 'queue') {
    if (parts.length !== 3) throw new BadRequest('after: queue order takes a cursor priority:microseconds:id, as its next link gives');
    return { priority: Number(parts[0]), ageKey: parts[1]!, id: Number(parts[2]) };
  }
  if (parts.length !== 1) throw new BadRequest('after: this order takes a task id');
  return { id: Number(parts[0]) };
}

/** Sent with every response: nothing from elsewhere runs here, and nobody frames us. */
export function securityHeaders(): Record<string, string> {
  return {
    'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    'x-content-type-options': 'nosniff',
    // Not no-referrer: with it, Chromium sends "Origin: null" on our own form posts. Same-origin
    // still never tells another site a URL of ours (the one with ?token= redirects at once).
    'referrer-policy': 'same-origin',
    'x-frame-options': 'DENY',
  };
}
