import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import type { RLimit } from './limits.js';
import type { Service } from '../services.js';

/**
 * The node's side of the spawn helper (spawner.c): a small C process that starts the task
 * processes with posix_spawn. Node's own spawn() forks the whole node, which costs 1-2 ms of
 * page-table copying per task, most of it blocking the event loop; see docs/node.md.
 *
 * 'auto' compiles the helper on first use (cached by the hash of its source) and falls back
 * to child_process.spawn where there is no C compiler; 'node' always uses child_process.
 */
export type SpawnerMode = 'auto' | 'helper' | 'node';

export interface HelperCallbacks {
  started(pid: number): void;
  /** step: the call that failed (SpawnStep); the exec itself unless run_as or limits. */
  failed(errno: number, step: SpawnStep): void;
  output(chunk: Buffer): void;
  /** status -1: unknown (the helper died). usage: what the leader used, from wait4. */
  exited(status: number, usage?: ResourceUsage): void;
  closed(): void;
}

/** Which call of the start failed, as spawner.c numbers them. */
export type SpawnStep = 'exec' | 'chdir' | 'setrlimit' | 'setgroups' | 'setgid' | 'setuid' | 'fork';
const STEPS: SpawnStep[] = ['exec', 'chdir', 'setrlimit', 'setgroups', 'setgid', 'setuid', 'fork'];

/** Who the task runs as (set only when the node switches user: it runs as root). */
export interface SpawnCreds {
  uid: number;
  gid: number;
  groups: number[];
}

const SOURCE = fileURLToPath(new URL('../../../src/node/process/spawner.c', import.meta.url));

/** CPU time and peak memory of a task's leader process (and the children it waited for). */
export interface ResourceUsage {
  userMs: number;
  systemMs: number;
  maxRssKb: number;
}

export class Spawner {
  private child: ChildProcess | null = null;
  private readonly tasks = new Map<number, { callbacks: HelperCallbacks; exited: boolean; closed: boolean }>();
  private nextKey = 1;
  private pending = Buffer.alloc(0);
  /** Set when the helper died under the node: the callers fall back to child_process. */
  dead = false;
  /** Set by stop(): the helper's exit is then expected. */
  private stopped = false;

  private constructor(
    private readonly binary: string,
    private readonly log: Logger,
  ) {}

  /** The helper, or null where it cannot be built ('auto') or is not wanted ('node'). */
  static async create(mode: SpawnerMode, log: Logger): Promise<Spawner | null> {
    if (mode === 'node') return null;
    try {
      const spawner = new Spawner(await buildHelper(), log);
      spawner.start();
      return spawner;
    } catch (error) {
      if (mode === 'helper') throw new Error(`the spawn helper could not be built: ${(error as Error).message}`);
      log.info({ reason: (error as Error).message }, 'no spawn helper (no C compiler?): tasks start with child_process.spawn');
      return null;
    }
  }

  private start(): void {
    // Its own process group, like the reaper: a Ctrl-C at the node's terminal must not take
    // it away before the node has ended its tasks.
    const child = spawn(this.binary, [], { stdio: ['pipe', 'pipe', 'inherit'], detached: true });
    this.child = child;
    child.stdin.on('error', () => undefined);
    child.stdout.on('data', (chunk: Buffer) => this.onData(chunk));
    // 'close', not 'exit': the frames still in the pipe are read first.
    child.on('close', (code: number | null, signal: NodeJS.Signals | null) => this.onExit(code, signal));
    child.unref();
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
  }

  /**
   * Asks the helper to start argv in cwd with exactly the environment env ("NAME=VALUE"; the
   * node builds it clean, see task-env.ts). With creds or limits the helper forks and makes
   * the calls before exec; without, it uses posix_spawn. Throws, like spawn(), for what cannot
   * be passed to the kernel (a NUL byte).
   */
  spawn(argv: string[], cwd: string, env: string[], callbacks: HelperCallbacks, creds: SpawnCreds | null = null, limits: RLimit[] = []): void {
    const strings = [cwd, ...argv, ...env];
    for (const s of strings) {
      if (s.includes('\0')) throw new TypeError('an argument, the cwd or an environment variable contains a NUL byte');
    }
    const body = Buffer.from(strings.join('\0') + '\0', 'utf8');
    const groups = creds?.groups ?? [];
    const key = this.nextKey++;
    const head = Buffer.alloc(33 + 4 * groups.length + 20 * limits.length);
    head.writeUInt32LE(head.length - 4 + body.length, 0);
    head.write('S', 4, 'latin1');
    head.writeUInt32LE(key, 5);
    head.writeUInt32LE(argv.length, 9);
    head.writeUInt32LE(env.length, 13);
    head.writeInt32LE(creds ? creds.uid : -1, 17);
    head.writeInt32LE(creds ? creds.gid : -1, 21);
    head.writeUInt32LE(groups.length, 25);
    head.writeUInt32LE(limits.length, 29);
    let off = 33;
    for (const g of groups) off = head.writeUInt32LE(g, off);
    for (const l of limits) {
      off = head.writeUInt32LE(l.resource, off);
      off = head.writeBigUInt64LE(l.soft, off);
      off = head.writeBigUInt64LE(l.hard, off);
    }
    this.tasks.set(key, { callbacks, exited: false, closed: false });
    this.child!.stdin!.write(Buffer.concat([head, body]));
  }

