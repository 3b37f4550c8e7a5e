// A run owns every process it starts, whatever the process does to escape (docs/lifecycle.md,
// "A run's processes"): children in a session of their own (setsid), in a process group of
// their own (setpgid), ignoring SIGHUP and SIGTERM (nohup), and daemon(3)'s double fork all end
// with the run: at its timeout, its cancel, a user's CC, its leader's exit, its supervisor's
// death, its node's SIGKILL, and at the fence of a frozen node.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { NodeCgroup } from '../src/node/process/cgroup.js';
import { isProcessAlive } from '../src/node/process/process-group.js';
import { children, killChild, spawnNode, withOutput } from './helpers/child-node.js';
import { runCli } from './helpers/cli.js';
import { addTask, getTask, getWorker, startNode, tempDir, useTestDatabase, waitEnded } from './helpers/node.js';
import { until } from './helpers/wait.js';

const db = useTestDatabase('containment');
const dir = tempDir('containment');
const nodeSpawner = process.env.PGTASKS_SPAWNER === 'node';
const skip = nodeSpawner ? 'containment needs the spawn helper: with --spawner node (child_process) a run is its process group' : false;

// Every pid a test's tasks recorded, killed after the file whatever happened (pids that are
// already gone are skipped; none of them is reused while the test runs, these are our own).
const recorded = new Set<number>();
after(async () => {
  for (const child of children) await killChild(child);
  for (const pid of recorded) if (isProcessAlive(pid)) process.kill(pid, 'SIGKILL');
});

/**
 * The escape artist: forks one child per way out, each recording its pid (the leader records
 * its own last), then sleeps; `exit` makes the leader exit 0 once they are all recorded. The
 * daemon child calls the C library's daemon(3) through ctypes: fork, exit, setsid.
 */
const ESCAPE = path.join(dir, 'escape.py');
writeFileSync(ESCAPE, `
import ctypes, os, signal, sys, time
out, mode = sys.argv[1], sys.argv[2]
def record(pid):
    with open(out, 'a') as f:
        f.write('%d\\n' % pid)
def child(kind):
    if os.fork():
        return
    if kind == 'setsid':
        os.setsid()
    elif kind == 'setpgid':
        os.setpgid(0, 0)
    elif kind == 'nohup':
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif kind == 'daemon':
        if ctypes.CDLL(None, use_errno=True).daemon(1, 0) != 0:
            os._exit(1)
    record(os.getpid())
    while True:
        time.sleep(1)
for kind in ('setsid', 'setpgid', 'nohup', 'daemon'):
    child(kind)
while len(open(out).read().split()) < 4:
    time.sleep(0.01)
record(os.getpid())
if mode == 'exit':
    sys.exit(0)
time.sleep(300)
`);

let serial = 0;
/** A task running the escape artist; resolves with its five pids once all are recorded. */
async function escapeTask(mode: 'stay' | 'exit', extra: Parameters<typeof addTask>[2] = {}): Promise<{ id: number; pids: () => number[]; ready: () => Promise<number[]> }> {
  const file = path.join(dir, `pids-${process.pid}-${++serial}`);
  writeFileSync(file, '');
  const id = await addTask(db, ['python3', ESCAPE, file, mode], extra);
  const pids = (): number[] => readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number);
  const ready = async (): Promise<number[]> => {
    const all = await until(() => (pids().length === 5 ? pids() : null), 'the task and its four escaped children to record their pids', 30_000);
    for (const pid of all) recorded.add(pid);
    return all;
  };
  return { id, pids, ready };
}

function alive(pids: number[]): number[] {
  return pids.filter(isProcessAlive);
}

async function run(id: number): Promise<Record<string, unknown>> {
  const { rows } = await db.query<Record<string, unknown>>('SELECT * FROM long_task.task_run WHERE task_id = $1 ORDER BY attempt DESC LIMIT 1', [id]);
  return rows[0]!;
}

