import path from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { TaskNode } from '../../node/node.js';
import { NODE_DEFAULTS, defaultNodeName, type NodeOptions, type ShutdownMode } from '../../node/options.js';
import type { SpawnerMode } from '../../node/spawner.js';
import type { Logger } from 'pino';
import type { CliContext } from '../context.js';
import { CliError } from '../io.js';
import { LOG_FORMATS, makeLogger, type LogFormat } from '../logger.js';
import { parseDuration, parseInteger, parseNonNegative, parsePositive } from '../parse.js';

export interface NodeCliOptions {
  workerId?: number | undefined;
  group?: number | undefined;
  maxTasks?: number | undefined;
  name?: string | undefined;
  rootDir?: string | undefined;
  lease: number;
  killGrace: number;
  outputLimit: number;
  outputKeep: number;
  shutdown: ShutdownMode;
  spawner: SpawnerMode;
  migrate: boolean;
  pruneEvery: number;
  logLevel: string;
  logFormat: LogFormat;
}

/** The options `node` and `start` share; `maxTasks` is the default the command applies itself. */
export function addNodeOptions(command: Command, defaults: { maxTasks: number } = { maxTasks: NODE_DEFAULTS.maxTasks }): Command {
  return command
    .option('--worker-id <id>', 'worker id this node serves (default 1)', (v) => parseInteger(v, '--worker-id'))
    .option('--group <n>', 'group whose queue it serves (default 0)', (v) => parseInteger(v, '--group'))
    .option('--max-tasks <n>', `most processes at once (default ${defaults.maxTasks})`, (v) => parsePositive(v, '--max-tasks'))
    .option('--name <name>', 'node name shown in worker and task rows (default host:pid:wID)')
    .option('--root-dir <dir>', "where tasks' relative cwd resolve (default: the current directory)")
    // Defaults are held in ms but shown as durations: a bare number given back means seconds.
    .addOption(
      new Option('--lease <duration>', 'worker lease, renewed every half of it')
        .argParser(parseDuration)
        .default(NODE_DEFAULTS.leaseSeconds * 1000, `${NODE_DEFAULTS.leaseSeconds}s`),
    )
    .addOption(
      new Option('--kill-grace <duration>', 'SIGTERM to SIGKILL delay when a task is ended')
        .argParser(parseDuration)
        .default(NODE_DEFAULTS.killGraceMs, `${NODE_DEFAULTS.killGraceMs}ms`),
    )
    .option('--output-limit <bytes>', 'bytes of output kept per task on its row (the tail)', (v) => parseNonNegative(v, '--output-limit'), NODE_DEFAULTS.outputLimit)
    .option('--output-keep <bytes>', 'bytes of each run\'s output written live to task_output (the newest kept; 0: none)', (v) => parseNonNegative(v, '--output-keep'), NODE_DEFAULTS.outputKeep)
    .addOption(
      new Option('--shutdown <mode>', 'on SIGTERM/SIGINT: cancel running tasks, or drain (wait for them; a second signal cancels)')
        .choices(['cancel', 'drain'])
        .default(NODE_DEFAULTS.shutdown),
    )
    .addOption(
      new Option('--spawner <how>', 'what starts task processes: helper (a small C program, compiled on first use), node (child_process.spawn), auto (helper when a C compiler is there)')
        .choices(['auto', 'helper', 'node'])
        .env('PGTASKS_SPAWNER')
        .default(NODE_DEFAULTS.spawner),
    )
    .addOption(
      new Option('--prune-every <duration>', "how often to try a retention pass (task_group.keep_ended, keep_runs; one node at a time runs it): a duration, or off")
        .argParser(parsePruneEvery)
        .default(NODE_DEFAULTS.retentionEveryMs, `${NODE_DEFAULTS.retentionEveryMs / 60_000}m`),
    )
    .option('--no-migrate', 'do not apply migrations at start')
    .option('--log-level <level>', 'fatal, error, warn, info, debug', process.env.PGTASKS_LOG_LEVEL ?? 'info')
    .addOption(
      new Option('--log-format <format>', 'pretty: one readable line per event; json: JSON lines; auto: pretty on a terminal, else json')
        .choices(LOG_FORMATS)
        .env('PGTASKS_LOG_FORMAT')
        .default('auto'),
    );
}

