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
import type { ContainmentMode } from '../options.js';
import { NodeCgroup } from './cgroup.js';

/** PGTASKS_OLD_TURNOVER=1: one pipe write per frame, as before issue 28 (bench/turnover.ts compares). */
const WRITE_EACH = process.env.PGTASKS_OLD_TURNOVER === '1';

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
  /** supervisor: the pid of the run's supervisor (supervisor.c), 0 when it has none. */
  started(pid: number, supervisor: number): void;
  /** step: the call that failed (SpawnStep); the exec itself unless run_as or limits. */
  failed(errno: number, step: SpawnStep): void;
  output(chunk: Buffer): void;
  /** What the task wrote on its fd 3, the control channel (docs/control.md). */
  control(chunk: Buffer): void;
  /**
   * status -1: unknown (the helper died); -2: unknown (the run's supervisor died). usage: what
   * the leader used, from wait4. orphans: the processes its supervisor killed that had escaped
   * the leader's process group or outlived it.
   */
  exited(status: number, usage?: ResourceUsage, orphans?: number, cgroup?: CgroupUsage): void;
  closed(): void;
}

/** Which call of the start failed, as spawner.c numbers them. */
export type SpawnStep = 'exec' | 'chdir' | 'setrlimit' | 'setgroups' | 'setgid' | 'setuid' | 'fork' | 'cgroup';
const STEPS: SpawnStep[] = ['exec', 'chdir', 'setrlimit', 'setgroups', 'setgid', 'setuid', 'fork', 'cgroup'];

/** Who the task runs as (set only when the node switches user: it runs as root). */
export interface SpawnCreds {
  uid: number;
  gid: number;
  groups: number[];
}

/** The helper's sources, compiled together (spawner.c first: its hash names the binary). */
const SOURCES = ['spawner.c', 'supervisor.c', 'leader.c', 'proctree.c', 'pool.c', 'spawner.h'].map((f) => fileURLToPath(new URL(`../../../src/node/process/${f}`, import.meta.url)));

/** A run's supervisor (supervisor.c): what it waits for once the leader has exited. */
export interface Supervision {
  /** How long the run's other processes may outlive its leader before they are killed. */
  orphanGraceMs: number;
  /** A cgroup of its own, under the node's (which the helper must have): see TaskProcess. */
  cgroup?: boolean;
  /** memory.max of the run's cgroup, in bytes (the node has a cgroup with memory). */
  memoryMax?: number | null;
  /** cpu.max of the run's cgroup, in CPUs (the node has a cgroup with cpu). */
  cpuMax?: number | null;
}

