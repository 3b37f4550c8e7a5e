// A primary and its streaming standby (pg_basebackup -R), on free loopback ports, run as the
// postgres OS user when we are root: for the tests of promotion and split brain (multihost,
// split-brain) and for bench/promotion.ts. Tests run it fast (fsync off); the bench runs it
// durable, as users do. Needs the system's PostgreSQL server binaries (pg_basebackup is not
// in the embedded package).
import { execFile, execFileSync } from 'node:child_process';
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from '../../src/embedded/port.js';
import type { TestDatabase } from './db.js';
import { until } from './wait.js';

const run = promisify(execFile);

/** The directory holding initdb, pg_ctl and pg_basebackup, or why there is none. */
export function systemBinaries(): { dir: string } | { missing: string } {
  const candidates: string[] = [];
  try {
    candidates.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  } catch {
    // No pg_config on the PATH: look where Debian and Ubuntu put the servers.
  }
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    for (const version of readdirSync(debian).sort((a, b) => Number(b) - Number(a))) candidates.push(path.join(debian, version, 'bin'));
  }
  const dir = candidates.find((d) => ['initdb', 'pg_ctl', 'pg_basebackup', 'postgres'].every((b) => existsSync(path.join(d, b))));
  return dir ? { dir } : { missing: 'no PostgreSQL server binaries with pg_basebackup (install postgresql, e.g. apt-get install postgresql-15)' };
}

export interface PairOptions {
  /**
   * The primary waits for the standby's flush at each commit (synchronous_standby_names '*'),
   * so that once the standby is promoted the old primary can commit nothing.
   */
  synchronous?: boolean;
  /** fsync on, as users run it (the bench); off by default, for the tests' speed. */
  durable?: boolean;
}

export class Pair {
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'pg-tasks-pair-'));
  primaryPort = 0;
  standbyPort = 0;
  private readonly bin: string;

  constructor(private readonly options: PairOptions = {}) {
    const found = systemBinaries();
    if ('missing' in found) throw new Error(found.missing);
    this.bin = found.dir;
  }

  private async as(cmd: string, args: string[]): Promise<void> {
    const program = path.join(this.bin, cmd);
    if (process.getuid?.() === 0) await run('runuser', ['-u', 'postgres', '--', program, ...args]);
    else await run(program, args);
  }

  async start(): Promise<void> {
    if (process.getuid?.() === 0) {
      const id = (flag: string): number => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
      chownSync(this.dir, id('-u'), id('-g'));
    }
    this.primaryPort = await freePort();
    this.standbyPort = await freePort();
    const primary = path.join(this.dir, 'primary');
    const standby = path.join(this.dir, 'standby');
    // --no-sync only skips initdb's own final fsync; a durable server runs with fsync on.
    await this.as('initdb', ['-D', primary, '-U', 'postgres', '-A', 'trust', '--no-sync']);
    const settings = [`listen_addresses='127.0.0.1'`, `port=${this.primaryPort}`, `unix_socket_directories='${this.dir}'`, 'max_connections=50'];
    if (!this.options.durable) settings.push('fsync=off');
    appendFileSync(path.join(primary, 'postgresql.conf'), settings.map((s) => `${s}\n`).join(''));
    appendFileSync(path.join(primary, 'pg_hba.conf'), 'host replication all 127.0.0.1/32 trust\n');
    await this.as('pg_ctl', ['-D', primary, '-l', path.join(this.dir, 'primary.log'), '-w', 'start']);
    await this.as('pg_basebackup', ['-h', '127.0.0.1', '-p', String(this.primaryPort), '-U', 'postgres', '-D', standby, '-R', '-X', 'stream']);
    // The copied postgresql.conf names the primary's port: the last setting wins.
    appendFileSync(path.join(standby, 'postgresql.conf'), `port=${this.standbyPort}\n`);
    await this.as('pg_ctl', ['-D', standby, '-l', path.join(this.dir, 'standby.log'), '-w', 'start']);
    // Set on the primary only, after the copy: a promoted standby that inherited it would wait
    // for a standby of its own that does not exist, and commit nothing.
    if (this.options.synchronous) {
      await this.sql('primary', "ALTER SYSTEM SET synchronous_standby_names = '*'");
      await this.sql('primary', 'SELECT pg_reload_conf()');
    }
    // Streaming (and, synchronous, confirming commits) before anything is written.
    const want = this.options.synchronous ? 'sync' : 'async';
    await until(
      async () => (await this.sql<{ sync_state: string }>('primary', "SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'"))[0]?.sync_state === want,
      `the standby to stream (${want}): see ${this.dir}/standby.log`,
    );
  }

  url(hosts: string, query = ''): string {
    return `postgres://postgres@${hosts}/postgres${query}`;
  }

  get primary(): string {
    return `127.0.0.1:${this.primaryPort}`;
  }

  get standby(): string {
    return `127.0.0.1:${this.standbyPort}`;
  }

  get both(): string {
    return `${this.primary},${this.standby}`;
  }

  /** One statement on one server, on a connection of its own. */
  async sql<R extends pg.QueryResultRow = Record<string, unknown>>(which: 'primary' | 'standby', text: string, values: unknown[] = []): Promise<R[]> {
    const client = new pg.Client({ connectionString: this.url(which === 'primary' ? this.primary : this.standby) });
    client.on('error', () => undefined);
    await client.connect();
    try {
      return (await client.query<R>(text, values)).rows;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async stopPrimary(): Promise<void> {
    await this.as('pg_ctl', ['-D', path.join(this.dir, 'primary'), '-m', 'immediate', '-w', 'stop']);
  }

  /** Promotes the standby (returns once it has left recovery); the old primary runs on, unless stopped. */
  async promote(): Promise<void> {
    await this.as('pg_ctl', ['-D', path.join(this.dir, 'standby'), '-w', 'promote']);
  }

  async stop(): Promise<void> {
    for (const name of ['standby', 'primary']) {
      await this.as('pg_ctl', ['-D', path.join(this.dir, name), '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A TestDatabase on one server of the pair, for the task helpers. */
export function on(url: string): TestDatabase {
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  pool.on('error', () => undefined);
  return { url, name: 'postgres', pool, query: (sql, values) => pool.query(sql, values), close: () => pool.end() };
}
