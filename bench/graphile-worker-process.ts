// graphile-worker as bench/graphile.ts runs it: a separate process, like the pg-tasks node.
//   node --import tsx bench/graphile-worker-process.ts --schema S --concurrency C [--wait-for-go]
// The database is DATABASE_URL. Defaults otherwise (LISTEN/NOTIFY on, pollInterval 2000 ms),
// except: the logger drops info/debug lines (graphile-worker logs one line per completed job by
// default; pg-tasks runs at --log-level warn), no crontab file is read, and the pool is at least
// as large as the concurrency (graphile-worker itself warns "having maxPoolSize smaller than
// concurrency may lead to non-optimal performance" otherwise).
// Talks to its parent over IPC: 'migrated' once its schema exists; with --wait-for-go it then
// waits for 'go' before starting; 'listening' once its LISTEN connection is up. SIGTERM stops it
// (graphile-worker's own handler: graceful shutdown, then it re-raises the signal).
import { EventEmitter } from 'node:events';
import { Logger, run, runMigrations, type Task, type WorkerEvents } from 'graphile-worker';
import { peerArgs, runCommand } from './peer-process.js';

const { schema, concurrency, waitForGo, send } = peerArgs();

/** Runs payload.command (argv); fails on a non-zero exit. */
const runJob: Task = (payload) => runCommand((payload as { command: string[] }).command);

const logger = new Logger(() => (level, message) => {
  if (level === 'error' || level === 'warning') console.error(`graphile-worker ${level}: ${message}`);
});
const options = { connectionString: process.env.DATABASE_URL!, schema, logger };

await runMigrations(options);
send('migrated');
if (waitForGo) await new Promise((resolve) => process.once('message', resolve));
const events: WorkerEvents = new EventEmitter();
events.on('pool:listen:success', () => send('listening'));
const runner = await run({
  ...options,
  concurrency,
  maxPoolSize: Math.max(10, concurrency),
  events,
  crontab: '',
  taskList: { run: runJob },
});
// The parent gone (IPC closed) without stopping us: stop as on SIGTERM.
process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));
await runner.promise;
