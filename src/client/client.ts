import pg from 'pg';
import { clientConfig, poolConfig, resolveSchema, type ConnectionOptions } from '../db/connection.js';
import { loadStatements, type Statements } from '../sql/queries/index.js';
import type { InsertTaskParams } from '../sql/queries/task.js';
import type { AddTaskInput, AllowRule, Limit, ListOptions, ScheduleInput, Task, TaskRun, Worker } from './types.js';
import { NODE_DEFAULTS } from '../node/options.js';
import { assertTimeZone, nextCronSlot } from '../lib/schedule-math.js';
import { TaskWaiter } from './waiter.js';
import { readRunOutput, type FollowOptions, type OutputChunk, type OutputRun } from './output.js';

export { WaitTimeoutError } from './waiter.js';
export { RunNotFoundError, type OutputChunk, type OutputRun, type FollowOptions } from './output.js';

export class TaskNotFoundError extends Error {
  constructor(id: number) {
    super(`task ${id} not found`);
    this.name = 'TaskNotFoundError';
  }
}

/** An unended task holds the unique key (docs/unique.md): holderId names it (null: it ended meanwhile). */
export class UniqueKeyHeldError extends Error {
  constructor(
    readonly uniqueKey: string,
    readonly holderId: number | null,
    reason = '',
    options?: { cause?: unknown },
  ) {
    super(`unique key ${JSON.stringify(uniqueKey)} is held by ${holderId === null ? 'another task' : `task ${holderId}`}${reason}`, options);
    this.name = 'UniqueKeyHeldError';
  }
}

/** The violation of task_unique_key (migration 24): a duplicate key of an unended task. */
function isUniqueKeyViolation(error: unknown): boolean {
  const e = error as { code?: string; constraint?: string };
  return e.code === '23505' && e.constraint === 'task_unique_key';
}

export class StateChangeRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StateChangeRefusedError';
  }
}

/**
 * The TypeScript API: a thin layer over the same rows that plain SQL writes. Every state
 * change goes through the table's triggers, like any other writer's.
 */
export class TaskClient {
  readonly schema: string;
  private readonly queries: Statements;
  private readonly pool: pg.Pool;
  private readonly waiter: TaskWaiter;
  private readonly listenConfig: pg.ClientConfig;

  constructor(options: ConnectionOptions & { pool?: pg.Pool } = {}) {
    this.schema = resolveSchema(options.schema);
    this.queries = loadStatements(this.schema);
    this.pool = options.pool ?? new pg.Pool(poolConfig(options, { max: 2 }));
    // An idle connection that drops is not an error of any call; the next call reconnects.
    this.pool.on('error', () => undefined);
    this.listenConfig = clientConfig(options);
    this.waiter = new TaskWaiter(this.pool, this.queries, this.listenConfig, this.schema);
  }

