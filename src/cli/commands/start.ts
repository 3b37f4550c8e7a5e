import path from 'node:path';
import type { Command } from 'commander';
import { startEmbedded, type EmbeddedServer } from '../../embedded/index.js';
import type { CliContext } from '../context.js';
import { print } from '../io.js';
import { addNodeOptions, buildNodeOptions, makeLogger, runNode, type NodeCliOptions } from './node.js';
import { parseNonNegative } from '../parse.js';

interface StartOptions extends NodeCliOptions {
  dataDir: string;
  port: number;
}

/** start runs fewer processes than a bare node by default: it is the try-it-out path. */
const START_MAX_TASKS = 4;

export function registerStart(program: Command, ctx: CliContext): void {
  addNodeOptions(
    program
      .command('start')
      .description('zero-setup start: an embedded PostgreSQL (unless DATABASE_URL is set), migrated, and one node')
      .option('--data-dir <dir>', 'embedded PostgreSQL data, kept across restarts', '.pg-tasks/data')
      .option('--port <port>', 'embedded PostgreSQL port on 127.0.0.1', (v) => parseNonNegative(v, '--port'), 54329),
    { maxTasks: START_MAX_TASKS },
  ).action(async (opts: StartOptions) => {
    const logger = makeLogger(opts.logLevel);
    let embedded: EmbeddedServer | null = null;
    if (!process.env.DATABASE_URL) {
      const dataDir = path.resolve(opts.dataDir);
      print(ctx.io, `starting the embedded PostgreSQL (data in ${dataDir}) ...`);
      embedded = await startEmbedded({ dataDir, port: opts.port });
      process.env.DATABASE_URL = embedded.url;
    }
    try {
      const options = buildNodeOptions({ ...opts, maxTasks: opts.maxTasks ?? START_MAX_TASKS }, {}, ctx.schema(), logger);
      const url = process.env.DATABASE_URL ?? '';
      await runNode(options, () => {
        const schema = ctx.schema();
        print(
          ctx.io,
          [
            '',
            `pg-tasks is running: worker ${options.workerId}, group ${options.groupId}, up to ${options.maxTasks} processes, schema "${schema}".`,
            `Connect:     psql "${url}"`,
            'Add a task:',
            `  psql "${url}" -c "INSERT INTO ${schema}.task (group_id, state_id, priority, command) VALUES (0, 'AW', 0, '{echo,hello}') RETURNING id"`,
            `  DATABASE_URL="${url}" npx pg-tasks add -- echo hello`,
            `Watch:       DATABASE_URL="${url}" npx pg-tasks ls`,
            'Ctrl-C stops the node, then the database.',
            '',
          ].join('\n'),
        );
      });
    } finally {
      await embedded?.stop();
    }
  });
}
