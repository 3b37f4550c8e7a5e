import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI as a user does — a child process from the repository root — against `url`;
 * entries of `env` override (undefined removes).
 */
export function runCli(url: string, args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: url };
  // Keep the child independent of the caller's environment and of the test runner.
  delete childEnv.PGTASKS_SCHEMA;
  delete childEnv.NODE_TEST_CONTEXT;
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined) delete childEnv[key];
    else childEnv[key] = value;
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      cwd: ROOT,
      env: childEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    // A liveness bound only: a CLI call that hangs this long is broken, not slow.
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal) reject(new Error(`pg-tasks ${args.join(' ')} was killed by ${signal}\nstdout: ${stdout}\nstderr: ${stderr}`));
      else resolve({ code, stdout, stderr });
    });
  });
}
