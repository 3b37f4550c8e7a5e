import path from 'node:path';
import type { Command } from 'commander';
import { startEmbedded, type EmbeddedServer } from '../../embedded/index.js';
import type { CliContext } from '../context.js';
import { print } from '../io.js';
import { StopCode } from '../../node/control/stop-code.js';
import { makeLogger } from '../logger.js';
import { addNodeOptions, buildNodeOptions, nodeHttp, runNode, type NodeCliOptions } from './node.js';
import { parsePort } from '../parse.js';
import { startDashboard, type DashboardServer } from '../../http/dashboard/index.js';

interface StartOptions extends NodeCliOptions {
  dataDir: string;
  port: number;
  /** false: off; undefined: 8080, or a free port when that is taken. */
  dashboardPort?: number | false;
}

const DEFAULT_DASHBOARD_PORT = 8080;

// Not null for off: commander turns a parser's null into ''.
function parseDashboardPort(value: string): number | false {
  return value === 'off' ? false : parsePort(value, '--dashboard-port', 'off');
}

/** start runs fewer processes than a bare node by default: it is the try-it-out path. */
const START_MAX_TASKS = 4;
const DEFAULT_PORT = 54329;
/** The port Prometheus exporters conventionally start from; a free one when it is taken. */
const DEFAULT_METRICS_PORT = 9464;

export function registerStart(program: Command, ctx: CliContext): void {
  const command = addNodeOptions(
    program
      .command('start')
      .description('zero-setup start: an embedded PostgreSQL (unless DATABASE_URL is set), migrated, and one node')
      .option('--data-dir <dir>', 'embedded PostgreSQL data, kept across restarts', '.pg-tasks/data')
      .option('--port <port>', 'embedded PostgreSQL port on 127.0.0.1 (default 54329, or a free one when that is taken)', (v) => parsePort(v, '--port'))
      .option('--dashboard-port <port|off>', 'the web dashboard on 127.0.0.1 (default 8080, or a free one when that is taken; off: none)', parseDashboardPort),
    { maxTasks: START_MAX_TASKS, metricsPort: DEFAULT_METRICS_PORT },
  );
  command.action(async (opts: StartOptions) => {
    // Its log lines and its own (the banner, the end) share stdout: written in order.
    const logger = makeLogger(opts, process.stdout, true);
    const options = buildNodeOptions({ ...opts, maxTasks: opts.maxTasks ?? START_MAX_TASKS }, {}, ctx.schema(), logger);
    let embedded: EmbeddedServer | null = null;
    if (!process.env.DATABASE_URL) {
      const dataDir = path.resolve(opts.dataDir);
      print(ctx.io, 'starting the embedded PostgreSQL ...');
      embedded = await startEmbedded({ dataDir, port: opts.port ?? DEFAULT_PORT, anyPort: opts.port === undefined, relocate: command.getOptionValueSource('dataDir') === 'default' });
      for (const note of embedded.notes) print(ctx.io, note);
      process.env.DATABASE_URL = embedded.url;
    }
    let dashboard: DashboardServer | null = null;
    try {
      if (opts.dashboardPort !== false) {
        const port = opts.dashboardPort ?? DEFAULT_DASHBOARD_PORT;
        dashboard = await startDashboard({ schema: ctx.schema(), port, logger }).catch((error: NodeJS.ErrnoException) => {
          // The default port taken (another dashboard?): any free one will do.
          if (error.code === 'EADDRINUSE' && opts.dashboardPort === undefined) return startDashboard({ schema: ctx.schema(), port: 0, logger });
          throw error;
        });
      }
      const url = process.env.DATABASE_URL ?? '';
      const started = ({ metricsUrl }: { metricsUrl: string | null }): void => {
        const schema = ctx.schema();
        print(
          ctx.io,
          [
            '',
            `pg-tasks is running: worker ${options.workerId}, group ${options.groupId}, up to ${options.maxTasks} processes, schema "${schema}".`,
            options.commands === 'allowlist'
              ? "Commands:    allowlist (--commands allowlist): a task runs only if its group's task_allowlist allows it"
              : "Commands:    any (--commands any, the default): a task runs as written, unless its group has commands = 'allowlist'",
            ...(embedded ? [`Data:        ${embedded.dataDir} (delete it, while stopped, to start afresh)`] : []),
            `Connect:     psql "${url}"`,
            'Add a task:',
            `  psql "${url}" -c "INSERT INTO ${schema}.task (group_id, state_id, priority, command) VALUES (0, 'AW', 0, '{echo,hello}') RETURNING id"`,
            `  DATABASE_URL="${url}" npx pg-tasks add -- echo hello`,
            `Watch:       DATABASE_URL="${url}" npx pg-tasks ls`,
            ...(metricsUrl ? [`Metrics:     ${metricsUrl}  (health: /healthz, /readyz)`] : []),
            ...(dashboard ? [`Dashboard:   ${dashboard.url}`] : []),
            `Ctrl-C stops the node${embedded ? ', then the database' : ''}.`,
            '',
          ].join('\n'),
        );
      };
      const stopCode = await runNode(options, started, embedded?.died, nodeHttp(opts, command.getOptionValueSource('metricsPort') === 'default'));
      // "pg-tasks stop N --drain" (or --cancel) ends start as it ends a node: cleanly, and says so.
      if (stopCode === StopCode.drain || stopCode === StopCode.cancel) {
        const [mode, what] = stopCode === StopCode.drain ? ['drain', 'its running tasks ended'] : ['cancel', 'its running tasks were cancelled'];
        print(ctx.io, `Worker ${options.workerId} stopped by "pg-tasks stop ${options.workerId} --${mode}": ${what}, the node stopped${embedded ? ', then the database' : ''}. Its stop code is cleared: start again to run tasks.`);
      }
    } finally {
      await dashboard?.close();
      await embedded?.stop();
    }
  });
}
