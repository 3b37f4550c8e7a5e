// A fleet on one database (issue 28): N nodes × 8 slots against one durable PostgreSQL, and
// what each task costs the server as N grows. The nodes are real TaskNodes (claim, end,
// lease, listener) in a few processes (bench/fleet-nodes.ts), with an executor that starts no
// process and "runs" each task for a set time (NodeOptions.executor: benches and tests only).
//   npx tsx bench/fleet.ts [--quick] [--fast] [--nodes 10,50]
// For each N: tasks/s with 0 ms and 100 ms tasks; statements (pg_stat_statements, the nodes
// connecting as a role of their own), commits (pg_stat_database) and WAL bytes
// (pg_current_wal_lsn) per task; the server's CPU per task (/proc of its processes); start
// latency from the insert's send (p50/p99, and the first start after a quiet spell);
// empty claims (see CLAIMS); connections held under load and at rest.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { prepareSchema } from '../src/db/migrate.js';
import { startEmbedded, type EmbeddedServer } from '../src/embedded/index.js';
import { fast, metric, nowMs, percentiles } from './lib.js';
import { createNodeRole, readStatements, resetStatements, statementsUnavailable } from './statements.js';

const quick = process.argv.includes('--quick');
const nodesArg = process.argv.indexOf('--nodes');
const SIZES = nodesArg > 0 ? process.argv[nodesArg + 1]!.split(',').map(Number) : quick ? [5, 20] : [10, 50, 200];
const SLOTS = 8;
// Nodes per process: 25 (200 nodes in 8 processes), not a process per node (each would cost
// ~60 MB for nothing). One process of 50 nodes, on a 2-core machine at a load of 20 (other
// agents), starved past the fence: renewals late by 17 s, leases lost.
const PER_PROCESS = 25;
// CLAIMS: a claim that comes back with no row while the bench's tasks still wait (every node
// is woken by the same notification, and SKIP LOCKED passes over rows another node is taking):
// the fleet's price for waking everyone. Counted from the nodes' claim events.
const ROUNDS = quick ? 15 : 50;

