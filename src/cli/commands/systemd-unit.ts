// `pg-tasks systemd-unit [node options]`: a systemd service that runs `pg-tasks node` with
// those options, with the stop, restart and cgroup settings the node needs (docs/deploy.md).
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { RESULTS_DRAIN_MS } from '../../node/control/shutdown.js';
import { NODE_DEFAULTS, type ShutdownMode } from '../../node/options.js';
import type { CliContext } from '../context.js';
import { CliError, print } from '../io.js';
import { parseDuration, parseInteger, parsePositive, shown } from '../parse.js';
import { addNodeOptions, type NodeCliOptions } from './node.js';

/**
 * What a node does after SIGTERM besides its kill grace and writing the results: the claim
 * in flight, settling old terms, releasing the lease, closing the pool. A second or two
 * against a reachable database; 10 s leaves room for a slow one.
 */
export const STOP_MARGIN_MS = 10_000;

export const DEFAULT_DRAIN_TIMEOUT_MS = 3_600_000;

/** systemd 254 added DelegateSubgroup=. */
const DELEGATE_SUBGROUP_SINCE = 254;

export interface UnitSettings {
  /** The pg-tasks executable. */
  exec: string;
  /** Global options before `node` (--schema). */
  globalArgs: string[];
  /** The node's options, as given. */
  nodeArgs: string[];
  workerId: number;
  /** User=; null: root. */
  user: string | null;
  envFile: string;
  killGraceMs: number;
  shutdown: ShutdownMode;
  /** With --shutdown drain: how long the drain may take (Infinity: as long as it takes). */
  drainTimeoutMs: number;
  /** Runs may get cgroups: the unit delegates its cgroup to the node. */
  delegate: boolean;
  /** The systemd of this host (null: unknown), for DelegateSubgroup=. */
  systemdVersion: number | null;
  protectSystem?: string | undefined;
  protectHome?: string | undefined;
  privateTmp: boolean;
  noNewPrivileges: boolean;
}

/** TimeoutStopSec and, for a drain, what happens when it runs out. */
export function stopTimeouts(u: Pick<UnitSettings, 'killGraceMs' | 'shutdown' | 'drainTimeoutMs'>): { lines: string[]; why: string } {
  const cancelMs = u.killGraceMs + RESULTS_DRAIN_MS + STOP_MARGIN_MS;
  const cancel = `${seconds(u.killGraceMs)} kill grace + ${seconds(RESULTS_DRAIN_MS)} to write the results + ${seconds(STOP_MARGIN_MS)} to release the lease and close`;
  if (u.shutdown === 'cancel') {
    return { lines: [`TimeoutStopSec=${seconds(cancelMs)}`], why: `# SIGTERM cancels the running tasks: ${cancel} = ${seconds(cancelMs)}` };
  }
  if (u.drainTimeoutMs === Infinity) {
    return { lines: ['TimeoutStopSec=infinity'], why: '# SIGTERM drains: the node waits for its running tasks however long they take (--drain-timeout infinity)' };
  }
  // After the drain's time, systemd sends WatchdogSignal to the node alone (KillMode=mixed):
  // a second SIGTERM, which cancels what still runs, as the node's own escalation does.
  return {
    lines: [`TimeoutStopSec=${seconds(u.drainTimeoutMs)}`, 'TimeoutStopFailureMode=abort', 'WatchdogSignal=SIGTERM', `TimeoutAbortSec=${seconds(cancelMs)}`],
    why:
      `# SIGTERM drains: the node waits up to ${seconds(u.drainTimeoutMs)} (--drain-timeout) for its running tasks; then a\n` +
      `# second SIGTERM cancels them: ${cancel} = ${seconds(cancelMs)}`,
  };
}

/** Whole seconds, rounded up: systemd would take "5.5" too, but a person reads "6". */
function seconds(ms: number): string {
  return `${Math.ceil(ms / 1000)}s`;
}

/**
 * One word of an Exec line: systemd splits on whitespace, takes quotes and C escapes, and
 * expands %-specifiers and $VARIABLES everywhere, so `%` and `$` are doubled.
 */
export function systemdQuote(word: string): string {
  if (word === ';') return '\\;';
  const expanded = word.replace(/[%$]/g, (c) => c + c);
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(expanded)) return expanded;
  // eslint-disable-next-line no-control-regex -- control characters are what it escapes
  const escaped = expanded.replace(/[\\"\u0000-\u001f\u007f]/g, (c) => {
    if (c === '\\' || c === '"') return `\\${c}`;
    const named: Record<string, string> = { '\n': '\\n', '\t': '\\t', '\r': '\\r' };
    return named[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
  });
  return `"${escaped}"`;
}

