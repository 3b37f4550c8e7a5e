// Failover: how long a worker is without a node after its node dies or is cut off, and when
// the dead node's running task is recovered.
//   npx tsx bench/failover.ts [--quick] [--verbose]
//
// Each figure at the defaults (no --lease) and at --lease 4s; every node is a separate
// `pg-tasks node` process (bench/failover-nodes.ts), each run in a fresh schema.
// 1. Standby takeover after SIGKILL: holder A runs `sleep 600`, B stands by for the same
//    worker id. SIGKILL A at t0 (a /bin/true-like stamp task is queued right after). Measured
//    from t0: the new term (lease_epoch up, node_name B), the stamp task's process start, and
//    A's task getting its run end. B then holds; a fresh standby joins for the next kill.
// 2. Recovery without a standby: A (worker 1) runs `sleep 600`, C (worker 2, same group) is
//    alive; SIGKILL A; t0 to A's task's run end.
// 3. Cut connection: A reaches the database through a TCP proxy, B (standby) directly; the
//    proxy cuts A at t0. t0 to B's new term and to A's task's run end.
// Each failure comes at a random point of the holder's renewal cycle (randomPause).
// Every t0-relative figure is seen by the bench polling the rows every 5 ms, on its own clock.
// The "lag" of a recovery is measured on the database's clock: the run's end (the recovery's
// now()) minus (A's last locked_until + the recovery delay). It must never be negative: A may
// trust its lease, and run its processes, until shortly before locked_until. A negative lag,
// or A's task process still alive when its task is recovered, prints FAIL and exits 1.
//
// Most of the time is spent waiting for leases to lapse, so the scenarios run in three lanes
// side by side (separate schemas and nodes, nothing shared but the server): a full run takes
// 4 to 5 minutes instead of 9.
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';
import { NODE_DEFAULTS } from '../src/node/options.js';
import { isProcessAlive } from '../src/node/process/process-group.js';
import { proxyFor } from '../test/helpers/proxy.js';
import { abortWaits, checkAborted, crashNode, hasExited, killAllNodes, killLeftoverTasks, sleep, startNode, stopNode, until } from './failover-nodes.js';
import { metric, nowMs, percentiles, setUpDatabase, stampTime } from './lib.js';

const quick = process.argv.includes('--quick');
const verbose = process.argv.includes('--verbose');
const recoveryDelayMs = NODE_DEFAULTS.recoveryDelaySeconds * 1000;
const LONG_TASK = ['sleep', '600'];
/** Long enough for a node to start on a busy machine (usually 1-3 s). */
const STANDBY_SETTLE_MS = 15_000;
let standbyUnmarked = false;

interface Setting {
  key: 'default' | 'lease4s';
  label: string;
  args: string[];
  leaseMs: number;
}
const DEFAULTS: Setting = {
  key: 'default',
  label: `defaults (lease ${NODE_DEFAULTS.leaseSeconds} s, recovery delay ${NODE_DEFAULTS.recoveryDelaySeconds} s)`,
  args: [],
  leaseMs: NODE_DEFAULTS.leaseSeconds * 1000,
};
const LEASE_4S: Setting = { key: 'lease4s', label: '--lease 4s', args: ['--lease', '4s'], leaseMs: 4000 };

/** One scenario at one setting: its schema, its connection, the nodes it started. */
interface Run {
  label: string;
  setting: Setting;
  s: string;
  schema: string;
  client: pg.Client;
  nodes: ChildProcess[];
  started: number;
}

interface WorkerRow {
  epoch: number;
  active: boolean;
  node_name: string | null;
  standby_node: string | null;
  locked_until_ms: number | null;
}

interface Seen {
  newTermMs: number | null;
  firstTaskMs: number | null;
  recoveredMs: number;
  lagMs: number;
  pidAlive: boolean;
}

const db = await setUpDatabase();
const samples = new Map<string, number[]>();
let failures = 0;

