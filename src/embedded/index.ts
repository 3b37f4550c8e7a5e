import { fork } from 'node:child_process';
import path from 'node:path';
import { EmbeddedError } from './errors.js';

export { EmbeddedError } from './errors.js';

export interface EmbeddedOptions {
  /** Data directory; kept across restarts. */
  dataDir: string;
  /**
   * When PostgreSQL runs as another user (it refuses root) who cannot reach dataDir, put the
   * data under PGTASKS_HOME (default /var/lib/pg-tasks) instead of failing. For a default
   * location chosen by the program, never for one the user named.
   */
  relocate?: boolean;
  /** TCP port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number;
  /** When port is taken, take a free one (and say so in notes) rather than fail. */
  anyPort?: boolean;
  /** Trade durability for speed (tests, benchmarks). */
  fast?: boolean;
  /** Libraries to load at server start (shared_preload_libraries), e.g. ['pg_stat_statements']. */
  preload?: string[];
}

export interface EmbeddedServer {
  port: number;
  /** Where the data lives (dataDir, or where it was relocated). */
  dataDir: string;
  /** Things the user should know about where and how it runs, one sentence each. */
  notes: string[];
  /** postgres:// URL of the "postgres" database. */
  url: string;
  urlFor(database: string): string;
  /** Resolves if the server stops without stop() being called, with the reason. */
  died: Promise<string>;
  stop(): Promise<void>;
  /**
   * Lets this process exit while the server runs; the server then stops by itself when this
   * process ends (its IPC channel closes).
   */
  unref(): void;
}

/** What the supervisor (server.ts) is told, through its environment. */
export interface SupervisorConfig {
  dataDir: string;
  relocate: boolean;
  port: number;
  anyPort: boolean;
  fast: boolean;
  preload: string[];
}

export type SupervisorMessage =
  | { kind: 'ready'; dataDir: string; port: number; user: string; password: string; notes: string[] }
  | { kind: 'failed'; error: string }
  | { kind: 'died'; error: string };

/**
 * Starts the embedded PostgreSQL under a supervisor process placed in its own process group:
 * a Ctrl-C at the terminal goes to the whole foreground group, and PostgreSQL must not
 * receive it before the node has ended its tasks and released its lease. Every failure is an
 * EmbeddedError whose one-line message names the cause and the fix.
 */
export async function startEmbedded(options: EmbeddedOptions): Promise<EmbeddedServer> {
  const config: SupervisorConfig = {
    dataDir: path.resolve(options.dataDir),
    relocate: options.relocate ?? false,
    port: options.port ?? 0,
    anyPort: options.anyPort ?? false,
    fast: options.fast ?? false,
    preload: options.preload ?? [],
  };
  const ext = path.extname(new URL(import.meta.url).pathname);
  const child = fork(new URL(`./server${ext}`, import.meta.url), [], {
    detached: true,
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    env: { ...process.env, PGTASKS_EMBEDDED_CONFIG: JSON.stringify(config) },
  });
  let stopped = false;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const messages: SupervisorMessage[] = [];
  let notify: (() => void) | null = null;
  child.on('message', (message) => {
    messages.push(message as SupervisorMessage);
    notify?.();
  });
  child.on('error', () => undefined);
  const next = (): Promise<SupervisorMessage | null> =>
    new Promise((resolve) => {
      const check = (): void => {
        if (messages.length) resolve(messages.shift()!);
      };
      notify = check;
      check();
      void exited.then(() => {
        check();
        resolve(null);
      });
    });
  const first = await next();
  if (first?.kind !== 'ready') {
    await exited;
    throw new EmbeddedError(first ? first.error : 'the embedded PostgreSQL supervisor exited before it said why');
  }
  const died = next().then((message) => (stopped ? new Promise<string>(() => undefined) : (message && message.kind !== 'ready' ? message.error : 'the embedded PostgreSQL stopped unexpectedly')));
  const { port, user, password } = first;
  const urlFor = (database: string): string =>
    `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
  return {
    port,
    dataDir: first.dataDir,
    notes: first.notes,
    url: urlFor('postgres'),
    urlFor,
    died,
    async stop() {
      stopped = true;
      if (child.connected) child.disconnect();
      await exited;
    },
    unref() {
      child.unref();
      child.channel?.unref();
    },
  };
}
