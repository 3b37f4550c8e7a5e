// graphile-worker, the peer pg-tasks is compared against, measured the same way on the same
// PostgreSQL: throughput of N × /bin/true against the C posix_spawn ceiling, and start latency on an
// idle worker. graphile-worker runs as a separate process (bench/graphile-worker-process.ts) with
// its defaults: LISTEN/NOTIFY, pollInterval 2000 ms.
//   npx tsx bench/graphile.ts [--quick] [--fast] [--n 5000] [--concurrency 8,32] [--latency-n 300]
import path from 'node:path';
import { spawnPeer, stopPeer, type PeerProcess } from './peers.js';
import { againstCeiling, nowMs, percentiles, readStamp, setUpDatabase, type BenchDatabase, metric, arg, latencyText } from './lib.js';

const quick = process.argv.includes('--quick');
const n = Number(arg('--n') ?? (quick ? 200 : 5000));
const levels = (arg('--concurrency') ?? '8,32').split(',').map(Number);
const latencyN = Number(arg('--latency-n') ?? (quick ? 20 : 300));

const db = await setUpDatabase();
const schema = `graphile_bench_${process.pid}`;
const s = `"${schema}"`;

/** Starts the graphile-worker process; resolves once it has created its schema. */
async function startWorker(bench: BenchDatabase, concurrency: number, waitForGo: boolean): Promise<PeerProcess> {
  const worker = spawnPeer('graphile-worker-process.ts', 'graphile-worker', bench.url, schema, concurrency, waitForGo);
  await worker.next('migrated');
  return worker;
}

/** Stops the worker, drops its schema. */
async function stopWorker(worker: PeerProcess): Promise<void> {
  await stopPeer(worker);
  await db.client.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
}

/** The jobs are queued while the worker is not running, then timed from its start to the last job done. */
async function graphileThroughput(count: number, concurrency: number): Promise<number> {
  const worker = await startWorker(db, concurrency, true);
  try {
    await db.client.query(
      `SELECT ${s}.add_jobs(array_agg(json_populate_record(NULL::${s}.job_spec, json_build_object('identifier', 'run', 'payload', $2::json))))
         FROM generate_series(1, $1)`,
      [count, JSON.stringify({ command: ['/bin/true'] })],
    );
    const started = performance.now();
    worker.child.send('go');
    for (;;) {
      // Done jobs are deleted; a failed one stays (to be retried later) with its error.
      const { rows } = await db.client.query<{ left: number; failed: number }>(
        `SELECT count(*)::int AS left, count(last_error)::int AS failed FROM ${s}._private_jobs`,
      );
      if (rows[0]!.failed > 0) throw new Error(`${rows[0]!.failed} graphile-worker jobs failed`);
      if (rows[0]!.left === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return count / ((performance.now() - started) / 1000);
  } finally {
    await stopWorker(worker);
  }
}

/** From the send and from the acknowledgement of add_job (client clock) to the child's own start stamp, on an idle worker. */
async function graphileStartLatency(count: number): Promise<{ send: number[]; ack: number[] }> {
  const worker = await startWorker(db, 8, false);
  try {
    await worker.next('listening');
    await new Promise((resolve) => setTimeout(resolve, 200)); // its first look for jobs found none
    const send: number[] = [];
    const ack: number[] = [];
    for (let i = 0; i < count; i++) {
      const file = path.join(db.dir, `g${i}`);
      const sent = nowMs();
      await db.client.query(`SELECT ${s}.add_job('run', $1::json)`, [JSON.stringify({ command: [...db.stamp, file] })]);
      const acked = nowMs();
      const started = await readStamp(file);
      send.push(started - sent);
      ack.push(started - acked);
      await new Promise((resolve) => setTimeout(resolve, 20)); // idle between jobs
    }
    return { send, ack };
  } finally {
    await stopWorker(worker);
  }
}

try {
  for (const concurrency of levels) {
    const { rate, ceiling, line } = await againstCeiling(db, n, concurrency, () => graphileThroughput(n, concurrency));
    metric(`graphile.throughput.${concurrency}.rate`, rate);
    if (ceiling !== null) metric(`graphile.throughput.${concurrency}.ceiling`, ceiling);
    console.log(`throughput, ${n} × /bin/true at ${concurrency}: graphile-worker ${line}`);
  }
  const latencies = await graphileStartLatency(latencyN);
  metric('graphile.start.ack.p50', Number(percentiles(latencies.ack).p50));
  metric('graphile.start.send.p50', Number(percentiles(latencies.send).p50));
  console.log(`start latency, ${latencyN} sequential jobs on an idle graphile-worker: ${latencyText(latencies)}`);
} finally {
  await db.close();
}
