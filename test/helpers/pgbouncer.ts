// A real PgBouncer (Debian's package) in front of the test server, on a free loopback port,
// for the pooler tests and bench. Started with a generated ini; stop() kills it.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { until } from './wait.js';

export type PoolMode = 'session' | 'transaction';

export interface Bouncer {
  /** The URL of `database` through this PgBouncer. */
  url(database: string): string;
  port: number;
  mode: PoolMode;
  stop(): Promise<void>;
}

const CANDIDATES = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer'];

/** The pgbouncer binary, or null with why (the tests skip with that line). */
export function findPgBouncer(): { bin: string } | { missing: string } {
  for (const bin of CANDIDATES) {
    if (spawnSync(bin, ['--version'], { stdio: 'ignore' }).status === 0) return { bin };
  }
  return { missing: 'pgbouncer is not installed (apt-get install -y pgbouncer, as root): PgBouncer tests skipped' };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Starts PgBouncer in `mode` in front of the server of `serverUrl` (any database, trust). */
export async function startPgBouncer(bin: string, serverUrl: string, mode: PoolMode): Promise<Bouncer> {
  const server = new URL(serverUrl);
  const user = decodeURIComponent(server.username || 'postgres');
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), `pg-tasks-pgbouncer-${mode}-`));
  chmodSync(dir, 0o755);
  const userlist = path.join(dir, 'userlist.txt');
  writeFileSync(userlist, `"${user}" "${decodeURIComponent(server.password)}"\n`, { mode: 0o644 });
  const ini = path.join(dir, 'pgbouncer.ini');
  writeFileSync(
    ini,
    [
      '[databases]',
      `* = host=${server.hostname} port=${server.port || '5432'}${server.password ? ` password=${decodeURIComponent(server.password)}` : ''}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${userlist}`,
      `pool_mode = ${mode}`,
      'max_client_conn = 500',
      'default_pool_size = 20',
      'ignore_startup_parameters = extra_float_digits,options',
      '',
    ].join('\n'),
    { mode: 0o644 },
  );
  // PgBouncer will not run as root: it is told to switch to postgres then.
  const args = process.getuid?.() === 0 ? ['-u', 'postgres', ini] : [ini];
  const child: ChildProcess = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  let exited = false;
  const gone = new Promise<void>((resolve) => child.on('exit', () => {
    exited = true;
    resolve();
  }));
  const url = (database: string): string => {
    const u = new URL(serverUrl);
    u.hostname = '127.0.0.1';
    u.port = String(port);
    u.pathname = `/${database}`;
    return u.toString();
  };
  const stop = async (): Promise<void> => {
    if (!exited) child.kill('SIGKILL');
    await gone;
  };
  try {
    await until(async () => {
      if (exited) throw new Error(`pgbouncer exited: ${stderr.trim().split('\n').pop() ?? ''}`);
      const client = new pg.Client({ connectionString: url(server.pathname.slice(1) || 'postgres'), connectionTimeoutMillis: 1_000 });
      client.on('error', () => undefined);
      try {
        await client.connect();
        await client.query('SELECT 1');
        return true;
      } catch {
        return false;
      } finally {
        await client.end().catch(() => undefined);
      }
    }, `pgbouncer (${mode}) on port ${port}`, 10_000);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, port, mode, stop };
}
