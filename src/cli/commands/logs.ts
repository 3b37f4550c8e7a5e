// logs: a run's live output, like `kubectl logs [-f]`.
import { Option, type Command } from 'commander';
import { RunNotFoundError, TaskNotFoundError } from '../../client/client.js';
import type { CliContext } from '../context.js';
import { CliError, oneLine } from '../io.js';
import type { TaskRun } from '../../client/types.js';
import { parsePositive, parseTaskId } from '../parse.js';

export function registerLogs(program: Command, ctx: CliContext): void {
  program
    .command('logs')
    .description("print a run's output (stdout and stderr as they came); -f follows it live until the run ends")
    .argument('<id>', 'task id', parseTaskId)
    .option('-f, --follow', 'keep printing as the run prints, until it ends (a task that has not run yet: its first run); then say how it ended, on stderr, and exit with it: 0 CS, 1 CF, 2 CC')
    .option('--run <n>', 'this run of the task (1, 2, …; default: the latest)', (v) => parsePositive(v, '--run'))
    .addOption(new Option('--session-url <url>', 'where -f LISTENs: PostgreSQL itself when DATABASE_URL is a transaction pooler (default: DATABASE_URL)').env('PGTASKS_SESSION_URL'))
    .action(async (id: number, opts: { follow?: boolean; run?: number; sessionUrl?: string }) => {
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
          if (!result.ended || (wrote > 0 && !opts.follow)) return;
          const run = (await c.runs(id)).find((r) => r.attempt === result.attempt);
          if (wrote === 0 && run?.output) {
            // A run from before live output, or from a node with --output-keep 0: its tail.
            stderr.write(`[no live output kept for run ${result.attempt}; its output tail:]\n`);
            stdout.write(run.output);
          }
          if (opts.follow && run && !abort.signal.aborted) {
            // -f ends with the run, and says how: exit 0 CS, 1 CF, 2 CC, as a script wants it.
            const { state, detail } = runOutcome(run);
            const end = `task ${id}${opts.run !== undefined ? ` run ${run.attempt}` : ''} ended ${state}: ${detail}`;
            if (state !== 'CS') throw new CliError(end, state === 'CF' ? 1 : 2);
            stderr.write(`pg-tasks: ${end}\n`);
          }
        }, { sessionUrl: opts.sessionUrl || undefined });
      } catch (error) {
        if (error instanceof RunNotFoundError || error instanceof TaskNotFoundError) throw new CliError(error.message);
        throw error;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}

/** A run's end as its task's state would read: CS, CF or CC, and why. */
function runOutcome(run: TaskRun): { state: 'CS' | 'CF' | 'CC'; detail: string } {
  const reason = run.end_reason ?? 'unknown';
  const state = reason === 'completed' ? 'CS' : reason === 'cancelled' || reason === 'node_stopped' || reason === 'dependency' ? 'CC' : 'CF';
  if (run.exit_code !== null && (reason === 'completed' || reason === 'exit_code')) return { state, detail: `exit code ${run.exit_code}` };
  if (run.exit_signal !== null && reason === 'signal') return { state, detail: `killed by ${run.exit_signal}` };
  const error = run.error ? ` (${oneLine(run.error.split('\n')[0]!, 200)})` : '';
  return { state, detail: `${reason}${error}` };
}
