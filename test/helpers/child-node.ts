import { spawn, type ChildProcess } from 'node:child_process';
import type { TestContext } from 'node:test';
import { ROOT } from './cli.js';

/** The node child processes a test file started and has not ended yet (end them in after()). */
export const children = new Set<ChildProcess>();

/** A node as a child process (`pg-tasks node`), its output kept for the failure message; `env` adds to the test's. */
export function spawnNode(url: string, args: string[], env: Record<string, string> = {}): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'node', '--no-migrate', '--log-level', 'warn', ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env, DATABASE_URL: url },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  const keep = (chunk: Buffer): void => {
    out = (out + chunk.toString()).slice(-20_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  return { child, output: () => out };
}

/** SIGTERM (a SIGCONT first, in case it is stopped), then SIGKILL if it does not exit in 10 s. */
export async function killChild(child: ChildProcess): Promise<void> {
  children.delete(child);
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  process.kill(child.pid, 'SIGCONT');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** On failure, the child's log helps more than the assertion alone. */
export async function withOutput(t: TestContext, output: () => string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    t.diagnostic(`child node output:\n${output()}`);
    throw error;
  }
}
