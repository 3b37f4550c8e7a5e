// pg-boss, the second peer pg-tasks is compared against (beside graphile-worker, bench/graphile.ts),
// measured the same way on the same PostgreSQL: throughput of N × /bin/true, and start latency on an
// idle worker. pg-boss runs as a separate process (bench/pgboss-worker-process.ts), with the
// fastest settings its docs allow:
//   - LISTEN/NOTIFY: pg-boss 12 has it, opt-in twice: the constructor's `useListenNotify: true`
//     (one dedicated listening connection) and the queue's `notify: true` (each send/insert on it
//     runs pg_notify in its own transaction). A NOTIFY only wakes idle workers for a fetch; polling
//     stays on as the backstop. Both are off by default.
//   - Polling: `pollingIntervalSeconds` and `notifyPollingIntervalSeconds` at 0.5, the minimum the
//     docs and the option checks allow (defaults 2 and 30). The second is what a worker waits when
//     NOTIFY is active; it is also its wait after every fetch that comes back short.
//   - Concurrency: `localConcurrency: C` workers in the one process, each with its own pool
//     connection (`max` C + 4; default pool 10), each running one process at a time: C at once.
//   - Batches and burst: a pg-boss worker sleeps its polling interval after every fetch, even with
//     jobs waiting, unless it is in burst mode (with batchSize 1 and no burst: 8 workers did 17
//     jobs/s, 8 per 0.5 s). `burstWhenBatchFull` (fetch again at once while fetches come back
//     full) is "ignored when batchSize is 1", so each worker fetches up to 8 jobs (`batchSize: 8`)
//     and runs them one after the other, each settled on its own (`perJobResults`). In quick runs 8
//     did about 300/s where 2 did about 230/s; 16 and 32 were no faster. The other trigger,
//     `burstWhenReadyExceeds`, reads a queue count the supervisor caches, a second or more stale
//     even at its shortest intervals (1 s): about 70-80/s in the same quick runs.
//     A claimed job can so wait behind up to 7 others of its worker's batch; C processes still run
//     at once at most.
//   - Completion: pg-boss completes the batch in one statement after the handler resolves; there is
//     no faster mode. `retryLimit: 0`, so a failed command fails its job at once (default 2 retries).
//   - `schedule: false` (no cron polling) and OpenTelemetry off; the rest are pg-boss's defaults.
// Jobs are sent by a second PgBoss instance in this process (not the worker's), as an application
// would: `insert` of all N in one statement for throughput, `send` of one for start latency.
//   npx tsx bench/pgboss.ts [--quick] [--fast] [--n 5000] [--concurrency 8,32] [--latency-n 300]
import path from 'node:path';
import { PgBoss } from 'pg-boss';
import { spawnPeer, stopPeer, type PeerProcess } from './peers.js';
import { againstCeiling, latencyText, nowMs, percentiles, readStamp, setUpDatabase, metric, arg } from './lib.js';

const quick = process.argv.includes('--quick');
const n = Number(arg('--n') ?? (quick ? 200 : 5000));
const levels = (arg('--concurrency') ?? '8,32').split(',').map(Number);
const latencyN = Number(arg('--latency-n') ?? (quick ? 20 : 300));

const db = await setUpDatabase();
const schema = `pgboss_bench_${process.pid}`;
const s = `"${schema}"`;
/** The queue bench/pgboss-worker-process.ts creates and works. */
const queue = 'run';

interface WorkerProcess extends PeerProcess {
  /** Resolves on the worker's 'ready': its workers are fetching, its LISTEN connection is up. */
  ready: Promise<void>;
}

/** Starts the pg-boss worker process; resolves once it has created its schema and queue. */
async function startWorker(concurrency: number, waitForGo: boolean): Promise<WorkerProcess> {
  const worker = spawnPeer('pgboss-worker-process.ts', 'pg-boss worker', db.url, schema, concurrency, waitForGo);
  // Listened for from the start, so a 'ready' right after 'migrated' is not missed; a rejection
  // (the worker ended first) is only an error to whoever awaits it.
  const ready = worker.next('ready');
  ready.catch(() => undefined);
  await worker.next('migrated');
  return { ...worker, ready };
}

