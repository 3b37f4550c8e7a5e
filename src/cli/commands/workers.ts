// workers, stop: the worker rows, thin over TaskClient.
import { Option, type Command } from 'commander';
import { print, printJson } from '../io.js';
import type { CliContext } from '../context.js';
import { formatWorkerTable } from '../format.js';
import { parseInteger } from '../parse.js';

const STOP_CODES = { resume: 0, pause: 1, drain: 2, cancel: 3 } as const;

export function registerWorkers(program: Command, ctx: CliContext): void {
  program
    .command('workers')
    .description('list the workers: lease holder, host, running tasks, status (ok, stopping, late, failed, stopped)')
    .option('--json', 'print the rows as JSON')
    .action(async (opts: { json?: boolean }) => {
      const workers = await ctx.withClient((c) => c.workers());
      if (opts.json) printJson(ctx.io, workers);
      else print(ctx.io, workers.length === 0 ? 'no workers' : formatWorkerTable(workers));
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
      else print(ctx.io, `worker ${row.id}: stop = ${row.stop} (${mode})`);
    });
}