  /**
   * Inserts a task. With a uniqueKey that an unended task holds, onDuplicate decides: 'error'
   * (default) throws UniqueKeyHeldError, 'skip' returns the holder as it is, 'replace' gives
   * a waiting holder this task's params, priority and runAfter and returns it (an executing
   * one is refused: UniqueKeyHeldError). A holder that another owner's row-level security
   * hides is refused in each mode, named by its id only.
   */
  async add(input: AddTaskInput): Promise<Task> {
    if (input.command.length === 0 || !input.command[0]) throw new Error('a task needs a command');
    const params: InsertTaskParams = {
      command: input.command,
      groupId: input.groupId ?? 0,
      priority: input.priority ?? 0,
      stateId: input.draft ? 'DR' : 'AW',
      cwd: input.cwd ?? null,
      params: input.params === undefined ? null : JSON.stringify(input.params),
      workerId: input.workerId ?? null,
      recoverPolicy: input.recoverPolicy ?? null,
      timeoutMs: input.timeoutMs ?? null,
      maxAttempts: input.maxAttempts ?? null,
      backoffBaseMs: input.backoffBaseMs ?? null,
      backoffCapMs: input.backoffCapMs ?? null,
      retryOn: input.retryOn ?? null,
      dependsOn: input.dependsOn ?? null,
      concurrencyKey: input.concurrencyKey ?? null,
      uniqueKey: input.uniqueKey ?? null,
      runAfter: input.runAfter ?? null,
      dependsRule: input.dependsRule ?? null,
    };
    const onDuplicate = input.onDuplicate ?? 'error';
    if (!['error', 'skip', 'replace'].includes(onDuplicate)) {
      throw new Error(`onDuplicate must be error, skip or replace, not ${JSON.stringify(onDuplicate)}`);
    }
    const key = params.uniqueKey;
    if (key === null || onDuplicate === 'error') {
      try {
        return (await this.queries.insertTask(this.pool, params)).rows[0]!;
      } catch (error) {
        if (key === null || !isUniqueKeyViolation(error)) throw error;
        throw new UniqueKeyHeldError(key, await this.uniqueKeyHolder(key), '', { cause: error });
      }
    }
    // The holder may end between the conflict and the read of it: then the key is free, and
    // the insert is tried again (a few times; each try has a holder that ended meanwhile).
    for (let attempt = 0; ; attempt++) {
      const insert = onDuplicate === 'skip' ? this.queries.insertTaskOrSkip : this.queries.insertTaskOrReplace;
      let rows: Task[];
      try {
        ({ rows } = await insert(this.pool, params));
      } catch (error) {
        // DO UPDATE on a row the writer's row-level security hides (another owner's task)
        // fails with 42501; the refusal names the holder's id, nothing else of it.
        if ((error as { code?: string }).code !== '42501') throw error;
        const holderId = await this.uniqueKeyHolder(key);
        if (holderId === null || (await this.queries.getTask(this.pool, { taskId: holderId })).rows[0]) throw error;
        throw new UniqueKeyHeldError(key, holderId, '', { cause: error });
      }
      if (rows[0]) return rows[0];
      const holderId = await this.uniqueKeyHolder(key);
      if (holderId === null && attempt < 3) continue;
      const holder = holderId === null ? undefined : (await this.queries.getTask(this.pool, { taskId: holderId })).rows[0];
      if (holder && onDuplicate === 'skip') return holder;
      // replace: the holder executes (AE, AC), so only a new task could take the params; but
      // the key allows one unended task, and that one runs. skip or replace: a holder this
      // user may not see is named by its id only.
      const reason = holder ? `, which is executing (${holder.state_id}): replace changes only a waiting task` : '';
      throw new UniqueKeyHeldError(key, holderId, reason);
    }
  }

  private async uniqueKeyHolder(key: string): Promise<number | null> {
    const { rows } = await this.queries.uniqueKeyHolder(this.pool, { uniqueKey: key });
    return rows[0]?.id ?? null;
  }

  /** Queues a draft or ended task for any worker of its group (the seed's re-queue). */
  async queue(id: number): Promise<Task> {
    let rows: Task[];
    try {
      ({ rows } = await this.queries.queueTask(this.pool, { taskId: id }));
    } catch (error) {
      // Its unique key is held by another unended task: named, as in add.
      if (!isUniqueKeyViolation(error)) throw error;
      const key = (await this.get(id)).unique_key!;
      throw new UniqueKeyHeldError(key, await this.uniqueKeyHolder(key), '', { cause: error });
    }
    if (rows[0]) return rows[0];
    const task = await this.get(id);
    if (task.state_id === 'AW') return task;
    throw new StateChangeRefusedError(
      `task ${id} is ${task.state_id}: only a draft (DR) or ended (C*) task can be queued`,
    );
  }

  /**
   * Cancels a waiting task (it becomes CC at once) or an executing one (its process is killed),
   * or one whose row says it ended while a process of it still runs (that process is killed).
   */
  async cancel(id: number): Promise<Task> {
    const { rows } = await this.queries.cancelTask(this.pool, { taskId: id });
    if (rows[0]) return rows[0];
    const task = await this.get(id);
    throw new StateChangeRefusedError(`can't cancel an inactive task (task ${id} is ${task.state_id})`);
  }

  async get(id: number): Promise<Task> {
    const { rows } = await this.queries.getTask(this.pool, { taskId: id });
    if (!rows[0]) throw new TaskNotFoundError(id);
    return rows[0];
  }

  /**
   * Resolves with the task once it has ended (CS, CF or CC; a task waiting for a retry has
   * not), at once if it already has. Woken by LISTEN, not by polling: the first wait opens
   * one listening connection, kept until close(). `timeout` (ms) rejects with a
   * WaitTimeoutError and leaves the task as it is. Its `result` is what its run reported on
   * fd 3 as {"result": …} (docs/control.md); null when it reported none.
   */
  wait(id: number, options: { timeout?: number } = {}): Promise<Task> {
    return this.waiter.wait(id, options.timeout, (missing) => new TaskNotFoundError(missing));
  }

