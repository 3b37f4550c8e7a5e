// limit: cluster-wide limits (task_group.max_running, concurrency_limit), thin over TaskClient.
import { InvalidArgumentError, type Command } from 'commander';
import { print, printJson } from '../io.js';
import type { CliContext } from '../context.js';
import { formatLimitTable } from '../format.js';
import { parseDuration, parseInteger, parseNonNegative, parsePositive, shown } from '../parse.js';

export function registerLimits(program: Command, ctx: CliContext): void {
  program
    .command('limit')
    .description('set how many tasks of a group (--group) or with a concurrency key (--key) run at once, cluster-wide; with no limit given, list the limits and what runs and waits')
    .argument('[max]', 'a number (0 pauses), or "none": no limit for a group, the default (1) for a key', parseMax)
    .option('--group <n>', 'a group of nodes', (v) => parseInteger(v, '--group'))
    .option('--key <key>', 'a concurrency_key (tasks sharing it, in any group)', parseKey)
    .option('--starts <n/period>', 'with --key: at most n starts of its tasks in any window of the period (e.g. 10/1m, 3/2s), beside the number running at once; "none": no rate', parseRate)
    .option('--json', 'print the rows as JSON')
    .action(async (max: number | null | undefined, opts: { group?: number; key?: string; starts?: Rate | null; json?: boolean }) => {
      if (opts.group !== undefined && opts.key !== undefined) throw new InvalidArgumentError('give --group or --key, not both');
      if (max !== undefined && opts.group === undefined && opts.key === undefined) {
        throw new InvalidArgumentError('a limit needs --group N or --key KEY');
      }
      if (opts.starts !== undefined && opts.key === undefined) throw new InvalidArgumentError('--starts needs --key KEY (a rate is on a concurrency key)');
      const rows = await ctx.withClient(async (c) => {
        if (max !== undefined && opts.group !== undefined) await c.setGroupLimit(opts.group, max);
        if (max !== undefined && opts.key !== undefined) await c.setKeyLimit(opts.key, max);
        if (opts.starts !== undefined && opts.key !== undefined) await c.setKeyRate(opts.key, opts.starts);
        const all = await c.limits();
        return all.filter((l) => (opts.group === undefined || (l.kind === 'group' && l.name === String(opts.group)))
          && (opts.key === undefined || (l.kind === 'key' && l.name === opts.key)));
      });
      if (opts.json) printJson(ctx.io, rows);
      else if (rows.length > 0) print(ctx.io, formatLimitTable(rows));
      else if (opts.group !== undefined) print(ctx.io, `group ${opts.group}: no limit`);
      else if (opts.key !== undefined) print(ctx.io, `key ${opts.key}: 1 at a time (the default), none running or waiting`);
      else print(ctx.io, 'no limits');
    });
}

function parseMax(value: string): number | null {
  if (value === 'none') return null;
  return parseNonNegative(value, 'the limit');
}

interface Rate {
  maxStarts: number;
  periodSeconds: number;
}

/** "10/1m": 10 starts per minute; "none": no rate. */
function parseRate(value: string): Rate | null {
  if (value === 'none') return null;
  const slash = value.indexOf('/');
  if (slash < 0) throw new InvalidArgumentError(`--starts takes n/period, like 10/1m or 3/2s, or none; got ${shown(value)}`);
  const maxStarts = parsePositive(value.slice(0, slash), 'the starts of --starts');
  const ms = parseDuration(value.slice(slash + 1));
  if (ms <= 0) throw new InvalidArgumentError(`the period of --starts must be longer than 0, got ${shown(value)}`);
  return { maxStarts, periodSeconds: ms / 1000 };
}

function parseKey(value: string): string {
  if (value === '') throw new InvalidArgumentError('a concurrency key is a non-empty text');
  return value;
}
