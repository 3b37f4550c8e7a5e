// One task: its row, its runs, its live output, its dependencies and its schedule.
import type { Task, TaskRun } from '../../../client/types.js';
import { commandLine, html, when, type Html } from '../html.js';
import { actionButton, page, stateBadge, type PageContext } from './layout.js';

export interface TaskView {
  task: Task;
  runs: TaskRun[];
  prerequisites: Array<{ id: number; state_id: string }>;
  dependents: Array<{ id: number; state_id: string }>;
  /** The next start times of its schedule (none when not scheduled). */
  nextRuns: Date[];
  /** A schedule the dashboard could not compute (a bad cron expression…). */
  scheduleProblem: string | null;
  /** The run whose output is shown: the one asked for, else the latest (0: none yet). */
  outputAttempt: number;
  /** Follow the latest run (no run was asked for). */
  followLatest: boolean;
}

export function taskPage(ctx: PageContext, view: TaskView): Html {
  const { task } = view;
  const self = `/tasks/${task.id}`;
  return page(ctx, `Task ${task.id}`, '/tasks', html`
<h1>Task ${task.id} <small>${commandLine(task.command)}</small></h1>
<div class="task-actions">
  ${actionButton(ctx, `${self}/cancel`, 'Cancel (→ AC)', self)}
  ${actionButton(ctx, `${self}/queue`, task.state_id === 'DR' ? 'Queue (→ AW)' : 'Re-queue (→ AW)', self)}
</div>
<section id="task-summary" data-live="tasks output" data-task="${task.id}" data-group="${task.group_id}" data-src="${self}?fragment=summary">
${taskSummary(view)}
</section>
<h2>Output ${view.outputAttempt > 0 ? html`<small>run ${view.outputAttempt}</small>` : ''}</h2>
${view.outputAttempt === 0
    ? html`<p class="empty" id="no-output">not run yet</p>`
    : ''}
<pre id="output" class="output" data-task="${task.id}" data-attempt="${view.outputAttempt}" data-follow="${view.followLatest ? 'latest' : 'run'}"></pre>
<h2>Runs</h2>
<section id="task-runs" data-live="tasks output" data-task="${task.id}" data-group="${task.group_id}" data-src="${self}?fragment=runs">
${runTable(task, view.runs)}
</section>
${dependencies(view)}
${schedule(view)}`);
}

export function taskSummary(view: TaskView): Html {
  const t = view.task;
  const live = t.live_worker_id !== null;
  const fields: Array<[string, unknown]> = [
    ['state', html`${stateBadge(t.state_id)} ${t.end_reason ?? ''}`],
    ['attempt', `${t.attempt}${t.max_attempts !== null ? ` of ${t.max_attempts}` : ''}`],
    ['live run', live ? `attempt ${t.attempt} on worker ${t.live_worker_id} (term ${t.live_epoch})` : '-'],
    ['command', html`<code>${JSON.stringify(t.command)}</code>`],
    ['group', t.group_id],
    ['priority', t.priority],
    ['worker', t.worker_id ?? 'any of the group'],
    ['cwd', t.cwd ?? '-'],
    ['params', t.params === null ? '-' : JSON.stringify(t.params)],
    ['concurrency key', t.concurrency_key ?? '-'],
    ['created', when(t.created)],
    ['last state change', when(t.last_state_change)],
    ['run after', when(t.run_after)],
    ['started', when(t.started)],
    ['finished', when(t.finished)],
    ['exit', t.exit_code ?? t.exit_signal ?? '-'],
    ['pid', t.pid ?? '-'],
    ['node', t.node_name ?? '-'],
    ['timeout', t.timeout === null ? '-' : String(formatInterval(t.timeout))],
  ];
  return html`<dl class="fields" data-latest-attempt="${t.attempt}" data-state="${t.state_id}">
${fields.map(([name, value]) => html`<dt>${name}</dt><dd data-field="${name}">${value}</dd>`)}
</dl>
${t.error ? html`<h3>Error</h3><pre class="error-text">${t.error}</pre>` : ''}`;
}

export function runTable(task: Task, runs: TaskRun[]): Html {
  if (runs.length === 0) return html`<p class="empty">no runs yet</p>`;
  return html`<table class="runs">
<thead><tr><th>run</th><th>worker</th><th>node</th><th>pid</th><th>started</th><th>finished</th><th>end</th><th>exit</th><th>error</th></tr></thead>
<tbody>${runs.map((r) => html`<tr>
  <td><a href="/tasks/${task.id}?attempt=${r.attempt}">${r.attempt}</a></td>
  <td>${r.worker_id}</td><td>${r.node_name ?? '-'}</td><td>${r.pid ?? '-'}</td>
  <td>${when(r.started)}</td><td>${r.finished ? when(r.finished) : html`<strong>running</strong>`}</td>
  <td>${r.end_reason ?? '-'}</td><td>${r.exit_code ?? r.exit_signal ?? '-'}</td>
  <td class="error-cell">${(r.error ?? '').split('\n')[0]}</td>
</tr>`)}</tbody>
</table>`;
}

function dependencies(view: TaskView): Html {
  const t = view.task;
  if ((t.depends_on === null || t.depends_on.length === 0) && view.dependents.length === 0) return html``;
  const states = new Map(view.prerequisites.map((p) => [Number(p.id), p.state_id]));
  return html`<h2>Dependencies</h2>
${t.depends_on && t.depends_on.length > 0 ? html`<p>Depends on: ${t.depends_on.map((id, i) => html`${i > 0 ? ', ' : ''}<a href="/tasks/${id}">${id}</a> (${states.get(Number(id)) ?? 'deleted'})`)}${t.deps_left > 0 ? html` · ${t.deps_left} not yet CS` : ''}</p>` : ''}
${view.dependents.length > 0 ? html`<p>Waiting for it: ${view.dependents.map((d, i) => html`${i > 0 ? ', ' : ''}<a href="/tasks/${d.id}">${d.id}</a> (${d.state_id})`)}</p>` : ''}`;
}

function schedule(view: TaskView): Html {
  const t = view.task;
  if (t.next_start === null && t.shed_cron === null) return html``;
  const every = t.shed_cron !== null ? `cron "${t.shed_cron}" (${t.shed_tz})` : t.shed_period_id !== null ? `every ${t.shed_period_count ?? 1} × ${t.shed_period_id} (${t.shed_tz})` : 'once';
  return html`<h2>Schedule</h2>
<p>${every}${t.shed_clone ? `, a copy each time (overlap: ${t.shed_overlap})` : ', this task re-queued each time'} · ${t.shed_skip_count} slots skipped</p>
<p>Next runs: ${view.nextRuns.length > 0 ? view.nextRuns.map((d, i) => html`${i > 0 ? ', ' : ''}${when(d)}`) : '-'}</p>
${view.scheduleProblem ? html`<p class="error">${view.scheduleProblem}</p>` : ''}`;
}

/** An interval as node-postgres returns it ({ hours: 1, minutes: 30 }), as 1h30m. */
export function formatInterval(value: unknown): string {
  if (value === null || typeof value !== 'object') return String(value);
  const units: Array<[string, string]> = [['years', 'y'], ['months', 'mo'], ['days', 'd'], ['hours', 'h'], ['minutes', 'm'], ['seconds', 's'], ['milliseconds', 'ms']];
  const parts = units.map(([key, unit]) => [(value as Record<string, number | undefined>)[key], unit] as const).filter(([n]) => n);
  return parts.length === 0 ? '0s' : parts.map(([n, unit]) => `${n}${unit}`).join('');
}
