// logs: a run's live output, like `kubectl logs [-f]`.
import type { Command } from 'commander';
import { RunNotFoundError, TaskNotFoundError } from '../../client/client.js';
import type { CliContext } from '../context.js';
import { CliError } from '../io.js';
import { parsePositive, parseTaskId } from '../parse.js';

export function registerLogs(program: Command, ctx: CliContext): void {
  program
    .command('logs')
    .description("print a run's output (stdout and stderr as they came); -f follows it live until the run ends")
    .argument('<id>', 'task id', parseTaskId)
    .option('-f, --follow', 'keep printing as the run prints, until it ends (a task that has not run yet: its first run)')
    .option('--run <n>', 'this run of the task (1, 2, …; default: the latest)', (v) => parsePositive(v, '--run'))
    .action(async (id: number, opts: { follow?: boolean; run?: number }) => {
      const { stdout, stderr } = ctx.io;
      // Ctrl-C ends a follow quietly, as kubectl does.
      const abort = new AbortController();
      const onSignal = (): void => abort.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        let next = 0;
        let wrote = 0;
        await ctx.withClient(async (c) => {
          const result = await c.output(id, { attempt: opts.run, follow: opts.follow ?? false, signal: abort.signal }, (chunk) => {
            // Notes go to stderr, so that stdout is exactly what the process printed.
            if (chunk.pos > next) stderr.write(`[… ${chunk.pos - next} bytes not kept]\n`);
            stdout.write(chunk.data);
            next = chunk.pos + chunk.data.length;
            wrote++;
          });
          if (result.attempt === 0 && !abort.signal.aborted) throw new CliError(`task ${id} has not run yet`);
          if (wrote === 0 && result.ended) {
            // A run from before live output, or from a node with --output-keep 0: its tail.
            const tail = (await c.runs(id)).find((r) => r.attempt === result.attempt)?.output;
            if (tail) {
              stderr.write(`[no live output kept for run ${result.attempt}; its output tail:]\n`);
              stdout.write(tail);
            }
          }
        });
      } catch (error) {
        if (error instanceof RunNotFoundError || error instanceof TaskNotFoundError) throw new CliError(error.message);
        throw error;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}
