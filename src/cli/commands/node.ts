import path from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { TaskNode } from '../../node/node.js';
import { NODE_DEFAULTS, defaultNodeName, type CommandsMode, type ContainmentMode, type NodeOptions, type ShutdownMode } from '../../node/options.js';
import type { SpawnerMode } from '../../node/process/spawner.js';
import type { Logger } from 'pino';
import type { CliContext } from '../context.js';
import { CliError } from '../io.js';
import { serveNode, type NodeServer } from '../../http/node-server.js';
import { LOG_FORMATS, makeLogger, type LogFormat } from '../logger.js';
import { parseEnvAssignment, validEnvName } from '../../node/process/task-env.js';
import { parseDuration, parseInteger, parseNonNegative, parsePort, parsePositive, parseTimerDuration, shown } from '../parse.js';
import type { StopCode } from '../../node/control/stop-code.js';

export interface NodeCliOptions {
  sessionUrl?: string | undefined;
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
  containment: ContainmentMode;
  orphanGrace: number;
  commands: CommandsMode;
  migrate: boolean;
  pruneEvery: number;
  logLevel: string;
  logFormat: LogFormat;
  /** false: off (commander turns a parser's null into ''). */
  metricsPort: number | false;
  metricsHost: string;
  passEnv: string[];
  env: Array<[string, string]>;
  allowRunAs: string[];
  allowRunAsRoot: boolean;
  otel: boolean;
}

/** Where a node serves /metrics, /healthz and /readyz; anyPort: a free one when `port` is taken. */
export interface NodeHttp {
  host: string;
  port: number;
  anyPort: boolean;
}

/** The options `node` and `start` share; `maxTasks` is the default the command applies itself. */
export function addNodeOptions(command: Command, defaults: { maxTasks: number; metricsPort: number | false } = { maxTasks: NODE_DEFAULTS.maxTasks, metricsPort: false }): Command {
  return command
    .addOption(
      new Option('--session-url <url>', 'where LISTEN, the worker lock and migrations connect: PostgreSQL itself or a session-mode pool, when DATABASE_URL is a transaction pooler (default: DATABASE_URL)')
        .env('PGTASKS_SESSION_URL'),
    )
    .option('--worker-id <id>', 'worker id this node serves (default 1)', (v) => parseInteger(v, '--worker-id'))
    .option('--group <n>', 'group whose queue it serves (default 0)', (v) => parseInteger(v, '--group'))
    .option('--max-tasks <n>', `most processes at once (default ${defaults.maxTasks})`, (v) => parsePositive(v, '--max-tasks'))
    .option('--name <name>', 'node name shown in worker and task rows (default host:pid:wID)')
    .option('--root-dir <dir>', "where tasks' relative cwd resolve (default: the current directory)")
    // Defaults are held in ms but shown as durations, with their unit (a bare number is refused).
    .addOption(
      new Option('--lease <duration>', 'worker lease, renewed every half of it')
        .argParser((v) => parseTimerDuration(v, '--lease'))
        .default(NODE_DEFAULTS.leaseSeconds * 1000, `${NODE_DEFAULTS.leaseSeconds}s`),
    )
    .addOption(
      new Option('--kill-grace <duration>', 'SIGTERM to SIGKILL delay when a task is ended')
        .argParser((v) => parseTimerDuration(v, '--kill-grace'))
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
      new Option('--containment <how>', "what a run's processes are: supervisor (everything the task starts, even with setsid or as a daemon, ends with the run; the spawn helper only), auto (the same, and a cgroup for a run with memory_max or cpu_max where the node's cgroup v2 is delegated with those controllers), cgroup (a cgroup for every run, where delegated), group (its process group)")
        .choices(['auto', 'supervisor', 'cgroup', 'group'])
        .default(NODE_DEFAULTS.containment),
    )
    .addOption(
      new Option('--orphan-grace <duration>', "how long a run's other processes may outlive its leader before they are killed (the run ends when the last is gone)")
        .argParser((v) => parseTimerDuration(v, '--orphan-grace'))
        .default(NODE_DEFAULTS.orphanGraceMs, `${NODE_DEFAULTS.orphanGraceMs}s`),
    )
    .addOption(
      new Option('--commands <mode>', "what may run: any (as written; groups with commands = 'allowlist' are checked), allowlist (every task checked against its group's task_allowlist)")
        .choices(['any', 'allowlist'])
        .default(NODE_DEFAULTS.commands),
    )
    .addOption(
      new Option('--prune-every <duration>', "how often to try a retention pass (task_group.keep_ended, keep_runs; one node at a time runs it): a duration, or off")
        .argParser(parsePruneEvery)
        .default(NODE_DEFAULTS.retentionEveryMs, `${NODE_DEFAULTS.retentionEveryMs / 60_000}m`),
    )
    .addOption(
      new Option('--metrics-port <port>', 'serve /metrics (Prometheus), /healthz and /readyz on this port: a number, or off')
        .argParser(parseMetricsPort)
        .default(defaults.metricsPort, defaults.metricsPort === false ? 'off' : `${defaults.metricsPort}, or a free port when it is taken`),
    )
    .option('--metrics-host <host>', 'address the metrics port listens on', '127.0.0.1')
    .option('--pass-env <names>', "the node's environment variables every task gets, by name (NAME[,NAME…]; repeatable)", collectNames, [] as string[])
    .option('--env <NAME=VALUE>', 'a variable every task gets (repeatable)', collectEnv, [] as Array<[string, string]>)
    .option('--allow-run-as <users>', 'users tasks may run as, by run_as on the task or its group (USER[,USER…]; repeatable; the node must run as root)', collectUsers, [] as string[])
    .option('--allow-run-as-root', 'also allow run_as root (uid 0 or group 0)', false)
    .option('--otel', 'export an OpenTelemetry span per run by OTLP/HTTP and give each task TRACEPARENT (also on when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; see docs/tracing.md)', false)
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
    sessionUrl: opts.sessionUrl || undefined,
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
    containment: opts.containment,
    orphanGraceMs: opts.orphanGrace,
    commands: opts.commands,
    retentionEveryMs: opts.pruneEvery,
    migrate: opts.migrate,
    passEnv: opts.passEnv,
    env: Object.fromEntries(opts.env),
    allowRunAs: opts.allowRunAs,
    allowRunAsRoot: opts.allowRunAsRoot,
    // Off unless asked: then the environment still decides (an OTLP endpoint turns it on).
    ...(opts.otel ? { otel: true } : {}),
    logger,
  };
}

