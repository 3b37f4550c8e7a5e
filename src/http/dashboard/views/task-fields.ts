// A task's summary fields, each rendered on its own: the task page shows them, and the live
// feed sends the ones that changed (a task event), so the page patches a field, not the page.
import type { Task } from '../../../client/types.js';
import { html, plainText, when, type Html } from '../html.js';
import { stateBadge } from './layout.js';

/** The fields in the order the page shows them; names are the page's data-field keys. */
export function summaryFields(t: Task): Array<[string, Html]> {
  const live = t.live_worker_id !== null;
  const fields: Array<[string, unknown]> = [
    // "completed completed" says it twice: a completion's end reason is its state.
    ['state', html`${stateBadge(t.state_id)} ${t.end_reason === 'completed' ? '' : (t.end_reason ?? '')}`],
    ['attempt', `${t.attempt}${t.max_attempts !== null ? ` of ${t.max_attempts}` : ''}`],
    ['live run', live ? `attempt ${t.attempt} on worker ${t.live_worker_id} (term ${t.live_epoch})` : '-'],
    ['command', html`<code>${JSON.stringify(t.command)}</code>`],
    ['owner', t.owner ?? '-'],
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
    ['timeout', t.timeout === null ? '-' : formatInterval(t.timeout)],
    // What the run said on its control channel (fd 3, docs/control.md).
    ['progress', t.progress === null && t.progress_message === null ? '-' : html`<progress value="${t.progress ?? 0}" max="1"></progress> ${t.progress_message ?? ''}`],
    ['result', t.result === null ? '-' : html`<pre class="result">${JSON.stringify(t.result, null, 2)}</pre>`],
  ];
  return fields.map(([name, value]) => [name, html`${value}`]);
}

/** The error under the fields (the output's tail with its escape codes taken out), or nothing. */
export function errorBlock(t: Task): Html {
  return t.error ? html`<h3>Error</h3><pre class="error-text">${plainText(t.error)}</pre>` : html``;
}

/** An interval as node-postgres returns it ({ hours: 1, minutes: 30 }), as 1h30m. */
export function formatInterval(value: unknown): string {
  if (value === null || typeof value !== 'object') return String(value);
  const units: Array<[string, string]> = [['years', 'y'], ['months', 'mo'], ['days', 'd'], ['hours', 'h'], ['minutes', 'm'], ['seconds', 's'], ['milliseconds', 'ms']];
  const parts = units.map(([key, unit]) => [(value as Record<string, number | undefined>)[key], unit] as const).filter(([n]) => n);
  return parts.length === 0 ? '0s' : parts.map(([n, unit]) => `${n}${unit}`).join('');
}
