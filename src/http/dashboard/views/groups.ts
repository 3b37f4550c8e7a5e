// Groups: their settings (task_group) and their queues by state.
import { TASK_STATES, type TaskState } from '../../../client/types.js';
import { html, type Html } from '../html.js';
import type { GroupCount, GroupRow, WorkerRow } from '../store.js';
import { page, type PageContext } from './layout.js';

export interface GroupsView {
  rows: GroupRow[];
  counts: GroupCount[];
  workers: WorkerRow[];
}

export function groupsPage(ctx: PageContext, view: GroupsView): Html {
  return page(ctx, 'Groups', '/groups', html`
<h1>Groups</h1>
<section id="group-list" data-live="tasks workers" data-src="/groups?fragment=1" data-min-interval="2000">
${groupTable(view)}
</section>
<p class="hint">A group without a task_group row has the defaults: no limit, recover policy fail, ended tasks kept, runs kept 30 days.</p>`);
}

export function groupTable(view: GroupsView): Html {
  const ids = [...new Set([...view.rows.map((g) => g.id), ...view.counts.map((c) => c.group_id), ...view.workers.map((w) => w.group_id)])].sort((a, b) => a - b);
  if (ids.length === 0) return html`<p class="empty">no groups yet</p>`;
  const states = Object.keys(TASK_STATES) as TaskState[];
  return html`<table class="groups">
<thead><tr><th>group</th>${states.map((s) => html`<th>${s}</th>`)}<th>running</th><th>max running</th><th>workers (ok)</th><th>recover</th><th>timeout</th><th>keep ended</th><th>keep runs</th></tr></thead>
<tbody>${ids.map((id) => {
    const row = view.rows.find((g) => g.id === id);
    const counts = view.counts.filter((c) => c.group_id === id);
    const count = (s: TaskState): number => Number(counts.find((c) => c.state_id === s)?.tasks ?? 0);
    const running = counts.reduce((n, c) => n + Number(c.running), 0);
    const workers = view.workers.filter((w) => w.group_id === id);
    return html`<tr data-group="${id}">
  <td><a href="/tasks?group=${id}">${id}</a></td>
  ${states.map((s) => html`<td>${count(s) > 0 ? html`<a href="/tasks?group=${id}&amp;state=${s}">${count(s)}</a>` : '0'}</td>`)}
  <td>${running}</td>
  <td>${row?.max_running ?? 'no limit'}</td>
  <td>${workers.length} (${workers.filter((w) => w.lapses_in_ms !== null).length})</td>
  <td>${row?.recover_policy ?? 'fail'}</td>
  <td>${row?.timeout ?? '-'}</td>
  <td>${row ? (row.keep_ended ?? 'kept') : 'kept'}</td>
  <td>${row ? (row.keep_runs ?? 'kept') : '30 days'}</td>
</tr>`;
  })}</tbody>
</table>`;
}
