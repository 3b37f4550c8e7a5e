// The tasks page: filters, the add-task form, and one keyset page of tasks (live).
import { DEPENDS_RULE_WORDS, TASK_STATES } from '../../../client/types.js';
import { END_REASONS, filterFields, filtered, timeField, type FilterFields } from '../filter.js';
import { clippedCommand, errorCell, href, html, when, type Html } from '../html.js';
import type { Cursor, TaskFilter, TaskPage, TaskSort } from '../store.js';
import { actionButton, page, stateBadge, type PageContext } from './layout.js';

export interface TasksView {
  /** null: the filter did not read (the page says why and lists nothing). */
  filter: TaskFilter | null;
  /** The filter's fields as given, to show them again. */
  fields: FilterFields;
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
    ...(view.filter ? filterFields(view.filter) : {}),
    sort: view.sort === 'newest' ? null : view.sort, limit: view.limit === 50 ? null : view.limit, after,
  };
}

export function tasksPage(ctx: PageContext, view: TasksView): Html {
  const states = Object.entries(TASK_STATES);
  const sorts: Array<[TaskSort, string]> = [['newest', 'newest first (id)'], ['oldest', 'oldest first (id)'], ['queue', 'queue order (waiting: priority, then age)']];
  const f = view.fields;
  return page(ctx, 'Tasks', '/tasks', html`
<h1>Tasks</h1>
<form method="get" action="/tasks" class="filters">
  <label>State <select name="state"><option value="">any</option>${states.map(([code, name]) => html`<option value="${code}"${f.state === code ? html` selected` : ''}>${code} ${name}</option>`)}</select></label>
  <label>Group <input name="group" inputmode="numeric" size="4" value="${f.group ?? ''}"></label>
  <label>Search <input name="q" size="24" placeholder="text in command or error; or an id" value="${f.q ?? ''}"></label>
  <label>End reason <select name="reason"><option value="">any</option>${END_REASONS.map((r) => html`<option value="${r}"${f.reason === r ? html` selected` : ''}>${r}</option>`)}</select></label>
  <label>Changed since <input type="datetime-local" step="1" name="since" value="${view.filter?.since ? timeField(view.filter.since) : (f.since ?? '')}" title="last state change, UTC"></label>
  <label>until <input type="datetime-local" step="1" name="until" value="${view.filter?.until ? timeField(view.filter.until) : (f.until ?? '')}" title="last state change, UTC"></label>
  <label>Params contain <input name="params" size="24" placeholder='{"customer": 42}' value="${f.params ?? ''}" title="JSON the task's params contain (@>)"></label>
  <label>Sort <select name="sort">${sorts.map(([value, name]) => html`<option value="${value}"${view.sort === value ? html` selected` : ''}>${name}</option>`)}</select></label>
  <button type="submit">Show</button>
</form>
${view.filter ? html`${bulkForm(ctx, view.filter)}
<section id="task-list" data-live="tasks" data-src="${fragmentUrl(view.self)}"${view.filter.group !== null ? html` data-group="${view.filter.group}"` : ''}>
${taskTable(ctx, view)}
</section>` : ''}
${ctx.role === 'operator' ? addForm(ctx) : ''}`);
}

/**
 * The bulk actions over the filter's tasks (operators only): each asks first how many it
 * would change (POST /tasks/bulk), and acts only on the confirmation of that count.
 */
function bulkForm(ctx: PageContext, filter: TaskFilter): Html {
  if (ctx.role !== 'operator') return html``;
  const requeue = filter.state === null || filter.state.startsWith('C');
  const cancel = filter.state === null || filter.state === 'AW' || filter.state === 'AE';
  if (!requeue && !cancel) return html``;
  return html`<form method="post" action="/tasks/bulk" class="bulk">
  <input type="hidden" name="csrf" value="${ctx.csrf}">
  ${Object.entries(filterFields(filter)).map(([name, value]) => (value === null ? '' : html`<input type="hidden" name="${name}" value="${value}">`))}
  <span>${filtered(filter) ? 'Every task of this filter:' : 'Every task (no filter):'}</span>
  ${requeue ? html`<button type="submit" name="action" value="requeue">Re-queue the ended ones…</button>` : ''}
  ${cancel ? html`<button type="submit" name="action" value="cancel">Cancel the waiting and running ones…</button>` : ''}
</form>`;
}

