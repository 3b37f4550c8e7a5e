// The confirmation pages of the actions that can't be undone at a glance: cancelling a task
// (its process group is killed) and a bulk action over a filter's tasks (it says how many).
// Plain forms: they work without a script.
import type { Task } from '../../../client/types.js';
import { filterFields } from '../filter.js';
import { commandLine, href, html, type Html } from '../html.js';
import type { BulkAction, TaskFilter } from '../store.js';
import { page, stateBadge, type PageContext } from './layout.js';
import { cancellable } from './tasks.js';

export function tasks(n: number): string {
  return `${n} task${n === 1 ? '' : 's'}`;
}

/** "Cancel task 12?": what cancelling does in its state, and the form that does it. */
export function cancelConfirmPage(ctx: PageContext, task: Task, back: string): Html {
  const live = task.live_worker_id !== null;
  const body = !cancellable(task.state_id, live)
    ? html`<p>Task ${task.id} is ${stateBadge(task.state_id)}${task.state_id === 'AC' ? ': it is being cancelled already' : ': there is nothing to cancel'}.</p>
<p><a href="${back}">Back</a></p>`
    : html`<p>Task ${task.id} is ${stateBadge(task.state_id)}. ${task.state_id === 'AW'
      ? 'It has not started: it ends cancelled (CC) at once.'
      : html`Its process group is killed (SIGTERM, then SIGKILL after the grace period) by the node running it${live ? html` (worker ${task.live_worker_id})` : ''}, and it ends CC.`}</p>
<form method="post" action="/tasks/${task.id}/cancel" class="confirm">
  <input type="hidden" name="csrf" value="${ctx.csrf}">
  <input type="hidden" name="back" value="${back}">
  <button type="submit" class="danger">Yes, cancel task ${task.id}</button>
  <a href="${back}">No, keep it</a>
</form>`;
  return page(ctx, `Cancel task ${task.id}?`, '/tasks', html`
<h1>Cancel task ${task.id}?</h1>
<p><code>${commandLine(task.command)}</code></p>
${body}`);
}

const WORDS: Record<BulkAction, { verb: string; which: string }> = {
  requeue: { verb: 're-queue', which: 'ended (CS, CF or CC)' },
  cancel: { verb: 'cancel', which: 'waiting or executing (AW or AE)' },
};

/**
 * "This will re-queue 3 tasks": the count the filter matches now (at most `max`), and a form
 * that carries the filter and that count: the action changes at most that many.
 */
export function bulkConfirmPage(ctx: PageContext, action: BulkAction, filter: TaskFilter, count: number, max: number): Html {
  const words = WORDS[action];
  const fields = filterFields(filter);
  const list = href('/tasks', fields);
  const seen = Math.min(count, max);
  const body = count === 0
    ? html`<p>No ${words.which} task matches this filter: there is nothing to ${words.verb}.</p>`
    : html`<p class="bulk-count">This will ${words.verb} ${tasks(seen)}${count > max ? html` (the first ${max} by id: more match; do it again for the rest)` : ''}: the ${words.which} tasks of this filter.</p>
${action === 'cancel' ? html`<p>Waiting ones end CC at once; the process groups of executing ones are killed.</p>` : ''}
<form method="post" action="/tasks/bulk" class="confirm">
  <input type="hidden" name="csrf" value="${ctx.csrf}">
  <input type="hidden" name="action" value="${action}">
  <input type="hidden" name="seen" value="${seen}">
  ${Object.entries(fields).map(([name, value]) => (value === null ? '' : html`<input type="hidden" name="${name}" value="${value}">`))}
  <button type="submit" class="danger">Yes, ${words.verb} ${tasks(seen)}</button>
  <a href="${list}">No, back to the list</a>
</form>`;
  return page(ctx, `${words.verb} ${tasks(seen)}?`, '/tasks', html`
<h1>${action === 'requeue' ? 'Re-queue' : 'Cancel'} the tasks of a filter?</h1>
<p>Filter: ${describeFilter(filter)}</p>
${body}
${count === 0 ? html`<p><a href="${list}">Back to the list</a></p>` : ''}`);
}

function describeFilter(filter: TaskFilter): Html {
  const parts = Object.entries(filterFields(filter)).filter(([, v]) => v !== null);
  if (parts.length === 0) return html`<em>none: every task</em>`;
  return html`${parts.map(([name, value], i) => html`${i > 0 ? ', ' : ''}${name} <code>${value}</code>`)}`;
}