export function renderUnit(u: UnitSettings): string {
  const exec = [u.exec, ...u.globalArgs, 'node', ...u.nodeArgs].map(systemdQuote).join(' ');
  const stop = stopTimeouts(u);
  const lines = [
    '# A pg-tasks node as a systemd service (docs/deploy.md), printed by `pg-tasks systemd-unit`.',
    '#   pg-tasks systemd-unit [node options] > /etc/systemd/system/pg-tasks-node.service',
    '#   systemctl daemon-reload && systemctl enable --now pg-tasks-node',
    '[Unit]',
    `Description=pg-tasks node (worker ${u.workerId})`,
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    ...(u.user === null ? ['# As root: tasks may run as other users (--allow-run-as).'] : [`User=${u.user}`]),
    `# DATABASE_URL=postgres://… (and any PGTASKS_* setting), one per line; readable by root only.`,
    `EnvironmentFile=${u.envFile}`,
    `ExecStart=${exec}`,
    '# The spawn helper is compiled once into /var/cache/pg-tasks (a C compiler is needed the first time).',
    'CacheDirectory=pg-tasks',
    'Environment=XDG_CACHE_HOME=/var/cache',
    'Restart=on-failure',
    'RestartSec=5s',
    '# SIGTERM to the node alone: it ends or drains its tasks itself and records how they ended;',
    "# systemd's SIGKILL reaches the rest of the unit only when the time below runs out.",
    'KillMode=mixed',
    'KillSignal=SIGTERM',
    stop.why,
    ...stop.lines,
    "# A task killed for its memory_max ends that task's run, not the node.",
    'OOMPolicy=continue',
  ];
  if (u.delegate) {
    lines.push('# Runs get cgroups of their own under the node (--containment auto or cgroup; docs/security.md).', 'Delegate=yes');
    if (u.systemdVersion !== null && u.systemdVersion < DELEGATE_SUBGROUP_SINCE) {
      lines.push(
        `# DelegateSubgroup=node (systemd ${DELEGATE_SUBGROUP_SINCE}+; this host has ${u.systemdVersion}) would give the runs' cgroups the`,
        '# memory and cpu controllers; without it they serve to kill every process of a run, and limits stay rlimits.',
      );
    } else {
      lines.push("# The node starts in a child of the unit's cgroup, so the runs' cgroups may have controllers.", 'DelegateSubgroup=node');
    }
  }
  lines.push(
    '# Hardening that leaves tasks their files, /tmp, setuid programs (sudo) and run_as:',
    'ProtectKernelModules=yes',
    'ProtectKernelLogs=yes',
    'RestrictRealtime=yes',
  );
  const chosen: string[] = [];
  if (u.protectSystem) chosen.push(`ProtectSystem=${u.protectSystem}`);
  if (u.protectHome) chosen.push(`ProtectHome=${u.protectHome}`);
  if (u.privateTmp) chosen.push('PrivateTmp=yes');
  if (u.noNewPrivileges) chosen.push('NoNewPrivileges=yes');
  const left = ['ProtectSystem', 'ProtectHome', 'PrivateTmp', 'NoNewPrivileges'].filter((k) => !chosen.some((c) => c.startsWith(`${k}=`)));
  if (chosen.length > 0) lines.push('# Asked for (they change what tasks may do):', ...chosen);
  if (left.length > 0) {
    lines.push(`# Not set, since tasks may need what they take away: ${left.join(', ')}`, '# (--protect-system, --protect-home, --private-tmp, --no-new-privileges add them).');
  }
  lines.push('', '[Install]', 'WantedBy=multi-user.target');
  return `${lines.join('\n')}\n`;
}