/** What the run's cgroup saw (with the node's cgroup only). */
export interface CgroupUsage {
  /** memory.peak, in kB (0 where the kernel has no memory.peak). */
  memoryPeakKb: number;
  /** The kernel's OOM killer killed a process of the run. */
  oom: boolean;
}

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
  /**
   * The frames of this turn (spawns, signals), written as one when it ends (a microtask): a
   * claim's tasks cost one pipe write, not one each. The write per spawn was the node's
   * largest single cost in its CPU profile at 32 slots (issue 28: 322 ms in a run of 2 000 tasks,
   * about 160 µs a spawn on a loaded machine).
   */
  private outbox: Buffer[] = [];
  /** Set when the helper died under the node: the callers fall back to child_process. */
  dead = false;
  /** Set by stop(): the helper's exit is then expected. */
  private stopped = false;

  private constructor(
    private readonly binary: string,
    private readonly log: Logger,
    /** Runs get supervisors, and the helper adopts what a killed supervisor leaves. */
    readonly contained: boolean,
    /** Where supervised runs get cgroups of their own (null: none). */
    readonly cgroup: NodeCgroup | null,
  ) {}

  /** The helper, or null where it cannot be built ('auto') or is not wanted ('node'). */
  static async create(mode: SpawnerMode, log: Logger, contained = true, cgroup: NodeCgroup | null = null): Promise<Spawner | null> {
    if (mode === 'node') return null;
    try {
      const spawner = new Spawner(await buildHelper(), log, contained, cgroup);
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
    const args = [...(this.contained ? ['--subreaper'] : []), ...(this.cgroup ? ['--cgroup', this.cgroup.dir] : [])];
    const child = spawn(this.binary, args, { stdio: ['pipe', 'pipe', 'inherit'], detached: true });
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
   * be passed to the kernel (a NUL byte). With supervision (a node with containment on), the
   * run gets a supervisor that owns every process it starts. Returns the run's key (signal()).
   */
  spawn(argv: string[], cwd: string, env: string[], callbacks: HelperCallbacks, creds: SpawnCreds | null = null, limits: RLimit[] = [], supervision: Supervision | null = null): number {
    const strings = [cwd, ...argv, ...env];
    for (const s of strings) {
      if (s.includes('\0')) throw new TypeError('an argument, the cwd or an environment variable contains a NUL byte');
    }
    const body = Buffer.from(strings.join('\0') + '\0', 'utf8');
    const groups = creds?.groups ?? [];
    const key = this.nextKey++;
    const head = Buffer.alloc(53 + 4 * groups.length + 20 * limits.length);
    head.writeUInt32LE(head.length - 4 + body.length, 0);
    head.write('S', 4, 'latin1');
    head.writeUInt32LE(key, 5);
    head.writeUInt32LE(argv.length, 9);
    head.writeUInt32LE(env.length, 13);
    head.writeInt32LE(creds ? creds.uid : -1, 17);
    head.writeInt32LE(creds ? creds.gid : -1, 21);
    head.writeUInt32LE(groups.length, 25);
    head.writeUInt32LE(limits.length, 29);
    head.writeUInt32LE((supervision ? 1 : 0) | (supervision?.cgroup ? 2 : 0), 33);
    head.writeUInt32LE(supervision ? Math.min(Math.max(0, Math.round(supervision.orphanGraceMs)), 0xffffffff) : 0, 37);
    // cpu.max: the quota of a 100 ms period; NaN, Infinity (the column's check lets them
    // through) and less than the kernel's 1 ms are no limit and 1 ms.
    const cpu = supervision?.cpuMax;
    const quota = cpu && Number.isFinite(cpu) && cpu > 0 ? Math.min(Math.max(1_000, Math.round(cpu * 100_000)), 0xffffffff) : 0;
    head.writeBigUInt64LE(BigInt(supervision?.memoryMax ? Math.max(0, Math.round(supervision.memoryMax)) : 0), 41);
    head.writeUInt32LE(quota, 49);
    let off = 53;
    for (const g of groups) off = head.writeUInt32LE(g, off);
    for (const l of limits) {
      off = head.writeUInt32LE(l.resource, off);
      off = head.writeBigUInt64LE(l.soft, off);
      off = head.writeBigUInt64LE(l.hard, off);
    }
    this.tasks.set(key, { callbacks, exited: false, closed: false });
    this.send(head, body);
    return key;
  }

  /**
   * Signals the supervisor of run `key` through the helper, whose child it is (so no other
   * process can be hit by a pid used again), after a SIGCONT: SIGTERM ends the run gracefully,
   * SIGUSR1 kills it, SIGKILL kills a supervisor that does not answer (the helper then kills
   * its run). False when the helper is gone.
   */
  signal(key: number, signal: 'SIGTERM' | 'SIGUSR1' | 'SIGKILL'): boolean {
    if (!this.child?.stdin || this.dead) return false;
    const frame = Buffer.alloc(13);
    frame.writeUInt32LE(9, 0);
    frame.write('K', 4, 'latin1');
    frame.writeUInt32LE(key, 5);
    frame.writeUInt32LE(os.constants.signals[signal], 9);
    this.send(frame);
    return true;
  }

  /** Queues frames for the helper, in order; the turn's frames go in one write (see outbox). */
  private send(...frames: Buffer[]): void {
    if (this.outbox.length === 0 && !WRITE_EACH) queueMicrotask(() => this.flush());
    this.outbox.push(...frames);
    if (WRITE_EACH) this.flush();
  }

  private flush(): void {
    if (this.outbox.length === 0) return;
    const frames = this.outbox.length === 1 ? this.outbox[0]! : Buffer.concat(this.outbox);
    this.outbox = [];
    this.child?.stdin?.write(frames);
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
        task.started(frame.readInt32LE(5), frame.length >= 13 ? frame.readInt32LE(9) : 0);
        break;
      case 'E':
        this.tasks.delete(key);
        task.failed(frame.readInt32LE(5), STEPS[frame.length >= 13 ? frame.readInt32LE(9) : 0] ?? 'exec');
        break;
      case 'O':
        task.output(Buffer.from(frame.subarray(5)));
        break;
      case 'F':
        task.control(Buffer.from(frame.subarray(5)));
        break;
      // The exit and the end of the output come in either order; the second one ends it.
      case 'X':
        entry.exited = true;
        if (entry.closed) this.tasks.delete(key);
        task.exited(
          frame.readInt32LE(5),
          { userMs: frame.readUInt32LE(9), systemMs: frame.readUInt32LE(13), maxRssKb: frame.readUInt32LE(17) },
          frame.length >= 25 ? frame.readUInt32LE(21) : 0,
          frame.length >= 33 ? { memoryPeakKb: frame.readUInt32LE(25), oom: frame.readUInt32LE(29) !== 0 } : undefined,
        );
        break;
      case 'L':
        entry.exited = true;
        if (entry.closed) this.tasks.delete(key);
        task.exited(-2);
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
    this.flush();
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

  /** The node's cgroup while the helper runs (containment 'auto' or 'cgroup', where delegated). */
  private cgroup: NodeCgroup | null = null;

  constructor(
    private readonly mode: SpawnerMode,
    private readonly log: Logger,
    private readonly containment: ContainmentMode = 'auto',
  ) {}

  start(): Promise<void> {
    if (this.starting) return this.starting;
    const generation = this.generation;
    const contained = this.containment !== 'group';
    if ((this.containment === 'auto' || this.containment === 'cgroup') && this.mode !== 'node' && !this.cgroup) {
      let made = NodeCgroup.create();
      // auto: a cgroup only for what it adds to the supervisor, memory_max and cpu_max.
      if (made instanceof NodeCgroup && this.containment === 'auto' && !made.has('memory') && !made.has('cpu')) {
        made.remove();
        made = { reason: `${made.dir} would have neither the memory nor the cpu controller` };
      }
      if (made instanceof NodeCgroup) this.cgroup = made;
      this.log.info(
        { cgroup: made instanceof NodeCgroup ? made.describe() : made.reason },
        made instanceof NodeCgroup
          ? this.containment === 'cgroup' ? 'every run gets a cgroup of its own' : 'runs with memory_max or cpu_max get a cgroup of their own'
          : 'runs get no cgroups (their supervisors contain them; limits are rlimits)',
      );
    }
    this.starting = Spawner.create(this.mode, this.log, contained, this.cgroup).then(
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
    // Its runs have ended (the node stops its parts after its runs), and removed their cgroups.
    this.cgroup?.remove();
    this.cgroup = null;
  }
}

/**
 * Compiles the helper once per source version into the user's cache (XDG_CACHE_HOME/pg-tasks,
 * else ~/.cache/pg-tasks); returns the binary. `pg-tasks build-helper` calls it ahead of time.
 */
export async function buildHelper(): Promise<string> {
  if (process.platform !== 'linux') throw new Error('the spawn helper is built for Linux only');
  const hasher = createHash('sha256');
  for (const file of SOURCES) hasher.update(readFileSync(file));
  const hash = hasher.update(process.arch).digest('hex').slice(0, 16);
  const dir = path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'pg-tasks');
  const binary = path.join(dir, `spawner-${hash}`);
  if (existsSync(binary)) return binary;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // Built under a unique name and renamed: nodes starting together never run a half-written file.
  const tmp = `${binary}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await promisify(execFile)(process.env.CC || 'cc', ['-O2', '-o', tmp, ...SOURCES.filter((f) => f.endsWith('.c'))], { timeout: 60_000 });
    renameSync(tmp, binary);
  } catch (error) {
    rmSync(tmp, { force: true });
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    throw new Error(e.code === 'ENOENT' ? `no C compiler (${process.env.CC || 'cc'})` : (e.stderr?.trim().split('\n')[0] ?? e.message));
  }
  return binary;
}
