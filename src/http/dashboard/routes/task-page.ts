// The task page's query (which run's output, which page of runs) and its graph: the tasks
// around it (a fragment of the task page) and its whole DAG (a page of its own).
import type { FastifyInstance } from 'fastify';
import { pageContext, type Dashboard } from '../context.js';
import type { RunsFrom } from '../store.js';
import { AROUND, graphBody, graphPage, graphSection, WHOLE } from '../views/graph.js';
import { BadRequest } from './errors.js';

const ID = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9]{1,15}$' } } } as const;
const ATTEMPT = { type: 'string', pattern: '^[0-9]{1,9}$' } as const;

export const TASK_QUERY = {
  type: 'object',
  properties: {
    attempt: ATTEMPT,
    fragment: { type: 'string', enum: ['summary', 'runs', 'actions'] },
    runs_before: ATTEMPT,
    runs_after: ATTEMPT,
  },
} as const;

export interface TaskQuery {
  attempt?: string;
  fragment?: 'summary' | 'runs' | 'actions';
  /** A page of runs: those before this attempt (the "older" link), or after it ("newer"). */
  runs_before?: string;
  runs_after?: string;
}

export function runsFrom(query: TaskQuery): RunsFrom {
  if (query.runs_before && query.runs_after) throw new BadRequest('give runs_before or runs_after, not both');
  if (query.runs_after) return { after: Number(query.runs_after) };
  return { before: query.runs_before ? Number(query.runs_before) : null };
}

export function registerTaskGraph(app: FastifyInstance, dashboard: Dashboard): void {
  const { store } = dashboard;
  app.get<{ Params: { id: string }; Querystring: { fragment?: 'around' | 'dag' } }>('/tasks/:id/graph', {
    schema: { params: ID, querystring: { type: 'object', properties: { fragment: { type: 'string', enum: ['around', 'dag'] } } } },
  }, async (request, reply) => {
    const id = Number(request.params.id);
    const part = request.query.fragment;
    const task = await store.task(id);
    if (!task) return reply.code(404).type('text/plain; charset=utf-8').send(`task ${id} not found\n`);
    const bounds = part === 'around' ? AROUND : WHOLE;
    const view = { taskId: id, nodes: await store.graph(id, part !== 'around', bounds), whole: part !== 'around', bounds };
    const body = part === 'around' ? graphSection(view) : part === 'dag' ? graphBody(view) : graphPage(pageContext(dashboard, request, reply, true), view);
    return reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(body.text);
  });
}
