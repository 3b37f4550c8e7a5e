// The tasks page: filters, the add-task form, and one keyset page of tasks (live).
import { TASK_STATES } from '../../../client/types.js';
import { commandLine, href, html, when, type Html } from '../html.js';
import type { Cursor, TaskFilter, TaskPage, TaskSort } from '../store.js';
import { actionButton, page, stateBadge, type PageContext } from './layout.js';

export interface TasksView {
  filter: TaskFilter;
  sort: TaskSort;
  after: string | null;
  limit: number;
  result: TaskPage;
  /** This page's URL, where actions return and the live part is fetched from. */
  self: string;
}

export function formatCursor(cursor: Cursor): string {
  return 'priority' in cursor ? `${cursor.priority}:${cursor.ageKey}:${cursor.id}` : String(cursor.id);
}

function query(view: TasksView, after: string | null): Record<string, string | number | null> {
  return {
    state: view.filter.state, group: view.filter.group, q: view.filter.text,
    sort: view.sort === 'newest' ? null : view.sort, limit: view.limit === 50 ? null : view.limit, after,
  };
}

export function tasksPage(ctx: PageContext, view: TasksView): Html {
  const states = Object.entries(TASK_STATES);
  const sorts: Array<[TaskSort, string]> = [['newest', 'newest first (id)'], ['oldest', 'oldest first (id)'], ['queue', 'queue order (waiting: priority, then age)']];
  return page(ctx, 'Tasks', '/tasks', html`
<h1>Tasks</h1>
<form method="get" action="/tasks" class="filters">
  <label>State <select name="state"><option value="">any</option>${states.map(([code, name]) => html`<option value="${code}"${view.filter.state === code ? html` selected` : ''}>${code} ${name}</option>`)}</select></label>
  <label>Group <input name="group" inputmode="numeric" size="4" value="${view.filter.group ?? ''}"></label>
  <label>Search <input name="q" size="24" placeholder="text in command or error; or an id" value="${view.filter.text ?? ''}"></label>
  <label>Sort <select name="sort">${sorts.map(([value, name]) => html`<option value="${value}"${view.sort === value ? html` selected` : ''}>${name}</option>`)}</select></label>
  <button type="submit">Show</button>
</form>
<section id="task-list" data-live="tasks" data-src="${fragmentUrl(view.self)}">
${taskTable(ctx, view)}
</section>
<details class="add">
<summary>Add a task</summary>
<form method="post" action="/tasks" class="add-task">
  <input type="hidden" name="csrf" value="${ctx.csrf}">
  <label>Command: one argument a line, or a JSON array<textarea name="command" rows="4" cols="60" required></textarea></label>
  <label>Group <input name="group" inputmode="numeric" size="4" value="0"></label>
  <label>Priority <input name="priority" inputmode="numeric" size="4" value="0"></label>
  <label>State <select name="state"><option value="AW">AW: queue it</option><option value="DR">DR: keep it as a draft</option></select></label>
  <button type="submit">Add</button>
</form>
</details>`);
}

export function fragmentUrl(self: string): string {
  return self + (self.includes('?') ? '&' : '?') + 'fragment=1';
}

/** The live part: the table and the link to the next page. */
export function taskTable(ctx: PageContext, view: TasksView): Html {
  const { rows, next } = view.result;
  const back = view.self;
  return html`<table class="tasks">
<thead><tr><th>id</th><th>state</th><th>group</th><th>prio</th><th>command</th><th>attempt</th><th>changed</th><th>error</th><th></th></tr></thead>
<tbody>
${rows.length === 0 ? html`<tr><td colspan="9" class="empty">no tasks${view.after ? ' on this page' : ''}</td></tr>` : ''}
${rows.map((t) => html`<tr data-id="${t.id}">
  <td><a href="/tasks/${t.id}">${t.id}</a></td>
  <td>${stateBadge(t.state_id)}${t.end_reason && t.state_id.startsWith('C') ? html` <small>${t.end_reason}</small>` : ''}${t.next_start || t.shed_cron ? html` <small title="scheduled">⏱</small>` : ''}</td>
  <td>${t.group_id}</td>
  <td>${t.priority}</td>
  <td class="command"><code>${commandLine(t.command)}</code></td>
  <td>${t.attempt}</td>
  <td class="when">${when(t.last_state_change)}</td>
  <td class="error-cell">${(t.error ?? '').split('\n')[0]}</td>
  <td class="actions">${rowActions(ctx, t.id, t.state_id, t.live_worker_id !== null, back)}</td>
</tr>`)}
</tbody>
</table>
<nav class="pager">
  ${view.after ? html`<a href="${href('/tasks', query(view, null))}" rel="first">first page</a>` : ''}
  ${next ? html`<a href="${href('/tasks', query(view, formatCursor(next)))}" rel="next">next page →</a>` : html`<span>end of the list</span>`}
</nav>`;
}

/** The actions a task's state allows: cancel an active one, queue a draft or an ended one. */
export function rowActions(ctx: PageContext, id: number, state: string, live: boolean, back: string): Html {
  const out: Html[] = [];
  if (state === 'AW' || state === 'AE' || live) out.push(actionButton(ctx, `/tasks/${id}/cancel`, 'cancel', back));
  if (state === 'DR') out.push(actionButton(ctx, `/tasks/${id}/queue`, 'queue', back));
  if (state.startsWith('C')) out.push(actionButton(ctx, `/tasks/${id}/queue`, 're-queue', back));
  return html`${out}`;
}
