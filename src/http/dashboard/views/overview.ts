// The overview (the landing page, /): how things are going at a glance. Tasks per state and
// group; runs started, completed and failed per minute over the last hour and per hour over
// the last day; durations per group; the commands that take longest and fail most.
import { TASK_STATES, type TaskState } from '../../../client/types.js';
import type { DurationRow, RunsBucketRow } from '../../../sql/queries/dashboard-overview.js';
import { commandLine, href, html, when, type Html } from '../html.js';
import { COMMANDS_SHOWN, DAY_HOURS, type OverviewData } from '../overview.js';
import { bar, count, lineChart, type Series } from './charts.js';
import { page, stateBadge, type PageContext } from './layout.js';

/** The longest command text shown in a cell: the whole one is in its title. */
const COMMAND_SHOWN = 120;
/** The task list's search box takes this many characters (routes/pages.ts TASKS_QUERY). */
const SEARCH_MAX = 200;

export function overviewPage(ctx: PageContext, data: OverviewData): Html {
  // Live, at most once per 10 s however busy the tasks are: the overview reads a day of runs.
  return page(ctx, 'Overview', '/', html`
<h1>Overview <small>as of ${when(data.now)}</small></h1>
<div id="overview" data-live="tasks" data-src="/?fragment=1" data-min-interval="10000">
${overviewBody(data)}
</div>`);
}

export function overviewBody(data: OverviewData): Html {
  return html`${countsSection(data)}
<section class="charts">
<h2>Runs</h2>
${runsChart('runs-hour', 'Runs per minute, last hour', data.lastHour, 'minute')}
${runsChart('runs-day', 'Runs per hour, last 24 hours', data.lastDay, 'hour')}
<p class="hint">Started: runs that began in the bucket (still running or not). Completed and failed: runs that ended in it, exit 0 (CS) or a failure (CF); cancelled runs are in neither. Times in UTC.</p>
</section>
${durationsSection(data.groups)}
${commandsSection(data)}`;
}

function countsSection(data: OverviewData): Html {
  const states = Object.keys(TASK_STATES) as TaskState[];
  const groups = [...new Set(data.counts.map((c) => c.group_id))].sort((a, b) => a - b);
  const cell = (group: number | null, state: TaskState | null): number => data.counts
    .filter((c) => (group === null || c.group_id === group) && (state === null || c.state_id === state))
    .reduce((n, c) => n + c.tasks, 0);
  const link = (group: number | null, state: TaskState | null, n: number): Html | string =>
    n > 0 ? html`<a href="${href('/tasks', { group, state })}">${count(n)}</a>` : '0';
  return html`<section class="counts">
<h2>Tasks</h2>
<ul class="state-totals">${states.map((s) => html`<li data-state-total="${s}">${stateBadge(s)} <span class="state-name">${TASK_STATES[s]}</span> <b>${link(null, s, cell(null, s))}</b></li>`)}</ul>
${groups.length === 0 ? html`<p class="empty">no tasks yet</p>` : html`<table class="group-counts">
<thead><tr><th>group</th>${states.map((s) => html`<th>${s}</th>`)}<th>all</th></tr></thead>
<tbody>${groups.map((g) => html`<tr data-group="${g}"><td><a href="${href('/tasks', { group: g })}">${g}</a></td>${states.map((s) => html`<td data-state="${s}">${link(g, s, cell(g, s))}</td>`)}<td>${link(g, null, cell(g, null))}</td></tr>`)}</tbody>
</table>`}
</section>`;
}

