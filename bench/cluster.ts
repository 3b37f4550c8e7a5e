// Cluster: N × /bin/true on 4 nodes (worker ids 1–4, 8 slots each) sharing group 0's queue,
// against 1 node with 32 slots on the same N, both measured in this run on the same server.
//   npx tsx bench/cluster.ts [--quick] [--n 10000] [--verbose]
//
// Claim conflicts are read from the database side, with pg_stat_statements (the embedded
// server is started with it preloaded; a DATABASE_URL server is used only if it already has
// it, and then any other pg-tasks node on that database adds to the figures): the claim
// statement's calls C and rows R from the resume to the end. The empty claims K are exact:
// every claim runs in a transaction of its own and stamps the rows it takes with started =
// now(), the transaction's start, so the non-empty claims are the distinct (worker_id,
// started) pairs of the tasks, and K = C − that. K counts every empty claim, including each
// node's normal last one, made after another node took the last waiting task (so up to 4 are
// expected; more are conflicts). Short but non-empty claims are not counted: the statement's
// LIMIT (the node's free slots) is not recorded anywhere; N/C shows how well claims batch (R
// is N, plus a row of nulls for each turnover that wrote ends but claimed nothing).
// Both runs pay pg_stat_statements' small cost per statement, so the 1 × 32 figure here is
// comparable with the cluster's, not with throughput.ts's.
//
// Each task ran exactly once: all N end CS, and the claim statement (the only way from AW to
// AE, where a process is started) returned R = N rows in all, so no task was claimed twice.
// Without pg_stat_statements, the evidence is the state machine's: a task is queued again
// (and could run twice) only by the recovery of a worker whose lease was lost, and every
// worker kept the lease term it had before the resume, which each task carries (lease_epoch).
import { spawn, type ChildProcess } from 'node:child_process';
import type pg from 'pg';
import { setUpDatabase, arg, metric } from './lib.js';

const quick = process.argv.includes('--quick');
const verbose = process.argv.includes('--verbose');
const n = Number(arg('--n') ?? (quick ? 500 : 10_000));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface ClaimStats {
  calls: number;
  rows: number;
}

interface RunResult {
  rate: number;
  /** Tasks run by each worker id. */
  perNode: number[];
  /** Claims from resume to the end; null without pg_stat_statements. */
  claims: (ClaimStats & { nonEmpty: number }) | null;
}

const db = await setUpDatabase({ preload: ['pg_stat_statements'] });
const { client } = db;
// This client's polls read partial indexes, whatever the statistics of a new table say.
await client.query('SET enable_seqscan = off');

/** Whether pg_stat_statements can be read; created on the embedded server, never on DATABASE_URL's. */
async function hasStatStatements(): Promise<boolean> {
  try {
    if (!process.env.DATABASE_URL) await client.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    await client.query('SELECT calls FROM pg_stat_statements LIMIT 1');
    return true;
  } catch {
    return false;
  }
}

/**
 * The claim statement's running totals in this database, whatever the schema: PostgreSQL 18
 * identifies a statement by the names of its tables, not their schema, so the claims of every
 * schema share one entry (with the text of the first seen). Runs take differences.
 */
async function claimStats(c: pg.Client): Promise<ClaimStats> {
  const { rows } = await c.query<{ calls: string; rows: string }>(
    `SELECT coalesce(sum(calls), 0) AS calls, coalesce(sum(rows), 0) AS rows
       FROM pg_stat_statements
      WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND strpos(query, 'any_worker AS') > 0`,
  );
  return { calls: Number(rows[0]!.calls), rows: Number(rows[0]!.rows) };
}

function startNode(schema: string, workerId: number, maxTasks: number): ChildProcess {
  return spawn(
    process.execPath,
    ['--import', 'tsx', 'src/cli/main.ts', '--schema', schema, 'node', '--worker-id', String(workerId), '--max-tasks', String(maxTasks), '--log-level', 'warn'],
    { env: { ...process.env, DATABASE_URL: db.url }, stdio: ['ignore', 'inherit', 'inherit'] },
  );
}