function collectNames(value: string, previous: string[]): string[] {
  const names = value.split(',').map((n) => n.trim()).filter(Boolean);
  const bad = names.find((n) => !validEnvName(n));
  if (bad !== undefined || names.length === 0) throw new InvalidArgumentError(`--pass-env takes variable names (letters, digits, _), got "${bad ?? value}"`);
  return [...previous, ...names];
}

function collectEnv(value: string, previous: Array<[string, string]>): Array<[string, string]> {
  try {
    return [...previous, parseEnvAssignment(value)];
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function collectUsers(value: string, previous: string[]): string[] {
  const users = value.split(',').map((n) => n.trim()).filter(Boolean);
  const bad = users.find((u) => !/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(u));
  if (bad !== undefined || users.length === 0) throw new InvalidArgumentError(`--allow-run-as takes user names or ids (USER[,USER…]), got "${bad ?? value}"`);
  return [...previous, ...users];
}


function parseMetricsPort(value: string): number | false {
  return value === 'off' ? false : parsePort(value, '--metrics-port', 'off');
}

/** The metrics endpoint the command line asks for (null: none). */
export function nodeHttp(opts: NodeCliOptions, anyPort: boolean): NodeHttp | null {
  return opts.metricsPort === false ? null : { host: opts.metricsHost, port: opts.metricsPort, anyPort };
}

function parsePruneEvery(value: string): number {
  if (value === 'off') return 0;
  const ms = parseDuration(value);
  if (ms < 1_000) throw new InvalidArgumentError(`--prune-every must be at least 1s, or off; got ${shown(value)}`);
  return ms;
}

/**
 * Runs a node until it stops: SIGTERM/SIGINT start the shutdown; a second one escalates.
 * stopWhen: a reason to stop (e.g. the embedded PostgreSQL died under it). Resolves with the
 * stop code in force at the end: 2 or 3 when the worker's stop code ended it.
 */
export async function runNode(options: NodeOptions, onStarted?: (served: { metricsUrl: string | null }) => void, stopWhen?: Promise<string>, httpAt: NodeHttp | null = null): Promise<StopCode> {
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
  let server: NodeServer | null = null;
  try {
    // Served from before the start, so that /healthz answers while the node connects.
    if (httpAt) server = await serveNodeAt(node, httpAt, options.logger);
    await node.start();
    onStarted?.({ metricsUrl: server ? `${server.url}/metrics` : null });
    await node.exited;
    if (fatal) throw new CliError(fatal);
    return node.stopCode;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await server?.close();
  }
}

async function serveNodeAt(node: TaskNode, at: NodeHttp, log: Logger): Promise<NodeServer> {
  try {
    return await serveNode(node, at, log);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' && at.anyPort) return serveNode(node, { ...at, port: 0 }, log);
    if (code === 'EADDRINUSE') throw new CliError(`--metrics-port ${at.port} on ${at.host} is in use: choose another, or off`);
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') throw new CliError(`--metrics-host ${at.host} is not an address of this machine`);
    if (code === 'EACCES') throw new CliError(`--metrics-port ${at.port}: permission denied (ports below 1024 need root)`);
    throw error;
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
    await runNode(options, undefined, undefined, nodeHttp(opts, false));
  });
}
