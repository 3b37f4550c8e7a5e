import type { Task } from '../client/types.js';

function when(value: Date | null): string {
  return value ? value.toISOString() : '-';
}

/** `pg-tasks show`: every field a person looks for, then the output tail. */
export function formatTask(task: Task): string {
  const lines = [
    `id:          ${task.id}`,
    `state:       ${task.state_id}`,
    `command:     ${JSON.stringify(task.command)}`,
    `group:       ${task.group_id}`,
    `priority:    ${task.priority}`,
    `worker:      ${task.worker_id ?? '-'}`,
    `cwd:         ${task.cwd ?? '-'}`,
    `params:      ${task.params === null ? '-' : JSON.stringify(task.params)}`,
    `created:     ${when(task.created)}`,
    `started:     ${when(task.started)}`,
    `finished:    ${when(task.finished)}`,
    `exit:        ${task.exit_code ?? (task.exit_signal ? task.exit_signal : '-')}`,
    `pid:         ${task.pid ?? '-'}`,
    `node:        ${task.node_name ?? '-'}`,
  ];
  if (task.error) lines.push(`error:       ${task.error.split('\n')[0]}`);
  if (task.output) lines.push('output (tail):', task.output.replace(/\n$/, ''));
  return lines.join('\n');
}

const CONTROL_ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** One task, one line: control characters inside an argument (a newline...) are shown escaped. */
function escapeControls(text: string): string {
  return text.replace(/\p{Cc}/gu, (c) => CONTROL_ESCAPES[c] ?? `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`);
}

/** `pg-tasks ls`: one task a line. */
export function formatTaskTable(tasks: Task[]): string {
  const header = ['ID', 'STATE', 'GROUP', 'PRIO', 'WORKER', 'EXIT', 'COMMAND'];
  const rows = tasks.map((t) => [
    String(t.id),
    t.state_id,
    String(t.group_id),
    String(t.priority),
    t.worker_id === null ? '-' : String(t.worker_id),
    t.exit_code !== null ? String(t.exit_code) : (t.exit_signal ?? '-'),
    escapeControls(t.command.join(' ')).slice(0, 60),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}
