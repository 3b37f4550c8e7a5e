// A run's output as a file: GET /tasks/:id/output.txt?attempt=N (the latest run without it),
// text/plain as the process wrote it (escape codes and all), with a file name to save it as.
// What is kept of a run is bounded by the node's --output-keep, so the body is too.
import type { FastifyInstance } from 'fastify';
import type { Dashboard } from '../context.js';
import { BadRequest } from './errors.js';

const ID = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9]{1,15}$' } } } as const;
/** Chunks read per statement. */
const PAGE = 500;

export function registerOutput(app: FastifyInstance, dashboard: Dashboard): void {
  const { store } = dashboard;
  app.get<{ Params: { id: string }; Querystring: { attempt?: string } }>('/tasks/:id/output.txt', {
    schema: { params: ID, querystring: { type: 'object', properties: { attempt: { type: 'string', pattern: '^[0-9]{1,9}$' } } } },
  }, async (request, reply) => {
    const id = Number(request.params.id);
    const task = await store.task(id);
    if (!task) return reply.code(404).type('text/plain; charset=utf-8').send(`task ${id} not found\n`);
    const attempt = request.query.attempt ? Number(request.query.attempt) : task.attempt;
    if (attempt < 1 || attempt > task.attempt) {
      throw new BadRequest(task.attempt === 0 ? `task ${id} has not run yet` : `task ${id} has no run ${attempt} (its runs: 1 to ${task.attempt})`);
    }
    const parts: Buffer[] = [];
    let expected = 0;
    for (let after = -1; ;) {
      const chunks = await store.output(id, attempt, after, PAGE);
      for (const chunk of chunks) {
        // Chunks past the node's --output-keep were deleted: the file says where.
        if (chunk.pos > expected) parts.push(Buffer.from(`${expected === 0 ? '' : '\n'}[… ${chunk.pos - expected} bytes not kept]\n`));
        parts.push(chunk.data);
        expected = chunk.pos + chunk.data.length;
        after = chunk.seq;
      }
      if (chunks.length < PAGE) break;
    }
    return reply
      .type('text/plain; charset=utf-8')
      .header('cache-control', 'no-store')
      .header('content-disposition', `attachment; filename="task-${id}-run-${attempt}.txt"`)
      .send(Buffer.concat(parts));
  });
}