/** SIGTERM to the node's own pid, then waits for it to exit; SIGKILL (same pid) if it hangs 30 s. */
async function stopNode(node: ChildProcess): Promise<void> {
  if (node.exitCode !== null || node.signalCode !== null) return;
  const exited = new Promise((resolve) => node.once('exit', resolve));
  node.kill('SIGTERM');
  const timer = setTimeout(() => {
    console.error(`node ${node.pid} did not exit 30 s after SIGTERM: SIGKILL`);
    node.kill('SIGKILL');
  }, 30_000);
  await exited;
  clearTimeout(timer);
}

async function run(workerIds: number[], maxTasks: number, stats: boolean): Promise<RunResult> {
  const schema = `bench_cluster_${process.pid}_${workerIds.length}x${maxTasks}`;
  const s = `"${schema}"`;
  const ids = workerIds;
  const nodes = ids.map((id) => startNode(schema, id, maxTasks));
  try {
    // The first node creates the schema; the others wait on the migration lock.
    for (let i = 0; ; i++) {
      const r = await client
        .query<{ n: number }>(`SELECT count(*)::int AS n FROM ${s}.worker WHERE id = ANY($1) AND active`, [ids])
        .catch(() => ({ rows: [{ n: 0 }] }));
      if (r.rows[0]!.n === ids.length) break;
      if (nodes.some((node) => node.exitCode !== null || node.signalCode !== null)) throw new Error('a node exited before taking its lease');
      if (i > 1200) throw new Error('the nodes did not take their leases within 60 s');
      await sleep(50);
    }
    await client.query(`UPDATE ${s}.worker SET stop = 1 WHERE id = ANY($1)`, [ids]);
    // A node learns its stop code from a notification and a read: no acknowledgement to wait
    // for, so a pause for it; that no task was claimed meanwhile is checked below.
    await sleep(500);
    await client.query(`INSERT INTO ${s}.task (state_id, command) SELECT 'AW', '{/bin/true}' FROM generate_series(1, $1)`, [n]);
    const epochs = await client.query<{ id: number; lease_epoch: string }>(`SELECT id, lease_epoch FROM ${s}.worker WHERE id = ANY($1) ORDER BY id`, [ids]);
    const waiting = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${s}.task WHERE state_id = 'AW'`);
    if (waiting.rows[0]!.n !== n) throw new Error(`${n - waiting.rows[0]!.n} tasks were claimed while the nodes were paused`);
    const before = stats ? await claimStats(client) : null;

    const started = performance.now();
    await client.query(`UPDATE ${s}.worker SET stop = 0 WHERE id = ANY($1)`, [ids]);
    // What is left, read from partial indexes (the waiting tasks', the running ones'): a count
    // over every row every 20 ms would cost CPU the nodes are measured against.
    for (let left = n, progress = performance.now(); ; ) {
      const { rows } = await client.query<{ n: number }>(
        `SELECT (SELECT count(*) FROM ${s}.task WHERE state_id = 'AW' AND group_id = 0 AND worker_id IS NULL AND run_after IS NULL AND live_worker_id IS NULL AND deps_left = 0)::int
              + (SELECT count(*) FROM ${s}.task WHERE state_id IN ('AE', 'AC') AND worker_id = ANY($1))::int AS n`,
        [ids],
      );
      if (rows[0]!.n === 0) break;
      if (rows[0]!.n < left) [left, progress] = [rows[0]!.n, performance.now()];
      if (performance.now() - progress > 60_000) throw new Error(`no task ended for 60 s (${left} left)`);
      if (nodes.some((node) => node.exitCode !== null || node.signalCode !== null)) throw new Error('a node exited during the run');
      await sleep(20);
    }
    const rate = n / ((performance.now() - started) / 1000);
    // A node's last (empty) claim may come just after another node wrote the last result.
    await sleep(200);
    const after = stats ? await claimStats(client) : null;

    const check = await client.query<{ cs: number; total: number; ok: number; claims: number }>(
      `SELECT count(*) FILTER (WHERE t.state_id = 'CS')::int AS cs, count(*)::int AS total,
              count(*) FILTER (WHERE t.state_id = 'CS' AND t.exit_code = 0 AND t.started IS NOT NULL
                                 AND t.finished >= t.started AND t.lease_epoch = w.lease_epoch)::int AS ok,
              count(DISTINCT (t.worker_id, t.started))::int AS claims
         FROM ${s}.task t LEFT JOIN ${s}.worker w ON w.id = t.worker_id`,
    );
    const { cs, total, ok, claims } = check.rows[0]!;
    if (total !== n || cs !== n) throw new Error(`${n - cs} of ${n} tasks did not end CS`);
    if (ok !== n) throw new Error(`${n - ok} tasks lack a start, a finish or their worker's lease term`);
    const epochsAfter = await client.query<{ id: number; lease_epoch: string }>(`SELECT id, lease_epoch FROM ${s}.worker WHERE id = ANY($1) ORDER BY id`, [ids]);
    if (JSON.stringify(epochsAfter.rows) !== JSON.stringify(epochs.rows)) throw new Error('a worker lost its lease during the run');
    // Each claimed task is one row; a turnover that claimed nothing still answers one row (of
    // nulls: the ends it wrote), so up to one more a call.
    if (after && before) {
      const [rows, calls] = [after.rows - before.rows, after.calls - before.calls];
      if (rows < n || rows > n + calls) throw new Error(`the claims returned ${rows} rows in ${calls} calls for ${n} tasks (other nodes on this database?)`);
    }

    const shares = await client.query<{ worker_id: number; n: number }>(`SELECT worker_id, count(*)::int AS n FROM ${s}.task GROUP BY worker_id`);
    const perNode = ids.map((id) => shares.rows.find((r) => r.worker_id === id)?.n ?? 0);
    return {
      rate,
      perNode,
      claims: after && before ? { calls: after.calls - before.calls, rows: n, nonEmpty: claims } : null,
    };
  } finally {
    await Promise.all(nodes.map(stopNode));
    await client.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
  }
}