export function buildNodeOptions(opts: NodeCliOptions, positional: { workerId?: number | undefined; group?: number | undefined; maxTasks?: number | undefined; name?: string | undefined }, schema: string, logger: Logger): NodeOptions {
  const workerId = opts.workerId ?? positional.workerId ?? 1;
  const leaseSeconds = opts.lease / 1000;
  if (leaseSeconds < 2) throw new InvalidArgumentError(`--lease must be at least 2s, got ${leaseSeconds}s`);
  return {
    schema,
    workerId,
    groupId: opts.group ?? positional.group ?? NODE_DEFAULTS.groupId,
    maxTasks: opts.maxTasks ?? positional.maxTasks ?? NODE_DEFAULTS.maxTasks,
    nodeName: opts.name ?? positional.name ?? defaultNodeName(workerId),
    rootDir: path.resolve(opts.rootDir ?? process.cwd()),
    leaseSeconds,
    marginSeconds: NODE_DEFAULTS.marginSeconds,
    recoveryDelaySeconds: NODE_DEFAULTS.recoveryDelaySeconds,
    killGraceMs: opts.killGrace,
    outputLimit: opts.outputLimit,
    outputKeep: opts.outputKeep,
    shutdown: opts.shutdown,
    spawner: opts.spawner,
    retentionEveryMs: opts.pruneEvery,
    migrate: opts.migrate,
    logger,
  };
}

function parsePruneEvery(value: string): number {
  if (value === 'off') return 0;
  const ms = parseDuration(value);
  if (ms < 1_000) throw new InvalidArgumentError(`--prune-every must be at least 1s, or off; got "${value}"`);
  return ms;
}

/**
 * Runs a node until it stops: SIGTERM/SIGINT start the shutdown; a second one escalates.
 * stopWhen: a reason to stop (e.g. the embedded PostgreSQL died under it).
 */
export async function runNode(options: NodeOptions, onStarted?: () => void, stopWhen?: Promise<string>): Promise<void> {
  const node = new TaskNode(options);
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    options.logger.info({ signal }, signals === 1 ? 'signal received: stopping' : 'second signal: cancelling running tasks');
    void node.shutdown(signals === 1 ? options.shutdown : 'cancel', `node received ${signal}`);
  };
  let fatal: string | null = null;
  void stopWhen?.then((reason) => {
    fatal = reason;
    options.logger.error({ reason }, 'stopping: the database is gone');
    void node.shutdown('cancel', reason);
  });
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await node.start();
    onStarted?.();
    await node.exited;
    if (fatal) throw new CliError(fatal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

export function registerNode(program: Command, ctx: CliContext): void {
  addNodeOptions(
    program
      .command('node')
      .description('run a node: hold a worker lease and run its group\'s tasks as OS processes')
      .usage('[options] [worker_id [group_id [max_task_count [node_name]]]]')
      .argument('[worker_id]', 'the seed\'s positional form of --worker-id', (v) => parseInteger(v, 'worker_id'))
      .argument('[group_id]', 'positional --group', (v) => parseInteger(v, 'group_id'))
      .argument('[max_task_count]', 'positional --max-tasks', (v) => parsePositive(v, 'max_task_count'))
      .argument('[node_name]', 'positional --name'),
  ).action(async (workerId: number | undefined, group: number | undefined, maxTasks: number | undefined, name: string | undefined, opts: NodeCliOptions) => {
    const logger = makeLogger(opts);
    const options = buildNodeOptions(opts, { workerId, group, maxTasks, name }, ctx.schema(), logger);
    await runNode(options);
  });
}
