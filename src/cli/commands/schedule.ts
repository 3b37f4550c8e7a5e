// schedule, unschedule: thin over TaskClient.schedule / unschedule.
import { InvalidArgumentError, Option, type Command } from 'commander';
import { print, printJson } from '../io.js';
import type { CliContext } from '../context.js';
import { parseEvery, parsePositive, parseTaskId, parseTime } from '../parse.js';
import { describeSchedule } from '../format.js';
import { addRunOptions, runSettings, type RunOptions } from '../run-options.js';
import type { MissedPolicy, OverlapPolicy, PeriodId } from '../../client/types.js';

function parseCatchupMax(value: string): number {
  const n = parsePositive(value, '--catchup-max');
  if (n > 10_000) throw new InvalidArgumentError(`--catchup-max must be at most 10000, got ${n}`);
  return n;
}

export function registerSchedule(program: Command, ctx: CliContext): void {
  addRunOptions(program.command('schedule'))
    .description('start a task every period, on a cron expression, or once at a time')
    .argument('<id>', 'task id', parseTaskId)
    .option('--every <period>', 'period: 10s, 5m, 2h, 1d, 1w, 1mo', parseEvery)
    .option('--cron <expr>', 'cron expression: 5 fields, or 6 with seconds first')
    .option('--tz <zone>', 'IANA time zone of cron fields and of day/week/month periods', 'UTC')
    .option('--at <time>', 'first run (ISO 8601 or "now"); alone, a one-shot start at that time', parseTime)
    .option('--clone', 'queue a copy at each slot (shed_clone) instead of re-queuing the task itself')
    .option('--unique-key <template>', 'with --clone, each copy\'s unique key: {{slot}} becomes its slot (UTC); a copy whose key an unended task holds is not made')
    .addOption(new Option('--overlap <policy>', 'with --clone, a slot while an earlier copy has not ended: start one anyway (allow, the default), skip it, queue one to run after, or cancel_previous').choices(['allow', 'skip', 'queue', 'cancel_previous']))
    .addOption(new Option('--missed <policy>', 'slots missed while no node fired them: one run for all (once, the default), none (skip), or with --clone a copy each (all)').choices(['skip', 'once', 'all']))
    .option('--catchup-max <n>', 'with --missed all, copies per fire at most (1 to 10000, default 100); the rest are counted as skipped', (v) => parseCatchupMax(v))
    .option('--json', 'print the row as JSON')
    .action(async (id: number, opts: { every?: { periodId: PeriodId; count: number }; cron?: string; tz: string; at?: Date; clone?: boolean; overlap?: OverlapPolicy; uniqueKey?: string; missed?: MissedPolicy; catchupMax?: number; json?: boolean } & RunOptions) => {
      const task = await ctx.withClient((c) =>
        c.schedule(id, {
          ...(opts.every ? { every: opts.every } : {}),
          ...(opts.cron ? { cron: opts.cron } : {}),
          ...(opts.at ? { at: opts.at } : {}),
          tz: opts.tz,
          clone: opts.clone ?? false,
          runs: runSettings(opts),
          ...(opts.overlap ? { overlap: opts.overlap } : {}),
          ...(opts.uniqueKey ? { uniqueKey: opts.uniqueKey } : {}),
          ...(opts.missed ? { missed: opts.missed } : {}),
          ...(opts.catchupMax !== undefined ? { catchupMax: opts.catchupMax } : {}),
        }),
      );
      if (opts.json) {
        printJson(ctx.io, task);
        return;
      }
      print(ctx.io, `task ${task.id}: ${describeSchedule(task)}, next run ${task.next_start?.toISOString() ?? '-'}`);
      if (!task.shed_clone && task.shed_missed === 'all') {
        ctx.io.stderr.write(`note: task ${task.id} re-queues itself (no --clone): its missed slots get one run, as --missed once\n`);
      }
      if (!task.shed_clone && (opts.every || opts.cron) && task.state_id === 'DR') {
        // The seed's rule: a repeating schedule re-queues the task only once it has ended (C*).
        ctx.io.stderr.write(`note: task ${task.id} is a draft; its slots are skipped until it has run once (queue it now, or schedule with --clone)\n`);
      }
    });

  program
    .command('unschedule')
    .description('remove the schedule of a task (the task itself is left as it is)')
    .argument('<id>', 'task id', parseTaskId)
    .option('--json', 'print the row as JSON')
    .action(async (id: number, opts: { json?: boolean }) => {
      const task = await ctx.withClient((c) => c.unschedule(id));
      if (opts.json) printJson(ctx.io, task);
      else print(ctx.io, `task ${task.id}: not scheduled`);
    });
}
