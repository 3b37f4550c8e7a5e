// Node processes for bench/failover.ts. Each node is a separate OS process in a process group
// of its own (detached), so a SIGKILL is a real crash, and every node still running is killed
// when the bench exits, however it exits. The task processes a node starts are in groups of
// their own (setsid); the node's reaper kills them when the node dies.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type pg from 'pg';
import { isProcessGroupAlive } from '../src/node/process/process-group.js';

const running = new Set<ChildProcess>();
/** Set by a signal to the bench or a failed lane: every wait stops at its next check. */
let abortReason: string | null = null;

export interface NodeSpec {
  url: string;
  schema: string;
  workerId: number;
  name: string;
  /** Extra options of `node`, e.g. ['--lease', '4s']. */
  args: string[];
  verbose: boolean;
}

/** Starts `pg-tasks node`; its log goes to the bench's stderr, never to the report on stdout. */
export function startNode(spec: NodeSpec): ChildProcess {
  const argv = ['--import', 'tsx', 'src/cli/main.ts', '--schema', spec.schema, 'node', '--worker-id', String(spec.workerId), '--name', spec.name];
  // warn would log every expected recovery and failed renewal of this benchmark.
  argv.push('--log-level', spec.verbose ? 'warn' : 'error', ...spec.args);
  const child = spawn(process.execPath, argv, { env: { ...process.env, DATABASE_URL: spec.url }, stdio: ['ignore', 2, 2], detached: true });
  running.add(child);
  child.once('exit', () => running.delete(child));
  return child;
}

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** SIGKILL to the node's process group: the crash being measured. */
export function crashNode(child: ChildProcess): void {
  signalGroup(child, 'SIGKILL');
}

/** SIGTERM (a clean stop: its tasks end, its lease is released), SIGKILL after graceMs. */
export async function stopNode(child: ChildProcess, graceMs = 15_000): Promise<void> {
  if (hasExited(child)) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  signalGroup(child, 'SIGTERM');
  const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** For process.on('exit') and signals: synchronous, so nothing outlives the bench. */
export function killAllNodes(): void {
  for (const child of running) signalGroup(child, 'SIGKILL');
}

export function abortWaits(reason: string): void {
  abortReason ??= reason;
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || hasExited(child)) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Checks `condition` every `everyMs` until it returns a value; an error it throws ends the wait. */
export async function until<T>(condition: () => Promise<T | null | undefined | false>, what: string, timeoutMs: number, everyMs = 20): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (abortReason) throw new Error(`stopped waiting for ${what}: ${abortReason}`);
    const value = await condition();
    if (value !== null && value !== undefined && value !== false) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export function checkAborted(): void {
  if (abortReason) throw new Error(`stopped: ${abortReason}`);
}

/**
 * A safety net after a run's nodes have stopped: a long task process still alive (its reaper
 * failed) is killed. Only groups whose leader is still that very command are touched, so a
 * pid the system reused for something else is left alone. Returns the pids killed.
 */
export async function killLeftoverTasks(client: pg.Client, schema: string, command: string[]): Promise<number[]> {
  const { rows } = await client.query<{ pid: number }>(
    `SELECT DISTINCT pid FROM (SELECT pid FROM "${schema}".task WHERE command = $1
                               UNION ALL
                               SELECT r.pid FROM "${schema}".task_run r JOIN "${schema}".task t ON t.id = r.task_id WHERE t.command = $1) p
      WHERE pid IS NOT NULL`,
    [command],
  );
  const killed: number[] = [];
  for (const { pid } of rows) {
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'latin1');
    } catch {
      continue; // gone
    }
    if (cmdline !== `${command.join('\0')}\0` || !isProcessGroupAlive(pid)) continue;
    try {
      process.kill(-pid, 'SIGKILL');
      killed.push(pid);
    } catch {
      // ended meanwhile
    }
  }
  return killed;
}
