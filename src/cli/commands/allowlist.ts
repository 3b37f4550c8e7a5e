// allow, allowlist, disallow: the rules of task_allowlist (docs/security.md), thin over TaskClient.
import { InvalidArgumentError, type Command } from 'commander';
import type { AllowRule } from '../../client/types.js';
import type { CliContext } from '../context.js';
import { CliError, print, printJson } from '../io.js';
import { formatAllowTable } from '../format.js';
import { parseInteger, parsePositive } from '../parse.js';

export function registerAllowlist(program: Command, ctx: CliContext): void {
  program
    .command('allow')
    .description("let a group's tasks run a program: an absolute path, or every program under a directory (ending in /); checked where the group has commands = 'allowlist' and on nodes started with --commands allowlist")
    .argument('<group>', 'the group', (v) => parseInteger(v, 'group'))
    .argument('<program>', 'an absolute path (/usr/bin/rsync) or a directory ending in / (/opt/jobs/)', parseProgram)
    .option('--args <regex>', 'a PostgreSQL regular expression every argument must match (anchor it: ^…$), or with --arg every argument past those; default: any arguments')
    .option('--arg <regex>', 'the pattern of one argument, by position: the first --arg for argument 1, the second for argument 2…; arguments past the last are refused unless --args takes them', collect, [] as string[])
    .option('--allow-dotdot', "let the arguments have '..' segments (refused otherwise: a pattern can't see where ../.. leads)")
    .option('--note <text>', 'why the rule is there')
    .action(async (group: number, prog: string, opts: { args?: string; arg: string[]; allowDotdot?: boolean; note?: string }) => {
      const rule = await ctx.withClient((c) =>
        c.allow(group, prog, opts.args ?? null, opts.note ?? null, {
          argsPatterns: opts.arg.length > 0 ? opts.arg : null,
          allowDotdot: opts.allowDotdot ?? false,
        }),
      );
      print(ctx.io, `rule ${rule.id}: group ${rule.group_id} may run ${describeRule(rule)}`);
      if (rule.commands === 'any') {
        print(ctx.io, `(group ${rule.group_id} has commands = 'any': its rules are checked only by nodes started with --commands allowlist, until UPDATE task_group SET commands = 'allowlist' WHERE id = ${rule.group_id})`);
      }
    });

  program
    .command('allowlist')
    .description("list the rules of task_allowlist: of one group, or of every group")
    .argument('[group]', 'only this group', (v) => parseInteger(v, 'group'))
    .option('--json', 'print the rules as JSON')
    .action(async (group: number | undefined, opts: { json?: boolean }) => {
      const rules = await ctx.withClient((c) => c.allowRules(group ?? null));
      if (opts.json) printJson(ctx.io, rules);
      else if (rules.length > 0) print(ctx.io, formatAllowTable(rules));
      else print(ctx.io, group === undefined ? 'no rules' : `group ${group}: no rules`);
    });

  program
    .command('disallow')
    .description('remove a rule of task_allowlist, by its id (see pg-tasks allowlist)')
    .argument('<id>', 'the rule id', (v) => parsePositive(v, 'a rule id'))
    .action(async (id: number) => {
      const rule = await ctx.withClient((c) => c.disallow(id));
      if (!rule) throw new CliError(`rule ${id} not found`);
      print(ctx.io, `removed rule ${rule.id}: group ${rule.group_id} may no longer run ${describeRule(rule)}`);
    });
}

function describeRule(rule: AllowRule): string {
  const what = rule.program.endsWith('/') ? `every program under ${rule.program}` : rule.program;
  if (rule.args_patterns === null) {
    if (rule.args_pattern === null) return `${what}, with any arguments`;
    return `${what}, with arguments matching ${rule.args_pattern}${dotdot(rule)}`;
  }
  const positions = rule.args_patterns.map((p, i) => `argument ${i + 1} matching ${p}`);
  const rest = rule.args_pattern === null ? 'no more arguments' : `the rest matching ${rule.args_pattern}`;
  return `${what}, with ${[...positions, rest].join(', ')}${dotdot(rule)}`;
}

function dotdot(rule: AllowRule): string {
  return rule.allow_dotdot ? ", '..' segments allowed" : '';
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** The constraint of task_allowlist.program, said before the database says it less clearly. */
function parseProgram(value: string): string {
  if (!value.startsWith('/')) throw new InvalidArgumentError(`a program is an absolute path or a directory ending in /, got "${value}"`);
  if (/(^|\/)\.\.?(\/|$)/.test(value) || value.includes('//')) {
    throw new InvalidArgumentError(`a program has no "." or ".." segment and no "//": write its plain absolute path, got "${value}"`);
  }
  return value;
}