function runsChart(id: string, title: string, rows: RunsBucketRow[], unit: 'minute' | 'hour'): Html {
  const hhmm = (at: Date): string => at.toISOString().slice(11, 16);
  const labels = rows.map((row) => `${hhmm(row.at)} UTC`);
  // Every 10 minutes, or every 4 hours: 6 or 7 labels under the axis.
  const every = unit === 'minute' ? 10 : 4;
  const ticks = new Map<number, string>();
  rows.forEach((row, i) => {
    const n = unit === 'minute' ? row.at.getUTCMinutes() : row.at.getUTCHours();
    if (n % every === 0) ticks.set(i, hhmm(row.at));
  });
  const series: Series[] = [
    { key: 'started', label: 'started', values: rows.map((r) => r.started) },
    { key: 'completed', label: 'completed', values: rows.map((r) => r.completed) },
    { key: 'failed', label: 'failed', values: rows.map((r) => r.failed) },
  ];
  return lineChart({ id, title, labels, ticks, series });
}

/** 850 ms, 12.3 s, 4 min 5 s, 2 h 3 min. */
export function duration(ms: number | null): string {
  if (ms === null) return '-';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function durationsSection(groups: DurationRow[]): Html {
  const longest = Math.max(0, ...groups.map((g) => g.p95_ms ?? 0));
  return html`<section class="durations">
<h2>Durations per group <small>runs ended in the last ${DAY_HOURS} hours</small></h2>
${groups.length === 0 ? html`<p class="empty">no run ended in the last ${DAY_HOURS} hours</p>` : html`<table class="group-durations">
<thead><tr><th>group</th><th>runs</th><th>failed</th><th>p50</th><th>p95</th><th>max</th><th class="bar-cell">p95</th></tr></thead>
<tbody>${groups.map((g) => html`<tr data-group="${g.group_id}"><td><a href="${href('/tasks', { group: g.group_id })}">${g.group_id}</a></td><td>${count(g.runs)}</td><td>${count(g.failed)}</td><td data-p50-ms="${Math.round(g.p50_ms ?? 0)}">${duration(g.p50_ms)}</td><td data-p95-ms="${Math.round(g.p95_ms ?? 0)}">${duration(g.p95_ms)}</td><td>${duration(g.max_ms)}</td><td class="bar-cell">${bar(g.p95_ms ?? 0, longest, `group ${g.group_id}: p95 ${duration(g.p95_ms)}`)}</td></tr>`)}</tbody>
</table>`}
</section>`;
}

function commandCell(command: string[] | null): Html {
  const text = commandLine(command ?? []);
  const shown = text.length > COMMAND_SHOWN ? `${text.slice(0, COMMAND_SHOWN)}…` : text;
  // The task list's search finds the tasks of this command (a substring of it, at most 200).
  const search = (command ?? []).join(' ').slice(0, SEARCH_MAX);
  return html`<td class="command"><a href="${href('/tasks', { q: search })}" title="${text}"><code>${shown}</code></a></td>`;
}

function commandsSection(data: OverviewData): Html {
  return html`<section class="commands">
<h2>Slowest commands <small>the ${COMMANDS_SHOWN} longest by mean duration, runs ended in the last ${DAY_HOURS} hours</small></h2>
${data.slowest.length === 0 ? html`<p class="empty">none</p>` : html`<table class="slowest">
<thead><tr><th>command</th><th>runs</th><th>mean</th><th>max</th></tr></thead>
<tbody>${data.slowest.map((c) => html`<tr>${commandCell(c.command)}<td>${count(c.runs)}</td><td>${duration(c.mean_ms)}</td><td>${duration(c.max_ms)}</td></tr>`)}</tbody>
</table>`}
<h2>Most failing commands <small>the ${COMMANDS_SHOWN} with the most failed runs in the last ${DAY_HOURS} hours</small></h2>
${data.failing.length === 0 ? html`<p class="empty">no failed run</p>` : html`<table class="failing">
<thead><tr><th>command</th><th>failed</th><th>runs</th><th>failed share</th></tr></thead>
<tbody>${data.failing.map((c) => html`<tr>${commandCell(c.command)}<td>${count(c.failed)}</td><td>${count(c.runs)}</td><td>${Math.round((100 * c.failed) / Math.max(1, c.runs))} %</td></tr>`)}</tbody>
</table>`}
</section>`;
}