// The server: an embedded one (durable unless --fast) that preloads pg_stat_statements and
// allows the connections of 200 nodes (6 each under load), or DATABASE_URL as it is.
// Its own temporary directory, as bench/lib.ts does: the server's user must be able to enter it.
const dataDir = process.env.DATABASE_URL ? null : mkdtempSync(path.join(os.tmpdir(), 'pgt-fleet-pg-'));
let embedded: EmbeddedServer | null = null;
let url = process.env.DATABASE_URL;
if (!url && dataDir) {
  embedded = await startEmbedded({ dataDir, fast, preload: ['pg_stat_statements'] });
  const setup = new pg.Client({ connectionString: embedded.url });
  await setup.connect();
  await setup.query(`ALTER SYSTEM SET max_connections = ${Math.max(...SIZES) * 7 + 50}`);
  await setup.end();
  await embedded.stop();
  embedded = await startEmbedded({ dataDir, fast, preload: ['pg_stat_statements'] });
  url = embedded.url;
}
if (!url) throw new Error('no server');
const client = new pg.Client({ connectionString: url });
await client.connect();
let own = 0; // the bench's own statements: each is a commit in pg_stat_database
const q = <R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<pg.QueryResult<R>> => {
  own++;
  return client.query<R>(text, values);
};
const statementsWhy = await statementsUnavailable();
const role = statementsWhy ? null : await createNodeRole(client, url);
const nodeUrl = role?.url ?? url;
const schema = `fleet_${process.pid}`;
const s = `"${schema}"`;
const maxConnections = Number((await q<{ m: string }>("SELECT current_setting('max_connections') AS m")).rows[0]!.m);
const version = (await q<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v;
const durability = (await q<{ f: string; c: string }>("SELECT current_setting('fsync') AS f, current_setting('synchronous_commit') AS c")).rows[0]!;

{
  const pool = new pg.Pool({ connectionString: nodeUrl, max: 1 });
  await prepareSchema(pool, schema, true);
  await pool.end();
}

/** CPU ms so far of the server (postmaster, its live children, those it reaped) and of the bench's node processes. */
function cpu(postmaster: number, nodePids: number[]): { postgres: number; nodes: number } {
  const read = (pid: number): { ppid: number; own: number; reaped: number } | null => {
    try {
      const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
      return { ppid: Number(f[1]), own: Number(f[11]) + Number(f[12]), reaped: Number(f[13]) + Number(f[14]) };
    } catch {
      return null;
    }
  };
  let postgres = 0;
  const pm = read(postmaster);
  if (pm) postgres += pm.own + pm.reaped;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const p = read(Number(entry));
    if (p && p.ppid === postmaster) postgres += p.own;
  }
  const nodes = nodePids.reduce((sum, pid) => sum + (read(pid)?.own ?? 0), 0);
  return { postgres: postgres * 10, nodes: nodes * 10 }; // USER_HZ 100: a tick is 10 ms
}
const backend = Number((await q<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid);
const postmaster = Number(readFileSync(`/proc/${backend}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);

interface Fleet {
  children: ChildProcess[];
  ended(): number;
  report(): Promise<Array<{ latencies: number[]; claims: { rounds: number; empty: number; asked: number; claimed: number } }>>;
  stop(): Promise<void>;
}

async function startFleet(n: number): Promise<Fleet> {
  const children: ChildProcess[] = [];
  const endedBy: number[] = [];
  const waiters: Array<(line: string) => void> = [];
  const ready: Array<Promise<void>> = [];
  for (let first = 1, i = 0; first <= n; first += PER_PROCESS, i++) {
    const count = Math.min(PER_PROCESS, n - first + 1);
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'fleet-nodes.ts'), nodeUrl, schema, String(first), String(count)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    children.push(child);
    endedBy.push(0);
    ready.push(new Promise((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`a fleet process exited (${code}) before its nodes were ready`)));
      createInterface({ input: child.stdout }).on('line', (line) => {
        if (line === 'ready') resolve();
        else if (line.startsWith('ended ')) endedBy[i] = Number(line.slice(6));
        else if (line.startsWith('report ')) waiters.shift()?.(line.slice(7));
        else if (line.startsWith('lost ')) lost ??= line;
      });
    }));
  }
  try {
    await Promise.all(ready);
  } catch (error) {
    // A process that could not start its nodes (a connection timed out while the fleet came
    // up at once on a machine too small for it): the size is not sustained. Its siblings are
    // ended here, before the schema and the role they use are dropped.
    await Promise.all(children.map((child) => (child.exitCode !== null || child.signalCode !== null
      ? Promise.resolve()
      : new Promise((resolve) => {
        child.once('exit', resolve);
        child.kill('SIGKILL');
      }))));
    throw new NotSustained((error as Error).message);
  }
  return {
    children,
    ended: () => endedBy.reduce((a, b) => a + b, 0),
    async report() {
      const replies = children.map(() => new Promise<string>((resolve) => waiters.push(resolve)));
      for (const child of children) child.stdin!.write('report\n');
      return (await Promise.all(replies)).map((text) => JSON.parse(text) as Awaited<ReturnType<Fleet['report']>>[number]);
    },
    async stop() {
      // A process that has exited already (it crashed) has nothing to stop.
      await Promise.all(children.filter((child) => child.exitCode === null && child.signalCode === null).map((child) => new Promise((resolve) => {
        child.once('exit', resolve);
        child.stdin!.write('stop\n');
      })));
    },
  };
}

/** The first node that lost its lease, as its process said. */
let lost: string | null = null;
/** A size this machine could not sustain: a simulated node's process starved past its fence. */
class NotSustained extends Error {}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Snapshot { statements: number; commits: number; lsn: string; at: number; cpu: { postgres: number; nodes: number } }
async function snapshot(fleet: Fleet, end: boolean): Promise<Snapshot> {
  // An idle backend reports its commits to pg_stat_database within 10 s (PostgreSQL 15:
  // PGSTAT_IDLE_INTERVAL, when its last report was under a second before). At a phase's end
  // the rest is read first, so that the wait's renewals count in the commits only.
  const read = async (): Promise<Omit<Snapshot, 'commits'>> => ({
    statements: role
      ? Number((await q<{ n: string }>('SELECT coalesce(sum(calls), 0) AS n FROM pg_stat_statements WHERE userid = (SELECT oid FROM pg_roles WHERE rolname = $1)', [role.name])).rows[0]!.n)
      : 0,
    lsn: (await q<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')).rows[0]!.l,
    at: nowMs(),
    cpu: cpu(postmaster, fleet.children.map((c) => c.pid!)),
  });
  const rest = end ? await read() : null;
  await sleep(11_000);
  const commits = Number((await q<{ n: string }>('SELECT xact_commit AS n FROM pg_stat_database WHERE datname = current_database()')).rows[0]!.n) - own;
  return { ...(rest ?? (await read())), commits };
}


async function connections(): Promise<number> {
  return Number((await q<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE usename = $1 AND application_name = 'pg-tasks'", [role?.name ?? 'postgres'])).rows[0]!.n);
}

/** `count` tasks of runMs queued at once; the clock runs from the insert's commit to the last end. */
async function throughput(fleet: Fleet, n: number, runMs: number, count: number): Promise<void> {
  const before = await snapshot(fleet, false);
  // From here: the start-up's tail (each node's take makes every other node read its row)
  // is not this phase's.
  if (role) {
    await resetStatements(client, role.name);
    before.statements = 0;
  }
  await fleet.report();
  const base = fleet.ended();
  await q(`INSERT INTO ${s}.task (state_id, command) SELECT 'AW', ARRAY['fleet', '0', $2::text] FROM generate_series(1, $1)`, [count, String(runMs)]);
  const start = nowMs();
  let held = 0;
  let progress = { ended: 0, at: nowMs() };
  for (let i = 0; fleet.ended() - base < count; i++) {
    if (lost) throw new NotSustained(`a simulated node lost its lease (${lost}): its tasks are left to recovery`);
    if (fleet.ended() !== progress.ended) progress = { ended: fleet.ended(), at: nowMs() };
    // A liveness bound, not a measure: a minute without one task ending is a stuck run.
    if (nowMs() - progress.at > 60_000) throw new Error(`no task ended for a minute (${fleet.ended() - base} of ${count})`);
    if (i % 10 === 0) held = Math.max(held, await connections());
    await sleep(20);
  }
  const seconds = (nowMs() - start) / 1000;
  const after = await snapshot(fleet, true);
  // Which statements, a task: read before the snapshot's own wait adds renewals.
  const top = role ? (await readStatements(client, role.name, schema)).slice(0, 6).map((st) => `${st.name} ${(st.calls / count).toFixed(3)}`).join(', ') : '';
  const claims = (await fleet.report()).reduce((sum, r) => ({ rounds: sum.rounds + r.claims.rounds, empty: sum.empty + r.claims.empty }), { rounds: 0, empty: 0 });
  const failed = Number((await q<{ n: string }>(`SELECT count(*) AS n FROM ${s}.task WHERE state_id <> 'CS'`)).rows[0]!.n);
  if (failed > 0) throw new Error(`${failed} tasks did not end CS`);
  const wal = Number((await q<{ b: string }>('SELECT pg_wal_lsn_diff($1, $2) AS b', [after.lsn, before.lsn])).rows[0]!.b);
  const rate = count / seconds;
  const per = (v: number): string => (v / count).toFixed(2);
  const key = `fleet.${n}.${runMs}ms`;
  metric(`${key}.rate`, rate);
  metric(`${key}.perNode`, rate / n);
  metric(`${key}.statementsPerTask`, (after.statements - before.statements) / count);
  metric(`${key}.pgCpuUsPerTask`, ((after.cpu.postgres - before.cpu.postgres) * 1000) / count);
  console.log(
    `fleet ${n} × ${SLOTS}, ${runMs} ms tasks: ${count} in ${seconds.toFixed(2)} s, ${rate.toFixed(0)}/s (${(rate / n).toFixed(1)}/s a node); per task ` +
      `${role ? per(after.statements - before.statements) : 'n/a'} statements, ${per(after.commits - before.commits)} commits, ${(wal / count).toFixed(0)} WAL bytes, ` +
      `PostgreSQL CPU ${(((after.cpu.postgres - before.cpu.postgres) * 1000) / count).toFixed(0)} µs, node CPU ${(((after.cpu.nodes - before.cpu.nodes) * 1000) / count).toFixed(0)} µs; ` +
      `claims ${claims.rounds} (${(claims.rounds / count).toFixed(2)} a task), empty ${claims.empty} (${(claims.empty / count).toFixed(2)} a task); ` +
      `connections held up to ${held} (${(held / n).toFixed(1)} a node)${top ? `; statements a task: ${top}` : ''}`,
  );
  await q(`TRUNCATE ${s}.task CASCADE`);
}

/**
 * Just after a snapshot (11 s with no task: past the pool's idle timeout, 10 s): connections and
 * the server's CPU at rest, then start latency from the insert's send, one task at a time.
 */
async function latency(fleet: Fleet, n: number, count: number): Promise<void> {
  const rest = await connections();
  // The server's CPU over 10 s with the fleet at rest (renewals, and their pings that every
  // node hears), once the pool's connections have closed and autovacuum is done with the burst.
  await sleep(5_000);
  const restFrom = cpu(postmaster, []).postgres;
  await sleep(10_000);
  const restMs = (cpu(postmaster, []).postgres - restFrom) / 10;
  const idle = `PostgreSQL CPU at rest ${restMs.toFixed(1)} ms a second (${((restMs / n) * 1000).toFixed(0)} µs a node a second)`;
  metric(`fleet.${n}.pgCpuRestUsPerNodeSecond`, (restMs / n) * 1000);
  await fleet.report();
  const base = fleet.ended();
  for (let i = 0; i < count; i++) {
    await q(`INSERT INTO ${s}.task (state_id, command) VALUES ('AW', ARRAY['fleet', $1::text, '0'])`, [String(nowMs())]);
    const sentAt = nowMs();
    while (fleet.ended() - base <= i) {
      if (lost) throw new NotSustained(`a simulated node lost its lease (${lost}): its tasks are left to recovery`);
      if (nowMs() - sentAt > 60_000) throw new Error(`task ${i + 1} did not end within a minute`);
      await sleep(2);
    }
    await sleep(20);
  }
  const reports = await fleet.report();
  const all = reports.flatMap((r) => r.latencies);
  const empty = reports.reduce((sum, r) => sum + r.claims.empty, 0);
  const firstAfterIdle = all[0]!;
  const p = percentiles(all.slice(1));
  metric(`fleet.${n}.start.p50`, Number(p.p50));
  metric(`fleet.${n}.start.p99`, Number(p.p99));
  metric(`fleet.${n}.connections.rest`, rest / n);
  console.log(
    `fleet ${n}: at rest ${rest} connections (${(rest / n).toFixed(1)} a node), ${idle}; start latency from the insert's send, one task at a time: ` +
      `first after 26 s at rest ${firstAfterIdle.toFixed(2)} ms, then p50 ${p.p50}, p99 ${p.p99} ms (${count - 1} tasks); ` +
      `each insert wakes every node: ${(empty / count).toFixed(1)} empty claims a task`,
  );
  await q(`TRUNCATE ${s}.task CASCADE`);
}

console.log(
  `fleet: PostgreSQL ${version} (${embedded ? 'embedded' : 'DATABASE_URL'}, fsync ${durability.f}, synchronous_commit ${durability.c}, max_connections ${maxConnections}); ` +
    `${role ? 'statements by pg_stat_statements' : `statements not counted: ${statementsWhy}`}; ${os.cpus().length} cores`,
);
try {
  for (const n of SIZES) {
    if (n * 6 + 10 > maxConnections) {
      console.log(`fleet ${n} × ${SLOTS}: skipped, ${n} nodes need up to ${n * 6} connections and the server allows ${maxConnections}`);
      continue;
    }
    let fleet: Fleet | null = null;
    try {
      fleet = await startFleet(n);
      await throughput(fleet, n, 0, n * SLOTS * ROUNDS);
      await throughput(fleet, n, 100, n * SLOTS * (quick ? 10 : 30));
      await latency(fleet, n, quick ? 30 : 100);
    } catch (error) {
      if (!(error instanceof NotSustained)) throw error;
      // The limit of this machine (the nodes share its cores with the server), reported as a
      // figure rather than a failed run; a larger fleet would not fare better.
      console.log(`fleet ${n} × ${SLOTS}: not sustained on this machine (${n} nodes in ${Math.ceil(n / PER_PROCESS)} processes on ${os.cpus().length} cores beside the server): ${error.message}`);
      break;
    } finally {
      await fleet?.stop();
      lost = null;
    }
  }
} finally {
  await client.query(`DROP SCHEMA ${s} CASCADE`).catch(() => undefined);
  await role?.drop();
  await client.end();
  await embedded?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}
