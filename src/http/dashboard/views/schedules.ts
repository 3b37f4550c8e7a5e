// Scheduled tasks and their next start times.
import { clippedCommand, html, when, type Html } from '../html.js';
import { everyLabel } from '../schedule.js';
import type { ScheduleRow } from '../store.js';
import { page, stateBadge, type PageContext } from './layout.js';

export interface ScheduleView {
  row: ScheduleRow;
  nextRuns: Date[];
  problem: string | null;
}

export function schedulesPage(ctx: PageContext, schedules: ScheduleView[], limit: number): Html {
  return page(ctx, 'Schedules', '/schedules', html`
<h1>Schedules</h1>
<section id="schedule-list" data-live="tasks" data-src="/schedules?fragment=1">
${scheduleTable(schedules, limit)}
</section>`);
}

export function scheduleTable(schedules: ScheduleView[], limit: number): Html {
  if (schedules.length === 0) return html`<p class="empty">no scheduled tasks (pg-tasks schedule ID --every 1h)</p>`;
  return html`<table class="schedules">
<thead><tr><th>task</th><th>state</th><th>group</th><th>command</th><th>every</th><th>copies</th><th>skipped</th><th>next runs</th></tr></thead>
<tbody>${schedules.map(({ row: s, nextRuns, problem }) => html`<tr>
  <td><a href="/tasks/${s.id}">${s.id}</a></td>
  <td>${stateBadge(s.state_id)}</td>
  <td>${s.group_id}</td>
  <td class="command">${clippedCommand(s.command)}</td>
  <td>${everyLabel(s)} <small>(${s.shed_tz})</small></td>
  <td>${s.shed_clone ? `yes (${s.shed_overlap})` : 'no'}</td>
  <td>${s.shed_skip_count}</td>
  <td>${s.next_start === null && s.shed_cron !== null ? 'being computed by a node' : nextRuns.map((d) => html`${when(d)}<br>`)}${problem ? html`<span class="error">${problem}</span>` : ''}</td>
</tr>`)}</tbody>
</table>
${schedules.length >= limit ? html`<p class="hint">the first ${limit} by next start</p>` : ''}`;
}
