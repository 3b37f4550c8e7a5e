import type { Command } from 'commander';
import { clientConfig, createClient } from '../../db/connection.js';
import { migrate } from '../../db/migrate.js';
import { rolePrefix } from '../../db/roles.js';
import type { CliContext } from '../context.js';
import { print, printJson } from '../io.js';

export function registerMigrate(program: Command, ctx: CliContext): void {
  program
    .command('migrate')
    .description('create or upgrade the pg-tasks schema and its roles (safe to run from several hosts at once)')
    .option('--json', 'print the result as JSON')
    .option('--role-prefix <prefix>', 'prefix of the group roles (default: PGTASKS_ROLE_PREFIX or pgtasks_)')
    .option('--no-roles', 'do not create or grant the group roles')
    .action(async (opts: { json?: boolean; rolePrefix?: string; roles: boolean }) => {
      // Checked before connecting: a bad prefix is the caller's mistake, not the server's.
      const prefix = opts.roles ? rolePrefix(opts.rolePrefix) : null;
      const client = createClient(clientConfig({}));
      await client.connect();
      try {
        const result = await migrate(client, ctx.schema(), prefix === null ? {} : { roles: { prefix, create: true, always: true } });
        if (opts.json) {
          printJson(ctx.io, result);
          return;
        }
        // Named only when they alone changed: a migration is usually followed by function files.
        if (result.applied.length > 0) {
          print(ctx.io, `schema "${ctx.schema()}" migrated from version ${result.from} to ${result.to}: ${result.applied.join(', ')}`);
        } else if (result.functions.length > 0) {
          print(ctx.io, `schema "${ctx.schema()}" is at version ${result.to}; functions applied: ${result.functions.join(', ')}`);
        } else {
          print(ctx.io, `schema "${ctx.schema()}" is up to date (version ${result.to})`);
        }
        for (const name of result.kept ?? []) {
          ctx.io.stderr.write(`warning: ${name} is your own and was kept; compare it with src/sql/functions/${name}.sql of this pg-tasks\n`);
        }
        const roles = result.roles;
        if (roles?.created.length) print(ctx.io, `created roles: ${roles.created.join(', ')}`);
        for (const warning of roles?.warnings ?? []) ctx.io.stderr.write(`warning: ${warning}\n`);
      } finally {
        await client.end();
      }
    });
}