/** Stops the worker, drops its schema. */
async function stopWorker(worker: WorkerProcess): Promise<void> {
  await stopPeer(worker);
  await db.client.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
}

/**
 * The sending side: a PgBoss on the worker's schema that only sends. It neither migrates (the
 * worker did), supervises, schedules nor listens, and keeps out of the instance registry.
 */
async function startSender(): Promise<PgBoss> {
  const sender = new PgBoss({
    connectionString: db.url,
    schema,
    max: 2,
    migrate: false,
    supervise: false,
    schedule: false,
    registerInstance: false,
    openTelemetry: { enabled: false },
  });
  sender.on('error', (error) => console.error(`pg-boss (sender) error: ${error.message}`));
  await sender.start();
  return sender;
}

/** The jobs are queued while the worker waits for 'go', then timed from 'go' to the last job done. */
async function pgbossThroughput(count: number, concurrency: number): Promise<number> {
  const worker = await startWorker(concurrency, true);
  try {
    const sender = await startSender();
    try {
      await sender.insert(queue, Array.from({ length: count }, () => ({ data: { command: ['/bin/true'] } })));
    } finally {
      await sender.stop({ graceful: false });
    }
    const started = performance.now();
    worker.child.send('go');
    for (;;) {
      // Completed jobs stay (deleteAfterSeconds, 7 days by default) in state 'completed'; with
      // retryLimit 0 a failed one is in state 'failed' at once.
      const { rows } = await db.client.query<{ left: number; failed: number }>(
        `SELECT count(*) FILTER (WHERE state <> 'completed')::int AS left, count(*) FILTER (WHERE state = 'failed')::int AS failed
           FROM ${s}.job WHERE name = $1`,
        [queue],
      );
      if (rows[0]!.failed > 0) throw new Error(`${rows[0]!.failed} pg-boss jobs failed`);
      if (rows[0]!.left === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return count / ((performance.now() - started) / 1000);
  } finally {
    await stopWorker(worker);
  }
}

/**
 * On an idle worker, one job at a time: from the moment `send` is called (fromSend) and from its
 * acknowledgement, the insert and NOTIFY committed (fromAck), to the child's own start stamp.
 */
async function pgbossStartLatency(count: number): Promise<{ fromSend: number[]; fromAck: number[] }> {
  const worker = await startWorker(8, false);
  try {
    await worker.ready;
    const sender = await startSender();
    try {
      await new Promise((resolve) => setTimeout(resolve, 200)); // its workers' first fetches found none
      const fromSend: number[] = [];
      const fromAck: number[] = [];
      for (let i = 0; i < count; i++) {
        const file = path.join(db.dir, `b${i}`);
        const t0 = nowMs();
        await sender.send(queue, { command: [...db.stamp, file] });
        const t1 = nowMs();
        const started = await readStamp(file);
        fromSend.push(started - t0);
        fromAck.push(started - t1);
        await new Promise((resolve) => setTimeout(resolve, 20)); // idle between jobs
      }
      return { fromSend, fromAck };
    } finally {
      await sender.stop({ graceful: false });
    }
  } finally {
    await stopWorker(worker);
  }
}

try {
  for (const concurrency of levels) {
    const { rate, ceiling, line } = await againstCeiling(db, n, concurrency, () => pgbossThroughput(n, concurrency));
    metric(`pgboss.throughput.${concurrency}.rate`, rate);
    if (ceiling !== null) metric(`pgboss.throughput.${concurrency}.ceiling`, ceiling);
    console.log(`throughput, ${n} × /bin/true at ${concurrency}: pg-boss ${line}`);
  }
  const { fromSend, fromAck } = await pgbossStartLatency(latencyN);
  const a = percentiles(fromSend);
  const b = percentiles(fromAck);
  for (const p of ['p50', 'p95', 'p99'] as const) {
    metric(`pgboss.start.send.${p}`, Number(a[p]));
    metric(`pgboss.start.ack.${p}`, Number(b[p]));
  }
  console.log(`start latency, ${latencyN} sequential jobs on an idle pg-boss: ${latencyText({ send: fromSend, ack: fromAck })}`);
} finally {
  await db.close();
}
