// workers, stop, prune: the worker rows, and retention, thin over TaskClient.
import { Option, type Command } from 'commander';
import { print, printJson } from '../io.js';
import type { CliContext } from '../context.js';
import { formatWorkerTable } from '../format.js';
import { parseDuration, parseInteger } from '../parse.js';

const STOP_CODES = { resume: 0, pause: 1, drain: 2, cancel: 3 } as const;

/** What each stop code makes of the worker, as `workers` shows its status. */
const STOP_MEANS: Record<keyof typeof STOP_CODES, string> = {
  resume: 'running (stop code 0): it claims tasks',
  pause: 'paused (stop code 1): no new tasks; the running ones go on ("--resume" resumes)',
  drain: 'draining (stop code 2): no new tasks; its node exits when the running ones end',
  cancel: 'cancelling (stop code 3): its running tasks are cancelled, then its node exits',
};

export function registerWorkers(program: Command, ctx: CliContext): void {
  program
    .command('workers')
    .description('list the workers: lease holder, host, running tasks, status (ok, paused, draining, cancelling, late, failed, standby, stopped)')
    .option('--json', 'print the rows as JSON')
    .action(async (opts: { json?: boolean }) => {
      const workers = await ctx.withClient((c) => c.workers());
      if (opts.json) printJson(ctx.io, workers);
      else print(ctx.io, workers.length === 0 ? 'no workers' : formatWorkerTable(workers));
    });

  program
    .command('prune')
    .description('delete ended tasks (and their runs) older than a duration, and older runs of the tasks that stay, in small batches')
    .requiredOption('--older-than <duration>', 'ended longer ago than this: 30d, 12h, 90m', parseDuration)
    .option('--group <n>', 'only this group', (v) => parseInteger(v, '--group'))
    .option('--json', 'print the counts as JSON')
    .action(async (opts: { olderThan: number; group?: number; json?: boolean }) => {
      const pruned = await ctx.withClient((c) => c.prune({ olderThanMs: opts.olderThan, groupId: opts.group ?? null }));
      if (opts.json) printJson(ctx.io, pruned);
      else print(ctx.io, `pruned ${pruned.tasks} ended tasks and ${pruned.runs} older runs`);
    });

  program
    .command('stop')
    .description("write a worker's stop code; its node obeys at once")
    .argument('<worker>', 'worker id', (v) => parseInteger(v, 'worker'))
    .addOption(new Option('--drain', 'start no new tasks, exit when the running ones end (stop = 2; the default)').conflicts(['cancel', 'pause', 'resume']))
    .addOption(new Option('--cancel', 'cancel the running tasks, then exit (stop = 3)').conflicts(['pause', 'resume']))
    .addOption(new Option('--pause', 'start no new tasks, keep running (stop = 1)').conflicts(['resume']))
    .option('--resume', 'run again (stop = 0)')
    .option('--json', 'print the row as JSON')
    .action(async (worker: number, opts: { drain?: boolean; cancel?: boolean; pause?: boolean; resume?: boolean; json?: boolean }) => {
      const mode = opts.cancel ? 'cancel' : opts.pause ? 'pause' : opts.resume ? 'resume' : 'drain';
      const row = await ctx.withClient((c) => c.setWorkerStop(worker, STOP_CODES[mode]));
      if (opts.json) printJson(ctx.io, row);
      // No node holds it: the next one to take it obeys at its start.
      else print(ctx.io, `worker ${row.id}: ${STOP_MEANS[mode]}${row.active ? '' : ' (no node holds it now: the next one obeys when it starts)'}`);
    });
}
