// The spawn helper's pool of supervisors (src/node/process/pool.c, supervisor.c): a supervisor
// outlives its run and takes the next, one run at a time; a kill names its run, so one that
// comes late never reaches the run after; a supervisor that dies, busy or idle, is replaced.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import pino from 'pino';
import { Spawner, type HelperCallbacks } from '../src/node/process/spawner.js';
import { isProcessGroupAlive } from '../src/node/process/process-group.js';
import { until } from './helpers/wait.js';

interface Run {
  key: number;
  started: Promise<{ pid: number; supervisor: number }>;
  /** The exit status (-2: its supervisor died), once every process of the run is gone. */
  exited: Promise<number>;
  output: () => string;
}

function start(spawner: Spawner, argv: string[]): Run {
  return startWith(spawner, argv, ['PATH=/usr/bin:/bin']);
}

function startWith(spawner: Spawner, argv: string[], env: string[]): Run {
  let started!: (v: { pid: number; supervisor: number }) => void;
  let failed!: (e: Error) => void;
  let exited!: (status: number) => void;
  const out: Buffer[] = [];
  const startedP = new Promise<{ pid: number; supervisor: number }>((resolve, reject) => ((started = resolve), (failed = reject)));
  startedP.catch(() => undefined); // awaited where a test needs it
  const exitedP = new Promise<number>((resolve) => (exited = resolve));
  const callbacks: HelperCallbacks = {
    started: (pid, supervisor) => started({ pid, supervisor }),
    failed: (errno, step) => {
      failed(new Error(`start failed: errno ${errno} at ${step}`));
      exited(-3);
    },
    output: (chunk) => out.push(chunk),
    control: () => undefined,
    exited: (status) => exited(status),
    closed: () => undefined,
  };
  const key = spawner.spawn(argv, os.tmpdir(), env, callbacks, null, [], { orphanGraceMs: 0 });
  return { key, started: startedP, exited: exitedP, output: () => Buffer.concat(out).toString() };
}

/** The parent of a process, from /proc. */
function parentOf(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]!.split(' ')[1]);
}

/** The children of a process, from /proc. */
function childrenOf(parent: number): number[] {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).filter((pid) => {
    try {
      return parentOf(pid) === parent;
    } catch {
      return false; // gone meanwhile
    }
  });
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]![0] !== 'Z';
  } catch {
    return false;
  }
};