function describe(label: string, r: RunResult): string {
  const c = r.claims;
  const claims = c ? `${c.calls} calls, ${c.rows} tasks, ${(c.rows / c.calls).toFixed(2)} a claim, ${c.calls - c.nonEmpty} empty` : 'not measured';
  return `${label}: ${r.rate.toFixed(0)}/s, per node ${r.perNode.join(', ')}; claims ${claims}`;
}

try {
  const stats = await hasStatStatements();
  const cluster = await run([1, 2, 3, 4], 8, stats);
  const single = await run([1], 32, stats);
  if (verbose) console.error(`${describe('4 × 8', cluster)}\n${describe('1 × 32', single)}`);
  metric('cluster.ratio', cluster.rate / single.rate);
  const c = cluster.claims;
  const claims = c
    ? `claims: ${c.calls} calls, ${c.rows} tasks, ${(c.rows / c.calls).toFixed(2)} a claim, ${c.calls - c.nonEmpty} empty`
    : 'claim conflicts not measured (no pg_stat_statements on this server)';
  console.log(
    `cluster, 4 nodes × 8 slots, ${n} × /bin/true: ${cluster.rate.toFixed(0)}/s aggregate ` +
      `(1 node × 32: ${single.rate.toFixed(0)}/s, ratio ${(cluster.rate / single.rate).toFixed(2)}); ` +
      `per node ${Math.min(...cluster.perNode)}…${Math.max(...cluster.perNode)} tasks; ${claims}`,
  );
} finally {
  await db.close();
}