function record(figure: string, setting: Setting, ms: number | null): void {
  if (ms === null) return;
  const key = `${figure}.${setting.key}`;
  samples.set(key, [...(samples.get(key) ?? []), ms]);
}

function fail(message: string): void {
  failures++;
  console.error(`FAIL failover: ${message}`);
}

async function withRun(label: string, setting: Setting, body: (run: Run) => Promise<void>): Promise<void> {
  const schema = `bench_failover_${process.pid}_${label}_${setting.key}`;
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  const run: Run = { label, setting, schema, s: `"${schema}"`, client, nodes: [], started: 0 };
  try {
    await body(run);
  } finally {
    await Promise.all(run.nodes.map((node) => stopNode(node)));
    const killed = await killLeftoverTasks(client, schema, LONG_TASK).catch(() => []);
    if (killed.length > 0) console.error(`failover: killed task processes ${killed.join(', ')} that outlived their node`);
    await client.query(`DROP SCHEMA IF EXISTS ${run.s} CASCADE`);
    await client.end();
  }
}

async function readWorker(run: Run, workerId: number): Promise<WorkerRow | null> {
  const { rows } = await run.client.query<WorkerRow>(
    `SELECT lease_epoch::float8 AS epoch, active, node_name, standby_node,
            (extract(epoch FROM locked_until) * 1000)::float8 AS locked_until_ms
       FROM ${run.s}.worker WHERE id = $1`,
    [workerId],
  );
  return rows[0] ?? null;
}

/** Starts a node for `workerId` and waits until `ready` holds for its worker row. */
async function startNodeUntil(run: Run, workerId: number, url: string, ready: (row: WorkerRow, name: string, upMs: number) => boolean, what: string): Promise<{ child: ChildProcess; name: string }> {
  const name = `fo-${run.label}-${run.setting.key}-${++run.started}`;
  const startedAt = performance.now();
  const child = startNode({ url, schema: run.schema, workerId, name, args: run.setting.args, verbose });
  run.nodes.push(child);
  await until(
    async () => {
      if (hasExited(child)) throw new Error(`node ${name} exited (${child.exitCode ?? child.signalCode}) before ${what}`);
      const row = await readWorker(run, workerId).catch(() => null); // no schema yet
      return row !== null && ready(row, name, performance.now() - startedAt);
    },
    `node ${name} ${what}`,
    60_000,
  );
  return { child, name };
}

function startHolder(run: Run, workerId: number, url = db.url): Promise<{ child: ChildProcess; name: string }> {
  return startNodeUntil(run, workerId, url, (row, name) => row.active && row.node_name === name, 'to hold the lease');
}

function startStandby(run: Run, workerId: number): Promise<{ child: ChildProcess; name: string }> {
  return startNodeUntil(run, workerId, db.url, (row, name, upMs) => {
    if (row.standby_node === name) return true;
    if (upMs < STANDBY_SETTLE_MS || row.node_name === name) return false;
    // A standby that no longer writes standby_node (one waiting on a lock instead, say) is
    // taken to stand by once it has had ample time to start.
    if (!standbyUnmarked) console.error(`failover: ${name} did not write worker.standby_node; assuming it stands by ${STANDBY_SETTLE_MS / 1000} s after its start`);
    standbyUnmarked = true;
    return true;
  }, 'to stand by');
}

/** Queues `sleep 600` for the worker and waits until the holder runs its process. */
async function startLongTask(run: Run, workerId: number, holder: string): Promise<{ id: number; pid: number }> {
  const { rows } = await run.client.query<{ id: string }>(
    `INSERT INTO ${run.s}.task (state_id, worker_id, command) VALUES ('AW', $1, $2) RETURNING id`,
    [workerId, LONG_TASK],
  );
  const id = Number(rows[0]!.id);
  const pid = await until(
    async () => {
      const r = await run.client.query<{ pid: number | null }>(`SELECT pid FROM ${run.s}.task WHERE id = $1 AND state_id = 'AE' AND node_name = $2`, [id, holder]);
      return r.rows[0]?.pid;
    },
    `task ${id} to run on ${holder}`,
    30_000,
  );
  return { id, pid };
}

