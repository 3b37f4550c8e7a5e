// A task's runs on its page: one page of them (50, newest first, paged by attempt), as a
// timeline and as a table with each run's duration, CPU time and peak memory. The page never
// holds a run's output: the output shown is read on its own, for one run.
import type { RunRow } from '../../../sql/queries/taskpage.js';
import { href, html, when, type Html } from '../html.js';
import type { RunsFrom, RunsPage } from '../store.js';
import { runTimeline } from './timeline.js';
import { formatBytes, formatDuration } from './units.js';

/** Runs a page: a page of 50 is a few KB, whatever the task's history holds. */
export const RUNS_PER_PAGE = 50;

export interface RunsView {
  taskId: number;
  /** The task's attempt: how many runs it has had. */
  attempts: number;
  page: RunsPage;
  /** This page's own cursor, kept by the links to a run's output. */
  from: RunsFrom;
  /** The run whose output is shown, when one was asked for. */
  attempt: number | null;
}

/** The query of a page of runs: runs_before or runs_after, none for the newest. */
export function runsQuery(from: RunsFrom): Record<string, number | null> {
  return 'after' in from ? { runs_after: from.after } : { runs_before: from.before };
}

export function runsSection(view: RunsView): Html {
  const { rows } = view.page;
  if (rows.length === 0 && view.page.newer === null && view.page.older === null) return html`<p class="empty">no runs yet</p>`;
  const self = `/tasks/${view.taskId}`;
  const runLink = (attempt: number): string => href(self, { attempt, ...runsQuery(view.from) });
  return html`${runTimeline(rows, runLink)}
${pager(view)}
<table class="runs">
<thead><tr><th>run</th><th>started</th><th>duration</th><th>CPU</th><th>peak memory</th><th>end</th><th>exit</th><th>worker</th><th>node</th><th>pid</th><th>error</th></tr></thead>
<tbody>${rows.map((r) => html`<tr data-attempt="${r.attempt}"${r.attempt === view.attempt ? html` class="shown"` : ''}>
  <td><a href="${runLink(r.attempt)}">${r.attempt}</a></td>
  <td class="when">${when(r.started)}</td>
  <td class="num">${r.finished ? formatDuration(r.duration_ms) : html`<strong>running</strong> ${formatDuration(r.duration_ms)}`}</td>
  <td class="num">${cpu(r)}</td>
  <td class="num">${memory(r)}</td>
  <td>${r.end_reason ?? '-'}</td><td>${r.exit_code ?? r.exit_signal ?? '-'}</td>
  <td>${r.worker_id}</td><td>${r.node_name ?? '-'}</td><td>${r.pid ?? '-'}</td>
  <td class="error-cell" title="${r.error ?? ''}">${r.error ?? ''}</td>
</tr>`)}</tbody>
</table>
${rows.length > 20 ? pager(view) : ''}`;
}

function pager(view: RunsView): Html {
  const { rows, newer, older } = view.page;
  const self = `/tasks/${view.taskId}`;
  const attempt = view.attempt;
  const range = rows.length > 0 ? `runs ${rows[rows.length - 1]!.attempt} to ${rows[0]!.attempt}, newest first` : 'no runs here';
  // attempt counts the runs; rows written by hand may have more.
  const all = Math.max(view.attempts, rows[0]?.attempt ?? 0);
  return html`<p class="pager runs-pager"><span>${range} (${all} in all)</span>
${newer !== null ? html`<a href="${href(self, { attempt })}" rel="first">newest</a> <a href="${href(self, { attempt, runs_after: newer })}" rel="prev">← newer runs</a>` : ''}
${older !== null ? html`<a href="${href(self, { attempt, runs_before: older })}" rel="next">older runs →</a>` : ''}</p>`;
}

function cpu(r: RunRow): Html | string {
  if (r.cpu_user_ms === null && r.cpu_system_ms === null) return '-';
  const user = r.cpu_user_ms ?? 0;
  const system = r.cpu_system_ms ?? 0;
  return html`<span title="user ${formatDuration(user)}, system ${formatDuration(system)}">${formatDuration(user + system)}</span>`;
}

function memory(r: RunRow): Html | string {
  if (r.memory_peak !== null) return html`<span title="the run's cgroup: memory.peak">${formatBytes(r.memory_peak)}</span>`;
  if (r.max_rss_kb !== null) return html`<span title="its largest process: peak resident set (max RSS)">${formatBytes(r.max_rss_kb * 1024)}</span>`;
  return '-';
}
