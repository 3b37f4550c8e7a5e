// What the peers' worker processes (bench/graphile-worker-process.ts, bench/pgboss-worker-process.ts)
// share: their command line and IPC channel to the bench, and how a job runs its command.
import { spawn } from 'node:child_process';

/** Runs command (argv) as the Node spawn ceiling does (detached, output on pipes); rejects on a non-zero exit. */
export const runCommand = (command: string[]): Promise<void> =>
  new Promise<void>((resolve, reject) => {
    const [file, ...args] = command;
    const child = spawn(file!, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    child.on('error', reject);
    child.on('close', (code, signal) => (code === 0 ? resolve() : reject(new Error(`${file} ended with ${code ?? signal}`))));
  });

/** `--schema S --concurrency C [--wait-for-go]`, and send() to the bench over IPC. */
export function peerArgs(): { schema: string; concurrency: number; waitForGo: boolean; send: (message: string) => void } {
  const arg = (name: string): string | undefined => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const schema = arg('--schema');
  if (!schema || !process.send) throw new Error('usage: --schema S --concurrency C [--wait-for-go], started with an IPC channel');
  return {
    schema,
    concurrency: Number(arg('--concurrency') ?? 1),
    waitForGo: process.argv.includes('--wait-for-go'),
    send: (message) => void process.send!(message),
  };
}