/**
 * Polls every 5 ms from t0 until the task has its run end and, when asked, the taker holds a
 * new term and the stamp task has started. A's last locked_until is the one seen under A's
 * term: a renewal that committed just before the kill counts.
 */
async function watchFailover(run: Run, w: { workerId: number; taskId: number; pid: number; taker: string | null; stampFile: string | null }, t0: number, before: WorkerRow): Promise<Seen> {
  const deadline = t0 + 2 * run.setting.leaseMs + recoveryDelayMs + 30_000;
  let lockedUntilMs = before.locked_until_ms!;
  let newTermMs: number | null = null;
  let firstTaskMs: number | null = null;
  let recovery: { ms: number; lagMs: number; pidAlive: boolean } | null = null;
  for (;;) {
    checkAborted();
    const { rows } = await run.client.query<{ epoch: number; active: boolean; node_name: string | null; locked_until_ms: number; ended_ms: number | null }>(
      `SELECT w.lease_epoch::float8 AS epoch, w.active, w.node_name,
              (extract(epoch FROM w.locked_until) * 1000)::float8 AS locked_until_ms,
              (extract(epoch FROM coalesce(r.finished, CASE WHEN t.state_id <> 'AE' THEN coalesce(t.finished, t.last_state_change) END)) * 1000)::float8 AS ended_ms
         FROM ${run.s}.worker w, ${run.s}.task t
         LEFT JOIN LATERAL (SELECT finished FROM ${run.s}.task_run
                             WHERE task_id = t.id AND finished IS NOT NULL ORDER BY attempt DESC LIMIT 1) r ON true
        WHERE w.id = $1 AND t.id = $2`,
      [w.workerId, w.taskId],
    );
    const now = nowMs();
    const row = rows[0]!;
    if (row.epoch === before.epoch) lockedUntilMs = row.locked_until_ms;
    if (recovery === null && row.ended_ms !== null) {
      // Seen at this poll, within ~5 ms of the recovery: is A's process still there?
      recovery = { ms: now - t0, lagMs: row.ended_ms - (lockedUntilMs + recoveryDelayMs), pidAlive: isProcessAlive(w.pid) };
    }
    if (w.taker !== null && newTermMs === null && row.epoch > before.epoch && row.active && row.node_name === w.taker) newTermMs = now - t0;
    if (w.stampFile !== null && firstTaskMs === null) {
      const stamp = stampTime(w.stampFile);
      if (stamp !== null) firstTaskMs = stamp - t0;
    }
    const waitingFor = [
      ...(recovery === null ? ['the task to be recovered'] : []),
      ...(w.taker !== null && newTermMs === null ? [`a new term held by ${w.taker}`] : []),
      ...(w.stampFile !== null && firstTaskMs === null ? ['the first new task'] : []),
    ];
    if (recovery !== null && waitingFor.length === 0) return { newTermMs, firstTaskMs, recoveredMs: recovery.ms, lagMs: recovery.lagMs, pidAlive: recovery.pidAlive };
    if (now > deadline) throw new Error(`${run.label} ${run.setting.key}: ${Math.round(now - t0)} ms after t0, still waiting for ${waitingFor.join(', ')}`);
    await sleep(5);
  }
}

function check(where: string, seen: Seen, pid: number): void {
  if (seen.lagMs < 0) fail(`${where}: the task was recovered ${(-seen.lagMs).toFixed(0)} ms BEFORE its worker's locked_until + recovery delay`);
  if (seen.pidAlive) fail(`${where}: the task's process ${pid} was still alive when the task was recovered (two live processes)`);
}

/**
 * Waits a random part of a renewal interval (half a lease) before a failure. Set-up takes about
 * the same time after every take-over, so without it each failure would come at the same
 * point of the lease, just before its first renewal: the slowest case for a lapse-driven
 * takeover, and a fixed phase against the renewals of the other nodes. With it the failure
 * falls at a uniformly random point of the renewal cycle, as a crash would.
 */
