// The embedded PostgreSQL's supervisor: a child process of its own (see index.ts for why)
// that prepares the binaries and the data directory, runs the server, and stops it when its
// parent disconnects, whatever the cause: a parent killed with SIGKILL leaves no PostgreSQL.
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { serverAccount } from './account.js';
import { findBinaries, placeBinaries, stateHome } from './binaries.js';
import { blockingDirectory, initialise, relocatedDataDir, runningServer, SUPERUSER } from './data-dir.js';
import { EmbeddedError, describeSystemError } from './errors.js';
import { freePort, isPortFree, portHolder } from './port.js';
import { PostgresProcess } from './postgres.js';
import type { SupervisorConfig, SupervisorMessage } from './index.js';

const config = JSON.parse(process.env.PGTASKS_EMBEDDED_CONFIG ?? '{}') as SupervisorConfig;
let server: PostgresProcess | null = null;
let stopping = false;

function send(message: SupervisorMessage): void {
  if (process.connected) process.send?.(message);
}

async function stop(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  await server?.stop();
  process.exit(code);
}

async function start(): Promise<void> {
  const account = serverAccount();
  const binaries = placeBinaries(await findBinaries(), account);
  let dataDir = config.dataDir;
  const notes: string[] = [];
  const created = makeDirectory(path.dirname(dataDir));
  const blocker = blockingDirectory(dataDir, account);
  if (blocker && account) {
    const why = `PostgreSQL refuses to run as root, so it runs as user "${account.name}", who cannot enter ${blocker}`;
    if (!config.relocate) throw new EmbeddedError(`${why}: choose a --data-dir that user can reach, e.g. under ${stateHome()}`);
    // Made a moment ago for the check, and empty: not left behind in the clone.
    if (created !== undefined) rmSync(created, { recursive: true, force: true });
    dataDir = relocatedDataDir(dataDir);
    makeDirectory(path.dirname(dataDir), 0o755);
    notes.push(`${why}; the data lives in ${dataDir} instead`);
  }
  const running = runningServer(dataDir);
  if (running) {
    throw new EmbeddedError(
      `the embedded PostgreSQL of ${dataDir} already runs (postgres pid ${running.pid}${running.port ? `, port ${running.port}` : ''}), ` +
        'started by another pg-tasks: stop that one first (Ctrl-C), or run beside it with the DATABASE_URL it printed',
    );
  }
  const port = await choosePort(notes);
  const password = await initialise(dataDir, binaries, account, { fast: config.fast });
  // Kept before it is ready: a stop meanwhile (the parent gone) must still end it.
  server = PostgresProcess.spawn({ postgres: binaries.postgres, dataDir, port, account, fast: config.fast, preload: config.preload });
  await server.ready();
  send({ kind: 'ready', dataDir, port, user: SUPERUSER, password, notes });
  const why = await server.exited;
  if (!stopping) {
    send({ kind: 'died', error: `the embedded PostgreSQL stopped unexpectedly (${why})` });
    process.exit(1);
  }
}

/** config.port if free; else a free one when config.anyPort allows it (with a note saying so). */
async function choosePort(notes: string[]): Promise<number> {
  if (config.port === 0) return freePort();
  if (await isPortFree(config.port)) return config.port;
  const holder = portHolder(config.port);
  const inUse = `port ${config.port} on 127.0.0.1 is in use${holder ? ` by ${holder}` : ''}`;
  if (!config.anyPort) throw new EmbeddedError(`${inUse}: choose another --port, or leave it out to get a free one`);
  const port = await freePort();
  notes.push(`${inUse}: the embedded PostgreSQL listens on port ${port} instead`);
  return port;
}

/** Makes dir and its missing parents; returns the first it made (undefined: it existed). */
function makeDirectory(dir: string, mode?: number): string | undefined {
  try {
    const created = mkdirSync(dir, { recursive: true });
    if (mode !== undefined) chmodSync(dir, mode);
    return created;
  } catch (error) {
    throw new EmbeddedError(describeSystemError(error, `could not create ${dir}`, 'choose another --data-dir'), { cause: error });
  }
}

process.on('disconnect', () => void stop(0));
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => void stop(0));

try {
  await start();
} catch (error) {
  const message = error instanceof EmbeddedError ? error.message : `the embedded PostgreSQL could not start: ${(error as Error)?.message ?? String(error)}`;
  send({ kind: 'failed', error: message });
  await stop(1);
}
