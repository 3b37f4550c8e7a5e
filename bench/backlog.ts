// Backlog scale, on one idle node (max-tasks 32):
//  1. start latency of a new task (commit of its AW row → the child's own start stamp, as in
//     start-latency.ts) while 1 000 vs 1 000 000 tasks wait in the node's group, and the claim
//     statement under EXPLAIN (ANALYZE, BUFFERS) in each case;
//  2. a bulk insert of 100 000 × /bin/true picked up by the idle node: commit → first task
//     started, → all done, tasks/s;
//  3. the node process's memory (VmRSS) idle, during and after the bulk run, with each backlog.
// The bulk run goes first, on the fresh table; the table is then emptied for the backlogs.
//   npx tsx bench/backlog.ts [--quick] [--n 200] [--big 1000000] [--bulk 100000] [--explain]
// --explain prints the claim's full plans to stderr. Uses DATABASE_URL, or an embedded
// PostgreSQL; with pg_stat_statements available, also the node's own claim and renewal times.
//
// The waiting tasks are pinned to worker 2, a worker with no node, in the node's group: the
// claim (and the renewal's "work waiting?" probe) must read past them, and nothing ever takes
// them away. That is not how a backlog the node may run looks to the claim: such a backlog
// sits at the head of task_waiting_idx (group_id, priority, last_state_change, id), and the
// claim stops after LIMIT rows. worker_id is not in that index's key, so tasks pinned to
// another worker are filtered one by one, and a new task (same priority, newer) sorts behind
// all of them: this is the worst case of the index, and a real one (tasks pinned to a worker
// that is down or busy, in a group other nodes serve). The EXPLAIN of the claim as worker 2
// itself would run it shows the other case, a backlog the claimer owns.
import path from 'node:path';
import { loadStatements } from '../src/sql/queries/index.js';
import { busy, nowMs, percentiles, readStamp, setUpBench, metric } from './lib.js';
import { assertNodeProcess, readStatements, resetStatements, rssMb, sleep, statementsUnavailable } from './statements.js';

const quick = process.argv.includes('--quick');
const arg = (name: string): number | undefined => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : undefined;
};
const n = arg('--n') ?? (quick ? 20 : 200);
const small = 1_000;
const big = arg('--big') ?? (quick ? 20_000 : 1_000_000);
const bulk = arg('--bulk') ?? (quick ? 5_000 : 100_000);
const showPlans = process.argv.includes('--explain');
const MAX_TASKS = 32;

const fmt = (count: number): string => count.toLocaleString('en-US').replace(/,/g, ' ');
const mb = (value: number): string => `${value.toFixed(0)} MB`;

const statements = (await statementsUnavailable()) === null;
const bench = await setUpBench(['--max-tasks', String(MAX_TASKS)], { statements });
const { client } = bench;
const s = `"${bench.schema}"`;
const queries = loadStatements(bench.schema);
const pid = bench.node.pid!;
assertNodeProcess(pid);
await sleep(3_000);
const rss: Array<[string, string]> = [['idle', mb(rssMb(pid))]];

async function addBacklog(count: number): Promise<void> {
  // One statement; the row trigger runs per row, the notification is one per statement.
  await client.query(`INSERT INTO ${s}.task (state_id, worker_id, command) SELECT 'AW', 2, '{/bin/true}' FROM generate_series(1, $1)`, [count]);
  // As autovacuum would soon: statistics for the planner, hint bits, the visibility map.
  await client.query(`VACUUM ANALYZE ${s}.task`);
}

async function startLatencies(label: string): Promise<number[]> {
  const latencies: number[] = [];
  for (let i = 0; i < n; i++) {
    const file = path.join(bench.dir, `${label}-${i}`);
    await client.query(`INSERT INTO ${s}.task (state_id, command) VALUES ('AW', $1)`, [[...bench.stamp, file]]);
    const committed = nowMs();
    latencies.push((await readStamp(file)) - committed);
    await sleep(20); // idle between tasks
  }
  return latencies;
}

interface Explained {
  ms: number;
  summary: string;
  plan: string[];
}

