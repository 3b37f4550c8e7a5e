// One PostgreSQL server process: started, watched until it is ready, stopped.
import { spawn, type ChildProcess } from 'node:child_process';
import type { ServerAccount } from './account.js';
import { EmbeddedError, describeServerOutput, describeSystemError } from './errors.js';

export interface ServerSettings {
  postgres: string;
  dataDir: string;
  port: number;
  account: ServerAccount | null;
  /** Trade durability for speed (tests, benchmarks). */
  fast: boolean;
  preload: string[];
}

/** The last lines the server printed: the story of a failure. Its log otherwise goes nowhere. */
const KEPT_LINES = 50;
/** A fast shutdown that has not ended by then becomes an immediate one. */
const STOP_GRACE_MS = 30_000;

export class PostgresProcess {
  private readonly lines: string[] = [];
  private readonly child: ChildProcess;
  private readyListener: (() => void) | null = null;
  /** Resolves when the server process has ended, with why, as far as it can be told. */
  readonly exited: Promise<string>;

  private constructor(private readonly settings: ServerSettings) {
    const s = settings;
    const args = [
      '-D', s.dataDir,
      '-p', String(s.port),
      '-c', 'listen_addresses=127.0.0.1',
      // TCP only: a socket in the data directory fails on paths longer than ~100 bytes.
      '-c', 'unix_socket_directories=',
      '-c', 'lc_messages=C',
      ...(s.fast ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'] : []),
      ...(s.preload.length ? ['-c', `shared_preload_libraries=${s.preload.join(',')}`] : []),
    ];
    this.child = spawn(s.postgres, args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
      ...(s.account ? { uid: s.account.uid, gid: s.account.gid } : {}),
    });
    let partial = '';
    this.child.stderr!.on('data', (chunk: Buffer) => {
      const text = partial + chunk.toString();
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) this.onLine(line);
    });
    this.exited = new Promise((resolve) => {
      this.child.on('error', (error) => {
        this.onLine(describeSystemError(error, `could not run ${s.postgres}`, 'reinstall with npm ci'));
        resolve(this.output());
      });
      // A server killed outright prints nothing; its backends' last words are not the cause.
      this.child.on('close', (code, signal) => resolve(signal ? `killed by ${signal}` : `exit code ${code}: ${describeServerOutput(this.output(), s)}`));
    });
  }

  private onLine(line: string): void {
    this.lines.push(line);
    if (this.lines.length > KEPT_LINES) this.lines.shift();
    if (line.includes('database system is ready to accept connections')) this.readyListener?.();
  }

  output(): string {
    return this.lines.join('\n');
  }

  /** Starts the server process; see ready(). */
  static spawn(settings: ServerSettings): PostgresProcess {
    return new PostgresProcess(settings);
  }

  /** Resolves once the server accepts connections; throws if it ends first. */
  async ready(): Promise<void> {
    const ready = new Promise<boolean>((resolve) => (this.readyListener = () => resolve(true)));
    const started = await Promise.race([ready, this.exited.then(() => false)]);
    if (!started) throw new EmbeddedError(`the embedded PostgreSQL did not start: ${describeServerOutput(this.output(), this.settings)}`);
  }

  /** A fast shutdown (SIGINT: sessions end, a checkpoint is written); SIGQUIT if it hangs. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGINT');
    const timer = setTimeout(() => this.child.kill('SIGQUIT'), STOP_GRACE_MS);
    await this.exited;
    clearTimeout(timer);
  }
}
