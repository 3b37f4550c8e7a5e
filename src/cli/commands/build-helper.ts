// `pg-tasks build-helper`: compiles the spawn helper (src/node/process/spawner.c) into the
// cache a node looks in, so that a host or an image can run nodes with no C compiler: a
// container build does it in its build stage (Containerfile; docs/deploy.md).
import type { Command } from 'commander';
import { buildHelper } from '../../node/process/spawner.js';
import type { CliContext } from '../context.js';
import { CliError, print } from '../io.js';

export function registerBuildHelper(program: Command, ctx: CliContext): void {
  program
    .command('build-helper')
    .description("compile the spawn helper into XDG_CACHE_HOME/pg-tasks (default ~/.cache/pg-tasks), where nodes of this user find it, and print its path")
    .action(async () => {
      try {
        print(ctx.io, await buildHelper());
      } catch (error) {
        throw new CliError(`the spawn helper could not be built: ${(error as Error).message}`);
      }
    });
}
