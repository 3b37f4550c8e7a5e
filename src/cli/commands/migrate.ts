import type { Command } from 'commander';
import pg from 'pg';
import { clientConfig } from '../../db/connection.js';
import { migrate } from '../../db/migrate.js';
import type { CliContext } from '../context.js';
import { print, printJson } from '../io.js';

export function registerMigrate(program: Command, ctx: CliContext): void {
  program
    .command('migrate')
    .description('create or upgrade the pg-tasks schema (safe to run from several hosts at once)')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { json?: boolean }) => {
      const client = new pg.Client(clientConfig({}));
      await client.connect();
      try {
        const result = await migrate(client, ctx.schema());
        if (opts.json) printJson(ctx.io, result);
        else if (result.applied.length === 0) print(ctx.io, `schema "${ctx.schema()}" is up to date (version ${result.to})`);
        else print(ctx.io, `schema "${ctx.schema()}" migrated from version ${result.from} to ${result.to}: ${result.applied.join(', ')}`);
      } finally {
        await client.end();
      }
    });
}
