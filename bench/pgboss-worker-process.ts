// pg-boss as bench/pgboss.ts runs it: a separate process, like the pg-tasks node and
// bench/graphile-worker-process.ts.
//   node --import tsx bench/pgboss-worker-process.ts --schema S --concurrency C [--wait-for-go]
// The database is DATABASE_URL. The settings (LISTEN/NOTIFY on, the shortest polling the docs
// allow, burst fetching) are all here, in bossOptions, queueOptions, workOptions and the pool's
// `max`; why, in short, is beside each, and at length in the header of bench/pgboss.ts.
// Talks to its parent over IPC: 'migrated' once its schema and queue exist; with --wait-for-go it
// then waits for 'go' before working; 'ready' once its workers run (its LISTEN connection is up by
// then: start() opens it before it returns). SIGTERM stops it: pg-boss's graceful stop (the jobs in
// hand finish), then exit.
import { PgBoss, type ConstructorOptions, type Job, type JobResult, type Queue, type WorkOptions } from 'pg-boss';
import { peerArgs, runCommand } from './peer-process.js';

/** The queue the benchmark's jobs go to. */
const queueName = 'run';

/** PgBoss constructor options, beside the connection and the schema. */
function bossOptions(schema: string): ConstructorOptions {
  return {
    schema,
    // The listener (one dedicated connection) that wakes idle workers when a job is created on a
    // queue with `notify`; off by default.
    useListenNotify: true,
    // No cron schedules are used: no timekeeper polling the database.
    schedule: false,
    // No OpenTelemetry SDK is registered, so this only skips storing trace context on jobs.
    openTelemetry: { enabled: false },
  };
}

/**
 * The queue: `notify` makes every send/insert emit a NOTIFY in its transaction; no retries, so a
 * job whose command fails ends in state 'failed' at once (the benchmark throws on it).
 */
const queueOptions: Omit<Queue, 'name'> = { notify: true, retryLimit: 0 };

/**
 * work() options for `concurrency` processes at once: `concurrency` workers (localConcurrency),
 * each fetching up to 8 jobs and running them one after the other. A batch above 1 is what lets
 * burstWhenBatchFull work (the docs: "ignored when batchSize is 1"), and burst is what lets a
 * worker fetch again at once after a full batch; without it each worker sleeps its polling
 * interval (at least 0.5 s) after every fetch, however much is queued. 8 rather than 2 (the
 * smallest): fewer fetches and completions per job, measured faster; 16 and 32 were no faster.
 * Both polling intervals are at the docs' minimum, 0.5 s: the base one (used if the listener is
 * down) and the one used while NOTIFY is active (default 30 s): what an idle worker waits when a
 * NOTIFY is missed, and its wait after a short fetch.
 */
function workOptions(concurrency: number): WorkOptions {
  return {
    localConcurrency: concurrency,
    batchSize: 8,
    burstWhenBatchFull: true,
    pollingIntervalSeconds: 0.5,
    notifyPollingIntervalSeconds: 0.5,
    perJobResults: true,
  };
}

/** A batch's jobs one after the other (one process per worker at a time), each settled on its own. */
async function runBatch(jobs: Array<Job<{ command: string[] }>>): Promise<JobResult[]> {
  const results: JobResult[] = [];
  for (const job of jobs) {
    try {
      await runCommand(job.data.command);
      results.push({ id: job.id, status: 'completed' });
    } catch (error) {
      results.push({ id: job.id, status: 'failed', output: { message: (error as Error).message } });
    }
  }
  return results;
}

async function main(): Promise<void> {
  const { schema, concurrency, waitForGo, send } = peerArgs();

  // The pool: one connection per worker so a fetch or completion never waits for another's
  // (pg-boss's default max is 10), plus a few for its own supervision; the listener has its own.
  const boss = new PgBoss({ connectionString: process.env.DATABASE_URL!, max: concurrency + 4, ...bossOptions(schema) });
  // Only errors are logged, and the one warning that would make the settings above a lie.
  boss.on('error', (error) => console.error(`pg-boss error: ${error.message}`));
  boss.on('warning', (warning) => {
    if ((warning.data as { type?: string }).type === 'listen_notify_unavailable') console.error(`pg-boss warning: ${warning.message}`);
  });
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> =>
    (stopping ??= boss
      .stop({ graceful: true, timeout: 10_000 })
      .catch((error: unknown) => console.error(`pg-boss stop: ${(error as Error).message}`))
      .finally(() => process.exit(0)));
  process.once('SIGTERM', () => void stop());
  // The parent gone (IPC closed) without stopping us: stop as on SIGTERM.
  process.once('disconnect', () => void stop());

  // start() creates the schema (migrate defaults to on) and opens the LISTEN connection.
  await boss.start();
  await boss.createQueue(queueName, queueOptions);
  send('migrated');
  if (waitForGo) await new Promise((resolve) => process.once('message', resolve));
  await boss.work<{ command: string[] }>(queueName, workOptions(concurrency), runBatch);
  send('ready');
}

await main();
