// limit: cluster-wide limits (task_group.max_running, concurrency_limit), thin over TaskClient.
import { InvalidArgumentError, type Command } from 'commander';
import { print, printJson } from '../io.js';
import type { CliContext } from '../context.js';
import { formatLimitTable } from '../format.js';
import { parseInteger, parseNonNegative } from '../parse.js';

export function registerLimits(program: Command, ctx: CliContext): void {
  program
    .command('limit')
    .description('set how many tasks of a group (--group) or with a concurrency key (--key) run at once, cluster-wide; with no limit given, list the limits and what runs and waits')
    .argument('[max]', 'a number (0 pauses), or "none": no limit for a group, the default (1) for a key', parseMax)
    .option('--group <n>', 'a group of nodes', (v) => parseInteger(v, '--group'))
    .option('--key <key>', 'a concurrency_key (tasks sharing it, in any group)', parseKey)
    .option('--json', 'print the rows as JSON')
    .action(async (max: number | null | undefined, opts: { group?: number; key?: string; json?: boolean }) => {
      if (opts.group !== undefined && opts.key !== undefined) throw new InvalidArgumentError('give --group or --key, not both');
      if (max !== undefined && opts.group === undefined && opts.key === undefined) {
        throw new InvalidArgumentError('a limit needs --group N or --key KEY');
      }
      const rows = await ctx.withClient(async (c) => {
        if (max !== undefined && opts.group !== undefined) await c.setGroupLimit(opts.group, max);
        if (max !== undefined && opts.key !== undefined) await c.setKeyLimit(opts.key, max);
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

function parseKey(value: string): string {
  if (value === '') throw new InvalidArgumentError('a concurrency key is a non-empty text');
  return value;
}
