// add, queue, cancel, runs, show, ls: thin over TaskClient.
import { InvalidArgumentError, Option, type Command } from 'commander';
import { formatRunTable, formatScheduleTable, formatTask, formatTaskTable } from '../format.js';
import { print, printJson } from '../io.js';
import type { CliContext } from '../context.js';
import { parseInteger, parseJson, parsePositive, parseState, parseTaskId, parseTaskIds } from '../parse.js';
import { addRunOptions, runSettings, type RunOptions } from '../run-options.js';
import type { DependsRule, OnDuplicate, RecoverPolicy, TaskState } from '../../client/types.js';

export function registerTaskCommands(program: Command, ctx: CliContext): void {
  addRunOptions(program.command('add'))
    .description('insert a task (in AW, ready to run, unless --draft) and print its id')
    .usage('[options] -- CMD [ARGS...]')
    .argument('<command...>', 'the program and its arguments; an argument "%TASK" becomes the task id')
    .option('--group <n>', 'group of nodes that may run it', (v) => parseInteger(v, '--group'), 0)
    .option('--priority <n>', 'smaller runs first', (v) => parseInteger(v, '--priority'), 0)
    .option('--worker <id>', 'only this worker may run it', (v) => parseInteger(v, '--worker'))
    .option('--draft', 'insert in DR (draft); queue it later with "pg-tasks queue ID"')
    .option('--cwd <dir>', "working directory, absolute or relative to the node's --root-dir")
    .option('--params <json>', 'JSON handed to the process in PG_TASKS_PARAMS', parseJson)
    .option('--concurrency-key <key>', 'share a limit with the tasks of this key, in any group: 1 at a time unless "pg-tasks limit --key" says otherwise')
    .option('--after <ids>', 'run only once these tasks (e.g. 12,13) have ended CS; if one ends CF or CC, it ends CC', parseTaskIds)
    .addOption(new Option('--when <rule>', 'with --after: all-success (the default), all-done (once they all ended, however), any-failed (as soon as one fails; ends CC if none does)').choices(['all-success', 'all-done', 'any-failed']))
    .option('--unique-key <key>', 'at most one unended task (DR, AW, AE, AC) holds this key; see --on-duplicate')
    .addOption(new Option('--on-duplicate <mode>', 'when an unended task holds --unique-key: error, skip (print its id), or replace its params, priority and run_after while it waits').choices(['error', 'skip', 'replace']).default('error'))
    .addOption(new Option('--on-worker-failure <policy>', "if the worker running it fails: fail it, or requeue it (default: the group's policy, else fail)").choices(['fail', 'requeue']))
    .option('--json', 'print the whole row as JSON')
    .action(async (command: string[], opts: { group: number; priority: number; worker?: number; draft?: boolean; cwd?: string; params?: unknown; onWorkerFailure?: RecoverPolicy; after?: number[]; when?: string; concurrencyKey?: string; uniqueKey?: string; onDuplicate: OnDuplicate; json?: boolean } & RunOptions) => {
      if (opts.when !== undefined && opts.after === undefined) throw new InvalidArgumentError('--when needs --after');
      const task = await ctx.withClient((c) =>
        c.add({
          command,
          groupId: opts.group,
          priority: opts.priority,
          draft: opts.draft ?? false,
          cwd: opts.cwd ?? null,
          params: opts.params,
          workerId: opts.worker ?? null,
          recoverPolicy: opts.onWorkerFailure ?? null,
          dependsOn: opts.after ?? null,
          dependsRule: opts.when === undefined ? null : (opts.when.replace('-', '_') as DependsRule),
          concurrencyKey: opts.concurrencyKey ?? null,
          uniqueKey: opts.uniqueKey ?? null,
          onDuplicate: opts.onDuplicate,
          ...runSettings(opts),
        }),
      );
      if (opts.json) printJson(ctx.io, task);
      else print(ctx.io, String(task.id));
    });

  program
    .command('queue')
    .description('queue a draft (DR) or ended (C*) task for any worker of its group')
    .argument('<id>', 'task id', parseTaskId)
    .option('--json', 'print the row as JSON')
    .action(async (id: number, opts: { json?: boolean }) => {
      const task = await ctx.withClient((c) => c.queue(id));
      if (opts.json) printJson(ctx.io, task);
      else print(ctx.io, `task ${task.id} is ${task.state_id}`);
    });

  program
    .command('cancel')
    .description('cancel a waiting or executing task; an executing one has its process group killed')
    .argument('<id>', 'task id', parseTaskId)
    .option('--json', 'print the row as JSON')
    .action(async (id: number, opts: { json?: boolean }) => {
      const task = await ctx.withClient((c) => c.cancel(id));
      if (opts.json) printJson(ctx.io, task);
      else print(ctx.io, `task ${task.id} is ${task.state_id}`);
    });

  program
    .command('runs')
    .description("list a task's runs: one per execution, with how each ended")
    .argument('<id>', 'task id', parseTaskId)
    .option('--json', 'print the rows as JSON')
    .action(async (id: number, opts: { json?: boolean }) => {
      const runs = await ctx.withClient((c) => c.runs(id));
      if (opts.json) printJson(ctx.io, runs);
      else print(ctx.io, runs.length === 0 ? `task ${id} has not run yet` : formatRunTable(runs));
    });

  program
    .command('show')
    .description('show one task: state, command, exit, error and output tail')
    .argument('<id>', 'task id', parseTaskId)
    .option('--json', 'print the row as JSON')
    .action(async (id: number, opts: { json?: boolean }) => {
      const [task, runs, prerequisites] = await ctx.withClient(async (c) => [await c.get(id), await c.runs(id), await c.prerequisites(id)] as const);
      if (opts.json) printJson(ctx.io, task);
      else print(ctx.io, formatTask(task, runs.find((r) => r.attempt === task.attempt), prerequisites));
    });

  program
    .command('ls')
    .description('list tasks, newest first')
    .addOption(new Option('--state <code>', 'only this state: DR AW AE AC CS CF CC').argParser(parseState))
    .option('--group <n>', 'only this group', (v) => parseInteger(v, '--group'))
    .option('--limit <n>', 'at most this many', (v) => parsePositive(v, '--limit'), 50)
    .option('--scheduled', 'list the scheduled tasks with their schedule and next run')
    .option('--json', 'print the rows as JSON')
    .action(async (opts: { state?: TaskState; group?: number; limit: number; scheduled?: boolean; json?: boolean }) => {
      if (opts.scheduled) {
        const tasks = await ctx.withClient((c) => c.listScheduled({ ...(opts.group !== undefined ? { groupId: opts.group } : {}), limit: opts.limit }));
        if (opts.json) printJson(ctx.io, tasks);
        else print(ctx.io, tasks.length === 0 ? 'no scheduled tasks' : formatScheduleTable(tasks));
        return;
      }
      const tasks = await ctx.withClient((c) =>
        c.list({ ...(opts.state ? { state: opts.state } : {}), ...(opts.group !== undefined ? { groupId: opts.group } : {}), limit: opts.limit }),
      );
      if (opts.json) printJson(ctx.io, tasks);
      else print(ctx.io, tasks.length === 0 ? 'no tasks' : formatTaskTable(tasks));
    });
}
