/**
 * The environment a task gets: clean, built from named parts, never the node's whole
 * environment (which holds its DATABASE_URL, PGPASSWORD and whatever its shell exported).
 *
 * Precedence, lowest first; a later part overrides an earlier one by name:
 *   1. the base: PATH (fixed), HOME (the run_as user's, else the node's), LANG, LANGUAGE,
 *      LC_*, TZ (from the node's environment, when set), USER and LOGNAME (with run_as)
 *   2. the node's variables named by --pass-env
 *   3. the node's --env NAME=VALUE
 *   4. the node's variables named by the group's pass_env
 *   5. the group's env
 *   6. the task's own PG_TASKS_TASK_ID, PG_TASKS_PARAMS, PG_TASKS_ATTEMPT, a schedule's
 *      copy's PG_TASKS_SLOT, PG_TASKS_CONTROL_FD (3, docs/control.md), and for a task with
 *      depends_on PG_TASKS_DEPENDENCY_RESULTS or PG_TASKS_DEPENDENCY_RESULTS_FILE: never overridden;
 *      with tracing on, TRACEPARENT (the run's span)
 * The node's environment is read once, at start: a variable exported into it later is not seen.
 */

/** Not the node's PATH and never the writer's: a relative program resolves only here. */
export const TASK_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const TASK_OWN = ['PG_TASKS_TASK_ID', 'PG_TASKS_PARAMS', 'PG_TASKS_ATTEMPT', 'PG_TASKS_SLOT', 'PG_TASKS_CONTROL_FD', 'PG_TASKS_DEPENDENCY_RESULTS', 'PG_TASKS_DEPENDENCY_RESULTS_FILE'];

/** What of the task its environment names. */
export interface EnvTask {
  id: number;
  attempt: number;
  params: unknown;
  slot?: Date | null;
  /** Its prerequisites' results (JSON), or the file that holds them when they are too large. */
  dependencyResults?: string;
  dependencyResultsFile?: string;
  /** The run's span as W3C TRACEPARENT (with tracing on). */
  traceparent?: string | null;
}

export interface EnvOptions {
  /** Names of the node's variables passed to every task (--pass-env). */
  passEnv: string[];
  /** Variables set for every task (--env NAME=VALUE). */
  env: Record<string, string>;
}

/** The group's part, as read in the claim (a change needs no restart). */
export interface GroupEnv {
  passEnv: string[] | null;
  env: Record<string, unknown> | null;
}

/** A variable name the kernel and a shell accept; no '=' and no NUL. */
export function validEnvName(name: string): boolean {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name);
}

/** "NAME=VALUE" → [NAME, VALUE], or a one-line error for --env. */
export function parseEnvAssignment(value: string): [string, string] {
  const eq = value.indexOf('=');
  const name = eq < 0 ? value : value.slice(0, eq);
  if (eq < 0 || !validEnvName(name)) throw new Error(`--env takes NAME=VALUE with NAME of letters, digits and _, got "${value}"`);
  if (value.includes('\0')) throw new Error('--env: a value cannot contain a NUL byte');
  if (TASK_OWN.includes(name)) throw new Error(`--env cannot set ${name}: the node sets it for each task`);
  return [name, value.slice(eq + 1)];
}

export class TaskEnv {
  private readonly nodeEnv: Record<string, string> = {};
  /** Parts 1 (without the user's) to 3, fixed for the node's life. */
  private readonly fixed: Record<string, string> = {};

  constructor(options: EnvOptions, source: NodeJS.ProcessEnv = process.env) {
    for (const [k, v] of Object.entries(source)) {
      if (v !== undefined && !k.includes('\0') && !k.includes('=') && !v.includes('\0')) this.nodeEnv[k] = v;
    }
    this.fixed.PATH = TASK_PATH;
    if (this.nodeEnv.HOME !== undefined) this.fixed.HOME = this.nodeEnv.HOME;
    for (const [k, v] of Object.entries(this.nodeEnv)) {
      if (k === 'LANG' || k === 'LANGUAGE' || k === 'TZ' || k.startsWith('LC_')) this.fixed[k] = v;
    }
    for (const name of options.passEnv) {
      const v = this.nodeEnv[name];
      if (v !== undefined) this.fixed[name] = v;
    }
    Object.assign(this.fixed, options.env);
  }

  /** What the node passes to every task (for the start log): names only, never values. */
  names(): string[] {
    return Object.keys(this.fixed);
  }

  /** The task's whole environment, as NAME=VALUE strings. */
  build(task: EnvTask, group: GroupEnv | null, user: { name: string; home: string } | null): string[] {
    const env: Record<string, string> = { ...this.fixed };
    if (user) {
      env.HOME = user.home;
      env.USER = user.name;
      env.LOGNAME = user.name;
    }
    for (const name of group?.passEnv ?? []) {
      const v = this.nodeEnv[name];
      if (v !== undefined && validEnvName(name)) env[name] = v;
    }
    for (const [k, v] of Object.entries(group?.env ?? {})) {
      // The column holds an object; a value that is not a string is passed as its JSON.
      const value = typeof v === 'string' ? v : JSON.stringify(v);
      if (validEnvName(k)) env[k] = value;
    }
    env.PG_TASKS_TASK_ID = String(task.id);
    env.PG_TASKS_PARAMS = task.params === null || task.params === undefined ? '' : JSON.stringify(task.params);
    env.PG_TASKS_ATTEMPT = String(task.attempt);
    // ISO 8601 in UTC, to the millisecond: the slot of a copy (one per slot with shed_missed all).
    if (task.slot) env.PG_TASKS_SLOT = task.slot.toISOString();
    else delete env.PG_TASKS_SLOT;
    env.PG_TASKS_CONTROL_FD = '3';
    delete env.PG_TASKS_DEPENDENCY_RESULTS;
    delete env.PG_TASKS_DEPENDENCY_RESULTS_FILE;
    if (task.dependencyResults !== undefined) env.PG_TASKS_DEPENDENCY_RESULTS = task.dependencyResults;
    if (task.dependencyResultsFile !== undefined) env.PG_TASKS_DEPENDENCY_RESULTS_FILE = task.dependencyResultsFile;
    if (task.traceparent) env.TRACEPARENT = task.traceparent;
    return Object.entries(env).map(([k, v]) => `${k}=${v}`);
  }
}
