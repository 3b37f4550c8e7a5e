// pg-tasks dashboard: the web dashboard on its own (npm start also runs one beside its node).
import { InvalidArgumentError, type Command } from 'commander';
import { DashboardConfigError, startDashboard } from '../../http/dashboard/index.js';
import type { CliContext } from '../context.js';
import { CliError, print } from '../io.js';
import { LOG_FORMATS, makeLogger, type LogFormat } from '../logger.js';
import { parsePort, parsePositive } from '../parse.js';

interface DashboardCliOptions {
  port: number;
  host: string;
  token?: string;
  readerToken?: string;
  readOnly?: boolean;
  maxStreams?: number;
  maxStreamsPerAddress?: number;
  logLevel: string;
  logFormat: LogFormat;
}

export function registerDashboard(program: Command, ctx: CliContext): void {
  program
    .command('dashboard')
    .description('serve the web dashboard: tasks, runs and live output, workers, schedules, groups; cancel, queue, add')
    .option('--port <port>', 'TCP port (0: any free one)', (v) => parsePort(v, '--port'), 8080)
    .option('--host <address>', 'address to listen on; any but a loopback one needs a token', '127.0.0.1')
    .option('--token <token>', 'required to use the dashboard (default: PGTASKS_DASHBOARD_TOKEN); at least 16 characters')
    .option('--reader-token <token>', 'read-only access beside --token: pages with no forms, every POST refused (default: PGTASKS_DASHBOARD_READER_TOKEN); at least 16 characters')
    .option('--read-only', 'serve every page with no action at all: no forms, every POST answers 403, whichever token')
    .option('--max-streams <n>', 'live pages (event streams) open at once, in all; past it they are refused (default 256)', (v) => parsePositive(v, '--max-streams'))
    .option('--max-streams-per-address <n>', 'live pages open at once from one client address (default 16)', (v) => parsePositive(v, '--max-streams-per-address'))
    .option('--log-level <level>', 'fatal, error, warn, info, debug', process.env.PGTASKS_LOG_LEVEL ?? 'info')
    .option('--log-format <format>', `${LOG_FORMATS.join(', ')}`, (v) => {
      if (!LOG_FORMATS.includes(v as LogFormat)) throw new InvalidArgumentError(`one of ${LOG_FORMATS.join(', ')}`);
      return v as LogFormat;
    }, (process.env.PGTASKS_LOG_FORMAT as LogFormat | undefined) ?? 'auto')
    .addHelpText('after', '\n  PGTASKS_DASHBOARD_TOKEN         the token, when --token is not given\n  PGTASKS_DASHBOARD_READER_TOKEN  the reader token, when --reader-token is not given')
    .action(async (opts: DashboardCliOptions) => {
      const logger = makeLogger(opts);
      let server;
      try {
        server = await startDashboard({
          schema: ctx.schema(), host: opts.host, port: opts.port, token: opts.token ?? null,
          readerToken: opts.readerToken ?? null, readOnly: opts.readOnly ?? false,
          maxStreams: opts.maxStreams, maxStreamsPerAddress: opts.maxStreamsPerAddress, logger,
        });
      } catch (error) {
        if (error instanceof DashboardConfigError) throw new CliError(error.message);
        const code = (error as { code?: string }).code;
        if (code === 'EADDRINUSE') throw new CliError(`port ${opts.port} on ${opts.host} is in use: choose another --port (0: any free one)`);
        if (code === 'EADDRNOTAVAIL') throw new CliError(`${opts.host} is not an address of this host: choose another --host`);
        throw error;
      }
      print(ctx.io, `pg-tasks dashboard: ${server.url}  (Ctrl-C stops it)`);
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          resolve();
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
      await server.close();
    });
}