describe('the pool of supervisors', () => {
  let spawner: Spawner;
  // The helper's pipes are unref'd (a node's helper must not keep it alive): this keeps the
  // test's process up while it waits on them.
  let keepAlive: NodeJS.Timeout;
  before(async () => {
    keepAlive = setInterval(() => undefined, 60_000);
    spawner = (await Spawner.create('helper', pino({ level: 'silent' })))!;
  });
  after(() => {
    spawner.stop();
    clearInterval(keepAlive);
  });

  it('gives runs one after another to the same supervisor, which is the leader\'s parent', async () => {
    const supervisors = new Set<number>();
    for (let i = 0; i < 5; i++) {
      const run = start(spawner, ['sh', '-c', 'echo $$; sleep 30']);
      const { pid, supervisor } = await run.started;
      assert.ok(supervisor > 0, 'the run has a supervisor');
      assert.equal(parentOf(pid), supervisor, 'the leader is the child of its supervisor');
      assert.equal(parentOf(supervisor), spawner.pid, 'the supervisor is the child of the helper');
      supervisors.add(supervisor);
      spawner.signal(run.key, 'SIGUSR1');
      assert.equal(await run.exited >= 0, true);
      assert.equal(isProcessGroupAlive(pid), false);
    }
    assert.equal(supervisors.size, 1, `one supervisor for runs one at a time (saw ${[...supervisors].join(', ')})`);
    assert.ok(alive([...supervisors][0]!), 'it waits for the next run');
  });

  it('gives runs at once a supervisor each, and keeps them for the next', async () => {
    const first = Array.from({ length: 4 }, () => start(spawner, ['sleep', '30']));
    const a = await Promise.all(first.map((r) => r.started));
    assert.equal(new Set(a.map((s) => s.supervisor)).size, 4, 'four runs at once, four supervisors');
    for (const r of first) spawner.signal(r.key, 'SIGUSR1');
    await Promise.all(first.map((r) => r.exited));
    const second = Array.from({ length: 4 }, () => start(spawner, ['sleep', '30']));
    const b = await Promise.all(second.map((r) => r.started));
    assert.deepEqual(new Set(b.map((s) => s.supervisor)), new Set(a.map((s) => s.supervisor)), 'the same four take the next four');
    for (const r of second) spawner.signal(r.key, 'SIGUSR1');
    await Promise.all(second.map((r) => r.exited));
  });

  it('drops a kill that names a run already over: it never reaches the next run of its supervisor', async () => {
    const done = start(spawner, ['true']);
    const { supervisor } = await done.started;
    assert.equal(await done.exited, 0);
    const next = start(spawner, ['sh', '-c', 'echo up; sleep 30; echo finished']);
    const started = await next.started;
    assert.equal(started.supervisor, supervisor, 'the next run went to the same supervisor');
    await until(() => next.output().includes('up'), 'the next run to be up');
    // Late: the node's timers of the first run, a SIGTERM, its kill and its supervisor's SIGKILL.
    spawner.signal(done.key, 'SIGTERM');
    spawner.signal(done.key, 'SIGUSR1');
    spawner.signal(done.key, 'SIGKILL');
    // A probe run after the late kills: once it has started, the helper and the pool have
    // handled them (frames are handled in order).
    const probe = start(spawner, ['true']);
    await probe.exited;
    assert.ok(alive(started.pid), 'the next run still runs');
    assert.ok(alive(supervisor), 'and so does its supervisor');
    spawner.signal(next.key, 'SIGUSR1');
    assert.equal(await next.exited >= 0, true, 'ended by its own kill, not lost');
    assert.equal(isProcessGroupAlive(started.pid), false);
  });

  it('replaces supervisors killed while idle, and one killed with a run (that run is lost, its processes killed)', async () => {
    const one = start(spawner, ['true']);
    await one.exited;
    // No run now: every child of the helper is an idle supervisor.
    const idle = childrenOf(spawner.pid!);
    assert.ok(idle.length >= 1, 'the pool keeps its supervisors');
    for (const pid of idle) process.kill(pid, 'SIGKILL');
    await until(() => idle.every((pid) => !alive(pid)), 'the idle supervisors to be gone');
    const after1 = start(spawner, ['sh', '-c', 'echo hello']);
    assert.equal(await after1.exited, 0, 'a run after them starts and ends');
    assert.match(after1.output(), /hello/);
    assert.ok(!idle.includes((await after1.started).supervisor), 'under a new supervisor');

    const busy = Array.from({ length: 3 }, () => start(spawner, ['sleep', '30']));
    const runs = await Promise.all(busy.map((r) => r.started));
    process.kill(runs[0]!.supervisor, 'SIGKILL');
    assert.equal(await busy[0]!.exited, -2, 'the run of a supervisor that died is lost');
    await until(() => !isProcessGroupAlive(runs[0]!.pid), 'its process to be killed by the helper');
    assert.ok(alive(runs[1]!.pid) && alive(runs[2]!.pid), 'the other runs go on');
    for (const r of busy.slice(1)) spawner.signal(r.key, 'SIGUSR1');
    await Promise.all(busy.slice(1).map((r) => r.exited));
    const after2 = start(spawner, ['true']);
    assert.equal(await after2.exited, 0, 'and a run after that one too');
  });

  it('starts a run on an idle supervisor that a task stopped (SIGSTOP) or hung up on (SIGHUP)', { timeout: 60_000 }, async () => {
    const one = start(spawner, ['true']);
    await one.exited;
    // A task of the node's user can find the idle supervisors (the helper's children) and
    // signal them. The next run goes to one of them all the same, and starts.
    const idle = childrenOf(spawner.pid!).filter(alive);
    assert.ok(idle.length >= 1);
    for (const pid of idle) process.kill(pid, 'SIGSTOP');
    await until(() => idle.every((pid) => readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]![0] === 'T'), 'the supervisors to be stopped');
    const stopped = start(spawner, ['sh', '-c', 'echo ran']);
    assert.equal(await stopped.exited, 0, 'a run given to a stopped supervisor starts and ends');
    assert.ok(idle.includes((await stopped.started).supervisor), 'on one of them');
    for (const pid of idle) process.kill(pid, 'SIGCONT');

    for (const pid of idle) process.kill(pid, 'SIGHUP');
    const hung = start(spawner, ['true']);
    assert.equal(await hung.exited, 0);
    assert.ok(idle.includes((await hung.started).supervisor), 'a SIGHUP from anyone but its parent\'s death ends no supervisor');
    assert.ok(idle.every(alive));
  });

  it('passes a start frame larger than the socket holds (a big environment)', async () => {
    // 10 variables of 100 kB (one may not pass 128 kB: the kernel's MAX_ARG_STRLEN).
    const env = Array.from({ length: 10 }, (_, i) => `BIG${i}=${String(i).repeat(100_000)}`);
    const run = startWith(spawner, ['sh', '-c', 'env | grep -c "^BIG"; printf %s "$BIG9" | wc -c'], ['PATH=/usr/bin:/bin', ...env]);
    assert.equal(await run.exited, 0);
    await until(() => run.output().split(/\s+/).filter(Boolean).join(' ') === '10 100000', 'the task to see its whole environment');
  });
});
