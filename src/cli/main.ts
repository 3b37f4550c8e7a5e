import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { describeError } from '../db/errors.js';
import { makeContext } from './context.js';
import { CliError, oneLine, type CliIo } from './io.js';
import { usageMessage } from './usage-error.js';
import { nameFlag } from './flag-errors.js';
import { registerMigrate } from './commands/migrate.js';
import { registerNode } from './commands/node.js';
import { registerStart } from './commands/start.js';
import { registerTaskCommands } from './commands/tasks.js';
import { registerSchedule } from './commands/schedule.js';
import { registerWorkers } from './commands/workers.js';
import { registerLimits } from './commands/limits.js';
import { registerAllowlist } from './commands/allowlist.js';
import { registerLogs } from './commands/logs.js';
import { registerDashboard } from './commands/dashboard.js';
import { registerSystemdUnit } from './commands/systemd-unit.js';
import { registerUninstall } from './commands/uninstall.js';
import { registerBuildHelper } from './commands/build-helper.js';

const ENVIRONMENT_HELP = `
Environment:
  DATABASE_URL        postgres://user:password@host:port/database (overrides the PG* variables)
  PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE
                      the standard PostgreSQL connection variables, used without DATABASE_URL
  PGTASKS_SESSION_URL where LISTEN, the worker lock and migrations connect (default DATABASE_URL):
                      PostgreSQL itself when DATABASE_URL is a transaction pooler (docs/production.md)
  PGTASKS_SCHEMA      schema of the pg-tasks tables (default long_task; --schema overrides it)
  PGTASKS_ROLE_PREFIX prefix of the group roles migrate creates (default pgtasks_; --role-prefix overrides it)
  PGTASKS_LOG_LEVEL   node log level (default info)
  PGTASKS_LOG_FORMAT  node log lines: pretty, json, or auto (pretty on a terminal; default)
  PGTASKS_SPAWNER     what starts task processes: auto, helper or node
  PGTASKS_DASHBOARD_TOKEN
                      dashboard: the token it requires (needed when it listens off loopback)
  OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
                      node and start: export a span per run there by OTLP/HTTP, as --otel does
                      (other OTEL_* variables apply too; docs/tracing.md)
  OTEL_SERVICE_NAME   the runs' spans' service.name (default pg-tasks)
  PGTASKS_HOME        start, as root: where the embedded PostgreSQL's binaries and relocated
                      data go when its "postgres" user can't enter the clone (/var/lib/pg-tasks)`;

// package.json is two levels up from both src/cli (a clone) and dist/cli (the package).
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export function buildProgram(io: CliIo): Command {
  const program = new Command('pg-tasks')
    .description('Run OS processes as tasks, driven by rows in PostgreSQL.')
    .version(VERSION, '-V, --version', 'print the version of pg-tasks')
    .option('--schema <name>', 'schema of the pg-tasks tables (default: PGTASKS_SCHEMA or long_task)')
    .exitOverride();
  const ctx = makeContext(program, io);
  registerStart(program, ctx);
  registerNode(program, ctx);
  registerMigrate(program, ctx);
  registerTaskCommands(program, ctx);
  registerLogs(program, ctx);
  registerLimits(program, ctx);
  registerAllowlist(program, ctx);
  registerSchedule(program, ctx);
  registerWorkers(program, ctx);
  registerDashboard(program, ctx);
  registerSystemdUnit(program, ctx);
  registerUninstall(program, ctx);
  registerBuildHelper(program, ctx);
  for (const command of [program, ...program.commands]) {
    command.addHelpText('after', ENVIRONMENT_HELP);
    command.exitOverride();
    // Commander's usage errors read as ours: one `pg-tasks: …` line, the flag first. Commander
    // quotes a rejected argument as given: a newline in it must not split the line.
    const commandPath = command === program ? 'pg-tasks' : `pg-tasks ${command.name()}`;
    command.configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      outputError: (s, write) => write(`pg-tasks: ${oneLine(usageMessage(s, commandPath))}\n`),
    });
  }
  return program;
}

let quietOnEpipe = false;

/** Runs the CLI; returns the exit code instead of exiting, so tests can call it. */
export async function run(argv: string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const program = buildProgram(io);
  if (io.stdout === process.stdout && !quietOnEpipe) {
    quietOnEpipe = true;
    // `pg-tasks logs 12 | head`: the reader has gone, and so may we, quietly (as cat does).
    process.stdout.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') process.exit(0);
      throw error;
    });
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (error) {
    // Commander has already printed its own errors (and help); it reports them as a plain
    // CommanderError. An InvalidArgumentError reaching here was thrown by an action after
    // parsing (e.g. --lease too short), so nobody has printed it yet.
    if (error instanceof CommanderError && !(error instanceof InvalidArgumentError)) return error.exitCode;
    const known = error instanceof CliError || error instanceof InvalidArgumentError;
    const message = known ? error.message : nameFlag(describeError(error, safeSchema(program)));
    io.stderr.write(`pg-tasks: ${oneLine(message)}\n`);
    return known ? error.exitCode : 1;
  }
}

function safeSchema(program: Command): string | undefined {
  return program.opts<{ schema?: string }>().schema ?? process.env.PGTASKS_SCHEMA ?? 'long_task';
}

// Run when executed directly (tsx src/cli/main.ts); bin/pg-tasks.js calls run() itself.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await run(process.argv.slice(2));
}