  /**
   * The task's progress as its live run reports it on fd 3 (docs/control.md): 0..1 and a
   * status line, each null until reported; after the run's end, its last values.
   */
  async progress(id: number): Promise<{ progress: number | null; message: string | null }> {
    const task = await this.get(id);
    return { progress: task.progress, message: task.progress_message };
  }

  /** The tasks this one depends on (id and state), in the order of depends_on; deleted ones are left out. */
  async prerequisites(id: number): Promise<Array<Pick<Task, 'id' | 'state_id'>>> {
    const { rows } = await this.queries.prerequisites(this.pool, { taskId: id });
    return rows;
  }

  /** The task's runs, oldest first: one row per execution, kept after the task is queued again. */
  async runs(id: number): Promise<TaskRun[]> {
    const { rows } = await this.queries.taskRuns(this.pool, { taskId: id });
    if (rows.length === 0) await this.get(id); // a task that never ran, or none at all
    return rows;
  }

  async list(options: ListOptions = {}): Promise<Task[]> {
    const { rows } = await this.queries.listTasks(this.pool, { stateId: options.state ?? null, groupId: options.groupId ?? null, limit: options.limit ?? 50 });
    return rows;
  }

  /**
   * Schedules a task: every period (the seed's shed_period_*), on a cron expression, or once
   * at a time. Invalid cron expressions and zones are refused here and by the database.
   */
  async schedule(id: number, input: ScheduleInput): Promise<Task> {
    const tz = input.tz ?? 'UTC';
    assertTimeZone(tz);
    if (input.every && input.cron) throw new Error('a schedule is either --every or --cron, not both');
    if (input.catchupMax !== undefined && !(Number.isInteger(input.catchupMax) && input.catchupMax >= 1 && input.catchupMax <= 10_000)) {
      throw new Error(`catchupMax must be an integer from 1 to 10000, got ${input.catchupMax}`);
    }
    let at = input.at ?? null;
    if (input.cron) at ??= nextCronSlot(input.cron, tz, new Date());
    else if (!input.every && !at) throw new Error('a schedule needs --every, --cron or --at');
    // The key template first: a node may fire the schedule as soon as it is set.
    if (input.uniqueKey !== undefined) {
      const { rows } = await this.queries.setCloneUniqueKey(this.pool, { taskId: id, uniqueKey: input.uniqueKey });
      if (!rows[0]) throw new TaskNotFoundError(id);
    }
    const { rows } = await this.queries.setSchedule(this.pool, {
      taskId: id,
      nextStart: at ?? new Date(),
      periodId: input.every?.periodId ?? null,
      periodCount: input.every?.count ?? null,
      cron: input.cron ?? null,
      tz,
      clone: input.clone ?? false,
      timeoutMs: input.runs?.timeoutMs ?? null,
      maxAttempts: input.runs?.maxAttempts ?? null,
      backoffBaseMs: input.runs?.backoffBaseMs ?? null,
      backoffCapMs: input.runs?.backoffCapMs ?? null,
      retryOn: input.runs?.retryOn ?? null,
      overlap: input.overlap ?? null,
      missed: input.missed ?? null,
      catchupMax: input.catchupMax ?? null,
    });
    if (!rows[0]) throw new TaskNotFoundError(id);
    return rows[0];
  }

  async unschedule(id: number): Promise<Task> {
    const { rows } = await this.queries.clearSchedule(this.pool, { taskId: id });
    if (!rows[0]) throw new TaskNotFoundError(id);
    return rows[0];
  }

  async listScheduled(options: { groupId?: number; limit?: number } = {}): Promise<Task[]> {
    const { rows } = await this.queries.listScheduled(this.pool, { groupId: options.groupId ?? null, limit: options.limit ?? 50 });
    return rows;
  }

  /**
   * Deletes ended tasks (with their runs) that ended more than `olderThanMs` ago, and older
   * runs of the tasks that stay, in batches of `batch` rows, each its own short statement.
   * Schedules, tasks whose process still lives and prerequisites of waiting tasks are kept.
   */
  async prune(options: { olderThanMs: number; groupId?: number | null; batch?: number }): Promise<{ tasks: number; runs: number }> {
    const params = { olderThanMs: options.olderThanMs, groupId: options.groupId ?? null, limit: options.batch ?? 5_000 };
    const counted = { tasks: 0, runs: 0 };
    for (const [prune, key] of [[this.queries.pruneTasks, 'tasks'], [this.queries.pruneRuns, 'runs']] as const) {
      for (;;) {
        const { rowCount } = await prune(this.pool, params);
        counted[key] += rowCount;
        if (rowCount < params.limit) break;
      }
    }
    return counted;
  }

