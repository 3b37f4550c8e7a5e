import type { AllowRule, Limit, Task, TaskRun, Worker } from '../client/types.js';

function when(value: Date | null): string {
  return value ? value.toISOString() : '-';
}

/** `pg-tasks show`: every field a person looks for, then the output tail. */
export function formatTask(task: Task, lastRun?: TaskRun, prerequisites: Array<Pick<Task, 'id' | 'state_id'>> = []): string {
  const lines = [
    `id:          ${task.id}`,
    `state:       ${task.state_id}${task.end_reason ? ` (${task.end_reason})` : ''}`,
    `attempt:     ${task.attempt}${task.max_attempts !== null && task.max_attempts > 1 ? ` of ${task.max_attempts}` : ''}${task.state_id === 'AW' && task.run_after ? `; next run not before ${when(task.run_after)}` : ''}`,
    `command:     ${JSON.stringify(task.command)}`,
    `group:       ${task.group_id}`,
    `priority:    ${task.priority}`,
    `worker:      ${task.worker_id ?? '-'}`,
    // A process of the last run still lives although the row says otherwise (set by hand).
    ...(task.live_worker_id !== null && task.state_id !== 'AE' && task.state_id !== 'AC'
      ? [`live run:    attempt ${task.attempt} still runs on worker ${task.live_worker_id} (the next starts when it ends; cancel kills it)`]
      : []),
    `cwd:         ${task.cwd ?? '-'}`,
    `params:      ${task.params === null ? '-' : JSON.stringify(task.params)}`,
    `created:     ${when(task.created)}`,
    `started:     ${when(task.started)}`,
    `finished:    ${when(task.finished)}`,
    `exit:        ${task.exit_code ?? (task.exit_signal ? task.exit_signal : '-')}`,
    `pid:         ${task.pid ?? '-'}`,
    ...(lastRun?.cpu_user_ms != null ? [`used:        ${formatUsage(lastRun)}`] : []),
    `node:        ${task.node_name ?? '-'}`,
  ];
  if (task.next_start !== null || task.shed_cron !== null) {
    lines.push(`schedule:    ${describeSchedule(task)}; next run ${when(task.next_start)}; ${task.shed_skip_count} slots skipped`);
  }
  if (task.shed_parent_id !== null) lines.push(`cloned from: ${task.shed_parent_id}`);
  if (task.concurrency_key !== null) lines.push(`key:         ${task.concurrency_key} (see "pg-tasks limit --key")`);
  if (task.depends_on !== null && task.depends_on.length > 0) {
    const states = new Map(prerequisites.map((p) => [Number(p.id), p.state_id]));
    const list = task.depends_on.map((d) => `${d} (${states.get(Number(d)) ?? 'deleted'})`).join(', ');
    const waiting = task.state_id === 'AW' || task.state_id === 'DR';
    lines.push(`${waiting ? 'waits for:  ' : 'ran after:  '} ${list}${waiting && task.deps_left > 0 ? `; ${task.deps_left} not yet CS` : ''}`);
  }
  if (task.error) lines.push(`error:       ${task.error.split('\n')[0]}`);
  if (task.output) lines.push('output (tail):', task.output.replace(/\n$/, ''));
  return lines.join('\n');
}

const CONTROL_ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** One task, one line: control characters inside an argument (a newline...) are shown escaped. */
function escapeControls(text: string): string {
  return text.replace(/\p{Cc}/gu, (c) => CONTROL_ESCAPES[c] ?? `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`);
}

/** Columns padded to their widest cell; the last column is left as it is. */
function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** "cpu 1.20s user + 0.05s system, peak 12.3 MB" */
function formatUsage(run: TaskRun): string {
  const seconds = (ms: number | null): string => `${((ms ?? 0) / 1000).toFixed(2)}s`;
  return `cpu ${seconds(run.cpu_user_ms)} user + ${seconds(run.cpu_system_ms)} system, peak ${((run.max_rss_kb ?? 0) / 1024).toFixed(1)} MB`;
}