/** The add-task form: the columns "pg-tasks add" sets, and a schedule as "pg-tasks schedule" sets it. */
function addForm(ctx: PageContext): Html {
  return html`<details class="add">
<summary>Add a task</summary>
<form method="post" action="/tasks" class="add-task">
  <input type="hidden" name="csrf" value="${ctx.csrf}">
  <label>Command: one argument a line, or a JSON array<textarea name="command" rows="4" cols="60" required></textarea></label>
  <label>Group <input name="group" inputmode="numeric" size="4" value="0"></label>
  <label>Priority <input name="priority" inputmode="numeric" size="4" value="0"></label>
  <label>State <select name="state"><option value="AW">AW: queue it</option><option value="DR">DR: keep it as a draft</option></select></label>
  <label>Timeout <input name="timeout" size="6" placeholder="30s, 5m, 1h" title="kill a run that lasts longer (default: the group's)"></label>
  <label>Runs at most <input name="attempts" inputmode="numeric" size="4" placeholder="1" title="a failed run is retried until this many (default: the group's, else 1)"></label>
  <label>After tasks <input name="after" size="10" placeholder="12, 13" title="run once these have ended (pg-tasks add --after)"></label>
  <label>when <select name="when">${Object.entries(DEPENDS_RULE_WORDS).map(([rule, words]) => html`<option value="${rule}">${words}</option>`)}</select></label>
  <label>Concurrency key <input name="concurrency_key" size="12" title="at most the key's limit of its tasks run at once (default 1)"></label>
  <label>Every <input name="every" size="6" placeholder="10s, 5m, 1d" title="schedule: re-queue it each period once it has ended"></label>
  <label>or cron <input name="cron" size="14" placeholder="*/5 * * * *"></label>
  <label>zone <input name="tz" size="10" value="UTC"></label>
  <button type="submit">Add</button>
</form>
</details>`;
}

export function fragmentUrl(self: string): string {
  return self + (self.includes('?') ? '&' : '?') + 'fragment=1';
}

/** The live part: the table and the link to the next page. */
export function taskTable(ctx: PageContext, view: TasksView): Html {
  const { rows, next } = view.result;
  const back = view.self;
  return html`<table class="tasks">
<thead><tr><th>id</th><th>state</th><th>owner</th><th>group</th><th>prio</th><th>command</th><th>attempt</th><th>changed</th><th>error</th><th></th></tr></thead>
<tbody>
${rows.length === 0 ? html`<tr><td colspan="10" class="empty">no tasks${view.after ? ' on this page' : ''}</td></tr>` : ''}
${rows.map((t) => html`<tr data-id="${t.id}">
  <td><a href="/tasks/${t.id}">${t.id}</a></td>
  <td>${stateBadge(t.state_id)}${t.end_reason && t.end_reason !== 'completed' && t.state_id.startsWith('C') ? html` <small>${t.end_reason}</small>` : ''}${t.next_start || t.shed_cron ? html` <small title="scheduled">⏱</small>` : ''}${t.progress !== null ? html` <progress value="${t.progress}" max="1" title="${t.progress_message ?? ''}"></progress>` : ''}</td>
  <td>${t.owner ?? '-'}</td>
  <td>${t.group_id}</td>
  <td>${t.priority}</td>
  <td class="command">${clippedCommand(t.command)}</td>
  <td>${t.attempt}</td>
  <td class="when">${when(t.last_state_change)}</td>
  ${errorCell(t.error)}
  <td class="actions">${rowActions(ctx, t.id, t.state_id, t.live_worker_id !== null, back)}</td>
</tr>`)}
</tbody>
</table>
<nav class="pager">
  ${view.after ? html`<a href="${href('/tasks', query(view, null))}" rel="first">first page</a>` : ''}
  ${next ? html`<a href="${href('/tasks', query(view, formatCursor(next)))}" rel="next">next page →</a>` : html`<span>end of the list</span>`}
</nav>`;
}

/**
 * The actions a task's state allows: cancel a waiting or executing one (or one ended by hand
 * whose process still runs), queue a draft, re-queue an ended one. Cancel goes to its
 * confirmation page first.
 */
export function rowActions(ctx: PageContext, id: number, state: string, live: boolean, back: string): Html {
  if (ctx.role !== 'operator') return html``;
  const out: Html[] = [];
  if (cancellable(state, live)) out.push(cancelLink(id, 'cancel…', back));
  if (state === 'DR') out.push(actionButton(ctx, `/tasks/${id}/queue`, 'queue', back));
  if (state.startsWith('C')) out.push(actionButton(ctx, `/tasks/${id}/queue`, 're-queue', back));
  return html`${out}`;
}

/** What the trigger lets a cancel change: AW, AE, or an ended row whose process still lives (AC is being cancelled). */
export function cancellable(state: string, live: boolean): boolean {
  return state === 'AW' || state === 'AE' || (state.startsWith('C') && live);
}

/** A link to the cancel's confirmation page (GET: it works without a script). */
export function cancelLink(id: number, label: string, back: string): Html {
  return html`<a class="button cancel" href="${href(`/tasks/${id}/cancel`, { back })}">${label}</a>`;
}
