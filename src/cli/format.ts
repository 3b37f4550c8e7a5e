import { DEPS_LEFT_WORDS, DEPENDS_RULE_WORDS, type AllowRule, type Limit, type Task, type TaskRun, type Worker } from '../client/types.js';

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
    `owner:       ${escapeControls(task.owner ?? '-')}`,
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
    // A task cancelled for a prerequisite that failed (end_reason 'dependency') never ran.
    const ran = task.started !== null && task.end_reason !== 'dependency';
    const label = waiting ? 'waits for:  ' : ran ? 'ran after:  ' : 'depended on:';
    lines.push(`${label} ${list}${waiting && task.deps_left > 0 ? `; ${task.deps_left} ${DEPS_LEFT_WORDS[task.depends_rule]}` : ''}`);
    if (task.depends_rule !== 'all_success') lines.push(`runs when:   ${DEPENDS_RULE_WORDS[task.depends_rule]}`);
  }
  if (task.progress !== null || task.progress_message !== null) lines.push(`progress:    ${formatProgress(task)}${task.progress_message !== null ? ` ${escapeControls(task.progress_message)}` : ''}`);
  if (task.result !== null) lines.push(`result:      ${JSON.stringify(task.result)}`);
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
  const peak = run.memory_peak != null ? `peak ${(Number(run.memory_peak) / 1048576).toFixed(1)} MB (all its processes)` : `peak ${((run.max_rss_kb ?? 0) / 1024).toFixed(1)} MB`;
  const orphans = run.orphans_killed ? `; killed ${run.orphans_killed} process(es) it had left running` : '';
  return `cpu ${seconds(run.cpu_user_ms)} user + ${seconds(run.cpu_system_ms)} system, ${peak}${orphans}`;
}

/** "42%", or "-" when the task reported none (fd 3, docs/control.md). */
function formatProgress(t: { progress: number | null }): string {
  return t.progress === null ? '-' : `${Math.floor(t.progress * 100)}%`;
}

/** A result in a table cell: its JSON, cut at 60 characters. */
function formatResult(result: unknown): string {
  if (result === null || result === undefined) return '-';
  const json = escapeControls(JSON.stringify(result));
  return json.length > 60 ? `${json.slice(0, 59)}…` : json;
}

/** `pg-tasks runs`: one run a line, oldest first. */
export function formatRunTable(runs: TaskRun[]): string {
  return table(
    ['ATTEMPT', 'STARTED', 'FINISHED', 'END', 'EXIT', 'PID', 'NODE', 'CPU', 'PEAK', 'ORPHANS', 'RESULT', 'ERROR'],
    runs.map((r) => [
      String(r.attempt),
      when(r.started),
      r.finished ? when(r.finished) : 'running',
      r.end_reason ?? '-',
      r.exit_code !== null ? String(r.exit_code) : (r.exit_signal ?? '-'),
      r.pid === null ? '-' : String(r.pid),
      r.node_name ?? '-',
      r.cpu_user_ms === null ? '-' : `${((Number(r.cpu_user_ms) + Number(r.cpu_system_ms ?? 0)) / 1000).toFixed(2)}s`,
      r.memory_peak != null ? `${(Number(r.memory_peak) / 1048576).toFixed(1)}MB` : r.max_rss_kb === null ? '-' : `${(Number(r.max_rss_kb) / 1024).toFixed(1)}MB`,
      r.orphans_killed == null ? '-' : String(r.orphans_killed),
      formatResult(r.result),
      escapeControls((r.error ?? '').split('\n')[0]!).slice(0, 60),
    ]),
  );
}

/** `pg-tasks ls`: one task a line. */
export function formatTaskTable(tasks: Task[]): string {
  return table(
    ['ID', 'STATE', 'PROGRESS', 'OWNER', 'GROUP', 'PRIO', 'WORKER', 'EXIT', 'COMMAND'],
    tasks.map((t) => [
      String(t.id),
      t.state_id,
      formatProgress(t),
      escapeControls(t.owner ?? '-'),
      String(t.group_id),
      String(t.priority),
      t.worker_id === null ? '-' : String(t.worker_id),
      t.exit_code !== null ? String(t.exit_code) : (t.exit_signal ?? '-'),
      escapeControls(t.command.join(' ')).slice(0, 60),
    ]),
  );
}

const PERIOD_WORDS: Record<string, string> = { SEC: 's', MIN: 'm', HOU: 'h', DAY: 'd', WEE: 'w', MON: 'mo' };

// "every 2h", "cron 0 9 * * 1-5 (Europe/Berlin)", "once"; ", missed: skip" when not once; ", cloned" when shed_clone.
export function describeSchedule(task: Task): string {
  const zone = task.shed_tz !== 'UTC' ? ` (${task.shed_tz})` : '';
  let what: string;
  if (task.shed_cron !== null) what = `cron ${task.shed_cron}${zone}`;
  else if (task.shed_period_id !== null) what = `every ${task.shed_period_count ?? 1}${PERIOD_WORDS[task.shed_period_id] ?? task.shed_period_id}${zone}`;
  else if (task.next_start !== null) what = 'once';
  else return 'not scheduled';
  if (what !== 'once' && task.shed_missed && task.shed_missed !== 'once') {
    what += `, missed: ${task.shed_missed}${task.shed_missed === 'all' ? ` (up to ${task.shed_catchup_max})` : ''}`;
  }
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
  // The STARTS column (a key's rate, n/period) only when some key has one.
  const rated = limits.some((l) => l.max_starts !== null);
  return table(
    ['KIND', 'NAME', 'MAX', ...(rated ? ['STARTS'] : []), 'RUNNING', 'WAITING'],
    limits.map((l) => [l.kind, l.name, String(l.max_running), ...(rated ? [l.max_starts === null ? '-' : `${l.max_starts}/${l.period_seconds}s`] : []),
      String(l.running), String(l.waiting)]),
  );
}

/** `pg-tasks allowlist`: one rule a line. */
export function formatAllowTable(rules: AllowRule[]): string {
  return table(
    ['ID', 'GROUP', 'COMMANDS', 'PROGRAM', 'ARGS', 'NOTE'],
    rules.map((r) => [String(r.id), String(r.group_id), r.commands, escapeControls(r.program), escapeControls(describeArgs(r)), escapeControls(r.note ?? '')]),
  );
}

/** A rule's arguments in the table: its pattern; per position, `1:P1 2:P2 …:REST` (none past them: `…:none`); `(..)` where '..' is allowed. */
function describeArgs(r: AllowRule): string {
  const dotdot = r.allow_dotdot ? ' (..)' : '';
  if (r.args_patterns === null) return r.args_pattern === null ? '(any)' : r.args_pattern + dotdot;
  return [...r.args_patterns.map((p, i) => `${i + 1}:${p}`), `…:${r.args_pattern ?? 'none'}`].join(' ') + dotdot;
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