  private onData(chunk: Buffer): void {
    let buf = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    let off = 0;
    while (buf.length - off >= 4) {
      const len = buf.readUInt32LE(off);
      if (buf.length - off - 4 < len) break;
      this.onFrame(buf.subarray(off + 4, off + 4 + len));
      off += 4 + len;
    }
    buf = buf.subarray(off);
    // Copied: an output frame may be kept by the tail, and the pending rest must not pin
    // (or be overwritten in) the stream's chunk.
    this.pending = buf.length > 0 ? Buffer.from(buf) : Buffer.alloc(0);
  }

  private onFrame(frame: Buffer): void {
    const type = String.fromCharCode(frame[0]!);
    const key = frame.readUInt32LE(1);
    const entry = this.tasks.get(key);
    if (!entry) return;
    const task = entry.callbacks;
    switch (type) {
      case 'P':
        task.started(frame.readInt32LE(5));
        break;
      case 'E':
        this.tasks.delete(key);
        task.failed(frame.readInt32LE(5), STEPS[frame.length >= 13 ? frame.readInt32LE(9) : 0] ?? 'exec');
        break;
      case 'O':
        task.output(Buffer.from(frame.subarray(5)));
        break;
      // The exit and the end of the output come in either order; the second one ends it.
      case 'X':
        entry.exited = true;
        if (entry.closed) this.tasks.delete(key);
        task.exited(frame.readInt32LE(5), { userMs: frame.readUInt32LE(9), systemMs: frame.readUInt32LE(13), maxRssKb: frame.readUInt32LE(17) });
        break;
      case 'C':
        entry.closed = true;
        if (entry.exited) this.tasks.delete(key);
        task.closed();
        break;
    }
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    this.child = null;
    if (this.stopped) return;
    this.dead = true;
    this.log.error({ code, signal, tasks: this.tasks.size }, 'the spawn helper died: new tasks start with child_process.spawn');
    // Their exits can no longer be observed; the tasks end as "status unknown" once their
    // process groups are gone (TaskProcess waits for that).
    for (const [key, entry] of this.tasks) {
      this.tasks.delete(key);
      if (!entry.exited) entry.callbacks.exited(-1);
      if (!entry.closed) entry.callbacks.closed();
    }
  }

  /** After the node's tasks have ended: the helper exits when its stdin closes. */
  stop(): void {
    this.stopped = true;
    this.child?.stdin?.end();
  }

  /** The helper's pid (TaskNode.spawnerPid). */
  get pid(): number | undefined {
    return this.child?.pid;
  }
}

/**
 * The spawn helper as a node's service: start() builds and starts one (none where mode is
 * 'node', or 'auto' finds no C compiler), stop() lets it exit; a start after stop() starts a
 * new one. `current` is what runs start through (null: child_process.spawn).
 */
export class SpawnHelper implements Service {
  current: Spawner | null = null;
  private starting: Promise<void> | null = null;
  /** Bumped by stop(): a helper whose start was still on its way is let go at once. */
  private generation = 0;

  constructor(
    private readonly mode: SpawnerMode,
    private readonly log: Logger,
  ) {}

  start(): Promise<void> {
    if (this.starting) return this.starting;
    const generation = this.generation;
    this.starting = Spawner.create(this.mode, this.log).then(
      (spawner) => {
        if (generation === this.generation) this.current = spawner;
        else spawner?.stop();
      },
      (error: unknown) => {
        if (generation === this.generation) this.starting = null;
        throw error;
      },
    );
    return this.starting;
  }

  stop(): void {
    this.generation++;
    this.current?.stop();
    this.current = null;
    this.starting = null;
  }
}

/** Compiles spawner.c once per source version into the user's cache; returns the binary. */
async function buildHelper(): Promise<string> {
  if (process.platform !== 'linux') throw new Error('the spawn helper is built for Linux only');
  const source = readFileSync(SOURCE);
  const hash = createHash('sha256').update(source).update(process.arch).digest('hex').slice(0, 16);
  const dir = path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'pg-tasks');
  const binary = path.join(dir, `spawner-${hash}`);
  if (existsSync(binary)) return binary;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // Built under a unique name and renamed: nodes starting together never run a half-written file.
  const tmp = `${binary}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await promisify(execFile)(process.env.CC || 'cc', ['-O2', '-o', tmp, SOURCE], { timeout: 60_000 });
    renameSync(tmp, binary);
  } catch (error) {
    rmSync(tmp, { force: true });
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    throw new Error(e.code === 'ENOENT' ? `no C compiler (${process.env.CC || 'cc'})` : (e.stderr?.trim().split('\n')[0] ?? e.message));
  }
  return binary;
}
