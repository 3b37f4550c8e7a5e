// The bench's side of a peer's worker process (bench/graphile-worker-process.ts,
// bench/pgboss-worker-process.ts): started as a separate process like a pg-tasks node, talking
// over IPC (see bench/peer-process.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export interface PeerProcess {
  child: ChildProcess;
  /** Resolves on the next IPC message equal to `message`; rejects if the process ends first. */
  next(message: string): Promise<void>;
}

/** Starts bench/<script> on `url` with `--schema S --concurrency C [--wait-for-go]`; `label` names it in errors. */
export function spawnPeer(script: string, label: string, url: string, schema: string, concurrency: number, waitForGo: boolean): PeerProcess {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(import.meta.dirname, script), '--schema', schema, '--concurrency', String(concurrency), ...(waitForGo ? ['--wait-for-go'] : [])],
    // Its stdout goes to our stderr: our stdout carries only the result lines.
    { env: { ...process.env, DATABASE_URL: url }, stdio: ['ignore', 2, 'inherit', 'ipc'] },
  );
  const next = (message: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const onMessage = (m: unknown): void => {
        if (m !== message) return;
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve();
      };
      const onExit = (code: number | null, signal: string | null): void => reject(new Error(`the ${label} process ended (${code ?? signal}) before '${message}'`));
      child.on('message', onMessage);
      child.once('exit', onExit);
    });
  return { child, next };
}

/** SIGTERM to the peer's pid (its own graceful stop), and waits for its exit. */
export async function stopPeer(peer: PeerProcess): Promise<void> {
  if (peer.child.exitCode !== null || peer.child.signalCode !== null) return;
  const exited = new Promise((resolve) => peer.child.once('exit', resolve));
  peer.child.kill('SIGTERM');
  await exited;
}
