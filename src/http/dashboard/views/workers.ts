// Workers and the nodes serving them: lease, status, running tasks, stop code (writable).
import { html, when, type Html } from '../html.js';
import type { WorkerRow } from '../store.js';
import { page, type PageContext } from './layout.js';

export const STOP_CODES: Record<number, string> = {
  0: '0 run',
  1: '1 pause: start no new tasks',
  2: '2 drain: exit when the running ones end',
  3: '3 cancel the running ones, then exit',
};

export function workersPage(ctx: PageContext, workers: WorkerRow[]): Html {
  return page(ctx, 'Workers', '/workers', html`
<h1>Workers</h1>
<section id="worker-list" data-live="workers" data-src="/workers?fragment=1">
${workerTable(ctx, workers)}
</section>
<p class="hint">Status: <b>ok</b> a node holds the lease and claims tasks · <b>paused</b> it holds it, starts no new tasks (stop code 1) · <b>draining</b> no new tasks, its node exits when the running ones end (2) · <b>cancelling</b> its running tasks are cancelled, then its node exits (3) · <b>failed</b> active with a lapsed lease (its node died or lost the database; another node will recover its tasks) · <b>standby</b> not active, a standby node waiting · <b>stopped</b> no node.</p>`);
}

export function workerTable(ctx: PageContext, workers: WorkerRow[]): Html {
  if (workers.length === 0) return html`<p class="empty">no workers yet: start a node (pg-tasks node)</p>`;
  return html`<table class="workers">
<thead><tr><th>id</th><th>status</th><th>group</th><th>node</th><th>host · pid</th><th>running / slots</th><th>lease until</th><th>term since</th><th>standby</th><th>stop</th></tr></thead>
<tbody>${workers.map((w) => html`<tr data-worker="${w.id}">
  <td>${w.id}</td>
  <td><span class="status status-${w.status}" data-status="${w.status}">${w.status}</span></td>
  <td>${w.group_id}</td>
  <td>${w.node_name ?? '-'}</td>
  <td>${w.host ?? '-'}${w.pid !== null ? ` · ${w.pid}` : ''}</td>
  <td>${w.active ? w.task_count : 0} / ${w.max_task_count ?? '-'}</td>
  <td>${when(w.locked_until)}</td>
  <td>${when(w.lease_taken)} <small>(term ${w.lease_epoch})</small></td>
  <td>${w.standby_node ? html`${w.standby_node} <small>seen ${when(w.standby_seen)}</small>` : '-'}</td>
  <td>${ctx.role !== 'operator' ? (STOP_CODES[w.stop] ?? w.stop) : html`<form method="post" action="/workers/${w.id}/stop" class="inline">
    <input type="hidden" name="csrf" value="${ctx.csrf}">
    <select name="stop" aria-label="stop code of worker ${w.id}">${Object.entries(STOP_CODES).map(([code, name]) => html`<option value="${code}"${Number(code) === w.stop ? html` selected` : ''}>${name}</option>`)}</select>
    <button type="submit">set</button>
  </form>`}</td>
</tr>`)}</tbody>
</table>`;
}