function randomPause(run: Run): Promise<void> {
  return sleep(Math.random() * (run.setting.leaseMs / 2));
}

/** Reads the worker row just before t0: the term and locked_until of the node about to fail. */
async function beforeFailure(run: Run, workerId: number): Promise<WorkerRow> {
  const row = await readWorker(run, workerId);
  if (!row?.active || row.locked_until_ms === null) throw new Error(`worker ${workerId} is not held before the failure`);
  return row;
}

/** 1. SIGKILL the holder while a standby waits; the standby becomes the next kill's holder. */
async function standbyTakeover(setting: Setting, kills: number): Promise<void> {
  await withRun('standby', setting, async (run) => {
    let holder = await startHolder(run, 1);
    for (let i = 1; i <= kills; i++) {
      const task = await startLongTask(run, 1, holder.name);
      const standby = await startStandby(run, 1);
      await randomPause(run);
      const before = await beforeFailure(run, 1);
      const stampFile = path.join(db.dir, `first-task-${setting.key}-${i}`);
      const t0 = nowMs();
      crashNode(holder.child);
      await run.client.query(`INSERT INTO ${run.s}.task (state_id, command) VALUES ('AW', $1)`, [[...db.stamp, stampFile]]);
      const seen = await watchFailover(run, { workerId: 1, taskId: task.id, pid: task.pid, taker: standby.name, stampFile }, t0, before);
      record('standby', setting, seen.newTermMs);
      record('standby.firstTask', setting, seen.firstTaskMs);
      record('standby.recovered', setting, seen.recoveredMs);
      record('standby.lag', setting, seen.lagMs);
      check(`standby takeover, ${setting.label}, kill ${i}`, seen, task.pid);
      holder = standby;
    }
  });
}

/** 2. SIGKILL the holder of worker 1 with no standby; worker 2's node is alive to notice. */
async function recoveryWithoutStandby(setting: Setting, samples: number): Promise<void> {
  await withRun('recovery', setting, async (run) => {
    await startHolder(run, 2);
    for (let i = 1; i <= samples; i++) {
      // A's lease lapses at a fixed point of its own renewal cycle, and the previous recovery
      // came at one of C's renewals: without a pause here A would start, and its lease lapse,
      // at the same point of C's cycle every time, and the lag would always be the same.
      await randomPause(run);
      const holder = await startHolder(run, 1);
      const task = await startLongTask(run, 1, holder.name);
      await randomPause(run);
      const before = await beforeFailure(run, 1);
      const t0 = nowMs();
      crashNode(holder.child);
      const seen = await watchFailover(run, { workerId: 1, taskId: task.id, pid: task.pid, taker: null, stampFile: null }, t0, before);
      record('recovery', setting, seen.recoveredMs);
      record('recovery.lag', setting, seen.lagMs);
      check(`recovery without a standby, ${setting.label}, kill ${i}`, seen, task.pid);
    }
  });
}

/** 3. Cut the holder's connections (a proxy); its standby connects directly. */
async function cutConnection(setting: Setting, samples: number): Promise<void> {
  await withRun('cut', setting, async (run) => {
    const { proxy, url } = await proxyFor(db.url);
    try {
      for (let i = 1; i <= samples; i++) {
        // A worker id per sample, so that its holder is the node behind the proxy.
        const holder = await startHolder(run, i, url);
        const task = await startLongTask(run, i, holder.name);
        const standby = await startStandby(run, i);
        await randomPause(run);
        const before = await beforeFailure(run, i);
        const t0 = nowMs();
        proxy.pause();
        const seen = await watchFailover(run, { workerId: i, taskId: task.id, pid: task.pid, taker: standby.name, stampFile: null }, t0, before);
        record('cut', setting, seen.newTermMs);
        record('cut.recovered', setting, seen.recoveredMs);
        record('cut.lag', setting, seen.lagMs);
        check(`cut connection, ${setting.label}, cut ${i}`, seen, task.pid);
        // The cut-off node cannot stop cleanly: it would wait for the database.
        const gone = new Promise((resolve) => holder.child.once('exit', resolve));
        crashNode(holder.child);
        if (!hasExited(holder.child)) await gone;
        proxy.resume();
        await stopNode(standby.child);
      }
    } finally {
      await proxy.close();
    }
  });
}