/** The claim under EXPLAIN (ANALYZE, BUFFERS) in a transaction rolled back: it claims nothing. */
async function explainClaim(workerId: number): Promise<Explained> {
  await client.query('BEGIN');
  try {
    // Planned as the node plans it (the bench's own client runs with enable_seqscan off).
    await client.query('SET LOCAL enable_seqscan = on');
    let epoch: number;
    if (workerId === 1) {
      const { rows } = await client.query<{ e: number }>(`SELECT lease_epoch AS e FROM ${s}.worker WHERE id = 1`);
      epoch = rows[0]!.e;
    } else {
      // A live lease for worker 2, only inside this transaction (its notification is dropped too).
      await client.query(`INSERT INTO ${s}.worker (id, group_id, active, locked_until, lease_epoch) VALUES ($1, 0, true, now() + interval '1 minute', 1)`, [workerId]);
      epoch = 1;
    }
    const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${queries.claimTasks.text}`, queries.claimTasks.values({
      groupId: 0, workerId, freeSlots: MAX_TASKS, epoch, nodeName: 'bench-explain', checkCommands: false,
    }));
    const plan = rows.map((r) => r['QUERY PLAN']);
    const ms = Number(/Execution Time: ([\d.]+) ms/.exec(plan.join('\n'))?.[1] ?? NaN);
    // The read of the waiting tasks: the scans on task (t is the UPDATE's own).
    const scans = plan.filter((l) => /Scan.* on task(?! t +\()( \w+)? +\(/.test(l)).map((l) => l.trim().replace(/^-> +/, '').replace(/ +\(.*$/, ''));
    const removed = plan.map((l) => /Rows Removed by Filter: (\d+)/.exec(l)?.[1]).filter((x) => x !== undefined).map(Number);
    const buffers = /Buffers: (.*)/.exec(plan.find((l) => /Buffers:/.test(l)) ?? '')?.[1] ?? '?';
    const summary = `${[...new Set(scans)].join(', ')}${removed.length ? `, ${fmt(Math.max(...removed))} rows removed by filter` : ''}, buffers ${buffers}`;
    return { ms, summary, plan };
  } finally {
    await client.query('ROLLBACK');
  }
}

interface Phase {
  waiting: number;
  latencies: number[];
  claim: Explained;
  nodeClaim?: { calls: number; meanMs: number } | undefined;
  nodeRenew?: { calls: number; meanMs: number } | undefined;
}

async function phase(waiting: number): Promise<Phase> {
  if (bench.nodeRole) await resetStatements(client, bench.nodeRole);
  const latencies = await startLatencies(`w${waiting}`);
  rss.push([`${fmt(waiting)} waiting`, mb(rssMb(pid))]);
  const stats = bench.nodeRole ? await readStatements(client, bench.nodeRole, bench.schema) : [];
  const claim = await explainClaim(1);
  if (showPlans) console.error(`claim as worker 1, ${fmt(waiting)} waiting (pinned to worker 2):\n${claim.plan.join('\n')}\n`);
  return {
    waiting,
    latencies,
    claim,
    nodeClaim: stats.find((x) => x.name === 'claimTasks'),
    nodeRenew: stats.find((x) => x.name === 'renewLease'),
  };
}

// 2. Bulk pick-up, run first: on the fresh table, never analysed, as after a new deployment
// (and as in throughput.ts). Autovacuum analyses it at its next round during the run.
if (bench.nodeRole) await resetStatements(client, bench.nodeRole);
// Sequential scans of the task table: a claim planned while the table looks small would read it
// whole. (The bench's own client does not seq-scan: setUpBench.)
const scans = async (): Promise<{ seq: number; idx: number }> => {
  await sleep(1_500); // backends report their table counters at most once a second
  const { rows } = await client.query<{ seq: string; idx: string }>(
    `SELECT seq_scan AS seq, coalesce(idx_scan, 0) AS idx FROM pg_stat_user_tables WHERE relid = '${s}.task'::regclass`,
  );
  return { seq: Number(rows[0]!.seq), idx: Number(rows[0]!.idx) };
};
const scansBefore = await scans();
let maxRss = rssMb(pid);
const sampler = setInterval(() => {
  maxRss = Math.max(maxRss, rssMb(pid));
}, 200);
const firstFile = path.join(bench.dir, 'bulk-first');
// The first row (smallest id, so claimed first) stamps its start; the rest are /bin/true.
await client.query(
  `INSERT INTO ${s}.task (state_id, command)
   SELECT 'AW', CASE WHEN i = 1 THEN $2::varchar[] ELSE '{/bin/true}' END FROM generate_series(1, $1) AS i`,
  [bulk, [...bench.stamp, firstFile]],
);
const committed = nowMs();
const firstStarted = (await readStamp(firstFile)) - committed;
for (;;) {
  if (!(await busy(bench))) break;
  await sleep(50);
}
const allDone = (nowMs() - committed) / 1000;
clearInterval(sampler);
rss.push([`during the ${fmt(bulk)} bulk run max`, mb(maxRss)]);
const bulkStats = bench.nodeRole ? await readStatements(client, bench.nodeRole, bench.schema) : [];
const bulkClaims = bulkStats.find((x) => x.name === 'claimTasks');
// Most claims of a bulk run carry the ends that freed their slots (issue 28).
const bulkTurnovers = bulkStats.find((x) => x.name === 'turnover');
const scansAfter = await scans();
await sleep(3_500);
rss.push(['5 s after it', mb(rssMb(pid))]);
const { rows: failed } = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${s}.task WHERE state_id <> 'CS'`);
if (failed[0]!.n > 0) throw new Error(`${failed[0]!.n} bulk tasks did not complete`);
metric('backlog.bulk.rate', bulk / allDone);
metric('backlog.bulk.seqScans', scansAfter.seq - scansBefore.seq);
const bulkLine =
  `backlog, bulk insert of ${fmt(bulk)} × /bin/true picked up by an idle node at ${MAX_TASKS}: first task started ${firstStarted.toFixed(1)} ms after the INSERT's commit, ` +
  `all done in ${allDone.toFixed(1)} s, ${(bulk / allDone).toFixed(0)} tasks/s` +
  (bulkClaims ? `; the node's claims: ${bulkClaims.calls}, mean ${bulkClaims.meanMs.toFixed(2)} ms, max ${bulkClaims.maxMs.toFixed(2)} ms` : '') +
  (bulkTurnovers ? `; its turnovers (ends + claim): ${bulkTurnovers.calls}, mean ${bulkTurnovers.meanMs.toFixed(2)} ms, max ${bulkTurnovers.maxMs.toFixed(2)} ms` : '') +
  `; sequential scans of the task table meanwhile: ${scansAfter.seq - scansBefore.seq} (index scans ${scansAfter.idx - scansBefore.idx})`;

// 1. Backlog scale, on an emptied table (the bulk run's rows gone).
await client.query(`TRUNCATE ${s}.task_run, ${s}.task`); // TRUNCATE fires no delete trigger: both at once
await addBacklog(small);
const low = await phase(small);
await addBacklog(big - small);
const high = await phase(big);
const own = await explainClaim(2);
if (showPlans) console.error(`claim as worker 2, whose ${fmt(big)} waiting tasks they are:\n${own.plan.join('\n')}\n`);

const pl = percentiles(low.latencies);
const ph = percentiles(high.latencies);
metric('backlog.ratio', Number(ph.p50) / Number(pl.p50));
console.log(
  `backlog, start latency on an idle node (${n} sequential tasks) with ${fmt(small)} waiting: p50 ${pl.p50} ms, p95 ${pl.p95} ms, p99 ${pl.p99} ms; ` +
    `with ${fmt(big)} waiting: p50 ${ph.p50} ms, p95 ${ph.p95} ms, p99 ${ph.p99} ms; p50 ratio ${(Number(ph.p50) / Number(pl.p50)).toFixed(2)} ` +
    `(goal ≤ 1.5; the waiting tasks are pinned to worker 2 of the same group, which has no node)`,
);
const nodeTimes = (p: Phase): string =>
  `claimTasks ${p.nodeClaim ? `${p.nodeClaim.meanMs.toFixed(2)} ms × ${p.nodeClaim.calls}` : '–'}, renewLease ${p.nodeRenew ? `${p.nodeRenew.meanMs.toFixed(2)} ms × ${p.nodeRenew.calls}` : '–'}`;
console.log(
  `backlog, claim statement (EXPLAIN ANALYZE, rolled back) with ${fmt(small)} waiting: ${low.claim.ms.toFixed(2)} ms (${low.claim.summary}); ` +
    `with ${fmt(big)} waiting: ${high.claim.ms.toFixed(2)} ms (${high.claim.summary}); ` +
    `the same claimed by worker 2, whose tasks they are: ${own.ms.toFixed(2)} ms (${own.summary})` +
    (bench.nodeRole ? `; the node's own statements (pg_stat_statements, mean): ${fmt(small)} waiting ${nodeTimes(low)}; ${fmt(big)} waiting ${nodeTimes(high)}` : ''),
);

console.log(bulkLine);

// 3. Memory.
console.log(`node RSS (VmRSS of the node process): ${rss.map(([label, value]) => `${label} ${value}`).join(', ')}`);
await bench.close();