describe('a run ends with all of its processes', { skip }, () => {
  it('at its timeout: none of the escaped children outlives it', async () => {
    const node = await startNode(db, { workerId: 1, killGraceMs: 500 });
    const t = await escapeTask('stay', { timeout: '4s' });
    const pids = await t.ready();
    await waitEnded(db, [t.id]);
    const row = await getTask(db, t.id);
    assert.equal(row.state_id, 'CF');
    assert.equal(row.end_reason, 'timeout');
    // Reported once every process is gone, so nothing may be alive now, not even for a moment.
    assert.deepEqual(alive(pids), [], 'processes of the run outlived its end');
    assert.equal((await run(t.id)).orphans_killed, 1, 'every process got the SIGTERM; only the one that ignores it had to be killed');
    await node.shutdown('cancel');
  });

  it('at its cancel (AC), and when a user writes CC over the executing row (a cancel too)', async () => {
    const node = await startNode(db, { workerId: 2, killGraceMs: 500 });
    const a = await escapeTask('stay', { worker: 2 });
    const b = await escapeTask('stay', { worker: 2 });
    const pidsA = await a.ready();
    const pidsB = await b.ready();
    await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1", [a.id]);
    const { rows: [written] } = await db.query<{ state_id: string }>("UPDATE long_task.task SET state_id = 'CC' WHERE id = $1 RETURNING state_id", [b.id]);
    assert.equal(written!.state_id, 'AC', 'AE -> CC written by a user becomes a cancel: the row cannot end while its process lives');
    await waitEnded(db, [a.id, b.id]);
    for (const [t, pids] of [[a, pidsA], [b, pidsB]] as const) {
      const row = await getTask(db, t.id);
      assert.equal(row.state_id, 'CC');
      assert.equal(row.end_reason, 'cancelled');
      assert.deepEqual(alive(pids), [], `processes of task ${t.id} outlived its cancel`);
    }
    await node.shutdown('cancel');
  });

  it('when its leader exits: what it left running is killed, counted, and the run ends after them', async () => {
    const node = await startNode(db, { workerId: 3 });
    const t = await escapeTask('exit', { worker: 3 });
    const pids = await t.ready();
    await waitEnded(db, [t.id]);
    assert.equal((await getTask(db, t.id)).state_id, 'CS', 'the leader exited 0: the run completed');
    assert.deepEqual(alive(pids), []);
    assert.equal((await run(t.id)).orphans_killed, 4, 'all four children outlived the leader');
    // And the user is told, by pg-tasks runs and show.
    const runs = await runCli(db.url, ['runs', String(t.id)]);
    const [head, line] = runs.stdout.split('\n');
    assert.equal(line!.split(/\s{2,}/)[head!.split(/\s{2,}/).indexOf('ORPHANS')], '4', runs.stdout);
    assert.match((await runCli(db.url, ['show', String(t.id)])).stdout, /killed 4 process\(es\) it had left running/);
    await node.shutdown('cancel');
  });

  it('with --orphan-grace, a child that outlives its leader keeps the run going until it ends', async () => {
    const node = await startNode(db, { workerId: 4, orphanGraceMs: 120_000 });
    const go = path.join(dir, `go-${process.pid}`);
    const leader = path.join(dir, `leader-${process.pid}`);
    // The leader starts a child in a session of its own, records its pid and exits; the
    // child ends by itself once the test says so.
    const id = await addTask(db, ['sh', '-c', `setsid sh -c 'while [ ! -e ${go} ]; do sleep 0.05; done' & echo $$ > ${leader}`], { worker: 4 });
    const leaderPid = Number(await until(() => (existsSync(leader) ? readFileSync(leader, 'utf8').trim() || null : null), 'the leader to record its pid'));
    await until(() => !isProcessAlive(leaderPid), 'the leader to exit');
    // The leader is gone, its child is not: the run is still running. (A look, not a wait:
    // nothing would end the run before the test writes the file.)
    assert.equal((await getTask(db, id)).state_id, 'AE', 'the run ended while a process of it was alive');
    writeFileSync(go, '');
    await waitEnded(db, [id]);
    assert.equal((await getTask(db, id)).state_id, 'CS');
    assert.equal((await run(id)).orphans_killed, 0, 'the child ended by itself, within the grace');
    await node.shutdown('cancel');
  });

  it('when its task stops its supervisor (SIGSTOP, as the same user): a cancel still ends it whole', async () => {
    const node = await startNode(db, { workerId: 9, killGraceMs: 500 });
    const file = path.join(dir, `stopper-${process.pid}`);
    const id = await addTask(db, ['sh', '-c', `kill -STOP $PPID; setsid sleep 300 & echo $! > ${file}; echo $$ >> ${file}; sleep 300`], { worker: 9 });
    const pids = await until(() => (existsSync(file) && readFileSync(file, 'utf8').split('\n').filter(Boolean).length === 2 ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number) : null), 'the task to stop its supervisor and record its pids');
    for (const pid of pids) recorded.add(pid);
    await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1", [id]);
    await waitEnded(db, [id]);
    assert.equal((await getTask(db, id)).state_id, 'CC');
    assert.deepEqual(alive(pids), []);
    await node.shutdown('cancel');
  });

  it('when its supervisor is killed (by a task of the same user): the run is lost, its processes killed', async () => {
    const node = await startNode(db, { workerId: 5 });
    const t = await escapeTask('stay', { worker: 5 });
    const pids = await t.ready();
    const leader = pids[4]!;
    const supervisor = Number(readFileSync(`/proc/${leader}/stat`, 'latin1').split(') ')[1]!.split(' ')[1]);
    assert.notEqual(supervisor, 1, 'the leader is the child of its supervisor');
    process.kill(supervisor, 'SIGKILL');
    await waitEnded(db, [t.id]);
    const row = await getTask(db, t.id);
    assert.equal(row.state_id, 'CF');
    assert.match(String(row.error), /^Lost: the run's supervisor died/);
    // The helper, a subreaper too, adopted them when the supervisor died, and killed them.
    await until(() => alive(pids).length === 0, 'the adopted processes to be killed', 10_000);
    await node.shutdown('cancel');
  });
});