const FIGURES: Array<[string, string]> = [
  ['standby', 'standby takeover after SIGKILL: new term held by the standby'],
  ['standby.firstTask', 'standby takeover after SIGKILL: first new task started'],
  ['standby.recovered', "standby takeover after SIGKILL: the killed node's task recovered"],
  ['standby.lag', 'standby takeover after SIGKILL: recovery lag after lease end + recovery delay'],
  ['recovery', "recovery without a standby: the killed node's task recovered"],
  ['recovery.lag', 'recovery without a standby: recovery lag after lease end + recovery delay'],
  ['cut', 'cut connection: new term held by the standby'],
  ['cut.recovered', "cut connection: the cut node's task recovered"],
  ['cut.lag', 'cut connection: recovery lag after lease end + recovery delay'],
];

function report(): void {
  const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
  for (const [figure, what] of FIGURES) {
    for (const setting of [DEFAULTS, LEASE_4S]) {
      const values = samples.get(`${figure}.${setting.key}`);
      if (!values) continue;
      const p50 = Number(percentiles(values).p50);
      const max = Math.max(...values);
      console.log(`failover, ${what}, ${setting.label}: p50 ${seconds(p50)}, max ${seconds(max)} (n ${values.length})`);
      metric(`failover.${figure}.${setting.key}.p50`, p50);
      metric(`failover.${figure}.${setting.key}.max`, max);
    }
  }
  for (const setting of [DEFAULTS, LEASE_4S]) {
    const lags = ['standby.lag', 'recovery.lag', 'cut.lag'].flatMap((figure) => samples.get(`${figure}.${setting.key}`) ?? []);
    if (lags.length > 0) metric(`failover.lag.${setting.key}.max`, Math.max(...lags));
  }
  console.log('failover, the original pg_tasks at its defaults on this machine kind, for comparison: recovery after a median of 23.8 s (13–33 s), standby takeover after 7–14 s');
}

process.on('exit', killAllNodes);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    abortWaits(`the bench received ${signal}`);
    killAllNodes();
  });
}
const began = performance.now();
try {
  // Three lanes of about the same length (the defaults' standby kills alone take ~4 min).
  const lanes: Array<Array<() => Promise<void>>> = quick
    ? [[() => standbyTakeover(LEASE_4S, 2)], [() => recoveryWithoutStandby(LEASE_4S, 1)], [() => cutConnection(LEASE_4S, 1)]]
    : [
        [() => standbyTakeover(DEFAULTS, 10)],
        [() => recoveryWithoutStandby(DEFAULTS, 3), () => cutConnection(DEFAULTS, 3)],
        [() => standbyTakeover(LEASE_4S, 10), () => recoveryWithoutStandby(LEASE_4S, 5), () => cutConnection(LEASE_4S, 3)],
      ];
  const errors: Error[] = [];
  await Promise.allSettled(
    lanes.map(async (lane) => {
      try {
        for (const scenario of lane) await scenario();
      } catch (error) {
        // The first error is the cause: the other lanes then stop at their next wait (so that
        // the clean-up is not raced), and their errors only say so.
        errors.push(error instanceof Error ? error : new Error(String(error)));
        abortWaits('another scenario failed');
        throw error;
      }
    }),
  );
  if (errors[0]) throw errors[0];
  report();
  if (verbose) console.error(`failover: ${((performance.now() - began) / 1000).toFixed(0)} s`);
} finally {
  killAllNodes();
  await db.close();
}
if (failures > 0) {
  console.error(`failover: ${failures} FAIL${failures > 1 ? 's' : ''} (above)`);
  process.exitCode = 1;
}