/** The major version of this host's systemd, or null where there is none. */
export function localSystemdVersion(): number | null {
  try {
    const out = execFileSync('systemctl', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
    const match = /^systemd (\d+)/.exec(out);
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

// The options of the unit itself; every other word after `systemd-unit` is the node's.
const UNIT_VALUE_OPTIONS = ['--schema', '--exec', '--user', '--environment-file', '--drain-timeout', '--protect-system', '--protect-home'];
const UNIT_FLAGS = ['--private-tmp', '--no-new-privileges'];

/**
 * The node's words of the command line: everything after `systemd-unit` (the program's args:
 * the command's name, then what followed it) but the unit's own options and --schema, which
 * goes before `node`.
 */
export function nodeWords(args: string[]): string[] {
  const words = args.slice(args.indexOf('systemd-unit') + 1);
  const kept: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    if (word === '--') {
      kept.push(...words.slice(i + 1));
      break;
    }
    const name = word.split('=')[0]!;
    if (UNIT_FLAGS.includes(word)) continue;
    if (UNIT_VALUE_OPTIONS.includes(name)) {
      if (!word.includes('=')) i++;
      continue;
    }
    kept.push(word);
  }
  return kept;
}

/** The executable the unit runs: this pg-tasks when it was started by its own name. */
function defaultExec(): string {
  const self = process.argv[1];
  if (self && /^pg-tasks(\.js)?$/.test(path.basename(self))) return path.resolve(self);
  // From a clone (tsx src/cli/main.ts): systemd looks pg-tasks up in /usr/local/bin, /usr/bin...
  return 'pg-tasks';
}

// Infinity, not null: commander turns a parser's null into ''.
function parseDrainTimeout(value: string): number {
  if (value === 'infinity') return Infinity;
  const ms = parseDuration(value);
  if (ms < 1000) throw new InvalidArgumentError(`--drain-timeout must be at least 1s, or infinity; got ${shown(value)}`);
  return ms;
}

interface UnitCliOptions extends NodeCliOptions {
  exec?: string;
  user?: string;
  environmentFile: string;
  drainTimeout: number;
  protectSystem?: string;
  protectHome?: string;
  privateTmp: boolean;
  newPrivileges: boolean;
}

export function registerSystemdUnit(program: Command, ctx: CliContext): void {
  const command = program
    .command('systemd-unit')
    .description('print a systemd service unit that runs a node with these node options (docs/deploy.md)')
    .usage('[unit options] [node options] [worker_id [group_id [max_task_count [node_name]]]]')
    .argument('[worker_id]', "the seed's positional form of --worker-id", (v) => parseInteger(v, 'worker_id'))
    .argument('[group_id]', 'positional --group', (v) => parseInteger(v, 'group_id'))
    .argument('[max_task_count]', 'positional --max-tasks', (v) => parsePositive(v, 'max_task_count'))
    .argument('[node_name]', 'positional --name')
    .option('--exec <path>', 'the pg-tasks executable the unit runs (default: this one, else pg-tasks on systemd\'s PATH)')
    .option('--user <name>', 'the user the node runs as (default: pgtasks; root with --allow-run-as)')
        // Not --env-file: Node 20 takes that for its own wherever it stands on the command line.
    .option('--environment-file <path>', 'the file with DATABASE_URL and any PGTASKS_* settings (EnvironmentFile=)', '/etc/pg-tasks/node.env')
    .addOption(
      new Option('--drain-timeout <duration>', 'with --shutdown drain: how long a stop waits for the running tasks before it cancels them (a duration, or infinity)')
        .argParser(parseDrainTimeout)
        .default(DEFAULT_DRAIN_TIMEOUT_MS, '1h'),
    )
    .addOption(new Option('--protect-system <mode>', 'add ProtectSystem= (tasks can then not write /usr, /etc...)').choices(['yes', 'full', 'strict']))
    .addOption(new Option('--protect-home <mode>', 'add ProtectHome= (tasks can then not write, or see, /home)').choices(['yes', 'read-only', 'tmpfs']))
    .option('--private-tmp', "add PrivateTmp=yes (tasks share a /tmp of the unit's own, emptied at each stop)", false)
    .option('--no-new-privileges', 'add NoNewPrivileges=yes (tasks can then not use sudo, su or other setuid programs; run_as still works)');
  addNodeOptions(command).action((workerId: number | undefined, _group: number | undefined, _maxTasks: number | undefined, _name: string | undefined, opts: UnitCliOptions) => {
    if (opts.allowRunAs.length > 0 && opts.user !== undefined && opts.user !== 'root') {
      throw new CliError(`--allow-run-as needs the node to run as root: drop --user ${opts.user}`);
    }
    const user = opts.user ?? (opts.allowRunAs.length > 0 ? 'root' : 'pgtasks');
    const schema = program.opts<{ schema?: string }>().schema;
    const unit = renderUnit({
      exec: opts.exec ?? defaultExec(),
      globalArgs: schema === undefined ? [] : ['--schema', schema],
      nodeArgs: nodeWords(program.args),
      workerId: opts.workerId ?? workerId ?? 1,
      user: user === 'root' ? null : user,
      envFile: opts.environmentFile,
      killGraceMs: opts.killGrace,
      shutdown: opts.shutdown,
      drainTimeoutMs: opts.drainTimeout,
      // From the command line only: the shell's PGTASKS_SPAWNER is not the service's environment
      // (EnvironmentFile= is), and Delegate=yes costs nothing where the node spawns without the helper.
      delegate: spawnerFlag(command, opts.spawner) !== 'node' && (opts.containment === 'auto' || opts.containment === 'cgroup'),
      systemdVersion: localSystemdVersion(),
      protectSystem: opts.protectSystem,
      protectHome: opts.protectHome,
      privateTmp: opts.privateTmp,
      noNewPrivileges: opts.newPrivileges === false,
    });
    print(ctx.io, unit);
  });
}

/** The --spawner the command line gave, or the default: a value from the environment does not count. */
function spawnerFlag(command: Command, spawner: string): string {
  return command.getOptionValueSource('spawner') === 'env' ? NODE_DEFAULTS.spawner : spawner;
}