/** `pg-tasks runs`: one run a line, oldest first. */
export function formatRunTable(runs: TaskRun[]): string {
  return table(
    ['ATTEMPT', 'STARTED', 'FINISHED', 'END', 'EXIT', 'PID', 'NODE', 'CPU', 'PEAK', 'ERROR'],
    runs.map((r) => [
      String(r.attempt),
      when(r.started),
      r.finished ? when(r.finished) : 'running',
      r.end_reason ?? '-',
      r.exit_code !== null ? String(r.exit_code) : (r.exit_signal ?? '-'),
      r.pid === null ? '-' : String(r.pid),
      r.node_name ?? '-',
      r.cpu_user_ms === null ? '-' : `${((Number(r.cpu_user_ms) + Number(r.cpu_system_ms ?? 0)) / 1000).toFixed(2)}s`,
      r.max_rss_kb === null ? '-' : `${(Number(r.max_rss_kb) / 1024).toFixed(1)}MB`,
      escapeControls((r.error ?? '').split('\n')[0]!).slice(0, 60),
    ]),
  );
}

/** `pg-tasks ls`: one task a line. */
export function formatTaskTable(tasks: Task[]): string {
  return table(
    ['ID', 'STATE', 'GROUP', 'PRIO', 'WORKER', 'EXIT', 'COMMAND'],
    tasks.map((t) => [
      String(t.id),
      t.state_id,
      String(t.group_id),
      String(t.priority),
      t.worker_id === null ? '-' : String(t.worker_id),
      t.exit_code !== null ? String(t.exit_code) : (t.exit_signal ?? '-'),
      escapeControls(t.command.join(' ')).slice(0, 60),
    ]),
  );
}

const PERIOD_WORDS: Record<string, string> = { SEC: 's', MIN: 'm', HOU: 'h', DAY: 'd', WEE: 'w', MON: 'mo' };

// "every 2h", "cron 0 9 * * 1-5 (Europe/Berlin)", "once"; ", cloned" when shed_clone.
export function describeSchedule(task: Task): string {
  const zone = task.shed_tz !== 'UTC' ? ` (${task.shed_tz})` : '';
  let what: string;
  if (task.shed_cron !== null) what = `cron ${task.shed_cron}${zone}`;
  else if (task.shed_period_id !== null) what = `every ${task.shed_period_count ?? 1}${PERIOD_WORDS[task.shed_period_id] ?? task.shed_period_id}${zone}`;
  else if (task.next_start !== null) what = 'once';
  else return 'not scheduled';
  return task.shed_clone ? `${what}, cloned${task.shed_overlap && task.shed_overlap !== 'allow' ? ` (overlap: ${task.shed_overlap})` : ''}` : what;
}

/** `pg-tasks ls --scheduled`: each schedule and its next run. */
export function formatScheduleTable(tasks: Task[]): string {
  return table(
    ['ID', 'STATE', 'GROUP', 'SCHEDULE', 'NEXT RUN', 'SKIPPED', 'COMMAND'],
    tasks.map((t) => [
      String(t.id),
      t.state_id,
      String(t.group_id),
      describeSchedule(t),
      when(t.next_start),
      String(t.shed_skip_count),
      escapeControls(t.command.join(' ')).slice(0, 60),
    ]),
  );
}

/** `pg-tasks limit`: one group or key a line. */
export function formatLimitTable(limits: Limit[]): string {
  return table(
    ['KIND', 'NAME', 'MAX', 'RUNNING', 'WAITING'],
    limits.map((l) => [l.kind, l.name, String(l.max_running), String(l.running), String(l.waiting)]),
  );
}

/** `pg-tasks allowlist`: one rule a line. */
export function formatAllowTable(rules: AllowRule[]): string {
  return table(
    ['ID', 'GROUP', 'COMMANDS', 'PROGRAM', 'ARGS', 'NOTE'],
    rules.map((r) => [String(r.id), String(r.group_id), r.commands, escapeControls(r.program), escapeControls(r.args_pattern ?? '(any)'), escapeControls(r.note ?? '')]),
  );
}

/** `pg-tasks workers`: one worker a line. */
export function formatWorkerTable(workers: Worker[]): string {
  return table(
    ['ID', 'GROUP', 'STATUS', 'STOP', 'TASKS', 'LEASE UNTIL', 'HOST', 'STANDBY', 'NODE'],
    workers.map((w) => [
      String(w.id),
      String(w.group_id),
      // A take-over's previous term: its tasks are recovered at its lease's end + the delay.
      w.recovers_at ? `${w.status} (old term's tasks recovered at ${when(w.recovers_at)})` : w.status,
      String(w.stop),
      `${w.task_count}/${w.max_task_count ?? '-'}`,
      when(w.locked_until),
      w.host ?? '-',
      w.standby ?? '-',
      w.node_name ?? '-',
    ]),
  );
}
