// One task: its row, its runs, its live output, its dependencies and its schedule.
import { DEPS_LEFT_WORDS, DEPENDS_RULE_WORDS, type DependsRule, type Task } from '../../../client/types.js';
import { commandLine, href, html, when, type Html } from '../html.js';
import { everyLabel } from '../schedule.js';
import { graphSection, type GraphView } from './graph.js';
import { actionButton, page, type PageContext } from './layout.js';
import { runsQuery, runsSection, type RunsView } from './runs.js';
import { errorBlock, summaryFields } from './task-fields.js';
import { cancellable, cancelLink } from './tasks.js';

export { formatInterval } from './task-fields.js';

export interface TaskView {
  task: Task;
  /** A page of its runs (runs.ts). */
  runs: RunsView;
  /** The tasks around it (graph.ts); null: not read (a fragment). */
  graph: GraphView | null;
  prerequisites: Array<{ id: number; state_id: string }>;
  dependents: Array<{ id: number; state_id: string; depends_rule: DependsRule }>;
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
<div id="task-actions" data-live="task-run" data-src="${self}?fragment=actions">
${taskActions(ctx, task)}
</div>
<section id="task-summary" data-watch-task="${task.id}">
${taskSummary(view)}
</section>
<h2>Output ${view.outputAttempt > 0 ? html`<small id="output-run">run ${view.outputAttempt}</small> <a id="output-raw" class="raw" href="${self}/output.txt?attempt=${view.outputAttempt}" download>raw text</a>` : html`<small id="output-run"></small>`}</h2>
${view.outputAttempt === 0
    ? html`<p class="empty" id="no-output">not run yet</p>`
    : ''}
<pre id="output" class="output" data-task="${task.id}" data-attempt="${view.outputAttempt}" data-follow="${view.followLatest ? 'latest' : 'run'}"></pre>
<h2>Runs</h2>
<section id="task-runs" data-live="task-run" data-src="${href(self, { fragment: 'runs', attempt: view.runs.attempt, ...runsQuery(view.runs.from) })}">
${runsSection(view.runs)}
</section>
${dependencies(view)}
${view.graph && view.graph.nodes.length > 0 ? html`<h2>Dependency graph</h2>
<section id="task-graph" data-live="tasks" data-task="${task.id}" data-group="${task.group_id}" data-src="${self}/graph?fragment=around">
${graphSection(view.graph)}
</section>` : ''}
${schedule(view)}`);
}

/** The buttons the task's state allows now (in the live part, so they follow the state); none for a reader. */
export function taskActions(ctx: PageContext, t: Task): Html {
  if (ctx.role !== 'operator') return html``;
  const self = `/tasks/${t.id}`;
  const live = t.live_worker_id !== null;
  const queue = t.state_id === 'DR' || t.state_id.startsWith('C');
  if (!cancellable(t.state_id, live) && !queue) return html``;
  return html`<div class="task-actions">
  ${cancellable(t.state_id, live) ? cancelLink(t.id, 'Cancel (→ AC)…', self) : ''}
  ${queue ? actionButton(ctx, `${self}/queue`, t.state_id === 'DR' ? 'Queue (→ AW)' : 'Re-queue (→ AW)', self) : ''}
</div>`;
}

export function taskSummary(view: TaskView): Html {
  const t = view.task;
  return html`<dl class="fields" data-latest-attempt="${t.attempt}" data-state="${t.state_id}" data-live-run="${t.live_worker_id !== null ? 'true' : 'false'}">
${summaryFields(t).map(([name, value]) => html`<dt>${name}</dt><dd data-field="${name}">${value}</dd>`)}
</dl>
<div id="task-error">${errorBlock(t)}</div>`;
}

function dependencies(view: TaskView): Html {
  const t = view.task;
  if ((t.depends_on === null || t.depends_on.length === 0) && view.dependents.length === 0) return html``;
  const states = new Map(view.prerequisites.map((p) => [Number(p.id), p.state_id]));
  return html`<h2>Dependencies</h2>
${t.depends_on && t.depends_on.length > 0 ? html`<p>Depends on: ${t.depends_on.map((id, i) => html`${i > 0 ? ', ' : ''}<a href="/tasks/${id}">${id}</a> (${states.get(Number(id)) ?? 'deleted'})`)}${t.deps_left > 0 ? html` · ${t.deps_left} ${DEPS_LEFT_WORDS[t.depends_rule]}` : ''}</p>
<p>Runs when: <span class="depends-rule rule-${t.depends_rule}">${DEPENDS_RULE_WORDS[t.depends_rule]}</span></p>` : ''}
${view.dependents.length > 0 ? html`<p>Waiting for it: ${view.dependents.map((d, i) => html`${i > 0 ? ', ' : ''}<a href="/tasks/${d.id}">${d.id}</a> (${d.state_id}${d.depends_rule !== 'all_success' ? html`, <span class="depends-rule rule-${d.depends_rule}">${d.depends_rule.replace('_', ' ')}</span>` : ''})`)}</p>` : ''}`;
}

function schedule(view: TaskView): Html {
  const t = view.task;
  if (t.next_start === null && t.shed_cron === null) return html``;
  const every = `${everyLabel(t)} (${t.shed_tz})`;
  return html`<h2>Schedule</h2>
<p>${every}${t.shed_clone ? `, a copy each time (overlap: ${t.shed_overlap})` : ', this task re-queued each time'} · ${t.shed_skip_count} slots skipped</p>
<p>Next runs: ${view.nextRuns.length > 0 ? view.nextRuns.map((d, i) => html`${i > 0 ? ', ' : ''}${when(d)}`) : '-'}</p>
${view.scheduleProblem ? html`<p class="error">${view.scheduleProblem}</p>` : ''}`;
}