  /**
   * Sets how many tasks of a group may run at once across all its nodes (null: no limit, 0:
   * none, a pause). Waiting tasks start as soon as the limit leaves room.
   */
  async setGroupLimit(groupId: number, maxRunning: number | null): Promise<void> {
    await this.queries.setGroupLimit(this.pool, { groupId, maxRunning });
  }

  /** Sets how many tasks with a concurrency_key may run at once, in any group; null: back to the default, 1. */
  async setKeyLimit(key: string, maxRunning: number | null): Promise<void> {
    if (maxRunning === null) await this.queries.deleteKeyLimit(this.pool, { key });
    else await this.queries.setKeyLimit(this.pool, { key, maxRunning });
  }

  /**
   * Sets a key's rate: at most maxStarts of its tasks start in any window of periodSeconds,
   * cluster-wide, beside its max_running (null: no rate). Held-back tasks start as the window
   * frees starts.
   */
  async setKeyRate(key: string, rate: { maxStarts: number; periodSeconds: number } | null): Promise<void> {
    await this.queries.setKeyRate(this.pool, { key, maxStarts: rate?.maxStarts ?? null, periodSeconds: rate?.periodSeconds ?? null });
  }

  /** The groups with a limit and the keys in use or limited: the limit, what runs, what waits. */
  async limits(): Promise<Limit[]> {
    const { rows } = await this.queries.listLimits(this.pool);
    return rows;
  }

  /**
   * Adds a rule to a group's allowlist (see docs/security.md): argsPattern for every argument
   * (or, with argsPatterns, every one past them), argsPatterns one per position, allowDotdot
   * to let its arguments have '..' segments.
   */
  async allow(
    groupId: number,
    program: string,
    argsPattern: string | null = null,
    note: string | null = null,
    options: { argsPatterns?: string[] | null; allowDotdot?: boolean } = {},
  ): Promise<AllowRule> {
    const { rows } = await this.queries.insertAllowRule(this.pool, {
      groupId, program, argsPattern, argsPatterns: options.argsPatterns ?? null, allowDotdot: options.allowDotdot ?? false, note,
    });
    return rows[0]!;
  }

  /** The rules of one group's allowlist, or of every group's. */
  async allowRules(groupId: number | null = null): Promise<AllowRule[]> {
    const { rows } = await this.queries.listAllowRules(this.pool, { groupId });
    return rows;
  }

  /** Removes a rule; null when there is no rule with that id. */
  async disallow(ruleId: number): Promise<AllowRule | null> {
    const { rows } = await this.queries.deleteAllowRule(this.pool, { ruleId });
    return rows[0] ?? null;
  }

  async workers(): Promise<Worker[]> {
    const { rows } = await this.queries.listWorkers(this.pool, { recoveryDelaySeconds: NODE_DEFAULTS.recoveryDelaySeconds, leaseSeconds: NODE_DEFAULTS.leaseSeconds });
    return rows;
  }

  /** Writes a worker's stop code: 0 run, 1 pause, 2 drain and exit, 3 cancel and exit. */
  async setWorkerStop(workerId: number, stop: 0 | 1 | 2 | 3): Promise<Worker> {
    const { rows } = await this.queries.setWorkerStop(this.pool, { workerId, stop });
    if (!rows[0]) throw new Error(`worker ${workerId} not found`);
    return rows[0];
  }

  /**
   * Writes a run's live output (the latest run, or `attempt`) to `write`, chunk by chunk; with
   * `follow`, goes on as the run prints until it ends (LISTEN, not polling), or until `signal`
   * aborts. Resolves with the run it read.
   */
  output(id: number, options: FollowOptions, write: (chunk: OutputChunk, run: OutputRun) => void): Promise<OutputRun> {
    return readRunOutput(this.pool, this.queries, { config: this.listenConfig, channel: this.schema }, id, options, write);
  }

  async close(): Promise<void> {
    await this.waiter.close();
    await this.pool.end();
  }
}
