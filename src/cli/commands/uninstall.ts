// `pg-tasks uninstall`: drops the schema and, with --roles, the group roles (docs/security.md,
// "Roles"; docs/deploy.md). It asks first on a terminal; elsewhere it wants --yes.
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import type pg from 'pg';
import { clientConfig, createClient } from '../../db/connection.js';
import { rolePrefix } from '../../db/roles.js';
import { describeInstall, uninstall, UninstallRefused, type InstallInfo } from '../../db/uninstall.js';
import type { CliContext } from '../context.js';
import { CliError, print, printJson } from '../io.js';

interface UninstallOptions {
  yes?: boolean;
  roles?: boolean;
  rolePrefix?: string;
  force?: boolean;
  json?: boolean;
}

/** What will go, in words: `schema "long_task" (12 tasks, 2 workers) and roles pgtasks_reader, …`. */
function whatGoes(info: InstallInfo): string {
  const parts: string[] = [];
  if (info.installed) parts.push(`schema "${info.schema}" (${info.tasks} tasks, ${info.workers} workers)`);
  if (info.roles.length > 0) parts.push(`roles ${info.roles.join(', ')}`);
  return parts.join(' and ');
}

function membersLine(members: InstallInfo['members']): string {
  return members.map((m) => `${m.member} (${m.role})`).join(', ');
}

async function confirmed(ctx: CliContext, info: InstallInfo): Promise<boolean> {
  const lines = [`This drops ${whatGoes(info)}, for good.`];
  if (info.members.length > 0) lines.push(`These users lose the roles: ${membersLine(info.members)}.`);
  const rl = createInterface({ input: process.stdin, output: ctx.io.stderr, terminal: true });
  try {
    const answer = await rl.question(`${lines.join('\n')}\nType yes to go on: `);
    return answer.trim() === 'yes';
  } finally {
    rl.close();
  }
}

export function registerUninstall(program: Command, ctx: CliContext): void {
  program
    .command('uninstall')
    .description('drop the pg-tasks schema (every task, run and setting in it) and, with --roles, the group roles; asks first')
    .option('--yes', 'do not ask (needed when stdin is not a terminal)')
    .option('--roles', 'also drop the group roles (cluster-wide: refused while another schema or database still uses them)')
    .option('--role-prefix <prefix>', 'prefix of the group roles (default: PGTASKS_ROLE_PREFIX or pgtasks_)')
    .option('--force', 'drop the schema even while nodes hold its workers')
    .option('--json', 'print the result as JSON')
    .action(async (opts: UninstallOptions) => {
      const schema = ctx.schema();
      // Checked before connecting: these are the caller's mistakes, not the server's.
      const prefix = opts.roles ? rolePrefix(opts.rolePrefix) : null;
      if (!opts.yes && !process.stdin.isTTY) {
        throw new CliError(`uninstall drops schema "${schema}"${prefix === null ? '' : ' and its roles'} for good: run it on a terminal to be asked, or add --yes`);
      }
      const client = createClient(clientConfig({}));
      await client.connect();
      try {
        const info = await describeInstall(client, schema, prefix);
        if (!info.installed && info.roles.length === 0) {
          if (info.schemaExists) throw new CliError(`schema "${schema}" is not a pg-tasks schema (it has no migrations table): nothing dropped`);
          print(ctx.io, `schema "${schema}" does not exist${prefix === null ? '' : ` and there are no ${prefix}* roles`}: nothing to drop`);
          return;
        }
        if (!opts.yes && !(await confirmed(ctx, info))) throw new CliError('nothing dropped');
        const result = await uninstall(client, schema, { rolePrefix: prefix, force: opts.force ?? false });
        if (opts.json) {
          printJson(ctx.io, result);
          return;
        }
        if (result.schemaDropped) print(ctx.io, `dropped schema "${schema}" (${info.tasks} tasks, ${info.workers} workers)`);
        else print(ctx.io, `schema "${schema}" does not exist`);
        if (result.rolesDropped.length > 0) print(ctx.io, `dropped roles: ${result.rolesDropped.join(', ')}`);
        if (result.membershipsDropped.length > 0) print(ctx.io, `users that lost them: ${membersLine(result.membershipsDropped)}`);
        if (prefix === null) await noteKeptRoles(ctx, client, schema, opts.rolePrefix);
      } catch (error) {
        if (error instanceof UninstallRefused) throw new CliError(error.message);
        throw error;
      } finally {
        await client.end();
      }
    });
}

/** Says so when the roles of the prefix are still there (roles outlive a dropped schema, and a dropdb). */
async function noteKeptRoles(ctx: CliContext, client: pg.ClientBase, schema: string, given: string | undefined): Promise<void> {
  let prefix: string;
  try {
    prefix = rolePrefix(given);
  } catch {
    return;
  }
  const { roles } = await describeInstall(client, schema, prefix);
  if (roles.length > 0) ctx.io.stderr.write(`note: kept the roles ${roles.join(', ')} (cluster-wide, maybe used elsewhere); "pg-tasks uninstall --roles" drops them\n`);
}