// Where the node's cgroup v2 is delegated to it (here: as root, where a cgroup2 hierarchy is
// mounted), a run gets a cgroup of its own: every run with --containment cgroup; with the
// memory controller and memory_max (auto, the default), memory_max is its memory.max and the
// OOM killer's end is 'oom'.
const probe = nodeSpawner ? null : NodeCgroup.create();
if (probe instanceof NodeCgroup) probe.remove();
const noCgroup = skip || (probe instanceof NodeCgroup ? false : `runs get no cgroups here: ${probe?.reason}`);
const noMemory = noCgroup || (probe instanceof NodeCgroup && probe.has('memory') ? false : `the delegated cgroup v2 has no memory controller here (${probe instanceof NodeCgroup ? probe.describe() : ''})`);

describe('a cgroup per run', { skip: noCgroup }, () => {
  it('with --containment cgroup, puts every process of the run in it, and removes it when the run ends', async () => {
    const node = await startNode(db, { workerId: 7, killGraceMs: 500, containment: 'cgroup' });
    const t = await escapeTask('stay', { worker: 7 });
    const pids = await t.ready();
    const cgroups = pids.map((pid) => readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'))!.slice(3));
    assert.match(cgroups[4]!, new RegExp(`/pg-tasks-${process.pid}-\\d+/run-\\d+$`), 'the leader is in a cgroup of its run');
    assert.deepEqual(new Set(cgroups).size, 1, 'the escaped children are in it too');
    const dir = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')).find((f) => f[f.indexOf('-') + 1] === 'cgroup2')![4]! + cgroups[4]!;
    assert.ok(existsSync(dir));
    await db.query("UPDATE long_task.task SET state_id = 'AC' WHERE id = $1", [t.id]);
    await waitEnded(db, [t.id]);
    assert.deepEqual(alive(pids), []);
    // Removed by its supervisor right after it reports the end.
    await until(() => !existsSync(dir), 'the run\'s cgroup to be removed', 10_000);
    await node.shutdown('cancel');
  });

  it('ends a run over its memory_max as oom, and records its memory.peak', { skip: noMemory }, async () => {
    const node = await startNode(db, { workerId: 8 });
    const id = await addTask(db, ['python3', '-c', 'b = bytearray(512 * 1024 * 1024); print(len(b))'], { worker: 8, limits: { memory_max: 64 * 1024 * 1024 } });
    await waitEnded(db, [id]);
    const row = await getTask(db, id);
    assert.equal(row.state_id, 'CF');
    assert.equal(row.end_reason, 'oom');
    assert.ok(Number((await run(id)).memory_peak) > 0);
    await node.shutdown('cancel');
  });
});

describe('--containment group', { skip }, () => {
  it('leaves what escaped the group running: what the supervisor is for', async () => {
    const node = await startNode(db, { workerId: 6, containment: 'group', killGraceMs: 500 });
    const t = await escapeTask('stay', { worker: 6, timeout: '4s' });
    const pids = await t.ready();
    await waitEnded(db, [t.id]);
    const left = alive(pids);
    assert.equal(left.length, 3, 'setsid, setpgid and daemon children survive the group kill');
    assert.equal((await run(t.id)).orphans_killed, null, 'no supervisor, no count');
    for (const pid of left) process.kill(pid, 'SIGKILL');
    await node.shutdown('cancel');
  });
});

describe('a run\'s processes end with their node', { skip }, () => {
  it('when the node is SIGKILLed', async (t) => {
    const W = 20;
    const { child, output } = spawnNode(db.url, ['--worker-id', String(W), '--name', 'killed']);
    await withOutput(t, output, async () => {
      await until(async () => (await getWorker(db, W))?.node_name === 'killed', 'the node to take its lease', 30_000);
      const task = await escapeTask('stay', { worker: W });
      const pids = await task.ready();
      child.kill('SIGKILL');
      await until(() => alive(pids).length === 0, 'every process of the run to be killed', 10_000);
    });
    await killChild(child);
  });

  it('when the node is frozen (SIGSTOP): its reaper and the supervisor kill them at the fence', async (t) => {
    const W = 21;
    const { child, output } = spawnNode(db.url, ['--worker-id', String(W), '--name', 'frozen', '--lease', '3s']);
    try {
      await withOutput(t, output, async () => {
        await until(async () => (await getWorker(db, W))?.node_name === 'frozen', 'the node to take its lease', 30_000);
        const task = await escapeTask('stay', { worker: W });
        const pids = await task.ready();
        process.kill(child.pid!, 'SIGSTOP');
        await until(() => alive(pids).length === 0, 'every process of the run to be killed at the fence', 20_000);
      });
    } finally {
      await killChild(child);
    }
  });
});
